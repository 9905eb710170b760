package httpapi

import (
	"net/http"

	"github.com/slipway-ml/slipway"
)

func (s *Server) handleModelCreate(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		Name        string            `json:"name"`
		Description string            `json:"description"`
		Tags        map[string]string `json:"tags"`
	}
	if err := decodeJSON(w, r, &in, 1<<20); err != nil {
		return err
	}
	if err := slipway.ValidateName("model", in.Name); err != nil {
		return err
	}
	m := &slipway.Model{Name: in.Name, Description: in.Description, Tags: in.Tags}
	if err := s.catalog.Store().CreateModel(r.Context(), m); err != nil {
		return err
	}
	m, err := s.catalog.Store().FindModel(r.Context(), in.Name)
	if err != nil {
		return err
	}
	return replyCreated(w, "/api/v1/models/"+m.Name, m)
}

func (s *Server) handleModelList(w http.ResponseWriter, r *http.Request) error {
	offset, limit, err := pageParams(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	f := slipway.ModelFilter{Name: q.Get("name"), Tag: q.Get("tag"), Offset: offset, Limit: limit}
	ms, total, err := s.catalog.Store().FindModels(r.Context(), f)
	if err != nil {
		return err
	}
	return reply(w, http.StatusOK, newPage(ms, total, offset, limit))
}

// modelName validates the {model} path value.
func modelName(r *http.Request) (string, error) { return pathName(r, "model", "model") }

func (s *Server) handleModelGet(w http.ResponseWriter, r *http.Request) error {
	name, err := modelName(r)
	if err != nil {
		return err
	}
	m, err := s.catalog.Store().FindModel(r.Context(), name)
	return replyOK(w, m, err)
}

func (s *Server) handleModelUpdate(w http.ResponseWriter, r *http.Request) error {
	name, err := modelName(r)
	if err != nil {
		return err
	}
	var u slipway.ModelUpdate
	if err := decodeJSON(w, r, &u, 1<<20); err != nil {
		return err
	}
	m, err := s.catalog.Store().UpdateModel(r.Context(), name, u)
	return replyOK(w, m, err)
}

func (s *Server) handleModelDelete(w http.ResponseWriter, r *http.Request) error {
	name, err := modelName(r)
	if err != nil {
		return err
	}
	if err := s.catalog.Store().DeleteModel(r.Context(), name); err != nil {
		return err
	}
	return noContent(w)
}
