"""The C firmware core (hil/firmware/rnp_core.c) built on the host and tested against the Python codec.

* the core compiles warning-free with the flags of the brief (and stricter ones);
* CRC and COBS: C == Python on random data, C against the published COBS vectors;
* frames: Python-encoded frames parse in C, C-built frames are byte-identical to Python's and decode;
* device: handshake, NACK reasons, telemetry, and the watchdog state machine (exact trip time, no
  motion until a fresh SET_WHEELS, e-stop latch, reboot, millis() wrap);
* differential: random command/time/noise sequences through the C core and the Python reference
  model of PROTOCOL.md §2.4 (tests/drivers/_ref_protocols.py) give identical bytes and states;
* against the Python driver: drivers.rnp.RnpRover runs a bench session (connect, drive, watchdogs, e-stop)
  against a virtual board whose firmware core is the compiled C core (twinned with the Python port);
* fuzzing: random and corrupted bytes through the C receiver via ctypes, and through a standalone
  harness built with -fsanitize=address,undefined (run in a subprocess, so no LD_PRELOAD is needed).

Skipped, with the reason, when gcc is missing.
"""
import ctypes
import os
import random
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from _ref_protocols import COBS_VECTORS, RefFirmware, rnp_wire
from drivers.cobs import cobs_decode, cobs_encode
from drivers.crc import crc16_xmodem
from drivers.rnp_codec import (MAX_WHEELS, Ack, Arm, ContentError, Disarm, EStop, Heartbeat, Hello, Info, Message,
                               MsgType, Nack, NackCode, ResetEncoders, RnpDecoder, RnpFault, SetWatchdog, SetWheels,
                               Telemetry, decode_frame, encode_message, encode_raw_frame)

FW_DIR = Path(__file__).resolve().parents[2] / "hil" / "firmware"
GCC = shutil.which("gcc")
BRIEF_FLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-O2", "-shared", "-fPIC"]

pytestmark = pytest.mark.skipif(GCC is None, reason="gcc not found: the C firmware core cannot be built here")

u8, u16, u32, i32, i16, sz = (ctypes.c_uint8, ctypes.c_uint16, ctypes.c_uint32, ctypes.c_int32, ctypes.c_int16,
                              ctypes.c_size_t)
P8 = ctypes.POINTER(ctypes.c_uint8)


class Config(ctypes.Structure):
    _fields_ = [("fw_major", u8), ("fw_minor", u8), ("fw_patch", u8), ("n_wheels", u8), ("capabilities", u16),
                ("counts_per_rev", u32), ("max_speed_cps", i32)]


class Header(ctypes.Structure):
    _fields_ = [("version", u8), ("type", u8), ("seq", u16), ("payload_len", u8)]


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    out = tmp_path_factory.mktemp("rnp_core") / "librnp_core.so"
    r = subprocess.run([GCC, *BRIEF_FLAGS, str(FW_DIR / "rnp_core.c"), "-o", str(out)], capture_output=True,
                       text=True)
    assert r.returncode == 0, f"rnp_core.c does not build with {' '.join(BRIEF_FLAGS)}:\n{r.stderr}"
    L = ctypes.CDLL(str(out))
    sig = {
        "rnp_crc16": (u16, [ctypes.c_char_p, sz, u16]),
        "rnp_cobs_encode": (sz, [ctypes.c_char_p, sz, ctypes.c_char_p, sz]),
        "rnp_cobs_decode": (ctypes.c_int, [ctypes.c_char_p, sz, ctypes.c_char_p, sz]),
        "rnp_frame_parse": (ctypes.c_int, [ctypes.c_char_p, sz, ctypes.POINTER(Header)]),
        "rnp_frame_build": (sz, [u8, u16, ctypes.c_char_p, sz, ctypes.c_char_p, sz]),
        "rnp_device_init": (ctypes.c_int, [ctypes.c_void_p, ctypes.POINTER(Config), u32]),
        "rnp_device_rx": (sz, [ctypes.c_void_p, ctypes.c_char_p, sz, u32, ctypes.c_char_p, sz]),
        "rnp_device_tick": (None, [ctypes.c_void_p, u32]),
        "rnp_device_estop": (None, [ctypes.c_void_p]),
        "rnp_device_set_sensors": (None, [ctypes.c_void_p, ctypes.POINTER(i32), ctypes.POINTER(i32),
                                          ctypes.POINTER(i16), u16, u16]),
        "rnp_device_targets": (ctypes.c_int, [ctypes.c_void_p, ctypes.POINTER(i32)]),
        "rnp_device_faults": (u16, [ctypes.c_void_p]),
        "rnp_device_state": (u8, [ctypes.c_void_p]),
        "rnp_device_size": (sz, []),
    }
    for name, (res, args) in sig.items():
        f = getattr(L, name)
        f.restype, f.argtypes = res, args
    return L


def test_core_builds_with_strict_warnings(tmp_path):
    """Beyond the brief's flags: pedantic C99 with conversion warnings, as an embedded toolchain would see it."""
    r = subprocess.run([GCC, "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Wconversion", "-Wsign-conversion",
                        "-Wshadow", "-Werror", "-O2", "-c", str(FW_DIR / "rnp_core.c"), "-o", str(tmp_path / "x.o")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# ----------------------------------------------------------------------------- helpers over ctypes
def c_crc(lib, data: bytes, init: int = 0) -> int:
    return lib.rnp_crc16(data, len(data), init)


def c_cobs_encode(lib, data: bytes, cap: int | None = None) -> bytes | None:
    cap = len(data) + len(data) // 254 + 1 if cap is None else cap
    out = ctypes.create_string_buffer(max(cap, 1))
    n = lib.rnp_cobs_encode(data, len(data), out, cap)
    return None if n == 0 else out.raw[:n]


def c_cobs_decode(lib, enc: bytes, cap: int = 1024):
    out = ctypes.create_string_buffer(max(cap, 1))
    n = lib.rnp_cobs_decode(enc, len(enc), out, cap)
    return n if n < 0 else out.raw[:n]


def c_frame_build(lib, msg_type: int, seq: int, payload: bytes, cap: int = 512) -> bytes | None:
    out = ctypes.create_string_buffer(cap)
    n = lib.rnp_frame_build(msg_type, seq, payload, len(payload), out, cap)
    return None if n == 0 else out.raw[:n]


class CDevice:
    """The C device core behind the same interface as RefFirmware."""

    def __init__(self, lib, n_wheels=4, counts_per_rev=1000, max_speed_cps=5000, capabilities=0, fw=(1, 2, 3),
                 now_ms=0):
        self.lib = lib
        self.n = n_wheels
        self.mem = ctypes.create_string_buffer(lib.rnp_device_size())
        self.cfg = Config(fw[0], fw[1], fw[2], n_wheels, capabilities, counts_per_rev, max_speed_cps)
        self.init_rc = lib.rnp_device_init(self.mem, ctypes.byref(self.cfg), now_ms)

    def rx_bytes(self, data: bytes, now: int, cap: int = 4096) -> bytes:
        out = ctypes.create_string_buffer(cap)
        n = self.lib.rnp_device_rx(self.mem, data, len(data), now & 0xFFFFFFFF, out, cap)
        assert n <= cap
        return out.raw[:n]

    def tick(self, now: int):
        self.lib.rnp_device_tick(self.mem, now & 0xFFFFFFFF)

    def hw_estop(self):
        self.lib.rnp_device_estop(self.mem)

    def set_sensors(self, counts, speeds, currents, battery_mv, hw_faults):
        A = i32 * self.n
        self.lib.rnp_device_set_sensors(self.mem, A(*counts), A(*speeds), (i16 * self.n)(*currents), battery_mv,
                                        hw_faults)

    def output(self):
        out = (i32 * MAX_WHEELS)()
        moving = self.lib.rnp_device_targets(self.mem, out)
        return bool(moving), list(out[:self.n])

    def faults(self):
        return self.lib.rnp_device_faults(self.mem)

    def state(self):
        return self.lib.rnp_device_state(self.mem)


class Host:
    """A minimal host: numbers its frames and decodes the single reply."""

    def __init__(self, dev):
        self.dev = dev
        self.seq = 0

    def send(self, msg_or_wire, now: int) -> Message | None:
        if isinstance(msg_or_wire, Message):
            wire = encode_message(type(msg_or_wire)(**{**msg_or_wire.__dict__, "seq": self.seq}), validate=False)
        else:
            wire = msg_or_wire
        self.seq = (self.seq + 1) & 0xFFFF
        reply = self.dev.rx_bytes(wire, now)
        if not reply:
            return None
        msgs = RnpDecoder(direction="to_host").feed(reply)
        assert len(msgs) == 1, reply.hex()
        return msgs[0]


# ----------------------------------------------------------------------------- CRC / COBS
def test_crc_matches_python(lib):
    assert c_crc(lib, b"123456789") == 0x31C3
    assert c_crc(lib, bytes.fromhex("80 20 40 00")) == 0x5632
    rng = random.Random(1)
    for _ in range(2000):
        data = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 200)))
        init = rng.getrandbits(16)
        assert c_crc(lib, data, init) == crc16_xmodem(data, init)


@pytest.mark.parametrize("decoded,encoded", COBS_VECTORS, ids=[f"v{i}" for i in range(len(COBS_VECTORS))])
def test_c_cobs_vectors(lib, decoded, encoded):
    assert c_cobs_encode(lib, decoded) == encoded
    assert c_cobs_decode(lib, encoded) == decoded


def test_c_cobs_edge_cases(lib):
    assert c_cobs_encode(lib, b"") == b"\x01"
    assert c_cobs_decode(lib, b"\x01") == b""
    data = bytes(range(1, 255))
    assert c_cobs_decode(lib, b"\xff" + data + b"\x01") == data
    for bad in (b"", b"\x03\x11\x00\x22", b"\x05\x11\x22", b"\xff" + bytes(range(1, 100))):
        assert c_cobs_decode(lib, bad) == -1                       # RNP_ERR_COBS
    assert c_cobs_encode(lib, bytes(10), cap=10) is None          # needs 11
    assert c_cobs_encode(lib, bytes(10), cap=11) == b"\x01" * 11
    assert c_cobs_decode(lib, b"\x05\x11\x22\x33\x44", cap=3) == -5  # RNP_ERR_SPACE


def test_c_cobs_matches_python_on_random_data(lib):
    rng = random.Random(2)
    for _ in range(1500):
        n = rng.choice((rng.randint(0, 20), rng.randint(200, 600)))
        alphabet = rng.choice(((0, 1, 2, 0xFF), tuple(range(256)), (7,)))
        data = bytes(rng.choice(alphabet) for _ in range(n))
        enc = c_cobs_encode(lib, data)
        assert enc == cobs_encode(data)
        assert c_cobs_decode(lib, enc) == data
    for _ in range(3000):                                         # arbitrary input: same verdict as Python
        enc = bytes(rng.getrandbits(8) | (0 if rng.random() < 0.05 else 1) for _ in range(rng.randint(0, 60)))
        try:
            ref = cobs_decode(enc)
        except Exception:
            ref = None
        got = c_cobs_decode(lib, enc)
        assert (got if isinstance(got, bytes) else None) == ref


# ----------------------------------------------------------------------------- frames
def _random_message(rng: random.Random) -> Message:
    n = rng.randint(1, MAX_WHEELS)
    seq = rng.getrandbits(16)
    k = rng.randrange(7)
    if k == 0:
        return SetWheels(seq=seq, speeds_cps=[rng.randint(-2**31, 2**31 - 1) for _ in range(n)])
    if k == 1:
        return Telemetry(seq=seq, ack_seq=rng.getrandbits(16), time_ms=rng.getrandbits(32), faults=rng.getrandbits(16),
                         state=rng.getrandbits(8), encoder_counts=[rng.randint(-2**31, 2**31 - 1) for _ in range(n)],
                         speeds_cps=[rng.randint(-2**31, 2**31 - 1) for _ in range(n)],
                         currents_ma=[rng.randint(-32768, 32767) for _ in range(n)], battery_mv=rng.getrandbits(16),
                         rx_errors=rng.getrandbits(16))
    if k == 2:
        return Info(seq=seq, ack_seq=rng.getrandbits(16), fw_version=(1, 0, rng.getrandbits(8)), n_wheels=n,
                    capabilities=rng.getrandbits(16), counts_per_rev=rng.getrandbits(32),
                    max_speed_cps=rng.getrandbits(32), watchdog_ms=rng.getrandbits(16))
    if k == 3:
        return SetWatchdog(seq=seq, timeout_ms=rng.randint(50, 10000))
    if k == 4:
        return Nack(seq=seq, ack_seq=rng.getrandbits(16), nacked_type=rng.getrandbits(8), code=rng.randint(1, 8),
                    detail=rng.getrandbits(8))
    if k == 5:
        return Ack(seq=seq, ack_seq=rng.getrandbits(16), acked_type=rng.getrandbits(8))
    return rng.choice([Hello, Heartbeat, EStop, Arm, Disarm, ResetEncoders])(seq=seq)


def test_python_frames_parse_in_c_and_c_frames_match_python(lib):
    rng = random.Random(3)
    for _ in range(1500):
        msg = _random_message(rng)
        wire = encode_message(msg)
        body = c_cobs_decode(lib, wire[:-1])
        assert isinstance(body, bytes)
        h = Header()
        assert lib.rnp_frame_parse(body, len(body), ctypes.byref(h)) == 0
        assert (h.version, h.type, h.seq, h.payload_len) == (1, int(msg.TYPE), msg.seq, len(body) - 6)
        payload = body[4:-2]
        built = c_frame_build(lib, int(msg.TYPE), msg.seq, payload)
        assert built == wire                                       # byte-identical to the Python encoder
        assert decode_frame(built[:-1]) == msg


def test_c_frame_parse_errors(lib):
    body = cobs_decode(encode_message(Heartbeat(seq=9))[:-1])
    h = Header()
    bad = bytearray(body)
    bad[-2] ^= 1
    assert lib.rnp_frame_parse(bytes(bad), len(bad), ctypes.byref(h)) == -4          # CRC
    assert lib.rnp_frame_parse(body[:5], 5, ctypes.byref(h)) == -2                  # short
    big = bytes(129)
    assert lib.rnp_frame_parse(big, len(big), ctypes.byref(h)) == -3                 # long
    assert c_frame_build(lib, 4, 0, bytes(123)) is None                              # payload > 122
    assert c_frame_build(lib, 4, 0, bytes(122)) is not None
    assert c_frame_build(lib, 4, 0, b"", cap=6) is None                               # 7 bytes needed
    assert c_frame_build(lib, 4, 0, b"", cap=8) == encode_message(Heartbeat(seq=0))


# ----------------------------------------------------------------------------- device behaviour
def test_init_rejects_bad_config(lib):
    assert CDevice(lib, n_wheels=0).init_rc == -6
    assert CDevice(lib, n_wheels=9).init_rc == -6
    dev = CDevice(lib, max_speed_cps=0)
    assert dev.init_rc == -6
    host = Host(dev)
    assert isinstance(host.send(Hello(), 0), Info)
    nack = host.send(Arm(), 1)
    assert isinstance(nack, Nack) and nack.code == NackCode.NEED_HELLO      # a misconfigured device never arms
    assert CDevice(lib).init_rc == 0


def test_handshake_and_session(lib):
    dev = CDevice(lib, n_wheels=4, counts_per_rev=1440, max_speed_cps=3000, capabilities=0x0003, fw=(2, 5, 7))
    host = Host(dev)
    assert dev.faults() == RnpFault.REBOOTED and dev.state() == 0
    nack = host.send(Arm(), 0)
    assert isinstance(nack, Nack) and (nack.code, nack.nacked_type, nack.ack_seq) == (NackCode.NEED_HELLO, 6, 0)
    info = host.send(Hello(), 1)
    assert info == Info(seq=1, ack_seq=1, fw_version=(2, 5, 7), n_wheels=4, capabilities=3, counts_per_rev=1440,
                        max_speed_cps=3000, watchdog_ms=500)
    assert dev.faults() == 0
    assert host.send(SetWatchdog(timeout_ms=300), 2) == Ack(seq=2, ack_seq=2, acked_type=MsgType.SET_WATCHDOG)
    nack = host.send(SetWheels(speeds_cps=[1, 2, 3, 4]), 3)
    assert nack.code == NackCode.NOT_ARMED and dev.output() == (False, [0, 0, 0, 0])
    assert isinstance(host.send(Arm(), 4), Ack)
    assert dev.state() == 1 and dev.output() == (False, [0] * 4)          # armed, but no fresh command yet
    tel = host.send(SetWheels(speeds_cps=[100, -100, 3000, -3000]), 5)
    assert isinstance(tel, Telemetry) and tel.ack_seq == 5 and tel.time_ms == 5 and tel.state == 3
    assert dev.output() == (True, [100, -100, 3000, -3000])
    assert host.send(SetWheels(speeds_cps=[0, 0, 3001, 0]), 6).code == NackCode.OUT_OF_RANGE
    assert host.send(SetWheels(speeds_cps=[0, 0, 3001, 0]), 6).detail == 2
    assert host.send(SetWheels(speeds_cps=[0, 0, 0, -2**31]), 6).detail == 3          # no abs() overflow
    assert dev.output() == (True, [100, -100, 3000, -3000])                         # refused: nothing changed
    n = host.send(SetWheels(speeds_cps=[1, 2]), 7)
    assert (n.code, n.detail) == (NackCode.WHEEL_COUNT, 4)
    assert isinstance(host.send(Disarm(), 8), Ack) and dev.output() == (False, [0] * 4) and dev.state() == 0


@pytest.mark.parametrize("wire_args,code,detail", [
    ((0x04, b"", 2), NackCode.BAD_VERSION, 1),
    ((0x55, b"", 1), NackCode.UNKNOWN_TYPE, 0),
    ((0x82, b"", 1), NackCode.UNKNOWN_TYPE, 0),                    # a device->host type sent to the device
    ((0x04, b"\x00", 1), NackCode.BAD_LENGTH, 0),
    ((0x01, b"", 1), NackCode.BAD_LENGTH, 1),
    ((0x01, b"\x07", 1), NackCode.BAD_VERSION, 1),
    ((0x03, b"\x01\x02\x03", 1), NackCode.BAD_LENGTH, 2),
    ((0x03, b"\x31\x00", 1), NackCode.OUT_OF_RANGE, 0),           # 49 ms
    ((0x03, b"\x11\x27", 1), NackCode.OUT_OF_RANGE, 0),           # 10001 ms
    ((0x02, b"", 1), NackCode.BAD_LENGTH, 17),
    ((0x02, b"\x04" + bytes(15), 1), NackCode.BAD_LENGTH, 17),
    ((0x02, b"\x02" + bytes(8), 1), NackCode.WHEEL_COUNT, 4),
    ((0x05, b"\x00", 1), NackCode.BAD_LENGTH, 0),
    ((0x08, b"\x00\x00", 1), NackCode.BAD_LENGTH, 0),
])
def test_bad_content_is_nacked_with_a_reason(lib, wire_args, code, detail):
    dev = CDevice(lib, n_wheels=4)
    t, payload, version = wire_args
    wire = encode_raw_frame(t, 0x0A0B, payload, version=version)
    reply = Host(dev).send(wire, 0)
    assert isinstance(reply, Nack)
    assert (reply.code, reply.detail, reply.ack_seq, reply.nacked_type) == (code, detail, 0x0A0B, t)
    try:                                                           # where the spec fixes it, Python agrees
        decode_frame(wire[:-1], direction="to_device")
    except ContentError as e:
        assert e.code == code
    else:                                                          # only the device knows its wheel count
        assert code == NackCode.WHEEL_COUNT, "the Python decoder accepted a frame the device NACKs"



def test_corrupt_frames_get_silence_and_count(lib):
    dev = CDevice(lib)
    good = encode_message(Hello(seq=1))
    body = bytearray(cobs_decode(good[:-1]))
    body[4] ^= 0x02                                                # payload bit flip: CRC fails
    assert dev.rx_bytes(cobs_encode(bytes(body)) + b"\x00", 0) == b""
    assert dev.rx_bytes(b"\x05\x01\x02\x00", 0) == b""             # truncated COBS block
    assert dev.rx_bytes(cobs_encode(b"\x01\x04\x00") + b"\x00", 0) == b""   # body too short
    assert dev.rx_bytes(b"\x01" * 500 + b"\x00", 0) == b""         # oversize
    assert dev.rx_bytes(b"\x00\x00\x00", 0) == b""                 # empty frames: ignored, not errors
    tel_host = Host(dev)
    assert isinstance(tel_host.send(Hello(), 1), Info)
    tel = tel_host.send(Heartbeat(), 2)
    assert tel.rx_errors == 4


def test_telemetry_reports_sensors_offsets_and_faults(lib):
    dev = CDevice(lib, n_wheels=2)
    host = Host(dev)
    host.send(Hello(), 0)
    dev.set_sensors([2**31 - 1, -5], [120, -7], [1500, -30], 11800, 0xFFFF)
    tel = host.send(Heartbeat(), 10)
    assert tel.encoder_counts == (2**31 - 1, -5) and tel.speeds_cps == (120, -7) and tel.currents_ma == (1500, -30)
    assert tel.battery_mv == 11800 and tel.faults == 0x00F8        # only the hardware bits are the application's
    assert isinstance(host.send(ResetEncoders(), 11), Ack)
    assert host.send(Heartbeat(), 12).encoder_counts == (0, 0)
    dev.set_sensors([-2**31 + 9, 0], [0, 0], [0, 0], 0, 0)          # the raw counter wrapped forward by 10
    assert host.send(Heartbeat(), 13).encoder_counts == (10, 5)


def _armed(lib, watchdog_ms=200, t0=0):
    dev = CDevice(lib, n_wheels=2, now_ms=t0)
    host = Host(dev)
    host.send(Hello(), t0)
    assert isinstance(host.send(SetWatchdog(timeout_ms=watchdog_ms), t0), Ack)
    assert isinstance(host.send(Arm(), t0), Ack)
    return dev, host


@pytest.mark.parametrize("t0", [0, 1000, 0xFFFFFF00])     # the last one crosses the 2**32 millis() wrap
def test_watchdog_trips_exactly_on_time(lib, t0):
    dev, host = _armed(lib, 200, t0)
    assert isinstance(host.send(SetWheels(speeds_cps=[50, 60]), t0 + 1000 - 1000), Telemetry)
    fed = t0
    dev.tick(fed + 199)
    assert dev.output() == (True, [50, 60]) and not dev.faults() & RnpFault.WATCHDOG
    dev.tick(fed + 200)
    assert dev.output() == (False, [0, 0]) and dev.faults() & RnpFault.WATCHDOG and dev.state() == 1
    # a heartbeat feeds the watchdog but never restarts motion
    tel = host.send(Heartbeat(), fed + 300)
    assert tel.faults & RnpFault.WATCHDOG and tel.state == 1 and dev.output() == (False, [0, 0])
    # only a fresh SET_WHEELS does, and it clears the flag
    tel = host.send(SetWheels(speeds_cps=[1, 2]), fed + 301)
    assert not tel.faults & RnpFault.WATCHDOG and tel.state == 3 and dev.output() == (True, [1, 2])


def test_heartbeats_keep_motion_alive_and_late_frames_trip_first(lib):
    dev, host = _armed(lib, 100)
    host.send(SetWheels(speeds_cps=[5, 5]), 0)
    for t in range(50, 1000, 50):
        host.send(Heartbeat(), t)
        dev.tick(t + 49)
        assert dev.output() == (True, [5, 5])
    # a SET_WHEELS arriving late: the watchdog is evaluated first (trip), then the command restarts motion
    tel = host.send(SetWheels(speeds_cps=[7, 7]), 950 + 100 + 500)
    assert tel.state == 3 and dev.output() == (True, [7, 7]) and not tel.faults & RnpFault.WATCHDOG
    # a HEARTBEAT arriving late does not: the trip happens first and sticks
    tel = host.send(Heartbeat(), 1550 + 100)
    assert tel.faults & RnpFault.WATCHDOG and dev.output() == (False, [0, 0])


def test_estop_latches_until_arm_and_fresh_command(lib):
    dev, host = _armed(lib)
    host.send(SetWheels(speeds_cps=[9, 9]), 1)
    assert isinstance(host.send(EStop(), 2), Ack)
    assert dev.output() == (False, [0, 0]) and dev.faults() & RnpFault.ESTOP and dev.state() == 0
    assert host.send(SetWheels(speeds_cps=[9, 9]), 3).code == NackCode.ESTOPPED
    assert host.send(Heartbeat(), 4).faults & RnpFault.ESTOP
    assert isinstance(host.send(Arm(), 5), Ack)
    assert not dev.faults() & RnpFault.ESTOP and dev.output() == (False, [0, 0])    # no stale command replayed
    host.send(SetWheels(speeds_cps=[3, 4]), 6)
    assert dev.output() == (True, [3, 4])
    dev.hw_estop()                                                                   # hardware input, same latch
    assert dev.output() == (False, [0, 0]) and host.send(SetWheels(speeds_cps=[3, 4]), 7).code == NackCode.ESTOPPED
    # HELLO (a reconnecting host) stops and disarms too, but keeps the e-stop latch
    assert isinstance(host.send(Hello(), 8), Info) and dev.faults() & RnpFault.ESTOP


def test_reboot_requires_hello_before_arm(lib):
    dev, host = _armed(lib, 1000)
    host.send(SetWheels(speeds_cps=[1, 1]), 1)
    lib.rnp_device_init(dev.mem, ctypes.byref(dev.cfg), 2)                  # power cycle
    assert dev.output() == (False, [0, 0]) and dev.faults() == RnpFault.REBOOTED
    tel = host.send(Heartbeat(), 3)
    assert tel.seq == 0 and tel.faults & RnpFault.REBOOTED                  # device seq restarted
    assert host.send(Arm(), 4).code == NackCode.NEED_HELLO
    info = host.send(Hello(), 5)
    assert info.watchdog_ms == 500                                          # the setting was lost: resend it
    assert isinstance(host.send(Arm(), 6), Ack)


def test_reply_dropped_when_output_buffer_too_small(lib):
    dev = CDevice(lib)
    assert dev.rx_bytes(encode_message(Hello(seq=1)), 0, cap=10) == b""     # INFO needs more
    assert dev.rx_bytes(encode_message(Heartbeat(seq=2)), 1)                # then works, seq not consumed
    wire = encode_message(Heartbeat(seq=3)) * 3
    assert len(RnpDecoder().feed(dev.rx_bytes(wire, 2))) == 3               # one reply per frame


# ----------------------------------------------------------------------------- differential vs reference
def _random_host_bytes(rng: random.Random, n_wheels: int, vmax: int) -> bytes:
    seq = rng.getrandbits(16)
    k = rng.random()
    if k < 0.35:
        n = n_wheels if rng.random() < 0.9 else rng.randint(0, 9)
        speeds = [rng.randint(-vmax, vmax) if rng.random() < 0.9 else rng.randint(-2**31, 2**31 - 1) for _ in range(n)]
        return encode_raw_frame(2, seq, bytes([n & 0xFF]) + struct.pack(f"<{n}i", *speeds))
    if k < 0.55:
        return encode_message(Heartbeat(seq=seq))
    if k < 0.75:
        t = rng.choice([1, 3, 5, 6, 6, 7, 8])
        return encode_message({1: Hello, 3: SetWatchdog, 5: EStop, 6: Arm, 7: Disarm, 8: ResetEncoders}[t](
            seq=seq, **({"timeout_ms": rng.choice([50, 80, 200, 1000, 10000])} if t == 3 else {})))
    if k < 0.85:                                                   # bad content, valid CRC
        return encode_raw_frame(rng.choice([1, 2, 3, 4, 5, 9, 0x81, 0xFF]), seq,
                                bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 40))),
                                version=rng.choice([1, 1, 1, 0, 2]))
    if k < 0.95:                                                   # corrupted frame
        w = bytearray(encode_message(Heartbeat(seq=seq)) if rng.random() < 0.5 else
                      encode_raw_frame(2, seq, bytes([n_wheels]) + bytes(4 * n_wheels)))
        w[rng.randrange(len(w))] ^= 1 << rng.randrange(8)
        return bytes(w)
    return bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 300)))   # noise (zeros and oversize included)


def test_c_core_matches_reference_model(lib):
    rng = random.Random(5)
    steps = 0
    for trial in range(60):
        nw = rng.randint(1, MAX_WHEELS)
        vmax = rng.choice([100, 5000, 2**31 - 1])
        t = rng.choice([0, 5000, 0xFFFFF000])
        kw = dict(n_wheels=nw, counts_per_rev=rng.getrandbits(32), max_speed_cps=vmax,
                  capabilities=rng.getrandbits(4), fw=(1, 0, trial), now_ms=t)
        c, ref = CDevice(lib, **kw), RefFirmware(**kw)
        for _ in range(150):
            steps += 1
            t = (t + rng.choice([0, 1, 10, 49, 50, 51, 199, 200, 201, 499, 500, 2000])) & 0xFFFFFFFF
            act = rng.random()
            if act < 0.1:
                c.tick(t)
                ref.tick(t)
            elif act < 0.15:
                sensors = ([rng.randint(-2**31, 2**31 - 1) for _ in range(nw)],
                           [rng.randint(-2**31, 2**31 - 1) for _ in range(nw)],
                           [rng.randint(-32768, 32767) for _ in range(nw)], rng.getrandbits(16), rng.getrandbits(16))
                c.set_sensors(*sensors)
                ref.set_sensors(*sensors)
            elif act < 0.16:
                c.hw_estop()
                ref.hw_estop()
            else:
                data = _random_host_bytes(rng, nw, min(vmax, 10**6))
                if rng.random() < 0.3:                             # split across two calls, same time
                    cut = rng.randrange(len(data) + 1)
                    got = c.rx_bytes(data[:cut], t) + c.rx_bytes(data[cut:], t)
                else:
                    got = c.rx_bytes(data, t)
                want = ref.rx_bytes(data, t)
                assert got == want, f"trial {trial}: replies differ for {data.hex()}"
            assert c.output() == ref.output()
            assert (c.faults(), c.state()) == (ref.faults(), ref.state())
    assert steps == 60 * 150


# ----------------------------------------------------------------------------- differential vs the virtual device
def _random_steps(rng, nw, vmax, t, n_steps):
    """(kind, args, t) steps shared by the C core and a Python model: ticks, sensor updates, hardware
    e-stops and host byte streams (valid, bad content, corrupted, noise), with times that cross deadlines."""
    for _ in range(n_steps):
        t = (t + rng.choice([0, 1, 10, 49, 50, 51, 199, 200, 201, 299, 300, 301, 499, 500, 2000])) & 0xFFFFFFFF
        act = rng.random()
        if act < 0.1:
            yield "tick", None, t
        elif act < 0.15:
            yield "sensors", ([rng.randint(-2**31, 2**31 - 1) for _ in range(nw)],
                              [rng.randint(-2**31, 2**31 - 1) for _ in range(nw)],
                              [rng.randint(-32768, 32767) for _ in range(nw)], rng.getrandbits(16),
                              rng.getrandbits(16)), t
        elif act < 0.16:
            yield "estop", None, t
        else:
            data = _random_host_bytes(rng, nw, min(vmax, 10**6))
            yield "bytes", (data, rng.randrange(len(data) + 1) if rng.random() < 0.3 else None), t


def test_c_core_matches_the_virtual_devices_firmware(lib):
    """sim.devices.rnp.RnpFirmware (what the virtual device runs) against the compiled C core: the same byte
    streams, ticks, sensor values and e-stops give byte-identical replies and identical states."""
    from sim.devices.rnp import RnpFirmware

    rng = random.Random(11)
    for trial in range(60):
        nw = rng.randint(1, MAX_WHEELS)
        vmax = rng.choice([100, 5000, 2**31 - 1])
        t = rng.choice([0, 5000, 0xFFFFF000])
        caps, cpr, fw = rng.getrandbits(4), rng.getrandbits(32), (1, 0, trial)
        c = CDevice(lib, n_wheels=nw, counts_per_rev=cpr, max_speed_cps=vmax, capabilities=caps, fw=fw, now_ms=t)
        py = RnpFirmware(n_wheels=nw, counts_per_rev=cpr, max_speed_cps=vmax, capabilities=caps, fw_version=fw,
                         now_ms=t)
        for kind, args, t in _random_steps(rng, nw, vmax, t, 150):
            if kind == "tick":
                c.tick(t)
                py.tick(t)
            elif kind == "sensors":
                c.set_sensors(*args)
                py.set_sensors(*args)
            elif kind == "estop":
                c.hw_estop()
                py.estop()
            else:
                data, cut = args
                if cut is None:
                    got, want = c.rx_bytes(data, t), py.rx(data, t)
                else:                                              # split across two calls, same time
                    got = c.rx_bytes(data[:cut], t) + c.rx_bytes(data[cut:], t)
                    want = py.rx(data[:cut], t) + py.rx(data[cut:], t)
                assert got == want, f"trial {trial}: replies differ for {data.hex()}"
            assert c.output() == py.targets()
            assert (c.faults(), c.state()) == (py.faults(), py.state())


def test_c_core_matches_the_virtual_device_end_to_end(lib):
    """The whole virtual device (sim.devices.rnp.VirtualRnpDevice on a simulated skid-steer rover): every
    chunk it receives goes to the C core too, with the sensor values the device sampled for it and the
    device's millis(); the replies must be the same bytes. Times are whole device milliseconds."""
    import numpy as np

    import sim.devices as sd
    from sim.devices.rnp import VirtualRnpDevice

    w = sd.flat_world(size_m=10.0, cell_size_m=0.1, physics_dt_s=0.001)
    dev = VirtualRnpDevice(sd.virtual_rover("skidsteer", world=w), millis0=0xFFFFFE00)   # crosses the wrap
    core = dev.core
    c = CDevice(lib, n_wheels=core.n, counts_per_rev=core.counts_per_rev, max_speed_cps=core.max_speed_cps,
                capabilities=core.capabilities, fw=core.fw_version, now_ms=dev.millis(w.time_s))
    rng = random.Random(12)
    vmax = core.max_speed_cps
    seq = 0

    def host_frame(t, payload=b""):
        nonlocal seq
        seq = (seq + 1) & 0xFFFF
        return encode_raw_frame(t, seq, payload)

    session = [host_frame(1, b"\x01"), host_frame(3, struct.pack("<H", 300)), host_frame(6)]
    replies = 0
    for step in range(1500):
        k = rng.random()
        if step < len(session):
            data = session[step]
        elif k < 0.45:
            data = host_frame(2, bytes([4]) + struct.pack("<4i", *(rng.randint(-vmax, vmax) for _ in range(4))))
        elif k < 0.7:
            data = host_frame(4)
        elif k < 0.75:
            data = host_frame(rng.choice([1, 6, 6, 7, 8]), b"\x01" if rng.random() < 0.5 else b"")
        else:
            data = _random_host_bytes(rng, 4, vmax)
        w.advance(rng.choice([0.0, 0.001, 0.01, 0.05, 0.2, 0.31]))
        if rng.random() < 0.02:
            dev.press_estop(rng.random() < 0.5)
        t_s = w.time_s
        if dev.estop_input:                                        # the .ino's loop passes while time went by
            c.hw_estop()
        got = b"".join(dev.receive(data, t_s))
        counts, speeds, currents, mv, hw = dev.last_sensors
        c.set_sensors(counts, speeds, currents, mv, hw)
        now = dev.millis(t_s)
        want = c.rx_bytes(data, now)
        if dev.estop_input:                                        # and the one right after the bytes
            c.hw_estop()
        c.tick(now)
        assert got == want, f"step {step}: replies differ for {data.hex()}"
        replies += bool(got)
        moving, targets = c.output()
        assert (moving, targets) == core.targets() and (c.faults(), c.state()) == (core.faults(), core.state())
        expect = np.zeros(4) if not moving else np.asarray(targets) * 2 * np.pi / 1440
        np.testing.assert_allclose(dev.targets_radps() if moving else np.zeros(4), expect)
    assert replies > 800


class TwinCore:
    """The virtual board's firmware core run twice, fed the same calls: the Python port (which the device acts
    on) and the compiled C core. Every reply must be the same bytes and every output, fault word and state
    the same, so the board behaves exactly as one running the C core would."""

    def __init__(self, py, c):
        self._py, self._c = py, c
        self.chunks = self.replies = self.ticks = 0

    def __getattr__(self, name):                      # attributes the device reads (armed, watchdog_ms...)
        return getattr(self._py, name)

    def _same(self, where):
        assert self._c.output() == self._py.targets(), where
        assert (self._c.faults(), self._c.state()) == (self._py.faults(), self._py.state()), where

    def boot(self, now_ms):
        self._py.boot(now_ms)
        assert self._c.lib.rnp_device_init(self._c.mem, ctypes.byref(self._c.cfg), now_ms & 0xFFFFFFFF) == 0
        self._same("boot")

    def set_sensors(self, *sensors):
        self._py.set_sensors(*sensors)
        self._c.set_sensors(*sensors)

    def tick(self, now_ms):
        tripped = self._py.tick(now_ms)
        self._c.tick(now_ms)
        self.ticks += 1
        self._same(f"tick at {now_ms} ms")
        return tripped

    def estop(self):
        self._py.estop()
        self._c.hw_estop()
        self._same("hardware e-stop")

    def rx_frames(self, data, now_ms):
        out = self._py.rx_frames(data, now_ms)
        want = self._c.rx_bytes(bytes(data), now_ms)
        assert b"".join(r[0] for r in out) == want, f"replies differ for {bytes(data).hex()} at {now_ms} ms"
        self._same(f"rx at {now_ms} ms")
        self.chunks += 1
        self.replies += len(out)
        return out


def test_the_python_driver_drives_the_compiled_c_core(lib):
    """The real driver (drivers.rnp.RnpRover, single-threaded on simulated time over sim://) runs a bench
    session against a board whose firmware core is the compiled C core (twinned with the Python port, see
    TwinCore): connect, arm, drive, host-watchdog stop, the host dying (the C watchdog stops the wheels),
    recovery with a fresh command, a hardware e-stop and a re-arm. Every byte the driver sent went through
    the C receiver and every reply the driver parsed is the C core's."""
    import numpy as np

    import nav
    import sim.devices as sd
    from drivers import Fault
    from drivers.rnp import RnpRover

    profile = nav.load_rover("skidsteer")
    w = sd.flat_world(size_m=30.0, cell_size_m=0.1, physics_dt_s=0.001)
    att = sd.attach_sim("rnp-c-core", "rnp", rover=profile, world=w, baud=115200)
    dev = att.device
    py = dev.core
    twin = TwinCore(py, CDevice(lib, n_wheels=py.n, counts_per_rev=py.counts_per_rev,
                                max_speed_cps=py.max_speed_cps, capabilities=py.capabilities, fw=py.fw_version,
                                now_ms=py.last_feed_ms))
    twin._same("power on")
    dev.core = twin
    r = RnpRover(att.url, profile, clock=w.clock, threaded=False)

    def drive(seconds):
        sd.run_stepped(w, r, seconds, control=lambda t: r.set_twist(0.2, 0.0))

    try:
        r.open()
        r.arm()
        drive(1.0)
        tel = r.read_telemetry()
        assert dev.targets_cps().all() and np.all(tel.wheel_speed_radps > 1.0) and not tel.faults
        sd.run_stepped(w, r, 0.5)                                       # control goes quiet
        assert r.stats.watchdog_stop_s and not dev.targets_cps().any()
        drive(0.5)
        assert dev.targets_cps().all()
        sd.run_stepped(w, r, 0.8, spin=False, watchdog=False)          # the host dies: the C core's watchdog
        assert twin._c.faults() & int(RnpFault.WATCHDOG) and twin._c.output()[0] is False
        assert [e for e in dev.events if e[1] == "watchdog"]
        drive(1.0)                                                      # the host is back: a fresh command
        assert dev.targets_cps().all() and twin._c.output()[0] is True
        dev.press_estop(True)                                           # the board's e-stop input
        drive(0.3)                                                      # commands are dropped meanwhile
        assert not dev.targets_cps().any() and Fault.ESTOP in r.read_telemetry().faults
        assert twin._c.faults() & int(RnpFault.ESTOP)
        dev.press_estop(False)
        drive(0.3)
        assert not dev.targets_cps().any()                              # latched until arm()
        r.arm()
        drive(0.5)
        assert dev.targets_cps().all() and twin._c.output()[0] is True
        assert np.all(r.read_telemetry().wheel_speed_radps > 1.0)
    finally:
        r.close()
        att.close()
    assert twin.chunks > 200 and twin.replies > 200 and twin.ticks > 1000

# ----------------------------------------------------------------------------- fuzzing
def test_fuzz_c_receiver_replies_are_always_valid_frames(lib):
    rng = random.Random(6)
    dev = CDevice(lib, n_wheels=6, max_speed_cps=10000)
    dec = RnpDecoder(direction="to_host")
    host_seq_seen = 0
    t = 0
    for i in range(4000):
        t += rng.randint(0, 30)
        data = _random_host_bytes(rng, 6, 10000)
        if rng.random() < 0.3:
            data = bytes(b ^ (1 << rng.randrange(8)) if rng.random() < 0.01 else b for b in data)
        reply = dev.rx_bytes(data, t, cap=rng.choice([0, 5, 4096]))
        if rng.random() < 0.05:
            dev.tick(t)
        for m in dec.feed(reply):
            host_seq_seen += 1
    assert dec.stats.errors == 0 and host_seq_seen > 500


HARNESS = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "rnp_core.h"

int main(int argc, char **argv)
{
    FILE *f;
    long n;
    uint8_t *buf;
    size_t i = 0;
    uint32_t now = 0xFFFFF000u;
    rnp_config_t cfg = {1, 2, 3, 5, 0x000F, 4096, 20000};
    static rnp_device_t dev;
    static uint8_t out[4 * RNP_MAX_WIRE], dec[RNP_MAX_BODY + 300], enc[2 * 700], dec2[2 * 700];
    unsigned long replies = 0;
    if (argc != 2 || !(f = fopen(argv[1], "rb"))) return 3;
    fseek(f, 0, SEEK_END); n = ftell(f); fseek(f, 0, SEEK_SET);
    buf = (uint8_t *)malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) return 4;
    fclose(f);
    rnp_device_init(&dev, &cfg, now);
    while (i < (size_t)n) {
        uint8_t ctl = buf[i];
        size_t k = 1u + (size_t)(ctl % 97u), cap, w;
        int32_t targets[RNP_MAX_WHEELS];
        int m;
        if (k > (size_t)n - i) k = (size_t)n - i;
        now += ctl % 60u;
        cap = (ctl & 1u) ? sizeof out : (size_t)(ctl % 40u);
        w = rnp_device_rx(&dev, buf + i, k, now, (ctl % 7u == 0u) ? NULL : out, (ctl % 7u == 0u) ? 0 : cap);
        if (w > cap) return 5;
        replies += w;
        rnp_device_tick(&dev, now);
        if (rnp_device_targets(&dev, targets) && !(rnp_device_state(&dev) & RNP_STATE_DRIVING)) return 6;
        if (ctl % 11u == 0u) rnp_device_estop(&dev);
        m = rnp_cobs_decode(buf + i, k, dec, (ctl & 2u) ? sizeof dec : (size_t)(ctl % 16u));
        if (m >= 0) {
            rnp_header_t h;
            size_t e = rnp_cobs_encode(dec, (size_t)m, enc, sizeof enc);
            (void)rnp_frame_parse(dec, (size_t)m, &h);
            if (e == 0 || rnp_cobs_decode(enc, e, dec2, sizeof dec2) != m || memcmp(dec, dec2, (size_t)m)) return 7;
        }
        (void)rnp_frame_build(ctl, (uint16_t)i, buf + i, k, enc, (ctl & 4u) ? sizeof enc : (size_t)(ctl % 9u));
        (void)rnp_crc16(buf + i, k, ctl);
        i += k;
    }
    free(buf);
    printf("OK %lu %u\n", replies, (unsigned)dev.rx_errors);
    return 0;
}
"""


def test_fuzz_under_address_and_undefined_behaviour_sanitizers(tmp_path):
    """A standalone harness (no Python in the process, so no LD_PRELOAD of libasan is needed) drives every
    entry point of the core with valid, bad-content, corrupted and random bytes under ASan + UBSan."""
    (tmp_path / "harness.c").write_text(HARNESS)
    exe = tmp_path / "harness"
    r = subprocess.run([GCC, "-std=c99", "-g", "-O1", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                        "-fno-omit-frame-pointer", "-Wall", "-Wextra", "-Werror", f"-I{FW_DIR}",
                        str(tmp_path / "harness.c"), str(FW_DIR / "rnp_core.c"), "-o", str(exe)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"this gcc cannot build with -fsanitize=address,undefined: {r.stderr.strip()[:300]}")
    rng = random.Random(8)
    blob = bytearray()
    for _ in range(6000):
        k = rng.random()
        if k < 0.5:
            blob += _random_host_bytes(rng, 5, 20000)
        elif k < 0.7:
            blob += rnp_wire(rng.choice([1, 2, 3, 4, 6]), rng.getrandbits(16),
                             bytes([5]) + bytes(rng.getrandbits(8) for _ in range(20)) if rng.random() < 0.5 else b"")
        else:
            blob += bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 400)))
    data = tmp_path / "input.bin"
    data.write_bytes(bytes(blob))
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:halt_on_error=1",
               UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1")
    run = subprocess.run([str(exe), str(data)], capture_output=True, text=True, env=env, timeout=120)
    report = run.stderr
    if run.returncode != 0 and "Sanitizer" not in report and "runtime error" not in report \
            and run.returncode not in (5, 6, 7):
        pytest.skip(f"the sanitizer runtime could not run here (exit {run.returncode}): {report.strip()[:300]}")
    assert run.returncode == 0 and run.stdout.startswith("OK"), f"exit {run.returncode}\n{run.stdout}\n{report[-3000:]}"
    assert "runtime error" not in report
    _, reply_bytes, rx_errors = run.stdout.split()
    assert int(reply_bytes) > 10000 and int(rx_errors) > 100     # the handlers and the error paths both ran
