// Package tracing exports OpenTelemetry traces of the prediction path over OTLP/HTTP when the standard
// OTEL_EXPORTER_OTLP_* variables ask for it (docs/monitoring.md), and costs nothing otherwise.
//
// Spans: the HTTP request or gRPC ModelInfer (a server span, child of the client's W3C traceparent when it
// sends one), the wait in the deployment's queue, the batch (a child of the request that led it, linked to every
// request it carried), the replica call and the model's time. The request id is an attribute of the request's
// span. While tracing is off, Start returns its context unchanged and a span that records nothing, and the
// callers build no attributes (they ask Enabled first): the request path allocates nothing for tracing.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// instrumentation names the tracer (the instrumentation scope of every span).
const instrumentation = "github.com/slipway-ml/slipway"

// Span names.
const (
	SpanQueue   = "slipway.queue"   // waiting for a replica, or for a batch to take the request
	SpanBatch   = "slipway.batch"   // one model call for several requests (batching on)
	SpanReplica = "slipway.replica" // the use of one replica: inputs adapted to it, the call, its release
	SpanModel   = "slipway.model"   // the model's time
)

// Attribute keys.
const (
	AttrRequestID    = attribute.Key("slipway.request_id")
	AttrDeployment   = attribute.Key("slipway.deployment")
	AttrReplica      = attribute.Key("slipway.replica")
	AttrBatchRows    = attribute.Key("slipway.batch.rows")
	AttrBatchSize    = attribute.Key("slipway.batch.requests")
	AttrModelTimeSrc = attribute.Key("slipway.model.time_source")
)

var (
	enabled atomic.Bool
	tracer  trace.Tracer = noop.NewTracerProvider().Tracer(instrumentation)
	// propagator reads and writes W3C trace context (traceparent, tracestate) and baggage.
	propagator propagation.TextMapPropagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
)

// Config says whether to trace; the OTel SDK reads the rest of its standard variables itself (endpoint,
// headers, timeout, compression, certificates, service name, resource attributes, sampler, batch delays).
type Config struct {
	Enabled bool
	Version string // service.version (empty: the binary's module version, when it has one)
}

// Setup starts exporting spans when cfg.Enabled. The returned function flushes the spans not yet sent and stops
// the exporter (within ctx); it must run before the process exits. With tracing off, it does nothing.
//
// Setup runs once, before the server serves: the tracer is not swapped under requests.
func Setup(ctx context.Context, cfg Config, log *slog.Logger) (func(context.Context) error, error) {
	if !cfg.Enabled {
		return func(context.Context) error { return nil }, nil
	}
	exp, err := otlptracehttp.New(ctx) // OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT, _HEADERS, _TIMEOUT, ...
	if err != nil {
		return nil, fmt.Errorf("tracing: OTLP exporter: %w", err)
	}
	if cfg.Version == "" {
		if bi, ok := debug.ReadBuildInfo(); ok {
			cfg.Version = bi.Main.Version
		}
	}
	res, err := resource.New(ctx,
		// Defaults first: OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES (WithFromEnv) override them.
		resource.WithAttributes(attribute.String("service.name", "slipway"), attribute.String("service.version", cfg.Version)),
		resource.WithFromEnv(), resource.WithTelemetrySDK(), resource.WithHost(), resource.WithProcessPID())
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	// No sampler given: the SDK takes OTEL_TRACES_SAMPLER / _ARG, by default parentbased_always_on.
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagator)
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn("tracing: spans not exported", "error", err)
	}))
	restore := Use(tp)
	return func(ctx context.Context) error {
		restore()
		if err := tp.Shutdown(ctx); err != nil {
			return fmt.Errorf("tracing: flush spans: %w", err)
		}
		return nil
	}, nil
}

// Use records spans with tp from now on (Setup's provider; tests and benchmarks give their own) and returns what
// turns tracing off again. It is not meant to run while requests are served.
func Use(tp trace.TracerProvider) (off func()) {
	tracer = tp.Tracer(instrumentation)
	enabled.Store(true)
	return func() {
		enabled.Store(false)
		tracer = noop.NewTracerProvider().Tracer(instrumentation)
	}
}

// Enabled says whether spans are recorded. Callers ask it before building attributes or links.
func Enabled() bool { return enabled.Load() }

// Start starts a span (an internal span unless opts say otherwise). With tracing off it returns ctx and a
// span that records nothing, without allocating.
func Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if !enabled.Load() {
		return ctx, noop.Span{}
	}
	return tracer.Start(ctx, name, opts...)
}

// StartServer starts the server span of an incoming call whose W3C trace context (traceparent) is in carrier:
// the client's span is its parent. name is the call (e.g. "POST /deployments/{name}/invocations").
func StartServer(ctx context.Context, carrier propagation.TextMapCarrier, name, requestID string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if !enabled.Load() {
		return ctx, noop.Span{}
	}
	ctx = propagator.Extract(ctx, carrier)
	attrs = append(attrs, AttrRequestID.String(requestID))
	return tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attrs...))
}

// StartAt is Start with a start time in the past (e.g. a queue wait measured from the request's arrival).
func StartAt(ctx context.Context, name string, at time.Time, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if !enabled.Load() {
		return ctx, noop.Span{}
	}
	return tracer.Start(ctx, name, trace.WithTimestamp(at), trace.WithAttributes(attrs...))
}

// Fail marks span as failed with err (nothing when err is nil or the span records nothing).
func Fail(span trace.Span, err error) {
	if err != nil && span.IsRecording() {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
}
