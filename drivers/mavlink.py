"""MAVLink driver for ArduPilot Rover: :class:`MavlinkRover`, a :class:`~drivers.base.Rover` that drives an
ArduPilot rover (or boat) in GUIDED mode with body-velocity targets.

Needs the optional dependency pymavlink (LGPL-3.0): ``pip install "rovernav[mavlink]"``. It is imported
when a :class:`MavlinkRover` is built, never when this module is imported. pymavlink's own connection
objects (``mavutil.mavlink_connection``) are not used: frames are encoded and parsed with the
``ardupilotmega`` dialect's :class:`MAVLink` object over our :class:`~drivers.transport.Transport`, so
``sim://``, ptys, ``socket://`` (a telemetry bridge such as ser2net or mavlink-router's TCP server),
exclusive open and vanished-port recovery behave exactly as for the other drivers.

Protocol (MAVLink 2, ArduPilot Rover 4.x)
-----------------------------------------
* **Connect**: GCS HEARTBEATs (type GCS, autopilot INVALID) at 1 Hz from system id ``source_system``
  (default 255 = ArduPilot's default ``SYSID_MYGCS``: only that id counts for its GCS failsafe); wait for a
  HEARTBEAT from an ArduPilot (autopilot 3) ground rover (type 10) or boat (11); other systems on the
  link (another GCS, a camera) are ignored; ``MAV_CMD_REQUEST_MESSAGE`` (512) for a HEARTBEAT is sent
  every 0.5 s meanwhile so the vehicle answers at once. Then the telemetry streams are requested with
  ``MAV_CMD_SET_MESSAGE_INTERVAL`` (511) per message, falling back to ``REQUEST_DATA_STREAM`` when they
  do not flow; they are requested again after a reconnect, a vehicle reboot, or whenever they stop
  while heartbeats continue.
* **Arm** (:meth:`MavlinkRover.arm`): ``MAV_CMD_DO_SET_MODE`` (176, custom mode 15 = GUIDED), then
  ``MAV_CMD_COMPONENT_ARM_DISARM`` (400, param1 = 1), each in a COMMAND_LONG checked by its COMMAND_ACK
  (retried ``command_retries`` times after ``ack_timeout_s``; ``TEMPORARILY_REJECTED`` is retried too).
  A refusal raises with the vehicle's reason (its recent STATUSTEXTs, e.g. ``PreArm: ...``).
* **Velocity targets**: SET_POSITION_TARGET_LOCAL_NED in ``MAV_FRAME_BODY_NED`` (8: velocity relative to
  the vehicle's heading; ArduPilot Rover accepts frames 1, 7, 8, 9) with type mask ``0x05E7`` ("use
  velocity + yaw rate": position, vz, accelerations and yaw ignored): ``vx`` = forward speed (negative =
  reverse; ArduPilot takes the direction from the sign of vx when a yaw rate is given), ``vy = 0``,
  ``yaw_rate = -wz`` (NED: positive yaw rate turns clockwise seen from above; rovernav's ``wz`` is CCW,
  REP-103). ArduPilot obeys these only in GUIDED and silently ignores them otherwise; it stops by
  itself when no target came for ``GUID_TIMEOUT`` (3 s).
* **Disarm**: 400 with param1 = 0. **E-stop**: a zero target, then a *forced* disarm (param2 = 21196, the
  magic value that bypasses ArduPilot's disarm checks), re-sent every 0.2 s for as long as the e-stop is
  latched and a HEARTBEAT still shows the vehicle armed (also across a link loss).
* **Telemetry** into :class:`~drivers.base.Telemetry`: HEARTBEAT (mode, armed, failsafe state),
  ATTITUDE (``heading_rad`` and, without RAW_IMU, the gyro), RAW_IMU (ArduPilot sends it in scaled
  units: mG, mrad/s; converted from FRD to the REP-103 body frame), SYS_STATUS / BATTERY_STATUS
  (battery), GLOBAL_POSITION_INT, LOCAL_POSITION_NED (``extra``), STATUSTEXT (``extra`` and the log).
  An ArduPilot rover reports no per-wheel data: ``wheel_speed_radps``, ``steer_rad`` and
  ``motor_current_a`` are NaN, ``encoder_counts`` are 0 (an int64 array cannot hold NaN; check
  ``extra["has_wheel_data"]`` — False). Position, velocity and attitude are in ``extra``:
  ``position_enu_m`` (from the EKF origin: east, north, up), ``velocity_enu_mps``, ``velocity_body_mps``
  (forward, left), ``attitude_rpy_rad`` (roll, pitch + = nose down, yaw CCW from east, as in
  :mod:`sim.frames`), ``lat_deg``/``lon_deg``/``alt_m``/``relative_alt_m``, ``groundspeed_mps``, ``mode``,
  ``vehicle_armed``, ``system_status``, ``statustext`` (recent ``(t_s, severity, text)``), ``failsafe``,
  ``rates_hz`` (achieved message rates), ``link`` (counters), ``events``. STATUSTEXT chunks (MAVLink 2
  ``id``/``chunk_seq``, texts longer than 50 characters) are joined.

Safety rules implemented
------------------------
* **Refuse to drive outside GUIDED**: :meth:`set_twist` raises :class:`~drivers.errors.ModeRejected` naming
  the mode, who changed it (this driver, or the vehicle: pilot RC switch, failsafe, another GCS) and the
  vehicle's recent STATUSTEXTs; telemetry carries :attr:`Fault.MODE_REJECTED` while armed. When the
  pilot switches out of GUIDED the driver stops sending targets at once and never switches back by
  itself: :meth:`arm` (or :meth:`set_mode`) is the explicit way back. A vehicle that disarmed itself
  (failsafe, reboot, pilot) gives :class:`~drivers.errors.NotArmed`.
* **Host watchdog** (:class:`~drivers.watchdog.Watchdog`, its own thread, fed by every motion command):
  when the control code has been quiet for ``command_timeout_s`` (0.2 s) a zero target goes on the wire
  from the watchdog thread (a full-duplex link needs no bus lock: writes are serialised by a write lock
  only), and :attr:`Fault.WATCHDOG` is raised until the next command.
* **Zero targets are repeated** every ``zero_period_s`` for ``zero_repeat_s`` after every stop (a lost
  packet must not leave the last non-zero target running until GUID_TIMEOUT); a non-zero command cancels
  the repeats. Targets are written synchronously by :meth:`set_twist` (no queue), so a stale command is
  never sent; after a reconnect, a reboot or an e-stop a zero target goes out and motion needs a fresh
  command.
* **Link loss** (:attr:`Fault.LINK_LOST`, rover treated as stopped: commands dropped, best-effort zero
  targets sent in case only the downlink died): ``max_missed_heartbeats`` (3) HEARTBEATs missed, i.e.
  none for ``(max_missed_heartbeats + 0.5) x 1 s``; or — once telemetry streams flow — no valid frame at
  all for ``stream_timeout_s`` (1.2 s); or the port vanished (reopened with backoff, possibly under a new
  name). The link is up again with the next HEARTBEAT. A write that times out while the port is still
  there is counted (``stats.write_timeouts``), not taken for a lost link (see :meth:`MavlinkRover._write`).
* **Vehicle reboot** (the boot instant implied by ``time_boot_ms`` moved forward): reported, streams
  requested again, a zero target sent; the rebooted vehicle is disarmed and in its initial mode, so motion
  needs :meth:`arm`.
* **Failsafes**: HEARTBEAT ``system_status`` CRITICAL/EMERGENCY (ArduPilot: a failsafe triggered) raises
  :attr:`Fault.DEVICE_FAULT` with the STATUSTEXT (``"GCS Failsafe"``...) in ``extra["failsafe"]``; the
  failsafe's mode change (HOLD / RTL) also shows as MODE_REJECTED.
* **Plausibility**: frames with a valid CRC but impossible content (NaN or out-of-range attitude,
  latitude beyond 90°, a position jump faster than the rover can drive — five in a row are taken as a
  real jump, an EKF or GPS reset —, a battery voltage outside the profile's range, an unknown mode or
  vehicle type in a HEARTBEAT) are discarded and raise :attr:`Fault.PROTOCOL` for a second, like corrupt
  frames.

Parsing: pymavlink's parser in robust mode (garbage and bad CRCs come back as ``BAD_DATA``), plus one fix:
pymavlink drops the whole claimed length of a rejected frame, so a truncated frame also took the next
good frame with it; here the rejected bytes after the first are parsed again (:class:`_MavParser`).

``set_wheels``
--------------
ArduPilot drives its own motors (its mixer, skid-steer or Ackermann), so per-wheel commands cannot be
sent. :meth:`MavlinkRover.set_wheels` accepts wheel speeds/steering that are one body twist as
:meth:`WheelLayout.inverse` makes them (the least-squares twist reproduces every wheel within 5 % of the top
wheel speed) and sends that twist; anything else raises :class:`~drivers.errors.CommandOutOfRange` naming the
wheel that cannot be honoured. Prefer :meth:`set_twist`.

Threads: ``threaded=True`` (default) runs an I/O thread (reads, parses, heartbeats, timers, reconnects)
and the watchdog thread. ``threaded=False`` runs nothing in the background: call :meth:`spin_once`
and :meth:`poll_watchdog` (simulated time, :func:`sim.devices.run_stepped`); blocking calls
(:meth:`open`, :meth:`arm`) then pump the link themselves.
"""
from __future__ import annotations

import collections
import logging
import math
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from . import mavlink_codec as mc
from .base import BatterySample, Fault, ImuSample, Telemetry
from .clock import Clock
from .errors import (CommandOutOfRange, DeviceFault, DeviceTimeout, DriverError, LinkLost, ModeRejected, NotArmed)
from .kinematics import WheelLayout
from .mavlink_codec import MavCmd, MavResult, MavState, RoverMode, rover_mode_name
from .serial_rover import LinkStatsBase, SerialRover, resolve_layout, sample_deque
from .transport import DEFAULT_BAUDRATE, Transport

__all__ = ["MavlinkRover", "open_rover", "MavlinkStats", "load_dialect", "DEFAULT_RATES_HZ", "PYMAVLINK_HINT"]

log = logging.getLogger(__name__)

PYMAVLINK_HINT = 'pip install "rovernav[mavlink]"'

#: Telemetry streams requested on connect (message name -> Hz).
DEFAULT_RATES_HZ = {"ATTITUDE": 20.0, "RAW_IMU": 20.0, "LOCAL_POSITION_NED": 10.0, "GLOBAL_POSITION_INT": 5.0,
                    "SYS_STATUS": 2.0, "BATTERY_STATUS": 1.0}

# REQUEST_DATA_STREAM groups that carry each message in ArduPilot (fallback when 511 is not honoured)
_STREAM_GROUP = {"ATTITUDE": mc.MavDataStream.EXTRA1, "RAW_IMU": mc.MavDataStream.RAW_SENSORS,
                 "LOCAL_POSITION_NED": mc.MavDataStream.POSITION, "GLOBAL_POSITION_INT": mc.MavDataStream.POSITION,
                 "SYS_STATUS": mc.MavDataStream.EXTENDED_STATUS, "GPS_RAW_INT": mc.MavDataStream.EXTENDED_STATUS,
                 "BATTERY_STATUS": mc.MavDataStream.EXTRA3, "VFR_HUD": mc.MavDataStream.EXTRA2,
                 "SYSTEM_TIME": mc.MavDataStream.EXTRA3}

_GRAVITY = 9.80665
_ESTOP_RESEND_S = 0.2
_STREAM_RECHECK_S = 1.5
_UINT16_UNKNOWN = 0xFFFF
_VEHICLE_TYPES = (mc.MAV_TYPE_GROUND_ROVER, mc.MAV_TYPE_SURFACE_BOAT)
_MODES = {m.value for m in RoverMode}


def load_dialect():
    """pymavlink's ``ardupilotmega`` MAVLink 2 dialect module; a clear error when pymavlink is missing."""
    try:
        from pymavlink.dialects.v20 import ardupilotmega
    except ImportError as e:
        raise ModuleNotFoundError(f"the MAVLink driver needs pymavlink, an optional dependency: {PYMAVLINK_HINT} "
                                  f"({e})", name="pymavlink") from e
    return ardupilotmega


_deque = sample_deque


@dataclass
class MavlinkStats(LinkStatsBase):
    """Counters and latency samples of a :class:`MavlinkRover` (seconds on the driver's clock)."""
    frames_in: int = 0
    lost_frames: int = 0              # gaps in the vehicle's sequence numbers (dropped or corrupted frames)
    frames_out: int = 0
    write_timeouts: int = 0           # writes that took longer than the write timeout (port still there)
    heartbeats_in: int = 0
    bad_crc: int = 0                  # rejected frames (bad CRC, bad length, unknown id)
    garbage_bytes: int = 0
    bad_content: int = 0              # valid CRC, implausible values: discarded
    parser_errors: int = 0
    other_systems: int = 0            # frames from other systems / components (ignored)
    commands_sent: int = 0            # COMMAND_LONGs written
    acks: int = 0
    ack_timeouts: int = 0
    targets_sent: int = 0             # velocity targets written (non-zero and zero)
    zero_targets: int = 0
    dropped_commands: int = 0         # motion commands dropped while the link was down
    rejected_commands: int = 0        # motion commands refused (mode, vehicle disarmed)
    link_losses: int = 0
    reconnects: int = 0
    reboots: int = 0
    stream_requests: int = 0
    mode_changes: int = 0
    cmd_to_wire_s: collections.deque = field(default_factory=_deque)     # set_twist -> target written
    ack_rtt_s: collections.deque = field(default_factory=_deque)         # COMMAND_LONG written -> its ACK
    watchdog_stop_s: collections.deque = field(default_factory=_deque)   # last command -> zero written
    watchdog_late_s: collections.deque = field(default_factory=_deque)   # deadline -> zero written


class _MavParser:
    """pymavlink's parser (robust mode) with resynchronisation inside rejected frames.

    ``feed(data) -> list`` of pymavlink messages; counters ``bad_frames``, ``garbage_bytes``, ``errors``.
    """

    def __init__(self, dialect):
        self._dialect = dialect
        self.bad_frames = 0
        self.garbage_bytes = 0
        self.errors = 0
        self._new()

    def _new(self) -> None:
        self.mav = self._dialect.MAVLink(None)
        self.mav.robust_parsing = True

    def _rest(self) -> bytes:
        buf, i = getattr(self.mav, "buf", None), getattr(self.mav, "buf_index", None)
        return bytes(buf[i:]) if buf is not None and isinstance(i, int) else b""

    def feed(self, data) -> list:
        out = []
        pending = bytes(data)
        for _ in range(4 * len(pending) + 8):            # every re-scan drops >= 1 byte: bounded
            try:
                m = self.mav.parse_char(pending)
                pending = b""
                while m is not None:
                    t = m.get_type()
                    if t == "BAD_DATA" or t.startswith("UNKNOWN"):
                        raw = bytes(getattr(m, "data", b"") or b"")
                        if t == "BAD_DATA" and str(getattr(m, "reason", "")).startswith("Bad prefix"):
                            self.garbage_bytes += len(raw)
                        else:                             # a rejected candidate frame: parse it again from byte 2
                            self.bad_frames += 1
                            pending = raw[1:] + self._rest()
                            self._new()
                            break
                    else:
                        out.append(m)
                    m = self.mav.parse_char(b"")
            except Exception as e:                       # pymavlink must never take the I/O thread down
                self.errors += 1
                log.debug("pymavlink parser error (%s): resetting", e)
                pending = self._rest()[1:]
                self._new()
            if not pending:
                break
        return out


class MavlinkRover(SerialRover):
    """An ArduPilot rover driven over MAVLink in GUIDED mode (see the module docstring).

    Parameters
    ----------
    port : str
        Port URL (``/dev/serial/by-id/…``, ``/dev/ttyACM0``, ``socket://host:port``, ``sim://NAME``...).
    layout : WheelLayout or rover profile
        The rover's limits (commands are validated against them; a profile also gives the battery's
        low-voltage threshold and the tilt limit).
    baudrate : int
        Serial speed (ArduPilot's ``SERIALn_BAUD``; telemetry radios commonly 57600).
    clock : Clock
        Time base (default monotonic). ``threaded=True`` needs real time.
    threaded : bool
        Start the I/O and watchdog threads on open (default); ``False``: call :meth:`spin_once` and
        :meth:`poll_watchdog` yourself.
    target_system, target_component : int, optional
        The vehicle to drive (default: the first ArduPilot rover heard).
    source_system, source_component : int
        Our ids (default 255 = ``SYSID_MYGCS``, 190 = mission planner component).
    command_timeout_s : float
        Host watchdog timeout (default 0.2 s).
    max_missed_heartbeats : int
        HEARTBEATs (1 Hz) missed before the link counts as lost (default 3).
    stream_timeout_s : float
        Once streams flow: silence of the whole link that counts as lost (default 1.2 s: more than one
        heartbeat period, so streams that stop while heartbeats go on are not mistaken for a dead link).
    connect_timeout_s : float
        Longest wait for the vehicle's first HEARTBEAT in :meth:`open` (default 3 s).
    ack_timeout_s, command_retries : float, int
        COMMAND_ACK wait per attempt (default 0.5 s) and extra attempts (default 2).
    rates_hz : dict, optional
        Telemetry streams to request (message name -> Hz; default :data:`DEFAULT_RATES_HZ`).
    zero_repeat_s, zero_period_s : float
        After a stop, the zero target is repeated every ``zero_period_s`` (0.1 s) for ``zero_repeat_s`` (1 s).
    io_timeout_s : float
        Longest wait of one read in :meth:`spin_once` (default 10 ms).
    disarm_on_close : bool
        Disarm the vehicle on :meth:`close` if this driver armed it (default True).
    low_voltage_v, max_tilt_deg : float, optional
        Thresholds for :attr:`Fault.BATTERY_LOW` / :attr:`Fault.TILT` (default from the profile).
    candidates : str, sequence or callable, optional
        Other names the port may come back under (see :class:`~drivers.transport.Transport`).
    transport : Transport, optional
        A ready transport (tests).
    name : str, optional
        Device name in messages (default the port URL).
    """

    def __init__(self, port: str, layout, *, baudrate: int = DEFAULT_BAUDRATE, clock: Clock | None = None,
                 threaded: bool = True, target_system: int | None = None, target_component: int | None = None,
                 source_system: int = 255, source_component: int = 190, command_timeout_s: float = 0.2,
                 max_missed_heartbeats: int = 3, stream_timeout_s: float = 1.2, connect_timeout_s: float = 3.0,
                 ack_timeout_s: float = 0.5, command_retries: int = 2, rates_hz: dict | None = None,
                 zero_repeat_s: float = 1.0, zero_period_s: float = 0.1, io_timeout_s: float = 0.01,
                 disarm_on_close: bool = True, low_voltage_v: float | None = None, max_tilt_deg: float | None = None,
                 candidates=None, transport: Transport | None = None, name: str | None = None):
        profile, layout = resolve_layout(layout)
        super().__init__(layout, clock=clock, name=name or str(port))
        dev = self.name
        for nm, v, lo, hi in (("command_timeout_s", command_timeout_s, 0.02, 5.0),
                              ("stream_timeout_s", stream_timeout_s, 0.2, 30.0),
                              ("connect_timeout_s", connect_timeout_s, 0.1, 60.0),
                              ("ack_timeout_s", ack_timeout_s, 0.01, 10.0),
                              ("zero_repeat_s", zero_repeat_s, 0.0, 10.0),
                              ("zero_period_s", zero_period_s, 0.01, 1.0),
                              ("io_timeout_s", io_timeout_s, 0.001, 0.1)):
            if isinstance(v, bool) or not (isinstance(v, (int, float)) and math.isfinite(v) and lo <= v <= hi):
                raise ValueError(f"{dev}: {nm} = {v!r}: must be within [{lo:g}, {hi:g}] s")
        for nm, v, lo, hi in (("max_missed_heartbeats", max_missed_heartbeats, 1, 20),
                              ("command_retries", command_retries, 0, 10),
                              ("source_system", source_system, 1, 255), ("source_component", source_component, 0, 255)):
            if isinstance(v, bool) or not (isinstance(v, int) and lo <= v <= hi):
                raise ValueError(f"{dev}: {nm} = {v!r}: must be an int in {lo}..{hi}")
        for nm, v in (("target_system", target_system), ("target_component", target_component)):
            if v is not None and (isinstance(v, bool) or not (isinstance(v, int) and 0 < v <= 255)):
                raise ValueError(f"{dev}: {nm} = {v!r}: must be None (first rover heard) or an int in 1..255")
        rates = dict(DEFAULT_RATES_HZ if rates_hz is None else rates_hz)
        for k, hz in rates.items():
            if k not in _STREAM_GROUP:
                raise ValueError(f"{dev}: rates_hz[{k!r}]: unknown stream; must be one of {', '.join(_STREAM_GROUP)}")
            if isinstance(hz, bool) or not (isinstance(hz, (int, float)) and 0 < hz <= 200):
                raise ValueError(f"{dev}: rates_hz[{k!r}] = {hz!r}: must be in (0, 200] Hz")
        self.dialect = load_dialect()                       # a clear error now if pymavlink is missing
        self.profile = profile
        self.target_system, self.target_component = target_system, target_component
        self.max_missed_heartbeats = max_missed_heartbeats
        self.heartbeat_timeout_s = max_missed_heartbeats + 0.5        # 1 Hz heartbeats
        self.stream_timeout_s = float(stream_timeout_s)
        self.connect_timeout_s = float(connect_timeout_s)
        self.ack_timeout_s = float(ack_timeout_s)
        self.command_retries = command_retries
        self.rates_hz = rates
        self.zero_repeat_s = float(zero_repeat_s)
        self.zero_period_s = float(zero_period_s)
        self.io_timeout_s = float(io_timeout_s)
        self.disarm_on_close = bool(disarm_on_close)
        if low_voltage_v is None and profile is not None:
            low_voltage_v = float(profile.power.low_voltage_v)
        if max_tilt_deg is None and profile is not None:
            max_tilt_deg = float(profile.hazards.max_tilt_deg)
        self.low_voltage_v = low_voltage_v
        self.max_tilt_rad = math.radians(max_tilt_deg) if max_tilt_deg is not None else math.inf
        if profile is not None:
            p = profile.power
            self._volt_range = (0.5 * float(p.voltage_empty_v), 1.3 * float(p.voltage_full_v))
        else:
            self._volt_range = (1.0, 100.0)

        self._init_link(port, baudrate=baudrate, candidates=candidates, transport=transport, threaded=threaded,
                        command_timeout_s=command_timeout_s)
        self._enc = self.dialect.MAVLink(None, srcSystem=source_system, srcComponent=source_component)
        self._parser = _MavParser(self.dialect)
        self.source_system, self.source_component = source_system, source_component
        self.stats = MavlinkStats()
        self._wlock = threading.Lock()
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._t0 = self.clock.now()
        # vehicle
        self._sysid: int | None = None
        self._compid: int | None = None
        self._vtype: int | None = None
        self._seen: dict = {}
        self._mode: int | None = None
        self._mode_reason = "not connected"
        self._disarm_reason = "not armed yet"
        self._vehicle_armed = False
        self._system_status = 0
        self._we_armed = False
        self._failsafe = False
        self._failsafe_text = ""
        # link
        self._last_hb_s = -math.inf
        self._last_rx_s = -math.inf
        self._stream_msgs = 0
        self._last_stream_s = -math.inf
        self._streams_asked_s = -math.inf
        self._stream_attempts = 0
        self._next_gcs_hb_s = -math.inf
        self._boot_ms = -1
        self._rx_seq: int | None = None
        self._boot_origin_s: float | None = None
        self._boot_origin_t = 0.0
        # commands
        self._acks: dict = {}                     # command -> (counter, result, t)
        self._ack_counter = 0
        self._zero_until_s = -math.inf
        self._zero_next_s = math.inf
        self._estop_next_s = math.inf
        self._protocol_t = -math.inf
        # telemetry
        self._seq = 0
        self._tel_t = math.nan
        self._att = None                          # (t, roll, pitch, yaw, p, q, r) NED / FRD
        self._imu_raw = None                      # (t, accel FRD m/s2, gyro FRD rad/s)
        self._gpi = None                          # dict
        self._gpi_t = -math.inf
        self._jumps: dict = {}
        self._lpn = None                          # (t, x, y, z, vx, vy, vz) NED
        self._battery = None                      # (t, volts, amps, soc)
        self._charge_state = 0
        self._wheel_distance = None
        self._statustext: collections.deque = collections.deque(maxlen=30)
        self._text_chunks: dict = {}
        self._rx_times: dict = collections.defaultdict(lambda: collections.deque(maxlen=400))

    # ------------------------------------------------------------------ properties
    @property
    def mode(self) -> str | None:
        """The vehicle's flight mode name (``"GUIDED"``...), None before the first HEARTBEAT."""
        return None if self._mode is None else rover_mode_name(self._mode)

    @property
    def vehicle_armed(self) -> bool:
        """Armed state the vehicle last reported."""
        return self._vehicle_armed

    @property
    def vehicle_id(self) -> tuple | None:
        """``(sysid, compid)`` of the vehicle driven, None before it was heard."""
        return None if self._sysid is None else (self._sysid, self._compid)

    def statustexts(self) -> list:
        """Recent STATUSTEXTs of the vehicle: ``[(t_s, severity, text)]``."""
        return list(self._statustext)

    # ------------------------------------------------------------------ Rover hooks
    def _close(self) -> None:
        try:
            if self.disarm_on_close and self._we_armed and self._link_up and self._vehicle_armed:
                res = self._command(MavCmd.COMPONENT_ARM_DISARM, 0.0, 0.0, retries=0)
                if res != MavResult.ACCEPTED:
                    log.warning("%s: disarm on close: %s", self.name, _result_text(res))
        except DriverError as e:
            log.warning("%s: disarm on close failed: %s", self.name, e)
        finally:
            self._stop_io()
            with self._cond:
                self._link_up = False
                self._link_reason = "closed"
                self._cond.notify_all()
            self.transport.close()

    def _arm(self) -> None:
        port = self.transport.current_url or self.name
        if not self._link_up:
            raise LinkLost(f"{port}: cannot arm: no link to the vehicle ({self._link_reason})")
        self.watchdog.idle()
        if self._mode != RoverMode.GUIDED:
            self.set_mode(RoverMode.GUIDED)
        if not self._vehicle_armed:
            t0 = self.clock.now()
            res = self._command(MavCmd.COMPONENT_ARM_DISARM, 1.0, 0.0)
            if res is None:
                raise DeviceTimeout(f"{port}: no COMMAND_ACK to COMPONENT_ARM_DISARM (400) after "
                                    f"{1 + self.command_retries} tries of {self.ack_timeout_s:g} s")
            if res != MavResult.ACCEPTED:
                raise DeviceFault(f"{port}: the vehicle refused to arm: {_result_text(res)}"
                                  f"{self._recent_texts(t0)}")
            with self._lock:
                self._vehicle_armed = True
            self._event("armed", "vehicle armed by this driver")
        self._we_armed = True
        self._estop_next_s = math.inf
        self._write_zero("arm", repeat=True)

    def _disarm(self) -> None:
        port = self.transport.current_url or self.name
        self.watchdog.idle()
        if not self._vehicle_armed:
            return
        if not self._link_up:
            raise LinkLost(f"{port}: cannot disarm the vehicle: no link ({self._link_reason}); in GUIDED it stops "
                           f"by itself after GUID_TIMEOUT")
        t0 = self.clock.now()
        res = self._command(MavCmd.COMPONENT_ARM_DISARM, 0.0, 0.0)
        if res is None:
            raise DeviceTimeout(f"{port}: no COMMAND_ACK to COMPONENT_ARM_DISARM (400, disarm)")
        if res != MavResult.ACCEPTED:
            raise DeviceFault(f"{port}: the vehicle refused to disarm: {_result_text(res)}{self._recent_texts(t0)}; "
                              f"estop() forces it")
        with self._lock:
            self._vehicle_armed = False
        self._we_armed = False
        self._event("disarmed", "vehicle disarmed by this driver")

    def _send_twist(self, vx_mps: float, wz_radps: float) -> None:
        t0 = self.clock.now()
        with self._lock:
            if not self._link_up:
                self._drop_command(lambda: self._link_reason)
                return
            if self._mode != RoverMode.GUIDED:
                self.stats.rejected_commands += 1
                raise ModeRejected(self._mode_rejected_text())
            if not self._vehicle_armed:
                self.stats.rejected_commands += 1
                raise NotArmed(f"{self.transport.current_url or self.name}: the vehicle is disarmed "
                               f"({self._disarm_reason}); call arm()")
        moving = vx_mps != 0.0 or wz_radps != 0.0
        try:
            t_wire = self._write_target(vx_mps, wz_radps)
        except DriverError as e:
            self.stats.dropped_commands += 1
            self._link_lost(str(e))
            return
        if moving:
            self._zero_until_s = -math.inf
        else:
            self._start_zero_repeats()
        self.watchdog.feed(moving)
        self.stats.cmd_to_wire_s.append(t_wire - t0)

    def _send_wheels(self, speed_radps: np.ndarray, steer_rad: np.ndarray) -> None:
        L = self.layout
        vx, wz = _command_twist(L, speed_radps, steer_rad)
        rs, rd = L.inverse(vx, wz)
        want = np.stack([speed_radps * np.cos(steer_rad), speed_radps * np.sin(steer_rad)], 1)
        got = np.stack([rs * np.cos(rd), rs * np.sin(rd)], 1)
        err = np.hypot(*(want - got).T)
        tol = 0.05 * L.max_wheel_speed_radps
        if err.max() > tol:
            i = int(np.argmax(err))
            raise CommandOutOfRange(f"{self.name}: ArduPilot drives its own motors, so per-wheel commands must be one "
                                    f"body twist; the closest (vx={vx:.3f} m/s, wz={wz:.3f} rad/s) leaves "
                                    f"{L.names[i]} {err[i]:.3f} rad/s off (tolerance {tol:.3f}): use set_twist()")
        vx, wz = L.check_twist(vx, wz, device=self.name)
        self._send_twist(vx, wz)

    def _stop(self) -> None:
        self.watchdog.idle()
        self._write_zero("stop", repeat=True)

    def _estop(self) -> None:
        self.watchdog.idle()
        self._write_zero("estop", repeat=True)
        self._send_force_disarm()

    def _read_telemetry(self) -> Telemetry:
        now = self.clock.now()
        n = self.layout.n_wheels
        nan3 = np.full(3, math.nan)
        with self._lock:
            up = self._link_up
            faults = self._link_faults(now, up)
            if up and self._armed and self._mode != RoverMode.GUIDED:
                faults |= Fault.MODE_REJECTED
            if up and self._failsafe:
                faults |= Fault.DEVICE_FAULT
            battery = None
            if self._battery is not None:
                tb, v, a, soc = self._battery
                battery = BatterySample(tb, v, a, soc)
                if (self.low_voltage_v is not None and math.isfinite(v) and v < self.low_voltage_v) \
                        or self._charge_state >= 2:
                    faults |= Fault.BATTERY_LOW
            imu = None
            heading = math.nan
            rpy = (math.nan, math.nan, math.nan)
            if self._att is not None:
                ta, roll, pitch, yaw, p, q, r = self._att
                heading = _wrap(0.5 * math.pi - yaw)
                rpy = (roll, -pitch, heading)
                if max(abs(roll), abs(pitch)) > self.max_tilt_rad:
                    faults |= Fault.TILT
            if self._imu_raw is not None and now - self._imu_raw[0] < 1.0:
                ti, acc, gyr = self._imu_raw
                imu = ImuSample(ti, _frd_to_flu(gyr), _frd_to_flu(acc))
            elif self._att is not None:
                imu = ImuSample(ta, _frd_to_flu((p, q, r)), nan3.copy())
            extra = {"has_wheel_data": False, "mode": self.mode, "mode_number": self._mode,
                     "mode_reason": self._mode_reason, "vehicle_armed": self._vehicle_armed,
                     "system_status": self._system_status, "failsafe": self._failsafe_text if self._failsafe else "",
                     "attitude_rpy_rad": rpy, "vehicle": self.vehicle_id, "time_boot_ms": self._boot_ms,
                     "statustext": list(self._statustext)[-10:], "link": self.stats.summary(),
                     "link_reason": self._link_reason, "events": list(self.events)[-10:],
                     "rates_hz": self._rates(now)}
            if self._lpn is not None:
                tl, x, y, z, vxn, vye, vzd = self._lpn
                extra["position_enu_m"] = (y, x, -z)
                extra["velocity_enu_mps"] = (vye, vxn, -vzd)
                if math.isfinite(heading):
                    c, s = math.cos(heading), math.sin(heading)
                    extra["velocity_body_mps"] = (vye * c + vxn * s, -vye * s + vxn * c)
            if self._gpi is not None:
                extra.update(self._gpi)
            if self._wheel_distance is not None:
                extra["wheel_distance_m"] = self._wheel_distance
            t = self._tel_t if math.isfinite(self._tel_t) else now
            seq = self._seq
            armed = self._armed and (self._vehicle_armed or not up)
        return Telemetry(t_s=float(t), seq=seq, encoder_counts=np.zeros(n, dtype=np.int64),
                         wheel_speed_radps=np.full(n, math.nan), steer_rad=np.full(n, math.nan),
                         motor_current_a=np.full(n, math.nan), imu=imu, battery=battery, heading_rad=heading,
                         faults=faults, armed=armed, extra=extra)

    # ------------------------------------------------------------------ public API beyond Rover
    def set_mode(self, mode) -> None:
        """Ask the vehicle for a flight mode (name such as ``"HOLD"`` or an ArduPilot Rover mode number) with
        MAV_CMD_DO_SET_MODE; raises :class:`ModeRejected` with the vehicle's reason if it refuses."""
        self._require_open()
        try:
            m = RoverMode[mode.upper()] if isinstance(mode, str) else RoverMode(mode)
        except (KeyError, ValueError):
            raise ValueError(f"{self.name}: mode = {mode!r}: must be one of "
                             f"{', '.join(x.name for x in RoverMode)} (or its number)") from None
        port = self.transport.current_url or self.name
        if not self._link_up:
            raise LinkLost(f"{port}: cannot set mode {m.name}: no link to the vehicle ({self._link_reason})")
        t0 = self.clock.now()
        res = self._command(MavCmd.DO_SET_MODE, float(mc.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED), float(m.value))
        if res is None:
            raise DeviceTimeout(f"{port}: no COMMAND_ACK to DO_SET_MODE (176) {m.name} after "
                                f"{1 + self.command_retries} tries of {self.ack_timeout_s:g} s")
        if res != MavResult.ACCEPTED:
            raise ModeRejected(f"{port}: the vehicle refused mode {m.name} ({m.value}): {_result_text(res)}"
                               f"{self._recent_texts(t0)}")
        with self._lock:
            if self._mode != m.value:
                self.stats.mode_changes += 1
            self._mode = m.value
            self._mode_reason = f"{m.name} set by this driver"
        self._event("mode", f"{m.name} set by this driver")

    def spin_once(self) -> None:
        """One I/O round: read what arrived (waiting at most ``io_timeout_s``), handle it, send the GCS
        heartbeat and repeated stops when due, check the link, reconnect. Called by the I/O thread;
        call it yourself when ``threaded=False``."""
        if self._closed:
            return
        self._spin(self.io_timeout_s)

    # ------------------------------------------------------------------ I/O
    def _io_loop(self) -> None:
        while not self._stop_evt.is_set():
            try:
                if not self.transport.is_open:
                    self._spin(0.0)
                    self._stop_evt.wait(0.01)
                else:
                    self._spin(0.02)
            except Exception:                               # the I/O thread must never die
                log.exception("%s: I/O round failed", self.name)
                self._stop_evt.wait(0.01)

    def _spin(self, read_timeout_s: float) -> None:
        tr = self.transport
        if not tr.is_open:
            if tr.try_reopen():
                self._event("reopened", f"port reopened as {tr.current_url}; waiting for a HEARTBEAT")
                self._parser = _MavParser(self.dialect)
                self._next_gcs_hb_s = -math.inf
                self._ask_heartbeat()
            else:
                self._timers(self.clock.now())
                return
        data = b""
        try:
            n = tr.in_waiting()
            data = tr.read(n, 0.0) if n else tr.read(1, read_timeout_s)
            if data:
                n = tr.in_waiting()
                if n:
                    data += tr.read(n, 0.0)
        except DriverError as e:
            self._link_lost(str(e))
        except (OSError, ValueError, TypeError, AttributeError) as e:   # a handle closed under a blocked read
            if not tr.lost:
                raise
            log.debug("%s: read on a lost port: %s", self.name, e)
        if data:
            self._handle_bytes(data)
        self._timers(self.clock.now())

    def _handle_bytes(self, data: bytes) -> None:
        p = self._parser
        b0, g0, e0 = p.bad_frames, p.garbage_bytes, p.errors
        msgs = p.feed(data)
        now = self.clock.now()
        if p.bad_frames != b0 or p.errors != e0 or p.garbage_bytes != g0:
            self.stats.bad_crc += p.bad_frames - b0
            self.stats.garbage_bytes += p.garbage_bytes - g0
            self.stats.parser_errors += p.errors - e0
            if self._connected_once:
                self._protocol_t = now
        if not msgs:
            return
        with self._cond:
            for m in msgs:
                self.stats.frames_in += 1
                try:
                    self._dispatch(m, now)
                except (AttributeError, TypeError, ValueError, OverflowError) as e:   # a message we cannot use
                    self._bad_content(f"{m.get_type()}: {e}")
            self._cond.notify_all()

    def _dispatch(self, m, now: float) -> None:
        typ = m.get_type()
        src = (m.get_srcSystem(), m.get_srcComponent())
        if self._sysid is not None and src == (self._sysid, self._compid):
            seq = m.get_seq()
            if self._rx_seq is not None:
                gap = (seq - self._rx_seq - 1) & 0xFF
                if 0 < gap < 128:                           # frames the vehicle sent that never arrived intact
                    self.stats.lost_frames += gap
            self._rx_seq = seq
        if typ == "HEARTBEAT":
            self._on_heartbeat(m, src, now)
            return
        if self._sysid is None or src != (self._sysid, self._compid):
            self.stats.other_systems += 1
            return
        self._last_rx_s = now
        if typ == "COMMAND_ACK":
            tgt = getattr(m, "target_system", 0)
            if tgt not in (0, self.source_system):
                return
            self._ack_counter += 1
            self._acks[int(m.command)] = (self._ack_counter, int(m.result), now)
            self.stats.acks += 1
            return
        if typ == "STATUSTEXT":
            self._on_statustext(m, now)
            return
        handler = _TELEMETRY.get(typ)
        if handler is None:
            return
        if handler(self, m, now):
            self._stream_msgs += 1
            self._last_stream_s = now
            self._rx_times[typ].append(now)
            self._seq += 1
            self._tel_t = now

    # ------------------------------------------------------------------ message handlers (lock held)
    def _on_heartbeat(self, m, src, now: float) -> None:
        vtype, autopilot = int(m.type), int(m.autopilot)
        if vtype == mc.MAV_TYPE_GCS or autopilot == mc.MAV_AUTOPILOT_INVALID:
            self.stats.other_systems += 1                   # another ground station / companion
            return
        if self._sysid is None:
            if self.target_system is not None and src[0] != self.target_system:
                self._seen[src] = (vtype, autopilot)
                return
            if self.target_component is not None and src[1] != self.target_component:
                self._seen[src] = (vtype, autopilot)
                return
            if vtype not in _VEHICLE_TYPES or autopilot != mc.MAV_AUTOPILOT_ARDUPILOTMEGA:
                self._seen[src] = (vtype, autopilot)
                return
            self._sysid, self._compid, self._vtype = src[0], src[1], vtype
            log.info("%s: ArduPilot %s at sysid %d compid %d", self.name,
                     "boat" if vtype == mc.MAV_TYPE_SURFACE_BOAT else "rover", *src)
        elif src != (self._sysid, self._compid):
            self.stats.other_systems += 1
            return
        mode = int(m.custom_mode)
        if vtype not in _VEHICLE_TYPES or autopilot != mc.MAV_AUTOPILOT_ARDUPILOTMEGA or mode not in _MODES:
            self._bad_content(f"HEARTBEAT: type {vtype}, autopilot {autopilot}, custom mode {mode}")
            return
        self.stats.heartbeats_in += 1
        self._last_hb_s = self._last_rx_s = now
        armed = bool(int(m.base_mode) & mc.MAV_MODE_FLAG_SAFETY_ARMED)
        status = int(m.system_status)
        if self._mode is not None and mode != self._mode:
            self._mode_changed(self._mode, mode, now)
        self._mode = mode
        if self._vehicle_armed and not armed:
            if self._estopped:
                self._disarm_reason = "disarmed by the e-stop"
            else:
                why = self._texts_since(now - 3.0) or "pilot, failsafe or reboot"
                self._disarm_reason = f"disarmed by the vehicle ({why})"
            self._event("vehicle_disarmed", self._disarm_reason)
            self.watchdog.idle()
        self._vehicle_armed = armed
        fs = status in (MavState.CRITICAL, MavState.EMERGENCY)
        if fs and not self._failsafe:
            self._failsafe_text = self._texts_since(now - 5.0, "ailsafe") or f"system status {MavState(status).name}"
            self._event("failsafe", self._failsafe_text)
            log.error("%s: vehicle failsafe: %s", self.name, self._failsafe_text)
        elif self._failsafe and not fs:
            self._event("failsafe_cleared", self._failsafe_text)
        self._failsafe = fs
        self._system_status = status
        if not self._link_up:
            self._link_restored(now)

    def _mode_changed(self, old: int, new: int, now: float) -> None:
        self.stats.mode_changes += 1
        why = self._texts_since(now - 3.0) or "pilot RC mode switch, failsafe or another ground station"
        self._mode_reason = f"{rover_mode_name(new)} set by the vehicle ({why})"
        self._event("mode", f"{rover_mode_name(old)} -> {rover_mode_name(new)}: changed by the vehicle ({why})")
        if old == RoverMode.GUIDED:
            self._zero_until_s = -math.inf                  # stop sending: targets are ignored now
            self.watchdog.idle()
            log.warning("%s: vehicle left GUIDED for %s (%s): targets refused until arm()", self.name,
                        rover_mode_name(new), why)

    def _on_statustext(self, m, now: float) -> None:
        text = m.text if isinstance(m.text, str) else bytes(m.text).split(b"\0", 1)[0].decode("utf-8", "replace")
        text = text.split("\0", 1)[0]
        sev = int(m.severity)
        tid = int(getattr(m, "id", 0) or 0)
        if tid:                                    # MAVLink 2 chunks: join; the last one is shorter than 50
            parts = self._text_chunks.setdefault(tid, {})
            parts[int(getattr(m, "chunk_seq", 0) or 0)] = text
            for k in [k for k in self._text_chunks if k != tid]:
                self._text_chunks.pop(k)           # an unfinished older one: it will not be finished now
            if len(text) >= 50:
                return
            text = "".join(parts[i] for i in sorted(parts))
            del self._text_chunks[tid]
        text = text.strip()
        self._statustext.append((now, sev, text))
        level = logging.ERROR if sev <= mc.MavSeverity.ERROR else \
            logging.WARNING if sev <= mc.MavSeverity.WARNING else logging.INFO
        log.log(level, "%s: vehicle says: %s", self.name, text)

    def _check_boot(self, boot_ms: int, now: float) -> None:
        """Reboot detection: the vehicle's boot instant on our clock (``now - time_boot_ms``, earliest estimate
        kept: latency only makes it later) moved forward by more than 1 s (+ 0.1 % of the time since, for
        clock drift), or time_boot_ms went back by more than 2 s."""
        origin = now - boot_ms / 1000.0
        if self._boot_origin_s is None:
            self._boot_origin_s, self._boot_origin_t = origin, now
        elif origin > self._boot_origin_s + 1.0 + 1e-3 * (now - self._boot_origin_t) or boot_ms + 2000 < self._boot_ms:
            self.stats.reboots += 1
            self._event("reboot", f"time_boot_ms {boot_ms} (was {self._boot_ms}): the vehicle rebooted "
                                  f"{now - origin:.1f} s ago")
            log.warning("%s: the vehicle rebooted; requesting streams again, no motion until arm() and a fresh "
                        "command", self.name)
            self._boot_origin_s, self._boot_origin_t = origin, now
            self._streams_asked_s = self._last_stream_s = -math.inf      # _timers asks again now
            self._stream_attempts = 0
            self._write_zero("reboot", repeat=True, quiet=True)
        else:
            self._boot_origin_s = min(self._boot_origin_s, origin)
        self._boot_ms = boot_ms

    def _h_attitude(self, m, now):
        v = (float(m.roll), float(m.pitch), float(m.yaw), float(m.rollspeed), float(m.pitchspeed), float(m.yawspeed))
        if not all(math.isfinite(x) for x in v) or max(abs(v[0]), abs(v[1])) > math.pi + 1e-3 \
                or abs(v[2]) > 2 * math.pi + 1e-3 or max(abs(x) for x in v[3:]) > 30.0:
            return self._bad_content(f"ATTITUDE {v}")
        self._check_boot(int(m.time_boot_ms), now)
        self._att = (now,) + v
        return True

    def _h_raw_imu(self, m, now):
        acc = np.array([m.xacc, m.yacc, m.zacc], dtype=np.float64) * (_GRAVITY / 1000.0)
        gyr = np.array([m.xgyro, m.ygyro, m.zgyro], dtype=np.float64) / 1000.0
        if np.abs(acc).max() > 16 * _GRAVITY or np.abs(gyr).max() > 30.0:
            return self._bad_content(f"RAW_IMU accel {acc.round(1).tolist()} m/s2, gyro {gyr.round(2).tolist()} rad/s")
        self._imu_raw = (now, acc, gyr)
        return True

    def _plausible_jump(self, kind: str, old, new_xy, dt: float) -> bool:
        """A position step no faster than the rover can drive (+ 2 m of GPS glitch). Five implausible steps
        in a row are accepted as a real jump (EKF origin or GPS reset) and reported."""
        if old is None:
            return True
        vmax = 3.0 * self.layout.max_speed_mps + 2.0
        d = math.hypot(new_xy[0] - old[0], new_xy[1] - old[1])
        if d <= vmax * max(dt, 0.05) + 2.0:
            self._jumps[kind] = 0
            return True
        self._jumps[kind] = self._jumps.get(kind, 0) + 1
        if self._jumps[kind] >= 5:
            self._jumps[kind] = 0
            self._event("position_jump", f"{kind} moved {d:.1f} m, five times in a row: accepted (EKF or GPS reset?)")
            return True
        return False

    def _h_local_position(self, m, now):
        v = (float(m.x), float(m.y), float(m.z), float(m.vx), float(m.vy), float(m.vz))
        vmax = 5.0 * self.layout.max_speed_mps + 2.0
        if not all(math.isfinite(x) for x in v) or max(abs(x) for x in v[:3]) > 1e6 \
                or max(abs(x) for x in v[3:]) > vmax:
            return self._bad_content(f"LOCAL_POSITION_NED {v}")
        old = None if self._lpn is None else (self._lpn[1], self._lpn[2])
        if not self._plausible_jump("LOCAL_POSITION_NED", old, v[:2], now - (self._lpn[0] if self._lpn else now)):
            return self._bad_content(f"LOCAL_POSITION_NED jumped from {old} to {v[:2]}")
        self._check_boot(int(m.time_boot_ms), now)
        self._lpn = (now,) + v
        return True

    def _h_global_position(self, m, now):
        lat, lon = m.lat * 1e-7, m.lon * 1e-7
        vel = np.array([m.vx, m.vy, m.vz], dtype=np.float64) / 100.0
        if abs(lat) > 90.0 or abs(lon) > 180.0 or np.abs(vel).max() > 5.0 * self.layout.max_speed_mps + 2.0:
            return self._bad_content(f"GLOBAL_POSITION_INT lat {lat}, lon {lon}, velocity {vel.tolist()}")
        if self._gpi is not None:
            k = 111_319.49
            dn = (lat - self._gpi["lat_deg"]) * k
            de = (lon - self._gpi["lon_deg"]) * k * math.cos(math.radians(lat))
            if not self._plausible_jump("GLOBAL_POSITION_INT", (0.0, 0.0), (dn, de), now - self._gpi_t):
                return self._bad_content(f"GLOBAL_POSITION_INT jumped {math.hypot(dn, de):.0f} m")
        self._check_boot(int(m.time_boot_ms), now)
        self._gpi_t = now
        hdg = int(m.hdg)
        self._gpi = {"lat_deg": lat, "lon_deg": lon, "alt_m": m.alt / 1000.0, "relative_alt_m": m.relative_alt / 1000.0,
                     "velocity_ned_mps": tuple(vel.tolist()), "groundspeed_mps": float(math.hypot(vel[0], vel[1])),
                     "heading_deg": math.nan if hdg == _UINT16_UNKNOWN else hdg / 100.0}
        return True

    def _set_battery(self, now, volts, amps, remaining, what) -> bool:
        lo, hi = self._volt_range
        if volts is not None and not lo <= volts <= hi:
            return self._bad_content(f"{what}: battery {volts:.2f} V outside [{lo:g}, {hi:g}] V")
        old = self._battery
        v = volts if volts is not None else (old[1] if old else math.nan)
        self._battery = (now, v, amps, remaining)
        return True

    def _h_sys_status(self, m, now):
        mv = int(m.voltage_battery)
        volts = None if mv == _UINT16_UNKNOWN else mv / 1000.0
        amps = math.nan if int(m.current_battery) == -1 else m.current_battery / 100.0
        rem = math.nan if int(m.battery_remaining) < 0 else m.battery_remaining / 100.0
        return self._set_battery(now, volts, amps, rem, "SYS_STATUS")

    def _h_battery_status(self, m, now):
        if int(getattr(m, "id", 0)) != 0:
            return True
        cells = [int(c) for c in m.voltages if int(c) != _UINT16_UNKNOWN]
        volts = sum(cells) / 1000.0 if cells else None
        amps = math.nan if int(m.current_battery) == -1 else m.current_battery / 100.0
        rem = math.nan if int(m.battery_remaining) < 0 else m.battery_remaining / 100.0
        self._charge_state = int(getattr(m, "charge_state", 0) or 0)
        return self._set_battery(now, volts, amps, rem, "BATTERY_STATUS")

    def _h_wheel_distance(self, m, now):
        self._wheel_distance = tuple(float(d) for d in list(m.distance)[:int(m.count)])
        return True

    def _h_system_time(self, m, now):
        self._check_boot(int(m.time_boot_ms), now)
        return True

    def _bad_content(self, what: str) -> bool:
        self.stats.bad_content += 1
        self._protocol_t = self.clock.now()
        log.debug("%s: implausible frame discarded: %s", self.name, what)
        return False

    # ------------------------------------------------------------------ timers and link state
    def _timers(self, now: float) -> None:
        tr = self.transport
        if tr.is_open and now >= self._next_gcs_hb_s:
            self._next_gcs_hb_s = now + 1.0
            self._send_gcs_heartbeat()
        if self._link_up:
            silent_hb = now - self._last_hb_s
            if silent_hb > self.heartbeat_timeout_s:
                self._link_lost(f"no HEARTBEAT for {silent_hb:.1f} s ({int(silent_hb)} missed at 1 Hz)")
            elif self._stream_msgs >= 10 and now - self._last_rx_s > self.stream_timeout_s:
                self._link_lost(f"no MAVLink frame for {now - self._last_rx_s:.2f} s (telemetry streams stopped)")
            elif self.rates_hz and now - max(self._last_stream_s, self._streams_asked_s) > _STREAM_RECHECK_S \
                    and now - self._streams_asked_s > _STREAM_RECHECK_S:
                self._stream_msgs = 0                       # streams stopped (heartbeats did not): ask again
                self._request_streams()
        if now >= self._zero_next_s:
            if now <= self._zero_until_s and tr.is_open and (self._mode == RoverMode.GUIDED or not self._link_up):
                self._zero_next_s = now + self.zero_period_s
                self._write_zero("repeat", quiet=True)
            elif now > self._zero_until_s:
                self._zero_next_s = math.inf
        if now >= self._estop_next_s:
            if self._estopped and self._vehicle_armed:
                self._send_force_disarm()
            else:
                self._estop_next_s = math.inf

    def _link_lost(self, reason: str) -> None:
        port_gone = self.transport.lost
        with self._cond:
            was_up = self._link_up
            self._link_up = False
            self._link_reason = reason
            self._cond.notify_all()
        self.watchdog.idle()
        if was_up:
            self.stats.link_losses += 1
            self._event("link_lost", reason)
            log.error("%s: link lost%s: %s; rover treated as stopped", self.name,
                      " (port vanished)" if port_gone else "", reason)
            self._start_zero_repeats()                      # best effort, in case only the downlink died

    def _link_restored(self, now: float) -> None:
        self._link_up = True
        self._link_reason = "connected"
        self._rx_seq = None
        self._stream_msgs = 0
        self._last_rx_s = now
        self._streams_asked_s = self._last_stream_s = -math.inf
        self._stream_attempts = 0
        if self._connected_once:
            self.stats.reconnects += 1
            self._event("reconnected", f"HEARTBEAT again on {self.transport.current_url}; zero target sent, "
                                       f"waiting for a fresh command")
            log.warning("%s: link restored on %s; no motion until a fresh command", self.name,
                        self.transport.current_url)
        self._connected_once = True
        self._write_zero("link up", repeat=True, quiet=True)

    def _connect(self) -> None:
        """Wait for the vehicle's HEARTBEAT (sending ours); the streams are requested by the first timer round."""
        port = self.transport.current_url or self.name
        end = self.clock.now() + self.connect_timeout_s
        guard = int(self.connect_timeout_s / self.io_timeout_s) * 4 + 50       # a stuck clock cannot hang us
        ask_s = -math.inf
        while not self._link_up and self.clock.now() < end and guard > 0:
            guard -= 1
            if self.clock.now() >= ask_s:                  # HEARTBEAT now, please (instead of within 1 s)
                ask_s = self.clock.now() + 0.5
                self._ask_heartbeat()
            self._spin(self.io_timeout_s)
        if not self._link_up:
            if self._seen:
                seen = "; ".join(f"type {t} autopilot {a} at {s}/{c}" for (s, c), (t, a) in self._seen.items())
                what = f"heard only other vehicles ({seen}): this driver drives ArduPilot Rover (autopilot 3, " \
                       f"type 10 or 11)" + ("" if self.target_system is None else f" with sysid {self.target_system}")
            elif self.stats.frames_in or self.stats.bad_crc or self.stats.garbage_bytes:
                what = (f"{self.stats.frames_in} frames, {self.stats.bad_crc} bad frames and "
                        f"{self.stats.garbage_bytes} stray bytes, but no vehicle HEARTBEAT")
            else:
                what = "nothing at all"
            raise DeviceTimeout(f"{port}: no HEARTBEAT from an ArduPilot rover within {self.connect_timeout_s:g} s "
                                f"({what}); check the port, the baud rate ({self.transport.baudrate}, SERIALn_BAUD) "
                                f"and that SERIALn_PROTOCOL = 2 (MAVLink 2)")

    def _request_streams(self) -> None:
        """SET_MESSAGE_INTERVAL per stream; from the second attempt on also REQUEST_DATA_STREAM."""
        if self._sysid is None or not self.rates_hz:
            return
        self._streams_asked_s = self.clock.now()
        self._stream_attempts += 1
        self.stats.stream_requests += 1
        try:
            for nm, hz in self.rates_hz.items():
                mid = mc.MESSAGES[nm].msgid
                self._write(self._enc.command_long_encode(self._sysid, self._compid, int(MavCmd.SET_MESSAGE_INTERVAL),
                                                          0, float(mid), 1e6 / hz, 0, 0, 0, 0, 0))
                self.stats.commands_sent += 1
            if self._stream_attempts >= 2:
                groups: dict = {}
                for nm, hz in self.rates_hz.items():
                    g = int(_STREAM_GROUP[nm])
                    groups[g] = max(groups.get(g, 0), hz)
                for g, hz in groups.items():
                    self._write(self._enc.request_data_stream_encode(self._sysid, self._compid, g,
                                                                     max(1, int(round(hz))), 1))
        except DriverError as e:
            self._link_lost(str(e))

    # ------------------------------------------------------------------ writing
    def _write(self, msg) -> float:
        """Pack and write one message; the clock time the write returned. Raises LinkLost if the port is gone.

        A write that timed out on a port that is still there is counted and logged, not a lost link: pyserial
        reports a timeout whenever the call took longer than the write timeout, also when the bytes went out
        and only the process was starved of CPU, and on a full-duplex MAVLink link the HEARTBEATs tell whether
        the vehicle is still there."""
        with self._wlock:
            buf = msg.pack(self._enc)
            self._enc.seq = (self._enc.seq + 1) % 256
            try:
                self.transport.write(buf)
            except LinkLost as e:
                if self.transport.lost or not self.transport.is_open:
                    raise
                self.stats.write_timeouts += 1
                log.warning("%s: %s (counted; the link is judged by HEARTBEATs)", self.name, e)
        self.stats.frames_out += 1
        return self.clock.now()

    def _time_boot_ms(self) -> int:
        return int((self.clock.now() - self._t0) * 1000.0) & 0xFFFFFFFF

    def _write_target(self, vx_mps: float, wz_radps: float) -> float:
        sysid = self._sysid if self._sysid is not None else 1
        compid = self._compid if self._compid is not None else 1
        msg = self._enc.set_position_target_local_ned_encode(
            self._time_boot_ms(), sysid, compid, mc.MAV_FRAME_BODY_NED, mc.TYPE_MASK_VELOCITY_YAW_RATE,
            0.0, 0.0, 0.0, float(vx_mps), 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -float(wz_radps))
        t = self._write(msg)
        self.stats.targets_sent += 1
        if vx_mps == 0.0 and wz_radps == 0.0:
            self.stats.zero_targets += 1
        return t

    def _write_zero(self, reason: str, *, repeat: bool = False, quiet: bool = False) -> float | None:
        """A zero target now (from any thread); the clock time it was written, None if it could not be."""
        if repeat:
            self._start_zero_repeats()
        if not self.transport.is_open or self._sysid is None:
            return None
        try:
            return self._write_target(0.0, 0.0)
        except DriverError as e:
            if not quiet:
                log.warning("%s: zero target (%s) not written: %s", self.name, reason, e)
            self._link_lost(str(e))
            return None

    def _start_zero_repeats(self) -> None:
        now = self.clock.now()
        self._zero_until_s = now + self.zero_repeat_s
        self._zero_next_s = min(self._zero_next_s, now + self.zero_period_s)

    def _send_gcs_heartbeat(self) -> None:
        try:
            self._write(self._enc.heartbeat_encode(mc.MAV_TYPE_GCS, mc.MAV_AUTOPILOT_INVALID, 0, 0,
                                                   int(MavState.ACTIVE), 3))
        except DriverError as e:
            self._link_lost(str(e))

    def _ask_heartbeat(self) -> None:
        """MAV_CMD_REQUEST_MESSAGE (512) for HEARTBEAT to the target (or broadcast): connects in one round trip."""
        try:
            self._write(self._enc.command_long_encode(self._sysid or self.target_system or 0,
                                                      self._compid or self.target_component or 0,
                                                      int(MavCmd.REQUEST_MESSAGE), 0, 0.0, 0, 0, 0, 0, 0, 0))
        except DriverError as e:
            self._link_lost(str(e))

    def _send_force_disarm(self) -> None:
        self._estop_next_s = self.clock.now() + _ESTOP_RESEND_S
        if self._sysid is None or not self.transport.is_open:
            return
        try:
            self._write(self._enc.command_long_encode(self._sysid, self._compid, int(MavCmd.COMPONENT_ARM_DISARM), 0,
                                                      0.0, float(mc.FORCE_ARM_MAGIC), 0, 0, 0, 0, 0))
            self.stats.commands_sent += 1
        except DriverError as e:
            self._link_lost(str(e))

    # ------------------------------------------------------------------ commands with acks
    def _command(self, cmd: int, p1: float = 0.0, p2: float = 0.0, *, retries: int | None = None) -> int | None:
        """Send a COMMAND_LONG and wait for its COMMAND_ACK: the result, or None when no ACK came after every
        attempt. IN_PROGRESS extends the wait; TEMPORARILY_REJECTED is retried. Raises LinkLost if the port
        is lost."""
        if self._sysid is None:
            return None
        tries = 1 + (self.command_retries if retries is None else retries)
        cmd = int(cmd)
        port = self.transport.current_url or self.name
        result = None
        for attempt in range(tries):
            before = self._acks.get(cmd, (0,))[0]
            try:
                t_sent = self._write(self._enc.command_long_encode(self._sysid, self._compid, cmd, min(attempt, 255),
                                                                   float(p1), float(p2), 0, 0, 0, 0, 0))
            except DriverError as e:
                self._link_lost(str(e))
                raise LinkLost(f"{port}: command {cmd} not sent: {e}") from e
            self.stats.commands_sent += 1
            result = None
            for _ in range(20):                                  # IN_PROGRESS may extend the wait, boundedly
                got = self._wait(lambda: self._acks.get(cmd, (0,))[0] > before or self.transport.lost,
                                 self.ack_timeout_s)
                ack = self._acks.get(cmd)
                if not got or ack is None or ack[0] <= before:
                    break
                before = ack[0]
                if ack[1] != MavResult.IN_PROGRESS:
                    result = ack[1]
                    self.stats.ack_rtt_s.append(ack[2] - t_sent)
                    break
            if self.transport.lost:
                raise LinkLost(f"{port}: port lost while waiting for the COMMAND_ACK of command {cmd}")
            if result is None:
                self.stats.ack_timeouts += 1
                continue
            if result == MavResult.TEMPORARILY_REJECTED and attempt + 1 < tries:
                continue
            return result
        return result

    def _wait(self, pred, timeout_s: float) -> bool:
        """Wait until ``pred()`` (the I/O thread handles the link) or pump the link here (no I/O thread)."""
        io = self._io_thread
        if io is not None and io.is_alive() and io is not threading.current_thread():
            end = time.monotonic() + timeout_s
            with self._cond:
                while not pred():
                    left = end - time.monotonic()
                    if left <= 0:
                        return False
                    self._cond.wait(left)
                return True
        end = self.clock.now() + timeout_s
        guard = int(timeout_s / self.io_timeout_s) * 4 + 20
        while not pred():
            if self.clock.now() >= end or guard <= 0:
                return bool(pred())
            guard -= 1
            self._spin(min(self.io_timeout_s, max(end - self.clock.now(), 1e-4)))
        return True

    # ------------------------------------------------------------------ watchdog
    def _on_watchdog(self, reason: str) -> None:
        self._event("watchdog", reason)
        last = self.watchdog.last_feed_s
        self._record_watchdog_stop(last, self._write_zero(f"watchdog: {reason}", repeat=True))

    # ------------------------------------------------------------------ texts
    def _texts_since(self, t_s: float, contains: str = "") -> str:
        return "; ".join(txt for t, _, txt in list(self._statustext) if t >= t_s and contains in txt)

    def _recent_texts(self, t0: float) -> str:
        # let the vehicle's STATUSTEXT explaining a refusal arrive (it comes with or just after the ACK)
        self._wait(lambda: any(t >= t0 for t, _, _ in list(self._statustext)), min(0.2, self.ack_timeout_s))
        txt = self._texts_since(t0)
        return f"; the vehicle says: {txt}" if txt else ""

    def _mode_rejected_text(self) -> str:
        port = self.transport.current_url or self.name
        return (f"{port}: the vehicle is in {rover_mode_name(self._mode) if self._mode is not None else 'an unknown mode'}"
                f", not GUIDED: velocity targets would be ignored ({self._mode_reason}); call arm() (or "
                f"set_mode('GUIDED')) to take control again")

    def _rates(self, now: float) -> dict:
        out = {}
        for k, dq in self._rx_times.items():
            recent = [t for t in list(dq) if now - t <= 2.0]
            if len(recent) >= 2:
                out[k] = (len(recent) - 1) / max(recent[-1] - recent[0], 1e-6)
        return out


_TELEMETRY = {"ATTITUDE": MavlinkRover._h_attitude, "RAW_IMU": MavlinkRover._h_raw_imu,
              "LOCAL_POSITION_NED": MavlinkRover._h_local_position,
              "GLOBAL_POSITION_INT": MavlinkRover._h_global_position, "SYS_STATUS": MavlinkRover._h_sys_status,
              "BATTERY_STATUS": MavlinkRover._h_battery_status, "WHEEL_DISTANCE": MavlinkRover._h_wheel_distance,
              "SYSTEM_TIME": MavlinkRover._h_system_time}


def _command_twist(L: WheelLayout, speed_radps, steer_rad) -> tuple[float, float]:
    """The body twist whose :meth:`WheelLayout.inverse` is closest (least squares) to these wheel commands.

    Not :meth:`WheelLayout.forward`: that is the physical estimate (a skid-steer rover turns slower than its
    wheel speed difference says); this inverts the command mapping, so ``inverse`` of the result gives back
    wheel commands that came from ``inverse``. Fixed wheels constrain ``vx - y wz``; steerable wheels also
    ``x wz`` (their sideways component).
    """
    r = L.wheel_radius_m
    rows, rhs = [], []
    for (x, y), st, s, d in zip(L.position_xy_m, L.steerable, speed_radps, steer_rad):
        u = s * r
        rows.append((1.0, -y))
        rhs.append(u * math.cos(d) if st else u)
        if st:
            rows.append((0.0, x))
            rhs.append(u * math.sin(d))
    sol = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)[0]
    return float(sol[0]), float(sol[1])


def _result_text(res) -> str:
    if res is None:
        return "no COMMAND_ACK"
    try:
        return f"{MavResult(res).name} ({int(res)})"
    except ValueError:
        return f"result {res}"


def _frd_to_flu(v) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64)
    return np.array([a[0], -a[1], -a[2]])


def _wrap(a: float) -> float:
    return (a + math.pi) % (2.0 * math.pi) - math.pi


def open_rover(port: str, profile, **kw) -> MavlinkRover:
    """The MAVLink driver for rover ``profile`` on ``port`` (the :func:`drivers.open_rover` entry point)."""
    return MavlinkRover(port, profile, **kw)
