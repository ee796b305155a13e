"""RNP, the Rover Node Protocol: our own wire protocol for Arduino-class rovers.

Byte-by-byte specification: ``drivers/PROTOCOL.md`` (this module and the C firmware core
``hil/firmware/rnp_core.c`` implement it; the tests check them against each other). In short,
a frame on the wire is ``COBS(body) 0x00`` with::

    body = version:u8 (=1)  type:u8  seq:u16  payload…  crc:u16
    crc  = CRC-16/XMODEM over version..payload, little-endian like every field

Host→device types are 0x01-0x7F, device→host 0x80-0xFF. Every device frame answers exactly
one host frame and starts its payload with ``ack_seq``, the sequence number of that host frame.

Public API
----------
Messages are frozen keyword-only dataclasses carrying ``seq`` (0..65535): host→device
:class:`Hello`, :class:`SetWheels`, :class:`SetWatchdog`, :class:`Heartbeat`, :class:`EStop`,
:class:`Arm`, :class:`Disarm`, :class:`ResetEncoders`; device→host :class:`Info`,
:class:`Telemetry`, :class:`Ack`, :class:`Nack`.

encode_message(msg, *, validate=True, flush=False) -> bytes
    Wire bytes (COBS + trailing 0x00; ``flush=True`` also prepends a 0x00 so a receiver
    holding garbage starts clean). ``validate`` checks the specification's ranges
    (watchdog 50..10000 ms, 1..8 wheels...); ``validate=False`` only requires that values fit
    their wire types, for fault injection ("valid CRC, bad content").
encode_raw_frame(msg_type, seq, payload, *, version=1, flush=False) -> bytes
    Any header/payload, correctly framed and checksummed (fault injection, tests).
decode_frame(encoded, *, direction=None) -> Message
    One frame as returned by :class:`~drivers.cobs.FrameSplitter` (delimiter removed).
    Raises :class:`~drivers.cobs.FramingError` (bad COBS, too short/long),
    :class:`~drivers.crc.ChecksumError` (expected vs received CRC) or :class:`ContentError`
    (valid CRC, bad content: its ``code`` is the :class:`NackCode` a device answers with).
    ``direction="to_device"`` / ``"to_host"`` rejects the other side's message types.
RnpDecoder(direction=None)
    Incremental: ``feed(data) -> list[Message]``; ``feed_with_errors(data)`` also returns the
    :class:`~drivers.errors.ProtocolError` of each rejected frame in stream order (a device
    NACKs the :class:`ContentError` ones and stays silent on the others). Counts everything in
    :attr:`RnpDecoder.stats`.
seq_next(seq), seq_delta(new, old)
    Modulo-2**16 sequence arithmetic (``seq_delta`` is the signed difference in -32768..32767).
to_rover_faults(faults) -> drivers.base.Fault
    Maps the TELEMETRY fault bits onto the rover-level fault flags.

The device's behaviour (watchdog, arming, e-stop latch, NACK rules) is specified in
``drivers/PROTOCOL.md`` §2.4 and implemented by the C core; a virtual device must follow it too.
The decoder knows only the device-independent rules: a device must still check the wheel count
(NACK WHEEL_COUNT [n_wheels]; BAD_LENGTH for SET_WHEELS carries ``1 + 4 * n_wheels`` of the
*device*), its speed limit, and its arming state, in the order PROTOCOL.md gives.
"""
from __future__ import annotations

import enum
import struct
from collections import deque
from dataclasses import dataclass, fields
from typing import ClassVar

from .cobs import FrameSplitter, FramingError, cobs_decode, cobs_encode, cobs_max_encoded_len
from .crc import ChecksumError, crc16_xmodem
from ._checks import as_int as _as_int
from .errors import CommandOutOfRange, ProtocolError

__all__ = [
    "PROTOCOL_VERSION", "MAX_WHEELS", "HEADER_LEN", "CRC_LEN", "MAX_BODY", "MAX_ENCODED",
    "WATCHDOG_MIN_MS", "WATCHDOG_MAX_MS", "WATCHDOG_DEFAULT_MS",
    "MsgType", "NackCode", "RnpFault", "DeviceState", "Capability", "HARDWARE_FAULTS",
    "Message", "Hello", "SetWheels", "SetWatchdog", "Heartbeat", "EStop", "Arm", "Disarm", "ResetEncoders",
    "Info", "Telemetry", "Ack", "Nack", "HOST_TYPES", "DEVICE_TYPES", "MESSAGE_CLASSES",
    "ContentError", "encode_message", "encode_raw_frame", "decode_frame", "decode_body", "RnpDecoder",
    "DecoderStats", "seq_next", "seq_delta", "to_rover_faults",
]

PROTOCOL_VERSION = 1
MAX_WHEELS = 8
HEADER_LEN = 4          # version, type, seq (u16)
CRC_LEN = 2
#: Largest frame body (header + payload + CRC) either side may send or must accept.
MAX_BODY = 128
#: Largest encoded frame (delimiter excluded).
MAX_ENCODED = cobs_max_encoded_len(MAX_BODY)
WATCHDOG_MIN_MS = 50
WATCHDOG_MAX_MS = 10000
#: Watchdog timeout after every boot, until SET_WATCHDOG.
WATCHDOG_DEFAULT_MS = 500


class MsgType(enum.IntEnum):
    HELLO = 0x01
    SET_WHEELS = 0x02
    SET_WATCHDOG = 0x03
    HEARTBEAT = 0x04
    ESTOP = 0x05
    ARM = 0x06
    DISARM = 0x07
    RESET_ENCODERS = 0x08
    INFO = 0x81
    TELEMETRY = 0x82
    ACK = 0x83
    NACK = 0x84


class NackCode(enum.IntEnum):
    """Why a well-formed, CRC-valid frame was refused (NACK ``code``; ``detail`` in brackets)."""
    BAD_VERSION = 1     # header or HELLO version unsupported [the version the device speaks]
    UNKNOWN_TYPE = 2    # not a host->device message type [0]
    BAD_LENGTH = 3      # payload length wrong for the type [expected payload length]
    OUT_OF_RANGE = 4    # a value outside its range [index of the first bad value]
    WHEEL_COUNT = 5     # SET_WHEELS wheel count != the device's [device wheel count]
    NOT_ARMED = 6       # SET_WHEELS while disarmed [0]
    ESTOPPED = 7        # SET_WHEELS while the e-stop is latched [0]
    NEED_HELLO = 8      # ARM before HELLO since the device booted [0]


class RnpFault(enum.IntFlag):
    """TELEMETRY ``faults`` bits."""
    NONE = 0
    WATCHDOG = 0x0001       # watchdog tripped: motors stopped until a fresh SET_WHEELS (or ARM)
    ESTOP = 0x0002          # e-stop latched (message or hardware input) until ARM
    REBOOTED = 0x0004       # set at boot, cleared by HELLO: the device lost its session state
    OVERCURRENT = 0x0008    # hardware (application) bits from here on
    BATTERY_LOW = 0x0010
    DRIVER_FAULT = 0x0020
    ENCODER_FAULT = 0x0040
    OVERTEMP = 0x0080


#: Fault bits the application (motor driver, sensors) reports; the core owns the others.
HARDWARE_FAULTS = (RnpFault.OVERCURRENT | RnpFault.BATTERY_LOW | RnpFault.DRIVER_FAULT
                   | RnpFault.ENCODER_FAULT | RnpFault.OVERTEMP)


class DeviceState(enum.IntFlag):
    """TELEMETRY ``state`` bits."""
    NONE = 0
    ARMED = 0x01
    DRIVING = 0x02      # armed and a fresh SET_WHEELS is in force (motors may turn)


class Capability(enum.IntFlag):
    """INFO ``capabilities`` bits."""
    NONE = 0
    CURRENT_SENSE = 0x0001   # currents_ma are measured (else 0)
    BATTERY_SENSE = 0x0002   # battery_mv is measured (else 0)
    CLOSED_LOOP = 0x0004     # wheel speeds are closed-loop on the encoders (else open-loop PWM)
    HW_ESTOP = 0x0008        # a physical e-stop input latches ESTOP


# ----------------------------------------------------------------------------- messages
@dataclass(frozen=True, kw_only=True)
class Message:
    """Base of every RNP message: ``seq`` is the frame's sequence number (u16)."""
    seq: int = 0
    TYPE: ClassVar[MsgType]

    def __post_init__(self):
        # Coerce to plain ints / tuples of ints (numpy values and arrays are welcome); the fast path
        # skips values that already are.
        for name in _field_names(type(self)):
            v = getattr(self, name)
            tv = type(v)
            if tv is int or (tv is tuple and all(type(x) is int for x in v)):
                continue
            if hasattr(v, "__len__") and not isinstance(v, (str, bytes, bytearray)):
                object.__setattr__(self, name, tuple(_as_int(x, f"{type(self).__name__}.{name}[]") for x in v))
            else:
                object.__setattr__(self, name, _as_int(v, f"{type(self).__name__}.{name}"))


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(cls) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(cls))
    return names


@dataclass(frozen=True, kw_only=True)
class Hello(Message):
    """Host opens a session; the device stops, disarms, clears REBOOTED and answers INFO."""
    TYPE: ClassVar[MsgType] = MsgType.HELLO
    protocol_version: int = PROTOCOL_VERSION


@dataclass(frozen=True, kw_only=True)
class SetWheels(Message):
    """Per-wheel speed targets in encoder counts per second (s32, wheel order of the device)."""
    TYPE: ClassVar[MsgType] = MsgType.SET_WHEELS
    speeds_cps: tuple[int, ...] = ()


@dataclass(frozen=True, kw_only=True)
class SetWatchdog(Message):
    """Firmware watchdog timeout in ms (50..10000); reset to 500 at every boot."""
    TYPE: ClassVar[MsgType] = MsgType.SET_WATCHDOG
    timeout_ms: int = WATCHDOG_DEFAULT_MS


@dataclass(frozen=True, kw_only=True)
class Heartbeat(Message):
    """Feeds the watchdog without changing the targets; answered with TELEMETRY (the poll)."""
    TYPE: ClassVar[MsgType] = MsgType.HEARTBEAT


@dataclass(frozen=True, kw_only=True)
class EStop(Message):
    """Stop, disarm and latch the e-stop until ARM."""
    TYPE: ClassVar[MsgType] = MsgType.ESTOP


@dataclass(frozen=True, kw_only=True)
class Arm(Message):
    """Clear the e-stop and watchdog latches and arm; motion needs a fresh SET_WHEELS after it."""
    TYPE: ClassVar[MsgType] = MsgType.ARM


@dataclass(frozen=True, kw_only=True)
class Disarm(Message):
    """Stop and disarm (no latch)."""
    TYPE: ClassVar[MsgType] = MsgType.DISARM


@dataclass(frozen=True, kw_only=True)
class ResetEncoders(Message):
    """Zero the reported encoder counts."""
    TYPE: ClassVar[MsgType] = MsgType.RESET_ENCODERS


@dataclass(frozen=True, kw_only=True)
class Info(Message):
    """Answer to HELLO: firmware and rover description."""
    TYPE: ClassVar[MsgType] = MsgType.INFO
    ack_seq: int = 0
    protocol_version: int = PROTOCOL_VERSION
    fw_version: tuple[int, ...] = (0, 0, 0)
    n_wheels: int = 2
    capabilities: int = 0
    counts_per_rev: int = 0
    max_speed_cps: int = 0
    watchdog_ms: int = WATCHDOG_DEFAULT_MS


@dataclass(frozen=True, kw_only=True)
class Telemetry(Message):
    """Answer to SET_WHEELS and HEARTBEAT: the device state at ``time_ms`` (device clock)."""
    TYPE: ClassVar[MsgType] = MsgType.TELEMETRY
    ack_seq: int = 0
    time_ms: int = 0
    faults: int = 0
    state: int = 0
    encoder_counts: tuple[int, ...] = ()     # s32, wrapping
    speeds_cps: tuple[int, ...] = ()         # s32 measured counts/s
    currents_ma: tuple[int, ...] = ()        # s16 mA
    battery_mv: int = 0
    rx_errors: int = 0                       # u16 wrapping count of frames dropped silently

    @property
    def n_wheels(self) -> int:
        return len(self.encoder_counts)

    @property
    def fault_flags(self) -> RnpFault:
        return RnpFault(self.faults)

    @property
    def state_flags(self) -> DeviceState:
        return DeviceState(self.state)


@dataclass(frozen=True, kw_only=True)
class Ack(Message):
    """A command was accepted."""
    TYPE: ClassVar[MsgType] = MsgType.ACK
    ack_seq: int = 0
    acked_type: int = 0


@dataclass(frozen=True, kw_only=True)
class Nack(Message):
    """A well-formed, CRC-valid frame was refused; ``code`` is a :class:`NackCode`."""
    TYPE: ClassVar[MsgType] = MsgType.NACK
    ack_seq: int = 0
    nacked_type: int = 0
    code: int = 0
    detail: int = 0

    @property
    def reason(self) -> str:
        try:
            name = NackCode(self.code).name
        except ValueError:
            name = f"code {self.code}"
        try:
            t = MsgType(self.nacked_type).name
        except ValueError:
            t = f"type 0x{self.nacked_type:02x}"
        return f"{t} seq {self.ack_seq} refused: {name} (detail {self.detail})"


MESSAGE_CLASSES: dict[int, type[Message]] = {c.TYPE: c for c in (
    Hello, SetWheels, SetWatchdog, Heartbeat, EStop, Arm, Disarm, ResetEncoders, Info, Telemetry, Ack, Nack)}
HOST_TYPES = frozenset(t for t in MESSAGE_CLASSES if t < 0x80)
DEVICE_TYPES = frozenset(t for t in MESSAGE_CLASSES if t >= 0x80)


class ContentError(ProtocolError):
    """A frame passed COBS and CRC checks but its content is wrong.

    Attributes
    ----------
    code : NackCode
        What a device answers in its NACK.
    detail : int
        NACK detail byte (see :class:`NackCode`).
    seq, msg_type : int
        Header fields of the refused frame (for the NACK's ``ack_seq`` / ``nacked_type``).
    """

    def __init__(self, message: str, *, code: NackCode, seq: int, msg_type: int, detail: int = 0):
        super().__init__(message)
        self.code = NackCode(code)
        self.seq = int(seq)
        self.msg_type = int(msg_type)
        self.detail = int(detail) & 0xFF


# ----------------------------------------------------------------------------- payload layouts
_U8, _U16 = struct.Struct("<B"), struct.Struct("<H")
_INFO = struct.Struct("<HBBBBBHIIH")       # 19 bytes
_TEL_HEAD = struct.Struct("<HIHBB")        # ack_seq, time_ms, faults, state, n_wheels: 10 bytes
_TEL_TAIL = struct.Struct("<HH")           # battery_mv, rx_errors
_ACK = struct.Struct("<HB")
_NACK = struct.Struct("<HBBB")

#: Fixed payload lengths (SET_WHEELS and TELEMETRY depend on the wheel count).
PAYLOAD_LEN = {MsgType.HELLO: 1, MsgType.SET_WATCHDOG: 2, MsgType.HEARTBEAT: 0, MsgType.ESTOP: 0,
               MsgType.ARM: 0, MsgType.DISARM: 0, MsgType.RESET_ENCODERS: 0, MsgType.INFO: _INFO.size,
               MsgType.ACK: _ACK.size, MsgType.NACK: _NACK.size}


def set_wheels_len(n: int) -> int:
    return 1 + 4 * n


def telemetry_len(n: int) -> int:
    return _TEL_HEAD.size + 10 * n + _TEL_TAIL.size


def _rng(ctx: str, name: str, v: int, lo: int, hi: int) -> int:
    if not lo <= v <= hi:
        raise CommandOutOfRange(f"{ctx}: {name} = {v} out of range {lo}..{hi}")
    return v


def _payload(msg: Message, validate: bool) -> bytes:
    ctx = f"RNP {msg.TYPE.name}"
    t = msg.TYPE
    try:
        if t == MsgType.HELLO:
            return _U8.pack(msg.protocol_version)
        if t == MsgType.SET_WHEELS:
            n = len(msg.speeds_cps)
            if validate:
                _rng(ctx, "number of wheels", n, 1, MAX_WHEELS)
            return _U8.pack(n) + struct.pack(f"<{n}i", *msg.speeds_cps)
        if t == MsgType.SET_WATCHDOG:
            if validate:
                _rng(ctx, "timeout_ms", msg.timeout_ms, WATCHDOG_MIN_MS, WATCHDOG_MAX_MS)
            return _U16.pack(msg.timeout_ms)
        if t in (MsgType.HEARTBEAT, MsgType.ESTOP, MsgType.ARM, MsgType.DISARM, MsgType.RESET_ENCODERS):
            return b""
        if t == MsgType.INFO:
            if len(msg.fw_version) != 3:
                raise TypeError(f"{ctx}: fw_version must be (major, minor, patch), got {msg.fw_version!r}")
            if validate:
                _rng(ctx, "n_wheels", msg.n_wheels, 1, MAX_WHEELS)
            return _INFO.pack(msg.ack_seq, msg.protocol_version, *msg.fw_version, msg.n_wheels, msg.capabilities,
                              msg.counts_per_rev, msg.max_speed_cps, msg.watchdog_ms)
        if t == MsgType.TELEMETRY:
            n = len(msg.encoder_counts)
            if len(msg.speeds_cps) != n or len(msg.currents_ma) != n:
                raise ValueError(f"{ctx}: encoder_counts, speeds_cps and currents_ma must have the same length, "
                                 f"got {n}, {len(msg.speeds_cps)}, {len(msg.currents_ma)}")
            if validate:
                _rng(ctx, "number of wheels", n, 1, MAX_WHEELS)
            return (_TEL_HEAD.pack(msg.ack_seq, msg.time_ms, msg.faults, msg.state, n)
                    + struct.pack(f"<{n}i{n}i{n}h", *msg.encoder_counts, *msg.speeds_cps, *msg.currents_ma)
                    + _TEL_TAIL.pack(msg.battery_mv, msg.rx_errors))
        if t == MsgType.ACK:
            return _ACK.pack(msg.ack_seq, msg.acked_type)
        if t == MsgType.NACK:
            return _NACK.pack(msg.ack_seq, msg.nacked_type, msg.code, msg.detail)
    except struct.error as e:
        raise CommandOutOfRange(f"{ctx}: a value does not fit its wire type ({e}): {msg!r}") from None
    raise TypeError(f"cannot encode {type(msg).__name__}")  # pragma: no cover


def _frame(body_wo_crc: bytes, flush: bool) -> bytes:
    body = body_wo_crc + crc16_xmodem(body_wo_crc).to_bytes(2, "little")
    return (b"\x00" if flush else b"") + cobs_encode(body) + b"\x00"


def encode_raw_frame(msg_type: int, seq: int, payload: bytes = b"", *, version: int = PROTOCOL_VERSION,
                     flush: bool = False) -> bytes:
    """Frame arbitrary header values and payload (correct COBS and CRC); for fault injection.

    Raises ``ValueError`` if the body would exceed :data:`MAX_BODY` bytes.
    """
    for name, v, hi in (("msg_type", msg_type, 0xFF), ("seq", seq, 0xFFFF), ("version", version, 0xFF)):
        iv = _as_int(v, name)
        if not 0 <= iv <= hi:
            raise ValueError(f"{name} = {iv}: must be 0..{hi}")
    payload = bytes(payload)
    if HEADER_LEN + len(payload) + CRC_LEN > MAX_BODY:
        raise ValueError(f"payload of {len(payload)} bytes: body would exceed MAX_BODY = {MAX_BODY}")
    return _frame(struct.pack("<BBH", version, msg_type, seq) + payload, flush)


def encode_message(msg: Message, *, validate: bool = True, flush: bool = False) -> bytes:
    """Wire bytes of one message: ``[0x00 if flush] COBS(body) 0x00``.

    Parameters
    ----------
    msg : Message
        Any RNP message; ``msg.seq`` goes in the header.
    validate : bool
        Check the specification's ranges (1..8 wheels, watchdog 50..10000 ms). With ``False``
        only the wire types are enforced, so a test or a fault injector can send a CRC-valid
        frame with bad content.
    flush : bool
        Prepend a delimiter so a receiver holding a partial garbage frame drops it first
        (recommended after a timeout or a reconnect).

    Raises
    ------
    CommandOutOfRange
        A value is out of range (or does not fit its wire type).
    TypeError
        Not a message, or a non-integer field.
    """
    if not isinstance(msg, Message) or type(msg) not in MESSAGE_CLASSES.values():
        raise TypeError(f"msg must be an RNP message (Hello, SetWheels, ...), got {type(msg).__name__}")
    ctx = f"RNP {msg.TYPE.name}"
    _rng(ctx, "seq", msg.seq, 0, 0xFFFF)
    return _frame(struct.pack("<BBH", PROTOCOL_VERSION, msg.TYPE, msg.seq) + _payload(msg, validate), flush)


def _content(msg: str, code: NackCode, seq: int, t: int, detail: int = 0) -> ContentError:
    return ContentError(msg, code=code, seq=seq, msg_type=t, detail=detail)


def decode_body(body: bytes, *, direction: str | None = None) -> Message:
    """Decode an already COBS-decoded frame body (header + payload + CRC).

    Same checks and errors as :func:`decode_frame` minus the COBS step.
    """
    body = bytes(body)
    n = len(body)
    if n < HEADER_LEN + CRC_LEN:
        raise FramingError(f"RNP frame body of {n} bytes is shorter than header + CRC ({HEADER_LEN + CRC_LEN})")
    if n > MAX_BODY:
        raise FramingError(f"RNP frame body of {n} bytes exceeds MAX_BODY = {MAX_BODY}")
    expected = crc16_xmodem(body[:-2])
    got = body[-2] | (body[-1] << 8)
    if expected != got:
        raise ChecksumError(f"RNP frame of {n} bytes: CRC mismatch: computed 0x{expected:04x}, "
                            f"received 0x{got:04x}", expected=expected, got=got)
    version, t, seq = struct.unpack_from("<BBH", body)
    p = body[HEADER_LEN:-2]
    tname = MsgType(t).name if t in MESSAGE_CLASSES else f"0x{t:02x}"
    if version != PROTOCOL_VERSION:
        raise _content(f"RNP frame type {tname} seq {seq}: protocol version {version}, this side speaks "
                       f"{PROTOCOL_VERSION}", NackCode.BAD_VERSION, seq, t, PROTOCOL_VERSION)
    allowed = {None: MESSAGE_CLASSES.keys(), "to_device": HOST_TYPES, "to_host": DEVICE_TYPES}.get(direction)
    if allowed is None:
        raise ValueError(f"direction = {direction!r}: must be None, 'to_device' or 'to_host'")
    if t not in allowed:
        side = {"to_device": "host->device", "to_host": "device->host"}.get(direction, "known")
        raise _content(f"RNP frame seq {seq}: type {tname} is not a {side} message type", NackCode.UNKNOWN_TYPE,
                       seq, t)
    mt = MsgType(t)
    ctx = f"RNP {mt.name} seq {seq}"

    def need(length: int):
        if len(p) != length:
            raise _content(f"{ctx}: payload of {len(p)} bytes, expected {length}", NackCode.BAD_LENGTH, seq, t,
                           length)

    if mt == MsgType.SET_WHEELS:
        k = p[0] if p else 0
        need(set_wheels_len(k) if p else 1)
        if not 1 <= k <= MAX_WHEELS:
            raise _content(f"{ctx}: {k} wheels, must be 1..{MAX_WHEELS}", NackCode.WHEEL_COUNT, seq, t, 0)
        return SetWheels(seq=seq, speeds_cps=struct.unpack_from(f"<{k}i", p, 1))
    if mt == MsgType.TELEMETRY:
        k = p[_TEL_HEAD.size - 1] if len(p) >= _TEL_HEAD.size else 0
        need(telemetry_len(k) if len(p) >= _TEL_HEAD.size else _TEL_HEAD.size)
        if not 1 <= k <= MAX_WHEELS:
            raise _content(f"{ctx}: {k} wheels, must be 1..{MAX_WHEELS}", NackCode.WHEEL_COUNT, seq, t, 0)
        ack_seq, time_ms, faults, state, _ = _TEL_HEAD.unpack_from(p)
        vals = struct.unpack_from(f"<{k}i{k}i{k}h", p, _TEL_HEAD.size)
        battery_mv, rx_errors = _TEL_TAIL.unpack_from(p, _TEL_HEAD.size + 10 * k)
        return Telemetry(seq=seq, ack_seq=ack_seq, time_ms=time_ms, faults=faults, state=state,
                         encoder_counts=vals[:k], speeds_cps=vals[k:2 * k], currents_ma=vals[2 * k:],
                         battery_mv=battery_mv, rx_errors=rx_errors)
    need(PAYLOAD_LEN[mt])
    if mt == MsgType.HELLO:
        (v,) = _U8.unpack(p)
        if v != PROTOCOL_VERSION:
            raise _content(f"{ctx}: HELLO asks for protocol version {v}, this side speaks {PROTOCOL_VERSION}",
                           NackCode.BAD_VERSION, seq, t, PROTOCOL_VERSION)
        return Hello(seq=seq, protocol_version=v)
    if mt == MsgType.SET_WATCHDOG:
        (ms,) = _U16.unpack(p)
        if not WATCHDOG_MIN_MS <= ms <= WATCHDOG_MAX_MS:
            raise _content(f"{ctx}: timeout_ms = {ms} out of range {WATCHDOG_MIN_MS}..{WATCHDOG_MAX_MS}",
                           NackCode.OUT_OF_RANGE, seq, t, 0)
        return SetWatchdog(seq=seq, timeout_ms=ms)
    if mt == MsgType.INFO:
        a, pv, ma, mi, pa, nw, caps, cpr, vmax, wd = _INFO.unpack(p)
        if not 1 <= nw <= MAX_WHEELS:
            raise _content(f"{ctx}: n_wheels = {nw}, must be 1..{MAX_WHEELS}", NackCode.OUT_OF_RANGE, seq, t, 5)
        return Info(seq=seq, ack_seq=a, protocol_version=pv, fw_version=(ma, mi, pa), n_wheels=nw,
                    capabilities=caps, counts_per_rev=cpr, max_speed_cps=vmax, watchdog_ms=wd)
    if mt == MsgType.ACK:
        a, at = _ACK.unpack(p)
        return Ack(seq=seq, ack_seq=a, acked_type=at)
    if mt == MsgType.NACK:
        a, nt, code, detail = _NACK.unpack(p)
        return Nack(seq=seq, ack_seq=a, nacked_type=nt, code=code, detail=detail)
    return MESSAGE_CLASSES[mt](seq=seq)     # empty-payload commands


def decode_frame(encoded: bytes, *, direction: str | None = None) -> Message:
    """Decode one encoded frame (the bytes between two 0x00 delimiters).

    Parameters
    ----------
    encoded : bytes
        COBS-encoded frame without delimiter, as returned by :class:`~drivers.cobs.FrameSplitter`.
    direction : {None, "to_device", "to_host"}
        Accept only host->device (``"to_device"``, for a device) or device->host
        (``"to_host"``, for a host) message types; ``None`` accepts both.

    Returns
    -------
    Message

    Raises
    ------
    FramingError
        Bad COBS, body shorter than 6 or longer than :data:`MAX_BODY` bytes (silently dropped
        by a device, counted in ``rx_errors``).
    ChecksumError
        CRC mismatch (silently dropped by a device).
    ContentError
        CRC-valid frame with bad content; a device answers NACK(``code``, ``detail``).
    """
    return decode_body(cobs_decode(encoded), direction=direction)


# ----------------------------------------------------------------------------- streaming
@dataclass
class DecoderStats:
    """Counters of an :class:`RnpDecoder`."""
    messages: int = 0
    framing_errors: int = 0     # bad COBS, bad length (incl. oversize frames from the splitter)
    crc_errors: int = 0
    content_errors: int = 0

    @property
    def errors(self) -> int:
        return self.framing_errors + self.crc_errors + self.content_errors


class RnpDecoder:
    """Incremental RNP decoder: bytes in, messages out.

    Parameters
    ----------
    direction : {None, "to_device", "to_host"}
        Passed to :func:`decode_frame`.
    max_frame_len : int
        Longest encoded frame accepted by the splitter (default :data:`MAX_ENCODED`).
    keep_errors : int
        How many recent errors :attr:`errors` keeps.
    """

    def __init__(self, *, direction: str | None = None, max_frame_len: int = MAX_ENCODED, keep_errors: int = 32):
        if direction not in (None, "to_device", "to_host"):
            raise ValueError(f"direction = {direction!r}: must be None, 'to_device' or 'to_host'")
        self.direction = direction
        self.splitter = FrameSplitter(max_frame_len)
        self.stats = DecoderStats()
        self.errors: deque[ProtocolError] = deque(maxlen=keep_errors)

    def reset(self) -> None:
        self.splitter.reset()

    def feed_with_errors(self, data: bytes) -> list[Message | ProtocolError]:
        """Add bytes; return decoded messages and the errors of rejected frames, in stream order."""
        out: list[Message | ProtocolError] = []
        st = self.stats
        for f in self.splitter._split(data):
            if f is None:
                st.framing_errors += 1
                e = FramingError(f"RNP frame longer than {self.splitter.max_frame_len} encoded bytes dropped")
                self.errors.append(e)
                out.append(e)
                continue
            try:
                m = decode_frame(f, direction=self.direction)
            except ContentError as e:
                st.content_errors += 1
                self.errors.append(e)
                out.append(e)
            except ChecksumError as e:
                st.crc_errors += 1
                self.errors.append(e)
                out.append(e)
            except FramingError as e:
                st.framing_errors += 1
                self.errors.append(e)
                out.append(e)
            else:
                st.messages += 1
                out.append(m)
        return out

    def feed(self, data: bytes) -> list[Message]:
        """Add bytes; return the messages they complete (errors are counted, not raised)."""
        return [m for m in self.feed_with_errors(data) if isinstance(m, Message)]


# ----------------------------------------------------------------------------- helpers
def seq_next(seq: int) -> int:
    """The sequence number after ``seq`` (wraps at 2**16)."""
    return (seq + 1) & 0xFFFF


def seq_delta(new: int, old: int) -> int:
    """Signed distance from ``old`` to ``new`` modulo 2**16, in -32768..32767.

    For device frames, ``seq_delta(seq, last_seq) - 1`` frames were lost in between; for a
    reply, ``ack_seq != seq of the outstanding request`` marks it stale.
    """
    d = (new - old) & 0xFFFF
    return d - 0x10000 if d >= 0x8000 else d


def to_rover_faults(faults: int):
    """Map TELEMETRY fault bits onto :class:`drivers.base.Fault` (REBOOTED has no rover flag:
    the driver handles it by re-running HELLO / SET_WATCHDOG / ARM)."""
    from .base import Fault
    f = RnpFault(faults & 0xFFFF)
    out = Fault.NONE
    for bit, flag in ((RnpFault.WATCHDOG, Fault.WATCHDOG), (RnpFault.ESTOP, Fault.ESTOP),
                      (RnpFault.OVERCURRENT, Fault.OVERCURRENT), (RnpFault.BATTERY_LOW, Fault.BATTERY_LOW),
                      (RnpFault.DRIVER_FAULT, Fault.DEVICE_FAULT), (RnpFault.ENCODER_FAULT, Fault.ENCODER_FAULT),
                      (RnpFault.OVERTEMP, Fault.OVERTEMP)):
        if bit in f:
            out |= flag
    return out
