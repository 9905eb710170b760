package cli

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipway-ml/slipway"
)

// autoscaleFlags are the flags of a deployment's autoscaling policy and load mode.
type autoscaleFlags struct {
	minReplicas, maxReplicas int
	targetInFlight           float64
	scaleDownAfter           time.Duration
	noAutoscaling            bool
	load                     string
	isolation                string
}

var autoscaleFlagNames = []string{"min-replicas", "max-replicas", "target-in-flight", "scale-down-after"}

func (f *autoscaleFlags) register(cmd *cobra.Command, create bool) {
	fs := cmd.Flags()
	fs.IntVar(&f.minReplicas, "min-replicas", 1, "autoscaling: the fewest replicas (0: scale to zero when idle; the next request waits while one starts)")
	fs.IntVar(&f.maxReplicas, "max-replicas", 0, "autoscaling: the most replicas (1-64); giving it turns autoscaling on")
	fs.Float64Var(&f.targetInFlight, "target-in-flight", slipway.DefaultTargetInFlight, "autoscaling: requests in flight or queued per replica to aim for")
	fs.DurationVar(&f.scaleDownAfter, "scale-down-after", slipway.DefaultScaleDownAfterS*time.Second, "autoscaling: remove replicas only after the load has been low this long (whole seconds)")
	usage := "when the replicas start: eager (with the deployment) or lazy (on the first request)"
	if create {
		fs.StringVar(&f.load, "load", slipway.LoadEager, usage)
	} else {
		fs.StringVar(&f.load, "load", "", usage)
		fs.BoolVar(&f.noAutoscaling, "no-autoscaling", false, "remove the autoscaling policy: the replica count stays at --replicas")
	}
	fs.StringVar(&f.isolation, "isolation", "", "ONNX models: process (the default: each replica a process) or in-process (an ONNX Runtime session inside the server; a crash of the runtime takes the server down)")
}

// fill sets sp.Autoscaling and sp.Load from the flags given. current is the deployment's policy (update), so
// that --max-replicas alone keeps the rest of it.
func (f *autoscaleFlags) fill(cmd *cobra.Command, sp *slipway.DeploymentSpec, current *slipway.Autoscaling) error {
	changed := cmd.Flags().Changed
	if changed("load") {
		sp.Load = &f.load
	}
	if changed("isolation") {
		sp.Isolation = &f.isolation
	}
	given := anyChanged(cmd, autoscaleFlagNames...)
	switch {
	case f.noAutoscaling && given:
		return errors.New("--no-autoscaling removes the policy: give it without --min-replicas, --max-replicas, --target-in-flight or --scale-down-after")
	case f.noAutoscaling:
		sp.Autoscaling = &slipway.Autoscaling{} // max_replicas 0: none
		return nil
	case !given:
		return nil
	case current == nil && !changed("max-replicas"):
		return errors.New("autoscaling needs --max-replicas")
	}
	a := slipway.Autoscaling{MinReplicas: f.minReplicas, MaxReplicas: f.maxReplicas, TargetInFlight: f.targetInFlight,
		ScaleDownAfterS: int(f.scaleDownAfter / time.Second)}
	if current != nil {
		for name, keep := range map[string]func(){
			"min-replicas":     func() { a.MinReplicas = current.MinReplicas },
			"max-replicas":     func() { a.MaxReplicas = current.MaxReplicas },
			"target-in-flight": func() { a.TargetInFlight = current.TargetInFlight },
			"scale-down-after": func() { a.ScaleDownAfterS = current.ScaleDownAfterS },
		} {
			if !changed(name) {
				keep()
			}
		}
	}
	if changed("scale-down-after") && (f.scaleDownAfter < time.Second || f.scaleDownAfter%time.Second != 0) {
		return fmt.Errorf("--scale-down-after must be whole seconds, at least 1s, got %s", f.scaleDownAfter)
	}
	sp.Autoscaling = &a
	return nil
}

// printAutoscaling adds the policy and what the autoscaler sees to a deployment's table.
func printAutoscaling(tw io.Writer, d *slipway.Deployment) {
	if d.Load == slipway.LoadLazy {
		row(tw, "Load:", "lazy (the first request starts the replicas)")
	}
	if d.Isolation == slipway.IsolationInProcess {
		row(tw, "Isolation:", "in-process (ONNX Runtime sessions inside the server)")
	}
	if r := d.Resources; !r.IsZero() {
		row(tw, "Resources:", formatResources(r))
	}
	a := d.Autoscaling
	if a == nil {
		return
	}
	row(tw, "Autoscaling:", fmt.Sprintf("%d-%d replicas, %g requests in flight per replica, down after %ds of low load",
		a.MinReplicas, a.MaxReplicas, a.TargetInFlight, a.ScaleDownAfterS))
	st := d.AutoscalingStatus
	if st == nil {
		return
	}
	now := fmt.Sprintf("%d replicas (desired %d, load %.2f)", st.Current, st.Desired, st.Load)
	if d.ScaledToZero {
		now = "scaled to zero: the next request starts a replica"
	}
	row(tw, "Scale:", now)
	for i, dec := range st.Decisions {
		if i == 3 {
			break
		}
		label := "Last scaled:"
		if i > 0 {
			label = " " // a continuation line (row shows an empty cell as "-")
		}
		row(tw, label, fmt.Sprintf("%s %s %s %d→%d: %s", formatTime(dec.At), dec.Side, dec.Direction, dec.From, dec.To, dec.Reason))
	}
}
