package slipway

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"time"
)

// Replica engines a deployment can name in its spec ("engine").
const (
	// EngineDefault ("") runs the deployment's replicas on the server's engine (local child processes).
	EngineDefault = ""
	// EngineExternal serves the deployment from network replicas that announce themselves: `slipway worker
	// serve` processes (started by hand, by systemd, or as pods) that download the version's files, register
	// their address with POST /api/v1/deployments/{name}/replicas and keep a heartbeat. The server dials them
	// and each of the deployment's replica slots takes one; extra workers wait as stand-bys.
	EngineExternal = "external"
)

// ReplicaSecretStore keeps each deployment's replica secret: the key of the HMAC that network replicas and
// the server prove to each other, and of the replica tokens. It is never part of a Deployment.
type ReplicaSecretStore interface {
	// ReplicaSecret returns the deployment's secret, creating it (32 random bytes) on first use.
	ReplicaSecret(ctx context.Context, deployment string) ([]byte, error)
	// DeleteReplicaSecret forgets it: workers holding it are refused from then on.
	DeleteReplicaSecret(ctx context.Context, deployment string) error
}

// ReplicaWorkerStore records network replica workers as they announce themselves, so that every server
// sharing the database sees every worker, whichever server its heartbeats reach.
type ReplicaWorkerStore interface {
	// RecordReplicaWorker inserts or refreshes (a heartbeat) a worker of deployment, with the database's
	// time; it also forgets workers silent for longer than forget. ENOTFOUND when the deployment is gone.
	RecordReplicaWorker(ctx context.Context, deployment string, a ReplicaAnnouncement, forget time.Duration) error
	// DeleteReplicaWorker forgets a worker that withdrew (false: it was not recorded).
	DeleteReplicaWorker(ctx context.Context, deployment, id string) (bool, error)
	// ReplicaWorkers lists the workers heard from within the last within, each with its heartbeat's age.
	ReplicaWorkers(ctx context.Context, within time.Duration) ([]RecordedReplicaWorker, error)
}

// RecordedReplicaWorker is a worker as the database last heard it.
type RecordedReplicaWorker struct {
	Deployment string
	ReplicaAnnouncement
	// Age is how long ago its last heartbeat reached a server (by the database's clock).
	Age time.Duration
}

// ReplicaAnnouncement is what a network replica sends when it is ready, and again as its heartbeat.
type ReplicaAnnouncement struct {
	// ID names the worker process (stable for its life); Address is host:port where it listens.
	ID      string `json:"id"`
	Address string `json:"address"`
	Version int    `json:"version"`
	Runtime string `json:"runtime"`
	// TLS says the worker listens with TLS: the server dials it with TLS and checks its certificate.
	TLS bool `json:"tls"`
	// Pod is the Kubernetes pod the worker runs in (SLIPWAY_POD_NAME), empty elsewhere: the server drops the
	// worker as soon as its watch sees the pod gone or not ready.
	Pod string `json:"pod,omitempty"`
}

// ReplicaAnnounceReply tells the worker how often to beat.
type ReplicaAnnounceReply struct {
	HeartbeatIntervalMS int `json:"heartbeat_interval_ms"`
	// ExpiresAt is when the server forgets the worker without another heartbeat.
	ExpiresAt time.Time `json:"expires_at"`
}

// RemoteReplica is an announced worker as GET deployment shows it.
type RemoteReplica struct {
	ID            string    `json:"id"`
	Address       string    `json:"address"`
	Version       int       `json:"version"`
	Runtime       string    `json:"runtime"`
	TLS           bool      `json:"tls"`
	State         string    `json:"state"` // AVAILABLE (a stand-by), CONNECTED (serving a replica slot)
	LastHeartbeat time.Time `json:"last_heartbeat"`
	Pod           string    `json:"pod,omitempty"`
}

// ReplicaSpec is what a network replica needs to serve a deployment: the server, the deployment and version,
// and the deployment's replica secret. It travels as one opaque string (SLIPWAY_REPLICA_SPEC).
type ReplicaSpec struct {
	Server     string `json:"server"`
	Deployment string `json:"deployment"`
	Version    int    `json:"version"`
	Secret     []byte `json:"secret"`
	// CACert is the PEM the server's HTTPS certificate chains to when it is self-signed (optional).
	CACert string `json:"ca_cert,omitempty"`
	// TLS makes the worker serve TLS with the deployment's key derived from Secret, which the server pins
	// (the kubernetes engine's pods when the server serves HTTPS).
	TLS bool `json:"tls,omitempty"`
}

// Encode is the spec's opaque form: base64url of its JSON.
func (s ReplicaSpec) Encode() string {
	b, _ := json.Marshal(s) // strings, an int and bytes always marshal
	return base64.RawURLEncoding.EncodeToString(b)
}

// DecodeReplicaSpec reads Encode's form and checks that it names everything a worker needs.
func DecodeReplicaSpec(text string) (ReplicaSpec, error) {
	var s ReplicaSpec
	if text == "" {
		return s, Errorf(EINVALID, "no replica spec: pass --spec or set SLIPWAY_REPLICA_SPEC (from `slipway deploy replica-spec NAME`)")
	}
	b, err := base64.RawURLEncoding.DecodeString(text)
	if err == nil {
		err = json.Unmarshal(b, &s)
	}
	if err != nil {
		return s, Errorf(EINVALID, "the replica spec is not one `slipway deploy replica-spec` printed: %v", err)
	}
	if s.Server == "" || s.Deployment == "" || s.Version < 1 || len(s.Secret) < 16 {
		return s, Errorf(EINVALID, "the replica spec lacks its server, deployment, version or secret")
	}
	return s, nil
}
