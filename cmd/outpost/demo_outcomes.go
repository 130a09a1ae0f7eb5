package main

import (
	"context"
	"time"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// outcomes follows what the devices' models say, as the controller stored it: for each device
// its latest stored result and the events among the results stored since the demo started.
// It reads each stored result once, from the store's per-device sequence order, so a result
// a device sent twice (a lost ack) counts once.
type outcomes struct {
	store fleet.Store
	devs  map[string]*outcome
}

type outcome struct {
	epoch  uint64
	after  uint64 // highest seq read
	events uint64
	latest *wire.Result
}

// outcomePage and outcomePages bound one update's reads per device, so a device with a large
// backlog just stored delays the table by at most that many results.
const (
	outcomePage  = 1000
	outcomePages = 20
)

func newOutcomes(store fleet.Store) *outcomes {
	return &outcomes{store: store, devs: map[string]*outcome{}}
}

// update reads the results stored since the last call for every device the store knows.
// A store error leaves the previous figures: the table is a view, not a check.
func (o *outcomes) update(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	devs, err := o.store.Devices(ctx)
	if err != nil {
		return
	}
	for _, d := range devs {
		st, err := o.store.ResultStats(ctx, d.ID)
		if err != nil {
			continue
		}
		cur := o.devs[d.ID]
		if cur == nil {
			// Results stored by earlier runs are not this run's events; the newest of them
			// is still the device's latest outcome.
			cur = &outcome{epoch: st.Epoch, after: st.Contiguous}
			if st.Contiguous > 0 {
				if rs, err := o.store.Results(ctx, d.ID, st.Contiguous-1, 1); err == nil && len(rs) == 1 {
					cur.latest = &rs[0]
					cur.after = rs[0].Seq
				}
			}
			o.devs[d.ID] = cur
		}
		if st.Epoch != cur.epoch { // a wiped data directory: a new sequence space from seq 1
			cur.epoch, cur.after = st.Epoch, 0
		}
		for range outcomePages {
			rs, err := o.store.Results(ctx, d.ID, cur.after, outcomePage)
			if err != nil || len(rs) == 0 {
				break
			}
			for i := range rs {
				if rs[i].Event {
					cur.events++
				}
			}
			cur.latest = &rs[len(rs)-1]
			cur.after = cur.latest.Seq
			if len(rs) < outcomePage {
				break
			}
		}
	}
}

// get returns device's figures; ok is false before update has seen it (or for a nil o).
func (o *outcomes) get(device string) (outcome, bool) {
	if o == nil {
		return outcome{}, false
	}
	c, ok := o.devs[device]
	if !ok {
		return outcome{}, false
	}
	return *c, true
}
