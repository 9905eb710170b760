package workerproto

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
)

// ErrClosed is returned by calls on a Client after Close.
var ErrClosed = errors.New("workerproto: client closed")

// keepBuf is the largest scratch buffer a Client or Serve keeps between frames.
const keepBuf = 4 << 20

// Client is the server side of one replica connection. Calls may overlap: each writes its request frame as
// soon as it is made (the replica works through them in order), and one reader goroutine matches the answers
// to the calls in the order their requests were written. So a replica that finishes one call finds the next
// request already waiting on its input and never sits idle for a round trip (pipelining). How many calls may
// be in flight is the caller's choice (modelruntime.Replica bounds it).
//
// Cancellation: a call whose context ends returns at once (an *AbandonedError); its answer is discarded when it
// arrives and the calls behind it are unaffected. A read or write of the stream cannot be cancelled: to stop a
// replica that is stuck, its owner kills it, which ends the stream. After any I/O or protocol error the stream may
// be out of step, so every call in flight fails and every later call returns that same error: the replica should
// be replaced. A *ModelError is not such an error: the model raised, for that call only, and the replica is
// still healthy. Requests rejected before anything is sent (invalid tensors, a frame over 256 MiB) also return a
// *ModelError, of type ValueError, since they leave the replica untouched.
type Client struct {
	stdin  io.WriteCloser
	stdout *bufio.Reader
	hdr    [headerLen]byte

	wmu  sync.Mutex // one frame written at a time, queued in the order written
	wbuf []byte

	mu      sync.Mutex
	pending []*call // written, answer not read yet; oldest first
	err     error   // sticky transport/protocol error

	// outNames are the names of the last tensor answer's columns (decodeTensors).
	outNames atomic.Pointer[[]string]

	readOnce  sync.Once
	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// call is one request in flight: what answers it, and the answer once it came. Calls are reused (callPool): the
// reader signals done once per use instead of closing it.
type call struct {
	want      Kind          // the result kind that answers it (or an E frame, for a predict)
	done      chan struct{} // receives one value when the answer (or the stream's failure) is in (answered)
	answered  bool          // guarded by Client.mu
	abandoned bool          // its caller left (ctx ended): the answer is dropped; guarded by Client.mu
	payload   []byte
	timings   Timings
	timed     bool
	err       error
}

// AbandonedError is returned by a call whose context ended before its answer arrived. Started says the replica
// was already working on it (every earlier call had been answered): a deadline that passes then is the model's
// own time, where a call still waiting behind others was only queued.
type AbandonedError struct {
	Err     error // the context's error
	Started bool
}

func (e *AbandonedError) Error() string { return e.Err.Error() }
func (e *AbandonedError) Unwrap() error { return e.Err }

// CallTimings receives the child's own profile of one call (an m frame), when the child sends one; see
// NewCallTimings.
type CallTimings struct {
	Timings
	Reported bool
}

type callTimingsKey struct{}

// NewCallTimings returns ctx carrying a new CallTimings, made in one allocation with the context (a server asks
// for the timings of every call): a predict call made with the context stores the child's profile of that call
// there (the way net/http/httptrace hands a request its trace hooks). Calls may overlap, so there is no "last
// call's timings" to ask for afterwards.
func NewCallTimings(ctx context.Context) (context.Context, *CallTimings) {
	c := &timingsCtx{Context: ctx}
	return c, &c.t
}

// timingsCtx is a context carrying a CallTimings of its own (NewCallTimings).
type timingsCtx struct {
	context.Context
	t CallTimings
}

func (c *timingsCtx) Value(key any) any {
	if _, ok := key.(callTimingsKey); ok {
		return &c.t
	}
	return c.Context.Value(key)
}

// NewClient wraps the child's stdin (frames to the child) and stdout (frames from it).
func NewClient(stdin io.WriteCloser, stdout io.Reader) *Client {
	return &Client{stdin: stdin, stdout: bufio.NewReaderSize(stdout, 64<<10)}
}

// ReadHello reads the hello frame. It fails if the child reported ok=false (the error
// includes the child's message) or sent anything other than a hello. Call it before any other call.
func (c *Client) ReadHello() (Hello, error) {
	c.mu.Lock()
	err := c.usableLocked()
	c.mu.Unlock()
	if err != nil {
		return Hello{}, err
	}
	kind, payload, err := c.read()
	if err != nil {
		return Hello{}, c.broken(err)
	}
	if kind != KindHello {
		return Hello{}, c.broken(fmt.Errorf("workerproto: expected hello, got frame %s", kind))
	}
	var h Hello
	if err := json.Unmarshal(payload, &h); err != nil {
		return Hello{}, c.broken(fmt.Errorf("workerproto: decode hello: %w", err))
	}
	if !h.OK {
		return h, fmt.Errorf("workerproto: replica failed to load its model: %s", h.Error)
	}
	return h, nil
}

// PredictJSON is PredictJSONContext without a deadline.
func (c *Client) PredictJSON(body []byte) ([]byte, error) {
	return c.PredictJSONContext(context.Background(), body)
}

// PredictJSONContext sends a J frame and returns the j result. It returns a *ModelError when the model raised.
func (c *Client) PredictJSONContext(ctx context.Context, body []byte) ([]byte, error) {
	if len(body) > MaxFrame-1 {
		return nil, rejected(fmt.Errorf("%w (%d bytes)", ErrFrameTooLarge, len(body)))
	}
	return c.roundTrip(ctx, KindResultJSON, func(buf []byte) []byte { return appendFrame(buf, KindPredictJSON, body) })
}

// PredictTensors is PredictTensorsContext without a deadline.
func (c *Client) PredictTensors(in []Tensor) ([]Tensor, error) {
	return c.PredictTensorsContext(context.Background(), in)
}

// PredictTensorsContext sends a T frame and decodes the t result. The inputs are validated first. It returns a
// *ModelError when the model raised or the inputs are invalid.
func (c *Client) PredictTensorsContext(ctx context.Context, in []Tensor) ([]Tensor, error) {
	return c.predictFrame(ctx, in, func(buf []byte) []byte { return appendTensorFrame(buf, KindPredictTensors, in) })
}

// PredictTensorsParams is PredictTensorsParamsContext without a deadline.
func (c *Client) PredictTensorsParams(in []Tensor, params []byte) ([]Tensor, error) {
	return c.PredictTensorsParamsContext(context.Background(), in, params)
}

// PredictTensorsParamsContext sends a P frame (params, then the tensors) and decodes the t result: for models
// whose predict() takes params (Hello.Params); the server never sends it to others.
func (c *Client) PredictTensorsParamsContext(ctx context.Context, in []Tensor, params []byte) ([]Tensor, error) {
	return c.predictFrame(ctx, in, func(buf []byte) []byte { return appendParamsFrame(buf, params, in) })
}

// predictFrame validates in, sends the frame that build makes, and decodes the t result.
func (c *Client) predictFrame(ctx context.Context, in []Tensor, build func(buf []byte) []byte) ([]Tensor, error) {
	for _, t := range in {
		if err := t.Validate(); err != nil {
			return nil, rejected(err)
		}
	}
	payload, err := c.roundTrip(ctx, KindResultTensors, build)
	if err != nil {
		return nil, err
	}
	var names []string
	if p := c.outNames.Load(); p != nil {
		names = *p
	}
	out, err := decodeTensors(payload, names) // payload is freshly allocated: aliasing is safe
	if err != nil {
		return nil, c.broken(err)
	}
	if !sameNames(out, names) {
		fresh := make([]string, len(out))
		for i := range out {
			fresh[i] = out[i].Name
		}
		c.outNames.Store(&fresh)
	}
	return out, nil
}

// sameNames reports whether the columns of ts are called names, in order.
func sameNames(ts []Tensor, names []string) bool {
	if len(ts) != len(names) {
		return false
	}
	for i := range ts {
		if ts[i].Name != names[i] {
			return false
		}
	}
	return true
}

// Ping is PingContext without a deadline.
func (c *Client) Ping() error { return c.PingContext(context.Background()) }

// PingContext sends Q and waits for q. Pings queue behind the calls in flight like any other call.
func (c *Client) PingContext(ctx context.Context) error {
	_, err := c.roundTrip(ctx, KindPong, func(buf []byte) []byte { return appendFrame(buf, KindPing, nil) })
	return err
}

// Close closes the child's stdin; the child exits when it reads EOF, after answering the requests it has read.
// It does not wait for the calls in flight: they get their answers, or fail once the child's stream ends.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		if err := c.stdin.Close(); err != nil {
			c.closeErr = fmt.Errorf("workerproto: close stdin: %w", err)
		}
	})
	return c.closeErr
}

func (c *Client) usableLocked() error {
	if c.err != nil {
		return c.err
	}
	if c.closed.Load() {
		return ErrClosed
	}
	return nil
}

// fail records err as the client's sticky error (the first one wins) and fails every call in flight with it.
func (c *Client) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
	}
	for _, p := range c.pending {
		p.err = c.err
		p.answer()
	}
	c.pending = nil
}

// broken is fail for a caller that returns the error: it returns the sticky error (err, unless the stream had
// already failed).
func (c *Client) broken(err error) error {
	c.fail(err)
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// rejected reports a request refused before anything was sent.
func rejected(err error) error {
	return &ModelError{Message: err.Error(), Type: "ValueError"}
}

// roundTrip writes the frame build makes, queued for its answer of kind want, and waits for that answer or for
// ctx to end.
func (c *Client) roundTrip(ctx context.Context, want Kind, build func(buf []byte) []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, &AbandonedError{Err: err}
	}
	cl, err := c.send(want, build)
	if err != nil {
		return nil, err
	}
	select {
	case <-cl.done:
	case <-ctx.Done():
		if started, left := c.abandon(cl); left {
			return nil, &AbandonedError{Err: ctx.Err(), Started: started}
		}
		<-cl.done // answered just now
	}
	if err := cl.err; err != nil {
		putCall(cl)
		return nil, err
	}
	if t, ok := ctx.Value(callTimingsKey{}).(*CallTimings); ok {
		t.Timings, t.Reported = cl.timings, cl.timed
	}
	payload := cl.payload
	putCall(cl)
	return payload, nil
}

// send writes one request frame and queues its call. Frames go out whole and in queue order: the write lock is
// held across both.
func (c *Client) send(want Kind, build func(buf []byte) []byte) (*call, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf = build(c.wbuf[:0])
	if len(c.wbuf)-4 > MaxFrame {
		c.trimBuf()
		return nil, rejected(fmt.Errorf("%w (%d bytes)", ErrFrameTooLarge, len(c.wbuf)-headerLen))
	}
	c.mu.Lock()
	if err := c.usableLocked(); err != nil {
		c.mu.Unlock()
		return nil, err
	}
	cl := getCall(want)
	c.pending = append(c.pending, cl) // before the write: the answer may arrive before Write returns
	c.mu.Unlock()
	c.readOnce.Do(func() { go c.readLoop() }) // owned by the client: ends when the child's stream ends
	err := writeAll(c.stdin, c.wbuf)
	c.trimBuf()
	if err != nil {
		c.fail(err) // a frame cut short puts the stream out of step: fails cl too
	}
	return cl, nil
}

func (c *Client) trimBuf() {
	if cap(c.wbuf) > keepBuf {
		c.wbuf = nil
	}
}

// abandon marks cl as left by its caller. It reports whether the replica had started on it (it was the oldest
// call in flight) and whether it was still waiting (false: its answer is in).
func (c *Client) abandon(cl *call) (started, left bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cl.answered {
		return false, false
	}
	cl.abandoned = true
	return len(c.pending) > 0 && c.pending[0] == cl, true
}

// readLoop reads the answers and hands each to the oldest call in flight, until the stream fails or ends.
func (c *Client) readLoop() {
	var timings Timings
	timed := false
	// An m frame (24 bytes, before each answer of a runtime that profiles its calls) is read here rather than into
	// a payload of its own: it is decoded at once and not kept.
	var scratch [timingsLen]byte
	for {
		kind, payload, err := c.readInto(scratch[:])
		if err != nil {
			c.fail(err)
			return
		}
		if kind == KindTimings { // the profile of the answer that follows
			if timings, err = decodeTimings(payload); err != nil {
				c.fail(err)
				return
			}
			timed = true
			continue
		}
		if err := c.deliver(kind, payload, timings, timed); err != nil {
			c.fail(err)
			return
		}
		timed = false
	}
}

// deliver answers the oldest call in flight with one frame; an error is a protocol error (the stream is out of
// step).
func (c *Client) deliver(kind Kind, payload []byte, timings Timings, timed bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.pending) == 0 {
		return fmt.Errorf("workerproto: unexpected frame %s with no request in flight", kind)
	}
	cl := c.pending[0]
	switch {
	case kind == cl.want:
		cl.payload = payload
	case kind == KindError && cl.want != KindPong:
		me := &ModelError{}
		if err := json.Unmarshal(payload, me); err != nil {
			cl.err = fmt.Errorf("workerproto: undecodable error frame %.200q: %w", payload, err)
		} else {
			cl.err = me
		}
	default:
		return fmt.Errorf("workerproto: expected %s, got frame %s", cl.want, kind)
	}
	// Shift rather than reslice: a queue that slid forward would reallocate on every call (it holds a call or two).
	n := copy(c.pending, c.pending[1:])
	c.pending[n] = nil
	c.pending = c.pending[:n]
	cl.timings, cl.timed = timings, timed
	if cl.abandoned { // nobody waits for it: let the memory go
		cl.payload = nil
	}
	cl.answer()
	return nil
}

// answer signals cl's caller that its answer (or error) is in; under Client.mu, once per use of cl, and the
// last the reader does with cl: from then on cl is its caller's alone.
func (cl *call) answer() {
	cl.answered = true
	select {
	case cl.done <- struct{}{}: // room for one, and one answer per use
	default: // (not reached: a second answer would be a bug, which must not stop the reader holding mu)
	}
}

// callPool holds calls whose caller took their answer: a call and its channel were two allocations per request.
// An abandoned call is never put back (its answer may still come).
var callPool = sync.Pool{New: func() any { return &call{done: make(chan struct{}, 1)} }}

func getCall(want Kind) *call {
	cl := callPool.Get().(*call)
	cl.want = want
	return cl
}

// putCall recycles cl once its caller has received from done and read the answer.
func putCall(cl *call) {
	*cl = call{done: cl.done} // its channel is empty: its one value was received
	callPool.Put(cl)
}

// read reads one frame into a new payload slice that the caller may keep. Only ReadHello (before any call) and
// then the read loop read the stream.
func (c *Client) read() (Kind, []byte, error) { return c.readInto(nil) }

// readInto is read for a payload that fits in scratch and is of the one kind not kept (an m frame): it is
// read into scratch (valid until the next read) instead of a new slice.
func (c *Client) readInto(scratch []byte) (Kind, []byte, error) {
	kind, payload, err := readFrameKeep(c.stdout, c.hdr[:], scratch, KindTimings)
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = fmt.Errorf("workerproto: replica closed its stdout: %w", err)
		}
		return 0, nil, err
	}
	return kind, payload, nil
}

// appendFrame appends a complete frame with a raw payload to dst.
func appendFrame(dst []byte, kind Kind, payload []byte) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, headerLen)...)
	dst = append(dst, payload...)
	putHeader(dst[start:], kind, len(payload))
	return dst
}

// appendTensorFrame appends a complete frame (header and tensor payload) to dst.
func appendTensorFrame(dst []byte, kind Kind, ts []Tensor) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, headerLen)...)
	dst = EncodeTensors(dst, ts)
	putHeader(dst[start:], kind, len(dst)-start-headerLen)
	return dst
}

// appendParamsFrame appends a complete P frame to dst: params_len:uint32 (little-endian) | params JSON | the
// tensor payload.
func appendParamsFrame(dst, params []byte, ts []Tensor) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, headerLen)...)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(params)))
	dst = append(dst, params...)
	dst = EncodeTensors(dst, ts)
	putHeader(dst[start:], KindPredictParams, len(dst)-start-headerLen)
	return dst
}
