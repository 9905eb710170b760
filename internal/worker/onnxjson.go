package worker

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/slipway-ml/slipway/internal/workerproto"
)

// jsonRequest is the body of a J frame to the ONNX worker (see the package doc).
type jsonRequest struct {
	Inputs map[string]json.RawMessage `json:"inputs"`
	Data   json.RawMessage            `json:"data"`
}

// decodeRequest turns a JSON request into tensors typed like the model's inputs.
func decodeRequest(body []byte, inputs []workerproto.Column) ([]workerproto.Tensor, error) {
	var req jsonRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return nil, fmt.Errorf(`request must be {"inputs": {name: nested list}} or {"data": nested list}: %w`, err)
	}
	switch {
	case req.Data != nil && req.Inputs != nil:
		return nil, errors.New(`give either "inputs" or "data", not both`)
	case req.Data != nil:
		if len(inputs) != 1 {
			return nil, fmt.Errorf(`"data" is for single-input models; this model has inputs %s: use "inputs"`, names(inputs))
		}
		t, err := tensorFromJSON(inputs[0], req.Data)
		return []workerproto.Tensor{t}, err
	case len(req.Inputs) == 0:
		return nil, errors.New(`request has no "inputs" and no "data"`)
	}
	keys := slices.Sorted(maps.Keys(req.Inputs))
	out := make([]workerproto.Tensor, 0, len(keys))
	for _, name := range keys {
		col, ok := inputFor(name, inputs, len(keys))
		if !ok {
			return nil, fmt.Errorf("unknown input %q (model inputs: %s)", name, names(inputs))
		}
		t, err := tensorFromJSON(col, req.Inputs[name])
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// inputFor finds the input called name; a single-input model takes a single entry
// whatever its name.
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

func names(cols []workerproto.Column) string {
	s := make([]string, len(cols))
	for i, c := range cols {
		s[i] = c.Name
	}
	return strings.Join(s, ", ")
}

// tensorFromJSON converts a nested JSON list into a tensor of col's datatype.
func tensorFromJSON(col workerproto.Column, raw json.RawMessage) (workerproto.Tensor, error) {
	t := workerproto.Tensor{Name: col.Name, Datatype: col.Datatype}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return t, fmt.Errorf("input %s: %w", col.Name, err)
	}
	t.Shape = inferShape(v)
	leaves := make([]any, 0, 64)
	if err := flatten(v, t.Shape, &leaves); err != nil {
		return t, fmt.Errorf("input %s: %w", col.Name, err)
	}
	if err := fill(&t, leaves); err != nil {
		return t, fmt.Errorf("input %s: %w", col.Name, err)
	}
	return t, nil
}

// inferShape follows the first element of each nested list.
func inferShape(v any) []int64 {
	shape := []int64{}
	for {
		list, ok := v.([]any)
		if !ok {
			return shape
		}
		shape = append(shape, int64(len(list)))
		if len(list) == 0 {
			return shape
		}
		v = list[0]
	}
}

// flatten appends the leaves of v in row-major order, checking v is rectangular.
func flatten(v any, shape []int64, leaves *[]any) error {
	list, isList := v.([]any)
	if len(shape) == 0 {
		if isList {
			return errors.New("ragged nested list: a list where a value was expected")
		}
		*leaves = append(*leaves, v)
		return nil
	}
	if !isList || int64(len(list)) != shape[0] {
		return fmt.Errorf("ragged nested list: expected a list of %d at depth %d", shape[0], len(shape))
	}
	for _, x := range list {
		if err := flatten(x, shape[1:], leaves); err != nil {
			return err
		}
	}
	return nil
}

// fill converts the leaves to t's datatype.
func fill(t *workerproto.Tensor, leaves []any) error {
	if t.Datatype == "BYTES" {
		t.Strings = make([][]byte, len(leaves))
		for i, v := range leaves {
			s, ok := v.(string)
			if !ok {
				return fmt.Errorf("element %d: expected a string for BYTES, got %s", i, jsonKind(v))
			}
			t.Strings[i] = []byte(s)
		}
		return nil
	}
	size, ok := workerproto.ElemSize(t.Datatype)
	if !ok {
		return fmt.Errorf("unsupported datatype %s", t.Datatype)
	}
	t.Data = make([]byte, 0, size*len(leaves))
	for i, v := range leaves {
		var err error
		if t.Data, err = appendElem(t.Data, t.Datatype, v); err != nil {
			return fmt.Errorf("element %d: %w", i, err)
		}
	}
	return nil
}

var intBits = map[string]int{"INT8": 8, "INT16": 16, "INT32": 32, "INT64": 64, "UINT8": 8, "UINT16": 16, "UINT32": 32, "UINT64": 64}

// appendElem converts one JSON leaf to datatype dt and appends its little-endian bytes.
func appendElem(b []byte, dt string, v any) ([]byte, error) {
	le := binary.LittleEndian
	switch dt {
	case "BOOL":
		x, err := boolean(v)
		if err != nil {
			return b, err
		}
		if x {
			return append(b, 1), nil
		}
		return append(b, 0), nil
	case "FP16", "FP32", "FP64":
		f, err := float(v, dt)
		if err != nil {
			return b, err
		}
		switch dt {
		case "FP16":
			return le.AppendUint16(b, float32ToHalf(float32(f))), nil
		case "FP32":
			return le.AppendUint32(b, math.Float32bits(float32(f))), nil
		}
		return le.AppendUint64(b, math.Float64bits(f)), nil
	}
	bits := intBits[dt]
	var u uint64
	if strings.HasPrefix(dt, "U") {
		x, err := unsigned(v, bits)
		if err != nil {
			return b, err
		}
		u = x
	} else {
		x, err := signed(v, bits)
		if err != nil {
			return b, err
		}
		u = uint64(x)
	}
	for i := 0; i < bits/8; i++ {
		b = append(b, byte(u>>(8*i)))
	}
	return b, nil
}

func boolean(v any) (bool, error) {
	switch x := v.(type) {
	case bool:
		return x, nil
	case json.Number:
		switch x {
		case "0":
			return false, nil
		case "1":
			return true, nil
		}
	}
	return false, fmt.Errorf("expected true/false for BOOL, got %s", jsonKind(v))
}

func float(v any, dt string) (float64, error) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, fmt.Errorf("expected a number for %s, got %s", dt, jsonKind(v))
	}
	bitSize := 64
	if dt != "FP64" {
		bitSize = 32
	}
	f, err := strconv.ParseFloat(string(n), bitSize)
	if err != nil {
		return 0, fmt.Errorf("%s does not fit %s", n, dt)
	}
	if dt == "FP16" && math.Abs(f) > 65504 {
		return 0, fmt.Errorf("%s does not fit FP16", n)
	}
	return f, nil
}

// signed parses an integral JSON number (1 or 1.0) that fits in bits.
func signed(v any, bits int) (int64, error) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, fmt.Errorf("expected an integer for INT%d, got %s", bits, jsonKind(v))
	}
	if i, err := strconv.ParseInt(string(n), 10, bits); err == nil {
		return i, nil
	}
	f, err := strconv.ParseFloat(string(n), 64)
	lim := math.Ldexp(1, bits-1)
	if err != nil || f != math.Trunc(f) || f < -lim || f >= lim {
		return 0, fmt.Errorf("%s is not an INT%d", n, bits)
	}
	return int64(f), nil
}

// unsigned parses a non-negative integral JSON number that fits in bits.
func unsigned(v any, bits int) (uint64, error) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, fmt.Errorf("expected an integer for UINT%d, got %s", bits, jsonKind(v))
	}
	if u, err := strconv.ParseUint(string(n), 10, bits); err == nil {
		return u, nil
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil || f != math.Trunc(f) || f < 0 || f >= math.Ldexp(1, bits) {
		return 0, fmt.Errorf("%s is not a UINT%d", n, bits)
	}
	return uint64(f), nil
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	case string:
		return "a string"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// float32ToHalf rounds f to the nearest IEEE 754 binary16 (ties to even).
func float32ToHalf(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23) & 0xff
	mant := b & 0x7fffff
	if exp == 0xff { // Inf or NaN
		if mant != 0 {
			return sign | 0x7e00
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15
	switch {
	case e >= 0x1f:
		return sign | 0x7c00
	case e < -10:
		return sign
	case e <= 0: // subnormal half
		mant |= 0x800000
		shift := uint(14 - e)
		return sign | uint16(roundShift(mant, shift))
	}
	// Rounding may carry into the exponent, which is still correct (up to Inf).
	return sign | uint16(roundShift(uint32(e)<<23|mant, 13))
}

// roundShift returns x >> shift rounded to nearest, ties to even.
func roundShift(x uint32, shift uint) uint32 {
	q := x >> shift
	rem := x & (1<<shift - 1)
	half := uint32(1) << (shift - 1)
	if rem > half || rem == half && q&1 == 1 {
		q++
	}
	return q
}

// encodeOutputs writes {"outputs": {name: nested list, ...}} in output order.
func encodeOutputs(ts []workerproto.Tensor) ([]byte, error) {
	b := []byte(`{"outputs":{`)
	for i, t := range ts {
		if err := t.Validate(); err != nil {
			return nil, err
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, t.Name)
		b = append(b, ':')
		elem, err := elemWriter(t)
		if err != nil {
			return nil, err
		}
		b = appendNested(b, t.Shape, 0, elem)
	}
	return append(b, "}}"...), nil
}

// appendNested writes the elements starting at flat index off as nested lists.
func appendNested(b []byte, shape []int64, off int, elem func([]byte, int) []byte) []byte {
	if len(shape) == 0 {
		return elem(b, off)
	}
	inner := 1
	for _, d := range shape[1:] {
		inner *= int(d)
	}
	b = append(b, '[')
	for k := range int(shape[0]) {
		if k > 0 {
			b = append(b, ',')
		}
		b = appendNested(b, shape[1:], off+k*inner, elem)
	}
	return append(b, ']')
}

// elemWriter returns a function appending element i of t as JSON.
func elemWriter(t workerproto.Tensor) (func([]byte, int) []byte, error) {
	d, le := t.Data, binary.LittleEndian
	switch t.Datatype {
	case "BYTES":
		return func(b []byte, i int) []byte { return appendString(b, string(t.Strings[i])) }, nil
	case "BOOL":
		return func(b []byte, i int) []byte { return strconv.AppendBool(b, d[i] != 0) }, nil
	case "FP32":
		return func(b []byte, i int) []byte {
			return appendFloat(b, float64(math.Float32frombits(le.Uint32(d[4*i:]))), 32)
		}, nil
	case "FP64":
		return func(b []byte, i int) []byte { return appendFloat(b, math.Float64frombits(le.Uint64(d[8*i:])), 64) }, nil
	case "INT8":
		return func(b []byte, i int) []byte { return strconv.AppendInt(b, int64(int8(d[i])), 10) }, nil
	case "INT16":
		return func(b []byte, i int) []byte { return strconv.AppendInt(b, int64(int16(le.Uint16(d[2*i:]))), 10) }, nil
	case "INT32":
		return func(b []byte, i int) []byte { return strconv.AppendInt(b, int64(int32(le.Uint32(d[4*i:]))), 10) }, nil
	case "INT64":
		return func(b []byte, i int) []byte { return strconv.AppendInt(b, int64(le.Uint64(d[8*i:])), 10) }, nil
	case "UINT8":
		return func(b []byte, i int) []byte { return strconv.AppendUint(b, uint64(d[i]), 10) }, nil
	case "UINT16":
		return func(b []byte, i int) []byte { return strconv.AppendUint(b, uint64(le.Uint16(d[2*i:])), 10) }, nil
	case "UINT32":
		return func(b []byte, i int) []byte { return strconv.AppendUint(b, uint64(le.Uint32(d[4*i:])), 10) }, nil
	case "UINT64":
		return func(b []byte, i int) []byte { return strconv.AppendUint(b, le.Uint64(d[8*i:]), 10) }, nil
	}
	return nil, fmt.Errorf("output %s: %s cannot be written as JSON", t.Name, t.Datatype)
}

// appendFloat writes f in shortest round-trip form for its bit size; NaN and ±Inf,
// which JSON cannot express, become null.
func appendFloat(b []byte, f float64, bitSize int) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, "null"...)
	}
	return strconv.AppendFloat(b, f, 'g', -1, bitSize)
}

func appendString(b []byte, s string) []byte {
	q, _ := json.Marshal(s) // a string always marshals
	return append(b, q...)
}
