"""Markdown report of bench/batch/run.sh from the run's result files (stdout).

Slipway's time for a run is finished_at - created_at on the server's clock: replica start-up, reading,
scoring, writing, the output's finish (a file's merge) included. "After start-up" is the rate from the first
committed chunk to the end (slip.py follows the run every 20 ms): what the run sustains once its replicas
are up. Ratios are against baselines measured in the same run; with --repeat the best run counts (on a
shared machine noise only ever slows a run down) and every run's figure is listed.
"""
import argparse
import json
import os
import platform
import subprocess

from slip import parse


def load(d, name):
    with open(os.path.join(d, name)) as f:
        return json.load(f)


class Run:
    def __init__(self, d, name):
        self.run = load(d, name + ".json")
        if self.run["state"] != "SUCCEEDED":
            raise SystemExit("report: run %s is %s: %s" % (name, self.run["state"], self.run.get("reason")))
        self.rows = self.run["rows_done"]
        self.s = (parse(self.run["finished_at"]) - parse(self.run["created_at"])).total_seconds()
        self.rps = self.rows / self.s
        self.steady = self.run["bench"]["steady_rows_per_s"] or self.rps
        self.startup = self.run["bench"]["first_chunk_s"]
        self.cpu = load(d, name + ".cpu.json")


def cpu_cell(r, rows):
    per = 1e6 / rows
    c = r.cpu
    return "%.2f (server %.2f, replicas %.2f, PostgreSQL %.2f)" % (
        per * (c["server"] + c["replica"] + c["postgres"]), per * c["server"], per * c["replica"], per * c["postgres"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", required=True)
    ap.add_argument("--rows", type=int, required=True)
    ap.add_argument("--chunk", type=int, required=True)
    ap.add_argument("--parallelism", type=int, required=True)
    ap.add_argument("--repeat", type=int, required=True)
    ap.add_argument("--forest", type=int, default=0)
    ap.add_argument("--load", default="")
    a = ap.parse_args()
    d = a.results

    b = load(d, "baseline.json")
    pure, copy = b["pure_predict_rows_per_s"], b["copy_only_rows_per_s"]
    ceiling = 1 / (1 / pure + 1 / copy)
    def best(kind):
        runs = [Run(d, "%s-%d" % (kind, i)) for i in range(1, a.repeat + 1)]
        return max(runs, key=lambda r: r.rps), runs

    pg, pg_all = best("pg")
    pq, pq_all = best("parquet")
    csv, csv_all = best("csv")
    all_rps = lambda runs: ", ".join("%s" % format(round(r.rps), ",") for r in runs)

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "internal/batch", "internal/modelruntime/python", "bench/batch"],
                           capture_output=True, text=True).stdout.strip()
    L = [
        "# Batch predictions benchmark", "",
        "%s rows of the churn features (Parquet); chunk %d, parallelism %d; %d CPUs, %s, commit %s%s; load average at the end %s."
        % (format(a.rows, ","), a.chunk, a.parallelism, os.cpu_count(), platform.platform(), commit,
           " (+ local changes)" if dirty else "", a.load), "",
        "## Logistic regression (examples/sklearn-churn, ~%.1f µs/row)" % (1e6 / pure), "",
        "| what | rows/s | CPU s per 1M rows |", "|---|---:|---|",
        "| Slipway → PostgreSQL table, end to end (best of %d: %s) | %s | %s |" % (a.repeat, all_rps(pg_all), format(round(pg.rps), ","), cpu_cell(pg, pg.rows)),
        "| Slipway → PostgreSQL, after start-up (first chunk committed after %.2f s), same run | %s | |" % (pg.startup, format(round(pg.steady), ",")),
        "| Slipway → Parquet file, end to end (%s) | %s | %s |" % (all_rps(pq_all), format(round(pq.rps), ","), cpu_cell(pq, pq.rows)),
        "| Slipway → Parquet file, after start-up (%.2f s), same run | %s | |" % (pq.startup, format(round(pq.steady), ",")),
        "| Slipway → CSV file, end to end (%s) | %s | %s |" % (all_rps(csv_all), format(round(csv.rps), ","), cpu_cell(csv, csv.rows)),
        "| Python script: read_csv + predict() + COPY | %s | |" % format(b["pipeline_rows_per_s"], ","),
        "| COPY alone (psql, CSV, nothing else running): the database's ceiling | %s | |" % format(copy, ","),
        "| pure predict(), chunks of %d | %s | |" % (a.chunk, format(pure, ",")),
        "| pure predict(), one call on all rows | %s | |" % format(b["pure_predict_one_call_rows_per_s"], ","),
        "| zero-overhead pipeline ceiling: predict and COPY back to back, 1/(1/predict + 1/COPY) | %s | |" % format(round(ceiling), ","),
        "",
        "Ratios (target: Slipway ≥ 0.8× pure predict):", "",
        "- Slipway → PostgreSQL / pure predict: **%.2f×** end to end, %.2f× after start-up" % (pg.rps / pure, pg.steady / pure),
        "- Slipway → PostgreSQL / zero-overhead ceiling: **%.2f×** end to end, %.2f× after start-up" % (pg.rps / ceiling, pg.steady / ceiling),
        "- Slipway → PostgreSQL / COPY alone: %.2f×; / the Python script: %.2f×" % (pg.rps / copy, pg.rps / b["pipeline_rows_per_s"]),
        "- Slipway → Parquet file / pure predict: **%.2f×** end to end, %.2f× after start-up; → CSV file: %.2f×, %.2f×"
        % (pq.rps / pure, pq.steady / pure, csv.rps / pure, csv.steady / pure),
        "",
        "Python script phases: read %s s, predict %s s, write %s s (of which COPY %s s)."
        % (b["read_s"], b["predict_s"], b["write_s"], b["copy_only_s"]),
    ]
    if a.forest:
        fb = load(d, "forest-baseline.json")
        fpure = fb["pure_predict_rows_per_s"]
        f1, fpg = Run(d, "forest-1"), Run(d, "forest-pg")
        L += [
            "", "## Model-bound: RandomForest (train.py --model forest, ~%.0f µs/row), the same rows" % (1e6 / fpure), "",
            "| what | rows/s | CPU s per 1M rows |", "|---|---:|---|",
            "| Slipway → Parquet file, parallelism 1 (one replica, as one Python process), end to end | %s | %s |" % (format(round(f1.rps), ","), cpu_cell(f1, f1.rows)),
            "| the same after start-up (%.2f s) | %s | |" % (f1.startup, format(round(f1.steady), ",")),
            "| Slipway → PostgreSQL, parallelism %d, end to end | %s | %s |" % (a.parallelism, format(round(fpg.rps), ","), cpu_cell(fpg, fpg.rows)),
            "| pure predict(), chunks of %d | %s | |" % (a.chunk, format(fpure, ",")),
            "",
            "- parallelism 1 / pure predict: **%.2f×** end to end, %.2f× after start-up (the overhead claim: one replica vs one process)"
            % (f1.rps / fpure, f1.steady / fpure),
            "- parallelism %d into PostgreSQL / pure predict: **%.2f×** (replicas score in parallel)" % (a.parallelism, fpg.rps / fpure),
        ]
    print("\n".join(L))


if __name__ == "__main__":
    main()
