package e2e

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// predictVersion sends one prediction through s and returns its status, the model version that answered
// and the server it was forwarded to ("": answered by s itself).
func predictVersion(t *testing.T, s *server, path string, body []byte) (int, string, string) {
	t.Helper()
	resp, _ := s.do(t, "POST", path, s.Token, bytes.NewReader(body), "application/json")
	return resp.StatusCode, resp.Header.Get("X-Slipway-Model-Version"), resp.Header.Get(forwardedToHeader)
}

// followingLeases counts the live leases by which servers other than the host say their following pools
// still use version v of a deployment's pods.
func followingLeases(t *testing.T, sk *sharedKube, name, version string) string {
	t.Helper()
	return sk.pg.Psql(t, "slipway", "SELECT COUNT(*) FROM leases WHERE name LIKE 'following/"+name+"/"+version+"/%' AND holder <> '' "+
		"AND expires_ms > CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)")
}

// TestKubernetesServersRollOutThroughAnyServer: two servers share a deployment's 2 pods (the host A and the
// following B). An update to a new version under load through both servers, mostly through B, fails no
// request on either; afterwards both answer from the new version themselves, and the old version's
// Deployment and pods are gone. The host kept the old pods until B's following pool had left them.
func TestKubernetesServersRollOutThroughAnyServer(t *testing.T) {
	sk := startSharedKube(t)
	a, b := sk.a, sk.b
	const name = "kroll"
	path := "/deployments/" + name + "/invocations"
	body := onnxBody(t)
	if out, errOut, code := a.cli("models", "push", examplePath("onnx-churn", "model.onnx"), "--model", "churn-onnx",
		"--metadata", examplePath("onnx-churn", "metadata.json")); code != 0 {
		t.Fatalf("push onnx v2: %s %s", out, errOut)
	}
	deploy(t, a, name, "--model", "churn-onnx:1", "--replicas", "2")
	waitFor(t, "2 pods' workers connected to the host", 3*time.Minute, func() bool { return connected(a, name, 2) })
	waitFor(t, "B answers from the pods itself", 2*time.Minute, func() bool {
		code, _, fwd := predictVersion(t, b, path, body)
		return code == 200 && fwd == ""
	})
	if got := followingLeases(t, sk, name, "1"); got != "1" {
		t.Fatalf("following leases of version 1: %s, want B's", got)
	}

	lb := startLoad(t, b, path, body, 4)
	la := startLoad(t, a, path, body, 2)
	waitFor(t, "requests under way through both servers", time.Minute, func() bool { return lb.count() > 20 && la.count() > 10 })
	if out, errOut, code := a.cli("deployments", "update", name, "--model-version", "2"); code != 0 {
		t.Fatalf("update to version 2: %s %s", out, errOut)
	}
	waitFor(t, "version 2's Deployment alone, version 1's pods gone", 3*time.Minute, func() bool {
		ds, pods := replicaObjects(t, sk.cs, name)
		return len(ds) == 1 && ds[0].Name == "slipway-"+name+"-v2" && *ds[0].Spec.Replicas == 2 && len(pods) == 2
	})
	beforeB, beforeA := lb.count(), la.count()
	waitFor(t, "requests served after the rollout", time.Minute, func() bool {
		return lb.count() > beforeB+20 && la.count() > beforeA+10
	})
	statusB, errsB := lb.finish()
	statusA, errsA := la.finish()
	if len(statusB) != 1 || statusB[200] == 0 {
		t.Errorf("statuses through B (following) %v, want only 200, across an update: %v", statusB, errsB)
	}
	if len(statusA) != 1 || statusA[200] == 0 {
		t.Errorf("statuses through A (host) %v, want only 200, across an update: %v", statusA, errsA)
	}
	t.Logf("across an update: %d requests through B, %d through A", statusB[200], statusA[200])

	// Both answer from version 2 themselves; B gave version 1's lease up and holds version 2's.
	for _, s := range []*server{a, b} {
		for range 10 {
			if code, v, fwd := predictVersion(t, s, path, body); code != 200 || v != "2" || fwd != "" {
				t.Fatalf("through %s after the update: %d, version %q, forwarded to %q", s.URL, code, v, fwd)
			}
		}
	}
	if v1, v2 := followingLeases(t, sk, name, "1"), followingLeases(t, sk, name, "2"); v1 != "0" || v2 != "1" {
		t.Errorf("following leases: version 1 %s (want 0), version 2 %s (want B's)", v1, v2)
	}
	// The host deleted version 1's Deployment only after B had let go of its pods (whichever was quicker to
	// switch: when B is slower, A's log says it kept them for B meanwhile).
	let := logTime(t, b.Log(), "no session with a version's pods any more", "version=1")
	deleted := logTime(t, a.Log(), "deleted replica Deployment", "name=slipway-"+name+"-v1")
	if deleted.Before(let) {
		t.Errorf("A deleted version 1's Deployment at %s, before B let go of its pods at %s", deleted, let)
	}
	t.Logf("B let go of version 1's pods at %s, A deleted them at %s (kept for B: %v)", let.Format(time.TimeOnly), deleted.Format(time.TimeOnly),
		strings.Contains(a.Log(), "kept for a following server"))
}

// logTime returns the time of the first line of a server's log that holds every one of parts.
func logTime(t *testing.T, log string, parts ...string) time.Time {
	t.Helper()
	for line := range strings.Lines(log) {
		if !containsAll(line, parts) {
			continue
		}
		_, rest, ok := strings.Cut(line, "time=")
		stamp, _, _ := strings.Cut(rest, " ")
		at, err := time.Parse(time.RFC3339Nano, stamp)
		if ok && err == nil {
			return at
		}
	}
	t.Fatalf("no log line with %q", parts)
	return time.Time{}
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// versionsThrough sends n predictions through s and counts the versions that answered them; every one must be
// 200 and answered by s itself.
func versionsThrough(t *testing.T, s *server, path string, body []byte, n int) map[string]int {
	t.Helper()
	seen := map[string]int{}
	for range n {
		code, v, fwd := predictVersion(t, s, path, body)
		if code != 200 || fwd != "" {
			t.Fatalf("through %s: %d, forwarded to %q", s.URL, code, fwd)
		}
		seen[v]++
	}
	return seen
}

// TestKubernetesServersCanaryThroughAnyServer: a following server splits a canary deployment by its weight
// like the host, from its own sessions to both versions' pods (no forwarding), and a rollback and then a
// promotion under load through both servers fail no request.
func TestKubernetesServersCanaryThroughAnyServer(t *testing.T) {
	sk := startSharedKube(t)
	a, b := sk.a, sk.b
	const name = "kcanary"
	path := "/deployments/" + name + "/invocations"
	body := onnxBody(t)
	if out, errOut, code := a.cli("models", "push", examplePath("onnx-churn", "model.onnx"), "--model", "churn-onnx",
		"--metadata", examplePath("onnx-churn", "metadata.json")); code != 0 {
		t.Fatalf("push onnx v2: %s %s", out, errOut)
	}
	update := func(args ...string) {
		t.Helper()
		if out, errOut, code := a.cli(append([]string{"deployments", "update", name}, args...)...); code != 0 {
			t.Fatalf("update %v: %s %s", args, out, errOut)
		}
	}
	withCanary := func() {
		t.Helper()
		update("--canary-version", "2", "--canary-weight", "50", "--canary-replicas", "1")
		waitFor(t, "B splits between both versions itself", 3*time.Minute, func() bool {
			code, v, fwd := predictVersion(t, b, path, body)
			return code == 200 && fwd == "" && v == "2"
		})
		seen := versionsThrough(t, b, path, body, 60)
		if seen["1"] == 0 || seen["2"] == 0 || len(seen) != 2 {
			t.Fatalf("versions that answered 60 requests through B with a 50%% canary: %v", seen)
		}
		t.Logf("a 50%% canary through B: %v", seen)
	}
	deploy(t, a, name, "--model", "churn-onnx:1", "--replicas", "2")
	waitFor(t, "2 pods' workers connected to the host", 3*time.Minute, func() bool { return connected(a, name, 2) })
	waitFor(t, "B answers from the pods itself", 2*time.Minute, func() bool {
		code, _, fwd := predictVersion(t, b, path, body)
		return code == 200 && fwd == ""
	})
	withCanary()

	// Rollback, then a canary again and its promotion, under load through both servers.
	lb := startLoad(t, b, path, body, 4)
	la := startLoad(t, a, path, body, 2)
	waitFor(t, "requests under way through both servers", time.Minute, func() bool { return lb.count() > 20 && la.count() > 10 })
	update("--no-canary")
	waitFor(t, "the canary's Deployment gone after the rollback", 3*time.Minute, func() bool {
		ds, pods := replicaObjects(t, sk.cs, name)
		return len(ds) == 1 && ds[0].Name == "slipway-"+name+"-v1" && len(pods) == 2
	})
	if seen := versionsThrough(t, b, path, body, 20); len(seen) != 1 || seen["1"] != 20 {
		t.Fatalf("versions through B after the rollback: %v", seen)
	}
	withCanary()
	update("--model-version", "2", "--no-canary")
	waitFor(t, "version 2's Deployment alone after the promotion", 3*time.Minute, func() bool {
		ds, pods := replicaObjects(t, sk.cs, name)
		return len(ds) == 1 && ds[0].Name == "slipway-"+name+"-v2" && *ds[0].Spec.Replicas == 2 && len(pods) == 2
	})
	beforeB, beforeA := lb.count(), la.count()
	waitFor(t, "requests served after the promotion", time.Minute, func() bool {
		return lb.count() > beforeB+20 && la.count() > beforeA+10
	})
	statusB, errsB := lb.finish()
	statusA, errsA := la.finish()
	if len(statusB) != 1 || statusB[200] == 0 {
		t.Errorf("statuses through B (following) %v, want only 200, across a rollback and a promotion: %v", statusB, errsB)
	}
	if len(statusA) != 1 || statusA[200] == 0 {
		t.Errorf("statuses through A (host) %v, want only 200, across a rollback and a promotion: %v", statusA, errsA)
	}
	t.Logf("across a rollback and a promotion: %d requests through B, %d through A", statusB[200], statusA[200])
	for _, s := range []*server{a, b} {
		if seen := versionsThrough(t, s, path, body, 20); len(seen) != 1 || seen["2"] != 20 {
			t.Fatalf("versions through %s after the promotion: %v", s.URL, seen)
		}
	}
	if got := followingLeases(t, sk, name, "1"); got != "0" {
		t.Errorf("following leases of version 1 after the promotion: %s, want 0", got)
	}
}
