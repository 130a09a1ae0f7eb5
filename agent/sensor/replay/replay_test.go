package replay_test

import (
	"bytes"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/agent/sensor"
	"github.com/outpost-ml/outpost/agent/sensor/replay"
	"github.com/outpost-ml/outpost/agent/sensor/sensortest"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		channels []string
		rows     [][]float32
		first    time.Time
		rateHz   float64
	}{
		{
			name:     "seconds",
			in:       "timestamp,x,y,z\n0,0.1,0.2,1\n0.04,0.1,0.2,0.98\n0.08,-1.5e-2,0,1.01\n",
			channels: []string{"x", "y", "z"},
			rows:     [][]float32{{0.1, 0.2, 1}, {0.1, 0.2, 0.98}, {-0.015, 0, 1.01}},
			first:    time.Unix(0, 0).UTC(), rateHz: 25,
		},
		{
			name:     "rfc3339 with jitter, BOM, CRLF, spaces, time header",
			in:       "\ufeffTime, temp\r\n2025-01-02T15:04:05Z, 21.5\r\n2025-01-02T15:04:06.01Z,21.6\r\n2025-01-02T15:04:07+00:00,21.7\r\n2025-01-02T17:04:08.000000001+02:00,21.8\r\n",
			channels: []string{"temp"},
			rows:     [][]float32{{21.5}, {21.6}, {21.7}, {21.8}},
			first:    time.Date(2025, 1, 2, 15, 4, 5, 0, time.UTC), rateHz: 1,
		},
		{
			name:     "unix seconds, one row",
			in:       "timestamp,v\n1735830245.5,3\n",
			channels: []string{"v"},
			rows:     [][]float32{{3}},
			first:    time.Unix(1735830245, 5e8).UTC(),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, err := replay.Parse(strings.NewReader(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(rec.Channels, tt.channels) || rec.Len() != len(tt.rows) {
				t.Fatalf("channels %q, %d rows; want %q, %d", rec.Channels, rec.Len(), tt.channels, len(tt.rows))
			}
			for i, want := range tt.rows {
				if got := rec.Row(i); !slices.Equal(got, want) {
					t.Fatalf("row %d = %v, want %v", i, got, want)
				}
			}
			if !rec.Time(0).Equal(tt.first) {
				t.Fatalf("Time(0) = %v, want %v", rec.Time(0), tt.first)
			}
			hz, err := rec.NominalRateHz()
			if tt.rateHz == 0 {
				if err == nil {
					t.Fatalf("NominalRateHz of one row = %v, want an error", hz)
				}
				return
			}
			if err != nil || hz != tt.rateHz {
				t.Fatalf("NominalRateHz = %v, %v; want %v", hz, err, tt.rateHz)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"empty", "", "empty file"},
		{"no channels", "timestamp\n1\n", "line 1: no channel columns"},
		{"wrong first column", "x,y\n1,2\n", `line 1: first column is "x", want timestamp`},
		{"unnamed channel", "timestamp,a, \n", "line 1: column 3 has no name"},
		{"duplicate channel", "timestamp,a,a\n", `line 1: channel "a" named twice`},
		{"no rows", "timestamp,a\n", "no data rows"},
		{"short row", "timestamp,a,b\n0,1,2\n1,1\n", "line 3: wrong number of fields"},
		{"long row", "timestamp,a\n0,1\n1,1\n2,1,5\n", "line 4: wrong number of fields"},
		{"bad value", "timestamp,a,b\n0,1,2\n1,1,abc\n", `line 3: channel "b": value "abc" is not a finite number`},
		{"empty value", "timestamp,a\n0,\n", `line 2: channel "a": value "" is not a finite number`},
		{"nan", "timestamp,a\n0,NaN\n", `line 2: channel "a": value "NaN"`},
		{"overflow float32", "timestamp,a\n0,1e39\n", `value "1e39"`},
		{"bad timestamp", "timestamp,a\n0,1\nyesterday,2\n", `line 3: timestamp "yesterday" is neither RFC3339 nor seconds`},
		{"mixed forms", "timestamp,a\n0,1\n2025-01-02T15:04:05Z,2\n", `line 3: timestamp "2025-01-02T15:04:05Z" is RFC3339, earlier rows use seconds`},
		{"repeated timestamp", "timestamp,a\n0,1\n0.5,1\n0.5,2\n", `line 4: timestamp "0.5" is not after line 3's`},
		{"backwards", "timestamp,a\n2025-01-02T15:04:05Z,1\n2025-01-02T15:04:04Z,1\n", "line 3: timestamp"},
		{"huge seconds", "timestamp,a\n1e300,1\n", `line 2: timestamp "1e300" is out of range`},
		{"bare quote", "timestamp,a\n0,1\"2\n", "line 2, column"},
		{"lines counted across blank lines", "timestamp,a\n\n0,1\n\nx,2\n", `line 5: timestamp "x"`},
		{"long field cut", "timestamp,a\n0," + strings.Repeat("9", 100) + "x\n", `…`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := replay.Parse(strings.NewReader(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("Parse = %v, want one line containing %q", err, tt.want)
			}
		})
	}
}

func TestParseLimits(t *testing.T) {
	var b strings.Builder
	b.WriteString("timestamp")
	for i := range replay.MaxChannels + 1 {
		b.WriteString(",c")
		b.WriteString(strings.Repeat("x", i))
	}
	if _, err := replay.Parse(strings.NewReader(b.String())); err == nil || !strings.Contains(err.Error(), "channels, at most") {
		t.Fatalf("Parse with %d channels = %v", replay.MaxChannels+1, err)
	}
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "rec.csv")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const walk = "timestamp,x,y,z\n0,1,2,3\n0.04,4,5,6\n0.08,7,8,9\n"

func TestReplay(t *testing.T) {
	path := writeFile(t, walk)
	tests := []struct {
		args      string
		wantRate  float64 // the data's rate, whatever the speed
		wantRead  float64 // reads per second
		loop      bool
		wantSpeed float64
	}{
		{"", 25, 25, false, 1},
		{"&speed=2&loop=true", 25, 50, true, 2},
		{"&speed=0.5", 25, 12.5, false, 0.5},
		{"&speed=max&loop=1", 25, math.Inf(1), true, math.Inf(1)},
		{"&rate=20", 20, 20, false, 1},
	}
	for _, tt := range tests {
		t.Run(tt.args, func(t *testing.T) {
			src, err := sensor.Open("replay?file=" + path + tt.args)
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			info := src.Info()
			if info.RateHz != tt.wantRate || info.ReadHz != tt.wantRead || info.Channels != 3 || info.Kind != replay.Kind {
				t.Fatalf("Info() = %+v, want rate %v, read at %v, 3 channels", info, tt.wantRate, tt.wantRead)
			}
			if got := strings.Join(info.ChannelNames(), ","); got != "x,y,z" {
				t.Fatalf("ChannelNames() = %s, want x,y,z", got)
			}
			rs := src.(*replay.Source)
			if rs.Speed() != tt.wantSpeed {
				t.Fatalf("Speed() = %v, want %v", rs.Speed(), tt.wantSpeed)
			}
			var v [3]float32
			var prev time.Time
			for i := range 7 {
				ts, err := src.Read(t.Context(), v[:])
				if !tt.loop && i >= 3 {
					if !errors.Is(err, replay.ErrEnd) || !strings.Contains(err.Error(), "after 3 samples") {
						t.Fatalf("Read #%d past the end = %v, want ErrEnd", i, err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("Read #%d = %v", i, err)
				}
				if ts.Before(prev) {
					t.Fatalf("Read #%d time %v before the previous %v", i, ts, prev)
				}
				prev = ts
				k := float32(i%3) * 3
				if want := [3]float32{k + 1, k + 2, k + 3}; v != want {
					t.Fatalf("Read #%d = %v, want %v", i, v, want)
				}
				rt, loops := rs.Recorded()
				if want := time.Unix(0, int64(i%3)*40e6).UTC(); !rt.Equal(want) || loops != i/3 {
					t.Fatalf("Recorded() after #%d = %v, %d; want %v, %d", i, rt, loops, want, i/3)
				}
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	good := writeFile(t, walk)
	one := writeFile(t, "timestamp,a\n0,1\n")
	bad := writeFile(t, "timestamp,a\n0,1\n1,oops\n")
	fast := writeFile(t, "timestamp,a\n0,1\n0.000001,1\n")
	for _, tt := range []struct{ spec, want string }{
		{"replay", "no file given"},
		{"replay?file=" + filepath.Join(t.TempDir(), "missing.csv"), "no such file"},
		{"replay?file=" + bad, bad + `: line 3: channel "a": value "oops"`},
		{"replay?file=" + one, "one sample gives no sample rate (give rate=HZ)"},
		{"replay?file=" + good + "&speed=0", `speed "0"`},
		{"replay?file=" + good + "&speed=fast", `speed "fast" must be max or a positive number`},
		{"replay?file=" + good + "&loop=sometimes", `loop "sometimes"`},
		{"replay?file=" + good + "&rate=-1", `rate "-1"`},
		{"replay?file=" + fast + "&speed=2", "exceeds 100000 Hz; use speed=max"},
		{"replay?path=" + good, `unknown argument "path"`},
	} {
		t.Run(tt.spec, func(t *testing.T) {
			src, err := sensor.Open(tt.spec)
			if err == nil {
				src.Close()
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("Open = %v, want one line containing %q", err, tt.want)
			}
		})
	}
	if src, err := sensor.Open("replay?file=" + one + "&rate=10"); err != nil {
		t.Fatalf("one row with rate=10: %v", err)
	} else {
		src.Close()
	}
}

func TestSourceContract(t *testing.T) {
	path := writeFile(t, walk)
	sensortest.Run(t, func(t *testing.T) sensor.Source {
		src, err := sensor.Open("replay?file=" + path + "&loop=true")
		if err != nil {
			t.Fatal(err)
		}
		return src
	})
}

// FuzzParse checks that Parse never panics, that its errors are one line, and that what it
// accepts keeps its invariants. Seeds: testdata/fuzz/FuzzParse and the cases below.
func FuzzParse(f *testing.F) {
	f.Add([]byte(walk))
	f.Add([]byte("timestamp,t\n2025-01-02T15:04:05Z,1\n2025-01-02T15:04:05.5Z,2\n"))
	f.Add([]byte("time,a,b\n1,\"2\",3\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rec, err := replay.Parse(bytes.NewReader(data))
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error has more than one line: %q", err)
			}
			return
		}
		if len(rec.Channels) == 0 || rec.Len() == 0 {
			t.Fatalf("accepted %d channels, %d rows", len(rec.Channels), rec.Len())
		}
		for i := range rec.Len() {
			if i > 0 && !rec.Time(i).After(rec.Time(i-1)) {
				t.Fatalf("row %d time %v not after %v", i, rec.Time(i), rec.Time(i-1))
			}
			row := rec.Row(i)
			if len(row) != len(rec.Channels) {
				t.Fatalf("row %d has %d values for %d channels", i, len(row), len(rec.Channels))
			}
			for _, v := range row {
				if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
					t.Fatalf("row %d holds %v", i, v)
				}
			}
		}
		if hz, err := rec.NominalRateHz(); err == nil && !(hz > 0) {
			t.Fatalf("NominalRateHz = %v", hz)
		}
	})
}
