package monitor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/sqlstore"
	"github.com/slipway-ml/slipway/internal/workerproto"
)

// env is a monitor on real SQLite databases with one model version (churn-like schema) and one deployment.
type env struct {
	s    *Service
	db   *sqlstore.DB
	data *sqlstore.MonitorDB
	now  *fakeClock
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

var churnSchema = &slipway.Schema{Columns: []slipway.ColumnSpec{
	{Name: "age", Dtype: "float64"}, {Name: "plan", Dtype: "string"}}}

var churnOutputs = &slipway.Schema{Columns: []slipway.ColumnSpec{
	{Name: "prediction", Dtype: "int64"}, {Name: "probability", Dtype: "float64"}}}

func newEnv(tb testing.TB, mod func(*Config)) *env {
	tb.Helper()
	ctx := context.Background()
	dir := tb.TempDir()
	db, err := sqlstore.OpenSQLite(ctx, filepath.Join(dir, "slipway.db"))
	if err != nil {
		tb.Fatal(err)
	}
	data, err := sqlstore.OpenMonitorSQLite(ctx, filepath.Join(dir, "monitor.db"))
	if err != nil {
		tb.Fatal(err)
	}
	v := &slipway.ModelVersion{Model: "churn", State: slipway.VersionRegistering,
		VersionMetadata: slipway.VersionMetadata{Runtime: "python", InputSchema: churnSchema, OutputSchema: churnOutputs}}
	if err := db.CreateVersion(ctx, v); err != nil {
		tb.Fatal(err)
	}
	v.State = slipway.VersionReady
	if err := db.FinishVersion(ctx, v); err != nil {
		tb.Fatal(err)
	}
	if err := db.CreateDeployment(ctx, &slipway.Deployment{Name: "churn", State: slipway.DeploymentActive, Model: "churn",
		Version: 1, Replicas: 1, TimeoutMS: 1000, MaxQueue: 10}); err != nil {
		tb.Fatal(err)
	}
	clock := &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 30, 0, time.UTC)}
	cfg := Config{Store: db, Data: data, Models: db, Deployments: db, Now: clock.Now, TempDir: dir,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), WebhookBackoff: time.Millisecond}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		s.Close()
		data.Close()
		db.Close()
	})
	return &env{s: s, db: db, data: data, now: clock}
}

// predict records one successful prediction of rows (age, plan) with outputs.
func (e *env) predict(id string, ages []float64, plans []string, preds []int64, probs []float64) {
	ex := &Exchange{Deployment: "churn", Protocol: ProtoV2, Start: e.now.Now(), RequestID: id, BytesIn: 100}
	ex.Serving(1)
	ex.Tensors(1, "churn-1",
		[]workerproto.Tensor{workerproto.NewFloat64("age", nil, ages), workerproto.NewBytes("plan", nil, plans)},
		[]workerproto.Tensor{workerproto.NewInt64("prediction", nil, preds), workerproto.NewFloat64("probability", nil, probs)})
	e.s.Finish(ex, 200, 50)
}

// blockingData is a MonitoringDataStore whose InsertCaptures waits until released.
type blockingData struct {
	slipway.MonitoringDataStore
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

func (b *blockingData) InsertCaptures(ctx context.Context, cs []*slipway.Capture) error {
	b.once.Do(func() { close(b.entered) })
	<-b.release
	return b.MonitoringDataStore.InsertCaptures(ctx, cs)
}

// A full capture queue drops and counts: Finish never waits for the writer.
func TestCaptureQueueFullDropsAndCounts(t *testing.T) {
	var bd *blockingData
	e := newEnv(t, func(c *Config) {
		bd = &blockingData{MonitoringDataStore: c.Data, entered: make(chan struct{}), release: make(chan struct{})}
		c.Data, c.CaptureQueue = bd, 4
	})
	e.s.Start()
	e.predict("first", []float64{1}, []string{"a"}, []int64{0}, []float64{.1})
	// Fill until the writer holds one batch and the queue is full; every call returns at once.
	<-bd.entered
	const n = 100
	for i := range n {
		e.predict(fmt.Sprint("r", i), []float64{1}, []string{"a"}, []int64{0}, []float64{.1})
	}
	d := e.s.state("churn")
	a := d.minute.Load()
	if got := a.dropped.Load(); got < n-4 || a.captured.Load()+got != n+1 {
		t.Errorf("captured %d, dropped %d of %d", a.captured.Load(), got, n+1)
	}
	close(bd.release)
}

func TestFeedbackValidation(t *testing.T) {
	e := newEnv(t, nil)
	e.s.Start()
	e.predict("req-1", []float64{30, 40}, []string{"a", "b"}, []int64{0, 1}, []float64{.2, .8})
	ctx := context.Background()
	// Wait for the capture to be written (background writer).
	for range 200 {
		if rows, _ := e.data.CaptureRows(ctx, "churn", []string{"req-1"}); rows["req-1"] == 2 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	row := func(i int) *int { return &i }
	raw := func(s string) json.RawMessage { return json.RawMessage(s) }
	for _, tc := range []struct {
		name    string
		items   []slipway.FeedbackItem
		code    string
		want    string
		unknown int
	}{
		{"labels as int, bool and numeric text", []slipway.FeedbackItem{{RequestID: "req-1", Label: raw("1")}, {RequestID: "req-1", Row: row(1), Label: raw(`"0"`)}}, "", "", 0},
		{"bool label for an int prediction", []slipway.FeedbackItem{{RequestID: "req-1", Label: raw("true")}}, "", "", 0},
		{"unknown request and row", []slipway.FeedbackItem{{RequestID: "nope", Label: raw("1")}, {RequestID: "req-1", Row: row(5), Label: raw("1")}}, "", "", 2},
		{"text label for an int prediction", []slipway.FeedbackItem{{RequestID: "req-1", Label: raw(`"yes"`)}}, slipway.EINVALID, "must be an integer", 0},
		{"fractional label", []slipway.FeedbackItem{{RequestID: "req-1", Label: raw("0.5")}}, slipway.EINVALID, "for a regressor send value", 0},
		{"value for a classifier", []slipway.FeedbackItem{{RequestID: "req-1", Value: raw("0.5")}}, slipway.EINVALID, "classifier", 0},
		{"both", []slipway.FeedbackItem{{RequestID: "req-1", Label: raw("1"), Value: raw("1")}}, slipway.EINVALID, "exactly one", 0},
		{"object label", []slipway.FeedbackItem{{RequestID: "req-1", Label: raw(`{"a": 1}`)}}, slipway.EINVALID, "must be a class", 0},
		{"negative row", []slipway.FeedbackItem{{RequestID: "req-1", Row: row(-1), Label: raw("1")}}, slipway.EINVALID, "row must be", 0},
		{"duplicate in batch", []slipway.FeedbackItem{{RequestID: "req-1", Label: raw("1")}, {RequestID: "req-1", Label: raw("0")}}, slipway.EINVALID, "already has ground truth", 0},
		{"empty", nil, slipway.EINVALID, "empty", 0},
		{"too many", make([]slipway.FeedbackItem, MaxFeedbackItems+1), slipway.ETOOLARGE, "at most 10000", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := e.s.Feedback(ctx, "churn", tc.items)
			if tc.code != "" {
				if slipway.ErrorCode(err) != tc.code || !strings.Contains(slipway.ErrorMessage(err), tc.want) {
					t.Fatalf("error = %v, want %s mentioning %q", err, tc.code, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.UnknownCount != tc.unknown {
				t.Errorf("unknown = %+v, want %d", res.Unknown, tc.unknown)
			}
		})
	}
	// Idempotent: the same truth again is unchanged, a different one an update.
	res, err := e.s.Feedback(ctx, "churn", []slipway.FeedbackItem{{RequestID: "req-1", Label: raw("1")}, {RequestID: "req-1", Row: row(1), Label: raw("1")}})
	if err != nil || res.Unchanged != 1 || res.Updated != 1 {
		t.Fatalf("resend: %+v %v", res, err)
	}
	perf, err := e.s.Performance(ctx, "churn", e.now.Now().Add(-time.Hour), e.now.Now().Add(time.Minute), 24*time.Hour)
	if err != nil || len(perf) != 1 || perf[0].Labelled != 2 || perf[0].Classification.Accuracy != 0.5 {
		t.Fatalf("performance: %+v %v", perf, err)
	}
}

func TestBaselineFormatsAndErrors(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	type row struct {
		Age  float64 `parquet:"age"`
		Plan string  `parquet:"plan"`
		ID   int64   `parquet:"id"`
	}
	var pq bytes.Buffer
	parquet.Write(&pq, []row{{30, "a", 1}, {40, "b", 2}, {50, "a", 3}})
	var badType bytes.Buffer
	parquet.Write(&badType, []struct {
		Age  string `parquet:"age"`
		Plan string `parquet:"plan"`
	}{{"x", "a"}})
	for _, tc := range []struct {
		name, format, body string
		code, want         string
		rows               int64
	}{
		{"csv", FormatCSV, "id,age,plan\n1,30,a\n2,,b\n3,50,a\n", "", "", 3},
		{"csv with BOM and spaces", FormatCSV, "\ufeffage , plan\n30, a\n", "", "", 1},
		{"parquet", FormatParquet, pq.String(), "", "", 3},
		{"parquet text in a numeric feature", FormatParquet, badType.String(), slipway.EINVALID, "not a number", 0},
		{"empty", FormatCSV, "", slipway.EINVALID, "empty", 0},
		{"no rows", FormatCSV, "age,plan\n", slipway.EINVALID, "no rows", 0},
		{"missing feature", FormatCSV, "age\n1\n", slipway.EINVALID, "lacks input features", 0},
		{"duplicate column", FormatCSV, "age,plan,age\n1,a,2\n", slipway.EINVALID, "twice", 0},
		{"bad number", FormatCSV, "age,plan\n1,a\nx,b\n", slipway.EINVALID, `line 3, column "age"`, 0},
		{"infinite number", FormatCSV, "age,plan\ninf,a\n", slipway.EINVALID, "not a number", 0},
		{"ragged", FormatCSV, "age,plan\n1\n", slipway.EINVALID, "line 2", 0},
		{"unterminated quote", FormatCSV, "age,plan\n1,\"a\n", slipway.EINVALID, "not valid CSV", 0},
		{"not parquet", FormatParquet, "PAR1garbage", slipway.EINVALID, "Parquet", 0},
		{"unknown format", "xlsx", "x", slipway.EINVALID, "text/csv", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := e.s.PutBaseline(ctx, "churn", slipway.VersionRef{Number: 1}, tc.format, strings.NewReader(tc.body), "test")
			if tc.code != "" {
				if slipway.ErrorCode(err) != tc.code || !strings.Contains(slipway.ErrorMessage(err), tc.want) {
					t.Fatalf("error = %v, want %s mentioning %q", err, tc.code, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if b.Profile.Rows != tc.rows || len(b.Profile.Features) != 2 || b.Profile.Features[1].Kind != "categorical" {
				t.Fatalf("profile: %+v", b.Profile)
			}
		})
	}
	if _, err := e.s.PutBaseline(ctx, "churn", slipway.VersionRef{Number: 9}, FormatCSV, strings.NewReader("age,plan\n1,a\n"), ""); slipway.ErrorCode(err) != slipway.ENOTFOUND {
		t.Errorf("unknown version: %v", err)
	}
}

// Drift is detected on exactly the shifted feature, with the default methods for the reference's size.
func TestDriftDetectsShiftedFeatures(t *testing.T) {
	for _, tc := range []struct {
		name      string
		refRows   int
		numMethod string
		catMethod string
	}{
		{"small reference", 800, MethodKS, MethodChiSquare},
		{"large reference", 5000, MethodWasserstein, MethodJensenShannon},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			ctx := context.Background()
			r := rand.New(rand.NewPCG(1, uint64(tc.refRows)))
			var csv strings.Builder
			csv.WriteString("age,plan\n")
			plans := []string{"basic", "pro", "enterprise"}
			for range tc.refRows {
				fmt.Fprintf(&csv, "%.0f,%s\n", 40+12*r.NormFloat64(), plans[r.IntN(3)])
			}
			if _, err := e.s.PutBaseline(ctx, "churn", slipway.VersionRef{Number: 1}, FormatCSV, strings.NewReader(csv.String()), ""); err != nil {
				t.Fatal(err)
			}
			window := func(shiftAge bool, skewPlan bool) *slipway.DriftReport {
				from := e.now.Now()
				var caps []*slipway.Capture
				for i := range 40 {
					ages, ps := make([]float64, 50), make([]string, 50)
					for j := range ages {
						ages[j] = math.Round(40 + 12*r.NormFloat64())
						if shiftAge {
							ages[j] += 10
						}
						ps[j] = plans[r.IntN(3)]
						if skewPlan && r.IntN(2) == 0 {
							ps[j] = "enterprise"
						}
					}
					in := workerproto.EncodeTensors(nil, []workerproto.Tensor{workerproto.NewFloat64("age", nil, ages), workerproto.NewBytes("plan", nil, ps)})
					caps = append(caps, &slipway.Capture{Deployment: "churn", RequestID: fmt.Sprint(i), ModelVersion: 1,
						Time: e.now.Now(), Rows: 50, Protocol: ProtoV2, Inputs: in, Outputs: workerproto.EncodeTensors(nil, nil)})
					e.now.Add(time.Second)
				}
				if err := e.data.InsertCaptures(ctx, caps); err != nil {
					t.Fatal(err)
				}
				rep, err := e.s.Drift(ctx, "churn", from, e.now.Now())
				if err != nil {
					t.Fatal(err)
				}
				if rep.Rows != 2000 || rep.Features[0].Method != tc.numMethod || rep.Features[1].Method != tc.catMethod {
					t.Fatalf("report: %d rows, methods %s/%s", rep.Rows, rep.Features[0].Method, rep.Features[1].Method)
				}
				return rep
			}
			for _, w := range []struct {
				shift, skew bool
				age, plan   bool
			}{{false, false, false, false}, {true, false, true, false}, {false, true, false, true}} {
				rep := window(w.shift, w.skew)
				if rep.Features[0].Drifted != w.age || rep.Features[1].Drifted != w.plan {
					t.Errorf("shift age %v, skew plan %v: drifted age %v plan %v (%+v)", w.shift, w.skew, rep.Features[0].Drifted, rep.Features[1].Drifted, rep.Features)
				}
			}
		})
	}
}

// Per-feature overrides change the method and threshold; a numeric-only method on a category falls back.
func TestDriftOverrides(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	if _, err := e.s.PutBaseline(ctx, "churn", slipway.VersionRef{Number: 1}, FormatCSV, strings.NewReader("age,plan\n1,a\n2,b\n3,a\n4,b\n5,a\n6,b\n7,a\n"), ""); err != nil {
		t.Fatal(err)
	}
	th := 0.5
	if _, err := e.s.PutSettings(ctx, "churn", slipway.MonitoringSettings{SamplingRate: 1, Features: map[string]slipway.FeatureSettings{
		"age": {Method: MethodPSI, Threshold: &th}, "plan": {Method: MethodKS}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.PutSettings(ctx, "churn", slipway.MonitoringSettings{Features: map[string]slipway.FeatureSettings{"age": {Method: "magic"}}}); slipway.ErrorCode(err) != slipway.EINVALID {
		t.Errorf("unknown method: %v", err)
	}
	in := workerproto.EncodeTensors(nil, []workerproto.Tensor{workerproto.NewFloat64("age", nil, []float64{1, 2, 3}), workerproto.NewBytes("plan", nil, []string{"a", "b", "a"})})
	e.data.InsertCaptures(ctx, []*slipway.Capture{{Deployment: "churn", RequestID: "x", ModelVersion: 1, Time: e.now.Now(), Rows: 3, Protocol: ProtoV2, Inputs: in, Outputs: in}})
	rep, err := e.s.Drift(ctx, "churn", e.now.Now().Add(-time.Minute), e.now.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if f := rep.Features[0]; f.Method != MethodPSI || f.Threshold != 0.5 || f.PSI == nil || *f.Statistic != *f.PSI {
		t.Errorf("age: %+v", f)
	}
	if f := rep.Features[1]; f.Method != MethodChiSquare || !strings.Contains(f.Note, "numbers only") {
		t.Errorf("plan: %+v", f)
	}
	if _, err := e.s.Drift(ctx, "churn", e.now.Now(), e.now.Now().Add(-time.Minute)); slipway.ErrorCode(err) != slipway.EINVALID {
		t.Errorf("reversed range: %v", err)
	}
}

// Alerts: a rule fires once, its webhook is retried until it succeeds and is signed; resolving notifies again.
func TestAlertWebhookRetriesAndSignature(t *testing.T) {
	const secret = "0123456789abcdef-secret"
	var calls atomic.Int32
	got := make(chan WebhookPayload, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= 2 {
			w.WriteHeader(http.StatusServiceUnavailable) // retried
			return
		}
		body, _ := io.ReadAll(r.Body)
		if Signature(secret, r.Header.Get("X-Slipway-Timestamp"), body) != r.Header.Get("X-Slipway-Signature") {
			t.Errorf("bad signature")
		}
		var p WebhookPayload
		json.Unmarshal(body, &p)
		got <- p
	}))
	defer srv.Close()
	e := newEnv(t, nil)
	e.s.Start()
	ctx := context.Background()
	if _, err := e.s.CreateAlertRule(ctx, "churn", slipway.AlertRule{Name: "busy", Metric: "requests", Op: "above", Threshold: 2,
		Window: slipway.Duration(10 * time.Minute), Webhook: &slipway.Webhook{URL: srv.URL, Secret: secret}}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		e.predict(fmt.Sprint(i), []float64{1}, []string{"a"}, []int64{0}, []float64{.1})
	}
	rules, err := e.s.EvaluateAlerts(ctx, "churn")
	if err != nil || rules[0].State != slipway.AlertFiring || *rules[0].Value != 3 || rules[0].Webhook.Secret != "" {
		t.Fatalf("evaluate: %+v %v", rules[0], err)
	}
	if p := <-got; p.Type != "alert.firing" || p.Rule.Name != "busy" || *p.Value != 3 {
		t.Fatalf("payload: %+v", p)
	}
	if calls.Load() != 3 {
		t.Errorf("webhook called %d times, want 3 (two 503s retried)", calls.Load())
	}
	// Nothing changes: no new event. Then the requests leave the window: resolved.
	if _, err := e.s.EvaluateAlerts(ctx, "churn"); err != nil {
		t.Fatal(err)
	}
	e.now.Add(20 * time.Minute)
	rules, _ = e.s.EvaluateAlerts(ctx, "churn")
	if rules[0].State != slipway.AlertOK {
		t.Fatalf("state after the window: %s", rules[0].State)
	}
	if p := <-got; p.Type != "alert.resolved" {
		t.Fatalf("payload: %+v", p)
	}
	evs, _ := e.s.AlertEvents(ctx, "churn", 10)
	if len(evs) != 2 || evs[0].State != slipway.AlertOK || evs[1].State != slipway.AlertFiring {
		t.Fatalf("history: %+v", evs)
	}
}

func TestAlertRuleValidation(t *testing.T) {
	e := newEnv(t, nil)
	e.s.RegisterAction("pipeline", func(context.Context, string, *slipway.AlertEvent) error { return nil },
		func(_ context.Context, target string) error {
			if target != "retrain" {
				return errors.New("no such pipeline")
			}
			return nil
		})
	ctx := context.Background()
	ok := slipway.AlertRule{Name: "r", Metric: "accuracy", Op: "below", Threshold: 0.8}
	for _, tc := range []struct {
		name string
		mod  func(*slipway.AlertRule)
		want string
	}{
		{"valid with a pipeline action", func(r *slipway.AlertRule) { r.Action = &slipway.AlertAction{Kind: "pipeline", Target: "retrain"} }, ""},
		{"a pipeline that does not exist", func(r *slipway.AlertRule) { r.Action = &slipway.AlertAction{Kind: "pipeline", Target: "nope"} }, `action pipeline "nope": no such pipeline`},
		{"an action kind nobody registered", func(r *slipway.AlertRule) { r.Action = &slipway.AlertAction{Kind: "email", Target: "x"} }, `action kind "email" is not available`},
		{"bad name", func(r *slipway.AlertRule) { r.Name = "Bad Name" }, "invalid alert rule name"},
		{"bad metric", func(r *slipway.AlertRule) { r.Metric = "speed" }, "metric"},
		{"bad op", func(r *slipway.AlertRule) { r.Op = ">" }, "op must be"},
		{"NaN threshold", func(r *slipway.AlertRule) { r.Threshold = math.NaN() }, "finite"},
		{"short window", func(r *slipway.AlertRule) { r.Window = slipway.Duration(time.Second) }, "window"},
		{"short secret", func(r *slipway.AlertRule) { r.Webhook = &slipway.Webhook{URL: "http://x", Secret: "short"} }, "16 characters"},
		{"unknown action", func(r *slipway.AlertRule) { r.Action = &slipway.AlertAction{Kind: "email"} }, "not available"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := ok
			r.Name = strings.ReplaceAll(strings.ToLower(tc.name), " ", "-")
			tc.mod(&r)
			_, err := e.s.CreateAlertRule(ctx, "churn", r)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if slipway.ErrorCode(err) != slipway.EINVALID || !strings.Contains(slipway.ErrorMessage(err), tc.want) {
				t.Fatalf("error = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
	if _, err := e.s.CreateAlertRule(ctx, "nope", ok); slipway.ErrorCode(err) != slipway.ENOTFOUND {
		t.Errorf("unknown deployment: %v", err)
	}
}

// The Prometheus output parses with the official parser and counts what Finish saw; unknown deployments are not
// labelled (no cardinality from arbitrary URLs).
func TestPrometheusOutput(t *testing.T) {
	e := newEnv(t, nil)
	for i := range 5 {
		e.predict(fmt.Sprint(i), []float64{1}, []string{"a"}, []int64{0}, []float64{.1})
	}
	e.s.Finish(&Exchange{Deployment: "churn", Protocol: ProtoV2, Start: e.now.Now(), known: true}, 429, 10)
	e.s.Finish(&Exchange{Deployment: "random-name", Protocol: ProtoV2, Start: e.now.Now()}, 404, 10)
	e.s.Observer("churn").Rejected()
	e.s.Observer("churn").Batch(32, 4)
	var buf bytes.Buffer
	mfs, err := e.s.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		expfmt.MetricFamilyToText(&buf, mf)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(&buf)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]float64{}
	for _, m := range fams["slipway_predict_requests_total"].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		counts[labels["deployment"]+"/"+labels["code"]] = m.GetCounter().GetValue()
	}
	if counts["churn/200"] != 5 || counts["churn/429"] != 1 || len(counts) != 2 {
		t.Errorf("requests = %v", counts)
	}
	if v := fams["slipway_deployment_rejected_total"].GetMetric()[0].GetCounter().GetValue(); v != 1 {
		t.Errorf("rejected = %v", v)
	}
	if h := fams["slipway_deployment_batch_rows"].GetMetric()[0].GetHistogram(); h.GetSampleSum() != 32 {
		t.Errorf("batch rows = %v", h.GetSampleSum())
	}
}

// Minutes roll up into stored points with the latency percentiles of what was recorded.
func TestMinuteRollup(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	for i := range 100 {
		ex := &Exchange{Deployment: "churn", Protocol: ProtoPredict, Start: e.now.Now().Add(-time.Duration(i+1) * time.Millisecond), known: true, BytesIn: 10}
		e.s.Finish(ex, 200, 20)
	}
	e.now.Add(time.Minute)
	e.s.rollMinutes(ctx)
	pts, err := e.data.FindMetricPoints(ctx, "churn", e.now.Now().Add(-time.Hour), e.now.Now())
	if err != nil || len(pts) != 1 {
		t.Fatalf("points: %v %v", pts, err)
	}
	p := pts[0]
	if p.Requests != 100 || p.BytesIn != 1000 || p.BytesOut != 2000 || p.LatencyMaxMS != 100 {
		t.Errorf("point: %+v", p)
	}
	// Percentiles are bucket bounds within 10% of the exact value.
	for _, c := range []struct{ got, want float64 }{{p.LatencyP50MS, 50}, {p.LatencyP99MS, 99}} {
		if c.got < c.want*0.99 || c.got > c.want*1.11 {
			t.Errorf("percentile %v, want about %v", c.got, c.want)
		}
	}
}

func TestJSONTable(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		names      []string
		want       string
		err        bool
	}{
		{"data and columns", `{"data": [[1, "a"], [2, "b"]], "columns": ["x", "y"]}`, nil, "x:FP64[2] y:BYTES[2]", false},
		{"rows with schema names", `[[1, "a"]]`, []string{"x", "y"}, "x:FP64[1] y:BYTES[1]", false},
		{"records", `[{"x": 1, "y": null}, {"x": 2, "y": 3}]`, nil, "x:FP64[2] y:FP64[2]", false},
		{"one record", `{"x": 1, "y": "a"}`, nil, "x:FP64[1] y:BYTES[1]", false},
		{"columns object", `{"prediction": [0, 1], "probability": [0.1, 0.9]}`, nil, "prediction:FP64[2] probability:FP64[2]", false},
		{"data as columns", `{"data": {"x": [1, 2]}}`, nil, "x:FP64[2]", false},
		{"list of scalars", `[0, 1, 1]`, []string{"prediction"}, "prediction:FP64[3]", false},
		{"ragged columns", `{"a": [1], "b": [1, 2]}`, nil, "", true},
		{"rows without names", `[[1, 2]]`, nil, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts, err := jsonTable([]byte(tc.body), tc.names)
			if tc.err {
				if err == nil {
					t.Fatal("no error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var parts []string
			for _, x := range ts {
				parts = append(parts, fmt.Sprintf("%s:%s%v", x.Name, x.Datatype, x.Shape))
			}
			if got := strings.Join(parts, " "); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func TestSettingsValidation(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		s    slipway.MonitoringSettings
		want string
	}{
		{"defaults", slipway.MonitoringSettings{SamplingRate: 0.5}, ""},
		{"rate above 1", slipway.MonitoringSettings{SamplingRate: 2}, "sampling_rate"},
		{"odd window", slipway.MonitoringSettings{DriftWindow: slipway.Duration(7 * time.Minute)}, "drift_window"},
		{"bad task", slipway.MonitoringSettings{Task: "ranking"}, "task"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := e.s.PutSettings(ctx, "churn", tc.s)
			if tc.want == "" {
				if err != nil || got.DriftWindow.D() != time.Hour || got.CaptureMaxRequests == 0 {
					t.Fatalf("%+v %v", got, err)
				}
				return
			}
			if !strings.Contains(slipway.ErrorMessage(err), tc.want) {
				t.Fatalf("error = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
	if _, err := e.s.PutSettings(ctx, "nope", slipway.MonitoringSettings{}); slipway.ErrorCode(err) != slipway.ENOTFOUND {
		t.Errorf("unknown deployment: %v", err)
	}
	var d slipway.Duration
	if err := json.Unmarshal([]byte(`"soon"`), &d); err == nil || !strings.Contains(err.Error(), "90s") {
		t.Errorf("bad duration: %v", err)
	}
	_ = errors.New
}

// capture_max_per_second bounds the captures whatever the traffic; the next second captures again.
func TestCaptureRateLimit(t *testing.T) {
	e := newEnv(t, nil)
	if _, err := e.s.PutSettings(context.Background(), "churn", slipway.MonitoringSettings{SamplingRate: 1, CaptureMaxPerSecond: 10}); err != nil {
		t.Fatal(err)
	}
	for i := range 25 {
		e.predict(fmt.Sprint(i), []float64{1}, []string{"a"}, []int64{0}, []float64{.1})
	}
	e.now.Add(time.Second)
	for i := range 5 {
		e.predict(fmt.Sprint("next", i), []float64{1}, []string{"a"}, []int64{0}, []float64{.1})
	}
	if got := len(e.s.captures); got != 15 {
		t.Errorf("%d captures queued, want 10 + 5", got)
	}
	if _, err := e.s.PutSettings(context.Background(), "churn", slipway.MonitoringSettings{CaptureMaxPerSecond: -1}); slipway.ErrorCode(err) != slipway.EINVALID {
		t.Errorf("negative limit: %v", err)
	}
}

// access_log_max_per_second bounds the access lines of successful requests; errors are always logged, and the
// next second logs again.
func TestAccessLogRateLimit(t *testing.T) {
	e := newEnv(t, nil)
	if _, err := e.s.PutSettings(context.Background(), "churn", slipway.MonitoringSettings{SamplingRate: 1, AccessLogMaxPerSecond: 10}); err != nil {
		t.Fatal(err)
	}
	for i := range 25 {
		e.predict(fmt.Sprint(i), []float64{1}, []string{"a"}, []int64{0}, []float64{.1})
	}
	for i := range 3 {
		ex := &Exchange{Deployment: "churn", Protocol: ProtoV2, Start: e.now.Now(), RequestID: fmt.Sprint("bad", i)}
		ex.Serving(1)
		e.s.Finish(ex, 400, 10)
	}
	e.now.Add(time.Second)
	for i := range 5 {
		e.predict(fmt.Sprint("next", i), []float64{1}, []string{"a"}, []int64{0}, []float64{.1})
	}
	if got := len(e.s.logs); got != 10+3+5 {
		t.Errorf("%d access lines queued, want 10 + 3 errors + 5", got)
	}
	if _, err := e.s.PutSettings(context.Background(), "churn", slipway.MonitoringSettings{AccessLogMaxPerSecond: -1}); slipway.ErrorCode(err) != slipway.EINVALID {
		t.Errorf("negative limit: %v", err)
	}
}

// A version's totals keep client mistakes (4xx) apart from failures (5xx), and out of its latency: canary
// analysis judges a version on the requests that were not the client's mistake.
func TestVersionTotalsSeparateClientErrors(t *testing.T) {
	e := newEnv(t, nil)
	finish := func(status, n int) {
		for range n {
			e.s.Finish(&Exchange{Deployment: "churn", Protocol: ProtoPredict, Start: e.now.Now(), known: true, version: 2}, status, 10)
		}
	}
	finish(200, 3)
	finish(500, 1)
	finish(400, 50)
	finish(415, 50)
	got := e.s.VersionTotals("churn", 2)
	if got.Requests != 104 || got.Errors != 1 || got.ClientErrors != 100 || got.Served() != 4 {
		t.Fatalf("totals = requests %d, errors %d, client errors %d, served %d; want 104, 1, 100, 4",
			got.Requests, got.Errors, got.ClientErrors, got.Served())
	}
	var inLatency int64
	for _, n := range got.Latency {
		inLatency += n
	}
	if inLatency != 4 {
		t.Errorf("%d requests in the latency buckets, want the 4 that were not 4xx", inLatency)
	}
}

// The error_rate alert is 5xx out of the requests that were not the client's mistake: a flood of 4xx neither
// fires it nor hides the failures it watches.
func TestErrorRateAlertLeavesClientErrorsOut(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	if _, err := e.s.CreateAlertRule(ctx, "churn", slipway.AlertRule{Name: "failing", Metric: "error_rate", Op: "above",
		Threshold: 0.1, Window: slipway.Duration(10 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
	finish := func(status, n int) {
		for range n {
			e.s.Finish(&Exchange{Deployment: "churn", Protocol: ProtoPredict, Start: e.now.Now(), known: true, version: 1}, status, 10)
		}
	}
	finish(200, 9)
	finish(400, 1000)
	rules, err := e.s.EvaluateAlerts(ctx, "churn")
	if err != nil || rules[0].State == slipway.AlertFiring || rules[0].Value == nil || *rules[0].Value != 0 {
		t.Fatalf("after a flood of 400s: %+v, %v; want an error rate of 0, not firing", rules[0], err)
	}
	finish(500, 2)
	rules, err = e.s.EvaluateAlerts(ctx, "churn")
	if err != nil || rules[0].State != slipway.AlertFiring || rules[0].Value == nil || *rules[0].Value != 2.0/11 {
		t.Fatalf("2 failures in 11 served requests: %+v, %v; want 2/11, firing", rules[0], err)
	}
}
