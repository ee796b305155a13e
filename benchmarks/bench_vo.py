"""Stereo visual odometry (perception.vo): accuracy on rendered 100 m traverses over generated Mars and Moon
terrain, convergence rate, and speed on one core against a naive OpenCV pipeline on the same frames.

Sequences are recorded with sim.recording (OSR rover, default camera: 640x480, 70 deg, 12 cm baseline,
25 deg tilt, 0.8 m mast; a frame every 0.15 m at 0.28 m/s) and cached on disk in the KITTI layout
(rendering a 100 m traverse takes about a minute): $ROVERNAV_CACHE or <tmp>/rovernav-cache, sub-folder
vo/. A stress sequence with a frame only every 0.7 m (the rover rocks up to ~15 deg between frames)
exercises failures and recovery.

Metrics (perception.trajectory): end-point error / distance (no alignment: what the rover would see),
KITTI-style relative translational error over segments of 10...80 % of the length, ATE RMSE after SE(3)
alignment, mean NEES of the per-update covariance against truth (chi-square 6 has mean 6).

Peer: a naive OpenCV pipeline — ORB (1000 features) on both images, brute-force Hamming stereo matching
with the row constraint, brute-force matching to the previous frame, solvePnPRansac — frame to frame.

    NUMBA_NUM_THREADS=1 python benchmarks/bench_vo.py [--quick] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from perception.kitti import KittiSequence  # noqa: E402
from perception.trajectory import evaluate, invert, se3_log  # noqa: E402
from perception.vo import StereoVO  # noqa: E402

cv2.setNumThreads(1)

GOAL_DRIFT_PCT = 1.0
GOAL_FPS = 30.0
CACHE_VERSION = 1

FULL = [  # name, planet, course, length m, seed, frame spacing m
    ("mars_scurve_100m", "mars", "s_curve", 100.0, 3, 0.15),
    ("moon_scurve_100m", "moon", "s_curve", 100.0, 3, 0.15),
    ("mars_loop_100m", "mars", "loop", 100.0, 7, 0.15),
    ("moon_loop_100m", "moon", "loop", 100.0, 7, 0.15),
]
QUICK = [
    ("mars_scurve_20m", "mars", "s_curve", 20.0, 3, 0.15),
    ("moon_scurve_20m", "moon", "s_curve", 20.0, 3, 0.15),
]
STRESS = [("mars_sparse_30m", "mars", "s_curve", 30.0, 11, 0.7)]


def cache_dir() -> Path:
    base = Path(os.environ.get("ROVERNAV_CACHE", Path(tempfile.gettempdir()) / "rovernav-cache"))
    return base / "vo"


def recorded(name, planet, kind, length_m, seed, spacing_m) -> Path:
    """The KITTI-layout folder of a recorded traverse, rendering it on first use."""
    out = cache_dir() / f"{name}-s{seed}-v{CACHE_VERSION}"
    if (out / "done").exists():
        return out
    import sim
    from sim.recording import clear_zones_along, course, record_traverse, write_kitti

    wp = course(kind, length_m, start_xy=(0.0, 0.0))
    if kind == "loop":          # stop just short of the start, or the rover has arrived before leaving
        wp = wp[:-3]
    lo, hi = wp.min(axis=0) - 20.0, wp.max(axis=0) + 20.0
    t0 = time.perf_counter()
    gen = sim.generate_terrain(planet, size_m=tuple(hi - lo), origin_xy_m=tuple(lo), seed=seed,
                               clear_zones=clear_zones_along(wp, 1.0))
    rec = record_traverse(sim.World(gen, planet=planet, seed=seed), "osr", wp, frame_every_m=spacing_m)
    write_kitti(rec, out)
    (out / "done").write_text(f"{len(rec.frames)} frames, {rec.distance_m:.1f} m, reached {rec.reached}\n")
    print(f"  recorded {name}: {len(rec.frames)} frames in {time.perf_counter() - t0:.0f} s -> {out}",
          file=sys.stderr)
    return out


def load(path):
    seq = KittiSequence(path)
    return seq, [seq[i] for i in range(len(seq))]


def run_vo(seq, frames):
    vo = StereoVO(seq.K, seq.baseline_m)
    T, nees, fails, times = [], [], [], []
    for f in frames:
        t0 = time.perf_counter()
        r = vo.process_frame(f)
        times.append(time.perf_counter() - t0)
        T.append(r.T_first_cur)
        if not r:
            fails.append(f"{r.seq}: {r.reason}")
        elif r.ref_seq != r.seq and seq.poses is not None:
            e = se3_log(invert(r.T_ref_cur) @ invert(seq.poses[r.ref_seq]) @ seq.poses[r.seq])
            nees.append(float(e @ np.linalg.solve(r.cov, e)))
    return np.stack(T), fails, nees, np.array(times[1:])


class NaiveOrbVO:
    """The obvious OpenCV pipeline, frame to frame: ORB on both images, brute-force stereo matching with the
    row constraint, brute-force matching to the previous frame's triangulated features, solvePnPRansac."""

    def __init__(self, K, baseline_m, n_features=1000):
        self.K, self.b = K, baseline_m
        self.orb = cv2.ORB_create(n_features)
        self.bf = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True)
        self.prev = None
        self.T = np.eye(4)

    def process(self, left, right):
        kl, dl = self.orb.detectAndCompute(left, None)
        kr, dr = self.orb.detectAndCompute(right, None)
        ok = False
        X = np.full((len(kl), 3), np.nan)
        if dl is not None and dr is not None:
            pl = np.array([k.pt for k in kl])
            pr = np.array([k.pt for k in kr])
            for m in self.bf.match(dl, dr):
                (ul, vl), (ur, vr) = pl[m.queryIdx], pr[m.trainIdx]
                d = ul - ur
                if abs(vl - vr) < 1.5 and d > 0.5:
                    z = self.K[0, 0] * self.b / d
                    X[m.queryIdx] = [(ul - self.K[0, 2]) * z / self.K[0, 0], (vl - self.K[1, 2]) * z / self.K[1, 1], z]
            if self.prev is not None:
                pdes, pX = self.prev
                ms = self.bf.match(pdes, dl)
                if len(ms) >= 6:
                    obj = np.array([pX[m.queryIdx] for m in ms])
                    img = np.array([pl[m.trainIdx] for m in ms])
                    good, rvec, tvec, inl = cv2.solvePnPRansac(obj, img, self.K, None, iterationsCount=100,
                                                               reprojectionError=2.0)
                    if good and inl is not None and len(inl) >= 12:
                        T_cur_prev = np.eye(4)
                        T_cur_prev[:3, :3] = cv2.Rodrigues(rvec)[0]
                        T_cur_prev[:3, 3] = tvec.ravel()
                        self.T = self.T @ invert(T_cur_prev)
                        ok = True
            has = np.isfinite(X).all(axis=1)
            self.prev = (dl[has], X[has]) if has.sum() >= 6 else None
        return ok, self.T.copy()


def run_naive(seq, frames):
    vo = NaiveOrbVO(seq.K, seq.baseline_m)
    T, fails, times = [], 0, []
    for i, f in enumerate(frames):
        t0 = time.perf_counter()
        ok, P = vo.process(f.left, f.right)
        times.append(time.perf_counter() - t0)
        T.append(P)
        fails += (not ok) and i > 0
    return np.stack(T), fails, np.array(times[1:])


def best_of(fn, repeats):
    """Smallest total time of ``repeats`` runs; returns (seconds, per-frame times of that run)."""
    best = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t0
        if best is None or dt < best[0]:
            best = (dt, out)
    return best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="two 20 m traverses, fewer timing frames")
    ap.add_argument("--repeats", type=int, default=3, help="timing runs (best of N)")
    args = ap.parse_args(argv)
    specs = QUICK if args.quick else FULL
    stress = [] if args.quick else STRESS
    paths = {s[0]: recorded(*s) for s in specs + stress}

    print("Rendered traverses (sim.recording, OSR rover, 640x480 stereo, 12 cm baseline, a frame every 0.15 m); "
          "VO alone, no wheel or IMU prior. One core (`NUMBA_NUM_THREADS=1`, `cv2.setNumThreads(1)`); the machine "
          "may be shared: timings are best of N.")
    print()
    print("### Accuracy and convergence")
    print()
    print("| sequence | distance m | frames | converged % | end-point error % | KITTI-style t_err % | r_err deg/m "
          "| ATE m | Sim(3) scale | mean NEES (6 ideal) | naive ORB end-point % | naive converged % |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    drifts, conv_all, n_all = [], 0, 0
    first = None
    for spec in specs + stress:
        name = spec[0]
        seq, frames = load(paths[name])
        if first is None:
            first = (seq, frames)
        T, fails, nees, _ = run_vo(seq, frames)
        m = evaluate(T, seq.poses)
        Tn, nfail, _ = run_naive(seq, frames)
        mn = evaluate(Tn, seq.poses)
        n = len(frames) - 1
        conv = n - sum(1 for f in fails if not f.startswith("0:"))
        if spec not in stress:
            drifts.append(m["endpoint_error_pct"])
            conv_all += conv
            n_all += n
        tag = " (stress: a frame every 0.7 m)" if spec in stress else ""
        print(f"| {name}{tag} | {m['distance_m']:.1f} | {len(frames)} | {100 * conv / n:.1f} | "
              f"{m['endpoint_error_pct']:.3f} | {m['kitti_t_err_pct']:.3f} | {m['kitti_r_err_deg_per_m']:.4f} | "
              f"{m['ate_rmse_m']:.3f} | {m['sim3_scale']:.4f} | {np.mean(nees):.1f} | "
              f"{mn['endpoint_error_pct']:.2f} | {100 * (n - nfail) / n:.1f} |")
        for f in fails:
            print(f"  failure {name}: {f}", file=sys.stderr)
    print()
    worst = max(drifts)
    print(f"Goal: end-point drift <= {GOAL_DRIFT_PCT:g} % of distance on every nominal traverse: worst "
          f"{worst:.3f} % -> {'met' if worst <= GOAL_DRIFT_PCT else 'NOT met'}. Convergence over the nominal "
          f"traverses: {100 * conv_all / n_all:.1f} % of {n_all} updates (MER: 95-97 %).")
    print()

    seq, frames = first
    nt = 120 if args.quick else 300
    frames = frames[:nt]
    t_ours, (_, _, _, per_ours) = best_of(lambda: run_vo(seq, frames), args.repeats)
    t_naive, (_, _, per_naive) = best_of(lambda: run_naive(seq, frames), args.repeats)
    ms_ours = 1e3 * t_ours / len(frames)
    ms_naive = 1e3 * t_naive / len(frames)
    print("### Speed (one core, 640x480)")
    print()
    print(f"First {len(frames)} frames of {seq.name}, best of {args.repeats} runs.")
    print()
    print("| pipeline | ms/frame (mean) | median | p90 | max | frames/s | vs naive |")
    print("|---|---|---|---|---|---|---|")
    for label, ms, per in (("rovernav StereoVO", ms_ours, per_ours), ("naive ORB + BF + solvePnPRansac", ms_naive,
                                                                       per_naive)):
        print(f"| {label} | {ms:.2f} | {1e3 * np.median(per):.2f} | {1e3 * np.percentile(per, 90):.2f} | "
              f"{1e3 * per.max():.2f} | {1e3 / ms:.0f} | {ms_naive / ms:.2f}x |")
    print()
    fps = 1e3 / ms_ours
    print(f"Goal: >= {GOAL_FPS:g} stereo frames/s for VO alone: {fps:.0f} frames/s -> "
          f"{'met' if fps >= GOAL_FPS else 'NOT met'}.")
    print()
    pnp_table(seq, frames, args.repeats)
    return 0


class _RecordingVO(StereoVO):
    """StereoVO keeping the 3-D/2-D correspondences handed to PnP (benchmark instrumentation)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.cases = []

    def _pnp(self, X, uv):
        self.cases.append((np.ascontiguousarray(X), np.ascontiguousarray(uv, dtype=np.float64)))
        return super()._pnp(X, uv)


def pnp_table(seq, frames, repeats):
    """PnP RANSAC variants on the correspondences VO produced: OpenCV's P3P RANSAC (what VO uses) against
    USAC (MSAC scoring with inner local optimisation) and EPnP RANSAC."""
    vo = _RecordingVO(seq.K, seq.baseline_m)
    for f in frames:
        vo.process_frame(f)
    K = seq.K

    def classic(flags):
        return lambda X, uv: cv2.solvePnPRansac(X, uv, K, None, iterationsCount=200, reprojectionError=1.5,
                                                confidence=0.999, flags=flags)

    prm = cv2.UsacParams()
    prm.sampler, prm.score = cv2.SAMPLING_UNIFORM, cv2.SCORE_METHOD_MSAC
    prm.maxIterations, prm.confidence, prm.threshold = 200, 0.999, 1.5
    prm.loMethod, prm.loIterations, prm.loSampleSize = cv2.LOCAL_OPTIM_INNER_LO, 5, 14
    rows = []
    for name, fn in (("P3P RANSAC (used)", classic(cv2.SOLVEPNP_P3P)), ("EPnP RANSAC", classic(cv2.SOLVEPNP_EPNP)),
                     ("USAC: MSAC + inner LO", lambda X, uv: cv2.solvePnPRansac(X, uv, K, None, params=prm))):
        t, res = best_of(lambda: [fn(X, uv) for X, uv in vo.cases], repeats)
        inl = np.mean([0 if r[-1] is None else len(r[-1]) for r in res])
        rows.append((name, 1e3 * t / len(vo.cases), inl))
    npts = np.mean([len(c[0]) for c in vo.cases])
    print(f"### PnP RANSAC on VO's correspondences ({len(vo.cases)} calls, ~{npts:.0f} points each)")
    print()
    print("| method | ms/call | mean inliers | vs P3P RANSAC |")
    print("|---|---|---|---|")
    for name, ms, inl in rows:
        print(f"| {name} | {ms:.3f} | {inl:.1f} | {ms / rows[0][1]:.1f}x slower |" if ms > rows[0][1] * 1.05
              else f"| {name} | {ms:.3f} | {inl:.1f} | - |")


if __name__ == "__main__":
    sys.exit(main())
