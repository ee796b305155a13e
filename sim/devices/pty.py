"""Serve a virtual device on a real pseudo-terminal, in real time.

:class:`PtyServer` opens a pty pair (``os.openpty``), puts it in raw mode (no echo, no CR/LF
translation, no signals: a fresh pty is cooked), and serves the device on the master side from a
background thread; the slave path (``/dev/pts/N``) is what a driver — ours, or any program such as the
vendor's own client library — opens like a USB-serial adapter. ``symlink`` keeps a stable link to the
current slave (the ``/dev/serial/by-id`` of this bench).

Real time: a :class:`RealtimeClock` maps the monotonic clock onto simulated seconds (``rate`` × real),
the server thread advances the world to keep up (:class:`WorldPacer`) and stamps every byte with that
clock, so the link's wire time (115200 baud by default: a pty itself moves bytes in ~20 µs) and injected
latencies are real delays.

Unplug: :meth:`PtyServer.unplug` closes the master (and the server's own slave handle): the driver's next
read fails exactly as on a pulled USB adapter ("device reports readiness to read but returned no data"),
writes fail with EIO, and the ``/dev/pts/N`` node disappears. :meth:`PtyServer.replug` opens a new pty —
under a *new* ``/dev/pts`` number (a placeholder pty holds the old number meanwhile), as a re-enumerated
adapter gets a new ``ttyUSB`` number — and repoints the symlink. A
:class:`~sim.devices.faults.Disconnect` fault in the link's injector does both on its schedule.

:func:`serve_pty` is the body of ``rover sim-device``: it announces the path and serves until Ctrl-C.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import math
import os
import select
import threading
import time
import tty

__all__ = ["PtyServer", "RealtimeClock", "WorldPacer", "PtyDevice", "open_pty_device", "serve_pty"]

log = logging.getLogger(__name__)


class RealtimeClock:
    """Simulated seconds that follow real time: ``now() = t0_s + rate × (monotonic() - start)``."""

    def __init__(self, t0_s: float = 0.0, rate: float = 1.0):
        if not (isinstance(rate, (int, float)) and 0 < rate <= 1000):
            raise ValueError(f"rate = {rate!r}: must be in (0, 1000]")
        self.t0_s = float(t0_s)
        self.rate = float(rate)
        self._m0 = time.monotonic()

    def now(self) -> float:
        return self.t0_s + self.rate * (time.monotonic() - self._m0)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds / self.rate)

    def to_monotonic(self, t_s: float) -> float:
        """The ``time.monotonic()`` value at which this clock reads ``t_s``."""
        return self._m0 + (t_s - self.t0_s) / self.rate

    def __repr__(self) -> str:
        return f"RealtimeClock(t={self.now():.3f} s, rate={self.rate:g})"


class WorldPacer:
    """Keeps a world's simulated time up with a :class:`RealtimeClock`.

    Call :meth:`catch_up` from the thread that owns the world (the pty server does), or :meth:`start`
    a thread for it (``sim://`` in follow mode). ``lock`` (the device's) is held while the world steps,
    so device requests and physics never interleave.
    """

    def __init__(self, world, clock: RealtimeClock, *, lock=None, tick_s: float = 0.002):
        self.world = world
        self.clock = clock
        self.lock = lock if lock is not None else threading.RLock()
        self.tick_s = float(tick_s)
        self._last = clock.now()
        self._thread = None
        self._stop = threading.Event()
        self.lag_s = 0.0

    def catch_up(self) -> None:
        t = self.clock.now()
        dt = t - self._last
        if dt > 0:
            with self.lock:
                self.world.advance(dt)
            self._last = t
            self.lag_s = self.clock.now() - t

    def start(self) -> "WorldPacer":
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="world-pacer", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(1.0)
        self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.tick_s):
            try:
                self.catch_up()
            except Exception:                                # pragma: no cover - keep pacing
                log.exception("world pacer step failed")


def _raw_pty() -> tuple[int, int, str]:
    m, s = os.openpty()
    tty.setraw(s)
    fl = fcntl.fcntl(m, fcntl.F_GETFL)
    fcntl.fcntl(m, fcntl.F_SETFL, fl | os.O_NONBLOCK)
    return m, s, os.ttyname(s)


class PtyServer:
    """Serves a :class:`~sim.devices.faults.VirtualLink` on a pseudo-terminal from a background thread.

    Parameters
    ----------
    link : VirtualLink
        The device behind its wire; its clock should be a :class:`RealtimeClock`.
    pacer : WorldPacer, optional
        Advanced by the server thread every iteration.
    symlink : str, optional
        Path of a symlink kept pointing at the current slave (replaced atomically).
    tick_s : float
        Longest the server sleeps between looks at the clock (default 2 ms).
    """

    def __init__(self, link, *, pacer: WorldPacer | None = None, symlink: str | None = None, tick_s: float = 0.002):
        self.link = link
        self.clock = link.clock
        self.pacer = pacer
        self.symlink = symlink
        self.tick_s = float(tick_s)
        self._master = -1
        self._slave = -1
        self._placeholder: tuple[int, int] | None = None
        self.slave_path: str | None = None
        self._thread: threading.Thread | None = None
        self._running = False
        self._io_lock = threading.RLock()
        self._wake_r, self._wake_w = os.pipe()
        self._replug_at = math.inf
        self._replug_new = True
        self.unplugs = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.dropped_out = 0

    # ------------------------------------------------------------------ lifecycle
    @property
    def path(self) -> str | None:
        """What a driver opens: the symlink if configured, else the slave path."""
        return self.symlink if self.symlink else self.slave_path

    @property
    def plugged(self) -> bool:
        return self._master >= 0

    def start(self) -> str:
        if self._running:
            return self.path
        self._plug()
        self._running = True
        self._thread = threading.Thread(target=self._run, name="pty-server", daemon=True)
        self._thread.start()
        return self.path

    def stop(self) -> None:
        self._running = False
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(2.0)
        self._thread = None
        with self._io_lock:
            self._unplug_fds()
            if self._placeholder:
                for fd in self._placeholder:
                    with contextlib.suppress(OSError):
                        os.close(fd)
                self._placeholder = None
        if self.symlink:
            with contextlib.suppress(OSError):
                os.unlink(self.symlink)
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._wake_r = self._wake_w = -1

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    # ------------------------------------------------------------------ plug / unplug
    def _plug(self, new_path: bool = True) -> None:
        with self._io_lock:
            if self._placeholder and not new_path:
                for fd in self._placeholder:
                    os.close(fd)
                self._placeholder = None
            old_path = self.slave_path
            extras = []
            self._master, self._slave, self.slave_path = _raw_pty()
            while new_path and old_path is not None and self.slave_path == old_path and len(extras) < 8:
                extras.append((self._master, self._slave))       # the old number came free: skip it
                self._master, self._slave, self.slave_path = _raw_pty()
            for fds in extras:
                for fd in fds:
                    os.close(fd)
            if self._placeholder:
                for fd in self._placeholder:
                    os.close(fd)
                self._placeholder = None
            self.link.reset()
            if self.symlink:
                tmp = f"{self.symlink}.tmp{os.getpid()}"
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                os.symlink(self.slave_path, tmp)
                os.replace(tmp, self.symlink)
        log.info("virtual device on %s", self.slave_path)

    def _unplug_fds(self) -> None:
        for fd in (self._master, self._slave):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = -1

    def unplug(self) -> None:
        """Pull the cable: the driver's port fails, the /dev/pts node and the symlink disappear."""
        with self._io_lock:
            if not self.plugged:
                return
            self._unplug_fds()
            self.unplugs += 1
            m, s, _ = _raw_pty()             # hold the freed /dev/pts number so a replug gets a new one
            self._placeholder = (m, s)
            if self.symlink:
                with contextlib.suppress(OSError):
                    os.unlink(self.symlink)
            self.link.reset()
        log.info("virtual device unplugged")

    def replug(self, *, new_path: bool = True) -> str:
        """Plug back in (a new /dev/pts number unless ``new_path=False``); returns the path."""
        with self._io_lock:
            if not self.plugged:
                self._plug(new_path)
        return self.path

    # ------------------------------------------------------------------ serving
    def _run(self) -> None:
        link, clock = self.link, self.clock
        while self._running:
            try:
                now = clock.now()
                d = link.disconnected(now)
                if d is not None and self.plugged:
                    self.unplug()
                    self._replug_at, self._replug_new = d.end_s, d.new_path
                elif not self.plugged and d is None and now >= self._replug_at:
                    self._replug_at = math.inf
                    self.replug(new_path=self._replug_new)
                if self.pacer is not None:
                    self.pacer.catch_up()
                with self._io_lock:
                    master = self._master
                    link.service(clock.now())
                    self._flush_out()
                wait = min(self.tick_s, max(0.0, link.next_event_s() - clock.now()))
                fds = [self._wake_r] + ([master] if master >= 0 else [])
                r, _, _ = select.select(fds, [], [], wait)
                if self._wake_r in r:
                    os.read(self._wake_r, 64)
                if master >= 0 and master in r:
                    with self._io_lock:
                        if self._master == master:
                            self._read_in()
            except Exception:                              # keep serving whatever happens
                log.exception("pty server iteration failed")
                time.sleep(self.tick_s)

    def _read_in(self) -> None:
        try:
            data = os.read(self._master, 4096)
        except BlockingIOError:
            return
        except OSError as e:
            if e.errno == errno.EIO:            # no slave open right now
                return
            raise
        if data:
            self.bytes_in += len(data)
            self.link.host_write(data, self.clock.now())
            self._flush_out()

    def _flush_out(self) -> None:
        if self._master < 0:
            return
        out = self.link.host_read(1 << 16, self.clock.now())
        if not out:
            return
        try:
            n = os.write(self._master, out)
        except BlockingIOError:
            n = 0
        except OSError:
            n = 0
        self.bytes_out += n
        self.dropped_out += len(out) - n


class PtyDevice:
    """A virtual device served on a pty, with everything a test needs: ``world``, ``sim_rover``,
    ``device``, ``injector``, ``link``, ``clock``, ``server``, ``path``. A context manager."""

    def __init__(self, world, sim_rover, device, injector, link, clock, server):
        self.world, self.sim_rover, self.device = world, sim_rover, device
        self.injector, self.link, self.clock, self.server = injector, link, clock, server

    @property
    def path(self) -> str:
        return self.server.path

    def inject(self, *faults) -> None:
        """Add faults; their times are on :attr:`clock` (use ``dev.clock.now() + ...``)."""
        with self.link.lock:
            self.injector.add(*faults)

    def close(self) -> None:
        self.server.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_pty_device(protocol: str = "roboclaw", rover="osr", *, world=None, seed: int = 0, baud: int | None = 115200,
                    symlink: str | None = None, faults=(), rate: float = 1.0, **device_kw) -> PtyDevice:
    """Build a SimRover on a flat world (or ``world``), its virtual ``protocol`` device, a fault injector
    and a real-time link, and start serving it on a pty. The caller closes it."""
    from . import FaultInjector, VirtualLink, create_device, virtual_rover

    sim_rover = virtual_rover(rover, world=world, seed=seed)
    w = sim_rover.world
    device = create_device(protocol, sim_rover, **device_kw)
    clock = RealtimeClock(w.time_s, rate=rate)
    injector = FaultInjector(faults, rng=w.rng(f"faults.{protocol}.pty"))
    link = VirtualLink(device, clock=clock, injector=injector, baud=baud)
    lock = getattr(device, "lock", None) or getattr(device, "_lock", None)
    pacer = WorldPacer(w, clock, lock=lock)
    server = PtyServer(link, pacer=pacer, symlink=symlink)
    server.start()
    return PtyDevice(w, sim_rover, device, injector, link, clock, server)


def serve_pty(protocol: str = "roboclaw", rover="osr", *, seed: int = 0, baud: int | None = 115200,
              symlink: str | None = None, faults=(), rate: float = 1.0, on_ready=None,
              stop_event: threading.Event | None = None, **device_kw) -> None:
    """Serve a virtual ``protocol`` device for ``rover`` on a pty until Ctrl-C (or ``stop_event``).

    Once serving, calls ``on_ready(path, description)`` with the path to open and a line saying what
    is behind it (default: both are logged at INFO). ``rover sim-device`` prints them.
    """
    dev = open_pty_device(protocol, rover, seed=seed, baud=baud, symlink=symlink, faults=faults, rate=rate,
                          **device_kw)
    try:
        what = repr(dev.device)
        wire = f"{baud} baud wire time modelled" if baud else "no wire time modelled"
        description = f"{what} for rover {rover!r} on {dev.server.slave_path} ({wire}); Ctrl-C to stop"
        if on_ready is None:
            log.info("serving %s: %s", dev.path, description)
        else:
            on_ready(dev.path, description)
        while True:
            if stop_event is not None:
                if stop_event.wait(0.2):
                    break
            else:
                time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        dev.close()
