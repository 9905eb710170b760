package workerproto

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"time"
)

// Handler answers predict requests inside a replica. It must not keep the request's
// body or tensors after returning: Serve reuses their memory for the next frame. Results
// may alias the request; they are encoded before the next frame is read.
// Returning an error answers with an E frame and keeps serving; return a *ModelError
// to choose the error type (other errors are sent with type "Error").
type Handler interface {
	PredictTensors(in []Tensor) ([]Tensor, error)
	PredictJSON(body []byte) ([]byte, error)
}

// Serve runs the child side of the protocol: it writes hello, then answers frames from
// r on w, one at a time, until r reaches EOF (it returns nil). Q is answered with q;
// handler errors, undecodable tensor frames and unexpected frame kinds are answered
// with E frames. If hello.OK is false, Serve only writes the hello and returns nil.
// A read or write failure ends Serve with that error.
func Serve(r io.Reader, w io.Writer, hello Hello, h Handler) error {
	hb, err := json.Marshal(hello)
	if err != nil {
		return fmt.Errorf("workerproto: encode hello: %w", err)
	}
	if err := WriteFrame(w, KindHello, hb); err != nil {
		return err
	}
	if !hello.OK {
		return nil
	}
	s := server{r: bufio.NewReaderSize(r, 64<<10), w: bufio.NewWriterSize(w, 64<<10), h: h}
	return s.loop()
}

type server struct {
	r    *bufio.Reader
	w    *bufio.Writer // flushed as loop says: the answers to quick requests that came together go together
	h    Handler
	hdr  [headerLen]byte
	rbuf []byte
	wbuf []byte
}

// holdFor bounds how long an answer waits for the next one's company (the Python harness's HOLD_NS): only the
// answer of a call shorter than this is held, and for no longer than this in all. A slower call's answer goes
// out at once: held, it would wait for a whole next call.
const holdFor = time.Millisecond

func (s *server) loop() error {
	lastYield := time.Now()
	var held time.Time // when the oldest answer not yet flushed was ready (zero: none)
	for {
		kind, payload, err := readFrame(s.r, s.hdr[:], s.rbuf)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("workerproto: serve: %w", err)
		}
		if cap(payload) <= keepBuf {
			s.rbuf = payload[:0]
		}
		began := time.Now()
		if err := s.answer(kind, payload); err != nil {
			return err
		}
		// With the next request already here and this call quick, its answer may wait to go out with the next
		// one's: one write and one wake-up of the reader for several answers, at the price of at most holdFor.
		now := time.Now()
		if !FrameBuffered(s.r) || now.Sub(began) >= holdFor || (!held.IsZero() && now.Sub(held) >= holdFor) {
			if err := s.w.Flush(); err != nil {
				return err
			}
			held = time.Time{}
		} else if held.IsZero() {
			held = now
		}
		// This loop never waits in the scheduler (its reads block in the kernel), so after 10 ms the Go
		// runtime's monitor thread takes it for a runaway goroutine: it preempts it, takes its P away and
		// goes back to polling every 20 µs. In a busy worker that polling was ~20% of the process's CPU
		// (perf). Yielding every few milliseconds keeps the monitor asleep; yielding after every frame would
		// cost a thread wake-up each time.
		if now.Sub(lastYield) > 5*time.Millisecond {
			runtime.Gosched()
			lastYield = now
		}
	}
}

// answer handles one request frame and writes its response frame.
func (s *server) answer(kind Kind, payload []byte) error {
	switch kind {
	case KindPing:
		return WriteFrame(s.w, KindPong, nil)
	case KindPredictJSON:
		out, err := s.h.PredictJSON(payload)
		if err != nil {
			return s.writeError(err)
		}
		if len(out) > MaxFrame-1 {
			return s.writeError(fmt.Errorf("JSON result of %d bytes exceeds the 256 MiB frame limit", len(out)))
		}
		return WriteFrame(s.w, KindResultJSON, out)
	case KindPredictTensors:
		return s.predictTensors(payload)
	default:
		return s.writeError(&ModelError{Message: fmt.Sprintf("unexpected frame %s from the server", kind), Type: "ProtocolError"})
	}
}

func (s *server) predictTensors(payload []byte) error {
	in, err := DecodeTensors(payload)
	if err != nil {
		return s.writeError(&ModelError{Message: err.Error(), Type: "ProtocolError"})
	}
	out, err := s.h.PredictTensors(in)
	if err != nil {
		return s.writeError(err)
	}
	for _, t := range out {
		if err := t.Validate(); err != nil {
			return s.writeError(fmt.Errorf("invalid result: %w", err))
		}
	}
	s.wbuf = appendTensorFrame(s.wbuf[:0], KindResultTensors, out)
	defer func() {
		if cap(s.wbuf) > keepBuf {
			s.wbuf = nil
		}
	}()
	if len(s.wbuf)-4 > MaxFrame {
		return s.writeError(fmt.Errorf("tensor result of %d bytes exceeds the 256 MiB frame limit", len(s.wbuf)-headerLen))
	}
	return writeAll(s.w, s.wbuf)
}

func (s *server) writeError(err error) error {
	return WriteFrame(s.w, KindError, errorPayload(err))
}
