package serving

import (
	"context"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/inference"
	"github.com/slipway-ml/slipway/internal/modelruntime"
	"github.com/slipway-ml/slipway/internal/tracing"
	"github.com/slipway-ml/slipway/internal/workerproto"
)

// Result is the outcome of a tensor prediction.
type Result struct {
	Outputs []workerproto.Tensor
	Replica string
	Version int
	Batch   int // rows in the model call that served this request (> request rows when batched)
}

// PredictTensors runs one batch of columns through the model, merged with concurrent requests when batching
// is on. Inputs are adapted to the replica's declared inputs (stacking feature columns, casting dtypes).
func (p *Pool) PredictTensors(ctx context.Context, in []workerproto.Tensor) (Result, error) {
	p.requests.Add(1) // the autoscaler's load
	defer p.requests.Add(-1)
	rows, err := inference.Rows(in)
	p.mu.Lock()
	b := p.batcher
	p.mu.Unlock()
	if b == nil {
		return p.predictDirect(ctx, in, rows) // columns of unequal length are the model's to judge: it may broadcast
	}
	if err != nil {
		return Result{}, err // rows cannot be merged or split without a common row count
	}
	return b.submit(ctx, in, rows)
}

func (p *Pool) predictDirect(ctx context.Context, in []workerproto.Tensor, rows int) (Result, error) {
	var out []workerproto.Tensor
	id, err := p.Do(ctx, modelCall(in, &out))
	return Result{Outputs: out, Replica: id, Batch: rows}, err
}

// predictOn is predictDirect on a replica already acquired, until the deadline.
func (p *Pool) predictOn(ctx context.Context, s *slot, rep *modelruntime.Replica, in []workerproto.Tensor, rows int, deadline time.Time) (Result, error) {
	var out []workerproto.Tensor
	id, err := p.doOn(ctx, s, rep, deadline, modelCall(in, &out))
	return Result{Outputs: out, Replica: id, Batch: rows}, err
}

// modelCall runs in on a replica, adapted to its declared inputs (stacking feature columns, casting dtypes),
// and stores the outputs in *out.
func modelCall(in []workerproto.Tensor, out *[]workerproto.Tensor) func(ctx context.Context, rep *modelruntime.Replica) error {
	return func(ctx context.Context, rep *modelruntime.Replica) error {
		adapted, err := inference.AdaptToModel(in, rep.Hello().Inputs)
		if err != nil {
			return err
		}
		span := modelSpan(ctx)
		*out, err = rep.PredictTensors(ctx, adapted)
		tracing.Fail(span, err)
		span.End()
		return err
	}
}

// PredictTensorsParams runs columns through a model whose predict() takes params (MLflow's
// predict(data, params=...)), with params (a JSON object). It bypasses the batcher: requests with different
// params cannot share a model call. A model whose predict() takes no params refuses it (EINVALID) before
// anything is sent.
func (p *Pool) PredictTensorsParams(ctx context.Context, in []workerproto.Tensor, params []byte) (Result, error) {
	p.requests.Add(1) // the autoscaler's load
	defer p.requests.Add(-1)
	rows, _ := inference.Rows(in)
	var out []workerproto.Tensor
	id, err := p.Do(ctx, func(ctx context.Context, rep *modelruntime.Replica) error {
		if !rep.Hello().Params {
			return slipway.Errorf(slipway.EINVALID, "this model's predict() takes no params argument, so the request's \"params\" cannot be passed to it: "+
				"send the request without \"params\", or register a model whose predict is predict(data, params=None)")
		}
		adapted, err := inference.AdaptToModel(in, rep.Hello().Inputs)
		if err != nil {
			return err
		}
		span := modelSpan(ctx)
		out, err = rep.PredictTensorsParams(ctx, adapted, params)
		tracing.Fail(span, err)
		span.End()
		return err
	})
	return Result{Outputs: out, Replica: id, Batch: rows}, err
}

// PredictJSON sends a JSON body to predict() unchanged (the OCI contract). JSON requests are not batched:
// arbitrary JSON cannot be merged.
func (p *Pool) PredictJSON(ctx context.Context, body []byte) ([]byte, string, error) {
	p.requests.Add(1) // the autoscaler's load
	defer p.requests.Add(-1)
	var out []byte
	id, err := p.Do(ctx, func(ctx context.Context, rep *modelruntime.Replica) error {
		var err error
		span := modelSpan(ctx)
		out, err = rep.PredictJSON(ctx, body)
		tracing.Fail(span, err)
		span.End()
		return err
	})
	return out, id, err
}

func (p *Pool) setBatching(cfg *slipway.Batching) {
	var old *batcher
	p.mu.Lock()
	if p.batcher == nil || cfg == nil || *cfg != p.batcher.cfg {
		old = p.batcher
		p.batcher = nil
		if cfg.Enabled() {
			p.batcher = newBatcher(p, *cfg, max(p.opts.MaxQueue, 1))
		}
		p.reofferLocked()
	}
	p.mu.Unlock()
	if old != nil {
		old.close()
	}
}

// batcher merges concurrent tensor requests into one model call of up to MaxBatchSize rows. Batches are formed
// when a replica is free, not before: while every replica is busy, requests pile up and the next free replica
// takes all of them at once, so batches grow with the load and an idle deployment adds no delay. MaxWaitMS,
// counted from the first request's arrival, is how long a batch may wait for more rows once a replica is free
// (0: take what is there). This is the adaptive scheme of Triton's dynamic batcher and BentoML.
//
// The batcher has no goroutine of its own: the requests' goroutines do the work (leader and followers). The
// oldest waiting request acquires a replica for the queue, then leads the batch: it takes the queue, makes the
// model call and hands each follower its rows; it hands the turn to acquire to the oldest request left over.
// Each request's goroutine is woken once (for its turn, or for its rows): a batch costs one hand-off per
// request, where a batcher goroutine added three per batch (wake the loop, hand it a replica, start the call),
// which on a 2-core host cost as much CPU as the model call itself.
//
// While model calls are short (under concentrateBelow), a queue owner that finds a batch in flight waits (up to
// that long) for its replica to come back rather than start a second batch on an idle replica: the rows that
// arrive meanwhile join the batch. Every batch costs two process wake-ups and a pipe round trip (~100 µs of CPU
// on a busy 2-core host); with a 7 µs ONNX model and 2 replicas, alternating replicas halved the batches (5 rows
// instead of 9 at c=32) and cost 25% of the throughput. A model whose calls take longer keeps every replica
// busy, as before: its replicas are the bottleneck, and a second batch in flight is what they are for.
type batcher struct {
	pool     *Pool
	cfg      slipway.Batching
	maxQueue int

	mu       sync.Mutex
	queue    []*batchReq   // waiting for a batch, oldest first
	owned    bool          // a request is acquiring a replica for the queue, or filling its batch from it
	filling  chan struct{} // while a leader waits for rows (MaxWaitMS): arrivals wake it
	closed   bool
	inflight int           // batches making their model call
	awaited  bool          // a queue owner waits on returned
	returned chan struct{} // closed (and replaced) when a batch's model call returns while awaited

	callNanos      atomic.Int64  // moving average of the model calls' wall time (a racing update may lose a sample)
	concentrateFor time.Duration // the longest a queue owner waits for a busy replica (tests lengthen it)
}

// gatherYield: a leader that acquired an in-process replica yields its thread once before it takes the queue.
// An in-process call runs on the leader's own thread in a few microseconds, with no pipe round trip during which
// other requests reach the queue, so at c=32 on 2 cores batches held 1.5–2 rows: the requests were already
// read and runnable, but waiting for a thread that the leader held. One runtime.Gosched lets those goroutines
// run until they park (most of them in the queue) and costs nothing when nothing else is runnable: it is a gather
// window measured in runnable work, not in time. Measured (ONNX example, 2 sessions, c=32, 1 row): 7.7 rows per
// batch instead of 1.9, and 15% less server CPU per request. Process replicas do not need it.
//
// concentrateBelow: model calls shorter than this are too cheap to be worth a second batch in flight (see
// batcher). It is also the longest a batch waits for a busy replica.
const concentrateBelow = time.Millisecond

type batchReq struct {
	ctx     context.Context
	in      []workerproto.Tensor
	rows    int
	arrived time.Time
	done    chan batchResp // capacity 1: a queued request gets exactly one message (empty when recycled)
	queued  trace.Span     // its wait until a batch takes it (ended more than once: only the first counts)
}

// batchReqs recycles batchReqs with their channels: two allocations per batched request otherwise. A request goes
// back once its own goroutine is done with it: it got its one message (nothing else will be sent to it, and whoever
// sent it does not touch it afterwards), or it never queued. An abandoned request is never put back: its message
// may still be on its way.
var batchReqs = sync.Pool{New: func() any { return &batchReq{done: make(chan batchResp, 1)} }}

func getBatchReq(ctx context.Context, in []workerproto.Tensor, rows int) *batchReq {
	r := batchReqs.Get().(*batchReq)
	r.ctx, r.in, r.rows = ctx, in, rows
	return r
}

// putBatchReq recycles r, whose channel is empty (see batchReqs).
func putBatchReq(r *batchReq) {
	*r = batchReq{done: r.done} // nothing kept alive: the request's context, inputs or span
	batchReqs.Put(r)
}

// batchResp is the one message a queued request gets.
type batchResp struct {
	res   Result
	err   error
	turn  bool // acquire a replica for the queue, then lead the batch
	alone bool // run without batching (the batcher closed, or the batch could not be merged)
}

func newBatcher(p *Pool, cfg slipway.Batching, queue int) *batcher {
	return &batcher{pool: p, cfg: cfg, maxQueue: queue, returned: make(chan struct{}), concentrateFor: concentrateBelow}
}

func (b *batcher) submit(ctx context.Context, in []workerproto.Tensor, rows int) (Result, error) {
	if rows >= b.cfg.MaxBatchSize {
		return b.pool.predictDirect(ctx, in, rows) // already a full batch
	}
	r := getBatchReq(ctx, in, rows)
	if b.cfg.MaxWaitMS > 0 {
		r.arrived = time.Now() // only a batch that may wait for rows needs it
	}
	_, r.queued = tracing.Start(ctx, tracing.SpanQueue)
	b.mu.Lock()
	switch {
	case b.closed:
		b.mu.Unlock()
		r.queued.End()
		putBatchReq(r)
		return b.pool.predictDirect(ctx, in, rows)
	case !b.owned && len(b.queue) == 0:
		// Nobody is waiting: this request acquires a replica itself (at once if one is idle, without any
		// hand-off: the same outcome as a batch of one).
		b.owned = true
		b.mu.Unlock()
		res, err := b.acquireAndLead(r)
		putBatchReq(r)
		return res, err
	case len(b.queue) >= b.maxQueue:
		b.mu.Unlock()
		if o := b.pool.observer(); o != nil {
			o.Rejected()
		}
		err := slipway.Errorf(slipway.EOVERLOADED, "deployment %s is at capacity (batch queue full): retry after a moment, or add replicas", b.pool.name)
		tracing.Fail(r.queued, err)
		r.queued.End()
		putBatchReq(r)
		return Result{}, err
	}
	b.queue = append(b.queue, r)
	if b.filling != nil {
		select {
		case b.filling <- struct{}{}:
		default:
		}
	}
	b.mu.Unlock()
	select {
	case resp := <-r.done:
		res, err := b.follow(r, resp)
		putBatchReq(r)
		return res, err
	case <-ctx.Done():
		return b.abandon(r) // not recycled (see batchReqs)
	}
}

// follow acts on the message a queued request got.
func (b *batcher) follow(r *batchReq, resp batchResp) (Result, error) {
	switch {
	case resp.turn:
		return b.acquireAndLead(r)
	case resp.alone:
		r.queued.End()
		return b.pool.predictDirect(r.ctx, r.in, r.rows)
	}
	r.queued.End()
	return resp.res, resp.err
}

// abandon takes a request whose client gave up out of the queue. If it was taken already, its rows are in a
// batch (the answer is dropped), or it was handed the turn to acquire, which passes to the next request.
func (b *batcher) abandon(r *batchReq) (Result, error) {
	tracing.Fail(r.queued, r.ctx.Err())
	r.queued.End()
	b.mu.Lock()
	if i := slices.Index(b.queue, r); i >= 0 {
		b.queue = slices.Delete(b.queue, i, i+1)
		b.mu.Unlock()
		return Result{}, b.pool.timeoutError(r.ctx.Err(), 0)
	}
	b.mu.Unlock()
	select {
	case resp := <-r.done: // a turn is sent under b.mu, together with leaving the queue: it is here
		if resp.turn {
			b.passTurn()
		}
	default:
	}
	return Result{}, b.pool.timeoutError(r.ctx.Err(), 0)
}

// passTurn gives the turn to acquire to the oldest queued request, if any.
func (b *batcher) passTurn() {
	b.mu.Lock()
	b.owned = false
	b.handOnLocked()
	b.mu.Unlock()
}

func (b *batcher) handOnLocked() {
	if b.owned || b.closed || len(b.queue) == 0 {
		return
	}
	next := b.queue[0]
	b.queue = b.queue[1:]
	b.owned = true
	next.done <- batchResp{turn: true}
}

// acquireAndLead waits for a replica on the queue's behalf (the pool's timeout counts from here, as the
// batch's deadline), then leads the batch.
func (b *batcher) acquireAndLead(r *batchReq) (Result, error) {
	b.awaitBusyReplica(r.ctx)
	timeout := b.pool.timeout()
	deadline := time.Now().Add(timeout)
	s, rep, err := b.pool.acquire(r.ctx, deadline)
	if err != nil {
		b.passTurn() // the queue still needs someone to wait for a replica
		err = b.pool.timeoutError(err, timeout)
		tracing.Fail(r.queued, err)
		r.queued.End()
		return Result{}, err
	}
	if rep.InProcess() {
		runtime.Gosched() // see gatherYield
	}
	return b.run(r, b.gather(r), s, rep, deadline)
}

// awaitBusyReplica waits, while model calls are short, for a batch in flight to return (or concentrateFor to
// pass) so that its replica takes the next batch with the rows that arrive meanwhile (see batcher).
func (b *batcher) awaitBusyReplica(ctx context.Context) {
	if time.Duration(b.callNanos.Load()) >= concentrateBelow {
		return
	}
	b.mu.Lock()
	if b.inflight == 0 || b.queuedRowsLocked() >= b.cfg.MaxBatchSize {
		b.mu.Unlock()
		return
	}
	b.awaited = true
	returned := b.returned
	b.mu.Unlock()
	timer := time.NewTimer(b.concentrateFor)
	defer timer.Stop()
	select {
	case <-returned:
	case <-timer.C:
	case <-ctx.Done():
	}
}

// queuedRowsLocked counts the queued rows, up to MaxBatchSize.
func (b *batcher) queuedRowsLocked() int {
	rows := 0
	for _, r := range b.queue {
		if rows += r.rows; rows >= b.cfg.MaxBatchSize {
			break
		}
	}
	return rows
}

// call is the batch's model call; its return wakes a queue owner waiting for a busy replica.
func (b *batcher) call(ctx context.Context, s *slot, rep *modelruntime.Replica, in []workerproto.Tensor, rows int, deadline time.Time) (Result, error) {
	start := time.Now()
	res, err := b.pool.predictOn(ctx, s, rep, in, rows, deadline)
	elapsed := time.Since(start)
	if old := b.callNanos.Load(); err == nil {
		b.callNanos.Store(old + (int64(elapsed)-old)/8)
	}
	b.callReturned()
	return res, err
}

// release hands back the replica of a batch that made no model call.
func (b *batcher) release(s *slot, rep *modelruntime.Replica) {
	b.pool.release(s, rep)
	b.callReturned()
}

// callReturned ends one batch's call and wakes the queue owner waiting for a busy replica, if any.
func (b *batcher) callReturned() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.inflight--
	if b.awaited {
		close(b.returned)
		b.returned, b.awaited = make(chan struct{}), false
	}
}

// gather forms the batch led by first: queued requests, oldest first, up to MaxBatchSize rows; if there is
// room and MaxWaitMS allows, it waits for more. Requests left over get the turn to acquire the next replica.
func (b *batcher) gather(first *batchReq) []*batchReq {
	batch, rows := []*batchReq{first}, first.rows
	b.mu.Lock()
	defer b.mu.Unlock()
	batch, rows = b.takeLocked(batch, rows)
	wait := time.Until(first.arrived.Add(time.Duration(b.cfg.MaxWaitMS) * time.Millisecond))
	if rows < b.cfg.MaxBatchSize && len(b.queue) == 0 && wait > 0 {
		wake := make(chan struct{}, 1)
		b.filling = wake
		b.mu.Unlock()
		timer := time.NewTimer(wait)
	fill:
		for {
			select {
			case <-wake:
			case <-timer.C:
				break fill
			}
			b.mu.Lock()
			batch, rows = b.takeLocked(batch, rows)
			full := rows >= b.cfg.MaxBatchSize || len(b.queue) > 0
			b.mu.Unlock()
			if full {
				break
			}
		}
		timer.Stop()
		b.mu.Lock()
		b.filling = nil
		batch, _ = b.takeLocked(batch, rows) // the last take: the rows are not needed any more
	}
	b.inflight++ // before the next owner looks
	b.owned = false
	b.handOnLocked()
	return batch
}

// takeLocked moves queued requests into batch, oldest first, while they fit in MaxBatchSize rows.
func (b *batcher) takeLocked(batch []*batchReq, rows int) ([]*batchReq, int) {
	n := 0
	for _, r := range b.queue {
		if rows+r.rows > b.cfg.MaxBatchSize {
			break
		}
		batch = append(batch, r)
		rows += r.rows
		n++
	}
	b.queue = b.queue[n:]
	return batch, rows
}

// run makes one model call for the batch on the replica its leader acquired, hands each follower its rows
// and returns the leader's. If the requests cannot be merged (different columns or dtypes), each runs on its
// own; if the replica dies, the batch is retried once through the pool.
func (b *batcher) run(leader *batchReq, batch []*batchReq, s *slot, rep *modelruntime.Replica, deadline time.Time) (Result, error) {
	live, rows := batch[:0], 0
	for _, r := range batch {
		r.queued.End() // taken: its wait is over, alive or not
		if r.ctx.Err() == nil {
			live = append(live, r)
			rows += r.rows
		}
	}
	if len(live) == 0 {
		b.release(s, rep)
		return Result{}, b.pool.timeoutError(leader.ctx.Err(), 0)
	}
	if o := b.pool.observer(); o != nil {
		o.Batch(rows, len(live))
	}
	ctx, span := batchSpan(leader, live, rows)
	defer span.End()
	if len(live) == 1 && live[0] == leader { // nothing to merge or split
		return b.call(ctx, s, rep, leader.in, leader.rows, deadline)
	}
	inputs := make([][]workerproto.Tensor, len(live))
	for i, r := range live {
		inputs[i] = r.in
	}
	merged, parts, err := inference.Concat(inputs)
	if err != nil {
		b.release(s, rep)
		return b.reply(leader, live, nil, batchResp{alone: true})
	}
	// The batch outlives any single client: it runs under the pool's timeout, not a request's context.
	res, err := b.call(context.WithoutCancel(ctx), s, rep, merged, rows, deadline)
	if err != nil {
		return b.reply(leader, live, nil, batchResp{err: err})
	}
	outs, err := inference.Split(res.Outputs, parts)
	if err != nil {
		return b.reply(leader, live, nil, batchResp{err: err})
	}
	return b.reply(leader, live, outs, batchResp{res: Result{Replica: res.Replica, Version: res.Version, Batch: res.Batch}})
}

// batchSpan starts the span of a batch's model call: a child of its leader's request, linked to every request
// it carries (a span has one parent; the followers' traces reach the batch through the links).
func batchSpan(leader *batchReq, live []*batchReq, rows int) (context.Context, trace.Span) {
	if !tracing.Enabled() {
		return tracing.Start(leader.ctx, tracing.SpanBatch) // records nothing
	}
	links := make([]trace.Link, 0, len(live))
	for _, r := range live {
		if sc := trace.SpanContextFromContext(r.ctx); sc.IsValid() && r != leader {
			links = append(links, trace.Link{SpanContext: sc})
		}
	}
	return tracing.Start(leader.ctx, tracing.SpanBatch, trace.WithLinks(links...),
		trace.WithAttributes(tracing.AttrBatchRows.Int(rows), tracing.AttrBatchSize.Int(len(live))))
}

// reply sends each follower its message (with its own outputs, when there are any) and returns the leader's.
func (b *batcher) reply(leader *batchReq, live []*batchReq, outs [][]workerproto.Tensor, msg batchResp) (Result, error) {
	var mine *batchResp
	for i, r := range live {
		m := msg
		if outs != nil {
			m.res.Outputs = outs[i]
		}
		if r == leader {
			mine = &m
			continue
		}
		r.done <- m
	}
	if mine == nil { // the leader's client left: its rows were not sent
		return Result{}, b.pool.timeoutError(leader.ctx.Err(), 0)
	}
	return b.follow(leader, *mine)
}

// close stops batching: queued requests run on their own; a batch being formed or run finishes.
func (b *batcher) close() {
	b.mu.Lock()
	queued := b.queue
	b.queue, b.closed = nil, true
	for _, r := range queued {
		r.done <- batchResp{alone: true}
	}
	b.mu.Unlock()
}
