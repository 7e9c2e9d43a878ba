package meshbench

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat.
// Linux fixes it at 100 on every architecture weft runs on; Go cannot ask
// sysconf(_SC_CLK_TCK) without cgo.
const clockTicks = 100

// cpuTicks is a process's user and system CPU time so far, all threads
// included, in clock ticks.
type cpuTicks struct {
	User, System uint64
}

// Seconds is the total CPU time in seconds.
func (c cpuTicks) Seconds() float64 { return float64(c.User+c.System) / clockTicks }

// parseStat reads utime and stime (fields 14 and 15) and the parent PID
// (field 4) out of the contents of /proc/PID/stat. The command name (field
// 2) may hold spaces and parentheses, so fields are counted from the last
// ')'.
func parseStat(s string) (ppid int, cpu cpuTicks, err error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, cpuTicks{}, errors.New("parse /proc stat: no ')' after the command name")
	}
	// After ") ": field 3 (state) is f[0], so field n is f[n-3].
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, cpuTicks{}, fmt.Errorf("parse /proc stat: %d fields after the command name, want at least 13", len(f))
	}
	if ppid, err = strconv.Atoi(f[1]); err != nil {
		return 0, cpuTicks{}, fmt.Errorf("parse /proc stat: ppid: %w", err)
	}
	if cpu.User, err = strconv.ParseUint(f[11], 10, 64); err != nil {
		return 0, cpuTicks{}, fmt.Errorf("parse /proc stat: utime: %w", err)
	}
	if cpu.System, err = strconv.ParseUint(f[12], 10, 64); err != nil {
		return 0, cpuTicks{}, fmt.Errorf("parse /proc stat: stime: %w", err)
	}
	return ppid, cpu, nil
}

// memory is a process's resident set, in KiB: now and at its peak since
// the process started or since the peak was last reset.
type memory struct {
	RSSKiB, HWMKiB int64
}

// parseStatus reads VmRSS and VmHWM out of the contents of /proc/PID/status.
func parseStatus(s string) (memory, error) {
	var m memory
	var seen int
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || (key != "VmRSS" && key != "VmHWM") {
			continue
		}
		f := strings.Fields(val)
		if len(f) != 2 || f[1] != "kB" {
			return memory{}, fmt.Errorf("parse /proc status: %s: unexpected value %q", key, val)
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return memory{}, fmt.Errorf("parse /proc status: %s: %w", key, err)
		}
		if key == "VmRSS" {
			m.RSSKiB = n
		} else {
			m.HWMKiB = n
		}
		seen++
	}
	if seen != 2 {
		return memory{}, errors.New("parse /proc status: VmRSS or VmHWM missing (kernel thread or zombie?)")
	}
	return m, nil
}

func readCPU(pid int) (cpuTicks, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return cpuTicks{}, err
	}
	_, c, err := parseStat(string(b))
	return c, err
}

func readMemory(pid int) (memory, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memory{}, err
	}
	return parseStatus(string(b))
}

// resetPeakRSS makes VmHWM start again from the current RSS (writing 5 to
// clear_refs, Linux 4.0+). It needs the right to ptrace the process, which
// its parent running as the same user has.
func resetPeakRSS(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// childrenOf lists the processes whose parent is ppid, by scanning /proc.
func childrenOf(ppid int) ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // gone meanwhile
		}
		if p, _, err := parseStat(string(b)); err == nil && p == ppid {
			out = append(out, pid)
		}
	}
	return out, nil
}

// establishedTo counts the established TCP connections accepted on
// loopback port port, from the contents of /proc/net/tcp or /proc/net/tcp6:
// the rows whose local port is port and whose state is 01. It tells how
// many connections one proxy holds open to the next.
func establishedTo(netTCP string, port int) int {
	n := 0
	for line := range strings.SplitSeq(netTCP, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || f[3] != "01" {
			continue
		}
		_, hexPort, ok := strings.Cut(f[1], ":")
		if !ok {
			continue
		}
		if p, err := strconv.ParseUint(hexPort, 16, 32); err == nil && int(p) == port {
			n++
		}
	}
	return n
}

// connectionsTo reads /proc/net/tcp and tcp6 and counts the established
// connections accepted on port.
func connectionsTo(port int) int {
	n := 0
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		if b, err := os.ReadFile(f); err == nil {
			n += establishedTo(string(b), port)
		}
	}
	return n
}

// parseMachineStat reads the busy and total time of all CPUs, in clock
// ticks, from the "cpu" line of /proc/stat. Busy is user, nice, system,
// irq, softirq and steal; total adds idle and iowait.
func parseMachineStat(s string) (busy, total uint64, err error) {
	line, _, _ := strings.Cut(s, "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, errors.New("parse /proc/stat: no aggregate cpu line first")
	}
	var v [8]uint64
	for i := range v {
		if v[i], err = strconv.ParseUint(f[i+1], 10, 64); err != nil {
			return 0, 0, fmt.Errorf("parse /proc/stat: %w", err)
		}
	}
	// user nice system idle iowait irq softirq steal
	busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
	return busy, busy + v[3] + v[4], nil
}

func readMachineBusy() (uint64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	busy, _, err := parseMachineStat(string(b))
	return busy, err
}

// withChildren returns pids and the direct children of each (an nginx
// master's worker), scanning /proc once.
func withChildren(pids []int) []int {
	set := make(map[int]bool, len(pids))
	for _, p := range pids {
		set[p] = true
	}
	out := append([]int(nil), pids...)
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || set[pid] {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		if ppid, _, err := parseStat(string(b)); err == nil && set[ppid] {
			out = append(out, pid)
		}
	}
	return out
}

// cpuOf sums the CPU seconds of pids, skipping those that are gone.
func cpuOf(pids []int) map[int]float64 {
	out := make(map[int]float64, len(pids))
	for _, p := range pids {
		if c, err := readCPU(p); err == nil {
			out[p] = c.Seconds()
		}
	}
	return out
}
