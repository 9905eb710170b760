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
		"| Slipway Python / Flask+gunicorn | 1 | 32 | 1.80× | ≥ 2 | MISS | 900.0 vs 500.0 req/s; p99 50.00 vs 80.00 ms; measured on a busy machine |",
		"| flask-gunicorn | 1 | 32 | 500.0 | 60.00 | 70.00 | 80.00 | 120.0 | 0 | **40 / 20 / 38** |",
		"**1 cell(s) measured on a busy machine (other > 10%)**",
		"| Slipway Python / Flask+gunicorn | 100 | 32 | 2.50× | ≥ 2 | PASS | 500.0 vs 200.0 req/s; p99 50.00 vs 180.0 ms; ERRORS (3 vs 0)",
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
