package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
)

// fakeDeployAPI stands in for the deployment and prediction routes. Every write answers with answer (or
// fails with errStatus), and successive GETs of the deployment answer gets in turn, the last one repeating:
// a deployment that starts, then settles.
type fakeDeployAPI struct {
	srv *httptest.Server

	mu        sync.Mutex
	requests  []string // "METHOD /path body"
	answer    *slipway.Deployment
	gets      []*slipway.Deployment
	list      []*slipway.Deployment
	version   *slipway.ModelVersion
	errStatus int // when set, writes fail with this status and errDetail
	errDetail string
	// prediction endpoints
	predictCT  string
	predictOut string
	v2Error    string // when set, the v2 endpoint answers 400 with this {"error": ...}
}

func newFakeDeployAPI(tb testing.TB) *fakeDeployAPI {
	f := &fakeDeployAPI{predictOut: `{"predictions":[0.25,0.75]}`}
	mux := http.NewServeMux()
	write := func(status int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.errStatus != 0 {
				writeProblem(w, f.errStatus, codeFor(f.errStatus), f.errDetail)
				return
			}
			if status == http.StatusNoContent {
				w.WriteHeader(status)
				return
			}
			writeJSON(w, status, f.answer)
		}
	}
	mux.HandleFunc("POST /api/v1/deployments", write(http.StatusCreated))
	mux.HandleFunc("PATCH /api/v1/deployments/{name}", write(http.StatusOK))
	mux.HandleFunc("DELETE /api/v1/deployments/{name}", write(http.StatusNoContent))
	mux.HandleFunc("POST /api/v1/deployments/{name}/activate", write(http.StatusOK))
	mux.HandleFunc("POST /api/v1/deployments/{name}/deactivate", write(http.StatusOK))
	mux.HandleFunc("GET /api/v1/deployments", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		writeJSON(w, 200, map[string]any{"items": f.list, "total": len(f.list), "offset": 0, "limit": len(f.list)})
	})
	mux.HandleFunc("GET /api/v1/deployments/{name}", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if len(f.gets) == 0 {
			writeProblem(w, 404, slipway.ENOTFOUND, "deployment "+r.PathValue("name")+" not found")
			return
		}
		d := f.gets[0]
		if len(f.gets) > 1 {
			f.gets = f.gets[1:]
		}
		writeJSON(w, 200, d)
	})
	mux.HandleFunc("GET /api/v1/models/{model}/versions/{version}", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.version == nil {
			writeProblem(w, 404, slipway.ENOTFOUND, "version not found")
			return
		}
		writeJSON(w, 200, f.version)
	})
	predict := func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.predictCT = r.Header.Get("Content-Type")
		w.Header().Set("X-Request-Id", "req-5")
		w.Header().Set("X-Slipway-Model-Version", "3")
		w.Header().Set("X-Slipway-Replica", "churn-api-v3-0")
		if f.v2Error != "" && strings.HasPrefix(r.URL.Path, "/v2/") {
			writeJSON(w, 400, map[string]string{"error": f.v2Error})
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, f.predictOut)
	}
	mux.HandleFunc("POST /deployments/{name}/predict", predict)
	mux.HandleFunc("POST /deployments/{name}/invocations", predict)
	mux.HandleFunc("POST /v2/models/{name}/infer", predict)
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(b))
		f.mu.Lock()
		f.requests = append(f.requests, strings.TrimSpace(r.Method+" "+r.URL.Path+" "+string(bytes.TrimSpace(b))))
		f.mu.Unlock()
		mux.ServeHTTP(w, r)
	}))
	tb.Cleanup(f.srv.Close)
	return f
}

func codeFor(status int) string {
	switch status {
	case 400:
		return slipway.EINVALID
	case 404:
		return slipway.ENOTFOUND
	case 409:
		return slipway.ECONFLICT
	}
	return slipway.EINTERNAL
}

func (f *fakeDeployAPI) env() map[string]string {
	return map[string]string{"SLIPWAY_URL": f.srv.URL, "SLIPWAY_TOKEN": "tok"}
}

// writes returns the requests other than GETs.
func (f *fakeDeployAPI) writes() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, r := range f.requests {
		if !strings.HasPrefix(r, "GET ") {
			out = append(out, r)
		}
	}
	return out
}

func (f *fakeDeployAPI) count(prefix string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, r := range f.requests {
		if strings.HasPrefix(r, prefix) {
			n++
		}
	}
	return n
}

// runCLI is cliRun with fast polling and stdin.
func runCLI(tb testing.TB, env map[string]string, stdin string, args ...string) (string, string, int) {
	tb.Helper()
	var stdout, stderr bytes.Buffer
	a := &app{stdin: strings.NewReader(stdin), stdout: &stdout, stderr: &stderr, poll: time.Millisecond,
		getenv: func(k string) string { return env[k] }}
	code := a.execute(context.Background(), args)
	return stdout.String(), stderr.String(), code
}

var testTime = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

// testDeployment returns a deployment of churn version 3 in state with ready of its replicas READY.
func withCanary(d *slipway.Deployment, c slipway.Canary) *slipway.Deployment {
	out := *d
	out.Canary = &c
	return &out
}

func testDeployment(state slipway.DeploymentState, replicas, ready int) *slipway.Deployment {
	d := &slipway.Deployment{Name: "churn-api", State: state, Model: "churn", Version: 3, Alias: "champion", FollowAlias: true,
		Replicas: replicas, Batching: &slipway.Batching{MaxBatchSize: 32, MaxWaitMS: 5}, TimeoutMS: 30000, MaxQueue: 100,
		Env: map[string]string{"OMP_NUM_THREADS": "1", "API_KEY": "hunter2"}, CreatedAt: testTime, UpdatedAt: testTime,
		ReplicaStatus: []slipway.ReplicaStatus{},
		URLs: &slipway.DeploymentURLs{Predict: "/deployments/churn-api/predict", Invocations: "/deployments/churn-api/invocations",
			V2Infer: "/v2/models/churn-api/infer"}}
	for i := range replicas {
		r := slipway.ReplicaStatus{ID: "churn-api-v3-" + string(rune('0'+i)), Version: 3, State: "STARTING", StartedAt: testTime}
		if i < ready {
			r.State, r.PID = "READY", 4100+i
		}
		d.ReplicaStatus = append(d.ReplicaStatus, r)
	}
	return d
}

// pinned marks d as pinned to the version its alias named.
func pinned(d *slipway.Deployment) *slipway.Deployment {
	d.FollowAlias = false
	return d
}

func withReason(d *slipway.Deployment, reason string) *slipway.Deployment {
	d.Reason = reason
	return d
}

func TestDeploy(t *testing.T) {
	min0 := 18.0
	version := &slipway.ModelVersion{Model: "churn", Version: 3, State: slipway.VersionReady,
		VersionMetadata: slipway.VersionMetadata{SampleInput: json.RawMessage(`{"data": [[41.0, "it's pro"]]}`),
			InputSchema: &slipway.Schema{Columns: []slipway.ColumnSpec{{Name: "age", Dtype: "float64", Min: &min0},
				{Name: "plan", Dtype: "string", Allowed: []any{"basic", "pro"}}}}}}
	tests := []struct {
		name       string
		args       []string
		gets       []*slipway.Deployment
		wantCode   int
		wantWrite  string   // the create request
		wantGets   int      // polls of the deployment
		wantStdout []string // substrings
		notStdout  []string
		wantStderr string // exact
	}{
		{
			name: "waits until ACTIVE and shows how to call it",
			args: []string{"deploy", "churn-api", "--model", "churn@champion", "--follow-alias", "--replicas", "2",
				"--batch-size", "32", "--env", "OMP_NUM_THREADS=1", "--env", "API_KEY=hunter2"},
			gets: []*slipway.Deployment{testDeployment(slipway.DeploymentCreating, 2, 0), testDeployment(slipway.DeploymentCreating, 2, 1),
				testDeployment(slipway.DeploymentActive, 2, 2)},
			wantWrite: `POST /api/v1/deployments {"name":"churn-api","model":"churn","alias":"champion","follow_alias":true,"replicas":2,` +
				`"batching":{"max_batch_size":32,"max_wait_ms":0},"env":{"API_KEY":"hunter2","OMP_NUM_THREADS":"1"}}`,
			wantGets: 3,
			wantStdout: []string{
				"State:            ACTIVE\n",
				"Model:            churn version 3 (@champion, followed)\n",
				"Replicas:         2 (2 ready)\n",
				"Batching:         up to 32 requests, waiting at most 5 ms\n",
				"Env:              API_KEY, OMP_NUM_THREADS\n",
				"V2 infer URL:     http://127.0.0.1:",
				"ID              VERSION  STATE  PID   RESTARTS  IN FLIGHT  LAST ERROR\n" +
					"churn-api-v3-0  3        READY  4100  0         0          -\n",
				"/deployments/churn-api/predict \\\n    -H \"Authorization: Bearer $SLIPWAY_TOKEN\" -H \"Content-Type: application/json\" \\\n" +
					`    -d '{"data":[[41.0,"it'\''s pro"]]}'` + "\n",
				`-d '{"dataframe_split":{"columns":["age","plan"],"data":[[18,"basic"]]}}'`,
				`-d '{"inputs":[{"name":"age","shape":[1],"datatype":"FP64","data":[18]},{"name":"plan","shape":[1],"datatype":"BYTES","data":["basic"]}]}'`,
				"# or: slipway predict churn-api --data input.json\n",
			},
			notStdout: []string{"hunter2"},
		},
		{
			name:      "the newest version with the server's defaults",
			args:      []string{"deploy", "churn-api", "-m", "churn"},
			gets:      []*slipway.Deployment{testDeployment(slipway.DeploymentActive, 1, 1)},
			wantWrite: `POST /api/v1/deployments {"name":"churn-api","model":"churn"}`,
			wantGets:  1,
		},
		{
			name:      "resources",
			args:      []string{"deploy", "churn-api", "-m", "churn", "--cpu", "0.5", "--memory-mb", "512"},
			gets:      []*slipway.Deployment{testDeployment(slipway.DeploymentActive, 1, 1)},
			wantWrite: `POST /api/v1/deployments {"name":"churn-api","model":"churn","resources":{"cpu":0.5,"memory_mb":512}}`,
			wantGets:  1,
		},
		{
			name: "autoscaling to zero, lazy",
			args: []string{"deploy", "churn-api", "-m", "churn", "--min-replicas", "0", "--max-replicas", "4", "--target-in-flight", "2.5",
				"--scale-down-after", "2s", "--replicas", "0", "--load", "lazy"},
			gets: []*slipway.Deployment{testDeployment(slipway.DeploymentActive, 1, 1)},
			wantWrite: `POST /api/v1/deployments {"name":"churn-api","model":"churn","replicas":0,` +
				`"autoscaling":{"min_replicas":0,"max_replicas":4,"target_in_flight":2.5,"scale_down_after_s":2},"load":"lazy"}`,
			wantGets: 1,
		},
		{
			name: "autoscaling needs a maximum", args: []string{"deploy", "churn-api", "-m", "churn", "--min-replicas", "0"},
			wantCode: 1, wantStderr: "Error: autoscaling needs --max-replicas\n",
		},
		{
			name:      "a pinned version, batching and limits",
			args:      []string{"deploy", "churn-api", "--model", "churn:3", "--batch-size", "8", "--batch-wait-ms", "20", "--timeout-ms", "500", "--max-queue", "0"},
			gets:      []*slipway.Deployment{testDeployment(slipway.DeploymentActive, 1, 1)},
			wantWrite: `POST /api/v1/deployments {"name":"churn-api","model":"churn","version":3,"batching":{"max_batch_size":8,"max_wait_ms":20},"timeout_ms":500,"max_queue":0}`,
			wantGets:  1,
		},
		{
			name: "FAILED prints the replicas and the reason",
			args: []string{"deploy", "churn-api", "--model", "churn@champion"},
			gets: []*slipway.Deployment{testDeployment(slipway.DeploymentCreating, 1, 0),
				withReason(testDeployment(slipway.DeploymentFailed, 0, 0), "replica exited 1: ModuleNotFoundError: No module named 'sklearn'")},
			wantCode:   1,
			wantWrite:  `POST /api/v1/deployments {"name":"churn-api","model":"churn","alias":"champion"}`,
			wantGets:   2,
			wantStdout: []string{"State:            FAILED\n", "Reason:           replica exited 1: ModuleNotFoundError"},
			notStdout:  []string{"curl"},
			wantStderr: "Error: deployment churn-api is FAILED: replica exited 1: ModuleNotFoundError: No module named 'sklearn'\n",
		},
		{
			name: "a traceback in the reason is shown in full once",
			args: []string{"deploy", "churn-api", "--model", "churn"},
			gets: []*slipway.Deployment{withReason(testDeployment(slipway.DeploymentFailed, 1, 0),
				"replica churn-api-1: model failed to load: RuntimeError: boom\nTraceback (most recent call last):\n  File \"score.py\", line 4\nRuntimeError: boom\n")},
			wantCode: 1, wantWrite: `POST /api/v1/deployments {"name":"churn-api","model":"churn"}`, wantGets: 1,
			wantStdout: []string{"Reason:           replica churn-api-1: model failed to load: RuntimeError: boom\nModel:",
				"\nReason in full:\n  replica churn-api-1: model failed to load: RuntimeError: boom\n  Traceback (most recent call last):\n    File \"score.py\", line 4\n  RuntimeError: boom\n"},
			wantStderr: "Error: deployment churn-api is FAILED: replica churn-api-1: model failed to load: RuntimeError: boom (the full reason is above)\n",
		},
		{
			name:     "NEEDS_ATTENTION",
			args:     []string{"deploy", "churn-api", "--model", "churn"},
			gets:     []*slipway.Deployment{withReason(testDeployment(slipway.DeploymentNeedsAttention, 1, 0), "replica churn-api-v3-0 restarted 5 times in 1m")},
			wantCode: 1, wantWrite: `POST /api/v1/deployments {"name":"churn-api","model":"churn"}`, wantGets: 1,
			wantStderr: "Error: deployment churn-api is NEEDS_ATTENTION: replica churn-api-v3-0 restarted 5 times in 1m\n",
		},
		{
			name:       "--no-wait",
			args:       []string{"deploy", "churn-api", "--model", "churn", "--no-wait"},
			wantWrite:  `POST /api/v1/deployments {"name":"churn-api","model":"churn"}`,
			wantStdout: []string{"State:            CREATING\n"},
			notStdout:  []string{"curl"},
			wantStderr: "Not waiting: 'slipway deployments get churn-api' shows its progress.\n",
		},
		{
			name:      "gives up after --wait-timeout",
			args:      []string{"deploy", "churn-api", "--model", "churn", "--wait-timeout", "30ms"},
			gets:      []*slipway.Deployment{testDeployment(slipway.DeploymentCreating, 2, 1)},
			wantCode:  1,
			wantWrite: `POST /api/v1/deployments {"name":"churn-api","model":"churn"}`,
			wantGets:  -1, // some
			wantStderr: "Error: deployment churn-api is still CREATING after 30ms (1/2 replicas of version 3 ready): it carries on on the server; " +
				"'slipway deployments get churn-api' shows its progress\n",
		},
		{
			name: "--follow-alias needs an alias", args: []string{"deploy", "churn-api", "--model", "churn:3", "--follow-alias"},
			wantCode: 1, wantStderr: "Error: --follow-alias needs an alias to follow: --model churn@ALIAS\n",
		},
		{
			name:      "--no-follow pins the alias's version",
			args:      []string{"deploy", "churn-api", "--model", "churn@champion", "--no-follow"},
			gets:      []*slipway.Deployment{pinned(testDeployment(slipway.DeploymentActive, 1, 1))},
			wantWrite: `POST /api/v1/deployments {"name":"churn-api","model":"churn","alias":"champion","follow_alias":false}`,
			wantGets:  1, wantStdout: []string{"Model:            churn version 3 (pinned, from @champion)\n"},
			notStdout: []string{"followed"},
		},
		{
			name:       "canary analysis by alias leaves following to the server",
			args:       []string{"deploy", "churn-api", "--model", "churn@champion", "--canary-version", "4", "--canary-analysis", "--no-wait"},
			wantWrite:  `POST /api/v1/deployments {"name":"churn-api","model":"churn","alias":"champion","canary":{"version":4,"weight":10,"replicas":1,"analysis":{"interval_seconds":0,"min_requests":0,"max_error_rate":0,"max_latency_ratio":0,"promote_after":0}}}`,
			wantStderr: "Not waiting: 'slipway deployments get churn-api' shows its progress.\n",
		},
		{
			name: "--no-follow needs an alias", args: []string{"deploy", "churn-api", "--model", "churn:3", "--no-follow"},
			wantCode: 1, wantStderr: "Error: --no-follow pins the version an alias names: --model churn@ALIAS (a version, or no alias, is pinned already)\n",
		},
		{
			name: "--follow-alias and --no-follow", args: []string{"deploy", "churn-api", "--model", "churn@champion", "--follow-alias", "--no-follow"},
			wantCode: 1, wantStderr: "Error: if any flags in the group [follow-alias no-follow] are set none of the others can be; [follow-alias no-follow] were all set\nRun 'slipway deploy --help' for usage.\n",
		},
		{
			name: "--batch-wait-ms alone", args: []string{"deploy", "churn-api", "--model", "churn", "--batch-wait-ms", "3"},
			wantCode: 1, wantStderr: "Error: --batch-wait-ms needs --batch-size: batching is off\n",
		},
		{
			name: "bad --env", args: []string{"deploy", "churn-api", "--model", "churn", "--env", "NOVALUE"},
			wantCode: 1, wantStderr: "Error: invalid --env \"NOVALUE\": use KEY=VALUE\n",
		},
		{
			name: "bad deployment name", args: []string{"deploy", "Churn", "--model", "churn"},
			wantCode: 1, wantStderr: "Error: invalid deployment name \"Churn\": use 1-64 lowercase letters, digits, '.', '_' or '-', starting and ending with a letter or digit\n",
		},
		{
			name: "--model is required", args: []string{"deploy", "churn-api"},
			wantCode: 1, wantStderr: "Error: required flag(s) \"model\" not set\nRun 'slipway deploy --help' for usage.\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			api := newFakeDeployAPI(t)
			api.answer = testDeployment(slipway.DeploymentCreating, 1, 0)
			api.answer.ReplicaStatus = []slipway.ReplicaStatus{}
			api.gets = tc.gets
			api.version = version
			stdout, stderr, code := runCLI(t, api.env(), "", tc.args...)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, tc.wantCode, stderr)
			}
			if stderr != tc.wantStderr {
				t.Errorf("stderr\n got %q\nwant %q", stderr, tc.wantStderr)
			}
			writes := api.writes()
			if tc.wantWrite == "" && len(writes) > 0 || tc.wantWrite != "" && (len(writes) != 1 || writes[0] != tc.wantWrite) {
				t.Errorf("writes\n got %q\nwant %q", writes, tc.wantWrite)
			}
			gets := api.count("GET /api/v1/deployments/churn-api")
			if tc.wantGets >= 0 && gets != tc.wantGets || tc.wantGets < 0 && gets < 2 {
				t.Errorf("%d polls, want %d", gets, tc.wantGets)
			}
			for _, s := range tc.wantStdout {
				if !strings.Contains(stdout, s) {
					t.Errorf("stdout lacks %q:\n%s", s, stdout)
				}
			}
			for _, s := range tc.notStdout {
				if strings.Contains(stdout, s) {
					t.Errorf("stdout has %q:\n%s", s, stdout)
				}
			}
		})
	}
}

func TestDeployJSON(t *testing.T) {
	api := newFakeDeployAPI(t)
	api.answer = testDeployment(slipway.DeploymentCreating, 1, 0)
	api.gets = []*slipway.Deployment{testDeployment(slipway.DeploymentActive, 1, 1)}
	stdout, stderr, code := runCLI(t, api.env(), "", "deploy", "churn-api", "--model", "churn", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var d slipway.Deployment
	if err := json.Unmarshal([]byte(stdout), &d); err != nil {
		t.Fatalf("stdout is not one JSON document: %v\n%s", err, stdout)
	}
	if d.State != slipway.DeploymentActive || d.URLs == nil || len(d.ReplicaStatus) != 1 || d.Env["API_KEY"] != "hunter2" {
		t.Errorf("deployment = %+v", d)
	}
}

func TestDeploymentsGet(t *testing.T) {
	api := newFakeDeployAPI(t)
	d := withReason(testDeployment(slipway.DeploymentNeedsAttention, 2, 1), "replica churn-api-v3-1 keeps crashing")
	d.ReplicaStatus[1].State, d.ReplicaStatus[1].Restarts = "FAILED", 5
	d.ReplicaStatus[1].LastError = "replica exited 1:\tMemoryError\nTraceback (most recent call last):\n  File \"score.py\""
	d.ReplicaStatus[0].InFlight = 3
	d.Batching, d.Env, d.Alias, d.FollowAlias = nil, nil, "", false
	api.gets = []*slipway.Deployment{d}
	stdout, stderr, code := runCLI(t, api.env(), "", "deployments", "get", "churn-api")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	want := "" +
		"Name:             churn-api\n" +
		"State:            NEEDS_ATTENTION\n" +
		"Reason:           replica churn-api-v3-1 keeps crashing\n" +
		"Model:            churn version 3\n" +
		"Replicas:         2 (1 ready)\n" +
		"Batching:         off\n" +
		"Timeout:          30000 ms\n" +
		"Max queue:        100\n" +
		"Created:          2026-03-01 10:00\n" +
		"Updated:          2026-03-01 10:00\n" +
		"Predict URL:      " + api.srv.URL + "/deployments/churn-api/predict\n" +
		"Invocations URL:  " + api.srv.URL + "/deployments/churn-api/invocations\n" +
		"V2 infer URL:     " + api.srv.URL + "/v2/models/churn-api/infer\n" +
		"\n" +
		"ID              VERSION  STATE   PID   RESTARTS  IN FLIGHT  LAST ERROR\n" +
		"churn-api-v3-0  3        READY   4100  0         3          -\n" +
		"churn-api-v3-1  3        FAILED  -     5         0          replica exited 1: MemoryError…\n"
	if stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", stdout, want)
	}
}

func TestDeploymentsList(t *testing.T) {
	api := newFakeDeployAPI(t)
	other := testDeployment(slipway.DeploymentInactive, 1, 0)
	other.Name, other.Model, other.Version, other.Alias, other.FollowAlias = "fraud-api", "fraud", 7, "", false
	other.ReplicaStatus = nil
	api.list = []*slipway.Deployment{testDeployment(slipway.DeploymentActive, 2, 2), other}

	stdout, stderr, code := runCLI(t, api.env(), "", "deployments", "list")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	want := "" +
		"NAME       STATE     MODEL  VERSION  ALIAS                REPLICAS  UPDATED\n" +
		"churn-api  ACTIVE    churn  3        champion (followed)  2/2       2026-03-01 10:00\n" +
		"fraud-api  INACTIVE  fraud  7        -                    0/1       2026-03-01 10:00\n"
	if stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", stdout, want)
	}

	api.list = nil
	stdout, _, code = runCLI(t, api.env(), "", "deployments", "ls", "-o", "json")
	if code != 0 || strings.Join(strings.Fields(stdout), " ") != `{ "items": [], "total": 0, "offset": 0, "limit": 0 }` {
		t.Errorf("exit %d, stdout %q", code, stdout)
	}
}

func TestDeploymentsUpdate(t *testing.T) {
	active := testDeployment(slipway.DeploymentActive, 2, 2)
	tests := []struct {
		name       string
		args       []string
		answer     *slipway.Deployment // PATCH answer
		gets       []*slipway.Deployment
		wantCode   int
		wantWrite  string
		wantGets   int
		wantStderr string
	}{
		{
			name:      "a new version rolls out and is waited for",
			args:      []string{"deployments", "update", "churn-api", "--model-version", "4"},
			gets:      []*slipway.Deployment{testDeployment(slipway.DeploymentUpdating, 2, 0), active},
			wantWrite: `PATCH /api/v1/deployments/churn-api {"version":4}`, wantGets: 2,
		},
		{
			name:      "an alias to follow",
			args:      []string{"deployments", "update", "churn-api", "--alias", "@challenger", "--follow-alias"},
			gets:      []*slipway.Deployment{active},
			wantWrite: `PATCH /api/v1/deployments/churn-api {"alias":"challenger","follow_alias":true}`, wantGets: 1,
		},
		{
			name:      "an alias, pinned",
			args:      []string{"deployments", "update", "churn-api", "--alias", "challenger", "--no-follow"},
			gets:      []*slipway.Deployment{active},
			wantWrite: `PATCH /api/v1/deployments/churn-api {"alias":"challenger","follow_alias":false}`, wantGets: 1,
		},
		{
			name:      "--no-follow alone pins the version served",
			args:      []string{"deployments", "update", "churn-api", "--no-follow"},
			gets:      []*slipway.Deployment{active},
			wantWrite: `PATCH /api/v1/deployments/churn-api {"follow_alias":false}`, wantGets: 1,
		},
		{
			name: "stop following, scale, limits, env",
			args: []string{"deployments", "update", "churn-api", "--follow-alias=false", "--replicas", "4", "--timeout-ms", "1000",
				"--max-queue", "10", "--env", "A=1", "--no-wait"},
			wantWrite:  `PATCH /api/v1/deployments/churn-api {"follow_alias":false,"replicas":4,"timeout_ms":1000,"max_queue":10,"env":{"A":"1"}}`,
			wantStderr: "Not waiting: 'slipway deployments get churn-api' shows its progress.\n",
		},
		{
			name: "autoscaling off", args: []string{"deployments", "update", "churn-api", "--no-autoscaling", "--no-wait"},
			wantWrite:  `PATCH /api/v1/deployments/churn-api {"autoscaling":{"min_replicas":0,"max_replicas":0,"target_in_flight":0,"scale_down_after_s":0}}`,
			wantStderr: "Not waiting: 'slipway deployments get churn-api' shows its progress.\n",
		},
		{
			name: "batching off", args: []string{"deployments", "update", "churn-api", "--batch-size", "0", "--no-wait"},
			wantWrite:  `PATCH /api/v1/deployments/churn-api {"batching":{"max_batch_size":0,"max_wait_ms":0}}`,
			wantStderr: "Not waiting: 'slipway deployments get churn-api' shows its progress.\n",
		},
		{
			name: "--batch-size alone keeps the current wait",
			args: []string{"deployments", "update", "churn-api", "--batch-size", "64", "--no-wait"},
			gets: []*slipway.Deployment{active}, wantGets: 1,
			wantWrite:  `PATCH /api/v1/deployments/churn-api {"batching":{"max_batch_size":64,"max_wait_ms":5}}`,
			wantStderr: "Not waiting: 'slipway deployments get churn-api' shows its progress.\n",
		},
		{
			name: "--batch-wait-ms alone keeps the current size",
			args: []string{"deployments", "update", "churn-api", "--batch-wait-ms", "2", "--no-wait"},
			gets: []*slipway.Deployment{active}, wantGets: 1,
			wantWrite:  `PATCH /api/v1/deployments/churn-api {"batching":{"max_batch_size":32,"max_wait_ms":2}}`,
			wantStderr: "Not waiting: 'slipway deployments get churn-api' shows its progress.\n",
		},
		{
			name: "a canary with the default weight and replicas",
			args: []string{"deployments", "update", "churn-api", "--canary-version", "5", "--no-wait"},
			gets: []*slipway.Deployment{active}, wantGets: 1,
			wantWrite:  `PATCH /api/v1/deployments/churn-api {"canary":{"version":5,"weight":10,"replicas":1}}`,
			wantStderr: "Not waiting: 'slipway deployments get churn-api' shows its progress.\n",
		},
		{
			name: "--canary-weight alone reweights the current canary",
			args: []string{"deployments", "update", "churn-api", "--canary-weight", "30", "--no-wait"},
			gets: []*slipway.Deployment{withCanary(active, slipway.Canary{Version: 5, Weight: 10, Replicas: 2})}, wantGets: 1,
			wantWrite:  `PATCH /api/v1/deployments/churn-api {"canary":{"version":5,"weight":30,"replicas":2}}`,
			wantStderr: "Not waiting: 'slipway deployments get churn-api' shows its progress.\n",
		},
		{
			name: "--canary-weight without a canary",
			args: []string{"deployments", "update", "churn-api", "--canary-weight", "30", "--no-wait"},
			gets: []*slipway.Deployment{active}, wantGets: 1, wantCode: 1,
			wantStderr: "Error: the deployment has no canary: give --canary-version\n",
		},
		{
			name: "--no-canary removes it", args: []string{"deployments", "update", "churn-api", "--no-canary", "--no-wait"},
			wantWrite:  `PATCH /api/v1/deployments/churn-api {"canary":{"version":0,"weight":0,"replicas":0}}`,
			wantStderr: "Not waiting: 'slipway deployments get churn-api' shows its progress.\n",
		},
		{
			name: "--no-canary with another canary flag", args: []string{"deployments", "update", "churn-api", "--no-canary", "--canary-weight", "5"},
			wantCode: 1, wantStderr: "Error: --no-canary removes the canary: give it without the other --canary flags\n",
		},
		{
			name: "a shadow with the default replicas", args: []string{"deployments", "update", "churn-api", "--shadow-version", "6", "--no-wait"},
			gets: []*slipway.Deployment{active}, wantGets: 1,
			wantWrite:  `PATCH /api/v1/deployments/churn-api {"shadow":{"version":6,"replicas":1}}`,
			wantStderr: "Not waiting: 'slipway deployments get churn-api' shows its progress.\n",
		},
		{
			name: "--shadow-replicas without a shadow", args: []string{"deployments", "update", "churn-api", "--shadow-replicas", "2"},
			gets: []*slipway.Deployment{active}, wantGets: 1, wantCode: 1,
			wantStderr: "Error: the deployment has no shadow: give --shadow-version\n",
		},
		{
			name: "--cpu alone keeps the memory", args: []string{"deployments", "update", "churn-api", "--cpu", "0.25", "--no-wait"},
			gets: []*slipway.Deployment{withResources(active, &slipway.Resources{CPU: 1, MemoryMB: 512})}, wantGets: 1,
			wantWrite:  `PATCH /api/v1/deployments/churn-api {"resources":{"cpu":0.25,"memory_mb":512}}`,
			wantStderr: "Not waiting: 'slipway deployments get churn-api' shows its progress.\n",
		},
		{
			name: "--cpu 0 --memory-mb 0 removes them", args: []string{"deployments", "update", "churn-api", "--cpu", "0", "--memory-mb", "0", "--no-wait"},
			gets: []*slipway.Deployment{withResources(active, &slipway.Resources{CPU: 1, MemoryMB: 512})}, wantGets: 1,
			wantWrite:  `PATCH /api/v1/deployments/churn-api {"resources":{}}`,
			wantStderr: "Not waiting: 'slipway deployments get churn-api' shows its progress.\n",
		},
		{
			name: "--no-shadow removes it", args: []string{"deployments", "update", "churn-api", "--no-shadow", "--no-wait"},
			wantWrite:  `PATCH /api/v1/deployments/churn-api {"shadow":{"version":0,"replicas":0}}`,
			wantStderr: "Not waiting: 'slipway deployments get churn-api' shows its progress.\n",
		},
		{
			name: "a rejected update exits 1 with the reason",
			args: []string{"deployments", "update", "churn-api", "--model-version", "4"},
			gets: []*slipway.Deployment{withReason(testDeployment(slipway.DeploymentActive, 2, 2),
				"update rejected, still serving version 3: replica exited 1: KeyError: 'age'")},
			wantCode: 1, wantWrite: `PATCH /api/v1/deployments/churn-api {"version":4}`, wantGets: 1,
			wantStderr: "Error: deployment churn-api is ACTIVE: update rejected, still serving version 3: replica exited 1: KeyError: 'age'\n",
		},
		{
			name:   "an INACTIVE deployment is only stored",
			args:   []string{"deployments", "update", "churn-api", "--replicas", "3"},
			answer: testDeployment(slipway.DeploymentInactive, 3, 0), wantWrite: `PATCH /api/v1/deployments/churn-api {"replicas":3}`,
			wantStderr: "Updated; churn-api is INACTIVE: 'slipway deployments activate churn-api' starts it.\n",
		},
		{
			name: "nothing to change", args: []string{"deployments", "update", "churn-api", "--no-wait"}, wantCode: 1,
			wantStderr: "Error: nothing to change: give --model-version, --alias, --follow-alias, --replicas, --batch-size, --batch-wait-ms, --timeout-ms, --max-queue, --env, --load, --isolation, --cpu, --memory-mb, --holdout, an autoscaling flag, a --canary or a --shadow flag\n",
		},
		{
			name: "version and alias", args: []string{"deployments", "update", "churn-api", "--model-version", "4", "--alias", "x"}, wantCode: 1,
			wantStderr: "Error: if any flags in the group [model-version alias] are set none of the others can be; [alias model-version] were all set\nRun 'slipway deployments update --help' for usage.\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			api := newFakeDeployAPI(t)
			api.answer = tc.answer
			if api.answer == nil {
				api.answer = testDeployment(slipway.DeploymentUpdating, 2, 2)
			}
			api.gets = tc.gets
			_, stderr, code := runCLI(t, api.env(), "", tc.args...)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, tc.wantCode, stderr)
			}
			if stderr != tc.wantStderr {
				t.Errorf("stderr\n got %q\nwant %q", stderr, tc.wantStderr)
			}
			writes := api.writes()
			if tc.wantWrite == "" && len(writes) > 0 || tc.wantWrite != "" && (len(writes) != 1 || writes[0] != tc.wantWrite) {
				t.Errorf("writes\n got %q\nwant %q", writes, tc.wantWrite)
			}
			if gets := api.count("GET /api/v1/deployments/churn-api"); gets != tc.wantGets {
				t.Errorf("%d GETs, want %d", gets, tc.wantGets)
			}
		})
	}
}

func TestDeploymentsLifecycle(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		answer     *slipway.Deployment
		gets       []*slipway.Deployment
		errStatus  int
		wantCode   int
		wantWrite  string
		wantStdout string // substring
		wantStderr string
	}{
		{
			name: "activate waits", args: []string{"deployments", "activate", "churn-api"},
			answer: testDeployment(slipway.DeploymentUpdating, 1, 0), gets: []*slipway.Deployment{testDeployment(slipway.DeploymentActive, 1, 1)},
			wantWrite: "POST /api/v1/deployments/churn-api/activate", wantStdout: "State:            ACTIVE\n",
		},
		{
			name: "activate that fails", args: []string{"deployments", "activate", "churn-api"},
			answer:   testDeployment(slipway.DeploymentUpdating, 1, 0),
			gets:     []*slipway.Deployment{withReason(testDeployment(slipway.DeploymentFailed, 1, 0), "model files missing")},
			wantCode: 1, wantWrite: "POST /api/v1/deployments/churn-api/activate", wantStdout: "State:            FAILED\n",
			wantStderr: "Error: deployment churn-api is FAILED: model files missing\n",
		},
		{
			name: "activate an ACTIVE deployment", args: []string{"deployments", "activate", "churn-api"},
			answer:    testDeployment(slipway.DeploymentActive, 1, 1),
			wantWrite: "POST /api/v1/deployments/churn-api/activate", wantStdout: "State:            ACTIVE\n",
		},
		{
			name: "activate conflict", args: []string{"deployments", "activate", "churn-api"}, errStatus: 409, wantCode: 1,
			wantWrite:  "POST /api/v1/deployments/churn-api/activate",
			wantStderr: "Error: problem\n",
		},
		{
			name: "deactivate", args: []string{"deployments", "deactivate", "churn-api"},
			answer: testDeployment(slipway.DeploymentInactive, 1, 0), wantWrite: "POST /api/v1/deployments/churn-api/deactivate",
			wantStdout: "Deployment churn-api is INACTIVE: its replicas are stopped. 'slipway deployments activate churn-api' starts them again.\n",
		},
		{
			name: "delete", args: []string{"deployments", "delete", "churn-api"}, wantWrite: "DELETE /api/v1/deployments/churn-api",
			wantStdout: "Deleted deployment churn-api.\n",
		},
		{
			name: "delete unknown", args: []string{"deployment", "delete", "nope"}, errStatus: 404, wantCode: 1,
			wantWrite: "DELETE /api/v1/deployments/nope", wantStderr: "Error: problem\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			api := newFakeDeployAPI(t)
			api.answer, api.gets, api.errStatus, api.errDetail = tc.answer, tc.gets, tc.errStatus, "problem"
			stdout, stderr, code := runCLI(t, api.env(), "", tc.args...)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, tc.wantCode, stderr)
			}
			if stderr != tc.wantStderr {
				t.Errorf("stderr\n got %q\nwant %q", stderr, tc.wantStderr)
			}
			if !strings.Contains(stdout, tc.wantStdout) {
				t.Errorf("stdout lacks %q:\n%s", tc.wantStdout, stdout)
			}
			if writes := api.writes(); len(writes) != 1 || writes[0] != tc.wantWrite {
				t.Errorf("writes %q, want %q", writes, tc.wantWrite)
			}
		})
	}
}

func TestDeploymentsGetShowsAutoscaling(t *testing.T) {
	api := newFakeDeployAPI(t)
	d := testDeployment(slipway.DeploymentActive, 0, 0)
	d.Autoscaling = &slipway.Autoscaling{MinReplicas: 0, MaxReplicas: 4, TargetInFlight: 2, ScaleDownAfterS: 30}
	d.ScaledToZero = true
	d.AutoscalingStatus = &slipway.AutoscalingStatus{Decisions: []slipway.ScaleDecision{{At: testTime, Side: "deployment", Version: 3,
		Direction: "down", From: 2, To: 0, Reason: "idle for 30s: scaled to zero (the next request starts a replica)"}}}
	api.gets = []*slipway.Deployment{d}
	stdout, stderr, code := runCLI(t, api.env(), "", "deployments", "get", "churn-api")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{
		"Autoscaling:      0-4 replicas, 2 requests in flight per replica, down after 30s of low load\n",
		"Scale:            scaled to zero: the next request starts a replica\n",
		"Last scaled:      2026-03-01 10:00 deployment down 2→0: idle for 30s: scaled to zero (the next request starts a replica)\n",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout has no %q:\n%s", want, stdout)
		}
	}
}

func withResources(d *slipway.Deployment, r *slipway.Resources) *slipway.Deployment {
	c := *d
	c.Resources = r
	return &c
}
