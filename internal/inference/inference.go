// Package inference is the wire-format layer of the prediction endpoints. It turns each protocol's HTTP
// body into a frame — a batch of named columns ([]workerproto.Tensor) — and a model's output tensors back
// into each protocol's response:
//
//   - Open Inference Protocol v2 (KServe, Triton): DecodeV2Request, EncodeV2Response, V2Error and the
//     metadata documents.
//   - MLflow scoring (`mlflow models serve`, MLflow 2.x): DecodeMLflowJSON (dataframe_split,
//     dataframe_records, instances, inputs + params), DecodeMLflowCSV, EncodeMLflowResponse.
//   - The ONNX worker's JSON (J frames): DecodeWorkerJSON, EncodeWorkerJSON, with the worker's own wording
//     and number format (see workerjson.go).
//   - Fitting a frame to a version: ValidateSchema (the input schema's features, dtypes and domains) and
//     AdaptToModel (the replica's declared inputs: stacking feature columns, casting dtypes).
//   - Dynamic batching: Rows, Concat, Split.
//
// The package does no I/O. Every error it returns is a *slipway.Error with code EINVALID whose message
// says what is wrong and where, as a path into the request (`inputs[1].data[3]`, `dataframe_split.data[3][2]`,
// `line 7`); rows and list indices count from 0, CSV lines from 1.
//
// Decisions where the protocols leave room:
//   - Floats that are NaN or ±Inf are encoded as JSON null (what JSON.stringify and pandas' to_json do):
//     the response stays valid JSON for every client. Decoding is the mirror image: null in a float
//     tensor or float column is NaN, and so are the strings "NaN", "Infinity", "-Infinity", "inf" and
//     "-inf" (any case). Null anywhere else is an error.
//   - FP16 values are converted from and to IEEE 754 binary16 bits with round-to-nearest-even; a finite
//     value that rounds beyond ±65504 is an error, not an infinity. Responses print FP16 with the fewest
//     digits that read back to the same half (0.1, not 0.0999755859375).
//   - Integer datatypes take JSON integers; an integral number written with a fraction or exponent
//     (3.0, 1e3) is accepted up to 2^53, where float64 stops being exact. 1.5 or 300 in UINT8 is an error.
//   - OIP v2 data may be flat (row-major) or nested; nested data must follow the shape exactly, level by
//     level. Responses always send flat data.
//   - BYTES elements are JSON strings; their bytes are kept as sent. In responses, bytes that are not valid
//     UTF-8 become U+FFFD (JSON cannot carry them).
//   - Decoded tensors never alias the request body, so the caller may reuse its buffer.
package inference

import (
	"fmt"
	"strings"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/workerproto"
)

// datatypeList is the list of OIP datatypes for error messages.
var datatypeList = strings.Join(workerproto.Datatypes(), ", ")

// invalid returns an EINVALID error whose message is "where: what".
func invalid(where, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if where != "" {
		msg = where + ": " + msg
	}
	return &slipway.Error{Code: slipway.EINVALID, Message: msg}
}

// maxRank is the most dimensions a decoded tensor (or JSON nesting of data) may have.
const maxRank = 32

// quoteList formats names as `"a", "b", "c"` for error messages, eliding after 20.
func quoteList(names []string) string {
	return listFor(names, 20, func(b *strings.Builder, n string) { fmt.Fprintf(b, "%q", n) })
}

// listFor formats items as "a, b, c" for error messages, each with write, eliding after the first most:
// "a, b, … (3 more)".
func listFor[T any](items []T, most int, write func(*strings.Builder, T)) string {
	var b strings.Builder
	for i, x := range items {
		if i == most {
			fmt.Fprintf(&b, ", … (%d more)", len(items)-i)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		write(&b, x)
	}
	return b.String()
}
