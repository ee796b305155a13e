"""The virtual RNP board (sim.devices.rnp): the reference firmware's protocol core driving a SimRover.

Every byte vector here is built by hand from drivers/PROTOCOL.md — the CRC-16/XMODEM loop bit by bit, COBS
block by block, fields packed in the order of the spec's tables — or written out literally; never with
drivers.rnp_codec (which the device uses to frame its replies). That the device's core answers exactly
like the C firmware is checked in tests/drivers/test_firmware_core.py (same byte streams, same replies).
"""
import io
import math
import os
import struct
import threading

import numpy as np
import pytest
import serial

import nav
import sim.devices as sd
from sim.devices.faults import FaultInjector, VirtualLink
from sim.devices.pty import open_pty_device, serve_pty
from sim.devices.rnp import RnpFirmware, VirtualRnpDevice

SKID = nav.load_rover("skidsteer")
CPR = 1440                                   # configs/rovers/skidsteer.yaml encoder_counts_per_rev


# ----------------------------------------------------------------------------- the specification, by hand
def crc16(data: bytes) -> int:
    """CRC-16/XMODEM bit by bit: poly 0x1021, init 0, no reflection, no final xor."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def cobs(data: bytes) -> bytes:
    """COBS for bodies under 254 bytes: each zero closes a block ``len+1, bytes``; the last block too."""
    out, block = bytearray(), bytearray()
    for b in data:
        if b == 0:
            out += bytes([len(block) + 1]) + block
            block = bytearray()
        else:
            block.append(b)
    return bytes(out + bytes([len(block) + 1]) + block)


def uncobs(enc: bytes) -> bytes | None:
    if not enc or 0 in enc:
        return None
    out, i = bytearray(), 0
    while i < len(enc):
        code = enc[i]
        if i + code > len(enc):
            return None
        out += enc[i + 1:i + code]
        i += code
        if code < 0xFF and i < len(enc):
            out.append(0)
    return bytes(out)


def frame(msg_type: int, seq: int, payload: bytes = b"", version: int = 1) -> bytes:
    """version, type, seq (LE), payload, CRC (LE) over all of them; COBS; a 00 delimiter."""
    head = bytes([version, msg_type, seq & 0xFF, seq >> 8]) + payload
    c = crc16(head)
    return cobs(head + bytes([c & 0xFF, c >> 8])) + b"\x00"


def body_of(wire: bytes) -> bytes:
    """Check a device frame by hand (delimiter, COBS, CRC) and return its body."""
    assert wire.endswith(b"\x00") and 0 not in wire[:-1], wire.hex(" ")
    body = uncobs(wire[:-1])
    assert body is not None and 6 <= len(body) <= 128 and crc16(body[:-2]) == body[-2] | body[-1] << 8
    return body


def nack(dev_seq, ack_seq, t, code, detail):
    return frame(0x84, dev_seq, struct.pack("<HBBB", ack_seq, t, code, detail))


def ack(dev_seq, ack_seq, t):
    return frame(0x83, dev_seq, struct.pack("<HB", ack_seq, t))


def telemetry(dev_seq, ack_seq, time_ms, faults, state, counts, speeds, currents, battery_mv, rx_errors):
    n = len(counts)
    p = struct.pack("<HIHBB", ack_seq, time_ms, faults, state, n) + struct.pack(f"<{n}i", *counts)
    p += struct.pack(f"<{n}i", *speeds) + struct.pack(f"<{n}h", *currents) + struct.pack("<HH", battery_mv, rx_errors)
    return frame(0x82, dev_seq, p)


def wheels(seq, *cps):
    return frame(0x02, seq, bytes([len(cps)]) + struct.pack(f"<{len(cps)}i", *cps))


def test_oracle_reproduces_the_published_checks():
    assert crc16(b"123456789") == 0x31C3
    assert cobs(bytes([0x11, 0x22, 0x00, 0x33])) == bytes([0x03, 0x11, 0x22, 0x02, 0x33])
    assert cobs(bytes([0x00, 0x00])) == bytes([0x01, 0x01, 0x01])
    assert uncobs(bytes([0x03, 0x11, 0x22, 0x02, 0x33])) == bytes([0x11, 0x22, 0x00, 0x33])
    # literal vectors written out once from the spec with the two functions above
    assert frame(0x01, 0, b"\x01") == bytes.fromhex("03 01 01 01 04 01 c4 cc 00")
    assert frame(0x06, 1) == bytes.fromhex("04 01 06 01 03 25 f7 00")
    assert frame(0x04, 0x0102) == bytes.fromhex("07 01 04 02 01 37 dc 00")


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture
def bench():
    w = sd.flat_world(size_m=10.0, cell_size_m=0.1, physics_dt_s=0.001)
    r = sd.virtual_rover("skidsteer", world=w)
    dev = VirtualRnpDevice(r, capabilities=0, max_speed_cps=3000)
    return w, r, dev


def send(dev, w, data):
    return b"".join(dev.receive(data, w.time_s))


# ----------------------------------------------------------------------------- protocol, byte for byte
def test_session_byte_vectors(bench):
    w, r, dev = bench
    # ARM before HELLO: NACK NEED_HELLO (code 8), device seq 0
    assert send(dev, w, bytes.fromhex("04 01 06 01 03 25 f7 00")) == \
        bytes.fromhex("03 01 84 01 02 01 03 06 08 03 97 88 00")
    # HELLO seq 2 -> INFO: v1, fw 1.0.0, 4 wheels, no capabilities, 1440 counts/rev, 3000 counts/s, 500 ms
    assert send(dev, w, bytes.fromhex("04 01 01 02 04 01 a4 a2 00")) == bytes.fromhex(
        "04 01 81 01 02 02 03 01 01 01 02 04 01 03 a0 05 01 03 b8 0b 01 05 f4 01 04 09 00")
    # SET_WATCHDOG 300 ms (2c 01) -> ACK
    assert send(dev, w, bytes.fromhex("04 01 03 03 05 2c 01 04 63 00")) == bytes.fromhex("04 01 83 02 02 03 04 03 11 8f 00")
    # ARM -> ACK
    assert send(dev, w, bytes.fromhex("04 01 06 04 03 d0 08 00")) == bytes.fromhex("04 01 83 03 02 04 04 06 75 f0 00")
    assert not dev.moving                                     # armed, no fresh SET_WHEELS yet
    # SET_WHEELS 1000, 1000, -500, -500 counts/s -> TELEMETRY (armed + driving, nothing measured yet)
    sw = bytes.fromhex("04 01 02 05 04 04 e8 03 01 03 e8 03 01 0b 0c fe ff ff 0c fe ff ff 3f 89 00")
    assert sw == wheels(5, 1000, 1000, -500, -500)
    assert send(dev, w, sw) == telemetry(4, 5, 0, 0, 3, [0] * 4, [0] * 4, [0] * 4, 0, 0)
    np.testing.assert_array_equal(dev.targets_cps(), [1000, 1000, -500, -500])
    w.advance(0.28)                                           # spun up (1 m/s²), before the 300 ms watchdog
    expect = np.array([1000, 1000, -500, -500]) * 2 * math.pi / CPR
    np.testing.assert_allclose(r.model.wheel_speed_radps, expect, rtol=1e-9)
    assert dev.requests[-1][1:3] == (0x02, 5)


def test_boot_state_and_device_clock():
    w = sd.flat_world(size_m=10.0, physics_dt_s=0.001)
    dev = VirtualRnpDevice(sd.virtual_rover("skidsteer", world=w), capabilities=0, millis0=123456)
    w.advance(0.25)
    # HEARTBEAT at boot: REBOOTED (0004), disarmed, time = millis0 + 250 ms
    assert send(dev, w, frame(0x04, 7)) == telemetry(0, 7, 123706, 0x0004, 0, [0] * 4, [0] * 4, [0] * 4, 0, 0)
    assert dev.millis(w.time_s + 0.0004) == 123706 and dev.millis(w.time_s + 0.001) == 123707
    info = body_of(send(dev, w, frame(0x01, 8, b"\x01")))
    assert info[1] == 0x81 and struct.unpack_from("<H", info, 4 + 17)[0] == 500
    assert struct.unpack_from("<H", body_of(send(dev, w, frame(0x04, 9))), 4 + 6)[0] == 0     # REBOOTED cleared


def test_corrupt_frames_are_dropped_silently_and_counted(bench):
    w, r, dev = bench
    good = bytearray(frame(0x04, 1))
    good[3] ^= 0x10                                            # a bit flip: CRC fails
    assert send(dev, w, bytes(good)) == b""
    assert send(dev, w, bytes.fromhex("05 01 02 00")) == b""  # truncated COBS block
    assert send(dev, w, cobs(bytes([1, 4, 0])) + b"\x00") == b""         # body too short
    assert send(dev, w, b"\x01" * 200 + b"\x00") == b""       # oversize
    assert send(dev, w, b"\x00\x00\x00") == b""                # empty frames: not errors
    tel = body_of(send(dev, w, frame(0x04, 2)))
    assert struct.unpack_from("<H", tel, len(tel) - 4)[0] == 4


def test_resynchronises_within_two_frames(bench):
    w, r, dev = bench
    rng = np.random.default_rng(3)
    answered_first = 0
    for k in range(300):
        garbage = rng.integers(1, 256, int(rng.integers(1, 300)), dtype=np.uint8).tobytes()   # no delimiter
        out = [dev.receive(garbage + frame(0x04, 2 * k), w.time_s), dev.receive(frame(0x04, 2 * k + 1), w.time_s)]
        answered_first += bool(out[0])
        assert len(out[1]) == 1                                  # the second frame is always answered
        assert struct.unpack_from("<H", body_of(out[1][0]), 4)[0] == 2 * k + 1
    assert answered_first < 30                                   # the first is swallowed by the garbage
    # a sender that flushes with a leading 00 loses nothing
    assert dev.receive(b"\x17\x99\x42" + b"\x00" + frame(0x04, 999), w.time_s)


@pytest.mark.parametrize("data,code,detail", [
    (frame(0x04, 0x0A0B, version=2), 1, 1),                     # BAD_VERSION [1]
    (frame(0x55, 0x0A0B), 2, 0),                                # UNKNOWN_TYPE
    (frame(0x82, 0x0A0B), 2, 0),                                # a device->host type sent to the device
    (frame(0x04, 0x0A0B, b"\x00"), 3, 0),                       # BAD_LENGTH [0]
    (frame(0x01, 0x0A0B), 3, 1),
    (frame(0x01, 0x0A0B, b"\x02"), 1, 1),                       # HELLO asking for version 2
    (frame(0x03, 0x0A0B, b"\x31\x00"), 4, 0),                   # 49 ms: OUT_OF_RANGE
    (frame(0x03, 0x0A0B, b"\x11\x27"), 4, 0),                   # 10001 ms
    (frame(0x02, 0x0A0B), 3, 17),                               # SET_WHEELS: BAD_LENGTH [1 + 4 * 4]
    (frame(0x02, 0x0A0B, b"\x04" + bytes(15)), 3, 17),
    (frame(0x02, 0x0A0B, b"\x02" + bytes(8)), 5, 4),            # WHEEL_COUNT [4]
    (wheels(0x0A0B, 0, 0, 3001, 0), 4, 2),                      # OUT_OF_RANGE [wheel 2]
    (wheels(0x0A0B, 0, 0, 0, -2**31), 4, 3),
    (wheels(0x0A0B, 1, 1, 1, 1), 6, 0),                         # NOT_ARMED
    (frame(0x06, 0x0A0B), 8, 0),                                # NEED_HELLO
])
def test_nack_table(bench, data, code, detail):
    w, r, dev = bench
    t = uncobs(data[:-1])[1]
    assert send(dev, w, data) == nack(0, 0x0A0B, t, code, detail)


def test_estopped_nack_and_latch(bench):
    w, r, dev = bench
    send(dev, w, frame(0x01, 1, b"\x01"))
    send(dev, w, frame(0x06, 2))
    send(dev, w, wheels(3, 100, 100, 100, 100))
    assert dev.targets_cps().all()
    assert send(dev, w, frame(0x05, 4)) == ack(3, 4, 0x05)      # ESTOP (device frames 0-2 answered above)
    assert not dev.targets_cps().any()
    assert send(dev, w, wheels(5, 100, 100, 100, 100)) == nack(4, 5, 0x02, 7, 0)   # ESTOPPED
    # HELLO keeps the latch; ARM clears it; motion needs a fresh SET_WHEELS
    assert body_of(send(dev, w, frame(0x01, 6, b"\x01")))[1] == 0x81
    assert send(dev, w, wheels(7, 100, 100, 100, 100)) == nack(6, 7, 0x02, 7, 0)
    assert send(dev, w, frame(0x06, 8)) == ack(7, 8, 0x06)
    assert not dev.targets_cps().any() and not dev.moving
    send(dev, w, wheels(9, 5, 5, 5, 5))
    assert dev.targets_cps().tolist() == [5, 5, 5, 5]


def test_hardware_estop_input_relatches_while_held(bench):
    w, r, dev = bench
    send(dev, w, frame(0x01, 1, b"\x01"))
    send(dev, w, frame(0x06, 2))
    send(dev, w, wheels(3, 100, 100, 100, 100))
    dev.press_estop()
    assert not dev.targets_cps().any() and dev.events[-1][1] == "estop"
    assert send(dev, w, frame(0x06, 4)) == ack(3, 4, 0x06)      # ARM is acknowledged...
    tel = body_of(send(dev, w, frame(0x04, 5)))
    assert struct.unpack_from("<HB", tel, 4 + 6) == (0x0002, 0)  # ...and the held input latched it again
    dev.press_estop(False)
    send(dev, w, frame(0x06, 6))
    assert body_of(send(dev, w, wheels(7, 9, 9, 9, 9)))[1] == 0x82 and dev.targets_cps().tolist() == [9] * 4


# ----------------------------------------------------------------------------- watchdog on simulated time
@pytest.mark.parametrize("millis0", [0, 2**32 - 150])             # the second crosses the millis() wrap
def test_firmware_watchdog_trips_exactly(millis0):
    w = sd.flat_world(size_m=10.0, physics_dt_s=0.001)
    dev = VirtualRnpDevice(sd.virtual_rover("skidsteer", world=w), capabilities=0, millis0=millis0)
    send(dev, w, frame(0x01, 1, b"\x01"))
    send(dev, w, frame(0x03, 2, struct.pack("<H", 300)))
    send(dev, w, frame(0x06, 3))
    w.advance(0.1)
    t_feed = w.time_s
    send(dev, w, wheels(4, 800, 800, 800, 800))
    for _ in range(300):                                        # the pacer's small steps, up to the deadline
        w.advance(0.001)
    assert dev.moving and dev.targets_cps().all()
    w.advance(0.001)                                            # the first tick at the deadline trips it
    assert not dev.moving and not dev.targets_cps().any()
    (t_trip, kind, _), = [e for e in dev.events if e[1] == "watchdog"]
    assert t_trip == pytest.approx(t_feed + 0.3, abs=1e-9)
    # a HEARTBEAT feeds but never restarts motion; only a fresh SET_WHEELS does (and clears WATCHDOG)
    tel = body_of(send(dev, w, frame(0x04, 5)))
    assert struct.unpack_from("<HB", tel, 4 + 6) == (0x0001, 1)
    w.advance(0.5)
    assert not r_moving(dev)
    tel = body_of(send(dev, w, wheels(6, 10, 10, 10, 10)))
    assert struct.unpack_from("<HB", tel, 4 + 6) == (0x0000, 3) and dev.moving
    # heartbeats every 250 ms keep a 300 ms watchdog from tripping
    for _ in range(8):
        w.advance(0.25)
        send(dev, w, frame(0x04, 7))
    assert dev.moving and len([e for e in dev.events if e[1] == "watchdog"]) == 1


def r_moving(dev):
    return bool(np.any(dev.rover.model.wheel_speed_radps != 0))


def test_dead_host_the_board_stops_the_rover():
    """Nothing but the world runs after the last command: the firmware watchdog stops the wheels."""
    w = sd.flat_world(size_m=20.0, physics_dt_s=0.001)
    att = sd.attach_sim("vrnp-dead", "rnp", rover="skidsteer", world=w)
    port = serial.serial_for_url(att.url, timeout=0.01)
    port.write(frame(0x01, 1, b"\x01") + frame(0x03, 2, struct.pack("<H", 200)) + frame(0x06, 3)
               + wheels(4, 1000, 1000, 1000, 1000))
    t_last = w.clock.now()
    assert len(port.read(500)) > 0
    stopped = []
    sd.run_stepped(w, None, 1.0, spin=False, watchdog=False,
                   until=lambda t: not att.device.moving and not stopped.append(t))
    assert stopped and stopped[0] - t_last <= 0.2 + 0.002
    w.advance(1.0)
    assert not r_moving(att.device)
    port.close()
    att.close()


# ----------------------------------------------------------------------------- sensors
def test_encoders_follow_the_true_wheel_and_wrap(bench):
    w, r, dev = bench
    send(dev, w, frame(0x01, 1, b"\x01"))
    send(dev, w, frame(0x03, 0, struct.pack("<H", 10000)))
    send(dev, w, frame(0x06, 2))
    send(dev, w, wheels(3, 1440, 1440, -720, -720))
    w.advance(1.0)
    counts = struct.unpack_from("<4i", body_of(send(dev, w, frame(0x04, 4))), 4 + 10)
    expect = [math.floor(a * CPR / (2 * math.pi)) for a in r.model.wheel_angle_rad]
    assert list(counts) == expect and counts[0] > 1000 and counts[2] < -500
    # put wheel 0 just below the u32 wrap: it reads as a negative s32 then wraps through 0
    dev.set_encoder_count("front_left", 2**32 - 100)
    c0 = struct.unpack_from("<i", body_of(send(dev, w, frame(0x04, 5))), 4 + 10)[0]
    w.advance(0.2)
    c1 = struct.unpack_from("<i", body_of(send(dev, w, frame(0x04, 6))), 4 + 10)[0]
    assert c0 == -100 and 0 < c1 < 300                          # 1440 counts/s for 0.2 s: ~288 - 100
    # RESET_ENCODERS: counts become raw - offset
    raw = struct.unpack_from("<4i", body_of(send(dev, w, frame(0x04, 70))), 4 + 10)
    dev_seq = dev.core.tx_seq
    assert send(dev, w, frame(0x08, 7)) == ack(dev_seq, 7, 0x08)
    assert struct.unpack_from("<4i", body_of(send(dev, w, frame(0x04, 8))), 4 + 10) == (0, 0, 0, 0)
    # freeze: the count holds and the speed reads 0; on release it resumes from the held value
    dev.freeze_encoder(2)
    w.advance(0.3)
    tel = body_of(send(dev, w, frame(0x04, 9)))
    assert struct.unpack_from("<i", tel, 4 + 10 + 8)[0] == 0 and struct.unpack_from("<i", tel, 4 + 10 + 16 + 8)[0] == 0
    dev.freeze_encoder(2, False)
    w.advance(0.1)
    c = struct.unpack_from("<i", body_of(send(dev, w, frame(0x04, 10))), 4 + 10 + 8)[0]
    assert -80 <= c < -60                                       # -720 counts/s for 0.1 s
    dev.reset_encoders()                                        # the raw counters jump to 0: reads -offset
    tel = struct.unpack_from("<4i", body_of(send(dev, w, frame(0x04, 11))), 4 + 10)
    assert tel == tuple(-v for v in raw)


def test_currents_battery_and_hardware_fault_bits():
    w = sd.flat_world(size_m=10.0, physics_dt_s=0.001)
    r = sd.virtual_rover("skidsteer", world=w)
    dev = VirtualRnpDevice(r)                                   # default: current and battery sense
    info = body_of(send(dev, w, frame(0x01, 1, b"\x01")))
    assert struct.unpack_from("<H", info, 4 + 7)[0] == 0x000F
    send(dev, w, frame(0x03, 0, struct.pack("<H", 10000)))
    send(dev, w, frame(0x06, 2))
    send(dev, w, wheels(3, -2000, -2000, -2000, -2000))
    w.advance(1.0)
    tel = body_of(send(dev, w, frame(0x04, 4)))
    cur = struct.unpack_from("<4h", tel, 4 + 10 + 32)
    batt = struct.unpack_from("<H", tel, 4 + 10 + 40)[0]
    rt = r.read_telemetry()
    assert all(c < 0 for c in cur) and abs(abs(cur[0]) - 1000 * rt.motor_current_a[0]) <= 1
    assert abs(batt - 1000 * rt.battery.voltage_v) <= 2
    dev.set_error_flags(0x0080 | 0x0040)                        # over-temperature, encoder fault
    faults, state = struct.unpack_from("<HB", body_of(send(dev, w, frame(0x04, 5))), 4 + 6)
    assert faults == 0x00C0 and state == 3 and dev.moving       # warnings: the application keeps driving
    dev.set_error_flags(0x0020)                                 # driver fault: the application cuts the motors
    assert faults_of(dev, w, 6) == 0x0020 and not dev.moving and dev.targets_cps().all()
    dev.set_error_flags(0)
    w.advance(0.01)
    assert dev.moving
    r.drain_battery(0.05)                                       # under low_voltage_v: BATTERY_LOW derived
    w.advance(0.01)
    assert faults_of(dev, w, 7) & 0x0010
    with pytest.raises(ValueError, match="0x0001"):
        dev.set_error_flags(0x0001)


def faults_of(dev, w, seq):
    return struct.unpack_from("<H", body_of(send(dev, w, frame(0x04, seq))), 4 + 6)[0]


def test_reboot_is_silent_then_forgets_everything():
    w = sd.flat_world(size_m=10.0, physics_dt_s=0.001)
    dev = VirtualRnpDevice(sd.virtual_rover("skidsteer", world=w), capabilities=0, boot_s=0.1)
    send(dev, w, frame(0x01, 1, b"\x01"))
    send(dev, w, frame(0x03, 2, struct.pack("<H", 1000)))
    send(dev, w, frame(0x06, 3))
    send(dev, w, wheels(4, 500, 500, 500, 500))
    w.advance(0.5)
    dev.reboot()
    assert not dev.moving and send(dev, w, frame(0x04, 5)) == b""            # bootloader: silent
    w.advance(0.05)
    assert send(dev, w, frame(0x04, 6)) == b""
    w.advance(0.06)
    # booted 0.1 s after the reboot, 10 ms ago: device seq 0, REBOOTED, disarmed, counters 0
    assert send(dev, w, frame(0x04, 7)) == telemetry(0, 7, 10, 0x0004, 0, [0] * 4, [0] * 4, [0] * 4, 0, 0)
    assert send(dev, w, frame(0x06, 8)) == nack(1, 8, 0x06, 8, 0)             # NEED_HELLO
    info = body_of(send(dev, w, frame(0x01, 9, b"\x01")))
    assert struct.unpack_from("<H", info, 4 + 17)[0] == 500                  # the watchdog setting is lost


# ----------------------------------------------------------------------------- reply faults
def test_reply_faults(bench):
    w, r, dev = bench
    send(dev, w, frame(0x01, 1, b"\x01"))
    send(dev, w, frame(0x06, 2))
    dev.set_reply_fault("ack_missing", 1.0)
    assert send(dev, w, wheels(3, 100, 100, 100, 100)) == b"" and dev.targets_cps().tolist() == [100] * 4
    dev.set_reply_fault("ack_missing", 0.0)
    dev.set_reply_fault("ack_wrong", 1.0)
    for seq in range(4, 30):
        body = body_of(send(dev, w, frame(0x07 if seq % 2 else 0x04, seq)))
        a = struct.unpack_from("<H", body, 4)[0]
        assert a != seq or (body[1] == 0x83 and body[6] != 0x07)   # another frame's ack_seq, or another type
    dev.set_reply_fault("ack_wrong", 0.0)
    dev.set_reply_fault("bad_content", 1.0)
    send(dev, w, frame(0x06, 40))
    seen = set()
    for seq in range(41, 80):
        body = body_of(send(dev, w, frame(0x04, seq)))          # the CRC is valid...
        n = body[4 + 9]
        p = body[4:-2]
        bad = (len(p) != 14 + 10 * n, abs(struct.unpack_from("<i", p, 10 + 16)[0]) == 1 << 30 if len(p) >= 30
               else False, p[8] == 0xFC)
        seen.add(bad)
    assert len(seen) >= 3                                       # ...the content is not, in several ways
    with pytest.raises(ValueError, match="reply fault"):
        dev.set_reply_fault("nope", 1.0)


# ----------------------------------------------------------------------------- layouts
def test_two_channel_skid_steer_and_a_differential_rover():
    import dataclasses

    w = sd.flat_world(size_m=10.0, physics_dt_s=0.001)
    r = sd.virtual_rover("skidsteer", world=w)
    dev = VirtualRnpDevice(r, channels=[("front_left", "rear_left"), ("front_right", "rear_right")],
                           capabilities=0, max_speed_cps=3000)
    info = body_of(send(dev, w, frame(0x01, 1, b"\x01")))
    assert info[4 + 6] == 2
    send(dev, w, frame(0x06, 2))
    assert send(dev, w, wheels(3, 1, 1, 1, 1)) == nack(2, 3, 0x02, 5, 2)      # WHEEL_COUNT [2]
    assert send(dev, w, frame(0x02, 4, b"\x02" + bytes(4))) == nack(3, 4, 0x02, 3, 9)   # BAD_LENGTH [1 + 4 * 2]
    send(dev, w, frame(0x03, 0, struct.pack("<H", 10000)))
    send(dev, w, wheels(4, 1440, -1440))
    w.advance(0.5)
    np.testing.assert_allclose(r.model.wheel_speed_radps, np.array([1, 1, -1, -1]) * 2 * math.pi, rtol=1e-9)
    assert r.truth().wz_radps < -0.1                                          # turning clockwise
    with pytest.raises(ValueError, match="more than one channel"):
        VirtualRnpDevice(r, channels=["front_left", "front_left", "rear_left", "front_right"])
    with pytest.raises(ValueError, match="without a motor"):
        VirtualRnpDevice(r, channels=["front_left", "rear_left", "front_right"])

    diff = dataclasses.replace(SKID, kind="differential", geometry=dataclasses.replace(SKID.geometry, num_wheels=2))
    w2 = sd.flat_world(size_m=10.0, physics_dt_s=0.001)
    from sim.sim_rover import SimRover
    r2 = SimRover(w2, diff, command_timeout_s=None)
    r2.open()
    dev2 = VirtualRnpDevice(r2, capabilities=0)
    assert r2.layout.names == ("left", "right")
    send(dev2, w2, frame(0x01, 1, b"\x01"))
    send(dev2, w2, frame(0x03, 0, struct.pack("<H", 10000)))
    send(dev2, w2, frame(0x06, 2))
    send(dev2, w2, wheels(3, 1000, 1000))
    w2.advance(1.0)
    assert r2.truth().x_m > 5.0 + 0.15


def test_validation(bench):
    w, r, dev = bench
    with pytest.raises(TypeError, match="SimRover"):
        VirtualRnpDevice(object())
    with pytest.raises(ValueError, match="boot_s"):
        VirtualRnpDevice(r, boot_s=-1)
    with pytest.raises(ValueError, match="millis0"):
        VirtualRnpDevice(r, millis0=2**32)
    with pytest.raises(ValueError, match="counts_per_rev"):
        VirtualRnpDevice(r, counts_per_rev=0)
    with pytest.raises(ValueError, match="max_speed_cps"):
        RnpFirmware(n_wheels=2, counts_per_rev=100, max_speed_cps=0)
    with pytest.raises(ValueError, match="n_wheels"):
        RnpFirmware(n_wheels=9, counts_per_rev=100, max_speed_cps=10)
    with pytest.raises(ValueError, match="wheel"):
        dev.freeze_encoder("tail")


# ----------------------------------------------------------------------------- fuzzing
def test_fuzz_random_and_corrupted_frames():
    """Random bytes, corrupted and truncated frames, valid frames with random content: nothing raises,
    every reply is a well-formed frame (checked by hand), the motors move only while armed with a fresh
    SET_WHEELS, and a clean HEARTBEAT after a 00 is always answered."""
    w = sd.flat_world(size_m=20.0, physics_dt_s=0.001)
    dev = VirtualRnpDevice(sd.virtual_rover("skidsteer", world=w))
    rng = np.random.default_rng(9)
    replies = 0
    for k in range(6000):
        kind = rng.random()
        if kind < 0.3:
            data = rng.integers(0, 256, int(rng.integers(1, 400)), dtype=np.uint8).tobytes()
        elif kind < 0.6:
            t = int(rng.choice([1, 2, 3, 4, 5, 6, 7, 8, 0x55, 0x82]))
            data = frame(t, int(rng.integers(0, 65536)), rng.integers(0, 256, int(rng.integers(0, 40)),
                                                                       dtype=np.uint8).tobytes(),
                         version=int(rng.choice([1, 1, 1, 0, 2])))
        else:
            good = wheels(k & 0xFFFF, *rng.integers(-3000, 3000, 4).tolist()) if rng.random() < 0.5 else \
                frame(int(rng.choice([1, 4, 6])), k & 0xFFFF, b"\x01" if rng.random() < 0.3 else b"")
            b = bytearray(good)
            for _ in range(int(rng.integers(0, 3))):
                b[int(rng.integers(0, len(b)))] ^= 1 << int(rng.integers(0, 8))
            data = bytes(b[:int(rng.integers(1, len(b) + 1))]) if rng.random() < 0.2 else bytes(b)
        if rng.random() < 0.1:
            w.advance(float(rng.choice([0.001, 0.05, 0.4])))
        for rep in dev.receive(data, w.time_s):
            body_of(rep)
            replies += 1
        moving, _ = dev.core.targets()
        assert not dev.moving or (moving and dev.core.armed)
        if k % 500 == 0:
            out = dev.receive(b"\x00" + frame(0x04, 4242), w.time_s)
            assert len(out) == 1 and struct.unpack_from("<H", body_of(out[0]), 4)[0] == 4242
    assert replies > 1000 and dev.core.rx_errors > 500


# ----------------------------------------------------------------------------- sim:// and the pty
def test_sim_url_reaches_the_board():
    w = sd.flat_world(size_m=10.0, physics_dt_s=0.001)
    att = sd.attach_sim("vrnp-url", "rnp", rover="skidsteer", world=w, baud=115200)
    port = serial.serial_for_url(att.url, timeout=0.05)
    t0 = w.clock.now()
    port.write(frame(0x01, 3, b"\x01"))
    rep = port.read(27)
    assert body_of(rep)[1] == 0x81 and struct.unpack_from("<H", body_of(rep), 4)[0] == 3
    assert w.clock.now() - t0 == pytest.approx((9 + 27) * 10 / 115200, abs=0.0011)    # request + reply wire time
    port.close()
    att.close()


def test_pty_serves_the_board_raw(tmp_path):
    dev = open_pty_device("rnp", "skidsteer", baud=None, symlink=str(tmp_path / "usb-Arduino_Uno-if00"),
                          world=sd.flat_world(size_m=10.0))
    try:
        p = serial.serial_for_url(dev.path, timeout=0.5, exclusive=True)
        p.write(frame(0x01, 0x0D0A, b"\x01"))                   # CR LF in the seq: raw mode keeps them
        rep = p.read(27)
        assert body_of(rep)[1] == 0x81 and struct.unpack_from("<H", body_of(rep), 4)[0] == 0x0D0A
        p.close()
    finally:
        dev.close()
    out = io.StringIO()
    stop = threading.Event()
    def announce(path, what):
        out.write(f"{path}\n# {what}\n")

    th = threading.Thread(target=serve_pty, kwargs=dict(protocol="rnp", rover="skidsteer", on_ready=announce,
                                                        stop_event=stop),
                          daemon=True)
    th.start()
    for _ in range(500):
        if out.getvalue():
            break
        threading.Event().wait(0.01)
    path = out.getvalue().splitlines()[0]
    assert path.startswith("/dev/pts/") and "VirtualRnpDevice" in out.getvalue()
    p = serial.serial_for_url(path, timeout=0.5)
    p.write(frame(0x04, 1))
    assert body_of(p.read(62))[1] == 0x82
    p.close()
    stop.set()
    th.join(5)
    assert not th.is_alive() and not os.path.exists(path)


def test_link_with_injector_drives_device_faults():
    """The generic device faults of sim.devices.faults reach the board through its hooks."""
    from sim.devices.faults import AckFault, BadContent, EncoderFreeze, EncoderReset, EncoderWrap, ErrorFlags, Reboot

    w = sd.flat_world(size_m=10.0, physics_dt_s=0.001)
    dev = VirtualRnpDevice(sd.virtual_rover("skidsteer", world=w), boot_s=0.0)
    inj = FaultInjector([ErrorFlags(bits=0x0002, start_s=0.1, end_s=0.2), EncoderFreeze(wheel=1, start_s=0.1),
                         EncoderWrap(wheel="rear_right", start_s=0.1), EncoderReset(start_s=0.3),
                         AckFault(mode="missing", start_s=0.4, end_s=0.5), BadContent(start_s=0.5, end_s=0.6),
                         Reboot(start_s=0.7)], rng=np.random.default_rng(0))
    link = VirtualLink(dev, clock=w.clock, injector=inj)
    w.advance(0.15)
    link.service()
    assert dev.estop_input and dev.core.estop_latched and dev._enc_frozen[1]
    w.advance(0.1)
    link.service()
    assert not dev.estop_input and dev.core.estop_latched     # released, still latched until ARM
    w.advance(0.2)
    link.service()
    link.host_write(frame(0x04, 1))
    assert link.host_read(100) == b""                           # the reply was lost
    w.advance(0.3)
    link.service()
    assert [k for _, k, _ in dev.events].count("reboot") == 1 and dev.core.flags & 0x0004
