package httpapi

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/inference"
	"github.com/slipway-ml/slipway/internal/monitor"
	"github.com/slipway-ml/slipway/internal/serving"
	"github.com/slipway-ml/slipway/internal/workerproto"
)

// The prediction endpoints. They are the hot path: no database access (tokens are cached), one decoder per
// protocol, the model call, one encoder.

// readPayload reads a prediction body up to the configured limit.
func (s *Server) readPayload(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	body, err := readBody(http.MaxBytesReader(w, r.Body, s.maxPayload), r.ContentLength, s.maxPayload)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, slipway.Errorf(slipway.ETOOLARGE, "payload larger than the limit of %d bytes (server flag --max-payload-bytes)", s.maxPayload)
		}
		return nil, slipway.Wrap(slipway.EINVALID, err, "could not read the request body: %v", err)
	}
	if len(body) == 0 {
		return nil, slipway.Errorf(slipway.EINVALID, "empty request body: send the input as JSON")
	}
	return body, nil
}

// readBody reads all of r. With a declared length within the limit it allocates exactly once (io.ReadAll starts
// at 512 bytes and grows: most prediction bodies are far smaller or far larger); the limit reader still
// guards a length that lies.
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
	rest, err := io.ReadAll(r) // more than declared: net/http normally refuses this first
	return append(buf, rest...), err
}

// router resolves {name} to a serving deployment's router; when there is none, the control plane says why.
func (s *Server) router(r *http.Request) (string, *serving.Router, error) {
	name, err := deploymentName(r)
	if err != nil {
		return name, nil, err
	}
	if rt := s.routers.Get(name); rt != nil {
		return name, rt, nil
	}
	return name, nil, s.deployments.NotServing(r.Context(), name)
}

func predictHeaders(w http.ResponseWriter, version int, replica string) {
	h := w.Header()
	h.Set("X-Slipway-Model-Version", strconv.Itoa(version))
	if replica != "" {
		h.Set("X-Slipway-Replica", replica)
	}
}

// modelErrorStatus: an exception from predict() about its input is the client's (400); anything else is the
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

func (s *Server) handlePredict(w http.ResponseWriter, r *http.Request) {
	s.monitored(w, r, monitor.ProtoPredict, s.predict)
}

func (s *Server) predict(w http.ResponseWriter, r *http.Request, ex *monitor.Exchange) {
	_, rt, err := s.router(r)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	route := rt.Pick()
	version := route.Version.Version
	ex.Serving(version)
	body, err := s.readPayload(w, r)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	ex.SetBytesIn(len(body))
	route.MirrorJSON(body)
	out, replica, err := route.Pool.PredictJSON(r.Context(), body)
	if err != nil {
		s.problem(w, r, predictError(err))
		return
	}
	ex.JSON(version, replica, body, out)
	predictHeaders(w, version, replica)
	setJSONContentType(w.Header())
	w.Write(out)
}

func (s *Server) handleInvocations(w http.ResponseWriter, r *http.Request) {
	s.monitored(w, r, monitor.ProtoInvocations, s.invocations)
}

func (s *Server) invocations(w http.ResponseWriter, r *http.Request, ex *monitor.Exchange) {
	_, rt, err := s.router(r)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	route := rt.Pick()
	v := route.Version
	ex.Serving(v.Version)
	body, err := s.readPayload(w, r)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	ex.SetBytesIn(len(body))
	var req *inference.MLflowRequest
	ct := mediaType(r)
	switch ct {
	case "text/csv":
		req, err = inference.DecodeMLflowCSV(body, v.InputSchema)
	case "application/json", "":
		req, err = inference.DecodeMLflowJSON(body, v.InputSchema)
	default:
		err = slipway.Errorf(slipway.EINVALID, "unsupported Content-Type %q: use application/json (dataframe_split, dataframe_records, instances, inputs) or text/csv", ct)
	}
	if err == nil && req.Tabular {
		err = inference.ValidateSchema(req.Columns, v.InputSchema)
	}
	if err != nil {
		s.problem(w, r, err)
		return
	}
	route.MirrorTensors(req.Columns)
	res, err := route.Pool.PredictTensors(r.Context(), req.Columns)
	if err != nil {
		s.problem(w, r, predictError(err))
		return
	}
	out, err := inference.EncodeMLflowResponse(res.Outputs)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	ex.Tensors(v.Version, res.Replica, req.Columns, res.Outputs)
	predictHeaders(w, v.Version, res.Replica)
	setJSONContentType(w.Header())
	w.Write(out)
}

// v2Error writes the Open Inference Protocol's error body {"error": "..."} with the status of err's code.
func (s *Server) v2Error(w http.ResponseWriter, r *http.Request, err error) {
	code := slipway.ErrorCode(err)
	status := statusOf(code)
	if code == slipway.EMODEL {
		status = http.StatusInternalServerError
	}
	if status == http.StatusInternalServerError && code != slipway.EMODEL {
		s.log.ErrorContext(r.Context(), "v2 request failed", "path", r.URL.Path, "request_id", requestID(r), "error", err)
	}
	if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	setJSONContentType(w.Header())
	w.WriteHeader(status)
	w.Write(inference.V2Error(slipway.ErrorMessage(err)))
}

// v2Target resolves a V2 model name (our deployment) to where the request goes: the version the path names
// (the deployment's or its canary's); without one, pick (inference) takes the canary's share of the requests
// at random, and otherwise the deployment's own version answers.
func (s *Server) v2Target(r *http.Request, pick bool) (*serving.Router, serving.Route, error) {
	name, rt, err := s.router(r)
	if err != nil {
		return nil, serving.Route{}, err
	}
	if want := r.PathValue("version"); want != "" {
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

func versionStrings(ns []int) []string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = strconv.Itoa(n)
	}
	return s
}

func (s *Server) handleV2Infer(w http.ResponseWriter, r *http.Request) {
	s.monitored(w, r, monitor.ProtoV2, s.v2Infer)
}

func (s *Server) v2Infer(w http.ResponseWriter, r *http.Request, ex *monitor.Exchange) {
	_, route, err := s.v2Target(r, true)
	if err != nil {
		s.v2Error(w, r, err)
		return
	}
	v := route.Version
	ex.Serving(v.Version)
	body, err := s.readPayload(w, r)
	if err != nil {
		s.v2Error(w, r, err)
		return
	}
	ex.SetBytesIn(len(body))
	req, err := inference.DecodeV2Request(body)
	if err != nil {
		s.v2Error(w, r, err)
		return
	}
	route.MirrorTensors(req.Inputs)
	res, err := route.Pool.PredictTensors(r.Context(), req.Inputs)
	if err != nil {
		s.v2Error(w, r, predictError(err))
		return
	}
	id := req.ID
	if id == "" {
		id = requestID(r)
	}
	out, err := inference.EncodeV2Response(r.PathValue("name"), strconv.Itoa(v.Version), id, res.Outputs, req.Outputs)
	if err != nil {
		s.v2Error(w, r, err)
		return
	}
	ex.SetRequestID(id)
	ex.Tensors(v.Version, res.Replica, req.Inputs, res.Outputs)
	predictHeaders(w, v.Version, res.Replica)
	setJSONContentType(w.Header())
	w.Write(out)
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
	w.Write(inference.EncodeV2ServerMetadata(Version, []string{}))
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
	v := route.Version
	versions := []string{strconv.Itoa(v.Version)}
	if r.PathValue("version") == "" {
		versions = versionStrings(rt.Versions())
	}
	inputs, outputs := schemaColumns(v.InputSchema), schemaColumns(v.OutputSchema)
	if _, rep := route.Pool.Hello(); rep != nil && len(rep.Hello().Inputs) > 0 {
		inputs, outputs = rep.Hello().Inputs, rep.Hello().Outputs
	}
	platform := map[string]string{slipway.RuntimeONNX: "onnxruntime_onnx", slipway.RuntimePython: "slipway_python"}[v.Runtime]
	setJSONContentType(w.Header())
	w.Write(inference.EncodeV2ModelMetadata(r.PathValue("name"), versions, platform, inputs, outputs))
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
