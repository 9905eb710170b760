package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/inference"
	"github.com/slipway-ml/slipway/internal/monitor"
	"github.com/slipway-ml/slipway/internal/serving"
	"github.com/slipway-ml/slipway/internal/workerproto"
)

// The prediction endpoints. They are the hot path: no database access (tokens are cached), the router
// looked up in memory, one decoder per protocol, the model call, one encoder. The three protocols share one
// skeleton (serve); a protocol value says what differs, with plain functions so that a request allocates
// nothing for it.

// protocol is what differs between the prediction endpoints.
type protocol struct {
	name string // the monitor's name for it (monitor.Proto*)
	// takes says whether the endpoint reads a body of media type mt (mediaType); others answer 415 unread.
	takes func(mt string) bool
	// refuse is the 415 for a body of a media type it does not take.
	refuse func(mt string) error
	// route picks where the request goes.
	route func(s *Server, r *http.Request) (serving.Route, error)
	// call decodes the body, of media type mt (one it takes), runs the model (with a copy to the shadow) and
	// encodes the answer; it returns the answer and the replica that gave it, and reports the exchange to ex.
	call func(s *Server, r *http.Request, route serving.Route, mt string, body []byte, ex *monitor.Exchange) ([]byte, string, error)
	// fail writes an error in the protocol's shape.
	fail func(s *Server, w http.ResponseWriter, r *http.Request, err error)
}

var (
	// predictProtocol is the OCI contract: the JSON body goes to predict() unchanged.
	predictProtocol = protocol{monitor.ProtoPredict, isJSONMedia, refuseMediaBut(jsonMedia), (*Server).pick, (*Server).callJSON, (*Server).problem}
	// invocationsProtocol is the MLflow scoring protocol: JSON or CSV dataframes, tensors to the model.
	invocationsProtocol = protocol{monitor.ProtoInvocations, isMLflowMedia, refuseMLflowMedia,
		(*Server).pick, (*Server).callMLflow, (*Server).problem}
	// v2Protocol is the Open Inference Protocol (V2/KServe) inference, where the path may name a version.
	v2Protocol = protocol{monitor.ProtoV2, isV2Media, refuseMediaBut(jsonMedia + ", or application/octet-stream with Inference-Header-Content-Length"),
		(*Server).v2Pick, (*Server).callV2, (*Server).v2Error}
)

// isV2Media: JSON, or the binary tensor data extension's JSON-then-binary body, which Triton's client sends
// as application/octet-stream (or undeclared).
func isV2Media(mt string) bool { return isJSONMedia(mt) || mt == "application/octet-stream" }

// jsonMedia names the media types a JSON prediction body may be declared as (isJSONMedia).
const jsonMedia = "application/json (or no Content-Type)"

// isJSONMedia: the prediction endpoints read JSON, declared as such (application/json, application/*+json) or
// not declared at all, or under the label generic clients put on any string they send, which a JSON body gets
// when its sender does not say what it is: curl -d's application/x-www-form-urlencoded and browsers'
// text/plain. The server checks the JSON itself either way.
func isJSONMedia(mt string) bool {
	switch mt {
	case "application/json", "", "application/x-www-form-urlencoded", "text/plain":
		return true
	}
	return strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json")
}

func isMLflowMedia(mt string) bool { return mt == "text/csv" || isJSONMedia(mt) }

// serializedObjectMedia are the media types of serialized program objects (Python pickles, Java serialization):
// loading one runs code of the sender's choosing, so no endpoint takes them, whatever the model.
var serializedObjectMedia = []string{"application/x-python-pickle", "application/python-pickle",
	"application/x-pickle", "application/pickle", "application/x-python-serialize", "application/x-java-serialized-object"}

// refuseMediaBut is the 415 of an endpoint that takes only what takesWhat names.
func refuseMediaBut(takesWhat string) func(mt string) error {
	return func(mt string) error {
		if slices.Contains(serializedObjectMedia, mt) {
			return slipway.Errorf(slipway.EUNSUPPORTED, "Content-Type %s is refused by design: serialized objects "+
				"(pickle and the like) run code when loaded, so Slipway never loads one from a request; send %s", mt, takesWhat)
		}
		return slipway.Errorf(slipway.EUNSUPPORTED, "unsupported Content-Type %q: send %s", mt, takesWhat)
	}
}

// refuseMLflowMedia is /invocations' 415, worded as MLflow's scoring server words it (clients and scripts
// written against MLflow match on it), in a problem like every other error.
func refuseMLflowMedia(mt string) error {
	msg := fmt.Sprintf("This predictor only supports the following content types: Types: ['text/csv', 'application/json']. Got '%s'.", mt)
	if slices.Contains(serializedObjectMedia, mt) {
		msg += " Serialized objects (pickle and the like) are refused by design: they run code when loaded."
	}
	return slipway.Errorf(slipway.EUNSUPPORTED, "%s", msg)
}

func (s *Server) handlePredict(w http.ResponseWriter, r *http.Request) {
	s.serve(w, r, &predictProtocol)
}

func (s *Server) handleInvocations(w http.ResponseWriter, r *http.Request) {
	if err := mlflowMediaParams(r.Header.Get("Content-Type")); err != nil {
		s.problem(w, r, err)
		return
	}
	s.serve(w, r, &invocationsProtocol)
}

// mlflowMediaParams refuses a Content-Type parameter other than charset with 415, as MLflow's scoring server
// does (its test_scoring_server_responds_to_invalid_content_type_request_with_unrecognized_content_param):
// MLflow 1.x read parameters such as format=pandas-records, and a client still sending one expects its body
// read that way, which 2.x (and Slipway) would not do.
func mlflowMediaParams(ct string) error {
	if !strings.Contains(ct, ";") { // the usual request: nothing to parse
		return nil
	}
	_, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return nil // malformed: the media type check of serve answers it
	}
	for k := range params {
		if k != "charset" {
			return refuseMLflowMedia(ct)
		}
	}
	return nil
}

func (s *Server) handleV2Infer(w http.ResponseWriter, r *http.Request) {
	s.serve(w, r, &v2Protocol)
}

// serve answers one prediction request in protocol p, reported to the monitor when there is one.
func (s *Server) serve(w http.ResponseWriter, r *http.Request, p *protocol) {
	if s.monitor == nil {
		s.predict(w, r, p, nil)
		return
	}
	mw := monitoredWriters.Get().(*monitoredWriter)
	mw.ResponseWriter = w
	mw.ex = monitor.Exchange{Deployment: r.PathValue("name"), Protocol: p.name, Start: time.Now(), RequestID: requestID(r), BytesIn: r.ContentLength}
	s.predict(mw, r, p, &mw.ex)
	s.monitor.Finish(&mw.ex, mw.status, mw.bytes)
	*mw = monitoredWriter{} // keeps neither the connection's writer nor the request's tensors alive
	monitoredWriters.Put(mw)
}

// monitoredWriters recycles the monitoredWriters (with their Exchange, ~250 bytes a request). Nothing holds
// one after serve: the handler's writes and the monitor's Finish are done by then, and the monitor copies what it
// keeps (the exchange's fields, not the exchange). A request whose handler panics leaves its writer to the GC.
var monitoredWriters = sync.Pool{New: func() any { return new(monitoredWriter) }}

// predict routes the request, reads its body, lets the protocol call the model and writes the answer.
func (s *Server) predict(w http.ResponseWriter, r *http.Request, p *protocol, ex *monitor.Exchange) {
	route, err := p.route(s, r)
	if err != nil {
		p.fail(s, w, r, err)
		return
	}
	version := route.Version.Version
	ex.Serving(version)
	// A holdout request is told so (its application withholds its action) and marked in its capture.
	heldOut := route.HeldOut(requestID(r))
	ex.SetHoldout(heldOut)
	rc := http.NewResponseController(w)
	if s.readBy > 0 {
		// A client sending its body a byte at a time is cut off, before any replica is taken (and so is one
		// whose unread body net/http discards after a 415).
		_ = rc.SetReadDeadline(time.Now().Add(s.readBy)) // ErrNotSupported: a test's recorder, no connection
	}
	mt := mediaType(r) // parsed once: call decodes by it
	if !p.takes(mt) {
		p.fail(s, w, r, p.refuse(mt))
		return
	}
	body, err := s.readPayload(w, r)
	if err != nil {
		p.fail(s, w, r, err)
		return
	}
	if s.readBy > 0 {
		// The body is in. net/http now reads on to notice a client hanging up, and a timeout there would cancel
		// the request: a model call may take its deployment's timeout_ms, longer than the body was allowed.
		_ = rc.SetReadDeadline(time.Time{})
	}
	ex.SetBytesIn(len(body))
	out, replica, err := p.call(s, r, route, mt, body, ex)
	if s.writeBy > 0 {
		// From the model's answer on, not from the request's start as http.Server.WriteTimeout would: the model
		// may take its deployment's timeout_ms. net/http clears the deadline once the response is out.
		_ = rc.SetWriteDeadline(time.Now().Add(s.writeBy))
	}
	if err != nil {
		p.fail(s, w, r, err)
		return
	}
	predictHeaders(w, version, replica)
	if heldOut {
		w.Header().Set("Slipway-Holdout", "true")
	}
	if n := infoOf(r).inferHeaderLen; n > 0 {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Inference-Header-Content-Length", strconv.Itoa(n))
	} else {
		setJSONContentType(w.Header())
	}
	w.Write(out)
}

// monitoredWriter records the status and size of a prediction response for the monitor. It is recycled
// (monitoredWriters), so monitoring allocates nothing on the request path of its own; everything else the monitor
// does there is atomic counters and non-blocking queue offers.
type monitoredWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
	ex     monitor.Exchange
}

func (m *monitoredWriter) WriteHeader(code int) {
	if m.status == 0 {
		m.status = code
	}
	m.ResponseWriter.WriteHeader(code)
}

func (m *monitoredWriter) Write(b []byte) (int, error) {
	if m.status == 0 {
		m.status = http.StatusOK
	}
	n, err := m.ResponseWriter.Write(b)
	m.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (m *monitoredWriter) Unwrap() http.ResponseWriter { return m.ResponseWriter }

// router resolves {name} to a serving deployment's router; when there is none, the control plane says why.
func (s *Server) router(r *http.Request) (string, *serving.Router, error) {
	return s.routerNamed(r.Context(), r.PathValue("name"))
}

// routerNamed resolves a deployment name (from a path, or a gRPC request's model_name) to its router.
func (s *Server) routerNamed(ctx context.Context, name string) (string, *serving.Router, error) {
	if err := slipway.ValidateName("deployment", name); err != nil {
		return name, nil, err
	}
	if rt := s.routers.Get(name); rt != nil {
		return name, rt, nil
	}
	return name, nil, s.deployments.NotServing(ctx, name)
}

// pick routes a request to the deployment's version, or to its canary for the canary's share.
func (s *Server) pick(r *http.Request) (serving.Route, error) {
	_, rt, err := s.router(r)
	if err != nil {
		return serving.Route{}, err
	}
	return rt.Pick(), nil
}

// callJSON gives the body to the model's predict() as is, once the server has checked that it is JSON: a body
// that is not is the client's mistake (400), which must not reach the model and come back as its failure (500).
func (s *Server) callJSON(r *http.Request, route serving.Route, _ string, body []byte, ex *monitor.Exchange) ([]byte, string, error) {
	if err := inference.ValidJSON(body); err != nil {
		return nil, "", err
	}
	route.MirrorJSON(body, s.monitor.ShadowSink(ex, route.ShadowCompares()))
	out, replica, err := route.Pool.PredictJSON(r.Context(), body)
	if err != nil {
		return nil, "", predictError(err)
	}
	ex.JSON(route.Version.Version, replica, body, out)
	return out, replica, nil
}

func (s *Server) callMLflow(r *http.Request, route serving.Route, mt string, body []byte, ex *monitor.Exchange) ([]byte, string, error) {
	v := route.Version
	var req *inference.MLflowRequest
	var err error
	if mt == "text/csv" { // else JSON: predict took only isMLflowMedia
		req, err = inference.DecodeMLflowCSV(body, v.InputSchema)
	} else {
		req, err = inference.DecodeMLflowJSON(body, v.InputSchema)
	}
	if err == nil && req.Tabular {
		err = inference.ValidateSchema(req.Columns, v.InputSchema)
	}
	if err != nil {
		return nil, "", err
	}
	var res serving.Result
	if len(req.Params) > 0 {
		res, err = s.predictTensorsParams(r.Context(), route, req.Columns, req.Params)
	} else {
		res, err = s.predictTensors(r.Context(), route, req.Columns, ex)
	}
	if err != nil {
		return nil, "", err
	}
	out, err := inference.EncodeMLflowResponse(res.Outputs)
	if err != nil {
		return nil, "", err
	}
	ex.Tensors(v.Version, res.Replica, req.Columns, res.Outputs)
	return out, res.Replica, nil
}

func (s *Server) callV2(r *http.Request, route serving.Route, mt string, body []byte, ex *monitor.Exchange) ([]byte, string, error) {
	req, err := decodeV2Request(r, mt, body)
	if err != nil {
		return nil, "", err
	}
	res, err := s.predictTensors(r.Context(), route, req.Inputs, ex)
	if err != nil {
		return nil, "", err
	}
	id := req.ID
	if id == "" {
		id = requestID(r)
	}
	v := route.Version
	out, jsonLen, err := inference.EncodeV2BinaryResponse(r.PathValue("name"), strconv.Itoa(v.Version), id, res.Outputs, req)
	if err != nil {
		return nil, "", err
	}
	if jsonLen < len(out) {
		infoOf(r).inferHeaderLen = jsonLen // predict writes the extension's header and content type
	}
	if req.ID != "" {
		traceRequestID(r.Context(), id)
	}
	ex.SetRequestID(id)
	ex.Tensors(v.Version, res.Replica, req.Inputs, res.Outputs)
	return out, res.Replica, nil
}

// decodeV2Request decodes a V2 inference body: JSON, or with Inference-Header-Content-Length, the binary
// tensor data extension.
func decodeV2Request(r *http.Request, mt string, body []byte) (*inference.V2Request, error) {
	h := r.Header.Get("Inference-Header-Content-Length")
	if h == "" {
		if mt == "application/octet-stream" {
			return nil, slipway.Errorf(slipway.EINVALID, "a binary body needs the header Inference-Header-Content-Length: the length of its JSON part")
		}
		return inference.DecodeV2Request(body)
	}
	n, err := strconv.Atoi(h)
	if err != nil {
		return nil, slipway.Errorf(slipway.EINVALID, "Inference-Header-Content-Length %q: want the length of the body's JSON part in bytes", h)
	}
	return inference.DecodeV2BinaryRequest(body, n)
}

// predictTensors runs in on the route's pool, with a copy to its shadow (whose answer the monitor keeps when
// the shadow compares).
func (s *Server) predictTensors(ctx context.Context, route serving.Route, in []workerproto.Tensor, ex *monitor.Exchange) (serving.Result, error) {
	route.MirrorTensors(in, s.monitor.ShadowSink(ex, route.ShadowCompares()))
	res, err := route.Pool.PredictTensors(ctx, in)
	if err != nil {
		return res, predictError(err)
	}
	return res, nil
}

// predictTensorsParams is predictTensors for an MLflow request with "params": passed to predict(data,
// params=...), unbatched, and not mirrored to a shadow (whose model may not take params; a comparison of
// answers to different calls would mean nothing).
func (s *Server) predictTensorsParams(ctx context.Context, route serving.Route, in []workerproto.Tensor, params map[string]any) (serving.Result, error) {
	body, err := json.Marshal(params)
	if err != nil {
		return serving.Result{}, slipway.Wrap(slipway.EINVALID, err, "params: %v", err)
	}
	res, err := route.Pool.PredictTensorsParams(ctx, in, body)
	if err != nil {
		return res, predictError(err)
	}
	return res, nil
}

// readPayload reads a prediction body up to the configured limit.
func (s *Server) readPayload(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	src := r.Body
	if r.ContentLength <= 0 || r.ContentLength > s.maxPayload {
		// A declared length within the limit needs no limit reader: net/http's body stops at the declared
		// length (the usual prediction request, which saves the reader's allocation and indirection).
		src = http.MaxBytesReader(w, r.Body, s.maxPayload)
	}
	body, err := readBody(src, r.ContentLength, s.maxPayload)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, slipway.Errorf(slipway.ETOOLARGE, "payload larger than the limit of %d bytes (server flag --max-payload-bytes)", s.maxPayload)
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, slipway.Wrap(slipway.EINVALID, err, "the request body did not arrive within %s (server flag --payload-read-timeout)", s.readBy)
		}
		return nil, slipway.Wrap(slipway.EINVALID, err, "could not read the request body: %v", err)
	}
	if len(body) == 0 {
		return nil, slipway.Errorf(slipway.EINVALID, "empty request body: send the input as JSON")
	}
	return body, nil
}

// readBody reads all of r. With a declared length within the limit it allocates exactly once (io.ReadAll starts
// at 512 bytes and grows: most prediction bodies are far smaller or far larger) and refuses more than limit bytes
// from a reader whose length lies (http.MaxBytesError).
func readBody(r io.Reader, declared, limit int64) ([]byte, error) {
	if declared <= 0 || declared > limit {
		return io.ReadAll(r)
	}
	buf := make([]byte, declared+1) // +1: a body longer than declared reads on below
	n, err := io.ReadFull(r, buf)
	switch {
	case int64(n) == declared && errors.Is(err, io.ErrUnexpectedEOF):
		return buf[:n], nil
	case int64(n) < declared:
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("body ended after %d of the %d bytes its Content-Length declares: %w", n, declared, err)
	case err != nil:
		return nil, err
	}
	// More than declared: net/http's body never gives this (it stops at the declared length), but another
	// reader may, and readPayload gives it no limit reader: the limit is kept here.
	rest, err := io.ReadAll(io.LimitReader(r, limit-declared))
	if err == nil && int64(len(buf)+len(rest)) > limit {
		err = &http.MaxBytesError{Limit: limit}
	}
	return append(buf, rest...), err
}

// predictHeaders names the model version and replica that answered. The keys are assigned in canonical form
// (Header.Set canonicalizes them on every request) and the usual version numbers come from versionHeaders.
func predictHeaders(w http.ResponseWriter, version int, replica string) {
	h := w.Header()
	h["X-Slipway-Model-Version"] = versionHeader(version)
	if replica != "" {
		h["X-Slipway-Replica"] = []string{replica}
	}
}

// versionHeaders are the X-Slipway-Model-Version value lists of the first versions, shared by every response
// as jsonContentType is (net/http copies a handler's header values when it writes them).
var versionHeaders = func() [][]string {
	vs := make([][]string, 256)
	for i := range vs {
		vs[i] = []string{strconv.Itoa(i)}
	}
	return vs
}()

func versionHeader(version int) []string {
	if version >= 0 && version < len(versionHeaders) {
		return versionHeaders[version][:1:1] // cap 1: an Add elsewhere copies instead of writing into the shared array
	}
	return []string{strconv.Itoa(version)}
}

// predictError: an exception from predict() about its input is the client's (400); anything else is the
// model's (500). Either way the model's own message is returned: it is what the caller needs to fix the input.
func predictError(err error) error {
	var me *workerproto.ModelError
	if !errors.As(err, &me) {
		return err
	}
	switch me.Type {
	case "ValueError", "KeyError", "TypeError", "IndexError", "InputError":
		return slipway.Errorf(slipway.EINVALID, "the model rejected the input: %s: %s", me.Type, me.Message)
	}
	return slipway.Errorf(slipway.EMODEL, "the model failed: %s: %s", me.Type, me.Message)
}

// v2Error writes the Open Inference Protocol's error body {"error": "..."} with the status of err's code.
func (s *Server) v2Error(w http.ResponseWriter, r *http.Request, err error) {
	code := slipway.ErrorCode(err)
	status := slipway.ProblemStatus(code)
	if status == http.StatusInternalServerError && code != slipway.EMODEL { // the model's failure is the model's, not ours
		s.log.ErrorContext(r.Context(), "v2 request failed", "path", r.URL.Path, "request_id", requestID(r), "error", err)
	}
	setRetryAfter(w.Header(), status)
	setJSONContentType(w.Header())
	w.WriteHeader(status)
	w.Write(inference.V2Error(slipway.ErrorMessage(err)))
}

// v2Target resolves a V2 model name (our deployment) to where the request goes: the version the path names
// (the deployment's or its canary's); without one, pick (inference) takes the canary's share of the requests
// at random, and otherwise the deployment's own version answers.
func (s *Server) v2Target(r *http.Request, pick bool) (*serving.Router, serving.Route, error) {
	return s.v2TargetNamed(r.Context(), r.PathValue("name"), r.PathValue("version"), pick)
}

// v2TargetNamed is v2Target for a model name and version (empty: none named) given apart from a path.
func (s *Server) v2TargetNamed(ctx context.Context, model, want string, pick bool) (*serving.Router, serving.Route, error) {
	name, rt, err := s.routerNamed(ctx, model)
	if err != nil {
		return nil, serving.Route{}, err
	}
	if want != "" {
		if n, err := strconv.Atoi(want); err == nil {
			if route, ok := rt.ForVersion(n); ok {
				return rt, route, nil
			}
		}
		return nil, serving.Route{}, slipway.Errorf(slipway.ENOTFOUND, "model %s serves version %s, not %s", name, strings.Join(versionStrings(rt.Versions()), " and "), want)
	}
	if pick {
		return rt, rt.Pick(), nil
	}
	return rt, rt.Main(), nil
}

// v2Pick routes an inference request: to the version the path names, else as pick does.
func (s *Server) v2Pick(r *http.Request) (serving.Route, error) {
	_, route, err := s.v2Target(r, true)
	return route, err
}

func versionStrings(ns []int) []string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = strconv.Itoa(n)
	}
	return s
}

func (s *Server) handleV2Live(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]bool{"live": true})
}

func (s *Server) handleV2Ready(w http.ResponseWriter, r *http.Request) {
	if s.ready != nil {
		if err := s.ready(r.Context()); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]bool{"ready": false})
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]bool{"ready": true})
}

func (s *Server) handleV2Server(w http.ResponseWriter, r *http.Request) {
	setJSONContentType(w.Header())
	w.Write(inference.EncodeV2ServerMetadata(Version, []string{"binary_tensor_data"}))
}

func (s *Server) handleV2ModelReady(w http.ResponseWriter, r *http.Request) {
	_, route, err := s.v2Target(r, false)
	if err != nil {
		s.v2Error(w, r, err)
		return
	}
	status := http.StatusOK
	if !route.Pool.Ready() {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, map[string]any{"name": r.PathValue("name"), "ready": status == http.StatusOK})
}

func (s *Server) handleV2ModelMetadata(w http.ResponseWriter, r *http.Request) {
	rt, route, err := s.v2Target(r, false)
	if err != nil {
		s.v2Error(w, r, err)
		return
	}
	md := modelMetadataOf(rt, route, r.PathValue("version") != "")
	setJSONContentType(w.Header())
	w.Write(inference.EncodeV2ModelMetadata(r.PathValue("name"), md.versions, md.platform, md.inputs, md.outputs))
}

// modelMetadata is what the V2 model metadata says of a deployment, over HTTP and gRPC.
type modelMetadata struct {
	versions        []string
	platform        string
	inputs, outputs []workerproto.Column
}

// modelMetadataOf describes route's version: its tensors as its replica reports them (else its schemas),
// and the versions the deployment serves (only route's when the request named it).
func modelMetadataOf(rt *serving.Router, route serving.Route, versionNamed bool) modelMetadata {
	v := route.Version
	md := modelMetadata{versions: []string{strconv.Itoa(v.Version)}, inputs: schemaColumns(v.InputSchema), outputs: schemaColumns(v.OutputSchema),
		platform: map[string]string{slipway.RuntimeONNX: "onnxruntime_onnx", slipway.RuntimePython: "slipway_python"}[v.Runtime]}
	if !versionNamed {
		md.versions = versionStrings(rt.Versions())
	}
	if _, rep := route.Pool.Hello(); rep != nil && len(rep.Hello().Inputs) > 0 {
		md.inputs, md.outputs = rep.Hello().Inputs, rep.Hello().Outputs
	}
	return md
}

// schemaColumns describes a schema in V2 terms (datatype names, shapes) for the model metadata endpoint.
func schemaColumns(s *slipway.Schema) []workerproto.Column {
	if s == nil {
		return []workerproto.Column{}
	}
	out := make([]workerproto.Column, 0, len(s.Columns))
	for _, c := range s.Columns {
		shape := c.Shape
		if shape == nil {
			shape = []int64{-1}
		}
		out = append(out, workerproto.Column{Name: c.Name, Datatype: datatypeOf(c.Dtype), Shape: shape})
	}
	return out
}

// Version is the server version reported by GET /v2.
var Version = "dev"

// datatypeOf maps a schema dtype (numpy style) to the Open Inference Protocol datatype.
func datatypeOf(dtype string) string {
	switch dtype {
	case "string", "object", "str":
		return "BYTES"
	case "bool":
		return "BOOL"
	case "float16", "float32", "float64":
		return "FP" + dtype[5:]
	}
	return strings.ToUpper(dtype)
}

// jsonContentType is the one Content-Type value of every JSON prediction response. Header values are not
// modified after a handler sets them (net/http copies the map before writing it), so all responses share it
// instead of allocating one slice each.
var jsonContentType = []string{"application/json"}

func setJSONContentType(h http.Header) { h["Content-Type"] = jsonContentType }
