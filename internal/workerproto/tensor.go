package workerproto

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"unicode/utf8"
)

// Column describes one model input or output in the hello frame. Shape is nil when
// unknown (omitted from the JSON; a JSON null also decodes to nil), and -1 marks a
// variable dimension. An empty non-nil Shape is a scalar and is encoded as [].
type Column struct {
	Name     string  `json:"name"`
	Datatype string  `json:"datatype"`
	Shape    []int64 `json:"shape,omitzero"`
}

// Tensor is one column of a tensor frame. Data holds the row-major little-endian
// elements for numeric datatypes and BOOL (1 byte, 0 or 1); Strings holds the
// elements of a BYTES tensor (Data is unused for BYTES).
type Tensor struct {
	Name     string
	Datatype string
	Shape    []int64
	Data     []byte
	Strings  [][]byte
}

// Limits of the tensor frame encoding.
const (
	maxNameLen     = math.MaxUint16
	maxDims        = math.MaxUint8
	minColumnBytes = 2 + 1 + 1 + 8 // name_len, dt_len, ndim, data_len
)

var errTooMany = errors.New("too many elements")

// ElemSize returns the element size in bytes of an OIP v2 datatype name and whether the
// name is known. BYTES is known but has no fixed size: it returns (0, true).
func ElemSize(datatype string) (int, bool) {
	dt := ParseDatatype(datatype)
	return dt.Size(), dt != NoDatatype
}

// NumElements returns the product of the shape (1 for a scalar), or -1 when a dimension
// is negative or the product overflows int64.
func (t Tensor) NumElements() int64 {
	n, err := numElements(t.Shape, math.MaxInt64)
	if err != nil {
		return -1
	}
	return n
}

// numElements multiplies the dims, failing on a negative dim or a product above limit.
// A zero dim makes the product 0 regardless of the other dims.
func numElements(shape []int64, limit uint64) (int64, error) {
	for i, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("dim %d is negative (%d)", i, d)
		}
		if d == 0 {
			return 0, nil
		}
	}
	n := uint64(1)
	for _, d := range shape {
		hi, lo := bits.Mul64(n, uint64(d))
		if hi != 0 || lo > limit {
			return 0, fmt.Errorf("shape %v: %w", shape, errTooMany)
		}
		n = lo
	}
	return int64(n), nil
}

// Validate reports whether t can be encoded and is self-consistent: name and datatype,
// at most 255 dims, all ≥ 0, and data (or strings) matching the shape.
func (t Tensor) Validate() error {
	if err := t.validate(); err != nil {
		return fmt.Errorf("workerproto: tensor %q: %w", t.Name, err)
	}
	return nil
}

func (t Tensor) validate() error {
	if len(t.Name) > maxNameLen || !utf8.ValidString(t.Name) {
		return errors.New("name must be valid UTF-8 of at most 65535 bytes")
	}
	size, ok := ElemSize(t.Datatype)
	if !ok {
		return fmt.Errorf("unknown datatype %q", t.Datatype)
	}
	if len(t.Shape) > maxDims {
		return fmt.Errorf("%d dims (at most 255)", len(t.Shape))
	}
	n, err := numElements(t.Shape, math.MaxInt64)
	if err != nil {
		return err
	}
	if t.Datatype == "BYTES" {
		if int64(len(t.Strings)) != n {
			return fmt.Errorf("shape %v needs %d BYTES elements, have %d", t.Shape, n, len(t.Strings))
		}
		for _, s := range t.Strings {
			if uint64(len(s)) > math.MaxUint32 {
				return errors.New("BYTES element longer than 4 GiB")
			}
		}
		return nil
	}
	if n > math.MaxInt64/int64(size) || int64(len(t.Data)) != n*int64(size) {
		return fmt.Errorf("shape %v of %s needs %d data bytes, have %d", t.Shape, t.Datatype, n*int64(size), len(t.Data))
	}
	return nil
}

// dataLen is the encoded length of t's data section.
func (t Tensor) dataLen() int {
	if t.Datatype != "BYTES" {
		return len(t.Data)
	}
	n := 4 * len(t.Strings)
	for _, s := range t.Strings {
		n += len(s)
	}
	return n
}

// EncodedLen returns the size of EncodeTensors' output for ts.
func EncodedLen(ts []Tensor) int {
	n := 4
	for _, t := range ts {
		n += minColumnBytes + len(t.Name) + len(t.Datatype) + 8*len(t.Shape) + t.dataLen()
	}
	return n
}

// EncodeTensors appends the tensor frame encoding of ts to dst. It encodes the tensors
// as given: call Validate first for anything not built by this package's constructors.
// It panics if a name, datatype or dim count does not fit its length field.
func EncodeTensors(dst []byte, ts []Tensor) []byte {
	if need := EncodedLen(ts); cap(dst)-len(dst) < need {
		grown := make([]byte, len(dst), len(dst)+need)
		copy(grown, dst)
		dst = grown
	}
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(ts)))
	for _, t := range ts {
		dst = appendTensor(dst, t)
	}
	return dst
}

func appendTensor(dst []byte, t Tensor) []byte {
	if len(t.Name) > maxNameLen || len(t.Datatype) > math.MaxUint8 || len(t.Shape) > maxDims {
		panic(fmt.Sprintf("workerproto: tensor %.40q does not fit the frame encoding", t.Name))
	}
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(t.Name)))
	dst = append(dst, t.Name...)
	dst = append(dst, byte(len(t.Datatype)))
	dst = append(dst, t.Datatype...)
	dst = append(dst, byte(len(t.Shape)))
	for _, d := range t.Shape {
		dst = binary.LittleEndian.AppendUint64(dst, uint64(d))
	}
	dst = binary.LittleEndian.AppendUint64(dst, uint64(t.dataLen()))
	if t.Datatype != "BYTES" {
		return append(dst, t.Data...)
	}
	for _, s := range t.Strings {
		dst = binary.LittleEndian.AppendUint32(dst, uint32(len(s)))
		dst = append(dst, s...)
	}
	return dst
}

// DecodeTensors parses a tensor frame payload. The returned Data and Strings slices
// alias b: copy them if b is reused. Every length is checked against the remaining
// input before anything is allocated, so hostile input costs at most O(len(b)).
func DecodeTensors(b []byte) ([]Tensor, error) { return decodeTensors(b, nil) }

// decodeTensors is DecodeTensors taking the names of column i from names[i] when they are equal: a replica
// answers every call with the same outputs, and their names need not be allocated again.
func decodeTensors(b []byte, names []string) ([]Tensor, error) {
	d := decoder{b: b, names: names}
	ncols := d.u32()
	if d.err == nil && uint64(ncols) > uint64(len(d.b)-d.off)/minColumnBytes {
		return nil, fmt.Errorf("workerproto: tensor frame: %d columns cannot fit in %d bytes", ncols, len(b))
	}
	var ts []Tensor
	ts, d.shapes = tensorRoom(int(ncols))
	for i := 0; d.err == nil && i < int(ncols); i++ {
		t := d.tensor(i)
		if d.err != nil {
			return nil, fmt.Errorf("workerproto: tensor frame: column %d: %w", i, d.err)
		}
		ts = append(ts, t)
	}
	if d.err != nil {
		return nil, fmt.Errorf("workerproto: tensor frame: %w", d.err)
	}
	if d.off != len(b) {
		return nil, fmt.Errorf("workerproto: tensor frame: %d trailing bytes", len(b)-d.off)
	}
	return ts, nil
}

// tensorRoom returns room for n tensors and their shapes of up to two dimensions each: one allocation for the
// usual answer of one tensor (a replica's answer is decoded on every call), two otherwise.
func tensorRoom(n int) ([]Tensor, []int64) {
	if n == 1 {
		r := new(struct {
			t     [1]Tensor
			shape [2]int64
		})
		return r.t[:0:1], r.shape[:0:2]
	}
	return make([]Tensor, 0, n), make([]int64, 0, 2*n)
}

var errTruncated = errors.New("truncated")

// decoder reads little-endian fields from b; after the first failure every read
// returns zero values and err keeps the first error.
type decoder struct {
	b      []byte
	off    int
	err    error
	names  []string // see decodeTensors
	shapes []int64  // room for the tensors' shapes (tensorRoom)
}

func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
}

func (d *decoder) take(n uint64) []byte {
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)-d.off) {
		d.fail(errTruncated)
		return nil
	}
	s := d.b[d.off : d.off+int(n) : d.off+int(n)]
	d.off += int(n)
	return s
}

func (d *decoder) u8() uint8 {
	if s := d.take(1); s != nil {
		return s[0]
	}
	return 0
}

func (d *decoder) u16() uint16 {
	if s := d.take(2); s != nil {
		return binary.LittleEndian.Uint16(s)
	}
	return 0
}

func (d *decoder) u32() uint32 {
	if s := d.take(4); s != nil {
		return binary.LittleEndian.Uint32(s)
	}
	return 0
}

func (d *decoder) u64() uint64 {
	if s := d.take(8); s != nil {
		return binary.LittleEndian.Uint64(s)
	}
	return 0
}

func (d *decoder) tensor(col int) Tensor {
	var t Tensor
	name := d.take(uint64(d.u16()))
	t.Datatype = string(d.take(uint64(d.u8())))
	ndim := d.u8()
	dims := d.take(8 * uint64(ndim))
	dataLen := d.u64()
	data := d.take(dataLen)
	if d.err != nil {
		return t
	}
	if !utf8.Valid(name) {
		d.fail(errors.New("name is not valid UTF-8"))
		return t
	}
	if col < len(d.names) && d.names[col] == string(name) {
		t.Name = d.names[col]
	} else {
		t.Name = string(name)
	}
	if n := int(ndim); n <= cap(d.shapes)-len(d.shapes) {
		at := len(d.shapes)
		d.shapes = d.shapes[:at+n]
		t.Shape = d.shapes[at : at+n : at+n] // capped: an append to it cannot reach the next tensor's
	} else {
		t.Shape = make([]int64, n)
	}
	for i := range t.Shape {
		t.Shape[i] = int64(binary.LittleEndian.Uint64(dims[8*i:]))
	}
	if err := t.setData(data); err != nil {
		d.fail(fmt.Errorf("%q: %w", t.Name, err))
	}
	return t
}

// setData checks data against the datatype and shape and stores it in t.
func (t *Tensor) setData(data []byte) error {
	size, ok := ElemSize(t.Datatype)
	if !ok {
		return fmt.Errorf("unknown datatype %q", t.Datatype)
	}
	// Every element takes at least one byte, so len(data) bounds the element count.
	n, err := numElements(t.Shape, uint64(len(data)))
	if errors.Is(err, errTooMany) {
		return fmt.Errorf("shape %v has more elements than %d data bytes can hold", t.Shape, len(data))
	}
	if err != nil {
		return err
	}
	if t.Datatype == "BYTES" {
		t.Strings, err = splitStrings(data, n)
		return err
	}
	if uint64(len(data)) != uint64(n)*uint64(size) {
		return fmt.Errorf("shape %v of %s needs %d data bytes, frame has %d", t.Shape, t.Datatype, n*int64(size), len(data))
	}
	if t.Datatype == "BOOL" {
		for _, c := range data {
			if c > 1 {
				return fmt.Errorf("BOOL byte %d is not 0 or 1", c)
			}
		}
	}
	t.Data = data
	return nil
}

// splitStrings parses n BYTES elements (len:uint32 | bytes) that must fill data exactly.
func splitStrings(data []byte, n int64) ([][]byte, error) {
	if uint64(n) > uint64(len(data))/4 {
		return nil, fmt.Errorf("%d BYTES elements cannot fit in %d data bytes", n, len(data))
	}
	d := decoder{b: data}
	out := make([][]byte, n)
	for i := range out {
		out[i] = d.take(uint64(d.u32()))
		if d.err != nil {
			return nil, fmt.Errorf("BYTES element %d: %w", i, d.err)
		}
	}
	if d.off != len(data) {
		return nil, fmt.Errorf("%d bytes after the last BYTES element", len(data)-d.off)
	}
	return out, nil
}
