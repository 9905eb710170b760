package jobs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/slipway-ml/slipway"
)

// Bounds of a pipeline definition.
const (
	maxSteps       = 200
	maxRetries     = 20
	maxBackoff     = 3600          // seconds before the first retry
	maxStepTimeout = 7 * 24 * 3600 // seconds
	maxPipelineDef = 1 << 20       // bytes
)

// Builtin step names.
const (
	BuiltinRegister = "register"
	BuiltinEvaluate = "evaluate"
	BuiltinDeploy   = "deploy"
	BuiltinBatch    = "batch"
	BuiltinRollout  = "rollout"
)

var (
	// refPattern finds ${params.NAME}, ${steps.STEP.outputs.KEY}, ${steps.STEP.output_dir} and ${run.id}.
	// Other ${...} (shell variables in scripts) are left alone.
	refPattern   = regexp.MustCompile(`\$\{\s*((?:params|steps|run)\.[^}]*?)\s*\}`)
	paramPattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// ParsePipeline reads a pipeline definition: a JSON object, or YAML with the same fields. Unknown fields are
// refused (a misspelt field is a bug the author wants to hear about).
func ParsePipeline(b []byte) (*slipway.PipelineSpec, error) {
	if len(b) > maxPipelineDef {
		return nil, slipway.Errorf(slipway.ETOOLARGE, "pipeline definition larger than %d bytes", maxPipelineDef)
	}
	trimmed := bytes.TrimSpace(b)
	if len(trimmed) == 0 {
		return nil, slipway.Errorf(slipway.EINVALID, "the pipeline definition is empty: send JSON or YAML with name and steps")
	}
	if trimmed[0] != '{' {
		var doc any
		if err := yaml.Unmarshal(b, &doc); err != nil {
			return nil, slipway.Errorf(slipway.EINVALID, "pipeline definition is neither JSON nor valid YAML: %v", err)
		}
		doc, err := yamlToJSON(doc, "")
		if err != nil {
			return nil, err
		}
		if trimmed, err = json.Marshal(doc); err != nil {
			return nil, slipway.Errorf(slipway.EINVALID, "pipeline definition: %v", err)
		}
	}
	var spec slipway.PipelineSpec
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&spec); err != nil {
		return nil, slipway.Errorf(slipway.EINVALID, "pipeline definition: %v", err)
	}
	if dec.More() {
		return nil, slipway.Errorf(slipway.EINVALID, "pipeline definition: unexpected data after the JSON object")
	}
	return &spec, nil
}

// yamlToJSON turns what yaml.v3 decodes into values encoding/json accepts (string-keyed maps only).
func yamlToJSON(v any, at string) (any, error) {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			c, err := yamlToJSON(e, at+"."+k)
			if err != nil {
				return nil, err
			}
			t[k] = c
		}
		return t, nil
	case map[any]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			ks, ok := k.(string)
			if !ok {
				return nil, slipway.Errorf(slipway.EINVALID, "pipeline definition: key %v at %q is not a string", k, strings.TrimPrefix(at, "."))
			}
			c, err := yamlToJSON(e, at+"."+ks)
			if err != nil {
				return nil, err
			}
			out[ks] = c
		}
		return out, nil
	case []any:
		for i, e := range t {
			c, err := yamlToJSON(e, fmt.Sprintf("%s[%d]", at, i))
			if err != nil {
				return nil, err
			}
			t[i] = c
		}
		return t, nil
	}
	return v, nil
}

// problems collects every error of a definition so that the author fixes them in one go.
type problems []string

func (p *problems) add(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }

func (p problems) err(what string) error {
	if len(p) == 0 {
		return nil
	}
	return slipway.Errorf(slipway.EINVALID, "%s: %s", what, strings.Join(p, "; "))
}

// ValidatePipeline checks a definition: names, one kind per step, known built-ins and their inputs, existing
// jobs (jobExists), dependencies that exist and form no cycle, parameters and step outputs that are declared
// and reachable, bounds on retries and timeouts.
func ValidatePipeline(spec *slipway.PipelineSpec, jobExists func(name string) bool) error {
	if err := slipway.ValidateName("pipeline", spec.Name); err != nil {
		return err
	}
	var p problems
	for _, k := range slices.Sorted(maps.Keys(spec.Params)) {
		if !paramPattern.MatchString(k) {
			p.add("param name %q: use letters, digits and '_', not starting with a digit", k)
		}
		switch spec.Params[k].(type) {
		case nil, string, float64, bool:
		default:
			p.add("param %s: a default must be a string, number, boolean or null (null: every run must give it)", k)
		}
	}
	if len(spec.Steps) == 0 {
		p.add("no steps: a pipeline needs at least one step")
	}
	if len(spec.Steps) > maxSteps {
		p.add("%d steps: at most %d", len(spec.Steps), maxSteps)
	}
	steps := map[string]*slipway.StepSpec{}
	all := spec.Steps
	if spec.OnExit != nil {
		all = append(slices.Clone(spec.Steps), *spec.OnExit)
	}
	for i := range all {
		st := &all[i]
		if err := slipway.ValidateName("step", st.Name); err != nil {
			p.add("step %d: %s", i+1, slipway.ErrorMessage(err))
			continue
		}
		if steps[st.Name] != nil {
			p.add("step name %q is used twice", st.Name)
			continue
		}
		steps[st.Name] = st
	}
	if spec.OnExit != nil && len(spec.OnExit.DependsOn) > 0 {
		p.add("on_exit step %s must not have depends_on: it runs after every other step", spec.OnExit.Name)
	}
	for i := range all {
		st := &all[i]
		isExit := spec.OnExit != nil && i == len(all)-1
		validateStep(&p, st, isExit, steps, spec, jobExists)
	}
	if cycle := findCycle(spec.Steps); cycle != nil {
		p.add("the steps form a cycle: %s", strings.Join(cycle, " → "))
	}
	for i := range all {
		isExit := spec.OnExit != nil && i == len(all)-1
		validateRefs(&p, &all[i], isExit, spec)
	}
	return p.err("invalid pipeline " + spec.Name)
}

func validateStep(p *problems, st *slipway.StepSpec, isExit bool, steps map[string]*slipway.StepSpec, spec *slipway.PipelineSpec, jobExists func(string) bool) {
	kinds := 0
	for _, v := range []string{st.Job, st.Script, st.Builtin} {
		if v != "" {
			kinds++
		}
	}
	if kinds != 1 {
		p.add("step %s: give exactly one of job, script and builtin", st.Name)
	}
	switch {
	case st.Job != "":
		if jobExists != nil && !jobExists(st.Job) {
			p.add("step %s: job %q does not exist: create it first (slipway jobs create)", st.Name, st.Job)
		}
		checkWith(p, st, map[string]string{"args": "list", "env": "map"}, nil)
	case st.Script != "":
		checkWith(p, st, map[string]string{"env": "map"}, nil)
	case st.Builtin != "":
		switch st.Builtin {
		case BuiltinRegister:
			checkWith(p, st, map[string]string{"from": "string", "model": "string", "path": "string", "metadata_file": "string", "metadata": "map", "baseline": "string"}, []string{"from", "model"})
			if from, ok := st.With["from"].(string); ok && !refPattern.MatchString(from) {
				if steps[from] == nil {
					p.add("step %s: with.from names an unknown step %q", st.Name, from)
				} else if !isExit && !dependsOn(spec.Steps, st.Name, from) {
					p.add("step %s: with.from %q must be among its depends_on (directly or through other steps)", st.Name, from)
				}
			}
		case BuiltinEvaluate:
			checkWith(p, st, map[string]string{"model": "string", "candidate": "scalar", "baseline": "scalar", "thresholds": "map",
				"data": "map", "label": "string", "task": "string", "prediction": "string", "score": "string", "positive": "scalar"}, []string{"model", "candidate", "thresholds"})
			validateEvaluateData(p, st)
			if th, ok := st.With["thresholds"].(map[string]any); ok {
				if _, err := parseThresholds(placeholders(th).(map[string]any)); err != nil {
					p.add("step %s: %s", st.Name, slipway.ErrorMessage(err))
				}
			}
		case BuiltinDeploy:
			checkWith(p, st, map[string]string{"model": "string", "version": "scalar", "alias": "string", "deployment": "string", "wait": "scalar"}, []string{"model", "version"})
			if st.With["alias"] == nil && st.With["deployment"] == nil {
				p.add("step %s: a deploy step needs with.alias (move an alias) and/or with.deployment (update a deployment)", st.Name)
			}
		case BuiltinBatch:
			validateBatchWith(p, st)
		case BuiltinRollout:
			validateRolloutWith(p, st)
		default:
			p.add("step %s: unknown builtin %q: use register, evaluate, deploy, batch or rollout", st.Name, st.Builtin)
		}
	}
	seen := map[string]bool{}
	for _, d := range st.DependsOn {
		switch {
		case d == st.Name:
			p.add("step %s depends on itself", st.Name)
		case spec.OnExit != nil && d == spec.OnExit.Name:
			p.add("step %s depends on the on_exit step %s, which runs last", st.Name, d)
		case steps[d] == nil:
			p.add("step %s depends on unknown step %q", st.Name, d)
		case seen[d]:
			p.add("step %s lists %s twice in depends_on", st.Name, d)
		}
		seen[d] = true
	}
	if st.Retries < 0 || st.Retries > maxRetries {
		p.add("step %s: retries must be 0-%d", st.Name, maxRetries)
	}
	if st.RetryBackoffSeconds < 0 || st.RetryBackoffSeconds > maxBackoff {
		p.add("step %s: retry_backoff_seconds must be 0-%d", st.Name, maxBackoff)
	}
	if st.TimeoutSeconds < 0 || st.TimeoutSeconds > maxStepTimeout {
		p.add("step %s: timeout_seconds must be 0-%d (0: the job's max runtime)", st.Name, maxStepTimeout)
	}
}

// batchWith are the keys of a batch step's with: the body of POST /api/v1/batch-predictions.
var batchWith = map[string]string{"model": "string", "version": "scalar", "alias": "string", "deployment": "string",
	"input": "map", "output": "map", "key_columns": "list", "chunk_size": "scalar", "parallelism": "scalar",
	"on_bad_rows": "string", "chunk_timeout_ms": "scalar"}

// validateBatchWith checks the shape of a batch step's with; the batch service checks the rest (the model, the
// input, the connection) when the step starts, with the references substituted.
func validateBatchWith(p *problems, st *slipway.StepSpec) {
	checkWith(p, st, batchWith, []string{"input", "output"})
	if st.With["model"] == nil && st.With["deployment"] == nil {
		p.add("step %s: a batch step needs with.model (or with.deployment: score with the version it serves)", st.Name)
	}
	sub := func(key string, known ...string) {
		m, _ := st.With[key].(map[string]any)
		for _, k := range slices.Sorted(maps.Keys(m)) {
			if !slices.Contains(known, k) {
				p.add("step %s: unknown with.%s.%s (known: %s)", st.Name, key, k, strings.Join(known, ", "))
			}
		}
	}
	sub("input", "connection", "file", "format", "path", "query")
	sub("output", "connection", "format", "table")
}

// checkWith checks the keys and value types of a step's with.
func checkWith(p *problems, st *slipway.StepSpec, known map[string]string, required []string) {
	for _, k := range slices.Sorted(maps.Keys(st.With)) {
		want, ok := known[k]
		if !ok {
			p.add("step %s: unknown with.%s (known: %s)", st.Name, k, strings.Join(slices.Sorted(maps.Keys(known)), ", "))
			continue
		}
		v := st.With[k]
		good := true
		switch want {
		case "string":
			_, good = v.(string)
		case "scalar":
			switch v.(type) {
			case string, float64, bool:
			default:
				good = false
			}
		case "map":
			_, good = v.(map[string]any)
			if good && k == "env" {
				for ek, ev := range v.(map[string]any) {
					if _, ok := ev.(string); !ok {
						p.add("step %s: with.env.%s must be a string", st.Name, ek)
					}
				}
				env := map[string]string{}
				for ek := range v.(map[string]any) {
					env[ek] = ""
				}
				if err := validateRunInput(nil, env); err != nil {
					p.add("step %s: %s", st.Name, slipway.ErrorMessage(err))
				}
			}
		case "list":
			l, isList := v.([]any)
			good = isList
			for _, e := range l {
				if _, ok := e.(string); !ok {
					p.add("step %s: with.%s must be a list of strings", st.Name, k)
					break
				}
			}
		}
		if !good {
			p.add("step %s: with.%s must be a %s", st.Name, k, want)
		}
	}
	for _, k := range required {
		if _, ok := st.With[k]; !ok {
			p.add("step %s: missing with.%s", st.Name, k)
		}
	}
}

// findCycle returns the steps of a dependency cycle (first step repeated at the end), or nil.
func findCycle(steps []slipway.StepSpec) []string {
	deps := map[string][]string{}
	for _, s := range steps {
		deps[s.Name] = s.DependsOn
	}
	const (
		unseen = iota
		onPath
		done
	)
	color := map[string]int{}
	var path []string
	var visit func(n string) []string
	visit = func(n string) []string {
		color[n] = onPath
		path = append(path, n)
		for _, d := range deps[n] {
			switch color[d] {
			case onPath:
				i := slices.Index(path, d)
				return append(slices.Clone(path[i:]), d)
			case unseen:
				if c := visit(d); c != nil {
					return c
				}
			}
		}
		path = path[:len(path)-1]
		color[n] = done
		return nil
	}
	for _, s := range steps {
		if color[s.Name] == unseen {
			if c := visit(s.Name); c != nil {
				slices.Reverse(c) // read it as "a runs before b"
				return c
			}
		}
	}
	return nil
}

// dependsOn reports whether step depends on other, directly or transitively.
func dependsOn(steps []slipway.StepSpec, step, other string) bool {
	deps := map[string][]string{}
	for _, s := range steps {
		deps[s.Name] = s.DependsOn
	}
	seen := map[string]bool{}
	var walk func(n string) bool
	walk = func(n string) bool {
		for _, d := range deps[n] {
			if d == other {
				return true
			}
			if !seen[d] {
				seen[d] = true
				if walk(d) {
					return true
				}
			}
		}
		return false
	}
	return walk(step)
}

// ref is a parsed ${...} reference.
type ref struct {
	kind  string // params, steps, run
	name  string // param or step name
	field string // outputs, output_dir, id
	key   string // output key
}

func parseRef(expr string) (ref, error) {
	parts := strings.SplitN(expr, ".", 4)
	switch {
	case parts[0] == "params" && len(parts) == 2 && parts[1] != "":
		return ref{kind: "params", name: parts[1]}, nil
	case parts[0] == "run" && len(parts) == 2 && parts[1] == "id":
		return ref{kind: "run", field: "id"}, nil
	case parts[0] == "steps" && len(parts) == 4 && parts[2] == "outputs" && parts[3] != "":
		return ref{kind: "steps", name: parts[1], field: "outputs", key: parts[3]}, nil
	case parts[0] == "steps" && len(parts) == 3 && parts[2] == "output_dir":
		return ref{kind: "steps", name: parts[1], field: "output_dir"}, nil
	}
	return ref{}, fmt.Errorf("unknown reference ${%s}: use ${params.NAME}, ${steps.STEP.outputs.KEY}, ${steps.STEP.output_dir} or ${run.id}", expr)
}

// stepStrings returns every string of a step that references are substituted in.
func stepStrings(st *slipway.StepSpec) []string {
	out := []string{st.Script}
	var walk func(v any)
	walk = func(v any) {
		switch t := v.(type) {
		case string:
			out = append(out, t)
		case map[string]any:
			for _, e := range t {
				walk(e)
			}
		case []any:
			for _, e := range t {
				walk(e)
			}
		}
	}
	walk(st.With)
	return out
}

func validateRefs(p *problems, st *slipway.StepSpec, isExit bool, spec *slipway.PipelineSpec) {
	names := map[string]bool{}
	for _, s := range spec.Steps {
		names[s.Name] = true
	}
	for _, str := range stepStrings(st) {
		for _, m := range refPattern.FindAllStringSubmatch(str, -1) {
			r, err := parseRef(m[1])
			if err != nil {
				p.add("step %s: %v", st.Name, err)
				continue
			}
			switch r.kind {
			case "params":
				if _, ok := spec.Params[r.name]; !ok {
					p.add("step %s uses ${params.%s} but the pipeline declares no param %s (add it under params, with a default or null)", st.Name, r.name, r.name)
				}
			case "steps":
				switch {
				case !names[r.name]:
					p.add("step %s uses the outputs of unknown step %q", st.Name, r.name)
				case !isExit && !dependsOn(spec.Steps, st.Name, r.name):
					p.add("step %s uses the outputs of step %s but does not depend on it: add %s to its depends_on", st.Name, r.name, r.name)
				}
			}
		}
	}
}

// ResolveParams merges a run's parameters over the defaults: unknown names and missing required ones are
// refused.
func ResolveParams(spec *slipway.PipelineSpec, given map[string]any) (map[string]any, error) {
	out := map[string]any{}
	var p problems
	for _, k := range slices.Sorted(maps.Keys(given)) {
		if _, ok := spec.Params[k]; !ok {
			p.add("unknown param %q (declared: %s)", k, strings.Join(slices.Sorted(maps.Keys(spec.Params)), ", "))
			continue
		}
		switch given[k].(type) {
		case string, float64, bool:
		default:
			p.add("param %s must be a string, number or boolean", k)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(spec.Params)) {
		v, ok := given[k]
		if !ok || v == nil {
			v = spec.Params[k]
		}
		if v == nil {
			p.add("missing param %s: it has no default, give it in params", k)
			continue
		}
		out[k] = v
	}
	return out, p.err("pipeline " + spec.Name)
}

// scope is what references resolve against when a step starts.
type scope struct {
	runID   string
	params  map[string]any
	outputs map[string]map[string]any // step → outputs
	dirs    map[string]string         // step → output folder
	lenient bool                      // on_exit: a missing output is "" rather than an error
}

// formatValue shows a parameter or output value in a string.
func formatValue(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case float64:
		return strconv.FormatFloat(t, 'g', -1, 64)
	case bool:
		return strconv.FormatBool(t)
	case nil:
		return ""
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func (sc *scope) lookup(expr string) (any, error) {
	r, err := parseRef(expr)
	if err != nil {
		return nil, err
	}
	switch r.kind {
	case "params":
		v, ok := sc.params[r.name]
		if !ok {
			return nil, fmt.Errorf("no param %s", r.name)
		}
		return v, nil
	case "run":
		return sc.runID, nil
	}
	if r.field == "output_dir" {
		d, ok := sc.dirs[r.name]
		if !ok && !sc.lenient {
			return nil, fmt.Errorf("step %s has no output folder", r.name)
		}
		return d, nil
	}
	v, ok := sc.outputs[r.name][r.key]
	if !ok && !sc.lenient {
		return nil, fmt.Errorf("step %s wrote no output %q (write it to $SLIPWAY_OUTPUT_DIR/outputs.json)", r.name, r.key)
	}
	return v, nil
}

// substitute replaces the references in s. A string that is exactly one reference keeps the value's type.
func (sc *scope) substitute(s string) (any, error) {
	if m := refPattern.FindStringSubmatch(s); m != nil && m[0] == strings.TrimSpace(s) {
		return sc.lookup(m[1])
	}
	var firstErr error
	out := refPattern.ReplaceAllStringFunc(s, func(m string) string {
		v, err := sc.lookup(refPattern.FindStringSubmatch(m)[1])
		if err != nil && firstErr == nil {
			firstErr = err
		}
		return formatValue(v)
	})
	return out, firstErr
}

func (sc *scope) substituteString(s string) (string, error) {
	v, err := sc.substitute(s)
	return formatValue(v), err
}

// substituteAny replaces references in every string of v (maps and lists included).
func (sc *scope) substituteAny(v any) (any, error) {
	switch t := v.(type) {
	case string:
		return sc.substitute(t)
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			c, err := sc.substituteAny(e)
			if err != nil {
				return nil, err
			}
			out[k] = c
		}
		return out, nil
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			c, err := sc.substituteAny(e)
			if err != nil {
				return nil, err
			}
			out[i] = c
		}
		return out, nil
	}
	return v, nil
}

// placeholders replaces each string that is a whole reference (${params.x}) with 0, so that the shape of a
// value that is only known at run time can be checked at creation.
func placeholders(v any) any {
	switch t := v.(type) {
	case string:
		if m := refPattern.FindString(t); m != "" && m == strings.TrimSpace(t) {
			return 0.0
		}
		return t
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[k] = placeholders(e)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = placeholders(e)
		}
		return out
	}
	return v
}
