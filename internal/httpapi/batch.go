package httpapi

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"path"
	"regexp"

	"github.com/slipway-ml/slipway"
)

// batchRoutes lists the routes of this feature area; they join the table in server.go.
func (s *Server) batchRoutes() []route {
	return []route{
		{"POST /api/v1/batch-predictions", s.handleBatchCreate, slipway.RoleEditor},
		{"GET /api/v1/batch-predictions", s.handleBatchList, slipway.RoleViewer},
		{"GET /api/v1/batch-predictions/{id}", s.handleBatchGet, slipway.RoleViewer},
		{"POST /api/v1/batch-predictions/{id}/cancel", s.handleBatchCancel, slipway.RoleEditor},
		{"GET /api/v1/batch-predictions/{id}/output", s.handleBatchOutput, slipway.RoleViewer},

		{"POST /api/v1/files", s.handleFileUpload, slipway.RoleEditor},
		{"GET /api/v1/files", s.handleFileList, slipway.RoleViewer},
		{"GET /api/v1/files/{id}", s.handleFileGet, slipway.RoleViewer},
		{"DELETE /api/v1/files/{id}", s.handleFileDelete, slipway.RoleEditor},

		{"GET /api/v1/connections", s.handleConnectionList, slipway.RoleViewer},
	}
}

var batchIDPattern = regexp.MustCompile(`^b-[0-9a-f]{20}$`)

// batchReady answers 503 when the server runs without the batch service (in-process tests of other areas).
func (s *Server) batchReady(w http.ResponseWriter, r *http.Request) bool {
	if s.batch == nil {
		s.problem(w, r, slipway.Errorf(slipway.EUNAVAILABLE, "batch predictions are not enabled on this server"))
		return false
	}
	return true
}

func batchID(r *http.Request) (string, error) {
	id := r.PathValue("id")
	if !batchIDPattern.MatchString(id) {
		return "", slipway.Errorf(slipway.ENOTFOUND, "batch prediction %q not found: ids look like b-0123456789abcdef0123", id)
	}
	return id, nil
}

func (s *Server) handleBatchCreate(w http.ResponseWriter, r *http.Request) {
	if !s.batchReady(w, r) {
		return
	}
	var in slipway.BatchSpec
	if err := decodeJSON(w, r, &in, 1<<20); err != nil {
		s.problem(w, r, err)
		return
	}
	if in.Source != nil {
		s.problem(w, r, slipway.Errorf(slipway.EINVALID, "source_fingerprint is set by the server: leave it out"))
		return
	}
	run, err := s.batch.Create(r.Context(), in, actor(r))
	if err != nil {
		s.problem(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/batch-predictions/"+run.ID)
	writeJSON(w, http.StatusAccepted, run)
}

func (s *Server) handleBatchList(w http.ResponseWriter, r *http.Request) {
	if !s.batchReady(w, r) {
		return
	}
	offset, limit, err := pageParams(r)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	f := slipway.BatchFilter{Offset: offset, Limit: limit}
	if v := r.URL.Query().Get("state"); v != "" {
		st := slipway.BatchState(v)
		switch st {
		case slipway.BatchAccepted, slipway.BatchInProgress, slipway.BatchSucceeded, slipway.BatchFailed, slipway.BatchCanceled:
		default:
			s.problem(w, r, slipway.Errorf(slipway.EINVALID, "state %q: use ACCEPTED, IN_PROGRESS, SUCCEEDED, FAILED or CANCELED", v))
			return
		}
		f.State = &st
	}
	runs, total, err := s.batch.List(r.Context(), f)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, newPage(runs, total, offset, limit))
}

func (s *Server) handleBatchGet(w http.ResponseWriter, r *http.Request) {
	if !s.batchReady(w, r) {
		return
	}
	id, err := batchID(r)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	run, err := s.batch.Get(r.Context(), id)
	s.respond(w, r, http.StatusOK, run, err)
}

func (s *Server) handleBatchCancel(w http.ResponseWriter, r *http.Request) {
	if !s.batchReady(w, r) {
		return
	}
	id, err := batchID(r)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	run, err := s.batch.Cancel(r.Context(), id, actor(r))
	s.respond(w, r, http.StatusOK, run, err)
}

func (s *Server) handleBatchOutput(w http.ResponseWriter, r *http.Request) {
	if !s.batchReady(w, r) {
		return
	}
	id, err := batchID(r)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	p, name, err := s.batch.OutputFile(r.Context(), id)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	f, err := os.Open(p)
	if err != nil {
		s.problem(w, r, fmt.Errorf("httpapi: open batch output: %w", err))
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		s.problem(w, r, fmt.Errorf("httpapi: stat batch output: %w", err))
		return
	}
	ct := "text/csv"
	if path.Ext(name) == ".parquet" {
		ct = "application/vnd.apache.parquet"
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
	http.ServeContent(w, r, name, st.ModTime(), f) // Range requests resume interrupted downloads
}

// handleFileUpload stores an input file: multipart/form-data with one part "file", or the raw bytes as the
// body with ?name=data.csv. It is streamed to disk under the upload cap.
func (s *Server) handleFileUpload(w http.ResponseWriter, r *http.Request) {
	if !s.batchReady(w, r) {
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, s.maxUp+64<<10)
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var (
		f   *slipway.UploadedFile
		err error
	)
	if ct == "multipart/form-data" {
		f, err = s.uploadMultipart(r)
	} else {
		name := r.URL.Query().Get("name")
		if name == "" {
			s.problem(w, r, slipway.Errorf(slipway.EINVALID, "give the file name: ?name=data.csv (its extension tells the format), or send multipart/form-data with a \"file\" part"))
			return
		}
		f, err = s.batch.SaveFile(r.Context(), name, r.Body, actor(r))
	}
	if err != nil {
		s.problem(w, r, uploadReadError(err))
		return
	}
	w.Header().Set("Location", "/api/v1/files/"+f.ID)
	writeJSON(w, http.StatusCreated, f)
}

func (s *Server) uploadMultipart(r *http.Request) (*slipway.UploadedFile, error) {
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
		if f, err = s.batch.SaveFile(r.Context(), part.FileName(), part, actor(r)); err != nil {
			return nil, err
		}
	}
	if f == nil {
		return nil, slipway.Errorf(slipway.EINVALID, "missing the \"file\" part")
	}
	return f, nil
}

func (s *Server) handleFileList(w http.ResponseWriter, r *http.Request) {
	if !s.batchReady(w, r) {
		return
	}
	files, err := s.batch.Files(r.Context())
	if err != nil {
		s.problem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, newPage(files, len(files), 0, len(files)))
}

func (s *Server) handleFileGet(w http.ResponseWriter, r *http.Request) {
	if !s.batchReady(w, r) {
		return
	}
	f, err := s.batch.File(r.Context(), r.PathValue("id"))
	s.respond(w, r, http.StatusOK, f, err)
}

func (s *Server) handleFileDelete(w http.ResponseWriter, r *http.Request) {
	if !s.batchReady(w, r) {
		return
	}
	if err := s.batch.DeleteFile(r.Context(), r.PathValue("id")); err != nil {
		s.problem(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleConnectionList(w http.ResponseWriter, r *http.Request) {
	if !s.batchReady(w, r) {
		return
	}
	conns := s.batch.Connections()
	writeJSON(w, http.StatusOK, newPage(conns, len(conns), 0, len(conns)))
}
