package cli

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/mlmodel"
)

// Pull formats: the version's files as stored, or an MLflow model directory (the same files, for a version
// registered from one: checked before anything is downloaded).
const (
	pullFormatFiles  = "files"
	pullFormatMLflow = "mlflow"
)

func (a *app) modelsPullCommand() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "pull NAME[@ALIAS|:VERSION] DIR [--format files|mlflow]",
		Short: "Download a version's files into a new directory, verifying every sha256",
		Long: `Download a version's files into DIR (which must not exist, or be empty). Without @ALIAS or :VERSION
the newest READY version is pulled. Every file is checked against the sha256 of the version's manifest; on any
mismatch nothing is left in DIR.
--format mlflow writes an MLflow model directory (MLmodel, the model file, the environment files and the input
example, exactly as they were pushed) for a version registered from one; 'mlflow models serve -m DIR' or
mlflow.pyfunc.load_model(DIR) read it back.`,
		Example: "  slipway models pull churn@champion ./churn\n  slipway models pull churn-mlflow@champion ./churn-mlflow --format mlflow",
		Args:    exactArgs(2, "a model reference and a directory"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			if format != pullFormatFiles && format != pullFormatMLflow {
				return fmt.Errorf("--format %q: use %q (the version's files) or %q (an MLflow model directory)", format, pullFormatFiles, pullFormatMLflow)
			}
			return a.pull(cmd.Context(), args[0], args[1], format)
		}),
	}
	cmd.Flags().StringVar(&format, "format", pullFormatFiles, "files (the version's files) or mlflow (an MLflow model directory, for a version registered from one)")
	return cmd
}

func (a *app) pull(ctx context.Context, refArg, dir, format string) error {
	name, ref, err := slipway.ParseModelRef(refArg)
	if err != nil {
		return err
	}
	if ref == (slipway.VersionRef{}) {
		ref.Alias = "latest"
	}
	if err := checkPullDir(dir, ""); err != nil {
		return err
	}
	c, err := a.client()
	if err != nil {
		return err
	}
	v, err := c.GetVersion(ctx, name, ref.String())
	if err != nil {
		return err
	}
	if format == pullFormatMLflow && !mlmodel.IsMLflow(v.Files) {
		return fmt.Errorf("%s version %d was not registered from an MLflow model directory (it has no MLmodel file, or a score.py serves it): pull it without --format mlflow", v.Model, v.Version)
	}
	// Extract into a temporary directory (inside DIR when it exists, else next to it) and move the files into
	// place at the end, so that a failed or tampered download leaves nothing behind.
	dir = filepath.Clean(dir)
	_, statErr := os.Stat(dir)
	exists := statErr == nil
	tmpParent := dir
	if !exists {
		tmpParent = filepath.Dir(dir)
		if err := os.MkdirAll(tmpParent, 0o755); err != nil {
			return err
		}
	}
	tmp, err := os.MkdirTemp(tmpParent, ".slipway-pull-")
	if err != nil {
		return err
	}
	defer removeLeftover(tmp)

	// Pin the number: an alias may move between the two requests.
	rc, err := c.DownloadArtifact(ctx, name, strconv.Itoa(v.Version))
	if err != nil {
		return err
	}
	defer rc.Close()
	if err := extractVerified(rc, tmp, v.Files); err != nil {
		return fmt.Errorf("pull %s version %d: %w", v.Model, v.Version, err)
	}
	if err := moveInto(tmp, dir, exists); err != nil {
		return err
	}
	if a.jsonOutput() {
		return a.printJSON(v)
	}
	fmt.Fprintf(a.stdout, "Pulled %s version %d into %s: %d files, %s, all sha256 digests verified.\n",
		v.Model, v.Version, dir, len(v.Files), formatBytes(v.Size))
	return nil
}

// moveInto makes the verified files in tmp the content of dir: a rename of tmp when dir did not exist,
// otherwise (an empty directory, possibly ".", holding tmp) a rename of each top-level entry.
func moveInto(tmp, dir string, exists bool) error {
	if !exists {
		if err := os.Chmod(tmp, 0o755); err != nil {
			return err
		}
		return os.Rename(tmp, dir)
	}
	if err := checkPullDir(dir, filepath.Base(tmp)); err != nil { // it may have been filled meanwhile
		return err
	}
	entries, err := os.ReadDir(tmp)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := os.Rename(filepath.Join(tmp, e.Name()), filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// checkPullDir accepts a directory that does not exist yet or is empty (but for the entry named ignore).
func checkPullDir(dir, ignore string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	}
	for _, e := range entries {
		if e.Name() != ignore {
			return fmt.Errorf("%s is not empty: pull into a new or empty directory", dir)
		}
	}
	return nil
}

// extractVerified extracts the tar.gz in r under root and checks it against the manifest: every entry must be
// a listed regular file with the listed size and sha256, and every listed file must be present. Names are
// checked even though the server is trusted, and os.Root keeps every write inside root.
func extractVerified(r io.Reader, root string, manifest []slipway.File) error {
	want := make(map[string]slipway.File, len(manifest))
	for _, f := range manifest {
		want[f.Path] = f
	}
	gz, err := gzip.NewReader(r)
	if err != nil {
		return fmt.Errorf("the download is not a tar.gz: %w", err)
	}
	rt, err := os.OpenRoot(root)
	if err != nil {
		return err
	}
	defer rt.Close()
	tr := tar.NewReader(gz)
	seen := map[string]bool{}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		} else if err != nil && !errors.Is(err, tar.ErrInsecurePath) {
			return fmt.Errorf("read the download: %w", err)
		}
		name, err := safeName(hdr.Name)
		if err != nil {
			return err
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := rt.MkdirAll(filepath.FromSlash(name), 0o755); err != nil {
				return err
			}
			continue
		case tar.TypeReg:
		default:
			return fmt.Errorf("refusing %q: entry type %q is not a regular file (links and special files are never extracted)", hdr.Name, hdr.Typeflag)
		}
		f, ok := want[name]
		if !ok {
			return fmt.Errorf("refusing %q: it is not in the version's manifest", name)
		}
		if seen[name] {
			return fmt.Errorf("refusing %q: it appears twice in the download", name)
		}
		seen[name] = true
		if err := writeVerified(rt, name, f, tr); err != nil {
			return err
		}
	}
	if _, err := io.Copy(io.Discard, gz); err != nil { // the gzip trailer's checksum
		return fmt.Errorf("read the download: %w", err)
	}
	for _, f := range manifest {
		if !seen[f.Path] {
			return fmt.Errorf("%s is in the version's manifest but missing from the download", f.Path)
		}
	}
	return nil
}

func writeVerified(rt *os.Root, name string, f slipway.File, r io.Reader) error {
	local := filepath.FromSlash(name)
	if dir := filepath.Dir(local); dir != "." {
		if err := rt.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	mode := fs.FileMode(f.Mode).Perm()
	if mode == 0 {
		mode = 0o644
	}
	out, err := rt.OpenFile(local, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(out, h), r)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if n != f.Size {
		return fmt.Errorf("size mismatch for %s: the manifest says %d bytes, the download has %d: the download is corrupt or was tampered with", name, f.Size, n)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != f.SHA256 {
		return fmt.Errorf("sha256 mismatch for %s: the manifest says %s, the download has %s: the download is corrupt or was tampered with", name, f.SHA256, got)
	}
	return nil
}

// safeName accepts a relative, slash-separated, canonical entry name that stays inside the destination.
func safeName(raw string) (string, error) {
	name := strings.TrimPrefix(raw, "./")
	name = strings.TrimSuffix(name, "/")
	switch {
	case name == "" || name == ".":
		return "", fmt.Errorf("refusing an entry with an empty name")
	case strings.ContainsAny(name, "\\\x00"):
		return "", fmt.Errorf("refusing %q: backslash or NUL in the name", raw)
	case path.IsAbs(name) || filepath.IsAbs(name) || filepath.VolumeName(name) != "":
		return "", fmt.Errorf("refusing %q: absolute path", raw)
	case name == ".." || strings.HasPrefix(name, "../") || strings.Contains(name, "/../") || strings.HasSuffix(name, "/.."):
		return "", fmt.Errorf("refusing %q: the path leaves the destination (\"..\")", raw)
	case path.Clean(name) != name:
		return "", fmt.Errorf("refusing %q: the path is not canonical", raw)
	}
	return name, nil
}
