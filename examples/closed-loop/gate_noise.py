"""How often the held-out gate (max_drop 0.02) refuses a candidate by chance: the closed-loop example's choices.

    /usr/bin/python3 examples/closed-loop/gate_noise.py --champion v1 --old 650 --new 200 --draws 40
    /usr/bin/python3 examples/closed-loop/gate_noise.py --champion v1 --new 1000 --draws 100
    /usr/bin/python3 examples/closed-loop/gate_noise.py --champion 1000 --new 2500 --draws 100

Each draw trains a candidate with retrain/train.py on rows from world.py (--old from before the change, --new
after it) and scores it and the champion on the candidate's held-out split, as the pipeline's evaluate step does.
The champion is sklearn-churn's model.pkl (v1) or a model trained the same way on that many new rows. Prints
the worst and 5th-percentile margin (the lower of the accuracy and ROC AUC differences) and the refusals.
"""

import argparse
import csv
import os
import pickle
import random
import subprocess
import sys
import tempfile

import pandas as pd
from sklearn.metrics import accuracy_score, roc_auc_score

HERE = os.path.dirname(os.path.realpath(__file__))
sys.path.insert(0, HERE)
import world  # noqa: E402


def train(rows):
    d = tempfile.mkdtemp()
    data, out = os.path.join(d, "rows.csv"), os.path.join(d, "model")
    with open(data, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(world.FEATURES + ["churned"])
        for row, churned in rows:
            w.writerow([row[c] for c in world.FEATURES] + [churned])
    subprocess.run([sys.executable, os.path.join(HERE, "..", "retrain", "train.py"), "--data", data, "--out", out],
                   check=True, capture_output=True)
    with open(os.path.join(out, "model.pkl"), "rb") as f:
        return pickle.load(f), pd.read_csv(os.path.join(out, "holdout.csv"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--champion", default="v1", help="v1, or the number of new rows to train the champion on")
    ap.add_argument("--old", type=int, default=0)
    ap.add_argument("--new", type=int, default=1000)
    ap.add_argument("--draws", type=int, default=40)
    ap.add_argument("--max-drop", type=float, default=0.02)
    args = ap.parse_args()

    if args.champion == "v1":
        with open(os.path.join(HERE, "..", "sklearn-churn", "model.pkl"), "rb") as f:
            v1 = pickle.load(f)
    margins = []
    for seed in range(args.draws):
        rng = random.Random(seed)
        if args.champion == "v1":
            champion = v1
        else:
            champion, _ = train([world.draw(rng, True) for _ in range(int(args.champion))])
        rows = [world.draw(rng, False) for _ in range(args.old)] + [world.draw(rng, True) for _ in range(args.new)]
        candidate, holdout = train(rows)
        X, y = holdout[world.FEATURES], holdout["churned"]
        accuracy = accuracy_score(y, candidate.predict(X)) - accuracy_score(y, champion.predict(X))
        auc = roc_auc_score(y, candidate.predict_proba(X)[:, 1]) - roc_auc_score(y, champion.predict_proba(X)[:, 1])
        margins.append(min(accuracy, auc))
    margins.sort()
    refused = sum(1 for m in margins if m < -args.max_drop)
    print("champion %s, candidate on %d old + %d new rows: worst margin %+.3f, 5th percentile %+.3f, refused %d of %d" % (
        args.champion, args.old, args.new, margins[0], margins[len(margins) // 20], refused, args.draws))


if __name__ == "__main__":
    main()
