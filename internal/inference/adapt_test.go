package inference

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"testing"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/workerproto"
)

func boolTensor(name string, v ...bool) workerproto.Tensor {
	b := make([]byte, len(v))
	for i, x := range v {
		if x {
			b[i] = 1
		}
	}
	return workerproto.Tensor{Name: name, Datatype: "BOOL", Shape: []int64{int64(len(v))}, Data: b}
}

func int32Tensor(name string, shape []int64, v ...int32) workerproto.Tensor {
	var b []byte
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, uint32(x))
	}
	if shape == nil {
		shape = []int64{int64(len(v))}
	}
	return workerproto.Tensor{Name: name, Datatype: "INT32", Shape: shape, Data: b}
}

func TestValidateSchema(t *testing.T) {
	schema := &slipway.Schema{Columns: []slipway.ColumnSpec{
		{Name: "age", Dtype: "float64", Min: f64p(0), Max: f64p(120)},
		{Name: "plan", Dtype: "string", Allowed: []any{"basic", "pro"}},
		{Name: "calls", Dtype: "int64", Allowed: []any{0.0, 1.0, json.Number("2")}},
	}}
	good := func() []workerproto.Tensor {
		return []workerproto.Tensor{
			workerproto.NewFloat64("age", nil, []float64{41, math.NaN()}),
			workerproto.NewBytes("plan", nil, []string{"pro", "basic"}),
			workerproto.NewInt64("calls", nil, []int64{0, 2}),
		}
	}
	tests := []struct {
		name   string
		schema *slipway.Schema
		edit   func([]workerproto.Tensor) []workerproto.Tensor
		want   string
	}{
		{"valid", schema, nil, ""},
		{"nil schema", nil, func(ts []workerproto.Tensor) []workerproto.Tensor { return ts[:1] }, ""},
		{"ints for floats", schema, func(ts []workerproto.Tensor) []workerproto.Tensor {
			ts[0] = int32Tensor("age", []int64{2, 1}, 1, 2)
			return ts
		}, ""},
		{"missing", schema, func(ts []workerproto.Tensor) []workerproto.Tensor { return ts[:2] }, `missing feature "calls" (the input schema has "age", "plan", "calls")`},
		{"unknown", schema, func(ts []workerproto.Tensor) []workerproto.Tensor {
			return append(ts, workerproto.NewInt64("zip", nil, []int64{1, 2}))
		}, `unknown feature "zip" (the input schema has "age", "plan", "calls")`},
		{"string for number", schema, func(ts []workerproto.Tensor) []workerproto.Tensor {
			ts[0] = workerproto.NewBytes("age", nil, []string{"1", "2"})
			return ts
		}, `feature "age" is BYTES, the input schema wants float64`},
		{"float for int", schema, func(ts []workerproto.Tensor) []workerproto.Tensor {
			ts[2] = workerproto.NewFloat32("calls", nil, []float32{0, 1})
			return ts
		}, `feature "calls" is FP32, the input schema wants int64`},
		{"not one value per row", schema, func(ts []workerproto.Tensor) []workerproto.Tensor {
			ts[0] = workerproto.NewFloat64("age", []int64{1, 2}, []float64{1, 2})
			return ts
		}, `feature "age" has shape [1 2]; the input schema wants one value per row (shape [N])`},
		{"below min", schema, func(ts []workerproto.Tensor) []workerproto.Tensor {
			ts[0] = workerproto.NewFloat64("age", nil, []float64{3, -0.5})
			return ts
		}, `feature "age" row 1: -0.5 is below the minimum 0`},
		{"above max", schema, func(ts []workerproto.Tensor) []workerproto.Tensor {
			ts[0] = workerproto.NewFloat64("age", nil, []float64{121, 0})
			return ts
		}, `feature "age" row 0: 121 is above the maximum 120`},
		{"string not allowed", schema, func(ts []workerproto.Tensor) []workerproto.Tensor {
			ts[1] = workerproto.NewBytes("plan", nil, []string{"pro", "gold"})
			return ts
		}, `feature "plan" row 1: "gold" is not an allowed value (allowed: "basic", "pro")`},
		{"number not allowed", schema, func(ts []workerproto.Tensor) []workerproto.Tensor {
			ts[2] = workerproto.NewInt64("calls", nil, []int64{2, 7})
			return ts
		}, `feature "calls" row 1: 7 is not an allowed value (allowed: 0, 1, 2)`},
		{"tensor feature", &slipway.Schema{Columns: []slipway.ColumnSpec{{Name: "features", Dtype: "float32", Shape: []int64{-1, 4}, Max: f64p(10)}}},
			func([]workerproto.Tensor) []workerproto.Tensor {
				return []workerproto.Tensor{workerproto.NewFloat32("features", []int64{2, 4}, []float32{1, 2, 3, 4, 5, 6, 70, 8})}
			}, `feature "features" row 1 element 2: 70 is above the maximum 10`},
		{"tensor feature shape", &slipway.Schema{Columns: []slipway.ColumnSpec{{Name: "features", Dtype: "float32", Shape: []int64{-1, 4}}}},
			func([]workerproto.Tensor) []workerproto.Tensor {
				return []workerproto.Tensor{workerproto.NewFloat32("features", []int64{1, 3}, []float32{1, 2, 3})}
			}, `feature "features" has shape [1 3]; the input schema wants [-1 4] (-1: any size)`},
		{"bool", &slipway.Schema{Columns: []slipway.ColumnSpec{{Name: "b", Dtype: "bool"}}},
			func([]workerproto.Tensor) []workerproto.Tensor {
				return []workerproto.Tensor{workerproto.NewInt64("b", nil, []int64{1})}
			},
			`feature "b" is INT64, the input schema wants bool`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cols := good()
			if tt.edit != nil {
				cols = tt.edit(cols)
			}
			err := ValidateSchema(cols, tt.schema)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantInvalid(t, err, tt.want)
		})
	}
}

func TestAdaptToModel(t *testing.T) {
	features := []workerproto.Column{{Name: "features", Datatype: "FP32", Shape: []int64{-1, 4}}}
	four := func() []workerproto.Tensor {
		return []workerproto.Tensor{
			workerproto.NewFloat64("age", nil, []float64{41, 33}),
			workerproto.NewInt64("tenure", nil, []int64{12, 4}),
			int32Tensor("charges", nil, 70, 63),
			boolTensor("vip", true, false),
		}
	}
	tests := []struct {
		name   string
		cols   []workerproto.Tensor
		inputs []workerproto.Column
		want   string // dumpFrame, or the error message when err
		err    bool
	}{
		{"no declared inputs", four(), nil,
			"age FP64 [2]: 41 33\ntenure INT64 [2]: 12 4\ncharges INT32 [2]: 70 63\nvip BOOL [2]: true false\n", false},
		{"stack columns in frame order", four(), features, "features FP32 [2 4]: 41 12 70 1 33 4 63 0\n", false},
		{"stack into any width", four()[:2], []workerproto.Column{{Name: "x", Datatype: "FP64", Shape: []int64{-1, -1}}}, "x FP64 [2 2]: 41 12 33 4\n", false},
		{"stack wrong count", four()[:3], features, `model input "features" takes 4 features per row (shape [-1 4]); the request has 3 columns ("age", "tenure", "charges")`, true},
		{"stack a string column", append(four()[:3], workerproto.NewBytes("plan", nil, []string{"a", "b"})), features, `column "plan" is BYTES; model input "features" takes FP32`, true},
		{"stack a 2-D column", append(four()[:3], workerproto.NewFloat64("x", []int64{2, 1}, []float64{1, 2})), features, `column "x" has shape [2 1]; to stack the columns into model input "features" each must have one value per row`, true},
		{"stack rows differ", append(four()[:3], workerproto.NewFloat64("x", nil, []float64{1})), features, `column "x" has 1 rows, column "age" has 2`, true},
		{"stack into an int input", []workerproto.Tensor{workerproto.NewFloat64("a", nil, []float64{1, 2.5})}[:1], []workerproto.Column{{Name: "x", Datatype: "INT64", Shape: []int64{-1, 2}}},
			`column "a" has shape [2]; model input "x" takes [-1 2] (-1: any size)`, true},
		{"stack fraction into int", []workerproto.Tensor{workerproto.NewFloat64("a", nil, []float64{1, 2.5}), workerproto.NewFloat64("b", nil, []float64{1, 2})},
			[]workerproto.Column{{Name: "x", Datatype: "INT64", Shape: []int64{-1, 2}}}, `column "a" row 1: 2.5 is not an integer, and model input "x" is INT64`, true},
		{"cast by name", []workerproto.Tensor{
			workerproto.NewInt64("b", nil, []int64{1, 300}),
			workerproto.NewFloat64("a", nil, []float64{0.5, 1e-50}),
		}, []workerproto.Column{{Name: "a", Datatype: "FP32"}, {Name: "b", Datatype: "INT16", Shape: []int64{-1}}},
			"a FP32 [2]: 0.5 0\nb INT16 [2]: 1 300\n", false},
		{"reshape to [N, 1]", []workerproto.Tensor{workerproto.NewInt64("a", nil, []int64{1, 2})},
			[]workerproto.Column{{Name: "a", Datatype: "INT64", Shape: []int64{-1, 1}}}, "a INT64 [2 1]: 1 2\n", false},
		{"reshape to [N]", []workerproto.Tensor{workerproto.NewInt64("a", []int64{2, 1}, []int64{1, 2})},
			[]workerproto.Column{{Name: "a", Datatype: "INT64", Shape: []int64{-1}}}, "a INT64 [2]: 1 2\n", false},
		{"rename a single tensor", []workerproto.Tensor{workerproto.NewFloat64("input", []int64{1, 4}, []float64{1, 2, 3, 4})},
			features, "features FP32 [1 4]: 1 2 3 4\n", false},
		{"rename with wrong shape", []workerproto.Tensor{workerproto.NewFloat64("input", []int64{1, 3}, []float64{1, 2, 3})},
			features, `column "input" has shape [1 3]; model input "features" takes [-1 4] (-1: any size)`, true},
		{"int overflow", []workerproto.Tensor{workerproto.NewInt64("a", nil, []int64{1, 1 << 40})},
			[]workerproto.Column{{Name: "a", Datatype: "INT32"}}, `column "a" row 1: 1099511627776 does not fit INT32 (model input "a")`, true},
		{"negative to unsigned", []workerproto.Tensor{workerproto.NewInt64("a", []int64{1, 2}, []int64{1, -1})},
			[]workerproto.Column{{Name: "a", Datatype: "UINT8"}}, `column "a" row 0 element 1: -1 does not fit UINT8 (model input "a")`, true},
		{"fp32 overflow", []workerproto.Tensor{workerproto.NewFloat64("a", nil, []float64{1e39})},
			[]workerproto.Column{{Name: "a", Datatype: "FP32"}}, `column "a" row 0: 1e+39 does not fit FP32 (model input "a")`, true},
		{"nan to int", []workerproto.Tensor{workerproto.NewFloat64("a", nil, []float64{math.NaN()})},
			[]workerproto.Column{{Name: "a", Datatype: "INT64"}}, `column "a" row 0: NaN is not an integer, and model input "a" is INT64`, true},
		{"string to number", []workerproto.Tensor{workerproto.NewBytes("a", nil, []string{"1"})},
			[]workerproto.Column{{Name: "a", Datatype: "FP32"}}, `column "a" is BYTES; model input "a" takes FP32`, true},
		{"bool to float and back", []workerproto.Tensor{boolTensor("a", true, false), workerproto.NewFloat64("b", nil, []float64{1, 0})},
			[]workerproto.Column{{Name: "a", Datatype: "FP16"}, {Name: "b", Datatype: "BOOL"}}, "a FP16 [2]: 1 0\nb BOOL [2]: true false\n", false},
		{"extra column", four(), []workerproto.Column{{Name: "age", Datatype: "FP64"}}, `column "tenure" is not an input of the model, which takes "age" (FP64)`, true},
		{"missing input", four()[:1], []workerproto.Column{{Name: "age", Datatype: "FP64"}, {Name: "x", Datatype: "FP64"}},
			`missing model input "x": the model takes "age" (FP64), "x" (FP64); the request has "age"`, true},
		{"several columns for a 1-D input", four(), []workerproto.Column{{Name: "x", Datatype: "FP32", Shape: []int64{-1}}},
			`missing model input "x": the model takes "x" (FP32 [-1]); the request has "age", "tenure", "charges", "vip"`, true},
		{"no columns", nil, features, `the request has no columns; the model takes "features" (FP32 [-1 4])`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := dumpFrame(tt.cols)
			got, err := AdaptToModel(tt.cols, tt.inputs)
			if tt.err {
				wantInvalid(t, err, tt.want)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s := dumpFrame(got); s != tt.want {
				t.Fatalf("got\n%s\nwant\n%s", s, tt.want)
			}
			if after := dumpFrame(tt.cols); after != before {
				t.Fatalf("the input frame changed:\n%s", after)
			}
		})
	}
}

func TestRowsConcatSplit(t *testing.T) {
	a := []workerproto.Tensor{
		workerproto.NewFloat32("x", []int64{1, 2}, []float32{1, 2}),
		workerproto.NewBytes("s", nil, []string{"a"}),
	}
	b := []workerproto.Tensor{
		workerproto.NewBytes("s", nil, []string{"b", "c"}),
		workerproto.NewFloat32("x", []int64{2, 2}, []float32{3, 4, 5, 6}),
	}
	if n, err := Rows(b); err != nil || n != 2 {
		t.Fatalf("Rows = %d, %v", n, err)
	}
	merged, rows, err := Concat([][]workerproto.Tensor{a, b})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := dumpFrame(merged), "x FP32 [3 2]: 1 2 3 4 5 6\ns BYTES [3]: \"a\" \"b\" \"c\"\n"; got != want {
		t.Fatalf("Concat\n%s\nwant\n%s", got, want)
	}
	if len(rows) != 2 || rows[0] != 1 || rows[1] != 2 {
		t.Fatalf("rows = %v", rows)
	}
	parts, err := Split(merged, rows)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := dumpFrame(parts[0]), dumpFrame(a); got != want {
		t.Fatalf("part 0\n%s\nwant\n%s", got, want)
	}
	if got, want := dumpFrame(parts[1]), "x FP32 [2 2]: 3 4 5 6\ns BYTES [2]: \"b\" \"c\"\n"; got != want {
		t.Fatalf("part 1\n%s\nwant\n%s", got, want)
	}
	// Appending to a part must not overwrite its neighbour.
	_ = append(parts[0][0].Data, 0xff)
	if parts[1][0].Data[0] != merged[0].Data[8] || merged[0].Data[8] == 0xff {
		t.Fatal("parts share capacity")
	}
	// Nor to a part's shape or its list of outputs (they are cut from blocks shared by the parts).
	_ = append(parts[0][0].Shape, 99)
	_ = append(parts[0], workerproto.Tensor{Name: "extra"})
	if got, want := dumpFrame(parts[1]), "x FP32 [2 2]: 3 4 5 6\ns BYTES [2]: \"b\" \"c\"\n"; got != want {
		t.Fatalf("part 1 after appends to part 0\n%s\nwant\n%s", got, want)
	}
	if single, rows, err := Concat([][]workerproto.Tensor{a}); err != nil || len(single) != 2 || rows[0] != 1 {
		t.Fatalf("single frame: %v %v", rows, err)
	}
}

func TestBatchErrors(t *testing.T) {
	x := func(rows int64) workerproto.Tensor {
		return workerproto.NewFloat32("x", []int64{rows}, make([]float32, rows))
	}
	tests := []struct {
		name string
		run  func() error
		want string
	}{
		{"rows of nothing", func() error { _, err := Rows(nil); return err }, "the request has no columns"},
		{"rows of a scalar", func() error {
			_, err := Rows([]workerproto.Tensor{workerproto.NewFloat32("s", []int64{}, []float32{1})})
			return err
		}, `column "s" is a scalar: it has no rows`},
		{"rows disagree", func() error {
			_, err := Rows([]workerproto.Tensor{x(2), workerproto.NewInt64("y", nil, []int64{1, 2, 3})})
			return err
		}, `column "y" has 3 rows, column "x" has 2`},
		{"concat nothing", func() error { _, _, err := Concat(nil); return err }, "no frames to concatenate"},
		{"concat other names", func() error {
			_, _, err := Concat([][]workerproto.Tensor{{x(1)}, {workerproto.NewFloat32("y", nil, []float32{1})}})
			return err
		}, `frame 1 has column "y", frame 0 does not`},
		{"concat other column count", func() error {
			_, _, err := Concat([][]workerproto.Tensor{{x(1)}, {x(1), workerproto.NewFloat32("y", nil, []float32{1})}})
			return err
		}, "frame 1 has 2 columns, frame 0 has 1"},
		{"concat other datatype", func() error {
			_, _, err := Concat([][]workerproto.Tensor{{x(1)}, {workerproto.NewFloat64("x", nil, []float64{1})}})
			return err
		}, "column \"x\" is FP64 [1] in frame 1 but FP32 [1] in frame 0"},
		{"concat other inner shape", func() error {
			_, _, err := Concat([][]workerproto.Tensor{{x(1)}, {workerproto.NewFloat32("x", []int64{1, 1}, []float32{1})}})
			return err
		}, "column \"x\" is FP32 [1 1] in frame 1 but FP32 [1] in frame 0"},
		{"concat rows disagree", func() error {
			_, _, err := Concat([][]workerproto.Tensor{{x(1)}, {x(1), workerproto.NewFloat32("y", nil, []float32{1, 2})}})
			return err
		}, `frame 1: column "y" has 2 rows, column "x" has 1`},
		{"split wrong rows", func() error { _, err := Split([]workerproto.Tensor{x(3)}, []int{1, 1}); return err },
			`model output "x" has shape [3]: its first dimension must be the 2 rows of the batch to split it between requests`},
		{"split a scalar", func() error {
			_, err := Split([]workerproto.Tensor{workerproto.NewFloat32("s", []int64{}, []float32{1})}, []int{1})
			return err
		}, `model output "s" has shape []: its first dimension must be the 1 rows of the batch to split it between requests`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantInvalid(t, tt.run(), tt.want) })
	}
}
