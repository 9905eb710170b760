package monitor

import (
	"cmp"
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/slipway-ml/slipway"
)

// settingsEntry caches a deployment's settings for settingsTTL.
type settingsEntry struct {
	s       slipway.MonitoringSettings
	fetched time.Time
}

const settingsTTL = 10 * time.Second

// Drift methods.
const (
	MethodKS            = "ks"
	MethodWasserstein   = "wasserstein"
	MethodChiSquare     = "chisquare"
	MethodJensenShannon = "jensenshannon"
	MethodPSI           = "psi"
)

// defaultThresholds are Evidently's: p-value below 0.05 for the tests, distance at or above 0.1 for the others.
var defaultThresholds = map[string]float64{MethodKS: 0.05, MethodChiSquare: 0.05, MethodWasserstein: 0.1,
	MethodJensenShannon: 0.1, MethodPSI: 0.1}

// Settings returns a deployment's monitoring settings (the defaults when none were stored).
func (s *Service) Settings(ctx context.Context, deployment string) (slipway.MonitoringSettings, error) {
	s.settingsMu.Lock()
	e := s.settings[deployment]
	s.settingsMu.Unlock()
	if e != nil && s.now().Sub(e.fetched) < settingsTTL {
		return e.s, nil
	}
	st, err := s.store.FindSettings(ctx, deployment)
	switch {
	case slipway.ErrorCode(err) == slipway.ENOTFOUND:
		if _, err := s.cfg.Deployments.FindDeployment(ctx, deployment); err != nil {
			return slipway.MonitoringSettings{}, err
		}
		d := slipway.DefaultMonitoringSettings()
		st = &d
	case err != nil:
		return slipway.MonitoringSettings{}, err
	default:
		fillDefaults(st)
	}
	s.settingsMu.Lock()
	s.settings[deployment] = &settingsEntry{s: *st, fetched: s.now()}
	s.settingsMu.Unlock()
	return *st, nil
}

// deploymentSettings returns a deployment and its monitoring settings: what drift and performance start from.
func (s *Service) deploymentSettings(ctx context.Context, deployment string) (*slipway.Deployment, slipway.MonitoringSettings, error) {
	d, err := s.cfg.Deployments.FindDeployment(ctx, deployment)
	if err != nil {
		return nil, slipway.MonitoringSettings{}, err
	}
	st, err := s.Settings(ctx, deployment)
	return d, st, err
}

// PutSettings validates and stores a deployment's settings; unset fields take the defaults.
func (s *Service) PutSettings(ctx context.Context, deployment string, in slipway.MonitoringSettings) (slipway.MonitoringSettings, error) {
	if _, err := s.cfg.Deployments.FindDeployment(ctx, deployment); err != nil {
		return slipway.MonitoringSettings{}, err
	}
	fillDefaults(&in)
	if err := validateSettings(&in); err != nil {
		return slipway.MonitoringSettings{}, err
	}
	if err := s.store.PutSettings(ctx, deployment, &in); err != nil {
		return slipway.MonitoringSettings{}, err
	}
	s.settingsMu.Lock()
	s.settings[deployment] = &settingsEntry{s: in, fetched: s.now()}
	s.settingsMu.Unlock()
	s.state(deployment).apply(in)
	return in, nil
}

// fillDefaults gives unset fields (also fields added after the settings were stored) their default.
func fillDefaults(in *slipway.MonitoringSettings) {
	def := slipway.DefaultMonitoringSettings()
	in.CaptureRetention = cmp.Or(in.CaptureRetention, def.CaptureRetention)
	in.CaptureMaxPerSecond = cmp.Or(in.CaptureMaxPerSecond, def.CaptureMaxPerSecond)
	in.AccessLogMaxPerSecond = cmp.Or(in.AccessLogMaxPerSecond, def.AccessLogMaxPerSecond)
	in.CaptureMaxRequests = cmp.Or(in.CaptureMaxRequests, def.CaptureMaxRequests)
	in.LogRetention = cmp.Or(in.LogRetention, def.LogRetention)
	in.LogMaxLines = cmp.Or(in.LogMaxLines, def.LogMaxLines)
	in.DriftWindow = cmp.Or(in.DriftWindow, def.DriftWindow)
	in.PositiveLabel = cmp.Or(in.PositiveLabel, def.PositiveLabel)
}

func validateSettings(in *slipway.MonitoringSettings) error {
	var problems []string
	if in.SamplingRate < 0 || in.SamplingRate > 1 {
		problems = append(problems, fmt.Sprintf("sampling_rate must be from 0 to 1, got %g", in.SamplingRate))
	}
	if in.CaptureRetention.D() < time.Minute || in.LogRetention.D() < time.Minute {
		problems = append(problems, "capture_retention and log_retention must be at least 1m")
	}
	if in.CaptureMaxPerSecond < 1 || in.CaptureMaxPerSecond > 1_000_000 {
		problems = append(problems, fmt.Sprintf("capture_max_per_second must be from 1 to 1000000, got %d", in.CaptureMaxPerSecond))
	}
	if in.AccessLogMaxPerSecond < 1 || in.AccessLogMaxPerSecond > 1_000_000 {
		problems = append(problems, fmt.Sprintf("access_log_max_per_second must be from 1 to 1000000, got %d", in.AccessLogMaxPerSecond))
	}
	if in.CaptureMaxRequests < 1 || in.LogMaxLines < 1 {
		problems = append(problems, "capture_max_requests and log_max_lines must be positive")
	}
	if w := in.DriftWindow.D(); w < time.Minute || w > 31*24*time.Hour || (24*time.Hour)%w != 0 && w%(24*time.Hour) != 0 {
		problems = append(problems, fmt.Sprintf("drift_window must divide a day or be whole days, from 1m to 31 days (e.g. 15m, 1h, 24h), got %s", w))
	}
	switch in.Task {
	case "", "classification", "regression":
	default:
		problems = append(problems, fmt.Sprintf("task must be classification or regression, got %q", in.Task))
	}
	names := make([]string, 0, len(in.Features))
	for n := range in.Features {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		f := in.Features[n]
		if _, ok := defaultThresholds[f.Method]; f.Method != "" && !ok {
			problems = append(problems, fmt.Sprintf("features.%s.method %q is not one of ks, wasserstein, chisquare, jensenshannon, psi", n, f.Method))
		}
		if f.Threshold != nil && (*f.Threshold < 0 || *f.Threshold > 10) {
			problems = append(problems, fmt.Sprintf("features.%s.threshold must be from 0 to 10", n))
		}
	}
	if len(problems) > 0 {
		return invalidf("monitoring settings: %s", strings.Join(problems, "; "))
	}
	return nil
}

// modelVersion returns a version's metadata (cached: versions are immutable).
func (s *Service) modelVersion(model string, version int) (*slipway.ModelVersion, error) {
	key := baselineKey{model, version}
	s.baselineMu.Lock()
	if s.versions == nil {
		s.versions = map[baselineKey]*slipway.ModelVersion{}
	}
	v := s.versions[key]
	s.baselineMu.Unlock()
	if v != nil {
		return v, nil
	}
	v, err := s.cfg.Models.FindVersion(s.ctx, model, slipway.VersionRef{Number: version})
	if err != nil {
		return nil, err
	}
	s.baselineMu.Lock()
	s.versions[key] = v
	s.baselineMu.Unlock()
	return v, nil
}
