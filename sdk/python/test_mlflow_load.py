"""load_model("name@alias") for versions registered from MLflow model directories, against the real binary and
without MLflow (an import hook makes `import mlflow` fail, so nothing can fall back on it): the sklearn flavor
(cloudpickle; pickle with a transformer from the model's own code folder) and a python_function model with its
own loader_module. The object loaded in the notebook predicts what the deployment answers. Also: an archive
holding the model directory one level down registers as the directory itself, and an ambiguous one is refused."""

import importlib.abc
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import shutil
import unittest

import pandas as pd
import yaml

from test_sdk import REPO, Server, slipway
from slipway import _artifact

MAKE = os.path.join(REPO, "examples", "mlflow-sklearn", "make_mlflow_model.py")
FEATURES = ["age", "tenure_months", "monthly_charges", "plan", "support_calls"]


class _NoMLflow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "mlflow" or name.startswith("mlflow."):
            raise ImportError("MLflow is blocked in this test: load_model must not need it")
        return None


def _tar_gz(files):
    """A .tar.gz of (archive name, local path) pairs."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, path in files:
            tar.add(path, arcname=name)
    return buf.getvalue()


class MLflowLoadTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server()
        cls.sw = slipway.Client(cls.server.url, cls.server.token)
        cls.work = tempfile.mkdtemp(prefix="slipway-mlflow-")
        cls.sw.cache_dir = os.path.join(cls.work, "cache")
        cls.blocker = _NoMLflow()
        sys.meta_path.insert(0, cls.blocker)
        cls.rows = pd.read_csv(os.path.join(REPO, "examples", "data", "churn.csv"), nrows=20)[FEATURES]

    @classmethod
    def tearDownClass(cls):
        sys.meta_path.remove(cls.blocker)
        cls.server.stop()
        shutil.rmtree(cls.work, ignore_errors=True)

    def make(self, name, *args):
        out = os.path.join(self.work, name)
        subprocess.run(["/usr/bin/python3", MAKE, "--out", out, *args], check=True, capture_output=True)
        return out

    def served(self, model):
        d = self.sw.deploy(model, model=model + "@champion")
        self.assertEqual(d["state"], "ACTIVE")
        return self.sw.predict(model, self.rows)["predictions"].tolist()

    def test_sklearn_cloudpickle_from_an_archive_with_the_folder(self):
        folder = self.make("cloudpickle", "--serialization", "cloudpickle")
        archive = os.path.join(self.work, "cloudpickle.tar.gz")
        with open(archive, "wb") as f:  # as `tar czf model.tar.gz model/` makes it: everything under model/
            f.write(_tar_gz([("model/" + n, os.path.join(folder, n)) for n in sorted(os.listdir(folder))]))
        v = self.sw.push_model("mlf-cloudpickle", archive, alias="champion")
        self.assertEqual(v["state"], "READY", v.get("checks"))
        self.assertIn("MLmodel", {f["path"] for f in v["files"]})
        model = self.sw.load_model("mlf-cloudpickle@champion")
        self.assertEqual(type(model).__name__, "Pipeline")  # what mlflow.sklearn.load_model returns
        self.assertEqual(model.predict(self.rows).tolist(), self.served("mlf-cloudpickle"))

    def test_sklearn_pickle_with_its_code_folder(self):
        folder = self.make("pickle", "--serialization", "pickle", "--with-code")
        v = self.sw.push_model("mlf-pickle", folder, alias="champion")
        self.assertEqual(v["state"], "READY", v.get("checks"))
        model = self.sw.load_model("mlf-pickle@champion")
        self.assertEqual(type(model.steps[0][1]).__name__, "ClipCalls")  # from the model's code/ folder
        self.assertEqual(model.predict(self.rows).tolist(), self.served("mlf-pickle"))

    def test_python_function_loader_module(self):
        folder = self.make("pyfunc", "--kind", "pyfunc")
        v = self.sw.push_model("mlf-pyfunc", folder, alias="champion")
        self.assertEqual(v["state"], "READY", v.get("checks"))
        model = self.sw.load_model("mlf-pyfunc@champion")
        self.assertEqual(type(model).__name__, "ChurnProbability")  # what its loader_module's _load_pyfunc returns
        got, served = model.predict(self.rows).tolist(), self.served("mlf-pyfunc")
        self.assertEqual(len(got), len(served))
        for g, s in zip(got, served):
            self.assertAlmostEqual(g, s, places=9)

    def test_an_archive_with_two_models_is_refused(self):
        folder = self.make("two", "--serialization", "pickle")
        archive = os.path.join(self.work, "two.tar.gz")
        with open(archive, "wb") as f:
            f.write(_tar_gz([(p + "/" + n, os.path.join(folder, n)) for p in ("a", "b") for n in ("MLmodel", "model.pkl")]))
        with self.assertRaises(slipway.SlipwayError) as e:
            self.sw.push_model("mlf-two", archive)
        self.assertEqual(e.exception.status, 400)
        self.assertIn("several MLflow models (a/MLmodel, b/MLmodel)", str(e.exception))

    def test_mlmodel_without_pyyaml_reads_as_pyyaml_does(self):
        for kind in (("--serialization", "cloudpickle"), ("--kind", "pyfunc"), ("--with-code",)):
            folder = self.make("yaml-" + kind[-1].strip("-"), *kind)
            with open(os.path.join(folder, "MLmodel")) as f:
                text = f.read()
            want = yaml.safe_load(text)
            got = _artifact._read_block_mappings(text)
            self.assertEqual(got["flavors"], {k: {kk: vv for kk, vv in v.items() if not isinstance(vv, list)}
                                              for k, v in want["flavors"].items()})


if __name__ == "__main__":
    unittest.main()
