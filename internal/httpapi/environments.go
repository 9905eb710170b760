package httpapi

// The server's named Python environments (docs/deployments.md, "Python environments"): which interpreters
// python versions may choose, with their Python and package versions as the interpreters report them now.

import (
	"context"
	"net/http"
	"time"

	"github.com/slipway-ml/slipway"
)

// environmentsTimeout bounds the interpreters' answers (each starts once per call, all at once).
const environmentsTimeout = 30 * time.Second

func (s *Server) environmentRoutes() []route {
	return []route{
		{"GET /api/v1/environments", s.handle(s.handleEnvironmentList), slipway.RoleViewer},
	}
}

func (s *Server) handleEnvironmentList(w http.ResponseWriter, r *http.Request) error {
	envs := []slipway.PythonEnvironment{}
	if s.pythonEnvs != nil {
		ctx, cancel := context.WithTimeout(r.Context(), environmentsTimeout)
		defer cancel()
		envs = s.pythonEnvs(ctx)
	}
	return replyAll(w, envs, nil)
}
