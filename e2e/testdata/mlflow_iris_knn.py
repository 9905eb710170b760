"""The model of MLflow's scoring-server tests, as an MLflow model directory, without MLflow installed.

Usage: mlflow_iris_knn.py OUT_DIR. Writes what mlflow.sklearn.save_model(KNeighborsClassifier fitted on iris's first
two features, path=OUT_DIR) writes (tests/pyfunc/test_scoring_server.py, fixture sklearn_model): MLmodel with the
python_function and sklearn flavors and no signature, model.pkl (pickle), requirements.txt. Prints the inference
data (iris's first two features, 150 rows) and the model's own predictions as JSON: {"data": [...], "predictions": [...]}.
"""

import json
import os
import pickle
import platform
import sys
from importlib import metadata

import sklearn.neighbors as knn
from sklearn import datasets


def main():
    out = sys.argv[1]
    os.makedirs(out)
    iris = datasets.load_iris()
    X, y = iris.data[:, :2], iris.target
    model = knn.KNeighborsClassifier().fit(X, y)
    with open(os.path.join(out, "model.pkl"), "wb") as f:
        pickle.dump(model, f)
    sk = metadata.version("scikit-learn")
    with open(os.path.join(out, "MLmodel"), "w") as f:
        f.write(f"""flavors:
  python_function:
    env:
      virtualenv: python_env.yaml
    loader_module: mlflow.sklearn
    model_path: model.pkl
    predict_fn: predict
    python_version: {platform.python_version()}
  sklearn:
    code: null
    pickled_model: model.pkl
    serialization_format: pickle
    sklearn_version: {sk}
mlflow_version: 2.14.1
model_uuid: 6c3b3f7e2f0a4a0f9d1b2c3d4e5f6a7b
utc_time_created: '2024-06-01 00:00:00.000000'
""")
    with open(os.path.join(out, "requirements.txt"), "w") as f:
        f.write(f"mlflow==2.14.1\nscikit-learn=={sk}\n")
    with open(os.path.join(out, "python_env.yaml"), "w") as f:
        f.write(f"python: {platform.python_version()}\nbuild_dependencies:\n- pip\ndependencies:\n- -r requirements.txt\n")
    json.dump({"data": X.tolist(), "predictions": model.predict(X).tolist()}, sys.stdout)


if __name__ == "__main__":
    main()
