package jobs

import (
	"strings"
	"testing"

	"github.com/slipway-ml/slipway"
)

func TestParsePipelineYAMLAndJSON(t *testing.T) {
	yamlDef := `
name: retrain
params:
  C: 1.0
  features: all
  data: null
steps:
  - name: train
    script: python3 train.py --C ${params.C}
    retries: 2
    retry_backoff_seconds: 1.5
    cache: true
  - name: register
    builtin: register
    depends_on: [train]
    with: {from: train, model: churn}
on_exit:
  name: notify
  script: echo done
`
	jsonDef := `{"name": "retrain", "params": {"C": 1.0, "features": "all", "data": null},
	  "steps": [{"name": "train", "script": "python3 train.py --C ${params.C}", "retries": 2, "retry_backoff_seconds": 1.5, "cache": true},
	            {"name": "register", "builtin": "register", "depends_on": ["train"], "with": {"from": "train", "model": "churn"}}],
	  "on_exit": {"name": "notify", "script": "echo done"}}`
	for name, def := range map[string]string{"yaml": yamlDef, "json": jsonDef} {
		t.Run(name, func(t *testing.T) {
			spec, err := ParsePipeline([]byte(def))
			if err != nil {
				t.Fatal(err)
			}
			if spec.Name != "retrain" || len(spec.Steps) != 2 || spec.Steps[0].Retries != 2 || spec.Steps[0].RetryBackoffSeconds != 1.5 ||
				!spec.Steps[0].Cache || spec.OnExit == nil || spec.Params["C"] != 1.0 || spec.Params["data"] != nil {
				t.Errorf("parsed %+v", spec)
			}
			if err := ValidatePipeline(spec, nil); err != nil {
				t.Error(err)
			}
		})
	}
	if _, err := ParsePipeline([]byte("name: x\nstepz: []\n")); err == nil || !strings.Contains(err.Error(), "stepz") {
		t.Errorf("unknown field: %v", err)
	}
}

func TestValidatePipeline(t *testing.T) {
	script := func(name, body string, deps ...string) slipway.StepSpec {
		return slipway.StepSpec{Name: name, Script: body, DependsOn: deps}
	}
	cases := []struct {
		name string
		spec slipway.PipelineSpec
		want string // "" = valid
	}{
		{"valid chain", slipway.PipelineSpec{Steps: []slipway.StepSpec{script("a", "x"), script("b", "echo ${steps.a.outputs.v}", "a")}}, ""},
		{"transitive reference", slipway.PipelineSpec{Steps: []slipway.StepSpec{script("a", "x"), script("b", "x", "a"), script("c", "${steps.a.output_dir}", "b")}}, ""},
		{"shell variables are not references", slipway.PipelineSpec{Steps: []slipway.StepSpec{script("a", "echo ${HOME} $SLIPWAY_OUTPUT_DIR")}}, ""},
		{"cycle", slipway.PipelineSpec{Steps: []slipway.StepSpec{script("a", "x", "c"), script("b", "x", "a"), script("c", "x", "b")}}, "cycle: "},
		{"self", slipway.PipelineSpec{Steps: []slipway.StepSpec{script("a", "x", "a")}}, "depends on itself"},
		{"unknown dependency", slipway.PipelineSpec{Steps: []slipway.StepSpec{script("a", "x", "nope")}}, `depends on unknown step "nope"`},
		{"undeclared param", slipway.PipelineSpec{Steps: []slipway.StepSpec{script("a", "echo ${params.lr}")}}, "declares no param lr"},
		{"output without dependency", slipway.PipelineSpec{Steps: []slipway.StepSpec{script("a", "x"), script("b", "${steps.a.outputs.v}")}}, "does not depend on it"},
		{"unknown reference", slipway.PipelineSpec{Steps: []slipway.StepSpec{script("a", "${steps.a}")}}, "unknown reference"},
		{"no kind", slipway.PipelineSpec{Steps: []slipway.StepSpec{{Name: "a"}}}, "exactly one of job, script and builtin"},
		{"two kinds", slipway.PipelineSpec{Steps: []slipway.StepSpec{{Name: "a", Script: "x", Builtin: "deploy"}}}, "exactly one"},
		{"unknown builtin", slipway.PipelineSpec{Steps: []slipway.StepSpec{{Name: "a", Builtin: "train"}}}, `unknown builtin "train"`},
		{"unknown job", slipway.PipelineSpec{Steps: []slipway.StepSpec{{Name: "a", Job: "ghost"}}}, `job "ghost" does not exist`},
		{"duplicate step", slipway.PipelineSpec{Steps: []slipway.StepSpec{script("a", "x"), script("a", "y")}}, "used twice"},
		{"no steps", slipway.PipelineSpec{}, "no steps"},
		{"register needs from", slipway.PipelineSpec{Steps: []slipway.StepSpec{{Name: "r", Builtin: "register", With: map[string]any{"model": "m"}}}}, "missing with.from"},
		{"register from non-dependency", slipway.PipelineSpec{Steps: []slipway.StepSpec{script("t", "x"), {Name: "r", Builtin: "register", With: map[string]any{"model": "m", "from": "t"}}}}, "must be among its depends_on"},
		{"bad threshold", slipway.PipelineSpec{Steps: []slipway.StepSpec{{Name: "e", Builtin: "evaluate", With: map[string]any{"model": "m", "candidate": "3",
			"thresholds": map[string]any{"auc": map[string]any{"min_gain": 1.0}}}}}}, "min_gain"},
		{"deploy needs a target", slipway.PipelineSpec{Steps: []slipway.StepSpec{{Name: "d", Builtin: "deploy", With: map[string]any{"model": "m", "version": "1"}}}}, "with.alias"},
		{"unknown with", slipway.PipelineSpec{Steps: []slipway.StepSpec{{Name: "a", Script: "x", With: map[string]any{"argz": "1"}}}}, "unknown with.argz"},
		{"retries bound", slipway.PipelineSpec{Steps: []slipway.StepSpec{{Name: "a", Script: "x", Retries: 99}}}, "retries must be"},
		{"on_exit with depends_on", slipway.PipelineSpec{Steps: []slipway.StepSpec{script("a", "x")}, OnExit: &slipway.StepSpec{Name: "z", Script: "x", DependsOn: []string{"a"}}}, "must not have depends_on"},
		{"depends on on_exit", slipway.PipelineSpec{Steps: []slipway.StepSpec{script("a", "x", "z")}, OnExit: &slipway.StepSpec{Name: "z", Script: "x"}}, "on_exit step z"},
		{"batch step", slipway.PipelineSpec{Params: map[string]any{"m": "churn"}, Steps: []slipway.StepSpec{{Name: "b", Builtin: "batch", With: map[string]any{"model": "${params.m}",
			"version": "@champion", "input": map[string]any{"path": "x.csv"}, "output": map[string]any{"connection": "wh", "table": "t"},
			"key_columns": []any{"id"}, "chunk_size": 100.0, "parallelism": "${params.m}", "on_bad_rows": "skip", "chunk_timeout_ms": 1000.0}}}}, ""},
		{"batch needs input and output", slipway.PipelineSpec{Steps: []slipway.StepSpec{{Name: "b", Builtin: "batch", With: map[string]any{"model": "m"}}}}, "missing with.input; step b: missing with.output"},
		{"batch needs a model", slipway.PipelineSpec{Steps: []slipway.StepSpec{{Name: "b", Builtin: "batch", With: map[string]any{"input": map[string]any{}, "output": map[string]any{}}}}}, "needs with.model"},
		{"batch unknown keys", slipway.PipelineSpec{Steps: []slipway.StepSpec{{Name: "b", Builtin: "batch", With: map[string]any{"model": "m", "chunks": 1.0,
			"input": map[string]any{"pth": "x"}, "output": map[string]any{"tabel": "t"}}}}}, "unknown with.chunks"},
		{"batch unknown input key", slipway.PipelineSpec{Steps: []slipway.StepSpec{{Name: "b", Builtin: "batch", With: map[string]any{"model": "m",
			"input": map[string]any{"pth": "x"}, "output": map[string]any{"tabel": "t"}}}}}, "unknown with.input.pth (known: connection, file, format, path, query); step b: unknown with.output.tabel"},
		{"batch key columns are a list", slipway.PipelineSpec{Steps: []slipway.StepSpec{{Name: "b", Builtin: "batch", With: map[string]any{"model": "m",
			"input": map[string]any{}, "output": map[string]any{}, "key_columns": "id"}}}}, "with.key_columns must be a list"},
		{"rollout step", slipway.PipelineSpec{Params: map[string]any{"v": 2.0}, Steps: []slipway.StepSpec{{Name: "r", Builtin: "rollout", With: map[string]any{"deployment": "churn-api",
			"version": "${params.v}", "steps": []any{"shadow=10s", map[string]any{"canary": 50.0, "for": "10s"}}, "gates": map[string]any{"min_agreement": 0.9, "min_requests": "20"}}}}}, ""},
		{"rollout step needs steps", slipway.PipelineSpec{Steps: []slipway.StepSpec{{Name: "r", Builtin: "rollout", With: map[string]any{"deployment": "d", "version": "2"}}}}, "missing with.steps"},
		{"rollout bad step", slipway.PipelineSpec{Steps: []slipway.StepSpec{{Name: "r", Builtin: "rollout", With: map[string]any{"deployment": "d", "version": "2",
			"steps": []any{"canary=50"}}}}}, `with.steps[0]: step "canary=50": a canary step needs its duration`},
		{"rollout gate out of range", slipway.PipelineSpec{Steps: []slipway.StepSpec{{Name: "r", Builtin: "rollout", With: map[string]any{"deployment": "d", "version": "2",
			"steps": []any{"shadow=5s"}, "gates": map[string]any{"min_agreement": 3.0}}}}}, "gates.min_agreement: a share from 0 to 1"},
		{"rollout unknown gate", slipway.PipelineSpec{Steps: []slipway.StepSpec{{Name: "r", Builtin: "rollout", With: map[string]any{"deployment": "d", "version": "2",
			"steps": []any{"shadow=5s"}, "gates": map[string]any{"agreement": 0.9}}}}}, `unknown field "agreement"`},
		{"bad param name", slipway.PipelineSpec{Params: map[string]any{"9x": 1.0}, Steps: []slipway.StepSpec{script("a", "x")}}, "param name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.spec.Name = "p"
			err := ValidatePipeline(&tc.spec, func(name string) bool { return name == "known" })
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tc.want != "" && (slipway.ErrorCode(err) != slipway.EINVALID || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("err = %v, want EINVALID containing %q", err, tc.want)
			}
		})
	}
}

func TestResolveParams(t *testing.T) {
	spec := &slipway.PipelineSpec{Name: "p", Params: map[string]any{"C": 1.0, "data": nil}}
	got, err := ResolveParams(spec, map[string]any{"data": "x.csv"})
	if err != nil || got["C"] != 1.0 || got["data"] != "x.csv" {
		t.Errorf("got %v, %v", got, err)
	}
	if _, err := ResolveParams(spec, nil); err == nil || !strings.Contains(err.Error(), "missing param data") {
		t.Errorf("missing: %v", err)
	}
	if _, err := ResolveParams(spec, map[string]any{"data": "x", "lr": 1.0}); err == nil || !strings.Contains(err.Error(), `unknown param "lr"`) {
		t.Errorf("unknown: %v", err)
	}
}

func TestSubstitute(t *testing.T) {
	sc := &scope{runID: "pr-1", params: map[string]any{"C": 0.5, "name": "x"},
		outputs: map[string]map[string]any{"reg": {"version": 3.0}}, dirs: map[string]string{"train": "/d/out"}}
	cases := []struct {
		in   string
		want any
	}{
		{"--C ${params.C} --name ${params.name}", "--C 0.5 --name x"},
		{"${steps.reg.outputs.version}", 3.0}, // a whole reference keeps its type
		{"v${steps.reg.outputs.version} in ${steps.train.output_dir} for ${run.id}", "v3 in /d/out for pr-1"},
		{"${HOME} stays", "${HOME} stays"},
	}
	for _, tc := range cases {
		got, err := sc.substitute(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("substitute(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	if _, err := sc.substitute("${steps.reg.outputs.missing}"); err == nil || !strings.Contains(err.Error(), "outputs.json") {
		t.Errorf("missing output: %v", err)
	}
}

func TestEvaluateThresholds(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	no := false
	cases := []struct {
		name       string
		th         threshold
		cand, base float64
		noBase     bool
		fails      bool
	}{
		{"better passes", threshold{MinAbsoluteChange: f(0)}, 0.85, 0.80, false, false},
		{"worse fails", threshold{MinAbsoluteChange: f(0)}, 0.70, 0.80, false, true},
		{"equal passes at 0", threshold{MinAbsoluteChange: f(0)}, 0.80, 0.80, false, false},
		{"not enough absolute gain", threshold{MinAbsoluteChange: f(0.05)}, 0.83, 0.80, false, true},
		{"relative gain", threshold{MinRelativeChange: f(0.05)}, 0.85, 0.80, false, false},
		{"not enough relative gain", threshold{MinRelativeChange: f(0.1)}, 0.85, 0.80, false, true},
		{"min value", threshold{MinValue: f(0.9)}, 0.85, 0, true, true},
		{"no baseline: only min value", threshold{MinValue: f(0.5), MinAbsoluteChange: f(0.1)}, 0.6, 0, true, false},
		{"lower is better", threshold{MinAbsoluteChange: f(0.01), GreaterIsBetter: &no}, 0.10, 0.20, false, false},
		{"lower is better, worse", threshold{MinAbsoluteChange: f(0), GreaterIsBetter: &no}, 0.30, 0.20, false, true},
		{"lower is better, max value", threshold{MinValue: f(0.2), GreaterIsBetter: &no}, 0.30, 0, true, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var base map[string]float64
			if !tc.noBase {
				base = map[string]float64{"m": tc.base}
			}
			failed := Evaluate(map[string]threshold{"m": tc.th}, map[string]float64{"m": tc.cand}, base, "champion")
			if (len(failed) > 0) != tc.fails {
				t.Errorf("failed = %v, want failure %v", failed, tc.fails)
			}
		})
	}
}
