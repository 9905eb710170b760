package batch

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/slipway-ml/slipway"
)

// outCol is a column of the output: a key column of the input or a prediction column.
type outCol struct {
	name string
	kind kind
}

// chunkOut is what one chunk writes: its rows (columns aligned with the sink's outCols), the rows it skipped
// and why.
type chunkOut struct {
	index    int
	rows     int
	cols     []*column
	skipped  int
	errors   []slipway.BatchError
	scoredAt time.Time
}

// chunkRecord is a committed chunk, as the output remembers it.
type chunkRecord struct {
	rows, skipped int64
	errors        []slipway.BatchError
}

// sink writes a run's output. Every write is all-or-nothing together with its checkpoint, so that after a
// crash committed() tells exactly which chunks are in the output.
type sink interface {
	// prepare creates the destination or checks that the existing one fits cols; nothing is written
	// when it does not.
	prepare(ctx context.Context, cols []outCol) error
	committed(ctx context.Context) (map[int]chunkRecord, error)
	write(ctx context.Context, out *chunkOut) error
	// finish completes the output once every chunk is committed.
	finish(ctx context.Context) (slipway.BatchOutput, error)
	// close releases what the sink holds. An error fails the run: the output may be incomplete.
	close() error
}

// meta columns every output row carries.
var metaCols = []outCol{{"model", kindString}, {"model_version", kindInt}, {"batch_id", kindString}, {"scored_at", kindTime}}

const checkpointTable = "slipway_batch_checkpoints"

var tablePattern = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]{0,62}\.)?[A-Za-z_][A-Za-z0-9_]{0,55}$`)

// tableName is a (schema-qualified on PostgreSQL) table.
type tableName struct{ schema, name string }

func parseTable(driver, s string) (tableName, error) {
	if !tablePattern.MatchString(s) {
		return tableName{}, slipway.Errorf(slipway.EINVALID, "invalid output.table %q: use letters, digits and '_' (at most 56 characters, not starting with a digit), optionally schema.table on PostgreSQL", s)
	}
	schema, name, ok := strings.Cut(s, ".")
	if !ok {
		return tableName{name: s}, nil
	}
	if driver == DriverSQLite {
		return tableName{}, slipway.Errorf(slipway.EINVALID, "invalid output.table %q: SQLite tables have no schema prefix", s)
	}
	if name == checkpointTable {
		return tableName{}, slipway.Errorf(slipway.EINVALID, "output.table %q is Slipway's checkpoint table", s)
	}
	return tableName{schema: schema, name: name}, nil
}

func (t tableName) sibling(name string) tableName { return tableName{schema: t.schema, name: name} }

func (t tableName) quoted() string {
	if t.schema != "" {
		return quoteIdent(t.schema) + "." + quoteIdent(t.name)
	}
	return quoteIdent(t.name)
}

func (t tableName) String() string {
	if t.schema != "" {
		return t.schema + "." + t.name
	}
	return t.name
}

// sqlSink writes rows into a table of a named connection. Each chunk's rows, its skipped-row records
// (<table>_errors) and its checkpoint row (slipway_batch_checkpoints, primary key batch id + chunk) are
// committed in one transaction: a chunk is in the table exactly once, or not at all.
type sqlSink struct {
	conn    *Conn
	db      *sql.DB
	table   tableName
	runID   string
	model   string
	version int
	skip    bool
	cols    []outCol
	binary  bool // PostgreSQL: every column has the type appendPGCopy encodes, so chunks skip pgx's per-value encoding
}

func newSQLSink(conn *Conn, table tableName, runID, model string, version int, skip bool) (*sqlSink, error) {
	db, err := conn.DB()
	if err != nil {
		return nil, err
	}
	return &sqlSink{conn: conn, db: db, table: table, runID: runID, model: model, version: version, skip: skip}, nil
}

func (s *sqlSink) pg() bool { return s.conn.Driver == DriverPostgres }

func (s *sqlSink) sqlType(k kind) string {
	if s.pg() {
		return [...]string{"TEXT", "BIGINT", "DOUBLE PRECISION", "TEXT", "BOOLEAN", "TIMESTAMPTZ"}[k]
	}
	return [...]string{"", "INTEGER", "REAL", "TEXT", "BOOLEAN", "TIMESTAMP"}[k]
}

// bind turns '?' placeholders into PostgreSQL's $n.
func (s *sqlSink) bind(q string) string {
	if !s.pg() {
		return q
	}
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			fmt.Fprintf(&b, "$%d", n)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

type existingCol struct {
	name     string
	typ      string
	required bool // NOT NULL without a default
}

// describe returns the columns of t, or nil when it does not exist.
func (s *sqlSink) describe(ctx context.Context, t tableName) ([]existingCol, error) {
	var rows *sql.Rows
	var err error
	if s.pg() {
		var schema any
		if t.schema != "" {
			schema = t.schema
		}
		rows, err = s.db.QueryContext(ctx, `SELECT column_name, data_type, is_nullable = 'NO' AND column_default IS NULL
			FROM information_schema.columns WHERE table_schema = COALESCE($1::text, current_schema()) AND table_name = $2
			ORDER BY ordinal_position`, schema, t.name)
	} else {
		rows, err = s.db.QueryContext(ctx, `SELECT name, type, "notnull" = 1 AND dflt_value IS NULL AND pk = 0 FROM pragma_table_info(?)`, t.name)
	}
	if err != nil {
		return nil, s.dbError(err, "read the columns of table %s", t)
	}
	defer rows.Close()
	var out []existingCol
	for rows.Next() {
		var c existingCol
		if err := rows.Scan(&c.name, &c.typ, &c.required); err != nil {
			return nil, s.dbError(err, "read the columns of table %s", t)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

func (s *sqlSink) dbError(err error, format string, args ...any) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	what := fmt.Sprintf(format, args...)
	return slipway.Wrap(slipway.EUNAVAILABLE, err, "connection %s: %s: %s", s.conn.Name, what, redactValue(err.Error()))
}

func (s *sqlSink) prepare(ctx context.Context, cols []outCol) error {
	s.cols = append(append([]outCol{}, cols...), metaCols...)
	if err := s.ensure(ctx, s.table, s.cols, "output table"); err != nil {
		return err
	}
	if s.skip {
		if err := s.ensure(ctx, s.table.sibling(s.table.name+"_errors"), errorCols, "errors table"); err != nil {
			return err
		}
	}
	if s.pg() {
		existing, err := s.describe(ctx, s.table)
		if err != nil {
			return err
		}
		s.binary = binaryCopyFits(s.cols, existing)
	}
	ckpt := s.table.sibling(checkpointTable)
	_, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+ckpt.quoted()+` (
		batch_id TEXT NOT NULL, chunk INTEGER NOT NULL, rows_written INTEGER NOT NULL, rows_skipped INTEGER NOT NULL,
		output_table TEXT NOT NULL, committed_at TEXT NOT NULL, PRIMARY KEY (batch_id, chunk))`)
	if err != nil {
		return s.dbError(err, "create the checkpoint table %s", ckpt)
	}
	return nil
}

// binaryCopyFits reports whether every column the run writes exists with exactly the type appendPGCopy
// encodes (binary COPY does not convert: an INTEGER column would refuse 8-byte values).
func binaryCopyFits(cols []outCol, existing []existingCol) bool {
	types := map[string]string{}
	for _, e := range existing {
		types[e.name] = e.typ
	}
	for _, c := range cols {
		if int(c.kind) >= len(pgBinaryType) || pgBinaryType[c.kind] == "" || types[c.name] != pgBinaryType[c.kind] {
			return false
		}
	}
	return true
}

var errorCols = []outCol{{"batch_id", kindString}, {"chunk", kindInt}, {"row_start", kindInt}, {"row_end", kindInt}, {"error", kindString}, {"recorded_at", kindTime}}

// ensure creates t with cols, or checks that the existing t can take them.
func (s *sqlSink) ensure(ctx context.Context, t tableName, cols []outCol, what string) error {
	existing, err := s.describe(ctx, t)
	if err != nil {
		return err
	}
	if len(existing) == 0 {
		defs := make([]string, len(cols))
		for i, c := range cols {
			defs[i] = quoteIdent(c.name) + " " + s.sqlType(c.kind)
		}
		if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+t.quoted()+` (`+strings.Join(defs, ", ")+`)`); err != nil {
			return s.dbError(err, "create %s %s", what, t)
		}
		return nil
	}
	var problems []string
	byName := map[string]existingCol{}
	for _, e := range existing {
		byName[e.name] = e
	}
	for _, c := range cols {
		e, ok := byName[c.name]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("it has no column %q (%s)", c.name, s.sqlType(c.kind)))
		case !s.fits(c.kind, e.typ):
			problems = append(problems, fmt.Sprintf("column %q is %s, this run writes %s values (%s)", c.name, e.typ, c.kind, s.sqlType(c.kind)))
		}
		delete(byName, c.name)
	}
	for _, e := range existing {
		if _, extra := byName[e.name]; extra && e.required {
			problems = append(problems, fmt.Sprintf("column %q is NOT NULL without a default, and this run does not write it", e.name))
		}
	}
	if len(problems) > 0 {
		return slipway.Errorf(slipway.ECONFLICT, "%s %s on connection %s exists with an incompatible schema: %s. Write to a new table, or drop or alter this one (nothing was written)",
			what, t, s.conn.Name, strings.Join(problems, "; "))
	}
	return nil
}

// fits reports whether an existing column of declared type typ can store values of kind k.
func (s *sqlSink) fits(k kind, typ string) bool {
	have := sqlKind(typ)
	switch {
	case have == k:
		return true
	case !s.pg() && have == kindNone: // SQLite: a column without a type takes anything
		return true
	case !s.pg() && k == kindBool && have == kindInt:
		return true
	case !s.pg() && k == kindTime && have == kindString:
		return true
	case k == kindInt && have == kindFloat && strings.Contains(strings.ToUpper(typ), "NUMERIC"):
		return true
	}
	return false
}

func (s *sqlSink) committed(ctx context.Context) (map[int]chunkRecord, error) {
	ckpt := s.table.sibling(checkpointTable)
	out := map[int]chunkRecord{}
	rows, err := s.db.QueryContext(ctx, s.bind(`SELECT chunk, rows_written, rows_skipped FROM `+ckpt.quoted()+` WHERE batch_id = ?`), s.runID)
	if err != nil {
		if s.missingTable(err) {
			return out, nil
		}
		return nil, s.dbError(err, "read the checkpoints")
	}
	defer rows.Close()
	for rows.Next() {
		var chunkN int
		var r chunkRecord
		if err := rows.Scan(&chunkN, &r.rows, &r.skipped); err != nil {
			return nil, s.dbError(err, "read the checkpoints")
		}
		out[chunkN] = r
	}
	if err := rows.Err(); err != nil {
		return nil, s.dbError(err, "read the checkpoints")
	}
	if err := rows.Close(); err != nil { // now, to free the connection for the next query
		return nil, s.dbError(err, "read the checkpoints")
	}
	if !s.skip {
		return out, nil
	}
	errs := s.table.sibling(s.table.name + "_errors")
	erows, err := s.db.QueryContext(ctx, s.bind(`SELECT chunk, row_start, row_end, error FROM `+errs.quoted()+` WHERE batch_id = ? ORDER BY row_start`), s.runID)
	if err != nil {
		if s.missingTable(err) {
			return out, nil
		}
		return nil, s.dbError(err, "read the errors table")
	}
	defer erows.Close()
	for erows.Next() {
		var e slipway.BatchError
		if err := erows.Scan(&e.Chunk, &e.RowStart, &e.RowEnd, &e.Message); err != nil {
			return nil, s.dbError(err, "read the errors table")
		}
		if r, ok := out[e.Chunk]; ok {
			r.errors = append(r.errors, e)
			out[e.Chunk] = r
		}
	}
	return out, erows.Err()
}

func (s *sqlSink) missingTable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "42P01" // undefined_table
	}
	return strings.Contains(err.Error(), "no such table")
}

// duplicate reports a unique violation: the chunk's checkpoint exists, so the chunk is already committed.
func duplicate(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "23505"
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY || se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE
	}
	return false
}

func (s *sqlSink) rowValues(out *chunkOut, r int, dst []any) []any {
	dst = dst[:0]
	for _, c := range out.cols {
		v := c.value(r)
		if t, ok := v.(time.Time); ok && !s.pg() {
			v = t.UTC().Format(time.RFC3339Nano)
		}
		dst = append(dst, v)
	}
	scored := any(out.scoredAt)
	if !s.pg() {
		scored = out.scoredAt.UTC().Format(time.RFC3339Nano)
	}
	return append(dst, s.model, int64(s.version), s.runID, scored)
}

func (s *sqlSink) write(ctx context.Context, out *chunkOut) error {
	var err error
	if s.pg() {
		err = s.writePG(ctx, out)
	} else {
		err = s.writeSQLite(ctx, out)
	}
	if duplicate(err) {
		return nil // committed by an earlier attempt: the checkpoint's primary key refused the second copy
	}
	if err != nil {
		return s.dbError(err, "write chunk %d to %s", out.index, s.table)
	}
	return nil
}

func (s *sqlSink) colNames() []string {
	names := make([]string, len(s.cols))
	for i, c := range s.cols {
		names[i] = c.name
	}
	return names
}

func (s *sqlSink) writeSQLite(ctx context.Context, out *chunkOut) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }() // after Commit a no-op; before, the error returned says what failed
	quoted := make([]string, len(s.cols))
	for i, c := range s.cols {
		quoted[i] = quoteIdent(c.name)
	}
	head := `INSERT INTO ` + s.table.quoted() + ` (` + strings.Join(quoted, ", ") + `) VALUES `
	tuple := "(" + strings.TrimSuffix(strings.Repeat("?, ", len(s.cols)), ", ") + ")"
	per := max(1, min(500, 30000/len(s.cols)))
	var full *sql.Stmt
	args := make([]any, 0, per*len(s.cols))
	var row []any
	for lo := 0; lo < out.rows; lo += per {
		hi := min(lo+per, out.rows)
		args = args[:0]
		for r := lo; r < hi; r++ {
			row = s.rowValues(out, r, row)
			args = append(args, row...)
		}
		if hi-lo == per {
			if full == nil {
				if full, err = tx.PrepareContext(ctx, head+strings.TrimSuffix(strings.Repeat(tuple+", ", per), ", ")); err != nil {
					return err
				}
				defer full.Close()
			}
			_, err = full.ExecContext(ctx, args...)
		} else {
			_, err = tx.ExecContext(ctx, head+strings.TrimSuffix(strings.Repeat(tuple+", ", hi-lo), ", "), args...)
		}
		if err != nil {
			return err
		}
	}
	if err := s.writeErrorsAndCheckpoint(ctx, out, func(q string, args ...any) error {
		_, err := tx.ExecContext(ctx, q, args...)
		return err
	}); err != nil {
		return err
	}
	return tx.Commit()
}

func (s *sqlSink) writeErrorsAndCheckpoint(ctx context.Context, out *chunkOut, exec func(q string, args ...any) error) error {
	now := time.Now().UTC()
	recorded := any(now)
	if !s.pg() {
		recorded = now.Format(time.RFC3339Nano)
	}
	if len(out.errors) > 0 && s.skip {
		errs := s.table.sibling(s.table.name + "_errors")
		for _, e := range out.errors {
			if err := exec(s.bind(`INSERT INTO `+errs.quoted()+` (batch_id, chunk, row_start, row_end, error, recorded_at) VALUES (?, ?, ?, ?, ?, ?)`),
				s.runID, int64(e.Chunk), e.RowStart, e.RowEnd, e.Message, recorded); err != nil {
				return err
			}
		}
	}
	ckpt := s.table.sibling(checkpointTable)
	return exec(s.bind(`INSERT INTO `+ckpt.quoted()+` (batch_id, chunk, rows_written, rows_skipped, output_table, committed_at) VALUES (?, ?, ?, ?, ?, ?)`),
		s.runID, int64(out.index), int64(out.rows), int64(out.skipped), s.table.String(), now.Format(time.RFC3339Nano))
}

// writePG copies the rows with COPY inside a transaction that also inserts the checkpoint.
func (s *sqlSink) writePG(ctx context.Context, out *chunkOut) error {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Raw(func(driverConn any) error {
		pc := driverConn.(*stdlib.Conn).Conn()
		tx, err := pc.Begin(ctx)
		if err != nil {
			return err
		}
		// After Commit a no-op; before, the error returned says what failed.
		defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
		ident := pgx.Identifier{s.table.name}
		if s.table.schema != "" {
			ident = pgx.Identifier{s.table.schema, s.table.name}
		}
		if s.binary {
			if err := s.copyBinary(ctx, pc, out); err != nil {
				return err
			}
		} else {
			var row []any
			if _, err := tx.CopyFrom(ctx, ident, s.colNames(), pgx.CopyFromSlice(out.rows, func(r int) ([]any, error) {
				row = s.rowValues(out, r, row)
				return row, nil
			})); err != nil {
				return err
			}
		}
		if err := s.writeErrorsAndCheckpoint(ctx, out, func(q string, args ...any) error {
			_, err := tx.Exec(ctx, q, args...)
			return err
		}); err != nil {
			return err
		}
		return tx.Commit(ctx)
	})
}

// copyBinary sends the chunk as one binary COPY on pc, inside the transaction the caller opened on it.
func (s *sqlSink) copyBinary(ctx context.Context, pc *pgx.Conn, out *chunkOut) error {
	quoted := make([]string, len(s.cols))
	for i, c := range s.cols {
		quoted[i] = quoteIdent(c.name)
	}
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	*bp = appendPGCopy((*bp)[:0], out, s.model, s.version, s.runID)
	_, err := pc.PgConn().CopyFrom(ctx, bytes.NewReader(*bp), `COPY `+s.table.quoted()+` (`+strings.Join(quoted, ", ")+`) FROM STDIN (FORMAT binary)`)
	return err
}

func (s *sqlSink) finish(ctx context.Context) (slipway.BatchOutput, error) {
	return slipway.BatchOutput{Connection: s.conn.Name, Table: s.table.String()}, nil
}

func (s *sqlSink) close() error { return nil }
