package sqlstore

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Copying an installation's state from one database to another (`slipway db copy`): from the SQLite files of a
// server that started on one machine to the PostgreSQL database that several servers share, or back. The target
// is migrated by this binary first, so both sides have this binary's schema; every table of the schema is copied
// in batches (one transaction each), PostgreSQL's identity counters are moved past the copied ids, and each table
// is then read back from the target and compared with what was read from the source: the row count and a SHA-256
// of every row, in primary-key order. Artifacts (blobs) are not in the database and are not copied.

// Installation says where one installation's state lives: exactly one field is set.
type Installation struct {
	SQLite   string // the metadata database file; the monitoring data is monitor.db in the same folder
	Postgres string // a postgres:// URL holding every table
}

func (l Installation) String() string {
	if l.Postgres != "" {
		return redactDSN(l.Postgres)
	}
	return "sqlite://" + l.SQLite
}

// CopyProgress is reported as a copy goes: Done of Total rows of Table, in Phase "copy" or "verify".
type CopyProgress struct {
	Phase, Table string
	Done, Total  int64
}

// TableCopy is the outcome of one table.
type TableCopy struct {
	Part     string // "metadata" or "monitoring"
	Table    string
	Rows     int64
	Digest   string // SHA-256 of every row in primary-key order, hex; the same on both sides
	Verified bool   // the target's rows read back give the same count and digest
}

// CopyReport is what a copy did.
type CopyReport struct {
	Tables  []TableCopy
	Skipped []string // tables in the source that are not part of Slipway's schema (not copied)
}

// CopyOptions tunes a copy.
type CopyOptions struct {
	BatchRows int                // rows per insert transaction; 0 is 500
	Progress  func(CopyProgress) // may be nil
}

// ErrTargetNotEmpty is returned when the target already holds state: a copy only fills an empty database.
var ErrTargetNotEmpty = errors.New("target is not empty")

// CopyInstallation copies every table of the installation at from into the empty installation at to, then
// verifies it (see the top of this file). The source must not be in use: stop its servers first.
func CopyInstallation(ctx context.Context, from, to Installation, opts CopyOptions) (*CopyReport, error) {
	if opts.BatchRows <= 0 {
		opts.BatchRows = 500
	}
	if opts.Progress == nil {
		opts.Progress = func(CopyProgress) {}
	}
	if from == to {
		return nil, fmt.Errorf("the source and the target are the same database (%s)", from)
	}
	if from.SQLite != "" {
		// Opening would create an empty database: a mistyped path must say so instead.
		if _, err := os.Stat(from.SQLite); err != nil {
			return nil, fmt.Errorf("source %s: no Slipway database there (%w)", from, err)
		}
	}
	if to.SQLite != "" {
		if err := os.MkdirAll(filepath.Dir(to.SQLite), 0o755); err != nil {
			return nil, fmt.Errorf("target %s: %w", to, err)
		}
	}
	src, err := openInstallation(ctx, from)
	if err != nil {
		return nil, fmt.Errorf("open the source %s: %w", from, err)
	}
	defer src.close()
	dst, err := openInstallation(ctx, to)
	if err != nil {
		return nil, fmt.Errorf("open the target %s: %w", to, err)
	}
	defer dst.close()

	plan, skipped, err := planCopy(ctx, src, dst)
	if err != nil {
		return nil, err
	}
	for _, t := range plan {
		if err := t.refuseNonEmptyTarget(ctx, to); err != nil {
			return nil, err
		}
	}
	report := &CopyReport{Skipped: skipped}
	for _, t := range plan {
		tc, err := t.copy(ctx, opts)
		if err != nil {
			return report, fmt.Errorf("copy table %s: %w", t.name, err)
		}
		report.Tables = append(report.Tables, tc)
	}
	for _, part := range dst.parts() {
		if err := resetIdentities(ctx, part); err != nil {
			return report, err
		}
	}
	var bad []string
	for i, t := range plan {
		rows, digest, err := t.digest(ctx, t.dst, func(n int64) { opts.Progress(CopyProgress{"verify", t.name, n, report.Tables[i].Rows}) })
		if err != nil {
			return report, fmt.Errorf("verify table %s: %w", t.name, err)
		}
		tc := &report.Tables[i]
		tc.Verified = rows == tc.Rows && digest == tc.Digest
		if !tc.Verified {
			bad = append(bad, fmt.Sprintf("%s (source %d rows %s, target %d rows %s)", t.name, tc.Rows, tc.Digest[:12], rows, digest[:12]))
		}
	}
	if len(bad) > 0 {
		return report, fmt.Errorf("the copy differs from the source in %d table(s): %s", len(bad), strings.Join(bad, "; "))
	}
	return report, nil
}

// installationDBs is an opened installation: its metadata and monitoring stores.
type installationDBs struct {
	meta *DB
	mon  *MonitorDB
}

func openInstallation(ctx context.Context, l Installation) (*installationDBs, error) {
	var in installationDBs
	var err error
	if l.Postgres != "" {
		if in.meta, err = OpenPostgres(ctx, l.Postgres); err != nil {
			return nil, err
		}
		in.mon, err = OpenMonitorPostgres(ctx, l.Postgres)
	} else {
		if in.meta, err = OpenSQLite(ctx, l.SQLite); err != nil {
			return nil, err
		}
		in.mon, err = OpenMonitorSQLite(ctx, filepath.Join(filepath.Dir(l.SQLite), "monitor.db"))
	}
	if err != nil {
		return nil, errors.Join(err, in.meta.Close())
	}
	return &in, nil
}

func (in *installationDBs) close() { _ = errors.Join(in.meta.Close(), in.mon.Close()) } // read or verified already

// copyDB is one side of one part: its pools and dialect.
type copyDB struct {
	part    string
	w, r    *sql.DB
	dialect dialect
}

func (in *installationDBs) parts() []copyDB {
	return []copyDB{{"metadata", in.meta.w, in.meta.r, in.meta.dialect}, {"monitoring", in.mon.w, in.mon.r, in.mon.dialect}}
}

// bookkeeping tables are written by the migrations themselves, on each side.
var bookkeeping = []string{"schema_migrations", "monitor_schema"}

// monitorTables are the monitoring tables: monitor.db's on SQLite, beside the metadata's on PostgreSQL.
var monitorTables = func() []string {
	var names []string
	re := regexp.MustCompile(`(?i)CREATE TABLE (?:IF NOT EXISTS )?(\w+)`)
	for _, s := range monitorSchema {
		for _, m := range re.FindAllStringSubmatch(s, -1) {
			names = append(names, m[1])
		}
	}
	return names
}()

// belongs says whether table is one of part's tables (both parts share one PostgreSQL database).
func belongs(part, table string) bool {
	if slices.Contains(bookkeeping, table) || strings.HasPrefix(table, "sqlite_") {
		return false
	}
	return slices.Contains(monitorTables, table) == (part == "monitoring")
}

// planCopy lists the tables to copy, parents before the tables whose foreign keys point at them, from the
// target's schema (this binary's), and the source tables that are not in it.
func planCopy(ctx context.Context, src, dst *installationDBs) ([]*copyTable, []string, error) {
	var plan []*copyTable
	var skipped []string
	srcParts := src.parts()
	for i, d := range dst.parts() {
		s := srcParts[i]
		dstTables, err := listTables(ctx, d)
		if err != nil {
			return nil, nil, fmt.Errorf("target: %w", err)
		}
		srcTables, err := listTables(ctx, s)
		if err != nil {
			return nil, nil, fmt.Errorf("source: %w", err)
		}
		for _, t := range srcTables {
			if !slices.Contains(dstTables, t) {
				skipped = append(skipped, t)
			}
		}
		ordered, err := parentsFirst(ctx, d, dstTables)
		if err != nil {
			return nil, nil, err
		}
		for _, name := range ordered {
			if !slices.Contains(srcTables, name) {
				return nil, nil, fmt.Errorf("the source has no table %s: start a server of this version on it once (it migrates its schema), then copy again", name)
			}
			t, err := describeTable(ctx, s, d, name)
			if err != nil {
				return nil, nil, err
			}
			plan = append(plan, t)
		}
	}
	return plan, skipped, nil
}

func listTables(ctx context.Context, d copyDB) ([]string, error) {
	q := `SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`
	if d.dialect == dialectPostgres {
		q = `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name`
	}
	all, err := queryAll(ctx, d.r, scanString, "tables", q)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, t := range all {
		if belongs(d.part, t) {
			out = append(out, t)
		}
	}
	return out, nil
}

func scanString(r rowScanner) (string, error) {
	var s string
	err := r.Scan(&s)
	return s, err
}

// parentsFirst orders tables so that a table comes after every table its foreign keys reference.
func parentsFirst(ctx context.Context, d copyDB, tables []string) ([]string, error) {
	deps := map[string][]string{}
	for _, t := range tables {
		q, args := `SELECT "table" FROM pragma_foreign_key_list(?)`, []any{t}
		if d.dialect == dialectPostgres {
			q = `SELECT confrelid::regclass::text FROM pg_constraint WHERE contype = 'f' AND conrelid = ?::regclass`
		}
		refs, err := queryAll(ctx, d.r, scanString, "foreign keys of "+t, q, args...)
		if err != nil {
			return nil, err
		}
		deps[t] = refs
	}
	var out []string
	done := map[string]bool{}
	var visit func(t string, depth int)
	visit = func(t string, depth int) {
		if done[t] || depth > len(tables) { // a cycle (or a self-reference) ends here
			return
		}
		for _, p := range deps[t] {
			if p != t && slices.Contains(tables, p) {
				visit(p, depth+1)
			}
		}
		if !done[t] {
			done[t] = true
			out = append(out, t)
		}
	}
	for _, t := range tables {
		visit(t, 0)
	}
	return out, nil
}

// kind is how a column's values are compared and bound: SQLite's type affinities, which the migrations use.
type kind byte

const (
	kindInt   kind = 'I'
	kindFloat kind = 'F'
	kindText  kind = 'T'
	kindBlob  kind = 'B'
)

func sqliteKind(declared string) kind {
	t := strings.ToUpper(declared)
	switch {
	case strings.Contains(t, "INT"):
		return kindInt
	case strings.Contains(t, "CHAR"), strings.Contains(t, "CLOB"), strings.Contains(t, "TEXT"):
		return kindText
	case t == "", strings.Contains(t, "BLOB"):
		return kindBlob
	}
	return kindFloat
}

func pgKind(dataType string) kind {
	switch dataType {
	case "bigint", "integer", "smallint":
		return kindInt
	case "double precision", "real", "numeric":
		return kindFloat
	case "bytea":
		return kindBlob
	}
	return kindText
}

// copyTable is one table to copy: its columns (the target's, in order), their kinds and its primary key.
type copyTable struct {
	name     string
	src, dst copyDB
	cols     []string
	kinds    []kind
	key      []int // indexes into cols; every column when the table has no primary key
}

func describeTable(ctx context.Context, src, dst copyDB, name string) (*copyTable, error) {
	t := &copyTable{name: name, src: src, dst: dst}
	type col struct {
		name string
		kind kind
		pk   int
	}
	var cols []col
	var err error
	if dst.dialect == dialectPostgres {
		cols, err = queryAll(ctx, dst.r, func(r rowScanner) (col, error) {
			var c col
			var dt string
			err := r.Scan(&c.name, &dt, &c.pk)
			c.kind = pgKind(dt)
			return c, err
		}, "columns of "+name, `SELECT c.column_name, c.data_type,
			COALESCE((SELECT k.ordinal_position FROM information_schema.table_constraints tc
				JOIN information_schema.key_column_usage k ON k.constraint_name = tc.constraint_name
				AND k.table_schema = tc.table_schema AND k.table_name = tc.table_name
				WHERE tc.constraint_type = 'PRIMARY KEY' AND tc.table_schema = c.table_schema AND tc.table_name = c.table_name
				AND k.column_name = c.column_name), 0)
			FROM information_schema.columns c WHERE c.table_schema = current_schema() AND c.table_name = ? ORDER BY c.ordinal_position`, name)
	} else {
		cols, err = queryAll(ctx, dst.r, func(r rowScanner) (col, error) {
			var c col
			var dt string
			err := r.Scan(&c.name, &dt, &c.pk)
			c.kind = sqliteKind(dt)
			return c, err
		}, "columns of "+name, `SELECT name, type, pk FROM pragma_table_info(?) ORDER BY cid`, name)
	}
	if err != nil {
		return nil, err
	}
	pks := map[int]int{}
	for i, c := range cols {
		t.cols = append(t.cols, c.name)
		t.kinds = append(t.kinds, c.kind)
		if c.pk > 0 {
			pks[c.pk] = i
		}
	}
	for n := 1; n <= len(pks); n++ {
		t.key = append(t.key, pks[n])
	}
	if len(t.key) == 0 {
		for i := range cols {
			t.key = append(t.key, i)
		}
	}
	return t, nil
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// selectOrdered reads every row in primary-key order, the same order on both dialects: text compares by bytes
// (SQLite's BINARY collation; PostgreSQL's "C").
func (t *copyTable) selectOrdered(d copyDB) string {
	cols := make([]string, len(t.cols))
	for i, c := range t.cols {
		cols[i] = quoteIdent(c)
	}
	order := make([]string, len(t.key))
	for i, k := range t.key {
		order[i] = quoteIdent(t.cols[k])
		if d.dialect == dialectPostgres && t.kinds[k] == kindText {
			order[i] += ` COLLATE "C"`
		}
	}
	return `SELECT ` + strings.Join(cols, ", ") + ` FROM ` + quoteIdent(t.name) + ` ORDER BY ` + strings.Join(order, ", ")
}

func (t *copyTable) refuseNonEmptyTarget(ctx context.Context, to Installation) error {
	var n int64
	if err := t.dst.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+quoteIdent(t.name)).Scan(&n); err != nil {
		return fmt.Errorf("target: count %s: %w", t.name, err)
	}
	if n > 0 {
		return fmt.Errorf("%w: %s already holds Slipway state (table %s has %d rows); db copy only fills an empty database: "+
			"copy into a new database, or drop this one's tables first if it is a failed earlier copy", ErrTargetNotEmpty, to, t.name, n)
	}
	return nil
}

// copy inserts the source's rows into the target in batches of opts.BatchRows, one transaction each, and returns
// the count and digest of what it read.
func (t *copyTable) copy(ctx context.Context, opts CopyOptions) (TableCopy, error) {
	tc := TableCopy{Part: t.src.part, Table: t.name}
	var total int64
	if err := t.src.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+quoteIdent(t.name)).Scan(&total); err != nil {
		return tc, err
	}
	// The source is read in one transaction, a single snapshot of the table.
	txOpts := &sql.TxOptions{ReadOnly: true, Isolation: sql.LevelRepeatableRead}
	if t.src.dialect == dialectSQLite {
		txOpts = nil // SQLite's transactions are serializable; its driver refuses the isolation option
	}
	tx, err := t.src.r.BeginTx(ctx, txOpts)
	if err != nil {
		return tc, err
	}
	defer func() { _ = tx.Rollback() }() // read-only: nothing to keep
	rows, err := tx.QueryContext(ctx, t.selectOrdered(t.src))
	if err != nil {
		return tc, err
	}
	defer rows.Close()
	// Bound parameters per statement: SQLite allows 32766, PostgreSQL 65535.
	perInsert := max(1, min(opts.BatchRows, 30000/len(t.cols)))
	h := sha256.New()
	var batch [][]any
	var batchBytes int
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := t.insert(ctx, batch, perInsert); err != nil {
			return err
		}
		tc.Rows += int64(len(batch))
		batch, batchBytes = batch[:0], 0
		opts.Progress(CopyProgress{"copy", t.name, tc.Rows, total})
		return nil
	}
	for rows.Next() {
		vals := make([]any, len(t.cols))
		ptrs := make([]any, len(vals))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return tc, err
		}
		for i := range vals {
			if vals[i], err = convert(vals[i], t.kinds[i]); err != nil {
				return tc, fmt.Errorf("row %d, column %s: %w", tc.Rows+int64(len(batch))+1, t.cols[i], err)
			}
			batchBytes += valueSize(vals[i])
		}
		hashRow(h, vals, t.kinds)
		batch = append(batch, vals)
		// A batch is also bounded in bytes: captures carry request and response bodies.
		if len(batch) >= opts.BatchRows || batchBytes >= 8<<20 {
			if err := flush(); err != nil {
				return tc, err
			}
		}
	}
	if err := rows.Err(); err != nil {
		return tc, err
	}
	if err := flush(); err != nil {
		return tc, err
	}
	tc.Digest = hex.EncodeToString(h.Sum(nil))
	return tc, nil
}

// insert writes rows in one transaction, perInsert rows per statement.
func (t *copyTable) insert(ctx context.Context, rows [][]any, perInsert int) error {
	return inTx(ctx, t.dst.w, "", func(tx *sql.Tx) error {
		for len(rows) > 0 {
			n := min(perInsert, len(rows))
			q, args := t.insertStatement(rows[:n])
			if _, err := tx.ExecContext(ctx, q, args...); err != nil {
				return err
			}
			rows = rows[n:]
		}
		return nil
	})
}

func (t *copyTable) insertStatement(rows [][]any) (string, []any) {
	cols := make([]string, len(t.cols))
	for i, c := range t.cols {
		cols[i] = quoteIdent(c)
	}
	one := "(" + strings.TrimSuffix(strings.Repeat("?, ", len(t.cols)), ", ") + ")"
	var b strings.Builder
	b.WriteString(`INSERT INTO ` + quoteIdent(t.name) + ` (` + strings.Join(cols, ", ") + `) VALUES `)
	args := make([]any, 0, len(rows)*len(t.cols))
	for i, r := range rows {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(one)
		args = append(args, r...)
	}
	return b.String(), args
}

// digest reads the table from d in primary-key order and returns its count and digest.
func (t *copyTable) digest(ctx context.Context, d copyDB, progress func(int64)) (int64, string, error) {
	rows, err := d.r.QueryContext(ctx, t.selectOrdered(d))
	if err != nil {
		return 0, "", err
	}
	defer rows.Close()
	h := sha256.New()
	var n int64
	vals := make([]any, len(t.cols))
	ptrs := make([]any, len(vals))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return 0, "", err
		}
		for i := range vals {
			if vals[i], err = convert(vals[i], t.kinds[i]); err != nil {
				return 0, "", fmt.Errorf("column %s: %w", t.cols[i], err)
			}
		}
		hashRow(h, vals, t.kinds)
		n++
		if n%1000 == 0 {
			progress(n)
		}
	}
	progress(n)
	return n, hex.EncodeToString(h.Sum(nil)), rows.Err()
}

// convert turns a value read from either dialect into the Go type of its column's kind (SQLite's columns are
// loosely typed: a number may sit in a text column), so that both sides bind and hash it alike.
func convert(v any, k kind) (any, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case bool:
		return convert(map[bool]int64{false: 0, true: 1}[x], k)
	case int32:
		return convert(int64(x), k)
	case float32:
		return convert(float64(x), k)
	case int64:
		switch k {
		case kindInt:
			return x, nil
		case kindFloat:
			return float64(x), nil
		default:
			return convert(strconv.FormatInt(x, 10), k)
		}
	case float64:
		switch k {
		case kindFloat:
			return x, nil
		case kindInt:
			if x == math.Trunc(x) && math.Abs(x) < 1<<62 {
				return int64(x), nil
			}
			return nil, fmt.Errorf("%v is not an integer", x)
		default:
			return convert(strconv.FormatFloat(x, 'g', -1, 64), k)
		}
	case string:
		switch k {
		case kindText:
			return x, nil
		case kindBlob:
			return []byte(x), nil
		case kindInt:
			return strconv.ParseInt(x, 10, 64)
		default:
			return strconv.ParseFloat(x, 64)
		}
	case []byte:
		if k == kindBlob {
			return slices.Clone(x), nil // drivers may reuse the buffer for the next row
		}
		return convert(string(x), k)
	}
	return nil, fmt.Errorf("unsupported value of type %T", v)
}

func valueSize(v any) int {
	switch x := v.(type) {
	case string:
		return len(x)
	case []byte:
		return len(x)
	}
	return 8
}

// hashRow adds one row to a table's digest: each value tagged with its kind (or N for NULL), text and bytes
// length-prefixed, so that no two different rows write the same bytes.
func hashRow(h hash.Hash, vals []any, kinds []kind) {
	var buf [9]byte
	for i, v := range vals {
		switch x := v.(type) {
		case nil:
			h.Write([]byte{'N'})
			continue
		case int64:
			buf[0] = byte(kindInt)
			binary.BigEndian.PutUint64(buf[1:], uint64(x))
			h.Write(buf[:])
			continue
		case float64:
			buf[0] = byte(kindFloat)
			binary.BigEndian.PutUint64(buf[1:], math.Float64bits(x))
			h.Write(buf[:])
			continue
		case string:
			buf[0] = byte(kinds[i])
			binary.BigEndian.PutUint64(buf[1:], uint64(len(x)))
			h.Write(buf[:])
			h.Write([]byte(x))
		case []byte:
			buf[0] = byte(kinds[i])
			binary.BigEndian.PutUint64(buf[1:], uint64(len(x)))
			h.Write(buf[:])
			h.Write(x)
		}
	}
	h.Write([]byte{'\n'})
}

// resetIdentities moves PostgreSQL's identity counters past the copied ids, so that the next row a server
// inserts gets a fresh one (an explicit id does not advance them). SQLite numbers from MAX(rowid) itself.
func resetIdentities(ctx context.Context, d copyDB) error {
	if d.dialect != dialectPostgres {
		return nil
	}
	type ident struct{ table, column string }
	ids, err := queryAll(ctx, d.r, func(r rowScanner) (ident, error) {
		var i ident
		err := r.Scan(&i.table, &i.column)
		return i, err
	}, "identity columns", `SELECT table_name, column_name FROM information_schema.columns
		WHERE table_schema = current_schema() AND is_identity = 'YES' ORDER BY table_name`)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if !belongs(d.part, id.table) {
			continue
		}
		q := `SELECT setval(pg_get_serial_sequence(?, ?), COALESCE((SELECT MAX(` + quoteIdent(id.column) + `) FROM ` +
			quoteIdent(id.table) + `), 0) + 1, false)`
		if _, err := d.w.ExecContext(ctx, q, id.table, id.column); err != nil {
			return fmt.Errorf("target: move the identity counter of %s.%s: %w", id.table, id.column, err)
		}
	}
	return nil
}
