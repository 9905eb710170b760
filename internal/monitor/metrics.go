package monitor

import (
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/workerproto"
)

// Exchange is one prediction request as the monitor sees it. The HTTP layer fills it (nil-safe setters) and calls
// Finish when the response is written.
type Exchange struct {
	Deployment string
	Protocol   string
	Start      time.Time
	RequestID  string
	BytesIn    int64

	known   bool // the deployment exists and serves: only then are metrics labelled with its name
	version int
	replica string
	inputs  []workerproto.Tensor
	outputs []workerproto.Tensor
	inJSON  []byte
	outJSON []byte
	shadow  uint64 // the shadow join's key when the shadow's answer is compared (0: not)
	holdout bool   // the request is in the deployment's holdout share
}

// SetHoldout marks the request as one of the deployment's holdout share (kept in its capture).
func (e *Exchange) SetHoldout(holdout bool) {
	if e != nil {
		e.holdout = holdout
	}
}

// Serving marks the deployment as found and serving version (before the model call).
func (e *Exchange) Serving(version int) {
	if e != nil {
		e.known, e.version = true, version
	}
}

// SetBytesIn records the request body's size.
func (e *Exchange) SetBytesIn(n int) {
	if e != nil {
		e.BytesIn = int64(n)
	}
}

// SetRequestID replaces the request id (the Open Inference Protocol's own "id").
func (e *Exchange) SetRequestID(id string) {
	if e != nil && id != "" {
		e.RequestID = id
	}
}

// Tensors records a tensor prediction for capture. The tensors must not be modified afterwards.
func (e *Exchange) Tensors(version int, replica string, in, out []workerproto.Tensor) {
	if e != nil {
		e.version, e.replica, e.inputs, e.outputs = version, replica, in, out
	}
}

// JSON records an OCI predict() call (opaque JSON bodies) for capture. The bodies must not be modified afterwards.
func (e *Exchange) JSON(version int, replica string, in, out []byte) {
	if e != nil {
		e.version, e.replica, e.inJSON, e.outJSON = version, replica, in, out
	}
}

// depState is a deployment's live monitoring state.
type depState struct {
	name                  string
	pending               *pending
	sample                atomic.Uint64 // capture when rand.Uint64() < sample; MaxUint64 = always
	captures, accessLines perSecond     // caps per second
	shadowPairs           perSecond     // compared shadow answers per second (the capture cap)
	minute                atomic.Pointer[minuteAcc]
	reqs                  sync.Map // counterKey → prometheus.Counter
	versions              sync.Map // version (int) → *versionAcc: what canary analysis compares
	latency               [len(protoNames)]prometheus.Observer
	bytesIn               prometheus.Counter
	bytesOut,
	captured, dropped, rejected, timeouts, rateLimited prometheus.Counter
	batchRows prometheus.Observer
	stages    [len(stageNames)]prometheus.Observer
}

// stageNames are the stage label values of slipway_replica_stage_seconds, in the order of depState.stages.
var stageNames = [...]string{"decode", "predict", "encode", "call", "transport"}

// latency buckets of the minute roll-up: upper bounds growing by 10% from 50 µs (percentiles within 10%).
const (
	latBuckets = 180
	latFirst   = 50e-6
	latGrowth  = 1.1
)

var latBounds = func() []float64 {
	b := make([]float64, latBuckets)
	v := latFirst
	for i := range b {
		b[i] = v
		v *= latGrowth
	}
	return b
}()

func latBucket(sec float64) int {
	if sec <= latFirst {
		return 0
	}
	i := int(math.Ceil(math.Log(sec/latFirst) / math.Log(latGrowth)))
	return min(i, latBuckets-1)
}

// versionAcc counts a deployment version's requests since the server started, with atomics.
type versionAcc struct {
	requests, errors, clientErrors atomic.Int64
	lat                            [latBuckets]atomic.Int64 // the requests that were not the client's mistake
}

// VersionTotals are a deployment version's requests since the server started: all, answered 5xx (the server's
// or the model's failures), answered 4xx (the client's mistakes), and the requests that were not the client's
// mistake by latency bucket. Differences of two snapshots describe the interval between them.
type VersionTotals struct {
	Requests, Errors, ClientErrors int64
	Latency                        [latBuckets]int64
}

// Served is the number of requests that were not the client's mistake: what a version's error rate is out of.
func (t VersionTotals) Served() int64 { return t.Requests - t.ClientErrors }

// Sub returns the requests counted in t and not in earlier.
func (t VersionTotals) Sub(earlier VersionTotals) VersionTotals {
	d := VersionTotals{Requests: t.Requests - earlier.Requests, Errors: t.Errors - earlier.Errors,
		ClientErrors: t.ClientErrors - earlier.ClientErrors}
	for i := range d.Latency {
		d.Latency[i] = t.Latency[i] - earlier.Latency[i]
	}
	return d
}

// LatencyQuantile is the q-quantile of the latency in seconds (within 10%), 0 without requests.
func (t VersionTotals) LatencyQuantile(q float64) float64 {
	return bucketQuantile(t.Latency[:], q, math.Inf(1))
}

// bucketQuantile is the upper bound of the bucket holding the q-quantile of counts, at most limit.
func bucketQuantile(counts []int64, q, limit float64) float64 {
	var total int64
	for _, c := range counts {
		total += c
	}
	if total == 0 {
		return 0
	}
	rank := max(int64(math.Ceil(q*float64(total))), 1)
	var cum int64
	for i, c := range counts {
		if cum += c; cum >= rank {
			return math.Min(latBounds[i], limit)
		}
	}
	return limit
}

// VersionTotals returns the requests a version of deployment has answered since the server started.
func (s *Service) VersionTotals(deployment string, version int) VersionTotals {
	var t VersionTotals
	if s == nil {
		return t
	}
	v, ok := s.state(deployment).versions.Load(version)
	if !ok {
		return t
	}
	a := v.(*versionAcc)
	t.Requests, t.Errors, t.ClientErrors = a.requests.Load(), a.errors.Load(), a.clientErrors.Load()
	for i := range t.Latency {
		t.Latency[i] = a.lat[i].Load()
	}
	return t
}

func (d *depState) version(v int) *versionAcc {
	if a, ok := d.versions.Load(v); ok {
		return a.(*versionAcc)
	}
	a, _ := d.versions.LoadOrStore(v, &versionAcc{})
	return a.(*versionAcc)
}

// minuteAcc accumulates one deployment-minute with atomics.
type minuteAcc struct {
	start                                         int64 // unix minute
	requests, s2xx, s4xx, s5xx, rejected, timeout atomic.Int64
	bytesIn, bytesOut                             atomic.Int64
	latSumNS, latMaxNS                            atomic.Int64
	lat                                           [latBuckets]atomic.Int64
	queueMax, batches, batchRows, restarts        atomic.Int64
	captured, dropped                             atomic.Int64
}

func protoIndex(p string) int {
	switch p {
	case ProtoInvocations:
		return 1
	case ProtoV2:
		return 2
	case ProtoGRPC:
		return 3
	}
	return 0
}

var protoNames = [...]string{ProtoPredict, ProtoInvocations, ProtoV2, ProtoGRPC}

// state returns (creating) a deployment's state.
func (s *Service) state(name string) *depState {
	if v, ok := s.deps.Load(name); ok {
		return v.(*depState)
	}
	m := s.metrics
	d := &depState{name: name, pending: &s.pending,
		bytesIn:     m.bytesIn.WithLabelValues(name),
		bytesOut:    m.bytesOut.WithLabelValues(name),
		captured:    m.captured.WithLabelValues(name),
		dropped:     m.dropped.WithLabelValues(name),
		rateLimited: m.rateLimited.WithLabelValues(name),
		rejected:    m.rejected.WithLabelValues(name),
		timeouts:    m.timeouts.WithLabelValues(name),
		batchRows:   m.batchRows.WithLabelValues(name),
	}
	for i, p := range protoNames {
		d.latency[i] = m.latency.WithLabelValues(name, p)
	}
	for i, st := range stageNames {
		d.stages[i] = m.stages.WithLabelValues(name, st)
	}
	d.apply(slipway.DefaultMonitoringSettings())
	if st, err := s.Settings(s.ctx, name); err == nil {
		d.apply(st)
	}
	v, _ := s.deps.LoadOrStore(name, d)
	return v.(*depState)
}

// apply makes the request path follow a deployment's settings.
func (d *depState) apply(st slipway.MonitoringSettings) {
	d.setSampling(st.SamplingRate)
	d.captures.limit.Store(st.CaptureMaxPerSecond)
	d.shadowPairs.limit.Store(st.CaptureMaxPerSecond)
	d.accessLines.limit.Store(st.AccessLogMaxPerSecond)
}

// perSecond lets at most limit events through per wall-clock second, without locks.
type perSecond struct {
	limit, second, count atomic.Int64
}

func (p *perSecond) allow(now time.Time) bool {
	if sec := now.Unix(); p.second.Load() != sec {
		p.second.Store(sec) // a race between two requests at the turn of a second lets a few more through
		p.count.Store(0)
	}
	return p.count.Add(1) <= p.limit.Load()
}

// sampled draws whether one request is kept (captured, or its shadow's answer compared), at the deployment's
// sampling rate.
func (d *depState) sampled() bool {
	th := d.sample.Load()
	return th == math.MaxUint64 || (th != 0 && rand.Uint64() < th)
}

func (d *depState) setSampling(rate float64) {
	switch {
	case rate >= 1:
		d.sample.Store(math.MaxUint64)
	case rate <= 0:
		d.sample.Store(0)
	default:
		d.sample.Store(uint64(rate * math.MaxUint64))
	}
}

func (d *depState) acc(now time.Time) *minuteAcc {
	m := now.Unix() / 60
	a := d.minute.Load()
	for a == nil || a.start < m {
		fresh := &minuteAcc{start: m}
		if d.minute.CompareAndSwap(a, fresh) {
			// The replaced minute is picked up by the roll-up through the pending list.
			if a != nil {
				d.pending.add(d.name, a)
			}
			return fresh
		}
		a = d.minute.Load()
	}
	return a
}

// pending holds finished minutes until the roll-up writes them.
type pending struct {
	mu    sync.Mutex
	items []pendingMinute
}

type pendingMinute struct {
	dep string
	acc *minuteAcc
}

func (p *pending) add(dep string, a *minuteAcc) {
	p.mu.Lock()
	p.items = append(p.items, pendingMinute{dep, a})
	p.mu.Unlock()
}

// peek returns the pending minutes; they stay pending until drop, after they are stored, so that a reader
// never misses a minute that is between memory and the database.
func (p *pending) peek() []pendingMinute {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]pendingMinute(nil), p.items...)
}

// drop removes minutes that have been stored.
func (p *pending) drop(done []pendingMinute) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.items = slices.DeleteFunc(p.items, func(it pendingMinute) bool {
		return slices.ContainsFunc(done, func(d pendingMinute) bool { return d.acc == it.acc })
	})
}

// counterKey picks a deployment's request counter: a canary's requests count under its own version.
type counterKey struct{ proto, code, version int }

func (d *depState) counter(s *Service, proto string, code, version int) prometheus.Counter {
	key := counterKey{protoIndex(proto), code, version}
	if c, ok := d.reqs.Load(key); ok {
		return c.(prometheus.Counter)
	}
	c := s.metrics.requests.WithLabelValues(d.name, proto, strconv.Itoa(code), strconv.Itoa(version))
	d.reqs.Store(key, c)
	return c
}

// Finish records a finished prediction request: counters and latency (memory only), then offers the access log
// line and, if sampled, the capture to their queues without waiting.
func (s *Service) Finish(e *Exchange, status int, bytesOut int64) {
	if s == nil || e == nil || !e.known {
		return
	}
	now := s.now()
	elapsed := now.Sub(e.Start)
	if status == 0 {
		status = 200
	}
	d := s.state(e.Deployment)
	d.counter(s, e.Protocol, status, e.version).Inc()
	sec := elapsed.Seconds()
	d.latency[protoIndex(e.Protocol)].Observe(sec)
	d.bytesIn.Add(float64(max(e.BytesIn, 0)))
	d.bytesOut.Add(float64(bytesOut))
	a := d.acc(now)
	a.requests.Add(1)
	switch {
	case status < 300:
		a.s2xx.Add(1)
	case status < 500:
		a.s4xx.Add(1)
	default:
		a.s5xx.Add(1)
	}
	a.bytesIn.Add(max(e.BytesIn, 0))
	a.bytesOut.Add(bytesOut)
	ns := elapsed.Nanoseconds()
	a.latSumNS.Add(ns)
	for {
		old := a.latMaxNS.Load()
		if ns <= old || a.latMaxNS.CompareAndSwap(old, ns) {
			break
		}
	}
	bucket := latBucket(sec)
	a.lat[bucket].Add(1)
	va := d.version(e.version)
	va.requests.Add(1)
	switch {
	case status >= 500:
		va.errors.Add(1)
	case status >= 400: // the client's mistake, quick to answer: it says nothing of the version's latency
		va.clientErrors.Add(1)
	}
	if status < 400 || status >= 500 {
		va.lat[bucket].Add(1)
	}

	if status >= 300 || d.accessLines.allow(now) {
		s.offerLog(&slipway.LogLine{Deployment: e.Deployment, Time: now, Kind: slipway.LogAccess, Replica: e.replica,
			RequestID: e.RequestID, Line: accessLine(e, status, elapsed, bytesOut),
			Fields: accessFields(e, status, elapsed, bytesOut)})
	}

	if e.shadow != 0 {
		s.liveAnswered(e, status, elapsed)
	}
	if status >= 300 || (e.inputs == nil && e.inJSON == nil) {
		return
	}
	if !d.sampled() {
		return
	}
	if !d.captures.allow(now) {
		d.rateLimited.Inc()
		return
	}
	c := &slipway.Capture{Deployment: e.Deployment, RequestID: e.RequestID, ModelVersion: e.version, Time: e.Start,
		Protocol: e.Protocol, LatencyMS: float64(elapsed.Microseconds()) / 1000, Holdout: e.holdout}
	select {
	case s.captures <- captureItem{c: c, in: e.inputs, out: e.outputs, inJSON: e.inJSON, outJSON: e.outJSON}:
		d.captured.Inc()
		a.captured.Add(1)
	default:
		d.dropped.Inc()
		a.dropped.Add(1)
	}
}

func accessLine(e *Exchange, status int, elapsed time.Duration, bytesOut int64) string {
	return strconv.Itoa(status) + " " + e.Protocol + " v" + strconv.Itoa(e.version) + " " +
		strconv.FormatFloat(float64(elapsed.Microseconds())/1000, 'f', 2, 64) + "ms in=" +
		strconv.FormatInt(max(e.BytesIn, 0), 10) + "B out=" + strconv.FormatInt(bytesOut, 10) + "B"
}

func accessFields(e *Exchange, status int, elapsed time.Duration, bytesOut int64) json.RawMessage {
	b := make([]byte, 0, 128)
	b = append(b, `{"status":`...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, `,"protocol":"`...)
	b = append(b, e.Protocol...)
	b = append(b, `","version":`...)
	b = strconv.AppendInt(b, int64(e.version), 10)
	b = append(b, `,"latency_ms":`...)
	b = strconv.AppendFloat(b, float64(elapsed.Microseconds())/1000, 'f', 3, 64)
	b = append(b, `,"bytes_in":`...)
	b = strconv.AppendInt(b, max(e.BytesIn, 0), 10)
	b = append(b, `,"bytes_out":`...)
	b = strconv.AppendInt(b, bytesOut, 10)
	b = append(b, '}')
	return b
}

// Observer returns the serving pool observer of a deployment (capacity signals); nil on a nil Service.
func (s *Service) Observer(deployment string) *PoolObserver {
	if s == nil {
		return nil
	}
	return &PoolObserver{s: s, dep: deployment}
}

// PoolObserver receives a serving pool's capacity signals. Its methods never block.
type PoolObserver struct {
	s   *Service
	dep string
}

// Queued records the queue depth after a request joined the queue.
func (o *PoolObserver) Queued(depth int) {
	a := o.s.state(o.dep).acc(o.s.now())
	for {
		old := a.queueMax.Load()
		if int64(depth) <= old || a.queueMax.CompareAndSwap(old, int64(depth)) {
			return
		}
	}
}

// Batch records one model call of the batcher.
func (o *PoolObserver) Batch(rows, requests int) {
	d := o.s.state(o.dep)
	d.batchRows.Observe(float64(rows))
	a := d.acc(o.s.now())
	a.batches.Add(1)
	a.batchRows.Add(int64(rows))
}

// Stages records a replica's profile of one model call (serving.StageObserver).
func (o *PoolObserver) Stages(t workerproto.Timings, call time.Duration) {
	st := o.s.state(o.dep)
	for i, d := range [len(stageNames)]time.Duration{t.Decode, t.Predict, t.Encode, call, max(0, call-t.Decode-t.Predict-t.Encode)} {
		st.stages[i].Observe(d.Seconds())
	}
}

// Rejected records a request refused because the queue was full.
func (o *PoolObserver) Rejected() {
	d := o.s.state(o.dep)
	d.rejected.Inc()
	d.acc(o.s.now()).rejected.Add(1)
}

// TimedOut records a request that passed the deployment's timeout.
func (o *PoolObserver) TimedOut() {
	d := o.s.state(o.dep)
	d.timeouts.Inc()
	d.acc(o.s.now()).timeout.Add(1)
}

// Shadowed records a copy of a request sent to the deployment's shadow version: its outcome (ok, error or
// dropped) and, unless dropped, how long the shadow took.
func (o *PoolObserver) Shadowed(version int, outcome string, took time.Duration) {
	v := strconv.Itoa(version)
	o.s.metrics.shadowRequests.WithLabelValues(o.dep, v, outcome).Inc()
	if outcome != "dropped" {
		o.s.metrics.shadowLatency.WithLabelValues(o.dep, v).Observe(took.Seconds())
	}
}

// Restarted records a replica process restarted after it died.
func (o *PoolObserver) Restarted(replica string) {
	o.s.metrics.restarts.WithLabelValues(o.dep, replica).Inc()
	o.s.state(o.dep).acc(o.s.now()).restarts.Add(1)
}

// Scaled records a change of the replica count of one of the deployment's pools (the autoscaler's, or a
// request's cold start), by direction: up or down.
func (o *PoolObserver) Scaled(direction string) {
	o.s.metrics.scaleEvents.WithLabelValues(o.dep, direction).Inc()
}

// promMetrics are the Prometheus collectors.
type promMetrics struct {
	s                                                 *Service
	requests                                          *prometheus.CounterVec
	latency                                           *prometheus.HistogramVec
	bytesIn, bytesOut, captured, dropped              *prometheus.CounterVec
	rejected, timeouts, restarts, logDropped          *prometheus.CounterVec
	rateLimited                                       *prometheus.CounterVec
	batchRows                                         *prometheus.HistogramVec
	stages                                            *prometheus.HistogramVec
	shadowRequests                                    *prometheus.CounterVec
	shadowLatency                                     *prometheus.HistogramVec
	scaleEvents                                       *prometheus.CounterVec
	readyDesc                                         *prometheus.Desc
	queueDesc, replicasDesc, cpuDesc, memDesc, qlDesc *prometheus.Desc
	budgetDesc, loadedDesc, unloadsDesc, unloadedDesc *prometheus.Desc
}

// stageBuckets are the bounds (seconds) of the per-stage profile: 20 µs to 2.5 s.
var stageBuckets = []float64{.00002, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1, 2.5}

// latencyBuckets are the bounds (seconds) of the latency histograms: 0.5 ms to a minute.
var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// newCounter is a counter vector named name, by labels.
func newCounter(name, help string, labels []string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
}

func newPromMetrics(s *Service) *promMetrics {
	dep := []string{"deployment"}
	return &promMetrics{s: s,
		requests: newCounter("slipway_predict_requests_total",
			"Prediction requests answered, by deployment, protocol, HTTP status code and the model version that served them (a canary's apart).", []string{"deployment", "protocol", "code", "version"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "slipway_predict_request_duration_seconds",
			Help:    "Time from the request's arrival to its response, by deployment and protocol.",
			Buckets: latencyBuckets}, []string{"deployment", "protocol"}),
		bytesIn: newCounter("slipway_predict_request_bytes_total",
			"Bytes of prediction request bodies received.", dep),
		bytesOut: newCounter("slipway_predict_response_bytes_total",
			"Bytes of prediction response bodies sent.", dep),
		captured: newCounter("slipway_capture_queued_total",
			"Predictions queued for capture.", dep),
		dropped: newCounter("slipway_capture_dropped_total",
			"Predictions not captured because the capture queue was full.", dep),
		rateLimited: newCounter("slipway_capture_rate_limited_total",
			"Sampled predictions not captured because the deployment's capture_max_per_second was reached.", dep),
		rejected: newCounter("slipway_deployment_rejected_total",
			"Requests refused with 429 because the deployment's queue was full.", dep),
		timeouts: newCounter("slipway_deployment_timeouts_total",
			"Requests that exceeded the deployment's timeout (504).", dep),
		restarts: newCounter("slipway_replica_restarts_total",
			"Replica processes restarted after they died.", []string{"deployment", "replica"}),
		logDropped: newCounter("slipway_log_lines_dropped_total",
			"Log lines not stored because the log queue was full.", dep),
		stages: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "slipway_replica_stage_seconds",
			Help: "Per model call, for replicas that profile themselves (Python): stage decode (frame to predict()'s input), predict (the model), " +
				"encode (its answer to the result frame), as the replica measured them; call (the whole call as the server saw it) and " +
				"transport (call minus the replica's three: adapting columns, frames, pipes).",
			Buckets: stageBuckets}, []string{"deployment", "stage"}),
		batchRows: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "slipway_deployment_batch_rows",
			Help: "Rows per model call of the dynamic batcher.", Buckets: prometheus.ExponentialBuckets(1, 2, 12)}, dep),
		shadowRequests: newCounter("slipway_shadow_requests_total",
			"Copies of prediction requests sent to a deployment's shadow version, by outcome: ok, error, or dropped (the shadow was saturated).",
			[]string{"deployment", "version", "outcome"}),
		shadowLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "slipway_shadow_request_duration_seconds",
			Help:    "Time the shadow version took to answer a copy, by deployment and version.",
			Buckets: latencyBuckets}, []string{"deployment", "version"}),
		scaleEvents: newCounter("slipway_scale_events_total",
			"Changes of a deployment's replica count by the autoscaler or a cold start (a request to a deployment at zero replicas), by direction: up or down.",
			[]string{"deployment", "direction"}),
		readyDesc: prometheus.NewDesc("slipway_replicas", "READY replicas of a deployment by the version they serve (0: scaled to zero).",
			[]string{"deployment", "version"}, nil),
		queueDesc: prometheus.NewDesc("slipway_deployment_queue_depth", "Requests waiting for a replica.", dep, nil),
		replicasDesc: prometheus.NewDesc("slipway_deployment_replicas", "Replicas of a deployment by state.",
			[]string{"deployment", "state"}, nil),
		cpuDesc: prometheus.NewDesc("slipway_replica_cpu_seconds_total", "CPU time used by a replica process (user+system, from /proc).",
			[]string{"deployment", "replica"}, nil),
		memDesc: prometheus.NewDesc("slipway_replica_resident_memory_bytes", "Resident memory of a replica process (from /proc).",
			[]string{"deployment", "replica"}, nil),
		qlDesc:     prometheus.NewDesc("slipway_monitor_queue_length", "Items waiting in the monitor's write queues.", []string{"queue"}, nil),
		budgetDesc: prometheus.NewDesc("slipway_model_memory_budget_bytes", "The model memory budget (--model-memory-budget).", nil, nil),
		loadedDesc: prometheus.NewDesc("slipway_model_memory_loaded_bytes",
			"Measured memory of the loaded replicas: resident set of replica processes, C heap of in-process sessions at their load.", nil, nil),
		unloadsDesc: prometheus.NewDesc("slipway_model_unloads_total",
			"Idle replicas unloaded (least recently used first) to keep the loaded models within the memory budget.", nil, nil),
		unloadedDesc: prometheus.NewDesc("slipway_model_unloaded_bytes_total", "Measured memory of the replicas unloaded for the budget.", nil, nil),
	}
}

func (m *promMetrics) register(reg *prometheus.Registry) error {
	for _, c := range []prometheus.Collector{m.requests, m.latency, m.bytesIn, m.bytesOut, m.captured, m.dropped, m.rateLimited,
		m.rejected, m.timeouts, m.restarts, m.logDropped, m.batchRows, m.stages, m.shadowRequests, m.shadowLatency, m.scaleEvents, m,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// Describe and Collect make promMetrics the collector of the figures read at scrape time.
func (m *promMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.queueDesc
	ch <- m.readyDesc
	ch <- m.replicasDesc
	ch <- m.cpuDesc
	ch <- m.memDesc
	ch <- m.qlDesc
	ch <- m.budgetDesc
	ch <- m.loadedDesc
	ch <- m.unloadsDesc
	ch <- m.unloadedDesc
}

func (m *promMetrics) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(m.qlDesc, prometheus.GaugeValue, float64(len(m.s.captures)), "capture")
	ch <- prometheus.MustNewConstMetric(m.qlDesc, prometheus.GaugeValue, float64(len(m.s.logs)), "log")
	if m.s.cfg.ModelMemory != nil {
		mm := m.s.cfg.ModelMemory()
		ch <- prometheus.MustNewConstMetric(m.budgetDesc, prometheus.GaugeValue, float64(mm.Budget))
		ch <- prometheus.MustNewConstMetric(m.loadedDesc, prometheus.GaugeValue, float64(mm.Loaded))
		ch <- prometheus.MustNewConstMetric(m.unloadsDesc, prometheus.CounterValue, float64(mm.Unloads))
		ch <- prometheus.MustNewConstMetric(m.unloadedDesc, prometheus.CounterValue, float64(mm.UnloadedBytes))
	}
	if m.s.cfg.Serving == nil {
		return
	}
	for _, sv := range m.s.cfg.Serving() {
		ch <- prometheus.MustNewConstMetric(m.queueDesc, prometheus.GaugeValue, float64(sv.QueueLen), sv.Deployment)
		states := map[string]int{}
		for _, r := range sv.Replicas {
			states[r.State]++
			if r.PID <= 0 {
				continue
			}
			if u, err := readProc(r.PID); err == nil {
				ch <- prometheus.MustNewConstMetric(m.cpuDesc, prometheus.CounterValue, u.cpuSeconds, sv.Deployment, r.ID)
				ch <- prometheus.MustNewConstMetric(m.memDesc, prometheus.GaugeValue, float64(u.rssBytes), sv.Deployment, r.ID)
			}
		}
		for st, n := range states {
			ch <- prometheus.MustNewConstMetric(m.replicasDesc, prometheus.GaugeValue, float64(n), sv.Deployment, st)
		}
		for v, n := range readyByVersion(sv) {
			ch <- prometheus.MustNewConstMetric(m.readyDesc, prometheus.GaugeValue, float64(n), sv.Deployment, strconv.Itoa(v))
		}
	}
}

// readyByVersion counts a deployment's READY replicas by version, with 0 for a version served at zero replicas.
func readyByVersion(sv ServingInfo) map[int]int {
	out := map[int]int{}
	for _, v := range sv.Versions {
		if v > 0 {
			out[v] += 0
		}
	}
	for _, r := range sv.Replicas {
		if r.State == "READY" {
			out[r.Version]++
		}
	}
	return out
}

// cpuSample remembers a replica's CPU time at the last roll-up, for utilisation.
type cpuSample struct {
	at  time.Time
	cpu float64
}

// rollMinutes writes the minutes that ended (once per second it checks; a minute is written a few seconds after
// its end so that requests finishing at the boundary are in it).
func (s *Service) rollMinutes(ctx context.Context) {
	now := s.now()
	if now.Second() < 3 {
		return
	}
	// Rotate every deployment's accumulator so that idle minutes are written too.
	s.deps.Range(func(_, v any) bool {
		v.(*depState).acc(now)
		return true
	})
	s.flushMinutes(ctx, false)
}

// flushMinutes writes the pending (finished) minutes; with current, also the minute in progress (at Close).
func (s *Service) flushMinutes(ctx context.Context, current bool) {
	finished := s.pending.peek()
	items := finished
	if current {
		s.deps.Range(func(_, v any) bool {
			d := v.(*depState)
			if a := d.minute.Load(); a != nil {
				items = append(items, pendingMinute{d.name, a})
			}
			return true
		})
	}
	if len(items) == 0 {
		return
	}
	usage := s.replicaUsage()
	var points []*slipway.MetricPoint
	for _, it := range items {
		p := it.acc.point(it.dep)
		if u, ok := usage[it.dep]; ok {
			p.CPUUtilization, p.MemoryBytes, p.Replicas = u.cpu, u.mem, u.replicas
		}
		points = append(points, p)
	}
	if err := s.data.UpsertMetricPoints(ctx, points); err != nil {
		s.log.Error("store metric points", "error", err)
		return // still pending: the next roll-up retries
	}
	s.pending.drop(finished)
}

type usage struct {
	cpu      float64
	mem      int64
	replicas int64
}

// replicaUsage samples /proc for every replica: CPU utilisation since the previous sample and resident memory.
func (s *Service) replicaUsage() map[string]usage {
	out := map[string]usage{}
	if s.cfg.Serving == nil {
		return out
	}
	now := time.Now()
	cpuSamples := &s.cpu
	cpuSamples.Lock()
	defer cpuSamples.Unlock()
	if cpuSamples.m == nil {
		cpuSamples.m = map[int]cpuSample{}
	}
	seen := map[int]bool{}
	for _, sv := range s.cfg.Serving() {
		u := out[sv.Deployment]
		for _, r := range sv.Replicas {
			if r.PID <= 0 {
				continue
			}
			u.replicas++
			p, err := readProc(r.PID)
			if err != nil {
				continue
			}
			seen[r.PID] = true
			u.mem += p.rssBytes
			if prev, ok := cpuSamples.m[r.PID]; ok && now.After(prev.at) {
				u.cpu += (p.cpuSeconds - prev.cpu) / now.Sub(prev.at).Seconds()
			}
			cpuSamples.m[r.PID] = cpuSample{at: now, cpu: p.cpuSeconds}
		}
		out[sv.Deployment] = u
	}
	for pid := range cpuSamples.m {
		if !seen[pid] {
			delete(cpuSamples.m, pid)
		}
	}
	return out
}

func (a *minuteAcc) point(dep string) *slipway.MetricPoint {
	p := &slipway.MetricPoint{Deployment: dep, Minute: time.Unix(a.start*60, 0).UTC(),
		Requests: a.requests.Load(), Status2xx: a.s2xx.Load(), Status4xx: a.s4xx.Load(), Status5xx: a.s5xx.Load(),
		Rejected: a.rejected.Load(), Timeouts: a.timeout.Load(), BytesIn: a.bytesIn.Load(), BytesOut: a.bytesOut.Load(),
		LatencyMaxMS: float64(a.latMaxNS.Load()) / 1e6, QueueMax: a.queueMax.Load(), Batches: a.batches.Load(),
		BatchRows: a.batchRows.Load(), Restarts: a.restarts.Load(), Captured: a.captured.Load(), CaptureDropped: a.dropped.Load()}
	if p.Requests > 0 {
		p.LatencyMeanMS = float64(a.latSumNS.Load()) / 1e6 / float64(p.Requests)
		var counts [latBuckets]int64
		for i := range counts {
			counts[i] = a.lat[i].Load()
		}
		pct := func(q float64) float64 { return bucketQuantile(counts[:], q, p.LatencyMaxMS/1000) * 1000 }
		p.LatencyP50MS, p.LatencyP95MS, p.LatencyP99MS = pct(.5), pct(.95), pct(.99)
	}
	return p
}

// Live returns the minute in progress of a deployment (not yet stored).
func (s *Service) Live(deployment string) *slipway.MetricPoint {
	v, ok := s.deps.Load(deployment)
	if !ok {
		return nil
	}
	a := v.(*depState).minute.Load()
	if a == nil {
		return nil
	}
	return a.point(deployment)
}

// Metrics returns the stored minute points of a deployment in [from, to).
func (s *Service) Metrics(ctx context.Context, deployment string, from, to time.Time) ([]*slipway.MetricPoint, error) {
	if _, err := s.cfg.Deployments.FindDeployment(ctx, deployment); err != nil {
		return nil, err
	}
	stored, err := s.data.FindMetricPoints(ctx, deployment, from, to)
	if err != nil {
		return nil, err
	}
	// Finished minutes not yet written are served from memory (they replace a stored copy of the same minute).
	for _, it := range s.pending.peek() {
		if it.dep != deployment {
			continue
		}
		p := it.acc.point(deployment)
		if p.Minute.Before(from) || (!to.IsZero() && !p.Minute.Before(to)) {
			continue
		}
		stored = slices.DeleteFunc(stored, func(q *slipway.MetricPoint) bool { return q.Minute.Equal(p.Minute) })
		stored = append(stored, p)
	}
	slices.SortFunc(stored, func(a, b *slipway.MetricPoint) int { return a.Minute.Compare(b.Minute) })
	return stored, nil
}
