// Package backup writes an online backup of an installation as one tar stream: a consistent snapshot of the
// metadata database (slipway.db) and, when the artifacts are on local disk, every blob (blobs/ + blob.RelPath,
// each verified against its digest as it is read). Restoring is unpacking it into an empty data folder.
// Artifacts in a bucket are not copied: the bucket is their backup (versioning, replication).
package backup

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/slipway-ml/slipway/internal/blob"
)

// Snapshotter writes a consistent copy of the metadata database to a new file.
type Snapshotter interface {
	Snapshot(ctx context.Context, path string) error
}

// Source is what a backup reads.
type Source struct {
	DB Snapshotter
	// Monitor is monitor.db (captures, feedback, logs, metric series): included when not nil.
	Monitor Snapshotter
	// Blobs are copied into the backup when they are on local disk (nil or a bucket: not copied).
	Blobs   *blob.Local
	TempDir string // where the database snapshot is written before it is streamed
	Now     func() time.Time
}

// DatabaseName and BlobsDir are the backup's layout, which is also the data folder's.
const (
	DatabaseName = "slipway.db"
	MonitorName  = "monitor.db"
	BlobsDir     = "blobs" // the data folder's blob store: blobs/sha256/ab/cdef...
)

// Write streams the backup to w. An error after the first byte leaves an incomplete tar (no end marker), which
// a reader notices: callers must not treat a stream that ended early as a backup.
func Write(ctx context.Context, w io.Writer, src Source) error {
	dir, err := os.MkdirTemp(src.TempDir, "backup-")
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	// The snapshots are copies already streamed, or abandoned: a leftover in the scratch folder goes when the
	// server next starts and empties it.
	defer func() { _ = os.RemoveAll(dir) }()
	dbs := []struct {
		name string
		db   Snapshotter
	}{{DatabaseName, src.DB}, {MonitorName, src.Monitor}}
	tw := tar.NewWriter(w)
	now := src.Now()
	for _, d := range dbs {
		if d.db == nil {
			continue
		}
		snap := filepath.Join(dir, d.name)
		if err := d.db.Snapshot(ctx, snap); err != nil {
			return fmt.Errorf("backup: %w", err)
		}
		if err := addFile(tw, d.name, snap, now); err != nil {
			return err
		}
		_ = os.Remove(snap) // now: the next snapshot needs the space more (the deferred RemoveAll retries)
	}
	if src.Blobs != nil {
		err := src.Blobs.Walk(ctx, func(digest string, size int64) error {
			return addBlob(ctx, tw, src.Blobs, digest, size, now)
		})
		if err != nil {
			return fmt.Errorf("backup: artifacts: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	return nil
}

func addFile(tw *tar.Writer, name, path string, mtime time.Time) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: st.Size(), ModTime: mtime, Typeflag: tar.TypeReg}); err != nil {
		return fmt.Errorf("backup: %s: %w", name, err)
	}
	if _, err := io.Copy(tw, f); err != nil {
		return fmt.Errorf("backup: %s: %w", name, err)
	}
	return nil
}

func addBlob(ctx context.Context, tw *tar.Writer, blobs *blob.Local, digest string, size int64, mtime time.Time) error {
	r, err := blobs.Open(ctx, digest)
	if err != nil {
		return err
	}
	defer r.Close()
	name := BlobsDir + "/" + blob.RelPath(digest)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o444, Size: size, ModTime: mtime, Typeflag: tar.TypeReg}); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if _, err := io.Copy(tw, r); err != nil { // the verified read fails on a damaged blob
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}
