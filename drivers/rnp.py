"""RNP driver: :class:`RnpRover`, a :class:`~drivers.base.Rover` on an Arduino-class board running the RNP
reference firmware (``hil/firmware/``) — skid-steer or differential rovers with wheel encoders.

The wire protocol (COBS frames, CRC-16, sequence numbers, firmware watchdog) is specified in
``drivers/PROTOCOL.md`` §2 and implemented by :mod:`drivers.rnp_codec`; this module is the host session
of §2.5 on top of it, built like :class:`drivers.roboclaw.RoboClawRover` (same transport, host watchdog,
command gate, threads or ``spin_once``).

Session
-------
* **Connect**: ``[00] HELLO → INFO`` (retried for ``connect_timeout_s``: opening the port resets an AVR
  board through DTR and it is blind for 1-2 s), INFO checked against the rover profile (protocol version,
  wheel count = motor channels, counts per revolution; a firmware speed limit under the profile's is
  logged and honoured by scaling commands), ``SET_WATCHDOG(device_timeout_s) → ACK``, ``HEARTBEAT →
  TELEMETRY`` (the e-stop latch is read *before* arming: a latched device e-stop is never cleared behind
  the operator's back), then ``ARM → ACK`` if the rover is armed. HELLO leaves the device stopped and
  disarmed, so nothing that was in force before a reconnect survives it.
* **Loop**: one transaction per I/O cycle, one request outstanding: a fresh command goes out as
  ``SET_WHEELS → TELEMETRY`` (that is also the poll), otherwise ``HEARTBEAT → TELEMETRY``. Every frame has
  a new ``seq`` (retries too); a reply whose ``ack_seq`` is not the outstanding request's is stale and
  discarded; after a failure the next frame starts with a ``00`` to flush the device's receiver.
* **Reboot / lost session**: REBOOTED in TELEMETRY, NACK NEED_HELLO, or NACK NOT_ARMED while the rover is
  armed (the device rebooted, or another program sent HELLO / DISARM) → the session is re-established
  (HELLO, SET_WATCHDOG — a reboot lost it —, ARM) and motion needs a command given after that. A reboot
  noticed only at a reconnect shows as INFO's watchdog back at its boot value.
* **NACKs** BAD_LENGTH / WHEEL_COUNT / BAD_VERSION / UNKNOWN_TYPE / OUT_OF_RANGE mean host and firmware
  disagree about the rover: :attr:`Fault.DEVICE_FAULT`, commands dropped, no blind retries (cleared by the
  next successful connect). ESTOPPED (or ESTOP in TELEMETRY) → :attr:`Fault.ESTOP` until :meth:`arm`.

Threads
-------
* **I/O thread** (``threaded=True``): a cycle every ``cycle_period_s`` (woken at once by a new command);
  never blocks longer than ``reply_timeout_s`` (+ one port timeout) per transaction.
* **Watchdog thread** (:class:`~drivers.watchdog.Watchdog`): fed by every accepted motion command; when the
  control code has been quiet for ``command_timeout_s`` it puts ``SET_WHEELS(0…)`` on the wire itself
  through the bus lock's priority lane and raises :attr:`Fault.WATCHDOG` until the next fresh command.
* ``threaded=False``: nothing in the background; a harness calls :meth:`RnpRover.spin_once` and
  :meth:`RnpRover.poll_watchdog` (simulated time over ``sim://``).

Safety rules implemented
------------------------
* Two independent stops: the host watchdog (0.2 s default: zero on the wire well within 300 ms) and the
  firmware watchdog (``device_timeout_s``, 0.3 s default) that stops the motors when the host dies. The I/O
  thread's heartbeats feed the firmware watchdog only while the host runs; the host watchdog is fed only
  by fresh control commands.
* Commands are sent only while fresh (:class:`~drivers.watchdog.CommandGate`); after a reconnect, a
  re-established session, a stop, an e-stop or a stopping device fault, motion needs a command given
  after the event. A stale command is never resent.
* ``max_failed_polls`` (3) consecutive failed transactions (timeouts, corrupt or stale replies, wrong
  acks) or a vanished port raise :attr:`Fault.LINK_LOST`: commands are dropped (the rover is treated as
  stopped; the firmware watchdog stops the motors if the board is unreachable), a best-effort DISARM is
  sent, and the driver reconnects with backoff (the port may come back under a new name, see
  :class:`~drivers.transport.Transport` ``candidates``). The port is opened exclusively.

Telemetry
---------
Encoder counts are the device's s32 counts (raw − offset, wrapping at 2**32), per wheel (a wheel on a
shared channel reports its channel); speeds come from the device's measured counts/s; currents and
battery when INFO's capabilities say they are measured (else NaN / ``None``). Implausible values under a
valid CRC are discarded and raise :attr:`Fault.PROTOCOL`; encoder jumps and frozen encoders raise
:attr:`Fault.ENCODER_FAULT`; a rising device ``rx_errors`` raises :attr:`Fault.PROTOCOL`. RNP v1 carries no
IMU: ``imu`` is ``None``. Device details are in ``Telemetry.extra["device"]``.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import math
import threading
from dataclasses import dataclass, field

import numpy as np

from . import rnp_codec as rnp
from .base import BatterySample, Fault, Telemetry
from .clock import Clock
from .cobs import FramingError
from .crc import ChecksumError
from .errors import DeviceFault, DeviceTimeout, DriverError, LinkLost, ProtocolError
from .kinematics import WheelLayout
from .rnp_codec import (Ack, Arm, Capability, ContentError, Disarm, EStop, Heartbeat, Hello, Info, MsgType, Nack,
                        NackCode, RnpFault, SetWatchdog, SetWheels, Telemetry as RnpTelemetry)
from .serial_rover import FAULT_HOLD_S, LinkStatsBase, PolledSerialRover, resolve_layout, sample_deque
from .transport import DEFAULT_BAUDRATE, Transport

__all__ = ["RnpRover", "open_rover", "check_channels", "RnpLinkStats"]

log = logging.getLogger(__name__)

_S32_MAX = 0x7FFFFFFF
_LOCK_TIMEOUT_S = 0.25         # longest a stop waits for the bus (then the I/O thread retries it)
_MIN_REPLY = 11                # the shortest device frame on the wire (ACK: 9-byte body, COBS + delimiter)
_EXPECT = {MsgType.HELLO: MsgType.INFO, MsgType.SET_WHEELS: MsgType.TELEMETRY, MsgType.HEARTBEAT: MsgType.TELEMETRY}
_SESSION_TYPES = (MsgType.HELLO, MsgType.ARM, MsgType.DISARM, MsgType.ESTOP)


def check_channels(channels, layout: WheelLayout, device: str = "rnp") -> tuple[tuple[int, ...], ...]:
    """Motor channels of the firmware, in device order, as tuples of layout wheel indices.

    Parameters
    ----------
    channels : sequence or None
        ``None``: one channel per wheel, layout order. Otherwise one entry per device channel: a wheel
        name or index, or a tuple of them for wheels driven by one channel (a 4-wheel skid-steer on a
        two-channel H-bridge: ``[("front_left", "rear_left"), ("front_right", "rear_right")]``).
        Every wheel exactly once, 1..8 channels.
    layout : WheelLayout
    device : str
        Names the device in errors.
    """
    names = layout.names
    if channels is None:
        out = tuple((i,) for i in range(layout.n_wheels))
    else:
        if isinstance(channels, (str, bytes)) or not hasattr(channels, "__iter__"):
            raise TypeError(f"{device}: channels must be a sequence of wheels or wheel groups, got {channels!r}")

        def idx(w):
            if isinstance(w, str):
                if w not in names:
                    raise ValueError(f"{device}: channels names wheel {w!r}: must be one of {', '.join(names)}")
                return names.index(w)
            if isinstance(w, (int, np.integer)) and not isinstance(w, bool) and 0 <= w < layout.n_wheels:
                return int(w)
            raise ValueError(f"{device}: channels entry {w!r}: must be a wheel name or an index "
                             f"0..{layout.n_wheels - 1}")

        out = []
        for ch in channels:
            group = (ch,) if isinstance(ch, (str, int, np.integer)) else tuple(ch)
            if not group:
                raise ValueError(f"{device}: channels has an empty wheel group")
            out.append(tuple(idx(w) for w in group))
        out = tuple(out)
    seen = [w for g in out for w in g]
    dup = sorted({names[w] for w in seen if seen.count(w) > 1})
    if dup:
        raise ValueError(f"{device}: wheel(s) {', '.join(dup)} on more than one channel")
    missing = [names[w] for w in range(layout.n_wheels) if w not in seen]
    if missing:
        raise ValueError(f"{device}: channels leave wheels without a motor: {', '.join(missing)}")
    if not 1 <= len(out) <= rnp.MAX_WHEELS:
        raise ValueError(f"{device}: {len(out)} motor channels: RNP carries 1..{rnp.MAX_WHEELS}")
    return out


_deque = sample_deque


@dataclass
class RnpLinkStats(LinkStatsBase):
    """Counters and latency samples of an :class:`RnpRover` (seconds on the driver's clock)."""
    cycles: int = 0
    transactions: int = 0
    polls: int = 0
    failed_polls: int = 0            # failed transactions of any kind
    timeouts: int = 0
    crc_errors: int = 0
    framing_errors: int = 0
    bad_content: int = 0             # CRC-valid device frames with wrong content (decoder or plausibility)
    stale_replies: int = 0           # replies to an earlier frame (discarded)
    wrong_acks: int = 0              # a reply to this frame of the wrong type / acknowledging another type
    nacks: int = 0
    device_frames_lost: int = 0      # gaps in the device's sequence numbers
    device_rx_errors: int = 0        # frames the device dropped (its rx_errors counter, accumulated)
    commands_sent: int = 0
    commands_delivered: int = 0
    zero_writes: int = 0
    link_losses: int = 0
    reconnects: int = 0
    reboots: int = 0
    resyncs: int = 0                 # sessions re-established on a live link (reboot, foreign HELLO/DISARM)
    encoder_faults: int = 0
    dropped_commands: int = 0
    preempted: int = 0               # I/O transactions abandoned for a stop waiting for the bus
    cmd_to_wire_s: collections.deque = field(default_factory=_deque)     # set_wheels -> SET_WHEELS written
    cmd_rtt_s: collections.deque = field(default_factory=_deque)         # SET_WHEELS written -> TELEMETRY parsed
    poll_rtt_s: collections.deque = field(default_factory=_deque)        # HEARTBEAT written -> TELEMETRY parsed
    cycle_s: collections.deque = field(default_factory=_deque)           # start-to-start of I/O cycles
    watchdog_stop_s: collections.deque = field(default_factory=_deque)   # last command -> zero written
    watchdog_late_s: collections.deque = field(default_factory=_deque)   # deadline -> zero written


class RnpRover(PolledSerialRover):
    """A rover driven by an RNP board (skid-steer or differential, with wheel encoders).

    Parameters
    ----------
    port : str
        Port URL (``/dev/ttyACM0``, ``/dev/serial/by-id/…``, ``socket://…``, ``sim://NAME``...).
    layout : WheelLayout or rover profile
        The rover's wheels (a :class:`nav.config.RoverProfile` is converted with
        :meth:`WheelLayout.from_profile`).
    channels : sequence, optional
        Firmware motor channels in device order (see :func:`check_channels`); default one per wheel.
    baudrate : int
        Line speed (the reference firmware: 115200).
    clock : Clock
        Time base (default monotonic). ``threaded=True`` needs real time.
    threaded : bool
        Start the I/O and watchdog threads on open (default). ``False``: call :meth:`spin_once` and
        :meth:`poll_watchdog` yourself.
    device_timeout_s : float
        Firmware watchdog set with SET_WATCHDOG (0.05..10 s, ms resolution; default 0.3 s) — the device
        backstop that stops the motors when the host dies.
    command_timeout_s : float
        Host watchdog: zero speed when the control code gives no fresh motion command for this long
        (default 0.2 s).
    reply_timeout_s : float
        Longest wait for one reply (default 40 ms: a 6-wheel TELEMETRY is 7 ms at 115200 baud, plus a
        16 ms USB latency timer and margin).
    cycle_period_s : float
        I/O cycle period in threaded mode (default 20 ms; 0 = as fast as the link allows).
    max_failed_polls : int
        Consecutive failed transactions that mean the link is lost (default 3).
    command_retries : int
        Extra attempts (new frames) for a SET_WHEELS that got no valid reply, while it is fresh (default 2).
    connect_timeout_s : float
        How long the first connect keeps sending HELLO (default 2.5 s: an AVR board resets when the port
        opens). Reconnects try twice per backoff step.
    candidates : str, sequence or callable, optional
        Other names the port may come back under (see :class:`~drivers.transport.Transport`).
    low_voltage_v, current_limit_a : float, optional
        Host-side thresholds for :attr:`Fault.BATTERY_LOW` / :attr:`Fault.OVERCURRENT` (the device's own
        fault bits are always reported).
    check_counts_per_rev : bool
        Refuse a firmware whose counts per revolution differ from the profile's (default True: encoder
        counts and wheel speeds would be scaled wrong everywhere above).
    transport : Transport, optional
        A ready transport (tests); default one is built from ``port``.
    name : str, optional
        Device name in messages (default the port URL).
    """

    _YIELD_WHEN_FREE_RUNNING = True

    def __init__(self, port: str, layout, *, channels=None, baudrate: int = DEFAULT_BAUDRATE,
                 clock: Clock | None = None, threaded: bool = True, device_timeout_s: float = 0.3,
                 command_timeout_s: float = 0.2, reply_timeout_s: float = 0.04, cycle_period_s: float = 0.02,
                 max_failed_polls: int = 3, command_retries: int = 2, connect_timeout_s: float = 2.5,
                 candidates=None, low_voltage_v: float | None = None, current_limit_a: float | None = None,
                 check_counts_per_rev: bool = True, transport: Transport | None = None, name: str | None = None):
        _, layout = resolve_layout(layout)
        super().__init__(layout, clock=clock, name=name or str(port))
        dev = self.name
        for nm, v, lo, hi in (("device_timeout_s", device_timeout_s, rnp.WATCHDOG_MIN_MS / 1e3,
                               rnp.WATCHDOG_MAX_MS / 1e3),
                              ("command_timeout_s", command_timeout_s, 0.02, 5.0),
                              ("reply_timeout_s", reply_timeout_s, 0.002, 0.5),
                              ("cycle_period_s", cycle_period_s, 0.0, 1.0),
                              ("connect_timeout_s", connect_timeout_s, 0.0, 30.0)):
            if isinstance(v, bool) or not (isinstance(v, (int, float)) and math.isfinite(v) and lo <= v <= hi):
                raise ValueError(f"{dev}: {nm} = {v!r}: must be within [{lo:g}, {hi:g}] s")
        if not (isinstance(max_failed_polls, int) and 1 <= max_failed_polls <= 20):
            raise ValueError(f"{dev}: max_failed_polls = {max_failed_polls!r}: must be an int in 1..20")
        if not (isinstance(command_retries, int) and 0 <= command_retries <= 5):
            raise ValueError(f"{dev}: command_retries = {command_retries!r}: must be an int in 0..5")
        self.channels = check_channels(channels, layout, dev)
        self.device_timeout_s = float(device_timeout_s)
        self._watchdog_ms = int(round(self.device_timeout_s * 1000))
        self.reply_timeout_s = float(reply_timeout_s)
        self.connect_timeout_s = float(connect_timeout_s)
        self.max_failed_polls = max_failed_polls
        self.command_retries = command_retries
        self.low_voltage_v = low_voltage_v
        self.current_limit_a = current_limit_a
        self.check_counts_per_rev = bool(check_counts_per_rev)

        n = layout.n_wheels
        self._cps_per_radps = layout.counts_per_rev / (2.0 * math.pi)
        self._max_cps = layout.max_wheel_speed_radps * self._cps_per_radps
        self._cmd_limit_cps = math.inf                  # the firmware's max_speed_cps (from INFO)
        self._init_link(port, baudrate=baudrate, candidates=candidates, transport=transport, threaded=threaded,
                        command_timeout_s=command_timeout_s, cycle_period_s=cycle_period_s)
        self._preempt = threading.Event()                # a stop waits for the bus (see _transact_locked)
        self.stats = RnpLinkStats()
        self._decoder = rnp.RnpDecoder(direction="to_host")
        self._tx_seq = 0
        self._dev_seq: int | None = None
        self._flush_next = True
        self._epoch = 0
        self._estop_pending = False
        self._resync_reason: str | None = None
        self._fail_count = 0
        self._wired_gen = 0
        self._reboot_seen = False
        self.info: Info | None = None
        # device state
        self._dev_faults = 0
        self._dev_state = 0
        self._dev_time_ms = 0
        self._dev_rx_errors: int | None = None
        self._device_stop = Fault.NONE
        self._config_fault: str | None = None
        self._protocol_t = -math.inf
        self._encoder_fault_t = -math.inf
        # telemetry state
        self._counts = np.zeros(n, dtype=np.int64)
        self._count_t = np.full(n, math.nan)
        self._speed_radps = np.full(n, math.nan)
        self._current_a = np.full(n, math.nan)
        self._battery_v = math.nan
        self._cmd_cps = np.zeros(len(self.channels))
        self._frozen_since = np.full(n, math.nan)
        self._frozen_reported = np.zeros(n, dtype=bool)
        self._seq = 0
        self._tel_t = math.nan
        self._warned_steer = False
        self._warned_scale = False
        self.commanded_steer_rad = np.zeros(n)

    # ------------------------------------------------------------------ properties
    @property
    def device_faults(self) -> RnpFault:
        """The fault bits of the last TELEMETRY."""
        return RnpFault(self._dev_faults)

    # ------------------------------------------------------------------ Rover hooks
    def _leave_device(self) -> None:
        if self._link_up and self.transport.is_open:
            try:                                          # leave the board disarmed (best effort)
                self._request(Disarm(), priority=True, timeout=_LOCK_TIMEOUT_S)
            except DriverError:
                pass

    def _arm(self) -> None:
        if not self._link_up:
            raise LinkLost(f"{self.name}: cannot arm: link to the RNP board is down ({self._link_reason})")
        if self._config_fault:
            raise DeviceFault(f"{self.name}: cannot arm: {self._config_fault}")
        if self._device_stop & Fault.DEVICE_FAULT:
            raise DeviceFault(f"{self.name}: cannot arm: the board reports "
                              f"{RnpFault(self._dev_faults & rnp.HARDWARE_FAULTS)!r}")
        self.gate.block()
        self.watchdog.idle()
        self._estop_pending = False
        reply = self._request_retry(Arm(), priority=True)
        if isinstance(reply, Nack) and reply.code == NackCode.NEED_HELLO:
            self._session(self.transport.current_url or self.name, arm=False, priority=True)
            reply = self._request_retry(Arm(), priority=True)
        if not isinstance(reply, Ack):
            why = reply.reason if isinstance(reply, Nack) else "no valid reply"
            raise DeviceTimeout(f"{self.name}: ARM not acknowledged: {why}") if reply is None else \
                DeviceFault(f"{self.name}: ARM refused: {why}")
        tel = self._request_retry(Heartbeat(), priority=True)
        if isinstance(tel, RnpTelemetry):
            self._apply_telemetry(tel, self.clock.now())
            if tel.faults & RnpFault.ESTOP:
                raise DeviceFault(f"{self.name}: the board's e-stop latched again right after ARM: its hardware "
                                  f"e-stop input is still active")
        with self._state_lock:
            self._device_stop &= ~Fault.ESTOP

    def _disarm(self) -> None:
        self.gate.block()
        self.watchdog.idle()
        if self._link_up:
            try:
                self._request_retry(Disarm(), tries=2, priority=True)
            except LinkLost as e:
                self._link_lost(str(e), port_gone=self.transport.lost)

    def _send_wheels(self, speed_radps: np.ndarray, steer_rad: np.ndarray) -> None:
        self.commanded_steer_rad = steer_rad.copy()
        if not self._warned_steer and self.layout.steerable.any() and np.any(steer_rad[self.layout.steerable]):
            self._warned_steer = True
            log.warning("%s: RNP carries no steering: steering commands are stored, not executed", self.name)
        if not self._link_up or self._device_stop or self._config_fault or self._resync_reason:
            self._drop_command(lambda: self._link_reason if not self._link_up else self._config_fault
                               or self._resync_reason or self._device_stop.describe())
            return
        cps = np.array([float(np.mean(speed_radps[list(g)])) for g in self.channels]) * self._cps_per_radps
        peak = float(np.max(np.abs(cps))) if len(cps) else 0.0
        if peak > self._cmd_limit_cps:
            cps *= self._cmd_limit_cps / peak             # keep the curvature, slow down
            if not self._warned_scale:
                self._warned_scale = True
                log.warning("%s: wheel speeds scaled down to the firmware limit of %d counts/s", self.name,
                            int(self._cmd_limit_cps))
        cmd = tuple(int(v) for v in np.clip(np.rint(cps), -_S32_MAX, _S32_MAX))
        if math.isfinite(self._cmd_limit_cps):
            lim = int(self._cmd_limit_cps)
            cmd = tuple(max(-lim, min(lim, v)) for v in cmd)
        self.gate.submit(cmd)
        self.watchdog.feed(any(cmd))
        self._wake.set()

    def _estop(self) -> None:
        self.gate.block()
        self.watchdog.idle()
        self._send_estop(priority=True)

    def _read_telemetry(self) -> Telemetry:
        now = self.clock.now()
        n = self.layout.n_wheels
        with self._state_lock:
            up = self._link_up
            faults = self._link_faults(now, up)
            if now - self._encoder_fault_t < FAULT_HOLD_S or self._frozen_reported.any():
                faults |= Fault.ENCODER_FAULT
            faults |= rnp.to_rover_faults(self._dev_faults) | self._device_stop
            if self._config_fault:
                faults |= Fault.DEVICE_FAULT
            caps = self.info.capabilities if self.info is not None else 0
            v = self._battery_v if up else math.nan
            if self.low_voltage_v is not None and math.isfinite(v) and v < self.low_voltage_v:
                faults |= Fault.BATTERY_LOW
            cur = self._current_a.copy() if up else np.full(n, math.nan)
            if self.current_limit_a is not None and np.nanmax(np.append(cur, 0.0)) >= self.current_limit_a:
                faults |= Fault.OVERCURRENT
            speed = self._speed_radps.copy() if up else np.full(n, math.nan)
            counts = self._counts.copy()
            t = self._tel_t if math.isfinite(self._tel_t) else now
            seq = self._seq
            info = self.info
            extra = {
                "device": None if info is None else {
                    "fw_version": info.fw_version, "n_wheels": info.n_wheels,
                    "capabilities": Capability(info.capabilities), "counts_per_rev": info.counts_per_rev,
                    "max_speed_cps": info.max_speed_cps, "watchdog_ms": self._watchdog_ms,
                    "time_ms": self._dev_time_ms, "state": rnp.DeviceState(self._dev_state & 0x03),
                    "faults": RnpFault(self._dev_faults), "rx_errors": self._dev_rx_errors},
                "link": self.stats.summary(),
                "link_reason": self._link_reason,
                "config_fault": self._config_fault,
                "events": list(self.events)[-10:],
                "commanded_steer_rad": self.commanded_steer_rad.copy(),
            }
        steer = np.where(self.layout.steerable, math.nan, 0.0)
        battery = None
        if math.isfinite(v):
            total = float(np.nansum(cur)) if caps & Capability.CURRENT_SENSE and np.isfinite(cur).any() else math.nan
            battery = BatterySample(t, v, total)
        return Telemetry(t_s=float(t), seq=seq, encoder_counts=counts, wheel_speed_radps=speed, steer_rad=steer,
                         motor_current_a=cur, battery=battery, faults=faults, armed=self._armed, extra=extra)

    # ------------------------------------------------------------------ public loop API
    def spin_once(self) -> None:
        """One I/O cycle: a pending stop or e-stop, then the fresh command (SET_WHEELS) or a poll
        (HEARTBEAT); with the link down, a reconnect attempt (never blocking beyond a few transactions).
        Called by the I/O thread; call it yourself when ``threaded=False``."""
        if self._closed:
            return
        try:
            if not self._link_up:
                self._recover()
                return
            self._count_cycle()
            if self._resync_reason:
                self._resync()
            if self._link_up and self._estop_pending:
                self._send_estop(priority=False)
            if self._link_up and self._zero_pending:
                self._write_zero("retry of an unconfirmed stop", priority=False)
            if self._link_up and not self._service_command() and self._link_up:
                self._poll()
            if self._link_up and self._resync_reason:
                self._resync()
            self.stats.cycles += 1
        except LinkLost as e:
            self._link_lost(str(e), port_gone=self.transport.lost)

    # ------------------------------------------------------------------ transactions
    def _failure(self, kind: str, detail) -> None:
        self._fail_count += 1
        self._flush_next = True
        self.stats.failed_polls += 1
        if kind == "timeout":
            self.stats.timeouts += 1
        else:
            self._protocol_t = self.clock.now()
            if kind == "ack":
                self.stats.wrong_acks += 1
        log.debug("%s: %s: %s", self.name, kind, detail)

    def _transact_locked(self, msg: rnp.Message, *, preemptible: bool = False):
        """Send one frame (new seq) and wait for its reply; ``(reply or None, clock time written, session
        epoch)``. A failure is counted; the bus lock must be held. ``preemptible`` (the I/O thread's polls
        and commands): a stop waiting for the bus cuts the wait short."""
        tr = self.transport
        seq = self._tx_seq
        self._tx_seq = rnp.seq_next(seq)
        wire = rnp.encode_message(dataclasses.replace(msg, seq=seq), flush=self._flush_next)
        mtype = msg.TYPE
        if mtype in _SESSION_TYPES:
            self._epoch += 1                 # telemetry requested before this frame says nothing about after it
        epoch = self._epoch
        tr.reset_input()
        self._decoder.reset()
        tr.write(wire)
        t_wire = self.clock.now()
        self.stats.transactions += 1
        deadline = t_wire + self.reply_timeout_s
        idle = int(math.ceil(self.reply_timeout_s / tr.read_timeout_s)) + 2     # a stuck clock cannot hang us
        got = 0
        while idle > 0:
            left = deadline - self.clock.now()
            if left <= 0:
                break
            if preemptible and self._preempt.is_set():
                # a stop or an e-stop waits for the bus: give it up now (the reply, if it comes, will be
                # stale and discarded); not a failure of the link
                self.stats.preempted += 1
                self._flush_next = True
                return None, t_wire, epoch
            want = _MIN_REPLY if got < _MIN_REPLY else max(1, tr.in_waiting())
            chunk = tr.read(want, min(left, tr.read_timeout_s) if preemptible else left)
            if not chunk:
                idle -= 1
                continue
            got += len(chunk)
            for item in self._decoder.feed_with_errors(chunk):
                if not isinstance(item, rnp.Message):
                    self._frame_error(item)
                    continue
                self._track_device_seq(item)
                if item.ack_seq != seq:
                    self.stats.stale_replies += 1
                    self._protocol_t = self.clock.now()
                    continue
                if isinstance(item, Nack):
                    if item.nacked_type != mtype:
                        self._failure("ack", f"NACK for type 0x{item.nacked_type:02x} answers {mtype.name}")
                        return None, t_wire, epoch
                    self.stats.nacks += 1
                elif isinstance(item, Ack):
                    if item.acked_type != mtype or mtype in _EXPECT:
                        self._failure("ack", f"ACK of type 0x{item.acked_type:02x} answers {mtype.name}")
                        return None, t_wire, epoch
                elif item.TYPE != _EXPECT.get(mtype):
                    self._failure("ack", f"{item.TYPE.name} answers {mtype.name}")
                    return None, t_wire, epoch
                self._fail_count = 0
                self._flush_next = False
                return item, t_wire, epoch
        self._failure("timeout", f"no valid reply to {mtype.name} seq {seq} in {self.reply_timeout_s:g} s")
        return None, t_wire, epoch

    def _frame_error(self, e: ProtocolError) -> None:
        self._protocol_t = self.clock.now()
        if isinstance(e, ContentError):
            self.stats.bad_content += 1
        elif isinstance(e, ChecksumError):
            self.stats.crc_errors += 1
        elif isinstance(e, FramingError):
            self.stats.framing_errors += 1
        log.debug("%s: rejected device frame: %s", self.name, e)

    def _track_device_seq(self, m: rnp.Message) -> None:
        if self._dev_seq is not None:
            d = rnp.seq_delta(m.seq, self._dev_seq)
            if d > 1:
                self.stats.device_frames_lost += d - 1
        self._dev_seq = m.seq

    def _request(self, msg: rnp.Message, *, priority: bool = False, timeout: float | None = None):
        """One transaction under the bus lock; the reply or None (also None if the lock timed out)."""
        with self._bus.hold(priority=priority, timeout=timeout) as ok:
            if not ok:
                return None
            reply, _, _ = self._transact_locked(msg)
        return reply

    def _request_retry(self, msg: rnp.Message, tries: int = 3, *, priority: bool = False):
        """Up to ``tries`` transactions (each a new frame) until a reply arrives. ``priority``: from a
        caller's thread (arm, disarm), so a free-running I/O thread cannot starve it of the bus."""
        for _ in range(tries):
            reply = self._request(msg, priority=priority)
            if reply is not None:
                return reply
        return None

    # ------------------------------------------------------------------ session
    def _connect(self, *, initial: bool = True) -> None:
        """HELLO (retried), INFO checks, SET_WATCHDOG, e-stop check, ARM if armed; the link is up after it.
        Raises a DriverError naming the port and what failed."""
        port = self.transport.current_url or self.name
        self._flush_next = True
        self._dev_seq = None
        self._session(port, arm=self._armed, hello_for_s=self.connect_timeout_s if initial else 0.0)
        self._connected_once = True
        with self._state_lock:
            self._link_up = True
            self._link_reason = ""
            self._fail_count = 0
            self._zero_pending = False
            self._resync_reason = None
        self.gate.block()

    def _session(self, port: str, *, arm: bool, hello_for_s: float = 0.0, priority: bool = False) -> Info:
        t_end = self.clock.now() + hello_for_s
        attempts = 0
        while True:
            attempts += 1
            reply = self._request(Hello(), priority=priority)
            if isinstance(reply, Info):
                info = reply
                break
            if isinstance(reply, Nack):
                raise DeviceFault(f"{port}: HELLO refused: {reply.reason}: the firmware does not speak RNP "
                                  f"version {rnp.PROTOCOL_VERSION}")
            if attempts >= 2 and self.clock.now() >= t_end:
                raise DeviceTimeout(f"{port}: no RNP board answers HELLO ({attempts} attempts in "
                                    f"{max(hello_for_s, 0):g} s): check the port, the baud rate "
                                    f"({self.transport.baudrate}) and the firmware")
        self._check_info(info, port)
        self.info = info
        if self._connected_once and info.watchdog_ms != self._watchdog_ms and not self._reboot_seen:
            self.stats.reboots += 1
            self._event("reboot", f"the board's watchdog reads {info.watchdog_ms} ms (set {self._watchdog_ms}): "
                                  f"it rebooted (or another program reconfigured it); reconfiguring")
            log.warning("%s: the board lost its watchdog setting (reads %d ms): it rebooted; reconfiguring",
                        self.name, info.watchdog_ms)
        self._reboot_seen = False
        reply = self._request_retry(SetWatchdog(timeout_ms=self._watchdog_ms), priority=priority)
        if not isinstance(reply, Ack):
            self._session_failed(port, "SET_WATCHDOG", reply)
        tel = self._request_retry(Heartbeat(), priority=priority)
        if not isinstance(tel, RnpTelemetry):
            self._session_failed(port, "HEARTBEAT", tel)
        self._apply_telemetry(tel, self.clock.now(), session=True)
        if arm:
            if tel.faults & RnpFault.ESTOP:
                self._event("estop", "the board's e-stop is latched: not re-armed; arm() clears it")
                log.error("%s: the board's e-stop is latched: not re-arming; call arm() to clear it", self.name)
            else:
                reply = self._request_retry(Arm(), priority=priority)
                if not isinstance(reply, Ack):
                    self._session_failed(port, "ARM", reply)
        return info

    def _session_failed(self, port, what, reply) -> None:
        if reply is None:
            raise DeviceTimeout(f"{port}: {what} not answered ({self._fail_count} failed transactions)")
        why = reply.reason if isinstance(reply, Nack) else f"answered with {type(reply).__name__}"
        raise DeviceFault(f"{port}: {what} refused: {why}")

    def _check_info(self, info: Info, port: str) -> None:
        n = len(self.channels)
        if info.protocol_version != rnp.PROTOCOL_VERSION:
            raise DeviceFault(f"{port}: the board speaks RNP version {info.protocol_version}, this driver "
                              f"{rnp.PROTOCOL_VERSION}")
        if info.n_wheels != n:
            raise DeviceFault(f"{port}: the firmware drives {info.n_wheels} motor channels, the rover profile "
                              f"has {n} ({', '.join('+'.join(self.layout.names[w] for w in g) for g in self.channels)}):"
                              f" fix the firmware's N_WHEELS or pass channels=")
        if self.check_counts_per_rev and info.counts_per_rev != self.layout.counts_per_rev:
            raise DeviceFault(f"{port}: the firmware counts {info.counts_per_rev} encoder counts per wheel "
                              f"revolution, the rover profile {self.layout.counts_per_rev} "
                              f"(drive.encoder_counts_per_rev): make them agree")
        limit = float(info.max_speed_cps)
        if limit < self._max_cps - 0.5:
            log.warning("%s: the firmware's speed limit %d counts/s is below the profile's fastest wheel speed "
                        "%.0f counts/s: commands will be scaled down", self.name, info.max_speed_cps, self._max_cps)
        self._cmd_limit_cps = limit
        self._config_fault = None
        with self._state_lock:
            self._device_stop &= ~Fault.DEVICE_FAULT

    def _resync(self) -> None:
        reason = self._resync_reason
        self.gate.block()
        self._event("resync", f"{reason}; re-establishing the session")
        log.warning("%s: %s; re-establishing the session, no motion until a fresh command", self.name, reason)
        port = self.transport.current_url or self.name
        try:
            self._dev_seq = None
            self._session(port, arm=self._armed and not self._estopped)
        except LinkLost:
            raise
        except DriverError as e:
            self._resync_reason = None
            self._link_lost(f"re-establishing the session ({reason}) failed: {e}")
            return
        self._resync_reason = None
        self.stats.resyncs += 1
        self.gate.block()

    def _best_effort_stop(self) -> None:
        """One DISARM frame, not waited for (the board may still listen)."""
        try:
            with self._bus.hold(priority=True, timeout=_LOCK_TIMEOUT_S) as ok:
                if ok:
                    seq = self._tx_seq
                    self._tx_seq = rnp.seq_next(seq)
                    self.transport.write(rnp.encode_message(Disarm(seq=seq), flush=True))
        except DriverError:
            pass

    def _reconnect(self) -> None:
        self._connect(initial=False)

    # ------------------------------------------------------------------ commands and polls
    def _check_lost(self, what: str) -> None:
        if self._fail_count >= self.max_failed_polls:
            gone = not self.transport.path_present()
            self._link_lost(f"{self._fail_count} failed polls in a row (last: {what})"
                            + (" (port path vanished)" if gone else ""), port_gone=gone)

    def _service_command(self) -> bool:
        """Send the newest fresh command (SET_WHEELS); False if there was none."""
        item = self.gate.take()
        if item is None:
            return False
        gen, cps, t_submit = item
        for _attempt in range(1 + self.command_retries):
            with self._bus.hold():
                if not self.gate.is_current(gen):         # superseded, stale, stopped: never send it
                    return True
                reply, t_wire, epoch = self._transact_locked(SetWheels(speeds_cps=cps), preemptible=True)
            self.stats.commands_sent += 1
            if gen > self._wired_gen:
                self._wired_gen = gen
                self.stats.cmd_to_wire_s.append(t_wire - t_submit)
            if isinstance(reply, RnpTelemetry):
                now = self.clock.now()
                self.stats.cmd_rtt_s.append(now - t_wire)
                self.gate.delivered(gen)
                self.stats.commands_delivered += 1
                self._cmd_cps = np.asarray(cps, dtype=np.float64)
                self._apply_telemetry(reply, now, epoch=epoch)
                return True
            if isinstance(reply, Nack):
                self.gate.delivered(gen)
                self._on_nack(reply)
                return True
            if self._fail_count >= self.max_failed_polls:
                self._check_lost("SET_WHEELS not answered")
                return True
        return True

    def _poll(self) -> None:
        with self._bus.hold():
            reply, t_wire, epoch = self._transact_locked(Heartbeat(), preemptible=True)
        self.stats.polls += 1
        if isinstance(reply, RnpTelemetry):
            now = self.clock.now()
            self.stats.poll_rtt_s.append(now - t_wire)
            self._apply_telemetry(reply, now, epoch=epoch)
        elif isinstance(reply, Nack):
            self._on_nack(reply)
        else:
            self._check_lost("HEARTBEAT not answered")

    def _on_nack(self, nack: Nack) -> None:
        code = nack.code
        if code in (NackCode.NEED_HELLO, NackCode.NOT_ARMED):
            if code == NackCode.NEED_HELLO or (self._armed and not self._estopped):
                self._resync_reason = (f"the board refused {MsgType(nack.nacked_type).name}: "
                                       f"{NackCode(code).name} (it rebooted, or another program reset the session)")
                self.gate.block()
        elif code == NackCode.ESTOPPED:
            with self._state_lock:
                if not self._device_stop & Fault.ESTOP:
                    self._event("device_estop", "the board's e-stop is latched; arm() clears it")
                    log.error("%s: the board's e-stop is latched: commands dropped until arm()", self.name)
                self._device_stop |= Fault.ESTOP
            self.gate.block()
            self.watchdog.idle()
        else:
            reason = f"host and firmware disagree: {nack.reason}"
            if self._config_fault != reason:
                self._event("config_fault", reason)
                log.error("%s: %s: commands dropped until a reconnect", self.name, reason)
            self._config_fault = reason
            self.gate.block()
            self.watchdog.idle()

    def _acquire_for_stop(self, priority: bool) -> bool:
        """The bus for a stop: the priority lane, and the I/O thread's reply wait is cut short."""
        if not priority:
            return self._bus.acquire(timeout=_LOCK_TIMEOUT_S)
        self._preempt.set()
        try:
            return self._bus.acquire(priority=True, timeout=_LOCK_TIMEOUT_S)
        finally:
            self._preempt.clear()

    def _send_estop(self, *, priority: bool) -> None:
        self._estop_pending = True
        if not self._link_up or not self.transport.is_open:
            return
        try:
            for _ in range(3):
                if not self._acquire_for_stop(priority):
                    continue
                try:
                    if not self._estop_pending:           # arm() came first: an old retry must not re-latch
                        return
                    reply, _, _ = self._transact_locked(EStop())
                finally:
                    self._bus.release()
                if isinstance(reply, Ack):
                    self._estop_pending = False
                    return
        except LinkLost as e:
            self._link_lost(str(e), port_gone=self.transport.lost)
            return
        log.warning("%s: ESTOP not acknowledged; retrying", self.name)

    def _write_zero(self, reason: str, *, priority: bool = True) -> float | None:
        """``SET_WHEELS(0…)`` now; returns the clock time it was written (None if nothing could be
        written: the I/O thread retries while the link is up). A NOT_ARMED / ESTOPPED refusal confirms
        the stop (the board's motors are off)."""
        self._zero_pending = True
        if not self._link_up or not self.transport.is_open:
            return None
        got = self._acquire_for_stop(priority)
        if not got:
            log.warning("%s: link busy for %.0f ms: stop (%s) left to the I/O thread", self.name,
                        1e3 * _LOCK_TIMEOUT_S, reason)
            return None
        first = None
        reply = None
        epoch = None
        try:
            for _ in range(2):
                reply, t_wire, epoch = self._transact_locked(SetWheels(speeds_cps=(0,) * len(self.channels)))
                if first is None:
                    first = t_wire
                if reply is not None:
                    break
        except LinkLost as e:
            self._bus.release()
            got = False
            self._link_lost(str(e), port_gone=self.transport.lost)
        finally:
            if got:
                self._bus.release()
        self.stats.zero_writes += 1
        if isinstance(reply, RnpTelemetry):
            self._zero_pending = False
            self._cmd_cps[:] = 0.0
            self._apply_telemetry(reply, self.clock.now(), epoch=epoch)
        elif isinstance(reply, Nack):
            if reply.code in (NackCode.NOT_ARMED, NackCode.ESTOPPED):
                self._zero_pending = False
            self._on_nack(reply)
        else:
            log.warning("%s: stop (%s) not confirmed by the board; retrying", self.name, reason)
            if self._link_up:
                self._check_lost("zero speed not answered")
        return first

    # ------------------------------------------------------------------ telemetry
    def _bad_content(self, what: str) -> None:
        self.stats.bad_content += 1
        self._protocol_t = self.clock.now()
        log.debug("%s: implausible TELEMETRY discarded: %s", self.name, what)

    def _apply_telemetry(self, tel: RnpTelemetry, t: float, *, session: bool = False, epoch: int | None = None) -> None:
        """Take a TELEMETRY in. ``session``: read inside the connect sequence (REBOOTED and the arming state
        are expected to be off). ``epoch``: the session epoch it was requested in; a reply requested before
        a later HELLO / ARM / DISARM / ESTOP updates the measurements only."""
        nch = len(self.channels)
        if tel.n_wheels != nch or tel.state & ~0x03 or (tel.state & 0x02 and not tel.state & 0x01):
            self._bad_content(f"{tel.n_wheels} wheels (have {nch}), state 0x{tel.state:02x}")
            return
        info = self.info
        caps = info.capabilities if info is not None else 0
        faults = tel.faults
        current = not session and (epoch is None or epoch == self._epoch)
        if faults & RnpFault.REBOOTED and current:
            if not self._resync_reason:
                self.stats.reboots += 1
                self._reboot_seen = True
                self._event("reboot", "TELEMETRY reports REBOOTED: the board lost its watchdog setting and session")
                log.warning("%s: the board rebooted", self.name)
            self._resync_reason = "the board rebooted (REBOOTED in TELEMETRY)"
            self.gate.block()
        plausible = 2.0 * self._max_cps + 1000.0
        with self._state_lock:
            self._dev_faults = faults
            self._dev_state = tel.state
            self._dev_time_ms = tel.time_ms
            if self._dev_rx_errors is not None:
                d = (tel.rx_errors - self._dev_rx_errors) & 0xFFFF
                if 0 < d < 0x8000 and not faults & RnpFault.REBOOTED:
                    self.stats.device_rx_errors += d
                    self._protocol_t = t
            self._dev_rx_errors = tel.rx_errors
            for ch, g in enumerate(self.channels):
                raw = tel.encoder_counts[ch]
                for w in g:
                    self._apply_count(w, ch, raw, t)
            speeds = np.asarray(tel.speeds_cps, dtype=np.float64)
            if np.abs(speeds).max() > plausible:
                self._bad_content(f"speeds {tel.speeds_cps} counts/s")
            else:
                for ch, g in enumerate(self.channels):
                    self._speed_radps[list(g)] = speeds[ch] / self._cps_per_radps
            if caps & Capability.CURRENT_SENSE:
                amps = np.abs(np.asarray(tel.currents_ma, dtype=np.float64)) / 1000.0
                for ch, g in enumerate(self.channels):
                    self._current_a[list(g)] = amps[ch] / len(g)
            if caps & Capability.BATTERY_SENSE:
                if not 1000 <= tel.battery_mv <= 60000:
                    self._bad_content(f"battery {tel.battery_mv} mV")
                else:
                    self._battery_v = tel.battery_mv / 1000.0
            self._seq += 1
            self._tel_t = t
        if current:
            self._check_device_state(tel)
        elif session:
            with self._state_lock:
                self._device_stop = rnp.to_rover_faults(faults) & (Fault.DEVICE_FAULT | Fault.ESTOP)

    def _apply_count(self, w: int, ch: int, raw: int, t: float) -> None:
        prev_t = self._count_t[w]
        if math.isfinite(prev_t):
            d = (raw - int(self._counts[w])) & 0xFFFFFFFF       # encoder_delta, in plain ints (hot path)
            d = d - (1 << 32) if d >= 1 << 31 else d
            self._check_encoder(w, d, max(t - prev_t, 0.0), t,
                                abs(self._cmd_cps[ch]) > 0.1 * self._max_cps and self._dev_state & 0x02, self._max_cps)
        self._counts[w] = raw
        self._count_t[w] = t

    def _check_device_state(self, tel: RnpTelemetry) -> None:
        f = rnp.to_rover_faults(tel.faults)
        stop = f & (Fault.DEVICE_FAULT | Fault.ESTOP)
        with self._state_lock:
            before = self._device_stop
            self._device_stop = stop
        if stop and stop & ~before:
            self._event("device_fault", f"{stop.describe()}: {RnpFault(tel.faults)!r}")
            if not self._estopped:
                log.error("%s: the board reports %s: stopping, commands dropped", self.name, stop.describe())
            self.gate.block()
            self.watchdog.idle()
            if stop & Fault.DEVICE_FAULT and tel.state & 0x02:
                self._zero_pending = True
        elif before and not stop:
            self._event("device_fault_cleared", before.describe())
            log.warning("%s: device fault cleared; waiting for a fresh command", self.name)
        if (self._armed and not self._estopped and not stop and not tel.state & 0x01
                and not tel.faults & RnpFault.REBOOTED and not self._resync_reason):
            self._resync_reason = "the board is disarmed although the rover is armed (another program sent " \
                                  "HELLO or DISARM?)"
            self.gate.block()


def open_rover(port: str, profile, **kw) -> RnpRover:
    """The RNP driver for rover ``profile`` on ``port`` (the :func:`drivers.open_rover` entry point)."""
    return RnpRover(port, profile, **kw)
