package slipway

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// DeploymentState is the lifecycle of a deployment (the OCI Data Science states).
type DeploymentState string

const (
	DeploymentCreating       DeploymentState = "CREATING"
	DeploymentActive         DeploymentState = "ACTIVE"
	DeploymentUpdating       DeploymentState = "UPDATING"
	DeploymentInactive       DeploymentState = "INACTIVE"
	DeploymentFailed         DeploymentState = "FAILED"
	DeploymentNeedsAttention DeploymentState = "NEEDS_ATTENTION"
	DeploymentDeleting       DeploymentState = "DELETING"
)

// deploymentMoves are the legal transitions. Recording a state again (with a new reason) is always legal: a
// restored deployment is CREATING again, a deletion that failed is retried.
var deploymentMoves = map[DeploymentState][]DeploymentState{
	// Starting (create, activate, restore, update without a pool) ends ACTIVE or FAILED.
	DeploymentCreating: {DeploymentActive, DeploymentFailed, DeploymentDeleting},
	// An update settles ACTIVE (the new version, or the old one kept); a start ends ACTIVE or FAILED; a server
	// restart restores it from scratch.
	DeploymentUpdating: {DeploymentActive, DeploymentFailed, DeploymentCreating, DeploymentDeleting},
	// A server restart restores a serving deployment (CREATING) or finds it cannot (FAILED).
	DeploymentActive:         {DeploymentNeedsAttention, DeploymentUpdating, DeploymentInactive, DeploymentCreating, DeploymentFailed, DeploymentDeleting},
	DeploymentNeedsAttention: {DeploymentActive, DeploymentUpdating, DeploymentInactive, DeploymentCreating, DeploymentFailed, DeploymentDeleting},
	DeploymentFailed:         {DeploymentUpdating, DeploymentInactive, DeploymentDeleting},
	DeploymentInactive:       {DeploymentUpdating, DeploymentDeleting},
}

// CanMoveTo reports whether a deployment may go from s to to.
func (s DeploymentState) CanMoveTo(to DeploymentState) bool {
	return s == to || slices.Contains(deploymentMoves[s], to)
}

// Deployment is a stable endpoint serving one model version with N replicas. Alias is the alias the version
// was deployed by; FollowAlias says whether the deployment moves with it, or stays pinned to Version (the
// alias's version at the time) when it is false.
type Deployment struct {
	Name        string            `json:"name"`
	State       DeploymentState   `json:"state"`
	Reason      string            `json:"reason"`
	Model       string            `json:"model"`
	Version     int               `json:"version"`
	Alias       string            `json:"alias,omitempty"`
	FollowAlias bool              `json:"follow_alias"`
	Replicas    int               `json:"replicas"`
	Batching    *Batching         `json:"batching,omitempty"`
	TimeoutMS   int               `json:"timeout_ms"`
	MaxQueue    int               `json:"max_queue"`
	Env         map[string]string `json:"env,omitempty"`
	Canary      *Canary           `json:"canary,omitempty"`
	Shadow      *Shadow           `json:"shadow,omitempty"`
	CreatedAt   time.Time         `json:"created_at"`
	UpdatedAt   time.Time         `json:"updated_at"`
	// Filled by the API from the live pool, not stored.
	ReplicaStatus []ReplicaStatus `json:"replica_status"`
	URLs          *DeploymentURLs `json:"urls,omitempty"`
}

// Validate checks d's settings (not the model and versions it names: the store knows those). The error,
// EINVALID, lists every problem.
func (d *Deployment) Validate() error {
	var problems []string
	if d.Replicas < 1 || d.Replicas > 64 {
		problems = append(problems, fmt.Sprintf("replicas must be 1-64, got %d", d.Replicas))
	}
	if d.TimeoutMS < 1 || d.TimeoutMS > 600_000 {
		problems = append(problems, fmt.Sprintf("timeout_ms must be 1-600000, got %d", d.TimeoutMS))
	}
	if d.MaxQueue < 0 || d.MaxQueue > 100_000 {
		problems = append(problems, fmt.Sprintf("max_queue must be 0-100000, got %d", d.MaxQueue))
	}
	if b := d.Batching; b != nil && (b.MaxBatchSize < 1 || b.MaxBatchSize > 10_000 || b.MaxWaitMS < 0 || b.MaxWaitMS > 10_000) {
		problems = append(problems, fmt.Sprintf("batching needs max_batch_size 1-10000 and max_wait_ms 0-10000, got %d and %d", b.MaxBatchSize, b.MaxWaitMS))
	}
	for k := range d.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.HasPrefix(k, "SLIPWAY_") {
			problems = append(problems, fmt.Sprintf("env name %q is not allowed (empty, contains '=', or reserved SLIPWAY_ prefix)", k))
		}
	}
	if d.FollowAlias && d.Alias == "" {
		problems = append(problems, "follow_alias needs an alias")
	}
	if c := d.Canary; c != nil {
		if c.Version < 1 {
			problems = append(problems, "canary needs a version")
		}
		if c.Weight < 1 || c.Weight > 99 {
			problems = append(problems, fmt.Sprintf("canary weight must be 1-99 (percent of the requests; 0 removes the canary), got %d", c.Weight))
		}
		if c.Replicas < 1 || c.Replicas > 64 {
			problems = append(problems, fmt.Sprintf("canary replicas must be 1-64, got %d", c.Replicas))
		}
		problems = append(problems, d.analysisProblems(c.Analysis)...)
	}
	if sh := d.Shadow; sh != nil {
		if sh.Version < 1 {
			problems = append(problems, fmt.Sprintf("shadow version must be a version number, got %d", sh.Version))
		}
		if sh.Replicas < 1 || sh.Replicas > 64 {
			problems = append(problems, fmt.Sprintf("shadow replicas must be 1-64, got %d", sh.Replicas))
		}
	}
	if len(problems) > 0 {
		return Errorf(EINVALID, "deployment %s: %s", d.Name, strings.Join(problems, "; "))
	}
	return nil
}

// analysisProblems checks the canary's analysis (nil: none).
func (d *Deployment) analysisProblems(a *CanaryAnalysis) []string {
	if a == nil {
		return nil
	}
	var problems []string
	if d.FollowAlias {
		problems = append(problems, fmt.Sprintf("canary analysis promotes by setting the version, and this deployment follows @%s: "+
			"promote by moving the alias, or drop follow_alias", d.Alias))
	}
	if a.IntervalSeconds < 1 || a.IntervalSeconds > 86400 {
		problems = append(problems, fmt.Sprintf("canary analysis interval_seconds must be 1-86400, got %d", a.IntervalSeconds))
	}
	if a.MinRequests < 1 {
		problems = append(problems, fmt.Sprintf("canary analysis min_requests must be at least 1, got %d", a.MinRequests))
	}
	if a.MaxErrorRate < 0 || a.MaxErrorRate > 1 {
		problems = append(problems, fmt.Sprintf("canary analysis max_error_rate is a share of the requests, 0-1, got %g", a.MaxErrorRate))
	}
	if a.MaxLatencyRatio != 0 && a.MaxLatencyRatio < 1 {
		problems = append(problems, fmt.Sprintf("canary analysis max_latency_ratio must be at least 1 (or 0: not checked), got %g", a.MaxLatencyRatio))
	}
	if a.PromoteAfter < 1 || a.PromoteAfter > 1000 {
		problems = append(problems, fmt.Sprintf("canary analysis promote_after must be 1-1000 intervals, got %d", a.PromoteAfter))
	}
	return problems
}

// DeploymentSpec is the body of a deployment's create and update requests. Nil fields are not sent: on create
// the server's defaults apply (1 replica, no batching, timeout 30000 ms, queue 100), on update they are left
// unchanged.
type DeploymentSpec struct {
	// Name and Model are required on create. On update Name may only repeat the deployment's name and
	// Model its model: a deployment is never renamed nor moved to another model.
	Name  string `json:"name,omitempty"`
	Model string `json:"model,omitempty"`
	// Version pins a version number; Alias (with or without '@') resolves an alias when the deployment is
	// created or updated. Give at most one; with neither, create deploys the newest READY version.
	Version *int    `json:"version,omitempty"`
	Alias   *string `json:"alias,omitempty"`
	// FollowAlias rolls the deployment out to the alias's new version whenever the alias moves. Left out
	// (nil) with an Alias, it defaults to true, or to false when the deployment's canary has an analysis
	// (canary analysis promotes by setting the version); false pins the version the alias names now.
	// Left out without an Alias, it is unchanged.
	FollowAlias *bool `json:"follow_alias,omitempty"`
	Replicas    *int  `json:"replicas,omitempty"`
	// Batching merges concurrent requests into one model call; MaxBatchSize 0 (or 1) turns it off.
	Batching  *Batching `json:"batching,omitempty"`
	TimeoutMS *int      `json:"timeout_ms,omitempty"`
	MaxQueue  *int      `json:"max_queue,omitempty"`
	// Env is the replicas' extra environment. It replaces the whole environment: a nil map is not sent,
	// an empty one clears it.
	Env map[string]string `json:"env,omitzero"`
	// Canary sends a share of the requests to another version on replicas of its own; {Weight: 0} removes it.
	Canary *Canary `json:"canary,omitempty"`
	// Shadow sends a copy of every request to another version on replicas of its own; {Version: 0} removes it.
	Shadow *Shadow `json:"shadow,omitempty"`
	// Note becomes the deployment's reason once an update has settled, unless something else must be said
	// (a canary analysis says why it promoted or removed the canary). Set by the server's own callers, never
	// sent.
	Note string `json:"-"`
}

// Canary is another version of the deployment's model that takes Weight percent of the prediction requests,
// on Replicas replicas of its own, beside the deployment's version (which takes the rest).
type Canary struct {
	Version  int             `json:"version"`
	Weight   int             `json:"weight"`
	Replicas int             `json:"replicas"`
	Analysis *CanaryAnalysis `json:"analysis,omitempty"` // nil: promoted or removed by hand
}

// CanaryAnalysis promotes or rolls back a canary by its own requests, compared with the deployment's version:
// once per interval with at least MinRequests canary requests, the canary fails when more than MaxErrorRate of
// them were answered 5xx, or when its p99 latency is above MaxLatencyRatio times the version's; a failure
// removes the canary, PromoteAfter passed intervals in a row make it the deployment's version.
type CanaryAnalysis struct {
	IntervalSeconds int     `json:"interval_seconds"`  // default 60
	MinRequests     int     `json:"min_requests"`      // default 50; an interval with fewer canary requests is extended
	MaxErrorRate    float64 `json:"max_error_rate"`    // share of 5xx answers, default 0.01
	MaxLatencyRatio float64 `json:"max_latency_ratio"` // canary p99 / version p99; 0: not checked
	PromoteAfter    int     `json:"promote_after"`     // default 5
}

// Defaults of a canary analysis, for the fields left 0.
const (
	DefaultAnalysisInterval     = 60
	DefaultAnalysisMinRequests  = 50
	DefaultAnalysisMaxErrorRate = 0.01
	DefaultAnalysisPromoteAfter = 5
)

// WithDefaults returns a copy with the zero fields set to their defaults (MaxLatencyRatio stays 0: off).
func (a CanaryAnalysis) WithDefaults() CanaryAnalysis {
	if a.IntervalSeconds == 0 {
		a.IntervalSeconds = DefaultAnalysisInterval
	}
	if a.MinRequests == 0 {
		a.MinRequests = DefaultAnalysisMinRequests
	}
	if a.MaxErrorRate == 0 {
		a.MaxErrorRate = DefaultAnalysisMaxErrorRate
	}
	if a.PromoteAfter == 0 {
		a.PromoteAfter = DefaultAnalysisPromoteAfter
	}
	return a
}

// Shadow is another version of the deployment's model, on Replicas replicas of its own, that gets a copy of
// every prediction request the deployment's model answers; its outcomes are counted. With Compare its answers
// are kept next to the live ones (sampled like captures) for GET /api/v1/deployments/{name}/shadow; without,
// they are dropped.
type Shadow struct {
	Version  int  `json:"version"`
	Replicas int  `json:"replicas"`
	Compare  bool `json:"compare,omitempty"`
}

// Batching merges concurrent small requests into one model call.
type Batching struct {
	MaxBatchSize int `json:"max_batch_size"`
	MaxWaitMS    int `json:"max_wait_ms"`
}

// Enabled reports whether b merges requests: nil, or a batch of at most one request, means batching is off.
func (b *Batching) Enabled() bool { return b != nil && b.MaxBatchSize > 1 }

// ReplicaStatus is one replica process as the pool sees it.
type ReplicaStatus struct {
	ID        string    `json:"id"`
	Version   int       `json:"version"`
	State     string    `json:"state"` // STARTING, READY, DRAINING, STOPPED, FAILED
	PID       int       `json:"pid,omitempty"`
	Restarts  int       `json:"restarts"`
	InFlight  int       `json:"in_flight"`
	StartedAt time.Time `json:"started_at"`
	LastError string    `json:"last_error,omitempty"`
}

// DeploymentURLs are the stable prediction endpoints.
type DeploymentURLs struct {
	Predict     string `json:"predict"`
	Invocations string `json:"invocations"`
	V2Infer     string `json:"v2_infer"`
}

// DeploymentStore persists deployments (desired state); the live replica state is in memory.
type DeploymentStore interface {
	CreateDeployment(ctx context.Context, d *Deployment) error
	FindDeployment(ctx context.Context, name string) (*Deployment, error)
	FindDeployments(ctx context.Context) ([]*Deployment, error)
	UpdateDeployment(ctx context.Context, d *Deployment) error
	// SetDeploymentState moves a deployment from one state to another (compare-and-set: ECONFLICT when it is
	// no longer in from), recording reason.
	SetDeploymentState(ctx context.Context, name string, from, to DeploymentState, reason string) error
	DeleteDeployment(ctx context.Context, name string) error
}
