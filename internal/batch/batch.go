// Package batch is being built; see docs/architecture.md.
package batch

// Service is the batch service.
type Service struct{}
