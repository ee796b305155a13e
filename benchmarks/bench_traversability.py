"""Traversability: nav.traversability vs a vectorised numpy/scipy formulation of the same layers.

The peer computes the same hazard layers the textbook way: plane-fit moments with
``scipy.ndimage.uniform_filter`` (one call per moment, float64, NaN-masked), step with
``maximum_filter`` / ``minimum_filter``, the same classification and cost, and inflation
with ``distance_transform_edt``. Both run on the same float32 DEM (a Mars-like synthetic
surface at −4000 m with rocks and a few holes), interleaved in one process, repeated;
medians are reported. The benchmark checks that both produce the same layers.

Also reported: the memory-bandwidth floor, ``16 bytes per cell ÷ copy bandwidth``, with
the copy bandwidth of a large ``np.copyto`` measured in the same run and counted as bytes
read + bytes written (STREAM convention; the floor for the bytes-copied convention is
twice as long and is printed too), and time per cell for several footprint sizes.

    python benchmarks/bench_traversability.py [--size 4096] [--repeats 5] [--quick]
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nav  # noqa: E402
from nav.costmap import (LETHAL_INFLATED, LETHAL_ROUGHNESS, LETHAL_SLOPE, LETHAL_STEP,  # noqa: E402
                         LETHAL_UNKNOWN)
from nav.terrain_map import TerrainMap  # noqa: E402

CELL_M = 0.03


def mars_like(n: int, seed: int = 7) -> np.ndarray:
    """float32 n×n DEM: rolling terrain + dunes + rocks + a few unknown holes, at −4000 m."""
    rng = np.random.default_rng(seed)
    from scipy.ndimage import zoom
    z = np.zeros((n, n))
    for scale, amp in ((512, 1.5), (128, 0.15), (32, 0.02), (8, 0.003)):
        m = max(2, n // scale)
        z += zoom(rng.normal(size=(m, m)), n / m, order=3)[:n, :n] * amp
    yy, xx = np.mgrid[0:n, 0:n] * CELL_M
    z += 0.15 * np.sin(xx / 1.7 + 0.3 * np.sin(yy / 3.1))
    for _ in range(n * n // 4000):                          # rocks: 5–25 cm tall, 5–30 cm wide
        r, c = rng.integers(0, n, 2)
        rad = rng.uniform(2, 10)
        h = rng.uniform(0.05, 0.25)
        k = int(3 * rad)
        r0, r1, c0, c1 = max(0, r - k), min(n, r + k + 1), max(0, c - k), min(n, c + k + 1)
        d2 = (yy[r0:r1, c0:c1] / CELL_M - r) ** 2 + (xx[r0:r1, c0:c1] / CELL_M - c) ** 2
        z[r0:r1, c0:c1] += h * np.exp(-d2 / (2 * (rad / 2) ** 2))
    z = (z - 4000.0).astype(np.float32)
    for _ in range(max(1, n // 256)):                       # occlusion holes
        r, c = rng.integers(0, n - 40, 2)
        z[r:r + rng.integers(5, 40), c:c + rng.integers(5, 40)] = np.nan
    return z


def scipy_traversability(z, cell_m, lim):
    """The same layers with scipy.ndimage filters (float64, whole-array passes)."""
    from scipy.ndimage import distance_transform_edt, maximum_filter, minimum_filter, uniform_filter

    k, ks = lim["footprint_cells"], lim["step_window_cells"]
    rows, cols = z.shape
    known = np.isfinite(z)
    m = known.astype(np.float64)
    d = np.where(known, z.astype(np.float64) - float(np.nanmedian(z[::64, ::64])), 0.0)
    jj = np.broadcast_to(np.arange(cols, dtype=np.float64)[None, :], z.shape)
    ii = np.broadcast_to(np.arange(rows, dtype=np.float64)[:, None], z.shape)
    box = float(k * k)

    def wsum(a):
        return uniform_filter(a, size=k, mode="constant", cval=0.0) * box

    n = wsum(m)
    area = wsum(np.ones(z.shape))
    sj, si = wsum(m * jj), wsum(m * ii)
    sjj, sii, sij = wsum(m * jj * jj), wsum(m * ii * ii), wsum(m * ii * jj)
    sz, sjz, siz, szz = wsum(d), wsum(d * jj), wsum(d * ii), wsum(d * d)
    cuu, cvv, cuv = n * sjj - sj * sj, n * sii - si * si, n * sij - si * sj
    cuz, cvz, czz = n * sjz - sj * sz, n * siz - si * sz, n * szz - sz * sz
    det = cuu * cvv - cuv * cuv
    with np.errstate(divide="ignore", invalid="ignore"):
        fit = (n >= 2.5) & (n >= lim["min_known_fraction"] * area - 1e-9) & (det > 1e-9 * cuu * cvv)
        ga = (cvv * cuz - cuv * cvz) / det
        gb = (cuu * cvz - cuv * cuz) / det
        ssr = czz - ga * cuz - gb * cvz
        slope = np.where(fit, np.degrees(np.arctan(np.hypot(ga, gb) / cell_m)), np.nan)
        rough = np.where(fit, np.sqrt(np.maximum(ssr, 0.0)) / n, np.nan)
    hi = maximum_filter(np.where(known, z, -np.inf), size=ks, mode="constant", cval=-np.inf)
    lo = minimum_filter(np.where(known, z, np.inf), size=ks, mode="constant", cval=np.inf)
    with np.errstate(invalid="ignore"):
        step = np.where(np.isfinite(hi), hi.astype(np.float64) - lo, np.nan)
        unknown = ~known | np.isnan(slope)
        reason = ((slope > lim["max_slope_deg"]) * LETHAL_SLOPE | (step > lim["max_step_m"]) * LETHAL_STEP
                  | (rough > lim["max_roughness_m"]) * LETHAL_ROUGHNESS).astype(np.uint8)
    if lim["unknown"] == "lethal":
        reason |= (unknown * LETHAL_UNKNOWN).astype(np.uint8)
    cost = (1 + lim["slope_weight"] * (slope / lim["max_slope_deg"]) ** 2
            + lim["step_weight"] * (step / lim["max_step_m"]) ** 2
            + lim["roughness_weight"] * (rough / lim["max_roughness_m"]) ** 2)
    cost = np.where(unknown, lim["unknown_cost"], cost)
    src = reason != 0
    rc = lim["inflation_radius_cells"]
    if src.any() and rc >= 1:
        inflated = (distance_transform_edt(~src) <= rc * (1 + 1e-9)) & ~src
        reason[inflated] = LETHAL_INFLATED
        src |= inflated
    cost = np.where(src, np.inf, cost).astype(np.float32)
    return slope.astype(np.float32), step.astype(np.float32), rough.astype(np.float32), cost, reason


def stage_times(terrain, rover, kw, repeats):
    """Median seconds of the wrapper's three stages: layer kernel, inflation, fresh outputs.

    The layer kernel writes into outputs touched before (no page faults); inflation
    runs on a fresh copy of its input each time; "fresh outputs" is the first touch
    of five new output arrays (17 bytes per cell), which the wrapper pays too.
    """
    import importlib
    trav = importlib.import_module("nav.traversability")
    kern = trav._kernels()
    cm = nav.traversability(terrain, rover, **kw)
    lim, hz, z = cm.limits, dataclasses.replace(rover.hazards, **kw), terrain.elevation_m
    outs = [np.zeros(z.shape, np.float32) for _ in range(4)] + [np.zeros(z.shape, np.uint8)]
    zref = trav._reference_height(z)

    def layers():
        kern._compute_layers(z, zref, terrain.cell_size_m, lim["footprint_cells"] // 2,
                             lim["step_window_cells"] // 2, lim["min_known_fraction"], hz.max_slope_deg,
                             hz.max_step_m, hz.max_roughness_m, hz.slope_weight, hz.step_weight,
                             hz.roughness_weight, hz.unknown == "lethal", hz.unknown_cost, LETHAL_SLOPE,
                             LETHAL_STEP, LETHAL_ROUGHNESS, LETHAL_UNKNOWN, trav._STRIPE_COLS,
                             max(2 * lim["footprint_cells"], 32), *outs)

    radius2 = trav._radius2_cells(lim["inflation_radius_m"], terrain.cell_size_m)
    block = min(z.shape[0], max(trav._INFLATE_BLOCK_ROWS, math.isqrt(radius2) + 1))

    def inflation():
        reason, cost = outs[4].copy(), outs[3].copy()
        return _timed(lambda: kern._inflate_lethal(reason, cost, radius2, LETHAL_INFLATED, block))

    def fresh():
        for dt in (np.float32,) * 4 + (np.uint8,):
            np.empty(z.shape, dt).fill(0)

    layers()
    t = {"layer kernel (slope, step, roughness, cost, flags)": [], "inflation": [],
         "first touch of 5 fresh outputs": []}
    for _ in range(repeats):
        t["layer kernel (slope, step, roughness, cost, flags)"].append(_timed(layers))
        t["inflation"].append(inflation())
        t["first touch of 5 fresh outputs"].append(_timed(fresh))
    return {k: statistics.median(v) for k, v in t.items()}


def copy_bandwidth(nbytes: int = 1 << 28, repeats: int = 5) -> float:
    """Bytes read + written per second by np.copyto of a large buffer (best of ``repeats``)."""
    a = np.ones(nbytes // 8)
    b = np.empty_like(a)
    np.copyto(b, a)
    best = min(_timed(lambda: np.copyto(b, a)) for _ in range(repeats))
    return 2 * a.nbytes / best


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="1024² map, 2 repeats, skip the peer's big runs")
    a = ap.parse_args()
    if a.quick:
        a.size, a.repeats = 1024, 2
    n = a.size
    rover = nav.load_rover("osr")
    trav = nav.traversability
    z = mars_like(n)
    terrain = TerrainMap(z, CELL_M, source="bench mars_like")
    kw = dict(footprint_m=21 * CELL_M)
    cm = trav(terrain, rover, **kw)                          # compile / warm up
    lim = cm.limits
    print(f"# traversability, {n}x{n} float32 DEM (cell {CELL_M} m, {np.isnan(z).mean():.2%} unknown), "
          f"rover {rover.name}: footprint {lim['footprint_cells']} cells, step window "
          f"{lim['step_window_cells']} cells, inflation {lim['inflation_radius_cells']:.1f} cells; "
          f"one core, median of {a.repeats}\n")

    # --- agreement with the peer
    peer = scipy_traversability(z, CELL_M, lim)
    names = ("slope_deg", "step_m", "roughness_m")
    for name, ours, theirs in zip(names, (cm.slope_deg, cm.step_m, cm.roughness_m), peer[:3]):
        both = np.isfinite(ours) & np.isfinite(theirs)
        same_nan = float(np.mean(np.isnan(ours) == np.isnan(theirs)))
        print(f"agreement {name}: max |diff| {np.max(np.abs(ours[both] - theirs[both])):.2e}, "
              f"same NaN mask {same_nan:.4%}")
    print(f"agreement reason: {np.mean(cm.reason == peer[4]):.4%} of cells equal; lethal "
          f"{np.mean(np.isinf(cm.cost)):.2%} (ours) vs {np.mean(np.isinf(peer[3])):.2%} (peer)\n")

    # --- timing, interleaved
    bw = copy_bandwidth()
    t_ours, t_peer = [], []
    for _ in range(a.repeats):
        t_ours.append(_timed(lambda: trav(terrain, rover, **kw)))
        t_peer.append(_timed(lambda: scipy_traversability(z, CELL_M, lim)))
        bw = max(bw, copy_bandwidth(repeats=1))
    ours, theirs = statistics.median(t_ours), statistics.median(t_peer)
    cells = z.size
    floor = 16 * cells / bw
    print("| implementation | time (s) | ns / cell | vs nav |")
    print("|---|---:|---:|---:|")
    print(f"| nav.traversability (Numba) | {ours:.3f} | {ours / cells * 1e9:.1f} | 1.0× |")
    print(f"| numpy/scipy.ndimage peer | {theirs:.3f} | {theirs / cells * 1e9:.1f} | {theirs / ours:.1f}× slower |")
    print()
    print("| memory-bandwidth floor | value |")
    print("|---|---:|")
    print(f"| np.copyto bandwidth (read + write) | {bw / 1e9:.1f} GB/s |")
    print(f"| floor: 16 B/cell ÷ bandwidth | {floor * 1e3:.1f} ms |")
    print(f"| nav.traversability / floor | {ours / floor:.1f}× → **{100 * floor / ours:.1f} %** of the floor |")
    print(f"| same, bandwidth counted as bytes copied | {100 * 2 * floor / ours:.1f} % |")
    print()

    # --- where the time goes (the wrapper's stages, timed apart on the same map)
    print("| stage | ns / cell |")
    print("|---|---:|")
    for name, t in stage_times(terrain, rover, kw, a.repeats).items():
        print(f"| {name} | {t / cells * 1e9:.1f} |")
    print()

    # --- time per cell vs footprint
    print("| footprint (cells) | nav ns/cell | peer ns/cell |")
    print("|---:|---:|---:|")
    sub = terrain if n <= 2048 else TerrainMap(z[:2048, :2048], CELL_M)
    for k in (5, 21, 61):
        fkw = dict(footprint_m=k * CELL_M)
        trav(sub, rover, **fkw)
        tt = statistics.median(_timed(lambda: trav(sub, rover, **fkw)) for _ in range(a.repeats))
        lim_k = trav(sub, rover, **fkw).limits
        tp = statistics.median(_timed(lambda: scipy_traversability(sub.elevation_m, CELL_M, lim_k))
                               for _ in range(max(1, a.repeats // 2)))
        print(f"| {k} | {tt / sub.elevation_m.size * 1e9:.1f} | {tp / sub.elevation_m.size * 1e9:.1f} |")


if __name__ == "__main__":
    main()
