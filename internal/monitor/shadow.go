package monitor

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/workerproto"
)

// Shadow comparison. A request whose deployment has a comparing shadow is sampled like a capture; a sampled
// one gets a key in the join (ShadowSink), and its two answers meet there off the request path: the live one
// when Finish runs, the shadow's when its copy returns, in either order. The second to arrive completes the
// pair, which goes to a bounded queue and is written in batches. The join holds at most CaptureQueue requests
// (beyond, requests are not compared) and none longer than shadowJoinWait.

// shadowJoinWait bounds how long a live answer waits for its shadow's (the shadow's pool times out sooner).
const shadowJoinWait = time.Minute

// shadowJoin pairs the two answers of a sampled request by its key.
type shadowJoin struct {
	mu      sync.Mutex
	next    uint64
	pending map[uint64]*shadowItem
}

// shadowItem is a request waiting for its other answer, then queued for the writer. The tensors and bodies
// are references: the request path never copies or encodes them.
type shadowItem struct {
	opened           time.Time
	deployment       string
	liveIn, shadowIn bool // which answers arrived
	requestID        string
	start            time.Time
	liveVersion      int
	in, liveOut      []workerproto.Tensor
	inJSON, liveJSON []byte
	liveErr          string
	liveMS           float64
	shadowVersion    int
	shadowOut        []workerproto.Tensor
	shadowJSON       []byte
	shadowErr        string
	shadowMS         float64
	dropped          bool // the copy was never sent: nothing to compare
}

// ShadowSink returns the callback that takes the shadow's answer to e's request when the route's shadow
// compares (compares) and the request is sampled; nil otherwise, which costs the request nothing.
func (s *Service) ShadowSink(e *Exchange, compares bool) func(int, []workerproto.Tensor, []byte, error, time.Duration) {
	if s == nil || e == nil || !compares || !e.known {
		return nil
	}
	d := s.state(e.Deployment)
	now := s.now()
	if !d.sampled() || !d.shadowPairs.allow(now) {
		return nil
	}
	key, ok := s.join.open(e.Deployment, now, s.cfg.CaptureQueue)
	if !ok {
		s.log.Debug("shadow answer not compared: too many requests wait for their shadow", "deployment", e.Deployment)
		return nil
	}
	e.shadow = key
	return func(version int, out []workerproto.Tensor, outJSON []byte, err error, took time.Duration) {
		s.shadowAnswered(key, version, out, outJSON, err, took)
	}
}

func (j *shadowJoin) open(deployment string, now time.Time, limit int) (uint64, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if len(j.pending) >= limit {
		return 0, false
	}
	if j.pending == nil {
		j.pending = map[uint64]*shadowItem{}
	}
	j.next++
	j.pending[j.next] = &shadowItem{opened: now, deployment: deployment}
	return j.next, true
}

// update applies fn to the item of key and returns it when both answers are in (removed from the join).
func (j *shadowJoin) update(key uint64, fn func(*shadowItem)) *shadowItem {
	j.mu.Lock()
	defer j.mu.Unlock()
	it := j.pending[key]
	if it == nil {
		return nil // swept after shadowJoinWait
	}
	fn(it)
	if it.dropped {
		delete(j.pending, key)
		return nil
	}
	if !it.liveIn || !it.shadowIn {
		return nil
	}
	delete(j.pending, key)
	return it
}

// sweep removes the requests older than cutoff: a live answer whose shadow never answered is compared as a
// shadow error, anything else is dropped.
func (j *shadowJoin) sweep(cutoff time.Time) []*shadowItem {
	j.mu.Lock()
	defer j.mu.Unlock()
	var late []*shadowItem
	for key, it := range j.pending {
		if it.opened.Before(cutoff) {
			delete(j.pending, key)
			if it.liveIn {
				it.shadowErr = fmt.Sprintf("no answer within %s", shadowJoinWait)
				late = append(late, it)
			}
		}
	}
	return late
}

// liveAnswered records the live half of a compared request (from Finish).
func (s *Service) liveAnswered(e *Exchange, status int, elapsed time.Duration) {
	it := s.join.update(e.shadow, func(it *shadowItem) {
		it.liveIn = true
		it.requestID, it.start, it.liveVersion = e.RequestID, e.Start, e.version
		it.in, it.inJSON, it.liveOut, it.liveJSON = e.inputs, e.inJSON, e.outputs, e.outJSON
		it.liveMS = float64(elapsed.Microseconds()) / 1000
		if status >= 300 {
			it.liveErr = "HTTP " + strconv.Itoa(status)
		}
	})
	s.queueShadow(it)
}

// shadowAnswered records the shadow half of a compared request (from the shadow's goroutine).
func (s *Service) shadowAnswered(key uint64, version int, out []workerproto.Tensor, outJSON []byte, err error, took time.Duration) {
	it := s.join.update(key, func(it *shadowItem) {
		if errors.Is(err, slipway.ErrShadowNotSent) {
			it.dropped = true
			return
		}
		it.shadowIn = true
		it.shadowVersion, it.shadowOut, it.shadowJSON = version, out, outJSON
		it.shadowMS = float64(took.Microseconds()) / 1000
		if err != nil {
			it.shadowErr = err.Error()
		}
	})
	s.queueShadow(it)
}

func (s *Service) queueShadow(it *shadowItem) {
	if it == nil {
		return
	}
	select {
	case s.shadowQ <- it:
	default:
		s.log.Debug("shadow answer not compared: the queue is full", "deployment", it.deployment)
	}
}

// sweepShadow queues the live answers whose shadow did not answer within shadowJoinWait (and forgets the rest).
func (s *Service) sweepShadow(context.Context) {
	for _, late := range s.join.sweep(s.now().Add(-shadowJoinWait)) {
		s.queueShadow(late)
	}
}

// shadowWriter encodes completed pairs (off the request path) and writes them in batches.
func (s *Service) shadowWriter() {
	writeInBatches(s.ctx, s.shadowQ, func(items []*shadowItem) {
		batch := make([]*slipway.ShadowPair, 0, len(items))
		for _, it := range items {
			p, err := s.encodeShadow(it)
			if err != nil {
				s.log.Warn("shadow answer not compared", "deployment", it.deployment, "request_id", it.requestID, "error", err)
				continue
			}
			batch = append(batch, p)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.data.InsertShadowPairs(ctx, batch); err != nil {
			s.log.Error("store shadow comparisons", "error", err, "count", len(batch))
		}
	})
}

// encodeShadow turns a completed request into a stored pair: both sides' outputs as tensor frames (JSON
// answers read as a table, like captures) and the first numeric input columns for slicing.
func (s *Service) encodeShadow(it *shadowItem) (*slipway.ShadowPair, error) {
	p := &slipway.ShadowPair{Deployment: it.deployment, RequestID: it.requestID, Time: it.start,
		LiveVersion: it.liveVersion, ShadowVersion: it.shadowVersion, LiveError: it.liveErr, ShadowError: it.shadowErr,
		LiveMS: it.liveMS, ShadowMS: it.shadowMS}
	in, live, shadow := it.in, it.liveOut, it.shadowOut
	if it.inJSON != nil {
		var err error
		if in, err = jsonTable(it.inJSON, s.inputNames(it.deployment, it.liveVersion)); err != nil {
			in = nil // features are optional: the answers are still compared
		}
	}
	if it.liveJSON != nil {
		live, _ = jsonTable(it.liveJSON, []string{"prediction"})
	}
	if it.shadowJSON != nil {
		shadow, _ = jsonTable(it.shadowJSON, []string{"prediction"})
	}
	p.Rows = rowsOf(in)
	if p.Rows == 0 {
		p.Rows = rowsOf(live)
	}
	if p.LiveError == "" && p.ShadowError == "" && rowsOf(shadow) != rowsOf(live) {
		p.ShadowError = fmt.Sprintf("the shadow answered %d rows for the live version's %d", rowsOf(shadow), rowsOf(live))
	}
	p.LiveOutputs = workerproto.EncodeTensors(nil, live)
	p.ShadowOutputs = workerproto.EncodeTensors(nil, shadow)
	p.Features = workerproto.EncodeTensors(nil, sliceFeatures(in, p.Rows))
	return p, nil
}

// sliceFeatures are the first MaxShadowFeatures numeric input columns with one value per row.
func sliceFeatures(in []workerproto.Tensor, rows int) []workerproto.Tensor {
	var out []workerproto.Tensor
	for _, t := range in {
		if len(out) == slipway.MaxShadowFeatures {
			break
		}
		if dt := workerproto.ParseDatatype(t.Datatype); dt.IsNumeric() && rowWidth(&t) == 1 && int(t.Shape[0]) == rows {
			out = append(out, t)
		}
	}
	return out
}

// ShadowReport compares a deployment's shadow with its live version over the pairs stored in [from, to).
func (s *Service) ShadowReport(ctx context.Context, deployment string, from, to time.Time) (*slipway.ShadowReport, error) {
	if !from.Before(to) {
		return nil, invalidf("from must be before to")
	}
	c := newShadowComparison(deployment)
	if err := s.data.ScanShadowPairs(ctx, deployment, from, to, c.add); err != nil {
		return nil, fmt.Errorf("compare the shadow of %s: %w", deployment, err)
	}
	rep := c.report()
	rep.From, rep.To = from, to
	return rep, nil
}
