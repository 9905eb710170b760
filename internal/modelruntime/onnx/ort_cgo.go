//go:build cgo

package onnx

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"unsafe"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/slipway-ml/slipway/internal/workerproto"
)

var initState struct {
	once sync.Once
	path string
	err  error
}

// Init loads the ONNX Runtime shared library at libPath and creates the process-wide
// environment. It runs once per process: later calls return the first result, or an
// error if they name a different library. A library older than 1.24 is refused with
// an error that says how to install a current one.
func Init(libPath string) error {
	initState.once.Do(func() {
		initState.path = libPath
		initState.err = initialize(libPath)
	})
	if initState.err == nil && libPath != initState.path {
		return fmt.Errorf("onnx: ONNX Runtime already initialized from %s, not %s", initState.path, libPath)
	}
	return initState.err
}

func initialize(libPath string) error {
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		return errors.New("onnx: big-endian hosts are not supported (tensor frames are little-endian)")
	}
	version, err := libraryVersion(libPath)
	if err != nil {
		return fmt.Errorf("onnx: load ONNX Runtime %s: %w", libPath, err)
	}
	if err := checkVersion(libPath, version); err != nil {
		return err
	}
	ort.SetSharedLibraryPath(libPath)
	if err := ort.InitializeEnvironment(); err != nil {
		if strings.Contains(err.Error(), "ORT API base: 2") { // GetApi(24) returned NULL
			return tooOld(libPath, version)
		}
		return fmt.Errorf("onnx: initialize ONNX Runtime %s: %w", libPath, err)
	}
	return nil
}

func initialized() bool { return ort.IsInitialized() }

// datatypes maps ORT element types to OIP datatype names. Other element types
// (bfloat16, complex, float8, int4) are not supported.
var datatypes = map[ort.TensorElementDataType]string{
	ort.TensorElementDataTypeBool:    "BOOL",
	ort.TensorElementDataTypeUint8:   "UINT8",
	ort.TensorElementDataTypeUint16:  "UINT16",
	ort.TensorElementDataTypeUint32:  "UINT32",
	ort.TensorElementDataTypeUint64:  "UINT64",
	ort.TensorElementDataTypeInt8:    "INT8",
	ort.TensorElementDataTypeInt16:   "INT16",
	ort.TensorElementDataTypeInt32:   "INT32",
	ort.TensorElementDataTypeInt64:   "INT64",
	ort.TensorElementDataTypeFloat16: "FP16",
	ort.TensorElementDataTypeFloat:   "FP32",
	ort.TensorElementDataTypeDouble:  "FP64",
	ort.TensorElementDataTypeString:  "BYTES",
}

var elementTypes = func() map[string]ort.TensorElementDataType {
	m := make(map[string]ort.TensorElementDataType, len(datatypes))
	for k, v := range datatypes {
		m[v] = k
	}
	return m
}()

// session is a DynamicAdvancedSession with its served inputs and outputs.
type session struct {
	das *ort.DynamicAdvancedSession
	// run is passed to every Run: terminate cancels the call in progress (a deadline passed in an in-process
	// replica, which cannot be killed as a process can).
	runOpts *ort.RunOptions
	inputs  []workerproto.Column
	outputs []workerproto.Column
}

// openSession reads the model's inputs and outputs, then creates the session. Outputs
// that cannot be returned as tensors are left out, with a warning.
func openSession(path string, opts Options) (*session, []string, error) {
	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, nil, err
	}
	defer destroy(so)
	if err := so.SetIntraOpNumThreads(opts.IntraOpThreads); err != nil {
		return nil, nil, fmt.Errorf("set intra-op threads: %w", err)
	}
	ins, outs, err := ort.GetInputOutputInfoWithOptions(path, so)
	if err != nil {
		return nil, nil, err
	}
	s := &session{}
	if s.inputs, err = inputColumns(ins); err != nil {
		return nil, nil, err
	}
	var warnings []string
	s.outputs, warnings = outputColumns(outs)
	if len(s.outputs) == 0 {
		return nil, warnings, fmt.Errorf("no output can be served (%s)", strings.Join(warnings, "; "))
	}
	if s.runOpts, err = ort.NewRunOptions(); err != nil {
		return nil, warnings, fmt.Errorf("run options: %w", err)
	}
	s.das, err = ort.NewDynamicAdvancedSession(path, columnNames(s.inputs), columnNames(s.outputs), so)
	if err != nil {
		destroy(s.runOpts)
		return nil, warnings, err
	}
	return s, warnings, nil
}

func inputColumns(infos []ort.InputOutputInfo) ([]workerproto.Column, error) {
	cols := make([]workerproto.Column, 0, len(infos))
	for _, info := range infos {
		col, err := column(info)
		if err != nil {
			return nil, fmt.Errorf("input %s: %w", info.Name, err)
		}
		cols = append(cols, col)
	}
	return cols, nil
}

func outputColumns(infos []ort.InputOutputInfo) ([]workerproto.Column, []string) {
	var cols []workerproto.Column
	var warnings []string
	for _, info := range infos {
		col, err := column(info)
		if err == nil && col.Datatype == "FP16" {
			// onnxruntime_go v1.27 copies only one byte per element of FP16 outputs.
			err = errors.New("FP16 outputs are not supported (cast to FP32 in the model)")
		}
		if err != nil {
			warnings = append(warnings, fmt.Sprintf("output %s left out: %v", info.Name, err))
			continue
		}
		cols = append(cols, col)
	}
	return cols, warnings
}

func column(info ort.InputOutputInfo) (workerproto.Column, error) {
	if info.OrtValueType != ort.ONNXTypeTensor {
		hint := ""
		if info.OrtValueType == ort.ONNXTypeSequence || info.OrtValueType == ort.ONNXTypeMap {
			hint = " (for skl2onnx classifiers, convert with options={'zipmap': False})"
		}
		return workerproto.Column{}, fmt.Errorf("%s values are not supported, only tensors%s", info.OrtValueType, hint)
	}
	dt, ok := datatypes[info.DataType]
	if !ok {
		return workerproto.Column{}, fmt.Errorf("element type %s is not supported", info.DataType)
	}
	shape := []int64(info.Dimensions.Clone())
	if shape == nil {
		shape = []int64{}
	}
	return workerproto.Column{Name: info.Name, Datatype: dt, Shape: shape}, nil
}

// run executes the session on validated inputs ordered like s.inputs.
func (s *session) run(in []workerproto.Tensor) ([]workerproto.Tensor, error) {
	values := make([]ort.Value, 0, len(in))
	defer func() { destroyAll(values) }() // values grows below
	for _, t := range in {
		v, err := newValue(t)
		if err != nil {
			return nil, fmt.Errorf("input %s: %w", t.Name, err)
		}
		values = append(values, v)
	}
	outputs := make([]ort.Value, len(s.outputs)) // nil: ORT allocates them
	defer destroyAll(outputs)                    // Run fills this slice in place
	if err := s.das.RunWithOptions(values, outputs, s.runOpts); err != nil {
		return nil, err
	}
	result := make([]workerproto.Tensor, len(outputs))
	for i, v := range outputs {
		t, err := toTensor(s.outputs[i].Name, v)
		if err != nil {
			return nil, fmt.Errorf("output %s: %w", s.outputs[i].Name, err)
		}
		result[i] = t
	}
	return result, nil
}

// destroyAll destroys every value. When converting an output fails, the binding
// leaves a typed nil pointer in the slice, whose Destroy would panic: skip those.
func destroyAll(values []ort.Value) {
	for _, v := range values {
		if v != nil && !reflect.ValueOf(v).IsNil() {
			destroy(v)
		}
	}
}

// destroy releases the C memory behind an ORT object. The binding's Destroy fails only for an object never
// initialised or released twice, which this file never does: there is no error to act on.
func destroy(o interface{ Destroy() error }) { _ = o.Destroy() }

func (s *session) close() error {
	err := s.das.Destroy()
	destroy(s.runOpts)
	return err
}

// terminate makes the run in progress, and every later one, fail.
func (s *session) terminate() { _ = s.runOpts.Terminate() } // fails only for options already released

// newValue wraps a validated tensor as an ORT value. Numeric data is used in place
// (copied only when misaligned for its element type); strings are copied into ORT.
func newValue(t workerproto.Tensor) (ort.Value, error) {
	shape := ort.NewShape(t.Shape...)
	if t.Datatype == "BYTES" {
		return newStringValue(shape, t.Strings)
	}
	size, _ := workerproto.ElemSize(t.Datatype)
	return ort.NewCustomDataTensor(shape, aligned(t.Data, size), elementTypes[t.Datatype])
}

func newStringValue(shape ort.Shape, elems [][]byte) (ort.Value, error) {
	strs := make([]string, len(elems))
	for i, b := range elems {
		if bytes.IndexByte(b, 0) >= 0 {
			return nil, fmt.Errorf("BYTES element %d contains a NUL byte, which ONNX Runtime strings cannot hold", i)
		}
		strs[i] = string(b)
	}
	v, err := ort.NewStringTensor(shape)
	if err != nil {
		return nil, err
	}
	if err := v.SetContents(strs); err != nil {
		destroy(v)
		return nil, err
	}
	return v, nil
}

// aligned returns b, or a copy of b in memory aligned to size bytes.
func aligned(b []byte, size int) []byte {
	if size <= 1 || uintptr(unsafe.Pointer(unsafe.SliceData(b)))%uintptr(size) == 0 {
		return b
	}
	words := make([]uint64, (len(b)+7)/8)
	c := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(words))), len(b))
	copy(c, b)
	return c
}

// toTensor converts an ORT-allocated output. Numeric outputs are already copied into
// Go memory by the binding, so their bytes are used without another copy.
func toTensor(name string, v ort.Value) (workerproto.Tensor, error) {
	t := workerproto.Tensor{Name: name, Shape: []int64(v.GetShape())}
	if t.Shape == nil {
		t.Shape = []int64{}
	}
	var ok bool
	if t.Datatype, ok = datatypes[ort.TensorElementDataType(v.DataType())]; !ok {
		return t, fmt.Errorf("unsupported element type %d", v.DataType())
	}
	switch x := v.(type) {
	case *ort.StringTensor:
		strs, err := x.GetContents()
		if err != nil {
			return t, err
		}
		t.Strings = make([][]byte, len(strs))
		for i, s := range strs {
			t.Strings[i] = []byte(s)
		}
	case *ort.Tensor[bool]:
		t.Data = asBytes(x.GetData())
	case *ort.Tensor[uint8]:
		t.Data = x.GetData()
	case *ort.Tensor[uint16]:
		t.Data = asBytes(x.GetData())
	case *ort.Tensor[uint32]:
		t.Data = asBytes(x.GetData())
	case *ort.Tensor[uint64]:
		t.Data = asBytes(x.GetData())
	case *ort.Tensor[int8]:
		t.Data = asBytes(x.GetData())
	case *ort.Tensor[int16]:
		t.Data = asBytes(x.GetData())
	case *ort.Tensor[int32]:
		t.Data = asBytes(x.GetData())
	case *ort.Tensor[int64]:
		t.Data = asBytes(x.GetData())
	case *ort.Tensor[float32]:
		t.Data = asBytes(x.GetData())
	case *ort.Tensor[float64]:
		t.Data = asBytes(x.GetData())
	default:
		return t, fmt.Errorf("unsupported value %T", v)
	}
	return t, nil
}

// asBytes views a numeric slice as its little-endian bytes (Init refuses big-endian hosts).
func asBytes[T ort.TensorData](s []T) []byte {
	if len(s) == 0 {
		return []byte{}
	}
	var zero T
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), len(s)*int(unsafe.Sizeof(zero)))
}
