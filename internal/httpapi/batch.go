package httpapi

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"path"
	"regexp"
	"strconv"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/batch"
)

// batchRoutes lists the routes of this feature area; they join the table in server.go.
func (s *Server) batchRoutes() []route {
	return []route{
		{"POST /api/v1/batch-predictions", s.withBatch(s.handleBatchCreate), slipway.RoleEditor},
		{"GET /api/v1/batch-predictions", s.withBatch(s.handleBatchList), slipway.RoleViewer},
		{"GET /api/v1/batch-predictions/{id}", s.withBatch(s.handleBatchGet), slipway.RoleViewer},
		{"POST /api/v1/batch-predictions/{id}/cancel", s.withBatch(s.handleBatchCancel), slipway.RoleEditor},
		{"GET /api/v1/batch-predictions/{id}/output", s.withBatch(s.handleBatchOutput), slipway.RoleViewer},
		{"DELETE /api/v1/batch-predictions/{id}", s.withBatch(s.handleBatchDelete), slipway.RoleEditor},

		{"POST /api/v1/files", s.withBatch(s.handleFileUpload), slipway.RoleEditor},
		{"GET /api/v1/files", s.withBatch(s.handleFileList), slipway.RoleViewer},
		{"GET /api/v1/files/{id}", s.withBatch(s.handleFileGet), slipway.RoleViewer},
		{"DELETE /api/v1/files/{id}", s.withBatch(s.handleFileDelete), slipway.RoleEditor},

		{"GET /api/v1/connections", s.withBatch(s.handleConnectionList), slipway.RoleViewer},
	}
}

var batchIDPattern = regexp.MustCompile(`^b-[0-9a-f]{20}$`)

// withBatch adapts a handler of the batch area: it gets the batch service, and a server running without it (in-process
// tests of other areas) answers EUNAVAILABLE.
func (s *Server) withBatch(h func(w http.ResponseWriter, r *http.Request, svc *batch.Service) error) http.HandlerFunc {
	return s.handle(func(w http.ResponseWriter, r *http.Request) error {
		if s.batch == nil {
			return slipway.Errorf(slipway.EUNAVAILABLE, "batch predictions are not enabled on this server")
		}
		return h(w, r, s.batch)
	})
}

func batchID(r *http.Request) (string, error) {
	id := r.PathValue("id")
	if !batchIDPattern.MatchString(id) {
		return "", slipway.Errorf(slipway.ENOTFOUND, "batch prediction %q not found: ids look like b-0123456789abcdef0123", id)
	}
	return id, nil
}

func (s *Server) handleBatchCreate(w http.ResponseWriter, r *http.Request, svc *batch.Service) error {
	var in slipway.BatchSpec
	if err := decodeJSON(w, r, &in, 1<<20); err != nil {
		return err
	}
	if in.Source != nil {
		return slipway.Errorf(slipway.EINVALID, "source_fingerprint is set by the server: leave it out")
	}
	run, err := svc.Create(r.Context(), in, actor(r))
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/batch-predictions/"+run.ID)
	return reply(w, http.StatusAccepted, run)
}

func (s *Server) handleBatchList(w http.ResponseWriter, r *http.Request, svc *batch.Service) error {
	offset, limit, err := pageParams(r)
	if err != nil {
		return err
	}
	f := slipway.BatchFilter{Offset: offset, Limit: limit}
	if v := r.URL.Query().Get("state"); v != "" {
		st := slipway.BatchState(v)
		switch st {
		case slipway.BatchAccepted, slipway.BatchInProgress, slipway.BatchSucceeded, slipway.BatchFailed, slipway.BatchCanceled:
		default:
			return slipway.Errorf(slipway.EINVALID, "state %q: use ACCEPTED, IN_PROGRESS, SUCCEEDED, FAILED or CANCELED", v)
		}
		f.State = &st
	}
	runs, total, err := svc.List(r.Context(), f)
	if err != nil {
		return err
	}
	return reply(w, http.StatusOK, newPage(runs, total, offset, limit))
}

func (s *Server) handleBatchGet(w http.ResponseWriter, r *http.Request, svc *batch.Service) error {
	id, err := batchID(r)
	if err != nil {
		return err
	}
	run, err := svc.Get(r.Context(), id)
	return replyOK(w, run, err)
}

func (s *Server) handleBatchCancel(w http.ResponseWriter, r *http.Request, svc *batch.Service) error {
	id, err := batchID(r)
	if err != nil {
		return err
	}
	run, err := svc.Cancel(r.Context(), id, actor(r))
	return replyOK(w, run, err)
}

func (s *Server) handleBatchDelete(w http.ResponseWriter, r *http.Request, svc *batch.Service) error {
	id, err := batchID(r)
	if err != nil {
		return err
	}
	if err := svc.Delete(r.Context(), id); err != nil {
		return err
	}
	return noContent(w)
}

func (s *Server) handleBatchOutput(w http.ResponseWriter, r *http.Request, svc *batch.Service) error {
	id, err := batchID(r)
	if err != nil {
		return err
	}
	d, err := svc.OpenOutput(r.Context(), id)
	if err != nil {
		return err
	}
	defer d.Content.Close()
	ct := "text/csv"
	if path.Ext(d.Name) == ".parquet" {
		ct = "application/vnd.apache.parquet"
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": d.Name}))
	if rs, ok := d.Content.(io.ReadSeeker); ok {
		http.ServeContent(w, r, d.Name, d.ModTime, rs) // Range requests resume interrupted downloads
		return nil
	}
	// From the bucket: streamed whole. A blob that fails its digest check ends the body short of its
	// Content-Length, so that the client sees a broken download, not a wrong file.
	w.Header().Set("Content-Length", strconv.FormatInt(d.Size, 10))
	if _, err := io.Copy(w, d.Content); err != nil {
		s.log.Warn("batch output download ended early", "run_id", id, "error", err)
	}
	return nil
}

// handleFileUpload stores an input file: multipart/form-data with one part "file", or the raw bytes as the
// body with ?name=data.csv. It is streamed to disk under the upload cap.
func (s *Server) handleFileUpload(w http.ResponseWriter, r *http.Request, svc *batch.Service) error {
	r.Body = http.MaxBytesReader(w, r.Body, s.maxUp+64<<10)
	ct := mediaType(r)
	var (
		f   *slipway.UploadedFile
		err error
	)
	if ct == "multipart/form-data" {
		f, err = uploadMultipart(r, svc)
	} else {
		name := r.URL.Query().Get("name")
		if name == "" {
			return slipway.Errorf(slipway.EINVALID, "give the file name: ?name=data.csv (its extension tells the format), or send multipart/form-data with a \"file\" part")
		}
		f, err = svc.SaveFile(r.Context(), name, r.Body, actor(r))
	}
	if err != nil {
		return uploadReadError(err)
	}
	return replyCreated(w, "/api/v1/files/"+f.ID, f)
}

func uploadMultipart(r *http.Request, svc *batch.Service) (*slipway.UploadedFile, error) {
	mr, err := r.MultipartReader()
	if err != nil {
		return nil, slipway.Errorf(slipway.EINVALID, "malformed multipart body: %v", err)
	}
	var f *slipway.UploadedFile
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, err
		}
		if part.FormName() != "file" {
			return nil, slipway.Errorf(slipway.EINVALID, "unexpected form field %q: send the file in a part named \"file\"", part.FormName())
		}
		if f != nil {
			return nil, slipway.Errorf(slipway.EINVALID, "more than one \"file\" part: upload one file per request")
		}
		if f, err = svc.SaveFile(r.Context(), part.FileName(), part, actor(r)); err != nil {
			return nil, err
		}
	}
	if f == nil {
		return nil, slipway.Errorf(slipway.EINVALID, "missing the \"file\" part")
	}
	return f, nil
}

func (s *Server) handleFileList(w http.ResponseWriter, r *http.Request, svc *batch.Service) error {
	files, err := svc.Files(r.Context())
	return replyAll(w, files, err)
}

func (s *Server) handleFileGet(w http.ResponseWriter, r *http.Request, svc *batch.Service) error {
	f, err := svc.File(r.Context(), r.PathValue("id"))
	return replyOK(w, f, err)
}

func (s *Server) handleFileDelete(w http.ResponseWriter, r *http.Request, svc *batch.Service) error {
	if err := svc.DeleteFile(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	return noContent(w)
}

func (s *Server) handleConnectionList(w http.ResponseWriter, r *http.Request, svc *batch.Service) error {
	conns := svc.Connections()
	return replyAll(w, conns, nil)
}
