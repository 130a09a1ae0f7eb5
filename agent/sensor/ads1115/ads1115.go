// Package ads1115 drives a Texas Instruments ADS1115 4-channel 16-bit ADC over I²C and
// registers it with agent/sensor as kind "ads1115". Register layout, codes and timings are
// from the TI datasheet SBAS444 (section numbers beside the code).
//
// Kind "ads1115" gives one channel (volts) per input, converted one after the other in
// single-shot mode, so the chip idles in power-down between reads. Arguments:
//
//	bus=NAME    periph.io I²C bus name or number (default 1)
//	addr=A      0x48 (ADDR to GND, the default), 0x49, 0x4a or 0x4b
//	rate=HZ     read rate in Hz (default 10); all inputs must convert within one period
//	in=LIST     inputs, comma separated: 0..3 (AINx against GND) or 0-1, 0-3, 1-3, 2-3
//	            (differential); default 0,1,2,3
//	fsr=V       full-scale range of the PGA: 6.144, 4.096 (default), 2.048, 1.024, 0.512, 0.256
//	dr=SPS      data rate: 8, 16, 32, 64, 128, 250, 475 or 860 (default 860)
//
// For example "ads1115?addr=0x49&in=0,2-3&fsr=2.048&dr=128&rate=20".
package ads1115

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"

	"github.com/outpost-ml/outpost/agent/sensor"
	"github.com/outpost-ml/outpost/agent/sensor/internal/periphio"
)

// Kind is the registered sensor kind.
const Kind = "ads1115"

// Addresses selectable with the ADDR pin (datasheet 9.5.1.1, table 4).
var Addrs = []uint16{0x48, 0x49, 0x4A, 0x4B}

// Pointer register values (datasheet 9.6.1).
const (
	regConversion = 0x00
	regConfig     = 0x01
)

// Config register fields (datasheet 9.6.3, table 8).
const (
	cfgOS      = 1 << 15 // write: start a single conversion; read: 1 = not converting
	cfgModeOne = 1 << 8  // single-shot / power-down
	cfgCompQue = 0b11    // comparator disabled, ALERT/RDY high impedance
	shiftMux   = 12
	shiftPGA   = 9
	shiftDR    = 5
)

// Mux selects the input pair of a conversion (config bits 14:12).
type Mux byte

// The inputs the multiplexer can select.
const (
	Diff01 Mux = iota // AIN0 - AIN1
	Diff03            // AIN0 - AIN3
	Diff13            // AIN1 - AIN3
	Diff23            // AIN2 - AIN3
	AIN0              // AIN0 - GND
	AIN1
	AIN2
	AIN3
)

var muxNames = [...]string{"0-1", "0-3", "1-3", "2-3", "0", "1", "2", "3"}

// String returns the input as the "in" argument spells it.
func (m Mux) String() string {
	if int(m) < len(muxNames) {
		return "AIN" + muxNames[m]
	}
	return fmt.Sprintf("Mux(%d)", byte(m))
}

// ParseMux parses an input as the "in" argument spells it: 0..3 or 0-1, 0-3, 1-3, 2-3.
func ParseMux(s string) (Mux, error) {
	if i := slices.Index(muxNames[:], s); i >= 0 {
		return Mux(i), nil
	}
	return 0, fmt.Errorf("input %q must be 0, 1, 2, 3, 0-1, 0-3, 1-3 or 2-3", s)
}

// FullScale lists the PGA full-scale ranges by their 3-bit code (datasheet 9.3.3, table 3);
// codes 110 and 111 are ±0.256 V as well.
var FullScale = []physic.ElectricPotential{
	6144 * physic.MilliVolt, 4096 * physic.MilliVolt, 2048 * physic.MilliVolt,
	1024 * physic.MilliVolt, 512 * physic.MilliVolt, 256 * physic.MilliVolt,
}

// DataRates lists the data rates in samples per second by their 3-bit code (table 8, DR).
var DataRates = []int{8, 16, 32, 64, 128, 250, 475, 860}

// Options configures a Dev. The zero value is ±6.144 V at 8 SPS; DefaultOptions is what the
// registry uses.
type Options struct {
	FullScale physic.ElectricPotential // one of FullScale
	DataRate  int                      // one of DataRates, samples per second
}

// DefaultOptions is ±4.096 V (a 3.3 V system's inputs fit) at 860 SPS.
var DefaultOptions = Options{FullScale: 4096 * physic.MilliVolt, DataRate: 860}

// ErrTimeout is wrapped by Read's error when a conversion does not finish in time.
var ErrTimeout = errors.New("conversion timeout")

// Dev is an ADS1115 on an I²C bus. It is not safe for concurrent use.
type Dev struct {
	d    i2c.Dev
	fsr  physic.ElectricPotential
	pga  uint16
	dr   uint16
	conv time.Duration // one conversion, 1/DR
}

// New checks that the chip answers by reading its config register (the ADS1115 has no id
// register) and keeps opts for later conversions; it writes nothing.
func New(bus i2c.Bus, addr uint16, opts Options) (*Dev, error) {
	pga := slices.Index(FullScale, opts.FullScale)
	if pga < 0 {
		return nil, fmt.Errorf("ads1115: full-scale range %v, want 6.144, 4.096, 2.048, 1.024, 0.512 or 0.256 V", opts.FullScale)
	}
	dr := slices.Index(DataRates, opts.DataRate)
	if dr < 0 {
		return nil, fmt.Errorf("ads1115: data rate %d SPS, want one of %v", opts.DataRate, DataRates)
	}
	d := &Dev{d: i2c.Dev{Bus: bus, Addr: addr}, fsr: opts.FullScale, pga: uint16(pga), dr: uint16(dr),
		conv: time.Second / time.Duration(opts.DataRate)}
	if _, err := d.readReg(regConfig); err != nil {
		return nil, fmt.Errorf("ads1115 at %#x: read config: %w", addr, err)
	}
	return d, nil
}

// ConversionTime is how long Read waits before it first polls: 1/DR plus the datasheet's
// 10 % data-rate tolerance (7.5) and the 25 µs wake-up from power-down.
func (d *Dev) ConversionTime() time.Duration { return d.conv + d.conv/10 + 25*time.Microsecond }

// Config returns the config register word Read writes for input m: OS set to start a
// single-shot conversion, MUX, PGA, MODE single-shot, DR, comparator disabled.
func (d *Dev) Config(m Mux) uint16 {
	return cfgOS | uint16(m&7)<<shiftMux | d.pga<<shiftPGA | cfgModeOne | d.dr<<shiftDR | cfgCompQue
}

// Read converts input m once: it writes the config register, waits ConversionTime, polls
// OS until the conversion is done (for up to another 1/DR) and reads the conversion
// register, a two's complement count of FSR/32768 (datasheet 9.3.4).
func (d *Dev) Read(ctx context.Context, m Mux) (physic.ElectricPotential, error) {
	a := d.d.Addr
	c := d.Config(m)
	if err := d.d.Tx([]byte{regConfig, byte(c >> 8), byte(c)}, nil); err != nil {
		return 0, fmt.Errorf("ads1115 at %#x: start conversion on %v: %w", a, m, err)
	}
	if err := periphio.Sleep(ctx, d.ConversionTime()); err != nil {
		return 0, err
	}
	poll := max(d.conv/8, 100*time.Microsecond)
	for i := 0; ; i++ {
		cfg, err := d.readReg(regConfig)
		if err != nil {
			return 0, fmt.Errorf("ads1115 at %#x: poll conversion on %v: %w", a, m, err)
		}
		if cfg&cfgOS != 0 {
			break
		}
		if i == 8 {
			return 0, fmt.Errorf("ads1115 at %#x: conversion on %v not ready after %v: %w", a, m, d.ConversionTime()+8*poll, ErrTimeout)
		}
		if err := periphio.Sleep(ctx, poll); err != nil {
			return 0, err
		}
	}
	raw, err := d.readReg(regConversion)
	if err != nil {
		return 0, fmt.Errorf("ads1115 at %#x: read conversion on %v: %w", a, m, err)
	}
	return physic.ElectricPotential(int64(int16(raw)) * int64(d.fsr) / 32768), nil
}

func (d *Dev) readReg(reg byte) (uint16, error) {
	var b [2]byte
	if err := d.d.Tx([]byte{reg}, b[:]); err != nil {
		return 0, err
	}
	return uint16(b[0])<<8 | uint16(b[1]), nil
}

func init() { sensor.Register(Kind, open) }

type source struct {
	dev  *Dev
	bus  i2c.BusCloser
	rate float64
	in   []Mux
}

// NewSource returns a Source converting inputs in, in order, at rateHz; Close closes bus if it
// is not nil.
func NewSource(dev *Dev, bus i2c.BusCloser, rateHz float64, in []Mux) sensor.Source {
	return &source{dev: dev, bus: bus, rate: rateHz, in: slices.Clone(in)}
}

func open(args url.Values) (sensor.Source, error) {
	if err := sensor.CheckArgs(args, "bus", "addr", "rate", "in", "fsr", "dr"); err != nil {
		return nil, err
	}
	addr, err := periphio.Addr(args, Addrs[0], Addrs...)
	if err != nil {
		return nil, err
	}
	rate, err := periphio.Rate(args, 10, 860)
	if err != nil {
		return nil, err
	}
	in := []Mux{AIN0, AIN1, AIN2, AIN3}
	if s := args.Get("in"); s != "" {
		in = in[:0]
		for f := range strings.SplitSeq(s, ",") {
			m, err := ParseMux(f)
			if err != nil {
				return nil, err
			}
			in = append(in, m)
		}
	}
	o := DefaultOptions
	if s := args.Get("fsr"); s != "" {
		var v physic.ElectricPotential
		if err := v.Set(s + "V"); err != nil || !slices.Contains(FullScale, v) {
			return nil, fmt.Errorf("fsr %q must be 6.144, 4.096, 2.048, 1.024, 0.512 or 0.256 (volts)", s)
		}
		o.FullScale = v
	}
	if o.DataRate, err = periphio.Choice(args, "dr", o.DataRate, DataRates...); err != nil {
		return nil, err
	}
	// Reads are sequential conversions; the agent reads at rate, so they must fit a period.
	per := (time.Second/time.Duration(o.DataRate) + time.Second/time.Duration(o.DataRate)/10) * time.Duration(len(in))
	if rate*per.Seconds() > 1 {
		return nil, fmt.Errorf("rate %v Hz is too fast for %d inputs at %d SPS (a read takes about %v)", rate, len(in), o.DataRate, per)
	}
	bus, err := periphio.OpenI2C(periphio.Bus(args))
	if err != nil {
		return nil, err
	}
	dev, err := New(bus, addr, o)
	if err != nil {
		bus.Close()
		return nil, err
	}
	return NewSource(dev, bus, rate, in), nil
}

// Read implements sensor.Source: one voltage per input, in volts.
func (s *source) Read(ctx context.Context, dst []float32) (time.Time, error) {
	if err := ctx.Err(); err != nil {
		return time.Time{}, err
	}
	var t time.Time
	for i, m := range s.in {
		v, err := s.dev.Read(ctx, m)
		if err != nil {
			return time.Time{}, err
		}
		if i == 0 {
			t = time.Now() // the sample's time is that of its first conversion
		}
		dst[i] = float32(float64(v) / float64(physic.Volt))
	}
	return t, nil
}

// Info implements sensor.Source.
func (s *source) Info() sensor.Info {
	return sensor.Info{Kind: Kind, RateHz: s.rate, Channels: len(s.in)}
}

// Close implements sensor.Source: the chip powers down by itself after each single-shot
// conversion; Close closes the bus it owns.
func (s *source) Close() error {
	if s.bus == nil {
		return nil
	}
	return s.bus.Close()
}
