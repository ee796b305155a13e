"""Run a traverse scenario: the navigation executive driving a rover, scored against the truth.

::

    from hil.scenario import load_scenario
    from hil.traverse import run_traverse

    summary = run_traverse(load_scenario("quick"), out_dir="out/quick")
    print(summary.outcome, summary.path_ratio, summary.speed_m_per_h)

The loop talks to a :class:`drivers.base.Rover` only (``arm``, ``set_twist``, ``read_telemetry``,
``stop``); the truth (for scoring) and the perception source come from a separate *world* object, so the
same loop serves every backend:

* ``"sim"`` — the in-process :class:`sim.SimRover`; simulated time advances deterministically at the
  control rate (10 Hz), so a scenario and seed give the same summary every run.
* ``"sim-serial"`` / ``"serial"`` — the seam is :func:`_make_backend` (a virtual device over a pty
  sharing the simulator's clock; a real rover in real time). Not built yet: they raise a clear error.

Simulated compute time
----------------------
Planning and imaging take real time on a rover's computer; in simulation the loop charges a modelled
time (:class:`TimingModel`) instead of the host's wall time, so results are reproducible and the two
modes compare fairly: an image costs ``image_s`` between the capture and the map update, a plan
``plan_s`` between its request and the new arc. In ``stop_and_go`` the rover stands still meanwhile (the
executive commands zero until the next arc); in ``drive_while_planning`` it keeps driving the current arc.
The host's real per-cycle times are recorded too (``summary.timings``) for the benchmark.

Scoring (from the simulator's truth)
------------------------------------
* hazard violations: entries of the rover's centre into lethal cells of the **true** terrain's cost map
  (:func:`nav.traversability` with the rover's profile: inflated by its half width, so a lethal cell
  means part of the body is over a hazard); counted per entry, not per tick;
* oracle length: Field D* on the true cost map from the start through every goal, each leg counted up to
  where it enters the goal's tolerance circle (where the rover stops too); ``path_ratio`` is the driven
  (true) path length over it;
* the start must be clear of every hazard of the true terrain (lethal cells, inflated by the rover radius)
  out to where its cameras first see the ground (:func:`nav.executive.blind_distance_m`, at least
  :data:`START_CLEAR_M`): the rover drives and turns over that ground before it can see it, as a real rover
  needs a start it (or its operators) saw to be safe. :func:`build_traverse` raises ``ConfigError``
  otherwise (a campaign then redraws the terrain);
* minimum belly clearance, maximum tilt, localisation error (estimate vs truth, horizontal) at the end
  and at worst, moving fraction (share of the traverse time the rover moved faster than 10 % of its
  top speed or turned faster than 5°/s), and the average speed in metres per hour (driven length over
  traverse time).

Output folder (``out_dir``): ``summary.json`` (:meth:`TraverseSummary.to_dict`), ``traverse.png``
(:mod:`hil.traverse_report`), ``traverse.mcap`` (:class:`hil.mcaplog.McapLogger`; commands, telemetry,
true and estimated poses, global path, local arcs, the known map at a reduced rate, events, summary, and the replay inputs and decisions on ``/replay/*``: see :mod:`hil.replay`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Callable, NamedTuple

import numpy as np

__all__ = ["run_traverse", "build_traverse", "TraverseSummary", "TimingModel", "Observation", "SUMMARY_KEYS",
           "OUTCOMES", "BACKENDS", "TraverseSetup", "TraverseLoop", "LoopRecorder", "TickDecision", "start_clear_m"]

log = logging.getLogger(__name__)
_log = log       # for run_traverse, whose ``log`` parameter hides the module's logger

BACKENDS = ("sim", "sim-serial", "serial")
#: Every outcome a traverse can end with.
OUTCOMES = ("reached", "unreachable", "stuck", "tilt", "timeout", "distance_limit", "fault", "hazard_stop", "error")
#: Keys of summary.json, in order (the contract campaigns aggregate).
SUMMARY_KEYS = ("scenario", "seed", "backend", "perception", "mode", "reached", "outcome", "reason", "distance_m",
                "time_s", "speed_m_per_h", "moving_fraction", "path_length_m", "oracle_length_m", "path_ratio",
                "hazard_violations", "min_clearance_m", "max_tilt_deg", "loc_error_final_m", "loc_error_max_m",
                "vo_convergence", "faults", "passed", "failed_criteria", "wall_time_s")

_STOPPING_KINDS = {"link_loss", "silence", "estop", "device_fault", "reboot"}


class Observation(NamedTuple):
    """What a perception source returns for one picture."""
    t_s: float
    local: object            # perception.stereo_map.LocalHeightMap
    T_world_cam_est: np.ndarray
    n_points: int
    near: object = None      # a finer LocalHeightMap of the ground close in (StereoMapper.near_map), optional


@dataclass(frozen=True)
class TimingModel:
    """Modelled compute and control times of a simulated traverse (seconds).

    ``image_s``: capture plus stereo processing until the map is updated; ``plan_s``: global replan plus
    local arc selection; ``control_hz``: the control loop's rate. Defaults are of the order of a
    Raspberry Pi 4-class rover computer running this stack (this host plans in ~20-60 ms; a Pi is 3-5x
    slower; stereo at 640x480 ~0.2-0.3 s there).
    """
    image_s: float = 0.4
    plan_s: float = 0.3
    control_hz: float = 10.0

    def __post_init__(self):
        for name in ("image_s", "plan_s"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"TimingModel.{name} = {v!r}: must be a finite number >= 0 seconds")
        if not (isinstance(self.control_hz, (int, float)) and 1 <= self.control_hz <= 200):
            raise ValueError(f"TimingModel.control_hz = {self.control_hz!r}: must be within [1, 200] Hz")


@dataclass
class TraverseSummary:
    """The result of one traverse; :meth:`to_dict` is what ``summary.json`` holds (keys :data:`SUMMARY_KEYS`)."""
    scenario: str
    seed: int
    backend: str
    perception: str
    mode: str
    reached: bool
    outcome: str
    reason: str
    distance_m: float
    time_s: float
    speed_m_per_h: float
    moving_fraction: float
    path_length_m: float
    oracle_length_m: float | None
    path_ratio: float | None
    hazard_violations: int | None
    min_clearance_m: float | None
    max_tilt_deg: float | None
    loc_error_final_m: float | None
    loc_error_max_m: float | None
    vo_convergence: float | None
    faults: list
    passed: bool
    failed_criteria: list
    wall_time_s: float
    # not in summary.json's fixed keys: details for reports and benchmarks
    out_dir: str | None = None
    timings: dict = field(default_factory=dict)
    executive: dict = field(default_factory=dict)
    perception_stats: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The fixed-key summary (JSON-able; NaN/inf become ``None``)."""
        out = {}
        for k in SUMMARY_KEYS:
            v = getattr(self, k)
            if isinstance(v, float) and not math.isfinite(v):
                v = None
            out[k] = v
        return out


@dataclass
class TraverseSetup:
    """Everything a traverse is built from (see :func:`build_traverse`)."""
    scenario: object
    profile: object
    world: object
    true_costmap: object
    prior: object            # TerrainMap (NaN = unknown) on the world's grid
    gmap: object             # perception.stereo_map.GlobalMap
    goals: tuple
    keep_out: tuple
    start_T: np.ndarray
    oracle_length_m: float | None
    oracle_xy_m: np.ndarray | None
    straight_length_m: float


# ============================================================================ building
def _config_error(scenario, key, value, rule):
    from nav.errors import ConfigError

    return ConfigError(scenario.source or scenario.name, key, value, rule)


def build_traverse(scenario, *, prior_sigma_m: float = 0.25, map_cell_m: float = 0.1) -> TraverseSetup:
    """World, true cost map, prior map, goals and the oracle path of a scenario.

    The rover's map (``gmap``) covers the terrain with cells of ``map_cell_m`` (at least the terrain's
    own cell size): stereo at a hobby camera's resolution fills 10 cm cells out to several metres, 5 cm
    cells only close in, and sparse cells read as steps.

    Raises
    ------
    nav.ConfigError
        The goal (or a waypoint, or the start) lies on a hazard of the true terrain, or outside it.
    """
    import nav
    from perception.stereo_map import GlobalMap
    from sim.frames import T_world_body
    from sim.terrain import generate_terrain
    from sim.world import World

    sc = scenario
    profile = nav.load_rover(sc.rover)
    goals = tuple((g.x_m, g.y_m, g.tolerance_m) for g in sc.goals)
    keep_out = tuple((k.x_m, k.y_m, k.radius_m) for k in sc.keep_out)
    ts = sc.terrain
    if ts.dem:
        terrain = nav.load_dem(sc.dem_path)
        world = World(terrain, planet=sc.planet, seed=ts.seed)
    else:
        over = {}
        if ts.relief_rms_m is not None:
            over["relief_rms_m"] = ts.relief_rms_m
        if ts.crater_density_per_km2 is not None:
            over["crater_density_per_km2"] = ts.crater_density_per_km2
        pads = [(sc.start.x_m, sc.start.y_m, ts.clear_radius_m)] + [(g[0], g[1], ts.clear_radius_m) for g in goals]
        pads = [p for p in pads if p[2] > 0]
        gen = generate_terrain(ts.preset, size_m=ts.size_m, cell_size_m=ts.cell_size_m, seed=ts.seed,
                               rock_cfa=ts.rock_cfa, clear_zones=pads, **over)
        world = World(gen, planet=sc.planet, seed=ts.seed)
    tm = world.terrain
    true_cm = nav.traversability(tm, profile)
    # the start and goals must be drivable on the true terrain
    pts = [("start", sc.start.x_m, sc.start.y_m)]
    pts += [(f"waypoints[{i}]", g.x_m, g.y_m) for i, g in enumerate(sc.waypoints)]
    if sc.goal is not None:
        pts.append(("goal", sc.goal.x_m, sc.goal.y_m))
    for key, x, y in pts:
        if not tm.contains((x, y)):
            x0, x1, y0, y1 = tm.extent_m
            raise _config_error(sc, key, {"x_m": x, "y_m": y}, f"lies outside the terrain (x {x0:g}..{x1:g} m, "
                                                                f"y {y0:g}..{y1:g} m)")
        r, c = (int(v) for v in tm.world_to_cell((x, y)))
        if not np.isfinite(true_cm.cost[r, c]):
            raise _config_error(sc, key, {"x_m": x, "y_m": y},
                                f"lies on a hazard of the true terrain (x={x:.2f} m, y={y:.2f} m): "
                                f"{true_cm.explain((r, c))}")
        if key == "start":
            # the rover's first turn sweeps cells around it that it cannot see (under the body)
            clear_m = start_clear_m(profile)
            near = _lethal_near(true_cm, x, y, clear_m)
            if near is not None:
                raise _config_error(sc, key, {"x_m": x, "y_m": y},
                                    f"lies within {clear_m:.2f} m of a hazard of the true terrain (x={x:.2f} m, "
                                    f"y={y:.2f} m; the rover drives and turns there before its cameras can see "
                                    f"that ground): cell {near} is {true_cm.explain(near)}")
    # the rover's map grid, and what it knows beforehand
    cell = max(float(map_cell_m), tm.cell_size_m)
    x0, x1, y0, y1 = tm.extent_m
    shape = (max(int(math.floor((y1 - y0) / cell + 1e-9)), 1), max(int(math.floor((x1 - x0) / cell + 1e-9)), 1))
    z = np.full(shape, np.nan, np.float32)
    if sc.prior.kind == "orbital":
        fine = tm.resampled(max(sc.prior.resolution_m, cell)).resampled(cell).elevation_m
        rr, cc = min(fine.shape[0], shape[0]), min(fine.shape[1], shape[1])
        z[:rr, :cc] = fine[:rr, :cc]
        prior = nav.TerrainMap(z, cell, tm.origin_xy_m, source=f"orbital prior {sc.prior.resolution_m:g} m")
        gmap = GlobalMap.like(prior, prior_sigma_m=prior_sigma_m)
    else:
        prior = nav.TerrainMap(z, cell, tm.origin_xy_m, source="no prior")
        gmap = GlobalMap.like(prior)
    # the start, settled on the terrain
    z0 = float(tm.height_at((sc.start.x_m, sc.start.y_m)))
    start_T = T_world_body(sc.start.x_m, sc.start.y_m, z0, math.radians(sc.start.yaw_deg), 0.0, 0.0)
    # the oracle: Field D* on the true map, start through goals
    legs = [(sc.start.x_m, sc.start.y_m)] + [(g[0], g[1]) for g in goals]
    straight = sum(math.hypot(b[0] - a[0], b[1] - a[1]) for a, b in zip(legs[:-1], legs[1:]))
    oracle_len, oracle_xy = 0.0, []
    try:
        for a, b, g in zip(legs[:-1], legs[1:], goals):
            p = nav.plan(true_cm, a, b, "field_dstar")
            oracle_len += _length_to_disc(p.xy_m, b, g[2])
            oracle_xy.append(p.xy_m)
        oracle_xy = np.concatenate(oracle_xy)
    except nav.PlanningError as e:
        log.warning("no oracle path on the true map: %s", e)
        oracle_len, oracle_xy = None, None
    return TraverseSetup(scenario=sc, profile=profile, world=world, true_costmap=true_cm, prior=prior, gmap=gmap,
                         goals=goals, keep_out=keep_out, start_T=start_T, oracle_length_m=oracle_len,
                         oracle_xy_m=oracle_xy, straight_length_m=straight)


def _length_to_disc(xy: np.ndarray, centre, radius_m: float) -> float:
    """Length of polyline ``xy`` up to where it first enters the disc (a goal's tolerance: the rover
    stops there, so the oracle must too)."""
    xy = np.asarray(xy, dtype=np.float64)
    seg = np.hypot(np.diff(xy[:, 0]), np.diff(xy[:, 1]))
    d = np.hypot(xy[:, 0] - centre[0], xy[:, 1] - centre[1])
    inside = np.nonzero(d <= radius_m)[0]
    if inside.size == 0:
        return float(seg.sum())
    i = int(inside[0])
    if i == 0:
        return 0.0
    # the crossing on segment i-1 .. i: solve |p + t (q - p) - c| = r for t in [0, 1]
    p, q = xy[i - 1], xy[i]
    v, w = q - p, p - np.asarray(centre[:2], dtype=np.float64)
    A, B, C = float(v @ v), 2.0 * float(v @ w), float(w @ w) - radius_m * radius_m
    disc = max(B * B - 4.0 * A * C, 0.0)
    t = min(max((-B - math.sqrt(disc)) / (2.0 * A), 0.0), 1.0) if A > 0 else 0.0
    return float(seg[:i - 1].sum() + t * seg[i - 1])


#: The true terrain must be free of hazards at least this far around the start (beyond the rover radius).
START_CLEAR_M = 0.2


def start_clear_m(profile) -> float:
    """How far around the start the true terrain must be free of hazards (beyond the rover radius): out to
    where the profile's cameras first see the ground, and at least :data:`START_CLEAR_M`."""
    from nav.executive import blind_distance_m

    return max(START_CLEAR_M, blind_distance_m(profile))


def _lethal_near(cm, x: float, y: float, radius_m: float):
    """The lethal cell of ``cm`` nearest (x, y) within ``radius_m`` (row, col), or None."""
    cs = cm.cell_size_m
    r, c = (int(v) for v in cm.terrain.world_to_cell((x, y)))
    k = int(math.ceil(radius_m / cs))
    rows, cols = cm.shape
    r0, r1, c0, c1 = max(r - k, 0), min(r + k + 1, rows), max(c - k, 0), min(c + k + 1, cols)
    rr, cc = np.nonzero(~np.isfinite(cm.cost[r0:r1, c0:c1]))
    if rr.size == 0:
        return None
    ox, oy = cm.terrain.origin_xy_m
    d = np.hypot(ox + (cc + c0 + 0.5) * cs - x, oy + (rr + r0 + 0.5) * cs - y)
    i = int(np.argmin(d))
    return (int(rr[i] + r0), int(cc[i] + c0)) if d[i] <= radius_m else None


# ============================================================================ backends
class _Backend:
    """A rover to drive (``rover``: a drivers.base.Rover), a clock to step and the simulator (``sim_rover``,
    for truth; ``None`` on hardware)."""

    def __init__(self, rover, *, advance: Callable[[float], None], now: Callable[[], float], sim_rover=None,
                 real_time: bool = False):
        self.rover = rover
        self.advance = advance
        self.now = now
        self.sim_rover = sim_rover
        self.real_time = real_time

    def truth_lock(self):
        """Held while reading the simulator (a paced backend moves the world from another thread)."""
        return contextlib.nullcontext()

    def inject(self, kind: str, value, duration_s: float) -> bool:
        """Link-level faults (none in process: the simulator's hooks handle the rest)."""
        return False

    def start_pose(self, T_nominal) -> np.ndarray:
        """The pose the estimate starts from: the settled true pose in simulation (a rover knows its
        attitude from gravity and is placed at a surveyed start), the scenario's start otherwise."""
        if self.sim_rover is None:
            return np.asarray(T_nominal, dtype=np.float64)
        from sim.frames import T_world_body

        s = self.sim_rover.truth()
        return T_world_body(s.x_m, s.y_m, s.z_m, s.yaw_rad, s.pitch_rad, s.roll_rad)

    def close(self):
        try:
            if self.rover.is_open:
                self.rover.stop()
        except Exception as e:   # closing must not mask the traverse's own outcome
            log.warning("stop on close failed: %s", e)
        self.rover.close()


def _make_backend(setup: TraverseSetup, backend: str, port=None, protocol=None) -> _Backend:
    """The rover the loop drives, for a backend name (the seam for sim-serial and serial)."""
    from hil.cli import CliError

    if backend == "sim":
        from sim.sim_rover import SimRover

        sc = setup.scenario
        rover = SimRover(setup.world, setup.profile, x_m=sc.start.x_m, y_m=sc.start.y_m,
                         yaw_rad=math.radians(sc.start.yaw_deg))
        w = setup.world
        return _Backend(rover, advance=w.advance, now=lambda: w.time_s, sim_rover=rover)
    if backend in ("sim-serial", "serial"):
        try:
            from . import backend_serial
        except ImportError as e:
            raise CliError(f"--backend {backend} is not available in this build ({e})") from None
        try:
            if backend == "sim-serial":
                sc = setup.scenario
                return backend_serial.make_sim_serial(setup.world, setup.profile,
                                                      (sc.start.x_m, sc.start.y_m, math.radians(sc.start.yaw_deg)),
                                                      protocol)
            if not port:
                raise CliError("--backend serial needs --port (a device path or URL)")
            return backend_serial.make_serial(setup.profile, port, protocol)
        except ValueError as e:
            raise CliError(str(e)) from None
    raise CliError(f"--backend {backend!r}: must be one of {', '.join(BACKENDS)}")


def _make_perception(kind: str, setup: TraverseSetup, backend: _Backend, *, camera=None, calibration=None, **kw):
    """The perception source of a traverse (see the module docstring for the duck type).

    On the simulator (``backend.sim_rover`` set): ``fast`` (FastDepthSensor + PoseDrift, from the truth) or
    ``rendered`` (the simulator's stereo cameras through VO, EKF and stereo mapping); ``camera`` and
    ``calibration`` are refused (the simulator renders its own cameras).

    On a real rover (no simulator): ``rendered`` only, from ``camera`` — a :class:`drivers.camera.StereoCamera`
    (used as it is), or a source spec for :class:`drivers.stereo_cv.OpenCVStereoCamera`: ``"SRC"`` (one
    side-by-side stream) or ``"LEFT,RIGHT"`` (two cameras; a GStreamer pipeline, holding ``!``, is never split),
    or a sequence of one or two sources — device index, ``/dev/videoN``, video file or URL — rectified with the
    OpenCV stereo ``calibration`` file (none: the input is already rectified, the geometry comes from the
    rover profile). The camera is opened here, before anything is armed, so a bad source or calibration is
    a :class:`hil.cli.CliError`; it is closed with the backend (after the rover is stopped).
    """
    import os

    from hil.cli import CliError

    if backend.sim_rover is not None:
        if camera is not None or calibration is not None:
            what = "--camera" if camera is not None else "--calibration"
            raise CliError(f"{what} is for --backend serial (a real rover): the simulator renders its own cameras")
        if kind == "fast":
            from .perception_fast import FastPerception

            return FastPerception(setup.world, backend.sim_rover, setup.profile, setup.gmap, **kw)
        if kind == "rendered":
            try:
                from .perception_rendered import RenderedPerception
            except ImportError as e:
                raise CliError(f"perception 'rendered' is not available in this build ({e})") from None
            from .perception_rendered import FaultyCamera

            cam = FaultyCamera(backend.sim_rover.stereo_camera())
            per = RenderedPerception(cam, setup.profile, planet=setup.world.planet, **kw)
            per._traverse_camera = cam       # for camera_blackout / vo_dropout faults (see _FaultRunner)
            return per
        raise CliError(f"perception {kind!r}: must be 'fast' or 'rendered'")

    # ---- a real rover: stereo cameras through VO, EKF and stereo mapping; no truth anywhere
    if kind == "fast":
        raise CliError("perception 'fast' samples the simulator's true terrain and pose, which a real rover does not "
                       "have: use --perception rendered (with --camera)")
    if kind != "rendered":
        raise CliError(f"perception {kind!r}: must be 'rendered' on a real rover")
    if camera is None:
        raise CliError("--backend serial needs --camera SRC[,RIGHT] (a stereo camera: device index, /dev/videoN, "
                       "video file or URL) and usually --calibration FILE")
    from drivers.camera import StereoCamera

    from .perception_rendered import RenderedPerception

    if isinstance(camera, StereoCamera):
        if calibration is not None:
            raise CliError("calibration is for a camera given as a source spec; a StereoCamera object is "
                           "already calibrated")
        cam = camera
    else:
        if isinstance(camera, str):
            spec = camera.strip()
            sources = [spec] if "!" in spec else [s.strip() for s in spec.split(",")]
        elif isinstance(camera, (int, os.PathLike)):
            sources = [camera]
        elif isinstance(camera, (list, tuple)):
            sources = list(camera)
        else:
            raise CliError(f"--camera {camera!r}: must be a source spec (SRC or LEFT,RIGHT) or a "
                           f"drivers.camera.StereoCamera")
        if not 1 <= len(sources) <= 2 or any(isinstance(s, str) and not s for s in sources):
            raise CliError(f"--camera {camera!r}: give one side-by-side source or two sources LEFT,RIGHT "
                           "(device index, /dev/videoN, video file or URL)")
        try:
            from drivers.stereo_cv import OpenCVStereoCamera, StereoCalibration, load_stereo_calibration
        except ImportError as e:
            raise CliError(f"--camera needs OpenCV (pip install opencv-python-headless): {e}") from None
        if calibration is not None and not isinstance(calibration, StereoCalibration):
            try:
                calibration = load_stereo_calibration(calibration)
            except (ValueError, OSError) as e:      # no such file, not FileStorage, missing key, bad matrix
                raise CliError(f"--calibration: {e}") from None
        try:
            cam = OpenCVStereoCamera(*sources, calibration=calibration, profile=setup.profile,
                                     clock=getattr(backend.rover, "clock", None))
        except (ValueError, TypeError, OSError) as e:     # bad source syntax, rig geometry
            raise CliError(f"--camera {camera}: {e}") from None
    try:
        cam.open()      # before anything is armed: a camera that does not deliver is bad input, not a run
    except (ValueError, OSError) as e:    # PortNotFound, DeviceTimeout, mode != calibration...
        cam.close()
        raise CliError(f"camera {cam.name}: {e}") from None
    try:
        per = RenderedPerception(cam, setup.profile, planet=setup.world.planet, **kw)
    except BaseException:
        cam.close()
        raise
    # The traverse closes the backend when it ends, whatever happens: close the camera with it, after the
    # rover has stopped. (Until run_traverse closes perception sources itself.)
    backend_close = backend.close

    def close_backend_and_camera():
        try:
            backend_close()
        finally:
            cam.close()

    backend.close = close_backend_and_camera
    return per


# ============================================================================ faults
class _FaultRunner:
    """The scenario's fault schedule, applied to the simulator's hooks."""

    def __init__(self, faults, backend: _Backend, perception):
        self.specs = list(faults)
        self.backend = backend
        self.perception = perception
        self.active: dict[int, float] = {}       # index -> end time (inf = until the end)
        self.started: set[int] = set()
        self.records = [{"kind": f.kind, "at_s": float(f.at_s), "survived": None, "end_s": None}
                        for f in self.specs]
        self.link_level: set = set()

    def update(self, t: float, events: list) -> None:
        for i, f in enumerate(self.specs):
            if i not in self.started and t >= f.at_s:
                self.started.add(i)
                end = f.at_s + f.duration_s if f.duration_s > 0 else math.inf
                self.active[i] = end
                self.records[i]["end_s"] = end
                self._apply(f, True)
                events.append((t, "fault_start", {"kind": f.kind, "duration_s": f.duration_s, "value": f.value}))
            elif i in self.active and t >= self.active[i]:
                del self.active[i]
                self._apply(f, False)
                events.append((t, "fault_end", {"kind": f.kind}))

    def _apply(self, f, on: bool) -> None:
        from drivers.base import Fault

        kind = f.kind
        if on and self.backend.inject(kind, f.value, f.duration_s):
            self.link_level.add(id(f))
            return
        if id(f) in self.link_level:
            return                      # the backend ends it itself
        sr = self.backend.sim_rover
        if sr is None:
            return
        flag = {"link_loss": Fault.LINK_LOST, "silence": Fault.LINK_LOST, "estop": Fault.ESTOP,
                "device_fault": Fault.DEVICE_FAULT, "reboot": Fault.LINK_LOST}.get(kind)
        if flag is not None:
            if on:
                if kind == "reboot":
                    sr.reset_encoders()
                sr.inject_fault(flag)
            else:
                sr.clear_fault(flag)
        elif kind == "slip":
            sr.inject_slip(float(f.value) if f.value is not None else 0.6, None) if on else sr.inject_slip(None)
        elif kind == "push":
            if on:
                v = float(f.value) if f.value is not None else 0.1
                yaw = sr.truth().yaw_rad
                dur = f.duration_s if f.duration_s > 0 else 1.0
                sr.push(-v * math.sin(yaw), v * math.cos(yaw), dur)     # sideways, to the rover's left
        elif kind == "encoder_freeze":
            sr.freeze_encoder(int(f.value) if f.value is not None else 0, on)
        elif kind == "battery_low":
            if on:
                sr.drain_battery(float(f.value) if f.value is not None else 0.05)
        elif kind in ("vo_dropout", "camera_blackout"):
            cam = getattr(self.perception, "_traverse_camera", None)
            if cam is not None:
                cam.set_blackout("black" if on else None)
            elif hasattr(self.perception, "set_blackout"):
                self.perception.set_blackout(on)
        elif kind == "latency":
            pass    # the in-process backend has no link to delay (sim-serial models it)

    def finish(self, end_t: float, outcome: str) -> list:
        out = []
        for rec in self.records:
            if rec["end_s"] is None:
                rec["survived"] = None            # never injected
            elif outcome == "reached":
                rec["survived"] = True
            else:
                rec["survived"] = outcome not in ("fault", "error") and end_t > min(rec["end_s"], end_t - 1e-9) + 5.0
            out.append({"kind": rec["kind"], "at_s": rec["at_s"], "survived": rec["survived"]})
        return out


# ============================================================================ the per-tick loop
class LoopRecorder:
    """What :class:`TraverseLoop` reports, hook by hook (this base class ignores everything).

    ``i`` is the tick index (0 for the first control tick; ``-1`` before it, e.g. for the first frame
    :meth:`start` captures), ``t`` the loop's time in seconds. :mod:`hil.replay` records these in the
    traverse log (``/replay/*`` channels) and, during a replay, in memory, so the two can be compared.
    """

    def tick(self, i: int, t: float, tm, twist: tuple) -> None:
        """A control tick begins: the telemetry read and the wheels' body twist ``(vx, vy, wz)``."""

    def pose(self, i: int, t: float, T_world_body, cov) -> None:
        """The pose estimate the executive gets this tick (after the perception saw the telemetry)."""

    def fault(self, i: int, t: float, kind: str, detail: dict) -> None:
        """``"pause"`` / ``"resume"`` for stopping driver faults."""

    def image_taken(self, i: int, t: float, obs) -> None:
        """A picture was taken (``obs``: an :class:`Observation` or ``None``)."""

    def image_delivered(self, i: int, t: float) -> None:
        """The picture's map update reached the executive (after the modelled ``image_s``)."""

    def plan_requested(self, i: int, t: float, res) -> None:
        """A plan was computed (a :class:`nav.executive.PlanResult`), to be installed ``plan_s`` later."""

    def plan_installed(self, i: int, t: float, res) -> None:
        """The plan was handed to the executive."""

    def command(self, i: int, t: float, vcmd: tuple, cmd) -> None:
        """The twist sent this tick (``(0, 0)`` with a stop while paused) and the executive's command."""

    def finished(self, i: int, t: float, outcome: str, reason: str) -> None:
        """The executive finished (reached or failed) on this tick; no command was sent."""


class TickDecision(NamedTuple):
    """What :meth:`TraverseLoop.decide` tells the rover: ``twist`` ``(vx_mps, wz_radps)`` to send,
    ``stop`` (send a stop instead: paused), ``finished`` (the executive ended: stop and end the traverse),
    and the executive's :class:`nav.executive.ExecCommand`."""
    twist: tuple
    stop: bool
    finished: bool
    cmd: object


class TraverseLoop:
    """The executive's side of one control tick, shared by :func:`run_traverse` (live) and
    :func:`hil.replay.replay` (recorded inputs), so a replay runs exactly the code a traverse ran.

    Per tick the caller does::

        T_est = loop.sense(t, tm)                   # perception sees the telemetry; the pose estimate
        act = loop.check_faults(t, stopping, events)   # "pause" / "end" / "resume" / ""
        ...                                         # (the caller stops or re-arms the rover; resume())
        d = loop.decide(t, T_est)                   # images and plans on the modelled schedule; the twist

    The loop owns the modelled schedule (an image's map update arrives ``timing.image_s`` after the
    picture, a plan ``timing.plan_s`` after it was requested) and the pause state; the rover, the truth,
    the limits and the display log stay with the caller.

    Parameters
    ----------
    ex : nav.executive.NavExecutive
    perception : the perception-source duck type (``on_telemetry``, ``pose``, ``observe``)
    gmap : the executive's map (local maps are built on its lattice)
    layout : drivers.kinematics.WheelLayout
        Wheel speeds and steering to the body twist.
    timing : TimingModel
    resume_after_fault : bool
        Whether a stopping driver fault pauses (and the traverse resumes when it clears) or ends it.
    recorder : LoopRecorder, optional
    perceive_lock : callable returning a context manager, optional
        Held while the perception takes a picture (a paced simulator moves the world from another thread).
    on_image : callable(ms), optional
        Called with the host time a picture took (benchmarks).
    on_install : callable(t, PlanResult), optional
        Called when a plan is installed (the display log).
    """

    def __init__(self, ex, perception, gmap, layout, timing: TimingModel, *, resume_after_fault: bool = True,
                 recorder: LoopRecorder | None = None, perceive_lock=None, on_image=None, on_install=None):
        self.ex = ex
        self.perception = perception
        self.gmap = gmap
        self.layout = layout
        self.timing = timing
        self.resume_after_fault = bool(resume_after_fault)
        self.rec = recorder if recorder is not None else LoopRecorder()
        self._lock = perceive_lock if perceive_lock is not None else contextlib.nullcontext
        self._on_image = on_image
        self._on_install = on_install
        self.i = -1                 # tick index
        self.image_due = None       # (t_ready, observation)
        self.plan_due = None        # (t_ready, PlanResult)
        self.paused_for = ""

    def sense(self, t: float, tm) -> np.ndarray:
        """Start tick ``t``: the perception sees the telemetry ``tm``; returns the pose estimate (4x4)."""
        self.i += 1
        vx, vy, wz = self.layout.forward(tm.wheel_speed_radps, tm.steer_rad)
        self.rec.tick(self.i, t, tm, (vx, vy, wz))
        self.perception.on_telemetry(tm, vx, vy, wz)
        T_est, cov = self.perception.pose()
        self.rec.pose(self.i, t, T_est, cov)
        return T_est

    def check_faults(self, t: float, stopping, events: list) -> str:
        """Stopping driver faults (``tm.faults & STOPPING_FAULTS``): ``"pause"`` (the executive pauses: stop
        the rover), ``"end"`` (the same, and the scenario does not resume after faults: end the traverse),
        ``"resume"`` (they cleared: re-arm the rover, then call :meth:`resume`) or ``""``."""
        if stopping:
            if not self.paused_for:
                self.paused_for = stopping.describe()
                self.ex.pause(f"driver fault: {self.paused_for}")
                events.append((t, "pause", {"faults": self.paused_for}))
                self.rec.fault(self.i, t, "pause", {"faults": self.paused_for})
                return "pause" if self.resume_after_fault else "end"
        elif self.paused_for:
            return "resume"
        return ""

    def resume(self, t: float, events: list) -> None:
        """The faults cleared and the rover is armed again: image and plan afresh."""
        events.append((t, "resume", {"after": self.paused_for}))
        self.rec.fault(self.i, t, "resume", {"after": self.paused_for})
        self.paused_for = ""
        self.ex.resume()
        self.image_due = self.plan_due = None

    def _observe(self, t, obs) -> None:
        self.rec.image_delivered(self.i, t)
        self.ex.observe(None if obs is None else obs.local, t_s=t, odometer_m=self.ex.odometer_m,
                        near=None if obs is None else obs.near)

    def _install(self, t, res) -> None:
        self.ex.install(res, t)
        self.rec.plan_installed(self.i, t, res)
        if self._on_install is not None:
            self._on_install(t, res)

    def _finished(self, t, cmd) -> TickDecision:
        self.rec.finished(self.i, t, self.ex.outcome, self.ex.reason)
        return TickDecision((0.0, 0.0), True, True, cmd)

    def decide(self, t: float, T_est) -> TickDecision:
        """Deliver the images and plans whose time has come, step the executive, take a picture or
        request a plan when it asks; the twist to send."""
        ex, timing = self.ex, self.timing
        if self.image_due is not None and t >= self.image_due[0] - 1e-9:
            obs = self.image_due[1]
            self.image_due = None
            self._observe(t, obs)
        if self.plan_due is not None and t >= self.plan_due[0] - 1e-9:
            res = self.plan_due[1]
            self.plan_due = None
            self._install(t, res)
        cmd = ex.step(t, T_est, _tilt(T_est))
        if cmd.finished:
            return self._finished(t, cmd)
        if cmd.want_image and self.image_due is None:
            w0 = time.perf_counter()
            with self._lock():
                obs = self.perception.observe(t, self.gmap)
            if self._on_image is not None:
                self._on_image(1e3 * (time.perf_counter() - w0))
            self.rec.image_taken(self.i, t, obs)
            self.image_due = (t + timing.image_s, obs)
            if timing.image_s <= 0:
                self.image_due = None
                self._observe(t, obs)
                cmd = ex.step(t, T_est, _tilt(T_est))
        if cmd.want_plan and self.plan_due is None:
            res = ex.plan(T_est, t)
            self.rec.plan_requested(self.i, t, res)
            self.plan_due = (t + timing.plan_s, res)
            if timing.plan_s <= 0:
                self.plan_due = None
                self._install(t, res)
                cmd = ex.step(t, T_est, _tilt(T_est))
                if cmd.finished:
                    return self._finished(t, cmd)
        if self.paused_for or cmd.state == "paused":
            d = TickDecision((0.0, 0.0), True, False, cmd)
        else:
            d = TickDecision(cmd.twist, False, False, cmd)
        self.rec.command(self.i, t, d.twist, cmd)
        return d


# ============================================================================ the runner
def run_traverse(scenario, *, backend: str = "sim", out_dir=None, log: bool = True, png: bool = True,
                 port=None, protocol=None, progress: Callable[[str], None] | None = None,
                 exec_params=None, timing: TimingModel | None = None,
                 confirm: Callable[[str], bool] | None = None, map_cell_m: float = 0.1,
                 perception_kw: dict | None = None) -> TraverseSummary:
    """Run one traverse and score it (see the module docstring).

    Parameters
    ----------
    scenario : hil.scenario.Scenario
        Use ``scenario.with_overrides(terrain__seed=..., mode=...)`` for variations.
    backend : ``"sim"`` (``"sim-serial"``, ``"serial"``: not built yet)
    out_dir : path, optional
        Folder for summary.json, traverse.png and traverse.mcap (nothing written when ``None``).
    log, png : bool
        Write the MCAP log / the PNG (when ``out_dir`` is given).
    port, protocol : str, optional
        For the serial backends.
    progress : callable, optional
        Called with one-line progress texts.
    exec_params : nav.executive.ExecParams, optional
        Executive tunables (the scenario's mode and limits override ``mode``, ``stuck_time_s`` and
        ``max_tilt_deg``).
    timing : TimingModel, optional
    map_cell_m : float
        Cell size of the rover's map (at least the terrain's; see :func:`build_traverse`).
    perception_kw : dict, optional
        Extra keyword arguments of the perception source (e.g. ``width_px`` for fast perception).
    confirm : callable, optional
        Asked (with a sentence saying what will happen) before a real rover is armed; without it, or
        when it returns False, the traverse ends unarmed with outcome ``"error"``.

    Returns
    -------
    TraverseSummary
        Also when the traverse failed; an interrupted traverse (Ctrl-C) returns with outcome ``"error"``
        and reason ``"interrupted"`` after stopping the rover and closing the log.

    Raises
    ------
    nav.ConfigError
        The scenario is inconsistent with its terrain (goal on a hazard...).
    hil.cli.CliError
        Unknown backend or perception.
    """
    from drivers.base import STOPPING_FAULTS
    from nav.executive import ExecParams, NavExecutive

    wall0 = time.perf_counter()
    sc = scenario
    timing = timing or TimingModel()
    setup = build_traverse(sc, map_cell_m=map_cell_m)
    profile = setup.profile
    base = exec_params if exec_params is not None else ExecParams()
    params = dataclasses.replace(base, mode=sc.mode, stuck_time_s=sc.limits.stuck_time_s,
                                 max_tilt_deg=sc.limits.max_tilt_deg if sc.limits.max_tilt_deg is not None
                                 else base.max_tilt_deg)
    out = FsPath(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    bk = _make_backend(setup, backend, port, protocol)
    perception = _make_perception(sc.perception, setup, bk, **(perception_kw or {}))
    ex = NavExecutive(profile, setup.gmap, setup.goals, keep_out=setup.keep_out, params=params)
    faults = _FaultRunner(sc.faults, bk, perception)
    logger = None
    recorder = None
    if out is not None and log:
        from hil.mcaplog import McapLogger
        from hil.replay import McapRecorder

        logger = McapLogger(out / "traverse.mcap", overwrite=True, metadata={
            "scenario": sc.name, "seed": sc.terrain.seed, "backend": backend, "perception": sc.perception,
            "mode": sc.mode, "rover": sc.rover, "planet": sc.planet, "source": sc.source},
            min_interval_s={"/telemetry": 0.5, "/pose/*": 0.5, "/tf": 0.5, "/path/planned": 1.0,
                            "/scene/arcs": 0.5, "/map/known": 15.0, "/camera/*": 1.0})
        # the replay inputs and decisions (hil.replay): every tick, every picture, every plan
        recorder = McapRecorder(logger, scenario=sc, backend=backend, setup=setup, params=params, timing=timing,
                                perception=perception)
    st = _RunState()
    events: list = []
    dt = 1.0 / timing.control_hz
    outcome, reason = "", ""
    rover = bk.rover

    def on_image(ms: float) -> None:
        st.wall["perceive_ms"].append(ms)
        st.images += 1

    loop = TraverseLoop(ex, perception, setup.gmap, rover.layout, timing, resume_after_fault=sc.resume_after_fault,
                        recorder=recorder, perceive_lock=lambda: bk.truth_lock(), on_image=on_image,
                        on_install=(lambda t_, res_: _log_plan(logger, t_, res_, ex)) if logger is not None else None)
    try:
        rover.open()
        if bk.sim_rover is None:     # a real rover: energise only when the operator says so
            prompt = (f"arm {profile.name} on {port} ({protocol}) and drive scenario {sc.name!r} autonomously "
                      f"(up to {setup.straight_length_m * sc.limits.max_distance_factor:.0f} m)?")
            if confirm is None or not confirm(prompt):
                raise _NotConfirmed("not armed: the operator did not confirm")
        rover.arm()
        t0 = bk.now()
        T_start = bk.start_pose(setup.start_T)
        if recorder is not None:
            recorder.start(0.0, T_start)
        perception.start(0.0, T_start)
        distance_limit = sc.limits.max_distance_factor * setup.straight_length_m
        last_progress = -math.inf
        if logger is not None and setup.oracle_xy_m is not None:
            logger.path("/path/oracle", 0.0, setup.oracle_xy_m)
        while True:
            t = bk.now() - t0
            tm = rover.read_telemetry()
            with bk.truth_lock():
                T_est = loop.sense(t, tm)
                faults.update(t, events)
                st.score(t, setup, bk, T_est)
            if logger is not None:
                logger.telemetry(t, tm)
                logger.pose("/pose/estimated", t, T_est)
                if st.T_true is not None:
                    logger.pose("/pose/true", t, st.T_true)
                    recorder.truth(t, st.T_true)
                logger.transform(t, "world", "body", T_est)
            # stopping faults from the driver: pause (and resume when they clear)
            act = loop.check_faults(t, tm.faults & STOPPING_FAULTS, events)
            if act in ("pause", "end"):
                _stop(rover)
                if act == "end":
                    outcome, reason = "fault", f"driver fault ({loop.paused_for}) at t={t:.1f} s; the scenario " \
                                               f"does not resume after faults"
                    break
            elif act == "resume":
                if not rover.armed:
                    rover.arm()
                loop.resume(t, events)
            # limits
            if t > sc.limits.max_time_s:
                outcome, reason = "timeout", f"max_time_s {sc.limits.max_time_s:g} s passed " \
                                             f"({st.path_m:.1f} m driven, goal {ex.goal_index} of {len(setup.goals)})"
                break
            if st.path_m > distance_limit:
                outcome, reason = "distance_limit", (f"drove {st.path_m:.1f} m > max_distance_factor "
                                                     f"{sc.limits.max_distance_factor:g} x {setup.straight_length_m:.1f} m")
                break
            # images and plans on the modelled schedule; the executive's twist
            d = loop.decide(t, T_est)
            cmd = d.cmd
            if d.finished:
                outcome, reason = ex.outcome, ex.reason
                _stop(rover)
                break
            # command the rover
            if d.stop:
                _stop(rover)
            else:
                rover.set_twist(*d.twist)
            vcmd = d.twist
            st.commanded.append(vcmd)
            if logger is not None:
                logger.command(t, vcmd[0], vcmd[1], source="executive")
                for e in events:
                    logger.event(e[0], e[1], e[2])
                for e in ex.events[st.n_ex_events:]:
                    logger.event(e[0] if e[0] is not None else t, e[1], e[2])
                if logger.due("/map/known", t):
                    _log_map(logger, t, ex)
            st.n_ex_events = len(ex.events)
            st.all_events.extend(events)
            events.clear()
            if progress is not None and t - last_progress >= 10.0:
                last_progress = t
                gx, gy, _ = setup.goals[min(ex.goal_index, len(setup.goals) - 1)]
                progress(f"t={t:6.1f} s  driven {st.path_m:5.1f} m  to goal {math.hypot(gx - T_est[0, 3], gy - T_est[1, 3]):5.1f} m"
                         f"  {cmd.state}")
            bk.advance(dt)
    except KeyboardInterrupt:
        outcome, reason = "error", "interrupted"
        _stop(rover)
    except _NotConfirmed as e:
        outcome, reason = "error", str(e)
    except Exception as e:
        outcome, reason = "error", f"{type(e).__name__}: {e}"
        _log.exception("traverse failed")
        _stop(rover)
    finally:
        try:
            bk.close()
        except Exception as e:
            _log.warning("closing the backend failed: %s", e)
    t_end = st.t_last
    summary = _summarise(sc, backend, setup, st, ex, perception, faults, outcome, reason, t_end,
                         time.perf_counter() - wall0, out)
    if out is not None:
        from hil.report import write_json

        write_json(out / "summary.json", summary.to_dict())
        if png:
            try:
                from .traverse_report import render_traverse_png

                render_traverse_png(out / "traverse.png", setup, ex, st.true_xy(), st.est_xy(), summary)
            except Exception as e:   # a picture must never lose the summary
                _log.warning("could not draw traverse.png: %s", e)
        if ex.proof is not None:
            _write_proof(out, ex, setup, png)
    if logger is not None:
        try:
            recorder.end(loop.i, t_end, outcome, reason, ex)
            for e in events:
                logger.event(e[0], e[1], e[2])
            for e in ex.events[st.n_ex_events:]:
                logger.event(e[0] if e[0] is not None else t_end, e[1], e[2])
            if outcome in ("timeout", "distance_limit", "fault", "error"):
                logger.event(t_end, outcome, {"reason": reason})
            if st.true_xy() is not None and len(st.true_xy()) > 1:
                logger.path("/path/driven", t_end, st.true_xy())
                logger.path("/path/estimated", t_end, st.est_xy())
            _log_map(logger, t_end, ex, force=True)
            logger.json("/traverse/summary", t_end, "rovernav.TraverseSummary", summary.to_dict())
        finally:
            logger.close()
    return summary


def _write_proof(out, ex, setup, png) -> None:
    """The rover's cost map when it declared the goal unreachable: proof.npz (+ proof.png)."""
    cm = ex.proof
    np.savez_compressed(out / "unreachable_costmap.npz", elevation_m=cm.terrain.elevation_m, cost=cm.cost,
                        reason=cm.reason, observed=ex.observed, cell_size_m=cm.cell_size_m,
                        origin_xy_m=np.array(cm.terrain.origin_xy_m))
    if png:
        try:
            from hil.report import render_plan_png

            sc = setup.scenario
            g = setup.goals[min(ex.goal_index, len(setup.goals) - 1)]
            render_plan_png(out / "unreachable.png", cm, None, cm.terrain.world_to_grid(ex.last_xy),
                            cm.terrain.world_to_grid(g[:2]), title=f"{sc.name}: the rover's map when it stopped "
                                                                   f"(goal unreachable)")
        except Exception as e:
            log.warning("could not draw unreachable.png: %s", e)


class _NotConfirmed(Exception):
    """The operator did not confirm arming a real rover."""


def _stop(rover) -> None:
    try:
        if rover.is_open:
            rover.stop()
    except Exception as e:
        log.warning("stop failed: %s", e)


def _tilt(T) -> float:
    nz = float(np.clip(T[2, 2], -1.0, 1.0))
    return math.acos(nz)


def _log_plan(logger, t, res, ex) -> None:
    if logger is None:
        return
    if res.global_xy_m is not None and len(res.global_xy_m) > 1:
        logger.path("/path/planned", t, res.global_xy_m[::4] if len(res.global_xy_m) > 400 else res.global_xy_m)
    lp = res.local
    if lp:
        logger.scene("/scene/arcs", t, lines=[lp.xy_m])
    elif lp is not None:
        logger.event(t, "local_plan_failed", {"reason": str(lp)})
    logger.event(t, "plan", {k: float(v) for k, v in res.timings_ms.items()})


def _log_map(logger, t, ex, force: bool = False) -> None:
    """The known map (heights, seen cells, cost) at 4x coarser cells."""
    if not force and not logger.due("/map/known", t):
        return
    k = 4
    cm = ex.costmap()
    rows, cols = cm.shape
    rr, cc = rows // k * k, cols // k * k
    if rr == 0 or cc == 0:
        return
    z = cm.terrain.elevation_m[:rr, :cc].reshape(rr // k, k, cc // k, k)
    fin = np.isfinite(z)
    n = fin.sum(axis=(1, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        zmean = np.where(n > 0, np.where(fin, z, 0.0).sum(axis=(1, 3)) / np.maximum(n, 1), np.nan)
    cost = cm.cost[:rr, :cc].reshape(rr // k, k, cc // k, k).max(axis=(1, 3))
    seen = ex.observed[:rr, :cc].reshape(rr // k, k, cc // k, k).mean(axis=(1, 3)).astype(np.float32)
    logger.grid("/map/known", t, ({"elevation_m": zmean.astype(np.float32), "cost": cost.astype(np.float32),
                                   "seen": seen}, cm.terrain.origin_xy_m, cm.cell_size_m * k),
                min_interval_s=0.0 if force else None)


class _RunState:
    """What the loop accumulates for scoring."""

    def __init__(self):
        self.t_last = 0.0
        self.path_m = 0.0
        self.xy_true: list = []
        self.xy_est: list = []
        self.T_true = None
        self.violations = 0
        self.in_lethal = False
        self.min_clear = math.inf
        self.max_tilt = 0.0
        self.loc_err = []
        self.moving_ticks = 0
        self.ticks = 0
        self.images = 0
        self.commanded: list = []
        self.wall = {"perceive_ms": []}
        self.n_ex_events = 0
        self.all_events: list = []
        self.violation_at: list = []

    def score(self, t, setup, bk, T_est):
        from sim.frames import T_world_body

        self.t_last = t
        self.ticks += 1
        x, y = float(T_est[0, 3]), float(T_est[1, 3])
        sr = bk.sim_rover
        if sr is None and self.xy_est:            # no truth (hardware): the estimated distance
            self.path_m += math.hypot(x - self.xy_est[-1][0], y - self.xy_est[-1][1])
        self.xy_est.append((x, y))
        if sr is None:
            return
        s = sr.truth()
        self.T_true = T_world_body(s.x_m, s.y_m, s.z_m, s.yaw_rad, s.pitch_rad, s.roll_rad)
        if self.xy_true:
            px, py = self.xy_true[-1]
            self.path_m += math.hypot(s.x_m - px, s.y_m - py)
        self.xy_true.append((s.x_m, s.y_m))
        cm = setup.true_costmap
        r, c = (int(v) for v in cm.terrain.world_to_cell((s.x_m, s.y_m)))
        inside = 0 <= r < cm.shape[0] and 0 <= c < cm.shape[1]
        lethal = (not inside) or not np.isfinite(cm.cost[r, c])
        if lethal and not self.in_lethal:
            self.violations += 1
            self.violation_at.append((t, s.x_m, s.y_m, cm.explain((r, c)) if inside else "off the map"))
        self.in_lethal = lethal
        if math.isfinite(s.clearance_m):
            self.min_clear = min(self.min_clear, s.clearance_m)
        self.max_tilt = max(self.max_tilt, s.tilt_rad)
        self.loc_err.append(math.hypot(T_est[0, 3] - s.x_m, T_est[1, 3] - s.y_m))
        vmax = sr.profile.drive.max_speed_mps
        if math.hypot(s.vx_mps, s.vy_mps) > 0.1 * vmax or abs(s.wz_radps) > math.radians(5.0):
            self.moving_ticks += 1

    def true_xy(self):
        return np.array(self.xy_true) if self.xy_true else None

    def est_xy(self):
        return np.array(self.xy_est) if self.xy_est else None


def _summarise(sc, backend, setup, st, ex, perception, faults, outcome, reason, t_end, wall_s, out):
    reached = outcome == "reached"
    oracle = setup.oracle_length_m
    truth = st.T_true is not None        # False on hardware: no true map, no true path
    if not truth:
        oracle = None
    ratio = (st.path_m / oracle) if (oracle and oracle > 0 and reached) else None
    pstats = perception.stats() if hasattr(perception, "stats") else {}
    fault_list = faults.finish(t_end, outcome)
    pc = sc.pass_criteria
    failed = []
    if pc.reach_goal and not reached:
        failed.append(f"reach_goal: {outcome}: {reason}")
    if st.violations > pc.max_hazard_violations:
        where = "; ".join(f"t={t:.1f} s (x={x:.2f}, y={y:.2f}): {why}" for t, x, y, why in st.violation_at[:3])
        failed.append(f"max_hazard_violations: {st.violations} > {pc.max_hazard_violations} ({where})")
    if pc.max_path_ratio is not None and reached:
        if ratio is None:
            failed.append("max_path_ratio: no oracle path on the true map")
        elif ratio > pc.max_path_ratio:
            failed.append(f"max_path_ratio: {ratio:.3f} > {pc.max_path_ratio:g}")
    loc_final = st.loc_err[-1] if st.loc_err else None
    if pc.max_localisation_error_m is not None and loc_final is not None and loc_final > pc.max_localisation_error_m:
        failed.append(f"max_localisation_error_m: {loc_final:.3f} > {pc.max_localisation_error_m:g}")
    if pc.max_time_s is not None and t_end > pc.max_time_s:
        failed.append(f"max_time_s: {t_end:.1f} > {pc.max_time_s:g}")
    if outcome == "error" and not any(f.startswith("reach_goal") for f in failed):
        failed.append(f"error: {reason}")
    timings = {k: (float(np.median(v)) if v else None) for k, v in st.wall.items()}
    timings.update({k: v for k, v in ex.summary().items() if k.endswith("_median")})
    timings["images"] = st.images
    timings["plans"] = len(ex.timings)
    cross = ex.summary().get("max_cross_track_m")
    return TraverseSummary(
        scenario=sc.name, seed=int(sc.terrain.seed), backend=backend, perception=sc.perception, mode=sc.mode,
        reached=reached, outcome=outcome or "error", reason=reason, distance_m=float(st.path_m), time_s=float(t_end),
        speed_m_per_h=float(st.path_m / t_end * 3600.0) if t_end > 0 else 0.0,
        moving_fraction=float(st.moving_ticks / st.ticks) if st.ticks else 0.0,
        path_length_m=float(st.path_m), oracle_length_m=oracle, path_ratio=ratio,
        hazard_violations=int(st.violations) if truth else None,
        min_clearance_m=float(st.min_clear) if math.isfinite(st.min_clear) else None,
        max_tilt_deg=float(math.degrees(st.max_tilt)) if st.T_true is not None else None,
        loc_error_final_m=loc_final, loc_error_max_m=float(max(st.loc_err)) if st.loc_err else None,
        vo_convergence=pstats.get("vo_convergence"), faults=fault_list, passed=not failed, failed_criteria=failed,
        wall_time_s=float(wall_s), out_dir=str(out) if out is not None else None, timings=timings,
        executive=dict(ex.summary(), max_cross_track_m=cross), perception_stats=pstats)
