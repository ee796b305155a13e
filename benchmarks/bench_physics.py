"""Rover physics: CPU cost of a simulated 100 m traverse (sim.rover_model.RoverModel).

A rover drives east at 0.1 m/s for 1000 simulated seconds at 50 Hz physics (50,000 substeps) on
generated Mars terrain (``World.generate("mars", size_m=120, cell_size_m=0.05)``), either with
``step()`` called at a 10 Hz control rate (5 substeps per call, the way SimRover runs it) or in
one call of 50,000 substeps (the kernel alone). Goal: under one CPU second for the 10 Hz run.

Rows:

* *relief + craters* — the Mars preset without rocks (``rock_cfa=0``): the rover drives the full
  100 m over rolling, cratered ground.
* *with rocks* — the full preset: driving blind, the rover stops at rocks (blocked, high-centred);
  each time it does, it is teleported 0.5 m further east (a "hop", counted), so the run still
  covers the traverse and times every kind of substep (moving, refused, stuck).

CPU time is ``time.process_time()`` around the driving loop only (terrain generation excluded);
the median of ``--repeats`` runs. Cold start: a fresh Python process with an empty Numba cache
imports the kernels (compiling them), builds a model and takes one step; warm start: the same
with the cache filled.

    python benchmarks/bench_physics.py [--repeats 3] [--quick]
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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import nav  # noqa: E402
from drivers.base import Fault  # noqa: E402
from sim.rover_model import RoverModel  # noqa: E402
from sim.world import World  # noqa: E402

SPEED_MPS = 0.1
DURATION_S = 1000.0
DT_S = 0.02
STOPS = Fault.HIGH_CENTERED | Fault.TIPPED_OVER | Fault.OFF_MAP


def traverse(world: World, rover: str, per_call: int, *, hop_m: float | None, y_m: float = 60.0):
    """Drive east from x = 10 m; returns (cpu_s, wheel_distance_m, hops, n_events, final_x)."""
    prof = nav.load_rover(rover)
    m = RoverModel(world, prof, x_m=10.0, y_m=y_m)
    n = m.layout.n_wheels
    cmd = np.full(n, SPEED_MPS / prof.geometry.wheel_radius_m)
    steer = np.zeros(n)
    total = int(round(DURATION_S / DT_S))
    hops = 0
    done = 0
    t0 = time.process_time()
    while done < total:
        k = min(per_call, total - done)
        m.step(k, DT_S, cmd, steer, t0_s=done * DT_S)
        done += k
        if hop_m is not None and (m.blocked or (m.faults & STOPS)):
            try:
                m.teleport(m.x_m + hop_m, m.y_m, 0.0)
            except ValueError:          # hopped off the map: the traverse is over
                break
            hops += 1
    cpu = time.process_time() - t0
    dist = float(np.mean(m.wheel_angle_rad)) * prof.geometry.wheel_radius_m
    return cpu, dist, hops, len(m.events), m.x_m, done


COLD = r'''
import time, sys
t0 = time.perf_counter()
import numpy as np, nav
from sim.world import World
from sim.rover_model import RoverModel
from nav.terrain_map import TerrainMap
w = World(TerrainMap(np.zeros((100, 100), np.float32), 0.05))
m = RoverModel(w, nav.load_rover(sys.argv[1]), x_m=2.5, y_m=2.5)
m.step(5, 0.02, np.ones(m.layout.n_wheels), np.zeros(m.layout.n_wheels))
print(time.perf_counter() - t0)
'''


def start_time(cache_dir: str, rover: str) -> float:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-c", COLD, rover], env=env, cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"cold-start run failed:\n{r.stderr}")
    return float(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="one repeat")
    a = ap.parse_args()
    if a.quick:
        a.repeats = 1
    t = time.perf_counter()
    worlds = {"relief + craters": World.generate("mars", size_m=120, cell_size_m=0.05, seed=a.seed, rock_cfa=0.0),
              "with rocks": World.generate("mars", size_m=120, cell_size_m=0.05, seed=a.seed)}
    gen_s = time.perf_counter() - t
    w = worlds["with rocks"]
    print(f"# rover physics: {DURATION_S:g} s at {SPEED_MPS} m/s, {1 / DT_S:g} Hz physics "
          f"({int(DURATION_S / DT_S)} substeps), Mars terrain 120 m x 120 m at 0.05 m "
          f"({w.terrain.shape[0]}x{w.terrain.shape[1]} cells, {len(w.rocks)} rocks; generated in {gen_s:.1f} s), "
          f"seed {a.seed}, one core, median of {a.repeats}\n")
    # warm the kernels (compile or load the cache) outside the timings
    traverse(worlds["relief + craters"], "osr", 5, hop_m=None)

    print("| rover | terrain | step() calls | CPU s (goal < 1) | substeps / s | µs / substep | "
          "wheel distance | hops | events |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for rover in ("osr", "skidsteer"):
        for terrain, per_call, hop in (("relief + craters", 5, None), ("relief + craters", 50_000, None),
                                       ("with rocks", 5, 0.5)):
            runs = [traverse(worlds[terrain], rover, per_call, hop_m=hop) for _ in range(a.repeats)]
            cpu = statistics.median(r[0] for r in runs)
            _, dist, hops, n_ev, _, done = runs[0]
            calls = "10 Hz (5 substeps each)" if per_call == 5 else f"1 call of {per_call:,}"
            print(f"| {rover} | {terrain} | {calls} | {cpu:.3f} | {done / cpu:,.0f} | {cpu / done * 1e6:.2f} | "
                  f"{dist:.1f} m | {hops} | {n_ev} |")
    print()

    print("| start (fresh process: import, build a model, one step) | osr | skidsteer |")
    print("|---|---:|---:|")
    with tempfile.TemporaryDirectory() as cache:
        cold = start_time(cache, "osr")
        warm = [start_time(cache, "osr"), start_time(cache, "skidsteer")]
    print(f"| cold (empty Numba cache: compiles the kernels) | {cold:.2f} s | (same kernels) |")
    print(f"| warm (cache filled) | {warm[0]:.2f} s | {warm[1]:.2f} s |")


if __name__ == "__main__":
    main()
