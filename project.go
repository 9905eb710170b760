package slipway

import (
	"context"
	"maps"
	"slices"
	"time"
)

// DefaultProject is the project that exists from the start: calls that name no project work in it, and the
// data of an installation older than projects was moved into it.
const DefaultProject = "default"

// ProjectHeader is the HTTP header that names the project a call works in.
const ProjectHeader = "Slipway-Project"

// Project is a namespace of models, deployments, jobs, pipelines, schedules, batch predictions and files.
// Tokens may be limited to some projects; what is in another project answers 404 to them.
type Project struct {
	Name        string    `json:"name"`
	Description string    `json:"description,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	CreatedBy   string    `json:"created_by,omitempty"`
}

// ProjectSpec is what creating a project takes.
type ProjectSpec struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
}

// Validate checks the spec's name (the names rules of models) and bounds the description.
func (s ProjectSpec) Validate() error {
	if err := ValidateName("project", s.Name); err != nil {
		return err
	}
	if len(s.Description) > 1000 {
		return Errorf(EINVALID, "project description: %d bytes, at most 1000", len(s.Description))
	}
	return nil
}

// ProjectStore keeps the projects and says which project owns a resource.
type ProjectStore interface {
	CreateProject(ctx context.Context, p *Project) error
	FindProject(ctx context.Context, name string) (*Project, error)
	FindProjects(ctx context.Context) ([]*Project, error)
	// ResourceProject is the project of the resource of kind (see ResourceKinds) named key; ENOTFOUND when
	// there is none.
	ResourceProject(ctx context.Context, kind, key string) (string, error)
}

// The kinds of resources that belong to a project, as ResourceProject takes them.
const (
	KindModel        = "model"
	KindDeployment   = "deployment"
	KindJob          = "job"
	KindJobRun       = "job run"
	KindPipeline     = "pipeline"
	KindPipelineRun  = "pipeline run"
	KindSchedule     = "schedule"
	KindBatch        = "batch prediction"
	KindUploadedFile = "file"
)

// ResourceKinds lists every kind of project-owned resource.
var ResourceKinds = []string{KindModel, KindDeployment, KindJob, KindJobRun, KindPipeline, KindPipelineRun,
	KindSchedule, KindBatch, KindUploadedFile}

type projectKey struct{}

// WithProject returns ctx scoped to a project: the store's reads of project-owned resources see only that
// project's (another project's answer ENOTFOUND), and what is created is created in it. A context without a
// project (the server's own work: restores, schedules, alert evaluation) sees everything and creates in
// DefaultProject.
func WithProject(ctx context.Context, project string) context.Context {
	return context.WithValue(ctx, projectKey{}, project)
}

// ProjectFromContext is the project ctx is scoped to, if any.
func ProjectFromContext(ctx context.Context) (string, bool) {
	p, ok := ctx.Value(projectKey{}).(string)
	return p, ok && p != ""
}

// ProjectForCreate is the project a resource created under ctx belongs to.
func ProjectForCreate(ctx context.Context) string {
	if p, ok := ProjectFromContext(ctx); ok {
		return p
	}
	return DefaultProject
}

// Scoped reports whether t is limited to some projects (no global role).
func (t *Token) Scoped() bool { return t.Role == "" && len(t.Projects) > 0 }

// RoleIn is t's role in project: its global role, else its role for that project ("" for none).
func (t *Token) RoleIn(project string) Role {
	if t.Role != "" {
		return t.Role
	}
	return t.Projects[project]
}

// DefaultProjectOf is the project a call with t works in when it names none: a token's only project, else
// DefaultProject.
func (t *Token) DefaultProjectOf() string {
	if t.Role == "" && len(t.Projects) == 1 {
		for p := range t.Projects {
			return p
		}
	}
	return DefaultProject
}

// ValidateAccess checks a token spec's role and projects: exactly one of a global role and per-project roles.
func (s TokenSpec) ValidateAccess() error {
	switch {
	case s.Role != "" && len(s.Projects) > 0:
		return Errorf(EINVALID, "give a global role or per-project roles (projects), not both")
	case s.Role == "" && len(s.Projects) == 0:
		return Errorf(EINVALID, "a token needs a role (admin, editor, viewer, predict) or per-project roles: {\"projects\": {\"risk\": \"editor\"}}")
	case s.Role != "" && !s.Role.Valid():
		return Errorf(EINVALID, "invalid role %q: use admin, editor, viewer or predict", s.Role)
	}
	if len(s.Projects) > 100 {
		return Errorf(EINVALID, "a token may name at most 100 projects, got %d", len(s.Projects))
	}
	for _, p := range slices.Sorted(maps.Keys(s.Projects)) {
		if err := ValidateName("project", p); err != nil {
			return err
		}
		switch r := s.Projects[p]; r {
		case RoleEditor, RoleViewer, RolePredict:
		case RoleAdmin:
			return Errorf(EINVALID, "project %q: admin is a global role (it manages tokens and projects): give \"role\": \"admin\" instead", p)
		default:
			return Errorf(EINVALID, "project %q: invalid role %q: use editor, viewer or predict", p, r)
		}
	}
	return nil
}
