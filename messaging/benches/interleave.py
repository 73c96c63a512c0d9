#!/usr/bin/env python3
"""Interleaved repetitions of the RabbitMQ rows of `throughput.rs`: ours / raw lapin per row.

On a small machine shared with the broker (and other work), a row's throughput drifts by tens
of percent between runs, so one run of the whole bench compares ours and lapin at different
moments. This driver runs each row's pair (ours and lapin, one criterion invocation filtered
to that row) in rotation over all rows, several times, alternating which of the two goes first
(`SINEW_BENCH_LAPIN_FIRST`), and prints per row the median of the per-repetition ratios
ours / lapin (throughput), their range, and the median throughputs. Criterion stays the
measuring harness: each ratio comes from criterion's own estimates
(`<criterion home>/<group>/<bench>/new/estimates.json`).

Usage (from the workspace root; builds the bench once, then runs its binary):

    python3 messaging/benches/interleave.py                      # 5 repetitions, all 24 rows
    python3 messaging/benches/interleave.py --reps 3 --rows publish/quorum
    python3 messaging/benches/interleave.py --list

Options: --reps N, --rows SUBSTRING (repeatable), --measurement-time S (default 1.5),
--warm-up-time S (default 0.3), --sample-size N (default 10, criterion's minimum),
--estimate mean|median (default mean, criterion's printed middle figure for flat sampling),
--json FILE (every repetition's raw figures), --binary PATH (a bench binary built
before, e.g. to compare two commits). Needs RabbitMQ at 127.0.0.1:5672.

With `SINEW_BENCH_AA=1` in the environment the `ours` rows run raw lapin's code too (an A/A
run): the ratios then show how far apart two identical sides land, the harness's resolution.
"""

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

PUBLISH = [
    (f"publish/{kind}-{size}", "inflight", k, n)
    for kind in ("classic", "quorum")
    for size in ("256B", "1KB")
    for k, n in ((1, 100), (64, 2000), (512, 5000))
]
CONSUME = [
    (f"consume/{kind}-{size}", "prefetch", k, n)
    for kind in ("quorum", "classic")
    for size in ("256B", "1KB")
    for k, n in ((1, 500), (64, 3000), (256, 5000))
]
ROWS = PUBLISH + CONSUME


def row_name(row):
    group, what, k, _ = row
    return f"{group}/{what}-{k}"


def build(root):
    """Builds the bench and returns the path of its binary."""
    cmd = [
        "cargo", "bench", "-p", "sinew-messaging", "--features", "rabbitmq",
        "--bench", "throughput", "--no-run", "--message-format=json",
    ]
    out = subprocess.run(cmd, cwd=root, check=True, stdout=subprocess.PIPE, text=True).stdout
    for line in out.splitlines():
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            continue
        if (msg.get("reason") == "compiler-artifact"
                and msg.get("target", {}).get("name") == "throughput"
                and msg.get("executable")):
            return msg["executable"]
    sys.exit("interleave: could not find the throughput bench binary")


def load_avg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def estimate(home, group, bench, which):
    """Criterion's estimate of one iteration's time, in ns."""
    # Criterion writes group `a/b` to the directory `a_b`.
    path = os.path.join(home, group.replace("/", "_"), bench, "new", "estimates.json")
    with open(path) as f:
        return json.load(f)[which]["point_estimate"]


def run_row(binary, home, row, lapin_first, args):
    group, what, k, n = row
    ours, lapin = f"ours-{what}-{k}", f"lapin-{what}-{k}"
    pattern = f"^{group}/(ours|lapin)-{what}-{k}$"
    env = dict(os.environ, CRITERION_HOME=home)
    if lapin_first:
        env["SINEW_BENCH_LAPIN_FIRST"] = "1"
    else:
        env.pop("SINEW_BENCH_LAPIN_FIRST", None)
    cmd = [
        binary, "--bench", pattern, "--noplot",
        "--sample-size", str(args.sample_size),
        "--warm-up-time", str(args.warm_up_time),
        "--measurement-time", str(args.measurement_time),
    ]
    for bench in (ours, lapin):
        shutil.rmtree(os.path.join(home, group.replace("/", "_"), bench), ignore_errors=True)
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    t_ours = estimate(home, group, ours, args.estimate)
    t_lapin = estimate(home, group, lapin, args.estimate)
    # Throughput in messages per second; ours / lapin in throughput is t_lapin / t_ours.
    return n / t_ours * 1e9, n / t_lapin * 1e9


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--rows", action="append", default=[])
    p.add_argument("--measurement-time", type=float, default=1.5)
    p.add_argument("--warm-up-time", type=float, default=0.3)
    p.add_argument("--sample-size", type=int, default=10)
    p.add_argument("--estimate", choices=("mean", "median"), default="mean")
    p.add_argument("--json")
    p.add_argument("--list", action="store_true")
    p.add_argument("--binary", help="a built throughput bench binary (default: build it)")
    args = p.parse_args()

    rows = [r for r in ROWS if not args.rows or any(s in row_name(r) for s in args.rows)]
    if args.list:
        print("\n".join(row_name(r) for r in rows))
        return
    if not rows:
        sys.exit("interleave: no row matches --rows")

    root = subprocess.run(["cargo", "locate-project", "--workspace", "--message-format=plain"],
                          check=True, stdout=subprocess.PIPE, text=True).stdout.strip()
    binary = args.binary or build(os.path.dirname(root))
    home = tempfile.mkdtemp(prefix="sinew-interleave-")
    try:
        run_all(binary, home, rows, args)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def run_all(binary, home, rows, args):
    """Runs every repetition of every row in `home` (criterion's output) and prints the tables."""
    results = {row_name(r): [] for r in rows}
    loads = []
    started = datetime.datetime.now(datetime.timezone.utc)
    print(f"# {started:%Y-%m-%d %H:%M:%S} UTC, load average {load_avg()}, {args.reps} "
          f"repetitions x {len(rows)} rows, binary {binary}",
          flush=True)
    t0 = time.monotonic()
    for rep in range(args.reps):
        for i, row in enumerate(rows):
            # Alternate which of the pair goes first, per repetition and per row.
            lapin_first = (rep + i) % 2 == 1
            ours, lapin = run_row(binary, home, row, lapin_first, args)
            results[row_name(row)].append(
                {"rep": rep, "ours": ours, "lapin": lapin, "lapin_first": lapin_first})
            print(f"  rep {rep + 1} {row_name(row):34} ours {ours:9.0f}  lapin {lapin:9.0f}"
                  f"  {ours / lapin * 100:5.1f} %", file=sys.stderr, flush=True)
        loads.append(load_avg())
        print(f"# repetition {rep + 1} done at {time.monotonic() - t0:.0f} s, "
              f"load average {loads[-1]}", flush=True)
    ended = datetime.datetime.now(datetime.timezone.utc)

    print(f"# {started:%H:%M:%S}-{ended:%H:%M:%S} UTC, criterion {args.estimate} estimate, "
          f"{args.sample_size} samples, {args.warm_up_time} s warm-up, "
          f"{args.measurement_time} s measurement per bench")
    print()
    print("| row | ours (msg/s, median) | raw lapin (msg/s, median) "
          "| ours / lapin, median of reps | range |")
    print("|---|---:|---:|---:|---:|")
    for row in rows:
        reps = results[row_name(row)]
        ratios = [r["ours"] / r["lapin"] for r in reps]
        print(f"| {row_name(row)} | {statistics.median(r['ours'] for r in reps):,.0f} "
              f"| {statistics.median(r['lapin'] for r in reps):,.0f} "
              f"| {statistics.median(ratios) * 100:.0f} % "
              f"| {min(ratios) * 100:.0f}-{max(ratios) * 100:.0f} % |")
    # The pipelining gain: in flight 512 over in flight 1, per repetition, median.
    gains = []
    for group in sorted({r[0] for r in rows if r[1] == "inflight"}):
        one, many = results.get(f"{group}/inflight-1"), results.get(f"{group}/inflight-512")
        if not one or not many:
            continue
        for who in ("ours", "lapin"):
            g = [b[who] / a[who] for a, b in zip(one, many)]
            gains.append((group, who, g))
    if gains:
        print()
        print("| pipelining gain (in flight 512 / 1) | who | median | range |")
        print("|---|---|---:|---:|")
        for group, who, g in gains:
            print(f"| {group} | {who} | {statistics.median(g):.1f}x "
                  f"| {min(g):.1f}-{max(g):.1f}x |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"started": started.isoformat(), "ended": ended.isoformat(),
                       "loads": loads, "args": vars(args), "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
