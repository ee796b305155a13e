"""Replay a recorded traverse: re-run perception, estimation and planning on its inputs and show where
they now differ — post-mortems of hardware runs, and "what would these parameters have done".

::

    from hil.replay import replay

    rep = replay("runs/quick/traverse.mcap", overrides={"window_m": 3.0}, out_dir="runs/quick/replay")
    print(rep.text())            # first divergence, pose / plan / command differences, outcomes
    rep.diverged                 # False: the code and parameters reproduce the recorded decisions exactly

``rover replay LOG [--out DIR] [--set NAME=VALUE ...]`` is the command line (:mod:`hil.cmd_replay`).

What a traverse records for replay
----------------------------------
:func:`hil.traverse.run_traverse` (with a log) writes, besides the Foxglove display channels, the
``/replay/*`` channels (JSON, schemas ``rovernav.Replay*``; arrays are base64 of their raw bytes, so
every number round-trips exactly) through :class:`McapRecorder`, a :class:`hil.traverse.LoopRecorder`:

* ``/replay/setup`` — once: the format version, scenario, rover, planet, goals, keep-out zones, the
  executive's parameters (:class:`nav.executive.ExecParams`, after the scenario's overrides), the timing
  model, the rover map's initial state (heights, prior variance, fusion parameters), the perception's
  kind and configuration; ``/replay/start`` the start pose;
* ``/replay/tick`` — every control tick: the telemetry as read (full rate), the wheels' body twist, and
  the pose estimate the executive got (and its covariance);
* ``/replay/frame`` — *rendered* perception: every stereo pair the perception captured, lossless PNG (or
  the capture's failure: an error, no frame), with the tick it was captured on; the camera is wrapped
  (:class:`hil.perception_rendered.RecordingCamera`) so black-outs are recorded as they were seen;
* ``/replay/observation`` — every picture the executive asked for: the digests of the local height map
  and of the near map (the finer map of the ground close in, when the perception makes one), and
  for *fast* perception its arrays (heights, variances, counts): fast perception samples the
  simulator's true terrain and pose, which a log does not hold, so its outputs are replayed as recorded
  (and a picture the recorded traverse did not take is unavailable);
* ``/replay/plan`` (every plan: global path, local arc or why none, status), ``/replay/schedule``
  (images delivered, plans installed, pauses and resumes, the end), ``/replay/command`` (every tick's
  twist and the executive's state), ``/replay/truth`` (the simulator's true pose, when there is one) and
  ``/replay/end`` (the outcome, the reason and the executive's events).

Left-camera images go to ``/camera/left/compressed`` (JPEG, one a second) for viewing in Foxglove.

What a replay does
------------------
It rebuilds the executive (recorded parameters, or with ``overrides``) on the recorded initial map and
feeds it, tick by tick, through :class:`hil.traverse.TraverseLoop` — the code the traverse ran — with
the recorded inputs: the telemetry; the pose from a re-run of the perception (*rendered*: VO, EKF and
stereo mapping on the recorded stereo pairs) or the recorded pose (*fast*); the pictures the
perception takes. It is open loop: the rover's recorded motion cannot change, so a replayed executive
that would have driven elsewhere is still fed where the rover went; the first divergence is what counts.
The simulator's truth is never needed (hardware logs have none); when the log has it, the report gives
the localisation error of the recorded and of the replayed estimate too.
"""
from __future__ import annotations

import base64
import dataclasses
import hashlib
import importlib
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path as FsPath

import numpy as np

from hil.traverse import LoopRecorder

__all__ = ["replay", "ReplayReport", "ReplayInputError", "McapRecorder", "MemoryTrace", "Tolerances",
           "parse_overrides", "REPLAY_FORMAT", "REPLAY_TOPICS"]

log = logging.getLogger(__name__)

#: Version of the ``/replay/*`` records; a replay refuses other versions.
REPLAY_FORMAT = "1"
TOPIC_SETUP = "/replay/setup"
TOPIC_START = "/replay/start"
TOPIC_TICK = "/replay/tick"
TOPIC_TRUTH = "/replay/truth"
TOPIC_FRAME = "/replay/frame"
TOPIC_OBS = "/replay/observation"
TOPIC_PLAN = "/replay/plan"
TOPIC_SCHEDULE = "/replay/schedule"
TOPIC_COMMAND = "/replay/command"
TOPIC_END = "/replay/end"
REPLAY_TOPICS = (TOPIC_SETUP, TOPIC_START, TOPIC_TICK, TOPIC_TRUTH, TOPIC_FRAME, TOPIC_OBS, TOPIC_PLAN,
                 TOPIC_SCHEDULE, TOPIC_COMMAND, TOPIC_END)
_SCHEMA = {TOPIC_SETUP: "rovernav.ReplaySetup", TOPIC_START: "rovernav.ReplayStart", TOPIC_TICK: "rovernav.ReplayTick",
           TOPIC_TRUTH: "rovernav.ReplayTruth", TOPIC_FRAME: "rovernav.ReplayFrame",
           TOPIC_OBS: "rovernav.ReplayObservation", TOPIC_PLAN: "rovernav.ReplayPlan",
           TOPIC_SCHEDULE: "rovernav.ReplaySchedule", TOPIC_COMMAND: "rovernav.ReplayCommand",
           TOPIC_END: "rovernav.ReplayEnd"}
TOPIC_CAMERA = "/camera/left/compressed"


class ReplayInputError(ValueError):
    """The log cannot be replayed (not a file, not MCAP, truncated, no replay channels...): one sentence
    naming the file and what is wrong."""


# ============================================================================ exact JSON codecs
def _f(x):
    """A float for JSON, exact: finite floats as they are (``repr`` round-trips), others as strings."""
    x = float(x)
    if math.isfinite(x):
        return x
    return "nan" if x != x else ("inf" if x > 0 else "-inf")


def _unf(v) -> float:
    return math.nan if v is None else float(v)


_ND_KINDS = set("biuf")


def _nd(a) -> dict:
    """An array as ``{dtype, shape, b64}`` (its raw bytes: exact)."""
    a = np.ascontiguousarray(a)
    if a.dtype.kind not in _ND_KINDS:
        raise TypeError(f"cannot record a {a.dtype} array")
    return {"dtype": a.dtype.str, "shape": list(a.shape), "b64": base64.b64encode(a.tobytes()).decode("ascii")}


def _und(d) -> np.ndarray:
    dt = np.dtype(d["dtype"])
    if dt.kind not in _ND_KINDS:
        raise ValueError(f"array of dtype {dt} in a replay record")
    shape = tuple(int(s) for s in d["shape"])
    raw = base64.b64decode(d["b64"])
    n = int(np.prod(shape)) if shape else 1
    if len(raw) != n * dt.itemsize:
        raise ValueError(f"array record of shape {shape} {dt} holds {len(raw)} bytes")
    return np.frombuffer(raw, dtype=dt).reshape(shape).copy()


#: Dataclasses a log may name (``module:QualName``); nothing else is ever imported from a log.
_DATACLASSES = frozenset({"nav.executive:ExecParams", "nav.local_planner:ArcParams", "hil.traverse:TimingModel",
                          "perception.estimator:EKFParams", "perception.vo:VOParams",
                          "perception.stereo_map:StereoMapParams", "perception.stereo_map:FusionParams"})


def _enc(v):
    """Parameters (dataclasses of numbers, strings, tuples, arrays) as exact JSON."""
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        name = f"{type(v).__module__}:{type(v).__qualname__}"
        if name not in _DATACLASSES:
            raise TypeError(f"cannot record a {name}")
        return {"__dc__": name, "f": {f.name: _enc(getattr(v, f.name)) for f in dataclasses.fields(v) if f.init}}
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        x = float(v)
        return x if math.isfinite(x) else {"__f__": _f(x)}
    if isinstance(v, tuple):
        return {"__tuple__": [_enc(x) for x in v]}
    if isinstance(v, list):
        return [_enc(x) for x in v]
    if isinstance(v, np.ndarray):
        return {"__nd__": _nd(v)}
    if isinstance(v, dict):
        return {"__map__": {str(k): _enc(x) for k, x in v.items()}}
    raise TypeError(f"cannot record a {type(v).__name__}")


# fields added to logged dataclasses after logs were first written: (name, the behaviour before it existed)
_ADDED_FIELDS = {"nav.executive:ExecParams": (("margin_fallback_cost", None),)}


def _dec(v):
    if isinstance(v, list):
        return [_dec(x) for x in v]
    if not isinstance(v, dict):
        return v
    if "__dc__" in v:
        name = v["__dc__"]
        if name not in _DATACLASSES:
            raise ValueError(f"unknown parameter type {name!r} in the log")
        mod, qual = name.split(":")
        cls = getattr(importlib.import_module(mod), qual)
        kw = {k: _dec(x) for k, x in v["f"].items()}
        for key, then in _ADDED_FIELDS.get(name, ()):
            kw.setdefault(key, then)       # a log from before the field existed ran without it
        return cls(**kw)
    if "__f__" in v:
        return float(v["__f__"])
    if "__tuple__" in v:
        return tuple(_dec(x) for x in v["__tuple__"])
    if "__nd__" in v:
        return _und(v["__nd__"])
    if "__map__" in v:
        return {k: _dec(x) for k, x in v["__map__"].items()}
    raise ValueError(f"unexpected record {sorted(v)[:4]} in the log's parameters")


def _plain(v):
    """Event details etc. as plain JSON (numbers exact, non-finite as strings)."""
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return _f(v)
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, np.ndarray):
        return _plain(v.tolist())
    return str(v)


def _encode_tm(tm) -> dict:
    imu, bat = tm.imu, tm.battery
    return {"t_s": _f(tm.t_s), "seq": int(tm.seq), "enc": _nd(np.asarray(tm.encoder_counts)),
            "ws": _nd(np.asarray(tm.wheel_speed_radps)), "steer": _nd(np.asarray(tm.steer_rad)),
            "cur": _nd(np.asarray(tm.motor_current_a)),
            "imu": None if imu is None else {"t_s": _f(imu.t_s), "gyro": _nd(np.asarray(imu.gyro_radps)),
                                             "accel": _nd(np.asarray(imu.accel_mps2))},
            "bat": None if bat is None else {"t_s": _f(bat.t_s), "v": _f(bat.voltage_v), "a": _f(bat.current_a),
                                             "soc": _f(bat.state_of_charge)},
            "heading": _f(tm.heading_rad), "faults": int(tm.faults), "armed": bool(tm.armed),
            "extra": _plain(dict(tm.extra))}


def _decode_tm(d):
    from drivers.base import BatterySample, Fault, ImuSample, Telemetry

    imu = d.get("imu")
    bat = d.get("bat")
    return Telemetry(
        t_s=_unf(d["t_s"]), seq=int(d["seq"]), encoder_counts=_und(d["enc"]), wheel_speed_radps=_und(d["ws"]),
        steer_rad=_und(d["steer"]), motor_current_a=_und(d["cur"]),
        imu=None if imu is None else ImuSample(_unf(imu["t_s"]), _und(imu["gyro"]), _und(imu["accel"])),
        battery=None if bat is None else BatterySample(_unf(bat["t_s"]), _unf(bat["v"]), _unf(bat["a"]),
                                                       _unf(bat["soc"])),
        heading_rad=_unf(d["heading"]), faults=Fault(int(d["faults"])), armed=bool(d["armed"]),
        extra=dict(d.get("extra") or {}))


def _local_digest(local) -> str:
    h = hashlib.sha1()
    for a in (local.height_m, local.var_m2, local.count):
        a = np.ascontiguousarray(a)
        h.update(a.dtype.str.encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    h.update(repr((float(local.cell_size_m), tuple(float(v) for v in local.origin_xy_m))).encode())
    return h.hexdigest()


def _plan_record(res) -> dict:
    lp = res.local
    if res.unreachable:
        status = "unreachable"
    elif res.hazard_stop:
        status = "hazard_stop"
    elif lp:
        status = "arc"
    elif lp is not None:
        status = f"local_failed:{getattr(lp, 'code', '')}"
    else:
        status = "none"
    d = {"t_s": _f(res.t_s), "goal_index": int(res.goal_index), "pose": [_f(v) for v in res.pose_xy_yaw],
         "generation": int(res.generation), "status": status, "global_cost": _f(res.global_cost),
         "unreachable": str(res.unreachable), "hazard_stop": str(res.hazard_stop),
         "global_xy_m": None if res.global_xy_m is None else _nd(np.asarray(res.global_xy_m, dtype=np.float64)),
         "arc": None, "why": ""}
    if lp:
        d["arc"] = {"xy_m": _nd(np.asarray(lp.xy_m, dtype=np.float64)), "length_m": _f(lp.length_m),
                    "verified_length_m": _f(lp.verified_length_m), "turn_rad": _f(lp.turn_rad),
                    "curvatures_per_m": [_f(k) for k in lp.curvatures_per_m]}
    elif lp is not None:
        d["why"] = str(lp)
    return d


# ============================================================================ recorders
class MemoryTrace(LoopRecorder):
    """A :class:`hil.traverse.LoopRecorder` that keeps the loop's decisions as records (what
    :class:`McapRecorder` writes to the ``/replay/*`` channels, minus the inputs) in ``records[topic]``."""

    inputs = False
    _observation_arrays = False

    def __init__(self):
        self.records: dict[str, list] = {t: [] for t in REPLAY_TOPICS}
        self.cur_i = -1
        self.cur_t = 0.0
        self._tick = None

    def _emit(self, topic: str, t: float, rec: dict) -> None:
        self.records[topic].append(rec)

    # the hooks
    def tick(self, i, t, tm, twist):
        self.cur_i, self.cur_t = int(i), float(t)
        self._tick = {"i": int(i), "t": _f(t), "twist": [_f(v) for v in twist]}
        if self.inputs:
            self._tick["tm"] = _encode_tm(tm)

    def pose(self, i, t, T_world_body, cov):
        rec = self._tick if self._tick is not None and self._tick["i"] == i else {"i": int(i), "t": _f(t)}
        self._tick = None
        rec["T"] = _nd(np.asarray(T_world_body, dtype=np.float64))
        if self.inputs:
            rec["cov"] = None if cov is None else _nd(np.asarray(cov, dtype=np.float64))
        self._emit(TOPIC_TICK, t, rec)

    def fault(self, i, t, kind, detail):
        self._emit(TOPIC_SCHEDULE, t, {"i": int(i), "t": _f(t), "kind": kind, "detail": _plain(detail)})

    def image_taken(self, i, t, obs):
        rec = {"i": int(i), "t": _f(t), "none": obs is None}
        if obs is not None:
            rec.update(t_s=_f(obs.t_s), n_points=int(obs.n_points),
                       T_world_cam=_nd(np.asarray(obs.T_world_cam_est, dtype=np.float64)),
                       digest=_local_digest(obs.local),
                       near_digest=None if getattr(obs, "near", None) is None else _local_digest(obs.near))
            if self.inputs and self._observation_arrays:
                rec["local"] = _local_record(obs.local)
                if getattr(obs, "near", None) is not None:
                    rec["near"] = _local_record(obs.near)
        self._emit(TOPIC_OBS, t, rec)

    def image_delivered(self, i, t):
        self._emit(TOPIC_SCHEDULE, t, {"i": int(i), "t": _f(t), "kind": "image_delivered"})

    def plan_requested(self, i, t, res):
        self._emit(TOPIC_PLAN, t, {"i": int(i), "t": _f(t), "plan": _plan_record(res)})

    def plan_installed(self, i, t, res):
        self._emit(TOPIC_SCHEDULE, t, {"i": int(i), "t": _f(t), "kind": "plan_installed",
                                       "plan_t_s": _f(res.t_s), "generation": int(res.generation)})

    def command(self, i, t, vcmd, cmd):
        self._emit(TOPIC_COMMAND, t, {"i": int(i), "t": _f(t), "vx": _f(vcmd[0]), "wz": _f(vcmd[1]),
                                      "state": str(cmd.state), "want_image": bool(cmd.want_image),
                                      "want_plan": bool(cmd.want_plan), "goal_index": int(cmd.goal_index)})

    def finished(self, i, t, outcome, reason):
        self._emit(TOPIC_SCHEDULE, t, {"i": int(i), "t": _f(t), "kind": "finished", "outcome": str(outcome),
                                       "reason": str(reason)})

    def end(self, i, t, outcome, reason, ex) -> None:
        """The traverse ended (after tick ``i``): its outcome and the executive's events."""
        self._emit(TOPIC_END, max(float(t), 0.0), {
            "i": int(i), "t": _f(t), "outcome": str(outcome), "reason": str(reason),
            "ex_outcome": str(ex.outcome), "ex_reason": str(ex.reason),
            "events": [[None if e[0] is None else _f(e[0]), str(e[1]), _plain(e[2])] for e in ex.events]})


class McapRecorder(MemoryTrace):
    """Writes a traverse's replay inputs and decisions to its MCAP log (see the module docstring).

    Made by :func:`hil.traverse.run_traverse` when it logs; wraps a rendered perception's camera (a
    :class:`hil.perception_rendered.RecordingCamera`) so every captured stereo pair is recorded.

    Parameters
    ----------
    logger : hil.mcaplog.McapLogger
    scenario, backend, setup, params, timing, perception :
        The traverse's scenario, backend name, :class:`hil.traverse.TraverseSetup`, the executive's
        :class:`nav.executive.ExecParams`, the :class:`hil.traverse.TimingModel` and perception source.
    png_level : int
        PNG compression of recorded stereo pairs (1 = fastest; lossless at every level).
    """

    inputs = True

    def __init__(self, logger, *, scenario, backend, setup, params, timing, perception, png_level: int = 1):
        super().__init__()
        self.logger = logger
        self.png_level = int(png_level)
        self.perception = perception
        kind = getattr(perception, "kind", None) or getattr(scenario, "perception", "")
        if type(perception).__name__ == "FastPerception":
            kind = "fast"
        self.kind = kind
        self._observation_arrays = kind != "rendered"
        self.frames = 0
        self._pool = None
        self._pending: list = []
        cfg, cfg_error = None, ""
        if hasattr(perception, "replay_config"):
            try:
                cfg = _enc(perception.replay_config())
            except TypeError as e:
                cfg_error = str(e)
        gm = setup.gmap
        known = np.isfinite(np.asarray(gm.height_m))
        var = np.asarray(gm.var_m2)
        vk = np.unique(var[known]) if known.any() else np.zeros(0, np.float32)
        fresh = bool(getattr(gm, "merges", 0) == 0 and not np.asarray(gm.stamp).any() and len(vk) <= 1)
        try:
            fusion = _enc(gm.params)
        except (TypeError, AttributeError):
            fusion = None
        self._emit(TOPIC_SETUP, 0.0, {
            "format": REPLAY_FORMAT, "scenario": str(scenario.name), "source": str(scenario.source or ""),
            "seed": int(scenario.terrain.seed), "backend": str(backend), "rover": str(scenario.rover),
            "planet": str(scenario.planet), "perception": kind, "perception_config": cfg,
            "perception_config_error": cfg_error, "exec_params": _enc(params), "timing": _enc(timing),
            "goals": [[_f(v) for v in g] for g in setup.goals],
            "keep_out": [[_f(v) for v in k] for k in setup.keep_out],
            "resume_after_fault": bool(scenario.resume_after_fault),
            "map": {"height_m": _nd(np.asarray(gm.height_m)), "prior_var_m2": _f(vk[0]) if len(vk) else None,
                    "cell_size_m": _f(gm.cell_size_m), "origin_xy_m": [_f(v) for v in gm.origin_xy_m],
                    "fusion_params": fusion, "fresh": fresh},
            "has_truth": getattr(setup, "world", None) is not None and backend != "serial"})
        if not fresh:
            log.warning("replay: the rover's map was not fresh at the start; a replay may not reproduce it exactly")
        cam = getattr(perception, "camera", None)
        if cam is not None:
            from drivers.camera import StereoCamera

            from .perception_rendered import RecordingCamera

            if isinstance(cam, StereoCamera) and not isinstance(cam, RecordingCamera):
                perception.camera = RecordingCamera(cam, self._frame)

    def _emit(self, topic, t, rec):
        self.logger.json(topic, max(float(t), 0.0), _SCHEMA[topic], rec, plain=True)

    def end(self, i, t, outcome, reason, ex) -> None:
        """Write the frames still being encoded, then the end record."""
        try:
            self._drain(block=True)
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
        super().end(i, t, outcome, reason, ex)

    def start(self, t: float, T_world_body0) -> None:
        """The traverse starts at ``t`` from ``T_world_body0`` (what the perception's ``start`` gets)."""
        self._emit(TOPIC_START, t, {"t": _f(t), "T": _nd(np.asarray(T_world_body0, dtype=np.float64))})

    def truth(self, t: float, T_true) -> None:
        """The simulator's true pose this tick (scoring only; a replay never uses it as an input)."""
        self._emit(TOPIC_TRUTH, t, {"i": self.cur_i, "t": _f(t), "T": _nd(np.asarray(T_true, dtype=np.float64))})

    def _frame(self, fr, error) -> None:
        """A capture of the (wrapped) camera: the frame, ``None``, or the ``OSError`` it raised. The PNG
        encoding runs on a worker thread (OpenCV releases the GIL), in capture order."""
        i, t = self.cur_i, self.cur_t
        rec = {"i": i, "t": _f(t), "vo_dropout": bool(getattr(self.perception, "_vo_dropout", False))}
        self.frames += 1
        if error is not None:
            rec.update(status="error", error=f"{type(error).__name__}: {error}")
        elif fr is None:
            rec.update(status="none")
        else:
            rec.update(status="ok", t_s=_f(fr.t_s), seq=int(fr.seq), K=_nd(np.asarray(fr.K, dtype=np.float64)),
                       baseline_m=_f(fr.baseline_m), T_body_left=_nd(np.asarray(fr.T_body_left, dtype=np.float64)))
            if self.logger.due(TOPIC_CAMERA, max(t, 0.0)):
                self.logger.image(TOPIC_CAMERA, max(t, 0.0), fr.left, "jpeg", jpeg_quality=80)
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="replay-frames")
            self._pending.append(self._pool.submit(self._encode_frame, t, rec, np.array(fr.left), np.array(fr.right)))
            self._drain(block=False)
            return
        self._emit(TOPIC_FRAME, t, rec)

    def _encode_frame(self, t, rec, left, right) -> None:
        import cv2

        params = [cv2.IMWRITE_PNG_COMPRESSION, self.png_level]
        for side, a in (("left", left), ("right", right)):
            if a.dtype == np.uint8 and a.ndim in (2, 3):
                ok, buf = cv2.imencode(".png", np.ascontiguousarray(a), params)
                if not ok:
                    raise ValueError(f"could not encode a {a.shape} image as PNG")
                rec[side] = {"png": base64.b64encode(buf.tobytes()).decode("ascii")}
            else:
                rec[side] = {"raw": _nd(a)}
        self._emit(TOPIC_FRAME, t, rec)

    def _drain(self, block: bool) -> None:
        """Collect finished frame writes (all of them with ``block``); their errors surface here."""
        while self._pending and (block or self._pending[0].done()):
            self._pending.pop(0).result()


# ============================================================================ replay inputs
class _Playback:
    """Recorded frames by tick for :class:`hil.perception_rendered.PlaybackCamera`."""

    def __init__(self, frames: dict):
        self.frames = frames          # tick -> list of records
        self.tick = -1
        self._used: dict[int, int] = {}
        self.unavailable = 0
        self.served = 0
        self.on_record = None

    def next(self):
        """The next recorded capture of the current tick: ``("ok", StereoFrame)``, ``("none", None)``,
        ``("error", text)``, or ``None`` when the recorded traverse captured nothing more on this tick."""
        from drivers.camera import StereoFrame

        lst = self.frames.get(self.tick, ())
        k = self._used.get(self.tick, 0)
        if k >= len(lst):
            self.unavailable += 1
            return None
        self._used[self.tick] = k + 1
        rec = lst[k]
        if self.on_record is not None:
            self.on_record(rec)
        st = rec.get("status")
        self.served += 1
        if st == "error":
            return ("error", rec.get("error", "camera error"))
        if st != "ok":
            return ("none", None)
        return ("ok", StereoFrame(_unf(rec["t_s"]), int(rec["seq"]), _image(rec["left"]), _image(rec["right"]),
                                  _und(rec["K"]), _unf(rec["baseline_m"]), _und(rec["T_body_left"])))

    def consumed(self) -> int:
        return sum(self._used.values())


def _image(d) -> np.ndarray:
    if "raw" in d:
        return _und(d["raw"])
    import cv2

    buf = np.frombuffer(base64.b64decode(d["png"]), dtype=np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError("a recorded stereo image does not decode as PNG")
    return img


def _local_record(lo) -> dict:
    """A local height map's arrays for the log (read back by :class:`_RecordedPerception`)."""
    return {"height_m": _nd(lo.height_m), "var_m2": _nd(lo.var_m2), "count": _nd(lo.count),
            "cell_size_m": _f(lo.cell_size_m), "origin_xy_m": [_f(v) for v in lo.origin_xy_m],
            "n_points": int(lo.n_points)}


class _RecordedPerception:
    """Fast perception, replayed: the recorded pose of every tick and the recorded local maps (fast
    perception samples the simulator's truth, which a log does not hold, so it cannot be re-run)."""

    kind = "fast (recorded)"

    def __init__(self, poses: dict, observations: dict):
        self._poses = poses              # tick -> 4x4
        self._obs = observations         # tick -> list of records
        self.tick = -1
        self._used: dict[int, int] = {}
        self.unavailable = 0
        self._T0 = None

    def start(self, t_s, T_world_body0=None):
        self._T0 = None if T_world_body0 is None else np.array(T_world_body0, dtype=np.float64)

    def on_telemetry(self, tm, vx_mps, vy_mps, wz_radps):
        pass

    def pose(self):
        T = self._poses.get(self.tick)
        if T is None:
            T = self._T0 if self._T0 is not None else np.eye(4)
        return T.copy(), None

    def observe(self, t_s, grid=None):
        from perception.stereo_map import LocalHeightMap

        from .traverse import Observation

        lst = self._obs.get(self.tick, ())
        k = self._used.get(self.tick, 0)
        if k >= len(lst):
            self.unavailable += 1
            return None
        self._used[self.tick] = k + 1
        rec = lst[k]
        if rec.get("none"):
            return None
        lo = rec.get("local")
        if lo is None:
            raise ReplayInputError("an observation record holds no local map arrays")

        def local_map(m):
            return LocalHeightMap(_und(m["height_m"]), _und(m["var_m2"]), _und(m["count"]), _unf(m["cell_size_m"]),
                                  tuple(_unf(v) for v in m["origin_xy_m"]), int(m["n_points"]))

        near = rec.get("near")
        return Observation(_unf(rec["t_s"]), local_map(lo), _und(rec["T_world_cam"]), int(rec["n_points"]),
                           None if near is None else local_map(near))

    def stats(self) -> dict:
        return {"perception": self.kind, "unavailable_images": self.unavailable}


# ============================================================================ reading a log
@dataclass
class _Log:
    path: str
    setup: dict
    start: dict | None
    ticks: list
    truth: dict
    frames: dict
    observations: list
    plans: list
    schedule: list
    commands: list
    end: dict | None
    known_map: object
    truncated: bool
    truncation_reason: str


def _read_log(path, *, allow_truncated: bool = False) -> _Log:
    from hil.mcaplog import McapReader

    p = FsPath(path)
    if not p.exists():
        raise ReplayInputError(f"{p}: no such file")
    if not p.is_file():
        raise ReplayInputError(f"{p} is not a file (give the traverse.mcap inside a run folder)")
    try:
        reader = McapReader(p)
    except ValueError:
        raise ReplayInputError(f"{p} is not an MCAP file (it does not start with the MCAP magic bytes)") from None
    except OSError as e:
        raise ReplayInputError(f"{p} cannot be read: {e}") from None
    with reader as r:
        if r.truncated and not allow_truncated:
            raise ReplayInputError(f"{p} is truncated ({r.truncation_reason}); replay what it holds with "
                                   f"--allow-truncated, or rewrite it with hil.mcaplog.repair")
        topics = r.topics()
        missing = [t for t in (TOPIC_SETUP, TOPIC_TICK) if t not in topics]
        if missing:
            raise ReplayInputError(
                f"{p} has no replay channels ({', '.join(missing)} missing): it was written without the replay "
                f"inputs (by a rovernav version before rover replay, or by another program)")
        setup, start, end, known = None, None, None, None
        ticks, plans, schedule, commands, observations = [], [], [], [], []
        truth, frames = {}, {}
        try:
            for m in r.messages(list(REPLAY_TOPICS) + ["/map/known"], raw=True):
                d = m.msg
                tp = m.topic
                if tp == TOPIC_TICK:
                    ticks.append(d)
                elif tp == TOPIC_COMMAND:
                    commands.append(d)
                elif tp == TOPIC_FRAME:
                    frames.setdefault(int(d["i"]), []).append(d)
                elif tp == TOPIC_OBS:
                    observations.append(d)
                elif tp == TOPIC_PLAN:
                    plans.append(d)
                elif tp == TOPIC_SCHEDULE:
                    schedule.append(d)
                elif tp == TOPIC_TRUTH:
                    truth[int(d["i"])] = d
                elif tp == TOPIC_SETUP:
                    setup = d
                elif tp == TOPIC_START:
                    start = d
                elif tp == TOPIC_END:
                    end = d
                elif tp == "/map/known":
                    known = d
        except (ValueError, KeyError, TypeError) as e:
            raise ReplayInputError(f"{p}: a replay record is damaged ({type(e).__name__}: {e})") from None
        truncated, why = r.truncated, r.truncation_reason
    if truncated and not allow_truncated:
        raise ReplayInputError(f"{p} is truncated ({why}); replay what it holds with --allow-truncated")
    if setup is None:
        raise ReplayInputError(f"{p} has no /replay/setup record: the log was cut before the traverse started")
    if str(setup.get("format")) != REPLAY_FORMAT:
        raise ReplayInputError(f"{p} holds replay records of format {setup.get('format')!r}; this rovernav "
                               f"replays format {REPLAY_FORMAT!r}")
    if not ticks:
        raise ReplayInputError(f"{p} holds no control ticks (/replay/tick is empty): nothing to replay")
    for k, tk in enumerate(ticks):
        if int(tk.get("i", -1)) != k or "tm" not in tk or "T" not in tk:
            raise ReplayInputError(f"{p}: /replay/tick record {k} is out of order or incomplete")
    if setup.get("perception") == "rendered" and setup.get("perception_config") is None:
        raise ReplayInputError(f"{p}: the rendered perception's configuration was not recorded "
                               f"({setup.get('perception_config_error') or 'missing'})")
    if known is not None:
        try:
            from hil.mcaplog import _decode

            known = _decode("foxglove.Grid", known)
        except Exception:   # a picture's background only
            known = None
    return _Log(str(p), setup, start, ticks, truth, frames, observations, plans, schedule, commands, end, known,
                truncated, why)


# ============================================================================ overrides
def parse_overrides(items, base=None):
    """``["NAME=VALUE", ...]`` applied to :class:`nav.executive.ExecParams` ``base`` (default the defaults):
    ``NAME`` a field (``arc.NAME`` for a :class:`nav.local_planner.ArcParams` field), ``VALUE`` parsed by
    the field's type (``none`` for optional fields; comma-separated numbers for tuples).

    Raises
    ------
    ValueError
        Naming the item: no ``=``, an unknown field, a value that does not parse or that the
        parameters reject.
    """
    from nav.executive import ExecParams

    params = ExecParams() if base is None else base
    for item in items:
        if not isinstance(item, str) or "=" not in item:
            raise ValueError(f"--set {item!r}: must be NAME=VALUE (an ExecParams field, e.g. window_m=3.5)")
        name, text = (s.strip() for s in item.split("=", 1))
        params = _with_field(params, name, text, item)
    return params


def _with_field(params, name, text, item):
    head, _, rest = name.partition(".")
    names = [f.name for f in dataclasses.fields(params) if f.init]
    if head not in names:
        what = type(params).__name__
        raise ValueError(f"--set {item}: {head!r} is not a field of {what} (fields: {', '.join(names)})")
    cur = getattr(params, head)
    if rest:
        if not dataclasses.is_dataclass(cur):
            raise ValueError(f"--set {item}: {head!r} has no fields")
        value = _with_field(cur, rest, text, item)
    else:
        if dataclasses.is_dataclass(cur):
            raise ValueError(f"--set {item}: {head!r} is a group of parameters; set its fields ({head}.NAME=VALUE)")
        value = _parse_value(text, cur, params, head, item)
    try:
        return dataclasses.replace(params, **{head: value})
    except (ValueError, TypeError) as e:
        raise ValueError(f"--set {item}: {e}") from None


def _parse_value(text, cur, params, name, item):
    low = text.lower()
    fdef = next(f for f in dataclasses.fields(params) if f.name == name)
    optional = cur is None or "None" in str(fdef.type)
    if optional and low in ("none", "null", ""):
        return None
    probe = cur
    if probe is None:     # the default is None: the annotation says what else it takes
        ann = str(fdef.type)
        probe = 0.0 if "float" in ann else 0 if "int" in ann else "" if "str" in ann else 0.0
    try:
        if isinstance(probe, bool):
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if isinstance(probe, int):
            return int(text)
        if isinstance(probe, float):
            v = float(text)
            if not math.isfinite(v):
                raise ValueError
            return v
        if isinstance(probe, tuple):
            return tuple(float(s) for s in text.split(",") if s.strip())
        if isinstance(probe, str):
            return text
    except ValueError:
        pass
    raise ValueError(f"--set {item}: {text!r} is not a valid {type(probe).__name__} for {name}")


# ============================================================================ tolerances and the report
@dataclass(frozen=True)
class Tolerances:
    """Differences at or below these count as none (an unmodified replay gives exactly zero)."""
    pose_m: float = 1e-6
    yaw_rad: float = 1e-6
    path_m: float = 1e-6
    twist: float = 1e-9
    time_s: float = 1e-9


@dataclass
class ReplayReport:
    """What :func:`replay` found; :meth:`to_dict` is replay.json, :meth:`text` the printed report."""
    log_path: str
    scenario: str
    perception: str
    overrides: dict
    ticks_recorded: int
    ticks_replayed: int
    t_end_s: float
    pose: dict
    plans: dict
    commands: dict
    images: dict
    schedule: dict
    outcome: dict
    events: dict
    truth: dict | None
    first_divergence: dict | None
    diverged: bool
    notes: list = field(default_factory=list)
    perception_stats: dict = field(default_factory=dict)
    out_dir: str | None = None
    wall_time_s: float = 0.0
    # for the picture (not in replay.json)
    _draw: dict = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in ("log_path", "scenario", "perception", "overrides", "ticks_recorded",
                                           "ticks_replayed", "t_end_s", "diverged", "first_divergence", "pose",
                                           "plans", "commands", "images", "schedule", "outcome", "events", "truth",
                                           "perception_stats", "notes", "wall_time_s")}
        return _plain_report(d)

    def text(self) -> str:
        L = [f"replay of {self.log_path} ({self.scenario}, {self.perception} perception, "
             f"{self.ticks_replayed}/{self.ticks_recorded} ticks, {self.t_end_s:.1f} s)"]
        if self.overrides:
            L.append("  overrides: " + ", ".join(f"{k}={v}" for k, v in self.overrides.items()))
        if not self.diverged:
            L.append("  no difference: the replay reproduces the recorded estimate, plans, commands and outcome")
        else:
            fd = self.first_divergence
            L.append(f"  DIVERGED first at t={fd['t_s']:.2f} s (tick {fd['tick']}): {fd['what']}")
        p = self.pose
        L.append(f"  pose estimate: max {p['max_m']:.3g} m / {math.degrees(p['max_yaw_rad']):.3g}°, final "
                 f"{p['final_m']:.3g} m" + (f", first over {p['tolerance_m']:g} m at t={p['first_t_s']:.2f} s"
                                             if p["first_t_s"] is not None else ""))
        q = self.plans
        L.append(f"  plans: {q['recorded']} recorded, {q['replayed']} replayed"
                 + (f"; first divergent at t={q['first_t_s']:.2f} s ({q['first_what']})" if q["first_t_s"] is not None
                    else "; all identical")
                 + (f"; global paths up to {q['max_global_hausdorff_m']:.3g} m apart, arcs up to "
                    f"{q['max_arc_distance_m']:.3g} m" if q["compared"] else ""))
        c = self.commands
        L.append(f"  commands: max |dv| {c['max_dv_mps']:.3g} m/s, max |dw| {c['max_dw_radps']:.3g} rad/s"
                 + (f", first divergent at t={c['first_t_s']:.2f} s" if c["first_t_s"] is not None else ""))
        o = self.outcome
        L.append(f"  outcome: recorded {o['recorded'] or '?'} ({o['recorded_reason']}); replayed "
                 f"{o['replayed'] or 'not finished'}" + (f" ({o['replayed_reason']})" if o["replayed_reason"] else ""))
        if self.events["first_difference"]:
            L.append(f"  events: {self.events['first_difference']}")
        if self.truth:
            tr = self.truth
            L.append(f"  localisation error vs truth: recorded final {tr['recorded_final_m']:.3f} m (max "
                     f"{tr['recorded_max_m']:.3f}), replayed final {tr['replayed_final_m']:.3f} m (max "
                     f"{tr['replayed_max_m']:.3f})")
        for n in self.notes:
            L.append(f"  note: {n}")
        return "\n".join(L)


def _plain_report(v):
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {str(k): _plain_report(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain_report(x) for x in v]
    if isinstance(v, (np.floating, np.integer)):
        return _plain_report(v.item())
    return v


# ============================================================================ replay
def replay(log_path, *, exec_params=None, overrides=None, out_dir=None, png: bool = True,
           tolerances: Tolerances | None = None, allow_truncated: bool = False) -> ReplayReport:
    """Re-run a recorded traverse's perception, estimation and planning and compare (module docstring).

    Parameters
    ----------
    log_path : path
        A ``traverse.mcap`` written by :func:`hil.traverse.run_traverse`.
    exec_params : nav.executive.ExecParams, optional
        Replaces the recorded executive parameters.
    overrides : dict or list of "NAME=VALUE", optional
        Executive parameters to change (on top of ``exec_params`` or the recorded ones); a dict maps
        field names (``"arc.NAME"`` for the arc planner's) to values.
    out_dir : path, optional
        Writes ``replay.json`` and ``replay.png`` there.
    png : bool
        Draw ``replay.png`` (with ``out_dir``).
    tolerances : Tolerances, optional
    allow_truncated : bool
        Replay a log whose writer did not close it, up to its last complete chunk.

    Returns
    -------
    ReplayReport
        ``diverged`` is False when nothing differs beyond the tolerances.

    Raises
    ------
    ReplayInputError
        The log cannot be replayed (named, with what is missing).
    ValueError
        An override names no parameter or has a bad value.
    """
    import time

    import nav
    from drivers.base import STOPPING_FAULTS
    from drivers.kinematics import WheelLayout
    from nav.executive import NavExecutive

    from .traverse import TraverseLoop

    wall0 = time.perf_counter()
    tol = tolerances or Tolerances()
    lg = _read_log(log_path, allow_truncated=allow_truncated)
    su = lg.setup
    notes = []
    if lg.truncated:
        notes.append(f"the log is truncated ({lg.truncation_reason}): replayed up to its last complete chunk")
    try:
        profile = nav.load_rover(su["rover"])
    except Exception as e:
        raise ReplayInputError(f"{lg.path}: the recorded rover profile {su['rover']!r} cannot be loaded ({e})") \
            from None
    try:
        recorded_params = _dec(su["exec_params"])
        timing = _dec(su["timing"])
    except (ValueError, TypeError, KeyError) as e:
        raise ReplayInputError(f"{lg.path}: the recorded executive parameters do not load ({e})") from None
    params = exec_params if exec_params is not None else recorded_params
    over_shown = {}
    if overrides:
        if isinstance(overrides, dict):
            items = []
            for k, v in overrides.items():
                items.append(f"{k}={'none' if v is None else (','.join(map(str, v)) if isinstance(v, tuple) else v)}")
        else:
            items = list(overrides)
        params = parse_overrides(items, params)
        over_shown = {s.split("=", 1)[0].strip(): s.split("=", 1)[1].strip() for s in items}
    if exec_params is not None:
        over_shown.setdefault("exec_params", "given")
    gmap = _rebuild_map(su["map"], lg.path)
    goals = [tuple(_unf(v) for v in g) for g in su["goals"]]
    keep_out = [tuple(_unf(v) for v in k) for k in su["keep_out"]]
    ex = NavExecutive(profile, gmap, goals, keep_out=keep_out, params=params)
    T0 = _und(lg.start["T"]) if lg.start is not None else _und(lg.ticks[0]["T"])
    kind = su.get("perception", "")
    pb = None
    if kind == "rendered":
        from .perception_rendered import PlaybackCamera, RenderedPerception

        pb = _Playback(lg.frames)
        cam = PlaybackCamera(pb)
        try:
            cfg = _dec(su["perception_config"])
        except (ValueError, TypeError) as e:
            raise ReplayInputError(f"{lg.path}: the rendered perception's configuration does not load ({e})") \
                from None
        perception = RenderedPerception.from_replay_config(cam, profile, cfg)
        pb.on_record = lambda rec: perception.set_vo_dropout(bool(rec.get("vo_dropout", False)))
    else:
        poses = {int(tk["i"]): _und(tk["T"]) for tk in lg.ticks}
        obs = {}
        for rec in lg.observations:
            obs.setdefault(int(rec["i"]), []).append(rec)
        perception = _RecordedPerception(poses, obs)
        notes.append("fast perception samples the simulator's truth and cannot be re-run: its poses and local maps "
                     "are replayed as recorded")
    trace = MemoryTrace()
    layout = WheelLayout.from_profile(profile)
    loop = TraverseLoop(ex, perception, gmap, layout, timing, resume_after_fault=bool(su["resume_after_fault"]),
                        recorder=trace)
    decided = {int(c["i"]) for c in lg.commands}
    decided |= {int(s["i"]) for s in lg.schedule if s.get("kind") == "finished"}
    last = len(lg.ticks) - 1
    if pb is not None:
        pb.tick = -1
    perception.start(_unf(lg.start["t"]) if lg.start is not None else 0.0, T0)
    events: list = []
    stopped = ""
    for tk in lg.ticks:
        i, t = int(tk["i"]), _unf(tk["t"])
        tm = _decode_tm(tk["tm"])
        if pb is not None:
            pb.tick = i
        else:
            perception.tick = i
        T_est = loop.sense(t, tm)
        act = loop.check_faults(t, tm.faults & STOPPING_FAULTS, events)
        if act == "end":
            stopped = "fault"
            break
        if act == "resume":
            loop.resume(t, events)
        if i == last and i not in decided:
            stopped = "recorded end"       # the traverse ended on this tick before deciding (a limit, an error)
            break
        d = loop.decide(t, T_est)
        if d.finished:
            stopped = "finished"
            break
    trace.end(loop.i, _unf(lg.ticks[min(loop.i, last)]["t"]), ex.outcome, ex.reason, ex)
    if pb is not None:
        unused = sum(len(v) for v in lg.frames.values()) - pb.consumed()
        if pb.unavailable:
            notes.append(f"{pb.unavailable} captures the replay asked for were not recorded (the recorded traverse "
                         f"took no picture on those ticks): served as no frame")
        if unused > 0:
            notes.append(f"{unused} recorded captures were not asked for by the replay")
    elif perception.unavailable:
        notes.append(f"{perception.unavailable} pictures the replayed executive asked for were not taken by the "
                     f"recorded traverse: replayed as no picture")
    rep = _compare(lg, trace, tol, loop.i + 1, notes)
    rep.outcome["replay_stopped"] = stopped or "the recorded ticks ran out"
    try:
        rep.perception_stats = _plain(perception.stats())
    except Exception as e:    # counters only
        log.debug("perception stats: %s", e)
    rep.overrides = over_shown
    rep.wall_time_s = time.perf_counter() - wall0
    if out_dir is not None:
        out = FsPath(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        rep.out_dir = str(out)
        with open(out / "replay.json", "w") as fh:
            json.dump(rep.to_dict(), fh, indent=2, allow_nan=False)
            fh.write("\n")
        if png:
            try:
                _draw_png(out / "replay.png", lg, rep, goals)
            except Exception as e:     # a picture must never lose the report
                log.warning("could not draw replay.png: %s", e)
    return rep


def _rebuild_map(m: dict, path: str):
    import nav
    from perception.stereo_map import GlobalMap

    try:
        h = _und(m["height_m"])
        cell = _unf(m["cell_size_m"])
        origin = tuple(_unf(v) for v in m["origin_xy_m"])
        fusion = _dec(m["fusion_params"]) if m.get("fusion_params") is not None else None
    except (ValueError, TypeError, KeyError) as e:
        raise ReplayInputError(f"{path}: the recorded initial map does not load ({e})") from None
    var = m.get("prior_var_m2")
    sigma = None if var is None else math.sqrt(_unf(var))
    tm = nav.TerrainMap(h, cell, origin, source="replayed initial map")
    g = GlobalMap.like(tm, prior_sigma_m=sigma if np.isfinite(h).any() else None, params=fusion)
    if var is not None and np.isfinite(h).any():
        known = np.isfinite(h)
        if not np.array_equal(np.asarray(g.var_m2)[known], np.full(int(known.sum()), np.float32(_unf(var)))):
            log.warning("replay: the rebuilt prior's variance differs from the recorded one")
    return g


# ============================================================================ comparison
def _T(rec) -> np.ndarray:
    return _und(rec["T"])


def _yaw(T) -> float:
    return math.atan2(T[1, 0], T[0, 0])


def _wrap(a: float) -> float:
    return (a + math.pi) % (2.0 * math.pi) - math.pi


def _xy(d):
    return None if d is None else _und(d)


def _hausdorff(a, b) -> float:
    if a is None and b is None:
        return 0.0
    if a is None or b is None or len(a) == 0 or len(b) == 0:
        return math.inf
    from scipy.spatial.distance import directed_hausdorff

    return float(max(directed_hausdorff(a, b)[0], directed_hausdorff(b, a)[0]))


def _arc_distance(a, b) -> float:
    """Largest distance between two arcs' samples: pointwise when they have as many, else Hausdorff."""
    if a is None and b is None:
        return 0.0
    if a is None or b is None:
        return math.inf
    if a.shape == b.shape:
        return float(np.max(np.hypot(*(a - b).T))) if len(a) else 0.0
    return _hausdorff(a, b)


def _compare(lg: _Log, tr: MemoryTrace, tol: Tolerances, n_replayed: int, notes: list) -> ReplayReport:
    R = tr.records
    firsts = []    # (t, tick, what)

    def first(t, i, what):
        firsts.append((float(t), int(i), what))

    # ---------------- pose
    rec_T = {int(tk["i"]): _T(tk) for tk in lg.ticks}
    rep_T = {int(tk["i"]): _T(tk) for tk in R[TOPIC_TICK]}
    t_of = {int(tk["i"]): _unf(tk["t"]) for tk in lg.ticks}
    common = sorted(set(rec_T) & set(rep_T))
    dp, dyaw = [], []
    first_pose = None
    for i in common:
        a, b = rec_T[i], rep_T[i]
        d = float(np.linalg.norm(a[:3, 3] - b[:3, 3]))
        dy = abs(_wrap(_yaw(a) - _yaw(b)))
        dR = float(np.max(np.abs(a[:3, :3] - b[:3, :3])))
        dp.append(d)
        dyaw.append(dy)
        if first_pose is None and (d > tol.pose_m or dy > tol.yaw_rad or dR > tol.yaw_rad):
            first_pose = i
    pose = {"compared_ticks": len(common), "max_m": max(dp) if dp else 0.0, "final_m": dp[-1] if dp else 0.0,
            "max_yaw_rad": max(dyaw) if dyaw else 0.0, "tolerance_m": tol.pose_m,
            "first_t_s": t_of[first_pose] if first_pose is not None else None, "first_tick": first_pose}
    if first_pose is not None:
        first(t_of[first_pose], first_pose, f"pose estimate differs by {dp[common.index(first_pose)]:.3g} m")
    # ---------------- commands (and where one side finished)
    rc = {int(c["i"]): c for c in lg.commands}
    pc = {int(c["i"]): c for c in R[TOPIC_COMMAND]}
    rf = {int(s["i"]): s for s in lg.schedule if s.get("kind") == "finished"}
    pf = {int(s["i"]): s for s in R[TOPIC_SCHEDULE] if s.get("kind") == "finished"}
    dv, dw = [0.0], [0.0]
    first_cmd = None
    first_cmd_what = ""
    for i in range(n_replayed):
        a, b = rc.get(i), pc.get(i)
        if a is None and b is None:
            if (i in rf) != (i in pf) and first_cmd is None:
                first_cmd, first_cmd_what = i, "one side finished, the other did not send a command"
            continue
        if a is None or b is None:
            if first_cmd is None:
                first_cmd = i
                first_cmd_what = ("the replayed executive finished" if b is None and i in pf else
                                  "the recorded executive finished" if a is None and i in rf else
                                  "a command on one side only")
            continue
        x = abs(_unf(a["vx"]) - _unf(b["vx"]))
        y = abs(_unf(a["wz"]) - _unf(b["wz"]))
        dv.append(x)
        dw.append(y)
        if first_cmd is None and (x > tol.twist or y > tol.twist or a["state"] != b["state"]
                                  or a["want_image"] != b["want_image"] or a["want_plan"] != b["want_plan"]):
            first_cmd = i
            first_cmd_what = "command " + _cmd_text(a) + " recorded, " + _cmd_text(b) + " replayed"
    commands = {"recorded": len(rc), "replayed": len(pc), "max_dv_mps": max(dv), "max_dw_radps": max(dw),
                "first_t_s": t_of.get(first_cmd) if first_cmd is not None else None, "first_tick": first_cmd,
                "first_what": first_cmd_what}
    if first_cmd is not None:
        first(t_of[first_cmd], first_cmd, first_cmd_what)
    # ---------------- plans
    rp = [p for p in lg.plans if int(p["i"]) < n_replayed]
    pp = R[TOPIC_PLAN]
    hd, ad = [0.0], [0.0]
    first_plan, first_plan_what, first_plan_t = None, "", None
    for k in range(min(len(rp), len(pp))):
        a, b = rp[k], pp[k]
        pa, pb_ = a["plan"], b["plan"]
        h = _hausdorff(_xy(pa["global_xy_m"]), _xy(pb_["global_xy_m"]))
        arc = _arc_distance(_xy((pa.get("arc") or {}).get("xy_m")), _xy((pb_.get("arc") or {}).get("xy_m")))
        if math.isfinite(h):
            hd.append(h)
        if math.isfinite(arc):
            ad.append(arc)
        why = ""
        if a["i"] != b["i"]:
            why = f"plan {k} requested at t={_unf(a['t']):.2f} s recorded, t={_unf(b['t']):.2f} s replayed"
        elif pa["status"] != pb_["status"]:
            why = f"plan {k}: {pa['status']} recorded, {pb_['status']} replayed"
        elif h > tol.path_m:
            why = f"plan {k}: global paths {h:.3g} m apart"
        elif arc > tol.path_m:
            why = f"plan {k}: local arcs {arc:.3g} m apart"
        if why and first_plan is None:
            first_plan, first_plan_what = min(int(a["i"]), int(b["i"])), why
            first_plan_t = min(_unf(a["t"]), _unf(b["t"]))
    if first_plan is None and len(rp) != len(pp):
        k = min(len(rp), len(pp))
        extra = (rp if len(rp) > len(pp) else pp)[k]
        first_plan, first_plan_t = int(extra["i"]), _unf(extra["t"])
        first_plan_what = f"{len(rp)} plans recorded, {len(pp)} replayed"
    plans = {"recorded": len(rp), "replayed": len(pp), "compared": min(len(rp), len(pp)),
             "max_global_hausdorff_m": max(hd), "max_arc_distance_m": max(ad), "first_t_s": first_plan_t,
             "first_tick": first_plan, "first_what": first_plan_what}
    if first_plan is not None:
        first(first_plan_t, first_plan, first_plan_what)
    # ---------------- images (when taken, what they saw)
    ro = [o for o in lg.observations if int(o["i"]) < n_replayed]
    po = R[TOPIC_OBS]
    first_img = None
    for k in range(min(len(ro), len(po))):
        a, b = ro[k], po[k]
        why = ""
        if a["i"] != b["i"]:
            why = f"picture {k} taken at t={_unf(a['t']):.2f} s recorded, t={_unf(b['t']):.2f} s replayed"
        elif a.get("none") != b.get("none") or a.get("digest") != b.get("digest"):
            why = f"picture {k} at t={_unf(a['t']):.2f} s: the local height map differs"
        elif "near_digest" in a and a["near_digest"] != b.get("near_digest"):    # (older logs: not compared)
            ra, rb = a["near_digest"], b.get("near_digest")
            what = ("the near map (the finer map of the ground close in) differs" if ra and rb else
                    "a near map was recorded, none made in the replay" if ra else
                    "no near map was recorded, one made in the replay")
            why = f"picture {k} at t={_unf(a['t']):.2f} s: {what}"
        if why:
            first_img = (min(_unf(a["t"]), _unf(b["t"])), min(int(a["i"]), int(b["i"])), why)
            break
    if first_img is None and len(ro) != len(po):
        k = min(len(ro), len(po))
        extra = (ro if len(ro) > len(po) else po)[k]
        first_img = (_unf(extra["t"]), int(extra["i"]), f"{len(ro)} pictures recorded, {len(po)} replayed")
    images = {"recorded": len(ro), "replayed": len(po), "first_t_s": first_img[0] if first_img else None,
              "first_what": first_img[2] if first_img else ""}
    if first_img is not None:
        first(*first_img)
    # ---------------- the schedule (deliveries, installs, pauses)
    rs = [(int(s["i"]), s["kind"]) for s in lg.schedule if int(s["i"]) < n_replayed]
    ps = [(int(s["i"]), s["kind"]) for s in R[TOPIC_SCHEDULE]]
    first_sched = None
    for k in range(max(len(rs), len(ps))):
        a = rs[k] if k < len(rs) else None
        b = ps[k] if k < len(ps) else None
        if a != b:
            i = min(x[0] for x in (a, b) if x is not None)
            first_sched = (t_of.get(i, 0.0), i, f"schedule: {a[1] if a else 'nothing'} recorded, "
                                                f"{b[1] if b else 'nothing'} replayed at tick {i}")
            break
    schedule = {"recorded": len(rs), "replayed": len(ps), "first_what": first_sched[2] if first_sched else ""}
    if first_sched is not None:
        first(*first_sched)
    # ---------------- outcome and events
    end_rec = lg.end or {}
    rep_end = R[TOPIC_END][-1] if R[TOPIC_END] else {}
    rec_out = end_rec.get("ex_outcome", "") if end_rec else ""
    outcome = {"recorded": rec_out, "recorded_reason": end_rec.get("ex_reason", "") if end_rec else "(no end record)",
               "recorded_traverse": end_rec.get("outcome", ""), "replayed": rep_end.get("ex_outcome", ""),
               "replayed_reason": rep_end.get("ex_reason", ""), "same": None}
    ev_first = ""
    if end_rec:
        outcome["same"] = (outcome["recorded"] == outcome["replayed"]
                           and outcome["recorded_reason"] == outcome["replayed_reason"])
        ea = [(e[1], e[0]) for e in end_rec.get("events", [])]
        eb = [(e[1], e[0]) for e in rep_end.get("events", [])]
        for k in range(max(len(ea), len(eb))):
            a = ea[k] if k < len(ea) else None
            b = eb[k] if k < len(eb) else None
            if a != b:
                ev_first = (f"event {k}: {a[0] if a else 'none'} at t={_tstr(a)} recorded, "
                            f"{b[0] if b else 'none'} at t={_tstr(b)} replayed")
                tt = min(_unf(x[1]) for x in (a, b) if x is not None and x[1] is not None) \
                    if any(x is not None and x[1] is not None for x in (a, b)) else t_of[n_replayed - 1]
                first(tt, _tick_at(t_of, tt), ev_first)
                break
        if not outcome["same"] and not ev_first:
            first(t_of[n_replayed - 1], n_replayed - 1, f"outcome {outcome['recorded'] or 'none'} recorded, "
                                                        f"{outcome['replayed'] or 'none'} replayed")
        events = {"recorded": len(ea), "replayed": len(eb), "first_difference": ev_first}
    else:
        notes.append("the log has no end record (the traverse was killed?): outcomes and events are not compared")
        events = {"recorded": None, "replayed": len(rep_end.get("events", [])), "first_difference": ""}
    # ---------------- truth
    truth = None
    if lg.truth:
        ra, rb = [], []
        for i in sorted(lg.truth):
            Tt = _T(lg.truth[i])
            if i in rec_T:
                ra.append(float(np.hypot(*(rec_T[i][:2, 3] - Tt[:2, 3]))))
            if i in rep_T:
                rb.append(float(np.hypot(*(rep_T[i][:2, 3] - Tt[:2, 3]))))
        if ra and rb:
            truth = {"recorded_final_m": ra[-1], "recorded_max_m": max(ra), "replayed_final_m": rb[-1],
                     "replayed_max_m": max(rb)}
    fd = None
    if firsts:
        t, i, what = min(firsts, key=lambda f: (f[1], f[0]))
        fd = {"t_s": t, "tick": i, "what": what}
    su = lg.setup
    rep = ReplayReport(
        log_path=lg.path, scenario=su.get("scenario", ""), perception=su.get("perception", ""), overrides={},
        ticks_recorded=len(lg.ticks), ticks_replayed=n_replayed, t_end_s=t_of[n_replayed - 1], pose=pose,
        plans=plans, commands=commands, images=images, schedule=schedule, outcome=outcome, events=events,
        truth=truth, first_divergence=fd, diverged=fd is not None, notes=notes)
    rep._draw = {"rec_T": rec_T, "rep_T": rep_T, "rec_plans": rp, "rep_plans": pp}
    return rep


def _cmd_text(c) -> str:
    wants = [w for w in ("image", "plan") if c.get(f"want_{w}")]
    return (f"({_unf(c['vx']):.3f} m/s, {_unf(c['wz']):.3f} rad/s) {c['state']}"
            + (f" wanting {' and '.join(wants)}" if wants else ""))


def _tstr(e) -> str:
    return "?" if e is None or e[1] is None else f"{_unf(e[1]):.2f} s"


def _tick_at(t_of: dict, t: float) -> int:
    best = 0
    for i, ti in t_of.items():
        if ti <= t + 1e-9:
            best = max(best, i)
    return best


# ============================================================================ the picture
def _draw_png(path, lg: _Log, rep: ReplayReport, goals) -> None:
    """Recorded (orange) vs replayed (cyan) estimated paths and plans over the logged known map."""
    import cv2

    from hil.report import hillshade

    d = rep._draw
    rec_xy = np.array([T[:2, 3] for _, T in sorted(d["rec_T"].items())])
    rep_xy = np.array([T[:2, 3] for _, T in sorted(d["rep_T"].items())])
    pts = [rec_xy, rep_xy]
    for p in d["rec_plans"] + d["rep_plans"]:
        g = _xy(p["plan"]["global_xy_m"])
        if g is not None and len(g):
            pts.append(g)
    allp = np.concatenate([p for p in pts if len(p)])
    km = lg.known_map
    if km is not None and "elevation_m" in km.layers:
        z = np.asarray(km.layers["elevation_m"], dtype=np.float64)
        cs = float(km.cell_size_m)
        ox, oy = km.origin_xy_m
    else:
        z = None
        cs = 0.1
        ox, oy = allp.min(axis=0) - 2.0
    lo = np.array([ox, oy])
    if z is not None:
        hi = lo + np.array([z.shape[1], z.shape[0]]) * cs
    else:
        hi = allp.max(axis=0) + 2.0
    # crop to what the traverse touched (with a margin)
    c0 = np.maximum(allp.min(axis=0) - 3.0, lo)
    c1 = np.minimum(allp.max(axis=0) + 3.0, hi)
    span = np.maximum(c1 - c0, 1.0)
    s = 900.0 / float(span.max())
    W, H = int(math.ceil(span[0] * s)) + 1, int(math.ceil(span[1] * s)) + 1
    img = np.full((H, W, 3), 40, np.uint8)
    if z is not None:
        shade = np.nan_to_num(hillshade(z, cs), nan=0.15)
        base = (shade * 180 + 40).astype(np.uint8)
        cost = km.layers.get("cost")
        bgr = np.repeat(base[..., None], 3, axis=2)
        if cost is not None:
            lethal = ~np.isfinite(np.asarray(cost, dtype=np.float64))
            seen = np.asarray(km.layers.get("seen", np.ones_like(base)), dtype=np.float64) > 0
            bgr[lethal & seen] = (0.5 * bgr[lethal & seen] + 0.5 * np.array([40, 40, 200])).astype(np.uint8)
        # map pixels of the output to grid cells
        xs = c0[0] + (np.arange(W) + 0.5) / s
        ys = c1[1] - (np.arange(H) + 0.5) / s
        cc = np.clip(((xs - ox) / cs).astype(int), 0, z.shape[1] - 1)
        rr = np.clip(((ys - oy) / cs).astype(int), 0, z.shape[0] - 1)
        img = bgr[rr[:, None], cc[None, :]]
        img = np.ascontiguousarray(img)

    def px(xy):
        xy = np.asarray(xy, np.float64).reshape(-1, 2)
        return np.round(np.stack([(xy[:, 0] - c0[0]) * s, (c1[1] - xy[:, 1]) * s], axis=1)).astype(np.int32)

    REC, REP = (0, 140, 255), (255, 220, 0)
    for plans, colour in ((d["rec_plans"], REC), (d["rep_plans"], REP)):
        for p in plans:
            g = _xy(p["plan"]["global_xy_m"])
            if g is not None and len(g) > 1:
                cv2.polylines(img, [px(g).reshape(-1, 1, 2)], False, tuple(int(0.55 * c) for c in colour), 1,
                              cv2.LINE_AA)
            arc = (p["plan"].get("arc") or {}).get("xy_m")
            if arc is not None:
                a = _xy(arc)
                if len(a) > 1:
                    cv2.polylines(img, [px(a).reshape(-1, 1, 2)], False, colour, 1, cv2.LINE_AA)
    for xy, colour, w in ((rec_xy, REC, 4), (rep_xy, REP, 2)):
        if len(xy) > 1:
            cv2.polylines(img, [px(xy).reshape(-1, 1, 2)], False, colour, w, cv2.LINE_AA)
    for g in goals:
        c = px(g[:2])[0]
        cv2.circle(img, (int(c[0]), int(c[1])), max(4, int(g[2] * s)), (0, 215, 255), 2, cv2.LINE_AA)
    fd = rep.first_divergence
    if fd is not None and fd["tick"] in d["rec_T"]:
        c = px(d["rec_T"][fd["tick"]][:2, 3])[0]
        cv2.drawMarker(img, (int(c[0]), int(c[1])), (0, 0, 255), cv2.MARKER_TILTED_CROSS, 22, 3)
    W = max(W, 480)
    if img.shape[1] < W:
        img = np.hstack([img, np.full((img.shape[0], W - img.shape[1], 3), 40, np.uint8)])
    bar = np.full((76, W, 3), 25, np.uint8)
    over = ", ".join(f"{k}={v}" for k, v in rep.overrides.items())
    title = f"replay {rep.scenario}" + (f" with {over}" if over else "") + ": " + (
        "no difference" if not rep.diverged else f"diverged at t={fd['t_s']:.1f} s (tick {fd['tick']})")
    chars = max(W // 8, 20)
    cv2.putText(bar, title[:chars], (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    if fd is not None:
        cv2.putText(bar, fd["what"][:chars], (8, 43), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (200, 200, 255), 1,
                    cv2.LINE_AA)
    cv2.putText(bar, "recorded estimate + plans", (8, 66), cv2.FONT_HERSHEY_SIMPLEX, 0.5, REC, 1, cv2.LINE_AA)
    cv2.putText(bar, "replayed", (240, 66), cv2.FONT_HERSHEY_SIMPLEX, 0.5, REP, 1, cv2.LINE_AA)
    out = np.vstack([bar, img])
    if not cv2.imwrite(os.fspath(path), out):
        raise OSError(f"could not write {path}")
