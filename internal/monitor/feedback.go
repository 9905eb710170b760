package monitor

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/slipway-ml/slipway"
)

// MaxFeedbackItems is the most ground-truth items one request may carry.
const MaxFeedbackItems = 10_000

// target is what a deployment predicts: the task, the output holding the prediction (and its dtype), and the
// output holding the positive class's probability.
type target struct {
	task, prediction, score, dtype string
}

var (
	predictionNames = []string{"prediction", "predictions", "label", "labels", "class", "y", "output", "outputs"}
	scoreNames      = []string{"probability", "probabilities", "proba", "score", "scores"}
)

// target reads the deployment's task from its settings and the served version's output schema.
func (s *Service) target(ctx context.Context, d *slipway.Deployment, st slipway.MonitoringSettings) target {
	t := target{task: st.Task, prediction: st.PredictionOutput, score: st.ScoreOutput}
	var cols []slipway.ColumnSpec
	if v, err := s.modelVersion(d.Model, d.Version); err == nil && v.OutputSchema != nil {
		cols = v.OutputSchema.Columns
	}
	find := func(names []string) string {
		for _, n := range names {
			for _, c := range cols {
				if strings.EqualFold(c.Name, n) {
					return c.Name
				}
			}
		}
		return ""
	}
	if t.prediction == "" {
		t.prediction = find(predictionNames)
		if t.prediction == "" && len(cols) > 0 {
			t.prediction = cols[0].Name
		}
		if t.prediction == "" {
			t.prediction = "prediction"
		}
	}
	for _, c := range cols {
		if c.Name == t.prediction {
			t.dtype = c.Dtype
		}
	}
	if t.task == "" {
		switch {
		case strings.HasPrefix(t.dtype, "float"):
			t.task = "regression"
		case t.dtype != "":
			t.task = "classification"
		}
	}
	if t.score == "" && t.task != "regression" {
		t.score = find(scoreNames)
	}
	return t
}

// Feedback validates and stores ground truth for a deployment's predictions. The whole batch is refused when any
// item is invalid (nothing is stored); items for predictions that were not captured are stored and reported.
func (s *Service) Feedback(ctx context.Context, deployment string, items []slipway.FeedbackItem) (*slipway.FeedbackResponse, error) {
	d, err := s.cfg.Deployments.FindDeployment(ctx, deployment)
	if err != nil {
		return nil, err
	}
	if len(items) == 0 {
		return nil, invalidf("feedback is empty: send a JSON array of {\"request_id\", \"label\" | \"value\", \"timestamp\"}")
	}
	if len(items) > MaxFeedbackItems {
		return nil, slipway.Errorf(slipway.ETOOLARGE, "%d feedback items in one request: send at most %d per request", len(items), MaxFeedbackItems)
	}
	st, err := s.Settings(ctx, deployment)
	if err != nil {
		return nil, err
	}
	tg := s.target(ctx, d, st)
	now := s.now().UTC()
	fbs := make([]*slipway.Feedback, 0, len(items))
	var problems []string
	seen := map[string]int{}
	for i, it := range items {
		f, err := parseFeedback(it, tg, now)
		if err == nil {
			key := f.RequestID + "\x00" + strconv.Itoa(f.Row)
			if j, dup := seen[key]; dup {
				err = fmt.Errorf("request %q row %d already has ground truth in item %d of this batch", f.RequestID, f.Row, j)
			}
			seen[key] = i
		}
		if err != nil {
			if len(problems) < 20 {
				problems = append(problems, fmt.Sprintf("[%d]: %v", i, err))
			} else if len(problems) == 20 {
				problems = append(problems, "…")
			}
			continue
		}
		f.Deployment = deployment
		fbs = append(fbs, f)
	}
	if len(problems) > 0 {
		return nil, invalidf("feedback refused, nothing was stored: %s", strings.Join(problems, "; "))
	}
	ids := make([]string, 0, len(fbs))
	for _, f := range fbs {
		ids = append(ids, f.RequestID)
	}
	slices.Sort(ids)
	rows, err := s.data.CaptureRows(ctx, deployment, slices.Compact(ids))
	if err != nil {
		return nil, err
	}
	res, err := s.data.UpsertFeedback(ctx, fbs)
	if err != nil {
		return nil, err
	}
	out := &slipway.FeedbackResponse{Received: len(items), FeedbackResult: res, Unknown: []slipway.UnknownFeedback{}}
	for _, f := range fbs {
		n, ok := rows[f.RequestID]
		reason := ""
		switch {
		case !ok:
			reason = "no captured prediction has this request id (not sampled, not yet written, expired, or mistyped); stored, and joined if it appears"
		case f.Row >= n:
			reason = fmt.Sprintf("the captured request has %d rows (rows count from 0)", n)
		}
		if reason != "" {
			out.UnknownCount++
			if len(out.Unknown) < 1000 {
				out.Unknown = append(out.Unknown, slipway.UnknownFeedback{RequestID: f.RequestID, Row: f.Row, Reason: reason})
			}
		}
	}
	return out, nil
}

func parseFeedback(it slipway.FeedbackItem, tg target, now time.Time) (*slipway.Feedback, error) {
	if it.RequestID == "" || len(it.RequestID) > 128 {
		return nil, fmt.Errorf("request_id must be 1-128 characters (the X-Request-Id of the prediction)")
	}
	f := &slipway.Feedback{RequestID: it.RequestID, Time: now, ReceivedAt: now}
	if it.Row != nil {
		if *it.Row < 0 {
			return nil, fmt.Errorf("row must be >= 0, got %d", *it.Row)
		}
		f.Row = *it.Row
	}
	if it.Timestamp != nil {
		f.Time = it.Timestamp.UTC()
	}
	hasLabel, hasValue := len(it.Label) > 0 && string(it.Label) != "null", len(it.Value) > 0 && string(it.Value) != "null"
	switch {
	case hasLabel == hasValue:
		return nil, fmt.Errorf("give exactly one of label (classification) or value (regression)")
	case hasValue && tg.task == "classification":
		return nil, fmt.Errorf("this deployment is a classifier (prediction output %q is %s): send the true class as label, not value", tg.prediction, tg.dtype)
	case hasLabel && tg.task == "regression":
		return nil, fmt.Errorf("this deployment is a regressor (prediction output %q is %s): send the true number as value, not label", tg.prediction, tg.dtype)
	}
	if hasValue {
		var v float64
		if err := json.Unmarshal(it.Value, &v); err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("value must be a finite number, got %s", clip(it.Value))
		}
		f.Value = &v
		return f, nil
	}
	label, err := normaliseLabel(it.Label, tg.dtype)
	if err != nil {
		return nil, err
	}
	f.Label = &label
	return f, nil
}

// normaliseLabel turns a JSON label into the text predictions are compared with: integers in decimal, booleans as
// the prediction's type writes them. It refuses labels of the wrong type for the prediction's dtype.
func normaliseLabel(raw json.RawMessage, dtype string) (string, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return "", fmt.Errorf("label is not valid JSON")
	}
	intType := strings.HasPrefix(dtype, "int") || strings.HasPrefix(dtype, "uint")
	switch x := v.(type) {
	case json.Number:
		n, err := strconv.ParseInt(string(x), 10, 64)
		if err != nil {
			f, ferr := strconv.ParseFloat(string(x), 64)
			if ferr != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
				return "", fmt.Errorf("label must be a class (text, integer or boolean), got the number %s: for a regressor send value", x)
			}
			n = int64(f)
		}
		if dtype == "bool" {
			if n != 0 && n != 1 {
				return "", fmt.Errorf("label must be true/false (or 0/1) like the model's boolean prediction, got %d", n)
			}
			return strconv.FormatBool(n == 1), nil
		}
		return strconv.FormatInt(n, 10), nil
	case bool:
		switch {
		case intType:
			if x {
				return "1", nil
			}
			return "0", nil
		default:
			return strconv.FormatBool(x), nil
		}
	case string:
		if intType {
			if _, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64); err != nil {
				return "", fmt.Errorf("label must be an integer like the model's prediction (%s), got %q", dtype, x)
			}
			return strings.TrimSpace(x), nil
		}
		if dtype == "bool" {
			b, err := strconv.ParseBool(x)
			if err != nil {
				return "", fmt.Errorf("label must be true or false like the model's boolean prediction, got %q", x)
			}
			return strconv.FormatBool(b), nil
		}
		if x == "" || len(x) > 256 {
			return "", fmt.Errorf("label must be 1-256 characters")
		}
		return x, nil
	}
	return "", fmt.Errorf("label must be a class (text, integer or boolean), got %s", clip(raw))
}

func clip(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "…"
	}
	return string(b)
}
