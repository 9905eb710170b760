# ---- the generic part of a score.py written by slipway.prepare() (the constants above describe the model) ----
# It runs in Slipway's Python harness (docs/worker-protocol.md), in `prepare(...).verify()`, and in
# `Client.load_model()`; it needs only joblib and numpy, and pandas when the model was fitted on a DataFrame.

import json
import os

import joblib
import numpy as np

try:
    import pandas as pd
except ImportError:
    pd = None

MODEL_DIR = os.path.dirname(os.path.realpath(__file__))
_model = None


def load_model(model_file_name=MODEL_FILE):
    """The fitted model object, as it was passed to slipway.prepare()."""
    return joblib.load(os.path.join(MODEL_DIR, model_file_name))


def describe():
    """The input and output columns, for the harness's hello (V2 model metadata)."""
    return {"inputs": [{"name": c, "datatype": DATATYPES[c]} for c in FEATURES],
            "outputs": [{"name": c, "datatype": DATATYPES_OUT[c]} for c in OUTPUTS]}


def _columns(data):
    """A request as {feature: values}. Accepted: a DataFrame; {"data": rows, "columns": names} (the OCI form),
    {"data": rows}, {"instances": rows} or {"inputs": rows}; a list of rows or of record dicts; one record; an
    object of equal-length lists; a 2-D array in FEATURES order; or the JSON text of any of these."""
    if isinstance(data, (bytes, str)):
        data = json.loads(data)
    if pd is not None and isinstance(data, pd.DataFrame):
        return {str(c): data[c] for c in data.columns}
    if isinstance(data, np.ndarray):
        if data.ndim == 1:
            data = data.reshape(-1, 1) if len(FEATURES) == 1 else data.reshape(1, -1)
        return _from_rows(data.tolist() if data.dtype == object else data, FEATURES)
    if isinstance(data, dict):
        for key in ("data", "instances", "inputs"):
            if key in data and not (key in FEATURES):
                rows = data[key]
                if isinstance(rows, dict):
                    return _columns(rows)
                return _columns_of_list(rows, data.get("columns") or FEATURES)
        if data and all(isinstance(v, (list, tuple, np.ndarray)) for v in data.values()):
            return dict(data)
        return {k: [v] for k, v in data.items()}  # one record
    if isinstance(data, (list, tuple)):
        return _columns_of_list(list(data), FEATURES)
    raise ValueError("expected rows of %s, got %s" % (", ".join(FEATURES), type(data).__name__))


def _columns_of_list(rows, names):
    if not rows:
        raise ValueError("no rows: send at least one row of %s" % ", ".join(FEATURES))
    if all(isinstance(r, dict) for r in rows):
        # A key no record has is a missing feature; a key some records lack is a missing value there.
        return {n: [r.get(n) for r in rows] for n in FEATURES if any(n in r for r in rows)}
    if not isinstance(rows[0], (list, tuple, np.ndarray)):
        rows = [rows]  # one row
    return _from_rows(rows, names)


def _from_rows(rows, names):
    width = len(rows[0]) if len(rows) else len(names)
    if width != len(names):
        raise ValueError("each row must have %d values (%s), got %d" % (len(names), ", ".join(names), width))
    if isinstance(rows, np.ndarray):
        return {n: rows[:, i] for i, n in enumerate(names)}
    return {n: [r[i] for r in rows] for i, n in enumerate(names)}


def _cast(name, values):
    dtype = NUMPY_DTYPES[name]
    try:
        if dtype == "object":
            return np.asarray([None if v is None else str(v) for v in np.asarray(values, dtype=object).tolist()],
                              dtype=object)
        return np.asarray(values, dtype=dtype)
    except (TypeError, ValueError) as e:
        raise ValueError("feature %r must be %s: %s" % (name, dtype, e)) from None


def _input(data):
    cols = _columns(data)
    missing = [c for c in FEATURES if c not in cols]
    if missing:
        raise ValueError("missing input features: %s (the model takes %s)" % (", ".join(missing), ", ".join(FEATURES)))
    arrays = [_cast(c, cols[c]) for c in FEATURES]
    if FRAME:
        if pd is None:
            raise ImportError("this model was fitted on a pandas DataFrame: install pandas")
        df = pd.DataFrame({c: a for c, a in zip(FEATURES, arrays)}, columns=FEATURES)
        for c, cats in CATEGORIES.items():
            df[c] = pd.Categorical(df[c], categories=cats)
        return df
    return np.column_stack(arrays) if len(arrays) > 1 else arrays[0].reshape(-1, 1)


def _list(a):
    a = np.asarray(a)
    if a.dtype.kind in "OUS":
        return [None if v is None else str(v) for v in a.tolist()] if a.ndim == 1 else a.tolist()
    return a.tolist()


def predict(data, model=None):
    """Predictions for the rows of data (see _columns): {"prediction": [...], and with predict_proba one
    "probability_<class>" list per class}."""
    global _model
    if model is None:
        if _model is None:
            _model = load_model()
        model = _model
    X = _input(data)
    out = {"prediction": _list(model.predict(X))}
    if PROBA_COLUMNS:
        proba = np.asarray(model.predict_proba(X))
        for i, name in enumerate(PROBA_COLUMNS):
            out[name] = proba[:, i].tolist()
    return out
