"""The navigation executive: the GESTALT / ENav perceive-plan-drive cycle, with goals and safety rules.

After the Mars Exploration Rovers' GESTALT + Field D* autonomy (Biesiadecki & Maimone, "The Mars
Exploration Rover surface mobility flight software", IEEE Aerospace 2006; Carsten et al., "Global
path planning on board the Mars Exploration Rovers", IEEE Aerospace 2007) and Perseverance's ENav
(Toupet et al., "A ROS-based framework for the ENav...", and Otsu et al. 2020): each cycle

1. **perceive** — a local height map from stereo (built by the caller; :mod:`perception`);
2. **merge** it into the rover's map (``gmap.merge(local, stamp=odometer)``);
3. **traversability** on the changed window, grown by the hazard kernel's reach, with unknown cells
   *traversable at a cost* (``hazards.unknown_cost``) so the global planner can plan through what has
   not been seen; keep-out discs (grown by the rover radius) are lethal;
4. **global replan** — :class:`nav.dstar_lite.DStarLite` gets the cells whose cost moved and repairs
   its search from the rover's cell; a goal the search cannot reach on the known map is *unreachable*
   and the executive stops, naming the cells that close the rover in
   (:meth:`nav.costmap.CostMap.explain`) and keeping the cost map that proved it;
5. **local plan** — :class:`nav.local_planner.ArcPlanner` scores its candidate arcs by terrain cost and
   a cost-to-go field (an interpolated — Field D* — search inside a window around the rover, seeded
   with the global path's remaining cost, so arcs are scored by the whole cost to the goal through
   them) and body-checks the best few on terrain the cameras actually saw;
6. **drive** — :class:`nav.follow.PurePursuit` follows the chosen arc, no further than the body
   check verified.

Modes
-----
``"stop_and_go"`` (MER / Curiosity): stop, image, plan, drive ``drive_step_m``, stop, repeat.
``"drive_while_planning"`` (Perseverance): a new image every ``image_every_m`` of travel, and the next
plan computed while the current arc is driven; the new arc replaces the old one when it is ready.

The executive never touches hardware or the clock: a runner (``hil.traverse``) calls
:meth:`NavExecutive.step` at the control rate with the estimated pose and sends the twist it returns;
when the command asks for an image (``want_image``) the runner takes one and calls
:meth:`NavExecutive.observe`; when it asks for a plan (``want_plan``) it calls :meth:`NavExecutive.plan`
(heavy: on hardware in a worker thread while :meth:`step` keeps being called) and then
:meth:`NavExecutive.install` with the result. A simulation may delay the install by a modelled compute
time, so runs are reproducible.

Layering
--------
``nav`` does not import ``perception``: the map the executive merges into is duck-typed. Pass either a
:class:`nav.TerrainMap` (its grid and heights — an orbital prior or all NaN — held in a simple map
that overwrites cells with each observation) or an object with the :class:`perception.stereo_map.GlobalMap`
interface: ``shape``, ``cell_size_m``, ``origin_xy_m``, ``height_m`` (read-only view) and
``merge(local, stamp=...) -> update`` with ``update.rows``/``update.cols`` (the changed cells). The
local maps are duck-typed too: ``height_m`` (NaN = unknown), ``cell_size_m``, ``origin_xy_m`` on the
map's lattice.

Outcomes
--------
``"reached"``; ``"unreachable"`` (no route on the known map, or every arc failed ``max_local_failures``
times in a row — after turning to look —, each after the planning margins have relaxed as far as
``margin_relax_keep`` allows); ``"stuck"`` (motion commanded for ``stuck_time_s`` without
``stuck_progress_m`` of progress or ``stuck_turn_deg`` of turning); ``"tilt"`` (the estimated tilt
exceeded ``max_tilt_deg``); ``"hazard_stop"`` (the rover finds itself in a cell lethal in its own
right and no arc leaves it).
"""
from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from . import _field_dstar_kernels as _fdk
from .config import RoverProfile
from .costmap import LETHAL_INFLATED, LETHAL_ROUGHNESS, LETHAL_STEP, LETHAL_UNKNOWN, CostMap
from .errors import GoalInHazard, NoPathFound, StartInHazard
from .follow import PurePursuit
from .local_planner import ArcParams, ArcPlanner, CostToGo, LocalPlan, LocalPlanFailure
from .terrain_map import TerrainMap
from .traversability import _radius2_cells, clearance_cost, distance_cells, traversability, window_cells

__all__ = ["NavExecutive", "ExecParams", "blind_distance_m", "ExecCommand", "PlanResult", "OverwriteMap", "MODES",
           "STATES", "OUTCOMES"]

log = logging.getLogger(__name__)

MODES = ("stop_and_go", "drive_while_planning")
#: Executive states, as reported in :attr:`ExecCommand.state`.
STATES = ("waiting", "driving", "turning", "paused", "reached", "failed")
#: Outcomes the executive can end with (``hil.traverse`` adds timeout, distance_limit, fault, error).
OUTCOMES = ("reached", "unreachable", "stuck", "tilt", "hazard_stop")


# ============================================================================ parameters and values
@dataclass(frozen=True, kw_only=True)
class ExecParams:
    """Tunables of :class:`NavExecutive` (lengths in metres, times in seconds, angles in degrees).

    Attributes
    ----------
    mode : ``"stop_and_go"`` or ``"drive_while_planning"``
    drive_step_m : float
        Stop-and-go: distance driven on each plan before stopping to image again.
    image_every_m : float
        Drive-while-planning: travel between images (each image is followed by a replan).
    window_m : float
        Half side of the square around the rover in which the local cost-to-go field is computed
        (and the local planner sees the map); at least the longest arc plus a metre.
    max_local_failures : int
        Consecutive local-planning failures (each followed by a turn to look and a new image)
        before the margins relax by the next step of ``margin_relax_keep`` (the count starting again) or,
        with none left, the goal is declared unreachable.
    approach_m : float
        When hazards seen from afar cut every route to the goal, a rover farther than this from the goal
        first drives to the reachable place nearest it and looks again; within it, the goal is
        unreachable. (Keep-out zones are certain: a goal they close in is unreachable at once.)
    look_turn_deg : float
        Turn in place after a local-planning failure, toward the global path.
    stuck_time_s, stuck_progress_m, stuck_turn_deg : float
        Motion commanded for ``stuck_time_s`` without moving ``stuck_progress_m`` or turning
        ``stuck_turn_deg`` is "stuck".
    max_tilt_deg : float, optional
        Stop when the estimated tilt exceeds this (default the profile's ``hazards.max_tilt_deg``).
    inflation_margin_m : float
        Added to the profile's inflation radius (pose error, path-following error).
    hazard_margin, step_margin : float
        The slope and roughness limits the executive plans with are the profile's times
        ``1 - hazard_margin``, the step limit the profile's times ``1 - step_margin``: a mapped slope of
        19.5° may be 20.5° in truth, and stereo under-reads the height of small rocks (their tops cover
        part of a cell; they are seen sparsely from afar).
    margin_band_cost : float or None
        Cells over the margin limits but within the profile's own limits (the *margin band*) cost this
        much extra per cell instead of being lethal: routes avoid them while any other route exists, yet a
        passage that is only near the limits is not declared unreachable (GESTALT's steeply rising cost
        near the limits). ``None`` (default) makes the margin band lethal. Measured on the first 60 runs of
        the mars_50m campaign: the band (30) reached 56 instead of 49 goals but entered true hazards 47
        times in 13 runs instead of 11 in 9, and lengthened paths (median ratio 1.35 vs 1.15) — so it is
        off by default, safety first.
    margin_fallback_cost : float or None
        When the goal is unreachable with the margin band lethal (or every arc failed ``max_local_failures``
        times in a row, or the rover has driven ``wander_relax_ratio`` times the straight route), relax (by the
        steps of ``margin_relax_keep``): from then on the band costs this much extra per cell (as
        ``margin_band_cost`` would), the whole map is re-assessed and the
        goal is planned again — the conservative map first, the profile's own limits only when nothing
        else is left. A ``margins_relaxed`` event records when, and ``summary()["margins_relaxed"]``
        whether. ``None`` never relaxes. Ignored when ``margin_band_cost`` is set (the band is a cost from the
        start). Default 30. Measured on the first 60 runs of the mars_50m campaign (relief 0.1-0.31 m): 56/60
        reached safely against 55/60 never relaxing, the same 4 violations in 3 runs; on steeper terrain
        (relief 0.25-0.4 m) 44/60 against 43/60, but 23 violations in 15 runs against 11 in 9.
    margin_relax_keep : tuple of float
        How much of the margins each successive relaxation keeps: the first lethal limits are the profile's
        times ``1 - margin * keep[0]`` (the band up to them a cost), then ``keep[1]`` if the goal is still
        unreachable, and so on (``margins_relaxed`` events carry ``keep``). Default ``(0.5, 0.0)``: half
        the margins first, the profile's own limits only when that is not enough either, so a passage just
        over the margins is driven with half of them still kept. ``(0.0,)`` relaxes to the profile's limits
        at once. Measured on the mars_50m campaign (200 runs): 8 draws relax; 7 of them reached safely
        against 6 relaxing at once (195/200 overall against 194/200); ``(0.75, 0.5, 0.25, 0.0)`` 6 (two no
        longer arrived).
    wander_relax_ratio : float or None
        A rover that has driven this many times the straight route (from the start through every goal)
        without arriving takes the first step of ``margin_relax_keep`` even though a route still exists
        (a ``margins_relaxed`` event says so): in dense rock the margins can close every real passage while
        unseen ground keeps promising a way round, and the rover explores pocket after pocket until its
        distance runs out. ``None`` relaxes only when the goal is unreachable. Default 1.5. Measured on the
        mars_50m campaign (200 runs; deterministic per draw, so only the 45 that drove over 75 m changed):
        197/200 reached safely against 195/200 — the one that ran out of distance (200 m, 10 m from the
        goal) arrived after 151 m, 14 arrived sooner and 10 later (3 % less distance over the 45), none
        entered a hazard it had not before, and one graze after 75 m no longer happened (its route
        changed). At 2 (screened on 12 of the 13 draws over 100 m): the same arrival after 169 m.
    lookahead_m, speed_mps : float, optional
        Pure pursuit's lookahead and cruise speed (defaults 0.35 m and the profile's maximum).
    footprint_fill_m : float, optional
        Radius around the *start* pose whose unseen cells take the height of the plane the rover stands
        on, bridged smoothly to the heights the cameras saw, for the body check (default the larger of half
        the footprint diagonal and the cameras' blind distance, + 0.1 m: a traverse starts on ground known
        to be clear out to where the cameras first see it). Anywhere else only the ground under the body
        (half the footprint diagonal + one cell) is filled: the rover stands there, but ground beside it
        that no camera saw stays unknown. Within this radius of the rover such ground blocks arcs in the
        local planner's cheap pass, grown by the inflation radius (a margin the rover may leave, like a
        hazard's); farther out the body check verifies an arc only up to where it begins.
    clearance_m, clearance_cost : float
        Keep off the rim of the hazards where there is room: a traversable cell within ``clearance_m`` beyond
        the inflation radius of a cell hazardous in its own right costs up to ``clearance_cost`` more (that
        much at the inflation radius, nothing at ``clearance_m`` beyond it; flat open ground costs 1), see
        :func:`nav.traversability.clearance_cost`. Without it every shortest route grazes the inflation of the
        hazards it passes, so a hazard mapped one cell off or a few centimetres of pose error put the rover
        in the true margin; with it routes keep to the middle of gaps wide enough, and still take a narrow
        one when nothing else is left. ``clearance_cost = 0`` turns it off. Measured on the mars_50m campaign
        (200 runs): 193/200 reached safely with it (8 violations in 6 runs) against 188/200 without (12 in 9),
        median path ratio 1.23 against 1.17.
    near_step_margin : float
        Steps on the finer map of the ground close in (``observe(..., near=...)``) are lethal beyond the
        profile's ``max_step_m`` times ``1 - near_step_margin`` (relaxed like the other margins, by
        ``margin_relax_keep``). A 10 cm planning cell averages a small rock's face with its foot, so rocks just over
        the limit read 0.11-0.13 m for 0.15-0.16 m in truth, under the planning margin; 5 cm cells seen
        from 1-2.5 m read them 0.126-0.132 m (the camera sees the surface between the terrain's 5 cm
        samples, not its peaks), so the near limit is 0.12 m by default. Measured on the mars_50m campaign
        (200 runs): 194/200 reached safely with 4 violations in 4 runs, against 193/200 with 8 in 6 without
        the near map.
    near_roughness_margin : float or None
        Roughness on the near map is lethal beyond the profile's ``max_roughness_m`` times
        ``1 - near_roughness_margin`` (relaxed like the other margins); ``None`` (default) judges roughness
        on the planning map only. Roughness is the RMS residual of a footprint-sized plane fit, which 5 cm
        cells should resolve better than 10 cm ones; but on the fast perception's near maps it read 0.019-0.042
        m where three violations had 0.051-0.052 m in truth, while false readings over the limit elsewhere
        lengthened routes (the default mars_50m traverse: path ratio 1.44 at 0.08, 1.38 at 0.04 and at 0,
        against 1.22 without). On the 200-run campaign 0.08 reached 195/200 safely against 194/200 without,
        the failures moved about rather than fixed, so it is off.
    prior_cover_m : float
        Heights known beforehand (a prior) within this distance of a cell the cameras measured are
        ignored by traversability: there the cameras' heights (and unknown holes between them) rule.
    tilt_margin_deg : float
        The body check rejects arcs tilting the rover beyond ``max_tilt_deg - tilt_margin_deg`` (unless
        ``arc.max_tilt_deg`` is set): the map under an arc is less accurate than the truth.
    slow_down_m : float
        Pure pursuit's slow-down distance before the end of an arc (braking at the deceleration limit
        still applies): short, so the rover keeps its speed until a new arc replaces the current one.
    arc : ArcParams
        The local planner's tunables. The default raises ``length_bonus_per_m`` to 0.5: an arc's cost
        integral is over the swept footprint (centre and both wheel tracks), the cost-to-go over the
        centre line, which alone would make every arc look dearer per metre than the route it follows
        and the planner pick the shortest arcs (slow driving, many stops).
    """
    mode: str = "drive_while_planning"
    drive_step_m: float = 0.5
    image_every_m: float = 0.5
    window_m: float = 4.5
    max_local_failures: int = 8
    approach_m: float = 3.0
    look_turn_deg: float = 45.0
    stuck_time_s: float = 20.0
    stuck_progress_m: float = 0.10
    stuck_turn_deg: float = 10.0
    max_tilt_deg: float | None = None
    inflation_margin_m: float = 0.05
    hazard_margin: float = 0.08
    step_margin: float = 0.15
    margin_band_cost: float | None = None
    margin_fallback_cost: float | None = 30.0
    margin_relax_keep: tuple[float, ...] = (0.5, 0.0)
    wander_relax_ratio: float | None = 1.5
    lookahead_m: float | None = 0.35
    speed_mps: float | None = None
    footprint_fill_m: float | None = None
    slow_down_m: float = 0.3
    tilt_margin_deg: float = 5.0
    prior_cover_m: float = 0.3
    clearance_m: float = 0.5
    clearance_cost: float = 3.0
    near_step_margin: float = 0.20
    near_roughness_margin: float | None = None
    arc: ArcParams = field(default_factory=lambda: ArcParams(length_bonus_per_m=0.5))

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"ExecParams.mode = {self.mode!r}: must be one of {', '.join(MODES)}")
        for name, lo in (("approach_m", -1e-12), ("tilt_margin_deg", -1e-12), ("prior_cover_m", 0.0),
                         ("clearance_m", 0.0), ("clearance_cost", -1e-12), ("drive_step_m", 0.0),
                         ("image_every_m", 0.0), ("window_m", 1.0),
                         ("look_turn_deg", 0.0), ("stuck_time_s", 0.0), ("stuck_progress_m", 0.0),
                         ("stuck_turn_deg", 0.0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= lo:
                raise ValueError(f"ExecParams.{name} = {v!r}: must be a finite number > {lo:g}")
        for name in ("hazard_margin", "step_margin", "near_step_margin"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v < 0.5:
                raise ValueError(f"ExecParams.{name} = {v!r}: must be in [0, 0.5)")
        keep = self.margin_relax_keep
        if not isinstance(keep, (tuple, list)) or not keep \
                or any(isinstance(k, bool) or not isinstance(k, (int, float)) or not 0.0 <= k < 1.0 for k in keep) \
                or any(b >= a for a, b in zip(keep, keep[1:])):
            raise ValueError(f"ExecParams.margin_relax_keep = {keep!r}: must be a non-empty, strictly decreasing "
                             f"sequence of numbers in [0, 1)")
        object.__setattr__(self, "margin_relax_keep", tuple(float(k) for k in keep))
        v = self.near_roughness_margin
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v < 0.5):
            raise ValueError(f"ExecParams.near_roughness_margin = {v!r}: must be in [0, 0.5) or None")
        v = self.wander_relax_ratio
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
                              or v < 1.0):
            raise ValueError(f"ExecParams.wander_relax_ratio = {v!r}: must be a finite number >= 1 or None")
        for name in ("margin_band_cost", "margin_fallback_cost"):
            b = getattr(self, name)
            if b is not None and (isinstance(b, bool) or not isinstance(b, (int, float)) or not math.isfinite(b)
                                  or b < 0):
                raise ValueError(f"ExecParams.{name} = {b!r}: must be a finite number >= 0 or None")
        if self.inflation_margin_m < 0 or not math.isfinite(self.inflation_margin_m):
            raise ValueError(f"ExecParams.inflation_margin_m = {self.inflation_margin_m!r}: must be >= 0")
        if isinstance(self.max_local_failures, bool) or not isinstance(self.max_local_failures, int) \
                or self.max_local_failures < 1:
            raise ValueError(f"ExecParams.max_local_failures = {self.max_local_failures!r}: must be an int >= 1")
        for name in ("max_tilt_deg", "lookahead_m", "speed_mps", "footprint_fill_m", "slow_down_m"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0
                                  or not math.isfinite(v)):
                raise ValueError(f"ExecParams.{name} = {v!r}: must be a finite number > 0 or None")
        if not isinstance(self.arc, ArcParams):
            raise TypeError(f"ExecParams.arc must be an ArcParams, got {type(self.arc).__name__}")
        if self.window_m < max(self.arc.lengths_m) + 1.0:
            raise ValueError(f"ExecParams.window_m = {self.window_m!r}: must be >= the longest arc "
                             f"({max(self.arc.lengths_m):g} m) + 1 m")


class ExecCommand(NamedTuple):
    """What the executive asks of the runner at one control tick."""
    vx_mps: float
    wz_radps: float
    state: str               # one of STATES
    reason: str              # why (the outcome's reason once finished)
    want_image: bool         # take a picture now and call observe()
    want_plan: bool          # call plan() (then install())
    goal_index: int          # the goal being driven to (len(goals) once all are reached)

    @property
    def twist(self) -> tuple:
        return (self.vx_mps, self.wz_radps)

    @property
    def finished(self) -> bool:
        return self.state in ("reached", "failed")


@dataclass(frozen=True, eq=False)
class PlanResult:
    """One plan cycle's outcome (from :meth:`NavExecutive.plan`, for :meth:`NavExecutive.install`).

    ``local`` is the chosen arc (falsy :class:`~nav.local_planner.LocalPlanFailure` when none);
    ``global_xy_m`` the global path (world metres) or ``None``; ``unreachable`` the reason when the goal
    cannot be reached on the known map (then ``local`` is ``None``); ``timings_ms`` the stages' times.
    """
    t_s: float
    goal_index: int
    pose_xy_yaw: tuple
    local: LocalPlan | LocalPlanFailure | None
    global_xy_m: np.ndarray | None
    global_cost: float
    unreachable: str = ""
    hazard_stop: str = ""
    timings_ms: dict = field(default_factory=dict)
    generation: int = 0


class OverwriteMap:
    """A minimal rover map for :class:`NavExecutive` without :mod:`perception`: each observation's
    known cells overwrite the map's (no fusion). Same duck type as ``perception.stereo_map.GlobalMap``."""

    def __init__(self, terrain: TerrainMap):
        if not isinstance(terrain, TerrainMap):
            raise TypeError(f"terrain must be a nav.TerrainMap, got {type(terrain).__name__}")
        self.cell_size_m = terrain.cell_size_m
        self.origin_xy_m = terrain.origin_xy_m
        self._h = terrain.elevation_m.copy()

    @property
    def shape(self):
        return self._h.shape

    @property
    def height_m(self) -> np.ndarray:
        v = self._h.view()
        v.flags.writeable = False
        return v

    def merge(self, local, *, stamp=None):
        r0, c0 = _lattice_offset(self, local)
        h = np.asarray(local.height_m, dtype=np.float32)
        rows, cols = self._h.shape
        rr, cc = np.nonzero(np.isfinite(h))
        vals = h[rr, cc]
        rr = rr + r0
        cc = cc + c0
        ok = (rr >= 0) & (rr < rows) & (cc >= 0) & (cc < cols)
        rr, cc, vals = rr[ok], cc[ok], vals[ok]
        old = self._h[rr, cc]
        moved = ~(np.abs(old - vals) <= 1e-3)
        self._h[rr, cc] = vals
        return _Update(rr[moved].astype(np.int64), cc[moved].astype(np.int64))


class _Update(NamedTuple):
    rows: np.ndarray
    cols: np.ndarray


def _lattice_offset(gmap, local) -> tuple[int, int]:
    cs = float(gmap.cell_size_m)
    if abs(float(local.cell_size_m) - cs) > 1e-9 * cs:
        raise ValueError(f"local map cells are {local.cell_size_m:g} m, the map's {cs:g} m")
    fc = (local.origin_xy_m[0] - gmap.origin_xy_m[0]) / cs
    fr = (local.origin_xy_m[1] - gmap.origin_xy_m[1]) / cs
    c0, r0 = round(fc), round(fr)
    if abs(fc - c0) > 1e-6 or abs(fr - r0) > 1e-6:
        raise ValueError(f"local map origin {local.origin_xy_m} is not on the map's lattice "
                         f"(origin {gmap.origin_xy_m}, cells {cs:g} m)")
    return int(r0), int(c0)


# ============================================================================ the executive
class NavExecutive:
    """Drive to a list of goals over terrain seen as it goes (see the module docstring).

    Parameters
    ----------
    profile : RoverProfile
    grid : TerrainMap or GlobalMap-like
        The rover's map: its grid (and heights known beforehand — an orbital prior — or all NaN).
        A TerrainMap is wrapped in an :class:`OverwriteMap`; a ``perception.stereo_map.GlobalMap``
        (or anything with its interface) is used as it is and fused into by :meth:`observe`.
    goals : sequence of (x_m, y_m, tolerance_m)
        Visited in order; each counts as reached within its tolerance.
    keep_out : sequence of (x_m, y_m, radius_m)
        Discs the rover's body must stay out of (lethal, grown by the rover's radius).
    params : ExecParams, optional
    """

    def __init__(self, profile: RoverProfile, grid, goals, *, keep_out=(), params: ExecParams | None = None):
        if not isinstance(profile, RoverProfile):
            raise TypeError(f"profile must be a nav.RoverProfile (see nav.load_rover), got {type(profile).__name__}")
        self.params = p = ExecParams() if params is None else params
        if not isinstance(p, ExecParams):
            raise TypeError(f"params must be an ExecParams, got {type(p).__name__}")
        self.profile = profile
        if isinstance(grid, TerrainMap):
            grid = OverwriteMap(grid)
        for attr in ("shape", "cell_size_m", "origin_xy_m", "height_m", "merge"):
            if not hasattr(grid, attr):
                raise TypeError(f"grid must be a nav.TerrainMap or a GlobalMap-like object with {attr!r}, "
                                f"got {type(grid).__name__}")
        self.gmap = grid
        self.cell_size_m = cs = float(grid.cell_size_m)
        self.origin_xy_m = (float(grid.origin_xy_m[0]), float(grid.origin_xy_m[1]))
        self.shape = tuple(int(v) for v in grid.shape)
        self._geo = TerrainMap(np.zeros((1, 1), np.float32), cs, self.origin_xy_m)  # grid arithmetic only
        self.goals = self._check_goals(goals)
        self.keep_out = self._check_keep_out(keep_out)
        self.max_tilt_rad = math.radians(p.max_tilt_deg if p.max_tilt_deg is not None
                                         else profile.hazards.max_tilt_deg)
        # traversability settings: unknown is traversable at a cost (the planner plans through it;
        # the body check only verifies what was seen)
        hz = profile.hazards
        f = 1.0 - p.hazard_margin
        self._trav_kw = dict(unknown="penalty",
                             inflation_radius_m=profile.inflation_radius_m + p.inflation_margin_m,
                             max_slope_deg=hz.max_slope_deg * f, max_step_m=hz.max_step_m * (1.0 - p.step_margin),
                             max_roughness_m=hz.max_roughness_m * f)
        # the profile's own limits (lethal beyond them) when the margin band is a cost, not a wall
        self._band_cost = p.margin_band_cost
        self._trav_lim_kw = None if p.margin_band_cost is None else dict(
            unknown="penalty", inflation_radius_m=self._trav_kw["inflation_radius_m"])
        self._relax_asked = ""          # why the next plan relaxes the margins (every arc failed), or ""
        self._relax_level = 0           # relaxations applied (margin_relax_keep[level - 1] kept); 0 = none
        # the fraction of the margins the lethal limits keep while a margin band is a cost (none when the
        # band is a cost from the start: the profile's own limits)
        self._keep = 0.0
        self._cost_mode = 0             # bumped when the traversability settings change
        h = window_cells(hz.footprint_m, cs) // 2
        hs = window_cells(profile.step_window_m, cs) // 2
        infl = int(math.ceil(self._trav_kw["inflation_radius_m"] / cs))
        clear = int(math.ceil(p.clearance_m / cs)) if p.clearance_cost > 0 else 0
        self._reach_cells = max(h, hs) + infl + clear + 1   # how far a height change moves costs
        arc = p.arc
        if arc.max_tilt_deg is None:     # headroom for map error under the arcs
            arc = dataclasses.replace(arc, max_tilt_deg=max(math.degrees(self.max_tilt_rad) - p.tilt_margin_deg, 1.0))
        self.arc_planner = ArcPlanner(profile, arc)
        self.follower = PurePursuit(profile, p.lookahead_m, speed_mps=p.speed_mps, slow_down_m=p.slow_down_m)
        self._fill_m = p.footprint_fill_m if p.footprint_fill_m is not None else \
            max(0.5 * math.hypot(profile.geometry.length_m, profile.geometry.width_m), blind_distance_m(profile)) + 0.1
        # the map state; heights known beforehand (a prior) give way to the cameras' wherever the cameras
        # covered the ground, also in the holes between measured cells: mixing 1 m prior heights with
        # sparse measured ones would read as steps and roughness
        self._observed = np.zeros(self.shape, dtype=bool)
        self._prior_only = np.isfinite(np.asarray(grid.height_m))
        self._cover_cells = max(1, int(round(p.prior_cover_m / cs)))
        self._keep_mask = self._keep_out_mask()
        # the largest step (and roughness, when judged) the near map (finer cells seen close in) found in each
        # cell, from its latest view; NaN = none yet
        self._near_step = np.full(self.shape, np.nan, np.float32)
        self._near_rough = np.full(self.shape, np.nan, np.float32)
        cost, cm = self._traversability(self._terrain_all())
        self._limits = dict(cm.limits)
        self._cost = cost.copy()
        self._reason = cm.reason.copy()
        self._slope = cm.slope_deg.copy()
        self._step = cm.step_m.copy()
        self._rough = cm.roughness_m.copy()
        self._cost[self._keep_mask] = np.inf
        # planning state
        self._lock = threading.RLock()
        self._dsl = None
        self._dsl_goal = -1
        self._goal_rc = None
        self._pending_dsl_cells: list = []
        self._goal_i = 0
        self._state = "waiting"
        self._reason_text = "waiting for the first image"
        self._outcome = ""
        self._path = None               # (N, 2) arc being followed
        self._path_limit_m = 0.0
        self._path_start_odo = 0.0
        self._path_s = None             # path length at each sample of the arc
        self._path_rc = None            # the map cell of each sample
        self._path_escape_n = 0         # leading samples in the inflation margin when installed (an escape)
        self._path_stop_s = math.inf    # stop there: the map closed the arc further on
        self._need_image = True
        self._need_plan = False
        self._plan_pending = False
        self._generation = 0            # bumped by resume(): plans computed before are stale
        self._image_odo = -math.inf
        self._odo = 0.0
        self._last_xy = None
        self._start_xy = None           # the first pose: the start zone whose unseen ground may be filled
        self._prev_curv = None
        self._local_failures = 0
        self._turn_target = None
        self._look_sign = 1.0
        self._paused = False
        self._pause_reason = ""
        self._stuck_anchor = None       # (x, y, yaw, commanded-motion time)
        self._motion_time = 0.0
        self._last_t = None
        self._last_cmd = (0.0, 0.0)
        self._proof = None              # the cost map that proved a goal unreachable
        self.global_xy_m = None         # latest global path
        self.local_plan = None          # latest LocalPlan
        self.timings: list[dict] = []   # one per plan cycle
        self._obs_timing = {"merge_ms": 0.0, "traversability_ms": 0.0}
        self.max_cross_track_m = 0.0
        self.events: list[tuple] = []   # (t_s, kind, detail dict)

    # ------------------------------------------------------------------ validation
    def _check_goals(self, goals):
        out = []
        try:
            items = list(goals)
        except TypeError:
            raise ValueError(f"goals must be a sequence of (x_m, y_m, tolerance_m), got {goals!r}") from None
        if not items:
            raise ValueError("goals must not be empty")
        for i, g in enumerate(items):
            try:
                x, y, tol = (float(v) for v in g)
            except (TypeError, ValueError):
                raise ValueError(f"goals[{i}] = {g!r}: must be (x_m, y_m, tolerance_m)") from None
            if not (math.isfinite(x) and math.isfinite(y) and math.isfinite(tol) and tol > 0):
                raise ValueError(f"goals[{i}] = {g!r}: must be finite with tolerance_m > 0")
            if not self._inside(x, y):
                x0, x1, y0, y1 = self.extent_m
                raise ValueError(f"goals[{i}] (x={x:.2f} m, y={y:.2f} m) is outside the map "
                                 f"(x {x0:.2f}..{x1:.2f} m, y {y0:.2f}..{y1:.2f} m)")
            out.append((x, y, tol))
        return tuple(out)

    def _check_keep_out(self, keep_out):
        out = []
        for i, k in enumerate(keep_out or ()):
            try:
                x, y, r = (float(v) for v in k)
            except (TypeError, ValueError):
                raise ValueError(f"keep_out[{i}] = {k!r}: must be (x_m, y_m, radius_m)") from None
            if not (math.isfinite(x) and math.isfinite(y) and math.isfinite(r) and r > 0):
                raise ValueError(f"keep_out[{i}] = {k!r}: must be finite with radius_m > 0")
            out.append((x, y, r))
        return tuple(out)

    @property
    def extent_m(self):
        ox, oy = self.origin_xy_m
        rows, cols = self.shape
        return (ox, ox + cols * self.cell_size_m, oy, oy + rows * self.cell_size_m)

    def _inside(self, x, y) -> bool:
        x0, x1, y0, y1 = self.extent_m
        return x0 <= x < x1 and y0 <= y < y1

    def _rc(self, x, y) -> tuple[int, int]:
        rc = self._geo.world_to_cell((x, y))
        return int(rc[0]), int(rc[1])

    def _xy(self, rc) -> tuple[float, float]:
        p = self._geo.cell_to_world(rc)
        return float(p[0]), float(p[1])

    def _keep_out_mask(self) -> np.ndarray:
        m = np.zeros(self.shape, dtype=bool)
        grow = self._trav_kw["inflation_radius_m"]
        for (x, y, r) in self.keep_out:
            self._disc(m, x, y, r + grow)
        return m

    def _disc(self, m, x, y, radius_m, origin=None):
        """Set the cells of ``m`` (the map, or a window of it whose corner is ``origin``) whose centres lie
        within ``radius_m`` of (x, y)."""
        cs = self.cell_size_m
        ox, oy = self.origin_xy_m if origin is None else origin
        rows, cols = m.shape
        r0 = max(int(math.floor((y - radius_m - oy) / cs)), 0)
        r1 = min(int(math.ceil((y + radius_m - oy) / cs)) + 1, rows)
        c0 = max(int(math.floor((x - radius_m - ox) / cs)), 0)
        c1 = min(int(math.ceil((x + radius_m - ox) / cs)) + 1, cols)
        if r0 >= r1 or c0 >= c1:
            return
        yy = oy + (np.arange(r0, r1) + 0.5) * cs
        xx = ox + (np.arange(c0, c1) + 0.5) * cs
        d2 = (yy[:, None] - y) ** 2 + (xx[None, :] - x) ** 2
        m[r0:r1, c0:c1] |= d2 <= radius_m * radius_m

    # ------------------------------------------------------------------ the map
    def _terrain_all(self) -> TerrainMap:
        return TerrainMap(np.array(self.gmap.height_m, dtype=np.float32), self.cell_size_m, self.origin_xy_m, source="rover map")

    def costmap(self) -> CostMap:
        """The rover's current cost map (a copy; keep-out cells lethal), e.g. for a report."""
        with self._lock:
            return CostMap(terrain=self._terrain_all(), cost=self._cost.copy(), slope_deg=self._slope.copy(),
                           step_m=self._step.copy(), roughness_m=self._rough.copy(), reason=self._reason.copy(),
                           limits=dict(self._limits))

    @property
    def observed(self) -> np.ndarray:
        """Cells seen by the cameras (read-only view)."""
        v = self._observed.view()
        v.flags.writeable = False
        return v

    @property
    def proof(self) -> CostMap | None:
        """The cost map that proved the goal unreachable (``None`` unless the outcome is unreachable)."""
        return self._proof

    def observe(self, local, *, t_s: float, odometer_m: float | None = None, near=None):
        """Merge a local height map and update the costs of what changed (steps 2-3 of the cycle).

        Parameters
        ----------
        local : LocalHeightMap-like or None
            On the map's lattice (``height_m`` NaN = unknown, ``cell_size_m``, ``origin_xy_m``); ``None``
            when no picture could be taken (the next plan uses the map as it is).
        t_s : float
            When the picture was taken.
        odometer_m : float, optional
            Distance driven so far (the merge's stamp; default the executive's own odometer).
        near : LocalHeightMap-like, optional
            The ground close in on a finer lattice (cells a whole fraction of the map's, aligned with it;
            :meth:`perception.stereo_map.StereoMapper.near_map`). Its steps, over the window of the
            profile's ``step_window_m`` (and its roughness, with ``near_roughness_margin`` set), are kept per
            map cell (the latest view of a cell replaces the earlier) and cells where they exceed the near
            limits are lethal like any step (roughness) hazard.

        Returns
        -------
        int
            Cells whose cost changed.
        """
        t0 = time.perf_counter()
        stamp = self._odo if odometer_m is None else float(odometer_m)
        with self._lock:
            self._need_image = False
            self._image_odo = self._odo
            if self._state not in ("reached", "failed"):
                self._need_plan = True
        if local is None:            # no picture (camera blackout): plan on the map we have
            self._obs_timing = {"merge_ms": 0.0, "traversability_ms": 0.0}
            return 0
        h = np.asarray(local.height_m)
        if h.size == 0:
            self._obs_timing = {"merge_ms": 1e3 * (time.perf_counter() - t0), "traversability_ms": 0.0}
            return 0
        r0, c0 = _lattice_offset(self.gmap, local)
        update = self.gmap.merge(local, stamp=stamp)
        # cells seen (even when their height did not move)
        rows, cols = self.shape
        lr0, lc0 = max(r0, 0), max(c0, 0)
        lr1, lc1 = min(r0 + h.shape[0], rows), min(c0 + h.shape[1], cols)
        if lr0 < lr1 and lc0 < lc1:
            seen = np.isfinite(h[lr0 - r0:lr1 - r0, lc0 - c0:lc1 - c0])
            self._observed[lr0:lr1, lc0:lc1] |= seen
            self._prior_only[lr0:lr1, lc0:lc1] &= ~seen
            if self._prior_only[lr0:lr1, lc0:lc1].any():     # prior cells now covered change too
                m = self._cover_cells
                rr, cc = np.nonzero(seen)
                if rr.size:
                    update_rows = np.concatenate([np.asarray(update.rows), [lr0 + rr.min() - m, lr0 + rr.max() + m]])
                    update_cols = np.concatenate([np.asarray(update.cols), [lc0 + cc.min() - m, lc0 + cc.max() + m]])
                    update = _Update(np.clip(update_rows, 0, rows - 1).astype(np.int64),
                                     np.clip(update_cols, 0, cols - 1).astype(np.int64))
        if near is not None:
            nr, nc = self._merge_near(near)
            if nr.size:
                update = _Update(np.concatenate([np.asarray(update.rows, dtype=np.int64), nr]),
                                 np.concatenate([np.asarray(update.cols, dtype=np.int64), nc]))
        t1 = time.perf_counter()
        n = self._update_costs(np.asarray(update.rows), np.asarray(update.cols))
        self._obs_timing = {"merge_ms": 1e3 * (t1 - t0), "traversability_ms": 1e3 * (time.perf_counter() - t1)}
        return n

    def _merge_near(self, near):
        """Keep the steps (and roughness) of a near map per map cell; returns the corner cells (rows, cols)
        of the window it covered (empty when it covered none)."""
        h = np.asarray(near.height_m, dtype=np.float32)
        none = (np.zeros(0, np.int64), np.zeros(0, np.int64))
        if h.ndim != 2 or h.size == 0:
            return none
        cs, fcs = self.cell_size_m, float(near.cell_size_m)
        k = int(round(cs / fcs))
        if not (fcs > 0 and k >= 1 and abs(k * fcs - cs) <= 1e-9 * cs):
            raise ValueError(f"near map cells are {fcs:g} m: must divide the map's {cs:g} m cells")
        ox, oy = self.origin_xy_m
        fo = ((near.origin_xy_m[0] - ox) / fcs, (near.origin_xy_m[1] - oy) / fcs)
        fc0, fr0 = int(round(fo[0])), int(round(fo[1]))
        if abs(fo[0] - fc0) > 1e-6 or abs(fo[1] - fr0) > 1e-6:
            raise ValueError(f"near map origin {tuple(near.origin_xy_m)} is not on the map's lattice "
                             f"(origin {self.origin_xy_m}, cells {fcs:g} m)")
        fine = traversability(TerrainMap(h, fcs, tuple(near.origin_xy_m)), self.profile)
        known = np.isfinite(h)
        R0, C0 = fr0 // k, fc0 // k
        pt, pl = fr0 - R0 * k, fc0 - C0 * k
        Hc, Wc = -(-(pt + h.shape[0]) // k), -(-(pl + h.shape[1]) // k)
        rows, cols = self.shape
        a0, a1, b0, b1 = max(R0, 0), min(R0 + Hc, rows), max(C0, 0), min(C0 + Wc, cols)
        if a0 >= a1 or b0 >= b1:
            return none
        changed = False
        layers = [(fine.step_m, self._near_step)]
        if self.params.near_roughness_margin is not None:
            layers.append((fine.roughness_m, self._near_rough))
        for layer, store in layers:
            # pool the fine cells into map cells (largest value of each)
            pad = np.full((Hc * k, Wc * k), np.nan, np.float32)
            pad[pt:pt + h.shape[0], pl:pl + h.shape[1]] = np.where(known, layer, np.nan)
            pooled = np.fmax.reduce(np.fmax.reduce(pad.reshape(Hc, k, Wc, k), axis=3), axis=1)
            src = pooled[a0 - R0:a1 - R0, b0 - C0:b1 - C0]
            got = np.isfinite(src)
            if got.any():
                changed = True
                with self._lock:
                    store[a0:a1, b0:b1][got] = src[got]
        if not changed:
            return none
        return np.array([a0, a1 - 1], np.int64), np.array([b0, b1 - 1], np.int64)

    def _with_near(self, cm, r0, c0, *, relaxed: bool):
        """``cm`` (a window at map cell ``(r0, c0)``) with the near map's steps and roughness over the near
        limits made lethal and inflated by the rover radius, as :func:`nav.traversability` does a hazard."""
        rr, cc = cm.cost.shape
        step_lim, rough_lim = self._near_limits(relaxed=relaxed)
        fs = self._near_step[r0:r0 + rr, c0:c0 + cc]
        with np.errstate(invalid="ignore"):
            haz_step = fs > np.float32(step_lim)
            if rough_lim is None:
                fr, haz_rough = None, np.zeros_like(haz_step)
            else:
                fr = self._near_rough[r0:r0 + rr, c0:c0 + cc]
                haz_rough = fr > np.float32(rough_lim)
        haz = haz_step | haz_rough
        if not haz.any():
            return cm
        r2 = _radius2_cells(cm.limits["inflation_radius_m"], self.cell_size_m)    # traversability's disc
        d = distance_cells(haz, math.isqrt(r2) + 1)
        near = d * d <= r2 + 0.5
        cost = cm.cost.copy()
        cost[near] = np.inf
        reason = cm.reason.copy()
        reason[near & ~haz & (reason == 0)] = LETHAL_INFLATED
        reason[haz_step] |= LETHAL_STEP
        reason[haz_rough] |= LETHAL_ROUGHNESS
        step = cm.step_m.copy()
        step[haz_step] = np.fmax(step[haz_step], fs[haz_step])
        rough = cm.roughness_m
        if haz_rough.any():
            rough = rough.copy()
            rough[haz_rough] = np.fmax(rough[haz_rough], fr[haz_rough])
        return dataclasses.replace(cm, cost=cost, reason=reason, step_m=step, roughness_m=rough)

    def _update_costs(self, rows_changed, cols_changed) -> int:
        """Recompute traversability around changed cells; queue the cells whose cost moved for D* Lite."""
        if rows_changed.size == 0:
            return 0
        rows, cols = self.shape
        A = self._reach_cells
        # affected: changed window grown by the reach; computed on a window grown by the reach again
        a0 = max(int(rows_changed.min()) - A, 0)
        a1 = min(int(rows_changed.max()) + A + 1, rows)
        b0 = max(int(cols_changed.min()) - A, 0)
        b1 = min(int(cols_changed.max()) + A + 1, cols)
        w0, w1 = max(a0 - A, 0), min(a1 + A, rows)
        v0, v1 = max(b0 - A, 0), min(b1 + A, cols)
        ox, oy = self.origin_xy_m
        cs = self.cell_size_m
        sr, sc = slice(a0 - w0, a1 - w0), slice(b0 - v0, b1 - v0)
        while True:
            mode = self._cost_mode
            z = np.array(self.gmap.height_m[w0:w1, v0:v1], dtype=np.float32)
            po = self._prior_only[w0:w1, v0:v1]
            if po.any():
                hide = po & _dilate(self._observed[w0:w1, v0:v1], self._cover_cells)
                z[hide] = np.nan
            sub = TerrainMap(z, cs, (ox + v0 * cs, oy + w0 * cs))
            cost, cm = self._traversability(sub, w0, v0)
            new_cost = cost[sr, sc].copy()
            new_cost[self._keep_mask[a0:a1, b0:b1]] = np.inf
            with self._lock:
                if mode != self._cost_mode:      # the settings changed meanwhile: assess again
                    continue
                old = self._cost[a0:a1, b0:b1]
                with np.errstate(invalid="ignore"):
                    close = np.isfinite(old) & np.isfinite(new_cost) & (np.abs(old - new_cost) <= 1e-4 * np.abs(old))
                    moved = (old != new_cost) & ~close
                self._cost[a0:a1, b0:b1] = new_cost
                self._limits = dict(cm.limits)       # the limits lethality is judged at (they change on relaxing)
                self._reason[a0:a1, b0:b1] = cm.reason[sr, sc]
                self._slope[a0:a1, b0:b1] = cm.slope_deg[sr, sc]
                self._step[a0:a1, b0:b1] = cm.step_m[sr, sc]
                self._rough[a0:a1, b0:b1] = cm.roughness_m[sr, sc]
                rr, cc = np.nonzero(moved)
                if rr.size:
                    self._pending_dsl_cells.append(np.stack([rr + a0, cc + b0], axis=1))
                break
        return int(rr.size)

    def _traversability(self, terrain: TerrainMap, r0: int = 0, c0: int = 0):
        """(planning cost, CostMap at the limits that decide lethality) of a map window at cell ``(r0, c0)``:
        the margin limits' cost, with the margin band (lethal at the margin limits, not at the profile's)
        charged ``margin_band_cost`` per cell on top of its cost at the profile's limits; the near map's
        hazards are lethal in both (at the near limits and at their relaxed values)."""
        lim_kw, band_cost = self._trav_lim_kw, self._band_cost
        cm = self._with_near(traversability(terrain, self.profile, **self._trav_kw), r0, c0, relaxed=False)
        if lim_kw is None:
            return self._clearance(cm, cm.cost), cm
        lim = self._with_near(traversability(terrain, self.profile, **lim_kw), r0, c0, relaxed=True)
        band = ~np.isfinite(cm.cost) & np.isfinite(lim.cost)
        cost = cm.cost.copy()
        cost[band] = lim.cost[band] + np.float32(band_cost)
        return self._clearance(cm, cost), lim

    def _clearance(self, cm, cost):
        """``cost`` plus the clearance cost around the hazards of ``cm`` (the margin limits' cost map)."""
        p = self.params
        if p.clearance_cost <= 0:
            return cost
        return clearance_cost(dataclasses.replace(cm, cost=cost), self._trav_kw["inflation_radius_m"],
                              p.clearance_m, p.clearance_cost)

    def _relax_margins(self, why: str) -> None:
        """Apply ``margin_fallback_cost`` at the next step of ``margin_relax_keep``: the margin band up to
        the relaxed limits becomes a cost and the whole map is re-assessed."""
        p, hz = self.params, self.profile.hazards
        keep = p.margin_relax_keep[self._relax_level]
        with self._lock:
            self._relax_level += 1
            self._keep = keep
            self._band_cost = float(p.margin_fallback_cost)
            f, fs = 1.0 - p.hazard_margin * keep, 1.0 - p.step_margin * keep
            self._trav_lim_kw = dict(unknown="penalty", inflation_radius_m=self._trav_kw["inflation_radius_m"])
            if keep > 0:
                self._trav_lim_kw.update(max_slope_deg=hz.max_slope_deg * f, max_step_m=hz.max_step_m * fs,
                                         max_roughness_m=hz.max_roughness_m * f)
            self._cost_mode += 1
            self._dsl = None
        rows, cols = self.shape
        self._update_costs(np.array([0, rows - 1]), np.array([0, cols - 1]))
        self.events.append((self._last_t, "margins_relaxed", {"why": why, "keep": keep}))
        log.info("executive: %s; planning again with %g of the margins kept, the band as a cost (%g per cell)",
                 why, keep, self._band_cost)

    # ------------------------------------------------------------------ explanations
    def explain(self, rc) -> str:
        """Why cell ``rc`` is lethal (or not) on the rover's map, in a sentence."""
        r, c = int(rc[0]), int(rc[1])
        if self._keep_mask[r, c]:
            x, y = self._xy((r, c))
            for i, (kx, ky, kr) in enumerate(self.keep_out):
                if math.hypot(x - kx, y - ky) <= kr + self._trav_kw["inflation_radius_m"] + self.cell_size_m:
                    return (f"inside keep-out zone {i} (x={kx:.2f} m, y={ky:.2f} m, radius {kr:g} m, grown by the "
                            f"rover radius {self._trav_kw['inflation_radius_m']:g} m)")
            return "inside a keep-out zone"
        cm = CostMap(terrain=self._geo, cost=self._cost, slope_deg=self._slope, step_m=self._step,
                     roughness_m=self._rough, reason=self._reason, limits=self._limits)
        # a hazard only the near map has over its (lower) limit: "step 0.125 m > max_step_m 0.1275" would be
        # false, so name the near limit and the map it came from
        src = (r, c) if int(self._reason[r, c]) & ~LETHAL_INFLATED else (cm._nearest_source(r, c) or (None, None))[:2]
        if src[0] is not None:
            step_lim, rough_lim = self._near_limits(relaxed=self._trav_lim_kw is not None)
            # the layers hold the larger of the two maps' values: the near map's when it is the one shown
            limits, why, from_near = dict(self._limits), int(self._reason[src]), False
            if why & LETHAL_STEP and self._near_step[src] > np.float32(step_lim) \
                    and self._near_step[src] >= self._step[src]:
                limits["max_step_m"], from_near = step_lim, True
            if rough_lim is not None and why & LETHAL_ROUGHNESS and self._near_rough[src] > np.float32(rough_lim) \
                    and self._near_rough[src] >= self._rough[src]:
                limits["max_roughness_m"], from_near = rough_lim, True
            if from_near:
                cm = dataclasses.replace(cm, limits=limits)
                return cm.explain((r, c)) + " (on the 5 cm map of the ground close in)"
        return cm.explain((r, c))

    def _near_limits(self, *, relaxed: bool) -> tuple[float, float | None]:
        """(step, roughness) beyond which the near map makes a cell lethal; ``relaxed``: at the relaxed limits
        (the near margins times the fraction of ``margin_relax_keep`` in force); roughness ``None`` when the
        near map does not judge it."""
        hz, p = self.profile.hazards, self.params
        keep = self._keep if relaxed else 1.0
        step = hz.max_step_m * (1.0 - p.near_step_margin * keep)
        if p.near_roughness_margin is None:
            return step, None
        return step, hz.max_roughness_m * (1.0 - p.near_roughness_margin * keep)


    # ------------------------------------------------------------------ control
    def pause(self, reason: str) -> None:
        """Stop driving (a driver fault, an operator hold) until :meth:`resume`."""
        with self._lock:
            if self._state in ("reached", "failed"):
                return
            self._paused = True
            self._pause_reason = str(reason)
            self._path = None
            self._turn_target = None
            self.events.append((self._last_t, "pause", {"reason": self._pause_reason}))

    def resume(self) -> None:
        """Continue after :meth:`pause`: image and plan afresh from where the rover now is."""
        with self._lock:
            if not self._paused:
                return
            self._paused = False
            self._need_image = True
            self._need_plan = False
            self._plan_pending = False      # a plan still in flight is stale: install() will drop it
            self._generation += 1
            self._stuck_anchor = None
            self.events.append((self._last_t, "resume", {}))

    @property
    def state(self) -> str:
        return self._state

    @property
    def outcome(self) -> str:
        """``""`` while running; one of :data:`OUTCOMES` once finished."""
        return self._outcome

    @property
    def reason(self) -> str:
        return self._reason_text

    @property
    def goal_index(self) -> int:
        return self._goal_i

    @property
    def last_xy(self) -> tuple:
        """The last pose's position given to :meth:`step` (or the first goal before any)."""
        return self._last_xy if self._last_xy is not None else self.goals[0][:2]

    @property
    def odometer_m(self) -> float:
        return self._odo

    def _finish(self, state, outcome, reason, t_s):
        self._state = state
        self._outcome = outcome
        self._reason_text = reason
        self._path = None
        self._turn_target = None
        self._need_image = self._need_plan = False
        self.events.append((t_s, outcome, {"reason": reason}))
        (log.info if outcome == "reached" else log.warning)("executive: %s: %s", outcome, reason)

    def _cmd(self, vx=0.0, wz=0.0) -> ExecCommand:
        want_image = self._need_image and not self._plan_pending and self._state not in ("reached", "failed") \
            and not self._paused
        want_plan = self._need_plan and not self._plan_pending and not self._need_image \
            and self._state not in ("reached", "failed") and not self._paused
        state = "paused" if self._paused and self._state not in ("reached", "failed") else self._state
        reason = self._pause_reason if state == "paused" else self._reason_text
        self._last_cmd = (vx, wz)
        return ExecCommand(float(vx), float(wz), state, reason, bool(want_image), bool(want_plan), self._goal_i)

    def step(self, t_s: float, pose, tilt_rad: float = 0.0) -> ExecCommand:
        """One control tick: goal and safety checks, then the twist that follows the current arc.

        Parameters
        ----------
        t_s : float
            Time (the runner's clock).
        pose : (x_m, y_m, yaw_rad) or (4, 4) T_world_body
            Estimated pose.
        tilt_rad : float
            Estimated tilt of the body from vertical.
        """
        x, y, yaw = _pose_xy_yaw(pose)
        t_s = float(t_s)
        with self._lock:
            if self._start_xy is None:
                self._start_xy = (x, y)
            dt = 0.0 if self._last_t is None else max(t_s - self._last_t, 0.0)
            self._last_t = t_s
            if self._last_xy is not None:
                self._odo += math.hypot(x - self._last_xy[0], y - self._last_xy[1])
            self._last_xy = (x, y)
            if self._state in ("reached", "failed"):
                return self._cmd()
            # safety first: tilt
            if math.isfinite(tilt_rad) and abs(tilt_rad) > self.max_tilt_rad:
                self._finish("failed", "tilt", f"tilt {math.degrees(abs(tilt_rad)):.1f}° > max_tilt_deg "
                             f"{math.degrees(self.max_tilt_rad):g} at (x={x:.2f} m, y={y:.2f} m)", t_s)
                return self._cmd()
            if self._paused:
                return self._cmd()
            # goals
            gx, gy, tol = self.goals[self._goal_i]
            if math.hypot(x - gx, y - gy) <= tol:
                self.events.append((t_s, "goal_reached", {"index": self._goal_i, "x_m": gx, "y_m": gy}))
                self._goal_i += 1
                self._path = None
                self._turn_target = None
                self._local_failures = 0
                if self._goal_i >= len(self.goals):
                    n = len(self.goals)
                    self._finish("reached", "reached", f"reached the goal (x={gx:.2f} m, y={gy:.2f} m) within "
                                 f"{tol:g} m" + (f" after {n - 1} waypoints" if n > 1 else ""), t_s)
                    return self._cmd()
                self._need_plan = True     # plan to the next goal from the map we have
                self._state = "waiting"
            # stuck detection (only while motion is commanded)
            vx_prev, wz_prev = self._last_cmd
            if vx_prev != 0.0 or wz_prev != 0.0:
                self._motion_time += dt
                a = self._stuck_anchor
                if a is None:
                    self._stuck_anchor = (x, y, yaw, self._motion_time)
                elif (math.hypot(x - a[0], y - a[1]) >= self.params.stuck_progress_m
                      or abs(_wrap(yaw - a[2])) >= math.radians(self.params.stuck_turn_deg)):
                    self._stuck_anchor = (x, y, yaw, self._motion_time)
                elif self._motion_time - a[3] >= self.params.stuck_time_s:
                    self._finish("failed", "stuck",
                                 f"no progress for {self._motion_time - a[3]:.1f} s of commanded motion at "
                                 f"(x={x:.2f} m, y={y:.2f} m): moved {math.hypot(x - a[0], y - a[1]):.2f} m "
                                 f"< stuck_progress_m {self.params.stuck_progress_m:g}", t_s)
                    return self._cmd()
            # a turn to look
            if self._turn_target is not None:
                err = _wrap(self._turn_target - yaw)
                if abs(err) <= math.radians(3.0):
                    self._turn_target = None
                    self._state = "waiting"
                    self._need_image = True
                    return self._cmd()
                wmax = math.radians(self.profile.drive.max_yaw_rate_dps)
                wz = math.copysign(min(max(2.0 * abs(err), 0.25 * wmax), wmax), err)
                self._state = "turning"
                return self._cmd(0.0, wz)
            # drive the arc
            if self._path is not None:
                fc = self.follower.command((x, y, yaw), self._path)
                driven = self._odo - self._path_start_odo
                self.max_cross_track_m = max(self.max_cross_track_m, abs(fc.cross_track_m))
                blocked = None if fc.done else self._guard_path(fc.progress_m, t_s, dt)
                if blocked is not None:         # the map changed under the arc: stop short of it, plan again
                    self._path = None
                    if not self._plan_pending:
                        self._need_plan = True
                elif fc.done or driven >= self._path_limit_m + 0.05 or fc.progress_m >= self._path_stop_s:
                    self._path = None
                    if self.params.mode == "stop_and_go" or not (self._plan_pending or self._need_plan):
                        self._need_image = True
                else:
                    self._state = "driving"
                    if self.params.mode == "drive_while_planning" and not self._need_image \
                            and not self._need_plan and not self._plan_pending \
                            and self._odo - self._image_odo >= self.params.image_every_m:
                        self._need_image = True
                    return self._cmd(fc.vx_mps, fc.wz_radps)
            self._state = "waiting"
            if not (self._need_image or self._need_plan or self._plan_pending):
                self._need_image = True
            return self._cmd()

    # ------------------------------------------------------------------ planning
    def plan(self, pose, t_s: float) -> PlanResult:
        """Global replan and local arc from ``pose`` (heavy; thread-safe against :meth:`step`).

        Returns a :class:`PlanResult` for :meth:`install`.
        """
        x, y, yaw = _pose_xy_yaw(pose)
        T = np.asarray(pose, dtype=np.float64) if np.shape(pose) == (4, 4) else None
        with self._lock:
            if self._start_xy is None:
                self._start_xy = (x, y)
            self._plan_pending = True
            self._need_plan = False
            goal_i = self._goal_i
            gen = self._generation
        tm = {"merge_ms": self._obs_timing["merge_ms"], "traversability_ms": self._obs_timing["traversability_ms"]}
        if goal_i >= len(self.goals):
            return PlanResult(float(t_s), goal_i, (x, y, yaw), None, None, math.inf, timings_ms=tm, generation=gen)
        t0 = time.perf_counter()
        try:
            gpath, gcost, unreachable, start_rc = self._global_plan(x, y, goal_i)
        except StartInHazard as e:
            tm["global_ms"] = 1e3 * (time.perf_counter() - t0)
            return PlanResult(float(t_s), goal_i, (x, y, yaw), None, None, math.inf, hazard_stop=str(e),
                              timings_ms=tm, generation=gen)
        t1 = time.perf_counter()
        tm["global_ms"] = 1e3 * (t1 - t0)
        if unreachable:
            return PlanResult(float(t_s), goal_i, (x, y, yaw), None, None, math.inf, unreachable=unreachable,
                              timings_ms=tm, generation=gen)
        local = self._local_plan(x, y, yaw, T, gpath, goal_i)
        tm["local_ms"] = 1e3 * (time.perf_counter() - t1)
        gxy = self._geo.cell_to_world(gpath[0].astype(np.float64)) if gpath is not None else None
        return PlanResult(float(t_s), goal_i, (x, y, yaw), local, gxy, gcost, timings_ms=tm, generation=gen)

    def install(self, result: PlanResult, t_s: float | None = None) -> None:
        """Make a plan current (the arc replaces the one being driven)."""
        with self._lock:
            t = result.t_s if t_s is None else float(t_s)
            if result.generation != self._generation:    # computed before a pause: stale
                return
            self._plan_pending = False
            self.timings.append(dict(result.timings_ms, t_s=t))
            if self._state in ("reached", "failed") or self._paused:
                return
            if result.goal_index != self._goal_i:      # a goal was reached meanwhile: plan again
                self._need_plan = True
                return
            if result.global_xy_m is not None:
                self.global_xy_m = result.global_xy_m
            if result.unreachable:
                self._proof = self.costmap()
                self._finish("failed", "unreachable", result.unreachable, t)
                return
            if result.hazard_stop:
                self._finish("failed", "hazard_stop", result.hazard_stop, t)
                return
            lp = result.local
            if lp:
                self._local_failures = 0
                self.local_plan = lp
                self._prev_curv = float(lp.curvatures_per_m[0])
                limit = float(lp.verified_length_m)
                if self.params.mode == "stop_and_go":
                    limit = min(limit, self.params.drive_step_m)
                self._path = lp.xy_upto(limit)
                if len(self._path) < 2:
                    self._path = None
                self._path_limit_m = limit
                self._path_start_odo = self._odo
                self._arm_guard()
                self._turn_target = None
                self._state = "driving" if self._path is not None else "waiting"
                self._reason_text = ""
                if self._path is None:
                    self._need_image = True
                return
            # every arc failed: look again (turn toward the global path), up to max_local_failures
            self._local_failures += 1
            why = str(lp) if lp is not None else "no local plan"
            self.events.append((t, "local_plan_failed", {"reason": why, "count": self._local_failures}))
            if lp is not None and getattr(lp, "code", "") == "start_in_hazard" and self._local_failures >= 3:
                self._finish("failed", "hazard_stop", why, t)
                return
            if self._local_failures >= self.params.max_local_failures and self._can_relax():
                # the margins may be what closes every arc: relax them (at the next plan) before giving up
                self._relax_asked = (f"every candidate arc failed {self._local_failures} times in a row at "
                                     f"(x={result.pose_xy_yaw[0]:.2f} m, y={result.pose_xy_yaw[1]:.2f} m): {why}")
                self._local_failures = 0
            elif self._local_failures >= self.params.max_local_failures:
                self._proof = self.costmap()
                self._finish("failed", "unreachable",
                             f"every candidate arc failed {self._local_failures} times in a row at "
                             f"(x={result.pose_xy_yaw[0]:.2f} m, y={result.pose_xy_yaw[1]:.2f} m): {why}", t)
                return
            self._path = None
            self._reason_text = why
            yaw0 = result.pose_xy_yaw[2]
            turn = math.radians(self.params.look_turn_deg)
            bearing = None
            if result.global_xy_m is not None and len(result.global_xy_m) > 1:
                px, py = result.pose_xy_yaw[:2]
                d = np.hypot(result.global_xy_m[:, 0] - px, result.global_xy_m[:, 1] - py)
                k = int(np.argmax(d >= 1.5)) if (d >= 1.5).any() else len(d) - 1
                bearing = _wrap(math.atan2(result.global_xy_m[k, 1] - py, result.global_xy_m[k, 0] - px) - yaw0)
            if bearing is not None and abs(bearing) > math.radians(10.0) and self._local_failures % 2 == 1:
                delta = math.copysign(min(abs(bearing), turn), bearing)
            else:
                delta = self._look_sign * turn
                self._look_sign = -self._look_sign
            if self.follower.can_turn_in_place:
                self._turn_target = _wrap(yaw0 + delta)
                self._state = "turning"
            else:
                self._need_image = True
                self._state = "waiting"

    def _arm_guard(self) -> None:
        """Note, for :meth:`_guard_path`, where the new arc's samples lie and which of them start it inside
        the inflation margin (an escape, allowed to cross it)."""
        self._path_stop_s = math.inf
        if self._path is None:
            self._path_s = self._path_rc = None
            return
        xy = self._path
        self._path_s = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(xy, axis=0).T))])
        rows, cols = self.shape
        cs = self.cell_size_m
        rr = np.clip(np.floor((xy[:, 1] - self.origin_xy_m[1]) / cs).astype(np.int64), 0, rows - 1)
        cc = np.clip(np.floor((xy[:, 0] - self.origin_xy_m[0]) / cs).astype(np.int64), 0, cols - 1)
        self._path_rc = (rr, cc)
        free = np.isfinite(self._cost[rr, cc])
        self._path_escape_n = int(np.argmax(free)) if free.any() else len(free)

    def _guard_path(self, progress_m: float, t_s: float, tick_s: float):
        """Check the rest of the arc against the map as it is now (cells turn lethal as the rover sees
        more). Past the escape it started with, a lethal sample closes the arc; inside the escape, one
        lethal in its own right does. Far ahead, the arc is cut short by the stopping distance and a
        new plan asked for; within the stopping distance, the arc is dropped now. Returns ``None``
        when the arc is clear, else the length along it of the first closed sample (and logs it)."""
        if self._path_rc is None:
            return None
        s = self._path_s
        j0 = max(int(np.searchsorted(s, progress_m - self.cell_size_m, side="left")), 0)
        rr, cc = self._path_rc[0][j0:], self._path_rc[1][j0:]
        lethal = ~np.isfinite(self._cost[rr, cc])
        if not lethal.any():
            return None
        core = lethal & (self._reason[rr, cc] != LETHAL_INFLATED)
        bad = np.where(np.arange(j0, len(s)) < self._path_escape_n, core, lethal)
        if not bad.any():
            return None
        j = j0 + int(np.argmax(bad))
        v = abs(self._last_cmd[0])
        # braking, plus one control tick (at least 0.1 s) before the stop is commanded, plus a cell
        stop_m = v * v / (2.0 * self.profile.drive.max_accel_mps2) + v * max(tick_s, 0.1) + self.cell_size_m
        ahead = float(s[j]) - progress_m
        if ahead > stop_m:             # room to keep driving while the next plan is made
            if not math.isfinite(self._path_stop_s):
                if not self._plan_pending:
                    self._need_plan = True
                self.events.append((t_s, "path_closed", {"ahead_m": round(ahead, 3),
                                                         "why": self.explain((int(rr[j - j0]), int(cc[j - j0])))}))
            self._path_stop_s = min(self._path_stop_s, float(s[j]) - stop_m)
            return None
        why = self.explain((int(rr[j - j0]), int(cc[j - j0])))
        self.events.append((t_s, "path_blocked", {"ahead_m": round(ahead, 3), "why": why}))
        log.info("executive: the arc closed %.2f m ahead (%s); stopping to plan again", ahead, why)
        return float(s[j])

    def plan_and_install(self, pose, t_s: float) -> PlanResult:
        """:meth:`plan` then :meth:`install` at once (no modelled latency)."""
        res = self.plan(pose, t_s)
        self.install(res, t_s)
        return res

    # ------------------------------------------------------------------ global planning
    def _goal_cell(self, goal_i):
        """The goal's cell, or the free cell nearest to it within its tolerance; None if none."""
        gx, gy, tol = self.goals[goal_i]
        r, c = self._rc(gx, gy)
        if np.isfinite(self._cost[r, c]):
            return (r, c)
        return self._free_near(r, c, gx, gy, tol)

    def _free_near(self, r, c, x, y, radius_m):
        cs = self.cell_size_m
        k = int(math.ceil(radius_m / cs))
        rows, cols = self.shape
        r0, r1, c0, c1 = max(r - k, 0), min(r + k + 1, rows), max(c - k, 0), min(c + k + 1, cols)
        sub = self._cost[r0:r1, c0:c1]
        rr, cc = np.nonzero(np.isfinite(sub))
        if rr.size == 0:
            return None
        ox, oy = self.origin_xy_m
        d = np.hypot(ox + (cc + c0 + 0.5) * cs - x, oy + (rr + r0 + 0.5) * cs - y)
        i = int(np.argmin(d))
        if d[i] > radius_m:
            return None
        return (int(rr[i] + r0), int(cc[i] + c0))

    def _global_plan(self, x, y, goal_i):
        """D* Lite from the rover's cell; returns (path (cells, remaining cost), cost, unreachable reason, start).

        With ``margin_fallback_cost`` set, a goal unreachable under the margins is tried again after each
        step of ``margin_relax_keep`` (the band up to the relaxed limits a cost) before it is given up; a rover
        that has driven ``wander_relax_ratio`` times the straight route takes the first step anyway, and one
        whose every arc failed ``max_local_failures`` times in a row takes the next."""
        p = self.params
        if self._relax_asked and self._can_relax():
            why, self._relax_asked = self._relax_asked, ""
            self._relax_margins(why)
        if self._relax_level == 0 and self._can_relax() and p.wander_relax_ratio is not None \
                and self._start_xy is not None:
            route = self._route_m()
            if self._odo > p.wander_relax_ratio * route:
                self._relax_margins(f"driven {self._odo:.1f} m without arriving, over {p.wander_relax_ratio:g}x "
                                    f"the {route:.1f} m straight route from the start through the goals")
        res = self._global_plan_once(x, y, goal_i)
        while res[2] and self._can_relax():
            self._relax_margins(res[2])
            res = self._global_plan_once(x, y, goal_i)
        return res

    def _can_relax(self) -> bool:
        """Whether a step of ``margin_relax_keep`` is left (and relaxing is on)."""
        p = self.params
        return p.margin_band_cost is None and p.margin_fallback_cost is not None \
            and self._relax_level < len(p.margin_relax_keep)

    def _route_m(self) -> float:
        """Length of the straight legs from the start through every goal."""
        pts = [self._start_xy] + [g[:2] for g in self.goals]
        return float(sum(math.hypot(b[0] - a[0], b[1] - a[1]) for a, b in zip(pts, pts[1:])))

    def _global_plan_once(self, x, y, goal_i):
        from .dstar_lite import DStarLite

        with self._lock:
            pend = self._pending_dsl_cells
            self._pending_dsl_cells = []
        r, c = self._rc(x, y)
        start = (r, c)
        if not np.isfinite(self._cost[r, c]):
            near = self._free_near(r, c, x, y, 1.0)
            if near is None:
                raise StartInHazard(f"the rover (x={x:.2f} m, y={y:.2f} m) is in a lethal cell with no free "
                                    f"cell within 1 m: {self.explain((r, c))}")
            start = near
        goal_rc = self._goal_cell(goal_i)
        gx, gy, tol = self.goals[goal_i]
        if goal_rc is None:
            gr, gc = self._rc(gx, gy)
            why = (f"goal {goal_i} (x={gx:.2f} m, y={gy:.2f} m) is unreachable: every cell within its tolerance "
                   f"{tol:g} m is lethal on the known map: {self.explain((gr, gc))}")
            disc = np.zeros(self.shape, dtype=bool)
            self._disc(disc, gx, gy, tol)
            certain = bool(self._keep_mask[disc].all())
            return self._approach_or_fail(x, y, start, goal_i, why, None, certain)
        if self._dsl is None or self._dsl_goal != goal_i or self._goal_rc != goal_rc:
            self._dsl = DStarLite(self._cost, start, goal_rc, cell_size_m=self.cell_size_m)
            self._dsl_goal = goal_i
            self._goal_rc = goal_rc
        else:
            if pend:
                cells = np.concatenate(pend)
                self._dsl.update_cells(cells, self._cost[cells[:, 0], cells[:, 1]])
            self._dsl.move_start(start)
        try:
            path = self._dsl.replan()
        except GoalInHazard:
            self._dsl = None
            return self._global_plan_once(x, y, goal_i)
        except NoPathFound:
            why, reach, certain = self._explain_unreachable(start, goal_i)
            return self._approach_or_fail(x, y, start, goal_i, why, reach, certain)
        return self._path_result(path), float(path.cost), "", start

    def _approach_or_fail(self, x, y, start, goal_i, why, reach, certain):
        """No route to the goal on the known map. When that could change with a closer look (the cells
        that cut it are hazards seen from afar, not keep-out zones) and the rover is more than
        ``approach_m`` from the goal, drive to the reachable cell nearest the goal and look again;
        otherwise the goal is unreachable."""
        from .dstar_lite import DStarLite
        from .field_dstar import cost_to_goal

        gx, gy, _ = self.goals[goal_i]
        self._dsl = None                  # the next plan tries the goal itself again
        if certain or math.hypot(x - gx, y - gy) <= self.params.approach_m:
            return None, math.inf, why, start
        if reach is None:
            reach = np.isfinite(cost_to_goal(self._cost, start, interp=False))
        rr, cc = np.nonzero(reach)
        ox, oy = self.origin_xy_m
        cs = self.cell_size_m
        d = np.hypot(ox + (cc + 0.5) * cs - gx, oy + (rr + 0.5) * cs - gy)
        # of the cells (about) as close to the goal as any, the one nearest the rover: no drive around the
        # obstacle for a view no closer
        tie = np.nonzero(d <= float(d.min()) + cs)[0]
        i = int(tie[np.argmin(np.hypot(ox + (cc[tie] + 0.5) * cs - x, oy + (rr[tie] + 0.5) * cs - y))])
        target = (int(rr[i]), int(cc[i]))
        tx, ty = self._xy(target)
        # already as close as the map allows: at the target, or nearly as close to the goal as it is (routes
        # keep up to clearance_m off the rim of the hazards, where the nearest reachable cell lies)
        slack = 0.5 + (self.params.clearance_m if self.params.clearance_cost > 0 else 0.0)
        if math.hypot(tx - x, ty - y) < 0.5 or math.hypot(x - gx, y - gy) - float(d[i]) < slack:
            return None, math.inf, why, start
        path = DStarLite(self._cost, start, target, cell_size_m=cs).plan()
        self.events.append((self._last_t, "approach", {"x_m": tx, "y_m": ty, "why": why}))
        log.info("executive: no route to goal %d yet; approaching (x=%.2f, y=%.2f) to look again", goal_i, tx, ty)
        return self._path_result(path), float(path.cost), "", start

    def _path_result(self, path):
        """(cells, remaining cost at each) of a D* Lite path."""
        cells = path.cells_rc.astype(np.int64)
        # remaining cost (cost·cells) at each vertex, under D* Lite's convention
        if len(cells) > 1:
            d = np.diff(cells, axis=0)
            step = np.where((d[:, 0] != 0) & (d[:, 1] != 0), math.sqrt(2.0), 1.0)
            cc = self._cost[cells[:, 0], cells[:, 1]].astype(np.float64)
            seg = step * 0.5 * (cc[:-1] + cc[1:])
            remaining = np.concatenate([np.cumsum(seg[::-1])[::-1], [0.0]])
        else:
            remaining = np.zeros(1)
        return cells, remaining

    def _explain_unreachable(self, start_rc, goal_i):
        """Name where the route is cut: the smaller of the regions around the rover and around the goal,
        and the lethal cells that close it in (the one nearest the other end explained).

        Returns ``(reason, cells the rover can reach (bool grid), certain)``; ``certain`` when every
        closing cell is a keep-out zone (no better look can change it)."""
        from .field_dstar import cost_to_goal

        gx, gy, _ = self.goals[goal_i]
        goal_rc = self._goal_rc if self._goal_rc is not None else self._rc(gx, gy)
        reach_r = np.isfinite(cost_to_goal(self._cost, start_rc, interp=False))
        reach_g = np.isfinite(cost_to_goal(self._cost, goal_rc, interp=False)) \
            if np.isfinite(self._cost[goal_rc]) else None
        if reach_g is not None and reach_g.sum() < reach_r.sum():
            reach, who, (tx, ty) = reach_g, "around the goal", self._xy(start_rc)
        else:
            reach, who, (tx, ty) = reach_r, "the rover can reach", (gx, gy)
        lethal = ~np.isfinite(self._cost)
        grown = reach.copy()
        grown[1:, :] |= reach[:-1, :]
        grown[:-1, :] |= reach[1:, :]
        grown[:, 1:] |= reach[:, :-1]
        grown[:, :-1] |= reach[:, 1:]
        border = grown & lethal
        area = float(reach.sum()) * self.cell_size_m ** 2
        head = f"goal {goal_i} (x={gx:.2f} m, y={gy:.2f} m) is unreachable on the known map"
        rr, cc = np.nonzero(border)
        area_s = f"{area:.1f}" if area >= 1.0 else f"{area:.2f}"
        if rr.size == 0:
            return f"{head} (the region {who} is {area_s} m², bounded by the map's edge)", reach_r, True
        ox, oy = self.origin_xy_m
        cs = self.cell_size_m
        d = np.hypot(ox + (cc + 0.5) * cs - tx, oy + (rr + 0.5) * cs - ty)
        i = int(np.argmin(d))
        bx, by = self._xy((rr[i], cc[i]))
        kinds = {}
        for r, c in zip(rr.tolist(), cc.tolist()):
            if self._keep_mask[r, c]:
                k = "keep-out"
            else:
                f = int(self._reason[r, c])
                k = "rover radius" if f == LETHAL_INFLATED else "+".join(
                    n for bit, n in ((1, "slope"), (2, "step"), (4, "roughness"), (8, "unknown")) if f & bit) or "lethal"
            kinds[k] = kinds.get(k, 0) + 1
        summary = ", ".join(f"{v} {k}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1]))
        certain = bool(self._keep_mask[rr, cc].all())
        return (f"{head}: the {area_s} m² {who} is closed in by {rr.size} lethal cells ({summary}); the one "
                f"nearest the {'rover' if who == 'around the goal' else 'goal'}, (x={bx:.2f} m, y={by:.2f} m), is "
                f"{self.explain((rr[i], cc[i]))}"), reach_r, certain

    # ------------------------------------------------------------------ local planning
    def _local_plan(self, x, y, yaw, T, gpath, goal_i):
        cs = self.cell_size_m
        rows, cols = self.shape
        k = int(math.ceil(self.params.window_m / cs))
        r, c = self._rc(x, y)
        r0, r1, c0, c1 = max(r - k, 0), min(r + k + 1, rows), max(c - k, 0), min(c + k + 1, cols)
        ox, oy = self.origin_xy_m
        origin = (ox + c0 * cs, oy + r0 * cs)
        with self._lock:
            cost = np.ascontiguousarray(self._cost[r0:r1, c0:c1])
            reason = self._reason[r0:r1, c0:c1].copy()
        # cost-to-go: an interpolated search seeded with the global path's remaining cost
        cells, remaining = gpath
        inside = (cells[:, 0] >= r0) & (cells[:, 0] < r1) & (cells[:, 1] >= c0) & (cells[:, 1] < c1)
        seeds = cells[inside] - (r0, c0)
        vals = remaining[inside]
        ctg = _seeded_cost_to_go(cost, seeds, vals) * cs
        # body check terrain: what the cameras saw, plus the ground under the rover
        z = np.asarray(self.gmap.height_m)[r0:r1, c0:c1].astype(np.float32)
        z = np.where(self._observed[r0:r1, c0:c1], z, np.float32(np.nan))
        self._fill_footprint(z, origin, x, y, T)
        # ground near the rover that no camera saw (beside or behind it after a turn: the cameras are blind
        # out to blind_distance_m) is a hazard to the cheap pass, grown by the rover radius like one (an
        # inflation margin the rover may leave), so the body check spends its candidates on arcs whose
        # wheels stay on seen ground instead of failing them all as unverifiable
        near = np.zeros(z.shape, dtype=bool)
        self._disc(near, x, y, self._fill_m, origin=origin)
        unseen = near & ~np.isfinite(z)
        if unseen.any():
            cost = cost.copy()
            r_cells = self._trav_kw["inflation_radius_m"] / cs
            margin = (distance_cells(unseen, math.floor(r_cells) + 1) <= r_cells) & np.isfinite(cost)
            cost[margin] = np.inf
            reason[margin] = LETHAL_INFLATED
            cost[unseen] = np.inf
            reason[unseen] |= LETHAL_UNKNOWN
        terrain = TerrainMap(z, cs, origin, source="rover map (seen)")
        cmap = CostMap(terrain=terrain, cost=cost, slope_deg=self._slope[r0:r1, c0:c1],
                       step_m=self._step[r0:r1, c0:c1], roughness_m=self._rough[r0:r1, c0:c1], reason=reason,
                       limits=self._limits)
        gx, gy, _ = self.goals[goal_i]
        return self.arc_planner.plan((x, y, yaw), terrain, cmap, CostToGo(ctg, cs, origin, (gx, gy)),
                                     prev_curvature_per_m=self._prev_curv)

    def _fill_footprint(self, z, origin, x, y, T):
        """Unseen cells near the rover, for the body check (in place): under the body (half its diagonal
        and a cell) the plane the rover stands on; within the fill radius of the start pose (ground known
        to be clear when the traverse began), a smooth bridge from there to the heights the cameras saw
        (repeated averaging of known neighbours). Other unseen cells stay unknown."""
        cs = self.cell_size_m
        body_r = 0.5 * math.hypot(self.profile.geometry.length_m, self.profile.geometry.width_m) + cs
        sx, sy = self._start_xy if self._start_xy is not None else (x, y)
        d_start = math.hypot(x - sx, y - sy)
        R = max(d_start + self._fill_m, body_r) if d_start < self._fill_m + self.params.window_m else body_r
        rows, cols = z.shape
        c0 = max(int(math.floor((x - R - origin[0]) / cs)) - 1, 0)
        c1 = min(int(math.ceil((x + R - origin[0]) / cs)) + 2, cols)
        r0 = max(int(math.floor((y - R - origin[1]) / cs)) - 1, 0)
        r1 = min(int(math.ceil((y + R - origin[1]) / cs)) + 2, rows)
        if r0 >= r1 or c0 >= c1:
            return
        yy = origin[1] + (np.arange(r0, r1) + 0.5) * cs
        xx = origin[0] + (np.arange(c0, c1) + 0.5) * cs
        dx = xx[None, :] - x
        dy = yy[:, None] - y
        d2 = dx * dx + dy * dy
        body = d2 <= body_r * body_r
        sdx = xx[None, :] - sx
        sdy = yy[:, None] - sy
        disc = body | (sdx * sdx + sdy * sdy <= self._fill_m * self._fill_m)
        sub = z[r0:r1, c0:c1]
        hole = disc & ~np.isfinite(sub)
        if not hole.any():
            return
        if T is not None:
            n = T[:3, 2]
            nz = n[2] if abs(n[2]) > 1e-6 else 1e-6
            plane = T[2, 3] - (n[0] * (dx - (T[0, 3] - x)) + n[1] * (dy - (T[1, 3] - y))) / nz
        else:
            known = sub[disc & np.isfinite(sub)]
            plane = np.full(disc.shape, float(np.median(known)) if known.size else 0.0)
        under = hole & body
        sub[under] = np.broadcast_to(plane, disc.shape)[under].astype(np.float32)
        todo = hole & ~body
        for _ in range(int(math.ceil(R / cs)) + 2):
            if not todo.any():
                break
            known = np.isfinite(sub)
            val = np.where(known, sub, 0.0).astype(np.float64)
            kn = known.astype(np.float64)
            acc = np.zeros_like(val)
            cnt = np.zeros_like(val)
            for a in (-1, 0, 1):
                for b in (-1, 0, 1):
                    if a == 0 and b == 0:
                        continue
                    sa = slice(max(a, 0), val.shape[0] + min(a, 0))
                    da = slice(max(-a, 0), val.shape[0] + min(-a, 0))
                    sb = slice(max(b, 0), val.shape[1] + min(b, 0))
                    db = slice(max(-b, 0), val.shape[1] + min(-b, 0))
                    acc[da, db] += val[sa, sb]
                    cnt[da, db] += kn[sa, sb]
            ready = todo & (cnt > 0)
            if not ready.any():
                break
            sub[ready] = (acc[ready] / cnt[ready]).astype(np.float32)
            todo &= ~ready
        if todo.any():        # nothing seen nearby: the plane
            sub[todo] = np.broadcast_to(plane, disc.shape)[todo].astype(np.float32)

    def summary(self) -> dict:
        """Counters for reports: cycles, failures, timing medians."""
        out = {"plans": len(self.timings), "max_cross_track_m": self.max_cross_track_m,
               "local_failures": sum(1 for e in self.events if e[1] == "local_plan_failed"),
               "pauses": sum(1 for e in self.events if e[1] == "pause"),
               "margins_relaxed": self._relax_level > 0, "margin_relaxations": self._relax_level}
        for key in ("merge_ms", "traversability_ms", "global_ms", "local_ms"):
            v = [t[key] for t in self.timings if key in t]
            out[f"{key}_median"] = float(np.median(v)) if v else None
        return out


# ============================================================================ helpers
def _seeded_cost_to_go(cost: np.ndarray, seeds_rc: np.ndarray, seed_values: np.ndarray) -> np.ndarray:
    """Field D* cost-to-go (interpolated, cost·cells) of every cell to the nearest-by-cost seed, where
    reaching seed ``i`` costs ``seed_values[i]`` more (a multi-source backward search)."""
    a = np.ascontiguousarray(cost, dtype=np.float32)
    rows, cols = a.shape
    n = rows * cols
    g = np.full(n, np.inf)
    heap_node = np.empty(n, dtype=np.int64)
    heap_key = np.zeros(n)
    pos = np.full(n, -1, dtype=np.int64)
    seeds = np.asarray(seeds_rc, dtype=np.int64).reshape(-1, 2)
    vals = np.asarray(seed_values, dtype=np.float64).reshape(-1)
    ok = np.isfinite(a[seeds[:, 0], seeds[:, 1]]) if len(seeds) else np.zeros(0, bool)
    idx = seeds[ok, 0] * cols + seeds[ok, 1]
    vals = vals[ok]
    if idx.size == 0:
        return g.reshape(rows, cols)
    # one entry per cell (the smallest value), in ascending order: a valid binary heap
    order = np.lexsort((vals, idx))
    idx, vals = idx[order], vals[order]
    first = np.r_[True, idx[1:] != idx[:-1]]
    idx, vals = idx[first], vals[first]
    order = np.argsort(vals, kind="stable")
    idx, vals = idx[order], vals[order]
    k = idx.size
    g[idx] = vals
    heap_node[:k] = idx
    heap_key[:k] = vals
    pos[idx] = np.arange(k)
    counters = np.array([k, 0, 0], dtype=np.int64)
    _fdk._search_values(a, g, heap_node, heap_key, pos, counters, -1, -1, 0.0, np.zeros(0), 3, np.zeros(3), 1,
                        np.iinfo(np.int64).max)
    return g.reshape(rows, cols)


def _dilate(mask: np.ndarray, k: int) -> np.ndarray:
    """Square dilation of a boolean grid by ``k`` cells (separable running maximum)."""
    out = mask.copy()
    for _ in range(2):
        acc = out.copy()
        for d in range(1, k + 1):
            acc[d:] |= out[:-d]
            acc[:-d] |= out[d:]
        out = acc.T.copy()
    return out


def blind_distance_m(profile: RoverProfile) -> float:
    """Ground distance from the body origin to where the cameras' lower image edge meets flat ground: the
    rover never sees the ground closer than this from where it stands (0 when the profile has no camera)."""
    cam = profile.camera
    try:
        half_v = math.atan(0.5 * cam.height_px / float(cam.K[1, 1]))
        down = math.radians(cam.tilt_deg) + half_v
        if down >= math.pi / 2 - 1e-3:
            return float(cam.mount_x_m)
        return float(cam.mount_x_m) + float(cam.mast_height_m) / math.tan(down)
    except (AttributeError, TypeError, ValueError, ZeroDivisionError):
        return 0.0


def _pose_xy_yaw(pose) -> tuple[float, float, float]:
    a = np.asarray(pose, dtype=np.float64)
    if a.shape == (4, 4):
        x, y = float(a[0, 3]), float(a[1, 3])
        yaw = math.atan2(a[1, 0], a[0, 0])
    elif a.shape == (3,):
        x, y, yaw = (float(v) for v in a)
    else:
        raise ValueError(f"pose must be (x_m, y_m, yaw_rad) or a 4x4 T_world_body, got shape {a.shape}")
    if not (math.isfinite(x) and math.isfinite(y) and math.isfinite(yaw)):
        raise ValueError(f"pose must be finite, got {pose!r}")
    return x, y, yaw


def _wrap(a: float) -> float:
    return (a + math.pi) % (2.0 * math.pi) - math.pi
