package modelruntime

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
)

// MemoryBytes is what the replica holds in memory on this machine, measured: the resident set of its process
// (VmRSS in /proc/PID/status: what the model and its runtime occupy, shared library pages included), or for a
// replica inside the server the C heap its session took when it was created. 0 for a replica that runs elsewhere
// (a network worker), or that has exited.
func (r *Replica) MemoryBytes() int64 {
	if m, ok := r.conn.(interface{ MemoryBytes() int64 }); ok {
		return m.MemoryBytes()
	}
	pid := r.conn.PID()
	if pid <= 0 {
		return 0
	}
	n, err := ResidentBytes(pid)
	if err != nil {
		return 0 // exited meanwhile: it holds nothing
	}
	return n
}

// InProcess reports whether the replica runs inside the server (its memory is the server's).
func (r *Replica) InProcess() bool {
	_, ok := r.conn.(Session)
	return ok
}

// ResidentBytes is the resident set of process pid (VmRSS in /proc/PID/status).
func ResidentBytes(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for line := range bytes.Lines(b) {
		rest, ok := bytes.CutPrefix(line, []byte("VmRSS:"))
		if !ok {
			continue
		}
		var kb int64
		if _, err := fmt.Sscan(string(rest), &kb); err != nil {
			return 0, fmt.Errorf("read VmRSS of %d: %w", pid, err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("process %d has no VmRSS (a zombie?)", pid)
}
