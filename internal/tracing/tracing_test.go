package tracing

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// With tracing off, what the request path calls allocates nothing and hands its context on unchanged.
func TestOffCostsNoAllocation(t *testing.T) {
	if Enabled() {
		t.Fatal("tracing is on before Setup")
	}
	ctx := context.Background()
	header := http.Header{"Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}
	err := errors.New("boom")
	allocs := testing.AllocsPerRun(100, func() {
		c, span := StartServer(ctx, propagation.HeaderCarrier(header), "POST", "id")
		c2, q := Start(c, SpanQueue)
		Fail(q, err)
		q.End()
		if span.IsRecording() || c2 != ctx {
			t.Fatal("a span recorded, or the context changed, with tracing off")
		}
		span.End()
	})
	if allocs != 0 {
		t.Errorf("tracing off: %v allocations per request, want 0", allocs)
	}
}

// On, spans nest through the context and the client's traceparent is the server span's parent.
func TestOnRecordsNestedSpans(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	off := Use(tp)
	defer off()
	header := http.Header{"Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}
	ctx, srv := StartServer(context.Background(), propagation.HeaderCarrier(header), "POST /x", "req-1")
	_, q := Start(ctx, SpanQueue)
	Fail(q, errors.New("queue full"))
	q.End()
	srv.End()
	spans := exp.GetSpans()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want 2", len(spans))
	}
	queue, server := spans[0], spans[1]
	if server.SpanKind != trace.SpanKindServer || server.Parent.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" ||
		server.Parent.SpanID().String() != "00f067aa0ba902b7" || !server.Parent.IsRemote() {
		t.Errorf("server span: kind %v parent %v", server.SpanKind, server.Parent)
	}
	if queue.Parent.SpanID() != server.SpanContext.SpanID() || queue.Status.Description != "queue full" {
		t.Errorf("queue span: parent %v (server %v), status %+v", queue.Parent.SpanID(), server.SpanContext.SpanID(), queue.Status)
	}
	var id string
	for _, a := range server.Attributes {
		if a.Key == AttrRequestID {
			id = a.Value.AsString()
		}
	}
	if id != "req-1" {
		t.Errorf("request id attribute %q", id)
	}
	off()
	if Enabled() {
		t.Error("still on after off()")
	}
}

// BenchmarkOffPerRequest is what a batched prediction calls of this package with tracing off: the middleware's
// check, the server span, and the queue, batch, replica and model spans with their attribute checks.
func BenchmarkOffPerRequest(b *testing.B) {
	ctx := context.Background()
	header := http.Header{}
	err := errors.New("boom")
	b.ReportAllocs()
	for b.Loop() {
		if Enabled() {
			b.Fatal("on")
		}
		c, srv := StartServer(ctx, propagation.HeaderCarrier(header), "POST", "id")
		for _, name := range []string{SpanQueue, SpanBatch, SpanReplica, SpanModel} {
			_, s := Start(c, name)
			if s.IsRecording() {
				b.Fatal("recording")
			}
			Fail(s, err)
			s.End()
		}
		srv.End()
	}
}
