package batch

import (
	"context"
	"database/sql"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/blob"
	"github.com/slipway-ml/slipway/internal/modelruntime"
	"github.com/slipway-ml/slipway/internal/slipwaytest"
	"github.com/slipway-ml/slipway/internal/sqlstore"
)

// The test model: label = x > 5, score = 2x + y; it raises ValueError on a negative x. Its input schema
// allows cat in {a, b, c}.
const scorePy = `
import numpy as np

def load_model():
    return None

def predict(data, model=None):
    if (data["x"] < 0).any():
        raise ValueError("x must not be negative")
    return {"label": (data["x"] > 5).astype("int64").to_numpy(),
            "score": (data["x"] * 2.0 + data["y"]).to_numpy()}
`

type harness struct {
	t       *testing.T
	db      *sqlstore.DB
	dir     string
	imports string
	rt      *modelruntime.Runtimes
	conns   []string
	svc     *Service
	model   string
}

type dirFiles string

func (d dirFiles) Materialize(ctx context.Context, v *slipway.ModelVersion) (string, error) {
	return string(d), nil
}

func newHarness(t *testing.T, conns ...string) *harness {
	t.Helper()
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		t.Skip("these tests run the model in /usr/bin/python3 (Debian's, with numpy and pandas)")
	}
	dir := t.TempDir()
	db, err := sqlstore.OpenSQLite(context.Background(), filepath.Join(dir, "slipway.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	rt, err := modelruntime.New(modelruntime.Config{ScratchDir: filepath.Join(dir, "runtime")})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, db: db, dir: dir, imports: filepath.Join(dir, "imports"), rt: rt, conns: conns, model: filepath.Join(dir, "model")}
	os.MkdirAll(h.model, 0o755)
	if err := os.WriteFile(filepath.Join(h.model, "score.py"), []byte(scorePy), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	v := &slipway.ModelVersion{Model: "toy", VersionMetadata: slipway.VersionMetadata{Runtime: "python",
		InputSchema: &slipway.Schema{Columns: []slipway.ColumnSpec{
			{Name: "x", Dtype: "float64"}, {Name: "y", Dtype: "float64"}, {Name: "cat", Dtype: "string", Allowed: []any{"a", "b", "c"}}}}}}
	if err := db.CreateVersion(ctx, v); err != nil {
		t.Fatal(err)
	}
	v.State, v.Digest = slipway.VersionReady, "0123456789abcdef"
	v.Files = []slipway.File{{Path: "score.py", Size: int64(len(scorePy)), SHA256: "x"}}
	if err := db.FinishVersion(ctx, v); err != nil {
		t.Fatal(err)
	}
	h.svc = h.open()
	return h
}

// open starts a Service on the harness's store and folders (a server start).
func (h *harness) open() *Service {
	h.t.Helper()
	conns, err := parseConnections(h.conns)
	if err != nil {
		h.t.Fatal(err)
	}
	s := New(Config{Store: h.db, Models: h.db, Deployments: h.db, Files: dirFiles(h.model), Runtimes: h.rt,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Dir: filepath.Join(h.dir, "batch"), ImportDir: h.imports,
		Connections: conns, ReadyTimeout: time.Minute})
	if err := s.Open(context.Background()); err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { s.Close() })
	return s
}

// output copies a succeeded run's output file out of the artifact store into a file of the test's.
func (h *harness) output(id string) string {
	h.t.Helper()
	d, err := h.svc.OpenOutput(context.Background(), id)
	if err != nil {
		h.t.Fatal(err)
	}
	defer d.Content.Close()
	p := filepath.Join(h.t.TempDir(), d.Name)
	f, err := os.Create(p)
	if err != nil {
		h.t.Fatal(err)
	}
	defer f.Close()
	if n, err := io.Copy(f, d.Content); err != nil || n != d.Size {
		h.t.Fatalf("output of %s: %d bytes copied (%v), want %d", id, n, err, d.Size)
	}
	return p
}

// wait polls a run until it finishes (bounded by the test's deadline, not by a threshold on its speed).
func (h *harness) wait(id string) *slipway.BatchRun {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for {
		r, err := h.svc.Get(ctx, id)
		if err != nil {
			h.t.Fatal(err)
		}
		if r.State.Terminal() {
			return r
		}
		select {
		case <-ctx.Done():
			h.t.Fatalf("run %s still %s (%d/%d rows)", id, r.State, r.RowsDone, r.RowsTotal)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

type testRow struct {
	ID  int64   `parquet:"id"`
	X   float64 `parquet:"x"`
	Y   float64 `parquet:"y"`
	Cat string  `parquet:"cat"`
}

func makeRows(n int) []testRow {
	rows := make([]testRow, n)
	for i := range rows {
		rows[i] = testRow{ID: int64(1000 + i), X: float64(i%11) + 0.25, Y: float64(i) / 7, Cat: string(rune('a' + i%3))}
	}
	return rows
}

func (h *harness) writeInput(name string, rows []testRow) string {
	h.t.Helper()
	os.MkdirAll(h.imports, 0o755)
	p := filepath.Join(h.imports, name)
	f, err := os.Create(p)
	if err != nil {
		h.t.Fatal(err)
	}
	defer f.Close()
	switch filepath.Ext(name) {
	case ".csv":
		w := csv.NewWriter(f)
		w.Write([]string{"id", "x", "y", "cat", "extra"})
		for _, r := range rows {
			w.Write([]string{strconv.FormatInt(r.ID, 10), strconv.FormatFloat(r.X, 'g', -1, 64), strconv.FormatFloat(r.Y, 'g', -1, 64), r.Cat, "ignored"})
		}
		w.Flush()
	case ".jsonl":
		enc := json.NewEncoder(f)
		for _, r := range rows {
			enc.Encode(map[string]any{"id": r.ID, "x": r.X, "y": r.Y, "cat": r.Cat})
		}
	case ".parquet":
		w := parquet.NewGenericWriter[testRow](f)
		if _, err := w.Write(rows); err != nil {
			h.t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			h.t.Fatal(err)
		}
	}
	return name
}

type scoredRow struct {
	id    int64
	label int64
	score float64
}

func expected(rows []testRow) map[int64]scoredRow {
	out := map[int64]scoredRow{}
	for _, r := range rows {
		label := int64(0)
		if r.X > 5 {
			label = 1
		}
		out[r.ID] = scoredRow{r.ID, label, 2*r.X + r.Y}
	}
	return out
}

func checkRows(t *testing.T, got []scoredRow, want map[int64]scoredRow) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d output rows, want %d", len(got), len(want))
	}
	seen := map[int64]bool{}
	for _, g := range got {
		if seen[g.id] {
			t.Fatalf("id %d written twice", g.id)
		}
		seen[g.id] = true
		w, ok := want[g.id]
		if !ok || g.label != w.label || math.Abs(g.score-w.score) > 1e-9 {
			t.Fatalf("row %+v, want %+v", g, w)
		}
	}
}

func readTable(t *testing.T, driver, dsn, table string) []scoredRow {
	t.Helper()
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT id, label, score FROM ` + table + ` ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []scoredRow
	for rows.Next() {
		var r scoredRow
		if err := rows.Scan(&r.id, &r.label, &r.score); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

func readCSVOutput(t *testing.T, path string) []scoredRow {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"id", "label", "score", "model", "model_version", "batch_id", "scored_at"}
	if strings.Join(recs[0], ",") != strings.Join(want, ",") {
		t.Fatalf("header %v, want %v", recs[0], want)
	}
	var out []scoredRow
	for _, rec := range recs[1:] {
		id, _ := strconv.ParseInt(rec[0], 10, 64)
		label, _ := strconv.ParseInt(rec[1], 10, 64)
		score, _ := strconv.ParseFloat(rec[2], 64)
		out = append(out, scoredRow{id, label, score})
	}
	return out
}

func readParquetOutput(t *testing.T, path string) []scoredRow {
	t.Helper()
	type outRow struct {
		ID    int64   `parquet:"id"`
		Label int64   `parquet:"label"`
		Score float64 `parquet:"score"`
		Model string  `parquet:"model"`
	}
	rows, err := parquet.ReadFile[outRow](path)
	if err != nil {
		t.Fatal(err)
	}
	var out []scoredRow
	for _, r := range rows {
		if r.Model != "toy" {
			t.Fatalf("model column = %q", r.Model)
		}
		out = append(out, scoredRow{r.ID, r.Label, r.Score})
	}
	return out
}

func spec(input slipway.BatchInput, output slipway.BatchOutput) slipway.BatchSpec {
	return slipway.BatchSpec{Model: "toy", Input: input, Output: output, KeyColumns: []string{"id"}, ChunkSize: 100, Parallel: 2}
}

// Every input format to every output kind gives the model's predictions, once per row.
func TestBatchInputsToOutputs(t *testing.T) {
	dbPath := filepath.Join(t.TempDir(), "warehouse.db")
	h := newHarness(t, "wh=sqlite://"+dbPath)
	rows := makeRows(950)
	want := expected(rows)
	for _, in := range []string{"in.csv", "in.jsonl", "in.parquet"} {
		h.writeInput(in, rows)
	}
	cases := []struct {
		name   string
		input  string
		output slipway.BatchOutput
		read   func(t *testing.T, r *slipway.BatchRun) []scoredRow
	}{
		{"csv to sqlite", "in.csv", slipway.BatchOutput{Connection: "wh", Table: "from_csv"}, nil},
		{"jsonl to sqlite", "in.jsonl", slipway.BatchOutput{Connection: "wh", Table: "from_jsonl"}, nil},
		{"parquet to sqlite", "in.parquet", slipway.BatchOutput{Connection: "wh", Table: "from_parquet"}, nil},
		{"csv to csv file", "in.csv", slipway.BatchOutput{Format: "csv"}, nil},
		{"parquet to parquet file", "in.parquet", slipway.BatchOutput{Format: "parquet"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := h.svc.Create(context.Background(), spec(slipway.BatchInput{Path: tc.input}, tc.output), "tester")
			if err != nil {
				t.Fatal(err)
			}
			r = h.wait(r.ID)
			if r.State != slipway.BatchSucceeded || r.RowsDone != int64(len(rows)) || r.RowsTotal != int64(len(rows)) {
				t.Fatalf("run %s %s (%s): %d/%d rows", r.ID, r.State, r.Reason, r.RowsDone, r.RowsTotal)
			}
			var got []scoredRow
			switch tc.output.Format {
			case "":
				got = readTable(t, "sqlite", dbPath, tc.output.Table)
			default:
				p := h.output(r.ID)
				if tc.output.Format == "csv" {
					got = readCSVOutput(t, p)
				} else {
					got = readParquetOutput(t, p)
				}
			}
			checkRows(t, got, want)
		})
	}
}

// A server that stops mid-run (here: its service is shut down after some chunks) resumes at the next start
// from the checkpoints: the table ends with every row exactly once.
func TestBatchResumesAfterInterruption(t *testing.T) {
	for _, output := range []string{"table", "file"} {
		t.Run(output, func(t *testing.T) {
			dbPath := filepath.Join(t.TempDir(), "warehouse.db")
			h := newHarness(t, "wh=sqlite://"+dbPath)
			rows := makeRows(1200)
			h.writeInput("in.csv", rows)
			var commits atomic.Int32
			h.svc.afterCommit = func(string, int) {
				if commits.Add(1) == 3 {
					h.svc.cancel() // as a shutdown would: the run stays IN_PROGRESS
				}
			}
			out := slipway.BatchOutput{Connection: "wh", Table: "scores"}
			if output == "file" {
				out = slipway.BatchOutput{Format: "csv"}
			}
			r, err := h.svc.Create(context.Background(), spec(slipway.BatchInput{Path: "in.csv"}, out), "")
			if err != nil {
				t.Fatal(err)
			}
			first := h.svc
			first.wg.Wait()
			first.Close()
			mid, err := h.db.FindBatchRun(context.Background(), r.ID)
			if err != nil {
				t.Fatal(err)
			}
			if mid.State != slipway.BatchInProgress || mid.RowsDone >= int64(len(rows)) {
				t.Fatalf("after the interruption the run is %s with %d rows done; want IN_PROGRESS, unfinished", mid.State, mid.RowsDone)
			}
			h.svc = h.open()
			r = h.wait(r.ID)
			if r.State != slipway.BatchSucceeded || r.RowsDone != int64(len(rows)) {
				t.Fatalf("resumed run %s (%s): %d rows done", r.State, r.Reason, r.RowsDone)
			}
			var got []scoredRow
			if output == "table" {
				got = readTable(t, "sqlite", dbPath, "scores")
			} else {
				p := h.output(r.ID)
				got = readCSVOutput(t, p)
			}
			checkRows(t, got, expected(rows))
		})
	}
}

// Bad rows fail the run with their row number, or are skipped and recorded with it.
func TestBatchBadRows(t *testing.T) {
	dbPath := filepath.Join(t.TempDir(), "warehouse.db")
	h := newHarness(t, "wh=sqlite://"+dbPath)
	rows := makeRows(300)
	h.writeInput("good.csv", rows)
	// Row 7: x is not a number. Row 120: the model raises (x < 0). Row 250: cat outside the schema's allowed values.
	b, _ := os.ReadFile(filepath.Join(h.imports, "good.csv"))
	lines := strings.Split(string(b), "\n")
	lines[1+7] = "1007,abc,1,a,z"
	lines[1+120] = "1120,-3,1,a,z"
	lines[1+250] = "1250,1,1,zzz,z"
	os.WriteFile(filepath.Join(h.imports, "bad.csv"), []byte(strings.Join(lines, "\n")), 0o644)

	cases := []struct {
		name      string
		policy    string
		wantState slipway.BatchState
		wantIn    string
	}{
		{"fail stops at the unreadable row", slipway.BadRowsFail, slipway.BatchFailed, `row 7 (chunk 0): column "x": expected a number, got "abc"`},
		{"skip records every bad row", slipway.BadRowsSkip, slipway.BatchSucceeded, ""},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sp := spec(slipway.BatchInput{Path: "bad.csv"}, slipway.BatchOutput{Connection: "wh", Table: fmt.Sprintf("t%d", i)})
			sp.OnBadRows = tc.policy
			r, err := h.svc.Create(context.Background(), sp, "")
			if err != nil {
				t.Fatal(err)
			}
			r = h.wait(r.ID)
			if r.State != tc.wantState || !strings.Contains(r.Reason, tc.wantIn) {
				t.Fatalf("%s (%s); want %s with %q", r.State, r.Reason, tc.wantState, tc.wantIn)
			}
			if tc.policy == slipway.BadRowsFail {
				db, _ := sql.Open("sqlite", dbPath)
				defer db.Close()
				var n int
				db.QueryRow(`SELECT COUNT(*) FROM sqlite_master WHERE name = ?`, sp.Output.Table).Scan(&n)
				if n != 0 {
					t.Fatalf("a run that failed on its first chunk created table %s", sp.Output.Table)
				}
				return
			}
			if r.RowsSkipped != 3 || len(r.Errors) != 3 {
				t.Fatalf("skipped %d, errors %+v", r.RowsSkipped, r.Errors)
			}
			for j, want := range []struct {
				row int64
				msg string
			}{{7, "expected a number"}, {120, "ValueError: x must not be negative"}, {250, "not an allowed value"}} {
				e := r.Errors[j]
				if e.RowStart != want.row || e.RowEnd != want.row || !strings.Contains(e.Message, want.msg) {
					t.Errorf("error %d = %+v; want row %d with %q", j, e, want.row, want.msg)
				}
			}
			good := expected(rows)
			for _, id := range []int64{1007, 1120, 1250} {
				delete(good, id)
			}
			checkRows(t, readTable(t, "sqlite", dbPath, sp.Output.Table), good)
			db, _ := sql.Open("sqlite", dbPath)
			defer db.Close()
			var n int
			db.QueryRow(`SELECT COUNT(*) FROM `+sp.Output.Table+`_errors WHERE batch_id = ?`, r.ID).Scan(&n)
			if n != 3 {
				t.Fatalf("errors table has %d rows, want 3", n)
			}
		})
	}
}

// Inputs and outputs that cannot work are refused before anything is written, with a message saying why.
func TestBatchRefusesBadRequests(t *testing.T) {
	dbPath := filepath.Join(t.TempDir(), "warehouse.db")
	h := newHarness(t, "wh=sqlite://"+dbPath)
	rows := makeRows(20)
	h.writeInput("in.csv", rows)
	h.writeInput("in.parquet", rows)
	os.WriteFile(filepath.Join(h.imports, "empty.csv"), nil, 0o644)
	os.WriteFile(filepath.Join(h.imports, "nocols.csv"), []byte("id,x,cat\n1,2,a\n"), 0o644)
	os.WriteFile(filepath.Join(h.imports, "broken.parquet"), []byte("PAR1 this is not parquet PAR1"), 0o644)
	type strRow struct {
		ID  int64   `parquet:"id"`
		X   string  `parquet:"x"`
		Y   float64 `parquet:"y"`
		Cat string  `parquet:"cat"`
	}
	f, _ := os.Create(filepath.Join(h.imports, "strx.parquet"))
	w := parquet.NewGenericWriter[strRow](f)
	w.Write([]strRow{{1, "one", 1, "a"}})
	w.Close()
	f.Close()
	outside := filepath.Join(t.TempDir(), "secret.csv")
	os.WriteFile(outside, []byte("id,x,y,cat\n1,1,1,a\n"), 0o644)
	os.Symlink(outside, filepath.Join(h.imports, "link.csv"))
	tbl := slipway.BatchOutput{Connection: "wh", Table: "out"}

	cases := []struct {
		name string
		sp   slipway.BatchSpec
		code string
		msg  string
	}{
		{"missing column", spec(slipway.BatchInput{Path: "nocols.csv"}, tbl), slipway.EINVALID, `missing column "y"`},
		{"wrong type", spec(slipway.BatchInput{Path: "strx.parquet"}, tbl), slipway.EINVALID, `input column "x" holds string values`},
		{"empty file", spec(slipway.BatchInput{Path: "empty.csv"}, tbl), slipway.EINVALID, "the input file is empty"},
		{"malformed parquet", spec(slipway.BatchInput{Path: "broken.parquet"}, tbl), slipway.EINVALID, "not a readable Parquet file"},
		{"missing file", spec(slipway.BatchInput{Path: "nope.csv"}, tbl), slipway.EINVALID, "no such file"},
		{"path leaves import dir", spec(slipway.BatchInput{Path: "../slipway.db", Format: "csv"}, tbl), slipway.EINVALID, "leaves the import folder"},
		{"symlink out of import dir", spec(slipway.BatchInput{Path: "link.csv"}, tbl), slipway.EINVALID, "leaves the import folder"},
		{"failing query", spec(slipway.BatchInput{Connection: "wh", Query: "SELECT * FROM no_such_table"}, tbl), slipway.EINVALID, "the input query failed on connection wh"},
		{"unknown key", func() slipway.BatchSpec {
			s := spec(slipway.BatchInput{Path: "in.csv"}, tbl)
			s.KeyColumns = []string{"customer"}
			return s
		}(), slipway.EINVALID, `key column "customer" is not in the input`},
		{"unknown connection", spec(slipway.BatchInput{Path: "in.csv"}, slipway.BatchOutput{Connection: "dw", Table: "t"}), slipway.EINVALID, `unknown connection "dw": the server has wh`},
		{"bad table name", spec(slipway.BatchInput{Path: "in.csv"}, slipway.BatchOutput{Connection: "wh", Table: "x; DROP TABLE y"}), slipway.EINVALID, "invalid output.table"},
		{"two inputs", spec(slipway.BatchInput{Path: "in.csv", File: "f-00000000000000000000"}, tbl), slipway.EINVALID, "input needs exactly one of"},
		{"query without keys", func() slipway.BatchSpec {
			s := spec(slipway.BatchInput{Connection: "wh", Query: "SELECT 1"}, tbl)
			s.KeyColumns = nil
			return s
		}(), slipway.EINVALID, "key_columns is required with a query input"},
		{"unknown model", func() slipway.BatchSpec {
			s := spec(slipway.BatchInput{Path: "in.csv"}, tbl)
			s.Model = "nope"
			return s
		}(), slipway.ENOTFOUND, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.svc.Create(context.Background(), tc.sp, "")
			if slipway.ErrorCode(err) != tc.code || !strings.Contains(slipway.ErrorMessage(err), tc.msg) {
				t.Fatalf("err = %v (code %s); want %s containing %q", err, slipway.ErrorCode(err), tc.code, tc.msg)
			}
		})
	}
	if runs, _, _ := h.db.FindBatchRuns(context.Background(), slipway.BatchFilter{}); len(runs) != 0 {
		t.Fatalf("%d runs were stored for refused requests", len(runs))
	}
}

// An existing table whose columns do not fit fails the run before any row is written.
func TestBatchIncompatibleTable(t *testing.T) {
	dbPath := filepath.Join(t.TempDir(), "warehouse.db")
	h := newHarness(t, "wh=sqlite://"+dbPath)
	h.writeInput("in.csv", makeRows(50))
	db, _ := sql.Open("sqlite", dbPath)
	defer db.Close()
	if _, err := db.Exec(`CREATE TABLE scores (id INTEGER, label TEXT, note TEXT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	r, err := h.svc.Create(context.Background(), spec(slipway.BatchInput{Path: "in.csv"}, slipway.BatchOutput{Connection: "wh", Table: "scores"}), "")
	if err != nil {
		t.Fatal(err)
	}
	r = h.wait(r.ID)
	for _, want := range []string{"incompatible schema", `column "label" is TEXT, this run writes integer values`, `no column "score"`, `column "note" is NOT NULL`, "nothing was written"} {
		if r.State != slipway.BatchFailed || !strings.Contains(r.Reason, want) {
			t.Fatalf("%s: %s; want FAILED with %q", r.State, r.Reason, want)
		}
	}
	var n int
	db.QueryRow(`SELECT COUNT(*) FROM scores`).Scan(&n)
	if n != 0 {
		t.Fatalf("%d rows written", n)
	}
}

func TestBatchCancel(t *testing.T) {
	h := newHarness(t)
	h.writeInput("in.csv", makeRows(2000))
	cancelled := make(chan struct{})
	var once atomic.Bool
	h.svc.afterCommit = func(id string, chunk int) {
		if once.CompareAndSwap(false, true) {
			if _, err := h.svc.Cancel(context.Background(), id, "tester"); err != nil {
				t.Error(err)
			}
			close(cancelled)
		}
	}
	sp := spec(slipway.BatchInput{Path: "in.csv"}, slipway.BatchOutput{Format: "csv"})
	sp.Parallel = 1
	r, err := h.svc.Create(context.Background(), sp, "")
	if err != nil {
		t.Fatal(err)
	}
	<-cancelled
	r = h.wait(r.ID)
	if r.State != slipway.BatchCanceled || r.Reason != "canceled by tester" || r.RowsDone >= 2000 {
		t.Fatalf("%s (%s) %d rows", r.State, r.Reason, r.RowsDone)
	}
	if _, err := h.svc.Cancel(context.Background(), r.ID, ""); slipway.ErrorCode(err) != slipway.ECONFLICT {
		t.Fatalf("second cancel: %v", err)
	}
	if _, err := h.svc.OpenOutput(context.Background(), r.ID); slipway.ErrorCode(err) != slipway.ECONFLICT {
		t.Fatalf("output of a canceled run: %v", err)
	}
}

// The same runs against a real PostgreSQL 15 cluster started by the test.
func TestBatchPostgres(t *testing.T) {
	pg := slipwaytest.StartPostgres(t)
	dsn := pg.CreateDatabase(t, "warehouse")
	h := newHarness(t, "pg="+dsn)
	rows := makeRows(1500)
	h.writeInput("in.parquet", rows)
	h.writeInput("in.csv", rows)
	pg.Psql(t, "warehouse", `CREATE TABLE customers (id BIGINT PRIMARY KEY, x DOUBLE PRECISION, y DOUBLE PRECISION, cat TEXT)`)
	var values []string
	for _, r := range rows {
		values = append(values, fmt.Sprintf("(%d, %v, %v, '%s')", r.ID, r.X, r.Y, r.Cat))
	}
	pg.Psql(t, "warehouse", "INSERT INTO customers VALUES "+strings.Join(values, ", "))
	pg.Psql(t, "warehouse", `CREATE SCHEMA analytics`)

	t.Run("parquet to table", func(t *testing.T) {
		r, _ := h.svc.Create(context.Background(), spec(slipway.BatchInput{Path: "in.parquet"}, slipway.BatchOutput{Connection: "pg", Table: "analytics.scores"}), "")
		r = h.wait(r.ID)
		if r.State != slipway.BatchSucceeded {
			t.Fatalf("%s: %s", r.State, r.Reason)
		}
		checkRows(t, readTable(t, "pgx", dsn, "analytics.scores"), expected(rows))
		if got := pg.Psql(t, "warehouse", `SELECT data_type FROM information_schema.columns WHERE table_name = 'scores' AND column_name = 'scored_at'`); got != "timestamp with time zone" {
			t.Fatalf("scored_at is %q", got)
		}
	})
	t.Run("query to table", func(t *testing.T) {
		sp := spec(slipway.BatchInput{Connection: "pg", Query: "SELECT id, x, y, cat FROM customers WHERE id % 2 = 0;"}, slipway.BatchOutput{Connection: "pg", Table: "even_scores"})
		r, err := h.svc.Create(context.Background(), sp, "")
		if err != nil {
			t.Fatal(err)
		}
		r = h.wait(r.ID)
		if r.State != slipway.BatchSucceeded || r.RowsTotal != int64(len(rows)/2) {
			t.Fatalf("%s (%s), %d rows total", r.State, r.Reason, r.RowsTotal)
		}
		want := map[int64]scoredRow{}
		for id, s := range expected(rows) {
			if id%2 == 0 {
				want[id] = s
			}
		}
		checkRows(t, readTable(t, "pgx", dsn, "even_scores"), want)
	})
	t.Run("resume", func(t *testing.T) {
		var commits atomic.Int32
		h.svc.afterCommit = func(string, int) {
			if commits.Add(1) == 4 {
				h.svc.cancel()
			}
		}
		r, err := h.svc.Create(context.Background(), spec(slipway.BatchInput{Path: "in.csv"}, slipway.BatchOutput{Connection: "pg", Table: "resumed"}), "")
		if err != nil {
			t.Fatal(err)
		}
		h.svc.wg.Wait()
		h.svc.Close()
		h.svc = h.open()
		r = h.wait(r.ID)
		if r.State != slipway.BatchSucceeded {
			t.Fatalf("%s: %s", r.State, r.Reason)
		}
		checkRows(t, readTable(t, "pgx", dsn, "resumed"), expected(rows))
		if n := pg.Psql(t, "warehouse", fmt.Sprintf(`SELECT COUNT(*) FROM slipway_batch_checkpoints WHERE batch_id = '%s'`, r.ID)); n != "15" {
			t.Fatalf("%s checkpoints, want 15", n)
		}
	})
	t.Run("incompatible table", func(t *testing.T) {
		pg.Psql(t, "warehouse", `CREATE TABLE taken (id TEXT, label BIGINT, score TEXT)`)
		r, _ := h.svc.Create(context.Background(), spec(slipway.BatchInput{Path: "in.csv"}, slipway.BatchOutput{Connection: "pg", Table: "taken"}), "")
		r = h.wait(r.ID)
		if r.State != slipway.BatchFailed || !strings.Contains(r.Reason, `column "score" is text, this run writes float values (DOUBLE PRECISION)`) {
			t.Fatalf("%s: %s", r.State, r.Reason)
		}
		if n := pg.Psql(t, "warehouse", `SELECT COUNT(*) FROM taken`); n != "0" {
			t.Fatalf("%s rows written", n)
		}
	})
	if got := h.svc.Connections(); len(got) != 1 || strings.Contains(fmt.Sprint(got), "postgres@") || got[0].Database != fmt.Sprintf("127.0.0.1:%d/warehouse", pg.Port) {
		t.Fatalf("connections = %+v", got)
	}
}

func TestParseConnections(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name    string
		values  []string
		want    []slipway.Connection
		wantErr string
	}{
		{"sqlite absolute", []string{"wh=sqlite://" + dir + "/w.db"}, []slipway.Connection{{Name: "wh", Driver: "sqlite", Database: dir + "/w.db"}}, ""},
		{"postgres without password shown", []string{"pg=postgres://bob:s3cret@db.example:6543/sales?sslmode=disable"},
			[]slipway.Connection{{Name: "pg", Driver: "postgres", Database: "db.example:6543/sales"}}, ""},
		{"postgresql scheme", []string{"pg=postgresql://bob@localhost/x"}, []slipway.Connection{{Name: "pg", Driver: "postgres", Database: "localhost:5432/x"}}, ""},
		{"no equals", []string{"sqlite:///x.db"}, nil, "use NAME=sqlite:///path/to.db"},
		{"bad name", []string{"Ware House=sqlite://" + dir + "/w.db"}, nil, "invalid name"},
		{"twice", []string{"a=sqlite://" + dir + "/a.db", "a=sqlite://" + dir + "/b.db"}, nil, "given twice"},
		{"unknown scheme", []string{"m=mysql://u:pw@h/db"}, nil, `unsupported database URL "mysql://u:****@h/db"`},
		{"missing folder", []string{"m=sqlite:///no/such/folder/x.db"}, nil, "folder /no/such/folder does not exist"},
		{"bad postgres url", []string{"p=postgres://u:pw@h:notaport/db"}, nil, "invalid PostgreSQL URL"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseConnections(tc.values)
			checkConnections(t, got, err, tc.want, tc.wantErr)
		})
	}
}

func TestSafeName(t *testing.T) {
	for in, want := range map[string]string{
		"data.csv": "data.csv", "../../etc/passwd": "passwd", `C:\Users\me\x y.parquet`: "x_y.parquet",
		"..": "upload", "": "upload", ".hidden.csv": "hidden.csv", "naïve.csv": "na_ve.csv",
	} {
		if got := safeName(in); got != want {
			t.Errorf("safeName(%q) = %q, want %q", in, got, want)
		}
	}
}

// parseConnections opens --connection values the way the server does (flags only).
func parseConnections(values []string) (map[string]*Conn, error) {
	specs, err := FlagConnSpecs(values)
	if err != nil {
		return nil, err
	}
	return ParseConnSpecs(specs)
}

// Delete removes a finished run and its output file; a run that is running or still stopping is refused, and
// output folders left without a run are removed at the next start.
func TestBatchDelete(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	h.writeInput("in.csv", makeRows(2000))
	kept, err := h.svc.Create(ctx, spec(slipway.BatchInput{Path: "in.csv"}, slipway.BatchOutput{Format: "csv"}), "")
	if err != nil {
		t.Fatal(err)
	}
	if r := h.wait(kept.ID); r.State != slipway.BatchSucceeded {
		t.Fatalf("%s: %s", r.State, r.Reason)
	}

	var once atomic.Bool
	refusals := make(chan error, 2)
	h.svc.afterCommit = func(id string, chunk int) {
		if !once.CompareAndSwap(false, true) {
			return
		}
		refusals <- h.svc.Delete(ctx, id) // IN_PROGRESS
		if _, err := h.svc.Cancel(ctx, id, ""); err != nil {
			t.Error(err)
		}
		refusals <- h.svc.Delete(ctx, id) // CANCELED, but this goroutine is still writing
	}
	sp := spec(slipway.BatchInput{Path: "in.csv"}, slipway.BatchOutput{Format: "csv"})
	sp.Parallel = 1
	r, err := h.svc.Create(ctx, sp, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"is IN_PROGRESS: cancel it first", "is still stopping"} {
		if err := <-refusals; slipway.ErrorCode(err) != slipway.ECONFLICT || !strings.Contains(err.Error(), want) {
			t.Fatalf("delete of a run that is not finished: %v, want a conflict saying %q", err, want)
		}
	}
	h.wait(r.ID)
	parts, err := h.db.FindBatchParts(ctx, r.ID)
	if err != nil || len(parts) == 0 || parts[0].Digest == "" {
		t.Fatalf("the canceled run has no committed part to delete: %+v %v", parts, err)
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		err := h.svc.Delete(ctx, r.ID)
		if err == nil {
			break
		}
		if !strings.Contains(err.Error(), "still stopping") || time.Now().After(deadline) {
			t.Fatal(err)
		}
	}
	if left, err := h.db.FindBatchParts(ctx, r.ID); err != nil || len(left) != 0 {
		t.Fatalf("parts after delete: %+v %v", left, err)
	}
	for _, p := range parts {
		if _, err := h.svc.blobs.Stat(ctx, p.Digest); !errors.Is(err, blob.ErrNotFound) {
			t.Fatalf("the blob of a deleted run's part: %v, want not found", err)
		}
	}
	// The kept run's output survives, and the deleted one's output is gone with it.
	keptRun, _ := h.db.FindBatchRun(ctx, kept.ID)
	if _, err := h.svc.blobs.Stat(ctx, keptRun.Output.SHA256); err != nil {
		t.Fatalf("the kept run's output blob: %v", err)
	}
	if _, err := h.svc.Get(ctx, r.ID); slipway.ErrorCode(err) != slipway.ENOTFOUND {
		t.Fatalf("get after delete: %v", err)
	}
	if err := h.svc.Delete(ctx, r.ID); slipway.ErrorCode(err) != slipway.ENOTFOUND {
		t.Fatalf("second delete: %v", err)
	}

	// A folder without a run (a delete interrupted between the record and the files) goes at the next start;
	// the other runs' outputs stay.
	orphan := h.svc.runDir("b-00000000000000000000")
	if err := os.MkdirAll(orphan, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(orphan, "part-000000.csv"), []byte("x\n"), 0o644)
	h.svc.Close()
	h.svc = h.open()
	if _, err := os.Stat(orphan); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("orphan output folder after a restart: %v", err)
	}
	if d, err := h.svc.OpenOutput(ctx, kept.ID); err != nil {
		t.Fatalf("the output of a run that was not deleted: %v", err)
	} else {
		d.Content.Close()
	}
}
