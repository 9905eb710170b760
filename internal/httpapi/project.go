package httpapi

// Projects: every call works in one project, resolved here once, in the middleware that checks the token
// (requireRole). The project goes into the request's context, where the store reads it: lists show that
// project's resources, creations land in it, and finds of another project's resources are ENOTFOUND. On top
// of that, every route whose path names a project-owned resource (/models/{model}, /deployments/{name},
// /jobs/{job} ... and everything below them) checks the resource's owner before its handler runs, so a route
// added under one of those paths is scoped without doing anything. Another project's resources answer 404,
// never 403: their names do not leak.

import (
	"context"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/slipway-ml/slipway"
)

// routeScope is what a route's path says about projects.
type routeScope struct {
	kind, param string // the project-owned resource the path names, and its path parameter ("" = none)
	// global routes are about the whole installation (all deployments' metrics): only tokens with a global
	// role may call them.
	global bool
}

// ownedPrefixes maps path prefixes to the resource their first path parameter names. The first match wins.
var ownedPrefixes = []struct{ prefix, param, kind string }{
	{"/api/v1/models/{model}", "model", slipway.KindModel},
	{"/api/v1/deployments/{name}", "name", slipway.KindDeployment},
	{"/deployments/{name}", "name", slipway.KindDeployment},
	{"/v2/models/{name}", "name", slipway.KindDeployment}, // a V2 model is a deployment
	{"/api/v1/jobs/{job}", "job", slipway.KindJob},
	{"/api/v1/job-runs/{id}", "id", slipway.KindJobRun},
	{"/api/v1/pipelines/{pipeline}", "pipeline", slipway.KindPipeline},
	{"/api/v1/pipeline-runs/{id}", "id", slipway.KindPipelineRun},
	{"/api/v1/schedules/{schedule}", "schedule", slipway.KindSchedule},
	{"/api/v1/batch-predictions/{id}", "id", slipway.KindBatch},
	{"/api/v1/files/{id}", "id", slipway.KindUploadedFile},
}

// globalRoutes are readable only with a global role: they show every project at once.
var globalRoutes = map[string]bool{"GET /metrics": true}

func scopeOf(pattern string) routeScope {
	_, path, _ := strings.Cut(pattern, " ")
	for _, o := range ownedPrefixes {
		if path == o.prefix || strings.HasPrefix(path, o.prefix+"/") {
			return routeScope{kind: o.kind, param: o.param}
		}
	}
	return routeScope{global: globalRoutes[pattern]}
}

// admit decides whether token t may make the call r to a route needing role need, and in which project:
// it records the project in the request's info and returns the request to hand on (its context scoped to
// the project). A refusal is an error: 404 for what the token cannot see, 403 for a role too small.
func (s *Server) admit(r *http.Request, t *slipway.Token, need slipway.Role, sc routeScope) (*http.Request, error) {
	info := infoOf(r)
	info.token = t
	if need == slipway.RolePredict {
		return r, s.admitDataPlane(r, t, sc)
	}
	if sc.global && t.Scoped() {
		return r, slipway.Errorf(slipway.EFORBIDDEN, "token %q is limited to projects; %s shows every project and needs a token with a global role", t.Name, r.URL.Path)
	}
	if need == roleAny && mustNameProject(r, t) {
		return r, nil // whoami and the projects' list need no project: a token of several answers without one
	}
	project, err := s.callProject(r, t)
	if err != nil {
		return r, err
	}
	info.project = project
	// Another project's resource is 404 before any role check: a 403 would say that it exists.
	if sc.kind != "" {
		if err := s.checkOwner(r.Context(), sc, r.PathValue(sc.param), project); err != nil {
			return r, err
		}
	}
	if role := t.RoleIn(project); need != roleAny && !role.Allows(need) {
		if role == "" {
			role = "none"
		}
		return r, slipway.Errorf(slipway.EFORBIDDEN, "token %q has role %s in project %q; this needs role %s", t.Name, role, project, need)
	}
	return r.WithContext(slipway.WithProject(r.Context(), project)), nil
}

// admitDataPlane admits a prediction-plane call (predict, V2 infer and metadata, feedback). Prediction URLs
// name no project: a token may call a deployment of any project in which its role allows predictions; other
// projects' deployments do not exist for it (404). The Slipway-Project header is not needed here. Tokens with
// a global role skip the lookup, so the hot path costs them nothing more.
func (s *Server) admitDataPlane(r *http.Request, t *slipway.Token, sc routeScope) error {
	name := ""
	if sc.kind != "" {
		name = r.PathValue(sc.param)
	}
	return s.admitPrediction(r.Context(), t, sc.kind, name)
}

// admitPrediction is admitDataPlane for a call that names resource kind's name ("" for the server's
// metadata), over HTTP or gRPC.
func (s *Server) admitPrediction(ctx context.Context, t *slipway.Token, kind, name string) error {
	if !t.Scoped() {
		if !t.Role.Allows(slipway.RolePredict) {
			return slipway.Errorf(slipway.EFORBIDDEN, "token %q has role %s; this needs role %s", t.Name, t.Role, slipway.RolePredict)
		}
		return nil
	}
	if kind == "" { // the server's metadata: any project where the token may predict will do
		for _, role := range t.Projects {
			if role.Allows(slipway.RolePredict) {
				return nil
			}
		}
		return slipway.Errorf(slipway.EFORBIDDEN, "token %q may predict in none of its projects", t.Name)
	}
	project, err := s.owners.project(ctx, s.projects, kind, name)
	if slipway.ErrorCode(err) == slipway.ENOTFOUND {
		return nil // the handler answers its own 404
	} else if err != nil {
		return err
	}
	infoOfContext(ctx).project = project
	role := t.RoleIn(project)
	if role == "" {
		return notInProject(kind, name)
	}
	if !role.Allows(slipway.RolePredict) {
		return slipway.Errorf(slipway.EFORBIDDEN, "token %q has role %s in project %q; this needs role %s", t.Name, role, project, slipway.RolePredict)
	}
	return nil
}

// callProject is the project a control-plane call works in: the Slipway-Project header, else the token's
// only project, else default. A project the token may not see, or that does not exist, is 404.
func (s *Server) callProject(r *http.Request, t *slipway.Token) (string, error) {
	name := strings.TrimSpace(r.Header.Get(slipway.ProjectHeader))
	if mustNameProject(r, t) {
		return "", slipway.Errorf(slipway.EINVALID, "token %q works in several projects (%s) and default is not one of them: name one with the %s header (slipway --project NAME)",
			t.Name, strings.Join(slices.Sorted(maps.Keys(t.Projects)), ", "), slipway.ProjectHeader)
	}
	if name == "" {
		name = t.DefaultProjectOf()
	} else if err := slipway.ValidateName("project", name); err != nil {
		return "", slipway.Wrap(slipway.EINVALID, err, "header %s", slipway.ProjectHeader)
	}
	if t.Scoped() && t.Projects[name] == "" {
		return "", projectNotFound(name)
	}
	if s.projects == nil {
		return name, nil
	}
	if err := s.knownProjects.check(r.Context(), s.projects, name); err != nil {
		return "", err
	}
	return name, nil
}

// mustNameProject reports whether the call names no project while its token has no single one to default to:
// limited to several projects, default not among them.
func mustNameProject(r *http.Request, t *slipway.Token) bool {
	return t.Scoped() && len(t.Projects) > 1 && t.Projects[slipway.DefaultProject] == "" &&
		strings.TrimSpace(r.Header.Get(slipway.ProjectHeader)) == ""
}

func projectNotFound(name string) error {
	return slipway.Errorf(slipway.ENOTFOUND, "project %q not found: see slipway projects list (or GET /api/v1/projects)", name)
}

// checkOwner answers 404 when the resource named key exists in a project other than project. A resource that
// does not exist is left to the handler (which answers 404, or creates it: a first push creates its model).
func (s *Server) checkOwner(ctx context.Context, sc routeScope, key, project string) error {
	if s.projects == nil || key == "" {
		return nil
	}
	owner, err := s.projects.ResourceProject(ctx, sc.kind, key)
	switch {
	case slipway.ErrorCode(err) == slipway.ENOTFOUND:
		return nil
	case err != nil:
		return err
	case owner != project:
		return notInProject(sc.kind, key)
	}
	return nil
}

// notInProject is the answer for another project's resource: worded as the store words a missing one.
func notInProject(kind, key string) error {
	return slipway.Errorf(slipway.ENOTFOUND, "%s %q not found", kind, key)
}

// projectCache remembers, for a few seconds, which projects exist (a project is never deleted).
type projectCache struct {
	mu   sync.Mutex
	seen map[string]time.Time
}

func (c *projectCache) check(ctx context.Context, store slipway.ProjectStore, name string) error {
	c.mu.Lock()
	at, ok := c.seen[name]
	c.mu.Unlock()
	if ok && time.Since(at) < tokenCacheTTL {
		return nil
	}
	if _, err := store.FindProject(ctx, name); slipway.ErrorCode(err) == slipway.ENOTFOUND {
		return projectNotFound(name)
	} else if err != nil {
		return err
	}
	c.mu.Lock()
	if c.seen == nil || len(c.seen) > 10_000 {
		c.seen = map[string]time.Time{}
	}
	c.seen[name] = time.Now()
	c.mu.Unlock()
	return nil
}

// ownerCache remembers the project of deployments for the prediction path of project-limited tokens, for a
// few seconds (as the token cache does): deployment names are unique across the installation and a
// deployment never changes project; deleting one on this server evicts the cache.
type ownerCache struct {
	mu      sync.Mutex
	entries map[string]ownerEntry
}

type ownerEntry struct {
	project string
	fetched time.Time
}

func (c *ownerCache) project(ctx context.Context, store slipway.ProjectStore, kind, key string) (string, error) {
	if store == nil {
		return slipway.DefaultProject, nil
	}
	k := kind + "/" + key
	c.mu.Lock()
	e, ok := c.entries[k]
	c.mu.Unlock()
	if ok && time.Since(e.fetched) < tokenCacheTTL {
		return e.project, nil
	}
	p, err := store.ResourceProject(ctx, kind, key)
	if err != nil {
		return "", err
	}
	c.mu.Lock()
	if c.entries == nil || len(c.entries) > 10_000 {
		c.entries = map[string]ownerEntry{}
	}
	c.entries[k] = ownerEntry{project: p, fetched: time.Now()}
	c.mu.Unlock()
	return p, nil
}

func (c *ownerCache) evict() {
	c.mu.Lock()
	clear(c.entries)
	c.mu.Unlock()
}

// projectRoutes are the projects' routes. Creating one is for admins; every token lists and reads the
// projects it may see.
func (s *Server) projectRoutes() []route {
	return []route{
		{"POST /api/v1/projects", s.handle(s.withProjects(s.handleProjectCreate)), slipway.RoleAdmin},
		{"GET /api/v1/projects", s.handle(s.withProjects(s.handleProjectList)), roleAny},
		{"GET /api/v1/projects/{project}", s.handle(s.withProjects(s.handleProjectGet)), roleAny},
	}
}

func (s *Server) withProjects(h apiHandler) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		if s.projects == nil {
			return slipway.Errorf(slipway.ENOTFOUND, "this server has no projects")
		}
		return h(w, r)
	}
}

func (s *Server) handleProjectCreate(w http.ResponseWriter, r *http.Request) error {
	var in slipway.ProjectSpec
	if err := decodeJSON(w, r, &in, 64<<10); err != nil {
		return err
	}
	if err := in.Validate(); err != nil {
		return err
	}
	p := &slipway.Project{Name: in.Name, Description: in.Description, CreatedBy: actor(r)}
	if err := s.projects.CreateProject(r.Context(), p); err != nil {
		return err
	}
	return replyCreated(w, "/api/v1/projects/"+p.Name, p)
}

// visible reports whether t may see project.
func visible(t *slipway.Token, project string) bool {
	return !t.Scoped() || t.Projects[project] != ""
}

func (s *Server) handleProjectList(w http.ResponseWriter, r *http.Request) error {
	all, err := s.projects.FindProjects(r.Context())
	if err != nil {
		return err
	}
	out := []*slipway.Project{}
	for _, p := range all {
		if visible(tokenOf(r), p.Name) {
			out = append(out, p)
		}
	}
	return replyAll(w, out, nil)
}

func (s *Server) handleProjectGet(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("project")
	if !visible(tokenOf(r), name) {
		return projectNotFound(name)
	}
	p, err := s.projects.FindProject(r.Context(), name)
	if slipway.ErrorCode(err) == slipway.ENOTFOUND {
		return projectNotFound(name)
	}
	return replyOK(w, p, err)
}
