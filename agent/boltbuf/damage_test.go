package boltbuf_test

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/outpost-ml/outpost/agent/boltbuf"
)

func key(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

// damage edits the closed buffer file at path directly with bbolt, as a bad SD card would.
func damage(t *testing.T, path string, fn func(res *bolt.Bucket) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{NoFreelistSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return fn(tx.Bucket([]byte("results"))) }); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// damagedBuffer makes a buffer of n results (bounded to max, 0 for the default), damages its
// closed file with fn and opens it again; the buffer is closed when the test ends.
func damagedBuffer(t *testing.T, n, max int, fn func(res *bolt.Bucket) error) (*boltbuf.Buffer, string) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "buffer.db")
	b := open(t, dir, max)
	mustAppend(t, b, batch(1, n))
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	damage(t, path, fn)
	b, err := boltbuf.Open(path, boltbuf.Options{MaxResults: max})
	if err != nil {
		t.Fatalf("Open(damaged records) = %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b, path
}

// quarantine returns the reasons kept in the file's quarantine bucket.
func quarantine(t *testing.T, path string) []string {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var reasons []string
	err = db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("quarantine")).ForEach(func(_, v []byte) error {
			var q struct{ Reason string }
			if err := json.Unmarshal(v, &q); err != nil {
				return err
			}
			reasons = append(reasons, q.Reason)
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return reasons
}

// TestDamagedRecordsQuarantined: records with damaged JSON, a damaged seq prefix or a damaged
// key are set aside as they are read; the read returns every other record instead of failing,
// the count persists, and the seqs lost are announced (DroppedThrough) once the acks reach
// them, so the controller can ack past them.
func TestDamagedRecordsQuarantined(t *testing.T) {
	reads := []struct {
		name string
		read func(b *boltbuf.Buffer) ([]uint64, error)
	}{
		{"AfterRaw", func(b *boltbuf.Buffer) ([]uint64, error) {
			_, seqs, err := b.AfterRaw(0, 100, 1<<20)
			return seqs, err
		}},
		{"After", func(b *boltbuf.Buffer) ([]uint64, error) {
			rs, err := b.After(0, 100)
			seqs := make([]uint64, len(rs))
			for i, r := range rs {
				seqs[i] = r.Seq
			}
			return seqs, err
		}},
	}
	for _, rd := range reads {
		t.Run(rd.name, func(t *testing.T) {
			b, path := damagedBuffer(t, 10, 0, func(res *bolt.Bucket) error {
				v := res.Get(key(4))
				if err := res.Put(key(4), append([]byte{}, v[:len(v)/2]...)); err != nil { // cut JSON
					return err
				}
				if err := res.Put(key(7), []byte(`{"sxq":0,"ts":"2026-01-01T00:00:00Z"}`)); err != nil { // damaged seq prefix
					return err
				}
				// A key that is not 8 bytes, sorting between seqs 5 and 6.
				return res.Put(append(key(5), 'x'), []byte(`{"seq":0}`))
			})
			seqs, err := rd.read(b)
			want := []uint64{1, 2, 3, 5, 6, 8, 9, 10}
			if err != nil || !slices.Equal(seqs, want) {
				t.Fatalf("%s = %v, %v; want %v and no error", rd.name, seqs, err, want)
			}
			st := b.Stats()
			if st.Quarantined != 3 || st.Len != 8 {
				t.Fatalf("after the read: quarantined %d, len %d; want 3 and 8", st.Quarantined, st.Len)
			}
			if st.DroppedThrough != 0 {
				t.Fatalf("DroppedThrough = %d before any ack; seqs 1-3 are not delivered yet", st.DroppedThrough)
			}
			// A second read finds nothing more to quarantine and the same results.
			if seqs, err := rd.read(b); err != nil || !slices.Equal(seqs, want) || b.Stats().Quarantined != 3 {
				t.Fatalf("second %s = %v, %v, quarantined %d", rd.name, seqs, err, b.Stats().Quarantined)
			}
			for _, tt := range []struct{ ack, through uint64 }{{3, 4}, {6, 7}, {10, 7}} {
				if err := b.Ack(tt.ack); err != nil {
					t.Fatalf("Ack(%d) = %v", tt.ack, err)
				}
				if got := b.Stats().DroppedThrough; got != tt.through {
					t.Fatalf("after Ack(%d): DroppedThrough = %d, want %d", tt.ack, got, tt.through)
				}
			}
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			reasons := quarantine(t, path)
			if len(reasons) != 3 {
				t.Fatalf("quarantine holds %d records (%q), want 3", len(reasons), reasons)
			}
			b2, err := boltbuf.Open(path, boltbuf.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer b2.Close()
			if q := b2.Stats().Quarantined; q != 3 {
				t.Fatalf("Quarantined after reopen = %d, want 3", q)
			}
		})
	}
}

// TestDamagedFirstRecord: the oldest record is damaged. Appends and acks go on (the stats
// read the oldest record's time on every commit), and the read sets it aside at once, with
// its seq announced since nothing before it is waiting.
func TestDamagedFirstRecord(t *testing.T) {
	b, _ := damagedBuffer(t, 5, 0, func(res *bolt.Bucket) error { return res.Put(key(1), []byte(`{"seq":0,"ts":"20`)) })
	mustAppend(t, b, batch(6, 2))
	_, seqs, err := b.AfterRaw(0, 100, 1<<20)
	if err != nil || !slices.Equal(seqs, []uint64{2, 3, 4, 5, 6, 7}) {
		t.Fatalf("AfterRaw = %v, %v", seqs, err)
	}
	if st := b.Stats(); st.Quarantined != 1 || st.DroppedThrough != 1 {
		t.Fatalf("quarantined %d, dropped through %d; want 1 and 1", st.Quarantined, st.DroppedThrough)
	}
}

// TestAckPastDamagedKey: a key shorter than a seq sorts first; Ack and drop-oldest step over
// it (setting it aside) instead of decoding it.
func TestAckPastDamagedKey(t *testing.T) {
	for _, tt := range []struct {
		name string
		act  func(b *boltbuf.Buffer) error
	}{
		{"ack", func(b *boltbuf.Buffer) error { return b.Ack(3) }},
		{"drop-oldest", func(b *boltbuf.Buffer) error { return b.Append(batch(100, 5)) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b, _ := damagedBuffer(t, 5, 5, func(res *bolt.Bucket) error { return res.Put([]byte{0, 0, 0}, []byte("?")) })
			if err := tt.act(b); err != nil {
				t.Fatalf("%s with a damaged key = %v", tt.name, err)
			}
			if q := b.Stats().Quarantined; q != 1 {
				t.Fatalf("Quarantined = %d, want 1", q)
			}
		})
	}
}

// TestRenewEpoch: a new epoch renumbers the held results from 1, in order and unchanged.
func TestRenewEpoch(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "buffer.db")
	b := open(t, dir, 0)
	mustAppend(t, b, batch(1, 10))
	if err := b.Ack(4); err != nil {
		t.Fatal(err)
	}
	before, _ := b.After(0, 100)
	old := b.Epoch()
	epoch, err := b.RenewEpoch()
	if err != nil || epoch == old || epoch == 0 || b.Epoch() != epoch {
		t.Fatalf("RenewEpoch = %d, %v (old %d, Epoch() %d)", epoch, err, old, b.Epoch())
	}
	after, _ := b.After(0, 100)
	if len(after) != len(before) {
		t.Fatalf("%d results after renewal, %d before", len(after), len(before))
	}
	for i := range after {
		if after[i].Seq != uint64(i+1) || !after[i].Time.Equal(before[i].Time) {
			t.Fatalf("result %d after renewal: seq %d time %v; want seq %d time %v", i, after[i].Seq, after[i].Time, i+1, before[i].Time)
		}
	}
	st := b.Stats()
	if st.LastSeq != 6 || st.AckedSeq != 0 || st.DroppedThrough != 0 || st.EpochRenewals != 1 || st.Len != 6 {
		t.Fatalf("stats after renewal = %+v", st)
	}
	mustAppend(t, b, batch(11, 1))
	b.Close()
	b, err = boltbuf.Open(path, boltbuf.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if st := b.Stats(); st.Epoch != epoch || st.LastSeq != 7 || st.EpochRenewals != 1 {
		t.Fatalf("after reopen: %+v; want epoch %d, last seq 7, 1 renewal", st, epoch)
	}
}

// corruptions damage a closed, healthy buffer file the way storage does.
var corruptions = []struct {
	name string
	do   func(t *testing.T, path string, data []byte) []byte
}{
	{"truncated to whole pages", func(t *testing.T, _ string, data []byte) []byte { return data[:len(data)/2/4096*4096] }},
	{"truncated mid-page", func(t *testing.T, _ string, data []byte) []byte { return data[:len(data)-1000] }},
	{"page overwritten", func(t *testing.T, _ string, data []byte) []byte {
		// Every page past the metas and the first few, overwritten with noise.
		rng := rand.New(rand.NewPCG(1, 2))
		for off := 6 * 4096; off < len(data); off += 4096 {
			for i := range 64 {
				data[off+i] = byte(rng.Uint32())
			}
		}
		return data
	}},
	{"page id flipped", func(t *testing.T, _ string, data []byte) []byte {
		for off := 2 * 4096; off < len(data); off += 4096 {
			data[off] ^= 0x40
		}
		return data
	}},
	{"element offsets flipped", func(t *testing.T, _ string, data []byte) []byte {
		for off := 2 * 4096; off < len(data); off += 4096 {
			data[off+16+5] ^= 0x7f // pos of the first element of every page
		}
		return data
	}},
	{"both meta pages", func(t *testing.T, _ string, data []byte) []byte {
		data[16+20] ^= 1
		data[4096+16+20] ^= 1
		return data
	}},
	{"not a bolt file", func(t *testing.T, _ string, data []byte) []byte {
		return []byte(strings.Repeat("not a bolt file", 1000))
	}},
}

// TestCorruptFileMovedAside: a buffer file damaged in any of these ways used to panic bbolt
// (inside its free-page scan), fault on the mapping or refuse to open, on every start. Now Open
// moves it aside as buffer.db.corrupt-TIMESTAMP, starts a fresh buffer with a new epoch, says
// so in Stats().Recovered, and works.
func TestCorruptFileMovedAside(t *testing.T) {
	for _, c := range corruptions {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "buffer.db")
			b := open(t, dir, 0)
			for i := range 4 {
				mustAppend(t, b, batch(1+i*500, 500))
			}
			old := b.Epoch()
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			damaged := c.do(t, path, data)
			if err := os.WriteFile(path, damaged, 0o600); err != nil {
				t.Fatal(err)
			}
			now := time.Date(2026, 12, 3, 15, 4, 5, 0, time.UTC)
			b, err = boltbuf.Open(path, boltbuf.Options{Now: func() time.Time { return now }})
			if err != nil {
				t.Fatalf("Open(damaged file) = %v, want a fresh buffer", err)
			}
			defer b.Close()
			st := b.Stats()
			aside := path + ".corrupt-20261203T150405.000Z"
			if st.Recovered == "" || !strings.Contains(st.Recovered, filepath.Base(aside)) || strings.Contains(st.Recovered, "\n") {
				t.Fatalf("Recovered = %q, want one line naming %s", st.Recovered, filepath.Base(aside))
			}
			if st.Epoch == old || st.Epoch == 0 || st.LastSeq != 0 || st.Len != 0 {
				t.Fatalf("fresh buffer stats %+v; want a new epoch (old %d) and nothing held", st, old)
			}
			got, err := os.ReadFile(aside)
			if err != nil || len(got) != len(damaged) {
				t.Fatalf("damaged file kept as %s: %d bytes, %v; want the %d damaged bytes", aside, len(got), err, len(damaged))
			}
			mustAppend(t, b, batch(1, 3))
			if rs, err := b.After(0, 10); err != nil || len(rs) != 3 || rs[0].Seq != 1 {
				t.Fatalf("fresh buffer After = %d results, %v", len(rs), err)
			}
			t.Logf("%s", st.Recovered)
		})
	}
}

// TestHealthyFileNotMovedAside: a sound file, however it was left (clean close, many
// transactions, freed pages), is never taken for a damaged one.
func TestHealthyFileNotMovedAside(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "buffer.db")
	b := open(t, dir, 0)
	for i := range 20 {
		mustAppend(t, b, batch(1+i*300, 300))
		if err := b.Ack(uint64(i*300 + 150)); err != nil {
			t.Fatal(err)
		}
	}
	epoch := b.Epoch()
	b.Close()
	b, err := boltbuf.Open(path, boltbuf.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if st := b.Stats(); st.Recovered != "" || st.Epoch != epoch {
		t.Fatalf("healthy file: Recovered %q, epoch %d (was %d)", st.Recovered, st.Epoch, epoch)
	}
	if m, _ := filepath.Glob(path + ".corrupt-*"); len(m) != 0 {
		t.Fatalf("healthy file moved aside: %v", m)
	}
}

// TestLockHeldForLife: a second Open on the same file is refused with the holder's pid, and
// touches nothing: not the compaction file of the running buffer, not during its compactions
// (when bbolt's own lock is briefly released).
func TestLockHeldForLife(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "buffer.db")
	b, err := boltbuf.Open(path, boltbuf.Options{CompactMinBytes: 1, CompactRatio: 1.01})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := os.WriteFile(path+".compact", []byte("in progress"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = boltbuf.Open(path, boltbuf.Options{LockTimeout: 20 * time.Millisecond})
	want := fmt.Sprintf("pid %d", os.Getpid())
	if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("second Open = %v, want one line naming %s", err, want)
	}
	if _, err := os.Stat(path + ".compact"); err != nil {
		t.Fatalf("second Open removed the holder's compaction file: %v", err)
	}
	os.Remove(path + ".compact")

	// Compact over and over while another opener keeps trying.
	var stop atomic.Bool
	var wg sync.WaitGroup
	var stolen atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			if o, err := boltbuf.Open(path, boltbuf.Options{LockTimeout: time.Millisecond}); err == nil {
				stolen.Add(1)
				o.Close()
			}
		}
	}()
	for i := range 30 {
		mustAppend(t, b, batch(1+i*200, 200))
		if err := b.Ack(uint64((i + 1) * 200)); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	n, cerr := b.Compactions()
	if n == 0 || cerr != nil {
		t.Fatalf("Compactions = %d, %v; the test needs compactions", n, cerr)
	}
	if s := stolen.Load(); s != 0 {
		t.Fatalf("another opener got the buffer %d times during %d compactions", s, n)
	}
	if _, err := b.After(0, 1); errors.Is(err, os.ErrClosed) {
		t.Fatal(err)
	}
}

// TestFileInUseNotMovedAside: a buffer file another program holds open for writing (bbolt's
// own lock: an older agent without the lock file, a bbolt tool) is in use, not damaged: Open
// fails with one line and leaves it where it is.
func TestFileInUseNotMovedAside(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "buffer.db")
	b := open(t, dir, 0)
	mustAppend(t, b, batch(1, 10))
	b.Close()
	other, err := bolt.Open(path, 0o600, &bolt.Options{NoFreelistSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	_, err = boltbuf.Open(path, boltbuf.Options{LockTimeout: 50 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "locked by another process") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("Open(file in use) = %v, want one line saying it is locked", err)
	}
	if m, _ := filepath.Glob(path + ".corrupt-*"); len(m) != 0 {
		t.Fatalf("file in use moved aside: %v", m)
	}
}

// TestRecoveredNoteKeptUntilCleared: the note about a replaced file survives restarts until the
// agent has announced it, so a run that never reached the broker does not lose it.
func TestRecoveredNoteKeptUntilCleared(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "buffer.db")
	if err := os.WriteFile(path, []byte(strings.Repeat("not a bolt file", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	reopen := func() *boltbuf.Buffer {
		b, err := boltbuf.Open(path, boltbuf.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	b := reopen()
	note := b.Stats().Recovered
	b.Close()
	b = reopen()
	if got := b.Stats().Recovered; got != note || note == "" {
		t.Fatalf("after a restart Recovered = %q, want %q", got, note)
	}
	if err := b.ClearRecovered(); err != nil {
		t.Fatal(err)
	}
	if got := b.Stats().Recovered; got != note {
		t.Fatalf("Recovered after ClearRecovered = %q; this run still reports it", got)
	}
	b.Close()
	b = reopen()
	defer b.Close()
	if got := b.Stats().Recovered; got != "" {
		t.Fatalf("Recovered after it was cleared and reopened = %q, want empty", got)
	}
}
