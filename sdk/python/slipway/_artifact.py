"""Catalog versions on this machine: pull (download, verify every file against the catalog's sha256, move into
place) and load (import the version's score.py and call its load_model(), or load an MLflow model directory as
MLflow's own loaders would, without MLflow)."""

import hashlib
import importlib.util
import io
import os
import posixpath
import re
import shutil
import sys
import tarfile
import tempfile
import zlib

from ._client import SlipwayError, _ref


class IntegrityError(SlipwayError):
    """A download that does not match the catalog's manifest (a file's sha256 or size, a file missing or not
    listed): nothing of it is kept."""

    def __init__(self, detail):
        super().__init__(0, detail, "integrity")


def cache_root(client):
    base = client.cache_dir or os.environ.get("SLIPWAY_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "slipway", "sdk-models")
    return base


def pull(client, ref, path=None):
    model, version, alias = _ref(ref, None, None)
    if version is None and alias is None:
        alias = "latest"
    v = client.get_version(model, version, alias)
    if v["state"] != "READY":
        raise SlipwayError(409, f"version {v['version']} of {model} is {v['state']}: only READY versions are loaded",
                           "conflict")
    manifest = {f["path"]: f for f in v["files"]}
    if path is None:
        path = os.path.join(cache_root(client), model, "%d-%s" % (v["version"], v["digest"].split(":")[-1][:16]))
        if os.path.isdir(path) and _matches(path, manifest):
            return path  # the same content, already here and intact
        if os.path.isdir(path):
            shutil.rmtree(path)  # damaged or incomplete: fetch it again
    elif os.path.exists(path) and os.listdir(path):
        raise ValueError(f"{path} is not empty: pull into a new or empty folder")
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".slipway-pull-", dir=parent)
    try:
        # Pin the number: an alias may move between the two requests.
        data = client.download_artifact(model, v["version"])
        _extract_verified(data, tmp, manifest, f"{model} version {v['version']}")
        if os.path.isdir(path):
            os.rmdir(path)  # empty (checked above)
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _matches(root, manifest):
    for rel, f in manifest.items():
        full = os.path.join(root, *rel.split("/"))
        if not os.path.isfile(full) or os.path.islink(full) or os.path.getsize(full) != f["size"]:
            return False
        if _sha256_file(full) != f["sha256"]:
            return False
    return True


def _sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _safe_name(raw):
    name = raw[2:] if raw.startswith("./") else raw
    name = name.rstrip("/")
    if not name or name == "." or "\\" in name or "\x00" in name:
        raise IntegrityError(f"refusing the entry {raw!r}: empty name, backslash or NUL")
    if posixpath.isabs(name) or re.match(r"^[A-Za-z]:", name):
        raise IntegrityError(f"refusing {raw!r}: absolute path")
    if posixpath.normpath(name) != name or name == ".." or name.startswith("../"):
        raise IntegrityError(f"refusing {raw!r}: the path is not canonical or leaves the destination")
    return name


def _extract_verified(data, root, manifest, what):
    """Extract the tar.gz bytes under root, accepting only the manifest's regular files with its sizes and
    sha256; every listed file must be there."""
    try:
        _extract(data, root, manifest, what)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise IntegrityError(f"the download of {what} is not a complete tar.gz ({e}): nothing was kept") from None


def _extract(data, root, manifest, what):
    seen = set()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar:
            name = _safe_name(member.name)
            if member.isdir():
                os.makedirs(os.path.join(root, *name.split("/")), exist_ok=True)
                continue
            if not member.isfile():
                raise IntegrityError(f"refusing {name!r} in {what}: not a regular file (links and special files "
                                     "are never extracted)")
            f = manifest.get(name)
            if f is None:
                raise IntegrityError(f"refusing {name!r} in {what}: it is not in the version's manifest")
            if name in seen:
                raise IntegrityError(f"refusing {name!r} in {what}: it appears twice in the download")
            seen.add(name)
            body = tar.extractfile(member).read()
            got = hashlib.sha256(body).hexdigest()
            if len(body) != f["size"] or got != f["sha256"]:
                raise IntegrityError(f"sha256 mismatch for {name} of {what}: the catalog says {f['sha256']} "
                                     f"({f['size']} bytes), the download has {got} ({len(body)} bytes): the "
                                     "download is corrupt or was tampered with, nothing was kept")
            full = os.path.join(root, *name.split("/"))
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "xb") as out:
                out.write(body)
            os.chmod(full, (f.get("mode") or 0o644) & 0o777 or 0o644)
    missing = sorted(set(manifest) - seen)
    if missing:
        raise IntegrityError(f"{', '.join(missing)} of {what} is in the catalog's manifest but missing from the "
                             "download")


def import_score(model_dir, module_name):
    """Import model_dir/score.py as module_name, with model_dir first on sys.path meanwhile (score.py may
    import its sibling files) and no __pycache__ written into the folder."""
    score = os.path.join(model_dir, "score.py")
    if not os.path.isfile(score):
        raise SlipwayError(0, f"{model_dir} has no score.py: only python models are loaded into the notebook "
                              "(pull an ONNX model and open it with onnxruntime)")
    spec = importlib.util.spec_from_file_location(module_name, score)
    module = importlib.util.module_from_spec(spec)
    saved_path, saved_bytecode = list(sys.path), sys.dont_write_bytecode
    sys.path.insert(0, model_dir)
    sys.dont_write_bytecode = True
    try:
        spec.loader.exec_module(module)
        model = module.load_model()
    finally:
        sys.path[:], sys.dont_write_bytecode = saved_path, saved_bytecode
    return module, model


def load(client, ref, path=None):
    model_dir = pull(client, ref, path)
    if not os.path.isfile(os.path.join(model_dir, "score.py")) and os.path.isfile(os.path.join(model_dir, "MLmodel")):
        return load_mlflow(model_dir)
    name = "slipway_model_" + re.sub(r"\W", "_", os.path.basename(os.path.dirname(model_dir)) + "_" +
                                     os.path.basename(model_dir))
    _, model = import_score(model_dir, name)
    return model


# ---- MLflow model directories (versions registered from an MLmodel), loaded without MLflow ----


def load_mlflow(model_dir):
    """The model object of an MLflow model directory, as MLflow's loaders return it: the sklearn flavor's
    unpickled estimator (mlflow.sklearn.load_model; pickle or cloudpickle per serialization_format), or a
    python_function model's object from its own loader_module's _load_pyfunc(data path). The server serves the
    same two kinds (and refuses the others at registration); code folders go on sys.path as MLflow puts them."""
    conf = read_mlmodel(os.path.join(model_dir, "MLmodel"))
    flavors = conf.get("flavors") or {}
    if not isinstance(flavors, dict):
        raise SlipwayError(0, f"{model_dir}/MLmodel: flavors is not a mapping")
    pyfunc = flavors.get("python_function") or {}
    if "sklearn" in flavors:
        sk = flavors["sklearn"] or {}
        fmt = sk.get("serialization_format") or "pickle"
        if fmt == "cloudpickle":
            try:
                import cloudpickle as loader
            except ImportError:
                raise SlipwayError(0, "this MLflow model is saved with cloudpickle: install it (pip install cloudpickle, "
                                      "Debian: python3-cloudpickle)") from None
        elif fmt == "pickle":
            import pickle as loader
        else:
            raise SlipwayError(0, f"sklearn serialization_format {fmt!r} is not supported (pickle or cloudpickle)")
        if sk.get("code"):
            _put_on_path(_inside(model_dir, sk["code"]))
        with open(_inside(model_dir, sk.get("pickled_model") or "model.pkl"), "rb") as f:
            return loader.load(f)
    loader_module = pyfunc.get("loader_module")
    if not loader_module or loader_module == "mlflow" or str(loader_module).startswith("mlflow."):
        raise SlipwayError(0, f"MLflow flavor(s) {', '.join(sorted(flavors)) or '(none)'} cannot be loaded without "
                              "MLflow: only the sklearn flavor and python_function models with their own loader_module are")
    if pyfunc.get("code"):
        _put_on_path(_inside(model_dir, pyfunc["code"]))
    data = pyfunc.get("model_path") or pyfunc.get("data")
    module = importlib.import_module(loader_module)
    return module._load_pyfunc(_inside(model_dir, data) if data else model_dir)


def _put_on_path(folder):
    """A model's code folder, first on sys.path as MLflow puts code_paths (its modules stay importable: the
    model object refers to them for as long as it lives)."""
    if folder not in sys.path:
        sys.path.insert(0, folder)


def _inside(model_dir, rel):
    """model_dir/rel, refusing a path that leaves model_dir (the MLmodel file came from someone else)."""
    path = os.path.realpath(os.path.join(model_dir, str(rel)))
    root = os.path.realpath(model_dir)
    if path != root and not path.startswith(root + os.sep):
        raise IntegrityError(f"MLmodel path {rel!r} leaves the model directory")
    return path


def read_mlmodel(path):
    """An MLmodel file as a dict: with PyYAML when it is installed, otherwise with a reader of the block
    mappings MLflow writes (nested "key: value" by indentation, scalars, quoted strings; list items skipped)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        import yaml
    except ImportError:
        return _read_block_mappings(text)
    conf = yaml.safe_load(text) or {}
    if not isinstance(conf, dict):
        raise SlipwayError(0, f"{path} is not a YAML mapping")
    return conf


def _read_block_mappings(text):
    root = {}
    stack = [(-1, root)]  # (indentation, mapping)
    for raw in text.splitlines():
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        indent = len(raw) - len(raw.lstrip(" "))
        line = raw.strip()
        if line.startswith("- ") or line == "-":
            continue  # lists (code_paths, env dependencies) are not needed to load the model
        key, sep, value = line.partition(":")
        if not sep:
            continue  # a continuation of a multi-line scalar
        while stack[-1][0] >= indent:
            stack.pop()
        parent = stack[-1][1]
        key, value = _yaml_scalar(key), value.strip()
        if value == "":
            child = {}
            parent[key] = child
            stack.append((indent, child))
        else:
            parent[key] = _yaml_scalar(value)
    return root


def _yaml_scalar(value):
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        inner = value[1:-1]
        return inner.replace("''", "'") if value[0] == "'" else inner.replace('\\"', '"')
    if value in ("null", "~"):
        return None
    if value in ("true", "false"):
        return value == "true"
    return value
