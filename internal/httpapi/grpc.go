package httpapi

import (
	"context"
	"errors"
	"net/http"
	"runtime/debug"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	_ "google.golang.org/grpc/encoding/gzip" // clients may compress (tritonclient's compression_algorithm="gzip")
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/inference"
	"github.com/slipway-ml/slipway/internal/inference/inferencepb"
	"github.com/slipway-ml/slipway/internal/monitor"
	"github.com/slipway-ml/slipway/internal/serving"
)

// The Open Inference Protocol over gRPC (inference.GRPCInferenceService, served on --grpc-addr). It is the
// HTTP V2 endpoints' twin and shares their path: the same token checks, roles and rate limits (the
// "authorization" metadata is the Authorization header), the same routers, pools and batcher, the same
// tensor checks (inference.DecodeGRPCRequest ends in the V2 request the HTTP decoders produce) and the same
// monitor, under the protocol label "grpc". Errors are gRPC status codes carrying the messages HTTP gives
// in its problems. It lives in this package because it is the API's other front door: auth, routing and
// monitoring are this package's, not something to duplicate.

// GRPCOptions are the gRPC server options the service needs: its interceptor (request ids, panics) and the
// prediction payload limit for received messages (--max-payload-bytes, as the HTTP body limit).
func (s *Server) GRPCOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.UnaryInterceptor(s.grpcIntercept), grpc.MaxRecvMsgSize(int(min(s.maxPayload, 1<<31-1)))}
}

// RegisterGRPC registers the inference service on g.
func (s *Server) RegisterGRPC(g grpc.ServiceRegistrar) {
	inferencepb.RegisterGRPCInferenceServiceServer(g, &grpcInference{s: s})
}

// grpcInference implements inference.GRPCInferenceService.
type grpcInference struct {
	inferencepb.UnimplementedGRPCInferenceServiceServer
	s *Server
}

// grpcIntercept gives each call a request id (the client's x-request-id if sane, as over HTTP), sends it back
// as header metadata, turns a panic into Internal as withRecover does over HTTP, and the call's
// slipway error into its gRPC status.
func (s *Server) grpcIntercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (res any, err error) {
	id := ""
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get("x-request-id"); len(v) > 0 && v[0] != "" && len(v[0]) <= 128 {
			id = v[0]
		}
	}
	if id == "" {
		id = newID()
	}
	_ = grpc.SetHeader(ctx, metadata.Pairs("x-request-id", id)) // fails only once headers are out: none are yet
	ctx = context.WithValue(ctx, ctxKey{}, &requestInfo{id: id})
	defer func() {
		if v := recover(); v != nil {
			s.log.ErrorContext(ctx, "panic in gRPC handler", "method", info.FullMethod, "panic", v, "stack", string(debug.Stack()))
			res, err = nil, status.Error(codes.Internal, "internal error")
		}
	}()
	res, err = handler(ctx, req)
	if err != nil {
		err = s.grpcStatus(ctx, info.FullMethod, err)
	}
	return res, err
}

// grpcCodes are the gRPC codes of the error codes; any other (EINTERNAL) is Internal.
var grpcCodes = map[string]codes.Code{
	slipway.EINVALID:      codes.InvalidArgument,
	slipway.EUNSUPPORTED:  codes.InvalidArgument,
	slipway.ENOTFOUND:     codes.NotFound,
	slipway.ECONFLICT:     codes.FailedPrecondition,
	slipway.EUNAUTHORIZED: codes.Unauthenticated,
	slipway.EFORBIDDEN:    codes.PermissionDenied,
	slipway.ETOOLARGE:     codes.ResourceExhausted,
	slipway.EOVERLOADED:   codes.ResourceExhausted,
	slipway.ERATELIMITED:  codes.ResourceExhausted,
	slipway.EUNAVAILABLE:  codes.Unavailable,
	slipway.ETIMEOUT:      codes.DeadlineExceeded,
	slipway.EMODEL:        codes.Internal,
}

// grpcStatus converts a handler's error into its status: a slipway error by its code, with its message; a
// context's error as gRPC's own; a status as it is.
func (s *Server) grpcStatus(ctx context.Context, method string, err error) error {
	if _, ok := status.FromError(err); ok {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return status.FromContextError(err).Err()
	}
	code := slipway.ErrorCode(err)
	c, ok := grpcCodes[code]
	if !ok {
		c = codes.Internal
		s.log.ErrorContext(ctx, "gRPC request failed", "method", method, "request_id", infoOfContext(ctx).id, "error", err)
	}
	return status.Error(c, slipway.ErrorMessage(err))
}

func infoOfContext(ctx context.Context) *requestInfo {
	if info, _ := ctx.Value(ctxKey{}).(*requestInfo); info != nil {
		return info
	}
	return &requestInfo{}
}

// grpcAdmit checks the call's bearer token (metadata "authorization") as requireRole does over HTTP for a
// prediction on deployment model ("" for the server's metadata): its role (in the deployment's project),
// its rate limit (refused with a retry-after trailer), a refusal in the audit log.
func (s *Server) grpcAdmit(ctx context.Context, method, model string) error {
	var h string
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get("authorization"); len(v) > 0 {
			h = v[0]
		}
	}
	t, err := s.authenticateHeader(ctx, h)
	if err == nil {
		infoOfContext(ctx).token = t
		kind := ""
		if model != "" {
			kind = slipway.KindDeployment
		}
		err = s.admitPrediction(ctx, t, kind, model)
	}
	if err == nil {
		var retry string
		if retry, err = s.limitPredictions(t); retry != "" {
			_ = grpc.SetTrailer(ctx, metadata.Pairs("retry-after", retry)) // only fails after the call's end
		}
	}
	if err == nil {
		return nil
	}
	if code := slipway.ErrorCode(err); s.audit != nil && code != slipway.ERATELIMITED { // a rate limit is load, not an access refusal
		e := &slipway.AuditEntry{Action: method, Method: "gRPC", Route: method, Status: slipway.ProblemStatus(code), Problem: code,
			RequestID: infoOfContext(ctx).id}
		if p, ok := peer.FromContext(ctx); ok {
			e.Client = p.Addr.String()
		}
		if t != nil {
			e.TokenID, e.TokenName, e.Role = t.ID, t.Name, t.Role
		}
		e.Project = infoOfContext(ctx).project
		s.audit.RecordLater(e)
	}
	return err
}

// ServerLive is public, as GET /v2/health/live is.
func (g *grpcInference) ServerLive(context.Context, *inferencepb.ServerLiveRequest) (*inferencepb.ServerLiveResponse, error) {
	return &inferencepb.ServerLiveResponse{Live: true}, nil
}

// ServerReady is public, as GET /v2/health/ready is: ready when the database answers.
func (g *grpcInference) ServerReady(ctx context.Context, _ *inferencepb.ServerReadyRequest) (*inferencepb.ServerReadyResponse, error) {
	ready := g.s.ready == nil || g.s.ready(ctx) == nil
	return &inferencepb.ServerReadyResponse{Ready: ready}, nil
}

func (g *grpcInference) ServerMetadata(ctx context.Context, _ *inferencepb.ServerMetadataRequest) (*inferencepb.ServerMetadataResponse, error) {
	if err := g.s.grpcAdmit(ctx, inferencepb.GRPCInferenceService_ServerMetadata_FullMethodName, ""); err != nil {
		return nil, err
	}
	return &inferencepb.ServerMetadataResponse{Name: "slipway", Version: Version, Extensions: []string{}}, nil
}

// ModelReady answers whether the deployment's (or the named version's) replicas can take a request; a
// deployment that does not exist or does not serve is an error, as over HTTP.
func (g *grpcInference) ModelReady(ctx context.Context, m *inferencepb.ModelReadyRequest) (*inferencepb.ModelReadyResponse, error) {
	if err := g.s.grpcAdmit(ctx, inferencepb.GRPCInferenceService_ModelReady_FullMethodName, m.Name); err != nil {
		return nil, err
	}
	if res, ok, err := grpcForward(ctx, g.s, m.Name, func(ctx context.Context, c inferencepb.GRPCInferenceServiceClient, opts ...grpc.CallOption) (*inferencepb.ModelReadyResponse, error) {
		return c.ModelReady(ctx, m, opts...)
	}); ok {
		return res, err
	}
	_, route, err := g.s.grpcTarget(ctx, m.Name, m.Version, false)
	if err != nil {
		return nil, err
	}
	return &inferencepb.ModelReadyResponse{Ready: route.Pool.Ready()}, nil
}

func (g *grpcInference) ModelMetadata(ctx context.Context, m *inferencepb.ModelMetadataRequest) (*inferencepb.ModelMetadataResponse, error) {
	if err := g.s.grpcAdmit(ctx, inferencepb.GRPCInferenceService_ModelMetadata_FullMethodName, m.Name); err != nil {
		return nil, err
	}
	if res, ok, err := grpcForward(ctx, g.s, m.Name, func(ctx context.Context, c inferencepb.GRPCInferenceServiceClient, opts ...grpc.CallOption) (*inferencepb.ModelMetadataResponse, error) {
		return c.ModelMetadata(ctx, m, opts...)
	}); ok {
		return res, err
	}
	rt, route, err := g.s.grpcTarget(ctx, m.Name, m.Version, false)
	if err != nil {
		return nil, err
	}
	md := modelMetadataOf(rt, route, m.Version != "")
	res := &inferencepb.ModelMetadataResponse{Name: m.Name, Versions: md.versions, Platform: md.platform}
	for _, c := range md.inputs {
		res.Inputs = append(res.Inputs, &inferencepb.ModelMetadataResponse_TensorMetadata{Name: c.Name, Datatype: c.Datatype, Shape: c.Shape})
	}
	for _, c := range md.outputs {
		res.Outputs = append(res.Outputs, &inferencepb.ModelMetadataResponse_TensorMetadata{Name: c.Name, Datatype: c.Datatype, Shape: c.Shape})
	}
	return res, nil
}

// grpcTarget is v2TargetNamed. A call about a deployment another server hosts was forwarded there before
// (grpcforward.go); one forwarded here that this server no longer serves (a stale view during a takeover) is
// answered "not serving" by v2TargetNamed, never forwarded again.
func (s *Server) grpcTarget(ctx context.Context, model, version string, pick bool) (*serving.Router, serving.Route, error) {
	return s.v2TargetNamed(ctx, model, version, pick)
}

// ModelInfer is POST /v2/models/{name}[/versions/{version}]/infer over gRPC, reported to the monitor with
// the HTTP status its error would have had (so that error rates, alerts and canary analysis count it alike).
func (g *grpcInference) ModelInfer(ctx context.Context, m *inferencepb.ModelInferRequest) (_ *inferencepb.ModelInferResponse, err error) {
	s := g.s
	ctx, endSpan := startModelInferSpan(ctx, m.ModelName)
	defer func() { endSpan(err) }()
	if err := s.grpcAdmit(ctx, inferencepb.GRPCInferenceService_ModelInfer_FullMethodName, m.ModelName); err != nil {
		return nil, err
	}
	// Before the monitor: the host records the call, as it does a forwarded HTTP call.
	if res, ok, err := grpcForward(ctx, s, m.ModelName, func(ctx context.Context, c inferencepb.GRPCInferenceServiceClient, opts ...grpc.CallOption) (*inferencepb.ModelInferResponse, error) {
		return c.ModelInfer(ctx, m, opts...)
	}); ok {
		return res, err
	}
	if s.monitor == nil {
		return s.modelInfer(ctx, m, nil)
	}
	ex := monitor.Exchange{Deployment: m.ModelName, Protocol: monitor.ProtoGRPC, Start: time.Now(),
		RequestID: infoOfContext(ctx).id, BytesIn: int64(proto.Size(m))}
	res, err := s.modelInfer(ctx, m, &ex)
	code, bytesOut := http.StatusOK, 0
	if err != nil {
		code = slipway.ProblemStatus(slipway.ErrorCode(err))
	} else {
		bytesOut = proto.Size(res)
	}
	s.monitor.Finish(&ex, code, int64(bytesOut))
	return res, err
}

// modelInfer routes m (its model_version if given, else the canary's share at random), decodes its
// tensors, runs them through the pool (with the shadow's copy) and encodes the answer: raw when the request
// was raw (Triton's and KServe's clients read raw_output_contents), else typed contents.
func (s *Server) modelInfer(ctx context.Context, m *inferencepb.ModelInferRequest, ex *monitor.Exchange) (*inferencepb.ModelInferResponse, error) {
	_, route, err := s.grpcTarget(ctx, m.ModelName, m.ModelVersion, true)
	if err != nil {
		return nil, err
	}
	v := route.Version
	ex.Serving(v.Version)
	req, err := inference.DecodeGRPCRequest(m)
	if err != nil {
		return nil, err
	}
	result, err := s.predictTensors(ctx, route, req.Inputs, ex)
	if err != nil {
		return nil, err
	}
	id := req.ID
	if id == "" {
		id = infoOfContext(ctx).id
	}
	res, err := inference.EncodeGRPCResponse(m.ModelName, strconv.Itoa(v.Version), id, result.Outputs, req, len(m.RawInputContents) > 0)
	if err != nil {
		return nil, err
	}
	md := metadata.Pairs("x-slipway-model-version", strconv.Itoa(v.Version))
	if result.Replica != "" {
		md.Append("x-slipway-replica", result.Replica)
	}
	_ = grpc.SetHeader(ctx, md) // headers are not out before the answer
	if req.ID != "" {
		traceRequestID(ctx, id)
	}
	ex.SetRequestID(id)
	ex.Tensors(v.Version, result.Replica, req.Inputs, result.Outputs)
	return res, nil
}
