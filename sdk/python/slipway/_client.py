"""The client of one Slipway server: /api/v1 and the prediction endpoints, standard library only."""

import datetime
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

from . import _tables
from ._tables import Deployment, Record, Run, Table, Version

_SKIP = {"__pycache__", ".git", ".gitignore", ".ipynb_checkpoints"}
_TERMINAL = {"SUCCEEDED", "FAILED", "CANCELED"}


class SlipwayError(Exception):
    """An API error: the HTTP status and the problem document's fields (RFC 9457): code, title, detail and the
    whole document in problem. status 0 means the server could not be reached or did not answer in time."""

    def __init__(self, status, detail, code="", problem=None):
        super().__init__(f"{status}: {detail}" if status else detail)
        self.status, self.detail, self.code, self.problem = status, detail, code, problem or {}
        self.title = self.problem.get("title", "")
        self.type = self.problem.get("type", "")
        self.instance = self.problem.get("instance", "")
        self.request_id = self.problem.get("request_id", "")  # what the server's log names the request by


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
        return json.dumps(value, allow_nan=False, default=_plain).encode()
    except ValueError:
        return json.dumps(_finite(value), allow_nan=False, default=_plain).encode()


def _plain(o):
    """numpy scalars and arrays, and datetimes, in JSON."""
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "isoformat"):
        return o.isoformat()
    raise TypeError(f"{type(o).__name__} is not JSON serializable")


def _finite(value):
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        value = value.tolist()
    if isinstance(value, float):
        return value if math.isfinite(value) else None  # NaN and ±Infinity have no JSON
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _quote(name):
    return urllib.parse.quote(str(name), safe="")


def _when(t):
    """A time for ?from= / ?to=: a datetime (naive ones are UTC) or what the server reads as is (an RFC 3339
    time, or a duration ago such as "24h")."""
    if isinstance(t, datetime.datetime):
        if t.tzinfo is None:
            t = t.replace(tzinfo=datetime.timezone.utc)
        return t.astimezone(datetime.timezone.utc).isoformat().replace("+00:00", "Z")
    return t


class Client:
    """A client of one Slipway server. Methods return the API's JSON as dicts and lists (Version, Deployment,
    Run and Table render as HTML tables in a notebook), and DataFrames where you give one.

    Every argument is optional; new ones are keyword-only, so Client(url, token) keeps working."""

    def __init__(self, url=None, token=None, timeout=300, *, ca_cert=None, cache_dir=None, project=None):
        self._fixed_url = url.rstrip("/") if url else None
        self.url = self._fixed_url or _default_url().rstrip("/")
        self.token = token if token is not None else _default_token()
        self.timeout = timeout
        self.ca_cert = ca_cert or os.environ.get("SLIPWAY_CA_CERT")
        self.cache_dir = cache_dir  # where load_model() keeps downloaded versions (default: see _artifact)
        # The project calls work in (Slipway-Project): else SLIPWAY_PROJECT, else the token's only one, else default.
        self.project = project or os.environ.get("SLIPWAY_PROJECT") or None

    def __repr__(self):
        return f"slipway.Client({self.url!r})"

    # ---- transport ----

    def _tls(self):
        """The TLS context for https:// servers: the system's CAs, plus SLIPWAY_CA_CERT's (a private CA or the
        server's self-signed certificate), as the CLI."""
        return ssl.create_default_context(cafile=self.ca_cert) if self.ca_cert else None

    def _headers(self):
        """Headers every request carries: the token, and the project when one is named."""
        h = {"Authorization": "Bearer " + self.token} if self.token else {}
        if self.project:
            h["Slipway-Project"] = self.project
        return h

    def _open(self, method, path, body=None, content_type=None, query=None, headers=None, timeout=None):
        if not self._fixed_url:
            self.url = _default_url().rstrip("/")  # a job run's server may have restarted on another port
        url = self.url + path
        if query:
            url += "?" + urllib.parse.urlencode({k: _when(v) for k, v in query.items() if v is not None})
        req = urllib.request.Request(url, data=body, method=method)
        for k, v in {**self._headers(), **(headers or {})}.items():
            req.add_header(k, v)
        if content_type:
            req.add_header("Content-Type", content_type)
        try:
            return urllib.request.urlopen(req, timeout=timeout or self.timeout, context=self._tls())
        except urllib.error.HTTPError as e:
            raise _problem(e) from None
        except urllib.error.URLError as e:
            raise SlipwayError(0, f"cannot reach the Slipway server at {self.url}: {e.reason} "
                                  "(start it with `make run`, or set SLIPWAY_URL)") from None
        except TimeoutError:
            raise SlipwayError(0, f"{method} {path}: no answer from {self.url} within {timeout or self.timeout}s") from None

    def _request(self, method, path, body=None, content_type=None, query=None, raw=False, headers=None):
        with self._open(method, path, body, content_type, query, headers) as resp:
            try:
                data = resp.read()
            except TimeoutError:
                raise SlipwayError(0, f"{method} {path}: the answer from {self.url} stalled for {self.timeout}s") from None
            if raw:
                return data
            if not data:
                return None
            return json.loads(data) if "json" in resp.headers.get("Content-Type", "") else data.decode()

    def _json(self, method, path, payload=None, query=None, wrap=None):
        body = None if payload is None else _dumps(payload)
        out = self._request(method, path, body, "application/json" if body is not None else None, query)
        return wrap(out) if wrap and isinstance(out, dict) else out

    def _items(self, path, query=None, wrap=dict, columns=()):
        """Every item of a list endpoint, page after page (the server answers at most 1000 at a time)."""
        given = {k: v for k, v in (query or {}).items() if v is not None}
        items, query = [], {"limit": 1000, **given}
        while True:
            page = self._json("GET", path, query={**query, "offset": len(items) or None})
            if not (isinstance(page, dict) and "items" in page):
                return Table([wrap(i) for i in page or []], columns)
            items.extend(page["items"])
            # A limit the caller gave is one page; otherwise go on until the total is reached.
            if "limit" in given or not page["items"] or len(items) >= page.get("total", 0):
                return Table([wrap(i) for i in items], columns)

    # ---- catalog ----

    def whoami(self):
        return Record(self._json("GET", "/api/v1/whoami"))

    def list_models(self):
        return self._items("/api/v1/models", wrap=Record, columns=("name", "description", "tags", "latest_version",
                                                                  "aliases", "updated_at"))

    def get_model(self, model):
        return Record(self._json("GET", f"/api/v1/models/{_quote(model)}"))

    def list_versions(self, model):
        return self._items(f"/api/v1/models/{_quote(model)}/versions", wrap=Version,
                           columns=("version", "state", "aliases", "runtime", "digest", "created_at", "created_by"))

    def get_version(self, model, version=None, alias=None):
        """A version by number, by alias, or the model@alias / model:version form."""
        model, version, alias = _ref(model, version, alias)
        ref = f"@{alias}" if alias else str(int(version))
        return Version(self._json("GET", f"/api/v1/models/{_quote(model)}/versions/{_quote(ref)}"))

    def get_alias(self, model, alias):
        """An alias with its history of moves."""
        return Record(self._json("GET", f"/api/v1/models/{_quote(model)}/aliases/{_quote(alias)}"))

    def push_model(self, model, path, metadata=None, alias=None, wait=True, baseline=None, exclude=()):
        """Register a new version: path is a model folder (sent as a tar.gz) or a file (.onnx, .zip, .tar.gz).
        metadata is a dict or the path of a metadata JSON file. baseline (optional) is a sample of the training
        data (a DataFrame, or a .csv / .parquet file) kept as the version's drift baseline. Returns the version
        (READY, or FAILED with its checks); with alias, READY versions get it. wait=False returns it REGISTERING
        as soon as the files are stored (the checks go on on the server; get_version shows them). exclude names
        top-level files of the folder to leave out of the artifact."""
        if alias and not wait:
            raise ValueError("alias needs the checks' verdict: push with wait=True, or set_alias later")
        if baseline is not None and not wait:
            raise ValueError("a baseline is profiled against the checked version: push with wait=True, "
                             "or put_baseline once the version is READY")
        if isinstance(metadata, (str, os.PathLike)):
            with open(metadata) as f:
                metadata = json.load(f)
        artifact, filename = _artifact_of(path, exclude)
        parts = []
        if metadata is not None:
            parts.append(("metadata", None, "application/json", _dumps(metadata)))
        parts.append(("artifact", filename, "application/octet-stream", artifact))
        if baseline is not None:
            data, ctype, name = _baseline_body(baseline)
            parts.append(("baseline", name, ctype, data))
        body, ctype = _multipart(parts)
        v = Version(self._request("POST", f"/api/v1/models/{_quote(model)}/versions", body, ctype,
                                  query=None if wait else {"wait": "false"}))
        if alias and v.get("state") == "READY":
            self.set_alias(model, alias, v["version"])
            v = self.get_version(model, v["version"])
        return v

    def set_alias(self, model, alias, version):
        return Record(self._json("PUT", f"/api/v1/models/{_quote(model)}/aliases/{_quote(alias)}",
                                 {"version": int(version)}))

    def delete_alias(self, model, alias):
        return self._json("DELETE", f"/api/v1/models/{_quote(model)}/aliases/{_quote(alias)}")

    def download_artifact(self, model, version=None, alias=None):
        """A version's files as the tar.gz bytes the server sends (load_model and pull verify them)."""
        model, version, alias = _ref(model, version, alias)
        ref = f"@{alias}" if alias else str(int(version))
        return self._request("GET", f"/api/v1/models/{_quote(model)}/versions/{_quote(ref)}/artifact", raw=True)

    def pull(self, ref, path=None):
        """Download a version ("churn@champion", "churn:3", or "churn": its newest READY version) into path
        (default: a cache folder per version digest), every file checked against the catalog's sha256. Returns
        the folder."""
        from . import _artifact
        return _artifact.pull(self, ref, path)

    def load_model(self, ref, path=None):
        """The model object of a catalog version, in this process: the version is pulled (digests verified, see
        pull) and its score.py's load_model() is called. The model's own packages must be importable here."""
        from . import _artifact
        return _artifact.load(self, ref, path)

    # ---- baselines ----

    def put_baseline(self, model, data, version=None, alias=None):
        """Profile a sample of the training data (a DataFrame, or a .csv / .parquet file) as a version's
        baseline, the reference of drift."""
        model, version, alias = _ref(model, version, alias)
        body, ctype, _ = _baseline_body(data)
        ref = f"@{alias}" if alias else str(int(version))
        return Record(self._request("PUT", f"/api/v1/models/{_quote(model)}/versions/{_quote(ref)}/baseline",
                                    body, ctype))

    def get_baseline(self, model, version=None, alias=None):
        model, version, alias = _ref(model, version, alias)
        ref = f"@{alias}" if alias else str(int(version))
        return Record(self._json("GET", f"/api/v1/models/{_quote(model)}/versions/{_quote(ref)}/baseline"))

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
        d = self._json("POST", "/api/v1/deployments", body, wrap=Deployment)
        return self.wait_deployment(name, timeout) if wait else d

    def list_deployments(self):
        return self._items("/api/v1/deployments", wrap=Deployment,
                           columns=("name", "state", "model", "version", "alias", "replicas", "ready_replicas",
                                    "reason", "updated_at"))

    def get_deployment(self, name):
        return self._json("GET", f"/api/v1/deployments/{_quote(name)}", wrap=Deployment)

    def update_deployment(self, name, wait=True, timeout=300, **changes):
        d = self._json("PATCH", f"/api/v1/deployments/{_quote(name)}", changes, wrap=Deployment)
        return self.wait_deployment(name, timeout) if wait else d

    def activate(self, name):
        return self._json("POST", f"/api/v1/deployments/{_quote(name)}/activate", wrap=Deployment)

    def deactivate(self, name):
        return self._json("POST", f"/api/v1/deployments/{_quote(name)}/deactivate", wrap=Deployment)

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
        """Predictions through the MLflow scoring protocol (/invocations). A pandas DataFrame is sent as
        dataframe_split and the answer is a DataFrame with its index (one column per output; a model with one
        unnamed output gives a "predictions" column); a list of row dicts is sent as dataframe_records, a dict
        already in an MLflow shape ({"inputs": ...}, ...) as it is, anything else as inputs; these return the
        "predictions" value."""
        payload = _mlflow_payload(data)
        if params:
            payload["params"] = params
        answer = self._request("POST", f"/deployments/{_quote(deployment)}/invocations", _dumps(payload),
                               "application/json", headers={"X-Request-Id": request_id} if request_id else None)
        if _tables.is_frame(data):
            return _tables.frame_from_records(answer["predictions"], index=data.index)
        return answer["predictions"]

    def predict_raw(self, deployment, body):
        """The OCI-style endpoint: body (any JSON value) goes to the model's predict() as it is."""
        return self._json("POST", f"/deployments/{_quote(deployment)}/predict", body)

    def infer(self, deployment, data, version=None, outputs=None, request_id=None, parameters=None):
        """Open Inference Protocol (V2) inference. data is a DataFrame (one tensor per column; the answer is a
        DataFrame with its index, one column per output) or the list of V2 input tensors
        ([{"name", "shape", "datatype", "data"}]; the answer is the V2 response). version selects a version
        of the deployment (a canary's)."""
        inputs = _tables.v2_inputs(data) if _tables.is_frame(data) else list(data)
        body = {"inputs": inputs}
        if request_id:
            body["id"] = request_id
        if outputs:
            body["outputs"] = [{"name": o} for o in outputs]
        if parameters:
            body["parameters"] = parameters
        path = f"/v2/models/{_quote(deployment)}"
        if version is not None:
            path += f"/versions/{int(version)}"
        answer = self._json("POST", path + "/infer", body)
        if _tables.is_frame(data):
            return _tables.v2_outputs_frame(answer["outputs"], index=data.index)
        return answer

    def model_metadata(self, deployment, version=None):
        """The V2 model metadata of a deployment: its inputs and outputs with datatypes and shapes."""
        path = f"/v2/models/{_quote(deployment)}" + (f"/versions/{int(version)}" if version is not None else "")
        return Record(self._json("GET", path))

    # ---- monitoring ----

    def feedback(self, deployment, records):
        """Ground truth for captured predictions: a list of {"request_id", "row", "label" | "value"} (the
        request id is what predict(..., request_id=...) sent, or the X-Request-Id the server gave), or a
        DataFrame with those columns."""
        if _tables.is_frame(records):
            records = records.to_dict(orient="records")
        return Record(self._json("POST", f"/api/v1/deployments/{_quote(deployment)}/feedback", list(records)))

    def drift(self, deployment, since=None, to=None, version=None):
        return Record(self._json("GET", f"/api/v1/deployments/{_quote(deployment)}/drift",
                                 query={"from": since, "to": to, "version": version}))

    def drift_windows(self, deployment, since=None, to=None):
        return self._items(f"/api/v1/deployments/{_quote(deployment)}/drift/windows", {"from": since, "to": to},
                           columns=("from", "to", "rows", "drift_share", "dataset_drift", "baseline"))

    def metrics(self, deployment, since="1h", to=None):
        return Record(self._json("GET", f"/api/v1/deployments/{_quote(deployment)}/metrics",
                                 query={"from": since, "to": to}))

    def performance(self, deployment, since=None, to=None, window=None):
        return self._items(f"/api/v1/deployments/{_quote(deployment)}/performance",
                           {"from": since, "to": to, "window": window})

    def logs(self, deployment, since=None, kind=None, limit=None):
        return Record(self._json("GET", f"/api/v1/deployments/{_quote(deployment)}/logs",
                                 query={"since": since, "kind": kind, "limit": limit}))

    def monitoring(self, deployment):
        return Record(self._json("GET", f"/api/v1/deployments/{_quote(deployment)}/monitoring"))

    def set_monitoring(self, deployment, **settings):
        return Record(self._json("PUT", f"/api/v1/deployments/{_quote(deployment)}/monitoring", settings))

    def captures(self, deployment, since=None, to=None, version=None):
        """The captured rows with their ground truth, as a DataFrame (time, request_id, version, row, the input
        columns, output.NAME per output, label, value); the last 24 hours by default."""
        text = self._request("GET", f"/api/v1/deployments/{_quote(deployment)}/captures", raw=True,
                             query={"from": since, "to": to, "version": version, "format": "jsonl"}).decode()
        return _tables.read_jsonl_frame(text)

    def shadow_report(self, deployment, since=None, to=None):
        return Record(self._json("GET", f"/api/v1/deployments/{_quote(deployment)}/shadow",
                                 query={"from": since, "to": to}))

    def alerts(self, deployment):
        return self._items(f"/api/v1/deployments/{_quote(deployment)}/alerts",
                           columns=("id", "name", "metric", "op", "threshold", "window", "state", "value"))

    def create_alert(self, deployment, name, metric, op, threshold, window="5m", webhook=None, action=None):
        """An alert rule: metric ("drift_share", "requests", "error_rate", "latency_p99_ms", "accuracy", ...)
        op ("above" or "below") threshold over the trailing window, e.g. create_alert("churn-api", "slow",
        "latency_p99_ms", "above", 200). webhook={"url", "secret"} is posted each transition; action={"kind":
        "pipeline", "target": NAME} starts a pipeline when it fires."""
        body = {"name": name, "metric": metric, "op": op, "threshold": threshold, "window": window}
        if webhook:
            body["webhook"] = webhook
        if action:
            body["action"] = action
        return Record(self._json("POST", f"/api/v1/deployments/{_quote(deployment)}/alerts", body))

    def delete_alert(self, deployment, rule_id):
        return self._json("DELETE", f"/api/v1/deployments/{_quote(deployment)}/alerts/{_quote(rule_id)}")

    def evaluate_alerts(self, deployment):
        return self._items_from(self._json("POST", f"/api/v1/deployments/{_quote(deployment)}/alerts/evaluate"),
                                ("id", "name", "metric", "op", "threshold", "state", "value"))

    def alert_history(self, deployment, limit=None):
        return self._items(f"/api/v1/deployments/{_quote(deployment)}/alerts/history", {"limit": limit},
                           columns=("at", "rule", "state", "value", "threshold", "message"))

    @staticmethod
    def _items_from(answer, columns):
        items = answer["items"] if isinstance(answer, dict) and "items" in answer else answer
        return Table([Record(i) for i in items or []], columns)

    # ---- batch predictions ----

    def upload_file(self, data, name=None):
        """Upload an input file for batch predictions: a path, or a DataFrame (sent as CSV). Returns the file
        ({"id", ...}) to name as input={"file": id}."""
        if _tables.is_frame(data):
            body, name = data.to_csv(index=False).encode(), name or "input.csv"
        else:
            with open(data, "rb") as f:
                body = f.read()
            name = name or os.path.basename(data)
        return Record(self._request("POST", "/api/v1/files", body, "application/octet-stream", query={"name": name}))

    def batch_predict(self, model, input, output=None, version=None, alias=None, wait=False, timeout=3600, **spec):
        """Start a batch prediction. input is a DataFrame (uploaded as CSV), {"file": id}, {"format", "path"}
        under the server's import folder, or {"connection", "query"}; output defaults to a Parquet file kept by
        the server ({"format": "csv"}, or {"connection", "table"}). Other fields (key_columns, chunk_size,
        on_bad_rows, ...) go in spec. With wait, returns the finished run."""
        model, version, alias = _ref(model, version, alias)
        if _tables.is_frame(input):
            input = {"file": self.upload_file(input)["id"], "format": "csv"}
        body = {"model": model, "input": input, "output": output or {"format": "parquet"}, **spec}
        if version is not None:
            body["version"] = int(version)
        if alias:
            body["alias"] = alias
        r = self._json("POST", "/api/v1/batch-predictions", body, wrap=Run)
        return self.wait_batch(r["id"], timeout) if wait else r

    def get_batch(self, run_id):
        return self._json("GET", f"/api/v1/batch-predictions/{_quote(run_id)}", wrap=Run)

    def list_batches(self, state=None):
        return self._items("/api/v1/batch-predictions", {"state": state}, wrap=Run,
                           columns=("id", "state", "model", "version", "rows_total", "rows_done", "rows_skipped",
                                    "created_at", "finished_at", "reason"))

    def wait_batch(self, run_id, timeout=3600):
        return Run(self._wait(f"/api/v1/batch-predictions/{_quote(run_id)}", timeout))

    def cancel_batch(self, run_id):
        return self._json("POST", f"/api/v1/batch-predictions/{_quote(run_id)}/cancel", wrap=Run)

    def delete_batch(self, run_id):
        return self._json("DELETE", f"/api/v1/batch-predictions/{_quote(run_id)}")

    def batch_output(self, run_id, path=None):
        """A finished batch prediction's output file: written to path when given (returns path), else read as
        a DataFrame (CSV, or Parquet when pyarrow is installed) or returned as bytes without pandas."""
        data = self._request("GET", f"/api/v1/batch-predictions/{_quote(run_id)}/output", raw=True)
        if path:
            tmp = f"{path}.part-{uuid.uuid4().hex[:8]}"
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
            return path
        pd = _tables.pandas()
        if pd is None:
            return data
        if data[:4] == b"PAR1":
            return pd.read_parquet(io.BytesIO(data))
        return pd.read_csv(io.BytesIO(data))

    # ---- jobs, pipelines and schedules ----

    def create_job(self, name, path, entrypoint, args=None, env=None, **spec):
        """A job: path is a script or a project folder (sent as a tar.gz), entrypoint the file to run in it
        (a .py runs with the server's Python); max_runtime_seconds, limits, description go in spec."""
        body = {"name": name, "entrypoint": entrypoint, **spec}
        if args is not None:
            body["args"] = list(args)
        if env:
            body["env"] = dict(env)
        artifact, filename = _artifact_of(path)
        data, ctype = _multipart([("spec", None, "application/json", _dumps(body)),
                                  ("artifact", filename, "application/octet-stream", artifact)])
        return Record(self._request("POST", "/api/v1/jobs", data, ctype))

    def get_job(self, name):
        return Record(self._json("GET", f"/api/v1/jobs/{_quote(name)}"))

    def list_jobs(self):
        return self._items("/api/v1/jobs", wrap=Record, columns=("name", "kind", "entrypoint", "description",
                                                                "created_at"))

    def delete_job(self, name):
        return self._json("DELETE", f"/api/v1/jobs/{_quote(name)}")

    def create_pipeline(self, definition, path=None):
        """A pipeline from its definition (YAML text, or a dict sent as JSON), with path (a folder or file)
        as the artifact its script steps run from."""
        text = _dumps(definition) if isinstance(definition, dict) else definition.encode()
        ctype = "application/json" if isinstance(definition, dict) else "application/yaml"
        if path is None:
            return Record(self._request("POST", "/api/v1/pipelines", text, ctype))
        artifact, filename = _artifact_of(path)
        data, mp = _multipart([("pipeline", None, ctype, text),
                               ("artifact", filename, "application/octet-stream", artifact)])
        return Record(self._request("POST", "/api/v1/pipelines", data, mp))

    def get_pipeline(self, name):
        return Record(self._json("GET", f"/api/v1/pipelines/{_quote(name)}"))

    def list_pipelines(self):
        return self._items("/api/v1/pipelines", wrap=Record, columns=("name", "description", "created_at"))

    def delete_pipeline(self, name):
        return self._json("DELETE", f"/api/v1/pipelines/{_quote(name)}")

    def run_job(self, job, args=None, env=None, wait=False, timeout=3600):
        body = {}
        if args is not None:
            body["args"] = list(args)
        if env:
            body["env"] = dict(env)
        r = self._json("POST", f"/api/v1/jobs/{_quote(job)}/runs", body, wrap=Run)
        return self.wait_job_run(r["id"], timeout) if wait else r

    def get_job_run(self, run_id):
        return self._json("GET", f"/api/v1/job-runs/{_quote(run_id)}", wrap=Run)

    def list_job_runs(self, job=None, state=None):
        return self._items("/api/v1/job-runs", {"job": job, "state": state}, wrap=Run,
                           columns=("id", "job", "state", "exit_code", "reason", "created_at", "finished_at"))

    def wait_job_run(self, run_id, timeout=3600):
        return Run(self._wait(f"/api/v1/job-runs/{_quote(run_id)}", timeout))

    def cancel_job_run(self, run_id):
        return self._json("POST", f"/api/v1/job-runs/{_quote(run_id)}/cancel", wrap=Run)

    def job_logs(self, run_id):
        return self._request("GET", f"/api/v1/job-runs/{_quote(run_id)}/logs", raw=True).decode()

    def run_pipeline(self, pipeline, params=None, wait=False, timeout=3600):
        r = self._json("POST", f"/api/v1/pipelines/{_quote(pipeline)}/runs", {"params": params or {}}, wrap=Run)
        return self.wait_pipeline_run(r["id"], timeout) if wait else r

    def get_pipeline_run(self, run_id):
        return self._json("GET", f"/api/v1/pipeline-runs/{_quote(run_id)}", wrap=Run)

    def list_pipeline_runs(self, pipeline=None):
        return self._items("/api/v1/pipeline-runs", {"pipeline": pipeline}, wrap=Run,
                           columns=("id", "pipeline", "state", "trigger", "reason", "created_at", "finished_at"))

    def wait_pipeline_run(self, run_id, timeout=3600):
        return Run(self._wait(f"/api/v1/pipeline-runs/{_quote(run_id)}", timeout))

    def cancel_pipeline_run(self, run_id):
        return self._json("POST", f"/api/v1/pipeline-runs/{_quote(run_id)}/cancel", wrap=Run)

    def retry_pipeline_run(self, run_id):
        return self._json("POST", f"/api/v1/pipeline-runs/{_quote(run_id)}/retry", wrap=Run)

    def create_schedule(self, name, cron, target, **spec):
        """A schedule: cron (5 fields, or @daily...) and target ({"kind": "job" | "pipeline" | "batch", "name":
        ...}); timezone, args, env, params, batch, concurrency_policy, catch_up go in spec."""
        return Record(self._json("POST", "/api/v1/schedules", {"name": name, "cron": cron, "target": target, **spec}))

    def get_schedule(self, name):
        return Record(self._json("GET", f"/api/v1/schedules/{_quote(name)}"))

    def list_schedules(self):
        return self._items("/api/v1/schedules", wrap=Record, columns=("name", "cron", "timezone", "target", "next_run"))

    def delete_schedule(self, name):
        return self._json("DELETE", f"/api/v1/schedules/{_quote(name)}")

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
        if not isinstance(p, dict):
            raise ValueError("not a problem document")
        return SlipwayError(e.code, p.get("detail") or p.get("title") or str(e), p.get("code", ""), p)
    except ValueError:
        return SlipwayError(e.code, body.decode(errors="replace").strip() or str(e))


def _mlflow_payload(data):
    if _tables.is_frame(data):
        split = json.loads(data.to_json(orient="split", index=False, date_format="iso"))
        return {"dataframe_split": {"columns": split["columns"], "data": split["data"]}}
    if isinstance(data, dict):
        return dict(data)
    if isinstance(data, list) and data and isinstance(data[0], dict):
        return {"dataframe_records": data}
    return {"inputs": data}


def _baseline_body(data):
    """A baseline sample as (bytes, content type, file name): a DataFrame as CSV, or a .csv / .parquet file."""
    if _tables.is_frame(data):
        return data.to_csv(index=False).encode(), "text/csv", "baseline.csv"
    path = os.fspath(data)
    ctype = "application/vnd.apache.parquet" if path.lower().endswith(".parquet") else "text/csv"
    with open(path, "rb") as f:
        return f.read(), ctype, os.path.basename(path)


def _artifact_of(path, exclude=()):
    """A folder as a tar.gz, or a file as it is: (bytes, file name)."""
    if os.path.isdir(path):
        return _tar_gz(path, exclude), os.path.basename(os.path.abspath(path)) + ".tar.gz"
    with open(path, "rb") as f:
        return f.read(), os.path.basename(path)


def _tar_gz(root, skip_top=()):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d not in _SKIP)
            for name in sorted(filenames):
                if name in _SKIP or name.endswith(".pyc"):
                    continue
                full = os.path.join(dirpath, name)
                rel = os.path.relpath(full, root).replace(os.sep, "/")
                if rel in skip_top or os.path.islink(full) or not os.path.isfile(full):
                    continue
                tar.add(full, arcname=rel, recursive=False)
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
