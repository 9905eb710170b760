package jobs

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/executor"
	"github.com/slipway-ml/slipway/internal/sqlstore"
)

// The test binary doubles as the exec-limited shim: the executor re-executes it with this first argument.
const shimArg = "exec-limited-helper"

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == shimArg {
		if err := executor.ExecLimited(os.Args[2:]); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(127)
		}
	}
	os.Exit(m.Run())
}

type env struct {
	s  *Service
	db *sqlstore.DB
}

func newEnv(t *testing.T, mods ...func(*Config)) *env {
	t.Helper()
	ctx := context.Background()
	db := openDB(t, t.TempDir())
	cfg := Config{Store: db, Tokens: db, Models: db, Executor: executor.NewLocal([]string{os.Args[0], shimArg}),
		Dir: t.TempDir(), URL: "http://127.0.0.1:9", StopGrace: 500 * time.Millisecond,
		NewToken: func() (string, string) { id := newID("secret"); return id, "hash-" + id }}
	for _, m := range mods {
		m(&cfg)
	}
	s, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() }) // before the database closes (cleanups run last first)
	return &env{s: s, db: db}
}

// openDB opens a SQLite store in dir, closed when the test ends.
func openDB(t *testing.T, dir string) *sqlstore.DB {
	t.Helper()
	db, err := sqlstore.OpenSQLite(context.Background(), filepath.Join(dir, "slipway.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// createJob stores a job whose artifact is one file with body.
func (e *env) createJob(t *testing.T, name, file, body string, spec slipway.JobSpec) *slipway.Job {
	t.Helper()
	p := filepath.Join(t.TempDir(), file)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	spec.Name = name
	j, err := e.s.CreateJob(context.Background(), spec, Upload{Path: p, Filename: file}, "test")
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func (e *env) run(t *testing.T, job string, in RunInput) *slipway.JobRun {
	t.Helper()
	r, err := e.s.RunJob(context.Background(), job, in, "test")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// wait blocks until the run is over (the test's own deadline bounds it).
func (e *env) wait(t *testing.T, id string) *slipway.JobRun {
	t.Helper()
	r, err := e.s.WaitRun(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if !r.State.Terminal() {
		t.Fatalf("run %s still %s", id, r.State)
	}
	return r
}

func (e *env) logs(t *testing.T, id string) string {
	var b strings.Builder
	if err := e.s.WriteLogs(context.Background(), id, 0, &b, false, nil); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestJobRunEnvironmentOutputsAndLogs(t *testing.T) {
	t.Setenv("SERVER_SECRET", "must-not-leak")
	e := newEnv(t)
	e.createJob(t, "hello", "hello.sh", `
echo "run=$SLIPWAY_RUN_ID url=$SLIPWAY_URL job=$SLIPWAY_JOB greeting=$GREETING arg=$1"
echo "secret=${SERVER_SECRET:-absent} token=${SLIPWAY_TOKEN:+set}"
echo oops >&2
echo '{"answer": 42}' > "$SLIPWAY_OUTPUT_DIR/outputs.json"
echo data > "$SLIPWAY_OUTPUT_DIR/model.txt"
`, slipway.JobSpec{Args: []string{"default"}, Env: map[string]string{"GREETING": "hi"}})
	r := e.wait(t, e.run(t, "hello", RunInput{Args: []string{"given"}}).ID)
	if r.State != slipway.RunSucceeded || r.ExitCode == nil || *r.ExitCode != 0 {
		t.Fatalf("run = %s exit %v reason %q\n%s", r.State, r.ExitCode, r.Reason, e.logs(t, r.ID))
	}
	if r.Outputs["answer"] != 42.0 {
		t.Errorf("outputs = %v", r.Outputs)
	}
	log := e.logs(t, r.ID)
	for _, want := range []string{"stdout run=" + r.ID + " url=http://127.0.0.1:9 job=hello greeting=hi arg=given",
		"stdout secret=absent token=set", "stderr oops", "slipway run succeeded"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	files, err := e.s.Outputs(context.Background(), r.ID)
	if err != nil || len(files) != 2 || files[0].Path != "model.txt" {
		t.Errorf("outputs = %+v, %v", files, err)
	}
	tok, err := e.db.FindTokens(context.Background())
	if err != nil || len(tok) != 1 || tok[0].RevokedAt == nil || tok[0].Role != "" || tok[0].Projects[slipway.DefaultProject] != slipway.RoleEditor || len(tok[0].Projects) != 1 {
		t.Errorf("the run's token must be an editor token of the run's project only, revoked at the end: %+v %v", tok, err)
	}
}

func TestJobRunFailures(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		name, body string
		spec       slipway.JobSpec
		want       string
	}{
		{"exit-code", "echo starting\necho 'ValueError: bad input' >&2\nexit 3", slipway.JobSpec{}, "exit status 3: ValueError: bad input"},
		{"timeout", "sleep 30", slipway.JobSpec{MaxRuntimeSeconds: 1}, "exceeded max runtime 1s"},
		{"cpu-limit", "while :; do :; done", slipway.JobSpec{Limits: slipway.JobLimits{CPUSeconds: 1}}, "exceeded its CPU time limit of 1s"},
		{"open-files", "exec 3</dev/null 4</dev/null 5</dev/null 6</dev/null 7</dev/null 8</dev/null 9</dev/null\nfor i in $(seq 10 40); do eval \"exec $i</dev/null\" || exit 9; done",
			slipway.JobSpec{Limits: slipway.JobLimits{OpenFiles: 16}}, "exit status"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e.createJob(t, tc.name, "job.sh", tc.body, tc.spec)
			r := e.wait(t, e.run(t, tc.name, RunInput{}).ID)
			if r.State != slipway.RunFailed || !strings.Contains(r.Reason, tc.want) {
				t.Errorf("run = %s %q, want FAILED with %q\n%s", r.State, r.Reason, tc.want, e.logs(t, r.ID))
			}
		})
	}
}

func TestCreateJobRefusesBadInput(t *testing.T) {
	e := newEnv(t)
	p := filepath.Join(t.TempDir(), "train.py")
	os.WriteFile(p, []byte("print(1)"), 0o644)
	cases := []struct {
		name string
		spec slipway.JobSpec
		want string
	}{
		{"missing entrypoint", slipway.JobSpec{Name: "a", Entrypoint: "main.py"}, `entrypoint "main.py" is not in the artifact`},
		{"unknown kind", slipway.JobSpec{Name: "b", Entrypoint: "train.rb"}, "use a .py"},
		{"reserved env", slipway.JobSpec{Name: "c", Env: map[string]string{"SLIPWAY_TOKEN": "x"}}, "reserved"},
		{"bad name", slipway.JobSpec{Name: "Bad Name"}, "invalid job name"},
		{"runtime", slipway.JobSpec{Name: "d", MaxRuntimeSeconds: -1}, "max_runtime_seconds"},
		{"java class", slipway.JobSpec{Name: "e", Entrypoint: "com.example.Main"}, "no file com/example/Main.class"},
		{"empty artifact name", slipway.JobSpec{Name: "f", Entrypoint: "../train.py"}, "is not in the artifact"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.s.CreateJob(context.Background(), tc.spec, Upload{Path: p, Filename: "train.py"}, "test")
			if slipway.ErrorCode(err) != slipway.EINVALID || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want EINVALID with %q", err, tc.want)
			}
		})
	}
}

func pidAlive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return f[0] != "Z"
}

func TestCancelKillsTheProcessTree(t *testing.T) {
	e := newEnv(t)
	e.createJob(t, "tree", "tree.sh", `sh -c 'sleep 300' &
echo $! > "$SLIPWAY_OUTPUT_DIR/grandchild.pid"
echo started
wait`, slipway.JobSpec{})
	r := e.run(t, "tree", RunInput{})
	var pid int
	for pid == 0 {
		ch := e.s.Changed()
		if b, err := os.ReadFile(filepath.Join(e.s.outputDir(r.ID), "grandchild.pid")); err == nil && strings.HasSuffix(string(b), "\n") {
			pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
			break
		}
		select {
		case <-ch:
		case <-time.After(50 * time.Millisecond):
		}
	}
	c, err := e.s.CancelRun(context.Background(), r.ID, "tester")
	if err != nil {
		t.Fatal(err)
	}
	if c.State != slipway.RunCanceled || c.Reason != "canceled by tester" {
		t.Errorf("canceled run = %s %q", c.State, c.Reason)
	}
	// SIGKILL is delivered asynchronously: kill(2) returns before the grandchild is gone, so give it a moment.
	for deadline := time.Now().Add(10 * time.Second); pidAlive(pid) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if pidAlive(pid) {
		t.Errorf("grandchild %d survived the cancel by 10 s", pid)
	}
	if _, err := e.s.CancelRun(context.Background(), r.ID, "tester"); slipway.ErrorCode(err) != slipway.ECONFLICT {
		t.Errorf("second cancel: %v, want ECONFLICT", err)
	}
}

func TestQueueRespectsConcurrencyLimit(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxConcurrentRuns = 1 })
	e.createJob(t, "slow", "slow.sh", "sleep 30", slipway.JobSpec{})
	first := e.run(t, "slow", RunInput{})
	second := e.run(t, "slow", RunInput{})
	for {
		ch := e.s.Changed()
		r, _ := e.s.GetRun(context.Background(), first.ID)
		if r.State == slipway.RunInProgress {
			break
		}
		<-ch
	}
	if r, _ := e.s.GetRun(context.Background(), second.ID); r.State != slipway.RunAccepted {
		t.Fatalf("second run = %s, want ACCEPTED while the only slot is taken", r.State)
	}
	if c, err := e.s.CancelRun(context.Background(), second.ID, "t"); err != nil || c.State != slipway.RunCanceled {
		t.Fatalf("cancel queued run: %v %v", c, err)
	}
	e.s.CancelRun(context.Background(), first.ID, "t")
}

func TestRecoverFailsOrphanedRunsAndKillsTheirGroup(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := openDB(t, dir)
	// A process left behind by a "crashed" server: its own group, recorded on an IN_PROGRESS run.
	cmd := exec.Command("sleep", "300")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go cmd.Wait()
	h := executor.Handle{PID: cmd.Process.Pid}
	for h.ProcStart == 0 {
		h.ProcStart = procStartOf(h.PID)
	}
	r := &slipway.JobRun{ID: "jr-orphan", State: slipway.RunInProgress, Spec: slipway.RunSpec{Kind: slipway.EntryShell}, PID: h.PID, ProcStart: h.ProcStart}
	if err := db.CreateJobRun(ctx, r); err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, Config{Store: db, Executor: executor.NewLocal(nil), Dir: filepath.Join(dir, "jobs"), URL: "http://x"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, _ := db.FindJobRun(ctx, r.ID)
	if got.State != slipway.RunFailed || !strings.Contains(got.Reason, "server restarted") {
		t.Errorf("orphan = %s %q", got.State, got.Reason)
	}
	if executor.Alive(h) {
		t.Errorf("the orphan's process %d is still alive", h.PID)
	}
}

func procStartOf(pid int) uint64 {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	n, _ := strconv.ParseUint(f[19], 10, 64)
	return n
}
