// Package monitor is being built; see docs/architecture.md.
package monitor

// Service is the monitor service.
type Service struct{}
