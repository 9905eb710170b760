package monitor

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/slipway-ml/slipway"
)

// AlertMetrics are the figures a rule can watch.
var AlertMetrics = []string{"drift_share", "requests", "error_rate", "latency_p99_ms",
	"accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "mae", "rmse", "r2",
	"estimated_accuracy", "estimated_precision", "estimated_recall", "estimated_f1", "estimated_roc_auc"}

// LogAlert is the log kind of alert transitions in a deployment's log.
const LogAlert = "alert"

func newID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// CreateAlertRule validates and stores a rule (state ok until it is evaluated).
func (s *Service) CreateAlertRule(ctx context.Context, deployment string, r slipway.AlertRule) (*slipway.AlertRule, error) {
	if _, err := s.cfg.Deployments.FindDeployment(ctx, deployment); err != nil {
		return nil, err
	}
	r.Deployment = deployment
	var problems []string
	if err := slipway.ValidateName("alert rule", r.Name); err != nil {
		problems = append(problems, slipway.ErrorMessage(err))
	}
	if !slices.Contains(AlertMetrics, r.Metric) {
		problems = append(problems, fmt.Sprintf("metric %q is not one of %s", r.Metric, strings.Join(AlertMetrics, ", ")))
	}
	if r.Op != "above" && r.Op != "below" {
		problems = append(problems, fmt.Sprintf("op must be above or below, got %q", r.Op))
	}
	if math.IsNaN(r.Threshold) || math.IsInf(r.Threshold, 0) {
		problems = append(problems, "threshold must be a finite number")
	}
	if r.Window == 0 {
		r.Window = slipway.Duration(15 * time.Minute)
	}
	if w := r.Window.D(); w < time.Minute || w > 31*24*time.Hour {
		problems = append(problems, fmt.Sprintf("window must be from 1m to 744h, got %s", w))
	}
	if r.Webhook != nil {
		u, err := url.Parse(r.Webhook.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			problems = append(problems, fmt.Sprintf("webhook.url %q must be an http or https URL", r.Webhook.URL))
		}
		if len(r.Webhook.Secret) > 0 && len(r.Webhook.Secret) < 16 {
			problems = append(problems, "webhook.secret must be at least 16 characters (it signs the deliveries)")
		}
	}
	if r.Action != nil {
		s.actionsMu.RLock()
		a, ok := s.actions[r.Action.Kind]
		s.actionsMu.RUnlock()
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("action kind %q is not available on this server (%s)", r.Action.Kind, s.actionKinds()))
		case a.check != nil:
			if err := a.check(ctx, r.Action.Target); err != nil {
				problems = append(problems, fmt.Sprintf("action %s %q: %v", r.Action.Kind, r.Action.Target, err))
			}
		}
	}
	if len(problems) > 0 {
		return nil, invalidf("alert rule: %s", strings.Join(problems, "; "))
	}
	r.ID, r.State, r.CreatedAt = newID(), slipway.AlertOK, s.now().UTC()
	r.Value, r.Since, r.LastEvaluated = nil, nil, nil
	if err := s.store.CreateAlertRule(ctx, &r); err != nil {
		return nil, err
	}
	return redact(&r), nil
}

func (s *Service) actionKinds() string {
	s.actionsMu.RLock()
	defer s.actionsMu.RUnlock()
	if len(s.actions) == 0 {
		return "none registered"
	}
	var ks []string
	for k := range s.actions {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return "available: " + strings.Join(ks, ", ")
}

// redact hides a rule's webhook secret.
func redact(r *slipway.AlertRule) *slipway.AlertRule {
	if r.Webhook != nil {
		w := *r.Webhook
		w.HasSecret, w.Secret = w.Secret != "" || w.HasSecret, ""
		r.Webhook = &w
	}
	return r
}

// AlertRules lists a deployment's rules with their state (secrets hidden).
func (s *Service) AlertRules(ctx context.Context, deployment string) ([]*slipway.AlertRule, error) {
	if _, err := s.cfg.Deployments.FindDeployment(ctx, deployment); err != nil {
		return nil, err
	}
	rs, err := s.store.FindAlertRules(ctx, deployment)
	for _, r := range rs {
		redact(r)
	}
	if rs == nil {
		rs = []*slipway.AlertRule{}
	}
	return rs, err
}

// DeleteAlertRule deletes a rule and its history.
func (s *Service) DeleteAlertRule(ctx context.Context, deployment, id string) error {
	return s.store.DeleteAlertRule(ctx, deployment, id)
}

// AlertEvents returns a deployment's alert history, newest first.
func (s *Service) AlertEvents(ctx context.Context, deployment string, limit int) ([]*slipway.AlertEvent, error) {
	if _, err := s.cfg.Deployments.FindDeployment(ctx, deployment); err != nil {
		return nil, err
	}
	evs, err := s.store.FindAlertEvents(ctx, deployment, limit)
	if evs == nil {
		evs = []*slipway.AlertEvent{}
	}
	return evs, err
}

// EvaluateAlerts evaluates the rules of a deployment ("" = all) now, records transitions, and notifies.
func (s *Service) EvaluateAlerts(ctx context.Context, deployment string) ([]*slipway.AlertRule, error) {
	s.alertMu.Lock()
	defer s.alertMu.Unlock()
	if deployment != "" {
		if _, err := s.cfg.Deployments.FindDeployment(ctx, deployment); err != nil {
			return nil, err
		}
	}
	rules, err := s.store.FindAlertRules(ctx, deployment)
	if err != nil {
		return nil, err
	}
	now := s.now().UTC()
	for _, r := range rules {
		value, err := s.alertValue(ctx, r, now)
		if err != nil {
			s.log.Warn("alert rule not evaluated", "deployment", r.Deployment, "rule", r.Name, "error", err)
			continue
		}
		r.LastEvaluated = &now
		r.Value = value
		firing := value != nil && ((r.Op == "above" && *value > r.Threshold) || (r.Op == "below" && *value < r.Threshold))
		var ev *slipway.AlertEvent
		if state := map[bool]string{true: slipway.AlertFiring, false: slipway.AlertOK}[firing]; value != nil && state != r.State {
			r.State, r.Since = state, &now
			ev = &slipway.AlertEvent{RuleID: r.ID, Deployment: r.Deployment, Rule: r.Name, State: state, Value: value,
				Threshold: r.Threshold, Time: now, Message: alertMessage(r, *value)}
		}
		if err := s.store.RecordAlertEvaluation(ctx, r, ev); err != nil {
			return nil, err
		}
		if ev != nil {
			s.notify(r, ev)
		}
	}
	for _, r := range rules {
		redact(r)
	}
	if rules == nil {
		rules = []*slipway.AlertRule{}
	}
	return rules, nil
}

func alertMessage(r *slipway.AlertRule, v float64) string {
	verb := "is"
	if r.State == slipway.AlertOK {
		verb = "is back:"
	}
	return fmt.Sprintf("%s on %s: %s %s %s over the last %s (threshold: %s %s)", r.Name, r.Deployment, r.Metric, verb,
		strconv.FormatFloat(v, 'g', 6, 64), r.Window.D(), r.Op, strconv.FormatFloat(r.Threshold, 'g', 6, 64))
}

// alertValue computes the watched figure over the rule's window ending now; nil when there is nothing to measure
// (no labelled rows, no requests for a latency).
func (s *Service) alertValue(ctx context.Context, r *slipway.AlertRule, now time.Time) (*float64, error) {
	from := now.Add(-r.Window.D())
	switch r.Metric {
	case "drift_share":
		d, st, err := s.deploymentSettings(ctx, r.Deployment)
		if err != nil {
			return nil, err
		}
		rep, err := s.computeDrift(ctx, d, st, from, now)
		if err != nil {
			return nil, err
		}
		if rep.Rows == 0 {
			return nil, nil
		}
		return &rep.DriftShare, nil
	case "requests", "error_rate", "latency_p99_ms":
		pts, err := s.data.FindMetricPoints(ctx, r.Deployment, from.Truncate(time.Minute), now)
		if err != nil {
			return nil, err
		}
		if live := s.Live(r.Deployment); live != nil && !live.Minute.Before(from.Truncate(time.Minute)) &&
			(len(pts) == 0 || live.Minute.After(pts[len(pts)-1].Minute)) {
			pts = append(pts, live) // the minute in progress, unless already stored
		}
		var reqs, clientErrs, errs int64
		var p99 float64
		for _, p := range pts {
			reqs += p.Requests
			clientErrs += p.Status4xx
			errs += p.Status5xx
			p99 = math.Max(p99, p.LatencyP99MS)
		}
		switch r.Metric {
		case "requests":
			v := float64(reqs)
			return &v, nil
		case "error_rate": // 5xx out of the requests that were not the client's mistake (4xx), as canaries count
			if reqs-clientErrs <= 0 {
				return nil, nil
			}
			v := float64(errs) / float64(reqs-clientErrs)
			return &v, nil
		}
		if reqs == 0 {
			return nil, nil
		}
		return &p99, nil
	}
	perf, err := s.Performance(ctx, r.Deployment, from, now, now.Sub(from)+time.Nanosecond)
	if err != nil || len(perf) == 0 {
		return nil, err
	}
	var total int
	var sum float64
	for _, p := range perf {
		v, ok := perfValue(p, r.Metric)
		if !ok {
			continue
		}
		rows := p.Labelled
		if p.Estimated != nil && strings.HasPrefix(r.Metric, "estimated_") {
			rows = p.Estimated.Rows // an estimate covers every captured row, labelled or not
		}
		sum += v * float64(rows)
		total += rows
	}
	if total == 0 {
		return nil, nil
	}
	v := sum / float64(total)
	return &v, nil
}

func perfValue(p *slipway.Performance, metric string) (float64, bool) {
	if e := p.Estimated; e != nil {
		switch metric {
		case "estimated_accuracy":
			return e.Accuracy, true
		case "estimated_precision":
			return e.Precision, true
		case "estimated_recall":
			return e.Recall, true
		case "estimated_f1":
			return e.F1, true
		case "estimated_roc_auc":
			if e.ROCAUC != nil {
				return *e.ROCAUC, true
			}
		}
	}
	if c := p.Classification; c != nil {
		switch metric {
		case "accuracy":
			return c.Accuracy, true
		case "precision":
			return c.Precision, true
		case "recall":
			return c.Recall, true
		case "f1":
			return c.F1, true
		case "roc_auc":
			if c.ROCAUC != nil {
				return *c.ROCAUC, true
			}
		case "log_loss":
			if c.LogLoss != nil {
				return *c.LogLoss, true
			}
		}
	}
	if g := p.Regression; g != nil {
		switch metric {
		case "mae":
			return g.MAE, true
		case "rmse":
			return g.RMSE, true
		case "r2":
			return g.R2, true
		}
	}
	return 0, false
}

// notify logs a transition (server log and the deployment's log), queues the webhook and runs the action.
func (s *Service) notify(r *slipway.AlertRule, ev *slipway.AlertEvent) {
	if ev.State == slipway.AlertFiring {
		s.log.Warn("alert firing", "deployment", r.Deployment, "rule", r.Name, "value", *ev.Value, "threshold", r.Threshold)
	} else {
		s.log.Info("alert resolved", "deployment", r.Deployment, "rule", r.Name, "value", *ev.Value)
	}
	s.offerLog(&slipway.LogLine{Deployment: r.Deployment, Time: ev.Time, Kind: LogAlert, Line: ev.State + ": " + ev.Message})
	if r.Webhook != nil {
		select {
		case s.hooks <- webhookJob{rule: *r, ev: *ev}:
		default:
			s.log.Error("alert webhook dropped: too many deliveries pending", "deployment", r.Deployment, "rule", r.Name)
		}
	}
	if r.Action != nil && ev.State == slipway.AlertFiring {
		s.actionsMu.RLock()
		fn := s.actions[r.Action.Kind].run
		s.actionsMu.RUnlock()
		if fn == nil {
			s.log.Error("alert action not available", "deployment", r.Deployment, "rule", r.Name, "action", r.Action.Kind)
			return
		}
		s.wg.Add(1)
		go func() { // owned by the service: bounded by its context
			defer s.wg.Done()
			ctx, cancel := context.WithTimeout(s.ctx, time.Minute)
			defer cancel()
			if err := fn(ctx, r.Action.Target, ev); err != nil {
				s.log.Error("alert action failed", "deployment", r.Deployment, "rule", r.Name, "action", r.Action.Kind, "target", r.Action.Target, "error", err)
			}
		}()
	}
}

// webhookJob is one alert transition to deliver.
type webhookJob struct {
	rule slipway.AlertRule
	ev   slipway.AlertEvent
}

// WebhookPayload is the JSON body of an alert webhook.
type WebhookPayload struct {
	ID         string               `json:"id"`
	Type       string               `json:"type"` // alert.firing | alert.resolved
	Deployment string               `json:"deployment"`
	Rule       WebhookRule          `json:"rule"`
	State      string               `json:"state"`
	Value      *float64             `json:"value"`
	Message    string               `json:"message"`
	Time       time.Time            `json:"time"`
	Action     *slipway.AlertAction `json:"action,omitempty"`
	Event      slipway.AlertEvent   `json:"event"`
}

// WebhookRule describes the rule in a webhook.
type WebhookRule struct {
	ID        string  `json:"id"`
	Name      string  `json:"name"`
	Metric    string  `json:"metric"`
	Op        string  `json:"op"`
	Threshold float64 `json:"threshold"`
	Window    string  `json:"window"`
}

// Signature is the X-Slipway-Signature of a webhook: "sha256=" + hex HMAC-SHA256 of "<timestamp>.<body>" keyed by
// the rule's secret, where timestamp is the X-Slipway-Timestamp header (Unix seconds). Receivers recompute it and
// compare in constant time, and refuse old timestamps to defeat replays.
func Signature(secret, timestamp string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(timestamp))
	m.Write([]byte("."))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

const webhookAttempts = 5

// webhookSender delivers queued webhooks (4 at a time) until the service closes.
func (s *Service) webhookSender() {
	sem := make(chan struct{}, 4)
	for {
		select {
		case <-s.ctx.Done():
			for range cap(sem) {
				sem <- struct{}{} // wait for deliveries in progress
			}
			return
		case job := <-s.hooks:
			sem <- struct{}{}
			go func() { // bounded by sem and the service context
				defer func() { <-sem }()
				s.deliver(job)
			}()
		}
	}
}

// deliver posts a webhook, retrying network errors, 429 and 5xx with exponential backoff.
func (s *Service) deliver(job webhookJob) {
	ev := job.ev
	p := WebhookPayload{ID: fmt.Sprintf("%s-%d", ev.RuleID, ev.ID), Type: "alert." + ev.State, Deployment: ev.Deployment,
		Rule: WebhookRule{ID: job.rule.ID, Name: job.rule.Name, Metric: job.rule.Metric, Op: job.rule.Op,
			Threshold: job.rule.Threshold, Window: job.rule.Window.D().String()},
		State: ev.State, Value: ev.Value, Message: ev.Message, Time: ev.Time, Action: job.rule.Action, Event: ev}
	if ev.State == slipway.AlertOK {
		p.Type = "alert.resolved"
	}
	body, _ := json.Marshal(p)
	delay := s.cfg.WebhookBackoff
	var lastErr string
	for attempt := 1; attempt <= webhookAttempts; attempt++ {
		status, err := s.post(job.rule.Webhook, p, body)
		switch {
		case err == nil && status < 300:
			s.log.Info("alert webhook delivered", "deployment", ev.Deployment, "rule", ev.Rule, "state", ev.State, "attempt", attempt)
			return
		case err == nil && status != http.StatusTooManyRequests && status < 500:
			s.log.Error("alert webhook refused; not retried", "deployment", ev.Deployment, "rule", ev.Rule, "status", status)
			return
		case err != nil:
			lastErr = err.Error()
		default:
			lastErr = "HTTP " + strconv.Itoa(status)
		}
		if attempt == webhookAttempts {
			break
		}
		t := time.NewTimer(delay)
		select {
		case <-s.ctx.Done():
			t.Stop()
			s.log.Error("alert webhook abandoned at shutdown", "deployment", ev.Deployment, "rule", ev.Rule, "error", lastErr)
			return
		case <-t.C:
		}
		delay *= 2
	}
	s.log.Error("alert webhook failed", "deployment", ev.Deployment, "rule", ev.Rule, "attempts", webhookAttempts, "error", lastErr)
}

func (s *Service) post(w *slipway.Webhook, p WebhookPayload, body []byte) (int, error) {
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	ts := strconv.FormatInt(s.now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "slipway-webhook")
	req.Header.Set("X-Slipway-Event", p.Type)
	req.Header.Set("X-Slipway-Delivery", p.ID)
	req.Header.Set("X-Slipway-Timestamp", ts)
	if w.Secret != "" {
		req.Header.Set("X-Slipway-Signature", Signature(w.Secret, ts, body))
	}
	resp, err := s.cfg.HTTPClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	// Drained so that the connection can be reused; the status is the receiver's answer.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, nil
}
