"""Test benches shared by the HIL suites of the serial drivers (test_roboclaw_hil, test_rnp_hil,
test_mavlink_hil): the same scenario bodies run on three backends.

* :class:`SimBenchBase` — ``sim://`` in step mode: the driver single-threaded on simulated time.
* :class:`PtyBenchBase` — the threaded driver in real time on a real pseudo-terminal.
* :class:`RealBenchBase` — a physical rover on ``ROVER_PORT`` (no device to look into, no faults).

A suite subclasses them with what differs per protocol (how the device is attached, how the driver is
built, what "moving" and "stopped" mean on the device) and builds its ``bench`` fixture with
:func:`bench_lifecycle`.
"""
import os
import threading
import time

import numpy as np
import pytest
import serial

import nav
import sim.devices as sd
from drivers.errors import EStopActive
from drivers.transport import PortInUse, Transport
from sim.devices.faults import SecondOpener

HIL = pytest.param("hil", marks=pytest.mark.hil)
ALL = ["sim", "pty", HIL]
SIM_PTY = ["sim", "pty"]


class SimBenchBase:
    """sim:// step mode: one thread, simulated time. Subclasses set ``world``, ``att``, ``device``,
    ``sim_rover``, ``clock``, ``name`` and ``rover``; ``step_kw`` goes to every :func:`sim.devices.run_stepped`."""
    kind = "sim"
    #: command errors a control callback swallows (the scenario checks the state, not the exception)
    guarded = (EStopActive,)
    step_kw: dict = {}

    def now(self):
        return self.clock.now()

    def inject(self, *faults):
        self.att.inject(*faults)

    def _ctl(self, cmd):
        if cmd is None:
            return None

        def control(t):
            try:
                self.rover.set_twist(*cmd)
            except self.guarded:
                pass
        return control

    def run(self, seconds, cmd=None, period=0.1):
        sd.run_stepped(self.world, self.rover, seconds, control=self._ctl(cmd), control_period_s=period,
                       **self.step_kw)

    def wait_until(self, pred, timeout, cmd=None, period=0.1):
        t0 = self.now()
        hit = []
        sd.run_stepped(self.world, self.rover, timeout, control=self._ctl(cmd), control_period_s=period,
                       until=lambda t: bool(pred()) and not hit.append(t), **self.step_kw)
        return (hit[0] - t0) if hit else None

    def real_path(self):
        return sd.resolve(f"{self.name}-by-id")

    def dead_host(self, seconds):
        """Only the world and the device run (the host process is gone)."""
        sd.run_stepped(self.world, self.rover, seconds, **{**self.step_kw, "spin": False, "watchdog": False})

    def close(self):
        self.rover.close()
        self.att.close()


class PtyBenchBase:
    """A real pty in real time; the driver threaded on the monotonic clock. Subclasses set ``dev`` (the pty
    device server), ``device``, ``sim_rover``, ``clock``, ``path`` and ``rover``; ``control_period_s`` is the
    default period of the control stream in :meth:`run` / :meth:`wait_until`."""
    kind = "pty"
    guarded = (EStopActive,)
    control_period_s = 0.1

    def now(self):
        return self.clock.now()                  # the device's clock (fault windows, device logs)

    def inject(self, *faults):
        self.dev.inject(*faults)

    def real_path(self):
        return os.path.realpath(self.path)

    def _send(self, cmd):
        try:
            self.rover.set_twist(*cmd)
        except self.guarded:
            pass

    def run(self, seconds, cmd=None, period=None):
        period = self.control_period_s if period is None else period
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if cmd is not None:
                self._send(cmd)
            time.sleep(min(period, max(0.0, end - time.monotonic())))

    def wait_until(self, pred, timeout, cmd=None, period=None):
        period = self.control_period_s if period is None else period
        t0 = time.monotonic()
        next_cmd = t0
        while time.monotonic() - t0 < timeout:
            if pred():
                return time.monotonic() - t0
            if cmd is not None and time.monotonic() >= next_cmd:
                self._send(cmd)
                next_cmd += period
            time.sleep(0.002)
        return time.monotonic() - t0 if pred() else None

    def close(self):
        self.rover.close()
        self.dev.close()


class RealBenchBase:
    """A physical rover on ``ROVER_PORT``: no device to look into, no faults to inject. Mix in before the
    suite's pty bench (``class RealBench(RealBenchBase, PtyBench)``) and set ``rover_cls``, ``port`` and
    ``profile`` (the rover profile's name); moving / stopped
    are judged from the measured wheel speeds (override for rovers without wheel data)."""
    kind = "hil"
    rover_cls = None
    port = None
    profile = None

    def __init__(self, **driver_kw):
        driver_kw.pop("device_kw", None)
        self.path = self.port
        self.device = self.sim_rover = None
        self.clock = None
        self.rover = self.rover_cls(self.port, nav.load_rover(self.profile), **driver_kw)

    def now(self):
        return time.monotonic()

    def inject(self, *faults):
        pytest.skip("fault injection needs a virtual device")

    def _speeds(self):
        return np.abs(self.rover.read_telemetry().wheel_speed_radps)

    def moving(self):
        return bool(np.all(self._speeds() > 0.5))

    def stopped(self):
        s = self._speeds()
        return bool(np.all(np.isfinite(s)) and np.all(s < 0.1))

    def close(self):
        self.rover.close()


def bench_lifecycle(kind, kw, tmp_path, sim_bench, pty_bench, real_bench, *, real_ok, skip_reason):
    """Body of a suite's ``bench`` fixture (``yield from``): skip ``hil`` unless ``real_ok``, build the bench,
    yield it, close it; a pty bench must have joined its I/O thread (it survived to the end)."""
    if kind == "hil" and not real_ok:
        pytest.skip(skip_reason)
    b = sim_bench(**kw) if kind == "sim" else pty_bench(tmp_path, **kw) if kind == "pty" else real_bench(**kw)
    yield b
    try:
        b.close()
    finally:
        if kind == "pty":
            assert b.rover._io_thread is None          # joined: the I/O thread survived to the end


def threads_alive(b):
    """The driver's I/O and watchdog threads run (always true for a single-threaded driver)."""
    r = b.rover
    return not r.threaded or (r._io_thread is not None and r._io_thread.is_alive() and r.watchdog.running)


def second_driver_is_refused(b):
    """A second driver opening the rover's port gets :class:`PortInUse` naming the port."""
    port = b.path if b.kind == "pty" else b.rover.transport.current_url
    with pytest.raises(PortInUse) as ei:
        Transport(port).open()
    assert port in str(ei.value)


def second_reader(b, pty_s, cmd, first_write=b"", until=None, max_s=8.0):
    """Another process on the port while ``cmd`` is streamed: on a pty a real non-exclusive reader that
    (after writing ``first_write``) steals bytes for ``pty_s`` — and, when ``until`` is given, on until
    ``until()`` is true or ``max_s`` have passed (under CPU load the thief may get few chances to read);
    in sim a :class:`SecondOpener` stealing 30 % of the bytes for 1 s."""
    if b.kind == "pty":
        stop = threading.Event()
        thief = serial.Serial(b.path, timeout=0.005)
        if first_write:
            thief.write(first_write)

        def steal():
            while not stop.is_set():
                try:
                    thief.read(64)
                except serial.SerialException:       # "multiple access on port": the driver read first
                    pass

        th = threading.Thread(target=steal, daemon=True)
        th.start()
        b.run(pty_s, cmd=cmd)
        if until is not None:
            b.wait_until(until, max(0.0, max_s - pty_s), cmd=cmd)
        stop.set()
        th.join(2)
        thief.close()
    else:
        t0 = b.now()
        b.inject(SecondOpener(steal_prob=0.3, start_s=t0, end_s=t0 + 1.0))
        b.run(1.0, cmd=cmd)
