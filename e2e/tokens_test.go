package e2e

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// whoami answers the status of GET /api/v1/whoami with token, and the problem's detail when refused.
func whoami(t *testing.T, s *server, token string) (int, string) {
	t.Helper()
	resp, body := s.do(t, http.MethodGet, "/api/v1/whoami", token, nil, "")
	if resp.StatusCode == http.StatusOK {
		return resp.StatusCode, ""
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
		t.Fatalf("status %d with content type %q, want a problem", resp.StatusCode, ct)
	}
	var p struct{ Detail string }
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, p.Detail
}

// waitRefused polls until token is refused with 401 and returns the refusal's detail.
func waitRefused(t *testing.T, s *server, token string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, detail := whoami(t, s, token)
		if code == http.StatusUnauthorized {
			return detail
		}
		if code != http.StatusOK || time.Now().After(deadline) {
			t.Fatalf("token still answers %d %s", code, detail)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

type createdToken struct {
	ID                       string     `json:"id"`
	Name                     string     `json:"name"`
	Secret                   string     `json:"token"`
	ExpiresAt                *time.Time `json:"expires_at"`
	PreviousSecretValidUntil *time.Time `json:"previous_secret_valid_until"`
}

func cliToken(t *testing.T, s *server, args ...string) createdToken {
	t.Helper()
	out, errOut, code := s.cli(append(args, "-o", "json")...)
	if code != 0 {
		t.Fatalf("slipway %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	var tok createdToken
	if err := json.Unmarshal([]byte(out), &tok); err != nil || tok.Secret == "" {
		t.Fatalf("slipway %s printed %q (%v), want a token with its secret", strings.Join(args, " "), out, err)
	}
	return tok
}

func TestTokenExpiry(t *testing.T) {
	s := startServer(t, "", "--max-token-ttl", "1h")

	short := cliToken(t, s, "tokens", "create", "short", "--role", "viewer", "--expires-in", "2s")
	if short.ExpiresAt == nil {
		t.Fatal("a token created with --expires-in has no expires_at")
	}
	if code, detail := whoami(t, s, short.Secret); code != http.StatusOK {
		t.Fatalf("a fresh token is refused: %d %s", code, detail)
	}
	if detail := waitRefused(t, s, short.Secret); !strings.Contains(detail, "expired") {
		t.Fatalf("an expired token is refused with %q, want it to say it expired", detail)
	}
	if time.Now().Before(*short.ExpiresAt) {
		t.Fatalf("the token was refused before its expiry %v", short.ExpiresAt)
	}

	// Without a lifetime the server's maximum applies, and nothing may ask for more.
	capped := cliToken(t, s, "tokens", "create", "capped", "--role", "viewer")
	if capped.ExpiresAt == nil || time.Until(*capped.ExpiresAt) > time.Hour || time.Until(*capped.ExpiresAt) < 50*time.Minute {
		t.Fatalf("a token without a lifetime under --max-token-ttl 1h expires at %v", capped.ExpiresAt)
	}
	_, errOut, code := s.cli("tokens", "create", "long", "--role", "viewer", "--expires-in", "2h")
	if code == 0 || !strings.Contains(errOut, "--max-token-ttl") {
		t.Fatalf("a lifetime past the maximum: exit %d, %q; want a refusal naming --max-token-ttl", code, errOut)
	}
	for _, bad := range [][]string{{"--expires-in", "30 days"}, {"--expires-at", "2020-01-01T00:00:00Z"}, {"--expires-in", "1m", "--expires-at", "2099-01-01T00:00:00Z"}} {
		if _, errOut, code := s.cli(append([]string{"tokens", "create", "bad", "--role", "viewer"}, bad...)...); code == 0 || errOut == "" {
			t.Errorf("tokens create %v: exit %d, want a clear error", bad, code)
		}
	}
}

func TestTokenRotation(t *testing.T) {
	s := startServer(t, "")
	old := cliToken(t, s, "tokens", "create", "ci", "--role", "editor")

	// During the grace period both secrets work; after it only the new one does.
	rotated := cliToken(t, s, "tokens", "rotate", "ci", "--grace", "2s")
	if rotated.ID != old.ID || rotated.Secret == old.Secret || rotated.PreviousSecretValidUntil == nil {
		t.Fatalf("rotation answered %+v for token %s", rotated, old.ID)
	}
	for name, secret := range map[string]string{"old": old.Secret, "new": rotated.Secret} {
		if code, detail := whoami(t, s, secret); code != http.StatusOK {
			t.Fatalf("the %s secret is refused during the grace period: %d %s", name, code, detail)
		}
	}
	if detail := waitRefused(t, s, old.Secret); !strings.Contains(detail, "replaced") {
		t.Fatalf("the old secret after its grace period is refused with %q, want it to say it was replaced", detail)
	}
	if code, detail := whoami(t, s, rotated.Secret); code != http.StatusOK {
		t.Fatalf("the new secret stopped working with the old one: %d %s", code, detail)
	}

	// Revoking during a rotation's grace period stops both secrets at once.
	again := cliToken(t, s, "tokens", "rotate", old.ID, "--grace", "1h")
	if out, errOut, code := s.cli("tokens", "revoke", old.ID); code != 0 {
		t.Fatalf("revoke: %s %s", out, errOut)
	}
	for name, secret := range map[string]string{"rotated-out": rotated.Secret, "current": again.Secret} {
		if code, detail := whoami(t, s, secret); code != http.StatusUnauthorized || !strings.Contains(detail, "revoked") {
			t.Errorf("the %s secret of a revoked token answers %d %q", name, code, detail)
		}
	}
	if _, errOut, code := s.cli("tokens", "rotate", old.ID); code == 0 || !strings.Contains(errOut, "revoked") {
		t.Fatalf("rotating a revoked token: exit %d %q", code, errOut)
	}
	if _, errOut, code := s.cli("tokens", "rotate", "nobody"); code == 0 || !strings.Contains(errOut, "no token") {
		t.Fatalf("rotating an unknown token: exit %d %q", code, errOut)
	}
}

func TestTokenRateLimit(t *testing.T) {
	s := startServer(t, "")
	limited := cliToken(t, s, "tokens", "create", "partner", "--role", "predict", "--rate-limit", "0.5", "--burst", "2")
	call := func(token string) *http.Response {
		resp, _ := s.do(t, http.MethodPost, "/deployments/nope/predict", token, strings.NewReader("{}"), "application/json")
		return resp
	}
	// The burst passes the limiter (and reaches the route: no such deployment), then the token is refused.
	for i := range 2 {
		if resp := call(limited.Secret); resp.StatusCode != http.StatusNotFound {
			t.Fatalf("call %d within the burst answered %d", i+1, resp.StatusCode)
		}
	}
	resp, body := s.do(t, http.MethodPost, "/deployments/nope/predict", limited.Secret, strings.NewReader("{}"), "application/json")
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(string(body), "rate_limited") || resp.Header.Get("Retry-After") != "2" {
		t.Fatalf("over the limit: %d Retry-After %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	// Another token, and the rest of the API, are not limited by it.
	if resp := call(s.Token); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("an unlimited token answered %d", resp.StatusCode)
	}
	resp, body = s.do(t, http.MethodGet, "/metrics", s.Token, nil, "")
	if !strings.Contains(string(body), `slipway_token_rate_limited_total{token="partner"} 1`) {
		t.Fatalf("the refusal is not counted per token: %d\n%s", resp.StatusCode, body)
	}
	if _, errOut, code := s.cli("tokens", "create", "bad", "--role", "predict", "--rate-limit", "-3"); code == 0 || !strings.Contains(errOut, "requests_per_second") {
		t.Fatalf("a negative rate limit: exit %d %q", code, errOut)
	}
}
