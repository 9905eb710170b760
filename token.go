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
	Role       Role       `json:"role"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
	// Secret is set only in the response that creates the token.
	Secret string `json:"token,omitempty"`
}

// TokenStore persists tokens.
type TokenStore interface {
	CreateToken(ctx context.Context, t *Token, hash string) error
	FindTokenByHash(ctx context.Context, hash string) (*Token, error)
	FindTokens(ctx context.Context) ([]*Token, error)
	RevokeToken(ctx context.Context, id string) error
	CountTokens(ctx context.Context) (int, error)
}
