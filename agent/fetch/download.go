package fetch

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/outpost-ml/outpost/fleet/wire"
)

// On-disk layout under Options.Dir:
//
//	partial/{sha256}.data   the target being downloaded, sparse, its final length from the start
//	partial/{sha256}.map    which blocks of it are held (see encodeMap)
//	complete/{Want.Path}    verified downloads, newest kept by Prune
const (
	partialDir  = "partial"
	completeDir = "complete"
)

// saveEvery is how many new blocks may be held before the bitmap is saved: a power cut loses
// at most this many blocks of work (1 MiB at the default block size).
const saveEvery = 16

// Validate reports the first problem with w in one line.
func (w Want) Validate(maxLength int64) error {
	name, ok := strings.CutPrefix(w.Path, w.SHA256+".")
	switch {
	case len(w.SHA256) != 64 || strings.Trim(w.SHA256, "0123456789abcdef") != "":
		return fmt.Errorf("target %q: sha256 %q is not 64 lower-case hex digits", w.Path, w.SHA256)
	case !ok || name == "":
		return fmt.Errorf("target %q: path must be {sha256}.{name}", w.Path)
	case strings.ContainsAny(name, "/\\\x00") || strings.Contains(name, ".."):
		return fmt.Errorf("target %q: name is not a plain file name", w.Path)
	case len(wire.FetchTargetPrefix)+len(w.Path) > wire.MaxFetchPath:
		return fmt.Errorf("target %q: path longer than %d bytes", w.Path, wire.MaxFetchPath-len(wire.FetchTargetPrefix))
	case w.Length <= 0 || w.Length > maxLength:
		return fmt.Errorf("target %q: length %d (want 1 to %d)", w.Path, w.Length, maxLength)
	}
	return nil
}

// Download fetches w into Dir and returns the path of the verified file. A partial download of
// the same digest left by an earlier call, or an earlier process, is resumed. progress, if not
// nil, is called with the bytes held after each new block, on Download's goroutine; it must
// not call the Fetcher.
//
// A file whose sha256 does not match is discarded and downloaded once more from the start
// (a block corrupted in transit can only be caught here); a second mismatch is an ErrDigest.
func (f *Fetcher) Download(ctx context.Context, w Want, progress func(held, total int64)) (string, error) {
	if err := w.Validate(f.opts.MaxLength); err != nil {
		return "", fmt.Errorf("download: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	done := filepath.Join(f.opts.Dir, completeDir, w.Path)
	if err := verifyFile(done, w); err == nil {
		now := time.Now()
		_ = os.Chtimes(done, now, now) // newest for Prune
		if progress != nil {
			progress(w.Length, w.Length)
		}
		return done, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		f.log.Warn("discarding a completed download that no longer verifies", "path", w.Path, "err", err)
		_ = os.Remove(done)
	}
	for _, d := range []string{partialDir, completeDir} {
		if err := os.MkdirAll(filepath.Join(f.opts.Dir, d), 0o755); err != nil {
			return "", fmt.Errorf("download %s: %w", w.Path, err)
		}
	}
	for attempt := 1; ; attempt++ {
		err := f.downloadOnce(ctx, w, progress)
		if err == nil {
			break
		}
		if attempt == 1 && errors.Is(err, ErrDigest) {
			f.log.Warn("downloaded file does not match its signed sha256; starting again", "path", w.Path)
			continue
		}
		return "", fmt.Errorf("download %s: %w", w.Path, err)
	}
	data := filepath.Join(f.opts.Dir, partialDir, w.SHA256+".data")
	if err := os.Rename(data, done); err != nil {
		return "", fmt.Errorf("download %s: %w", w.Path, err)
	}
	if err := syncDir(filepath.Dir(done)); err != nil {
		return "", fmt.Errorf("download %s: %w", w.Path, err)
	}
	_ = os.Remove(filepath.Join(f.opts.Dir, partialDir, w.SHA256+".map"))
	return done, nil
}

// downloadOnce fetches every missing block of w's partial file and verifies the whole file.
// On a digest mismatch the partial file is removed.
func (f *Fetcher) downloadOnce(ctx context.Context, w Want, progress func(held, total int64)) error {
	p, err := openPartial(filepath.Join(f.opts.Dir, partialDir), w, f.opts.BlockSize, f.log)
	if err != nil {
		return err
	}
	defer p.file.Close()
	need := uint64(w.Length-p.held) + f.opts.Reserve
	free, err := f.opts.FreeSpace(f.opts.Dir)
	if err != nil {
		return fmt.Errorf("check free disk: %w", err)
	}
	if free < need {
		return fmt.Errorf("%w: %d bytes free, need %d (%d still to fetch and %d reserved)", ErrNoSpace, free, need, w.Length-p.held, f.opts.Reserve)
	}
	t := &transfer{
		path:  wire.FetchTargetPrefix + w.Path,
		size:  w.Length,
		have:  p.have,
		held:  p.held,
		stale: true,
		onBlock: func(off int64, data []byte) error {
			if _, err := p.file.WriteAt(data, off); err != nil {
				return fmt.Errorf("write partial file: %w", err)
			}
			if p.unsaved++; p.unsaved >= saveEvery {
				return p.save()
			}
			return nil
		},
	}
	if progress != nil {
		t.onHeld = func(held int64) { progress(held, w.Length) }
		progress(p.held, w.Length)
	}
	runErr := f.run(ctx, t)
	p.held = t.held
	if err := p.save(); err != nil {
		return errors.Join(runErr, err)
	}
	if runErr != nil {
		return runErr
	}
	if err := verifyFile(p.file.Name(), w); err != nil {
		_ = os.Remove(p.mapPath)
		_ = os.Remove(p.file.Name())
		return err
	}
	return nil
}

// partial is an open partial download.
type partial struct {
	file    *os.File
	mapPath string
	want    Want
	bs      int
	have    bitmap
	held    int64
	unsaved int
}

// openPartial opens or creates w's partial file and bitmap. A bitmap that does not describe
// w at block size bs, or cannot be read, starts the download over.
func openPartial(dir string, w Want, bs int, log *slog.Logger) (*partial, error) {
	p := &partial{mapPath: filepath.Join(dir, w.SHA256+".map"), want: w, bs: bs}
	dataPath := filepath.Join(dir, w.SHA256+".data")
	count := uint32((w.Length + int64(bs) - 1) / int64(bs))
	raw, err := os.ReadFile(p.mapPath)
	switch {
	case err == nil:
		p.have, err = decodeMap(raw, w, bs)
		if err != nil {
			log.Warn("partial download unusable, starting over", "path", w.Path, "err", err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		log.Warn("partial download unreadable, starting over", "path", w.Path, "err", err)
	}
	if p.have == nil {
		p.have = newBitmap(count)
		_ = os.Remove(dataPath)
	}
	p.file, err = os.OpenFile(dataPath, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open partial file: %w", err)
	}
	if st, err := p.file.Stat(); err != nil || st.Size() != w.Length {
		// A data file of another size (or none) does not hold what the bitmap says: start over.
		p.have = newBitmap(count)
		if err := p.file.Truncate(w.Length); err != nil {
			p.file.Close()
			return nil, fmt.Errorf("size partial file: %w", err)
		}
	}
	for i := range count {
		if p.have.has(i) {
			p.held += min(int64(bs), w.Length-int64(i)*int64(bs))
		}
	}
	return p, nil
}

// save makes the held blocks durable, then the bitmap that says so: the bitmap never claims
// a block that is not on stable storage.
func (p *partial) save() error {
	p.unsaved = 0
	if err := p.file.Sync(); err != nil {
		return fmt.Errorf("sync partial file: %w", err)
	}
	tmp := p.mapPath + ".tmp"
	if err := writeSync(tmp, encodeMap(p.have, p.want, p.bs)); err != nil {
		return fmt.Errorf("save partial bitmap: %w", err)
	}
	if err := os.Rename(tmp, p.mapPath); err != nil {
		return fmt.Errorf("save partial bitmap: %w", err)
	}
	return nil
}

// Bitmap file: "OPM1" | block_size u32 | length u64 | sha256 [32] | bitmap words u64… |
// crc32c u32 of everything before it; big-endian.
var mapMagic = [4]byte{'O', 'P', 'M', '1'}

const mapHeader = 4 + 4 + 8 + 32

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func encodeMap(have bitmap, w Want, bs int) []byte {
	sum, _ := hex.DecodeString(w.SHA256)
	b := make([]byte, 0, mapHeader+8*len(have)+4)
	b = append(b, mapMagic[:]...)
	b = binary.BigEndian.AppendUint32(b, uint32(bs))
	b = binary.BigEndian.AppendUint64(b, uint64(w.Length))
	b = append(b, sum...)
	for _, x := range have {
		b = binary.BigEndian.AppendUint64(b, x)
	}
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// decodeMap parses a bitmap file and checks that it describes w at block size bs.
func decodeMap(raw []byte, w Want, bs int) (bitmap, error) {
	if len(raw) < mapHeader+4 {
		return nil, fmt.Errorf("bitmap file of %d bytes is too short", len(raw))
	}
	body, sum := raw[:len(raw)-4], binary.BigEndian.Uint32(raw[len(raw)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return nil, errors.New("bitmap file checksum mismatch")
	}
	if [4]byte(body[:4]) != mapMagic {
		return nil, fmt.Errorf("bitmap file magic %q", body[:4])
	}
	gotBS, gotLen := binary.BigEndian.Uint32(body[4:]), binary.BigEndian.Uint64(body[8:])
	if int64(gotBS) != int64(bs) || gotLen != uint64(w.Length) || hex.EncodeToString(body[16:48]) != w.SHA256 {
		return nil, fmt.Errorf("bitmap file is for %d bytes in blocks of %d, want %d in blocks of %d", gotLen, gotBS, w.Length, bs)
	}
	count := uint32((w.Length + int64(bs) - 1) / int64(bs))
	have := newBitmap(count)
	words := body[mapHeader:]
	if len(words) != 8*len(have) {
		return nil, fmt.Errorf("bitmap of %d bytes for %d blocks", len(words), count)
	}
	for i := range have {
		have[i] = binary.BigEndian.Uint64(words[8*i:])
	}
	if r := count % 64; r != 0 && have[len(have)-1]>>r != 0 {
		return nil, errors.New("bitmap marks blocks past the end of the file")
	}
	return have, nil
}

// verifyFile checks path's length and sha256 against w, streaming.
func verifyFile(path string, w Want) error {
	fh, err := os.Open(path)
	if err != nil {
		return err
	}
	defer fh.Close()
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(fh, w.Length+1))
	if err != nil {
		return fmt.Errorf("read %s: %w", filepath.Base(path), err)
	}
	if n != w.Length {
		return fmt.Errorf("%w: file holds %d bytes, signed length %d", ErrLength, n, w.Length)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != w.SHA256 {
		return fmt.Errorf("%w: got %s", ErrDigest, got)
	}
	return nil
}

// Prune keeps the keep most recently completed (or re-requested) downloads and removes the
// others, and removes every partial download but the most recently written one.
func (f *Fetcher) Prune(keep int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var errs []error
	if err := pruneDir(filepath.Join(f.opts.Dir, completeDir), max(keep, 0), func(string) string { return "" }); err != nil {
		errs = append(errs, err)
	}
	// A partial download is its .data and .map (and perhaps .map.tmp): group by digest.
	if err := pruneDir(filepath.Join(f.opts.Dir, partialDir), 1, func(name string) string {
		d, _, _ := strings.Cut(name, ".")
		return d
	}); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// pruneDir removes all but the keep newest groups of files in dir; group names a file's
// group ("" puts each file in its own group). A group's time is its newest file's.
func pruneDir(dir string, keep int, group func(name string) string) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("prune: %w", err)
	}
	type grp struct {
		names []string
		mod   time.Time
	}
	groups := map[string]*grp{}
	var order []*grp
	for _, e := range ents {
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() {
			continue
		}
		k := group(e.Name())
		if k == "" {
			k = "\x00" + e.Name()
		}
		g := groups[k]
		if g == nil {
			g = &grp{}
			groups[k] = g
			order = append(order, g)
		}
		g.names = append(g.names, e.Name())
		if info.ModTime().After(g.mod) {
			g.mod = info.ModTime()
		}
	}
	slices.SortFunc(order, func(a, b *grp) int { return b.mod.Compare(a.mod) })
	var errs []error
	for _, g := range order[min(keep, len(order)):] {
		for _, n := range g.names {
			if err := os.Remove(filepath.Join(dir, n)); err != nil {
				errs = append(errs, fmt.Errorf("prune: %w", err))
			}
		}
	}
	return errors.Join(errs...)
}

func writeSync(path string, data []byte) error {
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := fh.Write(data); err != nil {
		fh.Close()
		return err
	}
	if err := fh.Sync(); err != nil {
		fh.Close()
		return err
	}
	return fh.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
