package batch

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/inference"
)

// chunk is a block of consecutive input rows, columnar, for the selected columns (the plan's order).
type chunk struct {
	index int
	start int64 // input row number of the first row (0-based data rows)
	n     int
	cols  []*column
	bad   map[int]string // row offset → why the row could not be read
}

func (c *chunk) markBad(r int, msg string) {
	if c.bad == nil {
		c.bad = map[int]string{}
	}
	if _, dup := c.bad[r]; !dup {
		c.bad[r] = msg
	}
}

// srcColumn is a column the input declares: its name and, when the input is typed, its kind.
type srcColumn struct {
	name string
	kind kind // kindNone: untyped text (CSV, JSON Lines, some SQL expressions): sampled
}

// selected is a column the run reads: the input column's position and the kind to read it as.
type selected struct {
	src  int
	name string
	kind kind
}

// source reads an input in order, chunk by chunk. Reading is deterministic: the same input gives the same
// chunks, so that a resumed run can skip the chunks it already committed.
type source interface {
	columns() []srcColumn
	// sample reads up to n rows of the given columns to infer the kinds of untyped columns.
	sample(ctx context.Context, cols []int, n int) ([]kind, error)
	total(ctx context.Context) (int64, error)
	// start begins reading the selected columns.
	start(ctx context.Context, sel []selected) error
	// next reads up to n rows; nil at the end.
	next(ctx context.Context, n int) (*chunk, error)
	close() error
}

func newChunk(sel []selected, n int) *chunk {
	c := &chunk{cols: make([]*column, len(sel))}
	for i, s := range sel {
		c.cols[i] = newColumn(s.kind, n)
	}
	return c
}

// ---- CSV ----------------------------------------------------------------------------------------------

type csvSource struct {
	open   func() (*os.File, error)
	header []string
	f      *os.File
	r      *csv.Reader
	sel    []selected
	row    int64
	chunkN int
}

func newCSVSource(open func() (*os.File, error)) (*csvSource, error) {
	s := &csvSource{open: open}
	f, r, err := s.reader()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	header, err := r.Read()
	if errors.Is(err, io.EOF) {
		return nil, slipway.Errorf(slipway.EINVALID, "the input file is empty: a CSV input needs a header row with the column names, then the rows")
	}
	if err != nil {
		return nil, csvError(err)
	}
	seen := map[string]bool{}
	for i, h := range header {
		h = strings.TrimSpace(h)
		if h == "" {
			return nil, slipway.Errorf(slipway.EINVALID, "CSV header: column %d has no name", i+1)
		}
		if seen[h] {
			return nil, slipway.Errorf(slipway.EINVALID, "CSV header: column %q appears twice", h)
		}
		seen[h] = true
		header[i] = h
	}
	s.header = header
	return s, nil
}

func (s *csvSource) reader() (*os.File, *csv.Reader, error) {
	f, err := s.open()
	if err != nil {
		return nil, nil, err
	}
	br := bufio.NewReaderSize(f, 256<<10)
	if bom, _ := br.Peek(3); bytes.Equal(bom, []byte("\xef\xbb\xbf")) {
		_, _ = br.Discard(3) // cannot fail: Peek has just buffered these bytes
	}
	r := csv.NewReader(br)
	r.FieldsPerRecord = -1
	r.ReuseRecord = true
	return f, r, nil
}

func csvError(err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return slipway.Errorf(slipway.EINVALID, "invalid CSV at line %d, column %d: %v", pe.Line, pe.Column, pe.Err)
	}
	return slipway.Wrap(slipway.EINVALID, err, "invalid CSV: %v", err)
}

func (s *csvSource) columns() []srcColumn {
	out := make([]srcColumn, len(s.header))
	for i, h := range s.header {
		out[i] = srcColumn{name: h}
	}
	return out
}

func (s *csvSource) sample(ctx context.Context, cols []int, n int) ([]kind, error) {
	f, r, err := s.reader()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, err := r.Read(); err != nil {
		return nil, csvError(err)
	}
	vals := make([][]string, len(cols))
	for range n {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, csvError(err)
		}
		if len(rec) != len(s.header) {
			continue
		}
		for j, c := range cols {
			vals[j] = append(vals[j], rec[c])
		}
	}
	out := make([]kind, len(cols))
	for j := range cols {
		out[j] = inferText(vals[j])
	}
	return out, nil
}

// inferText picks a kind from text values (CSV fields) as the MLflow CSV codec types its columns; no
// values at all make a string column.
func inferText(vals []string) kind {
	if len(vals) == 0 {
		return kindString
	}
	return kindOf(inference.InferTextType(vals))
}

func (s *csvSource) total(ctx context.Context) (int64, error) {
	f, r, err := s.reader()
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if _, err := r.Read(); err != nil {
		return 0, csvError(err)
	}
	var n int64
	for {
		if n%65536 == 0 && ctx.Err() != nil {
			return 0, ctx.Err()
		}
		_, err := r.Read()
		if errors.Is(err, io.EOF) {
			return n, nil
		} else if err != nil {
			return 0, csvError(err)
		}
		n++
	}
}

func (s *csvSource) start(ctx context.Context, sel []selected) error {
	f, r, err := s.reader()
	if err != nil {
		return err
	}
	if _, err := r.Read(); err != nil {
		_ = f.Close() // read-only: the header's error is the one to report
		return csvError(err)
	}
	s.f, s.r, s.sel = f, r, sel
	return nil
}

func (s *csvSource) next(ctx context.Context, n int) (*chunk, error) {
	c := newChunk(s.sel, n)
	c.index, c.start = s.chunkN, s.row
	for c.n < n {
		rec, err := s.r.Read()
		if errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, csvError(err)
		}
		r := c.n
		if len(rec) != len(s.header) {
			line, _ := s.r.FieldPos(0)
			c.markBad(r, fmt.Sprintf("line %d has %d fields, the header has %d", line, len(rec), len(s.header)))
			for _, col := range c.cols {
				col.appendNull()
			}
		} else {
			for j, sl := range s.sel {
				if err := c.cols[j].appendText(rec[sl.src]); err != nil {
					c.cols[j].appendNull()
					c.markBad(r, fmt.Sprintf("column %q: %v", sl.name, err))
				}
			}
		}
		c.n++
	}
	if c.n == 0 {
		return nil, nil
	}
	s.row += int64(c.n)
	s.chunkN++
	return c, nil
}

func (s *csvSource) close() error {
	if s.f != nil {
		return s.f.Close()
	}
	return nil
}

// ---- JSON Lines ---------------------------------------------------------------------------------------

// jsonlSource reads one JSON object per line; blank lines are ignored. Columns are the keys of the first
// objects (in order of first appearance); a key missing from a row is a missing value.
type jsonlSource struct {
	open   func() (*os.File, error)
	names  []string
	f      *os.File
	sc     *bufio.Scanner
	sel    []selected
	row    int64
	line   int
	chunkN int
}

const maxJSONLine = 16 << 20

func newJSONLSource(open func() (*os.File, error)) (*jsonlSource, error) {
	s := &jsonlSource{open: open}
	f, sc, err := s.scanner()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	seen := map[string]bool{}
	line, rows := 0, 0
	for rows < 1000 && sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		rows++
		keys, err := objectKeys(b)
		if err != nil {
			return nil, slipway.Errorf(slipway.EINVALID, "JSON Lines input, line %d: %v", line, err)
		}
		for _, k := range keys {
			if !seen[k] {
				seen[k] = true
				s.names = append(s.names, k)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, slipway.Wrap(slipway.EINVALID, err, "JSON Lines input: %v", err)
	}
	if rows == 0 {
		return nil, slipway.Errorf(slipway.EINVALID, "the input file is empty: a JSON Lines input needs one JSON object per line")
	}
	return s, nil
}

func objectKeys(b []byte) ([]string, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return nil, errors.New("expected a JSON object")
	}
	var keys []string
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("invalid JSON: %v", err)
		}
		keys = append(keys, k.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil, fmt.Errorf("invalid JSON: %v", err)
		}
	}
	return keys, nil
}

func (s *jsonlSource) scanner() (*os.File, *bufio.Scanner, error) {
	f, err := s.open()
	if err != nil {
		return nil, nil, err
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 256<<10), maxJSONLine)
	return f, sc, nil
}

func (s *jsonlSource) columns() []srcColumn {
	out := make([]srcColumn, len(s.names))
	for i, n := range s.names {
		out[i] = srcColumn{name: n}
	}
	return out
}

func decodeObject(b []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("invalid JSON object: %v", err)
	}
	if m == nil {
		return nil, errors.New("expected a JSON object, got null")
	}
	return m, nil
}

func (s *jsonlSource) sample(ctx context.Context, cols []int, n int) ([]kind, error) {
	f, sc, err := s.scanner()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	kinds := make([]kind, len(cols))
	for rows := 0; rows < n && sc.Scan(); {
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		rows++
		m, err := decodeObject(b)
		if err != nil {
			continue
		}
		for j, c := range cols {
			kinds[j] = widen(kinds[j], jsonKind(m[s.names[c]]))
		}
	}
	for j := range kinds {
		if kinds[j] == kindNone {
			kinds[j] = kindString
		}
	}
	return kinds, nil
}

func jsonKind(v any) kind {
	switch x := v.(type) {
	case json.Number:
		if _, err := x.Int64(); err == nil {
			return kindInt
		}
		return kindFloat
	case string:
		return kindString
	case bool:
		return kindBool
	}
	return kindNone
}

// widen combines the kinds seen in one column: integers and floats make floats, anything else mixed is string.
func widen(a, b kind) kind {
	switch {
	case a == kindNone:
		return b
	case b == kindNone || a == b:
		return a
	case (a == kindInt && b == kindFloat) || (a == kindFloat && b == kindInt):
		return kindFloat
	}
	return kindString
}

func (s *jsonlSource) total(ctx context.Context) (int64, error) {
	f, sc, err := s.scanner()
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var n int64
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) > 0 {
			n++
		}
	}
	if err := sc.Err(); err != nil {
		return 0, slipway.Wrap(slipway.EINVALID, err, "JSON Lines input: %v", err)
	}
	return n, nil
}

func (s *jsonlSource) start(ctx context.Context, sel []selected) error {
	f, sc, err := s.scanner()
	if err != nil {
		return err
	}
	s.f, s.sc, s.sel = f, sc, sel
	return nil
}

func (s *jsonlSource) next(ctx context.Context, n int) (*chunk, error) {
	c := newChunk(s.sel, n)
	c.index, c.start = s.chunkN, s.row
	for c.n < n && s.sc.Scan() {
		s.line++
		b := bytes.TrimSpace(s.sc.Bytes())
		if len(b) == 0 {
			continue
		}
		r := c.n
		m, err := decodeObject(b)
		if err != nil {
			c.markBad(r, fmt.Sprintf("line %d: %v", s.line, err))
		}
		for j, sl := range s.sel {
			v := m[sl.name]
			if num, ok := v.(json.Number); ok {
				v = string(num)
			}
			if err := c.cols[j].appendAny(v); err != nil {
				c.cols[j].appendNull()
				c.markBad(r, fmt.Sprintf("line %d, field %q: %v", s.line, sl.name, err))
			}
		}
		c.n++
	}
	if err := s.sc.Err(); err != nil {
		return nil, slipway.Wrap(slipway.EINVALID, err, "JSON Lines input after line %d: %v", s.line, err)
	}
	if c.n == 0 {
		return nil, nil
	}
	s.row += int64(c.n)
	s.chunkN++
	return c, nil
}

func (s *jsonlSource) close() error {
	if s.f != nil {
		return s.f.Close()
	}
	return nil
}
