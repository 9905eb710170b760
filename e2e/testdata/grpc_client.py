"""A Python gRPC client of Slipway's Open Inference Protocol service, as a user would write one.

Usage: grpc_client.py HOST:PORT MODEL ROWS < features.json (a flat JSON list of ROWS x 4 floats), with
SLIPWAY_TOKEN set and PYTHONPATH holding stubs generated from grpc_predict_v2.proto
(python3 -m grpc_tools.protoc --python_out --grpc_python_out). It sends the features as raw_input_contents,
as Triton's and KServe's clients do, and prints {"outputs": [...], "bad_token": CODE, "unknown_model": CODE}
with the outputs decoded from raw_output_contents. Standard library and grpcio only (no numpy).
"""

import json
import os
import struct
import sys

import grpc
import grpc_predict_v2_pb2 as pb
import grpc_predict_v2_pb2_grpc as pb_grpc

# struct formats of the datatypes the example answers in, little-endian as the protocol sends them
FORMATS = {"FP32": "f", "FP64": "d", "INT64": "q", "INT32": "i"}


def decode(datatype, raw):
    fmt = FORMATS[datatype]
    n = len(raw) // struct.calcsize(fmt)
    return list(struct.unpack("<%d%s" % (n, fmt), raw))


def main():
    addr, model, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
    features = json.load(sys.stdin)
    auth = [("authorization", "Bearer " + os.environ["SLIPWAY_TOKEN"])]
    with grpc.insecure_channel(addr) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        assert stub.ServerLive(pb.ServerLiveRequest()).live
        request = pb.ModelInferRequest(
            model_name=model,
            inputs=[pb.ModelInferRequest.InferInputTensor(name="features", datatype="FP32", shape=[rows, 4])],
            raw_input_contents=[struct.pack("<%df" % len(features), *features)],
        )
        response = stub.ModelInfer(request, metadata=auth, timeout=60)
        outputs = [
            {"name": o.name, "datatype": o.datatype, "shape": list(o.shape), "data": decode(o.datatype, raw)}
            for o, raw in zip(response.outputs, response.raw_output_contents)
        ]
        codes = {}
        for key, call in (
            ("bad_token", lambda: stub.ModelInfer(request, metadata=[("authorization", "Bearer wrong")], timeout=60)),
            ("unknown_model", lambda: stub.ModelInfer(
                pb.ModelInferRequest(model_name="nope", inputs=request.inputs, raw_input_contents=request.raw_input_contents),
                metadata=auth, timeout=60)),
        ):
            try:
                call()
                codes[key] = "OK"
            except grpc.RpcError as e:
                codes[key] = e.code().name
        json.dump({"outputs": outputs, **codes}, sys.stdout)


if __name__ == "__main__":
    main()
