"""Train the churn classifier and write model.pkl + metadata.json (the Slipway metadata contract).

    /usr/bin/python3 examples/sklearn-churn/train.py [--model logreg|forest] [--out DIR] [--data CSV]

--out defaults to this directory. When it is another directory, score.py, runtime.yaml and requirements.txt
are copied there too, so DIR is a complete model directory that `slipway models push DIR` accepts.
"""

import argparse
import getpass
import json
import os
import pickle
import platform
import shutil
import subprocess
import sys
import time
from importlib import metadata

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

HERE = os.path.dirname(os.path.realpath(__file__))
NUMERIC = ["age", "tenure_months", "monthly_charges", "support_calls"]
FEATURES = ["age", "tenure_months", "monthly_charges", "plan", "support_calls"]
PLANS = ["basic", "pro", "enterprise"]
LABEL = "churned"
COPIED = ["score.py", "runtime.yaml", "requirements.txt"]


def git(*args):
    try:
        r = subprocess.run(["git", "-C", HERE, *args], capture_output=True, text=True, timeout=5)
        return r.stdout.strip() if r.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def versions(names):
    out = {}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = None
    return out


def build(kind, seed):
    if kind == "forest":
        clf = RandomForestClassifier(n_estimators=100, min_samples_leaf=5, n_jobs=1, random_state=seed)
        hyper = {"n_estimators": 100, "min_samples_leaf": 5, "random_state": seed}
    else:
        clf = LogisticRegression(C=1.0, max_iter=1000)
        hyper = {"C": 1.0, "max_iter": 1000, "solver": "lbfgs"}
    pre = ColumnTransformer([
        ("num", StandardScaler(), NUMERIC),
        ("plan", OneHotEncoder(handle_unknown="ignore", categories=[PLANS]), ["plan"]),
    ])
    return Pipeline([("features", pre), ("model", clf)]), hyper


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=["logreg", "forest"], default="logreg")
    ap.add_argument("--out", default=HERE)
    ap.add_argument("--data", default=os.path.join(HERE, "..", "data", "churn.csv"))
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)

    t0 = time.time()
    df = pd.read_csv(args.data)
    X_train, X_test, y_train, y_test = train_test_split(
        df[FEATURES], df[LABEL], test_size=0.2, stratify=df[LABEL], random_state=args.seed)
    pipe, hyper = build(args.model, args.seed)
    pipe.fit(X_train, y_train)
    proba = pipe.predict_proba(X_test)[:, 1]
    metrics = {
        "accuracy": round(float(accuracy_score(y_test, (proba >= 0.5).astype(int))), 4),
        "roc_auc": round(float(roc_auc_score(y_test, proba)), 4),
    }

    with open(os.path.join(out, "model.pkl"), "wb") as f:
        pickle.dump(pipe, f, protocol=pickle.HIGHEST_PROTOCOL)
    if out != HERE:
        for name in COPIED:
            shutil.copy2(os.path.join(HERE, name), os.path.join(out, name))

    root = git("rev-parse", "--show-toplevel") or os.path.dirname(os.path.dirname(HERE))
    sample = X_test.head(3)
    env = versions(["scikit-learn", "numpy", "pandas"])
    meta = {
        "runtime": "python",
        "description": "Customer churn classifier (%s) on examples/data/churn.csv; predict() returns "
                       "prediction (0/1) and probability of churn." % type(pipe[-1]).__name__,
        "tags": {"team": "risk", "example": "sklearn-churn"},
        "input_schema": {"columns": [
            {"name": c, "dtype": "string", "allowed": PLANS} if c == "plan" else {"name": c, "dtype": "float64"}
            for c in FEATURES]},
        "output_schema": {"columns": [{"name": "prediction", "dtype": "int64"},
                                      {"name": "probability", "dtype": "float64"}]},
        "sample_input": {"data": [[v if isinstance(v, str) else float(v) for v in row]
                                  for row in sample.itertuples(index=False)], "columns": FEATURES},
        "metrics": metrics,
        "taxonomy": {"use_case": "binary_classification", "framework": "scikit-learn",
                     "framework_version": env["scikit-learn"], "algorithm": type(pipe[-1]).__name__,
                     "hyperparameters": hyper},
        "provenance": {"git_repo": git("config", "--get", "remote.origin.url"),
                       "git_branch": git("rev-parse", "--abbrev-ref", "HEAD"),
                       "git_commit": git("rev-parse", "HEAD"),
                       "training_script": "train.py",
                       "training_data": os.path.relpath(os.path.realpath(args.data), root),
                       "training_run": "", "author": os.environ.get("USER") or getpass.getuser()},
        "environment": {"python": platform.python_version(), "packages": env},
    }
    with open(os.path.join(out, "metadata.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")

    pinned = dict(line.strip().split("==", 1) for line in open(os.path.join(HERE, "requirements.txt")) if "==" in line)
    for name, v in env.items():
        if pinned.get(name) not in (None, v):
            print("warning: requirements.txt pins %s==%s but %s is installed" % (name, pinned[name], v), file=sys.stderr)
    print("%s: accuracy %.4f, roc_auc %.4f (%.1fs) -> %s" % (
        type(pipe[-1]).__name__, metrics["accuracy"], metrics["roc_auc"], time.time() - t0, out))


if __name__ == "__main__":
    main()
