"""CRC-16/XMODEM, the checksum of RoboClaw packet serial and of our own RNP frames.

Parameters (the Rocksoft/Williams model): width 16, polynomial ``0x1021``, initial value
``0x0000``, input and output not reflected, no final XOR. Check value:
``crc16_xmodem(b"123456789") == 0x31C3``. The RoboClaw manual gives the bitwise algorithm::

    crc ^= byte << 8
    repeat 8 times: crc = (crc << 1) ^ 0x1021 if crc & 0x8000 else crc << 1

Because the initial value is zero, leading zero bytes do not change the CRC and an all-zero
message has CRC 0; both protocols put a non-zero byte first (a RoboClaw address 0x80-0x87,
the RNP protocol version 1), so this property cannot make a zero-filled frame valid.

Public API
----------
crc16_xmodem(data, crc=0) -> int
    Fast path: :func:`binascii.crc_hqx`, which computes exactly this CRC in C.
crc16_xmodem_py(data, crc=0) -> int
    The same CRC, table-driven in pure Python (:data:`CRC16_TABLE`). The C firmware core
    (``hil/firmware/rnp_core.c``) computes it bitwise; the tests check every implementation
    against a bitwise oracle written from the manual.
CRC16_TABLE : tuple[int, ...]
    256 entries, ``CRC16_TABLE[i]`` = CRC of the single byte ``i`` shifted into the high byte.
ChecksumError
    :class:`~drivers.errors.ProtocolError` raised by the codecs when a received CRC does not
    match; ``expected`` and ``got`` hold the two values.

Passing the previous result as ``crc`` continues a running CRC:
``crc16_xmodem(b, crc16_xmodem(a)) == crc16_xmodem(a + b)``.
"""
from __future__ import annotations

import binascii

from .errors import ChecksumError  # noqa: F401  (re-exported: raised by the codecs)

__all__ = ["crc16_xmodem", "crc16_xmodem_py", "CRC16_TABLE", "ChecksumError", "CRC16_POLY"]

#: The generator polynomial x^16 + x^12 + x^5 + 1 (the high x^16 term implied).
CRC16_POLY = 0x1021


def _make_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        c = i << 8
        for _ in range(8):
            c = ((c << 1) ^ CRC16_POLY) if c & 0x8000 else (c << 1)
        table.append(c & 0xFFFF)
    return tuple(table)


CRC16_TABLE: tuple[int, ...] = _make_table()


def _check_crc_arg(crc) -> int:
    if isinstance(crc, bool) or not isinstance(crc, int) or not 0 <= crc <= 0xFFFF:
        raise ValueError(f"crc = {crc!r}: must be an int in 0..0xFFFF")
    return crc


def crc16_xmodem(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """CRC-16/XMODEM of ``data``, continuing from ``crc`` (0 to start).

    Parameters
    ----------
    data : bytes-like
        Message bytes.
    crc : int
        Running CRC from a previous call, 0 for a new message.

    Returns
    -------
    int
        The CRC, 0..0xFFFF. RoboClaw sends it big-endian (high byte first); RNP little-endian.
    """
    return binascii.crc_hqx(data, _check_crc_arg(crc))


def crc16_xmodem_py(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """Table-driven pure-Python CRC-16/XMODEM (same result as :func:`crc16_xmodem`)."""
    c = _check_crc_arg(crc)
    table = CRC16_TABLE
    for b in bytes(data):
        c = ((c << 8) & 0xFFFF) ^ table[(c >> 8) ^ b]
    return c
