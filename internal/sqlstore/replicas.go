package sqlstore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/slipway-ml/slipway"
)

var _ slipway.ReplicaSecretStore = (*DB)(nil)

// ReplicaSecret returns the deployment's replica secret, creating it on first use (ON CONFLICT: two servers
// sharing the database agree on the first one written). ENOTFOUND when the deployment does not exist.
func (db *DB) ReplicaSecret(ctx context.Context, deployment string) ([]byte, error) {
	var stored []byte
	// Read first: every replica token the API checks reads the secret, and a read never takes the writer.
	err := db.r.QueryRowContext(ctx, `SELECT secret FROM replica_secrets WHERE deployment = ?`, deployment).Scan(&stored)
	if err == nil {
		return stored, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return nil, mapErr(err, fmt.Sprintf("replica secret of deployment %q", deployment))
	}
	if _, err := db.FindDeployment(ctx, deployment); err != nil {
		return nil, err
	}
	secret := make([]byte, 32)
	_, _ = rand.Read(secret) // never fails on Linux
	_, err = db.w.ExecContext(ctx, `INSERT INTO replica_secrets (deployment, secret, created_at) VALUES (?, ?, ?)
		ON CONFLICT (deployment) DO NOTHING`, deployment, secret, formatTime(time.Now()))
	if err != nil {
		return nil, mapErr(err, fmt.Sprintf("deployment %q", deployment))
	}
	if err := db.w.QueryRowContext(ctx, `SELECT secret FROM replica_secrets WHERE deployment = ?`, deployment).Scan(&stored); err != nil {
		return nil, mapErr(err, fmt.Sprintf("replica secret of deployment %q", deployment))
	}
	return stored, nil
}

// DeleteReplicaSecret forgets the deployment's secret (the deployment's deletion does too, by cascade).
func (db *DB) DeleteReplicaSecret(ctx context.Context, deployment string) error {
	_, err := db.w.ExecContext(ctx, `DELETE FROM replica_secrets WHERE deployment = ?`, deployment)
	return mapErr(err, fmt.Sprintf("replica secret of deployment %q", deployment))
}
