"""Typed, frozen configuration: rover profiles and planets, loaded from YAML once.

Every rule violation raises :class:`~nav.errors.ConfigError` naming the file, the
dotted key, the value, the rule and the line, e.g.::

    configs/rovers/osr.yaml: drive.max_speed_mps = -1: must be > 0 (line 12)

Unknown keys are rejected (with the nearest valid key suggested), missing required
keys are named, types are checked strictly (``"0.3"`` is not a number, ``true`` is
not a number). Kernels never see these objects: wrappers pass plain scalars.

PyYAML is imported lazily; nav/ otherwise depends only on numpy and numba.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError

__all__ = ["Geometry", "Drive", "Hazards", "Camera", "Sensors", "Power", "RoverProfile", "Soil", "Planet",
           "load_rover", "load_planet", "load_yaml_config", "from_mapping", "rule"]


# ----------------------------------------------------------------------------- rules
def rule(default=dataclasses.MISSING, *, gt=None, ge=None, lt=None, le=None, choices=None,
         length=None, doc: str = ""):
    """A dataclass field carrying its validation rule in ``metadata``."""
    md = {"gt": gt, "ge": ge, "lt": lt, "le": le, "choices": choices, "length": length, "doc": doc}
    if isinstance(default, (list, dict)):
        raise TypeError("use tuples for defaults")
    return field(default=default, metadata=md)


# ------------------------------------------------------------------------- profiles
@dataclass(frozen=True, kw_only=True)
class Geometry:
    """Rover body and wheel dimensions (metres, kilograms)."""
    length_m: float = rule(gt=0, le=10, doc="overall length along the drive direction")
    width_m: float = rule(gt=0, le=10, doc="overall width")
    wheelbase_m: float = rule(gt=0, le=10, doc="front to rear axle distance")
    track_m: float = rule(gt=0, le=10, doc="left to right wheel centre distance")
    wheel_radius_m: float = rule(gt=0, le=2)
    wheel_width_m: float = rule(gt=0, le=2)
    num_wheels: int = rule(ge=2, le=12)
    belly_clearance_m: float = rule(gt=0, le=2, doc="ground clearance under the body")
    mass_kg: float = rule(gt=0, le=5000)
    cg_height_m: float = rule(0.0, ge=0, le=5, doc="centre of mass above ground; 0 = unknown")


@dataclass(frozen=True, kw_only=True)
class Drive:
    """Drive train and its limits."""
    controller: str = rule(choices=("roboclaw", "arduino", "ardupilot", "sim"))
    max_speed_mps: float = rule(gt=0, le=20)
    max_accel_mps2: float = rule(gt=0, le=50)
    max_yaw_rate_dps: float = rule(gt=0, le=720)
    min_turning_radius_m: float = rule(ge=0, le=50, doc="0 = can turn in place")
    steerable_corners: bool = rule(False)
    steer_rate_dps: float = rule(120.0, gt=0, le=3600, doc="corner steering servo slew rate")
    encoder_counts_per_rev: int = rule(ge=1, le=10_000_000)


@dataclass(frozen=True, kw_only=True)
class Hazards:
    """GESTALT hazard limits and cost shaping."""
    max_slope_deg: float = rule(gt=0, lt=90)
    max_step_m: float = rule(gt=0, le=2, doc="≈ wheel-size obstacle")
    max_roughness_m: float = rule(gt=0, le=2, doc="RMS residual from the footprint plane")
    footprint_m: float = rule(gt=0, le=20, doc="side of the square plane-fit window")
    step_window_m: float = rule(0.0, ge=0, le=5, doc="window for step height; 0 = wheel diameter")
    inflation_radius_m: float = rule(0.0, ge=0, le=20, doc="lethal inflation; 0 = half the width")
    unknown: str = rule("lethal", choices=("lethal", "penalty"))
    unknown_cost: float = rule(5.0, ge=1, doc="cost of an unknown cell under the penalty policy")
    slope_weight: float = rule(3.0, ge=0)
    step_weight: float = rule(3.0, ge=0)
    roughness_weight: float = rule(2.0, ge=0)
    max_tilt_deg: float = rule(30.0, gt=0, lt=90, doc="driving tilt limit")


@dataclass(frozen=True, kw_only=True)
class Camera:
    """Stereo navigation camera pair on a mast (pinhole, square pixels, rectified).

    Frames: the camera frame is OpenCV's (x right, y down, z forward). The *left* camera is
    the reference: it sits at body ``(mount_x_m, +baseline_m / 2, mast_height_m)``, the right
    one ``baseline_m`` to its right; both look along body +x pitched down by ``tilt_deg``.
    Pixel centres are at integer coordinates; the principal point defaults to the image
    centre ``((width_px - 1) / 2, (height_px - 1) / 2)``.
    """
    width_px: int = rule(640, ge=16, le=4096)
    height_px: int = rule(480, ge=16, le=4096)
    hfov_deg: float = rule(70.0, gt=5, lt=170, doc="horizontal field of view")
    baseline_m: float = rule(0.12, gt=0, le=2, doc="stereo baseline")
    mast_height_m: float = rule(0.8, gt=0, le=10, doc="optical centres above the body origin (ground)")
    mount_x_m: float = rule(0.1, ge=-5, le=5, doc="optical centres forward of the body origin")
    tilt_deg: float = rule(25.0, ge=-45, le=89, doc="downward pitch of the optical axis")
    rate_hz: float = rule(2.0, gt=0, le=120, doc="frame rate during traverses")
    max_range_m: float = rule(40.0, gt=1, le=1000, doc="terrain beyond this is not rendered (sky)")
    noise_std_dn: float = rule(1.5, ge=0, le=50, doc="Gaussian pixel noise, 8-bit digital numbers")
    exposure: float = rule(1.0, gt=0, le=100, doc="gain on scene radiance before 8-bit quantisation")

    @property
    def fx_px(self) -> float:
        return 0.5 * self.width_px / math.tan(math.radians(0.5 * self.hfov_deg))

    @property
    def cx_px(self) -> float:
        return 0.5 * (self.width_px - 1)

    @property
    def cy_px(self) -> float:
        return 0.5 * (self.height_px - 1)

    @property
    def K(self):
        """3x3 intrinsic matrix (numpy float64)."""
        import numpy as np

        f = self.fx_px
        return np.array([[f, 0.0, self.cx_px], [0.0, f, self.cy_px], [0.0, 0.0, 1.0]])


@dataclass(frozen=True, kw_only=True)
class Sensors:
    """Proprioceptive sensor noise (simulator) and what the rover carries."""
    gyro_noise_dps: float = rule(0.05, ge=0, le=10, doc="white noise per sample, deg/s")
    gyro_bias_dps: float = rule(0.1, ge=0, le=10, doc="turn-on bias, 1-sigma per axis, deg/s")
    gyro_bias_walk_dps: float = rule(0.002, ge=0, le=1, doc="bias random walk, deg/s per sqrt(s)")
    accel_noise_mps2: float = rule(0.02, ge=0, le=10, doc="white noise per sample")
    accel_bias_mps2: float = rule(0.02, ge=0, le=10, doc="turn-on bias, 1-sigma per axis")
    sun_sensor: bool = rule(False, doc="absolute heading from a sun sensor / compass")
    sun_sensor_noise_deg: float = rule(1.0, ge=0, le=90)


@dataclass(frozen=True, kw_only=True)
class Power:
    """Battery and motor electrical model."""
    battery_wh: float = rule(75.0, gt=0, le=100000, doc="usable energy of a full pack")
    voltage_full_v: float = rule(16.8, gt=0, le=1000)
    voltage_empty_v: float = rule(13.2, gt=0, le=1000)
    internal_resistance_ohm: float = rule(0.05, ge=0, le=10)
    idle_power_w: float = rule(5.0, ge=0, le=10000, doc="computers, sensors, servos at rest")
    motor_efficiency: float = rule(0.5, gt=0, le=1, doc="wheel mechanical power / electrical power")
    motor_current_limit_a: float = rule(5.0, gt=0, le=1000, doc="per motor, stall current")
    low_voltage_v: float = rule(13.6, gt=0, le=1000, doc="battery-low fault threshold")


@dataclass(frozen=True, kw_only=True)
class RoverProfile:
    """Everything nav/ needs to know about a rover."""
    name: str = rule(doc="human-readable name")
    kind: str = rule(choices=("rocker_bogie", "skid_steer", "differential"))
    geometry: Geometry = rule()
    drive: Drive = rule()
    hazards: Hazards = rule()
    camera: Camera = rule(Camera())
    sensors: Sensors = rule(Sensors())
    power: Power = rule(Power())
    description: str = rule("")
    source: str = rule("", doc="file it was loaded from (set by the loader)")

    @property
    def wheel_diameter_m(self) -> float:
        return 2.0 * self.geometry.wheel_radius_m

    @property
    def step_window_m(self) -> float:
        return self.hazards.step_window_m or self.wheel_diameter_m

    @property
    def inflation_radius_m(self) -> float:
        return self.hazards.inflation_radius_m or 0.5 * self.geometry.width_m


@dataclass(frozen=True, kw_only=True)
class Soil:
    """Wheel-soil interaction of one soil type (the simulator's slip model).

    Longitudinal slip ``s = 1 - v_ground / v_wheel`` as a function of the climb angle
    ``a`` (degrees, positive uphill along the direction of travel)::

        a >= max_climb_deg : s = 1                      (the rover cannot climb)
        a >= 0             : s = min(1, slip_flat + slip_gain * (exp(a / slip_scale_deg) - 1))
        a <  0             : s = max(-max_skid, slip_flat - downhill_slip_per_deg * |a|)

    the exponential growth of slip with slope measured for MER and MSL on Martian sand
    (Lindemann & Voorhees 2005; Heverly et al. 2013 "Traverse performance characterization
    for the Mars Science Laboratory rover", J. Field Robotics 30(6)). On a side slope of
    roll ``b`` the rover also drifts downhill at ``lateral_slip_gain * |v| * sin(b)``.
    """
    name: str = rule("regolith")
    slip_flat: float = rule(0.03, ge=0, lt=1, doc="slip on level ground")
    slip_gain: float = rule(0.07, ge=0, le=10)
    slip_scale_deg: float = rule(10.0, gt=0, le=90)
    max_climb_deg: float = rule(28.0, gt=0, le=90, doc="slip reaches 1 (angle of repose)")
    downhill_slip_per_deg: float = rule(0.004, ge=0, le=1)
    max_skid: float = rule(0.2, ge=0, lt=1, doc="largest negative slip going downhill")
    lateral_slip_gain: float = rule(0.5, ge=0, le=10)
    rolling_resistance: float = rule(0.08, ge=0, le=1, doc="coefficient, for motor currents")
    albedo: float = rule(0.25, gt=0, le=1, doc="mean reflectance, for the cameras")


@dataclass(frozen=True, kw_only=True)
class Planet:
    """A body the rover drives on: gravity, default soil, sun and sky for the cameras.

    ``sun_azimuth_deg`` is measured clockwise from north (+y) toward east (+x);
    ``sun_elevation_deg`` above the horizon.
    """
    name: str = rule()
    gravity_mps2: float = rule(gt=0, le=30)
    radius_m: float = rule(gt=0)
    terrain_preset: str = rule(choices=("moon", "mars", "earth_yard"))
    soil: Soil = rule(Soil())
    sun_azimuth_deg: float = rule(135.0, ge=0, lt=360)
    sun_elevation_deg: float = rule(40.0, gt=0, le=90)
    sky_brightness: float = rule(0.3, ge=0, le=1, doc="sky radiance relative to lit ground, 0 = black")
    ambient: float = rule(0.05, ge=0, le=1, doc="light in shadow relative to direct sun")
    description: str = rule("")
    source: str = rule("")


# ----------------------------------------------------------------------- YAML layer
class _Doc:
    """A parsed YAML document with a line for every dotted key."""

    def __init__(self, file: str, data, lines: dict[str, int]):
        self.file, self.data, self.lines = file, data, lines

    def line(self, key: str) -> int | None:
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key.rpartition(".")[0]
        return self.lines.get("")


def _compose(text: str, file: str) -> _Doc:
    import yaml

    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        line = e.problem_mark.line + 1 if e.problem_mark is not None else None
        raise ConfigError(file, "", None, f"YAML syntax error: {e.problem}", line) from None
    except yaml.YAMLError as e:
        raise ConfigError(file, "", None, f"YAML error: {e}") from None
    lines: dict[str, int] = {}
    constructor = yaml.SafeLoader("")

    def walk(n, key):
        lines[key] = n.start_mark.line + 1
        if isinstance(n, yaml.MappingNode):
            out = {}
            for kn, vn in n.value:
                if not isinstance(kn, yaml.ScalarNode):
                    raise ConfigError(file, key, None, "keys must be plain scalars", kn.start_mark.line + 1)
                k = str(constructor.construct_object(kn))
                sub = f"{key}.{k}" if key else k
                if k in out:
                    raise ConfigError(file, sub, None, "duplicate key", kn.start_mark.line + 1)
                out[k] = walk(vn, sub)
                lines[sub] = kn.start_mark.line + 1     # errors point at the key, also for block values
            return out
        if isinstance(n, yaml.SequenceNode):
            return [walk(v, f"{key}[{i}]") for i, v in enumerate(n.value)]
        try:
            return constructor.construct_object(n)
        except yaml.YAMLError as e:
            raise ConfigError(file, key, n.value, f"cannot parse value: {e}", n.start_mark.line + 1) from None

    data = walk(node, "") if node is not None else None
    return _Doc(file, data, lines)


def _type_name(t) -> str:
    return {float: "a number", int: "an integer", str: "a string", bool: "true or false"}.get(t, str(t))


def _check_scalar(doc: _Doc, key: str, value, typ, md):
    raw = value

    def err(rule_):
        return ConfigError(doc.file, key, raw, rule_, doc.line(key))

    if typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise err("must be a number")
        value = float(value)
        if not math.isfinite(value):
            raise err("must be finite")
    elif typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise err("must be an integer")
    elif typ is bool:
        if not isinstance(value, bool):
            raise err("must be true or false")
    elif typ is str:
        if not isinstance(value, str):
            raise err("must be a string")
    else:  # pragma: no cover - schema bug
        raise TypeError(f"unsupported config type {typ}")
    for name, op, text in (("gt", lambda v, b: v > b, ">"), ("ge", lambda v, b: v >= b, ">="),
                           ("lt", lambda v, b: v < b, "<"), ("le", lambda v, b: v <= b, "<=")):
        bound = md.get(name)
        if bound is not None and not op(value, bound):
            raise err(f"must be {text} {bound:g}")
    choices = md.get("choices")
    if choices is not None and value not in choices:
        raise err(f"must be one of {', '.join(map(str, choices))}")
    return value


def from_mapping(cls, doc: _Doc, data, prefix: str = ""):
    """Build frozen dataclass ``cls`` from ``data``, validating every field."""
    if not isinstance(data, dict):
        raise ConfigError(doc.file, prefix, data, f"must be a mapping of {cls.__name__} fields",
                          doc.line(prefix))
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for k in data:
        if k not in fields:
            sub = f"{prefix}.{k}" if prefix else k
            near = difflib.get_close_matches(k, list(fields), n=1)
            hint = f"; did you mean {near[0]!r}?" if near else f"; valid keys: {', '.join(fields)}"
            raise ConfigError(doc.file, sub, data[k], f"unknown key{hint}", doc.line(sub))
    kwargs = {}
    for name, f in fields.items():
        sub = f"{prefix}.{name}" if prefix else name
        typ = hints[name]
        if name not in data:
            if f.default is dataclasses.MISSING:
                raise ConfigError(doc.file, sub, None, "required key is missing", doc.line(prefix))
            continue
        kwargs[name] = _convert(doc, sub, data[name], typ, f.metadata)
    return cls(**kwargs)


def _convert(doc: _Doc, key: str, value, typ, md):
    """One field value: a nested dataclass, ``X | None`` (YAML ``null``), ``tuple[X, ...]`` (a YAML list,
    ``length`` rule optional) or a scalar."""
    origin = typing.get_origin(typ)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", typing.Union)):
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if value is None and len(args) < len(typing.get_args(typ)):
            return None
        if len(args) != 1:  # pragma: no cover - schema bug
            raise TypeError(f"unsupported config type {typ}")
        return _convert(doc, key, value, args[0], md)
    if origin is tuple:
        args = typing.get_args(typ)
        if not isinstance(value, list):
            raise ConfigError(doc.file, key, value, "must be a list", doc.line(key))
        n = md.get("length")
        if n is not None and len(value) != n:
            raise ConfigError(doc.file, key, value, f"must be a list of {n} items", doc.line(key))
        item = args[0]
        if len(args) == 2 and args[1] is Ellipsis or len(args) == 1:
            types = [item] * len(value)
        else:
            if len(value) != len(args):
                raise ConfigError(doc.file, key, value, f"must be a list of {len(args)} items", doc.line(key))
            types = list(args)
        item_md = {k: v for k, v in md.items() if k != "length"}
        return tuple(_convert(doc, f"{key}[{i}]", v, t, item_md) for i, (v, t) in enumerate(zip(value, types)))
    if dataclasses.is_dataclass(typ):
        return from_mapping(typ, doc, value, key)
    return _check_scalar(doc, key, value, typ, md)


def load_yaml_config(cls, path, *, text: str | None = None):
    """Load and validate one YAML file into ``cls``."""
    path = Path(path)
    if text is None:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(path, "", None, "file not found") from None
        except UnicodeDecodeError as e:
            raise ConfigError(path, "", None, f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    doc = _compose(text, str(path))
    if doc.data is None:
        raise ConfigError(path, "", None, "file is empty")
    data = dict(doc.data) if isinstance(doc.data, dict) else doc.data
    if isinstance(data, dict) and "source" in {f.name for f in dataclasses.fields(cls)}:
        data.setdefault("source", str(path))
    return from_mapping(cls, doc, data)


def _resolve(kind: str, name_or_path) -> Path:
    from configs import config_path  # packaged data, no code dependency

    try:
        return config_path(kind, name_or_path)
    except FileNotFoundError as e:
        raise ConfigError(name_or_path, "", None, str(e)) from None


def load_rover(name_or_path) -> RoverProfile:
    """Load a rover profile by packaged name (``"osr"``) or YAML path; cross-field rules checked."""
    path = _resolve("rovers", name_or_path)
    prof = load_yaml_config(RoverProfile, path)
    g, h = prof.geometry, prof.hazards
    doc_lines = _compose(path.read_text(encoding="utf-8"), str(path))
    if g.wheelbase_m > g.length_m:
        raise ConfigError(path, "geometry.wheelbase_m", g.wheelbase_m,
                          f"must be <= geometry.length_m ({g.length_m:g})", doc_lines.line("geometry.wheelbase_m"))
    if g.track_m > g.width_m:
        raise ConfigError(path, "geometry.track_m", g.track_m,
                          f"must be <= geometry.width_m ({g.width_m:g})", doc_lines.line("geometry.track_m"))
    if h.footprint_m < min(g.length_m, g.width_m) * 0.5:
        raise ConfigError(path, "hazards.footprint_m", h.footprint_m,
                          f"must cover at least half the rover ({0.5 * min(g.length_m, g.width_m):g} m)",
                          doc_lines.line("hazards.footprint_m"))
    pw = prof.power
    if not pw.voltage_empty_v < pw.low_voltage_v < pw.voltage_full_v:
        raise ConfigError(path, "power.low_voltage_v", pw.low_voltage_v,
                          f"must lie between power.voltage_empty_v ({pw.voltage_empty_v:g}) and "
                          f"power.voltage_full_v ({pw.voltage_full_v:g})", doc_lines.line("power.low_voltage_v"))
    return prof


def load_planet(name_or_path) -> Planet:
    """Load a planet by packaged name (``"mars"``) or YAML path."""
    return load_yaml_config(Planet, _resolve("planets", name_or_path))
