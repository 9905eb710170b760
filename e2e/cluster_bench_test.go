package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/slipway-ml/slipway/internal/inference/inferencepb"
)

// TestBenchCluster is `make bench-cluster` (docs/benchmarks.md, "Several servers"): API and prediction
// throughput through 1 server and through 2 on this machine, and the time from kill -9 of a deployment's
// host to the first request answered through the other server. It runs only when SLIPWAY_BENCH_CLUSTER is
// set: it measures, it asserts nothing about speed. The figures are ratios within one run (rounds
// interleaved, the median ratio reported), written to bench/results/cluster-<UTC>.md.
func TestBenchCluster(t *testing.T) {
	if os.Getenv("SLIPWAY_BENCH_CLUSTER") == "" {
		t.Skip("a benchmark: make bench-cluster")
	}
	rounds, dur, workers := 3, 5*time.Second, 8
	a, b, _ := twoClusterMembers(t)
	pushExamples(t, a)
	deploy(t, a, "churn-a", "--model", "churn@champion") // hosted by A
	deploy(t, b, "churn-b", "--model", "churn@champion") // hosted by B
	deploy(t, a, "onnx-a", "--model", "churn-onnx:1")    // hosted by A: the gRPC figures
	body := sampleBody(t)
	grpcInfer := grpcInferTarget(t, "onnx-a")

	// A catalog read: answered by whichever server gets it (a deployment's GET is forwarded to its host).
	api := func(s *server) benchTarget { return benchTarget{s: s, method: "GET", path: "/api/v1/models/churn"} }
	predict := func(s *server, d string) benchTarget {
		return benchTarget{s: s, method: "POST", path: "/deployments/" + d + "/invocations", body: body}
	}
	cases := []struct {
		name    string
		targets []benchTarget
	}{
		{"api-1", []benchTarget{api(a)}},
		{"api-2", []benchTarget{api(a), api(b)}},
		{"predict-1", []benchTarget{predict(a, "churn-a")}},
		{"predict-2", []benchTarget{predict(a, "churn-a"), predict(b, "churn-b")}},
		{"predict-forwarded", []benchTarget{predict(b, "churn-a")}},
		{"grpc-direct", []benchTarget{grpcInfer(a)}},
		{"grpc-forwarded", []benchTarget{grpcInfer(b)}},
	}
	loadBefore := loadAverage()
	rates := map[string][]float64{}
	for round := range rounds {
		for _, c := range cases {
			ok, failed := closedLoop(c.targets, workers, dur)
			if failed > 0 {
				t.Errorf("%s: %d requests failed", c.name, failed)
			}
			rates[c.name] = append(rates[c.name], ok)
			t.Logf("round %d %s: %.0f req/s", round+1, c.name, ok)
		}
	}
	ratio := func(num, den string) float64 {
		r := make([]float64, rounds)
		for i := range rounds {
			r[i] = rates[num][i] / rates[den][i]
		}
		return median(r)
	}
	apiRatio, predictRatio, fwdRatio := ratio("api-2", "api-1"), ratio("predict-2", "predict-1"), ratio("predict-forwarded", "predict-1")
	grpcRatio := ratio("grpc-forwarded", "grpc-direct")

	// kill -9 of a host under load through the other server: the first answer after the kill.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var firstOK atomic.Int64 // unix nanos of the first 200 after the kill
	var killedAt atomic.Int64
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				status := send(b, "POST", "/deployments/churn-a/invocations", body)
				if k := killedAt.Load(); status == 200 && k != 0 && time.Now().UnixNano() > k {
					firstOK.CompareAndSwap(0, time.Now().UnixNano())
				}
				if status != 200 {
					time.Sleep(50 * time.Millisecond)
				}
			}
		}()
	}
	time.Sleep(time.Second)
	killedAt.Store(time.Now().UnixNano())
	a.Kill()
	waitFor(t, "the first answer after the kill", 2*time.Minute, func() bool { return firstOK.Load() != 0 })
	close(stop)
	wg.Wait()
	failover := time.Duration(firstOK.Load() - killedAt.Load())

	report := fmt.Sprintf(`# Several servers (make bench-cluster, %s)

Two servers on one PostgreSQL database and one versitygw bucket, on this machine; %d closed-loop workers, %d
rounds of %s per case, interleaved; the median ratio of the rounds. Load average (1 min) before the
rounds %s, after the kill %s (other processes share the machine: read the ratios, not the rates).

| figure | ratio | rounds (req/s) |
|---|---|---|
| API (GET a model), 2 servers / 1 | %.2f | 1: %s; 2: %s |
| predictions, 2 servers each hosting a deployment / 1 | %.2f | 1: %s; 2: %s |
| predictions forwarded (sent to the server not hosting) / direct | %.2f | %s |
| gRPC ModelInfer (ONNX) forwarded / direct | %.2f | direct: %s; forwarded: %s |

kill -9 of the host of a deployment under load through the other server → first answered request: %s
(lease TTL 15 s: %.2f × TTL).
`, time.Now().UTC().Format(time.RFC3339), workers, rounds, dur, loadBefore, loadAverage(), apiRatio, fmtRates(rates["api-1"]), fmtRates(rates["api-2"]),
		predictRatio, fmtRates(rates["predict-1"]), fmtRates(rates["predict-2"]), fwdRatio, fmtRates(rates["predict-forwarded"]),
		grpcRatio, fmtRates(rates["grpc-direct"]), fmtRates(rates["grpc-forwarded"]),
		failover.Round(100*time.Millisecond), failover.Seconds()/15)
	t.Log("\n" + report)
	dir := filepath.Join("..", "bench", "results")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "cluster-"+time.Now().UTC().Format("20060102T150405Z")+".md")
	if err := os.WriteFile(out, []byte(report), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("written to %s", out)
}

// benchTarget is where a worker of the benchmark sends its requests: an HTTP request, or call (a gRPC call,
// true when answered).
type benchTarget struct {
	s            *server
	method, path string
	body         []byte
	call         func() bool
}

// grpcInferTarget returns targets that send a gRPC ModelInfer of the ONNX example's rows for deployment to a
// server's gRPC address (one connection per server, closed with the test).
func grpcInferTarget(t *testing.T, deployment string) func(*server) benchTarget {
	features, n := onnxFeatures(t)
	f32 := make([]float32, len(features))
	for i, f := range features {
		f32[i] = float32(f)
	}
	req := &inferencepb.ModelInferRequest{ModelName: deployment, Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{
		{Name: "features", Datatype: "FP32", Shape: []int64{int64(n), 4}, Contents: &inferencepb.InferTensorContents{Fp32Contents: f32}}}}
	return func(s *server) benchTarget {
		conn, err := grpc.NewClient(s.grpcAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		c := inferencepb.NewGRPCInferenceServiceClient(conn)
		return benchTarget{s: s, call: func() bool {
			ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+s.Token), time.Minute)
			defer cancel()
			_, err := c.ModelInfer(ctx, req)
			return err == nil
		}}
	}
}

// closedLoop runs workers that each send requests back to back for d, worker i to targets[i mod n]; it
// returns the answered (200) requests per second and the count of the others.
func closedLoop(targets []benchTarget, workers int, d time.Duration) (float64, int64) {
	var ok, failed atomic.Int64
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for i := range workers {
		tg := targets[i%len(targets)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				if tg.call != nil && tg.call() || tg.call == nil && send(tg.s, tg.method, tg.path, tg.body) == 200 {
					ok.Add(1)
				} else {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return float64(ok.Load()) / d.Seconds(), failed.Load()
}

var benchClient = &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

// send makes one request with the server's admin token and returns its status (-1: no answer).
func send(s *server, method, path string, body []byte) int {
	req, _ := http.NewRequest(method, s.URL+path, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+s.Token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := benchClient.Do(req)
	if err != nil {
		return -1
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func fmtRates(v []float64) string {
	out := ""
	for i, r := range v {
		if i > 0 {
			out += ", "
		}
		out += fmt.Sprintf("%.0f", r)
	}
	return out
}

// loadAverage is the machine's 1-minute load average ("?" where /proc is not there).
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}
