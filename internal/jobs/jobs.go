// Package jobs is being built; see docs/architecture.md.
package jobs

// Service is the jobs service.
type Service struct{}
