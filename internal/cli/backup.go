package cli

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipway-ml/slipway/internal/backup"
)

func (a *app) backupCommand() *cobra.Command {
	var file string
	var withMonitor bool
	cmd := &cobra.Command{
		Use:   "backup [--file FILE] [--include-monitor]",
		Short: "Save an online backup of the server: its database and its artifacts (when on local disk)",
		Long: `Save an online backup as one tar file while the server keeps serving: a consistent snapshot of the
metadata database (slipway.db: models, versions, aliases, deployments, jobs, pipelines, schedules, tokens,
monitor settings) and, when the artifacts are on the server's disk, every artifact blob, each verified against
its digest. Artifacts in an S3 bucket (--artifact-store) are not copied: the bucket is their backup.
--include-monitor adds monitor.db (captured predictions, feedback, logs, metric series). A server whose state
is in PostgreSQL (--database postgres://...) refuses: back up that database with pg_dump, the bucket with its
versioning.

The file is written under a temporary name and checked to be a complete archive before it takes its name.
Restore: stop the server, unpack the file into an empty data folder (tar -xf FILE -C DATA_DIR), start it.
Admin role required.`,
		Example: "  slipway backup\n  slipway backup --file /backups/slipway-$(date +%F).tar --include-monitor",
		Args:    exactArgs(0, "no arguments"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			return a.backup(cmd.Context(), file, withMonitor)
		}),
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "where to save the backup (default: slipway-backup-TIMESTAMP.tar here)")
	cmd.Flags().BoolVar(&withMonitor, "include-monitor", false, "also save monitor.db (captured predictions, feedback, logs, metric series)")
	return cmd
}

func (a *app) backup(ctx context.Context, file string, withMonitor bool) error {
	if file == "" {
		file = "slipway-backup-" + time.Now().UTC().Format("20060102T150405Z") + ".tar"
	}
	if _, err := os.Stat(file); err == nil {
		return fmt.Errorf("%s exists: choose another --file", file)
	}
	c, err := a.client()
	if err != nil {
		return err
	}
	var summary string
	_, err = a.saveDownload(file, "backup", func(w io.Writer, progress func(int64, int64)) (int64, error) {
		return c.Backup(ctx, withMonitor, w, progress)
	}, func(tmp string) (err error) {
		summary, err = checkBackup(tmp)
		return err
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stderr, "Saved the backup (%s) to %s.\n", summary, file)
	return nil
}

// checkBackup reads the archive to its end marker and says what it holds.
func checkBackup(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var size int64
	var dbs []string
	blobs := 0
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", err
		}
		n, err := io.Copy(io.Discard, tr)
		if err != nil {
			return "", err
		}
		size += n
		if strings.HasPrefix(h.Name, backup.BlobsDir+"/") {
			blobs++
		} else {
			dbs = append(dbs, h.Name)
		}
	}
	if len(dbs) == 0 {
		return "", errors.New("no database in it")
	}
	return fmt.Sprintf("%s: %s, %d artifact blobs", formatBytes(size), strings.Join(dbs, ", "), blobs), nil
}
