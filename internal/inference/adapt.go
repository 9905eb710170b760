package inference

import (
	"errors"
	"fmt"
	"strings"

	"github.com/slipway-ml/slipway/internal/workerproto"
)

// AdaptToModel makes a frame fit a model's declared inputs (the replica's hello). The frame is not
// modified; tensors that need no change are shared with it.
//
//   - No declared inputs (the python runtime declares none): the frame as is.
//   - Every input present by name: each column is cast to its input's datatype (FP64→FP32, INT64→FP32...;
//     an integer that does not fit or a fraction cast to an integer is an error), [N] and [N, 1] are
//     reshaped into each other when the input wants the other, and fixed dims are checked. A column that
//     is not an input is an error.
//   - One input: a single column under another name is renamed to it (then as above); several 1-D
//     numeric columns of one length are stacked into [N, K] in frame order when the input has rank 2
//     and K features (or -1), and cast to its datatype.
func AdaptToModel(cols []workerproto.Tensor, inputs []workerproto.Column) ([]workerproto.Tensor, error) {
	if len(inputs) == 0 {
		return cols, nil
	}
	if len(cols) == 0 {
		return nil, invalid("", "the request has no columns; the model takes %s", describeInputs(inputs))
	}
	for i := range cols {
		if _, err := checkTensor(&cols[i], "column"); err != nil {
			return nil, err
		}
	}
	byName := 0
	for _, in := range inputs {
		if indexOf(cols, in.Name) >= 0 {
			byName++
		}
	}
	switch {
	case byName == len(inputs):
		if len(cols) > len(inputs) {
			for i := range cols {
				if !isInput(inputs, cols[i].Name) {
					return nil, invalid("", "column %q is not an input of the model, which takes %s", cols[i].Name, describeInputs(inputs))
				}
			}
		}
		out := make([]workerproto.Tensor, len(inputs))
		for i, in := range inputs {
			var err error
			if out[i], err = fit(cols[indexOf(cols, in.Name)], in); err != nil {
				return nil, err
			}
		}
		return out, nil
	case len(inputs) == 1 && len(cols) == 1:
		t, err := fit(cols[0], inputs[0])
		if err != nil {
			return nil, err
		}
		return []workerproto.Tensor{t}, nil
	case len(inputs) == 1 && len(inputs[0].Shape) == 2:
		t, err := stack(cols, inputs[0])
		if err != nil {
			return nil, err
		}
		return []workerproto.Tensor{t}, nil
	}
	for _, in := range inputs {
		if indexOf(cols, in.Name) < 0 {
			return nil, invalid("", "missing model input %q: the model takes %s; the request has %s", in.Name, describeInputs(inputs), quoteList(names(cols)))
		}
	}
	return nil, invalid("", "the model takes %s; the request has %s", describeInputs(inputs), quoteList(names(cols)))
}

func isInput(inputs []workerproto.Column, name string) bool {
	for _, in := range inputs {
		if in.Name == name {
			return true
		}
	}
	return false
}

// describeInputs formats declared inputs: "features" (FP32 [-1 4]), "b" (INT64).
func describeInputs(inputs []workerproto.Column) string {
	var b strings.Builder
	for i, in := range inputs {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%q (%s", in.Name, in.Datatype)
		if in.Shape != nil {
			fmt.Fprintf(&b, " %v", in.Shape)
		}
		b.WriteString(")")
	}
	return b.String()
}

// fit casts, reshapes and renames one column for a declared input.
func fit(t workerproto.Tensor, in workerproto.Column) (workerproto.Tensor, error) {
	if in.Shape != nil {
		shape := t.Shape
		switch {
		case len(in.Shape) == 2 && len(shape) == 1 && (in.Shape[1] == 1 || in.Shape[1] < 0):
			shape = []int64{shape[0], 1}
		case len(in.Shape) == 1 && len(shape) == 2 && shape[1] == 1:
			shape = []int64{shape[0]}
		}
		if !shapeMatches(shape, in.Shape) {
			return t, invalid("", "column %q has shape %v; model input %q takes %v (-1: any size)", t.Name, t.Shape, in.Name, in.Shape)
		}
		t.Shape = shape
	}
	if dt := workerproto.ParseDatatype(in.Datatype); dt != workerproto.NoDatatype && in.Datatype != t.Datatype {
		var err error
		if t, err = cast(t, dt, in.Name); err != nil {
			return t, err
		}
	}
	t.Name = in.Name
	return t, nil
}

// cast converts a numeric tensor to the datatype dt (a copy; t itself when it already is dt).
func cast(t workerproto.Tensor, dt workerproto.Datatype, input string) (workerproto.Tensor, error) {
	src := workerproto.ParseDatatype(t.Datatype)
	if src == dt {
		return t, nil
	}
	if !src.IsNumeric() || !dt.IsNumeric() {
		return t, invalid("", "column %q is %s; model input %q takes %s", t.Name, src, input, dt)
	}
	n := elemCount(&t, src)
	data := make([]byte, 0, n*dt.Size())
	perRow := rowSize(t.Shape)
	for i := range n {
		var err error
		if data, err = workerproto.AppendNumber(data, dt, workerproto.ReadNumber(src, t.Data, i)); err != nil {
			return t, castError(err, t.Name, i, perRow, workerproto.ReadNumber(src, t.Data, i), dt, input)
		}
	}
	t.Datatype, t.Data = dt.String(), data
	return t, nil
}

// rowSize is the number of elements per row (the product of the dims after the first).
func rowSize(shape []int64) int {
	n := 1
	if len(shape) > 1 {
		for _, d := range shape[1:] {
			n *= int(d)
		}
	}
	return max(n, 1)
}

func castError(err error, col string, i, perRow int, v workerproto.Number, dt workerproto.Datatype, input string) error {
	where := fmt.Sprintf("column %q row %d", col, i/perRow)
	if perRow > 1 {
		where += fmt.Sprintf(" element %d", i%perRow)
	}
	if errors.Is(err, workerproto.ErrNotInteger) {
		return invalid(where, "%s is not an integer, and model input %q is %s", v, input, dt)
	}
	return invalid(where, "%s does not fit %s (model input %q)", v, dt, input)
}

// stack builds the [N, K] input from K 1-D numeric columns, in frame order.
func stack(cols []workerproto.Tensor, in workerproto.Column) (workerproto.Tensor, error) {
	dt := workerproto.ParseDatatype(in.Datatype)
	k := len(cols)
	if !dt.IsNumeric() {
		return workerproto.Tensor{}, invalid("", "the model takes %s; the request has %s", describeInputs([]workerproto.Column{in}), quoteList(names(cols)))
	}
	if in.Shape[1] >= 0 && in.Shape[1] != int64(k) {
		return workerproto.Tensor{}, invalid("", "model input %q takes %d features per row (shape %v); the request has %d columns (%s)", in.Name, in.Shape[1], in.Shape, k, quoteList(names(cols)))
	}
	n := int64(-1)
	for i := range cols {
		c := &cols[i]
		switch {
		case len(c.Shape) != 1:
			return workerproto.Tensor{}, invalid("", "column %q has shape %v; to stack the columns into model input %q each must have one value per row", c.Name, c.Shape, in.Name)
		case !workerproto.ParseDatatype(c.Datatype).IsNumeric():
			return workerproto.Tensor{}, invalid("", "column %q is %s; model input %q takes %s", c.Name, c.Datatype, in.Name, dt)
		case n >= 0 && c.Shape[0] != n:
			return workerproto.Tensor{}, invalid("", "column %q has %d rows, column %q has %d", c.Name, c.Shape[0], cols[0].Name, n)
		}
		n = c.Shape[0]
	}
	if in.Shape[0] >= 0 && in.Shape[0] != n {
		return workerproto.Tensor{}, invalid("", "model input %q takes %d rows (shape %v); the request has %d", in.Name, in.Shape[0], in.Shape, n)
	}
	size := dt.Size()
	data := make([]byte, int(n)*k*size)
	for j := range cols {
		c := &cols[j]
		src := workerproto.ParseDatatype(c.Datatype)
		for r := range int(n) {
			off := (r*k + j) * size
			if src == dt {
				copy(data[off:off+size], c.Data[r*size:])
				continue
			}
			if _, err := workerproto.AppendNumber(data[:off], dt, workerproto.ReadNumber(src, c.Data, r)); err != nil {
				return workerproto.Tensor{}, castError(err, c.Name, r, 1, workerproto.ReadNumber(src, c.Data, r), dt, in.Name)
			}
		}
	}
	return workerproto.Tensor{Name: in.Name, Datatype: dt.String(), Shape: []int64{n, int64(k)}, Data: data}, nil
}
