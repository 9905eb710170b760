package sqlstore

import (
	"context"
	"database/sql"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver of the other server's connection
)

// A single statement (no transaction of ours) that PostgreSQL picks as a deadlock's victim runs again: the
// caller sees it succeed. Another server's transaction locks row 2, the store's statement locks row 1 and waits
// for row 2, then the transaction asks for row 1: PostgreSQL aborts the statement, which waited longest.
func TestPostgresRetriesAStatementADeadlockAborted(t *testing.T) {
	ctx := context.Background()
	dsn := postgresDatabase(t)
	db, err := OpenPostgres(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	other, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := db.w.ExecContext(ctx, `CREATE TABLE counters (id INTEGER PRIMARY KEY, v INTEGER NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.w.ExecContext(ctx, `INSERT INTO counters VALUES (1, 0), (2, 0)`); err != nil {
		t.Fatal(err)
	}
	deadlocks := func() int {
		var n int
		if err := other.QueryRowContext(ctx, `SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := deadlocks()

	tx, err := other.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `UPDATE counters SET v = v + 10 WHERE id = 2`); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { // the store's statement: row 1, then row 2 (physical order), blocked on row 2
		_, err := db.w.ExecContext(ctx, `UPDATE counters SET v = v + 1 WHERE id IN (1, 2)`)
		done <- err
	}()
	for waiting := 0; waiting == 0; time.Sleep(20 * time.Millisecond) {
		if err := other.QueryRowContext(ctx, `SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database()
			AND wait_event_type = 'Lock' AND query LIKE 'UPDATE counters SET v = v + 1%'`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tx.ExecContext(ctx, `UPDATE counters SET v = v + 100 WHERE id = 1`); err != nil {
		t.Fatalf("the other server's transaction was the deadlock's victim, not the statement: %v", err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("the statement a deadlock aborted reached its caller: %v", err)
	}
	if after := deadlocks(); after <= before {
		t.Fatalf("no deadlock happened (%d before, %d after): the test proves nothing", before, after)
	}
	var v1, v2 int
	if err := db.r.QueryRowContext(ctx, `SELECT (SELECT v FROM counters WHERE id = 1), (SELECT v FROM counters WHERE id = 2)`).Scan(&v1, &v2); err != nil {
		t.Fatal(err)
	}
	if v1 != 101 || v2 != 11 { // the statement ran once, after the transaction
		t.Fatalf("counters %d and %d, want 101 and 11", v1, v2)
	}
}
