"""Injected time. Nothing in rovernav reads the wall clock directly.

A clock has ``now()`` (seconds, monotonic, arbitrary epoch) and ``sleep(seconds)``. Hardware
runs use :class:`MonotonicClock`; the simulator owns a deterministic clock
(:class:`sim.world.SimClock`) whose ``sleep`` advances simulated time.
"""
from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "MonotonicClock", "ManualClock"]


@runtime_checkable
class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic time base."""

    def sleep(self, seconds: float) -> None:
        """Let ``seconds`` pass on this clock."""


class MonotonicClock:
    """Real time: ``time.monotonic`` and ``time.sleep``."""

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def __repr__(self) -> str:
        return "MonotonicClock()"


class ManualClock:
    """A clock that moves only when told to (tests): ``sleep`` and ``advance`` add time."""

    def __init__(self, t0_s: float = 0.0):
        self._t = float(t0_s)

    def now(self) -> float:
        return self._t

    def advance(self, seconds: float) -> None:
        if not seconds >= 0:
            raise ValueError(f"seconds = {seconds!r}: must be >= 0")
        self._t += float(seconds)

    def sleep(self, seconds: float) -> None:
        self.advance(max(0.0, float(seconds)))

    def __repr__(self) -> str:
        return f"ManualClock(t={self._t:.6f})"
