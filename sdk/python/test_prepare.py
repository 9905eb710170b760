"""prepare() without a server: what it infers from samples of each kind, and what the generated score.py
accepts (run in-process here; verify() and the server run it in their own processes)."""

import importlib.util
import json
import os
import shutil
import sys
import tempfile
import unittest
import uuid

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import slipway  # noqa: E402
from slipway import _tables  # noqa: E402


def load_score(path):
    spec = importlib.util.spec_from_file_location("score_" + uuid.uuid4().hex, os.path.join(path, "score.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class PrepareTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="slipway-prepare-")
        self.addCleanup(shutil.rmtree, self.dir)

    def test_an_array_model_gets_named_columns_and_takes_every_request_shape(self):
        rng = np.random.default_rng(3)
        X = rng.normal(size=(60, 3))
        y = (X[:, 0] + X[:, 2] > 0).astype(int)
        model = LogisticRegression().fit(X, y)
        art = slipway.prepare(model, X, y, path=os.path.join(self.dir, "a"), name="arr", sample_rows=2)
        meta = art.metadata
        self.assertEqual([c["name"] for c in meta["input_schema"]["columns"]], ["x0", "x1", "x2"])
        self.assertEqual(meta["sample_input"]["columns"], ["x0", "x1", "x2"])
        self.assertEqual(len(meta["sample_input"]["data"]), 2)
        self.assertNotIn("pandas", meta["environment"]["packages"])  # fitted on an array: score.py needs no pandas
        score = load_score(art.path)
        self.assertFalse(score.FRAME)
        want = model.predict_proba(X[:4])[:, 1].tolist()
        m = score.load_model()
        rows = X[:4].tolist()
        shapes = [
            {"data": rows, "columns": ["x0", "x1", "x2"]},
            {"data": rows},
            {"instances": rows},
            rows,
            [dict(zip(["x0", "x1", "x2"], r)) for r in rows],
            {"x0": X[:4, 0].tolist(), "x1": X[:4, 1].tolist(), "x2": X[:4, 2].tolist()},
            X[:4],
            pd.DataFrame(X[:4], columns=["x0", "x1", "x2"]),
            json.dumps({"data": rows}),
        ]
        for body in shapes:
            out = score.predict(body, model=m)
            np.testing.assert_allclose(out["probability_1"], want, err_msg=repr(type(body)))
        one = score.predict(dict(zip(["x0", "x1", "x2"], rows[0])), model=m)  # a single record
        self.assertEqual(len(one["prediction"]), 1)
        with self.assertRaises(ValueError) as e:
            score.predict({"data": [[1.0, 2.0]]}, model=m)
        self.assertIn("each row must have 3 values", str(e.exception))
        with self.assertRaises(ValueError) as e:
            score.predict([{"x0": 1.0, "x1": 2.0}], model=m)
        self.assertIn("missing input features: x2", str(e.exception))

    def test_frame_types_categories_and_string_labels(self):
        X = pd.DataFrame({"n": np.arange(30, dtype=np.int64), "f": np.linspace(0, 1, 30, dtype=np.float32),
                          "flag": [i % 2 == 0 for i in range(30)],
                          "c": pd.Categorical(["a", "b", "c"] * 10), "s": ["x", None, "z"] * 10})
        y = np.array(["yes", "no"] * 15)
        model = RandomForestClassifier(n_estimators=5, random_state=0).fit(
            pd.get_dummies(X, columns=["c", "s"]).astype(float), y)

        wrapped = _FrameModel(model)
        art = slipway.prepare(wrapped, X, y, path=os.path.join(self.dir, "f"), name="frame")
        dtypes = {c["name"]: c["dtype"] for c in art.metadata["input_schema"]["columns"]}
        self.assertEqual(dtypes, {"n": "int64", "f": "float32", "flag": "bool", "c": "string", "s": "string"})
        outs = {c["name"]: c["dtype"] for c in art.metadata["output_schema"]["columns"]}
        self.assertEqual(outs, {"prediction": "string", "probability_no": "float64", "probability_yes": "float64"})
        self.assertIsNone(art.metadata["sample_input"]["data"][1][4])  # a missing string is null, not "None"
        score = load_score(art.path)
        self.assertEqual(score.CATEGORIES, {"c": ["a", "b", "c"]})
        got = score.predict(art.metadata["sample_input"])
        self.assertEqual(got["prediction"], wrapped.predict(X.head(3)).tolist())
        with open(os.path.join(art.path, "baseline.csv")) as f:
            header = f.readline().strip().split(",")
        self.assertEqual(header, ["n", "f", "flag", "c", "s", "prediction", "probability_no", "probability_yes"])
        self.assertIn("<b>prepared model frame</b>", art._repr_html_())

    def test_regression_and_folder_rules(self):
        X = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0]})
        art = slipway.prepare(LinearRegression().fit(X, [2.0, 4.0, 6.0, 8.0]), X, [2.0, 4.0, 6.0, 8.0],
                              path=os.path.join(self.dir, "r"), name="reg", tags={"team": "x"}, metrics={"r2": 1})
        self.assertEqual(art.metadata["taxonomy"]["use_case"], "regression")
        self.assertEqual(art.metadata["metrics"], {"r2": 1.0})
        self.assertEqual([c["name"] for c in art.metadata["output_schema"]["columns"]], ["prediction"])
        with open(os.path.join(art.path, "runtime.yaml")) as f:
            self.assertIn("MODEL_ARTIFACT_VERSION: '3.0'", f.read())
        with open(os.path.join(art.path, "requirements.txt")) as f:
            self.assertIn("scikit-learn==", f.read())
        # prepare() again into its own folder replaces it; into someone else's folder it refuses.
        slipway.prepare(LinearRegression().fit(X, [1.0, 1.0, 1.0, 1.0]), X, path=art.path, name="reg")
        other = os.path.join(self.dir, "notes")
        os.makedirs(other)
        open(os.path.join(other, "thesis.tex"), "w").close()
        with self.assertRaises(FileExistsError):
            slipway.prepare(LinearRegression().fit(X, [1.0] * 4), X, path=other, name="reg")
        self.assertTrue(os.path.exists(os.path.join(other, "thesis.tex")))
        with self.assertRaises(TypeError):
            slipway.prepare(object(), X, path=os.path.join(self.dir, "o"))

    def test_the_notebooks_own_modules_travel_with_the_model(self):
        src = os.path.join(self.dir, "src")
        os.makedirs(src)
        with open(os.path.join(src, "mytransforms.py"), "w") as f:
            f.write("import numpy as np\n\n\nclass Doubler:\n"
                    "    def fit(self, X, y):\n        return self\n\n"
                    "    def predict(self, X):\n        return np.asarray(X, dtype=float)[:, 0] * 2\n")
        sys.path.insert(0, src)
        self.addCleanup(sys.path.remove, src)
        import mytransforms
        X = np.array([[1.0], [2.0]])
        art = slipway.prepare(mytransforms.Doubler().fit(X, None), X, path=os.path.join(self.dir, "m"), name="m")
        self.assertIn("mytransforms.py", art.files)
        self.assertNotIn("mytransforms", art.metadata["environment"]["packages"])
        self.assertEqual(art.verify()["prediction"].tolist(), [2.0, 4.0])  # a new process, without src on its path

    def test_verify_checks_the_answer_against_the_schema(self):
        X = pd.DataFrame({"a": [1.0, 2.0]})
        art = slipway.prepare(LinearRegression().fit(X, [1.0, 2.0]), X, path=os.path.join(self.dir, "v"), name="v")
        with open(os.path.join(art.path, "score.py"), "a") as f:
            f.write("\n\n_predict = predict\n\n\ndef predict(data, model=None):\n"
                    "    return {'prediction': ['text' for _ in _predict(data, model)['prediction']]}\n")
        with self.assertRaises(slipway.SlipwayError) as e:
            art.verify()
        self.assertIn("output column 'prediction' holds 'text', not a float64", e.exception.detail)

    def test_tables_and_v2_frames(self):
        df = pd.DataFrame({"a": [1, 2], "b": [0.5, 1.5], "c": ["x", None], "d": [True, False]})
        ins = _tables.v2_inputs(df)
        self.assertEqual([(i["name"], i["datatype"], i["shape"]) for i in ins],
                         [("a", "INT64", [2]), ("b", "FP64", [2]), ("c", "BYTES", [2]), ("d", "BOOL", [2])])
        self.assertEqual(ins[2]["data"], ["x", None])
        out = _tables.v2_outputs_frame([{"name": "p", "shape": [2], "datatype": "INT64", "data": [1, 0]}], index=[7, 8])
        self.assertEqual(out.loc[8, "p"], 0)
        self.assertEqual(list(_tables.frame_from_records([0.1, 0.2]).columns), ["predictions"])
        t = _tables.Table([{"name": "<b>", "state": "ACTIVE"}], ("name", "state"))
        self.assertIn("&lt;b&gt;", t._repr_html_())  # names are escaped
        self.assertEqual(t.to_frame().shape, (1, 2))


class _FrameModel:
    """A model over a raw frame (its own one-hot encoding), with predict and predict_proba."""

    def __init__(self, forest):
        self.forest = forest
        self.classes_ = forest.classes_

    def _x(self, X):
        X = pd.get_dummies(X, columns=["c", "s"]).astype(float)
        return X.reindex(columns=self.forest.feature_names_in_, fill_value=0.0)

    def predict(self, X):
        return self.forest.predict(self._x(X))

    def predict_proba(self, X):
        return self.forest.predict_proba(self._x(X))


if __name__ == "__main__":
    unittest.main()
