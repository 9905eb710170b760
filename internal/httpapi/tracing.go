package httpapi

import (
	"context"
	"net/http"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"

	"github.com/slipway-ml/slipway/internal/inference/inferencepb"
	"github.com/slipway-ml/slipway/internal/tracing"
)

// withTrace records each request as a server span when tracing is on: the client's W3C traceparent is its
// parent, the request id an attribute, the route, method and status its name and attributes. Off, it is one
// atomic load per request.
func (s *Server) withTrace(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !tracing.Enabled() {
			next.ServeHTTP(w, r)
			return
		}
		ctx, span := tracing.StartServer(r.Context(), propagation.HeaderCarrier(r.Header), r.Method, requestID(r),
			attribute.String("http.request.method", r.Method), attribute.String("url.path", r.URL.Path))
		defer span.End()
		rec := &statusRecorder{ResponseWriter: w}
		r = r.WithContext(ctx)
		next.ServeHTTP(rec, r)
		// The mux has routed r by now: the span is named after its route, not the path (bounded names).
		if r.Pattern != "" {
			route := r.Pattern
			if _, path, ok := strings.Cut(route, " "); ok {
				route = path
			}
			span.SetName(r.Method + " " + route)
			span.SetAttributes(attribute.String("http.route", route))
		}
		code := rec.status()
		span.SetAttributes(attribute.Int("http.response.status_code", code))
		if code >= 500 {
			span.SetStatus(codes.Error, http.StatusText(code))
		}
	})
}

// traceRequestID records a request id chosen after the span started (a V2 request's own "id").
func traceRequestID(ctx context.Context, id string) {
	if tracing.Enabled() {
		if span := trace.SpanFromContext(ctx); span.IsRecording() {
			span.SetAttributes(tracing.AttrRequestID.String(id))
		}
	}
}

// startModelInferSpan starts the server span of a gRPC ModelInfer, child of the traceparent in the call's
// metadata, if any.
func startModelInferSpan(ctx context.Context, model string) (context.Context, func(error)) {
	if !tracing.Enabled() {
		return ctx, func(error) {}
	}
	md, _ := metadata.FromIncomingContext(ctx)
	ctx, span := tracing.StartServer(ctx, metadataCarrier(md), inferencepb.GRPCInferenceService_ModelInfer_FullMethodName,
		infoOfContext(ctx).id, attribute.String("rpc.system", "grpc"),
		attribute.String("rpc.method", inferencepb.GRPCInferenceService_ModelInfer_FullMethodName), tracing.AttrDeployment.String(model))
	return ctx, func(err error) {
		tracing.Fail(span, err)
		span.End()
	}
}

// metadataCarrier reads W3C trace context from gRPC metadata (keys are lower case there, as in HTTP/2).
type metadataCarrier metadata.MD

func (m metadataCarrier) Get(key string) string {
	if v := metadata.MD(m).Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

func (m metadataCarrier) Set(key, value string) { metadata.MD(m).Set(key, value) }

func (m metadataCarrier) Keys() []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}
