package cli

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/client"
)

func (a *app) rolloutsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rollouts",
		Short: "Gated rollouts: shadow and canary steps judged by gates, promoted or rolled back automatically",
	}
	cmd.AddCommand(a.rolloutsStartCommand(), a.rolloutsGetCommand(), a.rolloutsListCommand(), a.rolloutsCancelCommand())
	return cmd
}

type rolloutFlags struct {
	version     int
	steps       []string
	gates       []string
	noWait      bool
	waitTimeout time.Duration
}

func (a *app) rolloutsStartCommand() *cobra.Command {
	var f rolloutFlags
	cmd := &cobra.Command{
		Use:   "start DEPLOYMENT --version N --step shadow=10m --step canary=10:10m [--gate max_error_rate=0.01 ...]",
		Short: "Roll a candidate version out step by step, and follow it until it is promoted or rolled back",
		Long: `Start a gated rollout of --version on a deployment. Each --step runs in order, for its duration:
shadow=DURATION runs the candidate as a shadow whose answers are compared with the live version's;
canary=PERCENT:DURATION sends that share of the requests to it. When a step's window ends, the gates judge
it: a failed gate rolls back at once (the canary or shadow is removed, the deployment's alert rules fire,
its version and alias stay as they were); a passed last step promotes the candidate (the alias moves when
the deployment follows one). Durations are Go durations: 30s, 10m, 1h.

Gates (--gate NAME=VALUE, repeatable): max_error_rate (share of 5xx answers; default 0.01),
max_latency_ratio (candidate p99 / live p99), min_agreement (shadow steps: share of rows predicting the
live version's class), max_accuracy_drop (canary steps: live accuracy minus the candidate's, from the
ground truth that has arrived, else from the label-free estimates), max_estimated_accuracy_drop (canary
steps: the same from CBPE's estimates, see docs/monitoring.md), min_requests (requests a window needs before it is judged; default 20).

The command prints every decision as it is taken and exits 0 when the rollout is PROMOTED, 1 otherwise.
--no-wait returns at once; the server drives the rollout either way, across restarts.`,
		Example: `  slipway rollouts start churn-api --version 2 --step shadow=10m --step canary=10:10m --step canary=50:10m \
      --gate min_agreement=0.95 --gate max_error_rate=0.01 --gate max_latency_ratio=1.5`,
		Args: exactArgs(1, "a deployment name"),
		RunE: a.runWithClient(func(cmd *cobra.Command, args []string, c *client.Client) error {
			sp, err := f.spec()
			if err != nil {
				return err
			}
			r, err := c.StartRollout(cmd.Context(), args[0], sp)
			if err != nil {
				return err
			}
			if f.noWait {
				if a.jsonOutput() {
					return a.printJSON(r)
				}
				fmt.Fprintf(a.stdout, "Rollout %s of version %d on %s is %s.\n", r.ID, r.Version, r.Deployment, r.State)
				fmt.Fprintf(a.stderr, "Not waiting: 'slipway rollouts get %s %s' shows its decisions.\n", r.Deployment, r.ID)
				return nil
			}
			return a.followRollout(cmd.Context(), c, r, f.waitTimeout)
		}),
	}
	fs := cmd.Flags()
	fs.IntVar(&f.version, "version", 0, "the candidate version of the deployment's model (required)")
	fs.StringArrayVar(&f.steps, "step", nil, "a step, in order: shadow=DURATION or canary=PERCENT:DURATION (repeat)")
	fs.StringArrayVar(&f.gates, "gate", nil, "a gate NAME=VALUE: max_error_rate, max_latency_ratio, min_agreement, max_accuracy_drop, max_estimated_accuracy_drop, min_requests (repeat)")
	fs.BoolVar(&f.noWait, "no-wait", false, "return at once instead of following the rollout")
	fs.DurationVar(&f.waitTimeout, "wait-timeout", 24*time.Hour, "stop following after this long (the rollout carries on)")
	return cmd
}

// spec builds the request from the flags; errors name the flag and the value.
func (f *rolloutFlags) spec() (slipway.RolloutSpec, error) {
	sp := slipway.RolloutSpec{Version: f.version}
	if f.version <= 0 {
		return sp, fmt.Errorf("--version is required: the candidate's version number")
	}
	if len(f.steps) == 0 {
		return sp, fmt.Errorf("give at least one --step: shadow=10m or canary=10:10m")
	}
	for _, s := range f.steps {
		st, err := slipway.ParseRolloutStep(s)
		if err != nil {
			return sp, fmt.Errorf("--%w", err)
		}
		sp.Steps = append(sp.Steps, st)
	}
	for _, g := range f.gates {
		if err := setGate(&sp.Gates, g); err != nil {
			return sp, err
		}
	}
	return sp, nil
}

// setGate sets one NAME=VALUE gate.
func setGate(g *slipway.RolloutGates, s string) error {
	name, val, ok := strings.Cut(s, "=")
	if !ok {
		return fmt.Errorf("--gate %q: use NAME=VALUE, e.g. max_error_rate=0.01", s)
	}
	if name == "min_requests" {
		n, err := strconv.Atoi(val)
		if err != nil {
			return fmt.Errorf("--gate %q: min_requests is a whole number of requests", s)
		}
		g.MinRequests = &n
		return nil
	}
	v, err := strconv.ParseFloat(val, 64)
	if err != nil {
		return fmt.Errorf("--gate %q: %q is not a number", s, val)
	}
	switch name {
	case "max_error_rate":
		g.MaxErrorRate = &v
	case "max_latency_ratio":
		g.MaxLatencyRatio = &v
	case "min_agreement":
		g.MinAgreement = &v
	case "max_accuracy_drop":
		g.MaxAccuracyDrop = &v
	case "max_estimated_accuracy_drop":
		g.MaxEstimatedAccuracyDrop = &v
	default:
		return fmt.Errorf("--gate %q: unknown gate %q (max_error_rate, max_latency_ratio, min_agreement, max_accuracy_drop, max_estimated_accuracy_drop, min_requests)", s, name)
	}
	return nil
}

// followRollout prints each new decision until the rollout ends: nil when PROMOTED.
func (a *app) followRollout(ctx context.Context, c *client.Client, r *client.Rollout, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if !a.jsonOutput() {
		fmt.Fprintf(a.stdout, "Rollout %s: version %d on %s (serving version %d): %s\n", r.ID, r.Version, r.Deployment, r.From, stepsText(r.Steps))
	}
	shown := 0
	last, err := c.WaitRollout(ctx, r.Deployment, r.ID, func(cur *client.Rollout) {
		if a.jsonOutput() {
			return
		}
		for ; shown < len(cur.Decisions); shown++ {
			printDecision(a.stdout, cur.Decisions[shown])
		}
	}, time.Second)
	if err != nil {
		if last != nil && ctx.Err() != nil {
			return fmt.Errorf("rollout %s is still %s after %s: it carries on on the server; 'slipway rollouts get %s %s' shows its decisions",
				r.ID, last.State, timeout, r.Deployment, r.ID)
		}
		return err
	}
	if a.jsonOutput() {
		if err := a.printJSON(last); err != nil {
			return err
		}
	}
	if last.State != slipway.RolloutPromoted {
		return fmt.Errorf("rollout %s %s: %s", last.ID, last.State, orDash(last.Reason))
	}
	if !a.jsonOutput() {
		fmt.Fprintf(a.stdout, "PROMOTED: %s serves version %d.\n", last.Deployment, last.Version)
	}
	return nil
}

func stepsText(steps []slipway.RolloutStep) string {
	parts := make([]string, len(steps))
	for i, s := range steps {
		parts[i] = s.String()
	}
	return strings.Join(parts, " → ")
}

func printDecision(w io.Writer, d slipway.RolloutDecision) {
	fmt.Fprintf(w, "%s  %-12s %s\n", d.Time.Local().Format("15:04:05"), d.Action, d.Message)
	for _, c := range d.Checks {
		mark := "ok"
		if !c.Passed {
			mark = "FAILED"
		}
		fmt.Fprintf(w, "          %-6s %-17s %s\n", mark, c.Gate, c.Evidence)
	}
}

func (a *app) rolloutsGetCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "get DEPLOYMENT ID",
		Short:   "Show a rollout: its state, steps, and every decision with its evidence",
		Example: "  slipway rollouts get churn-api 3f2a9c1d0b7e4a55",
		Args:    exactArgs(2, "a deployment name and a rollout id"),
		RunE: a.runWithClient(func(cmd *cobra.Command, args []string, c *client.Client) error {
			r, err := c.GetRollout(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			if a.jsonOutput() {
				return a.printJSON(r)
			}
			printRollout(a.stdout, r)
			return nil
		}),
	}
}

func printRollout(w io.Writer, r *client.Rollout) {
	tw := newTable(w)
	row(tw, "Rollout:", r.ID)
	row(tw, "Deployment:", r.Deployment)
	row(tw, "Version:", fmt.Sprintf("%d (the deployment served %d when it started)", r.Version, r.From))
	row(tw, "State:", r.State)
	row(tw, "Steps:", stepsText(r.Steps))
	if r.CurrentStep != nil {
		row(tw, "Current step:", fmt.Sprintf("%d of %d (%s), %s", r.Step+1, len(r.Steps), r.CurrentStep, r.StepPhase))
	}
	if r.Reason != "" {
		row(tw, "Reason:", r.Reason)
	}
	row(tw, "Started:", fmt.Sprintf("%s by %s", r.CreatedAt.Local().Format(time.RFC3339), orDash(r.CreatedBy)))
	tw.Flush()
	if len(r.Decisions) > 0 {
		fmt.Fprintln(w, "\nDecisions:")
	}
	for _, d := range r.Decisions {
		printDecision(w, d)
	}
}

func (a *app) rolloutsListCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "list DEPLOYMENT",
		Short: "List a deployment's rollouts, newest first",
		Args:  exactArgs(1, "a deployment name"),
		RunE: a.runWithClient(func(cmd *cobra.Command, args []string, c *client.Client) error {
			rs, err := c.ListRollouts(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.jsonOutput() {
				return a.printJSON(rs)
			}
			if len(rs) == 0 {
				fmt.Fprintf(a.stdout, "No rollouts of %s yet: 'slipway rollouts start' starts one.\n", args[0])
				return nil
			}
			tw := newTable(a.stdout)
			row(tw, "ID", "VERSION", "FROM", "STATE", "STEP", "STARTED", "REASON")
			for _, r := range rs {
				step := fmt.Sprintf("%d/%d", min(r.Step+1, len(r.Steps)), len(r.Steps))
				row(tw, r.ID, r.Version, r.From, r.State, step, r.CreatedAt.Local().Format("2006-01-02 15:04:05"), orDash(clip(r.Reason, 80)))
			}
			return tw.Flush()
		}),
	}
}

func clip(s string, n int) string {
	if len([]rune(s)) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}

func (a *app) rolloutsCancelCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "cancel DEPLOYMENT ID",
		Short: "Cancel a running rollout: its canary or shadow is removed, the deployment keeps its version",
		Args:  exactArgs(2, "a deployment name and a rollout id"),
		RunE: a.runWithClient(func(cmd *cobra.Command, args []string, c *client.Client) error {
			r, err := c.CancelRollout(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			if a.jsonOutput() {
				return a.printJSON(r)
			}
			fmt.Fprintf(a.stdout, "Rollout %s is %s: %s\n", r.ID, r.State, r.Reason)
			return nil
		}),
	}
}
