"""The lean Python peer of the Slipway serving benchmark: FastAPI under uvicorn (uvloop, httptools), numpy in.

POST /invocations takes MLflow's dataframe_split, builds one numpy float64 block from `data` (no DataFrame),
calls model.predict_proba and answers {"predictions": [...]}. This is about the least a Python HTTP server does
per request for this model; Slipway's Python path is measured against it (bench/run.sh, target pyfast).

    MODEL_PATH=bench/work/pywide/model.pkl uvicorn --workers 2 --loop uvloop --http httptools \
        --app-dir bench/baseline fastapi_app:app --port 8000
"""

import json
import os
import pickle

import numpy as np
from fastapi import FastAPI, Request, Response

with open(os.environ["MODEL_PATH"], "rb") as f:
    model = pickle.load(f)

app = FastAPI()


@app.get("/ping")
def ping():
    return Response(content="\n", media_type="application/json")


@app.post("/invocations")
async def invocations(request: Request):
    try:
        payload = json.loads(await request.body())
        X = np.asarray(payload["dataframe_split"]["data"], dtype=np.float64)
    except Exception as e:  # what MLflow answers for a body it cannot parse
        return Response(json.dumps({"error_code": "BAD_REQUEST", "message": "Failed to parse input: %s" % e}),
                        status_code=400, media_type="application/json")
    proba = model.predict_proba(X)[:, 1]
    return Response(json.dumps({"predictions": proba.tolist()}), media_type="application/json")
