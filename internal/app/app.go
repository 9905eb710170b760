// Package app is the composition root: it turns a Config into stores, services and the HTTP server, and owns
// their lifecycle (Open → Run → Close).
package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/archive"
	"github.com/slipway-ml/slipway/internal/audit"
	"github.com/slipway-ml/slipway/internal/backup"
	"github.com/slipway-ml/slipway/internal/batch"
	"github.com/slipway-ml/slipway/internal/blob"
	"github.com/slipway-ml/slipway/internal/catalog"
	"github.com/slipway-ml/slipway/internal/cluster"
	"github.com/slipway-ml/slipway/internal/config"
	"github.com/slipway-ml/slipway/internal/deploy"
	"github.com/slipway-ml/slipway/internal/executor"
	"github.com/slipway-ml/slipway/internal/httpapi"
	"github.com/slipway-ml/slipway/internal/jobs"
	"github.com/slipway-ml/slipway/internal/modelruntime"
	"github.com/slipway-ml/slipway/internal/monitor"
	"github.com/slipway-ml/slipway/internal/procsched"
	"github.com/slipway-ml/slipway/internal/replay"
	"github.com/slipway-ml/slipway/internal/rollout"
	"github.com/slipway-ml/slipway/internal/serving"
	"github.com/slipway-ml/slipway/internal/sqlstore"
	"github.com/slipway-ml/slipway/internal/tracing"
	"github.com/slipway-ml/slipway/internal/ui"
)

// App is a running Slipway server.
type App struct {
	cfg     config.Config
	cpu     *executor.CPUCgroups // the local engine's CPU limits (nil: not applied; see localCPU)
	log     *slog.Logger
	lock    *os.File
	db      *sqlstore.DB
	catalog *catalog.Service
	deploy  *deploy.Service
	api     *httpapi.Server
	budget  *serving.MemoryBudget // the model memory budget (--model-memory-budget)

	blobs blob.Store
	// monitorData is the monitoring data (monitor.db on SQLite), kept for backups.
	monitorData *sqlstore.MonitorDB
	runtimes    *modelruntime.Runtimes
	monitor     *monitor.Service
	rollouts    *rollout.Service
	replays     *replay.Service
	jobs        *jobs.Service
	batch       *batch.Service
	audit       *audit.Service
	closers     []func() error // feature areas' Close, run in reverse order before the stores close
	// Several servers on PostgreSQL (cluster.go): this server's membership and leases (nil on SQLite), whether
	// other servers were live when it started, and the lock of a SQLite database outside the data folder.
	node   *cluster.Node
	shared bool
	dbLock *os.File
	// kube is the kubernetes engine (--engine kubernetes; nil: local), shared by job runs and replicas.
	kube atomic.Pointer[kubeReplicas]
}

// Open acquires the data folder, opens the stores, recovers from a previous crash and prepares the API.
func Open(ctx context.Context, cfg config.Config, log *slog.Logger) (*App, error) {
	a := &App{cfg: cfg, log: log}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("create data folder: %w", err)
	}
	lock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	a.lock = lock
	if err := a.open(ctx); err != nil {
		return nil, errors.Join(err, a.Close())
	}
	return a, nil
}

// openBlobs opens the artifact store: DATA_DIR/blobs, or a bucket. A bucket gets the blobs a local store
// holds (an installation switching to a bucket), moved and verified, before anything reads them.
func (a *App) openBlobs(ctx context.Context) (blob.Store, error) {
	local, err := blob.OpenLocal(filepath.Join(a.cfg.DataDir, "blobs"))
	if err != nil || a.cfg.ArtifactStore == "" {
		return local, err
	}
	id, err := a.db.InstallationID(ctx)
	if err != nil {
		return nil, err
	}
	bucket, err := blob.OpenS3(ctx, blob.S3Config{URL: a.cfg.ArtifactStore, Endpoint: a.cfg.S3Endpoint, Region: a.cfg.S3Region, CABundle: a.cfg.S3CABundle,
		TempDir: local.TempDir(), Installation: id})
	if err != nil {
		return nil, err
	}
	moved, err := blob.MoveAll(ctx, local, bucket)
	if moved > 0 {
		a.log.Info("moved local artifacts to the artifact store", "blobs", moved, "store", bucket.Where())
	}
	if err != nil {
		return nil, fmt.Errorf("move local artifacts to %s: %w", bucket.Where(), err)
	}
	a.log.Info("artifact store", "store", bucket.Where(), "installation", id)
	return bucket, nil
}

// openDatabase opens the metadata store where --database says: SQLite files (the default, in the data folder)
// or PostgreSQL.
func (a *App) openDatabase(ctx context.Context) (*sqlstore.DB, error) {
	if dsn := a.cfg.Database.Postgres; dsn != "" {
		a.log.Info("database", "dialect", "postgres")
		return sqlstore.OpenPostgres(ctx, dsn)
	}
	a.log.Info("database", "dialect", "sqlite", "path", a.cfg.Database.SQLite)
	return sqlstore.OpenSQLite(ctx, a.cfg.Database.SQLite)
}

// openMonitorData opens the monitoring data's store: monitor.db next to the SQLite database, or the same
// PostgreSQL database.
func (a *App) openMonitorData(ctx context.Context) (*sqlstore.MonitorDB, error) {
	if dsn := a.cfg.Database.Postgres; dsn != "" {
		return sqlstore.OpenMonitorPostgres(ctx, dsn)
	}
	return sqlstore.OpenMonitorSQLite(ctx, filepath.Join(filepath.Dir(a.cfg.Database.SQLite), "monitor.db"))
}

// scheduleServer puts the server's own threads in --server-scheduling's class and returns the classes its local
// replicas are to be put in once loaded. A server that cannot change its own class (started under SCHED_IDLE,
// say) logs why and runs on as it is.
func (a *App) scheduleServer() modelruntime.ReplicaScheduling {
	moved := false
	if a.cfg.ServerScheduling == string(procsched.Batch) {
		if err := procsched.Set(os.Getpid(), procsched.Batch); err != nil {
			a.log.Warn("the server's threads stay in their scheduling class (start it with --server-scheduling normal to silence this)", "err", err)
		} else {
			moved = true
		}
	}
	return modelruntime.ReplicaSchedulingFor(a.cfg.ReplicaScheduling, moved)
}

func (a *App) open(ctx context.Context) error {
	var err error
	if a.db, err = a.openDatabase(ctx); err != nil {
		return err
	}
	if err := a.joinCluster(ctx); err != nil {
		return err
	}
	blobs, err := a.openBlobs(ctx)
	if err != nil {
		return err
	}
	exe, err := executable()
	if err != nil {
		return err
	}
	// Replicas that are local processes get their memory limit from `slipway exec-limited`, like job runs.
	rt, err := modelruntime.New(modelruntime.Config{Python: a.cfg.Python, PythonEnvs: a.cfg.PythonEnvs, ORTLibrary: a.cfg.ORTLibrary,
		ScratchDir: filepath.Join(a.cfg.DataDir, "runtime"), Scheduling: a.scheduleServer(),
		Engine: modelruntime.LocalEngine{Shim: []string{exe, "exec-limited"}, CPU: a.localCPU()}})
	if err != nil {
		return err
	}
	limits := archive.DefaultLimits()
	limits.MaxFiles, limits.MaxUnpackedBytes, limits.MaxRatio = a.cfg.MaxFiles, a.cfg.MaxUnpackedBytes, a.cfg.MaxRatio
	a.catalog, err = catalog.New(catalog.Config{Store: a.db, Blobs: blobs, Runtimes: rt, Limits: limits,
		WorkDir: filepath.Join(a.cfg.DataDir, "work"), Log: a.log})
	if err != nil {
		return err
	}
	a.catalog.LoadTimeout = a.cfg.ReadyTimeout
	a.closers = append(a.closers, func() error { a.catalog.Close(); return nil })
	if err := a.recoverCatalog(ctx); err != nil {
		return err
	}
	if err := a.bootstrapAdmin(ctx); err != nil {
		return err
	}
	if a.budget, err = a.modelMemoryBudget(); err != nil {
		return err
	}
	a.deploy = deploy.New(deploy.Config{Store: a.db, Models: a.db, Files: a.catalog, Runtimes: rt, Log: a.log, Budget: a.budget})
	a.deploy.ReadyTimeout = a.cfg.ReadyTimeout
	a.enableOwnership()
	if err := a.openKube(); err != nil {
		return err
	}
	if err := a.openRemote(); err != nil {
		return err
	}
	if err := a.openKubeReplicas(); err != nil {
		return err
	}
	a.deploy.ReplicaLog = func(deployment, replica, line string) {
		a.log.Debug("replica output", "deployment", deployment, "replica", replica, "line", line)
	}
	if err := a.deploy.Recover(ctx); err != nil {
		return err
	}
	a.blobs, a.runtimes = blobs, rt
	for _, open := range []func() error{a.openAudit, a.openMonitor, a.openCanary, a.openRollouts, a.openReplays, a.openBatch, a.openJobs} {
		if err := open(); err != nil {
			return err
		}
	}
	a.api = httpapi.New(httpapi.Config{Tokens: a.db, Projects: a.db, Catalog: a.catalog, Deployments: a.deploy, Log: a.log,
		Ready: a.db.Ping, MaxUploadBytes: a.cfg.MaxUploadBytes, MaxPayload: a.cfg.MaxPayloadBytes,
		PayloadReadTimeout: a.cfg.PayloadReadTimeout, WriteTimeout: a.cfg.WriteTimeout, TempDir: blobs.TempDir(),
		MaxTokenTTL: a.cfg.MaxTokenTTL, Audit: a.audit,
		Monitor: a.monitor, Jobs: a.jobs, Batch: a.batch, UI: ui.Handler, Backup: a.backup, Hosts: a.hosts(), Rollouts: a.rollouts,
		PythonEnvironments: rt.PythonEnvironments, Replays: a.replays})
	a.closers = append(a.closers, func() error { a.api.CloseForwarding(); return nil })
	return nil
}

// reloadCertificate answers SIGHUP: the TLS certificate is read again (a renewed one is served from the next
// handshake on); without TLS there is nothing to reload.
func (a *App) reloadCertificate(certs *certReloader) {
	if certs == nil {
		a.log.Info("SIGHUP: nothing to reload (no --tls-cert)")
		return
	}
	if err := certs.Reload(); err != nil {
		a.log.Error("SIGHUP: kept the TLS certificate in use", "err", err)
		return
	}
	a.log.Info("SIGHUP: reloaded the TLS certificate", "cert", a.cfg.TLSCert)
}

// urlFile is DATA_DIR/server.url: where the server listens, written once it does.
func (a *App) urlFile() string { return filepath.Join(a.cfg.DataDir, "server.url") }

// backup streams an online backup (internal/backup): the metadata database, the artifacts when they are on
// local disk, and monitor.db when asked. On PostgreSQL the store refuses it (pg_dump is the backup there).
func (a *App) backup(ctx context.Context, w io.Writer, withMonitor bool) error {
	src := backup.Source{DB: a.db, TempDir: a.blobs.TempDir(), Now: time.Now}
	if local, ok := a.blobs.(*blob.Local); ok {
		src.Blobs = local
	}
	if withMonitor && a.monitorData != nil {
		src.Monitor = a.monitorData
	}
	return backup.Write(ctx, w, src)
}

// bootstrapAdmin creates the first admin token when the database has none, storing only its hash and writing
// the secret to DATA_DIR/admin.token (0600).
func (a *App) bootstrapAdmin(ctx context.Context) error {
	n, err := a.db.CountTokens(ctx)
	if err != nil || n > 0 {
		return err
	}
	t := &slipway.Token{ID: "admin", Name: "admin", Role: slipway.RoleAdmin, CreatedAt: time.Now().UTC(), Secret: httpapi.NewTokenSecret()}
	path := filepath.Join(a.cfg.DataDir, "admin.token")
	if err := writePrivateFile(path, t.Secret+"\n"); err != nil {
		return fmt.Errorf("write admin token: %w", err)
	}
	if err := a.db.CreateToken(ctx, t, httpapi.HashToken(t.Secret)); err != nil {
		return err
	}
	a.log.Info("created the admin token", "path", path)
	fmt.Fprintf(os.Stderr, "\nSlipway created an admin token in %s (mode 0600).\nThe CLI on this machine finds it; elsewhere: export SLIPWAY_TOKEN=$(cat %s)\n\n", path, path)
	return nil
}

// writePrivateFile replaces path atomically with content, readable by this user only.
func writePrivateFile(path, content string) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(content); err != nil {
		_ = f.Close() // the write failed already: that is the error to report
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close() // the sync failed already: that is the error to report
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Handler is the whole HTTP surface (for in-process tests).
func (a *App) Handler() http.Handler { return a.api.Handler() }

// Run serves until ctx is cancelled, then shuts down gracefully within the configured timeout.
func (a *App) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", a.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", a.cfg.Addr, err)
	}
	ln = limitPerClient(ln, a.cfg.MaxConnsPerClient, a.connRefusalLogger())
	if err := a.serveDebug(ctx); err != nil {
		_ = ln.Close() // never served: closing only frees the port
		return fmt.Errorf("debug listener on %s: %w", a.cfg.DebugAddr, err)
	}
	stopTracing, err := tracing.Setup(ctx, tracing.Config{Enabled: a.cfg.Tracing}, a.log)
	if err != nil {
		_ = ln.Close() // never served: closing only frees the port
		return err
	}
	defer a.flushTraces(stopTracing)
	// No WriteTimeout: it would cut backups, downloads and log streams; the prediction endpoints set their own
	// (a.cfg.WriteTimeout, through the API's config).
	srv := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: a.cfg.ReadHeaderTimeout, IdleTimeout: a.cfg.IdleTimeout,
		MaxHeaderBytes: a.cfg.MaxHeaderBytes, ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelWarn)}
	scheme, certs := "http", (*certReloader)(nil)
	if a.cfg.TLSCert != "" {
		if certs, err = newCertReloader(a.cfg.TLSCert, a.cfg.TLSKey); err != nil {
			_ = ln.Close() // never served: closing only frees the port
			return err
		}
		ln, scheme = tls.NewListener(ln, certs.tlsConfig()), "https"
	}
	grpcSrv, err := a.startGRPC(certs)
	if err != nil {
		_ = ln.Close() // never served: closing only frees the port
		return err
	}
	defer grpcSrv.stopNow() // the returns before the shutdown below (a failed start, a failed Serve)
	url := scheme + "://" + ln.Addr().String()
	// Where this server listens now, for the CLI and the SDK on this machine and for job runs that outlive a
	// restart on another port (SLIPWAY_URL_FILE).
	if err := writePrivateFile(a.urlFile(), url+"\n"); err != nil {
		_ = ln.Close() // never served: closing only frees the port
		return fmt.Errorf("write %s: %w", a.urlFile(), err)
	}
	if a.jobs != nil {
		a.jobs.SetURL(url)                        // runs reach the API here (SLIPWAY_URL); they start once it is known
		srv.RegisterOnShutdown(a.jobs.EndStreams) // `logs?follow=1` streams end so that Shutdown does not wait for them
	}
	a.kubeListening(ctx, url)
	if err := a.startCluster(ctx, url, grpcSrv.address(certs != nil)); err != nil {
		_ = ln.Close() // never served: closing only frees the port
		return err
	}
	a.log.Info("slipway listening", "addr", url, "data_dir", a.cfg.DataDir)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }() // owned by Run: ends when Shutdown closes the listener
serve:
	for {
		select {
		case err := <-errc:
			return fmt.Errorf("serve: %w", err)
		case err := <-grpcSrv.failed():
			return fmt.Errorf("serve gRPC: %w", err)
		case <-hup:
			a.reloadCertificate(certs)
		case <-ctx.Done():
			break serve
		}
	}
	a.handOver() // with other servers: they take the deployments over while this one still serves them
	a.log.Info("shutting down", "timeout", a.cfg.ShutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
	defer cancel()
	grpcStopped := make(chan error, 1)
	go func() { grpcStopped <- grpcSrv.stop(sctx) }() // beside the HTTP server's shutdown, within the same time
	err = srv.Shutdown(sctx)
	if gerr := <-grpcStopped; gerr != nil {
		err = errors.Join(err, fmt.Errorf("gRPC: %w", gerr))
	}
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// flushTraces sends the spans not yet exported, within a few seconds: a collector that does not answer must not
// hold the server's exit.
func (a *App) flushTraces(stop func(context.Context) error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := stop(ctx); err != nil {
		a.log.Warn("spans lost at shutdown", "error", err)
	}
}

// Close stops the deployments' replicas, then releases the stores and the data folder lock.
func (a *App) Close() error {
	var errs []error
	errs = append(errs, a.leaveCluster()) // first: the other servers start this one's deployments at once
	for i := len(a.closers) - 1; i >= 0; i-- {
		errs = append(errs, a.closers[i]())
	}
	if a.deploy != nil {
		a.deploy.Close()
	}
	if a.db != nil {
		errs = append(errs, a.db.Close())
	}
	if a.dbLock != nil {
		errs = append(errs, unlockDataDir(a.dbLock))
	}
	if a.lock != nil {
		errs = append(errs, unlockDataDir(a.lock))
	}
	return errors.Join(errs...)
}

// NewLogger builds the process logger.
func NewLogger(format, level string) *slog.Logger {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		lv = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

// modelMemoryBudget is the budget of the replicas' memory: --model-memory-budget, else half of what the
// machine (or the server's cgroup) has.
func (a *App) modelMemoryBudget() (*serving.MemoryBudget, error) {
	limit, from := a.cfg.ModelMemoryBudget, "--model-memory-budget"
	if limit == 0 {
		half, of, err := serving.DefaultMemoryBudget()
		if err != nil {
			return nil, err
		}
		limit, from = half, "half of "+of
	}
	a.log.Info("model memory budget", "bytes", limit, "from", from)
	return serving.NewMemoryBudget(limit, a.log), nil
}
