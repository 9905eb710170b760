package app

import (
	"context"
	"fmt"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// grpcListener serves the Open Inference Protocol over gRPC on --grpc-addr. Run owns it: start before the
// HTTP server announces itself, stop when the HTTP server shuts down.
type grpcListener struct {
	srv  *grpc.Server
	addr string
	errc chan error // Serve's result
}

// startGRPC listens on --grpc-addr (nil without one), in TLS with the HTTP server's certificate when it has
// one (certs, reloaded on SIGHUP for both).
func (a *App) startGRPC(certs *certReloader) (*grpcListener, error) {
	if a.cfg.GRPCAddr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", a.cfg.GRPCAddr)
	if err != nil {
		return nil, fmt.Errorf("gRPC listener on %s (--grpc-addr): %w", a.cfg.GRPCAddr, err)
	}
	ln = limitPerClient(ln, a.cfg.MaxConnsPerClient, a.connRefusalLogger())
	// The HTTP server's header limit bounds a call's metadata too (gRPC's default is 16 MiB).
	opts := append(a.api.GRPCOptions(), grpc.MaxHeaderListSize(uint32(a.cfg.MaxHeaderBytes)))
	if certs != nil {
		cfg := certs.tlsConfig()
		cfg.NextProtos = []string{"h2"} // gRPC is HTTP/2 only
		opts = append(opts, grpc.Creds(credentials.NewTLS(cfg)))
	}
	g := &grpcListener{srv: grpc.NewServer(opts...), addr: ln.Addr().String(), errc: make(chan error, 1)}
	a.api.RegisterGRPC(g.srv)
	go func() { g.errc <- g.srv.Serve(ln) }() // owned by g: ends when stop closes the listener
	a.log.Info("gRPC listening", "grpc_addr", g.addr, "tls", certs != nil)
	return g, nil
}

// address is where the gRPC service listens, as a gRPC address for the servers table: grpc://HOST:PORT, or
// grpcs://HOST:PORT with TLS ("" without --grpc-addr).
func (g *grpcListener) address(tls bool) string {
	if g == nil {
		return ""
	}
	if tls {
		return "grpcs://" + g.addr
	}
	return "grpc://" + g.addr
}

// stop lets calls in flight finish, as http.Server.Shutdown does, and cuts them when ctx ends first.
func (g *grpcListener) stop(ctx context.Context) error {
	if g == nil {
		return nil
	}
	done := make(chan struct{})
	go func() { g.srv.GracefulStop(); close(done) }() // ends at the latest when Stop below closes every connection
	select {
	case <-done:
	case <-ctx.Done():
		g.srv.Stop()
		<-done
	}
	return <-g.errc // nil once stopped: Serve returns nil after Stop and GracefulStop
}

// failed delivers Serve's error if it returns while serving (never without a listener).
func (g *grpcListener) failed() <-chan error {
	if g == nil {
		return nil
	}
	return g.errc
}

// stopNow closes the listener and every connection at once; after stop, it does nothing.
func (g *grpcListener) stopNow() {
	if g != nil {
		g.srv.Stop()
	}
}
