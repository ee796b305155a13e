"""Fault injection for virtual serial devices, and the simulated wire it acts on.

:class:`VirtualLink` is the byte path between a host port (a ``sim://`` handle or a pseudo-terminal) and a
virtual device: it stamps every chunk with the time it reaches the other side (wire time at ``baud``,
8N1 = 10 bits per byte, one direction at a time on the bus), hands requests to the device
(``device.receive(data, t_s) -> list of reply frames``) and queues the replies for the host. A
:class:`FaultInjector` on the link corrupts that traffic on a script.

Faults (all windows are ``[start_s, end_s)`` on the link's clock; probabilities per chunk — one host
``write()`` or one device reply — unless said otherwise; ``direction`` is ``"to_device"``, ``"to_host"``
or ``"both"``):

=====================  ==========================================================================
byte-stream faults     (any device)
=====================  ==========================================================================
:class:`Silence`       nothing gets through (a dead cable / device)
:class:`Disconnect`    the port vanishes (USB unplug); it returns at ``end_s``, under a new name if
                       ``new_path`` (the pty server and ``sim://`` act on it)
:class:`BitFlips`      each byte has one random bit flipped with probability ``rate`` (1e-4..1e-3)
:class:`DropFrames`    a chunk is lost
:class:`TruncateFrames` a chunk loses its tail (keeps 1..n-1 bytes)
:class:`Latency`       host-bound chunks arrive ``delay_s`` late (with probability ``prob``)
:class:`UsbLatencyTimer` host-bound bytes are released on a ``timer_s`` grid (FTDI: 16 ms)
:class:`Stall`         nothing moves in the window; everything held is delivered at ``end_s``
                       (100-500 ms USB / bus stalls)
:class:`SecondOpener`  another program reads the port: host-bound chunks are stolen with ``steal_prob``
=====================  ==========================================================================

=====================  ==========================================================================
device faults          (call hooks of the device; a device without the hook raises TypeError)
=====================  ==========================================================================
:class:`AckFault`      writes answered with no ack (``"missing"``) or a wrong byte (``"wrong"``)
:class:`BadContent`    replies with a valid checksum but wrong values
:class:`ErrorFlags`    the device reports error/warning flags in the window
:class:`EncoderFreeze` one wheel's encoder stops counting in the window
:class:`EncoderWrap`   one wheel's counter jumps to ``margin`` counts below the wrap point ``at_s``
:class:`EncoderReset`  counters zeroed ``at_s``
:class:`Reboot`        the device reboots ``at_s`` (silent for its boot time, volatile settings lost)
=====================  ==========================================================================

Everything random draws from one generator (pass ``world.rng("faults.<name>")``), and chunks are
processed in time order, so a run on simulated time is reproducible bit for bit.
"""
from __future__ import annotations

import heapq
import itertools
import math
import threading
from dataclasses import dataclass

import numpy as np

__all__ = ["VirtualLink", "FaultInjector", "Silence", "Disconnect", "BitFlips", "DropFrames", "TruncateFrames",
           "Latency", "UsbLatencyTimer", "Stall", "SecondOpener", "AckFault", "BadContent", "ErrorFlags",
           "EncoderFreeze", "EncoderWrap", "EncoderReset", "Reboot", "StreamFault", "DeviceFault"]

_DIRECTIONS = ("to_device", "to_host", "both")


# ----------------------------------------------------------------------------- fault specs
@dataclass(frozen=True, kw_only=True)
class StreamFault:
    """Base of byte-stream faults: active in ``[start_s, end_s)`` for chunks going ``direction``."""
    start_s: float = 0.0
    end_s: float = math.inf
    direction: str = "both"

    def __post_init__(self):
        n = type(self).__name__
        if not (isinstance(self.start_s, (int, float)) and isinstance(self.end_s, (int, float))
                and self.start_s <= self.end_s and not math.isnan(self.start_s)):
            raise ValueError(f"{n}: start_s = {self.start_s!r}, end_s = {self.end_s!r}: need start_s <= end_s")
        if self.direction not in _DIRECTIONS:
            raise ValueError(f"{n}: direction = {self.direction!r}: must be one of {', '.join(_DIRECTIONS)}")

    def active(self, t: float, direction: str) -> bool:
        return self.start_s <= t < self.end_s and self.direction in (direction, "both")


def _prob(obj, name):
    v = getattr(obj, name)
    if not (isinstance(v, (int, float)) and 0.0 <= v <= 1.0):
        raise ValueError(f"{type(obj).__name__}: {name} = {v!r}: must be a probability in [0, 1]")


@dataclass(frozen=True, kw_only=True)
class Silence(StreamFault):
    """Nothing gets through."""


@dataclass(frozen=True, kw_only=True)
class Disconnect(StreamFault):
    """The port vanishes in the window and comes back at ``end_s`` (under a new name if ``new_path``)."""
    new_path: bool = True


@dataclass(frozen=True, kw_only=True)
class BitFlips(StreamFault):
    """Each byte gets one random bit flipped with probability ``rate``."""
    rate: float

    def __post_init__(self):
        super().__post_init__()
        _prob(self, "rate")


@dataclass(frozen=True, kw_only=True)
class DropFrames(StreamFault):
    prob: float

    def __post_init__(self):
        super().__post_init__()
        _prob(self, "prob")


@dataclass(frozen=True, kw_only=True)
class TruncateFrames(StreamFault):
    prob: float

    def __post_init__(self):
        super().__post_init__()
        _prob(self, "prob")


@dataclass(frozen=True, kw_only=True)
class Latency(StreamFault):
    """Host-bound chunks arrive ``delay_s`` late with probability ``prob``."""
    delay_s: float
    prob: float = 1.0
    direction: str = "to_host"

    def __post_init__(self):
        super().__post_init__()
        _prob(self, "prob")
        if not (isinstance(self.delay_s, (int, float)) and 0 <= self.delay_s < 60):
            raise ValueError(f"Latency: delay_s = {self.delay_s!r}: must be in [0, 60) s")


@dataclass(frozen=True, kw_only=True)
class UsbLatencyTimer(StreamFault):
    """A USB-serial bridge that releases received bytes only when its latency timer expires."""
    timer_s: float = 0.016
    direction: str = "to_host"

    def __post_init__(self):
        super().__post_init__()
        if not (isinstance(self.timer_s, (int, float)) and 0 < self.timer_s <= 0.255):
            raise ValueError(f"UsbLatencyTimer: timer_s = {self.timer_s!r}: must be in (0, 0.255] s")


@dataclass(frozen=True, kw_only=True)
class Stall(StreamFault):
    """Nothing moves in the window; held chunks are delivered at ``end_s``."""

    def __post_init__(self):
        super().__post_init__()
        if not math.isfinite(self.end_s):
            raise ValueError("Stall: end_s must be finite (a stall ends; use Silence for a dead link)")


@dataclass(frozen=True, kw_only=True)
class SecondOpener(StreamFault):
    """Another program has the port open and reads host-bound bytes first."""
    steal_prob: float = 0.5
    direction: str = "to_host"

    def __post_init__(self):
        super().__post_init__()
        _prob(self, "steal_prob")


@dataclass(frozen=True, kw_only=True)
class DeviceFault:
    """Base of device-level faults: active in ``[start_s, end_s)`` (a point event uses ``at_s``)."""
    start_s: float = 0.0
    end_s: float = math.inf

    def begin(self, device, t: float) -> None:
        raise NotImplementedError

    def end(self, device, t: float) -> None:
        pass


def _hook(device, name, fault):
    fn = getattr(device, name, None)
    if not callable(fn):
        raise TypeError(f"{type(fault).__name__}: device {type(device).__name__} has no {name}() hook")
    return fn


@dataclass(frozen=True, kw_only=True)
class AckFault(DeviceFault):
    mode: str = "missing"
    prob: float = 1.0

    def __post_init__(self):
        if self.mode not in ("missing", "wrong"):
            raise ValueError(f"AckFault: mode = {self.mode!r}: must be 'missing' or 'wrong'")
        _prob(self, "prob")

    def begin(self, device, t):
        _hook(device, "set_reply_fault", self)("ack_" + self.mode, self.prob)

    def end(self, device, t):
        _hook(device, "set_reply_fault", self)("ack_" + self.mode, 0.0)


@dataclass(frozen=True, kw_only=True)
class BadContent(DeviceFault):
    prob: float = 1.0

    def __post_init__(self):
        _prob(self, "prob")

    def begin(self, device, t):
        _hook(device, "set_reply_fault", self)("bad_content", self.prob)

    def end(self, device, t):
        _hook(device, "set_reply_fault", self)("bad_content", 0.0)


@dataclass(frozen=True, kw_only=True)
class ErrorFlags(DeviceFault):
    bits: int
    addr: int | None = None

    def begin(self, device, t):
        _hook(device, "set_error_flags", self)(self.bits, self.addr)

    def end(self, device, t):
        _hook(device, "set_error_flags", self)(0, self.addr)


@dataclass(frozen=True, kw_only=True)
class EncoderFreeze(DeviceFault):
    wheel: int | str

    def begin(self, device, t):
        _hook(device, "freeze_encoder", self)(self.wheel, True)

    def end(self, device, t):
        _hook(device, "freeze_encoder", self)(self.wheel, False)


@dataclass(frozen=True, kw_only=True)
class EncoderWrap(DeviceFault):
    """At ``start_s`` the wheel's u32 counter is put ``margin`` counts before ``wrap_at`` (2**32: the
    u32 wrap to 0; 2**31: the s32 sign flip)."""
    wheel: int | str
    margin: int = 100
    wrap_at: int = 1 << 32

    def begin(self, device, t):
        _hook(device, "set_encoder_count", self)(self.wheel, (self.wrap_at - self.margin) % (1 << 32))


@dataclass(frozen=True, kw_only=True)
class EncoderReset(DeviceFault):
    addr: int | None = None

    def begin(self, device, t):
        _hook(device, "reset_encoders", self)(self.addr)


@dataclass(frozen=True, kw_only=True)
class Reboot(DeviceFault):
    addr: int | None = None

    def begin(self, device, t):
        _hook(device, "reboot", self)(self.addr, t)


# ----------------------------------------------------------------------------- injector
class FaultInjector:
    """Applies a script of faults to a link's traffic and its device.

    Parameters
    ----------
    faults : iterable of StreamFault / DeviceFault
    rng : numpy Generator
        The only source of randomness (use ``world.rng("faults.<name>")``).
    """

    def __init__(self, faults=(), *, rng: np.random.Generator | None = None):
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.stream: list[StreamFault] = []
        self.device_faults: list[DeviceFault] = []
        self._begun: set[int] = set()
        self._ended: set[int] = set()
        self.log: list[tuple[float, str, str]] = []
        self.counts = {"dropped": 0, "truncated": 0, "flipped_bits": 0, "stolen": 0, "silenced": 0, "held": 0,
                       "delayed": 0}
        self.add(*faults)

    def add(self, *faults) -> None:
        for f in faults:
            if isinstance(f, StreamFault):
                self.stream.append(f)
            elif isinstance(f, DeviceFault):
                self.device_faults.append(f)
            else:
                raise TypeError(f"fault must be a StreamFault or DeviceFault, got {type(f).__name__}")

    def clear(self, device=None, t: float = math.nan) -> None:
        """Remove every fault; device faults in progress are ended on ``device`` first (if given)."""
        for f in self.device_faults:
            k = id(f)
            if device is not None and k in self._begun and k not in self._ended:
                f.end(device, t)
                self.log.append((t, type(f).__name__, "end (cleared)"))
        self.stream = []
        self.device_faults = []
        self._begun.clear()
        self._ended.clear()

    # ------------------------------------------------------------------ device faults
    def tick(self, device, t: float) -> None:
        """Begin / end device faults whose time has come."""
        for f in self.device_faults:
            k = id(f)
            if k not in self._begun and t >= f.start_s:
                self._begun.add(k)
                f.begin(device, t)
                self.log.append((t, type(f).__name__, "begin"))
            if k in self._begun and k not in self._ended and t >= f.end_s:
                self._ended.add(k)
                f.end(device, t)
                self.log.append((t, type(f).__name__, "end"))

    def next_event_s(self, t: float) -> float:
        """Earliest future begin/end of a device fault (so a real-time server can wake for it)."""
        best = math.inf
        for f in self.device_faults:
            k = id(f)
            for when, done in ((f.start_s, k in self._begun), (f.end_s, k in self._ended)):
                if not done and when > t:
                    best = min(best, when)
        return best

    def disconnect_at(self, t: float) -> Disconnect | None:
        for f in self.stream:
            if isinstance(f, Disconnect) and f.start_s <= t < f.end_s:
                return f
        return None

    # ------------------------------------------------------------------ stream faults
    def process(self, data: bytes, t: float, direction: str) -> list[tuple[float, bytes]]:
        """What becomes of a chunk sent at ``t`` in ``direction``: ``[(arrival_time, bytes)]`` (may be empty)."""
        active = [f for f in self.stream if f.active(t, direction)]
        if not active:
            return [(t, data)]
        rng = self.rng
        t_out = t
        for f in active:
            if isinstance(f, (Silence, Disconnect)):
                self.counts["silenced"] += 1
                return []
        for f in active:
            if isinstance(f, Stall):
                t_out = max(t_out, f.end_s)
                self.counts["held"] += 1
        for f in active:
            if isinstance(f, DropFrames) and rng.random() < f.prob:
                self.counts["dropped"] += 1
                return []
            if isinstance(f, SecondOpener) and direction == "to_host" and rng.random() < f.steal_prob:
                self.counts["stolen"] += 1
                return []
        buf = bytearray(data)
        for f in active:
            if isinstance(f, TruncateFrames) and len(buf) > 1 and rng.random() < f.prob:
                del buf[int(rng.integers(1, len(buf))):]
                self.counts["truncated"] += 1
            elif isinstance(f, BitFlips) and buf:
                hits = np.flatnonzero(rng.random(len(buf)) < f.rate)
                for i in hits:
                    buf[int(i)] ^= 1 << int(rng.integers(0, 8))
                self.counts["flipped_bits"] += len(hits)
        for f in active:
            if isinstance(f, Latency) and rng.random() < f.prob:
                t_out += f.delay_s
                self.counts["delayed"] += 1
            elif isinstance(f, UsbLatencyTimer):
                t_out = math.ceil(t_out / f.timer_s - 1e-12) * f.timer_s
        return [(t_out, bytes(buf))] if buf else []


# ----------------------------------------------------------------------------- the wire
class VirtualLink:
    """The wire between one host port and one virtual device, with wire time and fault injection.

    Parameters
    ----------
    device
        Has ``receive(data: bytes, t_s: float) -> list[bytes]`` (reply frames, possibly none); a device that
        also sends unasked (MAVLink streams) has ``emit(t_s) -> [(t_sent, bytes)]`` (frames sent up to
        ``t_s``) and ``next_emit_s() -> float``.
    clock : Clock
        Time base of the link (stamps, wire time, fault windows).
    injector : FaultInjector, optional
    baud : int, optional
        Model wire time at this rate (8N1); ``None`` = instant. Note that a simulated clock is
        quantised to the world's physics step: model wire time over ``sim://`` only with a step of
        about 1 ms or less.
    """

    def __init__(self, device, *, clock, injector: FaultInjector | None = None, baud: int | None = None):
        if not callable(getattr(device, "receive", None)):
            raise TypeError(f"device must have receive(data, t_s), got {type(device).__name__}")
        if baud is not None and not (isinstance(baud, int) and baud > 0):
            raise ValueError(f"baud = {baud!r}: must be a positive int or None")
        self.device = device
        self.clock = clock
        self.injector = injector
        self.baud = baud
        self.lock = threading.RLock()
        self._seq = itertools.count()
        self._rx: list = []          # heap of (arrival_s, seq, bytes) on their way to the device
        self._tx: list = []          # heap of (available_s, seq, bytes) on their way to the host
        self._tx_busy_until = -math.inf
        self._rx_busy_until = -math.inf   # a serial line is FIFO: a chunk never overtakes an earlier one
        self._tx_last_s = -math.inf
        self.bytes_to_device = 0
        self.bytes_to_host = 0

    def wire_s(self, nbytes: int) -> float:
        return 0.0 if self.baud is None else nbytes * 10.0 / self.baud

    def now(self) -> float:
        return self.clock.now()

    def host_write(self, data: bytes, t: float | None = None) -> None:
        """Bytes the host wrote at ``t`` (one ``write()`` call = one chunk)."""
        with self.lock:
            t = self.clock.now() if t is None else t
            self.service(t)
            data = bytes(data)
            self.bytes_to_device += len(data)
            chunks = self.injector.process(data, t, "to_device") if self.injector else [(t, data)]
            for tc, c in chunks:
                # bytes go on the wire one after the other: a short write right behind a long one (a client
                # that writes a packet in pieces, as BasicMicro's own library does) arrives after it
                end = max(tc, self._rx_busy_until) + self.wire_s(len(c))
                self._rx_busy_until = end
                heapq.heappush(self._rx, (end, next(self._seq), c))
            self.service(t)

    def service(self, t: float | None = None) -> None:
        """Deliver requests that reached the device by ``t``; queue its replies; run device faults."""
        with self.lock:
            t = self.clock.now() if t is None else t
            inj = self.injector
            if inj is not None:
                inj.tick(self.device, t)
            while self._rx and self._rx[0][0] <= t:
                td, _, c = heapq.heappop(self._rx)
                for reply in self.device.receive(c, td):
                    self._to_host(reply, td)
            emit = getattr(self.device, "emit", None)          # a device that also talks unasked (MAVLink)
            if callable(emit):
                for te, frame in emit(t):
                    self._to_host(frame, te)

    def _to_host(self, frame: bytes, t_sent: float) -> None:
        start = max(t_sent, self._tx_busy_until)
        end = start + self.wire_s(len(frame))
        self._tx_busy_until = end
        inj = self.injector
        for ta, rb in (inj.process(frame, end, "to_host") if inj else [(end, frame)]):
            ta = max(ta, self._tx_last_s)        # a delayed chunk holds back the ones behind it (FIFO)
            self._tx_last_s = ta
            heapq.heappush(self._tx, (ta, next(self._seq), rb))

    def host_read(self, n: int, t: float | None = None) -> bytes:
        """Up to ``n`` bytes that reached the host by ``t``."""
        with self.lock:
            t = self.clock.now() if t is None else t
            self.service(t)
            out = bytearray()
            while self._tx and self._tx[0][0] <= t and len(out) < n:
                ta, s, b = heapq.heappop(self._tx)
                take = n - len(out)
                out += b[:take]
                if len(b) > take:
                    heapq.heappush(self._tx, (ta, s, b[take:]))
            self.bytes_to_host += len(out)
            return bytes(out)

    def host_in_waiting(self, t: float | None = None) -> int:
        with self.lock:
            t = self.clock.now() if t is None else t
            self.service(t)
            return sum(len(b) for ta, _, b in self._tx if ta <= t)

    def flush_host_input(self, t: float | None = None) -> None:
        """Discard bytes that already reached the host (bytes still on the wire stay)."""
        with self.lock:
            t = self.clock.now() if t is None else t
            self.service(t)
            self._tx = [e for e in self._tx if e[0] > t]
            heapq.heapify(self._tx)

    def next_event_s(self) -> float:
        """Earliest time something happens on the link (a delivery, or a scripted device fault)."""
        with self.lock:
            best = math.inf
            if self._rx:
                best = self._rx[0][0]
            if self._tx:
                best = min(best, self._tx[0][0])
            if self.injector is not None:
                best = min(best, self.injector.next_event_s(self.clock.now()))
            nxt = getattr(self.device, "next_emit_s", None)
            if callable(nxt):
                best = min(best, nxt())
            return best

    def reset(self) -> None:
        """Drop everything in flight (the port was closed / unplugged)."""
        with self.lock:
            self._rx.clear()
            self._tx.clear()
            self._tx_busy_until = self._rx_busy_until = self._tx_last_s = -math.inf

    def disconnected(self, t: float | None = None) -> Disconnect | None:
        if self.injector is None:
            return None
        return self.injector.disconnect_at(self.clock.now() if t is None else t)
