package httpapi

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/url"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/inference/inferencepb"
)

// gRPC calls about a deployment another server hosts (ModelInfer, ModelReady, ModelMetadata) are forwarded to
// that server's gRPC address (recorded beside its advertise URL), as HTTP calls are (forward.go): this server
// admits the call first (token, role, rate limit), then sends it on with the caller's metadata (its
// "authorization" is checked again by the host, against the same database) and request id, marked with
// forwardedByMetadata so that it is never forwarded again. The host's answer, headers and trailers come back
// as they are.

// forwardedByMetadata is ForwardedByHeader as gRPC metadata (keys are lower case).
const forwardedByMetadata = "slipway-forwarded-by"

// grpcConns keeps one client connection per host address (gRPC multiplexes calls over it).
type grpcConns struct {
	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

// conn returns the connection to a gRPC address (grpc://HOST:PORT or grpcs://HOST:PORT), dialled lazily.
func (g *grpcConns) conn(address string) (*grpc.ClientConn, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if c := g.conns[address]; c != nil {
		return c, nil
	}
	u, err := url.Parse(address)
	if err != nil || u.Host == "" || (u.Scheme != "grpc" && u.Scheme != "grpcs") {
		return nil, fmt.Errorf("gRPC address %q: want grpc://HOST:PORT or grpcs://HOST:PORT", address)
	}
	creds := insecure.NewCredentials()
	if u.Scheme == "grpcs" { // the system's certificate authorities, as the HTTP forwarding client trusts
		creds = credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12})
	}
	c, err := grpc.NewClient(u.Host, grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1<<31-1), grpc.MaxCallSendMsgSize(1<<31-1)))
	if err != nil {
		return nil, fmt.Errorf("gRPC address %q: %w", address, err)
	}
	if g.conns == nil {
		g.conns = map[string]*grpc.ClientConn{}
	}
	if len(g.conns) > 1000 { // addresses come from the servers table: a bound, not a cache policy
		for a, old := range g.conns {
			_ = old.Close() // an idle connection to a server long gone; calls in flight on it fail and are retried by clients
			delete(g.conns, a)
		}
	}
	g.conns[address] = c
	return c, nil
}

// CloseForwarding closes the connections to the other servers' gRPC services (the server stops).
func (s *Server) CloseForwarding() {
	if s.fwd != nil {
		s.fwd.grpc.close()
	}
}

// close closes every connection.
func (g *grpcConns) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for a, c := range g.conns {
		_ = c.Close() // nothing to do about a connection that fails to close while the server stops
		delete(g.conns, a)
	}
}

// grpcForward forwards a call about deployment to its host when another server hosts it: ok is false when
// the call is answered here (this server hosts it, nobody does, one server only, or the call was forwarded
// already). call makes the call on the host's connection with the context it is given.
func grpcForward[T any](ctx context.Context, s *Server, deployment string, call func(context.Context, inferencepb.GRPCInferenceServiceClient, ...grpc.CallOption) (T, error)) (res T, ok bool, err error) {
	if s.fwd == nil || s.routers.Get(deployment) != nil || slipway.ValidateName("deployment", deployment) != nil {
		return res, false, nil
	}
	in, _ := metadata.FromIncomingContext(ctx)
	if len(in.Get(forwardedByMetadata)) > 0 {
		return res, false, nil
	}
	e, err := s.fwd.host(ctx, deployment)
	if err != nil {
		return res, true, slipway.Wrap(slipway.EUNAVAILABLE, err, "find the server hosting deployment %s", deployment)
	}
	if !e.ok {
		return res, false, nil
	}
	if e.grpc == "" {
		return res, true, slipway.Errorf(slipway.EUNAVAILABLE, "deployment %s is served by server %s (%s), which has no gRPC service "+
			"(no --grpc-addr): call it over HTTP, %s/v2/models/%s/infer through any server", deployment, e.server, e.url, e.url, deployment)
	}
	conn, err := s.fwd.grpc.conn(e.grpc)
	if err != nil {
		return res, true, slipway.Wrap(slipway.EUNAVAILABLE, err, "deployment %s is hosted by server %s, whose gRPC address is unusable: %v (fix its --advertise-grpc)", deployment, e.server, err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.fwd.timeout)
	defer cancel()
	out := metadata.MD{}
	for k, v := range in {
		if !strings.HasPrefix(k, ":") && !strings.HasPrefix(k, "grpc-") && k != "content-type" && k != "user-agent" && k != "te" {
			out[k] = v
		}
	}
	out.Set(forwardedByMetadata, s.fwd.hosts.ServerID())
	out.Set("x-request-id", infoOfContext(ctx).id) // the host logs and answers under the same id
	var header, trailer metadata.MD
	res, err = call(metadata.NewOutgoingContext(ctx, out), inferencepb.NewGRPCInferenceServiceClient(conn), grpc.Header(&header), grpc.Trailer(&trailer))
	header.Delete("x-request-id")     // already set on our answer, with the same value
	_ = grpc.SetHeader(ctx, header)   // fails only once headers are out: none are yet
	_ = grpc.SetTrailer(ctx, trailer) // fails only after the call's end
	if st, isStatus := status.FromError(err); err != nil && isStatus && st.Code() == codes.Unavailable && len(header) == 0 {
		// No answer from the host at all (its headers never came): say which server did not answer.
		if s.fwd.forget(deployment) {
			s.log.WarnContext(ctx, "gRPC forward to the deployment's server failed", "deployment", deployment, "server", e.server,
				"grpc_address", e.grpc, "request_id", infoOfContext(ctx).id, "error", err, "note", "logged once a second at most")
		}
		return res, true, status.Errorf(codes.Unavailable, "deployment %s is hosted by server %s (%s), which did not answer: %s; "+
			"retry shortly (if that server is down, another one takes the deployment over within the lease TTL)", deployment, e.server, e.grpc, st.Message())
	}
	return res, true, err
}
