package cli

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/client"
)

func (a *app) modelsPushCommand() *cobra.Command {
	var model, alias, metaFile, baseline string
	var noWait bool
	cmd := &cobra.Command{
		Use:   "push PATH --model NAME [--alias ALIAS] [--metadata FILE]",
		Short: "Register a new version of a model from a directory or a file",
		Long: `Register a new version of a model. PATH is a model directory (sent as a tar.gz built on the fly,
without __pycache__, .git, .gitignore and *.pyc) or a single file: an archive (.zip, .tar, .tar.gz) or a model file such as
model.onnx, sent as is. The server unpacks it, runs the checks and answers READY or FAILED; a FAILED push
prints the checks and exits with status 1. With --no-wait the command returns once the files are stored,
with the version REGISTERING; the checks go on on the server ('slipway models get NAME:VERSION' shows them).
--baseline FILE sends a sample of the training data (CSV with a header row, or Parquet): the version is
stored with its data profile, so that drift is measured from its first deployment. Without one, drift
compares against the deployment's first window of traffic, and says so.`,
		Example: `  slipway models push examples/sklearn-churn --model churn --metadata examples/sklearn-churn/metadata.json --alias champion
  slipway models push model.onnx --model churn-onnx
  slipway models push examples/sklearn-churn --model churn --baseline examples/data/churn.csv`,
		Args: exactArgs(1, "one path (a directory or a file)"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			if noWait && alias != "" {
				return errors.New("--alias needs the checks' verdict: drop --no-wait, or point the alias later with 'slipway models alias'")
			}
			if noWait && baseline != "" {
				return errors.New("--baseline is profiled against the checked version: drop --no-wait, or upload it later with 'slipway baseline'")
			}
			return a.push(cmd.Context(), args[0], model, alias, metaFile, baseline, noWait)
		}),
	}
	f := cmd.Flags()
	f.StringVarP(&model, "model", "m", "", "model name (created if it does not exist)")
	f.StringVar(&alias, "alias", "", "point this alias at the new version when it is READY")
	f.StringVar(&metaFile, "metadata", "", "JSON file of version metadata (runtime, schemas, sample_input, metrics...)")
	f.BoolVar(&noWait, "no-wait", false, "return once the files are stored; the checks go on on the server")
	f.StringVar(&baseline, "baseline", "", "a sample of the training data (CSV with a header row, or .parquet) kept as the version's drift baseline")
	requireFlags(cmd, "model")
	return cmd
}

func (a *app) push(ctx context.Context, path, model, alias, metaFile, baselineFile string, noWait bool) error {
	if err := slipway.ValidateName("model", model); err != nil {
		return err
	}
	alias = strings.TrimPrefix(alias, "@")
	if alias != "" {
		if err := validAlias(alias); err != nil {
			return err
		}
	}
	var meta *slipway.VersionMetadata
	if metaFile != "" {
		var err error
		if meta, err = readMetadata(metaFile); err != nil {
			return err
		}
	}
	var baseline *client.BaselineFile
	if baselineFile != "" {
		f, err := os.Open(baselineFile)
		if err != nil {
			return fmt.Errorf("--baseline: %w", err)
		}
		defer f.Close()
		baseline = &client.BaselineFile{Body: f, Name: filepath.Base(baselineFile), ContentType: client.BaselineCSV}
		if strings.EqualFold(filepath.Ext(baselineFile), ".parquet") {
			baseline.ContentType = client.BaselineParquet
		}
	}
	c, err := a.client()
	if err != nil {
		return err
	}
	art, err := openArtifact(ctx, path)
	if err != nil {
		return err
	}
	defer art.Close()

	bar := a.newProgress(art.total)
	body := &eofNotifier{r: art, onEOF: func() { bar.describe("checking") }}
	pushVersion := c.PushVersion
	if noWait {
		pushVersion = c.PushVersionNoWait
	}
	if baseline != nil {
		pushVersion = func(ctx context.Context, model string, artifact io.Reader, filename string, meta *slipway.VersionMetadata,
			progress func(sent, total int64), total int64) (*slipway.ModelVersion, error) {
			return c.PushVersionWithBaseline(ctx, model, artifact, filename, meta, baseline, progress, total)
		}
	}
	v, err := pushVersion(ctx, model, body, art.name, meta, bar.set, art.total)
	bar.finish()
	if err != nil {
		return err
	}
	if v.State == slipway.VersionReady && alias != "" {
		move, err := c.SetAlias(ctx, model, alias, v.Version)
		if err != nil {
			_ = a.printPushed(v) // the alias is what failed: that is the error to report
			return fmt.Errorf("version %d is READY but setting alias %q failed: %w", v.Version, alias, err)
		}
		v.Aliases = append(v.Aliases, move.Alias)
	}
	if err := a.printPushed(v); err != nil {
		return err
	}
	if v.State == slipway.VersionFailed {
		failed := 0
		for _, c := range v.Checks {
			if !c.Passed {
				failed++
			}
		}
		msg := fmt.Sprintf("version %d of %s is FAILED: %d of %d checks failed", v.Version, v.Model, failed, len(v.Checks))
		if alias != "" {
			msg += fmt.Sprintf("; alias %q was not moved", alias)
		}
		return errors.New(msg)
	}
	return nil
}

func (a *app) printPushed(v *slipway.ModelVersion) error {
	return show(a, v, nil, a.printPushedText)
}

func (a *app) printPushedText(v *slipway.ModelVersion) {
	tw := newTable(a.stdout)
	versionRows(tw, v)
	row(tw, "Files:", fmt.Sprintf("%d (%s)", len(v.Files), formatBytes(v.Size)))
	if len(v.Aliases) > 0 {
		row(tw, "Aliases:", strings.Join(v.Aliases, ", "))
	}
	tw.Flush()
	a.printChecks(v.Checks)
	if v.State == slipway.VersionRegistering {
		fmt.Fprintf(a.stdout, "The checks run on the server: 'slipway models get %s:%d' shows their verdict.\n", v.Model, v.Version)
	}
}

// readMetadata reads a metadata file, refusing unknown fields here rather than after the upload.
func readMetadata(path string) (*slipway.VersionMetadata, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("metadata: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var m slipway.VersionMetadata
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("metadata file %s: %w", path, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("metadata file %s: unexpected data after the JSON object", path)
	}
	return &m, nil
}

// artifact is what push uploads: a file as is, or a directory as a tar.gz stream.
type artifact struct {
	io.Reader
	name  string // file name sent to the server
	total int64  // bytes, or -1 when unknown (a directory)
	close func() error
}

func (a *artifact) Close() error { return a.close() }

func openArtifact(ctx context.Context, path string) (*artifact, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Mode().IsRegular() {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		return &artifact{Reader: f, name: filepath.Base(path), total: fi.Size(), close: f.Close}, nil
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%s is neither a directory nor a regular file", path)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	// The archive is written into a pipe while the upload reads it: nothing is buffered whole.
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		pw.CloseWithError(writeTarGz(ctx, pw, abs))
	}()
	closeFn := func() error {
		pr.CloseWithError(errors.New("push ended")) // stops the writer if the upload ended early
		<-done
		return nil
	}
	return &artifact{Reader: pr, name: filepath.Base(abs) + ".tar.gz", total: -1, close: closeFn}, nil
}

// skipped reports whether a directory entry stays out of the pushed archive.
func skipped(d fs.DirEntry) bool {
	name := d.Name()
	if d.IsDir() {
		return name == "__pycache__" || name == ".git"
	}
	return strings.HasSuffix(name, ".pyc") || name == ".gitignore" || name == ".DS_Store"
}

// writeTarGz writes the regular files under root as a tar.gz, with slash-separated relative names. Links
// and special files are refused: the server would refuse them too, after the upload.
func writeTarGz(ctx context.Context, w io.Writer, root string) error {
	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	files := 0
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if p == root {
			return nil
		}
		if skipped(d) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return nil
		case d.Type()&fs.ModeSymlink != 0:
			return fmt.Errorf("%s is a symbolic link: artifacts may not contain links; copy the file it points to instead", p)
		case !d.Type().IsRegular():
			return fmt.Errorf("%s is not a regular file (%s): artifacts hold only files and directories", p, d.Type())
		}
		files++
		return addFile(tw, p, filepath.ToSlash(rel))
	})
	if err != nil {
		return err
	}
	if files == 0 {
		return fmt.Errorf("%s holds no files to push", root)
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}

func addFile(tw *tar.Writer, path, name string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Size: fi.Size(), Mode: int64(fi.Mode().Perm()), ModTime: fi.ModTime()}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if _, err := io.CopyN(tw, f, fi.Size()); err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%s shrank while it was being read: push again once it is written", path)
		}
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// eofNotifier calls onEOF once, when r is read to its end.
type eofNotifier struct {
	r     io.Reader
	onEOF func()
	once  sync.Once
}

func (e *eofNotifier) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err == io.EOF {
		e.once.Do(e.onEOF)
	}
	return n, err
}

// newProgress returns the progress bar of an upload or download of total bytes (-1 when unknown: a spinner
// with the bytes sent) on stderr, or a bar that does nothing when stderr is not a terminal.
func (a *app) newProgress(total int64) termBar {
	if total <= 0 {
		total = -1
	}
	return a.newBar(total,
		progressbar.OptionSetDescription("uploading"),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowTotalBytes(true),
		progressbar.OptionShowCount(),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSpinnerType(14),
	)
}
