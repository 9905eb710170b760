package httpapi

import (
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

// openAPIDoc is the part of the document the tests read.
type openAPIDoc struct {
	OpenAPI  string                           `json:"openapi"`
	Security []map[string][]string            `json:"security"`
	Paths    map[string]map[string]*openAPIOp `json:"paths"`
}

type openAPIOp struct {
	OperationID string                     `json:"operationId"`
	Security    *[]map[string][]string     `json:"security"` // nil: the global bearer requirement applies
	Role        string                     `json:"x-slipway-role"`
	Responses   map[string]json.RawMessage `json:"responses"`
}

var openAPIMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

func readOpenAPI(tb testing.TB) openAPIDoc {
	tb.Helper()
	var doc openAPIDoc
	if err := json.Unmarshal(openAPIDocument, &doc); err != nil {
		tb.Fatalf("openapi.json is not valid JSON: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.1.") {
		tb.Fatalf("openapi.json: openapi = %q, want 3.1.x", doc.OpenAPI)
	}
	return doc
}

// operations returns the document's operations keyed like the route table: "METHOD /path".
func (d openAPIDoc) operations() map[string]*openAPIOp {
	out := map[string]*openAPIOp{}
	for path, item := range d.Paths {
		for method, op := range item {
			if slices.Contains(openAPIMethods, method) {
				out[strings.ToUpper(method)+" "+path] = op
			}
		}
	}
	return out
}

// TestOpenAPICoversRoutes forces every route of server.go into openapi.json and every documented operation to
// exist: adding a route without documenting it fails here.
func TestOpenAPICoversRoutes(t *testing.T) {
	doc := readOpenAPI(t)
	ops := doc.operations()
	s := New(Config{})
	var missingFromDoc, missingFromServer []string
	for _, p := range s.Patterns() {
		if _, ok := ops[p]; !ok {
			missingFromDoc = append(missingFromDoc, p)
		}
	}
	for p := range ops {
		if !slices.Contains(s.Patterns(), p) {
			missingFromServer = append(missingFromServer, p)
		}
	}
	slices.Sort(missingFromDoc)
	slices.Sort(missingFromServer)
	if len(missingFromDoc) > 0 {
		t.Errorf("routes of server.go missing from internal/httpapi/openapi.json (document them under \"paths\"):\n\t%s",
			strings.Join(missingFromDoc, "\n\t"))
	}
	if len(missingFromServer) > 0 {
		t.Errorf("operations in internal/httpapi/openapi.json that server.go does not route (remove them or fix the path):\n\t%s",
			strings.Join(missingFromServer, "\n\t"))
	}
}

// noClientErrors are the operations that take no input and need no token: nothing a client sends can make them
// answer 4xx, so they are exempt from the 4xx rule below.
var noClientErrors = []string{"GET /healthz", "GET /readyz", "GET /api/v1/openapi.json", "GET /v2/health/live", "GET /v2/health/ready"}

func TestOpenAPIOperations(t *testing.T) {
	doc := readOpenAPI(t)
	if len(doc.Security) != 1 || doc.Security[0]["bearerAuth"] == nil {
		t.Errorf("global security = %v, want [{bearerAuth: []}]", doc.Security)
	}
	roles := map[string]string{}
	for _, rt := range New(Config{}).routes {
		roles[rt.pattern] = string(rt.role)
	}
	ops := doc.operations()
	ids := map[string]string{}
	for _, key := range slices.Sorted(maps.Keys(ops)) {
		op := ops[key]
		if op.OperationID == "" {
			t.Errorf("%s: no operationId", key)
		} else if other, dup := ids[op.OperationID]; dup {
			t.Errorf("%s: operationId %q already used by %s", key, op.OperationID, other)
		} else {
			ids[op.OperationID] = key
		}
		has4xx := false
		for code := range op.Responses {
			if len(code) == 3 && code[0] == '4' {
				has4xx = true
			}
		}
		if !has4xx && !slices.Contains(noClientErrors, key) {
			t.Errorf("%s: no 4xx response: document the errors (components/responses/BadRequest, NotFound...)", key)
		}
		role, routed := roles[key]
		if !routed {
			continue // reported by TestOpenAPICoversRoutes
		}
		public := op.Security != nil && len(*op.Security) == 0
		switch {
		case role == "" && !public:
			t.Errorf("%s is public in server.go: mark it \"security\": [] in openapi.json", key)
		case role != "" && public:
			t.Errorf("%s needs role %s in server.go but is marked public (\"security\": []) in openapi.json", key, role)
		case role != "" && op.Role != role:
			t.Errorf("%s: x-slipway-role = %q in openapi.json, server.go requires %q", key, op.Role, role)
		}
		if role != "" {
			if _, ok := op.Responses["401"]; !ok {
				t.Errorf("%s needs a token: document its 401 response", key)
			}
		}
	}
}

// TestOpenAPIProblemResponses checks that error responses are problem+json documents referencing Problem,
// except under /v2, where the Open Inference Protocol's errors are application/json documents ({"error": "..."},
// or a readiness answer) with a V2 schema. Missing or insufficient tokens (401, 403) are Problems everywhere:
// the authentication in front of every route writes them.
func TestOpenAPIProblemResponses(t *testing.T) {
	var doc struct {
		Components struct {
			Responses map[string]struct {
				Content map[string]struct {
					Schema struct {
						Ref string `json:"$ref"`
					} `json:"schema"`
				} `json:"content"`
			} `json:"responses"`
		} `json:"components"`
	}
	if err := json.Unmarshal(openAPIDocument, &doc); err != nil {
		t.Fatal(err)
	}
	ops := readOpenAPI(t).operations()
	for _, key := range slices.Sorted(maps.Keys(ops)) {
		for code, raw := range ops[key].Responses {
			if code[0] != '4' && code[0] != '5' {
				continue
			}
			var r struct {
				Ref string `json:"$ref"`
			}
			json.Unmarshal(raw, &r)
			name, ok := strings.CutPrefix(r.Ref, "#/components/responses/")
			if !ok {
				t.Errorf("%s %s: error responses must reference #/components/responses/...", key, code)
				continue
			}
			resp, ok := doc.Components.Responses[name]
			if !ok {
				t.Errorf("%s %s: no components/responses/%s", key, code, name)
				continue
			}
			_, path, _ := strings.Cut(key, " ")
			if (path == "/v2" || strings.HasPrefix(path, "/v2/")) && code != "401" && code != "403" {
				got := resp.Content["application/json"].Schema.Ref
				if !strings.HasPrefix(got, "#/components/schemas/V2") || len(resp.Content) != 1 {
					t.Errorf("%s %s: components/responses/%s must be only application/json with a V2 schema such as V2Error (got %q)", key, code, name, got)
				}
				continue
			}
			if got := resp.Content["application/problem+json"].Schema.Ref; got != "#/components/schemas/Problem" {
				t.Errorf("components/responses/%s: application/problem+json schema = %q, want the Problem schema", name, got)
			}
		}
	}
}

func TestOpenAPIServed(t *testing.T) {
	s := New(Config{})
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/openapi.json", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /api/v1/openapi.json = %d", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	if !json.Valid(rec.Body.Bytes()) || rec.Body.Len() != len(openAPIDocument) {
		t.Errorf("served %d bytes, want the %d-byte document", rec.Body.Len(), len(openAPIDocument))
	}
}
