package workerproto

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		kind Kind
		size int
	}{
		{"empty ping", KindPing, 0},
		{"one byte", KindPredictJSON, 1},
		{"single write limit", KindResultJSON, smallFrame},
		{"two writes", KindPredictTensors, smallFrame + 1},
		{"one MiB", KindResultTensors, 1 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			payload := bytes.Repeat([]byte{0xa5}, tt.size)
			var w bytes.Buffer
			if err := WriteFrame(&w, tt.kind, payload); err != nil {
				t.Fatal(err)
			}
			if got, want := w.Len(), headerLen+tt.size; got != want {
				t.Fatalf("frame is %d bytes, want %d", got, want)
			}
			kind, got, err := ReadFrame(&w, nil)
			if err != nil {
				t.Fatal(err)
			}
			if kind != tt.kind || !bytes.Equal(got, payload) {
				t.Fatalf("got kind %s and %d bytes, want %s and %d", kind, len(got), tt.kind, len(payload))
			}
			if _, _, err := ReadFrame(&w, nil); err != io.EOF {
				t.Fatalf("after the last frame: got %v, want io.EOF", err)
			}
		})
	}
}

func TestFrameWireFormat(t *testing.T) {
	var w bytes.Buffer
	if err := WriteFrame(&w, KindPredictJSON, []byte(`[1]`)); err != nil {
		t.Fatal(err)
	}
	want := []byte{0, 0, 0, 4, 'J', '[', '1', ']'}
	if !bytes.Equal(w.Bytes(), want) {
		t.Fatalf("got % x, want % x", w.Bytes(), want)
	}
}

// countingWriter counts Write calls.
type countingWriter struct {
	bytes.Buffer
	writes int
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.writes++
	return c.Buffer.Write(p)
}

func TestWriteFrameSingleWriteForSmallFrames(t *testing.T) {
	var w countingWriter
	if err := WriteFrame(&w, KindResultJSON, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	if w.writes != 1 {
		t.Fatalf("%d Write calls, want 1", w.writes)
	}
}

func TestReadFrameReusesBuffer(t *testing.T) {
	var w bytes.Buffer
	if err := WriteFrame(&w, KindResultJSON, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	_, payload, err := ReadFrame(&w, buf)
	if err != nil {
		t.Fatal(err)
	}
	if &payload[0] != &buf[0] {
		t.Fatal("payload does not reuse buf")
	}
}

func TestReadFrameErrors(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		wantErr string
		is      error
	}{
		{"eof at boundary", nil, "", io.EOF},
		{"partial header", []byte{0, 0}, "", io.ErrUnexpectedEOF},
		{"zero length", []byte{0, 0, 0, 0, 'J'}, "frame length 0", nil},
		{"too large", []byte{0x10, 0, 0, 1, 'J'}, "exceeds 256 MiB", nil},
		{"truncated payload", []byte{0, 0, 0, 9, 'J', 'x'}, "payload", io.ErrUnexpectedEOF},
		{"stray print", []byte("Loading model...\n"), "stray print", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := ReadFrame(bytes.NewReader(tt.in), nil)
			if err == nil {
				t.Fatal("no error")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Fatalf("got %v, want %v", err, tt.is)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %q, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestWriteFrameTooLarge(t *testing.T) {
	var w countingWriter
	err := WriteFrame(&w, KindResultJSON, make([]byte, MaxFrame))
	if !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("got %v, want ErrFrameTooLarge", err)
	}
	if w.writes != 0 {
		t.Fatal("wrote part of an oversized frame")
	}
}

func TestKindString(t *testing.T) {
	if got := KindHello.String(); got != "H (hello)" {
		t.Fatalf("got %q", got)
	}
	if got := Kind('Z').String(); got != "0x5a (unknown)" {
		t.Fatalf("got %q", got)
	}
}

func TestFrameBuffered(t *testing.T) {
	var two bytes.Buffer
	for _, payload := range []string{"first", "second answer"} {
		if err := WriteFrame(&two, KindResultJSON, []byte(payload)); err != nil {
			t.Fatal(err)
		}
	}
	whole := two.Bytes()
	firstLen := headerLen + len("first")
	tests := []struct {
		name string
		have int  // bytes of the stream that have arrived
		read int  // frames read before asking
		want bool // a whole frame is buffered
	}{
		{"nothing yet", 0, 0, false},
		{"part of a header", 3, 0, false},
		{"a header without its payload", headerLen, 0, false},
		{"all but the last byte", firstLen - 1, 0, false},
		{"one whole frame", firstLen, 0, true},
		{"both frames", len(whole), 0, true},
		{"the second frame, after the first was read", len(whole), 1, true},
		{"the second frame's header only, after the first was read", firstLen + headerLen, 1, false},
		{"all read", len(whole), 2, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := bufio.NewReader(bytes.NewReader(whole[:tt.have]))
			if tt.have > 0 {
				if _, err := r.Peek(1); err != nil { // fill the buffer with what has arrived
					t.Fatal(err)
				}
			}
			for range tt.read {
				if _, _, err := ReadFrame(r, nil); err != nil {
					t.Fatal(err)
				}
			}
			if got := FrameBuffered(r); got != tt.want {
				t.Fatalf("FrameBuffered = %v, want %v (%d bytes buffered)", got, tt.want, r.Buffered())
			}
		})
	}
}
