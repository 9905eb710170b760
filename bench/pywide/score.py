"""score.py of the Python fast-path benchmark model (bench/pywide/make_model.py): the probability of class 1.

predict() takes the 2-D float64 block when runtime.yaml declares SLIPWAY.PREDICT_INPUT: numpy, else a
DataFrame of the 30 features (both are one contiguous block: .to_numpy() does not copy), or JSON rows."""

import os
import pickle

import numpy as np

MODEL_DIR = os.path.dirname(os.path.realpath(__file__))


def load_model():
    with open(os.path.join(MODEL_DIR, "model.pkl"), "rb") as f:
        return pickle.load(f)


def predict(data, model=None):
    if hasattr(data, "to_numpy"):  # a DataFrame
        data = data.to_numpy()
    elif isinstance(data, dict):  # a JSON request (the sample input): {"dataframe_split": {"data": rows}}
        data = np.asarray(data.get("dataframe_split", data)["data"], dtype=np.float64)
    return model.predict_proba(data)[:, 1]
