package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestBucketsRoundTrip(t *testing.T) {
	// Every value falls in the bucket whose range contains it, buckets are contiguous and ordered, and a bucket
	// is never wider than 1/128 of its lowest value (the promised precision).
	var prevHi int64 = -1
	for i := 0; i < numBuckets; i++ {
		lo, hi := bucketRange(i)
		if lo != prevHi+1 {
			t.Fatalf("bucket %d starts at %d, previous ended at %d", i, lo, prevHi)
		}
		if hi < lo || (lo >= subCount && float64(hi-lo+1) > float64(lo)/subCount) {
			t.Fatalf("bucket %d = [%d, %d] is too wide", i, lo, hi)
		}
		if bucketOf(lo) != i || bucketOf(hi) != i {
			t.Fatalf("bucket %d = [%d, %d]: bucketOf gives %d and %d", i, lo, hi, bucketOf(lo), bucketOf(hi))
		}
		prevHi = hi
		if hi == math.MaxInt64 {
			if i != numBuckets-1 {
				t.Fatalf("MaxInt64 is in bucket %d of %d", i, numBuckets)
			}
			break
		}
	}
	if prevHi != math.MaxInt64 {
		t.Fatalf("the buckets end at %d, not MaxInt64", prevHi)
	}
}

func TestPercentileSmallValuesAreExact(t *testing.T) {
	var h Histogram
	for v := 1; v <= 100; v++ { // below 128 ns every value has its own bucket
		h.Record(time.Duration(v))
	}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{0, 1}, {1, 1}, {1.5, 2}, {50, 50}, {90, 90}, {99, 99}, {99.5, 100}, {100, 100}} {
		if got := h.Percentile(tc.p); got != tc.want {
			t.Errorf("p%g = %d, want %d (nearest rank)", tc.p, got, tc.want)
		}
	}
	if h.Count() != 100 || h.Min() != 1 || h.Max() != 100 || h.Mean() != 50 { // mean 50.5 truncated
		t.Errorf("count %d min %d max %d mean %d", h.Count(), h.Min(), h.Max(), h.Mean())
	}
}

// exactPercentile is the nearest-rank percentile of a sorted sample, the reference for the histogram.
func exactPercentile(sorted []time.Duration, p float64) time.Duration {
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[max(rank, 1)-1]
}

func TestPercentileMatchesSortedSample(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, dist := range []struct {
		name string
		gen  func() time.Duration
	}{
		{"uniform 0-10ms", func() time.Duration { return time.Duration(rng.Int64N(int64(10 * time.Millisecond))) }},
		{"lognormal around 1ms", func() time.Duration {
			return time.Duration(math.Exp(rng.NormFloat64()*0.8) * float64(time.Millisecond))
		}},
		{"bimodal fast/slow", func() time.Duration {
			if rng.IntN(100) < 3 {
				return 250*time.Millisecond + time.Duration(rng.Int64N(int64(time.Millisecond)))
			}
			return 300*time.Microsecond + time.Duration(rng.Int64N(int64(50*time.Microsecond)))
		}},
	} {
		t.Run(dist.name, func(t *testing.T) {
			var h Histogram
			sample := make([]time.Duration, 200_000)
			for i := range sample {
				sample[i] = dist.gen()
				h.Record(sample[i])
			}
			slices.Sort(sample)
			for _, p := range []float64{1, 10, 50, 90, 97, 99, 99.9} {
				want, got := exactPercentile(sample, p), h.Percentile(p)
				if rel := math.Abs(float64(got-want)) / float64(want); rel > 1.0/256+1e-9 {
					t.Errorf("p%g = %v, exact %v: relative error %.4f > 1/256", p, got, want, rel)
				}
			}
			if h.Max() != sample[len(sample)-1] || h.Min() != sample[0] || h.Percentile(100) != h.Max() {
				t.Errorf("min/max %v/%v, exact %v/%v", h.Min(), h.Max(), sample[0], sample[len(sample)-1])
			}
		})
	}
}

func TestMergeEqualsRecordingEverything(t *testing.T) {
	var all, a, b, empty Histogram
	for i := 1; i <= 10_000; i++ {
		d := time.Duration(i) * time.Microsecond
		all.Record(d)
		if i%3 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
	}
	var merged Histogram
	merged.Merge(&empty)
	merged.Merge(&a)
	merged.Merge(&b)
	merged.Merge(&empty)
	if merged != all {
		t.Fatalf("merged histogram differs: count %d/%d, p50 %v/%v", merged.Count(), all.Count(), merged.Percentile(50), all.Percentile(50))
	}
	if got := merged.Percentile(50); got < 4980*time.Microsecond || got > 5020*time.Microsecond {
		t.Errorf("p50 = %v, want about 5ms", got)
	}
	if empty.Percentile(99) != 0 || empty.Mean() != 0 || empty.Max() != 0 {
		t.Error("an empty histogram must report zeros")
	}
}

func TestNegativeDurationIsZero(t *testing.T) {
	var h Histogram
	h.Record(-5)
	if h.Count() != 1 || h.Max() != 0 || h.Percentile(50) != 0 {
		t.Fatalf("count %d max %v p50 %v", h.Count(), h.Max(), h.Percentile(50))
	}
}

func TestParseFlags(t *testing.T) {
	dir := t.TempDir()
	body := filepath.Join(dir, "body.json")
	if err := os.WriteFile(body, []byte(`{"inputs": [[1]]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, out, err := parseFlags([]string{"-url", "http://127.0.0.1:1/x", "-body-file", body,
		"-header", "Authorization: Bearer a:b", "-header", "X-A:1", "-header", "X-A: 2", "-c", "8",
		"-duration", "3s", "-warmup", "0", "-label", "t", "-meta", "target=ceiling", "-meta", "rows=1", "-json", "r.jsonl"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Method != "" || string(cfg.Body) != `{"inputs": [[1]]}` || cfg.Concurrency != 8 || cfg.Duration != 3*time.Second ||
		cfg.Warmup != 0 || out != "r.jsonl" || cfg.Meta["target"] != "ceiling" || cfg.Meta["rows"] != "1" {
		t.Errorf("cfg = %+v, out %q", cfg, out)
	}
	if got := cfg.Header.Get("Authorization"); got != "Bearer a:b" {
		t.Errorf("Authorization = %q", got)
	}
	if got := cfg.Header.Values("X-A"); !slices.Equal(got, []string{"1", "2"}) {
		t.Errorf("X-A = %q", got)
	}
	if cfg.Header.Get("Content-Type") != "application/json" {
		t.Errorf("a body file must default to Content-Type application/json, got %q", cfg.Header.Get("Content-Type"))
	}
	for _, bad := range [][]string{{}, {"-url", "http://x", "-header", "novalue"}, {"-url", "http://x", "-body-file", filepath.Join(dir, "missing")},
		{"-url", "http://x", "extra"}, {"-url", "http://x", "-meta", "nokey"}} {
		if _, _, err := parseFlags(bad, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) accepted", bad)
		}
	}
}

func TestRunAgainstServer(t *testing.T) {
	var conns, reqs atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reqs.Add(1)
		b, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || string(b) != `{"inputs": [[41.0, 12.0, 70.5, 1.0]]}` ||
			r.Header.Get("Authorization") != "Bearer tok" || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		time.Sleep(time.Millisecond)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"predictions": [0.27]}`)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()

	h := http.Header{}
	h.Set("Authorization", "Bearer tok")
	h.Set("Content-Type", "application/json")
	cfg := Config{URL: srv.URL + "/invocations", Body: []byte(`{"inputs": [[41.0, 12.0, 70.5, 1.0]]}`), Header: h,
		Concurrency: 4, Duration: 400 * time.Millisecond, Warmup: 100 * time.Millisecond, Expect: "predictions",
		Label: "smoke", Meta: map[string]string{"target": "test", "rows": "1"}}
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(res.Line())
	if res.Errors != 0 || res.OK == 0 {
		t.Fatalf("ok %d errors %d (first %q)", res.OK, res.Errors, res.FirstError)
	}
	// 4 connections, each sleeping 1 ms per request: at most 4 × 400 requests in the window.
	if res.OK > 4*400 || res.RPS != float64(res.OK)/0.4 || res.Method != http.MethodPost {
		t.Errorf("ok %d rps %.1f method %s", res.OK, res.RPS, res.Method)
	}
	if res.P50MS < 1 || res.P50MS > res.P90MS || res.P90MS > res.P99MS || res.P99MS > res.MaxMS || res.MinMS < 1 {
		t.Errorf("latencies min %.3f p50 %.3f p90 %.3f p99 %.3f max %.3f ms", res.MinMS, res.P50MS, res.P90MS, res.P99MS, res.MaxMS)
	}
	// Keep-alive: one connection per goroutine for the whole run, warm-up included.
	if res.Conns != 4 || conns.Load() != 4 {
		t.Errorf("%d connections dialed, %d seen by the server; want 4", res.Conns, conns.Load())
	}
	if res.Status["200"] != res.OK || uint64(reqs.Load()) < res.OK {
		t.Errorf("status %v, server saw %d requests, ok %d", res.Status, reqs.Load(), res.OK)
	}

	path := filepath.Join(t.TempDir(), "results.jsonl")
	for range 2 {
		if err := AppendJSON(path, res); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	lines := 0
	for sc.Scan() {
		var back Result
		if err := json.Unmarshal(sc.Bytes(), &back); err != nil {
			t.Fatal(err)
		}
		if back.OK != res.OK || back.Meta["target"] != "test" || back.P99MS != res.P99MS || back.Concurrency != 4 {
			t.Errorf("JSON round trip: %+v", back)
		}
		lines++
	}
	if lines != 2 {
		t.Errorf("%d lines, want 2 (appended)", lines)
	}
}

func TestRunCountsErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/unavailable":
			http.Error(w, "deployment churn is CREATING", http.StatusServiceUnavailable)
		case "/redirect":
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		default:
			io.WriteString(w, `{"error": "nothing to see"}`)
		}
	}))
	defer srv.Close()
	run := func(path, expect string) *Result {
		t.Helper()
		res, err := Run(context.Background(), Config{URL: srv.URL + path, Concurrency: 2, Duration: 150 * time.Millisecond, Expect: expect})
		if err != nil {
			t.Fatal(err)
		}
		if res.OK != 0 || res.Errors == 0 || res.Errors != res.Requests || res.RPS != 0 || res.P99MS != 0 {
			t.Fatalf("%s: ok %d errors %d requests %d rps %.1f p99 %.2f", path, res.OK, res.Errors, res.Requests, res.RPS, res.P99MS)
		}
		return res
	}
	if res := run("/unavailable", ""); res.Non2xx != res.Errors || res.Status["503"] != res.Errors ||
		!strings.Contains(res.FirstError, "HTTP 503: deployment churn is CREATING") {
		t.Errorf("503: %+v", res)
	}
	if res := run("/redirect", ""); res.Non2xx != res.Errors || res.Status["302"] != res.Errors {
		t.Errorf("redirects must not be followed: %+v", res)
	}
	if res := run("/ok", "predictions"); res.BadBody != res.Errors || !strings.Contains(res.FirstError, `without "predictions"`) {
		t.Errorf("-expect: %+v", res)
	}

	// Nothing listening: transport errors, the run still ends on time.
	ln := httptest.NewServer(http.NotFoundHandler())
	url := ln.URL
	ln.Close()
	start := time.Now()
	res, err := Run(context.Background(), Config{URL: url, Concurrency: 2, Duration: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Transport == 0 || res.OK != 0 || res.FirstError == "" || time.Since(start) > 2*time.Second {
		t.Errorf("refused: %+v after %v", res, time.Since(start))
	}
}

func TestRunCountsStalledRequests(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	start := time.Now()
	res, err := Run(context.Background(), Config{URL: srv.URL, Concurrency: 3, Duration: 200 * time.Millisecond,
		Warmup: 50 * time.Millisecond, Drain: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	// The three requests were sent during the warm-up and never answered: stalled, cancelled after the drain.
	if res.Stalled != 3 || res.Errors != 3 || res.OK != 0 || !strings.Contains(res.FirstError, "no response for more than the 200ms window") {
		t.Errorf("%+v", res)
	}
	if el := time.Since(start); el < 350*time.Millisecond || el > 2*time.Second {
		t.Errorf("the run took %v, want warm-up + window + drain = 350ms", el)
	}
}

func TestRunDrainsRequestsInFlightAtTheEnd(t *testing.T) {
	var cancelled, served atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(120 * time.Millisecond):
			served.Add(1)
			io.WriteString(w, "{}")
		case <-r.Context().Done():
			cancelled.Add(1)
		}
	}))
	defer srv.Close()
	res, err := Run(context.Background(), Config{URL: srv.URL, Concurrency: 2, Duration: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	// Each connection: one request answered at 120 ms (counted), one sent at 120 ms and answered at 240 ms, after
	// the window: left to finish, not counted, and not an error.
	if res.OK != 2 || res.Errors != 0 || res.Requests != 2 {
		t.Errorf("%+v", res)
	}
	srv.Close() // waits for the handlers
	if cancelled.Load() != 0 || served.Load() != 4 {
		t.Errorf("the server saw %d requests cancelled and %d answered; want 0 and 4", cancelled.Load(), served.Load())
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	for _, cfg := range []Config{
		{URL: "http://127.0.0.1:1", Concurrency: 0, Duration: time.Second},
		{URL: "http://127.0.0.1:1", Concurrency: 1},
		{URL: "http://127.0.0.1:1", Concurrency: 1, Duration: time.Second, Warmup: -1},
		{URL: "127.0.0.1:1/x", Concurrency: 1, Duration: time.Second},
	} {
		if _, err := Run(context.Background(), cfg); err == nil {
			t.Errorf("Run(%+v) accepted", cfg)
		}
	}
}
