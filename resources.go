package slipway

import (
	"fmt"
	"math"
	"strings"
)

// Bounds of Resources.
const (
	MaxResourceCPU      = 64      // cores
	MaxResourceMemoryMB = 1 << 20 // 1 TiB
	// MinResourceMemoryMB is the least memory an interpreter starts in.
	MinResourceMemoryMB = 16
)

// Resources is what one replica of a deployment, or one run of a job, may use: CPU in cores (fractions
// allowed: 0.5 is half a core) and memory in MiB. A zero field is not limited. The kubernetes engine turns
// them into the container's requests and limits; the local engine applies memory as an address-space rlimit
// (docs/engines.md, "Resources").
type Resources struct {
	CPU      float64 `json:"cpu,omitempty"`
	MemoryMB int64   `json:"memory_mb,omitempty"`
}

// IsZero reports whether r limits nothing (nil or both fields zero).
func (r *Resources) IsZero() bool { return r == nil || (r.CPU == 0 && r.MemoryMB == 0) }

// MilliCPU is the CPU in thousandths of a core, rounded up (0.0001 is still 1m: a limit is never dropped).
func (r *Resources) MilliCPU() int64 {
	if r == nil || r.CPU <= 0 {
		return 0
	}
	return int64(math.Ceil(r.CPU * 1000))
}

// MemoryBytes is the memory in bytes (0: not limited).
func (r *Resources) MemoryBytes() int64 {
	if r == nil {
		return 0
	}
	return r.MemoryMB << 20
}

// Problems lists what is wrong with r, each naming its field (resources.cpu, resources.memory_mb).
func (r *Resources) Problems() []string {
	if r == nil {
		return nil
	}
	var problems []string
	if !(r.CPU >= 0 && r.CPU <= MaxResourceCPU) || (r.CPU > 0 && r.CPU < 0.001) { // also refuses NaN
		problems = append(problems, fmt.Sprintf("resources.cpu must be > 0 and at most %d (cores; 0.5 is half a core, the smallest is 0.001), got %g", MaxResourceCPU, r.CPU))
	}
	if r.MemoryMB < 0 || r.MemoryMB > MaxResourceMemoryMB || (r.MemoryMB > 0 && r.MemoryMB < MinResourceMemoryMB) {
		problems = append(problems, fmt.Sprintf("resources.memory_mb must be > 0, at least %d (no interpreter starts in less) and at most %d, got %d", MinResourceMemoryMB, MaxResourceMemoryMB, r.MemoryMB))
	}
	return problems
}

// Validate is Problems as one EINVALID error, nil when r is fine.
func (r *Resources) Validate() error {
	if p := r.Problems(); len(p) > 0 {
		return Errorf(EINVALID, "%s", strings.Join(p, "; "))
	}
	return nil
}
