package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/slipway-ml/slipway"
)

var _ slipway.ReplicaWorkerStore = (*DB)(nil)

// RecordReplicaWorker upserts the worker's row with the database's time as its heartbeat, and deletes the
// rows silent for longer than forget (a worker that died without withdrawing), in one transaction.
func (db *DB) RecordReplicaWorker(ctx context.Context, deployment string, a slipway.ReplicaAnnouncement, forget time.Duration) error {
	now := db.dialect.nowMS()
	err := db.tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO replica_workers (deployment, worker_id, version, address, runtime, tls, pod, announced_at, heartbeat_ms)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, `+now+`)
			ON CONFLICT (deployment, worker_id) DO UPDATE SET version = excluded.version, address = excluded.address,
				runtime = excluded.runtime, tls = excluded.tls, pod = excluded.pod, heartbeat_ms = excluded.heartbeat_ms`,
			deployment, a.ID, a.Version, a.Address, a.Runtime, a.TLS, a.Pod, formatTime(time.Now()))
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM replica_workers WHERE heartbeat_ms < `+now+` - ?`, forget.Milliseconds())
		return err
	})
	err = mapErr(err, fmt.Sprintf("deployment %q", deployment))
	if slipway.ErrorCode(err) == slipway.ECONFLICT { // the foreign key: the deployment is gone
		if _, ferr := db.FindDeployment(ctx, deployment); ferr != nil {
			return ferr
		}
	}
	return err
}

// DeleteReplicaWorker deletes a worker's row.
func (db *DB) DeleteReplicaWorker(ctx context.Context, deployment, id string) (bool, error) {
	res, err := db.w.ExecContext(ctx, `DELETE FROM replica_workers WHERE deployment = ? AND worker_id = ?`, deployment, id)
	if err != nil {
		return false, mapErr(err, fmt.Sprintf("replica worker %q of deployment %q", id, deployment))
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// ReplicaWorkers lists the workers whose last heartbeat is at most within old.
func (db *DB) ReplicaWorkers(ctx context.Context, within time.Duration) ([]slipway.RecordedReplicaWorker, error) {
	now := db.dialect.nowMS()
	return queryAll(ctx, db.r, func(rs rowScanner) (slipway.RecordedReplicaWorker, error) {
		var w slipway.RecordedReplicaWorker
		var ageMS int64
		err := rs.Scan(&w.Deployment, &w.ID, &w.Version, &w.Address, &w.Runtime, &w.TLS, &w.Pod, &ageMS)
		w.Age = time.Duration(max(ageMS, 0)) * time.Millisecond
		return w, err
	}, "replica workers", `SELECT deployment, worker_id, version, address, runtime, tls, pod, `+now+` - heartbeat_ms
		FROM replica_workers WHERE heartbeat_ms >= `+now+` - ? ORDER BY deployment, worker_id`, within.Milliseconds())
}
