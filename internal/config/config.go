// Package config turns flags and environment variables into the server's Config. Nothing else reads them.
package config

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/slipway-ml/slipway"
)

// Config is everything `slipway server` needs.
type Config struct {
	DataDir   string
	Addr      string
	LogFormat string // text or json
	LogLevel  string
	Python    string
	// PythonEnvs are the named Python environments beside the default one (Python): name → interpreter path
	// (--python-env NAME=/path/to/python, repeatable; env SLIPWAY_PYTHON_ENVS=NAME=/path,NAME=/path).
	PythonEnvs       map[string]string
	ORTLibrary       string
	MaxUploadBytes   int64
	MaxPayloadBytes  int64
	MaxUnpackedBytes int64
	MaxFiles         int
	MaxRatio         float64
	ShutdownTimeout  time.Duration
	// HTTP limits: the largest request header, how long a client may take to send it, how long a kept-alive
	// connection may sit idle, and, on the prediction endpoints, how long a body may take to arrive and an
	// answer to be written (downloads, backups and log streams have no write limit: they are long by nature).
	MaxHeaderBytes     int
	ReadHeaderTimeout  time.Duration
	IdleTimeout        time.Duration
	PayloadReadTimeout time.Duration
	WriteTimeout       time.Duration
	ReadyTimeout       time.Duration
	// MaxTokenTTL caps how long a token created through the API may last (0: no cap).
	MaxTokenTTL time.Duration
	// MaxConnsPerClient caps the connections open at once from one client address (0: no cap).
	MaxConnsPerClient int
	// AuditRetention is how long audit entries are kept (0: forever).
	AuditRetention time.Duration
	DebugAddr      string // pprof listener, off when empty
	// Tracing exports OpenTelemetry traces over OTLP/HTTP: on when OTEL_EXPORTER_OTLP_ENDPOINT or
	// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT names a collector (see TracingFromEnv). The OTel SDK reads its other
	// standard variables (headers, service name, sampler, ...) itself, as the AWS chain reads its own.
	Tracing bool
	// GRPCAddr is where the Open Inference Protocol's gRPC service listens (off when empty); with TLSCert it
	// speaks TLS with the same certificate.
	GRPCAddr string
	// TLSCert and TLSKey (PEM files) make the server speak HTTPS; SIGHUP reads them again.
	TLSCert, TLSKey string
	// DatabaseURL is where the state lives, as given: empty or sqlite:///path for SQLite files, or
	// postgres://... (postgresql://...) for every table in PostgreSQL. Validate reads it into Database.
	DatabaseURL string
	Database    Database
	// ArtifactStore is where model artifacts live: empty for DATA_DIR/blobs, or s3://BUCKET/PREFIX.
	ArtifactStore string
	// S3Endpoint and S3Region come from the AWS variables (AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL, AWS_REGION)
	// as every AWS client reads them; the artifact store's URL can override both.
	S3Endpoint, S3Region string
	// S3CABundle is AWS_CA_BUNDLE: more certificate authorities to trust for the bucket's endpoint.
	S3CABundle string
	// ServerScheduling and ReplicaScheduling are the Linux scheduling classes (batch or normal) of the server's
	// own threads and of its local model replicas (docs/architecture.md, "The server under SCHED_BATCH").
	ServerScheduling, ReplicaScheduling string
	// ModelMemoryBudget bounds the measured memory of the loaded replicas (--model-memory-budget, e.g. 8GiB);
	// beyond it the least recently used idle ones are unloaded. 0: half the memory of the machine (or of the
	// server's cgroup, when that is less).
	ModelMemoryBudget int64
	// AdvertiseURL is how the other servers sharing the PostgreSQL database reach this one (forwarded
	// predictions and calls); empty: derived from the listen address (right for servers on one machine).
	AdvertiseURL string
	// LeaseTTL is how long a lease (a deployment's host, a run's owner, alert evaluation) lives without
	// renewal (docs/production.md): a server that stops renewing loses its work after at most this long.
	LeaseTTL time.Duration
	// AdvertiseGRPC is HOST:PORT where the other servers reach this one's gRPC service (--grpc-addr): gRPC
	// calls about deployments this server hosts are forwarded there. Default: --grpc-addr's, with the
	// advertise URL's host for an unspecified one (0.0.0.0).
	AdvertiseGRPC string

	// Monitoring
	MetricsRetention time.Duration // 1-minute series kept in the store
	AlertInterval    time.Duration // how often alert rules are evaluated
	// Jobs
	MaxConcurrentRuns int
	// Engine is where job runs execute: local (processes on this machine) or kubernetes (Jobs, in Namespace of
	// the cluster Kubeconfig names, or the pod's own cluster when empty, with Image).
	Engine, Kubeconfig, Namespace, Image string
	// ReplicaNetwork is how the kubernetes engine's replica pods are reached: "pod" (each pod's own IP, a pod
	// network) or "host" (hostNetwork: a free port of the node, for clusters without a pod network such as
	// scripts/k8s-dev.sh's).
	ReplicaNetwork string
	// ReplicaAnnounceURL is the URL the kubernetes engine's replica pods announce themselves and download their
	// model at: one that reaches any server of the installation (a Service in front of them all), so that a
	// change of the hosting server does not change the pods' template. Empty: the hosting server's
	// --advertise-url (or listen URL).
	ReplicaAnnounceURL string
	// Batch predictions
	ImportDir   string   // files batch predictions may read (default DATA_DIR/imports)
	Connections []string // NAME=sqlite:///path or NAME=postgres://... (repeatable --connection)
	// ConnectionsFile maps more names to database URLs (YAML or JSON, ${ENV_VAR} expanded); its connections,
	// read by Parse, are in FileConnections.
	ConnectionsFile string
	FileConnections []FileConnection

	// Warnings are things the server should log once it has a logger (a connections file others can read).
	Warnings []string
}

// Bounds of --lease-ttl.
const (
	MinLeaseTTL = 3 * time.Second
	MaxLeaseTTL = 10 * time.Minute
)

// Default returns the defaults documented in the README.
func Default() Config {
	return Config{
		DataDir: "./slipway-data", Addr: "127.0.0.1:8080", LogFormat: "text", LogLevel: "info",
		Python: "/usr/bin/python3", MaxUploadBytes: 1 << 30, MaxPayloadBytes: 10 << 20, MaxUnpackedBytes: 4 << 30, MaxFiles: 10_000,
		MaxRatio: 200, ShutdownTimeout: 30 * time.Second, ReadyTimeout: 2 * time.Minute,
		MaxHeaderBytes: 64 << 10, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		AuditRetention:     400 * 24 * time.Hour,
		PayloadReadTimeout: time.Minute, WriteTimeout: time.Minute,
		MetricsRetention: 14 * 24 * time.Hour, AlertInterval: 30 * time.Second, MaxConcurrentRuns: 4, ServerScheduling: "batch", ReplicaScheduling: "auto", LeaseTTL: 15 * time.Second,
		Engine: "local", Namespace: "default", Image: "localhost/slipway:dev", ReplicaNetwork: "pod",
	}
}

// Parse reads flags from args, with SLIPWAY_* environment variables (looked up with getenv) as defaults.
func Parse(args []string, getenv func(string) string, usage io.Writer) (Config, error) {
	c := Default()
	var budget string
	for _, e := range []struct {
		dst *string
		key string
	}{
		{&c.DataDir, "SLIPWAY_DATA_DIR"}, {&c.Addr, "SLIPWAY_ADDR"}, {&c.LogFormat, "SLIPWAY_LOG_FORMAT"},
		{&c.LogLevel, "SLIPWAY_LOG_LEVEL"}, {&c.Python, "SLIPWAY_PYTHON"}, {&c.ORTLibrary, "SLIPWAY_ORT_LIB"},
		{&c.ConnectionsFile, "SLIPWAY_CONNECTIONS_FILE"}, {&c.ReplicaScheduling, "SLIPWAY_REPLICA_SCHEDULING"}, {&c.ServerScheduling, "SLIPWAY_SERVER_SCHEDULING"},
		{&c.ArtifactStore, "SLIPWAY_ARTIFACT_STORE"}, {&c.DatabaseURL, "SLIPWAY_DATABASE"},
		{&c.TLSCert, "SLIPWAY_TLS_CERT"}, {&c.TLSKey, "SLIPWAY_TLS_KEY"}, {&c.AdvertiseURL, "SLIPWAY_ADVERTISE_URL"},
		{&c.AdvertiseGRPC, "SLIPWAY_ADVERTISE_GRPC"},
		{&c.Engine, "SLIPWAY_ENGINE"}, {&c.Kubeconfig, "SLIPWAY_KUBECONFIG"}, {&c.Namespace, "SLIPWAY_NAMESPACE"},
		{&c.Image, "SLIPWAY_IMAGE"}, {&c.ReplicaNetwork, "SLIPWAY_REPLICA_NETWORK"},
		{&c.ReplicaAnnounceURL, "SLIPWAY_REPLICA_ANNOUNCE_URL"}, {&c.GRPCAddr, "SLIPWAY_GRPC_ADDR"},
		{&budget, "SLIPWAY_MODEL_MEMORY_BUDGET"},
	} {
		if v := getenv(e.key); v != "" {
			*e.dst = v
		}
	}
	c.S3Endpoint = cmp.Or(getenv("AWS_ENDPOINT_URL_S3"), getenv("AWS_ENDPOINT_URL"))
	c.Tracing = TracingFromEnv(getenv)
	c.S3Region = cmp.Or(getenv("AWS_REGION"), getenv("AWS_DEFAULT_REGION"))
	c.S3CABundle = getenv("AWS_CA_BUNDLE")
	if v := getenv("SLIPWAY_MAX_UPLOAD_BYTES"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return c, fmt.Errorf("SLIPWAY_MAX_UPLOAD_BYTES=%q: not a number", v)
		}
		c.MaxUploadBytes = n
	}
	if v := getenv("SLIPWAY_LEASE_TTL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return c, fmt.Errorf("SLIPWAY_LEASE_TTL=%q: not a duration (write it as 15s, 30s, 1m)", v)
		}
		c.LeaseTTL = d
	}

	fs := flag.NewFlagSet("slipway server", flag.ContinueOnError)
	fs.SetOutput(usage)
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "folder for the database, artifacts and the admin token (env SLIPWAY_DATA_DIR)")
	fs.StringVar(&c.Addr, "addr", c.Addr, "host:port to listen on (env SLIPWAY_ADDR)")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "log format: text or json (env SLIPWAY_LOG_FORMAT)")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "log level: debug, info, warn, error (env SLIPWAY_LOG_LEVEL)")
	fs.StringVar(&c.Python, "python", c.Python, "Python interpreter for python-runtime models (env SLIPWAY_PYTHON)")
	var pythonEnvs []string // the flags win over SLIPWAY_PYTHON_ENVS, as every flag does over its variable
	fs.Func("python-env", "a named Python environment, NAME=/path/to/python (repeatable; env SLIPWAY_PYTHON_ENVS=NAME=/path,...): versions choose it by runtime.yaml INFERENCE_ENV_SLUG or metadata.environment.name; --python is the environment named default", func(v string) error {
		pythonEnvs = append(pythonEnvs, v)
		return nil
	})
	fs.StringVar(&c.ORTLibrary, "ort-lib", c.ORTLibrary, "path to libonnxruntime.so (env SLIPWAY_ORT_LIB; default: where scripts/install-ort.sh puts it)")
	fs.Int64Var(&c.MaxUploadBytes, "max-upload-bytes", c.MaxUploadBytes, "largest artifact upload accepted (env SLIPWAY_MAX_UPLOAD_BYTES)")
	fs.Int64Var(&c.MaxPayloadBytes, "max-payload-bytes", c.MaxPayloadBytes, "largest prediction request body (larger → 413)")
	fs.Int64Var(&c.MaxUnpackedBytes, "max-unpacked-bytes", c.MaxUnpackedBytes, "largest total size of an unpacked artifact")
	fs.IntVar(&c.MaxFiles, "max-files", c.MaxFiles, "most files (entries) in an artifact archive")
	fs.Float64Var(&c.MaxRatio, "max-compression-ratio", c.MaxRatio, "largest unpacked/uploaded size ratio (archive bomb guard)")
	fs.DurationVar(&c.ReadyTimeout, "replica-ready-timeout", c.ReadyTimeout, "how long a replica may take to load its model (load_model()) before it counts as failed")
	fs.StringVar(&budget, "model-memory-budget", budget, "memory the loaded model replicas may hold, measured (e.g. 8GiB); beyond it the least recently used idle replicas are unloaded and reload on their next request (default: half the machine's memory, or of the server's cgroup limit; env SLIPWAY_MODEL_MEMORY_BUDGET)")
	fs.StringVar(&c.ServerScheduling, "server-scheduling", c.ServerScheduling, "Linux scheduling class of the server's own threads: batch (SCHED_BATCH: the HTTP front end waking up does not preempt a model computing on the same machine) or normal (leave the server as started; env SLIPWAY_SERVER_SCHEDULING)")
	fs.StringVar(&c.ReplicaScheduling, "replica-scheduling", c.ReplicaScheduling, "Linux scheduling class of local model replicas once loaded: auto (Python replicas SCHED_OTHER, ONNX replicas SCHED_BATCH; all SCHED_BATCH when the server is not), normal (SCHED_OTHER) or batch (SCHED_BATCH: waking a replica does not preempt the server; env SLIPWAY_REPLICA_SCHEDULING)")
	fs.StringVar(&c.TLSCert, "tls-cert", c.TLSCert, "serve HTTPS with this certificate (PEM; with --tls-key; SIGHUP reloads both; env SLIPWAY_TLS_CERT)")
	fs.StringVar(&c.TLSKey, "tls-key", c.TLSKey, "the private key of --tls-cert (PEM; env SLIPWAY_TLS_KEY)")
	fs.StringVar(&c.DatabaseURL, "database", c.DatabaseURL, "where the state lives: sqlite:///path/slipway.db (default: DATA_DIR/slipway.db, with monitor.db next to it) or postgres://user:password@host:5432/db for every table in PostgreSQL (env SLIPWAY_DATABASE)")
	fs.StringVar(&c.ArtifactStore, "artifact-store", c.ArtifactStore, "where model artifacts are stored: empty for DATA_DIR/blobs, or s3://BUCKET/PREFIX[?endpoint=URL&region=R] for an S3-compatible bucket (env SLIPWAY_ARTIFACT_STORE; credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ~/.aws or the IAM role)")
	fs.StringVar(&c.AdvertiseURL, "advertise-url", c.AdvertiseURL, "the URL the other servers (several on one --database postgres://) and the replica pods of --engine kubernetes reach this one at, e.g. http://10.0.0.5:8080 (env SLIPWAY_ADVERTISE_URL; default: from --addr, loopback for 0.0.0.0)")
	fs.StringVar(&c.GRPCAddr, "grpc-addr", c.GRPCAddr, "serve the Open Inference Protocol over gRPC (inference.GRPCInferenceService, as Triton and KServe clients call it) on this host:port; TLS with --tls-cert (off by default; env SLIPWAY_GRPC_ADDR)")
	fs.StringVar(&c.DebugAddr, "debug-addr", c.DebugAddr, "serve Go pprof profiles on this host:port (off by default; keep it on loopback)")
	fs.DurationVar(&c.MetricsRetention, "metrics-retention", c.MetricsRetention, "how long 1-minute metric series are kept")
	fs.DurationVar(&c.AlertInterval, "alert-interval", c.AlertInterval, "how often alert rules are evaluated (shorter: alerts fire sooner, at the cost of a drift computation per drift rule each time)")
	fs.IntVar(&c.MaxConcurrentRuns, "max-concurrent-runs", c.MaxConcurrentRuns, "job and pipeline step processes running at once (others queue)")
	fs.StringVar(&c.Engine, "engine", c.Engine, "where job runs and deployments' replicas execute: local (processes on this machine) or kubernetes (Jobs, and a Deployment of worker pods per served version) (env SLIPWAY_ENGINE)")
	fs.StringVar(&c.Kubeconfig, "kubeconfig", c.Kubeconfig, "kubeconfig of the cluster for --engine kubernetes (env SLIPWAY_KUBECONFIG; empty: the pod's in-cluster configuration)")
	fs.StringVar(&c.Namespace, "namespace", c.Namespace, "Kubernetes namespace of Slipway's Jobs (env SLIPWAY_NAMESPACE)")
	fs.StringVar(&c.Image, "image", c.Image, "image of job run and replica pods for --engine kubernetes (env SLIPWAY_IMAGE; scripts/image.sh builds it)")
	fs.StringVar(&c.ReplicaAnnounceURL, "replica-announce-url", c.ReplicaAnnounceURL, "--engine kubernetes with several servers: the URL replica pods announce themselves at, one that reaches any server (a Service in front of them all): every server then holds its own session to every pod, and a change of host leaves the pods alone (env SLIPWAY_REPLICA_ANNOUNCE_URL; default: the hosting server's --advertise-url)")
	fs.StringVar(&c.ReplicaNetwork, "replica-network", c.ReplicaNetwork, "how the server reaches replica pods (--engine kubernetes): pod (their pod IPs) or host (hostNetwork, a free port of the node: clusters without a pod network) (env SLIPWAY_REPLICA_NETWORK)")
	fs.StringVar(&c.ImportDir, "import-dir", c.ImportDir, "folder batch predictions may read input files from (default DATA_DIR/imports)")
	fs.Func("connection", "named database for batch predictions: NAME=sqlite:///path/to.db or NAME=postgres://... (repeatable)", func(v string) error {
		c.Connections = append(c.Connections, v)
		return nil
	})
	fs.StringVar(&c.ConnectionsFile, "connections-file", c.ConnectionsFile, "YAML or JSON file of NAME: URL connections for batch predictions; ${ENV_VAR} in URLs is expanded (env SLIPWAY_CONNECTIONS_FILE)")
	fs.IntVar(&c.MaxHeaderBytes, "max-header-bytes", c.MaxHeaderBytes, "largest request header (request line and header fields; larger → 431)")
	fs.DurationVar(&c.ReadHeaderTimeout, "read-header-timeout", c.ReadHeaderTimeout, "how long a client may take to send a request's header before the connection is closed")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", c.IdleTimeout, "how long a kept-alive connection may wait for its next request")
	fs.DurationVar(&c.PayloadReadTimeout, "payload-read-timeout", c.PayloadReadTimeout, "how long a prediction request's body may take to arrive (slower → 400, before any replica is involved; 0: no limit)")
	fs.DurationVar(&c.WriteTimeout, "write-timeout", c.WriteTimeout, "how long writing a prediction's answer may take once the model has answered (0: no limit); downloads, backups and log streams are not limited")
	fs.IntVar(&c.MaxConnsPerClient, "max-conns-per-client", c.MaxConnsPerClient, "connections open at once from one client address; more are closed at once (0: no cap; behind a load balancer every client has its address)")
	fs.DurationVar(&c.AuditRetention, "audit-retention", c.AuditRetention, "how long audit log entries are kept (0: forever)")
	fs.DurationVar(&c.MaxTokenTTL, "max-token-ttl", c.MaxTokenTTL, "longest lifetime of a token created through the API; tokens created without expires_in/expires_at get it (0: no maximum, tokens may never expire)")
	fs.StringVar(&c.AdvertiseGRPC, "advertise-grpc", c.AdvertiseGRPC, "with several servers on one --database postgres:// and --grpc-addr: HOST:PORT where the other servers reach this one's gRPC service, to forward gRPC calls about the deployments it hosts (env SLIPWAY_ADVERTISE_GRPC; default: --grpc-addr's, with --advertise-url's host for 0.0.0.0)")
	fs.DurationVar(&c.LeaseTTL, "lease-ttl", c.LeaseTTL, "with several servers on one --database postgres://: how long a server's leases (deployments it hosts, runs it owns, alert evaluation) live without renewal; a killed server's work moves to another after about this long (env SLIPWAY_LEASE_TTL)")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "how long SIGTERM waits for in-flight requests")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q (flags only; see slipway server --help)", fs.Arg(0))
	}
	if v := getenv("SLIPWAY_PYTHON_ENVS"); v != "" && len(pythonEnvs) == 0 {
		pythonEnvs = strings.Split(v, ",")
	}
	envs, err := parsePythonEnvs(pythonEnvs)
	if err != nil {
		return c, err
	}
	c.PythonEnvs = envs
	if budget != "" {
		n, err := slipway.ParseBytes(budget)
		if err != nil {
			return c, fmt.Errorf("--model-memory-budget: %w", err)
		}
		c.ModelMemoryBudget = n
	}
	if err := c.loadConnections(getenv); err != nil {
		return c, err
	}
	return c, c.Validate()
}

// parsePythonEnvs reads NAME=/path/to/python values: names are unique and not "default" (that is --python),
// paths are made absolute (the server may change its working folder's meaning for replicas, never for this).
func parsePythonEnvs(values []string) (map[string]string, error) {
	if len(values) == 0 {
		return nil, nil
	}
	out := map[string]string{}
	for _, v := range values {
		name, path, ok := strings.Cut(strings.TrimSpace(v), "=")
		if !ok || path == "" {
			return nil, fmt.Errorf("--python-env %q: want NAME=/path/to/python", v)
		}
		if err := slipway.ValidatePythonEnvName(name); err != nil {
			return nil, fmt.Errorf("--python-env %q: %s", v, slipway.ErrorMessage(err))
		}
		if name == slipway.DefaultPythonEnv {
			return nil, fmt.Errorf("--python-env %q: the environment named default is --python; choose another name", v)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("--python-env: environment %s is given twice", name)
		}
		abs, err := filepath.Abs(path)
		if err != nil {
			return nil, fmt.Errorf("--python-env %q: %w", v, err)
		}
		out[name] = abs
	}
	return out, nil
}

// loadConnections reads the connections file, if any: a name it shares with a --connection is an error
// that names both.
func (c *Config) loadConnections(getenv func(string) string) error {
	if c.ConnectionsFile == "" {
		return nil
	}
	conns, warnings, err := loadConnectionsFile(c.ConnectionsFile, getenv)
	if err != nil {
		return err
	}
	flags := map[string]bool{}
	for _, v := range c.Connections {
		if name, _, ok := strings.Cut(v, "="); ok {
			flags[name] = true
		}
	}
	for _, fc := range conns {
		if flags[fc.Name] {
			return fmt.Errorf("connection %s is given both on the command line (--connection %s=...) and in the connections file: %s; keep one", fc.Name, fc.Name, fc.Origin)
		}
	}
	c.FileConnections, c.Warnings = conns, append(c.Warnings, warnings...)
	return nil
}

// Validate checks values and makes the data folder absolute.
func (c *Config) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		errs = append(errs, fmt.Errorf("--addr %q: want host:port (e.g. 127.0.0.1:8080)", c.Addr))
	}
	if c.GRPCAddr != "" {
		if _, _, err := net.SplitHostPort(c.GRPCAddr); err != nil {
			errs = append(errs, fmt.Errorf("--grpc-addr %q: want host:port (e.g. 127.0.0.1:8081)", c.GRPCAddr))
		}
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		errs = append(errs, fmt.Errorf("--log-format %q: want text or json", c.LogFormat))
	}
	if c.ServerScheduling != "batch" && c.ServerScheduling != "normal" {
		errs = append(errs, fmt.Errorf("--server-scheduling %q: want batch or normal", c.ServerScheduling))
	}
	if c.ReplicaScheduling != "auto" && c.ReplicaScheduling != "batch" && c.ReplicaScheduling != "normal" {
		errs = append(errs, fmt.Errorf("--replica-scheduling %q: want auto, batch or normal", c.ReplicaScheduling))
	}
	if c.ReplicaAnnounceURL != "" {
		if u, err := url.Parse(c.ReplicaAnnounceURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("--replica-announce-url %q: want http(s)://HOST:PORT, where the replica pods reach any server", c.ReplicaAnnounceURL))
		}
	}
	if c.ReplicaNetwork != "pod" && c.ReplicaNetwork != "host" {
		errs = append(errs, fmt.Errorf("--replica-network %q: want pod or host", c.ReplicaNetwork))
	}
	if c.Engine != "local" && c.Engine != "kubernetes" {
		errs = append(errs, fmt.Errorf("--engine %q: want local or kubernetes", c.Engine))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("--tls-cert and --tls-key go together: give both (HTTPS) or neither (HTTP)"))
	}
	if c.ArtifactStore != "" && !strings.HasPrefix(c.ArtifactStore, "s3://") {
		errs = append(errs, fmt.Errorf("--artifact-store %q: want s3://BUCKET/PREFIX (or nothing, for DATA_DIR/blobs)", c.ArtifactStore))
	}
	// Each HTTP limit that is wrong is named with its value, so that a typo is found without reading the help.
	if c.MaxHeaderBytes < 4<<10 {
		errs = append(errs, fmt.Errorf("HTTP limits: --max-header-bytes %d: want at least 4096", c.MaxHeaderBytes))
	}
	if c.AlertInterval < time.Second {
		errs = append(errs, fmt.Errorf("monitoring: --alert-interval %s: want at least 1s", c.AlertInterval))
	}
	if c.MaxConnsPerClient < 0 {
		errs = append(errs, fmt.Errorf("HTTP limits: --max-conns-per-client %d: want 0 (no cap) or more", c.MaxConnsPerClient))
	}
	for _, d := range []struct {
		flag     string
		v        time.Duration
		zeroOffs bool // 0 turns the limit off; otherwise it must be positive
	}{
		{"read-header-timeout", c.ReadHeaderTimeout, false}, {"idle-timeout", c.IdleTimeout, false},
		{"payload-read-timeout", c.PayloadReadTimeout, true}, {"write-timeout", c.WriteTimeout, true},
	} {
		if d.v < 0 || (d.v == 0 && !d.zeroOffs) {
			want := "want a positive duration such as 30s"
			if d.zeroOffs {
				want = "want a duration such as 30s, or 0 for no limit"
			}
			errs = append(errs, fmt.Errorf("HTTP limits: --%s %s: %s", d.flag, d.v, want))
		}
	}
	if c.MaxUploadBytes <= 0 || c.MaxPayloadBytes <= 0 || c.MaxUnpackedBytes <= 0 || c.MaxFiles <= 0 || c.MaxRatio <= 1 {
		errs = append(errs, errors.New("upload limits must be positive (and the compression ratio above 1)"))
	}
	abs, err := filepath.Abs(c.DataDir)
	if err != nil {
		errs = append(errs, fmt.Errorf("--data-dir %q: %w", c.DataDir, err))
	}
	c.DataDir = abs
	if c.Database, err = parseDatabase(c.DatabaseURL, abs); err != nil {
		errs = append(errs, err)
	}
	if c.ImportDir == "" {
		c.ImportDir = filepath.Join(abs, "imports")
	}
	if c.LeaseTTL < MinLeaseTTL || c.LeaseTTL > MaxLeaseTTL {
		errs = append(errs, fmt.Errorf("--lease-ttl %s: want between %s and %s (a server renews its leases every third of it, so it must outlast a few database round trips; a killed server's work waits that long to move)",
			c.LeaseTTL, MinLeaseTTL, MaxLeaseTTL))
	}
	if c.AdvertiseGRPC != "" {
		if host, port, err := net.SplitHostPort(c.AdvertiseGRPC); err != nil || host == "" || port == "" || strings.Contains(c.AdvertiseGRPC, "/") {
			errs = append(errs, fmt.Errorf("--advertise-grpc %q: want HOST:PORT, where the other servers reach this one's gRPC service", c.AdvertiseGRPC))
		} else if c.GRPCAddr == "" || c.Database.Postgres == "" {
			errs = append(errs, fmt.Errorf("--advertise-grpc is for several servers sharing one PostgreSQL database (--database postgres://...) that serve gRPC (--grpc-addr)"))
		}
	}
	if c.AdvertiseURL != "" {
		if u, err := url.Parse(c.AdvertiseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("--advertise-url %q: want http(s)://HOST:PORT, where the other servers reach this one", c.AdvertiseURL))
		}
		if c.Database.Postgres == "" {
			errs = append(errs, fmt.Errorf("--advertise-url is for several servers sharing one PostgreSQL database (--database postgres://...); a SQLite database belongs to one server"))
		}
	}
	return errors.Join(errs...)
}

// Database is the parsed --database: exactly one of its fields is set.
type Database struct {
	// SQLite is the metadata database file; the monitoring data is monitor.db in the same folder.
	SQLite string
	// Postgres is a postgres:// URL: every table, monitoring included, is in that database.
	Postgres string
}

// parseDatabase reads --database; an empty URL is SQLite in the data folder.
func parseDatabase(url, dataDir string) (Database, error) {
	if url == "" {
		return Database{SQLite: filepath.Join(dataDir, "slipway.db")}, nil
	}
	return ParseDatabaseURL("--database", url)
}

// ParseDatabaseURL reads a database URL given as flag: sqlite:///absolute/path/slipway.db or postgres://...
func ParseDatabaseURL(flag, url string) (Database, error) {
	switch {
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		return Database{Postgres: url}, nil
	case strings.HasPrefix(url, "sqlite://"):
		p := strings.TrimPrefix(url, "sqlite://")
		if strings.ContainsRune(p, '?') {
			return Database{}, fmt.Errorf("%s %q: sqlite URLs take no options (the server sets them)", flag, url)
		}
		if !filepath.IsAbs(p) || strings.HasSuffix(p, "/") {
			return Database{}, fmt.Errorf("%s %q: want sqlite:///absolute/path/slipway.db", flag, url)
		}
		return Database{SQLite: filepath.Clean(p)}, nil
	}
	scheme, _, _ := strings.Cut(url, ":") // the rest may hold a password
	return Database{}, fmt.Errorf("%s: unsupported URL scheme %q: want sqlite:///path/slipway.db or postgres://user:password@host:5432/db", flag, scheme)
}

// TracingFromEnv says whether the standard OpenTelemetry variables ask for traces: an OTLP endpoint is set
// (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT), the SDK is not disabled
// (OTEL_SDK_DISABLED=true) and the traces exporter is not "none" (OTEL_TRACES_EXPORTER).
func TracingFromEnv(getenv func(string) string) bool {
	if getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
		return false
	}
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return false
	}
	return !strings.EqualFold(strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")), "none")
}

// Getenv is os.Getenv, named for callers that pass the real environment.
var Getenv = os.Getenv
