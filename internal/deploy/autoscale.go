package deploy

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/serving"
)

// decisionsKept is how many scaling decisions a deployment keeps for its status (newest first).
const decisionsKept = 20

// autoscaler holds what the autoscaling loop knows: the policies of the serving deployments, each pool's
// recent load, and the decisions made. The loop (Service.autoscale) is its only writer of loads; the control
// plane sets policies; the API reads statuses.
type autoscaler struct {
	mu        sync.Mutex
	policies  map[string]scalePolicy // by deployment; absent: fixed replicas
	pools     map[*serving.Pool]*poolScaler
	decisions map[string][]slipway.ScaleDecision // by deployment, newest first
}

// poolScaler is one pool's autoscaling state.
type poolScaler struct {
	poolLoad
	side     string
	last     scaleDecision
	scaling  bool // a Scale call is under way: no decision until it returns
	lastSeen time.Time
}

func newAutoscaler() *autoscaler {
	return &autoscaler{policies: map[string]scalePolicy{}, pools: map[*serving.Pool]*poolScaler{},
		decisions: map[string][]slipway.ScaleDecision{}}
}

// setPolicy records d's policy (none: its replicas stay as the control plane sets them).
func (a *autoscaler) setPolicy(d *slipway.Deployment) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if p, ok := policyOf(d); ok {
		a.policies[d.Name] = p
		return
	}
	delete(a.policies, d.Name)
}

// forget drops a deployment that stopped serving.
func (a *autoscaler) forget(name string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.policies, name)
	delete(a.decisions, name)
}

func (a *autoscaler) record(name string, d slipway.ScaleDecision) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.decisions[name] = slices.Insert(a.decisions[name], 0, d)
	if len(a.decisions[name]) > decisionsKept {
		a.decisions[name] = a.decisions[name][:decisionsKept]
	}
}

// scaleObserver is the part of a deployment's observer (monitoring) that counts scaling events.
type scaleObserver interface {
	Scaled(direction string)
}

// autoscale is the autoscaling loop: every scaleInterval it samples every pool of the deployments that have a
// policy and scales those whose decision says so. One goroutine per server, owned by the service (Close).
func (s *Service) autoscale(ctx context.Context) {
	ticker := time.NewTicker(scaleInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-ticker.C:
			s.autoscaleTick(now)
		}
	}
}

// scaledPool is a pool of a deployment with a policy, with what its decision needs.
type scaledPool struct {
	deployment, side string
	pool             *serving.Pool
	policy           scalePolicy
}

func (s *Service) autoscaleTick(now time.Time) {
	var pools []scaledPool
	s.scale.mu.Lock()
	for name, rt := range s.routers.All() {
		p, ok := s.scale.policies[name]
		if !ok {
			continue
		}
		pools = append(pools, scaledPool{name, "deployment", rt.Pool, p})
		for _, role := range []serving.Role{serving.Canary, serving.Shadow} {
			if side := rt.Side(role); side != nil {
				pools = append(pools, scaledPool{name, role.String(), side.Pool(), p})
			}
		}
	}
	for _, sp := range pools {
		ps := s.scale.pools[sp.pool]
		if ps == nil {
			ps = &poolScaler{side: sp.side}
			s.scale.pools[sp.pool] = ps
		}
		ps.lastSeen = now
		ps.observe(now, float64(sp.pool.Requests()), sp.policy.window())
		if ps.scaling {
			continue
		}
		current, _ := sp.pool.Size()
		dec := decide(sp.policy, &ps.poolLoad, now, current)
		ps.last = dec
		if dec.direction() == "" {
			continue
		}
		ps.scaling = true
		if dec.to > current {
			ps.lastUp = now
		} else {
			ps.lastDown = now
		}
		s.wg.Add(1)
		go func() { // owned by the service (wg); bounded by the replicas' ready timeout
			defer s.wg.Done()
			s.applyScale(sp, dec, now)
		}()
	}
	for p, ps := range s.scale.pools { // pools retired or closed
		if ps.lastSeen != now {
			delete(s.scale.pools, p)
		}
	}
	s.scale.mu.Unlock()
}

// applyScale carries out a decision taken at decided: logged with its figures, counted, kept for the
// deployment's status. The record carries the decision's time, the one the cool-downs count from.
func (s *Service) applyScale(sp scaledPool, dec scaleDecision, decided time.Time) {
	version := sp.pool.ServedVersion()
	s.log.Info("autoscale", "deployment", sp.deployment, "side", sp.side, "version", version,
		"direction", dec.direction(), "from", dec.current, "to", dec.to, "desired", dec.desired,
		"load", dec.load, "reason", dec.reason)
	if o, ok := s.observer(sp.deployment).(scaleObserver); ok {
		o.Scaled(dec.direction())
	}
	rec := slipway.ScaleDecision{At: decided.UTC(), Side: sp.side, Version: version, Direction: dec.direction(),
		From: dec.current, To: dec.to, Load: dec.load, Reason: dec.reason}
	ctx, cancel := context.WithTimeout(s.ctx, s.ReadyTimeout)
	err := sp.pool.Scale(ctx, dec.to)
	cancel()
	if err != nil {
		s.log.Warn("autoscale failed", "deployment", sp.deployment, "side", sp.side, "to", dec.to, "error", err)
		rec.Reason += "; failed: " + err.Error()
	}
	s.scale.record(sp.deployment, rec)
	s.scale.mu.Lock()
	if ps := s.scale.pools[sp.pool]; ps != nil {
		ps.scaling = false
	}
	s.scale.mu.Unlock()
}

// coldStarted records a pool's cold start (a request to a pool at zero replicas started one) as a scale-up:
// counted, kept for the status, and the start of the pool's up cool-down.
func (s *Service) coldStarted(name, side string, pool *serving.Pool, e serving.Event) {
	now := time.Now()
	s.scale.mu.Lock()
	if ps := s.scale.pools[pool]; ps != nil {
		ps.lastUp = now
	}
	s.scale.mu.Unlock()
	if o, ok := s.observer(name).(scaleObserver); ok {
		o.Scaled("up")
	}
	s.scale.record(name, slipway.ScaleDecision{At: now.UTC(), Side: side, Version: pool.ServedVersion(), Direction: "up",
		From: 0, To: 1, Load: float64(pool.Requests()), Reason: e.Message})
}

// scaleStatus fills d's live replica figures: ready replicas, scaled to zero, and the autoscaler's view.
func (s *Service) scaleStatus(d *slipway.Deployment, rt *serving.Router) {
	current, _ := rt.Pool.Size()
	for _, p := range rt.Pools() {
		_, ready := p.Size()
		d.ReadyReplicas += ready
	}
	d.ScaledToZero = current == 0
	s.scale.mu.Lock()
	defer s.scale.mu.Unlock()
	if _, ok := s.scale.policies[d.Name]; !ok {
		return
	}
	st := &slipway.AutoscalingStatus{Current: current, Desired: current,
		Decisions: slices.Clone(s.scale.decisions[d.Name])}
	if st.Decisions == nil {
		st.Decisions = []slipway.ScaleDecision{}
	}
	if ps := s.scale.pools[rt.Pool]; ps != nil {
		st.Desired, st.Load = ps.last.desired, ps.last.load
	}
	d.AutoscalingStatus = st
}
