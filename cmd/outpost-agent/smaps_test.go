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
		if cur == nil || len(f) < 2 || (f[0] != "Rss:" && f[0] != "Anonymous:") {
			continue
		}
		kb, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			t.Fatalf("smaps: %q: %v", sc.Text(), err)
		}
		if f[0] == "Rss:" {
			cur.rss += kb << 10
		} else {
			cur.anon += kb << 10
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
