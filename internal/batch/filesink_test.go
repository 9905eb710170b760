package batch

import (
	"bytes"
	"encoding/csv"
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"
)

// TestEncodeCSVMatchesEncodingCSV checks the CSV part encoder byte for byte against encoding/csv's Writer
// fed with column.text, on values that need quoting and values that do not.
func TestEncodeCSVMatchesEncodingCSV(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	texts := []string{"", "basic", `\.`, `a"b`, "a,b", "line\nbreak", "cr\rx", " lead", "\tlead", "\u00a0nbsp", "ünï", `""`, "trail ", "x\\.", "."}
	const n = 500
	id, score, label, cat, flag, at := newColumn(kindInt, n), newColumn(kindFloat, n), newColumn(kindInt, n), newColumn(kindString, n), newColumn(kindBool, n), newColumn(kindTime, n)
	for i := range n {
		id.i = append(id.i, rng.Int64()-math.MaxInt64/2)
		switch i % 5 {
		case 0:
			score.f = append(score.f, math.NaN())
		case 1:
			score.f = append(score.f, math.Inf(-1))
		case 2:
			score.f = append(score.f, 1e21*rng.Float64())
		default:
			score.f = append(score.f, rng.NormFloat64())
		}
		if i%7 == 0 {
			label.appendNull()
		} else {
			label.i = append(label.i, int64(i%3))
			label.markValue()
		}
		cat.s = append(cat.s, texts[rng.IntN(len(texts))])
		flag.b = append(flag.b, i%2 == 0)
		at.t = append(at.t, time.Unix(rng.Int64N(4e9), rng.Int64N(1e9)).In(time.FixedZone("x", 7200)))
	}
	for _, runID := range []string{"b-1", "b,\"odd\" id"} {
		out := &chunkOut{rows: n, cols: []*column{id, score, label, cat, flag, at}, scoredAt: time.Date(2024, 1, 2, 3, 4, 5, 600, time.UTC)}
		s := &fileSink{format: FormatCSV, runID: runID, model: "churn model", version: 12}
		var got bytes.Buffer
		if err := s.encodeCSV(&got, out); err != nil {
			t.Fatal(err)
		}
		var want bytes.Buffer
		cw := csv.NewWriter(&want)
		for r := range n {
			rec := []string{}
			for _, c := range out.cols {
				rec = append(rec, c.text(r))
			}
			rec = append(rec, s.model, strconv.Itoa(s.version), s.runID, out.scoredAt.UTC().Format(time.RFC3339Nano))
			cw.Write(rec)
		}
		cw.Flush()
		if got.String() != want.String() {
			g, w := got.String(), want.String()
			i := 0
			for i < len(g) && i < len(w) && g[i] == w[i] {
				i++
			}
			t.Fatalf("run id %q: differs at byte %d: got %q, want %q", runID, i, g[i:min(len(g), i+80)], w[i:min(len(w), i+80)])
		}
	}
}
