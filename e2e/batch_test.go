package e2e

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
	"github.com/parquet-go/parquet-go"
	_ "modernc.org/sqlite"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/client"
	"github.com/slipway-ml/slipway/internal/slipwaytest"
)

// churnRecord is one row of examples/data/churn.csv (the Parquet test files use it as their schema).
type churnRecord struct {
	CustomerID     int64   `parquet:"customer_id"`
	Age            float64 `parquet:"age"`
	TenureMonths   float64 `parquet:"tenure_months"`
	MonthlyCharges float64 `parquet:"monthly_charges"`
	Plan           string  `parquet:"plan"`
	SupportCalls   float64 `parquet:"support_calls"`
	Churned        int64   `parquet:"churned"`
}

// readChurn reads the first n rows of the bundled data set, and its first n+1 CSV lines.
func readChurn(t *testing.T, n int) ([]churnRecord, []string) {
	t.Helper()
	b, err := os.ReadFile(examplePath("data", "churn.csv"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")[:n+1]
	recs, err := csv.NewReader(strings.NewReader(strings.Join(lines, "\n"))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	out := make([]churnRecord, n)
	for i, r := range recs[1:] {
		f := func(j int) float64 { v, _ := strconv.ParseFloat(r[j], 64); return v }
		id, _ := strconv.ParseInt(r[0], 10, 64)
		ch, _ := strconv.ParseInt(r[6], 10, 64)
		out[i] = churnRecord{id, f(1), f(2), f(3), r[4], f(5), ch}
	}
	return out, lines
}

func writeParquet(t *testing.T, path string, rows []churnRecord) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := parquet.NewGenericWriter[churnRecord](f)
	if _, err := w.Write(rows); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

type prediction struct {
	Prediction  int64
	Probability float64
}

// realtime scores rows through the deployment's MLflow endpoint: the reference batch results must equal.
func realtime(t *testing.T, s *server, deployment string, rows []churnRecord) map[int64]prediction {
	t.Helper()
	data := make([][]any, len(rows))
	for i, r := range rows {
		data[i] = []any{r.Age, r.TenureMonths, r.MonthlyCharges, r.Plan, r.SupportCalls}
	}
	body := mustJSON(map[string]any{"dataframe_split": map[string]any{
		"columns": []string{"age", "tenure_months", "monthly_charges", "plan", "support_calls"}, "data": data}})
	resp, out := s.do(t, "POST", "/deployments/"+deployment+"/invocations", s.Token, bytes.NewReader(body), "application/json")
	if resp.StatusCode != 200 {
		t.Fatalf("invocations: %d %s", resp.StatusCode, out)
	}
	var ml struct {
		Predictions []struct {
			Prediction  int64   `json:"prediction"`
			Probability float64 `json:"probability"`
		} `json:"predictions"`
	}
	if err := json.Unmarshal(out, &ml); err != nil || len(ml.Predictions) != len(rows) {
		t.Fatalf("invocations answered %d predictions for %d rows (%v)", len(ml.Predictions), len(rows), err)
	}
	want := map[int64]prediction{}
	for i, p := range ml.Predictions {
		want[rows[i].CustomerID] = prediction{p.Prediction, p.Probability}
	}
	return want
}

// tableRows reads customer_id, prediction, probability from an output table.
func tableRows(t *testing.T, driver, dsn, table string) map[int64]prediction {
	t.Helper()
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT customer_id, prediction, probability FROM ` + table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	got := map[int64]prediction{}
	for rows.Next() {
		var id int64
		var p prediction
		if err := rows.Scan(&id, &p.Prediction, &p.Probability); err != nil {
			t.Fatal(err)
		}
		if _, dup := got[id]; dup {
			t.Fatalf("customer %d appears twice in %s", id, table)
		}
		got[id] = p
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return got
}

func samePredictions(t *testing.T, got, want map[int64]prediction) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d rows in the output, want %d", len(got), len(want))
	}
	for id, w := range want {
		g, ok := got[id]
		if !ok || g.Prediction != w.Prediction || !closeTo(g.Probability, w.Probability) {
			t.Fatalf("customer %d: batch %+v, real-time endpoint %+v", id, g, w)
		}
	}
}

func waitBatch(t *testing.T, s *server, id string) *slipway.BatchRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r, err := s.Client().WaitBatchPrediction(ctx, id, nil, 50*time.Millisecond)
	if err != nil {
		t.Fatalf("wait for %s: %v", id, err)
	}
	return r
}

// batchEnv is one server with a SQLite and a PostgreSQL connection and the churn model deployed.
type batchEnv struct {
	s       *server
	pg      *slipwaytest.Postgres
	pgDSN   string
	sqlite  string
	imports string
	args    []string
}

func newBatchEnv(t *testing.T) *batchEnv {
	t.Helper()
	pg := slipwaytest.StartPostgres(t)
	e := &batchEnv{pg: pg, pgDSN: pg.CreateDatabase(t, "warehouse"), sqlite: filepath.Join(t.TempDir(), "warehouse.db"), imports: t.TempDir()}
	// A password the server must never show (trust authentication ignores it).
	withPassword := strings.Replace(e.pgDSN, "postgres@", "postgres:hunter2@", 1)
	e.args = []string{"--import-dir", e.imports, "--connection", "wh=sqlite://" + e.sqlite, "--connection", "pg=" + withPassword}
	e.s = startServer(t, "", e.args...)
	if out, errOut, code := e.s.cli("models", "push", examplePath("sklearn-churn"), "--model", "churn",
		"--metadata", examplePath("sklearn-churn", "metadata.json"), "--alias", "champion"); code != 0 {
		t.Fatalf("push: %s %s", out, errOut)
	}
	return e
}

// CSV and Parquet to SQLite and PostgreSQL: every row once, with the real-time endpoint's predictions.
func TestBatchInputsToTablesMatchRealtime(t *testing.T) {
	t.Parallel()
	e := newBatchEnv(t)
	s := e.s
	rows, lines := readChurn(t, 2000)
	localCSV := filepath.Join(t.TempDir(), "customers.csv")
	os.WriteFile(localCSV, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
	os.WriteFile(filepath.Join(e.imports, "customers.csv"), []byte(strings.Join(lines, "\n")+"\n"), 0o644)
	writeParquet(t, filepath.Join(e.imports, "customers.parquet"), rows)
	deploy(t, s, "churn-rt", "--model", "churn@champion")
	want := realtime(t, s, "churn-rt", rows)

	// The CLI: a local file is uploaded, the progress followed, the result printed.
	out, errOut, code := s.cli("batch", "run", "--model", "churn@champion", "--input", localCSV, "--key", "customer_id",
		"--output-table", "cli_scores", "--connection", "wh", "--chunk-size", "300")
	if code != 0 || !strings.Contains(out, "SUCCEEDED") || !strings.Contains(out, "2000/2000 done") {
		t.Fatalf("batch run: exit %d\n%s\n%s", code, out, errOut)
	}
	samePredictions(t, tableRows(t, "sqlite", e.sqlite, "cli_scores"), want)

	for _, tc := range []struct {
		name, input, conn, table string
	}{
		{"csv to postgres", "customers.csv", "pg", "csv_scores"},
		{"parquet to postgres", "customers.parquet", "pg", "parquet_scores"},
		{"parquet to sqlite", "customers.parquet", "wh", "parquet_scores"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := s.Client().CreateBatchPrediction(context.Background(), slipway.BatchSpec{Model: "churn", Alias: "champion",
				Input: slipway.BatchInput{Path: tc.input}, Output: slipway.BatchOutput{Connection: tc.conn, Table: tc.table},
				KeyColumns: []string{"customer_id"}, ChunkSize: 250, Parallel: 2})
			if err != nil {
				t.Fatal(err)
			}
			if r = waitBatch(t, s, r.ID); r.State != slipway.BatchSucceeded || r.RowsDone != 2000 || r.RowsTotal != 2000 || r.RowsPerSecond <= 0 {
				t.Fatalf("%s (%s): %d/%d rows, %v rows/s", r.State, r.Reason, r.RowsDone, r.RowsTotal, r.RowsPerSecond)
			}
			driver, dsn := "sqlite", e.sqlite
			if tc.conn == "pg" {
				driver, dsn = "pgx", e.pgDSN
			}
			samePredictions(t, tableRows(t, driver, dsn, tc.table), want)
		})
	}

	// A file output, downloaded by the CLI.
	dest := filepath.Join(t.TempDir(), "scores.csv")
	out, errOut, code = s.cli("batch", "run", "--model", "churn", "--import-path", "customers.parquet", "--key", "customer_id",
		"--output-format", "csv", "--download", dest)
	if code != 0 {
		t.Fatalf("batch run to file: exit %d\n%s\n%s", code, out, errOut)
	}
	f, _ := os.Open(dest)
	recs, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil || len(recs) != 2001 || strings.Join(recs[0], ",") != "customer_id,prediction,probability,model,model_version,batch_id,scored_at" {
		t.Fatalf("downloaded output: %d records, header %v, %v", len(recs), recs[0], err)
	}

	// Connections are listed without credentials.
	resp, body := s.do(t, "GET", "/api/v1/connections", s.Token, nil, "")
	if resp.StatusCode != 200 || strings.Contains(string(body), "hunter2") || strings.Contains(string(body), "postgres@") || !strings.Contains(string(body), `"driver": "postgres"`) {
		t.Fatalf("connections: %d %s", resp.StatusCode, body)
	}
	out, _, _ = s.cli("batch", "list")
	if strings.Count(out, "SUCCEEDED") != 5 {
		t.Fatalf("batch list:\n%s", out)
	}
}

// SIGKILL the server in the middle of a run; after a restart the run resumes from its checkpoints and the
// table holds every row exactly once.
func TestBatchResumesAfterSIGKILL(t *testing.T) {
	t.Parallel()
	e := newBatchEnv(t)
	s := e.s
	pushSlowChurn(t, s) // 50 ms per chunk, so that the kill lands mid-run
	rows, lines := readChurn(t, 3000)
	os.WriteFile(filepath.Join(e.imports, "all.csv"), []byte(strings.Join(lines, "\n")+"\n"), 0o644)
	r, err := s.Client().CreateBatchPrediction(context.Background(), slipway.BatchSpec{Model: "churn-slow",
		Input: slipway.BatchInput{Path: "all.csv"}, Output: slipway.BatchOutput{Connection: "pg", Table: "scores"},
		KeyColumns: []string{"customer_id"}, ChunkSize: 50, Parallel: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	mid, err := s.Client().WaitBatchPrediction(ctx, r.ID, func(r *slipway.BatchRun) {
		if r.RowsDone >= 500 {
			s.Kill() // SIGKILL, as a crash: no shutdown, no flush
		}
	}, 20*time.Millisecond)
	if err == nil || mid == nil || mid.State.Terminal() {
		t.Fatalf("the run finished before the kill (%v, %+v): slow the model down", err, mid)
	}
	s2 := startServer(t, s.dataDir, e.args...)
	r = waitBatch(t, s2, r.ID)
	if r.State != slipway.BatchSucceeded || r.RowsDone != 3000 {
		t.Fatalf("after restart: %s (%s), %d rows", r.State, r.Reason, r.RowsDone)
	}
	got := tableRows(t, "pgx", e.pgDSN, "scores") // fails on a duplicate customer
	if len(got) != len(rows) {
		t.Fatalf("%d rows in the table, want %d", len(got), len(rows))
	}
	if n := e.pg.Psql(t, "warehouse", `SELECT COUNT(*) FROM scores`); n != "3000" {
		t.Fatalf("COUNT(*) = %s", n)
	}
	if n := e.pg.Psql(t, "warehouse", fmt.Sprintf(`SELECT COUNT(*) FROM slipway_batch_checkpoints WHERE batch_id = '%s'`, r.ID)); n != "60" {
		t.Fatalf("%s checkpoints, want 60", n)
	}
	if !strings.Contains(s2.Log(), "resuming batch prediction") {
		t.Fatalf("the restarted server did not say it resumed the run:\n%s", s2.Log())
	}
}

// Bad requests and inputs get a problem+json answer that says what to fix; nothing half-written.
func TestBatchBadInputErrors(t *testing.T) {
	t.Parallel()
	e := newBatchEnv(t)
	s := e.s
	rows, lines := readChurn(t, 100)
	os.WriteFile(filepath.Join(e.imports, "noage.csv"), []byte(strings.Replace(strings.Join(lines, "\n"), "customer_id,age,", "customer_id,years,", 1)), 0o644)
	os.WriteFile(filepath.Join(e.imports, "empty.csv"), nil, 0o644)
	os.WriteFile(filepath.Join(e.imports, "broken.parquet"), []byte("PAR1\x00\x01garbagePAR1"), 0o644)
	writeParquet(t, filepath.Join(e.imports, "ok.parquet"), rows)
	type textAge struct {
		CustomerID     int64   `parquet:"customer_id"`
		Age            string  `parquet:"age"`
		TenureMonths   float64 `parquet:"tenure_months"`
		MonthlyCharges float64 `parquet:"monthly_charges"`
		Plan           string  `parquet:"plan"`
		SupportCalls   float64 `parquet:"support_calls"`
	}
	f, _ := os.Create(filepath.Join(e.imports, "textage.parquet"))
	w := parquet.NewGenericWriter[textAge](f)
	w.Write([]textAge{{1, "forty", 1, 1, "pro", 0}})
	w.Close()
	f.Close()
	e.pg.Psql(t, "warehouse", `CREATE TABLE taken (customer_id TEXT, prediction TEXT)`)

	post := func(spec map[string]any) (int, string, []byte) {
		resp, body := s.do(t, "POST", "/api/v1/batch-predictions", s.Token, bytes.NewReader(mustJSON(spec)), "application/json")
		return resp.StatusCode, resp.Header.Get("Content-Type"), body
	}
	table := map[string]any{"connection": "pg", "table": "out"}
	keys := []string{"customer_id"}
	for _, tc := range []struct {
		name   string
		spec   map[string]any
		status int
		detail string
	}{
		{"missing column", map[string]any{"model": "churn", "input": map[string]any{"path": "noage.csv"}, "output": table, "key_columns": keys}, 400, `the input is missing column "age"`},
		{"wrong type", map[string]any{"model": "churn", "input": map[string]any{"path": "textage.parquet"}, "output": table, "key_columns": keys}, 400, `input column "age" holds string values; the model's input schema wants float64`},
		{"empty file", map[string]any{"model": "churn", "input": map[string]any{"path": "empty.csv"}, "output": table}, 400, "the input file is empty"},
		{"malformed parquet", map[string]any{"model": "churn", "input": map[string]any{"path": "broken.parquet"}, "output": table}, 400, "not a readable Parquet file"},
		{"failing query", map[string]any{"model": "churn", "input": map[string]any{"connection": "pg", "query": "SELECT * FROM customers_typo"}, "output": table, "key_columns": keys}, 400, `the input query failed on connection pg: ERROR: relation "customers_typo" does not exist`},
		{"path outside import dir", map[string]any{"model": "churn", "input": map[string]any{"path": "../../etc/passwd", "format": "csv"}, "output": table}, 400, "leaves the import folder"},
		{"unknown field", map[string]any{"model": "churn", "inputs": map[string]any{}}, 400, `unknown field "inputs"`},
		{"unknown model", map[string]any{"model": "nope", "input": map[string]any{"path": "ok.parquet"}, "output": table}, 404, "not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, ct, body := post(tc.spec)
			var p struct{ Detail string }
			json.Unmarshal(body, &p)
			if status != tc.status || ct != "application/problem+json" || !strings.Contains(p.Detail, tc.detail) {
				t.Fatalf("%d %s %s; want %d with %q", status, ct, body, tc.status, tc.detail)
			}
		})
	}
	t.Run("incompatible table", func(t *testing.T) {
		status, _, body := post(map[string]any{"model": "churn", "input": map[string]any{"path": "ok.parquet"},
			"output": map[string]any{"connection": "pg", "table": "taken"}, "key_columns": keys})
		if status != http.StatusAccepted {
			t.Fatalf("%d %s", status, body)
		}
		var r slipway.BatchRun
		json.Unmarshal(body, &r)
		r = *waitBatch(t, s, r.ID)
		if r.State != slipway.BatchFailed || !strings.Contains(r.Reason, `column "customer_id" is text, this run writes integer values (BIGINT)`) ||
			!strings.Contains(r.Reason, `no column "probability"`) {
			t.Fatalf("%s: %s", r.State, r.Reason)
		}
		if n := e.pg.Psql(t, "warehouse", `SELECT COUNT(*) FROM taken`); n != "0" {
			t.Fatalf("%s rows written into the incompatible table", n)
		}
	})
	t.Run("upload limits and names", func(t *testing.T) {
		f, err := s.Client().UploadFile(context.Background(), "../../evil name.csv", strings.NewReader(strings.Join(lines, "\n")))
		if err != nil || f.Name != "evil_name.csv" || f.Size == 0 {
			t.Fatalf("upload: %+v %v", f, err)
		}
		r, err := s.Client().CreateBatchPrediction(context.Background(), slipway.BatchSpec{Model: "churn", Input: slipway.BatchInput{File: f.ID},
			Output: slipway.BatchOutput{Format: "parquet"}, KeyColumns: keys})
		if err != nil {
			t.Fatal(err)
		}
		if r = waitBatch(t, s, r.ID); r.State != slipway.BatchSucceeded {
			t.Fatalf("%s: %s", r.State, r.Reason)
		}
		var buf bytes.Buffer
		if _, err := s.Client().DownloadBatchOutput(context.Background(), r.ID, &buf); err != nil {
			t.Fatal(err)
		}
		pf, err := parquet.OpenFile(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
		if err != nil || pf.NumRows() != 100 {
			t.Fatalf("downloaded parquet: %v rows, %v", pf, err)
		}
		// Deleting the run removes its record and its file from the artifact store (here the data folder's).
		if r.Output.SHA256 == "" {
			t.Fatalf("the run's output has no digest: %+v", r.Output)
		}
		outDir := filepath.Join(s.dataDir, "blobs", "sha256", r.Output.SHA256[:2], r.Output.SHA256[2:])
		if _, err := os.Stat(outDir); err != nil {
			t.Fatalf("output blob: %v", err)
		}
		if out, errOut, code := s.cli("batch", "delete", r.ID); code != 0 || !strings.Contains(out, "Deleted batch prediction "+r.ID) {
			t.Fatalf("batch delete: exit %d\n%s\n%s", code, out, errOut)
		}
		if _, err := os.Stat(outDir); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("output blob after delete: %v", err)
		}
		if out, errOut, code := s.cli("batch", "delete", r.ID); code == 0 || !strings.Contains(errOut, "not found") {
			t.Fatalf("second delete: exit %d\n%s\n%s", code, out, errOut)
		}
		resp, body := s.do(t, "GET", "/api/v1/batch-predictions/b-00000000000000000000", s.Token, nil, "")
		if resp.StatusCode != 404 {
			t.Fatalf("unknown run: %d %s", resp.StatusCode, body)
		}
	})
}

// A schedule starts batch predictions: a cron tick runs the batch spec it carries.
func TestScheduleStartsBatchPrediction(t *testing.T) {
	t.Parallel()
	imports := t.TempDir()
	_, lines := readChurn(t, 200)
	os.WriteFile(filepath.Join(imports, "customers.csv"), []byte(strings.Join(lines, "\n")+"\n"), 0o644)
	s := startServer(t, "", "--import-dir", imports)
	pushExamples(t, s)
	c := s.Client()
	ctx := context.Background()
	spec := client.ScheduleSpec{Name: "nightly-scores", Cron: "*/2 * * * * *", ConcurrencyPolicy: "forbid",
		Batch: &slipway.BatchSpec{Model: "churn", Alias: "champion", Input: slipway.BatchInput{Path: "customers.csv"},
			Output: slipway.BatchOutput{Format: "csv"}, KeyColumns: []string{"customer_id"}}}
	spec.Target.Kind, spec.Target.Name = "batch", "churn-scores"
	if _, err := c.CreateSchedule(ctx, spec); err != nil {
		t.Fatal(err)
	}
	var done *slipway.BatchRun
	waitFor(t, "a scheduled batch prediction to succeed", 120*time.Second, func() bool {
		runs, _, err := c.ListBatchPredictions(ctx, slipway.BatchSucceeded, 0, 10)
		if err != nil || len(runs) == 0 {
			return false
		}
		done = runs[0]
		return true
	})
	if done.RowsDone != 200 {
		t.Fatalf("scheduled run scored %d rows, want 200", done.RowsDone)
	}
	if err := c.DeleteSchedule(ctx, "nightly-scores"); err != nil {
		t.Fatal(err)
	}
	// A batch schedule without its spec is refused at creation.
	bad := client.ScheduleSpec{Name: "no-spec", Cron: "@daily"}
	bad.Target.Kind, bad.Target.Name = "batch", "x"
	if _, err := c.CreateSchedule(ctx, bad); err == nil || !strings.Contains(err.Error(), `"batch"`) {
		t.Fatalf("schedule without batch spec: %v", err)
	}
}
