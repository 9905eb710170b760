// Command report turns the JSON lines written by bench/loadgen (one per measured cell, with -meta target=…
// and -meta rows=…) and by bench/run.sh (one {"meta":{"target":…},"skipped":…} per target that could not run)
// into the Markdown table and the ratios of the serving benchmark. It never fails on a missed target: the
// verdicts are information.
//
// Cells with -meta round=K are interleaved rounds: the two sides of a ratio measured one after the other,
// K = 1, 2, …, on a shared machine whose speed drifts by ±15% over minutes. A ratio with rounds on both sides
// is the median of the per-round ratios; the grid's single pair of cells, minutes apart, is in its note.
//
//	report -in bench/results/RUN.jsonl
package main

import (
	"bufio"
	"cmp"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Record is one line of the results file.
type Record struct {
	Label       string            `json:"label"`
	Meta        map[string]string `json:"meta"`
	Skipped     string            `json:"skipped"`
	Concurrency int               `json:"c"`
	DurationS   float64           `json:"duration_s"`
	OK          uint64            `json:"ok"`
	Errors      uint64            `json:"errors"`
	FirstError  string            `json:"first_error"`
	RPS         float64           `json:"rps"`
	P50MS       float64           `json:"p50_ms"`
	P90MS       float64           `json:"p90_ms"`
	P99MS       float64           `json:"p99_ms"`
	MaxMS       float64           `json:"max_ms"`
	Conns       uint64            `json:"conns"`
	CPU         *struct {
		Loadgen float64 `json:"loadgen"`
		Target  float64 `json:"target"`
		Other   float64 `json:"other"`
	} `json:"cpu"`
}

func (r *Record) target() string { return r.Meta["target"] }
func (r *Record) rows() int      { n, _ := strconv.Atoi(r.Meta["rows"]); return n }
func (r *Record) round() int     { n, _ := strconv.Atoi(r.Meta["round"]); return n }

// BusyThreshold is the share of the machine's CPU (%) used by other processes during a window above which the
// cell is flagged as measured on a busy machine.
const BusyThreshold = 10

func (r *Record) busy() bool { return r.CPU != nil && r.CPU.Other > BusyThreshold }

// Ratio is one headline comparison: req/s of Num over req/s of Den at the same rows and concurrency.
type Ratio struct {
	Name     string
	Num, Den string
	Rows, C  int
	Target   float64
}

// Ratios are the benchmark's goals (see bench/README.md).
var Ratios = []Ratio{
	{Name: "Slipway ONNX / Go net/http ceiling", Num: "slipway-onnx", Den: "ceiling", Rows: 1, C: 32, Target: 0.6},
	{Name: "Slipway ONNX, adaptive batching / ceiling", Num: "slipway-onnx-batch", Den: "ceiling", Rows: 1, C: 32, Target: 0.6},
	{Name: "Slipway ONNX in-process / ceiling", Num: "slipway-onnx-inproc", Den: "ceiling", Rows: 1, C: 32, Target: 0.6},
	{Name: "Slipway ONNX in-process, adaptive batching / ceiling", Num: "slipway-onnx-inproc-batch", Den: "ceiling", Rows: 1, C: 32, Target: 0.85},
	{Name: "Slipway Python / Flask+gunicorn", Num: "slipway-python", Den: "flask-gunicorn", Rows: 1, C: 32, Target: 2},
	{Name: "Slipway Python / Flask+gunicorn", Num: "slipway-python", Den: "flask-gunicorn", Rows: 100, C: 32, Target: 2},
	{Name: "Slipway Python, adaptive batching / Flask+gunicorn", Num: "slipway-python-batch", Den: "flask-gunicorn", Rows: 1, C: 32, Target: 2},
	{Name: "Slipway Python, adaptive batching / Flask+gunicorn", Num: "slipway-python-batch", Den: "flask-gunicorn", Rows: 100, C: 32, Target: 2},
	{Name: "Slipway Python fast path / FastAPI+uvicorn (30 floats, numpy in)", Num: "slipway-pywide", Den: "fastapi-uvicorn", Rows: 1, C: 32, Target: 1.5},
	{Name: "Slipway Python fast path, adaptive batching / FastAPI+uvicorn", Num: "slipway-pywide-batch", Den: "fastapi-uvicorn", Rows: 1, C: 32, Target: 3},
	{Name: "Batching on / off (RandomForest)", Num: "slipway-forest-batch", Den: "slipway-forest-nobatch", Rows: 1, C: 32, Target: 4},
}

// Read parses a results file; blank lines are ignored.
func Read(r io.Reader) ([]*Record, error) {
	var out []*Record
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		rec := &Record{}
		if err := json.Unmarshal([]byte(line), rec); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if rec.target() == "" {
			return nil, fmt.Errorf("line %d: no meta.target", n)
		}
		out = append(out, rec)
	}
	return out, sc.Err()
}

// find returns the last measured grid cell of target at rows and c (a re-run replaces an earlier one).
func find(recs []*Record, target string, rows, c int) *Record {
	for i := len(recs) - 1; i >= 0; i-- {
		r := recs[i]
		if r.Skipped == "" && r.round() == 0 && r.target() == target && r.rows() == rows && r.Concurrency == c {
			return r
		}
	}
	return nil
}

func skipped(recs []*Record, target string) string {
	for _, r := range recs {
		if r.Skipped != "" && r.target() == target {
			return r.Skipped
		}
	}
	return ""
}

// fmtNum formats a number for the tables.
func fmtNum(v float64) string {
	switch {
	case v >= 1000:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

func escape(s string) string { return strings.ReplaceAll(strings.ReplaceAll(s, "|", `\|`), "\n", " ") }

// Write renders the table and the ratios.
func Write(w io.Writer, recs []*Record) {
	var order []string
	for _, r := range recs {
		if !slices.Contains(order, r.target()) {
			order = append(order, r.target())
		}
	}
	fmt.Fprintln(w, "| target | rows | c | req/s | p50 ms | p90 ms | p99 ms | max ms | errors | CPU % target / loadgen / other |")
	fmt.Fprintln(w, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	busy := 0
	for _, t := range order {
		var cells []*Record
		for _, r := range recs {
			if r.Skipped == "" && r.target() == t && find(recs, t, r.rows(), r.Concurrency) == r {
				cells = append(cells, r)
			}
		}
		slices.SortStableFunc(cells, func(a, b *Record) int {
			return cmp.Or(cmp.Compare(a.rows(), b.rows()), cmp.Compare(a.Concurrency, b.Concurrency))
		})
		for _, r := range cells {
			errs := strconv.FormatUint(r.Errors, 10)
			if r.Errors > 0 {
				errs = "**" + errs + "**"
			}
			bg := "?"
			if r.CPU != nil {
				bg = fmt.Sprintf("%.0f / %.0f / %.0f", r.CPU.Target, r.CPU.Loadgen, r.CPU.Other)
				if r.busy() {
					bg = "**" + bg + "**"
					busy++
				}
			}
			fmt.Fprintf(w, "| %s | %d | %d | %s | %s | %s | %s | %s | %s | %s |\n", t, r.rows(), r.Concurrency,
				fmtNum(r.RPS), fmtNum(r.P50MS), fmtNum(r.P90MS), fmtNum(r.P99MS), fmtNum(r.MaxMS), errs, bg)
		}
		if why := skipped(recs, t); why != "" && len(cells) == 0 {
			fmt.Fprintf(w, "| %s | | | not run: %s | | | | | | |\n", t, escape(why))
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "CPU: share of the whole machine (all CPUs) used during the measured window by the target's processes, by the load generator, and by everything else.")
	if busy > 0 {
		fmt.Fprintf(w, "**%d cell(s) measured on a busy machine (other > %d%%)**: their figures, and the ratios using them, are unreliable.\n",
			busy, BusyThreshold)
	}

	fmt.Fprintln(w)
	fmt.Fprintln(w, "| ratio (req/s) | rows | c | measured | target | verdict | note |")
	fmt.Fprintln(w, "|---|--:|--:|--:|--:|---|---|")
	for _, q := range Ratios {
		measured, verdict, note := Evaluate(recs, q)
		fmt.Fprintf(w, "| %s | %d | %d | %s | ≥ %g | %s | %s |\n", q.Name, q.Rows, q.C, measured, q.Target, verdict, escape(note))
	}

	writeRounds(w, recs)

	var errNotes []string
	for _, r := range recs {
		if r.Skipped == "" && r.Errors > 0 && (r.round() > 0 || find(recs, r.target(), r.rows(), r.Concurrency) == r) {
			errNotes = append(errNotes, fmt.Sprintf("- %s rows=%d c=%d: %d errors, first: %s", r.target(), r.rows(),
				r.Concurrency, r.Errors, escape(r.FirstError)))
		}
	}
	if len(errNotes) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Errors:")
		fmt.Fprintln(w)
		fmt.Fprintln(w, strings.Join(errNotes, "\n"))
	}
}

// writeRounds lists the interleaved rounds, one row per round and target.
func writeRounds(w io.Writer, recs []*Record) {
	var rs []*Record
	for _, r := range recs {
		if r.Skipped == "" && r.round() > 0 {
			rs = append(rs, r)
		}
	}
	if len(rs) == 0 {
		return
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Interleaved rounds (each target in turn, round after round, so that all sides of a ratio share the machine's drift):")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| round | target | rows | c | req/s | p50 ms | p99 ms | errors | CPU % target / loadgen / other |")
	fmt.Fprintln(w, "|--:|---|--:|--:|--:|--:|--:|--:|--:|")
	for _, r := range rs {
		bg := "?"
		if r.CPU != nil {
			bg = fmt.Sprintf("%.0f / %.0f / %.0f", r.CPU.Target, r.CPU.Loadgen, r.CPU.Other)
		}
		fmt.Fprintf(w, "| %d | %s | %d | %d | %s | %s | %s | %d | %s |\n", r.round(), r.target(), r.rows(), r.Concurrency,
			fmtNum(r.RPS), fmtNum(r.P50MS), fmtNum(r.P99MS), r.Errors, bg)
	}
}

// rounds returns the interleaved rounds of target at rows and c, by round number.
func rounds(recs []*Record, target string, rows, c int) map[int]*Record {
	out := map[int]*Record{}
	for _, r := range recs {
		if r.Skipped == "" && r.round() > 0 && r.target() == target && r.rows() == rows && r.Concurrency == c {
			out[r.round()] = r
		}
	}
	return out
}

// RoundRatios are the per-round ratios of q, in round order, for the rounds measured on both sides.
func RoundRatios(recs []*Record, q Ratio) []float64 {
	num, den := rounds(recs, q.Num, q.Rows, q.C), rounds(recs, q.Den, q.Rows, q.C)
	var ks []int
	for k := range num {
		if d, ok := den[k]; ok && d.RPS > 0 {
			ks = append(ks, k)
		}
	}
	slices.Sort(ks)
	out := make([]float64, len(ks))
	for i, k := range ks {
		out[i] = num[k].RPS / den[k].RPS
	}
	return out
}

// median of a non-empty slice.
func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// Evaluate computes one ratio: the formatted value, PASS/MISS (or n/a when a side was not measured) and a note.
// With interleaved rounds the ratio is their median; otherwise it is the grid cells'.
func Evaluate(recs []*Record, q Ratio) (measured, verdict, note string) {
	if rs := RoundRatios(recs, q); len(rs) > 0 {
		m := median(rs)
		parts := make([]string, len(rs))
		for i, r := range rs {
			parts[i] = fmt.Sprintf("%.2f", r)
		}
		verdict = "MISS"
		if m >= q.Target {
			verdict = "PASS"
		}
		note = fmt.Sprintf("median of %d interleaved rounds (%s)", len(rs), strings.Join(parts, ", "))
		if _, _, grid := evaluateGrid(recs, q); grid != "" {
			note += "; grid cells: " + grid
		}
		return fmt.Sprintf("%.2f×", m), verdict, note
	}
	return evaluateGrid(recs, q)
}

func evaluateGrid(recs []*Record, q Ratio) (measured, verdict, note string) {
	num, den := find(recs, q.Num, q.Rows, q.C), find(recs, q.Den, q.Rows, q.C)
	var missing []string
	for _, side := range []struct {
		name string
		rec  *Record
	}{{q.Num, num}, {q.Den, den}} {
		if side.rec == nil {
			why := skipped(recs, side.name)
			if why == "" {
				why = "not measured"
			}
			missing = append(missing, side.name+": "+why)
		}
	}
	if len(missing) > 0 {
		return "–", "n/a", strings.Join(missing, "; ")
	}
	if den.RPS == 0 {
		return "–", "n/a", q.Den + " served no successful request"
	}
	r := num.RPS / den.RPS
	verdict = "MISS"
	if r >= q.Target {
		verdict = "PASS"
	}
	note = fmt.Sprintf("%s vs %s req/s (%.2f×); p99 %s vs %s ms", fmtNum(num.RPS), fmtNum(den.RPS), r, fmtNum(num.P99MS), fmtNum(den.P99MS))
	if num.busy() || den.busy() {
		note += "; measured on a busy machine"
	}
	if num.Errors > 0 || den.Errors > 0 {
		note += fmt.Sprintf("; ERRORS (%d vs %d): the ratio is not trustworthy", num.Errors, den.Errors)
	}
	return fmt.Sprintf("%.2f×", r), verdict, note
}

func main() {
	in := flag.String("in", "", "results file (JSON lines); default stdin")
	flag.Parse()
	var r io.Reader = os.Stdin
	if *in != "" {
		f, err := os.Open(*in)
		if err != nil {
			fmt.Fprintln(os.Stderr, "report:", err)
			os.Exit(1)
		}
		defer f.Close()
		r = f
	}
	recs, err := Read(r)
	if err == nil && len(recs) == 0 {
		err = errors.New("no results")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
	Write(os.Stdout, recs)
}
