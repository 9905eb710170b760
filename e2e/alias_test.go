package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
)

// The README's loop: a deployment made by MODEL@ALIAS, through the CLI or the API with just "alias", follows
// the alias when a pipeline's deploy step moves it; one pinned (--no-follow, follow_alias false, or canary
// analysis without --follow-alias) stays on its version, through a deactivate and activate too. The CLI
// says which is which.
func TestAliasDeploymentsFollowByDefault(t *testing.T) {
	t.Parallel()
	s := startServer(t, "")
	c := s.Client()
	if out, errOut, code := s.cli("models", "push", examplePath("sklearn-churn"), "--model", "churn",
		"--metadata", examplePath("sklearn-churn", "metadata.json"), "--alias", "champion"); code != 0 {
		t.Fatalf("push churn v1: %s %s", out, errOut)
	}
	pushChurnV2(t, s)

	deploy(t, s, "by-cli", "--model", "churn@champion")
	champion := "champion"
	if _, err := c.CreateDeployment(ctxFor(t, time.Minute), slipway.DeploymentSpec{Name: "by-api", Model: "churn", Alias: &champion}); err != nil {
		t.Fatal(err)
	}
	deploy(t, s, "pinned", "--model", "churn@champion", "--no-follow")
	// Canary analysis promotes by setting the version: without --follow-alias it pins instead of failing.
	deploy(t, s, "analysed", "--model", "churn@champion", "--canary-version", "2", "--canary-analysis", "--no-wait")
	if out, errOut, code := s.cli("deploy", "refused", "--model", "churn@champion", "--follow-alias", "--canary-version", "2",
		"--canary-analysis", "--no-wait"); code == 0 || !strings.Contains(errOut, "promote by moving the alias, or drop follow_alias") {
		t.Errorf("--follow-alias with --canary-analysis: exit %d\n%s%s", code, out, errOut)
	}
	waitActive := func(name string, version int) *slipway.Deployment {
		t.Helper()
		var d *slipway.Deployment
		waitFor(t, fmt.Sprintf("%s ACTIVE on version %d", name, version), 3*time.Minute, func() bool {
			var err error
			d, err = c.GetDeployment(ctxFor(t, time.Minute), name)
			if err != nil || d.State != slipway.DeploymentActive || d.Version != version {
				return false
			}
			for _, r := range d.ReplicaStatus { // the old version's replicas are gone (a canary's stay)
				if r.Version != version && (d.Canary == nil || r.Version != d.Canary.Version) {
					return false
				}
			}
			return true
		})
		return d
	}
	want := map[string]bool{"by-cli": true, "by-api": true, "pinned": false, "analysed": false}
	for name, follows := range want {
		d := waitActive(name, 1)
		if d.Alias != "champion" || d.FollowAlias != follows {
			t.Errorf("%s: alias %q, follow_alias %v, want champion, %v", name, d.Alias, d.FollowAlias, follows)
		}
	}
	getSays := func(name, want string) {
		t.Helper()
		if out, errOut, code := s.cli("deployments", "get", name); code != 0 || !strings.Contains(out, want) {
			t.Errorf("deployments get %s: exit %d, want %q\n%s%s", name, code, want, out, errOut)
		}
	}
	getSays("by-cli", "churn version 1 (@champion, followed)")
	getSays("pinned", "churn version 1 (pinned, from @champion)")

	// A pipeline's deploy step moves @champion to version 2 and rolls by-cli out: it must go on following.
	if _, err := c.CreatePipeline(ctxFor(t, time.Minute), []byte(`
name: promote
steps:
  - name: promote
    builtin: deploy
    with: {model: churn, version: 2, alias: champion, deployment: by-cli}
`), nil, ""); err != nil {
		t.Fatal(err)
	}
	r, err := c.RunPipeline(ctxFor(t, time.Minute), "promote", nil)
	if err != nil {
		t.Fatal(err)
	}
	if r = waitPipelineRun(t, c, r.ID); r.State != slipway.RunSucceeded {
		t.Fatalf("promote pipeline: %s %q; step %q", r.State, r.Reason, stepNamed(r, "promote").Reason)
	}
	for _, name := range []string{"by-cli", "by-api"} {
		if d := waitActive(name, 2); !d.FollowAlias || d.Alias != "champion" {
			t.Errorf("%s after the alias moved: alias %q, follow_alias %v", name, d.Alias, d.FollowAlias)
		}
	}
	getSays("by-cli", "churn version 2 (@champion, followed)")

	// The pinned deployment stays on version 1, also when its replicas start again at its stored version.
	if out, errOut, code := s.cli("deployments", "deactivate", "pinned"); code != 0 {
		t.Fatalf("deactivate: %s %s", out, errOut)
	}
	if out, errOut, code := s.cli("deployments", "activate", "pinned"); code != 0 {
		t.Fatalf("activate: %s %s", out, errOut)
	}
	for _, name := range []string{"pinned", "analysed"} {
		if d := waitActive(name, 1); d.FollowAlias {
			t.Errorf("%s follows the alias after it moved", name)
		}
	}
	getSays("pinned", "churn version 1 (pinned, from @champion)")
	if out, _, _ := s.cli("deployments", "list"); !strings.Contains(out, "champion (pinned)") || !strings.Contains(out, "champion (followed)") {
		t.Errorf("deployments list does not tell followed from pinned:\n%s", out)
	}
}
