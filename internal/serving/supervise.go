package serving

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/slipway-ml/slipway/internal/modelruntime"
)

// Crash-loop policy: this many crashes within the window puts the deployment in NEEDS_ATTENTION.
const (
	crashLoopCount  = 3
	crashLoopWindow = 2 * time.Minute
	maxBackoff      = 30 * time.Second
	firstBackoff    = 250 * time.Millisecond
)

func (p *Pool) superviseLocked(s *slot) {
	p.wg.Add(1)
	go func() { // owned by the pool: ends on Close or when the slot is retired
		defer p.wg.Done()
		p.supervise(s)
	}()
}

func (p *Pool) supervise(s *slot) {
	ticker := time.NewTicker(p.HealthInterval)
	defer ticker.Stop()
	for {
		p.mu.Lock()
		rep, state := s.rep, s.state
		p.mu.Unlock()
		if state != stateReady || rep == nil {
			return
		}
		select {
		case <-p.ctx.Done():
			return
		case <-rep.Done():
			if !p.restart(s, rep) {
				return
			}
		case <-ticker.C:
			p.healthCheck(s, rep)
		}
	}
}

// restart replaces a dead replica, backing off exponentially; it reports a crash loop to the control plane.
// It returns false when the slot left service meanwhile.
func (p *Pool) restart(s *slot, dead *modelruntime.Replica) bool {
	reason := describeExit(dead)
	p.mu.Lock()
	if s.state != stateReady || s.rep != dead {
		p.mu.Unlock()
		return false
	}
	s.state, s.lastErr = stateDead, reason
	p.free = slices.DeleteFunc(p.free, func(f *slot) bool { return f == s })
	ctx, cancel := context.WithCancel(p.ctx)
	defer cancel()
	s.stopRestart = cancel
	p.mu.Unlock()
	p.log.Warn("replica exited; restarting", "deployment", p.name, "replica", s.id, "error", reason)
	looping := false
	for attempt := 0; ; attempt++ {
		now := time.Now()
		p.mu.Lock()
		s.restarts++
		s.crashes = append(slices.DeleteFunc(s.crashes, func(t time.Time) bool { return now.Sub(t) > crashLoopWindow }), now)
		n := len(s.crashes)
		p.mu.Unlock()
		if n >= crashLoopCount && !looping {
			looping = true
			p.emit(Event{Kind: "crashloop", Message: fmt.Sprintf("replica %s crashed %d times in %s; last: %s", s.id, n, crashLoopWindow, s.lastError())})
		}
		if !sleepCtx(ctx, backoff(n)) {
			return false
		}
		rep, err := s.start(ctx)
		if ctx.Err() != nil { // the slot was retired (or the pool closed) meanwhile
			if err == nil {
				rep.Stop(p.StopGrace)
			}
			return false
		}
		if err != nil {
			p.mu.Lock()
			s.lastErr = err.Error()
			p.mu.Unlock()
			p.log.Warn("replica restart failed", "deployment", p.name, "replica", s.id, "error", err)
			continue
		}
		p.mu.Lock()
		if s.state != stateDead {
			p.mu.Unlock()
			rep.Stop(p.StopGrace)
			return false
		}
		s.rep, s.state, s.startedAt, s.inflight = rep, stateReady, time.Now(), 0 // calls on the dead one release nothing
		if p.budget != nil {
			s.bytes = rep.MemoryBytes()
		}
		p.offerLocked(s, rep)
		p.mu.Unlock()
		p.log.Info("replica restarted", "deployment", p.name, "replica", s.id, "pid", rep.PID(), "restarts", s.restarts)
		if o := p.observer(); o != nil {
			o.Restarted(s.id)
		}
		if looping {
			p.emit(Event{Kind: "recovered", Message: "replica " + s.id + " is serving again"})
		}
		return true
	}
}

func (s *slot) lastError() string { return s.lastErr }

func (p *Pool) emit(e Event) {
	if p.onEvent != nil {
		p.onEvent(e)
	}
}

func backoff(crashes int) time.Duration {
	d := firstBackoff << max(crashes-1, 0)
	if d > maxBackoff || d <= 0 {
		return maxBackoff
	}
	return d
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// describeExit says how a replica ended, with its last stderr lines (usually the traceback).
func describeExit(rep *modelruntime.Replica) string {
	msg := fmt.Sprintf("exited (%v)", rep.ExitErr())
	if tail := strings.TrimSpace(rep.Tail()); tail != "" {
		msg += ": " + tail
	}
	return msg
}

// healthCheck pings an idle replica; one that does not answer is killed (and then restarted). The ping takes
// one of the replica's positions: a process replica takes requests meanwhile, their frames queued behind it.
func (p *Pool) healthCheck(s *slot, rep *modelruntime.Replica) {
	p.mu.Lock()
	if s.inflight > 0 || s.rep != rep || !slices.Contains(p.free, s) {
		p.mu.Unlock()
		return // busy replicas are evidently alive
	}
	p.occupyLocked(s)
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	err := rep.Ping(ctx)
	cancel()
	if err != nil && p.ctx.Err() == nil {
		p.log.Warn("replica failed its health check; replacing it", "deployment", p.name, "replica", s.id, "error", err)
		rep.Kill()
	}
	p.release(s, rep)
}
