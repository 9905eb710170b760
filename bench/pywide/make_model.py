"""The model of the Python fast-path benchmark (docs/benchmarks.md, "Python fast path"): StandardScaler +
LogisticRegression on 30 float features, trained on synthetic data (fixed seed), written as a Slipway model
directory (score.py, runtime.yaml, requirements.txt, model.pkl, metadata.json) plus payloads:

    /usr/bin/python3 bench/pywide/make_model.py OUT_DIR [--input numpy|dataframe]

--input numpy (the default) declares in runtime.yaml that predict() takes the 2-D numpy block
(SLIPWAY.PREDICT_INPUT); dataframe leaves it out, so the harness hands predict() a DataFrame.
The FastAPI and Flask peers load the same OUT_DIR/model.pkl.
"""

import argparse
import json
import os
import pickle
import shutil

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

HERE = os.path.dirname(os.path.realpath(__file__))
FEATURES = ["f%02d" % i for i in range(30)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--input", choices=("numpy", "dataframe"), default="numpy")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(7)
    X = rng.normal(size=(5000, len(FEATURES))) * rng.uniform(0.5, 20, size=len(FEATURES))
    w = rng.normal(size=len(FEATURES))
    y = (X @ w / np.abs(w).sum() + rng.normal(scale=0.5, size=len(X)) > 0).astype(int)
    pipe = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(max_iter=1000))]).fit(X, y)
    with open(os.path.join(args.out, "model.pkl"), "wb") as f:
        pickle.dump(pipe, f)
    shutil.copy2(os.path.join(HERE, "score.py"), os.path.join(args.out, "score.py"))
    shutil.copy2(os.path.join(HERE, "..", "..", "examples", "sklearn-churn", "requirements.txt"),
                 os.path.join(args.out, "requirements.txt"))
    with open(os.path.join(args.out, "runtime.yaml"), "w") as f:
        f.write("MODEL_ARTIFACT_VERSION: '3.0'\n")
        if args.input == "numpy":
            f.write("SLIPWAY:\n  PREDICT_INPUT: numpy  # predict() takes the 2-D float64 block\n")
    sample = X[:3].round(4).tolist()
    meta = {"runtime": "python", "description": "bench: StandardScaler + LogisticRegression, 30 float features",
            "input_schema": {"columns": [{"name": c, "dtype": "float64"} for c in FEATURES]},
            "sample_input": {"dataframe_split": {"columns": FEATURES, "data": sample}}}
    with open(os.path.join(args.out, "metadata.json"), "w") as f:
        json.dump(meta, f, indent=1)
    for n in (1, 100):
        with open(os.path.join(args.out, "frame-%d.json" % n), "w") as f:
            json.dump({"dataframe_split": {"columns": FEATURES, "data": X[:n].round(4).tolist()}}, f)


if __name__ == "__main__":
    main()
