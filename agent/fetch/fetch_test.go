package fetch

import (
	"bytes"
	"context"
	"errors"
	"math/bits"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/outpost-ml/outpost/fleet/wire"
)

// newTestFetcher builds a Fetcher over l with test-friendly timeouts and ample free disk.
func newTestFetcher(t *testing.T, dir string, l Link, tweak func(*Options)) *Fetcher {
	t.Helper()
	o := Options{
		Dir: dir, Link: l,
		IdleTimeout: 200 * time.Millisecond, RateLimitBackoff: 10 * time.Millisecond,
		FreeSpace: func(string) (uint64, error) { return 1 << 40, nil },
	}
	if tweak != nil {
		tweak(&o)
	}
	f, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestFetchMeta(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 20000) // 320,000 bytes: 5 blocks
	l := newFakeLink(t, map[string][]byte{
		"meta/timestamp.json": []byte(`{"signed":{}}`),
		"meta/3.targets.json": big,
		"meta/empty.json":     {},
	})
	f := newTestFetcher(t, t.TempDir(), l, nil)
	ctx := t.Context()
	for _, tc := range []struct {
		name   string
		maxLen int64
		want   []byte
		err    error
	}{
		{"timestamp.json", 1 << 10, []byte(`{"signed":{}}`), nil},
		{"3.targets.json", 1 << 20, big, nil},
		{"empty.json", 10, []byte{}, nil},
		{"3.targets.json", 1000, nil, ErrTooLong},
		{"4.root.json", 1 << 10, nil, ErrNotFound},
	} {
		got, err := f.FetchMeta(ctx, tc.name, tc.maxLen)
		if !errors.Is(err, tc.err) || (err == nil && !bytes.Equal(got, tc.want)) {
			t.Errorf("FetchMeta(%q, %d) = %d bytes, %v; want %d bytes, %v", tc.name, tc.maxLen, len(got), err, len(tc.want), tc.err)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("FetchMeta(%q) error is not one line: %q", tc.name, err)
		}
	}
	// Endless data: a file over maxLen costs one block, never more.
	before := len(l.requests())
	if _, err := f.FetchMeta(ctx, "3.targets.json", 1000); !errors.Is(err, ErrTooLong) {
		t.Fatal(err)
	}
	if reqs := l.requests()[before:]; len(reqs) != 1 || reqs[0].Mask != 1 {
		t.Errorf("an over-long file cost requests %+v, want one for block 0", reqs)
	}
}

// TestFetchMetaFirstRequestLost: the first request for a file of unknown size goes
// unanswered (sent to a controller replica that died), so the idle timeout drops it before any
// bitmap exists; the fetcher asks again and gets the file. It used to panic here.
func TestFetchMetaFirstRequestLost(t *testing.T) {
	want := []byte(`{"signed":{"version":2}}`)
	l := newFakeLink(t, map[string][]byte{"meta/timestamp.json": want})
	l.mu.Lock()
	lost := false
	l.drop = func(wire.FetchRequest, uint32) bool {
		first := !lost
		lost = true
		return first
	}
	l.mu.Unlock()
	f := newTestFetcher(t, t.TempDir(), l, nil)
	got, err := f.FetchMeta(t.Context(), "timestamp.json", 1<<10)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("FetchMeta = %q, %v; want %q", got, err, want)
	}
	if n := len(l.requests()); n != 2 {
		t.Errorf("%d requests, want 2 (the lost one and its retry)", n)
	}
}

func TestDownload(t *testing.T) {
	data, w := testFile(1<<20+123, "model-1.2.0.opkg") // 17 blocks, the last one short
	l := newFakeLink(t, map[string][]byte{"targets/" + w.Path: data})
	dir := t.TempDir()
	f := newTestFetcher(t, dir, l, nil)
	var last int64
	path, err := f.Download(t.Context(), w, func(held, total int64) {
		if held < last || total != w.Length {
			t.Errorf("progress(%d, %d) after %d", held, total, last)
		}
		last = held
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("downloaded file differs (%v)", err)
	}
	if last != w.Length {
		t.Errorf("last progress %d, want %d", last, w.Length)
	}
	for _, r := range l.requests() {
		if n := bits.OnesCount32(r.Mask); n == 0 || n > wire.MaxBlocksPerRequest {
			t.Errorf("request %+v asks for %d blocks", r, n)
		}
	}
	if got := l.asked(); got != 17 {
		t.Errorf("asked for %d blocks, want 17", got)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, partialDir)); len(ents) != 0 {
		t.Errorf("partial files left behind: %v", ents)
	}
	// Asking again returns the file without a request.
	n := len(l.requests())
	if again, err := f.Download(t.Context(), w, nil); err != nil || again != path || len(l.requests()) != n {
		t.Errorf("second Download = %q, %v after %d more requests", again, err, len(l.requests())-n)
	}
}

// TestResume stops a download part way (as a reboot would) and checks that a new Fetcher on
// the same directory asks only for what is missing.
func TestResume(t *testing.T) {
	data, w := testFile(2<<20, "resume.opkg") // 32 blocks
	l := newFakeLink(t, map[string][]byte{"targets/" + w.Path: data})
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(t.Context())
	f := newTestFetcher(t, dir, l, nil)
	_, err := f.Download(ctx, w, func(held, _ int64) {
		if held >= 20*wire.DefaultBlockSize {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted Download: %v", err)
	}
	first := l.asked()
	raw, err := os.ReadFile(filepath.Join(dir, partialDir, w.SHA256+".map"))
	if err != nil {
		t.Fatal(err)
	}
	have, err := decodeMap(raw, w, wire.DefaultBlockSize)
	if err != nil {
		t.Fatal(err)
	}
	saved := 0
	for _, x := range have {
		saved += bits.OnesCount64(x)
	}
	if saved < 20 {
		t.Fatalf("bitmap holds %d blocks after 20 were received", saved)
	}

	// The new process has a new link: the first one's late frames do not reach it.
	l2 := newFakeLink(t, map[string][]byte{"targets/" + w.Path: data})
	f2 := newTestFetcher(t, dir, l2, nil)
	path, err := f2.Download(t.Context(), w, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, data) {
		t.Fatal("resumed file differs")
	}
	if first < saved {
		t.Errorf("bitmap holds %d blocks of the %d asked for", saved, first)
	}
	if second := l2.asked(); second != 32-saved {
		t.Errorf("resumed download asked for %d blocks, want the %d missing", second, 32-saved)
	}
}

func TestDownloadRecovers(t *testing.T) {
	data, w := testFile(1<<20, "flaky.opkg")
	for _, tc := range []struct {
		name string
		set  func(l *fakeLink)
	}{
		{"lost blocks", func(l *fakeLink) {
			seen := map[uint32]bool{}
			l.drop = func(_ wire.FetchRequest, idx uint32) bool {
				lost := idx%3 == 0 && !seen[idx]
				seen[idx] = true
				return lost
			}
		}},
		{"lost tail", func(l *fakeLink) { // only the idle timeout can notice
			seen := false
			l.drop = func(_ wire.FetchRequest, idx uint32) bool {
				lost := idx == 15 && !seen
				seen = seen || idx == 15
				return lost
			}
		}},
		{"rate limited", func(l *fakeLink) {
			l.status = func(n int, _ wire.FetchRequest) byte {
				if n < 3 {
					return wire.BlockRateLimited
				}
				return wire.BlockOK
			}
		}},
		{"corrupt once", func(l *fakeLink) {
			done := false
			l.corrupt = func(_ wire.FetchRequest, idx uint32) bool {
				c := idx == 7 && !done
				done = done || c
				return c
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newFakeLink(t, map[string][]byte{"targets/" + w.Path: data})
			l.mu.Lock()
			tc.set(l)
			l.mu.Unlock()
			f := newTestFetcher(t, t.TempDir(), l, nil)
			path, err := f.Download(t.Context(), w, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := os.ReadFile(path); !bytes.Equal(got, data) {
				t.Fatal("file differs")
			}
		})
	}
}

func TestDownloadFails(t *testing.T) {
	data, w := testFile(300<<10, "bad.opkg")
	longer := append(append([]byte(nil), data...), 1, 2, 3)
	for _, tc := range []struct {
		name  string
		files map[string][]byte
		set   func(l *fakeLink)
		opts  func(o *Options)
		want  error
	}{
		{"not found", map[string][]byte{}, nil, nil, ErrNotFound},
		{"refused", map[string][]byte{"targets/" + w.Path: data}, func(l *fakeLink) {
			l.status = func(int, wire.FetchRequest) byte { return wire.BlockBadRequest }
		}, nil, ErrRefused},
		{"oversized target", map[string][]byte{"targets/" + w.Path: longer}, nil, nil, ErrLength},
		{"truncated target", map[string][]byte{"targets/" + w.Path: data[:len(data)-1]}, nil, nil, ErrLength},
		{"always corrupt", map[string][]byte{"targets/" + w.Path: data}, func(l *fakeLink) {
			l.corrupt = func(_ wire.FetchRequest, idx uint32) bool { return idx == 1 }
		}, nil, ErrDigest},
		{"disk full", map[string][]byte{"targets/" + w.Path: data}, nil, func(o *Options) {
			o.FreeSpace = func(string) (uint64, error) { return 300 << 10, nil }
		}, ErrNoSpace},
		{"silent controller", map[string][]byte{"targets/" + w.Path: data}, func(l *fakeLink) { l.silent = true }, func(o *Options) {
			o.IdleTimeout, o.MaxUnanswered = 5*time.Millisecond, 6
		}, ErrUnanswered},
		{"link down", map[string][]byte{"targets/" + w.Path: data}, func(l *fakeLink) { l.publishErr = errors.New("uplink not connected") }, func(o *Options) {
			o.IdleTimeout, o.MaxUnanswered = 5*time.Millisecond, 6
		}, ErrUnanswered},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newFakeLink(t, tc.files)
			if tc.set != nil {
				l.mu.Lock()
				tc.set(l)
				l.mu.Unlock()
			}
			dir := t.TempDir()
			f := newTestFetcher(t, dir, l, tc.opts)
			_, err := f.Download(t.Context(), w, nil)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Download = %v, want %v", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
			if _, err := os.Stat(filepath.Join(dir, completeDir, w.Path)); err == nil {
				t.Error("a failed download left a completed file")
			}
			if tc.want == ErrNoSpace && len(l.requests()) != 0 {
				t.Errorf("asked for blocks without the disk space for them")
			}
		})
	}
}

// TestUnansweredDefaults runs the default 10 s idle timeout and 32-request limit in a
// synctest bubble: a controller that never answers is given up on after 32 unanswered
// requests, 16 idle timeouts of the 2 requests in flight.
func TestUnansweredDefaults(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		data, w := testFile(2<<20, "quiet.opkg") // 32 blocks: two requests in flight
		l := newFakeLink(t, map[string][]byte{"targets/" + w.Path: data})
		l.silent = true
		f, err := New(Options{Dir: t.TempDir(), Link: l, FreeSpace: func(string) (uint64, error) { return 1 << 40, nil }})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_, err = f.Download(t.Context(), w, nil)
		if !errors.Is(err, ErrUnanswered) {
			t.Fatalf("Download = %v, want ErrUnanswered", err)
		}
		if took, want := time.Since(start), 16*DefaultIdleTimeout; took != want {
			t.Errorf("gave up after %v, want %v", took, want)
		}
		if n := len(l.requests()); n != 32 {
			t.Errorf("sent %d requests, want 32", n)
		}
	})
}

func TestWantValidate(t *testing.T) {
	_, w := testFile(10, "ok.opkg")
	for _, tc := range []struct {
		name string
		w    Want
	}{
		{"upper-case digest", Want{Path: strings.ToUpper(w.SHA256) + ".x", Length: 10, SHA256: strings.ToUpper(w.SHA256)}},
		{"short digest", Want{Path: "abc.x", Length: 10, SHA256: "abc"}},
		{"path of another digest", Want{Path: strings.Repeat("0", 64) + ".x", Length: 10, SHA256: w.SHA256}},
		{"no name", Want{Path: w.SHA256 + ".", Length: 10, SHA256: w.SHA256}},
		{"slash", Want{Path: w.SHA256 + ".a/b", Length: 10, SHA256: w.SHA256}},
		{"dot dot", Want{Path: w.SHA256 + "...", Length: 10, SHA256: w.SHA256}},
		{"zero length", Want{Path: w.Path, Length: 0, SHA256: w.SHA256}},
		{"too long", Want{Path: w.Path, Length: DefaultMaxLength + 1, SHA256: w.SHA256}},
		{"long name", Want{Path: w.SHA256 + "." + strings.Repeat("n", 200), Length: 10, SHA256: w.SHA256}},
	} {
		if err := tc.w.Validate(DefaultMaxLength); err == nil {
			t.Errorf("%s: Validate(%+v) = nil", tc.name, tc.w)
		}
	}
	if err := w.Validate(DefaultMaxLength); err != nil {
		t.Errorf("Validate(%+v) = %v", w, err)
	}
}

// TestBadPartialStartsOver damages the saved bitmap: the download starts from zero and
// still ends with the right file.
func TestBadPartialStartsOver(t *testing.T) {
	data, w := testFile(1<<20, "damaged.opkg")
	l := newFakeLink(t, map[string][]byte{"targets/" + w.Path: data})
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(t.Context())
	f := newTestFetcher(t, dir, l, nil)
	if _, err := f.Download(ctx, w, func(held, _ int64) {
		if held >= 8*wire.DefaultBlockSize {
			cancel()
		}
	}); !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	mp := filepath.Join(dir, partialDir, w.SHA256+".map")
	raw, err := os.ReadFile(mp)
	if err != nil {
		t.Fatal(err)
	}
	raw[len(raw)-5] ^= 1 // a bit of the bitmap, so the checksum fails
	if err := os.WriteFile(mp, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	// Also damage a held block: a bitmap that were trusted would keep it.
	df := filepath.Join(dir, partialDir, w.SHA256+".data")
	fh, err := os.OpenFile(df, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fh.WriteAt([]byte{0, 0, 0, 0}, 10); err != nil {
		t.Fatal(err)
	}
	fh.Close()
	l2 := newFakeLink(t, map[string][]byte{"targets/" + w.Path: data})
	path, err := newTestFetcher(t, dir, l2, nil).Download(t.Context(), w, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, data) {
		t.Fatal("file differs")
	}
	if n := l2.asked(); n != 16 {
		t.Errorf("asked for %d blocks after a damaged bitmap, want all 16", n)
	}
}

func TestPrune(t *testing.T) {
	var files = map[string][]byte{}
	var wants []Want
	for i := range 4 {
		data, w := testFile(100+i, "m.opkg")
		files["targets/"+w.Path] = data
		wants = append(wants, w)
	}
	l := newFakeLink(t, files)
	dir := t.TempDir()
	f := newTestFetcher(t, dir, l, nil)
	base := time.Now().Add(-time.Hour)
	for i, w := range wants {
		p, err := f.Download(t.Context(), w, nil)
		if err != nil {
			t.Fatal(err)
		}
		mt := base.Add(time.Duration(i) * time.Minute)
		if err := os.Chtimes(p, mt, mt); err != nil {
			t.Fatal(err)
		}
	}
	// Two stale partials: only the newest survives.
	pd := filepath.Join(dir, partialDir)
	for i, d := range []string{"aa", "bb"} {
		for _, ext := range []string{".data", ".map"} {
			p := filepath.Join(pd, d+ext)
			if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
			mt := base.Add(time.Duration(i) * time.Minute)
			_ = os.Chtimes(p, mt, mt)
		}
	}
	if err := f.Prune(2); err != nil {
		t.Fatal(err)
	}
	var got []string
	ents, _ := os.ReadDir(filepath.Join(dir, completeDir))
	for _, e := range ents {
		got = append(got, e.Name())
	}
	want := []string{wants[2].Path, wants[3].Path}
	if len(got) != 2 || !(got[0] == want[0] && got[1] == want[1] || got[0] == want[1] && got[1] == want[0]) {
		t.Errorf("after Prune(2) kept %v, want %v", got, want)
	}
	ents, _ = os.ReadDir(pd)
	if len(ents) != 2 || !strings.HasPrefix(ents[0].Name(), "bb") {
		t.Errorf("after Prune partials are %v, want bb.data and bb.map", ents)
	}
}

func TestIgnoresForeignFrames(t *testing.T) {
	data, w := testFile(200<<10, "x.opkg")
	l := newFakeLink(t, map[string][]byte{"targets/" + w.Path: data})
	// Garbage, another file's block and a late status frame for an unknown request: all
	// ignored, the first counted.
	l.blocks <- []byte("not a frame")
	l.blocks <- wire.EncodeBlock(nil, &wire.Block{ID: 1, Size: 5, BlockSize: wire.DefaultBlockSize, Path: "targets/other", Data: []byte("hello")})
	l.blocks <- wire.EncodeBlock(nil, &wire.Block{Status: wire.BlockNotFound, ID: 99, Path: "targets/" + w.Path, Data: []byte("old")})
	f := newTestFetcher(t, t.TempDir(), l, nil)
	if _, err := f.Download(t.Context(), w, nil); err != nil {
		t.Fatal(err)
	}
	if f.BadFrames() != 1 {
		t.Errorf("BadFrames = %d, want 1", f.BadFrames())
	}
}

func TestMapRoundTrip(t *testing.T) {
	_, w := testFile(10, "m")
	w.Length = 1000*wire.DefaultBlockSize + 1 // the bitmap only needs the length
	have := newBitmap(1001)
	for _, i := range []uint32{0, 63, 64, 999, 1000} {
		have.set(i)
	}
	got, err := decodeMap(encodeMap(have, w, wire.DefaultBlockSize), w, wire.DefaultBlockSize)
	if err != nil || len(got) != len(have) {
		t.Fatal(err)
	}
	for i := range have {
		if got[i] != have[i] {
			t.Fatalf("word %d = %x, want %x", i, got[i], have[i])
		}
	}
	if _, err := decodeMap(encodeMap(have, w, wire.DefaultBlockSize), w, 2*wire.DefaultBlockSize); err == nil {
		t.Error("a bitmap for another block size was accepted")
	}
}

func FuzzDecodeMap(f *testing.F) {
	_, w := testFile(200<<10, "f")
	have := newBitmap(4)
	have.set(1)
	f.Add(encodeMap(have, w, wire.DefaultBlockSize))
	f.Add([]byte("OPM1"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		got, err := decodeMap(raw, w, wire.DefaultBlockSize)
		if err != nil {
			return
		}
		if len(got) != 1 || got[0]>>4 != 0 {
			t.Fatalf("accepted bitmap %x for 4 blocks", got)
		}
		if !bytes.Equal(encodeMap(got, w, wire.DefaultBlockSize), raw) {
			t.Fatal("accepted bitmap does not re-encode to its input")
		}
	})
}
