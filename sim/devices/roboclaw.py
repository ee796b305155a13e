"""A virtual RoboClaw packet-serial bus: the controllers of a rover, moving a :class:`~sim.sim_rover.SimRover`.

:class:`VirtualRoboClawBus` is what sits at the far end of the serial cable: several controllers
(one per address of the motor mapping, :data:`drivers.roboclaw.OSR_MAPPING` by default) sharing one
bus. Bytes in (``receive(data, t_s)``) are parsed with :class:`drivers.roboclaw_codec.RequestParser`
exactly as a controller would (bad CRC: dropped in silence; a gap > 10 ms inside a packet: discarded;
garbage skipped); only the addressed controller answers; the answers are built with
:func:`~drivers.roboclaw_codec.encode_reply` and the ack byte ``0xFF``. Reach it through a
:class:`~sim.devices.faults.VirtualLink`: ``sim://NAME`` in-process, or a pseudo-terminal
(:mod:`sim.devices.pty`).

Device behaviour modelled
-------------------------
* **Speed commands** (35-40) set a target in encoder counts/s per motor, reached at the command's
  acceleration (38-40; 35-37 switch at once); duty commands (32-34) map ±32767 to ± the wheel's top
  speed. The SimRover's motors then slew at the profile's ``max_accel_mps2`` as well.
* **Encoders**: ``counts_per_rev`` per wheel revolution of the *true* wheel rotation (they over-read
  when the wheel slips), held in u32 counters that wrap; commands 16/17 report the status byte
  (underflow / direction / overflow, the wrap bits cleared by the read); 18/19 the measured speed
  (s32 + direction byte); 78 both counts; 20 zeroes both counters of that controller.
* **Currents** (49, 10 mA units, signed with the direction of rotation) and **main / logic battery**
  (24/25, 0.1 V) come from the SimRover's electrical model; **temperature** (82) is ``ambient_c`` plus
  a warm-up of 2 °C per amp the controller carries; **status** (90) is 4 bytes (current firmware) or 2
  (``status_bytes=2``, legacy layout) with the over-current and main-battery-low warnings derived from
  the model plus injected error flags.
* **Serial timeout** (14/15): value × 100 ms; when a controller has received no valid packet addressed
  to it (any read or CRC-valid write) for that long, both its motors stop. It is volatile: 0 after a
  reboot unless stored with command 94 (write settings, vendor key), which this model honours.
* **Reboot** (a fault hook): silent for ``boot_s``, then answers with the serial timeout back at its
  EEPROM value, the counters at 0 and the motors stopped.

Test hooks (used by :mod:`sim.devices.faults`): :meth:`reboot`, :meth:`set_error_flags`,
:meth:`freeze_encoder`, :meth:`set_encoder_count`, :meth:`reset_encoders`, :meth:`set_reply_fault`
(missing / wrong acks, valid-CRC replies with bad values). Every request is logged in
:attr:`requests` as ``(t_s, addr, cmd, args)``.

Ordering with the world: the bus attaches itself to the world *before* its SimRover, so a timeout
stop applies to the same physics steps; it stops the motors at the start of the ``world.advance`` call
whose span contains the deadline (early by less than one call) — and exactly on time when a packet
arrives after the deadline.

Note: currents and battery are sampled with ``SimRover.read_telemetry()`` (once per physics step),
which also restarts the SimRover's IMU averaging; the OSR's IMU is not on the RoboClaw bus.
"""
from __future__ import annotations

import collections
import math
import threading
from dataclasses import dataclass, field

import numpy as np

from drivers import roboclaw_codec as rc
from drivers.roboclaw import OSR_MAPPING, check_mapping
from drivers.roboclaw_codec import Cmd, LegacyStatusFlags, StatusFlags

__all__ = ["VirtualRoboClawBus", "SimSteering", "DEFAULT_FIRMWARE"]

DEFAULT_FIRMWARE = "USB Roboclaw 2x15a v4.2.8"
_TWO32 = 1 << 32
_DUTY_MAX = 32767


@dataclass
class _Controller:
    addr: int
    wheels: list            # wheel index of M1, M2 (-1: nothing connected)
    signs: list
    timeout_100ms: int = 0
    eeprom_timeout_100ms: int = 0
    last_valid_s: float = -math.inf
    boot_until_s: float = -math.inf
    target_pps: list = field(default_factory=lambda: [0.0, 0.0])
    out_pps: list = field(default_factory=lambda: [0.0, 0.0])
    accel_pps2: list = field(default_factory=lambda: [0.0, 0.0])     # 0: switch at once
    zero_counts: list = field(default_factory=lambda: [0, 0])
    offset: list = field(default_factory=lambda: [0, 0])
    frozen: list = field(default_factory=lambda: [False, False])
    frozen_raw: list = field(default_factory=lambda: [0, 0])
    last_block: list = field(default_factory=lambda: [0, 0])
    error_bits: int = 0
    timeout_stops: int = 0
    reboots: int = 0


class VirtualRoboClawBus:
    """RoboClaw controllers on one bus, driving a SimRover's wheels.

    Parameters
    ----------
    rover : sim.SimRover
        The rover whose wheels the motors turn (opened and armed here if needed; its own
        ``command_timeout_s`` is switched off — the controllers' serial timeout replaces it).
    mapping : sequence of drivers.roboclaw.MotorChannel
        Which controller motor turns which wheel (default OSR: 0x80, 0x81, 0x82).
    firmware : str
        Version text of command 21.
    status_bytes : int
        4 (current firmware) or 2 (legacy) byte status word.
    boot_s : float
        Silent time after a reboot.
    ambient_c : float
        Board temperature at rest.
    rng : numpy Generator, optional
        For reply faults (default ``world.rng(f"{name}.faults")``).
    name : str
    """

    def __init__(self, rover, *, mapping=OSR_MAPPING, firmware: str = DEFAULT_FIRMWARE, status_bytes: int = 4,
                 boot_s: float = 0.25, ambient_c: float = 25.0, rng: np.random.Generator | None = None,
                 name: str = "roboclaw"):
        from sim.sim_rover import SimRover

        if not isinstance(rover, SimRover):
            raise TypeError(f"rover must be a sim.SimRover, got {type(rover).__name__}")
        if status_bytes not in (2, 4):
            raise ValueError(f"status_bytes = {status_bytes!r}: must be 4 (current firmware) or 2 (legacy)")
        if not (isinstance(boot_s, (int, float)) and 0 <= boot_s <= 10):
            raise ValueError(f"boot_s = {boot_s!r}: must be within [0, 10] s")
        rc.encode_reply(0x80, Cmd.READ_VERSION, firmware)          # validates the text
        self.rover = rover
        self.world = rover.world
        self.layout = rover.layout
        self.mapping = check_mapping(mapping, self.layout, name)
        self.firmware = firmware
        self.status_bytes = status_bytes
        self.boot_s = float(boot_s)
        self.ambient_c = float(ambient_c)
        self.name = name
        self.rng = rng if rng is not None else self.world.rng(f"{name}.faults")
        self._pps_per_radps = self.layout.counts_per_rev / (2.0 * math.pi)
        self._rad_per_count = self.layout.radians_per_count
        self.max_pps = self.layout.max_wheel_speed_radps * self._pps_per_radps
        self.controllers: dict[int, _Controller] = {}
        for ch in self.mapping:
            c = self.controllers.setdefault(ch.addr, _Controller(ch.addr, [-1, -1], [1, 1]))
            c.wheels[ch.motor - 1] = self.layout.names.index(ch.wheel)
            c.signs[ch.motor - 1] = ch.sign
        self.parser = rc.RequestParser()
        self.requests: collections.deque = collections.deque(maxlen=50000)
        self.events: list = []
        self._reply_faults = {"ack_missing": 0.0, "ack_wrong": 0.0, "bad_content": 0.0}
        self._lock = threading.RLock()
        self.lock = self._lock               # held by pacers while the world steps
        self._steer = np.zeros(self.layout.n_wheels)
        self._speed_out = np.zeros(self.layout.n_wheels)
        self._tel = None
        self._tel_step = -1
        # the device runs before its rover in each world step
        rover.command_timeout_s = None
        self.world.detach(rover)
        self.world.attach(self)
        if rover.is_open:
            self.world.attach(rover)
        else:
            rover.open()
        if not rover.armed:
            rover.arm()
        for c in self.controllers.values():
            for m in (0, 1):
                c.zero_counts[m] = self._angle_counts(c, m)

    # ------------------------------------------------------------------ helpers
    def _angle_counts(self, c: _Controller, m: int) -> int:
        w = c.wheels[m]
        if w < 0:
            return 0
        return int(math.floor(c.signs[m] * self.rover.model.wheel_angle_rad[w] / self._rad_per_count))

    def _raw_count(self, c: _Controller, m: int) -> int:
        """Unwrapped counter (int; u32 on the wire is this mod 2**32)."""
        if c.frozen[m]:
            return c.frozen_raw[m]
        return self._angle_counts(c, m) - c.zero_counts[m] + c.offset[m]

    def _measured_pps(self, c: _Controller, m: int) -> int:
        w = c.wheels[m]
        if w < 0 or c.frozen[m]:
            return 0
        return int(round(c.signs[m] * self.rover.model.wheel_speed_radps[w] * self._pps_per_radps))

    def _rover_tel(self):
        if self._tel is None or self._tel_step != self.world.steps:
            self._tel = self.rover.read_telemetry()
            self._tel_step = self.world.steps
        return self._tel

    def _currents_a(self, c: _Controller) -> list[float]:
        tel = self._rover_tel()
        out = []
        for m in (0, 1):
            w = c.wheels[m]
            if w < 0:
                out.append(0.0)
            else:
                out.append(float(tel.motor_current_a[w]) * (-1.0 if self._measured_pps(c, m) < 0 else 1.0))
        return out

    def _battery_v(self) -> float:
        b = self._rover_tel().battery
        return b.voltage_v if b is not None else 0.0

    def _status_bits(self, c: _Controller) -> int:
        p = self.rover.profile.power
        cur = self._currents_a(c)
        bits = c.error_bits
        over = [abs(i) >= 0.99 * p.motor_current_limit_a for i in cur]
        low = self._battery_v() < p.low_voltage_v
        if self.status_bytes == 4:
            bits |= (StatusFlags.M1_OVERCURRENT_WARNING if over[0] else 0) | \
                    (StatusFlags.M2_OVERCURRENT_WARNING if over[1] else 0) | \
                    (StatusFlags.MAIN_VOLTAGE_LOW_WARNING if low else 0)
        else:
            bits |= (LegacyStatusFlags.M1_OVERCURRENT_WARNING if over[0] else 0) | \
                    (LegacyStatusFlags.M2_OVERCURRENT_WARNING if over[1] else 0) | \
                    (LegacyStatusFlags.MAIN_BATTERY_LOW_WARNING if low else 0)
        return int(bits) & (0xFFFFFFFF if self.status_bytes == 4 else 0xFFFF)

    def _apply_outputs(self) -> None:
        speed = np.zeros(self.layout.n_wheels)
        for c in self.controllers.values():
            for m in (0, 1):
                w = c.wheels[m]
                if w >= 0:
                    speed[w] = c.signs[m] * c.out_pps[m] / self._pps_per_radps
        lim = self.layout.max_wheel_speed_radps
        speed = np.clip(speed, -lim, lim)
        self._speed_out = speed
        self.rover.set_wheels(speed, self._steer)

    def _stop_controller(self, c: _Controller) -> None:
        c.target_pps = [0.0, 0.0]
        c.out_pps = [0.0, 0.0]

    def _check_timeouts(self, t: float, horizon_s: float = 0.0) -> bool:
        changed = False
        for c in self.controllers.values():
            if c.timeout_100ms <= 0 or not any(c.target_pps + c.out_pps):
                continue
            if t + horizon_s >= c.last_valid_s + c.timeout_100ms / 10.0:
                self._stop_controller(c)
                c.timeout_stops += 1
                self.events.append((t, "serial_timeout", f"0x{c.addr:02x}: no valid packet for "
                                                         f"{c.timeout_100ms / 10:g} s: motors stopped"))
                changed = True
        return changed

    # ------------------------------------------------------------------ world body
    def advance(self, n_steps: int, dt_s: float) -> None:
        """Called by the world before the rover: serial timeouts, then acceleration ramps."""
        with self._lock:
            t0 = self.world.time_s
            span = n_steps * dt_s
            changed = self._check_timeouts(t0, span)
            for c in self.controllers.values():
                for m in (0, 1):
                    d = c.target_pps[m] - c.out_pps[m]
                    if d == 0.0:
                        continue
                    a = c.accel_pps2[m]
                    step = abs(d) if a <= 0 else a * span
                    c.out_pps[m] += max(-step, min(step, d))
                    changed = True
            if changed:
                self._apply_outputs()

    # ------------------------------------------------------------------ the wire
    def receive(self, data: bytes, t_s: float) -> list[bytes]:
        """Bytes that reached the bus at ``t_s``; returns the reply frames, in order."""
        with self._lock:
            changed = self._check_timeouts(t_s)
            replies = []
            for req in self.parser.feed(data, t_s):
                self.requests.append((t_s, req.addr, int(req.cmd), req.args))
                c = self.controllers.get(req.addr)
                if c is None or t_s < c.boot_until_s:
                    continue                     # nobody at that address / still booting: silence
                c.last_valid_s = t_s
                reply, moved = self._handle(c, req)
                changed |= moved
                if reply is not None:
                    reply = self._reply_fault(c, req, reply)
                    if reply:
                        replies.append(reply)
            if changed:
                self._apply_outputs()
            return replies

    def _handle(self, c: _Controller, req) -> tuple[bytes | None, bool]:
        cmd, a, args = req.cmd, c.addr, req.args
        ack = rc.ACK_BYTES
        if cmd == Cmd.SET_SERIAL_TIMEOUT:
            c.timeout_100ms = args[0]
            return ack, False
        if cmd == Cmd.READ_SERIAL_TIMEOUT:
            return rc.encode_reply(a, cmd, c.timeout_100ms), False
        if cmd in (Cmd.READ_ENC_M1, Cmd.READ_ENC_M2):
            m = 0 if cmd == Cmd.READ_ENC_M1 else 1
            raw = self._raw_count(c, m)
            block = raw // _TWO32
            st = 0
            if block > c.last_block[m]:
                st |= rc.EncoderStatus.OVERFLOW
            elif block < c.last_block[m]:
                st |= rc.EncoderStatus.UNDERFLOW
            c.last_block[m] = block
            if self._measured_pps(c, m) < 0:
                st |= rc.EncoderStatus.BACKWARD
            return rc.encode_reply(a, cmd, raw % _TWO32, int(st)), False
        if cmd in (Cmd.READ_SPEED_M1, Cmd.READ_SPEED_M2):
            s = self._measured_pps(c, 0 if cmd == Cmd.READ_SPEED_M1 else 1)
            return rc.encode_reply(a, cmd, s, 1 if s < 0 else 0), False
        if cmd == Cmd.RESET_ENCODERS:
            self._reset_counts(c)
            return ack, False
        if cmd == Cmd.READ_VERSION:
            return rc.encode_reply(a, cmd, self.firmware), False
        if cmd in (Cmd.READ_MAIN_BATTERY, Cmd.READ_LOGIC_BATTERY):
            return rc.encode_reply(a, cmd, min(0xFFFF, max(0, int(round(self._battery_v() * 10))))), False
        if cmd in (Cmd.DUTY_M1, Cmd.DUTY_M2, Cmd.DUTY_M1M2):
            duties = args if cmd == Cmd.DUTY_M1M2 else args
            motors = (0, 1) if cmd == Cmd.DUTY_M1M2 else ((0,) if cmd == Cmd.DUTY_M1 else (1,))
            for m, d in zip(motors, duties):
                d = max(-_DUTY_MAX, min(_DUTY_MAX, d))
                c.target_pps[m] = d / _DUTY_MAX * self.max_pps
                c.accel_pps2[m] = 0.0
            return ack, True
        if cmd in (Cmd.SPEED_M1, Cmd.SPEED_M2, Cmd.SPEED_M1M2, Cmd.SPEED_ACCEL_M1, Cmd.SPEED_ACCEL_M2,
                   Cmd.SPEED_ACCEL_M1M2):
            accel = 0.0
            vals = args
            if cmd in (Cmd.SPEED_ACCEL_M1, Cmd.SPEED_ACCEL_M2, Cmd.SPEED_ACCEL_M1M2):
                accel, vals = float(args[0]), args[1:]
            motors = (0, 1) if cmd in (Cmd.SPEED_M1M2, Cmd.SPEED_ACCEL_M1M2) else \
                ((0,) if cmd in (Cmd.SPEED_M1, Cmd.SPEED_ACCEL_M1) else (1,))
            for m, v in zip(motors, vals):
                c.target_pps[m] = float(v)
                c.accel_pps2[m] = accel
            return ack, True
        if cmd == Cmd.READ_CURRENTS:
            i1, i2 = (max(-32768, min(32767, int(round(i * 100)))) for i in self._currents_a(c))
            return rc.encode_reply(a, cmd, i1, i2), False
        if cmd == Cmd.READ_ENCODERS:
            return rc.encode_reply(a, cmd, self._raw_count(c, 0) % _TWO32, self._raw_count(c, 1) % _TWO32), False
        if cmd == Cmd.READ_TEMPERATURE:
            temp = self.ambient_c + 2.0 * sum(abs(i) for i in self._currents_a(c))
            return rc.encode_reply(a, cmd, max(0, min(0xFFFF, int(round(temp * 10))))), False
        if cmd == Cmd.READ_STATUS:
            return rc.encode_reply(a, cmd, self._status_bits(c), status_bytes=self.status_bytes), False
        if cmd == Cmd.WRITE_SETTINGS:
            if args[0] != rc.WRITE_SETTINGS_KEY:
                return None, False
            c.eeprom_timeout_100ms = c.timeout_100ms
            return ack, False
        return None, False                                   # pragma: no cover - the parser knows no more

    _MEASUREMENTS = frozenset((Cmd.READ_ENC_M1, Cmd.READ_ENC_M2, Cmd.READ_SPEED_M1, Cmd.READ_SPEED_M2,
                               Cmd.READ_MAIN_BATTERY, Cmd.READ_LOGIC_BATTERY, Cmd.READ_CURRENTS,
                               Cmd.READ_ENCODERS, Cmd.READ_TEMPERATURE))

    def _reply_fault(self, c: _Controller, req, reply: bytes) -> bytes:
        f = self._reply_faults
        rng = self.rng
        if not req.is_read:
            if f["ack_missing"] and rng.random() < f["ack_missing"]:
                return b""
            if f["ack_wrong"] and rng.random() < f["ack_wrong"]:
                return bytes([int(rng.integers(0, 0xFF))])          # any byte but 0xFF
            return reply
        if f["bad_content"] and req.cmd in self._MEASUREMENTS and rng.random() < f["bad_content"]:
            cmd, a = req.cmd, c.addr
            if cmd in (Cmd.READ_ENC_M1, Cmd.READ_ENC_M2):
                return rc.encode_reply(a, cmd, int(rng.integers(0, _TWO32)), 0)
            if cmd in (Cmd.READ_SPEED_M1, Cmd.READ_SPEED_M2):
                return rc.encode_reply(a, cmd, int(rng.choice([-1, 1])) * (1 << 30), 0)
            if cmd in (Cmd.READ_MAIN_BATTERY, Cmd.READ_LOGIC_BATTERY):
                return rc.encode_reply(a, cmd, int(rng.choice([0, 0xFFFF])))
            if cmd == Cmd.READ_CURRENTS:
                return rc.encode_reply(a, cmd, 32000, -32000)
            if cmd == Cmd.READ_ENCODERS:
                return rc.encode_reply(a, cmd, int(rng.integers(0, _TWO32)), int(rng.integers(0, _TWO32)))
            if cmd == Cmd.READ_TEMPERATURE:
                return rc.encode_reply(a, cmd, 0xFFFF)
        return reply

    # ------------------------------------------------------------------ state for tests
    def targets_pps(self) -> np.ndarray:
        """Per-wheel speed target (encoder counts/s, wheel frame) the controllers hold now."""
        with self._lock:
            out = np.zeros(self.layout.n_wheels)
            for c in self.controllers.values():
                for m in (0, 1):
                    if c.wheels[m] >= 0:
                        out[c.wheels[m]] = c.signs[m] * c.target_pps[m]
            return out

    def outputs_radps(self) -> np.ndarray:
        """Per-wheel speed the motors are driven at now (rad/s)."""
        return self._speed_out.copy()

    def serial_timeouts(self) -> dict:
        return {a: c.timeout_100ms for a, c in self.controllers.items()}

    def count_requests(self, cmd: int, addr: int | None = None, since_s: float = -math.inf) -> int:
        return sum(1 for t, a, c, _ in list(self.requests) if c == int(cmd) and t >= since_s
                   and (addr is None or a == addr))

    # ------------------------------------------------------------------ fault hooks
    def _targets(self, addr) -> list[_Controller]:
        if addr is None:
            return list(self.controllers.values())
        if addr not in self.controllers:
            raise ValueError(f"{self.name}: addr = {addr!r}: no controller there "
                             f"(have {', '.join(f'0x{a:02x}' for a in self.controllers)})")
        return [self.controllers[addr]]

    def _wheel(self, wheel) -> tuple[_Controller, int]:
        i = wheel if isinstance(wheel, (int, np.integer)) else (
            self.layout.names.index(wheel) if wheel in self.layout.names else -1)
        for c in self.controllers.values():
            for m in (0, 1):
                if c.wheels[m] == i:
                    return c, m
        raise ValueError(f"{self.name}: wheel = {wheel!r}: must be a wheel index or one of "
                         f"{', '.join(self.layout.names)}")

    def _reset_counts(self, c: _Controller) -> None:
        for m in (0, 1):
            c.zero_counts[m] = self._angle_counts(c, m)
            c.offset[m] = 0
            c.frozen[m] = False
            c.last_block[m] = 0

    def reboot(self, addr: int | None = None, t_s: float | None = None) -> None:
        """Reboot one controller (or all): silent for ``boot_s``; serial timeout back to its EEPROM
        value, counters 0, motors stopped, error flags cleared."""
        with self._lock:
            t = self.world.time_s if t_s is None else t_s
            for c in self._targets(addr):
                c.timeout_100ms = c.eeprom_timeout_100ms
                self._stop_controller(c)
                self._reset_counts(c)
                c.error_bits = 0
                c.boot_until_s = t + self.boot_s
                c.reboots += 1
                self.events.append((t, "reboot", f"0x{c.addr:02x}"))
            self.parser.reset()
            self._apply_outputs()

    def set_error_flags(self, bits: int, addr: int | None = None) -> None:
        """Status-word flags (:class:`StatusFlags` or :class:`LegacyStatusFlags` per ``status_bytes``)
        reported from now on; 0 clears. A driver fault or E-stop also stops that controller's motors."""
        with self._lock:
            stopping = (StatusFlags.M1_DRIVER_FAULT | StatusFlags.M2_DRIVER_FAULT | StatusFlags.ESTOP) \
                if self.status_bytes == 4 else \
                (LegacyStatusFlags.M1_DRIVER_FAULT | LegacyStatusFlags.M2_DRIVER_FAULT | LegacyStatusFlags.ESTOP)
            for c in self._targets(addr):
                c.error_bits = int(bits)
                if int(bits) & int(stopping):
                    self._stop_controller(c)
            self._apply_outputs()

    def freeze_encoder(self, wheel, frozen: bool = True) -> None:
        """Freeze a wheel's counter (its speed then reads 0); on release it resumes from the frozen value."""
        with self._lock:
            c, m = self._wheel(wheel)
            if frozen and not c.frozen[m]:
                c.frozen_raw[m] = self._raw_count(c, m)
                c.frozen[m] = True
            elif not frozen and c.frozen[m]:
                c.frozen[m] = False
                c.offset[m] += c.frozen_raw[m] - self._raw_count(c, m)

    def set_encoder_count(self, wheel, value: int) -> None:
        """Put a wheel's counter at ``value`` (u32), e.g. just below the wrap."""
        with self._lock:
            c, m = self._wheel(wheel)
            c.offset[m] += int(value) - self._raw_count(c, m)
            c.last_block[m] = self._raw_count(c, m) // _TWO32

    def reset_encoders(self, addr: int | None = None) -> None:
        with self._lock:
            for c in self._targets(addr):
                self._reset_counts(c)

    def set_reply_fault(self, kind: str, prob: float) -> None:
        """``"ack_missing"`` / ``"ack_wrong"``: writes still act but their ack is lost / wrong;
        ``"bad_content"``: measurement replies carry wrong values under a valid CRC."""
        if kind not in self._reply_faults:
            raise ValueError(f"{self.name}: reply fault {kind!r}: must be one of {', '.join(self._reply_faults)}")
        if not (isinstance(prob, (int, float)) and 0 <= prob <= 1):
            raise ValueError(f"{self.name}: prob = {prob!r}: must be in [0, 1]")
        with self._lock:
            self._reply_faults[kind] = float(prob)

    # ------------------------------------------------------------------ steering (not on the bus)
    def set_steer(self, steer_rad) -> None:
        with self._lock:
            self._steer = np.asarray(steer_rad, dtype=np.float64).copy()
            self.rover.set_wheels(self._speed_out, self._steer)

    def __repr__(self) -> str:
        addrs = ", ".join(f"0x{a:02x}" for a in self.controllers)
        return f"VirtualRoboClawBus({self.name!r}, {addrs}, {self.firmware!r})"


class SimSteering:
    """Steering backend for :class:`drivers.roboclaw.RoboClawRover` that turns a virtual bus's SimRover
    corners directly (the OSR's corner servos are not on the RoboClaw bus)."""

    def __init__(self, bus: VirtualRoboClawBus):
        self.bus = bus

    def set_steer(self, steer_rad) -> None:
        self.bus.set_steer(steer_rad)

    def read_steer(self) -> np.ndarray:
        return self.bus.rover.model.steer_rad.copy()
