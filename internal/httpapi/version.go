package httpapi

import (
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"strconv"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/catalog"
	"github.com/slipway-ml/slipway/internal/monitor"
)

const maxMetadataBytes = 1 << 20

// handleVersionCreate registers a version from a multipart upload: `metadata` (JSON) and `artifact` (an
// archive or a single file). The artifact is streamed to a temp file under a size cap, never held in memory.
// With ?wait=false it answers 202 with the version REGISTERING once the files are stored; the checks go on.
func (s *Server) handleVersionCreate(w http.ResponseWriter, r *http.Request) error {
	name, err := modelName(r)
	if err != nil {
		return err
	}
	wait, err := boolParam(r, "wait", true)
	if err != nil {
		return err
	}
	r.Body = http.MaxBytesReader(w, r.Body, s.maxUp+maxMetadataBytes+monitor.MaxBaselineBytes+64<<10)
	var baseline baselineUpload
	defer func() {
		if baseline.path != "" {
			s.removeTemp(baseline.path)
		}
	}()
	up, cleanup, err := s.readUpload(r, &baseline)
	defer cleanup()
	if err != nil {
		return err
	}
	if baseline.path != "" && !wait {
		return slipway.Errorf(slipway.EINVALID, "a baseline is profiled against the version's checked schema: register with wait=true, "+
			"or upload the baseline once the version is READY (PUT /api/v1/models/%s/versions/N/baseline)", name)
	}
	up.Model, up.By = name, actor(r)
	register, status := s.catalog.Register, http.StatusCreated
	if !wait {
		register, status = s.catalog.RegisterAsync, http.StatusAccepted
	}
	v, err := register(r.Context(), up)
	if err != nil {
		return err
	}
	if err := s.storeBaseline(r.Context(), v, baseline, actor(r)); err != nil {
		return err
	}
	w.Header().Set("Location", fmt.Sprintf("/api/v1/models/%s/versions/%d", v.Model, v.Version))
	return reply(w, status, v)
}

// readUpload reads a registration: the artifact, the optional metadata and the optional baseline (spooled
// into baseline).
func (s *Server) readUpload(r *http.Request, baseline *baselineUpload) (catalog.Upload, func(), error) {
	var up catalog.Upload
	// The metadata part is optional: the runtime is inferred from the artifact.
	art, cleanup, err := s.readArtifactForm(r, `"artifact" (file), "metadata" (JSON) and "baseline" (CSV or Parquet)`, func(part *multipart.Part) error {
		switch part.FormName() {
		case "metadata":
			return decodeStrict(io.LimitReader(part, maxMetadataBytes), &up.Metadata, "metadata")
		case "baseline":
			return s.readBaselinePart(part, baseline)
		}
		return slipway.Errorf(slipway.EINVALID, "unexpected form field %q: only \"artifact\", \"metadata\" and \"baseline\"", part.FormName())
	})
	up.Path, up.Filename = art.path, art.filename
	if err == nil && up.Path == "" {
		err = slipway.Errorf(slipway.EINVALID, "missing the \"artifact\" part: attach a .zip, .tar, .tar.gz or a single model file")
	}
	return up, cleanup, err
}

func (s *Server) handleVersionList(w http.ResponseWriter, r *http.Request) error {
	name, err := modelName(r)
	if err != nil {
		return err
	}
	offset, limit, err := pageParams(r)
	if err != nil {
		return err
	}
	vs, total, err := s.catalog.Store().FindVersions(r.Context(), name, offset, limit)
	if err != nil {
		return err
	}
	return reply(w, http.StatusOK, newPage(vs, total, offset, limit))
}

// version resolves {model} and {version} (a number or @alias).
func (s *Server) version(r *http.Request) (*slipway.ModelVersion, error) {
	name, err := modelName(r)
	if err != nil {
		return nil, err
	}
	ref, err := slipway.ParseVersionRef(r.PathValue("version"))
	if err != nil {
		return nil, err
	}
	return s.catalog.Store().FindVersion(r.Context(), name, ref)
}

func (s *Server) handleVersionGet(w http.ResponseWriter, r *http.Request) error {
	v, err := s.version(r)
	return replyOK(w, v, err)
}

func (s *Server) handleVersionFiles(w http.ResponseWriter, r *http.Request) error {
	v, err := s.version(r)
	if err != nil {
		return err
	}
	return replyAll(w, v.Files, nil)
}

func (s *Server) handleVersionArtifact(w http.ResponseWriter, r *http.Request) error {
	v, err := s.version(r)
	if err != nil {
		return err
	}
	if v.State != slipway.VersionReady && v.State != slipway.VersionFailed {
		return slipway.Errorf(slipway.ECONFLICT, "version %d of %s is %s: its files are not complete yet", v.Version, v.Model, v.State)
	}
	w.Header().Set("Content-Type", "application/gzip")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s-%d.tar.gz"`, v.Model, v.Version))
	w.Header().Set("X-Slipway-Manifest-Digest", v.Digest)
	if err := s.catalog.WriteArtifact(r.Context(), v, w); err != nil {
		// Headers are gone: abort the stream so the client sees a broken download, not a short valid one.
		s.log.ErrorContext(r.Context(), "artifact stream failed", "model", v.Model, "version", v.Version, "error", err)
		panic(http.ErrAbortHandler)
	}
	return nil
}

func (s *Server) handleAliasSet(w http.ResponseWriter, r *http.Request) error {
	name, err := modelName(r)
	if err != nil {
		return err
	}
	alias := r.PathValue("alias")
	if err := validAlias(alias); err != nil {
		return err
	}
	var in struct {
		Version int `json:"version"`
	}
	if err := decodeJSON(w, r, &in, 64<<10); err != nil {
		return err
	}
	if in.Version < 1 {
		return slipway.Errorf(slipway.EINVALID, "body must be {\"version\": N} with N ≥ 1")
	}
	move, err := s.catalog.Store().SetAlias(r.Context(), name, alias, in.Version, actor(r))
	if err != nil {
		return err
	}
	if s.deployments != nil {
		s.deployments.AliasMoved(r.Context(), name, alias, in.Version)
	}
	return reply(w, http.StatusOK, move)
}

func validAlias(alias string) error {
	if err := slipway.ValidateName("alias", alias); err != nil {
		return err
	}
	if alias == "latest" {
		return slipway.Errorf(slipway.EINVALID, "alias \"latest\" is reserved: it always means the newest READY version")
	}
	if _, err := strconv.Atoi(alias); err == nil {
		return slipway.Errorf(slipway.EINVALID, "alias %q is a number: aliases must not look like version numbers", alias)
	}
	return nil
}

func (s *Server) handleAliasDelete(w http.ResponseWriter, r *http.Request) error {
	name, err := modelName(r)
	if err != nil {
		return err
	}
	if err := slipway.ValidateName("alias", r.PathValue("alias")); err != nil {
		return err
	}
	if err := s.catalog.Store().DeleteAlias(r.Context(), name, r.PathValue("alias"), actor(r)); err != nil {
		return err
	}
	return noContent(w)
}

func (s *Server) handleAliasGet(w http.ResponseWriter, r *http.Request) error {
	name, err := modelName(r)
	if err != nil {
		return err
	}
	alias := r.PathValue("alias")
	if err := slipway.ValidateName("alias", alias); err != nil {
		return err
	}
	current, err := s.catalog.Store().FindVersion(r.Context(), name, slipway.VersionRef{Alias: alias})
	if err != nil {
		return err
	}
	hist, err := s.catalog.Store().FindAliasHistory(r.Context(), name, alias)
	if err != nil {
		return err
	}
	return reply(w, http.StatusOK, map[string]any{"model": name, "alias": alias, "version": current.Version, "history": hist})
}
