package batch

import (
	"encoding/binary"
	"math"
	"sync"
	"time"
)

// PostgreSQL binary COPY, written straight from a chunk's columns.
//
// pgx's CopyFrom takes a []any per row and looks up an encode plan for every value: at 10k rows × 7 columns
// per chunk that was ~40% of the server's CPU in a Parquet → PostgreSQL run (boxing, plan lookups, map
// accesses). The binary format is simple and our column kinds map one to one to the types Slipway creates
// (BIGINT, DOUBLE PRECISION, TEXT, BOOLEAN, TIMESTAMPTZ), so the sink encodes those itself. A table whose
// columns have other types (an existing INTEGER or NUMERIC column, say) keeps the pgx path, which converts.

// pgBinaryType is the information_schema data_type each kind is written as in binary.
var pgBinaryType = [...]string{kindInt: "bigint", kindFloat: "double precision", kindString: "text", kindBool: "boolean", kindTime: "timestamp with time zone"}

var pgCopyHeader = []byte("PGCOPY\n\xff\r\n\x00\x00\x00\x00\x00\x00\x00\x00\x00")

// pgEpoch is PostgreSQL's timestamp origin (2000-01-01 UTC) in Unix microseconds.
const pgEpoch = 946684800 * 1_000_000

// copyBufs recycles chunk-sized COPY buffers (about 100 bytes a row): at most one per writer in flight.
var copyBufs = sync.Pool{New: func() any { return new([]byte) }}

// appendPGCopy appends the binary COPY stream of out's rows followed by the meta columns (model,
// model_version, batch_id, scored_at) to dst. NaN floats and null values are written as NULL, as the pgx
// path does.
func appendPGCopy(dst []byte, out *chunkOut, model string, version int, runID string) []byte {
	dst = append(dst, pgCopyHeader...)
	// The meta fields are the same on every row: encode them once.
	var meta []byte
	meta = appendPGText(meta, model)
	meta = binary.BigEndian.AppendUint32(meta, 8)
	meta = binary.BigEndian.AppendUint64(meta, uint64(int64(version)))
	meta = appendPGText(meta, runID)
	meta = binary.BigEndian.AppendUint32(meta, 8)
	meta = binary.BigEndian.AppendUint64(meta, uint64(pgTime(out.scoredAt)))
	nfields := uint16(len(out.cols) + len(metaCols))
	for r := range out.rows {
		dst = binary.BigEndian.AppendUint16(dst, nfields)
		for _, c := range out.cols {
			if c.isNull(r) {
				dst = binary.BigEndian.AppendUint32(dst, math.MaxUint32) // -1: NULL
				continue
			}
			switch c.kind {
			case kindInt:
				dst = binary.BigEndian.AppendUint32(dst, 8)
				dst = binary.BigEndian.AppendUint64(dst, uint64(c.i[r]))
			case kindFloat:
				if math.IsNaN(c.f[r]) {
					dst = binary.BigEndian.AppendUint32(dst, math.MaxUint32)
					continue
				}
				dst = binary.BigEndian.AppendUint32(dst, 8)
				dst = binary.BigEndian.AppendUint64(dst, math.Float64bits(c.f[r]))
			case kindString:
				dst = appendPGText(dst, c.s[r])
			case kindBool:
				b := byte(0)
				if c.b[r] {
					b = 1
				}
				dst = append(binary.BigEndian.AppendUint32(dst, 1), b)
			case kindTime:
				dst = binary.BigEndian.AppendUint32(dst, 8)
				dst = binary.BigEndian.AppendUint64(dst, uint64(pgTime(c.t[r])))
			default:
				dst = binary.BigEndian.AppendUint32(dst, math.MaxUint32)
			}
		}
		dst = append(dst, meta...)
	}
	return binary.BigEndian.AppendUint16(dst, math.MaxUint16) // -1: end of data
}

func appendPGText(dst []byte, s string) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(s)))
	return append(dst, s...)
}

// pgTime is t in microseconds since 2000-01-01 UTC (pgx's encoding: sub-microsecond digits are dropped).
func pgTime(t time.Time) int64 { return t.UnixMicro() - pgEpoch }
