package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/client"
)

// altEnv is a second Python environment: a venv over Debian's python3 (so numpy and the rest are there) plus
// a package the default environment lacks, slipwaystub, from a folder a .pth file puts on sys.path.
type altEnv struct {
	python string // the venv's bin/python
	stub   string // the folder holding slipwaystub and its dist-info
}

func newAltEnv(t *testing.T, stubVersion string) *altEnv {
	t.Helper()
	dir := t.TempDir()
	venv := filepath.Join(dir, "alt")
	if out, err := exec.Command("/usr/bin/python3", "-m", "venv", "--system-site-packages", "--without-pip", venv).CombinedOutput(); err != nil {
		t.Fatalf("python3 -m venv (Debian: python3-venv): %v\n%s", err, out)
	}
	e := &altEnv{python: filepath.Join(venv, "bin", "python"), stub: filepath.Join(dir, "stubs")}
	purelib, err := exec.Command(e.python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").Output()
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(strings.TrimSpace(string(purelib)), "slipwaystub.pth"), e.stub+"\n")
	e.setStub(t, stubVersion)
	return e
}

// setStub installs slipwaystub at version (replacing the one there): the module and the dist-info that
// importlib.metadata reads, as pip would leave them.
func (e *altEnv) setStub(t *testing.T, version string) {
	t.Helper()
	if err := os.RemoveAll(e.stub); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(e.stub, "slipwaystub", "__init__.py"), "__version__ = \""+version+"\"\n")
	writeFile(t, filepath.Join(e.stub, "slipwaystub-"+version+".dist-info", "METADATA"),
		"Metadata-Version: 2.1\nName: slipwaystub\nVersion: "+version+"\n")
}

func regexpMatch(pattern, s string) bool { return regexp.MustCompile(pattern).MatchString(s) }

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// stubScore reports the interpreter that runs it and the stub's version (none where the stub is missing).
const stubScore = `
import sys
def load_model():
    try:
        import slipwaystub
        return slipwaystub.__version__
    except ImportError:
        return None
def predict(data, model=None):
    return {"executable": sys.executable, "stub": model}
`

func stubArtifact(t *testing.T, envSlug, requirements string) []byte {
	yaml := "MODEL_ARTIFACT_VERSION: '3.0'\nMODEL_DEPLOYMENT:\n  INFERENCE_PYTHON_VERSION: '3.11'\n"
	if envSlug != "" {
		yaml += "  INFERENCE_ENV_SLUG: " + envSlug + "\n"
	}
	return tarGz(t, map[string]string{"score.py": stubScore, "runtime.yaml": yaml, "requirements.txt": requirements})
}

func stubMeta(envName string) *slipway.VersionMetadata {
	m := &slipway.VersionMetadata{Runtime: slipway.RuntimePython, SampleInput: json.RawMessage(`{"x": 1}`)}
	if envName != "" {
		m.Environment = &slipway.Environment{Name: envName}
	}
	return m
}

func failedVersionCheck(v *slipway.ModelVersion, id string) string {
	for _, c := range v.Checks {
		if c.ID == id && !c.Passed {
			return c.Message
		}
	}
	return ""
}

// A version pinned to a second Python environment registers and serves from that interpreter; the same
// artifact in the default environment, or naming an unknown one, fails with the reason; and when the
// environment changes after registration, a new deployment fails naming the package, both versions and the
// environment.
func TestPythonEnvironments(t *testing.T) {
	t.Parallel()
	alt := newAltEnv(t, "2.0")
	s := startServer(t, "", "--python-env", "alt="+alt.python)
	c := s.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// The environments, as the API and the CLI list them: the stub is only in alt.
	envs, err := c.ListEnvironments(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(envs) != 2 || envs[0].Name != "default" || !envs[0].Default || envs[1].Name != "alt" || envs[1].Default {
		t.Fatalf("environments: %+v", envs)
	}
	if envs[0].Interpreter != "/usr/bin/python3" || envs[1].Interpreter != alt.python || envs[1].Executable != alt.python {
		t.Fatalf("interpreters: default %s, alt %s (executable %s), want /usr/bin/python3 and %s", envs[0].Interpreter, envs[1].Interpreter, envs[1].Executable, alt.python)
	}
	if envs[1].Packages["slipwaystub"] != "2.0" || envs[0].Packages["slipwaystub"] != "" {
		t.Fatalf("slipwaystub: alt has %q, default %q; want 2.0 and none", envs[1].Packages["slipwaystub"], envs[0].Packages["slipwaystub"])
	}
	if envs[1].PythonVersion == "" || envs[1].PythonVersion != envs[0].PythonVersion || envs[0].Packages["numpy"] == "" {
		t.Fatalf("python versions %q and %q (a venv of the same python), numpy %q", envs[0].PythonVersion, envs[1].PythonVersion, envs[0].Packages["numpy"])
	}
	out, errOut, code := s.cli("envs", "list", "--packages", "slipwaystub")
	if code != 0 || !strings.Contains(out, "alt") || !regexpMatch(`(?m)^alt\s+\S+\s+slipwaystub\s+2\.0\s*$`, out) || !regexpMatch(`(?m)^default\s+\S+\s+slipwaystub\s+-\s*$`, out) {
		t.Fatalf("envs list --packages slipwaystub: exit %d\n%s%s", code, out, errOut)
	}
	if out, errOut, code := s.cli("envs", "list"); code != 0 || !strings.Contains(out, alt.python) {
		t.Fatalf("envs list: exit %d\n%s%s", code, out, errOut)
	}

	// Pinned by runtime.yaml's INFERENCE_ENV_SLUG: the checks run in alt, which has slipwaystub 2.0.
	pinned, err := push(t, c, "pinned", stubArtifact(t, "alt", "slipwaystub==2.0\n"), "model.tar.gz", stubMeta(""))
	if err != nil {
		t.Fatal(err)
	}
	assertReady(t, pinned)
	if slipway.PythonEnvOf(pinned) != "alt" {
		t.Fatalf("pinned version's environment: %+v", pinned.Environment)
	}
	// The same artifact without a slug is checked in the default environment, which lacks the stub.
	unpinned, err := push(t, c, "unpinned", stubArtifact(t, "", "slipwaystub==2.0\n"), "model.tar.gz", stubMeta(""))
	if err != nil {
		t.Fatal(err)
	}
	if msg := failedVersionCheck(unpinned, "python.environment"); !strings.Contains(msg, "slipwaystub 2.0 declared, not installed in python environment default") {
		t.Fatalf("unpinned: state %s, checks %+v", unpinned.State, unpinned.Checks)
	}
	// An environment the server does not have is named, with the ones it has.
	unknown, err := push(t, c, "unknown", stubArtifact(t, "", "slipwaystub==2.0\n"), "model.tar.gz", stubMeta("nope"))
	if err != nil {
		t.Fatal(err)
	}
	if msg := failedVersionCheck(unknown, "python.environment"); !strings.Contains(msg, `unknown python environment "nope": this server has default, alt`) {
		t.Fatalf("unknown environment: state %s, checks %+v", unknown.State, unknown.Checks)
	}
	// runtime.yaml and the metadata disagreeing is refused rather than guessed.
	conflict, err := push(t, c, "conflict", stubArtifact(t, "alt", "slipwaystub==2.0\n"), "model.tar.gz", stubMeta("default"))
	if err != nil {
		t.Fatal(err)
	}
	if msg := failedVersionCheck(conflict, "python.environment"); !strings.Contains(msg, "name different python environments") {
		t.Fatalf("conflicting names: state %s, checks %+v", conflict.State, conflict.Checks)
	}

	// The pinned version serves from alt's interpreter, with alt's stub; a default one from /usr/bin/python3.
	deploy(t, s, "pinned", "--model", "pinned")
	plain, err := push(t, c, "plain", stubArtifact(t, "", "numpy\n"), "model.tar.gz", stubMeta(""))
	if err != nil {
		t.Fatal(err)
	}
	assertReady(t, plain)
	deploy(t, s, "plain", "--model", "plain")
	for name, want := range map[string]map[string]any{
		"pinned": {"executable": alt.python, "stub": "2.0"},
		"plain":  {"executable": "/usr/bin/python3", "stub": nil},
	} {
		resp, body := s.do(t, "POST", "/deployments/"+name+"/predict", s.Token, strings.NewReader(`{"x": 1}`), "application/json")
		var got map[string]any
		if resp.StatusCode != 200 || json.Unmarshal(body, &got) != nil || got["executable"] != want["executable"] || got["stub"] != want["stub"] {
			t.Fatalf("%s answered %d %s, want %v", name, resp.StatusCode, body, want)
		}
	}

	// The environment changes under the registered version: a new deployment of it fails, naming why.
	alt.setStub(t, "3.0")
	if _, err := c.CreateDeployment(ctx, client.DeploymentSpec{Name: "pinned-again", Model: "pinned"}); err != nil {
		t.Fatal(err)
	}
	d, err := c.WaitDeployment(ctx, "pinned-again", func(d *slipway.Deployment) bool {
		return d.State == slipway.DeploymentFailed || d.State == slipway.DeploymentActive
	}, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	const want = "slipwaystub 2.0 declared, server has 3.0 in python environment alt"
	if d.State != slipway.DeploymentFailed || !strings.Contains(d.Reason, want) {
		t.Fatalf("deployment after the environment changed: %s %q, want FAILED naming %q", d.State, d.Reason, want)
	}
	// The running deployment is not touched; restoring the package lets the same version deploy again.
	alt.setStub(t, "2.0")
	if _, err := c.ActivateDeployment(ctx, "pinned-again"); err != nil {
		t.Fatal(err)
	}
	d, err = c.WaitDeployment(ctx, "pinned-again", func(d *slipway.Deployment) bool {
		return d.State == slipway.DeploymentFailed || d.State == slipway.DeploymentActive
	}, 200*time.Millisecond)
	if err != nil || d.State != slipway.DeploymentActive {
		t.Fatalf("deployment after the environment was restored: %v %+v", err, d)
	}
}
