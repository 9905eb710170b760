package jobs

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
)

func TestDecide(t *testing.T) {
	every := func(d time.Duration) func(time.Time) time.Time {
		return func(t time.Time) time.Time { return t.Truncate(d).Add(d) }
	}
	base := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	cases := []struct {
		name     string
		last     time.Time
		now      time.Time
		catchUp  bool
		due      bool
		at       time.Time
		run      bool
		missed   int
		reasonIn string
	}{
		{"nothing due yet", base, base.Add(30 * time.Second), true, false, time.Time{}, false, 0, ""},
		{"on time", base, base.Add(time.Minute + 200*time.Millisecond), true, true, base.Add(time.Minute), true, 0, ""},
		{"exactly at the tick", base, base.Add(time.Minute), false, true, base.Add(time.Minute), true, 0, ""},
		{"back right at a tick: on time, older ones dropped", base, base.Add(time.Hour + 30*time.Minute + 10*time.Second), true, true, base.Add(90 * time.Minute), true, 89, "89 earlier missed"},
		{"down across many ticks: latest only", base, base.Add(5*time.Minute + 5*time.Minute), true, true, base.Add(10 * time.Minute), true, 9, "9 earlier missed"},
		{"late without catch-up: skipped", base, base.Add(3*time.Minute + 2*time.Minute), false, true, base.Add(5 * time.Minute), true, 4, ""},
		{"late by more than a minute", base, base.Add(time.Minute + 2*time.Minute), false, true, base.Add(3 * time.Minute), true, 2, ""},
		{"late tick, no catch-up", base, base.Add(time.Minute).Add(90 * time.Second), false, true, base.Add(2 * time.Minute), true, 1, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, due := decide(every(time.Minute), tc.last, tc.now, tc.catchUp)
			if due != tc.due {
				t.Fatalf("due = %v, want %v", due, tc.due)
			}
			if !due {
				return
			}
			if !d.At.Equal(tc.at) || d.Missed != tc.missed || !strings.Contains(d.Reason, tc.reasonIn) {
				t.Errorf("decision = %+v, want at %v missed %d reason ⊇ %q", d, tc.at, tc.missed, tc.reasonIn)
			}
		})
	}
	// Late ticks run only as the catch-up.
	d, _ := decide(every(time.Hour), base, base.Add(time.Hour+30*time.Minute), false)
	if d.Run || !d.Late {
		t.Errorf("late without catch-up: %+v, want skipped", d)
	}
	d, _ = decide(every(time.Hour), base, base.Add(3*time.Hour+30*time.Minute), true)
	if !d.Run || !d.Late || !strings.Contains(d.Reason, "catch-up") {
		t.Errorf("late with catch-up: %+v, want one catch-up run", d)
	}
}

func TestPolicyAction(t *testing.T) {
	cases := []struct {
		policy string
		active bool
		want   string
	}{
		{slipway.PolicyAllow, false, TickStarted}, {slipway.PolicyAllow, true, TickStarted},
		{slipway.PolicyForbid, false, TickStarted}, {slipway.PolicyForbid, true, TickSkipped},
		{slipway.PolicyReplace, false, TickStarted}, {slipway.PolicyReplace, true, TickReplaced},
	}
	for _, tc := range cases {
		if got := policyAction(tc.policy, tc.active); got != tc.want {
			t.Errorf("policyAction(%s, active=%v) = %s, want %s", tc.policy, tc.active, got, tc.want)
		}
	}
}

// fakeTarget records starts and cancels; runs stay active until finished.
type fakeTarget struct {
	mu       sync.Mutex
	projects []string // the project of each start's context ("" for none)
	started  []string
	canceled []string
	active   map[string]bool
}

func (f *fakeTarget) Validate(context.Context, *slipway.Schedule) error { return nil }
func (f *fakeTarget) Start(ctx context.Context, sch *slipway.Schedule, trigger string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, _ := slipway.ProjectFromContext(ctx)
	f.projects = append(f.projects, p)
	id := "run-" + string(rune('a'+len(f.started)))
	f.started = append(f.started, id)
	f.active[id] = true
	return id, nil
}
func (f *fakeTarget) Active(_ context.Context, id string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.active[id], nil
}
func (f *fakeTarget) Cancel(_ context.Context, id, by string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.canceled = append(f.canceled, id)
	f.active[id] = false
	return nil
}

// fakeClock is a settable clock shared with the service's goroutines.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return c.t
}

// TestSchedulerPolicies drives scheduleDue with a fake clock: no sleeping, the store is real.
func TestSchedulerPolicies(t *testing.T) {
	start := time.Date(2026, 3, 1, 10, 0, 30, 0, time.UTC)
	for _, policy := range []string{slipway.PolicyForbid, slipway.PolicyAllow, slipway.PolicyReplace} {
		t.Run(policy, func(t *testing.T) {
			clock := &fakeClock{t: start}
			e := newEnv(t, func(c *Config) { c.Now, c.NoScheduleLoop = clock.Now, true })
			ft := &fakeTarget{active: map[string]bool{}}
			e.s.RegisterTarget("fake", ft)
			sch := &slipway.Schedule{Name: "every-minute", Cron: "* * * * *", ConcurrencyPolicy: policy}
			sch.Target.Kind, sch.Target.Name = "fake", "thing"
			ctx := context.Background()
			if _, err := e.s.CreateSchedule(ctx, sch, "test"); err != nil {
				t.Fatal(err)
			}
			step := func(d time.Duration) { e.s.scheduleDue(ctx, clock.Add(d)) }
			step(40 * time.Second) // 10:01:10: first tick starts run-a
			step(0)                // the same moment again: the tick is already decided
			step(time.Minute)      // 10:02:10: run-a still going
			ft.mu.Lock()
			clear(ft.active) // every run is over
			ft.mu.Unlock()
			step(time.Minute) // 10:03:10: previous run over → starts
			ticks, err := e.db.FindTicks(ctx, "every-minute", 10)
			if err != nil {
				t.Fatal(err)
			}
			var actions []string
			for i := len(ticks) - 1; i >= 0; i-- {
				actions = append(actions, ticks[i].Action)
			}
			want := map[string]string{
				slipway.PolicyForbid:  "started skipped started",
				slipway.PolicyAllow:   "started started started",
				slipway.PolicyReplace: "started replaced started",
			}[policy]
			if got := strings.Join(actions, " "); got != want {
				t.Errorf("tick actions = %q, want %q", got, want)
			}
			if policy == slipway.PolicyReplace && (len(ft.canceled) != 1 || ft.canceled[0] != "run-a") {
				t.Errorf("replace canceled %v, want [run-a]", ft.canceled)
			}
			if policy == slipway.PolicyForbid && len(ft.started) != 2 {
				t.Errorf("forbid started %v, want 2 runs", ft.started)
			}
		})
	}
}

func TestSchedulerCatchUpAfterDowntime(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 3, 1, 10, 0, 30, 0, time.UTC)}
	e := newEnv(t, func(c *Config) { c.Now, c.NoScheduleLoop = clock.Now, true })
	ft := &fakeTarget{active: map[string]bool{}}
	e.s.RegisterTarget("fake", ft)
	ctx := context.Background()
	for _, catchUp := range []bool{true, false} {
		sch := &slipway.Schedule{Name: "hourly-" + map[bool]string{true: "catch", false: "skip"}[catchUp], Cron: "0 * * * *", CatchUp: ptr(catchUp)}
		sch.Target.Kind, sch.Target.Name = "fake", "x"
		if _, err := e.s.CreateSchedule(ctx, sch, "t"); err != nil {
			t.Fatal(err)
		}
	}
	now := clock.Add(5*time.Hour + 20*time.Minute) // down from 10:00 to 15:20: five ticks missed
	e.s.scheduleDue(ctx, now)
	e.s.scheduleDue(ctx, clock.Add(time.Second))
	if len(ft.started) != 1 {
		t.Errorf("started %v, want exactly one catch-up run", ft.started)
	}
	for name, want := range map[string]string{"hourly-catch": TickStarted, "hourly-skip": TickSkipped} {
		ticks, _ := e.db.FindTicks(ctx, name, 10)
		if len(ticks) != 1 || ticks[0].Action != want || !ticks[0].At.Equal(time.Date(2026, 3, 1, 15, 0, 0, 0, time.UTC)) {
			t.Errorf("%s ticks = %+v, want one %s at 15:00", name, ticks, want)
		} else if !strings.Contains(ticks[0].Reason, "4 earlier missed ticks dropped") {
			t.Errorf("%s reason = %q", name, ticks[0].Reason)
		}
	}
}

// A tick starts its run in the schedule's project: a batch prediction a schedule starts is that project's.
func TestScheduleStartsInItsProject(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 3, 1, 10, 0, 30, 0, time.UTC)}
	e := newEnv(t, func(c *Config) { c.Now, c.NoScheduleLoop = clock.Now, true })
	ft := &fakeTarget{active: map[string]bool{}}
	e.s.RegisterTarget("fake", ft)
	if err := e.db.CreateProject(context.Background(), &slipway.Project{Name: "risk"}); err != nil {
		t.Fatal(err)
	}
	sch := &slipway.Schedule{Name: "nightly", Cron: "* * * * *"}
	sch.Target.Kind, sch.Target.Name = "fake", "x"
	if _, err := e.s.CreateSchedule(slipway.WithProject(context.Background(), "risk"), sch, "t"); err != nil {
		t.Fatal(err)
	}
	e.s.scheduleDue(context.Background(), clock.Add(time.Minute))
	if len(ft.projects) != 1 || ft.projects[0] != "risk" {
		t.Fatalf("the tick started in projects %q, want [risk]", ft.projects)
	}
}

func TestCreateScheduleValidation(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		name string
		sch  slipway.Schedule
		want string
	}{
		{"bad cron", slipway.Schedule{Name: "a", Cron: "every day"}, "invalid cron"},
		{"bad zone", slipway.Schedule{Name: "a", Cron: "@daily", Timezone: "Mars/Base"}, "unknown timezone"},
		{"bad policy", slipway.Schedule{Name: "a", Cron: "@daily", ConcurrencyPolicy: "queue"}, "concurrency_policy"},
		{"unknown kind", slipway.Schedule{Name: "a", Cron: "@daily"}, "unknown target kind"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.sch.Target.Kind == "" && tc.name != "unknown kind" {
				tc.sch.Target.Kind = slipway.TargetJob
			}
			_, err := e.s.CreateSchedule(context.Background(), &tc.sch, "t")
			if slipway.ErrorCode(err) != slipway.EINVALID || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want EINVALID with %q", err, tc.want)
			}
		})
	}
	sch := slipway.Schedule{Name: "a", Cron: "@daily"}
	sch.Target.Kind, sch.Target.Name = slipway.TargetJob, "ghost"
	if _, err := e.s.CreateSchedule(context.Background(), &sch, "t"); slipway.ErrorCode(err) != slipway.ENOTFOUND {
		t.Errorf("unknown job: %v, want ENOTFOUND", err)
	}
}
