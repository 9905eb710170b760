package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/client"
	"github.com/slipway-ml/slipway/internal/executor"
)

// execLimitedCommand is the shim the server's local executor puts in front of job processes: set resource
// limits, then exec the program (same PID). Hidden: the server runs it, people do not.
func (a *app) execLimitedCommand() *cobra.Command {
	return &cobra.Command{
		Use:                "exec-limited [--cpu=S] [--as=BYTES] [--nofile=N] [--nproc=N] -- PROGRAM [ARGS...]",
		Short:              "Run a program with resource limits (used by the server for job runs)",
		Hidden:             true,
		DisableFlagParsing: true,
		RunE: run(func(cmd *cobra.Command, args []string) error {
			return executor.ExecLimited(args) // returns only on failure
		}),
	}
}

// execSuperviseCommand leads a job run's process group so that the run outlives the server: it spools the
// program's output and records its exit (internal/executor/supervise.go). Hidden: the server runs it.
func (a *app) execSuperviseCommand() *cobra.Command {
	return &cobra.Command{
		Use:                "exec-supervise --spool=FILE --exit=FILE -- PROGRAM [ARGS...]",
		Short:              "Run a job's program, spooling its output and recording its exit (used by the server)",
		Hidden:             true,
		DisableFlagParsing: true,
		RunE: run(func(cmd *cobra.Command, args []string) error {
			return executor.Supervise(args)
		}),
	}
}

func (a *app) jobsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "jobs",
		Short: "Create and run jobs: a script or project run as a process with limits, logs and outputs",
		Long: `A job is a .py, .sh or .jar file, or a project folder with an entrypoint (Python, shell, a .jar or a Java
main class). Each run gets its own working folder, SLIPWAY_URL, SLIPWAY_TOKEN, SLIPWAY_RUN_ID and
SLIPWAY_OUTPUT_DIR (files written there are kept; outputs.json holds small values for pipelines).

  slipway jobs create train examples/retrain --entrypoint train.py --arg --out --arg out
  slipway jobs run train --follow
  slipway jobs logs jr-... --follow`,
	}
	cmd.AddCommand(a.jobsCreateCommand(), a.jobsRunCommand(), a.jobsListCommand(), a.jobsRunsCommand(), a.jobsGetCommand(),
		a.jobsLogsCommand(), a.jobsCancelCommand(), a.jobsOutputsCommand(), a.jobsDeleteCommand())
	return cmd
}

func (a *app) jobsCreateCommand() *cobra.Command {
	var spec slipway.JobSpec
	var env []string
	var maxRuntime time.Duration
	var memory string
	var resources resourceFlags
	cmd := &cobra.Command{
		Use:   "create NAME PATH",
		Short: "Create a job from a file or a project folder",
		Args:  exactArgs(2, "a job name and a file or folder"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			spec.Name = args[0]
			var err error
			if spec.Env, err = parseEnv(env); err != nil {
				return err
			}
			if maxRuntime > 0 {
				spec.MaxRuntimeSeconds = int(maxRuntime.Round(time.Second) / time.Second)
			}
			if memory != "" {
				if spec.Limits.MemoryBytes, err = slipway.ParseBytes(memory); err != nil {
					return err
				}
			}
			spec.Resources = resources.resources(cmd, nil)
			c, err := a.client()
			if err != nil {
				return err
			}
			art, err := openArtifact(cmd.Context(), args[1])
			if err != nil {
				return err
			}
			defer art.Close()
			j, err := c.CreateJob(cmd.Context(), spec, art, art.name)
			if err != nil {
				return err
			}
			if a.jsonOutput() {
				return a.printJSON(j)
			}
			fmt.Fprintf(a.stdout, "Created job %s: %s %s (%d files)\n", j.Name, j.Kind, j.Entrypoint, len(j.Files))
			return nil
		}),
	}
	f := cmd.Flags()
	f.StringVar(&spec.Entrypoint, "entrypoint", "", "file to run (.py, .sh, .jar) or Java main class; optional for a single file")
	f.StringArrayVar(&spec.Args, "arg", nil, "default argument (repeat the flag for more)")
	f.StringArrayVar(&env, "env", nil, "environment variable KEY=VALUE (repeat the flag for more)")
	f.DurationVar(&maxRuntime, "max-runtime", 0, "stop and fail runs after this long (default 24h)")
	f.Int64Var(&spec.Limits.CPUSeconds, "cpu-seconds", 0, "CPU time limit in seconds")
	f.StringVar(&memory, "memory", "", "address-space limit, e.g. 2GiB or 512MiB")
	f.Int64Var(&spec.Limits.OpenFiles, "open-files", 0, "open files limit")
	f.Int64Var(&spec.Limits.Processes, "processes", 0, "processes limit (per user; not enforced for root)")
	f.StringVar(&spec.Description, "description", "", "what the job does")
	resources.register(cmd, "run")
	return cmd
}

func (a *app) jobsRunCommand() *cobra.Command {
	var in client.RunInput
	var env []string
	var wait, follow bool
	cmd := &cobra.Command{
		Use:   "run JOB [-- ARGS...]",
		Short: "Start a run of a job (arguments after -- replace the job's)",
		Args:  cobra.MinimumNArgs(1),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				in.Args = args[1:]
			}
			var err error
			if in.Env, err = parseEnv(env); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			r, err := c.RunJob(cmd.Context(), args[0], in)
			if err != nil {
				return err
			}
			if !wait && !follow {
				if a.jsonOutput() {
					return a.printJSON(r)
				}
				fmt.Fprintf(a.stdout, "Started run %s of job %s (%s)\n", r.ID, r.Job, r.State)
				return nil
			}
			if !a.jsonOutput() {
				fmt.Fprintf(a.stderr, "Run %s of job %s\n", r.ID, r.Job)
			}
			return a.finishRun(cmd.Context(), c, r.ID, follow)
		}),
	}
	f := cmd.Flags()
	f.StringArrayVar(&env, "env", nil, "environment variable KEY=VALUE added to the job's (repeat the flag for more)")
	f.BoolVar(&wait, "wait", false, "wait until the run is over; exit 1 unless it SUCCEEDED")
	f.BoolVar(&follow, "follow", false, "print the log as it grows until the run is over (implies --wait)")
	return cmd
}

// finishRun waits for (or follows) a run and turns its end into the exit status.
func (a *app) finishRun(ctx context.Context, c *client.Client, id string, follow bool) error {
	var r *slipway.JobRun
	var err error
	if follow {
		r, err = c.FollowJobRunLogs(ctx, id, a.stdout)
	} else {
		r, err = c.WaitJobRun(ctx, id, a.poll)
	}
	if err != nil {
		return err
	}
	if a.jsonOutput() {
		if err := a.printJSON(r); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(a.stderr, "Run %s %s%s\n", r.ID, r.State, reasonSuffix(r.Reason))
	}
	if r.State != slipway.RunSucceeded {
		return fmt.Errorf("run %s %s%s", r.ID, r.State, reasonSuffix(r.Reason))
	}
	return nil
}

func reasonSuffix(reason string) string {
	if reason == "" {
		return ""
	}
	return ": " + reason
}

func (a *app) jobsListCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List jobs",
		Args:  exactArgs(0, "no arguments"),
		RunE: a.runWithClient(func(cmd *cobra.Command, args []string, c *client.Client) error {
			list, err := c.ListJobs(cmd.Context())
			return showTable(a, list, err, []any{"NAME", "KIND", "ENTRYPOINT", "MAX RUNTIME", "CREATED"}, func(j *slipway.Job) []any {
				return []any{j.Name, j.Kind, j.Entrypoint, (time.Duration(j.MaxRuntimeSeconds) * time.Second).String(), formatTime(j.CreatedAt)}
			})
		}),
	}
}

func (a *app) jobsRunsCommand() *cobra.Command {
	var state string
	var limit int
	cmd := &cobra.Command{
		Use:   "runs [JOB]",
		Short: "List job runs, newest first",
		Args:  cobra.MaximumNArgs(1),
		RunE: a.runWithClient(func(cmd *cobra.Command, args []string, c *client.Client) error {
			f := client.JobRunFilter{State: slipway.RunState(strings.ToUpper(state)), Limit: limit}
			if len(args) == 1 {
				f.Job = args[0]
			}
			runs, total, err := c.ListJobRuns(cmd.Context(), f)
			if err != nil {
				return err
			}
			if a.jsonOutput() {
				return a.printJSON(runs)
			}
			a.printRuns(runs)
			if total > len(runs) {
				fmt.Fprintf(a.stdout, "(%d of %d runs: --limit shows more)\n", len(runs), total)
			}
			return nil
		}),
	}
	cmd.Flags().StringVar(&state, "state", "", "only runs in this state (ACCEPTED, IN_PROGRESS, SUCCEEDED, FAILED, CANCELED)")
	cmd.Flags().IntVar(&limit, "limit", 20, "how many runs to show")
	return cmd
}

func (a *app) printRuns(runs []*slipway.JobRun) {
	tw := newTable(a.stdout)
	row(tw, "ID", "JOB", "STATE", "EXIT", "STARTED", "DURATION", "REASON")
	for _, r := range runs {
		job := r.Job
		if r.PipelineRun != "" {
			job = strings.TrimPrefix(job+" ", " ") + "(" + r.PipelineRun + "/" + r.Step + ")"
		}
		exit := ""
		if r.ExitCode != nil {
			exit = strconv.Itoa(*r.ExitCode)
		}
		row(tw, r.ID, job, r.State, exit, formatTimePtr(r.StartedAt), runDuration(r.StartedAt, r.FinishedAt), truncateText(r.Reason, 80))
	}
	tw.Flush()
}

func formatTimePtr(t *time.Time) string {
	if t == nil {
		return ""
	}
	return formatTime(*t)
}

func runDuration(start, end *time.Time) string {
	if start == nil {
		return ""
	}
	stop := time.Now()
	if end != nil {
		stop = *end
	}
	return stop.Sub(*start).Round(100 * time.Millisecond).String()
}

func truncateText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func (a *app) jobsGetCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "get RUN_ID",
		Short: "Show a job run",
		Args:  exactArgs(1, "a run id"),
		RunE: a.runWithClient(func(cmd *cobra.Command, args []string, c *client.Client) error {
			r, err := c.GetJobRun(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.jsonOutput() {
				return a.printJSON(r)
			}
			a.printRuns([]*slipway.JobRun{r})
			if len(r.Outputs) > 0 {
				fmt.Fprintf(a.stdout, "\nOutputs: %s\n", formatMap(r.Outputs))
			}
			return nil
		}),
	}
}

func (a *app) jobsLogsCommand() *cobra.Command {
	var follow bool
	cmd := &cobra.Command{
		Use:   "logs RUN_ID",
		Short: "Print a run's log (timestamped stdout and stderr lines)",
		Args:  exactArgs(1, "a run id"),
		RunE: a.runWithClient(func(cmd *cobra.Command, args []string, c *client.Client) error {
			if follow {
				_, err := c.FollowJobRunLogs(cmd.Context(), args[0], a.stdout)
				return err
			}
			body, err := c.JobRunLogs(cmd.Context(), args[0], 0, false)
			if err != nil {
				return err
			}
			defer body.Close()
			_, err = io.Copy(a.stdout, body)
			return err
		}),
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing until the run is over")
	return cmd
}

func (a *app) jobsCancelCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "cancel RUN_ID",
		Short: "Cancel a run (its whole process tree is stopped)",
		Args:  exactArgs(1, "a run id"),
		RunE: a.runWithClient(func(cmd *cobra.Command, args []string, c *client.Client) error {
			r, err := c.CancelJobRun(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.jsonOutput() {
				return a.printJSON(r)
			}
			fmt.Fprintf(a.stdout, "Run %s %s%s\n", r.ID, r.State, reasonSuffix(r.Reason))
			return nil
		}),
	}
}

func (a *app) jobsOutputsCommand() *cobra.Command {
	var get, out string
	cmd := &cobra.Command{
		Use:   "outputs RUN_ID",
		Short: "List a run's output files, or download one with --get",
		Args:  exactArgs(1, "a run id"),
		RunE: a.runWithClient(func(cmd *cobra.Command, args []string, c *client.Client) error {
			if get != "" {
				body, err := c.DownloadJobRunOutput(cmd.Context(), args[0], get)
				if err != nil {
					return err
				}
				defer body.Close()
				w := a.stdout
				if out != "" && out != "-" {
					f, err := os.Create(out)
					if err != nil {
						return err
					}
					defer f.Close()
					w = f
				}
				_, err = io.Copy(w, body)
				return err
			}
			files, err := c.ListJobRunOutputs(cmd.Context(), args[0])
			return showTable(a, files, err, []any{"PATH", "SIZE", "SHA256"}, func(f client.OutputFile) []any {
				return []any{f.Path, formatBytes(f.Size), f.SHA256[:12]}
			})
		}),
	}
	cmd.Flags().StringVar(&get, "get", "", "download this output file")
	cmd.Flags().StringVar(&out, "out", "", "with --get: write to this file (default stdout)")
	return cmd
}

func (a *app) jobsDeleteCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "delete JOB",
		Short: "Delete a job (its runs' records stay)",
		Args:  exactArgs(1, "a job name"),
		RunE: a.runWithClient(func(cmd *cobra.Command, args []string, c *client.Client) error {
			if err := c.DeleteJob(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "Deleted job %s\n", args[0])
			return nil
		}),
	}
}

var errNoTarget = errors.New("give the target: --job NAME or --pipeline NAME")
