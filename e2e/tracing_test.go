package e2e

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/slipway-ml/slipway/internal/inference/inferencepb"
)

// otlpReceiver is an OTLP/HTTP trace receiver (POST /v1/traces, protobuf), as a collector would run it.
type otlpReceiver struct {
	URL string

	mu      sync.Mutex
	spans   []*tracepb.Span
	service []string // service.name of every resource received
	headers []http.Header
}

func startOTLPReceiver(t *testing.T) *otlpReceiver {
	t.Helper()
	rc := &otlpReceiver{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
			http.Error(w, "want POST /v1/traces application/x-protobuf", http.StatusBadRequest)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
		var req collectortrace.ExportTraceServiceRequest
		if err == nil {
			err = proto.Unmarshal(body, &req)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rc.mu.Lock()
		rc.headers = append(rc.headers, r.Header.Clone())
		for _, rs := range req.ResourceSpans {
			for _, a := range rs.GetResource().GetAttributes() {
				if a.Key == "service.name" {
					rc.service = append(rc.service, a.Value.GetStringValue())
				}
			}
			for _, ss := range rs.ScopeSpans {
				rc.spans = append(rc.spans, ss.Spans...)
			}
		}
		rc.mu.Unlock()
		out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	})}
	go func() { _ = srv.Serve(ln) }() // ends at Close in the cleanup
	t.Cleanup(func() { _ = srv.Close() })
	rc.URL = "http://" + ln.Addr().String()
	return rc
}

// trace is the spans received so far whose trace contains a server span with request id id.
func (rc *otlpReceiver) trace(id string) (root *tracepb.Span, all []*tracepb.Span) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, s := range rc.spans {
		if s.Kind == tracepb.Span_SPAN_KIND_SERVER && spanAttr(s, "slipway.request_id") == id {
			root = s
		}
	}
	if root == nil {
		return nil, nil
	}
	for _, s := range rc.spans {
		if bytes.Equal(s.TraceId, root.TraceId) {
			all = append(all, s)
		}
	}
	return root, all
}

// spansNamed is every span received with that name.
func (rc *otlpReceiver) spansNamed(name string) []*tracepb.Span {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []*tracepb.Span
	for _, s := range rc.spans {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

func spanAttr(s *tracepb.Span, key string) string {
	for _, a := range s.Attributes {
		if a.Key == key {
			return anyValue(a.Value)
		}
	}
	return ""
}

// anyValue is an attribute's value as text.
func anyValue(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return strconv.FormatInt(x.IntValue, 10)
	case *commonpb.AnyValue_BoolValue:
		return strconv.FormatBool(x.BoolValue)
	case *commonpb.AnyValue_DoubleValue:
		return strconv.FormatFloat(x.DoubleValue, 'g', -1, 64)
	}
	return fmt.Sprint(v)
}

// childrenOf are the spans in spans whose parent is p, by name.
func childrenOf(p *tracepb.Span, spans []*tracepb.Span) map[string][]*tracepb.Span {
	out := map[string][]*tracepb.Span{}
	for _, s := range spans {
		if bytes.Equal(s.ParentSpanId, p.SpanId) && bytes.Equal(s.TraceId, p.TraceId) {
			out[s.Name] = append(out[s.Name], s)
		}
	}
	return out
}

// waitTrace waits until the trace of request id holds every span name in want (the exporter sends in batches).
func waitTrace(t *testing.T, rc *otlpReceiver, id string, want ...string) (*tracepb.Span, []*tracepb.Span) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		root, all := rc.trace(id)
		names := map[string]bool{}
		for _, s := range all {
			names[s.Name] = true
		}
		missing := []string{}
		for _, w := range want {
			if !names[w] {
				missing = append(missing, w)
			}
		}
		if root != nil && len(missing) == 0 {
			return root, all
		}
		if time.Now().After(deadline) {
			t.Fatalf("request %s: no complete trace after 60 s (server span found: %v; missing %v; got %v)", id, root != nil, missing, names)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// oneChild is the one child of p named name.
func oneChild(t *testing.T, what string, p *tracepb.Span, all []*tracepb.Span, name string) *tracepb.Span {
	t.Helper()
	c := childrenOf(p, all)[name]
	if len(c) != 1 {
		t.Fatalf("%s: %d %s spans under %s (%s), want 1", what, len(c), name, p.Name, hex.EncodeToString(p.SpanId))
	}
	if c[0].EndTimeUnixNano < c[0].StartTimeUnixNano || c[0].StartTimeUnixNano < p.StartTimeUnixNano {
		t.Errorf("%s: span %s ends before it starts, or starts before its parent", what, name)
	}
	return c[0]
}

// The standard OTEL_* variables turn traces on; every prediction is a trace of HTTP request → queue wait,
// batch → replica call → model, with the client's traceparent honoured and the request id an attribute.
func TestOpenTelemetryTracesOfPredictions(t *testing.T) {
	t.Parallel()
	rc := startOTLPReceiver(t)
	s := startServerEnv(t, []string{
		"OTEL_EXPORTER_OTLP_ENDPOINT=" + rc.URL, "OTEL_EXPORTER_OTLP_HEADERS=x-collector-key=e2e-secret",
		"OTEL_SERVICE_NAME=slipway-e2e", "OTEL_TRACES_SAMPLER=parentbased_always_on", "OTEL_BSP_SCHEDULE_DELAY=100",
	}, "", "--grpc-addr", "127.0.0.1:0")
	pushExamples(t, s)
	deploy(t, s, "traced-batch", "--model", "churn-onnx:1", "--isolation", "in-process", "--batch-size", "64")
	deploy(t, s, "traced", "--model", "churn-onnx:1")
	body := `{"inputs": [[41.0, 12.0, 70.5, 1.0]]}`

	// 1. A client's traceparent: the server span is its child, in its trace.
	const clientTrace, clientSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	req, err := http.NewRequestWithContext(t.Context(), "POST", s.URL+"/deployments/traced-batch/invocations", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.Token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Request-Id", "trace-req-1")
	req.Header.Set("traceparent", "00-"+clientTrace+"-"+clientSpan+"-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(out), "predictions") {
		t.Fatalf("traced prediction: %d %s", resp.StatusCode, out)
	}
	root, all := waitTrace(t, rc, "trace-req-1", "slipway.queue", "slipway.batch", "slipway.replica", "slipway.model")
	if hex.EncodeToString(root.TraceId) != clientTrace || hex.EncodeToString(root.ParentSpanId) != clientSpan {
		t.Errorf("server span: trace %x parent %x, want the client's %s / %s", root.TraceId, root.ParentSpanId, clientTrace, clientSpan)
	}
	if root.Name != "POST /deployments/{name}/invocations" || spanAttr(root, "http.route") != "/deployments/{name}/invocations" ||
		spanAttr(root, "http.response.status_code") != "200" {
		t.Errorf("server span: %q, route %q, status %q", root.Name, spanAttr(root, "http.route"), spanAttr(root, "http.response.status_code"))
	}
	oneChild(t, "batched", root, all, "slipway.queue")
	batch := oneChild(t, "batched", root, all, "slipway.batch")
	if spanAttr(batch, "slipway.batch.rows") != "1" || spanAttr(batch, "slipway.batch.requests") != "1" {
		t.Errorf("batch of one request of one row: rows %q requests %q", spanAttr(batch, "slipway.batch.rows"), spanAttr(batch, "slipway.batch.requests"))
	}
	replica := oneChild(t, "batched", batch, all, "slipway.replica")
	if spanAttr(replica, "slipway.deployment") != "traced-batch" || spanAttr(replica, "slipway.replica") == "" {
		t.Errorf("replica span attributes: %v", replica.Attributes)
	}
	model := oneChild(t, "batched", replica, all, "slipway.model")
	if spanAttr(model, "slipway.model.time_source") != "call" {
		t.Errorf("model span attributes: %v", model.Attributes)
	}

	// 2. No traceparent, no batching: a trace of its own, the replica call under the request.
	resp, out = s.do(t, "POST", "/deployments/traced/invocations", s.Token, strings.NewReader(body), "application/json")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("unbatched prediction: %d %s", resp.StatusCode, out)
	}
	id := resp.Header.Get("X-Request-Id")
	root, all = waitTrace(t, rc, id, "slipway.queue", "slipway.replica", "slipway.model")
	if len(root.ParentSpanId) != 0 || hex.EncodeToString(root.TraceId) == clientTrace {
		t.Errorf("a request without traceparent starts a trace: parent %x trace %x", root.ParentSpanId, root.TraceId)
	}
	oneChild(t, "unbatched", root, all, "slipway.queue")
	oneChild(t, "unbatched", oneChild(t, "unbatched", root, all, "slipway.replica"), all, "slipway.model")
	if n := len(childrenOf(root, all)["slipway.batch"]); n != 0 {
		t.Errorf("unbatched deployment: %d batch spans", n)
	}

	// 3. Concurrent requests share batches: each request has its queue span, and is either the parent of a batch
	// or linked from one.
	var wg sync.WaitGroup
	for i := range 24 {
		wg.Go(func() {
			req, _ := http.NewRequestWithContext(t.Context(), "POST", s.URL+"/deployments/traced-batch/invocations", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+s.Token)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-Request-Id", fmt.Sprintf("trace-many-%d", i))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("concurrent prediction %d: %d", i, resp.StatusCode)
			}
		})
	}
	wg.Wait()
	for i := range 24 {
		root, all := waitTrace(t, rc, fmt.Sprintf("trace-many-%d", i), "slipway.queue")
		oneChild(t, "concurrent", root, all, "slipway.queue")
		if len(childrenOf(root, all)["slipway.batch"]) == 1 {
			continue
		}
		linked := false
		deadline := time.Now().Add(30 * time.Second)
		for !linked && time.Now().Before(deadline) {
			for _, b := range rc.spansNamed("slipway.batch") {
				for _, l := range b.Links {
					linked = linked || bytes.Equal(l.TraceId, root.TraceId) && bytes.Equal(l.SpanId, root.SpanId)
				}
			}
			if !linked {
				time.Sleep(100 * time.Millisecond)
			}
		}
		if !linked {
			t.Errorf("request trace-many-%d: neither the parent of a batch nor linked from one", i)
		}
	}

	// 4. gRPC ModelInfer: its server span honours the traceparent in the call's metadata.
	conn, err := grpc.NewClient(s.grpcAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const grpcTrace = "0af7651916cd43dd8448eb211c80319c"
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+s.Token,
		"traceparent", "00-"+grpcTrace+"-b7ad6b7169203331-01"), time.Minute)
	defer cancel()
	in := &inferencepb.ModelInferRequest{ModelName: "traced-batch", Id: "trace-grpc-1", Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{{
		Name: "features", Datatype: "FP32", Shape: []int64{1, 4}, Contents: &inferencepb.InferTensorContents{Fp32Contents: []float32{41, 12, 70.5, 1}}}}}
	if _, err := inferencepb.NewGRPCInferenceServiceClient(conn).ModelInfer(ctx, in); err != nil {
		t.Fatalf("ModelInfer: %v", err)
	}
	root, all = waitTrace(t, rc, "trace-grpc-1", "slipway.queue", "slipway.batch", "slipway.replica", "slipway.model")
	if hex.EncodeToString(root.TraceId) != grpcTrace || root.Name != inferencepb.GRPCInferenceService_ModelInfer_FullMethodName {
		t.Errorf("gRPC server span %q in trace %x, want %s in %s", root.Name, root.TraceId, inferencepb.GRPCInferenceService_ModelInfer_FullMethodName, grpcTrace)
	}
	oneChild(t, "gRPC", oneChild(t, "gRPC", oneChild(t, "gRPC", root, all, "slipway.batch"), all, "slipway.replica"), all, "slipway.model")

	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, svc := range rc.service {
		if svc != "slipway-e2e" {
			t.Errorf("service.name %q, want OTEL_SERVICE_NAME's slipway-e2e", svc)
		}
	}
	for _, h := range rc.headers {
		if h.Get("X-Collector-Key") != "e2e-secret" {
			t.Errorf("export without OTEL_EXPORTER_OTLP_HEADERS' header: %v", h)
		}
	}
}
