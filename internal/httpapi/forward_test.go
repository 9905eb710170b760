package httpapi

import (
	"strings"
	"testing"

	"github.com/slipway-ml/slipway"
)

// Every route about one deployment is answered by the server hosting it (forwarded), whatever file lists it;
// routes about the catalog, jobs or the installation are answered where they arrive.
func TestForwardableRoutes(t *testing.T) {
	forwarded := 0
	for _, rt := range New(Config{}).routes {
		_, path, _ := strings.Cut(rt.pattern, " ")
		aboutOne := strings.Contains(path, "{name}") &&
			(strings.HasPrefix(path, "/api/v1/deployments/") || strings.HasPrefix(path, "/deployments/") || strings.HasPrefix(path, "/v2/models/"))
		if got := forwardable(rt.pattern); got != aboutOne {
			t.Errorf("%s: forwardable %v, want %v", rt.pattern, got, aboutOne)
		}
		if aboutOne {
			forwarded++
		}
	}
	for _, p := range []string{"POST /api/v1/deployments", "GET /api/v1/deployments", "GET /api/v1/models/{model}", "GET /v2"} {
		if forwardable(p) {
			t.Errorf("%s is not about one deployment but would be forwarded", p)
		}
	}
	if forwarded < 20 {
		t.Fatalf("only %d deployment routes found: the route table changed shape", forwarded)
	}
}

// A server following another's deployment (kubernetes engine, several servers) answers only the data plane
// itself: predictions and the model's metadata (the inference protocols' routes a predict token may call).
// Everything else about the deployment, the API's feedback route included, is its host's.
func TestDataPlaneRoutes(t *testing.T) {
	data := 0
	for _, rt := range New(Config{}).routes {
		if !forwardable(rt.pattern) {
			continue
		}
		_, path, _ := strings.Cut(rt.pattern, " ")
		want := rt.role == slipway.RolePredict && !strings.HasPrefix(path, "/api/v1/")
		if got := dataPlane(rt.pattern); got != want {
			t.Errorf("%s (role %q): data plane %v, want %v", rt.pattern, rt.role, got, want)
		}
		if want {
			data++
		}
	}
	if data < 5 {
		t.Fatalf("only %d data-plane routes found: the route table changed shape", data)
	}
}
