package httpapi

import (
	"net/http"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/deploy"
)

func deploymentName(r *http.Request) (string, error) { return pathName(r, "name", "deployment") }

func (s *Server) handleDeploymentCreate(w http.ResponseWriter, r *http.Request) {
	var in deploy.Spec
	if err := decodeJSON(w, r, &in, 1<<20); err != nil {
		s.problem(w, r, err)
		return
	}
	d, err := s.deployments.Create(r.Context(), in)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/deployments/"+d.Name)
	writeJSON(w, http.StatusCreated, d)
}

func (s *Server) handleDeploymentList(w http.ResponseWriter, r *http.Request) {
	ds, err := s.deployments.List(r.Context())
	if err != nil {
		s.problem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, newPage(ds, len(ds), 0, len(ds)))
}

func (s *Server) handleDeploymentGet(w http.ResponseWriter, r *http.Request) {
	name, err := deploymentName(r)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	d, err := s.deployments.Get(r.Context(), name)
	s.respond(w, r, http.StatusOK, d, err)
}

func (s *Server) handleDeploymentUpdate(w http.ResponseWriter, r *http.Request) {
	name, err := deploymentName(r)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	var in deploy.Spec
	if err := decodeJSON(w, r, &in, 1<<20); err != nil {
		s.problem(w, r, err)
		return
	}
	if in.Name != "" && in.Name != name {
		s.problem(w, r, slipway.Errorf(slipway.EINVALID, "a deployment cannot be renamed (%s → %s)", name, in.Name))
		return
	}
	d, err := s.deployments.Update(r.Context(), name, in)
	s.respond(w, r, http.StatusOK, d, err)
}

func (s *Server) handleDeploymentDelete(w http.ResponseWriter, r *http.Request) {
	name, err := deploymentName(r)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	if err := s.deployments.Delete(r.Context(), name); err != nil {
		s.problem(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleDeploymentActivate(w http.ResponseWriter, r *http.Request) {
	name, err := deploymentName(r)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	d, err := s.deployments.Activate(r.Context(), name)
	s.respond(w, r, http.StatusOK, d, err)
}

func (s *Server) handleDeploymentDeactivate(w http.ResponseWriter, r *http.Request) {
	name, err := deploymentName(r)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	d, err := s.deployments.Deactivate(r.Context(), name)
	s.respond(w, r, http.StatusOK, d, err)
}
