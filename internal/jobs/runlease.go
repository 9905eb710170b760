package jobs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/cluster"
	"github.com/slipway-ml/slipway/internal/executor"
)

// Runs shared among several servers (Config.Leases; internal/cluster):
//
//   - A job run is owned by the server whose queue claimed it: it takes the run's lease before it moves the run
//     to IN_PROGRESS, renews it while the process runs, and releases it when the run is over.
//   - A pipeline run is owned by the server that drives it: the one that started or retried it, or adopted it.
//   - Every server looks once a second (AdoptEvery) for runs whose lease nobody holds and adopts them: a
//     pipeline run gets a driver here, which continues from the steps' records (finished steps are not run
//     again; an attempt that was running is retried by the step's retry policy); a job run is re-attached when
//     its process was started from this data folder (this server restarted), otherwise it ends FAILED with a
//     reason naming the lost server, and a pipeline step retries it by its policy.
//   - A server that loses a lease (the database gave it to another server) stops that work here; its writes of
//     the run's progress are refused by the store, which accepts them only from the run's recorded owner.
//   - At shutdown (SIGTERM) the processes of job runs are stopped rather than left running for a restart: the
//     run is FAILED "server ... shut down" and the pipeline it belongs to retries it elsewhere. A process left
//     behind could only be re-attached by a server on this machine's data folder, while another server would
//     already have run the step again. The drivers release their leases as they stop, so that the other
//     servers continue the pipeline runs at once.

// acquireRun takes the lease of a run this server is about to own; true on one server.
func (s *Service) acquireRun(ctx context.Context, kind slipway.RunKind, id string, onLost func()) (bool, error) {
	if s.cfg.Leases == nil {
		return true, nil
	}
	ok, err := s.cfg.Leases.Acquire(ctx, cluster.RunLease(kind, id), onLost)
	if err != nil {
		return false, fmt.Errorf("jobs: take the lease of %s run %s: %w", kind, id, err)
	}
	return ok, nil
}

// releaseRun gives the lease of a run up: it is over, or this server stopped working on it.
func (s *Service) releaseRun(kind slipway.RunKind, id string) {
	if s.cfg.Leases == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.cfg.Leases.Release(ctx, cluster.RunLease(kind, id)); err != nil {
		s.log.Warn("release the lease of a run", "kind", kind, "run_id", id, "error", err)
	}
}

// lostJobRun stops the process of a job run whose lease another server holds now (it fails or re-runs the run).
func (s *Service) lostJobRun(id string) {
	s.mu.Lock()
	ar := s.running[id]
	s.mu.Unlock()
	if ar != nil {
		s.log.Warn("lost the lease of a job run: stopping its process here, another server owns the run", "run_id", id)
		ar.requestCancel("this server lost the run's lease to another server")
	}
}

// lostPipelineRun stops driving a pipeline run whose lease another server holds now.
func (s *Service) lostPipelineRun(id string) {
	s.log.Warn("lost the lease of a pipeline run: another server drives it", "pipeline_run", id)
	s.stopDriver(id)
}

// adoptLoop adopts orphan runs every AdoptEvery until the service closes.
func (s *Service) adoptLoop(ctx context.Context) {
	select { // job runs need the URL to be re-attached; nothing runs before it is known
	case <-s.urlReady:
	case <-ctx.Done():
		return
	}
	t := time.NewTicker(s.cfg.AdoptEvery)
	defer t.Stop()
	for tick := 0; ; tick++ {
		if tick%strayEvery == 0 {
			s.stopStrays(ctx)
		}
		s.stopCanceledElsewhere(ctx)
		if err := s.adoptOrphans(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("adopt runs of lost servers", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// adoptOrphans takes over the job runs, then the pipeline runs, whose owner no longer renews their lease.
func (s *Service) adoptOrphans(ctx context.Context) error {
	jobs, err := cluster.OrphanRuns(ctx, s.cfg.Leases, s.store, slipway.RunKindJob)
	if err != nil {
		return err
	}
	for _, r := range jobs {
		id := r.ID
		ok, err := cluster.AdoptRun(ctx, s.cfg.Leases, s.store, slipway.RunKindJob, r, func() { s.lostJobRun(id) })
		if err != nil {
			return err
		}
		if ok {
			if err := s.adoptJobRun(ctx, r); err != nil {
				return err
			}
		}
	}
	pipelines, err := cluster.OrphanRuns(ctx, s.cfg.Leases, s.store, slipway.RunKindPipeline)
	if err != nil {
		return err
	}
	for _, r := range pipelines {
		if s.driving(r.ID) {
			continue // its driver is stopping here (a lost lease); the next look adopts it
		}
		id := r.ID
		ok, err := cluster.AdoptRun(ctx, s.cfg.Leases, s.store, slipway.RunKindPipeline, r, func() { s.lostPipelineRun(id) })
		if err != nil {
			return err
		}
		if ok {
			s.log.InfoContext(ctx, "adopted a pipeline run: continuing it from its steps' records", "pipeline_run", r.ID, "lost_owner", r.Owner)
			s.startDriver(r.ID)
		}
	}
	return nil
}

// adoptJobRun follows a job run this server just took over: re-attached when its process was started from
// this data folder and lives on (this server is its owner's restart), FAILED otherwise.
func (s *Service) adoptJobRun(ctx context.Context, o slipway.OwnedRun) error {
	r, err := s.store.FindJobRun(ctx, o.ID)
	if err != nil {
		s.releaseRun(slipway.RunKindJob, o.ID)
		return fmt.Errorf("jobs: adopt job run %s: %w", o.ID, err)
	}
	if _, err := os.Stat(s.runDir(r.ID)); err == nil && r.PID != 0 {
		lw, err := openLog(s.logPath(r.ID), s.cfg.MaxLog)
		if err != nil {
			s.releaseRun(slipway.RunKindJob, r.ID)
			return fmt.Errorf("jobs: adopt job run %s: open log: %w", r.ID, err)
		}
		h := executor.Handle{ID: r.ID, PID: r.PID, ProcStart: r.ProcStart, StateDir: s.runDir(r.ID)}
		err = s.exec.Recover(ctx, h, lw.line)
		if err == nil {
			lw.note("re-attached to the run after " + cluster.LostOwner(o) + " stopped renewing its lease")
			s.log.InfoContext(ctx, "adopted a job run: re-attached to its process", "run_id", r.ID, "pid", r.PID, "lost_owner", o.Owner)
			s.resume(r, lw)
			return nil
		}
		lw.close()
		if !errors.Is(err, executor.ErrLost) {
			s.releaseRun(slipway.RunKindJob, r.ID)
			return fmt.Errorf("jobs: adopt job run %s: %w", r.ID, err)
		}
	}
	s.revoke(ctx, r.TokenID)
	r.State, r.ExitCode, r.FinishedAt = slipway.RunFailed, nil, ptr(s.now().UTC())
	r.Reason = cluster.LostOwner(o) + " stopped renewing the run's lease (killed, or cut off from the database) while the run was in progress there"
	if r.PipelineRun != "" {
		r.Reason += "; the pipeline retries the step as its retry policy allows"
	}
	err = s.store.FinishJobRun(ctx, r)
	s.releaseRun(slipway.RunKindJob, r.ID)
	if err != nil {
		return fmt.Errorf("jobs: adopt job run %s: %w", r.ID, err)
	}
	s.log.WarnContext(ctx, "adopted a job run whose server is lost: the run failed", "run_id", r.ID, "lost_owner", o.Owner,
		"pipeline_run", r.PipelineRun, "step", r.Step)
	s.changed.notify()
	return nil
}

// strayEvery is how many adoption looks pass between two looks for stray processes.
const strayEvery = 30

// stopStrays ends the processes that this data folder's previous server (killed) left running for job runs
// that another server has since taken over: the run ended there (FAILED, naming the lost server) and its step
// may run again elsewhere, so the old process must not go on. A run's working folder exists only while a
// process of this folder may run for it (it is removed when the run ends here), which keeps the look short.
func (s *Service) stopStrays(ctx context.Context) {
	entries, err := os.ReadDir(s.runsDir())
	if err != nil {
		return
	}
	for _, e := range entries {
		id := e.Name()
		if !dirExists(filepath.Join(s.runDir(id), "work")) || s.following(id) {
			continue
		}
		r, err := s.store.FindJobRun(ctx, id)
		if err != nil || !r.State.Terminal() || r.PID == 0 {
			continue // in progress: its lease decides who follows it (the adoption re-attaches it here)
		}
		h := executor.Handle{ID: r.ID, PID: r.PID, ProcStart: r.ProcStart, StateDir: s.runDir(r.ID)}
		if err := s.exec.Recover(ctx, h, func(string, time.Time, string) {}); err == nil {
			s.log.WarnContext(ctx, "stopping a process left running by this folder's previous server: its run ended on another server",
				"run_id", r.ID, "pid", r.PID, "state", r.State)
			if err := s.exec.Stop(ctx, r.ID, s.cfg.StopGrace); err != nil {
				s.log.Warn("stop a stray process", "run_id", r.ID, "error", err)
			}
			_, _ = s.exec.Wait(ctx, r.ID) // its exit is not the run's: the run is over
		}
		s.removeRunScratch(r.ID)
	}
}

// stopCanceledElsewhere stops the processes of the job runs of this server that were canceled through another
// server (CancelRun there flags the run; the process is here). One query for all of them, and none while this
// server runs nothing.
func (s *Service) stopCanceledElsewhere(ctx context.Context) {
	s.mu.Lock()
	idle := len(s.running) == 0
	s.mu.Unlock()
	if idle {
		return
	}
	flagged, err := s.store.CancelRequestedJobRuns(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("look for job runs canceled through another server", "error", err)
		}
		return
	}
	for id, reason := range flagged {
		s.mu.Lock()
		ar := s.running[id]
		s.mu.Unlock()
		if ar != nil {
			s.log.Info("job run canceled through another server: stopping it here", "run_id", id)
			ar.requestCancel(reason)
		}
	}
}

// following reports whether this server follows job run id now.
func (s *Service) following(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.running[id] != nil
}
