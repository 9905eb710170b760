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
	p.mu.Lock()
	b := p.batcher
	p.mu.Unlock()
	if b != nil {
		return b.submit(ctx, in)
	}
	return p.predictDirect(ctx, in)
}

func (p *Pool) predictDirect(ctx context.Context, in []workerproto.Tensor) (Result, error) {
	var res Result
	rows, _ := inference.Rows(in)
	id, err := p.Do(ctx, func(ctx context.Context, rep *modelruntime.Replica) error {
		adapted, err := inference.AdaptToModel(in, rep.Hello().Inputs)
		if err != nil {
			return err
		}
		res.Outputs, err = rep.PredictTensors(ctx, adapted)
		return err
	})
	res.Replica, res.Batch = id, rows
	return res, err
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

// batcher merges concurrent tensor requests into one model call of up to MaxBatchSize rows, waiting at most
// MaxWaitMS for the batch to fill (the Triton/BentoML adaptive batching scheme).
type batcher struct {
	pool *Pool
	cfg  slipway.Batching
	reqs chan *batchReq
	stop chan struct{}
	wg   sync.WaitGroup
}

type batchReq struct {
	ctx  context.Context
	in   []workerproto.Tensor
	rows int
	done chan batchResp
}

type batchResp struct {
	res Result
	err error
}

func newBatcher(p *Pool, cfg slipway.Batching, queue int) *batcher {
	b := &batcher{pool: p, cfg: cfg, reqs: make(chan *batchReq, queue), stop: make(chan struct{})}
	b.wg.Add(1)
	go func() { // owned by the batcher: ends on close
		defer b.wg.Done()
		b.loop()
	}()
	return b
}

func (b *batcher) submit(ctx context.Context, in []workerproto.Tensor) (Result, error) {
	rows, err := inference.Rows(in)
	if err != nil {
		return Result{}, err
	}
	if rows >= b.cfg.MaxBatchSize {
		return b.pool.predictDirect(ctx, in) // already a full batch
	}
	r := &batchReq{ctx: ctx, in: in, rows: rows, done: make(chan batchResp, 1)}
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

func (b *batcher) loop() {
	wait := time.Duration(b.cfg.MaxWaitMS) * time.Millisecond
	for {
		var first *batchReq
		select {
		case first = <-b.reqs:
		case <-b.stop:
			return
		}
		batch, rows := []*batchReq{first}, first.rows
		timer := time.NewTimer(wait)
	fill:
		for rows < b.cfg.MaxBatchSize {
			select {
			case r := <-b.reqs:
				batch = append(batch, r)
				rows += r.rows
			case <-timer.C:
				break fill
			case <-b.stop:
				timer.Stop()
				b.fail(batch, ErrClosed)
				return
			}
		}
		timer.Stop()
		b.wg.Add(1)
		go func() { // owned by the batcher: bounded by the pool timeout
			defer b.wg.Done()
			b.run(batch)
		}()
	}
}

// run makes one model call for the batch and hands each request its rows. Requests that cannot be merged
// (different columns or dtypes) run on their own.
func (b *batcher) run(batch []*batchReq) {
	live := batch[:0]
	for _, r := range batch {
		if r.ctx.Err() == nil {
			live = append(live, r)
		}
	}
	if len(live) == 0 {
		return
	}
	inputs := make([][]workerproto.Tensor, len(live))
	for i, r := range live {
		inputs[i] = r.in
	}
	merged, rows, err := inference.Concat(inputs)
	if err != nil {
		for _, r := range live {
			res, err := b.pool.predictDirect(r.ctx, r.in)
			r.done <- batchResp{res, err}
		}
		return
	}
	if o := b.pool.observer(); o != nil {
		total := 0
		for _, n := range rows {
			total += n
		}
		o.Batch(total, len(live))
	}
	// The batch outlives any single client: it runs under the pool's timeout, not a request's context.
	res, err := b.pool.predictDirect(context.WithoutCancel(live[0].ctx), merged)
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
	close(b.stop)
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
