"""Tests of the Python SDK against the real binary (bin/slipway, built by `make test` first) with a real Python
replica: push the example model from its folder, deploy it, predict a pandas DataFrame, and compare with the
model run directly; errors come back as SlipwayError with the server's problem details."""

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import io
import unittest

import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import slipway  # noqa: E402

EXAMPLE = os.path.join(REPO, "examples", "sklearn-churn")


def reference_predictions(df):
    """The example model run directly, as in the notebook: its own score.py and model.pkl."""
    spec = importlib.util.spec_from_file_location("example_score", os.path.join(EXAMPLE, "score.py"))
    score = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(score)
    return score.predict(df, model=score.load_model())


class ServerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        binary = os.path.join(REPO, "bin", "slipway")
        if not os.path.exists(binary):
            raise RuntimeError("bin/slipway is missing: run `make build` (make test does)")
        cls.data = tempfile.mkdtemp(prefix="slipway-sdk-")
        cls.proc = subprocess.Popen([binary, "server", "--data-dir", cls.data, "--addr", "127.0.0.1:0"],
                                    stderr=subprocess.PIPE, text=True)
        for line in cls.proc.stderr:
            m = re.search(r"addr=(http://127\.0\.0\.1:\d+)", line)
            if m:
                cls.url = m.group(1)
                break
        else:
            raise RuntimeError("the server exited before listening")
        with open(os.path.join(cls.data, "admin.token")) as f:
            cls.token = f.read().strip()
        cls.sw = slipway.Client(cls.url, cls.token)

    @classmethod
    def tearDownClass(cls):
        cls.proc.terminate()
        cls.proc.wait(timeout=60)
        cls.proc.stderr.close()
        shutil.rmtree(cls.data, ignore_errors=True)

    def test_push_deploy_predict(self):
        v = self.sw.push_model("churn", EXAMPLE, metadata=os.path.join(EXAMPLE, "metadata.json"), alias="champion")
        self.assertEqual(v["state"], "READY", v.get("checks"))
        self.assertEqual(self.sw.get_version("churn@champion")["version"], v["version"])
        self.assertEqual(self.sw.get_version("churn", v["version"])["digest"], v["digest"])
        files = {f["path"] for f in v["files"]}
        self.assertIn("score.py", files)
        self.assertFalse(any("__pycache__" in f for f in files), files)

        d = self.sw.deploy("churn-api", model="churn@champion", replicas=1)
        self.assertEqual(d["state"], "ACTIVE")
        self.assertEqual(d["version"], v["version"])

        df = pd.read_csv(os.path.join(REPO, "examples", "data", "churn.csv"), nrows=25)
        features = df[["age", "tenure_months", "monthly_charges", "plan", "support_calls"]]
        got = self.sw.predict("churn-api", features, request_id="sdk-test-1")  # one record per row, as MLflow
        want = reference_predictions(features)
        self.assertEqual([r["prediction"] for r in got], [int(x) for x in want["prediction"]])
        for g, w in zip(got, want["probability"]):
            self.assertAlmostEqual(g["probability"], float(w), places=6)
        # Row dicts (dataframe_records) give the same answer.
        records = features.head(3).to_dict(orient="records")
        self.assertEqual(self.sw.predict("churn-api", records), got[:3])
        # The OCI endpoint hands the body to predict() as it is.
        raw = self.sw.predict_raw("churn-api", {"data": features.head(3).values.tolist(), "columns": list(features.columns)})
        self.assertEqual(raw["prediction"], [r["prediction"] for r in got[:3]])
        # Ground truth for the captured request, joined by the id the SDK sent.
        fb = self.sw.feedback("churn-api", [{"request_id": "sdk-test-1", "row": 0, "label": int(want["prediction"][0])}])
        self.assertEqual((fb["received"], fb["inserted"]), (1, 1), fb)

        self.sw.deactivate("churn-api")
        self.assertEqual(self.sw.get_deployment("churn-api")["state"], "INACTIVE")
        with self.assertRaises(slipway.SlipwayError) as e:
            self.sw.predict("churn-api", records)
        self.assertEqual(e.exception.status, 503)

    def test_push_without_waiting(self):
        v = self.sw.push_model("churn-later", EXAMPLE, metadata=os.path.join(EXAMPLE, "metadata.json"), wait=False)
        self.assertEqual(v["state"], "REGISTERING")
        deadline = time.monotonic() + 120
        while self.sw.get_version("churn-later", v["version"])["state"] == "REGISTERING":
            self.assertLess(time.monotonic(), deadline, "the checks never finished")
            time.sleep(0.2)
        self.assertEqual(self.sw.get_version("churn-later", v["version"])["state"], "READY")
        with self.assertRaises(ValueError):
            self.sw.push_model("churn-later", EXAMPLE, alias="champion", wait=False)

    def test_errors_carry_the_problem(self):
        with self.assertRaises(slipway.SlipwayError) as e:
            self.sw.get_deployment("nope")
        self.assertEqual((e.exception.status, e.exception.code), (404, "not_found"))
        self.assertIn("nope", e.exception.detail)
        with self.assertRaises(slipway.SlipwayError) as e:
            slipway.Client(self.url, "wrong-token").list_models()
        self.assertEqual(e.exception.status, 401)
        with self.assertRaises(slipway.SlipwayError) as e:
            self.sw.deploy("bad", model="churn", version=1, replicas=500, wait=False)
        self.assertEqual(e.exception.status, 400)
        self.assertIn("replicas must be 1-64", e.exception.detail)

    def test_project(self):
        self.sw._request("POST", "/api/v1/projects", json.dumps({"name": "sdk-proj"}).encode(), "application/json")
        self.sw._request("POST", "/api/v1/models", json.dumps({"name": "in-sdk-proj"}).encode(), "application/json",
                         headers={"Slipway-Project": "sdk-proj"})
        names = lambda c: [m["name"] for m in c.list_models()]
        self.assertEqual(names(slipway.Client(self.url, self.token, project="sdk-proj")), ["in-sdk-proj"])
        self.assertNotIn("in-sdk-proj", names(self.sw))

    def test_unreachable_server(self):
        with self.assertRaises(slipway.SlipwayError) as e:
            slipway.Client("http://127.0.0.1:1", "x").whoami()
        self.assertEqual(e.exception.status, 0)
        self.assertIn("cannot reach the Slipway server", e.exception.detail)


class UnitTest(unittest.TestCase):
    def test_payloads(self):
        df = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
        self.assertEqual(slipway._mlflow_payload(df), {"dataframe_split": {"columns": ["a", "b"], "data": [[1, "x"], [2, "y"]]}})
        self.assertEqual(slipway._mlflow_payload([{"a": 1}]), {"dataframe_records": [{"a": 1}]})
        self.assertEqual(slipway._mlflow_payload([[1, 2]]), {"inputs": [[1, 2]]})
        self.assertEqual(slipway._mlflow_payload({"instances": [1]}), {"instances": [1]})

    def test_bodies_are_json_the_server_reads(self):
        body = {"data": [[1.5, float("nan")], (float("inf"), -float("inf"), 2)], "columns": ["a", "b"]}
        self.assertEqual(json.loads(slipway._dumps(body)), {"data": [[1.5, None], [None, None, 2]], "columns": ["a", "b"]})
        self.assertEqual(slipway._dumps({"a": 1.0}), b'{"a": 1.0}')

    def test_refs(self):
        self.assertEqual(slipway._ref("churn@champion", None, None), ("churn", None, "champion"))
        self.assertEqual(slipway._ref("churn:3", None, None), ("churn", "3", None))
        self.assertEqual(slipway._ref("churn", 2, None), ("churn", 2, None))

    def test_folder_archive_skips_caches_and_links(self):
        root = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, root)
        os.makedirs(os.path.join(root, "__pycache__"))
        os.makedirs(os.path.join(root, "pkg"))
        for p in ("score.py", "pkg/util.py", "__pycache__/x.pyc", "old.pyc"):
            with open(os.path.join(root, p), "w") as f:
                f.write("x")
        os.symlink("/etc/passwd", os.path.join(root, "escape"))
        with tarfile.open(fileobj=io.BytesIO(slipway._tar_gz(root))) as tar:
            self.assertEqual(sorted(tar.getnames()), ["pkg/util.py", "score.py"])

    def test_token_discovery(self):
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d)
        with open(os.path.join(d, "admin.token"), "w") as f:
            f.write("slw_from_file\n")
        env = {k: v for k, v in os.environ.items() if k != "SLIPWAY_TOKEN"}
        env["SLIPWAY_DATA_DIR"] = d
        out = subprocess.run([sys.executable, "-c", "import slipway; print(slipway.Client().token)"], cwd=HERE,
                             env=env, capture_output=True, text=True, check=True).stdout.strip()
        self.assertEqual(out, "slw_from_file")
        env["SLIPWAY_TOKEN"] = "slw_env"
        out = subprocess.run([sys.executable, "-c", "import slipway; print(slipway.Client().token)"], cwd=HERE,
                             env=env, capture_output=True, text=True, check=True).stdout.strip()
        self.assertEqual(out, "slw_env")


    def test_url_discovery(self):
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d)
        with open(os.path.join(d, "server.url"), "w") as f:
            f.write("http://127.0.0.1:5555\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLIPWAY_URL")}
        code = "import slipway; print(slipway.Client().url)"

        def url_with(**extra):
            return subprocess.run([sys.executable, "-c", code], cwd=HERE, env={**env, **extra},
                                  capture_output=True, text=True, check=True).stdout.strip()

        self.assertEqual(url_with(SLIPWAY_DATA_DIR=d), "http://127.0.0.1:5555")
        self.assertEqual(url_with(SLIPWAY_DATA_DIR=d, SLIPWAY_URL="http://h:1"), "http://h:1")
        self.assertEqual(url_with(SLIPWAY_URL="http://h:1", SLIPWAY_URL_FILE=os.path.join(d, "server.url")), "http://127.0.0.1:5555")
        self.assertEqual(url_with(SLIPWAY_URL="http://h:1", SLIPWAY_URL_FILE=os.path.join(d, "gone")), "http://h:1")


if __name__ == "__main__":
    unittest.main()
