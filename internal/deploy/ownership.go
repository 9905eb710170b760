package deploy

import (
	"context"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/cluster"
)

// Ownership of deployments among several servers sharing one database (internal/cluster). A deployment's
// local replicas run on exactly one server: the holder of the lease "deployment/<name>".
//
//   - A deployment created or activated through a server is hosted by that server: it takes the lease before
//     the deployment is stored (create) or moves (activate). Other calls about a hosted deployment are
//     forwarded to its host by the HTTP API, so they run where the pool is.
//   - Every server looks once a second for deployments that should serve but whose lease nobody holds (their
//     host was killed, partitioned, or stopped and handed them over) and takes them: it restores them as a
//     server restart does.
//   - A server that loses a lease (a renewal found it taken, or the database stayed unreachable past the
//     lease's deadline) stops the deployment's replicas here; the new holder runs them.
//
// Without ownership (SQLite: one server), every deployment is this server's.

// Ownership is the lease API a Service needs (implemented by *cluster.Node).
type Ownership interface {
	ID() string
	Acquire(ctx context.Context, lease string, onLost func()) (bool, error)
	Release(ctx context.Context, lease string) error
	Holds(lease string) bool
	Holders(ctx context.Context, prefix string) ([]cluster.Holder, error)
}

// leasePrefix names the deployments' leases.
const leasePrefix = "deployment/"

// LeaseName is the lease that says which server hosts the deployment's replicas.
func LeaseName(deployment string) string { return leasePrefix + deployment }

// EnableOwnership makes the service share deployments with other servers through o. Call before Recover.
func (s *Service) EnableOwnership(o Ownership) { s.owner = o }

// hosted says whether a deployment in this state should have replicas running somewhere.
func hosted(st slipway.DeploymentState) bool {
	switch st {
	case slipway.DeploymentActive, slipway.DeploymentNeedsAttention, slipway.DeploymentCreating, slipway.DeploymentUpdating:
		return true
	}
	return false
}

// own takes (or keeps) the deployment's lease for this server; always true on a single server.
func (s *Service) own(ctx context.Context, name string) (bool, error) {
	if s.owner == nil {
		return true, nil
	}
	return s.owner.Acquire(ctx, LeaseName(name), func() { s.lostLease(name) })
}

// disown gives the lease up (the deployment no longer runs here), so that nobody waits for its expiry.
func (s *Service) disown(ctx context.Context, name string) {
	if s.owner == nil {
		return
	}
	if err := s.owner.Release(context.WithoutCancel(ctx), LeaseName(name)); err != nil {
		s.log.Warn("release a deployment's lease", "deployment", name, "error", err)
	}
}

// lostLease stops the replicas of a deployment whose lease another server now holds.
func (s *Service) lostLease(name string) {
	s.log.Warn("lost the lease of a deployment: stopping its replicas here", "deployment", name)
	s.background(name, func(ctx context.Context) {
		if !s.owner.Holds(LeaseName(name)) && !s.follows(name) {
			s.stopPool(name)
		}
	})
}

// hostedElsewhere returns the server hosting name when it is another one ("" otherwise).
func (s *Service) hostedElsewhere(ctx context.Context, name string) (string, error) {
	if s.owner == nil || s.owner.Holds(LeaseName(name)) {
		return "", nil
	}
	hs, err := s.owner.Holders(ctx, LeaseName(name))
	if err != nil {
		return "", err
	}
	for _, h := range hs {
		if h.Lease == LeaseName(name) && h.Server != s.owner.ID() {
			return h.Server, nil
		}
	}
	return "", nil
}

// StartOwnership starts the loop that takes over deployments nobody hosts and stops pools this server no
// longer owns. Owned by the service: it ends at Close.
func (s *Service) StartOwnership(every time.Duration) {
	if s.owner == nil {
		return
	}
	ctx, cancel := context.WithCancel(s.ctx)
	done := make(chan struct{})
	s.stopOwnership = func() { cancel(); <-done }
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			s.reconcile(ctx)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

// StopOwnership ends the ownership loop (before a server hands its leases over at shutdown: it must not take
// them back). Close calls it too.
func (s *Service) StopOwnership() {
	if s.stopOwnership != nil {
		s.stopOwnership()
	}
}

// reconcile is one look: deployments that should serve and have no live lease are taken over; pools whose
// lease this server does not hold are stopped; deletions whose server died are finished.
func (s *Service) reconcile(ctx context.Context) {
	ds, err := s.store.FindDeployments(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("ownership: list deployments", "error", err)
		}
		return
	}
	hs, err := s.owner.Holders(ctx, leasePrefix)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("ownership: list leases", "error", err)
		}
		return
	}
	held := make(map[string]bool, len(hs))
	for _, h := range hs {
		held[h.Lease] = true
	}
	for _, d := range ds {
		if held[LeaseName(d.Name)] {
			continue
		}
		switch {
		case hosted(d.State):
			s.takeOver(ctx, d.Name)
		case d.State == slipway.DeploymentDeleting:
			s.finishDelete(ctx, d.Name)
		}
	}
	for name := range s.routers.All() {
		if !s.owner.Holds(LeaseName(name)) && !s.follows(name) {
			s.lostLease(name)
		}
	}
	s.follow(ctx, ds, hs)
}

// takeOver takes an unowned deployment's lease and restores its replicas here.
func (s *Service) takeOver(ctx context.Context, name string) {
	ok, err := s.own(ctx, name)
	if err != nil {
		s.log.Warn("ownership: take a deployment's lease", "deployment", name, "error", err)
		return
	}
	if !ok {
		return // another server was quicker
	}
	// CREATING is recorded now (under the deployment's lock), the replicas start in the background.
	unlock := s.lock(name)
	d, err := s.store.FindDeployment(ctx, name)
	if err == nil && hosted(d.State) && s.promote(ctx, d) {
		unlock()
		return
	}
	if err != nil || !hosted(d.State) || s.routers.Get(name) != nil {
		unlock()
		if err != nil || !hosted(d.State) {
			s.disown(ctx, name)
		}
		return
	}
	s.log.Info("ownership: hosting a deployment no server was hosting", "deployment", name, "state", d.State, "server", s.owner.ID())
	v := s.prepareRestore(ctx, d, "restoring on server "+s.owner.ID()+": no server was hosting it")
	unlock()
	if v != nil {
		s.background(name, func(ctx context.Context) { s.start(ctx, d, v, slipway.DeploymentFailed) })
	}
}

// HandOver gives up the leases of the deployments hosted here but keeps their replicas serving (a server
// stopping gracefully): other servers take the deployments on their next look and, while their replicas
// start, forward to this server (the lease names it as previous holder). It stops the ownership loop first,
// so that this server does not take them back. It returns the deployments handed over.
func (s *Service) HandOver(ctx context.Context) []string {
	if s.owner == nil {
		return nil
	}
	s.StopOwnership()
	var names []string
	for name := range s.routers.All() {
		if s.owner.Holds(LeaseName(name)) {
			s.disown(ctx, name)
			names = append(names, name)
		}
	}
	return names
}

// finishDelete removes a deployment whose deletion was cut short (its server died), if nobody hosts it.
func (s *Service) finishDelete(ctx context.Context, name string) {
	ok, err := s.own(ctx, name)
	if err != nil || !ok {
		return
	}
	s.background(name, func(ctx context.Context) {
		defer s.disown(ctx, name)
		if err := s.store.DeleteDeployment(ctx, name); err != nil && slipway.ErrorCode(err) != slipway.ENOTFOUND {
			s.log.Warn("ownership: finish a deletion", "deployment", name, "error", err)
		}
	})
}
