"""COBS: the standard published vectors, round trips against a block-by-block reference decoder,
malformed input, and the incremental 0x00 frame splitter (chunking invariance, oversize resync)."""
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _ref_protocols import COBS_VECTORS, ref_cobs_decode, ref_cobs_encode
from drivers.cobs import FrameSplitter, FramingError, cobs_decode, cobs_encode, cobs_max_encoded_len
from drivers.errors import ProtocolError


@pytest.mark.parametrize("decoded,encoded", COBS_VECTORS, ids=[f"v{i}" for i in range(len(COBS_VECTORS))])
def test_standard_vectors(decoded, encoded):
    assert cobs_encode(decoded) == encoded
    assert cobs_decode(encoded) == decoded
    assert ref_cobs_encode(decoded) == encoded            # the reference agrees with the published vectors
    assert ref_cobs_decode(encoded) == decoded


def test_brief_examples_with_delimiter():
    assert cobs_encode(b"\x00") + b"\x00" == bytes.fromhex("01 01 00")
    assert cobs_encode(bytes.fromhex("11 22 00 33")) + b"\x00" == bytes.fromhex("03 11 22 02 33 00")
    enc = cobs_encode(bytes([0x42] * 254))
    assert enc[0] == 0xFF and len(enc) == 255


def test_empty_message_and_trailing_01_form():
    assert cobs_encode(b"") == b"\x01"
    assert cobs_decode(b"\x01") == b""
    data = bytes(range(1, 255))
    assert cobs_decode(b"\xff" + data + b"\x01") == data     # non-minimal form decodes the same


@pytest.mark.parametrize("bad,what", [
    (b"", "empty"),
    (b"\x03\x11\x00\x22", "contains 0x00 at offset 2"),
    (b"\x05\x11\x22", "announces 4 data bytes, only 2 remain"),
    (b"\x02\x11\x03\x22", "announces 2 data bytes, only 1 remain"),
    (b"\xff" + bytes(range(1, 100)), "truncated"),
])
def test_malformed(bad, what):
    with pytest.raises(FramingError, match=what):
        cobs_decode(bad)
    assert issubclass(FramingError, ProtocolError)
    assert ref_cobs_decode(bad) is None


@settings(max_examples=400)
@given(st.binary(max_size=700) | st.lists(st.sampled_from([0, 1, 0xFF]), max_size=600).map(bytes)
       | st.integers(0, 800).map(lambda n: bytes([7]) * n))
def test_round_trip(data):
    enc = cobs_encode(data)
    assert 0 not in enc
    assert len(enc) <= cobs_max_encoded_len(len(data))
    assert len(enc) >= len(data) + 1
    assert enc == ref_cobs_encode(data)
    assert cobs_decode(enc) == data
    assert ref_cobs_decode(enc) == data


@settings(max_examples=400)
@given(st.binary(min_size=0, max_size=300))
def test_decode_agrees_with_reference_on_arbitrary_bytes(enc):
    ref = ref_cobs_decode(enc)
    if ref is None:
        with pytest.raises(FramingError):
            cobs_decode(enc)
    else:
        assert cobs_decode(enc) == ref


def test_max_encoded_len():
    assert cobs_max_encoded_len(0) == 1
    assert cobs_max_encoded_len(254) == 256
    assert cobs_max_encoded_len(128) == 129
    for n in (0, 1, 253, 254, 255, 508, 1000):
        assert len(cobs_encode(bytes([1]) * n)) <= cobs_max_encoded_len(n)
    with pytest.raises(ValueError):
        cobs_max_encoded_len(-1)


# ----------------------------------------------------------------------------- frame splitter
def test_splitter_basics():
    s = FrameSplitter(max_frame_len=10)
    assert s.feed(b"\x01\x02") == []
    assert s.pending == 2
    assert s.feed(b"\x03\x00\x00\x04\x00\x05") == [b"\x01\x02\x03", b"\x04"]
    assert s.stats.empty == 1 and s.stats.frames == 2 and s.pending == 1
    s.reset()
    assert s.pending == 0 and s.feed(b"\x00") == []


def test_splitter_oversize_resyncs_at_next_delimiter():
    s = FrameSplitter(max_frame_len=5)
    assert s.feed(b"\x01\x02\x03\x04\x05") == []           # exactly max: still fine
    assert s.feed(b"\x00") == [b"\x01\x02\x03\x04\x05"]
    assert s.feed(b"\x09" * 6) == []                      # one too many: dropped
    assert s.stats.oversize == 1
    assert s.feed(b"\x09" * 100) == []                     # still dropping, no second count
    assert s.feed(b"\x09\x00\x07\x00") == [b"\x07"]        # resync at the next delimiter
    assert s.stats.oversize == 1 and s.stats.discarded_bytes == 107
    with pytest.raises(ValueError, match="max_frame_len"):
        FrameSplitter(0)


@settings(max_examples=200)
@given(st.lists(st.binary(max_size=40), max_size=12), st.lists(st.integers(0, 1000), max_size=10))
def test_splitter_is_chunking_invariant(frames, cuts):
    stream = b"".join(cobs_encode(f) + b"\x00" for f in frames)
    whole = FrameSplitter(200).feed(stream)
    bounds = [0] + sorted({c % (len(stream) + 1) for c in cuts}) + [len(stream)]
    s = FrameSplitter(200)
    parts = []
    for a, b in zip(bounds, bounds[1:]):
        parts += s.feed(stream[a:b])
    assert parts == whole
    assert [cobs_decode(p) for p in parts] == frames


def test_splitter_fuzz_resync_within_two_frames():
    """Random garbage, bit flips, lost delimiters: each clean frame decodes unless the frame right
    before it was damaged (a lost delimiter merges the two)."""
    rng = random.Random(3)
    s = FrameSplitter(64)
    lost_after_damage = 0
    for _ in range(3000):
        frame = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 40)))
        enc = cobs_encode(frame) + b"\x00"
        r = rng.random()
        if r < 0.1:
            damaged = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 150)))      # garbage, maybe long
        elif r < 0.2:
            damaged = enc[:-1]                                                              # lost delimiter
        else:
            damaged = None
        if damaged is not None:
            s.feed(damaged)
            clean = cobs_encode(b"next") + b"\x00"
            first = s.feed(clean)
            lost_after_damage += b"next" not in [ref_cobs_decode(f) for f in first]
            second = s.feed(enc)                                                            # the second frame
            assert enc[:-1] in second
        else:
            assert s.feed(enc) == [enc[:-1]]
    assert s.stats.oversize > 0 and lost_after_damage > 0
