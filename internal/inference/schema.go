package inference

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/workerproto"
)

// schemaDtype maps a schema column's dtype to a datatype, or workerproto.NoDatatype. It takes the numpy names of the
// schema (float64, int32, bool, string...), MLflow's names (double, float, long, integer, boolean, binary,
// datetime) and OIP names (FP32...). Datetimes travel as strings.
func schemaDtype(name string) workerproto.Datatype {
	// A schema's dtypes are nearly always lower case already: ToLower would scan each one per column per
	// request.
	if dt := lowerSchemaDtype(name); dt != workerproto.NoDatatype {
		return dt
	}
	if lower := strings.ToLower(name); lower != name {
		if dt := lowerSchemaDtype(lower); dt != workerproto.NoDatatype {
			return dt
		}
	}
	return workerproto.ParseDatatype(name)
}

// lowerSchemaDtype is schemaDtype for a lower-case numpy or MLflow name, NoDatatype for any other.
func lowerSchemaDtype(name string) workerproto.Datatype {
	switch name {
	case "float64", "double":
		return workerproto.FP64
	case "float32", "float":
		return workerproto.FP32
	case "float16", "half":
		return workerproto.FP16
	case "int64", "long", "int":
		return workerproto.INT64
	case "int32", "integer":
		return workerproto.INT32
	case "int16":
		return workerproto.INT16
	case "int8":
		return workerproto.INT8
	case "uint64":
		return workerproto.UINT64
	case "uint32":
		return workerproto.UINT32
	case "uint16":
		return workerproto.UINT16
	case "uint8":
		return workerproto.UINT8
	case "bool", "boolean":
		return workerproto.BOOL
	case "string", "str", "object", "binary", "bytes", "datetime":
		return workerproto.BYTES
	}
	return workerproto.NoDatatype
}

// compatible reports whether a tensor of datatype got may carry values of a schema column of datatype
// want: floats take any number, integers take integers, bool and string only themselves.
func compatible(want, got workerproto.Datatype) bool {
	switch {
	case want.IsFloat():
		return got.IsFloat() || got.IsInt()
	case want.IsInt():
		return got.IsInt()
	}
	return want == got
}

// ValidateSchema checks a frame against an input schema: every schema column is present (by name) with a
// compatible datatype and shape, no other column is, and every value is in the column's allowed values
// and within its min/max. A column without a shape in the schema holds one value per row ([N], or
// [N, 1]); with a shape, fixed dimensions must match (-1 is any). NaN passes min/max (it is a missing
// value). A nil or empty schema accepts anything.
func ValidateSchema(cols []workerproto.Tensor, schema *slipway.Schema) error {
	if schema == nil || len(schema.Columns) == 0 {
		return nil
	}
	for i := range cols {
		if !hasColumn(schema, cols[i].Name, i) {
			return invalid("", "unknown feature %q (the input schema has %s)", cols[i].Name, quoteList(specNames(schema)))
		}
	}
	for i := range schema.Columns {
		sc := &schema.Columns[i]
		j := indexAt(cols, sc.Name, i)
		if j < 0 {
			return invalid("", "missing feature %q (the input schema has %s)", sc.Name, quoteList(specNames(schema)))
		}
		if err := validateColumn(&cols[j], sc); err != nil {
			return err
		}
	}
	return nil
}

// hasColumn reports whether the schema has a column called name, trying position hint first (see indexAt).
func hasColumn(schema *slipway.Schema, name string, hint int) bool {
	if hint < len(schema.Columns) && schema.Columns[hint].Name == name {
		return true
	}
	for _, c := range schema.Columns {
		if c.Name == name {
			return true
		}
	}
	return false
}

func specNames(schema *slipway.Schema) []string {
	out := make([]string, len(schema.Columns))
	for i, c := range schema.Columns {
		out[i] = c.Name
	}
	return out
}

func validateColumn(t *workerproto.Tensor, sc *slipway.ColumnSpec) error {
	want := schemaDtype(sc.Dtype)
	if want == workerproto.NoDatatype {
		return invalid("", "the input schema's feature %q has unsupported dtype %q", sc.Name, sc.Dtype)
	}
	got, err := checkTensor(t, "feature")
	if err != nil {
		return err
	}
	if !compatible(want, got) {
		return invalid("", "feature %q is %s, the input schema wants %s", sc.Name, got, sc.Dtype)
	}
	if err := checkSchemaShape(t.Shape, sc); err != nil {
		return err
	}
	if len(sc.Allowed) == 0 && sc.Min == nil && sc.Max == nil {
		return nil
	}
	n := elemCount(t, got)
	perRow := 1
	if len(t.Shape) > 0 && t.Shape[0] > 0 {
		perRow = n / int(t.Shape[0])
	}
	at := func(i int) string {
		if perRow == 1 {
			return fmt.Sprintf("feature %q row %d", sc.Name, i)
		}
		return fmt.Sprintf("feature %q row %d element %d", sc.Name, i/perRow, i%perRow)
	}
	if got == workerproto.BYTES {
		if len(sc.Allowed) == 0 {
			return nil
		}
		allowed := make(map[string]bool, len(sc.Allowed))
		for _, a := range sc.Allowed {
			if s, ok := a.(string); ok {
				allowed[s] = true
			}
		}
		for i, s := range t.Strings {
			if !allowed[string(s)] {
				return invalid(at(i), "%s is not an allowed value (allowed: %s)", quoteField(string(s)), formatAllowed(sc.Allowed))
			}
		}
		return nil
	}
	var allowed map[float64]bool
	if len(sc.Allowed) > 0 {
		allowed = make(map[float64]bool, len(sc.Allowed))
		for _, a := range sc.Allowed {
			if f, ok := allowedNumber(a); ok {
				allowed[f] = true
			}
		}
	}
	for i := range n {
		v := workerproto.ReadNumber(got, t.Data, i)
		f := v.Float64()
		switch {
		case allowed != nil && !allowed[f]:
			return invalid(at(i), "%s is not an allowed value (allowed: %s)", v, formatAllowed(sc.Allowed))
		case sc.Min != nil && f < *sc.Min:
			return invalid(at(i), "%s is below the minimum %s", v, strconv.FormatFloat(*sc.Min, 'g', -1, 64))
		case sc.Max != nil && f > *sc.Max:
			return invalid(at(i), "%s is above the maximum %s", v, strconv.FormatFloat(*sc.Max, 'g', -1, 64))
		}
	}
	return nil
}

// allowedNumber reads a numeric allowed value as decoded from JSON (float64 or json.Number) or set in Go.
func allowedNumber(a any) (float64, bool) {
	switch x := a.(type) {
	case float64:
		return x, true
	case float32:
		return float64(x), true
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	case bool:
		if x {
			return 1, true
		}
		return 0, true
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	}
	return 0, false
}

// formatAllowed formats a column's allowed values for error messages (strings quoted), eliding after 10.
func formatAllowed(vals []any) string {
	return listFor(vals, 10, func(b *strings.Builder, v any) {
		if s, ok := v.(string); ok {
			fmt.Fprintf(b, "%q", s)
		} else {
			fmt.Fprint(b, v)
		}
	})
}

// checkSchemaShape checks a column's shape against the schema's: one value per row without a schema
// shape, else the same rank and fixed dims.
func checkSchemaShape(shape []int64, sc *slipway.ColumnSpec) error {
	if sc.Shape == nil {
		if len(shape) == 1 || len(shape) == 2 && shape[1] == 1 {
			return nil
		}
		return invalid("", "feature %q has shape %v; the input schema wants one value per row (shape [N])", sc.Name, shape)
	}
	if !shapeMatches(shape, sc.Shape) {
		return invalid("", "feature %q has shape %v; the input schema wants %v (-1: any size)", sc.Name, shape, sc.Shape)
	}
	return nil
}

// shapeMatches reports whether shape fits a declared shape (negative dims match anything).
func shapeMatches(shape, declared []int64) bool {
	if len(shape) != len(declared) {
		return false
	}
	for i, d := range declared {
		if d >= 0 && shape[i] != d {
			return false
		}
	}
	return true
}
