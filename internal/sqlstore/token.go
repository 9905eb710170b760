package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/slipway-ml/slipway"
)

var _ slipway.TokenStore = (*DB)(nil)

// CreateToken stores t with the SHA-256 hash of its secret.
func (db *DB) CreateToken(ctx context.Context, t *slipway.Token, hash string) error {
	var rps, burst any
	if l := t.RateLimit; l != nil {
		rps, burst = l.RequestsPerSecond, l.Burst
	}
	projects, err := json.Marshal(nonNilRoles(t.Projects))
	if err != nil {
		return fmt.Errorf("sqlstore: encode projects of token %s: %w", t.Name, err)
	}
	_, err = db.w.ExecContext(ctx, `INSERT INTO tokens (id, name, role, hash, created_at, expires_at, rate_limit_rps, rate_limit_burst, projects)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, t.ID, t.Name, string(t.Role), hash, formatTime(t.CreatedAt), nullTime(t.ExpiresAt), rps, burst,
		string(projects))
	return mapErr(err, fmt.Sprintf("token %s", t.Name))
}

const tokenColumns = `id, name, role, created_at, last_used_at, revoked_at, expires_at, rotated_at, previous_valid_until,
	rate_limit_rps, rate_limit_burst, projects`

func scanToken(row interface{ Scan(...any) error }) (*slipway.Token, error) {
	var t slipway.Token
	var created string
	var used, revoked, expires, rotated, graceUntil sql.NullString
	var rps sql.NullFloat64
	var burst sql.NullInt64
	var projects string
	if err := row.Scan(&t.ID, &t.Name, &t.Role, &created, &used, &revoked, &expires, &rotated, &graceUntil, &rps, &burst, &projects); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(projects), &t.Projects); err != nil {
		return nil, fmt.Errorf("decode projects of token %s: %w", t.ID, err)
	}
	if len(t.Projects) == 0 {
		t.Projects = nil
	}
	if rps.Valid {
		t.RateLimit = &slipway.TokenRateLimit{RequestsPerSecond: rps.Float64, Burst: int(burst.Int64)}
	}
	t.CreatedAt = parseTime(created)
	t.LastUsedAt = parseNullTime(used)
	t.RevokedAt = parseNullTime(revoked)
	t.ExpiresAt = parseNullTime(expires)
	t.RotatedAt = parseNullTime(rotated)
	t.PreviousSecretValidUntil = parseNullTime(graceUntil)
	return &t, nil
}

// FindTokenByPreviousHash returns the token whose rotated-out secret hashes to hash; the caller checks the
// grace period (PreviousSecretValidUntil).
func (db *DB) FindTokenByPreviousHash(ctx context.Context, hash string) (*slipway.Token, error) {
	t, err := scanToken(db.r.QueryRowContext(ctx, `SELECT `+tokenColumns+` FROM tokens WHERE previous_hash = ?`, hash))
	return t, mapErr(err, "token")
}

// RotateToken gives an unrevoked token a new secret hash; the old one stays valid until graceUntil.
func (db *DB) RotateToken(ctx context.Context, id, newHash string, graceUntil time.Time, expiresAt *time.Time, setExpiry bool) (*slipway.Token, error) {
	var t *slipway.Token
	err := db.tx(ctx, func(tx *sql.Tx) error {
		cur, err := scanToken(tx.QueryRowContext(ctx, `SELECT `+tokenColumns+` FROM tokens WHERE id = ?`, id))
		if err != nil {
			return mapErr(err, "token "+id)
		}
		if cur.RevokedAt != nil {
			return slipway.Errorf(slipway.ECONFLICT, "token %s (%s) was revoked: create a new token instead", cur.Name, id)
		}
		expires := nullTime(cur.ExpiresAt)
		if setExpiry {
			expires = nullTime(expiresAt)
		}
		// The revoked_at guard makes a revoke that lands between the read and this write win.
		if _, err := tx.ExecContext(ctx, `UPDATE tokens SET previous_hash = hash, hash = ?, previous_valid_until = ?,
			rotated_at = ?, expires_at = ? WHERE id = ? AND revoked_at IS NULL`,
			newHash, formatTime(graceUntil), formatTime(db.now()), expires, id); err != nil {
			return mapErr(err, "rotate token "+id)
		}
		t, err = scanToken(tx.QueryRowContext(ctx, `SELECT `+tokenColumns+` FROM tokens WHERE id = ?`, id))
		return mapErr(err, "token "+id)
	})
	return t, err
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

func nonNilRoles(m map[string]slipway.Role) map[string]slipway.Role {
	if m == nil {
		return map[string]slipway.Role{}
	}
	return m
}
