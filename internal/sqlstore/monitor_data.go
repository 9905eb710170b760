package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/slipway-ml/slipway"
)

// MonitorDB keeps monitoring's append-heavy data (captures, feedback, logs, metric points, drift windows) in its
// own SQLite file, PocketBase-style: its writes (batched, from background writers) never queue behind or block
// the metadata database, and it can be deleted without losing any configuration. On PostgreSQL its tables are in
// the installation's database, written through their own connections and write lock. Times are Unix
// milliseconds (integers), the cheapest to compare in range scans.
type MonitorDB struct {
	w, r    *sql.DB
	dialect dialect
}

var _ slipway.MonitoringDataStore = (*MonitorDB)(nil)

// monitorSchema is the schema of monitor.db, applied in order: entry i moves user_version from i to i+1.
var monitorSchema = []string{`
CREATE TABLE captures (
    id            INTEGER PRIMARY KEY,
    deployment    TEXT    NOT NULL,
    request_id    TEXT    NOT NULL,
    model_version INTEGER NOT NULL,
    ts            INTEGER NOT NULL,
    rows          INTEGER NOT NULL,
    protocol      TEXT    NOT NULL,
    inputs        BLOB    NOT NULL,
    outputs       BLOB    NOT NULL
);
CREATE INDEX captures_deployment_ts ON captures (deployment, ts);
CREATE INDEX captures_deployment_request ON captures (deployment, request_id);

CREATE TABLE feedback (
    deployment  TEXT    NOT NULL,
    request_id  TEXT    NOT NULL,
    row         INTEGER NOT NULL,
    label       TEXT,
    value       REAL,
    ts          INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (deployment, request_id, row)
);
CREATE INDEX feedback_received ON feedback (deployment, received_at);

CREATE TABLE logs (
    id         INTEGER PRIMARY KEY,
    deployment TEXT    NOT NULL,
    ts         INTEGER NOT NULL,
    kind       TEXT    NOT NULL,
    replica    TEXT    NOT NULL DEFAULT '',
    request_id TEXT    NOT NULL DEFAULT '',
    line       TEXT    NOT NULL,
    fields     TEXT
);
CREATE INDEX logs_deployment_id ON logs (deployment, id);
CREATE INDEX logs_ts ON logs (ts);

CREATE TABLE metric_points (
    deployment TEXT    NOT NULL,
    minute     INTEGER NOT NULL,
    point      TEXT    NOT NULL,
    PRIMARY KEY (deployment, minute)
);

CREATE TABLE drift_windows (
    deployment  TEXT    NOT NULL,
    start_ts    INTEGER NOT NULL,
    end_ts      INTEGER NOT NULL,
    report      TEXT    NOT NULL,
    PRIMARY KEY (deployment, start_ts, end_ts)
);
`, `
-- Cheaper writes (measured on the serving path): request ids are found through an 8-byte hash instead of an index
-- on the text, and the log needs no time index (its ids grow with time: age pruning walks (deployment, id)).
ALTER TABLE captures ADD COLUMN rid INTEGER NOT NULL DEFAULT 0;
DROP INDEX captures_deployment_request;
CREATE INDEX captures_rid ON captures (rid);
ALTER TABLE feedback ADD COLUMN rid INTEGER NOT NULL DEFAULT 0;
DROP INDEX logs_ts;
`, `
-- A shadow's answers next to the live ones, for the shadow comparison (monitor_shadow.go). Outputs and features
-- are workerproto tensor frames; errors are '' when the side answered; latencies in milliseconds.
CREATE TABLE shadow_pairs (
    id             INTEGER PRIMARY KEY,
    deployment     TEXT    NOT NULL,
    request_id     TEXT    NOT NULL,
    ts             INTEGER NOT NULL,
    live_version   INTEGER NOT NULL,
    shadow_version INTEGER NOT NULL,
    rows           INTEGER NOT NULL,
    live_outputs   BLOB    NOT NULL,
    shadow_outputs BLOB    NOT NULL,
    live_error     TEXT    NOT NULL DEFAULT '',
    shadow_error   TEXT    NOT NULL DEFAULT '',
    live_ms        REAL    NOT NULL,
    shadow_ms      REAL    NOT NULL,
    features       BLOB    NOT NULL
);
CREATE INDEX shadow_pairs_deployment_ts ON shadow_pairs (deployment, ts);
`, `
-- A capture's latency (the live side of a replay's report) and whether the request was in the deployment's
-- holdout share (performance is reported apart for holdout and treated traffic).
ALTER TABLE captures ADD COLUMN latency_ms REAL NOT NULL DEFAULT 0;
ALTER TABLE captures ADD COLUMN holdout INTEGER NOT NULL DEFAULT 0;
`}

// requestHash is the rid column: FNV-1a 64 of a request id, as a signed integer. Lookups compare the id too, so
// collisions only cost a row read.
func requestHash(id string) int64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(id); i++ {
		h ^= uint64(id[i])
		h *= 1099511628211
	}
	return int64(h)
}

// OpenMonitorSQLite opens (creating if needed) monitor.db at path: one writer connection, a read pool, the same
// pragmas as the main database.
func OpenMonitorSQLite(ctx context.Context, path string) (*MonitorDB, error) {
	dsn := "file:" + path + "?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_txlock=immediate"
	w, r, err := openSQLitePools(path, dsn, 4)
	if err != nil {
		return nil, err
	}
	return openMonitor(ctx, &MonitorDB{w: w, r: r, dialect: dialectSQLite})
}

// OpenMonitorPostgres keeps the monitoring data in the PostgreSQL database at dsn, next to the metadata.
func OpenMonitorPostgres(ctx context.Context, dsn string) (*MonitorDB, error) {
	w, r, err := openPostgresPools(ctx, dsn, pgLockMonitor, 4)
	if err != nil {
		return nil, err
	}
	return openMonitor(ctx, &MonitorDB{w: w, r: r, dialect: dialectPostgres})
}

func openMonitor(ctx context.Context, db *MonitorDB) (*MonitorDB, error) {
	if err := db.migrate(ctx); err != nil {
		return nil, errors.Join(err, db.Close())
	}
	return db, nil
}

// Snapshot writes a consistent copy of monitor.db to path (see DB.Snapshot).
func (db *MonitorDB) Snapshot(ctx context.Context, path string) error {
	return vacuumInto(ctx, db.r, db.dialect, path)
}

// monitorVersion reads and writes the schema version of the monitoring tables: SQLite's user_version of
// monitor.db, or a one-row table on PostgreSQL (whose database the metadata's migrations share). startOver
// says how to drop the monitoring data when a newer server's schema cannot be read.
type monitorVersion struct{ create, read, write, startOver string }

var monitorVersions = map[dialect]monitorVersion{
	dialectSQLite: {read: `PRAGMA user_version`, write: `PRAGMA user_version = %d`, startOver: "move monitor.db away"},
	dialectPostgres: {create: `CREATE TABLE IF NOT EXISTS monitor_schema (version BIGINT NOT NULL)`,
		read:      `SELECT COALESCE(MAX(version), 0) FROM monitor_schema`,
		write:     `DELETE FROM monitor_schema; INSERT INTO monitor_schema (version) VALUES (%d)`,
		startOver: "drop the tables captures, feedback, logs, metric_points, drift_windows, shadow_pairs and monitor_schema"},
}

func (db *MonitorDB) migrate(ctx context.Context) error {
	sv := monitorVersions[db.dialect]
	return db.batch(ctx, func(tx *sql.Tx) error { // one transaction: on PostgreSQL, its lock keeps two servers from both migrating
		if sv.create != "" {
			if _, err := tx.ExecContext(ctx, sv.create); err != nil {
				return fmt.Errorf("sqlstore: create the monitoring schema's version: %w", err)
			}
		}
		var v int
		if err := tx.QueryRowContext(ctx, sv.read).Scan(&v); err != nil {
			return fmt.Errorf("sqlstore: monitoring schema version: %w", err)
		}
		if v > len(monitorSchema) {
			return fmt.Errorf("sqlstore: the monitoring data has schema version %d, newer than this server (%d): use a newer slipway or %s", v, len(monitorSchema), sv.startOver)
		}
		for ; v < len(monitorSchema); v++ {
			schema := monitorSchema[v]
			if db.dialect == dialectPostgres {
				schema = pgDDL(schema)
			}
			if _, err := tx.ExecContext(ctx, schema); err != nil {
				return fmt.Errorf("sqlstore: migrate the monitoring data to %d: %w", v+1, err)
			}
			if _, err := tx.ExecContext(ctx, fmt.Sprintf(sv.write, v+1)); err != nil {
				return fmt.Errorf("sqlstore: migrate the monitoring data to %d: %w", v+1, err)
			}
		}
		return nil
	})
}

// Close closes both pools.
func (db *MonitorDB) Close() error { return errors.Join(db.r.Close(), db.w.Close()) }

func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMS(v int64) time.Time { return time.UnixMilli(v).UTC() }

// batch runs fn in one write transaction.
func (db *MonitorDB) batch(ctx context.Context, fn func(*sql.Tx) error) error {
	return inTx(ctx, db.w, "monitor.db", fn)
}

// insertChunk is how many rows one multi-row INSERT carries: one statement per chunk instead of per row divides
// the per-statement cost (bind, VDBE setup, database/sql round trip) that dominates small rows.
const insertChunk = 64

// insertRows inserts rows (each with len(cols) values) into table in multi-row statements.
func insertRows(ctx context.Context, tx *sql.Tx, table, cols string, n int, rows [][]any) error {
	one := "(?" + strings.Repeat(", ?", n-1) + ")"
	var stmts [insertChunk + 1]*sql.Stmt
	defer func() {
		for _, st := range stmts {
			if st != nil {
				_ = st.Close() // the transaction's own statements: closing them only frees them
			}
		}
	}()
	args := make([]any, 0, insertChunk*n)
	for start := 0; start < len(rows); start += insertChunk {
		chunk := rows[start:min(start+insertChunk, len(rows))]
		st := stmts[len(chunk)]
		if st == nil {
			var err error
			st, err = tx.PrepareContext(ctx, "INSERT INTO "+table+" ("+cols+") VALUES "+one+strings.Repeat(", "+one, len(chunk)-1))
			if err != nil {
				return fmt.Errorf("sqlstore: insert into %s: %w", table, err)
			}
			stmts[len(chunk)] = st
		}
		args = args[:0]
		for _, r := range chunk {
			args = append(args, r...)
		}
		if _, err := st.ExecContext(ctx, args...); err != nil {
			return fmt.Errorf("sqlstore: insert into %s: %w", table, err)
		}
	}
	return nil
}

// InsertCaptures appends captures in one transaction.
func (db *MonitorDB) InsertCaptures(ctx context.Context, cs []*slipway.Capture) error {
	rows := make([][]any, len(cs))
	for i, c := range cs {
		rows[i] = []any{c.Deployment, c.RequestID, requestHash(c.RequestID), c.ModelVersion, ms(c.Time), c.Rows, c.Protocol, c.Inputs, c.Outputs,
			c.LatencyMS, c.Holdout}
	}
	return db.batch(ctx, func(tx *sql.Tx) error {
		return insertRows(ctx, tx, "captures", "deployment, request_id, rid, model_version, ts, rows, protocol, inputs, outputs, latency_ms, holdout", 11, rows)
	})
}

// ScanCaptures streams the captures of a deployment in [from, to), oldest first.
func (db *MonitorDB) ScanCaptures(ctx context.Context, deployment string, from, to time.Time, fn func(*slipway.Capture) error) error {
	rows, err := db.r.QueryContext(ctx, `SELECT id, request_id, model_version, ts, rows, protocol, inputs, outputs FROM captures
		WHERE deployment = ? AND ts >= ? AND ts < ? ORDER BY ts, id`, deployment, ms(from), ms(to))
	if err != nil {
		return fmt.Errorf("sqlstore: scan captures: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		c := slipway.Capture{Deployment: deployment}
		var ts int64
		if err := rows.Scan(&c.ID, &c.RequestID, &c.ModelVersion, &ts, &c.Rows, &c.Protocol, &c.Inputs, &c.Outputs); err != nil {
			return fmt.Errorf("sqlstore: scan captures: %w", err)
		}
		c.Time = fromMS(ts)
		if err := fn(&c); err != nil {
			return err
		}
	}
	return rows.Err()
}

// captureRows is a request's captured row count.
type captureRows struct {
	id   string
	rows int
}

func scanCaptureRows(r rowScanner) (captureRows, error) {
	var c captureRows
	err := r.Scan(&c.id, &c.rows)
	return c, err
}

// CaptureRows returns the row counts of the given request ids that were captured.
func (db *MonitorDB) CaptureRows(ctx context.Context, deployment string, ids []string) (map[string]int, error) {
	out := map[string]int{}
	for start := 0; start < len(ids); start += 500 {
		chunk := ids[start:min(start+500, len(ids))]
		args := []any{deployment}
		want := map[string]bool{}
		for _, id := range chunk {
			args = append(args, requestHash(id))
			want[id] = true
		}
		found, err := queryAll(ctx, db.r, scanCaptureRows, "find captures", `SELECT request_id, MAX(rows) FROM captures
			WHERE deployment = ? AND rid IN (?`+strings.Repeat(", ?", len(chunk)-1)+`) GROUP BY request_id`, args...)
		if err != nil {
			return nil, err
		}
		for _, c := range found {
			if want[c.id] { // not a hash collision
				out[c.id] = c.rows
			}
		}
	}
	return out, nil
}

// UpsertFeedback stores ground truth, idempotently by (deployment, request id, row): the same truth again is
// unchanged, a different one replaces it (a correction).
func (db *MonitorDB) UpsertFeedback(ctx context.Context, fs []*slipway.Feedback) (slipway.FeedbackResult, error) {
	var res slipway.FeedbackResult
	err := db.batch(ctx, func(tx *sql.Tx) error {
		res = slipway.FeedbackResult{}
		for _, f := range fs {
			var label sql.NullString
			var value sql.NullFloat64
			err := tx.QueryRowContext(ctx, `SELECT label, value FROM feedback WHERE deployment = ? AND request_id = ? AND row = ?`,
				f.Deployment, f.RequestID, f.Row).Scan(&label, &value)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				res.Inserted++
			case err != nil:
				return fmt.Errorf("sqlstore: read feedback: %w", err)
			case sameTruth(label, value, f):
				res.Unchanged++
				continue
			default:
				res.Updated++
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO feedback (deployment, request_id, rid, row, label, value, ts, received_at)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (deployment, request_id, row) DO UPDATE SET label = excluded.label,
				value = excluded.value, ts = excluded.ts, received_at = excluded.received_at`,
				f.Deployment, f.RequestID, requestHash(f.RequestID), f.Row, nullString(f.Label), nullFloat(f.Value), ms(f.Time), ms(f.ReceivedAt)); err != nil {
				return fmt.Errorf("sqlstore: store feedback: %w", err)
			}
		}
		return nil
	})
	return res, err
}

func sameTruth(label sql.NullString, value sql.NullFloat64, f *slipway.Feedback) bool {
	if (f.Label != nil) != label.Valid || (f.Value != nil) != value.Valid {
		return false
	}
	return (f.Label == nil || *f.Label == label.String) && (f.Value == nil || *f.Value == value.Float64)
}

func nullString(s *string) any {
	if s == nil {
		return nil
	}
	return *s
}

// ScanLabelled streams the captured requests in [from, to) that have feedback, each with its feedback rows. When
// a request id was captured more than once, the latest capture is used.
func (db *MonitorDB) ScanLabelled(ctx context.Context, deployment string, from, to time.Time, fn func(*slipway.Capture, []*slipway.Feedback) error) error {
	rows, err := db.r.QueryContext(ctx, `SELECT c.id, c.request_id, c.model_version, c.ts, c.rows, c.protocol, c.outputs, c.holdout,
			f.row, f.label, f.value, f.ts, f.received_at
		FROM feedback f JOIN captures c ON c.id = (SELECT MAX(id) FROM captures WHERE rid = f.rid AND deployment = f.deployment AND request_id = f.request_id)
		WHERE f.deployment = ? AND c.ts >= ? AND c.ts < ? ORDER BY c.ts, c.id, f.row`, deployment, ms(from), ms(to))
	if err != nil {
		return fmt.Errorf("sqlstore: scan feedback: %w", err)
	}
	defer rows.Close()
	var cur *slipway.Capture
	var fbs []*slipway.Feedback
	for rows.Next() {
		var c slipway.Capture
		var f slipway.Feedback
		var ts, fts, frecv int64
		var label sql.NullString
		var value sql.NullFloat64
		if err := rows.Scan(&c.ID, &c.RequestID, &c.ModelVersion, &ts, &c.Rows, &c.Protocol, &c.Outputs, &c.Holdout,
			&f.Row, &label, &value, &fts, &frecv); err != nil {
			return fmt.Errorf("sqlstore: scan feedback: %w", err)
		}
		if cur != nil && cur.ID != c.ID {
			if err := fn(cur, fbs); err != nil {
				return err
			}
			cur, fbs = nil, nil
		}
		if cur == nil {
			c.Deployment, c.Time = deployment, fromMS(ts)
			cur = &c
		}
		f.Deployment, f.RequestID, f.Time, f.ReceivedAt = deployment, cur.RequestID, fromMS(fts), fromMS(frecv)
		if label.Valid {
			f.Label = &label.String
		}
		if value.Valid {
			f.Value = &value.Float64
		}
		fbs = append(fbs, &f)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("sqlstore: scan feedback: %w", err)
	}
	if cur != nil {
		return fn(cur, fbs)
	}
	return nil
}

// InsertLogs appends log lines in one transaction.
func (db *MonitorDB) InsertLogs(ctx context.Context, ls []*slipway.LogLine) error {
	rows := make([][]any, len(ls))
	for i, l := range ls {
		var fields any
		if len(l.Fields) > 0 {
			fields = string(l.Fields)
		}
		rows[i] = []any{l.Deployment, ms(l.Time), l.Kind, l.Replica, l.RequestID, l.Line, fields}
	}
	return db.batch(ctx, func(tx *sql.Tx) error {
		return insertRows(ctx, tx, "logs", "deployment, ts, kind, replica, request_id, line, fields", 7, rows)
	})
}

// FindLogs returns log lines oldest first.
func (db *MonitorDB) FindLogs(ctx context.Context, f slipway.LogFilter) ([]*slipway.LogLine, error) {
	q := `SELECT id, ts, kind, replica, request_id, line, fields FROM logs WHERE deployment = ? AND id > ?`
	args := []any{f.Deployment, f.AfterID}
	if !f.Since.IsZero() {
		q += ` AND ts >= ?`
		args = append(args, ms(f.Since))
	}
	if f.Kind != "" {
		q += ` AND kind = ?`
		args = append(args, f.Kind)
	}
	if f.Replica != "" {
		q += ` AND replica = ?`
		args = append(args, f.Replica)
	}
	q += ` ORDER BY id LIMIT ?`
	args = append(args, f.Limit)
	rows, err := db.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: find logs: %w", err)
	}
	defer rows.Close()
	out := []*slipway.LogLine{}
	for rows.Next() {
		l := slipway.LogLine{Deployment: f.Deployment}
		var ts int64
		var fields sql.NullString
		if err := rows.Scan(&l.ID, &ts, &l.Kind, &l.Replica, &l.RequestID, &l.Line, &fields); err != nil {
			return nil, fmt.Errorf("sqlstore: find logs: %w", err)
		}
		l.Time = fromMS(ts)
		if fields.Valid {
			l.Fields = json.RawMessage(fields.String)
		}
		out = append(out, &l)
	}
	return out, rows.Err()
}

// UpsertMetricPoints stores minute points, adding to a minute already stored (a restart within a minute).
func (db *MonitorDB) UpsertMetricPoints(ctx context.Context, ps []*slipway.MetricPoint) error {
	return db.batch(ctx, func(tx *sql.Tx) error {
		for _, p := range ps {
			var raw string
			err := tx.QueryRowContext(ctx, `SELECT point FROM metric_points WHERE deployment = ? AND minute = ?`, p.Deployment, ms(p.Minute)).Scan(&raw)
			if err == nil {
				var old slipway.MetricPoint
				if json.Unmarshal([]byte(raw), &old) == nil {
					p = mergePoints(&old, p)
				}
			} else if !errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("sqlstore: read metric point: %w", err)
			}
			b, _ := json.Marshal(p)
			if _, err := tx.ExecContext(ctx, `INSERT INTO metric_points (deployment, minute, point) VALUES (?, ?, ?)
				ON CONFLICT (deployment, minute) DO UPDATE SET point = excluded.point`, p.Deployment, ms(p.Minute), string(b)); err != nil {
				return fmt.Errorf("sqlstore: store metric point: %w", err)
			}
		}
		return nil
	})
}

// mergePoints adds the counters of two points of the same minute (percentiles: the later point's).
func mergePoints(a, b *slipway.MetricPoint) *slipway.MetricPoint {
	out := *b
	out.AddCounts(a)
	return &out
}

// FindMetricPoints returns a deployment's minute points in [from, to), oldest first.
func (db *MonitorDB) FindMetricPoints(ctx context.Context, deployment string, from, to time.Time) ([]*slipway.MetricPoint, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT minute, point FROM metric_points WHERE deployment = ? AND minute >= ? AND minute < ? ORDER BY minute`,
		deployment, ms(from), ms(to))
	if err != nil {
		return nil, fmt.Errorf("sqlstore: find metric points: %w", err)
	}
	defer rows.Close()
	out := []*slipway.MetricPoint{}
	for rows.Next() {
		var minute int64
		var raw string
		if err := rows.Scan(&minute, &raw); err != nil {
			return nil, fmt.Errorf("sqlstore: find metric points: %w", err)
		}
		var p slipway.MetricPoint
		if err := json.Unmarshal([]byte(raw), &p); err != nil {
			return nil, fmt.Errorf("sqlstore: decode metric point: %w", err)
		}
		p.Deployment, p.Minute = deployment, fromMS(minute)
		out = append(out, &p)
	}
	return out, rows.Err()
}

// PutDriftWindow stores (or replaces) the drift report of a window.
func (db *MonitorDB) PutDriftWindow(ctx context.Context, r *slipway.DriftReport) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("sqlstore: encode drift report: %w", err)
	}
	_, err = db.w.ExecContext(ctx, `INSERT INTO drift_windows (deployment, start_ts, end_ts, report) VALUES (?, ?, ?, ?)
		ON CONFLICT (deployment, start_ts, end_ts) DO UPDATE SET report = excluded.report`, r.Deployment, ms(r.From), ms(r.To), string(b))
	if err != nil {
		return fmt.Errorf("sqlstore: store drift window: %w", err)
	}
	return nil
}

// FindDriftWindow returns the stored report of exactly [from, to) (ENOTFOUND when there is none).
func (db *MonitorDB) FindDriftWindow(ctx context.Context, deployment string, from, to time.Time) (*slipway.DriftReport, error) {
	var raw string
	err := db.r.QueryRowContext(ctx, `SELECT report FROM drift_windows WHERE deployment = ? AND start_ts = ? AND end_ts = ?`,
		deployment, ms(from), ms(to)).Scan(&raw)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, slipway.Errorf(slipway.ENOTFOUND, "no stored drift window for %s from %s to %s", deployment, from.Format(time.RFC3339), to.Format(time.RFC3339))
	} else if err != nil {
		return nil, fmt.Errorf("sqlstore: find drift window: %w", err)
	}
	var r slipway.DriftReport
	if err := json.Unmarshal([]byte(raw), &r); err != nil {
		return nil, fmt.Errorf("sqlstore: decode drift window: %w", err)
	}
	return &r, nil
}

// FindDriftWindows returns the stored windows that start in [from, to), oldest first.
func (db *MonitorDB) FindDriftWindows(ctx context.Context, deployment string, from, to time.Time) ([]*slipway.DriftReport, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT report FROM drift_windows WHERE deployment = ? AND start_ts >= ? AND start_ts < ? ORDER BY start_ts`,
		deployment, ms(from), ms(to))
	if err != nil {
		return nil, fmt.Errorf("sqlstore: find drift windows: %w", err)
	}
	defer rows.Close()
	out := []*slipway.DriftReport{}
	for rows.Next() {
		var raw string
		if err := rows.Scan(&raw); err != nil {
			return nil, fmt.Errorf("sqlstore: find drift windows: %w", err)
		}
		var r slipway.DriftReport
		if err := json.Unmarshal([]byte(raw), &r); err != nil {
			return nil, fmt.Errorf("sqlstore: decode drift window: %w", err)
		}
		out = append(out, &r)
	}
	return out, rows.Err()
}

// Prune deletes rows past retention: by age, then beyond the newest MaxCaptures / MaxLogLines of the deployment.
func (db *MonitorDB) Prune(ctx context.Context, p slipway.MonitoringPrune) (int64, error) {
	var total int64
	exec := func(q string, args ...any) error {
		res, err := db.w.ExecContext(ctx, q, args...)
		if err != nil {
			return fmt.Errorf("sqlstore: prune monitor.db: %w", err)
		}
		n, _ := res.RowsAffected()
		total += n
		return nil
	}
	dep, all := p.Deployment, p.Deployment == ""
	steps := []struct {
		ok   bool
		q    string
		args []any
	}{
		// all is bound as 0/1 (flags are integers in both dialects), hence "? = 1".
		{!p.CapturesBefore.IsZero(), `DELETE FROM captures WHERE (? = 1 OR deployment = ?) AND ts < ?`, []any{all, dep, ms(p.CapturesBefore)}},
		{!p.CapturesBefore.IsZero(), `DELETE FROM feedback WHERE (? = 1 OR deployment = ?) AND received_at < ?`, []any{all, dep, ms(p.CapturesBefore)}},
		{!p.CapturesBefore.IsZero(), `DELETE FROM shadow_pairs WHERE (? = 1 OR deployment = ?) AND ts < ?`, []any{all, dep, ms(p.CapturesBefore)}},
		{!all && p.MaxCaptures > 0, `DELETE FROM shadow_pairs WHERE deployment = ? AND id <= (SELECT id FROM shadow_pairs WHERE deployment = ? ORDER BY id DESC LIMIT 1 OFFSET ?)`, []any{dep, dep, p.MaxCaptures}},
		{!all && p.MaxCaptures > 0, `DELETE FROM captures WHERE deployment = ? AND id <= (SELECT id FROM captures WHERE deployment = ? ORDER BY id DESC LIMIT 1 OFFSET ?)`, []any{dep, dep, p.MaxCaptures}},
		// Log ids grow with time: a deployment's old lines are those below its first line young enough to keep.
		{!all && !p.LogsBefore.IsZero(), `DELETE FROM logs WHERE deployment = ? AND id < COALESCE((SELECT id FROM logs WHERE deployment = ? AND ts >= ? ORDER BY id LIMIT 1), 9223372036854775807)`, []any{dep, dep, ms(p.LogsBefore)}},
		{all && !p.LogsBefore.IsZero(), `DELETE FROM logs WHERE ts < ?`, []any{ms(p.LogsBefore)}},
		{!all && p.MaxLogLines > 0, `DELETE FROM logs WHERE deployment = ? AND id <= (SELECT id FROM logs WHERE deployment = ? ORDER BY id DESC LIMIT 1 OFFSET ?)`, []any{dep, dep, p.MaxLogLines}},
		{!p.MetricsBefore.IsZero(), `DELETE FROM metric_points WHERE (? = 1 OR deployment = ?) AND minute < ?`, []any{all, dep, ms(p.MetricsBefore)}},
		{!p.MetricsBefore.IsZero(), `DELETE FROM drift_windows WHERE (? = 1 OR deployment = ?) AND start_ts < ?`, []any{all, dep, ms(p.MetricsBefore)}},
	}
	for _, s := range steps {
		if s.ok {
			if err := exec(s.q, s.args...); err != nil {
				return total, err
			}
		}
	}
	return total, nil
}
