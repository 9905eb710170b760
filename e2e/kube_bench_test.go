package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/slipwaytest"
)

// TestBenchKube is `make bench-kube` (docs/benchmarks.md, "Kubernetes engine"): prediction throughput and
// p99 at c=32, 1 row per request, of the ONNX and the Python example on Kubernetes pods (2 replicas, reached
// over TCP) against the local engine (2 replica processes over pipes), as ratios within one run (rounds
// interleaved, the median of the per-round ratios reported); the time from deploy to ACTIVE on 2 pods; and
// the time from a kill -9 of a replica's worker process to its restarted worker serving again. It runs only
// when SLIPWAY_BENCH_KUBE is set: it measures and asserts nothing about speed. Written to
// bench/results/kube-<UTC>.md.
func TestBenchKube(t *testing.T) {
	if os.Getenv("SLIPWAY_BENCH_KUBE") == "" {
		t.Skip("a benchmark: make bench-kube")
	}
	rounds, warmup, dur, conc := 3, 2*time.Second, 10*time.Second, 32
	// Each deployment, on both engines, gets resources.cpu (SLIPWAY_BENCH_KUBE_CPU, default 0.5: the 4 pods
	// of the two deployments must fit the node's 2 cores, as requests equal limits). Without it a pod is
	// BestEffort, and the kubelet gives its container cgroup cpu.shares 2 (against 1024 for the server and the
	// local replicas): on a busy node it starves. The local replicas get the same CPU (a cgroup quota where the
	// hierarchy is writable).
	cpu := os.Getenv("SLIPWAY_BENCH_KUBE_CPU")
	if cpu == "" {
		cpu = "0.5"
	}
	resources := []string{}
	if cpu != "0" {
		resources = []string{"--cpu", cpu}
	}
	k := slipwaytest.StartKubernetes(t, binary)
	cs := kubeClient(t, k)
	kube := startKubeServer(t, k, "", "--replica-network", "host")
	local := startServer(t, "")
	pushExamples(t, kube)
	pushExamples(t, local)
	cols, rows := churnRows(t, 1)
	cases := []struct {
		rt, model string
		body      []byte
	}{
		{"onnx", "churn-onnx:1", onnxBody(t)},
		{"python", "churn:1", mustJSON(map[string]any{"dataframe_split": map[string]any{"columns": cols, "data": rows}})},
	}
	toActive := map[string]time.Duration{}
	for _, c := range cases {
		deploy(t, local, append([]string{c.rt, "--model", c.model, "--replicas", "2"}, resources...)...)
		began := time.Now()
		deploy(t, kube, append([]string{c.rt, "--model", c.model, "--replicas", "2", "--no-wait"}, resources...)...)
		waitFor(t, c.rt+" ACTIVE on 2 pods", 10*time.Minute, func() bool { return connected(kube, c.rt, 2) })
		toActive[c.rt] = time.Since(began)
		t.Logf("%s: deploy to ACTIVE on 2 pods: %s", c.rt, toActive[c.rt].Round(time.Millisecond))
	}

	loadBefore := loadAverage()
	res := map[string][]benchCell{} // "onnx-local", "onnx-kube", ...
	for round := range rounds {
		for _, c := range cases {
			for _, side := range []struct {
				name string
				s    *server
			}{{"local", local}, {"kube", kube}} {
				path := "/deployments/" + c.rt + "/invocations"
				latencyLoop(side.s, path, c.body, conc, warmup)
				rps, p99, failed := latencyLoop(side.s, path, c.body, conc, dur)
				if failed > 0 {
					t.Errorf("%s on %s: %d requests failed", c.rt, side.name, failed)
				}
				res[c.rt+"-"+side.name] = append(res[c.rt+"-"+side.name], benchCell{rps, p99})
				t.Logf("round %d %s %s: %.0f req/s, p99 %.1f ms", round+1, c.rt, side.name, rps, p99)
			}
		}
	}

	// kill -9 of one worker process (the kubelet restarts its container): to the restarted worker serving.
	restart := map[string]time.Duration{}
	for _, c := range cases {
		_, pods := replicaObjects(t, cs, c.rt)
		victim := pods[0].Name
		d, err := kube.Client().GetDeployment(context.Background(), c.rt)
		if err != nil {
			t.Fatal(err)
		}
		var before []string
		for _, r := range d.RemoteReplicas {
			before = append(before, r.ID)
		}
		killed := time.Now()
		if err := syscall.Kill(workerPID(t, victim), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitFor(t, c.rt+": the killed pod's restarted worker serving", 5*time.Minute, func() bool {
			d, err := kube.Client().GetDeployment(context.Background(), c.rt)
			if err != nil || !connected(kube, c.rt, 2) {
				return false
			}
			return slices.ContainsFunc(d.RemoteReplicas, func(r slipway.RemoteReplica) bool {
				return r.Pod == victim && !slices.Contains(before, r.ID)
			})
		})
		restart[c.rt] = time.Since(killed)
		if st := send(kube, "POST", "/deployments/"+c.rt+"/invocations", c.body); st != 200 {
			t.Errorf("%s after the restart: status %d", c.rt, st)
		}
		t.Logf("%s: kill -9 of a worker to its restarted worker serving: %s", c.rt, restart[c.rt].Round(time.Millisecond))
	}

	var out strings.Builder
	fmt.Fprintf(&out, "Kubernetes pods vs local processes: c=%d, 1 row, %d interleaved rounds of %s warm-up + %s; 2 replicas each, resources.cpu %s; "+
		"pods on the single-node cluster of scripts/k8s-dev.sh (host network, worker over loopback TCP); %d CPUs, load average %s before, %s after.\n\n",
		conc, rounds, warmup, dur, cpu, runtime.NumCPU(), loadBefore, loadAverage())
	out.WriteString("| runtime | local req/s | kubernetes req/s | kubernetes/local throughput (median of rounds) | local p99 ms | kubernetes p99 ms | p99 kubernetes/local | deploy → ACTIVE (2 pods) | kill -9 → serving |\n")
	out.WriteString("|---|---|---|---|---|---|---|---|---|\n")
	for _, c := range cases {
		l, kb := res[c.rt+"-local"], res[c.rt+"-kube"]
		var ratios, p99r []float64
		for i := range l {
			ratios = append(ratios, kb[i].rps/l[i].rps)
			p99r = append(p99r, kb[i].p99/l[i].p99)
		}
		verdict := "PASS"
		if median(ratios) < 0.8 {
			verdict = "MISS"
		}
		fmt.Fprintf(&out, "| %s | %.0f | %.0f | **%.2f×** %s (target ≥ 0.8×; rounds %s) | %.1f | %.1f | %.2f× | %.1f s | %.1f s |\n",
			c.rt, median(rpsOf(l)), median(rpsOf(kb)), median(ratios), verdict, fmtRatios(ratios),
			median(p99Of(l)), median(p99Of(kb)), median(p99r), toActive[c.rt].Seconds(), restart[c.rt].Seconds())
	}
	t.Log("\n" + out.String())
	dir := filepath.Join(repoDir, "bench", "results")
	if err := os.MkdirAll(dir, 0o755); err == nil {
		p := filepath.Join(dir, "kube-"+time.Now().UTC().Format("20060102T150405Z")+".md")
		if err := os.WriteFile(p, []byte(out.String()), 0o644); err == nil {
			t.Logf("written: %s", p)
		}
	}
}

// latencyLoop sends requests with conc workers back to back for d and returns the answered requests per
// second, the 99th percentile latency of all requests in ms, and the count of those not answered 200.
func latencyLoop(s *server, path string, body []byte, conc int, d time.Duration) (rps, p99 float64, failed int) {
	var mu sync.Mutex
	var lat []time.Duration
	ok := 0
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			good, bad := 0, 0
			for time.Now().Before(deadline) {
				t0 := time.Now()
				st := send(s, "POST", path, body)
				mine = append(mine, time.Since(t0))
				if st == 200 {
					good++
				} else {
					bad++
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			ok += good
			failed += bad
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(lat) == 0 {
		return 0, 0, failed
	}
	slices.Sort(lat)
	return float64(ok) / d.Seconds(), float64(lat[len(lat)*99/100]) / float64(time.Millisecond), failed
}

// benchCell is one measurement: answered requests per second and p99 latency in ms.
type benchCell struct{ rps, p99 float64 }

func rpsOf(c []benchCell) []float64 {
	var out []float64
	for _, x := range c {
		out = append(out, x.rps)
	}
	return out
}

func p99Of(c []benchCell) []float64 {
	var out []float64
	for _, x := range c {
		out = append(out, x.p99)
	}
	return out
}

func fmtRatios(v []float64) string {
	var s []string
	for _, r := range v {
		s = append(s, fmt.Sprintf("%.2f", r))
	}
	return strings.Join(s, ", ")
}
