"""Retrain the churn classifier on what the live deployment saw: the closed loop's `train` step.

    python3 closed-loop/train_on_captures.py --deployment churn-api --out DIR [--window 10m]
        [--since step-start|ISO-TIME] [--min-rows 1000] [--sabotage none|errors|disagree]

Reads the deployment's captured requests of the last --window, but none from before --since, together with
the ground truth the application sent back for them (GET /api/v1/deployments/NAME/captures?format=csv:
inputs, outputs and `label`), keeps the labelled rows, and waits until there are --min-rows of them. Those
rows are the training data: it hands them to retrain/train.py, which writes the model directory, holdout.csv
(its test split, what the evaluate step scores both versions on) and baseline.csv (the drift baseline stored
at registration).

`--since step-start` trains only on what the deployment sees after the step started, that is after the alert
that started the run fired: the world as it is now. Without it, the window would still be mostly traffic from
before the change when a drift alert fires seconds after it, and the candidate, trained on a mix, would be
no better than the champion on its own held-out rows (on 650 old and 200 new rows, 6 runs in 40 failed the
held-out gate; on 1000 new rows none of 100 did: closed-loop/gate_noise.py, the example's README).

--sabotage makes a deliberately bad candidate for the example's failure runs, with a defect that only live
traffic shows (single-row requests; the held-out batch scores many rows at once, so it passes the evaluate
gate and reaches the rollout): `errors` fails requests for customers aged 70 or more, `disagree` answers the
opposite class. The rollout's shadow step must catch each one.

Needs only the environment every Slipway run gets: SLIPWAY_URL (or SLIPWAY_URL_FILE), SLIPWAY_TOKEN and, for
an https server, SLIPWAY_CA_CERT.
"""

import argparse
import csv
import datetime
import io
import json
import os
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.realpath(__file__))
FEATURES = ["age", "tenure_months", "monthly_charges", "plan", "support_calls"]

SABOTAGE = {
    "errors": '''

_trained_predict = predict


def predict(data, model=None):
    # Deliberately bad candidate (closed-loop example): fails single customers aged 70 or more.
    frame = _frame(data)
    if len(frame) == 1 and frame["age"].iloc[0] >= 70:
        raise RuntimeError("sabotaged candidate: cannot score a customer aged 70 or more")
    return _trained_predict(data, model)
''',
    "disagree": '''

_trained_predict = predict


def predict(data, model=None):
    # Deliberately bad candidate (closed-loop example): answers the opposite class to single-row requests.
    out = _trained_predict(data, model)
    if len(out["prediction"]) == 1:
        out = {"prediction": [1 - p for p in out["prediction"]], "probability": [1 - p for p in out["probability"]]}
    return out
''',
}


def duration(text):
    units = {"s": 1, "m": 60, "h": 3600}
    if text[-1:] in units:
        return float(text[:-1]) * units[text[-1]]
    return float(text)


def server():
    url = os.environ.get("SLIPWAY_URL", "")
    url_file = os.environ.get("SLIPWAY_URL_FILE")
    if url_file and os.path.exists(url_file):
        with open(url_file) as f:
            url = f.read().strip() or url
    if not url:
        sys.exit("SLIPWAY_URL is not set: run this as a Slipway pipeline step")
    ctx = None
    if os.environ.get("SLIPWAY_CA_CERT"):
        ctx = ssl.create_default_context(cafile=os.environ["SLIPWAY_CA_CERT"])
    return url.rstrip("/"), ctx


def parse_since(text):
    """The earliest capture time to train on: step-start (now), an ISO 8601 time, or none (the epoch)."""
    if text == "step-start":
        return datetime.datetime.now(datetime.timezone.utc)
    if not text:
        return datetime.datetime.fromtimestamp(0, datetime.timezone.utc)
    try:
        when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        sys.exit("--since %r: want step-start or an ISO 8601 time such as 2026-12-07T16:22:55Z" % text)
    return when if when.tzinfo else when.replace(tzinfo=datetime.timezone.utc)


def labelled_captures(deployment, window, since):
    url, ctx = server()
    now = datetime.datetime.now(datetime.timezone.utc)
    start = max(now - datetime.timedelta(seconds=window), since)
    q = urllib.parse.urlencode({"from": start.isoformat(), "to": now.isoformat(), "format": "csv"})
    req = urllib.request.Request("%s/api/v1/deployments/%s/captures?%s" % (url, urllib.parse.quote(deployment), q),
                                 headers={"Authorization": "Bearer " + os.environ.get("SLIPWAY_TOKEN", "")})
    with urllib.request.urlopen(req, timeout=60, context=ctx) as resp:
        text = resp.read().decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    if rows:
        missing = [c for c in FEATURES + ["label"] if c not in rows[0]]
        if missing:
            sys.exit("the captures lack %s (columns: %s)" % (", ".join(missing), ", ".join(rows[0])))
    return [r for r in rows if r["label"] != ""], len(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--deployment", required=True)
    ap.add_argument("--out", default=os.environ.get("SLIPWAY_OUTPUT_DIR", "out"))
    ap.add_argument("--window", default="10m", help="captures of this last span (e.g. 30s, 10m)")
    ap.add_argument("--since", default="", help="none captured before this: step-start or an ISO 8601 time")
    ap.add_argument("--min-rows", type=int, default=1000, help="wait until the window holds this many labelled rows")
    ap.add_argument("--wait", default="240s", help="give up waiting for labelled rows after this long")
    ap.add_argument("--sabotage", choices=["none", "errors", "disagree"], default="none")
    args = ap.parse_args()

    since, span = parse_since(args.since), "the last %s" % args.window
    if args.since:
        span += " since %s" % since.isoformat(timespec="seconds")
    deadline = time.monotonic() + duration(args.wait)
    last_report = 0.0
    while True:
        rows, captured = labelled_captures(args.deployment, duration(args.window), since)
        if len(rows) >= args.min_rows:
            break
        if time.monotonic() > deadline:
            sys.exit("only %d of the %d captured rows of %s have ground truth (need %d)" % (
                len(rows), captured, span, args.min_rows))
        if time.monotonic() - last_report >= 5:
            print("waiting for ground truth: %d labelled of %d captured rows of %s (need %d)" % (
                len(rows), captured, span, args.min_rows), flush=True)
            last_report = time.monotonic()
        time.sleep(1)
    print("training on %d labelled captures of %s (%s, %d captured)" % (len(rows), args.deployment, span, captured))

    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    data = os.path.join(tempfile.mkdtemp(), "captures.csv")  # not in the output folder: not part of the model
    with open(data, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(FEATURES + ["churned"])
        for r in rows:
            w.writerow([r[c] for c in FEATURES] + [int(float(r["label"]))])
    subprocess.run([sys.executable, os.path.join(HERE, "..", "retrain", "train.py"), "--data", data, "--out", out], check=True)

    meta_path = os.path.join(out, "metadata.json")
    with open(meta_path) as f:
        meta = json.load(f)
    meta["description"] = "Churn classifier retrained on %d labelled captures of %s." % (len(rows), args.deployment)
    meta["tags"].update({"example": "closed-loop", "trained_on": "captures", "sabotage": args.sabotage})
    with open(meta_path, "w") as f:
        json.dump(meta, f, indent=2)
    if args.sabotage != "none":
        with open(os.path.join(out, "score.py"), "a") as f:
            f.write(SABOTAGE[args.sabotage])
        print("sabotaged the candidate: %s" % args.sabotage)


if __name__ == "__main__":
    main()
