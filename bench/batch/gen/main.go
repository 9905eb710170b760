// Command gen writes the batch benchmark's input: N rows resampled (fixed seed) from examples/data/churn.csv,
// with fresh customer ids 1..N, as the same data in Parquet (Slipway's input) and CSV (the pandas baseline's:
// Debian has no pyarrow).
//
//	go run ./bench/batch/gen -rows 1000000 -out DIR
package main

import (
	"bufio"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"

	"github.com/parquet-go/parquet-go"
)

type customer struct {
	CustomerID     int64   `parquet:"customer_id"`
	Age            float64 `parquet:"age"`
	TenureMonths   float64 `parquet:"tenure_months"`
	MonthlyCharges float64 `parquet:"monthly_charges"`
	Plan           string  `parquet:"plan,dict"`
	SupportCalls   float64 `parquet:"support_calls"`
}

func main() {
	rows := flag.Int("rows", 1_000_000, "rows to write")
	src := flag.String("src", "examples/data/churn.csv", "data set to resample")
	out := flag.String("out", ".", "folder for customers.parquet and customers.csv")
	flag.Parse()
	if err := run(*rows, *src, *out); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func run(n int, src, out string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	recs, err := csv.NewReader(f).ReadAll()
	_ = f.Close() // read only: its close loses nothing
	if err != nil {
		return err
	}
	base := make([]customer, 0, len(recs)-1)
	for _, r := range recs[1:] {
		num := func(i int) float64 { v, _ := strconv.ParseFloat(r[i], 64); return v }
		base = append(base, customer{Age: num(1), TenureMonths: num(2), MonthlyCharges: num(3), Plan: r[4], SupportCalls: num(5)})
	}
	rng := rand.New(rand.NewPCG(1, 2))
	pf, err := os.Create(filepath.Join(out, "customers.parquet"))
	if err != nil {
		return err
	}
	defer pf.Close()
	cf, err := os.Create(filepath.Join(out, "customers.csv"))
	if err != nil {
		return err
	}
	defer cf.Close()
	bw := bufio.NewWriterSize(cf, 1<<20)
	cw := csv.NewWriter(bw)
	// A csv.Writer's errors are sticky: cw.Error() below reports the first one.
	_ = cw.Write([]string{"customer_id", "age", "tenure_months", "monthly_charges", "plan", "support_calls"})
	pw := parquet.NewGenericWriter[customer](pf, parquet.Compression(&parquet.Snappy))
	batch := make([]customer, 0, 8192)
	g := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	for i := range n {
		c := base[rng.IntN(len(base))]
		c.CustomerID = int64(i + 1)
		batch = append(batch, c)
		_ = cw.Write([]string{strconv.FormatInt(c.CustomerID, 10), g(c.Age), g(c.TenureMonths), g(c.MonthlyCharges), c.Plan, g(c.SupportCalls)})
		if len(batch) == cap(batch) || i == n-1 {
			if _, err := pw.Write(batch); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	if err := pw.Close(); err != nil {
		return err
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	// The deferred closes only cover the early returns: a file written whole is closed here, where an error
	// (the last of the data not reaching the disk) still fails the run.
	return errors.Join(pf.Close(), cf.Close())
}
