package inference

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/workerproto"
)

func f64p(f float64) *float64 { return &f }

var churnSchema = &slipway.Schema{Columns: []slipway.ColumnSpec{
	{Name: "age", Dtype: "float64", Min: f64p(0), Max: f64p(120)},
	{Name: "plan", Dtype: "string", Allowed: []any{"basic", "pro"}},
	{Name: "calls", Dtype: "int32"},
}}

func TestDecodeMLflowJSONErrors(t *testing.T) {
	tests := []struct {
		name   string
		schema *slipway.Schema
		body   string
		want   string
	}{
		{"not an object", nil, `[[1, 2]]`, `expected a JSON object with one of "dataframe_split", "dataframe_records", "instances", "inputs", got a list`},
		{"empty object", nil, `{}`, `the request body is an empty object: send exactly one of "dataframe_split", "dataframe_records", "instances", "inputs"`},
		{"unknown keys only", nil, `{"data": [], "params": {}}`, `the request body has "data", "params" but none of "dataframe_split", "dataframe_records", "instances", "inputs": send exactly one of them`},
		{"two formats", nil, `{"instances": [1], "inputs": [1]}`, `the request body has "instances" and "inputs": send only one of "dataframe_split", "dataframe_records", "instances", "inputs"`},
		{"params not an object", nil, `{"instances": [1], "params": 3}`, "params: expected an object, got number 3"},
		{"syntax", nil, `{"instances": [1, 2}`, "invalid JSON at byte 19 (line 1): expected ',' or ']', found '}'"},

		{"split not an object", nil, `{"dataframe_split": [[1]]}`, `dataframe_split: expected an object {"columns": [...], "data": [[...], ...]}, got a list`},
		{"split no data", nil, `{"dataframe_split": {"columns": ["a"]}}`, "dataframe_split.data: missing: send the rows as a list of lists"},
		{"split no rows", nil, `{"dataframe_split": {"columns": ["a"], "data": []}}`, "dataframe_split.data: empty: send at least one row"},
		{"split row not a list", nil, `{"dataframe_split": {"columns": ["a"], "data": [[1], 2]}}`, "dataframe_split.data[1]: expected a row (a list of values), got number 2"},
		{"split short row", nil, `{"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2], [3]]}}`, "dataframe_split.data[1]: expected 2 values (one per column), got 1"},
		{"split ragged without columns", nil, `{"dataframe_split": {"data": [[1, 2], [3, 4, 5]]}}`, "dataframe_split.data[1]: expected 2 values like dataframe_split.data[0], got 3"},
		{"split columns after data", nil, `{"dataframe_split": {"data": [[1, 2]], "columns": ["a"]}}`, "dataframe_split.columns: 1 column names for rows of 2 values"},
		{"split duplicate column", nil, `{"dataframe_split": {"columns": ["a", "a"], "data": [[1, 2]]}}`, `dataframe_split.columns[1]: duplicate column "a"`},
		{"split bad column name", nil, `{"dataframe_split": {"columns": [null], "data": [[1]]}}`, "dataframe_split.columns[0]: expected a column name, got null"},
		{"split index length", nil, `{"dataframe_split": {"columns": ["a"], "data": [[1], [2]], "index": [0]}}`, "dataframe_split.index: has 1 entries for 2 rows"},
		{"split object cell", nil, `{"dataframe_split": {"columns": ["a"], "data": [[{"x": 1}]]}}`, "dataframe_split.data[0][0]: expected a value, got an object"},
		{"split list then value", nil, `{"dataframe_split": {"columns": ["a"], "data": [[[1, 2]], [3]]}}`, "dataframe_split.data[1][0]: expected a list like in row 0, got number 3"},
		{"split value then list", nil, `{"dataframe_split": {"columns": ["a"], "data": [[1], [[3]]]}}`, "dataframe_split.data[1][0]: expected a value like in row 0, got a list"},
		{"split cell shapes differ", nil, `{"dataframe_split": {"columns": ["a"], "data": [[[1, 2]], [[3]]]}}`, "dataframe_split.data[1][0]: expected a list of shape [2] like in row 0, got shape [1]"},
		{"mixed number and string", nil, `{"dataframe_split": {"columns": ["id", "age"], "data": [[1, 30], [2, "x"]]}}`, `dataframe_split.data[1][1]: expected a number for column "age" (as at dataframe_split.data[0][1]), got string "x"`},
		{"mixed string and bool", nil, `{"dataframe_split": {"columns": ["a"], "data": [["x"], [true]]}}`, `dataframe_split.data[1][0]: expected a string for column "a" (as at dataframe_split.data[0][0]), got true`},
		{"null in string column", nil, `{"dataframe_split": {"columns": ["a"], "data": [["x"], [null]]}}`, `dataframe_split.data[1][0]: missing value (null) in column "a": only float columns accept null (as NaN)`},
		{"schema type", churnSchema, `{"dataframe_split": {"columns": ["age", "plan", "calls"], "data": [[1, "pro", 2], [3, "pro", "x"]]}}`, `dataframe_split.data[1][2]: expected an integer for column "calls", got string "x"`},
		{"schema int range", churnSchema, `{"dataframe_split": {"columns": ["age", "plan", "calls"], "data": [[1, "pro", 3000000000]]}}`, `dataframe_split.data[0][2]: 3000000000 is out of range (column "calls" is int32)`},
		{"schema fraction", churnSchema, `{"dataframe_split": {"columns": ["age", "plan", "calls"], "data": [[1, "pro", 2.5]]}}`, `dataframe_split.data[0][2]: 2.5 is not an integer (column "calls" is int32)`},
		{"schema string for number", churnSchema, `{"dataframe_split": {"columns": ["age", "plan", "calls"], "data": [["41", "pro", 2]]}}`, `dataframe_split.data[0][0]: expected a number for column "age", got string "41"`},
		{"schema missing", churnSchema, `{"dataframe_split": {"columns": ["age", "plan"], "data": [[1, "pro"]]}}`, `dataframe_split.columns: missing column "calls" (the input schema has "age", "plan", "calls")`},
		{"schema unknown", churnSchema, `{"dataframe_split": {"columns": ["age", "plan", "calls", "zip"], "data": [[1, "pro", 2, 3]]}}`, `dataframe_split.columns[3]: unknown column "zip" (the input schema has "age", "plan", "calls")`},
		{"schema bad dtype", &slipway.Schema{Columns: []slipway.ColumnSpec{{Name: "a", Dtype: "complex128"}}}, `{"instances": [1]}`, `the input schema's column "a" has unsupported dtype "complex128"`},

		{"records not a list", nil, `{"dataframe_records": {"a": [1]}}`, "dataframe_records: expected a list of objects {column: value}, got an object"},
		{"records empty", nil, `{"dataframe_records": []}`, "dataframe_records: empty: send at least one record"},
		{"record not an object", nil, `{"dataframe_records": [{"a": 1}, [1]]}`, "dataframe_records[1]: expected an object {column: value}, got a list"},
		{"record missing column", nil, `{"dataframe_records": [{"a": 1, "b": 2}, {"b": 3}]}`, `dataframe_records[1]: missing column "a"`},
		{"record new column", nil, `{"dataframe_records": [{"a": 1}, {"a": 2, "b": 3}]}`, `dataframe_records[0]: missing column "b" (present in dataframe_records[1])`},
		{"record duplicate key", nil, `{"dataframe_records": [{"a": 1, "a": 2}]}`, `dataframe_records[0]: duplicate column "a"`},
		{"record unknown with schema", churnSchema, `{"dataframe_records": [{"age": 1, "plan": "pro", "calls": 2, "zip": 3}]}`, `dataframe_records[0]: unknown column "zip" (the input schema has "age", "plan", "calls")`},
		{"record missing with schema", churnSchema, `{"dataframe_records": [{"age": 1, "calls": 2}]}`, `dataframe_records[0]: missing column "plan"`},
		{"record type path", nil, `{"dataframe_records": [{"my col": 1}, {"my col": "x"}]}`, `dataframe_records[1]["my col"]: expected a number for column "my col" (as at dataframe_records[0]["my col"]), got string "x"`},

		{"instances scalar", nil, `{"instances": 5}`, "instances: expected a list of rows or an object of named lists, got number 5"},
		{"instances empty", nil, `{"instances": []}`, "instances: empty: send at least one row"},
		{"instances ragged", nil, `{"instances": [[1, 2], [3]]}`, "instances[1]: expected 2 elements like instances[0], got 1"},
		{"instances uneven depth", nil, `{"instances": [[1, 2], 3]}`, "instances[1]: expected a list (the lists nest unevenly), got number 3"},
		{"instances deeper later", nil, `{"instances": [1, [2]]}`, "instances[1]: expected a value (the lists nest unevenly), got a list"},
		{"instances object leaf", nil, `{"instances": [[{"a": 1}]]}`, "instances[0][0]: expected a value, got an object"},
		{"instances mixed", nil, `{"instances": [[1, "a"]]}`, `instances[0][1]: expected a number for column "input" (as at instances[0][0]), got string "a"`},
		{"instances records missing", nil, `{"instances": [{"a": 1}, {"b": 1}]}`, `instances[0]: missing column "b" (present in instances[1])`},
		{"inputs empty object", nil, `{"inputs": {}}`, "inputs: empty object: send named lists"},
		{"inputs ragged", nil, `{"inputs": {"x": [[1], [2, 3]]}}`, "inputs.x[1]: expected 1 elements like inputs.x[0], got 2"},
		{"inputs mixed", nil, `{"inputs": {"x": [1, "a"]}}`, `inputs.x[1]: expected a number for column "x" (as at inputs.x[0]), got string "a"`},
		{"inputs unknown", churnSchema, `{"inputs": {"age": [1], "plan": ["pro"], "calls": [1], "zip": [1]}}`, `inputs.zip: unknown column "zip" (the input schema has "age", "plan", "calls")`},
		{"inputs missing", churnSchema, `{"inputs": {"age": [1], "plan": ["pro"]}}`, `inputs: missing column "calls" (the input schema has "age", "plan", "calls")`},
		{"inputs nesting limit", nil, `{"inputs": ` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}`, "inputs[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]: lists nested more than 32 deep"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := DecodeMLflowJSON([]byte(tt.body), tt.schema)
			if err == nil {
				t.Fatalf("no error; decoded %s", dumpFrame(req.Columns))
			}
			wantInvalid(t, err, tt.want)
		})
	}
}

func TestDecodeMLflowJSON(t *testing.T) {
	tests := []struct {
		name    string
		schema  *slipway.Schema
		body    string
		want    string // dumpFrame
		tabular bool
	}{
		{"split with schema in schema order", churnSchema,
			`{"dataframe_split": {"columns": ["calls", "plan", "age"], "data": [[1, "pro", 41], [2, "basic", 33.5]]}}`,
			"age FP64 [2]: 41 33.5\nplan BYTES [2]: \"pro\" \"basic\"\ncalls INT32 [2]: 1 2\n", true},
		{"split without columns uses schema order", churnSchema,
			`{"dataframe_split": {"data": [[41, "pro", 1]]}}`,
			"age FP64 [1]: 41\nplan BYTES [1]: \"pro\"\ncalls INT32 [1]: 1\n", true},
		{"split without columns or schema", nil,
			`{"dataframe_split": {"data": [[41, "pro"]]}}`,
			"0 INT64 [1]: 41\n1 BYTES [1]: \"pro\"\n", true},
		{"split numeric column names", nil,
			`{"dataframe_split": {"columns": [0, 1], "data": [[1, 2]], "index": null}}`,
			"0 INT64 [1]: 1\n1 INT64 [1]: 2\n", true},
		{"null and ints make floats", nil,
			`{"dataframe_split": {"columns": ["a", "b"], "data": [[1, null], [null, null]]}}`,
			"a FP64 [2]: 1 NaN\nb FP64 [2]: NaN NaN\n", true},
		{"int beyond int64 makes floats", nil,
			`{"dataframe_split": {"columns": ["a"], "data": [[1], [18446744073709551616]]}}`,
			"a FP64 [2]: 1 1.8446744073709552e+19\n", true},
		{"null in float schema column", churnSchema,
			`{"dataframe_records": [{"age": null, "plan": "pro", "calls": 1}]}`,
			"age FP64 [1]: NaN\nplan BYTES [1]: \"pro\"\ncalls INT32 [1]: 1\n", true},
		{"records escaped keys", nil,
			`{"dataframe_records": [{"\u0061": true}, {"a": false}]}`,
			"a BOOL [2]: true false\n", true},
		{"instances list of scalars", nil, `{"instances": [1.5, 2]}`, "input FP64 [2]: 1.5 2\n", false},
		{"inputs list of rows", nil, `{"inputs": [[true], [false]]}`, "input BOOL [2 1]: true false\n", false},
		{"inputs 3-D", nil, `{"inputs": [[[1], [2]], [[3], [4]]]}`, "input INT64 [2 2 1]: 1 2 3 4\n", false},
		{"single schema column names the tensor", &slipway.Schema{Columns: []slipway.ColumnSpec{{Name: "text", Dtype: "string"}}},
			`{"instances": ["a", "b"]}`, "text BYTES [2]: \"a\" \"b\"\n", false},
		{"inputs named tensors keep their shapes", nil,
			`{"inputs": {"a": [[1, 2]], "b": "x", "c": [[[]]]}}`,
			"a INT64 [1 2]: 1 2\nb BYTES []: \"x\"\nc FP64 [1 1 0]: \n", false},
		{"inputs named with schema order", churnSchema,
			`{"inputs": {"calls": [1], "plan": ["pro"], "age": [2]}}`,
			"age FP64 [1]: 2\nplan BYTES [1]: \"pro\"\ncalls INT32 [1]: 1\n", false},
		{"unknown top-level keys are ignored", nil, `{"instances": [1], "signature": "x"}`, "input INT64 [1]: 1\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := DecodeMLflowJSON([]byte(tt.body), tt.schema)
			if err != nil {
				t.Fatal(err)
			}
			if got := dumpFrame(req.Columns); got != tt.want {
				t.Fatalf("got\n%s\nwant\n%s", got, tt.want)
			}
			if req.Tabular != tt.tabular {
				t.Fatalf("tabular = %v, want %v", req.Tabular, tt.tabular)
			}
		})
	}
}

func TestDecodeMLflowJSONParams(t *testing.T) {
	req, err := DecodeMLflowJSON([]byte(`{"params": {"n": 12345678901234567890, "s": "x", "l": [1]}, "instances": [1]}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if n, ok := req.Params["n"].(json.Number); !ok || n.String() != "12345678901234567890" {
		t.Fatalf("params = %#v", req.Params)
	}
	if got := mustJSON(req.Params); got != `{"l":[1],"n":12345678901234567890,"s":"x"}` {
		t.Fatalf("params re-encode as %s", got)
	}
}

func TestDecodeMLflowCSV(t *testing.T) {
	tests := []struct {
		name   string
		schema *slipway.Schema
		body   string
		want   string
		err    string
	}{
		{"inferred", nil, "a,b,c,d,e\n1,1.5,x,true,\n-2,,y,False,\n",
			"a INT64 [2]: 1 -2\nb FP64 [2]: 1.5 NaN\nc BYTES [2]: \"x\" \"y\"\nd BOOL [2]: true false\ne FP64 [2]: NaN NaN\n", ""},
		{"ints with a gap are floats", nil, "a\n1\n\n\"\"\n", "a FP64 [2]: 1 NaN\n", ""},
		{"mixed is a string", nil, "a\n1\nx\n", "a BYTES [2]: \"1\" \"x\"\n", ""},
		{"bom and crlf", nil, "\xef\xbb\xbfa,b\r\n1,2\r\n", "a INT64 [1]: 1\nb INT64 [1]: 2\n", ""},
		{"schema order and types", churnSchema, "calls,plan,age\n 3 ,pro,41\n+4,basic,nan\n",
			"age FP64 [2]: 41 NaN\nplan BYTES [2]: \"pro\" \"basic\"\ncalls INT32 [2]: 3 4\n", ""},
		{"schema bool", &slipway.Schema{Columns: []slipway.ColumnSpec{{Name: "b", Dtype: "bool"}}}, "b\n1\nFALSE\n", "b BOOL [2]: true false\n", ""},
		{"empty", nil, "", "", "empty CSV: send a header row with the column names, then the rows"},
		{"header only", nil, "a,b\n", "", "the CSV has a header but no rows"},
		{"field count", nil, "a,b\n1,2\n3\n", "", "line 3: expected 2 fields (one per header column), got 1"},
		{"field count after multi-line field", nil, "a,b\n\"x\ny\",2\n3,4,5\n", "", "line 4: expected 2 fields (one per header column), got 3"},
		{"bare quote", nil, "a\nx\"y\n", "", `line 2, column 2: invalid CSV: bare " in non-quoted-field`},
		{"empty header name", nil, "a,\n1,2\n", "", "line 1, field 2: empty name"},
		{"duplicate header", nil, "a,a\n1,2\n", "", `line 1, field 2: duplicate column "a"`},
		{"unknown column", churnSchema, "age,plan,calls,zip\n1,pro,2,3\n", "", `line 1, field 4: unknown column "zip" (the input schema has "age", "plan", "calls")`},
		{"missing column", churnSchema, "age,plan\n1,pro\n", "", `line 1: missing column "calls" (the input schema has "age", "plan", "calls")`},
		{"schema int", churnSchema, "age,plan,calls\n1,pro,x\n", "", `line 2, column "calls": expected an integer, got "x" (int32)`},
		{"schema int missing", churnSchema, "age,plan,calls\n1,pro,\n", "", `line 2, column "calls": missing value (int32)`},
		{"schema int range", churnSchema, "age,plan,calls\n1,pro,2147483648\n", "", `line 2, column "calls": "2147483648" is out of range (int32)`},
		{"schema float", churnSchema, "age,plan,calls\nold,pro,1\n", "", `line 2, column "age": expected a number, got "old" (float64)`},
		{"schema bool", &slipway.Schema{Columns: []slipway.ColumnSpec{{Name: "b", Dtype: "boolean"}}}, "b\nyes\n", "", `line 2, column "b": expected true or false, got "yes" (boolean)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := DecodeMLflowCSV([]byte(tt.body), tt.schema)
			if tt.err != "" {
				wantInvalid(t, err, tt.err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := dumpFrame(req.Columns); got != tt.want {
				t.Fatalf("got\n%s\nwant\n%s", got, tt.want)
			}
			if !req.Tabular {
				t.Fatal("CSV is not tabular")
			}
		})
	}
}

func TestEncodeMLflowResponse(t *testing.T) {
	tests := []struct {
		name    string
		outputs []workerproto.Tensor
		want    string
	}{
		{"one 1-D output", []workerproto.Tensor{workerproto.NewInt64("predictions", nil, []int64{0, 1})}, `{"predictions":[0,1]}`},
		{"one 2-D output", []workerproto.Tensor{workerproto.NewFloat32("probabilities", []int64{2, 2}, []float32{0.9, 0.1, 0.25, 0.75})}, `{"predictions":[[0.9,0.1],[0.25,0.75]]}`},
		{"one scalar", []workerproto.Tensor{workerproto.NewFloat64("score", []int64{}, []float64{0.5})}, `{"predictions":0.5}`},
		{"empty rows", []workerproto.Tensor{workerproto.NewFloat64("score", []int64{2, 0}, nil)}, `{"predictions":[[],[]]}`},
		{"a DataFrame", []workerproto.Tensor{
			workerproto.NewInt64("prediction", nil, []int64{0, 1}),
			workerproto.NewBytes("label", nil, []string{"stay", "churn"}),
		}, `{"predictions":[{"prediction":0,"label":"stay"},{"prediction":1,"label":"churn"}]}`},
		{"outputs of different shapes", []workerproto.Tensor{
			workerproto.NewFloat32("probabilities", []int64{1, 2}, []float32{0.5, 0.5}),
			workerproto.NewInt64("label", nil, []int64{1}),
		}, `{"predictions":{"probabilities":[[0.5,0.5]],"label":[1]}}`},
		{"1-D outputs of different lengths", []workerproto.Tensor{
			workerproto.NewInt64("a", nil, []int64{1}),
			workerproto.NewInt64("b", nil, []int64{1, 2}),
		}, `{"predictions":{"a":[1],"b":[1,2]}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := EncodeMLflowResponse(tt.outputs)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.want {
				t.Fatalf("got  %s\nwant %s", b, tt.want)
			}
		})
	}
	_, err := EncodeMLflowResponse(nil)
	wantInvalid(t, err, "the model returned no outputs")
}

func TestEncodeMLflowResponseBoundsEmptyLists(t *testing.T) {
	_, err := EncodeMLflowResponse([]workerproto.Tensor{{Name: "x", Datatype: "FP32", Shape: []int64{1 << 40, 0}, Data: []byte{}}})
	wantInvalid(t, err, `model output "x" of shape [1099511627776 0] would be 1099511627777 nested lists`)
}

// A request with two input formats is refused for that, even when the first one is itself invalid (MLflow's
// test_scoring_server_responds_to_invalid_json_format_with_error_code_and_message).
func TestMLflowTwoFormatsNamedBeforeTheirContents(t *testing.T) {
	for _, body := range []string{
		`{"dataframe_records": [], "dataframe_split": {"data": []}}`,
		`{"dataframe_split": {"data": [[1]], "index": [1, 2]}, "inputs": [1]}`,
	} {
		_, err := DecodeMLflowJSON([]byte(body), nil)
		if err == nil || !strings.Contains(err.Error(), "send only one of") {
			t.Errorf("%s: %v, want the two formats named", body, err)
		}
	}
}
