package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/client"
	"github.com/slipway-ml/slipway/internal/slipwaytest"
)

// With --database postgres://..., all of the state is in PostgreSQL: no SQLite file appears in the data folder,
// and a restarted server restores its deployment and still has the metrics and logs of the requests it served.
// The backup, SQLite's VACUUM INTO, answers that pg_dump is the tool.
func TestPostgresHoldsAllState(t *testing.T) {
	t.Parallel()
	pg := slipwaytest.StartPostgres(t)
	dsn := pg.CreateDatabase(t, "slipway")
	dataDir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	s := startServer(t, dataDir, "--database", dsn)
	pushExamples(t, s)
	deploy(t, s, "churn", "--model", "churn@champion")
	const served = 5
	for range served {
		if resp, body := invokeChurn(t, s, "churn", 3); resp.StatusCode != 200 {
			t.Fatalf("invoke: %d %s", resp.StatusCode, body)
		}
	}
	resp, body := s.do(t, "GET", "/api/v1/backup", s.Token, nil, "")
	if resp.StatusCode != 400 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") || !strings.Contains(string(body), "pg_dump") {
		t.Fatalf("backup on PostgreSQL: %d %s %s; want a 400 problem that names pg_dump", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	s.Stop()
	for _, f := range []string{"slipway.db", "monitor.db"} {
		if _, err := os.Stat(filepath.Join(dataDir, f)); !os.IsNotExist(err) {
			t.Errorf("%s in the data folder (%v): the state belongs in PostgreSQL", f, err)
		}
	}
	if got := pg.Psql(t, "slipway", "SELECT name || ' ' || state FROM deployments"); got != "churn ACTIVE" {
		t.Fatalf("deployments in PostgreSQL: %q", got)
	}

	r := startServer(t, dataDir, "--database", dsn)
	c := r.Client()
	waitFor(t, "the deployment restored", 2*time.Minute, func() bool {
		d, err := c.GetDeployment(ctx, "churn")
		return err == nil && d.State == slipway.DeploymentActive
	})
	m, err := c.Metrics(ctx, "churn", client.TimeRange{From: time.Now().Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	var reqs int64
	for _, p := range m.Points {
		reqs += p.Requests
	}
	if m.Current != nil {
		reqs += m.Current.Requests
	}
	if reqs != served { // read before this server serves: its own minute would hide a stored one until flushed
		t.Errorf("metrics after the restart count %d requests, want %d", reqs, served)
	}
	if resp, body := invokeChurn(t, r, "churn", 3); resp.StatusCode != 200 {
		t.Fatalf("invoke after the restart: %d %s", resp.StatusCode, body)
	}
	// The access log's writes are batched: the last line may take a moment.
	waitFor(t, "an access line per request across the restart", 30*time.Second, func() bool {
		logs, err := c.Logs(ctx, "churn", client.LogQuery{Kind: "access", Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		return len(logs.Items) == served+1
	})
	if _, total, err := c.ListModels(ctx, client.ListModelsOptions{}); err != nil || total != 2 {
		t.Fatalf("models after the restart: %d, %v; want 2", total, err)
	}
}
