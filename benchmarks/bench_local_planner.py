"""Local arc planner: time per plan against the number of candidates, the cheap pass against the
expensive body check, and both against a pure-numpy formulation of the same computations.

The peers compute exactly what the Numba kernels compute, vectorised the textbook way:

* cheap pass — every candidate's samples transformed to the world at once, cell lookups by fancy
  indexing, the first lethal sample found with ``argmax``, the footprint cost integrated with a
  mask (unknown-vs-hazard tested per blocked candidate);
* body check — the OSR (rocker-bogie) settled at every pose of the checked candidates at once:
  bilinear heights of every wheel-envelope sample and belly point, the rocker-bogie attitude, belly
  clearance, tilt and wheel rises, then the first failing pose of each candidate.

The benchmark checks that the peers give the same statuses, scores and failing poses. Inputs:
a generated Mars terrain (12 m x 12 m at 0.05 m, rocks at 15 % CFA), its traversability cost map
and the Field D* cost-to-go to a goal 9 m away; plans at 30 random free poses; medians reported.

    python benchmarks/bench_local_planner.py [--repeats 5] [--quick]
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nav  # noqa: E402
from nav import _local_kernels as K  # noqa: E402
from nav.local_planner import ArcParams, ArcPlanner, CostToGo  # noqa: E402

SIZE_M = 12.0
CELL_M = 0.05
GOAL = (10.5, 6.0)
# candidate sets: (label, params) — ENav evaluates ~1,700 arcs per cycle
SETS = [
    ("~300", ArcParams(lengths_m=(1.0, 2.0, 3.0), n_curvatures=21, n_curvatures_second=5,
                       point_turns_deg=(90.0, 180.0), n_curvatures_after_turn=3)),
    ("default", ArcParams()),
    ("~1,700 (ENav)", ArcParams(n_curvatures=41, n_curvatures_second=17, n_curvatures_after_turn=9)),
    ("~3,500", ArcParams(n_curvatures=61, n_curvatures_second=25, n_curvatures_after_turn=11)),
]


# ------------------------------------------------------------------------------------- numpy peers
def numpy_scores(pl: ArcPlanner, pose, tm, cost, reason, ctg_end, heading, penalty):
    """The cheap pass, vectorised (no margin escape: the benchmark poses are free)."""
    p = pl.params
    C = pl.candidates
    x, y, yaw = pose
    n, m = C.n_samples.shape[0], C.xyt.shape[1]
    valid = np.arange(m)[None, :] < C.n_samples[:, None]
    c, s = math.cos(yaw), math.sin(yaw)
    bx, by, bt = C.xyt[..., 0], C.xyt[..., 1], C.xyt[..., 2]
    wx = x + c * bx - s * by
    wy = y + s * bx + c * by
    th = yaw + bt
    ox, oy = tm.origin_xy_m
    cs = tm.cell_size_m
    rows, cols = tm.shape
    gx, gy = (wx - ox) / cs, (wy - oy) / cs
    infl = pl.profile.inflation_radius_m
    e = max(infl, pl._body.reach_m) / cs
    inside = (gx >= 0) & (gx < cols) & (gy >= 0) & (gy < rows)
    edge_ok = (gx >= e) & (gx <= cols - e) & (gy >= e) & (gy <= rows - e)
    r = np.clip(gy.astype(np.int64), 0, rows - 1)
    cc = np.clip(gx.astype(np.int64), 0, cols - 1)
    lethal = ~np.isfinite(cost[r, cc])
    bad = valid & (~inside | ~edge_ok | lethal)
    first = np.where(bad.any(axis=1), bad.argmax(axis=1), m)
    status = np.zeros(n, dtype=np.int64)
    blocked = first < m
    idx = np.flatnonzero(blocked)
    fi = first[idx]
    off = ~inside[idx, fi] | (~edge_ok[idx, fi] & ~lethal[idx, fi])
    status[idx[off]] = K.OFF_MAP
    uc = int(math.ceil(infl / cs - 1e-9))
    z = tm.elevation_m
    for i, j in zip(idx[~off], fi[~off]):
        rr, c2 = r[i, j], cc[i, j]
        win = z[max(rr - uc, 0):rr + uc + 1, max(c2 - uc, 0):c2 + uc + 1]
        status[i] = K.BLOCKED_UNKNOWN if np.isnan(win).any() else K.BLOCKED_HAZARD
    block_s = np.where(blocked, C.s_m[np.arange(n), np.minimum(first, m - 1)], np.inf)
    fp = np.zeros((n, m))
    for lat in pl._body.lateral:
        lx = wx - np.sin(th) * lat
        ly = wy + np.cos(th) * lat
        qx, qy = (lx - ox) / cs, (ly - oy) / cs
        ok = (qx >= 0) & (qx < cols) & (qy >= 0) & (qy < rows)
        v = cost[np.clip(qy.astype(np.int64), 0, rows - 1), np.clip(qx.astype(np.int64), 0, cols - 1)]
        fp += np.where(ok & np.isfinite(v), v, p.side_hazard_cost)
    acc = (C.weight_m * fp / len(pl._body.lateral) * valid).sum(axis=1)
    free = status == K.FREE
    status[free & ~np.isfinite(ctg_end)] = K.NO_ROUTE
    free = status == K.FREE
    score = np.where(free, p.cost_weight * acc + p.cost_to_go_weight * ctg_end + penalty + heading, np.inf)
    return status, score, np.where(free | (status == K.NO_ROUTE), acc, np.inf), block_s


def _bilinear(z, ox, oy, cs, x, y):
    rows, cols = z.shape
    gx, gy = (x - ox) / cs, (y - oy) / cs
    out_of = ~((gx >= 0) & (gx < cols) & (gy >= 0) & (gy < rows))
    cf = np.clip(gx - 0.5, 0, cols - 1.0)
    rf = np.clip(gy - 0.5, 0, rows - 1.0)
    c0 = np.minimum(cf.astype(np.int64), max(cols - 2, 0))
    r0 = np.minimum(rf.astype(np.int64), max(rows - 2, 0))
    c1, r1 = np.minimum(c0 + 1, cols - 1), np.minimum(r0 + 1, rows - 1)
    tc, tr = cf - c0, rf - r0
    zz = z.astype(np.float64, copy=False)
    h = (zz[r0, c0] * (1 - tr) * (1 - tc) + zz[r0, c1] * (1 - tr) * tc + zz[r1, c0] * tr * (1 - tc)
         + zz[r1, c1] * tr * tc)
    return np.where(out_of, np.nan, h)


def numpy_check_rocker_bogie(pl: ArcPlanner, pose, tm, idx):
    """The body check of candidates ``idx`` for a rocker-bogie, every pose at once (no turns in place)."""
    C = pl.candidates
    b = pl._body
    prm = b.prm
    belly, n_env = pl._belly(tm.cell_size_m)
    stride = max(1, int(round(pl.params.check_step_m / pl.params.sample_step_m)))
    x0, y0, yaw0 = pose
    c0, s0 = math.cos(yaw0), math.sin(yaw0)
    ox, oy = tm.origin_xy_m
    cs = tm.cell_size_m
    z = tm.elevation_m
    # poses: every stride-th sample and the last
    rows_i, rows_j = [], []
    for i in idx:
        n = int(C.n_samples[i])
        js = list(range(0, n, stride))
        if js[-1] != n - 1:
            js.append(n - 1)
        rows_i += [i] * len(js)
        rows_j += js
    pi, pj = np.array(rows_i, dtype=np.int64), np.array(rows_j, dtype=np.int64)
    bx, by, bt = C.xyt[pi, pj, 0], C.xyt[pi, pj, 1], C.xyt[pi, pj, 2]
    X = x0 + c0 * bx - s0 * by
    Y = y0 + s0 * bx + c0 * by
    yaw = yaw0 + bt
    kap = C.curvature_per_m[pi, pj]
    geo = b.geo
    r = prm[K.P_RADIUS]
    cy, sy = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
    wxp = X[:, None] + cy * geo[:, 0] - sy * geo[:, 1]           # (P, 6) contact positions
    wyp = Y[:, None] + sy * geo[:, 0] + cy * geo[:, 1]
    steer = np.where(geo[:, 2] != 0, np.arctan2(kap[:, None] * geo[:, 0], 1.0 - kap[:, None] * geo[:, 1]), 0.0)
    a = yaw[:, None] + steer
    ux, uy = np.cos(a), np.sin(a)
    h0 = _bilinear(z, ox, oy, cs, wxp, wyp)
    d = r * np.arange(1, n_env + 1) / n_env                      # (K,)
    drop = r - np.sqrt(np.maximum(r * r - d * d, 0.0))
    hf = _bilinear(z, ox, oy, cs, wxp[..., None] + d * ux[..., None], wyp[..., None] + d * uy[..., None])
    hb = _bilinear(z, ox, oy, cs, wxp[..., None] - d * ux[..., None], wyp[..., None] - d * uy[..., None])
    env = np.maximum(h0, np.maximum(hf, hb).__sub__(drop).max(axis=-1))
    step = (hf.max(axis=-1) - h0).max(axis=1)
    unknown = np.isnan(h0).any(axis=1) | np.isnan(hf).any(axis=(1, 2)) | np.isnan(hb).any(axis=(1, 2))
    xb = 0.5 * (geo[1, 0] + geo[2, 0])
    sl_l = (0.5 * (env[:, 1] + env[:, 2]) - env[:, 0]) / (xb - geo[0, 0])
    sl_r = (0.5 * (env[:, 4] + env[:, 5]) - env[:, 3]) / (xb - geo[3, 0])
    zp_l = env[:, 0] - geo[0, 0] * sl_l
    zp_r = env[:, 3] - geo[3, 0] * sl_r
    sx = 0.5 * (sl_l + sl_r)
    syy = (zp_l - zp_r) / (geo[0, 1] - geo[3, 1])
    z0 = zp_r - geo[3, 1] * syy
    nz = 1.0 / np.sqrt(1 + sx * sx + syy * syy)
    qx = X[:, None] + cy * belly[:, 0] - sy * belly[:, 1]
    qy = Y[:, None] + sy * belly[:, 0] + cy * belly[:, 1]
    hb_ = _bilinear(z, ox, oy, cs, qx, qy)
    cl = (z0[:, None] + sx[:, None] * belly[:, 0] + syy[:, None] * belly[:, 1] - hb_) * nz[:, None]
    n_unknown = np.isnan(hb_).sum(axis=1)
    clear = np.nanmin(np.where(np.isnan(cl), np.inf, cl), axis=1) + prm[K.P_BELLY]
    unknown |= n_unknown > prm[K.P_UNKNOWN_BELLY] * len(belly)
    tilt = np.arctan(np.hypot(sx, syy))
    pitch = -np.arctan(sx)
    roll = np.arctan(syy * np.cos(pitch))
    code = np.select([unknown, (tilt > prm[K.P_MAX_TILT]) | (np.abs(roll) > prm[K.P_TIP_ROLL])
                      | (np.abs(pitch) > prm[K.P_TIP_PITCH]), clear < prm[K.P_MARGIN], step > prm[K.P_CLIMB]],
                     [K.CHECK_UNKNOWN, K.CHECK_TILT, K.CHECK_CLEARANCE, K.CHECK_STEP], K.CHECK_OK)
    out_status, out_s = [], []
    start = 0
    for i in idx:
        n = int((pi == i).sum())
        seg = code[start:start + n]
        bad = np.flatnonzero(seg != K.CHECK_OK)
        out_status.append(int(seg[bad[0]]) if bad.size else K.CHECK_OK)
        out_s.append(float(C.s_m[i, pj[start + bad[0]]]) if bad.size else math.inf)
        start += n
    return np.array(out_status), np.array(out_s)


# ------------------------------------------------------------------------------------- harness
def _interleaved(fns, repeats):
    """``(best, median)`` seconds of each function, the functions run in turn in every repeat."""
    ts = [[] for _ in fns]
    for _ in range(repeats):
        for f, out in zip(fns, ts):
            t = time.perf_counter()
            f()
            out.append(time.perf_counter() - t)
    return [(min(t), statistics.median(t)) for t in ts]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--poses", type=int, default=30)
    ap.add_argument("--quick", action="store_true", help="10 poses, 2 repeats, two candidate sets")
    a = ap.parse_args()
    sets = SETS
    if a.quick:
        a.repeats, a.poses, sets = 2, 10, SETS[:2]
    import sim

    gen = sim.generate_terrain("mars", size_m=SIZE_M, cell_size_m=CELL_M, seed=7, rock_cfa=0.15,
                               clear_zones=[(GOAL[0], GOAL[1], 0.6)])
    tm = gen.terrain
    prof = nav.load_rover("osr")
    t = time.perf_counter()
    cm = nav.traversability(tm, prof)
    t_trav = time.perf_counter() - t
    t = time.perf_counter()
    ctg = CostToGo.from_costmap(cm, GOAL)
    t_ctg = time.perf_counter() - t
    rng = np.random.default_rng(3)
    poses = []
    while len(poses) < a.poses:
        x, y = rng.uniform(1.0, 7.0), rng.uniform(1.0, 11.0)
        rc = tm.world_to_cell((x, y))
        if np.isfinite(cm.cost[rc[0], rc[1]]) and np.isfinite(ctg.at((x, y))):
            poses.append((x, y, rng.uniform(-math.pi, math.pi)))
    print(f"# local planner (OSR), Mars terrain {SIZE_M:g} m x {SIZE_M:g} m at {CELL_M} m "
          f"({tm.shape[0]}x{tm.shape[1]} cells, {len(gen.rocks)} rocks, "
          f"{(~np.isfinite(cm.cost)).mean():.0%} lethal), {len(poses)} free poses; "
          f"traversability {t_trav * 1e3:.0f} ms, Field D* cost-to-go {t_ctg * 1e3:.0f} ms (not in the figures); "
          f"one core, best / median of {a.repeats} interleaved runs over all poses\n")
    print("| candidates | N | samples / candidate | plan (ms) | cheap pass (ms) | numpy cheap pass (ms) | "
          "ratio | check (µs / candidate) | poses / candidate | numpy check (µs / candidate) | ratio | "
          "checked / plan |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, params in sets:
        pl = ArcPlanner(prof, params)
        C = pl.candidates
        n = len(C)
        # warm (compile / load the cache) and verify the peers on every pose
        checked = []
        sc_list = []
        for pose in poses:
            plan = pl.plan(pose, tm, cm, ctg)
            checked.append(plan.n_checked if plan else plan.n_checked)
            sc = pl.score(pose, tm, cm, ctg)
            sc_list.append(sc)
            st, score, cost, block = numpy_scores(pl, pose, tm, cm.cost, cm.reason, sc.cost_to_go,
                                                  sc.heading_term, sc.penalty)
            assert np.array_equal(st, sc.status), "numpy peer: statuses differ"
            np.testing.assert_allclose(score, sc.score, rtol=1e-9)
            np.testing.assert_array_equal(block, sc.block_s_m)
        # the best 8 free arcs (no turns in place: the numpy check peer does not model them) per pose
        sel = []
        for pose, sc in zip(poses, sc_list):
            ok = np.flatnonzero((sc.status == K.FREE) & (C.turn_rad == 0))
            sel.append(ok[np.argsort(sc.score[ok])][:8])
        poses_c = [(pose, idx) for pose, idx in zip(poses, sel) if len(idx)]
        n_poses = 0
        for pose, idx in poses_c:
            got = pl.check(pose, tm, idx)
            n_poses += int(got[:, K.C_N_POSES].sum())
            st, fs = numpy_check_rocker_bogie(pl, pose, tm, idx)
            assert np.array_equal(st, got[:, K.C_STATUS].astype(np.int64)), "numpy check peer: statuses differ"
            np.testing.assert_array_equal(fs, got[:, K.C_FAIL_S])
        n_sel = sum(len(s) for s in sel)

        def run_plans():
            for pose in poses:
                pl.plan(pose, tm, cm, ctg)

        def run_scores():
            for pose in poses:
                pl.score(pose, tm, cm, ctg)

        def run_numpy_scores():
            for pose, sc in zip(poses, sc_list):
                numpy_scores(pl, pose, tm, cm.cost, cm.reason, sc.cost_to_go, sc.heading_term, sc.penalty)

        def run_checks():
            for pose, idx in poses_c:
                pl.check(pose, tm, idx)

        def run_numpy_checks():
            for pose, idx in poses_c:
                numpy_check_rocker_bogie(pl, pose, tm, idx)

        k = len(poses)
        tp, ts, tn, tc, tcn = _interleaved([run_plans, run_scores, run_numpy_scores, run_checks, run_numpy_checks],
                                           a.repeats)
        m = float(np.mean(C.n_samples))
        print(f"| {label} | {n:,} | {m:.0f} | {tp[0] / k * 1e3:.2f} / {tp[1] / k * 1e3:.2f} | "
              f"{ts[0] / k * 1e3:.2f} / {ts[1] / k * 1e3:.2f} | {tn[0] / k * 1e3:.1f} / {tn[1] / k * 1e3:.1f} | "
              f"{tn[0] / ts[0]:.1f}x | {tc[0] / n_sel * 1e6:.0f} / {tc[1] / n_sel * 1e6:.0f} | {n_poses / n_sel:.0f} | "
              f"{tcn[0] / n_sel * 1e6:.0f} / {tcn[1] / n_sel * 1e6:.0f} | {tcn[0] / tc[0]:.1f}x | "
              f"{statistics.mean(checked):.1f} |")
    print()
    print("The cheap pass includes the cost-to-go lookups at every candidate's end (5 per candidate). The "
          "check columns are per candidate body-checked (the best 8 free arcs at each pose); the kernel settles "
          "poses every 5 cm up to the first failing one (poses / candidate), the numpy peer settles them all "
          "and then looks for the first failure. Ratios: numpy time / Numba time (best runs), > 1 favours the "
          "kernels.")


if __name__ == "__main__":
    main()
