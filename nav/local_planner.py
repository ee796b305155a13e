"""Local planner: candidate arcs scored by terrain cost and the global cost-to-go, then a body check.

The local step of the GESTALT / ENav cycle (Goldberg, Maimone & Matthies, IEEE Aerospace 2002;
Carsten, Rankin, Ferguson & Stentz, "Global path planning on board the Mars Exploration Rovers",
IEEE Aerospace 2007; Otsu et al., "Fast approximate clearance evaluation for rovers with
articulated suspension systems", J. Field Robotics 2020 — the ENav approximate clearance
evaluation): many short candidate paths are scored cheaply, and only the best few are checked
expensively for what a cost grid cannot see — where the wheels land, how the body tilts and how
much clearance is left under the belly.

Candidates (body frame, built once per planner)
-----------------------------------------------
* **Arcs** of constant curvature ``κ`` for every length in ``ArcParams.lengths_m`` and
  ``n_curvatures`` curvatures evenly spaced in ``[-κmax, κmax]``, ``κmax = 1 / max(min turning
  radius, ArcParams.min_radius_m)`` (the profile's ``drive.min_turning_radius_m``).
* **Two-segment arcs** (``two_segment``): ``κ1`` for ``split·L`` then ``κ2`` for the rest, for
  lengths of at least ``two_segment_min_m``, ``κ2`` over ``n_curvatures_second`` values (the
  single arc ``κ2 = κ1`` is not repeated).
* **Turns in place** by each of ``± point_turns_deg`` followed by an arc (``n_curvatures_after_turn``
  curvatures, every length), when the rover can turn in place (``min_turning_radius_m == 0`` or
  steerable corners).

Each candidate is sampled every ``sample_step_m`` (exact arc geometry) and every ``turn_step_deg``
of a turn in place. Keep ``sample_step_m`` at most the cost grid's cell size so no lethal cell
can fall between two samples of the centre line.

Cheap pass (all candidates, one Numba kernel)
---------------------------------------------
The cost grid is the configuration space: its lethal cells are already inflated by the rover's half
width (:func:`nav.traversability`), so a candidate is **blocked** when its centre line touches a
lethal cell (``blocked_unknown`` when unknown terrain lies within the inflation radius of that cell,
``off_map`` when it comes closer to the grid's edge than the inflation radius or the reach of a
wheel's rim from the body origin: beyond the edge is unknown). A rover that finds itself in a margin
— its cell lethal only by inflation (``LETHAL_INFLATED`` in a :class:`CostMap`) or its centre within
the edge margin — may leave it: candidates cross such cells until their centre line first reaches a
free cell, but never one nearer a hazard (a cell lethal in its own right) than the rover's own cell is
— an escape may not close in on what it escapes (a rover in a cell lethal in its own right gets
``start_in_hazard``). Otherwise its cost
is the integral along the path of the *swept-footprint* cost, the mean of the cell costs under the
centre and both wheel tracks (a lethal cell under a wheel track counts ``side_hazard_cost``). The
score, in cost·metres like the global planner's cost-to-go, is::

    cost_weight · ∫ footprint cost ds  +  cost_to_go_weight · ctg(end)
      + heading_weight · (1 - cos φ) / 2          φ: end heading vs. steepest descent of ctg
      + curvature_weight · Σ |κ| L  +  turn_weight · |turn|
      + curvature_change_weight · (|κ1 - κ_prev| + |κ2 - κ1|)  -  length_bonus_per_m · L

(``ctg`` bilinear over the finite corners of the cost-to-go grid; a candidate whose end has no
route to the goal is ``no_route``). So a candidate's score estimates the whole cost to the goal
through it, as Field D*'s cost-to-go from each arc's end replaced the goal vote on MER.

Body check (best few, one Numba kernel)
---------------------------------------
Free candidates are checked in score order, ``n_check`` at a time, at most ``max_checks`` in
all; the best one that passes wins. At a pose every ``check_step_m`` along the candidate (and
every sample of a turn in place) the rover is **settled on the height map with the simulator's
model** (:mod:`sim.rover_model`): each wheel rests on the envelope of the terrain under its rim
along its heading; a rocker-bogie's pitch is the mean of its two rockers' slopes (the
differential) and its roll comes from the rocker pivots; a rigid chassis rests on the support
facet of its contacts above the centre of mass. A pose fails on

* ``unknown`` — a wheel over unknown terrain or off the map, or more than
  ``max_unknown_belly_fraction`` of the belly; the candidate still passes when at least
  ``min_verified_m`` was verified before it (the plan's ``verified_length_m`` says how far);
* ``tilt`` — tilt above ``max_tilt_deg`` (default ``hazards.max_tilt_deg``) or roll / pitch past
  the static tip-over limits ``atan(track/2 / h_cg)``, ``atan(wheelbase/2 / h_cg)``;
* ``clearance`` — belly clearance (along the body normal, from the terrain to the belly plane
  ``geometry.belly_clearance_m`` above the contact plane, over the rectangle between the
  outer axles and the inner wheel faces) below ``clearance_margin_m``;
* ``step`` — a wheel driving into a rise above ``climb_fraction`` × the simulator's climb limit
  (a wheel diameter for rocker-bogie, a wheel radius for rigid rovers) within a wheel radius;
* ``suspension`` — a rocker (from the body) or bogie (from its rocker) angle beyond
  ``max_rocker_deg`` / ``max_bogie_deg`` (rocker-bogie only; off unless set — profiles carry no
  articulation limits yet).

Every rejected candidate is reported with the reason, where and the offending value.
"""
from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import numpy as np

from .config import RoverProfile
from .costmap import LETHAL_INFLATED, CostMap
from .errors import GoalInHazard, GoalOutsideMap, StartOutsideMap
from .planning import validate_cost_grid
from .terrain_map import TerrainMap
from .traversability import distance_cells

__all__ = ["ArcParams", "ArcPlanner", "Candidates", "CostToGo", "LocalPlan", "LocalPlanFailure", "Rejection",
           "Scores", "BodyPoses", "CHECK_REASONS", "STATUS_NAMES"]

logger = logging.getLogger(__name__)

#: Cheap-pass status names, by kernel code.
STATUS_NAMES = ("free", "blocked", "blocked_unknown", "off_map", "no_route")
#: Body-check outcome names, by kernel code.
CHECK_REASONS = ("ok", "clearance", "tilt", "step", "suspension", "unknown")


def _kernels():
    """The Numba kernels, imported on first use so that ``import nav`` stays cheap."""
    from . import _local_kernels
    return _local_kernels


# ------------------------------------------------------------------------------------- parameters
@dataclass(frozen=True, kw_only=True)
class ArcParams:
    """Tunables of :class:`ArcPlanner` (see the module docstring for what each term does).

    Lengths in metres, curvatures in 1/m, angles in degrees, weights in cost·m (per radian for
    ``curvature_weight`` and ``turn_weight``, per 1/m for ``curvature_change_weight``).
    """
    lengths_m: tuple = (0.5, 1.0, 2.0, 3.0)
    n_curvatures: int = 31
    min_radius_m: float = 0.5
    two_segment: bool = True
    two_segment_min_m: float = 1.5
    split: float = 0.5
    n_curvatures_second: int = 11
    point_turns_deg: tuple = (45.0, 90.0, 135.0, 180.0)
    n_curvatures_after_turn: int = 5
    sample_step_m: float = 0.05
    turn_step_deg: float = 10.0
    cost_weight: float = 1.0
    cost_to_go_weight: float = 1.0
    heading_weight: float = 0.5
    heading_probe_m: float = 0.2
    curvature_weight: float = 0.1
    curvature_change_weight: float = 0.1
    turn_weight: float = 0.5
    length_bonus_per_m: float = 0.1
    side_hazard_cost: float = 4.0
    n_check: int = 8
    max_checks: int = 64
    check_step_m: float = 0.05
    clearance_margin_m: float = 0.02
    max_tilt_deg: float | None = None
    climb_fraction: float = 0.9
    max_rocker_deg: float | None = None
    max_bogie_deg: float | None = None
    min_verified_m: float = 0.5
    max_unknown_belly_fraction: float = 0.25

    def __post_init__(self):
        def num(name, lo=None, hi=None, lo_open=False, allow_none=False):
            v = getattr(self, name)
            if v is None and allow_none:
                return
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
                    or not math.isfinite(v):
                raise ValueError(f"ArcParams.{name} = {v!r}: must be a finite number")
            if lo is not None and (v <= lo if lo_open else v < lo):
                raise ValueError(f"ArcParams.{name} = {v!r}: must be {'>' if lo_open else '>='} {lo:g}")
            if hi is not None and v > hi:
                raise ValueError(f"ArcParams.{name} = {v!r}: must be <= {hi:g}")

        def count(name, lo):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                raise ValueError(f"ArcParams.{name} = {v!r}: must be an integer >= {lo}")

        def lengths(name, allow_empty):
            v = getattr(self, name)
            try:
                vals = tuple(float(x) for x in v)
            except (TypeError, ValueError):
                raise ValueError(f"ArcParams.{name} = {v!r}: must be a sequence of numbers") from None
            if not vals and not allow_empty:
                raise ValueError(f"ArcParams.{name} = {v!r}: must not be empty")
            return vals

        ls = lengths("lengths_m", False)
        if any(not (math.isfinite(x) and 0 < x <= 50) for x in ls):
            raise ValueError(f"ArcParams.lengths_m = {self.lengths_m!r}: each must be in (0, 50] m")
        object.__setattr__(self, "lengths_m", ls)
        pt = lengths("point_turns_deg", True)
        if any(not (math.isfinite(x) and 0 < x <= 180) for x in pt):
            raise ValueError(f"ArcParams.point_turns_deg = {self.point_turns_deg!r}: each must be in (0, 180]")
        object.__setattr__(self, "point_turns_deg", pt)
        for name in ("n_curvatures", "n_curvatures_second", "n_curvatures_after_turn", "n_check", "max_checks"):
            count(name, 1)
        for name in ("n_curvatures", "n_curvatures_second", "n_curvatures_after_turn"):
            if getattr(self, name) % 2 == 0:
                raise ValueError(f"ArcParams.{name} = {getattr(self, name)}: must be odd (so that the "
                                 f"straight path is a candidate)")
        num("min_radius_m", 0.0, lo_open=True)
        num("two_segment_min_m", 0.0)
        num("split", 0.0, 1.0, lo_open=True)
        if self.split >= 1.0:
            raise ValueError(f"ArcParams.split = {self.split!r}: must be < 1")
        num("sample_step_m", 0.0, 1.0, lo_open=True)
        num("turn_step_deg", 0.0, 90.0, lo_open=True)
        for name in ("cost_weight", "cost_to_go_weight", "heading_weight", "curvature_weight",
                     "curvature_change_weight", "turn_weight", "length_bonus_per_m",
                     "min_verified_m"):
            num(name, 0.0)
        num("heading_probe_m", 0.0, 10.0, lo_open=True)
        num("side_hazard_cost", 1.0)
        num("check_step_m", 0.0, 1.0, lo_open=True)
        num("clearance_margin_m", -1.0, 1.0)
        num("max_tilt_deg", 0.0, 90.0, lo_open=True, allow_none=True)
        num("climb_fraction", 0.0, 10.0, lo_open=True)
        num("max_rocker_deg", 0.0, 90.0, lo_open=True, allow_none=True)
        num("max_bogie_deg", 0.0, 90.0, lo_open=True, allow_none=True)
        num("max_unknown_belly_fraction", 0.0, 1.0)
        if not isinstance(self.two_segment, bool):
            raise ValueError(f"ArcParams.two_segment = {self.two_segment!r}: must be True or False")
        if self.max_checks < self.n_check:
            raise ValueError(f"ArcParams.max_checks = {self.max_checks}: must be >= n_check ({self.n_check})")


# ------------------------------------------------------------------------------------- value types
@dataclass(frozen=True, eq=False)
class Candidates:
    """The candidate library in the body frame (start pose at the origin facing +x).

    Attributes
    ----------
    xyt : (n, m, 3) float64
        Samples ``(x_m, y_m, yaw_rad)``; only the first ``n_samples[i]`` of row ``i`` are used.
    cos_sin : (n, m, 2) float64
        ``cos, sin`` of each sample's yaw.
    s_m : (n, m) float64
        Path length at each sample (0 during a turn in place).
    weight_m : (n, m) float64
        Trapezoid weight of each sample in the cost integral (0 during a turn in place).
    curvature_per_m : (n, m) float64
        Curvature driven at each sample (steering of steerable wheels in the body check).
    turning : (n, m) uint8
        1 for the samples of a turn in place.
    n_samples : (n,) int64
    turn_rad : (n,) float64
        Turn in place before the arcs (0 for none).
    curvatures_per_m : (n, 2) float64
        ``κ1, κ2`` (``κ2`` NaN for a single arc).
    segment_lengths_m : (n, 2) float64
        Lengths of the two segments (the second 0 for a single arc).
    length_m : (n,) float64
    static_penalty : (n,) float64
        The pose-independent score terms (curvature, turn, internal curvature change, length bonus).
    """
    xyt: np.ndarray
    cos_sin: np.ndarray
    s_m: np.ndarray
    weight_m: np.ndarray
    curvature_per_m: np.ndarray
    turning: np.ndarray
    n_samples: np.ndarray
    turn_rad: np.ndarray
    curvatures_per_m: np.ndarray
    segment_lengths_m: np.ndarray
    length_m: np.ndarray
    static_penalty: np.ndarray

    def __len__(self) -> int:
        return len(self.n_samples)

    def describe(self, i: int) -> str:
        """Human description of candidate ``i``."""
        k1, k2 = self.curvatures_per_m[i]
        l1, l2 = self.segment_lengths_m[i]
        turn = self.turn_rad[i]
        parts = []
        if turn != 0.0:
            parts.append(f"turn in place {math.degrees(turn):+.0f} deg")
        parts.append(f"arc {l1:.2f} m at curvature {k1:+.3f}/m")
        if l2 > 0:
            parts.append(f"then {l2:.2f} m at {k2:+.3f}/m")
        return f"candidate {i}: " + ", ".join(parts)


class Scores(NamedTuple):
    """Cheap-pass result for every candidate (arrays of length ``len(candidates)``)."""
    status: np.ndarray          # int64 codes, names in STATUS_NAMES
    score: np.ndarray           # float64, inf unless free
    cost: np.ndarray            # float64 cost integral (cost·m), inf unless free
    block_s_m: np.ndarray       # float64 path length where the candidate is blocked (inf if not)
    cost_to_go: np.ndarray      # float64 cost-to-go at each candidate's end
    heading_term: np.ndarray    # float64
    penalty: np.ndarray         # float64 curvature / turn / smoothness / length terms


class BodyPoses(NamedTuple):
    """The rover settled at a list of poses (arrays of length N; NaN where not ``known``)."""
    z_m: np.ndarray
    tilt_rad: np.ndarray
    roll_rad: np.ndarray
    pitch_rad: np.ndarray
    clearance_m: np.ndarray
    max_step_m: np.ndarray
    rocker_rad: np.ndarray
    bogie_rad: np.ndarray
    known: np.ndarray


@dataclass(frozen=True)
class Rejection:
    """Why the body check rejected a candidate."""
    index: int
    reason: str            # one of CHECK_REASONS[1:]
    detail: str
    s_m: float             # path length of the failing pose
    xy_m: tuple            # world position of the failing pose (of the lowest belly point for clearance)
    value: float           # the offending tilt (deg), clearance (m), step (m) or angle (deg); NaN for unknown


@dataclass(frozen=True, eq=False)
class LocalPlan:
    """The chosen candidate, in the world frame.

    The path starts at the rover's position. When ``turn_rad`` is not 0 the rover first turns in
    place by that angle; ``xy_m``/``yaw_rad`` then describe the arcs that follow (their first
    heading is the start yaw plus ``turn_rad``).

    Attributes
    ----------
    xy_m : (N, 2) float64
        Path samples in world metres.
    yaw_rad, s_m, curvature_per_m : (N,) float64
        Heading, path length and curvature at each sample.
    turn_rad : float
    length_m : float
    verified_length_m : float
        How far along the path the body check went (``length_m`` unless unknown terrain ended it;
        drive no further than this before the next plan).
    score, cost, cost_to_go : float
        Score, cost integral (cost·m) and cost-to-go at the end.
    min_clearance_m, max_tilt_deg, max_step_m : float
        Extremes over the checked poses.
    index : int
        Candidate index in :attr:`ArcPlanner.candidates`.
    curvatures_per_m, segment_lengths_m : tuple
    rejected : tuple of Rejection
        Better-scored candidates that failed the body check.
    n_candidates, n_free, n_checked : int
    status_counts : dict
        Cheap-pass outcome counts by :data:`STATUS_NAMES`.
    """
    xy_m: np.ndarray
    yaw_rad: np.ndarray
    s_m: np.ndarray
    curvature_per_m: np.ndarray
    turn_rad: float
    length_m: float
    verified_length_m: float
    score: float
    cost: float
    cost_to_go: float
    min_clearance_m: float
    max_tilt_deg: float
    max_step_m: float
    index: int
    curvatures_per_m: tuple
    segment_lengths_m: tuple
    rejected: tuple = ()
    n_candidates: int = 0
    n_free: int = 0
    n_checked: int = 0
    status_counts: dict = field(default_factory=dict)

    def __bool__(self) -> bool:
        return True

    def xy_upto(self, length_m: float) -> np.ndarray:
        """Path samples up to ``length_m`` along it (the last one interpolated)."""
        L = float(length_m)
        if not L < self.s_m[-1]:
            return self.xy_m.copy()
        k = int(np.searchsorted(self.s_m, L, side="right"))
        if k == 0:
            return self.xy_m[:1].copy()
        s0, s1 = self.s_m[k - 1], self.s_m[k]
        t = 0.0 if s1 <= s0 else (L - s0) / (s1 - s0)
        last = self.xy_m[k - 1] + t * (self.xy_m[k] - self.xy_m[k - 1])
        return np.vstack([self.xy_m[:k], last[None]])

    def __repr__(self) -> str:
        turn = f"turn {math.degrees(self.turn_rad):+.0f} deg, " if self.turn_rad else ""
        curv = tuple(round(k, 3) for k in self.curvatures_per_m)
        return (f"LocalPlan({turn}{self.length_m:.2f} m, curvatures {curv}, "
                f"score {self.score:.3f}, clearance >= {self.min_clearance_m:.3f} m, tilt <= "
                f"{self.max_tilt_deg:.1f} deg, verified {self.verified_length_m:.2f} m, "
                f"{len(self.rejected)} rejected)")


@dataclass(frozen=True, eq=False)
class LocalPlanFailure:
    """No candidate is safe: falsy, with the reason.

    ``code`` is ``"start_in_hazard"``, ``"blocked"`` (every candidate crosses a lethal cell),
    ``"unknown_ahead"`` (candidates end at unknown terrain or the map's edge, none is free),
    ``"no_route"`` (free candidates all end where the goal cannot be reached) or ``"body_check"``
    (every checked candidate failed the body check; ``rejected`` says why).
    """
    code: str
    reason: str
    status_counts: dict = field(default_factory=dict)
    rejected: tuple = ()
    n_candidates: int = 0
    n_checked: int = 0

    def __bool__(self) -> bool:
        return False

    def __str__(self) -> str:
        return self.reason


# ------------------------------------------------------------------------------------- cost-to-go
@dataclass(frozen=True, eq=False)
class CostToGo:
    """A cost-to-goal field on a grid (cost·m; ``inf`` where the goal cannot be reached).

    Sampled bilinearly between cell centres over the finite corners only; ``inf`` off the grid.
    The grid may differ from the local map's (e.g. a coarser global map).

    Parameters
    ----------
    values : (rows, cols) array
        Cost to the goal from each cell centre, >= 0 or ``inf``; coerced to float64 (a float64
        C-contiguous array is used without a copy, through a read-only view).
    cell_size_m : float
    origin_xy_m : (float, float)
        Lower-left corner of cell (0, 0) (the :mod:`nav.terrain_map` convention).
    goal_xy_m : (float, float), optional
    """
    values: np.ndarray
    cell_size_m: float
    origin_xy_m: tuple = (0.0, 0.0)
    goal_xy_m: tuple | None = None

    def __post_init__(self):
        v = np.asarray(self.values)
        if v.ndim != 2 or v.size == 0:
            raise ValueError(f"values must be a non-empty 2-D array, got shape {v.shape}")
        if not (np.issubdtype(v.dtype, np.floating) or np.issubdtype(v.dtype, np.integer)):
            raise ValueError(f"values must hold real numbers, got dtype {v.dtype}")
        v = np.ascontiguousarray(v, dtype=np.float64)
        bad = np.isnan(v) | (v < 0)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise ValueError(f"values must be >= 0 or inf, got {v[r, c]!r} at (row {r}, col {c})")
        v = v.view()                  # read-only view: the caller's array keeps its flags
        v.setflags(write=False)
        cs = float(self.cell_size_m)
        if not (math.isfinite(cs) and cs > 0):
            raise ValueError(f"cell_size_m = {self.cell_size_m!r}: must be a finite number > 0")
        ox, oy = (float(a) for a in self.origin_xy_m)
        if not (math.isfinite(ox) and math.isfinite(oy)):
            raise ValueError(f"origin_xy_m = {self.origin_xy_m!r}: must be finite")
        object.__setattr__(self, "values", v)
        object.__setattr__(self, "cell_size_m", cs)
        object.__setattr__(self, "origin_xy_m", (ox, oy))

    @classmethod
    def from_costmap(cls, costmap: CostMap, goal_xy_m, *, interp: bool = True) -> "CostToGo":
        """Field D*'s cost-to-goal (:func:`nav.field_dstar.cost_to_goal`) on a cost map, in cost·m.

        Raises
        ------
        GoalOutsideMap, GoalInHazard
        """
        from .field_dstar import cost_to_goal

        if not isinstance(costmap, CostMap):
            raise TypeError(f"costmap must be a nav.CostMap, got {type(costmap).__name__}")
        gx, gy = _xy(goal_xy_m, "goal_xy_m")
        tm = costmap.terrain
        rc = tm.world_to_cell((gx, gy))
        if not tm.in_bounds(rc):
            x0, x1, y0, y1 = tm.extent_m
            raise GoalOutsideMap(f"goal (x={gx:.2f} m, y={gy:.2f} m) is outside the map "
                                 f"(x {x0:.2f}..{x1:.2f} m, y {y0:.2f}..{y1:.2f} m)")
        r, c = int(rc[0]), int(rc[1])
        if not np.isfinite(costmap.cost[r, c]):
            raise GoalInHazard(f"goal (x={gx:.2f} m, y={gy:.2f} m) is in a lethal cell: {costmap.explain((r, c))}")
        g = cost_to_goal(costmap.cost, (r, c), interp=interp) * tm.cell_size_m
        return cls(g, tm.cell_size_m, tm.origin_xy_m, (gx, gy))

    def at(self, xy_m) -> np.ndarray:
        """Cost-to-go at world points ``(N, 2)`` (or one ``(2,)`` point)."""
        xy = np.ascontiguousarray(np.atleast_2d(np.asarray(xy_m, dtype=np.float64)))
        if xy.ndim != 2 or xy.shape[1] != 2:
            raise ValueError(f"xy_m must have shape (N, 2), got {np.shape(xy_m)}")
        out = np.empty(len(xy))
        ox, oy = self.origin_xy_m
        _kernels()._sample_field(self.values, ox, oy, self.cell_size_m, xy, out)
        return out if np.ndim(xy_m) > 1 else out[0]


# ------------------------------------------------------------------------------------- the planner
class ArcPlanner:
    """Choose a short safe path: candidate arcs, a cheap score, an expensive body check on the best.

    Parameters
    ----------
    profile : RoverProfile
        Geometry (wheel positions, radius, belly clearance, CG height), drive limits (minimum
        turning radius, turns in place) and hazards (``max_tilt_deg``).
    params : ArcParams, optional

    Notes
    -----
    The candidate library is built once (:attr:`candidates`); :meth:`plan` scores it at a pose.
    :meth:`score` and :meth:`check` expose the two passes separately.
    """

    def __init__(self, profile: RoverProfile, params: ArcParams | None = None):
        if not isinstance(profile, RoverProfile):
            raise TypeError(f"profile must be a nav.RoverProfile (see nav.load_rover), got {type(profile).__name__}")
        params = ArcParams() if params is None else params
        if not isinstance(params, ArcParams):
            raise TypeError(f"params must be a nav.local_planner.ArcParams, got {type(params).__name__}")
        self.profile = profile
        self.params = params
        d = profile.drive
        self.can_turn_in_place = d.min_turning_radius_m == 0 or bool(d.steerable_corners)
        self.max_curvature_per_m = 1.0 / max(d.min_turning_radius_m, params.min_radius_m)
        self.candidates = _build_candidates(params, self.max_curvature_per_m, self.can_turn_in_place)
        self._body = _BodyGeometry(profile, params)
        self._belly_cache: dict = {}
        self._zero_reason = None

    # ------------------------------------------------------------------ public passes
    def score(self, pose_xy_yaw, terrain: TerrainMap, cost, cost_to_go, *,
              prev_curvature_per_m: float | None = None) -> Scores:
        """The cheap pass over every candidate (see the module docstring).

        Parameters are those of :meth:`plan`.
        """
        x, y, yaw, tm, cost_a, reason, ctg, margins = self._inputs(pose_xy_yaw, terrain, cost, cost_to_go)
        return self._score(x, y, yaw, tm, cost_a, reason, ctg, margins, prev_curvature_per_m)

    def check(self, pose_xy_yaw, terrain: TerrainMap, indices) -> np.ndarray:
        """The body check of candidates ``indices`` at a pose: a ``(k, N_CHK)`` float64 array of
        ``nav._local_kernels.C_*`` columns (status code of :data:`CHECK_REASONS`, fail length and
        value, verified length, minimum clearance, maximum tilt / step / rocker / bogie, failing
        world x, y, poses settled)."""
        x, y, yaw = _pose(pose_xy_yaw)
        tm = _terrain(terrain)
        idx = np.ascontiguousarray(np.asarray(indices, dtype=np.int64).reshape(-1))
        if idx.size and (idx.min() < 0 or idx.max() >= len(self.candidates)):
            raise ValueError(f"indices must lie in [0, {len(self.candidates) - 1}], got "
                             f"[{idx.min()}, {idx.max()}]")
        return self._check(x, y, yaw, tm, idx)

    def settle(self, terrain: TerrainMap, poses) -> BodyPoses:
        """The rover settled at world poses ``(N, 3)`` of ``(x, y, yaw)`` (or ``(N, 4)`` with the
        curvature being driven, which steers steerable wheels) with the body-check model."""
        K = _kernels()
        tm = _terrain(terrain)
        try:
            p = np.asarray(poses, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"poses must be an (N, 3) or (N, 4) array of numbers, got {poses!r}") from None
        if p.ndim == 1:
            p = p[None]
        if p.ndim != 2 or p.shape[1] not in (3, 4) or not np.isfinite(p).all():
            raise ValueError(f"poses must be finite with shape (N, 3) or (N, 4), got {np.shape(poses)}")
        if p.shape[1] == 3:
            p = np.concatenate([p, np.zeros((len(p), 1))], axis=1)
        p = np.ascontiguousarray(p)
        b = self._body
        belly, n_env = self._belly(tm.cell_size_m)
        out = np.empty((len(p), 11))
        ox, oy = tm.origin_xy_m
        K._settle_poses(tm.elevation_m, ox, oy, tm.cell_size_m, b.geo, b.kind, b.tri, b.tri_inv, belly, n_env,
                        b.prm, p, out)
        return BodyPoses(z_m=out[:, 0], tilt_rad=out[:, 4], roll_rad=out[:, 5], pitch_rad=out[:, 6],
                         clearance_m=out[:, 3], max_step_m=out[:, 7], rocker_rad=out[:, 8], bogie_rad=out[:, 9],
                         known=out[:, 10] == 0)

    # ------------------------------------------------------------------ plan
    def plan(self, pose_xy_yaw, terrain: TerrainMap, cost, cost_to_go, *,
             prev_curvature_per_m: float | None = None) -> "LocalPlan | LocalPlanFailure":
        """Choose the best candidate that passes the body check.

        Parameters
        ----------
        pose_xy_yaw : (float, float, float)
            Rover pose: world ``x_m, y_m`` and ``yaw_rad`` (counter-clockwise from +x).
        terrain : TerrainMap
            Heights (NaN = unknown) for the body check and for telling unknown terrain from hazards.
        cost : CostMap or (rows, cols) array
            Traversal cost on the terrain's grid (``inf`` = lethal, inflated by the rover's half
            width as :func:`nav.traversability` does).
        cost_to_go : CostToGo, (rows, cols) array or callable
            Cost to the goal in cost·m: a :class:`CostToGo`, a grid on the terrain's grid, or a
            function of world points ``(N, 2) -> (N,)``.
        prev_curvature_per_m : float, optional
            First curvature of the previous plan (the smoothness term; none when omitted).

        Returns
        -------
        LocalPlan or LocalPlanFailure
            A falsy :class:`LocalPlanFailure` says why nothing is safe.

        Raises
        ------
        StartOutsideMap
            The pose is outside the terrain map.
        TypeError, ValueError
            Malformed inputs.
        """
        K = _kernels()
        p = self.params
        x, y, yaw, tm, cost_a, reason, ctg, margins = self._inputs(pose_xy_yaw, terrain, cost, cost_to_go)
        n = len(self.candidates)
        r, c = (int(v) for v in tm.world_to_cell((x, y)))
        if not cost_a[r, c] < np.inf and reason[r, c] != LETHAL_INFLATED:
            why = cost.explain((r, c)) if isinstance(cost, CostMap) else "cost inf"
            return LocalPlanFailure("start_in_hazard",
                                    f"the rover (x={x:.2f} m, y={y:.2f} m) is in a lethal cell: {why}",
                                    n_candidates=n)
        sc = self._score(x, y, yaw, tm, cost_a, reason, ctg, margins, prev_curvature_per_m)
        counts = {name: int(np.count_nonzero(sc.status == code)) for code, name in enumerate(STATUS_NAMES)}
        free = np.flatnonzero(sc.status == K.FREE)
        if free.size == 0:
            return self._no_free(counts, n)
        order = free[np.lexsort((-self.candidates.length_m[free], sc.score[free]))]
        rejected = []
        checked = 0
        while checked < min(p.max_checks, order.size):
            batch = order[checked:checked + min(p.n_check, p.max_checks - checked)]
            res = self._check(x, y, yaw, tm, batch)
            checked += len(batch)
            for q, i in enumerate(batch):
                row = res[q]
                status = int(row[K.C_STATUS])
                if status == K.CHECK_OK or (status == K.CHECK_UNKNOWN and row[K.C_VERIFIED_S] >= p.min_verified_m):
                    plan = self._make_plan(int(i), x, y, yaw, sc, row, tuple(rejected), n, free.size, checked,
                                           counts)
                    logger.debug("local plan: %r (%d free of %d, %d checked)", plan, free.size, n, checked)
                    return plan
                rejected.append(self._rejection(int(i), row))
        by = {}
        for rej in rejected:
            by[rej.reason] = by.get(rej.reason, 0) + 1
        summary = ", ".join(f"{v} {k}" for k, v in sorted(by.items(), key=lambda kv: -kv[1]))
        first = rejected[0].detail if rejected else ""
        return LocalPlanFailure("body_check",
                                f"all {checked} best-scored of {free.size} free candidates failed the body check "
                                f"({summary}); the best: {first}",
                                counts, tuple(rejected), n, checked)

    # ------------------------------------------------------------------ internals
    def _inputs(self, pose_xy_yaw, terrain, cost, cost_to_go):
        x, y, yaw = _pose(pose_xy_yaw)
        tm = _terrain(terrain)
        if isinstance(cost, CostMap):
            if cost.shape != tm.shape or cost.cell_size_m != tm.cell_size_m or \
                    tuple(cost.terrain.origin_xy_m) != tuple(tm.origin_xy_m):
                raise ValueError(f"cost (a CostMap of shape {cost.shape}, cell {cost.cell_size_m:g} m, origin "
                                 f"{cost.terrain.origin_xy_m}) must be on the terrain's grid (shape {tm.shape}, "
                                 f"cell {tm.cell_size_m:g} m, origin {tm.origin_xy_m})")
            cost_a = cost.cost
            reason = cost.reason
            infl = float(cost.limits.get("inflation_radius_m", self.profile.inflation_radius_m))
        else:
            cost_a = validate_cost_grid(cost)
            if cost_a.shape != tm.shape:
                raise ValueError(f"cost has shape {cost_a.shape}: must match the terrain's {tm.shape}")
            reason = self._no_reason(tm.shape)
            infl = self.profile.inflation_radius_m
        if not tm.in_bounds(tm.world_to_cell((x, y))):
            x0, x1, y0, y1 = tm.extent_m
            raise StartOutsideMap(f"pose (x={x:.2f} m, y={y:.2f} m) is outside the terrain map "
                                  f"(x {x0:.2f}..{x1:.2f} m, y {y0:.2f}..{y1:.2f} m)")
        if isinstance(cost_to_go, CostToGo):
            ctg = cost_to_go.at
        elif callable(cost_to_go):
            ctg = _checked_callable(cost_to_go)
        else:
            a = np.asarray(cost_to_go)
            if a.shape != tm.shape:
                raise ValueError(f"cost_to_go grid has shape {a.shape}: must match the terrain's {tm.shape} "
                                 f"(or pass a CostToGo for another grid)")
            ctg = CostToGo(a, tm.cell_size_m, tm.origin_xy_m).at
        # beyond the map is unknown: keep the centre line off its edge by the inflation radius, and by
        # enough that no wheel (with its rim) can reach over it in any heading
        edge_m = max(infl, self._body.reach_m)
        margins = (int(math.ceil(infl / tm.cell_size_m - 1e-9)), edge_m / tm.cell_size_m)   # in cells
        return (x, y, yaw, tm, np.ascontiguousarray(cost_a, dtype=np.float32),
                np.ascontiguousarray(reason, dtype=np.uint8), ctg, margins)

    def _no_reason(self, shape):
        """An all-zero reason grid (a bare cost array carries no explanation), cached by shape."""
        z = self._zero_reason
        if z is None or z.shape != shape:
            z = self._zero_reason = _ro(np.zeros(shape, dtype=np.uint8))
        return z

    def _score(self, x, y, yaw, tm, cost_a, reason, ctg, margins, prev_curvature_per_m) -> Scores:
        K = _kernels()
        p = self.params
        C = self.candidates
        n = len(C)
        # the end of every candidate in the world, and the probes for the cost-to-go gradient there
        last = C.n_samples - 1
        end = C.xyt[np.arange(n), last]
        c, s = math.cos(yaw), math.sin(yaw)
        ex = x + c * end[:, 0] - s * end[:, 1]
        ey = y + s * end[:, 0] + c * end[:, 1]
        eth = yaw + end[:, 2]
        h = p.heading_probe_m
        pts = np.empty((5, n, 2))
        pts[:, :, 0] = ex
        pts[:, :, 1] = ey
        pts[1, :, 0] += h
        pts[2, :, 0] -= h
        pts[3, :, 1] += h
        pts[4, :, 1] -= h
        vals = np.asarray(ctg(pts.reshape(-1, 2)), dtype=np.float64).reshape(5, n)
        ctg_end = vals[0]
        gx = _one_sided(vals[1], vals[2], vals[0], h)
        gy = _one_sided(vals[3], vals[4], vals[0], h)
        norm = np.hypot(gx, gy)
        with np.errstate(invalid="ignore", divide="ignore"):
            cos_phi = np.where(norm > 0, -(gx * np.cos(eth) + gy * np.sin(eth)) / np.where(norm > 0, norm, 1.0), 1.0)
        heading = p.heading_weight * 0.5 * (1.0 - cos_phi)
        penalty = C.static_penalty.copy()
        if prev_curvature_per_m is not None:
            k_prev = float(prev_curvature_per_m)
            if not math.isfinite(k_prev):
                raise ValueError(f"prev_curvature_per_m = {prev_curvature_per_m!r}: must be finite")
            penalty += p.curvature_change_weight * np.abs(C.curvatures_per_m[:, 0] - k_prev)
        status = np.empty(n, dtype=np.int64)
        block = np.empty(n)
        cost_int = np.empty(n)
        score = np.empty(n)
        ox, oy = tm.origin_xy_m
        lateral = self._body.lateral
        unknown_cells, edge_cells = margins
        r, c = (int(v) for v in tm.world_to_cell((x, y)))
        gx = (x - tm.origin_xy_m[0]) / tm.cell_size_m
        gy = (y - tm.origin_xy_m[1]) / tm.cell_size_m
        rows, cols = tm.shape
        near_edge = not (edge_cells <= gx <= cols - edge_cells and edge_cells <= gy <= rows - edge_cells)
        escape = bool(near_edge or (not cost_a[r, c] < np.inf and reason[r, c] == LETHAL_INFLATED))
        if escape:      # an escape may not close in on a hazard: the distance to one per cell
            clear = _clearance(cost_a, reason, unknown_cells + 2)
            clear0 = float(clear[r, c])
        else:
            clear, clear0 = _NO_CLEARANCE, 0.0
        K._score_candidates(cost_a, tm.elevation_m, reason, ox, oy, tm.cell_size_m, x, y, yaw, C.xyt, C.cos_sin, C.s_m,
                            C.weight_m, C.n_samples, lateral, p.side_hazard_cost, unknown_cells, edge_cells, escape,
                            LETHAL_INFLATED, clear, clear0,
                            np.ascontiguousarray(ctg_end), penalty, heading, p.cost_weight, p.cost_to_go_weight,
                            status, block, cost_int, score)
        return Scores(status, score, cost_int, block, ctg_end, heading, penalty)

    def _belly(self, cell_size_m: float):
        got = self._belly_cache.get(cell_size_m)
        if got is None:
            got = self._body.belly_points(cell_size_m), self._body.n_envelope(cell_size_m)
            self._belly_cache[cell_size_m] = got
        return got

    def _check(self, x, y, yaw, tm, idx) -> np.ndarray:
        K = _kernels()
        C = self.candidates
        b = self._body
        belly, n_env = self._belly(tm.cell_size_m)
        stride = max(1, int(round(self.params.check_step_m / self.params.sample_step_m)))
        out = np.empty((len(idx), K.N_CHK))
        ox, oy = tm.origin_xy_m
        status = K._check_candidates(tm.elevation_m, ox, oy, tm.cell_size_m, x, y, yaw, C.xyt, C.s_m,
                                     C.curvature_per_m, C.turning, C.n_samples, idx, stride, b.geo, b.kind, b.tri,
                                     b.tri_inv, belly, n_env, b.prm, out)
        if status != K.OK:  # pragma: no cover - the wrapper guarantees the preconditions
            raise RuntimeError(f"_check_candidates failed with status {status}")
        return out

    def _rejection(self, i: int, row) -> Rejection:
        K = _kernels()
        status = int(row[K.C_STATUS])
        reason = CHECK_REASONS[status]
        s_m = float(row[K.C_FAIL_S])
        v = float(row[K.C_FAIL_VALUE])
        xy = (float(row[K.C_FAIL_X]), float(row[K.C_FAIL_Y]))
        b = self._body
        at = f"at {s_m:.2f} m (x={xy[0]:.2f} m, y={xy[1]:.2f} m)"
        what = self.candidates.describe(i)
        if status == K.CHECK_TILT:
            v = math.degrees(v)
            detail = (f"{what}: tilt {v:.1f} deg > max_tilt_deg {math.degrees(b.prm[K.P_MAX_TILT]):g} (or past "
                      f"the tip-over limits) {at}")
        elif status == K.CHECK_CLEARANCE:
            detail = (f"{what}: belly clearance {v:.3f} m < clearance_margin_m {self.params.clearance_margin_m:g} "
                      f"{at}")
        elif status == K.CHECK_STEP:
            detail = f"{what}: a wheel meets a {v:.3f} m rise > climb limit {b.prm[K.P_CLIMB]:.3f} m {at}"
        elif status == K.CHECK_SUSPENSION:
            v = math.degrees(v)
            detail = (f"{what}: suspension articulation {v:.1f} deg beyond max_rocker_deg / max_bogie_deg {at}")
        else:
            detail = (f"{what}: unknown terrain under the rover {at}, only {row[K.C_VERIFIED_S]:.2f} m verified "
                      f"< min_verified_m {self.params.min_verified_m:g}")
        return Rejection(i, reason, detail, s_m, xy, v)

    def _make_plan(self, i, x, y, yaw, sc: Scores, row, rejected, n, n_free, checked, counts) -> LocalPlan:
        K = _kernels()
        C = self.candidates
        m = int(C.n_samples[i])
        keep = C.turning[i, :m] == 0
        b = C.xyt[i, :m][keep]
        c, s = math.cos(yaw), math.sin(yaw)
        xy = np.stack([x + c * b[:, 0] - s * b[:, 1], y + s * b[:, 0] + c * b[:, 1]], axis=1)
        verified = float(C.length_m[i]) if int(row[K.C_STATUS]) == K.CHECK_OK else float(row[K.C_VERIFIED_S])
        return LocalPlan(
            xy_m=xy, yaw_rad=_wrap(yaw + b[:, 2]), s_m=C.s_m[i, :m][keep].copy(),
            curvature_per_m=C.curvature_per_m[i, :m][keep].copy(), turn_rad=float(C.turn_rad[i]),
            length_m=float(C.length_m[i]), verified_length_m=verified, score=float(sc.score[i]),
            cost=float(sc.cost[i]), cost_to_go=float(sc.cost_to_go[i]), min_clearance_m=float(row[K.C_MIN_CLEAR]),
            max_tilt_deg=math.degrees(float(row[K.C_MAX_TILT])), max_step_m=float(row[K.C_MAX_STEP]), index=i,
            curvatures_per_m=tuple(float(k) for k in C.curvatures_per_m[i] if k == k),
            segment_lengths_m=tuple(float(v) for v in C.segment_lengths_m[i] if v > 0),
            rejected=rejected, n_candidates=n, n_free=int(n_free), n_checked=int(checked), status_counts=counts)

    def _no_free(self, counts, n) -> LocalPlanFailure:
        c = counts
        detail = (f"{c['blocked']} cross a hazard, {c['blocked_unknown']} reach unknown terrain, "
                  f"{c['off_map']} leave the map, {c['no_route']} end with no route to the goal")
        if c["no_route"]:
            code = "no_route"
        elif c["blocked_unknown"] + c["off_map"] >= max(c["blocked"], 1):
            code = "unknown_ahead"
        else:
            code = "blocked"
        return LocalPlanFailure(code, f"no free candidate among {n}: {detail}", counts, (), n, 0)

    def __repr__(self) -> str:
        return (f"ArcPlanner({self.profile.name!r}, {len(self.candidates)} candidates, "
                f"max curvature {self.max_curvature_per_m:.3f}/m, turns in place "
                f"{'yes' if self.can_turn_in_place else 'no'})")


# ------------------------------------------------------------------------------------- body geometry
class _BodyGeometry:
    """The rover as the body check sees it (the simulator's layout, see :mod:`sim.rover_model`)."""

    def __init__(self, profile: RoverProfile, params: ArcParams):
        K = _kernels()
        g, d, kind = profile.geometry, profile.drive, profile.kind
        hb, ht = 0.5 * g.wheelbase_m, 0.5 * g.track_m
        n = int(g.num_wheels)
        casters = np.zeros((0, 2))
        if kind == "rocker_bogie":
            if n != 6:
                raise ValueError(f"{profile.name}: a rocker_bogie rover has 6 wheels, got num_wheels = {n}")
            xs = np.array([hb, 0.0, -hb])
            steer = np.array([1.0, 0.0, 1.0]) * float(bool(d.steerable_corners))
            self.kind = K.KIND_ROCKER_BOGIE
        elif kind in ("skid_steer", "differential"):
            if n % 2 or n < 2:
                raise ValueError(f"{profile.name}: a {kind} rover needs an even number of wheels, got {n}")
            per = n // 2
            if per == 1:
                xs = np.array([0.0])
                casters = np.array([[-g.wheelbase_m, 0.0]])
            else:
                xs = np.linspace(hb, -hb, per)
            steer = np.zeros(per)
            self.kind = K.KIND_RIGID
        else:
            raise ValueError(f"{profile.name}: unknown rover kind {kind!r}")
        wheels = np.concatenate([np.stack([xs, np.full_like(xs, ht)], 1), np.stack([xs, np.full_like(xs, -ht)], 1)])
        self.n_wheels = len(wheels)
        xy = np.concatenate([wheels, casters])
        geo = np.zeros((len(xy), 3))
        geo[:, :2] = xy
        geo[:self.n_wheels, 2] = np.concatenate([steer, steer])
        self.geo = _ro(geo)
        if self.kind == K.KIND_RIGID:
            # centre of mass: the contacts' centroid, 1 % of their x span rearwards (as the simulator)
            cg = xy.mean(axis=0) - np.array([0.01 * float(np.ptp(xy[:, 0])), 0.0])
            tri, tri_inv = support_triangles(xy, cg)
            if not len(tri):
                raise ValueError(f"{profile.name}: no three contacts surround the centre of mass")
        else:
            tri, tri_inv = np.zeros((0, 3), dtype=np.int64), np.zeros((0, 9))
        self.tri, self.tri_inv = _ro(tri.astype(np.int64)), _ro(tri_inv)
        self.radius_m = float(g.wheel_radius_m)
        #: farthest a contact's rim reaches from the body origin (any heading)
        self.reach_m = float(np.hypot(xy[:, 0], xy[:, 1]).max()) + self.radius_m
        self.wheel_width_m = float(g.wheel_width_m)
        h_cg = g.cg_height_m if g.cg_height_m > 0 else g.belly_clearance_m + g.wheel_radius_m
        climb = (2.0 if kind == "rocker_bogie" else 1.0) * g.wheel_radius_m
        max_tilt = profile.hazards.max_tilt_deg if params.max_tilt_deg is None else params.max_tilt_deg
        prm = np.zeros(K.N_PRM)
        prm[K.P_RADIUS] = g.wheel_radius_m
        prm[K.P_BELLY] = g.belly_clearance_m
        prm[K.P_MAX_TILT] = math.radians(max_tilt)
        prm[K.P_TIP_ROLL] = math.atan(ht / h_cg)
        prm[K.P_TIP_PITCH] = math.atan(hb / h_cg)
        prm[K.P_MARGIN] = params.clearance_margin_m
        prm[K.P_CLIMB] = params.climb_fraction * climb
        prm[K.P_MAX_ROCKER] = math.inf if params.max_rocker_deg is None else math.radians(params.max_rocker_deg)
        prm[K.P_MAX_BOGIE] = math.inf if params.max_bogie_deg is None else math.radians(params.max_bogie_deg)
        prm[K.P_UNKNOWN_BELLY] = params.max_unknown_belly_fraction
        self.prm = _ro(prm)
        # footprint cost: the centre line and both wheel tracks
        self.lateral = _ro(np.array([0.0, ht, -ht]))

    def belly_points(self, cell_size_m: float) -> np.ndarray:
        """Belly sample points: the rectangle between the outermost axles and the inner wheel faces,
        spaced at most one cell, 2..24 per side (the simulator's grid)."""
        geo = self.geo
        nw = self.n_wheels
        x_lo, x_hi = geo[:, 0].min(), geo[:, 0].max()
        y_lo = geo[:nw, 1].min() + 0.5 * self.wheel_width_m
        y_hi = geo[:nw, 1].max() - 0.5 * self.wheel_width_m
        if y_hi <= y_lo:
            y_lo, y_hi = geo[:nw, 1].min(), geo[:nw, 1].max()
        nbx = int(np.clip(math.ceil((x_hi - x_lo) / cell_size_m) + 1, 2, 24))
        nby = int(np.clip(math.ceil((y_hi - y_lo) / cell_size_m) + 1, 2, 24))
        bx, by = np.meshgrid(np.linspace(x_lo, x_hi, nbx), np.linspace(y_lo, y_hi, nby), indexing="ij")
        return _ro(np.stack([bx.ravel(), by.ravel()], axis=1))

    def n_envelope(self, cell_size_m: float) -> int:
        return int(np.clip(math.ceil(2.0 * self.radius_m / cell_size_m), 3, 16))


def support_triangles(xy, q) -> tuple[np.ndarray, np.ndarray]:
    """Contact triples whose horizontal triangle contains point ``q`` (edges included), in
    lexicographic order, with the row-major inverse of ``[[1, x, y]]`` of each (heights ->
    ``(z0, sx, sy)`` of the plane through them)."""
    xy = np.asarray(xy, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    scale = float(np.ptp(xy, axis=0).max()) or 1.0
    tris, invs = [], []
    for t in itertools.combinations(range(len(xy)), 3):
        M = np.column_stack([np.ones(3), xy[list(t)]])
        if abs(np.linalg.det(M)) < 1e-9 * scale * scale:
            continue
        lam = np.linalg.solve(M.T, np.array([1.0, q[0], q[1]]))
        if lam.min() < -1e-9:
            continue
        tris.append(t)
        invs.append(np.linalg.inv(M).ravel())
    return (np.array(tris, dtype=np.int64).reshape(-1, 3), np.array(invs, dtype=np.float64).reshape(-1, 9))


# ------------------------------------------------------------------------------------- candidates
def _arc_point(x0, y0, th0, k, u):
    """Pose after driving ``u`` metres on curvature ``k`` from ``(x0, y0, th0)`` (exact)."""
    if abs(k) < 1e-12:
        return x0 + u * np.cos(th0), y0 + u * np.sin(th0), th0 + 0.0 * u
    th = th0 + k * u
    return x0 + (np.sin(th) - math.sin(th0)) / k, y0 - (np.cos(th) - math.cos(th0)) / k, th


def _sample_candidate(turn, segments, ds, turn_step):
    """Samples ``(x, y, yaw, s, weight, curvature, turning)`` of one candidate."""
    xs, ys, ts, ss, ks, tf = [], [], [], [], [], []
    if turn != 0.0:
        nt = max(1, int(math.ceil(abs(turn) / turn_step - 1e-9)))
        for k in range(nt):
            xs.append(0.0)
            ys.append(0.0)
            ts.append(turn * k / nt)
            ss.append(0.0)
            ks.append(0.0)
            tf.append(1)
    x0, y0, th0, s0 = 0.0, 0.0, float(turn), 0.0
    first = True
    for kappa, L in segments:
        n = max(1, int(math.ceil(L / ds - 1e-9)))
        u = np.linspace(0.0, L, n + 1)
        if not first:
            u = u[1:]
        px, py, pt = _arc_point(x0, y0, th0, kappa, u)
        xs.extend(px.tolist())
        ys.extend(py.tolist())
        ts.extend(pt.tolist())
        ss.extend((s0 + u).tolist())
        ks.extend([kappa] * len(u))
        tf.extend([0] * len(u))
        x0, y0, th0, s0 = float(px[-1]), float(py[-1]), float(pt[-1]), s0 + L
        first = False
    s = np.array(ss)
    tfa = np.array(tf, dtype=np.uint8)
    w = np.zeros(len(s))
    arc = np.flatnonzero(tfa == 0)
    sa = s[arc]
    if len(sa) > 1:
        wa = np.zeros(len(sa))
        d = np.diff(sa)
        wa[:-1] += 0.5 * d
        wa[1:] += 0.5 * d
        w[arc] = wa
    return np.array(xs), np.array(ys), np.array(ts), s, w, np.array(ks), tfa


def _symmetric(kmax: float, n: int) -> np.ndarray:
    """``n`` (odd) curvatures evenly spaced over ``[-kmax, kmax]``, exactly antisymmetric (so that a
    mirrored map has the mirrored candidate set to the last bit)."""
    h = (n - 1) // 2
    return kmax * (np.arange(-h, h + 1) / h) if h > 0 else np.zeros(1)


def _build_candidates(p: ArcParams, kmax: float, turn_in_place: bool) -> Candidates:
    curv = _symmetric(kmax, p.n_curvatures)
    curv2 = _symmetric(kmax, p.n_curvatures_second)
    curv_t = _symmetric(kmax, p.n_curvatures_after_turn)
    specs = []      # (turn, [(k, L), ...])
    for L in p.lengths_m:
        for k in curv:
            specs.append((0.0, [(float(k), L)]))
    if p.two_segment:
        for L in p.lengths_m:
            if L < p.two_segment_min_m:
                continue
            for k1 in curv:
                for k2 in curv2:
                    if abs(k2 - k1) <= 1e-9 * kmax:
                        continue
                    specs.append((0.0, [(float(k1), p.split * L), (float(k2), (1.0 - p.split) * L)]))
    if turn_in_place:
        turns = []
        for a in p.point_turns_deg:
            turns.append(math.radians(a))
            if a < 180.0:
                turns.append(-math.radians(a))
        for t in turns:
            for L in p.lengths_m:
                for k in curv_t:
                    specs.append((t, [(float(k), L)]))
    ds = p.sample_step_m
    turn_step = math.radians(p.turn_step_deg)
    samples = [_sample_candidate(t, segs, ds, turn_step) for t, segs in specs]
    n = len(specs)
    m = max(len(smp[0]) for smp in samples)
    xyt = np.zeros((n, m, 3))
    s = np.zeros((n, m))
    w = np.zeros((n, m))
    kk = np.zeros((n, m))
    tf = np.zeros((n, m), dtype=np.uint8)
    ns = np.zeros(n, dtype=np.int64)
    turn = np.zeros(n)
    curvs = np.full((n, 2), np.nan)
    lens = np.zeros((n, 2))
    for i, ((t, segs), (px, py, pt, ps, pw, pk, ptf)) in enumerate(zip(specs, samples)):
        k = len(px)
        xyt[i, :k, 0], xyt[i, :k, 1], xyt[i, :k, 2] = px, py, pt
        s[i, :k], w[i, :k], kk[i, :k], tf[i, :k] = ps, pw, pk, ptf
        ns[i] = k
        turn[i] = t
        for j, (kap, L) in enumerate(segs):
            curvs[i, j] = kap
            lens[i, j] = L
    length = lens.sum(axis=1)
    k2 = np.where(np.isnan(curvs[:, 1]), curvs[:, 0], curvs[:, 1])
    penalty = (p.curvature_weight * (np.abs(curvs[:, 0]) * lens[:, 0] + np.abs(k2) * lens[:, 1])
               + p.turn_weight * np.abs(turn) + p.curvature_change_weight * np.abs(k2 - curvs[:, 0])
               - p.length_bonus_per_m * length)
    return Candidates(xyt=_ro(xyt), cos_sin=_ro(np.stack([np.cos(xyt[..., 2]), np.sin(xyt[..., 2])], axis=-1)),
                      s_m=_ro(s), weight_m=_ro(w), curvature_per_m=_ro(kk), turning=_ro(tf),
                      n_samples=_ro(ns), turn_rad=_ro(turn), curvatures_per_m=_ro(curvs),
                      segment_lengths_m=_ro(lens), length_m=_ro(length), static_penalty=_ro(penalty))


# ------------------------------------------------------------------------------------- helpers
def _ro(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a


def _clearance(cost: np.ndarray, reason: np.ndarray, cap_cells: int) -> np.ndarray:
    """Distance in cells (centre to centre) from every cell to the nearest cell lethal in its own right
    (lethal and not only by inflation), ``cap_cells`` where none is that close (float64, read-only)."""
    return _ro(distance_cells(~(cost < np.inf) & (reason != LETHAL_INFLATED), cap_cells))


_NO_CLEARANCE = np.zeros((1, 1))
_NO_CLEARANCE.setflags(write=False)


def _wrap(a):
    return (np.asarray(a) + math.pi) % (2.0 * math.pi) - math.pi


def _xy(v, name):
    try:
        x, y = (float(a) for a in v)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an (x, y) pair in metres, got {v!r}") from None
    if not (math.isfinite(x) and math.isfinite(y)):
        raise ValueError(f"{name} must be finite, got {v!r}")
    return x, y


def _pose(v):
    try:
        x, y, yaw = (float(a) for a in v)
    except (TypeError, ValueError):
        raise ValueError(f"pose_xy_yaw must be (x_m, y_m, yaw_rad), got {v!r}") from None
    if not (math.isfinite(x) and math.isfinite(y) and math.isfinite(yaw)):
        raise ValueError(f"pose_xy_yaw must be finite, got {v!r}")
    return x, y, yaw


def _terrain(t) -> TerrainMap:
    if not isinstance(t, TerrainMap):
        raise TypeError(f"terrain must be a nav.TerrainMap, got {type(t).__name__}")
    return t


def _one_sided(plus, minus, centre, h):
    """Central difference where both sides are finite, one-sided where one is, 0 where none is."""
    fp = np.isfinite(plus)
    fm = np.isfinite(minus)
    fc = np.isfinite(centre)
    out = np.zeros_like(centre)
    both = fp & fm
    out[both] = (plus[both] - minus[both]) / (2.0 * h)
    only_p = fp & ~fm & fc
    out[only_p] = (plus[only_p] - centre[only_p]) / h
    only_m = fm & ~fp & fc
    out[only_m] = (centre[only_m] - minus[only_m]) / h
    return out


def _checked_callable(f: Callable) -> Callable:
    def call(xy):
        v = np.asarray(f(xy), dtype=np.float64)
        if v.shape != (len(xy),):
            raise ValueError(f"cost_to_go callable returned shape {v.shape} for {len(xy)} points: must return "
                             f"one value per point")
        if np.isnan(v).any() or (v < 0).any():
            raise ValueError("cost_to_go callable must return values >= 0 or inf (no NaN)")
        return v
    return call

