package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/slipway-ml/slipway"
)

// browser starts headless Chromium for the test (apt package chromium; scripts/install-deps.sh installs it).
// Uncaught exceptions and console errors of every page are collected: the test fails on any of them.
type browser struct {
	t      *testing.T
	ctx    context.Context
	mu     sync.Mutex
	errors []string
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	path := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		t.Fatal("no Chromium found: install it with `apt-get install chromium` (scripts/install-deps.sh does)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.DisableGPU, chromedp.WindowSize(1280, 1000), chromedp.UserDataDir(t.TempDir()))
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	b := &browser{t: t, ctx: ctx}
	if err := chromedp.Listen(ctx, func(ev any) {
		b.mu.Lock()
		defer b.mu.Unlock()
		switch e := ev.(type) {
		case *runtime.EventExceptionThrown:
			b.errors = append(b.errors, (&chromedp.ExceptionError{ExceptionDetails: e.ExceptionDetails}).Error())
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError {
				b.errors = append(b.errors, fmt.Sprintf("console.error %v", e.Args))
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	return b
}

func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		b.screenshot("failed")
		b.t.Fatalf("%s: %v", what, err)
	}
}

// acceptConfirms answers OK to the page's confirmation questions, as the person clicking would.
func (b *browser) acceptConfirms() {
	b.t.Helper()
	if _, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](`(window.confirm = () => true, true)`)); err != nil {
		b.t.Fatal(err)
	}
}

func (b *browser) text(sel string) string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

// waitJS polls a JavaScript condition until it holds (the page fetches and refreshes on its own).
func (b *browser) waitJS(what, cond string) {
	b.t.Helper()
	if _, err := chromedp.Run(b.ctx, chromedp.Poll[bool](cond, chromedp.WithPollingTimeout(60*time.Second))); err != nil {
		b.screenshot("failed")
		main, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.body.innerText`))
		b.t.Fatalf("%s: %v\npage text:\n%s", what, err, main)
	}
}

// screenshot keeps a picture of the page in $SLIPWAY_UI_SCREENSHOTS (when set), to look at the UI as a person.
func (b *browser) screenshot(name string) {
	dir := os.Getenv("SLIPWAY_UI_SCREENSHOTS")
	if dir == "" {
		return
	}
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644)
	}
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
	}
}

// checkRendered fails when the page shows what a rendering slip prints: an object, an undefined or a null value.
func (b *browser) checkRendered(page string) {
	b.t.Helper()
	text := b.text("main")
	for _, bad := range []string{"[object ", "undefined", "NaN"} {
		if strings.Contains(text, bad) {
			b.t.Errorf("the %s page shows %q:\n%s", page, bad, text)
		}
	}
	for _, line := range strings.Split(text, "\n") {
		if strings.TrimSpace(line) == "null" {
			b.t.Errorf("the %s page shows a null:\n%s", page, text)
		}
	}
}

func (b *browser) checkNoErrors() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.errors) > 0 {
		b.t.Fatalf("the page raised errors:\n%s", strings.Join(b.errors, "\n"))
	}
}

// featuresCSV writes the first n rows of the bundled data set without the id and the label: the model's inputs.
func featuresCSV(t *testing.T, n int) string {
	t.Helper()
	_, lines := readChurn(t, n)
	var b strings.Builder
	for _, l := range lines {
		f := strings.Split(l, ",")
		b.WriteString(strings.Join(f[1:len(f)-1], ",") + "\n")
	}
	path := filepath.Join(t.TempDir(), "features.csv")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestWebUI drives the browser UI in headless Chromium against the real binary, as a person would: sign in with
// a token, read the catalog, watch a deployment's live charts, drift report and logs, follow a pipeline run to
// its job's logs, and sign out. Data from the API is shown as text, never as markup.
func TestWebUI(t *testing.T) {
	s := startServer(t, "")
	if out, errOut, code := s.cli("pipelines", "create", "e2e/testdata/retrain-direct.yaml", "--artifact", "examples"); code != 0 {
		t.Fatalf("pipelines create: %s %s", out, errOut)
	}
	if out, errOut, code := s.cli("pipelines", "run", "retrain", "--wait"); code != 0 {
		t.Fatalf("pipelines run: %s %s", out, errOut)
	}
	deploy(t, s, "churn-api", "--model", "churn@champion", "--replicas", "1")
	if out, errOut, code := s.cli("baseline", "churn:1", examplePath("data", "churn.csv")); code != 0 {
		t.Fatalf("baseline: %s %s", out, errOut)
	}
	if out, errOut, code := s.cli("predict", "churn-api", "--data", featuresCSV(t, 500)); code != 0 {
		t.Fatalf("predict: %s %s", out, errOut)
	}
	// A description that is markup: the UI must show it as text.
	const markup = `<img id="pwned" src="x" onerror="document.title='pwned'">`
	resp, body := s.do(t, "PATCH", "/api/v1/models/churn", s.Token, strings.NewReader(`{"description":`+string(mustJSON(markup))+`}`), "application/json")
	if resp.StatusCode != 200 {
		t.Fatalf("patch description: %d %s", resp.StatusCode, body)
	}

	b := newBrowser(t)
	b.do("open the server's root", chromedp.Navigate(s.URL+"/"), chromedp.WaitVisible(chromedp.ID("token")))
	if u, _ := chromedp.Run(b.ctx, chromedp.Location()); !strings.HasSuffix(u, "/ui/") {
		t.Fatalf("/ redirected to %s, want /ui/", u)
	}

	t.Run("a wrong token is refused with the reason", func(t *testing.T) {
		b.do("submit a wrong token", chromedp.SendKeys(chromedp.ID("token"), "not-a-token"), chromedp.Click(chromedp.CSS(`form.login button[type=submit]`)))
		b.waitJS("the error", `!!document.querySelector("form.login .error")`)
		if got := b.text("form.login .error"); !strings.Contains(got, "Sign-in failed") {
			t.Fatalf("error = %q", got)
		}
	})

	b.do("sign in", chromedp.SetValue(chromedp.ID("token"), s.Token), chromedp.Click(chromedp.CSS(`form.login button[type=submit]`)))
	b.waitJS("the deployments list", `document.body.innerText.includes("churn-api") && document.body.innerText.includes("ACTIVE")`)
	if who := b.text("#who"); !strings.Contains(who, "admin (admin)") {
		t.Fatalf("who = %q", who)
	}
	b.screenshot("deployments")
	b.checkRendered("deployments")

	t.Run("deployment: live charts, drift, logs", func(t *testing.T) {
		b.do("open the deployment", chromedp.Click(chromedp.CSS(`a[href="/ui/deployments/churn-api"]`)))
		b.waitJS("the request chart has points", `Number(document.querySelector("#requests-chart")?.dataset.points) > 0`)
		legend := b.text("#requests-chart .legend")
		if !strings.Contains(legend, "2xx") {
			t.Fatalf("legend = %q", legend)
		}
		b.waitJS("the drift report", `document.querySelector("#drift-report")?.innerText.includes("age")`)
		if got := b.text("#drift-report"); !strings.Contains(got, "monthly_charges") || !strings.Contains(got, "wasserstein") {
			t.Fatalf("drift report = %q", got)
		}
		b.waitJS("the access log", `document.querySelector("#deployment-log")?.innerText.includes("invocations")`)
		// Requests made now appear without a reload: the page refreshes itself.
		before := b.text("#requests-chart .legend")
		for range 3 {
			if out, errOut, code := s.cli("predict", "churn-api", "--data", examplePath("sklearn-churn", "sample.csv")); code != 0 {
				t.Fatalf("predict: %s %s", out, errOut)
			}
		}
		b.waitJS("the chart counts the new requests", fmt.Sprintf(`document.querySelector("#requests-chart .legend").innerText !== %q`, before))
		b.screenshot("deployment")
		b.checkRendered("deployment")

		b.acceptConfirms()
		b.do("deactivate", chromedp.Click(chromedp.ID("deactivate")))
		b.waitJS("INACTIVE with an Activate button", `document.querySelector("main h1").innerText.includes("INACTIVE") && !!document.querySelector("#activate")`)
		if d, err := s.Client().GetDeployment(context.Background(), "churn-api"); err != nil || d.State != slipway.DeploymentInactive {
			t.Fatalf("after Deactivate: %+v, %v", d, err)
		}
		b.do("activate", chromedp.Click(chromedp.ID("activate")))
		b.waitJS("ACTIVE again", `document.querySelector("main h1").innerText.includes("ACTIVE") && !document.querySelector("main h1").innerText.includes("INACTIVE")`)
		if d, err := s.Client().GetDeployment(context.Background(), "churn-api"); err != nil || d.State != slipway.DeploymentActive {
			t.Fatalf("after Activate: %+v, %v", d, err)
		}
	})

	t.Run("alert rules: added and deleted from the deployment's page", func(t *testing.T) {
		b.do("open churn-api", chromedp.Navigate(s.URL+"/ui/deployments/churn-api"))
		b.waitJS("the alert form", `!!document.querySelector("#alert")`)
		add := func(what string) {
			b.do(what, chromedp.SetValue(chromedp.ID("alert-name"), "drifted"), chromedp.SetValue(chromedp.ID("alert-metric"), "drift_share"),
				chromedp.SetValue(chromedp.ID("alert-threshold"), "0.3"), chromedp.SetValue(chromedp.ID("alert-pipeline"), "retrain"),
				chromedp.Click(chromedp.ID("alert-submit")))
		}
		add("add a drift rule that retrains")
		b.waitJS("the rule in the table", `!!document.querySelector("#delete-alert-drifted")`)
		if got := b.text("main"); !strings.Contains(got, "drift_share above 0.3") || !strings.Contains(got, "start pipeline retrain") {
			t.Fatalf("rule shown as:\n%s", got)
		}
		rules, err := s.Client().AlertRules(context.Background(), "churn-api")
		if err != nil || len(rules) != 1 || rules[0].Action == nil || rules[0].Action.Target != "retrain" || rules[0].Threshold != 0.3 {
			t.Fatalf("rules after the UI added one: %+v, %v", rules, err)
		}
		add("add it again")
		b.waitJS("the server's refusal", `!!document.querySelector("#alert .error")`)
		b.acceptConfirms()
		b.do("delete it", chromedp.Click(chromedp.ID("delete-alert-drifted")))
		b.waitJS("gone", `!document.querySelector("#delete-alert-drifted")`)
		if rules, err := s.Client().AlertRules(context.Background(), "churn-api"); err != nil || len(rules) != 0 {
			t.Fatalf("rules after the UI deleted it: %+v, %v", rules, err)
		}
	})

	t.Run("catalog: version with checks, metrics and provenance", func(t *testing.T) {
		b.do("open the models", chromedp.Click(chromedp.CSS(`#nav a[href="/ui/models"]`)))
		b.waitJS("the model list", `!!document.querySelector('a[href="/ui/models/churn"]')`)
		b.do("open the model", chromedp.Click(chromedp.CSS(`a[href="/ui/models/churn"]`)))
		b.waitJS("the model page", `document.body.innerText.includes("Versions")`)
		if got, _ := chromedp.Run(b.ctx, chromedp.Evaluate[bool](`document.querySelector("#pwned") === null && document.title !== "pwned"`)); !got {
			t.Fatal("the model description was rendered as markup")
		}
		if !strings.Contains(b.text("main"), markup) {
			t.Fatal("the model description is not shown as text")
		}
		b.do("open version 1", chromedp.Click(chromedp.CSS(`a[href="/ui/models/churn/versions/1"]`)))
		b.waitJS("the version page", `document.body.innerText.includes("Checks at registration")`)
		page := b.text("main")
		for _, want := range []string{"model.load", "roc_auc", "training_script", "retrain/train.py", "monthly_charges", "model.pkl"} {
			if !strings.Contains(page, want) {
				t.Errorf("version page lacks %q", want)
			}
		}
		b.screenshot("version")
		b.checkRendered("version")
	})

	t.Run("register a version by upload", func(t *testing.T) {
		b.do("open the models", chromedp.Navigate(s.URL+"/ui/models"))
		b.waitJS("the register form", `!!document.querySelector("#register")`)
		notJSON := filepath.Join(t.TempDir(), "metadata.json")
		os.WriteFile(notJSON, []byte("runtime: onnx"), 0o644)
		b.do("upload with metadata that is not JSON", chromedp.SetValue(chromedp.ID("register-model"), "churn-web"),
			chromedp.SetUploadFiles(chromedp.ID("register-artifact"), []string{examplePath("onnx-churn", "model.onnx")}),
			chromedp.SetUploadFiles(chromedp.ID("register-metadata"), []string{notJSON}),
			chromedp.Click(chromedp.ID("register-submit")))
		b.waitJS("the server's refusal", `!!document.querySelector("#register .error")`)
		if got := b.text("#register .error"); !strings.Contains(got, "metadata") {
			t.Fatalf("refusal = %q", got)
		}
		b.do("upload the ONNX model with its metadata",
			chromedp.SetUploadFiles(chromedp.ID("register-metadata"), []string{examplePath("onnx-churn", "metadata.json")}),
			chromedp.Click(chromedp.ID("register-submit")))
		b.waitJS("the new version's page", `location.pathname === "/ui/models/churn-web/versions/1" && document.body.innerText.includes("Checks at registration")`)
		if got := b.text("main h1"); !strings.Contains(got, "READY") {
			t.Fatalf("registered from the UI: %q", got)
		}
		v, err := s.Client().GetVersion(context.Background(), "churn-web", "1")
		if err != nil || v.Runtime != "onnx" || v.Files[0].SHA256 != sha256File(t, examplePath("onnx-churn", "model.onnx")) {
			t.Fatalf("the uploaded version: %+v, %v", v, err)
		}
		b.checkRendered("version registered from the UI")
	})

	t.Run("deploy a version and update the deployment", func(t *testing.T) {
		b.do("open version 1", chromedp.Navigate(s.URL+"/ui/models/churn/versions/1"))
		b.waitJS("the deploy form", `!!document.querySelector("#deploy")`)
		b.do("deploy under a taken name", chromedp.SetValue(chromedp.ID("deploy-name"), "churn-api"), chromedp.Click(chromedp.ID("deploy-submit")))
		b.waitJS("the server's refusal, next to the form", `document.querySelector("#deploy .error")?.innerText.includes("churn-api")`)
		if got := b.text("#deploy .error"); !strings.Contains(got, "exists") {
			t.Fatalf("refusal = %q", got)
		}
		b.do("deploy as churn-ui", chromedp.SetValue(chromedp.ID("deploy-name"), "churn-ui"), chromedp.Click(chromedp.ID("deploy-submit")))
		b.waitJS("the new deployment's page, ACTIVE", `location.pathname === "/ui/deployments/churn-ui" && /\bACTIVE\b/.test(document.querySelector("main h1")?.innerText)`)
		b.checkRendered("deployment created from the UI")

		b.do("apply without a change", chromedp.Click(chromedp.ID("update-submit")))
		b.waitJS("told that nothing changes", `document.querySelector("#update .error")?.innerText.includes("Nothing to change")`)
		b.do("scale to 2 replicas", chromedp.SetValue(chromedp.ID("update-replicas"), "2"), chromedp.Click(chromedp.ID("update-submit")))
		b.waitJS("2 replicas ready", `document.body.innerText.includes("2 ready of 2")`)
		d, err := s.Client().GetDeployment(context.Background(), "churn-ui")
		if err != nil || d.Replicas != 2 || d.Model != "churn" || d.Version != 1 {
			t.Fatalf("after the UI's deploy and update: %+v, %v", d, err)
		}
		b.screenshot("deployment-update")

		// Version 2: an alias pointed at it, then a canary of it, promoted.
		pushChurnV2(t, s)
		b.do("open version 2", chromedp.Navigate(s.URL+"/ui/models/churn/versions/2"))
		b.waitJS("the alias form", `!!document.querySelector("#set-alias")`)
		b.do("point @staging here", chromedp.SetValue(chromedp.ID("alias-name"), "staging"), chromedp.Click(chromedp.ID("set-alias-submit")))
		b.waitJS("the version shows @staging", `document.querySelector("main dl")?.innerText.includes("@staging")`)
		var alias struct{ Version int }
		if resp, body := s.do(t, "GET", "/api/v1/models/churn/aliases/staging", s.Token, nil, ""); resp.StatusCode != 200 || json.Unmarshal(body, &alias) != nil || alias.Version != 2 {
			t.Fatalf("alias set from the UI: %d %s", resp.StatusCode, body)
		}
		b.do("open churn-ui", chromedp.Navigate(s.URL+"/ui/deployments/churn-ui"))
		b.waitJS("the canary form", `!!document.querySelector("#canary")`)
		b.do("start a canary of version 2", chromedp.SetValue(chromedp.ID("canary-version"), "2"), chromedp.SetValue(chromedp.ID("canary-weight"), "20"),
			chromedp.Click(chromedp.ID("canary-analysis")), chromedp.Click(chromedp.ID("canary-submit")))
		b.waitJS("the canary, with its buttons", `document.querySelector("main dl")?.innerText.includes("canary v2 20%") && !!document.querySelector("#promote-canary")`)
		b.acceptConfirms() // this page was loaded anew
		b.do("promote it", chromedp.Click(chromedp.ID("promote-canary")))
		b.waitJS("version 2 serves, no canary", `!document.querySelector("#promote-canary") && /version\s*2/.test(document.querySelector("main dl")?.innerText)`)
		d, err = s.Client().GetDeployment(context.Background(), "churn-ui")
		if err != nil || d.Version != 2 || d.Canary != nil {
			t.Fatalf("after the canary's promotion from the UI: %+v, %v", d, err)
		}
		b.checkRendered("deployment after a promotion")
	})

	t.Run("runs: pipeline steps and a job's logs", func(t *testing.T) {
		b.do("open the runs", chromedp.Click(chromedp.CSS(`#nav a[href="/ui/runs"]`)))
		b.waitJS("the pipeline run", `!!document.querySelector('a[href^="/ui/pipeline-runs/pr-"]')`)
		b.do("open the pipeline run", chromedp.Click(chromedp.CSS(`a[href^="/ui/pipeline-runs/pr-"]`)))
		b.waitJS("the steps", `document.body.innerText.includes("builtin:register")`)
		page := b.text("main")
		if !strings.Contains(page, "SUCCEEDED") || !strings.Contains(page, "promote") {
			t.Fatalf("pipeline run page:\n%s", page)
		}
		b.do("open the train step's job run", chromedp.Click(chromedp.CSS(`a[href^="/ui/runs/jr-"]`)))
		b.waitJS("the job's logs", `document.querySelector("#run-log")?.innerText.includes("slipway run succeeded")`)
		b.screenshot("run")
		b.checkRendered("run")

		b.do("back to the runs", chromedp.Navigate(s.URL+"/ui/runs"))
		b.waitJS("the pipeline, with Run now", `!!document.querySelector("#run-pipeline-retrain")`)
		b.do("run the pipeline", chromedp.Click(chromedp.ID("run-pipeline-retrain")))
		b.waitJS("the new run's page, to its end", `location.pathname.startsWith("/ui/pipeline-runs/pr-") && /SUCCEEDED|FAILED/.test(document.querySelector("main h1")?.innerText)`)
		var runs struct{ Total int }
		if resp, body := s.do(t, "GET", "/api/v1/pipeline-runs", s.Token, nil, ""); resp.StatusCode != 200 || json.Unmarshal(body, &runs) != nil || runs.Total != 2 {
			t.Fatalf("pipeline runs after Run now: %d %s", resp.StatusCode, body)
		}
		b.checkRendered("pipeline run started from the UI")
	})

	t.Run("cancel a running job", func(t *testing.T) {
		script := filepath.Join(t.TempDir(), "sleeper.sh")
		if err := os.WriteFile(script, []byte("echo sleeper started\nsleep 300\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, errOut, code := s.cli("jobs", "create", "sleeper", script); code != 0 {
			t.Fatalf("jobs create: %s %s", out, errOut)
		}
		b.do("open the runs", chromedp.Navigate(s.URL+"/ui/runs"))
		b.waitJS("the job, with Run now", `!!document.querySelector("#run-job-sleeper")`)
		b.do("run it", chromedp.Click(chromedp.ID("run-job-sleeper")))
		b.waitJS("the running job's log", `location.pathname.startsWith("/ui/runs/jr-") && document.querySelector("#run-log")?.innerText.includes("sleeper started") && !!document.querySelector("#cancel")`)
		b.acceptConfirms()
		b.do("cancel", chromedp.Click(chromedp.ID("cancel")))
		b.waitJS("CANCELED", `document.querySelector("main h1")?.innerText.includes("CANCELED") && !document.querySelector("#cancel")`)
	})

	t.Run("batch predictions: progress, download, delete; schedules", func(t *testing.T) {
		out, errOut, code := s.cli("batch", "run", "--model", "churn@champion", "--input", featuresCSV(t, 300),
			"--output-format", "csv", "-o", "json")
		var run struct{ ID, State string }
		if code != 0 || json.Unmarshal([]byte(out), &run) != nil || run.State != "SUCCEEDED" {
			t.Fatalf("batch run: %s %s", out, errOut)
		}
		if out, errOut, code := s.cli("schedules", "create", "nightly", "--cron", "0 3 * * *", "--pipeline", "retrain"); code != 0 {
			t.Fatalf("schedules create: %s %s", out, errOut)
		}
		b.do("open the batch list", chromedp.Click(chromedp.CSS(`#nav a[href="/ui/batch"]`)))
		b.waitJS("the batch run", fmt.Sprintf(`!!document.querySelector('a[href="/ui/batch/%s"]')`, run.ID))
		b.do("open the batch run", chromedp.Click(chromedp.CSS(fmt.Sprintf(`a[href="/ui/batch/%s"]`, run.ID))))
		b.waitJS("its page", `document.body.innerText.includes("300 / 300 rows") && !!document.querySelector("#download")`)
		b.screenshot("batch")
		b.checkRendered("batch")
		// The download goes through fetch with the token; count the bytes handed to the browser.
		if _, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](`(URL.createObjectURL = (orig => blob => { window.downloaded = blob.size; return orig(blob); })(URL.createObjectURL), true)`)); err != nil {
			t.Fatal(err)
		}
		b.do("download", chromedp.Click(chromedp.ID("download")))
		b.waitJS("the file", `window.downloaded > 1000`)
		b.acceptConfirms()
		b.do("delete", chromedp.Click(chromedp.ID("delete")))
		b.waitJS("back at the list, without it", fmt.Sprintf(`location.pathname === "/ui/batch" && document.body.innerText.includes("Batch predictions") && !document.querySelector('a[href="/ui/batch/%s"]')`, run.ID))
		if resp, _ := s.do(t, "GET", "/api/v1/batch-predictions/"+run.ID, s.Token, nil, ""); resp.StatusCode != 404 {
			t.Errorf("deleted batch run: %d", resp.StatusCode)
		}

		b.do("open the schedules", chromedp.Click(chromedp.CSS(`#nav a[href="/ui/schedules"]`)))
		b.waitJS("the schedule", `document.body.innerText.includes("nightly")`)
		if got := b.text("main"); !strings.Contains(got, "0 3 * * *") || !strings.Contains(got, "pipeline retrain") {
			t.Errorf("schedules page:\n%s", got)
		}
		b.checkRendered("schedules")
	})

	t.Run("a deep link survives a reload", func(t *testing.T) {
		b.do("reload a deep link", chromedp.Navigate(s.URL+"/ui/models/churn/versions/1"))
		b.waitJS("the version page", `document.body.innerText.includes("Checks at registration")`)
	})

	t.Run("an unknown page and an unknown asset", func(t *testing.T) {
		b.do("open an unknown page", chromedp.Navigate(s.URL+"/ui/nowhere"))
		b.waitJS("not found", `document.querySelector("main h1")?.innerText === "Not found"`)
		resp, body := s.do(t, "GET", "/ui/nowhere.js", "", nil, "")
		if resp.StatusCode != 404 || resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Fatalf("unknown asset: %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
	})

	t.Run("audit: the log, filtered, and its chain verified", func(t *testing.T) {
		b.do("open the audit log", chromedp.Click(chromedp.CSS(`#nav a[href="/ui/audit"]`)))
		b.waitJS("the entries", `document.querySelector("main")?.innerText.includes("server.start")`)
		b.do("filter by action", chromedp.SetValue(chromedp.ID("audit-action"), "server.start"), chromedp.Click(chromedp.CSS(`#audit-filter button`)))
		b.waitJS("only server starts", `location.search.includes("action=server.start") && ![...document.querySelectorAll("main tbody tr")].some(r => !r.innerText.includes("server.start"))`)
		b.do("verify the chain", chromedp.Click(chromedp.ID("audit-verify-submit")))
		b.waitJS("the verdict", `document.querySelector("#audit-verify")?.innerText.includes("The chain holds")`)
		b.checkRendered("audit")
	})

	t.Run("tokens: created with the secret shown once, revoked", func(t *testing.T) {
		b.acceptConfirms()
		b.do("open the tokens", chromedp.Click(chromedp.CSS(`#nav a[href="/ui/tokens"]`)))
		b.waitJS("the token list", `document.querySelector("main")?.innerText.includes("Create a token")`)
		b.do("create a predict token", chromedp.SetValue(chromedp.ID("token-name"), "ci-bot"),
			chromedp.SetValue(chromedp.ID("token-role"), "predict"), chromedp.Click(chromedp.ID("create-token-submit")))
		b.waitJS("the secret, once", `!!document.querySelector("#token-secret") && !!document.querySelector("#revoke-ci-bot")`)
		secret := strings.TrimSpace(b.text("#token-secret"))
		whoami := func() int {
			resp, _ := s.do(t, "GET", "/api/v1/whoami", secret, nil, "")
			return resp.StatusCode
		}
		if code := whoami(); code != 200 {
			t.Fatalf("the secret shown by the UI: whoami %d", code)
		}
		b.do("revoke it", chromedp.Click(chromedp.ID("revoke-ci-bot")))
		b.waitJS("revoked", `!document.querySelector("#revoke-ci-bot")`)
		if code := whoami(); code != 401 {
			t.Fatalf("a token revoked in the UI: whoami %d", code)
		}
		b.do("revoke the token in use", chromedp.Click(chromedp.ID("revoke-admin")))
		b.waitJS("refused", `document.querySelector("main .error")?.innerText.includes("token making this request")`)
		b.checkRendered("tokens")
	})

	t.Run("sign out forgets the token", func(t *testing.T) {
		b.do("sign out", chromedp.Click(chromedp.ID("signout")), chromedp.WaitVisible(chromedp.ID("token")))
		b.do("reload", chromedp.Navigate(s.URL+"/ui/deployments"), chromedp.WaitVisible(chromedp.ID("token")))
	})

	t.Run("a viewer gets no buttons, a revoked token signs the browser out", func(t *testing.T) {
		out, errOut, code := s.cli("tokens", "create", "ui-viewer", "--role", "viewer", "-o", "json")
		if code != 0 {
			t.Fatalf("tokens create: %s %s", out, errOut)
		}
		var tok struct{ ID, Token string }
		if err := json.Unmarshal([]byte(out), &tok); err != nil || tok.Token == "" {
			t.Fatalf("tokens create output %q: %v", out, err)
		}
		id, secret := tok.ID, tok.Token
		b.do("sign in as viewer", chromedp.SetValue(chromedp.ID("token"), secret), chromedp.Click(chromedp.CSS(`form.login button[type=submit]`)))
		b.waitJS("the viewer is signed in", `document.querySelector("#who").innerText.includes("ui-viewer (viewer)")`)
		b.do("open the deployment as viewer", chromedp.Navigate(s.URL+"/ui/deployments/churn-api"))
		b.waitJS("the deployment page", `document.body.innerText.includes("Replicas")`)
		if got, _ := chromedp.Run(b.ctx, chromedp.Evaluate[bool](`!document.querySelector("#deactivate") && !document.querySelector("#activate") && !document.querySelector("#update") && !document.querySelector("#canary") && !document.querySelector("#alert")`)); !got {
			t.Fatal("a viewer is offered Deactivate/Activate or the update form")
		}
		b.do("open a version as viewer", chromedp.Navigate(s.URL+"/ui/models/churn/versions/1"))
		b.waitJS("the version page", `document.body.innerText.includes("Checks at registration")`)
		if got, _ := chromedp.Run(b.ctx, chromedp.Evaluate[bool](`!document.querySelector("#deploy") && !document.querySelector("#set-alias")`)); !got {
			t.Fatal("a viewer is offered the deploy form")
		}
		if got, _ := chromedp.Run(b.ctx, chromedp.Evaluate[bool](`document.querySelector('#nav a[href="/ui/tokens"]').hidden`)); !got {
			t.Fatal("a viewer is shown the Tokens page")
		}
		b.do("open the models as viewer", chromedp.Navigate(s.URL+"/ui/models"))
		b.waitJS("the model list", `!!document.querySelector('a[href="/ui/models/churn"]')`)
		if got, _ := chromedp.Run(b.ctx, chromedp.Evaluate[bool](`!document.querySelector("#register")`)); !got {
			t.Fatal("a viewer is offered the register form")
		}
		if out, errOut, code := s.cli("tokens", "revoke", id); code != 0 {
			t.Fatalf("tokens revoke: %s %s", out, errOut)
		}
		b.do("open the models", chromedp.Click(chromedp.CSS(`#nav a[href="/ui/models"]`)))
		b.waitJS("back at sign-in, with the reason", `!!document.querySelector("form.login .note")`)
		if got := b.text("form.login .note"); !strings.Contains(got, "not accepted") {
			t.Fatalf("note = %q", got)
		}
	})
	b.checkNoErrors()
}
