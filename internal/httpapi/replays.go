package httpapi

import (
	"net/http"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/replay"
)

// replayRoutes lists the routes of replays; they join the table in server.go. Being under
// /api/v1/deployments/{name}, they are forwarded to the server hosting the deployment, which drives them.
func (s *Server) replayRoutes() []route {
	return []route{
		{"POST /api/v1/deployments/{name}/replays", s.withReplays(s.handleReplayStart), slipway.RoleEditor},
		{"GET /api/v1/deployments/{name}/replays", s.withReplays(s.handleReplayList), slipway.RoleViewer},
		{"GET /api/v1/deployments/{name}/replays/{id}", s.withReplays(s.handleReplayGet), slipway.RoleViewer},
		{"POST /api/v1/deployments/{name}/replays/{id}/cancel", s.withReplays(s.handleReplayCancel), slipway.RoleEditor},
	}
}

// withReplays checks the deployment's name and that replays run on this server.
func (s *Server) withReplays(h func(http.ResponseWriter, *http.Request, *replay.Service, string) error) http.HandlerFunc {
	return s.handle(func(w http.ResponseWriter, r *http.Request) error {
		name, err := deploymentName(r)
		if err != nil {
			return err
		}
		if s.replays == nil {
			return slipway.Errorf(slipway.EUNAVAILABLE, "replays are not running on this server (they need monitoring's captures)")
		}
		return h(w, r, s.replays, name)
	})
}

func (s *Server) handleReplayStart(w http.ResponseWriter, r *http.Request, svc *replay.Service, name string) error {
	var in slipway.ReplaySpec
	if err := decodeJSON(w, r, &in, 1<<20); err != nil {
		return err
	}
	rp, err := svc.Start(r.Context(), name, in, actor(r))
	if err != nil {
		return err
	}
	return replyCreated(w, "/api/v1/deployments/"+name+"/replays/"+rp.ID, rp)
}

func (s *Server) handleReplayList(w http.ResponseWriter, r *http.Request, svc *replay.Service, name string) error {
	rs, err := svc.List(r.Context(), name)
	return replyAll(w, rs, err)
}

func (s *Server) handleReplayGet(w http.ResponseWriter, r *http.Request, svc *replay.Service, name string) error {
	rp, err := svc.Get(r.Context(), name, r.PathValue("id"))
	return replyOK(w, rp, err)
}

func (s *Server) handleReplayCancel(w http.ResponseWriter, r *http.Request, svc *replay.Service, name string) error {
	rp, err := svc.Cancel(r.Context(), name, r.PathValue("id"), actor(r))
	return replyOK(w, rp, err)
}
