package stats

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"testing"
)

// python runs script with Debian's /usr/bin/python3 (numpy, scipy, scikit-learn), feeding in as JSON on stdin and
// decoding its JSON stdout into out.
func python(tb testing.TB, script string, in, out any) {
	tb.Helper()
	const py = "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		tb.Skipf("%s not installed (scripts/install-deps.sh installs python3-scipy)", py)
	}
	b, err := json.Marshal(in)
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(py, "-c", script)
	cmd.Stdin = bytes.NewReader(b)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	res, err := cmd.Output()
	if err != nil {
		tb.Fatalf("python: %v\n%s", err, stderr.String())
	}
	if err := json.Unmarshal(res, out); err != nil {
		tb.Fatalf("python output: %v: %.500s", err, res)
	}
}

// within reports whether got agrees with want to 1e-6, absolutely or relative to want.
func within(got, want float64) bool {
	if math.IsNaN(want) || math.IsInf(want, 0) {
		return math.IsNaN(got) && math.IsNaN(want) || got == want
	}
	return math.Abs(got-want) <= 1e-6*math.Max(1, math.Abs(want))
}

// sample draws n values: normal(mu, sigma), rounded to `round` decimals when round >= 0 (ties exercise the
// ECDF's handling of equal values).
func sample(r *rand.Rand, n int, mu, sigma float64, round int) []float64 {
	out := make([]float64, n)
	for i := range out {
		v := mu + sigma*r.NormFloat64()
		if round >= 0 {
			p := math.Pow(10, float64(round))
			v = math.Round(v*p) / p
		}
		out[i] = v
	}
	return out
}

type twoSample struct {
	Name string    `json:"name"`
	A    []float64 `json:"a"`
	B    []float64 `json:"b"`
}

func twoSampleCases() []twoSample {
	r := rand.New(rand.NewPCG(1, 2))
	return []twoSample{
		{"tiny equal sizes", sample(r, 8, 0, 1, -1), sample(r, 8, 0.5, 1, -1)},
		{"equal sizes, same distribution", sample(r, 300, 0, 1, -1), sample(r, 300, 0, 1, -1)},
		{"equal sizes, shifted", sample(r, 300, 0, 1, -1), sample(r, 300, 0.4, 1, -1)},
		{"unequal small", sample(r, 37, 0, 1, -1), sample(r, 53, 0.3, 1.2, -1)},
		{"unequal with ties", sample(r, 500, 10, 3, 0), sample(r, 700, 10.5, 3, 0)},
		{"reference 1000, current 5000", sample(r, 1000, 0, 1, 2), sample(r, 5000, 0.05, 1, 2)},
		{"exact limit 10000 vs 999", sample(r, 10000, 0, 1, -1), sample(r, 999, 0, 1.1, -1)},
		{"asymptotic 1000 vs 20000", sample(r, 1000, 0, 1, -1), sample(r, 20000, 0.02, 1, -1)},
		{"asymptotic large shift", sample(r, 1000, 0, 1, -1), sample(r, 20000, 0.3, 1, -1)},
		{"asymptotic tiny shift small n", sample(r, 150, 0, 1, -1), sample(r, 12000, 0.0, 1, -1)},
		{"asymptotic 120 vs 30000", sample(r, 120, 0, 1, -1), sample(r, 30000, 0.15, 1, -1)},
		{"asymptotic 60 vs 20000 large d", sample(r, 60, 0, 1, -1), sample(r, 20000, 1.0, 1, -1)},
		{"asymptotic 20000 vs 30000", sample(r, 20000, 0, 1, 1), sample(r, 30000, 0.01, 1, 1)},
		{"disjoint", sample(r, 50, 0, 1, -1), sample(r, 20000, 100, 1, -1)},
	}
}

const scipyTwoSample = `
import json, sys, numpy as np
from scipy import stats
out = []
for c in json.load(sys.stdin):
    a, b = np.array(c["a"]), np.array(c["b"])
    ks = stats.ks_2samp(a, b)
    out.append({"ks_d": ks.statistic, "ks_p": ks.pvalue,
                "w": stats.wasserstein_distance(a, b),
                "wn": stats.wasserstein_distance(a, b) / max(np.std(a), 0.001)})
print(json.dumps(out))
`

func TestTwoSampleAgreesWithSciPy(t *testing.T) {
	cases := twoSampleCases()
	var want []struct {
		KSD float64 `json:"ks_d"`
		KSP float64 `json:"ks_p"`
		W   float64 `json:"w"`
		WN  float64 `json:"wn"`
	}
	python(t, scipyTwoSample, cases, &want)
	for i, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			d, p := KS2Samp(tc.A, tc.B)
			if !within(d, want[i].KSD) || !within(p, want[i].KSP) {
				t.Errorf("KS2Samp = (%.12g, %.12g), scipy (%.12g, %.12g)", d, p, want[i].KSD, want[i].KSP)
			}
			if w := Wasserstein(tc.A, tc.B); !within(w, want[i].W) {
				t.Errorf("Wasserstein = %.12g, scipy %.12g", w, want[i].W)
			}
			if w := WassersteinNormed(tc.A, tc.B); !within(w, want[i].WN) {
				t.Errorf("WassersteinNormed = %.12g, scipy %.12g", w, want[i].WN)
			}
		})
	}
}

// The kstwo survival function over the regions where SciPy switches algorithm.
func TestKolmogorovSFAgreesWithSciPy(t *testing.T) {
	type point struct {
		N int     `json:"n"`
		X float64 `json:"x"`
	}
	var pts []point
	for _, n := range []int{1, 2, 5, 10, 50, 100, 140, 141, 500, 1000, 5000, 50000, 100001, 400000} {
		for _, x := range []float64{0.0001, 0.001, 0.003, 0.01, 0.02, 0.03, 0.05, 0.08, 0.1, 0.15, 0.2, 0.3, 0.45, 0.5, 0.6, 0.9, 0.99} {
			pts = append(pts, point{n, x})
		}
	}
	var want []float64
	python(t, `
import json, sys
from scipy import stats
print(json.dumps([stats.kstwo.sf(p["x"], p["n"]) for p in json.load(sys.stdin)]))
`, pts, &want)
	for i, p := range pts {
		if got := KolmogorovSF(p.N, p.X); !within(got, want[i]) {
			t.Errorf("KolmogorovSF(%d, %g) = %.12g, scipy %.12g", p.N, p.X, got, want[i])
		}
	}
}

func distOf(x []float64, maxPoints int) *Dist {
	b := NewDistBuilder(maxPoints)
	for _, v := range x {
		b.Add(v)
	}
	return b.Dist()
}

// The streaming accumulator against an exact reference gives SciPy's KS statistic and p-value, and the
// Wasserstein distance (exactly when the ECDFs never cross between two reference points, else within the
// documented bound); its decile bins match numpy on the raw samples.
func TestNumericAccAgreesWithSciPy(t *testing.T) {
	cases := twoSampleCases()
	var want []struct {
		KSD   float64   `json:"ks_d"`
		KSP   float64   `json:"ks_p"`
		W     float64   `json:"w"`
		Edges []float64 `json:"edges"`
		Ref   []float64 `json:"ref"`
		Cur   []float64 `json:"cur"`
	}
	in := make([]map[string]any, len(cases))
	for i, tc := range cases {
		in[i] = map[string]any{"a": tc.A, "b": tc.B, "edges": distOf(tc.A, 0).DecileEdges()}
	}
	python(t, `
import json, sys, numpy as np
from scipy import stats
out = []
for c in json.load(sys.stdin):
    a, b, e = np.array(c["a"]), np.array(c["b"]), np.array(c["edges"])
    ks = stats.ks_2samp(a, b)
    ref = np.bincount(np.searchsorted(e, a, side="left"), minlength=len(e)+1) / len(a)
    cur = np.bincount(np.searchsorted(e, b, side="left"), minlength=len(e)+1) / len(b)
    out.append({"ks_d": ks.statistic, "ks_p": ks.pvalue, "w": stats.wasserstein_distance(a, b),
                "ref": ref.tolist(), "cur": cur.tolist()})
print(json.dumps(out))
`, in, &want)
	for i, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			ref := distOf(tc.A, 0)
			if !ref.Exact {
				t.Fatalf("reference of %d values is not exact", len(tc.A))
			}
			acc := NewNumericAcc(ref)
			for _, v := range tc.B {
				acc.Add(v)
			}
			d, p := acc.KS()
			if !within(d, want[i].KSD) || !within(p, want[i].KSP) {
				t.Errorf("KS = (%.12g, %.12g), scipy (%.12g, %.12g)", d, p, want[i].KSD, want[i].KSP)
			}
			if w := acc.Wasserstein(); !within(w, want[i].W) {
				t.Errorf("Wasserstein = %.12g, scipy %.12g", w, want[i].W)
			}
			r, c := acc.Binned(ref.DecileEdges())
			for j := range r {
				if !within(r[j], want[i].Ref[j]) || !within(c[j], want[i].Cur[j]) {
					t.Fatalf("bins = %v / %v, numpy %v / %v", r, c, want[i].Ref, want[i].Cur)
				}
			}
		})
	}
}

// onGrid keeps the values in [lo, hi].
func onGrid(x []float64, lo, hi float64) []float64 {
	var out []float64
	for _, v := range x {
		if v >= lo && v <= hi {
			out = append(out, v)
		}
	}
	return out
}

// Beyond ExactLimit values the accumulator streams: the Wasserstein distance is then exact when the current values
// fall on reference points (discrete features), and close otherwise.
func TestNumericAccWassersteinStreaming(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, tc := range []struct {
		name   string
		a, b   []float64
		relTol float64
	}{
		{"shared integer grid", sample(r, 5000, 20, 5, 0), onGrid(sample(r, ExactLimit+60000, 22, 5, 0), 8, 32), 1e-9},
		{"continuous, shifted", sample(r, 5000, 0, 1, -1), sample(r, ExactLimit+50000, 0.3, 1, -1), 1e-3},
		{"continuous, same distribution", sample(r, 5000, 0, 1, -1), sample(r, ExactLimit+50000, 0, 1, -1), 2e-2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref := distOf(tc.a, 0)
			acc := NewNumericAcc(ref)
			for _, v := range tc.b {
				acc.Add(v)
			}
			if acc.Exact() {
				t.Fatal("accumulator still exact beyond ExactLimit")
			}
			got, want := acc.Wasserstein(), Wasserstein(tc.a, tc.b)
			if math.Abs(got-want) > tc.relTol*want {
				t.Errorf("Wasserstein = %.12g, exact %.12g (relative error %.2g, tolerance %.2g)", got, want, math.Abs(got-want)/want, tc.relTol)
			}
		})
	}
}

func TestCategoricalAgreesWithSciPy(t *testing.T) {
	type catCase struct {
		Name string             `json:"name"`
		Ref  map[string]float64 `json:"ref"`
		Cur  map[string]float64 `json:"cur"`
	}
	cases := []catCase{
		{"three categories, same mix", map[string]float64{"basic": 500, "pro": 300, "enterprise": 200}, map[string]float64{"basic": 48, "pro": 33, "enterprise": 19}},
		{"three categories, shifted", map[string]float64{"basic": 500, "pro": 300, "enterprise": 200}, map[string]float64{"basic": 10, "pro": 30, "enterprise": 60}},
		{"two categories: Yates", map[string]float64{"yes": 40, "no": 60}, map[string]float64{"yes": 25, "no": 15}},
		{"two categories, tiny difference: Yates capped", map[string]float64{"yes": 50, "no": 50}, map[string]float64{"yes": 50, "no": 51}},
		{"new category in current", map[string]float64{"a": 100, "b": 100}, map[string]float64{"a": 30, "b": 30, "c": 40}},
		{"category missing from current", map[string]float64{"a": 100, "b": 100, "c": 5}, map[string]float64{"a": 30, "b": 30}},
		{"single category", map[string]float64{"a": 100}, map[string]float64{"a": 30}},
	}
	var want []struct {
		Chi float64 `json:"chi"`
		P   float64 `json:"p"`
		JS  float64 `json:"js"`
		PSI float64 `json:"psi"`
	}
	python(t, `
import json, sys, numpy as np
from scipy import stats
from scipy.spatial import distance
def fill(p):
    nz = p[p != 0]
    v = nz.min() / 10**6 if nz.min() <= 0.0001 else 0.0001
    p = p.copy(); p[p == 0] = v; return p
out = []
for c in json.load(sys.stdin):
    keys = sorted(set(c["ref"]) | set(c["cur"]))
    r = np.array([c["ref"].get(k, 0) for k in keys], dtype=float)
    u = np.array([c["cur"].get(k, 0) for k in keys], dtype=float)
    chi, p, dof, _ = stats.chi2_contingency(np.array([r, u]))
    rp, up = r / r.sum(), u / u.sum()
    fr, fu = fill(rp), fill(up)
    out.append({"chi": chi, "p": p, "js": distance.jensenshannon(rp, up), "psi": float(np.sum((fr - fu) * np.log(fr / fu)))})
print(json.dumps(out))
`, cases, &want)
	for i, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			acc := NewCatAcc(tc.Ref)
			for k, n := range tc.Cur {
				for range int(n) {
					acc.Add(k)
				}
			}
			chi := acc.ChiSquare()
			if !within(chi.Statistic, want[i].Chi) || !within(chi.PValue, want[i].P) {
				t.Errorf("chi-square = (%.12g, %.12g), scipy (%.12g, %.12g)", chi.Statistic, chi.PValue, want[i].Chi, want[i].P)
			}
			if js := acc.JensenShannon(); !within(js, want[i].JS) {
				t.Errorf("Jensen-Shannon = %.12g, scipy %.12g", js, want[i].JS)
			}
			if psi := acc.PSI(); !within(psi, want[i].PSI) {
				t.Errorf("PSI = %.12g, numpy %.12g", psi, want[i].PSI)
			}
		})
	}
}

func TestMetricsAgreeWithScikitLearn(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	n := 500
	truth, pred := make([]string, n), make([]string, n)
	scores := make([]float64, n)
	yt, yp := make([]float64, n), make([]float64, n)
	multiT, multiP := make([]string, n), make([]string, n)
	for i := range n {
		p := r.Float64()
		scores[i] = math.Round(p*100) / 100 // ties
		truth[i] = "0"
		if r.Float64() < p {
			truth[i] = "1"
		}
		pred[i] = "0"
		if scores[i] >= 0.5 {
			pred[i] = "1"
		}
		yt[i] = r.NormFloat64() * 10
		yp[i] = yt[i] + r.NormFloat64()*3
		multiT[i] = []string{"a", "b", "c"}[r.IntN(3)]
		multiP[i] = multiT[i]
		if r.Float64() < 0.3 {
			multiP[i] = []string{"a", "b", "c"}[r.IntN(3)]
		}
	}
	in := map[string]any{"t": truth, "p": pred, "s": scores, "yt": yt, "yp": yp, "mt": multiT, "mp": multiP}
	var want map[string]float64
	python(t, `
import json, sys, numpy as np
from sklearn import metrics as m
d = json.load(sys.stdin)
t = [int(x) for x in d["t"]]; p = [int(x) for x in d["p"]]
print(json.dumps({"acc": m.accuracy_score(t, p), "prec": m.precision_score(t, p), "rec": m.recall_score(t, p),
  "f1": m.f1_score(t, p), "auc": m.roc_auc_score(t, d["s"]), "ll": m.log_loss(t, d["s"]),
  "mae": m.mean_absolute_error(d["yt"], d["yp"]), "rmse": m.mean_squared_error(d["yt"], d["yp"]) ** 0.5,
  "r2": m.r2_score(d["yt"], d["yp"]),
  "macc": m.accuracy_score(d["mt"], d["mp"]), "mprec": m.precision_score(d["mt"], d["mp"], average="macro"),
  "mrec": m.recall_score(d["mt"], d["mp"], average="macro"), "mf1": m.f1_score(d["mt"], d["mp"], average="macro")}))
`, in, &want)
	c := ClassificationMetrics(truth, pred, scores, "1")
	mc := ClassificationMetrics(multiT, multiP, nil, "1")
	reg := RegressionMetrics(yt, yp)
	for _, tc := range []struct {
		name      string
		got, want float64
	}{
		{"accuracy", c.Accuracy, want["acc"]}, {"precision", c.Precision, want["prec"]}, {"recall", c.Recall, want["rec"]},
		{"f1", c.F1, want["f1"]}, {"roc_auc", *c.ROCAUC, want["auc"]}, {"log_loss", *c.LogLoss, want["ll"]},
		{"mae", reg.MAE, want["mae"]}, {"rmse", reg.RMSE, want["rmse"]}, {"r2", reg.R2, want["r2"]},
		{"macro accuracy", mc.Accuracy, want["macc"]}, {"macro precision", mc.Precision, want["mprec"]},
		{"macro recall", mc.Recall, want["mrec"]}, {"macro f1", mc.F1, want["mf1"]},
	} {
		if !within(tc.got, tc.want) {
			t.Errorf("%s = %.12g, scikit-learn %.12g", tc.name, tc.got, tc.want)
		}
	}
}
