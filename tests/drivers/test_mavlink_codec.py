"""drivers.mavlink_codec against MAVLink built by hand from the specification (tests/drivers/_ref_mavlink.py),
against pymavlink where it is installed, hypothesis round trips, and fuzzing of the parser."""
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _ref_mavlink import (SPEC_CRC_EXTRA, WIRE_FIELDS, command_ack_payload, command_long_payload, crc16_mcrf4xx_bitwise,
                          crc_extra_ref, crc_x25_accumulate, heartbeat_payload, parse_v2, target_payload, trim,
                          v1_frame, v2_frame)
from drivers import mavlink_codec as mc
from drivers.mavlink_codec import FrameParser, decode_payload, encode_frame, encode_payload

HB = dict(type=10, autopilot=3, base_mode=0x81, custom_mode=15, system_status=4, mavlink_version=3)


# ----------------------------------------------------------------------------- CRC and CRC_EXTRA
def test_the_two_oracles_and_the_check_value():
    assert crc16_mcrf4xx_bitwise(b"123456789") == 0x6F91 == crc_x25_accumulate(b"123456789")
    rng = np.random.default_rng(1)
    for n in (0, 1, 7, 64, 300):
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        assert crc16_mcrf4xx_bitwise(data) == crc_x25_accumulate(data) == mc.crc16_mcrf4xx(data)
    assert mc.crc16_mcrf4xx(b"6789", mc.crc16_mcrf4xx(b"12345")) == 0x6F91          # continues a running CRC
    with pytest.raises(ValueError, match="crc"):
        mc.crc16_mcrf4xx(b"", crc=0x10000)


@pytest.mark.parametrize("name", sorted(SPEC_CRC_EXTRA))
def test_crc_extra_matches_the_spec(name):
    assert mc.MESSAGES[name].crc_extra == SPEC_CRC_EXTRA[name]
    if name in WIRE_FIELDS:
        assert crc_extra_ref(name, WIRE_FIELDS[name]) == SPEC_CRC_EXTRA[name]
        assert [f.name for f in mc.MESSAGES[name].wire_fields if not f.extension] == [f[1] for f in WIRE_FIELDS[name]]


def test_definitions_agree_with_pymavlink():
    ap = pytest.importorskip("pymavlink.dialects.v20.ardupilotmega")
    for d in mc.MESSAGES.values():
        c = ap.mavlink_map[d.msgid]
        assert c.crc_extra == d.crc_extra, d.name
        ours, theirs = [f.name for f in d.wire_fields], list(c.ordered_fieldnames)
        n = min(len(ours), len(theirs))            # an older pymavlink may lack the newest extension fields
        assert ours[:n] == theirs[:n] and n >= sum(1 for f in d.fields if not f.extension), d.name


# ----------------------------------------------------------------------------- byte vectors
def test_heartbeat_frame_by_hand():
    want = v2_frame(0, heartbeat_payload(15, 10, 3, 0x81, 4), seq=0, sysid=1, compid=1, crc_extra=50)
    # the same bytes written out: header, payload (custom_mode LE first: wire order), CRC
    assert want == bytes.fromhex("fd 09 00 00 00 01 01 00 00 00 0f 00 00 00 0a 03 81 04 03 1b 6a")
    assert encode_frame("HEARTBEAT", HB, seq=0, sysid=1, compid=1) == want
    (fr,) = FrameParser().feed(want)
    assert (fr.version, fr.msgid, fr.sysid, fr.compid, fr.seq, fr.name) == (2, 0, 1, 1, 0, "HEARTBEAT")
    assert fr.fields() == HB


def test_mavlink1_frame_by_hand():
    want = v1_frame(0, heartbeat_payload(0, 6, 8, 0, 4), seq=7, sysid=255, compid=190, crc_extra=50)
    got = encode_frame("HEARTBEAT", dict(type=6, autopilot=8, system_status=4, mavlink_version=3), seq=7, sysid=255,
                       compid=190, version=1)
    assert got == want and got[0] == 0xFE and got[1] == 9
    (fr,) = FrameParser().feed(want)
    assert fr.version == 1 and fr.fields()["type"] == 6 and fr.sysid == 255
    with pytest.raises(ValueError, match="MAVLink 1"):
        encode_frame("WHEEL_DISTANCE", {}, seq=0, sysid=1, compid=1, version=1)


def test_truncation_of_trailing_zeros():
    full = command_ack_payload(400, 0)
    assert trim(full) == b"\x90\x01"
    want = v2_frame(77, trim(full), seq=3, sysid=1, compid=1, crc_extra=143)
    assert encode_frame("COMMAND_ACK", dict(command=400, result=0), seq=3, sysid=1, compid=1) == want
    (fr,) = FrameParser().feed(want)
    assert fr.payload == b"\x90\x01" and fr.fields()["result"] == 0 and fr.fields()["target_system"] == 0
    # an all-zero payload keeps one byte
    z = encode_frame("COMMAND_ACK", {}, seq=0, sysid=1, compid=1)
    assert parse_v2(z)["len"] == 1


def test_command_long_and_target_by_hand():
    p = command_long_payload(1, 1, 400, 0, 1.0, 21196.0)
    want = v2_frame(76, trim(p), seq=9, sysid=255, compid=190, crc_extra=152)
    got = encode_frame("COMMAND_LONG", dict(target_system=1, target_component=1, command=400, param1=1.0,
                                            param2=21196.0), seq=9, sysid=255, compid=190)
    assert got == want
    p = target_payload(1234, 1, 1, 8, 0x05E7, 0.5, 0.0, -0.25)
    want = v2_frame(84, trim(p), seq=10, sysid=255, compid=190, crc_extra=143)
    got = encode_frame("SET_POSITION_TARGET_LOCAL_NED", dict(time_boot_ms=1234, target_system=1, target_component=1,
                                                             coordinate_frame=8, type_mask=0x05E7, vx=0.5,
                                                             yaw_rate=-0.25), seq=10, sysid=255, compid=190)
    assert got == want
    assert mc.TYPE_MASK_VELOCITY_YAW_RATE == 0x05E7 == 1511 and mc.TYPE_MASK_VELOCITY == 0x0DE7 == 3559


def test_statustext_and_arrays():
    f = encode_frame("STATUSTEXT", dict(severity=4, text="GCS Failsafe"), seq=0, sysid=1, compid=1)
    payload = struct.pack("<B50s", 4, b"GCS Failsafe")
    assert f == v2_frame(253, trim(payload), seq=0, sysid=1, compid=1, crc_extra=83)
    (fr,) = FrameParser().feed(f)
    assert fr.fields()["text"] == "GCS Failsafe"
    b = encode_payload("BATTERY_STATUS", dict(voltages=[8400, 65535], current_battery=120, battery_remaining=-1))
    v = decode_payload("BATTERY_STATUS", b)
    assert v["voltages"][:3] == (8400, 65535, 0) and v["battery_remaining"] == -1 and len(v["voltages_ext"]) == 4


def test_encode_errors_name_the_field():
    with pytest.raises(ValueError, match=r"HEARTBEAT.type = 300"):
        encode_payload("HEARTBEAT", dict(type=300))
    with pytest.raises(ValueError, match="unknown fields"):
        encode_payload("HEARTBEAT", dict(kind=1))
    with pytest.raises(ValueError, match="char\\[50\\]"):
        encode_payload("STATUSTEXT", dict(text="x" * 51))
    with pytest.raises(ValueError, match="not defined"):
        encode_payload("NO_SUCH_MESSAGE", {})
    with pytest.raises(ValueError, match="msgid"):
        mc.encode_raw_frame(300, b"\x01", seq=0, sysid=1, compid=1, crc_extra=0, version=1)


def test_frames_pymavlink_writes_are_parsed():
    ap = pytest.importorskip("pymavlink.dialects.v20.ardupilotmega")
    mav = ap.MAVLink(None, srcSystem=255, srcComponent=190)
    msgs = [mav.heartbeat_encode(6, 8, 0, 0, 4), mav.command_long_encode(1, 1, 511, 0, 30.0, 50000.0, 0, 0, 0, 0, 0),
            mav.set_position_target_local_ned_encode(5, 1, 1, 8, 0x05E7, 0, 0, 0, -0.3, 0, 0, 0, 0, 0, 0, 0.7),
            mav.statustext_encode(6, b"hello")]
    stream = b""
    for m in msgs:
        stream += m.pack(mav)
        mav.seq += 1
    frames = FrameParser().feed(stream)
    assert [f.name for f in frames] == ["HEARTBEAT", "COMMAND_LONG", "SET_POSITION_TARGET_LOCAL_NED", "STATUSTEXT"]
    t = frames[2].fields()
    assert t["vx"] == pytest.approx(-0.3) and t["yaw_rate"] == pytest.approx(0.7) and t["type_mask"] == 0x05E7
    assert frames[3].fields()["text"] == "hello"


def test_our_frames_are_parsed_by_pymavlink():
    ap = pytest.importorskip("pymavlink.dialects.v20.ardupilotmega")
    mav = ap.MAVLink(None)
    stream = (encode_frame("HEARTBEAT", HB, seq=1, sysid=1, compid=1)
              + encode_frame("ATTITUDE", dict(time_boot_ms=99, roll=0.1, yaw=-2.0), seq=2, sysid=1, compid=1)
              + encode_frame("STATUSTEXT", dict(severity=4, text="target not received last 3.0 secs, stopping"),
                             seq=3, sysid=1, compid=1)
              + encode_frame("SYS_STATUS", dict(voltage_battery=8400, current_battery=-1, battery_remaining=77),
                             seq=4, sysid=1, compid=1))
    msgs = mav.parse_buffer(stream)
    assert [m.get_type() for m in msgs] == ["HEARTBEAT", "ATTITUDE", "STATUSTEXT", "SYS_STATUS"]
    assert msgs[0].custom_mode == 15 and msgs[1].yaw == pytest.approx(-2.0) and msgs[3].battery_remaining == 77
    assert "target not received" in msgs[2].text


# ----------------------------------------------------------------------------- parser rules
def test_parser_rules():
    p = FrameParser()
    hb = encode_frame("HEARTBEAT", HB, seq=0, sysid=1, compid=1)
    signed = v2_frame(0, trim(heartbeat_payload(15, 10, 3, 0x81, 4)), seq=0, sysid=1, compid=1, crc_extra=50,
                      incompat=1) + bytes(range(13))
    (fr,) = p.feed(signed)
    assert fr.signature == bytes(range(13)) and p.stats.signed_frames == 1
    bad_flag = v2_frame(0, heartbeat_payload(15, 10, 3, 0x81, 4), seq=0, sysid=1, compid=1, crc_extra=50, incompat=2)
    assert p.feed(bad_flag + hb) == [FrameParser().feed(hb)[0]] and p.stats.bad_header == 1
    wrong_len_v1 = v1_frame(0, heartbeat_payload(0, 6, 8, 0, 4)[:8], seq=0, sysid=1, compid=1, crc_extra=50)
    assert p.feed(wrong_len_v1) == [] and p.stats.bad_header == 2
    unknown = v2_frame(4242, b"\x01\x02", seq=0, sysid=1, compid=1, crc_extra=0)
    assert p.feed(unknown + hb)[0].name == "HEARTBEAT" and p.stats.unknown_msgid >= 1
    # a longer payload (a newer definition with more extension fields) decodes its known part
    longer = v2_frame(77, command_ack_payload(400, 4) + b"\x07\x07", seq=0, sysid=1, compid=1, crc_extra=143)
    (fr,) = p.feed(longer)
    assert fr.fields()["result"] == 4


def test_truncated_frame_does_not_take_the_next_one():
    hb = [encode_frame("HEARTBEAT", dict(HB, custom_mode=i % 16), seq=i, sysid=1, compid=1) for i in range(6)]
    att = encode_frame("ATTITUDE", dict(time_boot_ms=5, roll=0.5), seq=9, sysid=1, compid=1)
    stream = hb[0] + att[:17] + hb[1] + hb[2] + att[:5] + hb[3] + att
    got = FrameParser().feed(stream)
    assert [f.seq for f in got] == [0, 1, 2, 3, 9]


def test_byte_at_a_time_equals_all_at_once():
    frames = [encode_frame("ATTITUDE", dict(time_boot_ms=i, yaw=0.1 * i), seq=i, sysid=1, compid=1) for i in range(5)]
    stream = b"\x00\xfd\x07" + b"".join(frames) + b"\xfe"
    p = FrameParser()
    one = [f for b in stream for f in p.feed(bytes([b]))]
    assert one == FrameParser().feed(stream) and len(one) == 5 and p.pending == 1


# ----------------------------------------------------------------------------- properties
_VALUES = {
    "uint8_t": st.integers(0, 255), "int8_t": st.integers(-128, 127), "uint16_t": st.integers(0, 0xFFFF),
    "int16_t": st.integers(-0x8000, 0x7FFF), "uint32_t": st.integers(0, 0xFFFFFFFF),
    "int32_t": st.integers(-(1 << 31), (1 << 31) - 1), "uint64_t": st.integers(0, (1 << 64) - 1),
    "int64_t": st.integers(-(1 << 63), (1 << 63) - 1),
    "float": st.floats(width=32, allow_nan=False), "double": st.floats(allow_nan=False),
}


@st.composite
def messages(draw):
    d = draw(st.sampled_from(sorted(mc.MESSAGES.values(), key=lambda d: d.msgid)))
    vals = {}
    for f in d.fields:
        if f.type == "char":
            vals[f.name] = draw(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126),
                                        max_size=f.array_len))
        elif f.array_len:
            vals[f.name] = tuple(draw(st.lists(_VALUES[f.type], min_size=f.array_len, max_size=f.array_len)))
        else:
            vals[f.name] = draw(_VALUES[f.type])
    return d, vals


@settings(max_examples=300)
@given(messages(), st.integers(0, 255), st.integers(1, 255), st.integers(0, 255), st.sampled_from([1, 2]))
def test_round_trip(msg, seq, sysid, compid, version):
    d, vals = msg
    if version == 1 and d.msgid > 255:
        version = 2
    wire = encode_frame(d.name, vals, seq=seq, sysid=sysid, compid=compid, version=version)
    (fr,) = FrameParser().feed(wire)
    assert (fr.seq, fr.sysid, fr.compid, fr.msgid, fr.version) == (seq, sysid, compid, d.msgid, version)
    got = fr.fields()
    for f in d.fields:
        if version == 1 and f.extension:
            assert not any(np.atleast_1d(got[f.name])) if f.type != "char" else got[f.name] == ""
            continue
        want = vals[f.name]
        if f.type == "float":
            want = tuple(struct.unpack(f"<{len(want)}f", struct.pack(f"<{len(want)}f", *want))) \
                if f.array_len else struct.unpack("<f", struct.pack("<f", want))[0]
        assert got[f.name] == want, f.name


#: > MAX_FRAME_LEN bytes of good frames (sysid 2): whatever candidate is pending gets decided.
_TAIL = b"".join(encode_frame("STATUSTEXT", dict(severity=6, text="tail %02d " % i + "-" * 30), seq=200 + i, sysid=2,
                              compid=1) for i in range(8))


@settings(max_examples=200)
@given(st.binary(max_size=600), st.integers(0, 2**32 - 1))
def test_fuzz_random_bytes_never_raise_and_resync(garbage, seed):
    rng = np.random.default_rng(seed)
    good = [encode_frame("ATTITUDE", dict(time_boot_ms=i, roll=0.01 * i), seq=i, sysid=1, compid=1) for i in range(8)]
    p = FrameParser()
    out = []
    cut = np.sort(rng.integers(0, len(garbage) + 1, 3))
    for a, b in zip(np.r_[0, cut], np.r_[cut, len(garbage)]):
        out += p.feed(garbage[a:b])
    for g in good:
        out += p.feed(g)
    out += p.feed(_TAIL)               # a live link keeps talking: bytes that disprove a bogus candidate
    seqs = [f.seq for f in out if f.msgid == 30 and f.sysid == 1 and f.fields()["time_boot_ms"] == f.seq]
    assert seqs[-6:] == list(range(2, 8))                   # back in step within two frames


@settings(max_examples=150)
@given(st.integers(0, 2**32 - 1), st.floats(1e-3, 0.05))
def test_fuzz_corrupted_stream_resyncs_within_two_frames(seed, rate):
    rng = np.random.default_rng(seed)
    names = ["HEARTBEAT", "ATTITUDE", "SYS_STATUS", "GLOBAL_POSITION_INT", "STATUSTEXT", "COMMAND_ACK"]
    frames = []
    for i in range(40):
        nm = names[int(rng.integers(0, len(names)))]
        vals = {"STATUSTEXT": dict(severity=6, text="x" * int(rng.integers(0, 50))), "HEARTBEAT": HB}.get(nm, {})
        frames.append(encode_frame(nm, vals, seq=i, sysid=1, compid=1))
    damaged = set()
    stream = bytearray()
    for i, f in enumerate(frames):
        f = bytearray(f)
        r = rng.random()
        if r < 0.15:                                           # truncated
            f = f[:int(rng.integers(1, len(f)))]
            damaged.add(i)
        elif r < 0.25:                                         # dropped
            f = bytearray()
            damaged.add(i)
        else:
            hits = np.flatnonzero(rng.random(len(f)) < rate)
            for h in hits:
                f[h] ^= 1 << int(rng.integers(0, 8))
            if len(hits):
                damaged.add(i)
        stream += f
    p = FrameParser()
    got = set()
    pos = 0
    while pos < len(stream):
        n = int(rng.integers(1, 64))
        got |= {f.seq for f in p.feed(bytes(stream[pos:pos + n])) if f.sysid == 1 and f.compid == 1}
        pos += n
    got |= {f.seq for f in p.feed(_TAIL) if f.sysid == 1 and f.compid == 1}
    intact = {i for i in range(len(frames)) if i not in damaged and (i - 1) not in damaged}
    assert intact <= got
