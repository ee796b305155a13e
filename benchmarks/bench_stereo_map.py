"""Stereo terrain mapping (perception.stereo_map): time per 640x480 frame by stage on one core,
the Numba rasteriser against numpy/scipy peers on the same points, and mapping accuracy on
rendered Mars and Moon traverses against the simulator's true DEM (height error, rocks above
the step limit present in the map by range, behaviour under pose drift).

One thread (NUMBA_NUM_THREADS=1, cv2.setNumThreads(1)). Timings are best-of-N and medians.

    NUMBA_NUM_THREADS=1 python benchmarks/bench_stereo_map.py [--repeats 9] [--quick]
"""
from __future__ import annotations

import argparse
import importlib.util
import math
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nav.config import load_rover  # noqa: E402
from perception.stereo_map import FusionParams, GlobalMap, StereoMapParams, StereoMapper, rasterize  # noqa: E402
from sim.camera import StereoRenderer, project_points  # noqa: E402
from sim.frames import T_world_body, rot_z, transform  # noqa: E402
from sim.recording import clear_zones_along, course, record_traverse  # noqa: E402
from sim.terrain import Rocks, add_rocks, generate_terrain  # noqa: E402
from sim.world import World  # noqa: E402

_spec = importlib.util.spec_from_file_location("_ref_stereo_map", ROOT / "tests" / "perception" / "_ref_stereo_map.py")
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)

ROVER = load_rover("osr")
CAM = ROVER.camera
MAX_STEP_M = ROVER.hazards.max_step_m
CELL_M = 0.1


def _times(fn, repeats):
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


# ------------------------------------------------------------------------------ peers
def numpy_top_layer(xyz, var, ox, oy, cell, shape, gate_k=2.0, layer_m=0.02, top_fraction=0.1, min_points=2):
    """The same top-layer median rule, vectorised with numpy (sorts instead of a kernel)."""
    rows, cols = shape
    ok = np.isfinite(var) & np.isfinite(xyz).all(axis=1)
    c = np.floor((xyz[:, 0] - ox) / cell)
    r = np.floor((xyz[:, 1] - oy) / cell)
    ok &= (c >= 0) & (c < cols) & (r >= 0) & (r < rows)
    idx = (r[ok] * cols + c[ok]).astype(np.int64)
    h = xyz[ok, 2]
    s = gate_k * np.sqrt(var[ok])
    v = var[ok]
    lo = h - s
    up = h + s + layer_m
    m = rows * cols
    k = np.bincount(idx, minlength=m)
    start = np.concatenate([[0], np.cumsum(k)[:-1]])
    order = np.lexsort((lo, idx))
    q = np.minimum(k, np.maximum(min_points, np.ceil(top_fraction * k).astype(np.int64)))
    good = k >= min_points
    floor_ = np.full(m, np.inf)
    floor_[good] = lo[order][(start + k - q)[good]]
    use = up >= floor_[idx]
    idx_u, h_u, v_u = idx[use], h[use], v[use]
    n = np.bincount(idx_u, minlength=m)
    su = np.concatenate([[0], np.cumsum(n)[:-1]])
    hs = h_u[np.lexsort((h_u, idx_u))]
    has = good & (n > 0)
    med = np.full(m, np.nan)
    a = hs[(su + (n - 1) // 2)[has]]
    b = hs[(su + n // 2)[has]]
    med[has] = 0.5 * (a + b)
    var_out = np.full(m, np.inf)
    var_out[has] = np.maximum(np.bincount(idx_u, weights=v_u, minlength=m)[has] / n[has], 0.005 ** 2)
    return med.reshape(shape), var_out.reshape(shape)


def scipy_binned(xyz, ox, oy, cell, shape, statistic):
    from scipy.stats import binned_statistic_2d

    rows, cols = shape
    res = binned_statistic_2d(xyz[:, 1], xyz[:, 0], xyz[:, 2], statistic=statistic,
                              bins=[rows, cols], range=[[oy, oy + rows * cell], [ox, ox + cols * cell]])
    return res.statistic


# ------------------------------------------------------------------------------ sections
def section_speed(repeats):
    cv2.setNumThreads(1)
    w = World.generate("mars", size_m=30.0, cell_size_m=0.05, seed=11)
    rend = StereoRenderer(w, CAM)
    rng = np.random.default_rng(0)
    frames = []
    for i in range(3):
        x, y, yaw = rng.uniform(10, 20), rng.uniform(10, 20), rng.uniform(-3, 3)
        frames.append(rend.render(T_world_body(x, y, float(w.terrain.height_at((x, y))), yaw, 0, 0),
                                  rng=np.random.default_rng(i)))
    g = GlobalMap.like(w.terrain.resampled(CELL_M))
    rows = []
    for name, params in (("BM (default)", StereoMapParams()), ("SGBM 3-way", StereoMapParams(matcher="sgbm"))):
        m = StereoMapper.from_camera(CAM, params)
        st = {k: [] for k in ("disp", "pts", "local", "merge")}
        npts, ncells = [], []
        for fr in frames:
            m.map_pair(fr.left, fr.right, fr.T_world_left, grid=g)     # warm (compile, allocations)
            d = m.disparity(fr.left, fr.right)
            pts = m.points(d)
            lm = m.local_map(pts, fr.T_world_left, grid=g)
            st["disp"] += _times(lambda: m.disparity(fr.left, fr.right), repeats)
            st["pts"] += _times(lambda: m.points(d), repeats)
            st["local"] += _times(lambda: m.local_map(pts, fr.T_world_left, grid=g), repeats)
            st["merge"] += _times(lambda: g.merge(lm), repeats)
            npts.append(len(pts))
            ncells.append(lm.n_known)
        rows.append((name, st, int(np.mean(npts)), int(np.mean(ncells))))
    print("Time per 640x480 frame on one core, by stage: best of "
          f"{repeats} runs on each of 3 Mars frames, the median over frames (median of all runs in brackets: "
          "on a shared machine the best is the better estimate); 0.1 m cells, 10 m range:\n")
    print("| matcher | disparity (ms) | points (ms) | local map: world + rasterise (ms) | merge (ms) | total (ms) "
          "| frames/s | points | cells mapped |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, st, npts, ncells in rows:
        best = {k: statistics.median(min(v[i:i + repeats]) for i in range(0, len(v), repeats)) for k, v in st.items()}
        med = {k: statistics.median(v) for k, v in st.items()}
        tot = sum(best.values())
        print(f"| {name} | {best['disp'] * 1e3:.1f} ({med['disp'] * 1e3:.1f}) | {best['pts'] * 1e3:.2f} "
              f"({med['pts'] * 1e3:.2f}) | {best['local'] * 1e3:.2f} ({med['local'] * 1e3:.2f}) | "
              f"{best['merge'] * 1e3:.3f} | {tot * 1e3:.1f} | {1 / tot:.0f} | {npts:,} | {ncells:,} |")
    print()
    return frames, g


def section_peers(frames, g, repeats):
    m = StereoMapper.from_camera(CAM)
    p = m.params
    print("Rasterisation of the same world points (one frame's BM points, ~200k) into 0.1 m cells; "
          "best of repeats; ratio = peer time / rovernav time:\n")
    print("| implementation | statistic | time (ms) | ratio | agrees with rovernav |")
    print("|---|---|---:|---:|---|")
    fr = frames[0]
    pts = m.points(m.disparity(fr.left, fr.right))
    xyz, var = m.world_points(pts, fr.T_world_left)
    lm = rasterize(xyz, var, cell_size_m=CELL_M, gate_sigma=p.gate_sigma, layer_m=p.layer_m,
                   top_fraction=p.top_fraction, min_points=p.min_points, min_sigma_m=p.min_sigma_m)
    ox, oy = lm.origin_xy_m
    kw = dict(cell_size_m=CELL_M, origin_xy_m=(ox, oy), shape=lm.shape, gate_sigma=p.gate_sigma, layer_m=p.layer_m,
              top_fraction=p.top_fraction, min_points=p.min_points, min_sigma_m=p.min_sigma_m)
    t_ours = min(_times(lambda: rasterize(xyz, var, **kw), repeats))
    print(f"| rovernav `rasterize` (Numba) | top-layer median + variance | {t_ours * 1e3:.2f} | 1.00 | — |")
    h_np, _ = numpy_top_layer(xyz, var, ox, oy, CELL_M, lm.shape, p.gate_sigma, p.layer_m, p.top_fraction,
                              p.min_points)
    t_np = min(_times(lambda: numpy_top_layer(xyz, var, ox, oy, CELL_M, lm.shape, p.gate_sigma, p.layer_m,
                                              p.top_fraction, p.min_points), repeats))
    same = np.allclose(h_np, lm.height_m, atol=1e-5, equal_nan=True)
    print(f"| numpy (lexsort + bincount) | the same rule | {t_np * 1e3:.2f} | {t_np / t_ours:.1f} | "
          f"{'yes' if same else 'NO'} |")
    use = np.isfinite(var)
    xyz_u = xyz[use]
    scipy_binned(xyz_u[:10], ox, oy, CELL_M, lm.shape, "mean")        # import scipy.stats outside the timing
    for stat in ("mean", "max", "median"):
        t = min(_times(lambda: scipy_binned(xyz_u, ox, oy, CELL_M, lm.shape, stat), max(2, repeats // 3)))
        print(f"| scipy `binned_statistic_2d` | {stat} only | {t * 1e3:.2f} | {t / t_ours:.1f} | (different rule) |")
    print()


def _traverse(planet, length_m, seed, every_m):
    wp = course("s_curve", length_m, start_xy=(6.0, 12.0))
    w = World.generate(planet, size_m=(length_m + 14.0, 24.0), cell_size_m=0.05, seed=seed,
                       clear_zones=clear_zones_along(wp, 0.7))
    rec = record_traverse(w, ROVER, wp, frame_every_m=every_m)
    return w, rec


def _map(rec, truth, params, use_truth_depth=False, fusion=None, pose=None):
    m = StereoMapper.from_camera(CAM, params)
    g = GlobalMap.like(truth, params=fusion)
    for k, fr in enumerate(rec.frames):
        pts = m.points_from_depth(fr.depth_m) if use_truth_depth else m.points(m.disparity(fr.left, fr.right))
        T = fr.T_world_left if pose is None else pose(k) @ fr.T_world_left
        g.merge(m.local_map(pts, T, grid=g), stamp=rec.frame_truth[k].distance_m)
    return g


def _cell_distance_to_path(g, rec):
    cams = np.array([fr.T_world_left[:2, 3] for fr in rec.frames])
    rr, cc = np.nonzero(g.known)
    xy = np.column_stack([g.origin_xy_m[0] + (cc + 0.5) * CELL_M, g.origin_xy_m[1] + (rr + 0.5) * CELL_M])
    d = np.full(len(xy), np.inf)
    for c in cams:
        d = np.minimum(d, np.hypot(xy[:, 0] - c[0], xy[:, 1] - c[1]))
    return rr, cc, d


def _rock_table(w, rec, g, truth, ranges):
    rocks = w.rocks
    tall = np.nonzero(rocks.height_m > MAX_STEP_M)[0]
    sub = rocks[tall]
    tops = [float(w.terrain.height_at((r.x_m, r.y_m))) for r in sub]
    overlap = StereoMapParams().num_disparities + StereoMapParams().effective_block_size // 2
    idx, closest = ref.visible_rocks(rec.frames, CAM, sub, tops, ranges[-1], overlap, project_points)
    out = []
    for lo, hi in zip(ranges[:-1], ranges[1:]):
        n = ok = 0
        for i, c in zip(idx, closest):
            if not lo <= c < hi:
                continue
            r = sub[int(i)]
            ground = tops[int(i)] - r.height_m
            rise = ref.rock_rise_m(g.height_m, g.origin_xy_m, CELL_M, r, ground, CELL_M)
            grid_rise = ref.rock_rise_m(truth.elevation_m, truth.origin_xy_m, CELL_M, r, ground, CELL_M)
            n += 1
            ok += bool(rise >= min(MAX_STEP_M, grid_rise) - 0.03)
        out.append((n, ok))
    return out


def section_accuracy(quick):
    length = 8.0 if quick else 20.0
    every = 0.3
    bands = (0.0, 2.0, 4.0, 6.0, 8.0)
    rock_ranges = (0.0, 4.0, 6.0, 8.0)
    print(f"Mapping accuracy on rendered traverses ({length:g} m s-curve, a stereo pair every {every} m, OSR "
          "camera: 12 cm baseline, 640x480, 70°), 0.1 m cells, against the true DEM averaged over each cell. "
          "Cells binned by how close the rover's camera came to them:\n")
    print("| terrain | depth source | frames | cells mapped | median abs. error (cm) by distance "
          + " / ".join(f"{lo:g}–{hi:g} m" for lo, hi in zip(bands[:-1], bands[1:]))
          + " | all ≤ 8 m: median / p95 / bias (cm) | ms per frame |")
    print("|---|---|---:|---:|---|---|---:|")
    rock_rows = []
    for planet, seed in (("mars", 3), ("moon", 3)):
        w, rec = _traverse(planet, length, seed, every)
        truth = w.terrain.resampled(CELL_M)
        for name, params, use_truth in (("true depth (rasteriser only)", StereoMapParams(), True),
                                        ("OpenCV BM (default)", StereoMapParams(), False),
                                        ("OpenCV SGBM 3-way", StereoMapParams(matcher="sgbm"), False)):
            if quick and name.startswith("OpenCV SGBM"):
                continue
            t0 = time.perf_counter()
            g = _map(rec, truth, params, use_truth)
            dt = (time.perf_counter() - t0) / len(rec.frames)
            rr, cc, d = _cell_distance_to_path(g, rec)
            e = g.height_m[rr, cc].astype(np.float64) - truth.elevation_m[rr, cc]
            meds = []
            for lo, hi in zip(bands[:-1], bands[1:]):
                b = (d >= lo) & (d < hi)
                meds.append(f"{np.median(np.abs(e[b])) * 100:.2f}" if b.any() else "—")
            a = d < bands[-1]
            print(f"| {planet} | {name} | {len(rec.frames)} | {len(e):,} | {' / '.join(meds)} | "
                  f"{np.median(np.abs(e[a])) * 100:.2f} / {np.percentile(np.abs(e[a]), 95) * 100:.1f} / "
                  f"{np.median(e[a]) * 100:+.2f} | {dt * 1e3:.0f} |")
            if name.startswith("OpenCV BM"):
                rock_rows.append((planet, _rock_table(w, rec, g, truth, rock_ranges)))
    print()
    print(f"Rocks taller than the step limit ({MAX_STEP_M:g} m) that the cameras saw (top un-occluded, in the "
          "stereo overlap), by the closest range they were seen from; *present* = the map stands over the rock "
          f"by at least min(step limit, the DEM's 10 cm-cell height) − 3 cm (BM):\n")
    print("| terrain | " + " | ".join(f"{lo:g}–{hi:g} m" for lo, hi in zip(rock_ranges[:-1], rock_ranges[1:])) + " |")
    print("|---|" + "---:|" * (len(rock_ranges) - 1))
    for planet, tab in rock_rows:
        print(f"| {planet} | " + " | ".join(f"{ok}/{n}" if n else "—" for n, ok in tab) + " |")
    print()


def section_placed_rocks():
    """The test scene: rocks of known height 3-11 m ahead of a rover at 1.5, 2.5, 3.5 m."""
    print("Placed rocks (the test scene: heights 0.10–0.40 m, diameter 2 × height, seen from 3 poses 1 m apart); "
          "map rise over each rock vs its true height and the DEM's 10 cm-cell height (BM):\n")
    print("| terrain | rock height (m) | closest range (m) | DEM on 10 cm cells (m) | map (m) |")
    print("|---|---:|---:|---:|---:|")
    for planet in ("mars", "moon"):
        gen = generate_terrain("mars" if planet == "mars" else "moon", size_m=(16.0, 16.0), cell_size_m=0.05, seed=4,
                               rock_cfa=0.0)
        hs = np.array([0.10, 0.13, 0.16, 0.18, 0.20, 0.25, 0.30, 0.35, 0.16, 0.20, 0.25, 0.30, 0.40, 0.17, 0.22])
        xs = np.linspace(3.5, 10.5, len(hs))
        ys = 8.0 + np.array([-1.5, 1.2, -0.6, 1.8, 0.3, -1.9, 1.0, -0.8, 2.2, -0.2, 1.5, -2.4, 0.6, -1.2, 2.0])
        rocks = Rocks(x_m=xs, y_m=ys, diameter_m=2.0 * hs, height_m=hs)
        terrain = add_rocks(gen.terrain, rocks)
        w = World(terrain, planet=planet, rocks=rocks)
        rend = StereoRenderer(w, CAM)
        frames = [rend.render(T_world_body(x, 8.0, float(terrain.height_at((x, 8.0))), 0.0, 0, 0),
                              rng=np.random.default_rng(i)) for i, x in enumerate([1.5, 2.5, 3.5])]
        truth = terrain.resampled(CELL_M)
        m = StereoMapper.from_camera(CAM)
        g = GlobalMap.like(truth)
        for k, fr in enumerate(frames):
            g.merge(m.map_pair(fr.left, fr.right, fr.T_world_left, grid=g), stamp=float(k))
        tops = [float(terrain.height_at((r.x_m, r.y_m))) for r in rocks]
        overlap = m.params.num_disparities + m.params.effective_block_size // 2
        idx, closest = ref.visible_rocks(frames, CAM, rocks, tops, 12.0, overlap, project_points)
        for i, c in zip(idx, closest):
            r = rocks[int(i)]
            ground = float(gen.terrain.height_at((r.x_m, r.y_m)))
            rise = ref.rock_rise_m(g.height_m, g.origin_xy_m, CELL_M, r, ground, CELL_M)
            grid = ref.rock_rise_m(truth.elevation_m, truth.origin_xy_m, CELL_M, r, ground, CELL_M)
            print(f"| {planet} | {r.height_m:.2f} | {c:.1f} | {grid:.3f} | {rise:.3f} |")
    print()


def section_drift(quick):
    length = 8.0 if quick else 12.0
    w, rec = _traverse("mars", length, 5, 0.3)
    truth = w.terrain.resampled(CELL_M)
    dist = np.array([t.distance_m for t in rec.frame_truth])

    def drift(rate_xy, rate_z, yaw_rate):
        return lambda k: transform(rot_z(yaw_rate * dist[k]), (rate_xy * dist[k], 0.0, rate_z * dist[k]))

    print(f"Pose drift ({length:g} m Mars traverse, BM): the map is built at drifting pose estimates and compared, "
          "within 5 m of the final pose, with the true DEM seen through the final pose error (what the planner "
          "needs). Median abs. error (cm):\n")
    print("| fusion | no drift | drift 3 %/m xy, 1 %/m z, 0.3°/m yaw |")
    print("|---|---:|---:|")
    for label, fp in (("no drift allowance (q = 0)", FusionParams(drift_var_m2=0.0)),
                      ("default (q = 1e-3 m²/m)", FusionParams()),
                      ("latest view only (q = 10)", FusionParams(drift_var_m2=10.0))):
        cells = []
        for pose in (drift(0.0, 0.0, 0.0), drift(0.03, 0.01, math.radians(0.3))):
            g = _map(rec, truth, StereoMapParams(), fusion=fp, pose=pose)
            D = pose(len(rec.frames) - 1)
            Dinv = np.linalg.inv(D)
            rr, cc = np.nonzero(g.known)
            xy = np.column_stack([g.origin_xy_m[0] + (cc + 0.5) * CELL_M, g.origin_xy_m[1] + (rr + 0.5) * CELL_M])
            cam = (D @ rec.frames[-1].T_world_left)[:2, 3]
            near = np.hypot(xy[:, 0] - cam[0], xy[:, 1] - cam[1]) < 5.0
            P = np.column_stack([xy, np.zeros(len(xy)), np.ones(len(xy))]) @ Dinv.T
            zt = truth.height_at(P[:, :2]) + D[2, 3]
            e = g.height_m[rr, cc] - zt
            ok = near & np.isfinite(e)
            cells.append(f"{np.median(np.abs(e[ok])) * 100:.2f}")
        print(f"| {label} | {cells[0]} | {cells[1]} |")
    print()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--quick", action="store_true", help="fewer repeats, shorter traverses, no SGBM accuracy")
    a = ap.parse_args()
    repeats = 3 if a.quick else a.repeats
    cv2.setNumThreads(1)
    print(f"# stereo terrain mapping: {CAM.width_px}x{CAM.height_px}, baseline {CAM.baseline_m:g} m, "
          f"fx {CAM.fx_px:.0f} px; one core\n")
    frames, g = section_speed(repeats)
    section_peers(frames, g, repeats)
    section_accuracy(a.quick)
    if not a.quick:
        section_placed_rocks()
    section_drift(a.quick)


if __name__ == "__main__":
    main()
