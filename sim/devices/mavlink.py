"""A virtual ArduPilot Rover autopilot speaking MAVLink, moving a :class:`~sim.sim_rover.SimRover`.

:class:`VirtualArduRover` is what sits at the far end of a telemetry cable to an ArduPilot rover. Its
MAVLink framing is our own pure codec (:mod:`drivers.mavlink_codec`), while the driver
(:class:`drivers.mavlink.MavlinkRover`) encodes and parses with pymavlink: every byte crosses between two
independent implementations.

Behaviour modelled (ArduPilot Rover 4.x, as documented and as its source reads)
-------------------------------------------------------------------------------
* **Identity**: HEARTBEAT at 1 Hz from ``sysid``/``compid`` (1/1), type GROUND_ROVER (or SURFACE_BOAT),
  autopilot ARDUPILOTMEGA, ``custom_mode`` = the Rover mode number, ``base_mode`` = CUSTOM_MODE_ENABLED +
  MANUAL_INPUT_ENABLED (manual modes) + GUIDED_ENABLED (autopilot modes) + SAFETY_ARMED, ``system_status``
  CRITICAL while a failsafe is triggered, STANDBY in HOLD, else ACTIVE. MAVLink 2 out (``wire_version=1``:
  MAVLink 1); both versions accepted in.
* **Streams**: nothing but HEARTBEAT (and STATUSTEXT) until asked (an SRx = 0 companion port, unless
  ``default_rates_hz``): ``MAV_CMD_SET_MESSAGE_INTERVAL`` (511; -1 stops, 0 = default) per message, or
  ``REQUEST_DATA_STREAM`` groups (RAW_SENSORS: RAW_IMU; EXTENDED_STATUS: SYS_STATUS, GPS_RAW_INT;
  POSITION: GLOBAL_POSITION_INT, LOCAL_POSITION_NED; EXTRA1: ATTITUDE; EXTRA2: VFR_HUD; EXTRA3:
  BATTERY_STATUS, SYSTEM_TIME), ``MAV_CMD_REQUEST_MESSAGE`` (512, also HEARTBEAT and HOME_POSITION) once.
  Rates are volatile (lost on reboot).
* **Modes**: MANUAL, ACRO, STEERING follow the pilot's sticks (:meth:`pilot_sticks`, centred by default);
  HOLD stops; GUIDED takes velocity targets; LOITER, RTL, SMART_RTL, and the rest are modelled as holding
  still (no navigation); AUTO is refused ("no mission"). Modes that need a position (GUIDED, AUTO, RTL,
  SMART_RTL, LOITER...) are refused without a GPS fix (:meth:`set_gps_fix`). Changes by
  ``MAV_CMD_DO_SET_MODE`` (176, base mode with CUSTOM_MODE_ENABLED) or SET_MODE, acked; by the pilot's
  RC switch (:meth:`pilot_set_mode`), silently.
* **Arming** (``MAV_CMD_COMPONENT_ARM_DISARM`` 400): refused (FAILED + ``"PreArm: …"`` STATUSTEXT) while
  a pre-arm check fails (:meth:`set_prearm_failure`), the battery is under ``batt_low_v``, or the mode
  is RTL / SMART_RTL; param2 = 21196 forces it. Disarm is always accepted. Already (dis)armed: ACCEPTED.
* **GUIDED targets** (SET_POSITION_TARGET_LOCAL_NED): ignored outside GUIDED, for another system, in
  frames other than LOCAL_NED / LOCAL_OFFSET_NED / BODY_NED / BODY_OFFSET_NED, or without the
  acceleration-ignore bits (then with ArduPilot's STATUSTEXT ``"Ignoring SET_POSITION_TARGET_LOCAL_NED;
  set ACC_IGNORE in mask"``). Velocity + yaw rate (0x05E7): speed ``|(vx, vy)|`` clamped to
  ``speed_max_mps``, signed by ``vx``, turn rate ``yaw_rate`` (NED: + = clockwise); velocity only (0x0DE7):
  speed and the heading of the velocity vector (body frames: relative to the current heading), steered to
  with a proportional controller; yaw rate only: a turn on the spot. Position targets are accepted but
  not navigated (the model holds still). When no target arrived for ``guid_timeout_s`` (ArduPilot's
  ``GUID_TIMEOUT``, 3 s) it stops and says ``"target not received last 3.0 secs, stopping"``.
* **Motion**: speed slews at ``accel_max_mps2`` (default the profile's), turn rate is clamped to
  ``turn_rate_max_radps``; the SimRover's own kinematics and motor dynamics do the rest. Disarmed: zero.
* **Failsafes** (bits: 1 radio, 2 GCS; :meth:`set_error_flags` sets any): a failsafe condition lasting
  ``fs_timeout_s`` (``FS_TIMEOUT`` 1.5 s) triggers: ``"<kind> Failsafe"`` (WARNING), ``system_status``
  CRITICAL, and the ``fs_action`` mode (HOLD; not when already in HOLD or RTL); when it ends: ``"<kind>
  Failsafe Cleared"``. The GCS failsafe (``fs_gcs_enable``, off by default as in ArduPilot) is the loss of
  HEARTBEATs from ``gcs_sysid`` (``SYSID_MYGCS`` 255) for ``fs_gcs_timeout_s``. Battery failsafe: under
  ``batt_low_v`` -> ``"Battery 1 is low"`` (CRITICAL) and HOLD.
* **Sensors**: GLOBAL_POSITION_INT / LOCAL_POSITION_NED from the SimRover's true pose about ``home``
  (lat, lon, alt; the EKF origin is where the rover was at boot) plus a slowly wandering EKF error
  (``position_noise_m``, 10 s correlation); GPS_RAW_INT with white ``gps_noise_m``; ATTITUDE from the
  true attitude (NED: roll, pitch + = nose up, yaw clockwise from north; ``yaw_noise_deg``) and the body
  rates; RAW_IMU in ArduPilot's scaled units (mG, mrad/s, FRD) from the SimRover's IMU; SYS_STATUS /
  BATTERY_STATUS from its battery model.
* **Reboot** (:meth:`reboot`, the :class:`~sim.devices.faults.Reboot` fault; PREFLIGHT_REBOOT_SHUTDOWN
  when disarmed): silent for ``boot_s``, then disarmed, in ``initial_mode``, streams back to their
  defaults, ``time_boot_ms`` from 0, boot banner STATUSTEXTs.

Fault hooks for :mod:`sim.devices.faults`: :meth:`set_reply_fault` (``"ack_missing"``, ``"ack_wrong"`` —
an ACK for another command or TEMPORARILY_REJECTED —, ``"bad_content"`` — telemetry with impossible values
under a valid CRC), :meth:`set_error_flags` (failsafe bits), :meth:`reboot`. STATUSTEXTs longer than 50
characters go out in MAVLink 2 chunks (``id``, ``chunk_seq``). Every frame received is
logged in :attr:`requests` as ``(t_s, sysid, compid, name, fields)``.

Streaming. The device talks without being asked (``emit(t)``, ``next_emit_s()``), which the request/reply
:class:`~sim.devices.faults.VirtualLink` does not serve yet: :class:`StreamingLink` does, and
:func:`attach_ardurover` / :func:`open_ardurover_pty` are :func:`sim.devices.attach_sim` /
:func:`sim.devices.pty.open_pty_device` with that link. Through the generic helpers (and ``rover sim-device
--protocol mavlink``) the device answers requests but streams nothing until VirtualLink serves ``emit``.
"""
from __future__ import annotations

import collections
import heapq
import math
import threading

import numpy as np

from drivers import mavlink_codec as mc
from drivers.errors import CommandOutOfRange
from drivers.mavlink_codec import MavCmd, MavResult, MavSeverity, MavState, RoverMode

from .faults import FaultInjector, VirtualLink

__all__ = ["VirtualArduRover", "StreamingLink", "attach_ardurover", "open_ardurover_pty", "STREAM_GROUPS",
           "DEFAULT_HOME"]

#: Jet Propulsion Laboratory Mars Yard, Pasadena (lat, lon in degrees; altitude in m).
DEFAULT_HOME = (34.2006, -118.1712, 350.0)
_R_EARTH_M = 6_378_137.0
_GRAVITY = 9.80665

#: REQUEST_DATA_STREAM group -> messages (ArduPilot's stream groups, the ones this model sends).
STREAM_GROUPS = {
    int(mc.MavDataStream.RAW_SENSORS): ("RAW_IMU",),
    int(mc.MavDataStream.EXTENDED_STATUS): ("SYS_STATUS", "GPS_RAW_INT"),
    int(mc.MavDataStream.POSITION): ("GLOBAL_POSITION_INT", "LOCAL_POSITION_NED"),
    int(mc.MavDataStream.EXTRA1): ("ATTITUDE",),
    int(mc.MavDataStream.EXTRA2): ("VFR_HUD",),
    int(mc.MavDataStream.EXTRA3): ("BATTERY_STATUS", "SYSTEM_TIME"),
}
_STREAMABLE = frozenset(m for g in STREAM_GROUPS.values() for m in g)
_MANUAL = frozenset((RoverMode.MANUAL, RoverMode.ACRO, RoverMode.STEERING))
_AUTOPILOT = frozenset((RoverMode.AUTO, RoverMode.GUIDED, RoverMode.RTL, RoverMode.SMART_RTL, RoverMode.LOITER,
                        RoverMode.FOLLOW, RoverMode.SIMPLE, RoverMode.DOCK, RoverMode.CIRCLE))
_NEEDS_POSITION = _AUTOPILOT
_NOT_ARMABLE = frozenset((RoverMode.RTL, RoverMode.SMART_RTL, RoverMode.INITIALISING))
_FS_NAMES = {1: "Radio", 2: "GCS"}
_TARGET_FRAMES = (mc.MAV_FRAME_LOCAL_NED, mc.MAV_FRAME_LOCAL_OFFSET_NED, mc.MAV_FRAME_BODY_NED,
                  mc.MAV_FRAME_BODY_OFFSET_NED)
_HEADING_GAIN = 2.0            # rad/s of turn rate per rad of heading error (velocity-only targets)


def _wrap(a: float) -> float:
    return (a + math.pi) % (2.0 * math.pi) - math.pi


class VirtualArduRover:
    """An ArduPilot Rover autopilot driving a SimRover (see the module docstring).

    Parameters
    ----------
    rover : sim.SimRover
        Opened and armed here if needed; its own command timeout is switched off (GUID_TIMEOUT replaces it).
    sysid, compid : int
        The autopilot's MAVLink ids.
    gcs_sysid : int
        ``SYSID_MYGCS``: the only ground station whose HEARTBEATs count for the GCS failsafe.
    vehicle_type : str
        ``"rover"`` or ``"boat"``.
    initial_mode : str or int
        Mode after boot (ArduPilot's ``INITIAL_MODE``, MANUAL).
    guid_timeout_s : float
        ``GUID_TIMEOUT``: GUIDED velocity targets expire after this long.
    speed_max_mps, accel_max_mps2, turn_rate_max_radps : float, optional
        Speed clamp, acceleration and turn-rate limits (default: the rover profile's).
    fs_gcs_enable, fs_gcs_timeout_s, fs_timeout_s, fs_action : GCS failsafe on/off, its heartbeat
        timeout, ``FS_TIMEOUT``, and the mode a failsafe switches to (``"HOLD"``).
    batt_low_v : float, optional
        Battery failsafe voltage (default: none).
    home : (lat_deg, lon_deg, alt_m)
        Where the rover's boot position is on Earth.
    position_noise_m, gps_noise_m, yaw_noise_deg : float
        EKF position error (1 sigma, wandering), GPS_RAW_INT white noise, attitude yaw noise.
    boot_s : float
        Silent time after a reboot.
    default_rates_hz : dict, optional
        Streams sent without being asked (message name -> Hz).
    max_backlog_s : float
        Streams the host did not read for longer than this are not queued (a UART's buffer is finite).
    wire_version : int
        2 (default) or 1: the MAVLink version the device sends.
    rng : numpy Generator, optional
        Sensor noise and reply faults (default ``world.rng(f"{name}.ardupilot")``).
    name : str
    """

    def __init__(self, rover, *, sysid: int = 1, compid: int = 1, gcs_sysid: int = 255, vehicle_type: str = "rover",
                 initial_mode="MANUAL", guid_timeout_s: float = 3.0, speed_max_mps: float | None = None,
                 accel_max_mps2: float | None = None, turn_rate_max_radps: float | None = None,
                 fs_gcs_enable: bool = False, fs_gcs_timeout_s: float = 5.0, fs_timeout_s: float = 1.5,
                 fs_action: str = "HOLD", batt_low_v: float | None = None, home=DEFAULT_HOME,
                 position_noise_m: float = 0.05, gps_noise_m: float = 0.5, yaw_noise_deg: float = 0.3,
                 boot_s: float = 1.0, default_rates_hz: dict | None = None, max_backlog_s: float = 1.0,
                 wire_version: int = 2, rng: np.random.Generator | None = None, name: str = "ardurover"):
        from sim.sim_rover import SimRover

        if not isinstance(rover, SimRover):
            raise TypeError(f"rover must be a sim.SimRover, got {type(rover).__name__}")
        for nm, v in (("sysid", sysid), ("compid", compid), ("gcs_sysid", gcs_sysid)):
            if isinstance(v, bool) or not (isinstance(v, int) and 1 <= v <= 255):
                raise ValueError(f"{name}: {nm} = {v!r}: must be an int in 1..255")
        if vehicle_type not in ("rover", "boat"):
            raise ValueError(f"{name}: vehicle_type = {vehicle_type!r}: must be 'rover' or 'boat'")
        if wire_version not in (1, 2):
            raise ValueError(f"{name}: wire_version = {wire_version!r}: must be 1 or 2")
        for nm, v, lo, hi in (("guid_timeout_s", guid_timeout_s, 0.1, 60.0), ("fs_gcs_timeout_s", fs_gcs_timeout_s, 0.1, 120),
                              ("fs_timeout_s", fs_timeout_s, 0.0, 60.0), ("boot_s", boot_s, 0.0, 60.0),
                              ("position_noise_m", position_noise_m, 0.0, 100.0), ("gps_noise_m", gps_noise_m, 0.0, 100.0),
                              ("yaw_noise_deg", yaw_noise_deg, 0.0, 90.0), ("max_backlog_s", max_backlog_s, 0.0, 60.0)):
            if isinstance(v, bool) or not (isinstance(v, (int, float)) and lo <= v <= hi):
                raise ValueError(f"{name}: {nm} = {v!r}: must be within [{lo:g}, {hi:g}]")
        self.initial_mode = self._mode_number(initial_mode, "initial_mode", name)
        self.fs_action = self._mode_number(fs_action, "fs_action", name)
        if not (isinstance(home, (tuple, list)) and len(home) == 3 and abs(home[0]) <= 89.0 and abs(home[1]) <= 180):
            raise ValueError(f"{name}: home = {home!r}: must be (lat_deg in [-89, 89], lon_deg, alt_m)")
        self.rover = rover
        self.world = rover.world
        self.layout = rover.layout
        self.name = name
        self.sysid, self.compid, self.gcs_sysid = sysid, compid, gcs_sysid
        self.vehicle_type = vehicle_type
        self.guid_timeout_s = float(guid_timeout_s)
        L = self.layout
        self.speed_max_mps = float(speed_max_mps if speed_max_mps is not None else L.max_speed_mps)
        self.accel_max_mps2 = float(accel_max_mps2 if accel_max_mps2 is not None else L.max_accel_mps2)
        self.turn_rate_max_radps = float(turn_rate_max_radps if turn_rate_max_radps is not None
                                         else L.max_yaw_rate_radps)
        self.fs_gcs_enable = bool(fs_gcs_enable)
        self.fs_gcs_timeout_s = float(fs_gcs_timeout_s)
        self.fs_timeout_s = float(fs_timeout_s)
        self.batt_low_v = batt_low_v
        self.home = tuple(float(x) for x in home)
        self.position_noise_m = float(position_noise_m)
        self.gps_noise_m = float(gps_noise_m)
        self.yaw_noise_rad = math.radians(yaw_noise_deg)
        self.boot_s = float(boot_s)
        self.max_backlog_s = float(max_backlog_s)
        self.wire_version = wire_version
        self.default_rates_hz = dict(default_rates_hz or {})
        for k, hz in self.default_rates_hz.items():
            if k not in _STREAMABLE or not (isinstance(hz, (int, float)) and hz > 0):
                raise ValueError(f"{name}: default_rates_hz[{k!r}] = {hz!r}: must be a streamed message at > 0 Hz")
        self.rng = rng if rng is not None else self.world.rng(f"{name}.ardupilot")
        self.parser = mc.FrameParser()
        self.requests: collections.deque = collections.deque(maxlen=50000)
        self.events: list = []
        self.lock = threading.RLock()
        self._reply_faults = {"ack_missing": 0.0, "ack_wrong": 0.0, "bad_content": 0.0}
        self._seq = 0
        self._outbox: list = []                  # heap of (t, n, frame bytes)
        self._n = 0
        self._text_id = 0
        self._tel = None
        self._tel_step = -1
        self._ekf_err = np.zeros(3)
        self._pilot = (0.0, 0.0)
        self._prearm_failure: str | None = None
        self._gps_ok = True
        self._error_bits = 0
        self.reboots = 0
        self._boot(self.world.time_s, first=True)
        # the autopilot runs before its rover in each world step
        rover.command_timeout_s = None
        self.world.detach(rover)
        self.world.attach(self)
        if rover.is_open:
            self.world.attach(rover)
        else:
            rover.open()
        if not rover.armed:
            rover.arm()
        tr = rover.truth()
        self._origin = np.array([tr.x_m, tr.y_m, tr.z_m])

    @staticmethod
    def _mode_number(mode, what, name) -> int:
        try:
            return int(RoverMode[mode.upper()] if isinstance(mode, str) else RoverMode(mode))
        except (KeyError, ValueError):
            raise ValueError(f"{name}: {what} = {mode!r}: must be an ArduPilot Rover mode "
                             f"({', '.join(m.name for m in RoverMode)})") from None

    def _boot(self, t: float, first: bool = False) -> None:
        self.mode = self.initial_mode
        self.armed = False
        self.boot_t = t
        self.boot_until_s = t if first else t + self.boot_s
        self.rates = {k: 1.0 / hz for k, hz in self.default_rates_hz.items()}     # name -> interval s
        self._due = {k: self.boot_until_s for k in self.rates}
        self._hb_due = self.boot_until_s
        self._target = None                      # (kind, speed_mps, value, t_s): "rate" value = wz (CCW, rad/s)
        self._v_cmd = 0.0
        self._w_cmd = 0.0
        self._last_gcs_hb = -math.inf
        self._fs_bits = 0
        self._fs_since = math.inf
        self._fs_triggered = 0
        self._batt_fs = False
        self._outbox = []
        self.parser.reset()
        self._text(self.boot_until_s, MavSeverity.INFO, "ArduRover V4.5.7 (rovernav sim)")
        self._text(self.boot_until_s, MavSeverity.INFO, f"Frame: {'BOAT' if self.vehicle_type == 'boat' else 'ROVER'}")

    # ------------------------------------------------------------------ helpers
    def _frame(self, name: str, fields: dict) -> bytes:
        self._seq = (self._seq + 1) & 0xFF
        return mc.encode_frame(name, fields, seq=self._seq, sysid=self.sysid, compid=self.compid,
                               version=self.wire_version if mc.MESSAGES[name].msgid <= 255 else 2)

    def _chunks(self, severity: int, text: str) -> list[dict]:
        """STATUSTEXT fields: one message, or MAVLink 2 chunks of 50 characters sharing an ``id`` (the last
        one shorter than 50: an empty one if need be)."""
        if len(text) <= 50:
            return [{"severity": int(severity), "text": text}]
        self._text_id = self._text_id % 0xFFFF + 1
        parts = [text[i:i + 50] for i in range(0, len(text), 50)]
        if len(parts[-1]) == 50:
            parts.append("")
        return [{"severity": int(severity), "text": p, "id": self._text_id, "chunk_seq": k} for k, p in enumerate(parts)]

    def _text(self, t: float, severity: int, text: str) -> None:
        for fields in self._chunks(severity, text):
            self._n += 1
            heapq.heappush(self._outbox, (t, self._n, ("STATUSTEXT", fields)))
        self.events.append((t, "statustext", text))

    def _event(self, t: float, kind: str, detail: str) -> None:
        self.events.append((t, kind, detail))

    def _time_boot_ms(self, t: float) -> int:
        return int(max(0.0, t - self.boot_t) * 1000.0) & 0xFFFFFFFF

    def _rover_tel(self):
        if self._tel is None or self._tel_step != self.world.steps:
            self._tel = self.rover.read_telemetry()
            self._tel_step = self.world.steps
        return self._tel

    def _battery_v(self) -> float:
        b = self._rover_tel().battery
        return b.voltage_v if b is not None else math.nan

    def booting(self, t: float) -> bool:
        return t < self.boot_until_s

    # ------------------------------------------------------------------ modes
    def _set_mode(self, mode: int, t: float, why: str) -> tuple[bool, str]:
        """Enter ``mode``; (accepted, reason text if refused)."""
        try:
            m = RoverMode(mode)
        except ValueError:
            return False, f"Mode change to mode {mode} failed: unknown mode"
        if m == RoverMode.INITIALISING:
            return False, "Mode change to INITIALISING failed: not selectable"
        if m in _NEEDS_POSITION and not self._gps_ok:
            return False, f"Mode change to {m.name} failed: requires position"
        if m == RoverMode.AUTO:
            return False, "Mode change to AUTO failed: no mission"
        if m != self.mode:
            self._event(t, "mode", f"{RoverMode(self.mode).name} -> {m.name} ({why})")
            self.mode = int(m)
            self._target = None                  # entering GUIDED (or leaving it) starts from "stop"
        return True, ""

    def _set_armed(self, arm: bool, force: bool, t: float) -> tuple[int, str]:
        if arm == self.armed:
            return MavResult.ACCEPTED, ""
        if arm and not force:
            if self._prearm_failure:
                return MavResult.FAILED, f"PreArm: {self._prearm_failure}"
            v = self._battery_v()
            if self.batt_low_v is not None and math.isfinite(v) and v < self.batt_low_v:
                return MavResult.FAILED, f"PreArm: Battery 1 below minimum arming voltage ({v:.2f} V)"
            if self.mode in _NOT_ARMABLE:
                return MavResult.FAILED, f"Arm: Mode {RoverMode(self.mode).name} not armable"
        self.armed = arm
        self._target = None
        self._event(t, "armed" if arm else "disarmed", "forced" if force else "")
        return MavResult.ACCEPTED, ""

    # ------------------------------------------------------------------ the wire: requests
    def receive(self, data: bytes, t_s: float) -> list[bytes]:
        """Bytes that reached the autopilot at ``t_s``; returns the immediate replies (ACKs, refusal texts)."""
        with self.lock:
            if self.booting(t_s):
                return []
            replies: list[bytes] = []
            for fr in self.parser.feed(data):
                fields = fr.fields()
                self.requests.append((t_s, fr.sysid, fr.compid, fr.name, fields))
                self._handle(fr, fields, t_s, replies)
            return replies

    def _for_us(self, fields: dict, sys_key: str = "target_system", comp_key: str | None = "target_component") -> bool:
        ts = fields.get(sys_key, 0)
        tc = fields.get(comp_key, 0) if comp_key else 0
        return ts in (0, self.sysid) and tc in (0, self.compid)

    def _handle(self, fr, f: dict, t: float, replies: list) -> None:
        name = fr.name
        if name == "HEARTBEAT":
            if fr.sysid == self.gcs_sysid and f["type"] == mc.MAV_TYPE_GCS:
                self._last_gcs_hb = t
            return
        if name == "COMMAND_LONG":
            if self._for_us(f):
                self._command_long(fr, f, t, replies)
            return
        if name == "SET_MODE":
            if f["target_system"] != self.sysid:
                return
            if f["base_mode"] & mc.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED:
                ok, why = self._set_mode(f["custom_mode"], t, "SET_MODE")
                res = MavResult.ACCEPTED if ok else MavResult.FAILED
                if why:
                    self._reply_text(replies, MavSeverity.WARNING, why)
            else:
                res = MavResult.DENIED
            self._ack(replies, fr, 11, res)
            return
        if name == "SET_POSITION_TARGET_LOCAL_NED":
            if self._for_us(f):
                self._position_target(f, t, replies)
            return
        if name == "REQUEST_DATA_STREAM":
            if self._for_us(f):
                groups = list(STREAM_GROUPS) if f["req_stream_id"] == mc.MavDataStream.ALL else [f["req_stream_id"]]
                for g in groups:
                    for m in STREAM_GROUPS.get(g, ()):
                        self._set_rate(m, f["req_message_rate"] if f["start_stop"] else 0, t)
            return

    def _reply_text(self, replies: list, severity: int, text: str) -> None:
        replies.extend(self._frame("STATUSTEXT", f) for f in self._chunks(severity, text))
        self.events.append((self.world.time_s, "statustext", text))

    def _ack(self, replies: list, fr, command: int, result: int) -> None:
        f = self._reply_faults
        if f["ack_missing"] and self.rng.random() < f["ack_missing"]:
            return
        if f["ack_wrong"] and self.rng.random() < f["ack_wrong"]:
            if self.rng.random() < 0.5:
                command = (command + 1) & 0xFFFF                      # an ACK for some other command
            else:
                result = MavResult.TEMPORARILY_REJECTED
        replies.append(self._frame("COMMAND_ACK", {"command": command, "result": int(result),
                                                   "target_system": fr.sysid, "target_component": fr.compid}))

    def _set_rate(self, name: str, hz: float, t: float) -> None:
        if hz > 0:
            iv = 1.0 / hz
            if self.rates.get(name) != iv:
                self.rates[name] = iv
                self._due[name] = t
        else:
            self.rates.pop(name, None)
            self._due.pop(name, None)

    def _command_long(self, fr, f: dict, t: float, replies: list) -> None:
        cmd = f["command"]
        p1, p2 = f["param1"], f["param2"]
        if cmd == MavCmd.COMPONENT_ARM_DISARM:
            force = abs(p2 - mc.FORCE_ARM_MAGIC) < 0.5
            res, why = self._set_armed(p1 > 0.5, force, t)
            if why:
                self._reply_text(replies, MavSeverity.CRITICAL, why)
            self._ack(replies, fr, cmd, res)
        elif cmd == MavCmd.DO_SET_MODE:
            if int(p1) & mc.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED and math.isfinite(p2):
                ok, why = self._set_mode(int(p2), t, "GCS command")
                if why:
                    self._reply_text(replies, MavSeverity.WARNING, why)
                self._ack(replies, fr, cmd, MavResult.ACCEPTED if ok else MavResult.FAILED)
            else:
                self._ack(replies, fr, cmd, MavResult.DENIED)
        elif cmd == MavCmd.SET_MESSAGE_INTERVAL:
            d = mc.MESSAGES_BY_ID.get(int(p1)) if math.isfinite(p1) else None
            if d is None or d.name not in _STREAMABLE:
                self._ack(replies, fr, cmd, MavResult.DENIED)
                return
            if p2 < 0:
                self._set_rate(d.name, 0, t)
            elif p2 == 0:
                self._set_rate(d.name, self.default_rates_hz.get(d.name, 0), t)
            else:
                self._set_rate(d.name, 1e6 / p2, t)
            self._ack(replies, fr, cmd, MavResult.ACCEPTED)
        elif cmd == MavCmd.REQUEST_MESSAGE:
            d = mc.MESSAGES_BY_ID.get(int(p1)) if math.isfinite(p1) else None
            if d is None or (d.name not in _STREAMABLE and d.name not in ("HOME_POSITION", "HEARTBEAT")):
                self._ack(replies, fr, cmd, MavResult.DENIED)
                return
            self._ack(replies, fr, cmd, MavResult.ACCEPTED)
            replies.append(self._frame(d.name, self._content(d.name, t, bad=self._bad())))
        elif cmd == MavCmd.PREFLIGHT_REBOOT_SHUTDOWN and int(p1) == 1:
            if self.armed:
                self._ack(replies, fr, cmd, MavResult.DENIED)
                return
            self._ack(replies, fr, cmd, MavResult.ACCEPTED)
            self._reboot(t)
        else:
            self._ack(replies, fr, cmd, MavResult.UNSUPPORTED)

    def _position_target(self, f: dict, t: float, replies: list) -> None:
        if self.mode != RoverMode.GUIDED or f["coordinate_frame"] not in _TARGET_FRAMES:
            return
        m = f["type_mask"]
        pos_ignore = bool(m & (mc.TM_X | mc.TM_Y))
        vel_ignore = bool(m & (mc.TM_VX | mc.TM_VY))
        acc_ignore = bool(m & (mc.TM_AX | mc.TM_AY))
        yaw_ignore = bool(m & mc.TM_YAW)
        rate_ignore = bool(m & mc.TM_YAW_RATE)
        if not acc_ignore:
            self._reply_text(replies, MavSeverity.INFO, "Ignoring SET_POSITION_TARGET_LOCAL_NED; set ACC_IGNORE in mask")
            return
        if not pos_ignore:
            self._target = ("hold", 0.0, 0.0, t)
            self._event(t, "position_target", "position targets are not navigated by the model: holding")
            return
        vx, vy = f["vx"], f["vy"]
        if not all(math.isfinite(x) for x in (vx, vy, f["yaw"], f["yaw_rate"])):
            return
        body = f["coordinate_frame"] in (mc.MAV_FRAME_BODY_NED, mc.MAV_FRAME_BODY_OFFSET_NED)
        yaw_ned = math.pi / 2 - self.rover.truth().yaw_rad
        speed = min(math.hypot(vx, vy), self.speed_max_mps) if not vel_ignore else 0.0
        heading = math.atan2(vy, vx) + (yaw_ned if body else 0.0)
        if not yaw_ignore:
            heading = f["yaw"] + (yaw_ned if body else 0.0)
        if not vel_ignore and (not yaw_ignore or not rate_ignore) and vx < 0:
            speed = -speed
        if not vel_ignore and yaw_ignore and rate_ignore:
            self._target = ("heading", speed, heading, t)
        elif not rate_ignore and yaw_ignore:
            self._target = ("rate", speed, -f["yaw_rate"], t)
        elif not yaw_ignore and rate_ignore:
            self._target = ("heading", speed, heading, t)

    # ------------------------------------------------------------------ the wire: streams
    def next_emit_s(self) -> float:
        """Earliest time the autopilot sends something on its own."""
        with self.lock:
            best = max(self._hb_due, self.boot_until_s)
            if self._due:
                best = min(best, max(min(self._due.values()), self.boot_until_s))
            if self._outbox:
                best = min(best, max(self._outbox[0][0], self.boot_until_s))
            return best

    def emit(self, t: float) -> list[tuple[float, bytes]]:
        """Frames the autopilot sent on its own up to ``t``: ``[(t_sent, bytes)]`` in time order."""
        with self.lock:
            if self.booting(t):
                return []
            out = []
            floor = t - self.max_backlog_s
            if self._hb_due < floor:
                self._hb_due += math.ceil(floor - self._hb_due)
            while self._hb_due <= t:
                out.append((self._hb_due, "HEARTBEAT"))
                self._hb_due += 1.0
            for name, iv in self.rates.items():
                due = self._due.get(name, t)
                if due < floor:
                    due += math.ceil((floor - due) / iv) * iv
                while due <= t:
                    out.append((due, name))
                    due += iv
                self._due[name] = due
            while self._outbox and self._outbox[0][0] <= t:
                ts, _, (name, fields) = heapq.heappop(self._outbox)
                out.append((ts, (name, fields)))
            out.sort(key=lambda x: x[0])
            frames = []
            for ts, what in out:
                if isinstance(what, tuple):
                    frames.append((ts, self._frame(*what)))
                else:
                    frames.append((ts, self._frame(what, self._content(what, t, bad=self._bad()))))
            return frames

    def _bad(self) -> bool:
        p = self._reply_faults["bad_content"]
        return bool(p) and self.rng.random() < p

    def _content(self, name: str, t: float, bad: bool = False) -> dict:
        """Field values of a telemetry message now (``bad``: impossible values, for the BadContent fault)."""
        tr = self.rover.truth()
        boot_ms = self._time_boot_ms(t)
        yaw_ned = _wrap(math.pi / 2 - tr.yaw_rad)
        if name == "HEARTBEAT":
            base = mc.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED
            if self.mode in _MANUAL:
                base |= mc.MAV_MODE_FLAG_MANUAL_INPUT_ENABLED
            if self.mode in _AUTOPILOT:
                base |= mc.MAV_MODE_FLAG_GUIDED_ENABLED
            if self.armed:
                base |= mc.MAV_MODE_FLAG_SAFETY_ARMED
            status = MavState.CRITICAL if (self._fs_triggered or self._batt_fs) else \
                MavState.STANDBY if self.mode == RoverMode.HOLD else MavState.ACTIVE
            return {"type": mc.MAV_TYPE_SURFACE_BOAT if self.vehicle_type == "boat" else mc.MAV_TYPE_GROUND_ROVER,
                    "autopilot": mc.MAV_AUTOPILOT_ARDUPILOTMEGA, "base_mode": base,
                    "custom_mode": 77 if bad else self.mode, "system_status": int(status), "mavlink_version": 3}
        if name == "ATTITUDE":
            g = self._rover_tel().imu.gyro_radps
            return {"time_boot_ms": boot_ms, "roll": math.nan if bad else tr.roll_rad, "pitch": -tr.pitch_rad,
                    "yaw": _wrap(yaw_ned + self.rng.normal(0.0, self.yaw_noise_rad)) if self.yaw_noise_rad else yaw_ned,
                    "rollspeed": float(g[0]), "pitchspeed": -float(g[1]), "yawspeed": -float(g[2])}
        if name in ("LOCAL_POSITION_NED", "GLOBAL_POSITION_INT", "GPS_RAW_INT", "VFR_HUD"):
            d = np.array([tr.x_m, tr.y_m, tr.z_m]) - self._origin
            ned = np.array([d[1], d[0], -d[2]]) + self._ekf_err
            c, s = math.cos(tr.yaw_rad), math.sin(tr.yaw_rad)
            ve, vn = tr.vx_mps * c - tr.vy_mps * s, tr.vx_mps * s + tr.vy_mps * c
            if name == "LOCAL_POSITION_NED":
                if bad:
                    ned = ned + np.array([5000.0, -5000.0, 0.0])
                return {"time_boot_ms": boot_ms, "x": ned[0], "y": ned[1], "z": ned[2], "vx": vn, "vy": ve, "vz": 0.0}
            if name == "VFR_HUD":
                return {"groundspeed": math.hypot(ve, vn), "heading": int(math.degrees(yaw_ned) % 360),
                        "throttle": int(min(100, abs(self._v_cmd) / max(self.speed_max_mps, 1e-6) * 100)),
                        "alt": self.home[2] - ned[2]}
            if name == "GPS_RAW_INT":
                ned = ned - self._ekf_err + self.rng.normal(0.0, self.gps_noise_m, 3)
            lat, lon, alt = self._latlon(ned)
            if bad:
                lat = 95.0
            if name == "GPS_RAW_INT":
                return {"time_usec": int(t * 1e6), "fix_type": 3 if self._gps_ok else 1, "lat": int(round(lat * 1e7)),
                        "lon": int(round(lon * 1e7)), "alt": int(round(alt * 1000)), "eph": 80, "epv": 120,
                        "vel": int(round(math.hypot(ve, vn) * 100)),
                        "cog": int(round(math.degrees(math.atan2(ve, vn)) % 360 * 100)) % 36000,
                        "satellites_visible": 14 if self._gps_ok else 3}
            return {"time_boot_ms": boot_ms, "lat": int(round(lat * 1e7)), "lon": int(round(lon * 1e7)),
                    "alt": int(round(alt * 1000)), "relative_alt": int(round(-ned[2] * 1000)),
                    "vx": int(round(vn * 100)), "vy": int(round(ve * 100)), "vz": 0,
                    "hdg": int(round(math.degrees(yaw_ned) % 360 * 100)) % 36000}
        if name == "RAW_IMU":
            imu = self._rover_tel().imu
            acc = np.array([imu.accel_mps2[0], -imu.accel_mps2[1], -imu.accel_mps2[2]]) * (1000.0 / _GRAVITY)
            gyr = np.array([imu.gyro_radps[0], -imu.gyro_radps[1], -imu.gyro_radps[2]]) * 1000.0
            if bad:
                acc[0] = 32000.0
            a = np.clip(np.rint(acc), -32768, 32767).astype(int)
            w = np.clip(np.rint(gyr), -32768, 32767).astype(int)
            return {"time_usec": int(t * 1e6), "xacc": int(a[0]), "yacc": int(a[1]), "zacc": int(a[2]),
                    "xgyro": int(w[0]), "ygyro": int(w[1]), "zgyro": int(w[2])}
        if name in ("SYS_STATUS", "BATTERY_STATUS"):
            b = self._rover_tel().battery
            mv = 60000 if bad else (int(round(b.voltage_v * 1000)) if b is not None else 0xFFFF)
            ca = int(round(b.current_a * 100)) if b is not None and math.isfinite(b.current_a) else -1
            rem = int(round(b.state_of_charge * 100)) if b is not None and math.isfinite(b.state_of_charge) else -1
            mv, ca = max(0, min(0xFFFF, mv)), max(-32768, min(32767, ca))
            if name == "SYS_STATUS":
                return {"voltage_battery": mv, "current_battery": ca, "battery_remaining": rem, "load": 250}
            return {"id": 0, "battery_function": 1, "type": 3, "temperature": 0x7FFF,
                    "voltages": [mv] + [0xFFFF] * 9, "current_battery": ca, "current_consumed": -1,
                    "energy_consumed": -1, "battery_remaining": rem,
                    "charge_state": 3 if self._batt_fs else 1}
        if name == "SYSTEM_TIME":
            return {"time_unix_usec": int((1_700_000_000.0 + t) * 1e6), "time_boot_ms": boot_ms}
        if name == "HOME_POSITION":
            return {"latitude": int(round(self.home[0] * 1e7)), "longitude": int(round(self.home[1] * 1e7)),
                    "altitude": int(round(self.home[2] * 1000)), "q": [1.0, 0.0, 0.0, 0.0]}
        raise ValueError(f"{self.name}: no content model for {name}")                # pragma: no cover

    def _latlon(self, ned) -> tuple[float, float, float]:
        lat0, lon0, alt0 = self.home
        lat = lat0 + math.degrees(ned[0] / _R_EARTH_M)
        lon = lon0 + math.degrees(ned[1] / (_R_EARTH_M * math.cos(math.radians(lat0))))
        return lat, lon, alt0 - ned[2]

    # ------------------------------------------------------------------ world body
    def advance(self, n_steps: int, dt_s: float) -> None:
        """Called by the world before the rover: failsafes, target timeout, the speed / turn controller."""
        with self.lock:
            t0 = self.world.time_s
            span = n_steps * dt_s
            t = t0 + span
            self._ekf_walk(span)
            if self.booting(t0):
                self._drive(0.0, 0.0, span, hard=True)
                return
            self._failsafes(t)
            tg = self._target
            if tg is not None and tg[0] != "hold" and self.mode == RoverMode.GUIDED \
                    and t >= tg[3] + self.guid_timeout_s:
                self._target = None
                self._text(tg[3] + self.guid_timeout_s, MavSeverity.WARNING,
                           f"target not received last {self.guid_timeout_s:.1f} secs, stopping")
            v, w = 0.0, 0.0
            if not self.armed:
                self._drive(0.0, 0.0, span, hard=True)
                return
            if self.mode == RoverMode.GUIDED and self._target is not None:
                kind, speed, val, _ = self._target
                v = speed
                if kind == "rate":
                    w = val
                elif kind == "heading":
                    yaw_ned = math.pi / 2 - self.rover.truth().yaw_rad
                    w = -_HEADING_GAIN * _wrap(val - yaw_ned)
            elif self.mode in _MANUAL:
                v, w = self._pilot
            self._drive(v, w, span)

    def _ekf_walk(self, span: float) -> None:
        if self.position_noise_m <= 0 or span <= 0:
            return
        tau = 10.0
        a = math.exp(-span / tau)
        self._ekf_err = a * self._ekf_err + self.rng.normal(0.0, self.position_noise_m * math.sqrt(1 - a * a), 3)
        self._ekf_err[2] *= 0.2

    def _drive(self, v_des: float, w_des: float, span: float, hard: bool = False) -> None:
        v_des = max(-self.speed_max_mps, min(self.speed_max_mps, v_des))
        w = max(-self.turn_rate_max_radps, min(self.turn_rate_max_radps, w_des))
        if hard:
            v = 0.0
        else:
            step = self.accel_max_mps2 * span
            v = self._v_cmd + max(-step, min(step, v_des - self._v_cmd))
        if v == self._v_cmd and w == self._w_cmd:
            return
        self._v_cmd, self._w_cmd = v, w
        self.rover.set_twist(*self._feasible(v, w))

    def _feasible(self, v: float, w: float) -> tuple[float, float]:
        L = self.layout
        v = max(-L.max_speed_mps, min(L.max_speed_mps, v))
        w = max(-L.max_yaw_rate_radps, min(L.max_yaw_rate_radps, w))
        if w and L.min_turning_radius_m > 0:
            if v == 0.0 and not L.can_point_turn:
                w = 0.0
            elif v and abs(v / w) < L.min_turning_radius_m:
                w = math.copysign(abs(v) / L.min_turning_radius_m, w)
        for _ in range(12):
            try:
                return L.check_twist(v, w)
            except CommandOutOfRange:
                w *= 0.5
        return 0.0, 0.0

    def _failsafes(self, t: float) -> None:
        bits = self._error_bits
        if self.fs_gcs_enable and math.isfinite(self._last_gcs_hb) and t - self._last_gcs_hb > self.fs_gcs_timeout_s:
            bits |= 2
        if bits and not self._fs_bits:
            self._fs_since = t
        self._fs_bits = bits
        if self._fs_triggered and not bits:
            names = ", ".join(n for b, n in _FS_NAMES.items() if self._fs_triggered & b) or "Failsafe"
            self._text(t, MavSeverity.INFO, f"{names} Failsafe Cleared")
            self._fs_triggered = 0
        self._fs_triggered &= bits
        if not self._fs_triggered and bits and t - self._fs_since >= self.fs_timeout_s \
                and self.mode not in (RoverMode.RTL, RoverMode.HOLD):
            self._fs_triggered = bits
            names = ", ".join(n for b, n in _FS_NAMES.items() if bits & b) or "Failsafe"
            self._text(t, MavSeverity.WARNING, f"{names} Failsafe")
            self._set_mode(self.fs_action, t, f"{names} failsafe")
        if self.batt_low_v is not None and not self._batt_fs:
            v = self._battery_v()
            if math.isfinite(v) and v < self.batt_low_v:
                self._batt_fs = True
                self._text(t, MavSeverity.CRITICAL, f"Battery 1 is low {v:.2f}V")
                self._set_mode(RoverMode.HOLD, t, "battery failsafe")

    # ------------------------------------------------------------------ pilot and test hooks
    def pilot_set_mode(self, mode, t_s: float | None = None) -> None:
        """The pilot flips the RC mode switch (no MAVLink involved; the GCS learns it from HEARTBEATs)."""
        with self.lock:
            t = self.world.time_s if t_s is None else t_s
            ok, why = self._set_mode(self._mode_number(mode, "mode", self.name), t, "RC switch")
            if not ok:
                raise ValueError(f"{self.name}: {why}")

    def pilot_sticks(self, vx_mps: float = 0.0, wz_radps: float = 0.0) -> None:
        """Pilot's throttle / steering as a twist, obeyed in MANUAL, ACRO and STEERING."""
        with self.lock:
            self._pilot = (float(vx_mps), float(wz_radps))

    def set_prearm_failure(self, text: str | None) -> None:
        """Make arming fail with ``"PreArm: <text>"`` (None: checks pass)."""
        with self.lock:
            self._prearm_failure = text

    def set_gps_fix(self, ok: bool) -> None:
        with self.lock:
            self._gps_ok = bool(ok)

    def reboot(self, addr=None, t_s: float | None = None) -> None:
        """Reboot the autopilot (``addr`` is ignored: one autopilot)."""
        with self.lock:
            self._reboot(self.world.time_s if t_s is None else t_s)

    def _reboot(self, t: float) -> None:
        self.reboots += 1
        self._event(t, "reboot", f"silent for {self.boot_s:g} s")
        self._boot(t)
        self._drive(0.0, 0.0, 0.0, hard=True)

    def set_error_flags(self, bits: int, addr=None) -> None:
        """Failsafe condition bits (1 radio, 2 GCS); 0 clears. The failsafe triggers after ``fs_timeout_s``."""
        with self.lock:
            self._error_bits = int(bits)

    def set_reply_fault(self, kind: str, prob: float) -> None:
        """``"ack_missing"``, ``"ack_wrong"`` (COMMAND_ACKs) or ``"bad_content"`` (telemetry) with probability ``prob``."""
        if kind not in self._reply_faults:
            raise ValueError(f"{self.name}: reply fault {kind!r}: must be one of {', '.join(self._reply_faults)}")
        if not (isinstance(prob, (int, float)) and 0 <= prob <= 1):
            raise ValueError(f"{self.name}: prob = {prob!r}: must be in [0, 1]")
        with self.lock:
            self._reply_faults[kind] = float(prob)

    # ------------------------------------------------------------------ state for tests
    def velocity_target(self):
        """``(kind, speed_mps, value)`` of the active GUIDED target (``"rate"``: value = CCW turn rate rad/s;
        ``"heading"``: NED heading rad), or None."""
        with self.lock:
            return None if self._target is None else self._target[:3]

    def commanded_twist(self) -> tuple[float, float]:
        """``(speed_mps, turn_rate_radps CCW)`` the controller asks of the motors now."""
        return self._v_cmd, self._w_cmd

    def stream_rates_hz(self) -> dict:
        with self.lock:
            return {k: 1.0 / iv for k, iv in self.rates.items()}

    def count(self, name: str, since_s: float = -math.inf) -> int:
        """Frames of message ``name`` received since ``since_s``."""
        return sum(1 for t, _, _, n, _ in list(self.requests) if n == name and t >= since_s)

    def targets(self, since_s: float = -math.inf) -> list:
        """Velocity targets received: ``[(t_s, vx, yaw_rate, type_mask, frame)]``."""
        return [(t, f["vx"], f["yaw_rate"], f["type_mask"], f["coordinate_frame"])
                for t, _, _, n, f in list(self.requests) if n == "SET_POSITION_TARGET_LOCAL_NED" and t >= since_s]

    def __repr__(self) -> str:
        return (f"VirtualArduRover({self.name!r}, sysid {self.sysid}, {RoverMode(self.mode).name}, "
                f"{'armed' if self.armed else 'disarmed'})")


# ----------------------------------------------------------------------------- a link for talking devices
class StreamingLink(VirtualLink):
    """A :class:`~sim.devices.faults.VirtualLink` whose device may also send on its own: frames from
    ``device.emit(t) -> [(t_sent, bytes)]`` go to the host with wire time and stream faults, like replies;
    ``device.next_emit_s()`` wakes readers (``sim://`` step mode) and the pty server for them. (If
    :class:`~sim.devices.faults.VirtualLink` itself serves ``emit``, nothing is sent twice: ``emit(t)`` hands
    out each frame once.)

    ``grid_s`` (the world's physics step, when the link runs on the world's clock): :meth:`next_event_s`
    reports the first clock tick at or after the next event. A stepped ``sim://`` reader sleeps to the time
    this returns, and the simulated clock only moves in whole steps: an event a hair past a tick (float
    rounding of a 0.1 s stream period) would otherwise make it sleep in 1 µs slices until the next tick.
    """

    def __init__(self, device, *, clock, injector=None, baud=None, grid_s: float | None = None):
        super().__init__(device, clock=clock, injector=injector, baud=baud)
        if grid_s is not None and not (isinstance(grid_s, (int, float)) and grid_s > 0):
            raise ValueError(f"grid_s = {grid_s!r}: must be > 0 or None")
        self.grid_s = grid_s

    def service(self, t: float | None = None) -> None:
        with self.lock:
            t = self.clock.now() if t is None else t
            super().service(t)
            emit = getattr(self.device, "emit", None)
            if not callable(emit):
                return
            inj = self.injector
            for te, frame in emit(t):
                start = max(te, self._tx_busy_until)
                end = start + self.wire_s(len(frame))
                self._tx_busy_until = end
                for ta, rb in (inj.process(frame, end, "to_host") if inj else [(end, frame)]):
                    heapq.heappush(self._tx, (ta, next(self._seq), rb))

    def next_event_s(self) -> float:
        best = super().next_event_s()
        nxt = getattr(self.device, "next_emit_s", None)
        if callable(nxt):
            best = min(best, nxt())
        g = self.grid_s
        if g is None or not math.isfinite(best):
            return best
        k = math.ceil(best / g - 1e-9)
        while k * g < best:                      # the clock reads steps * dt: compare in the same arithmetic
            k += 1
        return k * g


def attach_ardurover(name: str, *, rover="skidsteer", world=None, baud: int | None = None, faults=(),
                     time: str = "step", aliases=(), replace: bool = True, clock=None, **device_kw):
    """:func:`sim.devices.attach_sim` for the virtual ArduPilot rover: a SimRover, its autopilot, a
    :class:`StreamingLink` with a fault injector, registered as ``sim://name``. Returns a
    :class:`sim.devices.SimAttachment`."""
    from . import SimAttachment, register, virtual_rover

    sim_rover = virtual_rover(rover, world=world)
    w = sim_rover.world
    device = VirtualArduRover(sim_rover, **device_kw)
    injector = FaultInjector(faults, rng=w.rng(f"faults.{name}"))
    link = StreamingLink(device, clock=clock if clock is not None else w.clock, injector=injector, baud=baud,
                         grid_s=w.physics_dt_s if clock is None else None)
    url = register(name, link, time=time, aliases=aliases, replace=replace)
    return SimAttachment(w, sim_rover, device, injector, link, url, name)


def open_ardurover_pty(rover="skidsteer", *, world=None, seed: int = 0, baud: int | None = 115200,
                       symlink: str | None = None, faults=(), rate: float = 1.0, **device_kw):
    """:func:`sim.devices.pty.open_pty_device` for the virtual ArduPilot rover (with a :class:`StreamingLink`).
    Returns a started :class:`sim.devices.pty.PtyDevice`; the caller closes it."""
    from . import virtual_rover
    from .pty import PtyDevice, PtyServer, RealtimeClock, WorldPacer

    sim_rover = virtual_rover(rover, world=world, seed=seed)
    w = sim_rover.world
    device = VirtualArduRover(sim_rover, **device_kw)
    clock = RealtimeClock(w.time_s, rate=rate)
    injector = FaultInjector(faults, rng=w.rng("faults.mavlink.pty"))
    link = StreamingLink(device, clock=clock, injector=injector, baud=baud)
    pacer = WorldPacer(w, clock, lock=device.lock)
    server = PtyServer(link, pacer=pacer, symlink=symlink)
    server.start()
    return PtyDevice(w, sim_rover, device, injector, link, clock, server)
