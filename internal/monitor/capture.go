package monitor

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/workerproto"
)

// captureItem is a sampled prediction waiting in the capture queue: references to the request's tensors or JSON
// bodies, encoded by the writer (off the request path).
type captureItem struct {
	c               *slipway.Capture
	in, out         []workerproto.Tensor
	inJSON, outJSON []byte
}

const (
	writeBatch    = 512
	writeInterval = 200 * time.Millisecond
)

// captureWriter encodes queued captures and writes them in batches until the service closes, then drains the queue.
func (s *Service) captureWriter() {
	writeInBatches(s.ctx, s.captures, func(items []captureItem) {
		batch := make([]*slipway.Capture, 0, len(items))
		for _, it := range items {
			c, err := s.encodeCapture(it)
			if err != nil {
				s.log.Warn("prediction not captured", "deployment", it.c.Deployment, "request_id", it.c.RequestID, "error", err)
				continue
			}
			batch = append(batch, c)
		}
		if len(batch) == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.data.InsertCaptures(ctx, batch); err != nil {
			s.log.Error("store captured predictions", "error", err, "count", len(batch))
		}
	})
}

// writeInBatches hands what arrives on q to write, in batches of up to writeBatch items and at least every
// writeInterval, until ctx ends; then it drains q and writes the rest. write must not keep the slice.
func writeInBatches[T any](ctx context.Context, q <-chan T, write func([]T)) {
	var batch []T
	t := time.NewTicker(writeInterval)
	defer t.Stop()
	flush := func() {
		if len(batch) > 0 {
			write(batch)
			batch = batch[:0]
		}
	}
	for {
		select {
		case it := <-q:
			if batch = append(batch, it); len(batch) >= writeBatch {
				flush()
			}
		case <-t.C:
			flush()
		case <-ctx.Done():
			for {
				select {
				case it := <-q:
					if batch = append(batch, it); len(batch) >= writeBatch {
						flush()
					}
				default:
					flush()
					return
				}
			}
		}
	}
}

// encodeCapture turns a queued prediction into tensor frames. JSON bodies (OCI predict) are read as a table when
// they have one of the usual shapes; otherwise the capture keeps no columns for that side.
func (s *Service) encodeCapture(it captureItem) (*slipway.Capture, error) {
	c := it.c
	in, out := it.in, it.out
	if it.inJSON != nil {
		var err error
		if in, err = jsonTable(it.inJSON, s.inputNames(c.Deployment, c.ModelVersion)); err != nil {
			return nil, fmt.Errorf("read the request as a table: %w", err)
		}
		out, _ = jsonTable(it.outJSON, []string{"prediction"}) // an output that is no table is kept as nothing
	}
	// Decoders and replicas produce valid tensors (and jsonTable builds them with the constructors): no Validate.
	c.Rows = rowsOf(in)
	if c.Rows == 0 {
		c.Rows = rowsOf(out)
	}
	c.Inputs = workerproto.EncodeTensors(nil, in)
	c.Outputs = workerproto.EncodeTensors(nil, out)
	return c, nil
}

func rowsOf(ts []workerproto.Tensor) int {
	for _, t := range ts {
		if len(t.Shape) > 0 {
			return int(t.Shape[0])
		}
	}
	return 0
}

// inputNames is the input schema's column names of the version a deployment serves (for JSON rows given as lists).
func (s *Service) inputNames(deployment string, version int) []string {
	d, err := s.cfg.Deployments.FindDeployment(s.ctx, deployment)
	if err != nil || s.cfg.Models == nil {
		return nil
	}
	v, err := s.modelVersion(d.Model, version)
	if err != nil || v.InputSchema == nil {
		return nil
	}
	names := make([]string, len(v.InputSchema.Columns))
	for i, c := range v.InputSchema.Columns {
		names[i] = c.Name
	}
	return names
}

// jsonTable reads a JSON body as columns: {"data": rows, "columns": names}, {"data": {name: values}}, a list of
// rows, a list of records, one record, or an object of equal-length lists ({"prediction": [...], ...}); a bare list
// of scalars is one column named names[0]. Rows given as lists take their names from names.
func jsonTable(body []byte, names []string) ([]workerproto.Tensor, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	cols := map[string][]any{}
	var order []string
	addCol := func(name string, vals []any) {
		if _, ok := cols[name]; !ok {
			order = append(order, name)
		}
		cols[name] = vals
	}
	rowsToCols := func(rows []any, colNames []string) error {
		n := len(rows)
		for i, r := range rows {
			switch row := r.(type) {
			case []any:
				if len(colNames) < len(row) {
					return fmt.Errorf("row %d has %d values but only %d column names are known", i, len(row), len(colNames))
				}
				for j, x := range row {
					name := colNames[j]
					if cols[name] == nil {
						addCol(name, make([]any, n))
					}
					cols[name][i] = x
				}
			case map[string]any:
				for _, k := range slices.Sorted(maps.Keys(row)) {
					if cols[k] == nil {
						addCol(k, make([]any, n))
					}
					cols[k][i] = row[k]
				}
			default:
				if len(colNames) == 0 {
					return fmt.Errorf("row %d is a scalar and no column name is known", i)
				}
				if cols[colNames[0]] == nil {
					addCol(colNames[0], make([]any, n))
				}
				cols[colNames[0]][i] = r
			}
		}
		return nil
	}
	switch x := v.(type) {
	case []any:
		if err := rowsToCols(x, names); err != nil {
			return nil, err
		}
	case map[string]any:
		if data, ok := x["data"]; ok {
			colNames := names
			if cn, ok := x["columns"].([]any); ok {
				colNames = nil
				for _, c := range cn {
					colNames = append(colNames, fmt.Sprint(c))
				}
			}
			switch d := data.(type) {
			case []any:
				if err := rowsToCols(d, colNames); err != nil {
					return nil, err
				}
			case map[string]any:
				x = d
				goto object
			default:
				return nil, fmt.Errorf("\"data\" is neither rows nor columns")
			}
			break
		}
	object:
		allLists := len(x) > 0
		for _, val := range x {
			if _, ok := val.([]any); !ok {
				allLists = false
			}
		}
		if allLists {
			for _, k := range slices.Sorted(maps.Keys(x)) {
				addCol(k, x[k].([]any))
			}
		} else if err := rowsToCols([]any{x}, names); err != nil {
			return nil, err
		}
	default:
		if len(names) == 0 {
			return nil, fmt.Errorf("a scalar body has no column name")
		}
		addCol(names[0], []any{x})
	}
	n := -1
	out := make([]workerproto.Tensor, 0, len(order))
	for _, name := range order {
		vals := cols[name]
		if n >= 0 && len(vals) != n {
			return nil, fmt.Errorf("columns have different lengths (%d and %d)", n, len(vals))
		}
		n = len(vals)
		out = append(out, columnTensor(name, vals))
	}
	return out, nil
}

// columnTensor makes an FP64 tensor of a column of numbers (null: NaN; true/false: 1/0), else a BYTES tensor of
// the values' text.
func columnTensor(name string, vals []any) workerproto.Tensor {
	numeric := true
	for _, v := range vals {
		switch v.(type) {
		case json.Number, nil, bool:
		default:
			numeric = false
		}
	}
	if numeric {
		f := make([]float64, len(vals))
		for i, v := range vals {
			switch x := v.(type) {
			case json.Number:
				f[i], _ = strconv.ParseFloat(string(x), 64)
			case bool:
				if x {
					f[i] = 1
				}
			default:
				f[i] = math.NaN()
			}
		}
		return workerproto.NewFloat64(name, nil, f)
	}
	ss := make([]string, len(vals))
	for i, v := range vals {
		switch x := v.(type) {
		case string:
			ss[i] = x
		case nil:
			ss[i] = ""
		default:
			b, _ := json.Marshal(x)
			ss[i] = string(b)
		}
	}
	return workerproto.NewBytes(name, nil, ss)
}
