package jobs

import (
	"context"
	"errors"
	"fmt"
	"os"
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
	for {
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
