// Package gpio reads digital inputs through periph.io and registers them with agent/sensor as
// kind "gpio": one channel per pin, 0 for low and 1 for high (after optional inversion).
//
// Arguments:
//
//	pin=NAMES   pins, comma separated, as periph.io names them: GPIO17, 17 or P1_11 (required)
//	pull=P      internal resistor: up, down, float or keep (default keep: leave it as it is)
//	invert=B    true reports 1 for low, for active-low inputs such as a switch to ground
//	rate=HZ     read rate in Hz, in (0, 10000] (default 10)
//
// For example "gpio?pin=GPIO17,GPIO27&pull=up&invert=true&rate=50".
package gpio

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	pgpio "periph.io/x/conn/v3/gpio"

	"github.com/outpost-ml/outpost/agent/sensor"
	"github.com/outpost-ml/outpost/agent/sensor/internal/periphio"
)

// Kind is the registered sensor kind.
const Kind = "gpio"

// Options configures an Input.
type Options struct {
	Pull   pgpio.Pull // PullNoChange leaves the resistor as it is
	Invert bool       // report low as 1
	RateHz float64    // read rate; 0 means 10
}

// Input is a group of digital input pins read together; it implements sensor.Source.
type Input struct {
	pins []pgpio.PinIn
	opts Options
}

// New sets every pin up as an input without edge detection (the agent polls at its rate, so
// edges would only cost interrupts) and returns the group.
func New(pins []pgpio.PinIn, opts Options) (*Input, error) {
	if len(pins) == 0 {
		return nil, fmt.Errorf("gpio: no pins given")
	}
	if opts.RateHz == 0 {
		opts.RateHz = 10
	}
	for _, p := range pins {
		if err := p.In(opts.Pull, pgpio.NoEdge); err != nil {
			return nil, fmt.Errorf("gpio %s: set up as input with pull %s: %w", p.Name(), opts.Pull, err)
		}
	}
	return &Input{pins: slices.Clone(pins), opts: opts}, nil
}

func init() { sensor.Register(Kind, open) }

func open(args url.Values) (sensor.Source, error) {
	if err := sensor.CheckArgs(args, "pin", "pull", "invert", "rate"); err != nil {
		return nil, err
	}
	var o Options
	var err error
	if o.RateHz, err = periphio.Rate(args, 10, 10000); err != nil {
		return nil, err
	}
	switch s := args.Get("pull"); s {
	case "", "keep":
		o.Pull = pgpio.PullNoChange
	case "up":
		o.Pull = pgpio.PullUp
	case "down":
		o.Pull = pgpio.PullDown
	case "float":
		o.Pull = pgpio.Float
	default:
		return nil, fmt.Errorf("pull %q must be up, down, float or keep", s)
	}
	if s := args.Get("invert"); s != "" {
		if o.Invert, err = strconv.ParseBool(s); err != nil {
			return nil, fmt.Errorf("invert %q must be true or false", s)
		}
	}
	names := args.Get("pin")
	if names == "" {
		return nil, fmt.Errorf("no pin given (pin=GPIO17 or pin=GPIO17,GPIO27)")
	}
	list := strings.Split(names, ",")
	if slices.Contains(list, "") {
		return nil, fmt.Errorf("pin list %q has an empty name", names)
	}
	var pins []pgpio.PinIn
	for _, n := range list {
		p, err := periphio.PinByName(n)
		if err != nil {
			return nil, err
		}
		pins = append(pins, p)
	}
	return New(pins, o)
}

// Read implements sensor.Source: 1 for high, 0 for low, per pin (swapped when inverted).
func (in *Input) Read(ctx context.Context, dst []float32) (time.Time, error) {
	if err := ctx.Err(); err != nil {
		return time.Time{}, err
	}
	t := time.Now()
	for i, p := range in.pins {
		dst[i] = 0
		if bool(p.Read()) != in.opts.Invert {
			dst[i] = 1
		}
	}
	return t, nil
}

// Info implements sensor.Source.
func (in *Input) Info() sensor.Info {
	return sensor.Info{Kind: Kind, RateHz: in.opts.RateHz, Channels: len(in.pins)}
}

// Close implements sensor.Source. The pins stay inputs; periph.io has nothing to release.
func (in *Input) Close() error { return nil }
