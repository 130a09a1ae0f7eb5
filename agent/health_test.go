package agent_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-ml/outpost/agent/sysstat"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// fakeHost is a /proc and /sys tree for one process, which a test rewrites as it goes.
type fakeHost struct {
	dir string
	pid int
}

func newFakeHost(t *testing.T, milliC int) *fakeHost {
	t.Helper()
	h := &fakeHost{dir: t.TempDir(), pid: 4321}
	zone := filepath.Join(h.dir, "sys", "class", "thermal", "thermal_zone0")
	for _, d := range []string{filepath.Join(h.dir, "proc", "4321"), zone} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	h.write(t, filepath.Join(zone, "type"), "cpu-thermal\n")
	h.write(t, filepath.Join(zone, "temp"), fmt.Sprintf("%d\n", milliC))
	h.write(t, filepath.Join(h.dir, "proc", "4321", "statm"), "183294 3584 2110 1678 0 12040 0\n")
	h.setTicks(t, 0)
	return h
}

// write replaces a file atomically, so the agent never reads half of it.
func (h *fakeHost) write(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// setTicks sets the process's user CPU time in 1/100 s.
func (h *fakeHost) setTicks(t *testing.T, ticks int) {
	t.Helper()
	h.write(t, filepath.Join(h.dir, "proc", "4321", "stat"),
		fmt.Sprintf("4321 (outpost-agent) S 1 4321 4321 0 -1 1077936384 2231 0 3 0 %d 0 0 0 20 0 9 0 1873 731176960 3584\n", ticks))
}

func (h *fakeHost) reader() *sysstat.Reader {
	return sysstat.New(sysstat.Options{ProcDir: filepath.Join(h.dir, "proc"), SysDir: filepath.Join(h.dir, "sys"), PID: h.pid, PageSize: 4096})
}

func TestHealthHostFigures(t *testing.T) {
	host := newFakeHost(t, 51234)
	r := newRig()
	r.opts.System = host.reader()
	r.opts.DataDir = t.TempDir()
	_, stop := r.start(t)
	eventually(t, "a health report", func() bool { return len(r.up.healthReports()) > 0 })
	// 10,000 s of CPU time appear within one health interval: far above 100 %.
	host.setTicks(t, 1_000_000)
	eventually(t, "a report with the CPU burst", func() bool {
		hs := r.up.healthReports()
		return hs[len(hs)-1].CPUPercent > 1000
	})
	n := len(r.up.healthReports())
	eventually(t, "a report after the burst", func() bool { return len(r.up.healthReports()) > n })
	stop()
	h := r.up.healthReports()[n]
	if h.CPUPercent != 0 {
		t.Errorf("CPUPercent = %v in the interval after the burst, want 0 (no new CPU time)", h.CPUPercent)
	}
	if h.RSSBytes != 3584*4096 {
		t.Errorf("RSSBytes = %d, want %d (statm resident pages × page size)", h.RSSBytes, 3584*4096)
	}
	if h.SoCTempC == nil || *h.SoCTempC != 51.234 {
		t.Errorf("SoCTempC = %v, want 51.234", h.SoCTempC)
	}
	free, err := sysstat.DiskFree(r.opts.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	// Other processes write meanwhile; the two reads agree to within 1 GiB.
	if h.DiskFreeBytes == nil || *h.DiskFreeBytes == 0 || diff(*h.DiskFreeBytes, free) > 1<<30 {
		t.Errorf("DiskFreeBytes = %v, statfs says %d", h.DiskFreeBytes, free)
	}
}

func diff(a, b uint64) uint64 { return max(a, b) - min(a, b) }

// Where nothing can be read, the host figures are left out of the JSON rather than sent as
// zeros that would read as "no memory" or "disk full".
func TestHealthHostFiguresUnknown(t *testing.T) {
	r := newRig()
	empty := t.TempDir()
	r.opts.System = sysstat.New(sysstat.Options{ProcDir: empty, SysDir: empty})
	r.pred.err = errors.New("tensor arena exhausted")
	_, stop := r.start(t)
	eventually(t, "a health report with predict errors", func() bool {
		hs := r.up.healthReports()
		return len(hs) > 0 && hs[len(hs)-1].PredictErrors >= 3
	})
	stop()
	hs := r.up.healthReports()
	h := hs[len(hs)-1]
	if h.RSSBytes != 0 || h.DiskFreeBytes != nil || h.SoCTempC != nil || h.CPUPercent != 0 {
		t.Fatalf("host figures = cpu %v rss %d disk %v temp %v, want all unknown", h.CPUPercent, h.RSSBytes, h.DiskFreeBytes, h.SoCTempC)
	}
	payload, err := wire.Encode(&h)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"rss_bytes", "disk_free_bytes", "soc_temp_c"} {
		if strings.Contains(string(payload), `"`+key+`"`) {
			t.Errorf("health JSON has %q though it is unknown: %s", key, payload)
		}
	}
	for _, key := range []string{"cpu_percent", "samples_dropped", "predict_errors"} {
		if !strings.Contains(string(payload), `"`+key+`"`) {
			t.Errorf("health JSON lacks %q: %s", key, payload)
		}
	}
}

// The real /proc of the test process: a running agent reports its own memory and a CPU share.
func TestHealthLiveProcess(t *testing.T) {
	if _, err := os.Stat("/proc/self/statm"); err != nil {
		t.Skip("no /proc")
	}
	r := newRig()
	r.opts.DataDir = t.TempDir()
	_, stop := r.start(t)
	eventually(t, "two health reports", func() bool { return len(r.up.healthReports()) >= 2 })
	stop()
	hs := r.up.healthReports()
	h := hs[len(hs)-1]
	if h.RSSBytes < 1<<20 || h.CPUPercent < 0 || h.DiskFreeBytes == nil || *h.DiskFreeBytes == 0 {
		b, _ := json.Marshal(h)
		t.Fatalf("live health: %s", b)
	}
}
