// Package cluster lets several Slipway servers share one installation (one PostgreSQL database, one bucket):
// each server is a member that heartbeats, and each piece of work that must have exactly one owner (a
// deployment's replicas, alert evaluation and retention) is a lease in the database, taken and renewed with
// compare-and-set. There is no consensus of our own: the database's transactions and clock decide.
//
// Expiry is on the database's clock, computed in the statement that compares it. A holder keeps its own,
// stricter deadline on its monotonic clock: the time it SENT the acquire or renew plus the TTL. The database
// computed its expiry later than that send, so the holder always stops believing it holds a lease no later
// than the database lets anyone else take it, whatever the servers' wall clocks say. Skew between servers
// therefore never matters; only the database's clock rate over a TTL does.
package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// DefaultTTL is how long a lease lives without renewal: a server that stops renewing (killed, partitioned)
// loses its work after at most this long, and another server takes it on its next look (about a second).
const DefaultTTL = 15 * time.Second

// Config wires a Node.
type Config struct {
	Store        Store
	AdvertiseURL string        // how the other servers reach this one
	TTL          time.Duration // lease lifetime (default DefaultTTL); renewed every TTL/3
	Log          *slog.Logger
}

// Node is this server's membership and the leases it holds. Its goroutine (Start → Close) heartbeats, renews
// every held lease in one statement and campaigns for the leases it was asked to keep.
type Node struct {
	store   Store
	id      string
	url     string
	grpc    string // guarded by mu, as url
	ttl     time.Duration
	started time.Time
	log     *slog.Logger

	// opMu serialises the lease statements with the bookkeeping around them: a renewal never sees a lease
	// that an Acquire has taken in the database but not yet recorded in held.
	opMu    sync.Mutex
	closing bool // guarded by opMu: Close began, no lease is taken any more

	mu        sync.Mutex
	held      map[string]*held
	campaigns []string

	cancel context.CancelFunc
	done   chan struct{}
}

type held struct {
	epoch  int64
	until  time.Time // this server's deadline (monotonic): send time of the last acquire/renew + TTL
	onLost func()
}

// New returns a node with a fresh server id (a restarted server is a new member: it holds nothing of its
// previous life and takes nothing back by force).
func New(cfg Config) *Node {
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Node{store: cfg.Store, id: newServerID(), url: cfg.AdvertiseURL, ttl: cfg.TTL, started: time.Now().UTC(),
		log: cfg.Log, held: map[string]*held{}}
}

func newServerID() string {
	host, _ := os.Hostname()
	if host == "" {
		host = "server"
	}
	var b [4]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand panics instead)
	return host + "-" + hex.EncodeToString(b[:])
}

// SetAdvertiseURL sets where the other servers reach this one (once the listen address is known); Beat
// publishes it.
func (n *Node) SetAdvertiseURL(u string) {
	n.mu.Lock()
	n.url = u
	n.mu.Unlock()
}

// SetGRPCAddress sets where the other servers reach this one's gRPC service (grpc://HOST:PORT or
// grpcs://HOST:PORT); Beat publishes it.
func (n *Node) SetGRPCAddress(a string) {
	n.mu.Lock()
	n.grpc = a
	n.mu.Unlock()
}

// Beat heartbeats now.
func (n *Node) Beat(ctx context.Context) error { return n.heartbeat(ctx) }

// ID is this server's id in the servers table and as a lease holder.
func (n *Node) ID() string { return n.id }

// AdvertiseURL is where the other servers reach this one.
func (n *Node) AdvertiseURL() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.url
}

// TTL is the lease lifetime.
func (n *Node) TTL() time.Duration { return n.ttl }

// Start records this server in the servers table and starts the heartbeat/renewal goroutine (ended by Close).
func (n *Node) Start(ctx context.Context) error {
	if err := n.heartbeat(ctx); err != nil {
		return fmt.Errorf("cluster: join: %w", err)
	}
	n.campaign(ctx) // at once: a lone server evaluates alerts from its start
	lctx, cancel := context.WithCancel(context.Background())
	n.cancel, n.done = cancel, make(chan struct{})
	go func() { // owned by the node: ends at Close
		defer close(n.done)
		n.loop(lctx)
	}()
	n.log.Info("joined the cluster", "server", n.id, "lease_ttl", n.ttl.String())
	return nil
}

func (n *Node) loop(ctx context.Context) {
	t := time.NewTicker(n.ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := n.heartbeat(ctx); err != nil && ctx.Err() == nil {
			n.log.Warn("cluster: heartbeat", "error", err)
		}
		n.renew(ctx)
		n.campaign(ctx)
	}
}

func (n *Node) heartbeat(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, n.ttl/3)
	defer cancel()
	// A server silent for 10 TTLs is forgotten: it holds nothing by then, and the list stays short.
	n.mu.Lock()
	m := Member{ID: n.id, AdvertiseURL: n.url, GRPCAddress: n.grpc, StartedAt: n.started}
	n.mu.Unlock()
	return n.store.Heartbeat(ctx, m, 10*n.ttl)
}

// renew extends every held lease. A lease the database no longer gives this server at the same epoch is lost
// at once; one that could not be renewed (the database is unreachable) is lost when its deadline passes.
func (n *Node) renew(ctx context.Context) {
	n.opMu.Lock()
	sent := time.Now()
	rctx, cancel := context.WithTimeout(ctx, n.ttl/3)
	renewed, err := n.store.RenewLeases(rctx, n.id, n.ttl)
	cancel()
	var lost []func()
	n.mu.Lock()
	for name, h := range n.held {
		switch e, ok := renewed[name]; {
		case err == nil && ok && e == h.epoch:
			h.until = sent.Add(n.ttl)
		case err != nil && time.Now().Before(h.until):
			// keep it until its deadline: the next renewal may get through
		default:
			delete(n.held, name)
			n.log.Warn("cluster: lost a lease", "lease", name, "error", err)
			if h.onLost != nil {
				lost = append(lost, h.onLost)
			}
		}
	}
	// A lease renewed in the database that this server already gave up (its deadline passed while the
	// database was unreachable, and its work stopped) must not stay ours: nobody else could take it.
	var strays []string
	for name := range renewed {
		if n.held[name] == nil {
			strays = append(strays, name)
		}
	}
	n.mu.Unlock()
	for _, name := range strays {
		if rerr := n.store.ReleaseLease(ctx, name, n.id, renewed[name]); rerr != nil && ctx.Err() == nil {
			n.log.Warn("cluster: release a lease given up", "lease", name, "error", rerr)
		}
	}
	n.opMu.Unlock()
	if err != nil && ctx.Err() == nil {
		n.log.Warn("cluster: renew leases", "error", err)
	}
	for _, fn := range lost {
		fn()
	}
}

// Campaign asks the node to hold the lease name whenever it is free (checked at every renewal): work that
// must run on exactly one server, such as alert evaluation. Holds(name) says whether this server has it.
func (n *Node) Campaign(name string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.campaigns = append(n.campaigns, name)
}

func (n *Node) campaign(ctx context.Context) {
	n.mu.Lock()
	names := append([]string(nil), n.campaigns...)
	n.mu.Unlock()
	for _, name := range names {
		if n.Holds(name) {
			continue
		}
		if ok, err := n.Acquire(ctx, name, nil); err != nil && ctx.Err() == nil {
			n.log.Warn("cluster: campaign", "lease", name, "error", err)
		} else if ok {
			n.log.Info("cluster: took a lease", "lease", name)
		}
	}
}

// Acquire takes the lease name if it is free, expired or already this server's. onLost (may be nil) is called,
// from the node's goroutine, if a later renewal finds the lease gone; not after Release.
func (n *Node) Acquire(ctx context.Context, name string, onLost func()) (bool, error) {
	n.opMu.Lock()
	defer n.opMu.Unlock()
	if n.closing {
		return false, nil
	}
	sent := time.Now()
	epoch, ok, err := n.store.AcquireLease(ctx, name, n.id, n.ttl)
	if err != nil || !ok {
		return false, err
	}
	n.mu.Lock()
	n.held[name] = &held{epoch: epoch, until: sent.Add(n.ttl), onLost: onLost}
	n.mu.Unlock()
	return true, nil
}

// Holds reports whether this server holds name now (by its own, conservative deadline).
func (n *Node) Holds(name string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	h := n.held[name]
	return h != nil && time.Now().Before(h.until)
}

// Release gives the lease up at once, so that another server takes it on its next look.
func (n *Node) Release(ctx context.Context, name string) error {
	n.opMu.Lock()
	defer n.opMu.Unlock()
	n.mu.Lock()
	h := n.held[name]
	delete(n.held, name)
	n.mu.Unlock()
	if h == nil {
		return nil
	}
	return n.store.ReleaseLease(ctx, name, n.id, h.epoch)
}

// Holders lists the live leases under prefix (another server's, or this one's).
func (n *Node) Holders(ctx context.Context, prefix string) ([]Holder, error) {
	return n.store.LiveLeases(ctx, prefix)
}

// Holder returns who holds the lease name now; ok is false when nobody does. The Holder is the lease as
// stored either way: a released lease has no Server but names its Previous holder.
func (n *Node) Holder(ctx context.Context, name string) (Holder, bool, error) {
	h, live, _, err := n.store.FindLease(ctx, name)
	return h, live && err == nil, err
}

// Others lists the other servers that heartbeat within the last TTL.
func (n *Node) Others(ctx context.Context) ([]Member, error) {
	ms, err := n.store.Members(ctx, n.ttl) // three missed heartbeats: gone
	out := ms[:0]
	for _, m := range ms {
		if m.ID != n.id {
			out = append(out, m)
		}
	}
	return out, err
}

// Close stops heartbeating, releases every lease this server holds (so that other servers take its work at
// once instead of after the TTL) and leaves the servers table.
func (n *Node) Close(ctx context.Context) error {
	if n.cancel != nil {
		n.cancel()
		<-n.done
	}
	n.opMu.Lock()
	n.closing = true
	n.opMu.Unlock()
	n.mu.Lock()
	names := make([]string, 0, len(n.held))
	for name := range n.held {
		names = append(names, name)
	}
	n.mu.Unlock()
	var errs []error
	for _, name := range names {
		if err := n.Release(ctx, name); err != nil {
			errs = append(errs, fmt.Errorf("release %s: %w", name, err))
		}
	}
	errs = append(errs, n.store.LeaveCluster(ctx, n.id))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cluster: leave: %w", err)
	}
	n.log.Info("left the cluster", "server", n.id, "released", len(names))
	return nil
}
