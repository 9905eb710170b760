package batch

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/parquet-go/parquet-go"

	"github.com/slipway-ml/slipway"
)

// Output file formats.
const (
	FormatCSV     = "csv"
	FormatParquet = "parquet"
	FormatJSONL   = "jsonl"
)

// fileSink writes each chunk as a part: the chunk's rows encoded in the output's format (a scratch file:
// temp, fsync, rename), stored as a blob in the artifact store, then recorded in the database. The record is
// the chunk's checkpoint, shared by every server, and is taken once (another server's commit of the same
// chunk fails). finish merges the parts in chunk order into one output file, stored as a blob too.
type fileSink struct {
	svc     *Service
	dir     string // the run's scratch folder
	format  string
	runID   string
	model   string
	version int
	cols    []outCol
	schema  *parquet.Schema
	leaf    []int // parquet: leaf index of each column (the schema orders fields by name)
	log     *slog.Logger
}

func newFileSink(svc *Service, dir, format, runID, model string, version int, log *slog.Logger) *fileSink {
	return &fileSink{svc: svc, dir: dir, format: format, runID: runID, model: model, version: version, log: log}
}

// OutputName is the file name of a run's merged output.
func OutputName(format string) string { return "output." + format }

func (s *fileSink) prepare(ctx context.Context, cols []outCol) error {
	s.cols = append(append([]outCol{}, cols...), metaCols...)
	seen := map[string]bool{}
	for _, c := range s.cols {
		if seen[c.name] {
			return slipway.Errorf(slipway.EINVALID, "the output would have two columns named %q: rename the key column or the model output", c.name)
		}
		seen[c.name] = true
	}
	if s.format == FormatParquet {
		g := parquet.Group{}
		for _, c := range s.cols {
			g[c.name] = parquet.Optional(parquetNode(c.kind))
		}
		s.schema = parquet.NewSchema("predictions", g)
		s.leaf = make([]int, len(s.cols))
		for i, c := range s.cols {
			leaf, ok := s.schema.Lookup(c.name)
			if !ok {
				return fmt.Errorf("batch: parquet schema lost column %q", c.name)
			}
			s.leaf[i] = leaf.ColumnIndex
		}
	}
	return os.MkdirAll(s.dir, 0o755)
}

func parquetNode(k kind) parquet.Node {
	switch k {
	case kindInt:
		return parquet.Int(64)
	case kindFloat:
		return parquet.Leaf(parquet.DoubleType)
	case kindBool:
		return parquet.Leaf(parquet.BooleanType)
	case kindTime:
		return parquet.Timestamp(parquet.Microsecond)
	}
	// Dictionary-encoded: text outputs repeat (every row carries the model name and the run id, labels are
	// categorical), and compressing 10k copies of a run id per part was the biggest cost of writing it.
	return parquet.Encoded(parquet.String(), &parquet.RLEDictionary)
}

func (s *fileSink) partName(i int) string {
	return filepath.Join(s.dir, fmt.Sprintf("part-%06d.%s", i, s.format))
}

func (s *fileSink) committed(ctx context.Context) (map[int]chunkRecord, error) {
	parts, err := s.svc.store.FindBatchParts(ctx, s.runID)
	if err != nil {
		return nil, err
	}
	out := make(map[int]chunkRecord, len(parts))
	for _, p := range parts {
		out[p.Chunk] = chunkRecord{rows: p.Rows, skipped: p.Skipped, errors: p.Errors}
	}
	return out, nil
}

func (s *fileSink) write(ctx context.Context, out *chunkOut) error {
	part := slipway.BatchPart{Chunk: out.index, Rows: int64(out.rows), Skipped: int64(out.skipped), Errors: out.errors}
	if out.rows > 0 { // a chunk whose rows were all skipped adds nothing to the output: no blob
		digest, err := s.storePart(ctx, out)
		if err != nil {
			return err
		}
		part.Digest = digest
	}
	if err := s.svc.store.CommitBatchPart(ctx, s.runID, part); err != nil {
		if part.Digest != "" { // the part holds this attempt's scored_at: no other record can share it
			s.svc.dropBlob(context.WithoutCancel(ctx), part.Digest, "a part of batch prediction "+s.runID)
		}
		return fmt.Errorf("batch: commit part %d: %w", out.index, err)
	}
	return nil
}

// storePart encodes a chunk into a scratch file and stores it in the artifact store.
func (s *fileSink) storePart(ctx context.Context, out *chunkOut) (string, error) {
	p := s.partName(out.index)
	defer func() { _ = os.Remove(p) }() // stored or failed, the scratch copy is done with (the run's end removes its folder)
	if err := writeAtomic(p, func(w io.Writer) error { return s.encode(w, out) }); err != nil {
		return "", fmt.Errorf("batch: write part %d: %w", out.index, err)
	}
	digest, _, err := s.svc.blobs.PutFile(ctx, p)
	if err != nil {
		return "", fmt.Errorf("batch: store part %d in the artifact store: %w", out.index, err)
	}
	return digest, nil
}

func (s *fileSink) encode(w io.Writer, out *chunkOut) error {
	if s.format == FormatCSV {
		return s.encodeCSV(w, out)
	}
	// Column by column through the writer's column writers: no row is assembled, and the constant meta
	// columns are one value repeated (row assembly was most of the part's CPU).
	pw := parquet.NewGenericWriter[any](w, s.schema, parquet.Compression(&parquet.Snappy))
	if out.rows == 0 { // every row of the chunk was skipped: an empty part
		return pw.Close()
	}
	writers := pw.ColumnWriters()
	vals := make([]parquet.Value, out.rows)
	for i, c := range out.cols {
		leaf := s.leaf[i]
		for r := range out.rows {
			vals[r] = parquetValueAt(c, r, leaf)
		}
		if _, err := writers[leaf].WriteRowValues(vals); err != nil {
			return err
		}
	}
	for j, v := range []any{s.model, int64(s.version), s.runID, out.scoredAt} {
		leaf := s.leaf[len(out.cols)+j]
		pv := parquetValue(v, leaf)
		for r := range vals {
			vals[r] = pv
		}
		if _, err := writers[leaf].WriteRowValues(vals); err != nil {
			return err
		}
	}
	return pw.Close()
}

// parquetValueAt is parquetValue(c.value(r), col) without boxing the value in an interface.
func parquetValueAt(c *column, r, col int) parquet.Value {
	if c.isNull(r) {
		return parquet.NullValue().Level(0, 0, col)
	}
	var pv parquet.Value
	switch c.kind {
	case kindInt:
		pv = parquet.Int64Value(c.i[r])
	case kindFloat:
		if math.IsNaN(c.f[r]) {
			return parquet.NullValue().Level(0, 0, col)
		}
		pv = parquet.DoubleValue(c.f[r])
	case kindBool:
		pv = parquet.BooleanValue(c.b[r])
	case kindString:
		pv = parquet.ByteArrayValue([]byte(c.s[r]))
	case kindTime:
		pv = parquet.Int64Value(c.t[r].UnixMicro())
	default:
		return parquet.NullValue().Level(0, 0, col)
	}
	return pv.Level(0, 1, col)
}

// encodeCSV writes the rows exactly as encoding/csv's Writer does (comma, LF line ends: mergeCSV's header is
// written with it), but formats numbers straight into one row buffer: a string per value and csv.Writer's
// per-field checks were most of a CSV part's CPU.
func (s *fileSink) encodeCSV(w io.Writer, out *chunkOut) error {
	var meta []byte // the same on every row
	for _, v := range []string{s.model, strconv.Itoa(s.version), s.runID, out.scoredAt.UTC().Format(time.RFC3339Nano)} {
		meta = appendCSVField(append(meta, ','), v)
	}
	meta = append(meta, '\n')
	if len(out.cols) == 0 {
		meta = meta[1:]
	}
	buf := make([]byte, 0, 64<<10)
	for r := range out.rows {
		for i, c := range out.cols {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = appendCSVValue(buf, c, r)
		}
		buf = append(buf, meta...)
		if len(buf) >= 60<<10 {
			if _, err := w.Write(buf); err != nil {
				return err
			}
			buf = buf[:0]
		}
	}
	_, err := w.Write(buf)
	return err
}

// appendCSVValue appends c.text(r) as a CSV field. Numbers, booleans and timestamps never need quotes.
func appendCSVValue(dst []byte, c *column, r int) []byte {
	if c.isNull(r) {
		return dst
	}
	switch c.kind {
	case kindInt:
		return strconv.AppendInt(dst, c.i[r], 10)
	case kindFloat:
		if math.IsNaN(c.f[r]) {
			return dst
		}
		return strconv.AppendFloat(dst, c.f[r], 'g', -1, 64)
	case kindBool:
		return strconv.AppendBool(dst, c.b[r])
	case kindTime:
		return c.t[r].UTC().AppendFormat(dst, time.RFC3339Nano)
	}
	return appendCSVField(dst, c.text(r))
}

// appendCSVField appends field quoted as encoding/csv's Writer quotes it (Comma ',', UseCRLF false).
func appendCSVField(dst []byte, field string) []byte {
	if !csvNeedsQuotes(field) {
		return append(dst, field...)
	}
	dst = append(dst, '"')
	for i := 0; i < len(field); i++ {
		if field[i] == '"' {
			dst = append(dst, '"')
		}
		dst = append(dst, field[i])
	}
	return append(dst, '"')
}

// csvNeedsQuotes is encoding/csv's Writer.fieldNeedsQuotes for Comma ','.
func csvNeedsQuotes(field string) bool {
	if field == "" {
		return false
	}
	if field == `\.` {
		return true
	}
	for i := 0; i < len(field); i++ {
		switch field[i] {
		case '\n', '\r', '"', ',':
			return true
		}
	}
	r1, _ := utf8.DecodeRuneInString(field)
	return unicode.IsSpace(r1)
}

func parquetValue(v any, col int) parquet.Value {
	var pv parquet.Value
	switch x := v.(type) {
	case nil:
		return parquet.NullValue().Level(0, 0, col)
	case int64:
		pv = parquet.Int64Value(x)
	case float64:
		pv = parquet.DoubleValue(x)
	case bool:
		pv = parquet.BooleanValue(x)
	case string:
		pv = parquet.ByteArrayValue([]byte(x))
	case time.Time:
		pv = parquet.Int64Value(x.UnixMicro())
	}
	return pv.Level(0, 1, col)
}

// finish merges the parts in chunk order into the output file and stores it in the artifact store. The parts
// stay until the run's success is recorded (Service.dropParts): a server that dies before resumes from them.
func (s *fileSink) finish(ctx context.Context) (slipway.BatchOutput, error) {
	parts, err := s.svc.store.FindBatchParts(ctx, s.runID)
	if err != nil {
		return slipway.BatchOutput{}, err
	}
	var digests []string
	for _, p := range parts {
		if p.Digest != "" {
			digests = append(digests, p.Digest)
		}
	}
	final := filepath.Join(s.dir, OutputName(s.format))
	defer func() { _ = os.Remove(final) }() // stored or failed, the scratch copy is done with (the run's end removes its folder)
	err = writeAtomic(final, func(w io.Writer) error {
		if s.format == FormatCSV {
			return s.mergeCSV(ctx, w, digests)
		}
		return s.mergeParquet(ctx, w, digests)
	})
	if err != nil {
		return slipway.BatchOutput{}, fmt.Errorf("batch: merge output: %w", err)
	}
	digest, size, err := s.svc.blobs.PutFile(ctx, final)
	if err != nil {
		return slipway.BatchOutput{}, fmt.Errorf("batch: store the output in the artifact store: %w", err)
	}
	return slipway.BatchOutput{Format: s.format, Download: "/api/v1/batch-predictions/" + s.runID + "/output", Size: size, SHA256: digest}, nil
}

func (s *fileSink) mergeCSV(ctx context.Context, w io.Writer, parts []string) error {
	header := make([]string, len(s.cols))
	for i, c := range s.cols {
		header[i] = c.name
	}
	cw := csv.NewWriter(w)
	if err := cw.Write(header); err != nil {
		return err
	}
	cw.Flush()
	for _, d := range parts {
		if err := s.copyPart(ctx, w, d); err != nil {
			return err
		}
	}
	return nil
}

// copyPart appends part blob digest to w, verified against its digest as it is read.
func (s *fileSink) copyPart(ctx context.Context, w io.Writer, digest string) error {
	rc, err := s.svc.blobs.Open(ctx, digest)
	if err != nil {
		return s.svc.blobError(err, "a part of batch prediction "+s.runID)
	}
	defer rc.Close()
	if _, err := io.Copy(w, rc); err != nil {
		return s.svc.blobError(err, "a part of batch prediction "+s.runID)
	}
	return nil
}

func (s *fileSink) mergeParquet(ctx context.Context, w io.Writer, parts []string) error {
	pw := parquet.NewGenericWriter[any](w, s.schema, parquet.Compression(&parquet.Snappy))
	buf := make([]parquet.Row, 1024)
	for _, d := range parts {
		p, cached, err := s.svc.blobFile(ctx, d, "a part of batch prediction "+s.runID)
		if err != nil {
			return err
		}
		err = copyParquet(pw, p, buf)
		if cached {
			_ = os.Remove(p) // a copy fetched for this merge only; the cache is cleared at start anyway
		}
		if err != nil {
			return err
		}
	}
	return pw.Close()
}

func copyParquet(pw *parquet.GenericWriter[any], path string, buf []parquet.Row) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	pf, err := openParquet(f, st.Size())
	if err != nil {
		return fmt.Errorf("part %s: %w", filepath.Base(path), err)
	}
	// Each part's row groups are spliced in as they are (compressed pages copied, nothing decoded) when the
	// writer can; a part written by an older version with another schema layout is copied row by row.
	for _, rg := range pf.RowGroups() {
		if _, err := pw.WriteRowGroup(rg); errors.Is(err, parquet.ErrRowGroupSchemaMismatch) {
			return copyParquetRows(pw, pf, buf)
		} else if err != nil {
			return err
		}
	}
	return nil
}

func copyParquetRows(pw *parquet.GenericWriter[any], pf *parquet.File, buf []parquet.Row) error {
	r := parquet.NewReader(pf)
	defer r.Close()
	for {
		n, err := r.ReadRows(buf)
		if n > 0 {
			if _, werr := pw.WriteRows(buf[:n]); werr != nil {
				return werr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return err
		}
	}
}

func (s *fileSink) close() error { return nil }

// writeAtomic writes path through a temp file in the same folder: fsync, then rename.
func writeAtomic(path string, fill func(io.Writer) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	bw := bufio.NewWriterSize(f, 256<<10)
	err = fill(bw)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp) // the write's error is the one to report; a leftover .tmp- file is never read
	}
	return err
}
