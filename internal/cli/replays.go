package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/client"
)

func (a *app) replaysCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "replays",
		Short: "Replays: captured requests sent to a candidate version offline, compared with the live answers",
	}
	cmd.AddCommand(a.replaysStartCommand(), a.replaysGetCommand(), a.replaysListCommand(), a.replaysCancelCommand())
	return cmd
}

func (a *app) replaysStartCommand() *cobra.Command {
	var (
		sp          slipway.ReplaySpec
		from, to    string
		wait        bool
		waitTimeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "start DEPLOYMENT --version N [--from 1h] [--to 0s] [--limit 10000] [--wait]",
		Short: "Replay a window of captured requests to a candidate version, offline",
		Long: `Send the requests a deployment captured between --from and --to (durations ago or RFC 3339 times;
default: the last hour) to --version, on replicas the replay starts for itself and stops when it ends.
Live traffic and the deployment's replicas are not touched. The candidate's answers are compared with the
captured live answers, with the shadow comparison's figures: agreement of the predicted class, mean and max
absolute difference of the numeric outputs, errors, p99 latencies, agreement by feature slice.

--wait follows the replay with a progress bar and prints its report; it exits 0 when the replay SUCCEEDED.`,
		Example: "  slipway replays start churn-api --version 2 --from 24h --limit 5000 --wait",
		Args:    exactArgs(1, "a deployment name"),
		RunE: a.runWithClient(func(cmd *cobra.Command, args []string, c *client.Client) error {
			if sp.Version <= 0 {
				return fmt.Errorf("--version is required: the candidate's version number")
			}
			now := time.Now()
			tr, err := timeRange("--from", from, "--to", to, now)
			if err != nil {
				return err
			}
			sp.From, sp.To = tr.From, tr.To
			if sp.To.IsZero() {
				sp.To = now
			}
			r, err := c.StartReplay(cmd.Context(), args[0], sp)
			if err != nil {
				return err
			}
			if !wait {
				if a.jsonOutput() {
					return a.printJSON(r)
				}
				fmt.Fprintf(a.stdout, "Replay %s of %d captured requests to version %d on %s is %s.\n", r.ID, r.Total, r.Spec.Version, r.Deployment, r.State)
				fmt.Fprintf(a.stderr, "Not waiting: 'slipway replays get %s %s' shows its progress and report.\n", r.Deployment, r.ID)
				return nil
			}
			return a.followReplay(cmd.Context(), c, r, waitTimeout)
		}),
	}
	fs := cmd.Flags()
	fs.IntVar(&sp.Version, "version", 0, "the candidate version of the deployment's model (required)")
	fs.StringVar(&from, "from", "1h", "replay the captures from this long ago (a duration or an RFC 3339 time)")
	fs.StringVar(&to, "to", "", "replay the captures up to this long ago (default: now)")
	fs.IntVar(&sp.Limit, "limit", 0, fmt.Sprintf("send at most this many captured requests, oldest first (default %d, at most %d)", slipway.DefaultReplayLimit, slipway.MaxReplayLimit))
	fs.IntVar(&sp.LiveVersion, "live-version", 0, "replay only the captures this version answered (default: all)")
	fs.IntVar(&sp.Replicas, "replicas", 0, "replicas of the candidate the replay starts (default 1)")
	fs.BoolVar(&wait, "wait", false, "follow the replay with a progress bar and print its report")
	fs.DurationVar(&waitTimeout, "wait-timeout", 24*time.Hour, "stop following after this long (the replay carries on)")
	return cmd
}

// followReplay shows the replay's progress until it ends, then its report: nil when SUCCEEDED.
func (a *app) followReplay(ctx context.Context, c *client.Client, r *client.Replay, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	bar := a.newBar(r.Total, progressbar.OptionSetDescription("replaying"), progressbar.OptionShowCount())
	last, err := c.WaitReplay(ctx, r.Deployment, r.ID, func(cur *client.Replay) {
		bar.changeMax(max(cur.Total, 1))
		bar.set(cur.Sent, cur.Total)
	}, 500*time.Millisecond)
	bar.finish()
	if err != nil {
		if last != nil && ctx.Err() != nil {
			return fmt.Errorf("replay %s is still %s after %s (%d of %d sent): it carries on on the server; 'slipway replays get %s %s' shows it",
				r.ID, last.State, timeout, last.Sent, last.Total, r.Deployment, r.ID)
		}
		return err
	}
	if a.jsonOutput() {
		if err := a.printJSON(last); err != nil {
			return err
		}
	} else {
		printReplay(a.stdout, last)
	}
	if last.State != slipway.ReplaySucceeded {
		return fmt.Errorf("replay %s %s: %s", last.ID, last.State, orDash(last.Reason))
	}
	return nil
}

func printReplay(w io.Writer, r *client.Replay) {
	tw := newTable(w)
	row(tw, "Replay:", r.ID)
	row(tw, "Deployment:", r.Deployment)
	row(tw, "Version:", r.Spec.Version)
	row(tw, "Window:", fmt.Sprintf("%s to %s (at most %d requests)", r.Spec.From.Local().Format(time.RFC3339), r.Spec.To.Local().Format(time.RFC3339), r.Spec.Limit))
	row(tw, "State:", r.State)
	row(tw, "Progress:", fmt.Sprintf("%d of %d requests", r.Sent, r.Total))
	if r.Reason != "" {
		row(tw, "Reason:", r.Reason)
	}
	row(tw, "Started:", fmt.Sprintf("%s by %s", r.CreatedAt.Local().Format(time.RFC3339), orDash(r.CreatedBy)))
	tw.Flush()
	if rep := r.Report; rep != nil && rep.Requests > 0 {
		fmt.Fprintf(w, "\nVersion %d against the captured answers of version %d\n", rep.Version, rep.LiveVersion)
		printComparison(w, rep)
	}
}

func (a *app) replaysGetCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "get DEPLOYMENT ID",
		Short:   "Show a replay: its progress and its report",
		Example: "  slipway replays get churn-api 3f2a9c1d0b7e4a55",
		Args:    exactArgs(2, "a deployment name and a replay id"),
		RunE: a.runWithClient(func(cmd *cobra.Command, args []string, c *client.Client) error {
			r, err := c.GetReplay(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			if a.jsonOutput() {
				return a.printJSON(r)
			}
			printReplay(a.stdout, r)
			return nil
		}),
	}
}

func (a *app) replaysListCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "list DEPLOYMENT",
		Short: "List a deployment's replays, newest first",
		Args:  exactArgs(1, "a deployment name"),
		RunE: a.runWithClient(func(cmd *cobra.Command, args []string, c *client.Client) error {
			rs, err := c.ListReplays(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.jsonOutput() {
				return a.printJSON(rs)
			}
			if len(rs) == 0 {
				fmt.Fprintf(a.stdout, "No replays of %s yet: 'slipway replays start' starts one.\n", args[0])
				return nil
			}
			tw := newTable(a.stdout)
			row(tw, "ID", "VERSION", "STATE", "SENT", "AGREEMENT", "STARTED", "REASON")
			for _, r := range rs {
				agree := "-"
				if r.Report != nil {
					agree = fmtPercent(r.Report.Agreement)
				}
				row(tw, r.ID, r.Spec.Version, r.State, fmt.Sprintf("%d/%d", r.Sent, r.Total), agree,
					r.CreatedAt.Local().Format("2006-01-02 15:04:05"), orDash(clip(r.Reason, 80)))
			}
			return tw.Flush()
		}),
	}
}

func (a *app) replaysCancelCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "cancel DEPLOYMENT ID",
		Short: "Cancel a running replay: its replicas stop",
		Args:  exactArgs(2, "a deployment name and a replay id"),
		RunE: a.runWithClient(func(cmd *cobra.Command, args []string, c *client.Client) error {
			r, err := c.CancelReplay(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			if a.jsonOutput() {
				return a.printJSON(r)
			}
			fmt.Fprintf(a.stdout, "Replay %s is %s: %s\n", r.ID, r.State, r.Reason)
			return nil
		}),
	}
}
