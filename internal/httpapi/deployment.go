package httpapi

import (
	"net/http"

	"github.com/slipway-ml/slipway"
)

func deploymentName(r *http.Request) (string, error) { return pathName(r, "name", "deployment") }

func (s *Server) handleDeploymentCreate(w http.ResponseWriter, r *http.Request) error {
	var in slipway.DeploymentSpec
	if err := decodeJSON(w, r, &in, 1<<20); err != nil {
		return err
	}
	d, err := s.deployments.Create(r.Context(), in)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/deployments/"+d.Name)
	return reply(w, http.StatusCreated, d)
}

func (s *Server) handleDeploymentList(w http.ResponseWriter, r *http.Request) error {
	ds, err := s.deployments.List(r.Context())
	if err != nil {
		return err
	}
	return reply(w, http.StatusOK, newPage(ds, len(ds), 0, len(ds)))
}

func (s *Server) handleDeploymentGet(w http.ResponseWriter, r *http.Request) error {
	name, err := deploymentName(r)
	if err != nil {
		return err
	}
	d, err := s.deployments.Get(r.Context(), name)
	if err != nil {
		return err
	}
	return reply(w, http.StatusOK, d)
}

func (s *Server) handleDeploymentUpdate(w http.ResponseWriter, r *http.Request) error {
	name, err := deploymentName(r)
	if err != nil {
		return err
	}
	var in slipway.DeploymentSpec
	if err := decodeJSON(w, r, &in, 1<<20); err != nil {
		return err
	}
	if in.Name != "" && in.Name != name {
		return slipway.Errorf(slipway.EINVALID, "a deployment cannot be renamed (%s → %s)", name, in.Name)
	}
	d, err := s.deployments.Update(r.Context(), name, in)
	if err != nil {
		return err
	}
	return reply(w, http.StatusOK, d)
}

func (s *Server) handleDeploymentDelete(w http.ResponseWriter, r *http.Request) error {
	name, err := deploymentName(r)
	if err != nil {
		return err
	}
	if err := s.deployments.Delete(r.Context(), name); err != nil {
		return err
	}
	return noContent(w)
}

func (s *Server) handleDeploymentActivate(w http.ResponseWriter, r *http.Request) error {
	name, err := deploymentName(r)
	if err != nil {
		return err
	}
	d, err := s.deployments.Activate(r.Context(), name)
	if err != nil {
		return err
	}
	return reply(w, http.StatusOK, d)
}

func (s *Server) handleDeploymentDeactivate(w http.ResponseWriter, r *http.Request) error {
	name, err := deploymentName(r)
	if err != nil {
		return err
	}
	d, err := s.deployments.Deactivate(r.Context(), name)
	if err != nil {
		return err
	}
	return reply(w, http.StatusOK, d)
}
