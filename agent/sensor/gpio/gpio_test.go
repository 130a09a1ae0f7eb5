package gpio_test

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	pgpio "periph.io/x/conn/v3/gpio"

	"github.com/outpost-ml/outpost/agent/sensor"
	"github.com/outpost-ml/outpost/agent/sensor/gpio"
	"github.com/outpost-ml/outpost/agent/sensor/sensortest"
)

// fakePin is a digital input whose level the test sets; In fails when inErr is set, as for a
// pin another driver has claimed. Safe for concurrent use.
type fakePin struct {
	name  string
	inErr error

	mu   sync.Mutex // guards the fields below
	L    pgpio.Level
	P    pgpio.Pull
	edge pgpio.Edge
}

func (p *fakePin) String() string   { return p.name }
func (p *fakePin) Name() string     { return p.name }
func (p *fakePin) Number() int      { return -1 }
func (p *fakePin) Function() string { return "In" }
func (p *fakePin) Halt() error      { return nil }
func (p *fakePin) In(pull pgpio.Pull, edge pgpio.Edge) error {
	if p.inErr != nil {
		return p.inErr
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.P, p.edge = pull, edge
	return nil
}
func (p *fakePin) Read() pgpio.Level {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.L
}
func (p *fakePin) set(l pgpio.Level) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.L = l
}
func (p *fakePin) WaitForEdge(time.Duration) bool { return false }
func (p *fakePin) Pull() pgpio.Pull               { p.mu.Lock(); defer p.mu.Unlock(); return p.P }
func (p *fakePin) DefaultPull() pgpio.Pull        { return pgpio.PullDown }

func TestRead(t *testing.T) {
	for _, invert := range []bool{false, true} {
		a := &fakePin{name: "GPIO17", L: pgpio.High}
		b := &fakePin{name: "GPIO27", L: pgpio.Low}
		in, err := gpio.New([]pgpio.PinIn{a, b}, gpio.Options{Pull: pgpio.PullUp, Invert: invert, RateHz: 50})
		if err != nil {
			t.Fatal(err)
		}
		if a.Pull() != pgpio.PullUp || b.Pull() != pgpio.PullUp || a.edge != pgpio.NoEdge {
			t.Fatalf("pulls = %v, %v, edge %v; want up, up, no edge", a.Pull(), b.Pull(), a.edge)
		}
		if info := in.Info(); info.Channels != 2 || info.RateHz != 50 || info.Kind != gpio.Kind {
			t.Fatalf("Info() = %+v", info)
		}
		var v [2]float32
		want := [2]float32{1, 0}
		if invert {
			want = [2]float32{0, 1}
		}
		for step := range 2 {
			if _, err := in.Read(t.Context(), v[:]); err != nil {
				t.Fatal(err)
			}
			if v != want {
				t.Fatalf("invert=%v step %d: Read = %v, want %v", invert, step, v, want)
			}
			a.set(!a.Read())
			want[0] = 1 - want[0]
		}
	}
}

func TestErrors(t *testing.T) {
	if _, err := gpio.New(nil, gpio.Options{}); err == nil {
		t.Fatal("New with no pins succeeded")
	}
	_, err := gpio.New([]pgpio.PinIn{&fakePin{name: "GPIO4", inErr: errors.New("pin is busy")}}, gpio.Options{Pull: pgpio.PullDown})
	if err == nil || !strings.Contains(err.Error(), "gpio GPIO4: set up as input with pull PullDown: pin is busy") {
		t.Fatalf("New = %v", err)
	}
	for _, tt := range []struct{ spec, want string }{
		{"gpio", "no pin given"},
		{"gpio?pin=GPIO17&pull=sideways", `pull "sideways"`},
		{"gpio?pin=GPIO17&invert=maybe", `invert "maybe"`},
		{"gpio?pin=GPIO17&rate=0", `rate "0"`},
		{"gpio?pin=GPIO17,&pull=up", "has an empty name"},
		{"gpio?pin=NO_SUCH_PIN_42", `gpio pin "NO_SUCH_PIN_42" not found on this host`},
		{"gpio?pins=GPIO17", `unknown argument "pins"`},
	} {
		t.Run(tt.spec, func(t *testing.T) {
			src, err := sensor.Open(tt.spec)
			if err == nil {
				src.Close()
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("Open(%q) = %v, want one line containing %q", tt.spec, err, tt.want)
			}
		})
	}
}

func TestSourceContract(t *testing.T) {
	sensortest.Run(t, func(t *testing.T) sensor.Source {
		in, err := gpio.New([]pgpio.PinIn{&fakePin{name: "GPIO5"}}, gpio.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return in
	})
}
