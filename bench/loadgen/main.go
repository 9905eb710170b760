// Command loadgen is the closed-loop HTTP load generator of the Slipway serving benchmark. It keeps -c
// keep-alive connections busy (one goroutine per connection, each sending its next request as soon as the
// previous response has been read), discards a warm-up period, then measures for -duration and prints one line:
//
//	LABEL: 12345.6 req/s, p50 1.23 ms, p90 2.34 ms, p99 3.45 ms, max 9.87 ms, errors 0 (123456 ok in 10.0 s, 32 conns)
//
// With -json FILE it also appends the result as one JSON object per line (what bench/report reads).
//
// Definitions (the same for every target, which is the point of using one generator):
//   - a request counts when its response (or failure) completes inside the measured window; at the end of the
//     window no new request is sent and the ones in flight are left to finish (up to -drain, then cancelled)
//     without being counted, so the server never sees clients hang up mid-request;
//   - req/s is successful (2xx) responses per second of the window;
//   - errors are non-2xx responses, transport failures (refused, reset, timeout) and, with -expect, 2xx bodies
//     that do not contain the expected string, and "stalled" requests: sent before the window and still without
//     an answer at its end (the server did not answer them during the whole measurement);
//   - latency is from just before the request is written to the end of the response body, for successful
//     requests only, recorded in a log-linear (HDR-like) histogram: percentiles are within 0.4% (bucket
//     midpoint), min and max are exact. Percentiles use the nearest-rank definition.
//
// With -watch-pid PID (Linux), the CPU time of the window is split into the target (PID and its descendants),
// the load generator and everything else, in percent of all CPUs: "other" above a few percent means the cell was
// measured on a busy machine.
package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config is one load run.
type Config struct {
	URL         string
	Method      string
	Body        []byte
	Header      http.Header
	Concurrency int
	Duration    time.Duration // measured window
	Warmup      time.Duration // run before the window, not recorded
	Timeout     time.Duration // per request
	Drain       time.Duration // after the window, how long requests in flight may take to finish before they are cancelled
	Expect      string        // if set, a 2xx body must contain it
	Label       string
	Meta        map[string]string
	WatchPID    int    // if > 0, split the machine's CPU over the window into loadgen / this process tree / other
	Proc        string // the proc filesystem (default /proc)
}

// Result is what a run measured. Times are milliseconds.
type Result struct {
	Label       string            `json:"label"`
	Meta        map[string]string `json:"meta,omitempty"`
	Time        string            `json:"time"`
	URL         string            `json:"url"`
	Method      string            `json:"method"`
	BodyBytes   int               `json:"body_bytes"`
	Concurrency int               `json:"c"`
	DurationS   float64           `json:"duration_s"`
	WarmupS     float64           `json:"warmup_s"`
	Requests    uint64            `json:"requests"`
	OK          uint64            `json:"ok"`
	Errors      uint64            `json:"errors"`
	Non2xx      uint64            `json:"non_2xx"`
	Transport   uint64            `json:"transport_errors"`
	BadBody     uint64            `json:"bad_body"`
	Stalled     uint64            `json:"stalled"`
	Status      map[string]uint64 `json:"status"`
	FirstError  string            `json:"first_error,omitempty"`
	RPS         float64           `json:"rps"`
	MinMS       float64           `json:"min_ms"`
	MeanMS      float64           `json:"mean_ms"`
	P50MS       float64           `json:"p50_ms"`
	P90MS       float64           `json:"p90_ms"`
	P99MS       float64           `json:"p99_ms"`
	MaxMS       float64           `json:"max_ms"`
	Conns       uint64            `json:"conns"` // TCP connections opened (c with keep-alive; ~requests if the server closes them)
	CPUs        int               `json:"cpus"`
	CPU         *CPUShare         `json:"cpu,omitempty"` // with -watch-pid: % of all CPUs during the window
}

// workerStats is one goroutine's tally; merged after the run so the hot path takes no locks.
type workerStats struct {
	hist       Histogram
	ok         uint64
	non2xx     uint64
	transport  uint64
	badBody    uint64
	stalled    uint64
	status     map[int]uint64
	firstError string
}

func (w *workerStats) fail(msg string) {
	if w.firstError == "" {
		w.firstError = msg
	}
}

// Run executes one load run against cfg.URL.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Concurrency < 1 {
		return nil, errors.New("-c must be at least 1")
	}
	if cfg.Duration <= 0 {
		return nil, errors.New("-duration must be positive")
	}
	if cfg.Warmup < 0 {
		return nil, errors.New("-warmup must not be negative")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.Drain <= 0 {
		cfg.Drain = 10 * time.Second
	}
	if cfg.Header == nil {
		cfg.Header = http.Header{}
	}
	if cfg.Method == "" {
		cfg.Method = http.MethodGet
		if cfg.Body != nil {
			cfg.Method = http.MethodPost
		}
	}
	probe, err := http.NewRequest(cfg.Method, cfg.URL, nil)
	if err != nil {
		return nil, fmt.Errorf("invalid -url: %w", err)
	}
	if probe.URL.Scheme != "http" && probe.URL.Scheme != "https" {
		return nil, fmt.Errorf("invalid -url %q: use http://HOST:PORT/PATH", cfg.URL)
	}

	var conns atomic.Uint64
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, network, addr)
			if err == nil {
				conns.Add(1)
			}
			return c, err
		},
		MaxIdleConns:        2 * cfg.Concurrency,
		MaxIdleConnsPerHost: cfg.Concurrency,
		MaxConnsPerHost:     cfg.Concurrency,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{
		Transport:     tr,
		Timeout:       cfg.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}

	begin := time.Now()
	measureStart := begin.Add(cfg.Warmup)
	end := measureStart.Add(cfg.Duration)
	runCtx, cancel := context.WithDeadline(ctx, end.Add(cfg.Drain)) // stragglers are cancelled after the drain
	defer cancel()

	stats := make([]*workerStats, cfg.Concurrency)
	var wg sync.WaitGroup
	for i := range stats {
		w := &workerStats{status: map[int]uint64{}}
		stats[i] = w
		wg.Go(func() { worker(runCtx, client, &cfg, measureStart, end, w) })
	}
	var cpu *CPUShare
	ncpu := runtime.NumCPU() // this process's affinity (taskset): /proc/stat counts the machine's
	if cfg.WatchPID > 0 {
		cpu, ncpu = watchCPU(runCtx, cfg, measureStart, end, ncpu)
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	res := &Result{Label: cfg.Label, Meta: cfg.Meta, Time: begin.UTC().Format(time.RFC3339), URL: cfg.URL,
		Method: cfg.Method, BodyBytes: len(cfg.Body), Concurrency: cfg.Concurrency,
		DurationS: cfg.Duration.Seconds(), WarmupS: cfg.Warmup.Seconds(), Status: map[string]uint64{},
		Conns: conns.Load(), CPUs: ncpu, CPU: cpu}
	var h Histogram
	for _, w := range stats {
		h.Merge(&w.hist)
		res.OK += w.ok
		res.Non2xx += w.non2xx
		res.Transport += w.transport
		res.BadBody += w.badBody
		res.Stalled += w.stalled
		for code, n := range w.status {
			res.Status[strconv.Itoa(code)] += n
		}
		if res.FirstError == "" {
			res.FirstError = w.firstError
		}
	}
	res.Errors = res.Non2xx + res.Transport + res.BadBody + res.Stalled
	res.Requests = res.OK + res.Errors
	res.RPS = float64(res.OK) / cfg.Duration.Seconds()
	res.MinMS, res.MeanMS, res.MaxMS = ms(h.Min()), ms(h.Mean()), ms(h.Max())
	res.P50MS, res.P90MS, res.P99MS = ms(h.Percentile(50)), ms(h.Percentile(90)), ms(h.Percentile(99))
	return res, nil
}

// watchCPU samples the CPU at the start and the end of the window; nil (and ncpu unchanged) if /proc cannot be read.
func watchCPU(ctx context.Context, cfg Config, start, end time.Time, ncpu int) (*CPUShare, int) {
	proc := cfg.Proc
	if proc == "" {
		proc = "/proc"
	}
	sleepUntil := func(t time.Time) bool {
		timer := time.NewTimer(time.Until(t))
		defer timer.Stop()
		select {
		case <-timer.C:
			return true
		case <-ctx.Done():
			return false
		}
	}
	if !sleepUntil(start) {
		return nil, ncpu
	}
	a, err := sampleCPU(proc, cfg.WatchPID)
	if err != nil || !sleepUntil(end) {
		return nil, ncpu
	}
	b, err := sampleCPU(proc, cfg.WatchPID)
	if err != nil {
		return nil, ncpu
	}
	s, ok := share(a, b)
	if !ok {
		return nil, ncpu
	}
	if b.ncpu > 0 {
		ncpu = b.ncpu
	}
	return &s, ncpu
}

func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

// worker sends requests back to back on its connection until the end of the window.
func worker(ctx context.Context, client *http.Client, cfg *Config, measureStart, end time.Time, w *workerStats) {
	var buf bytes.Buffer
	for ctx.Err() == nil && time.Now().Before(end) {
		req, err := http.NewRequestWithContext(ctx, cfg.Method, cfg.URL, bytes.NewReader(cfg.Body))
		if err != nil { // cannot happen: the URL was checked
			w.fail(err.Error())
			return
		}
		req.Header = cfg.Header // read only, shared
		if cfg.Body == nil {
			req.Body, req.ContentLength = nil, 0
		}
		start := time.Now()
		status, failure := do(client, req, cfg.Expect, &buf)
		fin := time.Now()
		if fin.Before(measureStart) {
			continue // warm-up
		}
		if fin.After(end) {
			if start.Before(measureStart) { // no answer during the whole window
				w.stalled++
				w.fail(fmt.Sprintf("no response for more than the %v window (%v in flight)", cfg.Duration, fin.Sub(start).Round(time.Millisecond)))
			}
			continue // finished during the drain: not part of the window
		}
		if status != 0 {
			w.status[status]++
		}
		switch {
		case failure == "":
			w.ok++
			w.hist.Record(fin.Sub(start))
		case status == 0:
			w.transport++
			w.fail(failure)
		case status >= 200 && status < 300:
			w.badBody++
			w.fail(failure)
		default:
			w.non2xx++
			w.fail(failure)
		}
	}
}

// do sends one request and reads the whole response; failure is "" on success.
func do(client *http.Client, req *http.Request, expect string, buf *bytes.Buffer) (status int, failure string) {
	resp, err := client.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	status = resp.StatusCode
	ok := status >= 200 && status < 300
	if expect == "" && ok {
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			return 0, "reading the response: " + err.Error()
		}
		return status, ""
	}
	buf.Reset()
	if _, err := io.Copy(buf, io.LimitReader(resp.Body, 4<<20)); err != nil {
		return 0, "reading the response: " + err.Error()
	}
	// Anything past the limit, so that the connection can be reused; the response is judged on what was read.
	_, _ = io.Copy(io.Discard, resp.Body)
	if !ok {
		return status, fmt.Sprintf("HTTP %d: %s", status, snippet(buf.Bytes()))
	}
	if !bytes.Contains(buf.Bytes(), []byte(expect)) {
		return status, fmt.Sprintf("HTTP %d without %q in the body: %s", status, expect, snippet(buf.Bytes()))
	}
	return status, ""
}

func snippet(b []byte) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

// Line is the one-line human summary of a result.
func (r *Result) Line() string {
	label := cmp.Or(r.Label, r.URL)
	line := fmt.Sprintf("%s c=%d: %.1f req/s, p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms, errors %d (%d ok in %.1f s, %d conns)",
		label, r.Concurrency, r.RPS, r.P50MS, r.P90MS, r.P99MS, r.MaxMS, r.Errors, r.OK, r.DurationS, r.Conns)
	if r.CPU != nil {
		line += fmt.Sprintf("; CPU (%% of %d CPUs): target %.0f%%, loadgen %.0f%%, other %.0f%%", r.CPUs, r.CPU.Target, r.CPU.Loadgen, r.CPU.Other)
	}
	return line
}

// AppendJSON appends r as one line of JSON to path.
func AppendJSON(path string, r *Result) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		return errors.Join(err, f.Close())
	}
	return f.Close()
}

// headerFlag is a repeatable "-header 'Name: value'".
type headerFlag struct{ h http.Header }

func (f *headerFlag) String() string { return "" }
func (f *headerFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, ":")
	k = strings.TrimSpace(k)
	if !ok || k == "" {
		return fmt.Errorf("want Name:value, got %q", s)
	}
	f.h.Add(k, strings.TrimSpace(v))
	return nil
}

// metaFlag is a repeatable "-meta key=value", copied into the JSON result.
type metaFlag map[string]string

func (f metaFlag) String() string { return "" }
func (f metaFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want key=value, got %q", s)
	}
	f[k] = v
	return nil
}

// parseFlags turns the command line into a Config and the JSON output path.
func parseFlags(args []string, stderr io.Writer) (Config, string, error) {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := Config{Header: http.Header{}, Meta: map[string]string{}}
	var bodyFile, jsonOut string
	fs.StringVar(&cfg.URL, "url", "", "target URL (required)")
	fs.StringVar(&cfg.Method, "method", "", "HTTP method (default POST with -body-file, else GET)")
	fs.StringVar(&bodyFile, "body-file", "", "request body, read once and sent with every request")
	fs.Var(&headerFlag{cfg.Header}, "header", "request header `Name:value` (repeatable)")
	fs.IntVar(&cfg.Concurrency, "c", 1, "connections, each with one request in flight")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "measured window")
	fs.DurationVar(&cfg.Warmup, "warmup", 2*time.Second, "load before the window, not recorded")
	fs.DurationVar(&cfg.Timeout, "timeout", 30*time.Second, "per-request timeout (a timeout is an error)")
	fs.DurationVar(&cfg.Drain, "drain", 10*time.Second, "after the window, time for requests in flight to finish before they are cancelled")
	fs.StringVar(&cfg.Expect, "expect", "", "a successful body must contain this string (else it is an error)")
	fs.StringVar(&cfg.Label, "label", "", "name printed with the result")
	fs.Var(metaFlag(cfg.Meta), "meta", "`key=value` stored in the JSON result (repeatable)")
	fs.StringVar(&jsonOut, "json", "", "append the result as one JSON line to this file")
	fs.IntVar(&cfg.WatchPID, "watch-pid", 0, "Linux: report the CPU used during the window by this process and its descendants, by loadgen, and by everything else")
	if err := fs.Parse(args); err != nil {
		return cfg, "", err
	}
	if fs.NArg() > 0 {
		return cfg, "", fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if cfg.URL == "" {
		return cfg, "", errors.New("-url is required")
	}
	if bodyFile != "" {
		b, err := os.ReadFile(bodyFile)
		if err != nil {
			return cfg, "", fmt.Errorf("-body-file: %w", err)
		}
		cfg.Body = b
		if cfg.Header.Get("Content-Type") == "" {
			cfg.Header.Set("Content-Type", "application/json")
		}
	}
	if len(cfg.Meta) == 0 {
		cfg.Meta = nil
	}
	return cfg, jsonOut, nil
}

func main() {
	cfg, jsonOut, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	} else if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
	res, err := Run(context.Background(), cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
	fmt.Println(res.Line())
	if res.Errors > 0 {
		fmt.Fprintf(os.Stderr, "loadgen: %s: %d errors (non-2xx %d, transport %d, bad body %d, stalled %d), first: %s\n",
			cmp.Or(cfg.Label, cfg.URL), res.Errors, res.Non2xx, res.Transport, res.BadBody, res.Stalled, res.FirstError)
	}
	if jsonOut != "" {
		if err := AppendJSON(jsonOut, res); err != nil {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
			os.Exit(1)
		}
	}
}
