"""The host side of "stop when the control code goes quiet": a command gate and a watchdog.

Two small pieces every driver reuses (RoboClaw, RNP, MAVLink):

:class:`CommandGate`
    Carries the *latest* command from the control thread to the I/O thread. A command is handed out
    only while it is fresh (younger than ``max_age_s``) and not yet delivered, so the I/O thread can
    never resend a stale command: not after a stall, not after a reconnect. :meth:`CommandGate.block`
    voids every command submitted so far — after a reconnect, an e-stop, a stop or a device fault,
    motion needs a command submitted *after* the event.

:class:`Watchdog`
    Fed by fresh control data (every accepted motion command calls :meth:`Watchdog.feed`), never by a
    timer or by the I/O loop. When the last command that asked for motion is older than
    ``timeout_s``, it calls ``on_expire`` once — the driver puts zero speed on the wire from *that*
    thread (through the bus's priority lane), so a stalled I/O thread cannot delay the stop beyond
    the transaction in progress. It runs in its own thread (:meth:`Watchdog.start`, real time) or is
    polled (:meth:`Watchdog.poll`) by a harness stepping simulated time.

Timing: the stop reaches the wire at most ``timeout_s + period_s`` + (one transaction) after the last
command; with the defaults of the drivers (0.2 s timeout, 10 ms period) that is well inside the 300 ms
the project requires. Lateness of every trip (``fired - deadline``) is kept in :attr:`Watchdog.lateness_s`.
"""
from __future__ import annotations

import collections
import logging
import math
import threading
from collections.abc import Callable

from .clock import Clock, MonotonicClock

__all__ = ["CommandGate", "Watchdog"]

log = logging.getLogger(__name__)


class CommandGate:
    """Latest-command mailbox between a control thread and an I/O thread.

    Parameters
    ----------
    max_age_s : float
        A command older than this is stale: never handed out (again).
    clock : Clock
        Time base of the ages.
    """

    def __init__(self, *, max_age_s: float, clock: Clock | None = None):
        if not (isinstance(max_age_s, (int, float)) and math.isfinite(max_age_s) and max_age_s > 0):
            raise ValueError(f"max_age_s = {max_age_s!r}: must be a finite number > 0 seconds")
        self.max_age_s = float(max_age_s)
        self.clock = clock if clock is not None else MonotonicClock()
        self._lock = threading.Lock()
        self._gen = 0
        self._value = None
        self._t = -math.inf
        self._delivered = 0
        self._blocked = 0
        self.dropped_stale = 0

    def submit(self, value) -> int:
        """Store a fresh command (replacing any pending one); returns its generation number."""
        with self._lock:
            self._gen += 1
            self._value = value
            self._t = self.clock.now()
            return self._gen

    def take(self):
        """``(generation, value, submitted_s)`` of the latest fresh, undelivered command, else ``None``.

        The command stays pending until :meth:`delivered` (so a failed send can be retried while it
        is still fresh); a stale one is dropped here.
        """
        with self._lock:
            if self._value is None or self._gen <= self._delivered or self._gen <= self._blocked:
                return None
            if self.clock.now() - self._t >= self.max_age_s:
                self._value = None
                self.dropped_stale += 1
                return None
            return self._gen, self._value, self._t

    def is_current(self, gen: int) -> bool:
        """True while ``gen`` is still the command to send (latest, fresh, not blocked or delivered)."""
        with self._lock:
            return (gen == self._gen and self._value is not None and gen > self._blocked
                    and gen > self._delivered and self.clock.now() - self._t < self.max_age_s)

    def delivered(self, gen: int) -> None:
        """The device acknowledged command ``gen``: do not send it again."""
        with self._lock:
            self._delivered = max(self._delivered, int(gen))

    def block(self) -> None:
        """Void every command submitted so far (reconnect, e-stop, stop, fault)."""
        with self._lock:
            self._blocked = self._gen
            self._value = None

    def drop_stale(self) -> bool:
        """Drop the pending command if it is stale; True if one was dropped."""
        with self._lock:
            if self._value is not None and self.clock.now() - self._t >= self.max_age_s:
                self._value = None
                self.dropped_stale += 1
                return True
            return False

    @property
    def pending(self) -> bool:
        with self._lock:
            return self._value is not None and self._gen > max(self._delivered, self._blocked)

    @property
    def last_submit_s(self) -> float:
        return self._t


class Watchdog:
    """Calls ``on_expire`` when no fresh motion command arrived for ``timeout_s``.

    Parameters
    ----------
    timeout_s : float
        Longest allowed silence of the control code while it asks for motion.
    on_expire : callable(str)
        Called once per trip with a reason, from the watchdog's thread (or from :meth:`poll`'s
        caller). It must put zero speed on the wire; exceptions are logged, never propagated into
        the thread loop.
    clock : Clock
        Time base (default monotonic). With a simulated clock, do not :meth:`start` the thread:
        call :meth:`poll` from the harness.
    period_s : float
        Check period of the thread (default ``min(0.01, timeout_s / 10)``).
    name : str
        For log messages and the thread name.
    """

    def __init__(self, timeout_s: float, on_expire: Callable[[str], None], *, clock: Clock | None = None,
                 period_s: float | None = None, name: str = "watchdog"):
        if not (isinstance(timeout_s, (int, float)) and math.isfinite(timeout_s) and timeout_s > 0):
            raise ValueError(f"{name}: timeout_s = {timeout_s!r}: must be a finite number > 0 seconds")
        if not callable(on_expire):
            raise TypeError(f"{name}: on_expire must be callable, got {type(on_expire).__name__}")
        p = min(0.01, timeout_s / 10.0) if period_s is None else period_s
        if not (isinstance(p, (int, float)) and 0 < p <= timeout_s):
            raise ValueError(f"{name}: period_s = {period_s!r}: must be in (0, timeout_s]")
        self.timeout_s = float(timeout_s)
        self.period_s = float(p)
        self.on_expire = on_expire
        self.clock = clock if clock is not None else MonotonicClock()
        self.name = name
        self._lock = threading.Lock()
        self._last_feed = -math.inf
        self._active = False
        self._tripped = False
        self.trips = 0
        #: ``fired - deadline`` of recent trips (seconds), for latency statistics.
        self.lateness_s: collections.deque = collections.deque(maxlen=10000)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # ------------------------------------------------------------------ feeding
    def feed(self, moving: bool = True) -> None:
        """A fresh command arrived. ``moving=False`` (a zero command) leaves nothing to guard."""
        with self._lock:
            self._last_feed = self.clock.now()
            self._active = bool(moving)
            self._tripped = False

    def idle(self) -> None:
        """Nothing to guard (after a stop, e-stop or disarm); keeps :attr:`tripped` as it is."""
        with self._lock:
            self._active = False

    @property
    def tripped(self) -> bool:
        """True from a trip until the next :meth:`feed`."""
        return self._tripped

    @property
    def active(self) -> bool:
        return self._active

    @property
    def last_feed_s(self) -> float:
        return self._last_feed

    @property
    def deadline_s(self) -> float:
        return self._last_feed + self.timeout_s if self._active else math.inf

    # ------------------------------------------------------------------ checking
    def poll(self) -> bool:
        """Check now; call ``on_expire`` and return True if the watchdog trips."""
        with self._lock:
            if not self._active:
                return False
            now = self.clock.now()
            deadline = self._last_feed + self.timeout_s
            if now < deadline:
                return False
            self._active = False
            self._tripped = True
            self.trips += 1
            self.lateness_s.append(now - deadline)
            silent = now - self._last_feed
        reason = f"no fresh command for {silent:.3f} s (watchdog timeout {self.timeout_s:g} s)"
        log.warning("%s: %s: stopping", self.name, reason)
        try:
            self.on_expire(reason)
        except Exception:
            log.exception("%s: stop action failed", self.name)
        return True

    def start(self) -> None:
        """Run :meth:`poll` every ``period_s`` in a daemon thread (real-time clocks only)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"{self.name}-watchdog", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        self._stop.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout)
        self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            try:
                self.poll()
            except Exception:                               # pragma: no cover - poll already guards
                log.exception("%s: watchdog poll failed", self.name)

    def __repr__(self) -> str:
        return f"Watchdog({self.name!r}, timeout={self.timeout_s:g} s, active={self._active}, trips={self.trips})"
