package app

import (
	"context"
	"os"
	"time"

	"github.com/slipway-ml/slipway/internal/audit"
)

// openAudit starts the audit log's writer (refusals queued off the request path, retention) and records the
// server's start with its configuration, secrets redacted. Its closer records the stop and then stops the
// writer, which writes what is still queued.
func (a *App) openAudit() error {
	a.audit = audit.New(a.db, a.log, a.cfg.AuditRetention)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	host, _ := os.Hostname()
	if err := a.audit.Event(ctx, "server.start", map[string]any{"host": host, "pid": os.Getpid(), "config": a.cfg.Redacted()}); err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { // owned by the App: stopped by the closer below
		defer close(done)
		a.audit.Run(runCtx)
	}()
	a.closers = append(a.closers, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := a.audit.Event(ctx, "server.stop", map[string]any{"pid": os.Getpid()})
		stop()
		<-done
		return err
	})
	return nil
}
