package inference

import (
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/workerproto"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// The golden tests run every request in testdata/<protocol>/ through decode → frame → response (the frame
// echoed back as the model's outputs) and compare a readable transcript with <name>.golden. A request
// <name>.json (or .csv) may come with <name>.schema.json. Run `go test -update` after a deliberate change.

func TestGoldenV2(t *testing.T) {
	runGolden(t, "v2", ".json", func(body []byte, _ *slipway.Schema) string {
		var out strings.Builder
		req, err := DecodeV2Request(body)
		if err != nil {
			return "== error\n" + errText(err)
		}
		out.WriteString("== frame\n")
		if req.ID != "" {
			fmt.Fprintf(&out, "id: %q\n", req.ID)
		}
		if req.Parameters != nil {
			fmt.Fprintf(&out, "parameters: %s\n", mustJSON(req.Parameters))
		}
		if req.Outputs != nil {
			fmt.Fprintf(&out, "outputs: %q\n", req.Outputs)
		}
		out.WriteString(dumpFrame(req.Inputs))
		resp, err := EncodeV2Response("model", "3", req.ID, req.Inputs, req.Outputs)
		out.WriteString("== response\n")
		if err != nil {
			out.WriteString("error: " + errText(err))
		} else {
			out.WriteString(checkedJSON(resp))
		}
		return out.String()
	})
}

func TestGoldenMLflow(t *testing.T) {
	check := func(req *MLflowRequest, err error) string {
		if err != nil {
			return "== error\n" + errText(err)
		}
		var out strings.Builder
		fmt.Fprintf(&out, "== frame (tabular: %v)\n", req.Tabular)
		if req.Params != nil {
			fmt.Fprintf(&out, "params: %s\n", mustJSON(req.Params))
		}
		out.WriteString(dumpFrame(req.Columns))
		resp, err := EncodeMLflowResponse(req.Columns)
		out.WriteString("== response\n")
		if err != nil {
			out.WriteString("error: " + errText(err))
		} else {
			out.WriteString(checkedJSON(resp))
		}
		return out.String()
	}
	runGolden(t, "mlflow", ".json", func(body []byte, schema *slipway.Schema) string {
		return check(DecodeMLflowJSON(body, schema))
	})
	runGolden(t, "mlflow", ".csv", func(body []byte, schema *slipway.Schema) string {
		return check(DecodeMLflowCSV(body, schema))
	})
}

func runGolden(t *testing.T, dir, ext string, run func([]byte, *slipway.Schema) string) {
	files, err := filepath.Glob(filepath.Join("testdata", dir, "*"+ext))
	if err != nil {
		t.Fatal(err)
	}
	files = slices.DeleteFunc(files, func(f string) bool { return strings.HasSuffix(f, ".schema.json") })
	if len(files) == 0 {
		t.Fatalf("no testdata/%s/*%s files", dir, ext)
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ext)
		t.Run(name, func(t *testing.T) {
			body, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var schema *slipway.Schema
			schemaFile := strings.TrimSuffix(file, ext) + ".schema.json"
			if b, err := os.ReadFile(schemaFile); err == nil {
				schema = &slipway.Schema{}
				if err := json.Unmarshal(b, schema); err != nil {
					t.Fatalf("%s: %v", schemaFile, err)
				}
			}
			got := run(body, schema)
			golden := strings.TrimSuffix(file, ext) + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("%s differs (run go test -update if the change is intended)\n--- got\n%s\n--- want\n%s", golden, got, want)
			}
		})
	}
}

// errText is the error's message, with its code checked.
func errText(err error) string {
	if code := slipway.ErrorCode(err); code != slipway.EINVALID {
		return fmt.Sprintf("wrong code %s: %v\n", code, err)
	}
	return err.Error() + "\n"
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// checkedJSON returns the response as is, marked when it is not valid JSON.
func checkedJSON(b []byte) string {
	if !json.Valid(b) {
		return "INVALID JSON: " + string(b) + "\n"
	}
	return string(b) + "\n"
}

// dumpFrame prints each tensor as `name DATATYPE [shape]: values`, floats with full precision
// (NaN and ±Inf visible) and strings quoted.
func dumpFrame(ts []workerproto.Tensor) string {
	var b strings.Builder
	for _, t := range ts {
		if err := t.Validate(); err != nil {
			fmt.Fprintf(&b, "INVALID %v\n", err)
		}
		fmt.Fprintf(&b, "%s %s %v: %s\n", t.Name, t.Datatype, t.Shape, strings.Join(values(t), " "))
	}
	return b.String()
}

// values formats a tensor's elements for tests.
func values(t workerproto.Tensor) []string {
	dt := workerproto.ParseDatatype(t.Datatype)
	if dt == workerproto.BYTES {
		out := make([]string, len(t.Strings))
		for i, s := range t.Strings {
			out[i] = strconv.Quote(string(s))
		}
		return out
	}
	if dt == workerproto.NoDatatype {
		return []string{"?"}
	}
	n := len(t.Data) / dt.Size()
	out := make([]string, n)
	for i := range n {
		switch dt {
		case workerproto.BOOL:
			out[i] = strconv.FormatBool(t.Data[i] != 0)
		case workerproto.FP16:
			out[i] = strconv.FormatFloat(workerproto.HalfToFloat64(binary.LittleEndian.Uint16(t.Data[2*i:])), 'g', -1, 64)
		case workerproto.FP32:
			out[i] = strconv.FormatFloat(float64(math.Float32frombits(binary.LittleEndian.Uint32(t.Data[4*i:]))), 'g', -1, 32)
		default:
			out[i] = workerproto.ReadNumber(dt, t.Data, i).String()
		}
	}
	return out
}
