package dataset

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestWriteNPYBytes checks the file byte for byte against the format's spec (numpy.lib.format,
// version 1.0): magic, version, little-endian header length, the dict literal numpy itself
// writes, space padding to a 64-byte boundary ending in '\n', then little-endian float32.
func TestWriteNPYBytes(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteNPY(&buf, []int{2, 3, 1}, []float32{1, -2, 0.5, 0, 3.25, -0.125}); err != nil {
		t.Fatal(err)
	}
	dict := "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 1), }"
	header := dict + strings.Repeat(" ", 128-10-len(dict)-1) + "\n" // data starts at byte 128
	want := append([]byte("\x93NUMPY\x01\x00"), byte(len(header)), 0)
	want = append(want, header...)
	want = append(want,
		0x00, 0x00, 0x80, 0x3f, // 1
		0x00, 0x00, 0x00, 0xc0, // -2
		0x00, 0x00, 0x00, 0x3f, // 0.5
		0x00, 0x00, 0x00, 0x00, // 0
		0x00, 0x00, 0x50, 0x40, // 3.25
		0x00, 0x00, 0x00, 0xbe, // -0.125
	)
	if !bytes.Equal(buf.Bytes(), want) {
		t.Fatalf("npy bytes:\n got %q\nwant %q", buf.Bytes(), want)
	}
	shape, data, err := ReadNPY(bytes.NewReader(buf.Bytes()))
	if err != nil || !reflect.DeepEqual(shape, []int{2, 3, 1}) || !reflect.DeepEqual(data, []float32{1, -2, 0.5, 0, 3.25, -0.125}) {
		t.Fatalf("read back %v %v, %v", shape, data, err)
	}
	// A 1-d array is a one-element tuple, "(3,)".
	buf.Reset()
	if err := WriteNPY(&buf, []int{3}, []float32{1, 2, 3}); err != nil || !bytes.Contains(buf.Bytes(), []byte("'shape': (3,), }")) || buf.Len() != 128+12 {
		t.Errorf("1-d header %q (%d bytes), %v", buf.Bytes(), buf.Len(), err)
	}
}

func TestReadNPYErrors(t *testing.T) {
	good := func(descr, fortran, shape string, data int) []byte {
		h := "{'descr': '" + descr + "', 'fortran_order': " + fortran + ", 'shape': (" + shape + "), }\n"
		b := append([]byte("\x93NUMPY\x01\x00"), byte(len(h)), 0)
		return append(append(b, h...), make([]byte, data)...)
	}
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"magic", []byte("\x93NUMPX\x01\x00\x00\x00"), "magic"},
		{"dtype", good("<f8", "False", "1,", 8), "dtype"},
		{"fortran", good("<f4", "True", "1,", 4), "C order"},
		{"short data", good("<f4", "False", "4,", 8), "8 bytes of data for 4 values"},
		{"huge claim", good("<f4", "False", "100000, 100000", 8), "more than"},
		{"version", []byte("\x93NUMPY\x09\x00"), "version"},
	} {
		_, _, err := ReadNPY(bytes.NewReader(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

func sampleExport(format string) *Export {
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	e := &Export{Manifest: Manifest{Model: "vib", Models: []string{"vib@1.0.0"}, Windows: format, Shape: []int{3, 2}, Channels: []string{"x", "y"},
		Devices: []string{"d1"}, From: t0, To: t0.Add(time.Second)}}
	for i := range 2 {
		e.Windows = append(e.Windows, []float32{float32(i), 0.1, -1e-7, 3e8, 2.5, float32(i) / 3})
		e.Rows = append(e.Rows, Row{Device: "d1", Epoch: 9, CaptureSeq: uint64(i + 1), Time: t0.Add(time.Duration(i) * time.Second),
			Reason: "drift", ResultSeq: uint64(40 + i), Model: "vib@1.0.0", Score: 0.25 * float64(i+1), Label: "normal", Event: i == 1})
	}
	e.Rows[1].Truth = "anomaly" // a late label said the model was wrong
	return e
}

// TestRoundTrip: both formats read back exactly what was written, values bit for bit.
func TestRoundTrip(t *testing.T) {
	for _, format := range []string{FormatNPY, FormatCSV} {
		t.Run(format, func(t *testing.T) {
			dir := t.TempDir()
			e := sampleExport(format)
			if err := Write(dir, e); err != nil {
				t.Fatal(err)
			}
			got, err := Read(dir)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.Windows, e.Windows) || !reflect.DeepEqual(got.Rows, e.Rows) || !reflect.DeepEqual(got.Manifest, e.Manifest) {
				t.Errorf("round trip differs:\n got %+v\nwant %+v", got, e)
			}
			if m := got.Manifest; m.Count != 2 || m.Label != "label" || m.DType != "float32" || m.Labelled != 1 || m.LabelSource != LabelsMixed || m.Truth != "truth" {
				t.Errorf("manifest %+v", got.Manifest)
			}
			if r := got.Rows; r[0].Source() != LabelsModel || r[0].TrainingLabel() != "normal" || r[1].Source() != LabelsFeedback || r[1].TrainingLabel() != "anomaly" {
				t.Errorf("rows' label sources: %+v", r)
			}
		})
	}
}

// TestLabelSources: the manifest's label source follows the rows; a version 1 export (no
// truth columns) still reads, every row labelled by the model.
func TestLabelSources(t *testing.T) {
	for _, c := range []struct {
		truths []string
		want   string
	}{{[]string{"", ""}, LabelsModel}, {[]string{"a", ""}, LabelsMixed}, {[]string{"a", "normal"}, LabelsFeedback}} {
		e := sampleExport(FormatNPY)
		for i, tr := range c.truths {
			e.Rows[i].Truth = tr
		}
		if err := Write(t.TempDir(), e); err != nil || e.Manifest.LabelSource != c.want {
			t.Errorf("truths %q: label source %q (%v), want %q", c.truths, e.Manifest.LabelSource, err, c.want)
		}
	}

	dir := t.TempDir()
	if err := Write(dir, sampleExport(FormatCSV)); err != nil {
		t.Fatal(err)
	}
	rewrite := func(name string, f func(string) string) {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(f(string(b))), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rewrite(ManifestFile, func(s string) string { return strings.Replace(s, ManifestVersion, ManifestVersion1, 1) })
	rewrite(ResultsFile, func(s string) string {
		var out []string
		for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
			f := strings.Split(line, ",")
			out = append(out, strings.Join(f[:11], ","))
		}
		return strings.Join(out, "\n") + "\n"
	})
	e, err := Read(dir)
	if err != nil {
		t.Fatalf("read a version 1 export: %v", err)
	}
	if len(e.Rows) != 2 || e.Rows[1].Truth != "" || e.Rows[1].TrainingLabel() != "normal" {
		t.Errorf("version 1 rows %+v", e.Rows)
	}
	// A row whose label_source contradicts its truth is refused.
	dir = t.TempDir()
	if err := Write(dir, sampleExport(FormatCSV)); err != nil {
		t.Fatal(err)
	}
	rewrite(ResultsFile, func(s string) string { return strings.Replace(s, ",anomaly,feedback", ",anomaly,model", 1) })
	if _, err := Read(dir); err == nil || !strings.Contains(err.Error(), "label_source") {
		t.Errorf("contradicting label_source: %v", err)
	}
}

// TestCSVGolden pins the CSV files' text.
func TestCSVGolden(t *testing.T) {
	dir := t.TempDir()
	if err := Write(dir, sampleExport(FormatCSV)); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{WindowsCSVFile, ResultsFile, ManifestFile} {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		golden := filepath.Join("testdata", name+".golden")
		if os.Getenv("UPDATE_GOLDEN") != "" {
			os.MkdirAll("testdata", 0o755)
			os.WriteFile(golden, got, 0o644)
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from %s:\n%s", name, golden, got)
		}
	}
}

func TestReadErrors(t *testing.T) {
	dir := t.TempDir()
	if err := Write(dir, sampleExport(FormatNPY)); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, ResultsFile), []byte(strings.Join(ResultColumns, ",")+"\n0,d1,9,1,notatime,drift,40,vib@1.0.0,0.25,normal,false\n"), 0o644)
	if _, err := Read(dir); err == nil || !strings.Contains(err.Error(), "results.csv") {
		t.Errorf("bad results: %v", err)
	}
	if _, err := Read(t.TempDir()); err == nil {
		t.Error("an empty directory read as an export")
	}
}

// FuzzReadNPY: any bytes give an array consistent with its shape or an error, never a panic
// or an allocation the input does not pay for.
func FuzzReadNPY(f *testing.F) {
	var buf bytes.Buffer
	WriteNPY(&buf, []int{2, 2}, []float32{1, 2, 3, 4})
	f.Add(buf.Bytes())
	f.Add([]byte("\x93NUMPY\x02\x00\x10\x00\x00\x00{'shape': (1,)}"))
	f.Fuzz(func(t *testing.T, in []byte) {
		shape, data, err := ReadNPY(bytes.NewReader(in))
		if err != nil {
			return
		}
		n := 1
		for _, d := range shape {
			n *= d
		}
		if n != len(data) {
			t.Fatalf("shape %v with %d values", shape, len(data))
		}
	})
}
