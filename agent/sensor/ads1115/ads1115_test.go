package ads1115_test

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/synctest"

	"periph.io/x/conn/v3/i2c/i2ctest"
	"periph.io/x/conn/v3/physic"

	"github.com/outpost-ml/outpost/agent/sensor"
	"github.com/outpost-ml/outpost/agent/sensor/ads1115"
	"github.com/outpost-ml/outpost/agent/sensor/sensortest"
)

const mV = physic.MilliVolt

func TestConfigWord(t *testing.T) {
	// Built by hand from datasheet table 8: OS | MUX | PGA | MODE | DR | COMP_QUE=11.
	tests := []struct {
		opts ads1115.Options
		mux  ads1115.Mux
		want uint16
	}{
		// 1 100 001 1 100 0 0 0 11: AIN0/GND, ±4.096 V, 128 SPS.
		{ads1115.Options{FullScale: 4096 * mV, DataRate: 128}, ads1115.AIN0, 0xC383},
		// 1 111 010 1 111 0 0 0 11: AIN3/GND, ±2.048 V, 860 SPS.
		{ads1115.Options{FullScale: 2048 * mV, DataRate: 860}, ads1115.AIN3, 0xF5E3},
		// 1 000 000 1 000 0 0 0 11: AIN0-AIN1, ±6.144 V, 8 SPS.
		{ads1115.Options{FullScale: 6144 * mV, DataRate: 8}, ads1115.Diff01, 0x8103},
		// 1 011 101 1 101 0 0 0 11: AIN2-AIN3, ±0.256 V, 250 SPS.
		{ads1115.Options{FullScale: 256 * mV, DataRate: 250}, ads1115.Diff23, 0xBBA3},
	}
	for _, tt := range tests {
		t.Run(tt.mux.String(), func(t *testing.T) {
			dev, err := ads1115.New(&i2ctest.Playback{Ops: []i2ctest.IO{{Addr: 0x48, W: []byte{0x01}, R: []byte{0x85, 0x83}}}}, 0x48, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if got := dev.Config(tt.mux); got != tt.want {
				t.Fatalf("Config(%v) = %#04x, want %#04x", tt.mux, got, tt.want)
			}
		})
	}
}

// readOps is the transcript of one Read: write config, poll OS (busy polls report 0 in bit
// 15), read the conversion register.
func readOps(addr uint16, cfg uint16, busyPolls int, raw uint16) []i2ctest.IO {
	ops := []i2ctest.IO{{Addr: addr, W: []byte{0x01, byte(cfg >> 8), byte(cfg)}}}
	busy := cfg &^ 0x8000
	for range busyPolls {
		ops = append(ops, i2ctest.IO{Addr: addr, W: []byte{0x01}, R: []byte{byte(busy >> 8), byte(busy)}})
	}
	ops = append(ops,
		i2ctest.IO{Addr: addr, W: []byte{0x01}, R: []byte{byte(cfg >> 8), byte(cfg)}},
		i2ctest.IO{Addr: addr, W: []byte{0x00}, R: []byte{byte(raw >> 8), byte(raw)}})
	return ops
}

func TestReadPlayback(t *testing.T) {
	// LSB = FSR/32768 (datasheet 9.3.4, table 3): 125 µV at ±4.096 V, 62.5 µV at ±2.048 V.
	tests := []struct {
		name string
		opts ads1115.Options
		mux  ads1115.Mux
		busy int
		raw  uint16
		want physic.ElectricPotential
	}{
		{"positive full scale", ads1115.Options{FullScale: 4096 * mV, DataRate: 128}, ads1115.AIN0, 0, 0x7FFF, 4096*mV - 125*physic.MicroVolt},
		{"negative full scale", ads1115.Options{FullScale: 4096 * mV, DataRate: 128}, ads1115.Diff01, 1, 0x8000, -4096 * mV},
		{"half of 2.048", ads1115.Options{FullScale: 2048 * mV, DataRate: 860}, ads1115.AIN2, 3, 0x4000, 1024 * mV},
		{"one lsb at 0.256", ads1115.Options{FullScale: 256 * mV, DataRate: 8}, ads1115.AIN1, 0, 0x0001, 7812 * physic.NanoVolt},
		{"zero", ads1115.Options{FullScale: 6144 * mV, DataRate: 475}, ads1115.AIN3, 2, 0x0000, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				probe, _ := ads1115.New(&i2ctest.Playback{Ops: []i2ctest.IO{{Addr: 0x4A, W: []byte{0x01}, R: []byte{0x85, 0x83}}}}, 0x4A, tt.opts)
				ops := append([]i2ctest.IO{{Addr: 0x4A, W: []byte{0x01}, R: []byte{0x85, 0x83}}},
					readOps(0x4A, probe.Config(tt.mux), tt.busy, tt.raw)...)
				bus := &i2ctest.Playback{Ops: ops, DontPanic: true}
				dev, err := ads1115.New(bus, 0x4A, tt.opts)
				if err != nil {
					t.Fatal(err)
				}
				got, err := dev.Read(t.Context(), tt.mux)
				if err != nil {
					t.Fatal(err)
				}
				if got != tt.want {
					t.Fatalf("Read(%v) = %v, want %v", tt.mux, got, tt.want)
				}
				if err := bus.Close(); err != nil {
					t.Fatal(err)
				}
			})
		})
	}
}

type failBus struct {
	i2ctest.Playback
	failAt, n int
}

func (f *failBus) Tx(addr uint16, w, r []byte) error {
	if f.n++; f.n == f.failAt {
		return errors.New("i2c: remote I/O error")
	}
	return f.Playback.Tx(addr, w, r)
}

func checkErr(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("error = %v, want one line containing %q", err, want)
	}
}

func TestErrors(t *testing.T) {
	opts := ads1115.DefaultOptions
	probe, _ := ads1115.New(&i2ctest.Playback{Ops: []i2ctest.IO{{Addr: 0x48, W: []byte{0x01}, R: []byte{0, 0}}}}, 0x48, opts)
	cfg := probe.Config(ads1115.AIN1)
	hello := i2ctest.IO{Addr: 0x48, W: []byte{0x01}, R: []byte{0x85, 0x83}}
	tests := []struct {
		name   string
		ops    []i2ctest.IO
		failAt int
		want   string
		is     error
	}{
		{name: "absent", failAt: 1, want: "ads1115 at 0x48: read config: i2c: remote I/O error"},
		{name: "start fails", ops: []i2ctest.IO{hello}, failAt: 2, want: "start conversion on AIN1"},
		{name: "poll fails", ops: append([]i2ctest.IO{hello}, readOps(0x48, cfg, 0, 0)...), failAt: 3, want: "poll conversion on AIN1"},
		{name: "read fails", ops: append([]i2ctest.IO{hello}, readOps(0x48, cfg, 0, 0)...), failAt: 4, want: "read conversion on AIN1"},
		{name: "never ready", ops: append([]i2ctest.IO{hello}, readOps(0x48, cfg, 9, 0)...), want: "conversion on AIN1 not ready after", is: ads1115.ErrTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				bus := &failBus{Playback: i2ctest.Playback{Ops: tt.ops, DontPanic: true}, failAt: tt.failAt}
				dev, err := ads1115.New(bus, 0x48, opts)
				if err == nil {
					_, err = dev.Read(t.Context(), ads1115.AIN1)
				}
				checkErr(t, err, tt.want)
				if tt.is != nil && !errors.Is(err, tt.is) {
					t.Fatalf("%v is not %v", err, tt.is)
				}
			})
		})
	}
	if _, err := ads1115.New(&i2ctest.Playback{}, 0x48, ads1115.Options{FullScale: 5000 * mV, DataRate: 8}); err == nil {
		t.Fatal("New accepted a 5 V full scale")
	}
	if _, err := ads1115.New(&i2ctest.Playback{}, 0x48, ads1115.Options{FullScale: 4096 * mV, DataRate: 100}); err == nil {
		t.Fatal("New accepted 100 SPS")
	}
}

// chip models the ADS1115: a conversion is ready at the first poll and reads the value set
// for the input the config selected. Safe for concurrent use.
type chip struct {
	mu     sync.Mutex
	cfg    uint16
	volts  map[ads1115.Mux]uint16
	closed bool
}

func (c *chip) String() string                  { return "chip" }
func (c *chip) SetSpeed(physic.Frequency) error { return nil }
func (c *chip) Close() error                    { c.mu.Lock(); defer c.mu.Unlock(); c.closed = true; return nil }
func (c *chip) Tx(addr uint16, w, r []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var v uint16
	switch {
	case w[0] == 0x01 && len(w) == 3:
		c.cfg = uint16(w[1])<<8 | uint16(w[2])
		return nil
	case w[0] == 0x01:
		v = c.cfg | 0x8000
	case w[0] == 0x00:
		v = c.volts[ads1115.Mux(c.cfg>>12&7)]
	}
	r[0], r[1] = byte(v>>8), byte(v)
	return nil
}

func newChip() *chip {
	return &chip{volts: map[ads1115.Mux]uint16{ads1115.AIN0: 8000, ads1115.AIN1: 16000, ads1115.AIN2: 0xFFFF, ads1115.AIN3: 0x7FFF, ads1115.Diff01: 0x8000}}
}

func TestSource(t *testing.T) {
	c := newChip()
	dev, err := ads1115.New(c, 0x48, ads1115.DefaultOptions)
	if err != nil {
		t.Fatal(err)
	}
	src := ads1115.NewSource(dev, c, 10, []ads1115.Mux{ads1115.AIN0, ads1115.AIN1, ads1115.AIN2, ads1115.AIN3, ads1115.Diff01})
	v := make([]float32, src.Info().Channels)
	if _, err := src.Read(t.Context(), v); err != nil {
		t.Fatal(err)
	}
	want := []float32{1, 2, -0.000125, 4.095875, -4.096} // 125 µV per count at ±4.096 V
	for i := range want {
		if d := v[i] - want[i]; d > 1e-6 || d < -1e-6 {
			t.Fatalf("Read = %v, want %v", v, want)
		}
	}
	if err := src.Close(); err != nil || !c.closed {
		t.Fatalf("Close = %v, bus closed %v", err, c.closed)
	}
	sensortest.Run(t, func(t *testing.T) sensor.Source {
		c := newChip()
		dev, err := ads1115.New(c, 0x48, ads1115.DefaultOptions)
		if err != nil {
			t.Fatal(err)
		}
		return ads1115.NewSource(dev, c, 50, []ads1115.Mux{ads1115.AIN0, ads1115.Diff23})
	})
}

func TestOpenErrors(t *testing.T) {
	for _, tt := range []struct{ spec, want string }{
		{"ads1115?addr=0x50", `addr "0x50" is not one of 0x48, 0x49, 0x4a, 0x4b`},
		{"ads1115?in=4", `input "4" must be 0, 1, 2, 3, 0-1, 0-3, 1-3 or 2-3`},
		{"ads1115?in=0,,1", `input ""`},
		{"ads1115?fsr=5", `fsr "5"`},
		{"ads1115?fsr=abc", `fsr "abc"`},
		{"ads1115?dr=100", `dr "100" must be one of [8 16 32 64 128 250 475 860]`},
		{"ads1115?dr=8&rate=2", "too fast for 4 inputs at 8 SPS"},
		{"ads1115?gain=1", `unknown argument "gain"`},
		{"ads1115?bus=nosuchbus&fsr=2.048", `open i2c bus "nosuchbus"`},
	} {
		t.Run(tt.spec, func(t *testing.T) {
			src, err := sensor.Open(tt.spec)
			if err == nil {
				src.Close()
			}
			checkErr(t, err, tt.want)
		})
	}
}
