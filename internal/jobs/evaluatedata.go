package jobs

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/stats"
)

// The evaluate step on held-out data: with.data names a data set (a file in a previous step's output folder,
// a file under the server's import folder, an uploaded file, or a query on a named connection) and with.label
// its column of true values. The step scores the candidate and the baseline version on it as two batch
// predictions, each in the version's own runtime (replicas started for the run, the same process a deployment
// starts), with the label carried through as a key column; it then measures both sets of predictions against
// the labels and applies the thresholds to the measured metrics. Metrics a training script reported about
// itself can be computed on any split, or be wrong; these are computed by the server, on the same rows, for
// both versions.

// HeldOutFiles is what the evaluate step needs of batch predictions besides BatchRunner: read a run's output
// file, and hand a step's output file to batch predictions as an uploaded file.
type HeldOutFiles interface {
	// OpenOutput opens a succeeded file-output run's output, wherever the installation keeps it.
	OpenOutput(ctx context.Context, id string) (io.ReadCloser, error)
	SaveFile(ctx context.Context, name string, r io.Reader, by string) (*slipway.UploadedFile, error)
	DeleteFile(ctx context.Context, id string) error
}

// Tasks the evaluate step measures.
const (
	taskClassification = "classification"
	taskRegression     = "regression"
)

// maxHeldOutRows bounds the rows an evaluation reads back into memory.
const maxHeldOutRows = 1_000_000

// heldOut is an evaluate step's with.data and how to read its labels and predictions.
type heldOut struct {
	input      slipway.BatchInput
	from, path string // a file in the output folder of step from
	label      string
	task       string // "" = inferred from the labels
	prediction string // output column with the predicted class or value ("" = prediction, label, ... or the only one)
	score      string // output column with the positive class's probability ("" = probability, ... when present)
	positive   string // the positive class (default "1")
}

var heldOutKeys = []string{"from", "path", "format", "file", "connection", "query"}

// heldOutOf reads an evaluate step's with.data, with.label and the optional with.task, with.prediction,
// with.score and with.positive.
func heldOutOf(with map[string]any) (*heldOut, error) {
	data, ok := with["data"].(map[string]any)
	if !ok {
		return nil, slipway.Errorf(slipway.EINVALID, "with.data must be a map: {from: STEP, path: FILE}, {path: FILE} (under the import folder), {file: ID} or {connection: NAME, query: SQL}")
	}
	for k := range data {
		if !slices.Contains(heldOutKeys, k) {
			return nil, slipway.Errorf(slipway.EINVALID, "unknown with.data.%s (known: %s)", k, strings.Join(heldOutKeys, ", "))
		}
	}
	h := &heldOut{label: str(with, "label"), task: str(with, "task"), prediction: str(with, "prediction"), score: str(with, "score"),
		positive: str(with, "positive")}
	if h.label == "" {
		return nil, slipway.Errorf(slipway.EINVALID, "with.label is required with with.data: name the column that holds the true values")
	}
	if h.task != "" && h.task != taskClassification && h.task != taskRegression {
		return nil, slipway.Errorf(slipway.EINVALID, "with.task %q: use classification or regression (or leave it out to infer it from the labels)", h.task)
	}
	if h.positive == "" {
		h.positive = "1"
	}
	h.positive = normLabel(h.positive)
	get := func(k string) string { return formatValue(data[k]) }
	sources := 0
	for _, set := range []bool{get("from") != "", get("path") != "" && get("from") == "", get("file") != "", get("connection") != "" || get("query") != ""} {
		if set {
			sources++
		}
	}
	if sources != 1 {
		return nil, slipway.Errorf(slipway.EINVALID, "with.data names %d data sets: give exactly one of {from, path}, {path}, {file} and {connection, query}", sources)
	}
	switch {
	case get("from") != "":
		h.from, h.path = get("from"), get("path")
		if h.path == "" || !filepath.IsLocal(h.path) {
			return nil, slipway.Errorf(slipway.EINVALID, "with.data.path %q must be a relative path inside the output folder of step %s", h.path, h.from)
		}
		if h.input.Format = fileFormat(h.path); h.input.Format == "" {
			return nil, slipway.Errorf(slipway.EINVALID, "with.data.path %q must be a .csv, .jsonl or .parquet file", h.path)
		}
	case get("connection") != "" || get("query") != "":
		h.input = slipway.BatchInput{Connection: get("connection"), Query: get("query")}
	default:
		h.input = slipway.BatchInput{Path: get("path"), Format: get("format"), File: get("file")}
	}
	return h, nil
}

func fileFormat(name string) string {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".csv":
		return "csv"
	case ".jsonl":
		return "jsonl"
	case ".parquet":
		return "parquet"
	}
	return ""
}

// validateEvaluateData checks with.data when the pipeline is created, as far as it is written out.
func validateEvaluateData(p *problems, st *slipway.StepSpec) {
	if st.With["data"] == nil {
		for _, k := range []string{"label", "task", "prediction", "score", "positive"} {
			if st.With[k] != nil {
				p.add("step %s: with.%s applies to held-out data: give with.data too", st.Name, k)
			}
		}
		return
	}
	if st.With["label"] == nil {
		p.add("step %s: with.label is required with with.data: name the column that holds the true values", st.Name)
		return
	}
	if strings.Contains(fmt.Sprint(st.With["data"], st.With["label"], st.With["task"]), "${") {
		return // checked when the step runs, once its references are resolved
	}
	if _, err := heldOutOf(st.With); err != nil {
		p.add("step %s: %s", st.Name, slipway.ErrorMessage(err))
	}
}

// measurement is what the evaluate step measured on held-out data.
type measurement struct {
	task    string
	rows    int
	batches map[int]string // version → batch prediction id
	metrics map[int]map[string]float64
}

func (m *measurement) outputs(cand, base *slipway.ModelVersion) map[string]any {
	out := map[string]any{"task": m.task, "rows": m.rows, "candidate": m.metrics[cand.Version],
		"candidate_batch": m.batches[cand.Version]}
	if base != nil {
		out["baseline"], out["baseline_batch"] = m.metrics[base.Version], m.batches[base.Version]
	}
	return out
}

// measure scores each version on the held-out data and measures its predictions against the labels.
func (s *Service) measure(ctx context.Context, run *slipway.PipelineRun, h *heldOut, versions []*slipway.ModelVersion, outputDirs map[string]string) (*measurement, error) {
	if s.cfg.Batch == nil || s.cfg.HeldOut == nil {
		return nil, slipway.Errorf(slipway.EUNAVAILABLE, "this server cannot score held-out data from pipelines (batch predictions are off): remove with.data")
	}
	input := h.input
	if h.from != "" {
		id, err := s.uploadStepFile(ctx, run, h, outputDirs)
		if err != nil {
			return nil, err
		}
		defer func() {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			if err := s.cfg.HeldOut.DeleteFile(dctx, id); err != nil {
				s.log.Warn("evaluate: remove the held-out data's copy", "file_id", id, "error", err)
			}
		}()
		input = slipway.BatchInput{File: id, Format: h.input.Format}
	}
	m := &measurement{batches: map[int]string{}, metrics: map[int]map[string]float64{}}
	var started []*slipway.BatchRun
	for _, v := range versions {
		if _, done := m.batches[v.Version]; done {
			continue // candidate and baseline are one version
		}
		spec := slipway.BatchSpec{Model: v.Model, Version: v.Version, Input: input, Output: slipway.BatchOutput{Format: "csv"},
			KeyColumns: []string{h.label}}
		b, err := s.cfg.Batch.Create(context.WithoutCancel(ctx), spec, fmt.Sprintf("pipeline:%s/evaluate#v%d", run.ID, v.Version))
		if err != nil {
			s.cancelBatches(ctx, started)
			if slipway.ErrorCode(err) == slipway.EINTERNAL {
				return nil, fmt.Errorf("score version %d on the held-out data: %w", v.Version, err)
			}
			return nil, slipway.Wrap(slipway.ErrorCode(err), err, "the held-out data cannot be scored by version %d (label column %q): %s", v.Version, h.label, slipway.ErrorMessage(err))
		}
		started = append(started, b)
		m.batches[v.Version] = b.ID
	}
	ended, err := s.waitBatches(ctx, started)
	if err != nil {
		return nil, err
	}
	preds := map[int]*scoredSet{}
	for _, b := range ended {
		set, err := s.readScored(ctx, b, h)
		if err != nil {
			return nil, err
		}
		preds[b.Version] = set
	}
	first := preds[ended[0].Version]
	m.rows = len(first.labels)
	if m.rows == 0 {
		return nil, slipway.Errorf(slipway.EINVALID, "the held-out data has no labelled rows (column %q is empty or the data set has no rows): nothing to measure", h.label)
	}
	m.task = h.task
	if m.task == "" {
		m.task = inferTask(first.labels)
	}
	for v, set := range preds {
		metrics, err := set.metrics(m.task, h)
		if err != nil {
			return nil, fmt.Errorf("version %d: %w", v, err)
		}
		m.metrics[v] = metrics
	}
	return m, nil
}

// uploadStepFile hands with.data.path of step with.data.from to batch predictions as an uploaded file.
func (s *Service) uploadStepFile(ctx context.Context, run *slipway.PipelineRun, h *heldOut, outputDirs map[string]string) (string, error) {
	dir := outputDirs[h.from]
	if dir == "" {
		return "", slipway.Errorf(slipway.EINVALID, "with.data.from: step %s left no output folder (name a step this one depends on, which succeeded)", h.from)
	}
	f, err := os.Open(filepath.Join(dir, h.path))
	if err != nil {
		return "", slipway.Errorf(slipway.EINVALID, "with.data: step %s wrote no file %s", h.from, h.path)
	}
	defer func() { _ = f.Close() }() // read only: its close loses nothing
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return "", slipway.Errorf(slipway.EINVALID, "with.data: %s of step %s is not a regular file", h.path, h.from)
	}
	up, err := s.cfg.HeldOut.SaveFile(ctx, filepath.Base(h.path), f, run.CreatedBy)
	if err != nil {
		return "", fmt.Errorf("copy %s of step %s for scoring: %w", h.path, h.from, err)
	}
	return up.ID, nil
}

// waitBatches waits until every run ended; the first that did not succeed fails the step (and cancels the
// others). The step's end (cancel, timeout) cancels them.
func (s *Service) waitBatches(ctx context.Context, runs []*slipway.BatchRun) ([]*slipway.BatchRun, error) {
	poll := s.cfg.BatchPoll
	if poll <= 0 {
		poll = 500 * time.Millisecond
	}
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		allDone := true
		for i, b := range runs {
			if !b.State.Terminal() {
				cur, err := s.cfg.Batch.Get(ctx, b.ID)
				if err != nil {
					if ctx.Err() != nil {
						break
					}
					return nil, fmt.Errorf("follow the held-out scoring of version %d: %w", b.Version, err)
				}
				runs[i], b = cur, cur
			}
			switch {
			case !b.State.Terminal():
				allDone = false
			case b.State != slipway.BatchSucceeded:
				s.cancelBatches(ctx, runs)
				return nil, slipway.Errorf(slipway.EINVALID, "scoring the held-out data with version %d (batch prediction %s) %s: %s", b.Version, b.ID, b.State, reasonOr(b.Reason, "no reason given"))
			}
		}
		if allDone {
			return runs, nil
		}
		select {
		case <-ctx.Done():
			s.cancelBatches(ctx, runs)
			return nil, fmt.Errorf("score the held-out data: %w", ctx.Err())
		case <-t.C:
		}
	}
}

func (s *Service) cancelBatches(ctx context.Context, runs []*slipway.BatchRun) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	for _, b := range runs {
		if b.State.Terminal() {
			continue
		}
		if _, err := s.cfg.Batch.Cancel(cctx, b.ID, "the evaluate step ended"); err != nil && slipway.ErrorCode(err) != slipway.ECONFLICT {
			s.log.Warn("evaluate: cancel a held-out scoring", "batch_id", b.ID, "error", err)
		}
	}
}

// scoredSet is one version's predictions on the held-out rows, in input order.
type scoredSet struct {
	version int
	labels  []string
	preds   []string
	scores  []float64 // nil: no score column
	column  string    // the prediction column read
}

// readScored reads a succeeded run's output file: the label (a key column), the prediction and the score.
func (s *Service) readScored(ctx context.Context, b *slipway.BatchRun, h *heldOut) (*scoredSet, error) {
	f, err := s.cfg.HeldOut.OpenOutput(ctx, b.ID)
	if err != nil {
		return nil, fmt.Errorf("read the held-out predictions of version %d: %w", b.Version, err)
	}
	defer func() { _ = f.Close() }() // read only: its close loses nothing
	r := csv.NewReader(f)
	r.ReuseRecord = true
	header, err := r.Read()
	if errors.Is(err, io.EOF) {
		return &scoredSet{version: b.Version}, nil // no rows
	} else if err != nil {
		return nil, fmt.Errorf("read the held-out predictions of version %d (batch prediction %s): %w", b.Version, b.ID, err)
	}
	header = slices.Clone(header)
	first, err := r.Read()
	if errors.Is(err, io.EOF) {
		return &scoredSet{version: b.Version}, nil // a header and no rows
	} else if err != nil {
		return nil, fmt.Errorf("read the held-out predictions of version %d (batch prediction %s): %w", b.Version, b.ID, err)
	}
	li := slices.Index(header, h.label)
	pi, si, err := predictionColumns(header, h, b.Version)
	if li < 0 || err != nil {
		if err == nil {
			err = fmt.Errorf("the output of batch prediction %s has no column %q", b.ID, h.label)
		}
		return nil, err
	}
	set := &scoredSet{version: b.Version, column: header[pi]}
	if si >= 0 {
		set.scores = []float64{}
	}
	for row, rec := 0, first; ; row++ {
		if row > 0 {
			rec, err = r.Read()
			if errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				return nil, fmt.Errorf("read the held-out predictions of version %d (batch prediction %s): %w", b.Version, b.ID, err)
			}
		}
		if len(set.labels) == maxHeldOutRows {
			return nil, slipway.Errorf(slipway.EINVALID, "the held-out data has more than %d rows: evaluate on a sample", maxHeldOutRows)
		}
		if strings.TrimSpace(rec[li]) == "" {
			continue // unlabelled: measured rows are those with a truth
		}
		set.labels = append(set.labels, rec[li])
		set.preds = append(set.preds, rec[pi])
		if si >= 0 {
			v, err := strconv.ParseFloat(rec[si], 64)
			if err != nil {
				return nil, slipway.Errorf(slipway.EINVALID, "version %d's score column %q holds %q on row %d: not a number", b.Version, header[si], rec[si], row)
			}
			set.scores = append(set.scores, v)
		}
	}
	return set, nil
}

// predictionColumns finds the prediction and score columns among a run's output columns.
func predictionColumns(header []string, h *heldOut, version int) (pred, score int, err error) {
	meta := map[string]bool{"model": true, "model_version": true, "batch_id": true, "scored_at": true, h.label: true}
	var outs []string
	for _, c := range header {
		if !meta[c] {
			outs = append(outs, c)
		}
	}
	find := func(explicit, what string, defaults ...string) (int, error) {
		if explicit != "" {
			if i := slices.Index(header, explicit); i >= 0 && !meta[explicit] {
				return i, nil
			}
			return -1, slipway.Errorf(slipway.EINVALID, "with.%s %q is not an output of version %d (its outputs: %s)", what, explicit, version, strings.Join(outs, ", "))
		}
		for _, d := range defaults {
			if i := slices.Index(header, d); i >= 0 {
				return i, nil
			}
		}
		return -1, nil
	}
	if pred, err = find(h.prediction, "prediction", "prediction", "predictions", "label", "labels", "predicted_label", "output", "predict"); err != nil {
		return -1, -1, err
	}
	if pred < 0 {
		if len(outs) != 1 {
			return -1, -1, slipway.Errorf(slipway.EINVALID, "version %d has outputs %s: name the one holding the predicted class or value with with.prediction", version, strings.Join(outs, ", "))
		}
		pred = slices.Index(header, outs[0])
	}
	if score, err = find(h.score, "score", "probability", "probability_1", "probabilities_1", "proba", "predict_proba_1", "score"); err != nil {
		return -1, -1, err
	}
	if score == pred {
		score = -1
	}
	return pred, score, nil
}

// normLabel spells a class the same way whether it came as 1, 1.0 or true.
func normLabel(v string) string {
	v = strings.TrimSpace(v)
	switch strings.ToLower(v) {
	case "true":
		return "1"
	case "false":
		return "0"
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		return strconv.FormatFloat(f, 'g', -1, 64)
	}
	return v
}

// inferTask: labels that are all numbers with more than 20 distinct values, or any fractional one, are a
// regression's; anything else (classes, strings, booleans) a classification's.
func inferTask(labels []string) string {
	distinct := map[string]bool{}
	for _, l := range labels {
		f, err := strconv.ParseFloat(strings.TrimSpace(l), 64)
		if err != nil {
			return taskClassification
		}
		if f != math.Trunc(f) {
			return taskRegression
		}
		if distinct[l] = true; len(distinct) > 20 {
			return taskRegression
		}
	}
	return taskClassification
}

// metrics measures the predictions against the labels: accuracy, precision, recall, F1 (and ROC AUC and log
// loss with a score column, for two classes) for a classification; RMSE, MAE and R² for a regression.
func (set *scoredSet) metrics(task string, h *heldOut) (map[string]float64, error) {
	out := map[string]float64{}
	if task == taskRegression {
		truth, pred := make([]float64, len(set.labels)), make([]float64, len(set.preds))
		for i := range set.labels {
			var err error
			if truth[i], err = strconv.ParseFloat(strings.TrimSpace(set.labels[i]), 64); err != nil {
				return nil, slipway.Errorf(slipway.EINVALID, "label %q (column %q) is not a number: a regression needs numeric labels (or set with.task: classification)", set.labels[i], h.label)
			}
			if pred[i], err = strconv.ParseFloat(strings.TrimSpace(set.preds[i]), 64); err != nil {
				return nil, slipway.Errorf(slipway.EINVALID, "prediction %q (column %q) is not a number: a regression needs numeric predictions", set.preds[i], set.column)
			}
		}
		r := stats.RegressionMetrics(truth, pred)
		out["rmse"], out["mae"], out["r2"] = round4(r.RMSE), round4(r.MAE), round4(r.R2)
		return finite(out), nil
	}
	truth, pred := make([]string, len(set.labels)), make([]string, len(set.preds))
	for i := range set.labels {
		truth[i], pred[i] = normLabel(set.labels[i]), normLabel(set.preds[i])
	}
	c := stats.ClassificationMetrics(truth, pred, set.scores, h.positive)
	out["accuracy"], out["precision"], out["recall"], out["f1"] = round4(c.Accuracy), round4(c.Precision), round4(c.Recall), round4(c.F1)
	if c.ROCAUC != nil {
		out["roc_auc"] = round4(*c.ROCAUC)
	}
	if c.LogLoss != nil {
		out["log_loss"] = round4(*c.LogLoss)
	}
	return finite(out), nil
}

// finite drops undefined metrics: JSON has no NaN, and a gate on an absent metric says so.
func finite(m map[string]float64) map[string]float64 {
	for k, v := range m {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			delete(m, k)
		}
	}
	return m
}

// round4 keeps four decimals: the figures a person reads in the step's outputs and reasons.
func round4(v float64) float64 { return math.Round(v*1e4) / 1e4 }
