package app

import (
	"context"

	"github.com/slipway-ml/slipway/internal/replay"
)

// openReplays starts the driver of replays (internal/replay): it takes each RUNNING replay whose deployment
// this server hosts, starting again those a stopped server left. Its goroutine, and the replays' own, end at
// Close (the replays stay RUNNING for the next host).
func (a *App) openReplays() error {
	if a.monitorData == nil {
		return nil // no captures to replay: the routes answer 503
	}
	owner := ""
	if a.node != nil {
		owner = a.node.ID()
	}
	a.replays = replay.New(replay.Config{Store: a.db, Deployments: a.deploy, Models: a.db, Files: a.catalog,
		Runtimes: a.runtimes, Captures: a.monitorData, ReadyTimeout: a.cfg.ReadyTimeout, Owner: owner, Log: a.log,
		Hosted: func(name string) bool { return a.deploy.Routers().Get(name) != nil }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { // owned by the App: ends at Close
		defer close(done)
		a.replays.Run(ctx)
	}()
	a.closers = append(a.closers, func() error { cancel(); <-done; return nil })
	return nil
}
