package boltbuf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
	bberrors "go.etcd.io/bbolt/errors"
)

// CorruptError says the buffer file is damaged: opening it would fail, panic inside bbolt (its
// free-page scan panics on an inconsistent tree, in a goroutine nobody can recover) or fault
// (a file shorter than its pages is a SIGBUS once mapped).
type CorruptError struct{ Err error }

func (e *CorruptError) Error() string { return "damaged buffer file: " + e.Err.Error() }
func (e *CorruptError) Unwrap() error { return e.Err }

func corrupt(format string, args ...any) error {
	return &CorruptError{Err: fmt.Errorf(format, args...)}
}

// The bbolt on-disk format this check reads (go.etcd.io/bbolt internal/common; the file is
// in the machine's byte order because bbolt maps its structs onto the pages).
const (
	pageHeaderSize   = 16 // id u64, flags u16, count u16, overflow u32
	elemSize         = 16 // branch: pos u32, ksize u32, pgid u64; leaf: flags, pos, ksize, vsize u32
	bucketHeaderSize = 16 // root pgid u64, sequence u64
	metaChecksumAt   = 56 // the checksum covers the meta fields before it
	metaSize         = 64

	branchFlag   = 0x01
	leafFlag     = 0x02
	metaFlag     = 0x04
	freelistFlag = 0x10
	bucketLeaf   = 0x01 // leaf element flag: the value is a bucket

	boltMagic   = 0xED0CDAED
	boltVersion = 2
	noFreelist  = ^uint64(0)

	// maxCheckDepth bounds the nesting of pages and buckets the walk follows; a real buffer
	// is a few levels deep, a loop in a damaged file is cut here.
	maxCheckDepth = 64
)

var ne = binary.NativeEndian

// meta is the part of a bbolt meta page the check uses.
type meta struct {
	pageSize uint32
	root     uint64 // root bucket's page
	freelist uint64
	pgid     uint64 // high-water mark: pages in use
	txid     uint64
}

// checkFile checks the bbolt file at path before it is opened for real, with no mapping and
// no bbolt code until the structure is known to be sound: the sizes (a file at least as long
// as its meta page says, a whole number of pages), both meta pages, every page of every bucket
// (in bounds, of the right type, referenced once, keys in order, elements inside their page)
// and the free list. Only then does bbolt's own consistency check (Tx.Check) run, read-only.
// A missing or empty file is fine (bbolt creates it); a damaged one is a *CorruptError; any
// other error (unreadable file) is returned as it is.
func checkFile(path string, lockTimeout time.Duration) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	if fi.Size() == 0 {
		return nil
	}
	if err := checkStructure(f, fi.Size()); err != nil {
		return err
	}
	return boltCheck(path, lockTimeout)
}

// checkStructure is the part of checkFile that reads r (size bytes) itself.
func checkStructure(r io.ReaderAt, size int64) error {
	m, err := readMeta(r, size)
	if err != nil {
		return err
	}
	ps := int64(m.pageSize)
	if size%ps != 0 {
		return corrupt("size %d is not a whole number of %d-byte pages (truncated?)", size, ps)
	}
	if m.pgid < 2 || uint64(size/ps) < m.pgid {
		return corrupt("file holds %d pages, its meta page says %d (truncated?)", size/ps, m.pgid)
	}
	w := &walker{r: r, ps: ps, hwm: m.pgid, seen: make(map[uint64]bool)}
	if err := w.tree(m.root, nil, nil, 0); err != nil {
		return err
	}
	if m.freelist != noFreelist {
		return w.freelist(m.freelist)
	}
	return nil
}

// readMeta picks the meta page bbolt would use: the valid one with the higher transaction id.
func readMeta(r io.ReaderAt, size int64) (meta, error) {
	var ms [2]meta
	var errs [2]error
	ms[0], errs[0] = readMetaAt(r, 0)
	ps := int64(os.Getpagesize()) // where bbolt looks for the second meta page when the first is bad
	if errs[0] == nil {
		ps = int64(ms[0].pageSize)
	}
	if size < 2*ps {
		return meta{}, corrupt("size %d is below the two %d-byte meta pages", size, ps)
	}
	ms[1], errs[1] = readMetaAt(r, ps)
	switch {
	case errs[0] != nil && errs[1] != nil:
		return meta{}, corrupt("both meta pages invalid: %v; %v", errs[0], errs[1])
	case errs[0] != nil:
		return ms[1], nil
	case errs[1] != nil:
		return ms[0], nil
	case ms[1].txid > ms[0].txid:
		if ms[1].pageSize != ms[0].pageSize {
			return meta{}, corrupt("meta pages disagree on the page size (%d, %d)", ms[0].pageSize, ms[1].pageSize)
		}
		return ms[1], nil
	}
	return ms[0], nil
}

func readMetaAt(r io.ReaderAt, off int64) (meta, error) {
	buf := make([]byte, pageHeaderSize+metaSize)
	if _, err := r.ReadAt(buf, off); err != nil {
		return meta{}, fmt.Errorf("meta page at %d: %w", off, err)
	}
	if flags := ne.Uint16(buf[8:]); flags != metaFlag {
		return meta{}, fmt.Errorf("meta page at %d: flags %#x", off, flags)
	}
	b := buf[pageHeaderSize:]
	if magic := ne.Uint32(b[0:]); magic != boltMagic {
		return meta{}, fmt.Errorf("meta page at %d: magic %#x", off, magic)
	}
	if v := ne.Uint32(b[4:]); v != boltVersion {
		return meta{}, fmt.Errorf("meta page at %d: version %d", off, v)
	}
	h := fnv.New64a()
	h.Write(b[:metaChecksumAt])
	if sum := ne.Uint64(b[metaChecksumAt:]); sum != h.Sum64() {
		return meta{}, fmt.Errorf("meta page at %d: checksum mismatch", off)
	}
	m := meta{
		pageSize: ne.Uint32(b[8:]),
		root:     ne.Uint64(b[16:]),
		freelist: ne.Uint64(b[32:]),
		pgid:     ne.Uint64(b[40:]),
		txid:     ne.Uint64(b[48:]),
	}
	if m.pageSize < 512 || m.pageSize > 1<<20 || m.pageSize&(m.pageSize-1) != 0 {
		return meta{}, fmt.Errorf("meta page at %d: page size %d", off, m.pageSize)
	}
	return m, nil
}

// walker reads pages of one file and remembers which it has seen.
type walker struct {
	r    io.ReaderAt
	ps   int64
	hwm  uint64
	seen map[uint64]bool
}

// page reads page id with its overflow pages and checks its header.
func (w *walker) page(id uint64) ([]byte, error) {
	if id < 2 || id >= w.hwm {
		return nil, corrupt("page %d out of bounds (%d pages)", id, w.hwm)
	}
	head := make([]byte, pageHeaderSize)
	if _, err := w.r.ReadAt(head, int64(id)*w.ps); err != nil {
		return nil, corrupt("page %d: %v", id, err)
	}
	if got := ne.Uint64(head); got != id {
		return nil, corrupt("page %d says it is page %d", id, got)
	}
	overflow := uint64(ne.Uint32(head[12:]))
	if id+overflow >= w.hwm {
		return nil, corrupt("page %d: %d overflow pages run past the last page", id, overflow)
	}
	for i := id; i <= id+overflow; i++ {
		if w.seen[i] {
			return nil, corrupt("page %d referenced twice", i)
		}
		w.seen[i] = true
	}
	buf := make([]byte, int64(overflow+1)*w.ps)
	if _, err := w.r.ReadAt(buf, int64(id)*w.ps); err != nil {
		return nil, corrupt("page %d: %v", id, err)
	}
	return buf, nil
}

// tree checks the b+tree rooted at page id: every key within [lo, hi) (nil: unbounded),
// and every bucket it holds.
func (w *walker) tree(id uint64, lo, hi []byte, depth int) error {
	if depth > maxCheckDepth {
		return corrupt("page %d: tree deeper than %d", id, maxCheckDepth)
	}
	p, err := w.page(id)
	if err != nil {
		return err
	}
	return w.node(p, id, lo, hi, depth)
}

// node checks one branch or leaf page p (a page read from the file, or an inline bucket's).
func (w *walker) node(p []byte, id uint64, lo, hi []byte, depth int) error {
	flags, count := ne.Uint16(p[8:]), int(ne.Uint16(p[10:]))
	if flags != branchFlag && flags != leafFlag {
		return corrupt("page %d: flags %#x where a branch or leaf belongs", id, flags)
	}
	if pageHeaderSize+count*elemSize > len(p) {
		return corrupt("page %d: %d elements do not fit", id, count)
	}
	prev := lo
	for i := range count {
		e := pageHeaderSize + i*elemSize
		var pos, ksize, vsize int
		if flags == branchFlag {
			pos, ksize = int(ne.Uint32(p[e:])), int(ne.Uint32(p[e+4:]))
		} else {
			pos, ksize, vsize = int(ne.Uint32(p[e+4:])), int(ne.Uint32(p[e+8:])), int(ne.Uint32(p[e+12:]))
		}
		start := e + pos
		if pos < 0 || ksize < 0 || vsize < 0 || start > len(p) || ksize > len(p)-start || vsize > len(p)-start-ksize {
			return corrupt("page %d: element %d lies outside the page", id, i)
		}
		key := p[start : start+ksize]
		if prev != nil && (bytes.Compare(key, prev) < 0 || (i > 0 && bytes.Equal(key, prev))) {
			return corrupt("page %d: key %d out of order", id, i)
		}
		if hi != nil && bytes.Compare(key, hi) >= 0 {
			return corrupt("page %d: key %d beyond its parent's range", id, i)
		}
		if flags == branchFlag {
			next := hi
			if i+1 < count {
				ne2 := pageHeaderSize + (i+1)*elemSize
				np, nk := int(ne.Uint32(p[ne2:])), int(ne.Uint32(p[ne2+4:]))
				if np < 0 || nk < 0 || ne2+np > len(p) || nk > len(p)-ne2-np {
					return corrupt("page %d: element %d lies outside the page", id, i+1)
				}
				next = p[ne2+np : ne2+np+nk]
			}
			if err := w.tree(ne.Uint64(p[e+8:]), key, next, depth+1); err != nil {
				return err
			}
			prev = key
			continue
		}
		prev = key
		if ne.Uint32(p[e:])&bucketLeaf != 0 {
			if err := w.bucket(p[start+ksize:start+ksize+vsize], id, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// bucket checks a bucket value: its own tree, or the inline page it carries.
func (w *walker) bucket(v []byte, parent uint64, depth int) error {
	if len(v) < bucketHeaderSize {
		return corrupt("page %d: bucket value of %d bytes", parent, len(v))
	}
	if root := ne.Uint64(v); root != 0 {
		return w.tree(root, nil, nil, depth)
	}
	inline := v[bucketHeaderSize:]
	if len(inline) < pageHeaderSize {
		return corrupt("page %d: inline bucket of %d bytes", parent, len(inline))
	}
	if depth > maxCheckDepth {
		return corrupt("page %d: buckets nested deeper than %d", parent, maxCheckDepth)
	}
	return w.node(inline, parent, nil, nil, depth)
}

// freelist checks a free-list page: every id it lists is a page of the file.
func (w *walker) freelist(id uint64) error {
	p, err := w.page(id)
	if err != nil {
		return err
	}
	if flags := ne.Uint16(p[8:]); flags != freelistFlag {
		return corrupt("free list page %d: flags %#x", id, flags)
	}
	n, at := uint64(ne.Uint16(p[10:])), pageHeaderSize
	if n == 0xFFFF { // a long list keeps its count in the first element
		if len(p) < pageHeaderSize+8 {
			return corrupt("free list page %d: truncated", id)
		}
		n, at = ne.Uint64(p[pageHeaderSize:]), pageHeaderSize+8
	}
	if n > uint64(len(p)-at)/8 {
		return corrupt("free list page %d: %d ids do not fit", id, n)
	}
	for i := range int(n) {
		if fid := ne.Uint64(p[at+8*i:]); fid < 2 || fid >= w.hwm {
			return corrupt("free list page %d: free page %d out of bounds", id, fid)
		}
	}
	return nil
}

// boltCheck runs bbolt's own consistency check on a file the walk found sound.
func boltCheck(path string, lockTimeout time.Duration) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: lockTimeout})
	var pathErr *fs.PathError
	switch {
	case errors.Is(err, bberrors.ErrTimeout):
		// Another program has the file open for writing (an older agent that takes no lock
		// file, a bbolt tool): the file is in use, not damaged, and must stay where it is.
		return fmt.Errorf("check: locked by another process")
	case errors.As(err, &pathErr):
		return fmt.Errorf("check: %w", err)
	case err != nil:
		return corrupt("%v", err)
	}
	defer db.Close()
	var first error
	err = db.View(func(tx *bolt.Tx) error {
		for e := range tx.Check() { // read to the end: the check runs until the channel closes
			if first == nil {
				first = e
			}
		}
		return nil
	})
	if err == nil && first != nil {
		err = first
	}
	if err != nil {
		return corrupt("bbolt check: %v", err)
	}
	return nil
}
