package monitor

import (
	"cmp"
	"slices"
	"strings"
	"time"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// DefaultRecover is how many clean windows in a row end a drift: one clean window between
// drifted ones is common near a threshold, and an alert pair per such window is noise.
const DefaultRecover = 2

// FeatureDrift is one drifted feature of a device's latest window.
type FeatureDrift struct {
	Name    string   `json:"name"`
	Role    string   `json:"role"`
	Drifted []string `json:"drifted"` // scores over their thresholds (wire.ScorePSI…)
	PSI     float64  `json:"psi"`
	KS      float64  `json:"ks"`
	JS      float64  `json:"js"`
	CUSUM   float64  `json:"cusum"`
}

// DeviceDrift is one device's drift state for one model version, from its summaries.
type DeviceDrift struct {
	Device   string        `json:"device"`
	Model    wire.ModelRef `json:"model"`
	Drifting bool          `json:"drifting"`
	// Since is the end of the window that entered the current state (device clock): when
	// drifting, the first drifted window of the current run; zero when it never drifted.
	Since      time.Time `json:"since,omitzero"`
	LastWindow uint64    `json:"last_window"`
	LastEnd    time.Time `json:"last_end"` // end of the latest window
	Received   time.Time `json:"received"` // when the controller stored the latest window
	Windows    int       `json:"windows"`  // summaries seen
	Drifted    int       `json:"drifted_windows"`
	// WorstPSI is the highest PSI of a scored feature in the latest window.
	WorstPSI float64 `json:"worst_psi"`
	// Features are the latest window's drifted features (when drifting, the ones that
	// keep it drifting; empty otherwise).
	Features []FeatureDrift `json:"features,omitempty"`
	clean    int            // clean windows in a row while drifting
}

// ModelDrift is the fleet drift view of one model version.
type ModelDrift struct {
	Model    string        `json:"model"` // name@version
	Devices  int           `json:"devices"`
	Drifting int           `json:"drifting"`
	Rows     []DeviceDrift `json:"rows"` // drifting first, then by device
}

// evidence is what one window says: drifted, clean, or nothing (no feature had enough samples
// to score and none drifted).
func evidence(s *wire.DriftSummary) (drifted []FeatureDrift, scored bool) {
	for i := range s.Features {
		f := &s.Features[i]
		scored = scored || f.Scored
		if len(f.Drifted) > 0 {
			drifted = append(drifted, FeatureDrift{Name: f.Name, Role: f.Role, Drifted: slices.Clone(f.Drifted),
				PSI: f.PSI, KS: f.KS, JS: f.JS, CUSUM: f.CUSUM})
		}
	}
	return drifted, scored
}

// step folds one record into d and reports whether the drifting state changed.
func (d *DeviceDrift) step(rec *fleet.DriftRecord, recover int) bool {
	s := &rec.Summary
	d.Windows++
	d.LastWindow, d.LastEnd, d.Received = s.Window, s.End, rec.Received
	d.WorstPSI = 0
	for i := range s.Features {
		if s.Features[i].Scored {
			d.WorstPSI = max(d.WorstPSI, s.Features[i].PSI)
		}
	}
	drifted, scored := evidence(s)
	switch {
	case len(drifted) > 0:
		d.Drifted++
		d.Features, d.clean = drifted, 0
		if !d.Drifting {
			d.Drifting, d.Since = true, s.End
			return true
		}
	case scored && d.Drifting:
		d.clean++
		if d.clean >= recover {
			d.Drifting, d.Since, d.Features, d.clean = false, s.End, nil, 0
			return true
		}
	}
	return false
}

// sortRecords orders records as they happened per device: by device, model, window end,
// then window number.
func sortRecords(recs []fleet.DriftRecord) {
	slices.SortStableFunc(recs, func(a, b fleet.DriftRecord) int {
		return cmp.Or(cmp.Compare(a.Summary.Device, b.Summary.Device), cmp.Compare(a.Summary.Model.String(), b.Summary.Model.String()),
			a.Summary.End.Compare(b.Summary.End), cmp.Compare(a.Summary.Window, b.Summary.Window))
	})
}

// DriftView is the fleet drift view: per model version, which devices drift, since when and
// on which features, folded from records in window order (records may come in any order; the
// slice is sorted in place). recover ≤ 0 is DefaultRecover.
func DriftView(recs []fleet.DriftRecord, recover int) []ModelDrift {
	if recover <= 0 {
		recover = DefaultRecover
	}
	sortRecords(recs)
	byModel := map[string]*ModelDrift{}
	var cur *DeviceDrift
	var rows []*DeviceDrift
	for i := range recs {
		s := &recs[i].Summary
		if cur == nil || cur.Device != s.Device || cur.Model != s.Model {
			cur = &DeviceDrift{Device: s.Device, Model: s.Model}
			rows = append(rows, cur)
		}
		cur.step(&recs[i], recover)
	}
	for _, d := range rows {
		m := byModel[d.Model.String()]
		if m == nil {
			m = &ModelDrift{Model: d.Model.String()}
			byModel[m.Model] = m
		}
		m.Devices++
		if d.Drifting {
			m.Drifting++
		}
		m.Rows = append(m.Rows, *d)
	}
	out := make([]ModelDrift, 0, len(byModel))
	for _, m := range byModel {
		slices.SortFunc(m.Rows, func(a, b DeviceDrift) int {
			if a.Drifting != b.Drifting {
				if a.Drifting {
					return -1
				}
				return 1
			}
			return cmp.Compare(a.Device, b.Device)
		})
		out = append(out, *m)
	}
	slices.SortFunc(out, func(a, b ModelDrift) int { return cmp.Compare(a.Model, b.Model) })
	return out
}

// Alerter turns drift records into edge-triggered alerts: one when a device's model starts
// drifting, one when it recovers (DefaultRecover clean windows), none per window. It keeps
// one DeviceDrift per device and model. Not safe for concurrent use.
type Alerter struct {
	recover int
	state   map[alertKey]*DeviceDrift
}

type alertKey struct {
	device string
	model  wire.ModelRef
}

// NewAlerter returns an Alerter whose state starts from the records already stored (no alerts
// for them: they were alerted before, or happened while nobody listened). recover ≤ 0 is
// DefaultRecover.
func NewAlerter(stored []fleet.DriftRecord, recover int) *Alerter {
	if recover <= 0 {
		recover = DefaultRecover
	}
	a := &Alerter{recover: recover, state: map[alertKey]*DeviceDrift{}}
	sortRecords(stored)
	for i := range stored {
		a.Observe(&stored[i], time.Time{})
	}
	return a
}

// Observe folds one newly received record into the state and returns the alert its window
// causes, or nil. A record older than the device's latest window (a redelivery) changes
// nothing. now stamps the alert.
func (a *Alerter) Observe(rec *fleet.DriftRecord, now time.Time) *wire.DriftAlert {
	s := &rec.Summary
	k := alertKey{s.Device, s.Model}
	d := a.state[k]
	if d == nil {
		d = &DeviceDrift{Device: s.Device, Model: s.Model}
		a.state[k] = d
	} else if s.End.Before(d.LastEnd) || s.End.Equal(d.LastEnd) && s.Window <= d.LastWindow {
		return nil
	}
	if !d.step(rec, a.recover) {
		return nil
	}
	al := &wire.DriftAlert{V: wire.SchemaVersion, Device: s.Device, Model: s.Model, State: wire.AlertRecovered,
		Since: d.Since, Window: s.Window, Time: now.UTC()}
	if d.Drifting {
		al.State = wire.AlertDrifting
		for _, f := range d.Features {
			al.Features = append(al.Features, f.Name+": "+strings.Join(f.Drifted, ", "))
		}
	}
	return al
}

// State returns a copy of every device's drift state, by device then model.
func (a *Alerter) State() []DeviceDrift {
	out := make([]DeviceDrift, 0, len(a.state))
	for _, d := range a.state {
		c := *d
		c.Features = slices.Clone(d.Features)
		out = append(out, c)
	}
	slices.SortFunc(out, func(x, y DeviceDrift) int {
		return cmp.Or(cmp.Compare(x.Device, y.Device), cmp.Compare(x.Model.String(), y.Model.String()))
	})
	return out
}
