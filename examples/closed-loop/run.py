"""The whole MLOps loop against a running Slipway server, with no human step, time compressed to seconds.

    SLIPWAY_URL=http://127.0.0.1:8080 SLIPWAY_TOKEN=... [SLIPWAY_BIN=bin/slipway] python3 examples/closed-loop/run.py

The server should evaluate alerts every couple of seconds (`slipway server --alert-interval 2s`); the model
examples must be built (examples/build.sh). Python 3 with the standard library only; the CLI does the uploads.

 1. Register churn v1 with its drift baseline as @champion, deploy it following @champion, and stream traffic
    drawn from the training distribution (world.py), sending the ground truth back as feedback.
 2. Shift two features (age, monthly charges; the link between age and churn changes too). The drift alert
    fires and starts the `closed-loop-retrain` pipeline (pipeline.yaml).
 3. The pipeline trains on the labelled captures, registers v2 with its baseline, and scores v2 and the
    champion on held-out data in their runtimes.
 4. It rolls v2 out: shadow → canary 50% → promote. @champion moves; no client request fails.
 5. Twice more with deliberately bad candidates: one that fails a share of requests, one that answers the
    opposite class. Each is rolled back at the shadow step by the gate that concerns it (max_error_rate,
    min_agreement), with the evidence, and the alias stays where it was.

It prints a timeline of what happened and why, checks every step, and exits 1 on the first surprise.
"""

import datetime
import json
import os
import queue
import random
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid

HERE = os.path.dirname(os.path.realpath(__file__))
EXAMPLES = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import world  # noqa: E402

URL = os.environ.get("SLIPWAY_URL", "http://127.0.0.1:8080").rstrip("/")
TOKEN = os.environ.get("SLIPWAY_TOKEN", "")
BIN = os.environ.get("SLIPWAY_BIN", "slipway")
DEPLOYMENT, MODEL, PIPELINE = "churn-api", "churn", "closed-loop-retrain"
START = time.monotonic()


def say(what, why=""):
    line = "%6.1fs  %s" % (time.monotonic() - START, what)
    if why:
        line += "\n         " + why
    print(line, flush=True)


def fail(msg):
    say("FAILED: " + msg)
    sys.exit(1)


def cli(*args):
    env = dict(os.environ, SLIPWAY_URL=URL, SLIPWAY_TOKEN=TOKEN)
    p = subprocess.run([BIN, *args], env=env, capture_output=True, text=True)
    if p.returncode != 0:
        fail("slipway %s: exit %d\n%s%s" % (" ".join(args), p.returncode, p.stdout, p.stderr))
    return p.stdout


def api(method, path, body=None, timeout=60):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(URL + path, data=data, method=method,
                                 headers={"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        fail("%s %s: %d %s" % (method, path, e.code, e.read().decode()))


def wait_for(what, check, timeout=180, every=0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(every)
    fail("gave up waiting for " + what)


class Traffic:
    """Single-row predictions from two clients, drawn from the world as it is, with the truth sent back."""

    def __init__(self):
        self.shifted = False
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.ok, self.failed, self.samples = {}, 0, []
        self.labels = queue.Queue()
        self.threads = [threading.Thread(target=self.client, args=(i,), daemon=True) for i in range(2)]
        self.threads.append(threading.Thread(target=self.feedback, daemon=True))
        for t in self.threads:
            t.start()

    def client(self, seed):
        rng = random.Random(seed)
        while not self.stop.is_set():
            row, churned = world.draw(rng, self.shifted)
            rid = uuid.uuid4().hex
            body = json.dumps({"dataframe_split": {"columns": world.FEATURES, "data": [[row[c] for c in world.FEATURES]]}}).encode()
            req = urllib.request.Request(URL + "/deployments/%s/invocations" % DEPLOYMENT, data=body, method="POST",
                                         headers={"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json", "X-Request-Id": rid})
            try:
                with urllib.request.urlopen(req, timeout=30) as resp:
                    resp.read()
                    version = resp.headers.get("X-Slipway-Model-Version", "?")
                with self.lock:
                    self.ok[version] = self.ok.get(version, 0) + 1
                self.labels.put({"request_id": rid, "row": 0, "label": churned})
            except (urllib.error.URLError, OSError) as e:
                detail = e.read().decode()[:300] if isinstance(e, urllib.error.HTTPError) else str(e)
                with self.lock:
                    self.failed += 1
                    if len(self.samples) < 5:
                        self.samples.append(detail)
            time.sleep(0.01)

    def feedback(self):
        # The application learns whether each customer churned, and tells the server (in batches).
        while not self.stop.is_set():
            time.sleep(0.5)
            batch = []
            while not self.labels.empty() and len(batch) < 5000:
                batch.append(self.labels.get())
            if batch:
                api("POST", "/api/v1/deployments/%s/feedback" % DEPLOYMENT, batch)

    def counts(self):
        with self.lock:
            return dict(self.ok), self.failed, list(self.samples)

    def close(self):
        self.stop.set()
        for t in self.threads:
            t.join()


def items(page):
    """The items of a list answer (a page: {"items": [...], "total": N})."""
    if isinstance(page, dict):
        return page.get("items") or []
    return page or []


def champion():
    return api("GET", "/api/v1/models/%s/aliases/champion" % MODEL)["version"]


def deployment():
    return api("GET", "/api/v1/deployments/%s" % DEPLOYMENT)


def follow_run(run_id):
    """Prints each step of a pipeline run as it ends (and the rollout's decisions as they come); returns the run."""
    shown, decisions = set(), 0
    while True:
        run = api("GET", "/api/v1/pipeline-runs/%s" % run_id)
        for st in run["steps"]:
            out = st.get("outputs") or {}
            if st["name"] == "rollout" and out.get("rollout_id"):
                r = api("GET", "/api/v1/deployments/%s/rollouts/%s" % (DEPLOYMENT, out["rollout_id"]))
                for d in r["decisions"][decisions:]:
                    say("  rollout %s: %s" % (d["action"], d["message"]))
                decisions = len(r["decisions"])
            if st["state"] in ("SUCCEEDED", "FAILED", "SKIPPED", "CANCELED") and st["name"] not in shown:
                shown.add(st["name"])
                say("  step %s %s" % (st["name"], st["state"]), describe(st))
        if run["state"] in ("SUCCEEDED", "FAILED", "CANCELED"):
            return run
        time.sleep(0.5)


def describe(st):
    out = st.get("outputs") or {}
    if st["state"] == "FAILED":
        return st.get("reason", "")
    if st["name"] == "register":
        return "version %s registered %s, with its drift baseline" % (out.get("version"), out.get("state"))
    if st["name"] == "evaluate":
        m = out.get("measured") or {}
        cand, base = m.get("candidate") or {}, m.get("baseline") or {}
        return "on %s held-out rows: candidate v%s ROC AUC %s, accuracy %s; champion v%s ROC AUC %s, accuracy %s" % (
            m.get("rows"), out.get("candidate_version"), cand.get("roc_auc"), cand.get("accuracy"),
            out.get("baseline_version"), base.get("roc_auc"), base.get("accuracy"))
    if st["name"] == "rollout":
        return "rollout %s: %s" % (out.get("rollout_id"), out.get("state"))
    return st.get("reason", "")


def rollout_of(run):
    step = next(s for s in run["steps"] if s["name"] == "rollout")
    rid = (step.get("outputs") or {}).get("rollout_id")
    return step, (api("GET", "/api/v1/deployments/%s/rollouts/%s" % (DEPLOYMENT, rid)) if rid else None)


def main():
    say("1. register churn v1 with its baseline as @champion; deploy %s following @champion" % DEPLOYMENT)
    cli("pipelines", "create", os.path.join(HERE, "pipeline.yaml"), "--artifact", EXAMPLES)
    cli("models", "push", os.path.join(EXAMPLES, "sklearn-churn"), "--model", MODEL,
        "--metadata", os.path.join(EXAMPLES, "sklearn-churn", "metadata.json"), "--alias", "champion",
        "--baseline", os.path.join(EXAMPLES, "data", "churn.csv"))
    cli("deploy", DEPLOYMENT, "--model", MODEL + "@champion")
    d = deployment()
    if not d.get("follow_alias") or d["version"] != 1:
        fail("the deployment does not follow @champion on version 1: %s" % d)

    traffic = Traffic()
    wait_for("300 answered requests", lambda: sum(traffic.counts()[0].values()) >= 300)
    # Drift per feature by the Kolmogorov-Smirnov test at p < 0.01: its false alarms do not grow as windows
    # shrink to seconds (a distance threshold such as Wasserstein's 0.1 does, on a few dozen rows).
    settings = api("GET", "/api/v1/deployments/%s/monitoring" % DEPLOYMENT)
    settings["features"] = {f: {"method": "ks", "threshold": 0.01} for f in world.FEATURES if f != "plan"}
    api("PUT", "/api/v1/deployments/%s/monitoring" % DEPLOYMENT, settings)
    cli("alerts", "create", DEPLOYMENT, "--name", "drift", "--metric", "drift_share", "--above", "0.3",
        "--window", "1m", "--start-pipeline", PIPELINE)
    say("   alert rule: drift_share above 0.3 over the last minute (KS test per feature, p < 0.01) starts pipeline %s" % PIPELINE)
    wait_for("300 more answered requests", lambda: sum(traffic.counts()[0].values()) >= 600)
    rules = items(api("GET", "/api/v1/deployments/%s/alerts" % DEPLOYMENT))
    if any(r.get("state") == "firing" for r in rules):
        fail("the drift alert fired on traffic from the training distribution: %s" % rules)
    ok, failed, _ = traffic.counts()
    say("   %d requests from the training distribution answered by v1; drift alert %s" % (sum(ok.values()), rules[0].get("state")))

    say("2. the world changes: customers are older and pay more (age, monthly_charges shifted)")
    shifted_at = datetime.datetime.now(datetime.timezone.utc)
    traffic.shifted = True

    def alert_run():
        runs = items(api("GET", "/api/v1/pipeline-runs?pipeline=%s" % PIPELINE))
        return next((r for r in runs if r.get("trigger", "").startswith("alert:")), None)

    run = wait_for("the drift alert to start the pipeline", alert_run, timeout=240)
    hist = items(api("GET", "/api/v1/deployments/%s/alerts/history?limit=5" % DEPLOYMENT))
    say("   drift alert fired; it started pipeline run %s (trigger %s)" % (run["id"], run["trigger"]),
        hist[0].get("message", "") if hist else "")

    say("3-4. the pipeline retrains on labelled captures, gates on held-out data, rolls out")
    run = follow_run(run["id"])
    if run["state"] != "SUCCEEDED":
        fail("the retraining run ended %s: %s" % (run["state"], run.get("reason")))
    v2 = next(s for s in run["steps"] if s["name"] == "register")["outputs"]["version"]
    d = deployment()
    if champion() != v2 or d["version"] != v2 or not d.get("follow_alias"):
        fail("after the promotion: @champion v%s, deployment %s" % (champion(), d))
    ok, failed, samples = traffic.counts()
    if failed:
        fail("%d client requests failed during the good rollout: %s" % (failed, samples))
    say("   @champion moved to v%s; %s serves it; %d requests answered (by version: %s), none failed" % (
        v2, DEPLOYMENT, sum(ok.values()), ok))

    say("5. the same loop with deliberately bad candidates, started by hand (the drift rule is removed first,")
    say("   so that only these runs roll out)")
    for rule in items(api("GET", "/api/v1/deployments/%s/alerts" % DEPLOYMENT)):
        api("DELETE", "/api/v1/deployments/%s/alerts/%s" % (DEPLOYMENT, rule["id"]))
    for sabotage, gate in (("errors", "max_error_rate"), ("disagree", "min_agreement")):
        before = champion()
        say("   candidate with sabotage=%s: expect a rollback at the %s gate" % (sabotage, gate))
        # These candidates must pass the held-out gate for the rollout's gates to be the ones that stop them.
        # Trained on the same world as the champion, they differ from it by noise either way; more rows (all
        # the labelled traffic since the change) and a wider tolerance keep that noise from failing the run.
        params = {"sabotage": sabotage, "since": shifted_at.isoformat(), "min_rows": 2000, "max_drop": 0.05}
        run = api("POST", "/api/v1/pipelines/%s/runs" % PIPELINE, {"params": params})
        run = follow_run(run["id"])
        step, r = rollout_of(run)
        if run["state"] != "FAILED" or step["state"] != "FAILED" or not r or r["state"] != "ROLLED_BACK":
            fail("sabotage=%s: run %s, rollout step %s %s" % (sabotage, run["state"], step["state"], step.get("reason")))
        failed_decisions = [d for d in r["decisions"] if d["action"] == "failed"]
        checks = [c for c in failed_decisions[-1]["checks"] if not c["passed"]] if failed_decisions else []
        if not checks or checks[0]["gate"] != gate:
            fail("sabotage=%s was rolled back by %s, want the %s gate" % (sabotage, checks, gate))
        if champion() != before or deployment()["version"] != before:
            fail("sabotage=%s moved @champion or the deployment" % sabotage)
        say("   rolled back at the %s gate; @champion stays v%s" % (gate, before), checks[0]["evidence"])

    traffic.close()
    ok, failed, samples = traffic.counts()
    if failed:
        fail("%d client requests failed: %s" % (failed, samples))
    say("done: %d client requests answered (by version: %s), none failed" % (sum(ok.values()), ok))


if __name__ == "__main__":
    main()
