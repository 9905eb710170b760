package e2e

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/slipway-ml/slipway/internal/slipwaytest"
)

// forwardedToHeader names, on an answer, the server the request was forwarded to (httpapi.ForwardedToHeader).
const forwardedToHeader = "Slipway-Forwarded-To"

// frontDoor stands in for a Kubernetes Service in front of several servers: each request goes to the next
// backend in turn, and to the one after when a backend does not answer (a killed server), so that the replica
// pods' announcements and heartbeats reach whichever server is up.
type frontDoor struct {
	*httptest.Server
	mu       sync.Mutex
	backends []string
	next     atomic.Uint64
	served   map[string]int // requests answered by each backend
}

func startFrontDoor(t *testing.T) *frontDoor {
	t.Helper()
	f := &frontDoor{served: map[string]int{}}
	transport := &http.Transport{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		backends := slices.Clone(f.backends)
		f.mu.Unlock()
		start := int(f.next.Add(1))
		var lastErr error
		for i := range backends {
			backend := backends[(start+i)%len(backends)]
			out, _ := http.NewRequestWithContext(r.Context(), r.Method, backend+r.URL.RequestURI(), bytes.NewReader(body))
			out.Header = r.Header.Clone()
			resp, err := transport.RoundTrip(out)
			if err != nil {
				lastErr = err
				continue // down: the next server answers
			}
			defer resp.Body.Close()
			f.mu.Lock()
			f.served[backend]++
			f.mu.Unlock()
			for k, vs := range resp.Header {
				w.Header()[k] = vs
			}
			w.WriteHeader(resp.StatusCode)
			_, _ = io.Copy(w, resp.Body)
			return
		}
		http.Error(w, "no server answered: "+lastErr.Error(), http.StatusBadGateway)
	}))
	t.Cleanup(f.Close)
	t.Cleanup(transport.CloseIdleConnections)
	return f
}

func (f *frontDoor) route(backends ...string) {
	f.mu.Lock()
	f.backends = backends
	f.mu.Unlock()
}

func (f *frontDoor) servedBy(backend string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.served[backend]
}

// predictDirect sends one prediction through s and returns its answer and the server it was forwarded to ("":
// answered by s itself).
func predictDirect(t *testing.T, s *server, path string, body []byte) (int, []byte, string) {
	t.Helper()
	resp, b := s.do(t, "POST", path, s.Token, bytes.NewReader(body), "application/json")
	return resp.StatusCode, b, resp.Header.Get(forwardedToHeader)
}

// sharedKube is two servers (A, then B) on one PostgreSQL database and bucket, with the kubernetes engine and
// the front door in front of both as their --replica-announce-url, the examples pushed.
type sharedKube struct {
	k     *slipwaytest.Kubernetes
	cs    kubernetes.Interface
	pg    *slipwaytest.Postgres
	a, b  *server
	front *frontDoor
}

func startSharedKube(t *testing.T) *sharedKube {
	t.Helper()
	k := slipwaytest.StartKubernetes(t, binary)
	cs := kubeClient(t, k)
	slipwaytest.UseS3Credentials(t)
	bucket := slipwaytest.StartS3(t, "slipway")
	store := "s3://slipway/prod?endpoint=" + bucket.URL
	pg := slipwaytest.StartPostgres(t)
	dsn := pg.CreateDatabase(t, "slipway")
	front := startFrontDoor(t)
	member := func(token string) *server {
		dir := t.TempDir()
		if token != "" {
			if err := os.WriteFile(filepath.Join(dir, "admin.token"), []byte(token+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return startKubeServer(t, k, dir, "--database", dsn, "--artifact-store", store, "--replica-network", "host",
			"--replica-announce-url", front.URL)
	}
	a := member("")
	b := member(a.Token)
	front.route(a.URL, b.URL)
	pushExamples(t, a)
	return &sharedKube{k: k, cs: cs, pg: pg, a: a, b: b, front: front}
}

// TestKubernetesServersReachThePodsDirectly: two servers on one PostgreSQL database and bucket, with the
// kubernetes engine and one announce URL in front of both (--replica-announce-url). A deployment of 2 pods is
// served by each server through its own sessions to the pods (no forwarding to the host), with the local
// engine's answers; a kill -9 of the host under load through the other server fails no request there, leaves
// the pods and their Deployment as they were, and the survivor becomes the host.
func TestKubernetesServersReachThePodsDirectly(t *testing.T) {
	sk := startSharedKube(t)
	cs, pg, a, b, front := sk.cs, sk.pg, sk.a, sk.b, sk.front
	local := startServer(t, "")
	pushExamples(t, local)

	const name = "kshared"
	path := "/deployments/" + name + "/invocations"
	body := onnxBody(t)
	deploy(t, local, name, "--model", "churn-onnx:1", "--replicas", "1")
	deploy(t, a, name, "--model", "churn-onnx:1", "--replicas", "2")
	idA, idB := serverID(t, pg, a), serverID(t, pg, b)
	if holder := leaseHolder(t, pg, name); holder != idA {
		t.Fatalf("deployment created through A is hosted by %q, want A (%q)", holder, idA)
	}
	waitFor(t, "2 pods' workers connected to the host", 3*time.Minute, func() bool { return connected(a, name, 2) })

	// The pods announced themselves through the front door, to both servers in turn; the database holds them.
	if got := pg.Psql(t, "slipway", "SELECT COUNT(*) FROM replica_workers WHERE deployment = '"+name+"'"); got != "2" {
		t.Fatalf("replica_workers rows: %s, want 2", got)
	}
	waitFor(t, "heartbeats through the front door reached both servers", time.Minute, func() bool {
		return front.servedBy(a.URL) > 0 && front.servedBy(b.URL) > 0
	})

	// B serves the deployment itself, from the same pods, once it has its own sessions: no forward to A.
	waitFor(t, "B answers from the pods itself", 2*time.Minute, func() bool {
		code, _, fwd := predictDirect(t, b, path, body)
		return code == 200 && fwd == ""
	})
	_, want := local.do(t, "POST", path, local.Token, bytes.NewReader(body), "application/json")
	for _, s := range []*server{a, b} {
		code, got, fwd := predictDirect(t, s, path, body)
		if code != 200 || fwd != "" || !bytes.Equal(got, want) {
			t.Fatalf("through %s: %d forwarded to %q: %s\nlocal engine: %s", s.URL, code, fwd, got, want)
		}
	}
	// Calls that describe or change the deployment are still the host's (forwarded: the header says so, and
	// proves the check above can see a forward).
	resp, _ := b.do(t, "GET", "/api/v1/deployments/"+name, b.Token, nil, "")
	if resp.StatusCode != 200 || resp.Header.Get(forwardedToHeader) != idA {
		t.Fatalf("GET deployment through B: %d, forwarded to %q, want A (%q)", resp.StatusCode, resp.Header.Get(forwardedToHeader), idA)
	}
	// Each server counts the predictions it served itself: A's count does not include B's.
	beforeA, beforeB := a.metric(t, name, "200"), b.metric(t, name, "200")
	for range 20 {
		if code, got, fwd := predictDirect(t, a, path, body); code != 200 || fwd != "" {
			t.Fatalf("through A: %d %q %s", code, fwd, got)
		}
	}
	for range 30 {
		if code, got, fwd := predictDirect(t, b, path, body); code != 200 || fwd != "" {
			t.Fatalf("through B: %d %q %s", code, fwd, got)
		}
	}
	if dA, dB := a.metric(t, name, "200")-beforeA, b.metric(t, name, "200")-beforeB; dA != 20 || dB != 30 {
		t.Fatalf("predictions counted: A %d (want 20), B %d (want 30)", dA, dB)
	}

	// kill -9 the host under load through B: no request through B fails, the pods are not touched, and B takes
	// the deployment over (its Deployment at the same generation, the same pods, none restarted).
	dsBefore, podsBefore := replicaObjects(t, cs, name)
	if len(dsBefore) != 1 || len(podsBefore) != 2 {
		t.Fatalf("before the kill: Deployments %v, %d pods", names(dsBefore), len(podsBefore))
	}
	l := startLoad(t, b, path, body, 4)
	waitFor(t, "requests under way through B", time.Minute, func() bool { return l.count() > 20 })
	killed := time.Now()
	a.Kill()
	waitFor(t, "B holds the deployment's lease", 2*time.Minute, func() bool { return leaseHolder(t, pg, name) == idB })
	t.Logf("MEASURED kill -9 of the host → the survivor holds the lease: %s", time.Since(killed).Round(100*time.Millisecond))
	waitFor(t, "B serves the pods as the host", 2*time.Minute, func() bool { return connected(b, name, 2) })
	before := l.count()
	waitFor(t, "requests served after the takeover", time.Minute, func() bool { return l.count() > before+20 })
	status, errs := l.finish()
	if len(status) != 1 || status[200] == 0 {
		t.Fatalf("statuses through B %v (want only 200) across a kill -9 of the host: %v", status, errs)
	}
	t.Logf("%d requests through B, all 200, across a kill -9 of the host", status[200])
	time.Sleep(3 * time.Second) // room for a wrong apply of the new host to show
	dsAfter, podsAfter := replicaObjects(t, cs, name)
	if len(dsAfter) != 1 || dsAfter[0].UID != dsBefore[0].UID || dsAfter[0].Generation != dsBefore[0].Generation ||
		*dsAfter[0].Spec.Replicas != 2 || !slices.Equal(podUIDs(podsAfter), podUIDs(podsBefore)) {
		t.Fatalf("after the takeover: Deployments %v gen %d (before %v gen %d), pods %v (before %v): want the same ones",
			names(dsAfter), dsAfter[0].Generation, names(dsBefore), dsBefore[0].Generation, podUIDs(podsAfter), podUIDs(podsBefore))
	}
	for _, p := range podsAfter {
		for _, c := range p.Status.ContainerStatuses {
			if c.RestartCount != 0 {
				t.Errorf("pod %s: container restarted %d times", p.Name, c.RestartCount)
			}
		}
	}
	if !strings.Contains(b.Log(), "hosting a deployment this server already served from its pods") {
		t.Errorf("B's log does not say it took the deployment over from its following pool")
	}

	if out, errOut, code := b.cli("deployments", "delete", name); code != 0 {
		t.Fatalf("delete: %s %s", out, errOut)
	}
	waitFor(t, "no replica Deployments or pods after delete", 2*time.Minute, func() bool {
		ds, pods := replicaObjects(t, cs, name)
		return len(ds)+len(pods) == 0
	})
}
