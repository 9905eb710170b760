package deploy

import (
	"context"
	"strings"
	"testing"

	"github.com/slipway-ml/slipway"
)

func TestApplyAndValidateCanary(t *testing.T) {
	base := func() *slipway.Deployment {
		return &slipway.Deployment{Name: "churn", Model: "churn", Version: 1, Replicas: 1, TimeoutMS: 1000, MaxQueue: 10,
			Canary: &slipway.Canary{Version: 2, Weight: 10, Replicas: 2}}
	}
	tests := []struct {
		name string
		spec *slipway.Canary
		want *slipway.Canary // after apply
		err  string          // from validate
	}{
		{"no canary field leaves it", nil, &slipway.Canary{Version: 2, Weight: 10, Replicas: 2}, ""},
		{"weight 0 removes it", &slipway.Canary{}, nil, ""},
		{"weight 0 with a version removes nothing", &slipway.Canary{Version: 3}, &slipway.Canary{Version: 3, Replicas: 1}, "canary weight must be 1-99"},
		{"replicas default to 1", &slipway.Canary{Version: 3, Weight: 25}, &slipway.Canary{Version: 3, Weight: 25, Replicas: 1}, ""},
		{"weight 100", &slipway.Canary{Version: 3, Weight: 100}, &slipway.Canary{Version: 3, Weight: 100, Replicas: 1}, "canary weight must be 1-99"},
		{"no version", &slipway.Canary{Weight: 5}, &slipway.Canary{Weight: 5, Replicas: 1}, "canary needs a version"},
		{"too many replicas", &slipway.Canary{Version: 3, Weight: 5, Replicas: 65}, &slipway.Canary{Version: 3, Weight: 5, Replicas: 65}, "canary replicas must be 1-64"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := base()
			apply(d, slipway.DeploymentSpec{Canary: tc.spec})
			if (d.Canary == nil) != (tc.want == nil) || d.Canary != nil && *d.Canary != *tc.want {
				t.Fatalf("canary after apply: %+v, want %+v", d.Canary, tc.want)
			}
			err := d.Validate()
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("validate: %v, want %q", err, tc.err)
			}
		})
	}
}

func TestApplyFollowAliasDefault(t *testing.T) {
	analysed := &slipway.Canary{Version: 2, Weight: 10, Analysis: &slipway.CanaryAnalysis{}}
	defaults := slipway.CanaryAnalysis{}.WithDefaults()
	storedAnalysed := &slipway.Canary{Version: 2, Weight: 10, Replicas: 1, Analysis: &defaults}
	tests := []struct {
		name       string
		stored     slipway.Deployment // before apply: the zero value is a new deployment
		spec       slipway.DeploymentSpec
		wantAlias  string
		wantFollow bool
		err        string // from validate
	}{
		{name: "an alias follows by default", spec: slipway.DeploymentSpec{Alias: new("@champion")},
			wantAlias: "champion", wantFollow: true},
		{name: "follow_alias false pins", spec: slipway.DeploymentSpec{Alias: new("champion"), FollowAlias: new(false)},
			wantAlias: "champion"},
		{name: "canary analysis pins instead of failing", spec: slipway.DeploymentSpec{Alias: new("champion"), Canary: analysed},
			wantAlias: "champion"},
		{name: "canary analysis and an explicit follow_alias are refused",
			spec:      slipway.DeploymentSpec{Alias: new("champion"), FollowAlias: new(true), Canary: analysed},
			wantAlias: "champion", wantFollow: true, err: "promote by moving the alias, or drop follow_alias"},
		{name: "an alias given to a deployment with an analysed canary pins",
			stored: slipway.Deployment{Version: 1, Canary: storedAnalysed}, spec: slipway.DeploymentSpec{Alias: new("champion")},
			wantAlias: "champion"},
		{name: "a stored pinned deployment stays pinned", stored: slipway.Deployment{Version: 1, Alias: "champion"},
			spec: slipway.DeploymentSpec{Replicas: new(2)}, wantAlias: "champion"},
		{name: "a stored following deployment keeps following", stored: slipway.Deployment{Version: 1, Alias: "champion", FollowAlias: true},
			spec: slipway.DeploymentSpec{Replicas: new(2)}, wantAlias: "champion", wantFollow: true},
		{name: "a version pins and forgets the alias", stored: slipway.Deployment{Version: 1, Alias: "champion", FollowAlias: true},
			spec: slipway.DeploymentSpec{Version: new(3)}},
		{name: "no alias, no following", spec: slipway.DeploymentSpec{Version: new(3)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.stored
			d.Name, d.Model, d.Replicas, d.TimeoutMS, d.MaxQueue = "churn", "churn", 1, 1000, 10
			apply(&d, tc.spec)
			if d.Alias != tc.wantAlias || d.FollowAlias != tc.wantFollow {
				t.Fatalf("after apply: alias %q, follow_alias %v; want %q, %v", d.Alias, d.FollowAlias, tc.wantAlias, tc.wantFollow)
			}
			err := d.Validate()
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("validate: %v, want %q", err, tc.err)
			}
		})
	}
}

// aliasModels is a model store with READY versions 1 and 2 of churn, and @champion on 2.
type aliasModels struct{ slipway.ModelStore }

func (aliasModels) FindVersion(_ context.Context, model string, ref slipway.VersionRef) (*slipway.ModelVersion, error) {
	n := ref.Number
	switch ref.Alias {
	case "":
	case "champion", "latest":
		n = 2
	default:
		return nil, slipway.Errorf(slipway.ENOTFOUND, "no alias %s", ref.Alias)
	}
	return &slipway.ModelVersion{Model: model, Version: n, State: slipway.VersionReady}, nil
}

// After @champion moved from 1 to 2: a pinned deployment stays on 1 when it is updated, activated or
// restored, a following one goes to 2, and naming the alias again resolves it.
func TestResolveAliasOnlyWhenFollowedOrNamed(t *testing.T) {
	s := &Service{models: aliasModels{}}
	ctx := context.Background()
	tests := []struct {
		name    string
		d       slipway.Deployment
		byAlias bool
		want    int
	}{
		{"pinned", slipway.Deployment{Version: 1, Alias: "champion"}, false, 1},
		{"pinned, the alias named again", slipway.Deployment{Version: 1, Alias: "champion"}, true, 2},
		{"following", slipway.Deployment{Version: 1, Alias: "champion", FollowAlias: true}, false, 2},
		{"a version", slipway.Deployment{Version: 1}, false, 1},
		{"nothing: the newest", slipway.Deployment{}, false, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.d
			d.Name, d.Model = "churn", "churn"
			v, err := s.resolve(ctx, &d, tc.byAlias)
			if err != nil || v.Version != tc.want || d.Version != tc.want {
				t.Fatalf("resolve: version %v (recorded %d), %v; want %d", v, d.Version, err, tc.want)
			}
		})
	}
}
