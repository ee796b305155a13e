"""RNP codec: frames assembled by hand from drivers/PROTOCOL.md, round trips of every message type,
every error path (framing, CRC, content -> NACK code), the streaming decoder, and fuzzing."""
import random
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _ref_protocols import crc16_bitwise, ref_cobs_encode, rnp_body, rnp_wire
from drivers import Fault
from drivers.cobs import FramingError, cobs_encode
from drivers.crc import ChecksumError
from drivers.errors import CommandOutOfRange, ProtocolError
from drivers.rnp_codec import (MAX_BODY, MAX_ENCODED, MAX_WHEELS, Ack, Arm, Capability, ContentError,
                               DeviceState, Disarm, EStop, Heartbeat, Hello, Info, Message, MsgType, Nack,
                               NackCode, ResetEncoders, RnpDecoder, RnpFault, SetWatchdog, SetWheels, Telemetry,
                               decode_body, decode_frame, encode_message, encode_raw_frame, seq_delta, seq_next,
                               to_rover_faults)


def _frame(wire: bytes) -> bytes:
    assert wire.endswith(b"\x00") and 0 not in wire[:-1]
    return wire[:-1]


# ----------------------------------------------------------------------------- hand-built vectors
def test_heartbeat_frame_by_hand():
    # version 1, type 0x04, seq 0x0102 (LE: 02 01), no payload, CRC LE
    head = bytes([0x01, 0x04, 0x02, 0x01])
    c = crc16_bitwise(head)
    body = head + bytes([c & 0xFF, c >> 8])
    wire = ref_cobs_encode(body) + b"\x00"
    assert encode_message(Heartbeat(seq=0x0102)) == wire
    assert decode_frame(wire[:-1]) == Heartbeat(seq=0x0102)


def test_set_wheels_frame_by_hand_has_zeros_stuffed():
    payload = bytes([4]) + (100).to_bytes(4, "little", signed=True) + (-100).to_bytes(4, "little", signed=True) \
        + (0).to_bytes(4, "little") + (2**31 - 1).to_bytes(4, "little")
    wire = rnp_wire(0x02, 7, payload)
    assert encode_message(SetWheels(seq=7, speeds_cps=(100, -100, 0, 2**31 - 1))) == wire
    assert 0 not in wire[:-1]
    assert decode_frame(wire[:-1], direction="to_device").speeds_cps == (100, -100, 0, 2**31 - 1)


def test_device_messages_by_hand():
    info_p = struct.pack("<HBBBBBHIIH", 9, 1, 2, 3, 4, 6, 0x0005, 5500, 20000, 300)
    assert len(info_p) == 19
    info = Info(seq=1, ack_seq=9, fw_version=(2, 3, 4), n_wheels=6, capabilities=5, counts_per_rev=5500,
                max_speed_cps=20000, watchdog_ms=300)
    assert encode_message(info) == rnp_wire(0x81, 1, info_p)
    tel_p = (struct.pack("<HIHBB", 9, 123456, 0x0009, 3, 2) + struct.pack("<2i", -5, 2**31 - 1)
             + struct.pack("<2i", 10, -10) + struct.pack("<2h", 1500, -20) + struct.pack("<HH", 11800, 3))
    assert len(tel_p) == 14 + 10 * 2
    tel = Telemetry(seq=2, ack_seq=9, time_ms=123456, faults=9, state=3, encoder_counts=(-5, 2**31 - 1),
                    speeds_cps=(10, -10), currents_ma=(1500, -20), battery_mv=11800, rx_errors=3)
    assert encode_message(tel) == rnp_wire(0x82, 2, tel_p)
    assert encode_message(Ack(seq=3, ack_seq=0xBEEF, acked_type=5)) == rnp_wire(0x83, 3, bytes([0xEF, 0xBE, 5]))
    assert encode_message(Nack(seq=4, ack_seq=1, nacked_type=2, code=5, detail=6)) == \
        rnp_wire(0x84, 4, bytes([1, 0, 2, 5, 6]))
    assert encode_message(Hello(seq=0)) == rnp_wire(0x01, 0, b"\x01")
    assert encode_message(SetWatchdog(seq=0xFFFF, timeout_ms=300)) == rnp_wire(0x03, 0xFFFF, b"\x2c\x01")
    for cls, t in ((EStop, 5), (Arm, 6), (Disarm, 7), (ResetEncoders, 8)):
        assert encode_message(cls(seq=t)) == rnp_wire(t, t, b"")


def test_flush_prepends_a_delimiter():
    assert encode_message(Arm(seq=1), flush=True) == b"\x00" + encode_message(Arm(seq=1))
    assert encode_raw_frame(6, 1, flush=True) == b"\x00" + encode_message(Arm(seq=1))


# ----------------------------------------------------------------------------- round trips
seqs = st.integers(0, 0xFFFF)
s32 = st.integers(-2**31, 2**31 - 1)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 2**32 - 1)
u8 = st.integers(0, 255)


@st.composite
def messages(draw):
    seq = draw(seqs)
    kind = draw(st.sampled_from(list(MsgType)))
    n = draw(st.integers(1, MAX_WHEELS))
    if kind == MsgType.HELLO:
        return Hello(seq=seq)
    if kind == MsgType.SET_WHEELS:
        return SetWheels(seq=seq, speeds_cps=draw(st.lists(s32, min_size=1, max_size=MAX_WHEELS)))
    if kind == MsgType.SET_WATCHDOG:
        return SetWatchdog(seq=seq, timeout_ms=draw(st.integers(50, 10000)))
    if kind == MsgType.INFO:
        return Info(seq=seq, ack_seq=draw(u16), fw_version=(draw(u8), draw(u8), draw(u8)), n_wheels=n,
                    capabilities=draw(u16), counts_per_rev=draw(u32), max_speed_cps=draw(u32), watchdog_ms=draw(u16))
    if kind == MsgType.TELEMETRY:
        return Telemetry(seq=seq, ack_seq=draw(u16), time_ms=draw(u32), faults=draw(u16), state=draw(u8),
                         encoder_counts=draw(st.lists(s32, min_size=n, max_size=n)),
                         speeds_cps=draw(st.lists(s32, min_size=n, max_size=n)),
                         currents_ma=draw(st.lists(st.integers(-32768, 32767), min_size=n, max_size=n)),
                         battery_mv=draw(u16), rx_errors=draw(u16))
    if kind == MsgType.ACK:
        return Ack(seq=seq, ack_seq=draw(u16), acked_type=draw(u8))
    if kind == MsgType.NACK:
        return Nack(seq=seq, ack_seq=draw(u16), nacked_type=draw(u8), code=draw(u8), detail=draw(u8))
    return {MsgType.HEARTBEAT: Heartbeat, MsgType.ESTOP: EStop, MsgType.ARM: Arm, MsgType.DISARM: Disarm,
            MsgType.RESET_ENCODERS: ResetEncoders}[kind](seq=seq)


@settings(max_examples=500)
@given(messages())
def test_round_trip_every_message(msg):
    wire = encode_message(msg)
    assert len(wire) - 1 <= MAX_ENCODED
    assert decode_frame(_frame(wire)) == msg
    direction = "to_device" if msg.TYPE < 0x80 else "to_host"
    assert decode_frame(_frame(wire), direction=direction) == msg


@settings(max_examples=100)
@given(st.lists(messages(), max_size=10), st.lists(st.integers(0, 10**5), max_size=10), st.booleans())
def test_stream_decoder_round_trip_any_chunking(msgs, cuts, flush):
    stream = b"".join(encode_message(m, flush=flush) for m in msgs)
    bounds = [0] + sorted({c % (len(stream) + 1) for c in cuts}) + [len(stream)]
    d = RnpDecoder()
    got = []
    for a, b in zip(bounds, bounds[1:]):
        got += d.feed(stream[a:b])
    assert got == msgs
    assert d.stats.messages == len(msgs) and d.stats.errors == 0


def test_message_fields_are_coerced():
    m = SetWheels(seq=np.uint16(3), speeds_cps=np.array([1, -2], dtype=np.int32))
    assert m.speeds_cps == (1, -2) and type(m.speeds_cps[0]) is int and m.seq == 3
    assert Telemetry(encoder_counts=[1], speeds_cps=[2], currents_ma=[3]).n_wheels == 1
    with pytest.raises(TypeError, match="SetWheels.speeds_cps"):
        SetWheels(speeds_cps=[1.5])
    with pytest.raises(TypeError, match="bool"):
        SetWatchdog(timeout_ms=True)
    with pytest.raises(TypeError):
        SetWheels(1, speeds_cps=(1,))                      # keyword-only


def test_flag_views_and_reason():
    t = Telemetry(faults=0x0003, state=3, encoder_counts=[0], speeds_cps=[0], currents_ma=[0])
    assert t.fault_flags == RnpFault.WATCHDOG | RnpFault.ESTOP
    assert t.state_flags == DeviceState.ARMED | DeviceState.DRIVING
    assert Nack(ack_seq=4, nacked_type=2, code=7).reason == "SET_WHEELS seq 4 refused: ESTOPPED (detail 0)"
    assert "code 99" in Nack(code=99, nacked_type=0x55).reason and "type 0x55" in Nack(nacked_type=0x55).reason
    assert Capability.CLOSED_LOOP == 4


# ----------------------------------------------------------------------------- encode validation
@pytest.mark.parametrize("msg,match", [
    (SetWatchdog(timeout_ms=49), "timeout_ms = 49 out of range 50..10000"),
    (SetWatchdog(timeout_ms=10001), "timeout_ms"),
    (SetWheels(speeds_cps=()), "number of wheels = 0 out of range 1..8"),
    (SetWheels(speeds_cps=[0] * 9), "number of wheels = 9"),
    (SetWheels(speeds_cps=[2**31]), "does not fit"),
    (Heartbeat(seq=0x10000), "seq = 65536 out of range 0..65535"),
    (Heartbeat(seq=-1), "seq"),
    (Telemetry(encoder_counts=[1, 2], speeds_cps=[1], currents_ma=[1, 2]), "same length"),
    (Info(fw_version=(1, 2)), "fw_version"),
    (Ack(acked_type=256), "does not fit"),
])
def test_encode_rejects(msg, match):
    with pytest.raises((CommandOutOfRange, ValueError, TypeError), match=match):
        encode_message(msg)


def test_encode_rejects_non_messages():
    with pytest.raises(TypeError, match="RNP message"):
        encode_message(b"\x01")
    with pytest.raises(TypeError, match="RNP message"):
        encode_message(Message(seq=1))


def test_validate_false_makes_bad_content_for_fault_injection():
    wire = encode_message(SetWatchdog(seq=5, timeout_ms=10), validate=False)
    with pytest.raises(ContentError) as ei:
        decode_frame(_frame(wire))
    assert (ei.value.code, ei.value.seq, ei.value.msg_type) == (NackCode.OUT_OF_RANGE, 5, MsgType.SET_WATCHDOG)
    wire = encode_message(SetWheels(seq=6, speeds_cps=[0] * 9), validate=False)
    with pytest.raises(ContentError) as ei:
        decode_frame(_frame(wire))
    assert ei.value.code == NackCode.WHEEL_COUNT


# ----------------------------------------------------------------------------- decode errors
def test_crc_error_names_expected_and_received():
    body = bytearray(rnp_body(0x04, 1, b""))
    body[-1] ^= 0x80
    with pytest.raises(ChecksumError, match="CRC mismatch") as ei:
        decode_frame(cobs_encode(bytes(body)))
    assert ei.value.got == ei.value.expected ^ 0x8000


@pytest.mark.parametrize("body,match", [
    (b"\x01\x04\x00", "shorter than header"),
    (b"", "shorter"),
    (bytes(MAX_BODY + 1), "exceeds MAX_BODY"),
])
def test_framing_errors(body, match):
    with pytest.raises(FramingError, match=match):
        decode_body(body)
    with pytest.raises(FramingError, match=match):
        decode_frame(cobs_encode(body))


def test_all_zero_body_is_never_valid():
    # CRC-16/XMODEM of zeros is 0, so an all-zero body passes the CRC: the version byte rejects it
    with pytest.raises(ContentError) as ei:
        decode_body(bytes(8))
    assert ei.value.code == NackCode.BAD_VERSION


@pytest.mark.parametrize("msg_type,payload,version,code,detail", [
    (0x04, b"", 2, NackCode.BAD_VERSION, 1),
    (0x55, b"", 1, NackCode.UNKNOWN_TYPE, 0),
    (0x00, b"", 1, NackCode.UNKNOWN_TYPE, 0),
    (0x04, b"\x00", 1, NackCode.BAD_LENGTH, 0),
    (0x01, b"", 1, NackCode.BAD_LENGTH, 1),
    (0x01, b"\x02", 1, NackCode.BAD_VERSION, 1),
    (0x03, b"\x2c", 1, NackCode.BAD_LENGTH, 2),
    (0x03, b"\x00\x00", 1, NackCode.OUT_OF_RANGE, 0),
    (0x02, b"", 1, NackCode.BAD_LENGTH, 1),
    (0x02, b"\x02" + bytes(7), 1, NackCode.BAD_LENGTH, 9),
    (0x02, b"\x00", 1, NackCode.WHEEL_COUNT, 0),
    (0x02, b"\x09" + bytes(36), 1, NackCode.WHEEL_COUNT, 0),
    (0x82, bytes(5), 1, NackCode.BAD_LENGTH, 10),
    (0x82, struct.pack("<HIHBB", 0, 0, 0, 0, 1) + bytes(10), 1, NackCode.BAD_LENGTH, 24),
    (0x81, bytes(18), 1, NackCode.BAD_LENGTH, 19),
    (0x81, struct.pack("<HBBBBBHIIH", 0, 1, 0, 0, 0, 0, 0, 0, 0, 0), 1, NackCode.OUT_OF_RANGE, 5),
    (0x83, bytes(2), 1, NackCode.BAD_LENGTH, 3),
    (0x84, bytes(6), 1, NackCode.BAD_LENGTH, 5),
])
def test_content_errors_carry_the_nack_code(msg_type, payload, version, code, detail):
    wire = encode_raw_frame(msg_type, 0x1234, payload, version=version)
    with pytest.raises(ContentError) as ei:
        decode_frame(_frame(wire))
    e = ei.value
    assert (e.code, e.detail, e.seq, e.msg_type) == (code, detail, 0x1234, msg_type)
    assert isinstance(e, ProtocolError) and "seq 4660" in str(e)


def test_direction_filter():
    tel = encode_message(Telemetry(encoder_counts=[1], speeds_cps=[1], currents_ma=[1]))
    with pytest.raises(ContentError, match="not a host->device") as ei:
        decode_frame(_frame(tel), direction="to_device")
    assert ei.value.code == NackCode.UNKNOWN_TYPE
    with pytest.raises(ContentError, match="not a device->host"):
        decode_frame(_frame(encode_message(Arm())), direction="to_host")
    with pytest.raises(ValueError, match="direction"):
        decode_frame(_frame(tel), direction="up")
    with pytest.raises(ValueError, match="direction"):
        RnpDecoder(direction="up")


def test_raw_frame_limits():
    with pytest.raises(ValueError, match="MAX_BODY"):
        encode_raw_frame(4, 0, bytes(MAX_BODY - 5))
    assert len(encode_raw_frame(4, 0, bytes(MAX_BODY - 6))) - 1 <= MAX_ENCODED
    with pytest.raises(ValueError, match="seq"):
        encode_raw_frame(4, 0x10000)
    with pytest.raises(ValueError, match="msg_type"):
        encode_raw_frame(256, 0)


# ----------------------------------------------------------------------------- streaming decoder
def test_decoder_reports_errors_in_stream_order():
    bad_crc = bytearray(cobs_encode(rnp_body(0x04, 2, b"")))
    bad_crc[-1] ^= 0x01                                         # corrupt the (stuffed) CRC byte
    stream = (encode_message(Heartbeat(seq=1)) + bytes(bad_crc) + b"\x00"
              + encode_raw_frame(0x03, 3, b"\x01\x00") + b"\x05\x01\x00" + b"\x01" * 200 + b"\x00"
              + encode_message(Arm(seq=4)))
    d = RnpDecoder(direction="to_device")
    out = d.feed_with_errors(stream)
    kinds = [type(x).__name__ for x in out]
    assert kinds == ["Heartbeat", "ChecksumError", "ContentError", "FramingError", "FramingError", "Arm"]
    assert "announces" in str(out[3]) and "longer than 129" in str(out[4])
    assert d.stats.messages == 2 and d.stats.crc_errors == 1 and d.stats.content_errors == 1
    assert d.stats.framing_errors == 2 and d.stats.errors == 4 and len(d.errors) == 4
    assert d.splitter.stats.oversize == 1
    d2 = RnpDecoder()
    assert d2.feed(stream) == [Heartbeat(seq=1), Arm(seq=4)]
    d2.feed(b"\x01\x02")
    d2.reset()
    assert d2.splitter.pending == 0


def test_byte_at_a_time():
    msgs = [Hello(seq=1), SetWheels(seq=2, speeds_cps=[0, 0, 0, 0]), Heartbeat(seq=3)]
    stream = b"".join(encode_message(m) for m in msgs)
    d = RnpDecoder()
    got = []
    for b in stream:
        got += d.feed(bytes([b]))
    assert got == msgs


# ----------------------------------------------------------------------------- helpers
def test_seq_arithmetic():
    assert seq_next(0xFFFF) == 0 and seq_next(5) == 6
    assert seq_delta(1, 0xFFFF) == 2 and seq_delta(0xFFFF, 1) == -2
    assert seq_delta(5, 5) == 0 and seq_delta(0x8000, 0) == -0x8000 and seq_delta(0x7FFF, 0) == 0x7FFF


def test_rover_fault_mapping():
    assert to_rover_faults(0) == Fault.NONE
    assert to_rover_faults(0x0001 | 0x0002 | 0x0004) == Fault.WATCHDOG | Fault.ESTOP
    assert to_rover_faults(0x00F8) == (Fault.OVERCURRENT | Fault.BATTERY_LOW | Fault.DEVICE_FAULT
                                       | Fault.ENCODER_FAULT | Fault.OVERTEMP)


# ----------------------------------------------------------------------------- fuzzing
def _random_message(rng: random.Random) -> Message:
    n = rng.randint(1, MAX_WHEELS)
    pick = rng.randrange(8)
    seq = rng.getrandbits(16)
    if pick == 0:
        return SetWheels(seq=seq, speeds_cps=[rng.randint(-2**31, 2**31 - 1) for _ in range(n)])
    if pick == 1:
        return Telemetry(seq=seq, ack_seq=rng.getrandbits(16), time_ms=rng.getrandbits(32), faults=rng.getrandbits(8),
                         state=rng.getrandbits(2), encoder_counts=[rng.randint(-2**31, 2**31 - 1) for _ in range(n)],
                         speeds_cps=[rng.randint(-5000, 5000) for _ in range(n)],
                         currents_ma=[rng.randint(-3000, 3000) for _ in range(n)], battery_mv=rng.getrandbits(16))
    if pick == 2:
        return SetWatchdog(seq=seq, timeout_ms=rng.randint(50, 10000))
    if pick == 3:
        return Info(seq=seq, n_wheels=n, counts_per_rev=rng.getrandbits(32), fw_version=(1, 2, 3))
    if pick == 4:
        return Nack(seq=seq, ack_seq=rng.getrandbits(16), nacked_type=2, code=rng.randint(1, 8))
    return rng.choice([Hello, Heartbeat, EStop, Arm, Disarm, ResetEncoders])(seq=seq)


def _flip(data: bytes, rate: float, rng: random.Random) -> tuple[bytes, int]:
    out = bytearray(data)
    n = 0
    for k in range(8 * len(out)):
        if rng.random() < rate:
            out[k // 8] ^= 1 << (k % 8)
            n += 1
    return bytes(out), n


def test_fuzz_random_bytes():
    rng = np.random.default_rng(21)
    d = RnpDecoder()
    for _ in range(3000):
        n = int(rng.integers(0, 300))
        zeros = rng.random() < 0.5
        chunk = rng.integers(0 if zeros else 1, 256, n, dtype=np.uint8).tobytes()
        for x in d.feed_with_errors(chunk):
            assert isinstance(x, (Message, ProtocolError))
    assert d.stats.errors > 500


def test_fuzz_corrupted_streams_resync_within_two_frames():
    """Valid frames with bit flips (1e-3/bit and bursts), truncations, garbage and lost delimiters between
    them: nothing raises, no damaged frame decodes, and of the clean frames after a damaged one at most
    the first is lost."""
    rng = random.Random(77)
    clean_total = lost_first = 0
    for trial in range(600):
        sent = []                 # (message, kind)
        stream = bytearray()
        for _ in range(rng.randint(5, 30)):
            msg = _random_message(rng)
            wire = encode_message(msg)
            r = rng.random()
            kind = "clean"
            if r < 0.06:
                wire = wire[:rng.randint(0, len(wire) - 2)]                      # truncated (delimiter lost)
                kind = "damaged"
            elif r < 0.12:
                stream += bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 200)))   # garbage, maybe long
                kind = "after_garbage"
            elif r < 0.18:
                wire = wire[:-1] + bytes([rng.randint(1, 255)])                  # delimiter flipped
                kind = "damaged"
            else:
                wire, nflips = _flip(wire, 1e-3 if r < 0.9 else 3e-2, rng)
                if nflips:
                    kind = "damaged"
            stream += wire
            sent.append((msg, kind))
        stream += encode_message(Heartbeat(seq=0), flush=True)                   # closes whatever is open
        sent.append((Heartbeat(seq=0), "tail"))
        d = RnpDecoder()
        got, pos = [], 0
        while pos < len(stream):
            step = rng.randint(1, 64)
            got += d.feed(bytes(stream[pos:pos + step]))
            pos += step
        # every decoded message was sent, in order, and none of them was a damaged frame
        matched = set()
        j = 0
        for g in got:
            while j < len(sent) and sent[j][0] != g:
                j += 1
            assert j < len(sent), f"trial {trial}: {g} decoded but never sent (or out of order)"
            assert sent[j][1] != "damaged", f"trial {trial}: damaged frame {j} decoded as {g}"
            matched.add(j)
            j += 1
        for i, (m, k) in enumerate(sent):
            if k not in ("clean", "after_garbage"):
                continue
            clean_total += 1
            if i in matched:
                continue
            prev_bad = i > 0 and sent[i - 1][1] == "damaged"
            assert prev_bad or k == "after_garbage", f"trial {trial}: clean frame {i} lost, predecessor intact"
            lost_first += 1
    assert clean_total > 6000 and lost_first < 0.35 * clean_total
