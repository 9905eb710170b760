package app

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/canary"
	"github.com/slipway-ml/slipway/internal/cluster"
	"github.com/slipway-ml/slipway/internal/deploy"
	"github.com/slipway-ml/slipway/internal/httpapi"
)

// Several servers on one installation (docs/production.md). On PostgreSQL every server is a member of the
// cluster (internal/cluster): it heartbeats in the servers table, hosts the deployments whose leases it holds,
// forwards calls about the others to their hosts, and evaluates alerts only while it holds the "monitor"
// lease. SQLite belongs to one server: a second server on the same SQLite file is refused by a lock.

// monitorLease is held by the one server that evaluates alerts, applies retention and stores drift windows.
const monitorLease = "monitor"

// ownershipEvery is how often a server looks for deployments nobody hosts: with the lease TTL (--lease-ttl,
// 15 s by default) it bounds a takeover after a kill at about TTL + 1 s plus the replicas' start.
const ownershipEvery = time.Second

// joinCluster makes this server a member on PostgreSQL (before anything recovers: whether other servers are
// live decides what this one may recover), or locks a SQLite database kept outside the data folder.
func (a *App) joinCluster(ctx context.Context) error {
	if a.cfg.Database.Postgres == "" {
		return a.lockSQLite()
	}
	a.node = cluster.New(cluster.Config{Store: a.db, AdvertiseURL: a.cfg.AdvertiseURL, TTL: a.cfg.LeaseTTL, Log: a.log})
	a.node.Campaign(monitorLease)
	a.db.FenceRuns(a.node.ID()) // before any run is claimed: the runs this server claims are owned by it
	if err := a.node.Start(ctx); err != nil {
		return err
	}
	others, err := a.node.Others(ctx)
	if err != nil {
		return fmt.Errorf("cluster: list servers: %w", err)
	}
	if len(others) > 0 {
		a.shared = true
		a.log.Info("other servers share this database: leaving their registrations, runs and batch runs alone at start",
			"servers", len(others))
	}
	return nil
}

// lockSQLite refuses a second server on a SQLite database outside the data folder (the data folder's own lock
// covers the default place).
func (a *App) lockSQLite() error {
	dir := filepath.Dir(a.cfg.Database.SQLite)
	if dir == a.cfg.DataDir {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create database folder: %w", err)
	}
	f, err := lockDataDir(dir)
	if err != nil {
		return fmt.Errorf("SQLite database %s: %w. A SQLite database belongs to one server; for several servers use --database postgres://... (docs/production.md)", a.cfg.Database.SQLite, err)
	}
	a.dbLock = f
	return nil
}

// recoverCatalog finishes interrupted registrations and collects unreferenced blobs, alone only: another live
// server may be registering a version right now (its blobs are not referenced yet, its row is REGISTERING).
func (a *App) recoverCatalog(ctx context.Context) error {
	if a.shared {
		a.log.Info("catalog recovery and blob garbage collection skipped: other servers are live (the next server to start alone does them)")
		return nil
	}
	return a.catalog.Recover(ctx)
}

// runLeases is what the jobs and batch services own their runs through: nil on one server.
func (a *App) runLeases() cluster.Leases {
	if a.node == nil {
		return nil
	}
	return a.node
}

// enableOwnership shares the deployments with the other servers through leases.
func (a *App) enableOwnership() {
	if a.node != nil {
		a.deploy.EnableOwnership(a.node)
	}
}

// monitorLeader is the monitor's Leader: nil (always) on one server.
func (a *App) monitorLeader() func() bool {
	if a.node == nil {
		return nil
	}
	return func() bool { return a.node.Holds(monitorLease) }
}

// hosts is the API's view of which server hosts a deployment (nil on one server: nothing is forwarded).
func (a *App) hosts() httpapi.Hosts {
	if a.node == nil {
		return nil
	}
	return leaseHosts{a.node}
}

// leaseHosts answers the API from the deployments' leases.
type leaseHosts struct{ node *cluster.Node }

func (h leaseHosts) ServerID() string { return h.node.ID() }

func (h leaseHosts) Host(ctx context.Context, deployment string) (httpapi.Host, bool, error) {
	holder, ok, err := h.node.Holder(ctx, deploy.LeaseName(deployment))
	previous := httpapi.Host{Server: holder.Previous, AdvertiseURL: holder.PreviousURL, GRPCAddress: holder.PreviousGRPC}
	switch {
	case err != nil:
		return httpapi.Host{}, false, err
	case !ok && holder.Server == "" && holder.Previous != "" && holder.Previous != h.node.ID() && holder.PreviousURL != "":
		// Released by a server handing it over, and not yet taken by another: the releasing server still
		// serves it (it waits until another server serves it before it stops).
		return previous, true, nil
	case !ok:
		return httpapi.Host{}, false, nil
	case holder.Server == h.node.ID():
		// Asked here while this server's replicas start (no router yet): the server that handed the
		// deployment over still serves it until it has left.
		if holder.Previous != "" && holder.Previous != h.node.ID() && holder.PreviousURL != "" {
			return previous, true, nil
		}
		return httpapi.Host{}, false, nil
	case holder.AdvertiseURL == "":
		return httpapi.Host{}, false, nil
	}
	return httpapi.Host{Server: holder.Server, AdvertiseURL: holder.AdvertiseURL, GRPCAddress: holder.GRPCAddress}, true, nil
}

// canaryDeployments is what canary analysis sees: on several servers, only the deployments hosted here (the
// request counts it reads are this server's).
func (a *App) canaryDeployments() canary.Deployments {
	if a.node == nil {
		return a.deploy
	}
	return hostedHere{a.deploy}
}

type hostedHere struct{ *deploy.Service }

func (h hostedHere) List(ctx context.Context) ([]*slipway.Deployment, error) {
	ds, err := h.Service.List(ctx)
	out := ds[:0]
	for _, d := range ds {
		if h.Routers().Get(d.Name) != nil {
			out = append(out, d)
		}
	}
	return out, err
}

// startCluster runs once the server listens: it publishes where the server is reached and starts hosting
// deployments.
func (a *App) startCluster(ctx context.Context, listenURL, grpcAddress string) error {
	if a.node == nil {
		return nil
	}
	if a.cfg.AdvertiseURL == "" {
		a.node.SetAdvertiseURL(loopbackURL(listenURL))
	}
	a.node.SetGRPCAddress(advertisedGRPC(a.cfg.AdvertiseGRPC, grpcAddress, a.node.AdvertiseURL()))
	if err := a.node.Beat(ctx); err != nil {
		return fmt.Errorf("cluster: publish the advertise URL: %w", err)
	}
	a.deploy.StartOwnership(ownershipEvery)
	return nil
}

// loopbackURL replaces an all-interfaces host (0.0.0.0, [::]) by the loopback address.
func loopbackURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		return raw
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		u.Host = net.JoinHostPort("127.0.0.1", port)
	}
	return u.String()
}

// advertisedGRPC is where the other servers reach this server's gRPC service: --advertise-grpc HOST:PORT if
// given, else the gRPC listener's address, whose unspecified host (0.0.0.0, ::) becomes the advertise URL's
// host. listening is grpc[s]://HOST:PORT ("" without --grpc-addr: nothing is advertised).
func advertisedGRPC(flag, listening, advertiseURL string) string {
	if listening == "" {
		return ""
	}
	scheme, hostPort, _ := strings.Cut(listening, "://")
	if flag != "" {
		return scheme + "://" + flag
	}
	host, port, err := net.SplitHostPort(hostPort)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsUnspecified() {
		return listening
	}
	if u, err := url.Parse(advertiseURL); err == nil && u.Hostname() != "" {
		return scheme + "://" + net.JoinHostPort(u.Hostname(), port)
	}
	return scheme + "://" + net.JoinHostPort("127.0.0.1", port)
}

// handOverPoll is how often a stopping server looks whether its deployments serve elsewhere.
const handOverPoll = 200 * time.Millisecond

// handOver runs at SIGTERM, before the HTTP server stops: with other servers live, this server gives its
// deployments' leases up but keeps serving them until each is ACTIVE on another server (bounded by the
// shutdown timeout), so that a rolling restart drops no request. Alone, it has no one to hand over to.
func (a *App) handOver() {
	if a.node == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
	defer cancel()
	if others, err := a.node.Others(ctx); err != nil || len(others) == 0 {
		return
	}
	start := time.Now()
	names := a.deploy.HandOver(ctx)
	if len(names) == 0 {
		return
	}
	a.log.Info("handing deployments over to the other servers", "deployments", len(names))
	for _, name := range names {
		a.waitServedElsewhere(ctx, name, start)
	}
	a.log.Info("deployments handed over", "deployments", len(names), "took", time.Since(start).Round(time.Millisecond).String(), "timed_out", ctx.Err() != nil)
}

// waitServedElsewhere waits until another server holds the deployment's lease and has made it ACTIVE since
// start (or it is gone, or no longer meant to serve).
func (a *App) waitServedElsewhere(ctx context.Context, name string, start time.Time) {
	restarted := false // seen not ACTIVE since the lease was released: the new host is starting it
	for ctx.Err() == nil {
		d, err := a.db.FindDeployment(ctx, name)
		if slipway.ErrorCode(err) == slipway.ENOTFOUND {
			return
		}
		if err == nil {
			h, held, herr := a.node.Holder(ctx, deploy.LeaseName(name))
			active := d.State == slipway.DeploymentActive
			restarted = restarted || !active
			if herr == nil && held && h.Server != a.node.ID() && active && (restarted || d.UpdatedAt.After(start)) {
				return
			}
			if d.State == slipway.DeploymentInactive || d.State == slipway.DeploymentFailed {
				return
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(handOverPoll):
		}
	}
}

// leaveCluster hands this server's work over (after the HTTP server drained): the ownership loop stops (it
// must not take the released leases back), every lease is released, so that the other servers start the
// deployments at once rather than after the TTL, and the server leaves the servers table.
func (a *App) leaveCluster() error {
	if a.node == nil {
		return nil
	}
	if a.deploy != nil {
		a.deploy.StopOwnership()
	}
	// The runs stop before the node leaves: each releases its lease as it stops (its record says where it
	// stopped), and only then may another server continue it. Stopping them after the leases were released
	// would let this server and the next owner work on a run at the same time.
	if a.jobs != nil {
		_ = a.jobs.Close() // never fails; Close below calls it again, which does nothing
	}
	if a.batch != nil {
		a.batch.StopRuns()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := a.node.Close(ctx)
	a.node = nil
	return err
}
