"""Retrain the churn classifier for the `retrain` pipeline (examples/retrain/pipeline.yaml).

    python3 retrain/train.py --data data/churn.csv --out DIR [--features all|minimal] [--C 1.0]

Reuses examples/sklearn-churn/train.py (its feature pipeline and metadata contract) and writes a complete model
directory to DIR: model.pkl, score.py, runtime.yaml, requirements.txt, metadata.json (with the test-split
metrics the script measured itself) and outputs.json (the same metrics, for later steps), plus two data files:
holdout.csv (the test split with its `churned` labels: the pipeline's evaluate step scores the candidate and
the champion on it in their real runtimes) and baseline.csv (the training features: the version's drift
baseline, stored at registration).

--features minimal trains on `age` alone: a deliberately worse model that the quality gate must stop.
"""

import argparse
import importlib.util
import json
import os
import pickle
import shutil
import sys
import time

HERE = os.path.dirname(os.path.realpath(__file__))
BASE = os.path.join(HERE, "..", "sklearn-churn")


def load_base():
    spec = importlib.util.spec_from_file_location("churn_train", os.path.join(BASE, "train.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.path.join(HERE, "..", "data", "churn.csv"))
    ap.add_argument("--out", default=os.environ.get("SLIPWAY_OUTPUT_DIR", "out"))
    ap.add_argument("--features", choices=["all", "minimal"], default="all")
    ap.add_argument("--C", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()

    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, roc_auc_score
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    base = load_base()
    t0 = time.time()
    df = pd.read_csv(args.data)
    X_train, X_test, y_train, y_test = train_test_split(
        df[base.FEATURES], df[base.LABEL], test_size=0.2, stratify=df[base.LABEL], random_state=args.seed)
    if args.features == "all":
        pre = ColumnTransformer([
            ("num", StandardScaler(), base.NUMERIC),
            ("plan", OneHotEncoder(handle_unknown="ignore", categories=[base.PLANS]), ["plan"]),
        ])
    else:
        pre = ColumnTransformer([("num", StandardScaler(), ["age"])])
    pipe = Pipeline([("features", pre), ("model", LogisticRegression(C=args.C, max_iter=1000))])
    pipe.fit(X_train, y_train)
    proba = pipe.predict_proba(X_test)[:, 1]
    metrics = {
        "accuracy": round(float(accuracy_score(y_test, (proba >= 0.5).astype(int))), 4),
        "roc_auc": round(float(roc_auc_score(y_test, proba)), 4),
    }

    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "model.pkl"), "wb") as f:
        pickle.dump(pipe, f, protocol=pickle.HIGHEST_PROTOCOL)
    for name in base.COPIED:
        shutil.copy2(os.path.join(BASE, name), os.path.join(out, name))
    with open(os.path.join(BASE, "metadata.json")) as f:
        meta = json.load(f)  # schemas, sample input, environment: the same contract as the base example
    meta["description"] = "Churn classifier retrained by the retrain pipeline (features=%s, C=%g)." % (args.features, args.C)
    meta["metrics"] = metrics
    meta["tags"] = {"team": "risk", "example": "retrain", "features": args.features}
    meta["taxonomy"]["hyperparameters"] = {"C": args.C, "max_iter": 1000, "features": args.features}
    meta["provenance"].update({"training_script": "retrain/train.py", "training_run": os.environ.get("SLIPWAY_RUN_ID", ""),
                               "git_repo": "", "git_branch": "", "git_commit": ""})
    with open(os.path.join(out, "metadata.json"), "w") as f:
        json.dump(meta, f, indent=2)
    holdout = X_test.copy()
    holdout[base.LABEL] = y_test
    holdout.to_csv(os.path.join(out, "holdout.csv"), index=False)
    X_train.to_csv(os.path.join(out, "baseline.csv"), index=False)
    with open(os.path.join(out, "outputs.json"), "w") as f:
        json.dump(metrics, f)
    print("features=%s C=%g: accuracy %.4f, roc_auc %.4f (%.1fs) -> %s" % (
        args.features, args.C, metrics["accuracy"], metrics["roc_auc"], time.time() - t0, out))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
