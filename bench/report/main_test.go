package main

import (
	"strings"
	"testing"
)

const sample = `
{"label":"ceiling","meta":{"target":"ceiling","rows":"1"},"c":32,"ok":100000,"errors":0,"rps":10000,"p50_ms":1,"p90_ms":2,"p99_ms":3,"max_ms":9}
{"label":"ceiling","meta":{"target":"ceiling","rows":"1"},"cpu":{"target":48.6,"loadgen":50.2,"other":1.2},"c":1,"ok":50000,"errors":0,"rps":5000,"p50_ms":0.2,"p90_ms":0.3,"p99_ms":0.4,"max_ms":2}
{"label":"flask","meta":{"target":"flask-gunicorn","rows":"1"},"cpu":{"target":40,"loadgen":20,"other":38},"c":32,"ok":5000,"errors":0,"rps":500,"p50_ms":60,"p90_ms":70,"p99_ms":80,"max_ms":120}
{"label":"flask","meta":{"target":"flask-gunicorn","rows":"100"},"c":32,"ok":2000,"errors":0,"rps":200,"p50_ms":150,"p90_ms":170,"p99_ms":180,"max_ms":220}
{"label":"py","meta":{"target":"slipway-python","rows":"1"},"c":32,"ok":9000,"errors":0,"rps":900,"p50_ms":30,"p90_ms":40,"p99_ms":50,"max_ms":60}
{"label":"py","meta":{"target":"slipway-python","rows":"100"},"c":32,"ok":5000,"errors":3,"first_error":"HTTP 503: queue | full","rps":500,"p50_ms":30,"p90_ms":40,"p99_ms":50,"max_ms":60}
{"meta":{"target":"slipway-onnx"},"skipped":"the server has no deployments API (POST /api/v1/deployments: 404)"}
{"label":"ceiling again","meta":{"target":"ceiling","rows":"1"},"c":32,"ok":110000,"errors":0,"rps":11000,"p50_ms":1,"p90_ms":2,"p99_ms":3,"max_ms":9}
`

func TestReport(t *testing.T) {
	recs, err := Read(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	Write(&b, recs)
	out := b.String()
	t.Log("\n" + out)
	for _, want := range []string{
		"| ceiling | 1 | 1 | 5000 | 0.20 | 0.30 | 0.40 | 2.00 | 0 | 49 / 50 / 1 |\n| ceiling | 1 | 32 | 11000 |", // sorted by c, the re-run wins
		"| slipway-onnx | | | not run: the server has no deployments API (POST /api/v1/deployments: 404) | | | | | | |\n",
		"| Slipway ONNX / Go net/http ceiling | 1 | 32 | – | ≥ 0.6 | n/a | slipway-onnx: the server has no deployments API",
		"| Slipway Python / Flask+gunicorn | 1 | 32 | 1.80× | ≥ 2 | MISS | 900.0 vs 500.0 req/s (1.80×); p99 50.00 vs 80.00 ms; measured on a busy machine |",
		"| flask-gunicorn | 1 | 32 | 500.0 | 60.00 | 70.00 | 80.00 | 120.0 | 0 | **40 / 20 / 38** |",
		"**1 cell(s) measured on a busy machine (other > 10%)**",
		"| Slipway Python / Flask+gunicorn | 100 | 32 | 2.50× | ≥ 2 | PASS | 500.0 vs 200.0 req/s (2.50×); p99 50.00 vs 180.0 ms; ERRORS (3 vs 0)",
		"slipway-forest-batch: not measured; slipway-forest-nobatch: not measured",
		`- slipway-python rows=100 c=32: 3 errors, first: HTTP 503: queue \| full`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q", want)
		}
	}
	if strings.Count(out, "| ceiling | 1 | 32 |") != 1 {
		t.Error("a re-measured cell must appear once")
	}
}

func TestReadRejectsBadLines(t *testing.T) {
	for _, in := range []string{"{", `{"c": 1}`} {
		if _, err := Read(strings.NewReader(in)); err == nil {
			t.Errorf("Read(%q) accepted", in)
		}
	}
}

// Interleaved rounds: the ratio is the median of the per-round ratios, rounds stay out of the grid table, and
// a round missing on one side is left out.
func TestRoundsGiveTheMedianRatio(t *testing.T) {
	const in = `
{"meta":{"target":"ceiling","rows":"1"},"c":32,"ok":1,"rps":40000,"p99_ms":3}
{"meta":{"target":"slipway-onnx-batch","rows":"1"},"c":32,"ok":1,"rps":20000,"p99_ms":4}
{"meta":{"target":"ceiling","rows":"1","round":"1"},"c":32,"ok":1,"rps":30000,"p99_ms":3}
{"meta":{"target":"slipway-onnx-batch","rows":"1","round":"1"},"c":32,"ok":1,"rps":19500,"p99_ms":4}
{"meta":{"target":"ceiling","rows":"1","round":"2"},"c":32,"ok":1,"rps":40000,"p99_ms":3}
{"meta":{"target":"slipway-onnx-batch","rows":"1","round":"2"},"c":32,"ok":1,"rps":24000,"p99_ms":4}
{"meta":{"target":"ceiling","rows":"1","round":"3"},"c":32,"ok":1,"rps":36000,"p99_ms":3}
{"meta":{"target":"slipway-onnx-batch","rows":"1","round":"3"},"c":32,"ok":1,"rps":18000,"p99_ms":4}
{"meta":{"target":"ceiling","rows":"1","round":"4"},"c":32,"ok":1,"rps":36000,"p99_ms":3}
`
	recs, err := Read(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	q := Ratios[1]
	if got := RoundRatios(recs, q); len(got) != 3 || got[0] != 0.65 || got[1] != 0.6 || got[2] != 0.5 {
		t.Fatalf("round ratios %v, want [0.65 0.6 0.5]", got)
	}
	measured, verdict, note := Evaluate(recs, q)
	if measured != "0.60×" || verdict != "PASS" || !strings.Contains(note, "median of 3 interleaved rounds (0.65, 0.60, 0.50)") ||
		!strings.Contains(note, "grid cells: 20000 vs 40000 req/s (0.50×)") {
		t.Fatalf("Evaluate = %q %q %q", measured, verdict, note)
	}
	var b strings.Builder
	Write(&b, recs)
	out := b.String()
	if strings.Count(out, "\n| ceiling | 1 | 32 |") != 1 || !strings.Contains(out, "\n| 4 | ceiling | 1 | 32 | 36000 |") {
		t.Errorf("rounds must be listed apart from the grid:\n%s", out)
	}
	if got := median([]float64{4, 1, 3, 2}); got != 2.5 {
		t.Errorf("median of an even count = %v, want 2.5", got)
	}
}
