package deploy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/modelruntime"
	"github.com/slipway-ml/slipway/internal/workerproto"
)

// External deployments ("engine": "external") are served by network workers that announce themselves. The
// pools, batching, retries and health checks are the same as for local replicas; only the engine that starts
// a replica differs: modelruntime.RemoteEngine, which connects a replica slot to an announced worker.

// SetRemote enables external deployments: engine connects their replica slots to announced workers, secrets
// keeps each deployment's replica secret. Call it before Recover.
func (s *Service) SetRemote(engine *modelruntime.RemoteEngine, secrets slipway.ReplicaSecretStore) {
	s.remote, s.secrets = engine, secrets
}

// Remote is the engine of external deployments (nil when not enabled).
func (s *Service) Remote() *modelruntime.RemoteEngine { return s.remote }

// KubeReplicas is the kubernetes engine's replica side (internal/kubereplica): it sizes each served version's
// Deployment of worker pods by the remote engine's demand, and deletes them with their deployment.
type KubeReplicas interface {
	Delete(ctx context.Context, deployment string) error
	// Keeps reports whether the cluster still runs pods of deployment@version that are not going away: a
	// version the deployment moved away from keeps them until its host scales them away (once no pool of any
	// server uses them), and their workers' heartbeats are accepted until then.
	Keeps(deployment string, version int) bool
}

// SetKubernetes makes the server's engine the kubernetes one: the deployments that name no engine are served
// by worker pods that announce themselves, like external ones (SetRemote must have been called). Call it
// before Recover.
func (s *Service) SetKubernetes(k KubeReplicas) { s.kube = k }

// ErrNotServed says a deployment (gone) or a version (no longer its own, its canary's or its shadow's) has no
// replicas to run.
var ErrNotServed = errors.New("not served")

// KubePods is what the pods of one version of a deployment run.
type KubePods struct {
	Spec      slipway.ReplicaSpec // with the URL the pods reach the API at
	Env       map[string]string
	Resources *slipway.Resources // each pod's requests and limits; nil: none
}

// KubeTemplate is what the pods of version of deployment name run: the replica spec (with server, the URL they
// reach the API at), the environment and the resources. The error wraps ErrNotServed for a version or
// deployment that is gone.
func (s *Service) KubeTemplate(ctx context.Context, name string, version int, server string) (KubePods, error) {
	d, err := s.store.FindDeployment(ctx, name)
	if slipway.ErrorCode(err) == slipway.ENOTFOUND {
		return KubePods{}, fmt.Errorf("deployment %s: %w", name, ErrNotServed)
	}
	if err != nil {
		return KubePods{}, err
	}
	if d.Engine != slipway.EngineDefault { // an external deployment's workers are started by its operator
		return KubePods{}, fmt.Errorf("deployment %s has engine %q, not the server's: %w", name, d.Engine, ErrNotServed)
	}
	if !slices.Contains(servedVersions(d), version) {
		return KubePods{}, fmt.Errorf("deployment %s version %d: %w", name, version, ErrNotServed)
	}
	spec, err := s.IssueReplicaSpec(ctx, name, version, server)
	if err != nil {
		return KubePods{}, err
	}
	return KubePods{Spec: spec, Env: modelruntime.ThreadEnv(d.Replicas, d.Env), Resources: d.Resources}, nil
}

// networkReplicas reports whether d's replicas are announced network workers: an external deployment, or any
// deployment of a server whose engine is kubernetes.
func (s *Service) networkReplicas(d *slipway.Deployment) bool {
	if s.remote == nil {
		return false
	}
	return d.Engine == slipway.EngineExternal || (d.Engine == slipway.EngineDefault && s.kube != nil)
}

// engineFor is the engine d's replicas start on (nil: the runtimes' own).
func (s *Service) engineFor(d *slipway.Deployment) modelruntime.Engine {
	if s.networkReplicas(d) {
		return s.remote
	}
	return nil
}

// stoppedWorkers says the engine a deployment's replicas were stopped on purpose (deactivated): the slots
// that crashed just before do not come back, so its pods go to zero.
func (s *Service) stoppedWorkers(name string) {
	if s.remote != nil {
		s.remote.Release(name)
	}
}

func (s *Service) checkEngine(d *slipway.Deployment) error {
	if d.Engine == slipway.EngineExternal && (s.remote == nil || s.secrets == nil) {
		return slipway.Errorf(slipway.EINVALID, "this server does not take external replicas")
	}
	return nil
}

// forgetWorkers drops a deleted deployment's announced workers at once (their secret went with it: their next
// heartbeat is refused and they stop), and deletes its pods' Deployments on the kubernetes engine.
func (s *Service) forgetWorkers(ctx context.Context, name string) {
	if s.remote != nil {
		s.remote.Forget(name)
	}
	if s.kube != nil {
		if err := s.kube.Delete(context.WithoutCancel(ctx), name); err != nil {
			s.log.Error("delete the deployment's Kubernetes Deployments", "deployment", name, "error", err)
		}
	}
}

func (s *Service) decorateExternal(d *slipway.Deployment) {
	if s.networkReplicas(d) {
		d.RemoteReplicas = s.remote.Workers(d.Name)
	}
}

// externalDeployment returns d if it takes network replicas, else an error saying why not.
func (s *Service) externalDeployment(ctx context.Context, name string) (*slipway.Deployment, error) {
	d, err := s.store.FindDeployment(ctx, name)
	if err != nil {
		return nil, err
	}
	if !s.networkReplicas(d) {
		return nil, slipway.Errorf(slipway.ECONFLICT, "deployment %s does not take network replicas: its engine is the server's (create it with \"engine\": \"external\")", name)
	}
	return d, nil
}

// servedVersions are the versions d's replicas may serve: its own, its canary's and its shadow's.
func servedVersions(d *slipway.Deployment) []int {
	vs := []int{d.Version}
	if d.Canary != nil {
		vs = append(vs, d.Canary.Version)
	}
	if d.Shadow != nil {
		vs = append(vs, d.Shadow.Version)
	}
	return vs
}

// IssueReplicaSpec returns what a network worker needs to serve version (0: the deployment's) of an external
// deployment, with the deployment's replica secret. Only administrators may ask for it (the API's role).
func (s *Service) IssueReplicaSpec(ctx context.Context, name string, version int, server string) (slipway.ReplicaSpec, error) {
	d, err := s.externalDeployment(ctx, name)
	if err != nil {
		return slipway.ReplicaSpec{}, err
	}
	if version == 0 {
		version = d.Version
	}
	if !slices.Contains(servedVersions(d), version) {
		return slipway.ReplicaSpec{}, slipway.Errorf(slipway.EINVALID, "deployment %s serves versions %v of %s, not %d", name, servedVersions(d), d.Model, version)
	}
	secret, err := s.secrets.ReplicaSecret(ctx, name)
	if err != nil {
		return slipway.ReplicaSpec{}, err
	}
	return slipway.ReplicaSpec{Server: server, Deployment: name, Version: version, Secret: secret}, nil
}

// ReplicaAccess is what a verified replica token grants: one version of one deployment's model.
type ReplicaAccess struct {
	Deployment *slipway.Deployment
	Version    *slipway.ModelVersion
}

// VerifyReplicaToken checks a network worker's token for deployment name: its MAC under the deployment's
// secret (constant time), its expiry, and that its version is one the deployment serves. Every failure is
// EUNAUTHORIZED (or the deployment's ENOTFOUND / ECONFLICT) with the reason.
func (s *Service) VerifyReplicaToken(ctx context.Context, name, token string) (*ReplicaAccess, error) {
	scope, ok := workerproto.ParseReplicaToken(token)
	if !ok {
		return nil, slipway.Errorf(slipway.EUNAUTHORIZED, "this route takes a replica token (minted by `slipway worker serve` from its replica spec), not an API token")
	}
	if scope.Deployment != name {
		return nil, slipway.Errorf(slipway.EUNAUTHORIZED, "the replica token is for deployment %s, not %s", scope.Deployment, name)
	}
	d, err := s.externalDeployment(ctx, name)
	if err != nil {
		return nil, err
	}
	secret, err := s.secrets.ReplicaSecret(ctx, name)
	if err != nil {
		return nil, err
	}
	if err := scope.Verify(secret, time.Now()); err != nil {
		if errors.Is(err, workerproto.ErrBadToken) {
			return nil, slipway.Errorf(slipway.EUNAUTHORIZED, "%v", err)
		}
		return nil, err
	}
	// A version a rollout moves away from is still served by the pools' retiring sessions (on the host and on
	// the following servers) until its pods are scaled away: a refused heartbeat would end its workers under
	// them, and with them the requests in flight.
	if !slices.Contains(servedVersions(d), scope.Version) && (s.kube == nil || d.Engine != slipway.EngineDefault || !s.kube.Keeps(name, scope.Version)) {
		return nil, slipway.Errorf(slipway.EFORBIDDEN, "deployment %s no longer serves version %d (it serves %v): get a new replica spec", name, scope.Version, servedVersions(d))
	}
	v, err := s.models.FindVersion(ctx, d.Model, slipway.VersionRef{Number: scope.Version})
	if err != nil {
		return nil, err
	}
	return &ReplicaAccess{Deployment: d, Version: v}, nil
}
