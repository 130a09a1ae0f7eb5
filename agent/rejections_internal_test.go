package agent

import (
	"slices"
	"testing"

	"github.com/outpost-ml/outpost/fleet/wire"
)

// TestRejectionsCountedOnce: a rejection is new the first time its seq is reported, whatever
// order the acks come in; a repeat (the result was sent twice) and a seq the ack does not
// cover are not.
func TestRejectionsCountedOnce(t *testing.T) {
	rj := func(seqs ...uint64) []wire.Rejected {
		out := make([]wire.Rejected, len(seqs))
		for i, s := range seqs {
			out[i] = wire.Rejected{Seq: s, Reason: "r"}
		}
		return out
	}
	var r rejections
	steps := []struct {
		ack  wire.Ack
		want []uint64
	}{
		{wire.Ack{Seq: 20, Rejected: rj(18)}, []uint64{18}},
		{wire.Ack{Seq: 10, Rejected: rj(4, 9)}, []uint64{4, 9}}, // late, out of order
		{wire.Ack{Seq: 20, Rejected: rj(18)}, nil},              // the batch was sent twice
		{wire.Ack{Seq: 30, Rejected: rj(25, 25, 31, 0)}, []uint64{25}},
	}
	for i, st := range steps {
		var got []uint64
		for _, x := range r.fresh(st.ack) {
			got = append(got, x.Seq)
		}
		if !slices.Equal(got, st.want) {
			t.Fatalf("step %d: fresh(%+v) = %v, want %v", i, st.ack, got, st.want)
		}
	}
	// Only the last rejectionsKept seqs are remembered: memory stays bounded.
	for s := uint64(100); s < 100+2*rejectionsKept; s++ {
		r.fresh(wire.Ack{Seq: s, Rejected: rj(s)})
	}
	if len(r.seen) != rejectionsKept {
		t.Fatalf("remembers %d seqs, want %d", len(r.seen), rejectionsKept)
	}
}
