package httpapi

import (
	"crypto/rand"
	"encoding/base32"
	"net/http"
	"strings"
	"time"

	"github.com/slipway-ml/slipway"
)

// NewTokenSecret returns a fresh random secret with a recognisable prefix (so secret scanners can find leaks).
func NewTokenSecret() string {
	var b [32]byte
	rand.Read(b[:])
	return "slw_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

func (s *Server) handleTokenCreate(w http.ResponseWriter, r *http.Request) error {
	var in slipway.TokenSpec
	if err := decodeJSON(w, r, &in, 64<<10); err != nil {
		return err
	}
	if err := slipway.ValidateName("token", in.Name); err != nil {
		return err
	}
	if err := in.ValidateAccess(); err != nil {
		return err
	}
	for p := range in.Projects {
		if s.projects == nil {
			return slipway.Errorf(slipway.EINVALID, "this server has no projects")
		}
		if _, err := s.projects.FindProject(r.Context(), p); slipway.ErrorCode(err) == slipway.ENOTFOUND {
			return slipway.Errorf(slipway.EINVALID, "project %q does not exist: create it first (slipway projects create %s)", p, p)
		} else if err != nil {
			return err
		}
	}
	if err := in.RateLimit.Validate(); err != nil {
		return err
	}
	now := time.Now().UTC()
	expires, err := in.Expiry(now, s.maxTokenTTL)
	if err != nil {
		return err
	}
	t := &slipway.Token{ID: newID()[:16], Name: in.Name, Role: in.Role, Projects: in.Projects, CreatedAt: now, ExpiresAt: expires, RateLimit: in.RateLimit,
		Secret: NewTokenSecret()}
	if err := s.tokens.CreateToken(r.Context(), t, HashToken(t.Secret)); err != nil {
		return err
	}
	return replyCreated(w, "/api/v1/tokens/"+t.ID, t)
}

func (s *Server) handleTokenList(w http.ResponseWriter, r *http.Request) error {
	ts, err := s.tokens.FindTokens(r.Context())
	return replyAll(w, ts, err)
}

func (s *Server) handleTokenRevoke(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if t := tokenOf(r); t != nil && t.ID == id {
		return slipway.Errorf(slipway.ECONFLICT, "refusing to revoke the token making this request: use another admin token")
	}
	if err := s.tokens.RevokeToken(r.Context(), id); err != nil {
		return err
	}
	s.auth.evict()
	return noContent(w)
}

// handleTokenRotate gives a token a new secret. The old secret keeps working for the grace period, so the
// clients holding it can be moved over one by one; revoking the token ends both at once.
func (s *Server) handleTokenRotate(w http.ResponseWriter, r *http.Request) error {
	var in slipway.TokenRotation
	if err := decodeOptionalJSON(w, r, &in, 64<<10); err != nil {
		return err
	}
	now := time.Now().UTC()
	graceUntil, err := in.GraceUntil(now)
	if err != nil {
		return err
	}
	expires, setExpiry, err := in.NewExpiry(now, s.maxTokenTTL)
	if err != nil {
		return err
	}
	secret := NewTokenSecret()
	t, err := s.tokens.RotateToken(r.Context(), r.PathValue("id"), HashToken(secret), graceUntil, expires, setExpiry)
	if err != nil {
		return err
	}
	s.auth.evict()
	t.Secret = secret
	writeJSON(w, http.StatusOK, t)
	return nil
}

// whoami is the request's token, the project the call works in, and the token's role there (its global role,
// else its role in that project), so that a client reads "role" the same way for both kinds of tokens.
type whoami struct {
	*slipway.Token
	Role    slipway.Role `json:"role,omitempty"`
	Project string       `json:"project,omitempty"`
}

func (s *Server) handleWhoami(w http.ResponseWriter, r *http.Request) {
	t, project := tokenOf(r), infoOf(r).project
	writeJSON(w, http.StatusOK, whoami{Token: t, Role: t.RoleIn(project), Project: project})
}
