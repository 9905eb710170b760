package inference

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/slipway-ml/slipway"
)

// fastSchemas are the schemas the fast path's equivalence tests decode with (selected by a fuzzed byte).
var fastSchemas = []*slipway.Schema{
	nil,
	churnSchemaFull,
	wideSchema,
	{Columns: []slipway.ColumnSpec{{Name: "a", Dtype: "float64"}, {Name: "b", Dtype: "int32"}}},
	{Columns: []slipway.ColumnSpec{{Name: "a", Dtype: "FLOAT32"}, {Name: "b", Dtype: "Bool"}, {Name: "c", Dtype: "string"}}},
	{Columns: []slipway.ColumnSpec{{Name: "a", Dtype: "float64"}, {Name: "a", Dtype: "int64"}}},   // a repeated name
	{Columns: []slipway.ColumnSpec{{Name: "a", Dtype: "float64"}, {Name: "b", Dtype: "complex"}}}, // an unknown dtype
	{Columns: []slipway.ColumnSpec{{Name: "a", Dtype: "uint8"}, {Name: "b", Dtype: "float16"}}},
	{},
}

// checkFastEqualsGeneral fails when the fast path answers body differently from the general decoder; it
// reports whether the fast path answered.
func checkFastEqualsGeneral(t *testing.T, body []byte, schema *slipway.Schema) bool {
	t.Helper()
	fast, ok := decodeSplitFast(body, schema)
	general, err := decodeMLflowGeneral(body, schema)
	if !ok {
		return false
	}
	if err != nil {
		t.Fatalf("the fast path decoded %q, the general decoder refused it: %v", body, err)
	}
	if fast.Tabular != general.Tabular || !reflect.DeepEqual(fast.Params, general.Params) {
		t.Fatalf("%q: fast path tabular=%v params=%v, general %v %v", body, fast.Tabular, fast.Params, general.Tabular, general.Params)
	}
	if len(fast.Columns) != len(general.Columns) {
		t.Fatalf("%q: fast path %d columns, general %d", body, len(fast.Columns), len(general.Columns))
	}
	for i := range fast.Columns {
		f, g := fast.Columns[i], general.Columns[i]
		if f.Name != g.Name || f.Datatype != g.Datatype || !reflect.DeepEqual(f.Shape, g.Shape) ||
			!bytes.Equal(f.Data, g.Data) || (f.Data == nil) != (g.Data == nil) || !reflect.DeepEqual(f.Strings, g.Strings) {
			t.Fatalf("%q column %d: fast path %+v, general %+v", body, i, f, g)
		}
		if err := f.Validate(); err != nil {
			t.Fatalf("%q: the fast path built an invalid tensor: %v", body, err)
		}
	}
	return true
}

var fastSeeds = []string{
	`{"dataframe_split": {"columns": ["a", "b"], "data": [[1.5, 2], [3, 4]]}}`,
	`{"dataframe_split": {"columns": ["a", "b"], "data": [[1.5, 2], [3, 4]], "index": [0, 1]}}`,
	`{"dataframe_split": {"index": [7], "columns": ["a", "b"], "data": [[null, 2]]}}`,
	`{"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2]], "index": [0, 1]}}`,
	`{"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2]], "index": null}}`,
	`{"dataframe_split": {"columns": ["a", "b", "c"], "data": [["NaN", true, "x"], ["-inf", false, "y\n"]]}}`,
	`{"dataframe_split": {"columns": ["a", "b", "c"], "data": [[1e400, 1, "\u00e9"]]}}`,
	`{"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2]]}, "params": {"k": 1}}`,
	`{"dataframe_split": {"columns": ["a", "a"], "data": [[1, 2]]}}`,
	`{"dataframe_split": {"columns": ["b", "a"], "data": [[1, 2]]}}`,
	`{"dataframe_split": {"data": [[1, 2]], "columns": ["a", "b"]}}`,
	`{"dataframe_split": {"columns": ["a", "b"], "data": [[1, [2]]]}}`,
	`{"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2, 3]]}}`,
	`{"dataframe_split": {"columns": ["a", "b"], "data": []}}`,
	`{"dataframe_split": {"columns": [], "data": [[]]}}`,
	`{"dataframe_split": {"columns": ["a", "b"], "data": [[18446744073709551616, -1]]}}`,
	`{"dataframe_split": {"columns": ["a", "b"], "data": [[300, 0.1]]}}`,
	`{"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2]]}} x`,
	`{"dataframe_split": {"columns": ["\u0061", "b"], "data": [[1, 2]]}}`,
	`{"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2]]}, "dataframe_split": {}}`,
	`{"dataframe_split": {"columns": ["", "b"], "data": [[1, 2]]}}`,
	`{"dataframe_split": {"columns": [1, "b"], "data": [[1, 2]]}}`,
	` { "dataframe_split" : { "columns" : [ "a" , "b" ] , "data" : [ [ -0.0 , 2E3 ] ] } } `,
}

func FuzzDecodeMLflowSplitFast(f *testing.F) {
	for _, s := range fastSeeds {
		for i := range fastSchemas {
			f.Add([]byte(s), uint8(i))
		}
	}
	f.Add(wideBenchBody(), uint8(2))
	f.Add(splitBenchBody(3), uint8(1))
	f.Fuzz(func(t *testing.T, body []byte, which uint8) {
		checkFastEqualsGeneral(t, body, fastSchemas[int(which)%len(fastSchemas)])
	})
}

// TestDecodeSplitFastAnswers: the usual requests take the fast path (the point of it) and decode as the
// general decoder does.
func TestDecodeSplitFastAnswers(t *testing.T) {
	for _, c := range []struct {
		body   []byte
		schema *slipway.Schema
	}{
		{wideBenchBody(), wideSchema},
		{wideBenchBody(), nil},
		{splitBenchBody(1), churnSchemaFull},
		{splitBenchBody(100), churnSchemaFull},
		{splitBenchBody(100), nil},
		{[]byte(fastSeeds[1]), nil},
		{[]byte(fastSeeds[2]), fastSchemas[3]},
		{[]byte(fastSeeds[5]), fastSchemas[4]},
		{[]byte(fastSeeds[22]), nil},
	} {
		if !checkFastEqualsGeneral(t, c.body, c.schema) {
			t.Errorf("the fast path declined %.80q", c.body)
		}
	}
}

// TestDecodeSplitFastDeclines: requests the fast path must leave to the general decoder, which answers them
// (with the errors its tests check) as before.
func TestDecodeSplitFastDeclines(t *testing.T) {
	for _, c := range []struct {
		body    string
		schema  *slipway.Schema
		wantErr string // "" when the request is valid
	}{
		{fastSeeds[7], nil, ""},                              // params
		{fastSeeds[8], nil, `duplicate column "a"`},          // a repeated column name
		{fastSeeds[0], fastSchemas[5], `unknown column "b"`}, // a schema repeating a name
		{fastSeeds[8], fastSchemas[5], `duplicate column "a"`},
		{fastSeeds[9], fastSchemas[3], ""}, // columns out of schema order
		{fastSeeds[10], nil, ""},           // data before columns
		{fastSeeds[11], nil, ""},           // a tensor cell
		{fastSeeds[12], nil, "expected 2 values"},
		{fastSeeds[3], nil, "has 2 entries for 1 rows"},
		{fastSeeds[13], nil, "empty"},
		{fastSeeds[18], nil, ""}, // an escaped name
		{fastSeeds[19], nil, "send only one of"},
		{fastSeeds[20], nil, "empty name"},
		{fastSeeds[0], fastSchemas[6], "unsupported dtype"},
		{fastSeeds[16], fastSchemas[7], "out of range"},
		{`{"dataframe_split": {"columns": ["a", "b"], "data": [[1, "x"]]}}`, fastSchemas[3], "expected an integer"},
	} {
		if _, ok := decodeSplitFast([]byte(c.body), c.schema); ok {
			t.Errorf("the fast path answered %s", c.body)
		}
		_, err := DecodeMLflowJSON([]byte(c.body), c.schema)
		switch {
		case c.wantErr == "" && err != nil:
			t.Errorf("%s: %v", c.body, err)
		case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
			t.Errorf("%s: got error %v, want one with %q", c.body, err, c.wantErr)
		}
	}
}

// TestDistinct checks the fast path's duplicate test on both of its sides (table and map).
func TestDistinct(t *testing.T) {
	for _, n := range []int{1, 2, 30, 128, 129, 1000} {
		names := make([]string, n)
		for i := range names {
			names[i] = fmt.Sprintf("c%d", i)
		}
		at := func(i int) string { return names[i] }
		if !distinct(n, at) {
			t.Errorf("%d distinct names reported as repeating", n)
		}
		if n > 1 {
			names[n-1] = names[(n-1)/2]
			if distinct(n, at) {
				t.Errorf("%d names with a repeat reported as distinct", n)
			}
		}
	}
}
