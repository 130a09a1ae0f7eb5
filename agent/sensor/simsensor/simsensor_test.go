package simsensor_test

import (
	"context"
	"strings"
	"testing"

	"github.com/outpost-ml/outpost/agent/sensor"
	"github.com/outpost-ml/outpost/agent/sensor/sensortest"
	"github.com/outpost-ml/outpost/agent/sensor/simsensor"
	"github.com/outpost-ml/outpost/models/sim"
)

func TestOpen(t *testing.T) {
	tests := []struct {
		spec      string
		wantRate  float64
		wantFault sim.Fault
		wantErr   string
	}{
		{spec: "sim:vibration", wantRate: 50},
		{spec: "sim:vibration?seed=3&fault=bearing&rate=100", wantRate: 100, wantFault: sim.FaultBearing},
		{spec: "sim:vibration?fault=looseness&shaft=7.5", wantRate: 50, wantFault: sim.FaultLooseness},
		{spec: "sim:vibration?seed=-1", wantErr: `seed "-1"`},
		{spec: "sim:vibration?fault=rust", wantErr: `fault "rust"`},
		{spec: "sim:vibration?rate=0", wantErr: `rate "0"`},
		{spec: "sim:vibration?rate=NaN", wantErr: `rate "NaN"`},
		{spec: "sim:vibration?rate=50&shaft=25", wantErr: "shaft 25 Hz must be below half the rate"},
		{spec: "sim:vibration?speed=3", wantErr: `unknown argument "speed"`},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			src, err := sensor.Open(tt.spec)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || strings.Contains(err.Error(), "\n") {
					t.Fatalf("Open(%q) = %v, want one-line error containing %q", tt.spec, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open(%q) = %v", tt.spec, err)
			}
			defer src.Close()
			info := src.Info()
			if info.Kind != simsensor.KindVibration || info.RateHz != tt.wantRate || info.Channels != 1 {
				t.Fatalf("Info() = %+v, want rate %v and 1 channel", info, tt.wantRate)
			}
			if f := src.(*simsensor.Vibration).Fault(); f != tt.wantFault {
				t.Fatalf("Fault() = %v, want %v", f, tt.wantFault)
			}
		})
	}
}

// The source must give exactly the generator's samples, so the model sees its training signal.
func TestMatchesGenerator(t *testing.T) {
	src, err := sensor.Open("sim:vibration?seed=7&fault=imbalance")
	if err != nil {
		t.Fatal(err)
	}
	gen := sim.NewVibration(sim.VibrationConfig{Seed: 7, SampleRateHz: 50, ShaftHz: sim.DefaultShaftHz, Fault: sim.FaultImbalance})
	var buf [1]float32
	for i := range 200 {
		if i == 100 {
			src.(*simsensor.Vibration).SetFault(sim.FaultNone)
			gen.SetFault(sim.FaultNone)
		}
		if _, err := src.Read(context.Background(), buf[:]); err != nil {
			t.Fatal(err)
		}
		if want := float32(gen.Next()); buf[0] != want {
			t.Fatalf("sample %d = %v, want %v", i, buf[0], want)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := src.Read(ctx, buf[:]); err == nil {
		t.Fatal("Read with a cancelled context succeeded")
	}
}

func TestSourceContract(t *testing.T) {
	sensortest.Run(t, func(t *testing.T) sensor.Source {
		src, err := sensor.Open("sim:vibration?seed=9&fault=looseness")
		if err != nil {
			t.Fatal(err)
		}
		return src
	})
}
