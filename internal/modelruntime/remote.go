package modelruntime

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/workerproto"
)

// RemoteEngine serves replicas from network workers (`slipway worker serve`) that announce themselves: each
// Start takes an announced, unconnected worker of the spec's deployment and version, dials it (TLS when it
// listens with TLS), proves the deployment's secret and checks the worker's proof (workerproto's handshake),
// and returns the connection as the replica's Conn. One connection is one replica session: when it breaks the
// replica has "exited", the pool retries its request elsewhere and starts a replacement, which is the next
// announced worker. Workers that miss their heartbeats are forgotten (and their session, if any, is ended).
//
// With a Registry (the database), several servers share the workers: a heartbeat that reaches any server is
// recorded there, and every server's engine reads the table each half interval, so that each server holds its
// own session to every worker (the worker takes several) whichever server the worker announces itself to.
type RemoteEngine struct {
	cfg RemoteConfig

	mu      sync.Mutex
	workers map[workerKey]*remoteWorker
	changed chan struct{} // closed and replaced whenever a worker is announced or freed: wakes waiting Starts

	// Demand (what a cluster engine sizes its replica sets by): Starts under way, and credits of sessions
	// that ended on an error, whose slot is about to start again (its pool's restart backoff). Without the
	// credit, a crash would shrink the demand for a moment and the cluster would delete a healthy replica.
	starting map[demandKey]int
	credits  map[demandKey][]time.Time
	// failures are why a version's workers cannot come (PodFailing: its pods' image, an OOM kill), with when.
	failures map[demandKey]podFailure
	// forgotten: workers dropped here (a broken session, a failed dial, a pod gone), with when: the registry
	// brings one back only with a heartbeat newer than that, as its own next announcement would.
	forgotten map[workerKey]time.Time

	stop context.CancelFunc
	wg   sync.WaitGroup
}

// RemoteConfig configures a RemoteEngine.
type RemoteConfig struct {
	// Secret returns a deployment's replica secret.
	Secret func(ctx context.Context, deployment string) ([]byte, error)
	// TLS is the client configuration for workers that listen with TLS (its RootCAs: whom to trust; nil:
	// the system's roots).
	TLS *tls.Config
	// HeartbeatInterval is how often workers announce themselves again (2 s when 0); a worker is forgotten
	// after 3 intervals without one.
	HeartbeatInterval time.Duration
	// WaitTimeout bounds how long a Start waits for a worker to be announced (2 min when 0).
	WaitTimeout time.Duration
	// DialTimeout bounds the connection and the handshake (10 s when 0).
	DialTimeout time.Duration
	// PodReady, if set, says whether the pod a worker announced from may serve (a watch of the cluster's
	// pods); workers of a pod it refuses are not dialled. Workers that name no pod are not asked.
	PodReady func(pod string) bool
	// Registry, if set, shares the announced workers with the other servers of the installation (their
	// announcements are recorded by Heard and read back every half heartbeat interval).
	Registry slipway.ReplicaWorkerStore
	// DemandChanged, if set, is called (without the engine's lock, from any goroutine; it must not block) when
	// Demand of a deployment may have changed.
	DemandChanged func(deployment string)
	Log           *slog.Logger
}

type workerKey struct{ deployment, id string }

type demandKey struct {
	deployment string
	version    int
}

// creditTTL bounds how long a crashed session's slot keeps its place in the demand: longer than the pools'
// longest restart backoff (30 s), so that only a slot that is gone for good (its pool closed) gives it up.
const creditTTL = 45 * time.Second

// remoteWorker is an announced worker; conn is its session while a replica slot holds it.
type remoteWorker struct {
	deployment string
	ann        slipway.ReplicaAnnouncement
	last       time.Time
	conn       *remoteConn // nil: available
	claimed    bool        // a Start is dialling it
}

var _ Engine = (*RemoteEngine)(nil)

// NewRemoteEngine returns an engine with no workers; Close stops its expiry loop.
func NewRemoteEngine(cfg RemoteConfig) *RemoteEngine {
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = 2 * time.Second
	}
	if cfg.WaitTimeout <= 0 {
		cfg.WaitTimeout = 2 * time.Minute
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 10 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &RemoteEngine{cfg: cfg, workers: map[workerKey]*remoteWorker{}, changed: make(chan struct{}), stop: cancel,
		starting: map[demandKey]int{}, credits: map[demandKey][]time.Time{}, failures: map[demandKey]podFailure{},
		forgotten: map[workerKey]time.Time{}}
	e.wg.Add(1)
	go func() { // owned by the engine: ends on Close
		defer e.wg.Done()
		e.expireLoop(ctx)
	}()
	return e
}

// Close stops forgetting silent workers. Sessions end with their pools.
func (e *RemoteEngine) Close() {
	e.stop()
	e.wg.Wait()
}

// HeartbeatInterval is how often workers must announce themselves.
func (e *RemoteEngine) HeartbeatInterval() time.Duration { return e.cfg.HeartbeatInterval }

func (e *RemoteEngine) ttl() time.Duration { return 3 * e.cfg.HeartbeatInterval }

// Announce records (or refreshes: it is also the heartbeat) a worker of deployment, whose token the caller has
// verified.
func (e *RemoteEngine) Announce(deployment string, a slipway.ReplicaAnnouncement) slipway.ReplicaAnnounceReply {
	now := time.Now()
	e.mu.Lock()
	k := workerKey{deployment, a.ID}
	w := e.workers[k]
	if w == nil {
		w = &remoteWorker{deployment: deployment}
		e.workers[k] = w
		e.cfg.Log.Info("replica worker announced", "deployment", deployment, "worker", a.ID, "address", a.Address, "version", a.Version)
	}
	w.ann, w.last = a, now
	e.wakeLocked()
	e.mu.Unlock()
	return slipway.ReplicaAnnounceReply{HeartbeatIntervalMS: int(e.cfg.HeartbeatInterval / time.Millisecond), ExpiresAt: now.Add(e.ttl()).UTC()}
}

// Heard records an announcement (or heartbeat) that reached this server's API: in the registry, for every
// server, and here.
func (e *RemoteEngine) Heard(ctx context.Context, deployment string, a slipway.ReplicaAnnouncement) (slipway.ReplicaAnnounceReply, error) {
	if e.cfg.Registry != nil {
		if err := e.cfg.Registry.RecordReplicaWorker(ctx, deployment, a, 10*e.ttl()); err != nil {
			return slipway.ReplicaAnnounceReply{}, fmt.Errorf("record replica worker %s: %w", a.ID, err)
		}
	}
	return e.Announce(deployment, a), nil
}

// Withdraw forgets a worker that is shutting down, here and in the registry; its session, if any, ends when
// it closes the connection.
func (e *RemoteEngine) Withdraw(ctx context.Context, deployment, id string) (bool, error) {
	e.mu.Lock()
	k := workerKey{deployment, id}
	_, ok := e.workers[k]
	delete(e.workers, k)
	e.forgotten[k] = time.Now()
	e.mu.Unlock()
	if e.cfg.Registry != nil {
		recorded, err := e.cfg.Registry.DeleteReplicaWorker(ctx, deployment, id)
		if err != nil {
			return ok, err
		}
		ok = ok || recorded
	}
	return ok, nil
}

// syncRegistry takes in the workers that announced themselves to other servers (and the heartbeats they
// sent there). Errors are logged: the workers known here keep serving, and the next look tries again.
func (e *RemoteEngine) syncRegistry(ctx context.Context) {
	if e.cfg.Registry == nil {
		return
	}
	ws, err := e.cfg.Registry.ReplicaWorkers(ctx, e.ttl())
	if err != nil {
		if ctx.Err() == nil {
			e.cfg.Log.Warn("read the replica workers other servers heard", "error", err)
		}
		return
	}
	now := time.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	woke := false
	for _, r := range ws {
		k := workerKey{r.Deployment, r.ID}
		heard := now.Add(-r.Age)
		if at, ok := e.forgotten[k]; ok && !heard.After(at) {
			continue // dropped here since: only a newer heartbeat brings it back
		}
		w := e.workers[k]
		if w == nil {
			w = &remoteWorker{deployment: r.Deployment, ann: r.ReplicaAnnouncement, last: heard}
			e.workers[k] = w
			woke = true
			e.cfg.Log.Info("replica worker announced to another server", "deployment", r.Deployment, "worker", r.ID, "address", r.Address, "version", r.Version)
			continue
		}
		if heard.After(w.last) {
			w.last = heard
			if w.conn == nil && !w.claimed {
				w.ann = r.ReplicaAnnouncement
			}
		}
	}
	for k, at := range e.forgotten {
		if now.Sub(at) > 10*e.ttl() {
			delete(e.forgotten, k)
		}
	}
	if woke {
		e.wakeLocked()
	}
}

// Forget drops every worker of a deployment (deleted): their sessions are ended.
func (e *RemoteEngine) Forget(deployment string) {
	e.mu.Lock()
	e.releaseLocked(deployment)
	var conns []*remoteConn
	for k, w := range e.workers {
		if k.deployment == deployment {
			delete(e.workers, k)
			if w.conn != nil {
				conns = append(conns, w.conn)
			}
		}
	}
	e.mu.Unlock()
	for _, c := range conns {
		c.Kill()
	}
}

// Workers lists a deployment's announced workers, by ID.
func (e *RemoteEngine) Workers(deployment string) []slipway.RemoteReplica {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []slipway.RemoteReplica
	for k, w := range e.workers {
		if k.deployment != deployment {
			continue
		}
		state := "AVAILABLE"
		if w.conn != nil || w.claimed {
			state = "CONNECTED"
		}
		out = append(out, slipway.RemoteReplica{ID: w.ann.ID, Address: w.ann.Address, Version: w.ann.Version,
			Runtime: w.ann.Runtime, TLS: w.ann.TLS, State: state, LastHeartbeat: w.last.UTC(), Pod: w.ann.Pod})
	}
	slices.SortFunc(out, func(a, b slipway.RemoteReplica) int {
		if a.ID < b.ID {
			return -1
		}
		return 1
	})
	return out
}

func (e *RemoteEngine) wakeLocked() {
	close(e.changed)
	e.changed = make(chan struct{})
}

// expireLoop forgets workers that missed their heartbeats, ending their sessions: a worker that stopped
// beating may be cut off from the server, and its slot is better served by another.
func (e *RemoteEngine) expireLoop(ctx context.Context) {
	t := time.NewTicker(e.cfg.HeartbeatInterval / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			e.syncRegistry(ctx)
			var expired []*remoteConn
			e.mu.Lock()
			changed := e.expireCreditsLocked(now)
			for k, w := range e.workers {
				if now.Sub(w.last) > e.ttl() {
					delete(e.workers, k)
					e.cfg.Log.Warn("replica worker missed its heartbeats; forgotten", "deployment", k.deployment, "worker", k.id, "address", w.ann.Address)
					if w.conn != nil {
						expired = append(expired, w.conn)
					}
				}
			}
			e.mu.Unlock()
			for _, c := range expired {
				c.end(fmt.Errorf("worker %s missed its heartbeats", c.worker.id))
			}
			for _, d := range changed {
				e.demandChanged(d)
			}
		}
	}
}

// Start connects a replica slot to an announced worker of spec.Deployment at spec.Version, waiting up to
// WaitTimeout for one to be announced. A worker that cannot be dialled or fails the handshake is forgotten
// (a live one is announced again by its next heartbeat) and the next one is tried.
func (e *RemoteEngine) Start(ctx context.Context, spec ProcessSpec, stderr LogFunc) (Conn, error) {
	if spec.Deployment == "" {
		return nil, errors.New("remote engine: the replica spec names no deployment")
	}
	log := func(format string, args ...any) {
		if stderr != nil {
			stderr(fmt.Sprintf(format, args...))
		}
	}
	secret, err := e.cfg.Secret(ctx, spec.Deployment)
	if err != nil {
		return nil, fmt.Errorf("replica secret of %s: %w", spec.Deployment, err)
	}
	dk := demandKey{spec.Deployment, spec.Version}
	e.beginStart(dk)
	counted := true // this Start counts in the demand until it fails or its session does (dial, under the lock)
	defer func() {
		if counted {
			e.endStart(dk)
		}
	}()
	deadline := time.NewTimer(e.cfg.WaitTimeout)
	defer deadline.Stop()
	began := time.Now()
	var lastErr error
	for {
		k, w, wake := e.claim(spec.Deployment, spec.Version)
		if w == nil {
			if err := e.failedSince(dk, began); err != nil {
				return nil, err
			}
			select {
			case <-wake:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-deadline.C:
				hint := ""
				if lastErr != nil {
					hint = "; last failure: " + lastErr.Error()
				}
				return nil, fmt.Errorf("no replica worker for deployment %s version %d was announced within %s: start `slipway worker serve --listen ADDR` with the deployment's replica spec (slipway deploy replica-spec %s)%s",
					spec.Deployment, spec.Version, e.cfg.WaitTimeout, spec.Deployment, hint)
			}
		}
		c, err := e.dial(ctx, k, w, secret, spec, &counted)
		if err != nil {
			lastErr = err
			e.cfg.Log.Warn("replica worker refused or unreachable; forgotten until it announces itself again", "deployment", spec.Deployment, "worker", k.id, "address", w.Address, "error", err)
			log("worker %s at %s: %v", k.id, w.Address, err)
			e.unclaim(k, true)
			continue
		}
		log("connected to worker %s at %s", k.id, w.Address)
		return c, nil
	}
}

// podFailure is why a version's pods cannot serve (see PodFailing).
type podFailure struct {
	problem string
	at      time.Time
}

// failureGrace: a failure seen this long before a Start began still fails it. The session of a worker that
// is OOM-killed ends (the connection breaks) moments after the kill, and its slot's next Start begins after
// that; the kubelet's time of the kill has a second's resolution.
const failureGrace = 10 * time.Second

// PodFailing records that the pods of deployment@version cannot serve, and why (a cluster engine's watch
// says so: an image that cannot be pulled, an OOM kill): the Starts waiting for one of its workers, and those
// that begin within moments, fail with the reason at once instead of waiting out WaitTimeout.
func (e *RemoteEngine) PodFailing(deployment string, version int, problem string, at time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	k := demandKey{deployment, version}
	if f, ok := e.failures[k]; ok && f.at.After(at) {
		return
	}
	e.failures[k] = podFailure{problem: problem, at: at}
	e.wakeLocked()
}

// failedSince is the failure of k's pods seen since (about) began, if any. The Start it fails keeps its
// place in the demand as a crashed session does (a credit), so that its slot's retry does not scale the
// cluster's replicas down and up.
func (e *RemoteEngine) failedSince(k demandKey, began time.Time) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	f, ok := e.failures[k]
	if !ok || f.at.Before(began.Add(-failureGrace)) {
		return nil
	}
	if e.sessionsLocked(k) > 0 {
		// The version serves from other pods: a pod that failed while serving (an OOM kill) restarts, and its
		// slot waits for it rather than fail again and again until the failure is old (a crash loop would put a
		// serving deployment in NEEDS_ATTENTION for one killed request).
		return nil
	}
	e.credits[k] = append(e.credits[k], time.Now())
	return fmt.Errorf("no replica worker for deployment %s version %d can start: %s", k.deployment, k.version, f.problem)
}

// sessionsLocked counts the sessions held with workers of k.
func (e *RemoteEngine) sessionsLocked(k demandKey) int {
	n := 0
	for wk, w := range e.workers {
		if wk.deployment == k.deployment && w.conn != nil && w.conn.version == k.version {
			n++
		}
	}
	return n
}

// claim marks an available worker of deployment@version as being dialled and returns it, or returns the
// channel that is closed when one may have become available.
func (e *RemoteEngine) claim(deployment string, version int) (workerKey, *slipway.ReplicaAnnouncement, <-chan struct{}) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var best *remoteWorker
	var bestKey workerKey
	for k, w := range e.workers {
		if k.deployment != deployment || w.ann.Version != version || w.conn != nil || w.claimed {
			continue
		}
		if w.ann.Pod != "" && e.cfg.PodReady != nil && !e.cfg.PodReady(w.ann.Pod) {
			continue // its pod is not ready (or gone): the watch wakes the Starts when that changes
		}
		if best == nil || w.last.After(best.last) { // the freshest heartbeat: most likely alive
			best, bestKey = w, k
		}
	}
	if best == nil {
		return workerKey{}, nil, e.changed
	}
	best.claimed = true
	ann := best.ann
	return bestKey, &ann, nil
}

// unclaim frees a worker; drop forgets it (a broken connection: only a new heartbeat brings it back).
func (e *RemoteEngine) unclaim(k workerKey, drop bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	w := e.workers[k]
	if w == nil {
		return
	}
	w.claimed, w.conn = false, nil
	if drop {
		delete(e.workers, k)
		e.forgotten[k] = time.Now()
		return
	}
	e.wakeLocked()
}

func (e *RemoteEngine) dial(ctx context.Context, k workerKey, ann *slipway.ReplicaAnnouncement, secret []byte, spec ProcessSpec, counted *bool) (*remoteConn, error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.DialTimeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", ann.Address)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	if ann.TLS {
		// The worker's certificate carries the deployment's key derived from its secret (the workers a cluster
		// engine starts), or chains to the roots the server trusts (a worker started by hand with a CA's).
		var roots *x509.CertPool
		if e.cfg.TLS != nil {
			roots = e.cfg.TLS.RootCAs
		}
		host, _, _ := net.SplitHostPort(ann.Address)
		cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host,
			InsecureSkipVerify: true, // VerifyConnection below is the check, including the chain's
			VerifyConnection:   workerproto.VerifyReplica(secret, spec.Deployment, roots, host)}
		tc := tls.Client(nc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = nc.Close()
			return nil, fmt.Errorf("TLS handshake: %w", err)
		}
		nc = tc
	}
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Now()) }) // the handshake obeys ctx too
	err = workerproto.DialReplicaConn(nc, secret, spec.Deployment, spec.Version)
	stop()
	if err != nil {
		_ = nc.Close()
		return nil, err
	}
	c := &remoteConn{Conn: nc, engine: e, worker: k, version: spec.Version, addr: ann.Address, done: make(chan struct{})}
	e.mu.Lock()
	w := e.workers[k]
	if w == nil { // forgotten meanwhile (deleted deployment, expired)
		e.mu.Unlock()
		_ = nc.Close()
		return nil, errors.New("forgotten while connecting (missed heartbeats or deployment deleted)")
	}
	w.claimed, w.conn = false, c
	// The session now counts in the demand in place of the Start: one change, under the lock, so that the
	// demand never counts the replica twice.
	e.starting[demandKey{spec.Deployment, spec.Version}]--
	*counted = false
	e.mu.Unlock()
	return c, nil
}

// remoteConn is one replica session with a network worker.
type remoteConn struct {
	net.Conn
	engine  *RemoteEngine
	worker  workerKey
	version int
	addr    string
	once    sync.Once
	done    chan struct{}
	err     error
}

func (c *remoteConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil {
		c.end(fmt.Errorf("connection to worker %s at %s lost: %w", c.worker.id, c.addr, err))
	}
	return n, err
}

func (c *remoteConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if err != nil {
		c.end(fmt.Errorf("connection to worker %s at %s lost: %w", c.worker.id, c.addr, err))
	}
	return n, err
}

// Close ends the session cleanly: the worker sees EOF and waits for the next one (it stays announced).
func (c *remoteConn) Close() error {
	c.end(nil)
	return nil
}

// Kill ends the session at once (a call past its deadline, a failed health check).
func (c *remoteConn) Kill() { c.end(errors.New("killed")) }

// end closes the connection once; a session that ended on an error forgets its worker, which must announce
// itself again before it is dialled again.
func (c *remoteConn) end(err error) {
	c.once.Do(func() {
		c.err = err
		_ = c.Conn.Close()
		e := c.engine
		e.mu.Lock()
		if w := e.workers[c.worker]; w != nil && w.conn == c {
			w.conn = nil
			if err != nil {
				delete(e.workers, c.worker)
				e.forgotten[c.worker] = time.Now()
			} else {
				e.wakeLocked()
			}
		}
		if err != nil { // a crash, a kill, a lost worker: its slot starts again (and takes the credit)
			dk := demandKey{c.worker.deployment, c.version}
			e.credits[dk] = append(e.credits[dk], time.Now())
		}
		e.mu.Unlock()
		close(c.done)
		e.demandChanged(c.worker.deployment)
	})
}

func (c *remoteConn) Ready() error          { return nil }
func (c *remoteConn) Done() <-chan struct{} { return c.done }
func (c *remoteConn) ExitErr() error        { return c.err }
func (c *remoteConn) PID() int              { return 0 }

// StartOn starts spec on engine (not the configured one) and waits for its hello, like Runtimes.Start: the
// deployments whose replicas run elsewhere (an external deployment's RemoteEngine) start theirs this way.
func (rt *Runtimes) StartOn(ctx context.Context, engine Engine, spec ProcessSpec, readyTimeout time.Duration, log LogFunc) (*Replica, error) {
	return startReplica(ctx, engine, spec, readyTimeout, log)
}

// beginStart counts a Start in the demand; it takes the place of a crashed session's credit, if any.
func (e *RemoteEngine) beginStart(k demandKey) {
	e.mu.Lock()
	e.starting[k]++
	if c := e.credits[k]; len(c) > 0 {
		e.credits[k] = c[1:]
		if len(e.credits[k]) == 0 {
			delete(e.credits, k)
		}
	}
	e.mu.Unlock()
	e.demandChanged(k.deployment)
}

func (e *RemoteEngine) endStart(k demandKey) {
	e.mu.Lock()
	e.starting[k]--
	if e.starting[k] <= 0 {
		delete(e.starting, k)
	}
	e.mu.Unlock()
	e.demandChanged(k.deployment)
}

// expireCreditsLocked drops credits older than creditTTL and returns the deployments whose demand fell.
func (e *RemoteEngine) expireCreditsLocked(now time.Time) []string {
	var changed []string
	for k, c := range e.credits {
		kept := slices.DeleteFunc(c, func(t time.Time) bool { return now.Sub(t) > creditTTL })
		if len(kept) == len(c) {
			continue
		}
		changed = append(changed, k.deployment)
		if len(kept) == 0 {
			delete(e.credits, k)
		} else {
			e.credits[k] = kept
		}
	}
	return changed
}

func (e *RemoteEngine) releaseLocked(deployment string) {
	for k := range e.credits {
		if k.deployment == deployment {
			delete(e.credits, k)
		}
	}
	for k := range e.failures {
		if k.deployment == deployment {
			delete(e.failures, k)
		}
	}
}

// Release drops the credits of a deployment whose replicas were stopped on purpose (deactivated, deleted):
// none of its crashed sessions is coming back, so its demand falls to what still runs.
func (e *RemoteEngine) Release(deployment string) {
	e.mu.Lock()
	e.releaseLocked(deployment)
	e.mu.Unlock()
	e.demandChanged(deployment)
}

// Demand is how many workers each version of a deployment needs now: its sessions, the Starts waiting for a
// worker and the slots restarting after a crash. A cluster engine sizes the deployment's replica sets by it.
func (e *RemoteEngine) Demand(deployment string) map[int]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[int]int{}
	for k, n := range e.starting {
		if k.deployment == deployment && n > 0 {
			out[k.version] += n
		}
	}
	for k, c := range e.credits {
		if k.deployment == deployment {
			out[k.version] += len(c)
		}
	}
	for k, w := range e.workers {
		if k.deployment == deployment && w.conn != nil {
			out[w.conn.version]++
		}
	}
	return out
}

func (e *RemoteEngine) demandChanged(deployment string) {
	if e.cfg.DemandChanged != nil {
		e.cfg.DemandChanged(deployment)
	}
}

// DropPod forgets the workers announced from pod (gone, or no longer ready: the cluster's watch says so) and
// ends their sessions at once, without waiting for their heartbeats to stop. A worker of a pod that becomes
// ready again is dialled after its next heartbeat.
func (e *RemoteEngine) DropPod(pod string) {
	e.mu.Lock()
	var conns []*remoteConn
	for k, w := range e.workers {
		if w.ann.Pod == pod {
			delete(e.workers, k)
			e.forgotten[k] = time.Now()
			e.cfg.Log.Info("replica worker's pod is gone or not ready; forgotten", "deployment", k.deployment, "worker", k.id, "pod", pod)
			if w.conn != nil {
				conns = append(conns, w.conn)
			}
		}
	}
	e.mu.Unlock()
	for _, c := range conns {
		c.end(fmt.Errorf("pod %s of worker %s is gone or not ready", pod, c.worker.id))
	}
}

// Wake makes waiting Starts look at the workers again (a pod became ready).
func (e *RemoteEngine) Wake() {
	e.mu.Lock()
	e.wakeLocked()
	e.mu.Unlock()
}

// Usable counts the workers of deployment@version this server could hold a session to: announced (here or,
// through the registry, to another server) and, for a pod's worker, with the pod ready. A server that does not
// host the deployment sizes its own pool by it (it never asks the cluster for more).
func (e *RemoteEngine) Usable(deployment string, version int) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for k, w := range e.workers {
		if k.deployment != deployment || w.ann.Version != version {
			continue
		}
		if w.ann.Pod != "" && e.cfg.PodReady != nil && !e.cfg.PodReady(w.ann.Pod) {
			continue
		}
		n++
	}
	return n
}

// Sessions counts the sessions this server holds with workers of deployment@version (a following pool's
// retiring generation ends them as its requests finish).
func (e *RemoteEngine) Sessions(deployment string, version int) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.sessionsLocked(demandKey{deployment, version})
}
