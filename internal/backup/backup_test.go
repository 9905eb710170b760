package backup

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/blob"
	"github.com/slipway-ml/slipway/internal/sqlstore"
)

func unpack(t *testing.T, archive []byte, dir string) []string {
	t.Helper()
	var names []string
	tr := tar.NewReader(bytes.NewReader(archive))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return names
		}
		if err != nil {
			t.Fatalf("the backup is not a complete tar: %v", err)
		}
		names = append(names, h.Name)
		p := filepath.Join(dir, filepath.FromSlash(h.Name))
		os.MkdirAll(filepath.Dir(p), 0o755)
		b, _ := io.ReadAll(tr)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// A backup restores: its database opens with the data written before, its blobs have their content.
func TestBackupRestores(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	db, err := sqlstore.OpenSQLite(ctx, filepath.Join(data, "slipway.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	mon, err := sqlstore.OpenMonitorSQLite(ctx, filepath.Join(data, "monitor.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer mon.Close()
	blobs, err := blob.OpenLocal(filepath.Join(data, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	tok := &slipway.Token{ID: "t1", Name: "ci", Role: slipway.RoleViewer, CreatedAt: time.Now()}
	if err := db.CreateToken(ctx, tok, "hash"); err != nil {
		t.Fatal(err)
	}
	digest, _, err := blobs.Put(ctx, strings.NewReader("model bytes"))
	if err != nil {
		t.Fatal(err)
	}

	var buf bytes.Buffer
	src := Source{DB: db, Monitor: mon, Blobs: blobs, TempDir: blobs.TempDir(), Now: time.Now}
	if err := Write(ctx, &buf, src); err != nil {
		t.Fatal(err)
	}
	restored := t.TempDir()
	names := unpack(t, buf.Bytes(), restored)
	want := []string{"slipway.db", "monitor.db", "blobs/sha256/" + digest[:2] + "/" + digest[2:]}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Fatalf("backup holds %v, want %v", names, want)
	}
	rdb, err := sqlstore.OpenSQLite(ctx, filepath.Join(restored, "slipway.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	if ts, err := rdb.FindTokens(ctx); err != nil || len(ts) != 1 || ts[0].Name != "ci" {
		t.Fatalf("restored tokens: %+v, %v", ts, err)
	}
	rblobs, err := blob.OpenLocal(filepath.Join(restored, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := rblobs.Open(ctx, digest)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(r); err != nil || string(b) != "model bytes" {
		t.Fatalf("restored blob: %q, %v", b, err)
	}
	if entries, _ := os.ReadDir(blobs.TempDir()); len(entries) != 0 {
		t.Fatalf("the snapshot was left in the temp folder: %v", entries)
	}

	// Without monitor.db and without local blobs (a bucket holds them): the database alone.
	buf.Reset()
	if err := Write(ctx, &buf, Source{DB: db, TempDir: blobs.TempDir(), Now: time.Now}); err != nil {
		t.Fatal(err)
	}
	if names := unpack(t, buf.Bytes(), t.TempDir()); strings.Join(names, " ") != "slipway.db" {
		t.Fatalf("database-only backup holds %v", names)
	}

	// A damaged blob fails the backup instead of copying the damage.
	p := filepath.Join(data, "blobs", "sha256", digest[:2], digest[2:])
	os.Chmod(p, 0o644)
	os.WriteFile(p, []byte("MODEL BYTES"), 0o644)
	if err := Write(ctx, io.Discard, src); !errors.Is(err, blob.ErrCorrupt) {
		t.Fatalf("backup of a damaged blob: %v, want ErrCorrupt", err)
	}
}
