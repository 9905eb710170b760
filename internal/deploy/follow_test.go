package deploy

import (
	"testing"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/modelruntime"
)

// TestFollowingLeaseParsesBack: the host reads the deployment and version back from the lease name whatever
// the deployment's name holds ('.', '_', '-') and the server's id.
func TestFollowingLeaseParsesBack(t *testing.T) {
	for _, c := range []struct {
		name    string
		version int
		server  string
	}{{"churn", 1, "host-a-0123abcd"}, {"churn_api.v2", 12, "x"}, {"a-b", 0, "pod-7/odd"}} {
		lease := followingLease(c.name, c.version, c.server)
		name, v, ok := parseFollowingLease(lease)
		if !ok || name != c.name || v != c.version {
			t.Errorf("parseFollowingLease(%q) = %q, %d, %v; want %q, %d", lease, name, v, ok, c.name, c.version)
		}
	}
	for _, bad := range []string{"deployment/churn", "following/churn", "following/churn/x/s", "following/churn/1"} {
		if _, _, ok := parseFollowingLease(bad); ok {
			t.Errorf("parseFollowingLease(%q) is ok", bad)
		}
	}
}

// TestCanarySigFollowsTheReadyPods: a following server's canary is brought in line when the canary's
// version, its weight or the number of its ready pods changes, and not otherwise.
func TestCanarySigFollowsTheReadyPods(t *testing.T) {
	e := modelruntime.NewRemoteEngine(modelruntime.RemoteConfig{})
	defer e.Close()
	s := &Service{remote: e}
	d := &slipway.Deployment{Name: "churn", Version: 1}
	if got := s.canarySig(d); got != "" {
		t.Fatalf("no canary: %q", got)
	}
	d.Canary = &slipway.Canary{Version: 2, Weight: 50, Replicas: 1}
	before := s.canarySig(d)
	if again := s.canarySig(d); again != before {
		t.Fatalf("same canary, two signatures: %q %q", before, again)
	}
	e.Announce("churn", slipway.ReplicaAnnouncement{ID: "w1", Address: "127.0.0.1:1", Version: 2, Runtime: "onnx"})
	ready := s.canarySig(d)
	if ready == before {
		t.Fatalf("a canary pod became ready: signature unchanged %q", ready)
	}
	d.Canary.Weight = 20
	if s.canarySig(d) == ready {
		t.Fatal("a new weight: signature unchanged")
	}
}
