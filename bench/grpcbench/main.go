// Command grpcbench compares the Open Inference Protocol over gRPC with HTTP V2 JSON on one deployment:
// closed-loop load at a fixed concurrency, the same rows every request, targets interleaved in rounds (this
// machine's speed drifts by minutes, so only ratios measured side by side mean anything). bench/grpc.sh runs it
// against a server it starts; it prints one line per cell and the median ratios to HTTP JSON.
package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/slipway-ml/slipway/internal/inference/inferencepb"
)

func main() {
	httpURL := flag.String("http", "", "server URL, e.g. http://127.0.0.1:8080")
	grpcAddr := flag.String("grpc", "", "gRPC address, e.g. 127.0.0.1:8081")
	model := flag.String("model", "churn-onnx", "deployment")
	c := flag.Int("c", 32, "concurrent clients")
	duration := flag.Duration("duration", 10*time.Second, "measured window per cell")
	warmup := flag.Duration("warmup", 2*time.Second, "unmeasured load before each window")
	rounds := flag.Int("rounds", 3, "interleaved rounds")
	flag.Parse()
	token := os.Getenv("SLIPWAY_TOKEN")
	if *httpURL == "" || *grpcAddr == "" || token == "" {
		fmt.Fprintln(os.Stderr, "grpcbench: -http, -grpc and SLIPWAY_TOKEN are needed")
		os.Exit(2)
	}
	if err := run(*httpURL, *grpcAddr, *model, token, *c, *duration, *warmup, *rounds); err != nil {
		fmt.Fprintln(os.Stderr, "grpcbench:", err)
		os.Exit(1)
	}
}

// call makes one request and reports whether it succeeded.
type call func(ctx context.Context) error

func run(httpURL, grpcAddr, model, token string, c int, duration, warmup time.Duration, rounds int) error {
	features := []float32{42, 12, 70.5, 3} // one row of the churn example
	httpBody, err := json.Marshal(map[string]any{"inputs": []map[string]any{{"name": "features", "shape": []int{1, 4}, "datatype": "FP32", "data": features}}})
	if err != nil {
		return err
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: c, MaxConnsPerHost: c}}
	inferURL := httpURL + "/v2/models/" + model + "/infer"
	httpJSON := func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, "POST", inferURL, bytes.NewReader(httpBody))
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close() // read to the end already: nothing is left to lose
		if resp.StatusCode != 200 {
			return fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		return nil
	}

	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	client := inferencepb.NewGRPCInferenceServiceClient(conn)
	var raw []byte
	for _, f := range features {
		raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(f))
	}
	input := []*inferencepb.ModelInferRequest_InferInputTensor{{Name: "features", Datatype: "FP32", Shape: []int64{1, 4}}}
	rawReq := &inferencepb.ModelInferRequest{ModelName: model, Inputs: input, RawInputContents: [][]byte{raw}}
	typedReq := &inferencepb.ModelInferRequest{ModelName: model, Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{
		{Name: "features", Datatype: "FP32", Shape: []int64{1, 4}, Contents: &inferencepb.InferTensorContents{Fp32Contents: features}}}}
	auth := func(ctx context.Context) context.Context {
		return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	grpcRaw := func(ctx context.Context) error { _, err := client.ModelInfer(auth(ctx), rawReq); return err }
	grpcTyped := func(ctx context.Context) error { _, err := client.ModelInfer(auth(ctx), typedReq); return err }

	targets := []struct {
		name string
		call call
	}{{"http-v2-json", httpJSON}, {"grpc-raw", grpcRaw}, {"grpc-contents", grpcTyped}}
	for _, t := range targets { // a request each first: a refused one fails the run rather than measuring errors
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := t.call(ctx)
		cancel()
		if err != nil {
			return fmt.Errorf("preflight %s: %w", t.name, err)
		}
	}
	rates := map[string][]float64{}
	for r := 1; r <= rounds; r++ {
		for _, t := range targets {
			rps, errs := load(t.call, c, duration, warmup)
			rates[t.name] = append(rates[t.name], rps)
			fmt.Printf("round %d  %-14s c=%d  %8.0f req/s  errors %d\n", r, t.name, c, rps, errs)
			if errs > 0 {
				return fmt.Errorf("%s: %d errors", t.name, errs)
			}
		}
	}
	base := median(rates["http-v2-json"])
	fmt.Printf("\nmedian of %d rounds, c=%d, 1 row:\n", rounds, c)
	for _, t := range targets {
		m := median(rates[t.name])
		fmt.Printf("  %-14s %8.0f req/s  %.2f× HTTP V2 JSON\n", t.name, m, m/base)
	}
	return nil
}

// load runs c closed-loop clients for warmup+duration and returns the requests per second completed in the
// measured window, and the failed ones. Calls still in flight at the end finish uncounted (not cancelled, so
// that the end of a window is never counted as errors).
func load(do call, c int, duration, warmup time.Duration) (float64, int64) {
	ctx, cancel := context.WithTimeout(context.Background(), warmup+duration+time.Minute) // a bound on a stuck call
	defer cancel()
	var measuring, stopped atomic.Bool
	var ok, failed atomic.Int64
	var firstErr sync.Once
	var wg sync.WaitGroup
	for range c {
		wg.Add(1)
		go func() { // ends at stop
			defer wg.Done()
			for !stopped.Load() {
				err := do(ctx)
				if !measuring.Load() || stopped.Load() {
					continue
				}
				if err != nil {
					failed.Add(1)
					firstErr.Do(func() { fmt.Fprintln(os.Stderr, "first error:", err) })
				} else {
					ok.Add(1)
				}
			}
		}()
	}
	time.Sleep(warmup)
	measuring.Store(true)
	start := time.Now()
	time.Sleep(duration)
	stopped.Store(true)
	elapsed := time.Since(start)
	wg.Wait()
	return float64(ok.Load()) / elapsed.Seconds(), failed.Load()
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}
