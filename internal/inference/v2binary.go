package inference

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/slipway-ml/slipway/internal/workerproto"
)

// The binary tensor data extension of the Open Inference Protocol (HTTP): the body is a JSON part of
// Inference-Header-Content-Length bytes followed by the raw data of the inputs whose parameters give a
// binary_data_size, in input order. Fixed-size datatypes are their elements little-endian, row-major; BOOL
// is one byte (0 or 1) per element; BYTES elements are each a 4-byte little-endian length and the bytes.
// Triton's and KServe's clients send this by default.

// DecodeV2BinaryRequest decodes a body in the binary tensor data extension; headerLen is the
// Inference-Header-Content-Length. Tensor data aliases body.
func DecodeV2BinaryRequest(body []byte, headerLen int) (*V2Request, error) {
	if headerLen < 0 || headerLen > len(body) {
		return nil, invalid("Inference-Header-Content-Length", "%d is not within the body's %d bytes", headerLen, len(body))
	}
	req, sizes, err := decodeV2(body[:headerLen], true)
	if err != nil {
		return nil, err
	}
	rest := body[headerLen:]
	for i, size := range sizes {
		if size < 0 {
			continue
		}
		where := fmt.Sprintf("inputs[%d].parameters.binary_data_size", i)
		if size > int64(len(rest)) {
			return nil, invalid(where, "%d bytes, but only %d bytes of binary data are left in the body", size, len(rest))
		}
		if err := setBinaryData(&req.Inputs[i], rest[:size], where); err != nil {
			return nil, err
		}
		rest = rest[size:]
	}
	if len(rest) > 0 {
		return nil, invalid("Inference-Header-Content-Length", "%d bytes of binary data follow the inputs' binary_data_size: check the sizes and the header", len(rest))
	}
	return req, nil
}

// setBinaryData checks raw against t's datatype and shape and makes it t's data.
func setBinaryData(t *workerproto.Tensor, raw []byte, where string) error {
	dt := workerproto.ParseDatatype(t.Datatype)
	n := t.NumElements()
	if n < 0 || n > math.MaxInt32 {
		return invalid(where, "shape %v has too many elements", t.Shape)
	}
	if dt != workerproto.BYTES {
		if want := n * int64(dt.Size()); int64(len(raw)) != want {
			return invalid(where, "%d bytes, but shape %v of %s needs %d", len(raw), t.Shape, t.Datatype, want)
		}
		if dt == workerproto.BOOL {
			for j, c := range raw {
				if c > 1 {
					return invalid(where, "element %d of a BOOL tensor is byte %d: want 0 or 1", j, c)
				}
			}
		}
		t.Data = raw
		return nil
	}
	strs := make([][]byte, 0, n)
	for len(raw) > 0 {
		if len(raw) < 4 {
			return invalid(where, "BYTES element %d: a length prefix needs 4 bytes, %d are left", len(strs), len(raw))
		}
		l := binary.LittleEndian.Uint32(raw)
		if uint64(l) > uint64(len(raw)-4) {
			return invalid(where, "BYTES element %d: length %d, but %d bytes are left", len(strs), l, len(raw)-4)
		}
		strs, raw = append(strs, raw[4:4+l]), raw[4+l:]
	}
	if int64(len(strs)) != n {
		return invalid(where, "%d BYTES elements, but shape %v needs %d", len(strs), t.Shape, n)
	}
	t.Strings = strs
	return nil
}

// binaryTensorData is an output's data in the binary tensor data extension.
func binaryTensorData(t *workerproto.Tensor, dt workerproto.Datatype) []byte {
	if dt != workerproto.BYTES {
		return t.Data
	}
	size := 0
	for _, s := range t.Strings {
		size += 4 + len(s)
	}
	b := make([]byte, 0, size)
	for _, s := range t.Strings {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	return b
}

// EncodeV2BinaryResponse encodes the answer to req: outputs req asks for as binary data follow the JSON
// part, whose length is jsonLen (the answer's Inference-Header-Content-Length). When none does, the answer
// is plain JSON and jsonLen is its whole length.
func EncodeV2BinaryResponse(modelName, modelVersion, id string, outputs []workerproto.Tensor, req *V2Request) (body []byte, jsonLen int, err error) {
	return encodeV2Response(modelName, modelVersion, id, outputs, req.Outputs, req.BinaryOutput)
}
