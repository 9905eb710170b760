package monitor

import (
	"context"
	"time"

	"github.com/slipway-ml/slipway"
)

// PerformanceOfVersion is Performance over the requests one version answered (0: every version): a canary's
// quality apart from the live version's, with the label-free estimate of the same requests next to the truth.
func (s *Service) PerformanceOfVersion(ctx context.Context, deployment string, version int, from, to time.Time, window time.Duration) ([]*slipway.Performance, error) {
	ps, err := s.performance(ctx, deployment, version, from, to, window)
	if err != nil {
		return nil, err
	}
	return s.addEstimates(ctx, deployment, version, from, to, window, ps)
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
