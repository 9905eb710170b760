// Package audit keeps Slipway's audit log: who changed what, and who was refused. Entries are hash-chained by
// the store (slipway.AuditStore); this package records them, checks the chain and applies retention.
//
// State-changing API calls are recorded synchronously: the call's answer waits for its entry, so a change
// never lands without its record. Refusals of read and prediction calls are recorded through a bounded queue
// instead, so that a flood of bad tokens cannot slow serving down; what the queue drops is counted and
// recorded as one "audit.dropped" entry.
package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/slipway-ml/slipway"
)

// DefaultRetention is how long entries are kept when the server is not told otherwise (--audit-retention).
const DefaultRetention = 400 * 24 * time.Hour

// Service records, lists and verifies audit entries.
type Service struct {
	store     slipway.AuditStore
	log       *slog.Logger
	retention time.Duration
	queue     chan *slipway.AuditEntry
	dropped   atomic.Int64
	now       func() time.Time
}

// New returns a service over store; retention ≤ 0 keeps entries forever.
func New(store slipway.AuditStore, log *slog.Logger, retention time.Duration) *Service {
	return &Service{store: store, log: log, retention: retention, queue: make(chan *slipway.AuditEntry, 1024), now: time.Now}
}

// Record appends e now; the caller's operation is not complete until it returns.
func (s *Service) Record(ctx context.Context, e *slipway.AuditEntry) error {
	if e.Time.IsZero() {
		e.Time = s.now()
	}
	if err := s.store.AppendAudit(ctx, e); err != nil {
		return fmt.Errorf("audit: record %s: %w", e.Action, err)
	}
	return nil
}

// RecordLater queues e for the writer (Run); when the queue is full, e is dropped and counted.
func (s *Service) RecordLater(e *slipway.AuditEntry) {
	if e.Time.IsZero() {
		e.Time = s.now()
	}
	select {
	case s.queue <- e:
	default:
		s.dropped.Add(1)
	}
}

// Event records a server event (start, stop) with its detail.
func (s *Service) Event(ctx context.Context, action string, detail any) error {
	b, err := json.Marshal(detail)
	if err != nil {
		return fmt.Errorf("audit: encode %s: %w", action, err)
	}
	return s.Record(ctx, &slipway.AuditEntry{Action: action, Detail: b})
}

// Run writes queued entries and applies retention until ctx ends, then writes what is still queued.
func (s *Service) Run(ctx context.Context) {
	retention := time.NewTicker(time.Hour)
	defer retention.Stop()
	s.applyRetention(ctx)
	for {
		select {
		case e := <-s.queue:
			s.write(ctx, e)
		case <-retention.C:
			s.applyRetention(ctx)
		case <-ctx.Done():
			s.drain()
			return
		}
	}
}

// drain writes what is queued at shutdown, with a short deadline of its own (ctx is already done).
func (s *Service) drain() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		select {
		case e := <-s.queue:
			s.write(ctx, e)
		default:
			s.write(ctx, nil)
			return
		}
	}
}

// write records a queued entry, preceded by a note of how many entries were dropped since the last one.
func (s *Service) write(ctx context.Context, e *slipway.AuditEntry) {
	if n := s.dropped.Swap(0); n > 0 {
		detail, _ := json.Marshal(map[string]int64{"dropped": n})
		if err := s.Record(ctx, &slipway.AuditEntry{Action: "audit.dropped", Detail: detail}); err != nil {
			s.dropped.Add(n)
			s.log.Error("audit: record dropped entries", "dropped", n, "error", err)
		}
	}
	if e == nil {
		return
	}
	if err := s.Record(ctx, e); err != nil {
		s.log.Error("audit: write a refused call", "action", e.Action, "error", err)
	}
}

func (s *Service) applyRetention(ctx context.Context) {
	if s.retention <= 0 {
		return
	}
	n, err := s.store.DeleteAuditBefore(ctx, s.now().Add(-s.retention))
	if err != nil {
		s.log.Error("audit: retention", "error", err)
	} else if n > 0 {
		s.log.Info("audit: retention removed old entries", "removed", n, "retention", s.retention)
	}
}

// Scan streams the entries matching f in order.
func (s *Service) Scan(ctx context.Context, f slipway.AuditFilter, fn func(*slipway.AuditEntry) error) error {
	return s.store.ScanAudit(ctx, f, fn)
}

// Verify checks the whole stored chain.
func (s *Service) Verify(ctx context.Context) (slipway.AuditVerification, error) {
	var v slipway.AuditChainVerifier
	err := s.store.ScanAudit(ctx, slipway.AuditFilter{}, func(e *slipway.AuditEntry) error {
		v.Add(e)
		return nil
	})
	if err != nil {
		return slipway.AuditVerification{}, fmt.Errorf("audit: verify: %w", err)
	}
	return v.Result(), nil
}
