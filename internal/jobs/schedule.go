package jobs

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/slipway-ml/slipway"
)

// Scheduling bounds.
const (
	// lateAfter: a tick older than this when decided was missed (the server was down); it runs only as the one
	// catch-up run, if the schedule allows it.
	lateAfter = time.Minute
	// maxTickScan bounds how many missed ticks are counted after a long downtime.
	maxTickScan = 1_000_000
	// maxSchedulerSleep: the scheduler re-reads the schedules at least this often.
	maxSchedulerSleep = time.Minute
	recentTicks       = 20
)

// Tick actions.
const (
	TickStarting = "starting" // recorded, the run is being started (stays so if the server died right then)
	TickStarted  = "started"
	TickReplaced = "replaced" // the previous run was canceled and a new one started
	TickSkipped  = "skipped"
	TickFailed   = "failed" // the run could not be started
)

// ScheduleTarget is a kind of thing a schedule starts (job, pipeline; batch predictions can register theirs).
type ScheduleTarget interface {
	// Validate checks that the target exists and the schedule's inputs suit it.
	Validate(ctx context.Context, sch *slipway.Schedule) error
	// Start starts a run and returns its id.
	Start(ctx context.Context, sch *slipway.Schedule, trigger string) (string, error)
	// Active reports whether the run is still going.
	Active(ctx context.Context, runID string) (bool, error)
	// Cancel stops the run (policy replace).
	Cancel(ctx context.Context, runID, by string) error
}

// RegisterTarget adds a schedule target kind (call before schedules of that kind are created).
func (s *Service) RegisterTarget(kind string, t ScheduleTarget) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.targets[kind] = t
}

func (s *Service) target(kind string) (ScheduleTarget, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.targets[kind]
	if !ok {
		kinds := make([]string, 0, len(s.targets))
		for k := range s.targets {
			kinds = append(kinds, k)
		}
		return nil, slipway.Errorf(slipway.EINVALID, "unknown target kind %q: use %s", kind, strings.Join(sortedStrings(kinds), " or "))
	}
	return t, nil
}

// parseCron parses a cron expression (5 fields, or 6 with seconds first, or a descriptor such as @hourly) in a
// time zone.
func (s *Service) parseCron(expr, tz string) (cron.Schedule, *time.Location, error) {
	if strings.Contains(expr, "TZ=") {
		return nil, nil, slipway.Errorf(slipway.EINVALID, "cron %q: give the time zone in the timezone field, not in the expression", expr)
	}
	sched, err := s.cronParser.Parse(expr)
	if err != nil {
		return nil, nil, slipway.Errorf(slipway.EINVALID, "invalid cron %q: %v (use 5 fields \"min hour day month weekday\", 6 with seconds first, or @hourly/@daily/@every 1h)", expr, err)
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return nil, nil, slipway.Errorf(slipway.EINVALID, "unknown timezone %q: use an IANA name such as Europe/Paris or UTC", tz)
	}
	return sched, loc, nil
}

// CreateSchedule validates and stores a schedule. Its first tick is the first cron time after now.
func (s *Service) CreateSchedule(ctx context.Context, sch *slipway.Schedule, by string) (*slipway.Schedule, error) {
	if err := slipway.ValidateName("schedule", sch.Name); err != nil {
		return nil, err
	}
	if sch.Timezone == "" {
		sch.Timezone = "UTC"
	}
	if _, _, err := s.parseCron(sch.Cron, sch.Timezone); err != nil {
		return nil, err
	}
	switch sch.ConcurrencyPolicy {
	case "":
		sch.ConcurrencyPolicy = slipway.PolicyForbid
	case slipway.PolicyAllow, slipway.PolicyForbid, slipway.PolicyReplace:
	default:
		return nil, slipway.Errorf(slipway.EINVALID, "unknown concurrency_policy %q: use allow, forbid or replace", sch.ConcurrencyPolicy)
	}
	t, err := s.target(sch.Target.Kind)
	if err != nil {
		return nil, err
	}
	if err := t.Validate(ctx, sch); err != nil {
		return nil, err
	}
	if sch.CatchUp == nil {
		sch.CatchUp = ptr(true)
	}
	sch.CreatedBy, sch.CreatedAt, sch.LastTickAt, sch.LastRunID = by, s.now().UTC(), nil, ""
	if err := s.store.CreateSchedule(ctx, sch); err != nil {
		return nil, err
	}
	s.wakeScheduler()
	return s.GetSchedule(ctx, sch.Name)
}

// GetSchedule returns a schedule with its next tick and recent ticks.
func (s *Service) GetSchedule(ctx context.Context, name string) (*slipway.Schedule, error) {
	sch, err := s.store.FindSchedule(ctx, name)
	if err != nil {
		return nil, err
	}
	s.fillNext(sch)
	if sch.Ticks, err = s.store.FindTicks(ctx, name, recentTicks); err != nil {
		return nil, err
	}
	return sch, nil
}

func (s *Service) fillNext(sch *slipway.Schedule) {
	if c, loc, err := s.parseCron(sch.Cron, sch.Timezone); err == nil {
		n := c.Next(s.now().In(loc)).UTC()
		sch.NextTickAt = &n
	}
}

// ListSchedules returns every schedule with its next tick.
func (s *Service) ListSchedules(ctx context.Context) ([]*slipway.Schedule, error) {
	list, err := s.store.FindSchedules(ctx)
	for _, sch := range list {
		s.fillNext(sch)
	}
	return list, err
}

// DeleteSchedule removes a schedule (runs it started carry on).
func (s *Service) DeleteSchedule(ctx context.Context, name string) error {
	if err := s.store.DeleteSchedule(ctx, name); err != nil {
		return err
	}
	s.wakeScheduler()
	return nil
}

func (s *Service) wakeScheduler() {
	select {
	case s.schedWake <- struct{}{}:
	default:
	}
}

// decision is what one schedule does at a moment: pure, from the schedule's last decided tick and the time.
type decision struct {
	At     time.Time // the tick decided (the latest cron time not after now)
	Missed int       // earlier ticks that are dropped
	Late   bool      // At was missed while the server was down
	Run    bool      // false: record the tick as skipped
	Reason string
}

// decide finds the latest due tick after last and whether to run it: on time it runs; late (the server was
// down) it runs once as the catch-up when catchUp is set; every older missed tick is dropped.
func decide(next func(time.Time) time.Time, last, now time.Time, catchUp bool) (decision, bool) {
	var d decision
	n := 0
	for t := next(last); !t.After(now) && n < maxTickScan; t = next(t) {
		if t.IsZero() {
			break
		}
		d.At = t
		n++
	}
	if n == 0 {
		return d, false
	}
	d.Missed = n - 1
	d.Late = now.Sub(d.At) > lateAfter
	d.Run = !d.Late || catchUp
	switch {
	case d.Late && catchUp:
		d.Reason = fmt.Sprintf("catch-up run: the server was down at %s", d.At.Format(time.RFC3339))
	case d.Late:
		d.Reason = "missed while the server was down (catch_up is off)"
	}
	if d.Missed > 0 {
		d.Reason = strings.TrimPrefix(d.Reason+fmt.Sprintf("; %d earlier missed ticks dropped", d.Missed), "; ")
	}
	return d, true
}

// policyAction is what a due tick does given the concurrency policy and whether the previous run is going:
// start, skip or replace.
func policyAction(policy string, previousActive bool) string {
	if !previousActive {
		return TickStarted
	}
	switch policy {
	case slipway.PolicyAllow:
		return TickStarted
	case slipway.PolicyReplace:
		return TickReplaced
	}
	return TickSkipped
}

// runScheduler decides due ticks, then sleeps until the next one (or a schedule change). Owned by the
// service; ends with its context.
func (s *Service) runScheduler(ctx context.Context) {
	select {
	case <-s.urlReady:
	case <-ctx.Done():
		return
	}
	for {
		next := s.scheduleDue(ctx, s.now())
		wait := maxSchedulerSleep
		if !next.IsZero() {
			wait = min(wait, max(0, next.Sub(s.now())))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-s.schedWake:
		case <-t.C:
		}
		t.Stop()
	}
}

// scheduleDue decides every schedule's due tick at now and returns the earliest next tick.
func (s *Service) scheduleDue(ctx context.Context, now time.Time) time.Time {
	list, err := s.store.FindSchedules(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("scheduler: list schedules", "error", err)
		}
		return now.Add(5 * time.Second)
	}
	var earliest time.Time
	for _, sch := range list {
		c, loc, err := s.parseCron(sch.Cron, sch.Timezone)
		if err != nil {
			s.log.Error("scheduler: bad schedule", "schedule", sch.Name, "error", err)
			continue
		}
		s.tick(ctx, sch, func(t time.Time) time.Time { return c.Next(t.In(loc)) }, now)
		if n := c.Next(now.In(loc)); earliest.IsZero() || n.Before(earliest) {
			earliest = n
		}
	}
	return earliest
}

// tick decides one schedule at now. The tick is recorded (compare-and-set on the schedule's last tick)
// before the run starts, so that no tick is acted on twice, even by two servers or across a crash.
func (s *Service) tick(ctx context.Context, sch *slipway.Schedule, next func(time.Time) time.Time, now time.Time) {
	last := sch.CreatedAt
	if sch.LastTickAt != nil {
		last = *sch.LastTickAt
	}
	d, due := decide(next, last, now, sch.CatchUp == nil || *sch.CatchUp)
	if !due {
		return
	}
	if sch.Project != "" { // what the tick starts is the schedule's project's, and sees only that project
		ctx = slipway.WithProject(ctx, sch.Project)
	}
	log := s.log.With("schedule", sch.Name, "tick", d.At)
	t := &slipway.Tick{Schedule: sch.Name, At: d.At.UTC(), RecordedAt: now.UTC(), Reason: d.Reason}
	target, err := s.target(sch.Target.Kind)
	if err != nil {
		t.Action, t.Reason = TickFailed, slipway.ErrorMessage(err)
		s.recordTick(ctx, t, log)
		return
	}
	action := TickSkipped
	if d.Run {
		active := false
		if sch.LastRunID != "" {
			if active, err = target.Active(ctx, sch.LastRunID); err != nil && slipway.ErrorCode(err) != slipway.ENOTFOUND {
				log.Error("scheduler: check previous run", "run_id", sch.LastRunID, "error", err)
				return // decide this tick on the next pass
			}
		}
		action = policyAction(sch.ConcurrencyPolicy, active)
		if action == TickSkipped {
			t.Reason = strings.TrimPrefix(t.Reason+"; previous run "+sch.LastRunID+" is still going (policy forbid)", "; ")
		}
	}
	t.Action = action
	if action != TickSkipped {
		t.Action = TickStarting
	}
	if !s.recordTick(ctx, t, log) || action == TickSkipped {
		return
	}
	if action == TickReplaced {
		if err := target.Cancel(ctx, sch.LastRunID, "schedule "+sch.Name); err != nil && slipway.ErrorCode(err) != slipway.ECONFLICT {
			log.Warn("scheduler: cancel previous run", "run_id", sch.LastRunID, "error", err)
		}
		t.Reason = strings.TrimPrefix(t.Reason+"; canceled previous run "+sch.LastRunID, "; ")
	}
	runID, err := target.Start(ctx, sch, "schedule:"+sch.Name)
	if err != nil {
		t.Action, t.Reason = TickFailed, strings.TrimPrefix(t.Reason+"; "+slipway.ErrorMessage(err), "; ")
		log.Warn("scheduler: start run", "error", err)
	} else {
		t.Action, t.RunID = action, runID
		sch.LastRunID = runID
		log.Info("schedule started a run", "run_id", runID, "action", action)
	}
	if err := s.store.UpdateTick(context.WithoutCancel(ctx), t); err != nil {
		log.Error("scheduler: record tick outcome", "error", err)
	}
}

func (s *Service) recordTick(ctx context.Context, t *slipway.Tick, log interface{ Error(string, ...any) }) bool {
	err := s.store.RecordTick(ctx, t)
	if err != nil {
		if slipway.ErrorCode(err) != slipway.ECONFLICT {
			log.Error("scheduler: record tick", "error", err)
		}
		return false
	}
	return true
}

// jobTarget starts job runs.
type jobTarget struct{ s *Service }

func (t jobTarget) Validate(ctx context.Context, sch *slipway.Schedule) error {
	if _, err := t.s.store.FindJob(ctx, sch.Target.Name); err != nil {
		return err
	}
	if len(sch.Params) > 0 {
		return slipway.Errorf(slipway.EINVALID, "params are for pipeline targets; a job takes args and env")
	}
	return validateRunInput(sch.Args, sch.Env)
}

func (t jobTarget) Start(ctx context.Context, sch *slipway.Schedule, trigger string) (string, error) {
	r, err := t.s.RunJob(ctx, sch.Target.Name, RunInput{Args: sch.Args, Env: sch.Env}, trigger)
	if err != nil {
		return "", err
	}
	return r.ID, nil
}

func (t jobTarget) Active(ctx context.Context, id string) (bool, error) {
	r, err := t.s.store.FindJobRun(ctx, id)
	if err != nil {
		return false, err
	}
	return !r.State.Terminal(), nil
}

func (t jobTarget) Cancel(ctx context.Context, id, by string) error {
	_, err := t.s.CancelRun(ctx, id, by)
	return err
}

// pipelineTarget starts pipeline runs.
type pipelineTarget struct{ s *Service }

func (t pipelineTarget) Validate(ctx context.Context, sch *slipway.Schedule) error {
	p, err := t.s.store.FindPipeline(ctx, sch.Target.Name)
	if err != nil {
		return err
	}
	if len(sch.Args) > 0 || len(sch.Env) > 0 {
		return slipway.Errorf(slipway.EINVALID, "args and env are for job targets; a pipeline takes params")
	}
	_, err = ResolveParams(&p.Spec, sch.Params)
	return err
}

func (t pipelineTarget) Start(ctx context.Context, sch *slipway.Schedule, trigger string) (string, error) {
	r, err := t.s.RunPipeline(ctx, sch.Target.Name, sch.Params, trigger, trigger)
	if err != nil {
		return "", err
	}
	return r.ID, nil
}

func (t pipelineTarget) Active(ctx context.Context, id string) (bool, error) {
	r, err := t.s.store.FindPipelineRun(ctx, id)
	if err != nil {
		return false, err
	}
	return !r.State.Terminal(), nil
}

func (t pipelineTarget) Cancel(ctx context.Context, id, by string) error {
	_, err := t.s.CancelPipelineRun(ctx, id, by)
	return err
}
