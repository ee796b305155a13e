"""RoboClaw packet-serial bus driver: :class:`RoboClawRover`, a :class:`~drivers.base.Rover` on a bus of
BasicMicro RoboClaw controllers (the drive of the JPL Open Source Rover).

One serial port, several controllers at addresses 0x80-0x87, two motors each; which motor turns which
wheel is data (:class:`MotorChannel`, :data:`OSR_MAPPING`). Wheel speeds go out as encoder counts per
second (command 40, speed with acceleration; 37 when ``accel_mps2=0``); encoders, speeds, currents,
battery, temperature, status and the serial-timeout setting are polled into :class:`~drivers.base.Telemetry`.
Byte layouts are in :mod:`drivers.roboclaw_codec` and ``drivers/PROTOCOL.md``.

Threads
-------
* **I/O thread** (``threaded=True``): cycles every ``cycle_period_s`` (woken at once by a new command):
  sends the pending fresh command first — and again before every poll, so a command waits for at
  most one transaction — then polls encoders (78) and speeds (18/19) of every controller and one
  "slow" item round-robin (currents 49, main battery 24, temperature 82, status 90, serial-timeout
  readback 15). It never sleeps longer than the cycle period and never blocks in a read longer than
  ``reply_timeout_s`` (+ one port timeout). Each controller gets the newest fresh command (a newer
  one overtakes an older one mid-pass, so a fast command stream cannot livelock a slow link), and
  command passes take at most half of the bus while polls wait (microseconds on a fast link; on a
  USB bridge with a 16 ms latency timer it keeps telemetry alive — lower that timer to 1 ms).
* **Watchdog thread** (:class:`~drivers.watchdog.Watchdog`): fed by every accepted motion command; when
  the control code has been quiet for ``command_timeout_s`` it puts zero speed on the wire itself,
  through the bus lock's priority lane (so it waits for at most the transaction in progress, not for the
  I/O loop), and raises :attr:`Fault.WATCHDOG` until the next fresh command.
* ``threaded=False`` runs nothing in the background: a harness calls :meth:`RoboClawRover.spin_once`
  (one I/O cycle) and :meth:`RoboClawRover.poll_watchdog` itself. That is how the driver runs on
  simulated time (``sim://`` in step mode): deterministic, one thread, same code.

Safety rules implemented
------------------------
* Probe with command 21 (read version) after opening: an open port with nothing answering raises
  :class:`~drivers.errors.DeviceTimeout` naming the port and the address.
* The controllers' own serial timeout (command 14, ``serial_timeout_s`` ≈ 0.5 s) is set and read back
  (15) on connect, after every reconnect, and after a detected device reboot (the readback, polled
  round-robin, no longer matches: a reboot loses the setting).
* A command is sent only while fresh (:class:`~drivers.watchdog.CommandGate`): a stale command is never
  resent; after a reconnect, a stop, an e-stop or a stopping device fault, motion needs a command given
  after the event.
* ``max_failed_polls`` (3) consecutive failed transactions with one controller, or a vanished port,
  raise :attr:`Fault.LINK_LOST`: commands are dropped (the rover is treated as stopped; the
  controllers' serial timeout stops the motors if they are unreachable), a best-effort zero is sent,
  and the driver reconnects with backoff (reopening the port, possibly under a new name, see
  :class:`~drivers.transport.Transport`).
* Timing rules of the protocol: one ``write()`` per packet, the input flushed before every transaction,
  ≥ 10 ms of silence after any failure before the next packet, a reply timeout of ``reply_timeout_s``
  (default 30 ms: wire time + a 16 ms FTDI latency timer + margin), never the 1 s of naive clients.

Steering
--------
The OSR's corner steering is driven by servos, not by the RoboClaw bus. Steering commands are accepted
(validated by :class:`~drivers.base.Rover`), kept in :attr:`RoboClawRover.commanded_steer_rad`, and
forwarded to an optional ``steering`` backend (any object with ``set_steer(steer_rad)`` and optionally
``read_steer() -> array``). Without one, telemetry reports ``steer_rad`` as NaN (unknown) for
steerable wheels and 0 for fixed ones, and a warning is logged once when a non-zero steering angle is
commanded.
"""
from __future__ import annotations

import collections
import logging
import math
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from . import roboclaw_codec as rc
from .base import BatterySample, Fault, Telemetry, encoder_delta
from .clock import Clock
from .errors import (DeviceFault, DeviceTimeout, DriverError, LinkLost, MalformedReply, ProtocolError)
from .crc import ChecksumError
from .kinematics import WheelLayout
from .roboclaw_codec import Cmd, LegacyStatusFlags, StatusFlags
from .serial_rover import (FAULT_HOLD_S, RECOVER_BACKOFF_S, LinkStatsBase, PolledSerialRover, resolve_layout,
                           sample_deque)
from .transport import DEFAULT_BAUDRATE, Transport

__all__ = ["RoboClawRover", "open_rover", "MotorChannel", "OSR_MAPPING", "mapping_from_dict", "check_mapping", "LinkStats",
           "SteeringBackend", "status_faults"]

log = logging.getLogger(__name__)

_TWO32 = 1 << 32
_S32_MAX = 0x7FFFFFFF
_LOCK_TIMEOUT_S = 0.25         # longest a stop waits for the bus (then the I/O thread retries it)


@dataclass(frozen=True)
class MotorChannel:
    """Which controller motor turns which wheel.

    Parameters
    ----------
    wheel : str
        Wheel name in the rover's :class:`~drivers.kinematics.WheelLayout` (``"front_left"``...).
    addr : int
        Controller address, 0x80..0x87.
    motor : int
        1 (M1) or 2 (M2).
    sign : int
        +1 if positive counts roll the wheel forward, -1 if the motor is mounted mirrored.
    """
    wheel: str
    addr: int
    motor: int
    sign: int = 1


#: JPL Open Source Rover drive bus: three controllers (0x80, 0x81, 0x82), two wheels each, as wired by the
#: OSR's RoboClaw debugging tool. Measure yours (spin one wheel, watch which count moves) and pass your
#: own mapping (:func:`mapping_from_dict` reads it from YAML-style dicts).
OSR_MAPPING: tuple[MotorChannel, ...] = (
    MotorChannel("front_left", 0x80, 1),
    MotorChannel("middle_left", 0x80, 2),
    MotorChannel("rear_left", 0x81, 1),
    MotorChannel("rear_right", 0x81, 2),
    MotorChannel("middle_right", 0x82, 1),
    MotorChannel("front_right", 0x82, 2),
)


def mapping_from_dict(d: dict) -> tuple[MotorChannel, ...]:
    """A mapping from ``{wheel: {"address": 128, "motor": 1, "sign": 1}}`` (``"channel": "M1"`` also accepted)."""
    if not isinstance(d, dict) or not d:
        raise ValueError(f"roboclaw mapping must be a non-empty dict of wheel -> channel, got {d!r}")
    out = []
    for wheel, ch in d.items():
        if not isinstance(ch, dict):
            raise ValueError(f"roboclaw mapping[{wheel!r}] = {ch!r}: must be a dict with address and motor")
        unknown = set(ch) - {"address", "addr", "motor", "channel", "sign"}
        if unknown:
            raise ValueError(f"roboclaw mapping[{wheel!r}]: unknown keys {sorted(unknown)}")
        addr = ch.get("address", ch.get("addr"))
        motor = ch.get("motor", ch.get("channel"))
        if isinstance(motor, str):
            motor = {"M1": 1, "M2": 2}.get(motor.upper(), motor)
        out.append(MotorChannel(str(wheel), addr, motor, ch.get("sign", 1)))
    return tuple(out)


def check_mapping(mapping, layout: WheelLayout, device: str = "roboclaw") -> tuple[MotorChannel, ...]:
    """Validate a mapping against a layout: every wheel exactly once, one wheel per motor, addresses
    0x80..0x87, motors 1/2, signs +-1. Returns it as a tuple; errors name the device and the entry."""
    mapping = tuple(mapping)
    seen_wheel, seen_motor = {}, {}
    for ch in mapping:
        if not isinstance(ch, MotorChannel):
            raise TypeError(f"{device}: mapping entries must be MotorChannel, got {type(ch).__name__}")
        if ch.wheel not in layout.names:
            raise ValueError(f"{device}: mapping names wheel {ch.wheel!r}: must be one of {', '.join(layout.names)}")
        if isinstance(ch.addr, bool) or not isinstance(ch.addr, int) or ch.addr not in rc.ADDRESSES:
            raise ValueError(f"{device}: mapping[{ch.wheel}].addr = {ch.addr!r}: must be 0x80..0x87")
        if ch.motor not in (1, 2):
            raise ValueError(f"{device}: mapping[{ch.wheel}].motor = {ch.motor!r}: must be 1 or 2")
        if ch.sign not in (1, -1):
            raise ValueError(f"{device}: mapping[{ch.wheel}].sign = {ch.sign!r}: must be +1 or -1")
        if ch.wheel in seen_wheel:
            raise ValueError(f"{device}: wheel {ch.wheel!r} is mapped twice")
        key = (ch.addr, ch.motor)
        if key in seen_motor:
            raise ValueError(f"{device}: roboclaw 0x{ch.addr:02x} M{ch.motor} drives both {seen_motor[key]!r} "
                             f"and {ch.wheel!r}")
        seen_wheel[ch.wheel] = ch
        seen_motor[key] = ch.wheel
    missing = [w for w in layout.names if w not in seen_wheel]
    if missing:
        raise ValueError(f"{device}: mapping leaves wheels without a motor: {', '.join(missing)}")
    return mapping


@runtime_checkable
class SteeringBackend(Protocol):
    """Where corner steering goes when it is not on the RoboClaw bus (OSR: servos)."""

    def set_steer(self, steer_rad: np.ndarray) -> None:
        """Command per-wheel steering angles (rad, layout order; fixed wheels 0)."""


def status_faults(bits: int, width: int) -> Fault:
    """:class:`~drivers.base.Fault` flags for a command-90 status word of ``width`` bytes (4 or 2)."""
    f = Fault.NONE
    if width == 4:
        S = StatusFlags
        if bits & S.ESTOP:
            f |= Fault.ESTOP
        if bits & (S.TEMPERATURE_ERROR | S.TEMPERATURE2_ERROR | S.TEMPERATURE_WARNING | S.TEMPERATURE2_WARNING):
            f |= Fault.OVERTEMP
        if bits & (S.M1_DRIVER_FAULT | S.M2_DRIVER_FAULT | S.MAIN_VOLTAGE_HIGH_ERROR | S.LOGIC_VOLTAGE_HIGH_ERROR
                   | S.LOGIC_VOLTAGE_LOW_ERROR):
            f |= Fault.DEVICE_FAULT
        if bits & (S.M1_OVERCURRENT_WARNING | S.M2_OVERCURRENT_WARNING | S.M1_CURRENT_ERROR | S.M2_CURRENT_ERROR):
            f |= Fault.OVERCURRENT
        if bits & S.MAIN_VOLTAGE_LOW_WARNING:
            f |= Fault.BATTERY_LOW
    else:
        L = LegacyStatusFlags
        if bits & L.ESTOP:
            f |= Fault.ESTOP
        if bits & (L.TEMPERATURE_ERROR | L.TEMPERATURE2_ERROR | L.TEMPERATURE_WARNING | L.TEMPERATURE2_WARNING):
            f |= Fault.OVERTEMP
        if bits & (L.M1_DRIVER_FAULT | L.M2_DRIVER_FAULT | L.MAIN_BATTERY_HIGH_ERROR | L.LOGIC_BATTERY_HIGH_ERROR
                   | L.LOGIC_BATTERY_LOW_ERROR):
            f |= Fault.DEVICE_FAULT
        if bits & (L.M1_OVERCURRENT_WARNING | L.M2_OVERCURRENT_WARNING):
            f |= Fault.OVERCURRENT
        if bits & L.MAIN_BATTERY_LOW_WARNING:
            f |= Fault.BATTERY_LOW
    return f


#: Device faults after which the driver stops the rover and drops commands until they clear.
_DEVICE_STOPPING = Fault.DEVICE_FAULT | Fault.ESTOP


_deque = sample_deque


@dataclass
class LinkStats(LinkStatsBase):
    """Counters and latency samples of a :class:`RoboClawRover` (seconds on the driver's clock)."""
    cycles: int = 0
    polls: int = 0
    failed_polls: int = 0            # failed transactions of any kind (reads and writes)
    timeouts: int = 0
    crc_errors: int = 0
    ack_errors: int = 0
    malformed: int = 0
    bad_content: int = 0
    commands_sent: int = 0
    commands_delivered: int = 0
    zero_writes: int = 0
    link_losses: int = 0
    reconnects: int = 0
    reboots: int = 0
    encoder_faults: int = 0
    dropped_commands: int = 0
    cmd_to_wire_s: collections.deque = field(default_factory=_deque)     # set_wheels -> first packet written
    poll_rtt_s: collections.deque = field(default_factory=_deque)        # read request written -> reply parsed
    cycle_s: collections.deque = field(default_factory=_deque)           # start-to-start of I/O cycles
    watchdog_stop_s: collections.deque = field(default_factory=_deque)   # last command -> zero written
    watchdog_late_s: collections.deque = field(default_factory=_deque)   # deadline -> zero written


class RoboClawRover(PolledSerialRover):
    """A rover whose wheels are driven by RoboClaw controllers on one packet-serial bus.

    Parameters
    ----------
    port : str
        Port URL (``/dev/serial0``, ``/dev/serial/by-id/…``, ``socket://…``, ``sim://NAME``...).
    layout : WheelLayout or rover profile
        The rover's wheels (a :class:`nav.config.RoverProfile` is converted with
        :meth:`WheelLayout.from_profile`).
    mapping : sequence of MotorChannel
        Controller motor of every wheel (default :data:`OSR_MAPPING`).
    baudrate : int
        Bus speed (the OSR uses 115200).
    clock : Clock
        Time base (default monotonic). ``threaded=True`` needs real time.
    threaded : bool
        Start the I/O and watchdog threads on open (default). ``False``: call :meth:`spin_once` and
        :meth:`poll_watchdog` yourself (simulated time).
    serial_timeout_s : float
        Controller serial timeout set with command 14 (0.1 s resolution; default 0.5 s) — the device
        backstop that stops the motors when the host dies.
    command_timeout_s : float
        Host watchdog: zero speed when the control code gives no fresh motion command for this long
        (default 0.2 s, so the stop is on the wire well within 300 ms of the last command).
    reply_timeout_s : float
        Longest wait for one reply or ack (default 30 ms).
    cycle_period_s : float
        I/O cycle period in threaded mode (default 20 ms = 50 Hz; 0 = as fast as the bus allows).
    accel_mps2 : float, optional
        Wheel acceleration sent with speed commands (command 40); default the layout's
        ``max_accel_mps2``; 0 sends plain speed commands (37).
    max_failed_polls : int
        Consecutive failed transactions with one controller that mean the link is lost (default 3).
    command_retries : int
        Extra attempts for a command write that was not acknowledged, while it is fresh (default 2).
    candidates : str, sequence or callable, optional
        Other names the port may come back under (see :class:`~drivers.transport.Transport`).
    steering : SteeringBackend, optional
        Receives steering commands (see the module docstring).
    status_bytes : int, optional
        Width of the command-90 status word (4 current firmware, 2 legacy); default: detected on connect.
    low_voltage_v, current_limit_a : float, optional
        Host-side thresholds for :attr:`Fault.BATTERY_LOW` / :attr:`Fault.OVERCURRENT` (the controllers'
        own warning bits are always reported).
    transport : Transport, optional
        A ready transport (tests); default one is built from ``port``.
    name : str, optional
        Device name in messages (default the port URL).
    """

    def __init__(self, port: str, layout, *, mapping=OSR_MAPPING, baudrate: int = DEFAULT_BAUDRATE,
                 clock: Clock | None = None, threaded: bool = True, serial_timeout_s: float = 0.5,
                 command_timeout_s: float = 0.2, reply_timeout_s: float = 0.03, cycle_period_s: float = 0.02,
                 accel_mps2: float | None = None, max_failed_polls: int = 3, command_retries: int = 2,
                 candidates=None, steering: SteeringBackend | None = None, status_bytes: int | None = None,
                 low_voltage_v: float | None = None, current_limit_a: float | None = None,
                 transport: Transport | None = None, name: str | None = None):
        _, layout = resolve_layout(layout)
        super().__init__(layout, clock=clock, name=name or str(port))
        dev = self.name
        if not (isinstance(serial_timeout_s, (int, float)) and 0.1 <= serial_timeout_s <= 25.5):
            raise ValueError(f"{dev}: serial_timeout_s = {serial_timeout_s!r}: must be within [0.1, 25.5] s "
                             f"(0 would disable the device backstop)")
        for nm, v, lo, hi in (("command_timeout_s", command_timeout_s, 0.02, 5.0),
                              ("reply_timeout_s", reply_timeout_s, 0.002, 0.5),
                              ("cycle_period_s", cycle_period_s, 0.0, 1.0)):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and lo <= v <= hi):
                raise ValueError(f"{dev}: {nm} = {v!r}: must be within [{lo:g}, {hi:g}] s")
        if not (isinstance(max_failed_polls, int) and 1 <= max_failed_polls <= 20):
            raise ValueError(f"{dev}: max_failed_polls = {max_failed_polls!r}: must be an int in 1..20")
        if not (isinstance(command_retries, int) and 0 <= command_retries <= 5):
            raise ValueError(f"{dev}: command_retries = {command_retries!r}: must be an int in 0..5")
        if status_bytes not in (None, 2, 4):
            raise ValueError(f"{dev}: status_bytes = {status_bytes!r}: must be None (detect), 4 or 2")
        if steering is not None and not callable(getattr(steering, "set_steer", None)):
            raise TypeError(f"{dev}: steering must have a set_steer(steer_rad) method")
        self.mapping = check_mapping(mapping, layout, dev)
        self.serial_timeout_s = float(serial_timeout_s)
        self._timeout_100ms = int(round(self.serial_timeout_s * 10))
        self.reply_timeout_s = float(reply_timeout_s)
        self.max_failed_polls = max_failed_polls
        self.command_retries = command_retries
        self.steering = steering
        self.low_voltage_v = low_voltage_v
        self.current_limit_a = current_limit_a
        self._status_bytes_cfg = status_bytes

        n = layout.n_wheels
        self._pps_per_radps = layout.counts_per_rev / (2.0 * math.pi)
        self._max_pps = layout.max_wheel_speed_radps * self._pps_per_radps
        accel = layout.max_accel_mps2 if accel_mps2 is None else float(accel_mps2)
        if not (math.isfinite(accel) and accel >= 0):
            raise ValueError(f"{dev}: accel_mps2 = {accel_mps2!r}: must be >= 0 (0 = plain speed commands)")
        self._accel_pps2 = int(math.ceil(accel / layout.wheel_radius_m * self._pps_per_radps)) if accel > 0 else 0
        self._stop_accel_pps2 = 4 * self._accel_pps2
        self.addresses = tuple(sorted({ch.addr for ch in self.mapping}))
        self._wheel_idx = {ch.wheel: layout.names.index(ch.wheel) for ch in self.mapping}
        # per controller: wheel index (or -1) and sign of M1, M2
        self._motors = {a: [(-1, 1), (-1, 1)] for a in self.addresses}
        self._sign = np.ones(n)
        for ch in self.mapping:
            w = self._wheel_idx[ch.wheel]
            self._motors[ch.addr][ch.motor - 1] = (w, ch.sign)
            self._sign[w] = ch.sign

        self._init_link(port, baudrate=baudrate, candidates=candidates, transport=transport, threaded=threaded,
                        command_timeout_s=command_timeout_s, cycle_period_s=cycle_period_s)
        self.stats = LinkStats()
        self._quiet_until = -math.inf
        self._fail_count = {a: 0 for a in self.addresses}
        self._ctrl_gen = {a: 0 for a in self.addresses}     # newest command generation each controller acked
        self._wired_gen = 0
        self._counted_gen = 0
        self._cmd_hold_until = -math.inf
        # telemetry state
        self._counts = np.zeros(n, dtype=np.int64)
        self._count_t = np.full(n, math.nan)
        self._speed_radps = np.full(n, math.nan)
        self._current_a = np.full(n, math.nan)
        self._pub = (self._counts.copy(), self._speed_radps.copy(), self._current_a.copy())
        self._cmd_pps = np.zeros(n)                     # last speed each motor acknowledged (for freeze checks)
        self._frozen_since = np.full(n, math.nan)
        self._frozen_reported = np.zeros(n, dtype=bool)
        self._main_v = {a: math.nan for a in self.addresses}
        self._temp_c = {a: math.nan for a in self.addresses}
        self._status = {a: 0 for a in self.addresses}
        self._status_bytes = {a: (status_bytes or 4) for a in self.addresses}
        self._firmware = {a: "" for a in self.addresses}
        self._timeout_read = {a: -1 for a in self.addresses}
        self._protocol_t = -math.inf
        self._encoder_fault_t = -math.inf
        self._device_stop = Fault.NONE
        self._seq = 0
        self._tel_t = math.nan
        self._slow = [(a, c) for a in self.addresses for c in (Cmd.READ_CURRENTS, Cmd.READ_MAIN_BATTERY,
                                                                Cmd.READ_TEMPERATURE, Cmd.READ_STATUS,
                                                                Cmd.READ_SERIAL_TIMEOUT)]
        self._slow_i = 0
        self._warned_steer = False
        self.commanded_steer_rad = np.zeros(n)
        self._pending_reads: collections.deque = collections.deque()

    # ------------------------------------------------------------------ properties
    @property
    def firmware(self) -> dict:
        """Version text of every controller, by address."""
        return dict(self._firmware)

    # ------------------------------------------------------------------ Rover hooks
    def _arm(self) -> None:
        if not self._link_up:
            raise LinkLost(f"{self.name}: cannot arm: link to the RoboClaw bus is down ({self._link_reason})")
        if self._device_stop:
            raise DeviceFault(f"{self.name}: cannot arm: controllers report {self._device_stop.describe()} "
                              f"({self._status_text()})")
        self.gate.block()
        self.watchdog.idle()

    def _send_wheels(self, speed_radps: np.ndarray, steer_rad: np.ndarray) -> None:
        self.commanded_steer_rad = steer_rad.copy()
        if self.steering is not None:
            try:
                self.steering.set_steer(steer_rad.copy())
            except Exception as e:
                log.warning("%s: steering backend failed: %s", self.name, e)
        elif not self._warned_steer and self.layout.steerable.any() and np.any(steer_rad[self.layout.steerable]):
            self._warned_steer = True
            log.warning("%s: corner steering is not on the RoboClaw bus and no steering backend was given: "
                        "steering commands are stored, not executed", self.name)
        if not self._link_up or self._device_stop:
            self._drop_command(lambda: self._link_reason if not self._link_up else self._device_stop.describe())
            return
        pps = np.rint(speed_radps * self._pps_per_radps * self._sign)
        pps = np.clip(pps, -_S32_MAX, _S32_MAX).astype(np.int64)
        per = {}
        for a, ((w1, _), (w2, _)) in self._motors.items():
            per[a] = (int(pps[w1]) if w1 >= 0 else 0, int(pps[w2]) if w2 >= 0 else 0)
        self.gate.submit(per)
        self.watchdog.feed(bool(np.any(pps != 0)))
        self._wake.set()

    def _read_telemetry(self) -> Telemetry:
        now = self.clock.now()
        n = self.layout.n_wheels
        with self._state_lock:
            up = self._link_up
            faults = self._link_faults(now, up)
            if now - self._encoder_fault_t < FAULT_HOLD_S or self._frozen_reported.any():
                faults |= Fault.ENCODER_FAULT
            for a in self.addresses:
                faults |= status_faults(self._status[a], self._status_bytes[a])
            volts = [v for v in self._main_v.values() if math.isfinite(v)]
            v = float(np.median(volts)) if volts else math.nan
            if self.low_voltage_v is not None and math.isfinite(v) and v < self.low_voltage_v:
                faults |= Fault.BATTERY_LOW
            p_counts, p_speed, p_cur = self._pub
            cur = np.abs(p_cur) if up else np.full(n, math.nan)
            if self.current_limit_a is not None and np.nanmax(np.append(cur, 0.0)) >= self.current_limit_a:
                faults |= Fault.OVERCURRENT
            speed = p_speed.copy() if up else np.full(n, math.nan)
            counts = p_counts.copy()
            t = self._tel_t if math.isfinite(self._tel_t) else now
            seq = self._seq
            extra = {
                "controllers": {a: {"firmware": self._firmware[a], "main_battery_v": self._main_v[a],
                                    "temperature_c": self._temp_c[a], "status": self._status[a],
                                    "status_bytes": self._status_bytes[a], "serial_timeout_100ms":
                                    self._timeout_read[a]} for a in self.addresses},
                "link": self.stats.summary(),
                "link_reason": self._link_reason,
                "events": list(self.events)[-10:],
                "commanded_steer_rad": self.commanded_steer_rad.copy(),
            }
        steer = self._steer_telemetry()
        battery = None
        if math.isfinite(v):
            battery = BatterySample(t, v, float(np.nansum(cur)) if np.isfinite(cur).any() else math.nan)
        return Telemetry(t_s=float(t), seq=seq, encoder_counts=counts, wheel_speed_radps=speed, steer_rad=steer,
                         motor_current_a=cur, battery=battery, faults=faults, armed=self._armed, extra=extra)

    def _steer_telemetry(self) -> np.ndarray:
        st = self.layout.steerable
        out = np.where(st, math.nan, 0.0)
        reader = getattr(self.steering, "read_steer", None)
        if callable(reader):
            try:
                out = np.asarray(reader(), dtype=np.float64).reshape(-1).copy()
            except Exception as e:
                log.debug("%s: steering read failed: %s", self.name, e)
        return out

    # ------------------------------------------------------------------ public loop API
    def spin_once(self, max_reads: int | None = None) -> None:
        """One I/O cycle: send the pending fresh command, poll every controller once (plus one slow
        item), or — with the link down — try to reconnect (never blocking beyond a few transactions).

        ``max_reads`` splits the cycle into slices of at most that many polls (the rest continue at the
        next call; the telemetry snapshot is published when a cycle completes). A single-threaded
        harness uses ``max_reads=1`` so that control code and the watchdog run between transactions,
        as they do beside the I/O thread. Called by the I/O thread; call it yourself when
        ``threaded=False``.
        """
        if self._closed:
            return
        try:
            if not self._link_up:
                self._pending_reads.clear()
                self._recover()
                return
            if self._zero_pending:
                self._write_zero("retry of an unconfirmed stop", priority=False)
            self._service_command()
            if not self._pending_reads:
                self._count_cycle()
                self._pending_reads.extend(self._cycle_reads())
            budget = len(self._pending_reads) if max_reads is None else max(1, int(max_reads))
            for _ in range(budget):
                if not self._pending_reads or not self._link_up:
                    break
                addr, cmd = self._pending_reads.popleft()
                self._service_command()
                self._poll(addr, cmd)
            if not self._link_up:
                self._pending_reads.clear()
            elif not self._pending_reads:
                with self._state_lock:                    # publish one consistent snapshot per cycle
                    self._seq += 1
                    self._tel_t = self.clock.now()
                    self._pub = (self._counts.copy(), self._speed_radps.copy(), self._current_a.copy())
                self.stats.cycles += 1
        except LinkLost as e:
            self._pending_reads.clear()
            self._link_lost(str(e), port_gone=self.transport.lost)

    # ------------------------------------------------------------------ transactions (bus lock held)
    def _quiet(self) -> None:
        wait = self._quiet_until - self.clock.now()
        if wait > 0:
            self.clock.sleep(wait)

    def _failure(self, addr: int, kind: str, detail) -> None:
        now = self.clock.now()
        self._quiet_until = now + rc.GAP_S
        self._fail_count[addr] = self._fail_count.get(addr, 0) + 1
        self.stats.failed_polls += 1
        if kind == "timeout":
            self.stats.timeouts += 1
        else:
            self._protocol_t = now
            if kind == "crc":
                self.stats.crc_errors += 1
            elif kind == "ack":
                self.stats.ack_errors += 1
            else:
                self.stats.malformed += 1
        log.debug("%s: roboclaw 0x%02x: %s: %s", self.name, addr, kind, detail)

    def _write_locked(self, addr: int, cmd: int, pkt: bytes) -> tuple[bool, float | None]:
        """Write one packet and check its ack; (acked, clock time the packet was written)."""
        tr = self.transport
        self._quiet()
        tr.reset_input()
        tr.write(pkt)
        t_wire = self.clock.now()
        ack = tr.read(1, self.reply_timeout_s)
        try:
            rc.check_ack(addr, cmd, ack)
        except rc.AckError as e:
            self._failure(addr, "timeout" if not ack else "ack", e)
            return False, t_wire
        self._fail_count[addr] = 0
        return True, t_wire

    def _read_locked(self, addr: int, cmd: int, status_bytes: int | None = None):
        """One read transaction; the decoded value, or None after a failure (already counted)."""
        tr = self.transport
        self._quiet()
        tr.reset_input()
        t0 = self.clock.now()
        tr.write(bytes((addr, int(cmd))))
        sb = status_bytes or self._status_bytes.get(addr, 4)
        parser = rc.ReplyParser(addr, cmd, status_bytes=sb)
        deadline = t0 + self.reply_timeout_s
        value = None
        self.stats.polls += 1
        idle = int(math.ceil(self.reply_timeout_s / tr.read_timeout_s)) + 2     # a stuck clock cannot hang us
        try:
            while value is None and idle > 0:
                left = deadline - self.clock.now()
                if left <= 0:
                    break
                chunk = tr.read(max(1, parser.remaining), left)
                if chunk:
                    value = parser.feed(chunk)
                else:
                    idle -= 1
        except ChecksumError as e:
            self._failure(addr, "crc", e)
            return None
        except (MalformedReply, ProtocolError) as e:
            self._failure(addr, "malformed", e)
            return None
        if value is None:
            self._failure(addr, "timeout", f"no complete reply to {Cmd(cmd).name} in {self.reply_timeout_s:g} s")
            return None
        self.stats.poll_rtt_s.append(self.clock.now() - t0)
        self._fail_count[addr] = 0
        return value

    def _write_retry(self, addr: int, cmd: int, pkt: bytes, tries: int = 3) -> bool:
        for _ in range(tries):
            with self._bus.hold():
                ok, _ = self._write_locked(addr, cmd, pkt)
            if ok:
                return True
        return False

    def _read_retry(self, addr: int, cmd: int, tries: int = 3, status_bytes: int | None = None):
        for _ in range(tries):
            with self._bus.hold():
                v = self._read_locked(addr, cmd, status_bytes)
            if v is not None:
                return v
        return None

    # ------------------------------------------------------------------ connect / recover
    def _connect(self) -> None:
        """Probe every controller (21), detect the status width, set and verify the serial timeout (14/15),
        zero the speeds. Raises a DriverError naming the port and the controller that failed."""
        port = self.transport.current_url or self.name
        reconnect = self._connected_once
        for a in self.addresses:
            v = self._read_retry(a, Cmd.READ_VERSION)
            if v is None:
                raise DeviceTimeout(f"{port}: no answer from roboclaw 0x{a:02x} to READ_VERSION (21) after 3 tries "
                                    f"(reply timeout {self.reply_timeout_s:g} s): is it powered, in packet serial "
                                    f"mode at address 0x{a:02x} and {self.transport.baudrate} baud?")
            self._firmware[a] = v.text
            if self._status_bytes_cfg is None:
                self._status_bytes[a] = self._detect_status_width(a)
            if reconnect:
                old = self._read_retry(a, Cmd.READ_SERIAL_TIMEOUT)
                if old is not None and old.timeout_100ms != self._timeout_100ms:
                    self.stats.reboots += 1
                    self._event("reboot", f"roboclaw 0x{a:02x} lost its serial timeout "
                                          f"({old.timeout_100ms} x 100 ms): it rebooted")
            self._configure(a, port)
        self._fail_count = {a: 0 for a in self.addresses}
        self._count_t[:] = math.nan
        self._frozen_since[:] = math.nan
        self.gate.block()
        with self._state_lock:
            self._link_up = True
            self._link_reason = "connected"
        self._zero_pending = False
        self._connected_once = True
        self._recover_backoff = RECOVER_BACKOFF_S
        log.info("%s: connected to roboclaw %s (%s)", self.name, ", ".join(f"0x{a:02x}" for a in self.addresses),
                 "; ".join(sorted(set(self._firmware.values()))))

    def _configure(self, a: int, port: str) -> None:
        """Set and read back the serial timeout, then zero both motors of controller ``a``."""
        pkt = rc.encode_request(a, Cmd.SET_SERIAL_TIMEOUT, self._timeout_100ms)
        if not self._write_retry(a, Cmd.SET_SERIAL_TIMEOUT, pkt):
            raise DeviceTimeout(f"{port}: roboclaw 0x{a:02x} did not acknowledge SET_SERIAL_TIMEOUT (14)")
        back = self._read_retry(a, Cmd.READ_SERIAL_TIMEOUT)
        if back is None:
            raise DeviceTimeout(f"{port}: roboclaw 0x{a:02x} did not answer READ_SERIAL_TIMEOUT (15)")
        if back.timeout_100ms != self._timeout_100ms:
            raise DeviceFault(f"{port}: roboclaw 0x{a:02x} serial timeout reads {back.timeout_100ms} x 100 ms "
                              f"after setting {self._timeout_100ms}")
        self._timeout_read[a] = back.timeout_100ms
        if not self._write_retry(a, Cmd.SPEED_M1M2, rc.encode_speed_m1m2(a, 0, 0)):
            raise DeviceTimeout(f"{port}: roboclaw 0x{a:02x} did not acknowledge a zero-speed command (37)")
        for w, _ in self._motors[a]:
            if w >= 0:
                self._cmd_pps[w] = 0.0

    def _detect_status_width(self, a: int) -> int:
        """4 (current firmware) or 2 (legacy): read command 90 raw and see which length checks."""
        for _ in range(3):
            with self._bus.hold():
                tr = self.transport
                self._quiet()
                tr.reset_input()
                tr.write(bytes((a, int(Cmd.READ_STATUS))))
                data = tr.read(6, self.reply_timeout_s)
            for width in (4, 2):
                try:
                    rc.decode_reply(a, Cmd.READ_STATUS, data[:width + 2], status_bytes=width)
                except ProtocolError:
                    continue
                if width == 4 or len(data) == 4:
                    return width
            self._quiet_until = self.clock.now() + rc.GAP_S
        log.warning("%s: roboclaw 0x%02x: status width not detected; assuming 4 bytes", self.name, a)
        return 4

    def _on_link_lost(self) -> None:
        self._zero_pending = True                          # the stop is retried once the link is back

    def _best_effort_stop(self) -> None:
        """One zero-speed packet to every controller, failures not counted (some may still listen)."""
        for a in self.addresses:
            try:
                with self._bus.hold(priority=True, timeout=_LOCK_TIMEOUT_S) as ok:
                    if ok:
                        self._quiet()
                        self.transport.reset_input()
                        self.transport.write(rc.encode_speed_m1m2(a, 0, 0))
                        self.transport.read(1, self.reply_timeout_s)
            except DriverError:
                return

    # ------------------------------------------------------------------ commands
    def _service_command(self) -> None:
        """One pass over the controllers: each one that does not hold the newest fresh command gets it
        (re-read before every packet, so a newer command overtakes an older one mid-pass instead of
        restarting it: on a slow link a 50 Hz command stream cannot livelock the bus)."""
        first = self.gate.take()
        if first is None:
            return
        t_pass = self.clock.now()
        if t_pass < self._cmd_hold_until:
            return
        sent0 = self.stats.commands_sent
        for a in self.addresses:
            item = self.gate.take()
            if item is None:
                return
            gen, per, t_submit = item
            if self._ctrl_gen[a] >= gen:
                continue
            m1, m2 = per[a]
            if self._accel_pps2:
                pkt, cmd = rc.encode_speed_accel_m1m2(a, self._accel_pps2, m1, m2), Cmd.SPEED_ACCEL_M1M2
            else:
                pkt, cmd = rc.encode_speed_m1m2(a, m1, m2), Cmd.SPEED_M1M2
            for _attempt in range(1 + self.command_retries):
                with self._bus.hold():
                    if not self.gate.is_current(gen):       # superseded, stale, stopped: never send it
                        break
                    ok, t_wire = self._write_locked(a, cmd, pkt)
                self.stats.commands_sent += 1
                if gen > self._wired_gen and t_wire is not None:
                    self._wired_gen = gen
                    self.stats.cmd_to_wire_s.append(t_wire - t_submit)
                if ok:
                    self._ctrl_gen[a] = gen
                    for (w, _), v in zip(self._motors[a], (m1, m2)):
                        if w >= 0:
                            self._cmd_pps[w] = v
                    break
                if self._fail_count[a] >= self.max_failed_polls:
                    self._link_lost(f"roboclaw 0x{a:02x}: {self._fail_count[a]} failed transactions in a row "
                                    f"(last: speed command not acknowledged)")
                    return
        if self.stats.commands_sent > sent0:
            # commands get at most half the bus while polls are waiting: the next pass waits as long as
            # this one took (microseconds on a fast link; keeps telemetry alive on a 16 ms USB bridge)
            now = self.clock.now()
            self._cmd_hold_until = now + (now - t_pass)
        if all(self._ctrl_gen[a] >= first[0] for a in self.addresses) and first[0] > self._counted_gen:
            self._counted_gen = first[0]
            self.stats.commands_delivered += 1            # this command (or a newer one) is on every controller
        item = self.gate.take()
        if item is not None and all(self._ctrl_gen[a] >= item[0] for a in self.addresses):
            self.gate.delivered(item[0])

    def _write_zero(self, reason: str, *, priority: bool = True) -> float | None:
        """Zero speed on every controller now; returns the clock time the first packet was written
        (None if nothing could be written: the I/O thread retries while the link is up)."""
        self._zero_pending = True
        if not self._link_up or not self.transport.is_open:
            return None
        first = None
        ok_all = True
        got = self._bus.acquire(priority=priority, timeout=_LOCK_TIMEOUT_S)
        if not got:
            log.warning("%s: bus busy for %.0f ms: stop (%s) left to the I/O thread", self.name,
                        1e3 * _LOCK_TIMEOUT_S, reason)
            return None
        try:
            for a in self.addresses:
                if self._stop_accel_pps2:
                    pkt, cmd = rc.encode_speed_accel_m1m2(a, self._stop_accel_pps2, 0, 0), Cmd.SPEED_ACCEL_M1M2
                else:
                    pkt, cmd = rc.encode_speed_m1m2(a, 0, 0), Cmd.SPEED_M1M2
                ok = False
                for _ in range(2):
                    ok, t_wire = self._write_locked(a, cmd, pkt)
                    if first is None:
                        first = t_wire
                    if ok:
                        break
                if ok:
                    for w, _ in self._motors[a]:
                        if w >= 0:
                            self._cmd_pps[w] = 0.0
                ok_all &= ok
        except LinkLost as e:
            ok_all = False
            self._bus.release()
            got = False
            self._link_lost(str(e), port_gone=self.transport.lost)
        finally:
            if got:
                self._bus.release()
        self.stats.zero_writes += 1
        self._zero_pending = not ok_all
        if not ok_all:
            log.warning("%s: stop (%s) not acknowledged by every controller; retrying", self.name, reason)
        return first

    # ------------------------------------------------------------------ polling
    def _cycle_reads(self):
        reads = []
        for a in self.addresses:
            reads += [(a, Cmd.READ_ENCODERS), (a, Cmd.READ_SPEED_M1), (a, Cmd.READ_SPEED_M2)]
        reads.append(self._slow[self._slow_i % len(self._slow)])
        self._slow_i += 1
        return reads

    def _poll(self, a: int, cmd: int) -> None:
        with self._bus.hold():
            value = self._read_locked(a, cmd)
        if value is None:
            if self._fail_count[a] >= self.max_failed_polls:
                gone = not self.transport.path_present()
                self._link_lost(f"roboclaw 0x{a:02x}: {self._fail_count[a]} failed polls in a row"
                                + (" (port path vanished)" if gone else ""), port_gone=gone)
            return
        self._apply(a, cmd, value, self.clock.now())

    def _bad_content(self, a: int, what: str) -> None:
        self.stats.bad_content += 1
        self._protocol_t = self.clock.now()
        log.debug("%s: roboclaw 0x%02x: implausible reply discarded: %s", self.name, a, what)

    def _apply(self, a: int, cmd: int, value, t: float) -> None:
        motors = self._motors[a]
        plausible_pps = 2.0 * self._max_pps + 1000.0
        with self._state_lock:
            if cmd == Cmd.READ_ENCODERS:
                for (w, sign), raw in zip(motors, (value.m1, value.m2)):
                    if w >= 0:
                        self._apply_count(w, sign, raw, t)
            elif cmd in (Cmd.READ_SPEED_M1, Cmd.READ_SPEED_M2):
                w, sign = motors[0 if cmd == Cmd.READ_SPEED_M1 else 1]
                if abs(value.speed_pps) > plausible_pps:
                    self._bad_content(a, f"speed {value.speed_pps} pulses/s")
                elif w >= 0:
                    self._speed_radps[w] = sign * value.speed_pps / self._pps_per_radps
            elif cmd == Cmd.READ_CURRENTS:
                if max(abs(value.m1_a), abs(value.m2_a)) > 200.0:
                    self._bad_content(a, f"currents {value.m1_a} A, {value.m2_a} A")
                else:
                    for (w, _), amps in zip(motors, (value.m1_a, value.m2_a)):
                        if w >= 0:
                            self._current_a[w] = abs(amps)
            elif cmd == Cmd.READ_MAIN_BATTERY:
                if not 1.0 <= value.voltage_v <= 60.0:
                    self._bad_content(a, f"main battery {value.voltage_v} V")
                else:
                    self._main_v[a] = value.voltage_v
            elif cmd == Cmd.READ_TEMPERATURE:
                if not -40.0 <= value.temperature_c <= 150.0:
                    self._bad_content(a, f"temperature {value.temperature_c} C")
                else:
                    self._temp_c[a] = value.temperature_c
            elif cmd == Cmd.READ_STATUS:
                self._status[a] = int(value.bits)
        if cmd == Cmd.READ_STATUS:
            self._check_device_faults()
        elif cmd == Cmd.READ_SERIAL_TIMEOUT:
            self._timeout_read[a] = value.timeout_100ms
            if value.timeout_100ms != self._timeout_100ms:
                self._device_rebooted(a, value.timeout_100ms)

    def _apply_count(self, w: int, sign: int, raw: int, t: float) -> None:
        s = raw - _TWO32 if raw & 0x80000000 else raw
        if sign < 0:
            s = ((-s + (1 << 31)) % _TWO32) - (1 << 31)
        prev_t = self._count_t[w]
        if math.isfinite(prev_t):
            d = int(encoder_delta(s, self._counts[w]))
            self._check_encoder(w, d, max(t - prev_t, 0.0), t, abs(self._cmd_pps[w]) > 0.1 * self._max_pps,
                                self._max_pps)
        self._counts[w] = s
        self._count_t[w] = t

    def _device_rebooted(self, a: int, value: int) -> None:
        self.stats.reboots += 1
        self._event("reboot", f"roboclaw 0x{a:02x} serial timeout reads {value} x 100 ms (set "
                              f"{self._timeout_100ms}): it rebooted; reconfiguring")
        log.warning("%s: roboclaw 0x%02x rebooted (serial timeout reads %d); reconfiguring, no motion until a "
                    "fresh command", self.name, a, value)
        self.gate.block()
        try:
            self._configure(a, self.transport.current_url or self.name)
        except LinkLost:
            raise
        except DriverError as e:
            self._link_lost(f"roboclaw 0x{a:02x}: reconfiguration after a reboot failed: {e}")

    def _check_device_faults(self) -> None:
        f = Fault.NONE
        for a in self.addresses:
            f |= status_faults(self._status[a], self._status_bytes[a])
        stop = f & _DEVICE_STOPPING
        if stop and not self._device_stop:
            self._device_stop = stop
            self._event("device_fault", f"{stop.describe()}: {self._status_text()}")
            log.error("%s: controllers report %s (%s): stopping", self.name, stop.describe(), self._status_text())
            self.gate.block()
            self.watchdog.idle()
            self._write_zero("device fault", priority=False)
        elif not stop and self._device_stop:
            self._event("device_fault_cleared", self._device_stop.describe())
            log.warning("%s: device fault cleared; waiting for a fresh command", self.name)
            self._device_stop = Fault.NONE
        elif stop:
            self._device_stop = stop

    def _status_text(self) -> str:
        parts = []
        for a in self.addresses:
            bits = self._status[a]
            if bits:
                kind = StatusFlags if self._status_bytes[a] == 4 else LegacyStatusFlags
                names = "|".join(f.name for f in kind if f and (bits & f) == f) or f"0x{bits:x}"
                parts.append(f"0x{a:02x}: {names}")
        return "; ".join(parts) or "no flags"


def open_rover(port: str, profile, **kw) -> RoboClawRover:
    """The RoboClaw driver for rover ``profile`` on ``port`` (the :func:`drivers.open_rover` entry point).
    A ``roboclaw_mapping`` key in ``kw`` (a dict as for :func:`mapping_from_dict`) replaces :data:`OSR_MAPPING`."""
    m = kw.pop("roboclaw_mapping", None)
    if m is not None:
        kw["mapping"] = mapping_from_dict(m)
    return RoboClawRover(port, profile, **kw)
