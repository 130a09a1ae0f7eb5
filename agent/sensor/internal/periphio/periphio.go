// Package periphio holds what the periph.io hardware drivers under agent/sensor share: opening
// a bus or pin through periph.io/x/host (done once per process, only from a registry open
// function, so the drivers themselves take an i2c.Bus or gpio.PinIn and stay testable), the
// spec arguments they have in common, and a context-aware wait.
package periphio

import (
	"context"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"sync"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"
	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/i2c/i2creg"
	"periph.io/x/host/v3"
)

var (
	initOnce sync.Once
	initErr  error
)

// initHost loads periph's host drivers once; later calls return the first result.
func initHost() error {
	initOnce.Do(func() {
		if _, err := host.Init(); err != nil {
			initErr = fmt.Errorf("periph host init: %w", err)
		}
	})
	return initErr
}

// OpenI2C opens the I²C bus called name ("1" is /dev/i2c-1 on a Raspberry Pi).
func OpenI2C(name string) (i2c.BusCloser, error) {
	if err := initHost(); err != nil {
		return nil, err
	}
	if len(i2creg.All()) == 0 {
		// periph's own message here suggests calling Init, which we did.
		return nil, fmt.Errorf("open i2c bus %q: no I²C bus on this host (is I²C enabled and /dev/i2c-* present?)", name)
	}
	b, err := i2creg.Open(name)
	if err != nil {
		return nil, fmt.Errorf("open i2c bus %q: %w", name, err)
	}
	return b, nil
}

// PinByName returns the GPIO pin called name ("GPIO17", "17", "P1_11").
func PinByName(name string) (gpio.PinIn, error) {
	if err := initHost(); err != nil {
		return nil, err
	}
	p := gpioreg.ByName(name)
	if p == nil {
		return nil, fmt.Errorf("gpio pin %q not found on this host", name)
	}
	return p, nil
}

// Bus returns the "bus" argument, default "1" (the Raspberry Pi header's I²C bus).
func Bus(args url.Values) string {
	if b := args.Get("bus"); b != "" {
		return b
	}
	return "1"
}

// Addr parses the "addr" argument (0x76, 118) and checks it is one the chip can answer on.
func Addr(args url.Values, def uint16, allowed ...uint16) (uint16, error) {
	s := args.Get("addr")
	if s == "" {
		return def, nil
	}
	v, err := strconv.ParseUint(s, 0, 16)
	if err == nil {
		for _, a := range allowed {
			if uint16(v) == a {
				return a, nil
			}
		}
	}
	return 0, fmt.Errorf("addr %q is not one of %s", s, hexList(allowed))
}

func hexList(as []uint16) string {
	s := ""
	for i, a := range as {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%#02x", a)
	}
	return s
}

// Rate parses the "rate" argument in Hz, in (0, limit].
func Rate(args url.Values, def, limit float64) (float64, error) {
	s := args.Get("rate")
	if s == "" {
		return def, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || f <= 0 || f > limit {
		return 0, fmt.Errorf("rate %q must be a number of Hz in (0, %v]", s, limit)
	}
	return f, nil
}

// Choice parses argument key as one of the integers in allowed (e.g. oversampling 1|2|4|8|16).
func Choice(args url.Values, key string, def int, allowed ...int) (int, error) {
	s := args.Get(key)
	if s == "" {
		return def, nil
	}
	v, err := strconv.Atoi(s)
	if err == nil {
		for _, a := range allowed {
			if v == a {
				return v, nil
			}
		}
	}
	return 0, fmt.Errorf("%s %q must be one of %v", key, s, allowed)
}

// Sleep waits d or until ctx ends, whichever is first, and returns ctx's error in the latter
// case. Drivers use it for datasheet conversion and start-up times.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
