package inference

import (
	"github.com/slipway-ml/slipway/internal/workerproto"
)

// This file cuts frames by rows for the dynamic batcher (serving): Concat merges the frames of several
// requests into one model call and Split cuts the outputs back.

// Rows returns the number of rows of a frame: the first dimension, shared by every column.
func Rows(ts []workerproto.Tensor) (int, error) {
	if len(ts) == 0 {
		return 0, invalid("", "the request has no columns")
	}
	var rows int64
	for i := range ts {
		t := &ts[i]
		if len(t.Shape) == 0 {
			return 0, invalid("", "column %q is a scalar: it has no rows", t.Name)
		}
		if i == 0 {
			rows = t.Shape[0]
		} else if t.Shape[0] != rows {
			return 0, invalid("", "column %q has %d rows, column %q has %d", t.Name, t.Shape[0], ts[0].Name, rows)
		}
	}
	if rows < 0 {
		return 0, invalid("", "column %q has a negative first dimension", ts[0].Name)
	}
	return int(rows), nil
}

// Concat merges the frames of several requests into one along the first dimension (for one model call),
// matching columns by name; it returns the rows of each frame. Every frame must have the same column
// names, datatypes and shapes after the first dimension: otherwise it fails and the caller runs them
// separately. The result is in the first frame's column order.
func Concat(batches [][]workerproto.Tensor) ([]workerproto.Tensor, []int, error) {
	if len(batches) == 0 {
		return nil, nil, invalid("", "no frames to concatenate")
	}
	first := batches[0]
	rows := make([]int, len(batches))
	total := 0
	for b, batch := range batches {
		r, err := Rows(batch)
		if err != nil {
			return nil, nil, invalid("", "frame %d: %v", b, err)
		}
		rows[b] = r
		total += r
		if len(batch) != len(first) {
			return nil, nil, invalid("", "frame %d has %d columns, frame 0 has %d", b, len(batch), len(first))
		}
		for i := range batch {
			t := &batch[i]
			j := indexAt(first, t.Name, i)
			if j < 0 {
				return nil, nil, invalid("", "frame %d has column %q, frame 0 does not", b, t.Name)
			}
			f := &first[j]
			if t.Datatype != f.Datatype || !equalShape(t.Shape[1:], f.Shape[1:]) {
				return nil, nil, invalid("", "column %q is %s %v in frame %d but %s %v in frame 0", t.Name, t.Datatype, t.Shape, b, f.Datatype, f.Shape)
			}
			if _, err := checkTensor(t, "column"); err != nil {
				return nil, nil, invalid("", "frame %d: %v", b, err)
			}
		}
	}
	if len(batches) == 1 {
		return first, rows, nil
	}
	out := make([]workerproto.Tensor, len(first))
	for j := range first {
		f := &first[j]
		shape := append([]int64{int64(total)}, f.Shape[1:]...)
		t := workerproto.Tensor{Name: f.Name, Datatype: f.Datatype, Shape: shape}
		if f.Datatype == "BYTES" {
			t.Strings = make([][]byte, 0, total*rowSize(f.Shape))
			for _, batch := range batches {
				t.Strings = append(t.Strings, batch[indexAt(batch, f.Name, j)].Strings...)
			}
		} else {
			t.Data = make([]byte, 0, total*rowSize(f.Shape)*workerproto.ParseDatatype(f.Datatype).Size())
			for _, batch := range batches {
				t.Data = append(t.Data, batch[indexAt(batch, f.Name, j)].Data...)
			}
		}
		out[j] = t
	}
	return out, rows, nil
}

// Split cuts a model's outputs for a concatenated frame back into one set per request: rows[i] rows for
// request i. Every output's first dimension must be the total of rows. The parts share the outputs' data.
func Split(outputs []workerproto.Tensor, rows []int) ([][]workerproto.Tensor, error) {
	total := 0
	for _, r := range rows {
		if r < 0 {
			return nil, invalid("", "negative row count %d", r)
		}
		total += r
	}
	for i := range outputs {
		t := &outputs[i]
		if _, err := checkOutput(t); err != nil {
			return nil, err
		}
		if len(t.Shape) == 0 || t.Shape[0] != int64(total) {
			return nil, invalid("", "model output %q has shape %v: its first dimension must be the %d rows of the batch to split it between requests", t.Name, t.Shape, total)
		}
	}
	// Three allocations per batch, not one per request and output: every part's tensors are cut from one
	// block, and their shapes from another (a split runs for every batch of every batched deployment).
	parts := make([][]workerproto.Tensor, len(rows))
	block := make([]workerproto.Tensor, len(rows)*len(outputs))
	dims := 0
	for i := range outputs {
		dims += len(outputs[i].Shape)
	}
	shapes := make([]int64, 0, len(rows)*dims)
	for b := range parts {
		parts[b] = block[b*len(outputs) : (b+1)*len(outputs) : (b+1)*len(outputs)]
	}
	for i := range outputs {
		t := &outputs[i]
		inner := 1
		for _, d := range t.Shape[1:] {
			inner *= int(d)
		}
		size := workerproto.ParseDatatype(t.Datatype).Size()
		start := 0
		for b, r := range rows {
			at := len(shapes)
			shapes = append(append(shapes, int64(r)), t.Shape[1:]...)
			part := workerproto.Tensor{Name: t.Name, Datatype: t.Datatype, Shape: shapes[at:len(shapes):len(shapes)]}
			lo, hi := start*inner, (start+r)*inner
			if t.Datatype == "BYTES" {
				part.Strings = t.Strings[lo:hi:hi]
			} else {
				part.Data = t.Data[lo*size : hi*size : hi*size]
			}
			parts[b][i] = part
			start += r
		}
	}
	return parts, nil
}
