// Package catalog registers model versions: it unpacks an untrusted upload, stores its files as
// content-addressed blobs with a manifest, runs the introspection checks and records the result. It also
// materialises a version's files for the runtimes and streams them back as a tar.gz.
package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/archive"
	"github.com/slipway-ml/slipway/internal/blob"
	"github.com/slipway-ml/slipway/internal/modelruntime"
)

// Service is the model catalog.
type Service struct {
	store    slipway.ModelStore
	blobs    blob.Store
	runtimes *modelruntime.Runtimes
	limits   archive.Limits
	staging  string // extraction folders of uploads being registered
	cache    string // materialised versions, read by replicas
	log      *slog.Logger
	// LoadTimeout bounds load_model() plus the sample prediction at registration. Set it before Recover.
	LoadTimeout time.Duration

	bg     context.Context // asynchronous registrations run under it; Close cancels it
	stopBg context.CancelFunc
	wg     sync.WaitGroup
}

// Config wires a Service.
type Config struct {
	Store    slipway.ModelStore
	Blobs    blob.Store
	Runtimes *modelruntime.Runtimes
	Limits   archive.Limits
	WorkDir  string // holds staging/ and models/
	Log      *slog.Logger
}

// New returns a catalog service; it creates its folders.
func New(cfg Config) (*Service, error) {
	s := &Service{store: cfg.Store, blobs: cfg.Blobs, runtimes: cfg.Runtimes, limits: cfg.Limits,
		staging: filepath.Join(cfg.WorkDir, "staging"), cache: filepath.Join(cfg.WorkDir, "models"),
		log: cfg.Log, LoadTimeout: 2 * time.Minute}
	s.bg, s.stopBg = context.WithCancel(context.Background())
	for _, d := range []string{s.staging, s.cache} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("catalog: %w", err)
		}
	}
	return s, nil
}

// Upload is a version to register: the uploaded file already spooled to disk (size-capped by the caller).
type Upload struct {
	Model    string
	Filename string // the client's file name (used for single-file artifacts)
	Path     string
	Metadata slipway.VersionMetadata
	By       string // token name, recorded as created_by
}

// Register stores the upload as the model's next version, runs the checks and returns the version in its final
// state (READY, or FAILED with the failing checks). Nothing is left behind when the upload itself is refused.
func (s *Service) Register(ctx context.Context, up Upload) (*slipway.ModelVersion, error) {
	v, dir, err := s.stage(ctx, up)
	if err != nil {
		return nil, err
	}
	defer s.removeScratch(dir)
	// Registration outlives a client that hung up: finishing must not be cancelled half way.
	if err := s.record(context.WithoutCancel(ctx), v, s.runChecks(ctx, dir, v)); err != nil {
		return nil, err
	}
	return s.store.FindVersion(ctx, v.Model, slipway.VersionRef{Number: v.Version})
}

// RegisterAsync stores the upload as the model's next version and returns it REGISTERING; the checks run in
// the background and move it to READY or FAILED. A version whose checks a shutdown or a crash interrupted is
// checked again at the next start (Recover). Refusals of the upload itself are returned at once, as by Register.
func (s *Service) RegisterAsync(ctx context.Context, up Upload) (*slipway.ModelVersion, error) {
	v, dir, err := s.stage(ctx, up)
	if err != nil {
		return nil, err
	}
	if err := s.store.StoreVersionFiles(ctx, v); err != nil {
		s.removeScratch(dir)
		return nil, err
	}
	s.checkLater(v, dir, true)
	return s.store.FindVersion(ctx, v.Model, slipway.VersionRef{Number: v.Version})
}

// stage unpacks the upload into a staging folder, stores its files and creates the REGISTERING version. The
// caller removes dir.
func (s *Service) stage(ctx context.Context, up Upload) (*slipway.ModelVersion, string, error) {
	if err := slipway.ValidateName("model", up.Model); err != nil {
		return nil, "", err
	}
	dir, err := os.MkdirTemp(s.staging, "upload-")
	if err != nil {
		return nil, "", fmt.Errorf("catalog: staging folder: %w", err)
	}
	fail := func(err error) (*slipway.ModelVersion, string, error) {
		s.removeScratch(dir)
		return nil, "", err
	}
	entries, err := archive.Extract(ctx, up.Path, up.Filename, dir, s.limits)
	if err != nil {
		return fail(uploadError(err))
	}
	if len(entries) == 0 {
		return fail(slipway.Errorf(slipway.EINVALID, "the artifact holds no files"))
	}
	if entries, err = hoistMLflowFolder(dir, entries); err != nil {
		return fail(err)
	}
	meta := up.Metadata
	if isMLflowUpload(entries) {
		if err := applyMLflow(dir, &meta); err != nil {
			return fail(err)
		}
	}
	if meta.Runtime == "" {
		meta.Runtime = guessRuntime(entries)
	}
	if meta.Runtime != slipway.RuntimePython && meta.Runtime != slipway.RuntimeONNX {
		return fail(slipway.Errorf(slipway.EINVALID, "unknown runtime %q in metadata: use %q or %q", meta.Runtime, slipway.RuntimePython, slipway.RuntimeONNX))
	}
	files, manifest, size, err := s.storeFiles(ctx, dir, entries)
	if err != nil {
		return fail(err)
	}
	v := &slipway.ModelVersion{Model: up.Model, CreatedBy: up.By, VersionMetadata: meta}
	if err := s.store.CreateVersion(ctx, v); err != nil {
		return fail(err)
	}
	v.Files, v.Digest, v.Size = files, manifest, size
	return v, dir, nil
}

// removeScratch removes a staging or temp folder the service is done with. A failure costs only disk space
// (staging is emptied again at the next start), so it is logged rather than failing the request.
func (s *Service) removeScratch(dir string) {
	if err := os.RemoveAll(dir); err != nil {
		s.log.Warn("catalog: scratch folder left behind", "dir", dir, "error", err)
	}
}

// record stores the checks of v and the state they give it (READY, or FAILED).
func (s *Service) record(ctx context.Context, v *slipway.ModelVersion, checks []slipway.Check) error {
	v.Checks = checks
	v.State = slipway.VersionReady
	for _, c := range v.Checks {
		if !c.Passed {
			v.State = slipway.VersionFailed
		}
	}
	if err := s.store.FinishVersion(ctx, v); err != nil {
		return err
	}
	s.log.InfoContext(ctx, "model version registered", "model", v.Model, "version", v.Version, "state", v.State, "files", len(v.Files), "bytes", v.Size)
	return nil
}

// checkLater runs the checks of v in a goroutine of the service (removing dir afterwards when it is a staging
// folder). When Close interrupts them, v stays REGISTERING for the next start to check again.
func (s *Service) checkLater(v *slipway.ModelVersion, dir string, removeDir bool) {
	s.wg.Add(1)
	go func() { // owned by the service: Close cancels and waits
		defer s.wg.Done()
		if removeDir {
			defer s.removeScratch(dir)
		}
		checks := s.runChecks(s.bg, dir, v)
		if s.bg.Err() != nil {
			s.log.Info("registration interrupted by the shutdown; checked again at the next start", "model", v.Model, "version", v.Version)
			return
		}
		if err := s.record(context.Background(), v, checks); err != nil {
			s.log.Error("record the checks of a version", "model", v.Model, "version", v.Version, "error", err)
		}
	}()
}

// Close stops the checks running in the background (their versions stay REGISTERING and are checked again at
// the next start) and waits for them.
func (s *Service) Close() {
	s.stopBg()
	s.wg.Wait()
}

func uploadError(err error) error {
	switch {
	case errors.Is(err, archive.ErrTooLarge):
		return slipway.Wrap(slipway.ETOOLARGE, err, "artifact refused: %s", limitHint(err))
	case errors.Is(err, archive.ErrUnsafe):
		return slipway.Wrap(slipway.EINVALID, err, "artifact refused: %v", err)
	case errors.Is(err, archive.ErrInvalid):
		return slipway.Wrap(slipway.EINVALID, err, "artifact could not be unpacked: %v", err)
	}
	return fmt.Errorf("catalog: unpack upload: %w", err) // disk full, permissions: the server's problem
}

// limitHint names the server flag that raises the limit an upload hit.
func limitHint(err error) string {
	var le *archive.LimitError
	if !errors.As(err, &le) {
		return err.Error()
	}
	flag := map[string]string{"MaxFiles": "--max-files", "MaxUnpackedBytes": "--max-unpacked-bytes",
		"MaxFileBytes": "--max-unpacked-bytes", "MaxRatio": "--max-compression-ratio"}[le.Limit]
	msg := strings.TrimPrefix(err.Error(), "archive: ")
	if i := strings.Index(msg, "; an operator"); i >= 0 {
		msg = msg[:i]
	}
	if flag == "" {
		return msg
	}
	return msg + "; the server's " + flag + " flag sets this limit"
}

func guessRuntime(entries []archive.Entry) string {
	for _, e := range entries {
		if filepath.Ext(e.Path) == ".onnx" {
			return slipway.RuntimeONNX
		}
	}
	return slipway.RuntimePython
}

// storeFiles puts every file into the blob store and then the manifest; it returns the manifest's digest.
func (s *Service) storeFiles(ctx context.Context, dir string, entries []archive.Entry) ([]slipway.File, string, int64, error) {
	files := make([]slipway.File, 0, len(entries))
	var total int64
	for _, e := range entries {
		digest, size, err := s.blobs.PutFile(ctx, filepath.Join(dir, filepath.FromSlash(e.Path)))
		if err != nil {
			return nil, "", 0, fmt.Errorf("catalog: store %s: %w", e.Path, err)
		}
		files = append(files, slipway.File{Path: e.Path, Size: size, SHA256: digest, Mode: uint32(e.Mode.Perm())})
		total += size
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	manifest, err := json.Marshal(files)
	if err != nil {
		return nil, "", 0, fmt.Errorf("catalog: encode manifest: %w", err)
	}
	digest, _, err := s.blobs.Put(ctx, bytesReader(manifest))
	if err != nil {
		return nil, "", 0, fmt.Errorf("catalog: store manifest: %w", err)
	}
	return files, digest, total, nil
}

// Recover runs at startup before the API serves: versions a crash left REGISTERING before their files were
// recorded are removed (their number is free again), those with their files recorded (asynchronous
// registrations) are checked again in the background, staging folders are emptied and blobs no manifest
// references are deleted.
func (s *Service) Recover(ctx context.Context) error {
	stale, err := s.store.DeleteStaleRegistering(ctx)
	if err != nil {
		return fmt.Errorf("catalog: recover: %w", err)
	}
	for _, v := range stale {
		s.log.WarnContext(ctx, "removed version interrupted during registration", "model", v.Model, "version", v.Version)
	}
	pending, err := s.store.FindRegistering(ctx)
	if err != nil {
		return fmt.Errorf("catalog: recover: %w", err)
	}
	for _, v := range pending {
		dir, err := s.Materialize(ctx, v)
		if err != nil {
			return fmt.Errorf("catalog: recover version %s:%d: %w", v.Model, v.Version, err)
		}
		s.log.InfoContext(ctx, "checking a version whose registration was interrupted", "model", v.Model, "version", v.Version)
		s.checkLater(v, dir, false)
	}
	if err := os.RemoveAll(s.staging); err != nil {
		return fmt.Errorf("catalog: clean staging: %w", err)
	}
	if err := os.MkdirAll(s.staging, 0o755); err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	return s.collectGarbage(ctx)
}

func (s *Service) collectGarbage(ctx context.Context) error {
	keep, err := s.store.ReferencedDigests(ctx)
	if err != nil {
		return fmt.Errorf("catalog: gc: %w", err)
	}
	var orphans []string
	err = s.blobs.Walk(ctx, func(digest string, size int64) error {
		if !keep[digest] {
			orphans = append(orphans, digest)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("catalog: gc: %w", err)
	}
	for _, d := range orphans {
		if err := s.blobs.Delete(ctx, d); err != nil {
			return fmt.Errorf("catalog: gc %s: %w", d, err)
		}
	}
	if len(orphans) > 0 {
		s.log.InfoContext(ctx, "removed unreferenced blobs", "count", len(orphans))
	}
	return nil
}

// Store exposes the model store for read paths.
func (s *Service) Store() slipway.ModelStore { return s.store }
