package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
)

// countingScore answers how many requests its predict() has seen, and fails on "boom" as a broken model would:
// with one replica, the count proves which requests reached the model process.
const countingScore = `
import time
CALLS = [0]
def load_model():
    return None
def predict(data, model=None):
    CALLS[0] += 1
    if data == "boom":
        raise RuntimeError("the model broke")
    if data == "slow":
        time.sleep(2.5)
    return {"calls": CALLS[0]}
`

// TestBadPayloadsNeverReachTheModel: the client's mistakes (a body that is not JSON, a content type no endpoint
// takes, a huge header, a body that trickles in) answer 4xx before any replica sees them; an exception in the
// model stays a 500.
func TestBadPayloadsNeverReachTheModel(t *testing.T) {
	t.Parallel()
	s := startServer(t, "", "--payload-read-timeout", "1s")
	if v, err := push(t, s.Client(), "counter", tarGz(t, pythonArtifact(countingScore, nil)), "model.tar.gz",
		&slipway.VersionMetadata{Runtime: "python"}); err != nil || v.State != slipway.VersionReady {
		t.Fatalf("push: %+v, %v", v, err)
	}
	deploy(t, s, "counter", "--model", "counter:1", "--replicas", "1")
	calls := func() int {
		t.Helper()
		resp, body := s.do(t, "POST", "/deployments/counter/predict", s.Token, strings.NewReader(`{"data": 1}`), "application/json")
		var out struct{ Calls int }
		if resp.StatusCode != 200 || json.Unmarshal(body, &out) != nil {
			t.Fatalf("valid request: %d %s", resp.StatusCode, body)
		}
		return out.Calls
	}
	before := calls()

	pickle := "\x80\x04\x95\x0b\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01a\x94K\x01s."
	tests := []struct {
		name, path, ct, body string
		status               int
		code, detail         string // code: the problem's (V2 answers {"error": detail} instead)
	}{
		{"malformed json", "/deployments/counter/predict", "application/json", `{"data": [1, 2,}`, 400, slipway.EINVALID,
			`invalid JSON at byte 15 (line 1): invalid character '}' looking for beginning of value`},
		{"malformed json, charset", "/deployments/counter/predict", "application/json; charset=utf-8", "{\"data\":\n  [1, 2", 400, slipway.EINVALID,
			"unexpected end of JSON input"},
		{"malformed json, no content type", "/deployments/counter/predict", "", `{data: 1}`, 400, slipway.EINVALID, "invalid JSON at byte 1"},
		{"malformed json, curl -d", "/deployments/counter/predict", "application/x-www-form-urlencoded", `data=1`, 400, slipway.EINVALID, "invalid JSON"},
		{"two documents", "/deployments/counter/predict", "application/json", `{"data": 1} {"data": 2}`, 400, slipway.EINVALID, "after top-level value"},
		{"pickle", "/deployments/counter/predict", "application/x-python-pickle", pickle, 415, slipway.EUNSUPPORTED,
			"Content-Type application/x-python-pickle is refused by design"},
		{"pickle, other name", "/deployments/counter/predict", "application/python-pickle", pickle, 415, slipway.EUNSUPPORTED, "refused by design"},
		{"octet-stream", "/deployments/counter/predict", "application/octet-stream", pickle, 415, slipway.EUNSUPPORTED,
			`unsupported Content-Type \"application/octet-stream\": send application/json`},
		{"mlflow malformed json", "/deployments/counter/invocations", "application/json", `{"inputs": [1,]}`, 400, slipway.EINVALID, "invalid JSON"},
		{"mlflow pickle", "/deployments/counter/invocations", "application/x-pickle", pickle, 415, slipway.EUNSUPPORTED, "refused by design"},
		{"mlflow xml", "/deployments/counter/invocations", "application/xml", "<a/>", 415, slipway.EUNSUPPORTED, "This predictor only supports the following content types: Types: ['text/csv', 'application/json']. Got 'application/xml'."},
		{"v2 malformed json", "/v2/models/counter/infer", "application/json", `{"inputs": [`, 400, "", "invalid JSON"},
		{"v2 pickle", "/v2/models/counter/infer", "application/x-python-pickle", pickle, 415, "", "refused by design"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := s.do(t, "POST", tc.path, s.Token, strings.NewReader(tc.body), tc.ct)
			if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.detail) {
				t.Fatalf("%d %s; want %d mentioning %q", resp.StatusCode, body, tc.status, tc.detail)
			}
			if tc.code == "" {
				return
			}
			var p slipway.Problem
			if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" || json.Unmarshal(body, &p) != nil || p.Code != tc.code {
				t.Fatalf("Content-Type %q, body %s; want a problem with code %q", ct, body, tc.code)
			}
		})
	}

	withHeader := func(size int) int {
		req, _ := http.NewRequest("POST", s.URL+"/deployments/counter/predict", strings.NewReader(`{"data": 1}`))
		req.Header.Set("Authorization", "Bearer "+s.Token)
		req.Header.Set("X-Padding", strings.Repeat("a", size))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if status := withHeader(1 << 20); status != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("1 MiB header: status %d, want 431", status)
	}
	if status := withHeader(32 << 10); status != 200 {
		t.Errorf("32 KiB header: status %d, want 200", status)
	}
	before++ // the request with a 32 KiB header reached the model
	t.Run("body a byte at a time", func(t *testing.T) {
		status, took := trickle(t, s, "/deployments/counter/predict", `{"data": [1, 2, 3, 4, 5, 6, 7, 8]}`)
		if status != 400 || took > 10*time.Second {
			t.Fatalf("status %d after %s, want 400 once --payload-read-timeout (1s) is past", status, took)
		}
	})

	// A model slower than --payload-read-timeout still answers: that limit is the body's, not the model's.
	if resp, body := s.do(t, "POST", "/deployments/counter/predict", s.Token, strings.NewReader(`"slow"`), "application/json"); resp.StatusCode != 200 {
		t.Errorf("a 2.5 s prediction with --payload-read-timeout 1s: %d %s, want 200", resp.StatusCode, body)
	}
	before++

	if after := calls(); after != before+1 {
		t.Fatalf("the model saw %d requests between two valid ones, want none: a refused request reached it", after-before-1)
	}
	resp, body := s.do(t, "POST", "/deployments/counter/predict", s.Token, strings.NewReader(`"boom"`), "application/json")
	var p slipway.Problem
	if resp.StatusCode != 500 || json.Unmarshal(body, &p) != nil || p.Code != slipway.EMODEL || !strings.Contains(p.Detail, "the model broke") {
		t.Fatalf("model exception: %d %s; want 500 model_error", resp.StatusCode, body)
	}
}

// trickle sends a prediction whose body arrives one byte a second and returns the status and how long the
// answer took.
func trickle(t *testing.T, s *server, path, body string) (int, time.Duration) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n",
		path, s.Token, len(body))
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range len(body) {
			select {
			case <-done:
				return
			case <-time.After(time.Second):
			}
			if _, err := conn.Write([]byte{body[i]}); err != nil {
				return
			}
		}
	})
	defer wg.Wait()
	defer close(done)
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode, time.Since(start)
}

// TestCanarySurvivesMalformedFlood: a client flooding a deployment with bodies that are not JSON gets 400s,
// and the healthy canary they hit is still promoted, neither rolled back by them nor judged on them.
func TestCanarySurvivesMalformedFlood(t *testing.T) {
	t.Parallel()
	s := startServer(t, "")
	meta := &slipway.VersionMetadata{Runtime: "python"}
	for i := range 2 {
		if v, err := push(t, s.Client(), "toy", tarGz(t, pythonArtifact(goodScore, nil)), "model.tar.gz", meta); err != nil || v.State != slipway.VersionReady {
			t.Fatalf("push version %d: %+v, %v", i+1, v, err)
		}
	}
	deploy(t, s, "toy", "--model", "toy:1", "--canary-version", "2", "--canary-weight", "50",
		"--canary-interval", "1s", "--canary-min-requests", "10", "--canary-promote-after", "2", "--canary-max-latency-ratio", "20")
	bad := startLoad(t, s, "/deployments/toy/predict", []byte(`{"data": [[1, 2]`), 3)
	good := startLoad(t, s, "/deployments/toy/predict", []byte(`{"data": [[1, 2]]}`), 1)
	d := waitDeploymentState(t, s, "toy", "the canary to be promoted or removed", func(d *slipway.Deployment) bool {
		return d.Canary == nil && d.State == slipway.DeploymentActive
	})
	badStatus, _ := bad.finish()
	goodStatus, goodErrs := good.finish()
	if d.Version != 2 || !strings.Contains(d.Reason, "promoted by its analysis") {
		t.Errorf("under a flood of malformed requests: version %d, reason %q; want the canary promoted", d.Version, d.Reason)
	}
	if len(badStatus) != 1 || badStatus[400] == 0 || len(goodStatus) != 1 || goodStatus[200] == 0 {
		t.Errorf("statuses: malformed %v, valid %v %q; want only 400s and only 200s", badStatus, goodStatus, goodErrs)
	}
}

// waitDeploymentState polls a deployment until cond holds (90 s at most) and returns it.
func waitDeploymentState(t *testing.T, s *server, name, what string, cond func(d *slipway.Deployment) bool) *slipway.Deployment {
	t.Helper()
	var d *slipway.Deployment
	waitFor(t, what, 90*time.Second, func() bool {
		var err error
		d, err = s.Client().GetDeployment(t.Context(), name)
		return err == nil && cond(d)
	})
	return d
}
