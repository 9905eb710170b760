"""The notebook flow, as a script: train a model, prepare an artifact from it, verify it, push it with its
baseline, deploy it, predict a DataFrame, load the model back from the catalog, and compare the predictions of
all of these. test_notebook.py runs it with the SDK pip-installed into a virtual environment, against the real
server (SLIPWAY_URL and SLIPWAY_TOKEN); it prints one JSON object with what it saw.

    python notebook_flow.py examples/data/churn.csv WORKDIR [MODEL_NAME]
"""

import json
import os
import sys

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import slipway

data, work = sys.argv[1], sys.argv[2]
name = sys.argv[3] if len(sys.argv) > 3 else "churn-nb"
features = ["age", "tenure_months", "monthly_charges", "plan", "support_calls"]

# 1. train, as in any notebook
df = pd.read_csv(data)
X_train, X_test, y_train, y_test = train_test_split(df[features], df["churned"], test_size=0.2, random_state=7)
model = Pipeline([
    ("features", ColumnTransformer([
        ("num", StandardScaler(), ["age", "tenure_months", "monthly_charges", "support_calls"]),
        ("plan", OneHotEncoder(handle_unknown="ignore"), ["plan"])])),
    ("clf", LogisticRegression(max_iter=500)),
]).fit(X_train, y_train)
in_memory = model.predict_proba(X_test)[:, 1]

# 2. prepare the artifact, verify it in a new process, push it with its baseline
artifact = slipway.prepare(model, X_train.sample(300, random_state=1), y_train, path=os.path.join(work, "artifact"),
                           name=name, description="churn classifier from the notebook", tags={"team": "risk"})
verified = artifact.verify(X_test)
version = artifact.push(alias="champion")
sw = slipway.Client()
baseline = sw.get_baseline(name, alias="champion")

# 3. deploy and predict a DataFrame
deployment = sw.deploy(name + "-api", model=name + "@champion")
served = sw.predict(name + "-api", X_test)

# 4. the catalog's model back in the notebook
loaded = sw.load_model(name + "@champion", path=os.path.join(work, "pulled"))
reloaded = loaded.predict_proba(X_test)[:, 1]

print(json.dumps({
    "sdk_file": slipway.__file__,
    "files": artifact.files,
    "metadata": artifact.metadata,
    "version": {k: version[k] for k in ("model", "version", "state", "aliases", "checks")},
    "baseline_features": sorted(f["name"] for f in baseline["profile"]["features"]),
    "baseline_rows": baseline["profile"]["rows"],
    "deployment": {k: deployment[k] for k in ("name", "state", "version")},
    "served_columns": list(served.columns),
    "served_index_matches": served.index.equals(X_test.index),
    "loaded_type": type(loaded).__name__,
    "max_diff": {
        "verify": float(np.max(np.abs(verified["probability_1"].to_numpy() - in_memory))),
        "served": float(np.max(np.abs(served["probability_1"].to_numpy() - in_memory))),
        "loaded": float(np.max(np.abs(reloaded - in_memory))),
    },
    "same_labels": {
        "verify": verified["prediction"].tolist() == model.predict(X_test).tolist(),
        "served": served["prediction"].tolist() == model.predict(X_test).tolist(),
        "loaded": loaded.predict(X_test).tolist() == model.predict(X_test).tolist(),
    },
    "version_html": version._repr_html_()[:200],
    "deployment_html": deployment._repr_html_()[:200],
}))
