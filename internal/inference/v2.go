package inference

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/slipway-ml/slipway/internal/workerproto"
)

// V2Request is a decoded Open Inference Protocol v2 inference request
// (POST /v2/models/{name}/infer).
type V2Request struct {
	ID string
	// Parameters are the request's parameters; numbers are json.Number, so they re-encode exactly.
	Parameters map[string]any
	Inputs     []workerproto.Tensor
	// Outputs names the requested outputs, in request order; empty means all of them.
	Outputs []string
	// binaryOut says, per requested output, whether its parameters ask for binary data (nil: not given), and
	// binaryAll whether the request's parameters do for every output (binary_data_output).
	binaryOut []*bool
	binaryAll bool
}

// BinaryOutput reports whether the answer should carry output name as binary data (the binary tensor data
// extension): its own binary_data parameter if given, else the request's binary_data_output.
func (r *V2Request) BinaryOutput(name string) bool {
	for i, n := range r.Outputs {
		if n == name && r.binaryOut[i] != nil {
			return *r.binaryOut[i]
		}
	}
	return r.binaryAll
}

// DecodeV2Request decodes an inference request body: {"id", "parameters", "inputs": [{"name", "shape",
// "datatype", "parameters", "data"}], "outputs": [{"name", "parameters"}]}. Each input's data may be flat
// (row-major) or nested as the shape; its element count must be the product of the shape and every
// element must fit the datatype. The binary data extension (binary_data_size) is not supported.
func DecodeV2Request(body []byte) (*V2Request, error) {
	req, _, err := decodeV2(body, false)
	return req, err
}

// decodeV2 decodes the JSON of a request; with binary, inputs may give binary_data_size instead of data, and
// the sizes are returned per input (-1 for an input whose data is in the JSON).
func decodeV2(body []byte, binary bool) (*V2Request, []int64, error) {
	if err := checkBodySize(body); err != nil {
		return nil, nil, err
	}
	d := &v2Decoding{s: scanner{b: body}}
	s := &d.s
	if s.peek() != kObject {
		return nil, nil, notA(s, "", `a JSON object like {"inputs": [...]}`)
	}
	req := &d.req
	var sizes []int64
	var seen [4]bool
	err := s.bodyFields(func(k tok) error {
		var err error
		switch {
		case keyIs(body, k, "id"):
			if err = keyOnce(seen[:], 0, "id", nil); err == nil {
				req.ID, err = optString(s, "id")
			}
		case keyIs(body, k, "parameters"):
			if err = keyOnce(seen[:], 1, "parameters", nil); err == nil {
				req.Parameters, err = decodeParams(s, "parameters")
				req.binaryAll = req.Parameters["binary_data_output"] == true
			}
		case keyIs(body, k, "inputs"):
			if err = keyOnce(seen[:], 2, "inputs", nil); err == nil {
				req.Inputs, sizes, err = decodeV2Inputs(s, binary, d.ins[:0], d.sizes[:0])
			}
		case keyIs(body, k, "outputs"):
			if err = keyOnce(seen[:], 3, "outputs", nil); err == nil {
				req.Outputs, req.binaryOut, err = decodeV2Outputs(s)
			}
		default:
			s.value()
		}
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	if !seen[2] {
		return nil, nil, invalid("inputs", `missing: send "inputs": [{"name", "shape", "datatype", "data"}, ...]`)
	}
	if len(req.Inputs) == 0 {
		return nil, nil, invalid("inputs", "empty: send at least one input tensor")
	}
	d.s = scanner{} // the request may outlive the call (a capture keeps its inputs): not its body
	return req, sizes, nil
}

// v2Decoding is what decoding the usual request of one input tensor needs, in one allocation instead of one
// per part (a prediction request is decoded on every call).
type v2Decoding struct {
	req   V2Request
	s     scanner
	ins   [1]workerproto.Tensor
	sizes [1]int64
}

// notA consumes the next value and returns the error "where: expected want, got ..." (or the syntax
// error found while reading it).
func notA(s *scanner, where, want string) error {
	t := s.value()
	if s.err != nil {
		return s.err
	}
	return invalid(where, "expected %s, got %s", want, describe(s.b, t))
}

// optString reads a string (or null, as "").
func optString(s *scanner, where string) (string, error) {
	t := s.value()
	switch {
	case s.err != nil:
		return "", s.err
	case t.k == kNull:
		return "", nil
	case t.k != kString:
		return "", invalid(where, "expected a string, got %s", describe(s.b, t))
	}
	return tokString(s.b, t), nil
}

// readName reads a tensor or column name: a non-empty UTF-8 string of at most 65535 bytes.
func readName(s *scanner, where string) (string, error) {
	t := s.value()
	if s.err != nil {
		return "", s.err
	}
	if t.k != kString {
		return "", invalid(where, "expected a string, got %s", describe(s.b, t))
	}
	return checkName(tokString(s.b, t), where)
}

func checkName(name, where string) (string, error) {
	switch {
	case name == "":
		return "", invalid(where, "empty name")
	case len(name) > math.MaxUint16 || !utf8.ValidString(name):
		return "", invalid(where, "a name must be valid UTF-8 of at most 65535 bytes")
	}
	return name, nil
}

// decodeParams decodes a parameters object (or null) with numbers as json.Number.
func decodeParams(s *scanner, where string) (map[string]any, error) {
	t := s.value()
	switch {
	case s.err != nil:
		return nil, s.err
	case t.k == kNull:
		return nil, nil
	case t.k != kObject:
		return nil, invalid(where, "expected an object, got %s", describe(s.b, t))
	}
	d := json.NewDecoder(bytes.NewReader(t.raw(s.b)))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil { // unreachable: the scanner validated it
		return nil, invalid(where, "%v", err)
	}
	return m, nil
}

// decodeV2Inputs appends the inputs to ins and their binary sizes to sizes.
func decodeV2Inputs(s *scanner, binary bool, ins []workerproto.Tensor, sizes []int64) ([]workerproto.Tensor, []int64, error) {
	if s.peek() != kArray {
		return nil, nil, notA(s, "inputs", "a list of tensors")
	}
	s.enter()
	for i := 0; s.next(']', i); i++ {
		t, size, err := decodeV2Input(s, i, binary)
		if err != nil {
			return nil, nil, err
		}
		for j := range ins {
			if ins[j].Name == t.Name {
				return nil, nil, invalid(fmt.Sprintf("inputs[%d].name", i), "duplicate input %q (also inputs[%d])", t.Name, j)
			}
		}
		ins, sizes = append(ins, t), append(sizes, size)
	}
	return ins, sizes, s.err
}

func decodeV2Input(s *scanner, i int, binary bool) (workerproto.Tensor, int64, error) {
	var t workerproto.Tensor
	binarySize := int64(-1)
	at := func(field string) string { return fmt.Sprintf("inputs[%d].%s", i, field) }
	if s.peek() != kObject {
		return t, -1, notA(s, fmt.Sprintf("inputs[%d]", i), `a tensor object {"name", "shape", "datatype", "data"}`)
	}
	var (
		dt                  workerproto.Datatype
		shape               []int64
		haveShape, haveData bool
		data                tok
		d                   *v2Data
	)
	var seen [4]bool
	// A plain loop, not s.fields: at, called in a callback, would no longer be inlined and its
	// arguments would cost an allocation each.
	s.enter()
	for n := 0; s.next('}', n); n++ {
		k := s.key()
		if s.err != nil {
			break
		}
		var err error
		for j, key := range [...]string{"name", "datatype", "shape", "data"} {
			if err == nil && keyIs(s.b, k, key) {
				err = keyOnce(seen[:], j, key, func() string { return fmt.Sprintf("inputs[%d]", i) })
			}
		}
		if err != nil {
			return t, -1, err
		}
		switch {
		case keyIs(s.b, k, "name"):
			t.Name, err = readName(s, at("name"))
		case keyIs(s.b, k, "datatype"):
			var name string
			if name, err = optString(s, at("datatype")); err == nil {
				if dt = workerproto.ParseDatatype(name); dt == workerproto.NoDatatype {
					err = invalid(at("datatype"), "unknown datatype %q (use one of %s)", name, datatypeList)
				}
			}
		case keyIs(s.b, k, "shape"):
			shape, err = readShape(s, at("shape"))
			haveShape = true
		case keyIs(s.b, k, "parameters"):
			binarySize, err = inputParams(s, at("parameters"), binary)
		case keyIs(s.b, k, "data"):
			haveData = true
			if dt == workerproto.NoDatatype || !haveShape {
				data = s.value() // decoded once shape and datatype are known
				break
			}
			// The usual key order (shape and datatype first): convert while scanning.
			if d, err = newV2Data(s.b, i, dt, shape, len(s.b)-s.i); err == nil {
				err = d.decode(s)
			}
		default:
			s.value()
		}
		if err != nil {
			return t, -1, err
		}
	}
	if s.err != nil {
		return t, -1, s.err
	}
	switch {
	case t.Name == "":
		return t, -1, invalid(at("name"), "missing")
	case dt == workerproto.NoDatatype:
		return t, -1, invalid(at("datatype"), "missing (use one of %s)", datatypeList)
	case !haveShape:
		return t, -1, invalid(at("shape"), "missing")
	case binarySize >= 0 && haveData:
		return t, -1, invalid(at("data"), "give data or parameters.binary_data_size, not both")
	case binarySize >= 0:
		return workerproto.Tensor{Name: t.Name, Datatype: dt.String(), Shape: shape}, binarySize, nil
	case !haveData:
		return t, -1, invalid(at("data"), "missing")
	}
	if d == nil {
		var err error
		if d, err = newV2Data(s.b, i, dt, shape, int(data.end-data.start)); err == nil {
			err = d.decode(&scanner{b: s.b[:data.end], i: int(data.start)})
		}
		if err != nil {
			return t, -1, err
		}
	}
	return d.col.tensor(t.Name, shape), -1, nil
}

// readShape reads a list of non-negative integers.
func readShape(s *scanner, where string) ([]int64, error) {
	if s.peek() != kArray {
		return nil, notA(s, where, "a list of dimensions")
	}
	s.enter()
	shape := make([]int64, 0, 4)
	for j := 0; s.next(']', j); j++ {
		t := s.value()
		if s.err != nil {
			break
		}
		neg, mag, ok := false, uint64(0), false
		if t.k == kInt {
			neg, mag, ok = parseIntText(t.raw(s.b))
		}
		if !ok || neg && mag != 0 || mag > math.MaxInt64 {
			return nil, invalid(fmt.Sprintf("%s[%d]", where, j), "expected a non-negative integer, got %s", describe(s.b, t))
		}
		if j == maxRank {
			return nil, invalid(where, "more than %d dimensions", maxRank)
		}
		shape = append(shape, int64(mag))
	}
	return shape, s.err
}

// inputParams reads an input's parameters: its binary_data_size (the binary tensor data extension, allowed
// only in a binary request), or -1.
func inputParams(s *scanner, where string, binary bool) (int64, error) {
	size := int64(-1)
	if s.peek() != kObject {
		t := s.value()
		if s.err == nil && t.k != kNull {
			return size, invalid(where, "expected an object, got %s", describe(s.b, t))
		}
		return size, s.err
	}
	err := s.fields(func(k tok) error {
		if !keyIs(s.b, k, "binary_data_size") {
			s.value()
			return nil
		}
		if !binary {
			s.value()
			return invalid(where+".binary_data_size", "binary tensor data needs the header Inference-Header-Content-Length (the length of the JSON part of the body): send it, or send the data as JSON")
		}
		t := s.value()
		neg, mag, ok := false, uint64(0), false
		if t.k == kInt {
			neg, mag, ok = parseIntText(t.raw(s.b))
		}
		if s.err == nil && (!ok || neg && mag != 0 || mag > math.MaxInt32) {
			return invalid(where+".binary_data_size", "expected a byte count, got %s", describe(s.b, t))
		}
		size = int64(mag)
		return s.err
	})
	return size, err
}

func decodeV2Outputs(s *scanner) ([]string, []*bool, error) {
	if s.peek() != kArray {
		return nil, nil, notA(s, "outputs", `a list of {"name": ...} objects`)
	}
	s.enter()
	var names []string
	var binary []*bool
	for i := 0; s.next(']', i); i++ {
		where := fmt.Sprintf("outputs[%d]", i)
		if s.peek() != kObject {
			return nil, nil, notA(s, where, `an object {"name": ...}`)
		}
		name := ""
		var bin *bool
		err := s.fields(func(k tok) error {
			switch {
			case keyIs(s.b, k, "name"):
				var err error
				name, err = readName(s, where+".name")
				return err
			case keyIs(s.b, k, "parameters"):
				params, err := decodeParams(s, where+".parameters")
				if b, ok := params["binary_data"].(bool); ok {
					bin = &b
				}
				return err // other parameters (classification) are not supported and ignored
			}
			s.value()
			return nil
		})
		if err != nil {
			return nil, nil, err
		}
		if name == "" {
			return nil, nil, invalid(where+".name", "missing")
		}
		for j, prev := range names {
			if prev == name {
				return nil, nil, invalid(where+".name", "output %q is already requested by outputs[%d]", name, j)
			}
		}
		names, binary = append(names, name), append(binary, bin)
	}
	return names, binary, s.err
}

// v2Data decodes one input's data against its shape.
type v2Data struct {
	src   []byte
	input int
	col   *column
	shape []int64
	want  int64 // product of shape
	idx   []int // position in nested data, for errors
}

// newV2Data prepares to decode the data of an input; avail bounds the data's size in bytes.
func newV2Data(src []byte, input int, dt workerproto.Datatype, shape []int64, avail int) (*v2Data, error) {
	want := int64(1)
	for _, d := range shape {
		hi, lo := bits.Mul64(uint64(want), uint64(d))
		if hi != 0 || lo > math.MaxInt64 {
			return nil, invalid(fmt.Sprintf("inputs[%d].shape", input), "%v has too many elements", shape)
		}
		want = int64(lo)
	}
	// Every element but the last takes at least two bytes ("1,"), so avail bounds the allocation.
	capacity := min(want, int64(avail)/2+1)
	return &v2Data{src: src, input: input, col: newColumn(dt, int(capacity)), shape: shape, want: want}, nil
}

func (d *v2Data) path() string {
	var b strings.Builder
	fmt.Fprintf(&b, "inputs[%d].data", d.input)
	for _, i := range d.idx {
		fmt.Fprintf(&b, "[%d]", i)
	}
	return b.String()
}

// add converts one element at the current path.
func (d *v2Data) add(t tok) error {
	if err := d.col.add(d.src, t); err != nil {
		return invalid(d.path(), "%v", err)
	}
	return nil
}

func (d *v2Data) nestedTooDeep() error {
	return invalid(d.path(), "expected a value for %s, got a list (the data is nested deeper than shape %v)", d.col.dt, d.shape)
}

// decode reads the data value at s.
func (d *v2Data) decode(s *scanner) error {
	switch s.peek() {
	case kArray:
		if s.firstElem() == kArray {
			return d.nested(s, 0)
		}
		return d.flat(s)
	case kObject:
		return notA(s, d.path(), "a list of elements")
	}
	t := s.value() // a bare scalar: one element
	if s.err != nil {
		return s.err
	}
	if d.want != 1 {
		return invalid(d.path(), "expected %d elements for shape %v, got 1", d.want, d.shape)
	}
	return d.add(t)
}

// flat reads a list of values in row-major order.
func (d *v2Data) flat(s *scanner) error {
	s.enter()
	n := 0
	for ; s.next(']', n); n++ {
		t := s.value()
		if s.err != nil {
			return s.err
		}
		if int64(n) < d.want {
			d.idx = append(d.idx[:0], n)
			if t.k == kArray || t.k == kObject {
				return invalid(d.path(), "expected a value for %s, got %s (the data mixes lists and values)", d.col.dt, describe(s.b, t))
			}
			if err := d.add(t); err != nil {
				return err
			}
		}
	}
	d.idx = d.idx[:0]
	if s.err != nil {
		return s.err
	}
	if int64(n) != d.want {
		return invalid(d.path(), "expected %d elements for shape %v, got %d", d.want, d.shape, n)
	}
	return nil
}

// nested reads a list at nesting depth, which must have shape[depth] elements.
func (d *v2Data) nested(s *scanner, depth int) error {
	if depth >= len(d.shape) {
		return d.nestedTooDeep()
	}
	s.enter()
	want := d.shape[depth]
	last := depth == len(d.shape)-1
	n := 0
	for ; s.next(']', n); n++ {
		if int64(n) >= want {
			s.value() // counted for the error below
			continue
		}
		d.idx = append(d.idx, n)
		if last {
			t := s.value()
			if s.err != nil {
				return s.err
			}
			if t.k == kArray || t.k == kObject {
				return d.nestedTooDeep()
			}
			if err := d.add(t); err != nil {
				return err
			}
		} else {
			if s.peek() != kArray {
				return notA(s, d.path(), fmt.Sprintf("a list of %d elements (dim %d of shape %v)", d.shape[depth+1], depth+1, d.shape))
			}
			if err := d.nested(s, depth+1); err != nil {
				return err
			}
		}
		d.idx = d.idx[:len(d.idx)-1]
	}
	if s.err != nil {
		return s.err
	}
	if int64(n) != want {
		return invalid(d.path(), "expected %d elements (dim %d of shape %v), got %d", want, depth, d.shape, n)
	}
	return nil
}

// EncodeV2Response encodes an inference response: {"model_name", "model_version", "id", "outputs":
// [{"name", "datatype", "shape", "data"}]} with flat data. model_version and id are left out when empty.
// When requested is not empty, only those outputs are sent, in that order; an unknown name is an error.
// NaN and ±Inf are encoded as null.
func EncodeV2Response(modelName, modelVersion, id string, outputs []workerproto.Tensor, requested []string) ([]byte, error) {
	b, _, err := encodeV2Response(modelName, modelVersion, id, outputs, requested, nil)
	return b, err
}

// encodeV2Response encodes the answer; the outputs binary selects go after the JSON as binary data (the
// binary tensor data extension), and jsonLen is then the length of the JSON part.
func encodeV2Response(modelName, modelVersion, id string, outputs []workerproto.Tensor, requested []string, binary func(string) bool) (body []byte, jsonLen int, err error) {
	sel := outputs
	if len(requested) > 0 {
		sel = make([]workerproto.Tensor, 0, len(requested))
		for i, name := range requested {
			j := indexOf(outputs, name)
			if j < 0 {
				return nil, 0, invalid(fmt.Sprintf("outputs[%d]", i), "unknown output %q: the model returns %s", name, quoteList(names(outputs)))
			}
			sel = append(sel, outputs[j])
		}
	}
	size := 64 + len(modelName) + len(modelVersion) + len(id)
	for i := range sel {
		if _, err := checkOutput(&sel[i]); err != nil {
			return nil, 0, err
		}
		size += 64 + len(sel[i].Name) + estimateJSON(&sel[i])
	}
	b := make([]byte, 0, size)
	var blobs [][]byte
	b = append(b, `{"model_name":`...)
	b = appendString(b, modelName)
	if modelVersion != "" {
		b = append(b, `,"model_version":`...)
		b = appendString(b, modelVersion)
	}
	if id != "" {
		b = append(b, `,"id":`...)
		b = appendString(b, id)
	}
	b = append(b, `,"outputs":[`...)
	for i := range sel {
		t := &sel[i]
		dt := workerproto.ParseDatatype(t.Datatype)
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"name":`...)
		b = appendString(b, t.Name)
		b = append(b, `,"datatype":"`...)
		b = append(b, t.Datatype...)
		b = append(b, `","shape":`...)
		b = appendShape(b, t.Shape)
		if binary != nil && binary(t.Name) {
			blob := binaryTensorData(t, dt)
			blobs = append(blobs, blob)
			b = append(b, `,"parameters":{"binary_data_size":`...)
			b = strconv.AppendInt(b, int64(len(blob)), 10)
			b = append(b, "}}"...)
			continue
		}
		b = append(b, `,"data":[`...)
		n := elemCount(t, dt)
		for j := range n {
			if j > 0 {
				b = append(b, ',')
			}
			b = appendElemJSON(b, t, dt, j)
		}
		b = append(b, "]}"...)
	}
	b = append(b, "]}"...)
	jsonLen = len(b)
	for _, blob := range blobs {
		b = append(b, blob...)
	}
	return b, jsonLen, nil
}

// checkOutput checks that a model output is a consistent tensor of a known datatype.
func checkOutput(t *workerproto.Tensor) (workerproto.Datatype, error) {
	return checkTensor(t, "model output")
}

// checkTensor checks that t (a "model output", a "column") is a consistent tensor of a known datatype.
func checkTensor(t *workerproto.Tensor, noun string) (workerproto.Datatype, error) {
	dt := workerproto.ParseDatatype(t.Datatype)
	if dt == workerproto.NoDatatype {
		return dt, invalid("", "%s %q has unknown datatype %q", noun, t.Name, t.Datatype)
	}
	if err := t.Validate(); err != nil {
		return dt, invalid("", "%s %q is malformed: %v", noun, t.Name, err)
	}
	return dt, nil
}

// elemCount is the number of elements of a tensor that passed checkOutput or was built here.
func elemCount(t *workerproto.Tensor, dt workerproto.Datatype) int {
	if dt == workerproto.BYTES {
		return len(t.Strings)
	}
	return len(t.Data) / dt.Size()
}

// estimateJSON guesses the JSON size of a tensor's data.
func estimateJSON(t *workerproto.Tensor) int {
	if t.Datatype == "BYTES" {
		n := 0
		for _, s := range t.Strings {
			n += len(s) + 3
		}
		return n
	}
	return len(t.Data) * 3
}

func appendShape(b []byte, shape []int64) []byte {
	b = append(b, '[')
	for i, d := range shape {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, d, 10)
	}
	return append(b, ']')
}

func indexOf(ts []workerproto.Tensor, name string) int {
	return indexAt(ts, name, -1)
}

// indexAt is indexOf that first tries the position hint: the columns of a frame usually come in the same
// order as the schema's or as the other frames of a batch, and 30 features looked up by a scan each are
// 450 string compares per request. The frames given have distinct names (every decoder refuses duplicates),
// so the hinted match is the only one.
func indexAt(ts []workerproto.Tensor, name string, hint int) int {
	if hint >= 0 && hint < len(ts) && ts[hint].Name == name {
		return hint
	}
	for i := range ts {
		if ts[i].Name == name {
			return i
		}
	}
	return -1
}

func names(ts []workerproto.Tensor) []string {
	out := make([]string, len(ts))
	for i := range ts {
		out[i] = ts[i].Name
	}
	return out
}

// V2Error is the body of an OIP v2 error response: {"error": msg}.
func V2Error(msg string) []byte {
	b := append(make([]byte, 0, len(msg)+16), `{"error":`...)
	b = appendString(b, msg)
	return append(b, '}')
}

// appendV2Tensors appends [{"name", "datatype", "shape"}, ...]; an unknown shape is sent as [-1] (the
// protocol requires one).
func appendV2Tensors(b []byte, cols []workerproto.Column) []byte {
	b = append(b, '[')
	for i, c := range cols {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"name":`...)
		b = appendString(b, c.Name)
		b = append(b, `,"datatype":`...)
		b = appendString(b, c.Datatype)
		b = append(b, `,"shape":`...)
		if c.Shape == nil {
			b = append(b, "[-1]"...)
		} else {
			b = appendShape(b, c.Shape)
		}
		b = append(b, '}')
	}
	return append(b, ']')
}

func appendStrings(b []byte, ss []string) []byte {
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, s)
	}
	return append(b, ']')
}

// EncodeV2ModelMetadata encodes the model metadata response (GET /v2/models/{name}):
// {"name", "versions", "platform", "inputs": [{"name", "datatype", "shape"}], "outputs": [...]}.
// A column whose shape is unknown is given shape [-1]; lists are never null.
func EncodeV2ModelMetadata(name string, versions []string, platform string, inputs, outputs []workerproto.Column) []byte {
	b := make([]byte, 0, 256)
	b = append(b, `{"name":`...)
	b = appendString(b, name)
	b = append(b, `,"versions":`...)
	b = appendStrings(b, versions)
	b = append(b, `,"platform":`...)
	b = appendString(b, platform)
	b = append(b, `,"inputs":`...)
	b = appendV2Tensors(b, inputs)
	b = append(b, `,"outputs":`...)
	b = appendV2Tensors(b, outputs)
	return append(b, '}')
}

// EncodeV2ServerMetadata encodes the server metadata response (GET /v2):
// {"name": "slipway", "version", "extensions"}.
func EncodeV2ServerMetadata(version string, extensions []string) []byte {
	b := append(make([]byte, 0, 128), `{"name":"slipway","version":`...)
	b = appendString(b, version)
	b = append(b, `,"extensions":`...)
	b = appendStrings(b, extensions)
	return append(b, '}')
}
