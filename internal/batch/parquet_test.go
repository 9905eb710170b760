package batch

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
)

// TestParquetColumnReader reads a file with several row groups, small pages, dictionary-encoded text,
// optional columns with nulls and a timestamp through the column-wise reader, in chunks that straddle
// pages and row groups, and checks every value against what was written.
func TestParquetColumnReader(t *testing.T) {
	type row struct {
		ID   int64      `parquet:"id"`
		X    *float64   `parquet:"x,optional"`
		N    *int32     `parquet:"n,optional"`
		Cat  *string    `parquet:"cat,optional,dict"`
		At   time.Time  `parquet:"at,timestamp(microsecond)"`
		Flag bool       `parquet:"flag"`
		Skip string     `parquet:"skip"` // not selected
		Opt  *time.Time `parquet:"opt,optional,timestamp(millisecond)"`
	}
	const total = 2500
	cats := []string{"basic", "pro", "enterprise", "ünï"}
	base := time.Date(2024, 1, 2, 3, 4, 5, 6000, time.UTC)
	var rows []row
	for i := range total {
		r := row{ID: int64(i), At: base.Add(time.Duration(i) * time.Second), Flag: i%3 == 0, Skip: fmt.Sprint(i)}
		if i%7 != 0 {
			x := float64(i) / 4
			r.X = &x
		}
		if i%5 != 0 {
			n := int32(-i)
			r.N = &n
		}
		if i%11 != 0 {
			r.Cat = &cats[i%len(cats)]
		}
		if i%2 == 0 {
			o := base.Add(time.Duration(i) * time.Millisecond)
			r.Opt = &o
		}
		rows = append(rows, r)
	}
	path := filepath.Join(t.TempDir(), "in.parquet")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := parquet.NewGenericWriter[row](f, parquet.MaxRowsPerRowGroup(900), parquet.PageBufferSize(512), parquet.Compression(&parquet.Snappy))
	if _, err := w.Write(rows); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()

	in, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	src, err := newParquetSource(in)
	if err != nil {
		t.Fatal(err)
	}
	defer src.close()
	if n := len(src.pf.RowGroups()); n < 3 {
		t.Fatalf("%d row groups, want several", n)
	}
	idx := map[string]int{}
	for i, c := range src.columns() {
		idx[c.name] = i
	}
	// x read as float, n as float (an INT32 feeding a float64 feature), n again as int, cat as string.
	sel := []selected{{idx["id"], "id", kindInt}, {idx["x"], "x", kindFloat}, {idx["n"], "n", kindFloat},
		{idx["n"], "n_int", kindInt}, {idx["cat"], "cat", kindString}, {idx["at"], "at", kindTime},
		{idx["flag"], "flag", kindBool}, {idx["opt"], "opt", kindTime}}
	ctx := context.Background()
	if err := src.start(ctx, sel); err != nil {
		t.Fatal(err)
	}
	seen := 0
	for chunkN := 0; ; chunkN++ {
		c, err := src.next(ctx, 333)
		if err != nil {
			t.Fatal(err)
		}
		if c == nil {
			break
		}
		if c.index != chunkN || c.start != int64(seen) || len(c.bad) != 0 {
			t.Fatalf("chunk %d: index %d start %d bad %v", chunkN, c.index, c.start, c.bad)
		}
		for r := range c.n {
			i := seen + r
			want := rows[i]
			id, x, nf, ni, cat, at, flag, opt := c.cols[0], c.cols[1], c.cols[2], c.cols[3], c.cols[4], c.cols[5], c.cols[6], c.cols[7]
			if id.i[r] != want.ID || at.t[r] != want.At || flag.b[r] != want.Flag {
				t.Fatalf("row %d: id %d at %v flag %v, want %+v", i, id.i[r], at.t[r], flag.b[r], want)
			}
			if (want.X == nil) != math.IsNaN(x.f[r]) || want.X != nil && x.f[r] != *want.X {
				t.Fatalf("row %d: x = %v, want %v", i, x.f[r], want.X)
			}
			if want.N == nil {
				if !nf.isNull(r) || !ni.isNull(r) || !math.IsNaN(nf.f[r]) {
					t.Fatalf("row %d: n should be missing: %v %v", i, nf.f[r], ni.i[r])
				}
			} else if nf.f[r] != float64(*want.N) || ni.i[r] != int64(*want.N) || ni.isNull(r) {
				t.Fatalf("row %d: n = %v / %v, want %d", i, nf.f[r], ni.i[r], *want.N)
			}
			if want.Cat == nil && !cat.isNull(r) || want.Cat != nil && (cat.isNull(r) || cat.s[r] != *want.Cat) {
				t.Fatalf("row %d: cat = %q (null %v), want %v", i, cat.s[r], cat.isNull(r), want.Cat)
			}
			if want.Opt == nil && !opt.isNull(r) || want.Opt != nil && !opt.t[r].Equal(want.Opt.Truncate(time.Millisecond)) {
				t.Fatalf("row %d: opt = %v, want %v", i, opt.t[r], want.Opt)
			}
		}
		seen += c.n
	}
	if seen != total {
		t.Fatalf("read %d rows, want %d", seen, total)
	}
}
