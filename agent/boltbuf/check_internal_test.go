package boltbuf

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// smallBolt builds a real bbolt file with 512-byte pages (small enough for fuzz seeds) holding
// n results and a nested bucket, and returns its bytes.
func smallBolt(t testing.TB, n int) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "seed.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{PageSize: 512, NoFreelistSync: true})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		res, err := tx.CreateBucket(bucketResults)
		if err != nil {
			return err
		}
		for i := 1; i <= n; i++ {
			if err := res.Put(seqKey(uint64(i)), []byte(`{"seq":0,"ts":"2026-01-01T00:00:00Z","model":"m@1","score":0.5,"latency_us":1}`)); err != nil {
				return err
			}
		}
		meta, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return err
		}
		if _, err := meta.CreateBucket([]byte("inline")); err != nil {
			return err
		}
		return putUint(meta, keyLastSeq, uint64(n))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// FuzzCheckFile feeds the pre-open check arbitrary files. It must never panic, and a file it
// passes must then be safe for bbolt itself: its consistency check and a read-write open run
// in this process, so a file that makes bbolt panic or fault after passing is a crash here.
func FuzzCheckFile(f *testing.F) {
	f.Add(smallBolt(f, 0))
	f.Add(smallBolt(f, 40))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 || len(data) > 1<<20 {
			return // empty is a new file, which bbolt initializes
		}
		// The structural walk first, from memory (most inputs end here, quickly); then the
		// whole check and bbolt itself on a real file for the inputs it passes.
		err := checkStructure(bytes.NewReader(data), int64(len(data)))
		var path string
		if err == nil {
			path = filepath.Join(t.TempDir(), "f.db")
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			err = checkFile(path, time.Second)
		}
		var ce *CorruptError
		if err != nil {
			if !errors.As(err, &ce) {
				t.Fatalf("checkFile = %v, want a *CorruptError for a readable file", err)
			}
			if bytes.ContainsRune([]byte(err.Error()), '\n') {
				t.Fatalf("checkFile error spans lines: %q", err)
			}
			return
		}
		db, err := bolt.Open(path, 0o600, &bolt.Options{NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
		if err != nil {
			return // a clean refusal is fine; a panic or fault is not
		}
		_ = db.View(func(tx *bolt.Tx) error {
			return tx.ForEach(func([]byte, *bolt.Bucket) error { return nil })
		})
		db.Close()
	})
}

// TestCheckAcceptsRealFiles: sound files of several shapes pass, so a healthy buffer is never
// moved aside.
func TestCheckAcceptsRealFiles(t *testing.T) {
	for _, n := range []int{0, 1, 40, 3000} {
		data := smallBolt(t, n)
		path := filepath.Join(t.TempDir(), "ok.db")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := checkFile(path, time.Second); err != nil {
			t.Errorf("checkFile(file with %d results) = %v", n, err)
		}
	}
}

// BenchmarkCheckFile times the pre-open check of a full default-sized buffer (64 MiB of
// results), the start-up cost it adds.
func BenchmarkCheckFile(b *testing.B) {
	path := filepath.Join(b.TempDir(), "buffer.db")
	buf, err := Open(path, Options{MaxResults: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	v := []byte(`{"seq":0,"ts":"2026-01-01T00:00:00Z","model":"vibration-anomaly@1.0.0","score":0.25,"label":"normal","outputs":[0.25],"latency_us":40}`)
	for buf.Stats().Bytes < DefaultMaxBytes*9/10 {
		err := buf.db.Update(func(tx *bolt.Tx) error {
			res := tx.Bucket(bucketResults)
			res.FillPercent = resultsFill
			for range 20000 {
				seq, _ := res.NextSequence()
				if err := res.Put(seqKey(seq), v); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		buf.st.Bytes += 20000 * uint64(len(v)+keyLen)
	}
	buf.Close()
	fi, _ := os.Stat(path)
	b.SetBytes(fi.Size())
	b.ResetTimer()
	for range b.N {
		if err := checkFile(path, time.Second); err != nil {
			b.Fatal(err)
		}
	}
}

// TestCheckAcceptsSyncedFreelist: a file written with bbolt's default synced free list (an
// older or foreign writer) passes, its free-list page included.
func TestCheckAcceptsSyncedFreelist(t *testing.T) {
	path := filepath.Join(t.TempDir(), "synced.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	for round := range 5 {
		err := db.Update(func(tx *bolt.Tx) error {
			res, err := tx.CreateBucketIfNotExists(bucketResults)
			if err != nil {
				return err
			}
			for i := range 2000 {
				if err := res.Put(seqKey(uint64(round*2000+i+1)), make([]byte, 100)); err != nil {
					return err
				}
			}
			for i := range 1500 { // freed pages fill the free list
				if err := res.Delete(seqKey(uint64(round*2000 + i + 1))); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if st := db.Stats(); st.FreePageN+st.PendingPageN == 0 {
		t.Fatal("test needs freed pages")
	}
	db.Close()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := f.Stat()
	m, err := readMeta(f, fi.Size())
	f.Close()
	if err != nil || m.freelist == noFreelist {
		t.Fatalf("meta %+v, %v: the test needs a synced free-list page", m, err)
	}
	if err := checkFile(path, time.Second); err != nil {
		t.Fatalf("checkFile(synced free list) = %v", err)
	}
}
