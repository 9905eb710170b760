package deploy

import "testing"

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
