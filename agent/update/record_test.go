package update

import (
	"errors"
	"slices"
	"testing"

	"github.com/outpost-ml/outpost/agent"
)

// memState is a StateStore in memory.
type memState map[string][]byte

func (m memState) Get(name string) ([]byte, error) {
	v, ok := m[name]
	if !ok {
		return nil, agent.ErrNoRecord
	}
	return v, nil
}

func (m memState) Put(name string, v []byte) error { m[name] = slices.Clone(v); return nil }

var phases = []string{Idle, Downloading, Verifying, Staging, Shadow, Activating, Probation, Committed, RolledBack, Failed}

// Whatever bytes the record holds, loading it errs or yields a record that resume maps to a
// known phase; a loaded record saves and loads back the same.
func FuzzRecord(f *testing.F) {
	f.Add([]byte(`{"v":1,"generation":3,"phase":"probation","active":{"ref":{"name":"m","version":"1"},"file":"x.opkg"},"restarts":1}`))
	f.Add([]byte(`{"v":1,"phase":"shadow","desired":{"v":1,"generation":2,"shadow_s":5}}`))
	f.Add([]byte(`{"v":2,"phase":"idle"}`))
	f.Add([]byte(`{"v":1,"phase":"installing"}`))
	f.Add([]byte(`not json`))
	f.Fuzz(func(t *testing.T, data []byte) {
		st := memState{RecordName: data}
		r, err := loadRecord(st)
		if err != nil {
			return
		}
		if p := resume(r.Phase, r.Restarts); !slices.Contains(phases, p) {
			t.Fatalf("resume(%q, %d) = %q", r.Phase, r.Restarts, p)
		}
		if err := saveRecord(st, &r); err != nil {
			t.Fatal(err)
		}
		r2, err := loadRecord(st)
		if err != nil || r2.Phase != r.Phase || r2.Generation != r.Generation || r2.Active != r.Active {
			t.Fatalf("round trip: %+v, %v; was %+v", r2, err, r)
		}
	})
}

func TestLoadRecordMissing(t *testing.T) {
	r, err := loadRecord(memState{})
	if err != nil || r.Phase != Idle {
		t.Fatalf("no record: %+v, %v", r, err)
	}
	if _, err := loadRecord(memState{RecordName: []byte(`{"v":9}`)}); err == nil {
		t.Error("a newer layout was read")
	}
	var failing failState
	if _, err := loadRecord(failing); err == nil {
		t.Error("a read error was swallowed")
	}
}

type failState struct{}

func (failState) Get(string) ([]byte, error) { return nil, errors.New("disk on fire") }
func (failState) Put(string, []byte) error   { return errors.New("disk on fire") }
