package app

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/slipway-ml/slipway/internal/cli"
	"github.com/slipway-ml/slipway/internal/config"
	"github.com/slipway-ml/slipway/internal/sqlstore"
)

// CopyDatabase is `slipway db copy` (cli.CopyDatabase): it reads the URLs as --database does and copies the
// installation with sqlstore.CopyInstallation. A SQLite side's folder is a data folder: its lock is held during
// the copy, so that a server running on it is reported instead of changing the source under the copy.
func CopyDatabase(ctx context.Context, req cli.CopyRequest) (_ *cli.CopyResult, err error) {
	from, err := config.ParseDatabaseURL("--from", req.From)
	if err != nil {
		return nil, err
	}
	to, err := config.ParseDatabaseURL("--to", req.To)
	if err != nil {
		return nil, err
	}
	locked := map[string]bool{}
	for _, db := range []config.Database{from, to} {
		if db.SQLite == "" {
			continue
		}
		dir := filepath.Dir(db.SQLite)
		if _, statErr := os.Stat(dir); statErr != nil || locked[dir] {
			continue // a missing source is reported by the copy; a missing target folder is created
		}
		lock, err := lockDataDir(dir)
		if err != nil {
			return nil, fmt.Errorf("%s: stop every server of the installation before copying its database (%w)", db.SQLite, err)
		}
		locked[dir] = true
		defer func() { err = errors.Join(err, unlockDataDir(lock)) }()
	}
	report, err := sqlstore.CopyInstallation(ctx, sqlstore.Installation(from), sqlstore.Installation(to), sqlstore.CopyOptions{
		BatchRows: req.BatchRows,
		Progress: func(p sqlstore.CopyProgress) {
			if req.Progress != nil {
				req.Progress(p.Phase, p.Table, p.Done, p.Total)
			}
		},
	})
	if report == nil {
		return nil, err
	}
	res := &cli.CopyResult{Skipped: report.Skipped}
	for _, t := range report.Tables {
		res.Tables = append(res.Tables, cli.CopiedTable{Part: t.Part, Table: t.Table, Rows: t.Rows, Digest: t.Digest, Verified: t.Verified})
	}
	return res, err
}
