package exepages

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Release gives back the executable's start-up pages (see the package comment). It is
// best-effort: an error means some step did not happen, and the process is unharmed either
// way, since every page it drops is a clean copy of the file that a later touch reads back.
func Release() (Stats, error) {
	f, err := os.Open("/proc/self/exe")
	if err != nil {
		return Stats{}, fmt.Errorf("exepages: %w", err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return Stats{}, fmt.Errorf("exepages: stat executable: %w", err)
	}
	// Matched by inode and device, or by path where a layered file system (overlayfs) shows
	// the mapping under another device than stat does.
	path, _ := os.Readlink("/proc/self/exe")
	exe := exeID{ino: st.Ino, dev: fmt.Sprintf("%02x:%02x", unix.Major(st.Dev), unix.Minor(st.Dev)), path: path}
	maps, err := readOnlyMappings(exe)
	if err != nil {
		return Stats{}, err
	}
	if len(maps) == 0 {
		return Stats{}, fmt.Errorf("exepages: no read-only mapping of the executable %s (inode %d) in /proc/self/smaps", path, st.Ino)
	}
	s := Stats{Mappings: len(maps)}
	for _, m := range maps {
		s.Bytes += m.end - m.start
		s.Before += m.rss
	}
	for _, m := range maps {
		// Random access: no read-ahead when a dropped page is touched again, so a fault reads
		// one page, and fault-around finds no cached neighbours to map with it.
		if err := madvise(m.start, m.end-m.start, unix.MADV_RANDOM); err != nil {
			return s, fmt.Errorf("exepages: madvise(MADV_RANDOM) %#x-%#x: %w", m.start, m.end, err)
		}
		// The mapping is private and never written, so dropping its pages loses nothing: a
		// later touch maps the file's page again.
		if err := madvise(m.start, m.end-m.start, unix.MADV_DONTNEED); err != nil {
			return s, fmt.Errorf("exepages: madvise(MADV_DONTNEED) %#x-%#x: %w", m.start, m.end, err)
		}
	}
	// Unmapped, the pages are still in the page cache, and fault-around would map them again
	// with the next touch of a neighbour. Drop the ones no process maps (the kernel skips
	// mapped and dirty pages, so this cannot disturb another process running the same file).
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return s, fmt.Errorf("exepages: fadvise(POSIX_FADV_DONTNEED): %w", err)
	}
	after, err := readOnlyMappings(exe)
	if err != nil {
		return s, err
	}
	for _, m := range after {
		s.After += m.rss
	}
	return s, nil
}

// madvise takes the range as addresses: the mappings are not Go memory, and a []byte over
// them would only exist to be turned back into a pointer.
func madvise(start, length uint64, advice int) error {
	_, _, errno := unix.Syscall(unix.SYS_MADVISE, uintptr(start), uintptr(length), uintptr(advice))
	if errno != 0 {
		return errno
	}
	return nil
}

type mapping struct {
	start, end, rss uint64
}

// exeID is how the executable's mappings are recognised in smaps.
type exeID struct {
	ino  uint64
	dev  string // "major:minor" in hex, as smaps prints it
	path string
}

// readOnlyMappings lists the executable's mappings that are not writable, with their resident
// bytes, from /proc/self/smaps.
func readOnlyMappings(exe exeID) ([]mapping, error) {
	data, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return nil, fmt.Errorf("exepages: %w", err)
	}
	return parseSmaps(data, exe)
}

// parseSmaps is readOnlyMappings' parser, apart for its tests.
func parseSmaps(data []byte, exe exeID) ([]mapping, error) {
	var out []mapping
	var cur *mapping
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if !strings.HasSuffix(f[0], ":") {
			// A mapping's header: start-end perms offset dev inode [path].
			cur = nil
			if len(f) < 5 {
				return nil, fmt.Errorf("exepages: smaps: bad mapping line %q", line)
			}
			lo, hi, ok := strings.Cut(f[0], "-")
			if !ok {
				return nil, fmt.Errorf("exepages: smaps: bad range in %q", line)
			}
			start, err1 := strconv.ParseUint(lo, 16, 64)
			end, err2 := strconv.ParseUint(hi, 16, 64)
			n, err3 := strconv.ParseUint(f[4], 10, 64)
			if err1 != nil || err2 != nil || err3 != nil || end <= start || len(f[1]) != 4 {
				return nil, fmt.Errorf("exepages: smaps: bad mapping line %q", line)
			}
			ours := n == exe.ino && sameDev(f[3], exe.dev)
			if !ours && exe.path != "" && len(f) > 5 {
				// The path is the rest of the line: it may hold spaces.
				ours = strings.Join(f[5:], " ") == exe.path
			}
			if !ours || f[1][1] == 'w' {
				continue
			}
			out = append(out, mapping{start: start, end: end})
			cur = &out[len(out)-1]
			continue
		}
		if cur != nil && f[0] == "Rss:" && len(f) >= 2 {
			kb, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("exepages: smaps: %q: %v", line, err)
			}
			cur.rss = kb << 10
		}
	}
	return out, sc.Err()
}

// sameDev compares smaps' "major:minor" (hex, at least two digits each) with want.
func sameDev(got, want string) bool {
	if got == want {
		return true
	}
	ga, gb, ok1 := strings.Cut(got, ":")
	wa, wb, ok2 := strings.Cut(want, ":")
	if !ok1 || !ok2 {
		return false
	}
	pa, e1 := strconv.ParseUint(ga, 16, 32)
	pb, e2 := strconv.ParseUint(gb, 16, 32)
	qa, e3 := strconv.ParseUint(wa, 16, 32)
	qb, e4 := strconv.ParseUint(wb, 16, 32)
	return e1 == nil && e2 == nil && e3 == nil && e4 == nil && pa == qa && pb == qb
}
