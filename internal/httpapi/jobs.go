package httpapi

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"strconv"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/jobs"
)

// jobRoutes lists the routes of this feature area; they join the table in server.go.
func (s *Server) jobRoutes() []route {
	return []route{
		{"POST /api/v1/jobs", s.handleJobCreate, slipway.RoleEditor},
		{"GET /api/v1/jobs", s.handleJobList, slipway.RoleViewer},
		{"GET /api/v1/jobs/{job}", s.handleJobGet, slipway.RoleViewer},
		{"DELETE /api/v1/jobs/{job}", s.handleJobDelete, slipway.RoleEditor},
		{"POST /api/v1/jobs/{job}/runs", s.handleJobRunCreate, slipway.RoleEditor},

		{"GET /api/v1/job-runs", s.handleJobRunList, slipway.RoleViewer},
		{"GET /api/v1/job-runs/{id}", s.handleJobRunGet, slipway.RoleViewer},
		{"GET /api/v1/job-runs/{id}/logs", s.handleJobRunLogs, slipway.RoleViewer},
		{"POST /api/v1/job-runs/{id}/cancel", s.handleJobRunCancel, slipway.RoleEditor},
		{"GET /api/v1/job-runs/{id}/outputs", s.handleJobRunOutputs, slipway.RoleViewer},
		{"GET /api/v1/job-runs/{id}/outputs/file", s.handleJobRunOutputFile, slipway.RoleViewer},

		{"POST /api/v1/pipelines", s.handlePipelineCreate, slipway.RoleEditor},
		{"GET /api/v1/pipelines", s.handlePipelineList, slipway.RoleViewer},
		{"GET /api/v1/pipelines/{pipeline}", s.handlePipelineGet, slipway.RoleViewer},
		{"DELETE /api/v1/pipelines/{pipeline}", s.handlePipelineDelete, slipway.RoleEditor},
		{"POST /api/v1/pipelines/{pipeline}/runs", s.handlePipelineRunCreate, slipway.RoleEditor},
		{"GET /api/v1/pipeline-runs", s.handlePipelineRunList, slipway.RoleViewer},
		{"GET /api/v1/pipeline-runs/{id}", s.handlePipelineRunGet, slipway.RoleViewer},
		{"POST /api/v1/pipeline-runs/{id}/cancel", s.handlePipelineRunCancel, slipway.RoleEditor},
		{"POST /api/v1/pipeline-runs/{id}/retry", s.handlePipelineRunRetry, slipway.RoleEditor},

		{"POST /api/v1/schedules", s.handleScheduleCreate, slipway.RoleEditor},
		{"GET /api/v1/schedules", s.handleScheduleList, slipway.RoleViewer},
		{"GET /api/v1/schedules/{schedule}", s.handleScheduleGet, slipway.RoleViewer},
		{"DELETE /api/v1/schedules/{schedule}", s.handleScheduleDelete, slipway.RoleEditor},
	}
}

const maxJobSpecBytes = 1 << 20

// jobsService returns the jobs service, or an EUNAVAILABLE error on a server built without it.
func (s *Server) jobsService() (*jobs.Service, error) {
	if s.jobs == nil {
		return nil, slipway.Errorf(slipway.EUNAVAILABLE, "jobs are not enabled on this server")
	}
	return s.jobs, nil
}

// readJobUpload reads the multipart parts of a job or pipeline creation: the artifact (spooled to disk under
// the upload cap) and the named JSON/YAML part, returned raw.
func (s *Server) readJobUpload(r *http.Request, partName string, required bool) ([]byte, jobs.Upload, func(), error) {
	var up jobs.Upload
	var spec []byte
	cleanup := func() {
		if up.Path != "" {
			removeFile(up.Path)
		}
	}
	mr, err := r.MultipartReader()
	if err != nil {
		return nil, up, cleanup, slipway.Errorf(slipway.EINVALID, "send multipart/form-data with parts %q and \"artifact\" (file): %v", partName, err)
	}
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, up, cleanup, uploadReadError(err)
		}
		switch part.FormName() {
		case partName:
			if spec, err = io.ReadAll(io.LimitReader(part, maxJobSpecBytes+1)); err != nil {
				return nil, up, cleanup, uploadReadError(err)
			}
			if len(spec) > maxJobSpecBytes {
				return nil, up, cleanup, slipway.Errorf(slipway.ETOOLARGE, "the %q part is larger than %d bytes", partName, maxJobSpecBytes)
			}
		case "artifact":
			if up.Path != "" {
				return nil, up, cleanup, slipway.Errorf(slipway.EINVALID, "more than one \"artifact\" part: send one file or archive")
			}
			up.Filename = path.Base(part.FileName())
			if up.Path, err = s.spool(part); err != nil {
				return nil, up, cleanup, err
			}
		default:
			return nil, up, cleanup, slipway.Errorf(slipway.EINVALID, "unexpected form field %q: only %q and \"artifact\"", part.FormName(), partName)
		}
	}
	if spec == nil {
		return nil, up, cleanup, slipway.Errorf(slipway.EINVALID, "missing the %q part", partName)
	}
	if required && up.Path == "" {
		return nil, up, cleanup, slipway.Errorf(slipway.EINVALID, "missing the \"artifact\" part: attach a .py, .sh or .jar file, or a .zip/.tar/.tar.gz project")
	}
	return spec, up, cleanup, nil
}

// handleJobCreate creates a job from a multipart upload: `spec` (JSON) and `artifact`.
func (s *Server) handleJobCreate(w http.ResponseWriter, r *http.Request) {
	svc, err := s.jobsService()
	if err != nil {
		s.problem(w, r, err)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, s.maxUp+maxJobSpecBytes+64<<10)
	raw, up, cleanup, err := s.readJobUpload(r, "spec", true)
	defer cleanup()
	if err != nil {
		s.problem(w, r, err)
		return
	}
	var spec slipway.JobSpec
	if err := decodeStrict(bytesReader(raw), &spec, "spec"); err != nil {
		s.problem(w, r, err)
		return
	}
	j, err := svc.CreateJob(r.Context(), spec, up, actor(r))
	if err != nil {
		s.problem(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/jobs/"+j.Name)
	writeJSON(w, http.StatusCreated, j)
}

func (s *Server) handleJobList(w http.ResponseWriter, r *http.Request) {
	svc, err := s.jobsService()
	if err != nil {
		s.problem(w, r, err)
		return
	}
	list, err := svc.ListJobs(r.Context())
	if err != nil {
		s.problem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, newPage(list, len(list), 0, len(list)))
}

func jobName(r *http.Request) (string, error) { return pathName(r, "job", "job") }

func (s *Server) handleJobGet(w http.ResponseWriter, r *http.Request) {
	svc, err := s.jobsService()
	if err != nil {
		s.problem(w, r, err)
		return
	}
	name, err := jobName(r)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	j, err := svc.GetJob(r.Context(), name)
	s.respond(w, r, http.StatusOK, j, err)
}

func (s *Server) handleJobDelete(w http.ResponseWriter, r *http.Request) {
	svc, err := s.jobsService()
	if err != nil {
		s.problem(w, r, err)
		return
	}
	name, err := jobName(r)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	if err := svc.DeleteJob(r.Context(), name); err != nil {
		s.problem(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleJobRunCreate queues a run: {"args": [...], "env": {...}} (both optional; an empty body is fine).
func (s *Server) handleJobRunCreate(w http.ResponseWriter, r *http.Request) {
	svc, err := s.jobsService()
	if err != nil {
		s.problem(w, r, err)
		return
	}
	name, err := jobName(r)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	var in jobs.RunInput
	if r.ContentLength != 0 {
		if err := decodeJSON(w, r, &in, 1<<20); err != nil && !isEmptyBody(err) {
			s.problem(w, r, err)
			return
		}
	}
	run, err := svc.RunJob(r.Context(), name, in, actor(r))
	if err != nil {
		s.problem(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/job-runs/"+run.ID)
	writeJSON(w, http.StatusCreated, run)
}

func isEmptyBody(err error) bool {
	var se *slipway.Error
	return errors.As(err, &se) && se.Message == "request body is empty: send a JSON object"
}

func (s *Server) handleJobRunList(w http.ResponseWriter, r *http.Request) {
	svc, err := s.jobsService()
	if err != nil {
		s.problem(w, r, err)
		return
	}
	offset, limit, err := pageParams(r)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	q := r.URL.Query()
	runs, total, err := svc.ListRuns(r.Context(), slipway.JobRunFilter{Job: q.Get("job"), PipelineRun: q.Get("pipeline_run"),
		State: slipway.RunState(q.Get("state")), Offset: offset, Limit: limit})
	if err != nil {
		s.problem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, newPage(runs, total, offset, limit))
}

func (s *Server) handleJobRunGet(w http.ResponseWriter, r *http.Request) {
	svc, err := s.jobsService()
	if err != nil {
		s.problem(w, r, err)
		return
	}
	run, err := svc.GetRun(r.Context(), r.PathValue("id"))
	s.respond(w, r, http.StatusOK, run, err)
}

// handleJobRunLogs answers the log as text; ?follow=1 streams it until the run is over; ?offset=N starts at byte N
// (a follower that was cut off resumes there).
func (s *Server) handleJobRunLogs(w http.ResponseWriter, r *http.Request) {
	svc, err := s.jobsService()
	if err != nil {
		s.problem(w, r, err)
		return
	}
	id := r.PathValue("id")
	q := r.URL.Query()
	follow := q.Get("follow") == "1" || q.Get("follow") == "true"
	var offset int64
	if v := q.Get("offset"); v != "" {
		if offset, err = strconv.ParseInt(v, 10, 64); err != nil || offset < 0 {
			s.problem(w, r, slipway.Errorf(slipway.EINVALID, "offset must be a number ≥ 0, got %q", v))
			return
		}
	}
	if _, err := svc.GetRun(r.Context(), id); err != nil {
		s.problem(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	rc := http.NewResponseController(w)
	flush := func() { rc.Flush() }
	w.WriteHeader(http.StatusOK)
	flush()
	if err := svc.WriteLogs(r.Context(), id, offset, w, follow, flush); err != nil {
		s.log.WarnContext(r.Context(), "log stream ended with an error", "run_id", id, "error", err)
	}
}

func (s *Server) handleJobRunCancel(w http.ResponseWriter, r *http.Request) {
	svc, err := s.jobsService()
	if err != nil {
		s.problem(w, r, err)
		return
	}
	run, err := svc.CancelRun(r.Context(), r.PathValue("id"), actor(r))
	s.respond(w, r, http.StatusOK, run, err)
}

func (s *Server) handleJobRunOutputs(w http.ResponseWriter, r *http.Request) {
	svc, err := s.jobsService()
	if err != nil {
		s.problem(w, r, err)
		return
	}
	files, err := svc.Outputs(r.Context(), r.PathValue("id"))
	if err != nil {
		s.problem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, newPage(files, len(files), 0, len(files)))
}

// handleJobRunOutputFile downloads one output file: ?path=model/model.pkl.
func (s *Server) handleJobRunOutputFile(w http.ResponseWriter, r *http.Request) {
	svc, err := s.jobsService()
	if err != nil {
		s.problem(w, r, err)
		return
	}
	p := r.URL.Query().Get("path")
	if p == "" {
		s.problem(w, r, slipway.Errorf(slipway.EINVALID, "missing ?path=: name the output file (see GET .../outputs)"))
		return
	}
	f, err := svc.OpenOutput(r.Context(), r.PathValue("id"), p)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", path.Base(p)))
	if st, err := f.Stat(); err == nil {
		w.Header().Set("Content-Length", strconv.FormatInt(st.Size(), 10))
	}
	io.Copy(w, f)
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

func removeFile(p string) { os.Remove(p) }
