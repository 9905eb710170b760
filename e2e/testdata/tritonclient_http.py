"""Triton's own HTTP client (tritonclient.http) against Slipway, in its default binary mode.

Usage: tritonclient_http.py HOST:PORT MODEL ROWS < features.json (a flat JSON list of ROWS x 4 floats), with
SLIPWAY_TOKEN set and tritonclient importable (PYTHONPATH: third_party/tritonclient with its stubs, as
e2e/grpc_test.go prepares it). The input goes as binary tensor data (InferInput.set_data_from_numpy's default
binary_data=True) and every output is requested as binary data, as Triton users call it. Prints
{"outputs": [...], "binary": [bool per output], "live": bool, "ready": bool, "platform": str,
"bad_token": int} as JSON.
"""

import json
import os
import sys

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException


def main():
    addr, model, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
    features = np.array(json.load(sys.stdin), dtype=np.float32).reshape(rows, 4)
    headers = {"Authorization": "Bearer " + os.environ["SLIPWAY_TOKEN"]}
    client = httpclient.InferenceServerClient(url=addr, network_timeout=60)
    live = client.is_server_live(headers=headers)
    ready = client.is_model_ready(model, headers=headers)
    metadata = client.get_model_metadata(model, headers=headers)
    inp = httpclient.InferInput("features", list(features.shape), "FP32")
    inp.set_data_from_numpy(features)  # binary_data=True
    requested = [httpclient.InferRequestedOutput(o["name"], binary_data=True) for o in metadata["outputs"]]
    result = client.infer(model, [inp], outputs=requested, headers=headers)
    response = result.get_response()
    outputs = [
        {"name": o["name"], "datatype": o["datatype"], "shape": o["shape"],
         "data": result.as_numpy(o["name"]).astype(np.float64).ravel().tolist()}
        for o in response["outputs"]
    ]
    binary = ["binary_data_size" in o.get("parameters", {}) and "data" not in o for o in response["outputs"]]
    try:
        client.infer(model, [inp], headers={"Authorization": "Bearer wrong"})
        bad = 200
    except InferenceServerException as e:
        bad = int(e.status())
    json.dump({"outputs": outputs, "binary": binary, "live": live, "ready": ready,
               "platform": metadata["platform"], "bad_token": bad}, sys.stdout)


if __name__ == "__main__":
    main()
