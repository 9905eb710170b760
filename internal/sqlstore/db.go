// Package sqlstore keeps Slipway's state in SQL through database/sql: SQLite (embedded, the default) or
// PostgreSQL, behind the same methods and the same numbered migrations. Queries are written once, with '?'
// placeholders, and PostgreSQL's connections rewrite what it spells differently (dialect.go).
package sqlstore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/slipway-ml/slipway"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

//go:embed migrations/*.sql
var migrations embed.FS

// DB is the metadata store. Writes go through one connection (SQLite has one writer; queuing in Go beats
// queuing in busy_timeout), reads through a pool.
type DB struct {
	w       *sql.DB
	r       *sql.DB
	dialect dialect
	now     func() time.Time
	// runOwner is this server's id once FenceRuns made it the owner of the runs it claims ("": one server).
	runOwner string
	// migrateUpTo stops the migrations after this number (0: all): tests build an older schema with it.
	migrateUpTo int
}

// openSQLitePools opens a SQLite database twice: one writer connection (SQLite writes one transaction at a
// time) and a pool of `readers` connections.
func openSQLitePools(path, dsn string, readers int) (w, r *sql.DB, err error) {
	w, err = sql.Open("sqlite", dsn)
	if err != nil {
		return nil, nil, fmt.Errorf("sqlstore: open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	r, err = sql.Open("sqlite", dsn)
	if err != nil {
		_ = w.Close() // not used yet: closing it frees a handle and cannot fail in a way that matters
		return nil, nil, fmt.Errorf("sqlstore: open %s for reading: %w", path, err)
	}
	r.SetMaxOpenConns(readers)
	return w, r, nil
}

// OpenSQLite opens (creating if needed) the SQLite database at path and applies pending migrations.
func OpenSQLite(ctx context.Context, path string) (*DB, error) {
	dsn := "file:" + path + "?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)" +
		"&_pragma=foreign_keys(1)&_txlock=immediate"
	w, r, err := openSQLitePools(path, dsn, 8)
	if err != nil {
		return nil, err
	}
	return openDB(ctx, &DB{w: w, r: r, dialect: dialectSQLite, now: time.Now})
}

// OpenPostgres connects to the PostgreSQL database at dsn (postgres://...) and applies pending migrations.
func OpenPostgres(ctx context.Context, dsn string) (*DB, error) {
	w, r, err := openPostgresPools(ctx, dsn, pgLockMetadata, 8)
	if err != nil {
		return nil, err
	}
	return openDB(ctx, &DB{w: w, r: r, dialect: dialectPostgres, now: time.Now})
}

func openDB(ctx context.Context, db *DB) (*DB, error) {
	if err := db.migrate(ctx); err != nil {
		return nil, errors.Join(err, db.Close())
	}
	return db, nil
}

// Close closes both pools.
func (db *DB) Close() error {
	return errors.Join(db.r.Close(), db.w.Close())
}

// Ping checks that the database answers (readiness).
func (db *DB) Ping(ctx context.Context) error {
	return db.r.PingContext(ctx)
}

func (db *DB) migrate(ctx context.Context) error {
	// In a write transaction: on PostgreSQL, servers starting together on an empty database take turns.
	err := db.tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, db.ddl(`CREATE TABLE IF NOT EXISTS schema_migrations (
			version INTEGER NOT NULL PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)`))
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlstore: create schema_migrations: %w", err)
	}
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return fmt.Errorf("sqlstore: list migrations: %w", err)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := db.applyMigration(ctx, name); err != nil {
			return err
		}
	}
	return nil
}

func (db *DB) applyMigration(ctx context.Context, path string) error {
	base := strings.TrimPrefix(path, "migrations/")
	n, err := strconv.Atoi(strings.SplitN(base, "_", 2)[0])
	if err != nil {
		return fmt.Errorf("sqlstore: migration %s: name must start with a number", base)
	}
	if db.migrateUpTo > 0 && n > db.migrateUpTo {
		return nil
	}
	return db.tx(ctx, func(tx *sql.Tx) error {
		var exists int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE version = ?`, n).Scan(&exists); err != nil {
			return fmt.Errorf("sqlstore: check migration %d: %w", n, err)
		}
		if exists > 0 {
			return nil
		}
		body, err := migrations.ReadFile(path)
		if err != nil {
			return fmt.Errorf("sqlstore: read migration %s: %w", base, err)
		}
		if _, err := tx.ExecContext(ctx, db.ddl(string(body))); err != nil {
			return fmt.Errorf("sqlstore: apply migration %s: %w", base, err)
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
			n, base, formatTime(db.now()))
		return err
	})
}

// ddl adapts a schema statement written for SQLite to the database's dialect.
func (db *DB) ddl(s string) string {
	if db.dialect == dialectPostgres {
		return pgDDL(s)
	}
	return s
}

// tx runs fn in a write transaction, committing when it returns nil.
func (db *DB) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	return inTx(ctx, db.w, "", fn)
}

// inTx runs fn in a transaction on w, committing when it returns nil; errors name the database (file) if given.
func inTx(ctx context.Context, w *sql.DB, file string, fn func(*sql.Tx) error) error {
	if file != "" {
		file = " " + file
	}
	// A transaction PostgreSQL aborted to break a deadlock or a serialization conflict with another server's
	// did nothing: it runs again (fn must be repeatable, as every fn here is), and the client never sees it.
	for attempt := 1; ; attempt++ {
		err := inTxOnce(ctx, w, file, fn)
		if !retryableTx(err) || attempt == maxTxAttempts || ctx.Err() != nil {
			return err
		}
		time.Sleep(time.Duration(attempt*attempt) * 5 * time.Millisecond)
	}
}

// maxTxAttempts bounds the runs of a transaction that keeps meeting deadlocks or serialization conflicts.
const maxTxAttempts = 5

func inTxOnce(ctx context.Context, w *sql.DB, file string, fn func(*sql.Tx) error) error {
	tx, err := w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlstore:%s begin: %w", file, err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback() // fn's error is the one to report; a rollback that fails still ends the transaction
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlstore:%s commit: %w", file, err)
	}
	return nil
}

// mapErr translates driver errors to domain errors; what describes the object for the message.
func mapErr(err error, what string) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return slipway.Errorf(slipway.ENOTFOUND, "%s not found", what)
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return slipway.Wrap(slipway.ECONFLICT, err, "%s already exists", what)
		case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
			return slipway.Wrap(slipway.ECONFLICT, err, "%s is still referenced", what)
		}
	}
	if pe := mapPgErr(err, what); pe != nil {
		return pe
	}
	return fmt.Errorf("sqlstore: %s: %w", what, err)
}

const timeLayout = "2006-01-02T15:04:05.000000000Z07:00"

func formatTime(t time.Time) string { return t.UTC().Format(timeLayout) }

func parseTime(s string) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, s)
	return t
}

func parseNullTime(s sql.NullString) *time.Time {
	if !s.Valid {
		return nil
	}
	t := parseTime(s.String)
	return &t
}

func sortStrings(s []string) { sort.Strings(s) }

// affectedOne turns an exec result into ENOTFOUND when no row matched.
func affectedOne(res sql.Result, err error, what string) error {
	if err != nil {
		return mapErr(err, what)
	}
	if n, err := res.RowsAffected(); err != nil {
		return mapErr(err, what)
	} else if n == 0 {
		return slipway.Errorf(slipway.ENOTFOUND, "%s not found", what)
	}
	return nil
}

// byName reads and deletes the rows of a table keyed by a name column (jobs, pipelines, schedules...).
type byName[T any] struct {
	table, columns string
	kind           string // names a row in errors: kind "job" gives `job "x" not found`
	scan           func(rowScanner) (*T, error)
}

func (t byName[T]) find(ctx context.Context, db *DB, name string) (*T, error) {
	cond, args := inProject(ctx, "project")
	v, err := t.scan(db.r.QueryRowContext(ctx, `SELECT `+t.columns+` FROM `+t.table+` WHERE name = ? AND `+cond, append([]any{name}, args...)...))
	return v, mapErr(err, fmt.Sprintf("%s %q", t.kind, name))
}

// all returns every row of the project of ctx, by name.
func (t byName[T]) all(ctx context.Context, db *DB) ([]*T, error) {
	cond, args := inProject(ctx, "project")
	return queryAll(ctx, db.r, t.scan, t.table, `SELECT `+t.columns+` FROM `+t.table+` WHERE `+cond+` ORDER BY name`, args...)
}

func (t byName[T]) delete(ctx context.Context, db *DB, name string) error {
	cond, args := inProject(ctx, "project")
	res, err := db.w.ExecContext(ctx, `DELETE FROM `+t.table+` WHERE name = ? AND `+cond, append([]any{name}, args...)...)
	return affectedOne(res, err, fmt.Sprintf("%s %q", t.kind, name))
}

// rowScanner is a *sql.Row or *sql.Rows: what the scan functions read.
type rowScanner = interface{ Scan(...any) error }

// queryAll runs query and scans every row with scan; what names the rows in errors.
func queryAll[T any](ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, scan func(rowScanner) (T, error), what, query string, args ...any) ([]T, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, mapErr(err, what)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, mapErr(err, what)
		}
		out = append(out, v)
	}
	return out, mapErr(rows.Err(), what)
}

// InstallationID names this installation (its database), created on first use. Stores that several
// installations could share (a bucket) record it to refuse a second owner.
func (db *DB) InstallationID(ctx context.Context) (string, error) {
	if _, err := db.w.ExecContext(ctx, `INSERT INTO installation (id, uid, created_at) VALUES (1, ?, ?)
		ON CONFLICT (id) DO NOTHING`,
		"slipway-"+rand.Text()[:16], formatTime(time.Now())); err != nil {
		return "", fmt.Errorf("sqlstore: installation id: %w", err)
	}
	var id string
	if err := db.w.QueryRowContext(ctx, `SELECT uid FROM installation WHERE id = 1`).Scan(&id); err != nil {
		return "", fmt.Errorf("sqlstore: installation id: %w", err)
	}
	return id, nil
}

// Snapshot writes a consistent copy of the database to path (which must not exist) while the server runs:
// VACUUM INTO reads one snapshot (WAL readers do not block the writer) and writes a compact database file.
// On PostgreSQL there is no such file: the answer says what to use instead.
func (db *DB) Snapshot(ctx context.Context, path string) error {
	return vacuumInto(ctx, db.r, db.dialect, path)
}

func vacuumInto(ctx context.Context, r *sql.DB, d dialect, path string) error {
	if d == dialectPostgres {
		return slipway.Errorf(slipway.EINVALID, "this installation keeps its state in PostgreSQL, which the server does not copy: "+
			"back up the database with pg_dump (or your provider's snapshots) and the artifact bucket with its versioning")
	}
	if _, err := r.ExecContext(ctx, `VACUUM INTO ?`, path); err != nil {
		return fmt.Errorf("sqlstore: snapshot to %s: %w", path, err)
	}
	return nil
}
