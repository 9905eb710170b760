package httpapi

import (
	"net/http"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/rollout"
)

// rolloutRoutes lists the routes of gated rollouts; they join the table in server.go. Being under
// /api/v1/deployments/{name}, they are forwarded to the server hosting the deployment, which drives them.
func (s *Server) rolloutRoutes() []route {
	return []route{
		{"POST /api/v1/deployments/{name}/rollouts", s.withRollouts(s.handleRolloutStart), slipway.RoleEditor},
		{"GET /api/v1/deployments/{name}/rollouts", s.withRollouts(s.handleRolloutList), slipway.RoleViewer},
		{"GET /api/v1/deployments/{name}/rollouts/{id}", s.withRollouts(s.handleRolloutGet), slipway.RoleViewer},
		{"POST /api/v1/deployments/{name}/rollouts/{id}/cancel", s.withRollouts(s.handleRolloutCancel), slipway.RoleEditor},
	}
}

// withRollouts checks the deployment's name and that rollouts run on this server.
func (s *Server) withRollouts(h func(http.ResponseWriter, *http.Request, *rollout.Service, string) error) http.HandlerFunc {
	return s.handle(func(w http.ResponseWriter, r *http.Request) error {
		name, err := deploymentName(r)
		if err != nil {
			return err
		}
		if s.rollouts == nil {
			return slipway.Errorf(slipway.EUNAVAILABLE, "rollouts are not running on this server")
		}
		return h(w, r, s.rollouts, name)
	})
}

func (s *Server) handleRolloutStart(w http.ResponseWriter, r *http.Request, svc *rollout.Service, name string) error {
	var in slipway.RolloutSpec
	if err := decodeJSON(w, r, &in, 1<<20); err != nil {
		return err
	}
	ro, err := svc.Start(r.Context(), name, in, actor(r))
	if err != nil {
		return err
	}
	return replyCreated(w, "/api/v1/deployments/"+name+"/rollouts/"+ro.ID, ro)
}

func (s *Server) handleRolloutList(w http.ResponseWriter, r *http.Request, svc *rollout.Service, name string) error {
	rs, err := svc.List(r.Context(), name)
	return replyAll(w, rs, err)
}

func (s *Server) handleRolloutGet(w http.ResponseWriter, r *http.Request, svc *rollout.Service, name string) error {
	ro, err := svc.Get(r.Context(), name, r.PathValue("id"))
	return replyOK(w, ro, err)
}

func (s *Server) handleRolloutCancel(w http.ResponseWriter, r *http.Request, svc *rollout.Service, name string) error {
	ro, err := svc.Cancel(r.Context(), name, r.PathValue("id"), actor(r))
	return replyOK(w, ro, err)
}
