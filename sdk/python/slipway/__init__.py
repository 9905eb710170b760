"""Slipway's Python SDK: the REST API (/api/v1) and the prediction endpoints from a notebook or a script.

Standard library only (pandas is used when you pass a DataFrame). It finds the server and the token the way the
CLI does: SLIPWAY_URL (default http://127.0.0.1:8080) and SLIPWAY_TOKEN, else $SLIPWAY_DATA_DIR/admin.token or
./slipway-data/admin.token.

    import slipway
    sw = slipway.Client()
    v = sw.push_model("churn", "examples/sklearn-churn", metadata="examples/sklearn-churn/metadata.json",
                      alias="champion")
    sw.deploy("churn-api", model="churn", alias="champion", replicas=2)
    sw.predict("churn-api", df)            # a pandas DataFrame, or MLflow/OIP-shaped dicts
    sw.run_pipeline("retrain", params={"features": "all"}, wait=True)

Every API error raises SlipwayError with the server's problem details (status, code, detail).
"""

import io
import json
import math
import os
import ssl
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

__all__ = ["Client", "SlipwayError"]

_SKIP = {"__pycache__", ".git", ".gitignore", ".ipynb_checkpoints"}
_TERMINAL = {"SUCCEEDED", "FAILED", "CANCELED"}


class SlipwayError(Exception):
    """An API error: the HTTP status and the problem document's code and detail (RFC 9457)."""

    def __init__(self, status, detail, code="", problem=None):
        super().__init__(f"{status}: {detail}")
        self.status, self.detail, self.code, self.problem = status, detail, code, problem or {}


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def _default_url():
    """Where the server is, as the CLI finds it: SLIPWAY_URL_FILE (given to job runs; it follows the server
    across restarts), SLIPWAY_URL, the server.url of its data folder, else http://127.0.0.1:8080."""
    if os.environ.get("SLIPWAY_URL_FILE"):
        url = _read(os.environ["SLIPWAY_URL_FILE"])
        if url:
            return url
    return os.environ.get("SLIPWAY_URL") or _data_file("server.url") or "http://127.0.0.1:8080"


def _default_token():
    return os.environ.get("SLIPWAY_TOKEN") or _data_file("admin.token")


def _data_file(name):
    """The first non-empty NAME in a local server's data folder: $SLIPWAY_DATA_DIR, then ./slipway-data."""
    for d in (os.environ.get("SLIPWAY_DATA_DIR"), "slipway-data"):
        content = d and _read(os.path.join(d, name))
        if content:
            return content
    return ""


def _dumps(value):
    """JSON as the server reads it (RFC 8259): NaN and ±Infinity, which Python's json writes but JSON has no
    words for, are sent as null, the missing value. A pandas frame with gaps is the usual source."""
    try:
        return json.dumps(value, allow_nan=False).encode()
    except ValueError:
        return json.dumps(_finite(value), allow_nan=False).encode()


def _finite(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None  # NaN and ±Infinity have no JSON
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _quote(name):
    return urllib.parse.quote(str(name), safe="")


class Client:
    """A client of one Slipway server. Methods return the API's JSON as dicts and lists."""

    def __init__(self, url=None, token=None, timeout=300, project=None):
        self._fixed_url = url.rstrip("/") if url else None
        self.url = self._fixed_url or _default_url().rstrip("/")
        self.token = token if token is not None else _default_token()
        self.timeout = timeout
        # The project calls work in (Slipway-Project): else SLIPWAY_PROJECT, else the token's only one, else default.
        self.project = project or os.environ.get("SLIPWAY_PROJECT") or None

    # ---- transport ----

    def _tls(self):
        """The TLS context for https:// servers: the system's CAs, plus SLIPWAY_CA_CERT's (a private CA or the
        server's self-signed certificate), as the CLI."""
        ca = os.environ.get("SLIPWAY_CA_CERT")
        return ssl.create_default_context(cafile=ca) if ca else None

    def _request(self, method, path, body=None, content_type=None, query=None, raw=False, headers=None):
        if not self._fixed_url:
            self.url = _default_url().rstrip("/")  # a job run's server may have restarted on another port
        url = self.url + path
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        req = urllib.request.Request(url, data=body, method=method)
        if self.token:
            req.add_header("Authorization", "Bearer " + self.token)
        if self.project:
            req.add_header("Slipway-Project", self.project)
        if content_type:
            req.add_header("Content-Type", content_type)
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self._tls()) as resp:
                data = resp.read()
                if raw:
                    return data
                if not data:
                    return None
                return json.loads(data) if "json" in resp.headers.get("Content-Type", "") else data.decode()
        except urllib.error.HTTPError as e:
            raise _problem(e) from None
        except urllib.error.URLError as e:
            raise SlipwayError(0, f"cannot reach the Slipway server at {self.url}: {e.reason} "
                                  "(start it with `make run`, or set SLIPWAY_URL)") from None

    def _json(self, method, path, payload=None, query=None):
        body = None if payload is None else _dumps(payload)
        return self._request(method, path, body, "application/json" if body is not None else None, query)

    # ---- catalog ----

    def whoami(self):
        return self._json("GET", "/api/v1/whoami")

    def list_models(self):
        return self._json("GET", "/api/v1/models", query={"limit": 1000})["items"]

    def get_model(self, model):
        return self._json("GET", f"/api/v1/models/{_quote(model)}")

    def get_version(self, model, version=None, alias=None):
        """A version by number, by alias, or the model@alias / model:version form."""
        model, version, alias = _ref(model, version, alias)
        if alias:
            return self._json("GET", f"/api/v1/models/{_quote(model)}/aliases/{_quote(alias)}")
        return self._json("GET", f"/api/v1/models/{_quote(model)}/versions/{int(version)}")

    def push_model(self, model, path, metadata=None, alias=None, wait=True):
        """Register a new version: path is a model folder (sent as a tar.gz) or a file (.onnx, .zip, .tar.gz).
        metadata is a dict or the path of a metadata JSON file. Returns the version (READY, or FAILED with
        its checks); with alias, READY versions get it. wait=False returns it REGISTERING as soon as the
        files are stored (the checks go on on the server; get_version shows them)."""
        if alias and not wait:
            raise ValueError("alias needs the checks' verdict: push with wait=True, or set_alias later")
        if isinstance(metadata, (str, os.PathLike)):
            with open(metadata) as f:
                metadata = json.load(f)
        if os.path.isdir(path):
            artifact, filename = _tar_gz(path), os.path.basename(os.path.abspath(path)) + ".tar.gz"
        else:
            with open(path, "rb") as f:
                artifact, filename = f.read(), os.path.basename(path)
        parts = []
        if metadata is not None:
            parts.append(("metadata", None, "application/json", _dumps(metadata)))
        parts.append(("artifact", filename, "application/octet-stream", artifact))
        body, ctype = _multipart(parts)
        v = self._request("POST", f"/api/v1/models/{_quote(model)}/versions", body, ctype,
                          query=None if wait else {"wait": "false"})
        if alias and v.get("state") == "READY":
            self.set_alias(model, alias, v["version"])
        return v

    def set_alias(self, model, alias, version):
        return self._json("PUT", f"/api/v1/models/{_quote(model)}/aliases/{_quote(alias)}", {"version": int(version)})

    # ---- deployments and predictions ----

    def deploy(self, name, model, version=None, alias=None, replicas=1, wait=True, timeout=300, **spec):
        """Create a deployment (other fields of the API, e.g. batching={...}, canary={...}, go in spec) and,
        with wait, return it once ACTIVE; a deployment that fails raises with its reason."""
        model, version, alias = _ref(model, version, alias)
        body = {"name": name, "model": model, "replicas": replicas, **spec}
        if version is not None:
            body["version"] = int(version)
        if alias:
            body["alias"] = alias
        d = self._json("POST", "/api/v1/deployments", body)
        return self.wait_deployment(name, timeout) if wait else d

    def get_deployment(self, name):
        return self._json("GET", f"/api/v1/deployments/{_quote(name)}")

    def update_deployment(self, name, wait=True, timeout=300, **changes):
        d = self._json("PATCH", f"/api/v1/deployments/{_quote(name)}", changes)
        return self.wait_deployment(name, timeout) if wait else d

    def activate(self, name):
        return self._json("POST", f"/api/v1/deployments/{_quote(name)}/activate")

    def deactivate(self, name):
        return self._json("POST", f"/api/v1/deployments/{_quote(name)}/deactivate")

    def delete_deployment(self, name):
        return self._json("DELETE", f"/api/v1/deployments/{_quote(name)}")

    def wait_deployment(self, name, timeout=300):
        deadline = time.monotonic() + timeout
        while True:
            d = self.get_deployment(name)
            if d["state"] == "ACTIVE":
                return d
            if d["state"] in ("FAILED", "NEEDS_ATTENTION"):
                raise SlipwayError(409, f"deployment {name} is {d['state']}: {d.get('reason', '')}", "conflict", d)
            if time.monotonic() > deadline:
                raise SlipwayError(0, f"deployment {name} is still {d['state']} after {timeout}s")
            time.sleep(0.5)

    def predict(self, deployment, data, params=None, request_id=None):
        """Predictions through the MLflow scoring protocol: a pandas DataFrame (sent as dataframe_split), a
        list of row dicts (dataframe_records), or a dict already in an MLflow shape ({"inputs": ...}, ...).
        Returns the "predictions" value."""
        payload = _mlflow_payload(data)
        if params:
            payload["params"] = params
        answer = self._request("POST", f"/deployments/{_quote(deployment)}/invocations", _dumps(payload),
                               "application/json", headers={"X-Request-Id": request_id} if request_id else None)
        return answer["predictions"]

    def predict_raw(self, deployment, body):
        """The OCI-style endpoint: body (any JSON value) goes to the model's predict() as it is."""
        return self._json("POST", f"/deployments/{_quote(deployment)}/predict", body)

    def feedback(self, deployment, records):
        """Ground truth for captured predictions: a list of {"request_id", "row", "label" | "value"} (the
        request id is what predict(..., request_id=...) sent, or the X-Request-Id the server gave)."""
        return self._json("POST", f"/api/v1/deployments/{_quote(deployment)}/feedback", list(records))

    def drift(self, deployment, since=None):
        return self._json("GET", f"/api/v1/deployments/{_quote(deployment)}/drift", query={"from": since})

    def metrics(self, deployment, since="1h"):
        return self._json("GET", f"/api/v1/deployments/{_quote(deployment)}/metrics", query={"from": since})

    # ---- jobs and pipelines ----

    def run_job(self, job, args=None, env=None, wait=False, timeout=3600):
        body = {}
        if args is not None:
            body["args"] = list(args)
        if env:
            body["env"] = dict(env)
        r = self._json("POST", f"/api/v1/jobs/{_quote(job)}/runs", body)
        return self._wait(f"/api/v1/job-runs/{_quote(r['id'])}", timeout) if wait else r

    def job_logs(self, run_id):
        return self._request("GET", f"/api/v1/job-runs/{_quote(run_id)}/logs", raw=True).decode()

    def run_pipeline(self, pipeline, params=None, wait=False, timeout=3600):
        r = self._json("POST", f"/api/v1/pipelines/{_quote(pipeline)}/runs", {"params": params or {}})
        return self._wait(f"/api/v1/pipeline-runs/{_quote(r['id'])}", timeout) if wait else r

    def _wait(self, path, timeout):
        deadline = time.monotonic() + timeout
        while True:
            r = self._json("GET", path)
            if r["state"] in _TERMINAL:
                return r
            if time.monotonic() > deadline:
                raise SlipwayError(0, f"{path} is still {r['state']} after {timeout}s")
            time.sleep(0.5)


def _ref(model, version, alias):
    """model@alias and model:version are accepted as in the CLI."""
    if version is None and alias is None:
        if "@" in model:
            model, alias = model.split("@", 1)
        elif ":" in model:
            model, version = model.split(":", 1)
    return model, version, alias


def _problem(e):
    body = e.read()
    try:
        p = json.loads(body)
        return SlipwayError(e.code, p.get("detail") or p.get("title") or str(e), p.get("code", ""), p)
    except ValueError:
        return SlipwayError(e.code, body.decode(errors="replace").strip() or str(e))


def _mlflow_payload(data):
    if hasattr(data, "to_dict") and hasattr(data, "columns"):  # a pandas DataFrame
        split = json.loads(data.to_json(orient="split", index=False))
        return {"dataframe_split": {"columns": split["columns"], "data": split["data"]}}
    if isinstance(data, dict):
        return dict(data)
    if isinstance(data, list) and data and isinstance(data[0], dict):
        return {"dataframe_records": data}
    return {"inputs": data}


def _tar_gz(root):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d not in _SKIP)
            for name in sorted(filenames):
                if name in _SKIP or name.endswith(".pyc"):
                    continue
                full = os.path.join(dirpath, name)
                if os.path.islink(full) or not os.path.isfile(full):
                    continue
                tar.add(full, arcname=os.path.relpath(full, root).replace(os.sep, "/"), recursive=False)
    return buf.getvalue()


def _multipart(parts):
    boundary = uuid.uuid4().hex
    out = io.BytesIO()
    for name, filename, ctype, data in parts:
        out.write(f"--{boundary}\r\n".encode())
        disposition = f'form-data; name="{name}"'
        if filename:
            disposition += f'; filename="{filename}"'
        out.write(f"Content-Disposition: {disposition}\r\nContent-Type: {ctype}\r\n\r\n".encode())
        out.write(data)
        out.write(b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"
