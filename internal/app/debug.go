package app

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"time"
)

// Sampling rates of the contention profiles served with pprof: one mutex contention event in
// debugMutexFraction, and blocking events of about debugBlockRateNanos and longer. They cost a little on
// every contended lock and channel wait, so they are set only when the debug listener is on.
const (
	debugMutexFraction  = 100
	debugBlockRateNanos = 10_000
)

// serveDebug serves pprof on its own listener (never on the API address) until ctx ends, with the mutex and
// block profiles switched on.
func (a *App) serveDebug(ctx context.Context) error {
	if a.cfg.DebugAddr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", a.cfg.DebugAddr)
	if err != nil {
		return err
	}
	runtime.SetMutexProfileFraction(debugMutexFraction)
	runtime.SetBlockProfileRate(debugBlockRateNanos)
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { // owned by Run: ends when ctx does
		<-ctx.Done()
		_ = srv.Close() // shutting down: a profiling listener that fails to close changes nothing
	}()
	go func() { // owned by Run: ends when srv is closed
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("debug listener", "error", err)
		}
	}()
	a.log.Info("pprof listening", "addr", "http://"+ln.Addr().String()+"/debug/pprof/")
	return nil
}
