"""Serial links by URL that never stall the control loop and survive an unplugged USB adapter.

Every driver opens its port through :class:`Transport`, which wraps pyserial's
:func:`serial.serial_for_url`, so one driver runs unchanged on

* a device path: ``/dev/ttyUSB0``, ``/dev/serial0``, ``/dev/serial/by-id/usb-…`` (a by-id link survives
  re-enumeration: prefer it), or a pseudo-terminal ``/dev/pts/N`` served by a virtual device;
* ``socket://host:port`` (ser2net, a serial-over-TCP bridge), ``loop://`` (tests), ``spy://PORT?file=…``
  (a traffic dump of another URL);
* ``sim://NAME``: a virtual device in this process (:mod:`sim.devices`; the handler registers itself
  with pyserial when :mod:`sim.devices` is imported — ``drivers`` never imports ``sim``).

What the transport guarantees
-----------------------------
* **Exclusive open** (``exclusive=True``, default): on POSIX pyserial takes a ``flock`` on the port, so a
  second program that also opens exclusively fails; the error is :class:`PortInUse` and names the port.
  (A second *non-exclusive* open still succeeds silently and steals bytes — nothing in user space can
  prevent that; the drivers see it as failed polls.) ``sim://`` honours the flag too.
* **Short reads**: the port's own read timeout is ``read_timeout_s`` (default 10 ms); :meth:`Transport.read`
  loops until its byte count or its deadline, so no call blocks longer than the deadline plus one port
  timeout. There is no blocking read anywhere.
* **Vanished ports**: pyserial raises ``SerialException`` ("device reports readiness to read but returned
  no data", "write failed: [Errno 5] Input/output error") when a USB adapter is pulled, and the device
  node disappears. Any such error closes the handle, marks the transport :attr:`~Transport.lost` and
  raises :class:`~drivers.errors.LinkLost` naming the port. :meth:`Transport.try_reopen` then reopens
  without blocking, at most once per backoff interval (exponential, ``backoff_initial_s`` ×
  ``backoff_factor`` up to ``backoff_max_s``), trying the configured URL first and then ``candidates``
  (glob patterns such as ``/dev/ttyUSB*``, URLs, or a callable returning URLs), for an adapter that came
  back under another name.
* **Injected time**: backoff schedules and read deadlines use the injected :class:`~drivers.clock.Clock`
  (on ``sim://`` the port's reads advance or follow simulated time, see :mod:`sim.devices`).

Every error message starts with the URL of the port.

Also here: :class:`BusLock`, the lock a driver holds around one transaction on a shared bus, with a
priority lane so a stop command (watchdog, e-stop) waits for at most the transaction in progress.
"""
from __future__ import annotations

import errno
import glob
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import serial
from serial import SerialException

from .clock import Clock, MonotonicClock
from .errors import DeviceClosed, DriverError, LinkLost, PortInUse, PortNotFound

__all__ = ["Transport", "TransportStats", "BusLock", "PortInUse", "PortNotFound", "open_serial", "url_scheme",
           "url_path", "DEFAULT_BAUDRATE"]

log = logging.getLogger(__name__)

DEFAULT_BAUDRATE = 115200

#: Substrings of pyserial/OS errors that mean "the device is gone" (USB unplug, pty master closed).
try:                                   # tcflush/tcsetattr on a vanished tty raise termios.error, not OSError
    import termios as _termios
    _IO_ERRORS: tuple = (SerialException, OSError, _termios.error)
except ImportError:                    # pragma: no cover - Windows
    _IO_ERRORS = (SerialException, OSError)

_VANISHED = ("returned no data", "Input/output error", "Errno 5", "Errno 19", "No such device", "Bad file descriptor",
             "disconnected")


# ----------------------------------------------------------------------------- URL helpers
def url_scheme(url: str) -> str:
    """``"device"`` for a plain path, else the URL scheme in lower case (``"socket"``, ``"sim"``...)."""
    return url.split("://", 1)[0].lower() if "://" in url else "device"


def url_path(url: str) -> str | None:
    """The filesystem path behind ``url`` (a device path, or the port a ``spy://`` URL wraps), else ``None``."""
    scheme = url_scheme(url)
    if scheme == "device":
        return url
    if scheme == "spy":
        inner = url.split("://", 1)[1].split("?", 1)[0]
        return inner if inner.startswith("/") else None
    return None


def open_serial(url: str, *, baudrate: int = DEFAULT_BAUDRATE, read_timeout_s: float = 0.01,
                write_timeout_s: float | None = 0.1, exclusive: bool = True):
    """Open ``url`` with :func:`serial.serial_for_url` and translate failures into driver errors.

    Raises
    ------
    PortInUse
        Another program holds the port (exclusive lock, or the kernel's ``TIOCEXCL``/``EBUSY``).
    PortNotFound
        No such device, or no handler for the URL's scheme.
    DriverError
        Anything else (permissions, bad settings), with the port in the message.
    """
    try:
        return serial.serial_for_url(url, baudrate=baudrate, timeout=read_timeout_s, write_timeout=write_timeout_s,
                                     exclusive=bool(exclusive))
    except SerialException as e:
        raise _open_error(url, e) from e
    except ValueError as e:
        if "protocol" in str(e) and "not known" in str(e):
            hint = (" (sim:// needs a virtual device registered in this process: import sim.devices)"
                    if url_scheme(url) == "sim" else "")
            raise PortNotFound(f"{url}: no pyserial handler for the scheme {url_scheme(url)!r}{hint}") from e
        raise DriverError(f"{url}: cannot open: {e}") from e
    except OSError as e:
        raise _open_error(url, e) from e


def _open_error(url: str, e: BaseException) -> DriverError:
    code = getattr(e, "errno", None)
    text = str(e)
    if code in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EBUSY) or "exclusively lock" in text:
        path = url_path(url) or url
        return PortInUse(f"{url}: port is in use by another program (exclusive lock held); a second driver must "
                         f"not drive the same rover - stop the other program (find it with `fuser {path}`)")
    if code == errno.ENOENT or "No such file" in text or "no virtual device" in text:
        return PortNotFound(f"{url}: no such port ({text})")
    if code == errno.EACCES or "Permission denied" in text:
        return DriverError(f"{url}: permission denied; add the user to the 'dialout' group (then log in again), "
                           f"or check that brltty/ModemManager do not hold the port ({text})")
    return DriverError(f"{url}: cannot open: {text}")


def _is_vanished(e: BaseException) -> bool:
    text = str(e)
    return any(s in text for s in _VANISHED) or getattr(e, "errno", None) in (errno.EIO, errno.ENODEV, errno.EBADF)


# ----------------------------------------------------------------------------- bus lock
class BusLock:
    """Mutual exclusion for one shared serial bus, with a priority lane.

    A driver holds it around one transaction (write + reply), never across a sleep or a whole poll
    cycle. ``hold(priority=True)`` — used for stop commands — is served before any normal waiter, so a
    stop waits at most for the transaction in progress. Timeouts are real (monotonic) seconds: the
    lock is only contended when threads run, i.e. in real time.
    """

    def __init__(self):
        self._cond = threading.Condition(threading.Lock())
        self._held = False
        self._priority_waiting = 0

    def acquire(self, *, priority: bool = False, timeout: float | None = None) -> bool:
        end = None if timeout is None else time.monotonic() + max(0.0, timeout)
        with self._cond:
            if priority:
                self._priority_waiting += 1
            try:
                while self._held or (not priority and self._priority_waiting):
                    left = None if end is None else end - time.monotonic()
                    if left is not None and left <= 0:
                        return False
                    self._cond.wait(left)
                self._held = True
                return True
            finally:
                if priority:
                    self._priority_waiting -= 1
                    if not self._held or self._priority_waiting == 0:
                        self._cond.notify_all()

    def release(self) -> None:
        with self._cond:
            self._held = False
            self._cond.notify_all()

    @property
    def held(self) -> bool:
        return self._held

    @contextmanager
    def hold(self, *, priority: bool = False, timeout: float | None = None):
        """``with lock.hold(priority=True, timeout=0.1) as ok:`` — ``ok`` is False on timeout."""
        ok = self.acquire(priority=priority, timeout=timeout)
        try:
            yield ok
        finally:
            if ok:
                self.release()


# ----------------------------------------------------------------------------- transport
@dataclass
class TransportStats:
    """Counters of a :class:`Transport` (monotonically increasing)."""
    opens: int = 0
    losses: int = 0
    reopen_attempts: int = 0
    bytes_out: int = 0
    bytes_in: int = 0
    writes: int = 0
    reads: int = 0


class Transport:
    """One serial port by URL: exclusive open, bounded reads, vanish detection, reopen with backoff.

    Parameters
    ----------
    url : str
        Port URL or device path (see the module docstring).
    baudrate : int
        Line speed (ignored by ``loop://``, ``socket://``, ``sim://`` and ptys).
    read_timeout_s : float
        The port's own read timeout: the longest one low-level read may wait (default 10 ms;
        must be in (0, 0.1] s).
    write_timeout_s : float
        Longest a write may block (kernel buffer full); default 0.1 s.
    exclusive : bool
        Lock the port against a second exclusive opener (default True).
    candidates : str, sequence of str, or callable, optional
        Where else the device may reappear after an unplug: glob patterns (``"/dev/ttyUSB*"``),
        URLs, or a callable returning URLs. Tried in order after ``url``.
    clock : Clock
        Time base for deadlines and backoff (default: monotonic real time).
    backoff_initial_s, backoff_factor, backoff_max_s : float
        Reopen schedule: the first retry after ``backoff_initial_s``, then ×``backoff_factor`` per
        failure, capped at ``backoff_max_s``; reset by a successful open.
    """

    def __init__(self, url: str, *, baudrate: int = DEFAULT_BAUDRATE, read_timeout_s: float = 0.01,
                 write_timeout_s: float = 0.1, exclusive: bool = True,
                 candidates: str | Sequence[str] | Callable[[], Iterable[str]] | None = None,
                 clock: Clock | None = None, backoff_initial_s: float = 0.05, backoff_factor: float = 2.0,
                 backoff_max_s: float = 2.0):
        if not isinstance(url, str) or not url:
            raise TypeError(f"url must be a non-empty str, got {url!r}")
        if isinstance(baudrate, bool) or not isinstance(baudrate, int) or baudrate <= 0:
            raise ValueError(f"{url}: baudrate = {baudrate!r}: must be a positive int")
        if not (isinstance(read_timeout_s, (int, float)) and 0 < read_timeout_s <= 0.1):
            raise ValueError(f"{url}: read_timeout_s = {read_timeout_s!r}: must be in (0, 0.1] s "
                             f"(a long blocking read stalls the control loop)")
        if not (isinstance(write_timeout_s, (int, float)) and 0 < write_timeout_s <= 1.0):
            raise ValueError(f"{url}: write_timeout_s = {write_timeout_s!r}: must be in (0, 1] s")
        for nm, v in (("backoff_initial_s", backoff_initial_s), ("backoff_max_s", backoff_max_s)):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{url}: {nm} = {v!r}: must be a finite number > 0")
        if not (isinstance(backoff_factor, (int, float)) and backoff_factor >= 1):
            raise ValueError(f"{url}: backoff_factor = {backoff_factor!r}: must be >= 1")
        self.url = url
        self.baudrate = baudrate
        self.read_timeout_s = float(read_timeout_s)
        self.write_timeout_s = float(write_timeout_s)
        self.exclusive = bool(exclusive)
        self.candidates = candidates
        self.clock = clock if clock is not None else MonotonicClock()
        self.backoff_initial_s = float(backoff_initial_s)
        self.backoff_factor = float(backoff_factor)
        self.backoff_max_s = float(backoff_max_s)
        self.stats = TransportStats()
        self._ser = None
        self._current: str | None = None
        self._lost = False
        self._closed = False
        self._backoff = self.backoff_initial_s
        self._next_attempt_s = -math.inf
        self.last_error: BaseException | None = None

    # ------------------------------------------------------------------ state
    @property
    def is_open(self) -> bool:
        return self._ser is not None

    @property
    def lost(self) -> bool:
        """The port vanished (or failed) and has not been reopened yet."""
        return self._lost

    @property
    def current_url(self) -> str | None:
        """The URL actually open now (differs from :attr:`url` after a reopen under a new name)."""
        return self._current

    @property
    def next_attempt_s(self) -> float:
        """Clock time of the next reopen attempt :meth:`try_reopen` will make."""
        return self._next_attempt_s

    def __repr__(self) -> str:
        state = "open" if self.is_open else ("lost" if self._lost else "closed")
        return f"Transport({self.url!r}, {state})"

    # ------------------------------------------------------------------ open / close
    def open(self) -> "Transport":
        """Open the port now (the configured URL, then the candidates); raise on failure.

        Raises
        ------
        PortInUse, PortNotFound, DriverError
            The error of the configured URL (the candidates' errors are logged).
        """
        if self._closed:
            raise DeviceClosed(f"{self.url}: transport closed; create a new one")
        if self._ser is not None:
            return self
        first_error: DriverError | None = None
        for u in self._urls():
            try:
                self._ser = open_serial(u, baudrate=self.baudrate, read_timeout_s=self.read_timeout_s,
                                        write_timeout_s=self.write_timeout_s, exclusive=self.exclusive)
            except DriverError as e:
                if first_error is None:
                    first_error = e
                elif u != self.url:
                    log.debug("%s: candidate %s: %s", self.url, u, e)
                continue
            self._current = u
            self._lost = False
            self._backoff = self.backoff_initial_s
            self._next_attempt_s = -math.inf
            self.stats.opens += 1
            if u != self.url:
                log.warning("%s: reopened under a new name: %s", self.url, u)
            return self
        self.last_error = first_error
        raise first_error  # type: ignore[misc]

    def close(self) -> None:
        """Release the port (idempotent); the transport cannot be reopened after this."""
        self._closed = True
        self._drop()

    def _drop(self) -> None:
        ser, self._ser = self._ser, None
        if ser is not None:
            try:
                ser.close()
            except Exception as e:                        # pragma: no cover - best effort
                log.debug("%s: close: %s", self.url, e)

    def mark_lost(self, reason: str) -> None:
        """Declare the port gone (e.g. the driver found the device node missing): close and reopen later."""
        if not self._lost:
            self.stats.losses += 1
            log.warning("%s: port lost: %s", self._current or self.url, reason)
        self._lost = True
        self._drop()
        self._next_attempt_s = self.clock.now() + self._backoff

    def try_reopen(self) -> bool:
        """Reopen a lost port if its backoff interval has passed; never blocks beyond one open call.

        Returns True when the port is open (already, or reopened now).
        """
        if self._ser is not None:
            return True
        if self._closed:
            return False
        now = self.clock.now()
        if now < self._next_attempt_s:
            return False
        self.stats.reopen_attempts += 1
        try:
            self.open()
        except DriverError as e:
            self.last_error = e
            self._next_attempt_s = now + self._backoff
            self._backoff = min(self._backoff * self.backoff_factor, self.backoff_max_s)
            log.debug("%s: reopen failed (next try in %.3f s): %s", self.url, self._next_attempt_s - now, e)
            return False
        log.info("%s: reopened as %s", self.url, self._current)
        return True

    def path_present(self) -> bool:
        """False when the port is a filesystem path that no longer exists (unplugged adapter)."""
        p = url_path(self._current or self.url)
        return True if p is None else os.path.exists(p)

    def _urls(self) -> list[str]:
        out = [self.url]
        c = self.candidates
        if c is None:
            return out
        items = c() if callable(c) else ([c] if isinstance(c, str) else list(c))
        for item in items:
            item = str(item)
            if "://" not in item and any(ch in item for ch in "*?["):
                found = sorted(glob.glob(item))
            else:
                found = [item]
            for u in found:
                if u not in out:
                    out.append(u)
        return out

    # ------------------------------------------------------------------ I/O
    def _port(self):
        if self._ser is None:
            if self._closed:
                raise DeviceClosed(f"{self.url}: transport is closed")
            raise LinkLost(f"{self.url}: port is not open (lost, waiting to reopen)")
        return self._ser

    def _fail(self, what: str, e: BaseException) -> LinkLost:
        name = self._current or self.url
        gone = _is_vanished(e) or not self.path_present()
        self.mark_lost(f"{what}: {e}")
        msg = (f"{name}: port vanished during {what} (unplugged?): {e}" if gone
               else f"{name}: {what} failed: {e}")
        return LinkLost(msg)

    def write(self, data: bytes) -> None:
        """Send ``data`` with one ``write()`` call (a packet must not be split: the controller
        discards a packet with an inter-byte gap). Raises :class:`LinkLost` if the port fails."""
        ser = self._port()
        try:
            n = ser.write(data)
        except serial.SerialTimeoutException as e:
            raise LinkLost(f"{self._current}: write of {len(data)} bytes timed out after "
                           f"{self.write_timeout_s:g} s (device not draining)") from e
        except _IO_ERRORS as e:
            raise self._fail("write", e) from e
        self.stats.writes += 1
        self.stats.bytes_out += len(data)
        if n is not None and n != len(data):
            raise LinkLost(f"{self._current}: short write: {n} of {len(data)} bytes")

    def read(self, n: int, timeout_s: float) -> bytes:
        """Up to ``n`` bytes, returning as soon as ``n`` arrived or ``timeout_s`` (clock time) passed.

        Never blocks longer than ``timeout_s`` plus one port read timeout. Raises :class:`LinkLost`
        if the port fails (e.g. the adapter was unplugged).
        """
        ser = self._port()
        if n <= 0:
            return b""
        timeout_s = max(0.0, float(timeout_s))
        deadline = self.clock.now() + timeout_s
        # Bounded twice: by the clock's deadline, and by the number of port reads the timeout allows
        # (each waits at most read_timeout_s), so a clock that does not move cannot hang the caller.
        budget = int(math.ceil(timeout_s / self.read_timeout_s)) + 1
        buf = bytearray()
        try:
            for _ in range(budget):
                chunk = ser.read(n - len(buf))
                if chunk:
                    buf += chunk
                if len(buf) >= n or self.clock.now() >= deadline:
                    break
        except _IO_ERRORS as e:
            raise self._fail("read", e) from e
        self.stats.reads += 1
        self.stats.bytes_in += len(buf)
        return bytes(buf)

    def reset_input(self) -> None:
        """Discard bytes already received (a late reply must not answer the next request)."""
        ser = self._port()
        try:
            ser.reset_input_buffer()
        except _IO_ERRORS as e:
            raise self._fail("flush", e) from e

    def in_waiting(self) -> int:
        ser = self._port()
        try:
            return int(ser.in_waiting)
        except _IO_ERRORS as e:
            raise self._fail("in_waiting", e) from e
