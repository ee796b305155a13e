"""``sim://NAME``: a pyserial port that reaches a virtual device registered in this process.

pyserial resolves ``serial_for_url("sim://NAME")`` by importing ``protocol_sim`` from the packages in
``serial.protocol_handler_packages``; importing :mod:`sim.devices` appends ``"sim.devices"`` there, and
:mod:`sim.devices.protocol_sim` hands pyserial :class:`SimSerial`. Drivers see an ordinary port.

Registry
--------
:func:`register` puts a :class:`~sim.devices.faults.VirtualLink` under a name (and optional aliases, the
``/dev/serial/by-id`` links of this world); :func:`unplug` makes it vanish (open handles fail the way a
pulled USB adapter does: reads raise ``SerialException("device reports readiness to read but returned
no data …")``, writes ``"write failed: [Errno 5] Input/output error"``), :func:`replug` brings it back,
under a new name by default, with the aliases moved along. A :class:`~sim.devices.faults.Disconnect`
fault in the link's injector does the same on its schedule. Exclusive opens are honoured like
``flock``: a second ``exclusive=True`` open fails with ``"Could not exclusively lock port …"``.

Time: who moves the clock
-------------------------
The device answers *immediately in simulated time*: a ``write()`` is processed at ``clock.now()`` and
the replies are stamped ``now + wire time`` (+ injected latency). What a ``read()`` with a timeout does
while it waits depends on the registration's ``time`` mode:

``"step"`` (default) — **the reader moves time**: the read calls ``clock.sleep()`` (for a
:class:`~sim.world.SimClock` that is ``world.advance``) up to the next delivery or the timeout. Meant
for a driver that runs single-threaded on the simulated clock (``RoboClawRover(threaded=False)``, the
harness calling ``spin_once()`` and ``poll_watchdog()``, :func:`sim.devices.run_stepped`): fully
deterministic, and a transaction takes the simulated time it would take on the wire. Never share a
step-mode port between threads.

``"follow"`` — **someone else moves time** (a :class:`sim.devices.pty.WorldPacer` thread advancing the
world in real time, or a harness); the read waits in real time, polling, until the device's bytes are
due on the clock or the timeout passes on that clock (capped at ``2 × timeout + 50 ms`` of real time
so a paused world cannot hang a driver). For threaded drivers on ``sim://``.

A ``timeout=None`` (blocking) read waits at most 1 s of clock time here, never forever.
"""
from __future__ import annotations

import errno
import fnmatch
import threading
import time
import urllib.parse
from dataclasses import dataclass, field

from serial.serialutil import PortNotOpenError, SerialBase, SerialException, to_bytes

__all__ = ["SimSerial", "register", "unregister", "unplug", "replug", "urls", "lookup", "resolve", "alias"]

_VANISHED_READ = ("device reports readiness to read but returned no data (device disconnected or multiple access "
                  "on port?)")
_VANISHED_WRITE = "write failed: [Errno 5] Input/output error"
_MODES = ("step", "follow")


@dataclass(eq=False)
class _Entry:
    name: str
    link: object
    clock: object
    mode: str
    aliases: set = field(default_factory=set)
    base: str = ""
    generation: int = 0
    online: bool = True
    replugs: int = 0
    exclusive_owner: object = None
    handles: set = field(default_factory=set)
    fault_unplugged: object = None          # the Disconnect fault that took it offline


_LOCK = threading.RLock()
_ENTRIES: dict[str, _Entry] = {}          # online entries by current name
_ALIASES: dict[str, _Entry] = {}
_SCRIPTED: list[_Entry] = []              # entries whose link has an injector (Disconnect faults)


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not name or any(ch in name for ch in "/?#") or name != name.strip():
        raise ValueError(f"sim device name = {name!r}: must be a non-empty str without '/', '?', '#' or spaces")
    return name


def register(name: str, link, *, clock=None, time: str = "step", aliases=(), replace: bool = False) -> str:
    """Make ``link`` reachable as ``sim://name`` (and ``sim://alias``); returns the URL.

    Parameters
    ----------
    link : sim.devices.faults.VirtualLink
    clock : Clock
        Time base of reads and writes (default ``link.clock``).
    time : str
        ``"step"`` or ``"follow"`` (see the module docstring).
    aliases : iterable of str
        Stable names that follow the device across :func:`replug` (like ``/dev/serial/by-id`` links).
    replace : bool
        Replace an existing registration of that name (its open handles then fail as unplugged).
    """
    _check_name(name)
    if time not in _MODES:
        raise ValueError(f"time = {time!r}: must be one of {', '.join(_MODES)}")
    if not callable(getattr(link, "host_write", None)):
        raise TypeError(f"link must be a sim.devices.faults.VirtualLink, got {type(link).__name__}")
    with _LOCK:
        for n in (name, *aliases):
            old = _ENTRIES.get(n) or _ALIASES.get(n)
            if old is not None:
                if not replace:
                    raise ValueError(f"sim://{n} is already registered; unregister it or pass replace=True")
                _take_offline(old)
        e = _Entry(name, link, clock if clock is not None else link.clock, time, set(aliases), base=name)
        _ENTRIES[name] = e
        for a in e.aliases:
            _check_name(a)
            _ALIASES[a] = e
        if getattr(link, "injector", None) is not None:
            _SCRIPTED.append(e)
        return f"sim://{name}"


def alias(name: str, target: str) -> None:
    """Point the alias ``name`` at the registered device ``target``."""
    _check_name(name)
    with _LOCK:
        e = _resolve(target)
        if e is None:
            raise ValueError(f"sim://{target}: not registered")
        e.aliases.add(name)
        _ALIASES[name] = e


def _take_offline(e: _Entry) -> None:
    e.online = False
    e.generation += 1
    e.exclusive_owner = None
    if _ENTRIES.get(e.name) is e:
        del _ENTRIES[e.name]
    for a in e.aliases:
        if _ALIASES.get(a) is e:
            del _ALIASES[a]
    reset = getattr(e.link, "reset", None)
    if callable(reset):
        reset()


def unregister(name: str) -> None:
    """Remove a device (open handles fail as unplugged). Unknown names are ignored."""
    with _LOCK:
        e = _resolve(name)
        if e is not None:
            _take_offline(e)
        if e in _SCRIPTED:
            _SCRIPTED.remove(e)


def unplug(name: str) -> None:
    """Pull the virtual USB cable: the name and its aliases vanish, open handles fail on their next I/O."""
    with _LOCK:
        e = _resolve(name)
        if e is None:
            raise ValueError(f"sim://{name}: not registered (or already unplugged)")
        _take_offline(e)
        e.fault_unplugged = None
        _OFFLINE[e.base] = e


_OFFLINE: dict[str, _Entry] = {}


def replug(name: str, *, new_name: str | None = None, same_name: bool = False) -> str:
    """Plug an unplugged device back in, by default under a new name (``base~N``, as a re-enumerated
    USB adapter gets a new ttyUSB number); aliases follow it. Returns the new URL."""
    with _LOCK:
        e = _OFFLINE.pop(name, None)
        if e is None:
            e = next((x for x in _OFFLINE.values() if x.name == name), None)
            if e is None:
                raise ValueError(f"sim://{name}: not unplugged")
            del _OFFLINE[e.base]
        _plug(e, new_name, same_name)
        return f"sim://{e.name}"


def _plug(e: _Entry, new_name: str | None, same_name: bool) -> None:
    e.replugs += 1
    if new_name is not None:
        e.name = _check_name(new_name)
    elif not same_name:
        e.name = f"{e.base}~{e.replugs}"
    if e.name in _ENTRIES:
        raise ValueError(f"sim://{e.name} is already registered")
    e.online = True
    _ENTRIES[e.name] = e
    for a in e.aliases:
        _ALIASES[a] = e


def _refresh() -> None:
    """Apply scripted Disconnect faults (go offline in the window, come back after it)."""
    for e in list(_SCRIPTED):
        d = e.link.disconnected(e.clock.now())
        if d is not None and e.online:
            _take_offline(e)
            e.fault_unplugged = d
        elif d is None and not e.online and e.fault_unplugged is not None:
            same = not e.fault_unplugged.new_path
            e.fault_unplugged = None
            _plug(e, None, same)


def _resolve(name: str) -> _Entry | None:
    return _ENTRIES.get(name) or _ALIASES.get(name)


def lookup(name: str):
    """The link registered under ``name`` (or alias), else ``None``."""
    with _LOCK:
        _refresh()
        e = _resolve(name)
        return None if e is None else e.link


def resolve(name: str) -> str | None:
    """The primary name behind ``name`` (an alias, like ``realpath`` of a by-id link), else ``None``."""
    with _LOCK:
        _refresh()
        e = _resolve(name)
        return None if e is None else e.name


def urls(pattern: str = "*") -> list[str]:
    """URLs of the online devices whose name or alias matches the glob ``pattern`` (sorted)."""
    with _LOCK:
        _refresh()
        names = [n for n in list(_ENTRIES) + list(_ALIASES) if fnmatch.fnmatchcase(n, pattern)]
        return [f"sim://{n}" for n in sorted(names)]


def _parse(url: str) -> tuple[str, dict]:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() != "sim":
        raise SerialException(f"expected a URL of the form sim://NAME, got {url!r}")
    name = parts.netloc + parts.path
    opts = {k: v[-1] for k, v in urllib.parse.parse_qs(parts.query, keep_blank_values=True).items()}
    unknown = set(opts) - set()
    if unknown:
        raise SerialException(f"{url}: unknown option(s) {sorted(unknown)} (sim:// takes none; the time mode is "
                              f"chosen by register(..., time=...))")
    return name, opts


class SimSerial(SerialBase):
    """pyserial port class of ``sim://NAME`` (see the module docstring)."""

    BAUDRATES = SerialBase.BAUDRATES

    def __init__(self, *args, **kwargs):
        self._entry: _Entry | None = None
        self._gen = -1
        super().__init__(*args, **kwargs)

    # ------------------------------------------------------------------ open / close
    def open(self):
        if self._port is None:
            raise SerialException("Port must be configured before it can be used.")
        if self.is_open:
            raise SerialException("Port is already open.")
        name, _ = _parse(self._port)
        with _LOCK:
            _refresh()
            e = _resolve(name)
            if e is None:
                known = ", ".join(sorted(_ENTRIES) + sorted(_ALIASES)) or "none"
                raise SerialException(errno.ENOENT, f"could not open port {self._port}: no virtual device "
                                                    f"registered under {name!r} (registered: {known})")
            if self._exclusive:
                if e.exclusive_owner is not None:
                    raise SerialException(errno.EAGAIN, f"Could not exclusively lock port {self._port}: "
                                                         f"[Errno 11] Resource temporarily unavailable")
                e.exclusive_owner = self
            e.handles.add(self)
            self._entry, self._gen = e, e.generation
        self.is_open = True

    def close(self):
        e = self._entry
        if e is not None:
            with _LOCK:
                e.handles.discard(self)
                if e.exclusive_owner is self:
                    e.exclusive_owner = None
        self._entry = None
        self.is_open = False

    def _reconfigure_port(self, *args, **kwargs):
        pass

    def _update_dtr_state(self):
        pass

    def _update_rts_state(self):
        pass

    def _update_break_state(self):
        pass

    # ------------------------------------------------------------------ I/O
    def _live(self, for_write: bool = False) -> _Entry:
        if not self.is_open or self._entry is None:
            raise PortNotOpenError()
        with _LOCK:
            _refresh()
            e = self._entry
            if e.generation != self._gen or not e.online:
                raise SerialException(_VANISHED_WRITE if for_write else _VANISHED_READ)
        return e

    def write(self, data):
        e = self._live(for_write=True)
        d = to_bytes(data)
        e.link.host_write(d, e.clock.now())
        return len(d)

    def read(self, size=1):
        e = self._live()
        link, clock = e.link, e.clock
        out = bytearray(link.host_read(size, clock.now()))
        timeout = self._timeout
        if len(out) >= size or timeout == 0:
            return bytes(out)
        timeout = 1.0 if timeout is None else float(timeout)
        deadline = clock.now() + timeout
        if e.mode == "step":
            min_sleep = 1e-6
            while len(out) < size:
                now = clock.now()
                if now >= deadline:
                    break
                nxt = link.next_event_s()
                if nxt <= now:
                    nxt = now + 1e-4
                clock.sleep(max(min(deadline, nxt) - now, min_sleep))
                # a simulated clock moves in whole physics steps: a sleep that did not move it (an event or the
                # deadline a float rounding past a step) doubles until it does, instead of 1 us at a time
                min_sleep = min(min_sleep * 2.0, 1.0) if clock.now() == now else 1e-6
                self._live()
                out += link.host_read(size - len(out), clock.now())
        else:
            real_end = time.monotonic() + 2.0 * timeout + 0.05
            while len(out) < size and clock.now() < deadline and time.monotonic() < real_end:
                time.sleep(0.0005)
                self._live()
                out += link.host_read(size - len(out), clock.now())
        return bytes(out)

    @property
    def in_waiting(self):
        e = self._live()
        return e.link.host_in_waiting(e.clock.now())

    @property
    def out_waiting(self):
        self._live()
        return 0

    def reset_input_buffer(self):
        e = self._live()
        e.link.flush_host_input(e.clock.now())

    def reset_output_buffer(self):
        self._live()

    def flush(self):
        self._live(for_write=True)

    def cancel_read(self):
        pass

    def cancel_write(self):
        pass

    @property
    def cts(self):
        return True

    @property
    def dsr(self):
        return True

    @property
    def ri(self):
        return False

    @property
    def cd(self):
        return True
