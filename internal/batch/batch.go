// Package batch runs batch predictions: it reads an input (a CSV, JSON Lines or Parquet file, or a SQL query
// on a named connection) chunk by chunk, scores each chunk with the model's real runtime in the run's own
// replica processes (serving.Pool), and writes the predictions to a table (SQLite, PostgreSQL) or a file
// (CSV, Parquet). Each chunk is committed together with its checkpoint, so that a run interrupted by a crash
// resumes where it stopped and the output holds every row exactly once.
package batch

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/blob"
	"github.com/slipway-ml/slipway/internal/cluster"
	"github.com/slipway-ml/slipway/internal/modelruntime"
)

// Defaults and limits of a run.
const (
	DefaultChunkSize   = 10_000
	MaxChunkSize       = 1_000_000
	DefaultParallelism = 2
	MaxParallelism     = 32
	DefaultTimeoutMS   = 600_000
	maxRunErrors       = 100 // errors kept in a run's record; the errors table keeps them all
)

// Materializer gives the folder holding a version's files.
type Materializer interface {
	Materialize(ctx context.Context, v *slipway.ModelVersion) (string, error)
}

// Config wires a Service.
type Config struct {
	Store       slipway.BatchStore
	Models      slipway.ModelStore
	Deployments slipway.DeploymentStore
	Files       Materializer
	Runtimes    *modelruntime.Runtimes
	Log         *slog.Logger
	// Blobs is the installation's artifact store: it keeps the uploaded inputs, the file outputs and their
	// parts (blobs.go). Default: a local store in Dir/blobs.
	Blobs blob.Store
	// Dir is scratch space: the runs' part and merge files (runs/ID/), copies of inputs fetched from a
	// bucket (cache/).
	Dir string
	// ImportDir is the folder input paths are relative to; nothing outside it can be read.
	ImportDir   string
	Connections map[string]*Conn
	// MaxRuns is how many runs score at once (others wait in ACCEPTED); default 2.
	MaxRuns        int
	ReadyTimeout   time.Duration
	MaxUploadBytes int64
	// NoResume leaves the runs in the store alone at Open: with several servers on one database, another live
	// server may be running them (internal/app sets it when this server does not start alone).
	NoResume bool
	// Leases shares the runs with the other servers of one database (nil: one server). Each run not over is
	// owned through its lease (cluster.RunLease); Owners records the owner and moves it by compare-and-set.
	// Another server resumes a run whose lease nobody renews from its checkpoints (runlease.go).
	Leases cluster.Leases
	Owners slipway.RunOwnerStore
	// AdoptEvery is how often a server looks for runs whose owner stopped renewing (default 1s).
	AdoptEvery time.Duration
}

// Service manages batch prediction runs.
type Service struct {
	store     slipway.BatchStore
	models    slipway.ModelStore
	deploys   slipway.DeploymentStore
	files     Materializer
	blobs     blob.Store
	runtimes  *modelruntime.Runtimes
	log       *slog.Logger
	dir       string
	importDir string
	conns     map[string]*Conn
	maxUpload int64
	ready     time.Duration
	slots     chan struct{}
	noResume  bool
	leases    cluster.Leases
	owners    slipway.RunOwnerStore
	adopt     time.Duration
	closeOnce sync.Once

	mu     sync.Mutex
	active map[string]*activeRun

	ctx    context.Context // runs' lifetime: Close cancels it
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// ProgressEvery bounds how often a run's progress is written to the store.
	ProgressEvery time.Duration
	// afterCommit, when set (tests), is called after each chunk is committed.
	afterCommit func(runID string, chunk int)
}

type activeRun struct {
	input  string // the digest of its uploaded input ("" for other inputs): its cached copy is in use
	cancel context.CancelCauseFunc
	prog   *progress
}

// errCanceled is the cause of a run's context when a user cancels it.
var errCanceled = errors.New("batch prediction canceled")

// New returns a Service; Open resumes interrupted runs, Close stops running ones (they resume at next Open).
func New(cfg Config) *Service {
	ctx, cancel := context.WithCancel(context.Background())
	if cfg.MaxRuns <= 0 {
		cfg.MaxRuns = 2
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = 2 * time.Minute
	}
	if cfg.MaxUploadBytes <= 0 {
		cfg.MaxUploadBytes = 1 << 30
	}
	if cfg.Connections == nil {
		cfg.Connections = map[string]*Conn{}
	}
	return &Service{store: cfg.Store, models: cfg.Models, deploys: cfg.Deployments, files: cfg.Files, blobs: cfg.Blobs, runtimes: cfg.Runtimes,
		log: cfg.Log, dir: cfg.Dir, importDir: cfg.ImportDir, conns: cfg.Connections, maxUpload: cfg.MaxUploadBytes,
		ready: cfg.ReadyTimeout, slots: make(chan struct{}, cfg.MaxRuns), active: map[string]*activeRun{},
		ctx: ctx, cancel: cancel, ProgressEvery: 500 * time.Millisecond, noResume: cfg.NoResume || cfg.Leases != nil,
		leases: cfg.Leases, owners: cfg.Owners, adopt: cmp.Or(cfg.AdoptEvery, time.Second)}
}

// Open prepares the folders and resumes the runs a previous server left ACCEPTED or IN_PROGRESS.
func (s *Service) Open(ctx context.Context) error {
	if s.blobs == nil {
		local, err := blob.OpenLocal(filepath.Join(s.dir, "blobs"))
		if err != nil {
			return fmt.Errorf("batch: %w", err)
		}
		s.blobs = local
	}
	// The cache holds copies of inputs fetched for runs of this server's previous life: none runs yet.
	if err := os.RemoveAll(s.cacheDir()); err != nil {
		return fmt.Errorf("batch: clear %s: %w", s.cacheDir(), err)
	}
	for _, d := range []string{s.dir, filepath.Join(s.dir, "runs"), s.cacheDir(), s.importDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("batch: create %s: %w", d, err)
		}
	}
	if err := s.moveLegacyUploads(ctx); err != nil {
		return err
	}
	if s.leases != nil {
		s.wg.Add(1)
		go func() { // owned by the service: ends at Close
			defer s.wg.Done()
			s.adoptLoop(s.ctx)
		}()
	}
	if s.noResume {
		return nil
	}
	if err := s.removeOrphanOutputs(ctx); err != nil {
		return err
	}
	var resume []*slipway.BatchRun
	for _, st := range []slipway.BatchState{slipway.BatchInProgress, slipway.BatchAccepted} {
		runs, _, err := s.store.FindBatchRuns(ctx, slipway.BatchFilter{State: &st})
		if err != nil {
			return err
		}
		resume = append(resume, runs...)
	}
	slices.SortFunc(resume, func(a, b *slipway.BatchRun) int { return a.CreatedAt.Compare(b.CreatedAt) })
	for _, r := range resume {
		s.log.Info("resuming batch prediction", "run_id", r.ID, "state", r.State, "rows_done", r.RowsDone)
		s.launch(r)
	}
	return nil
}

// Close stops every run (left IN_PROGRESS: they resume at the next start) and closes the connections.
func (s *Service) Close() error {
	s.StopRuns()
	var errs []error
	s.closeOnce.Do(func() {
		for _, c := range s.conns {
			errs = append(errs, c.Close())
		}
	})
	return errors.Join(errs...)
}

// StopRuns stops every run (left IN_PROGRESS; on several servers their leases are released, so that another
// server resumes them at once). Creating runs is refused from then on.
func (s *Service) StopRuns() {
	s.cancel()
	s.wg.Wait()
}

// Connections lists the named connections without credentials.
func (s *Service) Connections() []slipway.Connection { return publicConnections(s.conns) }

// Get returns a run, with the live progress when it is running here.
func (s *Service) Get(ctx context.Context, id string) (*slipway.BatchRun, error) {
	r, err := s.store.FindBatchRun(ctx, id)
	if err != nil {
		return nil, err
	}
	s.overlay(r)
	return r, nil
}

// List returns runs, newest first.
func (s *Service) List(ctx context.Context, f slipway.BatchFilter) ([]*slipway.BatchRun, int, error) {
	runs, total, err := s.store.FindBatchRuns(ctx, f)
	for _, r := range runs {
		s.overlay(r)
	}
	return runs, total, err
}

func (s *Service) overlay(r *slipway.BatchRun) {
	if r.Errors == nil {
		r.Errors = []slipway.BatchError{}
	}
	if r.State != slipway.BatchInProgress {
		return
	}
	s.mu.Lock()
	a := s.active[r.ID]
	s.mu.Unlock()
	if a != nil && a.prog != nil {
		p := a.prog.snapshot()
		if p.RowsDone >= r.RowsDone {
			r.RowsTotal, r.RowsDone, r.RowsSkipped, r.RowsPerSecond, r.Errors = p.RowsTotal, p.RowsDone, p.RowsSkipped, p.RowsPerSecond, p.Errors
		}
	}
}

// Cancel stops a run. Chunks already committed stay in the output (their rows carry the run's batch_id).
func (s *Service) Cancel(ctx context.Context, id, by string) (*slipway.BatchRun, error) {
	for attempt := 0; ; attempt++ {
		r, err := s.store.FindBatchRun(ctx, id)
		if err != nil {
			return nil, err
		}
		if r.State.Terminal() {
			return nil, slipway.Errorf(slipway.ECONFLICT, "batch prediction %s is already %s", id, r.State)
		}
		reason := "canceled"
		if by != "" {
			reason += " by " + by
		}
		err = s.store.SetBatchState(ctx, id, r.State, slipway.BatchCanceled, reason)
		if slipway.ErrorCode(err) == slipway.ECONFLICT && attempt == 0 {
			continue // it moved meanwhile (ACCEPTED → IN_PROGRESS): try from the new state
		}
		if err != nil {
			return nil, err
		}
		s.mu.Lock()
		a := s.active[id]
		s.mu.Unlock()
		if a != nil {
			a.cancel(errCanceled)
		}
		return s.Get(ctx, id)
	}
}

// Download is a succeeded run's output file, ready to send.
type Download struct {
	Name    string // the name to download it as
	Size    int64
	ModTime time.Time
	// Content is the file: an *os.File (seekable: ranges resume interrupted downloads) on a local store, the
	// bucket's stream otherwise (verified against the digest as it is read). The caller closes it.
	Content io.ReadCloser
}

// OpenOutput opens a succeeded run's output file, from the artifact store: whichever server wrote it.
func (s *Service) OpenOutput(ctx context.Context, id string) (*Download, error) {
	r, err := s.store.FindBatchRun(ctx, id)
	if err != nil {
		return nil, err
	}
	if r.Spec.Output.Format == "" {
		return nil, slipway.Errorf(slipway.ENOTFOUND, "batch prediction %s writes to table %s on connection %s: it has no file to download", id, r.Spec.Output.Table, r.Spec.Output.Connection)
	}
	if r.State != slipway.BatchSucceeded {
		return nil, slipway.Errorf(slipway.ECONFLICT, "batch prediction %s is %s: its output file is ready once it SUCCEEDED", id, r.State)
	}
	d := &Download{Name: "predictions-" + id + "." + r.Spec.Output.Format, Size: r.Output.Size, ModTime: r.UpdatedAt}
	what := "the output file of batch prediction " + id
	switch _, local := s.blobs.(localFiles); {
	case r.Output.SHA256 == "": // written by an earlier version into this server's folder
		d.Content, err = openLocal(filepath.Join(s.runDir(id), OutputName(r.Spec.Output.Format)), what)
	case local:
		var p string
		if p, _, err = s.blobFile(ctx, r.Output.SHA256, what); err == nil {
			d.Content, err = openLocal(p, what)
		}
	default:
		var rc io.ReadCloser
		if rc, err = s.blobs.Open(ctx, r.Output.SHA256); err == nil {
			d.Content = rc
		}
		err = s.blobError(err, what)
	}
	if err != nil {
		return nil, err
	}
	return d, nil
}

func openLocal(p, what string) (*os.File, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, slipway.Wrap(slipway.ENOTFOUND, err, "%s is missing from the server", what)
	}
	return f, nil
}

// dropParts removes a run's parts once its output no longer needs them (merged, or the run deleted).
func (s *Service) dropParts(ctx context.Context, id string) error {
	parts, err := s.store.FindBatchParts(ctx, id)
	if err != nil {
		return err
	}
	if len(parts) == 0 {
		return nil
	}
	// The records first: a part whose record is gone is never read again, a record whose blob is gone would be.
	if err := s.store.DeleteBatchParts(ctx, id); err != nil {
		return err
	}
	for _, p := range parts {
		s.dropBlob(ctx, p.Digest, "a part of batch prediction "+id)
	}
	return nil
}

// Delete removes a finished run: its record and its file output. A run in progress must be canceled first.
// A table output stays in its database: those rows are the user's data (they carry the run's batch_id).
func (s *Service) Delete(ctx context.Context, id string) error {
	r, err := s.store.FindBatchRun(ctx, id)
	if err != nil {
		return err
	}
	if !r.State.Terminal() {
		return slipway.Errorf(slipway.ECONFLICT, "batch prediction %s is %s: cancel it first (slipway batch cancel %s)", id, r.State, id)
	}
	s.mu.Lock()
	_, stopping := s.active[id]
	s.mu.Unlock()
	if stopping { // canceled, but its goroutine may still be writing a part file
		return slipway.Errorf(slipway.ECONFLICT, "batch prediction %s is still stopping: retry in a moment", id)
	}
	if err := s.store.DeleteBatchRun(ctx, id); err != nil {
		return err
	}
	if err := s.dropParts(ctx, id); err != nil {
		return fmt.Errorf("batch: delete the parts of %s (the next lone start collects their blobs): %w", id, err)
	}
	s.dropBlob(ctx, r.Output.SHA256, "the output file of batch prediction "+id)
	if err := os.RemoveAll(s.runDir(id)); err != nil {
		return fmt.Errorf("batch: delete the output of %s (the next start removes it): %w", id, err)
	}
	return nil
}

// removeOrphanOutputs deletes run folders without a run record: left by a Delete whose file removal failed
// or by a crash in between.
func (s *Service) removeOrphanOutputs(ctx context.Context) error {
	entries, err := os.ReadDir(filepath.Join(s.dir, "runs"))
	if err != nil {
		return fmt.Errorf("batch: list run outputs: %w", err)
	}
	for _, e := range entries {
		_, err := s.store.FindBatchRun(ctx, e.Name())
		switch {
		case slipway.ErrorCode(err) == slipway.ENOTFOUND:
			if err := os.RemoveAll(s.runDir(e.Name())); err != nil {
				return fmt.Errorf("batch: remove the output of deleted run %s: %w", e.Name(), err)
			}
			s.log.Info("removed the output of a deleted batch prediction", "run_id", e.Name())
		case err != nil:
			return err
		}
	}
	return nil
}

func (s *Service) runDir(id string) string { return filepath.Join(s.dir, "runs", filepath.Base(id)) }
