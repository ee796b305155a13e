"""Recorded simulated traverses: stereo frames, telemetry and ground truth along a driven course.

What perception is developed and measured on. :func:`record_traverse` drives a :class:`~sim.SimRover`
along a course of waypoints (pure pursuit on the *true* pose — this is a data generator, not the
autonomy), reads telemetry at ``control_hz`` and renders a stereo pair every ``frame_every_m`` metres
of travel (or every ``1 / camera.rate_hz`` seconds), keeping ground truth for every sample.
:func:`write_kitti` stores a recording in the KITTI odometry layout (plus our telemetry files), the
layout ``perception`` reads sequences from.

KITTI odometry layout written here
----------------------------------
``image_0/NNNNNN.png``, ``image_1/NNNNNN.png``
    Left and right rectified 8-bit grey images, numbered from 0.
``calib.txt``
    Lines ``P0: …`` and ``P1: …``: 3x4 row-major projection matrices of the rectified left and right
    cameras, ``P0 = K [I | 0]``, ``P1 = K [I | (-baseline, 0, 0)]`` (so ``P1[0, 3] = -fx·baseline``).
``times.txt``
    One capture time per frame, seconds from the first.
``poses.txt``
    Ground truth: per frame 12 numbers, the row-major top 3x4 of ``T_cam0_cami`` — the left camera's
    pose in the first left camera's frame (OpenCV axes: x right, y down, z forward).
``telemetry.csv`` (rovernav extension)
    One row per telemetry read: ``t_s, seq, enc_0..enc_{n-1}`` (raw counts), ``wheel_0..`` (rad/s),
    ``steer_0..`` (rad), ``gyro_x, gyro_y, gyro_z`` (rad/s, body), ``accel_x, accel_y, accel_z`` (m/s²).
``truth.csv`` (rovernav extension)
    One row per telemetry read: ``t_s, x_m, y_m, z_m, yaw_rad, pitch_rad, roll_rad, distance_m``
    (world ENU, REP-103 body; see :mod:`sim.frames`).
``rover.json`` (rovernav extension)
    ``T_body_left`` (4x4), profile name, ``encoder_counts_per_rev``, wheel radius, frame timestamps.
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from drivers.base import Telemetry
from drivers.camera import StereoFrame
from nav.config import RoverProfile, load_rover

from .camera import StereoRenderer
from .frames import invert
from .sim_rover import SimRover, TruthState
from .world import World

__all__ = ["Recording", "record_traverse", "course", "clear_zones_along", "write_kitti"]


@dataclass
class Recording:
    """A recorded traverse. ``frames[i]`` was captured at ``frame_truth[i]``; ``telemetry[j]`` was read
    at ``truth[j]``. Frames carry ground-truth ``depth_m`` and ``T_world_left``."""
    world: World
    profile: RoverProfile
    frames: list[StereoFrame] = field(default_factory=list)
    frame_truth: list[TruthState] = field(default_factory=list)
    telemetry: list[Telemetry] = field(default_factory=list)
    truth: list[TruthState] = field(default_factory=list)
    reached: bool = False
    events: list = field(default_factory=list)

    @property
    def distance_m(self) -> float:
        return self.truth[-1].distance_m if self.truth else 0.0

    def T_world_left(self) -> np.ndarray:
        """(N, 4, 4) ground-truth left-camera poses of the frames."""
        return np.stack([f.T_world_left for f in self.frames]) if self.frames else np.zeros((0, 4, 4))


def course(kind: str, length_m: float, *, start_xy=(0.0, 0.0), heading_rad: float = 0.0,
           amplitude_m: float | None = None, step_m: float = 0.5) -> np.ndarray:
    """Waypoints ``(N, 2)`` of a course ``length_m`` long (measured along its axis).

    ``kind``: ``"straight"``; ``"s_curve"`` (a sine of one period, amplitude ``amplitude_m``, default
    ``length / 10``); ``"loop"`` (a circle of circumference ``length_m`` starting at ``start_xy``,
    turning left).
    """
    if not (math.isfinite(length_m) and length_m > 0):
        raise ValueError(f"length_m = {length_m!r}: must be > 0")
    n = max(2, int(math.ceil(length_m / step_m)) + 1)
    s = np.linspace(0.0, length_m, n)
    if kind == "straight":
        local = np.stack([s, np.zeros_like(s)], axis=1)
    elif kind == "s_curve":
        a = length_m / 10.0 if amplitude_m is None else float(amplitude_m)
        local = np.stack([s, a * np.sin(2 * math.pi * s / length_m)], axis=1)
    elif kind == "loop":
        r = length_m / (2 * math.pi)
        th = s / r
        local = np.stack([r * np.sin(th), r * (1 - np.cos(th))], axis=1)
    else:
        raise ValueError(f"course kind {kind!r}: use 'straight', 's_curve' or 'loop'")
    c, sn = math.cos(heading_rad), math.sin(heading_rad)
    R = np.array([[c, -sn], [sn, c]])
    return local @ R.T + np.asarray(start_xy, dtype=np.float64)


def clear_zones_along(waypoints, radius_m: float = 1.0, spacing_m: float | None = None) -> list:
    """``(x, y, radius)`` discs every ``spacing_m`` (default ``radius_m``) along a course, for
    :func:`sim.terrain.generate_terrain`'s ``clear_zones``: a corridor free of rocks and craters."""
    wp = np.asarray(waypoints, dtype=np.float64)
    step = radius_m if spacing_m is None else spacing_m
    out = []
    for a, b in zip(wp[:-1], wp[1:]):
        n = max(1, int(math.ceil(np.hypot(*(b - a)) / step)))
        for u in np.arange(n) / n:
            x, y = a + u * (b - a)
            out.append((float(x), float(y), float(radius_m)))
    out.append((float(wp[-1, 0]), float(wp[-1, 1]), float(radius_m)))
    return out


def record_traverse(world: World, profile="osr", waypoints=None, *, speed_mps: float | None = None,
                    control_hz: float = 10.0, frame_every_m: float | None = 0.15,
                    frame_every_s: float | None = None, lookahead_m: float = 0.8, goal_tol_m: float = 0.15,
                    max_time_s: float | None = None, render: bool = True, noise: bool = True,
                    stand_s: float = 0.0, name: str = "rec", progress=None) -> Recording:
    """Drive ``waypoints`` (``(N, 2)``, the first is the start) and record.

    The rover starts at ``waypoints[0]`` facing ``waypoints[1]``. Frames are rendered when the rover has
    travelled ``frame_every_m`` since the last frame, or ``frame_every_s`` has passed (whichever is given;
    both may be), plus one at the start and one at the end. ``render=False`` records telemetry and truth
    only. ``max_time_s`` defaults to three times the course length at ``speed_mps``.
    ``stand_s`` seconds of standstill (telemetry recorded) before driving let a filter calibrate the gyro.
    ``progress(i_frame, truth)`` is called after each frame. Recording ends early (``reached`` False) when
    the rover makes no progress for 5 s (high-centred, blocked, tipped); generate the terrain with
    :func:`clear_zones_along` the course to keep rocks and craters off it.
    """
    prof = profile if isinstance(profile, RoverProfile) else load_rover(profile)
    wp = np.asarray(waypoints, dtype=np.float64)
    if wp.ndim != 2 or wp.shape[1] != 2 or len(wp) < 2 or not np.isfinite(wp).all():
        raise ValueError("waypoints must be an (N >= 2, 2) array of finite x, y metres")
    if not (control_hz > 0):
        raise ValueError(f"control_hz = {control_hz!r}: must be > 0")
    v = 0.8 * prof.drive.max_speed_mps if speed_mps is None else float(speed_mps)
    if not (0 < v <= prof.drive.max_speed_mps):
        raise ValueError(f"speed_mps = {speed_mps!r}: must be in (0, {prof.drive.max_speed_mps:g}]")
    seg = np.linalg.norm(np.diff(wp, axis=0), axis=1)
    length = float(seg.sum())
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    t_max = 3.0 * length / v + 10.0 if max_time_s is None else float(max_time_s)
    heading0 = math.atan2(wp[1, 1] - wp[0, 1], wp[1, 0] - wp[0, 0])
    rover = SimRover(world, prof, x_m=wp[0, 0], y_m=wp[0, 1], yaw_rad=heading0, name=name)
    rec = Recording(world=world, profile=prof)
    renderer = StereoRenderer(world, prof.camera) if render else None
    cam_rng = world.rng(f"{name}.camera") if noise else None
    dt = 1.0 / control_hz
    wmax = math.radians(prof.drive.max_yaw_rate_dps)
    rmin = prof.drive.min_turning_radius_m
    can_point = rmin == 0 or prof.drive.steerable_corners

    def snap():
        tr = rover.truth()
        if renderer is not None:
            fr = renderer.render(rover.model.T_world_body(), t_s=world.time_s, seq=len(rec.frames), rng=cam_rng)
            rec.frames.append(fr)
            rec.frame_truth.append(tr)
            if progress is not None:
                progress(len(rec.frames) - 1, tr)
        return tr

    with rover:
        rover.arm()
        rec.telemetry.append(rover.read_telemetry())
        tr = rover.truth()
        rec.truth.append(tr)
        snap()
        for _ in range(int(round(max(0.0, float(stand_s)) * control_hz))):
            world.clock.sleep(dt)
            rec.telemetry.append(rover.read_telemetry())
            tr = rover.truth()
            rec.truth.append(tr)
        last_d, last_t = tr.distance_m, tr.t_s
        s_along = 0.0
        t0 = world.time_s
        stuck_d, stuck_t = tr.distance_m, tr.t_s
        while world.time_s - t0 < t_max:
            if tr.distance_m - stuck_d > 0.05:
                stuck_d, stuck_t = tr.distance_m, tr.t_s
            elif tr.t_s - stuck_t > 5.0:           # high-centred, blocked or tipped: the recording ends
                break
            p = np.array([tr.x_m, tr.y_m])
            if np.hypot(*(wp[-1] - p)) < goal_tol_m:
                rec.reached = True
                break
            # progress along the polyline: nearest point not behind the current one
            s_along = _project(wp, cum, p, s_along)
            target = _point_at(wp, cum, min(length, s_along + lookahead_m))
            if s_along + lookahead_m >= length:
                target = wp[-1]
            dx, dy = target - p
            c, sn = math.cos(tr.yaw_rad), math.sin(tr.yaw_rad)
            xb, yb = c * dx + sn * dy, -sn * dx + c * dy
            L2 = xb * xb + yb * yb
            vx = min(v, 1.5 * math.sqrt(L2))               # slow down on the last metre
            if xb < 0.1 * math.sqrt(L2) and can_point:     # target behind: turn in place
                vx, wz = 0.0, math.copysign(0.5 * wmax, yb)
            else:
                kappa = 2.0 * yb / max(L2, 1e-9)
                wz = vx * kappa
                if rmin > 0 and abs(wz) > 0 and abs(vx / wz) < rmin:
                    wz = math.copysign(abs(vx) / rmin, wz)
                wz = max(-wmax, min(wmax, wz))
            rover.set_twist(vx, wz)
            world.clock.sleep(dt)
            rec.telemetry.append(rover.read_telemetry())
            tr = rover.truth()
            rec.truth.append(tr)
            if renderer is not None and (
                    (frame_every_m is not None and tr.distance_m - last_d >= frame_every_m)
                    or (frame_every_s is not None and tr.t_s - last_t >= frame_every_s - 1e-9)):
                snap()
                last_d, last_t = tr.distance_m, tr.t_s
        rover.stop()
        if renderer is not None and rec.frame_truth and rec.frame_truth[-1].t_s != tr.t_s:
            snap()
        rec.events = list(rover.events)
    return rec


def _project(wp, cum, p, s_prev):
    best_s, best_d = s_prev, math.inf
    for i in range(len(wp) - 1):
        if cum[i + 1] < s_prev - 1e-9:
            continue
        a, b = wp[i], wp[i + 1]
        ab = b - a
        L = float(ab @ ab)
        u = 0.0 if L == 0 else max(0.0, min(1.0, float((p - a) @ ab) / L))
        s = cum[i] + u * math.sqrt(L)
        if s < s_prev:
            continue
        d = float(np.hypot(*(a + u * ab - p)))
        if d < best_d - 1e-12:
            best_s, best_d = s, d
        if cum[i] > s_prev + 5.0:            # only search a few metres ahead
            break
    return best_s


def _point_at(wp, cum, s):
    i = int(np.searchsorted(cum, s, side="right") - 1)
    i = max(0, min(len(wp) - 2, i))
    L = cum[i + 1] - cum[i]
    u = 0.0 if L == 0 else (s - cum[i]) / L
    return wp[i] + u * (wp[i + 1] - wp[i])


def write_kitti(rec: Recording, directory) -> Path:
    """Write ``rec`` in the KITTI odometry layout (see the module docstring); returns the directory."""
    import cv2

    out = Path(directory)
    if not rec.frames:
        raise ValueError("the recording has no frames (recorded with render=False?)")
    (out / "image_0").mkdir(parents=True, exist_ok=True)
    (out / "image_1").mkdir(parents=True, exist_ok=True)
    for i, fr in enumerate(rec.frames):
        for sub, img in (("image_0", fr.left), ("image_1", fr.right)):
            path = out / sub / f"{i:06d}.png"
            if not cv2.imwrite(str(path), img):
                raise OSError(f"{path}: could not write the image")
    K = rec.frames[0].K
    b = rec.frames[0].baseline_m
    P0 = np.hstack([K, np.zeros((3, 1))])
    P1 = P0.copy()
    P1[0, 3] = -K[0, 0] * b
    with open(out / "calib.txt", "w") as f:
        f.write("P0: " + " ".join(f"{v:.12e}" for v in P0.ravel()) + "\n")
        f.write("P1: " + " ".join(f"{v:.12e}" for v in P1.ravel()) + "\n")
    t0 = rec.frames[0].t_s
    with open(out / "times.txt", "w") as f:
        for fr in rec.frames:
            f.write(f"{fr.t_s - t0:.6e}\n")
    T0inv = invert(rec.frames[0].T_world_left)
    with open(out / "poses.txt", "w") as f:
        for fr in rec.frames:
            T = T0inv @ fr.T_world_left
            f.write(" ".join(f"{v:.12e}" for v in T[:3, :].ravel()) + "\n")
    n = len(rec.telemetry[0].encoder_counts)
    with open(out / "telemetry.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t_s", "seq"] + [f"enc_{i}" for i in range(n)] + [f"wheel_{i}" for i in range(n)]
                   + [f"steer_{i}" for i in range(n)] + ["gyro_x", "gyro_y", "gyro_z", "accel_x", "accel_y",
                                                         "accel_z"])
        for tm in rec.telemetry:
            g = tm.imu.gyro_radps if tm.imu is not None else (math.nan,) * 3
            a = tm.imu.accel_mps2 if tm.imu is not None else (math.nan,) * 3
            w.writerow([f"{tm.t_s:.6f}", tm.seq] + [int(c) for c in tm.encoder_counts]
                       + [f"{x:.6g}" for x in tm.wheel_speed_radps] + [f"{x:.6g}" for x in tm.steer_rad]
                       + [f"{x:.9g}" for x in g] + [f"{x:.9g}" for x in a])
    with open(out / "truth.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t_s", "x_m", "y_m", "z_m", "yaw_rad", "pitch_rad", "roll_rad", "distance_m"])
        for tr in rec.truth:
            w.writerow([f"{tr.t_s:.6f}"] + [f"{v:.9g}" for v in (tr.x_m, tr.y_m, tr.z_m, tr.yaw_rad,
                                                                  tr.pitch_rad, tr.roll_rad, tr.distance_m)])
    meta = {"profile": rec.profile.name, "T_body_left": rec.frames[0].T_body_left.tolist(),
            "encoder_counts_per_rev": rec.profile.drive.encoder_counts_per_rev,
            "wheel_radius_m": rec.profile.geometry.wheel_radius_m,
            "frame_t_s": [fr.t_s for fr in rec.frames], "reached": rec.reached}
    (out / "rover.json").write_text(json.dumps(meta, indent=1))
    return out
