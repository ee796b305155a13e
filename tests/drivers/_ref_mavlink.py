"""MAVLink by hand, from the specification (https://mavlink.io/en/guide/serialization.html and the message
definitions in common.xml): slow, obvious oracles for tests. Nothing here imports drivers.mavlink_codec.

* CRC-16/MCRF4XX twice: bitwise from its parameters (poly 0x1021 reflected = 0x8408, init 0xFFFF,
  reflected in/out, no final XOR) and the MAVLink reference code's byte-wise "X.25 accumulate" formula.
* CRC_EXTRA from the published algorithm over a message's fields, typed here in wire order by hand.
* Frames assembled field by field with struct.
"""
import struct

#: CRC_EXTRA values as listed with the message definitions (MAVLink generator output, common.xml /
#: ardupilotmega.xml).
SPEC_CRC_EXTRA = {"HEARTBEAT": 50, "SYS_STATUS": 124, "SYSTEM_TIME": 137, "SET_MODE": 89, "GPS_RAW_INT": 24,
                  "RAW_IMU": 144, "ATTITUDE": 39, "LOCAL_POSITION_NED": 185, "GLOBAL_POSITION_INT": 104,
                  "REQUEST_DATA_STREAM": 148, "VFR_HUD": 20, "COMMAND_LONG": 152, "COMMAND_ACK": 143,
                  "SET_POSITION_TARGET_LOCAL_NED": 143, "BATTERY_STATUS": 154, "HOME_POSITION": 104,
                  "MESSAGE_INTERVAL": 95, "STATUSTEXT": 83, "WHEEL_DISTANCE": 113}

#: Non-extension fields in wire order (sorted by type size, XML order kept within a size), by hand.
WIRE_FIELDS = {
    "HEARTBEAT": [("uint32_t", "custom_mode"), ("uint8_t", "type"), ("uint8_t", "autopilot"), ("uint8_t", "base_mode"),
                  ("uint8_t", "system_status"), ("uint8_t", "mavlink_version")],
    "ATTITUDE": [("uint32_t", "time_boot_ms"), ("float", "roll"), ("float", "pitch"), ("float", "yaw"),
                 ("float", "rollspeed"), ("float", "pitchspeed"), ("float", "yawspeed")],
    "COMMAND_LONG": [("float", "param1"), ("float", "param2"), ("float", "param3"), ("float", "param4"),
                     ("float", "param5"), ("float", "param6"), ("float", "param7"), ("uint16_t", "command"),
                     ("uint8_t", "target_system"), ("uint8_t", "target_component"), ("uint8_t", "confirmation")],
    "COMMAND_ACK": [("uint16_t", "command"), ("uint8_t", "result")],
    "SET_POSITION_TARGET_LOCAL_NED": [("uint32_t", "time_boot_ms"), ("float", "x"), ("float", "y"), ("float", "z"),
                                      ("float", "vx"), ("float", "vy"), ("float", "vz"), ("float", "afx"),
                                      ("float", "afy"), ("float", "afz"), ("float", "yaw"), ("float", "yaw_rate"),
                                      ("uint16_t", "type_mask"), ("uint8_t", "target_system"),
                                      ("uint8_t", "target_component"), ("uint8_t", "coordinate_frame")],
    "STATUSTEXT": [("uint8_t", "severity"), ("char", "text", 50)],
    "GLOBAL_POSITION_INT": [("uint32_t", "time_boot_ms"), ("int32_t", "lat"), ("int32_t", "lon"), ("int32_t", "alt"),
                            ("int32_t", "relative_alt"), ("int16_t", "vx"), ("int16_t", "vy"), ("int16_t", "vz"),
                            ("uint16_t", "hdg")],
    "BATTERY_STATUS": [("int32_t", "current_consumed"), ("int32_t", "energy_consumed"), ("int16_t", "temperature"),
                       ("uint16_t", "voltages", 10), ("int16_t", "current_battery"), ("uint8_t", "id"),
                       ("uint8_t", "battery_function"), ("uint8_t", "type"), ("int8_t", "battery_remaining")],
}


def crc16_mcrf4xx_bitwise(data: bytes, crc: int = 0xFFFF) -> int:
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return crc


def crc_x25_accumulate(data: bytes, crc: int = 0xFFFF) -> int:
    """The MAVLink reference implementation's crc_accumulate, byte by byte."""
    for b in data:
        tmp = b ^ (crc & 0xFF)
        tmp = (tmp ^ (tmp << 4)) & 0xFF
        crc = ((crc >> 8) ^ (tmp << 8) ^ (tmp << 3) ^ (tmp >> 4)) & 0xFFFF
    return crc


def crc_extra_ref(name: str, wire_fields) -> int:
    crc = crc16_mcrf4xx_bitwise((name + " ").encode())
    for f in wire_fields:
        crc = crc16_mcrf4xx_bitwise((f[0] + " ").encode(), crc)
        crc = crc16_mcrf4xx_bitwise((f[1] + " ").encode(), crc)
        if len(f) > 2:
            crc = crc16_mcrf4xx_bitwise(bytes([f[2]]), crc)
    return (crc & 0xFF) ^ (crc >> 8)


def v2_frame(msgid: int, payload: bytes, *, seq: int, sysid: int, compid: int, crc_extra: int, incompat: int = 0,
             compat: int = 0) -> bytes:
    head = struct.pack("<BBBBBBBHB", 0xFD, len(payload), incompat, compat, seq, sysid, compid, msgid & 0xFFFF,
                       msgid >> 16)
    crc = crc16_mcrf4xx_bitwise(head[1:] + payload + bytes([crc_extra]))
    return head + payload + struct.pack("<H", crc)


def v1_frame(msgid: int, payload: bytes, *, seq: int, sysid: int, compid: int, crc_extra: int) -> bytes:
    head = struct.pack("<BBBBBB", 0xFE, len(payload), seq, sysid, compid, msgid)
    crc = crc16_mcrf4xx_bitwise(head[1:] + payload + bytes([crc_extra]))
    return head + payload + struct.pack("<H", crc)


def trim(payload: bytes) -> bytes:
    """MAVLink 2 truncation: trailing zero bytes go, the first byte always stays."""
    n = len(payload)
    while n > 1 and payload[n - 1] == 0:
        n -= 1
    return payload[:n]


def heartbeat_payload(custom_mode, type_, autopilot, base_mode, system_status, mavlink_version=3) -> bytes:
    return struct.pack("<IBBBBB", custom_mode, type_, autopilot, base_mode, system_status, mavlink_version)


def command_long_payload(target_system, target_component, command, confirmation, *params) -> bytes:
    p = list(params) + [0.0] * (7 - len(params))
    return struct.pack("<7fHBBB", *p, command, target_system, target_component, confirmation)


def command_ack_payload(command, result, progress=0, result_param2=0, target_system=0, target_component=0) -> bytes:
    return struct.pack("<HBBiBB", command, result, progress, result_param2, target_system, target_component)


def target_payload(time_boot_ms, target_system, target_component, frame, type_mask, vx, vy, yaw_rate) -> bytes:
    return struct.pack("<I11fHBBB", time_boot_ms, 0.0, 0.0, 0.0, vx, vy, 0.0, 0.0, 0.0, 0.0, 0.0, yaw_rate, type_mask,
                       target_system, target_component, frame)


def parse_v2(frame: bytes) -> dict:
    """Header fields and payload of one MAVLink 2 frame, CRC checked against SPEC_CRC_EXTRA by message id."""
    stx, ln, inc, comp, seq, sysid, compid, lo, hi = struct.unpack("<BBBBBBBHB", frame[:10])
    assert stx == 0xFD
    msgid = lo | (hi << 16)
    payload = frame[10:10 + ln]
    return {"len": ln, "incompat": inc, "seq": seq, "sysid": sysid, "compid": compid, "msgid": msgid,
            "payload": payload, "crc": struct.unpack("<H", frame[10 + ln:12 + ln])[0]}


def split_v2(stream: bytes) -> list[dict]:
    """Consecutive, well-formed MAVLink 2 frames (no garbage) split by their length bytes."""
    out, i = [], 0
    while i < len(stream):
        ln = stream[i + 1]
        out.append(parse_v2(stream[i:i + 12 + ln]))
        i += 12 + ln
    return out
