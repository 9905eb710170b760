package slipway

// The nouns of monitoring (captures, feedback, logs, metric points, drift reports, baselines, settings, alert
// rules and events), the JSON the API writes for them, and the two store interfaces the monitor service
// (internal/monitor) depends on and its adapter (internal/sqlstore) implements.

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// Duration is a time.Duration written in JSON as Go's duration text ("90s", "1h", "168h").
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration is text such as \"90s\", \"15m\" or \"24h\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("a duration is text such as \"90s\", \"15m\" or \"24h\", not %q", s)
	}
	*d = Duration(v)
	return nil
}

// D is the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MonitoringSettings is how one deployment is monitored.
type MonitoringSettings struct {
	// SamplingRate is the share of successful predictions captured (0..1; 0 turns capture off).
	SamplingRate float64 `json:"sampling_rate"`
	// CaptureMaxPerSecond caps the captured requests per second (beyond, requests are not captured, as if not
	// sampled): it bounds the write load whatever the traffic. Drift needs a sample, not every request.
	CaptureMaxPerSecond int64 `json:"capture_max_per_second"`
	// CaptureRetention and CaptureMaxRequests bound the captured predictions (and their feedback) kept.
	CaptureRetention   Duration `json:"capture_retention"`
	CaptureMaxRequests int64    `json:"capture_max_requests"`
	// AccessLogMaxPerSecond caps the access-log lines of successful requests per second (errors are always
	// logged; every request is counted in the metrics whatever the cap): at tens of thousands of requests per
	// second a line each would be most of the server's work and of the disk.
	AccessLogMaxPerSecond int64 `json:"access_log_max_per_second"`
	// LogRetention and LogMaxLines bound the access and predict log kept.
	LogRetention Duration `json:"log_retention"`
	LogMaxLines  int64    `json:"log_max_lines"`
	// DriftWindow is the length of the windows drift and performance are computed and stored for.
	DriftWindow Duration `json:"drift_window"`
	// Features overrides the drift method or threshold per feature (input or output name).
	Features map[string]FeatureSettings `json:"features,omitempty"`
	// Task is "classification" or "regression"; empty infers it from the prediction output's type.
	Task string `json:"task,omitempty"`
	// PredictionOutput names the output holding the prediction; ScoreOutput the probability of PositiveLabel
	// (classification). Empty: inferred from the names (prediction, label...; probability, score...).
	PredictionOutput string `json:"prediction_output,omitempty"`
	ScoreOutput      string `json:"score_output,omitempty"`
	PositiveLabel    string `json:"positive_label,omitempty"`
}

// FeatureSettings overrides the drift test of one feature.
type FeatureSettings struct {
	Method    string   `json:"method,omitempty"` // ks, wasserstein, chisquare, jensenshannon, psi
	Threshold *float64 `json:"threshold,omitempty"`
}

// DefaultMonitoringSettings are the settings of a deployment nobody configured.
func DefaultMonitoringSettings() MonitoringSettings {
	return MonitoringSettings{SamplingRate: 1, CaptureMaxPerSecond: 500, AccessLogMaxPerSecond: 100, CaptureRetention: Duration(7 * 24 * time.Hour), CaptureMaxRequests: 1_000_000,
		LogRetention: Duration(72 * time.Hour), LogMaxLines: 100_000, DriftWindow: Duration(time.Hour), PositiveLabel: "1"}
}

// Capture is one captured prediction request: its input and output columns as workerproto tensor frames.
type Capture struct {
	ID           int64
	Deployment   string
	RequestID    string
	ModelVersion int
	Time         time.Time
	Rows         int
	Protocol     string
	Inputs       []byte
	Outputs      []byte
	// LatencyMS is how long the request took, as the server measured it (0: captured before it was kept).
	LatencyMS float64
	// Holdout marks a request of the deployment's holdout share (its application was told to withhold its
	// action: Slipway-Holdout: true).
	Holdout bool
}

// Feedback is the ground truth of one row of a captured request: a label (classification) or a value
// (regression).
type Feedback struct {
	Deployment string
	RequestID  string
	Row        int
	Label      *string
	Value      *float64
	Time       time.Time // when the truth was observed (the client's timestamp, else received)
	ReceivedAt time.Time
}

// FeedbackResult says what an upsert did.
type FeedbackResult struct {
	Inserted  int `json:"inserted"`
	Updated   int `json:"updated"`
	Unchanged int `json:"unchanged"`
}

// FeedbackItem is one ground truth as clients send it: the request id (X-Request-Id, or the V2 "id") and row of
// a prediction, and either a label (classification: text, integer or boolean) or a value (regression). Label and
// Value stay raw JSON so that the server can tell the text "1" from the number 1.
type FeedbackItem struct {
	RequestID string          `json:"request_id"`
	Row       *int            `json:"row,omitempty"`
	Label     json.RawMessage `json:"label,omitempty"`
	Value     json.RawMessage `json:"value,omitempty"`
	Timestamp *time.Time      `json:"timestamp,omitempty"`
}

// UnknownFeedback is ground truth for a prediction that was not captured (yet): it is stored all the same and
// joined if the capture arrives, but the client is told.
type UnknownFeedback struct {
	RequestID string `json:"request_id"`
	Row       int    `json:"row"`
	Reason    string `json:"reason"`
}

// FeedbackResponse says what a feedback request did.
type FeedbackResponse struct {
	Received int `json:"received"`
	FeedbackResult
	Unknown      []UnknownFeedback `json:"unknown"`
	UnknownCount int               `json:"unknown_count"`
}

// LogLine is one line of a deployment's log: an access log entry or a line a replica wrote.
type LogLine struct {
	ID         int64           `json:"id"`
	Deployment string          `json:"deployment"`
	Time       time.Time       `json:"time"`
	Kind       string          `json:"kind"` // access | predict
	Replica    string          `json:"replica,omitempty"`
	RequestID  string          `json:"request_id,omitempty"`
	Line       string          `json:"line"`
	Fields     json.RawMessage `json:"fields,omitempty"` // access: status, latency_ms, bytes_in, bytes_out, version, protocol
}

// Log kinds.
const (
	LogAccess  = "access"
	LogPredict = "predict"
)

// LogFilter selects log lines: newer than AfterID and Since, of a kind ("" = both), of a replica ("" = all).
type LogFilter struct {
	Deployment string
	AfterID    int64
	Since      time.Time
	Kind       string
	Replica    string
	Limit      int
}

// MetricPoint is one deployment's operational figures over one minute.
type MetricPoint struct {
	Deployment     string    `json:"-"`
	Minute         time.Time `json:"time"`
	Requests       int64     `json:"requests"`
	Status2xx      int64     `json:"status_2xx"`
	Status4xx      int64     `json:"status_4xx"`
	Status5xx      int64     `json:"status_5xx"`
	Rejected       int64     `json:"rejected"`
	Timeouts       int64     `json:"timeouts"`
	BytesIn        int64     `json:"bytes_in"`
	BytesOut       int64     `json:"bytes_out"`
	LatencyMeanMS  float64   `json:"latency_mean_ms"`
	LatencyP50MS   float64   `json:"latency_p50_ms"`
	LatencyP95MS   float64   `json:"latency_p95_ms"`
	LatencyP99MS   float64   `json:"latency_p99_ms"`
	LatencyMaxMS   float64   `json:"latency_max_ms"`
	QueueMax       int64     `json:"queue_max"`
	Batches        int64     `json:"batches"`
	BatchRows      int64     `json:"batch_rows"`
	Restarts       int64     `json:"restarts"`
	CPUUtilization float64   `json:"cpu_utilization"` // share of one core, summed over replicas
	MemoryBytes    int64     `json:"memory_bytes"`    // resident set, summed over replicas
	Replicas       int64     `json:"replicas"`
	Captured       int64     `json:"captured"`
	CaptureDropped int64     `json:"capture_dropped"`
}

// AddCounts adds p's counters to m (requests, statuses, refusals, bytes, batches, restarts, captures), with the
// mean latency weighted by requests, and keeps the larger queue and maximum latency. Percentiles and gauges
// (replicas, CPU, memory) are left to the caller: they do not add up.
func (m *MetricPoint) AddCounts(p *MetricPoint) {
	if total := m.Requests + p.Requests; total > 0 {
		m.LatencyMeanMS = (m.LatencyMeanMS*float64(m.Requests) + p.LatencyMeanMS*float64(p.Requests)) / float64(total)
	}
	m.Requests += p.Requests
	m.Status2xx += p.Status2xx
	m.Status4xx += p.Status4xx
	m.Status5xx += p.Status5xx
	m.Rejected += p.Rejected
	m.Timeouts += p.Timeouts
	m.BytesIn += p.BytesIn
	m.BytesOut += p.BytesOut
	m.Batches += p.Batches
	m.BatchRows += p.BatchRows
	m.Restarts += p.Restarts
	m.Captured += p.Captured
	m.CaptureDropped += p.CaptureDropped
	m.LatencyMaxMS = max(m.LatencyMaxMS, p.LatencyMaxMS)
	m.QueueMax = max(m.QueueMax, p.QueueMax)
}

// FeatureDrift is the drift test of one feature (or output) in a window.
type FeatureDrift struct {
	Feature   string   `json:"feature"`
	Kind      string   `json:"kind"`
	Method    string   `json:"method"`
	Statistic *float64 `json:"statistic"`
	PValue    *float64 `json:"p_value"`
	Distance  *float64 `json:"distance"`
	Threshold float64  `json:"threshold"`
	Drifted   bool     `json:"drifted"`
	PSI       *float64 `json:"psi"`
	Rows      int64    `json:"rows"`
	Missing   int64    `json:"missing"`
	Exact     bool     `json:"exact"` // the statistic is computed exactly (not from a compressed summary)
	Note      string   `json:"note,omitempty"`
}

// DriftReport is drift over one range of captured inputs.
type DriftReport struct {
	Deployment   string         `json:"deployment"`
	Model        string         `json:"model"`
	Version      int            `json:"version"`
	From         time.Time      `json:"from"`
	To           time.Time      `json:"to"`
	Rows         int64          `json:"rows"`
	DriftShare   float64        `json:"drift_share"`
	DatasetDrift bool           `json:"dataset_drift"` // drift_share >= 0.5 (Evidently's default)
	Features     []FeatureDrift `json:"features"`
	Outputs      []FeatureDrift `json:"outputs"`
	Stored       bool           `json:"stored"` // read from a stored window rather than computed now
	ComputedAt   time.Time      `json:"computed_at"`
	// Baseline says what the traffic is compared with: "registered" (the version's baseline) or
	// "first_window" (it has none: the captures of the version's first drift window, BaselineFrom..To).
	Baseline     string     `json:"baseline,omitempty"`
	BaselineFrom *time.Time `json:"baseline_from,omitempty"`
	BaselineTo   *time.Time `json:"baseline_to,omitempty"`
}

// Performance is model quality from ground truth over one window.
type Performance struct {
	From           time.Time              `json:"from"`
	To             time.Time              `json:"to"`
	Labelled       int                    `json:"labelled"`
	Task           string                 `json:"task"`
	Classification *ClassificationMetrics `json:"classification,omitempty"`
	Regression     *RegressionMetrics     `json:"regression,omitempty"`
	// Estimated is the label-free estimate of a binary classifier's quality over every captured row of the
	// window, labelled or not (CBPE); nil for regressors, models without a probability output, or more than
	// two classes. A window with captures and no ground truth yet has only this.
	Estimated *EstimatedPerformance `json:"estimated,omitempty"`
	// Holdout and Treated are the same figures over the labelled rows of the deployment's holdout share and
	// over the rest (the traffic its application acted on); both nil when no labelled row was held out.
	Holdout *Performance `json:"holdout,omitempty"`
	Treated *Performance `json:"treated,omitempty"`
}

// EstimatedPerformance is CBPE's (confidence-based performance estimation) expected quality of a window: the
// expected confusion matrix from the predicted probabilities, calibrated on each version's labelled reference.
// See docs/monitoring.md for when it holds (calibrated scores, covariate shift only) and its tolerance.
type EstimatedPerformance struct {
	Method    string   `json:"method"` // "cbpe"
	Rows      int      `json:"rows"`   // captured rows with a probability
	Accuracy  float64  `json:"accuracy"`
	Precision float64  `json:"precision"`
	Recall    float64  `json:"recall"`
	F1        float64  `json:"f1"`
	ROCAUC    *float64 `json:"roc_auc,omitempty"`
	// AccuracyStdError is how far the realized accuracy may land from the estimate by the labels' chance
	// alone (one standard deviation).
	AccuracyStdError float64 `json:"accuracy_std_error"`
	// References are the calibrations used, one per version in the window.
	References []EstimateReference `json:"references"`
}

// EstimateReference says how a version's scores were calibrated: "isotonic" on the labelled rows of the
// version's first labelled window (From..To, Rows), or "none" (no labelled reference yet: scores taken as
// probabilities).
type EstimateReference struct {
	Version     int        `json:"version"`
	Calibration string     `json:"calibration"`
	From        *time.Time `json:"from,omitempty"`
	To          *time.Time `json:"to,omitempty"`
	Rows        int        `json:"rows"`
}

// ClassificationMetrics is the quality of predicted labels against true labels (scikit-learn's definitions).
// For two classes, precision, recall and F1 are those of the positive class; for more, their macro averages over
// the classes present in the labels or the predictions. ROCAUC and LogLoss need the predicted probability of the
// positive class (binary only) and are nil otherwise, or when only one class is present (AUC).
type ClassificationMetrics struct {
	N         int      `json:"n"`
	Accuracy  float64  `json:"accuracy"`
	Precision float64  `json:"precision"`
	Recall    float64  `json:"recall"`
	F1        float64  `json:"f1"`
	ROCAUC    *float64 `json:"roc_auc,omitempty"`
	LogLoss   *float64 `json:"log_loss,omitempty"`
}

// RegressionMetrics is the quality of predicted values against true values.
type RegressionMetrics struct {
	N    int     `json:"n"`
	MAE  float64 `json:"mae"`
	RMSE float64 `json:"rmse"`
	R2   float64 `json:"r2"`
}

// Baseline is the profile of a model version's training sample.
type Baseline struct {
	Model     string       `json:"model"`
	Version   int          `json:"version"`
	Format    string       `json:"format"` // csv | parquet
	Ignored   []string     `json:"ignored_columns"`
	Profile   *DataProfile `json:"profile"`
	CreatedAt time.Time    `json:"created_at"`
	CreatedBy string       `json:"created_by"`
}

// AlertRule watches one figure of a deployment.
type AlertRule struct {
	ID         string       `json:"id"`
	Deployment string       `json:"deployment"`
	Name       string       `json:"name"`
	Metric     string       `json:"metric"` // see internal/monitor.AlertMetrics
	Op         string       `json:"op"`     // above | below
	Threshold  float64      `json:"threshold"`
	Window     Duration     `json:"window"`
	Webhook    *Webhook     `json:"webhook,omitempty"`
	Action     *AlertAction `json:"action,omitempty"`

	State         string     `json:"state"` // ok | firing
	Value         *float64   `json:"value"`
	Since         *time.Time `json:"since,omitempty"`
	LastEvaluated *time.Time `json:"last_evaluated,omitempty"`
	CreatedAt     time.Time  `json:"created_at"`
}

// Webhook is where an alert's transitions are posted, signed with Secret (HMAC-SHA256). The secret is
// write-only: responses say only whether one is set.
type Webhook struct {
	URL       string `json:"url"`
	Secret    string `json:"secret,omitempty"`
	HasSecret bool   `json:"has_secret"`
}

// AlertAction is what an alert starts when it fires, by kind (for example "pipeline" with the pipeline's name).
type AlertAction struct {
	Kind   string `json:"kind"`
	Target string `json:"target"`
}

// AlertRuleSpec is the body that creates an alert rule.
type AlertRuleSpec struct {
	Name      string       `json:"name"`
	Metric    string       `json:"metric"`
	Op        string       `json:"op"`
	Threshold float64      `json:"threshold"`
	Window    Duration     `json:"window"`
	Webhook   *Webhook     `json:"webhook"`
	Action    *AlertAction `json:"action"`
}

// Alert states.
const (
	AlertOK     = "ok"
	AlertFiring = "firing"
)

// AlertEvent is one transition of an alert (its history).
type AlertEvent struct {
	ID         int64     `json:"id"`
	RuleID     string    `json:"rule_id"`
	Deployment string    `json:"deployment"`
	Rule       string    `json:"rule"`
	State      string    `json:"state"`
	Value      *float64  `json:"value"`
	Threshold  float64   `json:"threshold"`
	Message    string    `json:"message"`
	Time       time.Time `json:"time"`
}

// MonitoringStore keeps monitoring configuration and history in the main database.
type MonitoringStore interface {
	PutBaseline(ctx context.Context, b *Baseline) error
	FindBaseline(ctx context.Context, model string, version int) (*Baseline, error)
	// FindSettings returns ENOTFOUND when the deployment has none stored.
	FindSettings(ctx context.Context, deployment string) (*MonitoringSettings, error)
	PutSettings(ctx context.Context, deployment string, s *MonitoringSettings) error

	CreateAlertRule(ctx context.Context, r *AlertRule) error
	FindAlertRules(ctx context.Context, deployment string) ([]*AlertRule, error) // "" = every deployment
	DeleteAlertRule(ctx context.Context, deployment, id string) error
	// RecordAlertEvaluation stores a rule's new state; a transition (ev != nil) is appended to the history in the
	// same transaction.
	RecordAlertEvaluation(ctx context.Context, r *AlertRule, ev *AlertEvent) error
	FindAlertEvents(ctx context.Context, deployment string, limit int) ([]*AlertEvent, error)
}

// MonitoringDataStore keeps the append-heavy data (captures, feedback, logs, metric points, drift windows), in
// its own database so that it never blocks the main one.
type MonitoringDataStore interface {
	InsertCaptures(ctx context.Context, cs []*Capture) error
	// ScanCaptures calls fn for the captures of a deployment with from <= time < to, oldest first.
	ScanCaptures(ctx context.Context, deployment string, from, to time.Time, fn func(*Capture) error) error
	// CaptureRows returns, for the request ids that were captured, their row counts.
	CaptureRows(ctx context.Context, deployment string, requestIDs []string) (map[string]int, error)
	UpsertFeedback(ctx context.Context, fs []*Feedback) (FeedbackResult, error)
	// ScanLabelled calls fn for each captured request with from <= time < to that has feedback, with its feedback.
	ScanLabelled(ctx context.Context, deployment string, from, to time.Time, fn func(*Capture, []*Feedback) error) error

	InsertLogs(ctx context.Context, ls []*LogLine) error
	FindLogs(ctx context.Context, f LogFilter) ([]*LogLine, error)

	UpsertMetricPoints(ctx context.Context, ps []*MetricPoint) error
	FindMetricPoints(ctx context.Context, deployment string, from, to time.Time) ([]*MetricPoint, error)

	PutDriftWindow(ctx context.Context, r *DriftReport) error
	FindDriftWindow(ctx context.Context, deployment string, from, to time.Time) (*DriftReport, error)
	FindDriftWindows(ctx context.Context, deployment string, from, to time.Time) ([]*DriftReport, error)

	ShadowStore
	CaptureExportStore

	// Prune deletes what retention no longer keeps and returns how many rows it deleted.
	Prune(ctx context.Context, p MonitoringPrune) (int64, error)
}

// MonitoringPrune is one deployment's retention (Deployment "" applies the age limits to every deployment).
type MonitoringPrune struct {
	Deployment     string
	CapturesBefore time.Time
	MaxCaptures    int64
	LogsBefore     time.Time
	MaxLogLines    int64
	MetricsBefore  time.Time
}
