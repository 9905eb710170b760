package slipway

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
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
	// Holdout is the share of requests marked as holdout (Slipway-Holdout: true): the application withholds
	// its action on them, so that their outcomes show the model's quality without its feedback loop.
	Holdout *Holdout `json:"holdout,omitempty"`
	// Autoscaling moves the replica count (of the deployment and of its canary and shadow) with the load;
	// nil: Replicas stay fixed.
	Autoscaling *Autoscaling `json:"autoscaling,omitempty"`
	// Load is LoadEager (replicas start with the deployment; "" too) or LoadLazy (the first request starts
	// them).
	Load string `json:"load,omitempty"`
	// Isolation is how an ONNX deployment's replicas run: IsolationProcess (a process each; "" too) or
	// IsolationInProcess (an ONNX Runtime session inside the server).
	Isolation string `json:"isolation,omitempty"`
	// Resources are what each replica (of every side) may use; nil: not limited.
	Resources *Resources `json:"resources,omitempty"`
	// Engine is where the replicas run: EngineDefault ("", the server's engine) or EngineExternal (network
	// replicas that announce themselves). Set at create.
	Engine    string    `json:"engine,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// Revision counts the changes of the stored deployment: every write compares it and moves it on, so that
	// a change based on a stale read is refused rather than written over a newer one.
	Revision int64 `json:"revision"`
	// Filled by the API from the live pool, not stored.
	ReplicaStatus []ReplicaStatus `json:"replica_status"`
	// ReadyReplicas counts the READY replicas of every side; ScaledToZero says the deployment serves with no
	// replica at all (the next request starts one).
	ReadyReplicas     int                `json:"ready_replicas"`
	ScaledToZero      bool               `json:"scaled_to_zero"`
	AutoscalingStatus *AutoscalingStatus `json:"autoscaling_status,omitempty"`
	URLs              *DeploymentURLs    `json:"urls,omitempty"`
	// RemoteReplicas are the workers announced for an external deployment (address, state, last heartbeat).
	RemoteReplicas []RemoteReplica `json:"remote_replicas,omitempty"`

	// Project is the project it belongs to (docs/projects.md).
	Project string `json:"project,omitempty"`
}

// Load modes of a deployment.
const (
	LoadEager = "eager"
	LoadLazy  = "lazy"
)

// Isolations of a deployment's replicas.
const (
	// IsolationProcess runs each replica as a process of its own (the default): a model that crashes takes its
	// replica down, and the server restarts it.
	IsolationProcess = "process"
	// IsolationInProcess runs each replica of an ONNX model as an ONNX Runtime session inside the server: no
	// process hop per call and a few hundred KB per loaded model instead of a process, but a crash of the
	// runtime takes the server down.
	IsolationInProcess = "in-process"
)

// MaxReplicas is the most replicas a deployment (or its canary or shadow) may run or scale to.
const MaxReplicas = 64

// Autoscaling is a deployment's scaling policy. The server samples the requests in flight and queued on each
// of its pools; it wants ceil(load / TargetInFlight) replicas within [MinReplicas, MaxReplicas], adds them as
// soon as the load of the last seconds asks, and removes them only when the highest load of the last
// ScaleDownAfterS seconds allows. MinReplicas 0 scales an idle deployment to zero: the next request waits
// (up to timeout_ms) while a replica starts.
type Autoscaling struct {
	MinReplicas     int     `json:"min_replicas"`
	MaxReplicas     int     `json:"max_replicas"`
	TargetInFlight  float64 `json:"target_in_flight"`
	ScaleDownAfterS int     `json:"scale_down_after_s"`
}

// Defaults of an autoscaling policy, for the fields left 0 (MinReplicas 0 is meaningful: scale to zero).
const (
	DefaultTargetInFlight  = 4
	DefaultScaleDownAfterS = 300
)

// AutoscalingStatus is what the autoscaler sees and did (live, not stored).
type AutoscalingStatus struct {
	Current   int             `json:"current"` // the deployment's own replicas (its canary and shadow are in Decisions)
	Desired   int             `json:"desired"`
	Load      float64         `json:"load"` // requests in flight and queued, averaged over the last seconds
	Decisions []ScaleDecision `json:"decisions"`
}

// ScaleDecision is one change of a pool's replica count, newest first in AutoscalingStatus.
type ScaleDecision struct {
	At        time.Time `json:"at"`
	Side      string    `json:"side"` // "deployment", "canary" or "shadow"
	Version   int       `json:"version"`
	Direction string    `json:"direction"` // "up" or "down"
	From      int       `json:"from"`
	To        int       `json:"to"`
	Load      float64   `json:"load"`
	Reason    string    `json:"reason"`
}

// Validate checks d's settings (not the model and versions it names: the store knows those). The error,
// EINVALID, lists every problem.
func (d *Deployment) Validate() error {
	var problems []string
	problems = append(problems, d.replicaProblems()...)
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
	if d.Isolation != "" && d.Isolation != IsolationProcess && d.Isolation != IsolationInProcess {
		problems = append(problems, fmt.Sprintf("isolation must be %q or %q, got %q", IsolationProcess, IsolationInProcess, d.Isolation))
	}
	if d.Isolation == IsolationInProcess && d.Engine == EngineExternal {
		problems = append(problems, fmt.Sprintf("isolation %q runs the model inside this server: it cannot be served by external workers (engine %q)", IsolationInProcess, EngineExternal))
	}
	if d.Engine != EngineDefault && d.Engine != EngineExternal {
		problems = append(problems, fmt.Sprintf("engine must be %q (replicas announce themselves) or left out, got %q", EngineExternal, d.Engine))
	}
	problems = append(problems, d.Resources.Problems()...)
	if d.Engine == EngineExternal && !d.Resources.IsZero() {
		problems = append(problems, fmt.Sprintf("resources cannot limit the workers of engine %q: their operator starts them (`slipway worker serve`) and sets their limits", EngineExternal))
	}
	if d.Isolation == IsolationInProcess && !d.Resources.IsZero() {
		problems = append(problems, fmt.Sprintf("resources cannot limit replicas with isolation %q (they share the server's process): leave resources out or use isolation %q", IsolationInProcess, IsolationProcess))
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
		if c.Replicas < 1 || c.Replicas > MaxReplicas {
			problems = append(problems, fmt.Sprintf("canary replicas must be 1-%d, got %d", MaxReplicas, c.Replicas))
		}
		problems = append(problems, d.analysisProblems(c.Analysis)...)
	}
	if sh := d.Shadow; sh != nil {
		if sh.Version < 1 {
			problems = append(problems, fmt.Sprintf("shadow version must be a version number, got %d", sh.Version))
		}
		if sh.Replicas < 1 || sh.Replicas > MaxReplicas {
			problems = append(problems, fmt.Sprintf("shadow replicas must be 1-%d, got %d", MaxReplicas, sh.Replicas))
		}
	}
	if h := d.Holdout; h != nil && (math.IsNaN(h.Share) || h.Share <= 0 || h.Share > MaxHoldoutShare) {
		problems = append(problems, fmt.Sprintf("holdout share must be above 0 and at most %g (a share of the requests; 0 removes the holdout), got %g", MaxHoldoutShare, h.Share))
	}
	if len(problems) > 0 {
		return Errorf(EINVALID, "deployment %s: %s", d.Name, strings.Join(problems, "; "))
	}
	return nil
}

// replicaProblems checks the starting replica count against the autoscaling policy and the load mode.
func (d *Deployment) replicaProblems() []string {
	if d.Load != "" && d.Load != LoadEager && d.Load != LoadLazy {
		return []string{fmt.Sprintf("load must be %q or %q, got %q", LoadEager, LoadLazy, d.Load)}
	}
	a := d.Autoscaling
	if a == nil {
		if d.Replicas < 1 || d.Replicas > MaxReplicas {
			return []string{fmt.Sprintf("replicas must be 1-%d, got %d (0 needs autoscaling with min_replicas 0)", MaxReplicas, d.Replicas)}
		}
		return nil
	}
	var problems []string
	if a.MinReplicas < 0 || a.MaxReplicas < 1 || a.MaxReplicas > MaxReplicas || a.MinReplicas > a.MaxReplicas {
		problems = append(problems, fmt.Sprintf("autoscaling needs 0 <= min_replicas <= max_replicas <= %d and max_replicas >= 1, got min %d, max %d",
			MaxReplicas, a.MinReplicas, a.MaxReplicas))
	} else if d.Replicas < a.MinReplicas || d.Replicas > a.MaxReplicas {
		problems = append(problems, fmt.Sprintf("replicas (the starting count) must be within autoscaling's min_replicas %d and max_replicas %d, got %d",
			a.MinReplicas, a.MaxReplicas, d.Replicas))
	}
	if !(a.TargetInFlight > 0 && a.TargetInFlight <= 10_000) { // also refuses NaN
		problems = append(problems, fmt.Sprintf("autoscaling target_in_flight (requests in flight or queued per replica) must be above 0 and at most 10000, got %g", a.TargetInFlight))
	}
	if a.ScaleDownAfterS < 1 || a.ScaleDownAfterS > 86400 {
		problems = append(problems, fmt.Sprintf("autoscaling scale_down_after_s must be 1-86400 seconds, got %d", a.ScaleDownAfterS))
	}
	if a.MinReplicas == 0 && d.MaxQueue < 1 {
		problems = append(problems, "autoscaling with min_replicas 0 needs max_queue of at least 1: requests wait in the queue while a replica starts")
	}
	return problems
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
	// Revision, on update, applies the change only if the deployment is still at this revision (a read-modify-
	// write by a client: ECONFLICT otherwise, read it again and retry). The If-Match header sets it too.
	Revision *int64 `json:"revision,omitempty"`
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
	// Holdout marks a share of the requests as holdout; {"share": 0} removes it.
	Holdout *Holdout `json:"holdout,omitempty"`
	// Autoscaling sets the scaling policy (its zero fields take the defaults, but min_replicas);
	// {"max_replicas": 0} removes it, and the deployment keeps replicas fixed.
	Autoscaling *Autoscaling `json:"autoscaling,omitempty"`
	// Load is "eager" (the default: replicas start with the deployment) or "lazy" (the first request starts
	// them).
	Load *string `json:"load,omitempty"`
	// Isolation is "process" (the default: each replica a process) or "in-process" (ONNX models only: each
	// replica an ONNX Runtime session inside the server). Changing it rolls out new replicas.
	Isolation *string `json:"isolation,omitempty"`
	// Resources sets what each replica may use (cpu cores, memory_mb); {} (both 0) removes them. Changing
	// them rolls out new replicas.
	Resources *Resources `json:"resources,omitempty"`
	// Engine chooses where the replicas run, at create only: "external" serves from announced network
	// replicas (`slipway worker serve`); left out, the server's engine.
	Engine *string `json:"engine,omitempty"`
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

// ErrStaleDeployment is the cause of a deployment write refused because the deployment changed since it was
// read (its revision moved on): read it again and apply the change to what it is now.
var ErrStaleDeployment = errors.New("the deployment changed since it was read")

// DeploymentStore persists deployments (desired state); the live replica state is in memory.
type DeploymentStore interface {
	CreateDeployment(ctx context.Context, d *Deployment) error
	FindDeployment(ctx context.Context, name string) (*Deployment, error)
	FindDeployments(ctx context.Context) ([]*Deployment, error)
	// UpdateDeployment stores d if the stored deployment is still at d.Revision, and moves d.Revision on;
	// ECONFLICT wrapping ErrStaleDeployment otherwise.
	UpdateDeployment(ctx context.Context, d *Deployment) error
	// SetDeploymentState moves a deployment from one state to another (compare-and-set: ECONFLICT when it is
	// no longer in from), recording reason.
	SetDeploymentState(ctx context.Context, name string, from, to DeploymentState, reason string) error
	DeleteDeployment(ctx context.Context, name string) error
}

// Holdout is the share of a deployment's requests whose application is asked to withhold its action (the
// response carries Slipway-Holdout: true, the capture is marked), so that performance can be reported apart
// for held-out and treated traffic: actions taken on predictions change the outcomes they are judged by.
// A request is held out when the first 8 bytes of its request id's SHA-256 (big-endian) are below Share ×
// 2^64: the same id is always held out or never, and clients can tell in advance.
type Holdout struct {
	Share float64 `json:"share"`
}

// MaxHoldoutShare bounds the holdout: beyond half, the treated traffic would be the control.
const MaxHoldoutShare = 0.5

// HeldOut reports whether the request with id falls in a holdout of share: the first 8 bytes of the id's
// SHA-256, read big-endian, below share × 2^64. (A cheaper hash such as FNV-1a spreads ids that differ in
// their last characters, req-001, req-002, badly over its high bits.)
func HeldOut(share float64, id string) bool {
	if share <= 0 {
		return false
	}
	sum := sha256.Sum256([]byte(id))
	return float64(binary.BigEndian.Uint64(sum[:8])) < share*math.Exp2(64)
}
