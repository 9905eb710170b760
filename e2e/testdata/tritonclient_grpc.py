"""Triton's own gRPC client (tritonclient.grpc) against Slipway, as a Triton user would call it.

Usage: tritonclient_grpc.py HOST:PORT MODEL ROWS < features.json (a flat JSON list of ROWS x 4 floats), with
SLIPWAY_TOKEN set and tritonclient importable (PYTHONPATH: third_party/tritonclient with its stubs, as
e2e/grpc_test.go prepares it; it needs numpy, grpcio, protobuf and packaging). Prints
{"outputs": [...], "live": bool, "ready": bool, "platform": str, "bad_token": str} as JSON.
"""

import json
import os
import sys

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException


def main():
    addr, model, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
    features = np.array(json.load(sys.stdin), dtype=np.float32).reshape(rows, 4)
    headers = {"authorization": "Bearer " + os.environ["SLIPWAY_TOKEN"]}
    client = grpcclient.InferenceServerClient(url=addr)
    live = client.is_server_live(headers=headers)
    ready = client.is_model_ready(model, headers=headers)
    metadata = client.get_model_metadata(model, headers=headers)
    inp = grpcclient.InferInput("features", list(features.shape), "FP32")
    inp.set_data_from_numpy(features)
    result = client.infer(model, [inp], headers=headers, client_timeout=60)
    response = result.get_response()
    outputs = [
        {"name": o.name, "datatype": o.datatype, "shape": list(o.shape),
         "data": result.as_numpy(o.name).astype(np.float64).ravel().tolist()}
        for o in response.outputs
    ]
    try:
        client.infer(model, [inp], headers={"authorization": "Bearer wrong"}, client_timeout=60)
        bad = "OK"
    except InferenceServerException as e:
        bad = e.status()
    json.dump({"outputs": outputs, "live": live, "ready": ready, "platform": metadata.platform, "bad_token": bad}, sys.stdout)


if __name__ == "__main__":
    main()
