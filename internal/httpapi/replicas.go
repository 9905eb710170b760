package httpapi

// Network replicas (docs/worker-protocol.md, "Over the network"): an administrator issues a replica spec; the
// workers holding it download their version's files and announce themselves with replica tokens (minted from
// the spec's secret, scoped to one deployment and version, short-lived), not API tokens.

import (
	"io"
	"net"
	"net/http"
	"path"
	"strconv"
	"strings"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/deploy"
)

func (s *Server) replicaRoutes() []route {
	return []route{
		{"POST /api/v1/deployments/{name}/replica-spec", s.handle(s.handleReplicaSpec), slipway.RoleAdmin},
		// Authenticated by replica tokens, which requireRole does not know: each handler verifies its own.
		{"GET /api/v1/deployments/{name}/replica-files/{version}", s.handle(s.handleReplicaManifest), ""},
		{"GET /api/v1/deployments/{name}/replica-files/{version}/{path}", s.handle(s.handleReplicaFile), ""},
		{"POST /api/v1/deployments/{name}/replicas", s.handle(s.handleReplicaAnnounce), ""},
		{"DELETE /api/v1/deployments/{name}/replicas/{id}", s.handle(s.handleReplicaWithdraw), ""},
	}
}

// handleReplicaSpec gives an administrator the opaque spec a worker needs, secret included. It is the one
// answer of the API that carries a replica secret; GET deployment never does.
func (s *Server) handleReplicaSpec(w http.ResponseWriter, r *http.Request) error {
	name, err := deploymentName(r)
	if err != nil {
		return err
	}
	var in struct {
		Version int `json:"version"`
	}
	if r.ContentLength != 0 {
		if err := decodeJSON(w, r, &in, 4<<10); err != nil {
			return err
		}
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	spec, err := s.deployments.IssueReplicaSpec(r.Context(), name, in.Version, scheme+"://"+r.Host)
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	return reply(w, http.StatusOK, map[string]any{"deployment": spec.Deployment, "version": spec.Version,
		"server": spec.Server, "replica_spec": spec.Encode()})
}

// replicaAccess verifies the request's replica token for the deployment in its path.
func (s *Server) replicaAccess(r *http.Request) (*deploy.ReplicaAccess, error) {
	name, err := deploymentName(r)
	if err != nil {
		return nil, err
	}
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return nil, slipway.Errorf(slipway.EUNAUTHORIZED, "missing replica token: send \"Authorization: Bearer <replica token>\" (slipway worker serve does)")
	}
	return s.deployments.VerifyReplicaToken(r.Context(), name, strings.TrimSpace(token))
}

// pathVersion checks that the version in the path is the token's.
func pathVersion(r *http.Request, acc *deploy.ReplicaAccess) error {
	n, err := strconv.Atoi(r.PathValue("version"))
	if err != nil || n != acc.Version.Version {
		return slipway.Errorf(slipway.EFORBIDDEN, "the replica token is for version %d, not %q", acc.Version.Version, r.PathValue("version"))
	}
	if acc.Version.State != slipway.VersionReady {
		return slipway.Errorf(slipway.ECONFLICT, "version %d of %s is %s, not READY", acc.Version.Version, acc.Version.Model, acc.Version.State)
	}
	return nil
}

func (s *Server) handleReplicaManifest(w http.ResponseWriter, r *http.Request) error {
	acc, err := s.replicaAccess(r)
	if err != nil {
		return err
	}
	if err := pathVersion(r, acc); err != nil {
		return err
	}
	return reply(w, http.StatusOK, map[string]any{"runtime": acc.Version.Runtime, "files": acc.Version.Files})
}

func (s *Server) handleReplicaFile(w http.ResponseWriter, r *http.Request) error {
	acc, err := s.replicaAccess(r)
	if err != nil {
		return err
	}
	if err := pathVersion(r, acc); err != nil {
		return err
	}
	want := path.Clean(r.PathValue("path"))
	for _, f := range acc.Version.Files {
		if f.Path != want {
			continue
		}
		rc, err := s.catalog.OpenFile(r.Context(), f)
		if err != nil {
			return err
		}
		defer rc.Close()
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(f.Size, 10))
		w.Header().Set("X-Slipway-SHA256", f.SHA256)
		if _, err := io.Copy(w, rc); err != nil {
			// Headers are gone: abort so that the worker sees a broken download (and checks the digest anyway).
			s.log.ErrorContext(r.Context(), "replica file stream failed", "deployment", acc.Deployment.Name, "file", f.Path, "error", err)
			panic(http.ErrAbortHandler)
		}
		return nil
	}
	return slipway.Errorf(slipway.ENOTFOUND, "version %d of %s has no file %q", acc.Version.Version, acc.Version.Model, want)
}

func (s *Server) handleReplicaAnnounce(w http.ResponseWriter, r *http.Request) error {
	acc, err := s.replicaAccess(r)
	if err != nil {
		return err
	}
	var a slipway.ReplicaAnnouncement
	if err := decodeJSON(w, r, &a, 16<<10); err != nil {
		return err
	}
	if a.Version != acc.Version.Version {
		return slipway.Errorf(slipway.EFORBIDDEN, "the replica token is for version %d, the announcement says %d", acc.Version.Version, a.Version)
	}
	if a.ID == "" || len(a.ID) > 200 || a.Address == "" || len(a.Address) > 300 {
		return slipway.Errorf(slipway.EINVALID, "an announcement needs an id (≤ 200 bytes) and an address host:port (≤ 300 bytes)")
	}
	if _, port, err := net.SplitHostPort(a.Address); err != nil || port == "" || port == "0" {
		return slipway.Errorf(slipway.EINVALID, "address %q is not host:port with a port (listen on a fixed port, or pass --advertise)", a.Address)
	}
	out, err := s.deployments.Remote().Heard(r.Context(), acc.Deployment.Name, a)
	if err != nil {
		return err
	}
	return reply(w, http.StatusOK, out)
}

func (s *Server) handleReplicaWithdraw(w http.ResponseWriter, r *http.Request) error {
	acc, err := s.replicaAccess(r)
	if err != nil {
		return err
	}
	ok, err := s.deployments.Remote().Withdraw(r.Context(), acc.Deployment.Name, r.PathValue("id"))
	if err != nil {
		return err
	}
	if !ok {
		return slipway.Errorf(slipway.ENOTFOUND, "deployment %s has no announced worker %q", acc.Deployment.Name, r.PathValue("id"))
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
