"""Path following: pure pursuit within the rover's drive limits.

Pure pursuit (Coulter, "Implementation of the pure pursuit path tracking algorithm", CMU-RI-TR-92-01,
1992) steers onto the circle through the rover and a *lookahead point* a fixed distance further
along the path: curvature ``κ = 2 sin α / d`` with ``α`` the bearing of the point in the body frame
and ``d`` its distance. Near the end the lookahead point slides along the extension of the last
segment, so the rover converges onto the final heading instead of circling the end point.

Per :meth:`PurePursuit.command` call:

1. **Projection.** The closest point of the path within a window around the progress so far
   (``[progress - back_window_m, progress + lookahead + ahead_window_m]``, so a path that loops
   back on itself is not short-cut) gives the signed cross-track error (left of the path
   positive) and the progress, which never decreases while the path stays the same.
2. **End of path.** Done, ``(0, 0)``, when the remaining length along the path from the
   projection is within ``goal_tolerance_m`` — which includes a rover beside or past the end, whose
   projection clamps to it. A single-point path is a goal: done within ``goal_tolerance_m`` of it.
3. **Turn in place** when the rover can (``min_turning_radius_m == 0`` or steerable corners) and the
   bearing ``α`` of the lookahead point, or the heading error to the path's direction at the
   projection, exceeds ``point_turn_deg`` (a path that starts off the rover's heading, e.g. a local
   plan beginning with a turn in place: pure pursuit would cut that corner by about
   ``lookahead / 2 · tan(α / 2)``); it continues until ``|α| <= point_turn_exit_deg``: ``vx = 0``,
   ``wz = turn_gain · α`` clipped to the yaw-rate limit (at least ``min_turn_rate_fraction`` of it).
   A rover that cannot turn in place tracks with its tightest arc instead.
4. **Tracking.** ``κ`` clipped to ``1 / min_turning_radius_m``; the speed is the cruise speed,
   reduced by ``cos α`` when the bearing is large, so that ``|κ| v`` stays within the yaw-rate
   limit, by ``min(1, R / regulated_radius_m)`` on tight curves (regulated pure pursuit, Macenski
   et al., "Regulated pure pursuit for robot path tracking", Autonomous Robots 2023), and near the
   end to ``max(min_speed_mps, min(sqrt(2 a d), v · d / slow_down_m))`` with ``d`` the remaining
   length and ``a = decel_fraction · max_accel_mps2``. ``wz = κ v``.

Every command satisfies the profile's limits: ``0 <= vx <= max_speed_mps``, ``|wz| <=
max_yaw_rate``, and ``|vx / wz| >= min_turning_radius_m`` unless ``vx == 0`` on a rover that can
turn in place.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .config import RoverProfile

__all__ = ["PurePursuit", "FollowCommand"]


class FollowCommand(NamedTuple):
    """What the follower asks for, and where the rover is relative to the path."""
    vx_mps: float
    wz_radps: float
    mode: str                 # "track", "turn" (in place) or "done"
    cross_track_m: float      # signed distance to the path, left of it positive
    progress_m: float         # path length up to the rover's projection
    remaining_m: float        # path length from the projection to the end
    heading_error_rad: float  # bearing of the lookahead point in the body frame
    target_xy_m: tuple        # the lookahead point

    @property
    def done(self) -> bool:
        return self.mode == "done"

    @property
    def twist(self) -> tuple:
        """``(vx_mps, wz_radps)`` for :meth:`drivers.base.Rover.set_twist`."""
        return (self.vx_mps, self.wz_radps)


class PurePursuit:
    """Pure-pursuit path follower for a rover profile.

    Parameters
    ----------
    profile : RoverProfile
        Drive limits (speed, acceleration, yaw rate, minimum turning radius, steerable corners).
    lookahead_m : float, optional
        Lookahead distance (default ``max(0.3 m, wheelbase)``).
    speed_mps : float, optional
        Cruise speed (default the profile's ``max_speed_mps``; at most that).
    goal_tolerance_m : float
        Remaining length at which the path counts as done.
    slow_down_m : float, optional
        Distance before the end over which the speed ramps down (default twice the lookahead).
    min_speed_mps : float, optional
        Slowest tracking speed near the end (default 20 % of the cruise speed).
    decel_fraction : float
        Fraction of ``max_accel_mps2`` planned for braking to the end.
    regulated_radius_m : float
        Curves tighter than this slow down in proportion (0 turns it off).
    point_turn_deg, point_turn_exit_deg : float
        Bearing that starts a turn in place, and the bearing that ends it.
    turn_gain : float
        Yaw rate per radian of bearing during a turn in place (1/s).
    min_turn_rate_fraction : float
        Smallest yaw rate of a turn in place, as a fraction of the limit.
    back_window_m, ahead_window_m : float
        Projection window around the progress (see the module docstring).
    """

    def __init__(self, profile: RoverProfile, lookahead_m: float | None = None, *, speed_mps: float | None = None,
                 goal_tolerance_m: float = 0.05, slow_down_m: float | None = None,
                 min_speed_mps: float | None = None, decel_fraction: float = 0.5, regulated_radius_m: float = 0.0,
                 point_turn_deg: float = 30.0, point_turn_exit_deg: float = 5.0, turn_gain: float = 2.0,
                 min_turn_rate_fraction: float = 0.25, back_window_m: float = 0.5, ahead_window_m: float = 1.0):
        if not isinstance(profile, RoverProfile):
            raise TypeError(f"profile must be a nav.RoverProfile (see nav.load_rover), got {type(profile).__name__}")
        d, g = profile.drive, profile.geometry
        self.profile = profile
        self.max_speed_mps = float(d.max_speed_mps)
        self.max_yaw_rate_radps = math.radians(d.max_yaw_rate_dps)
        self.min_turning_radius_m = float(d.min_turning_radius_m)
        self.can_turn_in_place = self.min_turning_radius_m == 0 or bool(d.steerable_corners)
        # a hair inside the radius limit, so rounding never takes |vx / wz| below it
        self.max_curvature_per_m = (math.inf if self.min_turning_radius_m == 0
                                    else (1.0 - 1e-6) / self.min_turning_radius_m)
        self.lookahead_m = _positive("lookahead_m", max(0.3, g.wheelbase_m) if lookahead_m is None else lookahead_m)
        sp = self.max_speed_mps if speed_mps is None else _positive("speed_mps", speed_mps)
        if sp > self.max_speed_mps * (1 + 1e-12):
            raise ValueError(f"speed_mps = {speed_mps!r}: must be <= the profile's max_speed_mps "
                             f"{self.max_speed_mps:g}")
        self.speed_mps = min(sp, self.max_speed_mps)
        self.goal_tolerance_m = _positive("goal_tolerance_m", goal_tolerance_m)
        self.slow_down_m = _positive("slow_down_m", 2.0 * self.lookahead_m if slow_down_m is None else slow_down_m)
        self.min_speed_mps = _positive("min_speed_mps", 0.2 * self.speed_mps if min_speed_mps is None
                                       else min_speed_mps)
        if self.min_speed_mps > self.speed_mps:
            raise ValueError(f"min_speed_mps = {min_speed_mps!r}: must be <= speed_mps {self.speed_mps:g}")
        self.decel_mps2 = _positive("decel_fraction", decel_fraction) * float(d.max_accel_mps2)
        self.regulated_radius_m = _nonneg("regulated_radius_m", regulated_radius_m)
        self.point_turn_rad = math.radians(_positive("point_turn_deg", point_turn_deg))
        self.point_turn_exit_rad = math.radians(_positive("point_turn_exit_deg", point_turn_exit_deg))
        if self.point_turn_exit_rad >= self.point_turn_rad:
            raise ValueError(f"point_turn_exit_deg = {point_turn_exit_deg!r}: must be < point_turn_deg "
                             f"{point_turn_deg!r}")
        self.turn_gain = _positive("turn_gain", turn_gain)
        self.min_turn_rate_fraction = _positive("min_turn_rate_fraction", min_turn_rate_fraction)
        if self.min_turn_rate_fraction > 1:
            raise ValueError(f"min_turn_rate_fraction = {min_turn_rate_fraction!r}: must be <= 1")
        self.back_window_m = _nonneg("back_window_m", back_window_m)
        self.ahead_window_m = _nonneg("ahead_window_m", ahead_window_m)
        self.reset()

    def reset(self) -> None:
        """Forget the progress along the current path (the next path starts from its beginning)."""
        self._path = None
        self._s = None
        self._progress = 0.0
        self._turning = False

    # ------------------------------------------------------------------ main
    def command(self, pose_xy_yaw, path) -> FollowCommand:
        """The twist that follows ``path`` from ``pose_xy_yaw``.

        Parameters
        ----------
        pose_xy_yaw : (float, float, float)
            World ``x_m, y_m, yaw_rad``.
        path : (N, 2) array, LocalPlan or Path
            World points (a :class:`~nav.local_planner.LocalPlan` or :class:`~nav.path.Path` gives its
            ``xy_m``). A new path (different points) restarts the progress.

        Returns
        -------
        FollowCommand
            ``vx_mps``, ``wz_radps`` (``.twist``), the mode, cross-track error, progress, remaining
            length, heading error and lookahead point.
        """
        x, y, yaw = _pose(pose_xy_yaw)
        xy = self._set_path(path)
        s = self._s
        total = float(s[-1])
        p = np.array([x, y])
        # 1. projection within the window
        lo = self._progress - self.back_window_m
        hi = self._progress + self.lookahead_m + self.ahead_window_m
        s_proj, cross, seg = _project(xy, s, p, lo, hi)
        self._progress = max(self._progress, s_proj)
        s_proj = self._progress
        end = xy[-1]
        # a single point is a goal to drive to; a polyline is done when little of it remains (which
        # includes a rover beside or past the end: its projection clamps to the end)
        remaining = max(total - s_proj, 0.0) if len(xy) > 1 else abs(cross)
        # 2. end of path
        if remaining <= self.goal_tolerance_m:
            self._turning = False
            return FollowCommand(0.0, 0.0, "done", cross, s_proj, remaining, 0.0, (float(end[0]), float(end[1])))
        # lookahead point: along the path, past the end on the last segment's extension
        target = end if len(xy) == 1 else _point_at(xy, s, s_proj + self.lookahead_m, _end_tangent(xy))
        dx, dy = target[0] - x, target[1] - y
        c, sn = math.cos(yaw), math.sin(yaw)
        bx = c * dx + sn * dy
        by = -sn * dx + c * dy
        alpha = math.atan2(by, bx)
        dist = math.hypot(bx, by)
        tgt = (float(target[0]), float(target[1]))
        # 3. turn in place
        if self.can_turn_in_place:
            tangent_err = _wrap(_heading_at(xy, seg) - yaw) if len(xy) > 1 else alpha
            if abs(alpha) <= self.point_turn_exit_rad:
                self._turning = False
            elif abs(alpha) > self.point_turn_rad or abs(tangent_err) > self.point_turn_rad:
                self._turning = True
            if self._turning:
                wmax = self.max_yaw_rate_radps
                wz = math.copysign(min(max(self.turn_gain * abs(alpha), self.min_turn_rate_fraction * wmax), wmax),
                                   alpha)
                return FollowCommand(0.0, wz, "turn", cross, s_proj, remaining, alpha, tgt)
        # 4. tracking
        kappa = 2.0 * math.sin(alpha) / dist if dist > 1e-9 else 0.0
        if abs(alpha) > 0.5 * math.pi:         # target behind a rover that cannot turn in place
            kappa = math.copysign(self.max_curvature_per_m if math.isfinite(self.max_curvature_per_m)
                                  else 1.0 / max(dist, 1e-3), alpha)
        kappa = max(-self.max_curvature_per_m, min(self.max_curvature_per_m, kappa))
        v = self.speed_mps * max(math.cos(alpha), 0.2)
        if self.regulated_radius_m > 0 and abs(kappa) > 0:
            v *= min(1.0, 1.0 / (abs(kappa) * self.regulated_radius_m))
        ramp = min(math.sqrt(2.0 * self.decel_mps2 * remaining), self.speed_mps * remaining / self.slow_down_m)
        v = min(v, max(ramp, self.min_speed_mps))
        if abs(kappa) * v > self.max_yaw_rate_radps:
            v = self.max_yaw_rate_radps / abs(kappa)
        v = max(0.0, min(v, self.max_speed_mps))
        wz = kappa * v
        wz = max(-self.max_yaw_rate_radps, min(self.max_yaw_rate_radps, wz))
        return FollowCommand(v, wz, "track", cross, s_proj, remaining, alpha, tgt)

    # ------------------------------------------------------------------ internals
    def _set_path(self, path) -> np.ndarray:
        xy = getattr(path, "xy_m", path)
        if xy is None:
            raise ValueError("path has no world points (xy_m is None)")
        a = np.asarray(xy, dtype=np.float64)
        if a.ndim != 2 or a.shape[1] != 2 or len(a) < 1:
            raise ValueError(f"path must be (N >= 1, 2) world points, got shape {a.shape}")
        if not np.isfinite(a).all():
            raise ValueError("path points must be finite")
        if self._path is not None and self._raw.shape == a.shape and np.array_equal(self._raw, a):
            return self._path
        self._raw = a.copy()
        keep = np.r_[True, np.hypot(*np.diff(a, axis=0).T) > 1e-9] if len(a) > 1 else np.array([True])
        pts = a[keep]
        self._path = pts
        seg = np.hypot(*np.diff(pts, axis=0).T) if len(pts) > 1 else np.zeros(0)
        self._s = np.concatenate([[0.0], np.cumsum(seg)])
        self._progress = 0.0
        self._turning = False
        return pts

    def __repr__(self) -> str:
        return (f"PurePursuit({self.profile.name!r}, lookahead {self.lookahead_m:g} m, speed {self.speed_mps:g} m/s, "
                f"turns in place {'yes' if self.can_turn_in_place else 'no'})")


# ------------------------------------------------------------------------------------- geometry
def _project(xy, s, p, lo, hi):
    """Closest point of the polyline to ``p`` among segments overlapping ``[lo, hi]`` of path length:
    ``(s, signed cross-track, segment index)``."""
    if len(xy) == 1:
        d = p - xy[0]
        return 0.0, float(math.hypot(*d)), 0
    i0 = min(max(int(np.searchsorted(s, lo, side="right")) - 1, 0), len(xy) - 2)
    i1 = min(int(np.searchsorted(s, hi, side="left")), len(xy) - 1)
    i1 = max(i1, i0 + 1)
    a = xy[i0:i1]
    b = xy[i0 + 1:i1 + 1]
    ab = b - a
    L2 = (ab * ab).sum(axis=1)
    t = np.clip(((p - a) * ab).sum(axis=1) / L2, 0.0, 1.0)
    q = a + t[:, None] * ab
    d2 = ((p - q) ** 2).sum(axis=1)
    k = int(np.argmin(d2))
    seg = i0 + k
    sp = float(s[seg] + t[k] * math.sqrt(L2[k]))
    u = ab[k] / math.sqrt(L2[k])
    r = p - q[k]
    cross = float(u[0] * r[1] - u[1] * r[0])
    dist = math.sqrt(float(d2[k]))
    return sp, math.copysign(dist, cross) if dist > 0 else 0.0, seg


def _heading_at(xy, seg):
    d = xy[min(seg + 1, len(xy) - 1)] - xy[min(seg, len(xy) - 2)]
    return math.atan2(d[1], d[0])


def _wrap(a: float) -> float:
    return (a + math.pi) % (2.0 * math.pi) - math.pi


def _end_tangent(xy):
    if len(xy) < 2:
        return np.array([1.0, 0.0])
    d = xy[-1] - xy[-2]
    return d / math.hypot(*d)


def _point_at(xy, s, sq, tangent):
    """The point at path length ``sq`` (beyond the end: on the extension of the last segment)."""
    total = s[-1]
    if sq >= total:
        return xy[-1] + (sq - total) * tangent
    k = int(np.searchsorted(s, sq, side="right")) - 1
    k = min(max(k, 0), len(xy) - 2)
    t = (sq - s[k]) / (s[k + 1] - s[k])
    return xy[k] + t * (xy[k + 1] - xy[k])


def _pose(v):
    try:
        x, y, yaw = (float(a) for a in v)
    except (TypeError, ValueError):
        raise ValueError(f"pose_xy_yaw must be (x_m, y_m, yaw_rad), got {v!r}") from None
    if not (math.isfinite(x) and math.isfinite(y) and math.isfinite(yaw)):
        raise ValueError(f"pose_xy_yaw must be finite, got {v!r}")
    return x, y, yaw


def _positive(name, v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(v) \
            or v <= 0:
        raise ValueError(f"{name} = {v!r}: must be a finite number > 0")
    return float(v)


def _nonneg(name, v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(v) \
            or v < 0:
        raise ValueError(f"{name} = {v!r}: must be a finite number >= 0")
    return float(v)
