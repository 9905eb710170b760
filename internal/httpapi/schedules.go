package httpapi

import (
	"net/http"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/jobs"
)

func (s *Server) handleScheduleCreate(w http.ResponseWriter, r *http.Request, svc *jobs.Service) error {
	var in slipway.ScheduleSpec
	if err := decodeJSON(w, r, &in, 1<<20); err != nil {
		return err
	}
	sch := &slipway.Schedule{Name: in.Name, Cron: in.Cron, Timezone: in.Timezone, Target: in.Target, Args: in.Args, Env: in.Env,
		Params: in.Params, Batch: in.Batch, ConcurrencyPolicy: in.ConcurrencyPolicy, CatchUp: in.CatchUp}
	created, err := svc.CreateSchedule(r.Context(), sch, actor(r))
	if err != nil {
		return err
	}
	return replyCreated(w, "/api/v1/schedules/"+created.Name, created)
}

func (s *Server) handleScheduleList(w http.ResponseWriter, r *http.Request, svc *jobs.Service) error {
	list, err := svc.ListSchedules(r.Context())
	return replyAll(w, list, err)
}

func scheduleName(r *http.Request) (string, error) { return pathName(r, "schedule", "schedule") }

func (s *Server) handleScheduleGet(w http.ResponseWriter, r *http.Request, svc *jobs.Service) error {
	name, err := scheduleName(r)
	if err != nil {
		return err
	}
	sch, err := svc.GetSchedule(r.Context(), name)
	return replyOK(w, sch, err)
}

func (s *Server) handleScheduleDelete(w http.ResponseWriter, r *http.Request, svc *jobs.Service) error {
	name, err := scheduleName(r)
	if err != nil {
		return err
	}
	if err := svc.DeleteSchedule(r.Context(), name); err != nil {
		return err
	}
	return noContent(w)
}
