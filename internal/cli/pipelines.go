package cli

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/client"
)

func (a *app) pipelinesCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pipelines",
		Short: "Create and run pipelines: DAGs of jobs, scripts and built-in steps (register, evaluate, deploy)",
		Long: `A pipeline is a YAML or JSON file of steps with depends_on, retries, timeouts, caching and params.

  slipway pipelines create examples/retrain/pipeline.yaml --artifact examples
  slipway pipelines run retrain --param features=minimal --wait
  slipway pipelines get pr-...            # the run as a DAG: state, attempts, outputs per step
  slipway pipelines retry pr-...          # resume a failed run from its failed steps`,
	}
	cmd.AddCommand(a.pipelinesCreateCommand(), a.pipelinesRunCommand(), a.pipelinesListCommand(), a.pipelinesRunsCommand(),
		a.pipelinesGetCommand(), a.pipelinesCancelCommand(), a.pipelinesRetryCommand(), a.pipelinesDeleteCommand())
	return cmd
}

func (a *app) pipelinesCreateCommand() *cobra.Command {
	var artifactPath string
	cmd := &cobra.Command{
		Use:   "create FILE",
		Short: "Create a pipeline from a YAML or JSON definition",
		Args:  exactArgs(1, "a pipeline definition file"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			def, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			var p *slipway.Pipeline
			if artifactPath != "" {
				art, err := openArtifact(cmd.Context(), artifactPath)
				if err != nil {
					return err
				}
				defer art.Close()
				p, err = c.CreatePipeline(cmd.Context(), def, art, art.name)
				if err != nil {
					return err
				}
			} else if p, err = c.CreatePipeline(cmd.Context(), def, nil, ""); err != nil {
				return err
			}
			if a.jsonOutput() {
				return a.printJSON(p)
			}
			fmt.Fprintf(a.stdout, "Created pipeline %s (%d steps)\n", p.Name, len(p.Spec.Steps))
			return nil
		}),
	}
	cmd.Flags().StringVar(&artifactPath, "artifact", "", "project folder (or archive) the script steps run in")
	return cmd
}

// parseParams reads KEY=VALUE pairs; numbers and booleans keep their type.
func parseParams(pairs []string) (map[string]any, error) {
	out := map[string]any{}
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("invalid --param %q: use NAME=VALUE", p)
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("--param %s is given twice", k)
		}
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			out[k] = f
		} else if b, err := strconv.ParseBool(v); err == nil && (v == "true" || v == "false") {
			out[k] = b
		} else {
			out[k] = v
		}
	}
	return out, nil
}

func (a *app) pipelinesRunCommand() *cobra.Command {
	var params []string
	var wait bool
	cmd := &cobra.Command{
		Use:   "run PIPELINE",
		Short: "Start a pipeline run",
		Args:  exactArgs(1, "a pipeline name"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			ps, err := parseParams(params)
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			r, err := c.RunPipeline(cmd.Context(), args[0], ps)
			if err != nil {
				return err
			}
			if wait {
				if r, err = c.WaitPipelineRun(cmd.Context(), r.ID, a.poll); err != nil {
					return err
				}
			}
			if a.jsonOutput() {
				if err := a.printJSON(r); err != nil {
					return err
				}
			} else if wait {
				a.printPipelineRun(r)
			} else {
				fmt.Fprintf(a.stdout, "Started pipeline run %s of %s\n", r.ID, r.Pipeline)
			}
			if wait && r.State != slipway.RunSucceeded {
				return fmt.Errorf("pipeline run %s %s%s", r.ID, r.State, reasonSuffix(r.Reason))
			}
			return nil
		}),
	}
	cmd.Flags().StringArrayVar(&params, "param", nil, "parameter NAME=VALUE (repeat the flag for more)")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the run is over and show its steps; exit 1 unless it SUCCEEDED")
	return cmd
}

func (a *app) printPipelineRun(r *slipway.PipelineRun) {
	fmt.Fprintf(a.stdout, "Pipeline run %s of %s: %s%s\n", r.ID, r.Pipeline, r.State, reasonSuffix(r.Reason))
	fmt.Fprintf(a.stdout, "Params: %s\n\n", formatMap(r.Params))
	tw := newTable(a.stdout)
	row(tw, "STEP", "KIND", "DEPENDS ON", "STATE", "ATTEMPTS", "DURATION", "JOB RUN", "OUTPUTS / REASON")
	for _, st := range r.Steps {
		info := formatMap(st.Outputs)
		if st.State != slipway.StepSucceeded || st.Cached {
			info = st.Reason
		}
		name := st.Name
		if st.OnExit {
			name += " (on_exit)"
		}
		row(tw, name, st.Kind, strings.Join(st.DependsOn, ","), st.State, st.Attempts, runDuration(st.StartedAt, st.FinishedAt), st.JobRun, truncateText(info, 100))
	}
	tw.Flush()
}

func (a *app) pipelinesListCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List pipelines",
		Args:  exactArgs(0, "no arguments"),
		RunE: a.runWithClient(func(cmd *cobra.Command, args []string, c *client.Client) error {
			list, err := c.ListPipelines(cmd.Context())
			return showTable(a, list, err, []any{"NAME", "STEPS", "PARAMS", "CREATED"}, func(p *slipway.Pipeline) []any {
				names := make([]string, len(p.Spec.Steps))
				for i, s := range p.Spec.Steps {
					names[i] = s.Name
				}
				return []any{p.Name, strings.Join(names, ","), formatMap(p.Spec.Params), formatTime(p.CreatedAt)}
			})
		}),
	}
}

func (a *app) pipelinesRunsCommand() *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:   "runs [PIPELINE]",
		Short: "List pipeline runs, newest first",
		Args:  cobra.MaximumNArgs(1),
		RunE: a.runWithClient(func(cmd *cobra.Command, args []string, c *client.Client) error {
			name := ""
			if len(args) == 1 {
				name = args[0]
			}
			runs, _, err := c.ListPipelineRuns(cmd.Context(), name, 0, limit)
			return showTable(a, runs, err, []any{"ID", "PIPELINE", "STATE", "TRIGGER", "STARTED", "DURATION", "REASON"},
				func(r *slipway.PipelineRun) []any {
					return []any{r.ID, r.Pipeline, r.State, r.Trigger, formatTimePtr(r.StartedAt), runDuration(r.StartedAt, r.FinishedAt), truncateText(r.Reason, 80)}
				})
		}),
	}
	cmd.Flags().IntVar(&limit, "limit", 20, "how many runs to show")
	return cmd
}

func (a *app) pipelinesGetCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "get PIPELINE|RUN_ID",
		Short: "Show a pipeline, or a run with the state of every step",
		Args:  exactArgs(1, "a pipeline name or a run id (pr-...)"),
		RunE: a.runWithClient(func(cmd *cobra.Command, args []string, c *client.Client) error {
			if strings.HasPrefix(args[0], "pr-") {
				r, err := c.GetPipelineRun(cmd.Context(), args[0])
				return show(a, r, err, a.printPipelineRun)
			}
			p, err := c.GetPipeline(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.jsonOutput() {
				return a.printJSON(p)
			}
			fmt.Fprintf(a.stdout, "Pipeline %s (created %s by %s)\nParams: %s\n\n", p.Name, formatTime(p.CreatedAt), p.CreatedBy, formatMap(p.Spec.Params))
			tw := newTable(a.stdout)
			row(tw, "STEP", "KIND", "DEPENDS ON", "RETRIES", "TIMEOUT", "CACHE")
			steps := p.Spec.Steps
			if p.Spec.OnExit != nil {
				steps = append(steps, *p.Spec.OnExit)
			}
			for _, s := range steps {
				kind := "script"
				switch {
				case s.Job != "":
					kind = "job " + s.Job
				case s.Builtin != "":
					kind = "builtin " + s.Builtin
				}
				row(tw, s.Name, kind, strings.Join(s.DependsOn, ","), s.Retries, s.TimeoutSeconds, yesNo(s.Cache))
			}
			return tw.Flush()
		}),
	}
}

func (a *app) pipelinesCancelCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "cancel RUN_ID",
		Short: "Cancel a pipeline run (its on_exit step still runs)",
		Args:  exactArgs(1, "a run id"),
		RunE: a.runWithClient(func(cmd *cobra.Command, args []string, c *client.Client) error {
			r, err := c.CancelPipelineRun(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.jsonOutput() {
				return a.printJSON(r)
			}
			fmt.Fprintf(a.stdout, "Cancel requested for pipeline run %s\n", r.ID)
			return nil
		}),
	}
}

func (a *app) pipelinesRetryCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "retry RUN_ID",
		Short: "Resume a FAILED or CANCELED run from its failed steps",
		Args:  exactArgs(1, "a run id"),
		RunE: a.runWithClient(func(cmd *cobra.Command, args []string, c *client.Client) error {
			r, err := c.RetryPipelineRun(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.jsonOutput() {
				return a.printJSON(r)
			}
			fmt.Fprintf(a.stdout, "Resumed pipeline run %s\n", r.ID)
			return nil
		}),
	}
}

func (a *app) pipelinesDeleteCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "delete PIPELINE",
		Short: "Delete a pipeline (its runs' records stay)",
		Args:  exactArgs(1, "a pipeline name"),
		RunE: a.runWithClient(func(cmd *cobra.Command, args []string, c *client.Client) error {
			if err := c.DeletePipeline(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "Deleted pipeline %s\n", args[0])
			return nil
		}),
	}
}
