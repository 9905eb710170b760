package app

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/archive"
	"github.com/slipway-ml/slipway/internal/batch"
	"github.com/slipway-ml/slipway/internal/canary"
	"github.com/slipway-ml/slipway/internal/catalog"
	"github.com/slipway-ml/slipway/internal/httpapi"
	"github.com/slipway-ml/slipway/internal/jobs"
	"github.com/slipway-ml/slipway/internal/monitor"
	"github.com/slipway-ml/slipway/internal/rollout"
	"github.com/slipway-ml/slipway/internal/serving"
)

// Feature areas wire themselves here, one function each (monitor, jobs, batch), called by open() after the
// catalog and deployments exist. Each returns a closer run by Close in reverse order.

// openMonitor wires monitoring: its append-heavy data in DATA/monitor.db (a second SQLite file, so that captures
// and logs never queue behind the metadata; on PostgreSQL, the same database through their own connections), its configuration and history in the main database, the serving
// pools' observers and the replicas' output into the predict log.
func (a *App) openMonitor() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	data, err := a.openMonitorData(ctx)
	if err != nil {
		return err
	}
	a.monitorData = data
	m, err := monitor.New(monitor.Config{Store: a.db, Data: data, Models: a.db, Deployments: a.db, Log: a.log,
		MetricsRetention: a.cfg.MetricsRetention, AlertInterval: a.cfg.AlertInterval, TempDir: a.blobs.TempDir(), Leader: a.monitorLeader(),
		Serving: func() []monitor.ServingInfo {
			var out []monitor.ServingInfo
			for name, pools := range a.deploy.Pools() {
				info := monitor.ServingInfo{Deployment: name}
				for _, p := range pools { // the deployment's, its canary's and its shadow's
					info.QueueLen += p.QueueLen()
					info.Replicas = append(info.Replicas, p.Status()...)
					info.Versions = append(info.Versions, p.ServedVersion())
				}
				out = append(out, info)
			}
			return out
		},
		ModelMemory: func() monitor.ModelMemory {
			n, bytes := a.budget.Unloads()
			return monitor.ModelMemory{Budget: a.budget.Limit(), Loaded: a.budget.Loaded(), Unloads: n, UnloadedBytes: bytes}
		}})
	if err != nil {
		return errors.Join(err, data.Close())
	}
	m.Start()
	a.monitor = m
	a.deploy.SetMonitor(func(name string) serving.Observer { return m.Observer(name) },
		func(deployment, replica, line string) {
			a.log.Debug("replica output", "deployment", deployment, "replica", replica, "line", line)
			m.ReplicaLog(deployment, replica, line)
		})
	a.closers = append(a.closers, func() error { return errors.Join(m.Close(), data.Close()) })
	return nil
}

// openJobs wires jobs, pipelines and schedules: artifacts, run folders and logs under DATA/jobs, processes
// through the local executor (resource limits applied by re-executing this binary as `slipway exec-limited`,
// each run supervised by `slipway exec-supervise` so that it outlives a server restart), and re-attaching to
// the runs a previous server left in progress. Runs start once Run knows the listen address.
func (a *App) openJobs() error {
	exe, err := executable()
	if err != nil {
		return err
	}
	exec, err := a.jobExecutor(exe)
	if err != nil {
		return err
	}
	limits := archive.DefaultLimits()
	limits.MaxFiles, limits.MaxUnpackedBytes, limits.MaxRatio = a.cfg.MaxFiles, a.cfg.MaxUnpackedBytes, a.cfg.MaxRatio
	cfg := jobs.Config{Store: a.db, Tokens: a.db, Models: a.db, Executor: exec,
		Limits: limits, Dir: filepath.Join(a.cfg.DataDir, "jobs"), Python: a.cfg.Python, MaxConcurrentRuns: a.cfg.MaxConcurrentRuns,
		URLFile: a.urlFile(), CACert: a.cfg.TLSCert, NoRecover: a.shared, Leases: a.runLeases(),
		Log: a.log, Audit: a.audit.Record,
		NewToken: func() (string, string) {
			secret := httpapi.NewTokenSecret()
			return secret, httpapi.HashToken(secret)
		},
		Register: func(ctx context.Context, model, path, filename string, meta slipway.VersionMetadata, by string) (*slipway.ModelVersion, error) {
			return a.catalog.Register(ctx, catalog.Upload{Model: model, Path: path, Filename: filename, Metadata: meta, By: by})
		},
		Baseline: a.storeBaseline,
		Targets:  map[string]jobs.ScheduleTarget{slipway.TargetBatch: batchTarget{a.batch}},
		Batch:    pipelineBatch{a.batch},
		HeldOut:  pipelineBatch{a.batch},
		Rollouts: a.rollouts,
		Deployer: jobs.Deployer{
			Update: func(ctx context.Context, name string, version int) (*slipway.Deployment, error) {
				return a.deploy.Update(ctx, name, slipway.DeploymentSpec{Version: &version})
			},
			Get:        a.deploy.Get,
			AliasMoved: a.deploy.AliasMoved,
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if a.jobs, err = jobs.Open(ctx, cfg); err != nil {
		return err
	}
	a.closers = append(a.closers, a.jobs.Close)
	a.monitor.RegisterAction("pipeline", a.startPipelineForAlert, func(ctx context.Context, target string) error {
		_, err := a.db.FindPipeline(ctx, target)
		if slipway.ErrorCode(err) == slipway.ENOTFOUND {
			return errors.New("no such pipeline (create it first: slipway pipelines create FILE)")
		}
		return err
	})
	return nil
}

// startPipelineForAlert is the "pipeline" alert action: a firing alert starts the pipeline with its default
// parameters (retraining, gated by the pipeline's own checks); the run's trigger names the alert.
func (a *App) startPipelineForAlert(ctx context.Context, pipeline string, ev *slipway.AlertEvent) error {
	by := "alert:" + ev.Deployment + "/" + ev.Rule
	// An alert that flaps (fires, resolves, fires) while its retraining runs must not start a second one: two
	// runs would race to roll their candidates out on the same deployment.
	runs, _, err := a.jobs.ListPipelineRuns(ctx, pipeline, 0, 20)
	if err != nil {
		return fmt.Errorf("start pipeline %s: look for a run in progress: %w", pipeline, err)
	}
	for _, r := range runs {
		if !r.State.Terminal() {
			a.log.Info("an alert fired while its pipeline runs: no second run", "deployment", ev.Deployment, "rule", ev.Rule,
				"pipeline", pipeline, "pipeline_run", r.ID)
			return nil
		}
	}
	run, err := a.jobs.RunPipeline(ctx, pipeline, nil, by, by)
	if err != nil {
		return fmt.Errorf("start pipeline %s: %w", pipeline, err)
	}
	a.log.Info("an alert started a pipeline run", "deployment", ev.Deployment, "rule", ev.Rule, "pipeline", pipeline, "pipeline_run", run.ID)
	return nil
}

// openBatch wires batch predictions: named connections (refused at startup when malformed), uploaded
// files and file outputs in the artifact store (scratch space under DATA/batch), and the runs a previous
// server left unfinished (resumed).
func (a *App) openBatch() error {
	for _, w := range a.cfg.Warnings {
		a.log.Warn(w)
	}
	specs, err := batch.FlagConnSpecs(a.cfg.Connections)
	if err != nil {
		return err
	}
	for _, fc := range a.cfg.FileConnections {
		specs = append(specs, batch.ConnSpec{Name: fc.Name, DSN: fc.DSN, Origin: fc.Origin})
	}
	conns, err := batch.ParseConnSpecs(specs)
	if err != nil {
		return err
	}
	a.batch = batch.New(batch.Config{Store: a.db, Models: a.db, Deployments: a.db, Files: a.catalog, Runtimes: a.runtimes,
		Log: a.log, Blobs: a.blobs, Dir: filepath.Join(a.cfg.DataDir, "batch"), ImportDir: a.cfg.ImportDir, Connections: conns,
		ReadyTimeout: a.cfg.ReadyTimeout, MaxUploadBytes: a.cfg.MaxUploadBytes, NoResume: a.shared,
		Leases: a.runLeases(), Owners: a.db})
	a.closers = append(a.closers, a.batch.Close)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return a.batch.Open(ctx)
}

// openCanary starts the canary analysis (internal/canary): it reads the monitor's per-version totals and
// promotes or removes canaries through the deployment service. Its goroutine ends at Close.
func (a *App) openCanary() error {
	analyzer := canary.New(a.canaryDeployments(), a.monitor, a.log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { // owned by the App: ends at Close
		defer close(done)
		analyzer.Run(ctx)
	}()
	a.closers = append(a.closers, func() error { cancel(); <-done; return nil })
	return nil
}

// openRollouts starts the driver of gated rollouts (internal/rollout): it moves each RUNNING rollout whose
// deployment this server hosts (whose request counts it reads), resuming those a previous server left. Its
// goroutine ends at Close, before the deployments stop.
func (a *App) openRollouts() error {
	a.rollouts = rollout.New(rollout.Config{Store: a.db, Deployments: a.deploy, Models: a.db, Monitor: a.monitor, Log: a.log,
		Hosted: func(name string) bool { return a.deploy.Routers().Get(name) != nil }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { // owned by the App: ends at Close
		defer close(done)
		a.rollouts.Run(ctx)
	}()
	a.closers = append(a.closers, func() error { cancel(); <-done; return nil })
	return nil
}

// storeBaseline keeps the sample at path as a version's baseline (the register builtin's with.baseline).
func (a *App) storeBaseline(ctx context.Context, model string, version int, format, path, by string) error {
	if a.monitor == nil {
		return slipway.Errorf(slipway.EUNAVAILABLE, "monitoring is not running on this server: no baseline can be stored")
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open baseline %s: %w", path, err)
	}
	defer f.Close()
	_, err = a.monitor.PutBaseline(ctx, model, slipway.VersionRef{Number: version}, format, f, by)
	return err
}
