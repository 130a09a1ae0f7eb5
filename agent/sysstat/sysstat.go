// Package sysstat reads the few host figures the agent's health report carries: this
// process's CPU time and resident memory (Linux /proc/PID/stat and /proc/PID/statm), the free
// space of the filesystem holding the data directory (statfs) and the SoC temperature
// (/sys/class/thermal). It uses the standard library only, starts nothing and logs nothing;
// every read is a few small file reads, cheap enough for every health report.
package sysstat

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Defaults for zero Options fields.
const (
	DefaultProcDir = "/proc"
	DefaultSysDir  = "/sys"
)

// userHZ is the unit of the CPU times in /proc/PID/stat. The kernel scales them to USER_HZ,
// which is 100 on every architecture Go supports on Linux (only alpha and ia64 differ), so it
// is a constant here rather than a sysconf call, which would need cgo.
const userHZ = 100

// Options says where to read from. The zero value reads the running process on the real
// /proc and /sys; tests point the directories at fake trees.
type Options struct {
	ProcDir  string // default DefaultProcDir
	SysDir   string // default DefaultSysDir
	PID      int    // process to read; 0 means this one ("self")
	PageSize int    // bytes per page, the unit of statm; 0 means os.Getpagesize()
}

// Reader reads process, disk and temperature figures. It holds no open files and is safe for
// concurrent use.
type Reader struct {
	procDir  string // /proc/PID
	thermal  string // /sys/class/thermal
	pageSize uint64
}

// New returns a Reader for opts. It touches no file.
func New(opts Options) *Reader {
	if opts.ProcDir == "" {
		opts.ProcDir = DefaultProcDir
	}
	if opts.SysDir == "" {
		opts.SysDir = DefaultSysDir
	}
	if opts.PageSize <= 0 {
		opts.PageSize = os.Getpagesize()
	}
	pid := "self"
	if opts.PID > 0 {
		pid = strconv.Itoa(opts.PID)
	}
	return &Reader{
		procDir:  filepath.Join(opts.ProcDir, pid),
		thermal:  filepath.Join(opts.SysDir, "class", "thermal"),
		pageSize: uint64(opts.PageSize),
	}
}

// Process is a process's resource use at one moment.
type Process struct {
	Time time.Time     // when it was read, with a monotonic clock reading
	CPU  time.Duration // user plus system CPU time since the process started
	RSS  uint64        // resident set size in bytes
}

// Process reads the CPU time and resident set size of the Reader's process.
func (r *Reader) Process() (Process, error) {
	now := time.Now()
	stat, err := os.ReadFile(filepath.Join(r.procDir, "stat"))
	if err != nil {
		return Process{}, fmt.Errorf("read process stat: %w", err)
	}
	cpu, err := ParseStat(stat)
	if err != nil {
		return Process{}, fmt.Errorf("%s: %w", filepath.Join(r.procDir, "stat"), err)
	}
	statm, err := os.ReadFile(filepath.Join(r.procDir, "statm"))
	if err != nil {
		return Process{}, fmt.Errorf("read process statm: %w", err)
	}
	pages, err := ParseStatm(statm)
	if err != nil {
		return Process{}, fmt.Errorf("%s: %w", filepath.Join(r.procDir, "statm"), err)
	}
	return Process{Time: now, CPU: cpu, RSS: pages * r.pageSize}, nil
}

// CPUPercent is the CPU time prev and cur span as a percentage of their wall-clock interval:
// 100 means one core busy throughout, so a multi-threaded process can exceed 100. It is 0
// when the interval is empty or the readings are out of order.
func CPUPercent(prev, cur Process) float64 {
	wall := cur.Time.Sub(prev.Time)
	if wall <= 0 || cur.CPU < prev.CPU {
		return 0
	}
	return 100 * float64(cur.CPU-prev.CPU) / float64(wall)
}

// ParseStat returns utime + stime from the contents of /proc/PID/stat (proc(5)). The command
// name in field 2 may hold spaces and parentheses, so fields are counted from its last ')'.
func ParseStat(data []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, errors.New("stat: no ')' closing the command name")
	}
	// Field 3 (state) is the first after the name; utime and stime are fields 14 and 15.
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("stat: %d fields after the command name, want at least 13", len(f))
	}
	var ticks uint64
	for _, s := range f[11:13] {
		n, err := strconv.ParseUint(s, 10, 63)
		if err != nil {
			return 0, fmt.Errorf("stat: cpu time %q: not a tick count", s)
		}
		ticks += n
	}
	if ticks > uint64(1<<63-1)/uint64(time.Second/userHZ) {
		return 0, fmt.Errorf("stat: cpu time of %d ticks out of range", ticks)
	}
	return time.Duration(ticks) * (time.Second / userHZ), nil
}

// ParseStatm returns the resident page count, the second field of /proc/PID/statm.
func ParseStatm(data []byte) (uint64, error) {
	f := strings.Fields(string(data))
	if len(f) < 2 {
		return 0, fmt.Errorf("statm: %d fields, want at least 2", len(f))
	}
	n, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil || n > 1<<52 {
		return 0, fmt.Errorf("statm: resident pages %q: not a page count", f[1])
	}
	return n, nil
}

// Temp is one thermal zone's reading.
type Temp struct {
	Zone    string  // directory name, e.g. "thermal_zone0"
	Type    string  // the zone's type, e.g. "cpu-thermal"
	Celsius float64 // degrees Celsius
}

// ErrNoThermal is returned by SoCTemp when no thermal zone can be read.
var ErrNoThermal = errors.New("no readable thermal zone")

// preferred ranks zone types that name the SoC or its CPU: Raspberry Pi kernels call it
// "cpu-thermal", Rockchip and Allwinner ones "soc-thermal" or "cpu_thermal".
var preferred = []string{"cpu-thermal", "cpu_thermal", "soc-thermal", "soc_thermal", "soc", "cpu"}

// rank orders zone types: the preferred names first, then any type mentioning the CPU, the
// SoC or the x86 package, then everything else.
func rank(typ string) int {
	t := strings.ToLower(typ)
	if i := slices.Index(preferred, t); i >= 0 {
		return i
	}
	if strings.Contains(t, "cpu") || strings.Contains(t, "soc") || t == "x86_pkg_temp" {
		return len(preferred)
	}
	return len(preferred) + 1
}

// SoCTemp reads every /sys/class/thermal/thermal_zone*/temp (millidegrees Celsius) and returns
// the best-ranked zone that reads: a zone whose type names the SoC or CPU, else the
// lowest-numbered one. Zones that fail to read, as some do while their sensor sleeps, are
// skipped. It returns ErrNoThermal when none reads.
func (r *Reader) SoCTemp() (Temp, error) {
	zones, err := filepath.Glob(filepath.Join(r.thermal, "thermal_zone*"))
	if err != nil {
		return Temp{}, fmt.Errorf("list thermal zones: %w", err)
	}
	// Lowest number first, so ties in rank go to thermal_zone2 before thermal_zone10.
	slices.SortFunc(zones, func(a, b string) int { return zoneNum(a) - zoneNum(b) })
	best, bestRank := Temp{}, -1
	for _, z := range zones {
		c, err := readMilliC(filepath.Join(z, "temp"))
		if err != nil {
			continue
		}
		typ, _ := os.ReadFile(filepath.Join(z, "type"))
		t := Temp{Zone: filepath.Base(z), Type: strings.TrimSpace(string(typ)), Celsius: c}
		if rk := rank(t.Type); bestRank < 0 || rk < bestRank {
			best, bestRank = t, rk
		}
	}
	if bestRank < 0 {
		return Temp{}, ErrNoThermal
	}
	return best, nil
}

// zoneNum is the N of thermal_zoneN, or a large number for a name without one.
func zoneNum(path string) int {
	n, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(path), "thermal_zone"))
	if err != nil || n < 0 {
		return 1 << 30
	}
	return n
}

// readMilliC reads a sysfs temperature in millidegrees Celsius.
func readMilliC(path string) (float64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(data))
	n, err := strconv.ParseInt(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%s: temperature %q: not millidegrees", path, s)
	}
	return float64(n) / 1000, nil
}
