package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// TestPythonBatchedAnswersMatchUnbatched: through the binary, a batched Python deployment answers every request
// as the same model unbatched (the same JSON; numbers up to the last bits, which a BLAS sums in another order
// for a matrix of another number of rows), when many requests of every MLflow input form, in several column orders,
// arrive at once and are merged into model calls (the batcher's Concat and Split, the decoder's lookups of
// columns at their schema position and off it). On a table of 30 floats (bench/pywide) and on the churn
// example's mixed columns (floats, ints and a string column).
func TestPythonBatchedAnswersMatchUnbatched(t *testing.T) {
	s := startServer(t, t.TempDir())
	dir := t.TempDir()
	if out, err := exec.Command("/usr/bin/python3", examplePath("..", "bench", "pywide", "make_model.py"), dir).CombinedOutput(); err != nil {
		t.Fatalf("make_model.py: %v\n%s", err, out)
	}
	if out, errOut, code := s.cli("models", "push", dir, "--model", "wide", "--metadata", dir+"/metadata.json"); code != 0 {
		t.Fatalf("push wide: %s %s", out, errOut)
	}
	pushExamples(t, s)
	// One replica and a wait, so that concurrent requests queue and merge.
	batched := []string{"--replicas", "1", "--batch-size", "64", "--batch-wait-ms", "20", "--max-queue", "1000"}
	deploy(t, s, "wide", "--model", "wide:1")
	deploy(t, s, append([]string{"wide-batch", "--model", "wide:1"}, batched...)...)
	deploy(t, s, "churn", "--model", "churn:1")
	deploy(t, s, append([]string{"churn-batch", "--model", "churn:1"}, batched...)...)

	wideCols := make([]string, 30)
	for j := range wideCols {
		wideCols[j] = fmt.Sprintf("f%02d", j)
	}
	wideRows := make([][]any, 6)
	for i := range wideRows {
		wideRows[i] = make([]any, len(wideCols))
		for j := range wideCols {
			wideRows[i][j] = math.Round(math.Cos(float64(i*37+j))*1e4*float64(j+1)) / 1e3
		}
	}
	churnCols, churnData := churnRows(t, 6)

	for _, tc := range []struct {
		plain, batch string
		cols         []string
		rows         [][]any
	}{
		{"wide", "wide-batch", wideCols, wideRows},
		{"churn", "churn-batch", churnCols, churnData},
	} {
		// Requests of 1 and 2 rows, in every form, with the columns in the schema's order and reversed.
		var reqs []mlflowRequest
		for _, order := range [][]int{identity(len(tc.cols)), reversed(len(tc.cols))} {
			cols := permute(tc.cols, order)
			for i := range tc.rows {
				rows := [][]any{permute(tc.rows[i], order)}
				if i%2 == 1 {
					rows = append(rows, permute(tc.rows[i-1], order))
				}
				for _, req := range mlflowForms(cols, rows) {
					reqs = append(reqs, req)
				}
			}
		}
		want := make([][]byte, len(reqs))
		for i, req := range reqs {
			resp, body := s.do(t, "POST", "/deployments/"+tc.plain+"/invocations", s.Token, bytes.NewReader(req.body), req.contentType)
			if resp.StatusCode != 200 {
				t.Fatalf("%s: HTTP %d %s", tc.plain, resp.StatusCode, body)
			}
			want[i] = body
		}
		// Every request 3 times, all at once.
		errs := make(chan error, 3*len(reqs))
		var wg sync.WaitGroup
		for range 3 {
			for i, req := range reqs {
				wg.Go(func() {
					got, err := post(s, "/deployments/"+tc.batch+"/invocations", req)
					if err == nil && !sameAnswer(got, want[i]) {
						err = fmt.Errorf("%s\n%s\nbatched answered\n%s\nunbatched\n%s", tc.batch, req.body, got, want[i])
					}
					if err != nil {
						errs <- err
					}
				})
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		// The requests were merged: fewer model calls than requests.
		_, metrics := s.do(t, "GET", "/metrics", s.Token, nil, "")
		m := regexp.MustCompile(`slipway_deployment_batch_rows_count\{deployment="` + tc.batch + `"\} (\d+)`).FindSubmatch(metrics)
		if len(m) < 2 {
			t.Fatalf("no batch count for %s in /metrics", tc.batch)
		}
		if calls, _ := strconv.Atoi(string(m[1])); calls == 0 || calls >= 3*len(reqs) {
			t.Errorf("%s: %d model calls for %d requests sent at once: no batch formed", tc.batch, calls, 3*len(reqs))
		}
	}
}

// sameAnswer: the same JSON, numbers equal within 1e-12.
func sameAnswer(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return sameJSON(x, y)
}

func sameJSON(x, y any) bool {
	switch x := x.(type) {
	case float64:
		y, ok := y.(float64)
		return ok && math.Abs(x-y) <= 1e-12
	case []any:
		y, ok := y.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !sameJSON(x[i], y[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		y, ok := y.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			if !sameJSON(v, y[k]) {
				return false
			}
		}
		return true
	default:
		return x == y
	}
}

// post sends one request and returns its body; an answer other than 200 is an error.
func post(s *server, path string, req mlflowRequest) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, err := http.NewRequestWithContext(ctx, "POST", s.URL+path, bytes.NewReader(req.body))
	if err != nil {
		return nil, err
	}
	r.Header.Set("Authorization", "Bearer "+s.Token)
	r.Header.Set("Content-Type", req.contentType)
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != 200 {
		err = fmt.Errorf("%s: HTTP %d %s", path, resp.StatusCode, body)
	}
	return body, err
}

func identity(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

func reversed(n int) []int {
	out := identity(n)
	slices.Reverse(out)
	return out
}

// permute returns vs in the given order of indices.
func permute[T any](vs []T, order []int) []T {
	out := make([]T, len(order))
	for i, j := range order {
		out[i] = vs[j]
	}
	return out
}
