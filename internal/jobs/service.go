// Package jobs runs jobs (a script or project with an entrypoint, as a process through an executor), pipelines
// (DAGs of job, script and built-in steps with retries, caching and resume) and cron schedules that start them.
// Runs wait in a queue kept in the database; at most MaxConcurrentRuns processes run at once.
package jobs

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/archive"
	"github.com/slipway-ml/slipway/internal/cluster"
	"github.com/slipway-ml/slipway/internal/executor"
)

// Store is what the service keeps in the database.
type Store interface {
	slipway.JobStore
	slipway.PipelineStore
	slipway.ScheduleStore
	slipway.RunOwnerStore
}

// Deployer is the deployments service as the `deploy` step uses it (nil fields: the step refuses that action).
type Deployer struct {
	// Update rolls deployment name out to version (in the background) and returns it.
	Update func(ctx context.Context, name string, version int) (*slipway.Deployment, error)
	Get    func(ctx context.Context, name string) (*slipway.Deployment, error)
	// AliasMoved tells deployments that follow model@alias about its new version.
	AliasMoved func(ctx context.Context, model, alias string, version int)
}

// BatchRunner is the batch predictions service as the `batch` step uses it: the app passes its batch service
// (jobs does not import batch, nor batch jobs). Nil: the step refuses to run.
type BatchRunner interface {
	// Create validates a request (the body of POST /api/v1/batch-predictions), stores the run and starts it.
	Create(ctx context.Context, spec slipway.BatchSpec, by string) (*slipway.BatchRun, error)
	Get(ctx context.Context, id string) (*slipway.BatchRun, error)
	// List returns runs newest first.
	List(ctx context.Context, f slipway.BatchFilter) ([]*slipway.BatchRun, int, error)
	Cancel(ctx context.Context, id, by string) (*slipway.BatchRun, error)
}

// RegisterFunc registers a model version from the archive (or single file) at path, as catalog.Register does.
type RegisterFunc func(ctx context.Context, model, path, filename string, meta slipway.VersionMetadata, by string) (*slipway.ModelVersion, error)

// BaselineFunc stores the sample of training data at path (format "csv" or "parquet") as the baseline of a
// model version, as PUT .../baseline does.
type BaselineFunc func(ctx context.Context, model string, version int, format, path, by string) error

// Config wires the service.
type Config struct {
	// Targets adds schedule target kinds beyond job and pipeline (the app registers "batch").
	Targets  map[string]ScheduleTarget
	Store    Store
	Tokens   slipway.TokenStore
	Models   slipway.ModelStore
	Register RegisterFunc
	// Baseline stores a registered version's baseline (the register builtin's with.baseline); nil: refused.
	Baseline BaselineFunc
	Deployer Deployer
	// Batch runs the `batch` step's batch predictions.
	Batch BatchRunner
	// HeldOut reads back the batch predictions the `evaluate` step runs on held-out data (nil: with.data is
	// refused).
	HeldOut HeldOutFiles
	// Rollouts runs the `rollout` step's gated rollouts.
	Rollouts Rollouts
	// BatchPoll is how often a `batch` step reads its run's progress (default 500ms), and a `rollout` step
	// its rollout's.
	BatchPoll time.Duration
	Executor  executor.Executor
	Limits    archive.Limits // for uploaded job and pipeline artifacts
	Dir       string         // DATA_DIR/jobs: artifacts/, runs/, tmp/
	Python    string         // interpreter for .py entrypoints (default /usr/bin/python3)
	// MaxConcurrentRuns bounds the processes of job runs and pipeline steps running at once (default 4).
	MaxConcurrentRuns int
	// URL is the server's base URL given to runs as SLIPWAY_URL. When empty, runs wait for SetURL (the server
	// knows its address only once it listens).
	URL string
	// URLFile holds the server's current URL, rewritten at every start: runs get it as SLIPWAY_URL_FILE, so that
	// one re-attached after a restart on another port still reaches the API (the CLI and the SDK read it first).
	URLFile string
	// CACert is a PEM file runs must trust to reach an https:// server (its --tls-cert), given as SLIPWAY_CA_CERT.
	CACert string
	// Audit records what runs do without an API call in the audit log: their tokens' issue and revocation,
	// and the built-in steps that change state (register, deploy, batch). Nil: not recorded.
	Audit func(ctx context.Context, e *slipway.AuditEntry) error
	// NewToken returns a fresh token secret and the hash the token store keeps.
	NewToken  func() (secret, hash string)
	Log       *slog.Logger
	Now       func() time.Time
	StopGrace time.Duration // SIGTERM → SIGKILL on cancel and timeout (default 5s)
	MaxLog    int64         // bytes of log kept per run (default 16 MiB)
	// NoScheduleLoop leaves schedules to explicit scheduleDue calls (tests with a fake clock).
	NoScheduleLoop bool
	// NoRecover leaves the runs in the store alone at Open (no re-attaching, failing or resuming): with several
	// servers on one database, another live server may be running them (internal/app sets it then).
	NoRecover bool
	// Leases shares the runs with the other servers of one database (nil: one server, every run is this
	// server's). Each job run and pipeline run in progress is owned through its lease (cluster.RunLease): the
	// owner renews it, and another server takes over a run whose lease nobody renews (runlease.go).
	Leases cluster.Leases
	// AdoptEvery is how often a server looks for runs whose owner stopped renewing (default 1s).
	AdoptEvery time.Duration
}

// Service is the jobs, pipelines and schedules service.
type Service struct {
	cfg   Config
	store Store
	exec  executor.Executor
	log   *slog.Logger
	now   func() time.Time

	ctx    context.Context // ends at Close: every goroutine of the service watches it
	cancel context.CancelFunc
	wg     sync.WaitGroup

	slots   chan struct{} // one per running process
	wake    chan struct{} // a run was queued or a slot freed
	changed broadcaster   // any run or step changed state

	urlOnce  sync.Once
	urlReady chan struct{}
	url      string

	mu       sync.Mutex
	running  map[string]*activeRun         // job run id → its cancel signal
	logs     map[string]*logWriter         // job run id → its log, while it runs
	drivers  map[string]context.CancelFunc // pipeline run ids being driven → stops the driver
	builtins map[string]*builtinState      // "run/step" → a running built-in step
	targets  map[string]ScheduleTarget     // schedule target kinds

	streamsOnce sync.Once
	streamsDone chan struct{} // closed by EndStreams: log followers return

	cronParser cron.Parser
	schedWake  chan struct{}
}

// Open prepares the folders, recovers runs left by a previous server and starts the queue, the pipeline
// drivers and the scheduler. Close stops them.
func Open(ctx context.Context, cfg Config) (*Service, error) {
	if cfg.Python == "" {
		cfg.Python = "/usr/bin/python3"
	}
	if cfg.MaxConcurrentRuns <= 0 {
		cfg.MaxConcurrentRuns = 4
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.StopGrace <= 0 {
		cfg.StopGrace = 5 * time.Second
	}
	if cfg.AdoptEvery <= 0 {
		cfg.AdoptEvery = time.Second
	}
	if cfg.BatchPoll <= 0 {
		cfg.BatchPoll = 500 * time.Millisecond
	}
	if cfg.MaxLog <= 0 {
		cfg.MaxLog = 16 << 20
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	s := &Service{cfg: cfg, store: cfg.Store, exec: cfg.Executor, log: cfg.Log, now: cfg.Now,
		slots: make(chan struct{}, cfg.MaxConcurrentRuns), wake: make(chan struct{}, 1), changed: newBroadcaster(),
		urlReady: make(chan struct{}), running: map[string]*activeRun{}, logs: map[string]*logWriter{},
		drivers: map[string]context.CancelFunc{}, builtins: map[string]*builtinState{}, targets: map[string]ScheduleTarget{},
		cronParser: cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor),
		schedWake:  make(chan struct{}, 1), streamsDone: make(chan struct{})}
	s.targets[slipway.TargetJob] = jobTarget{s}
	s.targets[slipway.TargetPipeline] = pipelineTarget{s}
	for kind, t := range cfg.Targets { // registered before the scheduler starts: catch-up ticks find them
		s.targets[kind] = t
	}
	for _, d := range []string{s.artifactsDir(), s.runsDir(), s.tmpDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("jobs: %w", err)
		}
	}
	if cfg.URL != "" {
		s.SetURL(cfg.URL)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if err := s.recoverUnlessShared(ctx); err != nil {
		_ = s.Close() // never fails; re-attached runs are left running for the next server
		return nil, err
	}
	s.goFunc(s.dispatch)
	if !cfg.NoScheduleLoop {
		s.goFunc(s.runScheduler)
	}
	if cfg.Leases != nil {
		s.goFunc(s.adoptLoop) // recovers the runs of a previous life too, once their leases expire
		return s, nil
	}
	if cfg.NoRecover {
		return s, nil
	}
	if err := s.resumePipelines(ctx); err != nil {
		_ = s.Close() // never fails
		return nil, err
	}
	return s, nil
}

func (s *Service) recoverUnlessShared(ctx context.Context) error {
	if s.cfg.NoRecover || s.cfg.Leases != nil {
		return nil
	}
	return s.recover(ctx)
}

// Close stops the scheduler and the pipeline drivers, leaves running processes to the next server (those that
// cannot outlive this one are stopped: their runs end FAILED "server shut down"; queued runs stay queued) and
// waits for every goroutine of the service.
func (s *Service) Close() error {
	s.cancel()
	s.wg.Wait()
	return nil
}

// SetURL gives the server's base URL to runs (SLIPWAY_URL); runs start only once it is known.
// A listen address on all interfaces (0.0.0.0, [::]) is reached through the loopback address.
func (s *Service) SetURL(rawURL string) {
	s.urlOnce.Do(func() {
		if u, err := url.Parse(rawURL); err == nil {
			if ip := net.ParseIP(u.Hostname()); ip != nil && ip.IsUnspecified() {
				u.Host = net.JoinHostPort("127.0.0.1", u.Port())
				rawURL = u.String()
			}
		}
		s.url = strings.TrimRight(rawURL, "/")
		close(s.urlReady)
	})
}

// EndStreams ends every log stream (`follow`) at once: the HTTP server is shutting down. Clients resume
// from the offset they reached.
func (s *Service) EndStreams() {
	s.streamsOnce.Do(func() { close(s.streamsDone) })
}

// goFunc runs fn in a goroutine owned by the service: Close waits for it.
func (s *Service) goFunc(fn func(ctx context.Context)) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		fn(s.ctx)
	}()
}

func (s *Service) kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *Service) artifactsDir() string             { return filepath.Join(s.cfg.Dir, "artifacts") }
func (s *Service) artifactDir(digest string) string { return filepath.Join(s.artifactsDir(), digest) }
func (s *Service) runsDir() string                  { return filepath.Join(s.cfg.Dir, "runs") }
func (s *Service) runDir(id string) string          { return filepath.Join(s.runsDir(), id) }
func (s *Service) outputDir(id string) string       { return filepath.Join(s.runDir(id), "outputs") }
func (s *Service) logPath(id string) string         { return filepath.Join(s.runDir(id), "log") }
func (s *Service) tmpDir() string                   { return filepath.Join(s.cfg.Dir, "tmp") }

// Changed returns a channel closed at the next change of any run or step (tests and followers wait on it).
func (s *Service) Changed() <-chan struct{} { return s.changed.wait() }

// broadcaster wakes every waiter at once: wait returns a channel that the next notify closes.
type broadcaster struct {
	mu sync.Mutex
	ch chan struct{}
}

func newBroadcaster() broadcaster { return broadcaster{ch: make(chan struct{})} }

func (b *broadcaster) wait() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ch
}

func (b *broadcaster) notify() {
	b.mu.Lock()
	close(b.ch)
	b.ch = make(chan struct{})
	b.mu.Unlock()
}

// newID returns a random, URL-safe id with a prefix naming its kind ("jr" job run, "pr" pipeline run).
func newID(prefix string) string {
	var b [10]byte
	rand.Read(b[:])
	return prefix + "-" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

func ptr[T any](v T) *T { return &v }

// humanDuration shows 10m, 1h30m, 45s: "exceeded max runtime 10m".
func humanDuration(d time.Duration) string {
	s := d.Round(time.Second).String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
