"""Consistent Overhead Byte Stuffing (COBS) and 0x00-delimited frame splitting.

COBS (S. Cheshire and M. Baker, "Consistent Overhead Byte Stuffing", SIGCOMM 1997 /
IEEE/ACM Trans. Networking 7(2), 1999) rewrites a message so that it contains no 0x00 byte;
0x00 can then mark frame boundaries unambiguously. The encoding is a sequence of blocks,
each a code byte ``c`` (1..255) followed by ``c - 1`` non-zero data bytes; a block with
``c < 255`` stands for its data followed by one zero, except the final block, whose implied
zero is dropped. A ``c = 255`` block is 254 data bytes with no zero. Overhead: at most one
byte per 254 (plus the delimiter); the encoder emits the minimal form, so ``254 non-zero
bytes -> FF + the 254 bytes`` (no trailing ``01``). The decoder also accepts that trailing
``01`` (it decodes to the same data).

Public API
----------
cobs_encode(data) -> bytes
    Stuffed bytes, without the 0x00 delimiter.
cobs_decode(encoded) -> bytes
    Inverse of :func:`cobs_encode`; raises :class:`FramingError` on an empty input, a 0x00
    inside it, or a code byte that points past the end (a truncated frame).
cobs_max_encoded_len(n) -> int
    Upper bound of the encoded size of ``n`` bytes: ``n + n // 254 + 1``.
FrameSplitter(max_frame_len)
    Incremental splitter: ``feed(data) -> list[bytes]`` returns the encoded frames (between
    delimiters, delimiter removed) completed by ``data``. Empty frames (two delimiters in a
    row, as sent to flush a receiver) are ignored. A frame longer than ``max_frame_len``
    is garbage: its bytes are dropped, it is counted, and the splitter resynchronises at the
    next 0x00.
FramingError
    :class:`~drivers.errors.ProtocolError` for malformed COBS / frame structure.
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import FramingError

__all__ = ["cobs_encode", "cobs_decode", "cobs_max_encoded_len", "FrameSplitter", "SplitterStats",
           "FramingError"]


def cobs_max_encoded_len(n: int) -> int:
    """Largest encoded size (without delimiter) of an ``n``-byte message."""
    if n < 0:
        raise ValueError(f"n = {n!r}: must be >= 0")
    return n + n // 254 + 1


def cobs_encode(data: bytes | bytearray | memoryview) -> bytes:
    """COBS-encode ``data`` (any bytes, zeros allowed); the result has no 0x00 byte.

    The 0x00 delimiter is *not* appended.
    """
    src = bytes(data)
    n = len(src)
    out = bytearray()
    i = 0
    while True:
        # One block: up to 254 non-zero bytes, preceded by its code byte.
        stop = src.find(0, i, i + 254)
        end = stop if stop >= 0 else min(n, i + 254)
        run = end - i
        out.append(run + 1)
        out += src[i:end]
        i = end
        if run == 254:
            if i == n:                 # input ends exactly after a full block: no zero implied
                break
            continue                   # a full block implies no zero; keep going
        if i == n:                     # final block, ended by the end of input
            break
        i += 1                         # the block ended at a zero: consume it
    return bytes(out)


def cobs_decode(encoded: bytes | bytearray | memoryview) -> bytes:
    """Decode one COBS frame (delimiter already removed).

    Raises
    ------
    FramingError
        Empty input, a 0x00 byte inside the frame, or a code byte that announces more bytes
        than remain (a truncated frame). The message gives the offset.
    """
    src = bytes(encoded)
    n = len(src)
    if n == 0:
        raise FramingError("COBS frame is empty (a frame needs at least one code byte)")
    zero = src.find(0)
    if zero >= 0:
        raise FramingError(f"COBS frame of {n} bytes contains 0x00 at offset {zero}")
    out = bytearray()
    i = 0
    while i < n:
        code = src[i]
        end = i + code
        if end > n:
            raise FramingError(f"COBS code byte 0x{code:02x} at offset {i} announces {code - 1} data bytes, "
                               f"only {n - i - 1} remain (truncated frame of {n} bytes)")
        out += src[i + 1:end]
        i = end
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


@dataclass
class SplitterStats:
    """Counters of a :class:`FrameSplitter`."""
    frames: int = 0            # non-empty frames returned
    empty: int = 0             # empty frames ignored (back-to-back delimiters)
    oversize: int = 0          # frames dropped for exceeding max_frame_len
    discarded_bytes: int = 0   # bytes dropped with them


class FrameSplitter:
    """Split a byte stream into 0x00-delimited frames.

    Parameters
    ----------
    max_frame_len : int
        Longest accepted encoded frame (delimiter excluded). Longer runs without a delimiter
        are dropped and the splitter waits for the next 0x00.
    """

    def __init__(self, max_frame_len: int = 256):
        if isinstance(max_frame_len, bool) or not isinstance(max_frame_len, int) or max_frame_len < 1:
            raise ValueError(f"max_frame_len = {max_frame_len!r}: must be an int >= 1")
        self.max_frame_len = max_frame_len
        self._buf = bytearray()
        self._discarding = False
        self.stats = SplitterStats()

    @property
    def pending(self) -> int:
        """Bytes of an unfinished frame held back."""
        return len(self._buf)

    def reset(self) -> None:
        """Drop any unfinished frame (e.g. after reopening the port)."""
        self._buf.clear()
        self._discarding = False

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Add received bytes; return the frames they complete, oldest first."""
        return [f for f in self._split(data) if f is not None]

    def _split(self, data) -> list[bytes | None]:
        """Like :meth:`feed`, with ``None`` where an oversize frame was dropped (stream order)."""
        parts = bytes(data).split(b"\x00")
        last = len(parts) - 1
        out: list[bytes | None] = []
        st = self.stats
        buf = self._buf
        for k, part in enumerate(parts):
            if self._discarding:
                st.discarded_bytes += len(part)
            else:
                buf += part
                if len(buf) > self.max_frame_len:
                    st.oversize += 1
                    st.discarded_bytes += len(buf)
                    buf.clear()
                    self._discarding = True
                    out.append(None)
            if k < last:                           # a delimiter follows this part
                if self._discarding:
                    self._discarding = False
                elif buf:
                    out.append(bytes(buf))
                    st.frames += 1
                    buf.clear()
                else:
                    st.empty += 1
        return out
