package httpapi

import (
	"bytes"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"path"
	"strconv"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/jobs"
)

// jobRoutes lists the routes of this feature area; they join the table in server.go.
func (s *Server) jobRoutes() []route {
	return []route{
		{"POST /api/v1/jobs", s.withJobs(s.handleJobCreate), slipway.RoleEditor},
		{"GET /api/v1/jobs", s.withJobs(s.handleJobList), slipway.RoleViewer},
		{"GET /api/v1/jobs/{job}", s.withJobs(s.handleJobGet), slipway.RoleViewer},
		{"DELETE /api/v1/jobs/{job}", s.withJobs(s.handleJobDelete), slipway.RoleEditor},
		{"POST /api/v1/jobs/{job}/runs", s.withJobs(s.handleJobRunCreate), slipway.RoleEditor},

		{"GET /api/v1/job-runs", s.withJobs(s.handleJobRunList), slipway.RoleViewer},
		{"GET /api/v1/job-runs/{id}", s.withJobs(s.handleJobRunGet), slipway.RoleViewer},
		{"GET /api/v1/job-runs/{id}/logs", s.withJobs(s.handleJobRunLogs), slipway.RoleViewer},
		{"POST /api/v1/job-runs/{id}/cancel", s.withJobs(s.handleJobRunCancel), slipway.RoleEditor},
		{"GET /api/v1/job-runs/{id}/outputs", s.withJobs(s.handleJobRunOutputs), slipway.RoleViewer},
		{"GET /api/v1/job-runs/{id}/outputs/file", s.withJobs(s.handleJobRunOutputFile), slipway.RoleViewer},

		{"POST /api/v1/pipelines", s.withJobs(s.handlePipelineCreate), slipway.RoleEditor},
		{"GET /api/v1/pipelines", s.withJobs(s.handlePipelineList), slipway.RoleViewer},
		{"GET /api/v1/pipelines/{pipeline}", s.withJobs(s.handlePipelineGet), slipway.RoleViewer},
		{"DELETE /api/v1/pipelines/{pipeline}", s.withJobs(s.handlePipelineDelete), slipway.RoleEditor},
		{"POST /api/v1/pipelines/{pipeline}/runs", s.withJobs(s.handlePipelineRunCreate), slipway.RoleEditor},
		{"GET /api/v1/pipeline-runs", s.withJobs(s.handlePipelineRunList), slipway.RoleViewer},
		{"GET /api/v1/pipeline-runs/{id}", s.withJobs(s.handlePipelineRunGet), slipway.RoleViewer},
		{"POST /api/v1/pipeline-runs/{id}/cancel", s.withJobs(s.handlePipelineRunCancel), slipway.RoleEditor},
		{"POST /api/v1/pipeline-runs/{id}/retry", s.withJobs(s.handlePipelineRunRetry), slipway.RoleEditor},

		{"POST /api/v1/schedules", s.withJobs(s.handleScheduleCreate), slipway.RoleEditor},
		{"GET /api/v1/schedules", s.withJobs(s.handleScheduleList), slipway.RoleViewer},
		{"GET /api/v1/schedules/{schedule}", s.withJobs(s.handleScheduleGet), slipway.RoleViewer},
		{"DELETE /api/v1/schedules/{schedule}", s.withJobs(s.handleScheduleDelete), slipway.RoleEditor},
	}
}

const maxJobSpecBytes = 1 << 20

// withJobs adapts a handler of the jobs area (jobs, pipelines, schedules): it gets the jobs service, and a server
// built without it answers EUNAVAILABLE.
func (s *Server) withJobs(h func(w http.ResponseWriter, r *http.Request, svc *jobs.Service) error) http.HandlerFunc {
	return s.handle(func(w http.ResponseWriter, r *http.Request) error {
		if s.jobs == nil {
			return slipway.Errorf(slipway.EUNAVAILABLE, "jobs are not enabled on this server")
		}
		return h(w, r, s.jobs)
	})
}

// readJobUpload reads the multipart parts of a job or pipeline creation: the artifact (spooled to disk under
// the upload cap) and the named JSON/YAML part, returned raw.
func (s *Server) readJobUpload(r *http.Request, partName string, required bool) ([]byte, jobs.Upload, func(), error) {
	var spec []byte
	art, cleanup, err := s.readArtifactForm(r, fmt.Sprintf("%q and \"artifact\" (file)", partName), func(part *multipart.Part) error {
		if part.FormName() != partName {
			return slipway.Errorf(slipway.EINVALID, "unexpected form field %q: only %q and \"artifact\"", part.FormName(), partName)
		}
		var err error
		if spec, err = io.ReadAll(io.LimitReader(part, maxJobSpecBytes+1)); err != nil {
			return uploadReadError(err)
		}
		if len(spec) > maxJobSpecBytes {
			return slipway.Errorf(slipway.ETOOLARGE, "the %q part is larger than %d bytes", partName, maxJobSpecBytes)
		}
		return nil
	})
	up := jobs.Upload{Path: art.path, Filename: art.filename}
	switch {
	case err != nil:
		return nil, up, cleanup, err
	case spec == nil:
		return nil, up, cleanup, slipway.Errorf(slipway.EINVALID, "missing the %q part", partName)
	case required && up.Path == "":
		return nil, up, cleanup, slipway.Errorf(slipway.EINVALID, "missing the \"artifact\" part: attach a .py, .sh or .jar file, or a .zip/.tar/.tar.gz project")
	}
	return spec, up, cleanup, nil
}

// handleJobCreate creates a job from a multipart upload: `spec` (JSON) and `artifact`.
func (s *Server) handleJobCreate(w http.ResponseWriter, r *http.Request, svc *jobs.Service) error {
	r.Body = http.MaxBytesReader(w, r.Body, s.maxUp+maxJobSpecBytes+64<<10)
	raw, up, cleanup, err := s.readJobUpload(r, "spec", true)
	defer cleanup()
	if err != nil {
		return err
	}
	var spec slipway.JobSpec
	if err := decodeStrict(bytes.NewReader(raw), &spec, "spec"); err != nil {
		return err
	}
	j, err := svc.CreateJob(r.Context(), spec, up, actor(r))
	if err != nil {
		return err
	}
	return replyCreated(w, "/api/v1/jobs/"+j.Name, j)
}

func (s *Server) handleJobList(w http.ResponseWriter, r *http.Request, svc *jobs.Service) error {
	list, err := svc.ListJobs(r.Context())
	return replyAll(w, list, err)
}

func jobName(r *http.Request) (string, error) { return pathName(r, "job", "job") }

func (s *Server) handleJobGet(w http.ResponseWriter, r *http.Request, svc *jobs.Service) error {
	name, err := jobName(r)
	if err != nil {
		return err
	}
	j, err := svc.GetJob(r.Context(), name)
	return replyOK(w, j, err)
}

func (s *Server) handleJobDelete(w http.ResponseWriter, r *http.Request, svc *jobs.Service) error {
	name, err := jobName(r)
	if err != nil {
		return err
	}
	if err := svc.DeleteJob(r.Context(), name); err != nil {
		return err
	}
	return noContent(w)
}

// handleJobRunCreate queues a run: {"args": [...], "env": {...}} (both optional; an empty body is fine).
func (s *Server) handleJobRunCreate(w http.ResponseWriter, r *http.Request, svc *jobs.Service) error {
	name, err := jobName(r)
	if err != nil {
		return err
	}
	var in jobs.RunInput
	if err := decodeOptionalJSON(w, r, &in, 1<<20); err != nil {
		return err
	}
	run, err := svc.RunJob(r.Context(), name, in, actor(r))
	if err != nil {
		return err
	}
	return replyCreated(w, "/api/v1/job-runs/"+run.ID, run)
}

func (s *Server) handleJobRunList(w http.ResponseWriter, r *http.Request, svc *jobs.Service) error {
	offset, limit, err := pageParams(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	runs, total, err := svc.ListRuns(r.Context(), slipway.JobRunFilter{Job: q.Get("job"), PipelineRun: q.Get("pipeline_run"),
		State: slipway.RunState(q.Get("state")), Offset: offset, Limit: limit})
	if err != nil {
		return err
	}
	return reply(w, http.StatusOK, newPage(runs, total, offset, limit))
}

func (s *Server) handleJobRunGet(w http.ResponseWriter, r *http.Request, svc *jobs.Service) error {
	run, err := svc.GetRun(r.Context(), r.PathValue("id"))
	return replyOK(w, run, err)
}

// handleJobRunLogs answers the log as text; ?follow=1 streams it until the run is over; ?offset=N starts at byte N
// (a follower that was cut off resumes there). Once the stream has started, an error is only logged.
func (s *Server) handleJobRunLogs(w http.ResponseWriter, r *http.Request, svc *jobs.Service) error {
	id := r.PathValue("id")
	q := r.URL.Query()
	follow := q.Get("follow") == "1" || q.Get("follow") == "true"
	var offset int64
	if v := q.Get("offset"); v != "" {
		var err error
		if offset, err = strconv.ParseInt(v, 10, 64); err != nil || offset < 0 {
			return slipway.Errorf(slipway.EINVALID, "offset must be a number ≥ 0, got %q", v)
		}
	}
	if _, err := svc.GetRun(r.Context(), id); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	rc := http.NewResponseController(w)
	flush := func() { _ = rc.Flush() } // a writer that cannot flush delivers the log at the end
	w.WriteHeader(http.StatusOK)
	flush()
	if err := svc.WriteLogs(r.Context(), id, offset, w, follow, flush); err != nil {
		s.log.WarnContext(r.Context(), "log stream ended with an error", "run_id", id, "error", err)
	}
	return nil
}

func (s *Server) handleJobRunCancel(w http.ResponseWriter, r *http.Request, svc *jobs.Service) error {
	run, err := svc.CancelRun(r.Context(), r.PathValue("id"), actor(r))
	return replyOK(w, run, err)
}

func (s *Server) handleJobRunOutputs(w http.ResponseWriter, r *http.Request, svc *jobs.Service) error {
	files, err := svc.Outputs(r.Context(), r.PathValue("id"))
	return replyAll(w, files, err)
}

// handleJobRunOutputFile downloads one output file: ?path=model/model.pkl.
func (s *Server) handleJobRunOutputFile(w http.ResponseWriter, r *http.Request, svc *jobs.Service) error {
	p := r.URL.Query().Get("path")
	if p == "" {
		return slipway.Errorf(slipway.EINVALID, "missing ?path=: name the output file (see GET .../outputs)")
	}
	f, err := svc.OpenOutput(r.Context(), r.PathValue("id"), p)
	if err != nil {
		return err
	}
	defer f.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", path.Base(p)))
	if st, err := f.Stat(); err == nil {
		w.Header().Set("Content-Length", strconv.FormatInt(st.Size(), 10))
	}
	if _, err := io.Copy(w, f); err != nil { // the body has started: the download is cut short
		s.log.WarnContext(r.Context(), "output file download cut short", "path", p, "error", err)
	}
	return nil
}
