"""Slipway's Python SDK: from a notebook or a script, prepare a model artifact from a fitted model, register,
deploy and predict, and load catalog models back.

Standard library only (numpy and pandas are used when present). The client finds the server and the token the
way the CLI does: SLIPWAY_URL (default http://127.0.0.1:8080) and SLIPWAY_TOKEN, else $SLIPWAY_DATA_DIR/admin.token
or ./slipway-data/admin.token.

    import slipway
    art = slipway.prepare(model, X_train.head(500), y_train, path="churn-artifact", name="churn")
    art.verify()                              # score.py run in a new process, as the server will
    v = art.push(alias="champion")            # registered with its baseline: READY
    sw = slipway.Client()
    sw.deploy("churn-api", model="churn@champion")
    sw.predict("churn-api", df)               # DataFrame in, DataFrame out
    model = sw.load_model("churn@champion")   # the model object, digests verified

Every API error raises SlipwayError with the server's problem details (status, code, title, detail).
"""

from ._artifact import IntegrityError
from ._client import Client, SlipwayError, _dumps, _mlflow_payload, _ref, _tar_gz  # noqa: F401 (tests use them)
from ._prepare import PreparedModel, prepare
from ._tables import Deployment, Run, Table, Version

__version__ = "0.2.0"
__all__ = ["Client", "SlipwayError", "IntegrityError", "prepare", "PreparedModel", "Version", "Deployment", "Run",
           "Table"]
