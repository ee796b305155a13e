"""The traverse log: everything a traverse does, in MCAP, readable by Foxglove and by ``rover replay``.

One file per traverse (``<out>/traverse.mcap``). Every message is JSON (MCAP message encoding
``json``) on a channel whose schema is a JSON Schema (schema encoding ``jsonschema``). Standard
things use Foxglove's own schema names, so the Foxglove app draws them without configuration;
rovernav's own records use ``rovernav.*`` schemas (Foxglove shows them in Raw Messages and Plot).

Methods, schemas and (default or suggested) topics:

* :meth:`McapLogger.telemetry` — ``rovernav.Telemetry`` — ``/telemetry``
* :meth:`McapLogger.command` — ``rovernav.Command`` — ``/cmd``
* :meth:`McapLogger.event` — ``rovernav.Event`` — ``/events``
* :meth:`McapLogger.vo` — ``rovernav.VO`` — ``/vo``
* :meth:`McapLogger.log` — ``foxglove.Log`` — ``/log``
* :meth:`McapLogger.transform` — ``foxglove.FrameTransform`` — ``/tf`` (world→body, body→camera_left)
* :meth:`McapLogger.pose` — ``foxglove.PoseInFrame`` — ``/pose/estimated``, ``/pose/true``
* :meth:`McapLogger.path` — ``foxglove.PosesInFrame`` — ``/path/planned``, ``/path/driven``
* :meth:`McapLogger.image` — ``foxglove.CompressedImage`` — ``/camera/left/compressed``
* :meth:`McapLogger.grid` — ``foxglove.Grid`` — ``/map/local``, ``/map/known``, ``/map/cost``
* :meth:`McapLogger.scene` — ``foxglove.SceneUpdate`` — ``/scene/arcs``, ``/scene/rocks``
* :meth:`McapLogger.json` — any schema name — any topic

Frames: ``world`` (ENU, the terrain grid's frame), ``body`` (REP-103), ``camera_left`` (OpenCV
optical frame); see :mod:`sim.frames`. A ``FrameTransform`` parent→child carries
``T_parent_child`` (the child's origin and orientation in the parent).

Time
----
Every write takes ``t_s``: seconds on the traverse's injected clock (simulated time from 0, or a
monotonic clock on hardware). It becomes the MCAP ``log_time`` and ``publish_time`` in integer
nanoseconds and the Foxglove ``timestamp`` ``{sec, nsec}``; so log times are quantised to 1 ns and
must be finite, >= 0 and < 2**32 s. Nothing here reads the wall clock.

NaN and infinity
----------------
JSON has no NaN or infinity (Python's ``json`` would write the non-standard tokens ``NaN`` and
``Infinity``, which Foxglove's parser rejects). Rule: **every non-finite float in a JSON message is
written as ``null`` and read back as NaN**; so NaN ("not reported", the drivers' convention) round
trips, and ±inf comes back as NaN. The rovernav schemas mark such fields ``"nullable": true``
(Foxglove's schema reader takes one type per field, so they stay ``"number"``;
:func:`validation_schema` widens them to ``["number", "null"]`` for standard validators); Foxglove
plots show a gap. Binary payloads (grid cells, images) are bytes and keep NaN and ±inf
exactly. Poses, paths and transforms must be finite (a non-finite pose is a bug; it raises).

Rate limits
-----------
``min_interval_s={"/camera/*": 1.0, "/map/known": 2.0}`` (``fnmatch`` patterns; the first match
wins) or a per-call ``min_interval_s=``: a write closer than that to the last written message
of its topic (in ``t_s``) is skipped and the method returns False. :meth:`McapLogger.due` asks
first, so a caller can skip the work of rendering an image or building a grid.

Crash safety
------------
Messages collect in a chunk (zstd-compressed by default) that is written out when it reaches
``chunk_size`` bytes, when ``flush_interval_s`` of log time has passed since the last write-out,
on every ``log()`` at ERROR or above, and on :meth:`McapLogger.flush`. Closing (also when the
``with`` block ends by an exception or Ctrl-C, which is first logged at FATAL) writes the summary,
indexes and footer. What a process that dies without closing leaves:

* killed (SIGKILL, OOM, segfault, ``os._exit``): the header, the metadata and every chunk written out
  so far — all messages up to at most ``flush_interval_s`` before the death (the OS already
  holds those bytes); no summary or footer. :class:`McapReader` reads such a file to its last
  complete chunk and reports ``truncated``; :func:`repair` rewrites it as a complete, indexed
  file (what Foxglove and the ``mcap`` CLI expect; ``mcap recover`` does the same).
* power loss: the same, minus what the OS had not yet written to disk; ``fsync=True`` syncs on
  every write-out, at some cost per chunk.
"""
from __future__ import annotations

import base64
import enum
import fnmatch
import io
import json as _json
import logging
import math
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Mapping, NamedTuple, Sequence

import numpy as np

__all__ = [
    "McapLogger", "McapReader", "McapLogHandler", "read_log", "repair", "SCHEMAS", "validation_schema",
    "LoggedMessage",
    "CommandMsg", "EventMsg", "LogMsg", "PoseMsg", "PathMsg", "TransformMsg", "ImageMsg", "GridMsg",
    "VOMsg", "SceneMsg", "RawMsg", "LOG_LEVELS",
    "TOPIC_TELEMETRY", "TOPIC_COMMAND", "TOPIC_EVENTS", "TOPIC_LOG", "TOPIC_TF", "TOPIC_VO",
    "FRAME_WORLD", "FRAME_BODY", "FRAME_CAMERA_LEFT",
]

log = logging.getLogger(__name__)

FORMAT_VERSION = "1"
MCAP_MAGIC = b"\x89MCAP0\r\n"

TOPIC_TELEMETRY = "/telemetry"
TOPIC_COMMAND = "/cmd"
TOPIC_EVENTS = "/events"
TOPIC_LOG = "/log"
TOPIC_TF = "/tf"
TOPIC_VO = "/vo"
FRAME_WORLD = "world"
FRAME_BODY = "body"
FRAME_CAMERA_LEFT = "camera_left"

#: foxglove.LogLevel values by name.
LOG_LEVELS = {"unknown": 0, "debug": 1, "info": 2, "warning": 3, "error": 4, "fatal": 5}
_LEVEL_ALIASES = {"warn": 3, "critical": 5}

_MAX_T_S = float(2 ** 32)   # Foxglove time.sec is uint32


# =====================================================================================  JSON schemas
def _time(desc: str) -> dict:
    return {"type": "object", "title": "time", "description": desc,
            "properties": {"sec": {"type": "integer", "minimum": 0},
                           "nsec": {"type": "integer", "minimum": 0, "maximum": 999_999_999}},
            "required": ["sec", "nsec"]}


def _duration(desc: str) -> dict:
    return {"type": "object", "title": "duration", "description": desc,
            "properties": {"sec": {"type": "integer"},
                           "nsec": {"type": "integer", "minimum": 0, "maximum": 999_999_999}},
            "required": ["sec", "nsec"]}


def _obj(title: str, desc: str, props: dict, required=None) -> dict:
    return {"title": title, "description": desc, "type": "object", "properties": props,
            "required": list(props) if required is None else list(required)}


def _num(desc: str = "") -> dict:
    return {"type": "number", "description": desc}


def _vec3(desc: str) -> dict:
    return _obj("foxglove.Vector3", desc, {k: _num(f"{k} coordinate length") for k in "xyz"})


def _vec2(desc: str) -> dict:
    return _obj("foxglove.Vector2", desc, {k: _num(f"{k} coordinate length") for k in "xy"})


def _quat(desc: str) -> dict:
    return _obj("foxglove.Quaternion", desc, {k: _num(f"{k} value") for k in "xyzw"})


def _pose(desc: str) -> dict:
    return _obj("foxglove.Pose", desc, {"position": _vec3("Point denoting position in 3D space"),
                                        "orientation": _quat("Quaternion denoting orientation in 3D space")})


def _color(desc: str) -> dict:
    return _obj("foxglove.Color", desc, {k: _num(f"{k} value between 0 and 1") for k in "rgba"})


def _enum(title: str, desc: str, names: Sequence[str]) -> dict:
    return {"title": title, "description": desc,
            "oneOf": [{"title": n, "const": i} for i, n in enumerate(names)]}


def _array(items: dict, desc: str = "") -> dict:
    return {"type": "array", "items": items, "description": desc}


_NUM_OR_NULL = {"type": "number", "nullable": True}
_STR = {"type": "string"}
_ANY_OBJECT = {"type": "object", "properties": {}}
_NUMERIC_TYPES = ("UNKNOWN", "UINT8", "INT8", "UINT16", "INT16", "UINT32", "INT32", "FLOAT32", "FLOAT64")


def _build_schemas() -> dict[str, dict]:
    s: dict[str, dict] = {}
    s["foxglove.Log"] = _obj("foxglove.Log", "A log message", {
        "timestamp": _time("Timestamp of log message"),
        "level": _enum("foxglove.LogLevel", "Log level", [n.upper() for n in LOG_LEVELS]),
        "message": {"type": "string", "description": "Log message"},
        "name": {"type": "string", "description": "Process or node name"},
        "file": {"type": "string", "description": "Filename"},
        "line": {"type": "integer", "minimum": 0, "description": "Line number in the file"}})
    s["foxglove.FrameTransform"] = _obj("foxglove.FrameTransform", "A transform between two reference frames", {
        "timestamp": _time("Timestamp of transform"),
        "parent_frame_id": {"type": "string", "description": "Name of the parent frame"},
        "child_frame_id": {"type": "string", "description": "Name of the child frame"},
        "translation": _vec3("Translation component of the transform"),
        "rotation": _quat("Rotation component of the transform")})
    s["foxglove.PoseInFrame"] = _obj("foxglove.PoseInFrame", "A timestamped pose in 3D space", {
        "timestamp": _time("Timestamp of pose"),
        "frame_id": {"type": "string", "description": "Frame of reference for pose position and orientation"},
        "pose": _pose("Pose in 3D space")})
    s["foxglove.PosesInFrame"] = _obj("foxglove.PosesInFrame", "An array of timestamped poses in 3D space", {
        "timestamp": _time("Timestamp of pose"),
        "frame_id": {"type": "string", "description": "Frame of reference for pose position and orientation"},
        "poses": _array(_pose("A position and orientation"), "Poses in 3D space")})
    s["foxglove.CompressedImage"] = _obj("foxglove.CompressedImage", "A compressed image", {
        "timestamp": _time("Timestamp of image"),
        "frame_id": {"type": "string", "description": "Frame of reference for the image (OpenCV optical frame)"},
        "data": {"type": "string", "contentEncoding": "base64", "description": "Compressed image data"},
        "format": {"type": "string", "description": "Image format: jpeg or png"}})
    s["foxglove.Grid"] = _obj("foxglove.Grid", "A 2D grid of data", {
        "timestamp": _time("Timestamp of grid"),
        "frame_id": {"type": "string", "description": "Frame of reference"},
        "pose": _pose("Origin of grid's corner relative to frame of reference; "
                      "grid is positioned in the x-y plane relative to this origin"),
        "column_count": {"type": "integer", "minimum": 0, "description": "Number of grid columns"},
        "cell_size": _vec2("Size of single grid cell along x and y axes, relative to `pose`"),
        "row_stride": {"type": "integer", "minimum": 0, "description": "Number of bytes between rows in `data`"},
        "cell_stride": {"type": "integer", "minimum": 0,
                        "description": "Number of bytes between cells within a row in `data`"},
        "fields": _array(_obj("foxglove.PackedElementField", "A field present within each element of packed data", {
            "name": {"type": "string", "description": "Name of the field"},
            "offset": {"type": "integer", "minimum": 0, "description": "Byte offset from start of data buffer"},
            "type": _enum("foxglove.NumericType", "Type of data in the field (little-endian)", _NUMERIC_TYPES)}),
            "Fields in `data`"),
        "data": {"type": "string", "contentEncoding": "base64",
                 "description": "Grid cell data, interpreted using `fields`, in row-major (y-major) order"}})
    line = _obj("foxglove.LinePrimitive", "A primitive representing a series of points connected by lines", {
        "type": _enum("foxglove.LineType", "Drawing primitive to use for lines",
                      ["LINE_STRIP", "LINE_LOOP", "LINE_LIST"]),
        "pose": _pose("Origin of lines relative to reference frame"),
        "thickness": _num("Line thickness"),
        "scale_invariant": {"type": "boolean",
                            "description": "Thickness in screen pixels (true) or world units (false)"},
        "points": _array(_obj("foxglove.Point3", "A point", {k: _num(f"{k} coordinate position") for k in "xyz"}),
                         "Points along the line"),
        "color": _color("Solid color to use for the whole line"),
        "colors": _array(_color("Per-point color"), "Per-point colors"),
        "indices": _array({"type": "integer", "minimum": 0}, "Indices into the points and colors attribute arrays")})
    cylinder = _obj("foxglove.CylinderPrimitive", "A cylinder, elliptic cylinder, or truncated cone", {
        "pose": _pose("Position of the center of the cylinder and orientation of the cylinder"),
        "size": _vec3("Size of the cylinder's bounding box"),
        "bottom_scale": _num("0-1, ratio of the diameter of the bottom face to the bounding box"),
        "top_scale": _num("0-1, ratio of the diameter of the top face to the bounding box"),
        "color": _color("Color of the cylinder")})
    empty = {"type": "array", "items": _ANY_OBJECT}
    entity = _obj("foxglove.SceneEntity", "A visual element in a 3D scene", {
        "timestamp": _time("Timestamp of the entity"),
        "frame_id": {"type": "string", "description": "Frame of reference"},
        "id": {"type": "string", "description": "Identifier for the entity"},
        "lifetime": _duration("Time after which the entity is removed; zero: until replaced or deleted"),
        "frame_locked": {"type": "boolean", "description": "Whether the entity follows frame_id"},
        "metadata": _array(_obj("foxglove.KeyValuePair", "A key with its associated value",
                                {"key": _STR, "value": _STR}), "Additional metadata"),
        "arrows": dict(empty, description="Arrow primitives (unused)"),
        "cubes": dict(empty, description="Cube primitives (unused)"),
        "spheres": dict(empty, description="Sphere primitives (unused)"),
        "cylinders": _array(cylinder, "Cylinder primitives"),
        "lines": _array(line, "Line primitives"),
        "triangles": dict(empty, description="Triangle list primitives (unused)"),
        "texts": dict(empty, description="Text primitives (unused)"),
        "models": dict(empty, description="Model primitives (unused)")})
    s["foxglove.SceneUpdate"] = _obj("foxglove.SceneUpdate", "An update to the entities displayed in a 3D scene", {
        "deletions": _array(_obj("foxglove.SceneEntityDeletion", "Command to remove previously published entities", {
            "timestamp": _time("Timestamp of the deletion"),
            "type": _enum("foxglove.SceneEntityDeletionType", "Type of deletion action to perform",
                          ["MATCHING_ID", "ALL"]),
            "id": {"type": "string", "description": "Identifier which must match if `type` is `MATCHING_ID`."}}),
            "Scene entities to delete"),
        "entities": _array(entity, "Scene entities to add or replace")})

    arr = _array(_NUM_OR_NULL)
    s["rovernav.Telemetry"] = _obj("rovernav.Telemetry", "drivers.base.Telemetry: the latest state a rover backend "
                                   "knows (null = not reported / non-finite)", {
        "timestamp": _time("Backend time stamp (t_s, clamped at 0)"),
        "t_s": dict(_NUM_OR_NULL, description="Backend time stamp, seconds, exact"),
        "seq": {"type": "integer"},
        "encoder_counts": _array({"type": "integer"}, "raw wrapping counts, per wheel"),
        "wheel_speed_radps": arr, "steer_rad": arr, "motor_current_a": arr,
        "imu": {"type": "object", "nullable": True, "properties": {
            "t_s": _NUM_OR_NULL, "gyro_radps": arr, "accel_mps2": arr},
            "required": ["t_s", "gyro_radps", "accel_mps2"]},
        "battery": {"type": "object", "nullable": True, "properties": {
            "t_s": _NUM_OR_NULL, "voltage_v": _NUM_OR_NULL, "current_a": _NUM_OR_NULL, "state_of_charge": _NUM_OR_NULL},
            "required": ["t_s", "voltage_v", "current_a", "state_of_charge"]},
        "heading_rad": _NUM_OR_NULL,
        "faults": {"type": "integer", "minimum": 0, "description": "drivers.base.Fault bits"},
        "fault_names": _array(_STR, "names of the set fault bits"),
        "armed": {"type": "boolean"},
        "extra": dict(_ANY_OBJECT, description="backend-specific extras")})
    s["rovernav.Command"] = _obj("rovernav.Command", "A motion command: body twist and/or per-wheel targets", {
        "timestamp": _time("Time the command was sent"),
        "vx_mps": _NUM_OR_NULL, "wz_radps": _NUM_OR_NULL,
        "wheel_speed_radps": _array(_NUM_OR_NULL, "per-wheel speed targets (empty: twist only)"),
        "steer_rad": _array(_NUM_OR_NULL, "per-wheel steering targets (empty: none)"),
        "source": _STR})
    s["rovernav.Event"] = _obj("rovernav.Event", "Something the executive decided or noticed (replan, fault...)", {
        "timestamp": _time("Time of the event"),
        "kind": _STR,
        "detail": dict(_ANY_OBJECT, description="free-form details (a JSON object)")})
    s["rovernav.VO"] = _obj("rovernav.VO", "One visual-odometry step", {
        "timestamp": _time("Time of the current frame"),
        "seq": {"type": "integer"},
        "ok": {"type": "boolean"},
        "reason": _STR,
        "inliers": {"type": "integer", "nullable": True},
        "delta": dict(_pose("T_prev_curr: the current camera pose in the previous one (null: no estimate)"),
                      nullable=True),
        "stats": dict(_ANY_OBJECT, description="free-form numbers")})
    return s


#: JSON Schemas by schema name, in the dialect Foxglove's JSON-schema reader accepts: one ``type``
#: per field (or a ``oneOf`` of numeric constants), every object with ``properties``. The
#: ``foxglove.*`` ones follow Foxglove's published field lists. A field marked ``"nullable": true``
#: may hold ``null`` (a non-finite or absent value); :func:`validation_schema` spells that out for
#: standard JSON Schema validators.
SCHEMAS: dict[str, dict] = _build_schemas()


def validation_schema(name: str) -> dict:
    """The schema ``name`` for a standard JSON Schema validator: ``nullable`` fields accept null."""
    def widen(node):
        if isinstance(node, dict):
            out = {k: widen(v) for k, v in node.items() if k != "nullable"}
            if node.get("nullable") and isinstance(node.get("type"), str):
                out["type"] = [node["type"], "null"]
            return out
        if isinstance(node, list):
            return [widen(v) for v in node]
        return node
    if name not in SCHEMAS:
        raise KeyError(f"no schema named {name!r} (have {sorted(SCHEMAS)})")
    return widen(SCHEMAS[name])


# ================================================================================  value encoding
def _ns(t_s, what: str = "t_s") -> int:
    try:
        t = float(t_s)
    except (TypeError, ValueError):
        raise TypeError(f"{what} must be a number of seconds, got {type(t_s).__name__}") from None
    if not (math.isfinite(t) and 0.0 <= t < _MAX_T_S):
        raise ValueError(f"{what} = {t_s!r}: must be finite, >= 0 and < 2**32 s (seconds on the traverse clock)")
    return int(round(t * 1e9))


def _stamp(ns: int) -> dict:
    return {"sec": ns // 1_000_000_000, "nsec": ns % 1_000_000_000}


def _t_from_stamp(d) -> float:
    return float(d["sec"]) + float(d["nsec"]) * 1e-9


def _fnum(v):
    """A float for JSON: non-finite -> None."""
    f = float(v)
    return f if math.isfinite(f) else None


def _flist(a) -> list:
    return [v if math.isfinite(v) else None for v in np.asarray(a, dtype=np.float64).ravel().tolist()]


def _farr(lst) -> np.ndarray:
    if lst is None:
        return np.zeros(0)
    return np.array([np.nan if v is None else v for v in lst], dtype=np.float64)


def _nan(v) -> float:
    return math.nan if v is None else float(v)


def _jsonable(obj, where: str = "obj", strict: bool = True):
    """Plain JSON data from dicts, lists, numpy arrays and scalars; non-finite floats -> None."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return _fnum(obj)
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist(), where, strict)
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                if strict:
                    raise TypeError(f"{where}: keys must be str, got {k!r}")
                k = str(k)
            out[k] = _jsonable(v, f"{where}[{k!r}]", strict)
        return out
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v, f"{where}[{i}]", strict) for i, v in enumerate(obj)]
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(obj)).decode("ascii")
    if isinstance(obj, enum.Enum):
        return obj.name
    if isinstance(obj, Path):
        return str(obj)
    if strict:
        raise TypeError(f"{where}: cannot log a {type(obj).__name__} as JSON")
    return repr(obj)


_FAULT_NAMES: dict[int, list] = {}


def _fault_names(bits: int, Fault) -> list:
    names = _FAULT_NAMES.get(bits)
    if names is None:
        names = [f.name.lower() for f in Fault if f and (bits & int(f)) == int(f)]
        if len(_FAULT_NAMES) < 4096:
            _FAULT_NAMES[bits] = names
    return list(names)


def _dumps(obj) -> bytes:
    return _json.dumps(obj, separators=(",", ":"), allow_nan=False).encode("utf-8")


# ================================================================================  rotations / poses
def _quat_from_rot(R) -> tuple[float, float, float, float]:
    """Unit quaternion (x, y, z, w), w >= 0, of a rotation matrix (Shepperd's branch choice).

    ``R``: 3x3 (or the 3x4 / 4x4 rows of a transform), array or nested lists.
    """
    r00, r01, r02 = (float(v) for v in R[0][:3])
    r10, r11, r12 = (float(v) for v in R[1][:3])
    r20, r21, r22 = (float(v) for v in R[2][:3])
    tr = r00 + r11 + r22
    if tr > 0.0:
        s = 2.0 * math.sqrt(tr + 1.0)
        w, x, y, z = 0.25 * s, (r21 - r12) / s, (r02 - r20) / s, (r10 - r01) / s
    elif r00 > r11 and r00 > r22:
        s = 2.0 * math.sqrt(max(1.0 + r00 - r11 - r22, 0.0))
        w, x, y, z = (r21 - r12) / s, 0.25 * s, (r01 + r10) / s, (r02 + r20) / s
    elif r11 > r22:
        s = 2.0 * math.sqrt(max(1.0 + r11 - r00 - r22, 0.0))
        w, x, y, z = (r02 - r20) / s, (r01 + r10) / s, 0.25 * s, (r12 + r21) / s
    else:
        s = 2.0 * math.sqrt(max(1.0 + r22 - r00 - r11, 0.0))
        w, x, y, z = (r10 - r01) / s, (r02 + r20) / s, (r12 + r21) / s, 0.25 * s
    n = math.sqrt(x * x + y * y + z * z + w * w)
    if w < 0.0:
        n = -n
    return x / n, y / n, z / n, w / n


def _rot_from_quat(x, y, z, w) -> np.ndarray:
    n = math.sqrt(x * x + y * y + z * z + w * w)
    if not (math.isfinite(n) and n > 0.0):
        raise ValueError(f"quaternion ({x}, {y}, {z}, {w}) has no direction")
    x, y, z, w = x / n, y / n, z / n, w / n
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def _check_T(T, what: str) -> np.ndarray:
    """``T`` as a float64 4x4 proper rigid transform, or a ValueError naming ``what``.

    Plain-float arithmetic: a 3x3 check through numpy costs ~4x more per pose logged.
    """
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4):
        raise ValueError(f"{what} must be a 4x4 homogeneous transform, got shape {T.shape}")
    (a, b, c, _), (d, e, f, _), (g, h, i, _), bottom = rows = T.tolist()
    if not all(math.isfinite(v) for r in rows for v in r):
        raise ValueError(f"{what} has a non-finite entry")
    if max(abs(bottom[0]), abs(bottom[1]), abs(bottom[2]), abs(bottom[3] - 1.0)) > 1e-9:
        raise ValueError(f"{what} bottom row must be (0, 0, 0, 1), got {bottom}")
    # R^T R - I, column by column (columns (a, d, g), (b, e, h), (c, f, i))
    err = max(abs(a * a + d * d + g * g - 1.0), abs(b * b + e * e + h * h - 1.0), abs(c * c + f * f + i * i - 1.0),
              abs(a * b + d * e + g * h), abs(a * c + d * f + g * i), abs(b * c + e * f + h * i))
    det = a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g)
    if err > 1e-6 or det <= 0:
        raise ValueError(f"{what} rotation is not a proper rotation (|R^T R - I| = {err:.2e}, det = {det:.3f})")
    return T


def _pose_json(T: np.ndarray) -> dict:
    rows = T.tolist()
    x, y, z, w = _quat_from_rot(rows)
    return {"position": {"x": rows[0][3], "y": rows[1][3], "z": rows[2][3]},
            "orientation": {"x": x, "y": y, "z": z, "w": w}}


def _T_from_pose(p) -> np.ndarray:
    T = np.eye(4)
    o = p.get("orientation") or {}
    T[:3, :3] = _rot_from_quat(*(_nan(o.get(k, 1.0 if k == "w" else 0.0)) for k in "xyzw"))
    q = p.get("position") or {}
    T[:3, 3] = (_nan(q.get("x", 0.0)), _nan(q.get("y", 0.0)), _nan(q.get("z", 0.0)))
    return T


def _yaw_pose(x, y, z, yaw) -> dict:
    return {"position": {"x": x, "y": y, "z": z},
            "orientation": {"x": 0.0, "y": 0.0, "z": math.sin(0.5 * yaw), "w": math.cos(0.5 * yaw)}}


def _color_json(c) -> dict:
    c = tuple(float(v) for v in c)
    if len(c) == 3:
        c = c + (1.0,)
    if len(c) != 4 or not all(0.0 <= v <= 1.0 for v in c):
        raise ValueError(f"colour must be (r, g, b[, a]) in 0..1, got {c}")
    return dict(zip("rgba", c))


# ================================================================================  grid codec
_NUMERIC_CODES = {np.dtype("uint8"): 1, np.dtype("int8"): 2, np.dtype("uint16"): 3, np.dtype("int16"): 4,
                  np.dtype("uint32"): 5, np.dtype("int32"): 6, np.dtype("float32"): 7, np.dtype("float64"): 8}
_CODE_DTYPES = {v: k.newbyteorder("<") for k, v in _NUMERIC_CODES.items()}


def _grid_dtype(a: np.ndarray, name: str) -> np.ndarray:
    if a.dtype == np.bool_:
        return a.astype(np.uint8)
    if a.dtype == np.float16:
        return a.astype(np.float32)
    if a.dtype.kind in "iu" and a.dtype.itemsize == 8:
        if a.size and (a.min() < np.iinfo(np.int32).min or a.max() > np.iinfo(np.int32).max):
            raise ValueError(f"grid layer {name!r}: int64 values outside int32 cannot be logged "
                             "(Foxglove grids have no 64-bit integers)")
        return a.astype(np.int32)
    if a.dtype.newbyteorder("=") not in _NUMERIC_CODES and a.dtype not in _NUMERIC_CODES:
        raise ValueError(f"grid layer {name!r}: dtype {a.dtype} is not one of "
                         f"{sorted(str(d) for d in _NUMERIC_CODES)} (or bool, float16, int64)")
    return a


def _grid_layers(source, layers) -> tuple[dict, tuple[float, float], float]:
    """(name -> 2-D array, origin_xy_m, cell_size_m) from a TerrainMap, CostMap or (arrays, origin, cell)."""
    from nav.costmap import CostMap
    from nav.terrain_map import TerrainMap

    if isinstance(source, TerrainMap):
        names = ("elevation_m",) if layers is None else tuple(layers)
        bad = [n for n in names if n != "elevation_m"]
        if bad:
            raise ValueError(f"layers {bad}: a TerrainMap has only 'elevation_m'")
        return {"elevation_m": source.elevation_m}, source.origin_xy_m, source.cell_size_m
    if isinstance(source, CostMap):
        avail = {"elevation_m": source.terrain.elevation_m, "cost": source.cost, "slope_deg": source.slope_deg,
                 "step_m": source.step_m, "roughness_m": source.roughness_m, "reason": source.reason}
        names = ("elevation_m", "cost", "reason") if layers is None else tuple(layers)
        bad = [n for n in names if n not in avail]
        if bad:
            raise ValueError(f"layers {bad}: a CostMap has {sorted(avail)}")
        return {n: avail[n] for n in names}, source.terrain.origin_xy_m, source.cell_size_m
    if not (isinstance(source, tuple) and len(source) == 3):
        raise TypeError("grid source must be a TerrainMap, a CostMap or a tuple (arrays, origin_xy_m, cell_size_m), "
                        f"got {type(source).__name__}")
    arrays, origin, cell = source
    if isinstance(arrays, Mapping):
        names = tuple(arrays) if layers is None else tuple(layers)
        missing = [n for n in names if n not in arrays]
        if missing:
            raise ValueError(f"layers {missing} are not in the arrays given ({sorted(arrays)})")
        out = {n: np.asarray(arrays[n]) for n in names}
    else:
        a = np.asarray(arrays)
        if a.ndim == 2:
            names = ("value",) if layers is None else tuple(layers)
            if len(names) != 1:
                raise ValueError(f"one 2-D array needs one layer name, got {list(names)}")
            out = {names[0]: a}
        elif a.ndim == 3:
            names = tuple(f"layer{i}" for i in range(a.shape[0])) if layers is None else tuple(layers)
            if len(names) != a.shape[0]:
                raise ValueError(f"{a.shape[0]} stacked layers need {a.shape[0]} names, got {list(names)}")
            out = {n: a[i] for i, n in enumerate(names)}
        else:
            raise ValueError(f"grid arrays must be 2-D (rows, cols) or 3-D (layers, rows, cols), got shape {a.shape}")
    ox, oy = (float(v) for v in origin)
    cell = float(cell)
    if not (math.isfinite(ox) and math.isfinite(oy)):
        raise ValueError(f"origin_xy_m must be finite, got {origin!r}")
    if not (math.isfinite(cell) and cell > 0):
        raise ValueError(f"cell_size_m must be finite and > 0, got {cell!r}")
    return out, (ox, oy), cell


def _encode_grid(layers: dict) -> tuple[list, int, int, int, bytes]:
    """Interleave layers cell by cell: (fields, column_count, cell_stride, row_stride, data)."""
    if not layers:
        raise ValueError("a grid needs at least one layer")
    shape = None
    cols, names, formats, offsets, fields = [], [], [], [], []
    off = 0
    for name, a in layers.items():
        a = np.asarray(a)
        if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
            raise ValueError(f"grid layer {name!r} must be a non-empty 2-D array, got shape {a.shape}")
        if shape is None:
            shape = a.shape
        elif a.shape != shape:
            raise ValueError(f"grid layer {name!r} has shape {a.shape}, the first layer has {shape}")
        a = _grid_dtype(a, name)
        dt = a.dtype.newbyteorder("<")
        names.append(name)
        formats.append(dt)
        offsets.append(off)
        fields.append({"name": str(name), "offset": off, "type": _NUMERIC_CODES[a.dtype.newbyteorder("=")]})
        cols.append(a)
        off += dt.itemsize
    rec = np.empty(shape, dtype=np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": off}))
    for n, a in zip(names, cols):
        rec[n] = a
    return fields, shape[1], off, off * shape[1], rec.tobytes()


def _decode_grid(msg: dict) -> dict:
    data = base64.b64decode(msg.get("data", ""))
    cols = int(msg["column_count"])
    cs, rs = int(msg["cell_stride"]), int(msg["row_stride"])
    if cols == 0 or rs == 0:
        return {}
    rows = len(data) // rs
    buf = np.frombuffer(data, dtype=np.uint8, count=rows * rs).reshape(rows, rs)
    out = {}
    for f in msg.get("fields", []):
        dt = _CODE_DTYPES.get(int(f["type"]))
        if dt is None:
            continue
        o = int(f["offset"])
        idx = o + cs * np.arange(cols)[:, None] + np.arange(dt.itemsize)[None, :]   # (cols, itemsize) byte index
        out[f["name"]] = np.ascontiguousarray(buf[:, idx].reshape(rows, cols * dt.itemsize)).view(dt).astype(
            dt.newbyteorder("="))
    return out


# ================================================================================  decoded types
@dataclass(frozen=True)
class CommandMsg:
    t_s: float
    vx_mps: float
    wz_radps: float
    wheel_speed_radps: np.ndarray | None
    steer_rad: np.ndarray | None
    source: str = ""


@dataclass(frozen=True)
class EventMsg:
    t_s: float
    kind: str
    detail: dict = field(default_factory=dict)


@dataclass(frozen=True)
class LogMsg:
    t_s: float
    level: int           # foxglove.LogLevel: 1 debug .. 5 fatal
    message: str
    name: str = ""


@dataclass(frozen=True)
class PoseMsg:
    t_s: float
    frame_id: str
    T: np.ndarray        # 4x4, T_frame_object


@dataclass(frozen=True)
class PathMsg:
    t_s: float
    frame_id: str
    poses: np.ndarray    # (N, 4, 4)

    @property
    def xy(self) -> np.ndarray:
        return self.poses[:, :2, 3].copy()

    @property
    def xyz(self) -> np.ndarray:
        return self.poses[:, :3, 3].copy()


@dataclass(frozen=True)
class TransformMsg:
    t_s: float
    parent_frame_id: str
    child_frame_id: str
    T_parent_child: np.ndarray


@dataclass(frozen=True)
class ImageMsg:
    t_s: float
    frame_id: str
    format: str
    image: np.ndarray    # decoded: uint8 (H, W) or (H, W, 3) BGR (OpenCV order), uint16 for 16-bit PNG


@dataclass(frozen=True)
class GridMsg:
    """A decoded ``foxglove.Grid``: layers in the :mod:`nav.terrain_map` convention (row = +y)."""
    t_s: float
    frame_id: str
    origin_xy_m: tuple[float, float]
    z_m: float
    cell_size_m: float
    layers: dict
    orientation_xyzw: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 1.0)
    cell_size_y_m: float | None = None

    def terrain_map(self, layer: str = "elevation_m"):
        """The layer as a :class:`nav.TerrainMap` (axis-aligned square-cell grids only)."""
        from nav.terrain_map import TerrainMap

        if layer not in self.layers:
            raise KeyError(f"layer {layer!r} not in this grid (has {sorted(self.layers)})")
        if np.abs(np.asarray(self.orientation_xyzw) - (0, 0, 0, 1)).max() > 1e-9:
            raise ValueError(f"grid is rotated (orientation {self.orientation_xyzw}); a TerrainMap is axis-aligned")
        if self.cell_size_y_m is not None and abs(self.cell_size_y_m - self.cell_size_m) > 1e-12:
            raise ValueError(f"grid cells are {self.cell_size_m} x {self.cell_size_y_m} m; "
                             "a TerrainMap has square cells")
        return TerrainMap(self.layers[layer], self.cell_size_m, self.origin_xy_m, source=f"mcap grid t={self.t_s:.3f}")


@dataclass(frozen=True)
class VOMsg:
    t_s: float
    seq: int
    ok: bool
    reason: str
    inliers: int | None
    T_prev_curr: np.ndarray | None
    stats: dict = field(default_factory=dict)


@dataclass(frozen=True)
class SceneMsg:
    t_s: float
    frame_id: str
    lines: list           # of (N, 3) float arrays
    cylinders: np.ndarray  # (M, 5): x, y, z_base, diameter, height
    replace: bool = False


@dataclass(frozen=True)
class RawMsg:
    """A message this module does not decode (a foreign encoding)."""
    schema_name: str
    encoding: str
    data: bytes


class LoggedMessage(NamedTuple):
    topic: str
    t_s: float          # MCAP log time, seconds
    msg: Any


# ================================================================================  writer
_COMPRESSION = ("zstd", "lz4", "none")


class McapLogger:
    """Write a traverse log (MCAP, JSON messages, Foxglove schemas). A context manager.

    Parameters
    ----------
    path : str, Path or binary file object
        Output file. A path is created (``overwrite=False`` refuses an existing file); a file
        object (``io.BytesIO``...) is written to and flushed but not closed.
    metadata : dict
        Describes the traverse (scenario, rover, planet, seed, backend, git revision...); written
        at once as the MCAP metadata record ``"rovernav"`` (str values as they are, others as JSON),
        so even a killed traverse's log says what it was. Must be JSON-serialisable.
    min_interval_s : dict, optional
        Topic pattern (``fnmatch``) -> minimum log-time interval between written messages.
    compression : {"zstd", "lz4", "none"}
        Chunk compression (both codecs come with the ``mcap`` package).
    chunk_size : int
        Bytes of uncompressed messages per chunk before it is written out.
    flush_interval_s : float
        Log time after which a chunk is written out even if not full (bounds what a kill loses).
    fsync : bool
        ``os.fsync`` after every write-out (power-loss safety on hardware; paths only).
    overwrite : bool
        Replace an existing file at ``path``.

    Every write method takes ``t_s`` first (seconds on the traverse clock, see the module
    docstring), returns True when written and False when skipped by a rate limit, and raises
    ``ValueError`` after :meth:`close`. Methods are thread-safe.
    """

    def __init__(self, path, *, metadata: Mapping, min_interval_s: Mapping[str, float] | None = None,
                 compression: str = "zstd", chunk_size: int = 1 << 20, flush_interval_s: float = 1.0,
                 fsync: bool = False, overwrite: bool = False):
        from mcap.writer import CompressionType, Writer

        if not isinstance(metadata, Mapping):
            raise TypeError(f"metadata must be a dict, got {type(metadata).__name__}")
        meta_record = self._metadata_record(metadata, "metadata")
        if compression not in _COMPRESSION:
            raise ValueError(f"compression = {compression!r}: must be one of {_COMPRESSION}")
        if not (isinstance(chunk_size, int) and chunk_size > 0):
            raise ValueError(f"chunk_size = {chunk_size!r}: must be an int > 0 (bytes)")
        if not (float(flush_interval_s) >= 0 and math.isfinite(float(flush_interval_s))):
            raise ValueError(f"flush_interval_s = {flush_interval_s!r}: must be a finite number >= 0")
        self._limits: list[tuple[str, float]] = []
        for pat, v in (min_interval_s or {}).items():
            self._limits.append((str(pat), self._check_interval(v, f"min_interval_s[{pat!r}]")))
        self._limit_cache: dict[str, float] = {}

        if isinstance(path, (str, os.PathLike)):
            self.file_path = Path(path)
            self._fh: BinaryIO = open(self.file_path, "wb" if overwrite else "xb")
            self._own_fh = True
        elif hasattr(path, "write"):
            self.file_path = None
            self._fh = path
            self._own_fh = False
        else:
            raise TypeError(f"path must be a file path or a binary file object, got {type(path).__name__}")
        self._fsync = bool(fsync) and self._own_fh
        self._flush_interval_s = float(flush_interval_s)
        self._lock = threading.RLock()
        self._closed = False
        self._schemas: dict[str, int] = {}
        self._channels: dict[str, tuple[int, str]] = {}
        self._seq: dict[str, int] = {}
        self._last_t: dict[str, float] = {}
        self._last_flush_t = 0.0
        self._latest_t = 0.0
        #: per topic: {"messages": n, "bytes": payload bytes, "skipped": n rate-limited}
        self.stats: dict[str, dict] = {}
        ctype = {"zstd": CompressionType.ZSTD, "lz4": CompressionType.LZ4, "none": CompressionType.NONE}[compression]
        try:
            self._writer = Writer(self._fh, chunk_size=chunk_size, compression=ctype)
            self._writer.start(profile="", library="rovernav hil.mcaplog")
            self._writer.add_metadata("rovernav.log", {
                "format_version": FORMAT_VERSION, "time_base": "seconds on the traverse's injected clock",
                "nonfinite": "non-finite floats in JSON are null"})
            self._writer.add_metadata("rovernav", meta_record[0])
            self._writer.add_metadata("rovernav.types", meta_record[1])
            self._sync()
        except BaseException:
            if self._own_fh:
                self._fh.close()
            raise

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> "McapLogger":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None and not self._closed:
            try:
                self.log(self._latest_t, "fatal", f"traverse aborted: {exc_type.__name__}: {exc}",
                         name="rovernav.mcaplog")
            except Exception:   # never mask the original exception
                log.exception("could not log the abort to the MCAP file")
        self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Write the summary, indexes and footer, and close the file. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._writer.finish()
                self._fh.flush()
                if self._fsync:
                    os.fsync(self._fh.fileno())
            finally:
                if self._own_fh:
                    self._fh.close()

    def flush(self) -> None:
        """Write the chunk in progress out to the file now (and fsync if asked)."""
        with self._lock:
            self._require_open()
            self._writer.flush()
            self._sync()

    def _sync(self):
        self._fh.flush()
        if self._fsync:
            os.fsync(self._fh.fileno())

    def _require_open(self):
        if self._closed:
            raise ValueError("McapLogger: the log is closed; no more writes")

    # ------------------------------------------------------------------ rate limits
    @staticmethod
    def _check_interval(v, what: str) -> float:
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise TypeError(f"{what} must be a number of seconds, got {v!r}") from None
        if not (math.isfinite(f) and f >= 0):
            raise ValueError(f"{what} = {v!r}: must be a finite number >= 0")
        return f

    def min_interval_for(self, topic: str) -> float:
        """The configured minimum interval of ``topic`` (0 when unlimited)."""
        v = self._limit_cache.get(topic)
        if v is None:
            v = next((iv for pat, iv in self._limits if fnmatch.fnmatchcase(topic, pat)), 0.0)
            self._limit_cache[topic] = v
        return v

    def due(self, topic: str, t_s: float, min_interval_s: float | None = None) -> bool:
        """Whether a message on ``topic`` at ``t_s`` would be written (not skipped by a rate limit)."""
        iv = (self.min_interval_for(topic) if min_interval_s is None
              else self._check_interval(min_interval_s, "min_interval_s"))
        last = self._last_t.get(topic)
        t = float(t_s)
        # a clock that went back (a new run on the same log) resets the limiter
        return last is None or iv <= 0 or t - last >= iv or t < last

    # ------------------------------------------------------------------ the write path
    def _write(self, topic: str, schema_name: str, t_s, build, min_interval_s=None, schema: dict | None = None) -> bool:
        if not isinstance(topic, str) or not topic:
            raise ValueError(f"topic must be a non-empty string, got {topic!r}")
        ns = _ns(t_s)
        with self._lock:
            self._require_open()
            if not self.due(topic, t_s, min_interval_s):
                self.stats.setdefault(topic, {"messages": 0, "bytes": 0, "skipped": 0})["skipped"] += 1
                return False
            ch = self._channels.get(topic)
            if ch is not None and ch[1] != schema_name:
                raise ValueError(f"topic {topic!r} carries {ch[1]}; cannot write a {schema_name} to it")
        data = _dumps(build(ns))
        with self._lock:
            self._require_open()
            ch = self._channels.get(topic)
            if ch is None:
                sid = self._schemas.get(schema_name)
                if sid is None:
                    sdict = schema if schema is not None else (
                        SCHEMAS.get(schema_name) or {"title": schema_name, "type": "object", "properties": {}})
                    sid = self._writer.register_schema(schema_name, "jsonschema", _dumps(sdict))
                    self._schemas[schema_name] = sid
                ch = (self._writer.register_channel(topic, "json", sid), schema_name)
                self._channels[topic] = ch
            elif ch[1] != schema_name:
                raise ValueError(f"topic {topic!r} carries {ch[1]}; cannot write a {schema_name} to it")
            seq = self._seq.get(topic, 0)
            self._seq[topic] = seq + 1
            self._writer.add_message(ch[0], log_time=ns, data=data, publish_time=ns, sequence=seq)
            t = ns * 1e-9
            self._last_t[topic] = t
            self._latest_t = max(self._latest_t, t)
            st = self.stats.setdefault(topic, {"messages": 0, "bytes": 0, "skipped": 0})
            st["messages"] += 1
            st["bytes"] += len(data)
            gap = t - self._last_flush_t
            if gap >= self._flush_interval_s or -gap > self._flush_interval_s:   # (time went back: a reset)
                self._writer.flush()
                self._sync()
                self._last_flush_t = t
        return True

    @staticmethod
    def _metadata_record(metadata: Mapping, what: str) -> tuple[dict, dict]:
        values, types = {}, {}
        for k, v in metadata.items():
            if not isinstance(k, str):
                raise TypeError(f"{what} keys must be str, got {k!r}")
            if isinstance(v, str):
                values[k] = v
            else:
                try:
                    values[k] = _dumps(_jsonable(v, f"{what}[{k!r}]")).decode()
                except (TypeError, ValueError) as e:
                    raise TypeError(f"{what}[{k!r}]: not JSON-serialisable ({e})") from None
                types[k] = "json"
        return values, types

    def add_metadata(self, name: str, metadata: Mapping) -> None:
        """Write another metadata record (e.g. ``"summary"`` at the end of a traverse)."""
        values, types = self._metadata_record(metadata, "metadata")
        with self._lock:
            self._require_open()
            self._writer.add_metadata(str(name), values)
            if types:
                self._writer.add_metadata(f"{name}.types", types)

    def attach(self, t_s: float, name: str, data: bytes, media_type: str = "application/octet-stream") -> None:
        """Attach a file (the scenario YAML, summary.json...) to the log."""
        ns = _ns(t_s)
        with self._lock:
            self._require_open()
            self._writer.add_attachment(create_time=ns, log_time=ns, name=str(name), media_type=str(media_type),
                                        data=bytes(data))

    # ------------------------------------------------------------------ typed writers
    def telemetry(self, t_s: float, tel, *, topic: str = TOPIC_TELEMETRY, min_interval_s: float | None = None) -> bool:
        """Log a :class:`drivers.base.Telemetry` (its own ``t_s`` becomes the message timestamp)."""
        from drivers.base import Fault, Telemetry

        if not isinstance(tel, Telemetry):
            raise TypeError(f"tel must be a drivers.base.Telemetry, got {type(tel).__name__}")

        def build(ns):
            t = float(tel.t_s)
            stamp = _stamp(_ns(t, "tel.t_s")) if math.isfinite(t) and 0 <= t < _MAX_T_S else _stamp(0)
            imu = tel.imu
            bat = tel.battery
            faults = int(tel.faults)
            return {
                "timestamp": stamp, "t_s": _fnum(t), "seq": int(tel.seq),
                "encoder_counts": [int(v) for v in np.asarray(tel.encoder_counts).ravel().tolist()],
                "wheel_speed_radps": _flist(tel.wheel_speed_radps), "steer_rad": _flist(tel.steer_rad),
                "motor_current_a": _flist(tel.motor_current_a),
                "imu": None if imu is None else {"t_s": _fnum(imu.t_s), "gyro_radps": _flist(imu.gyro_radps),
                                                 "accel_mps2": _flist(imu.accel_mps2)},
                "battery": None if bat is None else {"t_s": _fnum(bat.t_s), "voltage_v": _fnum(bat.voltage_v),
                                                     "current_a": _fnum(bat.current_a),
                                                     "state_of_charge": _fnum(bat.state_of_charge)},
                "heading_rad": _fnum(tel.heading_rad), "faults": faults,
                "fault_names": _fault_names(faults, Fault),
                "armed": bool(tel.armed), "extra": _jsonable(dict(tel.extra), "tel.extra", strict=False)}
        return self._write(topic, "rovernav.Telemetry", t_s, build, min_interval_s)

    def command(self, t_s: float, vx_mps: float | None = None, wz_radps: float | None = None, *,
                wheel_speed_radps=None, steer_rad=None, source: str = "", topic: str = TOPIC_COMMAND,
                min_interval_s: float | None = None) -> bool:
        """Log a motion command: a body twist ``(vx_mps, wz_radps)`` and/or per-wheel targets."""
        twist = vx_mps is not None or wz_radps is not None
        if twist and (vx_mps is None or wz_radps is None):
            raise ValueError("a twist command needs both vx_mps and wz_radps")
        if not twist and wheel_speed_radps is None:
            raise ValueError("command needs a twist (vx_mps, wz_radps) or wheel_speed_radps")

        def build(ns):
            return {"timestamp": _stamp(ns),
                    "vx_mps": None if vx_mps is None else _fnum(vx_mps),
                    "wz_radps": None if wz_radps is None else _fnum(wz_radps),
                    "wheel_speed_radps": [] if wheel_speed_radps is None else _flist(wheel_speed_radps),
                    "steer_rad": [] if steer_rad is None else _flist(steer_rad), "source": str(source)}
        return self._write(topic, "rovernav.Command", t_s, build, min_interval_s)

    def event(self, t_s: float, kind: str, detail=None, *, topic: str = TOPIC_EVENTS,
              min_interval_s: float | None = None) -> bool:
        """Log an executive event: ``kind`` (``"replan"``, ``"fault"``, ``"goal_reached"``...) and a
        ``detail`` dict of JSON-able values (numbers, strings, lists, numpy arrays, nested dicts)."""
        if not isinstance(kind, str) or not kind:
            raise ValueError(f"kind must be a non-empty string, got {kind!r}")
        if detail is not None and not isinstance(detail, Mapping):
            raise TypeError(f"detail must be a dict or None, got {type(detail).__name__}")
        det = _jsonable(dict(detail or {}), "detail")
        return self._write(topic, "rovernav.Event", t_s,
                           lambda ns: {"timestamp": _stamp(ns), "kind": kind, "detail": det}, min_interval_s)

    def log(self, t_s: float, level, text: str, *, name: str = "rovernav", file: str = "", line: int = 0,
            topic: str = TOPIC_LOG) -> bool:
        """Log a text line (``foxglove.Log``; Foxglove's Log panel shows it).

        ``level``: a name (``"debug"``, ``"info"``, ``"warning"``, ``"error"``, ``"fatal"``), a
        foxglove.LogLevel number 0-5, or a :mod:`logging` level (10-50). ERROR and above write the
        chunk out at once, so the lines before a crash survive it.
        """
        lv = _level(level)

        def build(ns):
            return {"timestamp": _stamp(ns), "level": lv, "message": str(text), "name": str(name),
                    "file": str(file), "line": max(int(line), 0)}
        ok = self._write(topic, "foxglove.Log", t_s, build)
        if ok and lv >= LOG_LEVELS["error"]:
            self.flush()
        return ok

    def transform(self, t_s: float, parent_frame_id: str, child_frame_id: str, T_parent_child, *,
                  topic: str = TOPIC_TF, min_interval_s: float | None = None) -> bool:
        """Log ``T_parent_child`` (4x4) as a ``foxglove.FrameTransform`` (e.g. world -> body)."""
        T = _check_T(T_parent_child, "T_parent_child")

        def build(ns):
            p = _pose_json(T)
            return {"timestamp": _stamp(ns), "parent_frame_id": str(parent_frame_id),
                    "child_frame_id": str(child_frame_id), "translation": p["position"], "rotation": p["orientation"]}
        return self._write(topic, "foxglove.FrameTransform", t_s, build, min_interval_s)

    def pose(self, topic: str, t_s: float, T_world_body, frame_id: str = FRAME_WORLD, *,
             min_interval_s: float | None = None) -> bool:
        """Log a 4x4 pose in ``frame_id`` as a ``foxglove.PoseInFrame``."""
        T = _check_T(T_world_body, "T_world_body")
        return self._write(topic, "foxglove.PoseInFrame", t_s,
                           lambda ns: {"timestamp": _stamp(ns), "frame_id": str(frame_id), "pose": _pose_json(T)},
                           min_interval_s)

    def path(self, topic: str, t_s: float, points, frame_id: str = FRAME_WORLD, *, z_m: float = 0.0,
             min_interval_s: float | None = None) -> bool:
        """Log a path as a ``foxglove.PosesInFrame``.

        ``points``: ``(N, 2)`` xy (at height ``z_m``, each pose facing the next point), ``(N, 3)``
        xyz (same), or ``(N, 4, 4)`` full poses. Must be finite.
        """
        P = np.asarray(points, dtype=np.float64)
        if P.size == 0:
            P = np.zeros((0, 3))
        if P.ndim == 3 and P.shape[1:] == (4, 4):
            for i in range(P.shape[0]):
                _check_T(P[i], f"points[{i}]")
            poses = lambda: [_pose_json(T) for T in P]  # noqa: E731
        elif P.ndim == 2 and P.shape[1] in (2, 3):
            if not np.isfinite(P).all():
                raise ValueError("path points must be finite")
            if P.shape[0] and P.shape[1] == 2:
                P = np.column_stack([P, np.full(len(P), float(z_m))])

            def poses():
                if len(P) == 0:
                    return []
                d = np.diff(P[:, :2], axis=0)
                yaw = np.arctan2(d[:, 1], d[:, 0]) if len(d) else np.zeros(0)
                yaw = np.concatenate([yaw, yaw[-1:] if len(yaw) else [0.0]])
                return [_yaw_pose(float(x), float(y), float(z), float(a)) for (x, y, z), a in zip(P.tolist(), yaw)]
        else:
            raise ValueError(f"points must be (N, 2) xy, (N, 3) xyz or (N, 4, 4) poses, got shape {P.shape}")
        return self._write(topic, "foxglove.PosesInFrame", t_s,
                           lambda ns: {"timestamp": _stamp(ns), "frame_id": str(frame_id), "poses": poses()},
                           min_interval_s)

    def image(self, topic: str, t_s: float, img, format: str = "png", *, frame_id: str = FRAME_CAMERA_LEFT,
              jpeg_quality: int = 90, min_interval_s: float | None = None) -> bool:
        """Log an image as a ``foxglove.CompressedImage``.

        ``img``: uint8 ``(H, W)`` grey, ``(H, W, 3)`` BGR or ``(H, W, 4)`` BGRA (OpenCV channel
        order), uint16 ``(H, W)`` for PNG; or already-compressed ``bytes`` in ``format``.
        Encoding happens only when the rate limit lets the message through.
        """
        fmt = {"jpg": "jpeg"}.get(str(format).lower(), str(format).lower())
        if fmt not in ("png", "jpeg"):
            raise ValueError(f"format = {format!r}: must be 'png' or 'jpeg'")
        if isinstance(img, (bytes, bytearray, memoryview)):
            raw = bytes(img)
            encode = lambda: raw  # noqa: E731
        else:
            a = np.asarray(img)
            ok_dtype = a.dtype == np.uint8 or (a.dtype == np.uint16 and fmt == "png" and a.ndim == 2)
            if not ok_dtype:
                raise ValueError(f"image dtype {a.dtype} with format {fmt!r}: need uint8 (or uint16 grey for png)")
            if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (1, 3, 4))) or a.shape[0] < 1 or a.shape[1] < 1:
                raise ValueError(f"image must be (H, W), (H, W, 3) or (H, W, 4), got shape {a.shape}")
            if not (1 <= int(jpeg_quality) <= 100):
                raise ValueError(f"jpeg_quality = {jpeg_quality!r}: must be in 1..100")

            def encode():
                import cv2

                params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if fmt == "jpeg" else []
                ok, buf = cv2.imencode("." + ("jpg" if fmt == "jpeg" else "png"), np.ascontiguousarray(a), params)
                if not ok:
                    raise ValueError(f"OpenCV could not encode a {a.shape} {a.dtype} image as {fmt}")
                return buf.tobytes()

        return self._write(topic, "foxglove.CompressedImage", t_s,
                           lambda ns: {"timestamp": _stamp(ns), "frame_id": str(frame_id),
                                       "data": base64.b64encode(encode()).decode("ascii"), "format": fmt},
                           min_interval_s)

    def grid(self, topic: str, t_s: float, source, layers: Sequence[str] | None = None, *,
             frame_id: str = FRAME_WORLD, z_m: float = 0.0, min_interval_s: float | None = None) -> bool:
        """Log map layers as one ``foxglove.Grid`` (cells interleaved, one field per layer).

        ``source``: a :class:`nav.TerrainMap` (layer ``elevation_m``), a :class:`nav.costmap.CostMap`
        (layers from ``elevation_m``, ``cost``, ``slope_deg``, ``step_m``, ``roughness_m``,
        ``reason``; default the first, second and last) or a tuple ``(arrays, origin_xy_m,
        cell_size_m)`` with ``arrays`` a 2-D array, a ``(L, rows, cols)`` stack or a dict of 2-D
        arrays. Layers keep their dtype (bool -> uint8, float16 -> float32, int64 -> int32);
        NaN and inf survive (binary). The grid's corner sits at ``(origin_xy_m, z_m)`` and row ``r``
        grows with +y, as in :mod:`nav.terrain_map` and Foxglove's Grid.
        """
        arrays, (ox, oy), cell = _grid_layers(source, layers)
        z = float(z_m)
        if not math.isfinite(z):
            raise ValueError(f"z_m = {z_m!r}: must be finite")

        def build(ns):
            fields, cols, cs, rs, data = _encode_grid(arrays)
            return {"timestamp": _stamp(ns), "frame_id": str(frame_id),
                    "pose": {"position": {"x": ox, "y": oy, "z": z},
                             "orientation": {"x": 0.0, "y": 0.0, "z": 0.0, "w": 1.0}},
                    "column_count": cols, "cell_size": {"x": cell, "y": cell}, "row_stride": rs, "cell_stride": cs,
                    "fields": fields, "data": base64.b64encode(data).decode("ascii")}
        return self._write(topic, "foxglove.Grid", t_s, build, min_interval_s)

    def vo(self, t_s: float, ok: bool, T_prev_curr=None, *, seq: int = 0, inliers: int | None = None,
           reason: str = "", stats: Mapping | None = None, topic: str = TOPIC_VO,
           min_interval_s: float | None = None) -> bool:
        """Log one visual-odometry step: success, the relative motion, inlier count, free-form stats."""
        T = None if T_prev_curr is None else _check_T(T_prev_curr, "T_prev_curr")
        st = _jsonable(dict(stats or {}), "stats")

        def build(ns):
            return {"timestamp": _stamp(ns), "seq": int(seq), "ok": bool(ok), "reason": str(reason),
                    "inliers": None if inliers is None else int(inliers),
                    "delta": None if T is None else _pose_json(T), "stats": st}
        return self._write(topic, "rovernav.VO", t_s, build, min_interval_s)

    def scene(self, topic: str, t_s: float, *, lines: Sequence = (), cylinders=None, frame_id: str = FRAME_WORLD,
              line_color=(0.1, 0.6, 1.0, 1.0), line_width_m: float = 0.02, cylinder_color=(0.6, 0.4, 0.3, 1.0),
              replace: bool = True, min_interval_s: float | None = None) -> bool:
        """Log a ``foxglove.SceneUpdate``: polylines (candidate arcs...) and cylinders (rocks...).

        ``lines``: a sequence of ``(N, 2)`` or ``(N, 3)`` point arrays (one line strip each);
        ``cylinders``: ``(M, 5)`` rows ``x, y, z_base, diameter, height``. ``replace`` first deletes
        everything earlier on the topic, so the update shows the current set only.
        """
        ls = []
        for i, pts in enumerate(lines):
            p = np.asarray(pts, dtype=np.float64)
            if p.ndim != 2 or p.shape[1] not in (2, 3) or not np.isfinite(p).all():
                raise ValueError(f"lines[{i}] must be a finite (N, 2) or (N, 3) array, got shape {p.shape}")
            if p.shape[1] == 2:
                p = np.column_stack([p, np.zeros(len(p))])
            ls.append(p)
        cyl = np.zeros((0, 5)) if cylinders is None else np.asarray(cylinders, dtype=np.float64).reshape(-1, 5)
        if not np.isfinite(cyl).all():
            raise ValueError("cylinders must be finite")
        lc, cc = _color_json(line_color), _color_json(cylinder_color)

        def build(ns):
            stamp = _stamp(ns)
            ident = {"orientation": {"x": 0.0, "y": 0.0, "z": 0.0, "w": 1.0}}

            def entity(eid, **prims):
                base = {"timestamp": stamp, "frame_id": str(frame_id), "id": eid, "lifetime": {"sec": 0, "nsec": 0},
                        "frame_locked": False, "metadata": []}
                for k in ("arrows", "cubes", "spheres", "cylinders", "lines", "triangles", "texts", "models"):
                    base[k] = prims.get(k, [])
                return base
            ents = []
            if ls:
                ents.append(entity(f"{topic}/lines", lines=[
                    {"type": 0, "pose": dict(ident, position={"x": 0.0, "y": 0.0, "z": 0.0}),
                     "thickness": float(line_width_m), "scale_invariant": False,
                     "points": [{"x": x, "y": y, "z": z} for x, y, z in p.tolist()],
                     "color": lc, "colors": [], "indices": []} for p in ls]))
            if len(cyl):
                ents.append(entity(f"{topic}/cylinders", cylinders=[
                    {"pose": dict(ident, position={"x": x, "y": y, "z": zb + 0.5 * h}),
                     "size": {"x": d, "y": d, "z": h}, "bottom_scale": 1.0, "top_scale": 1.0, "color": cc}
                    for x, y, zb, d, h in cyl.tolist()]))
            dels = [{"timestamp": stamp, "type": 1, "id": ""}] if replace else []
            return {"deletions": dels, "entities": ents}
        return self._write(topic, "foxglove.SceneUpdate", t_s, build, min_interval_s)

    def json(self, topic: str, t_s: float, schema_name: str, obj: Mapping, *, schema: Mapping | None = None,
             min_interval_s: float | None = None, plain: bool = False) -> bool:
        """Log any JSON object under ``schema_name`` (a known name in :data:`SCHEMAS`, or a new one
        with its JSON Schema given as ``schema``; without it the schema is ``{"type": "object"}``).

        ``plain=True``: ``obj`` is already plain JSON data (dicts with str keys, lists, str, int, bool,
        None and finite floats — no numpy values): it is written as it is, without the conversion walk
        (a non-finite float still raises ``ValueError``). For high-rate records.
        """
        if not isinstance(schema_name, str) or not schema_name:
            raise ValueError(f"schema_name must be a non-empty string, got {schema_name!r}")
        if not isinstance(obj, Mapping):
            raise TypeError(f"obj must be a dict (a JSON object), got {type(obj).__name__}")
        payload = obj if plain else _jsonable(obj, "obj")
        sd = None
        if schema is not None:
            sd = _jsonable(dict(schema), "schema")
            if sd.get("type") != "object" or not isinstance(sd.get("properties"), dict):
                raise ValueError("schema must be a JSON Schema with \"type\": \"object\" and \"properties\" "
                                 "(Foxglove's reader requires both)")
        return self._write(topic, schema_name, t_s, lambda ns: payload, min_interval_s, schema=sd)

    # ------------------------------------------------------------------ logging bridge
    def logging_handler(self, clock, level=logging.INFO, topic: str = TOPIC_LOG) -> "McapLogHandler":
        """A :class:`logging.Handler` that copies records into this log, stamped by ``clock.now()``."""
        return McapLogHandler(self, clock, level=level, topic=topic)


def _level(level) -> int:
    if isinstance(level, str):
        key = level.strip().lower()
        v = LOG_LEVELS.get(key, _LEVEL_ALIASES.get(key))
        if v is None:
            raise ValueError(f"level = {level!r}: must be one of {sorted(LOG_LEVELS)}")
        return v
    if isinstance(level, (bool, float)) or not isinstance(level, (int, np.integer)):
        raise TypeError(f"level must be a name or an int, got {level!r}")
    lv = int(level)
    if 0 <= lv <= 5:
        return lv
    if lv >= 10:   # a logging module level: 10 DEBUG .. 50 CRITICAL
        return min(5, lv // 10)
    raise ValueError(f"level = {level!r}: foxglove levels are 0..5, logging levels 10..50")


class McapLogHandler(logging.Handler):
    """Copies :mod:`logging` records into a :class:`McapLogger` as ``foxglove.Log`` messages.

    Records are stamped with ``clock.now()`` (the traverse clock), not their wall-clock time.
    Records arriving after the log is closed are dropped.
    """

    def __init__(self, logger: McapLogger, clock, level=logging.INFO, topic: str = TOPIC_LOG):
        super().__init__(level)
        self._mcap = logger
        self._clock = clock
        self._topic = topic
        self._busy = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        if self._mcap.closed or getattr(self._busy, "on", False):
            return
        self._busy.on = True
        try:
            t = max(0.0, float(self._clock.now()))
            lv = min(5, max(1, int(record.levelno) // 10))   # logging 10..50 -> foxglove 1..5
            self._mcap.log(t, lv, self.format(record), name=record.name, file=record.pathname or "",
                           line=record.lineno or 0, topic=self._topic)
        except ValueError:
            pass   # closed between the check and the write
        except Exception:
            self.handleError(record)
        finally:
            self._busy.on = False


# ================================================================================  reader
def _decode(schema_name: str, m: dict):
    """A typed object from a JSON message by schema name (unknown names: the dict)."""
    if schema_name == "rovernav.Telemetry":
        from drivers.base import BatterySample, Fault, ImuSample, Telemetry

        imu = m.get("imu")
        bat = m.get("battery")
        return Telemetry(
            t_s=_nan(m.get("t_s")) if "t_s" in m else _t_from_stamp(m["timestamp"]),
            seq=int(m.get("seq", 0)),
            encoder_counts=np.array(m.get("encoder_counts") or [], dtype=np.int64),
            wheel_speed_radps=_farr(m.get("wheel_speed_radps")), steer_rad=_farr(m.get("steer_rad")),
            motor_current_a=_farr(m.get("motor_current_a")),
            imu=None if imu is None else ImuSample(_nan(imu.get("t_s")), _farr(imu.get("gyro_radps")),
                                                   _farr(imu.get("accel_mps2"))),
            battery=None if bat is None else BatterySample(
                _nan(bat.get("t_s")), _nan(bat.get("voltage_v")), _nan(bat.get("current_a")),
                _nan(bat.get("state_of_charge"))),
            heading_rad=_nan(m.get("heading_rad")), faults=Fault(int(m.get("faults", 0))),
            armed=bool(m.get("armed", False)), extra=dict(m.get("extra") or {}))
    t = _t_from_stamp(m["timestamp"]) if isinstance(m.get("timestamp"), dict) else math.nan
    if schema_name == "rovernav.Command":
        w, s = m.get("wheel_speed_radps"), m.get("steer_rad")
        return CommandMsg(t, _nan(m.get("vx_mps")), _nan(m.get("wz_radps")), _farr(w) if w else None,
                          _farr(s) if s else None, m.get("source", ""))
    if schema_name == "rovernav.Event":
        return EventMsg(t, m.get("kind", ""), m.get("detail") or {})
    if schema_name == "rovernav.VO":
        d = m.get("delta")
        return VOMsg(t, int(m.get("seq", 0)), bool(m.get("ok")), m.get("reason", ""), m.get("inliers"),
                     None if d is None else _T_from_pose(d), dict(m.get("stats") or {}))
    if schema_name == "foxglove.Log":
        return LogMsg(t, int(m.get("level", 0)), m.get("message", ""), m.get("name", ""))
    if schema_name == "foxglove.PoseInFrame":
        return PoseMsg(t, m.get("frame_id", ""), _T_from_pose(m.get("pose") or {}))
    if schema_name == "foxglove.PosesInFrame":
        poses = m.get("poses") or []
        return PathMsg(t, m.get("frame_id", ""),
                       np.stack([_T_from_pose(p) for p in poses]) if poses else np.zeros((0, 4, 4)))
    if schema_name == "foxglove.FrameTransform":
        T = _T_from_pose({"position": m.get("translation"), "orientation": m.get("rotation")})
        return TransformMsg(t, m.get("parent_frame_id", ""), m.get("child_frame_id", ""), T)
    if schema_name == "foxglove.CompressedImage":
        import cv2

        buf = np.frombuffer(base64.b64decode(m.get("data", "")), dtype=np.uint8)
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if buf.size else None
        if img is None:
            img = np.zeros((0, 0), np.uint8)
        return ImageMsg(t, m.get("frame_id", ""), m.get("format", ""), img)
    if schema_name == "foxglove.Grid":
        p = m.get("pose") or {}
        pos, ori = p.get("position") or {}, p.get("orientation") or {}
        cs = m.get("cell_size") or {}
        return GridMsg(t, m.get("frame_id", ""), (_nan(pos.get("x", 0.0)), _nan(pos.get("y", 0.0))),
                       _nan(pos.get("z", 0.0)), _nan(cs.get("x")), _decode_grid(m),
                       tuple(_nan(ori.get(k, 1.0 if k == "w" else 0.0)) for k in "xyzw"), _nan(cs.get("y")))
    if schema_name == "foxglove.SceneUpdate":
        lines, cyls = [], []
        frame = ""
        for e in m.get("entities") or []:
            frame = e.get("frame_id", frame)
            for ln in e.get("lines") or []:
                o = ((ln.get("pose") or {}).get("position") or {})
                off = np.array([_nan(o.get(k, 0.0)) for k in "xyz"])
                lines.append(np.array([[_nan(q.get(k, 0.0)) for k in "xyz"] for q in ln.get("points") or []],
                                      dtype=np.float64).reshape(-1, 3) + off)
            for c in e.get("cylinders") or []:
                pos = (c.get("pose") or {}).get("position") or {}
                size = c.get("size") or {}
                h = _nan(size.get("z"))
                cyls.append((_nan(pos.get("x")), _nan(pos.get("y")), _nan(pos.get("z")) - 0.5 * h,
                             _nan(size.get("x")), h))
        replace = any(int(d.get("type", 0)) == 1 for d in m.get("deletions") or [])
        return SceneMsg(t, frame, lines, np.array(cyls, dtype=np.float64).reshape(-1, 5), replace)
    return m


class McapReader:
    """Read a traverse log written by :class:`McapLogger` (or any JSON MCAP), even a truncated one.

    Parameters
    ----------
    source : str, Path, bytes or seekable binary file object

    Attributes
    ----------
    complete : bool
        The file has its summary and footer (it was closed properly).
    truncated : bool
        The file ended early (a killed writer) or a record could not be parsed; reading stopped at
        the last complete chunk. ``truncation_reason`` says what was found. Known at open for
        files without a footer; set during iteration if a damaged record turns up.
    """

    def __init__(self, source):
        if isinstance(source, (str, os.PathLike)):
            self._fh = open(source, "rb")
            self._own = True
            self.name = str(source)
        elif isinstance(source, (bytes, bytearray, memoryview)):
            self._fh = io.BytesIO(bytes(source))
            self._own = True
            self.name = "<bytes>"
        elif hasattr(source, "read") and hasattr(source, "seek"):
            self._fh = source
            self._own = False
            self.name = getattr(source, "name", "<stream>")
        else:
            raise TypeError(f"source must be a path, bytes or a seekable binary file, got {type(source).__name__}")
        try:
            head = self._fh.read(8)
            if head != MCAP_MAGIC:
                raise ValueError(f"{self.name}: not an MCAP file (starts with {head!r}, expected {MCAP_MAGIC!r})")
            self._summary = None
            self.truncated = False
            self.truncation_reason = ""
            self._fh.seek(0, io.SEEK_END)
            size = self._fh.tell()
            self._fh.seek(size - 8 if size >= 16 else 0)
            if size >= 16 and self._fh.read(8) == MCAP_MAGIC:
                try:
                    from mcap.reader import SeekingReader

                    self._fh.seek(0)
                    self._summary = SeekingReader(self._fh).get_summary()
                except Exception as e:   # a damaged summary: read it as a stream
                    self.truncation_reason = f"unreadable summary ({type(e).__name__}: {e})"
            else:
                self.truncated = True
                self.truncation_reason = "no footer: the writer did not close the file (killed?)"
            if self._summary is None and not self.truncated:
                self.truncated = True
                self.truncation_reason = self.truncation_reason or "no summary section"
        except BaseException:
            self.close()
            raise
        self._meta = None

    @property
    def complete(self) -> bool:
        return self._summary is not None

    def close(self) -> None:
        if self._own:
            self._fh.close()

    def __enter__(self) -> "McapReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ record stream
    def _records(self, emit_chunks: bool):
        """Every record in file order, stopping quietly (and marking ``truncated``) at damage."""
        from mcap.records import Footer
        from mcap.stream_reader import StreamReader

        self._fh.seek(0)
        it = StreamReader(self._fh, emit_chunks=emit_chunks, validate_crcs=True).records
        while True:
            try:
                rec = next(it)
            except StopIteration:
                return
            except Exception as e:
                self.truncated = True
                if not self.truncation_reason:
                    self.truncation_reason = f"damaged or cut record at byte {self._fh.tell()} ({type(e).__name__})"
                return
            yield rec
            if isinstance(rec, Footer):
                return

    # ------------------------------------------------------------------ metadata, topics
    @property
    def metadata(self) -> dict:
        """All metadata records: ``{name: {key: value}}`` (JSON-typed values decoded)."""
        if self._meta is None:
            raw: dict[str, dict] = {}
            if self.complete:
                from mcap.reader import SeekingReader

                self._fh.seek(0)
                for rec in SeekingReader(self._fh).iter_metadata():
                    raw[rec.name] = dict(rec.metadata)
            else:
                from mcap.records import Metadata

                for rec in self._records(emit_chunks=True):
                    if isinstance(rec, Metadata):
                        raw[rec.name] = dict(rec.metadata)
            out = {}
            for name, values in raw.items():
                if name.endswith(".types") and name[:-6] in raw:
                    continue
                types = raw.get(f"{name}.types", {})
                out[name] = {k: (_json.loads(v) if types.get(k) == "json" else v) for k, v in values.items()}
            self._meta = out
        return self._meta

    @property
    def traverse_metadata(self) -> dict:
        """The ``metadata`` dict given to :class:`McapLogger`."""
        return self.metadata.get("rovernav", {})

    def topics(self) -> dict[str, str]:
        """``{topic: schema name}`` of every channel."""
        if self.complete:
            s = self._summary
            return {c.topic: (s.schemas[c.schema_id].name if c.schema_id in s.schemas else "")
                    for c in s.channels.values()}
        from mcap.records import Channel, Schema

        schemas, out = {}, {}
        for rec in self._records(emit_chunks=False):
            if isinstance(rec, Schema):
                schemas[rec.id] = rec.name
            elif isinstance(rec, Channel):
                out[rec.topic] = schemas.get(rec.schema_id, "")
        return out

    def message_count(self) -> int | None:
        """Messages in the file according to its summary (None for a truncated file)."""
        if self.complete and self._summary.statistics is not None:
            return int(self._summary.statistics.message_count)
        return None

    # ------------------------------------------------------------------ messages
    def _raw_messages(self, topics):
        """(schema name, schema encoding, channel, message) in file order."""
        if self.complete:
            from mcap.reader import SeekingReader

            self._fh.seek(0)
            try:
                it = SeekingReader(self._fh).iter_messages(topics=topics, log_time_order=False)
                for schema, channel, message in it:
                    yield (schema.name if schema else ""), channel, message
                return
            except Exception as e:   # damaged chunk in an indexed file: fall back to streaming
                self.truncated = True
                self.truncation_reason = f"damaged chunk ({type(e).__name__}: {e})"
                return
        from mcap.records import Channel, Message, Schema

        schemas, channels = {}, {}
        want = None if topics is None else set(topics)
        for rec in self._records(emit_chunks=False):
            if isinstance(rec, Schema):
                schemas[rec.id] = rec
            elif isinstance(rec, Channel):
                channels[rec.id] = rec
            elif isinstance(rec, Message):
                ch = channels.get(rec.channel_id)
                if ch is None or (want is not None and ch.topic not in want):
                    continue
                sch = schemas.get(ch.schema_id)
                yield (sch.name if sch else ""), ch, rec

    def messages(self, topics: Sequence[str] | str | None = None, *, raw: bool = False,
                 log_time_order: bool = False) -> Iterator[LoggedMessage]:
        """Yield :class:`LoggedMessage` ``(topic, t_s, msg)``.

        Parameters
        ----------
        topics : str or list of str, optional
            Only these topics (default all).
        raw : bool
            Yield the JSON dicts instead of typed objects (:class:`drivers.base.Telemetry`,
            :class:`GridMsg`, :class:`ImageMsg`, :class:`PoseMsg`...).
        log_time_order : bool
            Sort by log time (stable). Default: file order, which is the order the executive
            wrote in (its causal order). Sorting a truncated file holds it in memory.
        """
        if isinstance(topics, str):
            topics = [topics]
        it = self._iter(topics, raw)
        if log_time_order:
            return iter(sorted(it, key=lambda m: m.t_s))
        return it

    def _iter(self, topics, raw):
        for schema_name, channel, message in self._raw_messages(topics):
            t = message.log_time * 1e-9
            if channel.message_encoding != "json":
                raw_msg = RawMsg(schema_name, channel.message_encoding, bytes(message.data))
                yield LoggedMessage(channel.topic, t, raw_msg)
                continue
            obj = _json.loads(message.data)
            yield LoggedMessage(channel.topic, t, obj if raw else _decode(schema_name, obj))


def read_log(path, topics: Sequence[str] | str | None = None, *, raw: bool = False,
             log_time_order: bool = False) -> Iterator[LoggedMessage]:
    """Yield ``(topic, t_s, msg)`` from a traverse log (see :meth:`McapReader.messages`); reads
    truncated logs up to their last complete chunk."""
    with McapReader(path) as r:
        yield from r.messages(topics, raw=raw, log_time_order=log_time_order)


def repair(src, dst, *, overwrite: bool = False) -> int:
    """Rewrite a (truncated) log as a complete, indexed MCAP file; returns the messages copied.

    Everything readable is kept: schemas, channels, messages (in file order), metadata and
    attachments. ``src`` and ``dst`` must differ.
    """
    from mcap.records import Attachment, Channel, Message, Metadata, Schema
    from mcap.writer import Writer

    paths = isinstance(src, (str, os.PathLike)) and isinstance(dst, (str, os.PathLike))
    if paths and Path(src).resolve() == Path(dst).resolve():
        raise ValueError(f"repair: src and dst are the same file ({src}); write the repaired log elsewhere")
    n = 0
    with McapReader(src) as r, open(dst, "wb" if overwrite else "xb") as out:
        w = Writer(out)
        w.start(profile="", library="rovernav hil.mcaplog repair")
        sid, cid = {}, {}
        for rec in r._records(emit_chunks=False):
            if isinstance(rec, Schema) and rec.id not in sid:
                sid[rec.id] = w.register_schema(rec.name, rec.encoding, rec.data)
            elif isinstance(rec, Channel) and rec.id not in cid:
                cid[rec.id] = w.register_channel(rec.topic, rec.message_encoding, sid.get(rec.schema_id, 0),
                                                 dict(rec.metadata))
            elif isinstance(rec, Message) and rec.channel_id in cid:
                w.add_message(cid[rec.channel_id], log_time=rec.log_time, data=rec.data,
                              publish_time=rec.publish_time, sequence=rec.sequence)
                n += 1
            elif isinstance(rec, Metadata):
                w.add_metadata(rec.name, dict(rec.metadata))
            elif isinstance(rec, Attachment):
                w.add_attachment(rec.create_time, rec.log_time, rec.name, rec.media_type, rec.data)
        w.finish()
    return n
