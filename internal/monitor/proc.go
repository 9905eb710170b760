package monitor

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
)

// procUsage is a process's CPU time and resident memory, from /proc (Linux).
type procUsage struct {
	cpuSeconds float64
	rssBytes   int64
}

// clockTicks is USER_HZ: 100 on every Linux architecture Slipway runs on (sysconf needs cgo; procfs assumes it too).
const clockTicks = 100

var pageSize = int64(os.Getpagesize())

// readProc reads /proc/PID/stat: utime and stime (fields 14 and 15) and rss in pages (field 24).
func readProc(pid int) (procUsage, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procUsage{}, err
	}
	// The command (field 2) is in parentheses and may contain spaces: fields are counted after its ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procUsage{}, fmt.Errorf("monitor: unexpected /proc/%d/stat", pid)
	}
	f := bytes.Fields(b[i+1:]) // f[0] is field 3 (state)
	if len(f) < 22 {
		return procUsage{}, fmt.Errorf("monitor: short /proc/%d/stat", pid)
	}
	utime, err1 := strconv.ParseInt(string(f[11]), 10, 64)
	stime, err2 := strconv.ParseInt(string(f[12]), 10, 64)
	rss, err3 := strconv.ParseInt(string(f[21]), 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return procUsage{}, fmt.Errorf("monitor: unparsable /proc/%d/stat", pid)
	}
	return procUsage{cpuSeconds: float64(utime+stime) / clockTicks, rssBytes: rss * pageSize}, nil
}
