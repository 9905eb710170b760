package monitor

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/parquet-go/parquet-go"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/stats"
)

// MaxBaselineBytes bounds a baseline upload.
const MaxBaselineBytes = 512 << 20

// Baseline formats (Content-Type of the upload).
const (
	FormatCSV     = "csv"
	FormatParquet = "parquet"
)

// PutBaseline profiles a sample of a version's training data (CSV with a header row, or Parquet) and keeps the
// profile as the version's baseline, replacing any previous one. The features are the version's input schema
// columns (every column of the sample when the version has no schema), plus its output schema columns when the
// sample has them (for prediction drift). Other columns are ignored and reported.
func (s *Service) PutBaseline(ctx context.Context, model string, ref slipway.VersionRef, format string, body io.Reader, by string) (*slipway.Baseline, error) {
	v, err := s.cfg.Models.FindVersion(ctx, model, ref)
	if err != nil {
		return nil, err
	}
	f, err := spool(body, s.cfg.TempDir)
	if err != nil {
		return nil, err
	}
	defer discardSpool(f)
	var src table
	switch format {
	case FormatCSV:
		src = &csvTable{f: f}
	case FormatParquet:
		st, err := f.Stat()
		if err != nil {
			return nil, fmt.Errorf("monitor: stat baseline: %w", err)
		}
		pf, err := parquet.OpenFile(f, st.Size())
		if err != nil {
			return nil, invalidf("the baseline is not a readable Parquet file: %v", err)
		}
		src = &parquetTable{f: pf}
	default:
		return nil, invalidf("unsupported baseline format %q: send text/csv or application/vnd.apache.parquet", format)
	}
	header, err := src.header()
	if err != nil {
		return nil, err
	}
	names, kinds, ignored, err := baselineFeatures(v, header, src)
	if err != nil {
		return nil, err
	}
	b := stats.NewProfileBuilder(names, kinds)
	if err := src.scan(names, kinds, b); err != nil {
		return nil, err
	}
	p := b.Profile()
	if p.Rows == 0 {
		return nil, invalidf("the baseline has a header but no rows: send a sample of the training data")
	}
	bl := &slipway.Baseline{Model: v.Model, Version: v.Version, Format: format, Ignored: ignored, Profile: p,
		CreatedAt: s.now().UTC(), CreatedBy: by}
	if err := s.store.PutBaseline(ctx, bl); err != nil {
		return nil, err
	}
	s.baselineMu.Lock()
	delete(s.baselines, baselineKey{v.Model, v.Version})
	s.baselineMu.Unlock()
	return bl, nil
}

// FindBaseline returns a version's baseline (cached).
func (s *Service) FindBaseline(ctx context.Context, model string, version int) (*slipway.Baseline, error) {
	key := baselineKey{model, version}
	s.baselineMu.Lock()
	b := s.baselines[key]
	s.baselineMu.Unlock()
	if b != nil {
		return b, nil
	}
	b, err := s.store.FindBaseline(ctx, model, version)
	if err != nil {
		return nil, err
	}
	s.baselineMu.Lock()
	s.baselines[key] = b
	s.baselineMu.Unlock()
	return b, nil
}

// GetBaseline resolves a version reference and returns its baseline.
func (s *Service) GetBaseline(ctx context.Context, model string, ref slipway.VersionRef) (*slipway.Baseline, error) {
	v, err := s.cfg.Models.FindVersion(ctx, model, ref)
	if err != nil {
		return nil, err
	}
	b, err := s.FindBaseline(ctx, v.Model, v.Version)
	if slipway.ErrorCode(err) == slipway.ENOTFOUND {
		return nil, slipway.Errorf(slipway.ENOTFOUND, "version %d of model %s has no baseline: upload a sample of its training data with PUT .../baseline", v.Version, v.Model)
	}
	return b, err
}

// spool copies the upload to a temporary file (Parquet needs random access; CSV without a schema two passes).
func spool(body io.Reader, dir string) (*os.File, error) {
	f, err := os.CreateTemp(dir, "baseline-*")
	if err != nil {
		return nil, fmt.Errorf("monitor: spool baseline: %w", err)
	}
	n, err := io.Copy(f, io.LimitReader(body, MaxBaselineBytes+1))
	if err == nil && n > MaxBaselineBytes {
		err = slipway.Errorf(slipway.ETOOLARGE, "baseline larger than %d MB: upload a sample (a few hundred thousand rows profile the data as well)", MaxBaselineBytes>>20)
	} else if err != nil {
		err = slipway.Wrap(slipway.EINVALID, err, "could not read the baseline: %v", err)
	} else if n == 0 {
		err = invalidf("the baseline is empty: send a CSV file with a header row, or a Parquet file")
	}
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		discardSpool(f)
		return nil, err
	}
	return f, nil
}

// discardSpool closes and removes a spooled baseline. Neither error matters: the file was only read, and one
// that cannot be removed is only a stray file in the temporary folder.
func discardSpool(f *os.File) {
	_ = f.Close()
	_ = os.Remove(f.Name())
}

// table is a baseline sample in some format.
type table interface {
	header() ([]string, error)
	// inferKind says whether a column's values are all numbers (used when the version has no schema).
	inferKind(col string) (string, error)
	scan(names, kinds []string, b *stats.ProfileBuilder) error
}

// kindOf maps a schema dtype to a feature kind.
func kindOf(dtype string) string {
	switch dtype {
	case "string", "str", "object", "bool", "category":
		return stats.Categorical
	}
	return stats.Numeric
}

func baselineFeatures(v *slipway.ModelVersion, header []string, src table) (names, kinds, ignored []string, err error) {
	has := map[string]bool{}
	for _, h := range header {
		if has[h] {
			return nil, nil, nil, invalidf("the baseline's header names column %q twice", h)
		}
		has[h] = true
	}
	used := map[string]bool{}
	if v.InputSchema != nil && len(v.InputSchema.Columns) > 0 {
		var missing []string
		for _, c := range v.InputSchema.Columns {
			if !has[c.Name] {
				missing = append(missing, c.Name)
				continue
			}
			names, kinds = append(names, c.Name), append(kinds, kindOf(c.Dtype))
			used[c.Name] = true
		}
		if len(missing) > 0 {
			return nil, nil, nil, invalidf("the baseline lacks input features of version %d of %s: %s (its header has: %s)",
				v.Version, v.Model, strings.Join(missing, ", "), strings.Join(header, ", "))
		}
		if v.OutputSchema != nil {
			for _, c := range v.OutputSchema.Columns {
				if has[c.Name] && !used[c.Name] {
					names, kinds = append(names, c.Name), append(kinds, kindOf(c.Dtype))
					used[c.Name] = true
				}
			}
		}
	} else {
		for _, h := range header {
			k, err := src.inferKind(h)
			if err != nil {
				return nil, nil, nil, err
			}
			names, kinds = append(names, h), append(kinds, k)
			used[h] = true
		}
	}
	for _, h := range header {
		if !used[h] {
			ignored = append(ignored, h)
		}
	}
	return names, kinds, ignored, nil
}

func isMissing(s string) bool {
	switch s {
	case "", "NA", "NaN", "nan", "null", "NULL", "None":
		return true
	}
	return false
}

// csvTable reads a CSV sample with a header row.
type csvTable struct {
	f    *os.File
	cols []string
}

// rewind reads the file again from the top: it returns the header row and a reader at the first row after it.
func (t *csvTable) rewind() (*csv.Reader, []string, error) {
	if _, err := t.f.Seek(0, io.SeekStart); err != nil {
		return nil, nil, fmt.Errorf("monitor: rewind baseline: %w", err)
	}
	r := csv.NewReader(t.f)
	r.ReuseRecord = true
	h, err := r.Read()
	if err != nil {
		return nil, nil, csvErr(err)
	}
	return r, h, nil
}

func csvErr(err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return invalidf("the baseline is not valid CSV: line %d: %v", pe.Line, pe.Err)
	}
	return invalidf("the baseline is not valid CSV: %v", err)
}

func (t *csvTable) header() ([]string, error) {
	_, h, err := t.rewind()
	if err != nil {
		return nil, err
	}
	t.cols = slices.Clone(h)
	for i, c := range t.cols {
		t.cols[i] = strings.TrimSpace(strings.TrimPrefix(c, "\ufeff"))
		if t.cols[i] == "" {
			return nil, invalidf("the baseline's header row has an empty column name (column %d): the first line must name every column", i+1)
		}
	}
	return t.cols, nil
}

func (t *csvTable) inferKind(col string) (string, error) {
	j := slices.Index(t.cols, col)
	r, _, err := t.rewind()
	if err != nil {
		return "", err
	}
	for {
		rec, err := r.Read()
		if err == io.EOF {
			return stats.Numeric, nil
		} else if err != nil {
			return "", csvErr(err)
		}
		if v := strings.TrimSpace(rec[j]); !isMissing(v) {
			if _, err := strconv.ParseFloat(v, 64); err != nil {
				return stats.Categorical, nil
			}
		}
	}
}

func (t *csvTable) scan(names, kinds []string, b *stats.ProfileBuilder) error {
	idx := make([]int, len(names))
	for i, n := range names {
		idx[i] = slices.Index(t.cols, n)
	}
	r, _, err := t.rewind()
	if err != nil {
		return err
	}
	for {
		rec, err := r.Read()
		if err == io.EOF {
			return nil
		} else if err != nil {
			return csvErr(err)
		}
		line, _ := r.FieldPos(0)
		b.AddRow()
		for i, j := range idx {
			v := strings.TrimSpace(rec[j])
			switch {
			case isMissing(v):
				b.AddMissing(i)
			case kinds[i] == stats.Numeric:
				x, err := strconv.ParseFloat(v, 64)
				if err != nil || math.IsInf(x, 0) {
					return invalidf("the baseline's line %d, column %q: %q is not a number (the feature is numeric)", line, names[i], clipS(v))
				}
				b.AddNumber(i, x)
			default:
				b.AddString(i, v)
			}
		}
	}
}

func clipS(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// parquetTable reads a flat Parquet sample column by column.
type parquetTable struct {
	f *parquet.File
}

func (t *parquetTable) columns() []string {
	var out []string
	for _, path := range t.f.Schema().Columns() {
		out = append(out, strings.Join(path, "."))
	}
	return out
}

func (t *parquetTable) header() ([]string, error) {
	cols := t.columns()
	if len(cols) == 0 {
		return nil, invalidf("the Parquet baseline has no columns")
	}
	return cols, nil
}

func (t *parquetTable) inferKind(col string) (string, error) {
	leaf, ok := t.f.Schema().Lookup(strings.Split(col, ".")...)
	if !ok {
		return "", invalidf("no column %q in the Parquet baseline", col)
	}
	switch leaf.Node.Type().Kind() {
	case parquet.ByteArray, parquet.FixedLenByteArray:
		return stats.Categorical, nil
	}
	return stats.Numeric, nil
}

func (t *parquetTable) scan(names, kinds []string, b *stats.ProfileBuilder) error {
	cols := t.columns()
	feature := make([]int, len(cols))
	for j := range feature {
		feature[j] = slices.Index(names, cols[j])
	}
	buf := make([]parquet.Value, 1024)
	for _, rg := range t.f.RowGroups() {
		for range rg.NumRows() {
			b.AddRow()
		}
		for j, chunk := range rg.ColumnChunks() {
			i := feature[j]
			if i < 0 {
				continue
			}
			kind := chunk.Type().Kind()
			if kinds[i] == stats.Numeric && (kind == parquet.ByteArray || kind == parquet.FixedLenByteArray) {
				if err := t.scanNumericText(chunk, i, names[i], b, buf); err != nil {
					return err
				}
				continue
			}
			if err := readChunk(chunk, buf, func(v parquet.Value) error {
				switch {
				case v.IsNull():
					b.AddMissing(i)
				case kinds[i] == stats.Categorical:
					b.AddString(i, valueText(v))
				default:
					b.AddNumber(i, valueFloat(v))
				}
				return nil
			}); err != nil {
				return err
			}
		}
	}
	return nil
}

// scanNumericText reads a text column declared numeric by the schema: every value must parse.
func (t *parquetTable) scanNumericText(chunk parquet.ColumnChunk, i int, name string, b *stats.ProfileBuilder, buf []parquet.Value) error {
	return readChunk(chunk, buf, func(v parquet.Value) error {
		if v.IsNull() || isMissing(string(v.ByteArray())) {
			b.AddMissing(i)
			return nil
		}
		x, err := strconv.ParseFloat(strings.TrimSpace(string(v.ByteArray())), 64)
		if err != nil {
			return invalidf("the Parquet baseline's column %q holds %q, not a number (the feature is numeric)", name, clipS(string(v.ByteArray())))
		}
		b.AddNumber(i, x)
		return nil
	})
}

func readChunk(chunk parquet.ColumnChunk, buf []parquet.Value, fn func(parquet.Value) error) error {
	pages := chunk.Pages()
	defer pages.Close()
	for {
		page, err := pages.ReadPage()
		if err == io.EOF {
			return nil
		} else if err != nil {
			return invalidf("the Parquet baseline could not be read: %v", err)
		}
		vr := page.Values()
		for {
			n, err := vr.ReadValues(buf)
			for _, v := range buf[:n] {
				if ferr := fn(v); ferr != nil {
					parquet.Release(page)
					return ferr
				}
			}
			if err == io.EOF {
				break
			} else if err != nil {
				parquet.Release(page)
				return invalidf("the Parquet baseline could not be read: %v", err)
			}
		}
		parquet.Release(page)
	}
}

func valueFloat(v parquet.Value) float64 {
	switch v.Kind() {
	case parquet.Boolean:
		if v.Boolean() {
			return 1
		}
		return 0
	case parquet.Int32:
		return float64(v.Int32())
	case parquet.Int64:
		return float64(v.Int64())
	case parquet.Float:
		return float64(v.Float())
	case parquet.Double:
		return v.Double()
	}
	return math.NaN()
}

func valueText(v parquet.Value) string {
	switch v.Kind() {
	case parquet.ByteArray, parquet.FixedLenByteArray:
		return string(v.ByteArray())
	case parquet.Boolean:
		return strconv.FormatBool(v.Boolean())
	case parquet.Int32, parquet.Int64:
		return strconv.FormatInt(v.Int64(), 10)
	}
	return strconv.FormatFloat(valueFloat(v), 'g', -1, 64)
}
