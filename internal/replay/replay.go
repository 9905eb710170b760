// Package replay sends the captured requests of a window to a candidate version, offline, and compares the
// candidate's answers with the captured live ones: the shadow comparison's report without touching live
// traffic. A replay starts its own replicas of the candidate (a private serving pool, as a batch prediction
// does) and stops them when it ends; the deployment's replicas are never used.
//
// A replay's state is stored (slipway.ReplayStore) and driven by the server hosting its deployment. A server
// that stops while driving one leaves it RUNNING; the next host takes it over under a new attempt and starts it
// again from the window's beginning: the report is a function of the window's captures, so a second pass
// gives the same figures. The attempt fences the writes: an older driver's progress is refused.
package replay

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/modelruntime"
	"github.com/slipway-ml/slipway/internal/monitor"
	"github.com/slipway-ml/slipway/internal/serving"
	"github.com/slipway-ml/slipway/internal/workerproto"
)

// Deployments finds the deployment a replay is about.
type Deployments interface {
	Get(ctx context.Context, name string) (*slipway.Deployment, error)
}

// Models finds the candidate version.
type Models interface {
	FindVersion(ctx context.Context, model string, ref slipway.VersionRef) (*slipway.ModelVersion, error)
}

// Materializer puts a version's files in a folder its replicas run from.
type Materializer interface {
	Materialize(ctx context.Context, v *slipway.ModelVersion) (string, error)
}

// Captures reads the captured requests back.
type Captures interface {
	PageCaptures(ctx context.Context, p slipway.CapturePage) ([]slipway.LabelledCapture, error)
	CountCaptures(ctx context.Context, p slipway.CapturePage) (int64, error)
}

// Config wires a Service.
type Config struct {
	Store        slipway.ReplayStore
	Deployments  Deployments
	Models       Models
	Files        Materializer
	Runtimes     *modelruntime.Runtimes
	Captures     Captures
	ReadyTimeout time.Duration
	// Hosted says whether this server hosts the deployment: only its host drives the deployment's replays.
	Hosted func(deployment string) bool
	// Owner names this server in the replays it drives ("" on a single server).
	Owner string
	Log   *slog.Logger
	// Tick is how often the driver looks for replays to take (default 500 ms).
	Tick time.Duration
}

// Service starts, drives and cancels replays. Run owns the driver; each replay it drives has a goroutine of
// its own, which ends when the replay ends, is canceled, is taken over, or when Run's context ends.
type Service struct {
	cfg  Config
	now  func() time.Time
	wake chan struct{}

	mu     sync.Mutex
	active map[string]context.CancelCauseFunc // by replay id: the replays this process drives
	wg     sync.WaitGroup
}

// errCanceled and errTakenOver are the causes of a replay goroutine's end other than its own.
var (
	errCanceled  = errors.New("the replay was canceled")
	errTakenOver = errors.New("another attempt drives the replay now")
)

// New returns a Service; Run drives the replays.
func New(cfg Config) *Service {
	if cfg.Tick <= 0 {
		cfg.Tick = 500 * time.Millisecond
	}
	if cfg.Hosted == nil {
		cfg.Hosted = func(string) bool { return true }
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = 2 * time.Minute
	}
	return &Service{cfg: cfg, now: time.Now, wake: make(chan struct{}, 1), active: map[string]context.CancelCauseFunc{}}
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Start validates spec and records a replay of deployment's captures to spec.Version; the driver starts it.
func (s *Service) Start(ctx context.Context, deployment string, spec slipway.ReplaySpec, by string) (*slipway.Replay, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	spec = spec.WithDefaults()
	spec.From, spec.To = spec.From.UTC(), spec.To.UTC()
	d, err := s.cfg.Deployments.Get(ctx, deployment)
	if err != nil {
		return nil, err
	}
	v, err := s.cfg.Models.FindVersion(ctx, d.Model, slipway.VersionRef{Number: spec.Version})
	switch {
	case slipway.ErrorCode(err) == slipway.ENOTFOUND:
		return nil, slipway.Errorf(slipway.EINVALID, "invalid replay: version: model %s has no version %d", d.Model, spec.Version)
	case err != nil:
		return nil, err
	case v.State != slipway.VersionReady:
		return nil, slipway.Errorf(slipway.EINVALID, "invalid replay: version: version %d of %s is %s: only READY versions are replayed to", spec.Version, d.Model, v.State)
	}
	n, err := s.cfg.Captures.CountCaptures(ctx, capturePage(d.Name, spec))
	if err != nil {
		return nil, fmt.Errorf("count the captures of %s: %w", d.Name, err)
	}
	if n == 0 {
		which := ""
		if spec.LiveVersion > 0 {
			which = fmt.Sprintf(" answered by version %d", spec.LiveVersion)
		}
		return nil, slipway.Errorf(slipway.EINVALID, "invalid replay: deployment %s has no captured request%s from %s to %s: pick a window with traffic (captures are kept for the monitoring settings' capture_retention, and only when sampling_rate > 0)",
			d.Name, which, spec.From.Format(time.RFC3339), spec.To.Format(time.RFC3339))
	}
	r := &slipway.Replay{ID: newID(), Deployment: d.Name, Model: d.Model, Spec: spec, State: slipway.ReplayRunning,
		Total: min(n, int64(spec.Limit)), CreatedBy: by}
	if err := s.cfg.Store.CreateReplay(ctx, r); err != nil {
		return nil, err
	}
	s.cfg.Log.Info("replay started", "deployment", d.Name, "replay", r.ID, "version", spec.Version, "requests", r.Total)
	s.poke()
	return r, nil
}

func (s *Service) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func capturePage(deployment string, spec slipway.ReplaySpec) slipway.CapturePage {
	return slipway.CapturePage{Deployment: deployment, From: spec.From, To: spec.To, Version: spec.LiveVersion}
}

// Get returns one replay.
func (s *Service) Get(ctx context.Context, deployment, id string) (*slipway.Replay, error) {
	return s.cfg.Store.FindReplay(ctx, deployment, id)
}

// MaxListed bounds a list of a deployment's replays.
const MaxListed = 100

// List returns a deployment's replays, newest first.
func (s *Service) List(ctx context.Context, deployment string) ([]*slipway.Replay, error) {
	if _, err := s.cfg.Deployments.Get(ctx, deployment); err != nil {
		return nil, err
	}
	rs, err := s.cfg.Store.FindReplays(ctx, deployment, MaxListed)
	if rs == nil {
		rs = []*slipway.Replay{}
	}
	return rs, err
}

// Cancel ends a running replay; its replicas stop (here at once; on another server at its next tick).
func (s *Service) Cancel(ctx context.Context, deployment, id, by string) (*slipway.Replay, error) {
	r, err := s.cfg.Store.FindReplay(ctx, deployment, id)
	if err != nil {
		return nil, err
	}
	if r.State.Ended() {
		return nil, slipway.Errorf(slipway.ECONFLICT, "replay %s is already %s", id, r.State)
	}
	now := s.now().UTC()
	r.State, r.EndedAt = slipway.ReplayCanceled, &now
	r.Reason = fmt.Sprintf("canceled by %s after %d of %d requests", by, r.Sent, r.Total)
	if err := s.cfg.Store.UpdateReplay(ctx, r, r.Attempt); err != nil {
		return nil, err
	}
	s.stop(id, errCanceled)
	s.cfg.Log.Info("replay canceled", "deployment", deployment, "replay", id, "by", by)
	return r, nil
}

func (s *Service) stop(id string, cause error) {
	s.mu.Lock()
	cancel := s.active[id]
	s.mu.Unlock()
	if cancel != nil {
		cancel(cause)
	}
}

// Run drives replays until ctx ends, then waits for their goroutines (which leave them RUNNING, for the next
// host to take over).
func (s *Service) Run(ctx context.Context) {
	defer s.wg.Wait()
	t := time.NewTicker(s.cfg.Tick)
	defer t.Stop()
	for {
		s.Step(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.wake:
		}
	}
}

// Step takes the running replays this server hosts and drives none yet, and stops driving those that ended
// elsewhere (a cancel through another server).
func (s *Service) Step(ctx context.Context) {
	rs, err := s.cfg.Store.FindRunningReplays(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.cfg.Log.Warn("replays: list the running ones", "error", err)
		}
		return
	}
	running := map[string]bool{}
	for _, r := range rs {
		running[r.ID] = true
		s.mu.Lock()
		_, driven := s.active[r.ID]
		s.mu.Unlock()
		if driven || !s.cfg.Hosted(r.Deployment) {
			continue
		}
		if err := s.take(ctx, r); err != nil && ctx.Err() == nil {
			s.cfg.Log.Warn("replay not started", "deployment", r.Deployment, "replay", r.ID, "error", err)
		}
	}
	s.mu.Lock()
	var gone []string
	for id := range s.active {
		if !running[id] {
			gone = append(gone, id)
		}
	}
	s.mu.Unlock()
	for _, id := range gone {
		s.stop(id, errCanceled)
	}
}

// take claims r under a new attempt and launches its goroutine.
func (s *Service) take(ctx context.Context, r *slipway.Replay) error {
	prev := r.Attempt
	r.Attempt++
	r.Owner = s.cfg.Owner
	if prev > 0 {
		r.Reason = fmt.Sprintf("resumed by this server (attempt %d): the replay starts again from the window's beginning, since the previous attempt's answers were in its memory", r.Attempt)
		s.cfg.Log.Info("replay resumed", "deployment", r.Deployment, "replay", r.ID, "attempt", r.Attempt, "sent_before", r.Sent)
	}
	r.Sent = 0
	if err := s.cfg.Store.UpdateReplay(ctx, r, prev); err != nil {
		if slipway.ErrorCode(err) == slipway.ECONFLICT {
			return nil // canceled, or another server took it a moment ago
		}
		return err
	}
	rctx, cancel := context.WithCancelCause(ctx)
	s.mu.Lock()
	s.active[r.ID] = cancel
	s.mu.Unlock()
	s.wg.Add(1)
	go func() { // owned by Run: ends with the replay, or when rctx ends
		defer s.wg.Done()
		defer func() {
			cancel(nil)
			s.mu.Lock()
			delete(s.active, r.ID)
			s.mu.Unlock()
		}()
		s.drive(rctx, r)
	}()
	return nil
}

// drive runs r to its end and records the outcome (unless it was canceled, taken over, or the server stops).
func (s *Service) drive(ctx context.Context, r *slipway.Replay) {
	err := s.execute(ctx, r)
	switch cause := context.Cause(ctx); {
	case errors.Is(cause, errCanceled), errors.Is(cause, errTakenOver):
		s.cfg.Log.Info("replay stopped here", "deployment", r.Deployment, "replay", r.ID, "why", cause)
		return
	case ctx.Err() != nil:
		s.cfg.Log.Info("replay interrupted by shutdown: the next host starts it again", "deployment", r.Deployment, "replay", r.ID)
		return
	}
	now := s.now().UTC()
	r.EndedAt = &now
	if err != nil {
		r.State, r.Reason = slipway.ReplayFailed, slipway.ErrorMessage(err)
		s.cfg.Log.Warn("replay failed", "deployment", r.Deployment, "replay", r.ID, "error", err)
	} else {
		r.State = slipway.ReplaySucceeded
		r.Reason = fmt.Sprintf("%d captured requests replayed to version %d", r.Sent, r.Spec.Version)
		if r.Attempt > 1 {
			r.Reason += fmt.Sprintf(" (attempt %d: resumed after the server driving it stopped)", r.Attempt)
		}
	}
	if err := s.cfg.Store.UpdateReplay(context.WithoutCancel(ctx), r, r.Attempt); err != nil {
		s.cfg.Log.Warn("record the end of a replay", "deployment", r.Deployment, "replay", r.ID, "error", err)
	}
}

// progressEvery is how often a replay's progress is written.
const progressEvery = 250 * time.Millisecond

// capturePageSize is how many captures a replay reads at a time (what it holds in memory).
const capturePageSize = 128

// execute starts the candidate's replicas, sends the window's captures to them in order and builds the report.
func (s *Service) execute(ctx context.Context, r *slipway.Replay) error {
	d, err := s.cfg.Deployments.Get(ctx, r.Deployment)
	if err != nil {
		return err
	}
	v, err := s.cfg.Models.FindVersion(ctx, r.Model, slipway.VersionRef{Number: r.Spec.Version})
	if err != nil {
		return fmt.Errorf("find version %d of %s: %w", r.Spec.Version, r.Model, err)
	}
	dir, err := s.cfg.Files.Materialize(ctx, v)
	if err != nil {
		return fmt.Errorf("prepare the files of version %d: %w", v.Version, err)
	}
	timeout := time.Duration(d.TimeoutMS) * time.Millisecond
	replicas := r.Spec.Replicas
	log := s.cfg.Log.With("deployment", r.Deployment, "replay", r.ID, "version", v.Version)
	pool := serving.NewPool("replay-"+r.ID, serving.Options{MaxQueue: 2 * replicas, Timeout: timeout}, log, nil)
	defer pool.Close() // the replay's replicas stop with it, whatever the outcome
	env := modelruntime.ThreadEnv(replicas, d.Env)
	start := func(ctx context.Context) (*modelruntime.Replica, error) {
		spec, err := s.cfg.Runtimes.ReplicaSpec(v.Runtime, dir, v.Files, env)
		if err != nil {
			return nil, err
		}
		return s.cfg.Runtimes.Start(ctx, spec, s.cfg.ReadyTimeout, func(line string) { log.Debug("replica output", "line", line) })
	}
	if err := pool.Rollout(ctx, v.Version, replicas, start); err != nil {
		return slipway.Wrap(slipway.EUNAVAILABLE, err, "the replicas of version %d could not start: %v", v.Version, err)
	}
	comp := monitor.NewComparison(r.Deployment)
	lastSave := s.now()
	err = s.sendAll(ctx, r, pool, replicas, func(p *slipway.ShadowPair) error {
		if err := comp.Add(p); err != nil {
			return err
		}
		r.Sent++
		if now := s.now(); now.Sub(lastSave) >= progressEvery {
			lastSave = now
			rep := s.report(comp, r)
			r.Report = rep
			return s.save(ctx, r)
		}
		return nil
	})
	if err != nil {
		return err
	}
	r.Report = s.report(comp, r)
	return nil
}

func (s *Service) report(comp *monitor.Comparison, r *slipway.Replay) *slipway.ShadowReport {
	rep := comp.Report()
	rep.From, rep.To, rep.Version = r.Spec.From, r.Spec.To, r.Spec.Version
	return rep
}

// save writes r's progress; a refused write means a cancel or another attempt: the replay stops here.
func (s *Service) save(ctx context.Context, r *slipway.Replay) error {
	err := s.cfg.Store.UpdateReplay(context.WithoutCancel(ctx), r, r.Attempt)
	if slipway.ErrorCode(err) == slipway.ECONFLICT {
		cur, ferr := s.cfg.Store.FindReplay(context.WithoutCancel(ctx), r.Deployment, r.ID)
		cause := errTakenOver
		if ferr == nil && cur.State == slipway.ReplayCanceled {
			cause = errCanceled
		}
		s.stop(r.ID, cause)
		return fmt.Errorf("%w: %w", cause, err)
	}
	return err
}

// call is one captured request on its way to the candidate; done is closed once pair is set.
type call struct {
	c    *slipway.Capture
	pair *slipway.ShadowPair
	done chan struct{}
}

// sendAll sends the window's captures (at most the limit) to the pool with as many requests in flight as
// replicas, and hands their pairs to add in the captures' order (the report's slices keep the first rows).
func (s *Service) sendAll(ctx context.Context, r *slipway.Replay, pool *serving.Pool, parallel int, add func(*slipway.ShadowPair) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	calls := make(chan *call, parallel)
	order := make(chan *call, parallel)
	var wg sync.WaitGroup
	for range parallel {
		wg.Add(1)
		go func() { // a sender: owned by sendAll, ends when calls is closed
			defer wg.Done()
			for c := range calls {
				c.pair = s.answer(ctx, r, pool, c.c)
				close(c.done)
			}
		}()
	}
	var feedErr error
	go func() { // the feeder: owned by sendAll, ends at the window's end, the limit or ctx's end
		defer close(order)
		defer close(calls)
		page := capturePage(r.Deployment, r.Spec)
		left := r.Total
		for left > 0 {
			page.Limit = int(min(left, capturePageSize))
			items, err := s.cfg.Captures.PageCaptures(ctx, page)
			if err != nil {
				feedErr = fmt.Errorf("read the captures of %s: %w", r.Deployment, err)
				cancel(feedErr)
				return
			}
			for _, lc := range items {
				c := &call{c: lc.Capture, done: make(chan struct{})}
				select {
				case order <- c:
				case <-ctx.Done():
					return
				}
				select {
				case calls <- c:
				case <-ctx.Done():
					close(c.done)
					return
				}
			}
			left -= int64(len(items))
			if len(items) < page.Limit {
				return
			}
			last := items[len(items)-1].Capture
			page.AfterTime, page.AfterID = last.Time, last.ID
		}
	}()
	var addErr error
	for c := range order {
		<-c.done
		if addErr != nil || c.pair == nil {
			continue
		}
		if addErr = add(c.pair); addErr != nil {
			cancel(addErr)
		}
	}
	wg.Wait()
	switch {
	case addErr != nil:
		return addErr
	case feedErr != nil:
		return feedErr
	}
	return context.Cause(ctx)
}

// answer sends one captured request to the candidate and pairs its answer with the captured one. The
// captured request succeeded (only those are captured), so the live side has no error.
func (s *Service) answer(ctx context.Context, r *slipway.Replay, pool *serving.Pool, c *slipway.Capture) *slipway.ShadowPair {
	p := &slipway.ShadowPair{Deployment: r.Deployment, RequestID: c.RequestID, Time: c.Time, LiveVersion: c.ModelVersion,
		ShadowVersion: r.Spec.Version, Rows: c.Rows, LiveOutputs: c.Outputs, LiveMS: c.LatencyMS}
	in, err := workerproto.DecodeTensors(c.Inputs)
	if err != nil {
		p.ShadowError = fmt.Sprintf("the captured inputs cannot be read: %v", err)
		return p
	}
	p.Features = workerproto.EncodeTensors(nil, monitor.SliceFeatures(in, c.Rows))
	began := time.Now()
	res, err := pool.PredictTensors(ctx, in)
	p.ShadowMS = float64(time.Since(began).Microseconds()) / 1000
	if ctx.Err() != nil {
		return nil // stopping: the pair is not counted
	}
	if err != nil {
		p.ShadowError = slipway.ErrorMessage(err)
		return p
	}
	if n := rowsOf(res.Outputs); n != c.Rows && c.Rows > 0 {
		p.ShadowError = fmt.Sprintf("the candidate answered %d rows for the captured %d", n, c.Rows)
	}
	p.ShadowOutputs = workerproto.EncodeTensors(nil, res.Outputs)
	return p
}

func rowsOf(ts []workerproto.Tensor) int {
	for _, t := range ts {
		if len(t.Shape) > 0 {
			return int(t.Shape[0])
		}
	}
	return 0
}
