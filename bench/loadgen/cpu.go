package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// CPU accounting for the measured window (Linux /proc), so that a cell measured while something else used the
// machine can be told apart: the machine's busy time is split into the load generator itself, the target (a
// process and all its descendants: the Slipway server and its replicas, gunicorn and its workers) and the rest.
// All figures are clock ticks, the unit of both /proc/stat and /proc/PID/stat.

// cpuSample is one reading at an instant.
type cpuSample struct {
	total  uint64 // every CPU, every state
	busy   uint64 // user + nice + system + steal (not idle, iowait, irq, softirq: the network interrupts of the load itself)
	self   uint64 // this process
	target uint64 // the watched process tree, including children it has reaped
	ncpu   int    // CPUs of the machine (cpuN lines), whatever this process's affinity
}

// CPUShare is the split of the machine's CPU over the window, in percent of all CPUs.
type CPUShare struct {
	Loadgen float64 `json:"loadgen"`
	Target  float64 `json:"target"`
	Other   float64 `json:"other"` // busy time of everything else, steal (other VMs) included
}

// procStat is a process's parent and CPU ticks (utime + stime + cutime + cstime) from /proc/PID/stat.
func procStat(path string) (ppid int, ticks uint64, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, err
	}
	// "pid (comm) state ppid ..." where comm may contain spaces and parentheses: fields start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, errors.New("malformed " + path)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 { // f[0] is field 3 (state); utime..cstime are fields 14-17
		return 0, 0, errors.New("malformed " + path)
	}
	ppid, _ = strconv.Atoi(f[1])
	for _, s := range f[11:15] {
		n, _ := strconv.ParseUint(s, 10, 64)
		ticks += n
	}
	return ppid, ticks, nil
}

// treeTicks sums the CPU ticks of root and all its descendants.
func treeTicks(proc string, root int) uint64 {
	dirs, _ := filepath.Glob(filepath.Join(proc, "[0-9]*"))
	parent := map[int]int{}
	ticks := map[int]uint64{}
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		ppid, t, err := procStat(filepath.Join(d, "stat"))
		if err != nil {
			continue // exited meanwhile
		}
		parent[pid], ticks[pid] = ppid, t
	}
	var sum uint64
	for pid, t := range ticks {
		for p, hops := pid, 0; p > 0 && hops < 64; p, hops = parent[p], hops+1 {
			if p == root {
				sum += t
				break
			}
		}
	}
	return sum
}

// machineTicks reads the aggregate "cpu" line of /proc/stat, and counts the per-CPU lines.
func machineTicks(proc string) (total, busy uint64, ncpu int, err error) {
	b, err := os.ReadFile(filepath.Join(proc, "stat"))
	if err != nil {
		return 0, 0, 0, err
	}
	lines := strings.Split(string(b), "\n")
	for _, l := range lines[1:] {
		if len(l) > 3 && strings.HasPrefix(l, "cpu") && l[3] >= '0' && l[3] <= '9' {
			ncpu++
		}
	}
	f := strings.Fields(lines[0])
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, 0, errors.New("unexpected /proc/stat")
	}
	// user nice system idle iowait irq softirq steal [guest guest_nice: already counted in user and nice]
	var v [8]uint64
	for i := range v {
		v[i], _ = strconv.ParseUint(f[i+1], 10, 64)
		total += v[i]
	}
	return total, v[0] + v[1] + v[2] + v[7], ncpu, nil
}

// sampleCPU reads the machine, this process and the target tree (targetPID 0: none).
func sampleCPU(proc string, targetPID int) (cpuSample, error) {
	var s cpuSample
	var err error
	if s.total, s.busy, s.ncpu, err = machineTicks(proc); err != nil {
		return s, err
	}
	if _, s.self, err = procStat(filepath.Join(proc, strconv.Itoa(os.Getpid()), "stat")); err != nil {
		return s, err
	}
	if targetPID > 0 {
		s.target = treeTicks(proc, targetPID)
	}
	return s, nil
}

// share turns two samples into percentages of the machine; ok is false when nothing was measurable.
func share(a, b cpuSample) (CPUShare, bool) {
	if b.total <= a.total {
		return CPUShare{}, false
	}
	total := float64(b.total - a.total)
	pct := func(x, y uint64) float64 {
		if y < x { // a process of the tree exited without being reaped by it: its ticks are lost
			return 0
		}
		return 100 * float64(y-x) / total
	}
	s := CPUShare{Loadgen: pct(a.self, b.self), Target: pct(a.target, b.target)}
	s.Other = max(0, pct(a.busy, b.busy)-s.Loadgen-s.Target)
	return s, true
}
