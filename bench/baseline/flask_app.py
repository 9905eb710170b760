"""The Python baseline of the Slipway serving benchmark: what MLflow 2's `mlflow models serve` runs for a
scikit-learn model, reduced to the parts on the request path.

MLflow 2 serves a pyfunc model with gunicorn (sync workers) in front of a Flask app
(mlflow.pyfunc.scoring_server): POST /invocations reads the body, json.loads it, builds a pandas DataFrame from
`dataframe_split` (columns + data), enforces the model signature (casts each column to its declared type), calls
the model, and writes {"predictions": ...} with a JSON encoder. This file does the same with the same model.pkl
that Slipway serves (examples/sklearn-churn, or MODEL_PATH), calling predict_proba like the score.py does.

    gunicorn --workers 2 --worker-class sync --bind 127.0.0.1:0 --chdir bench/baseline flask_app:app
"""

import json
import os
import pickle

import numpy as np
import pandas as pd
from flask import Flask, Response, request

HERE = os.path.dirname(os.path.realpath(__file__))
MODEL_PATH = os.environ.get("MODEL_PATH") or os.path.join(HERE, "..", "..", "examples", "sklearn-churn", "model.pkl")
# The model signature (examples/sklearn-churn/metadata.json input_schema): column -> dtype.
SCHEMA = {"age": "float64", "tenure_months": "float64", "monthly_charges": "float64", "plan": "str",
          "support_calls": "float64"}

with open(MODEL_PATH, "rb") as f:
    model = pickle.load(f)
POSITIVE = list(model.classes_).index(1)

app = Flask(__name__)


def error(status, code, message):
    return Response(json.dumps({"error_code": code, "message": message}), status=status, mimetype="application/json")


class NumpyEncoder(json.JSONEncoder):
    """mlflow.utils.proto_json_utils.NumpyEncoder, for numpy scalars and arrays."""

    def default(self, o):
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        return super().default(o)


def dataframe_from_split(split):
    """mlflow.utils.proto_json_utils.dataframe_from_parsed_json(orient="split") + signature enforcement."""
    df = pd.DataFrame(data=split["data"], columns=split.get("columns"))
    missing = [c for c in SCHEMA if c not in df.columns]
    if missing:
        raise ValueError("Model is missing inputs %s" % missing)
    df = df[list(SCHEMA)]
    for col, dtype in SCHEMA.items():
        df[col] = df[col].astype(dtype)
    return df


@app.route("/ping", methods=["GET"])
def ping():
    return Response(response="\n", status=200, mimetype="application/json")


@app.route("/invocations", methods=["POST"])
def invocations():
    mime = (request.content_type or "").split(";")[0].strip()
    if mime != "application/json":
        return error(415, "BAD_REQUEST", "This predictor only supports the following content types: application/json")
    try:
        payload = json.loads(request.get_data(as_text=True))
        df = dataframe_from_split(payload["dataframe_split"])
    except Exception as e:  # MLflow answers 400 BAD_REQUEST for any parsing or schema error
        return error(400, "BAD_REQUEST", "Failed to parse input: %s" % e)
    proba = model.predict_proba(df)[:, POSITIVE]
    return Response(response=json.dumps({"predictions": proba}, cls=NumpyEncoder), status=200,
                    mimetype="application/json")
