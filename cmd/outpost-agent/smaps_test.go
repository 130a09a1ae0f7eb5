package main_test

import (
	"bufio"
	"bytes"
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// mappingRSS is the resident set of the mappings of one file with one set of permissions
// (or of all anonymous mappings), from /proc/PID/smaps.
type mappingRSS struct {
	name      string // file base name and permissions, "[anon] rw-p", "[stack]", …
	rss, anon uint64 // bytes; anon counts the private copies of a file's pages too
	// ref is the resident bytes touched since the last clearRefs (or since they were mapped):
	// the working set, where rss also counts pages that start-up touched and nothing since.
	ref uint64
}

// smapsByMapping sums Rss and Anonymous of /proc/PID/smaps per file and permissions, largest
// first, so a footprint test can say which mappings its resident set is made of.
func smapsByMapping(t *testing.T, pid int) []mappingRSS {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "smaps"))
	if err != nil {
		t.Fatal(err)
	}
	sums := map[string]*mappingRSS{}
	var cur *mappingRSS
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if !strings.HasSuffix(f[0], ":") { // a mapping's header: range perms offset dev inode [path]
			if len(f) < 5 {
				t.Fatalf("smaps: bad header %q", sc.Text())
			}
			name := "[anon] " + f[1]
			if len(f) > 5 {
				name = filepath.Base(f[5]) + " " + f[1]
				if strings.HasPrefix(f[5], "[") {
					name = f[5]
				}
			}
			if cur = sums[name]; cur == nil {
				cur = &mappingRSS{name: name}
				sums[name] = cur
			}
			continue
		}
		if cur == nil || len(f) < 2 || (f[0] != "Rss:" && f[0] != "Anonymous:" && f[0] != "Referenced:") {
			continue
		}
		kb, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			t.Fatalf("smaps: %q: %v", sc.Text(), err)
		}
		switch f[0] {
		case "Rss:":
			cur.rss += kb << 10
		case "Anonymous:":
			cur.anon += kb << 10
		default:
			cur.ref += kb << 10
		}
	}
	var out []mappingRSS
	for _, m := range sums {
		if m.rss > 0 {
			out = append(out, *m)
		}
	}
	slices.SortFunc(out, func(a, b mappingRSS) int {
		return cmp.Or(cmp.Compare(b.rss, a.rss), strings.Compare(a.name, b.name))
	})
	return out
}

// clearRefs clears the referenced bits of every page of process pid (/proc/PID/clear_refs),
// so that smaps' Referenced then counts what the process touches from now on.
func clearRefs(t *testing.T, pid int) {
	t.Helper()
	if err := os.WriteFile(filepath.Join("/proc", strconv.Itoa(pid), "clear_refs"), []byte("1"), 0); err != nil {
		t.Fatal(err)
	}
}

// workingSet sums the referenced bytes of ms: anonymous (private) and file-backed.
func workingSet(ms []mappingRSS) (anon, file uint64) {
	for _, m := range ms {
		if strings.HasPrefix(m.name, "[anon]") || m.name == "[stack]" || m.name == "[heap]" {
			anon += m.ref
		} else {
			file += m.ref
		}
	}
	return anon, file
}

// formatMappings lists mappings as "name rss MiB (anon MiB)", largest first.
func formatMappings(ms []mappingRSS) string {
	var b strings.Builder
	for i, m := range ms {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s %.2f", m.name, float64(m.rss)/(1<<20))
		if m.anon > 0 && m.anon != m.rss {
			fmt.Fprintf(&b, " (anon %.2f)", float64(m.anon)/(1<<20))
		}
	}
	return b.String() + " MiB"
}

// formatWorkingSet lists the mappings' referenced bytes as "name ref MiB", largest first.
func formatWorkingSet(ms []mappingRSS) string {
	ms = slices.Clone(ms)
	slices.SortFunc(ms, func(a, b mappingRSS) int {
		return cmp.Or(cmp.Compare(b.ref, a.ref), strings.Compare(a.name, b.name))
	})
	var b strings.Builder
	for _, m := range ms {
		if m.ref == 0 {
			continue
		}
		if b.Len() > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s %.2f", m.name, float64(m.ref)/(1<<20))
	}
	return b.String() + " MiB"
}
