package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/client"
)

func (a *app) schedulesCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "schedules",
		Short: "Start jobs and pipelines on a cron schedule",
		Long: `  slipway schedules create nightly --cron "0 3 * * *" --timezone Europe/Paris --pipeline retrain
  slipway schedules list
  slipway schedules get nightly    # recent ticks: started, skipped (policy forbid), replaced...`,
	}
	cmd.AddCommand(a.schedulesCreateCommand(), a.schedulesListCommand(), a.schedulesGetCommand(), a.schedulesDeleteCommand())
	return cmd
}

func (a *app) schedulesCreateCommand() *cobra.Command {
	var spec slipway.ScheduleSpec
	var job, pipeline string
	var params, env []string
	var noCatchUp bool
	cmd := &cobra.Command{
		Use:   "create NAME --cron EXPR (--job JOB | --pipeline PIPELINE)",
		Short: "Create a schedule",
		Args:  exactArgs(1, "a schedule name"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			spec.Name = args[0]
			switch {
			case job != "" && pipeline == "":
				spec.Target.Kind, spec.Target.Name = slipway.TargetJob, job
			case pipeline != "" && job == "":
				spec.Target.Kind, spec.Target.Name = slipway.TargetPipeline, pipeline
			default:
				return errNoTarget
			}
			var err error
			if spec.Params, err = parseParams(params); err != nil {
				return err
			}
			if len(spec.Params) == 0 {
				spec.Params = nil
			}
			if spec.Env, err = parseEnv(env); err != nil {
				return err
			}
			if len(spec.Env) == 0 {
				spec.Env = nil
			}
			if noCatchUp {
				f := false
				spec.CatchUp = &f
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			s, err := c.CreateSchedule(cmd.Context(), spec)
			if err != nil {
				return err
			}
			if a.jsonOutput() {
				return a.printJSON(s)
			}
			fmt.Fprintf(a.stdout, "Created schedule %s: %s %s (%s, policy %s), next tick %s\n", s.Name, s.Target.Kind, s.Target.Name,
				s.Cron, s.ConcurrencyPolicy, formatTimePtr(s.NextTickAt))
			return nil
		}),
	}
	f := cmd.Flags()
	f.StringVar(&spec.Cron, "cron", "", `cron expression: "0 3 * * *", 6 fields with seconds first, or @hourly/@daily/@every 1h`)
	f.StringVar(&spec.Timezone, "timezone", "", "IANA time zone of the cron expression (default UTC)")
	f.StringVar(&job, "job", "", "job to run")
	f.StringVar(&pipeline, "pipeline", "", "pipeline to run")
	f.StringArrayVar(&params, "param", nil, "pipeline parameter NAME=VALUE (repeat the flag for more)")
	f.StringArrayVar(&spec.Args, "arg", nil, "job argument (repeat the flag for more)")
	f.StringArrayVar(&env, "env", nil, "job environment variable KEY=VALUE")
	f.StringVar(&spec.ConcurrencyPolicy, "policy", "forbid", "while the previous run is going: allow, forbid (skip the tick) or replace")
	f.BoolVar(&noCatchUp, "no-catch-up", false, "do not start a catch-up run for ticks missed while the server was down")
	requireFlags(cmd, "cron")
	return cmd
}

func (a *app) schedulesListCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List schedules",
		Args:  exactArgs(0, "no arguments"),
		RunE: a.runWithClient(func(cmd *cobra.Command, args []string, c *client.Client) error {
			list, err := c.ListSchedules(cmd.Context())
			return showTable(a, list, err, []any{"NAME", "CRON", "TIMEZONE", "TARGET", "POLICY", "LAST TICK", "NEXT TICK", "LAST RUN"}, func(s *slipway.Schedule) []any {
				return []any{s.Name, s.Cron, s.Timezone, s.Target.Kind + " " + s.Target.Name, s.ConcurrencyPolicy, formatTimePtr(s.LastTickAt), formatTimePtr(s.NextTickAt), s.LastRunID}
			})
		}),
	}
}

func (a *app) schedulesGetCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "get NAME",
		Short: "Show a schedule and its recent ticks",
		Args:  exactArgs(1, "a schedule name"),
		RunE: a.runWithClient(func(cmd *cobra.Command, args []string, c *client.Client) error {
			s, err := c.GetSchedule(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.jsonOutput() {
				return a.printJSON(s)
			}
			fmt.Fprintf(a.stdout, "Schedule %s: %s %s on %q (%s), policy %s, catch-up %s, next tick %s\n\n", s.Name, s.Target.Kind, s.Target.Name,
				s.Cron, s.Timezone, s.ConcurrencyPolicy, yesNo(s.CatchUp == nil || *s.CatchUp), formatTimePtr(s.NextTickAt))
			tw := newTable(a.stdout)
			row(tw, "TICK", "ACTION", "RUN", "REASON")
			for _, t := range s.Ticks {
				row(tw, t.At.Local().Format("2006-01-02 15:04:05"), t.Action, t.RunID, t.Reason)
			}
			return tw.Flush()
		}),
	}
}

func (a *app) schedulesDeleteCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a schedule (runs it started carry on)",
		Args:  exactArgs(1, "a schedule name"),
		RunE: a.runWithClient(func(cmd *cobra.Command, args []string, c *client.Client) error {
			if err := c.DeleteSchedule(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "Deleted schedule %s\n", args[0])
			return nil
		}),
	}
}
