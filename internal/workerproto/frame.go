// Package workerproto implements the server ⇄ replica wire protocol described in
// docs/worker-protocol.md: length-prefixed frames over the child's stdin/stdout,
// a little-endian tensor encoding, and the JSON hello/error payloads. It is also the
// tensor element layer (elem.go) that every package reading or writing tensor elements
// uses: Datatype, element readers and writers by datatype, half floats, BYTES builders.
//
// Decisions where the document is silent:
//   - The 256 MiB limit (MaxFrame) applies to the length field, i.e. kind byte plus payload.
//   - A length field of 0 (no kind byte) is a protocol error.
//   - Tensor frames: dims must be ≥ 0 (-1 only appears in Column metadata), names must be
//     valid UTF-8, BOOL bytes must be 0 or 1, and no bytes may follow the last column.
package workerproto

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Kind is the one-byte frame kind (an ASCII letter).
type Kind byte

// Frame kinds; see docs/worker-protocol.md.
const (
	KindHello          Kind = 'H' // child → server, once
	KindPredictJSON    Kind = 'J' // server → child
	KindPredictTensors Kind = 'T' // server → child
	KindPredictParams  Kind = 'P' // server → child: params JSON + tensors, for a predict() that takes params
	KindResultJSON     Kind = 'j' // child → server
	KindResultTensors  Kind = 't' // child → server
	KindError          Kind = 'E' // child → server: the model raised, replica stays up
	KindPing           Kind = 'Q' // server → child
	KindPong           Kind = 'q' // child → server
	// KindTimings (child → server, optional) comes right before a result: how long the child spent decoding
	// the request, in predict() and encoding the answer (Timings).
	KindTimings Kind = 'm'
)

// MaxFrame is the largest value of a frame's length field (kind byte + payload).
const MaxFrame = 256 << 20

const headerLen = 5 // length:uint32 + kind:uint8

// smallFrame is the payload size up to which WriteFrame copies header and payload
// into one buffer so that the frame goes out in a single Write call.
const smallFrame = 64 << 10

// ErrFrameTooLarge is returned when a frame would exceed MaxFrame.
var ErrFrameTooLarge = errors.New("workerproto: frame exceeds 256 MiB")

var kindNames = map[Kind]string{
	KindHello: "hello", KindPredictJSON: "predict-json", KindPredictTensors: "predict-tensors", KindPredictParams: "predict-params",
	KindResultJSON: "result-json", KindResultTensors: "result-tensors", KindError: "error",
	KindPing: "ping", KindPong: "pong", KindTimings: "timings",
}

func (k Kind) String() string {
	if n, ok := kindNames[k]; ok {
		return fmt.Sprintf("%c (%s)", byte(k), n)
	}
	return fmt.Sprintf("0x%02x (unknown)", byte(k))
}

// putHeader writes the 5-byte frame header for a payload of n bytes into b.
func putHeader(b []byte, kind Kind, n int) {
	binary.BigEndian.PutUint32(b, uint32(n+1))
	b[4] = byte(kind)
}

// WriteFrame writes one frame. Payloads up to 64 KiB go out in a single Write call;
// larger ones as header then payload. It is not safe for concurrent use on one writer.
func WriteFrame(w io.Writer, kind Kind, payload []byte) error {
	if len(payload) > MaxFrame-1 {
		return ErrFrameTooLarge
	}
	if len(payload) <= smallFrame {
		b := make([]byte, headerLen+len(payload))
		putHeader(b, kind, len(payload))
		copy(b[headerLen:], payload)
		return writeAll(w, b)
	}
	var h [headerLen]byte
	putHeader(h[:], kind, len(payload))
	if err := writeAll(w, h[:]); err != nil {
		return err
	}
	return writeAll(w, payload)
}

func writeAll(w io.Writer, b []byte) error {
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("workerproto: write frame: %w", err)
	}
	return nil
}

// ReadFrame reads one frame and returns its kind and payload. The payload is stored in
// buf when cap(buf) is large enough (so it is only valid until buf is reused), otherwise
// in a new slice. At a clean frame boundary it returns io.EOF; a frame cut short returns
// io.ErrUnexpectedEOF.
func ReadFrame(r io.Reader, buf []byte) (Kind, []byte, error) {
	var hdr []byte
	if cap(buf) >= headerLen {
		hdr = buf[:headerLen]
	} else {
		hdr = make([]byte, headerLen)
	}
	return readFrame(r, hdr, buf)
}

// readFrame is ReadFrame with a separate header scratch (which may overlap buf).
func readFrame(r io.Reader, hdr, buf []byte) (Kind, []byte, error) {
	return readFrameKeep(r, hdr, buf, 0)
}

// readFrameKeep is readFrame for a reader that keeps payloads: buf is used only for a frame of kind scratchKind
// (0: of any kind); other frames get a new slice.
func readFrameKeep(r io.Reader, hdr, buf []byte, scratchKind Kind) (Kind, []byte, error) {
	if _, err := io.ReadFull(r, hdr); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr)
	kind := Kind(hdr[4])
	switch {
	case n == 0:
		return 0, nil, fmt.Errorf("workerproto: frame length 0 (no kind byte)%s", strayHint(hdr))
	case n > MaxFrame:
		return 0, nil, fmt.Errorf("workerproto: frame length %d exceeds 256 MiB%s", n, strayHint(hdr))
	}
	size := int(n) - 1
	if cap(buf) < size || scratchKind != 0 && kind != scratchKind {
		buf = make([]byte, size)
	}
	payload := buf[:size]
	if _, err := io.ReadFull(r, payload); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, fmt.Errorf("workerproto: read %s payload (%d bytes): %w", kind, size, err)
	}
	return kind, payload, nil
}

// strayHint explains the usual cause of a garbage header: something printed text to stdout.
func strayHint(hdr []byte) string {
	for _, c := range hdr {
		if c < 0x20 && c != '\n' && c != '\r' && c != '\t' || c > 0x7e {
			return ""
		}
	}
	return fmt.Sprintf(" (stdout starts with text %q: a stray print to stdout?)", hdr)
}

// FrameBuffered reports whether r's buffer already holds a whole frame, i.e. whether ReadFrame on r will return
// without reading from the underlying stream. A relay uses it to write ahead while frames keep coming and to
// flush when the next one has yet to arrive (a partly buffered frame counts as not buffered: its rest may take
// a while).
func FrameBuffered(r *bufio.Reader) bool {
	n := r.Buffered()
	if n < headerLen {
		return false
	}
	h, err := r.Peek(headerLen)
	if err != nil {
		return false
	}
	return int64(binary.BigEndian.Uint32(h)) <= int64(n-4) // the length field counts the kind byte and the payload
}
