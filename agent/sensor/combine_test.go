package sensor_test

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/agent/sensor"
	"github.com/outpost-ml/outpost/agent/sensor/sensortest"
)

// fakeSource is a hand-written Source: each Read writes base, base+1, … and counts reads.
type fakeSource struct {
	info     sensor.Info
	base     float32
	readErr  error
	closeErr error
	reads    int
	closed   bool
}

func (f *fakeSource) Read(ctx context.Context, dst []float32) (time.Time, error) {
	if err := ctx.Err(); err != nil {
		return time.Time{}, err
	}
	f.reads++
	if f.readErr != nil {
		return time.Time{}, f.readErr
	}
	if len(dst) != f.info.Channels {
		return time.Time{}, errors.New("wrong dst length")
	}
	for i := range dst {
		dst[i] = f.base + float32(i)
	}
	return time.Now(), nil
}
func (f *fakeSource) Info() sensor.Info { return f.info }
func (f *fakeSource) Close() error      { f.closed = true; return f.closeErr }

func fake(kind string, rate float64, channels int, base float32, names ...string) *fakeSource {
	return &fakeSource{info: sensor.Info{Kind: kind, RateHz: rate, Channels: channels, Names: names}, base: base}
}

func TestCombineReads(t *testing.T) {
	a := fake("bme280", 10, 3, 100, "temperature", "humidity", "pressure")
	b := fake("ads1115", 10, 2, 200, "AIN0", "AIN1")
	c := fake("gpio", 10, 1, 300)
	comb, err := sensor.Combine(a, b, c)
	if err != nil {
		t.Fatal(err)
	}
	info := comb.Info()
	if info.Kind != "bme280+ads1115+gpio" || info.Channels != 6 || info.RateHz != 10 {
		t.Fatalf("Info() = %+v, want kind bme280+ads1115+gpio, 6 channels at 10 Hz", info)
	}
	if got, want := info.ChannelNames(), []string{"temperature", "humidity", "pressure", "AIN0", "AIN1", "gpio.0"}; !slices.Equal(got, want) {
		t.Fatalf("ChannelNames() = %q, want %q", got, want)
	}
	dst := make([]float32, 6)
	for i := range 3 {
		before := time.Now()
		ts, err := comb.Read(t.Context(), dst)
		if err != nil {
			t.Fatalf("Read #%d = %v", i, err)
		}
		if want := []float32{100, 101, 102, 200, 201, 300}; !slices.Equal(dst, want) {
			t.Fatalf("Read #%d = %v, want %v", i, dst, want)
		}
		if ts.Before(before) {
			t.Fatalf("Read #%d stamped %v, before the read began at %v", i, ts, before)
		}
	}
	if a.reads != 3 || b.reads != 3 || c.reads != 3 {
		t.Fatalf("reads = %d, %d, %d; want 3 each", a.reads, b.reads, c.reads)
	}
	if got := comb.Sources(); len(got) != 3 || got[0] != a || got[2] != c {
		t.Fatalf("Sources() = %v, want the three sources in order", got)
	}
	if err := comb.Close(); err != nil || !a.closed || !b.closed || !c.closed {
		t.Fatalf("Close = %v, closed %v %v %v; want nil and all closed", err, a.closed, b.closed, c.closed)
	}
}

func TestCombineErrors(t *testing.T) {
	tests := []struct {
		name string
		srcs []sensor.Source
		want string
	}{
		{"none", nil, "no sources"},
		{"rate mismatch", []sensor.Source{fake("bme280", 10, 3, 0), fake("sim:vibration", 50, 1, 0)},
			"bme280 samples at 10 Hz but sim:vibration at 50 Hz"},
		{"zero rate", []sensor.Source{fake("a", 10, 1, 0), fake("b", 0, 1, 0)}, "sensor 2 (b) rate 0 Hz"},
		{"no channels", []sensor.Source{fake("a", 10, 1, 0), fake("b", 10, 0, 0)}, "sensor 2 (b) has 0 channels"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := sensor.Combine(tt.srcs...)
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("Combine = %v, want one line containing %q", err, tt.want)
			}
		})
	}
}

func TestCombineReadError(t *testing.T) {
	a := fake("a", 10, 1, 0)
	b := fake("bme280", 10, 3, 0)
	boom := errors.New("i2c: no ack")
	b.readErr = boom
	c := fake("c", 10, 1, 0)
	comb, err := sensor.Combine(a, b, c)
	if err != nil {
		t.Fatal(err)
	}
	_, err = comb.Read(t.Context(), make([]float32, 5))
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "sensor 2 (bme280)") {
		t.Fatalf("Read = %v, want the second sensor's error naming it", err)
	}
	if c.reads != 0 {
		t.Fatalf("the sensor after the failing one was read %d times, want 0", c.reads)
	}
	b.readErr = nil
	if _, err := comb.Read(t.Context(), make([]float32, 5)); err != nil {
		t.Fatalf("Read after recovery = %v", err)
	}
	if _, err := comb.Read(t.Context(), make([]float32, 4)); err == nil || !strings.Contains(err.Error(), "want 5") {
		t.Fatalf("Read into 4 values = %v, want an error", err)
	}
}

func TestCombineClose(t *testing.T) {
	a, b, c := fake("a", 10, 1, 0), fake("b", 10, 1, 0), fake("c", 10, 1, 0)
	a.closeErr, c.closeErr = errors.New("busy"), errors.New("gone")
	comb, err := sensor.Combine(a, b, c)
	if err != nil {
		t.Fatal(err)
	}
	err = comb.Close()
	if err == nil || !strings.Contains(err.Error(), "close sensor 1 (a): busy") || !strings.Contains(err.Error(), "1 more") ||
		strings.Contains(err.Error(), "\n") {
		t.Fatalf("Close = %v, want the first error and a count, on one line", err)
	}
	if !a.closed || !b.closed || !c.closed {
		t.Fatalf("closed %v %v %v; want all closed despite errors", a.closed, b.closed, c.closed)
	}
}

func TestCombineNames(t *testing.T) {
	tests := []struct {
		name  string
		srcs  []sensor.Source
		names []string
	}{
		{"repeats numbered", []sensor.Source{fake("x", 5, 2, 0, "t", "t"), fake("y", 5, 1, 0, "t")}, []string{"t", "t#2", "t#3"}},
		{"suffix taken later", []sensor.Source{fake("x", 5, 2, 0, "t", "t"), fake("y", 5, 1, 0, "t#2")}, []string{"t", "t#3", "t#2"}},
		{"same kind twice", []sensor.Source{fake("ads1115", 5, 1, 0), fake("ads1115", 5, 1, 0)}, []string{"ads1115.0", "ads1115.0#2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			comb, err := sensor.Combine(tt.srcs...)
			if err != nil {
				t.Fatal(err)
			}
			if got := comb.Info().ChannelNames(); !slices.Equal(got, tt.names) {
				t.Fatalf("ChannelNames() = %q, want %q", got, tt.names)
			}
		})
	}
}

func TestCombinePace(t *testing.T) {
	paced := func(read float64) *fakeSource {
		f := fake("r", 50, 1, 0)
		f.info.ReadHz = read
		return f
	}
	tests := []struct {
		name string
		srcs []sensor.Source
		want time.Duration // combined read interval; 0 is as fast as possible
	}{
		{"live", []sensor.Source{paced(0), paced(0)}, 20 * time.Millisecond},
		{"live and max: the live one sets the pace", []sensor.Source{paced(math.Inf(1)), paced(0)}, 20 * time.Millisecond},
		{"speeds 2 and 4: the slower", []sensor.Source{paced(100), paced(200)}, 10 * time.Millisecond},
		{"all max", []sensor.Source{paced(math.Inf(1)), paced(math.Inf(1))}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			comb, err := sensor.Combine(tt.srcs...)
			if err != nil {
				t.Fatal(err)
			}
			if got := comb.Info().ReadInterval(); got != tt.want {
				t.Fatalf("ReadInterval() = %v, want %v", got, tt.want)
			}
			if comb.Info().RateHz != 50 {
				t.Fatalf("RateHz = %v, want the sources' 50", comb.Info().RateHz)
			}
		})
	}
}

func TestInfoReadInterval(t *testing.T) {
	tests := []struct {
		info sensor.Info
		want time.Duration
	}{
		{sensor.Info{RateHz: 100}, 10 * time.Millisecond},
		{sensor.Info{RateHz: 100, ReadHz: 200}, 5 * time.Millisecond},
		{sensor.Info{RateHz: 100, ReadHz: math.Inf(1)}, 0},
	}
	for _, tt := range tests {
		if got := tt.info.ReadInterval(); got != tt.want {
			t.Errorf("%+v.ReadInterval() = %v, want %v", tt.info, got, tt.want)
		}
	}
}

func TestCombinedContract(t *testing.T) {
	sensortest.Run(t, func(t *testing.T) sensor.Source {
		comb, err := sensor.Combine(fake("a", 10, 2, 1, "p", "q"), fake("b", 10, 1, 5))
		if err != nil {
			t.Fatal(err)
		}
		return comb
	})
}
