package deploy

import (
	"context"
	"fmt"
	"maps"
	"slices"
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
// A deployment with a canary or a shadow is not followed (its split is the host's): such deployments are
// forwarded as before.

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
// deployment, settled and serving, without canary or shadow, hosted by another live server.
func (s *Service) followable(d *slipway.Deployment, held map[string]string) bool {
	if s.kube == nil || s.remote == nil || d.Engine != slipway.EngineDefault || d.Canary != nil || d.Shadow != nil {
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
	sig := followSig(d)
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
		if size, _ := rt.Pool.Size(); size == n {
			s.mu.Unlock()
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
		rt.Pool.SetOptions(options(&fd))
		if err := rt.Pool.Rollout(ctx, v.Version, n, s.starter(&fd, v, dir)); err != nil {
			return err
		}
		rt.SetVersion(v)
		s.mu.Lock()
		s.followers[d.Name] = sig
		s.mu.Unlock()
		return nil
	}
	pool, err := s.startPool(ctx, d.Name, &fd, v)
	if err != nil {
		return err
	}
	s.mu.Lock()
	if s.owner.Holds(LeaseName(d.Name)) || s.routers.Get(d.Name) != nil { // taken over while the pool started
		s.mu.Unlock()
		pool.Close()
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
	var rt *serving.Router
	if ok {
		rt = s.routers.Take(name)
	}
	s.mu.Unlock()
	if rt != nil {
		rt.Close()
		s.log.Info("stopped serving a deployment another server hosts", "deployment", name)
	}
}

// promote makes this server's following pool of d the hosting one (it took d's lease over): the pool, its
// sessions and its requests in flight stay; it takes d's scaling policy and size, and its demand becomes the
// cluster's replica count. It reports whether there was a following pool.
func (s *Service) promote(ctx context.Context, d *slipway.Deployment) bool {
	s.mu.Lock()
	_, ok := s.followers[d.Name]
	delete(s.followers, d.Name)
	s.mu.Unlock()
	rt := s.routers.Get(d.Name)
	if !ok || rt == nil {
		return false
	}
	s.log.Info("ownership: hosting a deployment this server already served from its pods", "deployment", d.Name, "server", s.owner.ID())
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
