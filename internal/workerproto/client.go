package workerproto

import (
	"bufio"
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

// Client is the server side of one replica connection. It runs one request at a time:
// concurrent calls wait for each other (a Ping waits for an in-flight predict).
//
// Cancellation: reads from a pipe cannot be cancelled. To enforce a deadline, the owner
// of the child process kills it; the pending call then fails once the child's stdout
// reaches EOF (with exec.Cmd, Wait also closes the pipe). After any I/O or protocol
// error the stream may be out of step, so every later call returns that same error and
// the replica should be replaced. A *ModelError is not such an error: the model raised
// and the replica is still healthy. Requests rejected before anything is sent (invalid
// tensors, a frame over 256 MiB) also return a *ModelError, of type ValueError, since
// they leave the replica untouched.
type Client struct {
	mu     sync.Mutex
	stdin  io.WriteCloser
	stdout *bufio.Reader
	hdr    [headerLen]byte
	wbuf   []byte
	err    error // sticky transport/protocol error

	timings Timings // from the m frame before the last result
	timed   bool    // timings belong to the last call

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// NewClient wraps the child's stdin (frames to the child) and stdout (frames from it).
func NewClient(stdin io.WriteCloser, stdout io.Reader) *Client {
	return &Client{stdin: stdin, stdout: bufio.NewReaderSize(stdout, 64<<10)}
}

// ReadHello reads the hello frame. It fails if the child reported ok=false (the error
// includes the child's message) or sent anything other than a hello.
func (c *Client) ReadHello() (Hello, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.usable(); err != nil {
		return Hello{}, err
	}
	kind, payload, err := c.read()
	if err != nil {
		return Hello{}, err
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

// PredictJSON sends a J frame and returns the j result. It returns a *ModelError when
// the model raised.
func (c *Client) PredictJSON(body []byte) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.usable(); err != nil {
		return nil, err
	}
	if err := c.write(KindPredictJSON, body); err != nil {
		return nil, err
	}
	return c.result(KindResultJSON)
}

// PredictTensors sends a T frame and decodes the t result. The inputs are validated
// first. It returns a *ModelError when the model raised or the inputs are invalid.
func (c *Client) PredictTensors(in []Tensor) ([]Tensor, error) {
	return c.predictFrame(in, func(buf []byte) []byte { return appendTensorFrame(buf, KindPredictTensors, in) })
}

// PredictTensorsParams sends a P frame (params, then the tensors) and decodes the t result: for models whose
// predict() takes params (Hello.Params); the server never sends it to others.
func (c *Client) PredictTensorsParams(in []Tensor, params []byte) ([]Tensor, error) {
	return c.predictFrame(in, func(buf []byte) []byte { return appendParamsFrame(buf, params, in) })
}

// predictFrame validates in, writes the frame that appendFrame builds into the write buffer, and decodes the
// t result.
func (c *Client) predictFrame(in []Tensor, appendFrame func(buf []byte) []byte) ([]Tensor, error) {
	for _, t := range in {
		if err := t.Validate(); err != nil {
			return nil, rejected(err)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.usable(); err != nil {
		return nil, err
	}
	c.wbuf = appendFrame(c.wbuf[:0])
	err := c.writeBuf()
	if cap(c.wbuf) > keepBuf {
		c.wbuf = nil
	}
	if err != nil {
		return nil, err
	}
	payload, err := c.result(KindResultTensors)
	if err != nil {
		return nil, err
	}
	out, err := DecodeTensors(payload) // payload is freshly allocated: aliasing is safe
	if err != nil {
		return nil, c.broken(err)
	}
	return out, nil
}

// Ping sends Q and waits for q.
func (c *Client) Ping() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.usable(); err != nil {
		return err
	}
	if err := c.write(KindPing, nil); err != nil {
		return err
	}
	kind, _, err := c.read()
	if err != nil {
		return err
	}
	if kind != KindPong {
		return c.broken(fmt.Errorf("workerproto: expected pong, got frame %s", kind))
	}
	return nil
}

// Close closes the child's stdin; the child exits when it reads EOF. It does not wait
// for an in-flight call (that call fails once the child exits).
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		if err := c.stdin.Close(); err != nil {
			c.closeErr = fmt.Errorf("workerproto: close stdin: %w", err)
		}
	})
	return c.closeErr
}

func (c *Client) usable() error {
	if c.err != nil {
		return c.err
	}
	if c.closed.Load() {
		return ErrClosed
	}
	return nil
}

// broken records err as the client's sticky error and returns it.
func (c *Client) broken(err error) error {
	c.err = err
	return err
}

func (c *Client) write(kind Kind, payload []byte) error {
	if len(payload) > MaxFrame-1 {
		return rejected(fmt.Errorf("%w (%d bytes)", ErrFrameTooLarge, len(payload)))
	}
	if err := WriteFrame(c.stdin, kind, payload); err != nil {
		return c.broken(err)
	}
	return nil
}

// rejected reports a request refused before anything was sent.
func rejected(err error) error {
	return &ModelError{Message: err.Error(), Type: "ValueError"}
}

// writeBuf writes the complete frame prepared in c.wbuf.
func (c *Client) writeBuf() error {
	if len(c.wbuf)-4 > MaxFrame {
		return rejected(fmt.Errorf("%w (%d bytes)", ErrFrameTooLarge, len(c.wbuf)-headerLen))
	}
	if err := writeAll(c.stdin, c.wbuf); err != nil {
		return c.broken(err)
	}
	return nil
}

// read reads one frame into a new payload slice that the caller may keep.
func (c *Client) read() (Kind, []byte, error) {
	kind, payload, err := readFrame(c.stdout, c.hdr[:], nil)
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = fmt.Errorf("workerproto: replica closed its stdout: %w", err)
		}
		return 0, nil, c.broken(err)
	}
	return kind, payload, nil
}

// LastTimings returns the child's profile of the last predict call, when it sent one (Hello.Timings).
func (c *Client) LastTimings() (Timings, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.timings, c.timed
}

// result reads the answer to a predict: want's payload, or a *ModelError. An m frame before it is kept
// (LastTimings).
func (c *Client) result(want Kind) ([]byte, error) {
	c.timed = false
	kind, payload, err := c.read()
	if err != nil {
		return nil, err
	}
	if kind == KindTimings {
		if c.timings, err = decodeTimings(payload); err != nil {
			return nil, c.broken(err)
		}
		c.timed = true
		if kind, payload, err = c.read(); err != nil {
			return nil, err
		}
	}
	switch kind {
	case want:
		return payload, nil
	case KindError:
		me := &ModelError{}
		if err := json.Unmarshal(payload, me); err != nil {
			return nil, fmt.Errorf("workerproto: undecodable error frame %.200q: %w", payload, err)
		}
		return nil, me
	default:
		return nil, c.broken(fmt.Errorf("workerproto: expected %s, got frame %s", want, kind))
	}
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
