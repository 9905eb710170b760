package httpapi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/slipway-ml/slipway"
)

// roleAny admits every valid token, whatever its role.
const roleAny slipway.Role = "any"

// tokenCacheTTL bounds how long a revoked token may still work on another server sharing the database;
// on this server a revoke evicts the cache at once.
const tokenCacheTTL = 10 * time.Second

// authenticator resolves bearer tokens, caching lookups so that the prediction path does not hit the database.
type authenticator struct {
	store slipway.TokenStore
	mu    sync.Mutex
	cache map[[sha256.Size]byte]cachedToken // by the secret's SHA-256: no hex string per request
}

type cachedToken struct {
	token   *slipway.Token
	fetched time.Time
	// rotatedOut marks a secret that a rotation replaced: it works only until the token's
	// PreviousSecretValidUntil.
	rotatedOut bool
}

func newAuthenticator(store slipway.TokenStore) *authenticator {
	return &authenticator{store: store, cache: map[[sha256.Size]byte]cachedToken{}}
}

// HashToken is how a token secret is stored: its SHA-256, hex. Secrets are 256-bit random, so no salt or
// slow hash is needed.
func HashToken(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// lookup finds the token a secret belongs to and checks that it may be used now (not revoked, not expired,
// not a rotated-out secret past its grace period).
func (a *authenticator) lookup(ctx context.Context, secret string) (*slipway.Token, error) {
	var room [128]byte // the secret's bytes on the stack: []byte(secret) allocates past 32 bytes, on every call
	sum := sha256.Sum256(append(room[:0], secret...))
	a.mu.Lock()
	c, ok := a.cache[sum]
	a.mu.Unlock()
	if !ok || time.Since(c.fetched) >= tokenCacheTTL {
		var err error
		if c, err = a.fetch(ctx, sum); err != nil {
			return nil, err
		}
	}
	now := time.Now()
	if err := c.token.Usable(now); err != nil {
		return nil, err
	}
	if c.rotatedOut {
		if until := c.token.PreviousSecretValidUntil; until == nil || !now.Before(*until) {
			return nil, slipway.Errorf(slipway.EUNAUTHORIZED, "this secret of token %q was replaced (slipway tokens rotate) and stopped working at the end of its grace period: use the new secret", c.token.Name)
		}
	}
	return c.token, nil
}

// fetch reads the token of a secret's hash from the store (its current secret, else a rotated-out one) and
// caches it.
func (a *authenticator) fetch(ctx context.Context, sum [sha256.Size]byte) (cachedToken, error) {
	hash := hex.EncodeToString(sum[:])
	c := cachedToken{fetched: time.Now()}
	t, err := a.store.FindTokenByHash(ctx, hash)
	if slipway.ErrorCode(err) == slipway.ENOTFOUND {
		t, err = a.store.FindTokenByPreviousHash(ctx, hash)
		c.rotatedOut = true
	}
	if slipway.ErrorCode(err) == slipway.ENOTFOUND {
		return c, slipway.Errorf(slipway.EUNAUTHORIZED, "invalid token: check SLIPWAY_TOKEN or the token file")
	} else if err != nil {
		return c, err
	}
	c.token = t
	// Recorded on cache misses only (at most once per token per tokenCacheTTL): cheap, and close enough to
	// tell a token in use from a forgotten one.
	if toucher, ok := a.store.(interface {
		TouchToken(context.Context, string) error
	}); ok && t.Usable(c.fetched) == nil {
		if err := toucher.TouchToken(ctx, t.ID); err == nil {
			now := time.Now().UTC()
			t.LastUsedAt = &now
		}
	}
	a.mu.Lock()
	if len(a.cache) > 10_000 { // bounded: random invalid tokens never reach the cache, this is only a backstop
		clear(a.cache)
	}
	a.cache[sum] = c
	a.mu.Unlock()
	return c, nil
}

func (a *authenticator) evict() {
	a.mu.Lock()
	clear(a.cache)
	a.mu.Unlock()
}

// authenticate returns the request's token or an EUNAUTHORIZED error.
func (s *Server) authenticate(r *http.Request) (*slipway.Token, error) {
	return s.authenticateHeader(r.Context(), r.Header.Get("Authorization"))
}

// authenticateHeader resolves an Authorization value (HTTP header or gRPC metadata) to its token.
func (s *Server) authenticateHeader(ctx context.Context, h string) (*slipway.Token, error) {
	if h == "" {
		return nil, slipway.Errorf(slipway.EUNAUTHORIZED, "missing bearer token: send \"Authorization: Bearer <token>\" (the admin token is in DATA_DIR/admin.token)")
	}
	scheme, secret, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(secret) == "" {
		return nil, slipway.Errorf(slipway.EUNAUTHORIZED, "malformed Authorization header: use \"Bearer <token>\"")
	}
	return s.auth.lookup(ctx, strings.TrimSpace(secret))
}

// requireRole admits requests whose token has the needed role; auditRefusals records the others in the
// audit log (routes that audited wraps record every call themselves).
func (s *Server) requireRole(need slipway.Role, sc routeScope, next http.HandlerFunc, auditRefusals bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		t, err := s.authenticate(r)
		if err == nil {
			r, err = s.admit(r, t, need, sc)
		}
		if err == nil && need == slipway.RolePredict {
			var retry string
			if retry, err = s.limitPredictions(t); retry != "" {
				w.Header().Set("Retry-After", retry)
			}
		}
		if err != nil {
			s.problem(w, r, err)
			if auditRefusals && slipway.ErrorCode(err) != slipway.ERATELIMITED { // a rate limit is load, not an access refusal
				s.auditRefusal(r, err)
			}
			return
		}
		next(w, r) // admit recorded the token in the request's info (withRequestID put it in the context)
	}
}

// limitPredictions applies token t's rate limit to a prediction: refused with the seconds to wait before a
// retry (for Retry-After, or gRPC's retry-after trailer).
func (s *Server) limitPredictions(t *slipway.Token) (retryAfter string, err error) {
	if t.RateLimit == nil {
		return "", nil
	}
	if ok, wait := s.limiter.allow(t, time.Now()); !ok {
		return s.limiter.refuse(t, wait)
	}
	return "", nil
}

func tokenOf(r *http.Request) *slipway.Token {
	return infoOf(r).token
}

func actor(r *http.Request) string {
	if t := tokenOf(r); t != nil {
		return t.Name
	}
	return ""
}
