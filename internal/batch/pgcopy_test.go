package batch

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/slipway-ml/slipway/internal/slipwaytest"
)

// TestPGBinaryCopyMatchesPgx writes the same chunk through the binary COPY encoder and through pgx's
// CopyFrom (the path kept for tables with other column types) and compares what PostgreSQL stored, value
// by value: nulls, NaN, booleans, timestamps, non-ASCII text, extreme integers.
func TestPGBinaryCopyMatchesPgx(t *testing.T) {
	pg := slipwaytest.StartPostgres(t)
	dsn := pg.CreateDatabase(t, "copytest")
	conns, err := parseConnections([]string{"pg=" + dsn})
	if err != nil {
		t.Fatal(err)
	}
	conn := conns["pg"]
	defer conn.Close()
	ctx := context.Background()

	tm := time.Date(2024, 2, 29, 23, 59, 58, 123456789, time.FixedZone("x", 3600))
	mk := func() *chunkOut {
		id := newColumn(kindInt, 4)
		id.i = append(id.i, 1, math.MaxInt64, math.MinInt64, 0)
		f := newColumn(kindFloat, 4)
		f.f = append(f.f, 0.1, math.NaN(), -math.MaxFloat64, math.Inf(1))
		s := newColumn(kindString, 4)
		s.s = append(s.s, "basic", "", "ünï €", "a\tb\nc\\d")
		s.null = []bool{false, true, false, false}
		b := newColumn(kindBool, 4)
		b.b = append(b.b, true, false, false, true)
		b.null = []bool{false, false, true, false}
		ts := newColumn(kindTime, 4)
		ts.t = append(ts.t, tm, time.Unix(0, 0), time.Date(1970, 1, 1, 0, 0, 0, 1000, time.UTC), time.Date(1999, 12, 31, 23, 59, 59, 999999000, time.UTC))
		in := newColumn(kindInt, 4)
		in.i = append(in.i, 7, 0, -3, 0)
		in.null = []bool{false, true, false, true}
		return &chunkOut{index: 0, rows: 4, cols: []*column{id, f, s, b, ts, in}, scoredAt: tm}
	}
	cols := []outCol{{"id", kindInt}, {"score", kindFloat}, {"cat", kindString}, {"flag", kindBool}, {"at", kindTime}, {"n", kindInt}}

	read := func(table string) string {
		db, err := sql.Open("pgx", dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		rows, err := db.Query(`SELECT id::text, score::text, cat, flag::text, at::text, n::text, model, model_version::text, batch_id, scored_at::text FROM ` + table + ` ORDER BY id`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			v := make([]sql.NullString, 10)
			ptrs := make([]any, len(v))
			for i := range v {
				ptrs[i] = &v[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			out = append(out, fmt.Sprint(v))
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return strings.Join(out, "\n")
	}
	write := func(table string, wantBinary bool) string {
		tn, err := parseTable(DriverPostgres, table)
		if err != nil {
			t.Fatal(err)
		}
		s, err := newSQLSink(conn, tn, "b-test", "churn", 3, false)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.prepare(ctx, cols); err != nil {
			t.Fatal(err)
		}
		// Both tables share slipway_batch_checkpoints: a second (batch_id, chunk 0) would be refused as a
		// duplicate, so the second write clears the first checkpoint.
		pg.Psql(t, "copytest", `DELETE FROM slipway_batch_checkpoints`)
		if s.binary != wantBinary {
			t.Fatalf("%s: binary = %v, want %v", table, s.binary, wantBinary)
		}
		if err := s.write(ctx, mk()); err != nil {
			t.Fatal(err)
		}
		return read(table)
	}

	binary := write("bin", true)
	if !strings.Contains(binary, "ünï €") || strings.Count(binary, "{churn true}") != 4 {
		t.Fatalf("binary COPY stored:\n%s", binary)
	}
	// A table created beforehand with the same types but one column typed differently takes the pgx path;
	// a second table with the canonical types written by pgx is the reference.
	pg.Psql(t, "copytest", `CREATE TABLE viapgx (id BIGINT, score DOUBLE PRECISION, cat TEXT, flag BOOLEAN, at TIMESTAMPTZ, n NUMERIC, model TEXT, model_version BIGINT, batch_id TEXT, scored_at TIMESTAMPTZ)`)
	if got := write("viapgx", false); got != binary {
		t.Fatalf("binary COPY and pgx disagree:\nbinary:\n%s\npgx:\n%s", binary, got)
	}
}
