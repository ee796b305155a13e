"""``rover vo SEQUENCE``: stereo visual odometry over a sequence in the KITTI odometry layout.

Writes to ``--out`` (default ``runs/vo``):

* ``trajectory.tum`` — the left camera's pose in the first camera frame for every frame (TUM format:
  ``t tx ty tz qx qy qz qw``); frames where VO failed hold the last good pose;
* ``trajectory.png`` — the path (and the ground truth when present) seen from above its plane;
* ``vo.json`` — frames, convergence rate, failures with their reasons, timing;
* when the sequence has ground truth (``poses.txt``): ``groundtruth.tum`` and ``metrics.json`` — ATE
  RMSE after SE(3) / Sim(3) alignment, KITTI-style relative errors, end-point error
  (:func:`perception.trajectory.evaluate`) plus the convergence rate.

Exit status 0 on success (even when some frames failed: that is reported), 2 on bad input.
"""
from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("vo", help="stereo visual odometry over a KITTI-layout sequence",
                       description="Run stereo visual odometry over a sequence in the KITTI odometry layout "
                                   "(image_0/, image_1/, calib.txt, optional times.txt and poses.txt) and write "
                                   "the trajectory (TUM format), a plot, and metrics when ground truth is present.")
    p.add_argument("sequence", metavar="SEQUENCE", help="sequence directory (KITTI odometry layout)")
    p.add_argument("--out", default="runs/vo", help="output folder (default runs/vo)")
    p.add_argument("--max-frames", type=int, default=None, metavar="N", help="process only the first N frames")
    p.add_argument("--poses", default=None, metavar="FILE",
                   help="ground-truth poses file (default: SEQUENCE/poses.txt or KITTI's poses/NAME.txt)")
    p.add_argument("--rate", type=float, default=None, metavar="HZ",
                   help="frame rate when the sequence has no times.txt (default 10)")
    p.add_argument("--max-speed", type=float, default=None, metavar="MPS",
                   help="reject VO jumps faster than this (default: VOParams.max_speed_mps, 5 m/s; raise it "
                        "for car datasets such as KITTI)")
    p.add_argument("--max-features", type=int, default=None, metavar="N",
                   help="features per keyframe (default: VOParams.max_features)")
    p.set_defaults(func=cmd_vo)


def cmd_vo(args: argparse.Namespace) -> int:
    import json
    import math
    import time
    from pathlib import Path

    import numpy as np

    from hil.cli import CliError
    from perception.kitti import KittiSequence
    from perception.trajectory import evaluate, plot_trajectories, write_tum
    from perception.vo import StereoVO, VOParams

    if args.max_frames is not None and args.max_frames < 2:
        raise CliError(f"--max-frames {args.max_frames}: must be >= 2")
    seq = KittiSequence(args.sequence, poses=args.poses, rate_hz=args.rate)
    n = len(seq) if args.max_frames is None else min(len(seq), args.max_frames)
    if n < 2:
        raise CliError(f"{args.sequence}: {n} frame(s); VO needs at least 2")
    kw = {}
    if args.max_speed is not None:
        kw["max_speed_mps"] = args.max_speed
    if args.max_features is not None:
        kw["max_features"] = args.max_features
    try:
        params = VOParams(**kw)
    except ValueError as e:
        raise CliError(str(e)) from None
    vo = StereoVO(seq.K, seq.baseline_m, params=params)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_s = np.empty(n)
    T = np.empty((n, 4, 4))
    failures = []
    times = []
    n_keyframes = 0
    for i in range(n):
        fr = seq[i]
        t0 = time.perf_counter()
        r = vo.process_frame(fr)
        times.append(time.perf_counter() - t0)
        t_s[i] = fr.t_s
        T[i] = r.T_first_cur
        if not r:
            failures.append({"seq": int(r.seq), "t_s": float(r.t_s), "kind": r.kind, "reason": r.reason})
        n_keyframes += bool(r.keyframe)
    dt_ms = np.asarray(times[1:]) * 1e3
    converged = n - 1 - sum(1 for f in failures if f["seq"] > 0)   # frame 0 measures no motion
    summary = {
        "sequence": str(seq.path), "frames": int(n), "K": seq.K.tolist(), "baseline_m": seq.baseline_m,
        "converged": int(converged), "convergence_rate": converged / (n - 1), "keyframes": int(n_keyframes),
        "failures": failures,
        "time_ms": {"median": float(np.median(dt_ms)), "p90": float(np.percentile(dt_ms, 90)),
                    "max": float(dt_ms.max())},
        "frames_per_s": 1e3 / float(np.median(dt_ms)),
        "params": {k: getattr(params, k) for k in params.__dataclass_fields__},
    }
    write_tum(out / "trajectory.tum", t_s, T)
    gt = seq.poses[:n] if seq.poses is not None else None
    metrics = None
    if gt is not None:
        write_tum(out / "groundtruth.tum", t_s, gt)
        metrics = evaluate(T, gt)
        metrics["convergence_rate"] = summary["convergence_rate"]
        (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    (out / "vo.json").write_text(json.dumps(summary, indent=1))
    fail_xyz = np.array([T[f["seq"], :3, 3] for f in failures]) if failures else None
    title = f"{seq.name}: {n} frames"
    if metrics is not None:
        title += (f", {metrics['distance_m']:.1f} m, end error {metrics['endpoint_error_pct']:.2f} %, "
                  f"ATE {metrics['ate_rmse_m']:.3f} m")
    png = plot_trajectories(out / "trajectory.png", T[:, :3, 3], None if gt is None else gt[:, :3, 3],
                            title=title, failures_xyz=fail_xyz)
    line = (f"vo: {n} frames, {100 * summary['convergence_rate']:.1f} % converged, {n_keyframes} keyframes, "
            f"{summary['time_ms']['median']:.1f} ms/frame median")
    if metrics is not None:
        kt = metrics["kitti_t_err_pct"]
        line += (f"; {metrics['distance_m']:.1f} m travelled: ATE {metrics['ate_rmse_m']:.3f} m, end-point error "
                 f"{metrics['endpoint_error_m']:.3f} m ({metrics['endpoint_error_pct']:.2f} %), relative "
                 f"{'n/a' if kt is None or not math.isfinite(kt) else f'{kt:.2f} %'}")
    print(line)
    print(f"trajectory: {out / 'trajectory.tum'}\npicture: {png}\nsummary: {out / 'vo.json'}"
          + (f"\nmetrics: {out / 'metrics.json'}" if metrics is not None else ""))
    return 0
