package slipway

import (
	"context"
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

// Deployment is a stable endpoint serving one model version with N replicas.
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
// every prediction request the deployment's model answers; its answers are dropped, its outcomes counted.
type Shadow struct {
	Version  int `json:"version"`
	Replicas int `json:"replicas"`
}

// Batching merges concurrent small requests into one model call.
type Batching struct {
	MaxBatchSize int `json:"max_batch_size"`
	MaxWaitMS    int `json:"max_wait_ms"`
}

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
	SetDeploymentState(ctx context.Context, name string, to DeploymentState, reason string) error
	DeleteDeployment(ctx context.Context, name string) error
}
