package inference

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/slipway-ml/slipway/internal/inference/inferencepb"
	"github.com/slipway-ml/slipway/internal/workerproto"
)

// The Open Inference Protocol over gRPC (inference.GRPCInferenceService, inferencepb). An input's elements
// come either typed, in the InferTensorContents field of its datatype, or raw, in raw_input_contents (one
// entry per input, in input order): raw data is laid out exactly as the HTTP binary tensor data extension's
// (little-endian elements; BYTES each a 4-byte length and the bytes), so both share setBinaryData and
// binaryTensorData. Triton's and KServe's clients send raw data.

// DecodeGRPCRequest converts a ModelInferRequest into the V2Request the HTTP protocol decodes to, with the
// same checks (datatype, shape, element count and range). Raw data aliases m's buffers.
func DecodeGRPCRequest(m *inferencepb.ModelInferRequest) (*V2Request, error) {
	if len(m.Inputs) == 0 {
		return nil, invalid("inputs", "empty: send at least one input tensor")
	}
	raw := m.RawInputContents
	if len(raw) > 0 && len(raw) != len(m.Inputs) {
		return nil, invalid("raw_input_contents", "%d entries for %d inputs: give one per input, in input order", len(raw), len(m.Inputs))
	}
	req := &V2Request{ID: m.Id, Inputs: make([]workerproto.Tensor, len(m.Inputs))}
	seen := make(map[string]bool, len(m.Inputs))
	for i, in := range m.Inputs {
		where := fmt.Sprintf("inputs[%d]", i)
		name, err := checkName(in.Name, where+".name")
		if err != nil {
			return nil, err
		}
		if seen[name] {
			return nil, invalid(where+".name", "input %q is given twice", name)
		}
		seen[name] = true
		dt := workerproto.ParseDatatype(in.Datatype)
		if dt == workerproto.NoDatatype {
			return nil, invalid(where+".datatype", "unknown datatype %q (use one of %s)", in.Datatype, datatypeList)
		}
		if len(in.Shape) > maxRank {
			return nil, invalid(where+".shape", "%d dimensions, at most %d", len(in.Shape), maxRank)
		}
		for j, d := range in.Shape {
			if d < 0 {
				return nil, invalid(where+".shape", "dimension %d is %d: an input's dimensions are sizes, 0 or more", j, d)
			}
		}
		t := workerproto.Tensor{Name: name, Datatype: dt.String(), Shape: in.Shape}
		if len(raw) > 0 {
			if in.Contents != nil {
				return nil, invalid(where+".contents", "given with raw_input_contents: send every input's data one way, typed contents or raw_input_contents")
			}
			err = setBinaryData(&t, raw[i], fmt.Sprintf("raw_input_contents[%d] (input %q)", i, name))
		} else {
			err = setContents(&t, dt, in.Contents, where+".contents")
		}
		if err != nil {
			return nil, err
		}
		req.Inputs[i] = t
	}
	if len(m.Outputs) > 0 {
		req.Outputs = make([]string, len(m.Outputs))
		for i, o := range m.Outputs {
			name, err := checkName(o.Name, fmt.Sprintf("outputs[%d].name", i))
			if err != nil {
				return nil, err
			}
			req.Outputs[i] = name
		}
	}
	return req, nil
}

// contentsField names the InferTensorContents field that carries each datatype (FP16 has none: it is sent raw).
func contentsField(dt workerproto.Datatype) string {
	switch dt {
	case workerproto.BOOL:
		return "bool_contents"
	case workerproto.INT8, workerproto.INT16, workerproto.INT32:
		return "int_contents"
	case workerproto.INT64:
		return "int64_contents"
	case workerproto.UINT8, workerproto.UINT16, workerproto.UINT32:
		return "uint_contents"
	case workerproto.UINT64:
		return "uint64_contents"
	case workerproto.FP32:
		return "fp32_contents"
	case workerproto.FP64:
		return "fp64_contents"
	case workerproto.BYTES:
		return "bytes_contents"
	}
	return ""
}

// contentsLens counts the elements in each field of c, by field name.
func contentsLens(c *inferencepb.InferTensorContents) map[string]int {
	return map[string]int{
		"bool_contents": len(c.BoolContents), "int_contents": len(c.IntContents), "int64_contents": len(c.Int64Contents),
		"uint_contents": len(c.UintContents), "uint64_contents": len(c.Uint64Contents), "fp32_contents": len(c.Fp32Contents),
		"fp64_contents": len(c.Fp64Contents), "bytes_contents": len(c.BytesContents),
	}
}

// setContents converts typed contents c into t's data: the field of t's datatype, as many elements as the
// shape holds, each within the datatype's range.
func setContents(t *workerproto.Tensor, dt workerproto.Datatype, c *inferencepb.InferTensorContents, where string) error {
	field := contentsField(dt)
	if field == "" {
		return invalid(where, "%s has no typed contents field: send input %q in raw_input_contents (little-endian)", dt, t.Name)
	}
	if c == nil {
		c = &inferencepb.InferTensorContents{}
	}
	lens := contentsLens(c)
	for f, n := range lens {
		if f != field && n > 0 {
			return invalid(where, "%d values in %s, but datatype %s takes %s", n, f, dt, field)
		}
	}
	n := t.NumElements()
	if n < 0 || n > math.MaxInt32 {
		return invalid(where, "shape %v has too many elements", t.Shape)
	}
	if got := lens[field]; int64(got) != n {
		return invalid(where, "%d values in %s, but shape %v needs %d", got, field, t.Shape, n)
	}
	if dt == workerproto.BYTES {
		t.Strings = c.BytesContents
		return nil
	}
	b := make([]byte, 0, int(n)*dt.Size())
	addInt := func(j int, neg bool, mag uint64) error {
		if !workerproto.IntFits(dt, neg, mag) {
			v := workerproto.Number{Neg: neg, Mag: mag}
			return invalid(where, "%s[%d] = %s is out of range for %s", field, j, v, dt)
		}
		b = workerproto.AppendInt(b, dt, neg, mag)
		return nil
	}
	var err error
	switch dt {
	case workerproto.BOOL:
		for _, v := range c.BoolContents {
			b = append(b, boolByte(v))
		}
	case workerproto.INT8, workerproto.INT16, workerproto.INT32:
		for j, v := range c.IntContents {
			x := workerproto.IntNumber(int64(v))
			if err = addInt(j, x.Neg, x.Mag); err != nil {
				return err
			}
		}
	case workerproto.INT64:
		for _, v := range c.Int64Contents {
			b = binary.LittleEndian.AppendUint64(b, uint64(v))
		}
	case workerproto.UINT8, workerproto.UINT16, workerproto.UINT32:
		for j, v := range c.UintContents {
			if err = addInt(j, false, uint64(v)); err != nil {
				return err
			}
		}
	case workerproto.UINT64:
		for _, v := range c.Uint64Contents {
			b = binary.LittleEndian.AppendUint64(b, v)
		}
	case workerproto.FP32:
		for _, v := range c.Fp32Contents {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
		}
	case workerproto.FP64:
		for _, v := range c.Fp64Contents {
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
		}
	}
	t.Data = b
	return nil
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

// EncodeGRPCResponse encodes the answer to req. With raw, every output's data goes in raw_output_contents
// (Triton's and KServe's clients read that); otherwise in its typed contents, unless an output has no typed
// field (FP16), which makes the whole answer raw (the protocol allows one form per response). When req names
// outputs, only those are sent, in that order; an unknown name is an error.
func EncodeGRPCResponse(modelName, modelVersion, id string, outputs []workerproto.Tensor, req *V2Request, raw bool) (*inferencepb.ModelInferResponse, error) {
	sel := outputs
	if len(req.Outputs) > 0 {
		sel = make([]workerproto.Tensor, 0, len(req.Outputs))
		for i, name := range req.Outputs {
			j := indexOf(outputs, name)
			if j < 0 {
				return nil, invalid(fmt.Sprintf("outputs[%d]", i), "unknown output %q: the model returns %s", name, quoteList(names(outputs)))
			}
			sel = append(sel, outputs[j])
		}
	}
	dts := make([]workerproto.Datatype, len(sel))
	for i := range sel {
		dt, err := checkOutput(&sel[i])
		if err != nil {
			return nil, err
		}
		dts[i] = dt
		raw = raw || contentsField(dt) == ""
	}
	res := &inferencepb.ModelInferResponse{ModelName: modelName, ModelVersion: modelVersion, Id: id,
		Outputs: make([]*inferencepb.ModelInferResponse_InferOutputTensor, len(sel))}
	if raw {
		res.RawOutputContents = make([][]byte, len(sel))
	}
	for i := range sel {
		t := &sel[i]
		out := &inferencepb.ModelInferResponse_InferOutputTensor{Name: t.Name, Datatype: t.Datatype, Shape: t.Shape}
		if raw {
			res.RawOutputContents[i] = binaryTensorData(t, dts[i])
		} else {
			out.Contents = typedContents(t, dts[i])
		}
		res.Outputs[i] = out
	}
	return res, nil
}

// typedContents is a checked output's data in the contents field of its datatype (which has one).
func typedContents(t *workerproto.Tensor, dt workerproto.Datatype) *inferencepb.InferTensorContents {
	c := &inferencepb.InferTensorContents{}
	n := elemCount(t, dt)
	switch dt {
	case workerproto.BYTES:
		c.BytesContents = t.Strings
	case workerproto.BOOL:
		c.BoolContents = make([]bool, n)
		for i := range n {
			c.BoolContents[i] = t.Data[i] != 0
		}
	case workerproto.INT8, workerproto.INT16, workerproto.INT32:
		c.IntContents = make([]int32, n)
		for i := range n {
			v, _ := workerproto.ReadNumber(dt, t.Data, i).Int64()
			c.IntContents[i] = int32(v)
		}
	case workerproto.INT64:
		c.Int64Contents = make([]int64, n)
		for i := range n {
			c.Int64Contents[i] = int64(binary.LittleEndian.Uint64(t.Data[8*i:]))
		}
	case workerproto.UINT8, workerproto.UINT16, workerproto.UINT32:
		c.UintContents = make([]uint32, n)
		for i := range n {
			c.UintContents[i] = uint32(workerproto.ReadNumber(dt, t.Data, i).Mag)
		}
	case workerproto.UINT64:
		c.Uint64Contents = make([]uint64, n)
		for i := range n {
			c.Uint64Contents[i] = binary.LittleEndian.Uint64(t.Data[8*i:])
		}
	case workerproto.FP32:
		c.Fp32Contents = make([]float32, n)
		for i := range n {
			c.Fp32Contents[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.Data[4*i:]))
		}
	case workerproto.FP64:
		c.Fp64Contents = make([]float64, n)
		for i := range n {
			c.Fp64Contents[i] = math.Float64frombits(binary.LittleEndian.Uint64(t.Data[8*i:]))
		}
	}
	return c
}
