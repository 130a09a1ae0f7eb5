package mpu6050_test

import (
	"encoding/binary"
	"errors"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"

	"periph.io/x/conn/v3/i2c/i2ctest"
	"periph.io/x/conn/v3/physic"

	"github.com/outpost-ml/outpost/agent/sensor"
	"github.com/outpost-ml/outpost/agent/sensor/mpu6050"
	"github.com/outpost-ml/outpost/agent/sensor/sensortest"
)

// initOps is New's transcript from the register map: WHO_AM_I, DEVICE_RESET, wake with the
// PLL clock, read back PWR_MGMT_1, then SMPLRT_DIV, CONFIG, GYRO_CONFIG, ACCEL_CONFIG.
func initOps(addr uint16, dlpf, fsSel, afsSel byte) []i2ctest.IO {
	return []i2ctest.IO{
		{Addr: addr, W: []byte{0x75}, R: []byte{0x68}},
		{Addr: addr, W: []byte{0x6B, 0x80}},
		{Addr: addr, W: []byte{0x6B, 0x01}},
		{Addr: addr, W: []byte{0x6B}, R: []byte{0x01}},
		{Addr: addr, W: []byte{0x19, 0x00}},
		{Addr: addr, W: []byte{0x1A, dlpf}},
		{Addr: addr, W: []byte{0x1B, fsSel << 3}},
		{Addr: addr, W: []byte{0x1C, afsSel << 3}},
	}
}

// data encodes accel, temperature and gyro raw values as registers 0x3B..0x48.
func data(ax, ay, az, temp, gx, gy, gz int16) []byte {
	b := make([]byte, 14)
	for i, v := range []int16{ax, ay, az, temp, gx, gy, gz} {
		binary.BigEndian.PutUint16(b[2*i:], uint16(v))
	}
	return b
}

func TestPlayback(t *testing.T) {
	tests := []struct {
		name       string
		opts       mpu6050.Options
		dlpf       byte
		fs, afs    byte
		raw        []byte
		wantAccel  [3]float64
		wantGyro   [3]float64
		wantTempC  float64
		wantRanges [2]int
	}{
		{
			// ±2 g: 16384 LSB/g; ±250 °/s: 131 LSB/(°/s) (PS 6.1, 6.2).
			name: "defaults", raw: data(16384, -8192, 0, -521, 131, -262, 0),
			wantAccel: [3]float64{1, -0.5, 0}, wantGyro: [3]float64{1, -2, 0},
			wantTempC: -521.0/340 + 36.53, wantRanges: [2]int{2, 250},
		},
		{
			// ±16 g: 2048 LSB/g; ±2000 °/s: 16.4 LSB/(°/s); full-scale raw values.
			name: "widest", opts: mpu6050.Options{AccelRange: 16, GyroRange: 2000, DLPF: 6}, dlpf: 6, fs: 3, afs: 3,
			raw:       data(32767, -32768, 2048, 0, 164, -32768, 0),
			wantAccel: [3]float64{32767.0 / 2048, -16, 1}, wantGyro: [3]float64{10, -32768 / 16.4, 0},
			wantTempC: 36.53, wantRanges: [2]int{16, 2000},
		},
		{
			name: "middle", opts: mpu6050.Options{AccelRange: 4, GyroRange: 500, DLPF: 3}, dlpf: 3, fs: 1, afs: 1,
			raw:       data(8192, 4096, -8192, 340, 655, 0, -131),
			wantAccel: [3]float64{1, 0.5, -1}, wantGyro: [3]float64{10, 0, -2},
			wantTempC: 37.53, wantRanges: [2]int{4, 500},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ops := append(initOps(0x69, tt.dlpf, tt.fs, tt.afs), i2ctest.IO{Addr: 0x69, W: []byte{0x3B}, R: tt.raw})
				bus := &i2ctest.Playback{Ops: ops, DontPanic: true}
				dev, err := mpu6050.New(t.Context(), bus, 0x69, tt.opts)
				if err != nil {
					t.Fatal(err)
				}
				if a, g := dev.Ranges(); a != tt.wantRanges[0] || g != tt.wantRanges[1] {
					t.Fatalf("Ranges() = %d, %d, want %v", a, g, tt.wantRanges)
				}
				s, err := dev.Sense(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				for i := range 3 {
					if math.Abs(s.Accel[i]-tt.wantAccel[i]) > 1e-12 || math.Abs(s.Gyro[i]-tt.wantGyro[i]) > 1e-9 {
						t.Fatalf("Sense = %+v, want accel %v gyro %v", s, tt.wantAccel, tt.wantGyro)
					}
				}
				if math.Abs(s.TempC-tt.wantTempC) > 1e-9 {
					t.Fatalf("temperature %v °C, want %v", s.TempC, tt.wantTempC)
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

func TestNewErrors(t *testing.T) {
	asleep := initOps(0x68, 0, 0, 0)[:3]
	for range 11 {
		asleep = append(asleep, i2ctest.IO{Addr: 0x68, W: []byte{0x6B}, R: []byte{0x40}})
	}
	tests := []struct {
		name   string
		ops    []i2ctest.IO
		failAt int
		opts   mpu6050.Options
		want   string
		is     error
	}{
		{name: "mpu6500", ops: []i2ctest.IO{{Addr: 0x68, W: []byte{0x75}, R: []byte{0x70}}}, want: "WHO_AM_I 0x70, want 0x68", is: mpu6050.ErrWhoAmI},
		{name: "absent", failAt: 1, want: "read WHO_AM_I: i2c: remote I/O error"},
		{name: "reset fails", ops: initOps(0x68, 0, 0, 0), failAt: 2, want: "reset: i2c: remote I/O error"},
		{name: "stays asleep", ops: asleep, want: "still asleep or resetting (PWR_MGMT_1 0x40)"},
		{name: "config fails", ops: initOps(0x68, 0, 0, 0), failAt: 7, want: "configure register 0x1b"},
		{name: "bad accel range", opts: mpu6050.Options{AccelRange: 3}, want: "accelerometer range 3 g"},
		{name: "bad gyro range", opts: mpu6050.Options{GyroRange: 300}, want: "gyroscope range 300"},
		{name: "bad dlpf", opts: mpu6050.Options{DLPF: 7}, want: "DLPF setting 7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				bus := &failBus{Playback: i2ctest.Playback{Ops: tt.ops, DontPanic: true}, failAt: tt.failAt}
				_, err := mpu6050.New(t.Context(), bus, 0x68, tt.opts)
				checkErr(t, err, tt.want)
				if tt.is != nil && !errors.Is(err, tt.is) {
					t.Fatalf("%v is not %v", err, tt.is)
				}
			})
		})
	}
}

func TestSenseBusError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ops := initOps(0x68, 0, 0, 0)
		bus := &failBus{Playback: i2ctest.Playback{Ops: ops, DontPanic: true}, failAt: len(ops) + 1}
		dev, err := mpu6050.New(t.Context(), bus, 0x68, mpu6050.Options{})
		if err != nil {
			t.Fatal(err)
		}
		_, err = dev.Sense(t.Context())
		checkErr(t, err, "read data: i2c: remote I/O error")
	})
}

// chip models the MPU-6050's registers: reads auto-increment, writes store. Safe for
// concurrent use.
type chip struct {
	mu     sync.Mutex
	regs   [256]byte
	closed bool
}

func newChip() *chip {
	c := &chip{}
	c.regs[0x75] = 0x68
	copy(c.regs[0x3B:], data(0, 0, 16384, 0, 131, 0, 0))
	return c
}

func (c *chip) String() string                  { return "chip" }
func (c *chip) SetSpeed(physic.Frequency) error { return nil }
func (c *chip) Close() error                    { c.mu.Lock(); defer c.mu.Unlock(); c.closed = true; return nil }
func (c *chip) Tx(addr uint16, w, r []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	reg := int(w[0])
	for i, v := range w[1:] {
		c.regs[reg+i] = v
	}
	if reg == 0x6B && len(w) > 1 {
		c.regs[0x6B] &^= 0x80 // the reset bit clears itself
	}
	copy(r, c.regs[reg:])
	return nil
}

func TestSourceContract(t *testing.T) {
	for _, out := range []mpu6050.Output{mpu6050.OutAccel, mpu6050.OutGyro, mpu6050.OutAll} {
		sensortest.Run(t, func(t *testing.T) sensor.Source {
			c := newChip()
			var dev *mpu6050.Dev
			synctest.Test(t, func(t *testing.T) { // skips the 100 ms reset wait
				var err error
				if dev, err = mpu6050.New(t.Context(), c, 0x68, mpu6050.Options{}); err != nil {
					t.Fatal(err)
				}
			})
			return mpu6050.NewSource(dev, c, 25, out)
		})
	}
}

func TestSourceChannels(t *testing.T) {
	c := newChip()
	var dev *mpu6050.Dev
	synctest.Test(t, func(t *testing.T) {
		var err error
		if dev, err = mpu6050.New(t.Context(), c, 0x68, mpu6050.Options{}); err != nil {
			t.Fatal(err)
		}
	})
	src := mpu6050.NewSource(dev, c, 25, mpu6050.OutAll)
	v := make([]float32, src.Info().Channels)
	if _, err := src.Read(t.Context(), v); err != nil {
		t.Fatal(err)
	}
	if want := []float32{0, 0, 1, 1, 0, 0}; !slices.Equal(v, want) {
		t.Fatalf("Read = %v, want %v", v, want)
	}
	if err := src.Close(); err != nil || !c.closed {
		t.Fatalf("Close = %v, bus closed %v", err, c.closed)
	}
}

func TestOpenErrors(t *testing.T) {
	for _, tt := range []struct{ spec, want string }{
		{"mpu6050?addr=0x76", `addr "0x76" is not one of 0x68, 0x69`},
		{"mpu6050?accel=3", `accel "3" must be one of [2 4 8 16]`},
		{"mpu6050?gyro=100", `gyro "100"`},
		{"mpu6050?dlpf=7", `dlpf "7"`},
		{"mpu6050?out=mag", `out "mag" must be accel, gyro or all`},
		{"mpu6050?rate=2000", `rate "2000"`},
		{"mpu6050?axis=x", `unknown argument "axis"`},
		{"mpu6050?bus=nosuchbus", `open i2c bus "nosuchbus"`},
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
