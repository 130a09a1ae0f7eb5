// Package sensortest is the contract suite for sensor.Source: every driver runs it from its
// own tests.
package sensortest

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/agent/sensor"
)

// Run checks the Source that open returns; open is called once per subtest and the suite
// closes what it opens.
func Run(t *testing.T, open func(t *testing.T) sensor.Source) {
	t.Run("Info", func(t *testing.T) {
		src := open(t)
		defer closeSource(t, src)
		info := src.Info()
		if info.Kind == "" || !(info.RateHz > 0) || math.IsInf(info.RateHz, 0) || info.Channels < 1 {
			t.Fatalf("Info() = %+v, want a kind, a positive finite rate and at least one channel", info)
		}
		if info.ReadHz < 0 || math.IsNaN(info.ReadHz) || math.IsInf(info.ReadHz, -1) {
			t.Fatalf("Info().ReadHz = %v, want 0, a positive rate or +Inf", info.ReadHz)
		}
		if info.Names != nil && len(info.Names) != info.Channels {
			t.Fatalf("Info() names %d channels of %d: %q", len(info.Names), info.Channels, info.Names)
		}
	})
	t.Run("Read", func(t *testing.T) {
		src := open(t)
		defer closeSource(t, src)
		n := src.Info().Channels
		buf := make([]float32, n+1)
		buf[n] = 12345 // sentinel: Read must fill exactly Channels values
		before := time.Now()
		for i := range 10 {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			ts, err := src.Read(ctx, buf[:n])
			cancel()
			if err != nil {
				t.Fatalf("Read #%d = %v", i, err)
			}
			if ts.Before(before.Add(-time.Second)) || ts.After(time.Now().Add(time.Second)) {
				t.Fatalf("Read #%d timestamp %v, want about now", i, ts)
			}
			for c, v := range buf[:n] {
				if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
					t.Fatalf("Read #%d channel %d = %v", i, c, v)
				}
			}
			if buf[n] != 12345 {
				t.Fatalf("Read wrote past Info().Channels values")
			}
		}
	})
	t.Run("CancelledContext", func(t *testing.T) {
		src := open(t)
		defer closeSource(t, src)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		start := time.Now()
		if _, err := src.Read(ctx, make([]float32, src.Info().Channels)); err == nil {
			t.Fatal("Read with a cancelled context succeeded")
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("Read with a cancelled context took %v", d)
		}
	})
}

func closeSource(t *testing.T, src sensor.Source) {
	if err := src.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
}
