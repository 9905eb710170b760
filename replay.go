package slipway

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// ReplayState is the lifecycle of a replay: RUNNING until it ends SUCCEEDED (every captured request of the
// window was sent), FAILED (the candidate's replicas did not start, the captures could not be read, or a
// server stopped while driving it and the next could not resume it) or CANCELED.
type ReplayState string

const (
	ReplayRunning   ReplayState = "RUNNING"
	ReplaySucceeded ReplayState = "SUCCEEDED"
	ReplayFailed    ReplayState = "FAILED"
	ReplayCanceled  ReplayState = "CANCELED"
)

// CanMoveTo reports whether a replay may go from s to to: only a RUNNING one moves, and it ends once.
func (s ReplayState) CanMoveTo(to ReplayState) bool {
	return s == ReplayRunning && slices.Contains([]ReplayState{ReplayRunning, ReplaySucceeded, ReplayFailed, ReplayCanceled}, to)
}

// Ended says whether the replay is over.
func (s ReplayState) Ended() bool { return s != ReplayRunning }

// Limits of a replay request.
const (
	// MaxReplayLimit bounds how many captured requests one replay sends: a replay is a sample for a decision,
	// not a second production; a million requests is hours of a model's time.
	MaxReplayLimit = 1_000_000
	// DefaultReplayLimit is the limit of a replay that gives none.
	DefaultReplayLimit = 10_000
	// MaxReplayWindow bounds the window's length (captures are kept 7 days by default).
	MaxReplayWindow = 90 * 24 * time.Hour
	// MaxReplayReplicas bounds the candidate replicas a replay starts.
	MaxReplayReplicas = 8
)

// ReplaySpec is the body of POST /api/v1/deployments/{name}/replays.
type ReplaySpec struct {
	// Version is the candidate: a READY version of the deployment's model.
	Version int `json:"version"`
	// From and To are the window of captured requests replayed, from <= time < to.
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	// Limit is the most captured requests sent (the window's oldest first); 0: DefaultReplayLimit.
	Limit int `json:"limit,omitempty"`
	// LiveVersion keeps only the captures one version answered (0: every captured answer of the window).
	LiveVersion int `json:"live_version,omitempty"`
	// Replicas is how many replicas of the candidate the replay starts (0: 1).
	Replicas int `json:"replicas,omitempty"`
}

// Validate checks the spec; each problem names its field.
func (sp ReplaySpec) Validate() error {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if sp.Version <= 0 {
		add("version: give the candidate's version number (a READY version of the deployment's model)")
	}
	switch {
	case sp.From.IsZero() || sp.To.IsZero():
		add("from, to: give the window of captured requests to replay (RFC 3339 times)")
	case !sp.From.Before(sp.To):
		add("from must be before to (got from %s, to %s)", sp.From.Format(time.RFC3339), sp.To.Format(time.RFC3339))
	case sp.To.Sub(sp.From) > MaxReplayWindow:
		add("from, to: a window of at most %s, not %s", MaxReplayWindow, sp.To.Sub(sp.From))
	}
	if sp.Limit < 0 || sp.Limit > MaxReplayLimit {
		add("limit: 1 to %d captured requests (0: %d), not %d", MaxReplayLimit, DefaultReplayLimit, sp.Limit)
	}
	if sp.LiveVersion < 0 {
		add("live_version: a version number, or 0 for every captured answer")
	}
	if sp.Replicas < 0 || sp.Replicas > MaxReplayReplicas {
		add("replicas: 1 to %d (0: 1), not %d", MaxReplayReplicas, sp.Replicas)
	}
	if len(problems) > 0 {
		return Errorf(EINVALID, "invalid replay: %s", strings.Join(problems, "; "))
	}
	return nil
}

// WithDefaults fills Limit and Replicas.
func (sp ReplaySpec) WithDefaults() ReplaySpec {
	if sp.Limit == 0 {
		sp.Limit = DefaultReplayLimit
	}
	if sp.Replicas == 0 {
		sp.Replicas = 1
	}
	return sp
}

// Replay sends the captured requests of a window to a candidate version, offline, and compares its answers
// with the captured live ones. Its Report has the shape of the shadow comparison's (the candidate is the
// "shadow" side).
type Replay struct {
	ID         string      `json:"id"`
	Deployment string      `json:"deployment"`
	Model      string      `json:"model"`
	Spec       ReplaySpec  `json:"spec"`
	State      ReplayState `json:"state"`
	Reason     string      `json:"reason"`
	// Sent is how many captured requests have been answered by the candidate (or failed); Total how many the
	// window holds, up to the limit (known once the replay has counted them).
	Sent  int64 `json:"sent"`
	Total int64 `json:"total"`
	// Attempt counts the servers that drove the replay: a server that resumes one after a restart starts it
	// again from the window's beginning (the report is a function of the window) under a new attempt, and
	// the writes of an older attempt are refused.
	Attempt int           `json:"attempt"`
	Report  *ShadowReport `json:"report"`
	// Owner is the server driving the replay (its id; "" on a single server).
	Owner     string     `json:"owner,omitempty"`
	CreatedBy string     `json:"created_by"`
	CreatedAt time.Time  `json:"created_at"`
	UpdatedAt time.Time  `json:"updated_at"`
	EndedAt   *time.Time `json:"ended_at,omitempty"`
}

// ReplayStore keeps replays.
type ReplayStore interface {
	CreateReplay(ctx context.Context, r *Replay) error
	FindReplay(ctx context.Context, deployment, id string) (*Replay, error)
	// FindReplays lists a deployment's replays, newest first, at most limit.
	FindReplays(ctx context.Context, deployment string, limit int) ([]*Replay, error)
	// FindRunningReplays lists every RUNNING replay (of every deployment).
	FindRunningReplays(ctx context.Context) ([]*Replay, error)
	// UpdateReplay stores r's progress, state and report if the stored replay is still RUNNING under attempt
	// (compare-and-set); ECONFLICT when it ended or another attempt took it over.
	UpdateReplay(ctx context.Context, r *Replay, attempt int) error
}
