package inference

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/workerproto"
)

// addSeeds adds every testdata/<dir>/*.json request (schemas excluded) to the corpus.
func addSeeds(f *testing.F, dir string, extra ...string) {
	files, _ := filepath.Glob(filepath.Join("testdata", dir, "*.json"))
	for _, file := range files {
		if strings.HasSuffix(file, ".schema.json") {
			continue
		}
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range extra {
		f.Add([]byte(s))
	}
}

// lossless reports whether a frame survives JSON encoding exactly: no ±Inf (sent as null, read as NaN)
// and no BYTES that are not UTF-8 (sent as U+FFFD).
func lossless(ts []workerproto.Tensor) bool {
	for _, t := range ts {
		for _, v := range values(t) {
			if strings.Contains(v, "Inf") || strings.Contains(v, `\x`) || strings.Contains(v, "\uFFFD") {
				return false
			}
		}
	}
	return true
}

func FuzzDecodeV2Request(f *testing.F) {
	addSeeds(f, "v2",
		`{"inputs": [{"name": "a", "shape": [2, 2], "datatype": "FP16", "data": [[1, 2], [3, 4]]}]}`,
		`{"inputs": [{"data": ["x", "\ud83d\ude00"], "name": "s", "datatype": "BYTES", "shape": [2]}]}`,
		`{"inputs": [{"name": "a", "shape": [], "datatype": "UINT64", "data": 18446744073709551615}]}`)
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := DecodeV2Request(body)
		if err != nil {
			if slipway.ErrorCode(err) != slipway.EINVALID {
				t.Fatalf("error with code %s: %v", slipway.ErrorCode(err), err)
			}
			return
		}
		if !json.Valid(body) {
			t.Fatalf("accepted invalid JSON %q", body)
		}
		for _, in := range req.Inputs {
			if err := in.Validate(); err != nil {
				t.Fatalf("decoded an invalid tensor: %v", err)
			}
		}
		resp, err := EncodeV2Response("m", "1", req.ID, req.Inputs, nil)
		if err != nil {
			t.Fatalf("cannot encode the decoded frame: %v", err)
		}
		if !json.Valid(resp) {
			t.Fatalf("invalid response JSON %s", resp)
		}
		var doc struct {
			Outputs []json.RawMessage `json:"outputs"`
		}
		if err := json.Unmarshal(resp, &doc); err != nil {
			t.Fatal(err)
		}
		again, err := DecodeV2Request([]byte(`{"inputs": [` + string(joinRaw(doc.Outputs)) + `]}`))
		if err != nil {
			t.Fatalf("the response does not decode as a request: %v", err)
		}
		if lossless(req.Inputs) && dumpFrame(again.Inputs) != dumpFrame(req.Inputs) {
			t.Fatalf("round trip changed the frame\n%s\n%s", dumpFrame(req.Inputs), dumpFrame(again.Inputs))
		}
	})
}

var fuzzSchema = &slipway.Schema{Columns: []slipway.ColumnSpec{
	{Name: "a", Dtype: "float32"}, {Name: "b", Dtype: "int8"}, {Name: "c", Dtype: "string"}, {Name: "d", Dtype: "bool"},
}}

func FuzzDecodeMLflowJSON(f *testing.F) {
	addSeeds(f, "mlflow",
		`{"dataframe_split": {"columns": ["a", "b", "c", "d"], "data": [[1.5, 2, "x", true]]}}`,
		`{"dataframe_records": [{"a": 1, "b": -3, "c": "y", "d": false}]}`,
		`{"inputs": {"a": [[1]], "b": [1], "c": ["z"], "d": [true]}}`,
		`{"instances": [[[1, 2]], [[3, 4]]], "params": {"k": 1}}`)
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, schema := range []*slipway.Schema{nil, fuzzSchema} {
			req, err := DecodeMLflowJSON(body, schema)
			if err != nil {
				if slipway.ErrorCode(err) != slipway.EINVALID {
					t.Fatalf("error with code %s: %v", slipway.ErrorCode(err), err)
				}
				continue
			}
			if !json.Valid(body) {
				t.Fatalf("accepted invalid JSON %q", body)
			}
			for _, c := range req.Columns {
				if err := c.Validate(); err != nil {
					t.Fatalf("decoded an invalid tensor: %v", err)
				}
			}
			if req.Tabular {
				if _, err := Rows(req.Columns); err != nil {
					t.Fatalf("tabular frame without shared rows: %v", err)
				}
			}
			resp, err := EncodeMLflowResponse(req.Columns)
			if err != nil || !json.Valid(resp) {
				t.Fatalf("response %s, %v", resp, err)
			}
		}
	})
}

// FuzzScanner checks the JSON scanner against encoding/json: the same documents are valid.
func FuzzScanner(f *testing.F) {
	for _, s := range []string{`{"a": [1, -2.5e+3, "x\u00e9", true, false, null, {}]}`, `01`, `"\ud800"`, `[1,]`, " \t\n[]\r", `1e`, `-`, `"a` + "\x01" + `"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s := &scanner{b: b}
		s.value()
		s.end()
		if valid := json.Valid(b); (s.err == nil) != valid {
			t.Fatalf("json.Valid = %v, scanner error = %v for %q", valid, s.err, b)
		}
		if s.err != nil {
			return
		}
		// Strings decode like encoding/json does.
		var want any
		d := json.NewDecoder(bytes.NewReader(b))
		d.UseNumber()
		if err := d.Decode(&want); err != nil {
			t.Fatal(err)
		}
		if str, ok := want.(string); ok {
			s := &scanner{b: b}
			tk := s.value()
			if got := string(unquote(b, tk)); got != str && perByteValid(got) != str {
				t.Fatalf("unquote = %q, encoding/json = %q", got, str)
			}
		}
	})
}

// FuzzFastFloat checks the fast path against strconv on every JSON number it accepts.
func FuzzFastFloat(f *testing.F) {
	for _, s := range []string{"0", "-0.0", "41.5", "1e22", "1e23", "123456789012345", "0.000001", "3.4028235e38", "16777217", "9007199254740993", "1.5e-10", "7e-11"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sc := &scanner{b: []byte(s)}
		tk := sc.value()
		sc.end()
		if sc.err != nil || tk.k != kInt && tk.k != kFloat {
			return
		}
		for _, bits := range []int{32, 64} {
			got, ok := fastFloat([]byte(s), bits == 32)
			if !ok {
				continue
			}
			want, err := strconv.ParseFloat(s, bits)
			if err != nil || math.Float64bits(got) != math.Float64bits(want) {
				t.Fatalf("fastFloat(%q, %d bits) = %v, strconv = %v (%v)", s, bits, got, want, err)
			}
		}
	})
}

// perByteValid replaces each invalid UTF-8 byte with U+FFFD, as encoding/json does.
func perByteValid(s string) string {
	var b strings.Builder
	for _, r := range s {
		b.WriteRune(r) // an invalid byte ranges as one utf8.RuneError
	}
	return b.String()
}
