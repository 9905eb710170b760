package catalog

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"

	"github.com/slipway-ml/slipway"
)

// matchOutput checks a predict() result against the output schema. A result is either an object with one
// entry per output column (each a list, one element per row, or a nested list for tensors) or, for a
// single-column schema, the list itself.
func matchOutput(schema *slipway.Schema, out []byte) error {
	if schema == nil || len(schema.Columns) == 0 {
		return nil
	}
	var result any
	if err := json.Unmarshal(out, &result); err != nil {
		return fmt.Errorf("the result is not JSON: %v", err)
	}
	obj, isObj := result.(map[string]any)
	if !isObj {
		if len(schema.Columns) != 1 {
			return fmt.Errorf("expected an object with keys %s, got %s", columnNames(schema), kindOf(result))
		}
		return matchColumn(schema.Columns[0], result)
	}
	for _, c := range schema.Columns {
		v, ok := obj[c.Name]
		if !ok {
			return fmt.Errorf("output column %q is missing (result has keys %s)", c.Name, keysOf(obj))
		}
		if err := matchColumn(c, v); err != nil {
			return err
		}
	}
	return nil
}

func matchColumn(c slipway.ColumnSpec, v any) error {
	var leaves []any
	flatten(v, &leaves)
	for i, leaf := range leaves {
		if err := matchDtype(c.Dtype, leaf); err != nil {
			return fmt.Errorf("output column %q element %d: %v", c.Name, i, err)
		}
	}
	return nil
}

func flatten(v any, out *[]any) {
	if list, ok := v.([]any); ok {
		for _, e := range list {
			flatten(e, out)
		}
		return
	}
	*out = append(*out, v)
}

func matchDtype(dtype string, v any) error {
	switch {
	case strings.HasPrefix(dtype, "float"):
		if _, ok := v.(float64); !ok && v != nil { // null is NaN
			return fmt.Errorf("expected a number (%s), got %s", dtype, kindOf(v))
		}
	case strings.HasPrefix(dtype, "int"), strings.HasPrefix(dtype, "uint"):
		f, ok := v.(float64)
		if !ok || f != math.Trunc(f) {
			return fmt.Errorf("expected an integer (%s), got %s", dtype, kindOf(v))
		}
	case dtype == "bool":
		if _, ok := v.(bool); !ok {
			return fmt.Errorf("expected a boolean, got %s", kindOf(v))
		}
	case dtype == "string", dtype == "object":
		if _, ok := v.(string); !ok {
			return fmt.Errorf("expected a string, got %s", kindOf(v))
		}
	}
	return nil
}

func kindOf(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case float64:
		return fmt.Sprintf("number %v", x)
	case string:
		return fmt.Sprintf("string %q", x)
	case bool:
		return fmt.Sprintf("boolean %v", x)
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

func columnNames(s *slipway.Schema) string {
	names := make([]string, len(s.Columns))
	for i, c := range s.Columns {
		names[i] = c.Name
	}
	return "[" + strings.Join(names, ", ") + "]"
}

func keysOf(m map[string]any) string {
	return "[" + strings.Join(sortedKeys(m), ", ") + "]"
}
