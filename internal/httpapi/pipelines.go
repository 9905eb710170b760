package httpapi

import (
	"io"
	"net/http"

	"github.com/slipway-ml/slipway/internal/jobs"
)

// handlePipelineCreate creates a pipeline from its definition (JSON or YAML body), or from a multipart upload
// with the definition in `pipeline` and the project folder its scripts run in as `artifact`.
func (s *Server) handlePipelineCreate(w http.ResponseWriter, r *http.Request, svc *jobs.Service) error {
	var def []byte
	var up jobs.Upload
	var err error
	mt := mediaType(r)
	if mt == "multipart/form-data" {
		r.Body = http.MaxBytesReader(w, r.Body, s.maxUp+maxJobSpecBytes+64<<10)
		var cleanup func()
		def, up, cleanup, err = s.readJobUpload(r, "pipeline", false)
		defer cleanup()
	} else {
		def, err = io.ReadAll(http.MaxBytesReader(w, r.Body, maxJobSpecBytes))
	}
	if err != nil {
		return err
	}
	spec, err := jobs.ParsePipeline(def)
	if err != nil {
		return err
	}
	p, err := svc.CreatePipeline(r.Context(), spec, up, actor(r))
	if err != nil {
		return err
	}
	return replyCreated(w, "/api/v1/pipelines/"+p.Name, p)
}

func (s *Server) handlePipelineList(w http.ResponseWriter, r *http.Request, svc *jobs.Service) error {
	list, err := svc.ListPipelines(r.Context())
	return replyAll(w, list, err)
}

func pipelineName(r *http.Request) (string, error) { return pathName(r, "pipeline", "pipeline") }

func (s *Server) handlePipelineGet(w http.ResponseWriter, r *http.Request, svc *jobs.Service) error {
	name, err := pipelineName(r)
	if err != nil {
		return err
	}
	p, err := svc.GetPipeline(r.Context(), name)
	return replyOK(w, p, err)
}

func (s *Server) handlePipelineDelete(w http.ResponseWriter, r *http.Request, svc *jobs.Service) error {
	name, err := pipelineName(r)
	if err != nil {
		return err
	}
	if err := svc.DeletePipeline(r.Context(), name); err != nil {
		return err
	}
	return noContent(w)
}

// handlePipelineRunCreate starts a run: {"params": {...}} (optional).
func (s *Server) handlePipelineRunCreate(w http.ResponseWriter, r *http.Request, svc *jobs.Service) error {
	name, err := pipelineName(r)
	if err != nil {
		return err
	}
	var in struct {
		Params map[string]any `json:"params"`
	}
	if err := decodeOptionalJSON(w, r, &in, 1<<20); err != nil {
		return err
	}
	run, err := svc.RunPipeline(r.Context(), name, in.Params, "api", actor(r))
	if err != nil {
		return err
	}
	return replyCreated(w, "/api/v1/pipeline-runs/"+run.ID, run)
}

func (s *Server) handlePipelineRunList(w http.ResponseWriter, r *http.Request, svc *jobs.Service) error {
	offset, limit, err := pageParams(r)
	if err != nil {
		return err
	}
	runs, total, err := svc.ListPipelineRuns(r.Context(), r.URL.Query().Get("pipeline"), offset, limit)
	if err != nil {
		return err
	}
	return reply(w, http.StatusOK, newPage(runs, total, offset, limit))
}

func (s *Server) handlePipelineRunGet(w http.ResponseWriter, r *http.Request, svc *jobs.Service) error {
	run, err := svc.GetPipelineRun(r.Context(), r.PathValue("id"))
	return replyOK(w, run, err)
}

func (s *Server) handlePipelineRunCancel(w http.ResponseWriter, r *http.Request, svc *jobs.Service) error {
	run, err := svc.CancelPipelineRun(r.Context(), r.PathValue("id"), actor(r))
	if err != nil {
		return err
	}
	return reply(w, http.StatusAccepted, run)
}

func (s *Server) handlePipelineRunRetry(w http.ResponseWriter, r *http.Request, svc *jobs.Service) error {
	run, err := svc.RetryPipelineRun(r.Context(), r.PathValue("id"), actor(r))
	if err != nil {
		return err
	}
	return reply(w, http.StatusAccepted, run)
}
