package replay

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Limits on what Parse accepts, so a wrong or hostile file cannot exhaust a device's memory.
const (
	MaxChannels = 256
	MaxValues   = 1 << 24 // 64 MiB of float32
	maxField    = 64      // bytes shown of a bad field in an error
)

// Recording is a parsed CSV file: channel names and rows of values with their timestamps.
type Recording struct {
	Channels []string
	times    []int64   // ns since the Unix epoch (RFC3339) or since the seconds' origin
	values   []float32 // row-major, len(Channels) per row
}

// Len returns the number of rows.
func (r *Recording) Len() int { return len(r.times) }

// Row returns row i's values (not a copy).
func (r *Recording) Row(i int) []float32 {
	n := len(r.Channels)
	return r.values[i*n : (i+1)*n : (i+1)*n]
}

// Time returns row i's timestamp; seconds-form timestamps count from the Unix epoch.
func (r *Recording) Time(i int) time.Time { return time.Unix(0, r.times[i]).UTC() }

// NominalRateHz returns 1/median interval between rows, rounded to 6 significant digits so a
// recording at 25 Hz with timestamp jitter reports exactly 25.
func (r *Recording) NominalRateHz() (float64, error) {
	if len(r.times) < 2 {
		return 0, errors.New("one sample gives no sample rate")
	}
	d := make([]int64, len(r.times)-1)
	for i := range d {
		d[i] = r.times[i+1] - r.times[i]
	}
	slices.Sort(d)
	hz := float64(time.Second) / float64(d[len(d)/2])
	hz, _ = strconv.ParseFloat(strconv.FormatFloat(hz, 'g', 6, 64), 64)
	return hz, nil
}

type tsForm int

const (
	formUnknown tsForm = iota
	formSeconds
	formRFC3339
)

func (f tsForm) String() string {
	if f == formSeconds {
		return "seconds"
	}
	return "RFC3339"
}

// Parse reads a replay CSV (see the package comment). Every error is one line that names the
// line of the file it is about.
func Parse(r io.Reader) (*Recording, error) {
	cr := csv.NewReader(r)
	cr.ReuseRecord = true
	cr.TrimLeadingSpace = true
	head, err := cr.Read()
	if err == io.EOF {
		return nil, errors.New("empty file: want a header row timestamp,CHANNEL,...")
	}
	if err != nil {
		return nil, csvErr(err)
	}
	first := strings.ToLower(strings.TrimSpace(strings.TrimPrefix(head[0], "\ufeff")))
	if first != "timestamp" && first != "time" {
		return nil, fmt.Errorf("line 1: first column is %s, want timestamp", quote(head[0]))
	}
	if len(head) < 2 {
		return nil, errors.New("line 1: no channel columns after timestamp")
	}
	if len(head)-1 > MaxChannels {
		return nil, fmt.Errorf("line 1: %d channels, at most %d", len(head)-1, MaxChannels)
	}
	rec := &Recording{Channels: make([]string, 0, len(head)-1)}
	for i, h := range head[1:] {
		h = strings.TrimSpace(h)
		if h == "" {
			return nil, fmt.Errorf("line 1: column %d has no name", i+2)
		}
		if slices.Contains(rec.Channels, h) {
			return nil, fmt.Errorf("line 1: channel %s named twice", quote(h))
		}
		rec.Channels = append(rec.Channels, h)
	}
	n := len(rec.Channels)
	form, prevLine := formUnknown, 1
	for {
		row, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, csvErr(err)
		}
		line, _ := cr.FieldPos(0)
		if len(rec.values)+n > MaxValues {
			return nil, fmt.Errorf("line %d: more than %d values; split the file", line, MaxValues)
		}
		ts, f, err := parseTime(row[0])
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		if form == formUnknown {
			form = f
		} else if f != form {
			return nil, fmt.Errorf("line %d: timestamp %s is %v, earlier rows use %v", line, quote(row[0]), f, form)
		}
		if k := len(rec.times); k > 0 && ts <= rec.times[k-1] {
			return nil, fmt.Errorf("line %d: timestamp %s is not after line %d's", line, quote(row[0]), prevLine)
		}
		for c, s := range row[1:] {
			v, err := strconv.ParseFloat(strings.TrimSpace(s), 32)
			if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, fmt.Errorf("line %d: channel %s: value %s is not a finite number", line, quote(rec.Channels[c]), quote(s))
			}
			rec.values = append(rec.values, float32(v))
		}
		rec.times = append(rec.times, ts)
		prevLine = line
	}
	if len(rec.times) == 0 {
		return nil, errors.New("no data rows after the header")
	}
	return rec, nil
}

// csvErr turns encoding/csv's errors (which name line and column) into one line.
func csvErr(err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		if errors.Is(pe.Err, csv.ErrFieldCount) {
			return fmt.Errorf("line %d: %v", pe.Line, pe.Err)
		}
		return fmt.Errorf("line %d, column %d: %v", pe.Line, pe.Column, pe.Err)
	}
	return fmt.Errorf("read: %w", err)
}

// parseTime parses a timestamp as seconds or RFC3339, returning ns and the form.
func parseTime(s string) (int64, tsForm, error) {
	s = strings.TrimSpace(s)
	if sec, err := strconv.ParseFloat(s, 64); err == nil {
		// ±9.2e9 s is the int64 nanosecond range.
		if math.IsNaN(sec) || math.IsInf(sec, 0) || math.Abs(sec) >= 9.2e9 {
			return 0, formSeconds, fmt.Errorf("timestamp %s is out of range", quote(s))
		}
		return int64(math.Round(sec * 1e9)), formSeconds, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, formRFC3339, fmt.Errorf("timestamp %s is neither RFC3339 nor seconds", quote(s))
	}
	if y := t.Year(); y < 1678 || y > 2261 { // the int64 nanosecond range
		return 0, formRFC3339, fmt.Errorf("timestamp %s is out of range", quote(s))
	}
	return t.UnixNano(), formRFC3339, nil
}

// quote quotes a field for an error, cut to maxField bytes so one line stays readable.
func quote(s string) string {
	if len(s) > maxField {
		return strconv.Quote(s[:maxField]) + "…"
	}
	return strconv.Quote(s)
}
