"""Write an MLflow model directory of the churn classifier, laid out as mlflow.sklearn.save_model (MLflow 2.x)
lays it out, without MLflow installed:

    /usr/bin/python3 examples/mlflow-sklearn/make_mlflow_model.py --out DIR [--serialization pickle|cloudpickle]
                                                                 [--kind sklearn|pyfunc] [--with-code] [--data CSV]

    DIR/MLmodel                      flavors (python_function + sklearn), signature, input example info
    DIR/model.pkl                    the fitted Pipeline, pickled with pickle or cloudpickle
    DIR/conda.yaml                   conda environment (python=X.Y.Z, pip: [...])
    DIR/python_env.yaml              virtualenv environment (python: X.Y.Z, -r requirements.txt)
    DIR/requirements.txt             pinned packages, mlflow included as MLflow writes it
    DIR/input_example.json           the input example, pandas split orient: {"columns": [...], "data": [[...]]}
    DIR/serving_input_example.json   the same as a scoring request: {"dataframe_split": {...}}

--with-code adds a transformer from the model's own module (code/churn_features.py), as
mlflow.sklearn.save_model(..., code_paths=["churn_features.py"]) ships it: the pickle refers to it by name.

--kind pyfunc writes a python_function model whose loader_module is the user's own (code/churn_loader.py,
loading data model.pkl), as mlflow.pyfunc.save_model(path, loader_module="churn_loader", data_path="model.pkl",
code_paths=["churn_loader.py"]) does. Its predict() answers the probability of churn, or 0/1 when the request's
params carry a "threshold".

Then: slipway models push DIR --model churn-mlflow
"""

import argparse
import json
import os
import pickle
import platform
import shutil
import sys
import time
import uuid
from importlib import metadata

import pandas as pd
import yaml
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

HERE = os.path.dirname(os.path.realpath(__file__))
NUMERIC = ["age", "tenure_months", "monthly_charges", "support_calls"]
FEATURES = ["age", "tenure_months", "monthly_charges", "plan", "support_calls"]
MLFLOW_VERSION = "2.14.1"  # the MLflow release whose layout this reproduces

# --with-code: a transformer of the user's own module, which the pickle refers to by module name. MLflow copies
# such code_paths into code/ and puts that folder on sys.path before unpickling.
FEATURES_MODULE = '''"""Feature engineering shipped with the model (an MLflow code_path)."""
from sklearn.base import BaseEstimator, TransformerMixin


class ClipCalls(BaseEstimator, TransformerMixin):
    """Caps support_calls: a customer calling 20 times is no different from one calling 8 times."""

    def __init__(self, cap=8.0):
        self.cap = cap

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        X = X.copy()
        X["support_calls"] = X["support_calls"].clip(upper=self.cap)
        return X
'''

LOADER = '''"""A python_function loader module (MLflow's loader_module contract): _load_pyfunc(data_path) returns an
object with predict(model_input, params=None)."""
import pickle


class ChurnProbability:
    def __init__(self, pipeline):
        self.pipeline = pipeline

    def predict(self, model_input, params=None):
        proba = self.pipeline.predict_proba(model_input)[:, 1]
        threshold = (params or {}).get("threshold")
        return proba if threshold is None else (proba >= float(threshold)).astype("int64")


def _load_pyfunc(data_path):
    with open(data_path, "rb") as f:
        return ChurnProbability(pickle.load(f))
'''


def version(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def train(csv, with_code_dir=None):
    df = pd.read_csv(csv)
    X, y = df[FEATURES], df["churned"]
    pre = ColumnTransformer([("num", StandardScaler(), NUMERIC), ("plan", OneHotEncoder(handle_unknown="ignore"), ["plan"])])
    steps = [("pre", pre), ("clf", LogisticRegression(max_iter=1000))]
    if with_code_dir:
        sys.path.insert(0, with_code_dir)
        from churn_features import ClipCalls
        steps.insert(0, ("clip", ClipCalls()))
    model = Pipeline(steps).fit(X, y)
    return model, X


def col_specs(frame):
    kinds = {"f": "double", "i": "long", "b": "boolean", "O": "string"}
    return [{"type": kinds[frame[c].dtype.kind], "name": c, "required": True} for c in frame.columns]


def dump_yaml(value):
    """As MLflow writes its YAML files (mlflow.models.Model.save, _mlflow_conda_env)."""
    return yaml.safe_dump(value, default_flow_style=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--serialization", choices=["pickle", "cloudpickle"], default="cloudpickle")
    ap.add_argument("--kind", choices=["sklearn", "pyfunc"], default="sklearn")
    ap.add_argument("--with-code", action="store_true", help="sklearn: a transformer from code/churn_features.py")
    ap.add_argument("--data", default=os.path.join(HERE, "..", "data", "churn.csv"))
    args = ap.parse_args()

    os.makedirs(args.out)
    code_dir = None
    if args.with_code or args.kind == "pyfunc":
        code_dir = os.path.join(args.out, "code")
        os.makedirs(code_dir)
    if args.with_code:
        with open(os.path.join(code_dir, "churn_features.py"), "w") as f:
            f.write(FEATURES_MODULE)
    model, X = train(args.data, code_dir if args.with_code else None)
    serialization = args.serialization if args.kind == "sklearn" else "pickle"
    with open(os.path.join(args.out, "model.pkl"), "wb") as f:
        if serialization == "cloudpickle":
            import cloudpickle
            cloudpickle.dump(model, f)
        else:
            pickle.dump(model, f, protocol=pickle.DEFAULT_PROTOCOL)

    python = platform.python_version()
    packages = ["mlflow==%s" % MLFLOW_VERSION]
    for dist in (["cloudpickle"] if serialization == "cloudpickle" else []) + ["numpy", "pandas", "scikit-learn", "scipy"]:
        if version(dist):
            packages.append("%s==%s" % (dist, version(dist)))
    with open(os.path.join(args.out, "requirements.txt"), "w") as f:
        f.write("\n".join(packages) + "\n")
    with open(os.path.join(args.out, "python_env.yaml"), "w") as f:
        f.write(dump_yaml({"python": python, "build_dependencies": ["pip", "setuptools", "wheel"],
                           "dependencies": ["-r requirements.txt"]}))
    with open(os.path.join(args.out, "conda.yaml"), "w") as f:
        f.write(dump_yaml({"channels": ["conda-forge"], "name": "mlflow-env",
                           "dependencies": ["python=%s" % python, "pip", {"pip": packages}]}))

    example = X.head(5)
    with open(os.path.join(args.out, "input_example.json"), "w") as f:
        json.dump({"columns": list(example.columns), "data": example.values.tolist()}, f)
    with open(os.path.join(args.out, "serving_input_example.json"), "w") as f:
        json.dump({"dataframe_split": {"columns": list(example.columns), "data": example.values.tolist()}}, f, indent=2)

    pyfunc = {"env": {"conda": "conda.yaml", "virtualenv": "python_env.yaml"}, "model_path": "model.pkl",
              "python_version": python}
    if args.kind == "sklearn":
        pyfunc.update(loader_module="mlflow.sklearn", predict_fn="predict", code="code" if code_dir else None)
        flavors = {"python_function": pyfunc,
                   "sklearn": {"code": "code" if code_dir else None, "pickled_model": "model.pkl", "serialization_format": serialization,
                               "sklearn_version": version("scikit-learn")}}
        outputs = [{"type": "long", "required": True}]
    else:
        with open(os.path.join(args.out, "code", "churn_loader.py"), "w") as f:
            f.write(LOADER)
        pyfunc.update(loader_module="churn_loader", code="code")
        flavors = {"python_function": pyfunc}
        outputs = [{"type": "double", "required": True}]
    mlmodel = {
        "flavors": flavors,
        "mlflow_version": MLFLOW_VERSION,
        "model_size_bytes": sum(os.path.getsize(os.path.join(d, n)) for d, _, ns in os.walk(args.out) for n in ns),
        "model_uuid": uuid.uuid4().hex,
        "saved_input_example_info": {"artifact_path": "input_example.json", "pandas_orient": "split",
                                     "serving_input_path": "serving_input_example.json", "type": "dataframe"},
        "signature": {"inputs": json.dumps(col_specs(X)), "outputs": json.dumps(outputs), "params": None},
        "utc_time_created": time.strftime("%Y-%m-%d %H:%M:%S.000000", time.gmtime()),
    }
    with open(os.path.join(args.out, "MLmodel"), "w") as f:
        f.write(dump_yaml(mlmodel))
    print("wrote MLflow model directory %s (%s, %s)" % (args.out, args.kind, serialization), file=sys.stderr)


if __name__ == "__main__":
    main()
