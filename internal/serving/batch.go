package serving

import (
	"context"
	"sync"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/inference"
	"github.com/slipway-ml/slipway/internal/modelruntime"
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
		*out, err = rep.PredictTensors(ctx, adapted)
		return err
	}
}

// PredictJSON sends a JSON body to predict() unchanged (the OCI contract). JSON requests are not batched:
// arbitrary JSON cannot be merged.
func (p *Pool) PredictJSON(ctx context.Context, body []byte) ([]byte, string, error) {
	var out []byte
	id, err := p.Do(ctx, func(ctx context.Context, rep *modelruntime.Replica) error {
		var err error
		out, err = rep.PredictJSON(ctx, body)
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
		if cfg != nil && cfg.MaxBatchSize > 1 {
			p.batcher = newBatcher(p, *cfg, max(p.opts.MaxQueue, 1))
		}
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
type batcher struct {
	pool   *Pool
	cfg    slipway.Batching
	reqs   chan *batchReq
	ctx    context.Context // ends on close: a batch waiting for a replica gives up
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type batchReq struct {
	ctx     context.Context
	in      []workerproto.Tensor
	rows    int
	arrived time.Time
	done    chan batchResp
}

type batchResp struct {
	res Result
	err error
}

func newBatcher(p *Pool, cfg slipway.Batching, queue int) *batcher {
	ctx, cancel := context.WithCancel(context.Background())
	b := &batcher{pool: p, cfg: cfg, reqs: make(chan *batchReq, queue), ctx: ctx, cancel: cancel}
	b.wg.Add(1)
	go func() { // owned by the batcher: ends on close
		defer b.wg.Done()
		b.loop()
	}()
	return b
}

func (b *batcher) submit(ctx context.Context, in []workerproto.Tensor, rows int) (Result, error) {
	if rows >= b.cfg.MaxBatchSize {
		return b.pool.predictDirect(ctx, in, rows) // already a full batch
	}
	if b.cfg.MaxWaitMS == 0 && len(b.reqs) == 0 {
		// Nothing to merge with and nothing to wait for: an idle replica answers at once, without the hand-offs
		// through the batcher (the same outcome as a batch of one, for less CPU and latency).
		if s, rep, ok := b.pool.tryAcquire(); ok {
			if o := b.pool.observer(); o != nil {
				o.Batch(rows, 1)
			}
			return b.pool.predictOn(ctx, s, rep, in, rows, time.Now().Add(b.pool.timeout()))
		}
	}
	r := &batchReq{ctx: ctx, in: in, rows: rows, arrived: time.Now(), done: make(chan batchResp, 1)}
	select {
	case b.reqs <- r:
	default:
		if o := b.pool.observer(); o != nil {
			o.Rejected()
		}
		return Result{}, slipway.Errorf(slipway.EOVERLOADED, "deployment %s is at capacity (batch queue full): retry after a moment, or add replicas", b.pool.name)
	}
	select {
	case resp := <-r.done:
		return resp.res, resp.err
	case <-ctx.Done():
		return Result{}, b.pool.timeoutError(ctx.Err(), 0)
	}
}

// loop forms one batch at a time: it takes the first request, waits for a free replica (requests arriving
// meanwhile join the batch), fills the batch, and hands it and the replica to a goroutine of its own.
func (b *batcher) loop() {
	var pending *batchReq // a request that did not fit in the previous batch
	for {
		first := pending
		pending = nil
		if first == nil {
			select {
			case first = <-b.reqs:
			case <-b.ctx.Done():
				return
			}
		}
		timeout := b.pool.timeout()
		deadline := time.Now().Add(timeout)
		s, rep, err := b.pool.acquire(b.ctx, deadline)
		if err != nil {
			if b.ctx.Err() != nil {
				err = ErrClosed
			}
			b.fail([]*batchReq{first}, b.pool.timeoutError(err, timeout))
			continue
		}
		batch := []*batchReq{first}
		batch, pending = b.fill(batch, first.rows)
		b.wg.Add(1)
		go func() { // owned by the batcher: bounded by the pool timeout
			defer b.wg.Done()
			b.run(batch, s, rep, deadline)
		}()
	}
}

// fill adds queued requests to batch until it holds MaxBatchSize rows or MaxWaitMS has passed since the first
// request arrived. It returns the batch and the request that would have overfilled it, if any.
func (b *batcher) fill(batch []*batchReq, rows int) ([]*batchReq, *batchReq) {
	add := func(r *batchReq) *batchReq {
		if rows+r.rows > b.cfg.MaxBatchSize {
			return r
		}
		batch = append(batch, r)
		rows += r.rows
		return nil
	}
drain: // what is already queued, without waiting
	for rows < b.cfg.MaxBatchSize {
		select {
		case r := <-b.reqs:
			if over := add(r); over != nil {
				return batch, over
			}
		default:
			break drain
		}
	}
	wait := time.Until(batch[0].arrived.Add(time.Duration(b.cfg.MaxWaitMS) * time.Millisecond))
	if rows >= b.cfg.MaxBatchSize || wait <= 0 {
		return batch, nil
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for rows < b.cfg.MaxBatchSize {
		select {
		case r := <-b.reqs:
			if over := add(r); over != nil {
				return batch, over
			}
		case <-timer.C:
			return batch, nil
		case <-b.ctx.Done():
			return batch, nil // run what we have: the replica is ours until the deadline
		}
	}
	return batch, nil
}

// run makes one model call for the batch on the replica the loop acquired, and hands each request its rows.
// Requests that cannot be merged (different columns or dtypes) run on their own; if the replica dies, the
// batch is retried once through the pool.
func (b *batcher) run(batch []*batchReq, s *slot, rep *modelruntime.Replica, deadline time.Time) {
	live := batch[:0]
	for _, r := range batch {
		if r.ctx.Err() == nil {
			live = append(live, r)
		}
	}
	if len(live) == 0 {
		b.pool.release(s, rep)
		return
	}
	inputs := make([][]workerproto.Tensor, len(live))
	for i, r := range live {
		inputs[i] = r.in
	}
	merged, rows, err := inference.Concat(inputs)
	if err != nil {
		b.pool.release(s, rep)
		for _, r := range live {
			res, err := b.pool.predictDirect(r.ctx, r.in, r.rows)
			r.done <- batchResp{res, err}
		}
		return
	}
	total := 0
	for _, n := range rows {
		total += n
	}
	if o := b.pool.observer(); o != nil {
		o.Batch(total, len(live))
	}
	// The batch outlives any single client: it runs under the pool's timeout, not a request's context.
	res, err := b.pool.predictOn(context.WithoutCancel(live[0].ctx), s, rep, merged, total, deadline)
	if err != nil {
		b.fail(live, err)
		return
	}
	parts, err := inference.Split(res.Outputs, rows)
	if err != nil {
		b.fail(live, err)
		return
	}
	for i, r := range live {
		r.done <- batchResp{Result{Outputs: parts[i], Replica: res.Replica, Batch: res.Batch}, nil}
	}
}

func (b *batcher) fail(batch []*batchReq, err error) {
	for _, r := range batch {
		r.done <- batchResp{err: err}
	}
}

func (b *batcher) close() {
	b.cancel()
	b.wg.Wait()
	for {
		select {
		case r := <-b.reqs:
			r.done <- batchResp{err: ErrClosed}
		default:
			return
		}
	}
}
