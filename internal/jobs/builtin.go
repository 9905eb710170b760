package jobs

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/slipway-ml/slipway"
)

// runBuiltin runs one built-in step with its resolved with; outputDirs are the output folders of the run's
// succeeded steps.
func (s *Service) runBuiltin(ctx context.Context, run *slipway.PipelineRun, name string, with map[string]any, outputDirs map[string]string) (map[string]any, error) {
	switch name {
	case BuiltinRegister:
		return s.builtinRegister(ctx, run, with, outputDirs)
	case BuiltinEvaluate:
		return s.builtinEvaluate(ctx, run, with, outputDirs)
	case BuiltinDeploy:
		return s.builtinDeploy(ctx, run, with)
	}
	return nil, slipway.Errorf(slipway.EINVALID, "unknown builtin %q", name)
}

// inRunProject scopes a built-in step's work to its pipeline run's project: what it registers, deploys or
// predicts must be that project's, as if the run's own token had asked through the API.
func inRunProject(ctx context.Context, run *slipway.PipelineRun) context.Context {
	if run.Project == "" {
		return ctx
	}
	return slipway.WithProject(ctx, run.Project)
}

// auditBuiltin records a built-in step that changes state (register, deploy, batch) in the audit log: it acts
// for its pipeline run without an API call, so nothing else would. The actor is the pipeline run.
func (s *Service) auditBuiltin(ctx context.Context, run *slipway.PipelineRun, step, builtin string, outputs map[string]any, err error) {
	if builtin == BuiltinEvaluate {
		return // reads only
	}
	e := &slipway.AuditEntry{Action: "pipeline." + builtin, TokenName: run.ID, Project: run.Project,
		Target: "pipeline-runs/" + run.ID, Status: http.StatusOK}
	detail := map[string]any{"pipeline": run.Pipeline, "step": step, "outputs": outputs}
	if err != nil {
		code := slipway.ErrorCode(err)
		e.Status, e.Problem, detail["error"] = slipway.ProblemStatus(code), code, slipway.ErrorMessage(err)
	}
	s.record(ctx, e, detail)
}

// record appends e, with detail as its JSON detail, to the audit log (when there is one); a failure is logged:
// the work it records is already done.
func (s *Service) record(ctx context.Context, e *slipway.AuditEntry, detail any) {
	if s.cfg.Audit == nil {
		return
	}
	if detail != nil {
		b, err := json.Marshal(detail)
		if err != nil {
			s.log.Error("audit: encode detail", "action", e.Action, "error", err)
		}
		e.Detail = b
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := s.cfg.Audit(ctx, e); err != nil {
		s.log.Error("audit: a run's action was not recorded", "action", e.Action, "target", e.Target, "error", err)
	}
}

func str(with map[string]any, key string) string {
	return formatValue(with[key])
}

// builtinRegister registers a model version from a previous step's output folder: with.from (the step),
// with.path (a sub-folder), with.model, with.metadata_file (default metadata.json, when present),
// with.metadata (fields set over the file's) and with.baseline (a sample of the training data in the folder,
// .csv or .parquet, stored as the version's drift baseline). The version's provenance names the job run that
// produced it.
func (s *Service) builtinRegister(ctx context.Context, run *slipway.PipelineRun, with map[string]any, outputDirs map[string]string) (map[string]any, error) {
	if s.cfg.Register == nil {
		return nil, slipway.Errorf(slipway.EUNAVAILABLE, "this server cannot register models from pipelines")
	}
	from, model := str(with, "from"), str(with, "model")
	dir := outputDirs[from]
	if dir == "" {
		return nil, slipway.Errorf(slipway.EINVALID, "step %s left no output folder to register", from)
	}
	if p := str(with, "path"); p != "" {
		if !filepath.IsLocal(p) {
			return nil, slipway.Errorf(slipway.EINVALID, "with.path %q must be a relative path inside the output folder", p)
		}
		dir = filepath.Join(dir, p)
	}
	var meta slipway.VersionMetadata
	metaFile := str(with, "metadata_file")
	if metaFile == "" {
		metaFile = "metadata.json"
	}
	if !filepath.IsLocal(metaFile) {
		return nil, slipway.Errorf(slipway.EINVALID, "with.metadata_file %q must be a relative path inside the output folder", metaFile)
	}
	b, err := os.ReadFile(filepath.Join(dir, metaFile))
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &meta); err != nil {
			return nil, slipway.Errorf(slipway.EINVALID, "%s written by step %s is not valid metadata: %v", metaFile, from, err)
		}
	case errors.Is(err, fs.ErrNotExist) && str(with, "metadata_file") == "":
	default:
		return nil, slipway.Errorf(slipway.EINVALID, "read %s of step %s: %v", metaFile, from, err)
	}
	if extra, ok := with["metadata"].(map[string]any); ok {
		b, _ := json.Marshal(extra)
		if err := json.Unmarshal(b, &meta); err != nil {
			return nil, slipway.Errorf(slipway.EINVALID, "with.metadata is not valid metadata: %v", err)
		}
	}
	if meta.Provenance == nil {
		meta.Provenance = &slipway.Provenance{}
	}
	if meta.Provenance.TrainingRun == "" {
		meta.Provenance.TrainingRun = filepath.Base(filepath.Dir(outputDirs[from])) // runs/<job run id>/outputs
	}
	baseline, format, err := s.baselineInput(with, dir, from)
	if err != nil {
		return nil, err
	}
	tarPath, err := s.tarDir(dir)
	if err != nil {
		return nil, err
	}
	defer s.removeScratch(tarPath)
	v, err := s.cfg.Register(ctx, model, tarPath, "model.tar", meta, run.CreatedBy)
	if err != nil {
		return nil, err
	}
	out := map[string]any{"model": v.Model, "version": v.Version, "state": string(v.State), "digest": v.Digest}
	if v.State != slipway.VersionReady {
		var failing []string
		for _, c := range v.Checks {
			if !c.Passed {
				failing = append(failing, c.ID+": "+c.Message)
			}
		}
		return out, slipway.Errorf(slipway.EINVALID, "version %d of %s registered %s: %s", v.Version, v.Model, v.State, strings.Join(failing, "; "))
	}
	if baseline != "" {
		if err := s.cfg.Baseline(ctx, v.Model, v.Version, format, baseline, run.CreatedBy); err != nil {
			return out, fmt.Errorf("version %d of %s is registered (READY), but its baseline %s was refused: %w", v.Version, v.Model, str(with, "baseline"), err)
		}
		out["baseline"] = str(with, "baseline")
	}
	return out, nil
}

// baselineInput resolves with.baseline: a .csv or .parquet file inside the step's output folder ("": none).
func (s *Service) baselineInput(with map[string]any, dir, from string) (path, format string, err error) {
	rel := str(with, "baseline")
	if rel == "" {
		return "", "", nil
	}
	if s.cfg.Baseline == nil {
		return "", "", slipway.Errorf(slipway.EUNAVAILABLE, "this server keeps no baselines (monitoring is off): remove with.baseline")
	}
	if !filepath.IsLocal(rel) {
		return "", "", slipway.Errorf(slipway.EINVALID, "with.baseline %q must be a relative path inside the output folder of step %s", rel, from)
	}
	switch strings.ToLower(filepath.Ext(rel)) {
	case ".csv":
		format = "csv"
	case ".parquet":
		format = "parquet"
	default:
		return "", "", slipway.Errorf(slipway.EINVALID, "with.baseline %q must be a .csv (with a header row) or .parquet file", rel)
	}
	path = filepath.Join(dir, rel)
	if st, err := os.Stat(path); err != nil || !st.Mode().IsRegular() {
		return "", "", slipway.Errorf(slipway.EINVALID, "with.baseline %q: step %s wrote no such file", rel, from)
	}
	return path, format, nil
}

// tarDir writes the regular files of dir into a tar file (the catalog takes archives).
func (s *Service) tarDir(dir string) (string, error) {
	f, err := os.CreateTemp(s.tmpDir(), "register-*.tar")
	if err != nil {
		return "", fmt.Errorf("jobs: %w", err)
	}
	tw := tar.NewWriter(f)
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		hdr := &tar.Header{Name: filepath.ToSlash(rel), Mode: int64(info.Mode().Perm()), Size: info.Size(), ModTime: info.ModTime(), Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		_, err = io.Copy(tw, in)
		_ = in.Close() // read only: its close loses nothing
		return err
	})
	if err == nil {
		err = tw.Close()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		s.removeScratch(f.Name())
		return "", fmt.Errorf("jobs: pack %s for registration: %w", dir, err)
	}
	return f.Name(), nil
}

// threshold is an MLflow MetricThreshold: the candidate must reach MinValue, and beat the baseline by at least
// MinAbsoluteChange and MinRelativeChange (relative to |baseline|). GreaterIsBetter says which way is better:
// by default true, but for the error metrics the evaluate step measures (lowerIsBetter).
type threshold struct {
	MinValue          *float64 `json:"min_value,omitempty"`
	MinAbsoluteChange *float64 `json:"min_absolute_change,omitempty"`
	MinRelativeChange *float64 `json:"min_relative_change,omitempty"`
	// MaxAbsoluteDrop is a tolerance instead of a required gain: the candidate may be worse than the baseline
	// by at most this much (two models trained on the same kind of data differ by noise either way).
	MaxAbsoluteDrop *float64 `json:"max_absolute_drop,omitempty"`
	GreaterIsBetter *bool    `json:"greater_is_better,omitempty"`
}

// lowerIsBetter are the metrics whose default greater_is_better is false: errors and losses.
var lowerIsBetter = map[string]bool{"rmse": true, "mae": true, "log_loss": true}

func parseThresholds(raw map[string]any) (map[string]threshold, error) {
	if len(raw) == 0 {
		return nil, slipway.Errorf(slipway.EINVALID, "with.thresholds is empty: give at least one metric, e.g. {roc_auc: {min_absolute_change: 0}}")
	}
	out := map[string]threshold{}
	for _, metric := range slices.Sorted(maps.Keys(raw)) {
		b, _ := json.Marshal(raw[metric])
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.DisallowUnknownFields()
		var th threshold
		if err := dec.Decode(&th); err != nil {
			return nil, slipway.Errorf(slipway.EINVALID, "with.thresholds.%s: %v (fields: min_value, min_absolute_change, min_relative_change, max_absolute_drop, greater_is_better)", metric, err)
		}
		if th.MinValue == nil && th.MinAbsoluteChange == nil && th.MinRelativeChange == nil && th.MaxAbsoluteDrop == nil {
			return nil, slipway.Errorf(slipway.EINVALID, "with.thresholds.%s sets no criterion: give min_value, min_absolute_change, min_relative_change or max_absolute_drop", metric)
		}
		if (th.MinAbsoluteChange != nil && *th.MinAbsoluteChange < 0) || (th.MinRelativeChange != nil && *th.MinRelativeChange < 0) ||
			(th.MaxAbsoluteDrop != nil && *th.MaxAbsoluteDrop < 0) {
			return nil, slipway.Errorf(slipway.EINVALID, "with.thresholds.%s: min_absolute_change, min_relative_change and max_absolute_drop must be ≥ 0", metric)
		}
		out[metric] = th
	}
	return out, nil
}

// Evaluate compares candidate metrics with baseline metrics (nil: no baseline, only min_value applies). It
// returns the failed criteria, one sentence each.
func Evaluate(thresholds map[string]threshold, candidate, baseline map[string]float64, baselineName string) []string {
	var failed []string
	for _, metric := range slices.Sorted(maps.Keys(thresholds)) {
		th := thresholds[metric]
		greater := !lowerIsBetter[metric]
		if th.GreaterIsBetter != nil {
			greater = *th.GreaterIsBetter
		}
		cv, ok := candidate[metric]
		if !ok {
			failed = append(failed, fmt.Sprintf("the candidate has no metric %s", metric))
			continue
		}
		if th.MinValue != nil {
			if greater && cv < *th.MinValue {
				failed = append(failed, fmt.Sprintf("%s %.4g is below the minimum %g", metric, cv, *th.MinValue))
			} else if !greater && cv > *th.MinValue {
				failed = append(failed, fmt.Sprintf("%s %.4g is above the maximum %g (lower is better)", metric, cv, *th.MinValue))
			}
		}
		if baseline == nil || (th.MinAbsoluteChange == nil && th.MinRelativeChange == nil && th.MaxAbsoluteDrop == nil) {
			continue
		}
		bv, ok := baseline[metric]
		if !ok {
			failed = append(failed, fmt.Sprintf("%s has no metric %s to compare with", baselineName, metric))
			continue
		}
		change := cv - bv
		if !greater {
			change = bv - cv
		}
		if th.MinAbsoluteChange != nil && change < *th.MinAbsoluteChange {
			failed = append(failed, fmt.Sprintf("%s %.4g vs %.4g for %s: improvement %.4g is less than min_absolute_change %g", metric, cv, bv, baselineName, change, *th.MinAbsoluteChange))
		}
		if th.MaxAbsoluteDrop != nil && -change > *th.MaxAbsoluteDrop {
			failed = append(failed, fmt.Sprintf("%s %.4g vs %.4g for %s: it is %.4g worse, more than max_absolute_drop %g", metric, cv, bv, baselineName, -change, *th.MaxAbsoluteDrop))
		}
		if th.MinRelativeChange != nil {
			rel := math.Inf(1)
			if bv != 0 {
				rel = change / math.Abs(bv)
			} else if change <= 0 {
				rel = 0
			}
			if rel < *th.MinRelativeChange {
				failed = append(failed, fmt.Sprintf("%s %.4g vs %.4g for %s: relative improvement %.4g is less than min_relative_change %g", metric, cv, bv, baselineName, rel, *th.MinRelativeChange))
			}
		}
	}
	return failed
}

func versionRef(v any, what string) (slipway.VersionRef, error) {
	s := formatValue(v)
	ref, err := slipway.ParseVersionRef(s)
	if err != nil {
		return ref, slipway.Errorf(slipway.EINVALID, "with.%s %q: give a version number or @alias", what, s)
	}
	return ref, nil
}

// builtinEvaluate is the quality gate: with.model, with.candidate (a version or @alias), with.baseline
// (default @champion; when the model has no such alias the candidate only has to reach min_value) and
// with.thresholds. Without with.data it compares the metrics the versions reported at registration; with it,
// it scores both versions on that held-out data set in their real runtimes and compares what it measured
// (evaluatedata.go).
func (s *Service) builtinEvaluate(ctx context.Context, run *slipway.PipelineRun, with map[string]any, outputDirs map[string]string) (map[string]any, error) {
	model := str(with, "model")
	cref, err := versionRef(with["candidate"], "candidate")
	if err != nil {
		return nil, err
	}
	bname := "@champion"
	if b := str(with, "baseline"); b != "" {
		bname = b
		if _, err := strconv.Atoi(b); err != nil && !strings.HasPrefix(b, "@") {
			bname = "@" + b
		}
	}
	bref, err := versionRef(bname, "baseline")
	if err != nil {
		return nil, err
	}
	rawTh, _ := with["thresholds"].(map[string]any)
	th, err := parseThresholds(rawTh)
	if err != nil {
		return nil, err
	}
	var held *heldOut
	if with["data"] != nil {
		if held, err = heldOutOf(with); err != nil {
			return nil, err
		}
	}
	cand, err := s.cfg.Models.FindVersion(ctx, model, cref)
	if err != nil {
		return nil, err
	}
	if cand.State != slipway.VersionReady {
		return nil, slipway.Errorf(slipway.EINVALID, "candidate version %d of %s is %s, not READY", cand.Version, model, cand.State)
	}
	out := map[string]any{"model": model, "candidate_version": cand.Version}
	candMetrics := cand.Metrics
	var baseMetrics map[string]float64
	baseName := "no baseline"
	base, err := s.cfg.Models.FindVersion(ctx, model, bref)
	switch {
	case err == nil:
		baseMetrics = base.Metrics
		if baseMetrics == nil {
			baseMetrics = map[string]float64{}
		}
		baseName = fmt.Sprintf("%s %s (version %d)", model, bname, base.Version)
		out["baseline_version"] = base.Version
	case slipway.ErrorCode(err) == slipway.ENOTFOUND:
		base = nil
		out["baseline_version"] = 0
	default:
		return nil, err
	}
	if held != nil {
		versions := []*slipway.ModelVersion{cand}
		if base != nil {
			versions = append(versions, base)
		}
		m, err := s.measure(ctx, run, held, versions, outputDirs)
		if err != nil {
			return out, err
		}
		out["measured"] = m.outputs(cand, base)
		out["reported"] = map[string]any{"candidate": cand.Metrics}
		candMetrics = m.metrics[cand.Version]
		if base != nil {
			out["reported"].(map[string]any)["baseline"] = base.Metrics
			baseMetrics = m.metrics[base.Version]
			baseName += " on the same held-out data"
		}
	}
	for k, v := range candMetrics {
		out["candidate_"+k] = v
	}
	for k, v := range baseMetrics {
		out["baseline_"+k] = v
	}
	failed := Evaluate(th, candMetrics, baseMetrics, baseName)
	out["passed"] = len(failed) == 0
	if len(failed) > 0 {
		what := "gate failed"
		if held != nil {
			what = "gate failed on held-out data"
		}
		return out, slipway.Errorf(slipway.EINVALID, "%s for version %d of %s: %s", what, cand.Version, model, strings.Join(failed, "; "))
	}
	return out, nil
}

// builtinDeploy moves with.alias of with.model to with.version and/or rolls with.deployment out to it
// (waiting until it serves the version unless with.wait is false).
func (s *Service) builtinDeploy(ctx context.Context, run *slipway.PipelineRun, with map[string]any) (map[string]any, error) {
	model := str(with, "model")
	ref, err := versionRef(with["version"], "version")
	if err != nil {
		return nil, err
	}
	v, err := s.cfg.Models.FindVersion(ctx, model, ref)
	if err != nil {
		return nil, err
	}
	if v.State != slipway.VersionReady {
		return nil, slipway.Errorf(slipway.EINVALID, "version %d of %s is %s: only READY versions are deployed", v.Version, model, v.State)
	}
	out := map[string]any{"model": model, "version": v.Version}
	if alias := strings.TrimPrefix(str(with, "alias"), "@"); alias != "" {
		move, err := s.cfg.Models.SetAlias(ctx, model, alias, v.Version, run.CreatedBy)
		if err != nil {
			return out, err
		}
		out["alias"] = alias
		if move.FromVersion != nil {
			out["previous_version"] = *move.FromVersion
		}
		if s.cfg.Deployer.AliasMoved != nil {
			s.cfg.Deployer.AliasMoved(ctx, model, alias, v.Version)
		}
	}
	if name := str(with, "deployment"); name != "" {
		if s.cfg.Deployer.Update == nil {
			return out, slipway.Errorf(slipway.EUNAVAILABLE, "this server cannot update deployments from pipelines")
		}
		if err := s.rollDeployment(ctx, name, model, str(out, "alias"), v.Version); err != nil {
			return out, err
		}
		out["deployment"] = name
		if str(with, "wait") != "false" && s.cfg.Deployer.Get != nil {
			if err := s.waitDeployment(ctx, name, v.Version); err != nil {
				return out, err
			}
		}
	}
	return out, nil
}

// rollDeployment rolls the deployment name out to version. A deployment that follows the alias the step just
// moved is left to AliasMoved, which started its rollout: setting its version would pin it and stop it
// following the alias.
func (s *Service) rollDeployment(ctx context.Context, name, model, alias string, version int) error {
	if alias != "" && s.cfg.Deployer.Get != nil {
		d, err := s.cfg.Deployer.Get(ctx, name)
		if err != nil {
			return err
		}
		if d.FollowAlias && d.Model == model && d.Alias == alias {
			if d.Version == version || d.State == slipway.DeploymentUpdating {
				return nil
			}
			return slipway.Errorf(slipway.ECONFLICT, "deployment %s follows @%s but did not roll out to version %d: it is %s on version %d (reason %q)",
				name, alias, version, d.State, d.Version, d.Reason)
		}
	}
	_, err := s.cfg.Deployer.Update(ctx, name, version)
	return err
}

func (s *Service) waitDeployment(ctx context.Context, name string, version int) error {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		d, err := s.cfg.Deployer.Get(ctx, name)
		if err != nil {
			return err
		}
		switch {
		case d.State == slipway.DeploymentActive && d.Version == version:
			return nil
		case d.State == slipway.DeploymentActive && d.Reason != "":
			return slipway.Errorf(slipway.EINVALID, "deployment %s: %s", name, d.Reason)
		case d.State == slipway.DeploymentFailed || d.State == slipway.DeploymentNeedsAttention || d.State == slipway.DeploymentInactive:
			return slipway.Errorf(slipway.EINVALID, "deployment %s is %s: %s", name, d.State, d.Reason)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for deployment %s to serve version %d: %w", name, version, ctx.Err())
		case <-tick.C:
		}
	}
}
