"""Traverse backends that go through a serial port: ``sim-serial`` (a virtual device on a real pty) and
``serial`` (a real rover).

``sim-serial``: the scenario's simulated rover is wrapped in the virtual device for ``protocol`` (RoboClaw
bus, RNP board or ArduPilot rover — the same models the HIL tests use) and served on a real pseudo-terminal;
the traverse loop drives it through the *same* driver class a lab uses on hardware. Time is the
simulator's: one :class:`~sim.devices.pty.RealtimeClock` (``rate`` × real time) is shared by the device,
its wire model, the world pacer, the driver (watchdog, poll deadlines) and the loop, so a traverse may run
faster than real time while every timeout keeps its meaning on that clock.

``serial``: the driver for ``protocol`` on ``port`` (a device path or any pyserial URL) on the monotonic
clock; the loop is paced in real time; the rover is armed only after ``confirm`` says yes. There is no
simulator truth: metrics that need it are reported as unknown.
"""
from __future__ import annotations

import contextlib
import importlib.util
import logging
import math
import time

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["SerialBackendBase", "SimSerialBackend", "HardwareBackend", "default_protocol", "make_sim_serial",
           "make_serial"]

#: profile ``drive.controller`` -> wire protocol
_CONTROLLER_PROTOCOL = {"roboclaw": "roboclaw", "arduino": "rnp", "ardupilot": "mavlink"}


def default_protocol(profile) -> str:
    """The wire protocol for a rover profile's controller (``roboclaw``, ``rnp`` or ``mavlink``)."""
    c = profile.drive.controller
    try:
        return _CONTROLLER_PROTOCOL[c]
    except KeyError:
        raise ValueError(f"rover profile {profile.name!r}: drive.controller = {c!r} has no serial protocol; "
                         f"pass one of {', '.join(sorted(set(_CONTROLLER_PROTOCOL.values())))}") from None


def _check_protocol(protocol: str) -> str:
    from drivers import PROTOCOLS

    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol = {protocol!r}: must be one of {', '.join(PROTOCOLS)}")
    if protocol == "mavlink" and importlib.util.find_spec("pymavlink") is None:
        raise ValueError("protocol 'mavlink' needs pymavlink: pip install 'rovernav[mavlink]'")
    return protocol


class SerialBackendBase:
    """What the traverse loop needs from a backend: ``rover`` (a drivers.base.Rover), ``advance(dt_s)``,
    ``now()``, ``sim_rover`` (truth, or None), ``real_time``, ``start_pose``, ``close``, and ``inject``
    for scheduled link faults (``False`` when this backend cannot model the kind)."""

    real_time = True
    sim_rover = None

    def start_pose(self, T_nominal) -> np.ndarray:
        if self.sim_rover is None:
            return np.asarray(T_nominal, dtype=np.float64)
        from sim.frames import T_world_body

        s = self.sim_rover.truth()
        return T_world_body(s.x_m, s.y_m, s.z_m, s.yaw_rad, s.pitch_rad, s.roll_rad)

    def inject(self, kind: str, value, duration_s: float) -> bool:
        return False

    def truth_lock(self):
        """Held while reading the simulator's truth (none on a real rover: nothing to hold)."""
        return contextlib.nullcontext()

    def _stop_rover(self) -> None:
        try:
            if self.rover.is_open:
                self.rover.stop()
        except Exception as e:   # closing must not mask the traverse's own outcome
            log.warning("stop on close failed: %s", e)
        try:
            self.rover.close()
        except Exception as e:
            log.warning("closing the driver failed: %s", e)


class SimSerialBackend(SerialBackendBase):
    """The scenario's SimRover behind a virtual ``protocol`` device on a pty, driven by the real driver."""

    def __init__(self, world, profile, start_xy_yaw, protocol: str, *, rate: float = 2.0, baud: int = 115200,
                 driver_kw: dict | None = None):
        from drivers import open_rover
        from sim.devices import FaultInjector, VirtualLink, create_device
        from sim.devices.pty import PtyServer, RealtimeClock, WorldPacer
        from sim.sim_rover import SimRover

        self.protocol = _check_protocol(protocol)
        if not (isinstance(rate, (int, float)) and 0 < rate <= 20):
            raise ValueError(f"rate = {rate!r}: must be in (0, 20] (times real time)")
        x, y, yaw = start_xy_yaw
        self.world = world
        # the device model's own timeout replaces the SimRover's (as on hardware)
        self.sim_rover = SimRover(world, profile, x_m=x, y_m=y, yaw_rad=yaw, command_timeout_s=None,
                                  name=f"sim-{protocol}")
        self.sim_rover.open()
        self.device = create_device(protocol, self.sim_rover)
        self.clock = RealtimeClock(world.time_s, rate=float(rate))
        self.injector = FaultInjector((), rng=world.rng(f"faults.{protocol}.traverse"))
        self.link = VirtualLink(self.device, clock=self.clock, injector=self.injector, baud=baud)
        lock = getattr(self.device, "lock", None) or getattr(self.device, "_lock", None)
        self.lock = lock
        self.server = PtyServer(self.link, pacer=WorldPacer(world, self.clock, lock=lock))
        self.path = self.server.start()
        try:
            self.rover = open_rover(protocol, self.path, profile, clock=self.clock, **(driver_kw or {}))
        except Exception:
            self.server.stop()
            raise
        self.real_time = False
        self._next = None
        log.info("sim-serial: %s device on %s at %g x real time", protocol, self.path, rate)

    def now(self) -> float:
        return self.clock.now()

    def advance(self, dt_s: float) -> None:
        """Wait until the shared clock reaches the next control tick (the pacer moves the world)."""
        now = self.clock.now()
        self._next = (now if self._next is None else self._next) + dt_s
        if self._next < now - 5 * dt_s:          # fell behind (a slow plan): do not try to catch up in a burst
            self._next = now
        self.clock.sleep(self._next - now)

    def truth_lock(self):
        return self.lock

    def inject(self, kind: str, value, duration_s: float) -> bool:
        """Schedule a link-level fault from now (``duration_s`` 0 = until the end)."""
        from sim.devices.faults import Disconnect, Latency, Reboot, Silence, Stall

        t0 = self.clock.now()
        t1 = t0 + duration_s if duration_s > 0 else math.inf
        if kind == "link_loss":
            f = Disconnect(start_s=t0, end_s=t1, new_path=False)
        elif kind == "silence":
            f = Silence(start_s=t0, end_s=t1)
        elif kind == "latency":
            f = Latency(delay_s=float(value) if value is not None else 0.3, start_s=t0, end_s=t1)
        elif kind == "reboot":
            f = Reboot(start_s=t0, end_s=t0)
        elif kind == "stall":
            f = Stall(start_s=t0, end_s=t1)
        else:
            return False
        with self.link.lock:
            self.injector.add(f)
        return True

    def close(self) -> None:
        self._stop_rover()
        # The simulated rover stays open: the server thread may outlive stop()'s join on a loaded machine and
        # would then drive a closed rover; the world is discarded with the backend anyway.
        self.server.stop()


class HardwareBackend(SerialBackendBase):
    """A real rover on ``port``: the driver on the monotonic clock, the loop paced in real time."""

    def __init__(self, profile, port: str, protocol: str, *, driver_kw: dict | None = None):
        from drivers import open_rover
        from drivers.clock import MonotonicClock

        self.protocol = _check_protocol(protocol)
        self.clock = MonotonicClock()
        self.rover = open_rover(protocol, port, profile, clock=self.clock, **(driver_kw or {}))
        self.port = port
        self._next = None

    def now(self) -> float:
        return self.clock.now()

    def advance(self, dt_s: float) -> None:
        now = self.clock.now()
        self._next = (now if self._next is None else self._next) + dt_s
        if self._next < now - 5 * dt_s:
            log.warning("%s: control loop %.2f s behind its %.0f Hz schedule", self.port, now - self._next,
                        1.0 / dt_s)
            self._next = now
        time.sleep(max(0.0, self._next - now))

    def close(self) -> None:
        self._stop_rover()


def make_sim_serial(world, profile, start_xy_yaw, protocol: str | None = None, **kw) -> SimSerialBackend:
    """:class:`SimSerialBackend` with the profile's protocol by default."""
    return SimSerialBackend(world, profile, start_xy_yaw, protocol or default_protocol(profile), **kw)


def make_serial(profile, port: str, protocol: str | None = None, **kw) -> HardwareBackend:
    """:class:`HardwareBackend` with the profile's protocol by default."""
    if not port:
        raise ValueError("the serial backend needs --port (a device path such as /dev/ttyUSB0, or a URL)")
    return HardwareBackend(profile, port, protocol or default_protocol(profile), **kw)
