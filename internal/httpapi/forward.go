package httpapi

import (
	"context"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/slipway-ml/slipway"
)

// Forwarding between servers sharing one installation. Every server answers every call; a call about a
// deployment whose replicas another server hosts (it holds the deployment's lease) is reverse-proxied there,
// with the caller's headers (its token is checked again by the host, against the same database) and request
// id. A hop header marks forwarded requests: a server never forwards one again, so a stale view of who hosts
// what answers "not serving" instead of looping.

// ForwardedByHeader names the server that forwarded a request; such a request is never forwarded again.
const ForwardedByHeader = "Slipway-Forwarded-By"

// Hosts says which other server hosts a deployment.
type Hosts interface {
	// ServerID is this server's id (sent in ForwardedByHeader).
	ServerID() string
	// Host returns the server hosting the deployment and where it is reached when it is another live server;
	// ok is false when this server or nobody hosts it.
	Host(ctx context.Context, deployment string) (h Host, ok bool, err error)
}

// Host is a server hosting a deployment, and where the other servers reach it.
type Host struct {
	Server       string
	AdvertiseURL string // its HTTP API
	GRPCAddress  string // its gRPC service: grpc://HOST:PORT or grpcs://HOST:PORT ("" when it has none)
}

// hostCacheTTL bounds how stale the forwarding view may be: a takeover is seen within it (it only saves a
// database read per forwarded request; a failed forward drops the entry at once).
const hostCacheTTL = time.Second

type forwarder struct {
	hosts   Hosts
	timeout time.Duration
	proxy   *httputil.ReverseProxy
	grpc    grpcConns // gRPC calls forwarded to the hosts' gRPC addresses (grpcforward.go)

	mu     sync.Mutex
	cache  map[string]hostEntry
	warned map[string]time.Time // last failure logged per deployment: a dead host under load fails every request
}

type hostEntry struct {
	server, url, grpc string
	ok                bool
	at                time.Time
}

type forwardKey struct{}

// forwardTarget is what the proxy's Rewrite needs of one request.
type forwardTarget struct {
	url        *url.URL
	server     string
	deployment string
}

func newForwarder(s *Server, hosts Hosts, timeout time.Duration) *forwarder {
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	f := &forwarder{hosts: hosts, timeout: timeout, cache: map[string]hostEntry{}, warned: map[string]time.Time{}}
	self := hosts.ServerID()
	f.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			t := pr.In.Context().Value(forwardKey{}).(*forwardTarget)
			pr.SetURL(t.url)
			pr.SetXForwarded()
			pr.Out.Header.Set(ForwardedByHeader, self)
			pr.Out.Header.Set("X-Request-Id", requestID(pr.In)) // the host logs and answers under the same id
		},
		Transport: &http.Transport{
			Proxy:               nil, // servers reach each other directly
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     90 * time.Second,
		},
		FlushInterval: -1, // log streams (follow) pass through as they come
		ModifyResponse: func(resp *http.Response) error {
			resp.Header.Del("X-Request-Id") // already set on our answer, with the same value
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			t := r.Context().Value(forwardKey{}).(*forwardTarget)
			if f.forget(t.deployment) {
				s.log.WarnContext(r.Context(), "forward to the deployment's server failed", "deployment", t.deployment, "server", t.server,
					"url", t.url.String(), "request_id", requestID(r), "error", err, "note", "logged once a second at most")
			}
			s.problem(w, r, slipway.Wrap(slipway.EUNAVAILABLE, err, "deployment %s is hosted by server %s (%s), which did not answer: "+
				"retry shortly (if that server is down, another server takes the deployment over once its lease expires: --lease-ttl, 15 s by default)", t.deployment, t.server, t.url.Host))
		},
	}
	return f
}

// host returns the other server hosting deployment, from a cache refreshed every hostCacheTTL.
func (f *forwarder) host(ctx context.Context, deployment string) (hostEntry, error) {
	now := time.Now()
	f.mu.Lock()
	e, hit := f.cache[deployment]
	f.mu.Unlock()
	if hit && now.Sub(e.at) < hostCacheTTL {
		return e, nil
	}
	h, ok, err := f.hosts.Host(ctx, deployment)
	if err != nil {
		return hostEntry{}, err
	}
	e = hostEntry{server: h.Server, url: h.AdvertiseURL, grpc: h.GRPCAddress, ok: ok, at: now}
	f.mu.Lock()
	if len(f.cache) > 10_000 { // names come from URLs: bound the map
		clear(f.cache)
	}
	f.cache[deployment] = e
	f.mu.Unlock()
	return e, nil
}

// forget drops the cached host of a deployment whose forward failed; it reports whether to log the failure
// (once a second per deployment).
func (f *forwarder) forget(deployment string) bool {
	now := time.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.cache, deployment)
	if now.Sub(f.warned[deployment]) < time.Second {
		return false
	}
	if len(f.warned) > 10_000 {
		clear(f.warned)
	}
	f.warned[deployment] = now
	return true
}

// forwardable says whether a route is about one deployment ({name}), and so is answered by its host.
func forwardable(pattern string) bool {
	_, path, _ := strings.Cut(pattern, " ")
	for _, prefix := range []string{"/api/v1/deployments/{name}", "/deployments/{name}/", "/v2/models/{name}"} {
		if strings.HasPrefix(path, prefix) {
			return true
		}
	}
	return false
}

// dataPlane says whether a deployment route is a prediction (or the model's metadata): a server that serves
// the deployment from its own pool (hosting it, or following another server's with the kubernetes engine)
// answers it itself. Other routes about the deployment are its host's.
func dataPlane(pattern string) bool {
	_, path, _ := strings.Cut(pattern, " ")
	return strings.HasPrefix(path, "/deployments/{name}/") || strings.HasPrefix(path, "/v2/models/{name}")
}

// ForwardedToHeader, on an answer, names the server a request was forwarded to.
const ForwardedToHeader = "Slipway-Forwarded-To"

// forwarding wraps a deployment route: served here when this server runs the deployment's replicas (the
// prediction hot path pays one map lookup) or nobody else hosts it; proxied to its host otherwise. A pool
// that follows another server's deployment (deploy.Service.Following) serves only the data plane.
func (s *Server) forwarding(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		local := s.routers.Get(name) != nil && (dataPlane(r.Pattern) || !s.deployments.Following(name))
		if r.Header.Get(ForwardedByHeader) != "" || local || slipway.ValidateName("deployment", name) != nil {
			next(w, r)
			return
		}
		e, err := s.fwd.host(r.Context(), name)
		if err != nil {
			s.problem(w, r, slipway.Wrap(slipway.EUNAVAILABLE, err, "find the server hosting deployment %s", name))
			return
		}
		if !e.ok {
			next(w, r)
			return
		}
		u, err := url.Parse(e.url)
		if err != nil || u.Host == "" {
			s.problem(w, r, slipway.Errorf(slipway.EUNAVAILABLE, "deployment %s is hosted by server %s, whose advertised URL %q is unusable: fix its --advertise-url", name, e.server, e.url))
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), s.fwd.timeout)
		defer cancel()
		ctx = context.WithValue(ctx, forwardKey{}, &forwardTarget{url: u, server: e.server, deployment: name})
		infoOf(r).forwarded = true // the host records the call in the audit log, not this server too
		w.Header().Set(ForwardedToHeader, e.server)
		s.fwd.proxy.ServeHTTP(w, r.WithContext(ctx))
	}
}
