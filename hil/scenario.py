"""Traverse scenarios: what to drive over, from where to where, what goes wrong, and what counts as a pass.

A scenario is one YAML file (``configs/scenarios/*.yaml``, or any path), validated once into frozen
dataclasses with the same rules and error messages as rover profiles (file, dotted key, value, rule, line)::

    name: quick
    rover: osr                       # packaged profile name or YAML path
    planet: mars
    terrain:                         # generated (preset + seed + overrides) or a DEM file
      preset: mars                   # mars | moon | earth_yard  (ignored when dem is given)
      seed: 3
      size_m: 24
      rock_cfa: 0.07                 # optional overrides of the preset
    start: {x_m: 4, y_m: 12, yaw_deg: 0}
    goal: {x_m: 14, y_m: 12, tolerance_m: 0.5}
    waypoints: []                    # visited in order before the goal
    keep_out: [{x_m: 9, y_m: 14, radius_m: 1.0}]
    prior: {kind: none}              # none | orbital (the true DEM averaged to resolution_m; rocks unresolved)
    perception: fast                 # fast | rendered
    mode: drive_while_planning       # stop_and_go | drive_while_planning
    limits: {max_time_s: 300}
    faults: [{at_s: 20, kind: link_loss, duration_s: 2}]
    pass_criteria: {reach_goal: true, max_hazard_violations: 0, max_path_ratio: 1.5}

Relative ``dem`` paths are resolved against the scenario file's folder. Cross-field rules checked here:
start, goal, waypoints and keep-out zones inside a generated terrain, the start not inside a keep-out zone,
the goal not at the start, fault times ordered. Rules that need the terrain itself (goal on a hazard) are
checked when the traverse is built, with the reason and the place.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

from nav.config import _compose, load_yaml_config, rule
from nav.errors import ConfigError

__all__ = ["Scenario", "TerrainSpec", "StartPose", "Goal", "KeepOut", "Prior", "Limits", "FaultSpec",
           "PassCriteria", "load_scenario", "scenario_path", "FAULT_KINDS"]

#: Faults a scenario can schedule (the harness maps each onto the backend's hook or fault injector).
FAULT_KINDS = ("link_loss", "silence", "estop", "device_fault", "slip", "push", "encoder_freeze",
               "battery_low", "vo_dropout", "camera_blackout", "reboot", "latency")


@dataclass(frozen=True, kw_only=True)
class TerrainSpec:
    preset: str = rule("mars", choices=("mars", "moon", "earth_yard"), doc="generated terrain family")
    dem: str = rule("", doc="DEM file instead of a generated terrain (relative to the scenario file)")
    seed: int = rule(0, ge=0, le=2**31 - 1)
    size_m: float = rule(40.0, gt=2, le=4000, doc="side of a generated square terrain")
    cell_size_m: float = rule(0.05, gt=0.005, le=5.0)
    rock_cfa: float | None = rule(None, ge=0, lt=0.5, doc="Golombek-Rapp rock abundance k (preset's if unset)")
    relief_rms_m: float | None = rule(None, ge=0, le=50)
    crater_density_per_km2: float | None = rule(None, ge=0, le=1e7)
    clear_radius_m: float = rule(1.5, ge=0, le=20, doc="start and goal pads kept free of rocks and craters")


@dataclass(frozen=True, kw_only=True)
class StartPose:
    x_m: float = rule()
    y_m: float = rule()
    yaw_deg: float = rule(0.0, ge=-360, le=360, doc="heading, counter-clockwise from east")


@dataclass(frozen=True, kw_only=True)
class Goal:
    x_m: float = rule()
    y_m: float = rule()
    tolerance_m: float = rule(0.5, gt=0, le=50)


@dataclass(frozen=True, kw_only=True)
class KeepOut:
    x_m: float = rule()
    y_m: float = rule()
    radius_m: float = rule(gt=0, le=1000)


@dataclass(frozen=True, kw_only=True)
class Prior:
    kind: str = rule("none", choices=("none", "orbital"))
    resolution_m: float = rule(1.0, gt=0, le=100, doc="orbital map cell size (HiRISE-class: ~1 m)")


@dataclass(frozen=True, kw_only=True)
class Limits:
    max_time_s: float = rule(600.0, gt=0, le=1e6, doc="simulated (or wall) seconds before giving up")
    max_distance_factor: float = rule(4.0, gt=1, le=100, doc="give up after this times the straight-line distance")
    max_tilt_deg: float | None = rule(None, gt=0, lt=90, doc="tilt limit (profile's hazards.max_tilt_deg if unset)")
    stuck_time_s: float = rule(20.0, gt=0, le=3600, doc="commanded motion without progress for this long = stuck")


@dataclass(frozen=True, kw_only=True)
class FaultSpec:
    at_s: float = rule(ge=0, doc="traverse time the fault starts")
    kind: str = rule(choices=FAULT_KINDS)
    duration_s: float = rule(0.0, ge=0, le=1e5, doc="0 = until cleared by the operator / the end")
    value: float | None = rule(None, doc="kind-specific magnitude (slip ratio, push speed, wheel index...)")


@dataclass(frozen=True, kw_only=True)
class PassCriteria:
    reach_goal: bool = rule(True)
    max_hazard_violations: int = rule(0, ge=0)
    max_path_ratio: float | None = rule(None, ge=1, doc="driven path / oracle path on the true map")
    max_localisation_error_m: float | None = rule(None, gt=0)
    max_time_s: float | None = rule(None, gt=0)


@dataclass(frozen=True, kw_only=True)
class Scenario:
    name: str = rule()
    description: str = rule("")
    rover: str = rule("osr")
    planet: str = rule("mars")
    terrain: TerrainSpec = rule(TerrainSpec())
    start: StartPose = rule()
    goal: Goal | None = rule(None)
    waypoints: tuple[Goal, ...] = rule(())
    keep_out: tuple[KeepOut, ...] = rule(())
    prior: Prior = rule(Prior())
    perception: str = rule("fast", choices=("fast", "rendered"))
    mode: str = rule("drive_while_planning", choices=("stop_and_go", "drive_while_planning"))
    limits: Limits = rule(Limits())
    faults: tuple[FaultSpec, ...] = rule(())
    resume_after_fault: bool = rule(True, doc="continue the traverse when a fault clears")
    pass_criteria: PassCriteria = rule(PassCriteria())
    source: str = rule("")

    @property
    def goals(self) -> tuple[Goal, ...]:
        """Waypoints then the goal, in visiting order."""
        return self.waypoints + ((self.goal,) if self.goal is not None else ())

    @property
    def dem_path(self) -> Path | None:
        if not self.terrain.dem:
            return None
        p = Path(self.terrain.dem)
        if not p.is_absolute() and self.source:
            p = Path(self.source).parent / p
        return p

    def with_overrides(self, **kw) -> "Scenario":
        """A copy with top-level fields or ``terrain__field`` / ``limits__field`` … replaced (campaigns)."""
        top, nested = {}, {}
        for k, v in kw.items():
            if "__" in k:
                a, b = k.split("__", 1)
                nested.setdefault(a, {})[b] = v
            else:
                top[k] = v
        for a, fields in nested.items():
            top[a] = replace(getattr(self, a), **fields)
        return replace(self, **top)


def scenario_path(name_or_path) -> Path:
    """A packaged scenario name (``"quick"``) or a path to a YAML file."""
    from configs import config_path

    try:
        return config_path("scenarios", name_or_path)
    except FileNotFoundError as e:
        raise ConfigError(name_or_path, "", None, str(e)) from None


def load_scenario(name_or_path) -> Scenario:
    """Load and validate a scenario (see the module docstring); raises :class:`nav.ConfigError`."""
    path = scenario_path(name_or_path)
    sc = load_yaml_config(Scenario, path)
    doc = _compose(path.read_text(encoding="utf-8"), str(path))

    def err(key, value, why):
        raise ConfigError(path, key, value, why, doc.line(key))

    if not sc.goals:
        err("goal", None, "a scenario needs a goal or at least one waypoint")
    if sc.terrain.dem:
        if not sc.dem_path.exists():
            err("terrain.dem", sc.terrain.dem, f"no such file ({sc.dem_path})")
    else:
        size = sc.terrain.size_m
        if size / sc.terrain.cell_size_m > 8192:
            err("terrain.cell_size_m", sc.terrain.cell_size_m,
                f"gives {size / sc.terrain.cell_size_m:.0f} cells across {size:g} m; at most 8192")
        pts = [("start", sc.start.x_m, sc.start.y_m)]
        pts += [("goal", sc.goal.x_m, sc.goal.y_m)] if sc.goal is not None else []
        pts += [(f"waypoints[{i}]", g.x_m, g.y_m) for i, g in enumerate(sc.waypoints)]
        pts += [(f"keep_out[{i}]", k.x_m, k.y_m) for i, k in enumerate(sc.keep_out)]
        for key, x, y in pts:
            if not (0 <= x <= size and 0 <= y <= size):
                err(key, {"x_m": x, "y_m": y}, f"must lie inside the {size:g} m x {size:g} m terrain "
                                                f"(0 <= x, y <= {size:g})")
    first = sc.goals[0]
    if math.hypot(first.x_m - sc.start.x_m, first.y_m - sc.start.y_m) <= first.tolerance_m:
        err("goal" if not sc.waypoints else "waypoints[0]", {"x_m": first.x_m, "y_m": first.y_m},
            f"is within its tolerance ({first.tolerance_m:g} m) of the start: nothing to drive")
    for i, k in enumerate(sc.keep_out):
        if math.hypot(k.x_m - sc.start.x_m, k.y_m - sc.start.y_m) < k.radius_m:
            err(f"keep_out[{i}]", {"x_m": k.x_m, "y_m": k.y_m, "radius_m": k.radius_m},
                "contains the start")
        for j, g in enumerate(sc.goals):
            if math.hypot(k.x_m - g.x_m, k.y_m - g.y_m) < k.radius_m:
                key = "goal" if j == len(sc.waypoints) else f"waypoints[{j}]"
                err(f"keep_out[{i}]", {"x_m": k.x_m, "y_m": k.y_m, "radius_m": k.radius_m}, f"contains the {key}")
    ts = [f.at_s for f in sc.faults]
    if ts != sorted(ts):
        err("faults", ts, "must be listed in order of at_s")
    return sc
