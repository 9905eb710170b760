package inference

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/workerproto"
)

// MLflowRequest is a decoded MLflow scoring request (POST /invocations).
type MLflowRequest struct {
	// Columns is the frame: one column per feature for tables, else the request's tensors.
	Columns []workerproto.Tensor
	// Params is the request's "params" object (numbers are json.Number), nil when absent.
	Params map[string]any
	// Tabular reports that the request was a table of rows × named columns (dataframe_split,
	// dataframe_records, CSV, or instances/inputs as a list of objects): each column is a feature with one
	// value per row, in schema order when there is a schema.
	Tabular bool
}

// mlflowFormats are the top-level keys of the MLflow JSON formats.
var mlflowFormats = [...]string{"dataframe_split", "dataframe_records", "instances", "inputs"}

var mlflowFormatList = quoteList(mlflowFormats[:])

// DecodeMLflowJSON decodes an MLflow 2.x JSON scoring request: exactly one of dataframe_split
// ({"columns", "data", "index"}), dataframe_records (a list of objects), instances or inputs (a list of
// rows, a list of scalars, a list of objects, or an object of named lists), plus optional params.
//
// Columns are typed by the schema when it is given (a nil or empty schema means none); otherwise they
// are inferred: all integers → INT64, any fraction or null among numbers → FP64 (null is NaN), strings →
// BYTES, booleans → BOOL; a column mixing these is an error naming it. With a schema, a table's columns
// must be exactly the schema's (missing and unknown columns are errors) and come out in schema order.
// A list of rows or scalars becomes one tensor named "input", or the schema's column name when the schema
// has exactly one column.
func DecodeMLflowJSON(body []byte, schema *slipway.Schema) (*MLflowRequest, error) {
	if err := checkBodySize(body); err != nil {
		return nil, err
	}
	if req, ok := decodeSplitFast(body, schema); ok {
		return req, nil
	}
	return decodeMLflowGeneral(body, schema)
}

// decodeMLflowGeneral is DecodeMLflowJSON for every form and every error (see decodeSplitFast).
func decodeMLflowGeneral(body []byte, schema *slipway.Schema) (*MLflowRequest, error) {
	d := &mlflowDecoding{s: scanner{b: body}}
	s := &d.s
	if s.peek() != kObject {
		return nil, notA(s, "", "a JSON object with one of "+mlflowFormatList)
	}
	m := &d.m
	if err := m.init(body, schema); err != nil {
		return nil, err
	}
	m.cols, m.out, m.first = d.cols[:0], d.out[:0], &d.first
	req := &d.req
	// On the stack for the usual few keys (appends in the callback below would allocate from nil).
	keys := make([]tok, 0, 4)
	found := make([]string, 0, 2)
	err := s.bodyFields(func(k tok) error {
		keys = append(keys, k)
		format := ""
		for _, f := range mlflowFormats {
			if keyIs(body, k, f) {
				format = f
			}
		}
		var err error
		switch {
		case format != "":
			found = append(found, format)
			if len(found) > 1 {
				s.value() // an error below
				return nil
			}
			switch format { // decoded in place
			case "dataframe_split":
				err = m.split(s)
				req.Tabular = true
			case "dataframe_records":
				err = m.records(s, format)
				req.Tabular = true
			default:
				req.Tabular, err = m.tensors(s, format)
			}
		case keyIs(body, k, "params"):
			req.Params, err = decodeParams(s, "params")
		default: // ignored, as MLflow does
			s.value()
		}
		return err
	})
	if err != nil {
		if several := mlflowFormatsIn(body); len(several) > 1 {
			// The first format failed before the second was seen: the shape is the mistake to name.
			return nil, invalid("", "the request body has %s: send only one of %s", strings.Join(quoteAll(several), " and "), mlflowFormatList)
		}
		return nil, err
	}
	switch {
	case len(found) == 0 && len(keys) == 0:
		return nil, invalid("", "the request body is an empty object: send exactly one of %s", mlflowFormatList)
	case len(found) == 0:
		names := make([]string, len(keys))
		for i, k := range keys {
			names[i] = tokString(body, k)
		}
		return nil, invalid("", "the request body has %s but none of %s: send exactly one of them", quoteList(names), mlflowFormatList)
	case len(found) > 1:
		return nil, invalid("", "the request body has %s: send only one of %s", strings.Join(quoteAll(found), " and "), mlflowFormatList)
	}
	if req.Columns, err = m.finish(); err != nil {
		return nil, err
	}
	// The request's columns may share d (their list is d.out, a tensor's shape d.first.shapeRoom) and outlive
	// the call (a capture keeps them): they must not keep the body and its tokens alive.
	d.s, d.m, d.cols, d.first.toks = scanner{}, mlDecoder{}, [8]*rawCol{}, nil
	return req, nil
}

// mlflowFormatsIn lists the input formats among the top-level keys of body, without decoding their values.
// Only an invalid request pays for this second pass.
func mlflowFormatsIn(body []byte) []string {
	s, err := newScanner(body)
	if err != nil || s.peek() != kObject {
		return nil
	}
	var found []string
	_ = s.bodyFields(func(k tok) error {
		for _, f := range mlflowFormats {
			if keyIs(body, k, f) {
				found = append(found, f)
			}
		}
		s.value()
		return nil
	})
	return found
}

// rawCol is one column (or tensor) of a request: its values as tokens, typed once all are known.
type rawCol struct {
	name    string
	spec    *slipway.ColumnSpec // nil without a schema
	shape   []int64             // for table columns: [rows] + cell shape
	toks    []tok
	cell    []int64 // shape of a cell (nil: scalar cells), set by the first row
	lastRow int     // last record that set this column (duplicate check)
	loc     loc
	// shapeRoom holds the shape of a tensor of up to two dimensions (a request's usual rows × features)
	// without an allocation of its own.
	shapeRoom [2]int64
}

// loc formats the path of an element of a column for error messages.
type loc struct {
	prefix string // "dataframe_split.data", "dataframe_records", "instances", "inputs.x"
	col    int    // dataframe_split: the column index after the row index; -1 otherwise
	key    string // records: the column name after the row index
}

// path formats the location of the element at full index idx (row first).
func (l loc) path(idx []int64) string {
	var b strings.Builder
	b.WriteString(l.prefix)
	for i, x := range idx {
		fmt.Fprintf(&b, "[%d]", x)
		if i == 0 && l.col >= 0 {
			fmt.Fprintf(&b, "[%d]", l.col)
		}
		if i == 0 && l.key != "" {
			b.WriteString(fieldRef(l.key))
		}
	}
	return b.String()
}

// fieldRef formats an object key in a path: .age, or ["my col"] when it is not a plain identifier.
func fieldRef(key string) string {
	for i, c := range key {
		if !identRune(c, i == 0) {
			return fmt.Sprintf("[%q]", key)
		}
	}
	if key == "" {
		return `[""]`
	}
	return "." + key
}

// identRune reports whether c may appear in a plain identifier: a letter, '_', or a digit after the first.
func identRune(c rune, first bool) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || !first && c >= '0' && c <= '9'
}

// elemPath is the path of toks[k] of c.
func (c *rawCol) elemPath(k int) string {
	idx := make([]int64, len(c.shape))
	for d := len(c.shape) - 1; d >= 0; d-- {
		if c.shape[d] > 0 {
			idx[d] = int64(k) % c.shape[d]
			k /= int(c.shape[d])
		}
	}
	return c.loc.path(idx)
}

// mlDecoder collects the columns of one MLflow request.
type mlDecoder struct {
	src    []byte
	schema []slipway.ColumnSpec // empty: none
	col    column               // the column being typed (finish)
	// specFrom counts the leading columns that matched the schema's at the same position (see spec).
	specFrom int
	cols     []*rawCol
	byName   map[string]int       // index into cols, once there are many columns
	out      []workerproto.Tensor // room for finish's frame (nil: allocated there)
	first    *rawCol              // room for a tensor request's one column (nil: allocated)
}

// mlflowDecoding is all a JSON request's decoding needs for the usual request of one or two tensors or a few
// columns, in one allocation instead of one per part (a prediction request is decoded on every call).
type mlflowDecoding struct {
	req   MLflowRequest
	s     scanner
	m     mlDecoder
	cols  [8]*rawCol
	out   [2]workerproto.Tensor
	first rawCol
}

func newMLDecoder(src []byte, schema *slipway.Schema) (*mlDecoder, error) {
	m := &mlDecoder{}
	if err := m.init(src, schema); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *mlDecoder) init(src []byte, schema *slipway.Schema) error {
	m.src = src
	if schema != nil && len(schema.Columns) > 0 {
		m.schema = schema.Columns
		for _, c := range m.schema {
			if schemaDtype(c.Dtype) == workerproto.NoDatatype {
				return invalid("", "the input schema's column %q has unsupported dtype %q", c.Name, c.Dtype)
			}
		}
	}
	return nil
}

// schemaNames lists the schema's column names.
func (m *mlDecoder) schemaNames() string {
	ns := make([]string, len(m.schema))
	for i, c := range m.schema {
		ns[i] = c.Name
	}
	return quoteList(ns)
}

// spec returns the schema column called name, or nil; it tries position hint first (the request's columns
// usually come in the schema's order). A schema may repeat a name: the hint is taken only when no earlier
// column has it, so the answer is always the first column of that name.
func (m *mlDecoder) spec(name string, hint int) *slipway.ColumnSpec {
	if hint >= 0 && hint < len(m.schema) && m.schema[hint].Name == name && hint == m.specFrom {
		m.specFrom++
		return &m.schema[hint]
	}
	for i := range m.schema {
		if m.schema[i].Name == name {
			return &m.schema[i]
		}
	}
	return nil
}

// addCol adds a named column, checking it against the schema.
func (m *mlDecoder) addCol(name, where string, l loc) (*rawCol, error) {
	c := &rawCol{name: name, lastRow: -1, loc: l}
	return c, m.register(c, func() string { return where })
}

// register adds the column c (named), checking it against the schema; where locates it for errors.
func (m *mlDecoder) register(c *rawCol, where func() string) error {
	if _, err := checkName(c.name, ""); err != nil {
		return invalid(where(), "column %q: %s", c.name, slipway.ErrorMessage(err))
	}
	if m.find(c.name) >= 0 {
		return invalid(where(), "duplicate column %q", c.name)
	}
	if m.schema != nil {
		if c.spec = m.spec(c.name, len(m.cols)); c.spec == nil {
			return invalid(where(), "unknown column %q (the input schema has %s)", c.name, m.schemaNames())
		}
	}
	m.cols = append(m.cols, c)
	if m.byName != nil {
		m.byName[c.name] = len(m.cols) - 1
	} else if len(m.cols) > 16 {
		m.byName = make(map[string]int, 2*len(m.cols))
		for i, c := range m.cols {
			m.byName[c.name] = i
		}
	}
	return nil
}

// find returns the index of the column called name, or -1.
func (m *mlDecoder) find(name string) int {
	return m.findAt(name, -1)
}

// findAt is find trying position hint first (columns have distinct names: register refuses duplicates).
func (m *mlDecoder) findAt(name string, hint int) int {
	if hint >= 0 && hint < len(m.cols) && m.cols[hint].name == name {
		return hint
	}
	if m.byName != nil {
		if i, ok := m.byName[name]; ok {
			return i
		}
		return -1
	}
	for i, c := range m.cols {
		if c.name == name {
			return i
		}
	}
	return -1
}

// findKey is find for an object key token (without allocating when it has no escapes).
func (m *mlDecoder) findKey(k tok) int {
	raw := unquote(m.src, k)
	if m.byName != nil {
		if i, ok := m.byName[string(raw)]; ok {
			return i
		}
		return -1
	}
	for i, c := range m.cols {
		if c.name == string(raw) {
			return i
		}
	}
	return -1
}

// checkComplete fails when a schema column is absent from the request.
func (m *mlDecoder) checkComplete(where string) error {
	for i, sc := range m.schema {
		if m.findAt(sc.Name, i) < 0 {
			return invalid(where, "missing column %q (the input schema has %s)", sc.Name, m.schemaNames())
		}
	}
	return nil
}

// cell appends the value of row to a table column: a scalar, or a rectangular nested list (a tensor cell)
// whose shape must be the same in every row.
func (m *mlDecoder) cell(s *scanner, c *rawCol, row int) error {
	if s.peek() != kArray {
		t := s.value()
		if s.err != nil {
			return s.err
		}
		switch {
		case t.k == kObject:
			return invalid(c.loc.path([]int64{int64(row)}), "expected a value, got an object")
		case len(c.cell) > 0:
			return invalid(c.loc.path([]int64{int64(row)}), "expected a list like in row 0, got %s", describe(m.src, t))
		}
		c.cell = scalarCell
		c.toks = append(c.toks, t)
		return nil
	}
	if c.cell != nil && len(c.cell) == 0 {
		return notA(s, c.loc.path([]int64{int64(row)}), "a value like in row 0")
	}
	n := nester{s: s, toks: c.toks, rank: -1, at: func(idx []int) string {
		full := append([]int64{int64(row)}, toInt64s(idx)...)
		return c.loc.path(full)
	}}
	if err := n.walk(0); err != nil {
		return err
	}
	c.toks = n.toks
	if c.cell == nil {
		c.cell = n.shape
		return nil
	}
	if !equalShape(c.cell, n.shape) {
		return invalid(c.loc.path([]int64{int64(row)}), "expected a list of shape %v like in row 0, got shape %v", c.cell, n.shape)
	}
	return nil
}

func toInt64s(idx []int) []int64 {
	out := make([]int64, len(idx))
	for i, x := range idx {
		out[i] = int64(x)
	}
	return out
}

func equalShape(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// split reads dataframe_split: {"columns": [...], "data": [[...], ...], "index": [...]}, in any key order.
func (m *mlDecoder) split(s *scanner) error {
	const where = "dataframe_split"
	if s.peek() != kObject {
		return notA(s, where, `an object {"columns": [...], "data": [[...], ...]}`)
	}
	var (
		names              []string
		haveCols, haveData bool
		index              tok
		rows               int
		byPos              []*rawCol
	)
	err := s.fields(func(k tok) error {
		var err error
		switch {
		case keyIs(m.src, k, "columns"):
			haveCols = true
			names, err = readColumnNames(s, where+".columns", m.schema)
		case keyIs(m.src, k, "data"):
			haveData = true
			byPos, rows, err = m.splitData(s, len(names), haveCols)
		case keyIs(m.src, k, "index"):
			index = s.value()
		default:
			s.value()
		}
		return err
	})
	if err != nil {
		return err
	}
	if !haveData {
		return invalid(where+".data", "missing: send the rows as a list of lists")
	}
	if rows == 0 {
		return invalid(where+".data", "empty: send at least one row")
	}
	if index.k != kInvalid && index.k != kNull {
		if index.k != kArray {
			return invalid(where+".index", "expected a list, got %s", describe(m.src, index))
		}
		if n := countElems(m.src, index); n != rows {
			return invalid(where+".index", "has %d entries for %d rows", n, rows)
		}
	}
	if !haveCols {
		names = make([]string, len(byPos))
		for j := range names {
			if len(m.schema) == len(byPos) {
				names[j] = m.schema[j].Name // rows without names follow the schema's order
			} else {
				names[j] = strconv.Itoa(j)
			}
		}
	}
	if len(byPos) == 0 {
		return invalid(where+".data", "the rows have no values")
	}
	if len(names) != len(byPos) {
		return invalid(where+".columns", "%d column names for rows of %d values", len(names), len(byPos))
	}
	for j, c := range byPos {
		c.name = names[j]
		if err := m.register(c, func() string { return fmt.Sprintf("%s.columns[%d]", where, j) }); err != nil {
			return err
		}
		if n := 1 + len(c.cell); n <= len(c.shapeRoom) {
			c.shape = c.shapeRoom[:0:n] // the usual scalar or vector cell: no allocation per column
		} else {
			c.shape = make([]int64, 0, n)
		}
		c.shape = append(append(c.shape, int64(rows)), c.cell...)
	}
	return m.checkComplete(where + ".columns")
}

// readColumnNames reads a list of column names (strings; pandas also allows numbers, used as text).
// A name equal to the schema's column at its position is that column's string (no allocation per name: the
// usual request names the schema's columns in its order).
func readColumnNames(s *scanner, where string, schema []slipway.ColumnSpec) ([]string, error) {
	if s.peek() != kArray {
		return nil, notA(s, where, "a list of column names")
	}
	s.enter()
	var names []string
	for j := 0; s.next(']', j); j++ {
		t := s.value()
		if s.err != nil {
			break
		}
		var name string
		switch t.k {
		case kString:
			if j < len(schema) && !t.esc && string(s.b[t.start+1:t.end-1]) == schema[j].Name {
				name = schema[j].Name
			} else {
				name = tokString(s.b, t)
			}
		case kInt, kFloat:
			name = string(t.raw(s.b))
		default:
			return nil, invalid(fmt.Sprintf("%s[%d]", where, j), "expected a column name, got %s", describe(s.b, t))
		}
		if names == nil {
			names = make([]string, 0, max(len(schema), 4))
		}
		if _, err := checkName(name, ""); err != nil {
			return nil, invalid(fmt.Sprintf("%s[%d]", where, j), "%s", slipway.ErrorMessage(err))
		}
		names = append(names, name)
	}
	return names, s.err
}

// countElems counts the elements of a (validated) array token.
func countElems(src []byte, t tok) int {
	s := &scanner{b: src[:t.end], i: int(t.start)}
	s.enter()
	n := 0
	for ; s.next(']', n); n++ {
		s.value()
	}
	return n
}

// scalarCell is the cell shape of columns of scalars.
var scalarCell = []int64{}

// splitData reads dataframe_split.data into columns by position. width is the number of column names
// when they came first (known), else the first row sets it.
func (m *mlDecoder) splitData(s *scanner, width int, known bool) ([]*rawCol, int, error) {
	const where = "dataframe_split.data"
	if s.peek() != kArray {
		return nil, 0, notA(s, where, "a list of rows (lists of values)")
	}
	s.enter()
	var cols []*rawCol
	row := 0
	for ; s.next(']', row); row++ {
		rowPath := func() string { return fmt.Sprintf("%s[%d]", where, row) }
		if s.peek() != kArray {
			return nil, 0, notA(s, rowPath(), "a row (a list of values)")
		}
		if row == 0 {
			if !known {
				width = countElems(s.b, tok{start: uint32(s.i), end: uint32(len(s.b)), k: kArray})
			}
			cols = make([]*rawCol, width)
			backing := make([]rawCol, width) // one allocation for all columns
			// and one for their first row's scalars: a column's tokens grow out of it on the second row
			toks := make([]tok, width)
			for j := range cols {
				backing[j] = rawCol{loc: loc{prefix: where, col: j}, lastRow: -1, toks: toks[j : j : j+1]}
				cols[j] = &backing[j]
			}
		}
		s.enter()
		j := 0
		for ; s.next(']', j); j++ {
			if j >= width {
				s.value() // counted for the error below
				continue
			}
			if err := m.cell(s, cols[j], row); err != nil {
				return nil, 0, err
			}
		}
		if s.err != nil {
			return nil, 0, s.err
		}
		if j != width {
			if known {
				return nil, 0, invalid(rowPath(), "expected %d values (one per column), got %d", width, j)
			}
			return nil, 0, invalid(rowPath(), "expected %d values like %s[0], got %d", width, where, j)
		}
	}
	return cols, row, s.err
}

// records reads a list of objects {column: value} (dataframe_records, or instances/inputs as records).
// Every record must have every column.
func (m *mlDecoder) records(s *scanner, where string) error {
	if s.peek() != kArray {
		return notA(s, where, "a list of objects {column: value}")
	}
	if m.schema != nil {
		for _, sc := range m.schema {
			if _, err := m.addCol(sc.Name, where, loc{prefix: where, col: -1, key: sc.Name}); err != nil {
				return err
			}
		}
	}
	s.enter()
	row := 0
	for ; s.next(']', row); row++ {
		at := func() string { return fmt.Sprintf("%s[%d]", where, row) }
		if s.peek() != kObject {
			return notA(s, at(), "an object {column: value}")
		}
		s.enter()
		seen := 0
		for n := 0; s.next('}', n); n++ {
			k := s.key()
			if s.err != nil {
				break
			}
			j := m.findKey(k)
			if j < 0 {
				name := tokString(m.src, k)
				if m.schema != nil {
					return invalid(at(), "unknown column %q (the input schema has %s)", name, m.schemaNames())
				}
				if row > 0 {
					return invalid(fmt.Sprintf("%s[0]", where), "missing column %q (present in %s)", name, at())
				}
				if _, err := m.addCol(name, at(), loc{prefix: where, col: -1, key: name}); err != nil {
					return err
				}
				j = len(m.cols) - 1
			}
			c := m.cols[j]
			if c.lastRow == row {
				return invalid(at(), "duplicate column %q", c.name)
			}
			c.lastRow = row
			seen++
			if err := m.cell(s, c, row); err != nil {
				return err
			}
		}
		if s.err != nil {
			return s.err
		}
		if seen != len(m.cols) {
			for _, c := range m.cols {
				if c.lastRow != row {
					return invalid(at(), "missing column %q", c.name)
				}
			}
		}
	}
	if s.err != nil {
		return s.err
	}
	if row == 0 {
		return invalid(where, "empty: send at least one record")
	}
	for _, c := range m.cols {
		c.shape = append([]int64{int64(row)}, c.cell...)
	}
	return nil
}

// tensors reads instances or inputs: a list of objects (records), a list of rows or scalars (one tensor),
// or an object of named lists (one tensor each). It reports whether the input was a table.
func (m *mlDecoder) tensors(s *scanner, where string) (bool, error) {
	switch s.peek() {
	case kArray:
		if s.firstElem() == kObject {
			return true, m.records(s, where)
		}
		name, spec := "input", (*slipway.ColumnSpec)(nil)
		if len(m.schema) == 1 {
			name, spec = m.schema[0].Name, &m.schema[0]
		}
		c := m.first
		if c == nil {
			c = &rawCol{}
		}
		*c = rawCol{name: name, spec: spec, loc: loc{prefix: where, col: -1}}
		if err := m.tensor(s, c); err != nil {
			return false, err
		}
		if c.shape[0] == 0 {
			return false, invalid(where, "empty: send at least one row")
		}
		m.cols = append(m.cols, c)
		return false, nil
	case kObject:
		s.enter()
		for n := 0; s.next('}', n); n++ {
			k := s.key()
			if s.err != nil {
				break
			}
			name := tokString(m.src, k)
			at := where + fieldRef(name)
			c, err := m.addCol(name, at, loc{prefix: at, col: -1})
			if err != nil {
				return false, err
			}
			if err := m.tensor(s, c); err != nil {
				return false, err
			}
		}
		if s.err != nil {
			return false, s.err
		}
		if len(m.cols) == 0 {
			return false, invalid(where, "empty object: send named lists")
		}
		return false, m.checkComplete(where)
	}
	return false, notA(s, where, "a list of rows or an object of named lists")
}

// tensor reads a (rectangular) nested list, or a scalar, into c.
func (m *mlDecoder) tensor(s *scanner, c *rawCol) error {
	// Room for a few rows of features and two levels of nesting: a small request's leaves and shape need one
	// allocation each instead of one per doubling.
	n := nester{s: s, rank: -1, toks: make([]tok, 0, 16), shape: c.shapeRoom[:0], idx: make([]int, 0, 2),
		at: func(idx []int) string { return c.loc.path(toInt64s(idx)) }}
	if err := n.walk(0); err != nil {
		return err
	}
	c.toks, c.shape = n.toks, n.shape
	return nil
}

// nester flattens a rectangular nested list into its leaves, learning its shape from the first list at
// each depth.
type nester struct {
	s     *scanner
	shape []int64
	rank  int // depth of the leaves; -1 until known
	toks  []tok
	idx   []int
	at    func(idx []int) string
	// objects makes objects leaves, for a caller that refuses them in its own words.
	objects bool
}

func (n *nester) walk(depth int) error {
	s := n.s
	if s.peek() != kArray {
		t := s.value()
		switch {
		case s.err != nil:
			return s.err
		case t.k == kObject && !n.objects:
			return invalid(n.at(n.idx), "expected a value, got an object")
		case n.rank >= 0 && depth != n.rank:
			return invalid(n.at(n.idx), "expected a list (the lists nest unevenly), got %s", describe(s.b, t))
		}
		n.rank = depth
		n.toks = append(n.toks, t)
		return nil
	}
	if n.rank >= 0 && depth >= n.rank {
		return notA(s, n.at(n.idx), "a value (the lists nest unevenly)")
	}
	if depth == maxRank {
		return invalid(n.at(n.idx), "lists nested more than %d deep", maxRank)
	}
	if depth == len(n.shape) {
		n.shape = append(n.shape, -1)
	}
	s.enter()
	cnt := 0
	for ; s.next(']', cnt); cnt++ {
		n.idx = append(n.idx, cnt)
		if err := n.walk(depth + 1); err != nil {
			return err
		}
		n.idx = n.idx[:len(n.idx)-1]
	}
	if s.err != nil {
		return s.err
	}
	if cnt == 0 {
		if n.rank < 0 {
			n.rank = depth + 1
			n.shape = n.shape[:depth+1]
		} else if n.rank != depth+1 {
			return invalid(n.at(n.idx), "expected a non-empty list (the lists nest unevenly), got an empty list")
		}
	}
	switch want := n.shape[depth]; {
	case want < 0:
		n.shape[depth] = int64(cnt)
	case want != int64(cnt):
		return invalid(n.at(n.idx), "expected %d elements like %s, got %d", want, n.at(make([]int, len(n.idx))), cnt)
	}
	return nil
}

// finish types every column and returns the frame (in schema order when there is a schema).
func (m *mlDecoder) finish() ([]workerproto.Tensor, error) {
	if len(m.cols) == 0 {
		return nil, invalid("", "the request has no columns")
	}
	out := m.out[:0]
	if cap(out) < len(m.cols) {
		out = make([]workerproto.Tensor, 0, len(m.cols))
	}
	room := m.numericRoom()
	for _, c := range m.cols {
		t, err := m.typed(c, &room)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	// Columns that all came at their schema position are already in schema order (see spec).
	inOrder := m.specFrom == len(m.cols) && len(m.schema) == len(m.cols)
	if m.schema != nil && len(out) > 1 && !inOrder {
		ordered := make([]workerproto.Tensor, 0, len(out))
		for i, sc := range m.schema {
			if j := m.findAt(sc.Name, i); j >= 0 {
				ordered = append(ordered, out[j])
			}
		}
		out = ordered
	}
	return out, nil
}

// numericRoom is one block for the data of every column the schema types as numbers (one allocation per
// request instead of one per column); other columns allocate their own.
func (m *mlDecoder) numericRoom() []byte {
	total := 0
	for _, c := range m.cols {
		if c.spec != nil {
			total += len(c.toks) * schemaDtype(c.spec.Dtype).Size()
		}
	}
	if total == 0 {
		return nil
	}
	return make([]byte, total)
}

// typed converts a column's tokens to a tensor of the schema's dtype or the inferred one; a numeric
// column's data is cut from *room when it has space.
func (m *mlDecoder) typed(c *rawCol, room *[]byte) (workerproto.Tensor, error) {
	var dt workerproto.Datatype
	label := ""
	if c.spec != nil {
		dt, label = schemaDtype(c.spec.Dtype), c.spec.Dtype
	} else {
		var err error
		if dt, err = inferDtype(m.src, c.name, c.toks, c.elemPath); err != nil {
			return workerproto.Tensor{}, err
		}
		label = dt.String()
	}
	col := &m.col // one per decoder, not per column: the tensor keeps only its data
	col.init(dt, len(c.toks), room)
	col.col, col.label = c.name, label
	for k, t := range c.toks {
		if err := col.add(m.src, t); err != nil {
			return workerproto.Tensor{}, invalid(c.elemPath(k), "%v", err)
		}
	}
	return col.tensor(c.name, c.shape), nil
}

// inferDtype picks the dtype of the column called name from its values toks; at(k) locates toks[k] in an
// error (called only on one).
func inferDtype(src []byte, name string, toks []tok, at func(k int) string) (workerproto.Datatype, error) {
	const (
		none = iota
		number
		text
		boolean
	)
	kinds := [...]string{"", "a number", "a string", "true or false"}
	class, first, firstNull, float := none, -1, -1, false
	for k, t := range toks {
		var cl int
		switch t.k {
		case kNull:
			if firstNull < 0 {
				firstNull = k
			}
			continue
		case kInt:
			cl = number
			if !float {
				neg, mag, ok := parseIntText(t.raw(src))
				float = !ok || !workerproto.IntFits(workerproto.INT64, neg, mag)
			}
		case kFloat:
			cl, float = number, true
		case kString:
			cl = text
		case kTrue, kFalse:
			cl = boolean
		}
		if class == none {
			class, first = cl, k
			continue
		}
		if cl != class {
			return workerproto.NoDatatype, invalid(at(k), "expected %s for column %q (as at %s), got %s", kinds[class], name, at(first), describe(src, t))
		}
	}
	switch {
	case class == number && !float && firstNull < 0:
		return workerproto.INT64, nil
	case class == none || class == number:
		return workerproto.FP64, nil
	case firstNull >= 0:
		return workerproto.NoDatatype, invalid(at(firstNull), "missing value (null) in column %q: only float columns accept null (as NaN)", name)
	case class == text:
		return workerproto.BYTES, nil
	}
	return workerproto.BOOL, nil
}

// EncodeMLflowResponse encodes {"predictions": ...} the way MLflow does: one output → its values as a
// list nested by its shape; several 1-D outputs of the same length (a DataFrame) → a list of records
// [{"out1": v, "out2": v}, ...]; otherwise an object {"name": nested list}. NaN and ±Inf become null.
func EncodeMLflowResponse(outputs []workerproto.Tensor) ([]byte, error) {
	if len(outputs) == 0 {
		return nil, invalid("", "the model returned no outputs")
	}
	dts := make([]workerproto.Datatype, len(outputs))
	size := 32
	records := len(outputs) > 1
	for i := range outputs {
		t := &outputs[i]
		var err error
		if dts[i], err = checkOutput(t); err != nil {
			return nil, err
		}
		if lists := nestedLists(t.Shape); lists > 1<<24 {
			return nil, invalid("", "model output %q of shape %v would be %d nested lists", t.Name, t.Shape, lists)
		}
		size += 16 + len(t.Name) + estimateJSON(t)
		if len(t.Shape) != 1 || t.Shape[0] != outputs[0].Shape[0] {
			records = false
		}
	}
	if records {
		size += int(outputs[0].Shape[0]) * (4 + 4*len(outputs))
		for i := range outputs {
			size += int(outputs[0].Shape[0]) * len(outputs[i].Name)
		}
	}
	b := make([]byte, 0, size)
	b = append(b, `{"predictions":`...)
	switch {
	case len(outputs) == 1:
		b, _ = appendNested(b, &outputs[0], dts[0], outputs[0].Shape, 0, appendElemJSON)
	case records:
		b = append(b, '[')
		for r := range int(outputs[0].Shape[0]) {
			if r > 0 {
				b = append(b, ',')
			}
			b = append(b, '{')
			for i := range outputs {
				b = appendKey(b, i, outputs[i].Name)
				b = appendElemJSON(b, &outputs[i], dts[i], r)
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	default:
		b = appendTensorObject(b, outputs, dts, appendElemJSON)
	}
	return append(b, '}'), nil
}

// nestedLists counts the lists appendNested writes for shape (large only for shapes with a 0 dim,
// whose data does not bound them), saturating at 1<<62.
func nestedLists(shape []int64) int64 {
	total, level := int64(0), int64(1)
	for _, d := range shape {
		if total += level; total >= 1<<62 {
			return 1 << 62
		}
		if d == 0 {
			break
		}
		if level > (1<<62)/d {
			return 1 << 62
		}
		level *= d
	}
	return total
}

// elemWriter appends element i of t (of datatype dt, consistent with its data) as a JSON value.
type elemWriter func(b []byte, t *workerproto.Tensor, dt workerproto.Datatype, i int) []byte

// appendNested appends the elements of t from index i as lists nested by shape; it returns the next index.
func appendNested(b []byte, t *workerproto.Tensor, dt workerproto.Datatype, shape []int64, i int, elem elemWriter) ([]byte, int) {
	if len(shape) == 0 {
		return elem(b, t, dt, i), i + 1
	}
	b = append(b, '[')
	for j := range shape[0] {
		if j > 0 {
			b = append(b, ',')
		}
		b, i = appendNested(b, t, dt, shape[1:], i, elem)
	}
	return append(b, ']'), i
}

// appendTensorObject appends {"name": nested list, ...} for the tensors ts (of datatypes dts), in order.
func appendTensorObject(b []byte, ts []workerproto.Tensor, dts []workerproto.Datatype, elem elemWriter) []byte {
	b = append(b, '{')
	for i := range ts {
		b = appendKey(b, i, ts[i].Name)
		b, _ = appendNested(b, &ts[i], dts[i], ts[i].Shape, 0, elem)
	}
	return append(b, '}')
}

// appendKey appends the key of the i-th member of an object, after a comma unless it is the first.
func appendKey(b []byte, i int, key string) []byte {
	if i > 0 {
		b = append(b, ',')
	}
	b = appendString(b, key)
	return append(b, ':')
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strconv.Quote(s)
	}
	return out
}
