"""The Python harness alone on a pipe: µs of the harness's CPU per call (docs/benchmarks.md, "Python harness:
CPU per call").

No server, no HTTP: this script starts `harness.py serve`, keeps INFLIGHT tensor requests written ahead of the
answers (as the server pipelines them), and reads the harness process's CPU time from /proc before and after
N calls. What it prints is the harness's own cost per call: frame read, decode, predict(), encode, frame write.

    /usr/bin/python3 bench/pywide/harness_bench.py bench/work/pywide        # the bench/pywide model
    /usr/bin/python3 bench/pywide/harness_bench.py --constant               # predict() returns a constant
    /usr/bin/python3 bench/pywide/harness_bench.py --constant --rows 9      # a batched call of 9 rows
    /usr/bin/python3 bench/pywide/harness_bench.py --constant --harness /tmp/old/harness.py --harness new.py

The request is ROWS rows of COLS FP64 columns (f00, f01, ...), what the server sends for bench/pywide's
dataframe_split body. Each round prints its figure (on stderr); the last line per harness is the median of its
rounds. With several --harness, all are started and their rounds alternate, so the machine's other load (which
moves every figure) falls on each alike: that is how to compare two versions.
"""

import argparse
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np

HERE = os.path.dirname(os.path.realpath(__file__))
HARNESS = os.path.normpath(os.path.join(HERE, "..", "..", "internal", "modelruntime", "python", "harness.py"))

CONSTANT_SCORE = '''
"""harness_bench.py --constant: predict() costs next to nothing, so the figure is the harness's own loop."""
import numpy as np

_ANSWERS = {}


def predict(data: np.ndarray):
    rows = len(data)
    out = _ANSWERS.get(rows)
    if out is None:
        out = _ANSWERS[rows] = np.full(rows, 0.5)
    return out
'''


def tensor_frame(rows, cols):
    """A T frame of `cols` 1-D FP64 columns of `rows` values (docs/worker-protocol.md), written independently of
    the harness's own encoder."""
    parts = [struct.pack("<I", cols)]
    for j in range(cols):
        name = ("f%02d" % j).encode()
        data = (np.arange(rows, dtype="<f8") + 0.1 * j).tobytes()
        parts.append(struct.pack("<H", len(name)) + name + struct.pack("<B", 4) + b"FP64")
        parts.append(struct.pack("<Bq", 1, rows) + struct.pack("<Q", len(data)) + data)
    payload = b"T" + b"".join(parts)
    return struct.pack(">I", len(payload)) + payload


def cpu_ns(pid):
    """CPU time of every thread of pid so far, in ns (/proc/PID/task/*/schedstat: exact, not 10 ms ticks)."""
    total = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                total += int(f.read().split()[0])
        except FileNotFoundError:  # a thread that has just exited
            pass
    return total


class Harness:
    def __init__(self, python, harness, model_dir):
        self.proc = subprocess.Popen([python, "-u", harness, "serve", "--model-dir", model_dir],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        kind, body = self.read()
        if kind != "H" or b'"ok":true' not in body.replace(b" ", b""):
            raise SystemExit("harness did not start: %r %s" % (kind, body[:2000].decode(errors="replace")))

    def read(self):
        header = self.proc.stdout.read(5)
        if len(header) < 5:
            raise SystemExit("harness closed its stdout")
        length, kind = struct.unpack(">IB", header)
        return chr(kind), self.proc.stdout.read(length - 1)

    def calls(self, frame, n, inflight):
        """Make n calls with up to inflight requests written ahead of the answers."""
        sent = got = 0
        write = self.proc.stdin.write
        while got < n:
            burst = min(n - sent, inflight - (sent - got))
            if burst > 0:
                write(frame * burst)
                self.proc.stdin.flush()
                sent += burst
            kind, body = self.read()
            if kind == "m":  # the per-request timings before an answer
                continue
            if kind != "t":
                raise SystemExit("unexpected %r frame: %s" % (kind, body[:2000].decode(errors="replace")))
            got += 1

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(10)
        self.proc.stdout.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir", nargs="?", help="a Slipway Python model directory (score.py)")
    ap.add_argument("--constant", action="store_true", help="serve a model whose predict() returns a constant")
    ap.add_argument("-n", type=int, default=20000, help="calls per round (default 20000)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds, each after the warm-up (default 3)")
    ap.add_argument("--inflight", type=int, default=2, help="requests written ahead of the answers (default 2)")
    ap.add_argument("--rows", type=int, default=1, help="rows per request (default 1)")
    ap.add_argument("--cols", type=int, default=30, help="FP64 columns per request (default 30)")
    ap.add_argument("--harness", action="append", help="harness.py to run, repeatable (default: this checkout's)")
    ap.add_argument("--python", default="/usr/bin/python3", help="interpreter (default /usr/bin/python3)")
    args = ap.parse_args()
    if bool(args.model_dir) == args.constant:
        ap.error("give a model directory or --constant")

    harnesses = args.harness or [HARNESS]
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model_dir
        if args.constant:
            model_dir = os.path.join(tmp, "constant")
            os.makedirs(model_dir)
            with open(os.path.join(model_dir, "score.py"), "w") as f:
                f.write(textwrap.dedent(CONSTANT_SCORE))
        label = "constant" if args.constant else os.path.basename(os.path.normpath(model_dir))
        frame = tensor_frame(args.rows, args.cols)
        running = []
        try:
            for path in harnesses:
                running.append(Harness(args.python, path, model_dir))
                running[-1].calls(frame, 2000, args.inflight)  # warm-up: caches, the known layout, sklearn
            figures = [[] for _ in running]
            for r in range(args.rounds):
                for i, h in enumerate(running):
                    c0, t0 = cpu_ns(h.proc.pid), time.perf_counter()
                    h.calls(frame, args.n, args.inflight)
                    c1, t1 = cpu_ns(h.proc.pid), time.perf_counter()
                    figures[i].append((c1 - c0) / 1e3 / args.n)
                    print("round %d: %s: %s, %d row(s), %d in flight: harness %.1f µs CPU/call, %.0f calls/s"
                          % (r + 1, harnesses[i], label, args.rows, args.inflight, figures[i][-1],
                             args.n / (t1 - t0)), file=sys.stderr)
            for path, fig in zip(harnesses, figures):
                prefix = path + ": " if len(harnesses) > 1 else ""
                print("%s%s rows=%d inflight=%d: harness %.1f µs CPU/call (median of %d rounds of %d; min %.1f)"
                      % (prefix, label, args.rows, args.inflight, statistics.median(fig), args.rounds, args.n,
                         min(fig)))
        finally:
            for h in running:
                h.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
