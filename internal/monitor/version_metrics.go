package monitor

import (
	"context"
	"time"

	"github.com/slipway-ml/slipway"
)

// PerformanceOfVersion is Performance over the requests one version answered (0: every version): a canary's
// quality apart from the live version's.
func (s *Service) PerformanceOfVersion(ctx context.Context, deployment string, version int, from, to time.Time, window time.Duration) ([]*slipway.Performance, error) {
	return s.performance(ctx, deployment, version, from, to, window)
}

// VersionFigures are version's figures in deployment since this server started.
func (s *Service) VersionFigures(deployment string, version int) slipway.VersionFigures {
	t := s.VersionTotals(deployment, version)
	f := slipway.VersionFigures{Version: version, Requests: t.Requests, Errors: t.Errors, ClientErrors: t.ClientErrors}
	if t.Served() > 0 {
		f.LatencyP50MS, f.LatencyP99MS = fptr(1000*t.LatencyQuantile(0.5)), fptr(1000*t.LatencyQuantile(0.99))
	}
	return f
}
