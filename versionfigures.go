package slipway

// VersionFigures are one version's request counts on a server since it started (GET .../metrics?version=):
// the per-version counts live in memory, the stored minute points are the deployment's.
type VersionFigures struct {
	Version      int      `json:"version"`
	Requests     int64    `json:"requests"`
	Errors       int64    `json:"status_5xx"`
	ClientErrors int64    `json:"status_4xx"`
	LatencyP50MS *float64 `json:"latency_p50_ms"`
	LatencyP99MS *float64 `json:"latency_p99_ms"`
}
