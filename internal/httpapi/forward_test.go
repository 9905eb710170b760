package httpapi

import (
	"strings"
	"testing"
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
