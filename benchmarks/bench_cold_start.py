"""Cold start: the first `rover plan` and `rover traverse` after install (empty Numba cache) and the next
ones (warm cache).

Each run is a fresh Python process; NUMBA_CACHE_DIR points at an empty temporary folder for the
cold run, and the same folder (now filled) for the warm runs. Prints a Markdown table.

    python benchmarks/bench_cold_start.py [--planner astar] [--runs 3] [--quick]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_once(cache_dir: str, args: list) -> float:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    cmd = [sys.executable, "-m", "hil.cli", *args]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"rover {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}")
    return dt


def cold_warm(args_of, warm_runs: int) -> tuple[float, float]:
    """(cold, median warm) seconds of a fresh process running ``rover *args_of(out_dir)``."""
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as out:
        cold = run_once(cache, args_of(out))
        warm = [run_once(cache, args_of(out)) for _ in range(warm_runs)]
    return cold, statistics.median(warm)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--planner", default="astar")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    rows = []
    planners = [a.planner] if a.quick else ["astar", "field_dstar"]
    warm_runs = 1 if a.quick else a.runs
    for planner in planners:
        cold, warm = cold_warm(lambda out: ["plan", "--rover", "osr", "--terrain", "mars", "--seed", "1",
                                            "--planner", planner, "--out", out], warm_runs)
        rows.append((planner, cold, warm))
    print("| `rover plan --terrain mars --seed 1` (60 m × 60 m at 0.05 m) | cold (empty Numba cache) | warm | goal |")
    print("|---|---|---|---|")
    for planner, cold, warm in rows:
        print(f"| `--planner {planner}` | {cold:.1f} s | {warm:.2f} s | cold < 20 s, warm < 1.5 s |")
    print()
    print("| `rover traverse SCENARIO` (simulated, fast perception; the whole command: terrain, oracle, traverse, "
          "report, PNG, MCAP log) | cold (empty Numba cache) | warm |")
    print("|---|---|---|")
    for scenario in (["quick"] if a.quick else ["quick", "mars_50m"]):
        cold, warm = cold_warm(lambda out: ["traverse", scenario, "--out", out], warm_runs)
        print(f"| `{scenario}` | {cold:.1f} s | {warm:.2f} s |")


if __name__ == "__main__":
    main()
