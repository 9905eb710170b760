"""The notebook flow against the real binary, with the SDK as a user installs it: a virtual environment
(python3 -m venv --system-site-packages, for the system's scikit-learn and pandas), `pip install ./sdk/python`
offline (PIP_NO_INDEX: no index is reachable, none is needed), then notebook_flow.py: train, prepare, verify,
push with a baseline, deploy, predict a DataFrame, load_model("name@champion"), and the same predictions in
the three places. Then what must be refused: an unknown alias, a download that does not match the catalog's
digests, a model class defined in the notebook itself, a score.py that fails, a version whose checks fail."""

import http.client
import http.server
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import unittest
import urllib.parse

import numpy as np
import pandas as pd
from sklearn.linear_model import LinearRegression

from test_sdk import HERE, REPO, Server, slipway

DATA = os.path.join(REPO, "examples", "data", "churn.csv")


class NotebookFlowTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server()
        cls.sw = slipway.Client(cls.server.url, cls.server.token)
        cls.work = tempfile.mkdtemp(prefix="slipway-notebook-")

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        shutil.rmtree(cls.work, ignore_errors=True)

    def test_pip_install_then_the_notebook_flow(self):
        venv = os.path.join(self.work, "venv")
        # --without-pip and the system's pip aimed at the environment (pip --python, pip >= 22.3): the same pip
        # install as `venv/bin/pip install`, without copying pip into every test's environment.
        subprocess.run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", "--without-pip", venv], check=True)
        py = os.path.join(venv, "bin", "python")
        env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
               "SLIPWAY_URL": self.server.url, "SLIPWAY_TOKEN": self.server.token, "SLIPWAY_CACHE_DIR": self.work}
        env.pop("PYTHONPATH", None)
        pip = subprocess.run(["/usr/bin/python3", "-m", "pip", "--python", py, "install", "--quiet", HERE], env=env,
                             cwd=self.work, capture_output=True, text=True)
        self.assertEqual(pip.returncode, 0, pip.stderr)

        # The notebook lives elsewhere: run from sdk/python, the script would import the source tree instead.
        script = shutil.copy(os.path.join(HERE, "notebook_flow.py"), self.work)
        run = subprocess.run([py, script, DATA, self.work], env=env, cwd=self.work,
                             capture_output=True, text=True, timeout=600)
        self.assertEqual(run.returncode, 0, run.stderr[-4000:])
        out = json.loads(run.stdout)

        self.assertTrue(out["sdk_file"].startswith(venv), out["sdk_file"])  # the installed SDK, not the source tree
        self.assertEqual(out["files"], ["baseline.csv", "metadata.json", "model.joblib", "requirements.txt",
                                        "runtime.yaml", "score.py"])
        meta = out["metadata"]
        self.assertEqual([(c["name"], c["dtype"]) for c in meta["input_schema"]["columns"]],
                         [("age", "float64"), ("tenure_months", "float64"), ("monthly_charges", "float64"),
                          ("plan", "string"), ("support_calls", "float64")])
        self.assertEqual([(c["name"], c["dtype"]) for c in meta["output_schema"]["columns"]],
                         [("prediction", "int64"), ("probability_0", "float64"), ("probability_1", "float64")])
        self.assertEqual(sorted(meta["environment"]["packages"]), ["joblib", "numpy", "pandas", "scikit-learn"])
        self.assertEqual(meta["taxonomy"]["algorithm"], "LogisticRegression")

        v = out["version"]
        self.assertEqual((v["state"], v["aliases"]), ("READY", ["champion"]), v["checks"])
        self.assertTrue(all(c["passed"] for c in v["checks"]), v["checks"])
        env_check = next(c for c in v["checks"] if c["id"] == "python.environment")
        self.assertIn("4 packages", env_check["message"])
        # The baseline is the sample with the model's outputs: drift of inputs and of predictions.
        self.assertEqual(out["baseline_rows"], 300)
        self.assertEqual(out["baseline_features"], sorted(["age", "tenure_months", "monthly_charges", "plan",
                                                           "support_calls", "prediction", "probability_0",
                                                           "probability_1"]))
        self.assertEqual(out["deployment"]["state"], "ACTIVE")
        self.assertEqual(out["served_columns"], ["prediction", "probability_0", "probability_1"])
        self.assertTrue(out["served_index_matches"])
        self.assertEqual(out["loaded_type"], "Pipeline")
        # The same predictions in all three places as in the notebook's own model.
        self.assertEqual(out["same_labels"], {"verify": True, "served": True, "loaded": True})
        for where, diff in out["max_diff"].items():
            self.assertLess(diff, 1e-9, where)
        self.assertIn("<table>", out["version_html"])
        self.assertIn("<table>", out["deployment_html"])

    def test_unknown_alias_is_the_servers_problem(self):
        self.sw.push_model("known", os.path.join(REPO, "examples", "sklearn-churn"),
                           metadata=os.path.join(REPO, "examples", "sklearn-churn", "metadata.json"))
        with self.assertRaises(slipway.SlipwayError) as e:
            self.sw.load_model("known@nope", path=os.path.join(self.work, "never"))
        self.assertEqual((e.exception.status, e.exception.code), (404, "not_found"))
        self.assertIn("nope", e.exception.detail)
        self.assertEqual(e.exception.problem.get("status"), 404)
        self.assertFalse(os.path.exists(os.path.join(self.work, "never")))

    def test_a_download_that_does_not_match_the_digests_is_refused(self):
        v = self.sw.push_model("tampered", os.path.join(REPO, "examples", "sklearn-churn"),
                               metadata=os.path.join(REPO, "examples", "sklearn-churn", "metadata.json"),
                               alias="champion")
        self.assertEqual(v["state"], "READY")
        proxy = TamperingProxy(self.server.url)
        self.addCleanup(proxy.stop)
        bad = slipway.Client(proxy.url, self.server.token, cache_dir=os.path.join(self.work, "cache"))
        with self.assertRaises(slipway.IntegrityError) as e:
            bad.load_model("tampered@champion")
        self.assertIn("sha256 mismatch for score.py", e.exception.detail)
        self.assertTrue(proxy.tampered)
        cache = os.path.join(self.work, "cache", "tampered")
        self.assertEqual([n for n in os.listdir(cache) if not n.startswith(".")] if os.path.isdir(cache) else [], [])
        self.assertEqual([n for n in os.listdir(cache)] if os.path.isdir(cache) else [], [], "a temp folder was left")
        # Through the server directly the same version loads (and is cached under its digest).
        model = slipway.Client(self.server.url, self.server.token,
                               cache_dir=os.path.join(self.work, "cache")).load_model("tampered@champion")
        self.assertEqual(type(model).__name__, "Pipeline")

    def test_prepare_refuses_what_the_server_could_not_load(self):
        X = np.array([[1.0], [2.0], [3.0]])
        model = NotebookModel().fit(X, [1.0, 2.0, 3.0])
        with self.assertRaises(ValueError) as e:
            slipway.prepare(model, X, path=os.path.join(self.work, "main"), name="main")
        self.assertIn("defined in the notebook itself (__main__)", str(e.exception))

    def test_verify_shows_the_models_error(self):
        X = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [0.0, 1.0, 0.0]})
        art = slipway.prepare(LinearRegression().fit(X, [1.0, 2.0, 3.0]), X, path=os.path.join(self.work, "lr"),
                              name="lr")
        self.assertEqual(art.verify(X)["prediction"].round(6).tolist(), [1.0, 2.0, 3.0])
        with self.assertRaises(slipway.SlipwayError) as e:
            art.verify({"data": [[1.0, "x"]], "columns": ["a", "b"]})
        self.assertIn("feature 'b' must be float64", e.exception.detail)

    def test_push_raises_when_the_checks_fail(self):
        X = pd.DataFrame({"a": [1.0, 2.0, 3.0]})
        art = slipway.prepare(LinearRegression().fit(X, [2.0, 4.0, 6.0]), X, path=os.path.join(self.work, "envs"),
                              name="envs")
        meta_path = os.path.join(art.path, "metadata.json")
        with open(meta_path) as f:
            meta = json.load(f)
        meta["environment"]["packages"]["scikit-learn"] = "0.0.1"
        with open(meta_path, "w") as f:
            json.dump(meta, f)
        with self.assertRaises(slipway.SlipwayError) as e:
            art.push(client=self.sw)
        self.assertEqual(e.exception.code, "checks_failed")
        self.assertIn("scikit-learn 0.0.1 declared", e.exception.detail)


class NotebookModel:
    """A model class defined where the notebook runs: pickled as __main__... when run as a script. Here it is
    given __module__ "__main__" to stand for one."""

    def fit(self, X, y):
        self.mean = float(np.mean(y))
        return self

    def predict(self, X):
        return np.full(len(X), self.mean)


NotebookModel.__module__ = "__main__"
sys.modules["__main__"].NotebookModel = NotebookModel  # so that pickle finds it, as in a notebook


class TamperingProxy:
    """Forwards every request to the server, but changes a byte of score.py in artifact downloads: what a
    corrupted cache or a hostile middlebox would hand the client."""

    def __init__(self, upstream):
        target = urllib.parse.urlsplit(upstream)
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
                conn.request("GET", self.path, headers={k: v for k, v in self.headers.items() if k.lower() != "host"})
                resp = conn.getresponse()
                body = resp.read()
                if self.path.endswith("/artifact") and resp.status == 200:
                    body = tamper(body)
                    proxy.tampered = True
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                conn.close()

        self.tampered = False
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def tamper(targz):
    src = tarfile.open(fileobj=io.BytesIO(targz), mode="r:gz")
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as dst:
        for m in src:
            data = src.extractfile(m).read() if m.isfile() else None
            if m.name.endswith("score.py"):
                data = data.replace(b"def predict", b"def predixt", 1)  # same size, other content
            dst.addfile(m, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


if __name__ == "__main__":
    unittest.main()
