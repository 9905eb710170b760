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
	var in struct {
		Name string       `json:"name"`
		Role slipway.Role `json:"role"`
	}
	if err := decodeJSON(w, r, &in, 64<<10); err != nil {
		return err
	}
	if err := slipway.ValidateName("token", in.Name); err != nil {
		return err
	}
	if !in.Role.Valid() {
		return slipway.Errorf(slipway.EINVALID, "invalid role %q: use admin, editor, viewer or predict", in.Role)
	}
	t := &slipway.Token{ID: newID()[:16], Name: in.Name, Role: in.Role, CreatedAt: time.Now().UTC(), Secret: NewTokenSecret()}
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

func (s *Server) handleWhoami(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, tokenOf(r))
}
