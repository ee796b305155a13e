"""Simulator throughput through the Rover interface: the issue's goal is a 100 m traverse at
0.1 m/s (1000 simulated seconds) with 50 Hz physics in under one second of CPU, without cameras;
and camera frames at a rate that keeps 100 m traverses testable in CI.

The loop is what the harness does: every control tick (10 Hz) ``set_twist`` + ``world.advance`` +
``read_telemetry``; the command is a gentle weave so steering and settling work every step.
CPU time is ``time.process_time`` after a warm-up (compiled kernels loaded); the cold first call
is reported separately in a fresh process.

    python benchmarks/bench_sim.py [--quick]
"""
from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sim.sim_rover import SimRover  # noqa: E402
from sim.world import World  # noqa: E402


def traverse(world, profile, distance_m, speed_mps, control_hz, cameras_hz=0.0):
    start = (10.0, 0.5 * (world.terrain.extent_m[2] + world.terrain.extent_m[3]))
    r = SimRover(world, profile, x_m=start[0], y_m=start[1], command_timeout_s=1.0).open()
    r.arm()
    cam = r.stereo_camera() if cameras_hz else None
    ticks = int(round(distance_m / speed_mps * control_hz))
    every = int(round(control_hz / cameras_hz)) if cameras_hz else 0
    frames = hops = 0
    last_x = r.truth().x_m
    c0, w0 = time.process_time(), time.perf_counter()
    for k in range(ticks):
        r.set_twist(speed_mps, 0.05 * math.sin(0.05 * k))
        world.advance(1.0 / control_hz)
        r.read_telemetry()
        if k % 20 == 19:          # driving blind, the rover gets stuck on rocks: hop it 0.5 m on (counted)
            t = r.truth()
            if t.x_m - last_x < 0.05 or t.x_m > world.terrain.extent_m[1] - 5.0:
                x = t.x_m + 0.5 if t.x_m < world.terrain.extent_m[1] - 5.0 else 10.0
                r.teleport(x, start[1], 0.0)
                hops += 1
            last_x = r.truth().x_m
        if every and k % every == 0:
            cam.capture()
            frames += 1
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    r.close()
    return cpu, wall, ticks, frames, hops


def cold_start() -> float:
    code = ("import time; t=time.perf_counter(); from sim.world import World; from sim.sim_rover import SimRover; "
            "w=World.generate('mars', size_m=10, seed=1); r=SimRover(w,'osr').open(); r.arm(); r.set_twist(0.1,0); "
            "w.advance(1.0); r.read_telemetry(); print(time.perf_counter()-t)")
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, NUMBA_CACHE_DIR=d)
        cold = float(subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True,
                                    text=True, check=True).stdout.split()[-1])
        warm = float(subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True,
                                    text=True, check=True).stdout.split()[-1])
    return cold, warm


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    dist = 20.0 if a.quick else 100.0
    print("| rover | terrain | physics | control | cameras | sim time | hops | CPU | wall | faster than real time | goal (<1 s CPU per 100 m) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for planet in ("mars", "moon"):
        world = World.generate(planet, size_m=(dist + 20.0, 20.0), cell_size_m=0.05, seed=1,
                               clear_zones=[(10.0, 10.0, 1.5)])
        for prof in ("osr", "skidsteer"):
            traverse(world, prof, 1.0, 0.1, 10.0)           # warm-up
            cpu, wall, ticks, frames, hops = traverse(world, prof, dist, 0.1, 10.0)
            per100 = cpu * 100.0 / dist
            print(f"| {prof} | {planet} | 50 Hz | 10 Hz | none | {dist / 0.1:.0f} s | {hops} | {cpu:.3f} s | "
                  f"{wall:.3f} s | {dist / 0.1 / wall:,.0f}x | {per100:.2f} s per 100 m: "
                  f"{'met' if per100 < 1.0 else 'not met'} |")
    world = World.generate("mars", size_m=(dist + 20.0, 20.0), cell_size_m=0.05, seed=1, clear_zones=[(10.0, 10.0, 1.5)])
    traverse(world, "osr", 1.0, 0.1, 10.0, cameras_hz=0.5)
    cpu, wall, ticks, frames, hops = traverse(world, "osr", dist, 0.1, 10.0, cameras_hz=0.5)
    print(f"| osr | mars | 50 Hz | 10 Hz | {frames} stereo pairs (every 0.2 m) | {dist / 0.1:.0f} s | {hops} | "
          f"{cpu:.3f} s | {wall:.3f} s | {dist / 0.1 / wall:,.0f}x | (cameras: {1000 * wall / max(frames, 1):.0f} ms per "
          f"tick with a frame, whole run) |")
    cold, warm = cold_start()
    print()
    print(f"Cold start (fresh process, empty Numba cache): world + SimRover + 1 s of driving = {cold:.2f} s; "
          f"second process (cache warm): {warm:.2f} s.")


if __name__ == "__main__":
    main()
