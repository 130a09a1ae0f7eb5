package bme280_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"testing/synctest"

	"periph.io/x/conn/v3/i2c/i2ctest"
	"periph.io/x/conn/v3/physic"

	"github.com/outpost-ml/outpost/agent/sensor"
	"github.com/outpost-ml/outpost/agent/sensor/bme280"
	"github.com/outpost-ml/outpost/agent/sensor/sensortest"
)

// exampleCal holds the trimming values of the worked example in the Bosch BMP280 datasheet
// (BST-BMP280-DS001, section 3.12 "Calculating pressure and temperature"). The BME280 uses
// the same temperature and pressure registers and formulas (BME280 datasheet 5.2, 4.2.3), so
// the example's results hold for it: adc_T 519888 gives t_fine 128422 and 25.08 °C, adc_P
// 415148 gives 100653.27 Pa (double formula). The datasheets give no humidity example; H1..H6
// are those of a typical part, and humidity is checked against the datasheet's double
// formula (BME280 datasheet 8.1) computed independently below.
var exampleCal = bme280.Calibration{
	T1: 27504, T2: 26435, T3: -1000,
	P1: 36477, P2: -10685, P3: 3024, P4: 2855, P5: 140, P6: -7, P7: 15500, P8: -14600, P9: 6000,
	H1: 75, H2: 362, H3: 0, H4: 313, H5: 50, H6: 30,
}

const (
	exampleAdcT = 519888
	exampleAdcP = 415148
	exampleAdcH = 30000
)

// calBytes encodes c as the chip stores it (datasheet table 16): 0x88..0xA1 and 0xE1..0xE7.
func calBytes(c bme280.Calibration) (c1 [26]byte, c2 [7]byte) {
	le := binary.LittleEndian
	for i, v := range []uint16{c.T1, uint16(c.T2), uint16(c.T3), c.P1, uint16(c.P2), uint16(c.P3),
		uint16(c.P4), uint16(c.P5), uint16(c.P6), uint16(c.P7), uint16(c.P8), uint16(c.P9)} {
		le.PutUint16(c1[2*i:], v)
	}
	c1[24] = 0x00 // 0xA0 reserved
	c1[25] = c.H1
	le.PutUint16(c2[0:], uint16(c.H2))
	c2[2] = c.H3
	h4, h5 := uint16(c.H4)&0xFFF, uint16(c.H5)&0xFFF
	c2[3] = byte(h4 >> 4)
	c2[4] = byte(h4&0x0F) | byte(h5&0x0F)<<4
	c2[5] = byte(h5 >> 4)
	c2[6] = byte(c.H6)
	return c1, c2
}

// dataBytes encodes a raw measurement as registers 0xF7..0xFE.
func dataBytes(r bme280.Raw) []byte {
	return []byte{
		byte(r.P >> 12), byte(r.P >> 4), byte(r.P<<4) & 0xF0,
		byte(r.T >> 12), byte(r.T >> 4), byte(r.T<<4) & 0xF0,
		byte(r.H >> 8), byte(r.H),
	}
}

// The double-precision formulas of datasheet 8.1, written out independently of the driver.
func floatCompensate(c bme280.Calibration, r bme280.Raw) (tC, pPa, hRH float64) {
	adcT, adcP, adcH := float64(r.T), float64(r.P), float64(r.H)
	v1 := (adcT/16384 - float64(c.T1)/1024) * float64(c.T2)
	d := adcT/131072 - float64(c.T1)/8192
	v2 := d * d * float64(c.T3)
	tFine := float64(int32(v1 + v2))
	tC = (v1 + v2) / 5120

	v1 = tFine/2 - 64000
	v2 = v1 * v1 * float64(c.P6) / 32768
	v2 += v1 * float64(c.P5) * 2
	v2 = v2/4 + float64(c.P4)*65536
	v1 = (float64(c.P3)*v1*v1/524288 + float64(c.P2)*v1) / 524288
	v1 = (1 + v1/32768) * float64(c.P1)
	p := 1048576 - adcP
	p = (p - v2/4096) * 6250 / v1
	v1 = float64(c.P9) * p * p / 2147483648
	v2 = p * float64(c.P8) / 32768
	pPa = p + (v1+v2+float64(c.P7))/16

	h := tFine - 76800
	h = (adcH - (float64(c.H4)*64 + float64(c.H5)/16384*h)) *
		(float64(c.H2) / 65536 * (1 + float64(c.H6)/67108864*h*(1+float64(c.H3)/67108864*h)))
	h *= 1 - float64(c.H1)*h/524288
	hRH = min(max(h, 0), 100)
	return tC, pPa, hRH
}

func rh(h physic.RelativeHumidity) float64 { return float64(h) / float64(physic.PercentRH) }
func pa(p physic.Pressure) float64         { return float64(p) / float64(physic.Pascal) }

func TestCompensateDatasheetExample(t *testing.T) {
	env := exampleCal.Compensate(bme280.Raw{T: exampleAdcT, P: exampleAdcP, H: exampleAdcH})
	if got := env.Temperature.Celsius(); math.Abs(got-25.08) > 1e-9 {
		t.Errorf("temperature = %v °C, want 25.08 (datasheet example)", got)
	}
	// The example's 100653.27 Pa is the double formula's result; the 64-bit integer formula
	// (resolution 1/256 Pa, t_fine an integer) gives 100653.2539.
	if got := pa(env.Pressure); math.Abs(got-100653.27) > 0.02 {
		t.Errorf("pressure = %v Pa, want 100653.27 ± 0.02 (datasheet example)", got)
	}
	// The example table carries t_fine unrounded (128422.2869) into the pressure formula, the
	// code of section 8.1 truncates it to 128422: that moves the double result by 0.012 Pa.
	tC, pPa, _ := floatCompensate(exampleCal, bme280.Raw{T: exampleAdcT, P: exampleAdcP, H: exampleAdcH})
	if math.Abs(tC-25.08) > 0.005 || math.Abs(pPa-100653.27) > 0.02 {
		t.Errorf("test's double formulas give %v °C, %v Pa, want the datasheet's 25.08 °C, 100653.27 Pa", tC, pPa)
	}
}

// The integer path must agree with the datasheet's double formulas over the sensor's range,
// within the integer outputs' resolution (0.01 °C, 1/256 Pa, 1/1024 %RH) plus the truncation
// each intermediate shift adds (measured: well under the tolerances below).
func TestCompensateMatchesDoubleFormulas(t *testing.T) {
	var worstT, worstP, worstH float64
	for adcT := int32(380000); adcT <= 620000; adcT += 12000 {
		for adcP := int32(250000); adcP <= 600000; adcP += 35000 {
			for adcH := int32(15000); adcH <= 45000; adcH += 3000 {
				r := bme280.Raw{T: adcT, P: adcP, H: adcH}
				env := exampleCal.Compensate(r)
				tC, pPa, hRH := floatCompensate(exampleCal, r)
				worstT = max(worstT, math.Abs(env.Temperature.Celsius()-tC))
				worstP = max(worstP, math.Abs(pa(env.Pressure)-pPa))
				worstH = max(worstH, math.Abs(rh(env.Humidity)-hRH))
			}
		}
	}
	t.Logf("largest differences integer vs double: %.4f °C, %.4f Pa, %.4f %%RH", worstT, worstP, worstH)
	if worstT > 0.01 || worstP > 0.1 || worstH > 0.02 {
		t.Fatalf("integer path differs from the double formulas by %v °C, %v Pa, %v %%RH; want ≤ 0.01, 0.1, 0.02", worstT, worstP, worstH)
	}
}

func TestParseCalibrationNegativeH4H5(t *testing.T) {
	want := exampleCal
	want.H4, want.H5 = -300, -7 // 12-bit negatives must keep their sign
	c1, c2 := calBytes(want)
	if got := bme280.ParseCalibration(c1, c2); got != want {
		t.Fatalf("ParseCalibration = %+v, want %+v", got, want)
	}
}

// initOps is the transcript of New at addr with oversampling code osrs and filter code filt,
// built from the datasheet: chip id, soft reset, im_update poll, calibration, then
// ctrl_hum, config, ctrl_meas (sleep mode).
func initOps(addr uint16, osrs, filt byte) []i2ctest.IO {
	c1, c2 := calBytes(exampleCal)
	return []i2ctest.IO{
		{Addr: addr, W: []byte{0xD0}, R: []byte{0x60}},
		{Addr: addr, W: []byte{0xE0, 0xB6}},
		{Addr: addr, W: []byte{0xF3}, R: []byte{0x01}}, // still copying NVM
		{Addr: addr, W: []byte{0xF3}, R: []byte{0x00}},
		{Addr: addr, W: []byte{0x88}, R: c1[:]},
		{Addr: addr, W: []byte{0xE1}, R: c2[:]},
		{Addr: addr, W: []byte{0xF2, osrs}},
		{Addr: addr, W: []byte{0xF5, filt << 2}},
		{Addr: addr, W: []byte{0xF4, osrs<<5 | osrs<<2}},
	}
}

func TestPlayback(t *testing.T) {
	raw := bme280.Raw{T: exampleAdcT, P: exampleAdcP, H: exampleAdcH}
	ops := append(initOps(0x77, 3, 2), // osrs ×4 = 0b011, filter 4 = 0b010
		i2ctest.IO{Addr: 0x77, W: []byte{0xF4, 3<<5 | 3<<2 | 1}}, // forced mode
		i2ctest.IO{Addr: 0x77, W: []byte{0xF3}, R: []byte{0x08}}, // measuring
		i2ctest.IO{Addr: 0x77, W: []byte{0xF3}, R: []byte{0x00}},
		i2ctest.IO{Addr: 0x77, W: []byte{0xF7}, R: dataBytes(raw)},
	)
	synctest.Test(t, func(t *testing.T) {
		bus := &i2ctest.Playback{Ops: ops, DontPanic: true}
		dev, err := bme280.New(t.Context(), bus, 0x77, bme280.Options{Oversampling: 4, Filter: 4})
		if err != nil {
			t.Fatal(err)
		}
		if got := dev.Calibration(); got != exampleCal {
			t.Fatalf("Calibration() = %+v, want %+v", got, exampleCal)
		}
		var env physic.Env
		if err := dev.Sense(t.Context(), &env); err != nil {
			t.Fatal(err)
		}
		if want := exampleCal.Compensate(raw); env != want {
			t.Fatalf("Sense = %+v, want %+v", env, want)
		}
		if err := bus.Close(); err != nil {
			t.Fatal(err) // every scripted transaction happened
		}
	})
}

// failBus is a Playback that fails transaction number failAt with a bus error.
type failBus struct {
	i2ctest.Playback
	failAt int
	n      int
}

func (f *failBus) Tx(addr uint16, w, r []byte) error {
	f.n++
	if f.n == f.failAt {
		return errors.New("i2c: remote I/O error")
	}
	return f.Playback.Tx(addr, w, r)
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name    string
		ops     []i2ctest.IO
		failAt  int
		opts    bme280.Options
		wantErr string
		wantIs  error
	}{
		{name: "bmp280 chip id", ops: []i2ctest.IO{{Addr: 0x76, W: []byte{0xD0}, R: []byte{0x58}}},
			wantErr: "chip id 0x58, want 0x60", wantIs: bme280.ErrChipID},
		{name: "no device", ops: nil, failAt: 1, wantErr: "read chip id: i2c: remote I/O error"},
		{name: "bus error on calibration", ops: initOps(0x76, 1, 0), failAt: 5, wantErr: "read calibration: i2c: remote I/O error"},
		{name: "bus error on config", ops: initOps(0x76, 1, 0), failAt: 8, wantErr: "configure register 0xf5"},
		{name: "zero calibration", ops: append(initOps(0x76, 1, 0)[:4],
			i2ctest.IO{Addr: 0x76, W: []byte{0x88}, R: make([]byte, 26)},
			i2ctest.IO{Addr: 0x76, W: []byte{0xE1}, R: make([]byte, 7)}),
			wantErr: "calibration reads dig_T1=0"},
		{name: "bad oversampling", opts: bme280.Options{Oversampling: 3}, wantErr: "oversampling 3"},
		{name: "bad filter", opts: bme280.Options{Filter: 5}, wantErr: "filter 5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				bus := &failBus{Playback: i2ctest.Playback{Ops: tt.ops, DontPanic: true}, failAt: tt.failAt}
				_, err := bme280.New(t.Context(), bus, 0x76, tt.opts)
				checkErr(t, err, tt.wantErr)
				if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
					t.Fatalf("error %v is not %v", err, tt.wantIs)
				}
			})
		})
	}
}

func checkErr(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("error = %v, want one line containing %q", err, want)
	}
}

// regBus models the BME280's registers well enough for reads and writes with auto-increment;
// status (0xF3) reads 0 (idle) unless stuck. Safe for concurrent use.
type regBus struct {
	mu        sync.Mutex
	regs      [256]byte
	stuck     bool // status always reports measuring
	closed    bool
	forcedCnt int
}

func newRegBus(raw bme280.Raw) *regBus {
	b := &regBus{}
	b.regs[0xD0] = 0x60
	c1, c2 := calBytes(exampleCal)
	copy(b.regs[0x88:], c1[:])
	copy(b.regs[0xE1:], c2[:])
	copy(b.regs[0xF7:], dataBytes(raw))
	return b
}

func (b *regBus) String() string                  { return "regbus" }
func (b *regBus) SetSpeed(physic.Frequency) error { return nil }
func (b *regBus) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return errors.New("closed twice")
	}
	b.closed = true
	return nil
}

func (b *regBus) Tx(addr uint16, w, r []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if addr != 0x76 {
		return fmt.Errorf("no device at %#x", addr)
	}
	if len(w) == 0 {
		return errors.New("no register address")
	}
	reg := w[0]
	for i, v := range w[1:] {
		b.regs[int(reg)+i] = v
		if int(reg)+i == 0xF4 && v&3 == 1 {
			b.forcedCnt++
		}
	}
	for i := range r {
		r[i] = b.regs[int(reg)+i]
		if int(reg)+i == 0xF3 && b.stuck {
			r[i] = 0x08
		}
	}
	return nil
}

func TestSenseErrors(t *testing.T) {
	raw := bme280.Raw{T: exampleAdcT, P: exampleAdcP, H: exampleAdcH}
	t.Run("timeout", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			bus := newRegBus(raw)
			dev, err := bme280.New(t.Context(), bus, 0x76, bme280.Options{})
			if err != nil {
				t.Fatal(err)
			}
			bus.stuck = true
			var env physic.Env
			err = dev.Sense(t.Context(), &env)
			checkErr(t, err, "still measuring")
			if !errors.Is(err, bme280.ErrTimeout) {
				t.Fatalf("error %v is not ErrTimeout", err)
			}
		})
	})
	t.Run("skipped measurement", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			bus := newRegBus(bme280.Raw{T: 0x80000, P: 0x80000, H: 0x8000})
			dev, err := bme280.New(t.Context(), bus, 0x76, bme280.Options{})
			if err != nil {
				t.Fatal(err)
			}
			var env physic.Env
			checkErr(t, dev.Sense(t.Context(), &env), "reset values")
		})
	})
	t.Run("bus error on data", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			ops := append(initOps(0x76, 1, 0),
				i2ctest.IO{Addr: 0x76, W: []byte{0xF4, 1<<5 | 1<<2 | 1}},
				i2ctest.IO{Addr: 0x76, W: []byte{0xF3}, R: []byte{0}})
			bus := &failBus{Playback: i2ctest.Playback{Ops: ops, DontPanic: true}, failAt: len(ops) + 1}
			dev, err := bme280.New(t.Context(), bus, 0x76, bme280.Options{})
			if err != nil {
				t.Fatal(err)
			}
			var env physic.Env
			checkErr(t, dev.Sense(t.Context(), &env), "read data: i2c: remote I/O error")
		})
	})
	t.Run("cancelled", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			dev, err := bme280.New(t.Context(), newRegBus(raw), 0x76, bme280.Options{})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			var env physic.Env
			if err := dev.Sense(ctx, &env); !errors.Is(err, context.Canceled) {
				t.Fatalf("Sense with cancelled context = %v, want context.Canceled", err)
			}
		})
	})
}

func TestSourceContract(t *testing.T) {
	sensortest.Run(t, func(t *testing.T) sensor.Source {
		bus := newRegBus(bme280.Raw{T: exampleAdcT, P: exampleAdcP, H: exampleAdcH})
		dev, err := bme280.New(t.Context(), bus, 0x76, bme280.Options{})
		if err != nil {
			t.Fatal(err)
		}
		src := bme280.NewSource(dev, bus, 5)
		t.Cleanup(func() {
			if !bus.closed {
				t.Error("Close did not close the bus")
			}
		})
		return src
	})
}

func TestSourceValues(t *testing.T) {
	raw := bme280.Raw{T: exampleAdcT, P: exampleAdcP, H: exampleAdcH}
	bus := newRegBus(raw)
	dev, err := bme280.New(t.Context(), bus, 0x76, bme280.Options{})
	if err != nil {
		t.Fatal(err)
	}
	src := bme280.NewSource(dev, nil, 1)
	var v [3]float32
	if _, err := src.Read(t.Context(), v[:]); err != nil {
		t.Fatal(err)
	}
	_, pPa, hRH := floatCompensate(exampleCal, raw)
	if math.Abs(float64(v[0])-25.08) > 1e-4 || math.Abs(float64(v[1])-hRH) > 0.02 || math.Abs(float64(v[2])-pPa/100) > 0.001 {
		t.Fatalf("Read = %v, want [25.08 °C, %.3f %%RH, %.4f hPa]", v, hRH, pPa/100)
	}
	if bus.forcedCnt != 1 {
		t.Fatalf("forced measurements started = %d, want 1", bus.forcedCnt)
	}
}

func TestOpenErrors(t *testing.T) {
	for _, tt := range []struct{ spec, want string }{
		{"bme280?addr=0x40", `addr "0x40" is not one of 0x76, 0x77`},
		{"bme280?rate=0", `rate "0"`},
		{"bme280?rate=30", `rate "30"`},
		{"bme280?osrs=3", `osrs "3" must be one of [1 2 4 8 16]`},
		{"bme280?filter=1", `filter "1"`},
		{"bme280?osrs=16&rate=10", "too fast for osrs=16"},
		{"bme280?speed=1", `unknown argument "speed"`},
		{"bme280?bus=nosuchbus", `open i2c bus "nosuchbus"`},
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
