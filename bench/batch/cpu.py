"""CPU seconds of process trees, by role, while a benchmark phase runs.

    python3 cpu.py --out FILE [--ready FILE] SERVER_PID [POSTGRES_PID]

Polls /proc every 0.1 s for the Slipway server, the PostgreSQL postmaster and all their descendants and keeps, per PID, the last utime+stime seen
(a process that exits between two polls loses at most 0.1 s of its CPU). On SIGTERM/SIGINT it writes one JSON
object to FILE: {"server": s, "replica": s, "postgres": s} (seconds of CPU since this started;
processes alive at the start count from their value then). Roles come from the tree, not from names: the
server's descendants are its replicas (the server starts no other process during a batch run), the
postmaster's are PostgreSQL's backends. Wall-clock figures on a shared machine are noisy;
CPU seconds per row are what the phases cost.
"""
import argparse
import json
import os
import signal
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")


def stat(pid):
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            s = f.read()
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return None
    rest = s[s.rindex(b")") + 2:].split()
    ppid = int(rest[1])
    cpu = (int(rest[11]) + int(rest[12])) / TICK  # utime + stime
    return ppid, cpu, cmd


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--ready", help="file created once the first poll (the starting point) is taken")
    ap.add_argument("server", type=int)
    ap.add_argument("postgres", type=int, nargs="?")
    a = ap.parse_args()
    start, last, roles, cmds = {}, {}, {}, {}
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    first = True
    while True:
        procs = {}
        for d in os.listdir("/proc"):
            if d.isdigit():
                st = stat(int(d))
                if st:
                    procs[int(d)] = st
        tree = {a.server: "server"}
        if a.postgres:
            tree[a.postgres] = "postgres"
        tree = {p: r for p, r in tree.items() if p in procs}
        grew = True
        while grew:
            grew = False
            for pid, (ppid, _, _) in procs.items():
                if ppid in tree and pid not in tree:
                    tree[pid] = "postgres" if tree[ppid] == "postgres" else "replica"
                    grew = True
        for pid, r in tree.items():
            _, cpu, cmd = procs[pid]
            if pid not in start:
                start[pid] = cpu if first else 0.0
                roles[pid] = r
            if cmd:  # a zombie has no command line
                cmds[pid] = cmd
            last[pid] = cpu
        if first and a.ready:
            open(a.ready, "w").close()
        first = False
        if stop:
            break
        time.sleep(0.1)
    out = {"server": 0.0, "replica": 0.0, "postgres": 0.0}
    for pid, cpu in last.items():
        out[roles[pid]] += cpu - start[pid]
        if os.environ.get("CPU_DEBUG"):
            print(pid, roles[pid], round(cpu - start[pid], 2), cmds.get(pid, "")[:120], file=sys.stderr)
    with open(a.out, "w") as f:
        json.dump({k: round(v, 2) for k, v in out.items()}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
