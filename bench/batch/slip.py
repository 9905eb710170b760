"""Start one batch prediction through the API and follow it closely (every 20 ms), for bench/batch/run.sh.

    python3 slip.py --out FILE --model M --path P --parallelism N --chunk-size N (--table T --connection C | --format F)

Environment: SLIPWAY_URL, SLIPWAY_TOKEN. Writes the run's final JSON with one more field, "bench":
{"first_chunk_s": seconds from created_at to the first committed rows (replica start-up, the first chunk),
 "first_rows": rows done at that moment, "steady_rows_per_s": rows per second from then to finished_at}.
The CLI polls once a second, too coarse for a two-second run; the server's own timestamps are exact.
"""
import argparse
import datetime
import json
import os
import sys
import time
import urllib.request


def call(method, path, body=None):
    req = urllib.request.Request(os.environ["SLIPWAY_URL"] + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Authorization": "Bearer " + os.environ["SLIPWAY_TOKEN"],
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.load(r)


def parse(ts):
    """RFC 3339 with up to nanoseconds (Go) -> aware datetime (Python takes microseconds)."""
    ts = ts.replace("Z", "+00:00")
    head, _, tz = ts.partition("+")
    if "." in head:
        sec, frac = head.split(".")
        head = sec + "." + frac[:6].ljust(6, "0")
    return datetime.datetime.fromisoformat(head + "+" + (tz or "00:00"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--path", required=True)
    ap.add_argument("--parallelism", type=int, required=True)
    ap.add_argument("--chunk-size", type=int, required=True)
    ap.add_argument("--table")
    ap.add_argument("--connection")
    ap.add_argument("--format")
    a = ap.parse_args()
    output = {"format": a.format} if a.format else {"connection": a.connection, "table": a.table}
    run = call("POST", "/api/v1/batch-predictions", {
        "model": a.model, "alias": "champion", "input": {"format": "parquet", "path": a.path}, "output": output,
        "key_columns": ["customer_id"], "chunk_size": a.chunk_size, "parallelism": a.parallelism})
    first_at, first_rows = None, 0
    while run["state"] not in ("SUCCEEDED", "FAILED", "CANCELED"):
        time.sleep(0.02)
        run = call("GET", "/api/v1/batch-predictions/" + run["id"])
        if first_at is None and run["rows_done"] > 0:
            first_at, first_rows = datetime.datetime.now(datetime.timezone.utc), run["rows_done"]
    if run["state"] != "SUCCEEDED":
        sys.exit("slip.py: run %s is %s: %s" % (run["id"], run["state"], run.get("reason")))
    created, finished = parse(run["created_at"]), parse(run["finished_at"])
    first_at = first_at or finished
    rest = (finished - first_at).total_seconds()
    run["bench"] = {"first_chunk_s": round((first_at - created).total_seconds(), 3), "first_rows": first_rows,
                    "steady_rows_per_s": round((run["rows_done"] - first_rows) / rest) if rest > 0.05 else None}
    with open(a.out, "w") as f:
        json.dump(run, f)


if __name__ == "__main__":
    main()
