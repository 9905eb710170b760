package workerproto

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Hello is the payload of the H frame the child sends once, after loading its model.
type Hello struct {
	OK      bool     `json:"ok"`
	Runtime string   `json:"runtime,omitempty"`
	PID     int      `json:"pid,omitempty"`
	Inputs  []Column `json:"inputs"`
	Outputs []Column `json:"outputs"`
	// Params says the model's predict() takes a params argument (MLflow's predict(data, params=...)): only
	// then does the server send it P frames.
	Params bool `json:"params,omitempty"`
	// PredictInput is what the Python harness hands predict() for a table: "numpy" (the 2-D block; declared in
	// runtime.yaml or by predict's annotation) or "dataframe". Empty for other runtimes.
	PredictInput string `json:"predict_input,omitempty"`
	// Timings says the child sends an m frame (Timings) before each result.
	Timings bool   `json:"timings,omitempty"`
	Error   string `json:"error,omitempty"`
}

// Timings is the payload of an m frame: the child's own profile of one request, three uint64 little-endian
// nanosecond counts.
type Timings struct {
	Decode  time.Duration // frame → what predict() takes
	Predict time.Duration // the model's predict()
	Encode  time.Duration // predict()'s answer → result frame
}

// timingsLen is the size of an m frame's payload.
const timingsLen = 24

func decodeTimings(p []byte) (Timings, error) {
	if len(p) != timingsLen {
		return Timings{}, fmt.Errorf("workerproto: timings frame of %d bytes, want %d", len(p), timingsLen)
	}
	ns := func(i int) time.Duration { return time.Duration(min(binary.LittleEndian.Uint64(p[i:]), 1<<62)) }
	return Timings{Decode: ns(0), Predict: ns(8), Encode: ns(16)}, nil
}

// MarshalJSON writes the two shapes the protocol document shows: a failed hello is
// {"ok": false, "error": ...} (plus runtime and pid when set) without inputs/outputs;
// a successful one always has "inputs" and "outputs" arrays, never null.
func (h Hello) MarshalJSON() ([]byte, error) {
	if !h.OK {
		return json.Marshal(struct {
			OK      bool   `json:"ok"`
			Runtime string `json:"runtime,omitempty"`
			PID     int    `json:"pid,omitempty"`
			Error   string `json:"error"`
		}{false, h.Runtime, h.PID, h.Error})
	}
	type plain Hello // same fields, no MarshalJSON method
	p := plain(h)
	if p.Inputs == nil {
		p.Inputs = []Column{}
	}
	if p.Outputs == nil {
		p.Outputs = []Column{}
	}
	return json.Marshal(p)
}

// ModelError is the payload of an E frame: the model raised while predicting, and the
// replica is still healthy.
type ModelError struct {
	Message string `json:"error"`
	Type    string `json:"type"`
}

// ModelErrorType returns the error's type ("ValueError", ...). Callers can detect model
// errors with errors.As(err, &x) where x is an interface{ ModelErrorType() string }.
func (e *ModelError) ModelErrorType() string { return e.Type }

func (e *ModelError) Error() string {
	if e.Type == "" {
		return e.Message
	}
	return e.Type + ": " + e.Message
}

// errorType is the E frame type for handler errors that are not *ModelError.
const errorType = "Error"

// errorPayload encodes err as an E frame payload, keeping a *ModelError's type.
func errorPayload(err error) []byte {
	var me *ModelError
	if !errors.As(err, &me) {
		me = &ModelError{Message: err.Error(), Type: errorType}
	}
	b, mErr := json.Marshal(me)
	if mErr != nil { // unreachable: two strings always marshal
		return []byte(`{"error":"unencodable error","type":"Error"}`)
	}
	return b
}
