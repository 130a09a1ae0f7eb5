package wire_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/fleet/wire"
)

func captureItem(seq uint64) wire.CaptureItem {
	return wire.CaptureItem{
		Seq: seq, Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Reason: wire.CaptureRandom,
		Channels: []string{"x", "y"}, Shape: []int{2, 2}, Values: []float32{0.1, -2.5, 3e-7, 1e9},
		Result: wire.Result{Seq: 40 + seq, Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Model: "m@1.0.0", Score: 0.25, Label: "normal"},
	}
}

func TestCaptureBatchRoundTrip(t *testing.T) {
	b := &wire.CaptureBatch{Device: "d1", Epoch: 7, DroppedThrough: 2, Items: []wire.CaptureItem{captureItem(3), captureItem(4)}}
	z, err := wire.EncodeCaptureBatch(b, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := wire.DecodeCaptureBatch("d1", z)
	if err != nil {
		t.Fatal(err)
	}
	if got.Epoch != 7 || got.DroppedThrough != 2 || len(got.Items) != 2 || got.Items[1].Seq != 4 {
		t.Fatalf("decoded %+v", got)
	}
	// float32 values survive JSON exactly.
	for i, v := range b.Items[0].Values {
		if got.Items[0].Values[i] != v {
			t.Errorf("value %d = %v, want %v", i, got.Items[0].Values[i], v)
		}
	}
	// Plain JSON is accepted as well.
	js, _ := wire.Encode(b)
	if _, err := wire.DecodeCaptureBatch("d1", js); err != nil {
		t.Errorf("plain JSON: %v", err)
	}
}

func TestCaptureBatchErrors(t *testing.T) {
	mod := func(f func(b *wire.CaptureBatch)) []byte {
		b := &wire.CaptureBatch{V: 1, Device: "d1", Items: []wire.CaptureItem{captureItem(1), captureItem(2)}}
		f(b)
		js, err := wire.Encode(b)
		if err != nil {
			t.Fatal(err)
		}
		return js
	}
	big := bytes.Repeat([]byte{' '}, wire.MaxCaptureBytes+1)
	for _, tc := range []struct {
		name, device, want string
		payload            []byte
	}{
		{"other device", "d2", "on topic of", mod(func(*wire.CaptureBatch) {})},
		{"no items", "d1", "no items", mod(func(b *wire.CaptureBatch) { b.Items = nil })},
		{"seq order", "d1", "must increase", mod(func(b *wire.CaptureBatch) { b.Items[1].Seq = 1 })},
		{"seq 0", "d1", "seq 0", mod(func(b *wire.CaptureBatch) { b.Items[0].Seq = 0 })},
		{"shape", "d1", "values for shape", mod(func(b *wire.CaptureBatch) { b.Items[0].Shape = []int{3, 2} })},
		{"channels", "d1", "channels named", mod(func(b *wire.CaptureBatch) { b.Items[0].Channels = []string{"x"} })},
		{"reason", "d1", "reason", mod(func(b *wire.CaptureBatch) { b.Items[0].Reason = "whim" })},
		{"model", "d1", "result model", mod(func(b *wire.CaptureBatch) { b.Items[0].Result.Model = "" })},
		{"version", "d1", "unsupported schema version", mod(func(b *wire.CaptureBatch) { b.V = 9 })},
		{"too big", "d1", "more than", big},
		{"bad gzip", "d1", "capture batch", []byte{0x1f, 0x8b, 1, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := wire.DecodeCaptureBatch(tc.device, tc.payload)
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("err = %v, want one line containing %q", err, tc.want)
			}
		})
	}
}

func TestCapturePolicyValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    wire.CapturePolicy
		want string // "" for valid
	}{
		{"off", wire.CapturePolicy{}, ""},
		{"all", wire.CapturePolicy{Random: 0.01, LowConfidence: 1, Band: 0.1, Drift: 0.5, DriftHoldS: 60, MaxPerHour: 100}, ""},
		{"random > 1", wire.CapturePolicy{Random: 1.5}, "random 1.5 is not a fraction"},
		{"negative drift", wire.CapturePolicy{Drift: -0.1}, "drift -0.1"},
		{"no band", wire.CapturePolicy{LowConfidence: 0.5}, "needs a band"},
		{"hold", wire.CapturePolicy{DriftHoldS: 1e9}, "drift_hold_s"},
		{"rate", wire.CapturePolicy{MaxPerHour: -1}, "max_per_hour"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.p.Validate()
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("Validate = %v, want %q", err, tc.want)
			}
		})
	}
	d, err := wire.DecodeDesired([]byte(`{"v":1,"generation":3,"capture":{"random":0.25}}`))
	if err != nil || d.Capture == nil || d.Capture.Random != 0.25 || d.Capture.Off() {
		t.Errorf("DecodeDesired = %+v, %v", d, err)
	}
	if _, err := wire.DecodeDesired([]byte(`{"v":1,"generation":3,"capture":{"random":2}}`)); err == nil || !strings.Contains(err.Error(), "generation 3: capture policy") {
		t.Errorf("DecodeDesired of a bad policy = %v", err)
	}
	if d, err := wire.DecodeDesired([]byte(`{"v":1,"generation":4}`)); err != nil || !d.Capture.Off() {
		t.Errorf("DecodeDesired without capture = %+v, %v; want capture off", d, err)
	}
}

// FuzzDecodeCaptureBatch: any payload gives a batch that passes validation, or a one-line
// error; never a panic or unbounded memory.
func FuzzDecodeCaptureBatch(f *testing.F) {
	b := &wire.CaptureBatch{Device: "d1", Epoch: 3, Items: []wire.CaptureItem{captureItem(1), captureItem(2)}}
	js, _ := wire.Encode(b)
	z, _ := wire.EncodeCaptureBatch(b, nil)
	f.Add(js)
	f.Add(z)
	f.Add([]byte(`{"v":1,"device":"d1","items":[{"seq":1}]}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		got, err := wire.DecodeCaptureBatch("d1", payload)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		for i := range got.Items {
			if err := got.Items[i].Validate(); err != nil {
				t.Fatalf("accepted an invalid item: %v", err)
			}
		}
	})
}

// FuzzDecodeDesired: the capture policy of any accepted Desired validates.
func FuzzDecodeDesired(f *testing.F) {
	f.Add([]byte(`{"v":1,"generation":3,"capture":{"random":0.25,"low_confidence":1,"band":0.1,"drift":1,"drift_hold_s":60,"max_per_hour":10}}`))
	f.Add([]byte(`{"v":1,"generation":1,"model":{"name":"m","version":"1"}}`))
	f.Add([]byte(`{"v":1,"capture":{"band":-1}}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		d, err := wire.DecodeDesired(payload)
		if err != nil {
			return
		}
		if d.Capture != nil {
			if err := d.Capture.Validate(); err != nil {
				t.Fatalf("accepted an invalid policy: %v", err)
			}
		}
	})
}
