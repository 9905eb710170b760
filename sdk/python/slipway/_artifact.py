"""Catalog versions on this machine: pull (download, verify every file against the catalog's sha256, move into
place) and load (import the version's score.py and call its load_model())."""

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
    name = "slipway_model_" + re.sub(r"\W", "_", os.path.basename(os.path.dirname(model_dir)) + "_" +
                                     os.path.basename(model_dir))
    _, model = import_score(model_dir, name)
    return model
