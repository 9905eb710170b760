package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/client"
)

// monitorCommands are the monitoring commands: monitor, metrics, logs, baseline, feedback, alerts.
func (a *app) monitorCommands() []*cobra.Command {
	return []*cobra.Command{a.monitorCommand(), a.metricsCommand(), a.logsCommand(), a.baselineCommand(),
		a.feedbackCommand(), a.alertsCommand()}
}

// sinceFlag parses "10m" or an RFC 3339 time into a time (zero for "").
// timeRange reads a --from/--to pair (durations ago or RFC 3339 times, "" for none) at the same now; errors
// name the flags.
func timeRange(fromFlag, from, toFlag, to string, now time.Time) (client.TimeRange, error) {
	f, err := sinceTime(from, now)
	if err != nil {
		return client.TimeRange{}, fmt.Errorf("%s: %w", fromFlag, err)
	}
	t, err := sinceTime(to, now)
	if err != nil {
		return client.TimeRange{}, fmt.Errorf("%s: %w", toFlag, err)
	}
	return client.TimeRange{From: f, To: t}, nil
}

func sinceTime(v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(v); err == nil {
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("invalid time %q: give a duration ago (10m, 24h) or an RFC 3339 time", v)
}

func fmtFloat(p *float64, prec int) string {
	if p == nil {
		return "-"
	}
	return strconv.FormatFloat(*p, 'f', prec, 64)
}

func (a *app) monitorCommand() *cobra.Command {
	var since, from, to string
	var window time.Duration
	cmd := &cobra.Command{
		Use:   "monitor DEPLOYMENT",
		Short: "Show a deployment's drift per feature and its performance trend",
		Long: `Show drift per feature (the baseline of the served version against the captured inputs) and the model's
quality per window from ground truth, next to the label-free estimate (CBPE) for classifiers with a
probability output.

  slipway monitor churn                  # drift over the last hour, performance per window over 24h
  slipway monitor churn --from 2h --to 1h
  slipway monitor churn --since 7d --window 24h`,
		Args: exactArgs(1, "a deployment name"),
		RunE: a.runWithClient(func(cmd *cobra.Command, args []string, c *client.Client) error {
			now := time.Now()
			tr, err := timeRange("--from", from, "--to", to, now)
			if err != nil {
				return err
			}
			f, t := tr.From, tr.To
			if f.IsZero() {
				f = now.Add(-time.Hour)
			}
			ctx := cmd.Context()
			drift, err := c.Drift(ctx, args[0], client.TimeRange{From: f, To: t})
			if err != nil {
				return err
			}
			start, err := sinceTime(since, now)
			if err != nil {
				return err
			}
			perf, err := c.Performance(ctx, args[0], client.TimeRange{From: start}, window)
			if err != nil {
				return err
			}
			if a.jsonOutput() {
				return a.printJSON(map[string]any{"drift": drift, "performance": perf})
			}
			printDrift(a.stdout, drift)
			fmt.Fprintln(a.stdout)
			printPerformance(a.stdout, perf)
			return nil
		}),
	}
	cmd.Flags().StringVar(&from, "from", "", "drift range start: a duration ago (2h) or an RFC 3339 time (default 1h)")
	cmd.Flags().StringVar(&to, "to", "", "drift range end (default now)")
	cmd.Flags().StringVar(&since, "since", "24h", "performance trend over this long")
	cmd.Flags().DurationVar(&window, "window", 0, "performance window (default: the deployment's drift window)")
	return cmd
}

func printDrift(w io.Writer, d *client.DriftReport) {
	fmt.Fprintf(w, "Drift of %s (model %s version %d) from %s to %s: %d rows, %d of %d features drifted (share %.2f)",
		d.Deployment, d.Model, d.Version, formatTime(d.From), formatTime(d.To), d.Rows, countDrifted(d.Features), len(d.Features), d.DriftShare)
	if d.DatasetDrift {
		fmt.Fprint(w, ": DATASET DRIFT")
	}
	fmt.Fprintln(w)
	if d.Baseline == "first_window" && d.BaselineFrom != nil && d.BaselineTo != nil {
		fmt.Fprintf(w, "The version has no baseline: compared with its first window of traffic, %s to %s (push with --baseline to compare with the training data)\n",
			formatTime(*d.BaselineFrom), formatTime(*d.BaselineTo))
	}
	tw := newTable(w)
	row(tw, "FEATURE", "KIND", "METHOD", "STATISTIC", "P-VALUE", "THRESHOLD", "PSI", "ROWS", "DRIFTED")
	for _, group := range [][]client.FeatureDrift{d.Features, d.Outputs} {
		for _, f := range group {
			drifted := yesNo(f.Drifted)
			if f.Note != "" {
				drifted += " (" + f.Note + ")"
			}
			row(tw, f.Feature, f.Kind, f.Method, fmtFloat(f.Statistic, 4), fmtFloat(f.PValue, 4), f.Threshold, fmtFloat(f.PSI, 4), f.Rows, drifted)
		}
	}
	tw.Flush()
}

func countDrifted(fs []client.FeatureDrift) int {
	n := 0
	for _, f := range fs {
		if f.Drifted {
			n++
		}
	}
	return n
}

func printPerformance(w io.Writer, ps []client.Performance) {
	if len(ps) == 0 {
		fmt.Fprintln(w, "Performance: no ground truth yet (send it with `slipway feedback` or POST .../feedback), and no predicted probabilities to estimate from.")
		return
	}
	tw := newTable(w)
	if ps[0].Task == "regression" {
		fmt.Fprintln(w, "Performance from ground truth:")
		row(tw, "WINDOW", "LABELLED", "MAE", "RMSE", "R2")
		for _, p := range ps {
			if r := p.Regression; r != nil {
				row(tw, formatTime(p.From), p.Labelled, fmt.Sprintf("%.4f", r.MAE), fmt.Sprintf("%.4f", r.RMSE), fmt.Sprintf("%.4f", r.R2))
			}
		}
		tw.Flush()
		return
	}
	fmt.Fprintln(w, "Performance: realized from ground truth / estimated without labels (CBPE; see docs/monitoring.md):")
	row(tw, "WINDOW", "LABELLED", "ESTIMATED ROWS", "ACCURACY", "PRECISION", "RECALL", "F1", "ROC AUC", "LOG LOSS")
	for _, p := range ps {
		var real, est [5]*float64 // accuracy, precision, recall, F1, ROC AUC
		estRows, logLoss := "-", "-"
		if c := p.Classification; c != nil {
			real = [5]*float64{&c.Accuracy, &c.Precision, &c.Recall, &c.F1, c.ROCAUC}
			logLoss = fmtFloat(c.LogLoss, 4)
		}
		if e := p.Estimated; e != nil {
			est = [5]*float64{&e.Accuracy, &e.Precision, &e.Recall, &e.F1, e.ROCAUC}
			estRows = fmt.Sprint(e.Rows)
		}
		cells := []any{formatTime(p.From), p.Labelled, estRows}
		for i := range real {
			cells = append(cells, fmtFloat(real[i], 4)+" / "+fmtFloat(est[i], 4))
		}
		row(tw, append(cells, logLoss)...)
	}
	tw.Flush()
}

func (a *app) metricsCommand() *cobra.Command {
	var since string
	var minutes bool
	cmd := &cobra.Command{
		Use:   "metrics DEPLOYMENT",
		Short: "Show a deployment's operational figures",
		Long: `Show requests, errors, latency, bandwidth, queue, batching and replica CPU and memory of a deployment,
summed over --since (default 1h), with the minute in progress; --minutes lists every minute.`,
		Args: exactArgs(1, "a deployment name"),
		RunE: a.runWithClient(func(cmd *cobra.Command, args []string, c *client.Client) error {
			from, err := sinceTime(since, time.Now())
			if err != nil {
				return err
			}
			m, err := c.Metrics(cmd.Context(), args[0], client.TimeRange{From: from})
			if err != nil {
				return err
			}
			if a.jsonOutput() {
				return a.printJSON(m)
			}
			printMetrics(a.stdout, m, since, minutes)
			return nil
		}),
	}
	cmd.Flags().StringVar(&since, "since", "1h", "sum over this long (a duration or an RFC 3339 time)")
	cmd.Flags().BoolVar(&minutes, "minutes", false, "list every minute")
	return cmd
}

func printMetrics(w io.Writer, m *client.Metrics, since string, minutes bool) {
	pts := m.Points
	if m.Current != nil {
		pts = append(pts, *m.Current)
	}
	var t client.MetricPoint
	var latSum float64
	var cpu float64
	var mem int64
	for _, p := range pts {
		t.AddCounts(&p)
		t.LatencyP99MS = max(t.LatencyP99MS, p.LatencyP99MS)
		latSum += p.LatencyMeanMS * float64(p.Requests)
		if p.Replicas > 0 {
			cpu, mem = p.CPUUtilization, p.MemoryBytes
		}
	}
	fmt.Fprintf(w, "Deployment %s, last %s (%d minutes with data)\n", m.Deployment, since, len(pts))
	tw := newTable(w)
	errRate := 0.0
	if t.Requests > 0 {
		errRate = float64(t.Status5xx) / float64(t.Requests)
		row(tw, "requests", fmt.Sprintf("%d (2xx %d, 4xx %d, 5xx %d)", t.Requests, t.Status2xx, t.Status4xx, t.Status5xx))
		row(tw, "error rate (5xx)", fmt.Sprintf("%.2f%%", 100*errRate))
		row(tw, "latency", fmt.Sprintf("mean %.2f ms, worst minute p99 %.2f ms, max %.2f ms", latSum/float64(t.Requests), t.LatencyP99MS, t.LatencyMaxMS))
	} else {
		row(tw, "requests", "0")
	}
	row(tw, "rejected (429) / timeouts (504)", fmt.Sprintf("%d / %d", t.Rejected, t.Timeouts))
	row(tw, "bandwidth", fmt.Sprintf("in %s, out %s", formatBytes(t.BytesIn), formatBytes(t.BytesOut)))
	row(tw, "queue (max)", t.QueueMax)
	if t.Batches > 0 {
		row(tw, "batches", fmt.Sprintf("%d, %.1f rows each", t.Batches, float64(t.BatchRows)/float64(t.Batches)))
	}
	row(tw, "replica restarts", t.Restarts)
	row(tw, "CPU / memory (last minute)", fmt.Sprintf("%.0f%% of a core, %s", 100*cpu, formatBytes(mem)))
	row(tw, "captured / dropped", fmt.Sprintf("%d / %d", t.Captured, t.CaptureDropped))
	tw.Flush()
	if len(m.Replicas) > 0 {
		fmt.Fprintln(w)
		tw = newTable(w)
		row(tw, "REPLICA", "VERSION", "STATE", "PID", "RESTARTS", "IN FLIGHT")
		for _, r := range m.Replicas {
			row(tw, r.ID, r.Version, r.State, r.PID, r.Restarts, r.InFlight)
		}
		tw.Flush()
	}
	if minutes {
		fmt.Fprintln(w)
		tw = newTable(w)
		row(tw, "MINUTE", "REQUESTS", "5XX", "429", "P50 MS", "P99 MS", "IN", "OUT", "QUEUE", "CPU", "MEMORY")
		for _, p := range pts {
			row(tw, p.Minute.Local().Format("15:04"), p.Requests, p.Status5xx, p.Rejected, fmt.Sprintf("%.2f", p.LatencyP50MS),
				fmt.Sprintf("%.2f", p.LatencyP99MS), formatBytes(p.BytesIn), formatBytes(p.BytesOut), p.QueueMax,
				fmt.Sprintf("%.0f%%", 100*p.CPUUtilization), formatBytes(p.MemoryBytes))
		}
		tw.Flush()
	}
}

func (a *app) logsCommand() *cobra.Command {
	var since, kind, replica string
	var follow bool
	var limit int
	cmd := &cobra.Command{
		Use:   "logs DEPLOYMENT",
		Short: "Print a deployment's access, predict and alert log",
		Long: `Print a deployment's log: the access log (one line per prediction request), the predict log (what its
replicas write) and alert transitions. --follow keeps printing new lines until interrupted.

  slipway logs churn --since 10m
  slipway logs churn --follow --kind predict`,
		Args: exactArgs(1, "a deployment name"),
		RunE: a.runWithClient(func(cmd *cobra.Command, args []string, c *client.Client) error {
			from, err := sinceTime(since, time.Now())
			if err != nil {
				return err
			}
			return a.printLogs(cmd.Context(), c, args[0], client.LogQuery{Since: from, Kind: kind, Replica: replica, Limit: limit}, follow)
		}),
	}
	cmd.Flags().StringVar(&since, "since", "", "only lines newer than this (10m, 24h, or an RFC 3339 time)")
	cmd.Flags().StringVar(&kind, "kind", "", "access, predict or alert (default: all)")
	cmd.Flags().StringVar(&replica, "replica", "", "only this replica's lines")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new lines")
	cmd.Flags().IntVar(&limit, "limit", 1000, "lines per request to the server")
	return cmd
}

func (a *app) printLogs(ctx context.Context, c *client.Client, name string, q client.LogQuery, follow bool) error {
	for {
		if follow {
			q.Wait = 10 * time.Second
		}
		page, err := c.Logs(ctx, name, q)
		if err != nil {
			if follow && ctx.Err() != nil {
				return nil
			}
			return err
		}
		for _, l := range page.Items {
			if a.jsonOutput() {
				b, _ := json.Marshal(l)
				fmt.Fprintln(a.stdout, string(b))
				continue
			}
			who := l.Replica
			if who == "" {
				who = "-"
			}
			req := ""
			if l.RequestID != "" {
				req = " " + l.RequestID
			}
			fmt.Fprintf(a.stdout, "%s %-7s %s%s %s\n", l.Time.Local().Format("2006-01-02T15:04:05.000"), l.Kind, who, req, l.Line)
		}
		q.After = page.Next
		q.Since = time.Time{}
		if !follow && len(page.Items) < max(q.Limit, 1) {
			return nil
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

func (a *app) baselineCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "baseline MODEL:VERSION|MODEL@ALIAS [FILE]",
		Short: "Upload or show the baseline (training-data profile) of a model version",
		Long: `With FILE (.csv with a header row, or .parquet), profile it as the version's baseline, the reference of
drift; without, show the baseline kept.

  slipway baseline churn:1 examples/data/churn.csv
  slipway baseline churn@champion`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 || len(args) > 2 {
				return fmt.Errorf("%s takes MODEL:VERSION and optionally a FILE (got %d arguments)", cmd.CommandPath(), len(args))
			}
			return nil
		},
		RunE: run(func(cmd *cobra.Command, args []string) error {
			model, ref, err := slipway.ParseModelRef(args[0])
			if err != nil {
				return err
			}
			if ref == (slipway.VersionRef{}) {
				return fmt.Errorf("give a version: %s:1 or %s@alias", model, model)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			var b *client.Baseline
			if len(args) == 2 {
				f, err := os.Open(args[1])
				if err != nil {
					return err
				}
				defer f.Close()
				ct := client.BaselineCSV
				if strings.EqualFold(filepath.Ext(args[1]), ".parquet") {
					ct = client.BaselineParquet
				}
				b, err = c.PutBaseline(cmd.Context(), model, ref.String(), f, ct)
				if err != nil {
					return err
				}
			} else if b, err = c.GetBaseline(cmd.Context(), model, ref.String()); err != nil {
				return err
			}
			if a.jsonOutput() {
				return a.printJSON(b)
			}
			fmt.Fprintf(a.stdout, "Baseline of %s version %d: %d rows (%s)", b.Model, b.Version, b.Profile.Rows, b.Format)
			if len(b.Ignored) > 0 {
				fmt.Fprintf(a.stdout, ", ignored columns: %s", strings.Join(b.Ignored, ", "))
			}
			fmt.Fprintln(a.stdout)
			tw := newTable(a.stdout)
			row(tw, "FEATURE", "KIND", "COUNT", "MISSING", "DISTINCT", "MIN", "MEDIAN", "MAX", "TOP")
			for _, f := range b.Profile.Features {
				top := ""
				for i, c := range f.Categories {
					if i == 3 {
						top += ", …"
						break
					}
					if i > 0 {
						top += ", "
					}
					top += fmt.Sprintf("%s (%.0f)", c.Value, c.Count)
				}
				med := (*float64)(nil)
				if v, ok := f.Quantiles["p50"]; ok {
					med = &v
				}
				row(tw, f.Name, f.Kind, f.Count, f.Missing, f.Distinct, fmtFloat(f.Min, 3), fmtFloat(med, 3), fmtFloat(f.Max, 3), top)
			}
			return tw.Flush()
		}),
	}
	return cmd
}

func (a *app) feedbackCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "feedback DEPLOYMENT FILE",
		Short: "Send ground truth for captured predictions",
		Long: `Send ground truth from a JSON file (or - for stdin): an array of {"request_id", "row", "label" | "value",
"timestamp"}, at most 10000 items per call.`,
		Args: exactArgs(2, "a deployment name and a JSON file"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			r := a.stdin
			if args[1] != "-" {
				f, err := os.Open(args[1])
				if err != nil {
					return err
				}
				defer f.Close()
				r = f
			}
			var items []client.Feedback
			if err := json.NewDecoder(r).Decode(&items); err != nil {
				return fmt.Errorf("read %s: want a JSON array of {\"request_id\", \"label\" | \"value\"}: %w", args[1], err)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			res, err := c.SendFeedback(cmd.Context(), args[0], items)
			if err != nil {
				return err
			}
			if a.jsonOutput() {
				return a.printJSON(res)
			}
			fmt.Fprintf(a.stdout, "%d received: %d new, %d updated, %d unchanged; %d for predictions not captured\n",
				res.Received, res.Inserted, res.Updated, res.Unchanged, res.UnknownCount)
			for i, u := range res.Unknown {
				if i == 10 {
					fmt.Fprintf(a.stdout, "  … and %d more\n", res.UnknownCount-10)
					break
				}
				fmt.Fprintf(a.stdout, "  %s row %d: %s\n", u.RequestID, u.Row, u.Reason)
			}
			return nil
		}),
	}
}

func (a *app) alertsCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "alerts", Short: "Manage a deployment's alert rules"}
	var rule slipway.AlertRuleSpec
	var secret, webhook, pipeline string
	create := &cobra.Command{
		Use:   "create DEPLOYMENT --name NAME --metric METRIC --above X | --below X",
		Short: "Create an alert rule",
		Long: `Create an alert rule. Metrics: drift_share, requests, error_rate, latency_p99_ms, accuracy, precision,
recall, f1, roc_auc, log_loss, mae, rmse, r2.

  slipway alerts create churn --name drift --metric drift_share --above 0.3 --window 1h \
      --webhook https://hooks.example.com/slipway --secret "$SECRET"
  slipway alerts create churn --name no-traffic --metric requests --below 1 --window 15m
  slipway alerts create churn --name accuracy-drop --metric accuracy --below 0.7 --window 24h --start-pipeline retrain`,
		Args: exactArgs(1, "a deployment name"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			above, below := cmd.Flags().Changed("above"), cmd.Flags().Changed("below")
			if above == below {
				return errors.New("give exactly one of --above or --below")
			}
			rule.Op = "above"
			if below {
				rule.Op = "below"
				rule.Threshold, _ = cmd.Flags().GetFloat64("below")
			} else {
				rule.Threshold, _ = cmd.Flags().GetFloat64("above")
			}
			if webhook != "" {
				rule.Webhook = &slipway.Webhook{URL: webhook, Secret: secret}
			}
			if pipeline != "" {
				rule.Action = &slipway.AlertAction{Kind: "pipeline", Target: pipeline}
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			r, err := c.CreateAlertRule(cmd.Context(), args[0], rule)
			if err != nil {
				return err
			}
			if a.jsonOutput() {
				return a.printJSON(r)
			}
			fmt.Fprintf(a.stdout, "alert rule %s (%s) created on %s\n", r.Name, r.ID, args[0])
			return nil
		}),
	}
	create.Flags().StringVar(&rule.Name, "name", "", "rule name")
	create.Flags().StringVar(&rule.Metric, "metric", "", "figure to watch")
	create.Flags().Float64("above", 0, "fire when the figure is above this")
	create.Flags().Float64("below", 0, "fire when the figure is below this")
	create.Flags().DurationVar((*time.Duration)(&rule.Window), "window", 15*time.Minute, "trailing window the figure is computed over")
	create.Flags().StringVar(&webhook, "webhook", "", "URL that receives the transitions (POST, JSON)")
	create.Flags().StringVar(&secret, "secret", "", "shared secret that signs webhook deliveries (X-Slipway-Signature)")
	create.Flags().StringVar(&pipeline, "start-pipeline", "", "pipeline to run (with its defaults) when the alert fires: retraining")

	list := &cobra.Command{
		Use: "list DEPLOYMENT", Short: "List alert rules with their state", Args: exactArgs(1, "a deployment name"),
		RunE: a.runWithClient(func(cmd *cobra.Command, args []string, c *client.Client) error {
			return a.printRules(c.AlertRules(cmd.Context(), args[0]))
		}),
	}
	evaluate := &cobra.Command{
		Use: "evaluate DEPLOYMENT", Short: "Evaluate alert rules now", Args: exactArgs(1, "a deployment name"),
		RunE: a.runWithClient(func(cmd *cobra.Command, args []string, c *client.Client) error {
			return a.printRules(c.EvaluateAlerts(cmd.Context(), args[0]))
		}),
	}
	del := &cobra.Command{
		Use: "delete DEPLOYMENT RULE_ID", Short: "Delete an alert rule", Args: exactArgs(2, "a deployment name and a rule id"),
		RunE: a.runWithClient(func(cmd *cobra.Command, args []string, c *client.Client) error {
			return c.DeleteAlertRule(cmd.Context(), args[0], args[1])
		}),
	}
	history := &cobra.Command{
		Use: "history DEPLOYMENT", Short: "Show alert transitions, newest first", Args: exactArgs(1, "a deployment name"),
		RunE: a.runWithClient(func(cmd *cobra.Command, args []string, c *client.Client) error {
			evs, err := c.AlertHistory(cmd.Context(), args[0], 100)
			return showTable(a, evs, err, []any{"TIME", "RULE", "STATE", "VALUE", "MESSAGE"}, func(e client.AlertEvent) []any {
				return []any{e.Time.Local().Format("2006-01-02 15:04:05"), e.Rule, e.State, fmtFloat(e.Value, 4), e.Message}
			})
		}),
	}
	cmd.AddCommand(create, list, evaluate, del, history)
	return cmd
}

// printRules shows alert rules (the table by name, the JSON in the server's order); a non-nil err (from fetching
// them) is returned as is.
func (a *app) printRules(rs []client.AlertRule, err error) error {
	if !a.jsonOutput() {
		sort.Slice(rs, func(i, j int) bool { return rs[i].Name < rs[j].Name })
	}
	return showTable(a, rs, err, []any{"ID", "NAME", "CONDITION", "WINDOW", "STATE", "VALUE", "WEBHOOK", "STARTS"}, func(r client.AlertRule) []any {
		hook, starts := "", ""
		if r.Webhook != nil {
			hook = r.Webhook.URL
		}
		if r.Action != nil {
			starts = r.Action.Kind + " " + r.Action.Target
		}
		return []any{r.ID, r.Name, fmt.Sprintf("%s %s %g", r.Metric, r.Op, r.Threshold), r.Window.D().String(), r.State, fmtFloat(r.Value, 4), hook, starts}
	})
}
