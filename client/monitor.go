package client

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/slipway-ml/slipway"
)

// The monitoring API: settings, metrics, logs, feedback, baselines, drift, performance and alerts. The types
// mirror the server's JSON; times are UTC.

// The monitoring nouns are the server's own types (the root package): one definition of each JSON shape.
type (
	// MonitoringSettings is how a deployment is monitored (durations are Go duration text: "15m", "168h").
	MonitoringSettings = slipway.MonitoringSettings
	// FeatureSettings overrides one feature's drift test.
	FeatureSettings = slipway.FeatureSettings
	// MetricPoint is one minute of a deployment's operational figures.
	MetricPoint = slipway.MetricPoint
	// LogLine is one line of a deployment's log.
	LogLine = slipway.LogLine
	// FeedbackResult says what the server stored; Unknown lists truths for predictions it has not captured.
	FeedbackResult = slipway.FeedbackResponse
	// FeatureDrift is the drift test of one feature.
	FeatureDrift = slipway.FeatureDrift
	// DriftReport is drift over a range of captured inputs (Features) and outputs (Outputs).
	DriftReport = slipway.DriftReport
	// Performance is model quality over one window.
	Performance = slipway.Performance
	// Baseline is the profile kept for a model version.
	Baseline = slipway.Baseline
	// AlertRule watches one figure of a deployment, with its state.
	AlertRule = slipway.AlertRule
	// AlertRuleSpec creates an alert rule: Name, Metric, Op ("above" or "below"), Threshold, Window, and
	// optionally a Webhook and an Action.
	AlertRuleSpec = slipway.AlertRuleSpec
	// Webhook receives an alert's transitions, signed with Secret (write-only).
	Webhook = slipway.Webhook
	// AlertAction is what an alert starts when it fires.
	AlertAction = slipway.AlertAction
	// AlertEvent is one transition of an alert.
	AlertEvent = slipway.AlertEvent
)

// Metrics is a deployment's minute series; Current is the minute in progress.
type Metrics struct {
	Deployment string                  `json:"deployment"`
	From       time.Time               `json:"from"`
	To         time.Time               `json:"to"`
	Points     []MetricPoint           `json:"points"`
	Current    *MetricPoint            `json:"current"`
	Replicas   []slipway.ReplicaStatus `json:"replicas"`
	// Version is one version's figures (MetricsOfVersion).
	Version *slipway.VersionFigures `json:"version,omitempty"`
}

// LogQuery selects log lines. Wait makes the server hold the request until a line arrives (at most 10 s).
type LogQuery struct {
	Since   time.Time
	After   int64
	Kind    string
	Replica string
	Limit   int
	Wait    time.Duration
}

// Logs is a page of log lines; pass Next as LogQuery.After to continue.
type Logs struct {
	Items []LogLine `json:"items"`
	Next  int64     `json:"next"`
}

// Feedback is one ground truth: Label for a classifier (string, integer or bool), Value for a regressor. It is
// the client's side of slipway.FeedbackItem: Label takes a Go value, which the server reads as raw JSON.
type Feedback struct {
	RequestID string     `json:"request_id"`
	Row       *int       `json:"row,omitempty"`
	Label     any        `json:"label,omitempty"`
	Value     *float64   `json:"value,omitempty"`
	Timestamp *time.Time `json:"timestamp,omitempty"`
}

// TimeRange bounds a query; zero times take the server's defaults.
type TimeRange struct {
	From, To time.Time
}

func (r TimeRange) query() url.Values {
	q := url.Values{}
	if !r.From.IsZero() {
		q.Set("from", r.From.UTC().Format(time.RFC3339Nano))
	}
	if !r.To.IsZero() {
		q.Set("to", r.To.UTC().Format(time.RFC3339Nano))
	}
	return q
}

// MonitoringSettings returns a deployment's monitoring settings.
func (c *Client) MonitoringSettings(ctx context.Context, deployment string) (*MonitoringSettings, error) {
	var s MonitoringSettings
	return &s, c.do(ctx, http.MethodGet, apiPath("deployments", deployment, "monitoring"), nil, nil, &s)
}

// SetMonitoringSettings replaces a deployment's monitoring settings (fields left zero take the defaults).
func (c *Client) SetMonitoringSettings(ctx context.Context, deployment string, s MonitoringSettings) (*MonitoringSettings, error) {
	var out MonitoringSettings
	return &out, c.do(ctx, http.MethodPut, apiPath("deployments", deployment, "monitoring"), nil, s, &out)
}

// Metrics returns a deployment's minute series.
func (c *Client) Metrics(ctx context.Context, deployment string, r TimeRange) (*Metrics, error) {
	var m Metrics
	return &m, c.do(ctx, http.MethodGet, apiPath("deployments", deployment, "metrics"), r.query(), nil, &m)
}

// Logs returns a deployment's log lines.
func (c *Client) Logs(ctx context.Context, deployment string, lq LogQuery) (*Logs, error) {
	q := url.Values{}
	if !lq.Since.IsZero() {
		q.Set("since", lq.Since.UTC().Format(time.RFC3339Nano))
	}
	if lq.After > 0 {
		q.Set("after", strconv.FormatInt(lq.After, 10))
	}
	if lq.Kind != "" {
		q.Set("kind", lq.Kind)
	}
	if lq.Replica != "" {
		q.Set("replica", lq.Replica)
	}
	if lq.Limit > 0 {
		q.Set("limit", strconv.Itoa(lq.Limit))
	}
	if lq.Wait > 0 {
		q.Set("wait", lq.Wait.String())
	}
	var l Logs
	return &l, c.do(ctx, http.MethodGet, apiPath("deployments", deployment, "logs"), q, nil, &l)
}

// SendFeedback sends ground truth for captured predictions.
func (c *Client) SendFeedback(ctx context.Context, deployment string, items []Feedback) (*FeedbackResult, error) {
	var r FeedbackResult
	return &r, c.do(ctx, http.MethodPost, apiPath("deployments", deployment, "feedback"), nil, items, &r)
}

// Drift returns drift over a range of captured inputs (the last full window when r is zero).
func (c *Client) Drift(ctx context.Context, deployment string, r TimeRange) (*DriftReport, error) {
	var d DriftReport
	return &d, c.do(ctx, http.MethodGet, apiPath("deployments", deployment, "drift"), r.query(), nil, &d)
}

// DriftWindows returns the stored drift windows starting in the range.
func (c *Client) DriftWindows(ctx context.Context, deployment string, r TimeRange) ([]DriftReport, error) {
	return items[DriftReport](ctx, c, http.MethodGet, apiPath("deployments", deployment, "drift", "windows"), r.query())
}

// Performance returns model quality per window (window 0: the deployment's drift window).
func (c *Client) Performance(ctx context.Context, deployment string, r TimeRange, window time.Duration) ([]Performance, error) {
	q := r.query()
	if window > 0 {
		q.Set("window", window.String())
	}
	return items[Performance](ctx, c, http.MethodGet, apiPath("deployments", deployment, "performance"), q)
}

// Baseline formats for PutBaseline.
const (
	BaselineCSV     = "text/csv"
	BaselineParquet = "application/vnd.apache.parquet"
)

// PutBaseline uploads a sample of a version's training data (contentType BaselineCSV or BaselineParquet) and
// returns the profile the server keeps. version is a number or "@alias".
func (c *Client) PutBaseline(ctx context.Context, model, version string, body io.Reader, contentType string) (*Baseline, error) {
	var b Baseline
	return &b, c.doRaw(ctx, http.MethodPut, apiPath("models", model, "versions", version, "baseline"), nil, body, contentType, &b)
}

// GetBaseline returns a version's baseline profile.
func (c *Client) GetBaseline(ctx context.Context, model, version string) (*Baseline, error) {
	var b Baseline
	return &b, c.do(ctx, http.MethodGet, apiPath("models", model, "versions", version, "baseline"), nil, nil, &b)
}

// AlertRules lists a deployment's alert rules with their state.
func (c *Client) AlertRules(ctx context.Context, deployment string) ([]AlertRule, error) {
	return items[AlertRule](ctx, c, http.MethodGet, apiPath("deployments", deployment, "alerts"), nil)
}

// CreateAlertRule creates an alert rule.
func (c *Client) CreateAlertRule(ctx context.Context, deployment string, r AlertRuleSpec) (*AlertRule, error) {
	var out AlertRule
	return &out, c.do(ctx, http.MethodPost, apiPath("deployments", deployment, "alerts"), nil, r, &out)
}

// DeleteAlertRule deletes an alert rule and its history.
func (c *Client) DeleteAlertRule(ctx context.Context, deployment, id string) error {
	return c.do(ctx, http.MethodDelete, apiPath("deployments", deployment, "alerts", id), nil, nil, nil)
}

// EvaluateAlerts evaluates a deployment's rules now and returns their states.
func (c *Client) EvaluateAlerts(ctx context.Context, deployment string) ([]AlertRule, error) {
	return items[AlertRule](ctx, c, http.MethodPost, apiPath("deployments", deployment, "alerts", "evaluate"), nil)
}

// AlertHistory returns a deployment's alert transitions, newest first.
func (c *Client) AlertHistory(ctx context.Context, deployment string, limit int) ([]AlertEvent, error) {
	return items[AlertEvent](ctx, c, http.MethodGet, apiPath("deployments", deployment, "alerts", "history"), pageQuery(nil, 0, limit))
}

// PrometheusMetrics returns the server's /metrics text.
func (c *Client) PrometheusMetrics(ctx context.Context) ([]byte, error) {
	body, err := c.open(ctx, "/metrics", nil, "text/plain")
	if err != nil {
		return nil, err
	}
	defer body.Close()
	return io.ReadAll(body)
}
