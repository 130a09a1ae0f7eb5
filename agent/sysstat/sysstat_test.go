package sysstat

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestProcessFixtures(t *testing.T) {
	tests := []struct {
		tree     string
		pid      int
		pageSize int
		wantCPU  time.Duration
		wantRSS  uint64
	}{
		// utime 1523 + stime 377 ticks at 100 Hz; 3584 resident pages of 4 KiB.
		{"rpi4", 812, 4096, 19 * time.Second, 3584 * 4096},
		// The same pages counted as 16 KiB pages (arm64 kernels built with 16K pages).
		{"rpi4", 812, 16384, 19 * time.Second, 3584 * 16384},
		// The command name "my) agent (x" holds spaces and parentheses.
		{"oddname", 4242, 4096, 3 * time.Second, 417 * 4096},
	}
	for _, tt := range tests {
		t.Run(tt.tree+"/"+strconv.Itoa(tt.pageSize), func(t *testing.T) {
			r := New(Options{ProcDir: filepath.Join("testdata", tt.tree, "proc"), PID: tt.pid, PageSize: tt.pageSize})
			p, err := r.Process()
			if err != nil {
				t.Fatal(err)
			}
			if p.CPU != tt.wantCPU || p.RSS != tt.wantRSS {
				t.Fatalf("Process() = CPU %v RSS %d, want %v %d", p.CPU, p.RSS, tt.wantCPU, tt.wantRSS)
			}
			if p.Time.IsZero() {
				t.Error("Process().Time is zero")
			}
		})
	}
}

func TestProcessMissing(t *testing.T) {
	_, err := New(Options{ProcDir: filepath.Join("testdata", "rpi4", "proc"), PID: 1}).Process()
	if err == nil || !strings.Contains(err.Error(), "read process stat") || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Process() of a missing pid: err = %v, want a read process stat error wrapping ErrNotExist", err)
	}
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "7"), 0o755); err != nil {
		t.Fatal(err)
	}
	stat, err := os.ReadFile(filepath.Join("testdata", "rpi4", "proc", "812", "stat"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "7", "stat"), stat, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "7", "statm"), []byte("12\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = New(Options{ProcDir: dir, PID: 7}).Process()
	if err == nil || !strings.Contains(err.Error(), "statm: 1 fields") {
		t.Fatalf("Process() with a one-field statm: err = %v", err)
	}
}

func TestParseStat(t *testing.T) {
	tail := " S 1 812 812 0 -1 1077936384 2231 0 3 0 %s %s 0 0 20 0 9 0 1873 731176960 3584"
	line := func(comm, ut, st string) []byte {
		return []byte("812 (" + comm + ")" + strings.Replace(strings.Replace(tail, "%s", ut, 1), "%s", st, 1) + "\n")
	}
	tests := []struct {
		name    string
		data    []byte
		want    time.Duration
		wantErr string
	}{
		{"plain", line("outpost-agent", "100", "50"), 1500 * time.Millisecond, ""},
		{"zero", line("a", "0", "0"), 0, ""},
		{"name with ) and spaces", line("a) 1 2 (b", "7", "3"), 100 * time.Millisecond, ""},
		{"no name", []byte("812 outpost S 1 2 3"), 0, "no ')'"},
		{"short", []byte("812 (a) S 1 2 3 4 5"), 0, "6 fields"},
		{"negative", line("a", "-1", "0"), 0, `cpu time "-1"`},
		{"text", line("a", "1", "x"), 0, `cpu time "x"`},
		{"huge", line("a", "9223372036854775807", "0"), 0, "out of range"},
		{"empty", nil, 0, "no ')'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseStat(tt.data)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseStat = %v, %v; want an error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseStat = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestParseStatm(t *testing.T) {
	tests := []struct {
		in      string
		want    uint64
		wantErr bool
	}{
		{"183294 3584 2110 1678 0 12040 0\n", 3584, false},
		{"1 0", 0, false},
		{"", 0, true},
		{"12", 0, true},
		{"12 -3 4", 0, true},
		{"12 many 4", 0, true},
		{"1 18446744073709551615", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseStatm([]byte(tt.in))
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseStatm(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func FuzzParseStat(f *testing.F) {
	for _, p := range []string{"testdata/rpi4/proc/812/stat", "testdata/oddname/proc/4242/stat"} {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("1 ((() S"))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := ParseStat(data)
		if err == nil && d < 0 {
			t.Fatalf("ParseStat(%q) = %v, negative", data, d)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Fatalf("error is not one line: %q", err)
		}
	})
}

func TestCPUPercent(t *testing.T) {
	t0 := time.Now()
	tests := []struct {
		name      string
		prev, cur Process
		want      float64
	}{
		{"half a core", Process{Time: t0, CPU: time.Second}, Process{Time: t0.Add(10 * time.Second), CPU: 6 * time.Second}, 50},
		{"two cores", Process{Time: t0}, Process{Time: t0.Add(time.Second), CPU: 2 * time.Second}, 200},
		{"idle", Process{Time: t0, CPU: time.Second}, Process{Time: t0.Add(time.Second), CPU: time.Second}, 0},
		{"no interval", Process{Time: t0}, Process{Time: t0, CPU: time.Second}, 0},
		{"reversed", Process{Time: t0.Add(time.Second)}, Process{Time: t0, CPU: time.Second}, 0},
		{"cpu went back", Process{Time: t0, CPU: time.Second}, Process{Time: t0.Add(time.Second)}, 0},
	}
	for _, tt := range tests {
		if got := CPUPercent(tt.prev, tt.cur); got != tt.want {
			t.Errorf("%s: CPUPercent = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestSoCTemp(t *testing.T) {
	tests := []struct {
		tree string
		want Temp
	}{
		{"rpi4", Temp{Zone: "thermal_zone0", Type: "cpu-thermal", Celsius: 48.686}},
		{"rk3588", Temp{Zone: "thermal_zone0", Type: "soc-thermal", Celsius: 52}},
		// x86_pkg_temp outranks acpitz; zone1 is unparsable and zone2 has no temp file.
		{"x86", Temp{Zone: "thermal_zone10", Type: "x86_pkg_temp", Celsius: 45}},
		// Equal ranks: thermal_zone2 comes before thermal_zone10.
		{"cold", Temp{Zone: "thermal_zone2", Type: "acpitz", Celsius: -5.2}},
	}
	for _, tt := range tests {
		t.Run(tt.tree, func(t *testing.T) {
			got, err := New(Options{SysDir: filepath.Join("testdata", tt.tree, "sys")}).SoCTemp()
			if err != nil || got != tt.want {
				t.Fatalf("SoCTemp() = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
	for _, tree := range []string{"none", "no-such-tree"} {
		if got, err := New(Options{SysDir: filepath.Join("testdata", tree, "sys")}).SoCTemp(); !errors.Is(err, ErrNoThermal) {
			t.Errorf("%s: SoCTemp() = %+v, %v; want ErrNoThermal", tree, got, err)
		}
	}
}

func TestRank(t *testing.T) {
	order := []string{"cpu-thermal", "cpu_thermal", "soc-thermal", "soc_thermal", "SOC", "cpu", "bigcore0-thermal", "acpitz"}
	for i := 1; i < len(order); i++ {
		if rank(order[i-1]) > rank(order[i]) {
			t.Errorf("rank(%q) = %d > rank(%q) = %d", order[i-1], rank(order[i-1]), order[i], rank(order[i]))
		}
	}
	if rank("x86_pkg_temp") >= rank("acpitz") {
		t.Error("x86_pkg_temp does not outrank acpitz")
	}
}

// The real /proc of this process: figures agree with the kernel's own VmRSS and grow with work.
func TestProcessLive(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	r := New(Options{})
	before, err := r.Process()
	if err != nil {
		t.Fatal(err)
	}
	vmRSS := statusRSS(t)
	// RSS moves a little between the two reads; within 4 MiB is the same figure.
	if diff := int64(before.RSS) - int64(vmRSS); before.RSS == 0 || diff > 4<<20 || diff < -4<<20 {
		t.Errorf("RSS %d bytes, /proc/self/status VmRSS %d bytes", before.RSS, vmRSS)
	}
	// Burn CPU for 300 ms of wall time; the ticks are 10 ms, so several must show.
	x := 1.0
	for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); {
		for range 10000 {
			x = x*1.0000001 + 1e-9
		}
	}
	after, err := r.Process()
	if err != nil {
		t.Fatal(err)
	}
	pct := CPUPercent(before, after)
	if after.CPU <= before.CPU || pct <= 0 || pct > 100*float64(runtime.NumCPU())+50 {
		t.Fatalf("after a busy loop (x=%v): CPU %v -> %v, %.1f%%", x, before.CPU, after.CPU, pct)
	}
	t.Logf("busy loop: %.0f%% of one core, RSS %d KiB", pct, after.RSS>>10)
}

func statusRSS(t *testing.T) uint64 {
	t.Helper()
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("VmRSS %q: %v", v, err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}

func TestDiskFree(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("statfs is read on Linux only")
	}
	dir := t.TempDir()
	free, err := DiskFree(dir)
	if err != nil || free == 0 {
		t.Fatalf("DiskFree(%s) = %d, %v; want some free space", dir, free, err)
	}
	// Writing 8 MiB and syncing it must not leave more free space than before, give or take
	// what other processes freed meanwhile.
	if err := os.WriteFile(filepath.Join(dir, "fill"), make([]byte, 8<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(dir, "fill"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	after, err := DiskFree(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("free %d MiB, after writing 8 MiB %d MiB", free>>20, after>>20)
	if after > free+64<<20 {
		t.Errorf("free space grew from %d to %d bytes after writing 8 MiB", free, after)
	}
	_, err = DiskFree(filepath.Join(dir, "missing"))
	if err == nil || !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "statfs ") {
		t.Fatalf("DiskFree of a missing path: err = %v, want statfs …: ENOENT", err)
	}
}
