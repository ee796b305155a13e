"""Keyboard teleoperation for the bench: the logic behind ``rover drive``.

Works on any :class:`drivers.base.Rover` (RoboClaw, RNP, MAVLink, the simulator) and any key source:
the terminal (:class:`TtyKeys`, inside a :class:`RawTerminal`), a timed key script (:class:`ScriptKeys`,
see :func:`parse_key_script`), or both (:class:`MergedKeys`). :class:`Teleop` runs the session on the
rover's clock in one thread, so tests drive it on simulated time (``on_tick`` spins a non-threaded
driver) and the CLI drives a threaded driver in real time with the same code.

Pieces
------
* :class:`KeyDecoder` — bytes from a terminal to key names (``"w"``, ``"up"``, ``"esc"``, ``"space"``,
  ``"ctrl-c"``...), including escape sequences split across reads; a lone Esc is told from the start of
  an arrow key's sequence by a short timeout (``esc_timeout_s``, as curses' ESCDELAY).
* :func:`clamp_twist` — the nearest body twist the rover's :class:`~drivers.kinematics.WheelLayout`
  accepts (speed, yaw rate, turning radius, point turns, steering limits), verified with
  ``layout.check_twist`` so an out-of-range command is never sent.
* :class:`Teleop` — setpoints, deadman, resending, e-stop / re-arm, fault handling and the panel.
* :func:`render_panel` — the telemetry panel as lines of text (pure; :class:`PanelWriter` draws it in
  place with ANSI codes, or as plain log lines when the output is not a terminal).

The deadman rule is documented in :data:`HELP` (shown by ``rover drive --help``).
"""
from __future__ import annotations

import collections
import contextlib
import errno
import logging
import math
import os
import select
import shutil
import signal
import threading
from dataclasses import dataclass

from drivers.base import STOPPING_FAULTS, Fault
from drivers.clock import MonotonicClock
from drivers.errors import CommandOutOfRange, DriverError, EStopActive, NotArmed

__all__ = ["HELP", "KeyDecoder", "ScriptKeys", "TtyKeys", "MergedKeys", "parse_key_script", "KEY_NAMES",
           "RawTerminal", "TerminateOnSignals", "Terminated", "clamp_twist", "Teleop", "PanelWriter", "render_panel"]

log = logging.getLogger(__name__)

HELP = """\
keys:
  up / w        faster: speed setpoint + one step (backwards when below zero)
  down / s      slower / reverse: speed setpoint - one step
  left / a      turn left: yaw-rate setpoint + one step (CCW)
  right / d     turn right: yaw-rate setpoint - one step
  space         stop: setpoint to zero, stays armed
  e / Esc       EMERGENCY STOP: zero, discard queued commands, disarm, latch
  r             (re-)arm: asks first, press y to confirm
  q / Ctrl-C    quit: stop, disarm, close the port
  h / Enter     (or any other key) keep the current setpoint alive

Steps are 1/10 of the profile's max_speed_mps and max_yaw_rate_dps unless given; every setpoint is
clamped to the profile's limits (speed, yaw rate, min_turning_radius_m, point turns) before it is sent.

deadman: the setpoint is re-sent at 10 Hz while the session runs, so the driver's host watchdog stops
the rover within its command_timeout_s if this program stalls or dies. While the setpoint is not zero,
a key must arrive at least every --deadman seconds (default 1.0) or the setpoint drops to zero and the
rover stops (decelerating at the drive's own acceleration limit): keep a key held down to keep driving.
1 s is longer than the usual keyboard auto-repeat delay (0.25-0.66 s) plus a network hiccup over ssh,
so a held key keeps the rover going without gaps, and letting go stops it about a second later.
Holding an arrow/WASD key ramps the setpoint at most one step per 0.1 s (however fast the keyboard
repeats); holding h or Enter cruises at the current setpoint. --deadman 0 keeps a setpoint until you
change it (rover on a stand only; the host watchdog still applies).

Loss of the link, a device fault or an e-stop zero the setpoint; after the link comes back, drive again
with fresh keys. Esc waits up to 50 ms to tell a lone Esc from an arrow key's escape sequence; e stops
at once.

--script FILE: one line per event, "DELAY KEY [KEY...]": wait DELAY seconds after the previous line,
then press the keys (names: a single character, or up down left right space esc enter tab ctrl-c;
# starts a comment). Without --duration the session ends right after the last key. Confirmations
(the arm prompt without --yes, re-arm) are keys too: "0.2 r" then "0.1 y".
"""

_ESC = 0x1B
_EPS_S = 1e-6
_CSI_ARROWS = {"A": "up", "B": "down", "C": "right", "D": "left"}
_SS3_KEYS = {"A": "up", "B": "down", "C": "right", "D": "left", "H": "home", "F": "end",
             "P": "f1", "Q": "f2", "R": "f3", "S": "f4"}
_CSI_MAX = 32                          # bytes of one control sequence before it counts as garbage
_NAMED = {0x20: "space", 0x0D: "enter", 0x0A: "enter", 0x09: "tab", 0x7F: "backspace", 0x08: "backspace",
          0x03: "ctrl-c", 0x04: "ctrl-d", 0x1A: "ctrl-z", 0x1C: "ctrl-\\", 0x00: "ctrl-@"}

#: Key names a script may use besides single printable characters.
KEY_NAMES = ("up", "down", "left", "right", "space", "esc", "enter", "tab", "backspace", "ctrl-c", "ctrl-d")


def _byte_key(b: int) -> str:
    if b in _NAMED:
        return _NAMED[b]
    if b < 0x20:
        return f"ctrl-{chr(b + 0x60)}"
    if b < 0x7F:
        return chr(b)
    return "other"                     # a byte of a multi-byte character: presence only


# ----------------------------------------------------------------------------- key decoding
class KeyDecoder:
    """Terminal bytes to key names.

    Arrow keys arrive as escape sequences (``ESC [ A``, ``ESC O A`` in application mode, ``ESC [ 1 ; 5 A``
    with modifiers) that a read may split anywhere; a lone Esc is the same first byte. Bytes after an
    ``ESC`` are kept until the sequence is complete, or until ``esc_timeout_s`` has passed since the
    ``ESC`` arrived (:meth:`flush`): then the ``ESC`` is a lone Esc and the bytes after it are keys of
    their own. An ``ESC`` followed by anything that does not start a sequence (Alt+key, Esc pressed
    twice) gives ``"esc"`` at once. Unrecognised complete sequences give ``"unknown"``.

    Parameters
    ----------
    esc_timeout_s : float
        Longest wait for the rest of an escape sequence (default 50 ms: a terminal sends a sequence
        in one write; over ssh its bytes arrive together or within a few ms).
    """

    def __init__(self, esc_timeout_s: float = 0.05):
        if not (isinstance(esc_timeout_s, (int, float)) and 0 < esc_timeout_s <= 1):
            raise ValueError(f"esc_timeout_s = {esc_timeout_s!r}: must be in (0, 1] s")
        self.esc_timeout_s = float(esc_timeout_s)
        self._buf = bytearray()
        self._t_esc = math.nan

    @property
    def pending(self) -> bool:
        """True while an incomplete escape sequence waits for more bytes."""
        return bool(self._buf)

    @property
    def deadline_s(self) -> float:
        """When :meth:`flush` turns the pending bytes into keys (``inf`` if nothing is pending)."""
        return self._t_esc + self.esc_timeout_s if self._buf else math.inf

    def feed(self, data: bytes, now_s: float) -> list[str]:
        """Keys completed by ``data`` (received at ``now_s``)."""
        waiting = bool(self._buf)
        self._buf += data
        keys, used = self._decode(final=False)
        if self._buf and (used or not waiting):
            self._t_esc = now_s                # a new sequence started in this chunk
        return keys

    def flush(self, now_s: float) -> list[str]:
        """Resolve a pending sequence whose wait is over (a lone Esc and what followed it)."""
        if not self._buf or now_s < self._t_esc + self.esc_timeout_s:
            return []
        keys, _ = self._decode(final=True)
        if self._buf:
            self._t_esc = now_s
        return keys

    def _decode(self, final: bool) -> tuple[list[str], int]:
        buf, out, i = self._buf, [], 0
        while i < len(buf):
            b = buf[i]
            if b != _ESC:
                out.append(_byte_key(b))
                i += 1
                continue
            n = self._sequence(buf, i)
            if n is None:                     # incomplete
                if not final:
                    break
                out.append("esc")             # timed out: a lone Esc, then plain keys
                i += 1
                final = False                 # only the first ESC has waited long enough
                continue
            key, used = n
            out.append(key)
            i += used
        del buf[:i]
        if not buf:
            self._t_esc = math.nan
        return out, i

    @staticmethod
    def _sequence(buf: bytearray, i: int):
        """``(key, length)`` of the escape sequence at ``buf[i]``, or None if it is incomplete."""
        if i + 1 >= len(buf):
            return None
        nxt = buf[i + 1]
        if nxt == 0x5B:                                    # CSI: ESC [ params intermediates final
            j = i + 2
            while j < len(buf) and 0x20 <= buf[j] <= 0x3F:
                j += 1
            if j >= len(buf):
                return None if j - i < _CSI_MAX else ("esc", 1)
            fin = buf[j]
            if 0x40 <= fin <= 0x7E:
                return _CSI_ARROWS.get(chr(fin), "unknown"), j + 1 - i
            return "esc", 1                                # not a sequence after all: a lone Esc
        if nxt == 0x4F:                                    # SS3: ESC O final
            if i + 2 >= len(buf):
                return None
            return _SS3_KEYS.get(chr(buf[i + 2]), "unknown"), 3
        return "esc", 1                                    # Alt+key or Esc Esc: Esc now, the rest follows


# ----------------------------------------------------------------------------- key sources
def parse_key_script(text: str, source: str = "script") -> list[tuple[float, str]]:
    """``[(t_s, key), ...]`` from a key script (times from the start, non-decreasing).

    One event per line: ``DELAY KEY [KEY...]`` — wait ``DELAY`` seconds after the previous line, then
    press the keys; ``#`` starts a comment. Keys: one printable character or a name in
    :data:`KEY_NAMES`. Raises ``ValueError`` naming the source, the line and the rule.
    """
    events, t = [], 0.0
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        try:
            delay = float(parts[0])
        except ValueError:
            raise ValueError(f"{source}: line {n}: {raw.strip()!r}: must start with a delay in seconds "
                             f"(e.g. '0.5 w')") from None
        if not (math.isfinite(delay) and delay >= 0):
            raise ValueError(f"{source}: line {n}: delay {parts[0]} must be a finite number of seconds >= 0")
        if len(parts) < 2:
            raise ValueError(f"{source}: line {n}: {raw.strip()!r}: no key after the delay")
        t += delay
        for k in parts[1:]:
            if not ((len(k) == 1 and k.isprintable()) or k.lower() in KEY_NAMES):
                raise ValueError(f"{source}: line {n}: key {k!r}: must be one character or one of "
                                 f"{', '.join(KEY_NAMES)}")
            events.append((t, k if len(k) == 1 else k.lower()))
    return events


class ScriptKeys:
    """Keys from a timed script (:func:`parse_key_script` events) on ``clock``; times count from the
    first :meth:`poll`. :meth:`poll` lets time pass with ``clock.sleep`` (on a simulated clock that
    advances the world)."""

    def __init__(self, events, clock=None):
        self.events = collections.deque(sorted(((float(t), str(k)) for t, k in events), key=lambda e: e[0]))
        self.clock = clock if clock is not None else MonotonicClock()
        self._t0 = math.nan

    @property
    def exhausted(self) -> bool:
        return not self.events

    def next_due_s(self) -> float:
        """Clock time of the next key (``inf`` when the script is done)."""
        if not self.events:
            return math.inf
        t0 = self.clock.now() if math.isnan(self._t0) else self._t0
        return t0 + self.events[0][0]

    def due(self) -> list[str]:
        """The keys whose time has come (without waiting)."""
        now = self.clock.now()
        if math.isnan(self._t0):
            self._t0 = now
        out = []
        while self.events and self._t0 + self.events[0][0] <= now + 1e-9:
            out.append(self.events.popleft()[1])
        return out

    def poll(self, timeout_s: float) -> list[str]:
        keys = self.due()
        if keys:
            return keys
        wait = min(timeout_s, self.next_due_s() - self.clock.now())
        if wait > 0:
            self.clock.sleep(wait)
        return self.due()


class TtyKeys:
    """Keys typed on terminal ``fd`` (put it in a :class:`RawTerminal` first), in real time.

    :meth:`poll` waits with ``select`` for at most ``timeout_s``. A terminal that hangs up (ssh drop,
    window closed) gives the key ``"hangup"``.
    """

    def __init__(self, fd: int, decoder: KeyDecoder | None = None, clock=None):
        self.fd = fd
        self.decoder = decoder if decoder is not None else KeyDecoder()
        self.clock = clock if clock is not None else MonotonicClock()
        self.exhausted = False          # a terminal never runs out (see ``hangup``)

    def poll(self, timeout_s: float) -> list[str]:
        now = self.clock.now()
        wait = max(0.0, min(timeout_s, self.decoder.deadline_s - now))
        try:
            r, _, _ = select.select([self.fd], [], [], wait)
        except InterruptedError:                    # pragma: no cover - PEP 475 retries; a handler may raise
            r = []
        keys: list[str] = []
        if r:
            try:
                data = os.read(self.fd, 1024)
            except BlockingIOError:
                data = None
            except OSError as e:
                if e.errno in (errno.EIO, errno.ENXIO, errno.EBADF):
                    return ["hangup"]
                raise
            if data == b"":
                return ["hangup"]                   # readable and empty: the terminal went away
            if data:
                keys = self.decoder.feed(data, self.clock.now())
        return keys + self.decoder.flush(self.clock.now())


class MergedKeys:
    """Script keys and terminal keys together (a script on the bench, with the keyboard still able
    to stop, e-stop or quit)."""

    def __init__(self, script: ScriptKeys, tty: TtyKeys):
        self.script, self.tty = script, tty

    @property
    def exhausted(self) -> bool:
        return self.script.exhausted

    def poll(self, timeout_s: float) -> list[str]:
        wait = min(timeout_s, max(0.0, self.script.next_due_s() - self.script.clock.now()))
        keys = self.tty.poll(wait)
        return keys + self.script.due()


# ----------------------------------------------------------------------------- the terminal
class Terminated(Exception):
    """Raised in the main thread by SIGTERM / SIGHUP inside :class:`TerminateOnSignals` (and so inside a
    :class:`RawTerminal`), so every ``finally`` (stop the rover, restore the terminal) runs."""

    def __init__(self, signum: int):
        super().__init__(f"terminated by {signal.Signals(signum).name}")
        self.signum = int(signum)


class TerminateOnSignals:
    """Turns SIGTERM and SIGHUP into :class:`Terminated` while active (main thread only; elsewhere it
    does nothing). A second signal during the shutdown is ignored, so it cannot cut the stop short.
    The previous handlers are restored at exit."""

    SIGNALS = (signal.SIGTERM, signal.SIGHUP)

    def __init__(self):
        self._old: dict = {}
        self._fired = False

    def __enter__(self) -> "TerminateOnSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for sig, h in self._old.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(sig, h if h is not None else signal.SIG_DFL)
        self._old.clear()

    def _handler(self, signum, frame):
        if self._fired:
            log.warning("%s during shutdown ignored", signal.Signals(signum).name)
            return
        self._fired = True
        raise Terminated(signum)


class RawTerminal:
    """Puts terminal ``fd`` in a key-at-a-time mode and restores it on every way out.

    No echo, no line buffering, no signal keys (Ctrl-C, Ctrl-Z and Ctrl-\\ arrive as keys: the session
    decides what they do, and Ctrl-Z cannot freeze the process with the rover armed), no XON/XOFF flow
    control (Ctrl-S cannot block the panel's output); output processing stays on so ``\\n`` still
    returns the carriage. Keys typed before :meth:`__enter__` are discarded (they must not drive the
    rover), and so are keys left unread at exit (they must not reach the shell).

    It also turns SIGTERM and SIGHUP into :class:`Terminated` (:class:`TerminateOnSignals`) and, in the
    main thread, re-applies the mode after SIGCONT (a shell that resumed a stopped job may have reset
    the terminal). Only SIGKILL leaves the terminal raw (``stty sane`` repairs it).

    Parameters
    ----------
    fd : int
        A terminal file descriptor (``sys.stdin.fileno()``).
    out : text stream, optional
        Where the cursor is hidden on entry and shown again at exit (skipped if not a terminal).
    """

    def __init__(self, fd: int, out=None):
        import termios

        self._termios = termios
        if not os.isatty(fd):
            raise ValueError(f"fd {fd} is not a terminal")
        self.fd = fd
        self.out = out
        self._saved = None
        self._raw = None
        self._signals = TerminateOnSignals()
        self._old_cont = None

    def raw_attrs(self, attrs: list) -> list:
        """``attrs`` (as from ``termios.tcgetattr``) changed to the key-at-a-time mode."""
        t = self._termios
        a = [list(x) if isinstance(x, list) else x for x in attrs]
        a[0] &= ~(t.IXON | t.IXOFF | t.ISTRIP | t.INLCR | t.IGNCR)            # iflag
        a[3] &= ~(t.ICANON | t.ECHO | t.ECHONL | t.ISIG | t.IEXTEN)         # lflag
        a[6][t.VMIN] = 0                                                       # reads never block:
        a[6][t.VTIME] = 0                                                      # select() does the waiting
        return a

    def __enter__(self) -> "RawTerminal":
        t = self._termios
        self._saved = t.tcgetattr(self.fd)
        self._raw = self.raw_attrs(self._saved)
        try:
            self._signals.__enter__()
            if threading.current_thread() is threading.main_thread():
                self._old_cont = signal.signal(signal.SIGCONT, self._on_continue)
            t.tcsetattr(self.fd, t.TCSAFLUSH, self._raw)
            self._cursor(False)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        t = self._termios
        try:
            if self._saved is not None:
                with contextlib.suppress(t.error, OSError):
                    t.tcsetattr(self.fd, t.TCSAFLUSH, self._saved)
            self._cursor(True)
        finally:
            if self._old_cont is not None:
                with contextlib.suppress(ValueError, TypeError):
                    signal.signal(signal.SIGCONT, self._old_cont)
                self._old_cont = None
            self._signals.__exit__(None, None, None)

    def _cursor(self, show: bool) -> None:
        out = self.out
        if out is None:
            return
        try:
            if out.isatty():
                out.write("\x1b[?25h" if show else "\x1b[?25l")
                out.flush()
        except (OSError, ValueError):
            pass

    def _on_continue(self, signum, frame):
        with contextlib.suppress(self._termios.error, OSError):
            self._termios.tcsetattr(self.fd, self._termios.TCSANOW, self._raw)


# ----------------------------------------------------------------------------- setpoints
def clamp_twist(layout, vx_mps: float, wz_radps: float) -> tuple[float, float, str]:
    """The twist nearest ``(vx, wz)`` that ``layout`` accepts, and what limited it (``""`` if nothing).

    The speed and the yaw rate are clipped to their limits; a turn tighter than
    ``min_turning_radius_m`` keeps the speed and reduces the yaw rate to ``|vx| / R``; a point turn
    (``vx == 0``) a rover cannot do gets no yaw rate. The result is checked with
    ``layout.check_twist``; if a limit it knows of is still broken (a steering limit), the yaw rate
    and then the speed are scaled down by bisection until it passes — zero in the worst case.
    """
    why = []
    vx, wz = float(vx_mps), float(wz_radps)
    if not (math.isfinite(vx) and math.isfinite(wz)):
        return 0.0, 0.0, "not finite"
    vmax, wmax = layout.max_speed_mps, layout.max_yaw_rate_radps
    if abs(vx) > vmax:
        vx, _ = math.copysign(vmax, vx), why.append("max speed")
    if abs(wz) > wmax:
        wz, _ = math.copysign(wmax, wz), why.append("max yaw rate")
    r = layout.min_turning_radius_m
    if wz != 0.0 and r > 0:
        if vx == 0.0:
            if not layout.can_point_turn:
                wz, _ = 0.0, why.append("no point turns")
        elif abs(vx / wz) < r:
            wz, _ = math.copysign(abs(vx) / r, wz), why.append(f"min turning radius {r:g} m")
    if _valid(layout, vx, wz):
        return vx, wz, ", ".join(why)
    why.append("steering limit")                    # a limit only check_twist knows: shrink yaw, then speed
    if _valid(layout, vx, 0.0):
        f = _bisect(lambda f: _valid(layout, vx, wz * f))
        return vx, wz * f, ", ".join(why)
    f = _bisect(lambda f: _valid(layout, vx * f, 0.0))
    return vx * f, 0.0, ", ".join(why)


def _bisect(ok) -> float:
    """Largest ``f`` in [0, 1] (to 1e-9) with ``ok(f)``, given ``ok(0)`` and not ``ok(1)``."""
    lo, hi = 0.0, 1.0
    for _ in range(32):
        mid = 0.5 * (lo + hi)
        if ok(mid):
            lo = mid
        else:
            hi = mid
    return lo


def _valid(layout, vx, wz) -> bool:
    try:
        layout.check_twist(vx, wz)
    except CommandOutOfRange:
        return False
    return True


# ----------------------------------------------------------------------------- the session
_STEP_KEYS = {"w": (1, 0), "up": (1, 0), "s": (-1, 0), "down": (-1, 0),
              "a": (0, 1), "left": (0, 1), "d": (0, -1), "right": (0, -1)}
_QUIT_KEYS = {"q", "ctrl-c", "ctrl-d", "hangup"}
_ESTOP_KEYS = {"e", "esc"}


@dataclass
class _Shown:
    """What the panel shows besides telemetry (a snapshot of the session)."""
    title: str
    t_s: float
    state: str
    vx_mps: float
    wz_radps: float
    limited: str
    sent_age_s: float
    deadman_s: float
    key_age_s: float
    prompt: str
    messages: list
    tel: object
    tel_age_s: float
    tel_error: str
    layout: object


class Teleop:
    """One teleop session on an open rover.

    Parameters
    ----------
    rover : drivers.base.Rover
        Open (not necessarily armed). The session ends with stop, disarm and close.
    keys : key source
        Anything with ``poll(timeout_s) -> list[str]`` and ``exhausted`` (:class:`TtyKeys`,
        :class:`ScriptKeys`, :class:`MergedKeys`).
    out : text stream
        Where the panel goes (see ``ansi``).
    arm : bool
        Arm at once (``--yes``); otherwise the session starts with the arm prompt (press ``y``).
    title : str
        First line of the panel (port, protocol, profile) and of the arm prompt.
    deadman_s : float
        Longest time without any key while the setpoint is not zero (0 = off). See :data:`HELP`.
    speed_step_mps, yaw_step_radps : float, optional
        Setpoint steps (default 1/10 of the layout's limits).
    step_interval_s : float
        At most one step per key per this interval (auto-repeat ramps at a known rate).
    send_period_s : float
        Resend period of a non-zero setpoint (default 0.1 s, capped at half the driver's
        ``command_timeout_s`` when it has one).
    draw_period_s, tel_period_s : float
        Panel refresh (5 Hz) and telemetry read (10 Hz) periods.
    duration_s : float, optional
        End the session after this long.
    end_when_keys_exhausted : bool
        End when a script runs out of keys (default True).
    ansi : bool
        Draw the panel in place with ANSI codes; otherwise print a status line each second and
        every message as a line.
    on_tick : callable, optional
        Called every loop iteration (a harness spins a non-threaded driver here).
    tick_s : float
        Longest wait for keys between two looks at the clock.
    clock : Clock, optional
        Default: the rover's clock.
    log_messages : deque, optional
        Log lines captured for the panel (the CLI points the logging handler at it).
    """

    def __init__(self, rover, keys, out, *, arm: bool = False, title: str = "", deadman_s: float = 1.0,
                 speed_step_mps: float | None = None, yaw_step_radps: float | None = None,
                 step_interval_s: float = 0.1, send_period_s: float = 0.1, draw_period_s: float = 0.2,
                 tel_period_s: float = 0.1, duration_s: float | None = None, end_when_keys_exhausted: bool = True,
                 ansi: bool = False, on_tick=None, tick_s: float = 0.02, clock=None, log_messages=None):
        lay = rover.layout
        for nm, v in (("deadman_s", deadman_s), ("step_interval_s", step_interval_s)):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{nm} = {v!r}: must be a finite number of seconds >= 0")
        for nm, v in (("send_period_s", send_period_s), ("draw_period_s", draw_period_s),
                      ("tel_period_s", tel_period_s), ("tick_s", tick_s)):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{nm} = {v!r}: must be a finite number of seconds > 0")
        if duration_s is not None and not (math.isfinite(duration_s) and duration_s > 0):
            raise ValueError(f"duration_s = {duration_s!r}: must be > 0 seconds")
        sv = lay.max_speed_mps / 10 if speed_step_mps is None else float(speed_step_mps)
        sw = lay.max_yaw_rate_radps / 10 if yaw_step_radps is None else float(yaw_step_radps)
        if not (math.isfinite(sv) and 0 < sv <= lay.max_speed_mps):
            raise ValueError(f"speed step = {sv!r} m/s: must be in (0, max_speed_mps {lay.max_speed_mps:g}]")
        if not (math.isfinite(sw) and 0 < sw <= lay.max_yaw_rate_radps):
            raise ValueError(f"yaw step = {math.degrees(sw)!r} deg/s: must be in (0, max yaw rate "
                             f"{math.degrees(lay.max_yaw_rate_radps):g} deg/s]")
        cto = getattr(rover, "command_timeout_s", None)
        if isinstance(cto, (int, float)) and math.isfinite(cto) and cto > 0:
            send_period_s = min(send_period_s, 0.5 * cto)
        self.rover = rover
        self.layout = lay
        self.keys = keys
        self.out = out
        self.clock = clock if clock is not None else rover.clock
        self.title = title or f"rover drive: {rover.name}"
        self.arm_at_start = bool(arm)
        self.deadman_s = float(deadman_s)
        self.speed_step_mps, self.yaw_step_radps = sv, sw
        self.step_interval_s = float(step_interval_s)
        self.send_period_s = float(send_period_s)
        self.draw_period_s = float(draw_period_s)
        self.tel_period_s = float(tel_period_s)
        self.duration_s = duration_s
        self.end_when_keys_exhausted = bool(end_when_keys_exhausted)
        self.on_tick = on_tick
        self.tick_s = float(tick_s)
        self.panel = PanelWriter(out, ansi=ansi)
        self.log_messages = log_messages
        # state
        self.vx_mps = 0.0
        self.wz_radps = 0.0
        self.limited = ""
        self.confirm: str | None = None
        self.messages: collections.deque = collections.deque(maxlen=5)
        self.tel = None
        self.tel_error = ""
        self.end_reason: str | None = None
        self.commands_sent = 0
        self.arm_failed_at_start = ""            # why arming at start (``arm=True``) failed, if it did
        self.shutdown_problems: list[str] = []   # what failed in the final stop / disarm / close
        self._moving = False                 # a non-zero command went out since the last stop
        self._last_key_s = -math.inf
        self._last_step: dict = {}
        self._last_sent_s = -math.inf
        self._next_send = -math.inf
        self._prev_faults = Fault.NONE
        self._was_armed = False
        self._t0 = math.nan

    # ------------------------------------------------------------------ public
    @property
    def setpoint(self) -> tuple[float, float]:
        """Current setpoint ``(vx_mps, wz_radps)`` (already within the rover's limits)."""
        return self.vx_mps, self.wz_radps

    def run(self) -> str:
        """Run until quit, hangup, ``duration_s`` or the end of a script; always ends with stop, disarm
        and close (also when an exception, such as :class:`Terminated`, ends it). Returns why it ended."""
        try:
            self._t0 = self.clock.now()
            self._last_key_s = self._t0
            if self.arm_at_start:
                self.arm_failed_at_start = self._arm()
            else:
                self.confirm = "arm"
                self._msg(f"ARM? {self.title} - press y to arm, any other key to stay disarmed (monitor only)")
            self._read_telemetry()
            next_tel = next_draw = self._t0
            while self.end_reason is None:
                now = self.clock.now()
                wake = min(self._next_send if self._moving else math.inf, next_tel, next_draw, self._deadman_at(),
                           self._t0 + self.duration_s if self.duration_s else math.inf)
                for k in self.keys.poll(max(0.0, min(self.tick_s, wake - now))):
                    self.handle_key(k)
                    if self.end_reason is not None:
                        break
                if self.end_reason is not None:
                    break
                if self.on_tick is not None:
                    self.on_tick()
                now = self.clock.now() + _EPS_S         # due within a microsecond is due (float sums)
                if now >= next_tel:
                    self._read_telemetry()
                    next_tel = max(next_tel + self.tel_period_s, now)
                now = self.clock.now() + _EPS_S
                if self.deadman_s > 0 and (self.vx_mps or self.wz_radps) and now >= self._deadman_at():
                    self._zero(f"deadman: no key for {now - self._last_key_s:.1f} s (> {self.deadman_s:g} s): "
                               f"stopped; hold a key to keep driving")
                if self._moving and now >= self._next_send:
                    self._send()                        # resend: keeps the driver's watchdog fed
                if now >= next_draw:
                    self.draw()
                    next_draw = max(next_draw + self.draw_period_s, now)
                if self.duration_s and now - self._t0 >= self.duration_s:
                    self.end_reason = f"duration {self.duration_s:g} s reached"
                elif self.end_when_keys_exhausted and getattr(self.keys, "exhausted", False):
                    self.end_reason = "end of the key script"
        finally:
            self._shutdown()
        return self.end_reason

    def handle_key(self, key: str) -> None:
        """Act on one key (see :data:`HELP`)."""
        now = self.clock.now()
        if key == "hangup":
            self.end_reason = "the terminal hung up"
            return
        self._last_key_s = now
        k = key.lower() if len(key) == 1 else key
        if self.confirm is not None:
            what, self.confirm = self.confirm, None
            if k == "y":
                self._arm()
                return
            self._msg(f"{what} cancelled: not armed (r to arm)")
            if k in ("n", "enter"):
                return
        if k in _QUIT_KEYS:
            self.end_reason = "quit" if k == "q" else f"quit ({k})"
        elif k in _ESTOP_KEYS:
            self._estop()
        elif k == "space":
            self._zero("stop (space)", force=True)
        elif k == "r":
            if self.rover.armed:
                self._msg("already armed")
            else:
                self.confirm = "arm"
                self._msg(f"ARM {self.title}? press y to confirm, any other key cancels")
        elif k in _STEP_KEYS:
            self._step(k, now)

    def draw(self) -> None:
        now = self.clock.now()
        tel = self.tel
        shown = _Shown(title=self.title, t_s=now - self._t0, state=self._state_text(), vx_mps=self.vx_mps,
                       wz_radps=self.wz_radps, limited=self.limited, sent_age_s=now - self._last_sent_s,
                       deadman_s=self.deadman_s, key_age_s=now - self._last_key_s,
                       prompt="ARM? press y to confirm, any other key cancels" if self.confirm else "",
                       messages=self._all_messages(), tel=tel,
                       tel_age_s=(self.rover.clock.now() - tel.t_s) if tel is not None else math.nan,
                       tel_error=self.tel_error, layout=self.layout)
        self.panel.draw(render_panel(shown), shown)

    # ------------------------------------------------------------------ actions
    def _arm(self) -> str:
        """Arm; returns "" or why it failed (also shown)."""
        self._set(0.0, 0.0, "")
        self._moving = False
        try:
            self.rover.arm()
        except DriverError as e:
            self._msg(f"arm failed: {e}")
            return str(e)
        self._was_armed = True
        self._msg(f"armed: {self.title}")
        return ""

    def _estop(self) -> None:
        self._set(0.0, 0.0, "")
        self._moving = False
        try:
            self.rover.estop()
        except DriverError as e:
            self._msg(f"E-STOP: {e} (rover treated as stopped)")
        else:
            self._msg("E-STOP latched: rover stopped and disarmed; r then y to re-arm")
        self._was_armed = False

    def _zero(self, why: str, force: bool = False) -> None:
        """Setpoint to zero and zero on the wire (if anything was sent, or ``force``)."""
        had = bool(self.vx_mps or self.wz_radps)
        self._set(0.0, 0.0, "")
        if self._moving or force:
            self._moving = False
            try:
                self.rover.stop()
            except DriverError as e:
                self._msg(f"stop: {e}")
        if (had or force) and why:
            self._msg(why)

    def _step(self, k: str, now: float) -> None:
        rv = self.rover
        if not rv.armed:
            self._msg("E-STOP latched: r then y to re-arm" if rv.estopped else "not armed: r then y to arm")
            return
        blocking = self._blocking_faults()
        if blocking:                                    # the cached telemetry may be stale: look again
            self._read_telemetry()
            blocking = self._blocking_faults()
        if blocking:
            self._msg(f"{blocking.describe()}: motion keys ignored until it clears")
            return
        dv, dw = _STEP_KEYS[k]
        axis = (dv, dw)
        if now - self._last_step.get(axis, -math.inf) < self.step_interval_s:
            return                                      # auto-repeat faster than the step rate
        self._last_step[axis] = now
        vx = _snap(self.vx_mps + dv * self.speed_step_mps, self.speed_step_mps)
        wz = _snap(self.wz_radps + dw * self.yaw_step_radps, self.yaw_step_radps)
        vx, wz, why = clamp_twist(self.layout, vx, wz)
        self._set(vx, wz, why)
        if vx == 0.0 and wz == 0.0:
            self._zero("setpoint zero: stopped")
        else:
            self._send()

    def _set(self, vx: float, wz: float, why: str) -> None:
        self.vx_mps, self.wz_radps, self.limited = vx, wz, why

    def _send(self) -> None:
        vx, wz = self.vx_mps, self.wz_radps
        if vx == 0.0 and wz == 0.0:
            return
        try:
            self.rover.set_twist(vx, wz)
        except EStopActive as e:
            self._set(0.0, 0.0, "")
            self._moving = False
            self._msg(f"{e}")
            return
        except NotArmed as e:
            self._set(0.0, 0.0, "")
            self._moving = False
            self._msg(f"not armed ({e}); r then y to arm")
            return
        except DriverError as e:                         # link lost, closed, range: stop and show
            self._zero(f"command failed, stopped: {e}", force=True)
            return
        self._moving = True
        self._last_sent_s = self.clock.now()
        self._next_send = self._last_sent_s + self.send_period_s
        self.commands_sent += 1

    # ------------------------------------------------------------------ telemetry and faults
    def _read_telemetry(self) -> None:
        try:
            tel = self.rover.read_telemetry()
        except DriverError as e:
            if not self.tel_error:
                self._msg(f"telemetry: {e}")
            self.tel_error = str(e)
            if self.vx_mps or self.wz_radps:
                self._zero("no telemetry: stopped")
            return
        self.tel, self.tel_error = tel, ""
        f = tel.faults
        new = f & ~self._prev_faults
        gone = self._prev_faults & ~f
        self._prev_faults = f
        blocking = f & STOPPING_FAULTS
        if new & Fault.LINK_LOST:
            self._zero("")                               # quietly: the next message says why
            reason = tel.extra.get("link_reason", "") if isinstance(tel.extra, dict) else ""
            self._msg(f"LINK LOST{': ' + reason if reason else ''}; rover treated as stopped")
        elif blocking and (self.vx_mps or self.wz_radps or self._moving):
            self._zero(f"{blocking.describe().upper()}: stopped; drive again with fresh keys once it clears")
        if gone & Fault.LINK_LOST:
            self._msg("link restored: setpoint is zero, drive with fresh keys")
        if new & Fault.WATCHDOG and (self.vx_mps or self.wz_radps):
            self._zero("the driver's watchdog stopped the rover (commands came too late): setpoint zeroed")
        if self._was_armed and not self.rover.armed:
            self._was_armed = False
            self._set(0.0, 0.0, "")
            self._moving = False
            self._msg("the rover disarmed: r then y to re-arm")

    def _blocking_faults(self) -> Fault:
        tel = self.tel
        return (tel.faults & STOPPING_FAULTS) if tel is not None else Fault.NONE

    def _deadman_at(self) -> float:
        if self.deadman_s <= 0 or not (self.vx_mps or self.wz_radps):
            return math.inf
        return self._last_key_s + self.deadman_s

    def _state_text(self) -> str:
        rv = self.rover
        if rv.closed:
            return "CLOSED"
        if rv.estopped:
            return "E-STOP"
        return "ARMED" if rv.armed else "DISARMED"

    def _msg(self, text: str) -> None:
        t = self.clock.now() - self._t0 if math.isfinite(self._t0) else 0.0
        if self.messages and self.messages[-1][1] == text:     # a held key repeating the same complaint
            self.messages[-1] = (t, text)
            return
        self.messages.append((t, text))
        self.panel.message(t, text)

    def _all_messages(self) -> list:
        msgs = [f"{t:7.1f} s  {m}" for t, m in self.messages]
        if self.log_messages:
            msgs += [f"    log  {m}" for m in list(self.log_messages)[-2:]]
        return msgs[-5:]

    # ------------------------------------------------------------------ the end
    def _shutdown(self) -> None:
        """Stop, disarm, close: each step tried even if an earlier one failed."""
        rv = self.rover
        self._set(0.0, 0.0, "")
        self._moving = False
        if not rv.closed and rv.is_open:
            for what, fn in (("stop", rv.stop), ("disarm", rv.disarm)):
                try:
                    fn()
                except DriverError as e:
                    log.warning("%s: %s on exit failed: %s", rv.name, what, e)
                    self.shutdown_problems.append(f"{what} failed: {e}")
        try:
            rv.close()
        except DriverError as e:                        # pragma: no cover - close swallows driver errors
            log.warning("%s: close failed: %s", rv.name, e)
            self.shutdown_problems.append(f"close failed: {e}")
        if self.end_reason is None:
            self.end_reason = "interrupted"
        try:
            self.draw()
            self.panel.finish()
        except Exception:                               # the panel must never hide the shutdown
            log.debug("final panel draw failed", exc_info=True)


def _snap(v: float, step: float) -> float:
    """Round to the step grid (repeated steps do not accumulate float error; zero is exactly zero)."""
    n = round(v / step)
    return n * step if abs(v - n * step) < 1e-6 * step else v


# ----------------------------------------------------------------------------- the panel
def _fmt(v, spec: str, unknown: str = "-") -> str:
    try:
        return format(v, spec) if math.isfinite(v) else unknown
    except (TypeError, ValueError):
        return unknown


def _short(name: str) -> str:
    parts = [p for p in str(name).split("_") if p]
    return "".join(p[0].upper() if not p.isdigit() else p for p in parts) or str(name)


def _wheel_names(layout) -> list[str]:
    short = [_short(n) for n in layout.names]
    return short if len(set(short)) == len(short) else [str(n)[:7] for n in layout.names]


def render_panel(s: _Shown) -> list[tuple[str, str]]:
    """The panel as ``(style, text)`` lines; style ``""``, ``"bold"``, ``"alert"`` (red, reverse)
    or ``"warn"``."""
    lines: list[tuple[str, str]] = []
    add = lambda text, style="": lines.append((style, text))  # noqa: E731
    tel = s.tel
    add(f"{s.title}   t = {s.t_s:.1f} s", "bold")
    faults = tel.faults if tel is not None else Fault.NONE
    state_style = "alert" if s.state in ("E-STOP", "CLOSED") else ("bold" if s.state == "ARMED" else "warn")
    dm = (f"deadman {s.deadman_s:g} s (last key {s.key_age_s:.1f} s ago)" if s.deadman_s > 0
          else "deadman OFF (setpoints latch)")
    add(f"STATE     {s.state}    {dm}", state_style)
    if s.prompt:
        add(f">>> {s.prompt}", "alert")
    lim = f"   [limited: {s.limited}]" if s.limited else ""
    lay = s.layout
    sent = f"sent {s.sent_age_s:.2f} s ago" if math.isfinite(s.sent_age_s) else "nothing sent yet"
    add(f"SETPOINT  vx {s.vx_mps:+.3f} m/s (max {lay.max_speed_mps:g})   wz {math.degrees(s.wz_radps):+6.1f} deg/s "
        f"(max {math.degrees(lay.max_yaw_rate_radps):g})   {sent}{lim}")
    if faults & STOPPING_FAULTS or faults & Fault.WATCHDOG:
        add(f"!!! {faults.describe().upper()} !!!", "alert")
    if tel is None:
        add(f"TELEMETRY none yet{': ' + s.tel_error if s.tel_error else ''}", "warn")
    else:
        names = _wheel_names(lay)
        add("WHEEL     " + "".join(f"{n:>9}" for n in names))
        add("speed r/s " + "".join(f"{_fmt(v, '+9.2f', '        ?'):>9}" for v in tel.wheel_speed_radps))
        add("steer deg " + "".join(f"{_fmt(math.degrees(v) if math.isfinite(v) else v, '+9.1f', '        ?'):>9}"
                                   for v in tel.steer_rad))
        add("encoder   " + "".join(f"{int(c):>9d}" for c in tel.encoder_counts))
        add("current A " + "".join(f"{_fmt(v, '9.2f', '        ?'):>9}" for v in tel.motor_current_a))
        b = tel.battery
        if b is None:
            add("BATTERY   -")
        else:
            soc = b.state_of_charge
            add(f"BATTERY   {_fmt(b.voltage_v, '.2f')} V   SoC {_fmt(100 * soc if math.isfinite(soc) else soc, '.0f')} %"
                f"   {_fmt(b.current_a, '.2f')} A", "warn" if faults & Fault.BATTERY_LOW else "")
        imu = tel.imu
        if imu is None:
            add("IMU       -")
        else:
            g = [math.degrees(v) for v in imu.gyro_radps]
            add("IMU       gyro " + " ".join(_fmt(v, "+7.2f") for v in g) + " deg/s   accel "
                + " ".join(_fmt(float(v), "+6.2f") for v in imu.accel_mps2) + " m/s2")
        if math.isfinite(tel.heading_rad):
            add(f"HEADING   {math.degrees(tel.heading_rad):.1f} deg")
        style = "alert" if faults & (STOPPING_FAULTS | Fault.WATCHDOG) else ("warn" if faults else "")
        add(f"FAULTS    {faults.describe().upper() if faults else 'none'}   (telemetry armed={tel.armed})", style)
        extra = tel.extra if isinstance(tel.extra, dict) else {}
        link = extra.get("link")
        if isinstance(link, dict) and link:
            known = [(k, short) for k, short in _LINK_KEYS if k in link]
            if not known:
                known = [(k, k) for k in list(link)[:6]]
            add("LINK      " + "  ".join(f"{short} {link[k]}" for k, short in known))
        if extra.get("link_reason"):
            add(f"          link: {extra['link_reason']}", "alert" if faults & Fault.LINK_LOST else "")
        age = s.tel_age_s
        add(f"TELEMETRY seq {tel.seq}   age {_fmt(age, '.2f')} s" + (f"   ({s.tel_error})" if s.tel_error else ""),
            "warn" if not (age < 0.5) or s.tel_error else "")
    for m in s.messages:
        add(m)
    add("keys: w/s or up/down speed, a/d or left/right turn, space stop, e/Esc E-STOP, r arm, q quit, "
        "h hold")
    return lines


_LINK_KEYS = (("polls", "polls"), ("failed_polls", "failed"), ("timeouts", "timeouts"), ("crc_errors", "crc"),
              ("link_losses", "losses"), ("reconnects", "reconnects"), ("dropped_commands", "dropped"))
_STYLES = {"": "", "bold": "\x1b[1m", "warn": "\x1b[33m", "alert": "\x1b[1;7;31m"}


class PanelWriter:
    """Draws panel lines on ``out``: in place with ANSI codes (``ansi=True``), or — for pipes and CI
    logs — one status line per second plus every message as it happens."""

    def __init__(self, out, *, ansi: bool, plain_period_s: float = 1.0):
        self.out = out
        self.ansi = bool(ansi)
        self.plain_period_s = plain_period_s
        self._height = 0
        self._last_plain = -math.inf

    def _write(self, text: str) -> None:
        try:
            self.out.write(text)
            self.out.flush()
        except (OSError, ValueError):       # a closed or broken output must not stop the session
            pass

    def message(self, t_s: float, text: str) -> None:
        if not self.ansi:
            self._write(f"[{t_s:7.2f} s] {text}\n")

    def draw(self, lines, shown) -> None:
        if self.ansi:
            size = shutil.get_terminal_size((100, 30))
            cols, rows = max(20, size.columns - 1), max(5, size.lines - 1)
            lines = list(lines)[:rows]                 # never scroll: the cursor-up below must land on line 1
            buf = ["\r" + (f"\x1b[{self._height}A" if self._height else "")]
            for style, text in lines:
                code = _STYLES.get(style, "")
                buf.append(f"{code}{text[:cols]}{chr(27) + '[0m' if code else ''}\x1b[K\n")
            buf.append("\x1b[J")
            self._height = len(lines)
            self._write("".join(buf))
            return
        if shown.t_s - self._last_plain < self.plain_period_s:
            return
        self._last_plain = shown.t_s
        tel = shown.tel
        if tel is None:
            desc = "no telemetry"
        else:
            sp = " ".join(_fmt(v, "+.2f", "?") for v in tel.wheel_speed_radps)
            desc = (f"wheels [{sp}] rad/s  faults {tel.faults.describe()}  seq {tel.seq}  "
                    f"age {_fmt(shown.tel_age_s, '.2f')} s")
        self._write(f"[{shown.t_s:7.2f} s] {shown.state} vx {shown.vx_mps:+.3f} m/s "
                    f"wz {math.degrees(shown.wz_radps):+.1f} deg/s  {desc}\n")

    def finish(self) -> None:
        if self.ansi:
            self._write("\x1b[0m")
