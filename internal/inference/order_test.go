package inference

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/workerproto"
)

// The name lookups of the request path try the column's position first (indexAt, hasColumn, mlDecoder.spec
// and findAt): these tests hold them to the answers of a plain scan, in and out of order, on every MLflow
// input form, on mixed dtypes and strings, and on the errors.

// mixedSchema has the dtypes of a real table: floats, a string, ints, a bool.
var mixedSchema = &slipway.Schema{Columns: []slipway.ColumnSpec{
	{Name: "age", Dtype: "float64", Min: f64p(0)}, {Name: "plan", Dtype: "string", Allowed: []any{"basic", "pro"}},
	{Name: "calls", Dtype: "int32"}, {Name: "churned", Dtype: "bool"}, {Name: "charges", Dtype: "float32"},
}}

var mixedRow = map[string]string{"age": "41.5", "plan": `"pro"`, "calls": "3", "churned": "true", "charges": "19.99"}

// orders are the column orders tried: the schema's, reversed, rotated by one, and two swapped.
func orders(names []string) [][]string {
	rev := slices.Clone(names)
	slices.Reverse(rev)
	rot := append(slices.Clone(names[1:]), names[0])
	swap := slices.Clone(names)
	swap[1], swap[len(swap)-1] = swap[len(swap)-1], swap[1]
	return [][]string{names, rev, rot, swap}
}

// bodies writes one row in every MLflow form that names its columns, with the columns in order.
func bodies(order []string, value func(string) string) map[string]string {
	var cols, vals, obj, lists []string
	for _, n := range order {
		cols = append(cols, fmt.Sprintf("%q", n))
		vals = append(vals, value(n))
		obj = append(obj, fmt.Sprintf("%q: %s", n, value(n)))
		lists = append(lists, fmt.Sprintf("%q: [%s]", n, value(n)))
	}
	return map[string]string{
		"dataframe_split":   fmt.Sprintf(`{"dataframe_split": {"columns": [%s], "data": [[%s]]}}`, strings.Join(cols, ", "), strings.Join(vals, ", ")),
		"dataframe_records": fmt.Sprintf(`{"dataframe_records": [{%s}]}`, strings.Join(obj, ", ")),
		"instances":         fmt.Sprintf(`{"instances": [{%s}]}`, strings.Join(obj, ", ")),
		"inputs":            fmt.Sprintf(`{"inputs": {%s}}`, strings.Join(lists, ", ")),
	}
}

func specNamesOf(s *slipway.Schema) []string { return specNames(s) }

func TestDecodeAnyColumnOrderMatchesSchemaOrder(t *testing.T) {
	wide := func(string) string { return "1.25" }
	for _, tc := range []struct {
		schema *slipway.Schema
		value  func(string) string
	}{{wideSchema, wide}, {mixedSchema, func(n string) string { return mixedRow[n] }}} {
		names := specNamesOf(tc.schema)
		want := map[string]string{}
		for i, order := range orders(names) {
			for form, body := range bodies(order, tc.value) {
				req, err := DecodeMLflowJSON([]byte(body), tc.schema)
				if err == nil {
					err = ValidateSchema(req.Columns, tc.schema)
				}
				if err != nil {
					t.Fatalf("%s, order %v: %v", form, order, err)
				}
				got := dumpFrame(req.Columns)
				if i == 0 {
					want[form] = got
					if n := len(req.Columns); n != len(names) {
						t.Fatalf("%s: %d columns, want %d", form, n, len(names))
					}
					for j := range req.Columns {
						if req.Columns[j].Name != names[j] {
							t.Fatalf("%s: column %d is %q, want the schema's %q", form, j, req.Columns[j].Name, names[j])
						}
					}
					continue
				}
				if got != want[form] {
					t.Fatalf("%s, order %v:\n%s\nwant (schema order)\n%s", form, order, got, want[form])
				}
			}
		}
	}
}

// TestDecodeOrderErrors: the errors of a request whose columns start in the schema's order and then go wrong,
// where the position tried first matches and must not hide the problem.
func TestDecodeOrderErrors(t *testing.T) {
	dupSchema := &slipway.Schema{Columns: []slipway.ColumnSpec{
		{Name: "a", Dtype: "float64"}, {Name: "b", Dtype: "int64"}, {Name: "a", Dtype: "string"},
	}}
	tests := []struct {
		name   string
		schema *slipway.Schema
		body   string
		want   string // error, or the frame when it decodes
	}{
		{"duplicate at the schema's position", mixedSchema,
			`{"dataframe_split": {"columns": ["age", "plan", "plan"], "data": [[1, "pro", "pro"]]}}`,
			`dataframe_split.columns[2]: duplicate column "plan"`},
		{"unknown after matching ones", mixedSchema,
			`{"dataframe_split": {"columns": ["age", "plan", "zzz"], "data": [[1, "pro", 2]]}}`,
			`dataframe_split.columns[2]: unknown column "zzz" (the input schema has "age", "plan", "calls", "churned", "charges")`},
		{"missing at the end", mixedSchema,
			`{"dataframe_split": {"columns": ["age", "plan", "calls", "churned"], "data": [[1, "pro", 2, false]]}}`,
			`dataframe_split.columns: missing column "charges" (the input schema has "age", "plan", "calls", "churned", "charges")`},
		{"records duplicate key", mixedSchema,
			`{"dataframe_records": [{"age": 1, "plan": "pro", "age": 2}]}`,
			`dataframe_records[0]: duplicate column "age"`},
		{"wrong dtype at its position", mixedSchema,
			`{"dataframe_split": {"columns": ["age", "plan", "calls", "churned", "charges"], "data": [[1, 2, 3, true, 1]]}}`,
			`dataframe_split.data[0][1]: expected a string for column "plan", got number 2`},
		// A schema that repeats a name: the first column of that name types it, in any order.
		{"schema repeating a name, in order", dupSchema,
			`{"dataframe_split": {"columns": ["a", "b"], "data": [[1.5, 2]]}}`,
			"a FP64 [1]: 1.5\nb INT64 [1]: 2\na FP64 [1]: 1.5\n"},
		{"schema repeating a name, reversed", dupSchema,
			`{"dataframe_split": {"columns": ["b", "a"], "data": [[2, 1.5]]}}`,
			"a FP64 [1]: 1.5\nb INT64 [1]: 2\na FP64 [1]: 1.5\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := DecodeMLflowJSON([]byte(tc.body), tc.schema)
			got := ""
			if err != nil {
				got = err.Error()
			} else {
				got = dumpFrame(req.Columns)
			}
			if !strings.Contains(got, tc.want) {
				t.Fatalf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

func TestValidateSchemaAnyOrder(t *testing.T) {
	req, err := DecodeMLflowJSON([]byte(bodies(specNamesOf(mixedSchema), func(n string) string { return mixedRow[n] })["dataframe_split"]), mixedSchema)
	if err != nil {
		t.Fatal(err)
	}
	cols := req.Columns
	for _, order := range orders([]string{"age", "plan", "calls", "churned", "charges"}) {
		frame := make([]workerproto.Tensor, len(order))
		for i, n := range order {
			frame[i] = cols[indexOf(cols, n)]
		}
		if err := ValidateSchema(frame, mixedSchema); err != nil {
			t.Fatalf("order %v: %v", order, err)
		}
		bad := slices.Clone(frame)
		bad[indexOf(bad, "plan")] = workerproto.NewBytes("plan", []int64{1}, []string{"gold"})
		err := ValidateSchema(bad, mixedSchema)
		if err == nil || !strings.Contains(err.Error(), `"gold" is not an allowed value`) {
			t.Fatalf("order %v: %v", order, err)
		}
		unknown := slices.Clone(frame)
		unknown[len(unknown)-1].Name = "zzz"
		err = ValidateSchema(unknown, mixedSchema)
		if err == nil || !strings.Contains(err.Error(), `unknown feature "zzz"`) {
			t.Fatalf("order %v: %v", order, err)
		}
	}
}

// concatByScan is Concat's merge written with plain scans: the reference for frames in any column order.
func concatByScan(frames [][]workerproto.Tensor) []workerproto.Tensor {
	var out []workerproto.Tensor
	for _, f := range frames[0] {
		var rows int64
		var data []byte
		var strs [][]byte
		for _, fr := range frames {
			for _, c := range fr {
				if c.Name == f.Name {
					rows += c.Shape[0]
					data = append(data, c.Data...)
					strs = append(strs, c.Strings...)
				}
			}
		}
		t := workerproto.Tensor{Name: f.Name, Datatype: f.Datatype, Shape: append([]int64{rows}, f.Shape[1:]...)}
		if f.Datatype == "BYTES" {
			t.Strings = strs
		} else {
			t.Data = data
		}
		out = append(out, t)
	}
	return out
}

func TestConcatAnyColumnOrder(t *testing.T) {
	names := specNamesOf(mixedSchema)
	var frames [][]workerproto.Tensor
	for i, order := range orders(names) {
		var vals []string
		for _, n := range order {
			v := mixedRow[n]
			if n == "calls" {
				v = fmt.Sprint(i) // tells the frames apart
			}
			vals = append(vals, v)
		}
		body := fmt.Sprintf(`{"dataframe_split": {"columns": ["%s"], "data": [[%s]]}}`, strings.Join(order, `", "`), strings.Join(vals, ", "))
		req, err := DecodeMLflowJSON([]byte(body), nil) // no schema: the frame keeps the body's order
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, req.Columns)
	}
	for _, fs := range [][][]workerproto.Tensor{frames, {frames[1], frames[0], frames[2]}, {frames[0], frames[0]}} {
		got, rows, err := Concat(fs)
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != len(fs) {
			t.Fatalf("rows %v", rows)
		}
		if g, w := dumpFrame(got), dumpFrame(concatByScan(fs)); g != w {
			t.Fatalf("Concat\n%s\nwant\n%s", g, w)
		}
	}
	_, _, err := Concat([][]workerproto.Tensor{frames[0], frames[1][:4]})
	if err == nil || !strings.Contains(err.Error(), "frame 1 has 4 columns, frame 0 has 5") {
		t.Fatalf("err = %v", err)
	}
	renamed := slices.Clone(frames[2])
	renamed[0].Name = "zzz"
	_, _, err = Concat([][]workerproto.Tensor{frames[0], renamed})
	if err == nil || !strings.Contains(err.Error(), `frame 1 has column "zzz", frame 0 does not`) {
		t.Fatalf("err = %v", err)
	}
}

// TestDecodedColumnsDoNotShareCapacity: a request's numeric columns are cut from one block and their shapes
// from each column's room; appending to one must not write into its neighbour.
func TestDecodedColumnsDoNotShareCapacity(t *testing.T) {
	for form, body := range bodies(specNamesOf(mixedSchema), func(n string) string { return mixedRow[n] }) {
		req, err := DecodeMLflowJSON([]byte(body), mixedSchema)
		if err != nil {
			t.Fatal(err)
		}
		want := dumpFrame(req.Columns)
		for i := range req.Columns {
			_ = append(req.Columns[i].Data, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
			_ = append(req.Columns[i].Shape, 7, 7)
		}
		if got := dumpFrame(req.Columns); got != want {
			t.Fatalf("%s: after appends\n%s\nwant\n%s", form, got, want)
		}
	}
}
