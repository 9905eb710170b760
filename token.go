package slipway

import (
	"context"
	"time"
)

// Role is what a token may do. Roles are ordered: admin ⊃ editor ⊃ viewer; predict is separate.
type Role string

const (
	RoleAdmin   Role = "admin"   // everything, including tokens
	RoleEditor  Role = "editor"  // register models, deploy, run jobs
	RoleViewer  Role = "viewer"  // read the catalog and runs
	RolePredict Role = "predict" // call prediction endpoints only
)

// Valid reports whether r is a known role.
func (r Role) Valid() bool {
	switch r {
	case RoleAdmin, RoleEditor, RoleViewer, RolePredict:
		return true
	}
	return false
}

// Allows reports whether a token with role r may act with the needed role.
func (r Role) Allows(need Role) bool {
	switch need {
	case RoleAdmin:
		return r == RoleAdmin
	case RoleEditor:
		return r == RoleAdmin || r == RoleEditor
	case RoleViewer:
		return r == RoleAdmin || r == RoleEditor || r == RoleViewer
	case RolePredict:
		return r == RoleAdmin || r == RoleEditor || r == RolePredict
	}
	return false
}

// Token is an API credential. Only the SHA-256 of the secret is stored.
type Token struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	Role       Role       `json:"role,omitempty"` // the global role (every project); empty for a token limited to Projects
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
	// ExpiresAt is when the token stops working (nil: never).
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	// RotatedAt is the last rotation; until PreviousSecretValidUntil the secret it replaced still works, so
	// that the clients holding it can be moved to the new one without an outage.
	RotatedAt                *time.Time `json:"rotated_at,omitempty"`
	PreviousSecretValidUntil *time.Time `json:"previous_secret_valid_until,omitempty"`
	// RateLimit bounds the token's calls to the prediction endpoints (nil: no limit but the deployments' own).
	RateLimit *TokenRateLimit `json:"rate_limit,omitempty"`
	// Secret is set only in the responses that create or rotate the token.
	Secret string `json:"token,omitempty"`

	// Projects gives a token without a global role its role in each project it may see; the others do not
	// exist for it (404).
	Projects map[string]Role `json:"projects,omitempty"`
}

// Usable reports why t cannot authenticate a request at now (revoked, expired), or nil when it can.
func (t *Token) Usable(now time.Time) error {
	if t.RevokedAt != nil {
		return Errorf(EUNAUTHORIZED, "token %q was revoked on %s", t.Name, t.RevokedAt.Format(time.RFC3339))
	}
	if t.ExpiresAt != nil && !now.Before(*t.ExpiresAt) {
		return Errorf(EUNAUTHORIZED, "token %q expired on %s: ask an admin for a new one (slipway tokens create) or to rotate it with a new expiry",
			t.Name, t.ExpiresAt.Format(time.RFC3339))
	}
	return nil
}

// TokenRateLimit is a token bucket: Burst calls at once, refilled at RequestsPerSecond.
type TokenRateLimit struct {
	RequestsPerSecond float64 `json:"requests_per_second"`
	Burst             int     `json:"burst"`
}

// Validate checks the limit; a zero Burst means one second's worth of calls (at least 1).
func (l *TokenRateLimit) Validate() error {
	if l == nil {
		return nil
	}
	if !(l.RequestsPerSecond > 0) || l.RequestsPerSecond > 1e6 {
		return Errorf(EINVALID, "rate_limit.requests_per_second %v: want more than 0 and at most 1000000", l.RequestsPerSecond)
	}
	if l.Burst < 0 || l.Burst > 1_000_000 {
		return Errorf(EINVALID, "rate_limit.burst %d: want 0 (one second's worth) to 1000000", l.Burst)
	}
	if l.Burst == 0 {
		l.Burst = max(1, int(l.RequestsPerSecond))
	}
	return nil
}

// TokenSpec is what creating a token takes. At most one of ExpiresIn and ExpiresAt is set; with neither, the
// token lasts as long as the server's maximum token lifetime allows (forever when it has none).
type TokenSpec struct {
	Name      string     `json:"name"`
	Role      Role       `json:"role,omitempty"`
	ExpiresIn string     `json:"expires_in,omitempty"` // a duration: "90s", "12h", "720h"
	ExpiresAt *time.Time `json:"expires_at,omitempty"` // RFC 3339
	// RateLimit bounds the token's prediction calls (429 with Retry-After beyond it).
	RateLimit *TokenRateLimit `json:"rate_limit,omitempty"`

	// Projects limits the token to these projects, with a role in each (instead of a global Role).
	Projects map[string]Role `json:"projects,omitempty"`
}

// Expiry resolves the spec's lifetime at now under the server's maximum (0: none): the time the token
// expires, or nil for never.
func (s TokenSpec) Expiry(now time.Time, maxTTL time.Duration) (*time.Time, error) {
	return resolveExpiry(now, s.ExpiresIn, s.ExpiresAt, maxTTL)
}

// TokenRotation is what rotating a token takes: how long the old secret keeps working (default one hour),
// and optionally a new lifetime for the token (otherwise its expiry stays as it was).
type TokenRotation struct {
	Grace     string     `json:"grace,omitempty"`
	ExpiresIn string     `json:"expires_in,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// DefaultRotationGrace is how long a rotated-out secret keeps working when the rotation does not say.
const DefaultRotationGrace = time.Hour

// GraceUntil is when the rotated-out secret stops working, for a rotation at now.
func (r TokenRotation) GraceUntil(now time.Time) (time.Time, error) {
	if r.Grace == "" {
		return now.Add(DefaultRotationGrace), nil
	}
	d, err := time.ParseDuration(r.Grace)
	if err != nil || d < 0 {
		return time.Time{}, Errorf(EINVALID, "invalid grace %q: use a duration such as 0s, 15m or 24h", r.Grace)
	}
	return now.Add(d), nil
}

// NewExpiry is the token's expiry after the rotation: changed only when the rotation sets one.
func (r TokenRotation) NewExpiry(now time.Time, maxTTL time.Duration) (*time.Time, bool, error) {
	if r.ExpiresIn == "" && r.ExpiresAt == nil {
		return nil, false, nil
	}
	exp, err := resolveExpiry(now, r.ExpiresIn, r.ExpiresAt, maxTTL)
	return exp, err == nil, err
}

func resolveExpiry(now time.Time, expiresIn string, expiresAt *time.Time, maxTTL time.Duration) (*time.Time, error) {
	var exp time.Time
	switch {
	case expiresIn != "" && expiresAt != nil:
		return nil, Errorf(EINVALID, "give expires_in or expires_at, not both")
	case expiresIn != "":
		d, err := time.ParseDuration(expiresIn)
		if err != nil || d <= 0 {
			return nil, Errorf(EINVALID, "invalid expires_in %q: use a positive duration such as 90s, 12h or 720h", expiresIn)
		}
		exp = now.Add(d)
	case expiresAt != nil:
		if !expiresAt.After(now) {
			return nil, Errorf(EINVALID, "expires_at %s is in the past", expiresAt.Format(time.RFC3339))
		}
		exp = expiresAt.UTC()
	case maxTTL > 0:
		exp = now.Add(maxTTL)
	default:
		return nil, nil
	}
	if maxTTL > 0 && exp.Sub(now) > maxTTL {
		return nil, Errorf(EINVALID, "a token may last at most %s on this server (--max-token-ttl); asked for %s",
			maxTTL, exp.Sub(now).Round(time.Second))
	}
	exp = exp.UTC()
	return &exp, nil
}

// TokenStore persists tokens.
type TokenStore interface {
	CreateToken(ctx context.Context, t *Token, hash string) error
	FindTokenByHash(ctx context.Context, hash string) (*Token, error)
	FindTokens(ctx context.Context) ([]*Token, error)
	RevokeToken(ctx context.Context, id string) error
	// FindTokenByPreviousHash finds the token whose rotated-out secret hashes to hash (the caller checks
	// its grace period).
	FindTokenByPreviousHash(ctx context.Context, hash string) (*Token, error)
	// RotateToken replaces an unrevoked token's secret hash, keeping the old one valid until graceUntil, and
	// sets its expiry when setExpiry is true. It returns the token as it now is.
	RotateToken(ctx context.Context, id, newHash string, graceUntil time.Time, expiresAt *time.Time, setExpiry bool) (*Token, error)
	CountTokens(ctx context.Context) (int, error)
}
