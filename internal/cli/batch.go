package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/client"
)

func (a *app) batchCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "batch",
		Short: "Score a whole data set into a table or a file (batch predictions)",
	}
	cmd.AddCommand(a.batchRunCommand(), a.batchListCommand(), a.batchGetCommand(), a.batchCancelCommand(), a.batchDeleteCommand(), a.batchDownloadCommand())
	return cmd
}

type batchFlags struct {
	model, deployment                 string
	input, importPath, format         string
	query, queryConnection            string
	table, connection, outputFormat   string
	keys                              []string
	chunkSize, parallelism, timeoutMS int
	onBadRows, download               string
	noWait                            bool
	waitTimeout                       time.Duration
}

func (a *app) batchRunCommand() *cobra.Command {
	var f batchFlags
	cmd := &cobra.Command{
		Use:   "run --model MODEL[@ALIAS|:VERSION] (--input FILE | --import-path PATH | --query SQL) (--output-table T --connection C | --output-format parquet|csv)",
		Short: "Start a batch prediction and follow its progress",
		Long: `Score every row of an input with a model version, in the server's own replica processes, and write the
predictions (with the key columns, model, model_version, batch_id and scored_at) to a table or a file.

Inputs: --input FILE uploads a local CSV, JSON Lines or Parquet file first; --import-path reads a file under
the server's --import-dir; --query reads a SELECT on a named connection (--query-connection, default
--connection), ORDER BY the --key columns. Outputs: --output-table on --connection (created if missing), or
--output-format parquet|csv, downloadable with --download FILE or 'slipway batch download'.

The command shows rows done/total until the run finishes: exit 0 when it SUCCEEDED, 1 otherwise. --no-wait
returns at once. A run interrupted by a server crash resumes when the server starts again.`,
		Example: `  slipway batch run --model churn@champion --input customers.csv --key customer_id --output-table churn_scores --connection warehouse
  slipway batch run --model churn:3 --query "SELECT * FROM customers" --key customer_id --output-table scores --connection warehouse
  slipway batch run --model churn@champion --import-path nightly/customers.parquet --output-format parquet --download scores.parquet`,
		Args: exactArgs(0, "no arguments"),
		RunE: a.runWithClient(func(cmd *cobra.Command, args []string, c *client.Client) error {
			sp, err := f.spec(cmd.Context(), a, c)
			if err != nil {
				return err
			}
			r, err := c.CreateBatchPrediction(cmd.Context(), sp)
			if err != nil {
				return err
			}
			if f.noWait {
				if a.jsonOutput() {
					return a.printJSON(r)
				}
				fmt.Fprintf(a.stdout, "Batch prediction %s is %s.\n", r.ID, r.State)
				fmt.Fprintf(a.stderr, "Not waiting: 'slipway batch get %s' shows its progress.\n", r.ID)
				return nil
			}
			return a.followBatch(cmd.Context(), c, r, f)
		}),
	}
	fs := cmd.Flags()
	fs.StringVarP(&f.model, "model", "m", "", "model to score with: NAME (newest READY version), NAME@ALIAS or NAME:VERSION")
	fs.StringVar(&f.deployment, "deployment", "", "score with the version a deployment serves (instead of --model)")
	fs.StringVar(&f.input, "input", "", "local input file (.csv, .jsonl, .parquet), uploaded first")
	fs.StringVar(&f.importPath, "import-path", "", "input file under the server's --import-dir")
	fs.StringVar(&f.format, "format", "", "input format when the extension does not tell: csv, jsonl or parquet")
	fs.StringVar(&f.query, "query", "", "SELECT to score, on --query-connection")
	fs.StringVar(&f.queryConnection, "query-connection", "", "connection the query runs on (default: --connection)")
	fs.StringVar(&f.table, "output-table", "", "table to write the predictions to (created if missing)")
	fs.StringVar(&f.connection, "connection", "", "named connection of the output table ('slipway batch connections' is GET /api/v1/connections)")
	fs.StringVar(&f.outputFormat, "output-format", "", "write a file instead of a table: parquet or csv")
	fs.StringSliceVar(&f.keys, "key", nil, "input column copied to the output next to the predictions (repeat or comma-separate)")
	fs.IntVar(&f.chunkSize, "chunk-size", 0, "rows per chunk (default 10000)")
	fs.IntVar(&f.parallelism, "parallelism", 0, "replica processes scoring chunks at once (default 2)")
	fs.IntVar(&f.timeoutMS, "chunk-timeout-ms", 0, "fail when one chunk takes longer (default 600000)")
	fs.StringVar(&f.onBadRows, "on-bad-rows", "", "fail (default) or skip: leave out and record rows that cannot be read or that the model rejects")
	fs.StringVar(&f.download, "download", "", "with --output-format: save the output file here once the run succeeded")
	fs.BoolVar(&f.noWait, "no-wait", false, "return at once instead of following the run")
	fs.DurationVar(&f.waitTimeout, "wait-timeout", 24*time.Hour, "stop following after this long (the run carries on)")
	return cmd
}

// spec builds the request, uploading --input first.
func (f *batchFlags) spec(ctx context.Context, a *app, c *client.Client) (slipway.BatchSpec, error) {
	sp := slipway.BatchSpec{Deployment: f.deployment, KeyColumns: f.keys, ChunkSize: f.chunkSize, Parallel: f.parallelism,
		OnBadRows: f.onBadRows, TimeoutMS: f.timeoutMS}
	switch {
	case f.model != "" && f.deployment != "":
		return sp, errors.New("give --model or --deployment, not both")
	case f.model != "":
		m, ref, err := slipway.ParseModelRef(f.model)
		if err != nil {
			return sp, err
		}
		sp.Model, sp.Version, sp.Alias = m, ref.Number, ref.Alias
	case f.deployment == "":
		return sp, errors.New("--model is required (or --deployment)")
	}
	inputs := 0
	for _, set := range []bool{f.input != "", f.importPath != "", f.query != ""} {
		if set {
			inputs++
		}
	}
	if inputs != 1 {
		return sp, errors.New("give one input: --input FILE, --import-path PATH or --query SQL")
	}
	switch {
	case f.query != "":
		sp.Input = slipway.BatchInput{Query: f.query, Connection: f.queryConnection}
		if sp.Input.Connection == "" {
			sp.Input.Connection = f.connection
		}
		if sp.Input.Connection == "" {
			return sp, errors.New("--query needs --query-connection (or --connection)")
		}
	case f.importPath != "":
		sp.Input = slipway.BatchInput{Path: f.importPath, Format: f.format}
	default:
		up, err := c.UploadFilePath(ctx, f.input)
		if err != nil {
			return sp, err
		}
		if !a.jsonOutput() {
			fmt.Fprintf(a.stderr, "Uploaded %s (%s) as %s.\n", filepath.Base(f.input), formatBytes(up.Size), up.ID)
		}
		sp.Input = slipway.BatchInput{File: up.ID, Format: f.format}
	}
	switch {
	case f.outputFormat != "" && f.table != "":
		return sp, errors.New("give --output-table (with --connection) or --output-format, not both")
	case f.outputFormat != "":
		sp.Output = slipway.BatchOutput{Format: f.outputFormat}
	case f.table != "":
		if f.connection == "" {
			return sp, errors.New("--output-table needs --connection (GET /api/v1/connections lists them)")
		}
		sp.Output = slipway.BatchOutput{Table: f.table, Connection: f.connection}
	default:
		return sp, errors.New("give an output: --output-table T --connection C, or --output-format parquet|csv")
	}
	if f.download != "" && f.outputFormat == "" {
		return sp, errors.New("--download needs --output-format")
	}
	return sp, nil
}

// followBatch shows a progress bar (rows done/total) on a terminal until the run finishes.
func (a *app) followBatch(ctx context.Context, c *client.Client, r *slipway.BatchRun, f batchFlags) error {
	bar := a.newRowsBar(r.ID)
	wctx, cancel := context.WithTimeout(ctx, f.waitTimeout)
	last, err := c.WaitBatchPrediction(wctx, r.ID, bar.update, a.pollInterval())
	cancel()
	bar.finish()
	if last != nil {
		r = last
	}
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		return fmt.Errorf("batch prediction %s is still %s after %s (%d/%d rows): it carries on on the server; 'slipway batch get %s' shows its progress",
			r.ID, r.State, f.waitTimeout, r.RowsDone, r.RowsTotal, r.ID)
	} else if err != nil {
		return err
	}
	if err := show(a, r, nil, a.printBatch); err != nil {
		return err
	}
	if r.State != slipway.BatchSucceeded {
		return fmt.Errorf("batch prediction %s %s: %s", r.ID, r.State, orDash(r.Reason))
	}
	if f.download != "" {
		return a.downloadBatch(ctx, c, r.ID, f.download)
	}
	return nil
}

// rowsBar is a progress bar of a batch prediction's rows on stderr; it does nothing when stderr is not a
// terminal.
type rowsBar struct {
	termBar
	total int64 // the bar's, until the run knows its rows
}

func (a *app) newRowsBar(id string) *rowsBar {
	return &rowsBar{total: -1, termBar: a.newBar(-1,
		progressbar.OptionSetDescription(id+" ACCEPTED"),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("rows"),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetRenderBlankState(true),
	)}
}

func (b *rowsBar) update(r *slipway.BatchRun) {
	if b.pb == nil {
		return
	}
	if r.RowsTotal >= 0 && r.RowsTotal != b.total {
		b.total = r.RowsTotal
		b.changeMax(r.RowsTotal)
	}
	b.describe(fmt.Sprintf("%s %s", r.ID, r.State))
	b.set(r.RowsDone, b.total)
}

func (a *app) downloadBatch(ctx context.Context, c *client.Client, id, dest string) error {
	tmp, err := os.CreateTemp(filepath.Dir(dest), ".slipway-download-*")
	if err != nil {
		return err
	}
	defer removeLeftover(tmp.Name())
	n, err := c.DownloadBatchOutput(ctx, id, tmp)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), dest); err != nil {
		return err
	}
	if !a.jsonOutput() {
		fmt.Fprintf(a.stderr, "Saved the output (%s) to %s.\n", formatBytes(n), dest)
	}
	return nil
}

func describeInput(in slipway.BatchInput) string {
	switch {
	case in.Query != "":
		q := strings.Join(strings.Fields(in.Query), " ")
		if len(q) > 60 {
			q = q[:60] + "…"
		}
		return fmt.Sprintf("query on %s: %s", in.Connection, q)
	case in.File != "":
		return "uploaded file " + in.File
	}
	return "import path " + in.Path
}

func describeOutput(out slipway.BatchOutput) string {
	if out.Format != "" {
		if out.Download != "" {
			return fmt.Sprintf("%s file (%s): %s", out.Format, formatBytes(out.Size), out.Download)
		}
		return out.Format + " file"
	}
	return fmt.Sprintf("table %s on %s", out.Table, out.Connection)
}

func (a *app) printBatch(r *slipway.BatchRun) {
	tw := newTable(a.stdout)
	row(tw, "ID:", r.ID)
	row(tw, "State:", r.State)
	if r.Reason != "" {
		row(tw, "Reason:", r.Reason)
	}
	row(tw, "Model:", fmt.Sprintf("%s version %d", r.Model, r.Version))
	row(tw, "Input:", describeInput(r.Spec.Input))
	row(tw, "Output:", describeOutput(r.Output))
	total := "?"
	if r.RowsTotal >= 0 {
		total = fmt.Sprint(r.RowsTotal)
	}
	row(tw, "Rows:", fmt.Sprintf("%d/%s done, %d skipped, %.0f rows/s", r.RowsDone, total, r.RowsSkipped, r.RowsPerSecond))
	row(tw, "Created:", formatTime(r.CreatedAt))
	if r.FinishedAt != nil {
		row(tw, "Finished:", formatTime(*r.FinishedAt))
	}
	tw.Flush()
	if len(r.Errors) > 0 {
		fmt.Fprintf(a.stdout, "\nErrors (%d shown):\n", len(r.Errors))
		et := newTable(a.stdout)
		row(et, "CHUNK", "ROWS", "MESSAGE")
		for _, e := range r.Errors {
			rows := fmt.Sprint(e.RowStart)
			if e.RowEnd != e.RowStart {
				rows = fmt.Sprintf("%d-%d", e.RowStart, e.RowEnd)
			}
			row(et, e.Chunk, rows, e.Message)
		}
		_ = et.Flush() // like every table: a failed write to the terminal has nowhere to be reported
	}
}

func (a *app) batchListCommand() *cobra.Command {
	var state string
	var limit int
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List batch predictions, newest first",
		Args:  exactArgs(0, "no arguments"),
		RunE: a.runWithClient(func(cmd *cobra.Command, args []string, c *client.Client) error {
			runs, total, err := c.ListBatchPredictions(cmd.Context(), slipway.BatchState(strings.ToUpper(state)), 0, limit)
			if err != nil {
				return err
			}
			if a.jsonOutput() {
				return a.printJSON(runs)
			}
			tw := newTable(a.stdout)
			row(tw, "ID", "STATE", "MODEL", "ROWS", "OUTPUT", "CREATED")
			for _, r := range runs {
				total := "?"
				if r.RowsTotal >= 0 {
					total = fmt.Sprint(r.RowsTotal)
				}
				row(tw, r.ID, r.State, fmt.Sprintf("%s:%d", r.Model, r.Version), fmt.Sprintf("%d/%s", r.RowsDone, total), describeOutput(r.Output), formatTime(r.CreatedAt))
			}
			tw.Flush()
			if total > len(runs) {
				fmt.Fprintf(a.stderr, "%d of %d shown (--limit).\n", len(runs), total)
			}
			return nil
		}),
	}
	cmd.Flags().StringVar(&state, "state", "", "only runs in this state (ACCEPTED, IN_PROGRESS, SUCCEEDED, FAILED, CANCELED)")
	cmd.Flags().IntVar(&limit, "limit", 50, "at most this many runs")
	return cmd
}

func (a *app) batchGetCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "get ID",
		Short: "Show a batch prediction: state, rows, errors, output",
		Args:  exactArgs(1, "one batch prediction id"),
		RunE: a.runWithClient(func(cmd *cobra.Command, args []string, c *client.Client) error {
			r, err := c.GetBatchPrediction(cmd.Context(), args[0])
			return show(a, r, err, a.printBatch)
		}),
	}
}

func (a *app) batchCancelCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "cancel ID",
		Short: "Cancel a batch prediction (chunks already written stay)",
		Args:  exactArgs(1, "one batch prediction id"),
		RunE: a.runWithClient(func(cmd *cobra.Command, args []string, c *client.Client) error {
			r, err := c.CancelBatchPrediction(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.jsonOutput() {
				return a.printJSON(r)
			}
			fmt.Fprintf(a.stdout, "Batch prediction %s is %s (%d/%d rows were done).\n", r.ID, r.State, r.RowsDone, r.RowsTotal)
			return nil
		}),
	}
}

func (a *app) batchDeleteCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "delete ID...",
		Short: "Delete finished batch predictions and their output files (table outputs stay in their database)",
		Args:  cobra.MinimumNArgs(1),
		RunE: a.runWithClient(func(cmd *cobra.Command, args []string, c *client.Client) error {
			for _, id := range args {
				if err := c.DeleteBatchPrediction(cmd.Context(), id); err != nil {
					return fmt.Errorf("delete %s: %w", id, err)
				}
				fmt.Fprintf(a.stdout, "Deleted batch prediction %s.\n", id)
			}
			return nil
		}),
	}
}

func (a *app) batchDownloadCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "download ID FILE",
		Short: "Save a succeeded batch prediction's output file",
		Args:  exactArgs(2, "a batch prediction id and a file to write"),
		RunE: a.runWithClient(func(cmd *cobra.Command, args []string, c *client.Client) error {
			return a.downloadBatch(cmd.Context(), c, args[0], args[1])
		}),
	}
}

func (a *app) filesCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "files",
		Short: "Upload and list input files for batch predictions",
	}
	upload := &cobra.Command{
		Use:   "upload FILE",
		Short: "Upload an input file (.csv, .jsonl, .parquet); prints its id for 'batch run'",
		Args:  exactArgs(1, "one file"),
		RunE: a.runWithClient(func(cmd *cobra.Command, args []string, c *client.Client) error {
			f, err := c.UploadFilePath(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.jsonOutput() {
				return a.printJSON(f)
			}
			fmt.Fprintf(a.stdout, "%s\t%s\t%s\tsha256:%s\n", f.ID, f.Name, formatBytes(f.Size), f.SHA256)
			return nil
		}),
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List uploaded files",
		Args:  exactArgs(0, "no arguments"),
		RunE: a.runWithClient(func(cmd *cobra.Command, args []string, c *client.Client) error {
			files, err := c.ListUploadedFiles(cmd.Context())
			return showTable(a, files, err, []any{"ID", "NAME", "SIZE", "CREATED"}, func(f *slipway.UploadedFile) []any {
				return []any{f.ID, f.Name, formatBytes(f.Size), formatTime(f.CreatedAt)}
			})
		}),
	}
	del := &cobra.Command{
		Use:   "delete ID",
		Short: "Delete an uploaded file",
		Args:  exactArgs(1, "one file id"),
		RunE: a.runWithClient(func(cmd *cobra.Command, args []string, c *client.Client) error {
			return c.DeleteUploadedFile(cmd.Context(), args[0])
		}),
	}
	cmd.AddCommand(upload, list, del)
	return cmd
}
