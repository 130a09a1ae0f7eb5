// Package monitor is the controller's side of model monitoring (docs/monitoring.md): accuracy
// from late labels, the fleet drift view built from the devices' drift summaries, drift
// alerts, and the MQTT service that takes labels from labelling systems and publishes alerts.
// The computations (Accuracy, DriftView, Alerter) are pure functions over stored records so
// the HTTP API, the CLI and tests share them.
package monitor

import (
	"cmp"
	"slices"
	"time"

	"github.com/outpost-ml/outpost/fleet"
)

// Outcome labels of anomaly models: a label of one of these is judged against Result.Event
// (the model's threshold decision), whatever Result.Label says.
const (
	LabelAnomaly = "anomaly"
	LabelNormal  = "normal"
)

// ClassStats are one class's counts among labelled results: TP predicted and true, FP
// predicted but not true, FN true but not predicted. Precision and Recall are nil when their
// denominator is zero (undefined, not 0).
type ClassStats struct {
	TP        int      `json:"tp"`
	FP        int      `json:"fp"`
	FN        int      `json:"fn"`
	Precision *float64 `json:"precision,omitempty"`
	Recall    *float64 `json:"recall,omitempty"`
}

// AnomalyStats are an anomaly model's confusion counts at the threshold the device applied
// (Result.Event) against labels "anomaly" (positive) and "normal".
type AnomalyStats struct {
	TP        int      `json:"tp"`
	FP        int      `json:"fp"`
	FN        int      `json:"fn"`
	TN        int      `json:"tn"`
	Precision *float64 `json:"precision,omitempty"`
	Recall    *float64 `json:"recall,omitempty"`
}

// AccuracyRow is the accuracy of one device's model version over [Start, Start+Bucket) of
// result time; in AccuracyReport.Totals Start is zero and the row covers every bucket.
type AccuracyRow struct {
	Device   string                `json:"device"`
	Model    string                `json:"model"` // name@version, as wire.Result.Model
	Start    time.Time             `json:"start,omitzero"`
	Labelled int                   `json:"labelled"`
	Correct  int                   `json:"correct"`
	Accuracy float64               `json:"accuracy"`
	Classes  map[string]ClassStats `json:"classes"`
	// Anomaly is set when every label in the row is "anomaly" or "normal".
	Anomaly *AnomalyStats `json:"anomaly,omitempty"`
}

// AccuracyReport is Accuracy's answer.
type AccuracyReport struct {
	Bucket  time.Duration `json:"bucket_ns"`
	Buckets []AccuracyRow `json:"buckets"` // by device, model, start
	Totals  []AccuracyRow `json:"totals"`  // by device, model
}

// DefaultBucket is the accuracy time bucket unless asked otherwise.
const DefaultBucket = 24 * time.Hour

// Accuracy computes accuracy, per-class precision and recall, and for anomaly models the
// confusion at the threshold, per device and model version and per bucket of result time
// (bucket ≤ 0: DefaultBucket). Results without Feedback are skipped. The prediction is
// Result.Label, except that against an outcome label ("anomaly"/"normal") it is the device's
// threshold decision Result.Event, which is what an anomaly model's alarm is.
func Accuracy(results []fleet.StoredResult, bucket time.Duration) AccuracyReport {
	if bucket <= 0 {
		bucket = DefaultBucket
	}
	type key struct {
		device, model string
		start         time.Time
	}
	acc := map[key]*tally{}
	tot := map[key]*tally{}
	for i := range results {
		r := &results[i]
		if r.Feedback == nil || r.Feedback.Label == "" {
			continue
		}
		truth, pred := r.Feedback.Label, r.Result.Label
		if truth == LabelAnomaly || truth == LabelNormal {
			pred = LabelNormal
			if r.Result.Event {
				pred = LabelAnomaly
			}
		}
		for _, k := range []struct {
			m map[key]*tally
			k key
		}{{acc, key{r.Device, r.Result.Model, r.Result.Time.UTC().Truncate(bucket)}}, {tot, key{r.Device, r.Result.Model, time.Time{}}}} {
			t := k.m[k.k]
			if t == nil {
				t = &tally{classes: map[string]*ClassStats{}}
				k.m[k.k] = t
			}
			t.add(truth, pred)
		}
	}
	rows := func(m map[key]*tally) []AccuracyRow {
		out := make([]AccuracyRow, 0, len(m))
		for k, t := range m {
			out = append(out, t.row(k.device, k.model, k.start))
		}
		slices.SortFunc(out, func(a, b AccuracyRow) int {
			return cmp.Or(cmp.Compare(a.Device, b.Device), cmp.Compare(a.Model, b.Model), a.Start.Compare(b.Start))
		})
		return out
	}
	return AccuracyReport{Bucket: bucket, Buckets: rows(acc), Totals: rows(tot)}
}

// tally accumulates one row.
type tally struct {
	n, correct  int
	nonOutcome  bool // a label other than anomaly/normal was seen
	classes     map[string]*ClassStats
	tp, fp, fnA int
	tn          int
}

func (t *tally) add(truth, pred string) {
	t.n++
	if truth == pred {
		t.correct++
	}
	c := func(l string) *ClassStats {
		s := t.classes[l]
		if s == nil {
			s = &ClassStats{}
			t.classes[l] = s
		}
		return s
	}
	if truth == pred {
		c(truth).TP++
	} else {
		c(truth).FN++
		if pred != "" {
			c(pred).FP++
		}
	}
	if truth != LabelAnomaly && truth != LabelNormal {
		t.nonOutcome = true
		return
	}
	switch {
	case truth == LabelAnomaly && pred == LabelAnomaly:
		t.tp++
	case truth == LabelNormal && pred == LabelAnomaly:
		t.fp++
	case truth == LabelAnomaly:
		t.fnA++
	default:
		t.tn++
	}
}

func ratio(num, den int) *float64 {
	if den == 0 {
		return nil
	}
	v := float64(num) / float64(den)
	return &v
}

func (t *tally) row(device, model string, start time.Time) AccuracyRow {
	r := AccuracyRow{Device: device, Model: model, Start: start, Labelled: t.n, Correct: t.correct,
		Classes: make(map[string]ClassStats, len(t.classes))}
	if t.n > 0 {
		r.Accuracy = float64(t.correct) / float64(t.n)
	}
	for l, s := range t.classes {
		s.Precision, s.Recall = ratio(s.TP, s.TP+s.FP), ratio(s.TP, s.TP+s.FN)
		r.Classes[l] = *s
	}
	if !t.nonOutcome {
		r.Anomaly = &AnomalyStats{TP: t.tp, FP: t.fp, FN: t.fnA, TN: t.tn,
			Precision: ratio(t.tp, t.tp+t.fp), Recall: ratio(t.tp, t.tp+t.fnA)}
	}
	return r
}
