package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/client"
	"github.com/slipway-ml/slipway/internal/slipwaytest"
)

// Several servers on one installation: one PostgreSQL database and one bucket, each server with its own data
// folder. These tests are not parallel: the bucket's credentials are in the environment.

// clusterMember starts a server on the shared database and bucket. The first server of an installation creates

// twoClusterMembers starts PostgreSQL, a versitygw bucket and two servers of one installation on them (B joins
// with A's admin token), and returns the servers and the database (for the tests that read it).
func twoClusterMembers(t *testing.T) (a, b *server, pg *slipwaytest.Postgres) {
	t.Helper()
	slipwaytest.UseS3Credentials(t)
	bucket := slipwaytest.StartS3(t, "slipway")
	store := "s3://slipway/prod?endpoint=" + bucket.URL
	pg = slipwaytest.StartPostgres(t)
	dsn := pg.CreateDatabase(t, "slipway")
	a = clusterMember(t, "", dsn, store, "")
	b = clusterMember(t, "", dsn, store, a.Token)
	return a, b, pg
}

// the admin token; the others are given it (their data folders start empty).
func clusterMember(t *testing.T, dataDir, dsn, store, token string) *server {
	t.Helper()
	if dataDir == "" {
		dataDir = t.TempDir()
	}
	if token != "" {
		if err := os.WriteFile(filepath.Join(dataDir, "admin.token"), []byte(token+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return startServer(t, dataDir, "--database", dsn, "--artifact-store", store, "--grpc-addr", "127.0.0.1:0")
}

// leaseHolder reads who holds a deployment's lease, straight from PostgreSQL.
func leaseHolder(t *testing.T, pg *slipwaytest.Postgres, deployment string) string {
	t.Helper()
	return pg.Psql(t, "slipway", "SELECT holder FROM leases WHERE name = 'deployment/"+deployment+"' AND expires_ms > CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)")
}

// serverID reads a server's id in the servers table by its advertised URL.
func serverID(t *testing.T, pg *slipwaytest.Postgres, s *server) string {
	t.Helper()
	return pg.Psql(t, "slipway", "SELECT id FROM servers WHERE advertise_url = '"+s.URL+"'")
}

// firstAnswer sends a prediction through s every 100 ms until one is answered 200, and returns when.
func firstAnswer(t *testing.T, s *server, bound time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(bound)
	var last string
	for time.Now().Before(deadline) {
		resp, body := invokeChurn(t, s, "churn", 2)
		if resp.StatusCode == 200 {
			return time.Now()
		}
		last = fmt.Sprintf("%d %s", resp.StatusCode, body)
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no answer through %s within %s; last: %s", s.URL, bound, last)
	return time.Time{}
}

func TestClusterTwoServersShareOneInstallation(t *testing.T) {
	slipwaytest.UseS3Credentials(t)
	bucket := slipwaytest.StartS3(t, "slipway")
	store := "s3://slipway/prod?endpoint=" + bucket.URL
	pg := slipwaytest.StartPostgres(t)
	dsn := pg.CreateDatabase(t, "slipway")
	ctx := ctxFor(t, 10*time.Minute)

	a := clusterMember(t, "", dsn, store, "")
	b := clusterMember(t, "", dsn, store, a.Token)
	if got := pg.Psql(t, "slipway", "SELECT COUNT(*) FROM servers"); got != "2" {
		t.Fatalf("servers table has %s rows, want 2", got)
	}

	// Pushed through A; listed, pulled (digests verified) and deployed through B.
	pushExamples(t, a)
	cb := b.Client()
	if _, total, err := cb.ListModels(ctx, client.ListModelsOptions{}); err != nil || total != 2 {
		t.Fatalf("models through B: %d %v", total, err)
	}
	v, err := cb.GetVersion(ctx, "churn", "1")
	if err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), "pulled")
	if out, errOut, code := b.cli("models", "pull", "churn@champion", dest); code != 0 {
		t.Fatalf("pull through B: %s %s", out, errOut)
	}
	for _, f := range v.Files {
		if got := sha256File(t, filepath.Join(dest, filepath.FromSlash(f.Path))); got != f.SHA256 || got != sha256File(t, examplePath("sklearn-churn", filepath.FromSlash(f.Path))) {
			t.Errorf("%s pulled through B: %s, catalog %s", f.Path, got, f.SHA256)
		}
	}
	deploy(t, b, "churn", "--model", "churn@champion")
	if holder, idB := leaseHolder(t, pg, "churn"), serverID(t, pg, b); holder != idB || idB == "" {
		t.Fatalf("deployment created through B is hosted by %q, want B (%q)", holder, idB)
	}

	// Either server answers: B from its replicas, A by forwarding to B (the same request id comes back).
	for _, s := range []*server{a, b} {
		resp, body := invokeChurn(t, s, "churn", 3)
		if resp.StatusCode != 200 || !strings.Contains(string(body), "predictions") {
			t.Fatalf("invoke through %s: %d %s", s.URL, resp.StatusCode, body)
		}
	}
	req, _ := http.NewRequest("POST", a.URL+"/deployments/churn/invocations", strings.NewReader(string(sampleBody(t))))
	req.Header.Set("Authorization", "Bearer "+a.Token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Request-Id", "cluster-forward-1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Request-Id") != "cluster-forward-1" {
		t.Fatalf("forwarded prediction: %d, request id %q", resp.StatusCode, resp.Header.Values("X-Request-Id"))
	}
	checkClusterGRPC(t, a, b, serverID(t, pg, b), "churn")

	// The replica status comes from the host, whichever server is asked.
	d, err := a.Client().GetDeployment(ctx, "churn")
	if err != nil || d.State != slipway.DeploymentActive || len(d.ReplicaStatus) != 1 {
		t.Fatalf("deployment through A: %+v %v", d, err)
	}

	// kill -9 the host (B) while load runs through A: A takes the lease once it expires and serves again.
	l := startLoad(t, a, "/deployments/churn/invocations", sampleBody(t), 2)
	time.Sleep(500 * time.Millisecond)
	killed := time.Now()
	b.Kill()
	answered := firstAnswer(t, a, 60*time.Second)
	failover := answered.Sub(killed)
	t.Logf("MEASURED kill -9 of the host → first answered request through the survivor: %s", failover.Round(100*time.Millisecond))
	if failover > 30*time.Second {
		t.Errorf("the survivor answered %s after the kill; the issue's bound is 30 s", failover)
	}
	l.finish()
	if holder, idA := leaseHolder(t, pg, "churn"), serverID(t, pg, a); holder != idA {
		t.Fatalf("after the kill the lease is held by %q, want A (%q)", holder, idA)
	}
	// No request is lost once the survivor serves.
	l = startLoad(t, a, "/deployments/churn/invocations", sampleBody(t), 2)
	time.Sleep(2 * time.Second)
	if status, errs := l.finish(); len(status) != 1 || status[200] == 0 {
		t.Fatalf("after the failover: %v %v", status, errs)
	}

	// B restarts on its data folder: it takes nothing back, and serves by forwarding to A.
	idA := serverID(t, pg, a)
	b2 := clusterMember(t, b.dataDir, dsn, store, "")
	time.Sleep(3 * time.Second) // a few ownership looks of the restarted server
	if holder := leaseHolder(t, pg, "churn"); holder != idA {
		t.Fatalf("the restarted server took the deployment: lease held by %q, want A (%q)", holder, idA)
	}
	if resp, body := invokeChurn(t, b2, "churn", 2); resp.StatusCode != 200 {
		t.Fatalf("invoke through the restarted B: %d %s", resp.StatusCode, body)
	}

	// SIGTERM the host (A) under load through B: A hands the deployment over (releases its lease at once) and
	// serves it until B has started it; meanwhile B forwards to A. No request fails.
	l = startLoad(t, b2, "/deployments/churn/invocations", sampleBody(t), 2)
	time.Sleep(500 * time.Millisecond)
	stopped := time.Now()
	a.cmd.Process.Signal(syscall.SIGTERM)
	<-a.exited
	handover := time.Since(stopped)
	if os.Getenv("SLIPWAY_CLUSTER_DEBUG") != "" { // the stopping server's last lines, to see where its exit goes
		lines := strings.Split(a.Log(), "\n")
		t.Logf("A's last lines:\n%s", strings.Join(lines[max(0, len(lines)-30):], "\n"))
	}
	time.Sleep(time.Second) // B serves alone
	status, errs := l.finish()
	t.Logf("MEASURED SIGTERM of the host → it exited, the deployment ACTIVE on the other server: %s; requests through the other server meanwhile: %v",
		handover.Round(100*time.Millisecond), status)
	if len(status) != 1 || status[200] == 0 {
		t.Errorf("requests failed through B while A handed the deployment over: %v %v", status, errs)
	}
	if !strings.Contains(a.Log(), "deployments handed over") {
		t.Errorf("A did not hand its deployment over")
	}
	if holder, idB := leaseHolder(t, pg, "churn"), serverID(t, pg, b2); holder != idB {
		t.Fatalf("after SIGTERM of A the lease is held by %q, want B (%q)", holder, idB)
	}
	if got := pg.Psql(t, "slipway", "SELECT COUNT(*) FROM servers WHERE id = '"+idA+"'"); got != "0" {
		t.Errorf("A is still in the servers table after it stopped (%s rows)", got)
	}
	if !strings.Contains(a.Log(), "left the cluster") {
		t.Errorf("A did not report leaving the cluster:\n%s", a.Log())
	}
}

// A schedule ticking every 2 s on two servers: each tick starts exactly one run.
func TestClusterScheduleTicksOnce(t *testing.T) {
	a, b, pg := twoClusterMembers(t)
	ca := a.Client()
	createShellJob(t, ca, "tick", "echo tick\n", slipway.JobSpec{})
	if _, err := b.Client().CreateSchedule(ctxFor(t, time.Minute), client.ScheduleSpec{Name: "every-2s", Cron: "*/2 * * * * *",
		ConcurrencyPolicy: "allow", Target: struct {
			Kind string `json:"kind"`
			Name string `json:"name"`
		}{"job", "tick"}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Second)
	// The ticks and their runs, read before the schedule (and its ticks with it) is deleted.
	ticks := pg.Psql(t, "slipway", "SELECT COUNT(*) || ' ' || COUNT(DISTINCT run_id) FROM schedule_ticks WHERE schedule = 'every-2s' AND action = 'started'")
	if err := ca.DeleteSchedule(ctxFor(t, time.Minute), "every-2s"); err != nil {
		t.Fatal(err)
	}
	var started, distinct int
	if _, err := fmt.Sscan(ticks, &started, &distinct); err != nil {
		t.Fatalf("ticks %q: %v", ticks, err)
	}
	runs, _, err := ca.ListJobRuns(ctxFor(t, time.Minute), client.JobRunFilter{Job: "tick", Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d ticks started %d distinct runs; the job has %d runs", started, distinct, len(runs))
	if started < 5 {
		t.Fatalf("only %d ticks in 20 s of a 2-second schedule", started)
	}
	// A tick fired by both servers would start two runs for one recorded tick: the runs outnumber the ticks.
	if distinct != started || len(runs) != started {
		t.Fatalf("%d ticks, %d distinct run ids, %d runs: every tick must start exactly one run", started, distinct, len(runs))
	}
	for _, r := range runs {
		if r.CreatedBy != "schedule:every-2s" {
			t.Errorf("run %s created by %q", r.ID, r.CreatedBy)
		}
	}
	// Both servers ran the scheduler: each logged deciding ticks (one of them won each).
	for name, s := range map[string]*server{"A": a, "B": b} {
		if !strings.Contains(s.Log(), "schedule started a run") {
			t.Logf("server %s started no run itself (the other won every tick)", name)
		}
	}
}

// SQLite belongs to one server: --advertise-url is refused with it, and a second server on the same SQLite
// file (another data folder) is refused by the database's lock.
func TestClusterRefusedOnSQLite(t *testing.T) {
	t.Parallel()
	refuse := func(want string, args ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, binary, append([]string{"server", "--addr", "127.0.0.1:0"}, args...)...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), want) {
			t.Fatalf("server %v: %v, want a refusal naming %q:\n%s", args, err, want, out)
		}
	}
	refuse("a SQLite database belongs to one server", "--data-dir", t.TempDir(), "--advertise-url", "http://127.0.0.1:9999")
	db := "sqlite://" + filepath.Join(t.TempDir(), "shared.db")
	first := startServer(t, t.TempDir(), "--database", db)
	refuse("A SQLite database belongs to one server; for several servers use --database postgres://", "--data-dir", t.TempDir(), "--database", db)
	if resp, _ := first.do(t, "GET", "/healthz", "", nil, ""); resp.StatusCode != 200 {
		t.Fatalf("the first server stopped answering: %d", resp.StatusCode)
	}
}
