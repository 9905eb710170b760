package jobs

import (
	"archive/tar"
	"archive/zip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/archive"
)

// Bounds of a job spec.
const (
	DefaultMaxRuntime = 24 * 60 * 60     // seconds, when the spec gives none
	maxMaxRuntime     = 7 * 24 * 60 * 60 // a week
	maxArgs           = 1000
)

var (
	javaClassPattern = regexp.MustCompile(`^[A-Za-z_$][A-Za-z0-9_$]*(\.[A-Za-z_$][A-Za-z0-9_$]*)*$`)
	envNamePattern   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// Upload is an uploaded artifact spooled to disk by the caller.
type Upload struct {
	Path     string
	Filename string // the client's file name (names a single-file artifact)
}

// CreateJob unpacks the artifact (safely, with the server's archive limits), checks the spec and that the
// entrypoint exists, and stores the job.
func (s *Service) CreateJob(ctx context.Context, spec slipway.JobSpec, up Upload, by string) (*slipway.Job, error) {
	if err := slipway.ValidateName("job", spec.Name); err != nil {
		return nil, err
	}
	if err := validateRunInput(spec.Args, spec.Env); err != nil {
		return nil, err
	}
	if spec.MaxRuntimeSeconds < 0 || spec.MaxRuntimeSeconds > maxMaxRuntime {
		return nil, slipway.Errorf(slipway.EINVALID, "max_runtime_seconds must be 1-%d (0 for the default of %d), got %d", maxMaxRuntime, DefaultMaxRuntime, spec.MaxRuntimeSeconds)
	}
	if spec.MaxRuntimeSeconds == 0 {
		spec.MaxRuntimeSeconds = DefaultMaxRuntime
	}
	if err := validateLimits(spec.Limits); err != nil {
		return nil, err
	}
	if err := spec.Resources.Validate(); err != nil {
		return nil, err
	}
	if spec.Resources.IsZero() {
		spec.Resources = nil
	}
	if _, err := s.store.FindJob(ctx, spec.Name); err == nil {
		return nil, slipway.Errorf(slipway.ECONFLICT, "job %q already exists: delete it first or pick another name", spec.Name)
	}
	digest, entries, err := s.storeArtifact(ctx, up)
	if err != nil {
		return nil, err
	}
	files := make([]string, len(entries))
	for i, e := range entries {
		files[i] = e.Path
	}
	if spec.Entrypoint == "" {
		if len(files) != 1 {
			return nil, slipway.Errorf(slipway.EINVALID, "missing entrypoint: the artifact holds %d files; name the one to run (a .py, .sh, .jar file or a Java main class)", len(files))
		}
		spec.Entrypoint = files[0]
	}
	kind, err := s.entrypointKind(s.artifactDir(digest), spec.Entrypoint, files)
	if err != nil {
		return nil, err
	}
	j := &slipway.Job{JobSpec: spec, Kind: kind, Digest: digest, Files: files, CreatedBy: by}
	if err := s.store.CreateJob(ctx, j); err != nil {
		return nil, err
	}
	s.log.InfoContext(ctx, "job created", "job", j.Name, "entrypoint", j.Entrypoint, "kind", kind, "files", len(files))
	return j, nil
}

func validateLimits(l slipway.JobLimits) error {
	if l.CPUSeconds < 0 || l.MemoryBytes < 0 || l.OpenFiles < 0 || l.Processes < 0 {
		return slipway.Errorf(slipway.EINVALID, "limits must be positive (0 or absent: no limit)")
	}
	if l.MemoryBytes != 0 && l.MemoryBytes < 16<<20 {
		return slipway.Errorf(slipway.EINVALID, "limits.memory_bytes %d is below 16 MiB: no interpreter starts in that", l.MemoryBytes)
	}
	if l.OpenFiles != 0 && l.OpenFiles < 16 {
		return slipway.Errorf(slipway.EINVALID, "limits.open_files %d is below 16: the process could not even start", l.OpenFiles)
	}
	return nil
}

// validateRunInput checks arguments and environment variables of a job or a run.
func validateRunInput(args []string, env map[string]string) error {
	if len(args) > maxArgs {
		return slipway.Errorf(slipway.EINVALID, "too many args (%d): at most %d", len(args), maxArgs)
	}
	for _, a := range args {
		if strings.ContainsRune(a, 0) {
			return slipway.Errorf(slipway.EINVALID, "args must not contain NUL bytes")
		}
	}
	for _, k := range slices.Sorted(maps.Keys(env)) {
		switch {
		case !envNamePattern.MatchString(k):
			return slipway.Errorf(slipway.EINVALID, "env name %q is not a valid variable name (letters, digits, '_', not starting with a digit)", k)
		case strings.HasPrefix(k, "SLIPWAY_"):
			return slipway.Errorf(slipway.EINVALID, "env name %q is reserved: the server sets SLIPWAY_* variables itself", k)
		case strings.ContainsRune(env[k], 0):
			return slipway.Errorf(slipway.EINVALID, "env %s must not contain NUL bytes", k)
		}
	}
	return nil
}

// storeArtifact extracts an upload into artifacts/DIGEST, DIGEST being the sha256 of the content's digest and the
// file name (identical uploads share a folder), and returns the digest and the files.
func (s *Service) storeArtifact(ctx context.Context, up Upload) (string, []archive.Entry, error) {
	content, err := fileDigest(up.Path)
	if err != nil {
		return "", nil, fmt.Errorf("jobs: hash artifact: %w", err)
	}
	tmp, err := os.MkdirTemp(s.tmpDir(), "artifact-")
	if err != nil {
		return "", nil, fmt.Errorf("jobs: %w", err)
	}
	defer s.removeScratch(tmp) // renamed away when the artifact is new
	name := path.Base(up.Filename)
	if name == "" || name == "." || name == "/" {
		name = "artifact"
	}
	// The folder is named for the content and the file name: a single-file artifact is stored under its name.
	sum := sha256.Sum256([]byte(content + "\x00" + name))
	digest := hex.EncodeToString(sum[:])
	src := up.Path
	if strings.HasSuffix(strings.ToLower(name), ".jar") {
		// A jar is a zip, which Extract would unpack: wrap it in a one-file tar so that it stays whole (and still
		// goes through the same checks).
		if src, err = s.tarOne(up.Path, name); err != nil {
			return "", nil, err
		}
		defer s.removeScratch(src)
	}
	entries, err := archive.Extract(ctx, src, name, tmp, s.cfg.Limits)
	if err != nil {
		return "", nil, artifactError(err)
	}
	if len(entries) == 0 {
		return "", nil, slipway.Errorf(slipway.EINVALID, "the artifact holds no files")
	}
	dest := s.artifactDir(digest)
	if _, err := os.Stat(dest); err == nil {
		return digest, entries, nil
	}
	if err := os.Rename(tmp, dest); err != nil {
		if _, serr := os.Stat(dest); serr == nil {
			return digest, entries, nil // a concurrent upload of the same bytes won
		}
		return "", nil, fmt.Errorf("jobs: store artifact: %w", err)
	}
	return digest, entries, nil
}

// tarOne writes a tar holding the file at path under name.
func (s *Service) tarOne(path, name string) (string, error) {
	in, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("jobs: %w", err)
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return "", fmt.Errorf("jobs: %w", err)
	}
	out, err := os.CreateTemp(s.tmpDir(), "jar-*.tar")
	if err != nil {
		return "", fmt.Errorf("jobs: %w", err)
	}
	tw := tar.NewWriter(out)
	err = tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: st.Size(), ModTime: st.ModTime(), Typeflag: tar.TypeReg})
	if err == nil {
		_, err = io.Copy(tw, in)
	}
	if err == nil {
		err = tw.Close()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		s.removeScratch(out.Name())
		return "", fmt.Errorf("jobs: wrap jar: %w", err)
	}
	return out.Name(), nil
}

func artifactError(err error) error {
	switch {
	case errors.Is(err, archive.ErrTooLarge):
		return slipway.Wrap(slipway.ETOOLARGE, err, "artifact refused: %v", err)
	case errors.Is(err, archive.ErrUnsafe):
		return slipway.Wrap(slipway.EINVALID, err, "artifact refused: %v", err)
	case errors.Is(err, archive.ErrInvalid):
		return slipway.Wrap(slipway.EINVALID, err, "artifact could not be unpacked: %v", err)
	}
	return fmt.Errorf("jobs: unpack artifact: %w", err)
}

func fileDigest(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// entrypointKind says how to start entry, checking that it exists in the artifact.
func (s *Service) entrypointKind(dir, entry string, files []string) (string, error) {
	clean := path.Clean(strings.TrimPrefix(entry, "./"))
	has := slices.Contains(files, clean)
	ext := strings.ToLower(path.Ext(clean))
	switch {
	case ext == ".py" || ext == ".sh" || ext == ".jar":
		if !has {
			return "", slipway.Errorf(slipway.EINVALID, "entrypoint %q is not in the artifact (files: %s)", entry, listFiles(files))
		}
		switch ext {
		case ".py":
			return slipway.EntryPython, nil
		case ".sh":
			return slipway.EntryShell, nil
		}
		if _, err := exec.LookPath("java"); err != nil {
			return "", slipway.Errorf(slipway.EINVALID, "entrypoint %q needs java, which this server does not have on its PATH", entry)
		}
		return slipway.EntryJar, nil
	case !has && javaClassPattern.MatchString(entry) && isUpper(entry[strings.LastIndex(entry, ".")+1]):
		class := strings.ReplaceAll(entry, ".", "/") + ".class"
		if !slices.Contains(files, class) && !jarsHold(dir, files, class) {
			return "", slipway.Errorf(slipway.EINVALID, "entrypoint %q: no file %s in the artifact nor in its .jar files; give a .py, .sh or .jar file, or a Java main class", entry, class)
		}
		if _, err := exec.LookPath("java"); err != nil {
			return "", slipway.Errorf(slipway.EINVALID, "entrypoint %q is a Java class but this server has no java on its PATH", entry)
		}
		return slipway.EntryJavaClass, nil
	}
	return "", slipway.Errorf(slipway.EINVALID, "entrypoint %q: use a .py (Python), .sh (shell) or .jar file of the artifact, or a Java main class such as com.example.Train", entry)
}

func listFiles(files []string) string {
	if len(files) > 10 {
		return strings.Join(files[:10], ", ") + fmt.Sprintf(" and %d more", len(files)-10)
	}
	return strings.Join(files, ", ")
}

// jarsHold reports whether a .jar at the top of the artifact or in lib/ contains class.
func jarsHold(dir string, files []string, class string) bool {
	for _, f := range files {
		if !strings.HasSuffix(f, ".jar") || (strings.Contains(f, "/") && path.Dir(f) != "lib") {
			continue
		}
		zr, err := zip.OpenReader(filepath.Join(dir, filepath.FromSlash(f)))
		if err != nil {
			continue
		}
		found := false
		for _, zf := range zr.File {
			if zf.Name == class {
				found = true
				break
			}
		}
		_ = zr.Close() // read only: its close loses nothing
		if found {
			return true
		}
	}
	return false
}

// GetJob returns a job.
func (s *Service) GetJob(ctx context.Context, name string) (*slipway.Job, error) {
	return s.store.FindJob(ctx, name)
}

// ListJobs returns every job.
func (s *Service) ListJobs(ctx context.Context) ([]*slipway.Job, error) {
	return s.store.FindJobs(ctx)
}

// DeleteJob deletes a job that has no queued or running runs. Its runs' records and outputs stay.
func (s *Service) DeleteJob(ctx context.Context, name string) error {
	if _, err := s.store.FindJob(ctx, name); err != nil {
		return err
	}
	for _, st := range []slipway.RunState{slipway.RunAccepted, slipway.RunInProgress} {
		runs, n, err := s.store.FindJobRuns(ctx, slipway.JobRunFilter{Job: name, State: st, Limit: 1})
		if err != nil {
			return err
		}
		if n > 0 {
			return slipway.Errorf(slipway.ECONFLICT, "job %s has a run %s (%s): cancel it first", name, runs[0].ID, st)
		}
	}
	return s.store.DeleteJob(ctx, name)
}

// RunInput overrides a job's arguments and environment for one run.
type RunInput struct {
	Args []string          `json:"args"` // nil: the job's args
	Env  map[string]string `json:"env"`  // merged over the job's env
}

// RunJob queues a run of a job.
func (s *Service) RunJob(ctx context.Context, name string, in RunInput, by string) (*slipway.JobRun, error) {
	j, err := s.store.FindJob(ctx, name)
	if err != nil {
		return nil, err
	}
	if err := validateRunInput(in.Args, in.Env); err != nil {
		return nil, err
	}
	args := j.Args
	if in.Args != nil {
		args = in.Args
	}
	env := maps.Clone(j.Env)
	if env == nil {
		env = map[string]string{}
	}
	maps.Copy(env, in.Env)
	r := &slipway.JobRun{ID: newID("jr"), Job: j.Name, State: slipway.RunAccepted, Args: args, Env: in.Env, CreatedBy: by,
		CreatedAt: s.now().UTC(), Spec: slipway.RunSpec{Kind: j.Kind, Entrypoint: j.Entrypoint, ArtifactDir: j.Digest,
			Args: args, Env: env, MaxRuntimeSeconds: j.MaxRuntimeSeconds, Limits: j.Limits,
			Resources: j.Resources}}
	return r, s.enqueue(ctx, r)
}

func (s *Service) enqueue(ctx context.Context, r *slipway.JobRun) error {
	if err := s.store.CreateJobRun(ctx, r); err != nil {
		return err
	}
	s.log.InfoContext(ctx, "job run queued", "run_id", r.ID, "job", r.Job, "pipeline_run", r.PipelineRun, "step", r.Step)
	s.kick()
	s.changed.notify()
	return nil
}

// GetRun returns a job run.
func (s *Service) GetRun(ctx context.Context, id string) (*slipway.JobRun, error) {
	return s.store.FindJobRun(ctx, id)
}

// ListRuns returns job runs, newest first.
func (s *Service) ListRuns(ctx context.Context, f slipway.JobRunFilter) ([]*slipway.JobRun, int, error) {
	if f.Job != "" {
		if err := slipway.ValidateName("job", f.Job); err != nil {
			return nil, 0, err
		}
	}
	switch f.State {
	case "", slipway.RunAccepted, slipway.RunInProgress, slipway.RunSucceeded, slipway.RunFailed, slipway.RunCanceled:
	default:
		return nil, 0, slipway.Errorf(slipway.EINVALID, "unknown state %q: use ACCEPTED, IN_PROGRESS, SUCCEEDED, FAILED or CANCELED", f.State)
	}
	return s.store.FindJobRuns(ctx, f)
}

// CancelRun cancels a queued run at once, or stops a running one's process group (SIGTERM, then SIGKILL after
// the grace period); the run ends CANCELED. Canceling a finished run is a conflict.
func (s *Service) CancelRun(ctx context.Context, id, by string) (*slipway.JobRun, error) {
	r, err := s.store.FindJobRun(ctx, id)
	if err != nil {
		return nil, err
	}
	if r.State.Terminal() {
		return nil, slipway.Errorf(slipway.ECONFLICT, "job run %s is already %s", id, r.State)
	}
	reason := "canceled"
	if by != "" {
		reason = "canceled by " + by
	}
	if r.State == slipway.RunAccepted {
		r.State, r.Reason, r.FinishedAt = slipway.RunCanceled, reason, ptr(s.now().UTC())
		err := s.store.FinishJobRun(ctx, r)
		if err == nil {
			s.changed.notify()
			return r, nil
		}
		if slipway.ErrorCode(err) != slipway.ECONFLICT {
			return nil, err
		}
		// It started meanwhile: stop it below.
	}
	s.mu.Lock()
	ar := s.running[id]
	s.mu.Unlock()
	switch {
	case ar != nil:
		ar.requestCancel(reason)
	case s.cfg.Leases == nil:
		// One server: a run in progress that this server does not follow is ending right now.
		return nil, slipway.Errorf(slipway.ECONFLICT, "job run %s is finishing: retry in a moment", id)
	default:
		// Its process runs on its owner server: the owner reads the flag within a second (stopCanceledElsewhere).
		if err := s.store.RequestJobRunCancel(ctx, id, reason); err != nil {
			return nil, err
		}
		s.log.InfoContext(ctx, "job run cancel requested from its owner server", "run_id", id, "by", by)
	}
	return s.waitRun(ctx, id)
}

// elsewherePoll is how often a waiter reads a run that another server may be changing: that server's changes
// do not wake this server's waiters.
const elsewherePoll = 200 * time.Millisecond

// waitRun blocks until run id is over (or ctx ends) and returns it.
func (s *Service) waitRun(ctx context.Context, id string) (*slipway.JobRun, error) {
	var poll <-chan time.Time
	if s.cfg.Leases != nil {
		t := time.NewTicker(elsewherePoll)
		defer t.Stop()
		poll = t.C
	}
	for {
		ch := s.changed.wait()
		r, err := s.store.FindJobRun(ctx, id)
		if err != nil || r.State.Terminal() {
			return r, err
		}
		select {
		case <-ch:
		case <-poll:
		case <-ctx.Done():
			return r, nil
		}
	}
}

// WaitRun blocks until the run is over or ctx ends, and returns it as last seen.
func (s *Service) WaitRun(ctx context.Context, id string) (*slipway.JobRun, error) {
	return s.waitRun(ctx, id)
}

// isUpper: Java class names start with a capital letter (com.example.Train), which tells them from file names
// such as train.rb.
func isUpper(c byte) bool { return c >= 'A' && c <= 'Z' }
