"""Baseline of the batch benchmark: what one Python script does without Slipway.

pandas read_csv (Debian has no pyarrow for Parquet) + the example model's own predict() (score.py, the same
function Slipway's replicas call) + COPY into PostgreSQL through a psql subprocess (psycopg2 is not installed
on Debian by default). It also measures pure predict() throughput in the same process: the data already in
memory, scored chunk by chunk (the chunk size Slipway uses) and in one call.

    python3 baseline.py --csv customers.csv --model-dir examples/sklearn-churn --psql "psql -h SOCK -p PORT -U postgres -d bench" --chunk-size 10000
    python3 baseline.py --csv customers.csv --model-dir DIR --psql - --predict-only     (pure predict() only)

Prints one JSON object on stdout.
"""
import argparse
import datetime
import importlib.util
import io
import json
import os
import shlex
import subprocess
import sys
import time

import pandas as pd

FEATURES = ["age", "tenure_months", "monthly_charges", "plan", "support_calls"]


def load_score(model_dir):
    spec = importlib.util.spec_from_file_location("score", os.path.join(model_dir, "score.py"))
    score = importlib.util.module_from_spec(spec)
    sys.path.insert(0, model_dir)
    spec.loader.exec_module(score)
    return score


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--csv", required=True)
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--psql", required=True, help="psql command line (connection options included)")
    ap.add_argument("--chunk-size", type=int, default=10000)
    ap.add_argument("--table", default="baseline_scores")
    ap.add_argument("--predict-only", action="store_true",
                    help="read and pure predict() in chunks only: no one-call predict, no COPY (slow models)")
    a = ap.parse_args()

    score = load_score(a.model_dir)
    model = score.load_model()

    t0 = time.perf_counter()
    df = pd.read_csv(a.csv)
    t_read = time.perf_counter() - t0
    n = len(df)

    # Pure predict(): data in memory, chunk by chunk, nothing else.
    t1 = time.perf_counter()
    preds, probs = [], []
    for lo in range(0, n, a.chunk_size):
        out = score.predict(df.iloc[lo:lo + a.chunk_size][FEATURES], model=model)
        preds.extend(out["prediction"])
        probs.extend(out["probability"])
    t_pred = time.perf_counter() - t1
    if a.predict_only:
        print(json.dumps({"rows": n, "read_s": round(t_read, 3), "predict_s": round(t_pred, 3),
                          "pure_predict_rows_per_s": round(n / t_pred)}))
        return
    t1b = time.perf_counter()
    score.predict(df[FEATURES], model=model)
    t_pred_one = time.perf_counter() - t1b

    # Write: the same columns Slipway writes, COPY through psql.
    t2 = time.perf_counter()
    out = pd.DataFrame({"customer_id": df["customer_id"], "prediction": preds, "probability": probs})
    out["model"] = "churn"
    out["model_version"] = 1
    out["batch_id"] = "baseline"
    out["scored_at"] = datetime.datetime.now(datetime.timezone.utc).isoformat()
    psql = shlex.split(a.psql)
    subprocess.run(psql + ["-v", "ON_ERROR_STOP=1", "-q", "-c",
                           "DROP TABLE IF EXISTS %s; CREATE TABLE %s (customer_id BIGINT, prediction BIGINT, probability DOUBLE PRECISION, "
                           "model TEXT, model_version BIGINT, batch_id TEXT, scored_at TIMESTAMPTZ)" % (a.table, a.table)], check=True)
    buf = io.StringIO()
    out.to_csv(buf, index=False, header=False)
    data = buf.getvalue().encode()
    t3 = time.perf_counter()
    subprocess.run(psql + ["-v", "ON_ERROR_STOP=1", "-q", "-c", "\\copy %s FROM STDIN WITH (FORMAT csv)" % a.table],
                   input=data, check=True)
    t_copy = time.perf_counter() - t3
    t_write = time.perf_counter() - t2
    total = time.perf_counter() - t0

    print(json.dumps({
        "rows": n,
        "read_s": round(t_read, 3), "predict_s": round(t_pred, 3), "write_s": round(t_write, 3), "total_s": round(total, 3),
        "pipeline_rows_per_s": round(n / total),
        "pure_predict_rows_per_s": round(n / t_pred),
        "pure_predict_one_call_rows_per_s": round(n / t_pred_one),
        "copy_only_s": round(t_copy, 3), "copy_only_rows_per_s": round(n / t_copy),
    }))


if __name__ == "__main__":
    main()
