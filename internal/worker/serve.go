package worker

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/certpool"
	"github.com/slipway-ml/slipway/internal/workerproto"
)

const serveUsage = `usage: slipway worker serve --listen ADDR [--spec SPEC] [--cache-dir DIR] [--advertise HOST:PORT]
       [--tls-cert FILE --tls-key FILE] [--ca-cert FILE] [--server URL] [--python PATH] [--status-file FILE]
       [--max-sessions N]

Serves one replica of a deployment whose engine is "external" over TCP: downloads the version's files from the
server (verifying every digest, caching them in --cache-dir), loads the model, announces its address to the
server and keeps a heartbeat. Each server of the installation holds its own session (up to --max-sessions). The replica spec (--spec or SLIPWAY_REPLICA_SPEC) comes from
"slipway deploy replica-spec NAME".`

// serveConfig is `slipway worker serve`'s command line.
type serveConfig struct {
	listen, advertise, cacheDir string
	statusFile, pod             string
	tlsCert, tlsKey, caCert     string
	python, scheduling          string
	maxSessions                 int
	spec                        slipway.ReplicaSpec
}

func parseServe(args []string, stderr io.Writer) (*serveConfig, error) {
	fs := flag.NewFlagSet("slipway worker serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { _, _ = fmt.Fprintln(stderr, serveUsage) }
	c := &serveConfig{}
	fs.StringVar(&c.listen, "listen", "", "host:port to serve the replica on (port 0: a free one)")
	fs.StringVar(&c.advertise, "advertise", "", "host:port the server dials (default: the listening address; port 0: the port it listens on)")
	fs.StringVar(&c.statusFile, "status-file", "", "rewritten at every heartbeat the server accepts: `slipway worker probe` reads it (a pod's readiness and liveness)")
	fs.StringVar(&c.cacheDir, "cache-dir", "", "where downloaded model files are kept (default: ~/.cache/slipway/replicas)")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "serve the replica with TLS: certificate (PEM)")
	fs.StringVar(&c.tlsKey, "tls-key", "", "serve the replica with TLS: private key (PEM)")
	fs.StringVar(&c.caCert, "ca-cert", "", "CA (or self-signed certificate) the server's HTTPS certificate chains to")
	fs.StringVar(&c.python, "python", "/usr/bin/python3", "interpreter for python models")
	fs.StringVar(&c.scheduling, "scheduling", "batch", "batch: the model runs under SCHED_BATCH once loaded, as the server's local replicas do; normal: the default policy")
	fs.IntVar(&c.maxSessions, "max-sessions", 8, "replica sessions served at once: one per server of the installation (each holds its own)")
	specText := fs.String("spec", os.Getenv("SLIPWAY_REPLICA_SPEC"), "replica spec (env SLIPWAY_REPLICA_SPEC)")
	server := fs.String("server", "", "server URL (overrides the spec's)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if c.listen == "" {
		return nil, fmt.Errorf("slipway worker serve: --listen is required\n%s", serveUsage)
	}
	if c.scheduling != "batch" && c.scheduling != "normal" {
		return nil, fmt.Errorf("slipway worker serve: --scheduling must be batch or normal, got %q", c.scheduling)
	}
	if c.maxSessions < 1 || c.maxSessions > 1024 {
		return nil, fmt.Errorf("slipway worker serve: --max-sessions must be 1 to 1024, got %d", c.maxSessions)
	}
	if (c.tlsCert == "") != (c.tlsKey == "") {
		return nil, errors.New("slipway worker serve: give both --tls-cert and --tls-key, or neither")
	}
	spec, err := slipway.DecodeReplicaSpec(*specText)
	if err != nil {
		return nil, fmt.Errorf("slipway worker serve: %w", err)
	}
	if *server != "" {
		spec.Server = *server
	}
	c.spec = spec
	c.pod = os.Getenv("SLIPWAY_POD_NAME") // the downward API, in a pod the kubernetes engine started
	if c.cacheDir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return nil, fmt.Errorf("slipway worker serve: no --cache-dir and no home folder: %w", err)
		}
		c.cacheDir = filepath.Join(home, ".cache", "slipway", "replicas")
	}
	return c, nil
}

// Serve is `slipway worker serve`: it runs until ctx is cancelled (then it withdraws from the server and
// returns nil) or the server refuses it.
func Serve(ctx context.Context, args []string, stderr io.Writer) error {
	cfg, err := parseServe(args, stderr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil)).With("deployment", cfg.spec.Deployment, "version", cfg.spec.Version)
	api := &apiClient{spec: cfg.spec, http: &http.Client{}}
	if err := configureTrust(api, cfg); err != nil {
		return err
	}
	m, err := api.manifest(ctx)
	if err != nil {
		return err
	}
	dir := filepath.Join(cfg.cacheDir, cfg.spec.Deployment, "v"+strconv.Itoa(cfg.spec.Version))
	if err := fetchModel(ctx, api, m, dir, log); err != nil {
		return err
	}
	model, err := loadModel(ctx, cfg, m, dir, log)
	if err != nil {
		return err
	}
	defer model.Close()
	if cfg.scheduling == "batch" {
		if err := batchScheduling(os.Getpid()); err != nil {
			return err
		}
	}

	ln, err := listen(cfg)
	if err != nil {
		return err
	}
	advertise, err := advertiseAddr(cfg.advertise, ln.Addr())
	if err != nil {
		_ = ln.Close()
		return err
	}
	w := &server{spec: cfg.spec, model: model, log: log, ln: ln, sessions: map[net.Conn]struct{}{}, maxSessions: cfg.maxSessions}
	ann := slipway.ReplicaAnnouncement{ID: workerID(cfg.pod), Address: advertise, Version: cfg.spec.Version, Runtime: m.Runtime,
		TLS: cfg.tlsCert != "" || cfg.spec.TLS, Pod: cfg.pod}
	log = log.With("worker", ann.ID, "address", advertise)
	w.log = log

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if ps, ok := model.(*pythonSessions); ok {
		ps.fatal = func(err error) { cancel(err) }
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // owned by Serve: ends when the listener closes
		defer wg.Done()
		w.acceptLoop()
	}()
	err = heartbeat(ctx, api, ann, &statusWriter{path: cfg.statusFile, log: log}, log)
	_ = ln.Close()
	w.closeSessions()
	wg.Wait()
	withdraw(api, ann.ID, log)
	if err != nil {
		return err
	}
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause // the model's process was OOM-killed: exit non-zero, the container restarts
	}
	log.Info("stopped")
	return nil
}

func configureTrust(api *apiClient, cfg *serveConfig) error {
	caFile := cfg.caCert
	if caFile == "" && cfg.spec.CACert != "" {
		f := filepath.Join(cfg.cacheDir, "server-ca-"+cfg.spec.Deployment+".pem")
		if err := os.MkdirAll(cfg.cacheDir, 0o755); err != nil {
			return fmt.Errorf("cache dir: %w", err)
		}
		if err := writeFileAtomic(f, []byte(cfg.spec.CACert)); err != nil {
			return fmt.Errorf("cache dir: %w", err)
		}
		caFile = f
	}
	if caFile == "" {
		return nil
	}
	pool, err := certpool.WithPEMFile(caFile)
	if err != nil {
		return err
	}
	api.http.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	return nil
}

func listen(cfg *serveConfig) (net.Listener, error) {
	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return nil, fmt.Errorf("slipway worker serve: listen on %s: %w", cfg.listen, err)
	}
	var cert tls.Certificate
	switch {
	case cfg.tlsCert != "":
		cert, err = tls.LoadX509KeyPair(cfg.tlsCert, cfg.tlsKey)
		if err != nil {
			_ = ln.Close()
			return nil, fmt.Errorf("slipway worker serve: load TLS certificate %s and key %s: %w", cfg.tlsCert, cfg.tlsKey, err)
		}
	case cfg.spec.TLS:
		// The deployment's key, derived from its replica secret: the server pins it (workerproto.VerifyReplica).
		if cert, err = workerproto.ReplicaCertificate(cfg.spec.Secret, cfg.spec.Deployment); err != nil {
			_ = ln.Close()
			return nil, fmt.Errorf("slipway worker serve: %w", err)
		}
	default:
		return ln, nil
	}
	return tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}), nil
}

// workerID names this process: its pod (or host), pid and a random part (a restarted container may reuse
// the pid).
func workerID(pod string) string {
	host := pod
	if host == "" {
		host, _ = os.Hostname()
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s-%d-%x", host, os.Getpid(), b)
}

// advertiseAddr is the address announced to the server: --advertise, with port 0 standing for the port the
// worker listens on (a free one on the host's network), or the listening address itself.
func advertiseAddr(flag string, listening net.Addr) (string, error) {
	if flag == "" {
		return listening.String(), nil
	}
	host, port, err := net.SplitHostPort(flag)
	if err != nil {
		return "", fmt.Errorf("slipway worker serve: --advertise %q: want host:port: %w", flag, err)
	}
	if port == "0" {
		_, port, _ = net.SplitHostPort(listening.String())
	}
	return net.JoinHostPort(host, port), nil
}

// heartbeat announces the worker and keeps announcing it at the interval the server asks for, until ctx ends.
// The first announcement must succeed; later failures are retried (the server may be restarting), but a
// refusal (bad secret, deleted deployment) ends the worker.
func heartbeat(ctx context.Context, api *apiClient, ann slipway.ReplicaAnnouncement, status *statusWriter, log *slog.Logger) error {
	interval, err := announce(ctx, api, ann)
	if err != nil {
		return fmt.Errorf("the server refused this worker: %w", err)
	}
	status.beat(ann, interval, true)
	log.Info("ready: announced to the server", "runtime", ann.Runtime, "heartbeat", interval)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
		next, err := announce(ctx, api, ann)
		switch {
		case err == nil:
			interval = next
			status.beat(ann, interval, true)
		case ctx.Err() != nil:
			return nil
		case refused(err):
			return fmt.Errorf("the server refused this worker's heartbeat: %w", err)
		default:
			status.beat(ann, interval, false)
			log.Warn("heartbeat failed; retrying", "error", err)
		}
	}
}

func announce(ctx context.Context, api *apiClient, ann slipway.ReplicaAnnouncement) (time.Duration, error) {
	body, _ := json.Marshal(ann) // plain strings and numbers
	resp, err := api.do(ctx, http.MethodPost, api.url("replicas"), bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var reply slipway.ReplicaAnnounceReply
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&reply); err != nil {
		return 0, fmt.Errorf("decode the server's answer to the announcement: %w", err)
	}
	return max(time.Duration(reply.HeartbeatIntervalMS)*time.Millisecond, 100*time.Millisecond), nil
}

// withdraw tells the server the worker is going, so that no slot dials it in vain (best effort).
func withdraw(api *apiClient, id string, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := api.do(ctx, http.MethodDelete, api.url("replicas", id), nil)
	if err != nil {
		log.Warn("could not withdraw from the server (it forgets this worker after its heartbeats stop)", "error", err)
		return
	}
	_ = resp.Body.Close()
}

// server accepts replica sessions, up to maxSessions at once: each server of the installation holds its own
// session to every worker (one pool slot per server), and calls its own requests through it. A server holds
// one session per worker, so the bound only stops a misbehaving client from piling up connections.
type server struct {
	spec        slipway.ReplicaSpec
	model       sessionModel
	log         *slog.Logger
	ln          net.Listener
	maxSessions int

	active   atomic.Int32 // sessions past the handshake
	mu       sync.Mutex
	sessions map[net.Conn]struct{}
	wg       sync.WaitGroup
}

func (s *server) acceptLoop() {
	defer s.wg.Wait()
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.log.Error("accept", "error", err)
			}
			return
		}
		s.mu.Lock()
		s.sessions[conn] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() { // owned by acceptLoop (waited for); ends with the connection
			defer s.wg.Done()
			defer s.forget(conn)
			s.session(conn)
		}()
	}
}

func (s *server) forget(conn net.Conn) {
	_ = conn.Close()
	s.mu.Lock()
	delete(s.sessions, conn)
	s.mu.Unlock()
}

// closeSessions ends every connection (the worker is stopping).
func (s *server) closeSessions() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.sessions {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.CloseRead() // shutdown(2): wakes a read blocked on the session's blocking duplicate
		}
		_ = c.Close()
	}
}

func (s *server) session(conn net.Conn) {
	peer := conn.RemoteAddr().String()
	if err := workerproto.AcceptReplicaConn(conn, s.spec.Secret, s.spec.Deployment, s.spec.Version); err != nil {
		s.log.Warn("refused a connection", "peer", peer, "error", err)
		return
	}
	if n := s.active.Add(1); int(n) > s.maxSessions {
		s.active.Add(-1)
		s.log.Warn("refused a session: this worker already serves its most sessions at once (--max-sessions)", "peer", peer, "max_sessions", s.maxSessions)
		_ = workerproto.WriteFrame(conn, workerproto.KindHello, helloError(fmt.Errorf("this worker already serves %d replica sessions (--max-sessions)", s.maxSessions)))
		return
	}
	defer s.active.Add(-1)
	s.log.Info("session started", "peer", peer, "sessions", s.active.Load())
	if err := s.model.Serve(conn); err != nil {
		s.log.Warn("session ended", "peer", peer, "error", err)
		return
	}
	s.log.Info("session ended", "peer", peer)
}
