package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipway-ml/slipway/client"
)

func (a *app) deploymentsShadowCommand() *cobra.Command {
	var since, until string
	cmd := &cobra.Command{
		Use:   "shadow NAME [--since 1h]",
		Short: "Compare a deployment's shadow with its live version",
		Long: `Compare the answers of a deployment's shadow with its live version's over --since (default 1h): the
requests both answered, the share of rows whose predicted class agrees, the mean and largest absolute
difference of the numeric outputs (probabilities, regression values), errors and p99 latency of each side,
and the agreement per quartile of the input features where it differs most.

The shadow must compare: deploy with --shadow-compare (or "shadow": {"compare": true}). Only sampled
requests are compared (the deployment's capture sampling rate and per-second cap).`,
		Example: "  slipway deployments shadow churn-api\n  slipway deployments shadow churn-api --since 24h -o json",
		Args:    exactArgs(1, "a deployment name"),
		RunE: a.runWithClient(func(cmd *cobra.Command, args []string, c *client.Client) error {
			tr, err := timeRange("--since", since, "--until", until, time.Now())
			if err != nil {
				return err
			}
			rep, err := c.ShadowReport(cmd.Context(), args[0], tr)
			if err != nil {
				return err
			}
			if a.jsonOutput() {
				return a.printJSON(rep)
			}
			printShadowReport(a.stdout, rep, since)
			return nil
		}),
	}
	cmd.Flags().StringVar(&since, "since", "1h", "compare from this long ago (a duration or an RFC 3339 time)")
	cmd.Flags().StringVar(&until, "until", "", "compare up to this long ago (default: now)")
	return cmd
}

func printShadowReport(w io.Writer, r *client.ShadowReport, since string) {
	if r.Requests == 0 {
		fmt.Fprintf(w, "No compared requests for %s in the last %s: is its shadow deployed with --shadow-compare, and is it getting traffic?\n", r.Deployment, since)
		return
	}
	fmt.Fprintf(w, "Shadow version %d against live version %d, last %s\n", r.Version, r.LiveVersion, since)
	printComparison(w, r)
}

// printComparison prints a shadow report's figures and slices (a shadow's, or a replay's).
func printComparison(w io.Writer, r *client.ShadowReport) {
	tw := newTable(w)
	row(tw, "requests compared", fmt.Sprintf("%d (%d rows answered by both)", r.Requests, r.Compared))
	row(tw, "agreement", fmtPercent(r.Agreement))
	row(tw, "abs. difference", fmt.Sprintf("mean %s, max %s", fmtFloat(r.MeanAbsDiff, 4), fmtFloat(r.MaxAbsDiff, 4)))
	row(tw, "errors", fmt.Sprintf("live %d, shadow %d", r.Errors.Live, r.Errors.Shadow))
	row(tw, "p99 latency", fmt.Sprintf("live %s ms, shadow %s ms", fmtFloat(r.LatencyP99MS.Live, 2), fmtFloat(r.LatencyP99MS.Shadow, 2)))
	tw.Flush()
	for _, f := range r.ByFeature {
		fmt.Fprintf(w, "\nAgreement by %s (quartiles; spread %.1f points)\n", f.Feature, 100*f.Spread)
		tw = newTable(w)
		row(tw, "FROM", "TO", "ROWS", "AGREEMENT")
		for _, b := range f.Bins {
			row(tw, fmt.Sprintf("%g", b.Low), fmt.Sprintf("%g", b.High), b.Rows, fmtPercent(b.Agreement))
		}
		tw.Flush()
	}
}

func fmtPercent(p *float64) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100**p)
}

func (a *app) capturesCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "captures",
		Short: "Export captured predictions",
	}
	var from, to, format, file string
	var version int
	export := &cobra.Command{
		Use:   "export DEPLOYMENT --file FILE [--from 24h] [--to T] [--version N] [--format jsonl|csv|parquet]",
		Short: "Export a deployment's captured predictions with their ground truth",
		Long: `Export the captured rows of a deployment, oldest first: time, request id, version, row, inputs, outputs
and the ground truth received for the row (label or value). jsonl has one JSON object per row; csv one
column per input and output (those of the first captured request: use --version when versions differ);
parquet the same columns, typed (a list for an output with several values per row), in row groups.
The file is written under a temporary name and takes its name only once the export is complete.`,
		Example: "  slipway captures export churn-api --from 168h --format csv --file captures.csv\n" +
			"  slipway captures export churn-api --from 2026-01-01T00:00:00Z --to 2026-01-02T00:00:00Z --version 2 --file day.jsonl\n" +
			"  slipway captures export churn-api --from 168h --version 2 --format parquet --file captures.parquet",
		Args: exactArgs(1, "a deployment name"),
		RunE: a.runWithClient(func(cmd *cobra.Command, args []string, c *client.Client) error {
			tr, err := timeRange("--from", from, "--to", to, time.Now())
			if err != nil {
				return err
			}
			return a.exportCaptures(cmd.Context(), c, args[0], client.CaptureExport{TimeRange: tr, Version: version, Format: format}, file)
		}),
	}
	export.Flags().StringVar(&from, "from", "24h", "start: a duration ago (24h, 168h) or an RFC 3339 time")
	export.Flags().StringVar(&to, "to", "", "end: a duration ago or an RFC 3339 time (default: now)")
	export.Flags().IntVar(&version, "version", 0, "only the requests answered by this model version")
	export.Flags().StringVar(&format, "format", "jsonl", "jsonl, csv or parquet")
	export.Flags().StringVarP(&file, "file", "f", "", "where to write the export (required; - for stdout)")
	_ = export.MarkFlagRequired("file")
	cmd.AddCommand(export)
	return cmd
}

// exportCaptures downloads an export into file through a temporary file, with a progress bar.
func (a *app) exportCaptures(ctx context.Context, c *client.Client, deployment string, e client.CaptureExport, file string) error {
	if file == "-" {
		_, err := c.ExportCaptures(ctx, deployment, e, a.stdout, nil)
		return err
	}
	n, err := a.saveDownload(file, "export", func(w io.Writer, progress func(int64, int64)) (int64, error) {
		return c.ExportCaptures(ctx, deployment, e, w, progress)
	}, nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stderr, "Exported %s of captures of %s to %s\n", formatBytes(n), deployment, file)
	return nil
}
