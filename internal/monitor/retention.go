package monitor

import (
	"context"

	"github.com/slipway-ml/slipway"
)

// prune applies every deployment's retention (captures, feedback, logs) and the metrics retention.
func (s *Service) prune(ctx context.Context) {
	now := s.now()
	ds, err := s.cfg.Deployments.FindDeployments(ctx)
	if err != nil {
		s.log.Error("retention: list deployments", "error", err)
		return
	}
	var deleted int64
	def := slipway.DefaultMonitoringSettings()
	maxCapture, maxLog := max(def.CaptureRetention.D(), s.cfg.MetricsRetention), max(def.LogRetention.D(), s.cfg.MetricsRetention)
	for _, d := range ds {
		st, err := s.Settings(ctx, d.Name)
		if err != nil {
			continue
		}
		maxCapture, maxLog = max(maxCapture, st.CaptureRetention.D()), max(maxLog, st.LogRetention.D())
		n, err := s.data.Prune(ctx, slipway.MonitoringPrune{Deployment: d.Name,
			CapturesBefore: now.Add(-st.CaptureRetention.D()), MaxCaptures: st.CaptureMaxRequests,
			LogsBefore: now.Add(-st.LogRetention.D()), MaxLogLines: st.LogMaxLines})
		if err != nil {
			s.log.Error("retention", "deployment", d.Name, "error", err)
		}
		deleted += n
	}
	// Metrics of every deployment; and the data of deleted deployments once the longest retention has passed.
	n, err := s.data.Prune(ctx, slipway.MonitoringPrune{MetricsBefore: now.Add(-s.cfg.MetricsRetention),
		CapturesBefore: now.Add(-maxCapture), LogsBefore: now.Add(-maxLog)})
	if err != nil {
		s.log.Error("retention", "error", err)
	}
	if deleted += n; deleted > 0 {
		s.log.Debug("retention pruned monitoring data", "rows", deleted)
	}
}
