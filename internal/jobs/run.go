package jobs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/executor"
)

// maxOutputsJSON bounds $SLIPWAY_OUTPUT_DIR/outputs.json, the small values a run passes on.
const maxOutputsJSON = 1 << 20

// activeRun is a run being executed by this server.
type activeRun struct {
	once   sync.Once
	cancel chan struct{}
	reason string
}

func (a *activeRun) requestCancel(reason string) {
	a.once.Do(func() {
		a.reason = reason
		close(a.cancel)
	})
}

// dispatch is the queue's worker loop: it takes a slot, claims the oldest queued run and executes it in its
// own goroutine; without queued runs it waits for a kick. Owned by the service; ends with its context.
func (s *Service) dispatch(ctx context.Context) {
	select {
	case <-s.urlReady:
	case <-ctx.Done():
		return
	}
	for {
		select {
		case s.slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		r, err := s.claimNext(ctx)
		if err != nil || r == nil {
			<-s.slots
			if err != nil && ctx.Err() == nil {
				s.log.Error("job queue: claim a run", "error", err)
			}
			select {
			case <-s.wake:
			case <-ctx.Done():
				return
			case <-time.After(30 * time.Second): // a safety net only: kicks normally wake the queue
			}
			continue
		}
		s.wg.Add(1)
		go func() { // owned by the service: ends when the run's process has exited
			defer s.wg.Done()
			defer func() {
				<-s.slots
				s.kick()
			}()
			s.execute(ctx, r)
		}()
	}
}

// claimNext moves the oldest ACCEPTED run to IN_PROGRESS; nil when the queue is empty.
func (s *Service) claimNext(ctx context.Context) (*slipway.JobRun, error) {
	for {
		r, err := s.store.NextAcceptedJobRun(ctx)
		if slipway.ErrorCode(err) == slipway.ENOTFOUND {
			return nil, nil
		} else if err != nil {
			return nil, err
		}
		at := s.now().UTC()
		// Registered before the run is IN_PROGRESS, so that a cancel arriving at any moment finds it.
		s.mu.Lock()
		s.running[r.ID] = &activeRun{cancel: make(chan struct{})}
		s.mu.Unlock()
		// The lease before the claim: another server sees the run IN_PROGRESS only once its lease is held.
		id := r.ID
		owned, err := s.acquireRun(ctx, slipway.RunKindJob, id, func() { s.lostJobRun(id) })
		if err == nil && !owned {
			err = slipway.Errorf(slipway.ECONFLICT, "job run %s is being claimed by another server", id)
		}
		if err == nil {
			err = s.store.StartJobRun(ctx, r.ID, at)
		}
		if err != nil {
			s.mu.Lock()
			delete(s.running, r.ID)
			s.mu.Unlock()
			if owned {
				s.releaseRun(slipway.RunKindJob, id)
			}
		}
		if slipway.ErrorCode(err) == slipway.ECONFLICT && !owned {
			select { // another server claims the oldest run right now: let it finish before looking again
			case <-time.After(50 * time.Millisecond):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			continue
		}
		if slipway.ErrorCode(err) == slipway.ECONFLICT {
			continue // canceled meanwhile
		} else if err != nil {
			return nil, err
		}
		r.State, r.StartedAt = slipway.RunInProgress, &at
		s.changed.notify()
		return r, nil
	}
}

// execute runs r (IN_PROGRESS) to its end: working folder, token, process, timeout and cancel, outputs.
func (s *Service) execute(ctx context.Context, r *slipway.JobRun) {
	log := s.runLog(r)
	s.mu.Lock()
	ar := s.running[r.ID] // registered by claimNext
	s.mu.Unlock()
	defer s.forget(r.ID)
	dbctx := context.WithoutCancel(ctx) // the record of a run is written even while the server shuts down
	select {
	case <-ar.cancel: // canceled between the claim and now: never start it
		r.State, r.Reason = slipway.RunCanceled, ar.reason
		s.finish(dbctx, r, nil, log)
		return
	default:
	}

	lw, tokenID, h, err := s.startProcess(ctx, r)
	if err != nil {
		log.Warn("job run did not start", "error", err)
		if tokenID != "" {
			s.revoke(dbctx, tokenID)
		}
		r.State, r.Reason = slipway.RunFailed, slipway.ErrorMessage(err)
		if slipway.ErrorCode(err) == slipway.EINTERNAL {
			r.Reason = "could not start: " + err.Error()
		}
		s.finish(dbctx, r, lw, log)
		return
	}
	s.mu.Lock()
	s.logs[r.ID] = lw
	s.mu.Unlock()
	if err := s.store.SetJobRunProcess(dbctx, r.ID, h.PID, h.ProcStart, tokenID); err != nil {
		log.Error("record job run process", "error", err)
	}
	log.Info("job run started", "pid", h.PID)
	s.supervise(ctx, r, ar, lw, tokenID, log)
}

// runLog is the service's logger with the run's identity.
func (s *Service) runLog(r *slipway.JobRun) *slog.Logger {
	return s.log.With("run_id", r.ID, "job", r.Job, "pipeline_run", r.PipelineRun, "step", r.Step)
}

// forget removes a run that this server no longer follows, and gives its lease up.
func (s *Service) forget(id string) {
	s.mu.Lock()
	delete(s.running, id)
	delete(s.logs, id)
	s.mu.Unlock()
	s.releaseRun(slipway.RunKindJob, id)
	s.changed.notify()
}

// supervise follows a started (or re-attached) run to its end: its exit, its max runtime (counted from its
// start, also across restarts), a cancel. When the server shuts down, a run whose process can outlive it is
// left running, IN_PROGRESS, for the next server to re-attach; any other is stopped and fails.
func (s *Service) supervise(ctx context.Context, r *slipway.JobRun, ar *activeRun, lw *logWriter, tokenID string, log *slog.Logger) {
	dbctx := context.WithoutCancel(ctx)
	waitCtx, stopWaiting := context.WithCancel(context.Background())
	defer stopWaiting()
	type waitResult struct {
		exit executor.Exit
		err  error // the wait itself failed, or stopped at stopWaiting
	}
	waited := make(chan waitResult, 1)
	go func() { // ends when the process has exited (Stop below guarantees it does), or at stopWaiting
		exit, err := s.exec.Wait(waitCtx, r.ID)
		if err != nil {
			exit = executor.Exit{Code: -1, Signal: err.Error()}
		}
		waited <- waitResult{exit, err}
	}()
	maxRuntime := time.Duration(r.Spec.MaxRuntimeSeconds) * time.Second
	if maxRuntime <= 0 {
		maxRuntime = DefaultMaxRuntime * time.Second
	}
	remaining := maxRuntime
	if r.StartedAt != nil {
		remaining -= s.now().Sub(*r.StartedAt)
	}
	timer := time.NewTimer(max(remaining, 0))
	defer timer.Stop()
	var stopped string // why we stopped it, "" when it ended by itself
	var state slipway.RunState
	var exit executor.Exit
	select {
	case res := <-waited:
		exit = res.exit
	case <-timer.C:
		stopped, state = "exceeded max runtime "+humanDuration(maxRuntime), slipway.RunFailed
	case <-ar.cancel:
		stopped, state = ar.reason, slipway.RunCanceled
	case <-ctx.Done():
		// With other servers (Leases), the run is not left to a restart of this one: runlease.go says why.
		if s.cfg.Leases != nil || !s.exec.Detach(r.ID) {
			stopped, state = "server shut down while the run was in progress", slipway.RunFailed
			if s.cfg.Leases != nil {
				stopped = "server " + s.cfg.Leases.ID() + " shut down while the run was in progress"
			}
			break
		}
		stopWaiting()
		if res := <-waited; res.err == nil {
			exit = res.exit // it ended just now: record its end rather than leave it to the next server
			break
		}
		lw.note("the server is shutting down: the run goes on, and the next server on this data folder re-attaches to it")
		lw.close()
		log.Info("job run left running for the next server")
		return
	}
	if stopped != "" {
		lw.note("stopping the run: " + stopped)
		if err := s.exec.Stop(dbctx, r.ID, s.cfg.StopGrace); err != nil {
			log.Error("stop job run", "error", err)
		}
		exit = (<-waited).exit
	}
	s.revoke(dbctx, tokenID)
	code := exit.Code
	r.ExitCode = &code
	switch {
	case stopped != "":
		r.State, r.Reason = state, stopped
	case exit.Reason != "":
		r.State, r.Reason = slipway.RunFailed, exit.Reason
		if exit.Code < 0 {
			r.ExitCode = nil
		}
	case exit.Signal != "":
		r.State, r.Reason = slipway.RunFailed, signalReason(exit, r.Spec.Limits)
		r.ExitCode = nil
	case exit.Code == 0:
		r.State, r.Reason = slipway.RunSucceeded, ""
	default:
		r.State, r.Reason = slipway.RunFailed, fmt.Sprintf("exit status %d", exit.Code)
		if exit.LastLine != "" {
			r.Reason += ": " + truncate(exit.LastLine, 500)
		}
	}
	if stopped != "" && exit.Signal != "" {
		r.ExitCode = nil
	}
	s.finish(dbctx, r, lw, log)
}

// startProcess prepares the run's folders, token and environment and starts its process.
func (s *Service) startProcess(ctx context.Context, r *slipway.JobRun) (*logWriter, string, executor.Handle, error) {
	dir := s.runDir(r.ID)
	work, out, tmp := filepath.Join(dir, "work"), s.outputDir(r.ID), filepath.Join(dir, "tmp")
	for _, d := range []string{work, out, tmp} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, "", executor.Handle{}, fmt.Errorf("jobs: run folder: %w", err)
		}
	}
	lw, err := openLog(s.logPath(r.ID), s.cfg.MaxLog)
	if err != nil {
		return nil, "", executor.Handle{}, fmt.Errorf("jobs: open log: %w", err)
	}
	if r.Spec.ArtifactDir != "" {
		if err := copyTree(s.artifactDir(r.Spec.ArtifactDir), work); err != nil {
			return lw, "", executor.Handle{}, fmt.Errorf("jobs: copy the artifact into the working folder: %w", err)
		}
	}
	pathArg, args, err := s.command(r, dir)
	if err != nil {
		return lw, "", executor.Handle{}, err
	}
	secret, tokenID, err := s.issueToken(ctx, r)
	if err != nil {
		return lw, "", executor.Handle{}, err
	}
	env := s.environment(r, secret, out, tmp)
	h, err := s.exec.Start(ctx, executor.Spec{ID: r.ID, Path: pathArg, Args: args, Env: env, Dir: work, StateDir: dir,
		MaxOutput: s.cfg.MaxLog + 1<<20, Limits: r.Spec.Limits, Resources: r.Spec.Resources, Output: lw.line}) // the log notes its own truncation
	if err != nil {
		return lw, tokenID, h, err
	}
	return lw, tokenID, h, nil
}

// command is the program and arguments of a run, by entrypoint kind.
func (s *Service) command(r *slipway.JobRun, dir string) (string, []string, error) {
	sp := r.Spec
	switch sp.Kind {
	case slipway.EntryPython:
		return s.cfg.Python, append([]string{"-u", sp.Entrypoint}, sp.Args...), nil
	case slipway.EntryShell:
		return "/bin/sh", append([]string{sp.Entrypoint}, sp.Args...), nil
	case slipway.EntryJar:
		return "java", append([]string{"-jar", sp.Entrypoint}, sp.Args...), nil
	case slipway.EntryJavaClass:
		return "java", append([]string{"-cp", ".:*:lib/*", sp.Entrypoint}, sp.Args...), nil
	case slipway.EntryScript:
		script := filepath.Join(dir, "script.sh")
		if err := os.WriteFile(script, []byte(sp.Script), 0o644); err != nil {
			return "", nil, fmt.Errorf("jobs: write script: %w", err)
		}
		return "/bin/sh", append([]string{"-e", script}, sp.Args...), nil
	}
	return "", nil, slipway.Errorf(slipway.EINVALID, "unknown entrypoint kind %q", sp.Kind)
}

// environment is the child's whole environment: never the server's, only PATH, HOME and the locale from it.
func (s *Service) environment(r *slipway.JobRun, secret, out, tmp string) []string {
	env := map[string]string{}
	for _, k := range []string{"PATH", "HOME", "LANG", "LC_ALL"} {
		if v, ok := os.LookupEnv(k); ok {
			env[k] = v
		}
	}
	if env["PATH"] == "" {
		env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
	}
	env["TMPDIR"] = tmp
	env["PYTHONUNBUFFERED"] = "1"
	maps.Copy(env, r.Spec.Env)
	env["SLIPWAY_URL"] = s.url
	if s.cfg.URLFile != "" {
		env["SLIPWAY_URL_FILE"] = s.cfg.URLFile
	}
	if s.cfg.CACert != "" {
		env["SLIPWAY_CA_CERT"] = s.cfg.CACert
	}
	env["SLIPWAY_TOKEN"] = secret
	env["SLIPWAY_RUN_ID"] = r.ID
	env["SLIPWAY_PROJECT"] = runProject(r) // the only project the run's token may use (the CLI and the SDK send it)
	env["SLIPWAY_OUTPUT_DIR"] = out
	env["SLIPWAY_PYTHON"] = s.cfg.Python // the server's interpreter, for scripts: "$SLIPWAY_PYTHON" train.py
	if r.Job != "" {
		env["SLIPWAY_JOB"] = r.Job
	}
	if r.PipelineRun != "" {
		env["SLIPWAY_PIPELINE_RUN_ID"] = r.PipelineRun
		env["SLIPWAY_STEP"] = r.Step
	}
	list := make([]string, 0, len(env))
	for _, k := range slices.Sorted(maps.Keys(env)) {
		list = append(list, k+"="+env[k])
	}
	return list
}

// issueToken creates the run's editor token (its hash only is stored); it is revoked when the run ends.
func (s *Service) issueToken(ctx context.Context, r *slipway.JobRun) (secret, id string, err error) {
	if s.cfg.Tokens == nil || s.cfg.NewToken == nil {
		return "", "", nil
	}
	secret, hash := s.cfg.NewToken()
	// An editor of the run's project only: the run's API calls work in it and see nothing of other projects.
	t := &slipway.Token{ID: "run-" + r.ID, Name: "run-" + r.ID, Projects: map[string]slipway.Role{runProject(r): slipway.RoleEditor},
		CreatedAt: s.now().UTC()}
	if err := s.cfg.Tokens.CreateToken(ctx, t, hash); err != nil {
		return "", "", fmt.Errorf("jobs: token for run %s: %w", r.ID, err)
	}
	s.record(ctx, &slipway.AuditEntry{Action: "runToken.issue", TokenID: t.ID, TokenName: t.Name, Role: slipway.RoleEditor,
		Project: runProject(r), Target: "tokens/" + t.ID, Status: http.StatusCreated},
		map[string]string{"job_run": r.ID, "job": r.Job, "pipeline_run": r.PipelineRun, "step": r.Step})
	return secret, t.ID, nil
}

func runProject(r *slipway.JobRun) string {
	if r.Project == "" {
		return slipway.DefaultProject
	}
	return r.Project
}

func (s *Service) revoke(ctx context.Context, tokenID string) {
	if tokenID == "" || s.cfg.Tokens == nil {
		return
	}
	if err := s.cfg.Tokens.RevokeToken(ctx, tokenID); err != nil && slipway.ErrorCode(err) != slipway.ENOTFOUND {
		s.log.Error("revoke run token", "token", tokenID, "error", err)
		return
	}
	s.record(ctx, &slipway.AuditEntry{Action: "runToken.revoke", TokenID: tokenID, TokenName: tokenID, Target: "tokens/" + tokenID,
		Status: http.StatusNoContent}, nil)
}

// finish reads the outputs, records the run's end and cleans its working folder (outputs and log stay).
func (s *Service) finish(ctx context.Context, r *slipway.JobRun, lw *logWriter, log *slog.Logger) {
	out := s.outputDir(r.ID)
	outputs, err := readOutputs(out)
	if err != nil && r.State == slipway.RunSucceeded {
		r.State, r.Reason = slipway.RunFailed, err.Error()
	}
	r.Outputs = outputs
	if d, err := digestDir(out); err == nil {
		r.OutputDigest = d
	}
	now := s.now().UTC()
	r.FinishedAt = &now
	if lw != nil {
		lw.note(strings.TrimSpace(fmt.Sprintf("run %s %s", strings.ToLower(string(r.State)), r.Reason)))
		lw.close()
	}
	if err := s.store.FinishJobRun(ctx, r); err != nil {
		log.Warn("record job run end", "error", err)
	}
	s.removeRunScratch(r.ID)
	log.Info("job run finished", "state", r.State, "reason", r.Reason)
}

// removeRunScratch removes the working folders of an ended run; its outputs and log stay.
func (s *Service) removeRunScratch(id string) {
	s.removeScratch(filepath.Join(s.runDir(id), "work"))
	s.removeScratch(filepath.Join(s.runDir(id), "tmp"))
}

// removeScratch removes a file or folder the service is done with. A failure costs only disk space, so it is
// logged rather than failing what the service was doing.
func (s *Service) removeScratch(path string) {
	if err := os.RemoveAll(path); err != nil {
		s.log.Warn("jobs: scratch file left behind", "path", path, "error", err)
	}
}

func signalReason(exit executor.Exit, l slipway.JobLimits) string {
	if strings.Contains(exit.Signal, "CPU time limit") {
		return fmt.Sprintf("exceeded its CPU time limit of %ds (limits.cpu_seconds)", l.CPUSeconds)
	}
	reason := "killed by signal: " + exit.Signal
	if exit.LastLine != "" {
		reason += ": " + truncate(exit.LastLine, 500)
	}
	return reason
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// readOutputs reads outputs.json of an output folder: a JSON object of small values (absent: none).
func readOutputs(dir string) (map[string]any, error) {
	f, err := os.Open(filepath.Join(dir, "outputs.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("outputs.json: %v", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxOutputsJSON+1))
	if err != nil {
		return nil, fmt.Errorf("outputs.json: %v", err)
	}
	if len(b) > maxOutputsJSON {
		return nil, fmt.Errorf("outputs.json is larger than %d bytes: put large results in files of $SLIPWAY_OUTPUT_DIR", maxOutputsJSON)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("outputs.json must be a JSON object of small values: %v", err)
	}
	return out, nil
}

// OutputFile is one file of a run's output folder.
type OutputFile struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

func listDir(dir string) ([]OutputFile, error) {
	var out []OutputFile
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == dir {
				return fs.SkipAll
			}
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		sum, err := fileDigest(p)
		if err != nil {
			return err
		}
		out = append(out, OutputFile{Path: filepath.ToSlash(rel), Size: info.Size(), SHA256: sum})
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, err
}

// digestDir hashes an output folder: the sorted (path, sha256) of its regular files.
func digestDir(dir string) (string, error) {
	files, err := listDir(dir)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for _, f := range files {
		_, _ = fmt.Fprintf(h, "%s\x00%s\n", f.Path, f.SHA256) // a hash never fails a write
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Outputs lists the files a run left in its output folder.
func (s *Service) Outputs(ctx context.Context, id string) ([]OutputFile, error) {
	if _, err := s.store.FindJobRun(ctx, id); err != nil {
		return nil, err
	}
	files, err := listDir(s.outputDir(id))
	if err != nil {
		return nil, fmt.Errorf("jobs: list outputs of %s: %w", id, err)
	}
	return files, nil
}

// OpenOutput opens one output file of a run (the path cannot leave the output folder).
func (s *Service) OpenOutput(ctx context.Context, id, name string) (*os.File, error) {
	if _, err := s.store.FindJobRun(ctx, id); err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(s.outputDir(id))
	if err != nil {
		return nil, slipway.Errorf(slipway.ENOTFOUND, "run %s has no outputs", id)
	}
	defer root.Close()
	f, err := root.Open(filepath.FromSlash(name))
	if err != nil {
		return nil, slipway.Errorf(slipway.ENOTFOUND, "run %s has no output file %q", id, name)
	}
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		_ = f.Close() // read only: its close loses nothing
		return nil, slipway.Errorf(slipway.ENOTFOUND, "output %q of run %s is not a file", name, id)
	}
	return f, nil
}

// copyTree copies the regular files and folders of src into dst (links and special files are skipped: the
// artifact was checked at upload and holds none).
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type().IsRegular():
			info, err := d.Info()
			if err != nil {
				return err
			}
			return copyFile(p, target, info.Mode().Perm()|0o600)
		}
		return nil
	})
}

func copyFile(src, dst string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close() // the copy failed already: that is the error to report
		return err
	}
	return out.Close()
}
