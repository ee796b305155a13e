"""The traverse log (hil.mcaplog): MCAP + JSON + Foxglove schemas, typed round trips, crash safety.

Oracles: the ``mcap`` package's own reader (an independent MCAP parser), the MCAP and PNG/JPEG
magic bytes from their specifications, Foxglove's published schema field lists and enum codes
(written below from docs.foxglove.dev), Foxglove's FrameTransform semantics,
``jsonschema`` (when installed) plus a minimal checker (``_ref_jsonschema``), scipy's Rotation for
quaternions, and a cell-by-cell ``struct`` decoder of Foxglove's Grid layout.
"""
import base64
import io
import json
import math
import signal
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nav
from drivers.base import BatterySample, Fault, ImuSample, Telemetry
from hil import mcaplog
from hil.mcaplog import McapLogger, McapReader, read_log, repair
from sim.frames import T_world_body

sys.path.insert(0, str(Path(__file__).parent))
import _ref_jsonschema  # noqa: E402

try:
    import jsonschema
except ImportError:   # the minimal checker still runs
    jsonschema = None

ROOT = Path(__file__).resolve().parents[2]
MCAP_MAGIC = bytes([0x89, ord("M"), ord("C"), ord("A"), ord("P"), ord("0"), 0x0D, 0x0A])   # MCAP spec, "Magic"
PNG_SIGNATURE = bytes([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])                    # PNG spec 5.2
JPEG_SOI = bytes([0xFF, 0xD8])

# Field lists of Foxglove's message schemas (docs.foxglove.dev/docs/visualization/message-schemas).
TIME = {"sec", "nsec"}
VEC3, QUAT, COLOR, VEC2 = set("xyz"), set("xyzw"), set("rgba"), set("xy")
POSE = {"position", "orientation"}
FOXGLOVE_FIELDS = {
    "foxglove.CompressedImage": {"timestamp", "frame_id", "data", "format"},
    "foxglove.FrameTransform": {"timestamp", "parent_frame_id", "child_frame_id", "translation", "rotation"},
    "foxglove.PoseInFrame": {"timestamp", "frame_id", "pose"},
    "foxglove.PosesInFrame": {"timestamp", "frame_id", "poses"},
    "foxglove.Grid": {"timestamp", "frame_id", "pose", "column_count", "cell_size", "row_stride", "cell_stride",
                      "fields", "data"},
    "foxglove.Log": {"timestamp", "level", "message", "name", "file", "line"},
    "foxglove.SceneUpdate": {"deletions", "entities"},
}
SCENE_ENTITY = {"timestamp", "frame_id", "id", "lifetime", "frame_locked", "metadata", "arrows", "cubes", "spheres",
                "cylinders", "lines", "triangles", "texts", "models"}
LINE_PRIMITIVE = {"type", "pose", "thickness", "scale_invariant", "points", "color", "colors", "indices"}
CYLINDER_PRIMITIVE = {"pose", "size", "bottom_scale", "top_scale", "color"}
ENTITY_DELETION = {"timestamp", "type", "id"}
PACKED_FIELD = {"name", "offset", "type"}
NUMERIC_TYPE = {"UINT8": 1, "INT8": 2, "UINT16": 3, "INT16": 4, "UINT32": 5, "INT32": 6, "FLOAT32": 7, "FLOAT64": 8}
LOG_LEVEL = {"UNKNOWN": 0, "DEBUG": 1, "INFO": 2, "WARNING": 3, "ERROR": 4, "FATAL": 5}
NUMPY_OF = {1: "<u1", 2: "<i1", 3: "<u2", 4: "<i2", 5: "<u4", 6: "<i4", 7: "<f4", 8: "<f8"}


# ------------------------------------------------------------------------------------------ helpers
def _tel(t, n=6, seed=0):
    rng = np.random.default_rng(seed)
    return Telemetry(t, int(t * 50), rng.integers(-2**31, 2**31, n), rng.normal(size=n), rng.normal(size=n) * 0.3,
                     np.full(n, np.nan), imu=ImuSample(t, rng.normal(size=3) * 0.01, np.array([0.0, 0.0, 9.81])),
                     battery=BatterySample(t, 12.3), faults=Fault.NONE, armed=True)


def _full_log(buf_or_path, **kw):
    """One of every message kind, at traverse-like rates, over 3 s."""
    rng = np.random.default_rng(1)
    z = rng.normal(size=(20, 30)).astype(np.float32)
    z[2, 3] = np.nan
    tm = nav.TerrainMap(z, 0.2, (-3.0, 1.0))
    cm = nav.traversability(nav.TerrainMap(np.nan_to_num(z) * 0.02, 0.2, (-3.0, 1.0)), nav.load_rover("osr"))
    img = rng.integers(0, 256, (24, 32), dtype=np.uint8)
    with McapLogger(buf_or_path, metadata={"scenario": "unit", "seed": 7, "goal_xy_m": [5.0, 1.5]},
                    min_interval_s={"/camera/*": 1.0, "/map/*": 1.0}, **kw) as L:
        for i in range(150):
            t = i * 0.02
            L.telemetry(t, _tel(t, seed=i))
            L.command(t, 0.2, 0.05 * math.sin(t))
            L.transform(t, "world", "body", T_world_body(0.2 * t, 0.0, 0.0, 0.1 * t, 0.02, -0.01))
            L.image("/camera/left/compressed", t, img)
            L.grid("/map/known", t, tm)
            if i % 10 == 0:
                L.pose("/pose/estimated", t, T_world_body(0.2 * t, 0.01, 0.0, 0.1 * t, 0.0, 0.0))
                L.path("/path/planned", t, np.array([[0.2 * t, 0.0], [2.0, 1.0], [5.0, 1.5]]))
                L.vo(t, i % 20 == 0, T_world_body(0.004, 0, 0, 0.002, 0, 0), seq=i, inliers=50,
                     reason="" if i % 20 == 0 else "few inliers")
                L.event(t, "replan", {"changed_cells": i, "cost": math.inf})
                L.log(t, "info", f"cycle {i}")
                L.scene("/scene/arcs", t, lines=[[[0, 0], [1, 0.1 * j]] for j in range(3)],
                        cylinders=[[1.0, 2.0, 0.0, 0.3, 0.2]])
        L.transform(3.0, "body", "camera_left", np.eye(4))
        L.command(3.0, wheel_speed_radps=np.zeros(6), steer_rad=np.zeros(4))
        layers = {"h": z, "known": np.isfinite(z), "n": np.arange(600, dtype=np.int16).reshape(20, 30)}
        L.grid("/map/layers", 3.0, (layers, (0.0, 0.0), 0.2))
        L.grid("/map/cost", 3.0, cm)
        L.json("/custom", 3.0, "lab.Thing", {"a": np.arange(3), "b": {"c": np.nan}})
    return L


@pytest.fixture(scope="module")
def full_log_bytes():
    buf = io.BytesIO()
    L = _full_log(buf)
    return buf.getvalue(), L.stats


# ------------------------------------------------------------------------------------------ MCAP container
def test_file_is_valid_mcap_read_by_the_reference_reader(full_log_bytes):
    from mcap.reader import make_reader

    data, stats = full_log_bytes
    assert data[:8] == MCAP_MAGIC and data[-8:] == MCAP_MAGIC
    r = make_reader(io.BytesIO(data), validate_crcs=True)
    summary = r.get_summary()
    assert summary.statistics.message_count == sum(s["messages"] for s in stats.values())
    for sch in summary.schemas.values():
        assert sch.encoding == "jsonschema"
        assert json.loads(sch.data)["type"] == "object"   # Foxglove requires object schemas
    for ch in summary.channels.values():
        assert ch.message_encoding == "json"
    counts = {}
    for schema, channel, message in r.iter_messages():
        counts[channel.topic] = counts.get(channel.topic, 0) + 1
        assert message.log_time == message.publish_time
    assert counts == {k: v["messages"] for k, v in stats.items() if v["messages"]}
    assert len(summary.chunk_indexes) >= 3   # time-based write-outs (one per second of log time)
    assert {ci.compression for ci in summary.chunk_indexes} == {"zstd"}


@pytest.mark.parametrize("compression", ["lz4", "none"])
def test_other_compressions(compression):
    buf = io.BytesIO()
    with McapLogger(buf, metadata={}, compression=compression) as L:
        L.event(0.0, "start")
    from mcap.reader import make_reader

    s = make_reader(io.BytesIO(buf.getvalue())).get_summary()
    assert {ci.compression for ci in s.chunk_indexes} == {"" if compression == "none" else compression}
    assert [m.msg.kind for m in read_log(buf.getvalue())] == ["start"]


def test_timestamps_are_log_time_ns_and_foxglove_sec_nsec():
    from mcap.reader import make_reader

    buf = io.BytesIO()
    with McapLogger(buf, metadata={}) as L:
        L.log(1.5, "info", "a")
        L.log(12.000000001, "info", "b")
    msgs = list(make_reader(io.BytesIO(buf.getvalue())).iter_messages())
    assert [m.log_time for _, _, m in msgs] == [1_500_000_000, 12_000_000_001]
    assert [json.loads(m.data)["timestamp"] for _, _, m in msgs] == [{"sec": 1, "nsec": 500_000_000},
                                                                    {"sec": 12, "nsec": 1}]
    got = list(read_log(buf.getvalue()))
    assert got[0].t_s == 1.5 and got[0].msg.t_s == 1.5
    assert abs(got[1].t_s - 12.000000001) < 1e-12


def test_metadata_is_written_first_and_round_trips(full_log_bytes, tmp_path):
    data, _ = full_log_bytes
    with McapReader(data) as r:
        assert r.traverse_metadata == {"scenario": "unit", "seed": 7, "goal_xy_m": [5.0, 1.5]}
        assert r.metadata["rovernav.log"]["format_version"] == mcaplog.FORMAT_VERSION
    # a log cut right after its start still says what traverse it was
    with McapReader(data[:600]) as r:
        assert r.truncated and r.traverse_metadata["scenario"] == "unit"


# ------------------------------------------------------------------------------------------ schemas
def _all_raw(data):
    with McapReader(data) as r:
        names = r.topics()
        return [(m.topic, names[m.topic], m.msg) for m in r.messages(raw=True)]


def test_every_message_validates_against_its_schema(full_log_bytes):
    data, _ = full_log_bytes
    seen = set()
    for topic, schema_name, msg in _all_raw(data):
        schema = mcaplog.validation_schema(schema_name) if schema_name in mcaplog.SCHEMAS else {"type": "object"}
        errs = _ref_jsonschema.check(msg, schema)
        assert not errs, (topic, errs[:3])
        if jsonschema is not None:
            jsonschema.Draft202012Validator(schema).validate(msg)
        seen.add(schema_name)
    assert seen >= set(mcaplog.SCHEMAS), set(mcaplog.SCHEMAS) - seen


@pytest.mark.skipif(jsonschema is None, reason="jsonschema not installed (the minimal checker covers messages)")
def test_schemas_are_valid_json_schema():
    for name, s in mcaplog.SCHEMAS.items():
        jsonschema.Draft202012Validator.check_schema(s)
        jsonschema.Draft202012Validator.check_schema(mcaplog.validation_schema(name))
        assert s["title"] == name and s["type"] == "object"


def test_every_schema_in_the_log_is_readable_by_foxglove(full_log_bytes):
    """Foxglove turns each JSON schema into datatypes and refuses what it cannot map."""
    from mcap.reader import make_reader

    data, _ = full_log_bytes
    schemas = make_reader(io.BytesIO(data)).get_summary().schemas.values()
    assert len(schemas) == len(mcaplog.SCHEMAS) + 1
    for sch in schemas:
        assert _ref_jsonschema.foxglove_dialect_problems(json.loads(sch.data)) == [], sch.name
    # and the checker does catch what Foxglove refuses
    bad = {"type": "object", "properties": {"a": {"type": ["number", "null"]}, "b": {"type": "object"},
                                            "c": {"anyOf": []}, "d": {"type": "array", "items": {"type": "array"}}}}
    assert len(_ref_jsonschema.foxglove_dialect_problems(bad)) == 4


def test_reference_checker_rejects_bad_messages():
    s = mcaplog.SCHEMAS["foxglove.Log"]
    good = {"timestamp": {"sec": 1, "nsec": 0}, "level": 2, "message": "m", "name": "n", "file": "", "line": 0}
    assert _ref_jsonschema.check(good, s) == []
    assert _ref_jsonschema.check(dict(good, level=9), s)
    assert _ref_jsonschema.check(dict(good, timestamp={"sec": -1, "nsec": 0}), s)
    assert _ref_jsonschema.check({k: v for k, v in good.items() if k != "message"}, s)


def test_foxglove_schemas_have_foxglove_field_lists():
    S = mcaplog.SCHEMAS
    for name, fields in FOXGLOVE_FIELDS.items():
        assert set(S[name]["properties"]) == fields, name
        assert set(S[name]["properties"]["timestamp"]["properties"]) == TIME if "timestamp" in fields else True
    g = S["foxglove.Grid"]["properties"]
    assert set(g["pose"]["properties"]) == POSE
    assert set(g["pose"]["properties"]["position"]["properties"]) == VEC3
    assert set(g["pose"]["properties"]["orientation"]["properties"]) == QUAT
    assert set(g["cell_size"]["properties"]) == VEC2
    assert set(g["fields"]["items"]["properties"]) == PACKED_FIELD
    codes = {o["title"]: o["const"] for o in g["fields"]["items"]["properties"]["type"]["oneOf"]}
    assert codes == dict(NUMERIC_TYPE, UNKNOWN=0)
    assert g["data"]["contentEncoding"] == "base64"
    assert S["foxglove.CompressedImage"]["properties"]["data"]["contentEncoding"] == "base64"
    assert {o["title"]: o["const"] for o in S["foxglove.Log"]["properties"]["level"]["oneOf"]} == LOG_LEVEL
    ft = S["foxglove.FrameTransform"]["properties"]
    assert set(ft["translation"]["properties"]) == VEC3 and set(ft["rotation"]["properties"]) == QUAT
    ent = S["foxglove.SceneUpdate"]["properties"]["entities"]["items"]["properties"]
    assert set(ent) == SCENE_ENTITY
    assert set(ent["lines"]["items"]["properties"]) == LINE_PRIMITIVE
    assert set(ent["cylinders"]["items"]["properties"]) == CYLINDER_PRIMITIVE
    assert set(ent["lines"]["items"]["properties"]["color"]["properties"]) == COLOR
    assert set(S["foxglove.SceneUpdate"]["properties"]["deletions"]["items"]["properties"]) == ENTITY_DELETION


def _keys_match(msg, schema, path="$"):
    """Every object in a message has exactly the properties its schema names (recursively)."""
    if isinstance(msg, dict) and "properties" in schema and schema.get("type") == "object":
        assert set(msg) == set(schema["properties"]), (path, set(msg) ^ set(schema["properties"]))
        for k, v in msg.items():
            _keys_match(v, schema["properties"][k], f"{path}.{k}")
    elif isinstance(msg, list) and "items" in schema:
        for i, v in enumerate(msg):
            _keys_match(v, schema["items"], f"{path}[{i}]")


def test_foxglove_messages_carry_exactly_the_foxglove_fields(full_log_bytes):
    data, _ = full_log_bytes
    for topic, schema_name, msg in _all_raw(data):
        if schema_name.startswith("foxglove."):
            _keys_match(msg, mcaplog.SCHEMAS[schema_name], topic)


def test_json_is_strict_no_nan_tokens(full_log_bytes):
    from mcap.reader import make_reader

    data, _ = full_log_bytes

    def refuse(tok):
        raise ValueError(f"non-standard JSON token {tok}")
    n = 0
    for _, _, m in make_reader(io.BytesIO(data)).iter_messages():
        json.loads(m.data, parse_constant=refuse)
        n += 1
    assert n > 500


# ------------------------------------------------------------------------------------------ round trips
finite_or_not = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                          st.sampled_from([math.nan, math.inf, -math.inf]))


def _same(a, b):
    """Equal under the log's rule: finite values exact, every non-finite value read back as NaN."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return False
    fin = np.isfinite(a)
    return bool(np.array_equal(a[fin], b[fin]) and np.isnan(b[~fin]).all())


@st.composite
def telemetries(draw):
    n = draw(st.integers(1, 6))
    arr = lambda: np.array(draw(st.lists(finite_or_not, min_size=n, max_size=n)))  # noqa: E731
    imu = draw(st.booleans())
    bat = draw(st.booleans())
    return Telemetry(
        t_s=draw(st.one_of(st.floats(0, 1e6), finite_or_not)), seq=draw(st.integers(0, 2**40)),
        encoder_counts=np.array(draw(st.lists(st.integers(-2**63, 2**63 - 1), min_size=n, max_size=n)), dtype=np.int64),
        wheel_speed_radps=arr(), steer_rad=arr(), motor_current_a=arr(),
        imu=ImuSample(draw(finite_or_not), np.array(draw(st.lists(finite_or_not, min_size=3, max_size=3))),
                      np.array(draw(st.lists(finite_or_not, min_size=3, max_size=3)))) if imu else None,
        battery=BatterySample(*(draw(finite_or_not) for _ in range(4))) if bat else None,
        heading_rad=draw(finite_or_not), faults=Fault(draw(st.integers(0, 2**14 - 1))), armed=draw(st.booleans()),
        extra=draw(st.dictionaries(st.text(max_size=5),
                                   st.one_of(st.integers(-10, 10), st.text(max_size=5), finite_or_not), max_size=3)))


@settings(max_examples=60)
@given(tel=telemetries(), t_log=st.floats(0, 4e9))
def test_telemetry_round_trip(tel, t_log):
    buf = io.BytesIO()
    with McapLogger(buf, metadata={}) as L:
        assert L.telemetry(t_log, tel)
    (topic, t, back), = list(read_log(buf.getvalue()))
    assert topic == "/telemetry" and isinstance(back, Telemetry)
    assert abs(t - t_log) <= 1e-9 * max(1.0, t_log) * 2
    assert _same(tel.t_s, back.t_s) and back.seq == tel.seq and back.armed == tel.armed
    assert back.faults == tel.faults and isinstance(back.faults, Fault)
    assert np.array_equal(back.encoder_counts, tel.encoder_counts) and back.encoder_counts.dtype == np.int64
    for f in ("wheel_speed_radps", "steer_rad", "motor_current_a", "heading_rad"):
        assert _same(getattr(tel, f), getattr(back, f)), f
    assert (back.imu is None) == (tel.imu is None) and (back.battery is None) == (tel.battery is None)
    if tel.imu is not None:
        assert _same(tel.imu.t_s, back.imu.t_s) and _same(tel.imu.gyro_radps, back.imu.gyro_radps)
        assert _same(tel.imu.accel_mps2, back.imu.accel_mps2)
    if tel.battery is not None:
        for f in ("t_s", "voltage_v", "current_a", "state_of_charge"):
            assert _same(getattr(tel.battery, f), getattr(back.battery, f)), f
    for k, v in tel.extra.items():
        assert (_same(v, back.extra[k]) if isinstance(v, float) else back.extra[k] == v)


def test_nonfinite_floats_are_null_in_json():
    buf = io.BytesIO()
    tel = _tel(1.0)
    tel = Telemetry(1.0, 1, tel.encoder_counts, np.array([1.0, np.inf, -np.inf, np.nan, 0.0, -0.0]), tel.steer_rad,
                    tel.motor_current_a, heading_rad=math.inf)
    with McapLogger(buf, metadata={}) as L:
        L.telemetry(1.0, tel)
    (_, _, raw), = list(read_log(buf.getvalue(), raw=True))
    assert raw["wheel_speed_radps"] == [1.0, None, None, None, 0.0, -0.0]
    assert raw["heading_rad"] is None and raw["motor_current_a"] == [None] * 6


def test_quaternions_match_scipy():
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(3)
    Rs = list(Rotation.random(300, random_state=4).as_matrix())
    # near-180-degree turns about each axis exercise every branch of the conversion
    Rs += [Rotation.from_rotvec(ax * (math.pi - 1e-9)).as_matrix() for ax in np.eye(3)]
    Rs += [Rotation.from_rotvec(ax * math.pi).as_matrix() for ax in np.eye(3)] + [np.eye(3)]
    for R in Rs:
        q = np.array(mcaplog._quat_from_rot(R))
        ref = Rotation.from_matrix(R).as_quat()   # x, y, z, w
        assert min(np.abs(q - ref).max(), np.abs(q + ref).max()) < 1e-9
        assert np.abs(mcaplog._rot_from_quat(*q) - R).max() < 1e-9
        assert abs(np.linalg.norm(q) - 1) < 1e-12 and q[3] >= 0
    T = T_world_body(*rng.normal(size=3), 0.3, -0.2, 0.1)
    assert np.abs(mcaplog._T_from_pose(mcaplog._pose_json(T)) - T).max() < 1e-12


def test_frame_transform_follows_foxglove_semantics():
    """Foxglove docs: the translation is the child origin in the parent (translation (1, 0, 0), identity
    rotation: child (0, 0, 0) -> parent (1, 0, 0)); the rotation turns the child frame about its origin.
    So a 90-degree turn about z with translation (1, 2, 0) maps child (1, 0, 0) to parent (1, 3, 0)."""
    buf = io.BytesIO()
    with McapLogger(buf, metadata={}) as L:
        L.transform(0.5, "parent", "child", np.array([[1, 0, 0, 1], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]]))
    (_, _, raw), = list(read_log(buf.getvalue(), raw=True))
    assert raw["translation"] == {"x": 1.0, "y": 0.0, "z": 0.0} and raw["rotation"] == {"x": 0, "y": 0, "z": 0, "w": 1}
    T = np.eye(4)
    T[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]
    T[:3, 3] = (1, 2, 0)
    buf = io.BytesIO()
    with McapLogger(buf, metadata={}) as L:
        L.transform(0.5, "parent", "child", T)
    (_, _, back), = list(read_log(buf.getvalue()))
    (_, _, raw), = list(read_log(buf.getvalue(), raw=True))
    assert raw["translation"] == {"x": 1.0, "y": 2.0, "z": 0.0}
    r = raw["rotation"]
    assert abs(r["z"] - math.sqrt(0.5)) < 1e-12 and abs(r["w"] - math.sqrt(0.5)) < 1e-12 and r["x"] == r["y"] == 0
    assert np.allclose(back.T_parent_child @ [1, 0, 0, 1], [1, 3, 0, 1])
    assert (back.parent_frame_id, back.child_frame_id) == ("parent", "child")


def test_typed_round_trips(full_log_bytes):
    data, _ = full_log_bytes
    by_topic = {}
    for m in read_log(data):
        by_topic.setdefault(m.topic, []).append(m)
    p = by_topic["/pose/estimated"][1]
    assert isinstance(p.msg, mcaplog.PoseMsg) and p.msg.frame_id == "world"
    assert np.abs(p.msg.T - T_world_body(0.2 * p.t_s, 0.01, 0.0, 0.1 * p.t_s, 0.0, 0.0)).max() < 1e-12
    path = by_topic["/path/planned"][0].msg
    assert np.array_equal(path.xy, [[0, 0], [2, 1], [5, 1.5]])
    yaw = [math.atan2(1, 2), math.atan2(0.5, 3), math.atan2(0.5, 3)]   # each pose faces the next point
    assert np.allclose([math.atan2(T[1, 0], T[0, 0]) for T in path.poses], yaw)
    c = by_topic["/cmd"][3].msg
    assert isinstance(c, mcaplog.CommandMsg) and c.vx_mps == 0.2 and c.wheel_speed_radps is None
    w = by_topic["/cmd"][-1].msg
    assert math.isnan(w.vx_mps) and np.array_equal(w.wheel_speed_radps, np.zeros(6)) and len(w.steer_rad) == 4
    e = by_topic["/events"][1].msg
    assert e.kind == "replan" and e.detail == {"changed_cells": 10, "cost": None}
    v = by_topic["/vo"][1].msg
    assert not v.ok and v.reason == "few inliers" and v.inliers == 50
    assert np.abs(v.T_prev_curr - T_world_body(0.004, 0, 0, 0.002, 0, 0)).max() < 1e-12
    lg = by_topic["/log"][0].msg
    assert (lg.level, lg.message) == (2, "cycle 0")
    sc = by_topic["/scene/arcs"][0].msg
    assert sc.replace and len(sc.lines) == 3 and np.allclose(sc.lines[2], [[0, 0, 0], [1, 0.2, 0]])
    assert np.allclose(sc.cylinders, [[1.0, 2.0, 0.0, 0.3, 0.2]])
    tf = [m.msg for m in by_topic["/tf"] if m.msg.child_frame_id == "camera_left"]
    assert len(tf) == 1 and np.array_equal(tf[0].T_parent_child, np.eye(4))
    assert by_topic["/custom"][0].msg == {"a": [0, 1, 2], "b": {"c": None}}


def test_rate_limits_and_due():
    buf = io.BytesIO()
    img = np.zeros((8, 8), np.uint8)
    with McapLogger(buf, metadata={}, min_interval_s={"/camera/*": 1.0, "/map/*": 2.5}) as L:
        assert L.min_interval_for("/camera/left/compressed") == 1.0 and L.min_interval_for("/cmd") == 0.0
        written = [L.image("/camera/left/compressed", i * 0.1, img) for i in range(35)]
        assert L.due("/map/x", 0.0)
        assert L.grid("/map/x", 0.0, (np.zeros((2, 2)), (0, 0), 1.0))
        assert not L.due("/map/x", 2.0) and L.due("/map/x", 2.5)
        assert L.grid("/map/x", 0.5, (np.zeros((2, 2)), (0, 0), 1.0), min_interval_s=0.5)   # per-call override
        assert L.event(0.0, "a") and L.event(0.0, "b")   # unlimited topics keep every message
        # a clock that goes back (a restarted run) resets the limiter
        assert L.image("/camera/left/compressed", 0.05, img)
    assert [i for i, w in enumerate(written) if w] == [0, 10, 20, 30]
    assert L.stats["/camera/left/compressed"] == {"messages": 5, "bytes": L.stats["/camera/left/compressed"]["bytes"],
                                                  "skipped": 31}


def test_images_png_lossless_jpeg_close_bytes_passthrough():
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (30, 40), dtype=np.uint8)
    yy, xx = np.mgrid[0:30, 0:40]
    bgr = np.stack([xx * 6, yy * 8, (xx + yy) * 3], axis=-1).astype(np.uint8)
    deep = rng.integers(0, 65536, (10, 12), dtype=np.uint16)
    buf = io.BytesIO()
    with McapLogger(buf, metadata={}) as L:
        L.image("/a", 0.0, grey)
        L.image("/b", 0.0, bgr)
        L.image("/c", 0.0, bgr, format="jpg", jpeg_quality=95)
        L.image("/d", 0.0, deep)
        L.image("/e", 0.0, b"\xff\xd8not-really", format="jpeg")
    msgs = {m.topic: m.msg for m in read_log(buf.getvalue())}
    raws = {m.topic: m.msg for m in read_log(buf.getvalue(), raw=True)}
    assert np.array_equal(msgs["/a"].image, grey) and np.array_equal(msgs["/b"].image, bgr)
    assert np.array_equal(msgs["/d"].image, deep) and msgs["/d"].image.dtype == np.uint16
    assert msgs["/c"].image.shape == bgr.shape and np.abs(msgs["/c"].image.astype(int) - bgr).mean() < 3
    assert base64.b64decode(raws["/a"]["data"])[:8] == PNG_SIGNATURE and raws["/a"]["format"] == "png"
    assert base64.b64decode(raws["/c"]["data"])[:2] == JPEG_SOI and raws["/c"]["format"] == "jpeg"
    assert base64.b64decode(raws["/e"]["data"]) == b"\xff\xd8not-really"
    assert msgs["/a"].frame_id == "camera_left"


def _ref_grid_cells(raw):
    """Decode a foxglove.Grid cell by cell with struct, following Foxglove's layout rules."""
    data = base64.b64decode(raw["data"])
    cols, cs, rs = raw["column_count"], raw["cell_stride"], raw["row_stride"]
    rows = len(data) // rs
    out = {}
    for f in raw["fields"]:
        fmt = {1: "<B", 2: "<b", 3: "<H", 4: "<h", 5: "<I", 6: "<i", 7: "<f", 8: "<d"}[f["type"]]
        a = np.empty((rows, cols), dtype=NUMPY_OF[f["type"]])
        for r in range(rows):
            for c in range(cols):
                a[r, c] = struct.unpack_from(fmt, data, r * rs + c * cs + f["offset"])[0]
        out[f["name"]] = a
    return out


def test_grid_layout_matches_foxglove_rules_and_round_trips():
    rng = np.random.default_rng(5)
    z = rng.normal(size=(7, 9)).astype(np.float32)
    z[1, 2] = np.nan
    cost = rng.uniform(1, 5, size=(7, 9))
    cost[3, 4], cost[5, 6] = np.inf, -np.inf   # binary payload: inf survives
    reason = rng.integers(0, 32, size=(7, 9), dtype=np.uint8)
    tm = nav.TerrainMap(z, 0.25, (10.0, -4.0))
    buf = io.BytesIO()
    with McapLogger(buf, metadata={}) as L:
        L.grid("/map/known", 1.0, tm, z_m=-0.5)
        L.grid("/map/stack", 1.0, ({"elev": z, "cost": cost, "reason": reason, "flag": z > 0}, tm.origin_xy_m, 0.25))
        L.grid("/map/3d", 1.0, (np.stack([cost, cost * 2]), (0, 0), 0.5), layers=["a", "b"])
    raw = {m.topic: m.msg for m in read_log(buf.getvalue(), raw=True)}
    dec = {m.topic: m.msg for m in read_log(buf.getvalue())}
    r = raw["/map/stack"]
    assert [(f["name"], f["offset"], f["type"]) for f in r["fields"]] == [
        ("elev", 0, NUMERIC_TYPE["FLOAT32"]), ("cost", 4, NUMERIC_TYPE["FLOAT64"]),
        ("reason", 12, NUMERIC_TYPE["UINT8"]), ("flag", 13, NUMERIC_TYPE["UINT8"])]
    assert r["cell_stride"] == 14 and r["row_stride"] == 14 * 9 and r["column_count"] == 9
    ref = _ref_grid_cells(r)
    for name, want in (("elev", z), ("cost", cost), ("reason", reason), ("flag", (z > 0).astype(np.uint8))):
        assert np.array_equal(ref[name], want, equal_nan=True), name
        assert np.array_equal(dec["/map/stack"].layers[name], want, equal_nan=True), name
    # Foxglove places cell (r, c) at pose + ((c + 0.5) * cell.x, (r + 0.5) * cell.y): the TerrainMap cell centre
    k = raw["/map/known"]
    assert k["pose"]["position"] == {"x": 10.0, "y": -4.0, "z": -0.5} and k["cell_size"] == {"x": 0.25, "y": 0.25}
    for rc in [(0, 0), (6, 8), (3, 1)]:
        fx = k["pose"]["position"]["x"] + (rc[1] + 0.5) * k["cell_size"]["x"]
        fy = k["pose"]["position"]["y"] + (rc[0] + 0.5) * k["cell_size"]["y"]
        assert np.allclose(tm.cell_to_world(rc), (fx, fy))
    back = dec["/map/known"].terrain_map()
    assert np.array_equal(back.elevation_m, z, equal_nan=True) and back.origin_xy_m == (10.0, -4.0)
    assert back.cell_size_m == 0.25 and dec["/map/known"].z_m == -0.5
    assert np.array_equal(dec["/map/3d"].layers["b"], cost * 2)


def test_costmap_layers():
    terrain = nav.TerrainMap(np.random.default_rng(2).normal(scale=0.05, size=(30, 30)), 0.1)
    cm = nav.traversability(terrain, nav.load_rover("osr"))
    buf = io.BytesIO()
    with McapLogger(buf, metadata={}) as L:
        L.grid("/map/cost", 0.0, cm)
        L.grid("/map/all", 0.0, cm, ["slope_deg", "step_m", "roughness_m"])
    g = {m.topic: m.msg for m in read_log(buf.getvalue())}
    cost = g["/map/cost"].layers["cost"]
    assert np.array_equal(cost, cm.cost) and cost.dtype == cm.cost.dtype
    assert np.array_equal(g["/map/cost"].layers["elevation_m"], terrain.elevation_m)
    assert np.array_equal(g["/map/cost"].layers["reason"], cm.reason)
    assert np.array_equal(g["/map/all"].layers["slope_deg"], cm.slope_deg, equal_nan=True)


def test_log_levels_and_logging_handler():
    import logging

    from drivers.clock import ManualClock

    clock = ManualClock(5.0)
    buf = io.BytesIO()
    with McapLogger(buf, metadata={}) as L:
        L.log(0.0, "debug", "d")
        L.log(0.0, logging.WARNING, "w")
        L.log(0.0, 4, "e")
        h = L.logging_handler(clock, level=logging.INFO)
        lg = logging.getLogger("rovernav.test_mcaplog")
        lg.addHandler(h)
        lg.setLevel(logging.DEBUG)
        try:
            lg.debug("dropped by the handler level")
            lg.info("planning %d cells", 12)
            clock.advance(1.5)
            lg.error("stuck")
        finally:
            lg.removeHandler(h)
    lg.addHandler(h)
    try:
        lg.error("after close: dropped silently")
    finally:
        lg.removeHandler(h)
    logs = [m.msg for m in read_log(buf.getvalue())]
    assert [(m.level, m.message) for m in logs] == [(1, "d"), (3, "w"), (4, "e"), (2, "planning 12 cells"),
                                                    (4, "stuck")]
    assert [m.t_s for m in logs[3:]] == [5.0, 6.5] and logs[3].name == "rovernav.test_mcaplog"
    with pytest.raises(ValueError, match="level"):
        McapLogger(io.BytesIO(), metadata={}).log(0.0, "loud", "x")


def test_threads_share_one_logger():
    import threading

    buf = io.BytesIO()
    with McapLogger(buf, metadata={}, flush_interval_s=0.05) as L:
        def work(k):
            for i in range(300):
                L.event(i * 0.01, f"w{k}", {"i": i})
                L.telemetry(i * 0.01, _tel(i * 0.01), topic=f"/telemetry/{k}")
        ts = [threading.Thread(target=work, args=(k,)) for k in range(3)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    msgs = list(read_log(buf.getvalue()))
    assert len(msgs) == 3 * 600
    for k in range(3):
        assert [m.msg.detail["i"] for m in msgs if m.topic == "/events" and m.msg.kind == f"w{k}"] == list(range(300))
        assert len([m for m in msgs if m.topic == f"/telemetry/{k}"]) == 300


def test_log_time_order_option():
    buf = io.BytesIO()
    with McapLogger(buf, metadata={}) as L:
        for t in (3.0, 1.0, 2.0, 1.0):
            L.event(t, f"e{t}")
    assert [m.t_s for m in read_log(buf.getvalue())] == [3.0, 1.0, 2.0, 1.0]
    assert [m.t_s for m in read_log(buf.getvalue(), log_time_order=True)] == [1.0, 1.0, 2.0, 3.0]
    assert [m.msg.kind for m in read_log(buf.getvalue(), topics="/events")][:1] == ["e3.0"]


# ------------------------------------------------------------------------------------------ crash safety
def test_truncated_file_reads_to_its_last_complete_chunk(full_log_bytes):
    data, _ = full_log_bytes
    full = [(m.topic, m.t_s, m.msg) for m in read_log(data, raw=True)]
    rng = np.random.default_rng(0)
    cuts = sorted(set([8, 9, 20, 100, 400, len(data) - 1, len(data) - 9, len(data) - 200]
                      + rng.integers(8, len(data), 40).tolist()))
    got_lengths = []
    for cut in cuts:
        with McapReader(data[:cut]) as r:
            assert r.truncated and not r.complete and r.truncation_reason
            got = [(m.topic, m.t_s, m.msg) for m in r.messages(raw=True)]
        assert got == full[:len(got)], cut          # a prefix, never garbage
        got_lengths.append(len(got))
    assert got_lengths == sorted(got_lengths)       # a longer file never yields less
    assert got_lengths[-1] == len(full)             # cut inside the summary: every message is still there
    assert got_lengths[len(got_lengths) // 2] > 0
    with pytest.raises(ValueError, match="not an MCAP file"):
        McapReader(data[:5])
    with pytest.raises(ValueError, match="not an MCAP file"):
        McapReader(b"PK\x03\x04" + data[4:100])


def test_corrupted_chunk_stops_reading_cleanly(full_log_bytes):
    data, _ = full_log_bytes
    full = [(m.topic, m.t_s) for m in read_log(data)]
    bad = bytearray(data[: len(data) * 2 // 3])   # no footer: streamed, CRC-checked
    bad[len(bad) // 2: len(bad) // 2 + 64] = bytes(64)
    with McapReader(bytes(bad)) as r:
        got = [(m.topic, m.t_s) for m in r.messages()]
        assert r.truncated
    assert got == full[:len(got)]


def test_killed_writer_leaves_a_readable_log_and_repair_completes_it(tmp_path):
    out = tmp_path / "killed.mcap"
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        import numpy as np
        from hil.mcaplog import McapLogger
        L = McapLogger({str(out)!r}, metadata={{"scenario": "killed"}}, flush_interval_s=0.5)
        for i in range(151):                       # 3 s of log time at 50 Hz
            L.event(i * 0.02, "tick", {{"i": i}})
        print("written", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)      # no close, no atexit, no finally
    """)
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert p.returncode == -signal.SIGKILL and "written" in p.stdout, p.stderr
    with McapReader(out) as r:
        assert r.truncated and not r.complete and "footer" in r.truncation_reason
        assert r.traverse_metadata == {"scenario": "killed"}
        ticks = [m.msg.detail["i"] for m in r.messages()]
    # write-outs happen every 0.5 s of log time: everything up to t = 3.0 s (i = 150) is on disk
    assert ticks == list(range(len(ticks))) and len(ticks) >= 126
    fixed = tmp_path / "fixed.mcap"
    assert repair(out, fixed) == len(ticks)
    with McapReader(fixed) as r:
        assert r.complete and not r.truncated and r.message_count() == len(ticks)
        assert r.traverse_metadata == {"scenario": "killed"}
        assert [m.msg.detail["i"] for m in r.messages()] == ticks
    with pytest.raises(ValueError, match="same file"):
        repair(out, out, overwrite=True)


def test_exception_in_with_block_closes_the_file_and_says_why(tmp_path):
    path = tmp_path / "aborted.mcap"
    with pytest.raises(RuntimeError, match="link lost"):
        with McapLogger(path, metadata={}) as L:
            L.event(2.5, "drive")
            raise RuntimeError("link lost")
    assert L.closed
    with McapReader(path) as r:
        assert r.complete
        last = list(r.messages())[-1]
    assert last.topic == "/log" and last.msg.level == 5 and "RuntimeError: link lost" in last.msg.message
    assert last.t_s == 2.5


def test_path_file_refuses_overwrite_and_writes_flush_on_error_level(tmp_path):
    path = tmp_path / "t.mcap"
    with McapLogger(path, metadata={"a": 1}, fsync=True) as L:
        L.event(0.0, "x")
        L.log(0.1, "error", "something broke")
        # ERROR lines are written out at once: a copy of the file now already holds them
        snap = path.read_bytes()
        assert [m.msg.message for m in read_log(snap) if m.topic == "/log"] == ["something broke"]
    with pytest.raises(FileExistsError):
        McapLogger(path, metadata={})
    with McapLogger(path, metadata={}, overwrite=True) as L:
        pass
    assert list(read_log(path)) == []


# ------------------------------------------------------------------------------------------ misuse
def test_bad_input_raises_clear_errors():
    L = McapLogger(io.BytesIO(), metadata={})
    with pytest.raises(ValueError, match="t_s"):
        L.event(-1.0, "x")
    with pytest.raises(ValueError, match="t_s"):
        L.event(math.nan, "x")
    with pytest.raises(ValueError, match="4x4"):
        L.pose("/p", 0.0, np.eye(3))
    with pytest.raises(ValueError, match="proper rotation"):
        L.pose("/p", 0.0, np.diag([1.0, 1.0, -1.0, 1.0]))
    with pytest.raises(ValueError, match="non-finite"):
        L.transform(0.0, "a", "b", np.full((4, 4), np.nan))
    with pytest.raises(ValueError, match="dtype"):
        L.image("/i", 0.0, np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="format"):
        L.image("/i", 0.0, np.zeros((4, 4), np.uint8), format="bmp")
    with pytest.raises(ValueError, match="points"):
        L.path("/p", 0.0, np.zeros((3, 5)))
    with pytest.raises(ValueError, match="both vx_mps and wz_radps"):
        L.command(0.0, 0.1)
    with pytest.raises(ValueError, match="layer"):
        L.grid("/g", 0.0, ({"a": np.zeros((2, 2)), "b": np.zeros((3, 2))}, (0, 0), 1.0))
    with pytest.raises(ValueError, match="int32"):
        L.grid("/g", 0.0, (np.array([[2**40]]), (0, 0), 1.0))
    with pytest.raises(TypeError, match="cannot log"):
        L.event(0.0, "x", {"f": object()})
    with pytest.raises(TypeError, match="detail must be a dict"):
        L.event(0.0, "x", 5)
    with pytest.raises(ValueError, match="properties"):
        L.json("/j", 0.0, "my.T", {}, schema={"type": "object"})
    with pytest.raises(TypeError, match="Telemetry"):
        L.telemetry(0.0, {"t_s": 0})
    L.event(0.0, "x")
    with pytest.raises(ValueError, match="carries rovernav.Event"):
        L.log(0.0, "info", "wrong topic", topic="/events")
    L.close()
    L.close()   # idempotent
    with pytest.raises(ValueError, match="closed"):
        L.event(1.0, "late")
    with pytest.raises(TypeError, match="metadata"):
        McapLogger(io.BytesIO(), metadata={"x": object()})
    with pytest.raises(ValueError, match="compression"):
        McapLogger(io.BytesIO(), metadata={}, compression="gzip")


# ------------------------------------------------------------------------------------------ size report
def test_size_and_throughput_report(record_property, capsys):
    """Reported, not asserted: bytes per message and write cost of a typical mix."""
    buf = io.BytesIO()
    img = (np.random.default_rng(0).integers(0, 40, (240, 320)) + np.arange(320)[None, :] // 3).astype(np.uint8)
    z = np.random.default_rng(1).normal(size=(100, 100)).astype(np.float32)
    t0 = time.perf_counter()
    with McapLogger(buf, metadata={}, min_interval_s={"/camera/*": 1.0, "/map/*": 2.0}) as L:
        for i in range(500):                               # 10 s at 50 Hz
            t = i * 0.02
            L.telemetry(t, _tel(t))
            L.command(t, 0.2, 0.0)
            L.image("/camera/left/compressed", t, img)
            L.grid("/map/local", t, (z, (0, 0), 0.1), ["elevation_m"])
    dt = time.perf_counter() - t0
    n = sum(s["messages"] for s in L.stats.values())
    size = len(buf.getvalue())
    record_property("mcap_bytes_per_10s", size)
    with capsys.disabled():
        print(f"\n[mcaplog] 10 s traverse mix: {n} messages, {size / 1e3:.1f} kB, "
              f"{1e6 * dt / n:.0f} us/message average, {size / 10 / 1e3:.1f} kB/s of log")
    assert n == 500 * 2 + 10 + 5
