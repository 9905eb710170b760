// Package httpapi is Slipway's REST API under /api/v1: one route table, one problem writer, bearer-token auth
// by role, and the OpenAPI document that describes every route.
package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/audit"
	"github.com/slipway-ml/slipway/internal/batch"
	"github.com/slipway-ml/slipway/internal/catalog"
	"github.com/slipway-ml/slipway/internal/deploy"
	"github.com/slipway-ml/slipway/internal/jobs"
	"github.com/slipway-ml/slipway/internal/monitor"
	"github.com/slipway-ml/slipway/internal/replay"
	"github.com/slipway-ml/slipway/internal/rollout"
	"github.com/slipway-ml/slipway/internal/serving"
)

// Config wires the API server.
type Config struct {
	Tokens         slipway.TokenStore
	Projects       slipway.ProjectStore // nil: no projects (every call in default, nothing scoped)
	Catalog        *catalog.Service
	Deployments    *deploy.Service
	Monitor        *monitor.Service
	Jobs           *jobs.Service
	Batch          *batch.Service
	Log            *slog.Logger
	Ready          func(context.Context) error              // readiness probe (database reachable)
	MaxUploadBytes int64                                    // artifact upload cap
	TempDir        string                                   // where uploads are spooled (same filesystem as the blob store)
	MaxPayload     int64                                    // prediction request body cap
	UI             func(notFound http.Handler) http.Handler // the browser UI under /ui/ (nil: none); / redirects to it
	// Backup streams an online backup as a tar (nil: GET /api/v1/backup answers 404).
	Backup func(ctx context.Context, w io.Writer, withMonitor bool) error
	// PayloadReadTimeout and WriteTimeout bound how long a prediction's body may take to arrive and its answer
	// to be written (0: no limit); the rest of the API has no such limit (uploads, downloads and streams are long).
	PayloadReadTimeout, WriteTimeout time.Duration
	// Audit records state-changing and refused calls (nil: no audit log).
	Audit *audit.Service
	// MaxTokenTTL caps the lifetime of tokens created through the API (0: no cap); a token created without
	// a lifetime gets this one.
	MaxTokenTTL time.Duration
	// Hosts, with several servers on one database, says which server hosts a deployment: calls about it are
	// forwarded there (forward.go), each bounded by ForwardTimeout (default 2 min). Nil: one server.
	Hosts          Hosts
	ForwardTimeout time.Duration
	// Rollouts drives gated rollouts (nil: their routes answer 503).
	Rollouts *rollout.Service
	// PythonEnvironments describes the server's Python environments (nil: none are listed).
	PythonEnvironments func(context.Context) []slipway.PythonEnvironment
	// Replays sends captured requests to candidate versions (nil: their routes answer 503).
	Replays *replay.Service
}

// Server serves the API.
type Server struct {
	tokens      slipway.TokenStore
	auth        *authenticator
	catalog     *catalog.Service
	deployments *deploy.Service
	routers     *serving.Routers // the serving deployments' routers (the prediction hot path)
	monitor     *monitor.Service
	jobs        *jobs.Service
	batch       *batch.Service
	maxPayload  int64
	readBy      time.Duration // prediction body read deadline (Config.PayloadReadTimeout)
	writeBy     time.Duration // prediction answer write deadline (Config.WriteTimeout)
	maxTokenTTL time.Duration
	audit       *audit.Service
	limiter     *rateLimiter
	actions     map[string]string // route pattern → OpenAPI operationId: the audit log's action names
	log         *slog.Logger
	ready       func(context.Context) error
	maxUp       int64
	backup      func(ctx context.Context, w io.Writer, withMonitor bool) error
	tempDir     string
	mux         *http.ServeMux
	routes      []route
	fwd         *forwarder // nil: one server, nothing is forwarded
	rollouts    *rollout.Service
	pythonEnvs  func(context.Context) []slipway.PythonEnvironment
	replays     *replay.Service

	// Projects (project.go): the store, and caches of which projects exist and which project a deployment is in.
	projects      slipway.ProjectStore
	knownProjects projectCache
	owners        ownerCache
}

// route is one line of the API table: pattern, handler and the role it needs ("" = public).
type route struct {
	pattern string
	handler http.HandlerFunc
	role    slipway.Role
}

// New builds the server and its route table.
func New(cfg Config) *Server {
	s := &Server{tokens: cfg.Tokens, auth: newAuthenticator(cfg.Tokens), catalog: cfg.Catalog, log: cfg.Log,
		ready: cfg.Ready, maxUp: cfg.MaxUploadBytes, tempDir: cfg.TempDir, mux: http.NewServeMux(),
		deployments: cfg.Deployments, maxPayload: cfg.MaxPayload, monitor: cfg.Monitor, jobs: cfg.Jobs, batch: cfg.Batch,
		backup: cfg.Backup, readBy: cfg.PayloadReadTimeout, writeBy: cfg.WriteTimeout, maxTokenTTL: cfg.MaxTokenTTL,
		audit: cfg.Audit, actions: operationIDs(), limiter: newRateLimiter(), rollouts: cfg.Rollouts,
		pythonEnvs: cfg.PythonEnvironments, replays: cfg.Replays}
	if cfg.Monitor != nil {
		cfg.Monitor.Registry().MustRegister(s.limiter.limited)
	}
	if cfg.Deployments != nil {
		s.routers = cfg.Deployments.Routers()
	}
	if cfg.Hosts != nil && s.routers != nil {
		s.fwd = newForwarder(s, cfg.Hosts, cfg.ForwardTimeout)
	}
	if s.maxPayload <= 0 {
		s.maxPayload = 10 << 20
	}
	s.routes = []route{
		{"GET /healthz", s.handleHealthz, ""},
		{"GET /readyz", s.handle(s.handleReadyz), ""},
		{"GET /api/v1/openapi.json", s.handleOpenAPI, ""},
		{"GET /api/v1/whoami", s.handleWhoami, roleAny},

		{"POST /api/v1/tokens", s.handle(s.handleTokenCreate), slipway.RoleAdmin},
		{"GET /api/v1/tokens", s.handle(s.handleTokenList), slipway.RoleAdmin},
		{"DELETE /api/v1/tokens/{id}", s.handle(s.handleTokenRevoke), slipway.RoleAdmin},
		{"POST /api/v1/tokens/{id}/rotate", s.handle(s.handleTokenRotate), slipway.RoleAdmin},
		{"GET /api/v1/backup", s.handle(s.handleBackup), slipway.RoleAdmin},

		{"POST /api/v1/models", s.handle(s.handleModelCreate), slipway.RoleEditor},
		{"GET /api/v1/models", s.handle(s.handleModelList), slipway.RoleViewer},
		{"GET /api/v1/models/{model}", s.handle(s.handleModelGet), slipway.RoleViewer},
		{"PATCH /api/v1/models/{model}", s.handle(s.handleModelUpdate), slipway.RoleEditor},
		{"DELETE /api/v1/models/{model}", s.handle(s.handleModelDelete), slipway.RoleEditor},

		{"POST /api/v1/models/{model}/versions", s.handle(s.handleVersionCreate), slipway.RoleEditor},
		{"GET /api/v1/models/{model}/versions", s.handle(s.handleVersionList), slipway.RoleViewer},
		{"GET /api/v1/models/{model}/versions/{version}", s.handle(s.handleVersionGet), slipway.RoleViewer},
		{"GET /api/v1/models/{model}/versions/{version}/files", s.handle(s.handleVersionFiles), slipway.RoleViewer},
		{"GET /api/v1/models/{model}/versions/{version}/artifact", s.handle(s.handleVersionArtifact), slipway.RoleViewer},

		{"GET /api/v1/models/{model}/aliases/{alias}", s.handle(s.handleAliasGet), slipway.RoleViewer},
		{"PUT /api/v1/models/{model}/aliases/{alias}", s.handle(s.handleAliasSet), slipway.RoleEditor},
		{"DELETE /api/v1/models/{model}/aliases/{alias}", s.handle(s.handleAliasDelete), slipway.RoleEditor},

		{"POST /api/v1/deployments", s.handle(s.handleDeploymentCreate), slipway.RoleEditor},
		{"GET /api/v1/deployments", s.handle(s.handleDeploymentList), slipway.RoleViewer},
		{"GET /api/v1/deployments/{name}", s.handle(s.handleDeploymentGet), slipway.RoleViewer},
		{"PATCH /api/v1/deployments/{name}", s.handle(s.handleDeploymentUpdate), slipway.RoleEditor},
		{"DELETE /api/v1/deployments/{name}", s.handle(s.handleDeploymentDelete), slipway.RoleEditor},
		{"POST /api/v1/deployments/{name}/activate", s.handle(s.handleDeploymentActivate), slipway.RoleEditor},
		{"POST /api/v1/deployments/{name}/deactivate", s.handle(s.handleDeploymentDeactivate), slipway.RoleEditor},

		{"POST /deployments/{name}/predict", s.handlePredict, slipway.RolePredict},
		{"POST /deployments/{name}/invocations", s.handleInvocations, slipway.RolePredict},

		{"GET /v2/health/live", s.handleV2Live, ""},
		{"GET /v2/health/ready", s.handleV2Ready, ""},
		{"GET /v2", s.handleV2Server, slipway.RolePredict},
		{"GET /v2/models/{name}", s.handleV2ModelMetadata, slipway.RolePredict},
		{"GET /v2/models/{name}/ready", s.handleV2ModelReady, slipway.RolePredict},
		{"POST /v2/models/{name}/infer", s.handleV2Infer, slipway.RolePredict},
		{"GET /v2/models/{name}/versions/{version}", s.handleV2ModelMetadata, slipway.RolePredict},
		{"GET /v2/models/{name}/versions/{version}/ready", s.handleV2ModelReady, slipway.RolePredict},
		{"POST /v2/models/{name}/versions/{version}/infer", s.handleV2Infer, slipway.RolePredict},
	}
	// Each feature area lists its routes in its own file (monitor.go, jobs.go, batch.go in this package).
	s.routes = append(s.routes, s.monitorRoutes()...)
	s.routes = append(s.routes, s.jobRoutes()...)
	s.routes = append(s.routes, s.batchRoutes()...)
	s.routes = append(s.routes, s.auditRoutes()...)
	s.routes = append(s.routes, s.replicaRoutes()...)
	s.routes = append(s.routes, s.shadowRoutes()...)
	s.routes = append(s.routes, s.rolloutRoutes()...)
	s.routes = append(s.routes, s.replayRoutes()...)
	s.routes = append(s.routes, s.projectRoutes()...)
	s.routes = append(s.routes, s.environmentRoutes()...)
	s.projects = cfg.Projects
	for _, rt := range s.routes {
		h := rt.handler
		if s.fwd != nil && forwardable(rt.pattern) {
			h = s.forwarding(h)
		}
		audited := s.audit != nil && changesState(rt)
		if rt.role != "" {
			h = s.requireRole(rt.role, scopeOf(rt.pattern), h, !audited)
		}
		if audited {
			h = s.audited(rt, h)
		}
		s.mux.HandleFunc(rt.pattern, h)
	}
	if cfg.UI != nil {
		s.mux.Handle("GET /ui/", cfg.UI(http.HandlerFunc(s.handleNotFound)))
		s.mux.Handle("GET /{$}", http.RedirectHandler("/ui/", http.StatusFound))
	}
	s.mux.HandleFunc("/", s.handleNotFound)
	return s
}

// Patterns lists the registered route patterns (the OpenAPI test compares them with the document).
func (s *Server) Patterns() []string {
	out := make([]string, len(s.routes))
	for i, r := range s.routes {
		out[i] = r.pattern
	}
	return out
}

// Handler returns the API with request ids, traces (when on), access logging and panic recovery.
func (s *Server) Handler() http.Handler {
	return s.withRequestID(s.withTrace(s.withRecover(s.mux)))
}

func (s *Server) handleNotFound(w http.ResponseWriter, r *http.Request) {
	s.problem(w, r, slipway.Errorf(slipway.ENOTFOUND, "no route for %s %s: see /api/v1/openapi.json", r.Method, r.URL.Path))
}

func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if s.ready != nil {
		if err := s.ready(ctx); err != nil {
			return slipway.Wrap(slipway.EUNAVAILABLE, err, "not ready: metadata store unreachable")
		}
	}
	return reply(w, http.StatusOK, map[string]string{"status": "ready"})
}

type ctxKey struct{}

// requestInfo is what the middleware learns about a request. One value in the context, filled in as the request
// passes through: each r.WithContext copies the whole request, which the prediction path pays per call.
type requestInfo struct {
	id      string
	token   *slipway.Token // set by requireRole
	project string         // the project the call works in, set by requireRole (project.go)
	problem string         // the problem code answered, if any (the audit log records it)
	// forwarded: the call went to the server hosting its deployment, which records it in the audit log.
	forwarded bool
	// inferHeaderLen is the JSON part's length of a V2 answer with binary outputs (0: a plain JSON answer).
	inferHeaderLen int
	// idHeader is the X-Request-Id response header's value list, allocated with the info it belongs to.
	idHeader [1]string
}

// infoContext is a request's context with its requestInfo, in one allocation (context.WithValue would allocate
// the info and the context value apart, on every request).
type infoContext struct {
	context.Context
	info requestInfo
}

func (c *infoContext) Value(key any) any {
	if _, ok := key.(ctxKey); ok {
		return &c.info
	}
	return c.Context.Value(key)
}

func infoOf(r *http.Request) *requestInfo {
	info, _ := r.Context().Value(ctxKey{}).(*requestInfo)
	if info == nil {
		return &requestInfo{}
	}
	return info
}

func requestID(r *http.Request) string { return infoOf(r).id }

// withRequestID honours a client's X-Request-Id (if sane) or makes one, and echoes it on the response.
func (s *Server) withRequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-Id")
		if id == "" || len(id) > 128 {
			id = newRequestID()
		}
		ctx := &infoContext{Context: r.Context(), info: requestInfo{id: id}}
		ctx.info.idHeader[0] = id
		// Assigned in canonical form, not through Header.Set: this runs on every request, and Set canonicalizes
		// the key and allocates the value list each time.
		w.Header()["X-Request-Id"] = ctx.info.idHeader[:]
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

func (s *Server) withRecover(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.ErrorContext(r.Context(), "panic in handler", "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
				s.problem(w, r, slipway.Errorf(slipway.EINTERNAL, "internal error"))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// newRequestID is a request's id: 32 hex digits, like newID, from the runtime's per-thread ChaCha8 generator
// (math/rand/v2) instead of crypto/rand's system call path: an id names a request in logs, traces and captures,
// where it must be unique, not secret (a client may choose its own), and every request without one pays for it.
func newRequestID() string {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], mrand.Uint64())
	binary.LittleEndian.PutUint64(b[8:], mrand.Uint64())
	return hexID(b)
}

func newID() string {
	var b [16]byte
	rand.Read(b[:])
	return hexID(b)
}

// hexID spells 16 random bytes as 32 hex digits: the form of token and request ids.
func hexID(b [16]byte) string {
	var out [32]byte
	hex.Encode(out[:], b[:])
	return string(out[:])
}
