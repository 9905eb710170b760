package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/slipway-ml/slipway"
)

// resourceFlags are --cpu and --memory-mb: what each replica of a deployment, or each run of a job, may use.
type resourceFlags struct {
	cpu      float64
	memoryMB int64
}

var resourceFlagNames = []string{"cpu", "memory-mb"}

func (f *resourceFlags) register(cmd *cobra.Command, what string) {
	cmd.Flags().Float64Var(&f.cpu, "cpu", 0, "CPU cores each "+what+" may use, fractions allowed (0.5: half a core; kubernetes engine only, 0: no limit)")
	cmd.Flags().Int64Var(&f.memoryMB, "memory-mb", 0, "memory each "+what+" may use, in MiB (0: no limit)")
}

// resources is what the flags given ask for on top of current (nil when none was given): a flag left out
// keeps current's value, so that --cpu alone on an update keeps the memory.
func (f *resourceFlags) resources(cmd *cobra.Command, current *slipway.Resources) *slipway.Resources {
	if !anyChanged(cmd, resourceFlagNames...) {
		return nil
	}
	r := slipway.Resources{}
	if current != nil {
		r = *current
	}
	if cmd.Flags().Changed("cpu") {
		r.CPU = f.cpu
	}
	if cmd.Flags().Changed("memory-mb") {
		r.MemoryMB = f.memoryMB
	}
	return &r
}

// formatResources is r for a table: "0.5 cpu, 512 MiB memory" (the fields set).
func formatResources(r *slipway.Resources) string {
	var parts []string
	if r.CPU > 0 {
		parts = append(parts, fmt.Sprintf("%g cpu", r.CPU))
	}
	if r.MemoryMB > 0 {
		parts = append(parts, fmt.Sprintf("%d MiB memory", r.MemoryMB))
	}
	return strings.Join(parts, ", ")
}
