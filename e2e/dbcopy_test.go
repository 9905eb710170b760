package e2e

import (
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the test reads PostgreSQL itself, independently of the store
	_ "modernc.org/sqlite"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/client"
	"github.com/slipway-ml/slipway/internal/slipwaytest"
)

// An installation that grew on one machine (SQLite) moves to PostgreSQL with `slipway db copy`: every row of
// every table arrives, and a server on the new database, with the same artifact folder, serves the same
// deployment with the same answers and knows its job runs, captures and metrics.
func TestDBCopySQLiteToPostgres(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	s := startServer(t, dataDir)
	pushExamples(t, s)
	deploy(t, s, "churn", "--model", "churn@champion")
	var answer []byte
	for i := range 5 {
		resp, body := invokeChurn(t, s, "churn", 3)
		if resp.StatusCode != 200 {
			t.Fatalf("invoke: %d %s", resp.StatusCode, body)
		}
		if i == 0 {
			answer = body
		}
	}
	c := s.Client()
	if _, err := c.CreateJob(ctxFor(t, time.Minute), slipway.JobSpec{Name: "hello"}, strings.NewReader("print('hello')\n"), "hello.py"); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := s.cli("jobs", "run", "hello", "--wait"); code != 0 {
		t.Fatalf("jobs run: %s %s", out, errOut)
	}
	from := "sqlite://" + filepath.Join(dataDir, "slipway.db")
	pg := slipwaytest.StartPostgres(t)
	dsn := pg.CreateDatabase(t, "slipway")

	// While a server runs on the folder, the copy is refused: the source would change under it.
	if out, code := dbCopy(t, "--from", from, "--to", dsn); code == 0 || !strings.Contains(out, "in use by another slipway server") {
		t.Fatalf("db copy from a running server's folder: exit %d\n%s", code, out)
	}
	s.Stop() // flushes the captures, logs and minute points still in memory

	out, code := dbCopy(t, "--from", from, "--to", dsn)
	if code != 0 {
		t.Fatalf("db copy: exit %d\n%s", code, out)
	}
	copied := copiedRows(t, out)
	for _, table := range []string{"models", "model_versions", "deployments", "tokens", "jobs", "job_runs",
		"captures", "logs", "metric_points"} {
		if copied[table] == 0 {
			t.Errorf("table %s: no rows copied\n%s", table, out)
		}
	}
	if !strings.Contains(out, "Artifacts are not in the database") {
		t.Errorf("the report does not say the artifacts stay where they are:\n%s", out)
	}

	// Every table's rows, read independently of the copy's own check.
	meta := openSQL(t, "sqlite", filepath.Join(dataDir, "slipway.db"))
	mon := openSQL(t, "sqlite", filepath.Join(dataDir, "monitor.db"))
	target := openSQL(t, "pgx", dsn)
	for table, n := range copied {
		src := meta
		if hasTable(t, mon, table) { // the monitoring data's tables live in monitor.db on SQLite
			src = mon
		}
		want, got := allRows(t, src, table), allRows(t, target, table)
		if int64(len(want)) != n || !slices.Equal(want, got) {
			t.Errorf("table %s: source %d rows, reported %d, target %d; equal: %v", table, len(want), n, len(got), slices.Equal(want, got))
		}
	}

	// A second copy into the now populated database is refused, and changes nothing.
	if out, code := dbCopy(t, "--from", from, "--to", dsn); code == 0 || !strings.Contains(out, "already holds Slipway state") {
		t.Fatalf("db copy into a non-empty database: exit %d\n%s", code, out)
	}

	// The same folder (its artifacts), the new database: the same deployment answers the same request alike.
	r := startServer(t, dataDir, "--database", dsn)
	rc := r.Client()
	waitFor(t, "the deployment restored from PostgreSQL", 2*time.Minute, func() bool {
		d, err := rc.GetDeployment(ctxFor(t, time.Minute), "churn")
		return err == nil && d.State == slipway.DeploymentActive
	})
	resp, body := invokeChurn(t, r, "churn", 3)
	if resp.StatusCode != 200 || !sameMLflowPredictions(t, answer, body) {
		t.Fatalf("after the move: %d %s; before: %s", resp.StatusCode, body, answer)
	}
	runs, _, err := rc.ListJobRuns(ctxFor(t, time.Minute), client.JobRunFilter{Job: "hello"})
	if err != nil || len(runs) != 1 || runs[0].State != slipway.RunSucceeded {
		t.Fatalf("job runs after the move: %+v, %v", runs, err)
	}
	// New rows get new ids: the identity counters moved past the copied ones.
	if out, errOut, code := r.cli("jobs", "run", "hello", "--wait"); code != 0 {
		t.Fatalf("a job run on the new database: %s %s", out, errOut)
	}
}

func TestDBCopyErrors(t *testing.T) {
	t.Parallel()
	empty := filepath.Join(t.TempDir(), "slipway.db")
	if err := os.WriteFile(empty, nil, 0o600); err != nil { // an empty file is an empty SQLite database
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown scheme", []string{"--from", "mysql://db/x", "--to", "sqlite:///tmp/x/slipway.db"}, `--from: unsupported URL scheme "mysql"`},
		{"relative sqlite path", []string{"--from", "sqlite://slipway.db", "--to", "postgres://127.0.0.1:1/x"}, "want sqlite:///absolute/path"},
		{"missing source", []string{"--from", "sqlite://" + filepath.Join(t.TempDir(), "none", "slipway.db"), "--to", "sqlite://" + filepath.Join(t.TempDir(), "slipway.db")}, "no Slipway database there"},
		{"unreachable target", []string{"--from", "sqlite://" + empty, "--to", "postgres://u:hunter2@127.0.0.1:1/x?connect_timeout=2"}, "open the target"},
		{"missing flag", []string{"--from", "sqlite:///tmp/x.db"}, `required flag(s) "to" not set`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, code := dbCopy(t, tt.args...)
			if code == 0 || !strings.Contains(out, tt.want) || strings.Contains(out, "hunter2") {
				t.Fatalf("db copy %v: exit %d, want an error containing %q (and no password):\n%s", tt.args, code, tt.want, out)
			}
		})
	}
}

// dbCopy runs `slipway db copy ARGS` and returns its combined output and exit code.
func dbCopy(t *testing.T, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary, append([]string{"db", "copy"}, args...)...).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), 0
}

var copyRowRE = regexp.MustCompile(`(?m)^(metadata|monitoring)\s+(\w+)\s+(\d+)\s+[0-9a-f]{16}\s+yes$`)

// copiedRows reads the rows per table from the report's table; every table must be verified.
func copiedRows(t *testing.T, out string) map[string]int64 {
	t.Helper()
	rows := map[string]int64{}
	for _, m := range copyRowRE.FindAllStringSubmatch(out, -1) {
		rows[m[2]], _ = strconv.ParseInt(m[3], 10, 64)
	}
	if len(rows) < 20 || !strings.Contains(out, "Copied and verified") {
		t.Fatalf("the report lists %d verified tables:\n%s", len(rows), out)
	}
	return rows
}

func openSQL(t *testing.T, driver, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// allRows returns every row of table as text, sorted: bytes in hex, numbers and text as they read.
func allRows(t *testing.T, db *sql.DB, table string) []string {
	t.Helper()
	rows, err := db.Query(`SELECT * FROM "` + table + `"`)
	if err != nil {
		t.Fatalf("read %s: %v", table, err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var out []string
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for i, v := range vals {
			if b2, ok := v.([]byte); ok {
				v = hex.EncodeToString(b2)
			}
			fmt.Fprintf(&b, "%s=%v|", cols[i], v)
		}
		out = append(out, b.String())
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// sameMLflowPredictions compares the predictions of two MLflow answers (their other fields may differ).
func sameMLflowPredictions(t *testing.T, a, b []byte) bool {
	t.Helper()
	var pa, pb struct {
		Predictions json.RawMessage `json:"predictions"`
	}
	if json.Unmarshal(a, &pa) != nil || json.Unmarshal(b, &pb) != nil || len(pa.Predictions) == 0 {
		t.Fatalf("not MLflow answers: %s / %s", a, b)
	}
	return string(pa.Predictions) == string(pb.Predictions)
}

// hasTable reports whether the SQLite database db has a table named name.
func hasTable(t *testing.T, db *sql.DB, name string) bool {
	t.Helper()
	var n int
	if err := db.QueryRow(`SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?`, name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n > 0
}
