// Package monitoring holds the nouns of monitoring (captures, feedback, logs, metric points, drift reports,
// baselines, settings, alert rules and events) and the two store interfaces the monitor service depends on. It
// imports only the standard library and stats, so that both the service (internal/monitor) and its adapter
// (internal/sqlstore) can use it.
package monitoring

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/slipway-ml/slipway/internal/stats"
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

// Settings is how one deployment is monitored.
type Settings struct {
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

// DefaultSettings are the settings of a deployment nobody configured.
func DefaultSettings() Settings {
	return Settings{SamplingRate: 1, CaptureMaxPerSecond: 500, AccessLogMaxPerSecond: 100, CaptureRetention: Duration(7 * 24 * time.Hour), CaptureMaxRequests: 1_000_000,
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
}

// Performance is model quality from ground truth over one window.
type Performance struct {
	From           time.Time             `json:"from"`
	To             time.Time             `json:"to"`
	Labelled       int                   `json:"labelled"`
	Task           string                `json:"task"`
	Classification *stats.Classification `json:"classification,omitempty"`
	Regression     *stats.Regression     `json:"regression,omitempty"`
}

// Baseline is the profile of a model version's training sample.
type Baseline struct {
	Model     string         `json:"model"`
	Version   int            `json:"version"`
	Format    string         `json:"format"` // csv | parquet
	Ignored   []string       `json:"ignored_columns"`
	Profile   *stats.Profile `json:"profile"`
	CreatedAt time.Time      `json:"created_at"`
	CreatedBy string         `json:"created_by"`
}

// AlertRule watches one figure of a deployment.
type AlertRule struct {
	ID         string   `json:"id"`
	Deployment string   `json:"deployment"`
	Name       string   `json:"name"`
	Metric     string   `json:"metric"` // see monitor.AlertMetrics
	Op         string   `json:"op"`     // above | below
	Threshold  float64  `json:"threshold"`
	Window     Duration `json:"window"`
	Webhook    *Webhook `json:"webhook,omitempty"`
	Action     *Action  `json:"action,omitempty"`

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

// Action is what an alert starts when it fires, by kind (for example "pipeline" with the pipeline's name).
type Action struct {
	Kind   string `json:"kind"`
	Target string `json:"target"`
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

// Store keeps monitoring configuration and history in the main database.
type Store interface {
	PutBaseline(ctx context.Context, b *Baseline) error
	FindBaseline(ctx context.Context, model string, version int) (*Baseline, error)
	// FindSettings returns ENOTFOUND when the deployment has none stored.
	FindSettings(ctx context.Context, deployment string) (*Settings, error)
	PutSettings(ctx context.Context, deployment string, s *Settings) error

	CreateAlertRule(ctx context.Context, r *AlertRule) error
	FindAlertRules(ctx context.Context, deployment string) ([]*AlertRule, error) // "" = every deployment
	DeleteAlertRule(ctx context.Context, deployment, id string) error
	// RecordAlertEvaluation stores a rule's new state; a transition (ev != nil) is appended to the history in the
	// same transaction.
	RecordAlertEvaluation(ctx context.Context, r *AlertRule, ev *AlertEvent) error
	FindAlertEvents(ctx context.Context, deployment string, limit int) ([]*AlertEvent, error)
}

// DataStore keeps the append-heavy data (captures, feedback, logs, metric points, drift windows), in its own
// database so that it never blocks the main one.
type DataStore interface {
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

	// Prune deletes what retention no longer keeps and returns how many rows it deleted.
	Prune(ctx context.Context, p Prune) (int64, error)
}

// Prune is one deployment's retention (Deployment "" applies the age limits to every deployment).
type Prune struct {
	Deployment     string
	CapturesBefore time.Time
	MaxCaptures    int64
	LogsBefore     time.Time
	MaxLogLines    int64
	MetricsBefore  time.Time
}
