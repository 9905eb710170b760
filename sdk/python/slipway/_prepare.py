"""slipway.prepare(): a model artifact from a fitted model object, as OCI Data Science's ADS prepare() writes
one: the model (joblib), a generated score.py, runtime.yaml, requirements.txt, metadata.json (schemas inferred
from the sample and the model's output, a sample input, the environment the model's modules come from) and
baseline.csv (the sample, with the model's outputs, as the drift baseline)."""

import csv
import datetime
import getpass
import io
import json
import math
import os
import pickle
import platform
import shutil
import subprocess
import sys
import sysconfig

from . import _tables
from ._client import Client, SlipwayError, _dumps, _finite

MODEL_FILE = "model.joblib"
BASELINE_FILE = "baseline.csv"
_WRITTEN = ("score.py", "runtime.yaml", "requirements.txt", "metadata.json", MODEL_FILE, BASELINE_FILE)

# numpy dtype kind + size → the catalog's dtype (docs/catalog.md) and the Open Inference Protocol datatype
_CATALOG = {("f", 8): "float64", ("f", 4): "float32", ("f", 2): "float32", ("i", 8): "int64", ("i", 4): "int32",
            ("i", 2): "int32", ("i", 1): "int32", ("u", 8): "uint64", ("u", 4): "uint32", ("u", 2): "uint32",
            ("u", 1): "uint32", ("b", 1): "bool"}
_V2 = {"float64": "FP64", "float32": "FP32", "int64": "INT64", "int32": "INT32", "uint64": "UINT64",
       "uint32": "UINT32", "bool": "BOOL", "string": "BYTES"}


class PreparedModel:
    """A model artifact folder written by prepare(): verify() runs it as the server will, push() registers it."""

    def __init__(self, path, name, metadata, model):
        self.path, self.name, self.metadata, self._model = path, name, metadata, model

    def __repr__(self):
        return f"PreparedModel({self.name!r}, path={self.path!r})"

    def _repr_html_(self):
        cols = self.metadata.get("input_schema", {}).get("columns", [])
        outs = self.metadata.get("output_schema", {}).get("columns", [])
        return ("<b>prepared model %s</b> in <code>%s</code>" % (self.name, self.path) +
                _tables.html_table(cols, ("name", "dtype")) + _tables.html_table(outs, ("name", "dtype")))

    @property
    def files(self):
        return sorted(os.listdir(self.path))

    def verify(self, data=None, python=None, timeout=300):
        """Run the generated score.py in a new Python process (python, default this one), as the server's
        harness does: load_model(), then predict() on data (default: the metadata's sample_input; a DataFrame,
        rows or any JSON body score.py accepts). Raises SlipwayError with the model's traceback when it fails,
        or when its answer does not match the output schema. Returns the predictions (a DataFrame when pandas
        is installed)."""
        if data is None:
            body = self.metadata["sample_input"]
        elif _tables.is_frame(data):
            body = {"data": json.loads(data.to_json(orient="values", date_format="iso")),
                    "columns": [str(c) for c in data.columns]}
        else:
            body = data
        code = ("import json, sys\n"
                "sys.path.insert(0, sys.argv[1])\n"
                "import score\n"
                "model = score.load_model()\n"
                "out = score.predict(json.load(sys.stdin), model=model)\n"
                "sys.stdout.write(json.dumps(out, default=lambda o: o.tolist() if hasattr(o, 'tolist') else str(o)))\n")
        proc = subprocess.run([python or sys.executable, "-B", "-c", code, os.path.abspath(self.path)],
                              input=_dumps(body), capture_output=True, timeout=timeout, cwd=self.path)
        if proc.returncode != 0:
            raise SlipwayError(0, "score.py failed on the sample (exit %d):\n%s" % (
                proc.returncode, proc.stderr.decode(errors="replace").strip()[-4000:]), "verify_failed")
        out = json.loads(proc.stdout)
        _check_output(self.metadata["output_schema"], out)
        pd = _tables.pandas()
        return pd.DataFrame(out) if pd is not None else out

    def push(self, client=None, alias=None, model=None, baseline=True):
        """Register the artifact as a new version of model (default: the name given to prepare()), with
        baseline.csv as its drift baseline (baseline=False: none). client defaults to Client() (SLIPWAY_URL,
        SLIPWAY_TOKEN). Returns the version (READY; with alias, the alias points at it). A version whose checks
        fail raises SlipwayError naming them."""
        client = client or Client()
        base = os.path.join(self.path, BASELINE_FILE)
        v = client.push_model(model or self.name, self.path, metadata=os.path.join(self.path, "metadata.json"),
                              alias=alias, baseline=base if baseline and os.path.exists(base) else None,
                              exclude=(BASELINE_FILE,))
        if v.get("state") != "READY":
            failed = "; ".join("%s: %s" % (c["id"], c["message"]) for c in v.get("checks", []) if not c["passed"])
            raise SlipwayError(422, "version %s of %s is %s: %s" % (v.get("version"), v.get("model"), v.get("state"),
                                                                   failed), "checks_failed", dict(v))
        return v


def prepare(model, X_sample, y_sample=None, path=None, name=None, *, description="", tags=None, sample_rows=3,
            force=False, metrics=None, env_slug="", allow_environment_mismatch=False):
    """Write a model artifact for a fitted model (scikit-learn, or any object with predict(), and optionally
    predict_proba()) into path (default: ./NAME), and return it as a PreparedModel.

    X_sample is a sample of the training data (a DataFrame, a 2-D array, rows, or record dicts): its columns
    and types become the input schema, its first sample_rows rows the sample input the server predicts
    before the version is READY, and the whole sample (with the model's outputs) the drift baseline. y_sample
    (optional) says what kind of model it is (classification or regression) for the catalog's taxonomy.
    env_slug names the serving environment (runtime.yaml INFERENCE_ENV_SLUG)."""
    if not callable(getattr(model, "predict", None)):
        raise TypeError(f"{type(model).__name__} has no predict(): prepare() takes a fitted model")
    name = name or "model"
    path = path or name
    _ready_folder(path, force)
    frame = _tables.is_frame(X_sample) or hasattr(model, "feature_names_in_")
    features = _features(model, X_sample)
    if not features:
        raise ValueError("X_sample has no rows: give a sample of the training data")
    proba_columns = _proba_columns(model)

    # The model's outputs on the sample, computed here: they give the output schema and the baseline's outputs.
    import numpy as np
    sample_in = _model_input(features, frame, len(next(iter(features.values()))["values"]))
    pred = np.asarray(model.predict(sample_in))
    outputs = {"prediction": pred}
    if proba_columns:
        proba = np.asarray(model.predict_proba(sample_in))
        outputs.update({c: proba[:, i] for i, c in enumerate(proba_columns)})
    out_schema = [_out_column(n, a) for n, a in outputs.items()]

    modules = _pickled_modules(model)
    local = _local_modules(modules)
    packages = _packages(modules - set(local) | {"joblib", "numpy"} | ({"pandas"} if frame else set()))

    _write_model(model, path)
    for mod, src in local.items():
        dst = os.path.join(path, os.path.basename(src))
        (shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")) if os.path.isdir(src)
         else shutil.copy2(src, dst))
    _write(path, "score.py", _score_py(name, features, frame, proba_columns, out_schema))
    _write(path, "runtime.yaml", _runtime_yaml(env_slug))
    _write(path, "requirements.txt", "".join(f"{p}=={v}\n" for p, v in sorted(packages.items())))
    cols = list(features)
    rows = [[_jsonable(features[c]["values"][i]) for c in cols] for i in range(min(sample_rows, _len(features)))]
    metadata = {
        "runtime": "python",
        "description": description or f"{type(model).__name__} prepared with slipway.prepare()",
        "tags": dict(tags or {}),
        "input_schema": {"columns": [{"name": c, "dtype": features[c]["dtype"]} for c in cols]},
        "output_schema": {"columns": out_schema},
        "sample_input": {"data": rows, "columns": cols},
        "taxonomy": _taxonomy(model, y_sample),
        "provenance": _provenance(),
        "environment": {"python": platform.python_version(), "packages": packages},
    }
    if metrics:
        metadata["metrics"] = {k: float(v) for k, v in metrics.items()}
    if allow_environment_mismatch:
        metadata["allow_environment_mismatch"] = True
    _write(path, "metadata.json", json.dumps(_finite(metadata), indent=2) + "\n")
    _write(path, BASELINE_FILE, _baseline_csv(features, outputs))
    return PreparedModel(path, name, metadata, model)


def _ready_folder(path, force):
    if os.path.isdir(path) and os.listdir(path):
        ours = set(os.listdir(path)) <= set(_WRITTEN) | {"__pycache__"}
        if not force and not ours:
            raise FileExistsError(f"{path} is not empty and was not written by prepare(): choose another path, "
                                  "or force=True to replace its content")
        shutil.rmtree(path)
    os.makedirs(path, exist_ok=True)


def _write(path, name, text):
    tmp = os.path.join(path, f".{name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, os.path.join(path, name))


def _write_model(model, path):
    try:
        import joblib
    except ImportError:
        raise ImportError("prepare() saves the model with joblib: install it (apt install python3-joblib, "
                          "or pip install joblib)") from None
    tmp = os.path.join(path, "." + MODEL_FILE + ".tmp")
    joblib.dump(model, tmp)
    os.replace(tmp, os.path.join(path, MODEL_FILE))


# ---- the sample: columns, types, values ----

def _len(features):
    return len(next(iter(features.values()))["values"])


def _features(model, X):
    """{column: {"dtype": catalog dtype, "numpy": dtype the request is cast to, "values": list,
    "categories": list | None}} in the sample's column order."""
    import numpy as np
    out = {}
    if _tables.is_frame(X):
        for c in X.columns:
            out[str(c)] = _column(X[c])
        return out
    if isinstance(X, list) and X and isinstance(X[0], dict):
        names = list(X[0])
        return {str(n): _column(np.asarray([r.get(n) for r in X])) for n in names}
    a = np.asarray(X)
    if a.ndim == 1:
        a = a.reshape(-1, 1)
    if a.ndim != 2:
        raise ValueError(f"X_sample must be 2-D (rows × features), got shape {a.shape}")
    names = [str(n) for n in getattr(model, "feature_names_in_", [])] or [f"x{i}" for i in range(a.shape[1])]
    if len(names) != a.shape[1]:
        raise ValueError(f"X_sample has {a.shape[1]} columns, the model was fitted on {len(names)}: {names}")
    return {n: _column(a[:, i]) for i, n in enumerate(names)}


def _column(values):
    """A column's schema dtype, the dtype requests are cast to, its values, and its categories."""
    import numpy as np
    dtype = getattr(values, "dtype", None)
    categories = None
    if dtype is not None and str(dtype) == "category":
        categories = [_jsonable(c) for c in values.cat.categories.tolist()]
        values = values.astype(object)
        dtype = np.dtype(object)
    arr = np.asarray(values)
    if dtype is None or getattr(dtype, "kind", "O") == "O":
        arr = _infer_object(arr)
    kind, size = arr.dtype.kind, arr.dtype.itemsize
    if kind == "M":  # datetimes travel as ISO text (the schema's string), parsed back by score.py
        return {"dtype": "string", "numpy": "datetime64[ns]", "values": [_jsonable(v) for v in arr.tolist()],
                "categories": None}
    catalog = _CATALOG.get((kind, size), "string")
    numpy = "object" if catalog == "string" else str(arr.dtype) if kind != "f" or size >= 4 else "float32"
    return {"dtype": catalog, "numpy": numpy, "values": arr.tolist(), "categories": categories}


def _infer_object(arr):
    """An object column (strings, or Python values from records): numbers stay numbers when all are."""
    import numpy as np
    vals = [v for v in arr.tolist() if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if vals and all(isinstance(v, bool) for v in vals):
        return np.asarray(arr, dtype=bool)
    if vals and all(isinstance(v, int) and not isinstance(v, bool) for v in vals) and len(vals) == len(arr):
        return np.asarray(arr, dtype=np.int64)
    if vals and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
        return np.asarray([np.nan if v is None else v for v in arr.tolist()], dtype=np.float64)
    return np.asarray([None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
                       for v in arr.tolist()], dtype=object)


def _model_input(features, frame, n):
    import numpy as np
    arrays = {}
    for c, f in features.items():
        arrays[c] = np.asarray(f["values"], dtype=f["numpy"]) if f["numpy"] != "object" else np.asarray(
            f["values"], dtype=object)
    if frame:
        pd = _tables.pandas()
        df = pd.DataFrame(arrays, columns=list(features))
        for c, f in features.items():
            if f["categories"] is not None:
                df[c] = pd.Categorical(df[c], categories=f["categories"])
        return df
    return np.column_stack(list(arrays.values())) if len(arrays) > 1 else next(iter(arrays.values())).reshape(n, 1)


def _proba_columns(model):
    if not callable(getattr(model, "predict_proba", None)) or getattr(model, "classes_", None) is None:
        return []
    return ["probability_%s" % _jsonable(c) for c in list(model.classes_)]


def _out_column(name, a):
    spec = {"name": name, "dtype": _CATALOG.get((a.dtype.kind, a.dtype.itemsize), "string")}
    if a.dtype.kind == "f":
        spec["dtype"] = "float64" if a.dtype.itemsize >= 8 else "float32"
    if a.ndim == 2:
        spec["shape"] = [-1, int(a.shape[1])]
    return spec


def _jsonable(v):
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (datetime.datetime, datetime.date)):
        return v.isoformat()
    if v is not None and not isinstance(v, (bool, int, float, str)):
        return str(v)
    return v


def _check_output(schema, out):
    """The server's model.sample_prediction check, here: an entry per output column, elements of its kind."""
    def fail(msg):
        raise SlipwayError(0, "the output of score.py does not match the output schema: " + msg, "verify_failed")

    if not isinstance(out, dict):
        fail(f"expected an object with keys {[c['name'] for c in schema['columns']]}, got {type(out).__name__}")
    for col in schema["columns"]:
        if col["name"] not in out:
            fail(f"output column {col['name']!r} is missing (the answer has {sorted(out)})")
        leaves, stack = [], [out[col["name"]]]
        while stack:
            v = stack.pop()
            if isinstance(v, list):
                stack.extend(v)
            else:
                leaves.append(v)
        for v in leaves:
            if not _is_kind(col["dtype"], v):
                fail(f"output column {col['name']!r} holds {v!r}, not a {col['dtype']}")


def _is_kind(dtype, v):
    if dtype.startswith("float"):
        return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
    if dtype.startswith(("int", "uint")):
        return isinstance(v, int) and not isinstance(v, bool) or (isinstance(v, float) and v.is_integer())
    if dtype == "bool":
        return isinstance(v, bool)
    if dtype in ("string", "object"):
        return isinstance(v, str)
    return True


# ---- the environment ----

class _Recorder(pickle.Unpickler):
    """Unpickles while noting the module of every class and function the pickle names."""

    def __init__(self, f):
        super().__init__(f)
        self.modules = set()

    def find_class(self, module, name):
        self.modules.add(module)
        return super().find_class(module, name)


def _pickled_modules(model):
    """The modules the model's pickle refers to: what loading it imports."""
    r = _Recorder(io.BytesIO(pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)))
    r.load()
    if any(m == "__main__" or m.startswith("__main__.") for m in r.modules):
        raise ValueError("the model uses classes or functions defined in the notebook itself (__main__): the server "
                         "cannot import them. Move them into a module file next to the notebook and import it; "
                         "prepare() copies such local modules into the artifact")
    return {m.split(".")[0] for m in r.modules}


def _stdlib(top):
    names = getattr(sys, "stdlib_module_names", None)
    if names is not None:
        return top in names or top in sys.builtin_module_names
    mod = sys.modules.get(top)
    f = getattr(mod, "__file__", None)
    return f is None or os.path.dirname(f).startswith(sysconfig.get_paths()["stdlib"])


def _distributions():
    from importlib import metadata
    try:
        return metadata.packages_distributions()
    except AttributeError:  # Python < 3.10: import name == distribution name, mostly
        return {}


def _local_modules(tops):
    """Top-level modules the model needs that no installed distribution provides and that live outside the
    Python installation (the notebook's own files): {module: file or package folder} to copy along."""
    dists = _distributions()
    out = {}
    site = [os.path.realpath(p) for p in sys.path if p and ("site-packages" in p or "dist-packages" in p)]
    for top in tops:
        if _stdlib(top) or top in dists:
            continue
        mod = sys.modules.get(top)
        f = getattr(mod, "__file__", None)
        if not f or any(os.path.realpath(f).startswith(s) for s in site):
            continue
        out[top] = os.path.dirname(f) if os.path.basename(f) == "__init__.py" else f
    return out


def _packages(tops):
    """{distribution: version} for the top-level modules (stdlib and unknown ones left out)."""
    from importlib import metadata
    dists = _distributions()
    out = {}
    for top in sorted(tops):
        if _stdlib(top):
            continue
        for dist in dists.get(top, [top]):
            try:
                out[_normal(metadata.metadata(dist)["Name"])] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                pass
    return out


def _normal(name):
    return name.lower().replace("_", "-").replace(".", "-")


# ---- the generated files ----

def _score_py(name, features, frame, proba_columns, out_schema):
    body_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_score_body.py")
    with open(body_path) as f:
        body = f.read()
    datatypes = {c: _V2.get(f["dtype"], "BYTES") for c, f in features.items()}
    consts = [
        f'"""score.py for {name}, generated by slipway.prepare() on {datetime.date.today().isoformat()}.',
        "",
        f"load_model() reads {MODEL_FILE} with joblib; predict(data) takes rows of {', '.join(features)}",
        f"and returns {{{', '.join(repr(c['name']) + ': [...]' for c in out_schema)}}}.",
        '"""',
        "",
        f"MODEL_FILE = {MODEL_FILE!r}",
        f"FEATURES = {list(features)!r}",
        f"NUMPY_DTYPES = {({c: f['numpy'] for c, f in features.items()})!r}  # every request is cast to these",
        f"CATEGORIES = {({c: f['categories'] for c, f in features.items() if f['categories'] is not None})!r}",
        f"FRAME = {bool(frame)!r}  # fitted on a DataFrame with these columns (else a 2-D array in FEATURES order)",
        f"PROBA_COLUMNS = {proba_columns!r}",
        f"OUTPUTS = {[c['name'] for c in out_schema]!r}",
        f"DATATYPES = {datatypes!r}",
        f"DATATYPES_OUT = {({c['name']: _V2.get(c['dtype'], 'BYTES') for c in out_schema})!r}",
        "",
    ]
    return "\n".join(consts) + "\n" + body


def _runtime_yaml(env_slug):
    py = "%d.%d" % sys.version_info[:2]
    return (f"MODEL_ARTIFACT_VERSION: '3.0'\n"
            f"MODEL_DEPLOYMENT:\n"
            f"  INFERENCE_CONDA_ENV:\n"
            f"    INFERENCE_ENV_PATH: ''\n"
            f"    INFERENCE_ENV_SLUG: '{env_slug}'\n"
            f"    INFERENCE_ENV_TYPE: published\n"
            f"    INFERENCE_PYTHON_VERSION: '{py}'\n"
            f"  INFERENCE_PYTHON_VERSION: '{py}'\n"
            f"MODEL_PROVENANCE:\n"
            f"  TRAINING_CODE:\n"
            f"    ARTIFACT_DIRECTORY: .\n")


def _baseline_csv(features, outputs):
    cols = list(features) + [n for n, a in outputs.items() if a.ndim == 1 and n not in features]
    values = [features[c]["values"] for c in features] + [outputs[c].tolist() for c in cols[len(features):]]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for row in zip(*values):
        w.writerow(["" if _jsonable(v) is None else _jsonable(v) for v in row])
    return buf.getvalue()


def _git(*args):
    try:
        r = subprocess.run(["git", *args], capture_output=True, text=True, timeout=5)
        return r.stdout.strip() if r.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def _provenance():
    try:
        author = os.environ.get("USER") or getpass.getuser()
    except (KeyError, OSError):
        author = ""
    p = {"git_repo": _git("config", "--get", "remote.origin.url"), "git_branch": _git("rev-parse", "--abbrev-ref", "HEAD"),
         "git_commit": _git("rev-parse", "HEAD"), "author": author}
    return {k: v for k, v in p.items() if v}


def _taxonomy(model, y):
    final = model
    steps = getattr(model, "steps", None)
    if steps:  # a scikit-learn Pipeline: the estimator is the last step
        final = steps[-1][1]
    top = type(final).__module__.split(".")[0]
    pkgs = _packages({top})
    framework, version = next(iter(pkgs.items())) if pkgs else (top, "")
    t = {"framework": framework, "framework_version": version, "algorithm": type(final).__name__}
    classes = getattr(model, "classes_", None)
    if classes is not None:
        t["use_case"] = "binary_classification" if len(classes) == 2 else "multinomial_classification"
    elif y is not None:
        import numpy as np
        t["use_case"] = "regression" if np.asarray(y).dtype.kind == "f" else ""
    get_params = getattr(final, "get_params", None)
    if callable(get_params):
        try:
            params = get_params(deep=False)
            t["hyperparameters"] = {k: v for k, v in params.items()
                                    if v is None or isinstance(v, (bool, int, float, str))}
        except Exception:  # a third-party get_params that fails is no reason to stop
            pass
    return {k: v for k, v in t.items() if v not in ("", None)}
