// Package dataset is the on-disk form of captured field data exported for retraining
// (`outpost capture export`, docs/monitoring.md): a directory holding manifest.json, the
// windows (windows.npy, or windows.csv) and results.csv, one row per window. The controller
// writes it and models/train reads it; it depends on the standard library only, so a model
// trainer can import it without the fleet.
//
// windows.npy is a float32 array [count, samples, channels] in NumPy's .npy format 1.0
// (little-endian). windows.csv has the header "index,sample,CH1,CH2,…" and one row per
// sample of each window. results.csv has the header in ResultColumns; its "index" column
// is the window's index in the windows file. "label" is the model's own output at capture
// time; "truth" the ground-truth label from feedback when one was given (outpost feedback,
// POST /v1/feedback, MQTT), and "label_source" says which of the two a trainer should use:
// "feedback" when there is a truth, else "model".
package dataset

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// Formats of the windows file.
const (
	FormatNPY = "npy"
	FormatCSV = "csv"
)

// File names inside an export directory.
const (
	ManifestFile   = "manifest.json"
	WindowsNPYFile = "windows.npy"
	WindowsCSVFile = "windows.csv"
	ResultsFile    = "results.csv"
)

// ManifestVersion is Manifest.Format. Version 1 (no ground truth) is still read.
const (
	ManifestVersion  = "outpost-capture-export/2"
	ManifestVersion1 = "outpost-capture-export/1"
)

// ResultColumns is results.csv's header; version 1 exports have all but the last two.
var ResultColumns = []string{"index", "device", "epoch", "capture_seq", "time", "reason", "result_seq", "model", "score", "label", "event", "truth", "label_source"}

// Label sources: per row (results.csv "label_source") and, for the whole export,
// Manifest.LabelSource, which is LabelsMixed when some rows have a truth and some not.
const (
	LabelsFeedback = "feedback" // ground truth from feedback
	LabelsModel    = "model"    // the model's own output at capture time
	LabelsMixed    = "mixed"
)

// Manifest describes an export.
type Manifest struct {
	Format   string   `json:"format"`   // ManifestVersion
	Model    string   `json:"model"`    // the --model asked for (NAME or NAME@VERSION)
	Models   []string `json:"models"`   // NAME@VERSION of the results exported, sorted
	Windows  string   `json:"windows"`  // FormatNPY or FormatCSV
	DType    string   `json:"dtype"`    // "float32"
	Shape    []int    `json:"shape"`    // of one window: [samples, channels]
	Channels []string `json:"channels"` // channel names, in the order of the last axis
	Count    int      `json:"count"`    // windows
	Files    Files    `json:"files"`    // file names in the directory
	Label    string   `json:"label_column"`
	Devices  []string `json:"devices"` // sorted
	// From and To bound the windows' timestamps (device clocks).
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	// Skipped counts captured windows left out because their shape or channels differ from
	// the export's (a model with another input ran on the device meanwhile).
	Skipped int `json:"skipped,omitempty"`
	// LabelSource says where the labels a trainer should use come from: LabelsFeedback when
	// every window has a ground-truth label, LabelsModel when none has, LabelsMixed otherwise
	// (then per row, results.csv "label_source").
	LabelSource string `json:"label_source"`
	// Labelled counts the windows with a ground-truth label, in Truth's column.
	Labelled int    `json:"labelled"`
	Truth    string `json:"truth_column,omitempty"`
}

// Files names the export's files.
type Files struct {
	Windows string `json:"windows"`
	Results string `json:"results"`
}

// Row is one window's result, a row of results.csv.
type Row struct {
	Device     string
	Epoch      uint64
	CaptureSeq uint64
	Time       time.Time
	Reason     string
	ResultSeq  uint64
	Model      string
	Score      float64
	Label      string // the model's output
	Event      bool
	Truth      string // the ground-truth label from feedback; empty when none
}

// Source is the row's label source: LabelsFeedback when it has a truth, else LabelsModel.
func (r *Row) Source() string {
	if r.Truth != "" {
		return LabelsFeedback
	}
	return LabelsModel
}

// TrainingLabel is the label a trainer should use: the truth when there is one, else the
// model's output.
func (r *Row) TrainingLabel() string {
	if r.Truth != "" {
		return r.Truth
	}
	return r.Label
}

// Export is a whole export in memory: Windows[i] (Shape[0]*Shape[1] values, time-major) goes
// with Rows[i].
type Export struct {
	Manifest Manifest
	Windows  [][]float32
	Rows     []Row
}

// Write writes e into dir (created if missing) in e.Manifest.Windows' format and fills in the
// manifest's derived fields (count, files, dtype, format).
func Write(dir string, e *Export) error {
	m := &e.Manifest
	if len(m.Shape) != 2 || m.Shape[0] < 1 || m.Shape[1] < 1 || len(m.Channels) != m.Shape[1] {
		return fmt.Errorf("export: shape %v with %d channels", m.Shape, len(m.Channels))
	}
	if len(e.Windows) != len(e.Rows) {
		return fmt.Errorf("export: %d windows for %d results", len(e.Windows), len(e.Rows))
	}
	per := m.Shape[0] * m.Shape[1]
	for i, w := range e.Windows {
		if len(w) != per {
			return fmt.Errorf("export: window %d has %d values, want %d", i, len(w), per)
		}
	}
	m.Format, m.DType, m.Count, m.Label, m.Truth = ManifestVersion, "float32", len(e.Windows), "label", "truth"
	m.Labelled = 0
	for i := range e.Rows {
		if e.Rows[i].Truth != "" {
			m.Labelled++
		}
	}
	switch m.Labelled {
	case 0:
		m.LabelSource = LabelsModel
	case len(e.Rows):
		m.LabelSource = LabelsFeedback
	default:
		m.LabelSource = LabelsMixed
	}
	m.Files = Files{Results: ResultsFile}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	switch m.Windows {
	case FormatNPY:
		m.Files.Windows = WindowsNPYFile
		flat := make([]float32, 0, len(e.Windows)*per)
		for _, w := range e.Windows {
			flat = append(flat, w...)
		}
		err := writeFile(filepath.Join(dir, WindowsNPYFile), func(w io.Writer) error {
			return WriteNPY(w, []int{len(e.Windows), m.Shape[0], m.Shape[1]}, flat)
		})
		if err != nil {
			return err
		}
	case FormatCSV:
		m.Files.Windows = WindowsCSVFile
		err := writeFile(filepath.Join(dir, WindowsCSVFile), func(w io.Writer) error {
			cw := csv.NewWriter(w)
			if err := cw.Write(append([]string{"index", "sample"}, m.Channels...)); err != nil {
				return err
			}
			rec := make([]string, 2+m.Shape[1])
			for i, win := range e.Windows {
				for s := range m.Shape[0] {
					rec[0], rec[1] = strconv.Itoa(i), strconv.Itoa(s)
					for c := range m.Shape[1] {
						rec[2+c] = strconv.FormatFloat(float64(win[s*m.Shape[1]+c]), 'g', -1, 32)
					}
					if err := cw.Write(rec); err != nil {
						return err
					}
				}
			}
			cw.Flush()
			return cw.Error()
		})
		if err != nil {
			return err
		}
	default:
		return fmt.Errorf("export: format %q (want %s or %s)", m.Windows, FormatNPY, FormatCSV)
	}
	err := writeFile(filepath.Join(dir, ResultsFile), func(w io.Writer) error {
		cw := csv.NewWriter(w)
		if err := cw.Write(ResultColumns); err != nil {
			return err
		}
		for i, r := range e.Rows {
			err := cw.Write([]string{
				strconv.Itoa(i), r.Device, strconv.FormatUint(r.Epoch, 10), strconv.FormatUint(r.CaptureSeq, 10),
				r.Time.UTC().Format(time.RFC3339Nano), r.Reason, strconv.FormatUint(r.ResultSeq, 10), r.Model,
				strconv.FormatFloat(r.Score, 'g', -1, 64), r.Label, strconv.FormatBool(r.Event), r.Truth, r.Source(),
			})
			if err != nil {
				return err
			}
		}
		cw.Flush()
		return cw.Error()
	})
	if err != nil {
		return err
	}
	js, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, ManifestFile), func(w io.Writer) error {
		_, err := w.Write(append(js, '\n'))
		return err
	})
}

// writeFile writes through a temporary file renamed into place, so a reader never sees half
// a file.
func writeFile(path string, fill func(w io.Writer) error) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	bw := bufio.NewWriterSize(f, 1<<16)
	err = fill(bw)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("export: write %s: %w", filepath.Base(path), err)
	}
	return nil
}

// MaxManifest bounds manifest.json.
const MaxManifest = 1 << 20

// Read reads the export in dir: the manifest, every window and every result row, checking
// that they agree.
func Read(dir string) (*Export, error) {
	mb, err := readMax(filepath.Join(dir, ManifestFile), MaxManifest)
	if err != nil {
		return nil, err
	}
	var e Export
	m := &e.Manifest
	if err := json.Unmarshal(mb, m); err != nil {
		return nil, fmt.Errorf("read export: %s: %w", ManifestFile, err)
	}
	switch {
	case m.Format != ManifestVersion && m.Format != ManifestVersion1:
		return nil, fmt.Errorf("read export: format %q (want %q)", m.Format, ManifestVersion)
	case m.DType != "float32":
		return nil, fmt.Errorf("read export: dtype %q (want float32)", m.DType)
	case len(m.Shape) != 2 || m.Shape[0] < 1 || m.Shape[1] < 1 || m.Shape[0] > MaxNPYValues/m.Shape[1] || len(m.Channels) != m.Shape[1]:
		return nil, fmt.Errorf("read export: shape %v with %d channels", m.Shape, len(m.Channels))
	case m.Count < 0 || m.Count > MaxNPYValues:
		return nil, fmt.Errorf("read export: count %d", m.Count)
	case filepath.Base(m.Files.Windows) != m.Files.Windows || filepath.Base(m.Files.Results) != m.Files.Results:
		return nil, fmt.Errorf("read export: file names %q, %q must be plain names", m.Files.Windows, m.Files.Results)
	}
	per := m.Shape[0] * m.Shape[1]
	switch m.Windows {
	case FormatNPY:
		f, err := os.Open(filepath.Join(dir, m.Files.Windows))
		if err != nil {
			return nil, fmt.Errorf("read export: %w", err)
		}
		shape, data, err := ReadNPY(bufio.NewReader(f))
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("read export: %s: %w", m.Files.Windows, err)
		}
		if len(shape) != 3 || shape[0] != m.Count || shape[1] != m.Shape[0] || shape[2] != m.Shape[1] {
			return nil, fmt.Errorf("read export: %s has shape %v, manifest says [%d %d %d]", m.Files.Windows, shape, m.Count, m.Shape[0], m.Shape[1])
		}
		for i := range m.Count {
			e.Windows = append(e.Windows, data[i*per:(i+1)*per:(i+1)*per])
		}
	case FormatCSV:
		recs, err := readCSV(filepath.Join(dir, m.Files.Windows), append([]string{"index", "sample"}, m.Channels...))
		if err != nil {
			return nil, err
		}
		if len(recs) != m.Count*m.Shape[0] {
			return nil, fmt.Errorf("read export: %s has %d rows, want %d", m.Files.Windows, len(recs), m.Count*m.Shape[0])
		}
		for i := range m.Count {
			w := make([]float32, per)
			for s := range m.Shape[0] {
				rec := recs[i*m.Shape[0]+s]
				if rec[0] != strconv.Itoa(i) || rec[1] != strconv.Itoa(s) {
					return nil, fmt.Errorf("read export: %s row %d is window %s sample %s, want %d %d", m.Files.Windows, i*m.Shape[0]+s+1, rec[0], rec[1], i, s)
				}
				for c := range m.Shape[1] {
					v, err := strconv.ParseFloat(rec[2+c], 32)
					if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
						return nil, fmt.Errorf("read export: %s row %d: value %q", m.Files.Windows, i*m.Shape[0]+s+1, rec[2+c])
					}
					w[s*m.Shape[1]+c] = float32(v)
				}
			}
			e.Windows = append(e.Windows, w)
		}
	default:
		return nil, fmt.Errorf("read export: windows format %q (want %s or %s)", m.Windows, FormatNPY, FormatCSV)
	}
	columns := ResultColumns
	if m.Format == ManifestVersion1 {
		columns = ResultColumns[:11]
	}
	recs, err := readCSV(filepath.Join(dir, m.Files.Results), columns)
	if err != nil {
		return nil, err
	}
	if len(recs) != m.Count {
		return nil, fmt.Errorf("read export: %s has %d rows for %d windows", m.Files.Results, len(recs), m.Count)
	}
	for i, rec := range recs {
		r, err := parseRow(rec)
		if err == nil && rec[0] != strconv.Itoa(i) {
			err = fmt.Errorf("index %s, want %d", rec[0], i)
		}
		if err != nil {
			return nil, fmt.Errorf("read export: %s row %d: %w", m.Files.Results, i+2, err)
		}
		e.Rows = append(e.Rows, r)
	}
	return &e, nil
}

func parseRow(rec []string) (Row, error) {
	var r Row
	var err error
	errs := func(e error) {
		if err == nil {
			err = e
		}
	}
	r.Device, r.Reason, r.Model, r.Label = rec[1], rec[5], rec[7], rec[9]
	if len(rec) > 11 {
		r.Truth = rec[11]
		if src := rec[12]; src != r.Source() {
			errs(fmt.Errorf("label_source %q, want %q for truth %q", src, r.Source(), r.Truth))
		}
	}
	var e error
	r.Epoch, e = strconv.ParseUint(rec[2], 10, 64)
	errs(e)
	r.CaptureSeq, e = strconv.ParseUint(rec[3], 10, 64)
	errs(e)
	r.Time, e = time.Parse(time.RFC3339Nano, rec[4])
	errs(e)
	r.ResultSeq, e = strconv.ParseUint(rec[6], 10, 64)
	errs(e)
	r.Score, e = strconv.ParseFloat(rec[8], 64)
	errs(e)
	r.Event, e = strconv.ParseBool(rec[10])
	errs(e)
	return r, err
}

// readCSV reads a CSV file whose first record must be header.
func readCSV(path string, header []string) ([][]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read export: %w", err)
	}
	defer f.Close()
	cr := csv.NewReader(bufio.NewReader(f))
	cr.FieldsPerRecord = len(header)
	cr.ReuseRecord = false
	head, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("read export: %s: header: %w", filepath.Base(path), err)
	}
	for i := range header {
		if head[i] != header[i] {
			return nil, fmt.Errorf("read export: %s: header column %d is %q, want %q", filepath.Base(path), i+1, head[i], header[i])
		}
	}
	var out [][]string
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read export: %s: %w", filepath.Base(path), err)
		}
		out = append(out, rec)
	}
}

func readMax(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read export: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("read export: %w", err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("read export: %s is over %d bytes", filepath.Base(path), max)
	}
	return b, nil
}
