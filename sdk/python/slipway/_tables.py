"""What the API answers, as notebooks like to see it: dicts and lists that render as HTML tables
(`_repr_html_`), and conversions between pandas DataFrames and the API's columns. pandas is optional: without
it, everything stays plain dicts and lists."""

import html
import json
import math

_pandas = []


def pandas():
    """pandas, imported on first use (a script that never touches a DataFrame does not pay for it), or None."""
    if not _pandas:
        try:
            import pandas as pd
        except ImportError:  # the SDK works without pandas; DataFrame conversions are then unavailable
            pd = None
        _pandas.append(pd)
    return _pandas[0]


def is_frame(data):
    """A pandas DataFrame (or a subclass, e.g. geopandas'), told without importing pandas."""
    return any(c.__name__ == "DataFrame" and c.__module__.startswith("pandas") for c in type(data).__mro__)


def _cell(value):
    if isinstance(value, (dict, list)):
        text = json.dumps(value, default=str)
        if len(text) > 120:
            text = text[:117] + "..."
        return html.escape(text)
    return "" if value is None else html.escape(str(value))


def html_table(rows, columns):
    head = "".join("<th>%s</th>" % html.escape(c) for c in columns)
    body = "".join("<tr>%s</tr>" % "".join("<td>%s</td>" % _cell(r.get(c)) for c in columns) for r in rows)
    return "<table><thead><tr>%s</tr></thead><tbody>%s</tbody></table>" % (head, body)


class Record(dict):
    """One API object (a plain dict). In a notebook it shows its main fields as a table."""

    FIELDS = ()
    TITLE = ""

    def _title(self):
        return self.TITLE

    def _repr_html_(self):
        fields = [f for f in self.FIELDS if f in self] or list(self)
        rows = "".join("<tr><th style='text-align:left'>%s</th><td>%s</td></tr>" % (html.escape(f), _cell(self[f]))
                       for f in fields)
        return "<b>%s</b><table>%s</table>%s" % (html.escape(self._title()), rows, self._extra_html())

    def _extra_html(self):
        return ""


class Version(Record):
    """A model version (GET /api/v1/models/{m}/versions/{n})."""

    FIELDS = ("model", "version", "state", "aliases", "runtime", "digest", "size", "created_at", "created_by",
              "description", "metrics")

    def _title(self):
        return "%s version %s" % (self.get("model"), self.get("version"))

    def _extra_html(self):
        checks = self.get("checks") or []
        return html_table(checks, ("id", "passed", "message")) if checks else ""


class Deployment(Record):
    FIELDS = ("name", "state", "reason", "model", "version", "alias", "replicas", "ready_replicas", "engine",
              "canary", "shadow", "created_at", "updated_at")

    def _title(self):
        return "deployment %s" % self.get("name")


class Run(Record):
    """A job run, a pipeline run or a batch prediction."""

    FIELDS = ("id", "job", "pipeline", "model", "version", "state", "reason", "exit_code", "rows_total", "rows_done",
              "rows_skipped", "trigger", "created_at", "started_at", "finished_at", "created_by", "outputs")

    def _title(self):
        kind = "pipeline run" if "pipeline" in self else "batch prediction" if "rows_total" in self else "run"
        return "%s %s" % (kind, self.get("id"))

    def _extra_html(self):
        steps = self.get("steps") or []
        return html_table(steps, ("name", "kind", "state", "attempts", "cached", "reason", "job_run")) if steps else ""


class Table(list):
    """A list of API objects that shows as one table in a notebook; to_frame() makes it a DataFrame."""

    def __init__(self, items, columns):
        super().__init__(items)
        self.columns = tuple(columns)

    def _repr_html_(self):
        cols = [c for c in self.columns if any(c in r for r in self)] or self.columns
        return html_table(self, cols)

    def to_frame(self):
        return _need_pandas("to_frame()").DataFrame(list(self))


def _need_pandas(what):
    pd = pandas()
    if pd is None:
        raise ImportError("%s needs pandas (apt install python3-pandas, or pip install pandas)" % what)
    return pd


def frame_from_records(records, index=None):
    """MLflow's answer as a DataFrame: records → columns; one output's list → a "predictions" column (MLflow's
    own name for an unnamed output); an object of equal-length lists → columns."""
    pd = _need_pandas("a DataFrame answer")
    if isinstance(records, list) and records and isinstance(records[0], dict):
        return pd.DataFrame.from_records(records, index=index)
    if isinstance(records, dict):
        return pd.DataFrame(records, index=index)
    return pd.DataFrame({"predictions": records}, index=index)


_V2_TYPES = {"b": "BOOL", "i1": "INT8", "i2": "INT16", "i4": "INT32", "i8": "INT64", "u1": "UINT8", "u2": "UINT16",
             "u4": "UINT32", "u8": "UINT64", "f2": "FP16", "f4": "FP32", "f8": "FP64"}


def v2_datatype(dtype):
    """The Open Inference Protocol datatype of a numpy/pandas dtype (strings and anything else: BYTES)."""
    kind = getattr(dtype, "kind", "O")
    key = "b" if kind == "b" else "%s%d" % (kind, getattr(dtype, "itemsize", 0))
    return _V2_TYPES.get(key, "BYTES")


def v2_inputs(df):
    """One V2 input tensor per column of a DataFrame (shape [rows])."""
    out = []
    for name in df.columns:
        col = df[name]
        dt = v2_datatype(col.dtype)
        values = col.tolist()
        if dt == "BYTES":
            values = [None if _missing(v) else str(v) for v in values]
        out.append({"name": str(name), "shape": [len(values)], "datatype": dt, "data": values})
    return out


def _missing(v):
    return v is None or (isinstance(v, float) and math.isnan(v))


def v2_outputs_frame(outputs, index=None):
    """V2 outputs as a DataFrame when each is one value per row, else a dict name → (shape, data)."""
    rows = {len(o["data"]) // max(1, math.prod(o["shape"][1:])) if o.get("shape") else len(o["data"]) for o in outputs}
    pd = pandas()
    if pd is not None and all(len(o.get("shape") or [0]) == 1 for o in outputs) and len(rows) == 1:
        return pd.DataFrame({o["name"]: o["data"] for o in outputs}, index=index)
    return {o["name"]: {"shape": o.get("shape"), "datatype": o.get("datatype"), "data": o["data"]} for o in outputs}


def read_jsonl_frame(text):
    """Captures exported as JSON lines → a DataFrame: time, request_id, version, row, one column per input,
    output.NAME per output, label, value."""
    pd = _need_pandas("captures as a DataFrame")
    rows = []
    for line in text.splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        flat = {k: v for k, v in r.items() if k not in ("inputs", "outputs")}
        flat.update(r.get("inputs") or {})
        flat.update({"output." + k: v for k, v in (r.get("outputs") or {}).items()})
        rows.append(flat)
    df = pd.DataFrame(rows)
    if "time" in df.columns:
        df["time"] = pd.to_datetime(df["time"])
    return df
