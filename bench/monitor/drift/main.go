// Command drift is the Go side of the drift benchmark (bench/monitor/run.sh): it reads the data drift.py wrote,
// profiles each reference as a baseline, then times Slipway's drift engine over the current sample fed as captured
// batches, reports the time and memory next to numpy/scipy's, and checks that every statistic agrees.
//
//	go run ./bench/monitor/drift -dir DIR -python-results results.jsonl [-batch 10000]
package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"time"

	"github.com/slipway-ml/slipway/internal/monitor"
	"github.com/slipway-ml/slipway/internal/stats"
	"github.com/slipway-ml/slipway/internal/workerproto"
)

type pyResult struct {
	RefRows  int     `json:"ref_rows"`
	Rows     int     `json:"rows"`
	Features int     `json:"features"`
	Seconds  float64 `json:"seconds"`
	Results  []struct {
		Statistic float64  `json:"statistic"`
		PValue    *float64 `json:"p_value"`
		PSI       float64  `json:"psi"`
	} `json:"results"`
}

func readF64(path string) ([]float64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := make([]float64, len(b)/8)
	for i := range out {
		out[i] = math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
	}
	return out, nil
}

func main() {
	dir := flag.String("dir", "", "folder with cur.f64 and ref-N.f64")
	pyPath := flag.String("python-results", "", "drift.py's output (one JSON object per reference size)")
	batch := flag.Int("batch", 10000, "rows per captured batch fed to the engine")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile")
	flag.Parse()
	if *cpuprofile != "" {
		pf, err := os.Create(*cpuprofile)
		if err != nil {
			fail(err)
		}
		if err := pprof.StartCPUProfile(pf); err != nil {
			fail(err)
		}
		defer pprof.StopCPUProfile()
	}
	f, err := os.Open(*pyPath)
	if err != nil {
		fail(err)
	}
	var pys []pyResult
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		var r pyResult
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			fail(err)
		}
		pys = append(pys, r)
	}
	cur, err := readF64(*dir + "/cur.f64")
	if err != nil {
		fail(err)
	}
	ok := true
	for _, py := range pys {
		ok = run(*dir, py, cur, *batch) && ok
	}
	pprof.StopCPUProfile()
	if !ok {
		os.Exit(1)
	}
}

func run(dir string, py pyResult, cur []float64, batch int) bool {
	nf, rows := py.Features, py.Rows
	ncat := 5
	ref, err := readF64(fmt.Sprintf("%s/ref-%d.f64", dir, py.RefRows))
	if err != nil {
		fail(err)
	}
	names := make([]string, nf)
	kinds := make([]string, nf)
	for i := range names {
		names[i] = fmt.Sprintf("f%02d", i)
		kinds[i] = stats.Numeric
		if i >= nf-ncat {
			kinds[i] = stats.Categorical
		}
	}
	// The baseline: profiled once, at upload.
	t0 := time.Now()
	pb := stats.NewProfileBuilder(names, kinds)
	nref := py.RefRows
	for r := range nref {
		pb.AddRow()
		for i := range nf {
			v := ref[i*nref+r]
			if kinds[i] == stats.Categorical {
				pb.AddString(i, strconv.FormatFloat(v, 'g', -1, 64))
			} else {
				pb.AddNumber(i, v)
			}
		}
	}
	profile := pb.Profile()
	profileSecs := time.Since(t0).Seconds()
	// Captured batches: what the capture store holds (numbers as FP64 tensors, categories as BYTES).
	var frames [][]byte
	for start := 0; start < rows; start += batch {
		n := min(batch, rows-start)
		ts := make([]workerproto.Tensor, nf)
		for i := range nf {
			col := cur[i*rows+start : i*rows+start+n]
			if kinds[i] == stats.Categorical {
				ss := make([]string, n)
				for j, v := range col {
					ss[j] = strconv.FormatFloat(v, 'g', -1, 64)
				}
				ts[i] = workerproto.NewBytes(names[i], nil, ss)
			} else {
				ts[i] = workerproto.NewFloat64(names[i], nil, col)
			}
		}
		frames = append(frames, workerproto.EncodeTensors(nil, ts))
	}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	t1 := time.Now()
	eng, err := monitor.NewDriftEngine(profile, names, nil, nil)
	if err != nil {
		fail(err)
	}
	for _, fr := range frames {
		if err := eng.AddFrame(fr); err != nil {
			fail(err)
		}
	}
	res := eng.Results()
	secs := time.Since(t1).Seconds()
	runtime.ReadMemStats(&after)
	runtime.GC()
	var live runtime.MemStats
	runtime.ReadMemStats(&live)
	retained := float64(live.HeapAlloc-min(live.HeapAlloc, before.HeapAlloc)) / 1e6
	runtime.KeepAlive(eng)
	runtime.KeepAlive(frames)
	fmt.Printf("reference %d rows, current %d rows x %d features (%d batches of %d rows)\n", nref, rows, nf, len(frames), batch)
	fmt.Printf("  numpy/scipy: %.3f s\n  slipway:     %.3f s (%.1fx faster); memory held by the engine after the scan %.1f MB (%.1f MB allocated in total, short-lived); baseline profile %.3f s\n",
		py.Seconds, secs, py.Seconds/secs, retained, float64(after.TotalAlloc-before.TotalAlloc)/1e6, profileSecs)
	ok := true
	for i, r := range res {
		want := py.Results[i]
		stat := value(r.Statistic)
		// Exact statistics agree within 1e-6. A reference with more than stats.DefaultMaxPoints distinct values is
		// kept as a compressed summary, and a window beyond stats.ExactLimit values is streamed: the distance and
		// the decile PSI are then approximations, checked to 1e-3 in absolute terms (thresholds are 0.1).
		mark := "ok"
		bad := false
		if r.Exact {
			bad = !close(stat, want.Statistic, 1e-6) || !close(value(r.PSI), want.PSI, 1e-6)
		} else {
			mark = "ok (summary, within 1e-3)"
			bad = math.Abs(stat-want.Statistic) > 1e-3 || math.Abs(value(r.PSI)-want.PSI) > 1e-3
		}
		if want.PValue != nil && !close(value(r.PValue), *want.PValue, 1e-6) {
			bad = true
		}
		if bad {
			mark, ok = "MISMATCH", false
		}
		p := "-"
		if r.PValue != nil {
			p = fmt.Sprintf("%.6g (scipy %.6g)", *r.PValue, *want.PValue)
		}
		fmt.Printf("    %s %-13s statistic %.8g (scipy %.8g) p %s psi %.6g (numpy %.6g) drifted=%v %s\n",
			r.Feature, r.Method, stat, want.Statistic, p, value(r.PSI), want.PSI, r.Drifted, mark)
	}
	return ok
}

func value(p *float64) float64 {
	if p == nil {
		return math.NaN()
	}
	return *p
}

func close(a, b, tol float64) bool {
	return math.Abs(a-b) <= tol*math.Max(1, math.Abs(b))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "drift:", err)
	os.Exit(1)
}
