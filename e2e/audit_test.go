package e2e

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
)

// auditAfter returns the audit entries after seq, waiting up to a few seconds for want of them (refusals of
// reads are written off the request path).
func auditAfter(t *testing.T, s *server, seq int64, want int) []*slipway.AuditEntry {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, body := s.do(t, http.MethodGet, "/api/v1/audit?limit=1000&after="+strconv.FormatInt(seq, 10), s.Token, nil, "")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("list audit: %d %s", resp.StatusCode, body)
		}
		var page slipway.Page[*slipway.AuditEntry]
		if err := json.Unmarshal(body, &page); err != nil {
			t.Fatal(err)
		}
		if len(page.Items) >= want || time.Now().After(deadline) {
			return page.Items
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stateChangingOperations reads the server's own OpenAPI document: every operation that is not a GET and
// not on the data plane (role predict), with its path parameters filled in.
func stateChangingOperations(t *testing.T, s *server) []struct{ method, path, route, id string } {
	t.Helper()
	resp, body := s.do(t, http.MethodGet, "/api/v1/openapi.json", "", nil, "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("openapi.json: %d", resp.StatusCode)
	}
	var doc struct {
		Paths map[string]map[string]struct {
			OperationID string `json:"operationId"`
			Role        string `json:"x-slipway-role"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	param := regexp.MustCompile(`\{[^}]+\}`)
	var ops []struct{ method, path, route, id string }
	for path, methods := range doc.Paths {
		for method, op := range methods {
			if method == "get" || op.Role == "" || op.Role == "predict" {
				continue
			}
			filled := param.ReplaceAllStringFunc(path, func(p string) string {
				if p == "{version}" {
					return "1"
				}
				return "audit-probe"
			})
			m := strings.ToUpper(method)
			ops = append(ops, struct{ method, path, route, id string }{m, filled, m + " " + path, op.OperationID})
		}
	}
	sort.Slice(ops, func(i, j int) bool { return ops[i].route < ops[j].route })
	if len(ops) < 20 {
		t.Fatalf("only %d state-changing operations in the OpenAPI document", len(ops))
	}
	return ops
}

func TestAuditEveryStateChangingRoute(t *testing.T) {
	s := startServer(t, "")
	viewer := cliToken(t, s, "tokens", "create", "auditor-viewer", "--role", "viewer")
	last := auditAfter(t, s, 0, 2)
	if last[0].Action != "server.start" || !bytes.Contains(last[0].Detail, []byte(`"config"`)) {
		t.Fatalf("the first entry is %+v, want server.start with the configuration", last[0])
	}
	seq := last[len(last)-1].Seq

	for _, op := range stateChangingOperations(t, s) {
		for _, caller := range []struct{ name, token string }{{"admin", s.Token}, {"auditor-viewer", viewer.Secret}} {
			resp, _ := s.do(t, op.method, op.path, caller.token, strings.NewReader("{}"), "application/json")
			es := auditAfter(t, s, seq, 1)
			if len(es) != 1 {
				t.Fatalf("%s by %s (%d) left %d audit entries, want exactly 1: %+v", op.route, caller.name, resp.StatusCode, len(es), es)
			}
			e := es[0]
			seq = e.Seq
			if e.Action != op.id || e.Route != op.route || e.TokenName != caller.name || e.Status != resp.StatusCode || e.RequestID != resp.Header.Get("X-Request-Id") {
				t.Errorf("%s by %s answered %d and was recorded as %+v", op.route, caller.name, resp.StatusCode, e)
			}
			if !strings.HasPrefix(op.path, "/api/v1/"+e.Target) || e.Target == "" {
				t.Errorf("%s: target %q is not the call's path %s", op.route, e.Target, op.path)
			}
			if caller.name == "auditor-viewer" && (e.Status != http.StatusForbidden || e.Problem != "forbidden") {
				t.Errorf("%s by a viewer: recorded %d %q, want a refusal (403 forbidden)", op.route, e.Status, e.Problem)
			}
		}
	}

	// Refusals of reads and predictions are recorded too, without a token as well.
	s.do(t, http.MethodGet, "/api/v1/tokens", viewer.Secret, nil, "")
	s.do(t, http.MethodPost, "/deployments/nope/predict", "", strings.NewReader("{}"), "application/json")
	es := auditAfter(t, s, seq, 2)
	if len(es) != 2 || es[0].Action != "listTokens" || es[0].Status != 403 || es[1].Status != 401 || es[1].TokenName != "" {
		t.Fatalf("refused read and prediction recorded as %+v", es)
	}

	// A created resource is the target, and filters find it.
	created := cliToken(t, s, "tokens", "create", "ci", "--role", "editor")
	resp, body := s.do(t, http.MethodGet, "/api/v1/audit?target=tokens/"+created.ID+"&actor=admin", s.Token, nil, "")
	var page slipway.Page[*slipway.AuditEntry]
	if err := json.Unmarshal(body, &page); err != nil || resp.StatusCode != 200 || len(page.Items) != 1 || page.Items[0].Action != "createToken" {
		t.Fatalf("audit filtered by the created token: %d %s", resp.StatusCode, body)
	}
	for _, bad := range []string{"from=yesterday", "limit=0", "after=-1", "format=xml"} {
		if resp, _ := s.do(t, http.MethodGet, "/api/v1/audit?"+bad, s.Token, nil, ""); resp.StatusCode != 400 {
			t.Errorf("audit?%s answered %d, want 400", bad, resp.StatusCode)
		}
	}
	if resp, _ := s.do(t, http.MethodGet, "/api/v1/audit", viewer.Secret, nil, ""); resp.StatusCode != 403 {
		t.Errorf("a viewer read the audit log: %d", resp.StatusCode)
	}
}

func TestAuditChainDetectsTampering(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir)
	cliToken(t, s, "tokens", "create", "ci", "--role", "editor")
	if out, errOut, code := s.cli("audit", "verify"); code != 0 || !strings.Contains(out, "holds") {
		t.Fatalf("verify on an untouched log: exit %d %s %s", code, out, errOut)
	}
	export := filepath.Join(t.TempDir(), "audit.jsonl")
	if _, errOut, code := s.cli("audit", "export", "--file", export); code != 0 {
		t.Fatalf("export: %s", errOut)
	}
	if out, errOut, code := s.cli("audit", "verify", "--file", export); code != 0 {
		t.Fatalf("verify of the export: exit %d %s %s", code, out, errOut)
	}
	// An edited export fails offline.
	b, err := os.ReadFile(export)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(export, bytes.Replace(b, []byte(`"token_name":"admin"`), []byte(`"token_name":"mallory"`), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := s.cli("audit", "verify", "--file", export); code == 0 || !strings.Contains(errOut, "broken") {
		t.Fatalf("verify of an edited export: exit %d %q", code, errOut)
	}

	// An edited row in the database fails on the server.
	s.Stop()
	db, err := sql.Open("sqlite", filepath.Join(dir, "slipway.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE audit_log SET token_name = 'mallory' WHERE action = 'createToken'`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s = startServer(t, dir)
	out, errOut, code := s.cli("audit", "verify")
	if code == 0 || !strings.Contains(errOut, "broken at entry") {
		t.Fatalf("verify after a row was edited: exit %d %s %s", code, out, errOut)
	}
}
