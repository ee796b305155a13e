"""Stereo navigation-camera rendering (sim.camera): time per stereo pair and per view, stage
split, one-off per-world precompute, cold start, and depth accuracy against the slow
reference ray caster of the tests (tests/sim/_ref_render.py), by range band.

Worlds: generated Mars and Moon terrain, 60 m x 60 m at 0.05 m cells (1200 x 1200 vertices);
camera: the default nav.config.Camera (640 x 480, 70 deg, 40 m range) on a rover at several
poses (random position, heading, pitch and roll within +-8 deg). One thread
(NUMBA_NUM_THREADS=1), medians over repeats.

    NUMBA_NUM_THREADS=1 python benchmarks/bench_render.py [--repeats 7] [--quick]
"""
from __future__ import annotations

import argparse
import importlib.util
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nav.config import Camera  # noqa: E402
from sim import camera as simcam  # noqa: E402
from sim.frames import T_body_cam, T_world_body  # noqa: E402
from sim.world import World  # noqa: E402

GOAL_PAIR_S = 0.050

COLD = r"""
import sys, time
t0 = time.perf_counter()
sys.path.insert(0, {root!r})
import numpy as np
from nav.config import Camera
from sim.camera import StereoRenderer
from sim.frames import T_world_body
from sim.world import World
t1 = time.perf_counter()
w = World.generate("mars", size_m=20.0, cell_size_m=0.05, seed=1)
t2 = time.perf_counter()
r = StereoRenderer(w, Camera())
t3 = time.perf_counter()
r.render(T_world_body(10.0, 10.0, float(w.terrain.height_at((10.0, 10.0))), 0.3, 0.0, 0.0))
t4 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2, t4 - t3)
"""


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _poses(world, n, seed):
    rng = np.random.default_rng(seed)
    x0, x1, y0, y1 = world.terrain.extent_m
    out = []
    for _ in range(n):
        x, y = rng.uniform(x0 + 15, x1 - 15), rng.uniform(y0 + 15, y1 - 15)
        yaw = rng.uniform(-math.pi, math.pi)
        pitch, roll = np.radians(rng.uniform(-8, 8, 2))
        out.append(T_world_body(x, y, float(world.terrain.height_at((x, y))), yaw, pitch, roll))
    return out


def stage_times(world, cam, T_left, repeats):
    """Median seconds of the two kernels of one view (rasterise, shade) on the cached scene."""
    kern = simcam._kernels()
    sc = simcam._scene(world)
    h, w = cam.height_px, cam.width_px
    f, cx, cy = cam.fx_px, cam.cx_px, cam.cy_px
    R_wc = np.ascontiguousarray(T_left[:3, :3])
    C = np.ascontiguousarray(T_left[:3, 3])
    R_cw = np.ascontiguousarray(R_wc.T)
    invz = np.zeros((h, w), np.float32)
    stats = np.zeros(7, np.int64)
    img = np.empty((h, w), np.uint8)
    depth = np.empty((h, w), np.float32)

    def raster():
        invz[:] = 0.0
        stats[:] = 0
        kern._rasterize_terrain(sc.z, sc.ox, sc.oy, sc.cell, sc.block, sc.bzmin, sc.bzmax, R_cw, C, f, f, cx, cy,
                                simcam._NEAR_M, float(cam.max_range_m), simcam._EDGE_EPS, simcam._LOD_PX,
                                simcam._MAX_LEVEL, invz, stats)

    def shade():
        kern._shade_pixels(invz, R_wc, C, f, f, cx, cy, float(cam.max_range_m), sc.ox, sc.oy, sc.cell, sc.shade,
                           sc.mips, sc.mip_off, sc.n0, simcam._TEXEL_M, simcam._LOD_BIAS, simcam._CONTRAST_SOIL,
                           simcam._CONTRAST_ROCK, simcam.LIT_GROUND_DN, simcam.LIT_GROUND_DN * sc.sky,
                           float(cam.noise_std_dn), 12345, simcam._gauss_table(), img, depth, True)

    raster()
    shade()
    t_r = statistics.median(_timed(raster) for _ in range(repeats))
    t_s = statistics.median(_timed(shade) for _ in range(repeats))
    return t_r, t_s, stats.copy()


def accuracy(world, cam, poses, step):
    """Relative depth error vs the reference ray caster, pooled over poses, by range band."""
    spec = importlib.util.spec_from_file_location("_ref_render", ROOT / "tests" / "sim" / "_ref_render.py")
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)
    tm = world.terrain
    vv, uu = np.mgrid[step // 2:cam.height_px:step, step // 2:cam.width_px:step]
    uv = np.stack([uu.ravel(), vv.ravel()], axis=1)
    ray_len = np.linalg.norm(ref.pixel_rays(cam.K, np.eye(3), uv), axis=1)
    dist, rel, sky_mis, n = [], [], 0, 0
    for Tb in poses:
        T = Tb @ T_body_cam(cam, "left")
        _, depth = simcam.render_view(world, cam, T)
        expect = ref.ray_cast_depth(tm.elevation_m, tm.origin_xy_m, tm.cell_size_m, T, cam.K, uv, cam.max_range_m)
        got = depth[uv[:, 1], uv[:, 0]].astype(np.float64)
        both = np.isfinite(expect) & np.isfinite(got)
        sky_mis += int(np.sum(np.isfinite(expect) != np.isfinite(got)))
        n += len(uv)
        dist.append(expect[both] * ray_len[both])
        rel.append(np.abs(got[both] - expect[both]) / expect[both])
    return np.concatenate(dist), np.concatenate(rel), sky_mis / n


def cold_start(repeats):
    """Seconds for imports, world generation, renderer construction and the first pair, in
    fresh interpreters: with the Numba cache present, and with an empty cache (compile)."""
    code = COLD.format(root=str(ROOT))
    env = dict(os.environ, NUMBA_NUM_THREADS="1")
    warm = []
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)   # fill the cache
    for _ in range(repeats):
        r = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
        warm.append([float(v) for v in r.stdout.split()])
    with tempfile.TemporaryDirectory() as d:
        r = subprocess.run([sys.executable, "-c", code], env=dict(env, NUMBA_CACHE_DIR=d), check=True,
                           capture_output=True, text=True)
        compile_ = [float(v) for v in r.stdout.split()]
    return [statistics.median(c) for c in zip(*warm)], compile_


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--poses", type=int, default=6)
    ap.add_argument("--size", type=float, default=60.0)
    ap.add_argument("--quick", action="store_true", help="3 poses, 3 repeats, coarser accuracy grid")
    a = ap.parse_args()
    if a.quick:
        a.repeats, a.poses = 3, 3
    cam = Camera()
    print(f"# stereo camera rendering: {cam.width_px}x{cam.height_px}, hfov {cam.hfov_deg:g} deg, range "
          f"{cam.max_range_m:g} m, {a.size:g} m x {a.size:g} m terrain at 0.05 m cells; one thread "
          f"(NUMBA_NUM_THREADS={os.environ.get('NUMBA_NUM_THREADS')}), median of {a.repeats} repeats x {a.poses} "
          f"poses\n")
    rows, stage_rows, worlds = [], [], {}
    for planet in ("mars", "moon"):
        world = World.generate(planet, size_m=a.size, cell_size_m=0.05, seed=7)
        StereoRenderer = simcam.StereoRenderer
        StereoRenderer(World.generate(planet, size_m=8.0, seed=1), cam).render(np.eye(4))      # compile / load
        t_pre = _timed(lambda: StereoRenderer(world, cam))
        rend = StereoRenderer(world, cam)
        poses = _poses(world, a.poses, seed=3)
        rng = np.random.default_rng(0)
        t_pair, t_left, t_right = [], [], []
        for Tb in poses:
            rend.render(Tb, rng=rng)
            Tl, Tr = rend.poses(Tb)
            for _ in range(a.repeats):
                t_pair.append(_timed(lambda: rend.render(Tb, rng=rng)))
                t_left.append(_timed(lambda: simcam.render_view(world, cam, Tl, rng=rng)))
                t_right.append(_timed(lambda: simcam.render_view(world, cam, Tr, rng=rng, with_depth=False)))
        med = statistics.median(t_pair)
        rows.append((planet, med, statistics.median(t_left), statistics.median(t_right), max(t_pair), t_pre))
        tr, ts, st = stage_times(world, cam, rend.poses(poses[0])[0], a.repeats)
        stage_rows.append((planet, tr, ts, st))
        worlds[planet] = (world, poses)

    print("| terrain | stereo pair (ms) | pairs/s | left view + depth (ms) | right view (ms) | slowest pair (ms) "
          "| per-world precompute (s) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for planet, med, tl, trr, worst, pre in rows:
        ok = "✓" if med <= GOAL_PAIR_S else "✗"
        print(f"| {planet} | {med * 1e3:.1f} {ok} | {1 / med:.1f} | {tl * 1e3:.1f} | {trr * 1e3:.1f} | "
              f"{worst * 1e3:.1f} | {pre:.2f} |")
    print(f"\nGoal: ≥ {1 / GOAL_PAIR_S:.0f} pairs/s (≤ {GOAL_PAIR_S * 1e3:.0f} ms per pair incl. depth) on one core.\n")

    print("| terrain | rasterise (ms) | shade + noise (ms) | blocks drawn (L0/L1/L2) | triangles set up "
          "| pixel centres tested |")
    print("|---|---:|---:|---|---:|---:|")
    for planet, tr, ts, st in stage_rows:
        print(f"| {planet} | {tr * 1e3:.1f} | {ts * 1e3:.1f} | {st[0]} ({st[3]}/{st[4]}/{st[5]}) | {st[1]:,} | "
              f"{st[2]:,} |")
    print()

    warm, comp = cold_start(1 if a.quick else 3)
    print("| cold start, fresh interpreter (s) | imports | generate 20 m world | StereoRenderer() | first pair |")
    print("|---|---:|---:|---:|---:|")
    print(f"| Numba cache present | {warm[0]:.2f} | {warm[1]:.2f} | {warm[2]:.2f} | {warm[3]:.3f} |")
    print(f"| empty Numba cache (compile) | {comp[0]:.2f} | {comp[1]:.2f} | {comp[2]:.2f} | {comp[3]:.3f} |")
    print()

    step = 16 if a.quick else 8
    world, poses = worlds["mars"]
    dist, rel, sky = accuracy(world, cam, poses[:2 if a.quick else 4], step)
    exact = simcam.exact_range_m(cam, world.terrain.cell_size_m)
    print(f"Depth vs the reference ray caster (mars, every {step}th pixel of {2 if a.quick else 4} poses; "
          f"full-resolution mesh within {exact:.1f} m, coarser levels beyond; sky/terrain disagreement "
          f"{sky:.2%} of pixels):\n")
    print("| range band (m) | pixels | rel. error p50 | p99 | max | share > 1e-5 |")
    print("|---|---:|---:|---:|---:|---:|")
    for lo, hi in ((0, 5), (5, 10), (10, exact), (exact, 25), (25, 40)):
        m = (dist >= lo) & (dist < hi)
        if not m.any():
            continue
        q = np.percentile(rel[m], [50, 99, 100])
        print(f"| {lo:.0f}–{hi:.0f} | {m.sum()} | {q[0]:.1e} | {q[1]:.1e} | {q[2]:.1e} | "
              f"{np.mean(rel[m] > 1e-5):.2%} |")


if __name__ == "__main__":
    main()
