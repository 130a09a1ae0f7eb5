// Package bme280 drives a Bosch BME280 temperature, humidity and pressure sensor over I²C and
// registers it with agent/sensor as kind "bme280". Register addresses, timings and the
// compensation formulas are from the Bosch datasheet BST-BME280-DS002 (section numbers are
// given beside the code that uses them).
//
// Kind "bme280" gives three channels: temperature (°C), relative humidity (%RH) and pressure
// (hPa). The sensor runs in forced mode: every Read starts one measurement and waits for it,
// so nothing is measured between reads. Arguments:
//
//	bus=NAME    periph.io I²C bus name or number (default 1)
//	addr=A      0x76 (SDO to GND, the default) or 0x77
//	rate=HZ     read rate in Hz, in (0, 25] (default 1)
//	osrs=N      oversampling of all three measurements: 1, 2, 4, 8 or 16 (default 1)
//	filter=N    IIR filter coefficient: 0 (off), 2, 4, 8 or 16 (default 0)
//
// For example "bme280?bus=1&addr=0x77&rate=2&osrs=4".
package bme280

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/url"
	"time"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"

	"github.com/outpost-ml/outpost/agent/sensor"
	"github.com/outpost-ml/outpost/agent/sensor/internal/periphio"
)

// Kind is the registered sensor kind.
const Kind = "bme280"

// I²C addresses (datasheet 6.2: SDO to GND or to VDDIO).
const (
	AddrLow  uint16 = 0x76
	AddrHigh uint16 = 0x77
)

// Registers (datasheet 5.3, table 18).
const (
	regCalib00  = 0x88 // calib00..calib25: 0x88..0xA1
	regChipID   = 0xD0
	regReset    = 0xE0
	regCalib26  = 0xE1 // calib26..calib32: 0xE1..0xE7
	regCtrlHum  = 0xF2
	regStatus   = 0xF3
	regCtrlMeas = 0xF4
	regConfig   = 0xF5
	regData     = 0xF7 // press_msb..hum_lsb: 0xF7..0xFE
)

const (
	chipID       = 0x60 // datasheet 5.4.1
	resetWord    = 0xB6 // datasheet 5.4.2
	statMeasure  = 1 << 3
	statIMUpdate = 1 << 0
	modeSleep    = 0b00
	modeForced   = 0b01
	startupTime  = 2 * time.Millisecond // datasheet table 1, t_startup
	pollInterval = time.Millisecond
	maxNVMPolls  = 50 // im_update clears within a few ms of reset
)

// Options configures a Dev. The zero value means oversampling ×1 and the filter off.
type Options struct {
	Oversampling int // 1, 2, 4, 8 or 16 for temperature, pressure and humidity alike; 0 means 1
	Filter       int // IIR coefficient 0, 2, 4, 8 or 16
}

// Dev is a BME280 on an I²C bus. It is not safe for concurrent use.
type Dev struct {
	d    i2c.Dev
	cal  Calibration
	osrs byte // register encoding of the oversampling
	meas time.Duration
}

// Calibration holds the trimming parameters from the chip's NVM (datasheet 4.2.2, table 16).
type Calibration struct {
	T1             uint16
	T2, T3         int16
	P1             uint16
	P2, P3, P4, P5 int16
	P6, P7, P8, P9 int16
	H1             uint8
	H2             int16
	H3             uint8
	H4, H5         int16 // 12-bit signed values
	H6             int8
}

// Raw is one uncompensated measurement: 20-bit temperature and pressure, 16-bit humidity.
type Raw struct{ T, P, H int32 }

// Errors a caller may branch on.
var (
	ErrChipID  = errors.New("wrong chip id")
	ErrTimeout = errors.New("conversion timeout")
)

// New checks the chip id, resets the chip, reads its calibration and configures it, leaving
// it asleep. It returns a one-line error naming the step that failed.
func New(ctx context.Context, bus i2c.Bus, addr uint16, opts Options) (*Dev, error) {
	osrs, err := osrsCode(opts.Oversampling)
	if err != nil {
		return nil, err
	}
	filt, err := filterCode(opts.Filter)
	if err != nil {
		return nil, err
	}
	d := &Dev{d: i2c.Dev{Bus: bus, Addr: addr}, osrs: osrs, meas: measureTime(opts.Oversampling)}
	var id [1]byte
	if err := d.d.Tx([]byte{regChipID}, id[:]); err != nil {
		return nil, fmt.Errorf("bme280 at %#x: read chip id: %w", addr, err)
	}
	if id[0] != chipID {
		return nil, fmt.Errorf("bme280 at %#x: chip id %#02x, want %#02x (a BMP280 reads 0x58): %w", addr, id[0], chipID, ErrChipID)
	}
	if err := d.write(regReset, resetWord); err != nil {
		return nil, fmt.Errorf("bme280 at %#x: reset: %w", addr, err)
	}
	if err := periphio.Sleep(ctx, startupTime); err != nil {
		return nil, err
	}
	// After reset the chip copies its NVM into the calibration registers; status.im_update
	// is set while it does (datasheet 5.4.4).
	for i := 0; ; i++ {
		st, err := d.status()
		if err != nil {
			return nil, fmt.Errorf("bme280 at %#x: read status after reset: %w", addr, err)
		}
		if st&statIMUpdate == 0 {
			break
		}
		if i == maxNVMPolls {
			return nil, fmt.Errorf("bme280 at %#x: calibration copy still running after reset: %w", addr, ErrTimeout)
		}
		if err := periphio.Sleep(ctx, pollInterval); err != nil {
			return nil, err
		}
	}
	var c1 [26]byte // 0x88..0xA1
	var c2 [7]byte  // 0xE1..0xE7
	if err := d.d.Tx([]byte{regCalib00}, c1[:]); err != nil {
		return nil, fmt.Errorf("bme280 at %#x: read calibration: %w", addr, err)
	}
	if err := d.d.Tx([]byte{regCalib26}, c2[:]); err != nil {
		return nil, fmt.Errorf("bme280 at %#x: read calibration: %w", addr, err)
	}
	d.cal = ParseCalibration(c1, c2)
	if d.cal.T1 == 0 || d.cal.P1 == 0 {
		// All-zero trimming would divide by zero in the pressure formula: the NVM read failed.
		return nil, fmt.Errorf("bme280 at %#x: calibration reads dig_T1=%d dig_P1=%d, want non-zero", addr, d.cal.T1, d.cal.P1)
	}
	// ctrl_hum takes effect only after the next ctrl_meas write (datasheet 5.4.3), and config
	// writes may be ignored outside sleep mode (5.4.6), so: ctrl_hum, config, ctrl_meas.
	for _, w := range [][2]byte{
		{regCtrlHum, osrs},
		{regConfig, filt << 2},
		{regCtrlMeas, osrs<<5 | osrs<<2 | modeSleep},
	} {
		if err := d.write(w[0], w[1]); err != nil {
			return nil, fmt.Errorf("bme280 at %#x: configure register %#02x: %w", addr, w[0], err)
		}
	}
	return d, nil
}

// ParseCalibration decodes the calibration registers 0x88..0xA1 and 0xE1..0xE7 (datasheet
// table 16). dig_H4 and dig_H5 share register 0xE5 and are 12-bit two's complement.
func ParseCalibration(c1 [26]byte, c2 [7]byte) Calibration {
	u := func(b []byte) uint16 { return binary.LittleEndian.Uint16(b) }
	s := func(b []byte) int16 { return int16(binary.LittleEndian.Uint16(b)) }
	return Calibration{
		T1: u(c1[0:]), T2: s(c1[2:]), T3: s(c1[4:]),
		P1: u(c1[6:]), P2: s(c1[8:]), P3: s(c1[10:]), P4: s(c1[12:]), P5: s(c1[14:]),
		P6: s(c1[16:]), P7: s(c1[18:]), P8: s(c1[20:]), P9: s(c1[22:]),
		H1: c1[25], // 0xA1; 0xA0 is reserved
		H2: s(c2[0:]),
		H3: c2[2],
		// 0xE4 holds H4[11:4], 0xE5[3:0] H4[3:0]; 0xE5[7:4] holds H5[3:0], 0xE6 H5[11:4].
		// int8 on the high byte carries the sign of the 12-bit value.
		H4: int16(int8(c2[3]))<<4 | int16(c2[4]&0x0F),
		H5: int16(int8(c2[5]))<<4 | int16(c2[4]>>4),
		H6: int8(c2[6]),
	}
}

// Calibration returns the trimming parameters read by New.
func (d *Dev) Calibration() Calibration { return d.cal }

// Sense runs one forced-mode measurement and returns it compensated.
func (d *Dev) Sense(ctx context.Context, env *physic.Env) error {
	raw, err := d.SenseRaw(ctx)
	if err != nil {
		return err
	}
	*env = d.cal.Compensate(raw)
	return nil
}

// SenseRaw runs one forced-mode measurement and returns the raw ADC values: it writes
// ctrl_meas with mode 01, waits the datasheet's maximum measurement time, polls
// status.measuring and burst-reads 0xF7..0xFE (datasheet 3.3.3, 4, 9.1).
func (d *Dev) SenseRaw(ctx context.Context) (Raw, error) {
	a := d.d.Addr
	if err := d.write(regCtrlMeas, d.osrs<<5|d.osrs<<2|modeForced); err != nil {
		return Raw{}, fmt.Errorf("bme280 at %#x: start measurement: %w", a, err)
	}
	if err := periphio.Sleep(ctx, d.meas); err != nil {
		return Raw{}, err
	}
	// Poll for as long again as the conversion should take, then give up.
	polls := max(1, int(d.meas/pollInterval))
	for i := 0; ; i++ {
		st, err := d.status()
		if err != nil {
			return Raw{}, fmt.Errorf("bme280 at %#x: read status: %w", a, err)
		}
		if st&statMeasure == 0 {
			break
		}
		if i == polls {
			return Raw{}, fmt.Errorf("bme280 at %#x: still measuring %v after start: %w", a, 2*d.meas, ErrTimeout)
		}
		if err := periphio.Sleep(ctx, pollInterval); err != nil {
			return Raw{}, err
		}
	}
	var b [8]byte
	if err := d.d.Tx([]byte{regData}, b[:]); err != nil {
		return Raw{}, fmt.Errorf("bme280 at %#x: read data: %w", a, err)
	}
	r := Raw{
		P: int32(b[0])<<12 | int32(b[1])<<4 | int32(b[2])>>4,
		T: int32(b[3])<<12 | int32(b[4])<<4 | int32(b[5])>>4,
		H: int32(b[6])<<8 | int32(b[7]),
	}
	// 0x80000 / 0x8000 are the reset values, read when a measurement was skipped.
	if r.T == 0x80000 || r.P == 0x80000 || r.H == 0x8000 {
		return Raw{}, fmt.Errorf("bme280 at %#x: data registers hold reset values (T %#x, P %#x, H %#x): measurement skipped", a, r.T, r.P, r.H)
	}
	return r, nil
}

// Compensate turns a raw measurement into physical units with the datasheet's integer
// formulas (4.2.3): 32-bit temperature in 0.01 °C, 64-bit pressure in Q24.8 Pa, 32-bit
// humidity in Q22.10 %RH.
func (c *Calibration) Compensate(r Raw) physic.Env {
	tFine, t := c.temperature(r.T)
	p := c.pressure(r.P, tFine)
	h := c.humidity(r.H, tFine)
	return physic.Env{
		Temperature: physic.ZeroCelsius + physic.Temperature(t)*10*physic.MilliKelvin,
		Pressure:    physic.Pressure(int64(p) * int64(physic.Pascal) / 256),
		Humidity:    physic.RelativeHumidity(int64(h) * int64(physic.PercentRH) / 1024),
	}
}

// temperature returns t_fine and the temperature in 0.01 °C (datasheet 4.2.3,
// BME280_compensate_T_int32).
func (c *Calibration) temperature(adcT int32) (tFine, centi int32) {
	t1, t2, t3 := int32(c.T1), int32(c.T2), int32(c.T3)
	v1 := (((adcT >> 3) - (t1 << 1)) * t2) >> 11
	d := (adcT >> 4) - t1
	v2 := (((d * d) >> 12) * t3) >> 14
	tFine = v1 + v2
	return tFine, (tFine*5 + 128) >> 8
}

// pressure returns the pressure in Pa as Q24.8 (datasheet 4.2.3, BME280_compensate_P_int64).
func (c *Calibration) pressure(adcP, tFine int32) uint32 {
	v1 := int64(tFine) - 128000
	v2 := v1 * v1 * int64(c.P6)
	v2 += (v1 * int64(c.P5)) << 17
	v2 += int64(c.P4) << 35
	v1 = ((v1 * v1 * int64(c.P3)) >> 8) + ((v1 * int64(c.P2)) << 12)
	v1 = ((int64(1) << 47) + v1) * int64(c.P1) >> 33
	if v1 == 0 {
		return 0 // the datasheet's guard against division by zero
	}
	p := int64(1048576 - adcP)
	p = (((p << 31) - v2) * 3125) / v1
	v1 = (int64(c.P9) * (p >> 13) * (p >> 13)) >> 25
	v2 = (int64(c.P8) * p) >> 19
	p = ((p + v1 + v2) >> 8) + (int64(c.P7) << 4)
	return uint32(p)
}

// humidity returns the relative humidity in %RH as Q22.10 (datasheet 4.2.3,
// bme280_compensate_H_int32), clamped to [0, 100] %RH.
func (c *Calibration) humidity(adcH, tFine int32) uint32 {
	x := tFine - 76800
	a := ((adcH << 14) - (int32(c.H4) << 20) - (int32(c.H5) * x) + 16384) >> 15
	b := (((((x*int32(c.H6))>>10)*(((x*int32(c.H3))>>11)+32768))>>10)+2097152)*int32(c.H2) + 8192
	x = a * (b >> 14)
	x -= ((((x >> 15) * (x >> 15)) >> 7) * int32(c.H1)) >> 4
	x = min(max(x, 0), 419430400)
	return uint32(x >> 12)
}

func (d *Dev) write(reg, v byte) error { return d.d.Tx([]byte{reg, v}, nil) }

func (d *Dev) status() (byte, error) {
	var b [1]byte
	err := d.d.Tx([]byte{regStatus}, b[:])
	return b[0], err
}

// osrsCode maps an oversampling factor to its 3-bit register value (datasheet 5.4.3, 5.4.5).
func osrsCode(n int) (byte, error) {
	switch n {
	case 0, 1:
		return 1, nil
	case 2:
		return 2, nil
	case 4:
		return 3, nil
	case 8:
		return 4, nil
	case 16:
		return 5, nil
	}
	return 0, fmt.Errorf("bme280: oversampling %d, want 1, 2, 4, 8 or 16", n)
}

// filterCode maps an IIR coefficient to its 3-bit register value (datasheet 5.4.6, table 28).
func filterCode(n int) (byte, error) {
	switch n {
	case 0:
		return 0, nil
	case 2:
		return 1, nil
	case 4:
		return 2, nil
	case 8:
		return 3, nil
	case 16:
		return 4, nil
	}
	return 0, fmt.Errorf("bme280: filter %d, want 0, 2, 4, 8 or 16", n)
}

// measureTime is the maximum measurement time with all three measurements at oversampling n
// (datasheet 9.1): 1.25 + 2.3·n + (2.3·n + 0.575) + (2.3·n + 0.575) ms.
func measureTime(n int) time.Duration {
	n = max(n, 1)
	us := 1250 + 3*2300*n + 2*575
	return time.Duration(us) * time.Microsecond
}

func init() { sensor.Register(Kind, open) }

// source adapts a Dev to sensor.Source and owns the bus it was opened on.
type source struct {
	dev  *Dev
	bus  i2c.BusCloser
	rate float64
	env  physic.Env
}

// NewSource returns a Source reading dev at rateHz; Close closes bus if it is not nil.
func NewSource(dev *Dev, bus i2c.BusCloser, rateHz float64) sensor.Source {
	return &source{dev: dev, bus: bus, rate: rateHz}
}

func open(args url.Values) (sensor.Source, error) {
	if err := sensor.CheckArgs(args, "bus", "addr", "rate", "osrs", "filter"); err != nil {
		return nil, err
	}
	addr, err := periphio.Addr(args, AddrLow, AddrLow, AddrHigh)
	if err != nil {
		return nil, err
	}
	rate, err := periphio.Rate(args, 1, 25)
	if err != nil {
		return nil, err
	}
	var o Options
	if o.Oversampling, err = periphio.Choice(args, "osrs", 1, 1, 2, 4, 8, 16); err != nil {
		return nil, err
	}
	if o.Filter, err = periphio.Choice(args, "filter", 0, 0, 2, 4, 8, 16); err != nil {
		return nil, err
	}
	// At oversampling 16 a measurement takes up to 112.8 ms: the rate must leave room for it.
	if m := measureTime(o.Oversampling); rate*m.Seconds() > 1 {
		return nil, fmt.Errorf("rate %v Hz is too fast for osrs=%d (a measurement takes up to %v)", rate, o.Oversampling, m)
	}
	bus, err := periphio.OpenI2C(periphio.Bus(args))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	dev, err := New(ctx, bus, addr, o)
	if err != nil {
		bus.Close()
		return nil, err
	}
	return NewSource(dev, bus, rate), nil
}

// Read implements sensor.Source: temperature °C, humidity %RH, pressure hPa.
func (s *source) Read(ctx context.Context, dst []float32) (time.Time, error) {
	if err := ctx.Err(); err != nil {
		return time.Time{}, err
	}
	if err := s.dev.Sense(ctx, &s.env); err != nil {
		return time.Time{}, err
	}
	t := time.Now()
	dst[0] = float32(s.env.Temperature.Celsius())
	dst[1] = float32(float64(s.env.Humidity) / float64(physic.PercentRH))
	dst[2] = float32(float64(s.env.Pressure) / float64(100*physic.Pascal))
	return t, nil
}

// Info implements sensor.Source.
func (s *source) Info() sensor.Info { return sensor.Info{Kind: Kind, RateHz: s.rate, Channels: 3} }

// Close implements sensor.Source: it puts nothing to sleep (forced mode sleeps by itself after
// each measurement) and closes the bus it owns.
func (s *source) Close() error {
	if s.bus == nil {
		return nil
	}
	return s.bus.Close()
}
