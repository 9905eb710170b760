package inference

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/slipway-ml/slipway/internal/workerproto"
)

// This file is the JSON of the ONNX worker (J frames, docs/worker-protocol.md), typed by the model's
// declared inputs rather than by a schema:
//
//	{"inputs": {"features": [[5.1, 3.5]], "other": [1, 2]}}  // by input name
//	{"data": [[5.1, 3.5]]}                                   // single-input models
//	{"outputs": {"probabilities": [[0.1, 0.9]], "label": [1]}} // the answer, in output order
//
// Its wording and number format are its own, older than the OIP and MLflow codecs and kept for its
// clients: null and the names of NaN and the infinities are not numbers, BOOL also takes 0 and 1, and
// floats are printed in Go's shortest form (1e-07).

// workerRequestForms is the start of every error about the shape of the request.
const workerRequestForms = `request must be {"inputs": {name: nested list}} or {"data": nested list}`

// DecodeWorkerJSON decodes a JSON request to the ONNX worker into tensors typed like the model's inputs:
// "data" for a single-input model, or "inputs" by name (a single entry whatever its name for a
// single-input model), in name order. Each value is a rectangular nested list whose nesting gives the
// shape. Text after the request object is ignored.
func DecodeWorkerJSON(body []byte, inputs []workerproto.Column) ([]workerproto.Tensor, error) {
	s, err := newScanner(body)
	if err != nil {
		return nil, err
	}
	data, named, err := workerRequest(s)
	if err != nil {
		return nil, err
	}
	switch {
	case data != nil && named != nil:
		return nil, invalid("", `give either "inputs" or "data", not both`)
	case data != nil:
		if len(inputs) != 1 {
			return nil, invalid("", `"data" is for single-input models; this model has inputs %s: use "inputs"`, columnNames(inputs))
		}
		t, err := workerTensor(s, *data, "data", inputs[0])
		return []workerproto.Tensor{t}, err
	case len(named) == 0:
		return nil, invalid("", `request has no "inputs" and no "data"`)
	}
	keys := slices.Sorted(maps.Keys(named))
	out := make([]workerproto.Tensor, 0, len(keys))
	for _, name := range keys {
		col, ok := inputFor(name, inputs, len(keys))
		if !ok {
			return nil, invalid("", "unknown input %q (model inputs: %s)", name, columnNames(inputs))
		}
		t, err := workerTensor(s, named[name], "inputs"+fieldRef(name), col)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// workerRequest reads the request object: the "data" value (nil when absent) and the offset of each
// "inputs" entry by name (nil when absent or null; for a repeated name the last counts).
func workerRequest(s *scanner) (data *int, named map[string]int, err error) {
	if s.peek() != kObject {
		return nil, nil, badWorkerRequest(s, notA(s, "", "an object"))
	}
	err = s.fields(func(k tok) error {
		var err error
		switch {
		case keyIs(s.b, k, "data"):
			s.ws()
			at := s.i
			data = &at
			s.value()
		case keyIs(s.b, k, "inputs"):
			named, err = workerInputs(s)
		default:
			err = invalid("", "%s: unknown field %s", workerRequestForms, clip(k.raw(s.b)))
		}
		return err
	})
	if s.err != nil {
		return nil, nil, badWorkerRequest(s, s.err)
	}
	return data, named, err
}

// badWorkerRequest says that the request is not of the worker's form, and why. A body cut short is
// "unexpected EOF", in the words of encoding/json, which the worker's clients have always seen.
func badWorkerRequest(s *scanner, err error) error {
	if s.err != nil && s.i >= len(s.b) {
		return invalid("", "%s: unexpected EOF", workerRequestForms)
	}
	return invalid("", "%s: %v", workerRequestForms, err)
}

// workerInputs reads the "inputs" object (or null) into the offsets of its values by name.
func workerInputs(s *scanner) (map[string]int, error) {
	switch s.peek() {
	case kNull:
		s.value()
		return nil, nil
	case kObject:
	default:
		return nil, badWorkerRequest(s, notA(s, "inputs", "an object of nested lists"))
	}
	named := map[string]int{}
	err := s.fields(func(k tok) error {
		s.ws()
		named[tokString(s.b, k)] = s.i
		s.value()
		return nil
	})
	if err != nil {
		return nil, badWorkerRequest(s, err)
	}
	return named, nil
}

// inputFor finds the input called name; a single-input model takes a single entry whatever its name.
func inputFor(name string, inputs []workerproto.Column, entries int) (workerproto.Column, bool) {
	if len(inputs) == 1 && entries == 1 {
		return inputs[0], true
	}
	i := slices.IndexFunc(inputs, func(c workerproto.Column) bool { return c.Name == name })
	if i < 0 {
		return workerproto.Column{}, false
	}
	return inputs[i], true
}

func columnNames(cols []workerproto.Column) string {
	s := make([]string, len(cols))
	for i, c := range cols {
		s[i] = c.Name
	}
	return strings.Join(s, ", ")
}

// workerTensor reads the nested list at offset at of the body (found at path where) into a tensor of
// col's datatype.
func workerTensor(s *scanner, at int, where string, col workerproto.Column) (workerproto.Tensor, error) {
	fail := func(err error) (workerproto.Tensor, error) {
		return workerproto.Tensor{}, invalid("", "input %s: %v", col.Name, err)
	}
	dt := workerproto.ParseDatatype(col.Datatype)
	if dt == workerproto.NoDatatype {
		return fail(fmt.Errorf("unsupported datatype %s", col.Datatype))
	}
	s.i = at
	l := loc{prefix: where, col: -1}
	n := nester{s: s, rank: -1, objects: true, at: func(idx []int) string { return l.path(toInt64s(idx)) }}
	if err := n.walk(0); err != nil { // the scanner has checked the syntax: this is about the nesting
		return fail(fmt.Errorf("ragged nested list at %w", err))
	}
	c := newColumn(dt, len(n.toks))
	for i, t := range n.toks {
		if err := c.addWorker(s.b, t); err != nil {
			return fail(fmt.Errorf("element %d: %w", i, err))
		}
	}
	if n.shape == nil {
		n.shape = []int64{} // a scalar
	}
	return c.tensor(col.Name, n.shape), nil
}

// addWorker converts one leaf of a worker request and appends it (see the file comment for how it
// differs from add).
func (c *column) addWorker(src []byte, t tok) error {
	switch {
	case c.dt == workerproto.BYTES:
		if t.k != kString {
			return fmt.Errorf("expected a string for BYTES, got %s", kindNoun(t.k))
		}
		return c.add(src, t)
	case c.dt == workerproto.BOOL:
		switch raw := string(t.raw(src)); {
		case t.k == kTrue || raw == "1" && t.k == kInt:
			c.data = append(c.data, 1)
		case t.k == kFalse || raw == "0" && t.k == kInt:
			c.data = append(c.data, 0)
		default:
			return fmt.Errorf("expected true/false for BOOL, got %s", kindNoun(t.k))
		}
		return nil
	case t.k != kInt && t.k != kFloat:
		want := "a number"
		if c.dt.IsInt() {
			want = "an integer"
		}
		return fmt.Errorf("expected %s for %s, got %s", want, c.dt, kindNoun(t.k))
	}
	raw := t.raw(src)
	if c.dt.IsFloat() {
		f, ok := parseFloat(raw, c.dt)
		if !ok {
			return fmt.Errorf("%s does not fit %s", clip(raw), c.dt)
		}
		c.data = workerproto.AppendFloat(c.data, c.dt, f)
		return nil
	}
	v := workerproto.Number{IsFloat: true, F: math.Inf(1)} // an integer beyond uint64 is out of range
	if neg, mag, ok := parseIntText(raw); t.k == kInt && ok {
		v = workerproto.Number{Neg: neg, Mag: mag}
	} else if t.k == kFloat {
		v.F, _ = strconv.ParseFloat(string(raw), 64) // ±Inf when out of range
	}
	var err error
	if c.data, err = workerproto.AppendNumber(c.data, c.dt, v); err != nil {
		article := "an"
		if c.dt.IsUint() {
			article = "a"
		}
		return fmt.Errorf("%s is not %s %s", clip(raw), article, c.dt)
	}
	return nil
}

// kindNoun names a kind of JSON value: "a number", "null".
func kindNoun(k kind) string {
	switch k {
	case kNull:
		return "null"
	case kTrue, kFalse:
		return "a boolean"
	case kInt, kFloat:
		return "a number"
	case kString:
		return "a string"
	case kArray:
		return "a list"
	}
	return "an object"
}

// EncodeWorkerJSON encodes the ONNX worker's answer, {"outputs": {name: nested list, ...}}, in output
// order.
func EncodeWorkerJSON(outputs []workerproto.Tensor) ([]byte, error) {
	dts := make([]workerproto.Datatype, len(outputs))
	size := 16
	for i := range outputs {
		var err error
		if dts[i], err = checkOutput(&outputs[i]); err != nil {
			return nil, err
		}
		size += 8 + len(outputs[i].Name) + estimateJSON(&outputs[i])
	}
	b := make([]byte, 0, size)
	b = append(b, `{"outputs":`...)
	b = appendTensorObject(b, outputs, dts, appendElemGo)
	return append(b, '}'), nil
}

// appendElemGo is appendElemJSON with FP32 and FP64 in Go's shortest form ('g').
func appendElemGo(b []byte, t *workerproto.Tensor, dt workerproto.Datatype, i int) []byte {
	bits := 64
	switch dt {
	case workerproto.FP32:
		bits = 32
	case workerproto.FP64:
	default:
		return appendElemJSON(b, t, dt, i)
	}
	f := workerproto.ReadFloat(dt, t.Data, i)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, "null"...)
	}
	return strconv.AppendFloat(b, f, 'g', -1, bits)
}
