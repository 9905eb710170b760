package httpapi

import (
	"net/http"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/monitor"
)

// shadowRoutes lists the routes of the shadow comparison and the captures export; they join the table in
// server.go.
func (s *Server) shadowRoutes() []route {
	return []route{
		{"GET /api/v1/deployments/{name}/shadow", s.withMonitorDeployment(s.handleShadowReport), slipway.RoleViewer},
		{"GET /api/v1/deployments/{name}/captures", s.withMonitorDeployment(s.handleCapturesExport), slipway.RoleViewer},
	}
}

// handleShadowReport compares the deployment's shadow with its live version over [from, to) (default: the
// last hour).
func (s *Server) handleShadowReport(w http.ResponseWriter, r *http.Request, m *monitor.Service, name string) error {
	from, to, err := timeRangeOr(r, time.Hour)
	if err != nil {
		return err
	}
	if _, err := s.deployments.Get(r.Context(), name); err != nil {
		return err
	}
	rep, err := m.ShadowReport(r.Context(), name, from, to)
	return replyOK(w, rep, err)
}
