"""Generate examples/data/churn.csv: a synthetic but realistic customer-churn data set.

    /usr/bin/python3 examples/data/make_churn.py [--rows 3000] [--seed 7] [--out PATH]

Deterministic for a given seed. Churn gets likelier with short tenure, high monthly charges, many support
calls and the basic plan, and less likely with age; a logistic link plus Bernoulli sampling adds the noise.
"""

import argparse
import csv
import os

import numpy as np

PLANS = ["basic", "pro", "enterprise"]


def generate(rows, seed):
    rng = np.random.default_rng(seed)
    plan = rng.choice(PLANS, size=rows, p=[0.5, 0.35, 0.15])
    age = np.clip(rng.normal(42, 13, rows), 18, 85).round()
    tenure = np.clip(rng.exponential(22, rows), 0, 72).round()
    base = np.select([plan == "basic", plan == "pro"], [30.0, 65.0], 105.0)
    charges = np.clip(base + rng.normal(0, 9, rows) + 0.08 * tenure, 15, 150).round(2)
    calls = rng.poisson(0.6 + 1.2 * (charges > base + 8) + 0.3 * (plan == "basic"), rows).astype(float)
    z = (-0.9 - 0.1 * tenure + 0.045 * (charges - 60) + 0.8 * calls - 0.03 * (age - 42)
         + np.select([plan == "basic", plan == "pro"], [0.5, 0.0], -0.8))
    churned = (rng.random(rows) < 1 / (1 + np.exp(-z))).astype(int)
    return {
        "customer_id": np.arange(100001, 100001 + rows),
        "age": age, "tenure_months": tenure, "monthly_charges": charges,
        "plan": plan, "support_calls": calls, "churned": churned,
    }


def main():
    here = os.path.dirname(os.path.realpath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", default=os.path.join(here, "churn.csv"))
    args = ap.parse_args()
    cols = generate(args.rows, args.seed)
    names = list(cols)
    with open(args.out, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(names)
        for i in range(args.rows):
            w.writerow([repr(float(cols[n][i])) if cols[n].dtype.kind == "f" else str(cols[n][i]) for n in names])
    print("wrote %s (%d rows, churn rate %.3f)" % (args.out, args.rows, cols["churned"].mean()))


if __name__ == "__main__":
    main()
