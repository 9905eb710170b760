"""Slipway / OCI score.py for the churn classifier (see train.py).

load_model() unpickles model.pkl from this directory; predict() accepts
  {"data": rows, "columns": names}, {"data": rows}, a list of row lists, a list of record dicts,
  one record dict, or a pandas DataFrame (what the harness passes for tensor requests)
and returns {"prediction": [0/1, ...], "probability": [P(churn), ...]}.
"""

import json
import os
import pickle

import pandas as pd

MODEL_DIR = os.path.dirname(os.path.realpath(__file__))
NUMERIC = ["age", "tenure_months", "monthly_charges", "support_calls"]
FEATURES = ["age", "tenure_months", "monthly_charges", "plan", "support_calls"]  # the input schema order

_model = None


def load_model(model_file_name="model.pkl"):
    with open(os.path.join(MODEL_DIR, model_file_name), "rb") as f:
        return pickle.load(f)


def _frame(data):
    if isinstance(data, (str, bytes)):
        data = json.loads(data)
    if isinstance(data, pd.DataFrame):
        df = data
    elif isinstance(data, dict) and "data" in data:
        rows = data["data"]
        df = pd.DataFrame(rows) if isinstance(rows, dict) else pd.DataFrame(rows, columns=data.get("columns") or FEATURES)
    elif isinstance(data, dict):  # a single record
        df = pd.DataFrame([data])
    elif isinstance(data, list) and data and all(isinstance(r, dict) for r in data):
        df = pd.DataFrame.from_records(data)
    elif isinstance(data, list) and data:
        df = pd.DataFrame(data, columns=FEATURES)
    else:
        raise ValueError("expected rows of %s, got %s" % (FEATURES, type(data).__name__))
    missing = [c for c in FEATURES if c not in df.columns]
    if missing:
        raise ValueError("missing input columns: %s" % ", ".join(missing))
    df = df[FEATURES].copy()
    for c in NUMERIC:
        try:
            df[c] = df[c].astype("float64")
        except (TypeError, ValueError) as e:
            raise ValueError("column %r must be numeric: %s" % (c, e)) from None
    df["plan"] = df["plan"].astype(str)
    return df


def predict(data, model=None):
    global _model
    if model is None:
        if _model is None:
            _model = load_model()
        model = _model
    X = _frame(data)
    proba = model.predict_proba(X)[:, list(model.classes_).index(1)]
    return {"prediction": (proba >= 0.5).astype(int).tolist(), "probability": proba.tolist()}
