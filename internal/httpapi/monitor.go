package httpapi

import (
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/monitor"
)

// monitorRoutes lists the routes of this feature area; they join the table in server.go.
func (s *Server) monitorRoutes() []route {
	return []route{
		{"GET /metrics", s.withMonitor(s.handleMetricsPrometheus), slipway.RoleViewer},
		{"GET /api/v1/deployments/{name}/metrics", s.withMonitorDeployment(s.handleMetricsGet), slipway.RoleViewer},
		{"GET /api/v1/deployments/{name}/logs", s.withMonitorDeployment(s.handleLogsGet), slipway.RoleViewer},
		{"GET /api/v1/deployments/{name}/monitoring", s.withMonitorDeployment(s.handleMonitoringGet), slipway.RoleViewer},
		{"PUT /api/v1/deployments/{name}/monitoring", s.withMonitorDeployment(s.handleMonitoringPut), slipway.RoleEditor},
		{"POST /api/v1/deployments/{name}/feedback", s.withMonitorDeployment(s.handleFeedbackCreate), slipway.RolePredict},
		{"GET /api/v1/deployments/{name}/drift", s.withMonitorDeployment(s.handleDriftGet), slipway.RoleViewer},
		{"GET /api/v1/deployments/{name}/drift/windows", s.withMonitorDeployment(s.handleDriftWindows), slipway.RoleViewer},
		{"GET /api/v1/deployments/{name}/performance", s.withMonitorDeployment(s.handlePerformanceGet), slipway.RoleViewer},
		{"PUT /api/v1/models/{model}/versions/{version}/baseline", s.withMonitor(s.handleBaselinePut), slipway.RoleEditor},
		{"GET /api/v1/models/{model}/versions/{version}/baseline", s.withMonitor(s.handleBaselineGet), slipway.RoleViewer},
		{"GET /api/v1/deployments/{name}/alerts", s.withMonitorDeployment(s.handleAlertList), slipway.RoleViewer},
		{"POST /api/v1/deployments/{name}/alerts", s.withMonitorDeployment(s.handleAlertCreate), slipway.RoleEditor},
		{"DELETE /api/v1/deployments/{name}/alerts/{id}", s.withMonitorDeployment(s.handleAlertDelete), slipway.RoleEditor},
		{"GET /api/v1/deployments/{name}/alerts/history", s.withMonitorDeployment(s.handleAlertHistory), slipway.RoleViewer},
		{"POST /api/v1/deployments/{name}/alerts/evaluate", s.withMonitorDeployment(s.handleAlertEvaluate), slipway.RoleEditor},
	}
}

// withMonitor adapts a handler of the monitoring area: it gets the monitor, and a server running without it
// answers EUNAVAILABLE.
func (s *Server) withMonitor(h func(w http.ResponseWriter, r *http.Request, m *monitor.Service) error) http.HandlerFunc {
	return s.handle(func(w http.ResponseWriter, r *http.Request) error {
		if s.monitor == nil {
			return slipway.Errorf(slipway.EUNAVAILABLE, "monitoring is not running on this server")
		}
		return h(w, r, s.monitor)
	})
}

// withMonitorDeployment is withMonitor for the routes under /deployments/{name}: it also validates {name}.
func (s *Server) withMonitorDeployment(h func(w http.ResponseWriter, r *http.Request, m *monitor.Service, name string) error) http.HandlerFunc {
	return s.withMonitor(func(w http.ResponseWriter, r *http.Request, m *monitor.Service) error {
		name, err := deploymentName(r)
		if err != nil {
			return err
		}
		return h(w, r, m, name)
	})
}

func (s *Server) handleMetricsPrometheus(w http.ResponseWriter, r *http.Request, m *monitor.Service) error {
	promhttp.HandlerFor(m.Registry(), promhttp.HandlerOpts{ErrorLog: nil}).ServeHTTP(w, r)
	return nil
}

// MetricsResponse is a deployment's operational figures.
type MetricsResponse struct {
	Deployment string                  `json:"deployment"`
	From       time.Time               `json:"from"`
	To         time.Time               `json:"to"`
	Points     []*slipway.MetricPoint  `json:"points"`
	Current    *slipway.MetricPoint    `json:"current"` // the minute in progress
	Replicas   []slipway.ReplicaStatus `json:"replicas"`
	// Version is the figures of one version (?version=): its requests, errors and latency on this server
	// since it started. Points and Current are then left out: the stored minute points are the deployment's.
	Version *slipway.VersionFigures `json:"version,omitempty"`
}

func (s *Server) handleMetricsGet(w http.ResponseWriter, r *http.Request, m *monitor.Service, name string) error {
	from, to, err := timeRangeOr(r, time.Hour)
	if err != nil {
		return err
	}
	if to.Sub(from) > 31*24*time.Hour || !from.Before(to) {
		return slipway.Errorf(slipway.EINVALID, "from must be before to, at most 31 days apart")
	}
	version, err := versionParam(r)
	if err != nil {
		return err
	}
	resp := MetricsResponse{Deployment: name, From: from, To: to, Points: []*slipway.MetricPoint{}, Replicas: []slipway.ReplicaStatus{}}
	if version > 0 {
		d, err := s.deployments.Get(r.Context(), name)
		if err != nil {
			return err
		}
		for _, rs := range d.ReplicaStatus {
			if rs.Version == version {
				resp.Replicas = append(resp.Replicas, rs)
			}
		}
		f := m.VersionFigures(name, version)
		resp.Version = &f
		return reply(w, http.StatusOK, resp)
	}
	if resp.Points, err = m.Metrics(r.Context(), name, from, to); err != nil {
		return err
	}
	resp.Current = m.Live(name)
	if d, err := s.deployments.Get(r.Context(), name); err == nil {
		resp.Replicas = d.ReplicaStatus
	}
	return reply(w, http.StatusOK, resp)
}

// LogsResponse is a page of log lines; Next is the id to pass as after= to continue (follow).
type LogsResponse struct {
	Items []*slipway.LogLine `json:"items"`
	Next  int64              `json:"next"`
}

func (s *Server) handleLogsGet(w http.ResponseWriter, r *http.Request, m *monitor.Service, name string) error {
	q := r.URL.Query()
	f := slipway.LogFilter{Deployment: name, Kind: q.Get("kind"), Replica: q.Get("replica")}
	var err error
	if v := q.Get("after"); v != "" {
		if f.AfterID, err = strconv.ParseInt(v, 10, 64); err != nil || f.AfterID < 0 {
			return slipway.Errorf(slipway.EINVALID, "after=%q: give the next id of the previous page", v)
		}
	}
	if v := q.Get("limit"); v != "" {
		if f.Limit, err = strconv.Atoi(v); err != nil || f.Limit < 1 || f.Limit > 5000 {
			return slipway.Errorf(slipway.EINVALID, "limit must be a number from 1 to 5000, got %q", v)
		}
	}
	if f.Since, err = parseTimeParam(r, "since", time.Now()); err != nil {
		return err
	}
	wait, err := durationParam(r, "wait")
	if err != nil {
		return err
	}
	lines, err := m.Logs(r.Context(), f, wait)
	if err != nil {
		return err
	}
	next := f.AfterID
	if n := len(lines); n > 0 {
		next = lines[n-1].ID
	}
	return reply(w, http.StatusOK, LogsResponse{Items: lines, Next: next})
}

func (s *Server) handleMonitoringGet(w http.ResponseWriter, r *http.Request, m *monitor.Service, name string) error {
	st, err := m.Settings(r.Context(), name)
	return replyOK(w, st, err)
}

func (s *Server) handleMonitoringPut(w http.ResponseWriter, r *http.Request, m *monitor.Service, name string) error {
	var in slipway.MonitoringSettings
	if err := decodeJSON(w, r, &in, 1<<20); err != nil {
		return err
	}
	st, err := m.PutSettings(r.Context(), name, in)
	return replyOK(w, st, err)
}

// maxFeedbackBody bounds a feedback request (MaxFeedbackItems items of a few hundred bytes each).
const maxFeedbackBody = 8 << 20

func (s *Server) handleFeedbackCreate(w http.ResponseWriter, r *http.Request, m *monitor.Service, name string) error {
	var items []slipway.FeedbackItem
	if err := decodeJSON(w, r, &items, maxFeedbackBody); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) || slipway.ErrorCode(err) == slipway.ETOOLARGE {
			err = slipway.Errorf(slipway.ETOOLARGE, "feedback body larger than %d MB: send at most %d items per request", maxFeedbackBody>>20, monitor.MaxFeedbackItems)
		}
		return err
	}
	res, err := m.Feedback(r.Context(), name, items)
	return replyOK(w, res, err)
}

func (s *Server) handleDriftGet(w http.ResponseWriter, r *http.Request, m *monitor.Service, name string) error {
	from, to, err := timeRange(r)
	if err != nil {
		return err
	}
	version, err := versionParam(r)
	if err != nil {
		return err
	}
	rep, err := m.DriftOfVersion(r.Context(), name, version, from, to)
	return replyOK(w, rep, err)
}

func (s *Server) handleDriftWindows(w http.ResponseWriter, r *http.Request, m *monitor.Service, name string) error {
	from, to, err := timeRangeOr(r, 24*time.Hour)
	if err != nil {
		return err
	}
	reps, err := m.DriftWindows(r.Context(), name, from, to)
	return replyAll(w, reps, err)
}

func (s *Server) handlePerformanceGet(w http.ResponseWriter, r *http.Request, m *monitor.Service, name string) error {
	from, to, err := timeRange(r)
	if err != nil {
		return err
	}
	window, err := durationParam(r, "window")
	if err != nil {
		return err
	}
	version, err := versionParam(r)
	if err != nil {
		return err
	}
	perf, err := m.PerformanceOfVersion(r.Context(), name, version, from, to, window)
	return replyAll(w, perf, err)
}

// baselineVersion reads {model} and {version} (a number or @alias).
func baselineVersion(r *http.Request) (string, slipway.VersionRef, error) {
	model := r.PathValue("model")
	if err := slipway.ValidateName("model", model); err != nil {
		return "", slipway.VersionRef{}, err
	}
	ref, err := slipway.ParseVersionRef(r.PathValue("version"))
	return model, ref, err
}

func (s *Server) handleBaselinePut(w http.ResponseWriter, r *http.Request, m *monitor.Service) error {
	model, ref, err := baselineVersion(r)
	if err != nil {
		return err
	}
	ct := mediaType(r)
	var format string
	switch ct {
	case "text/csv", "application/csv":
		format = monitor.FormatCSV
	case "application/vnd.apache.parquet", "application/x-parquet", "application/parquet":
		format = monitor.FormatParquet
	default:
		return slipway.Errorf(slipway.EINVALID, "unsupported Content-Type %q: send the sample as text/csv (with a header row) or application/vnd.apache.parquet", ct)
	}
	body := http.MaxBytesReader(w, r.Body, monitor.MaxBaselineBytes)
	b, err := m.PutBaseline(r.Context(), model, ref, format, io.Reader(body), actor(r))
	if err != nil {
		return err
	}
	return reply(w, http.StatusOK, publicBaseline(b))
}

func publicBaseline(b *slipway.Baseline) *slipway.Baseline {
	out := *b
	out.Profile = b.Profile.Public()
	if out.Ignored == nil {
		out.Ignored = []string{}
	}
	return &out
}

func (s *Server) handleBaselineGet(w http.ResponseWriter, r *http.Request, m *monitor.Service) error {
	model, ref, err := baselineVersion(r)
	if err != nil {
		return err
	}
	b, err := m.GetBaseline(r.Context(), model, ref)
	if err != nil {
		return err
	}
	return reply(w, http.StatusOK, publicBaseline(b))
}

func (s *Server) handleAlertList(w http.ResponseWriter, r *http.Request, m *monitor.Service, name string) error {
	rules, err := m.AlertRules(r.Context(), name)
	return replyAll(w, rules, err)
}

func (s *Server) handleAlertCreate(w http.ResponseWriter, r *http.Request, m *monitor.Service, name string) error {
	var in slipway.AlertRuleSpec
	if err := decodeJSON(w, r, &in, 1<<20); err != nil {
		return err
	}
	rule, err := m.CreateAlertRule(r.Context(), name, slipway.AlertRule{Name: in.Name, Metric: in.Metric, Op: in.Op,
		Threshold: in.Threshold, Window: in.Window, Webhook: in.Webhook, Action: in.Action})
	if err != nil {
		return err
	}
	return replyCreated(w, "/api/v1/deployments/"+name+"/alerts/"+rule.ID, rule)
}

func (s *Server) handleAlertDelete(w http.ResponseWriter, r *http.Request, m *monitor.Service, name string) error {
	if err := m.DeleteAlertRule(r.Context(), name, r.PathValue("id")); err != nil {
		return err
	}
	return noContent(w)
}

func (s *Server) handleAlertHistory(w http.ResponseWriter, r *http.Request, m *monitor.Service, name string) error {
	_, limit, err := pageParams(r)
	if err != nil {
		return err
	}
	evs, err := m.AlertEvents(r.Context(), name, limit)
	if err != nil {
		return err
	}
	return reply(w, http.StatusOK, newPage(evs, len(evs), 0, limit))
}

func (s *Server) handleAlertEvaluate(w http.ResponseWriter, r *http.Request, m *monitor.Service, name string) error {
	rules, err := m.EvaluateAlerts(r.Context(), name)
	return replyAll(w, rules, err)
}
