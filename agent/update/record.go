package update

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/outpost-ml/outpost/agent"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// RecordName is the StateStore record the state machine lives in.
const RecordName = "update"

// recordVersion is the layout of record; a newer one is refused rather than misread.
const recordVersion = 1

// Entry names one model the agent can run: a package in the Store, or, with File empty, the
// model given on the command line.
type Entry struct {
	Ref     wire.ModelRef `json:"ref"`
	File    string        `json:"file,omitempty"`    // Store file name; "" is the command-line model
	Release uint64        `json:"release,omitempty"` // the package's release counter, 0 unknown
}

// record is the persisted state. One Put writes all of it, so the phase and which model is
// active change together: there is no moment where the record names a phase whose model is
// not the one that will be loaded on restart.
type record struct {
	V          int          `json:"v"`
	Generation uint64       `json:"generation"`
	Phase      string       `json:"phase"`
	Since      time.Time    `json:"since"`
	Reason     string       `json:"reason,omitempty"`
	Desired    wire.Desired `json:"desired"`
	Target     *Target      `json:"target,omitempty"`    // from signed metadata, once looked up
	Download   string       `json:"download,omitempty"`  // downloaded file awaiting verification
	Candidate  *Entry       `json:"candidate,omitempty"` // once verified and stored
	Active     Entry        `json:"active"`
	Previous   *Entry       `json:"previous,omitempty"` // what Active replaced, for rollback
	// Restarts counts agent restarts during the current probation.
	Restarts int `json:"restarts,omitempty"`
	// Highest is the highest release ever committed: anti-rollback refuses anything lower.
	Highest   uint64               `json:"highest_release,omitempty"`
	Shadow    *wire.ShadowStats    `json:"shadow,omitempty"`
	Probation *wire.ProbationStats `json:"probation,omitempty"`
}

func (r *record) clone() record {
	c := *r
	return c
}

func loadRecord(st agent.StateStore) (record, error) {
	b, err := st.Get(RecordName)
	if errors.Is(err, agent.ErrNoRecord) {
		return record{V: recordVersion, Phase: Idle}, nil
	}
	if err != nil {
		return record{}, err
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return record{}, fmt.Errorf("update record: %w", err)
	}
	if r.V != recordVersion {
		return record{}, fmt.Errorf("update record: layout %d, this agent reads %d", r.V, recordVersion)
	}
	return r, nil
}

func saveRecord(st agent.StateStore, r *record) error {
	r.V = recordVersion
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("update record: %w", err)
	}
	return st.Put(RecordName, b)
}
