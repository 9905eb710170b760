package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	cl "github.com/slipway-ml/slipway/internal/cluster"
)

// Membership and leases (internal/cluster). Every expiry is computed by the database from its own clock
// (dialect.nowMS) inside the statement that compares it: servers whose clocks disagree still agree on who holds
// a lease, because only one clock is ever read.

var _ cl.Store = (*DB)(nil)

// nowMS is the database's clock in Unix milliseconds, as an SQL expression.
func (d dialect) nowMS() string {
	if d == dialectPostgres {
		return "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"
	}
	return "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)"
}

// Heartbeat records the server's row with the database's time, and forgets servers silent for forget.
func (db *DB) Heartbeat(ctx context.Context, m cl.Member, forget time.Duration) error {
	now := db.dialect.nowMS()
	return db.tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO servers (id, advertise_url, grpc_address, started_at, heartbeat_ms) VALUES (?, ?, ?, ?, `+now+`)
			ON CONFLICT (id) DO UPDATE SET advertise_url = excluded.advertise_url, grpc_address = excluded.grpc_address,
			heartbeat_ms = excluded.heartbeat_ms`,
			m.ID, m.AdvertiseURL, m.GRPCAddress, formatTime(m.StartedAt))
		if err != nil {
			return mapErr(err, "server "+m.ID)
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM servers WHERE heartbeat_ms < `+now+` - ?`, forget.Milliseconds())
		return mapErr(err, "silent servers")
	})
}

// LeaveCluster removes the server's row.
func (db *DB) LeaveCluster(ctx context.Context, id string) error {
	return db.tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM servers WHERE id = ?`, id)
		return mapErr(err, "server "+id)
	})
}

// Members lists the servers that heartbeat within the last within, oldest first.
func (db *DB) Members(ctx context.Context, within time.Duration) ([]cl.Member, error) {
	now := db.dialect.nowMS()
	return queryAll(ctx, db.r, func(rs rowScanner) (cl.Member, error) {
		var m cl.Member
		var started string
		var ageMS int64
		err := rs.Scan(&m.ID, &m.AdvertiseURL, &m.GRPCAddress, &started, &ageMS)
		m.StartedAt, m.HeartbeatAge = parseTime(started), time.Duration(ageMS)*time.Millisecond
		return m, err
	}, "servers", `SELECT id, advertise_url, grpc_address, started_at, `+now+` - heartbeat_ms FROM servers
		WHERE heartbeat_ms >= `+now+` - ? ORDER BY started_at, id`, within.Milliseconds())
}

// AcquireLease is one upsert: a new lease row is inserted; an existing one is taken over only where it has
// expired or is already the caller's. The epoch counts takeovers, so a holder that lost its lease cannot
// renew or release the next holder's.
func (db *DB) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (int64, bool, error) {
	now := db.dialect.nowMS()
	var epoch int64
	err := db.tx(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `INSERT INTO leases (name, holder, expires_ms, epoch) VALUES (?, ?, `+now+` + ?, 1)
			ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_ms = excluded.expires_ms,
				epoch = CASE WHEN leases.holder = excluded.holder AND leases.expires_ms > `+now+` THEN leases.epoch ELSE leases.epoch + 1 END
			WHERE leases.holder = excluded.holder OR leases.expires_ms <= `+now+`
			RETURNING epoch`, name, holder, ttl.Milliseconds()).Scan(&epoch)
		if err == sql.ErrNoRows {
			return nil // held by another server: the upsert's condition left it alone
		}
		return mapErr(err, "lease "+name)
	})
	return epoch, epoch > 0, err
}

// RenewLeases extends every lease the holder still holds. A lease that expired but that nobody took since
// (same holder) is renewed too: no other server acted on it, since acting needs taking it.
func (db *DB) RenewLeases(ctx context.Context, holder string, ttl time.Duration) (map[string]int64, error) {
	out := map[string]int64{}
	err := db.tx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `UPDATE leases SET expires_ms = `+db.dialect.nowMS()+` + ? WHERE holder = ? RETURNING name, epoch`,
			ttl.Milliseconds(), holder)
		if err != nil {
			return mapErr(err, "leases of "+holder)
		}
		defer rows.Close()
		for rows.Next() {
			var name string
			var epoch int64
			if err := rows.Scan(&name, &epoch); err != nil {
				return mapErr(err, "leases of "+holder)
			}
			out[name] = epoch
		}
		return mapErr(rows.Err(), "leases of "+holder)
	})
	return out, err
}

// ReleaseLease expires the lease now and clears its holder (so that RenewLeases never revives it).
func (db *DB) ReleaseLease(ctx context.Context, name, holder string, epoch int64) error {
	return db.tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE leases SET previous = holder, holder = '', expires_ms = 0 WHERE name = ? AND holder = ? AND epoch = ?`,
			name, holder, epoch)
		return mapErr(err, "lease "+name)
	})
}

// holderColumns are a lease's name and its holder's and previous holder's ids and addresses (l: the lease, s:
// its holder's server row, p: its previous holder's).
const holderColumns = `l.name, l.holder, COALESCE(s.advertise_url, ''), COALESCE(s.grpc_address, ''),
	l.previous, COALESCE(p.advertise_url, ''), COALESCE(p.grpc_address, '')`

// FindLease returns lease name as stored, with its holders' advertised URLs, and whether it is live.
func (db *DB) FindLease(ctx context.Context, name string) (cl.Holder, bool, bool, error) {
	var h cl.Holder
	var live int
	err := db.r.QueryRowContext(ctx, `SELECT `+holderColumns+`,
		CASE WHEN l.holder <> '' AND l.expires_ms > `+db.dialect.nowMS()+` THEN 1 ELSE 0 END
		FROM leases l LEFT JOIN servers s ON s.id = l.holder LEFT JOIN servers p ON p.id = l.previous
		WHERE l.name = ?`, name).Scan(&h.Lease, &h.Server, &h.AdvertiseURL, &h.GRPCAddress, &h.Previous, &h.PreviousURL, &h.PreviousGRPC, &live)
	if errors.Is(err, sql.ErrNoRows) {
		return h, false, false, nil
	}
	return h, live == 1, err == nil, mapErr(err, "lease "+name)
}

// LiveLeases lists the unexpired leases under prefix with their holders' advertised URLs.
func (db *DB) LiveLeases(ctx context.Context, prefix string) ([]cl.Holder, error) {
	if strings.ContainsAny(prefix, `%_\`) {
		return nil, fmt.Errorf("sqlstore: lease prefix %q: no LIKE wildcards", prefix)
	}
	return queryAll(ctx, db.r, func(rs rowScanner) (cl.Holder, error) {
		var h cl.Holder
		err := rs.Scan(&h.Lease, &h.Server, &h.AdvertiseURL, &h.GRPCAddress, &h.Previous, &h.PreviousURL, &h.PreviousGRPC)
		return h, err
	}, "leases", `SELECT `+holderColumns+`
		FROM leases l LEFT JOIN servers s ON s.id = l.holder LEFT JOIN servers p ON p.id = l.previous
		WHERE l.name LIKE ? AND l.holder <> '' AND l.expires_ms > `+db.dialect.nowMS()+` ORDER BY l.name`, prefix+"%")
}
