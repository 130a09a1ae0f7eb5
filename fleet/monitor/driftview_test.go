package monitor

import (
	"slices"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/wire"
)

var vib1 = wire.ModelRef{Name: "vib", Version: "1.0.0"}

// win builds window w of device (ending at minute w): kind "d" drifts on accel (psi, cusum),
// "c" is clean and scored, "u" is unscored and clean.
func win(device string, m wire.ModelRef, w uint64, kind string) fleet.DriftRecord {
	end := day0.Add(time.Duration(w) * time.Minute)
	f := wire.DriftFeature{Name: "accel", Role: wire.DriftInput, Count: 64000, Scored: kind != "u", PSI: 0.1}
	if kind == "d" {
		f.PSI, f.Drifted = 0.9, []string{wire.ScorePSI, wire.ScoreCUSUM}
	}
	out := wire.DriftFeature{Name: "score", Role: wire.DriftOutput, Count: 1000, Scored: kind != "u", PSI: 0.05}
	return fleet.DriftRecord{Received: end.Add(time.Second), Summary: wire.DriftSummary{V: 1, Device: device, Model: m,
		Window: w, Start: end.Add(-time.Minute), End: end, Inferences: 1000, Features: []wire.DriftFeature{f, out}}}
}

func seq(device string, m wire.ModelRef, kinds string) []fleet.DriftRecord {
	var out []fleet.DriftRecord
	for i, k := range kinds {
		out = append(out, win(device, m, uint64(i+1), string(k)))
	}
	return out
}

func TestDriftView(t *testing.T) {
	vib2 := wire.ModelRef{Name: "vib", Version: "2.0.0"}
	for _, c := range []struct {
		name     string
		kinds    string
		drifting bool
		since    uint64 // window whose end is Since; 0 zero time
		drifted  int
	}{
		{"never", "cccc", false, 0, 0},
		{"starts at 3", "ccdd", true, 3, 2},
		{"one clean window keeps drifting", "cdcd", true, 2, 2},
		{"two clean windows recover", "cdcc", false, 4, 1},
		{"unscored windows say nothing", "cduu", true, 2, 1},
		{"drifts again after recovery", "dccd", true, 4, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			recs := seq("pump-1", vib1, c.kinds)
			slices.Reverse(recs) // any order in
			v := DriftView(recs, 0)
			if len(v) != 1 || v[0].Devices != 1 || len(v[0].Rows) != 1 {
				t.Fatalf("view %+v", v)
			}
			d := v[0].Rows[0]
			var since time.Time
			if c.since > 0 {
				since = day0.Add(time.Duration(c.since) * time.Minute)
			}
			if d.Drifting != c.drifting || !d.Since.Equal(since) || d.Drifted != c.drifted || d.Windows != len(c.kinds) || d.LastWindow != uint64(len(c.kinds)) {
				t.Fatalf("got drifting %v since %v drifted %d windows %d last %d; want %v %v %d", d.Drifting, d.Since, d.Drifted, d.Windows, d.LastWindow, c.drifting, since, c.drifted)
			}
			if want := 1; d.Drifting && (len(d.Features) != want || d.Features[0].Name != "accel" || !slices.Equal(d.Features[0].Drifted, []string{"psi", "cusum"})) {
				t.Errorf("features %+v", d.Features)
			}
			if v[0].Drifting != map[bool]int{true: 1, false: 0}[c.drifting] {
				t.Errorf("model drifting count %d", v[0].Drifting)
			}
		})
	}
	t.Run("fleet", func(t *testing.T) {
		var recs []fleet.DriftRecord
		recs = append(recs, seq("b", vib1, "ccd")...)
		recs = append(recs, seq("a", vib1, "ccc")...)
		recs = append(recs, seq("c", vib1, "dd")...)
		recs = append(recs, seq("a", vib2, "d")...)
		v := DriftView(recs, 0)
		if len(v) != 2 || v[0].Model != "vib@1.0.0" || v[1].Model != "vib@2.0.0" {
			t.Fatalf("models %+v", v)
		}
		var order []string
		for _, r := range v[0].Rows {
			order = append(order, r.Device)
		}
		if !slices.Equal(order, []string{"b", "c", "a"}) || v[0].Devices != 3 || v[0].Drifting != 2 || v[1].Drifting != 1 {
			t.Fatalf("rows %v, %d devices, %d drifting", order, v[0].Devices, v[0].Drifting)
		}
		if v[0].Rows[0].WorstPSI != 0.9 || v[0].Rows[2].WorstPSI != 0.1 {
			t.Errorf("worst psi %v %v", v[0].Rows[0].WorstPSI, v[0].Rows[2].WorstPSI)
		}
	})
}

func TestAlerterEdgeTriggered(t *testing.T) {
	now := day0.Add(time.Hour)
	// Two stored windows, the second drifted: the alerter starts in drift and says nothing
	// about it again.
	a := NewAlerter(seq("pump-1", vib1, "cd"), 0)
	var got []string
	for i, k := range "dddcdccdd" {
		rec := win("pump-1", vib1, uint64(i+3), string(k))
		if al := a.Observe(&rec, now); al != nil {
			got = append(got, al.State+"@"+al.Since.Format("15:04"))
			if al.Window != rec.Summary.Window || al.Device != "pump-1" || al.Model != vib1 || !al.Time.Equal(now) {
				t.Errorf("alert %+v", al)
			}
			if al.State == wire.AlertDrifting && !slices.Equal(al.Features, []string{"accel: psi, cusum"}) {
				t.Errorf("features %q", al.Features)
			}
		}
		// Redelivery of the same window never alerts.
		if al := a.Observe(&rec, now); al != nil {
			t.Fatalf("redelivered window %d alerted: %+v", rec.Summary.Window, al)
		}
	}
	// windows 3..11: d d d c d c c d d → recovered at 9, drifting again at 10.
	if want := []string{"recovered@00:09", "drifting@00:10"}; !slices.Equal(got, want) {
		t.Fatalf("alerts %v, want %v", got, want)
	}
}
