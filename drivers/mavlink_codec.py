"""MAVLink framing, pure: bytes in, frames out; frames to bytes. No port, thread, clock or pymavlink.

The MAVLink driver (:mod:`drivers.mavlink`) talks to the vehicle through pymavlink; the virtual ArduPilot
rover (:mod:`sim.devices.mavlink`) speaks through this module, so the two implementations check each
other on every byte. Only the messages a rover link needs are defined here (:data:`MESSAGES`).

Wire format (https://mavlink.io/en/guide/serialization.html)
------------------------------------------------------------
MAVLink 2::

    FD len incompat compat seq sysid compid msgid(3 bytes, LE) payload[len] crc(2, LE) [signature(13)]

MAVLink 1::

    FE len seq sysid compid msgid(1) payload[len] crc(2, LE)

* **CRC**: CRC-16/MCRF4XX (the "X.25" accumulate of the MAVLink reference code: polynomial 0x1021
  reflected = 0x8408, initial 0xFFFF, input and output reflected, no final XOR; check value
  ``crc("123456789") == 0x6F91``) over every byte after the start marker up to the end of the payload,
  then over one more byte, the message's **CRC_EXTRA**.
* **CRC_EXTRA** is derived from the message definition (:func:`crc_extra`): the same CRC over
  ``"NAME "``, then for each non-extension field in wire order ``"type "`` and ``"name "`` (and the
  array length as one byte for arrays), folded to 8 bits as ``(crc & 0xFF) ^ (crc >> 8)``. A sender and
  receiver with different definitions of a message therefore reject each other's frames.
* **Payload order**: non-extension fields sorted by the size of their base type, largest first (stable,
  so equal sizes keep their XML order), then the extension fields in XML order; little-endian.
* **MAVLink 2 truncation**: trailing zero bytes of the payload are not sent (at least one byte stays); a
  receiver zero-fills a short payload and ignores bytes past the fields it knows (a newer definition).
  MAVLink 1 carries no extension fields and no truncation.
* **incompat_flags**: bit 0 = signed (a 13-byte signature follows the CRC). A frame with any other
  incompatibility bit must be dropped. Signatures are carried but not verified here.

Parsing and resynchronisation (:class:`FrameParser`)
----------------------------------------------------
The parser looks for a start marker (``FD`` or ``FE``); a candidate frame whose header is impossible, whose
message id is not in :data:`MESSAGES` (its CRC cannot be checked), or whose CRC does not match is rejected by
advancing **one byte** — never by the candidate's claimed length — so a truncated frame cannot take the
next good frame with it: after any corruption the next intact frame is found (a bogus length only delays
it until enough bytes arrived to disprove the candidate). :meth:`FrameParser.feed` never raises.

Public API
----------
crc16_mcrf4xx(data, crc=0xFFFF) -> int
crc_extra(msgdef) -> int
MessageDef, Field, MESSAGES (by name), MESSAGES_BY_ID
encode_payload(name, values) -> bytes                  full-length payload (no truncation)
decode_payload(name, payload) -> dict
encode_frame(name, values, *, seq, sysid, compid, version=2) -> bytes
encode_raw_frame(msgid, payload, *, seq, sysid, compid, crc_extra, version=2, incompat=0, compat=0) -> bytes
Frame (one received frame), FrameParser (``feed(data) -> list[Frame]``, :attr:`FrameParser.stats`)

Constants of the common / ardupilotmega dialects a rover link uses are here too: vehicle types, mode
flags, states, commands, results, frames, severities, the SET_POSITION_TARGET type masks
(:data:`TYPE_MASK_VELOCITY`, :data:`TYPE_MASK_VELOCITY_YAW_RATE`), ArduPilot Rover's mode numbers
(:class:`RoverMode`) and the force-arm magic value (:data:`FORCE_ARM_MAGIC`).
"""
from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

__all__ = ["STX_V1", "STX_V2", "IFLAG_SIGNED", "SIGNATURE_LEN", "crc16_mcrf4xx", "crc_extra", "Field", "MessageDef",
           "MESSAGES", "MESSAGES_BY_ID", "encode_payload", "decode_payload", "encode_frame", "encode_raw_frame",
           "Frame", "FrameParser", "ParserStats", "RoverMode", "rover_mode_name",
           "MAV_TYPE_GCS", "MAV_TYPE_GROUND_ROVER", "MAV_TYPE_SURFACE_BOAT", "MAV_AUTOPILOT_ARDUPILOTMEGA",
           "MAV_AUTOPILOT_INVALID", "MAV_MODE_FLAG_SAFETY_ARMED", "MAV_MODE_FLAG_MANUAL_INPUT_ENABLED",
           "MAV_MODE_FLAG_GUIDED_ENABLED", "MAV_MODE_FLAG_CUSTOM_MODE_ENABLED", "MavState", "MavResult", "MavCmd",
           "MavSeverity", "MAV_FRAME_LOCAL_NED", "MAV_FRAME_LOCAL_OFFSET_NED", "MAV_FRAME_BODY_NED",
           "MAV_FRAME_BODY_OFFSET_NED", "TYPE_MASK_VELOCITY", "TYPE_MASK_VELOCITY_YAW_RATE", "FORCE_ARM_MAGIC",
           "MavDataStream", "MAX_FRAME_LEN"]

STX_V1 = 0xFE
STX_V2 = 0xFD
IFLAG_SIGNED = 0x01
SIGNATURE_LEN = 13
_HEADER_V1 = 6
_HEADER_V2 = 10
MAX_FRAME_LEN = _HEADER_V2 + 255 + 2 + SIGNATURE_LEN

# ----------------------------------------------------------------------------- dialect constants
MAV_TYPE_GCS = 6
MAV_TYPE_GROUND_ROVER = 10
MAV_TYPE_SURFACE_BOAT = 11
MAV_AUTOPILOT_ARDUPILOTMEGA = 3
MAV_AUTOPILOT_INVALID = 8

MAV_MODE_FLAG_CUSTOM_MODE_ENABLED = 1
MAV_MODE_FLAG_TEST_ENABLED = 2
MAV_MODE_FLAG_AUTO_ENABLED = 4
MAV_MODE_FLAG_GUIDED_ENABLED = 8
MAV_MODE_FLAG_STABILIZE_ENABLED = 16
MAV_MODE_FLAG_HIL_ENABLED = 32
MAV_MODE_FLAG_MANUAL_INPUT_ENABLED = 64
MAV_MODE_FLAG_SAFETY_ARMED = 128

MAV_FRAME_LOCAL_NED = 1
MAV_FRAME_LOCAL_OFFSET_NED = 7
MAV_FRAME_BODY_NED = 8
MAV_FRAME_BODY_OFFSET_NED = 9

# POSITION_TARGET_TYPEMASK: a set bit means "ignore this field"
TM_X, TM_Y, TM_Z = 1, 2, 4
TM_VX, TM_VY, TM_VZ = 8, 16, 32
TM_AX, TM_AY, TM_AZ = 64, 128, 256
TM_FORCE = 512
TM_YAW = 1024
TM_YAW_RATE = 2048
#: vx, vy used; position, vz, accelerations, yaw and yaw rate ignored (ArduPilot: "Use Velocity", 3559).
TYPE_MASK_VELOCITY = TM_X | TM_Y | TM_Z | TM_VZ | TM_AX | TM_AY | TM_AZ | TM_YAW | TM_YAW_RATE
#: vx, vy and yaw rate used (ArduPilot: "Use Vel+Yaw Rate", 1511 = 0x05E7).
TYPE_MASK_VELOCITY_YAW_RATE = TYPE_MASK_VELOCITY & ~TM_YAW_RATE

#: MAV_CMD_COMPONENT_ARM_DISARM param2 value that bypasses the arming (or disarming) checks.
FORCE_ARM_MAGIC = 21196


class MavState(enum.IntEnum):
    UNINIT = 0
    BOOT = 1
    CALIBRATING = 2
    STANDBY = 3
    ACTIVE = 4
    CRITICAL = 5
    EMERGENCY = 6
    POWEROFF = 7
    FLIGHT_TERMINATION = 8


class MavResult(enum.IntEnum):
    ACCEPTED = 0
    TEMPORARILY_REJECTED = 1
    DENIED = 2
    UNSUPPORTED = 3
    FAILED = 4
    IN_PROGRESS = 5
    CANCELLED = 6


class MavCmd(enum.IntEnum):
    DO_SET_MODE = 176
    PREFLIGHT_REBOOT_SHUTDOWN = 246
    COMPONENT_ARM_DISARM = 400
    SET_MESSAGE_INTERVAL = 511
    REQUEST_MESSAGE = 512


class MavSeverity(enum.IntEnum):
    EMERGENCY = 0
    ALERT = 1
    CRITICAL = 2
    ERROR = 3
    WARNING = 4
    NOTICE = 5
    INFO = 6
    DEBUG = 7


class MavDataStream(enum.IntEnum):
    """REQUEST_DATA_STREAM groups (deprecated by SET_MESSAGE_INTERVAL; ArduPilot still honours them)."""
    ALL = 0
    RAW_SENSORS = 1
    EXTENDED_STATUS = 2
    RC_CHANNELS = 3
    RAW_CONTROLLER = 4
    POSITION = 6
    EXTRA1 = 10
    EXTRA2 = 11
    EXTRA3 = 12


class RoverMode(enum.IntEnum):
    """ArduPilot Rover flight modes (HEARTBEAT.custom_mode; ardupilotmega ROVER_MODE)."""
    MANUAL = 0
    ACRO = 1
    STEERING = 3
    HOLD = 4
    LOITER = 5
    FOLLOW = 6
    SIMPLE = 7
    DOCK = 8
    CIRCLE = 9
    AUTO = 10
    RTL = 11
    SMART_RTL = 12
    GUIDED = 15
    INITIALISING = 16


def rover_mode_name(mode: int) -> str:
    """``"GUIDED"`` for 15, ``"mode 42"`` for a number ArduPilot Rover does not define."""
    try:
        return RoverMode(int(mode)).name
    except ValueError:
        return f"mode {int(mode)}"


# ----------------------------------------------------------------------------- CRC
def _make_table() -> tuple[int, ...]:
    out = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x8408 if c & 1 else c >> 1
        out.append(c)
    return tuple(out)


_CRC_TABLE = _make_table()


def crc16_mcrf4xx(data, crc: int = 0xFFFF) -> int:
    """CRC-16/MCRF4XX of ``data`` continuing from ``crc`` (0xFFFF starts a new one); what MAVLink calls
    the X.25 checksum. Table-driven; ``crc16_mcrf4xx(b"123456789") == 0x6F91``."""
    if isinstance(crc, bool) or not isinstance(crc, int) or not 0 <= crc <= 0xFFFF:
        raise ValueError(f"crc = {crc!r}: must be an int in 0..0xFFFF")
    t = _CRC_TABLE
    for b in bytes(data):
        crc = (crc >> 8) ^ t[(crc ^ b) & 0xFF]
    return crc


# ----------------------------------------------------------------------------- message definitions
_TYPES = {  # MAVLink type -> (struct code, size)
    "uint8_t": ("B", 1), "int8_t": ("b", 1), "char": ("s", 1),
    "uint16_t": ("H", 2), "int16_t": ("h", 2),
    "uint32_t": ("I", 4), "int32_t": ("i", 4), "float": ("f", 4),
    "uint64_t": ("Q", 8), "int64_t": ("q", 8), "double": ("d", 8),
}
_INT_RANGE = {"uint8_t": (0, 0xFF), "int8_t": (-0x80, 0x7F), "uint16_t": (0, 0xFFFF), "int16_t": (-0x8000, 0x7FFF),
              "uint32_t": (0, 0xFFFFFFFF), "int32_t": (-0x80000000, 0x7FFFFFFF),
              "uint64_t": (0, (1 << 64) - 1), "int64_t": (-(1 << 63), (1 << 63) - 1)}


@dataclass(frozen=True)
class Field:
    """One message field: MAVLink type name (``"uint16_t"``...), name, array length (0 = scalar)."""
    name: str
    type: str
    array_len: int = 0
    extension: bool = False


@dataclass(frozen=True, eq=False)
class MessageDef:
    """A message definition. ``fields`` are in XML order; :attr:`wire_fields` in payload order."""
    msgid: int
    name: str
    fields: tuple

    def __post_init__(self):
        for f in self.fields:
            if f.type not in _TYPES:
                raise ValueError(f"{self.name}.{f.name}: unknown MAVLink type {f.type!r}")
        base = [f for f in self.fields if not f.extension]
        ext = [f for f in self.fields if f.extension]
        wire = tuple(sorted(base, key=lambda f: -_TYPES[f.type][1])) + tuple(ext)   # sorted() is stable
        object.__setattr__(self, "wire_fields", wire)
        codes = "".join((f"{f.array_len}s" if f.type == "char" else f"{max(f.array_len, 1)}{_TYPES[f.type][0]}")
                        for f in wire)
        object.__setattr__(self, "struct", struct.Struct("<" + codes))
        object.__setattr__(self, "base_len", sum(_flen(f) for f in base))
        object.__setattr__(self, "max_len", self.struct.size)
        object.__setattr__(self, "crc_extra", crc_extra(self))


def _flen(f: Field) -> int:
    return _TYPES[f.type][1] * max(f.array_len, 1)


def crc_extra(msgdef: MessageDef) -> int:
    """The CRC_EXTRA byte of a message definition (see the module docstring)."""
    base = [f for f in msgdef.fields if not f.extension]
    wire = sorted(base, key=lambda f: -_TYPES[f.type][1])
    crc = crc16_mcrf4xx((msgdef.name + " ").encode("ascii"))
    for f in wire:
        crc = crc16_mcrf4xx((f.type + " ").encode("ascii"), crc)
        crc = crc16_mcrf4xx((f.name + " ").encode("ascii"), crc)
        if f.array_len:
            crc = crc16_mcrf4xx(bytes([f.array_len]), crc)
    return (crc & 0xFF) ^ (crc >> 8)


def _F(spec: str) -> tuple:
    """Fields from ``"type name[len], ...; ext_type ext_name"`` (``;`` starts the extensions)."""
    out = []
    base, _, ext = spec.partition(";")
    for part, is_ext in ((base, False), (ext, True)):
        for item in part.split(","):
            item = item.strip()
            if not item:
                continue
            typ, name = item.split()
            n = 0
            if "[" in name:
                name, n = name[:-1].split("[")
                n = int(n)
            out.append(Field(name, typ, n, is_ext))
    return tuple(out)


# Definitions from common.xml / ardupilotmega.xml (XML order; ';' marks the <extensions/> tag).
_DEFS = (
    (0, "HEARTBEAT", "uint8_t type, uint8_t autopilot, uint8_t base_mode, uint32_t custom_mode, uint8_t system_status, "
                     "uint8_t mavlink_version"),
    (1, "SYS_STATUS", "uint32_t onboard_control_sensors_present, uint32_t onboard_control_sensors_enabled, "
                      "uint32_t onboard_control_sensors_health, uint16_t load, uint16_t voltage_battery, "
                      "int16_t current_battery, int8_t battery_remaining, uint16_t drop_rate_comm, uint16_t errors_comm, "
                      "uint16_t errors_count1, uint16_t errors_count2, uint16_t errors_count3, uint16_t errors_count4; "
                      "uint32_t onboard_control_sensors_present_extended, "
                      "uint32_t onboard_control_sensors_enabled_extended, "
                      "uint32_t onboard_control_sensors_health_extended"),
    (2, "SYSTEM_TIME", "uint64_t time_unix_usec, uint32_t time_boot_ms"),
    (11, "SET_MODE", "uint8_t target_system, uint8_t base_mode, uint32_t custom_mode"),
    (24, "GPS_RAW_INT", "uint64_t time_usec, uint8_t fix_type, int32_t lat, int32_t lon, int32_t alt, uint16_t eph, "
                        "uint16_t epv, uint16_t vel, uint16_t cog, uint8_t satellites_visible; int32_t alt_ellipsoid, "
                        "uint32_t h_acc, uint32_t v_acc, uint32_t vel_acc, uint32_t hdg_acc, uint16_t yaw"),
    (27, "RAW_IMU", "uint64_t time_usec, int16_t xacc, int16_t yacc, int16_t zacc, int16_t xgyro, int16_t ygyro, "
                    "int16_t zgyro, int16_t xmag, int16_t ymag, int16_t zmag; uint8_t id, int16_t temperature"),
    (30, "ATTITUDE", "uint32_t time_boot_ms, float roll, float pitch, float yaw, float rollspeed, float pitchspeed, "
                     "float yawspeed"),
    (32, "LOCAL_POSITION_NED", "uint32_t time_boot_ms, float x, float y, float z, float vx, float vy, float vz"),
    (33, "GLOBAL_POSITION_INT", "uint32_t time_boot_ms, int32_t lat, int32_t lon, int32_t alt, int32_t relative_alt, "
                                "int16_t vx, int16_t vy, int16_t vz, uint16_t hdg"),
    (66, "REQUEST_DATA_STREAM", "uint8_t target_system, uint8_t target_component, uint8_t req_stream_id, "
                                "uint16_t req_message_rate, uint8_t start_stop"),
    (74, "VFR_HUD", "float airspeed, float groundspeed, int16_t heading, uint16_t throttle, float alt, float climb"),
    (76, "COMMAND_LONG", "uint8_t target_system, uint8_t target_component, uint16_t command, uint8_t confirmation, "
                         "float param1, float param2, float param3, float param4, float param5, float param6, "
                         "float param7"),
    (77, "COMMAND_ACK", "uint16_t command, uint8_t result; uint8_t progress, int32_t result_param2, "
                        "uint8_t target_system, uint8_t target_component"),
    (84, "SET_POSITION_TARGET_LOCAL_NED", "uint32_t time_boot_ms, uint8_t target_system, uint8_t target_component, "
                                          "uint8_t coordinate_frame, uint16_t type_mask, float x, float y, float z, "
                                          "float vx, float vy, float vz, float afx, float afy, float afz, float yaw, "
                                          "float yaw_rate"),
    (147, "BATTERY_STATUS", "uint8_t id, uint8_t battery_function, uint8_t type, int16_t temperature, "
                            "uint16_t voltages[10], int16_t current_battery, int32_t current_consumed, "
                            "int32_t energy_consumed, int8_t battery_remaining; int32_t time_remaining, "
                            "uint8_t charge_state, uint16_t voltages_ext[4], uint8_t mode, uint32_t fault_bitmask"),
    (242, "HOME_POSITION", "int32_t latitude, int32_t longitude, int32_t altitude, float x, float y, float z, float q[4], "
                           "float approach_x, float approach_y, float approach_z; uint64_t time_usec"),
    (244, "MESSAGE_INTERVAL", "uint16_t message_id, int32_t interval_us"),
    (253, "STATUSTEXT", "uint8_t severity, char text[50]; uint16_t id, uint8_t chunk_seq"),
    (9000, "WHEEL_DISTANCE", "uint64_t time_usec, uint8_t count, double distance[16]"),
)

#: Message definitions by name.
MESSAGES: dict[str, MessageDef] = {name: MessageDef(mid, name, _F(spec)) for mid, name, spec in _DEFS}
#: Message definitions by id.
MESSAGES_BY_ID: dict[int, MessageDef] = {d.msgid: d for d in MESSAGES.values()}


def _msgdef(name) -> MessageDef:
    if isinstance(name, MessageDef):
        return name
    try:
        return MESSAGES[name]
    except KeyError:
        raise ValueError(f"message {name!r}: not defined here (known: {', '.join(MESSAGES)})") from None


# ----------------------------------------------------------------------------- payloads
def encode_payload(name, values: dict | None = None) -> bytes:
    """Full-length payload of message ``name`` (fields not given are 0 / empty).

    Raises ``ValueError`` naming the field for an unknown name, a value outside its type's range or a
    text that does not fit.
    """
    d = _msgdef(name)
    values = dict(values or {})
    unknown = set(values) - {f.name for f in d.fields}
    if unknown:
        raise ValueError(f"{d.name}: unknown fields {sorted(unknown)}")
    args = []
    for f in d.wire_fields:
        v = values.get(f.name)
        if f.type == "char":
            b = v.encode("utf-8") if isinstance(v, str) else bytes(v or b"")
            if len(b) > f.array_len:
                raise ValueError(f"{d.name}.{f.name}: {len(b)} bytes do not fit char[{f.array_len}]")
            args.append(b)
        elif f.array_len:
            seq = list(v) if v is not None else []
            if len(seq) > f.array_len:
                raise ValueError(f"{d.name}.{f.name}: {len(seq)} values for an array of {f.array_len}")
            seq = seq + [0] * (f.array_len - len(seq))
            args.extend(_check(d, f, x) for x in seq)
        else:
            args.append(_check(d, f, 0 if v is None else v))
    return d.struct.pack(*args)


def _check(d: MessageDef, f: Field, v):
    if f.type in ("float", "double"):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"{d.name}.{f.name} = {v!r}: must be a number")
        return float(v)
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int):
        try:
            v = int(v.__index__())
        except (AttributeError, TypeError):
            raise ValueError(f"{d.name}.{f.name} = {v!r}: must be an int") from None
    lo, hi = _INT_RANGE[f.type]
    if not lo <= v <= hi:
        raise ValueError(f"{d.name}.{f.name} = {v}: out of range for {f.type} [{lo}, {hi}]")
    return v


def decode_payload(name, payload) -> dict:
    """Field values of a payload (zero-filled when short, extra bytes ignored). Text fields come back as
    ``str`` cut at the first NUL; arrays as tuples."""
    d = _msgdef(name)
    p = bytes(payload)
    if len(p) < d.max_len:
        p = p + bytes(d.max_len - len(p))
    vals = d.struct.unpack(p[:d.max_len])
    out = {}
    i = 0
    for f in d.wire_fields:
        if f.type == "char":
            out[f.name] = vals[i].split(b"\0", 1)[0].decode("utf-8", "replace")
            i += 1
        elif f.array_len:
            out[f.name] = tuple(vals[i:i + f.array_len])
            i += f.array_len
        else:
            out[f.name] = vals[i]
            i += 1
    return out


# ----------------------------------------------------------------------------- frames
def _u8(v, what) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 0xFF:
        raise ValueError(f"{what} = {v!r}: must be an int in 0..255")
    return v


def encode_raw_frame(msgid: int, payload: bytes, *, seq: int, sysid: int, compid: int, crc_extra: int,
                     version: int = 2, incompat: int = 0, compat: int = 0) -> bytes:
    """One frame around ``payload`` as given (no truncation, no check of the content): for tests and fault
    injection. ``incompat`` bit 0 appends a zero signature block."""
    _u8(seq, "seq")
    _u8(sysid, "sysid")
    _u8(compid, "compid")
    _u8(crc_extra, "crc_extra")
    payload = bytes(payload)
    if len(payload) > 255:
        raise ValueError(f"payload of {len(payload)} bytes: at most 255")
    if version == 2:
        if not (isinstance(msgid, int) and 0 <= msgid < (1 << 24)):
            raise ValueError(f"msgid = {msgid!r}: must be in 0..2**24-1 for MAVLink 2")
        head = bytes((len(payload), _u8(incompat, "incompat"), _u8(compat, "compat"), seq, sysid, compid,
                      msgid & 0xFF, (msgid >> 8) & 0xFF, msgid >> 16))
        stx = STX_V2
    elif version == 1:
        if not (isinstance(msgid, int) and 0 <= msgid <= 255):
            raise ValueError(f"msgid = {msgid!r}: must be in 0..255 for MAVLink 1")
        head = bytes((len(payload), seq, sysid, compid, msgid))
        stx = STX_V1
    else:
        raise ValueError(f"version = {version!r}: must be 1 or 2")
    crc = crc16_mcrf4xx(bytes((crc_extra,)), crc16_mcrf4xx(head + payload))
    out = bytes((stx,)) + head + payload + struct.pack("<H", crc)
    if version == 2 and incompat & IFLAG_SIGNED:
        out += bytes(SIGNATURE_LEN)
    return out


def encode_frame(name, values: dict | None = None, *, seq: int, sysid: int, compid: int, version: int = 2) -> bytes:
    """Wire bytes of message ``name``: MAVLink 2 with trailing zeros truncated, or MAVLink 1 (base fields only)."""
    d = _msgdef(name)
    payload = encode_payload(d, values)
    if version == 2:
        n = len(payload)
        while n > 1 and payload[n - 1] == 0:
            n -= 1
        payload = payload[:n]
    elif version == 1:
        if d.msgid > 255:
            raise ValueError(f"{d.name} (id {d.msgid}) cannot be sent in MAVLink 1 (ids 0..255)")
        payload = payload[:d.base_len]
    return encode_raw_frame(d.msgid, payload, seq=seq, sysid=sysid, compid=compid, crc_extra=d.crc_extra,
                            version=version)


@dataclass(frozen=True)
class Frame:
    """One received frame whose CRC checked. ``payload`` is as received (possibly truncated)."""
    version: int
    seq: int
    sysid: int
    compid: int
    msgid: int
    payload: bytes
    incompat: int = 0
    compat: int = 0
    signature: bytes = b""

    @property
    def name(self) -> str:
        return MESSAGES_BY_ID[self.msgid].name

    def fields(self) -> dict:
        """The decoded field values (see :func:`decode_payload`)."""
        return decode_payload(MESSAGES_BY_ID[self.msgid], self.payload)


@dataclass
class ParserStats:
    """Counters of a :class:`FrameParser` (monotonically increasing)."""
    frames: int = 0
    bytes_in: int = 0
    garbage_bytes: int = 0        # bytes skipped while looking for a start marker
    bad_crc: int = 0
    bad_header: int = 0           # unknown incompat flags, impossible length
    unknown_msgid: int = 0        # rejected: CRC_EXTRA unknown, cannot be checked
    v1_frames: int = 0
    signed_frames: int = 0


class FrameParser:
    """Incremental MAVLink 1/2 frame parser: ``feed(data) -> list[Frame]`` (see the module docstring).

    Parameters
    ----------
    messages : dict msgid -> MessageDef
        Frames of other ids are rejected (their CRC cannot be checked). Default :data:`MESSAGES_BY_ID`.
    """

    def __init__(self, messages: dict | None = None):
        self.messages = MESSAGES_BY_ID if messages is None else dict(messages)
        self.stats = ParserStats()
        self._buf = bytearray()

    def reset(self) -> None:
        """Drop buffered bytes (after a reboot or reconnect)."""
        self._buf.clear()

    @property
    def pending(self) -> int:
        """Bytes held waiting for the rest of a candidate frame."""
        return len(self._buf)

    def feed(self, data) -> list[Frame]:
        """Frames completed by ``data``, in stream order. Never raises on any byte sequence."""
        data = bytes(data)
        st = self.stats
        st.bytes_in += len(data)
        buf = self._buf
        buf += data
        out: list[Frame] = []
        i, n = 0, len(buf)
        while i < n:
            j1 = buf.find(STX_V2, i)
            j2 = buf.find(STX_V1, i)
            j = j1 if j2 < 0 else (j2 if j1 < 0 else min(j1, j2))
            if j < 0:
                st.garbage_bytes += n - i
                i = n
                break
            st.garbage_bytes += j - i
            i = j
            v2 = buf[i] == STX_V2
            hlen = _HEADER_V2 if v2 else _HEADER_V1
            if n - i < hlen:
                break                                     # wait for the header
            plen = buf[i + 1]
            if v2:
                incompat, compat = buf[i + 2], buf[i + 3]
                seq, sysid, compid = buf[i + 4], buf[i + 5], buf[i + 6]
                msgid = buf[i + 7] | (buf[i + 8] << 8) | (buf[i + 9] << 16)
                if incompat & ~IFLAG_SIGNED or plen == 0:
                    st.bad_header += 1
                    i += 1
                    continue
                sig = SIGNATURE_LEN if incompat & IFLAG_SIGNED else 0
            else:
                incompat = compat = sig = 0
                seq, sysid, compid, msgid = buf[i + 2], buf[i + 3], buf[i + 4], buf[i + 5]
            d = self.messages.get(msgid)
            if d is None:
                st.unknown_msgid += 1
                i += 1
                continue
            if not v2 and plen != d.base_len:
                st.bad_header += 1
                i += 1
                continue
            total = hlen + plen + 2 + sig
            if n - i < total:
                break                                     # wait for the rest
            end = i + hlen + plen
            crc = crc16_mcrf4xx(bytes((d.crc_extra,)), crc16_mcrf4xx(buf[i + 1:end]))
            if crc != (buf[end] | (buf[end + 1] << 8)):
                st.bad_crc += 1
                i += 1
                continue
            out.append(Frame(2 if v2 else 1, seq, sysid, compid, msgid, bytes(buf[i + hlen:end]), incompat, compat,
                             bytes(buf[end + 2:end + 2 + sig])))
            st.frames += 1
            st.v1_frames += 0 if v2 else 1
            st.signed_frames += 1 if sig else 0
            i += total
        del buf[:i]
        if len(buf) > 4 * MAX_FRAME_LEN:                  # cannot happen (a candidate is <= MAX_FRAME_LEN): bound it
            st.garbage_bytes += len(buf) - MAX_FRAME_LEN
            del buf[:len(buf) - MAX_FRAME_LEN]
        return out
