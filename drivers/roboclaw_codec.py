"""RoboClaw packet serial: encode and decode the bytes, both sides of the wire.

Pure code over bytes: nothing here opens a port, starts a thread or reads a clock (the device
parser takes the arrival time of each chunk as an argument). The byte layouts are those of the
BasicMicro RoboClaw user manual ("Packet Serial" and the command pages); ``drivers/PROTOCOL.md``
has the table and the timing rules a driver must follow.

Wire format
-----------
* Write: ``addr cmd data… crc_hi crc_lo`` → the controller answers the single byte ``0xFF``;
  it answers **nothing** to a bad CRC or an incomplete packet.
* Read: ``addr cmd`` (no CRC) → ``data… crc_hi crc_lo``, the CRC computed over
  ``addr cmd data…`` (the sent address and command plus the received data).
* CRC-16/XMODEM (:mod:`drivers.crc`), multi-byte values big-endian, addresses 0x80-0x87.
* A gap of more than 10 ms between the bytes of one packet makes the controller discard it.

Commands (:class:`Cmd`; request data → reply data, sizes in bytes)
-----------------------------------------------------------------
=====  ====================  ====================================  =============================
cmd    name                  request data                          reply (before the CRC)
=====  ====================  ====================================  =============================
14     SET_SERIAL_TIMEOUT    u8 timeout (×100 ms, 0 = off)         ack
15     READ_SERIAL_TIMEOUT   —                                     u8 timeout (×100 ms)
16/17  READ_ENC_M1/M2        —                                     u32 count, u8 status
18/19  READ_SPEED_M1/M2      —                                     s32 pulses/s, u8 direction
20     RESET_ENCODERS        —                                     ack
21     READ_VERSION          —                                     ASCII text, LF, NUL (≤ 48)
24/25  READ_MAIN/LOGIC_BATT  —                                     u16 (0.1 V)
32/33  DUTY_M1/M2            s16 duty (±32767 = ±100 %)            ack
34     DUTY_M1M2             s16 duty M1, s16 duty M2              ack
35/36  SPEED_M1/M2           s32 pulses/s                          ack
37     SPEED_M1M2            s32 M1, s32 M2                        ack
38/39  SPEED_ACCEL_M1/M2     u32 accel (pulses/s²), s32 speed      ack
40     SPEED_ACCEL_M1M2      u32 accel, s32 M1, s32 M2             ack
49     READ_CURRENTS         —                                     s16 M1, s16 M2 (10 mA)
78     READ_ENCODERS         —                                     u32 M1, u32 M2
82     READ_TEMPERATURE      —                                     u16 (0.1 °C)
90     READ_STATUS           —                                     u32 (newer firmware) or u16
94     WRITE_SETTINGS        u32 key 0xE22EAB7A                    ack
=====  ====================  ====================================  =============================

Encoder status byte (commands 16/17, :class:`EncoderStatus`): bit 0 underflow (cleared after
reading), bit 1 direction (1 = backwards), bit 2 overflow (cleared after reading), bits 3-7
reserved. Speed direction byte (18/19): 0 forward, 1 backwards.

Status word (command 90) layouts differ between firmware generations; read the version
(command 21) first. :class:`StatusFlags` is the 32-bit layout of current RoboClaw/MCP
firmware (4-byte reply), :class:`LegacyStatusFlags` the 16-bit layout of older firmware
(2-byte reply); every reply parser and encoder takes ``status_bytes=4`` or ``2``.

Command 94: the manual page shows ``[Address, 94]`` only, while BasicMicro's own client
libraries send a 4-byte key ``0xE22EAB7A`` and the CRC; we follow the vendor library (the
virtual device must understand it), so the request is ``addr 94 e2 2e ab 7a crc crc``.

Public API
----------
Host side:

* :func:`encode_request` ``(addr, cmd, *args) -> bytes`` — any command, values validated
  (addresses 0x80-0x87, u8/s16/s32/u32 ranges, duty ±32767) with errors naming the address,
  command, field, value and rule; reads encode as ``addr cmd``. Named shortcuts:
  :func:`encode_duty_m1` … :func:`encode_write_settings`, :func:`encode_set_serial_timeout`
  (seconds).
* :func:`expected_reply_len` — bytes to read after a request (1 for a write's ack, ``None``
  for the variable-length version string).
* :class:`ReplyParser` — incremental reply decoder for one read (``feed(bytes)`` returns the
  typed value once complete, raises :class:`~drivers.crc.ChecksumError` /
  :class:`MalformedReply`); :func:`decode_reply` for a complete buffer.
* :func:`check_ack` — accepts exactly one ``0xFF`` byte and nothing else (:class:`AckError`).

Device side (for a virtual controller):

* :class:`RequestParser` — ``feed(data, t_s) -> list[Request]``: knows each request's length,
  drops a write with a bad CRC (counts it; the device must answer nothing), discards a partial
  packet after a gap > ``gap_s`` (10 ms), skips bytes that cannot start a packet and, after a
  bad CRC, rescans from the byte after the rejected address (resynchronisation).
* :func:`encode_reply` — reply bytes with CRC for each read; :data:`ACK_BYTES` for writes.

Reply types are named tuples: :class:`SerialTimeout`, :class:`EncoderCount`,
:class:`EncoderSpeed`, :class:`FirmwareVersion`, :class:`Voltage`, :class:`Currents`,
:class:`EncoderCounts`, :class:`Temperature`, :class:`Status`.

Read requests carry no CRC, so a corrupted read request can make a real controller answer a
different read (or a different address answer); the host catches this because the reply CRC
covers the address and command *it sent*. Likewise a garbage byte pair ``0x80-0x87, read cmd``
is a valid read request to any parser, including :class:`RequestParser`.
"""
from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field
from typing import NamedTuple

from .crc import ChecksumError, crc16_xmodem
from ._checks import as_int as _int
from .errors import AckError, CommandOutOfRange, MalformedReply, ProtocolError

__all__ = [
    "Cmd", "CommandSpec", "Field", "COMMANDS", "ADDRESSES", "ACK", "ACK_BYTES", "GAP_S", "MAX_VERSION_LEN",
    "WRITE_SETTINGS_KEY", "EncoderStatus", "StatusFlags", "LegacyStatusFlags",
    "SerialTimeout", "EncoderCount", "EncoderSpeed", "FirmwareVersion", "Voltage", "Currents", "EncoderCounts",
    "Temperature", "Status", "Request", "RequestParser", "ReplyParser", "ParserStats",
    "AckError", "MalformedReply",
    "encode_request", "encode_reply", "decode_reply", "check_ack", "expected_reply_len", "request_len",
    "encode_set_serial_timeout", "encode_reset_encoders", "encode_duty_m1", "encode_duty_m2", "encode_duty_m1m2",
    "encode_speed_m1", "encode_speed_m2", "encode_speed_m1m2", "encode_speed_accel_m1", "encode_speed_accel_m2",
    "encode_speed_accel_m1m2", "encode_write_settings",
]

#: Valid packet-serial addresses (packet modes 7-14).
ADDRESSES = range(0x80, 0x88)
#: The one acknowledgement byte a write earns.
ACK = 0xFF
ACK_BYTES = bytes([ACK])
#: Inter-byte gap after which the controller discards a partial packet.
GAP_S = 0.010
#: Longest version reply (text + LF + NUL), from the manual.
MAX_VERSION_LEN = 48
#: Key BasicMicro's client libraries send with command 94 (write settings to EEPROM).
WRITE_SETTINGS_KEY = 0xE22EAB7A


class Cmd(enum.IntEnum):
    """RoboClaw packet-serial command numbers used by the rover drivers."""
    SET_SERIAL_TIMEOUT = 14
    READ_SERIAL_TIMEOUT = 15
    READ_ENC_M1 = 16
    READ_ENC_M2 = 17
    READ_SPEED_M1 = 18
    READ_SPEED_M2 = 19
    RESET_ENCODERS = 20
    READ_VERSION = 21
    READ_MAIN_BATTERY = 24
    READ_LOGIC_BATTERY = 25
    DUTY_M1 = 32
    DUTY_M2 = 33
    DUTY_M1M2 = 34
    SPEED_M1 = 35
    SPEED_M2 = 36
    SPEED_M1M2 = 37
    SPEED_ACCEL_M1 = 38
    SPEED_ACCEL_M2 = 39
    SPEED_ACCEL_M1M2 = 40
    READ_CURRENTS = 49
    READ_ENCODERS = 78
    READ_TEMPERATURE = 82
    READ_STATUS = 90
    WRITE_SETTINGS = 94


class EncoderStatus(enum.IntFlag):
    """Status byte of commands 16/17."""
    UNDERFLOW = 0x01
    BACKWARD = 0x02
    OVERFLOW = 0x04


class StatusFlags(enum.IntFlag):
    """Command 90, 32-bit layout (current firmware, 4-byte reply)."""
    NORMAL = 0
    ESTOP = 0x000001
    TEMPERATURE_ERROR = 0x000002
    TEMPERATURE2_ERROR = 0x000004
    MAIN_VOLTAGE_HIGH_ERROR = 0x000008
    LOGIC_VOLTAGE_HIGH_ERROR = 0x000010
    LOGIC_VOLTAGE_LOW_ERROR = 0x000020
    M1_DRIVER_FAULT = 0x000040
    M2_DRIVER_FAULT = 0x000080
    M1_SPEED_ERROR = 0x000100
    M2_SPEED_ERROR = 0x000200
    M1_POSITION_ERROR = 0x000400
    M2_POSITION_ERROR = 0x000800
    M1_CURRENT_ERROR = 0x001000
    M2_CURRENT_ERROR = 0x002000
    M1_OVERCURRENT_WARNING = 0x010000
    M2_OVERCURRENT_WARNING = 0x020000
    MAIN_VOLTAGE_HIGH_WARNING = 0x040000
    MAIN_VOLTAGE_LOW_WARNING = 0x080000
    TEMPERATURE_WARNING = 0x100000
    TEMPERATURE2_WARNING = 0x200000
    S4_SIGNAL_TRIGGERED = 0x400000
    S5_SIGNAL_TRIGGERED = 0x800000
    SPEED_ERROR_LIMIT_WARNING = 0x01000000
    POSITION_ERROR_LIMIT_WARNING = 0x02000000


class LegacyStatusFlags(enum.IntFlag):
    """Command 90, 16-bit layout (older firmware, 2-byte reply)."""
    NORMAL = 0
    M1_OVERCURRENT_WARNING = 0x0001
    M2_OVERCURRENT_WARNING = 0x0002
    ESTOP = 0x0004
    TEMPERATURE_ERROR = 0x0008
    TEMPERATURE2_ERROR = 0x0010
    MAIN_BATTERY_HIGH_ERROR = 0x0020
    LOGIC_BATTERY_HIGH_ERROR = 0x0040
    LOGIC_BATTERY_LOW_ERROR = 0x0080
    M1_DRIVER_FAULT = 0x0100
    M2_DRIVER_FAULT = 0x0200
    MAIN_BATTERY_HIGH_WARNING = 0x0400
    MAIN_BATTERY_LOW_WARNING = 0x0800
    TEMPERATURE_WARNING = 0x1000
    TEMPERATURE2_WARNING = 0x2000
    M1_HOME = 0x4000
    M2_HOME = 0x8000


# ----------------------------------------------------------------------------- reply types
def _s32(u: int) -> int:
    return u - (1 << 32) if u & 0x80000000 else u


class SerialTimeout(NamedTuple):
    """Command 15: the serial timeout in 100 ms units (0 = disabled)."""
    timeout_100ms: int

    @property
    def timeout_s(self) -> float:
        return self.timeout_100ms / 10.0


class EncoderCount(NamedTuple):
    """Commands 16/17: raw quadrature count (u32, wraps) and the status byte."""
    count: int
    status: int

    @property
    def count_s32(self) -> int:
        """The count read as a signed 32-bit value (what most drivers accumulate)."""
        return _s32(self.count)

    @property
    def flags(self) -> EncoderStatus:
        return EncoderStatus(self.status & 0x07)


class EncoderSpeed(NamedTuple):
    """Commands 18/19: speed in encoder pulses per second (s32) and direction (1 = backwards)."""
    speed_pps: int
    direction: int


class FirmwareVersion(NamedTuple):
    """Command 21: the version text, without its LF and NUL terminators."""
    text: str


class Voltage(NamedTuple):
    """Commands 24/25: battery voltage in tenths of a volt."""
    decivolts: int

    @property
    def voltage_v(self) -> float:
        return self.decivolts / 10.0


class Currents(NamedTuple):
    """Command 49: motor currents in 10 mA units (signed)."""
    m1_10ma: int
    m2_10ma: int

    @property
    def m1_a(self) -> float:
        return self.m1_10ma / 100.0

    @property
    def m2_a(self) -> float:
        return self.m2_10ma / 100.0


class EncoderCounts(NamedTuple):
    """Command 78: both raw quadrature counts (u32, wrapping)."""
    m1: int
    m2: int

    @property
    def signed(self) -> tuple[int, int]:
        return _s32(self.m1), _s32(self.m2)


class Temperature(NamedTuple):
    """Command 82: board temperature in tenths of a degree Celsius."""
    decidegrees_c: int

    @property
    def temperature_c(self) -> float:
        return self.decidegrees_c / 10.0


class Status(NamedTuple):
    """Command 90: the status word and its width (4 bytes: current firmware; 2: legacy)."""
    bits: int
    width: int = 4

    @property
    def flags(self) -> StatusFlags | LegacyStatusFlags:
        return StatusFlags(self.bits) if self.width == 4 else LegacyStatusFlags(self.bits)


# ----------------------------------------------------------------------------- command table
class Field(NamedTuple):
    """One big-endian value on the wire: ``fmt`` is a :mod:`struct` code, ``lo..hi`` its legal range."""
    name: str
    fmt: str
    lo: int
    hi: int


def _u8(name):
    return Field(name, "B", 0, 0xFF)


def _u16(name):
    return Field(name, "H", 0, 0xFFFF)


def _s16(name, lo=-0x8000, hi=0x7FFF):
    return Field(name, "h", lo, hi)


def _u32(name, lo=0, hi=0xFFFFFFFF):
    return Field(name, "I", lo, hi)


def _s32f(name):
    return Field(name, "i", -0x80000000, 0x7FFFFFFF)


def _duty(name):
    return _s16(name, -32767, 32767)


@dataclass(frozen=True)
class CommandSpec:
    """What goes on the wire for one command.

    ``request`` lists the data fields a write carries (empty for reads); ``reply`` the data
    fields a read returns (``None`` for writes, which are answered by the ack byte; empty
    tuple for the variable-length version string) and ``reply_type`` the named tuple built
    from them.
    """
    cmd: Cmd
    request: tuple[Field, ...] = ()
    reply: tuple[Field, ...] | None = None
    reply_type: type | None = None

    @property
    def is_read(self) -> bool:
        return self.reply is not None

    @property
    def name(self) -> str:
        return self.cmd.name

    @property
    def request_data_len(self) -> int:
        return struct.calcsize(">" + "".join(f.fmt for f in self.request))

    @property
    def request_len(self) -> int:
        """Bytes the host sends: ``addr cmd`` for reads; ``addr cmd data crc16`` for writes."""
        return 2 if self.is_read else 2 + self.request_data_len + 2

    def reply_fields(self, status_bytes: int = 4) -> tuple[Field, ...]:
        if self.cmd == Cmd.READ_STATUS and status_bytes == 2:
            return (_u16("bits"),)
        return self.reply or ()


COMMANDS: dict[int, CommandSpec] = {s.cmd: s for s in (
    CommandSpec(Cmd.SET_SERIAL_TIMEOUT, request=(_u8("timeout_100ms"),)),
    CommandSpec(Cmd.READ_SERIAL_TIMEOUT, reply=(_u8("timeout_100ms"),), reply_type=SerialTimeout),
    CommandSpec(Cmd.READ_ENC_M1, reply=(_u32("count"), _u8("status")), reply_type=EncoderCount),
    CommandSpec(Cmd.READ_ENC_M2, reply=(_u32("count"), _u8("status")), reply_type=EncoderCount),
    CommandSpec(Cmd.READ_SPEED_M1, reply=(_s32f("speed_pps"), _u8("direction")), reply_type=EncoderSpeed),
    CommandSpec(Cmd.READ_SPEED_M2, reply=(_s32f("speed_pps"), _u8("direction")), reply_type=EncoderSpeed),
    CommandSpec(Cmd.RESET_ENCODERS),
    CommandSpec(Cmd.READ_VERSION, reply=(), reply_type=FirmwareVersion),
    CommandSpec(Cmd.READ_MAIN_BATTERY, reply=(_u16("decivolts"),), reply_type=Voltage),
    CommandSpec(Cmd.READ_LOGIC_BATTERY, reply=(_u16("decivolts"),), reply_type=Voltage),
    CommandSpec(Cmd.DUTY_M1, request=(_duty("duty"),)),
    CommandSpec(Cmd.DUTY_M2, request=(_duty("duty"),)),
    CommandSpec(Cmd.DUTY_M1M2, request=(_duty("duty_m1"), _duty("duty_m2"))),
    CommandSpec(Cmd.SPEED_M1, request=(_s32f("speed_pps"),)),
    CommandSpec(Cmd.SPEED_M2, request=(_s32f("speed_pps"),)),
    CommandSpec(Cmd.SPEED_M1M2, request=(_s32f("speed_m1_pps"), _s32f("speed_m2_pps"))),
    CommandSpec(Cmd.SPEED_ACCEL_M1, request=(_u32("accel_pps2"), _s32f("speed_pps"))),
    CommandSpec(Cmd.SPEED_ACCEL_M2, request=(_u32("accel_pps2"), _s32f("speed_pps"))),
    CommandSpec(Cmd.SPEED_ACCEL_M1M2, request=(_u32("accel_pps2"), _s32f("speed_m1_pps"), _s32f("speed_m2_pps"))),
    CommandSpec(Cmd.READ_CURRENTS, reply=(_s16("m1_10ma"), _s16("m2_10ma")), reply_type=Currents),
    CommandSpec(Cmd.READ_ENCODERS, reply=(_u32("m1"), _u32("m2")), reply_type=EncoderCounts),
    CommandSpec(Cmd.READ_TEMPERATURE, reply=(_u16("decidegrees_c"),), reply_type=Temperature),
    CommandSpec(Cmd.READ_STATUS, reply=(_u32("bits"),), reply_type=Status),
    CommandSpec(Cmd.WRITE_SETTINGS, request=(_u32("key", WRITE_SETTINGS_KEY, WRITE_SETTINGS_KEY),)),
)}

# Lookup table indexed by the command byte: list access is the parser's hot path.
_SPEC_BY_BYTE: list[CommandSpec | None] = [COMMANDS.get(i) for i in range(256)]
_REQ_STRUCT = {c: struct.Struct(">" + "".join(f.fmt for f in s.request)) for c, s in COMMANDS.items()}


# ----------------------------------------------------------------------------- validation
def _check_addr(addr) -> int:
    a = _int(addr, "roboclaw address")
    if a not in ADDRESSES:
        raise CommandOutOfRange(f"roboclaw address = {a!r} (0x{a & 0xFF:02x}): must be 0x80..0x87")
    return a


def _spec(cmd) -> CommandSpec:
    c = _int(cmd, "roboclaw command")
    spec = COMMANDS.get(c)
    if spec is None:
        known = ", ".join(str(int(k)) for k in COMMANDS)
        raise ValueError(f"roboclaw command = {c}: not supported by this codec (known: {known})")
    return spec


def _check_status_bytes(status_bytes) -> int:
    if status_bytes not in (2, 4):
        raise ValueError(f"status_bytes = {status_bytes!r}: must be 4 (current firmware) or 2 (legacy)")
    return status_bytes


def _ctx(addr: int, spec: CommandSpec) -> str:
    return f"roboclaw 0x{addr:02x} {spec.name} ({int(spec.cmd)})"


def _pack_fields(fields: tuple[Field, ...], values: tuple, ctx: str) -> bytes:
    if len(values) != len(fields):
        names = ", ".join(f.name for f in fields) or "no values"
        raise TypeError(f"{ctx}: takes {len(fields)} value(s) ({names}), got {len(values)}")
    out = []
    for f, v in zip(fields, values):
        iv = _int(v, f"{ctx}: {f.name}")
        if not f.lo <= iv <= f.hi:
            raise CommandOutOfRange(f"{ctx}: {f.name} = {iv} out of range {f.lo}..{f.hi}")
        out.append(iv)
    return struct.pack(">" + "".join(f.fmt for f in fields), *out)


def _with_crc(body: bytes) -> bytes:
    return body + crc16_xmodem(body).to_bytes(2, "big")


# ----------------------------------------------------------------------------- host side
def request_len(cmd) -> int:
    """Bytes the host sends for ``cmd`` (2 for reads, 2 + data + 2 for writes)."""
    return _spec(cmd).request_len


def encode_request(addr, cmd, *args) -> bytes:
    """Bytes for one request.

    Parameters
    ----------
    addr : int
        Controller address, 0x80..0x87.
    cmd : int or Cmd
        Command number (see :class:`Cmd`).
    *args : int
        The command's data values in wire order (see the table in the module docstring);
        none for reads.

    Returns
    -------
    bytes
        ``addr cmd`` for a read; ``addr cmd data… crc_hi crc_lo`` for a write.

    Raises
    ------
    CommandOutOfRange
        Address or a value out of its range (the message names address, command, field,
        value and range).
    TypeError
        Wrong number of values, or a non-integer value.
    """
    a = _check_addr(addr)
    spec = _spec(cmd)
    ctx = _ctx(a, spec)
    if spec.is_read:
        if args:
            raise TypeError(f"{ctx}: a read request takes no values, got {len(args)}")
        return bytes((a, int(spec.cmd)))
    return _with_crc(bytes((a, int(spec.cmd))) + _pack_fields(spec.request, args, ctx))


def encode_set_serial_timeout(addr, timeout_s: float) -> bytes:
    """Command 14 with the timeout in seconds (rounded to 0.1 s; 0 disables, max 25.5 s)."""
    t = float(timeout_s)
    if not 0.0 <= t <= 25.5:
        raise CommandOutOfRange(f"roboclaw 0x{_check_addr(addr):02x} SET_SERIAL_TIMEOUT (14): timeout_s = {t!r} "
                                f"out of range 0..25.5 s")
    return encode_request(addr, Cmd.SET_SERIAL_TIMEOUT, int(round(t * 10.0)))


def encode_reset_encoders(addr) -> bytes:
    """Command 20: zero both quadrature counters."""
    return encode_request(addr, Cmd.RESET_ENCODERS)


def encode_duty_m1(addr, duty: int) -> bytes:
    """Command 32: M1 duty, -32767..32767 (= -100..100 %)."""
    return encode_request(addr, Cmd.DUTY_M1, duty)


def encode_duty_m2(addr, duty: int) -> bytes:
    """Command 33: M2 duty, -32767..32767."""
    return encode_request(addr, Cmd.DUTY_M2, duty)


def encode_duty_m1m2(addr, duty_m1: int, duty_m2: int) -> bytes:
    """Command 34: both duties, -32767..32767 each."""
    return encode_request(addr, Cmd.DUTY_M1M2, duty_m1, duty_m2)


def encode_speed_m1(addr, speed_pps: int) -> bytes:
    """Command 35: M1 speed in encoder pulses per second (s32)."""
    return encode_request(addr, Cmd.SPEED_M1, speed_pps)


def encode_speed_m2(addr, speed_pps: int) -> bytes:
    """Command 36: M2 speed in encoder pulses per second (s32)."""
    return encode_request(addr, Cmd.SPEED_M2, speed_pps)


def encode_speed_m1m2(addr, speed_m1_pps: int, speed_m2_pps: int) -> bytes:
    """Command 37: both speeds in pulses per second (s32 each)."""
    return encode_request(addr, Cmd.SPEED_M1M2, speed_m1_pps, speed_m2_pps)


def encode_speed_accel_m1(addr, accel_pps2: int, speed_pps: int) -> bytes:
    """Command 38: M1 speed with acceleration (u32 pulses/s², then s32 pulses/s)."""
    return encode_request(addr, Cmd.SPEED_ACCEL_M1, accel_pps2, speed_pps)


def encode_speed_accel_m2(addr, accel_pps2: int, speed_pps: int) -> bytes:
    """Command 39: M2 speed with acceleration."""
    return encode_request(addr, Cmd.SPEED_ACCEL_M2, accel_pps2, speed_pps)


def encode_speed_accel_m1m2(addr, accel_pps2: int, speed_m1_pps: int, speed_m2_pps: int) -> bytes:
    """Command 40: both speeds with one acceleration."""
    return encode_request(addr, Cmd.SPEED_ACCEL_M1M2, accel_pps2, speed_m1_pps, speed_m2_pps)


def encode_write_settings(addr) -> bytes:
    """Command 94: store the settings in EEPROM (carries the vendor key 0xE22EAB7A)."""
    return encode_request(addr, Cmd.WRITE_SETTINGS, WRITE_SETTINGS_KEY)


def expected_reply_len(cmd, *, status_bytes: int = 4) -> int | None:
    """Bytes the controller sends back: 1 (the ack) for a write, data + 2 for a read, ``None``
    for the version string (read until NUL, then 2 CRC bytes; at most 48 + 2)."""
    spec = _spec(cmd)
    if not spec.is_read:
        return 1
    if spec.cmd == Cmd.READ_VERSION:
        return None
    fields = spec.reply_fields(_check_status_bytes(status_bytes))
    return struct.calcsize(">" + "".join(f.fmt for f in fields)) + 2


def check_ack(addr, cmd, data: bytes) -> None:
    """Accept exactly ``b"\\xff"`` as the answer to a write; raise :class:`AckError` otherwise.

    An empty ``data`` (no answer: bad CRC at the controller, wrong address, dead link) and
    any other byte are both failures; a client that accepts any byte as an ack is a known
    field failure.
    """
    a = _check_addr(addr)
    spec = _spec(cmd)
    if spec.is_read:
        raise ValueError(f"{_ctx(a, spec)} is a read; reads are answered with data, not an ack")
    data = bytes(data)
    if data != ACK_BYTES:
        what = "no answer" if not data else f"{len(data)} byte(s) {data[:8].hex(' ')}"
        raise AckError(f"{_ctx(a, spec)}: expected ack 0xff, got {what}")


class ReplyParser:
    """Incremental decoder for the reply to one read request.

    Parameters
    ----------
    addr, cmd : int
        The address and read command that were sent (both enter the CRC).
    status_bytes : int
        Width of the command-90 status reply: 4 (current firmware) or 2 (legacy).

    Use ``feed(chunk)`` with whatever arrived; it returns ``None`` until the reply is complete,
    then the typed value (once). Bytes after the end of the reply land in :attr:`excess`
    (a protocol violation the driver may want to count). A CRC mismatch raises
    :class:`~drivers.crc.ChecksumError`, a version string without NUL in 48 bytes
    :class:`MalformedReply`; after an error the parser stays failed.
    """

    def __init__(self, addr, cmd, *, status_bytes: int = 4):
        self.addr = _check_addr(addr)
        self.spec = _spec(cmd)
        if not self.spec.is_read:
            raise ValueError(f"{_ctx(self.addr, self.spec)} is a write; use check_ack for its answer")
        self.status_bytes = _check_status_bytes(status_bytes)
        fields = self.spec.reply_fields(self.status_bytes)
        self._struct = struct.Struct(">" + "".join(f.fmt for f in fields))
        self._variable = self.spec.cmd == Cmd.READ_VERSION
        self._buf = bytearray()
        self._nul = -1
        self.value = None
        self.done = False
        self.failed = False
        self.excess = b""

    @property
    def remaining(self) -> int:
        """Bytes still needed (exact for fixed-size replies, a lower bound for the version)."""
        if self.done or self.failed:
            return 0
        if not self._variable:
            return self._struct.size + 2 - len(self._buf)
        if self._nul < 0:
            return 3
        return self._nul + 3 - len(self._buf)

    def feed(self, data: bytes):
        """Add received bytes; return the decoded reply when it completes, else ``None``."""
        ctx = _ctx(self.addr, self.spec)
        if self.failed:
            raise ProtocolError(f"{ctx}: reply parser already failed; start a new request")
        if self.done:
            self.excess += bytes(data)
            return None
        self._buf += data
        if self._variable:
            if self._nul < 0:
                self._nul = self._buf.find(0, 0, MAX_VERSION_LEN)
                if self._nul < 0:
                    if len(self._buf) >= MAX_VERSION_LEN:
                        self.failed = True
                        raise MalformedReply(f"{ctx}: no NUL terminator in the first {MAX_VERSION_LEN} bytes "
                                             f"of the version reply")
                    return None
            total = self._nul + 3
        else:
            total = self._struct.size + 2
        if len(self._buf) < total:
            return None
        frame = bytes(self._buf[:total])
        self.excess = bytes(self._buf[total:])
        self._buf.clear()
        body = frame[:-2]
        expected = crc16_xmodem(body, crc16_xmodem(bytes((self.addr, int(self.spec.cmd)))))
        got = int.from_bytes(frame[-2:], "big")
        if expected != got:
            self.failed = True
            raise ChecksumError(f"{ctx}: reply CRC mismatch: computed 0x{expected:04x} over addr+cmd+"
                                f"{len(body)} data bytes, received 0x{got:04x}", expected=expected, got=got)
        if self._variable:
            text = body[:-1].decode("latin-1")
            if text.endswith("\n"):
                text = text[:-1]
            value = FirmwareVersion(text)
        else:
            vals = self._struct.unpack(body)
            value = Status(vals[0], self.status_bytes) if self.spec.cmd == Cmd.READ_STATUS \
                else self.spec.reply_type(*vals)
        self.value = value
        self.done = True
        return value


def decode_reply(addr, cmd, data: bytes, *, status_bytes: int = 4):
    """Decode a complete reply (data + CRC) to a read; the length must be exact.

    Raises :class:`~drivers.crc.ChecksumError` on a CRC mismatch and :class:`MalformedReply`
    when ``data`` is shorter or longer than the reply.
    """
    p = ReplyParser(addr, cmd, status_bytes=status_bytes)
    data = bytes(data)
    value = p.feed(data)
    ctx = _ctx(p.addr, p.spec)
    if value is None:
        raise MalformedReply(f"{ctx}: reply too short: {len(data)} bytes, need at least {len(data) + p.remaining}")
    if p.excess:
        raise MalformedReply(f"{ctx}: reply too long: {len(data)} bytes, expected {len(data) - len(p.excess)}")
    return value


# ----------------------------------------------------------------------------- device side
@dataclass(frozen=True)
class Request:
    """One request as a controller receives it: address, command and data values (wire order)."""
    addr: int
    cmd: Cmd
    args: tuple[int, ...] = ()
    raw: bytes = field(default=b"", compare=False, repr=False)

    @property
    def spec(self) -> CommandSpec:
        return COMMANDS[self.cmd]

    @property
    def is_read(self) -> bool:
        return self.spec.is_read

    @property
    def fields(self) -> dict[str, int]:
        """Data values by field name, e.g. ``{"accel_pps2": 1000, "speed_pps": -500}``."""
        return {f.name: v for f, v in zip(self.spec.request, self.args)}


@dataclass
class ParserStats:
    """Counters of a :class:`RequestParser` (all monotonically increasing)."""
    requests: int = 0          # complete requests emitted
    crc_errors: int = 0        # writes dropped for a bad CRC (the device stays silent)
    skipped_bytes: int = 0     # bytes that could not start a packet (incl. rejected addresses)
    gap_discards: int = 0      # partial packets discarded after an inter-byte gap > gap_s
    gap_discarded_bytes: int = 0


class RequestParser:
    """Device-side incremental request parser for one RoboClaw bus.

    Parameters
    ----------
    gap_s : float
        Inter-byte gap after which a partial packet is discarded (10 ms on the hardware).

    ``feed(data, t_s)`` takes the bytes that arrived at time ``t_s`` (seconds, any monotonic
    base; the caller's clock) and returns the complete requests, for any address 0x80-0x87
    (a bus model answers only for the addresses it has). Writes with a bad CRC are dropped
    and counted in :attr:`stats`; the device must answer nothing. A byte that is not an
    address, or an address followed by an unknown command, is skipped. After a bad CRC the
    scan restarts at the byte after the rejected address, so a packet hidden behind garbage or
    a truncated packet is still found (resynchronisation within the next packet). The real
    controller relies on the 10 ms gap instead; drivers must keep that silence after any
    error either way.

    Values are not range-checked beyond their wire type: a device model decides what it
    accepts (e.g. a WRITE_SETTINGS whose key is not :data:`WRITE_SETTINGS_KEY`, or a duty of
    -32768, which the manual's ±32767 excludes).
    """

    def __init__(self, *, gap_s: float = GAP_S):
        g = float(gap_s)
        if not g > 0:
            raise ValueError(f"gap_s = {gap_s!r}: must be > 0")
        self.gap_s = g
        self._buf = bytearray()
        self._last_t: float | None = None
        self.stats = ParserStats()

    @property
    def pending(self) -> int:
        """Bytes of an incomplete packet held back."""
        return len(self._buf)

    def reset(self) -> None:
        """Forget any partial packet (a device reboot)."""
        self._buf.clear()
        self._last_t = None

    def feed(self, data: bytes, t_s: float) -> list[Request]:
        """Add bytes that arrived at ``t_s``; return the requests completed by them."""
        t = float(t_s)
        st = self.stats
        if self._buf and self._last_t is not None and t - self._last_t > self.gap_s:
            st.gap_discards += 1
            st.gap_discarded_bytes += len(self._buf)
            self._buf.clear()
        if not data:
            return []
        self._last_t = t
        buf = self._buf
        buf += data
        out: list[Request] = []
        n = len(buf)
        i = 0
        specs = _SPEC_BY_BYTE
        while i < n:
            a = buf[i]
            if not 0x80 <= a <= 0x87:
                i += 1
                st.skipped_bytes += 1
                continue
            if i + 1 >= n:
                break
            spec = specs[buf[i + 1]]
            if spec is None:
                i += 1
                st.skipped_bytes += 1
                continue
            if spec.reply is not None:           # read: addr cmd, no CRC
                out.append(Request(a, spec.cmd, (), bytes(buf[i:i + 2])))
                i += 2
                continue
            total = spec.request_len
            if i + total > n:
                break
            pkt = bytes(buf[i:i + total])
            if crc16_xmodem(pkt[:-2]) != (pkt[-2] << 8 | pkt[-1]):
                st.crc_errors += 1
                st.skipped_bytes += 1
                i += 1
                continue
            args = _REQ_STRUCT[spec.cmd].unpack(pkt[2:-2])
            out.append(Request(a, spec.cmd, args, pkt))
            i += total
        del buf[:i]
        st.requests += len(out)
        return out


def encode_reply(addr, cmd, *values, status_bytes: int = 4) -> bytes:
    """Reply bytes (data + CRC) a controller sends for a read request.

    Parameters
    ----------
    addr, cmd : int
        The request's address and read command (both enter the CRC).
    *values
        The reply fields in wire order (e.g. ``count, status`` for 16), or one reply named
        tuple (``EncoderCount(1000, 0)``); for command 21 the version text (str, ASCII,
        no NUL; LF and NUL are appended; at most 46 characters). Raw u32 counts must be
        0..2**32-1 (mask with ``& 0xFFFFFFFF``).
    status_bytes : int
        Width of the command-90 reply (4 or 2).
    """
    a = _check_addr(addr)
    spec = _spec(cmd)
    ctx = _ctx(a, spec)
    if not spec.is_read:
        raise ValueError(f"{ctx} is a write; its answer is ACK_BYTES (b'\\xff')")
    sb = _check_status_bytes(status_bytes)
    if len(values) == 1 and isinstance(values[0], tuple):
        values = tuple(values[0])
    head = bytes((a, int(spec.cmd)))
    if spec.cmd == Cmd.READ_VERSION:
        if len(values) != 1 or not isinstance(values[0], str):
            raise TypeError(f"{ctx}: takes one str (the version text), got {values!r}")
        text = values[0]
        try:
            raw = text.encode("ascii")
        except UnicodeEncodeError:
            raise ValueError(f"{ctx}: version text {text!r} must be ASCII") from None
        if 0 in raw:
            raise ValueError(f"{ctx}: version text {text!r} must not contain NUL")
        raw += b"\n\x00"
        if len(raw) > MAX_VERSION_LEN:
            raise ValueError(f"{ctx}: version text is {len(raw)} bytes with LF+NUL, max {MAX_VERSION_LEN}")
        body = raw
    else:
        fields = spec.reply_fields(sb)
        if spec.cmd == Cmd.READ_STATUS and len(values) == 2:
            values = values[:1]                       # Status(bits, width) named tuple
        body = _pack_fields(fields, values, ctx)
    return body + crc16_xmodem(head + body).to_bytes(2, "big")
