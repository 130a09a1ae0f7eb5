package monitor

import (
	"math"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/wire"
)

var day0 = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

// labelled builds a stored result predicting pred (and event) at hour h, labelled truth ("" none).
func labelled(device, model string, seq uint64, h int, pred string, event bool, truth string) fleet.StoredResult {
	r := fleet.StoredResult{Device: device, Result: wire.Result{Seq: seq, Time: day0.Add(time.Duration(h) * time.Hour),
		Model: model, Label: pred, Event: event}}
	if truth != "" {
		r.Feedback = &fleet.Feedback{Device: device, Seq: seq, Label: truth}
	}
	return r
}

func near(t *testing.T, what string, got *float64, want float64) {
	t.Helper()
	if math.IsNaN(want) {
		if got != nil {
			t.Errorf("%s = %v, want undefined", what, *got)
		}
		return
	}
	if got == nil || math.Abs(*got-want) > 1e-12 {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func TestAccuracyClassifier(t *testing.T) {
	rs := []fleet.StoredResult{
		labelled("d1", "cls@1", 1, 1, "a", false, "a"),  // correct
		labelled("d1", "cls@1", 2, 2, "a", false, "b"),  // a FP, b FN
		labelled("d1", "cls@1", 3, 3, "b", false, "b"),  // correct
		labelled("d1", "cls@1", 4, 4, "c", false, "a"),  // c FP, a FN
		labelled("d1", "cls@1", 5, 30, "b", false, "b"), // correct, next day
		labelled("d1", "cls@1", 6, 5, "a", false, ""),   // not labelled: skipped
		labelled("d2", "cls@1", 1, 1, "a", false, "b"),  // other device
		labelled("d1", "cls@2", 7, 6, "a", false, "a"),  // other model version
	}
	rep := Accuracy(rs, 0)
	if rep.Bucket != DefaultBucket || len(rep.Totals) != 3 || len(rep.Buckets) != 4 {
		t.Fatalf("bucket %v, %d totals, %d buckets; want 24h, 3, 4", rep.Bucket, len(rep.Totals), len(rep.Buckets))
	}
	tot := rep.Totals[0]
	if tot.Device != "d1" || tot.Model != "cls@1" || tot.Labelled != 5 || tot.Correct != 3 || tot.Accuracy != 0.6 || tot.Anomaly != nil {
		t.Fatalf("d1 cls@1 totals: %+v", tot)
	}
	// Hand-counted: a TP1 FP1 FN1; b TP2 FP0 FN1; c TP0 FP1 FN0.
	for _, c := range []struct {
		class      string
		tp, fp, fn int
		prec, rec  float64
	}{{"a", 1, 1, 1, 0.5, 0.5}, {"b", 2, 0, 1, 1, 2.0 / 3}, {"c", 0, 1, 0, 0, math.NaN()}} {
		s := tot.Classes[c.class]
		if s.TP != c.tp || s.FP != c.fp || s.FN != c.fn {
			t.Errorf("class %s: %+v, want tp %d fp %d fn %d", c.class, s, c.tp, c.fp, c.fn)
		}
		near(t, "precision "+c.class, s.Precision, c.prec)
		near(t, "recall "+c.class, s.Recall, c.rec)
	}
	b0, b1 := rep.Buckets[0], rep.Buckets[1]
	if !b0.Start.Equal(day0) || b0.Labelled != 4 || b0.Correct != 2 || b0.Accuracy != 0.5 {
		t.Errorf("first day: %+v", b0)
	}
	if !b1.Start.Equal(day0.Add(24*time.Hour)) || b1.Labelled != 1 || b1.Correct != 1 || b1.Accuracy != 1 {
		t.Errorf("second day: %+v", b1)
	}
	if rep.Totals[1].Model != "cls@2" || rep.Totals[2].Device != "d2" || rep.Totals[2].Accuracy != 0 {
		t.Errorf("other rows: %+v %+v", rep.Totals[1], rep.Totals[2])
	}
}

func TestAccuracyAnomaly(t *testing.T) {
	rs := []fleet.StoredResult{
		labelled("p", "vib@1", 1, 0, "anomaly", true, "anomaly"), // TP
		labelled("p", "vib@1", 2, 0, "anomaly", true, "normal"),  // FP
		labelled("p", "vib@1", 3, 1, "normal", false, "anomaly"), // FN
		labelled("p", "vib@1", 4, 1, "normal", false, "normal"),  // TN
		labelled("p", "vib@1", 5, 2, "", false, "normal"),        // TN
		// The threshold decision is what counts, not the result's label.
		labelled("p", "vib@1", 6, 2, "normal", true, "anomaly"), // TP
	}
	rep := Accuracy(rs, time.Hour)
	if len(rep.Totals) != 1 || len(rep.Buckets) != 3 {
		t.Fatalf("%d totals %d buckets, want 1 and 3", len(rep.Totals), len(rep.Buckets))
	}
	tot := rep.Totals[0]
	a := tot.Anomaly
	if a == nil || a.TP != 2 || a.FP != 1 || a.FN != 1 || a.TN != 2 {
		t.Fatalf("anomaly counts %+v, want tp 2 fp 1 fn 1 tn 2", a)
	}
	near(t, "precision", a.Precision, 2.0/3)
	near(t, "recall", a.Recall, 2.0/3)
	if tot.Labelled != 6 || tot.Correct != 4 {
		t.Errorf("labelled %d correct %d, want 6 and 4", tot.Labelled, tot.Correct)
	}
	if s := tot.Classes[LabelAnomaly]; s.TP != 2 || s.FP != 1 || s.FN != 1 {
		t.Errorf("class anomaly %+v", s)
	}
	// Hour 1 has no positive prediction: precision undefined, recall 0.
	h1 := rep.Buckets[1].Anomaly
	near(t, "hour 1 precision", h1.Precision, math.NaN())
	near(t, "hour 1 recall", h1.Recall, 0)
}

func TestAccuracyEmpty(t *testing.T) {
	rep := Accuracy([]fleet.StoredResult{labelled("d", "m@1", 1, 0, "a", false, "")}, time.Hour)
	if len(rep.Totals) != 0 || len(rep.Buckets) != 0 {
		t.Fatalf("unlabelled results made rows: %+v", rep)
	}
}
