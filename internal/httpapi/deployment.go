package httpapi

import (
	"context"
	"net/http"
	"strconv"
	"strings"

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
	return replyCreated(w, "/api/v1/deployments/"+d.Name, d)
}

func (s *Server) handleDeploymentList(w http.ResponseWriter, r *http.Request) error {
	ds, err := s.deployments.List(r.Context())
	return replyAll(w, ds, err)
}

func (s *Server) handleDeploymentGet(w http.ResponseWriter, r *http.Request) error {
	return replyDeployment(w, r, s.deployments.Get)
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
	if m := r.Header.Get("If-Match"); m != "" && in.Revision == nil {
		rev, err := strconv.ParseInt(strings.Trim(strings.TrimPrefix(m, "W/"), `"`), 10, 64)
		if err != nil {
			return slipway.Errorf(slipway.EINVALID, "If-Match %q is not a deployment revision: give the \"revision\" of GET /api/v1/deployments/%s", m, name)
		}
		in.Revision = &rev
	}
	d, err := s.deployments.Update(r.Context(), name, in)
	return replyOK(w, d, err)
}

func (s *Server) handleDeploymentDelete(w http.ResponseWriter, r *http.Request) error {
	name, err := deploymentName(r)
	if err != nil {
		return err
	}
	if err := s.deployments.Delete(r.Context(), name); err != nil {
		return err
	}
	s.owners.evict() // the name may come back in another project
	return noContent(w)
}

func (s *Server) handleDeploymentActivate(w http.ResponseWriter, r *http.Request) error {
	return replyDeployment(w, r, s.deployments.Activate)
}

func (s *Server) handleDeploymentDeactivate(w http.ResponseWriter, r *http.Request) error {
	return replyDeployment(w, r, s.deployments.Deactivate)
}

// replyDeployment ends a request about the deployment named in the path: op reads or changes it, and the
// answer is the deployment op returns.
func replyDeployment(w http.ResponseWriter, r *http.Request, op func(ctx context.Context, name string) (*slipway.Deployment, error)) error {
	name, err := deploymentName(r)
	if err != nil {
		return err
	}
	d, err := op(r.Context(), name)
	return replyOK(w, d, err)
}
