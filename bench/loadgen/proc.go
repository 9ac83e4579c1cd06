package loadgen

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// ClockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat. It
// is 100 on every Linux architecture Go supports (the kernel's internal HZ
// may differ; /proc always reports in USER_HZ).
const ClockTicks = 100

// ProcSample is one reading of a process's CPU time and resident memory.
type ProcSample struct {
	At    time.Time
	Ticks uint64 // utime + stime, in ClockTicks
	RSSKB uint64 // VmRSS in KiB
}

// ReadProc samples /proc/PID/stat and /proc/PID/status; pid 0 means this
// process (/proc/self).
func ReadProc(pid int) (ProcSample, error) {
	dir := "/proc/self"
	if pid > 0 {
		dir = "/proc/" + strconv.Itoa(pid)
	}
	at := time.Now()
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return ProcSample{}, err
	}
	ut, st, err := ParseStat(stat)
	if err != nil {
		return ProcSample{}, fmt.Errorf("%s/stat: %w", dir, err)
	}
	status, err := os.ReadFile(dir + "/status")
	if err != nil {
		return ProcSample{}, err
	}
	rss, err := ParseStatusRSS(status)
	if err != nil {
		return ProcSample{}, fmt.Errorf("%s/status: %w", dir, err)
	}
	return ProcSample{At: at, Ticks: ut + st, RSSKB: rss}, nil
}

// ParseStat returns utime and stime (fields 14 and 15) from the content of
// /proc/PID/stat. The command name (field 2) is in parentheses and may hold
// spaces and parentheses itself, so fields are counted after the last ')'.
func ParseStat(b []byte) (utime, stime uint64, err error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, errors.New("no command name")
	}
	// After ')' come field 3 (state) onwards: utime is the 12th of those.
	fields := bytes.Fields(b[i+1:])
	if len(fields) < 13 {
		return 0, 0, fmt.Errorf("only %d fields after the command name", len(fields))
	}
	if utime, err = strconv.ParseUint(string(fields[11]), 10, 64); err != nil {
		return 0, 0, fmt.Errorf("utime: %w", err)
	}
	if stime, err = strconv.ParseUint(string(fields[12]), 10, 64); err != nil {
		return 0, 0, fmt.Errorf("stime: %w", err)
	}
	return utime, stime, nil
}

// ParseStatusRSS returns VmRSS in KiB from the content of /proc/PID/status.
func ParseStatusRSS(b []byte) (uint64, error) {
	for line := range bytes.Lines(b) {
		rest, ok := bytes.CutPrefix(line, []byte("VmRSS:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) == 0 {
			break
		}
		kb, err := strconv.ParseUint(string(f[0]), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("VmRSS: %w", err)
		}
		if len(f) > 1 && !bytes.EqualFold(f[1], []byte("kB")) {
			return 0, fmt.Errorf("VmRSS unit %q, want kB", f[1])
		}
		return kb, nil
	}
	return 0, errors.New("no VmRSS line (kernel thread or zombie?)")
}

// CPUSeconds is the CPU time spent between two samples.
func CPUSeconds(a, b ProcSample) float64 {
	if b.Ticks < a.Ticks {
		return 0
	}
	return float64(b.Ticks-a.Ticks) / ClockTicks
}

// CPUPercent is the CPU used between two samples in % of one core (200% =
// two cores fully busy).
func CPUPercent(a, b ProcSample) float64 {
	wall := b.At.Sub(a.At).Seconds()
	if wall <= 0 {
		return 0
	}
	return 100 * CPUSeconds(a, b) / wall
}

// MachineSample is the whole machine's CPU time from /proc/stat.
type MachineSample struct {
	At          time.Time
	Busy, Total uint64 // in ClockTicks, summed over all CPUs
}

// ReadMachine samples the first line of /proc/stat.
func ReadMachine() (MachineSample, error) {
	at := time.Now()
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return MachineSample{}, err
	}
	busy, total, err := ParseProcStatCPU(b)
	if err != nil {
		return MachineSample{}, fmt.Errorf("/proc/stat: %w", err)
	}
	return MachineSample{At: at, Busy: busy, Total: total}, nil
}

// ParseProcStatCPU reads the aggregate "cpu" line of /proc/stat: user nice
// system idle iowait irq softirq steal (guest time is already in user). Busy
// is everything but idle and iowait.
func ParseProcStatCPU(b []byte) (busy, total uint64, err error) {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := bytes.Fields(line)
	if len(f) < 5 || string(f[0]) != "cpu" {
		return 0, 0, errors.New("no aggregate cpu line")
	}
	var v [8]uint64
	for i := 0; i < len(v) && i+1 < len(f); i++ {
		if v[i], err = strconv.ParseUint(string(f[i+1]), 10, 64); err != nil {
			return 0, 0, fmt.Errorf("cpu field %d: %w", i+1, err)
		}
	}
	for _, x := range v {
		total += x
	}
	return total - v[3] - v[4], total, nil
}

// MachinePercent is the machine's CPU use between two samples in % of one
// core (the same unit as CPUPercent: 200% = two cores busy).
func MachinePercent(a, b MachineSample) float64 {
	wall := b.At.Sub(a.At).Seconds()
	if wall <= 0 || b.Busy < a.Busy {
		return 0
	}
	return 100 * float64(b.Busy-a.Busy) / ClockTicks / wall
}

// UDPSample is the kernel's view of a process's UDP sockets: datagrams
// dropped because a socket's receive buffer was full (counted since each
// socket opened), and bytes waiting in the receive buffers now.
type UDPSample struct {
	Sockets  int
	Drops    uint64
	RxQueued uint64
}

// ReadUDP finds the UDP sockets of process pid (0 = this process) through
// /proc/PID/fd and sums their counters from /proc/net/udp and udp6.
func ReadUDP(pid int) (UDPSample, error) {
	dir := "/proc/self"
	if pid > 0 {
		dir = "/proc/" + strconv.Itoa(pid)
	}
	fds, err := os.ReadDir(dir + "/fd")
	if err != nil {
		return UDPSample{}, err
	}
	inodes := map[uint64]bool{}
	for _, fd := range fds {
		link, err := os.Readlink(dir + "/fd/" + fd.Name())
		if err != nil {
			continue // closed meanwhile
		}
		if s, ok := strings.CutPrefix(link, "socket:["); ok {
			if ino, err := strconv.ParseUint(strings.TrimSuffix(s, "]"), 10, 64); err == nil {
				inodes[ino] = true
			}
		}
	}
	var sum UDPSample
	for _, table := range []string{"/net/udp", "/net/udp6"} {
		b, err := os.ReadFile(dir + table)
		if err != nil {
			continue // no IPv6
		}
		s, err := ParseUDPTable(b, inodes)
		if err != nil {
			return UDPSample{}, fmt.Errorf("%s%s: %w", dir, table, err)
		}
		sum.Sockets += s.Sockets
		sum.Drops += s.Drops
		sum.RxQueued += s.RxQueued
	}
	return sum, nil
}

// ParseUDPTable sums the rx_queue and drops columns of /proc/net/udp rows
// whose inode is in inodes.
func ParseUDPTable(b []byte, inodes map[uint64]bool) (UDPSample, error) {
	var sum UDPSample
	first := true
	for line := range bytes.Lines(b) {
		if first { // header
			first = false
			continue
		}
		f := bytes.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) < 13 {
			return sum, fmt.Errorf("row with %d fields, want 13", len(f))
		}
		ino, err := strconv.ParseUint(string(f[9]), 10, 64)
		if err != nil {
			return sum, fmt.Errorf("inode: %w", err)
		}
		if !inodes[ino] {
			continue
		}
		_, rxq, _ := bytes.Cut(f[4], []byte(":"))
		q, err := strconv.ParseUint(string(rxq), 16, 64)
		if err != nil {
			return sum, fmt.Errorf("rx_queue: %w", err)
		}
		drops, err := strconv.ParseUint(string(f[12]), 10, 64)
		if err != nil {
			return sum, fmt.Errorf("drops: %w", err)
		}
		sum.Sockets++
		sum.RxQueued += q
		sum.Drops += drops
	}
	return sum, nil
}
