package exepages

import (
	"os"
	"strings"
	"testing"
)

// marker lives in the binary's data segment, a private writable mapping of the file whose
// pages hold the program's own writes: Release must never drop them.
var marker = 1

// TestReleaseDropsReadOnlyPagesOnly runs Release in the test process itself: its read-only
// mappings of the executable lose resident pages, a variable written at run time in the
// data segment keeps its value, and the process runs on (code and read-only data come back
// from the file when touched).
func TestReleaseDropsReadOnlyPagesOnly(t *testing.T) {
	marker = 42
	st, err := Release()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d mappings, %d bytes: resident %d before, %d after", st.Mappings, st.Bytes, st.Before, st.After)
	if st.Mappings < 2 {
		t.Errorf("%d read-only mappings of the executable, want code and read-only data", st.Mappings)
	}
	if st.Before == 0 || st.After >= st.Before {
		t.Errorf("resident %d bytes before Release, %d after: want fewer after", st.Before, st.After)
	}
	if marker != 42 {
		t.Fatalf("a variable in the data segment read %d after Release, want the 42 written before it", marker)
	}
	// Code and constants all over the binary still work: format something with them.
	if got := strings.Repeat(strings.ToUpper("ok"), 2); got != "OKOK" {
		t.Fatalf("got %q", got)
	}
	if _, err := Release(); err != nil {
		t.Fatalf("a second Release: %v", err)
	}
}

const smapsFixture = `00400000-0067f000 r-xp 00000000 fe:00 9978098                            /opt/outpost/bin/outpost-agent
Size:               2556 kB
Rss:                1084 kB
Referenced:         1084 kB
0067f000-0096c000 r--p 0027f000 fe:00 9978098                            /opt/outpost/bin/outpost-agent
Size:               2996 kB
Rss:                 640 kB
0096c000-009c9000 rw-p 0056c000 fe:00 9978098                            /opt/outpost/bin/outpost-agent
Size:                372 kB
Rss:                 216 kB
009c9000-00a2a000 rw-p 00000000 00:00 0
Rss:                  92 kB
7f0000000000-7f0000010000 r--p 00000000 fe:00 1234                       /usr/lib/other.so
Rss:                  64 kB
7f0000010000-7f0000020000 r-xp 00000000 08:01 9978098                    /mnt/other disk/same inode
Rss:                  64 kB
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
Rss:                  12 kB
`

func TestParseSmaps(t *testing.T) {
	tests := []struct {
		name string
		exe  exeID
		want []mapping
	}{
		{"by inode and device", exeID{ino: 9978098, dev: "fe:00"},
			[]mapping{{0x400000, 0x67f000, 1084 << 10}, {0x67f000, 0x96c000, 640 << 10}}},
		{"device in another spelling", exeID{ino: 9978098, dev: "fe:0"},
			[]mapping{{0x400000, 0x67f000, 1084 << 10}, {0x67f000, 0x96c000, 640 << 10}}},
		{"by path where the device differs (overlayfs)", exeID{ino: 1, dev: "00:2a", path: "/opt/outpost/bin/outpost-agent"},
			[]mapping{{0x400000, 0x67f000, 1084 << 10}, {0x67f000, 0x96c000, 640 << 10}}},
		{"a path with a space", exeID{ino: 1, dev: "00:2a", path: "/mnt/other disk/same inode"},
			[]mapping{{0x7f0000010000, 0x7f0000020000, 64 << 10}}},
		{"no match", exeID{ino: 77, dev: "fe:00"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseSmaps([]byte(smapsFixture), tt.exe)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("mapping %d: got %+v, want %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestParseSmapsRejectsDamage(t *testing.T) {
	for _, in := range []string{
		"00400000 r-xp 00000000 fe:00 1 /x\n",
		"00400000-0067f000 r-xp 00000000 fe:00\n",
		"zz-0067f000 r-xp 00000000 fe:00 1 /x\n",
		"00500000-00400000 r-xp 00000000 fe:00 1 /x\n",
		"00400000-0067f000 rx 00000000 fe:00 1 /x\n",
		"00400000-0067f000 r-xp 00000000 fe:00 1 /x\nRss: lots kB\n",
	} {
		if got, err := parseSmaps([]byte(in), exeID{ino: 1, dev: "fe:00"}); err == nil {
			t.Errorf("%q: parsed as %v, want an error", in, got)
		} else if strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: error over more than one line: %q", in, err)
		}
	}
}

// FuzzParseSmaps: any input gives mappings or an error, never a panic, and every mapping
// returned is a non-empty range.
func FuzzParseSmaps(f *testing.F) {
	f.Add([]byte(smapsFixture))
	if data, err := os.ReadFile("/proc/self/smaps"); err == nil {
		f.Add(data)
	}
	f.Add([]byte("00400000-0067f000 r-xp 00000000 fe:00 9978098 /x\nRss: 4 kB\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := parseSmaps(data, exeID{ino: 9978098, dev: "fe:00", path: "/x"})
		if err != nil {
			return
		}
		for _, m := range got {
			if m.end <= m.start {
				t.Fatalf("empty or reversed range %+v", m)
			}
		}
	})
}
