package sqlstore

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/slipway-ml/slipway"
)

var _ slipway.TokenStore = (*DB)(nil)

// CreateToken stores t with the SHA-256 hash of its secret.
func (db *DB) CreateToken(ctx context.Context, t *slipway.Token, hash string) error {
	_, err := db.w.ExecContext(ctx, `INSERT INTO tokens (id, name, role, hash, created_at) VALUES (?, ?, ?, ?, ?)`,
		t.ID, t.Name, string(t.Role), hash, formatTime(t.CreatedAt))
	return mapErr(err, fmt.Sprintf("token %s", t.Name))
}

const tokenColumns = `id, name, role, created_at, last_used_at, revoked_at`

func scanToken(row interface{ Scan(...any) error }) (*slipway.Token, error) {
	var t slipway.Token
	var created string
	var used, revoked sql.NullString
	if err := row.Scan(&t.ID, &t.Name, &t.Role, &created, &used, &revoked); err != nil {
		return nil, err
	}
	t.CreatedAt = parseTime(created)
	t.LastUsedAt = parseNullTime(used)
	t.RevokedAt = parseNullTime(revoked)
	return &t, nil
}

// FindTokenByHash returns the token whose secret hashes to hash (revoked tokens included; the caller decides).
func (db *DB) FindTokenByHash(ctx context.Context, hash string) (*slipway.Token, error) {
	t, err := scanToken(db.r.QueryRowContext(ctx, `SELECT `+tokenColumns+` FROM tokens WHERE hash = ?`, hash))
	return t, mapErr(err, "token")
}

// FindTokens lists all tokens, newest first, without secrets.
func (db *DB) FindTokens(ctx context.Context) ([]*slipway.Token, error) {
	return queryAll(ctx, db.r, scanToken, "tokens", `SELECT `+tokenColumns+` FROM tokens ORDER BY created_at DESC, id`)
}

// RevokeToken marks a token revoked; revoking twice is not an error.
func (db *DB) RevokeToken(ctx context.Context, id string) error {
	res, err := db.w.ExecContext(ctx, `UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?`,
		formatTime(db.now()), id)
	if err != nil {
		return mapErr(err, "token "+id)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return slipway.Errorf(slipway.ENOTFOUND, "token %s not found", id)
	}
	return nil
}

// CountTokens counts tokens (revoked included): zero means first start.
func (db *DB) CountTokens(ctx context.Context) (int, error) {
	var n int
	err := db.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM tokens`).Scan(&n)
	return n, mapErr(err, "tokens")
}

// TouchToken records that a token was used. Best effort: callers throttle it.
func (db *DB) TouchToken(ctx context.Context, id string) error {
	_, err := db.w.ExecContext(ctx, `UPDATE tokens SET last_used_at = ? WHERE id = ?`, formatTime(db.now()), id)
	return mapErr(err, "token "+id)
}
