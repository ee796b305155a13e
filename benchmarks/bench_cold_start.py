"""Cold start: the first `rover plan` after install (empty Numba cache) and the second (warm cache).

Each run is a fresh Python process; NUMBA_CACHE_DIR points at an empty temporary folder for the
cold run, and the same folder (now filled) for the warm runs. Prints a Markdown table.

    python benchmarks/bench_cold_start.py [--planner astar] [--runs 3]
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


def run_once(cache_dir: str, out: str, planner: str) -> float:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    cmd = [sys.executable, "-m", "hil.cli", "plan", "--rover", "osr", "--terrain", "mars", "--seed", "1",
           "--planner", planner, "--out", out]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"rover plan failed:\n{r.stdout}\n{r.stderr}")
    return dt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--planner", default="astar")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    rows = []
    planners = [a.planner] if a.quick else ["astar", "field_dstar"]
    for planner in planners:
        with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as out:
            cold = run_once(cache, out, planner)
            warm = [run_once(cache, out, planner) for _ in range(1 if a.quick else a.runs)]
        rows.append((planner, cold, statistics.median(warm)))
    print("| `rover plan --terrain mars --seed 1` (60 m × 60 m at 0.05 m) | cold (empty Numba cache) | warm | goal |")
    print("|---|---|---|---|")
    for planner, cold, warm in rows:
        print(f"| `--planner {planner}` | {cold:.1f} s | {warm:.2f} s | cold < 20 s, warm < 1.5 s |")


if __name__ == "__main__":
    main()
