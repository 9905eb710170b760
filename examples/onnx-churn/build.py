"""Build model.onnx (+ metadata.json, expected.json): a logistic regression on the numeric churn features.

    /usr/bin/python3 examples/onnx-churn/build.py [--out DIR] [--data CSV]

The graph is written with onnx.helper (no skl2onnx): the StandardScaler is folded into the weights, and
  logits = features @ W + b        W = [-w/2, w/2], b = [-c/2, c/2]   (so softmax(logits)[1] = sigmoid(x.w + c))
  probabilities = Softmax(logits)  float32 [N, 2]
  label = ArgMax(probabilities)    int64   [N]
expected.json holds the first 20 rows of churn.csv with probabilities/labels computed by numpy in float32,
so the ONNX Runtime worker can be checked against them.
"""

import argparse
import getpass
import json
import os
import platform
import subprocess
from importlib import metadata

import numpy as np
import onnx
import pandas as pd
from onnx import TensorProto, helper, numpy_helper
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import train_test_split

HERE = os.path.dirname(os.path.realpath(__file__))
FEATURES = ["age", "tenure_months", "monthly_charges", "support_calls"]
LABEL = "churned"
OPSET, IR_VERSION = 17, 8


def fit(df, seed):
    X_train, X_test, y_train, y_test = train_test_split(
        df[FEATURES].to_numpy(float), df[LABEL].to_numpy(), test_size=0.2, stratify=df[LABEL], random_state=seed)
    mu, sigma = X_train.mean(axis=0), X_train.std(axis=0)
    clf = LogisticRegression(C=1.0, max_iter=1000).fit((X_train - mu) / sigma, y_train)
    w = clf.coef_[0] / sigma  # fold the scaler: x.w' + c' == ((x - mu) / sigma).w + c
    c = clf.intercept_[0] - np.dot(mu, w)
    W = np.stack([-w / 2, w / 2], axis=1).astype(np.float32)  # [4, 2]
    b = np.array([-c / 2, c / 2], dtype=np.float32)
    return W, b, X_test, y_test


def forward(X, W, b):
    """The graph's computation in numpy float32."""
    logits = X.astype(np.float32) @ W + b
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
    return probs, probs.argmax(axis=1).astype(np.int64)


def graph(W, b):
    nodes = [
        helper.make_node("MatMul", ["features", "W"], ["xw"]),
        helper.make_node("Add", ["xw", "b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0),
    ]
    g = helper.make_graph(
        nodes, "churn_logreg",
        inputs=[helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", len(FEATURES)])],
        outputs=[helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 2]),
                 helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"])],
        initializer=[numpy_helper.from_array(W, "W"), numpy_helper.from_array(b, "b")],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="slipway-examples",
                          doc_string="churn logistic regression; features = " + ", ".join(FEATURES))
    m.ir_version = IR_VERSION
    onnx.checker.check_model(m, full_check=True)
    return m


def git(*args):
    try:
        r = subprocess.run(["git", "-C", HERE, *args], capture_output=True, text=True, timeout=5)
        return r.stdout.strip() if r.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def write_json(path, value):
    with open(path, "w") as f:
        json.dump(value, f, indent=2)
        f.write("\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=HERE)
    ap.add_argument("--data", default=os.path.join(HERE, "..", "data", "churn.csv"))
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)

    df = pd.read_csv(args.data)
    W, b, X_test, y_test = fit(df, args.seed)
    onnx.save(graph(W, b), os.path.join(out, "model.onnx"))

    probs, _ = forward(X_test, W, b)
    metrics = {"accuracy": round(float(accuracy_score(y_test, probs[:, 1] >= 0.5)), 4),
               "roc_auc": round(float(roc_auc_score(y_test, probs[:, 1])), 4)}
    root = git("rev-parse", "--show-toplevel") or os.path.dirname(os.path.dirname(HERE))
    write_json(os.path.join(out, "metadata.json"), {
        "runtime": "onnx",
        "description": "Churn logistic regression as an ONNX graph. Input 'features' is float32 [N, 4] with "
                       "columns (age, tenure_months, monthly_charges, support_calls); outputs P(stay), P(churn) "
                       "and the argmax label.",
        "tags": {"team": "risk", "example": "onnx-churn", "feature_names": ",".join(FEATURES)},
        "input_schema": {"columns": [{"name": "features", "dtype": "float32", "shape": [-1, len(FEATURES)]}]},
        "output_schema": {"columns": [{"name": "probabilities", "dtype": "float32", "shape": [-1, 2]},
                                      {"name": "label", "dtype": "int64", "shape": [-1]}]},
        "sample_input": {"inputs": {"features": [[41.0, 12.0, 70.5, 1.0]]}},
        "metrics": metrics,
        "taxonomy": {"use_case": "binary_classification", "framework": "onnx",
                     "framework_version": metadata.version("onnx"), "algorithm": "LogisticRegression",
                     "hyperparameters": {"C": 1.0, "opset": OPSET, "ir_version": IR_VERSION}},
        "provenance": {"git_repo": git("config", "--get", "remote.origin.url"),
                       "git_branch": git("rev-parse", "--abbrev-ref", "HEAD"), "git_commit": git("rev-parse", "HEAD"),
                       "training_script": "build.py",
                       "training_data": os.path.relpath(os.path.realpath(args.data), root),
                       "training_run": "", "author": os.environ.get("USER") or getpass.getuser()},
        "environment": {"python": platform.python_version(),
                        "packages": {n: metadata.version(n) for n in ("onnx", "numpy", "scikit-learn", "pandas")}},
    })

    X20 = df[FEATURES].head(20).to_numpy(np.float32)
    p20, l20 = forward(X20, W, b)
    write_json(os.path.join(out, "expected.json"), {
        "description": "first 20 rows of examples/data/churn.csv; outputs computed by numpy in float32",
        "feature_names": FEATURES,
        "customer_id": df["customer_id"].head(20).tolist(),
        "features": X20.tolist(),
        "probabilities": p20.tolist(),
        "label": l20.tolist(),
    })
    print("model.onnx: accuracy %.4f, roc_auc %.4f -> %s" % (metrics["accuracy"], metrics["roc_auc"], out))


if __name__ == "__main__":
    main()
