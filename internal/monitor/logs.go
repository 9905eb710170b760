package monitor

import (
	"context"
	"time"
	"unicode/utf8"

	"github.com/slipway-ml/slipway"
)

// maxLineBytes bounds one stored log line; longer lines are cut (and marked).
const maxLineBytes = 8 << 10

// offerLog queues a log line without waiting; a full queue drops it (counted).
func (s *Service) offerLog(l *slipway.LogLine) {
	select {
	case s.logs <- l:
	default:
		s.metrics.logDropped.WithLabelValues(l.Deployment).Inc()
	}
}

// ReplicaLog stores a line a replica wrote (stdout/stderr): the deployment's predict log. Safe on a nil Service.
func (s *Service) ReplicaLog(deployment, replica, line string) {
	if s == nil {
		return
	}
	if len(line) > maxLineBytes {
		cut := maxLineBytes
		for cut > 0 && !utf8.RuneStart(line[cut]) {
			cut--
		}
		line = line[:cut] + " …(cut)"
	}
	s.offerLog(&slipway.LogLine{Deployment: deployment, Time: s.now(), Kind: slipway.LogPredict, Replica: replica, Line: line})
}

// logWriter writes queued lines in batches until the service closes, then drains the queue. After each batch it
// wakes the readers following a log.
func (s *Service) logWriter() {
	writeInBatches(s.ctx, s.logs, func(batch []*slipway.LogLine) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.data.InsertLogs(ctx, batch); err != nil {
			s.log.Error("store log lines", "error", err, "count", len(batch))
		}
		s.logNotify.Lock()
		close(s.logWake)
		s.logWake = make(chan struct{})
		s.logNotify.Unlock()
	})
}

// MaxLogWait bounds how long a log read waits for new lines.
const MaxLogWait = 10 * time.Second

// Logs returns the log lines matching f, oldest first. With wait > 0 and nothing to return yet, it waits up to wait
// (at most MaxLogWait) for new lines: following a log is calling it again with AfterID = the last id seen.
func (s *Service) Logs(ctx context.Context, f slipway.LogFilter, wait time.Duration) ([]*slipway.LogLine, error) {
	if _, err := s.cfg.Deployments.FindDeployment(ctx, f.Deployment); err != nil {
		return nil, err
	}
	if f.Limit <= 0 || f.Limit > 5000 {
		f.Limit = 1000
	}
	switch f.Kind {
	case "", slipway.LogAccess, slipway.LogPredict, LogAlert:
	default:
		return nil, invalidf("kind must be access, predict or alert, got %q", f.Kind)
	}
	deadline := time.NewTimer(min(wait, MaxLogWait))
	defer deadline.Stop()
	for {
		s.logNotify.Lock()
		wake := s.logWake
		s.logNotify.Unlock()
		lines, err := s.data.FindLogs(ctx, f)
		if err != nil || len(lines) > 0 || wait <= 0 {
			return lines, err
		}
		select {
		case <-wake:
		case <-deadline.C:
			return lines, nil
		case <-ctx.Done():
			return lines, nil
		case <-s.ctx.Done():
			return lines, nil
		}
	}
}
