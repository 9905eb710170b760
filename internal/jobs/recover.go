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
// or, when its process cannot be (the local executor never can: the output pipes died with the server), its
// process group is killed and the run ends FAILED "server restarted". Pipeline steps then retry as their
// policy allows when the drivers resume. Tokens of those runs are revoked. Queued runs stay queued.
func (s *Service) recover(ctx context.Context) error {
	runs, _, err := s.store.FindJobRuns(ctx, slipway.JobRunFilter{State: slipway.RunInProgress, Limit: 1 << 30})
	if err != nil {
		return fmt.Errorf("jobs: recover: %w", err)
	}
	for _, r := range runs {
		h := executor.Handle{ID: r.ID, PID: r.PID, ProcStart: r.ProcStart}
		err := s.exec.Recover(ctx, h)
		if err != nil && !errors.Is(err, executor.ErrLost) {
			return fmt.Errorf("jobs: recover run %s: %w", r.ID, err)
		}
		s.revoke(ctx, r.TokenID)
		r.State, r.Reason, r.ExitCode, r.FinishedAt = slipway.RunFailed, "server restarted while the run was in progress", nil, ptr(s.now().UTC())
		if lw, err := openLog(s.logPath(r.ID), s.cfg.MaxLog); err == nil {
			lw.note(r.Reason)
			lw.close()
		}
		if err := s.store.FinishJobRun(ctx, r); err != nil {
			return fmt.Errorf("jobs: recover run %s: %w", r.ID, err)
		}
		os.RemoveAll(filepath.Join(s.runDir(r.ID), "work"))
		os.RemoveAll(filepath.Join(s.runDir(r.ID), "tmp"))
		s.log.WarnContext(ctx, "job run interrupted by a server restart", "run_id", r.ID, "pid", r.PID, "pipeline_run", r.PipelineRun, "step", r.Step)
	}
	tmp, err := os.ReadDir(s.tmpDir())
	if err == nil {
		for _, e := range tmp {
			os.RemoveAll(filepath.Join(s.tmpDir(), e.Name()))
		}
	}
	return nil
}

func sortedStrings(s []string) []string {
	sort.Strings(s)
	return s
}
