package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/slipwaytest"
)

// kubeRetrainPipeline trains the churn model in its pod, registers it through the API with the run's token
// (the files of $SLIPWAY_OUTPUT_DIR stay in the pod, so the step pushes them itself with the image's slipway),
// and rolls the deployment ${params.deployment} out to the new version.
const kubeRetrainPipeline = `name: kretrain
params:
  deployment: kpipe
steps:
  - name: train
    script: |
      set -e
      "$SLIPWAY_PYTHON" retrain/train.py --data data/churn.csv --out trained
      /opt/slipway/bin/slipway models push trained --model churn --metadata trained/metadata.json -o json > pushed.json
      "$SLIPWAY_PYTHON" -c 'import json, os; v = json.load(open("pushed.json"))["version"]; print("registered version", v); json.dump({"version": v, "cwd": os.getcwd()}, open(os.path.join(os.environ["SLIPWAY_OUTPUT_DIR"], "outputs.json"), "w"))'
  - name: rollout
    builtin: deploy
    depends_on: [train]
    with:
      model: churn
      version: ${steps.train.outputs.version}
      deployment: ${params.deployment}
`

// TestKubernetesPipelineTrainAndDeploy: with --engine kubernetes a pipeline's train step is a Kubernetes Job
// (its pod trains and registers the model) and its deploy step rolls the deployment's replica Deployment out to
// the trained version; the prediction answers through the server from the new version's pod.
func TestKubernetesPipelineTrainAndDeploy(t *testing.T) {
	k := slipwaytest.StartKubernetes(t, binary)
	cs := kubeClient(t, k)
	s := startKubeServer(t, k, "", "--replica-network", "host")
	c := s.Client()
	pushExamples(t, s) // churn version 1
	name := "kpipe"
	deploy(t, s, name, "--model", "churn:1", "--replicas", "1")
	t.Cleanup(func() { s.cli("deployments", "delete", name) })
	waitActive(t, s, name)

	def := filepath.Join(t.TempDir(), "pipeline.yaml")
	if err := os.WriteFile(def, []byte(kubeRetrainPipeline), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := s.cli("pipelines", "create", def, "--artifact", examplePath()); code != 0 {
		t.Fatalf("pipelines create: %s %s", out, errOut)
	}
	r, err := c.RunPipeline(ctxFor(t, time.Minute), "kretrain", nil)
	if err != nil {
		t.Fatal(err)
	}
	// The train step's run is a Job while it runs.
	var trainRun string
	waitFor(t, "the train step's Kubernetes Job", 3*time.Minute, func() bool {
		got, err := c.GetPipelineRun(ctxFor(t, time.Minute), r.ID)
		if err != nil {
			return false
		}
		if st := stepNamed(got, "train"); st != nil && st.JobRun != "" {
			trainRun = st.JobRun
			return len(runJobs(t, cs, trainRun)) == 1
		}
		return false
	})
	r, err = c.WaitPipelineRun(ctxFor(t, 6*time.Minute), r.ID, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	train, rollout := stepNamed(r, "train"), stepNamed(r, "rollout")
	if r.State != slipway.RunSucceeded || train.State != slipway.StepSucceeded || rollout.State != slipway.StepSucceeded {
		t.Fatalf("pipeline run %s %q: train %s %q, rollout %s %q\ntrain log:\n%s", r.State, r.Reason, train.State, train.Reason,
			rollout.State, rollout.Reason, runLog(t, c, trainRun))
	}
	if v := train.Outputs["version"]; v != 2.0 {
		t.Fatalf("train outputs %v: want version 2", train.Outputs)
	}
	// The train step ran in the Job's pod: its working folder is the pod's (/slipway/run), not one on this machine.
	if cwd, _ := train.Outputs["cwd"].(string); !strings.HasPrefix(cwd, "/slipway/run") {
		t.Errorf("the train step ran in %q, want the pod's /slipway/run", cwd)
	}
	if log := runLog(t, c, trainRun); !strings.Contains(log, "registered version 2") {
		t.Errorf("train log:\n%s", log)
	}

	// The deploy step rolled the deployment out to version 2: its replica Deployment is version 2's, alone.
	waitFor(t, "version 2's replica Deployment alone", 3*time.Minute, func() bool {
		ds, pods := replicaObjects(t, cs, name)
		return len(ds) == 1 && ds[0].Name == "slipway-"+name+"-v2" && len(pods) == 1 && connected(s, name, 1)
	})
	d, err := c.GetDeployment(ctxFor(t, time.Minute), name)
	if err != nil || d.Version != 2 || d.State != slipway.DeploymentActive {
		t.Fatalf("deployment after the pipeline: %+v, %v", d, err)
	}
	if rs := d.RemoteReplicas; len(rs) != 1 || rs[0].Version != 2 || !strings.HasPrefix(rs[0].Pod, "slipway-"+name+"-v2-") {
		t.Errorf("remote replicas %+v: want one worker of version 2 in a slipway-%s-v2 pod", rs, name)
	}
	cols, rows := churnRows(t, 20)
	body := mustJSON(map[string]any{"dataframe_split": map[string]any{"columns": cols, "data": rows}})
	resp, b := s.do(t, "POST", "/deployments/"+name+"/invocations", s.Token, bytes.NewReader(body), "application/json")
	if resp.StatusCode != 200 {
		t.Fatalf("predict on the trained version: %d %s", resp.StatusCode, b)
	}
	var pred struct {
		Predictions []any `json:"predictions"`
	}
	if err := json.Unmarshal(b, &pred); err != nil || len(pred.Predictions) != 20 {
		t.Fatalf("predictions %s: %v", b, err)
	}
}
