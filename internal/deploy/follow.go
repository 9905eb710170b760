package deploy

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/cluster"
	"github.com/slipway-ml/slipway/internal/serving"
)

// Following: with the kubernetes engine and several servers, every server reaches the same replica pods
// directly. The host (the lease holder) runs the deployment as always — its pools' demand is the Kubernetes
// Deployment's replica count. Every other server runs a pool of its own for the deployment's version, sized by
// the pods that are ready (it never asks the cluster for more), with its own session to each worker, and serves
// the predictions it receives through it instead of forwarding them to the host. Calls that change the
// deployment are still forwarded to the host (httpapi's forwarding: only the data plane is served by a
// following pool). When the host dies, the server that takes the lease over turns its following pool into the
// hosting one: the pods, their sessions and its requests in flight are not disturbed.
//
// A canary is split here as on the host (followCanary: the same router side, sized by its ready pods). A
// deployment with a shadow is not followed (its copies are the host's): its predictions are forwarded.
//
// Rollouts: a following pool holds the lease followingLease(deployment, version, server) for every version it
// holds sessions with. The host never scales a version's pods away (to zero, or deleting its Deployment) while
// another live server holds such a lease (FollowedVersions, kubereplica's Config.Followed): the follower rolls
// its pool out to the new version's pods as soon as they are ready, lets its old sessions finish their
// requests, and only then gives the old version's lease up. A follower that dies gives its leases up with its
// life (they expire), so it never holds pods for long.

// follows says whether a following pool of this server serves the deployment.
func (s *Service) follows(name string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok := s.followers[name]
	return ok
}

// Following reports whether this server serves name's predictions from a pool of its own while another server
// hosts it: calls that change or describe the deployment go to the host.
func (s *Service) Following(name string) bool { return s.follows(name) }

// AppliesReplicas says whether this server decides the cluster's replica count of the deployment: it hosts
// it, or nobody does (a deployment deleted while no server ran: its leftovers are swept by whoever looks).
func (s *Service) AppliesReplicas(ctx context.Context, name string) bool {
	host, err := s.hostedElsewhere(ctx, name)
	return err == nil && host == ""
}

// followSig is what a following pool must be rebuilt for when it changes.
func followSig(d *slipway.Deployment) string {
	env := slices.Sorted(maps.Keys(d.Env))
	var b strings.Builder
	for _, k := range env {
		fmt.Fprintf(&b, "%s=%s;", k, d.Env[k])
	}
	res := "-"
	if !d.Resources.IsZero() {
		res = fmt.Sprintf("%+v", *d.Resources)
	}
	return fmt.Sprintf("v%d|%s|%s|%s", d.Version, isolation(d), res, b.String())
}

// followable says whether this server should run a following pool for d: the kubernetes engine's
// deployment, settled and serving, without a shadow (a canary is split here too), hosted by another live
// server.
func (s *Service) followable(d *slipway.Deployment, held map[string]string) bool {
	if s.kube == nil || s.remote == nil || d.Engine != slipway.EngineDefault || d.Shadow != nil {
		return false
	}
	switch d.State {
	case slipway.DeploymentActive, slipway.DeploymentNeedsAttention, slipway.DeploymentUpdating:
		// UPDATING: the stored version is already the new one; the following pool rolls out to it as soon as
		// its pods are ready, which the host's pool is waiting for too.
	default:
		return false
	}
	holder, ok := held[LeaseName(d.Name)]
	return ok && holder != s.owner.ID()
}

// follow starts, resizes, rebuilds and stops the following pools (one look of the ownership loop).
func (s *Service) follow(ctx context.Context, ds []*slipway.Deployment, hs []cluster.Holder) {
	if s.kube == nil || s.remote == nil {
		return
	}
	held := make(map[string]string, len(hs))
	for _, h := range hs {
		held[h.Lease] = h.Server
	}
	want := map[string]bool{}
	for _, d := range ds {
		if !s.followable(d, held) {
			continue
		}
		want[d.Name] = true
		s.followOne(d)
	}
	s.mu.RLock()
	var stale []string
	for name := range s.followers {
		if !want[name] {
			stale = append(stale, name)
		}
	}
	s.mu.RUnlock()
	for _, name := range stale {
		s.background(name, func(ctx context.Context) { s.unfollow(name) })
	}
}

// followOne brings d's following pool in line with d and the ready pods, in the background (one change at a
// time per deployment: the pending mark stops the loop from queueing another meanwhile).
func (s *Service) followOne(d *slipway.Deployment) {
	n := s.remote.Usable(d.Name, d.Version)
	sig, csig := followSig(d), s.canarySig(d)
	s.mu.Lock()
	cur, following := s.followers[d.Name]
	if s.followPending[d.Name] || n == 0 {
		// No pod of the version is ready: a following pool keeps what it serves (a pod that went keeps its
		// slot until another is ready; a new version's pods are on their way), and without one the
		// predictions are forwarded to the host meanwhile.
		s.mu.Unlock()
		return
	}
	if following && cur == sig {
		rt := s.routers.Get(d.Name)
		if rt == nil {
			s.mu.Unlock()
			return
		}
		if size, _ := rt.Pool.Size(); size == n && s.followSides[d.Name] == csig {
			s.mu.Unlock()
			s.reassertFollowing(d.Name, rt.Pool.ServedVersion())
			return
		}
	}
	s.followPending[d.Name] = true
	s.mu.Unlock()
	s.background(d.Name, func(ctx context.Context) {
		defer func() {
			s.mu.Lock()
			delete(s.followPending, d.Name)
			s.mu.Unlock()
		}()
		if err := s.syncFollower(ctx, d, sig, n); err != nil {
			s.log.Warn("following pool not started; predictions are forwarded to the deployment's host meanwhile", "deployment", d.Name, "error", err)
			return
		}
		if err := s.followCanary(ctx, d, csig); err != nil {
			s.log.Warn("following pool: canary not started; this server's requests go to the deployment's version meanwhile", "deployment", d.Name, "error", err)
		}
	})
}

// syncFollower resizes the following pool, or starts one (a new one replaces the old once ready).
func (s *Service) syncFollower(ctx context.Context, d *slipway.Deployment, sig string, n int) error {
	if s.owner.Holds(LeaseName(d.Name)) {
		return nil // hosted here meanwhile
	}
	s.mu.RLock()
	cur, following := s.followers[d.Name]
	s.mu.RUnlock()
	rt := s.routers.Get(d.Name)
	if rt != nil && !following {
		return nil // a hosting pool (being handed over): not ours to replace
	}
	if following && cur == sig && rt != nil {
		return rt.Pool.Scale(ctx, n)
	}
	v, err := s.readyVersion(ctx, d.Model, slipway.VersionRef{Number: d.Version})
	if err != nil {
		return err
	}
	fd := *d
	fd.Replicas, fd.Load, fd.Autoscaling = n, slipway.LoadEager, nil
	if following && rt != nil {
		// The host rolled out a new version (or env, resources): the pool's own generation switch, as on the
		// host, so that the requests served here meanwhile do not fail.
		dir, err := s.files.Materialize(ctx, v)
		if err != nil {
			return err
		}
		if err := s.checkPythonEnvironment(ctx, &fd, v, dir); err != nil {
			return err
		}
		old := rt.Pool.ServedVersion()
		s.holdFollowing(ctx, d.Name, v.Version) // before its first session: the host keeps these pods from now on
		rt.Pool.SetOptions(options(&fd))
		if err := rt.Pool.Rollout(ctx, v.Version, n, s.starter(&fd, v, dir)); err != nil {
			return err
		}
		rt.SetVersion(v)
		s.mu.Lock()
		s.followers[d.Name] = sig
		s.mu.Unlock()
		s.log.Info("following pool rolled out", "deployment", d.Name, "from", old, "version", v.Version, "replicas", n)
		if old != v.Version {
			s.leaveFollowed(d.Name, old)
		}
		return nil
	}
	s.holdFollowing(ctx, d.Name, v.Version)
	pool, err := s.startPool(ctx, d.Name, &fd, v)
	if err != nil {
		return err
	}
	s.mu.Lock()
	if s.owner.Holds(LeaseName(d.Name)) || s.routers.Get(d.Name) != nil { // taken over while the pool started
		s.mu.Unlock()
		pool.Close()
		s.releaseFollowing(ctx, d.Name, -1)
		return nil
	}
	s.routers.Put(d.Name, serving.NewRouter(pool, v))
	s.followers[d.Name] = sig
	s.observeLocked(d.Name, pool)
	s.mu.Unlock()
	s.log.Info("serving a deployment another server hosts from its pods directly", "deployment", d.Name, "version", d.Version, "replicas", n)
	return nil
}

// unfollow stops a following pool (the deployment was deactivated, deleted, or changed shape).
func (s *Service) unfollow(name string) {
	s.mu.Lock()
	_, ok := s.followers[name]
	delete(s.followers, name)
	delete(s.followSides, name)
	var rt *serving.Router
	if ok {
		rt = s.routers.Take(name)
	}
	s.mu.Unlock()
	if rt != nil {
		rt.Close()
		s.log.Info("stopped serving a deployment another server hosts", "deployment", name)
	}
	if ok {
		s.releaseFollowing(s.ctx, name, -1) // its sessions ended with the pool
	}
}

// promote makes this server's following pool of d the hosting one (it took d's lease over): the pool, its
// sessions and its requests in flight stay; it takes d's scaling policy and size, and its demand becomes the
// cluster's replica count. It reports whether there was a following pool.
func (s *Service) promote(ctx context.Context, d *slipway.Deployment) bool {
	s.mu.Lock()
	_, ok := s.followers[d.Name]
	delete(s.followers, d.Name)
	delete(s.followSides, d.Name)
	s.mu.Unlock()
	rt := s.routers.Get(d.Name)
	if !ok || rt == nil {
		return false
	}
	s.log.Info("ownership: hosting a deployment this server already served from its pods", "deployment", d.Name, "server", s.owner.ID())
	// Its sessions are the host's now: the demand they make keeps their pods, the following leases need not.
	s.releaseFollowing(ctx, d.Name, -1)
	s.scale.setPolicy(d)
	if ch, ok := s.kube.(interface{ Changed(string) }); ok {
		ch.Changed(d.Name) // the cluster's count is this server's demand from now on
	}
	s.background(d.Name, func(ctx context.Context) {
		if needsFixedScale(d, rt.Pool, d.Replicas) {
			if err := rt.Pool.Scale(ctx, d.Replicas); err != nil {
				s.log.Warn("scale a deployment taken over", "deployment", d.Name, "error", err)
			}
		}
		// A canary followed here was sized by its ready pods: the host's is the deployment's count.
		if err := s.syncSides(ctx, d, rt); err != nil {
			s.log.Warn("canary of a deployment taken over", "deployment", d.Name, "error", err)
		}
	})
	return true
}

// ReplicaOOMKilled records, as the reason of a deployment this server hosts that is serving version, that one
// of its replica pods was OOM-killed (the pod restarts by itself, so no state changes): GET shows it until the
// next change. A kill older than a minute (a pod's last state seen after a restart of the server) is not news.
func (s *Service) ReplicaOOMKilled(deployment string, version int, problem string, at time.Time) {
	if time.Since(at) > time.Minute {
		return
	}
	s.background(deployment, func(ctx context.Context) {
		if !s.AppliesReplicas(ctx, deployment) {
			return
		}
		d, err := s.store.FindDeployment(ctx, deployment)
		if err != nil || d.State != slipway.DeploymentActive || d.Version != version {
			return // starting (the Start fails with it), or another version's pod (a rejected rollout says so)
		}
		s.setState(ctx, deployment, slipway.DeploymentActive, "a replica was lost and restarts: "+problem)
	})
}

// followingPrefix starts the names of the leases that say which versions' pods the following pools use.
const followingPrefix = "following/"

// followingLease is held by server while its following pool of deployment holds sessions with version's
// pods. Deployment names have no '/', so the name parses back (parseFollowingLease).
func followingLease(deployment string, version int, server string) string {
	return followingPrefix + deployment + "/" + strconv.Itoa(version) + "/" + server
}

// parseFollowingLease returns the deployment and version a following lease names.
func parseFollowingLease(lease string) (deployment string, version int, ok bool) {
	rest, ok := strings.CutPrefix(lease, followingPrefix)
	if !ok {
		return "", 0, false
	}
	deployment, rest, ok = strings.Cut(rest, "/")
	if !ok {
		return "", 0, false
	}
	v, _, ok := strings.Cut(rest, "/")
	if !ok {
		return "", 0, false
	}
	version, err := strconv.Atoi(v)
	return deployment, version, err == nil
}

// holdFollowing takes this server's following lease of name@version. A failure (the database) is logged:
// the pool serves all the same, only a rollout meanwhile may cut its old sessions short (they are retried).
func (s *Service) holdFollowing(ctx context.Context, name string, version int) {
	if s.owner == nil {
		return
	}
	if _, err := s.owner.Acquire(ctx, followingLease(name, version, s.owner.ID()), nil); err != nil {
		s.log.Warn("record the version a following pool uses", "deployment", name, "version", version, "error", err)
	}
}

// reassertFollowing takes the following lease of a settled pool again if it was lost (the database was out
// of reach past its deadline), in the background.
func (s *Service) reassertFollowing(name string, version int) {
	if s.owner == nil || version == 0 || s.owner.Holds(followingLease(name, version, s.owner.ID())) {
		return
	}
	s.background(name, func(ctx context.Context) {
		if s.follows(name) {
			s.holdFollowing(ctx, name, version)
		}
	})
}

// releaseFollowing gives up this server's following lease of name@version (every version: -1).
func (s *Service) releaseFollowing(ctx context.Context, name string, version int) {
	if s.owner == nil {
		return
	}
	ctx = context.WithoutCancel(ctx)
	var leases []string
	if version >= 0 {
		leases = []string{followingLease(name, version, s.owner.ID())}
	} else {
		hs, err := s.owner.Holders(ctx, followingPrefix)
		if err != nil {
			s.log.Warn("list the versions a following pool used", "deployment", name, "error", err)
			return // they expire within the lease TTL
		}
		for _, h := range hs {
			if d, _, ok := parseFollowingLease(h.Lease); ok && d == name && h.Server == s.owner.ID() {
				leases = append(leases, h.Lease)
			}
		}
	}
	for _, l := range leases {
		if err := s.owner.Release(ctx, l); err != nil {
			s.log.Warn("release a following lease", "lease", l, "error", err)
		}
	}
}

// leaveFollowed gives up the lease of the version a following pool rolled out from once its last session with
// that version's pods ended (its requests finished), in the background: from then on the host may scale those
// pods away. Bounded by followDrainTimeout: a session that does not end by then is cut by the scale-down,
// and its request retried as with any lost replica.
func (s *Service) leaveFollowed(name string, version int) {
	s.wg.Add(1)
	go func() { // owned by the service: ends when the sessions end, at the timeout, or at Close
		defer s.wg.Done()
		ctx, cancel := context.WithTimeout(s.ctx, followDrainTimeout)
		defer cancel()
		if !s.sessionsEnd(ctx, name, version) && !s.followedHere(name, version) {
			if s.ctx.Err() != nil {
				return // closing: the node releases every lease
			}
			s.log.Warn("a following pool's old sessions did not end; letting their pods go", "deployment", name, "version", version)
		}
		if s.followedHere(name, version) {
			return // still in use (a rollback, or a canary promoted to the deployment's version)
		}
		s.releaseFollowing(s.ctx, name, version)
		s.log.Info("following pool: no session with a version's pods any more; the host may scale them away", "deployment", name, "version", version)
	}()
}

// sessionsEnd waits until this server holds no session with name@version's pods; false if ctx ends first.
func (s *Service) sessionsEnd(ctx context.Context, name string, version int) bool {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for s.remote.Sessions(name, version) > 0 && !s.followedHere(name, version) {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
	return true
}

// followedHere says whether this server's pools of name serve version (its own generation or its canary's).
func (s *Service) followedHere(name string, version int) bool {
	rt := s.routers.Get(name)
	if rt == nil {
		return false
	}
	if rt.Pool.ServedVersion() == version {
		return true
	}
	c := rt.Side(serving.Canary)
	return c != nil && c.Version().Version == version
}

// followDrainTimeout bounds how long the old version's pods are kept for a following pool's retiring sessions.
const followDrainTimeout = 2 * time.Minute

// FollowedVersions returns the versions of name whose pods another live server's following pool still holds
// sessions with: the host keeps their pods (kubereplica's Config.Followed) until they are given up.
func (s *Service) FollowedVersions(ctx context.Context, name string) (map[int]bool, error) {
	out := map[int]bool{}
	if s.owner == nil {
		return out, nil
	}
	// One prefix for all: a deployment's name may hold '_', which a lease prefix may not (LIKE).
	hs, err := s.owner.Holders(ctx, followingPrefix)
	if err != nil {
		return nil, fmt.Errorf("list the versions following servers use: %w", err)
	}
	for _, h := range hs {
		if d, v, ok := parseFollowingLease(h.Lease); ok && d == name && h.Server != s.owner.ID() {
			out[v] = true
		}
	}
	return out, nil
}

// canarySig is what a following pool's canary must be brought in line with when it changes: its version,
// weight and the ready pods of its version ("" without a canary).
func (s *Service) canarySig(d *slipway.Deployment) string {
	c := d.Canary
	if c == nil {
		return ""
	}
	return fmt.Sprintf("v%d|w%d|n%d", c.Version, c.Weight, s.remote.Usable(d.Name, c.Version))
}

// followCanary makes the following router's canary match d's, with the host's split code (syncSide, the
// router's weighted pick) and as many replicas as the canary's version has ready pods: a following server
// splits its requests like the host. While no pod of the canary is ready, the canary it has (or none) stays.
// A canary replaced or removed gives its version's lease up once its sessions have ended.
func (s *Service) followCanary(ctx context.Context, d *slipway.Deployment, csig string) error {
	if s.owner.Holds(LeaseName(d.Name)) || !s.follows(d.Name) {
		return nil
	}
	rt := s.routers.Get(d.Name)
	if rt == nil {
		return nil
	}
	prev := rt.Side(serving.Canary)
	var want *sideSpec
	if c := d.Canary; c != nil {
		n := s.remote.Usable(d.Name, c.Version)
		if n == 0 {
			s.mu.Lock()
			s.followSides[d.Name] = csig
			s.mu.Unlock()
			return nil
		}
		want = &sideSpec{version: c.Version, replicas: n, weight: c.Weight}
		s.holdFollowing(ctx, d.Name, c.Version)
	}
	fd := *d
	fd.Load, fd.Autoscaling = slipway.LoadEager, nil
	if err := s.syncSide(ctx, &fd, rt, serving.Canary, want); err != nil {
		return err
	}
	if prev != nil && (want == nil || prev.Version().Version != want.version) {
		s.leaveFollowed(d.Name, prev.Version().Version)
	}
	s.mu.Lock()
	s.followSides[d.Name] = csig
	s.mu.Unlock()
	if want != nil && (prev == nil || prev.Version().Version != want.version) {
		s.log.Info("following pool: canary started", "deployment", d.Name, "version", want.version, "weight", want.weight, "replicas", want.replicas)
	}
	return nil
}
