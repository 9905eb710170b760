package batch

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/slipway-ml/slipway"
)

// sqlSource reads the result of a query on a named connection, ordered by the key columns so that a
// resumed run reads the same rows in the same chunks. The query runs as a subquery (one SELECT, no
// statements around it) and, on PostgreSQL, in a READ ONLY transaction.
type sqlSource struct {
	conn  *Conn
	db    *sql.DB
	query string
	order []string
	cols  []srcColumn

	tx     *sql.Tx
	rows   *sql.Rows
	dest   []any
	sel    []selected
	row    int64
	chunkN int
}

func newSQLSource(ctx context.Context, conn *Conn, query string, order []string) (*sqlSource, error) {
	q := strings.TrimSpace(query)
	for strings.HasSuffix(q, ";") {
		q = strings.TrimSpace(strings.TrimSuffix(q, ";"))
	}
	if q == "" {
		return nil, slipway.Errorf(slipway.EINVALID, "input.query is empty: give a SELECT statement")
	}
	if err := conn.ping(ctx); err != nil {
		return nil, err
	}
	db, _ := conn.DB()
	s := &sqlSource{conn: conn, db: db, query: q, order: order}
	rows, err := db.QueryContext(ctx, s.wrapped()+" LIMIT 0")
	if err != nil {
		return nil, s.queryError(err)
	}
	defer rows.Close()
	types, err := rows.ColumnTypes()
	if err != nil {
		return nil, s.queryError(err)
	}
	seen := map[string]bool{}
	for _, t := range types {
		if seen[t.Name()] {
			return nil, slipway.Errorf(slipway.EINVALID, "the query returns column %q twice: give each column its own name (AS ...)", t.Name())
		}
		seen[t.Name()] = true
		s.cols = append(s.cols, srcColumn{name: t.Name(), kind: sqlKind(t.DatabaseTypeName())})
	}
	return s, nil
}

func (s *sqlSource) wrapped() string {
	return "SELECT * FROM (" + s.query + ") AS slipway_input"
}

func (s *sqlSource) queryError(err error) error {
	return slipway.Wrap(slipway.EINVALID, err, "the input query failed on connection %s: %s", s.conn.Name, redactValue(err.Error()))
}

// sqlKind maps a column's database type name to a kind (SQLite affinity rules; PostgreSQL type names).
func sqlKind(name string) kind {
	n := strings.ToUpper(name)
	switch {
	case strings.Contains(n, "INT"):
		return kindInt
	case strings.Contains(n, "BOOL"):
		return kindBool
	case strings.Contains(n, "TIMESTAMP"), strings.Contains(n, "DATE"):
		return kindTime
	case strings.Contains(n, "CHAR"), strings.Contains(n, "TEXT"), strings.Contains(n, "CLOB"), n == "UUID", n == "NAME":
		return kindString
	case strings.Contains(n, "REAL"), strings.Contains(n, "FLOA"), strings.Contains(n, "DOUB"), strings.Contains(n, "NUMERIC"), strings.Contains(n, "DECIMAL"):
		return kindFloat
	}
	return kindNone
}

func goKind(v any) kind {
	switch v.(type) {
	case int64, int32, int:
		return kindInt
	case float64, float32:
		return kindFloat
	case string, []byte:
		return kindString
	case bool:
		return kindBool
	case time.Time:
		return kindTime
	}
	return kindNone
}

func (s *sqlSource) columns() []srcColumn { return s.cols }

func (s *sqlSource) sample(ctx context.Context, cols []int, n int) ([]kind, error) {
	rows, err := s.db.QueryContext(ctx, fmt.Sprintf("%s LIMIT %d", s.wrapped(), n))
	if err != nil {
		return nil, s.queryError(err)
	}
	defer rows.Close()
	dest := make([]any, len(s.cols))
	ptrs := make([]any, len(dest))
	for i := range dest {
		ptrs[i] = &dest[i]
	}
	kinds := make([]kind, len(cols))
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return nil, s.queryError(err)
		}
		for j, c := range cols {
			kinds[j] = widen(kinds[j], goKind(dest[c]))
		}
	}
	if err := rows.Err(); err != nil {
		return nil, s.queryError(err)
	}
	for j := range kinds {
		if kinds[j] == kindNone {
			kinds[j] = kindString
		}
	}
	return kinds, nil
}

func (s *sqlSource) total(ctx context.Context) (int64, error) {
	var n int64
	if err := s.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM ("+s.query+") AS slipway_input").Scan(&n); err != nil {
		return 0, s.queryError(err)
	}
	return n, nil
}

func (s *sqlSource) start(ctx context.Context, sel []selected) error {
	q := s.wrapped()
	if len(s.order) > 0 {
		keys := make([]string, len(s.order))
		for i, k := range s.order {
			keys[i] = quoteIdent(k)
		}
		q += " ORDER BY " + strings.Join(keys, ", ")
	}
	var err error
	if s.conn.Driver == DriverPostgres {
		if s.tx, err = s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true, Isolation: sql.LevelRepeatableRead}); err != nil {
			return s.queryError(err)
		}
		s.rows, err = s.tx.QueryContext(ctx, q)
	} else {
		s.rows, err = s.db.QueryContext(ctx, q)
	}
	if err != nil {
		return s.queryError(err)
	}
	s.sel = sel
	s.dest = make([]any, len(s.cols))
	return nil
}

func (s *sqlSource) next(ctx context.Context, n int) (*chunk, error) {
	c := newChunk(s.sel, n)
	c.index, c.start = s.chunkN, s.row
	ptrs := make([]any, len(s.dest))
	for i := range s.dest {
		ptrs[i] = &s.dest[i]
	}
	for c.n < n && s.rows.Next() {
		if err := s.rows.Scan(ptrs...); err != nil {
			return nil, s.queryError(err)
		}
		r := c.n
		for j, sl := range s.sel {
			if err := c.cols[j].appendAny(s.dest[sl.src]); err != nil {
				c.cols[j].appendNull()
				c.markBad(r, fmt.Sprintf("column %q: %v", sl.name, err))
			}
		}
		c.n++
	}
	if err := s.rows.Err(); err != nil {
		return nil, s.queryError(err)
	}
	if c.n == 0 {
		return nil, nil
	}
	s.row += int64(c.n)
	s.chunkN++
	return c, nil
}

func (s *sqlSource) close() error {
	var errs []error
	if s.rows != nil {
		errs = append(errs, s.rows.Close())
	}
	// The read-only transaction ends by rolling back; a cancelled context has rolled it back already.
	if s.tx != nil {
		if err := s.tx.Rollback(); !errors.Is(err, sql.ErrTxDone) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// quoteIdent quotes an identifier for SQLite and PostgreSQL alike.
func quoteIdent(name string) string {
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}
