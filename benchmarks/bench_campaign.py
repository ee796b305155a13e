"""Campaign throughput: a 200-traverse campaign (fast perception, no cameras) on the local process pool and on a
Dask local cluster, at 1 and 2 workers. The issue's goal: 200 traverses in under 10 minutes on this 2-core
machine, and time falling with the number of Dask workers.

Every executor runs the same runs (same campaign seed and indices), so their results must be identical
(``wall_time_s`` aside); the table says whether they were. A warm-up traverse in this process fills the Numba
on-disk cache first, so workers load compiled kernels instead of compiling them. Dask cluster start-up is
timed separately from the campaign.

    python benchmarks/bench_campaign.py [--quick] [--runs N] [--single-runs M] [--campaign NAME]
                                        [--executors in-process,local2,dask1,dask2]

``--single-runs`` runs fewer traverses on the 1-worker executors (their rate is what is compared); the default
is ``--runs``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

EXECUTORS = {"in-process": ("local", 1), "local1": ("pool", 1), "local2": ("local", 2),
             "dask1": ("dask", 1), "dask2": ("dask", 2)}


def _strip(records):
    """Records without the host-dependent wall time, for the identical-results check."""
    out = []
    for r in records:
        s = {k: v for k, v in r["summary"].items() if k != "wall_time_s"}
        out.append((r["index"], r["family"], tuple(sorted(r["overrides"].items())), repr(sorted(s.items()))))
    return out


def run_executor(name, camp, runs, seed):
    from hil.campaign import run_campaign

    kind, k = EXECUTORS[name]
    setup_s = 0.0
    if kind == "dask":
        import distributed

        t0 = time.perf_counter()
        cluster = distributed.LocalCluster(n_workers=k, threads_per_worker=1, processes=True,
                                           dashboard_address=None, silence_logs=40)
        setup_s = time.perf_counter() - t0
        try:
            t0 = time.perf_counter()
            res = run_campaign(camp, runs, seed=seed, cluster=cluster.scheduler_address, plots=False)
            wall = time.perf_counter() - t0
        finally:
            cluster.close()
    elif kind == "pool":         # a 1-process pool (spawn + IPC overhead without parallelism)
        import hil.campaign as hc

        t0 = time.perf_counter()
        recs = []
        kw = {"backend": "sim", "out_dir": None, "log": False, "png": False}
        hc._run_pool(1, [hc._make_task(camp, i, seed, None, kw) for i in range(runs)], None, recs.append)
        wall = time.perf_counter() - t0
        recs.sort(key=lambda r: r["index"])
        res = type("R", (), {"records": recs, "aggregate": hc.aggregate(recs, camp, seed=seed)})()
    else:
        t0 = time.perf_counter()
        res = run_campaign(camp, runs, seed=seed, workers=k, plots=False)
        wall = time.perf_counter() - t0
    return res, wall, setup_s


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="20 runs")
    ap.add_argument("--runs", type=int, default=None, help="traverses per executor (default 200, --quick 20)")
    ap.add_argument("--single-runs", type=int, default=None, help="traverses on the 1-worker executors")
    ap.add_argument("--campaign", default="mars_50m")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--executors", default="in-process,local2,dask1,dask2",
                    help=f"comma-separated, of {', '.join(EXECUTORS)}")
    args = ap.parse_args()
    runs = args.runs or (20 if args.quick else 200)
    single = args.single_runs or runs
    names = [n.strip() for n in args.executors.split(",") if n.strip()]
    bad = [n for n in names if n not in EXECUTORS]
    if bad:
        ap.error(f"unknown executor(s) {', '.join(bad)}; choose from {', '.join(EXECUTORS)}")
    import importlib.util

    if importlib.util.find_spec("distributed") is None:
        dropped = [n for n in names if n.startswith("dask")]
        names = [n for n in names if not n.startswith("dask")]
        if dropped:
            print(f"(Dask not installed: skipping {', '.join(dropped)}; pip install 'rovernav[cluster]')",
                  file=sys.stderr)

    from hil.campaign import load_campaign, run_campaign, wilson_interval

    camp = load_campaign(args.campaign)
    seed = camp.seed if args.seed is None else args.seed
    t0 = time.perf_counter()
    run_campaign(camp, 1, seed=seed, workers=1, plots=False)       # warm the Numba cache (and this process)
    warm = time.perf_counter() - t0

    rows, ref = [], None
    for name in names:
        kind, k = EXECUTORS[name]
        n = single if k == 1 else runs
        print(f"running {name}: {n} traverses ...", file=sys.stderr, flush=True)
        res, wall, setup = run_executor(name, camp, n, seed)
        recs = _strip(res.records)
        m = min(len(recs), len(ref or []))
        same = None if ref is None else recs[:m] == ref[:m]     # the common runs must agree
        if ref is None or len(recs) > len(ref):
            ref = recs
        s = res.aggregate["success"]
        rows.append((name, k, n, wall, setup, 60.0 * n / wall, s["successes"], s["n"], same,
                     sum(r["summary"].get("wall_time_s") or 0.0 for r in res.records) / max(n, 1)))
        print(f"  {name}: {wall:.1f} s, {60.0 * n / wall:.1f} traverses/min", file=sys.stderr, flush=True)

    base = next((r[5] for r in rows if r[0] == "in-process"), rows[0][5] if rows else None)
    print(f"Campaign `{camp.name}` ({camp.scenario}: {camp.base.perception} perception, {camp.base.mode}), seed "
          f"{seed}; {os.cpu_count()} cores, shared with other work while measured (timings are noisy). "
          f"Warm-up traverse (Numba cache) {warm:.1f} s, not counted.\n")
    print("| executor | workers | traverses | total s | traverses/min | vs in-process | mean traverse wall s | "
          "success [Wilson 95 %] | same results |")
    print("|---|---:|---:|---:|---:|---:|---:|---|---|")
    for name, k, n, wall, setup, rate, succ, tot, same, mean_wall in rows:
        lo, hi = wilson_interval(succ, tot)
        label = name + (f" (cluster start {setup:.1f} s)" if setup else "")
        print(f"| {label} | {k} | {n} | {wall:.1f} | {rate:.1f} | {rate / base:.2f}x | {mean_wall:.2f} | "
              f"{succ}/{tot} [{100 * lo:.0f}-{100 * hi:.0f} %] | "
              f"{'-' if same is None else ('yes' if same else 'NO')} |")
    two = [r for r in rows if r[1] == 2]
    if two:
        best = max(two, key=lambda r: r[5])
        proj = 200 / best[5]
        print(f"\nGoal: 200 traverses in under 10 min on 2 cores: best 2-worker rate {best[5]:.1f}/min "
              f"({best[0]}) -> {proj:.1f} min for 200 ({'met' if proj < 10 else 'NOT met'}).")
    d1 = next((r for r in rows if r[0] == "dask1"), None)
    d2 = next((r for r in rows if r[0] == "dask2"), None)
    if d1 and d2:
        r = d2[5] / d1[5]
        print(f"Dask: 2 workers run {r:.2f}x the traverses per minute of 1 worker "
              f"({'time falls with workers' if r > 1.15 else 'no clear speed-up on this (shared) machine'}).")


if __name__ == "__main__":
    main()
