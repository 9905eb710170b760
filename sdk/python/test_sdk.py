"""Tests of the Python SDK against the real binary (bin/slipway, built by `make test` first) with a real Python
replica: push the example model from its folder, deploy it, predict a pandas DataFrame, and compare with the
model run directly; errors come back as SlipwayError with the server's problem details."""

import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
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


class Server:
    """bin/slipway server on a free port with a temporary data folder (stopped by stop())."""

    def __init__(self):
        binary = os.path.join(REPO, "bin", "slipway")
        if not os.path.exists(binary):
            raise RuntimeError("bin/slipway is missing: run `make build` (make test does)")
        self.data = tempfile.mkdtemp(prefix="slipway-sdk-")
        self.proc = subprocess.Popen([binary, "server", "--data-dir", self.data, "--addr", "127.0.0.1:0"],
                                     stderr=subprocess.PIPE, text=True)
        for line in self.proc.stderr:
            m = re.search(r"addr=(http://127\.0\.0\.1:\d+)", line)
            if m:
                self.url = m.group(1)
                break
        else:
            self.stop()
            raise RuntimeError("the server exited before listening")
        # The rest of its log is read (and dropped) so that the server never blocks on a full pipe.
        self._drain = threading.Thread(target=lambda: [None for _ in self.proc.stderr], daemon=True)
        self._drain.start()
        with open(os.path.join(self.data, "admin.token")) as f:
            self.token = f.read().strip()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=60)
        shutil.rmtree(self.data, ignore_errors=True)


class ServerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server()
        cls.url, cls.token, cls.data = cls.server.url, cls.server.token, cls.server.data
        cls.sw = slipway.Client(cls.url, cls.token)

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

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
        features.index = features.index + 100  # the answer keeps the caller's index
        got = self.sw.predict("churn-api", features, request_id="sdk-test-1")  # DataFrame in, DataFrame out
        want = reference_predictions(features)
        self.assertEqual(list(got.columns), ["prediction", "probability"])
        self.assertEqual(list(got.index), list(features.index))
        self.assertEqual(got["prediction"].tolist(), [int(x) for x in want["prediction"]])
        for g, w in zip(got["probability"], want["probability"]):
            self.assertAlmostEqual(g, float(w), places=6)
        # Row dicts (dataframe_records) give the same answer, as MLflow's records.
        records = features.head(3).to_dict(orient="records")
        self.assertEqual(self.sw.predict("churn-api", records), got.head(3).to_dict(orient="records"))
        # V2 inference of the same DataFrame: the same numbers, one column per output.
        v2 = self.sw.infer("churn-api", features)
        self.assertEqual(list(v2.index), list(features.index))
        self.assertEqual(v2["prediction"].tolist(), got["prediction"].tolist())
        self.assertEqual(v2["probability"].tolist(), got["probability"].tolist())
        # The OCI endpoint hands the body to predict() as it is.
        raw = self.sw.predict_raw("churn-api", {"data": features.head(3).values.tolist(), "columns": list(features.columns)})
        self.assertEqual(raw["prediction"], got["prediction"].head(3).tolist())
        # Ground truth for the captured request, joined by the id the SDK sent.
        fb = self.sw.feedback("churn-api", [{"request_id": "sdk-test-1", "row": 0, "label": int(want["prediction"][0])}])
        self.assertEqual((fb["received"], fb["inserted"]), (1, 1), fb)

        self.sw.deactivate("churn-api")
        self.assertEqual(self.sw.get_deployment("churn-api")["state"], "INACTIVE")
        with self.assertRaises(slipway.SlipwayError) as e:
            self.sw.predict("churn-api", records)
        self.assertEqual(e.exception.status, 503)

    def test_the_rest_of_the_api(self):
        """Baselines, captures, feedback, alerts, batch predictions, jobs, pipelines and schedules, with
        DataFrames where a notebook has them, and the tables notebooks show."""
        df = pd.read_csv(os.path.join(REPO, "examples", "data", "churn.csv"), nrows=40)
        features = df[["age", "tenure_months", "monthly_charges", "plan", "support_calls"]]
        v = self.sw.push_model("cov", EXAMPLE, metadata=os.path.join(EXAMPLE, "metadata.json"), alias="champion",
                               baseline=features)
        self.assertEqual(v["aliases"], ["champion"])
        self.assertEqual(self.sw.get_baseline("cov@champion")["profile"]["rows"], 40)
        b = self.sw.put_baseline("cov", df, version=v["version"])  # a wider frame: extra columns are ignored
        self.assertEqual(b["profile"]["rows"], 40)
        self.assertIn("churned", b["ignored_columns"])
        versions = self.sw.list_versions("cov")
        self.assertEqual([x["version"] for x in versions], [v["version"]])
        self.assertIn("<td>READY</td>", versions._repr_html_())
        self.assertIn("model.sample_prediction", v._repr_html_())

        d = self.sw.deploy("cov-api", model="cov@champion")
        self.assertIn("cov-api", self.sw.list_deployments()._repr_html_())
        self.assertIn("ACTIVE", d._repr_html_())
        got = self.sw.predict("cov-api", features.head(5), request_id="cov-1")
        fb = self.sw.feedback("cov-api", pd.DataFrame({"request_id": ["cov-1"] * 2, "row": [0, 1], "label": [1, 0]}))
        self.assertEqual(fb["received"], 2)
        deadline = time.monotonic() + 120
        while True:  # captures are written off the request path, in batches
            cap = self.sw.captures("cov-api", since="1h")
            if len(cap) == 5:
                break
            self.assertLess(time.monotonic(), deadline, f"captures never arrived: {len(cap)} rows")
            time.sleep(0.5)
        self.assertEqual(cap["request_id"].tolist(), ["cov-1"] * 5)
        self.assertEqual(cap["plan"].tolist(), features.head(5)["plan"].tolist())
        self.assertEqual(cap["output.prediction"].tolist(), got["prediction"].tolist())
        self.assertEqual(cap["label"].head(2).tolist(), ["1", "0"])  # labels are kept as the text received

        rule = self.sw.create_alert("cov-api", "no-traffic", "requests", "below", 1, window="5m")
        self.assertEqual([r["name"] for r in self.sw.alerts("cov-api")], ["no-traffic"])
        self.assertEqual(len(self.sw.evaluate_alerts("cov-api")), 1)
        self.assertIsInstance(self.sw.alert_history("cov-api"), list)
        self.sw.delete_alert("cov-api", rule["id"])
        self.assertEqual(len(self.sw.alerts("cov-api")), 0)
        with self.assertRaises(slipway.SlipwayError) as e:
            self.sw.create_alert("cov-api", "bad", "nope", "above", 1)
        self.assertIn("metric \"nope\" is not one of", e.exception.detail)

        run = self.sw.batch_predict("cov@champion", features, output={"format": "csv"}, wait=True)
        self.assertEqual((run["state"], run["rows_done"]), ("SUCCEEDED", 40), run.get("reason"))
        self.assertIn("batch prediction", run._repr_html_())
        out = self.sw.batch_output(run["id"])
        self.assertEqual(out["prediction"].head(5).tolist(), got["prediction"].tolist())
        self.assertIn(run["id"], [r["id"] for r in self.sw.list_batches()])

        sched = self.sw.create_schedule("nightly-cov", "@daily", {"kind": "batch", "name": "cov"},
                                        batch={"model": "cov", "alias": "champion", "input": {"file": run["spec"]["input"]["file"]},
                                               "output": {"format": "csv"}})
        self.assertEqual(sched["name"], "nightly-cov")
        self.assertEqual([x["name"] for x in self.sw.list_schedules()], ["nightly-cov"])
        self.sw.delete_schedule("nightly-cov")

        work = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, work)
        with open(os.path.join(work, "hello.py"), "w") as f:
            f.write("import sys\nprint('hello', *sys.argv[1:])\n")
        self.sw.create_job("hello", os.path.join(work, "hello.py"), "hello.py")
        jr = self.sw.run_job("hello", args=["notebook"], wait=True)
        self.assertEqual(jr["state"], "SUCCEEDED", jr.get("reason"))
        self.assertIn("hello notebook", self.sw.job_logs(jr["id"]))
        self.assertIn(jr["id"], self.sw.list_job_runs(job="hello")._repr_html_())
        self.sw.create_pipeline("name: greet\nsteps:\n  - name: say\n    job: hello\n")
        pr = self.sw.run_pipeline("greet", wait=True)
        self.assertEqual(pr["state"], "SUCCEEDED", pr.get("reason"))
        self.assertIn("<td>say</td>", pr._repr_html_())
        self.assertEqual([r["id"] for r in self.sw.list_pipeline_runs("greet")], [pr["id"]])

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

    def test_lists_read_every_page(self):
        """The server answers at most 1000 items a request: lists follow offset until the total."""
        sw, data, offsets = slipway.Client("http://127.0.0.1:1", "t"), list(range(2500)), []

        def page(method, path, payload=None, query=None, wrap=None):
            off = query.get("offset") or 0
            offsets.append(off)
            return {"items": [{"i": i} for i in data[off:off + query["limit"]]], "total": len(data)}

        sw._json = page
        self.assertEqual([r["i"] for r in sw.list_models()], data)
        self.assertEqual(offsets, [0, 1000, 2000])
        offsets.clear()
        self.assertEqual(len(sw.alert_history("d", limit=5)), 5)  # a limit given is one page
        self.assertEqual(offsets, [0])

    def test_a_cut_download_is_refused(self):
        from slipway import _artifact
        whole = slipway._tar_gz(os.path.join(REPO, "examples", "sklearn-churn"))
        with tarfile.open(fileobj=io.BytesIO(whole)) as t:
            manifest = {m.name: {"size": m.size, "sha256": hashlib.sha256(t.extractfile(m).read()).hexdigest()}
                        for m in t}
        root = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, root)
        _artifact._extract_verified(whole, root, manifest, "churn version 1")  # the whole download is accepted
        self.assertEqual(sorted(os.listdir(root)), sorted(manifest))
        root = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, root)
        with self.assertRaises(slipway.IntegrityError) as e:
            _artifact._extract_verified(whole[: len(whole) // 2], root, manifest, "churn version 1")
        self.assertIn("not a complete tar.gz", e.exception.detail)

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
