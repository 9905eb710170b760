// Package monitor watches deployments: operational metrics (Prometheus and 1-minute series), the access and predict
// logs, prediction capture, ground-truth feedback, baselines, drift and performance per window, and alerts.
//
// The prediction path only touches memory: Finish updates atomic counters and offers the request to two bounded
// queues (capture, access log) without ever waiting; when a queue is full the item is dropped and counted. Background
// goroutines owned by the Service write batches to the monitoring database, roll minutes up, prune by retention,
// compute drift windows and evaluate alerts; Close stops them all and flushes what is queued.
package monitor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/slipway-ml/slipway"
)

// Protocols of the prediction endpoints (the "protocol" label).
const (
	ProtoPredict     = "predict"
	ProtoInvocations = "invocations"
	ProtoV2          = "v2"
	ProtoGRPC        = "grpc" // the Open Inference Protocol over gRPC (ModelInfer)
)

// ServingInfo is what the monitor reads from a serving deployment: its queue and replicas.
type ServingInfo struct {
	Deployment string
	QueueLen   int
	Replicas   []slipway.ReplicaStatus
	Versions   []int // the versions its pools serve (the deployment's, canary's, shadow's), even at zero replicas
}

// Config wires a Service.
// ModelMemory is the state of the server's model memory budget (--model-memory-budget).
type ModelMemory struct {
	Budget, Loaded         int64 // bytes
	Unloads, UnloadedBytes int64 // replicas unloaded to make room, since the server started
}

// Config wires a Service.
type Config struct {
	Store       slipway.MonitoringStore
	Data        slipway.MonitoringDataStore
	Models      slipway.ModelStore
	Deployments slipway.DeploymentStore
	// Serving lists the live pools (queue length, replica PIDs); nil means none.
	Serving func() []ServingInfo
	// ModelMemory reads the model memory budget (nil: none).
	ModelMemory func() ModelMemory
	Log         *slog.Logger
	// MetricsRetention is how long minute points and drift windows are kept (default 14 days).
	MetricsRetention time.Duration
	// Queue sizes: captures and log lines waiting to be written; beyond, they are dropped and counted.
	CaptureQueue, LogQueue int
	// AlertInterval is how often alert rules are evaluated (default 30 s); DriftInterval how often finished drift
	// windows are computed and stored (default 1 min).
	AlertInterval, DriftInterval time.Duration
	// HTTPClient sends webhooks (default: 10 s timeout).
	HTTPClient *http.Client
	// WebhookBackoff is the first retry delay of a webhook (doubling, 5 attempts; default 500 ms).
	WebhookBackoff time.Duration
	// TempDir is where baseline uploads are spooled (default: the system's).
	TempDir string
	Now     func() time.Time
	// Leader, with several servers on one database, says whether this server holds the "monitor" lease: only
	// that server evaluates alerts, applies retention and stores drift windows, the work done once for the
	// whole installation from the shared tables. Nil: this server does it all.
	Leader func() bool
}

// Service is the monitor. Its methods are safe for concurrent use; the hot-path ones (Finish, Observer) are also
// safe on a nil *Service, which monitors nothing.
type Service struct {
	cfg   Config
	store slipway.MonitoringStore
	data  slipway.MonitoringDataStore
	log   *slog.Logger
	now   func() time.Time

	reg     *prometheus.Registry
	metrics *promMetrics
	deps    sync.Map // deployment name → *depState
	pending pending  // finished minutes waiting for the roll-up
	cpu     struct {
		sync.Mutex
		m map[int]cpuSample // replica PID → CPU time at the previous roll-up
	}

	captures  chan captureItem
	shadowQ   chan *shadowItem // compared shadow answers waiting to be written
	join      shadowJoin
	logs      chan *slipway.LogLine
	logWake   chan struct{} // closed and replaced after each batch of log lines is stored
	logNotify sync.Mutex
	hooks     chan webhookJob

	settingsMu sync.Mutex
	settings   map[string]*settingsEntry
	baselineMu sync.Mutex
	baselines  map[baselineKey]*slipway.Baseline
	versions   map[baselineKey]*slipway.ModelVersion
	first      firstWindows // profiles of first windows, for versions without a baseline
	cals       calibrations // each version's CBPE calibration

	actionsMu sync.RWMutex
	actions   map[string]action

	alertMu sync.Mutex // one evaluation at a time

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	bg     sync.WaitGroup // writers: stopped after the producers
	close  sync.Once
}

type baselineKey struct {
	model   string
	version int
}

// New returns a Service; Start runs its background work.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Data == nil {
		return nil, errors.New("monitor: a Store and a DataStore are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.MetricsRetention <= 0 {
		cfg.MetricsRetention = 14 * 24 * time.Hour
	}
	if cfg.CaptureQueue <= 0 {
		cfg.CaptureQueue = 4096
	}
	if cfg.LogQueue <= 0 {
		cfg.LogQueue = 16384
	}
	if cfg.AlertInterval <= 0 {
		cfg.AlertInterval = 30 * time.Second
	}
	if cfg.DriftInterval <= 0 {
		cfg.DriftInterval = time.Minute
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.WebhookBackoff <= 0 {
		cfg.WebhookBackoff = 500 * time.Millisecond
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Service{cfg: cfg, store: cfg.Store, data: cfg.Data, log: cfg.Log, now: cfg.Now,
		reg:      prometheus.NewRegistry(),
		captures: make(chan captureItem, cfg.CaptureQueue),
		shadowQ:  make(chan *shadowItem, cfg.CaptureQueue),
		logs:     make(chan *slipway.LogLine, cfg.LogQueue),
		logWake:  make(chan struct{}),
		hooks:    make(chan webhookJob, 1024),
		settings: map[string]*settingsEntry{}, baselines: map[baselineKey]*slipway.Baseline{},
		actions: map[string]action{}, ctx: ctx, cancel: cancel}
	s.metrics = newPromMetrics(s)
	if err := s.metrics.register(s.reg); err != nil {
		cancel()
		return nil, fmt.Errorf("monitor: register metrics: %w", err)
	}
	return s, nil
}

// Start runs the background work: queue writers, the minute roll-up, retention, drift windows and alerts.
func (s *Service) Start() {
	s.bg.Add(4)
	go func() { defer s.bg.Done(); s.captureWriter() }()
	go func() { defer s.bg.Done(); s.shadowWriter() }()
	go func() { defer s.bg.Done(); s.logWriter() }()
	go func() { defer s.bg.Done(); s.webhookSender() }()
	s.wg.Add(5)
	go func() { defer s.wg.Done(); s.every(time.Second, s.rollMinutes) }()
	go func() { defer s.wg.Done(); s.every(10*time.Second, s.sweepShadow) }()
	go func() { defer s.wg.Done(); s.every(time.Minute, s.ifLeader(s.prune)) }()
	go func() { defer s.wg.Done(); s.every(s.cfg.DriftInterval, s.ifLeader(s.storeDriftWindows)) }()
	go func() {
		defer s.wg.Done()
		s.every(s.cfg.AlertInterval, s.ifLeader(func(ctx context.Context) {
			if _, err := s.EvaluateAlerts(ctx, ""); err != nil && ctx.Err() == nil {
				s.log.Error("evaluate alerts", "error", err)
			}
		}))
	}()
}

// ifLeader runs fn only on the server holding the monitor lease (every server without Config.Leader).
func (s *Service) ifLeader(fn func(ctx context.Context)) func(ctx context.Context) {
	return func(ctx context.Context) {
		if s.cfg.Leader == nil || s.cfg.Leader() {
			fn(ctx)
		}
	}
}

// every runs fn every d until the service closes.
func (s *Service) every(d time.Duration, fn func(ctx context.Context)) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
			fn(s.ctx)
		}
	}
}

// Close stops the background work, then writes what the queues still hold and the current minute.
func (s *Service) Close() error {
	if s == nil {
		return nil
	}
	s.close.Do(func() {
		s.cancel() // the writers drain their queues, then return; late items fill the buffers and are dropped
		s.wg.Wait()
		s.bg.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.flushMinutes(ctx, true)
	})
	return nil
}

// Registry is the Prometheus registry of the server (served at /metrics).
func (s *Service) Registry() *prometheus.Registry { return s.reg }

// ActionFunc runs an alert's action (for example, start a pipeline) when the alert fires.
type ActionFunc func(ctx context.Context, target string, ev *slipway.AlertEvent) error

// ActionCheck refuses a rule's action target when the rule is created (a pipeline that does not exist).
type ActionCheck func(ctx context.Context, target string) error

type action struct {
	run   ActionFunc
	check ActionCheck // nil: any target
}

// RegisterAction makes rules with action kind available: run when an alert fires, check (optional) when a
// rule is created. The server registers "pipeline" (start a pipeline run: retraining).
func (s *Service) RegisterAction(kind string, run ActionFunc, check ActionCheck) {
	s.actionsMu.Lock()
	s.actions[kind] = action{run: run, check: check}
	s.actionsMu.Unlock()
}

// invalidf is an EINVALID error.
func invalidf(format string, args ...any) error {
	return slipway.Errorf(slipway.EINVALID, format, args...)
}
