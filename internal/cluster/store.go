package cluster

import (
	"context"
	"time"
)

// Member is one server of an installation, as recorded in the database.
type Member struct {
	ID           string
	AdvertiseURL string
	// GRPCAddress is where the other servers reach this one's gRPC service: grpc://HOST:PORT, or
	// grpcs://HOST:PORT when it speaks TLS ("" without --grpc-addr).
	GRPCAddress string
	StartedAt   time.Time
	// HeartbeatAge is how long ago, on the database's clock, the server last heartbeat.
	HeartbeatAge time.Duration
}

// Holder is who holds a lease now: the server and where it is reached.
type Holder struct {
	Lease        string
	Server       string
	AdvertiseURL string // empty when the holder's server row is gone
	GRPCAddress  string // the holder's gRPC address (Member.GRPCAddress)
	// Previous is the server that released the lease last, and PreviousURL where it is reached while it is
	// still a member (empty once it left): during a hand-over it serves until the new holder is ready.
	Previous, PreviousURL string
	PreviousGRPC          string
}

// Store keeps membership and leases. Every ownership decision is one compare-and-set statement evaluated on
// the database's clock (expiry times are computed by the database, never sent by a server).
type Store interface {
	// Heartbeat records (or refreshes) the server's row; it also forgets servers silent for longer than forget.
	Heartbeat(ctx context.Context, m Member, forget time.Duration) error
	// LeaveCluster removes the server's row.
	LeaveCluster(ctx context.Context, id string) error
	// Members lists the servers that heartbeat within within.
	Members(ctx context.Context, within time.Duration) ([]Member, error)

	// AcquireLease takes name for holder for ttl if it is free, expired or already holder's, and returns the
	// lease's epoch; ok is false when another server holds it.
	AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (epoch int64, ok bool, err error)
	// RenewLeases extends, by ttl, every lease holder still holds (nobody took it over: holder unchanged) and
	// returns their epochs by name.
	RenewLeases(ctx context.Context, holder string, ttl time.Duration) (map[string]int64, error)
	// ReleaseLease gives name up at once (expired, no holder) if holder still holds it at epoch; the lease
	// remembers holder as its previous holder.
	ReleaseLease(ctx context.Context, name, holder string, epoch int64) error
	// LiveLeases lists the unexpired leases whose name starts with prefix, with their holders.
	LiveLeases(ctx context.Context, prefix string) ([]Holder, error)
	// FindLease returns lease name as stored (its Server empty once released) and whether it is live; found
	// is false when it was never taken.
	FindLease(ctx context.Context, name string) (h Holder, live, found bool, err error)
}
