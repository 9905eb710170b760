package httpapi

import (
	"strings"
	"testing"

	"github.com/slipway-ml/slipway"
)

// notProjectOwned are the routes with a path parameter that names no project-owned resource: tokens and
// projects are the installation's.
var notProjectOwned = []string{"/api/v1/tokens/{id}", "/api/v1/projects/{project}"}

// Every route whose path names something must be scoped to a project (its resource is checked before the
// handler runs) or be known not to be a project's: a new route under a new path fails here until someone
// decides (add its prefix to ownedPrefixes, or it to notProjectOwned).
func TestEveryRouteWithAPathParameterIsScoped(t *testing.T) {
	for _, rt := range New(Config{}).routes {
		_, path, _ := strings.Cut(rt.pattern, " ")
		if !strings.Contains(path, "{") {
			continue
		}
		sc := scopeOf(rt.pattern)
		known := false
		for _, p := range notProjectOwned {
			known = known || path == p || strings.HasPrefix(path, p+"/")
		}
		switch {
		case sc.kind == "" && !known:
			t.Errorf("%s names a resource but is not scoped to a project: add its prefix to ownedPrefixes (project.go)", rt.pattern)
		case sc.kind != "" && !strings.Contains(path, "{"+sc.param+"}"):
			t.Errorf("%s: scoped by {%s}, which it does not have", rt.pattern, sc.param)
		}
	}
}

func TestScopeOf(t *testing.T) {
	for pattern, want := range map[string]routeScope{
		"GET /api/v1/models/{model}/versions/{version}":   {kind: slipway.KindModel, param: "model"},
		"POST /deployments/{name}/predict":                {kind: slipway.KindDeployment, param: "name"},
		"POST /v2/models/{name}/versions/{version}/infer": {kind: slipway.KindDeployment, param: "name"},
		"GET /api/v1/job-runs/{id}/logs":                  {kind: slipway.KindJobRun, param: "id"},
		"GET /api/v1/models":                              {},
		"GET /metrics":                                    {global: true},
		"GET /api/v1/modelsx/{model}":                     {},
	} {
		if got := scopeOf(pattern); got != want {
			t.Errorf("scopeOf(%q) = %+v, want %+v", pattern, got, want)
		}
	}
}

func TestTokenProjectRoles(t *testing.T) {
	scoped := &slipway.Token{Name: "t", Projects: map[string]slipway.Role{"risk": slipway.RoleEditor}}
	global := &slipway.Token{Name: "g", Role: slipway.RoleViewer}
	if !scoped.Scoped() || global.Scoped() {
		t.Fatal("Scoped")
	}
	if scoped.RoleIn("risk") != slipway.RoleEditor || scoped.RoleIn("growth") != "" || global.RoleIn("growth") != slipway.RoleViewer {
		t.Error("RoleIn")
	}
	if scoped.DefaultProjectOf() != "risk" || global.DefaultProjectOf() != slipway.DefaultProject {
		t.Error("DefaultProjectOf")
	}
	for _, bad := range []slipway.TokenSpec{
		{}, {Role: "root"}, {Role: slipway.RoleEditor, Projects: map[string]slipway.Role{"risk": slipway.RoleEditor}},
		{Projects: map[string]slipway.Role{"risk": slipway.RoleAdmin}}, {Projects: map[string]slipway.Role{"Risk!": slipway.RoleViewer}},
		{Projects: map[string]slipway.Role{"risk": "owner"}},
	} {
		if bad.ValidateAccess() == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}
