package jobs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/executor"
)

// recover runs at start, before the queue: every job run left IN_PROGRESS by a previous server is re-attached
// (its process was supervised and lives on, or ended meanwhile and recorded how) and followed to its end as if
// this server had started it. A run that cannot be re-attached (its process died with its supervisor, or was
// never supervised) has its process group killed and ends FAILED "server restarted"; pipeline steps then retry
// as their policy allows when the drivers resume, and the tokens of those runs are revoked. Queued runs stay
// queued.
func (s *Service) recover(ctx context.Context) error {
	runs, _, err := s.store.FindJobRuns(ctx, slipway.JobRunFilter{State: slipway.RunInProgress, Limit: 1 << 30})
	if err != nil {
		return fmt.Errorf("jobs: recover: %w", err)
	}
	for _, r := range runs {
		// A run whose folder was removed still gets its log line.
		if err := os.MkdirAll(s.runDir(r.ID), 0o755); err != nil {
			return fmt.Errorf("jobs: recover run %s: %w", r.ID, err)
		}
		lw, err := openLog(s.logPath(r.ID), s.cfg.MaxLog)
		if err != nil {
			return fmt.Errorf("jobs: recover run %s: open log: %w", r.ID, err)
		}
		h := executor.Handle{ID: r.ID, PID: r.PID, ProcStart: r.ProcStart, StateDir: s.runDir(r.ID)}
		err = s.exec.Recover(ctx, h, lw.line)
		if err == nil {
			lw.note("a restarted server re-attached to the run")
			s.resume(r, lw)
			continue
		}
		if !errors.Is(err, executor.ErrLost) {
			lw.close()
			return fmt.Errorf("jobs: recover run %s: %w", r.ID, err)
		}
		s.revoke(ctx, r.TokenID)
		r.State, r.Reason, r.ExitCode, r.FinishedAt = slipway.RunFailed, "server restarted while the run was in progress", nil, ptr(s.now().UTC())
		lw.note(r.Reason)
		lw.close()
		if err := s.store.FinishJobRun(ctx, r); err != nil {
			return fmt.Errorf("jobs: recover run %s: %w", r.ID, err)
		}
		s.removeRunScratch(r.ID)
		s.log.WarnContext(ctx, "job run interrupted by a server restart", "run_id", r.ID, "pid", r.PID, "pipeline_run", r.PipelineRun, "step", r.Step)
	}
	tmp, err := os.ReadDir(s.tmpDir())
	if err == nil {
		for _, e := range tmp {
			s.removeScratch(filepath.Join(s.tmpDir(), e.Name()))
		}
	}
	return nil
}

// resume follows a re-attached run in a goroutine of the service. It takes a slot of the concurrency limit
// when one is free: a run re-attached beyond a limit lowered meanwhile runs on without one.
func (s *Service) resume(r *slipway.JobRun, lw *logWriter) {
	ar := &activeRun{cancel: make(chan struct{})}
	s.mu.Lock()
	s.running[r.ID], s.logs[r.ID] = ar, lw
	s.mu.Unlock()
	slot := false
	select {
	case s.slots <- struct{}{}:
		slot = true
	default:
	}
	log := s.runLog(r)
	log.Info("job run re-attached", "pid", r.PID)
	s.goFunc(func(ctx context.Context) {
		defer func() {
			s.forget(r.ID)
			if slot {
				<-s.slots
				s.kick()
			}
		}()
		s.supervise(ctx, r, ar, lw, r.TokenID, log)
	})
}

func sortedStrings(s []string) []string {
	sort.Strings(s)
	return s
}
