"""A virtual RNP rover controller: the reference firmware, moving a :class:`~sim.sim_rover.SimRover`.

:class:`VirtualRnpDevice` is what sits at the far end of the serial cable of an Arduino-class rover running
the RNP reference firmware (``hil/firmware/``; protocol in ``drivers/PROTOCOL.md`` §2). Its protocol core,
:class:`RnpFirmware`, is a line-by-line Python port of ``hil/firmware/rnp_core.c``: the same receiver
(0x00-delimited COBS frames, oversize frames dropped until the next delimiter), the same silent drops
counted in ``rx_errors`` (bad COBS, body < 6 or > 128 bytes, bad CRC), the same watchdog evaluation before
every valid frame, the same NACK table in the same order of checks, and byte-identical replies
(``tests/drivers/test_firmware_core.py`` feeds the compiled C core and this model the same byte streams and
compares every reply). Around the core, the device plays the part of ``rnp_firmware.ino``: it samples the
SimRover's encoders, wheel speeds, motor currents and battery, and drives its wheels with the targets the
core allows (zero unless armed with a fresh SET_WHEELS).

Reach it through a :class:`~sim.devices.faults.VirtualLink`: ``sim://NAME`` in-process
(``sim.devices.attach_sim(name, "rnp", rover="skidsteer")``) or a pseudo-terminal
(``rover sim-device --protocol rnp``).

Device behaviour modelled
-------------------------
* **Wheels and channels**: one motor channel per wheel in layout order by default; ``channels`` groups
  wheels on one channel (a 4-wheel skid-steer on a two-channel H-bridge: ``[("front_left", "rear_left"),
  ("front_right", "rear_right")]``). A channel reports the encoder of its first wheel.
* **Speeds** are encoder counts/s (``counts_per_rev`` from the profile); the SimRover's motors slew to them
  at the profile's ``max_accel_mps2``. ``max_speed_cps`` (default 5 % above the fastest wheel speed the
  profile allows) is the firmware's limit: larger targets are NACKed OUT_OF_RANGE.
* **Encoders**: ``floor(true wheel angle / radians per count)`` since boot (they over-read when the wheel
  slips), held in 32-bit counters that wrap; TELEMETRY reports ``raw - offset`` (RESET_ENCODERS).
* **Currents** (mA, signed with the direction of rotation) and **battery** (mV) come from the SimRover's
  electrical model when the capabilities say they are measured (default: both); the hardware fault bits
  OVERCURRENT (a motor at its current limit) and BATTERY_LOW (pack under ``low_voltage_v``) are derived from
  it, plus injected bits.
* **Firmware watchdog** (500 ms after boot, SET_WATCHDOG 50-10000 ms): the core's rule, exact in device
  milliseconds (``millis()`` = whole milliseconds since boot, plus ``millis0``, wrapping at 2**32). The
  motors of the SimRover are cut at the start of the world step whose span contains the deadline (early by
  less than one ``world.advance`` call, the safe side), and the core trips at its exact millisecond.
* **Application policy** (what the ``.ino`` decides): a DRIVER_FAULT cuts the motors while it lasts; the
  hardware e-stop input latches ESTOP every loop pass while it is held (so an ARM while it is held is
  acknowledged, then re-latched at once, as on the board).
* **Reboot** (a fault hook): silent for ``boot_s`` (bootloader), then the core boots: REBOOTED, watchdog
  back to 500 ms, disarmed, device seq 0, encoder counters 0, motors stopped.

Test hooks (used by :mod:`sim.devices.faults`): :meth:`reboot`, :meth:`set_error_flags` (RNP fault bits:
hardware bits, and ``RnpFault.ESTOP`` = the e-stop input held), :meth:`press_estop`,
:meth:`freeze_encoder`, :meth:`set_encoder_count`, :meth:`reset_encoders`, :meth:`set_reply_fault`
(``"ack_missing"``: the command acts but its reply is lost; ``"ack_wrong"``: the reply acknowledges the
wrong frame or type; ``"bad_content"``: TELEMETRY with a valid CRC but wrong values). Every CRC-valid
frame is logged in :attr:`requests` as ``(t_s, msg_type, seq, payload)``.
"""
from __future__ import annotations

import collections
import math
import struct
import threading

import numpy as np

from drivers.cobs import FramingError, cobs_decode, cobs_encode
from drivers.crc import crc16_xmodem
from drivers.rnp import check_channels
from drivers.rnp_codec import (HARDWARE_FAULTS, MAX_BODY, MAX_ENCODED, MAX_WHEELS, PROTOCOL_VERSION,
                               WATCHDOG_DEFAULT_MS, WATCHDOG_MAX_MS, WATCHDOG_MIN_MS, Capability, MsgType, NackCode,
                               RnpFault, encode_raw_frame)

__all__ = ["RnpFirmware", "VirtualRnpDevice", "DEFAULT_CAPABILITIES", "DEFAULT_FW_VERSION"]

_U32 = 0xFFFFFFFF
_TWO32 = 1 << 32
_HW_MASK = int(HARDWARE_FAULTS)
_F_WATCHDOG, _F_ESTOP, _F_REBOOTED = int(RnpFault.WATCHDOG), int(RnpFault.ESTOP), int(RnpFault.REBOOTED)
_INFO = struct.Struct("<HBBBBBHIIH")
_TEL_HEAD = struct.Struct("<HIHBB")

DEFAULT_CAPABILITIES = Capability.CURRENT_SENSE | Capability.BATTERY_SENSE | Capability.CLOSED_LOOP | \
    Capability.HW_ESTOP
DEFAULT_FW_VERSION = (1, 0, 0)


# ----------------------------------------------------------------------------- the firmware core
class RnpFirmware:
    """The RNP protocol core of ``hil/firmware/rnp_core.c``, in Python, byte for byte.

    Same entry points as the C core (``rnp_device_*``), time always an argument (``now_ms``, a u32
    millisecond counter that may wrap). Only valid configurations are accepted (the C core's
    ``RNP_ERR_CONFIG`` state, a device that never arms, is not modelled).

    Parameters
    ----------
    n_wheels : int
        Motor channels, 1..8.
    counts_per_rev : int
        Encoder counts per wheel revolution (u32), reported in INFO.
    max_speed_cps : int
        Largest accepted target, counts/s (1 .. 2**31 - 1).
    capabilities : int
        INFO capability bits (:class:`~drivers.rnp_codec.Capability`).
    fw_version : (int, int, int)
        Firmware version in INFO.
    now_ms : int
        Boot time on the millisecond counter.
    """

    def __init__(self, *, n_wheels: int, counts_per_rev: int, max_speed_cps: int, capabilities: int = 0,
                 fw_version=DEFAULT_FW_VERSION, now_ms: int = 0):
        for name, v, lo, hi in (("n_wheels", n_wheels, 1, MAX_WHEELS), ("counts_per_rev", counts_per_rev, 0, _U32),
                                ("max_speed_cps", max_speed_cps, 1, 0x7FFFFFFF),
                                ("capabilities", capabilities, 0, 0xFFFF)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not lo <= int(v) <= hi:
                raise ValueError(f"RNP firmware: {name} = {v!r}: must be an int in {lo}..{hi}")
        fw = tuple(int(x) for x in fw_version)
        if len(fw) != 3 or not all(0 <= x <= 255 for x in fw):
            raise ValueError(f"RNP firmware: fw_version = {fw_version!r}: must be three ints 0..255")
        self.n = int(n_wheels)
        self.counts_per_rev = int(counts_per_rev)
        self.max_speed_cps = int(max_speed_cps)
        self.capabilities = int(capabilities)
        self.fw_version = fw
        self.boot(now_ms)

    def boot(self, now_ms: int) -> None:
        """Power-on state (``rnp_device_init``): disarmed, REBOOTED, watchdog 500 ms, seq 0, counters 0."""
        n = self.n
        self.rx_buf = bytearray()
        self.rx_discarding = False
        self.rx_errors = 0
        self.tx_seq = 0
        self.flags = _F_REBOOTED
        self.hw_faults = 0
        self.armed = False
        self.estop_latched = False
        self.fresh = False
        self.watchdog_ms = WATCHDOG_DEFAULT_MS
        self.last_feed_ms = int(now_ms) & _U32
        self.target_cps = [0] * n
        self.raw_counts = [0] * n
        self.count_offset = [0] * n
        self.speed_cps = [0] * n
        self.current_ma = [0] * n
        self.battery_mv = 0

    # ------------------------------------------------------------------ application side
    def set_sensors(self, counts, speeds_cps, currents_ma, battery_mv: int, hw_faults: int) -> None:
        """Latest sensor values (``rnp_device_set_sensors``); ``None`` leaves a group unchanged."""
        for i in range(self.n):
            if counts is not None:
                self.raw_counts[i] = int(counts[i]) & _U32
            if speeds_cps is not None:
                self.speed_cps[i] = int(speeds_cps[i])
            if currents_ma is not None:
                self.current_ma[i] = int(currents_ma[i])
        self.battery_mv = int(battery_mv) & 0xFFFF
        self.hw_faults = int(hw_faults) & _HW_MASK

    def tick(self, now_ms: int) -> bool:
        """The watchdog (``rnp_device_tick``); True if it tripped now."""
        if self.armed and not self.flags & _F_WATCHDOG and \
                ((int(now_ms) - self.last_feed_ms) & _U32) >= self.watchdog_ms:
            self._stop_motion()
            self.flags |= _F_WATCHDOG
            return True
        return False

    def estop(self) -> None:
        """The hardware e-stop input (``rnp_device_estop``): same as an ESTOP message."""
        self._stop_motion()
        self.armed = False
        self.estop_latched = True
        self.flags |= _F_ESTOP

    def targets(self) -> tuple[bool, list[int]]:
        """``(moving, per-channel targets)``; all zero unless armed with a fresh SET_WHEELS."""
        moving = self.armed and self.fresh
        return moving, (list(self.target_cps) if moving else [0] * self.n)

    def faults(self) -> int:
        return self.flags | self.hw_faults

    def state(self) -> int:
        return (1 | (2 if self.fresh else 0)) if self.armed else 0

    def deadline_ms(self) -> int | None:
        """Counter value at which the watchdog trips (None when it cannot trip: disarmed or tripped)."""
        if not self.armed or self.flags & _F_WATCHDOG:
            return None
        return (self.last_feed_ms + self.watchdog_ms) & _U32

    def _stop_motion(self) -> None:
        self.target_cps = [0] * self.n
        self.fresh = False

    # ------------------------------------------------------------------ wire side
    def rx(self, data: bytes, now_ms: int) -> bytes:
        """Received bytes (any chunking) handled at ``now_ms``; the replies, concatenated (``rnp_device_rx``)."""
        return b"".join(r[0] for r in self.rx_frames(data, now_ms))

    def rx_frames(self, data: bytes, now_ms: int) -> list[tuple[bytes, int, int, bytes]]:
        """Like :meth:`rx`, one entry per CRC-valid frame: ``(reply wire bytes, request type, request seq,
        request payload)``."""
        out = []
        now_ms = int(now_ms) & _U32
        buf = self.rx_buf
        for b in bytes(data):
            if b == 0:
                if self.rx_discarding:
                    self.rx_discarding = False
                elif buf:
                    r = self._handle_frame(bytes(buf), now_ms)
                    if r is not None:
                        out.append(r)
                buf.clear()
            elif not self.rx_discarding:
                if len(buf) < MAX_ENCODED:
                    buf.append(b)
                else:                                   # oversize: drop until the next delimiter
                    self.rx_discarding = True
                    buf.clear()
                    self.rx_errors = (self.rx_errors + 1) & 0xFFFF
        return out

    def _handle_frame(self, enc: bytes, now_ms: int):
        try:
            body = cobs_decode(enc)
        except FramingError:
            body = None
        if body is None or not 6 <= len(body) <= MAX_BODY or \
                crc16_xmodem(body[:-2]) != (body[-2] | (body[-1] << 8)):
            self.rx_errors = (self.rx_errors + 1) & 0xFFFF
            return None
        self.tick(now_ms)                               # a late frame cannot hide an elapsed timeout
        version, t, seq = body[0], body[1], body[2] | (body[3] << 8)
        reply = self._dispatch(version, t, seq, body[4:-2], now_ms)
        return reply, t, seq, body[4:-2]

    def _send(self, t: int, payload: bytes) -> bytes:
        w = encode_raw_frame(t, self.tx_seq, payload)
        self.tx_seq = (self.tx_seq + 1) & 0xFFFF
        return w

    def _ack(self, seq, t):
        return self._send(MsgType.ACK, struct.pack("<HB", seq, t))

    def _nack(self, seq, t, code, detail):
        return self._send(MsgType.NACK, struct.pack("<HBBB", seq, t, int(code), detail & 0xFF))

    def _info(self, seq):
        return self._send(MsgType.INFO, _INFO.pack(seq, PROTOCOL_VERSION, *self.fw_version, self.n, self.capabilities,
                                                   self.counts_per_rev, self.max_speed_cps, self.watchdog_ms))

    def _telemetry(self, seq, now_ms):
        n = self.n
        p = _TEL_HEAD.pack(seq, now_ms, self.faults(), self.state(), n)
        p += struct.pack(f"<{n}I", *((r - o) & _U32 for r, o in zip(self.raw_counts, self.count_offset)))
        p += struct.pack(f"<{n}I", *(s & _U32 for s in self.speed_cps))
        p += struct.pack(f"<{n}H", *(c & 0xFFFF for c in self.current_ma))
        p += struct.pack("<HH", self.battery_mv, self.rx_errors)
        return self._send(MsgType.TELEMETRY, p)

    def _dispatch(self, version: int, t: int, seq: int, p: bytes, now_ms: int) -> bytes:
        """One CRC-valid frame; the order of checks is the one of PROTOCOL.md §2.4 and rnp_core.c."""
        n = len(p)
        if version != PROTOCOL_VERSION:
            return self._nack(seq, t, NackCode.BAD_VERSION, PROTOCOL_VERSION)
        if t == MsgType.HELLO:
            if n != 1:
                return self._nack(seq, t, NackCode.BAD_LENGTH, 1)
            if p[0] != PROTOCOL_VERSION:
                return self._nack(seq, t, NackCode.BAD_VERSION, PROTOCOL_VERSION)
            self._stop_motion()
            self.armed = False
            self.flags &= ~_F_REBOOTED
            return self._info(seq)
        if t == MsgType.SET_WHEELS:
            nw = self.n
            if n < 1 or n != 1 + 4 * p[0]:
                return self._nack(seq, t, NackCode.BAD_LENGTH, 1 + 4 * nw)
            if p[0] != nw:
                return self._nack(seq, t, NackCode.WHEEL_COUNT, nw)
            v = struct.unpack_from(f"<{nw}i", p, 1)
            for i, s in enumerate(v):
                if s > self.max_speed_cps or s < -self.max_speed_cps:
                    return self._nack(seq, t, NackCode.OUT_OF_RANGE, i)
            if self.estop_latched:
                return self._nack(seq, t, NackCode.ESTOPPED, 0)
            if not self.armed:
                return self._nack(seq, t, NackCode.NOT_ARMED, 0)
            self.target_cps = list(v)
            self.fresh = True
            self.flags &= ~_F_WATCHDOG
            self.last_feed_ms = now_ms
            return self._telemetry(seq, now_ms)
        if t == MsgType.SET_WATCHDOG:
            if n != 2:
                return self._nack(seq, t, NackCode.BAD_LENGTH, 2)
            ms = p[0] | (p[1] << 8)
            if not WATCHDOG_MIN_MS <= ms <= WATCHDOG_MAX_MS:
                return self._nack(seq, t, NackCode.OUT_OF_RANGE, 0)
            self.watchdog_ms = ms
            return self._ack(seq, t)
        if t == MsgType.HEARTBEAT:
            if n != 0:
                return self._nack(seq, t, NackCode.BAD_LENGTH, 0)
            self.last_feed_ms = now_ms
            return self._telemetry(seq, now_ms)
        if t in (MsgType.ESTOP, MsgType.ARM, MsgType.DISARM, MsgType.RESET_ENCODERS):
            if n != 0:
                return self._nack(seq, t, NackCode.BAD_LENGTH, 0)
            if t == MsgType.ESTOP:
                self.estop()
            elif t == MsgType.ARM:
                if self.flags & _F_REBOOTED:
                    return self._nack(seq, t, NackCode.NEED_HELLO, 0)
                self._stop_motion()
                self.estop_latched = False
                self.armed = True
                self.flags &= ~(_F_ESTOP | _F_WATCHDOG)
                self.last_feed_ms = now_ms
            elif t == MsgType.DISARM:
                self._stop_motion()
                self.armed = False
            else:
                self.count_offset = list(self.raw_counts)
            return self._ack(seq, t)
        return self._nack(seq, t, NackCode.UNKNOWN_TYPE, 0)


# ----------------------------------------------------------------------------- the device around it
class VirtualRnpDevice:
    """An Arduino-class rover controller running the RNP reference firmware, driving a SimRover.

    Parameters
    ----------
    rover : sim.SimRover
        The rover whose wheels the motors turn (opened and armed here if needed; its own
        ``command_timeout_s`` is switched off — the firmware watchdog replaces it).
    channels : sequence, optional
        Motor channels in device order: each a wheel name (or index) or a tuple of wheels on one
        channel (see :func:`drivers.rnp.check_channels`); default one channel per wheel, layout order.
    counts_per_rev : int, optional
        Encoder counts per wheel revolution (default the profile's).
    max_speed_cps : int, optional
        Firmware speed limit (default 5 % above the profile's fastest wheel speed).
    capabilities : int
        INFO capability bits (default current + battery sense, closed loop, hardware e-stop).
    fw_version : (int, int, int)
    boot_s : float
        Silent time after a reboot (bootloader).
    millis0 : int
        ``millis()`` at power-on (e.g. ``2**32 - 1000`` to cross the counter wrap during a test).
    rng : numpy Generator, optional
        For reply faults (default ``world.rng(f"{name}.faults")``).
    name : str
    """

    def __init__(self, rover, *, channels=None, counts_per_rev: int | None = None, max_speed_cps: int | None = None,
                 capabilities: int = int(DEFAULT_CAPABILITIES), fw_version=DEFAULT_FW_VERSION, boot_s: float = 0.25,
                 millis0: int = 0, rng: np.random.Generator | None = None, name: str = "rnp"):
        from sim.sim_rover import SimRover

        if not isinstance(rover, SimRover):
            raise TypeError(f"rover must be a sim.SimRover, got {type(rover).__name__}")
        if not (isinstance(boot_s, (int, float)) and 0 <= boot_s <= 10):
            raise ValueError(f"{name}: boot_s = {boot_s!r}: must be within [0, 10] s")
        if isinstance(millis0, bool) or not isinstance(millis0, (int, np.integer)) or not 0 <= millis0 <= _U32:
            raise ValueError(f"{name}: millis0 = {millis0!r}: must be an int in 0..2**32-1")
        self.rover = rover
        self.world = rover.world
        self.layout = rover.layout
        self.name = name
        self.channels = check_channels(channels, self.layout, name)
        n = len(self.channels)
        cpr = self.layout.counts_per_rev if counts_per_rev is None else counts_per_rev
        if isinstance(cpr, bool) or not isinstance(cpr, (int, np.integer)) or not 1 <= cpr <= _U32:
            raise ValueError(f"{name}: counts_per_rev = {cpr!r}: must be an int in 1..2**32-1")
        self._cps_per_radps = int(cpr) / (2.0 * math.pi)
        if max_speed_cps is None:
            max_speed_cps = int(math.ceil(1.05 * self.layout.max_wheel_speed_radps * self._cps_per_radps))
        self.core = RnpFirmware(n_wheels=n, counts_per_rev=cpr, max_speed_cps=max_speed_cps,
                                capabilities=capabilities, fw_version=fw_version, now_ms=millis0)
        self._rad_per_count = 2.0 * math.pi / self.core.counts_per_rev
        self.boot_s = float(boot_s)
        self.millis0 = int(millis0)
        self.rng = rng if rng is not None else self.world.rng(f"{name}.faults")
        self._lock = threading.RLock()
        self.lock = self._lock               # held by pacers while the world steps
        self.requests: collections.deque = collections.deque(maxlen=50000)
        self.events: list = []
        self.last_sensors = None
        self._reply_faults = {"ack_missing": 0.0, "ack_wrong": 0.0, "bad_content": 0.0}
        self._error_bits = 0
        self._estop_input = False
        self._boot_t = self.world.time_s
        self._last_ms = 0
        self._silent_until = -math.inf
        self._booting = False
        # encoders: per channel, counter = floor(angle / rad_per_count) - zero + offset (frozen: held)
        self._enc_zero = [0] * n
        self._enc_offset = [0] * n
        self._enc_frozen = [False] * n
        self._enc_frozen_raw = [0] * n
        self._out_radps = np.zeros(self.layout.n_wheels)
        self._tel = None
        self._tel_step = -1
        rover.command_timeout_s = None
        self.world.detach(rover)
        self.world.attach(self)                          # the firmware runs before its rover each step
        if rover.is_open:
            self.world.attach(rover)
        else:
            rover.open()
        if not rover.armed:
            rover.arm()
        self._zero_encoders()

    # ------------------------------------------------------------------ clocks and sensors
    def millis(self, t_s: float) -> int:
        """The device's ``millis()`` at simulated time ``t_s`` (whole ms since boot + millis0, u32)."""
        return (self.millis0 + int(math.floor((t_s - self._boot_t) * 1000.0 + 1e-6))) & _U32

    def _now_ms(self, t_s: float) -> int:
        """``millis()`` for the firmware, never going backwards: requests (stamped on the link's clock) and
        world steps (on the world's) may reach the board a few ms out of order in real-time serving."""
        ms = int(math.floor((t_s - self._boot_t) * 1000.0 + 1e-6))
        if ms < self._last_ms:
            ms = self._last_ms
        self._last_ms = ms
        return (self.millis0 + ms) & _U32

    def _t_of_ms(self, ms: int) -> float:
        return self._boot_t + (((ms - self.millis0) & _U32) / 1000.0)

    def _angle_counts(self, ch: int) -> int:
        w = self.channels[ch][0]
        return int(math.floor(self.rover.model.wheel_angle_rad[w] / self._rad_per_count))

    def _raw_count(self, ch: int) -> int:
        if self._enc_frozen[ch]:
            return self._enc_frozen_raw[ch]
        return self._angle_counts(ch) - self._enc_zero[ch] + self._enc_offset[ch]

    def _zero_encoders(self) -> None:
        for ch in range(len(self.channels)):
            self._enc_zero[ch] = self._angle_counts(ch)
            self._enc_offset[ch] = 0
            self._enc_frozen[ch] = False

    def _rover_tel(self):
        if self._tel is None or self._tel_step != self.world.steps:
            self._tel = self.rover.read_telemetry()
            self._tel_step = self.world.steps
        return self._tel

    def _sample(self):
        """What the firmware's sensors read now: counts (s32), speeds (counts/s), currents (mA),
        battery (mV), hardware fault bits."""
        tel = self._rover_tel()
        caps = self.core.capabilities
        p = self.rover.profile.power
        counts, speeds, currents = [], [], []
        over = False
        for ch, wheels in enumerate(self.channels):
            w = wheels[0]
            raw = self._raw_count(ch) & _U32
            counts.append(raw - _TWO32 if raw & 0x80000000 else raw)
            v = 0 if self._enc_frozen[ch] else int(round(self.rover.model.wheel_speed_radps[w] * self._cps_per_radps))
            speeds.append(max(-0x80000000, min(0x7FFFFFFF, v)))
            amps = float(sum(tel.motor_current_a[i] for i in wheels))
            over |= any(tel.motor_current_a[i] >= 0.99 * p.motor_current_limit_a for i in wheels)
            ma = int(round(1000.0 * amps)) * (-1 if self.rover.model.wheel_speed_radps[w] < 0 else 1)
            currents.append(max(-32768, min(32767, ma)) if caps & Capability.CURRENT_SENSE else 0)
        v = tel.battery.voltage_v if tel.battery is not None else 0.0
        mv = max(0, min(0xFFFF, int(round(v * 1000.0)))) if caps & Capability.BATTERY_SENSE else 0
        hw = self._error_bits & _HW_MASK
        if over and caps & Capability.CURRENT_SENSE:
            hw |= int(RnpFault.OVERCURRENT)
        if caps & Capability.BATTERY_SENSE and v < p.low_voltage_v:
            hw |= int(RnpFault.BATTERY_LOW)
        return counts, speeds, currents, mv, hw

    def _application_pass(self, now_ms: int) -> None:
        """The .ino's loop around the core: e-stop input, watchdog."""
        if self._estop_input:
            if not self.core.estop_latched or self.core.armed:
                self.events.append((self._t_of_ms(now_ms), "estop", "hardware e-stop input"))
            self.core.estop()
        tripped_deadline = self.core.deadline_ms()
        if self.core.tick(now_ms):
            self.events.append((self._t_of_ms(tripped_deadline), "watchdog",
                                f"no SET_WHEELS/HEARTBEAT for {self.core.watchdog_ms} ms: motors stopped"))

    def _apply_outputs(self, t_end: float | None = None) -> None:
        moving, tgt = self.core.targets()
        if moving and t_end is not None:
            dl = self.core.deadline_ms()
            if dl is not None and self._t_of_ms(dl) < t_end - 1e-9:
                moving = False                           # the watchdog trips inside this span: cut it now
        if self._error_bits & int(RnpFault.DRIVER_FAULT) or self._booting:
            moving = False
        out = np.zeros(self.layout.n_wheels)
        if moving:
            for ch, wheels in enumerate(self.channels):
                for w in wheels:
                    out[w] = tgt[ch] / self._cps_per_radps
        lim = self.layout.max_wheel_speed_radps
        out = np.clip(out, -lim, lim)
        if not np.array_equal(out, self._out_radps):
            self._out_radps = out
            self.rover.set_wheels(out, np.zeros(self.layout.n_wheels))

    # ------------------------------------------------------------------ world body
    def advance(self, n_steps: int, dt_s: float) -> None:
        """Called by the world before the rover: boot, e-stop input, watchdog, then the motor outputs."""
        with self._lock:
            t0 = self.world.time_s
            self._finish_boot(t0)
            if not self._booting:
                self._application_pass(self._now_ms(t0))
            self._apply_outputs(t0 + n_steps * dt_s)

    def _finish_boot(self, t: float) -> None:
        if self._booting and t >= self._silent_until:
            self._booting = False
            self._boot_t = self._silent_until
            self._last_ms = 0
            self.core.boot(self.millis(self._boot_t))
            self._zero_encoders()
            self.events.append((self._boot_t, "booted", "firmware up: REBOOTED, watchdog 500 ms"))

    # ------------------------------------------------------------------ the wire
    def receive(self, data: bytes, t_s: float) -> list[bytes]:
        """Bytes that reached the board at ``t_s``; returns the reply frames, in order."""
        with self._lock:
            self._finish_boot(t_s)
            if self._booting:
                return []                                # bootloader: the bytes are lost
            now = self._now_ms(t_s)
            sensors = self._sample()
            self.core.set_sensors(*sensors)
            self.last_sensors = sensors
            replies = []
            for reply, t, seq, payload in self.core.rx_frames(data, now):
                self.requests.append((t_s, t, seq, payload))
                reply = self._reply_fault(t, seq, reply)
                if reply:
                    replies.append(reply)
            self._application_pass(now)
            self._apply_outputs()
            return replies

    def _reply_fault(self, t: int, seq: int, reply: bytes) -> bytes:
        f = self._reply_faults
        if not (f["ack_missing"] or f["ack_wrong"] or f["bad_content"]):
            return reply
        rng = self.rng
        if f["ack_missing"] and rng.random() < f["ack_missing"]:
            return b""
        body = bytearray(cobs_decode(reply[:-1]))
        rtype = body[1]
        if f["ack_wrong"] and rng.random() < f["ack_wrong"]:
            if rtype == MsgType.ACK and rng.random() < 0.5:
                body[6] ^= int(rng.integers(1, 256))                       # acknowledges another type
            else:
                a = (body[4] | body[5] << 8) ^ int(rng.integers(1, 0x10000))    # another frame's ack_seq
                body[4:6] = a.to_bytes(2, "little")
            return _reframe(body)
        if f["bad_content"] and rtype == MsgType.TELEMETRY and rng.random() < f["bad_content"]:
            n = body[13]
            k = int(rng.integers(0, 5))
            if k == 0:                                                    # wheel count that does not fit
                body[13] = (n % MAX_WHEELS) + 1 if n > 1 else 2
            elif k == 1:                                                  # absurd speed
                body[14 + 4 * n:18 + 4 * n] = struct.pack("<i", int(rng.choice([-1, 1])) << 30)
            elif k == 2:                                                  # encoder jump
                body[14:18] = struct.pack("<I", int(rng.integers(0, _TWO32)))
            elif k == 3:                                                  # battery nonsense
                body[14 + 10 * n:16 + 10 * n] = struct.pack("<H", int(rng.choice([0, 0xFFFF])))
            else:                                                         # undefined state bits
                body[12] = 0xFC
            return _reframe(body)
        return reply

    # ------------------------------------------------------------------ state for tests
    def targets_cps(self) -> np.ndarray:
        """Per-channel speed targets the firmware holds now (0 unless moving is allowed), counts/s."""
        with self._lock:
            return np.array(self.core.targets()[1], dtype=np.int64)

    def targets_radps(self) -> np.ndarray:
        """Per-wheel speed targets the firmware holds now, rad/s (layout order)."""
        with self._lock:
            out = np.zeros(self.layout.n_wheels)
            for ch, wheels in enumerate(self.channels):
                for w in wheels:
                    out[w] = self.core.targets()[1][ch] / self._cps_per_radps
            return out

    def outputs_radps(self) -> np.ndarray:
        """Per-wheel speed the motors are driven at now (rad/s)."""
        return self._out_radps.copy()

    @property
    def moving(self) -> bool:
        return bool(self._out_radps.any())

    @property
    def booting(self) -> bool:
        return self._booting

    @property
    def estop_input(self) -> bool:
        """The hardware e-stop input is held."""
        return self._estop_input

    def count_requests(self, msg_type: int, since_s: float = -math.inf) -> int:
        return sum(1 for t, mt, _, _ in list(self.requests) if mt == int(msg_type) and t >= since_s)

    # ------------------------------------------------------------------ fault hooks
    def _channel(self, wheel) -> int:
        names = self.layout.names
        i = wheel if isinstance(wheel, (int, np.integer)) else (names.index(wheel) if wheel in names else -1)
        for ch, wheels in enumerate(self.channels):
            if i in wheels:
                return ch
        raise ValueError(f"{self.name}: wheel = {wheel!r}: must be a wheel index or one of {', '.join(names)}")

    def reboot(self, addr=None, t_s: float | None = None) -> None:
        """Power-cycle the board: silent for ``boot_s``, then the firmware boots (REBOOTED, watchdog 500 ms,
        seq 0, counters 0). ``addr`` is ignored (one board)."""
        with self._lock:
            t = self.world.time_s if t_s is None else float(t_s)
            self._booting = True
            self._silent_until = t + self.boot_s
            self.core.boot(self.millis(t))                  # RAM gone at once: disarmed, motors off
            self.events.append((t, "reboot", f"silent for {self.boot_s:g} s"))
            self._apply_outputs()
            if self.boot_s == 0:
                self._finish_boot(t)

    def set_error_flags(self, bits: int, addr=None) -> None:
        """RNP fault bits reported from now on (0 clears): the hardware bits (OVERCURRENT, BATTERY_LOW,
        DRIVER_FAULT — which also cuts the motors —, ENCODER_FAULT, OVERTEMP), and ``RnpFault.ESTOP``,
        meaning the hardware e-stop input is held."""
        with self._lock:
            bits = int(bits)
            unknown = bits & ~(_HW_MASK | _F_ESTOP)
            if unknown:
                raise ValueError(f"{self.name}: error flag bits 0x{unknown:04x} are not RNP hardware or e-stop bits")
            self._error_bits = bits & _HW_MASK
            self._estop_input = bool(bits & _F_ESTOP)
            if self._estop_input and not self._booting:
                self._application_pass(self._now_ms(self.world.time_s))
            self._apply_outputs()

    def press_estop(self, held: bool = True) -> None:
        """Press (and hold) or release the hardware e-stop input; the latch stays until ARM."""
        self.set_error_flags((self._error_bits | _F_ESTOP) if held else self._error_bits)

    def freeze_encoder(self, wheel, frozen: bool = True) -> None:
        """Freeze a channel's counter (its speed then reads 0); on release it resumes from the frozen value."""
        with self._lock:
            ch = self._channel(wheel)
            if frozen and not self._enc_frozen[ch]:
                self._enc_frozen_raw[ch] = self._raw_count(ch)
                self._enc_frozen[ch] = True
            elif not frozen and self._enc_frozen[ch]:
                self._enc_frozen[ch] = False
                self._enc_offset[ch] += self._enc_frozen_raw[ch] - self._raw_count(ch)

    def set_encoder_count(self, wheel, value: int) -> None:
        """Put a channel's raw counter at ``value`` (u32), e.g. just below the wrap."""
        with self._lock:
            ch = self._channel(wheel)
            if self._enc_frozen[ch]:
                self._enc_frozen_raw[ch] = int(value)
            else:
                self._enc_offset[ch] += int(value) - self._raw_count(ch)

    def reset_encoders(self, addr=None) -> None:
        """The raw counters jump to 0 (an encoder glitch, or the counter ISR state lost)."""
        with self._lock:
            self._zero_encoders()

    def set_reply_fault(self, kind: str, prob: float) -> None:
        """``"ack_missing"``: a command acts but its reply is lost; ``"ack_wrong"``: the reply carries
        another ``ack_seq`` (or an ACK another type); ``"bad_content"``: TELEMETRY with a valid CRC and
        wrong values (wheel count, speed, encoder, battery, state bits)."""
        if kind not in self._reply_faults:
            raise ValueError(f"{self.name}: reply fault {kind!r}: must be one of {', '.join(self._reply_faults)}")
        if not (isinstance(prob, (int, float)) and 0 <= prob <= 1):
            raise ValueError(f"{self.name}: prob = {prob!r}: must be in [0, 1]")
        with self._lock:
            self._reply_faults[kind] = float(prob)

    def __repr__(self) -> str:
        c = self.core
        return (f"VirtualRnpDevice({self.name!r}, {c.n} channels, {c.counts_per_rev} counts/rev, "
                f"max {c.max_speed_cps} counts/s, fw {'.'.join(map(str, c.fw_version))})")


def _reframe(body: bytearray) -> bytes:
    """Re-checksum and re-frame a modified reply body (a valid frame with wrong content)."""
    b = bytes(body[:-2])
    return cobs_encode(b + crc16_xmodem(b).to_bytes(2, "little")) + b"\x00"
