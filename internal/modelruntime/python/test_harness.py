"""Tests for harness.py: run it as a subprocess and speak the frame protocol (docs/worker-protocol.md).

    cd internal/modelruntime/python && /usr/bin/python3 -m unittest -v test_harness
"""

import json
import math
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
import unittest

import numpy as np

HERE = os.path.dirname(os.path.realpath(__file__))
HARNESS = os.path.join(HERE, "harness.py")
EXAMPLES = os.path.normpath(os.path.join(HERE, "..", "..", "..", "examples"))

# --- a small, independent implementation of the wire format ----------------------------------------

NUMERIC = {"BOOL": "|b1", "INT32": "<i4", "INT64": "<i8", "FP32": "<f4", "FP64": "<f8", "UINT8": "|u1"}


def encode_tensors(cols):
    out = [struct.pack("<I", len(cols))]
    for name, dt, arr in cols:
        arr = np.asarray(arr, dtype=object if dt == "BYTES" else NUMERIC[dt])
        if dt == "BYTES":
            data = b"".join(struct.pack("<I", len(b)) + b for b in (s.encode() for s in arr.ravel()))
        else:
            data = arr.tobytes()
        nb = name.encode()
        out.append(struct.pack("<H", len(nb)) + nb + struct.pack("<B", len(dt)) + dt.encode())
        out.append(struct.pack("<B", arr.ndim) + struct.pack("<%dq" % arr.ndim, *arr.shape))
        out.append(struct.pack("<Q", len(data)) + data)
    return b"".join(out)


def decode_tensors(buf):
    (n,), pos, cols = struct.unpack_from("<I", buf), 4, {}
    for _ in range(n):
        (ln,) = struct.unpack_from("<H", buf, pos)
        name = buf[pos + 2:pos + 2 + ln].decode()
        pos += 2 + ln
        dt = buf[pos + 1:pos + 1 + buf[pos]].decode()
        pos += 1 + buf[pos]
        ndim = buf[pos]
        dims = struct.unpack_from("<%dq" % ndim, buf, pos + 1)
        pos += 1 + 8 * ndim
        (size,) = struct.unpack_from("<Q", buf, pos)
        data = buf[pos + 8:pos + 8 + size]
        pos += 8 + size
        if dt == "BYTES":
            items, p = [], 0
            while p < len(data):
                (k,) = struct.unpack_from("<I", data, p)
                items.append(data[p + 4:p + 4 + k].decode())
                p += 4 + k
            arr = np.array(items, dtype=object).reshape(dims)
        else:
            arr = np.frombuffer(data, dtype=NUMERIC[dt]).reshape(dims)
        cols[name] = (dt, arr)
    assert pos == len(buf), "trailing bytes"
    return cols


class Worker:
    def __init__(self, model_dir, env=None):
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([sys.executable, "-u", HARNESS, "serve", "--model-dir", model_dir],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                     env=dict(os.environ, **(env or {})))

    def send(self, kind, payload=b""):
        self.proc.stdin.write(struct.pack(">IB", len(payload) + 1, ord(kind)) + payload)
        self.proc.stdin.flush()

    def recv(self):
        """The next frame; an "m" (timings) frame before a result is checked and kept in self.timings."""
        kind, payload = self._frame()
        self.timings = None
        if kind == "m":
            assert len(payload) == 24, "timings frame of %d bytes" % len(payload)
            self.timings = struct.unpack("<QQQ", payload)
            kind, payload = self._frame()
            assert kind in "jt", "timings before a %r frame" % kind
        return kind, payload

    def _frame(self):
        header = self.proc.stdout.read(5)
        if len(header) < 5:
            raise EOFError("worker closed stdout; log:\n" + self.stderr())
        length, kind = struct.unpack(">IB", header)
        payload = self.proc.stdout.read(length - 1)
        return chr(kind), payload

    def recv_json(self, want):
        kind, payload = self.recv()
        value = json.loads(payload)
        assert kind == want, "got %r %r, want %r" % (kind, value, want)
        return value

    def call_json(self, value):
        self.send("J", json.dumps(value).encode())
        return self.recv()

    def close(self, timeout=10):
        self.proc.stdin.close()
        rc = self.proc.wait(timeout)
        self.proc.stdout.close()
        return rc

    def dispose(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self.log):
            f.close()

    def stderr(self):
        self.log.seek(0)
        return self.log.read().decode(errors="replace")


def model_dir(tmp, source, name="m"):
    d = os.path.join(tmp, name)
    os.makedirs(d)
    with open(os.path.join(d, "score.py"), "w") as f:
        f.write(textwrap.dedent(source))
    return d


SCORE = """
import numpy as np
import pandas as pd

print("stray print at import")


def load_model(model_file_name="weights.bin"):
    print("stray print in load_model")
    return {"file": model_file_name}


def describe():
    return {"inputs": [{"name": "x", "datatype": "FP64", "shape": [-1]}],
            "outputs": [{"name": "y", "datatype": "FP64", "shape": [-1]}]}


def predict(data, model=None):
    print("stray print in predict", type(data).__name__)
    if isinstance(data, pd.DataFrame) and "op" in data:  # tensor requests can reach the JSON ops too
        data = {"op": data["op"].iloc[0], "msg": "from tensors"}
    if isinstance(data, pd.DataFrame):
        out = pd.DataFrame({"x2": data["x"] * 2, "n1": data["n"] + 1, "s_up": data["s"].str.upper()})
        out["seen"] = ",".join("%s:%s" % (c, t) for c, t in data.dtypes.items())
        return out
    if isinstance(data, np.ndarray):
        return data.sum(axis=1)
    if isinstance(data, dict) and data.get("op") == "raise":
        raise ValueError("bad input: " + data["msg"])
    if isinstance(data, dict) and data.get("op") == "numpy":
        return {"f": np.float32(1.5), "i": np.int64(7), "arr": np.array([1.0, np.nan, np.inf]),
                "df": pd.DataFrame({"a": [1, 2], "b": ["x", None]}), "s": pd.Series([0.5, None]),
                "nan": float("nan"), "b": np.bool_(True)}
    if isinstance(data, dict) and data.get("op") == "unwrap":
        return {"predictions": [1, 2, 3], "model_version": "v3"}
    if isinstance(data, dict) and any(isinstance(v, np.ndarray) for v in data.values()):
        return {k: v.shape for k, v in data.items()}
    return {"echo": data, "model": model}
"""


class ServeTest(unittest.TestCase):
    """One worker shared by the request/response tests."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.w = Worker(model_dir(cls.tmp.name, SCORE))
        cls.hello = cls.w.recv_json("H")

    @classmethod
    def tearDownClass(cls):
        cls.w.close()
        cls.w.dispose()
        cls.tmp.cleanup()

    def test_hello(self):
        self.assertEqual(self.hello["ok"], True)
        self.assertEqual(self.hello["runtime"], "python")
        self.assertEqual(self.hello["pid"], self.w.proc.pid)
        self.assertEqual(self.hello["inputs"], [{"name": "x", "datatype": "FP64", "shape": [-1]}])
        self.assertEqual(self.hello["outputs"][0]["name"], "y")

    def test_json_round_trip(self):
        value = {"data": [[1.5, "a"], [2, None]], "columns": ["x", "y"], "ü": True}
        kind, payload = self.w.call_json(value)
        self.assertEqual(kind, "j")
        self.assertEqual(json.loads(payload), {"echo": value, "model": {"file": "weights.bin"}})

    def test_json_numpy_pandas_values(self):
        kind, payload = self.w.call_json({"op": "numpy"})
        self.assertEqual(kind, "j")
        self.assertNotIn(b"NaN", payload)
        self.assertEqual(json.loads(payload), {
            "f": 1.5, "i": 7, "arr": [1.0, None, None], "df": {"a": [1, 2], "b": ["x", None]},
            "s": [0.5, None], "nan": None, "b": True})

    def test_tensor_dataframe_round_trip(self):
        frame = encode_tensors([("x", "FP64", [1.5, -2.0, 0.0]), ("n", "INT64", [1, 2, 3]),
                                ("s", "BYTES", ["basic", "pro", "ünï"])])
        self.w.send("T", frame)
        kind, payload = self.w.recv()
        self.assertEqual(kind, "t", payload)
        out = decode_tensors(payload)
        self.assertEqual(list(out), ["x2", "n1", "s_up", "seen"])
        self.assertEqual(out["x2"][0], "FP64")
        np.testing.assert_array_equal(out["x2"][1], [3.0, -4.0, 0.0])
        self.assertEqual(out["n1"][0], "INT64")
        np.testing.assert_array_equal(out["n1"][1], [2, 3, 4])
        self.assertEqual(out["s_up"], ("BYTES", out["s_up"][1]))
        self.assertEqual(out["s_up"][1].tolist(), ["BASIC", "PRO", "ÜNÏ"])
        self.assertEqual(out["seen"][1][0], "x:float64,n:int64,s:object")

    def test_tensor_single_2d_column_is_ndarray(self):
        self.w.send("T", encode_tensors([("features", "FP32", np.arange(6).reshape(2, 3))]))
        kind, payload = self.w.recv()
        self.assertEqual(kind, "t", payload)
        out = decode_tensors(payload)
        self.assertEqual(list(out), ["y"])  # the single declared output's name
        self.assertEqual(out["y"][0], "FP32")
        np.testing.assert_array_equal(out["y"][1], [3.0, 12.0])

    def test_tensor_mixed_shapes_is_dict(self):
        self.w.send("T", encode_tensors([("a", "FP32", np.zeros((2, 3))), ("b", "INT32", [1, 2, 3])]))
        out = decode_tensors(self.w.recv()[1])
        self.assertEqual(out["a"][0], "INT64")
        np.testing.assert_array_equal(out["a"][1], [2, 3])
        np.testing.assert_array_equal(out["b"][1], [3])

    def test_tensor_unwraps_predictions(self):
        # predict returns {"predictions": [1, 2, 3], "model_version": "v3"}: only the list goes back
        self.w.send("T", encode_tensors([("op", "BYTES", ["unwrap"])]))
        kind, payload = self.w.recv()
        self.assertEqual(kind, "t", payload)
        out = decode_tensors(payload)
        self.assertEqual(list(out), ["y"])
        self.assertEqual(out["y"][0], "INT64")
        np.testing.assert_array_equal(out["y"][1], [1, 2, 3])

    def test_tensor_predict_error(self):
        self.w.send("T", encode_tensors([("op", "BYTES", ["raise"])]))
        self.assertEqual(self.w.recv_json("E"), {"error": "bad input: from tensors", "type": "ValueError"})

    def test_malformed_tensor_frame_is_error(self):
        self.w.send("T", b"\x01\x00\x00\x00\x01")
        err = self.w.recv_json("E")
        self.assertEqual(err["type"], "ProtocolError")
        self.assertEqual(self.w.call_json(1)[0], "j")

    def test_predict_error_then_still_serving(self):
        err = json.loads(self.w.call_json({"op": "raise", "msg": "no plan"})[1])
        self.assertEqual(err, {"error": "bad input: no plan", "type": "ValueError"})
        self.w.send("Q")
        self.assertEqual(self.w.recv(), ("q", b""))
        self.assertEqual(self.w.call_json([1, 2])[0], "j")

    def test_stray_prints_go_to_log(self):
        self.assertEqual(self.w.call_json("hi")[0], "j")
        log = self.w.stderr()
        for what in ("at import", "in load_model", "in predict"):
            self.assertIn("stray print " + what, log)

    def test_unknown_kind(self):
        self.w.send("Z", b"{}")
        self.assertEqual(self.w.recv_json("E")["type"], "ProtocolError")


class LifecycleTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)

    def start(self, source):
        w = Worker(model_dir(self.tmp.name, source))
        self.addCleanup(w.dispose)
        return w

    def test_load_model_raises(self):
        w = self.start("def load_model():\n    raise RuntimeError('weights missing')\ndef predict(d):\n    return d\n")
        hello = w.recv_json("H")
        self.assertFalse(hello["ok"])
        self.assertTrue(hello["error"].startswith("RuntimeError: weights missing\n"), hello["error"])
        self.assertIn("Traceback", hello["error"])
        self.assertEqual(w.close(), 1)
        self.assertIn("weights missing", w.stderr())

    def test_import_error(self):
        w = self.start("import not_a_real_module_xyz\n")
        hello = w.recv_json("H")
        self.assertFalse(hello["ok"])
        self.assertIn("ModuleNotFoundError", hello["error"])
        self.assertEqual(w.close(), 1)

    def test_predict_without_model_kwarg_and_eof(self):
        w = self.start("def load_model():\n    return 3\ndef predict(data):\n    return [data, data]\n")
        self.assertTrue(w.recv_json("H")["ok"])
        self.assertEqual(w.call_json({"a": 1}), ("j", b'[{"a":1},{"a":1}]'))
        self.assertEqual(w.close(), 0)

    def test_no_load_model(self):
        w = self.start("def predict(data, model=None):\n    return model\n")
        self.assertTrue(w.recv_json("H")["ok"])
        self.assertEqual(w.call_json(1), ("j", b"null"))
        self.assertEqual(w.close(), 0)

    def test_params_frame(self):
        # MLflow params: a predict() that takes params says so in its hello and gets them from a P frame.
        w = self.start("def predict(data, model=None, params=None):\n"
                       "    return {'y': data['x'] * params['scale']}\n")
        self.assertTrue(w.recv_json("H")["params"])
        params = json.dumps({"scale": 3}).encode()
        w.send("P", struct.pack("<I", len(params)) + params + encode_tensors([("x", "FP64", [1.0, 2.0])]))
        kind, payload = w.recv()
        self.assertEqual(kind, "t", payload)
        self.assertEqual(decode_tensors(payload)["y"][1].tolist(), [3.0, 6.0])
        self.assertEqual(w.close(), 0)

    def test_no_params_in_hello(self):
        w = self.start("def predict(data, model=None):\n    return data\n")
        self.assertFalse(w.recv_json("H")["params"])
        self.assertEqual(w.close(), 0)

    def test_mlflow_pyfunc_loader_module(self):
        # An MLflow python_function directory (no score.py) loads through its loader_module, with code/ on
        # sys.path, turns a split-oriented input into a DataFrame in the signature's order, and passes params.
        d = os.path.join(self.tmp.name, "mlflow")
        os.makedirs(os.path.join(d, "code"))
        with open(os.path.join(d, "MLmodel"), "w") as f:
            f.write("flavors:\n  python_function:\n    loader_module: my_loader\n    code: code\n    data: weights.json\n"
                    "signature:\n  inputs: '[{\"name\": \"a\", \"type\": \"double\"}, {\"name\": \"b\", \"type\": \"double\"}]'\n")
        with open(os.path.join(d, "weights.json"), "w") as f:
            f.write('{"w": 10}')
        with open(os.path.join(d, "code", "my_loader.py"), "w") as f:
            f.write(textwrap.dedent("""
                import json
                class M:
                    def __init__(self, w):
                        self.w = w
                    def predict(self, df, params=None):
                        assert list(df.columns) == ["a", "b"], list(df.columns)
                        return (df["a"] * self.w + df["b"] + (params or {}).get("bias", 0)).tolist()
                def _load_pyfunc(path):
                    return M(json.load(open(path))["w"])
                """))
        w = Worker(d)
        self.addCleanup(w.dispose)
        self.assertTrue(w.recv_json("H")["params"])
        self.assertEqual(w.call_json({"columns": ["b", "a"], "data": [[1, 2], [3, 4]]}), ("j", b"[21,43]"))
        params = json.dumps({"bias": 100}).encode()
        w.send("P", struct.pack("<I", len(params)) + params + encode_tensors([("a", "FP64", [1.0]), ("b", "FP64", [2.0])]))
        kind, payload = w.recv()
        self.assertEqual(kind, "t", payload)
        self.assertEqual(decode_tensors(payload)["predictions"][1].tolist(), [112.0])
        self.assertEqual(w.close(), 0)


def run_inspect(model_dir, packages):
    r = subprocess.run([sys.executable, HARNESS, "inspect", "--model-dir", model_dir, "--packages", packages],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


class DecodeTest(unittest.TestCase):
    """The BYTES decoder and result conversion, in process (the hot path of batch scoring)."""

    @classmethod
    def setUpClass(cls):
        sys.path.insert(0, HERE)
        import harness
        cls.h = harness

    @staticmethod
    def blob(values):
        return b"".join(struct.pack("<I", len(v)) + v for v in values)

    def test_bytes_values(self):
        vals = [b"basic", b"", "\u00fcn\u00ef".encode(), b"\xff\xfe", b"basic", b"pro"] * 3
        arr = self.h._decode_bytes(memoryview(self.blob(vals)), len(vals), "c")
        self.assertEqual(arr.dtype, object)
        want = [v.decode() if v != b"\xff\xfe" else v for v in vals]
        self.assertEqual(arr.tolist(), want)
        self.assertEqual(self.h._decode_bytes(b"", 0, "c").tolist(), [])

    def test_bytes_fast_path_matches_walk(self):
        # The split fast path (short values, no NUL) must give exactly what walking the lengths gives, and
        # step aside (None) whenever its layout does not hold: empty values, NUL bytes, values >= 256 bytes.
        import random
        rng = random.Random(7)
        alphabet = [b"a", b"b", b"\x00", b"\xc3\xbc", b"\xff", b" ", b"\x01"]
        fast = 0
        for trial in range(400):
            n = rng.choice([1, 2, 3, 17, 100])
            vals = []
            for _ in range(n):
                k = rng.choice([0, 1, 2, 5, 40, 255, 256, 300]) if trial % 4 == 0 else rng.choice([1, 3, 10])
                vals.append(b"".join(rng.choice(alphabet if trial % 3 == 0 else alphabet[:2] + alphabet[3:4]) for _ in range(k)))
            data = self.blob(vals)
            walked = self.h._walk_strings(data, n, "c")
            split = self.h._split_short_strings(data, n)
            if split is not None:
                fast += 1
                self.assertEqual(split, walked, vals)
                self.assertTrue(all(v and b"\x00" not in v and len(v) < 256 for v in vals))
            elif all(v and b"\x00" not in v and len(v) < 256 for v in vals):
                self.fail("fast path refused %r" % vals)
            for cut in (1, 3):  # truncated data never passes the fast path's check
                self.assertIsNone(self.h._split_short_strings(data[:-cut], n))
        self.assertGreater(fast, 100)

    def test_bytes_malformed(self):
        good = self.blob([b"basic", b"pro"])
        for data, count, msg in [
            (good[:-1], 2, "too short"),            # last value cut
            (good + b"x", 2, "extra bytes"),       # trailing garbage
            (good, 3, "too short"),                 # one element more than the data
            (good[:7], 2, "too short"),             # cut inside the second length
            (self.blob([b"basic", b"basic"])[:-2], 2, "too short"),  # cut value that is a cached prefix
        ]:
            with self.assertRaisesRegex(self.h.ProtocolError, msg):
                self.h._decode_bytes(data, count, "c")

    def test_result_unwrap_keeps_semantics(self):
        r = self.h.result_to_tensors({"prediction": [1, 0], "probability": [0.5, 0.25]})
        self.assertEqual([(n, a.dtype.kind, a.tolist()) for n, a in r],
                         [("prediction", "i", [1, 0]), ("probability", "f", [0.5, 0.25])])
        r = self.h.result_to_tensors({"predictions": [1, 2], "model": "v3"})
        self.assertEqual([(n, a.tolist()) for n, a in r], [("predictions", [1, 2])])
        r = self.h.result_to_tensors({"predictions": np.array([3]), "info": {"a": 1}})  # a dict value is a scalar
        self.assertEqual([(n, a.tolist()) for n, a in r], [("predictions", [3])])


ENCODE_NAMES = {"b": "BOOL", "u1": "UINT8", "i4": "INT32", "i8": "INT64", "f4": "FP32", "f8": "FP64"}


class EncodeTest(unittest.TestCase):
    """The answer's encoding, in process: byte for byte what this file's own encoder writes, whatever the
    header cache has seen before; write_frame's one-write and several-write forms."""

    @classmethod
    def setUpClass(cls):
        sys.path.insert(0, HERE)
        import harness
        cls.h = harness

    def expected(self, cols):
        ref = []
        for name, a in cols:
            if a.dtype.kind in "OU":
                ref.append((name, "BYTES", a))
            else:
                key = "b" if a.dtype.kind == "b" else a.dtype.kind + str(a.dtype.itemsize)
                ref.append((name, ENCODE_NAMES[key], np.asarray(a, dtype=a.dtype.newbyteorder("<"))))
        return encode_tensors(ref)

    def test_cached_headers_encode_every_layout(self):
        self.h._OUT_HEADERS.clear()
        f8 = np.array([0.25, -1.5])
        answers = [
            [("predictions", np.array([0.5]))],
            [("predictions", np.array([0.75]))],                  # cached header, new data
            [("predictions", f8)],                                # another shape
            [("predictions", f8.astype(np.float32))],             # another dtype, same shape
            [("scores", f8)],                                     # another name
            [("predictions", f8.astype(">f8"))],                  # big-endian: swapped to little-endian
            [("predictions", np.arange(6, dtype=np.int64).reshape(2, 3).T)],  # not contiguous
            [("predictions", np.arange(6, dtype=np.int64).reshape(3, 2))],
            [("predictions", np.array(2.5))],                     # 0-d
            [("predictions", np.zeros(0))],                       # empty
            [("predictions", np.array([True, False]))],
            [("predictions", np.array(["a", "bc"], dtype=object))],  # BYTES of a cached name and shape
            [("predictions", np.array(["long value", "x"], dtype=object))],
            [("predictions", f8), ("label", np.array([1, 0], dtype=np.int32)), ("u", np.array([7, 9], dtype=np.uint8))],
            [("predictions", np.array([0.5]))],
        ]
        for rnd in range(2):  # the second round finds every numeric header cached
            for cols in answers:
                with self.subTest(rnd=rnd, cols=cols):
                    got = b"".join(bytes(c) for c in self.h.encode_tensors(cols))
                    self.assertEqual(got, self.expected(cols))
                    out = decode_tensors(got)
                    for name, a in cols:
                        want = a.tolist() if a.dtype.kind != "O" else list(a)
                        self.assertEqual(out[name][1].tolist(), want)
        self.assertGreater(len(self.h._OUT_HEADERS), 10)

    def test_write_frame(self):
        import io
        chunks = [b"ab", memoryview(np.array([1.0, 2.0])).cast("B"), b""]
        want = struct.pack(">IB", 19, ord("t")) + b"ab" + np.array([1.0, 2.0]).tobytes()
        timings = struct.pack(">IB", 25, ord("m")) + bytes(range(24))
        out = io.BytesIO()
        self.h.write_frame(out, "t", chunks, before=timings)
        self.assertEqual(out.getvalue(), timings + want)
        old = self.h._JOIN_MAX
        self.h._JOIN_MAX = 4  # the several-writes form of a large frame
        try:
            out = io.BytesIO()
            self.h.write_frame(out, "t", chunks, before=timings)
            self.assertEqual(out.getvalue(), timings + want)
        finally:
            self.h._JOIN_MAX = old
        old = self.h.MAX_FRAME
        self.h.MAX_FRAME = 10
        try:
            out = io.BytesIO()
            with self.assertRaisesRegex(ValueError, "exceeds"):
                self.h.write_frame(out, "t", chunks, before=timings)
            self.assertEqual(out.getvalue(), b"")  # nothing written: the error frame goes out alone
        finally:
            self.h.MAX_FRAME = old


class InspectTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)

    def test_good(self):
        d = model_dir(self.tmp.name, "import not_installed_ok\nX = 1\ndef load_model():\n    pass\n"
                                     "async def predict(d):\n    pass\nclass C:\n    def m(self):\n        pass\n")
        got = run_inspect(d, "scikit-learn, sklearn,numpy,PyYAML,no-such-pkg-xyz")
        self.assertEqual(got["python"], "%d.%d.%d" % sys.version_info[:3])
        self.assertEqual(got["score_py"], {"exists": True, "parses": True, "error": None,
                                           "functions": ["load_model", "predict"]})
        pk = got["packages"]
        self.assertRegex(pk["scikit-learn"], r"^\d+\.\d+")
        self.assertEqual(pk["sklearn"], pk["scikit-learn"])
        self.assertEqual(pk["numpy"], np.__version__)
        self.assertIsNotNone(pk["PyYAML"])
        self.assertIsNone(pk["no-such-pkg-xyz"])

    def test_broken(self):
        d = model_dir(self.tmp.name, "def load_model():\n    return 1\n\ndef predict(x)\n    return x\n")
        got = run_inspect(d, "")
        self.assertEqual(got["packages"], {})
        self.assertTrue(got["score_py"]["exists"])
        self.assertFalse(got["score_py"]["parses"])
        self.assertRegex(got["score_py"]["error"], r"^SyntaxError: .* line 4$")

    def test_missing(self):
        got = run_inspect(self.tmp.name, "numpy")
        self.assertFalse(got["score_py"]["exists"])
        self.assertFalse(got["score_py"]["parses"])
        self.assertEqual(got["score_py"]["functions"], [])


@unittest.skipUnless(os.path.exists(os.path.join(EXAMPLES, "sklearn-churn", "model.pkl")),
                     "run examples/build.sh first")
class ChurnExampleTest(unittest.TestCase):
    def test_churn_json_and_tensors(self):
        d = os.path.join(EXAMPLES, "sklearn-churn")
        with open(os.path.join(d, "metadata.json")) as f:
            sample = json.load(f)["sample_input"]
        w = Worker(d)
        try:
            self.assertTrue(w.recv_json("H")["ok"])
            kind, payload = w.call_json(sample)
            self.assertEqual(kind, "j", payload)
            res = json.loads(payload)
            self.assertEqual(len(res["prediction"]), 3)
            self.assertTrue(all(0 <= p <= 1 for p in res["probability"]))
            rows = sample["data"]
            # the same rows as records, and as a tensor request (a DataFrame in predict)
            records = [dict(zip(sample["columns"], r)) for r in rows]
            self.assertEqual(json.loads(w.call_json(records)[1]), res)
            cols = list(zip(*rows))
            w.send("T", encode_tensors([(name, "BYTES" if name == "plan" else "FP64", list(col))
                                        for name, col in zip(sample["columns"], cols)]))
            kind, payload = w.recv()
            self.assertEqual(kind, "t", payload)
            out = decode_tensors(payload)
            self.assertEqual(out["prediction"][0], "INT64")
            self.assertEqual(out["prediction"][1].tolist(), res["prediction"])
            np.testing.assert_allclose(out["probability"][1], res["probability"])
            self.assertFalse(any(math.isnan(p) for p in res["probability"]))
            self.assertEqual(w.close(), 0)
        finally:
            w.dispose()


# --- the fast path: decode_input against the general path ----------------------------------------------

# A score.py that answers what predict() received: its type, dtypes, shape, column names and values, so two
# workers (fast path on and off) can be compared on the same frame.
ECHO_INPUT = """
import numpy as np
import pandas as pd


def predict(data, model=None):
    if isinstance(data, pd.DataFrame):
        return {"type": "DataFrame", "columns": [str(c) for c in data.columns], "index": data.index.tolist(),
                "dtypes": [str(t) for t in data.dtypes], "values": data.astype(object).values.tolist()}
    if isinstance(data, np.ndarray):
        return {"type": "ndarray", "dtype": str(data.dtype), "shape": list(data.shape), "values": data.tolist()}
    return {"type": type(data).__name__, "keys": sorted(data)}
"""

NUMPY_IN = """
import numpy as np


def predict(data: np.ndarray, model=None):
    return {"type": type(data).__name__, "dtype": str(data.dtype), "shape": list(data.shape),
            "flags": [bool(data.flags.writeable)], "values": data.tolist()}
"""


def table_frames():
    """Tensor frames of every shape a request becomes (docs/worker-protocol.md): the forms MLflow's
    dataframe_split, dataframe_records, instances/inputs and CSV decode to, with uniform, mixed and string
    columns, one column, zero rows, duplicate names, and non-table tensors."""
    rng = np.random.default_rng(3)
    floats = [("f%02d" % i, "FP64", rng.normal(size=4).tolist()) for i in range(30)]
    return {
        "fp64 x30, 4 rows": floats,
        "fp64 x30, 1 row": [(n, dt, v[:1]) for n, dt, v in floats],
        "fp64, 0 rows": [(n, dt, []) for n, dt, v in floats[:3]],
        "one fp64 column": floats[:1],
        "int64": [("a", "INT64", [1, -2, 3]), ("b", "INT64", [4, 5, 2 ** 40])],
        "fp32": [("a", "FP32", [1.5, 2.25]), ("b", "FP32", [-0.5, 3.0])],
        "bool": [("a", "BOOL", [True, False]), ("b", "BOOL", [False, False])],
        "mixed fp64 int64 bool": [("x", "FP64", [0.5, float("nan")]), ("n", "INT64", [7, 8]), ("ok", "BOOL", [True, False])],
        "strings and floats (churn)": [("age", "FP64", [31.0, 45.0]), ("plan", "BYTES", ["pro", "basic"]),
                                       ("calls", "FP64", [0.0, 2.0])],
        "strings only": [("s", "BYTES", ["a", "\u00fcber"]), ("t", "BYTES", ["", "x"])],
        "duplicate names": [("a", "FP64", [1.0, 2.0]), ("a", "FP64", [3.0, 4.0])],
        "unequal lengths": [("a", "FP64", [1.0, 2.0]), ("b", "FP64", [3.0])],
        "2-D tensor": [("img", "FP32", [[1.0, 2.0], [3.0, 4.0]])],
    }


class FastPathTest(unittest.TestCase):
    """decode_input (one 2-D block) gives predict() exactly what the general path gives."""

    @classmethod
    def setUpClass(cls):
        sys.path.insert(0, HERE)
        import harness
        import pandas as pd
        cls.h, cls.pd = harness, pd

    def general(self, frame):
        return self.h.tensors_to_input(self.h.decode_tensors(frame))

    def test_dataframe_equals_general_path(self):
        for name, cols in table_frames().items():
            with self.subTest(name):
                frame = encode_tensors(cols)
                self.h.decode_input(frame)  # the first of a layout is parsed; the one below may take the cache
                want, got = self.general(frame), self.h.decode_input(frame)
                self.assertIs(type(got), type(want))
                if isinstance(want, self.pd.DataFrame):
                    self.pd.testing.assert_frame_equal(got, want, check_exact=True)
                elif isinstance(want, dict):
                    self.assertEqual(sorted(got), sorted(want))
                    for k in want:
                        np.testing.assert_array_equal(got[k], want[k])
                else:
                    np.testing.assert_array_equal(got, want)

    def test_numpy_block_equals_general_path(self):
        for name, cols in table_frames().items():
            with self.subTest(name):
                frame = encode_tensors(cols)
                self.h.decode_input(frame, numpy_in=True)
                want, got = self.general(frame), self.h.decode_input(frame, numpy_in=True)
                if name in ("strings and floats (churn)", "strings only", "unequal lengths", "2-D tensor"):
                    # not a numeric table: what the model would get without the declaration
                    self.assertIs(type(got), type(want))
                    continue
                self.assertIsInstance(got, np.ndarray)
                self.assertEqual(got.shape, want.shape)
                self.assertEqual(got.dtype, want.to_numpy().dtype)  # mixed columns: their common type, as pandas gives it
                self.assertTrue(self.pd.DataFrame(got).equals(self.pd.DataFrame(want.to_numpy())), (got, want))

    def test_known_layout_is_checked(self):
        # The second frame of a layout takes the cached path: the same answer; a frame of the same length with
        # other names, another datatype or other row count must not be mistaken for it.
        # (Short columns are gathered byte by byte, longer ones (over 64 bytes) slice by slice.)
        rng = np.random.default_rng(5)
        for cols in ([("a", "FP64", [1.0, 2.0]), ("b", "FP64", [3.0, 4.0])],
                     [("x%02d" % i, "FP32", rng.normal(size=3).astype(np.float32).tolist()) for i in range(30)],
                     [("col%d" % i, "FP64", rng.normal(size=20).tolist()) for i in range(12)],  # names of 4 and 5 bytes
                     [("only", "INT64", list(range(40)))],
                     [("c%d" % i, "FP64", rng.normal(size=5000).tolist()) for i in range(3)]):  # 120 KB
            frame = encode_tensors(cols)
            first = self.h.decode_input(frame, numpy_in=True)
            self.assertIn(len(frame), self.h._TABLES)
            other = encode_tensors([(n, dt, (np.asarray(v) * 2).tolist()) for n, dt, v in cols])
            got = self.h.decode_input(other, numpy_in=True)
            np.testing.assert_array_equal(got, first * 2)
            np.testing.assert_array_equal(got, self.general(other).to_numpy())
            self.assertTrue(got.flags.writeable)
            self.pd.testing.assert_frame_equal(self.h.decode_input(other), self.general(other), check_exact=True)
        same_len = [
            [("a", "FP64", [1.0, 2.0]), ("c", "FP64", [3.0, 4.0])],  # another name
            [("b", "FP64", [1.0, 2.0]), ("a", "FP64", [3.0, 4.0])],  # the columns swapped
            [("a", "FP32", [1.0, 2.0, 5.0, 6.0]), ("b", "FP32", [3.0, 4.0, 7.0, 8.0])],  # same bytes, 4 rows of FP32
        ]
        for cols in same_len:
            frame = encode_tensors(cols)
            self.assertEqual(len(frame), len(encode_tensors([("a", "FP64", [1.0, 2.0]), ("b", "FP64", [3.0, 4.0])])))
            self.pd.testing.assert_frame_equal(self.h.decode_input(frame), self.general(frame), check_exact=True)
            self.pd.testing.assert_frame_equal(self.h.decode_input(frame), self.general(frame), check_exact=True)

    def test_block_is_one_copy(self):
        cols = [("a", "FP64", [1.0, 2.0]), ("b", "FP64", [3.0, 4.0])]
        frame = bytearray(encode_tensors(cols))
        got = self.h.decode_input(frame, numpy_in=True)
        self.assertTrue(got.flags.writeable)
        frame[-8:] = struct.pack("<d", 99.0)  # the frame's buffer is reused for the next request
        self.assertEqual(got.tolist(), [[1.0, 3.0], [2.0, 4.0]])
        long_cols = [("a", "FP64", np.arange(10.0)), ("b", "FP64", np.arange(10.0) + 10)]
        for _ in range(2):  # the first of the layout, then the known one (slice by slice)
            frame = bytearray(encode_tensors(long_cols))
            got = self.h.decode_input(memoryview(frame), numpy_in=True, transient=True)
            self.assertTrue(got.flags.writeable)
            frame[-80:] = bytes(80)
            self.assertEqual(got[:, 1].tolist(), list(np.arange(10.0) + 10))
        df = self.h.decode_input(bytes(encode_tensors(cols)))
        self.assertEqual(len(df._mgr.blocks), 1)  # one block, not one per column

    def test_malformed_frames_still_refused(self):
        good = encode_tensors([("a", "FP64", [1.0, 2.0])])
        for bad in (good[:-1], good + b"\0", good.replace(b"FP64", b"FP99")):
            with self.assertRaises(self.h.ProtocolError):
                self.h.decode_input(bad)

    def test_predict_input_declared_or_detected(self):
        with tempfile.TemporaryDirectory() as tmp:
            d = model_dir(tmp, NUMPY_IN, "annotated")
            self.assertEqual(self.h.predict_input(d, lambda data, model=None: None), "dataframe")
            sys.path.insert(0, d)
            try:
                spec = {}
                exec(compile(NUMPY_IN, "score.py", "exec"), spec)
            finally:
                sys.path.remove(d)
            self.assertEqual(self.h.predict_input(d, spec["predict"]), "numpy")
            with open(os.path.join(d, "runtime.yaml"), "w") as f:
                f.write("MODEL_ARTIFACT_VERSION: '3.0'\nSLIPWAY:\n  PREDICT_INPUT: dataframe\n")
            self.assertEqual(self.h.predict_input(d, spec["predict"]), "dataframe")  # the declaration wins
            with open(os.path.join(d, "runtime.yaml"), "w") as f:
                f.write("SLIPWAY:\n  PREDICT_INPUT: tensors\n")
            with self.assertRaisesRegex(ValueError, "numpy or dataframe"):
                self.h.predict_input(d, spec["predict"])

    def test_worker_fast_and_general_paths_answer_alike(self):
        # Through the harness process: the same frames to a worker with the fast path and one without
        # (HARNESS_FAST_PATH=0) must be handed to predict() identically, and answered identically.
        with tempfile.TemporaryDirectory() as tmp:
            d = model_dir(tmp, ECHO_INPUT)
            fast, general = Worker(d), Worker(d, env={"HARNESS_FAST_PATH": "0"})
            try:
                for w in (fast, general):
                    self.assertEqual(w.recv_json("H")["predict_input"], "dataframe")
                for name, cols in table_frames().items():
                    with self.subTest(name):
                        answers = []
                        for w in (fast, general):
                            w.send("T", encode_tensors(cols))
                            kind, payload = w.recv()
                            self.assertEqual(kind, "t", payload)
                            self.assertEqual(len(w.timings), 3)
                            answers.append(payload)
                        self.assertEqual(answers[0], answers[1])
            finally:
                fast.dispose()
                general.dispose()

    def test_worker_numpy_in(self):
        with tempfile.TemporaryDirectory() as tmp:
            d = model_dir(tmp, NUMPY_IN)
            w = Worker(d)
            try:
                self.assertEqual(w.recv_json("H")["predict_input"], "numpy")
                w.send("T", encode_tensors([("a", "FP64", [1.0, 2.0]), ("b", "INT64", [3, 4])]))
                kind, payload = w.recv()
                self.assertEqual(kind, "t", payload)
                out = decode_tensors(payload)
                self.assertEqual(out["type"][1].tolist(), "ndarray")
                self.assertEqual(out["dtype"][1].tolist(), "float64")
                self.assertEqual(out["shape"][1].tolist(), [2, 2])
                self.assertEqual(out["values"][1].tolist(), [[1.0, 3.0], [2.0, 4.0]])
                decode_ns, predict_ns, encode_ns = w.timings
                self.assertGreater(decode_ns + predict_ns + encode_ns, 0)
            finally:
                w.dispose()


SUM_ROWS = """
import sys

import numpy as np


def predict(data: np.ndarray, model=None):
    return {"sum": data.sum(axis=1), "sklearn_loaded": np.array([\"sklearn\" in sys.modules] * len(data))}
"""


class PipelineTest(unittest.TestCase):
    """The server writes the next requests while the harness works on one (docs/worker-protocol.md): frames
    arriving together, or larger than the harness's read buffer, are answered one by one, in order."""

    def test_pipelined_frames_answered_in_order(self):
        with tempfile.TemporaryDirectory() as tmp:
            w = Worker(model_dir(tmp, SUM_ROWS))
            try:
                self.assertEqual(w.recv_json("H")["predict_input"], "numpy")
                rng = np.random.default_rng(11)
                blocks = [rng.normal(size=(n, 3)) for n in (1, 2, 20000, 1, 3)]  # 20000 rows: 480 KB, over 64 KiB
                frames = []
                for i, b in enumerate(blocks):
                    payload = encode_tensors([("c%d" % j, "FP64", b[:, j]) for j in range(3)])
                    frames.append(struct.pack(">IB", len(payload) + 1, ord("T")) + payload)
                    if i == 1:
                        frames.append(struct.pack(">IB", 1, ord("Q")))  # a ping between requests
                w.proc.stdin.write(b"".join(frames))  # all at once: they arrive together
                w.proc.stdin.flush()
                for i, b in enumerate(blocks):
                    kind, payload = w.recv()
                    self.assertEqual(kind, "t", payload)
                    out = decode_tensors(payload)
                    np.testing.assert_array_equal(out["sum"][1], b.sum(axis=1))
                    self.assertEqual(len(w.timings), 3)
                    if i == 1:
                        self.assertEqual(w._frame(), ("q", b""))
                self.assertFalse(out["sklearn_loaded"][1].any(), "the harness imported sklearn for a model without it")
                self.assertEqual(w.close(), 0)
            finally:
                w.dispose()

    def test_kept_inputs_and_changing_answers(self):
        """Request frames are decoded from the reader's reused buffer: an input predict() keeps must not change
        when later requests overwrite that buffer (2-D tensors reach predict() as arrays over the frame's bytes,
        tables as one block). Each answer is in a layout unlike the one before."""
        rng = np.random.default_rng(3)
        with tempfile.TemporaryDirectory() as tmp:
            w = Worker(model_dir(tmp, KEEPER))
            try:
                w.recv_json("H")
                sums = []
                for i in range(7):
                    if i % 2:
                        block = rng.normal(size=(2, 3)).astype(np.float32)
                        w.send("T", encode_tensors([("img", "FP32", block)]))
                    else:
                        block = rng.normal(size=(3, 2))
                        w.send("T", encode_tensors([("a", "FP64", block[:, 0]), ("b", "FP64", block[:, 1])]))
                    sums.append(float(block.astype(float).sum()))
                    kind, payload = w.recv()
                    self.assertEqual(kind, "t", payload)
                    out = decode_tensors(payload)
                    n = i + 1
                    if n % 3 == 1:
                        np.testing.assert_allclose(out["predictions"][1], sums)
                    elif n % 3 == 2:
                        self.assertEqual(out["sums"][0], "FP32")
                        np.testing.assert_allclose(out["sums"][1], np.float32(sums), rtol=1e-6)
                        self.assertEqual(out["n"][1].tolist(), [[n, n]])
                    else:
                        np.testing.assert_allclose(out["predictions"][1], sums[::-1])
                        self.assertEqual(out["last"][1].tolist(), ["call %d" % n])
                self.assertEqual(w.close(), 0)
            finally:
                w.dispose()

    def test_a_slow_answer_is_not_held_for_the_next_call(self):
        """Quick answers may wait (HOLD_NS) to go out with the next, already read, request's; a slow call's answer
        goes out at once, not after the next call. Here the next call waits until the test has the first answer:
        held, the first answer would come only when the fallback timer lets the second call end."""
        with tempfile.TemporaryDirectory() as tmp:
            gate = os.path.join(tmp, "go")
            w = Worker(model_dir(tmp, WAITER))
            fallback = threading.Timer(20, lambda: open(gate, "w").close())
            fallback.start()
            try:
                w.recv_json("H")
                frames = [json.dumps(v).encode() for v in ({"sleep": 0.05, "n": 1}, {"until": gate, "n": 2})]
                w.proc.stdin.write(b"".join(struct.pack(">IB", len(f) + 1, ord("J")) + f for f in frames))
                w.proc.stdin.flush()  # both requests arrive together
                self.assertEqual(w.recv_json("j"), {"n": 1})
                self.assertFalse(os.path.exists(gate), "the first answer waited for the second call")
                open(gate, "w").close()
                self.assertEqual(w.recv_json("j"), {"n": 2})
                # Quick calls arriving together are all answered, in order, whether held or not.
                frames = [json.dumps({"n": n}).encode() for n in range(3, 40)]
                w.proc.stdin.write(b"".join(struct.pack(">IB", len(f) + 1, ord("J")) + f for f in frames))
                w.proc.stdin.flush()
                self.assertEqual([w.recv_json("j")["n"] for _ in frames], list(range(3, 40)))
                self.assertEqual(w.close(), 0)
            finally:
                fallback.cancel()
                w.dispose()

    def test_eof_inside_a_frame(self):
        with tempfile.TemporaryDirectory() as tmp:
            w = Worker(model_dir(tmp, SUM_ROWS))
            try:
                w.recv_json("H")
                w.proc.stdin.write(struct.pack(">IB", 100, ord("T")) + b"short")
                self.assertEqual(w.close(), 2)
                self.assertIn("unexpected EOF inside a frame", w.stderr())
            finally:
                w.dispose()


WAITER = """
import os, time
def predict(data):
    if data.get("sleep"):
        time.sleep(data["sleep"])
    while data.get("until") and not os.path.exists(data["until"]):
        time.sleep(0.005)
    return {"n": data["n"]}
"""

KEEPER = """
import numpy as np

KEPT = []


def predict(data, model=None):
    # Keeps every input it was given (a model may: a cache, a monitor) and answers in a layout that changes with
    # the call's number: the harness's reused buffers and cached headers must not show through.
    KEPT.append(data)
    sums = np.array([float(np.asarray(k, dtype=float).sum()) for k in KEPT])
    n = len(KEPT)
    if n % 3 == 1:
        return sums
    if n % 3 == 2:
        return {"sums": sums.astype(np.float32), "n": np.array([n] * 2, dtype=np.int32).reshape(1, 2)}
    return {"predictions": sums[::-1].copy(), "last": np.array(["call %d" % n], dtype=object)}
"""


SKLEARN_SCORE = """
import os
import pickle
import threading

import numpy as np
import sklearn

AT_LOAD = []


def load_model():
    if os.environ.get("USER_ASSUME_FINITE"):  # the user's own configuration skips the check everywhere
        sklearn.set_config(assume_finite=True)
    AT_LOAD.append(sklearn.get_config()["assume_finite"])
    with open(os.path.join(os.path.dirname(os.path.realpath(__file__)), "model.pkl"), "rb") as f:
        return pickle.load(f)


def predict(data: np.ndarray, model=None):
    if isinstance(data, dict):  # a JSON request: {"rows": [[...], ...]}
        data = np.asarray(data["rows"], dtype=float)
    assumed = sklearn.get_config()["assume_finite"]
    in_thread = []
    t = threading.Thread(target=lambda: in_thread.append(sklearn.get_config()["assume_finite"]))
    t.start()
    t.join()
    n = len(data)
    return {"p": model.predict_proba(data)[:, 1], "assume_finite": np.array([assumed] * n),
            "at_load": np.array(AT_LOAD * n), "in_thread": np.array(in_thread * n)}
"""


class SklearnFiniteTest(unittest.TestCase):
    """A scikit-learn estimator given a finite float block predicts under assume_finite (its own finiteness
    check is known to pass); NaN or infinity reach it exactly as before."""

    @classmethod
    def setUpClass(cls):
        try:
            from sklearn.ensemble import HistGradientBoostingClassifier
            from sklearn.linear_model import LogisticRegression
            from sklearn.pipeline import make_pipeline
            from sklearn.preprocessing import StandardScaler
        except ImportError:
            raise unittest.SkipTest("scikit-learn is not installed (Debian: python3-sklearn)")
        rng = np.random.default_rng(5)
        cls.X = rng.normal(size=(200, 4))
        y = (cls.X[:, 0] + cls.X[:, 1] > 0).astype(int)
        cls.models = {
            "logistic": make_pipeline(StandardScaler(), LogisticRegression()).fit(cls.X, y),
            "histgb": HistGradientBoostingClassifier(max_iter=10).fit(cls.X, y),
        }

    def worker(self, tmp, name, env=None):
        d = os.path.join(tmp, name)
        if not os.path.isdir(d):
            d = model_dir(tmp, SKLEARN_SCORE, name)
            with open(os.path.join(d, "model.pkl"), "wb") as f:
                pickle.dump(self.models[name], f)
        w = Worker(d, env)
        self.assertEqual(w.recv_json("H")["predict_input"], "numpy")
        return w

    def predict(self, w, block):
        dt = "INT64" if block.dtype.kind == "i" else "FP64"
        w.send("T", encode_tensors([("c%d" % j, dt, block[:, j]) for j in range(block.shape[1])]))
        return w.recv()

    def test_finite_input_skips_the_check_with_identical_outputs(self):
        with tempfile.TemporaryDirectory() as tmp:
            for name, model in self.models.items():
                with self.subTest(name):
                    w = self.worker(tmp, name)
                    try:
                        for block in (self.X[:1], self.X[:16]):
                            kind, payload = self.predict(w, block)
                            self.assertEqual(kind, "t", payload)
                            out = decode_tensors(payload)
                            np.testing.assert_array_equal(out["p"][1], model.predict_proba(block)[:, 1])
                            self.assertTrue(out["assume_finite"][1].all())
                    finally:
                        w.dispose()

    def test_nan_reaches_the_model_as_before(self):
        nan = self.X[:3].copy()
        nan[1, 2] = np.nan
        inf = self.X[:3].copy()
        inf[0, 0] = np.inf
        with tempfile.TemporaryDirectory() as tmp:
            w = self.worker(tmp, "logistic")
            try:
                for block in (nan, inf):
                    try:
                        self.models["logistic"].predict_proba(block)
                        self.fail("LogisticRegression took a non-finite input")
                    except ValueError as e:
                        want = str(e)
                    kind, payload = self.predict(w, block)
                    self.assertEqual(kind, "E", payload)
                    self.assertEqual(json.loads(payload), {"error": want, "type": "ValueError"})
            finally:
                w.dispose()
            w = self.worker(tmp, "histgb")  # takes NaN on purpose
            try:
                kind, payload = self.predict(w, nan)
                self.assertEqual(kind, "t", payload)
                out = decode_tensors(payload)
                np.testing.assert_array_equal(out["p"][1], self.models["histgb"].predict_proba(nan)[:, 1])
                self.assertFalse(out["assume_finite"][1].any())
            finally:
                w.dispose()

    def flags(self, w, kind, payload):
        """[assume_finite in predict(), in load_model(), in a thread predict() started] of one answer."""
        if kind == "j":
            out = json.loads(payload)
            return [bool(out[k][0]) for k in ("assume_finite", "at_load", "in_thread")]
        self.assertEqual(kind, "t", payload)
        out = decode_tensors(payload)
        return [bool(out[k][1][0]) for k in ("assume_finite", "at_load", "in_thread")]

    def test_configuration_around_each_call(self):
        """The skipped check is a standing setting of the harness's thread, switched back on for exactly the
        calls that need it: load_model() and the threads score.py starts see the user's configuration."""
        nan = self.X[:2].copy()
        nan[0, 1] = np.nan
        with tempfile.TemporaryDirectory() as tmp:
            w = self.worker(tmp, "histgb")
            try:
                seen = []
                for block in (self.X[:1], nan, self.X[:2], None, (self.X[:1] * 10).astype(np.int64), self.X[:3]):
                    if block is None:  # a JSON request: not a float block, so the check stays on
                        seen.append(self.flags(w, *w.call_json({"rows": self.X[:2].tolist()})))
                    else:
                        seen.append(self.flags(w, *self.predict(w, block)))
                self.assertEqual([s[0] for s in seen], [True, False, True, False, False, True])
                self.assertEqual({(s[1], s[2]) for s in seen}, {(False, False)})  # load_model, score.py's thread
            finally:
                w.dispose()
            w = self.worker(tmp, "logistic")
            try:
                for _ in range(2):  # sklearn's own error for NaN, then finite input skips the check again
                    kind, payload = self.predict(w, nan)
                    self.assertEqual(kind, "E", payload)
                    self.assertIn("Input X contains NaN", json.loads(payload)["error"])
                    kind, payload = self.predict(w, self.X[:1])
                    self.assertEqual(self.flags(w, kind, payload), [True, False, False])
            finally:
                w.dispose()

    def test_user_configuration_assuming_finite_is_kept(self):
        nan = self.X[:2].copy()
        nan[1, 0] = np.nan
        with tempfile.TemporaryDirectory() as tmp:
            w = self.worker(tmp, "histgb", env={"USER_ASSUME_FINITE": "1"})
            try:
                for block in (self.X[:1], nan):
                    kind, payload = self.predict(w, block)
                    self.assertEqual(self.flags(w, kind, payload), [True, True, False])
                    np.testing.assert_array_equal(decode_tensors(payload)["p"][1],
                                                  self.models["histgb"].predict_proba(block)[:, 1])
            finally:
                w.dispose()


if __name__ == "__main__":
    unittest.main()
