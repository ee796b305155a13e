"""Scaffolding shared by the serial drivers (:mod:`drivers.roboclaw`, :mod:`drivers.rnp`, :mod:`drivers.mavlink`).

Two base classes, both :class:`~drivers.base.Rover` subclasses:

:class:`SerialRover` — every serial driver
    Link state (:attr:`~SerialRover.link_up`, :attr:`~SerialRover.link_reason`), the event log
    (``events``, :meth:`~SerialRover._event`), the transport, the host watchdog
    (:class:`~drivers.watchdog.Watchdog`, its stop latency recorded by
    :meth:`~SerialRover._record_watchdog_stop`), the I/O thread's lifecycle (:meth:`~SerialRover._start_io`,
    :meth:`~SerialRover._stop_io`) and :meth:`~SerialRover.poll_watchdog`. :meth:`_open` opens the port,
    connects and starts the threads when ``threaded``.

    A subclass calls :meth:`_init_link` in its constructor (after ``Rover.__init__``) and implements
    ``_connect()`` (the per-protocol connect: raises a :class:`~drivers.errors.DriverError` naming the port
    and what failed, leaves the link up), ``spin_once()`` (one I/O cycle, for ``threaded=False``),
    ``_io_loop()`` (the I/O thread's body, runs until ``_stop_evt`` is set), ``_on_watchdog(reason)`` (the
    host watchdog tripped: put zero on the wire) and ``_close()``.

:class:`PolledSerialRover` — request/reply drivers with one bus (RoboClaw, RNP)
    Adds the fresh-command gate (:class:`~drivers.watchdog.CommandGate`), the bus lock
    (:class:`~drivers.transport.BusLock`), the cycle-timed I/O loop (woken at once by ``_wake``), link loss
    (:meth:`~PolledSerialRover._link_lost`: commands dropped, a best-effort stop, reconnect scheduled) and
    reconnect with exponential backoff (:meth:`~PolledSerialRover._recover`, 50 ms doubling to 1 s), the
    host watchdog's stop, ``stop`` / ``discard_pending``, and the wheel-encoder plausibility checks
    (:meth:`~PolledSerialRover._check_encoder`: jumps and frozen counts raise ENCODER_FAULT).

    A subclass also implements ``_write_zero(reason, *, priority=True) -> float | None`` (zero speed on the
    wire now; the clock time it was written or None) and ``_best_effort_stop()`` (after a link loss, the
    transport still open: one stop not waited for); it may override ``_reconnect()`` (default
    ``_connect()``) and ``_leave_device()`` (best effort before the port closes).

MAVLink is full duplex and stream based (no bus lock, no command gate, targets written synchronously), so
:class:`~drivers.mavlink.MavlinkRover` uses :class:`SerialRover` only.
"""
from __future__ import annotations

import collections
import logging
import math
import threading
import time

from .base import Fault, Rover
from .errors import DriverError, LinkLost
from .kinematics import WheelLayout
from .transport import BusLock, Transport
from .watchdog import CommandGate, Watchdog

__all__ = ["SerialRover", "PolledSerialRover", "LinkStatsBase", "sample_deque", "resolve_layout", "FAULT_HOLD_S",
           "ENCODER_FREEZE_S"]

log = logging.getLogger(__name__)

#: First reconnect delay after a link loss and its ceiling (doubling on every failed attempt).
RECOVER_BACKOFF_S = 0.05
RECOVER_BACKOFF_MAX_S = 1.0
#: :attr:`Fault.PROTOCOL` (and the encoder faults) stay raised this long after the last occurrence.
FAULT_HOLD_S = 1.0
#: An encoder count unchanged this long while its wheel is commanded to move raises ENCODER_FAULT.
ENCODER_FREEZE_S = 0.5
_JOIN_S = 2.0


def sample_deque() -> collections.deque:
    """A bounded deque for latency samples in link statistics (the newest 20000)."""
    return collections.deque(maxlen=20000)


class LinkStatsBase:
    """Mixin of the drivers' statistics dataclasses: :meth:`summary`."""

    def summary(self) -> dict:
        """The integer counters (not the latency samples), by name."""
        return {k: v for k, v in self.__dict__.items() if isinstance(v, int)}


def resolve_layout(layout):
    """``(profile or None, WheelLayout)`` from a :class:`~drivers.kinematics.WheelLayout` or a rover profile
    (converted with :meth:`WheelLayout.from_profile`); TypeError otherwise."""
    if isinstance(layout, WheelLayout):
        return None, layout
    if hasattr(layout, "geometry") and hasattr(layout, "drive"):
        return layout, WheelLayout.from_profile(layout)
    raise TypeError(f"layout must be a WheelLayout or a rover profile, got {type(layout).__name__}")


class SerialRover(Rover):
    """Base of the serial drivers: link state, events, transport, host watchdog, I/O thread lifecycle.

    See the module docstring for what a subclass implements.
    """

    def _init_link(self, port, *, baudrate: int, candidates, transport: Transport | None, threaded: bool,
                   command_timeout_s: float) -> None:
        """Build the common state: ``threaded``, ``command_timeout_s``, ``transport`` (``transport`` or a new
        one on ``port``), ``watchdog`` (calling :meth:`_on_watchdog`), ``events``, link state, thread handles."""
        self.threaded = bool(threaded)
        self.command_timeout_s = float(command_timeout_s)
        self.transport = transport if transport is not None else Transport(
            str(port), baudrate=baudrate, clock=self.clock, candidates=candidates)
        self.watchdog = Watchdog(self.command_timeout_s, self._on_watchdog, clock=self.clock, name=self.name)
        self.events: collections.deque = collections.deque(maxlen=200)
        self._log = logging.getLogger(type(self).__module__)     # messages under the driver's own logger
        self._link_up = False
        self._link_reason = "not connected"
        self._connected_once = False
        self._warned_drop_t = -math.inf
        self._io_thread: threading.Thread | None = None
        self._stop_evt = threading.Event()
        self._wake = threading.Event()

    # ------------------------------------------------------------------ properties
    @property
    def link_up(self) -> bool:
        return self._link_up

    @property
    def link_reason(self) -> str:
        """Why the link is down (or the last reason it went down)."""
        return self._link_reason

    def _event(self, kind: str, detail: str) -> None:
        self.events.append((self.clock.now(), kind, detail))

    # ------------------------------------------------------------------ lifecycle
    def _open(self) -> None:
        self.transport.open()
        self._connect()
        self._start_io()

    def _start_io(self) -> None:
        """Start the I/O and watchdog threads (``threaded=True`` only)."""
        if self.threaded:
            self._stop_evt.clear()
            self._io_thread = threading.Thread(target=self._io_loop, name=f"{self.name}-io", daemon=True)
            self._io_thread.start()
            self.watchdog.start()

    def _stop_io(self) -> None:
        """Stop the watchdog and I/O threads (waits for the I/O thread unless called from it)."""
        self._stop_evt.set()
        self._wake.set()
        self.watchdog.stop()
        t = self._io_thread
        if t is not None and t is not threading.current_thread():
            t.join(_JOIN_S)
        self._io_thread = None

    def poll_watchdog(self) -> bool:
        """Check the host watchdog now (``threaded=False``); True if it tripped and stopped the rover."""
        return self.watchdog.poll()

    def _record_watchdog_stop(self, last_feed_s: float, t_wire: float | None) -> None:
        """Latency samples of a watchdog stop: last command -> zero written, and deadline -> zero written."""
        if t_wire is not None:
            self.stats.watchdog_stop_s.append(t_wire - last_feed_s)
            self.stats.watchdog_late_s.append(t_wire - (last_feed_s + self.watchdog.timeout_s))

    def _link_faults(self, now: float, up: bool) -> Fault:
        """LINK_LOST (``up`` false: the link state read under the lock), WATCHDOG (host watchdog tripped),
        PROTOCOL (a corrupt or implausible reply within :data:`FAULT_HOLD_S` of ``_protocol_t``). Call with
        the driver's state lock held."""
        faults = Fault.NONE
        if not up:
            faults |= Fault.LINK_LOST
        if self.watchdog.tripped:
            faults |= Fault.WATCHDOG
        if now - self._protocol_t < FAULT_HOLD_S:
            faults |= Fault.PROTOCOL
        return faults

    def _drop_command(self, why) -> None:
        """Count a motion command dropped (link down, device stop...) and warn at most once a second;
        ``why()`` gives the reason (called only when the warning is logged)."""
        self.stats.dropped_commands += 1
        now = self.clock.now()
        if now - self._warned_drop_t > 1.0:
            self._warned_drop_t = now
            self._log.warning("%s: command dropped, rover treated as stopped: %s", self.name, why())


class PolledSerialRover(SerialRover):
    """Base of the request/reply drivers on one bus: command gate, bus lock, cycle-timed I/O loop, link loss
    and reconnect with backoff (see the module docstring)."""

    #: Free-running loop (``cycle_period_s == 0``): yield the GIL between cycles with ``time.sleep(0)``.
    _YIELD_WHEN_FREE_RUNNING = False

    def _init_link(self, port, *, baudrate: int, candidates, transport: Transport | None, threaded: bool,
                   command_timeout_s: float, cycle_period_s: float) -> None:
        """:meth:`SerialRover._init_link` plus ``cycle_period_s``, ``gate``, the bus lock, the state lock and
        the reconnect backoff."""
        super()._init_link(port, baudrate=baudrate, candidates=candidates, transport=transport,
                           threaded=threaded, command_timeout_s=command_timeout_s)
        self.cycle_period_s = float(cycle_period_s)
        self._bus = BusLock()
        self.gate = CommandGate(max_age_s=self.command_timeout_s, clock=self.clock)
        self._state_lock = threading.RLock()
        self._zero_pending = False
        self._recover_next_s = -math.inf
        self._recover_backoff = RECOVER_BACKOFF_S
        self._last_cycle_start = math.nan

    # ------------------------------------------------------------------ Rover hooks
    def _close(self) -> None:
        self._stop_io()
        self._leave_device()
        self._link_up = False
        self._link_reason = "closed"
        self.transport.close()

    def _leave_device(self) -> None:
        """Best effort before the port closes (threads already stopped). Default: nothing."""

    def _stop(self) -> None:
        self.gate.block()
        self.watchdog.idle()
        self._write_zero("stop")

    def _discard_pending(self) -> None:
        self.gate.block()

    # ------------------------------------------------------------------ I/O loop
    def _count_cycle(self) -> None:
        """Record the start of an I/O cycle (``stats.cycle_s``: start-to-start)."""
        now = self.clock.now()
        if math.isfinite(self._last_cycle_start):
            self.stats.cycle_s.append(now - self._last_cycle_start)
        self._last_cycle_start = now

    def _io_loop(self) -> None:
        while not self._stop_evt.is_set():
            t0 = time.monotonic()
            try:
                self.spin_once()
            except Exception:                               # the I/O thread must never die
                self._log.exception("%s: I/O cycle failed", self.name)
            if self._stop_evt.is_set():
                break
            wait = self.cycle_period_s - (time.monotonic() - t0) if self._link_up else 0.01
            if wait > 0:
                self._wake.wait(wait)
            elif self._YIELD_WHEN_FREE_RUNNING:
                time.sleep(0)                              # free-running: let the callers in
            self._wake.clear()

    def _on_watchdog(self, reason: str) -> None:
        self.gate.drop_stale()
        self._event("watchdog", reason)
        last = self.watchdog.last_feed_s
        self._record_watchdog_stop(last, self._write_zero(f"watchdog: {reason}"))

    # ------------------------------------------------------------------ wheel encoders
    def _check_encoder(self, w: int, d: int, dt: float, t: float, moving, max_cps: float) -> None:
        """Plausibility of wheel ``w``'s encoder, whose count moved by ``d`` in ``dt`` s (at time ``t``): a
        jump beyond what the wheel can turn at ``max_cps`` (reset, glitch or bad data), or a count unchanged
        for :data:`ENCODER_FREEZE_S` while ``moving`` (commanded to turn), raises ENCODER_FAULT (``events``,
        ``stats.encoder_faults``, ``_encoder_fault_t``; ``_frozen_since`` / ``_frozen_reported`` per wheel)."""
        limit = (2.0 * max_cps + 500.0) * max(dt, 0.05) + 50.0
        if abs(d) > limit:
            self._encoder_fault_t = t
            self.stats.encoder_faults += 1
            self.events.append((t, "encoder_jump", f"{self.layout.names[w]}: count jumped by {d} in {dt:.3f} s "
                                                  f"(reset, glitch or bad data)"))
        if moving and d == 0:
            if not math.isfinite(self._frozen_since[w]):
                self._frozen_since[w] = t
            elif t - self._frozen_since[w] >= ENCODER_FREEZE_S and not self._frozen_reported[w]:
                self._frozen_reported[w] = True
                self._encoder_fault_t = t
                self.stats.encoder_faults += 1
                self.events.append((t, "encoder_frozen", f"{self.layout.names[w]}: count unchanged for "
                                                        f"{t - self._frozen_since[w]:.2f} s while commanded"))
        else:
            self._frozen_since[w] = math.nan
            self._frozen_reported[w] = False

    # ------------------------------------------------------------------ link loss and reconnect
    def _link_lost(self, reason: str, *, port_gone: bool = False) -> None:
        """The link is lost: commands dropped, the transport marked lost if the port vanished; on the
        transition a reconnect is scheduled after the backoff and :meth:`_on_link_lost` runs."""
        with self._state_lock:
            was_up = self._link_up
            self._link_up = False
            self._link_reason = reason
        self.gate.block()
        if port_gone and not self.transport.lost:
            self.transport.mark_lost(reason)
        if was_up:
            self.stats.link_losses += 1
            self._on_link_lost()
            self._recover_next_s = self.clock.now() + self._recover_backoff
            self._event("link_lost", reason)
            self._log.error("%s: link lost: %s; rover treated as stopped", self.name, reason)
            if self.transport.is_open:
                self._best_effort_stop()

    def _on_link_lost(self) -> None:
        """Called once when the link goes down (before the event is logged). Default: nothing."""

    def _reconnect(self) -> None:
        """The connect of a reconnect (default :meth:`_connect`)."""
        self._connect()

    def _recover(self) -> None:
        """With the link down: when the backoff has passed, reopen the port if it vanished, then reconnect.
        A failed reconnect doubles the backoff (up to 1 s); success resets it."""
        now = self.clock.now()
        if now < self._recover_next_s:
            return
        if not self.transport.is_open:
            if not self.transport.try_reopen():
                return
            self._event("reopened", f"port reopened as {self.transport.current_url}")
        try:
            self._reconnect()
        except LinkLost as e:
            self._link_reason = f"reconnect failed: {e}"
            return
        except DriverError as e:
            self._recover_next_s = self.clock.now() + self._recover_backoff
            self._recover_backoff = min(self._recover_backoff * 2.0, RECOVER_BACKOFF_MAX_S)
            self._link_reason = f"reconnect failed: {e}"
            self._log.debug("%s: %s", self.name, self._link_reason)
            return
        self._recover_backoff = RECOVER_BACKOFF_S
        self.stats.reconnects += 1
        self._event("reconnected", f"link up again on {self.transport.current_url}; waiting for a fresh command")
        self._log.warning("%s: link restored on %s; no motion until a fresh command", self.name,
                    self.transport.current_url)
