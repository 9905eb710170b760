package jobs

import (
	"context"
	"strings"
	"testing"

	"github.com/slipway-ml/slipway"
)

// The deploy step leaves a deployment that follows the alias it moved to the alias (setting the version would
// pin it), and sets the version of any other.
func TestRollDeploymentKeepsFollowing(t *testing.T) {
	tests := []struct {
		name       string
		d          slipway.Deployment // after AliasMoved
		alias      string
		wantUpdate bool
		err        string
	}{
		{"following, rolling out", slipway.Deployment{Model: "churn", Alias: "champion", FollowAlias: true, Version: 1, State: slipway.DeploymentUpdating}, "champion", false, ""},
		{"following, rolled out", slipway.Deployment{Model: "churn", Alias: "champion", FollowAlias: true, Version: 2, State: slipway.DeploymentActive}, "champion", false, ""},
		{"following, not moved", slipway.Deployment{Model: "churn", Alias: "champion", FollowAlias: true, Version: 1, State: slipway.DeploymentInactive}, "champion", false, "follows @champion but did not roll out to version 2"},
		{"pinned", slipway.Deployment{Model: "churn", Alias: "champion", Version: 1, State: slipway.DeploymentActive}, "champion", true, ""},
		{"following another alias", slipway.Deployment{Model: "churn", Alias: "staging", FollowAlias: true, Version: 1, State: slipway.DeploymentActive}, "champion", true, ""},
		{"no alias moved", slipway.Deployment{Model: "churn", Alias: "champion", FollowAlias: true, Version: 1, State: slipway.DeploymentActive}, "", true, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			updated := false
			s := &Service{cfg: Config{Deployer: Deployer{
				Get: func(context.Context, string) (*slipway.Deployment, error) { d := tc.d; return &d, nil },
				Update: func(_ context.Context, _ string, version int) (*slipway.Deployment, error) {
					updated = version == 2
					return &slipway.Deployment{}, nil
				},
			}}}
			err := s.rollDeployment(context.Background(), "api", "churn", tc.alias, 2)
			if updated != tc.wantUpdate || tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("updated %v, err %v; want updated %v, err %q", updated, err, tc.wantUpdate, tc.err)
			}
		})
	}
}
