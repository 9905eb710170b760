"""Drift benchmark, Python side (numpy/scipy): generates the data set, then computes the same tests as Slipway.

    /usr/bin/python3 bench/monitor/drift.py OUTDIR [--rows 1000000] [--features 20] [--ref-rows 1000,100000]

Writes OUTDIR/cur.f64 (features x rows, little-endian float64, column-major by feature) and, per reference size R,
OUTDIR/ref-R.f64, then times per reference size the tests Evidently picks by default (reference <= 1000 rows:
ks_2samp for numbers, chi2_contingency for categories; larger: wasserstein_distance / std(reference) and
jensenshannon of the category proportions) plus PSI (numbers: on the reference's deciles; categories: per value),
and prints one JSON object per reference size with the seconds and every statistic (bench/monitor/drift compares
its results with them).

Features 0..14 are numeric (normal, some rounded to integers so that values repeat), 15..19 categorical (integer
codes of 3..12 categories). The current sample shifts features 0, 3, 15.
"""
import json, sys, time
import numpy as np
from scipy import stats
from scipy.spatial import distance

def main():
    out = sys.argv[1]
    args = dict(zip(sys.argv[2::2], sys.argv[3::2]))
    rows = int(args.get("--rows", 1_000_000))
    nf = int(args.get("--features", 20))
    ref_sizes = [int(x) for x in args.get("--ref-rows", "1000,100000").split(",")]
    ncat = 5
    rng = np.random.default_rng(42)
    def gen(n, shift):
        cols = []
        for f in range(nf):
            if f < nf - ncat:
                x = rng.normal(10 * f, 1 + f % 4, n)
                if shift and f in (0, 3):
                    x = x + 0.5 * (1 + f % 4)
                if f % 3 == 1:
                    x = np.round(x)
            else:
                k = 3 + (f % 10)
                p = np.arange(1, k + 1, dtype=float); p /= p.sum()
                if shift and f == nf - ncat:
                    p = p[::-1]
                x = rng.choice(k, n, p=p).astype(float)
            cols.append(x)
        return np.array(cols)
    cur = gen(rows, True)
    cur.astype("<f8").tofile(f"{out}/cur.f64")
    for r in ref_sizes:
        ref = gen(r, False)
        ref.astype("<f8").tofile(f"{out}/ref-{r}.f64")
        t0 = time.perf_counter()
        res = []
        for f in range(nf):
            a, b = ref[f], cur[f]
            def per_value(a, b):
                keys = np.union1d(np.unique(a), np.unique(b))
                rc = np.array([np.count_nonzero(a == k) for k in keys], dtype=float)
                cc = np.array([np.count_nonzero(b == k) for k in keys], dtype=float)
                return rc, cc
            if f < nf - ncat:
                s = np.sort(a)
                edges = []
                for k in range(1, 10):
                    e = s[int(np.ceil(k * len(s) / 10)) - 1]
                    if e != s[-1] and (not edges or edges[-1] != e):
                        edges.append(e)
                e = np.array(edges)
                if len(np.unique(a)) <= 20:  # few values: PSI per value (Evidently's rule)
                    rc, cc = per_value(a, b)
                    rp, cp = rc / rc.sum(), cc / cc.sum()
                else:  # PSI on the reference's deciles
                    rp = np.bincount(np.searchsorted(e, a, side="left"), minlength=len(e) + 1) / len(a)
                    cp = np.bincount(np.searchsorted(e, b, side="left"), minlength=len(e) + 1) / len(b)
                if r <= 1000:
                    ks = stats.ks_2samp(a, b)
                    stat, p = ks.statistic, ks.pvalue
                else:
                    stat, p = stats.wasserstein_distance(a, b) / max(np.std(a), 0.001), None
            else:
                rc, cc = per_value(a, b)
                rp, cp = rc / rc.sum(), cc / cc.sum()
                if r <= 1000:
                    chi, p, _, _ = stats.chi2_contingency(np.array([rc, cc]))
                    stat = chi
                else:
                    stat, p = distance.jensenshannon(rp, cp), None
            def fill(x):
                nz = x[x != 0]
                v = nz.min() / 10**6 if nz.min() <= 0.0001 else 0.0001
                x = x.copy(); x[x == 0] = v
                return x
            fr, fc = fill(rp), fill(cp)
            psi = float(np.sum((fr - fc) * np.log(fr / fc)))
            res.append({"statistic": float(stat), "p_value": None if p is None else float(p), "psi": psi})
        secs = time.perf_counter() - t0
        print(json.dumps({"ref_rows": r, "rows": rows, "features": nf, "seconds": secs, "results": res}))
        sys.stdout.flush()

main()
