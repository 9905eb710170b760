package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
)

// CopyDatabase is the work of `slipway db copy`. It runs in this process, next to the databases rather than
// through a server, so cmd/slipway injects it (the CLI does not import the store).
type CopyDatabase func(ctx context.Context, req CopyRequest) (*CopyResult, error)

// CopyRequest is what `slipway db copy` asks for.
type CopyRequest struct {
	From, To  string // database URLs: sqlite:///path/slipway.db or postgres://...
	BatchRows int    // rows per insert transaction (0: the default)
	// Progress is called as rows are copied (phase "copy") and read back (phase "verify").
	Progress func(phase, table string, done, total int64)
}

// CopyResult is what a copy did, per table.
type CopyResult struct {
	Tables  []CopiedTable `json:"tables"`
	Skipped []string      `json:"skipped,omitempty"` // source tables that are not part of Slipway's schema
}

// CopiedTable is one copied table.
type CopiedTable struct {
	Part     string `json:"part"` // metadata or monitoring
	Table    string `json:"table"`
	Rows     int64  `json:"rows"`
	Digest   string `json:"sha256"`
	Verified bool   `json:"verified"`
}

func (a *app) dbCommand() *cobra.Command {
	db := &cobra.Command{
		Use:   "db",
		Short: "Work on an installation's database directly (the servers using it must be stopped)",
	}
	var req CopyRequest
	copyCmd := &cobra.Command{
		Use:   "copy --from URL --to URL",
		Short: "Copy an installation's state (metadata and monitoring data) into an empty database",
		Long: `Copy every table of an installation from one database to another: from the SQLite files of a server
that started on one machine (sqlite:///DATA_DIR/slipway.db, with monitor.db beside it) to the PostgreSQL
database that several servers share (postgres://user:password@host:5432/db), or back.

The target is migrated to this version's schema first and must hold no Slipway state (a non-empty target is
refused). Rows are copied in batches, one transaction each; PostgreSQL's identity counters are then moved past
the copied ids. Each table is read back from the target and compared with the source, by row count and by a
SHA-256 of every row in primary-key order, and the report lists both per table.

Stop every server of the source installation first. Artifacts are not in the database and are not copied: a
server on the new database uses the same artifact folder (--data-dir) or bucket (--artifact-store).`,
		Example:     `  slipway db copy --from sqlite:///var/lib/slipway/slipway.db --to postgres://slipway:PASSWORD@db:5432/slipway`,
		Args:        exactArgs(0, "no arguments (use --from and --to)"),
		Annotations: map[string]string{notAClient: "yes"},
		RunE: run(func(cmd *cobra.Command, args []string) error {
			return a.copyDatabase(cmd.Context(), req)
		}),
	}
	f := copyCmd.Flags()
	f.StringVar(&req.From, "from", "", "the installation's database now: sqlite:///path/slipway.db or postgres://...")
	f.StringVar(&req.To, "to", "", "the empty database to copy it into: postgres://... or sqlite:///path/slipway.db")
	f.IntVar(&req.BatchRows, "batch-rows", 500, "rows per insert transaction")
	requireFlags(copyCmd, "from", "to")
	db.AddCommand(copyCmd)
	return db
}

func (a *app) copyDatabase(ctx context.Context, req CopyRequest) error {
	if a.hooks.CopyDatabase == nil {
		return errors.New("this binary was built without the database copy")
	}
	if req.BatchRows < 1 {
		return fmt.Errorf("--batch-rows %d: want at least 1", req.BatchRows)
	}
	bar := a.newBar(-1, progressbar.OptionShowCount(), progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionSpinnerType(14))
	var current string
	req.Progress = func(phase, table string, done, total int64) {
		if key := phase + " " + table; key != current {
			current = key
			bar.changeMax(max(total, 1))
			bar.describe(fmt.Sprintf("%-6s %-16s", phase, table))
		}
		bar.set(done, total)
	}
	res, err := a.hooks.CopyDatabase(ctx, req)
	bar.finish()
	if err == nil {
		return a.printCopy(res)
	}
	if res != nil && len(res.Tables) > 0 {
		_ = a.printCopy(res) // what was copied before the failure, for the person who reads the error below
	}
	return err
}

func (a *app) printCopy(res *CopyResult) error {
	if a.jsonOutput() {
		return a.printJSON(res)
	}
	tw := newTable(a.stdout)
	row(tw, "PART", "TABLE", "ROWS", "SHA256", "VERIFIED")
	var rows int64
	for _, t := range res.Tables {
		verified := "yes"
		if !t.Verified {
			verified = "NO"
		}
		row(tw, t.Part, t.Table, t.Rows, t.Digest[:16], verified)
		rows += t.Rows
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if verified := res.verified(); verified {
		fmt.Fprintf(a.stdout, "\nCopied and verified %d rows in %d tables (row counts and SHA-256 of every row, in primary-key order).\n", rows, len(res.Tables))
	}
	if len(res.Skipped) > 0 {
		fmt.Fprintf(a.stdout, "Not copied (not part of Slipway's schema): %s\n", strings.Join(res.Skipped, ", "))
	}
	fmt.Fprintln(a.stdout, "Artifacts are not in the database and were not copied: start the servers on the new database with the "+
		"same artifact store (--artifact-store s3://..., or the old --data-dir, whose blobs/ folder holds them).")
	return nil
}

func (r *CopyResult) verified() bool {
	for _, t := range r.Tables {
		if !t.Verified {
			return false
		}
	}
	return true
}
