package workerproto

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"
)

// echo answers tensors with themselves (renamed) and JSON by wrapping it.
type echo struct{}

func (echo) PredictTensors(in []Tensor) ([]Tensor, error) {
	if len(in) > 0 && in[0].Name == "raise" {
		return nil, &ModelError{Message: "bad input", Type: "ValueError"}
	}
	if len(in) > 0 && in[0].Name == "fail" {
		return nil, errors.New("plain failure")
	}
	out := make([]Tensor, len(in))
	for i, t := range in {
		t.Name = "out_" + t.Name
		out[i] = t
	}
	return out, nil
}

func (echo) PredictJSON(body []byte) ([]byte, error) {
	if string(body) == `"raise"` {
		return nil, &ModelError{Message: "no", Type: "KeyError"}
	}
	return []byte(`{"echo":` + string(body) + `}`), nil
}

var testHello = Hello{OK: true, Runtime: "test", PID: 42,
	Inputs:  []Column{{Name: "x", Datatype: "FP32", Shape: []int64{-1, 4}}},
	Outputs: []Column{{Name: "y", Datatype: "FP32"}}}

// startServe connects a Client to Serve over two io.Pipes. Cleanup closes the client
// (EOF for Serve) and waits for Serve to return nil.
func startServe(tb testing.TB, hello Hello, h Handler) *Client {
	tb.Helper()
	reqR, reqW := io.Pipe()
	respR, respW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := Serve(reqR, respW, hello, h)
		respW.CloseWithError(io.EOF)
		reqR.Close() // unblock a client still writing
		done <- err
	}()
	c := NewClient(reqW, respR)
	tb.Cleanup(func() {
		c.Close()
		if err := <-done; err != nil {
			tb.Errorf("Serve: %v", err)
		}
	})
	return c
}

func TestClientServe(t *testing.T) {
	c := startServe(t, testHello, echo{})
	h, err := c.ReadHello()
	if err != nil {
		t.Fatal(err)
	}
	if h.PID != 42 || h.Runtime != "test" || len(h.Inputs) != 1 || h.Inputs[0].Shape[1] != 4 {
		t.Fatalf("hello = %+v", h)
	}
	if err := c.Ping(); err != nil {
		t.Fatal(err)
	}
	in := []Tensor{NewFloat32("x", []int64{2, 2}, []float32{1, 2, 3, 4}), NewBytes("s", nil, []string{"a", "bc"})}
	out, err := c.PredictTensors(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 2 || out[0].Name != "out_x" || out[1].Name != "out_s" || string(out[1].Strings[1]) != "bc" {
		t.Fatalf("out = %+v", out)
	}
	if v, _ := out[0].Float32s(); fmt.Sprint(v) != "[1 2 3 4]" {
		t.Fatalf("values = %v", v)
	}
	got, err := c.PredictJSON([]byte(`[1,2]`))
	if err != nil || string(got) != `{"echo":[1,2]}` {
		t.Fatalf("PredictJSON = %s, %v", got, err)
	}
}

func TestClientModelErrors(t *testing.T) {
	c := startServe(t, testHello, echo{})
	if _, err := c.ReadHello(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		call func() error
		want ModelError
	}{
		{"tensor ModelError keeps its type", func() error {
			_, err := c.PredictTensors([]Tensor{NewInt64("raise", nil, []int64{1})})
			return err
		}, ModelError{"bad input", "ValueError"}},
		{"plain error gets type Error", func() error {
			_, err := c.PredictTensors([]Tensor{NewInt64("fail", nil, []int64{1})})
			return err
		}, ModelError{"plain failure", "Error"}},
		{"json ModelError", func() error {
			_, err := c.PredictJSON([]byte(`"raise"`))
			return err
		}, ModelError{"no", "KeyError"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var me *ModelError
			if err := tt.call(); !errors.As(err, &me) || *me != tt.want {
				t.Fatalf("got %v, want %+v", err, tt.want)
			}
		})
	}
	if err := c.Ping(); err != nil {
		t.Fatalf("replica unhealthy after model errors: %v", err)
	}
}

func TestClientRejectsInvalidTensorsBeforeSending(t *testing.T) {
	c := startServe(t, testHello, echo{})
	if _, err := c.ReadHello(); err != nil {
		t.Fatal(err)
	}
	_, err := c.PredictTensors([]Tensor{NewFloat32("x", []int64{3}, []float32{1})})
	var me *ModelError
	if !errors.As(err, &me) || me.Type != "ValueError" || !strings.Contains(err.Error(), "needs 12 data bytes") {
		t.Fatalf("got %v", err)
	}
	_, err = c.PredictJSON(make([]byte, MaxFrame))
	if !errors.As(err, &me) || me.ModelErrorType() != "ValueError" || !strings.Contains(err.Error(), "exceeds 256 MiB") {
		t.Fatalf("oversized JSON: %v", err)
	}
	if err := c.Ping(); err != nil {
		t.Fatal(err)
	}
}

func TestReadHelloFailure(t *testing.T) {
	c := startServe(t, Hello{OK: false, Error: "Traceback: boom"}, echo{})
	_, err := c.ReadHello()
	if err == nil || !strings.Contains(err.Error(), "Traceback: boom") {
		t.Fatalf("got %v", err)
	}
}

func TestHelloJSON(t *testing.T) {
	tests := []struct {
		name  string
		hello Hello
		want  string
	}{
		{"failure has no columns", Hello{Error: "boom"}, `{"ok":false,"error":"boom"}`},
		{"success has arrays", Hello{OK: true, Runtime: "onnx", PID: 7}, `{"ok":true,"runtime":"onnx","pid":7,"inputs":[],"outputs":[]}`},
		{"unknown shape omitted, scalar kept", Hello{OK: true,
			Inputs: []Column{{Name: "a", Datatype: "FP64"}, {Name: "b", Datatype: "INT64", Shape: []int64{}}}},
			`{"ok":true,"inputs":[{"name":"a","datatype":"FP64"},{"name":"b","datatype":"INT64","shape":[]}],"outputs":[]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(tt.hello)
			if err != nil || string(b) != tt.want {
				t.Fatalf("got %s (%v), want %s", b, err, tt.want)
			}
		})
	}
	var h Hello
	if err := json.Unmarshal([]byte(`{"ok":true,"inputs":[{"name":"a","datatype":"FP64","shape":null}],"outputs":[]}`), &h); err != nil || h.Inputs[0].Shape != nil {
		t.Fatalf("null shape: %+v %v", h, err)
	}
}

// fakeChild writes the raw bytes of hello first, then one of answers for each request frame it reads, in
// order; once they are all sent it closes its stdout.
func fakeChild(t *testing.T, hello []byte, answers ...[]byte) *Client {
	t.Helper()
	reqR, reqW := io.Pipe()
	respR, respW := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = respW.Write(hello)
		for _, a := range answers {
			if _, _, err := ReadFrame(reqR, nil); err != nil {
				break
			}
			_, _ = respW.Write(a)
		}
		respW.Close()
		_, _ = io.Copy(io.Discard, reqR)
	}()
	c := NewClient(reqW, respR)
	t.Cleanup(func() {
		c.Close()
		<-done
	})
	return c
}

func TestClientProtocolErrorsAreSticky(t *testing.T) {
	hello, _ := json.Marshal(testHello)
	var helloFrame bytes.Buffer
	if err := WriteFrame(&helloFrame, KindHello, hello); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		raw     []byte
		wantErr string
	}{
		{"stray print", []byte("Using TensorFlow backend\n"), "stray print"},
		{"pong instead of hello", []byte{0, 0, 0, 1, 'q'}, "expected hello"},
		{"child died", nil, "closed its stdout"},
		{"garbage hello", []byte{0, 0, 0, 2, 'H', '{'}, "decode hello"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := fakeChild(t, tt.raw)
			_, err := c.ReadHello()
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %v, want %q", err, tt.wantErr)
			}
			if err2 := c.Ping(); err2 != err {
				t.Fatalf("later call got %v, want the sticky %v", err2, err)
			}
		})
	}
	t.Run("unexpected result kind", func(t *testing.T) {
		c := fakeChild(t, helloFrame.Bytes(), []byte{0, 0, 0, 1, 'q'})
		if _, err := c.ReadHello(); err != nil {
			t.Fatal(err)
		}
		if _, err := c.PredictJSON([]byte(`1`)); err == nil || !strings.Contains(err.Error(), "expected j (result-json), got frame q (pong)") {
			t.Fatalf("got %v", err)
		}
	})
}

func TestClientClose(t *testing.T) {
	c := startServe(t, testHello, echo{})
	if _, err := c.ReadHello(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(); !errors.Is(err, ErrClosed) {
		t.Fatalf("got %v, want ErrClosed", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestServeAnswersBadFramesWithErrors(t *testing.T) {
	reqR, reqW := io.Pipe()
	respR, respW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- Serve(reqR, respW, testHello, echo{})
		respW.Close()
	}()
	defer func() {
		reqW.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	if k, _, err := ReadFrame(respR, nil); err != nil || k != KindHello {
		t.Fatalf("hello: %v %v", k, err)
	}
	tests := []struct {
		name    string
		kind    Kind
		payload []byte
		want    ModelError
	}{
		{"undecodable tensors", KindPredictTensors, []byte{1, 2}, ModelError{"workerproto: tensor frame: truncated", "ProtocolError"}},
		{"server-only kind", KindResultJSON, nil, ModelError{"unexpected frame j (result-json) from the server", "ProtocolError"}},
		{"unknown kind", Kind('Z'), nil, ModelError{"unexpected frame 0x5a (unknown) from the server", "ProtocolError"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := WriteFrame(reqW, tt.kind, tt.payload); err != nil {
				t.Fatal(err)
			}
			k, p, err := ReadFrame(respR, nil)
			if err != nil || k != KindError {
				t.Fatalf("got %v %v", k, err)
			}
			var me ModelError
			if err := json.Unmarshal(p, &me); err != nil || me != tt.want {
				t.Fatalf("got %s, want %+v", p, tt.want)
			}
		})
	}
	if err := WriteFrame(reqW, KindPing, nil); err != nil {
		t.Fatal(err)
	}
	if k, _, err := ReadFrame(respR, nil); err != nil || k != KindPong {
		t.Fatalf("ping after errors: %v %v", k, err)
	}
}

func BenchmarkClientServeRoundTrip(b *testing.B) {
	for _, rows := range []int{1, 100} {
		b.Run(fmt.Sprintf("rows=%d", rows), func(b *testing.B) {
			c := startServe(b, testHello, echo{})
			if _, err := c.ReadHello(); err != nil {
				b.Fatal(err)
			}
			in := []Tensor{NewFloat32("features", []int64{int64(rows), 4}, make([]float32, rows*4))}
			b.SetBytes(int64(EncodedLen(in)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.PredictTensors(in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// A P frame is params_len:uint32 LE, the params JSON, then a tensor payload (docs/worker-protocol.md).
func TestParamsFrameLayout(t *testing.T) {
	in := []Tensor{NewFloat64("x", []int64{2}, []float64{1, 2})}
	params := []byte(`{"threshold":0.5}`)
	frame := appendParamsFrame(nil, params, in)
	kind, payload, err := ReadFrame(bytes.NewReader(frame), nil)
	if err != nil || kind != KindPredictParams {
		t.Fatalf("frame kind %v, %v", kind, err)
	}
	n := int(payload[0]) | int(payload[1])<<8 | int(payload[2])<<16 | int(payload[3])<<24
	if got := string(payload[4 : 4+n]); got != string(params) {
		t.Fatalf("params %q, want %q", got, params)
	}
	out, err := DecodeTensors(payload[4+n:])
	if err != nil || len(out) != 1 || out[0].Name != "x" || !bytes.Equal(out[0].Data, in[0].Data) {
		t.Fatalf("tensors %+v, %v", out, err)
	}
	// A Go worker (ONNX) never advertises params, so it is never sent one; if it were, it answers an error
	// and stays up.
	c := startServe(t, testHello, echo{})
	if _, err := c.ReadHello(); err != nil {
		t.Fatal(err)
	}
	_, err = c.PredictTensorsParams(in, params)
	var me *ModelError
	if !errors.As(err, &me) || me.Type != "ProtocolError" {
		t.Fatalf("P frame to a Go worker: %v", err)
	}
	if _, err := c.PredictTensors(in); err != nil {
		t.Fatalf("the worker did not stay up: %v", err)
	}
}

// TestClientTimings: an m frame before a result is the child's profile of that call (NewCallTimings); a call
// answered without one reports none; a malformed one breaks the stream.
func TestClientTimings(t *testing.T) {
	frame := func(kind Kind, payload []byte) []byte {
		var b bytes.Buffer
		if err := WriteFrame(&b, kind, payload); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	hello, _ := json.Marshal(Hello{OK: true, Timings: true})
	timings := make([]byte, 24)
	timings[0], timings[8], timings[16] = 10, 200, 3 // ns, little-endian
	c := fakeChild(t, frame(KindHello, hello),
		slices.Concat(frame(KindTimings, timings), frame(KindResultJSON, []byte(`1`))),
		frame(KindResultJSON, []byte(`2`)),
		slices.Concat(frame(KindTimings, timings[:8]), frame(KindResultJSON, []byte(`3`))))
	h, err := c.ReadHello()
	if err != nil || !h.Timings {
		t.Fatalf("hello %+v, %v", h, err)
	}
	ctx, got := NewCallTimings(context.Background())
	if out, err := c.PredictJSONContext(ctx, []byte(`0`)); err != nil || string(out) != "1" {
		t.Fatalf("first call: %q, %v", out, err)
	}
	if !got.Reported || got.Timings != (Timings{Decode: 10, Predict: 200, Encode: 3}) {
		t.Fatalf("timings of the first call: %+v", got)
	}
	if out, err := c.PredictJSONContext(ctx, []byte(`0`)); err != nil || string(out) != "2" {
		t.Fatalf("second call: %q, %v", out, err)
	}
	if got.Reported {
		t.Fatalf("the second call sent no timings, got %+v", got)
	}
	if _, err := c.PredictJSON([]byte(`0`)); err == nil || !strings.Contains(err.Error(), "timings frame of 8 bytes") {
		t.Fatalf("short timings frame: %v", err)
	}
}

// TestClientReusesOutputNames: a replica answering with the columns of its last answer gets their names without
// a new string each; an answer with other columns gets its own names.
func TestClientReusesOutputNames(t *testing.T) {
	c := startServe(t, testHello, echo{})
	if _, err := c.ReadHello(); err != nil {
		t.Fatal(err)
	}
	call := func(names ...string) []Tensor {
		t.Helper()
		in := make([]Tensor, len(names))
		for i, n := range names {
			in[i] = NewFloat64(n, []int64{1}, []float64{float64(i)})
		}
		out, err := c.PredictTensors(in)
		if err != nil {
			t.Fatal(err)
		}
		for i, n := range names {
			if out[i].Name != "out_"+n {
				t.Fatalf("column %d is %q, want %q", i, out[i].Name, "out_"+n)
			}
		}
		return out
	}
	first := call("a", "b")
	second := call("a", "b")
	for i := range first {
		if unsafe.StringData(first[i].Name) != unsafe.StringData(second[i].Name) {
			t.Errorf("column %d: a second answer with the same columns allocated its name again", i)
		}
	}
	call("a", "c")
	call("a")
	call("b", "a", "d")
	if again := call("b", "a", "d"); again[2].Name != "out_d" {
		t.Fatalf("names %v", again)
	}
}

// TestNewCallTimings: the timings a context made by NewCallTimings carries reach the call through contexts
// derived from it (the pool adds a deadline), and its other values still answer.
func TestNewCallTimings(t *testing.T) {
	var b bytes.Buffer
	hello, _ := json.Marshal(Hello{OK: true, Timings: true})
	timings := make([]byte, 24)
	timings[0], timings[8], timings[16] = 7, 70, 9
	for _, f := range []struct {
		kind    Kind
		payload []byte
	}{{KindHello, hello}, {KindTimings, timings}, {KindResultJSON, []byte(`1`)}} {
		if err := WriteFrame(&b, f.kind, f.payload); err != nil {
			t.Fatal(err)
		}
	}
	c := fakeChild(t, b.Bytes())
	if _, err := c.ReadHello(); err != nil {
		t.Fatal(err)
	}
	type key struct{}
	ctx, got := NewCallTimings(context.WithValue(context.Background(), key{}, "v"))
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if ctx.Value(key{}) != "v" {
		t.Fatal("the parent's value is lost")
	}
	if _, err := c.PredictJSONContext(ctx, []byte(`0`)); err != nil {
		t.Fatal(err)
	}
	if !got.Reported || got.Timings != (Timings{Decode: 7, Predict: 70, Encode: 9}) {
		t.Fatalf("timings %+v", got)
	}
}
