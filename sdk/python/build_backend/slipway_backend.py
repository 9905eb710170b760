"""A PEP 517 build backend for the slipway SDK, standard library only.

pip builds a package in an isolated environment and first installs the backend named in pyproject.toml. With
setuptools that means PyPI, which a notebook behind a firewall does not reach; this backend is part of the source
tree (backend-path), so `pip install ./sdk/python` needs no network at all. It builds a pure-Python wheel of the
`slipway` package (and an editable install for `pip install -e`), with the name and version of pyproject.toml.
"""

import base64
import hashlib
import io
import os
import re
import tarfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "slipway"
TAG = "py3-none-any"


def _project():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        raw = f.read()
    try:
        import tomllib  # Python 3.11+
    except ImportError:  # older Pythons: the [project] table's simple `key = "value"` lines are all we read
        section, out = None, {}
        for line in raw.decode().splitlines():
            m = re.match(r"\s*\[([^\]]+)\]", line)
            if m:
                section = m.group(1).strip()
                continue
            m = re.match(r'\s*([A-Za-z-]+)\s*=\s*"([^"]*)"', line)
            if m and section == "project":
                out[m.group(1)] = m.group(2)
        return out
    return tomllib.loads(raw.decode())["project"]


def _dist_info():
    p = _project()
    name, version = p["name"], p["version"]
    meta = ["Metadata-Version: 2.1", "Name: " + name, "Version: " + version]
    if p.get("description"):
        meta.append("Summary: " + p["description"])
    if p.get("requires-python"):
        meta.append("Requires-Python: " + p["requires-python"])
    files = {
        "METADATA": "\n".join(meta) + "\n",
        "WHEEL": "Wheel-Version: 1.0\nGenerator: slipway_backend\nRoot-Is-Purelib: true\nTag: %s\n" % TAG,
        "top_level.txt": PACKAGE + "\n",
    }
    return name, version, "%s-%s.dist-info" % (name, version), files


def _package_files():
    base = os.path.join(ROOT, PACKAGE)
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for fn in sorted(filenames):
            if fn.endswith((".pyc", ".pyo")):
                continue
            full = os.path.join(dirpath, fn)
            yield full, os.path.relpath(full, ROOT).replace(os.sep, "/")


def _write_wheel(wheel_directory, entries):
    """entries: (archive name, bytes). Adds the dist-info and RECORD; returns the wheel's file name."""
    name, version, dist_info, meta = _dist_info()
    entries = list(entries) + [(dist_info + "/" + k, v.encode()) for k, v in meta.items()]
    record = []
    filename = "%s-%s-%s.whl" % (name, version, TAG)
    with zipfile.ZipFile(os.path.join(wheel_directory, filename), "w", zipfile.ZIP_DEFLATED) as whl:
        for arcname, data in entries:
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append("%s,sha256=%s,%d" % (arcname, digest, len(data)))
            whl.writestr(arcname, data)
        record.append(dist_info + "/RECORD,,")
        whl.writestr(dist_info + "/RECORD", "\n".join(record) + "\n")
    return filename


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def get_requires_for_build_editable(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    return _write_wheel(wheel_directory, ((arc, _read(full)) for full, arc in _package_files()))


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    # A .pth line puts the source folder on sys.path: edits to sdk/python/slipway apply without reinstalling.
    return _write_wheel(wheel_directory, [("slipway_editable.pth", (ROOT + "\n").encode())])


def build_sdist(sdist_directory, config_settings=None):
    name, version, _, meta = _dist_info()
    base = "%s-%s" % (name, version)
    filename = base + ".tar.gz"
    with tarfile.open(os.path.join(sdist_directory, filename), "w:gz") as tar:
        files = [(os.path.join(ROOT, "pyproject.toml"), "pyproject.toml"),
                 (os.path.abspath(__file__), "build_backend/" + os.path.basename(__file__))]
        for full, arc in files + list(_package_files()):
            tar.add(full, arcname=base + "/" + arc, recursive=False)
        info = tarfile.TarInfo(base + "/PKG-INFO")
        data = meta["METADATA"].encode()
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return filename
