package batch

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/cluster"
)

// Runs shared among several servers (Config.Leases): a run is owned by the server that created it (its lease
// is taken before the run is stored) or adopted it. Every server looks once a second for runs whose lease
// nobody holds (the owner was killed, cut off, or shut down and released it) and adopts them: the run resumes
// from its output's checkpoints, so that the output holds every row exactly once. A server that loses a run's
// lease stops scoring it; its writes of the run's progress are refused by the store, and a chunk it was
// committing meets the new owner's checkpoint of the same chunk in the output's database (one of the two
// commits fails, never both succeed).
//
// A run resumes elsewhere if its input and output are reachable from every server: an uploaded input and a
// file output (its parts and their checkpoints) are in the installation's artifact store and database
// (blobs.go); a SQL connection, an --import-dir path or a table output must be shared by all servers.

// errLostLease is the cause of a run's context when another server took the run over.
var errLostLease = errors.New("another server owns the batch prediction now")

func (s *Service) acquireRun(ctx context.Context, id string) error {
	if s.leases == nil {
		return nil
	}
	ok, err := s.leases.Acquire(ctx, cluster.RunLease(slipway.RunKindBatch, id), func() { s.lostRun(id) })
	if err != nil {
		return fmt.Errorf("batch: take the lease of %s: %w", id, err)
	}
	if !ok {
		return slipway.Errorf(slipway.ECONFLICT, "batch prediction %s is owned by another server", id)
	}
	return nil
}

func (s *Service) releaseRun(id string) {
	if s.leases == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.leases.Release(ctx, cluster.RunLease(slipway.RunKindBatch, id)); err != nil {
		s.log.Warn("release the lease of a batch prediction", "run_id", id, "error", err)
	}
}

// lostRun stops scoring a run whose lease another server holds now.
func (s *Service) lostRun(id string) {
	s.mu.Lock()
	a := s.active[id]
	s.mu.Unlock()
	if a != nil {
		a.cancel(errLostLease)
	}
}

// adoptLoop adopts orphan runs every s.adopt until the service closes.
func (s *Service) adoptLoop(ctx context.Context) {
	t := time.NewTicker(s.adopt)
	defer t.Stop()
	for {
		if err := s.adoptOrphans(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("adopt batch predictions of lost servers", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Service) adoptOrphans(ctx context.Context) error {
	s.stopCanceledElsewhere(ctx)
	orphans, err := cluster.OrphanRuns(ctx, s.leases, s.owners, slipway.RunKindBatch)
	if err != nil {
		return err
	}
	for _, o := range orphans {
		s.mu.Lock()
		_, stopping := s.active[o.ID] // lost here a moment ago: the next look adopts it once it stopped
		s.mu.Unlock()
		if stopping {
			continue
		}
		id := o.ID
		ok, err := cluster.AdoptRun(ctx, s.leases, s.owners, slipway.RunKindBatch, o, func() { s.lostRun(id) })
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		run, err := s.store.FindBatchRun(ctx, o.ID)
		if err != nil {
			s.releaseRun(o.ID)
			return fmt.Errorf("batch: adopt %s: %w", o.ID, err)
		}
		s.log.Info("resuming batch prediction adopted from another server", "run_id", run.ID, "state", run.State,
			"rows_done", run.RowsDone, "lost_owner", cluster.LostOwner(o))
		s.launch(run)
	}
	return nil
}

// stopCanceledElsewhere stops scoring the runs of this server that were canceled through another server (the
// cancel is a compare-and-set on the run's state, open to every server; the scoring is here).
func (s *Service) stopCanceledElsewhere(ctx context.Context) {
	s.mu.Lock()
	active := make(map[string]*activeRun, len(s.active))
	for id, a := range s.active {
		active[id] = a
	}
	s.mu.Unlock()
	for id, a := range active {
		r, err := s.store.FindBatchRun(ctx, id)
		if err == nil && r.State == slipway.BatchCanceled {
			s.log.Info("batch prediction canceled through another server: stopping it here", "run_id", id)
			a.cancel(errCanceled)
		}
	}
}
