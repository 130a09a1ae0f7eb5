// Package mpu6050 drives an InvenSense MPU-6050 3-axis accelerometer and gyroscope over I²C and
// registers it with agent/sensor as kind "mpu6050". Register addresses and scale factors are
// from the MPU-6000/MPU-6050 Register Map and Descriptions (RM-MPU-6000A-00 rev 4.2; section
// numbers beside the code) and the Product Specification (PS-MPU-6000A-00, 6.1 and 6.2).
//
// Kind "mpu6050" reads acceleration in g (and optionally angular rate in °/s). Arguments:
//
//	bus=NAME    periph.io I²C bus name or number (default 1)
//	addr=A      0x68 (AD0 low, the default) or 0x69
//	rate=HZ     read rate in Hz, in (0, 1000] (default 25, the activity model's rate)
//	accel=G     full scale: 2, 4, 8 or 16 g (default 2)
//	gyro=DPS    full scale: 250, 500, 1000 or 2000 °/s (default 250)
//	dlpf=N      digital low-pass filter setting 0..6 (default 3: 44 Hz accelerometer bandwidth)
//	out=WHAT    channels: accel (x y z, the default), gyro (x y z) or all (accel then gyro)
//
// For example "mpu6050?addr=0x69&rate=50&accel=4&out=all".
package mpu6050

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/url"
	"time"

	"periph.io/x/conn/v3/i2c"

	"github.com/outpost-ml/outpost/agent/sensor"
	"github.com/outpost-ml/outpost/agent/sensor/internal/periphio"
)

// Kind is the registered sensor kind.
const Kind = "mpu6050"

// I²C addresses (RM 4.32 / PS 6.4: b110100X, X = AD0 pin).
const (
	AddrLow  uint16 = 0x68
	AddrHigh uint16 = 0x69
)

// Registers (RM section 3, register map).
const (
	regSmplrtDiv   = 0x19 // RM 4.2
	regConfig      = 0x1A // RM 4.3, DLPF_CFG in bits 2:0
	regGyroConfig  = 0x1B // RM 4.4, FS_SEL in bits 4:3
	regAccelConfig = 0x1C // RM 4.5, AFS_SEL in bits 4:3
	regAccelXoutH  = 0x3B // RM 4.17..4.19: ACCEL, TEMP, GYRO big-endian, 0x3B..0x48
	regPwrMgmt1    = 0x6B // RM 4.28
	regWhoAmI      = 0x75 // RM 4.32
)

const (
	whoAmI      = 0x68 // RM 4.32: WHO_AM_I reads 0x68 whatever AD0 is
	deviceReset = 1 << 7
	sleepBit    = 1 << 6
	clkPLLX     = 0x01                   // CLKSEL 1: PLL with the X gyro as reference (RM 4.28 recommends it)
	resetTime   = 100 * time.Millisecond // RM 4.28 / 4.26 reset sequence: wait 100 ms after DEVICE_RESET
	wakePolls   = 10
)

// Options configures a Dev; the zero value means ±2 g, ±250 °/s, DLPF setting 0.
type Options struct {
	AccelRange int // full scale in g: 2, 4, 8 or 16; 0 means 2
	GyroRange  int // full scale in °/s: 250, 500, 1000 or 2000; 0 means 250
	DLPF       int // DLPF_CFG 0..6 (RM 4.3)
}

// Sample is one reading. Acceleration is in g, angular rate in °/s, temperature in °C, along
// the chip's x, y and z axes.
type Sample struct {
	Accel [3]float64
	Gyro  [3]float64
	TempC float64
}

// Dev is an MPU-6050 on an I²C bus. It is not safe for concurrent use.
type Dev struct {
	d          i2c.Dev
	accelLSB   float64 // LSB per g
	gyroLSB    float64 // LSB per °/s
	accelRange int
	gyroRange  int
}

// ErrWhoAmI is wrapped by New's error when the chip at the address is not an MPU-6050.
var ErrWhoAmI = errors.New("wrong WHO_AM_I")

// Full-scale codes and sensitivities (PS 6.1 and 6.2; RM 4.4, 4.5).
var (
	accelRanges = map[int]struct {
		code byte
		lsb  float64
	}{2: {0, 16384}, 4: {1, 8192}, 8: {2, 4096}, 16: {3, 2048}}
	gyroRanges = map[int]struct {
		code byte
		lsb  float64
	}{250: {0, 131}, 500: {1, 65.5}, 1000: {2, 32.8}, 2000: {3, 16.4}}
)

// New checks WHO_AM_I, resets the chip, wakes it (it powers up asleep), and sets the filter
// and full-scale ranges. The sample rate divider is left at 0: 1 kHz with the DLPF on, 8 kHz
// (gyro) with it off, far above any rate the agent reads at, so each read sees fresh data.
func New(ctx context.Context, bus i2c.Bus, addr uint16, opts Options) (*Dev, error) {
	if opts.AccelRange == 0 {
		opts.AccelRange = 2
	}
	if opts.GyroRange == 0 {
		opts.GyroRange = 250
	}
	ar, ok := accelRanges[opts.AccelRange]
	if !ok {
		return nil, fmt.Errorf("mpu6050: accelerometer range %d g, want 2, 4, 8 or 16", opts.AccelRange)
	}
	gr, ok := gyroRanges[opts.GyroRange]
	if !ok {
		return nil, fmt.Errorf("mpu6050: gyroscope range %d °/s, want 250, 500, 1000 or 2000", opts.GyroRange)
	}
	if opts.DLPF < 0 || opts.DLPF > 6 {
		return nil, fmt.Errorf("mpu6050: DLPF setting %d, want 0..6", opts.DLPF)
	}
	d := &Dev{d: i2c.Dev{Bus: bus, Addr: addr}, accelLSB: ar.lsb, gyroLSB: gr.lsb,
		accelRange: opts.AccelRange, gyroRange: opts.GyroRange}
	id, err := d.read(regWhoAmI)
	if err != nil {
		return nil, fmt.Errorf("mpu6050 at %#x: read WHO_AM_I: %w", addr, err)
	}
	if id != whoAmI {
		return nil, fmt.Errorf("mpu6050 at %#x: WHO_AM_I %#02x, want %#02x: %w", addr, id, whoAmI, ErrWhoAmI)
	}
	if err := d.write(regPwrMgmt1, deviceReset); err != nil {
		return nil, fmt.Errorf("mpu6050 at %#x: reset: %w", addr, err)
	}
	if err := periphio.Sleep(ctx, resetTime); err != nil {
		return nil, err
	}
	// The chip comes out of reset asleep (SLEEP set, RM 4.28): clear it and select the PLL.
	if err := d.write(regPwrMgmt1, clkPLLX); err != nil {
		return nil, fmt.Errorf("mpu6050 at %#x: wake: %w", addr, err)
	}
	for i := 0; ; i++ {
		pm, err := d.read(regPwrMgmt1)
		if err != nil {
			return nil, fmt.Errorf("mpu6050 at %#x: read PWR_MGMT_1: %w", addr, err)
		}
		if pm&(sleepBit|deviceReset) == 0 {
			break
		}
		if i == wakePolls {
			return nil, fmt.Errorf("mpu6050 at %#x: still asleep or resetting (PWR_MGMT_1 %#02x) after wake", addr, pm)
		}
		if err := periphio.Sleep(ctx, 10*time.Millisecond); err != nil {
			return nil, err
		}
	}
	for _, w := range [][2]byte{
		{regSmplrtDiv, 0},
		{regConfig, byte(opts.DLPF)},
		{regGyroConfig, gr.code << 3},
		{regAccelConfig, ar.code << 3},
	} {
		if err := d.write(w[0], w[1]); err != nil {
			return nil, fmt.Errorf("mpu6050 at %#x: configure register %#02x: %w", addr, w[0], err)
		}
	}
	return d, nil
}

// Sense burst-reads the 14 data registers 0x3B..0x48 in one transaction, so the axes belong
// to the same sample (RM 4.17: the registers are latched while the serial interface reads).
func (d *Dev) Sense(ctx context.Context) (Sample, error) {
	if err := ctx.Err(); err != nil {
		return Sample{}, err
	}
	var b [14]byte
	if err := d.d.Tx([]byte{regAccelXoutH}, b[:]); err != nil {
		return Sample{}, fmt.Errorf("mpu6050 at %#x: read data: %w", d.d.Addr, err)
	}
	v := func(i int) float64 { return float64(int16(binary.BigEndian.Uint16(b[2*i:]))) }
	var s Sample
	for i := range 3 {
		s.Accel[i] = v(i) / d.accelLSB
		s.Gyro[i] = v(4+i) / d.gyroLSB
	}
	s.TempC = v(3)/340 + 36.53 // RM 4.18
	return s, nil
}

// Ranges returns the configured full scales in g and °/s.
func (d *Dev) Ranges() (accelG, gyroDPS int) { return d.accelRange, d.gyroRange }

func (d *Dev) write(reg, v byte) error { return d.d.Tx([]byte{reg, v}, nil) }

func (d *Dev) read(reg byte) (byte, error) {
	var b [1]byte
	err := d.d.Tx([]byte{reg}, b[:])
	return b[0], err
}

// Output selects the channels a Source gives.
type Output int

// The outputs a Source can give.
const (
	OutAccel Output = iota // accel x, y, z in g
	OutGyro                // gyro x, y, z in °/s
	OutAll                 // accel x, y, z then gyro x, y, z
)

func init() { sensor.Register(Kind, open) }

type source struct {
	dev  *Dev
	bus  i2c.BusCloser
	rate float64
	out  Output
}

// NewSource returns a Source reading dev at rateHz; Close closes bus if it is not nil.
func NewSource(dev *Dev, bus i2c.BusCloser, rateHz float64, out Output) sensor.Source {
	return &source{dev: dev, bus: bus, rate: rateHz, out: out}
}

func open(args url.Values) (sensor.Source, error) {
	if err := sensor.CheckArgs(args, "bus", "addr", "rate", "accel", "gyro", "dlpf", "out"); err != nil {
		return nil, err
	}
	addr, err := periphio.Addr(args, AddrLow, AddrLow, AddrHigh)
	if err != nil {
		return nil, err
	}
	rate, err := periphio.Rate(args, 25, 1000)
	if err != nil {
		return nil, err
	}
	var o Options
	if o.AccelRange, err = periphio.Choice(args, "accel", 2, 2, 4, 8, 16); err != nil {
		return nil, err
	}
	if o.GyroRange, err = periphio.Choice(args, "gyro", 250, 250, 500, 1000, 2000); err != nil {
		return nil, err
	}
	if o.DLPF, err = periphio.Choice(args, "dlpf", 3, 0, 1, 2, 3, 4, 5, 6); err != nil {
		return nil, err
	}
	var out Output
	switch s := args.Get("out"); s {
	case "", "accel":
		out = OutAccel
	case "gyro":
		out = OutGyro
	case "all":
		out = OutAll
	default:
		return nil, fmt.Errorf("out %q must be accel, gyro or all", s)
	}
	bus, err := periphio.OpenI2C(periphio.Bus(args))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	dev, err := New(ctx, bus, addr, o)
	if err != nil {
		bus.Close()
		return nil, err
	}
	return NewSource(dev, bus, rate, out), nil
}

// Read implements sensor.Source.
func (s *source) Read(ctx context.Context, dst []float32) (time.Time, error) {
	v, err := s.dev.Sense(ctx)
	if err != nil {
		return time.Time{}, err
	}
	t := time.Now()
	switch s.out {
	case OutAccel:
		put(dst, v.Accel)
	case OutGyro:
		put(dst, v.Gyro)
	case OutAll:
		put(dst, v.Accel)
		put(dst[3:], v.Gyro)
	}
	return t, nil
}

func put(dst []float32, v [3]float64) {
	for i, x := range v {
		dst[i] = float32(x)
	}
}

// Info implements sensor.Source.
func (s *source) Info() sensor.Info {
	n := 3
	if s.out == OutAll {
		n = 6
	}
	return sensor.Info{Kind: Kind, RateHz: s.rate, Channels: n}
}

// Close implements sensor.Source: it closes the bus it owns and leaves the chip awake.
func (s *source) Close() error {
	if s.bus == nil {
		return nil
	}
	return s.bus.Close()
}
