"""CRC-16/XMODEM: check value, manual vectors, fast/table versions against the manual's bitwise loop,
and the error-detection guarantees both protocols rely on."""
import random

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from _ref_protocols import crc16_bitwise
from drivers.crc import CRC16_TABLE, ChecksumError, crc16_xmodem, crc16_xmodem_py
from drivers.errors import ProtocolError

IMPLS = [crc16_xmodem, crc16_xmodem_py, crc16_bitwise]


@pytest.mark.parametrize("crc", IMPLS, ids=lambda f: f.__name__)
def test_check_value(crc):
    assert crc(b"123456789") == 0x31C3
    assert crc(b"") == 0


@pytest.mark.parametrize("crc", IMPLS, ids=lambda f: f.__name__)
def test_roboclaw_manual_vectors(crc):
    # hardware.md: DutyM1(0x80, 16384) -> 80 20 40 00 | 56 32 ; ReadEncM1 reply CRC over 80 10 + data -> 71 36
    assert crc(bytes.fromhex("80 20 40 00")) == 0x5632
    assert crc(bytes.fromhex("80 10 00 00 03 e8 00")) == 0x7136


def test_table_is_the_crc_of_each_byte():
    assert len(CRC16_TABLE) == 256
    for i in range(256):
        assert CRC16_TABLE[i] == crc16_bitwise(bytes([i]))


@given(st.binary(max_size=300), st.integers(0, 0xFFFF))
def test_fast_and_table_match_bitwise(data, init):
    ref = crc16_bitwise(data, init)
    assert crc16_xmodem(data, init) == ref
    assert crc16_xmodem_py(data, init) == ref


@given(st.binary(max_size=100), st.binary(max_size=100))
def test_running_crc_chains(a, b):
    assert crc16_xmodem(b, crc16_xmodem(a)) == crc16_xmodem(a + b)
    assert crc16_xmodem_py(b, crc16_xmodem_py(a)) == crc16_xmodem(a + b)


def test_accepts_bytes_like():
    data = bytes(range(50))
    assert crc16_xmodem(bytearray(data)) == crc16_xmodem(memoryview(data)) == crc16_xmodem_py(bytearray(data))


@pytest.mark.parametrize("bad", [-1, 0x10000, 1.5, True, "0"])
def test_bad_initial_value(bad):
    with pytest.raises(ValueError, match="crc"):
        crc16_xmodem(b"x", bad)
    with pytest.raises(ValueError, match="crc"):
        crc16_xmodem_py(b"x", bad)


def test_checksum_error_is_a_protocol_error():
    e = ChecksumError("bad", expected=0x1234, got=0x4321)
    assert isinstance(e, ProtocolError) and isinstance(e, IOError)
    assert (e.expected, e.got) == (0x1234, 0x4321)


# --- the detection guarantees the fuzz tests of both codecs rely on --------------------------------
def _flip(msg: bytes, bits) -> bytes:
    b = bytearray(msg)
    for k in bits:
        b[k // 8] ^= 1 << (k % 8)
    return bytes(b)


def test_every_one_two_three_bit_error_is_detected():
    """Poly 0x1021 = (x+1)·p(x): all odd-weight errors are caught, and Hamming distance 4 holds far
    beyond our frame lengths (<= 130 bytes), so every 1-, 2- and 3-bit error is caught."""
    rng = random.Random(4)
    for length in (4, 9, 40, 128):
        msg = bytes(rng.getrandbits(8) for _ in range(length))
        frame = msg + crc16_xmodem(msg).to_bytes(2, "big")
        nbits = 8 * len(frame)
        for k in range(nbits):                                   # exhaustive single-bit errors
            bad = _flip(frame, [k])
            assert crc16_xmodem(bad[:-2]) != int.from_bytes(bad[-2:], "big")
        for _ in range(3000):                                    # random double and triple errors
            bits = rng.sample(range(nbits), rng.choice((2, 3)))
            bad = _flip(frame, bits)
            assert crc16_xmodem(bad[:-2]) != int.from_bytes(bad[-2:], "big")


def test_every_burst_up_to_16_bits_is_detected():
    rng = np.random.default_rng(5)
    msg = rng.integers(0, 256, 60, dtype=np.uint8).tobytes()
    frame = msg + crc16_xmodem(msg).to_bytes(2, "big")
    nbits = 8 * len(frame)
    for _ in range(4000):
        width = int(rng.integers(1, 17))
        start = int(rng.integers(0, nbits - width + 1))
        pattern = [start] + [start + k for k in range(1, width - 1) if rng.random() < 0.5] + [start + width - 1]
        bad = _flip(frame, sorted(set(pattern)))
        assert crc16_xmodem(bad[:-2]) != int.from_bytes(bad[-2:], "big")
