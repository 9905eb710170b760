package workerproto

import (
	"encoding/binary"
	"fmt"
	"math"
)

// shapeOr returns shape, or [n] when shape is nil.
func shapeOr(shape []int64, n int) []int64 {
	if shape == nil {
		return []int64{int64(n)}
	}
	return shape
}

// NewFloat32 builds an FP32 tensor; a nil shape means [len(v)].
func NewFloat32(name string, shape []int64, v []float32) Tensor {
	b := make([]byte, 0, 4*len(v))
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return Tensor{Name: name, Datatype: "FP32", Shape: shapeOr(shape, len(v)), Data: b}
}

// NewFloat64 builds an FP64 tensor; a nil shape means [len(v)].
func NewFloat64(name string, shape []int64, v []float64) Tensor {
	b := make([]byte, 0, 8*len(v))
	for _, x := range v {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(x))
	}
	return Tensor{Name: name, Datatype: "FP64", Shape: shapeOr(shape, len(v)), Data: b}
}

// NewInt64 builds an INT64 tensor; a nil shape means [len(v)].
func NewInt64(name string, shape []int64, v []int64) Tensor {
	b := make([]byte, 0, 8*len(v))
	for _, x := range v {
		b = binary.LittleEndian.AppendUint64(b, uint64(x))
	}
	return Tensor{Name: name, Datatype: "INT64", Shape: shapeOr(shape, len(v)), Data: b}
}

// NewBytes builds a BYTES tensor; a nil shape means [len(v)].
func NewBytes(name string, shape []int64, v []string) Tensor {
	size := 0
	for _, x := range v {
		size += len(x)
	}
	s := NewBytesBuilder(len(v), size)
	for _, x := range v {
		s.AddString(x)
	}
	return Tensor{Name: name, Datatype: "BYTES", Shape: shapeOr(shape, len(v)), Strings: s.Strings()}
}

// raw checks t's datatype and returns its data.
func (t Tensor) raw(datatype string, size int) ([]byte, error) {
	if t.Datatype != datatype {
		return nil, fmt.Errorf("workerproto: tensor %q is %s, not %s", t.Name, t.Datatype, datatype)
	}
	if len(t.Data)%size != 0 {
		return nil, fmt.Errorf("workerproto: tensor %q: %d data bytes is not a multiple of %d", t.Name, len(t.Data), size)
	}
	return t.Data, nil
}

// Float32s decodes an FP32 tensor's elements.
func (t Tensor) Float32s() ([]float32, error) {
	b, err := t.raw("FP32", 4)
	if err != nil {
		return nil, err
	}
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out, nil
}

// Float64s decodes an FP64 tensor's elements.
func (t Tensor) Float64s() ([]float64, error) {
	b, err := t.raw("FP64", 8)
	if err != nil {
		return nil, err
	}
	out := make([]float64, len(b)/8)
	for i := range out {
		out[i] = math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
	}
	return out, nil
}

// Int64s decodes an INT64 tensor's elements.
func (t Tensor) Int64s() ([]int64, error) {
	b, err := t.raw("INT64", 8)
	if err != nil {
		return nil, err
	}
	out := make([]int64, len(b)/8)
	for i := range out {
		out[i] = int64(binary.LittleEndian.Uint64(b[8*i:]))
	}
	return out, nil
}
