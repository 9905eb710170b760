"""Writes COUNT small, distinct ONNX models for the many-models tests and benchmark.

    python3 tiny_models.py OUT_DIR COUNT [HIDDEN]

Model i is y = x @ W_i + b_i (MatMul + Add), input "x" FP32 [batch, 4], output "y" FP32 [batch, 2], with
weights drawn from a generator seeded by i: no two models share weights, so a deployment that answered with
another's model would be seen. With HIDDEN > 0 the model is y = ((x @ A_i) @ H_i) @ W_i + b_i, where H_i is
HIDDEN x HIDDEN: HIDDEN 512 makes a model of 1 MiB of weights, for tests that must see memory move.
OUT_DIR/mNNN/model.onnx is model NNN; OUT_DIR/expected.json lists, per model, one input row and the output
numpy computes for it in float32.
"""
import json
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto as T
from onnx import helper, numpy_helper


def build(i, hidden):
    rng = np.random.default_rng(1000 + i)
    features = 4
    b = np.array([i * 0.01, -i * 0.01], dtype=np.float32)
    x = rng.uniform(-2, 2, size=(1, features)).astype(np.float32)
    if hidden > 0:
        a = (rng.uniform(-1, 1, size=(features, hidden)) / 2).astype(np.float32)
        h = (rng.uniform(-1, 1, size=(hidden, hidden)) / np.sqrt(hidden)).astype(np.float32)
        w = (rng.uniform(-1, 1, size=(hidden, 2)) / np.sqrt(hidden)).astype(np.float32)
        nodes = [helper.make_node("MatMul", ["x", "A"], ["xa"]), helper.make_node("MatMul", ["xa", "H"], ["xh"]),
                 helper.make_node("MatMul", ["xh", "W"], ["xw"])]
        inits = [numpy_helper.from_array(a, "A"), numpy_helper.from_array(h, "H")]
        y = ((x @ a) @ h) @ w + b
    else:
        w = rng.uniform(-1, 1, size=(features, 2)).astype(np.float32)
        nodes = [helper.make_node("MatMul", ["x", "W"], ["xw"])]
        inits = []
        y = x @ w + b
    graph = helper.make_graph(
        nodes + [helper.make_node("Add", ["xw", "B"], ["y"])],
        "tiny%03d" % i,
        [helper.make_tensor_value_info("x", T.FLOAT, ["batch", features])],
        [helper.make_tensor_value_info("y", T.FLOAT, ["batch", 2])],
        initializer=inits + [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model, x, y.astype(np.float32)


def main():
    out, count = sys.argv[1], int(sys.argv[2])
    hidden = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    expected = []
    for i in range(count):
        model, x, y = build(i, hidden)
        d = os.path.join(out, "m%03d" % i)
        os.makedirs(d, exist_ok=True)
        onnx.save(model, os.path.join(d, "model.onnx"))
        expected.append({"name": "m%03d" % i, "input": x.tolist(), "output": y.tolist()})
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f)


if __name__ == "__main__":
    main()
