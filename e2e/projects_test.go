package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/slipway-ml/slipway"
)

// cliAs runs the CLI with token (instead of the admin's) and extra arguments.
func cliAs(s *server, token string, args ...string) (string, string, int) {
	return s.cli(append([]string{"--token", token}, args...)...)
}

// mustCLI runs the CLI and fails the test unless it exits 0; it returns stdout.
func mustCLI(t *testing.T, s *server, token string, args ...string) string {
	t.Helper()
	out, errOut, code := cliAs(s, token, args...)
	if code != 0 {
		t.Fatalf("slipway %s: exit %d\n%s\n%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

func jsonID(t *testing.T, out string) string {
	t.Helper()
	var v struct{ ID string }
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.ID == "" {
		t.Fatalf("want a JSON object with an id, got %q (%v)", out, err)
	}
	return v.ID
}

// doIn sends a request with the Slipway-Project header.
func (s *server) doIn(t *testing.T, project, method, path, token string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, s.URL+path, strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	if project != "" {
		req.Header.Set(slipway.ProjectHeader, project)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// TestProjectsIsolateEveryRoute fills project "risk" with one resource of every kind (through the CLI's
// --project, and a job run's own token), then calls every route of the API's OpenAPI document with a token of
// project "growth": each route naming a risk resource answers 404, admin-only routes 403, lists show none of
// risk's names. Admins see both projects; risk's own token sees its resources; run tokens are limited to their
// run's project and their calls are audited with it.
func TestProjectsIsolateEveryRoute(t *testing.T) {
	s := startServer(t, "")
	admin := s.Token
	for _, p := range []string{"risk", "growth"} {
		if out := mustCLI(t, s, admin, "projects", "create", p, "--description", p+" models"); !strings.Contains(out, "Created project "+p) {
			t.Fatalf("projects create: %q", out)
		}
	}
	risk := cliToken(t, s, "tokens", "create", "risk-editor", "--project-role", "risk=editor")
	growth := cliToken(t, s, "tokens", "create", "growth-editor", "--project-role", "growth=editor")
	growthPredict := cliToken(t, s, "tokens", "create", "growth-predict", "--project-role", "growth=predict")

	// risk's resources: the admin through --project, the risk token through its only project.
	mustCLI(t, s, admin, "--project", "risk", "models", "push", examplePath("sklearn-churn"), "--model", "risk-model",
		"--metadata", examplePath("sklearn-churn", "metadata.json"), "--alias", "champion")
	mustCLI(t, s, risk.Secret, "deploy", "risk-dep", "--model", "risk-model@champion")
	dir := t.TempDir()
	// The run creates a model with its own token: it must land in risk, and be audited as the run's.
	script := filepath.Join(dir, "make-model.sh")
	if err := os.WriteFile(script, []byte(`echo "project=$SLIPWAY_PROJECT"
"$SLIPWAY_PYTHON" - <<'EOF'
import json, os, urllib.request
req = urllib.request.Request(os.environ["SLIPWAY_URL"] + "/api/v1/models", data=json.dumps({"name": "made-by-run"}).encode(),
    headers={"Authorization": "Bearer " + os.environ["SLIPWAY_TOKEN"], "Content-Type": "application/json"}, method="POST")
print(urllib.request.urlopen(req).status)
EOF
`), 0o644); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, s, risk.Secret, "jobs", "create", "risk-job", script)
	runID := jsonID(t, mustCLI(t, s, risk.Secret, "jobs", "run", "risk-job", "--wait", "-o", "json"))
	if out := mustCLI(t, s, risk.Secret, "jobs", "logs", runID); !strings.Contains(out, "project=risk") || !strings.Contains(out, "201") {
		t.Fatalf("the run's log: %q", out)
	}
	pipeline := filepath.Join(dir, "pipeline.yaml")
	// Its built-in step moves an alias of risk's model: it works in the pipeline's project.
	stage := "steps:\n  - name: hello\n    script: echo hello\n  - name: stage\n    builtin: deploy\n    depends_on: [hello]\n" +
		"    with: {model: risk-model, version: 1, alias: staging}\n"
	if err := os.WriteFile(pipeline, []byte("name: risk-pipe\n"+stage), 0o644); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, s, risk.Secret, "pipelines", "create", pipeline)
	pipelineRunID := jsonID(t, mustCLI(t, s, risk.Secret, "pipelines", "run", "risk-pipe", "--wait", "-o", "json"))
	mustCLI(t, s, risk.Secret, "schedules", "create", "risk-sched", "--cron", "0 3 1 1 *", "--job", "risk-job")
	fileID := jsonID(t, mustCLI(t, s, risk.Secret, "files", "upload", featuresCSV(t, 20), "-o", "json"))
	batchID := jsonID(t, mustCLI(t, s, risk.Secret, "batch", "run", "--model", "risk-model@champion", "--input", featuresCSV(t, 20),
		"--output-format", "csv", "-o", "json"))
	// growth has a model of its own.
	if resp, b := s.do(t, "POST", "/api/v1/models", growth.Secret, strings.NewReader(`{"name": "growth-model"}`), "application/json"); resp.StatusCode != 201 {
		t.Fatalf("growth creates a model: %d %s", resp.StatusCode, b)
	}

	riskNames := []string{"risk-model", "risk-dep", "risk-job", "risk-pipe", "risk-sched", "made-by-run", runID, pipelineRunID, fileID, batchID}
	fill := map[string]string{"{model}": "risk-model", "{name}": "risk-dep", "{job}": "risk-job", "{pipeline}": "risk-pipe",
		"{schedule}": "risk-sched", "{version}": "1", "{alias}": "champion", "{path}": "model.pkl", "{project}": "risk"}
	idOf := map[string]string{"/api/v1/job-runs/": runID, "/api/v1/pipeline-runs/": pipelineRunID, "/api/v1/files/": fileID,
		"/api/v1/batch-predictions/": batchID, "/api/v1/tokens/": risk.ID, "/alerts/": "1", "/replicas/": "r1",
		"/rollouts/": "1", "/replays/": "rp-1"}

	// The risk token sees its resources (the 404s below are about projects, not about missing resources).
	for _, path := range []string{"/api/v1/models/risk-model", "/api/v1/models/made-by-run", "/api/v1/deployments/risk-dep",
		"/api/v1/jobs/risk-job", "/api/v1/job-runs/" + runID, "/api/v1/pipelines/risk-pipe", "/api/v1/pipeline-runs/" + pipelineRunID,
		"/api/v1/schedules/risk-sched", "/api/v1/files/" + fileID, "/api/v1/batch-predictions/" + batchID, "/api/v1/projects/risk"} {
		if resp, body := s.doIn(t, "", "GET", path, risk.Secret); resp.StatusCode != 200 {
			t.Fatalf("risk's own token: GET %s: %d %s", path, resp.StatusCode, body)
		}
	}

	doc := openAPIPaths(t, s)
	param := regexp.MustCompile(`\{[^}]+\}`)
	tried := 0
	for _, op := range doc {
		if op.role == "" { // public: health, openapi.json
			continue
		}
		path := param.ReplaceAllStringFunc(op.path, func(p string) string {
			if p == "{id}" {
				for prefix, id := range idOf {
					if i := strings.Index(op.path, prefix+"{id}"); i >= 0 {
						return id
					}
				}
				t.Fatalf("%s %s: no id to fill in", op.method, op.path)
			}
			v, ok := fill[p]
			if !ok {
				t.Fatalf("%s %s: no value for %s: add it to the test", op.method, op.path, p)
			}
			return v
		})
		tried++
		for _, caller := range []struct {
			name, token string
		}{{"growth-editor", growth.Secret}, {"growth-predict", growthPredict.Secret}} {
			resp, body := s.doIn(t, "", op.method, path, caller.token)
			route := op.method + " " + op.path
			switch {
			case resp.Header.Get("Content-Type") != "application/problem+json" && resp.StatusCode >= 400:
				t.Errorf("%s by %s: %d is not a problem: %s", route, caller.name, resp.StatusCode, body)
			case op.role == "admin" && !param.MatchString(op.path):
				// Tokens, projects' creation, backup, audit, replica specs: the installation's, not a project's.
				if resp.StatusCode != 403 {
					t.Errorf("%s (admin only) by %s: %d %s, want 403", route, caller.name, resp.StatusCode, body)
				}
			case param.MatchString(op.path) && !strings.HasPrefix(op.path, "/api/v1/projects/") && !strings.HasPrefix(op.path, "/api/v1/tokens/"):
				// Also the admin-only routes below a resource (replica-spec): another project's resource is 404 first.
				if resp.StatusCode != 404 {
					t.Errorf("%s by %s (%s): %d %s, want 404", route, caller.name, path, resp.StatusCode, body)
				}
			case strings.HasPrefix(op.path, "/api/v1/tokens/"):
				if resp.StatusCode != 403 {
					t.Errorf("%s (admin only) by %s: %d %s, want 403", route, caller.name, resp.StatusCode, body)
				}
			case op.path == "/api/v1/projects/{project}":
				if resp.StatusCode != 404 {
					t.Errorf("%s by %s: another project: %d %s, want 404", route, caller.name, resp.StatusCode, body)
				}
			case op.path == "/metrics":
				if resp.StatusCode != 403 {
					t.Errorf("%s by %s: every project's metrics: %d, want 403", route, caller.name, resp.StatusCode)
				}
			default: // collections and creations: whatever the answer, nothing of risk's
				if resp.StatusCode >= 500 {
					t.Errorf("%s by %s: %d %s", route, caller.name, resp.StatusCode, body)
				}
				for _, n := range riskNames {
					if strings.Contains(string(body), n) {
						t.Errorf("%s by %s answered %d with risk's %q: %s", route, caller.name, resp.StatusCode, n, body)
					}
				}
			}
		}
	}
	if tried < 80 {
		t.Fatalf("only %d routes tried", tried)
	}

	// Lists: growth sees its model only; the admin sees default's (none) unless it names a project.
	modelNames := func(project, token string) []string {
		resp, body := s.doIn(t, project, "GET", "/api/v1/models", token)
		var page slipway.Page[slipway.Model]
		if resp.StatusCode != 200 || json.Unmarshal(body, &page) != nil {
			t.Fatalf("list models in %q: %d %s", project, resp.StatusCode, body)
		}
		var names []string
		for _, m := range page.Items {
			names = append(names, m.Name+"@"+m.Project)
		}
		sort.Strings(names)
		return names
	}
	for _, c := range []struct {
		project, token, want string
	}{
		{"", growth.Secret, "growth-model@growth"},
		{"", risk.Secret, "made-by-run@risk risk-model@risk"},
		{"risk", admin, "made-by-run@risk risk-model@risk"},
		{"growth", admin, "growth-model@growth"},
		{"", admin, ""},
	} {
		if got := strings.Join(modelNames(c.project, c.token), " "); got != c.want {
			t.Errorf("models in %q: %q, want %q", c.project, got, c.want)
		}
	}
	if resp, _ := s.doIn(t, "risk", "GET", "/api/v1/models", growth.Secret); resp.StatusCode != 404 {
		t.Errorf("growth's token naming project risk: %d, want 404", resp.StatusCode)
	}
	// A token of several projects names one; without it, whoami and the projects' list still answer.
	both := cliToken(t, s, "tokens", "create", "both", "--project-role", "risk=viewer", "--project-role", "growth=editor")
	if resp, body := s.doIn(t, "", "GET", "/api/v1/models", both.Secret); resp.StatusCode != 400 || !strings.Contains(string(body), "growth, risk") {
		t.Errorf("a token of two projects naming none: %d %s, want 400 naming them", resp.StatusCode, body)
	}
	if got := strings.Join(modelNames("risk", both.Secret), " "); got != "made-by-run@risk risk-model@risk" {
		t.Errorf("a token of two projects in risk: %q", got)
	}
	if resp, body := s.doIn(t, "", "GET", "/api/v1/whoami", both.Secret); resp.StatusCode != 200 || !strings.Contains(string(body), `"growth": "editor"`) {
		t.Errorf("whoami of a token of two projects: %d %s", resp.StatusCode, body)
	}
	if resp, body := s.doIn(t, "risk", "POST", "/api/v1/models", both.Secret); resp.StatusCode != 403 {
		t.Errorf("a viewer of risk creates there: %d %s, want 403", resp.StatusCode, body)
	}
	if out := mustCLI(t, s, growth.Secret, "projects", "list"); strings.Contains(out, "risk") || !strings.Contains(out, "growth") {
		t.Errorf("growth's projects list: %q", out)
	}
	if out := mustCLI(t, s, admin, "projects", "list"); !strings.Contains(out, "risk") || !strings.Contains(out, "growth") || !strings.Contains(out, "default") {
		t.Errorf("admin's projects list: %q", out)
	}
	// The CLI's --project and SLIPWAY_PROJECT.
	if out := mustCLI(t, s, admin, "--project", "risk", "deployments", "list"); !strings.Contains(out, "risk-dep") {
		t.Errorf("deployments list --project risk: %q", out)
	}
	if out := mustCLI(t, s, admin, "deployments", "list"); strings.Contains(out, "risk-dep") {
		t.Errorf("deployments list in default shows risk's: %q", out)
	}
	if _, errOut, code := cliAs(s, growth.Secret, "--project", "risk", "models", "list"); code == 0 || !strings.Contains(errOut, `project "risk" not found`) {
		t.Errorf("growth's token with --project risk: exit %d %q", code, errOut)
	}
	if resp, body := s.doIn(t, "", "POST", "/api/v1/projects", admin); resp.StatusCode != 400 {
		t.Errorf("create a project without a name: %d %s", resp.StatusCode, body)
	}

	// Predictions: risk's deployment answers risk's and global tokens, and is 404 to growth's.
	cols, rows := churnRows(t, 2)
	body, _ := json.Marshal(map[string]any{"dataframe_split": map[string]any{"columns": cols, "data": rows}})
	for _, c := range []struct {
		name, token string
		want        int
	}{{"risk-editor", risk.Secret, 200}, {"admin", admin, 200}, {"growth-predict", growthPredict.Secret, 404}, {"growth-editor", growth.Secret, 404}} {
		resp, b := s.do(t, "POST", "/deployments/risk-dep/invocations", c.token, strings.NewReader(string(body)), "application/json")
		if resp.StatusCode != c.want {
			t.Errorf("predict on risk-dep by %s: %d %s, want %d", c.name, resp.StatusCode, b, c.want)
		}
	}

	// The run's token was limited to risk, and its call is in the audit log with the project.
	resp, b := s.do(t, "GET", "/api/v1/audit?action=createModel&project=risk", admin, nil, "")
	var page slipway.Page[*slipway.AuditEntry]
	if err := json.Unmarshal(b, &page); err != nil || resp.StatusCode != 200 {
		t.Fatalf("audit: %d %s", resp.StatusCode, b)
	}
	found := false
	for _, e := range page.Items {
		if e.TokenName == "run-"+runID && e.Target == "models/made-by-run" && e.Status == 201 && e.Project == "risk" && e.Role == "editor" {
			found = true
		}
	}
	if !found {
		t.Errorf("the run's createModel is not in the audit log with its token and project: %s", b)
	}
	// The same step in a growth pipeline does not find risk's model.
	growthPipeline := filepath.Join(dir, "growth.yaml")
	if err := os.WriteFile(growthPipeline, []byte("name: growth-pipe\n"+stage), 0o644); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, s, growth.Secret, "pipelines", "create", growthPipeline)
	out, _, _ := cliAs(s, growth.Secret, "pipelines", "run", "growth-pipe", "--wait", "-o", "json")
	growthRunID := jsonID(t, out)
	// What runs do without an API call is audited too: their tokens, and built-in steps, in their project.
	events := map[string]*slipway.AuditEntry{}
	resp, b = s.do(t, "GET", "/api/v1/audit?limit=1000", admin, nil, "")
	var all slipway.Page[*slipway.AuditEntry]
	if err := json.Unmarshal(b, &all); err != nil || resp.StatusCode != 200 {
		t.Fatalf("audit: %d %s", resp.StatusCode, b)
	}
	for _, e := range all.Items {
		events[e.Action+" "+e.Target] = e
	}
	if e := events["runToken.issue tokens/run-"+runID]; e == nil || e.Project != "risk" || e.TokenName != "run-"+runID {
		t.Errorf("the run's token issue: %+v", e)
	}
	if e := events["runToken.revoke tokens/run-"+runID]; e == nil {
		t.Errorf("the run's token revocation is not recorded")
	}
	if e := events["pipeline.deploy pipeline-runs/"+pipelineRunID]; e == nil || e.Project != "risk" || e.Status != 200 || e.TokenName != pipelineRunID {
		t.Errorf("risk's deploy step: %+v", e)
	}
	if e := events["pipeline.deploy pipeline-runs/"+growthRunID]; e == nil || e.Project != "growth" || e.Status != 404 {
		t.Errorf("growth's deploy step on risk's model: %+v", e)
	}
	if resp, b := s.doIn(t, "risk", "GET", "/api/v1/models/risk-model/aliases/staging", admin); resp.StatusCode != 200 {
		t.Errorf("risk's pipeline moved no alias: %d %s", resp.StatusCode, b)
	}
	if out, errOut, code := s.cli("audit", "verify"); code != 0 {
		t.Errorf("audit verify with project entries: %s %s", out, errOut)
	}
}

type openAPIOp struct{ method, path, role string }

// openAPIPaths lists every operation of the server's OpenAPI document (which openapi_test.go checks against
// the route table), sorted.
func openAPIPaths(t *testing.T, s *server) []openAPIOp {
	t.Helper()
	resp, body := s.do(t, http.MethodGet, "/api/v1/openapi.json", "", nil, "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("openapi.json: %d", resp.StatusCode)
	}
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	var ops []openAPIOp
	for path, methods := range doc.Paths {
		for method, raw := range methods {
			var op struct {
				Role string `json:"x-slipway-role"`
			}
			if json.Unmarshal(raw, &op) != nil {
				continue // path-level parameters
			}
			ops = append(ops, openAPIOp{strings.ToUpper(method), path, op.Role})
		}
	}
	sort.Slice(ops, func(i, j int) bool { return ops[i].path+ops[i].method < ops[j].path+ops[j].method })
	return ops
}

// TestWebUIProjectSwitcher: the header's project switcher sets the project of the UI's API calls.
func TestWebUIProjectSwitcher(t *testing.T) {
	s := startServer(t, "")
	mustCLI(t, s, s.Token, "projects", "create", "risk")
	for _, m := range []struct{ project, name string }{{"", "plain-model"}, {"risk", "risk-model"}} {
		req, err := http.NewRequest("POST", s.URL+"/api/v1/models", strings.NewReader(`{"name": "`+m.name+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+s.Token)
		req.Header.Set("Content-Type", "application/json")
		if m.project != "" {
			req.Header.Set(slipway.ProjectHeader, m.project)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 201 {
			t.Fatalf("create %s: %v %v", m.name, resp, err)
		}
		resp.Body.Close()
	}
	b := newBrowser(t)
	b.do("open the UI", chromedp.Navigate(s.URL+"/ui/models"), chromedp.WaitVisible(chromedp.ID("token")))
	b.do("sign in", chromedp.SetValue(chromedp.ID("token"), s.Token), chromedp.Click(chromedp.CSS(`form.login button[type=submit]`)))
	b.waitJS("default's models, and the projects in the switcher",
		`document.querySelector("main").innerText.includes("plain-model") && !document.querySelector("main").innerText.includes("risk-model") && document.querySelectorAll("#project option").length === 2`)
	if _, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](`(() => { const p = document.querySelector("#project"); p.value = "risk"; p.dispatchEvent(new Event("change")); return true; })()`)); err != nil {
		t.Fatalf("switch to risk: %v", err)
	}
	b.waitJS("risk's models only", `document.querySelector("main").innerText.includes("risk-model") && !document.querySelector("main").innerText.includes("plain-model") && document.querySelector("#project").value === "risk"`)
	b.checkNoErrors()
}
