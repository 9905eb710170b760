package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/slipway-ml/slipway"
)

var _ slipway.AuditStore = (*DB)(nil)

const auditColumns = `seq, time, token_id, token_name, role, action, method, route, target, status, problem,
	request_id, client, detail, prev_hash, hash, project`

// AppendAudit chains e to the newest entry and stores it. The write transaction (SQLite's single writer,
// PostgreSQL's advisory lock) makes read-last-then-insert atomic across servers.
func (db *DB) AppendAudit(ctx context.Context, e *slipway.AuditEntry) error {
	e.Time = e.Time.UTC().Truncate(time.Microsecond) // what both databases keep exactly, so the hash holds on reading back
	return db.tx(ctx, func(tx *sql.Tx) error {
		var last int64
		var prev string
		err := tx.QueryRowContext(ctx, `SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1`).Scan(&last, &prev)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("sqlstore: read the audit log's head: %w", err)
		}
		e.Seq, e.PrevHash = last+1, prev
		e.Hash = e.ComputeHash()
		_, err = tx.ExecContext(ctx, `INSERT INTO audit_log (`+auditColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			e.Seq, formatTime(e.Time), e.TokenID, e.TokenName, string(e.Role), e.Action, e.Method, e.Route, e.Target,
			e.Status, e.Problem, e.RequestID, e.Client, string(e.Detail), e.PrevHash, e.Hash, e.Project)
		return mapErr(err, "audit entry")
	})
}

func scanAudit(row rowScanner) (*slipway.AuditEntry, error) {
	var e slipway.AuditEntry
	var at, role, detail string
	if err := row.Scan(&e.Seq, &at, &e.TokenID, &e.TokenName, &role, &e.Action, &e.Method, &e.Route, &e.Target,
		&e.Status, &e.Problem, &e.RequestID, &e.Client, &detail, &e.PrevHash, &e.Hash, &e.Project); err != nil {
		return nil, err
	}
	e.Time, e.Role = parseTime(at), slipway.Role(role)
	if detail != "" {
		e.Detail = []byte(detail)
	}
	return &e, nil
}

// ScanAudit streams the matching entries in seq order.
func (db *DB) ScanAudit(ctx context.Context, f slipway.AuditFilter, fn func(*slipway.AuditEntry) error) error {
	where, args := auditWhere(f)
	q := `SELECT ` + auditColumns + ` FROM audit_log` + where + ` ORDER BY seq`
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	rows, err := db.r.QueryContext(ctx, q, args...)
	if err != nil {
		return mapErr(err, "audit log")
	}
	defer rows.Close()
	for rows.Next() {
		e, err := scanAudit(rows)
		if err != nil {
			return mapErr(err, "audit log")
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	return mapErr(rows.Err(), "audit log")
}

func auditWhere(f slipway.AuditFilter) (string, []any) {
	var conds []string
	var args []any
	add := func(cond string, a ...any) { conds, args = append(conds, cond), append(args, a...) }
	if !f.From.IsZero() {
		add("time >= ?", formatTime(f.From))
	}
	if !f.To.IsZero() {
		add("time < ?", formatTime(f.To))
	}
	if f.Actor != "" {
		add("(token_name = ? OR token_id = ?)", f.Actor, f.Actor)
	}
	if f.Target != "" {
		// The target itself or anything below it: "deployments/churn" matches "deployments/churn/activate",
		// not "deployments/churn2".
		add("(target = ? OR substr(target, 1, ?) = ?)", f.Target, len(f.Target)+1, f.Target+"/")
	}
	if f.Action != "" {
		add("action = ?", f.Action)
	}
	if f.Project != "" {
		add("project = ?", f.Project)
	}
	if f.After > 0 {
		add("seq > ?", f.After)
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

// DeleteAuditBefore removes the oldest entries up to the first one at or after t, and never the newest, so
// that what is left is one unbroken chain (servers' clocks may disagree a little: seq, not time, orders it).
func (db *DB) DeleteAuditBefore(ctx context.Context, t time.Time) (int64, error) {
	res, err := db.w.ExecContext(ctx, `DELETE FROM audit_log WHERE seq < COALESCE(
		(SELECT MIN(seq) FROM audit_log WHERE time >= ?), (SELECT MAX(seq) FROM audit_log))`, formatTime(t))
	if err != nil {
		return 0, mapErr(err, "audit retention")
	}
	return res.RowsAffected()
}
