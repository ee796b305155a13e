"""Virtual serial devices: the rover's controllers, simulated down to the bytes on the wire.

A virtual device (e.g. :class:`~sim.devices.roboclaw.VirtualRoboClawBus`) decodes requests, moves a
:class:`~sim.sim_rover.SimRover`'s wheels and answers as the hardware would. The same driver code that
runs on the real rover reaches it two ways:

* ``sim://NAME`` in-process, on the simulator's clock (:mod:`sim.devices.urlhandler`; importing this
  package registers the URL scheme with pyserial);
* a real pseudo-terminal served in real time (:mod:`sim.devices.pty`, :func:`~sim.devices.pty.serve_pty`
  behind ``rover sim-device``), which any program can open like a serial port.

Between the port and the device sits a :class:`~sim.devices.faults.VirtualLink` (wire time, delivery
order) with an optional :class:`~sim.devices.faults.FaultInjector` (silence, unplugs, bit flips, drops,
latency, stalls, bad acks, bad content, device error flags, encoder faults, reboots, a second opener).

Helpers here: :func:`flat_world`, :func:`virtual_rover`, :func:`create_device` (protocol registry —
``register_protocol`` adds the RNP / MAVLink device models), :func:`attach_sim` (device + link + URL in
one call) and :func:`run_stepped`, the single-threaded loop that runs a non-threaded driver against
the world on simulated time.
"""
from __future__ import annotations

import serial

from .faults import (AckFault, BadContent, BitFlips, Disconnect, DropFrames, EncoderFreeze, EncoderReset, EncoderWrap,
                     ErrorFlags, FaultInjector, Latency, Reboot, SecondOpener, Silence, Stall, TruncateFrames,
                     UsbLatencyTimer, VirtualLink)
from .urlhandler import alias, lookup, register, replug, resolve, unplug, unregister, urls

if "sim.devices" not in serial.protocol_handler_packages:
    serial.protocol_handler_packages.append("sim.devices")

__all__ = ["VirtualLink", "FaultInjector", "Silence", "Disconnect", "BitFlips", "DropFrames", "TruncateFrames",
           "Latency", "UsbLatencyTimer", "Stall", "SecondOpener", "AckFault", "BadContent", "ErrorFlags",
           "EncoderFreeze", "EncoderWrap", "EncoderReset", "Reboot",
           "register", "unregister", "unplug", "replug", "urls", "lookup", "resolve", "alias",
           "PROTOCOLS", "register_protocol", "create_device", "flat_world", "virtual_rover", "attach_sim",
           "SimAttachment", "run_stepped"]


# ----------------------------------------------------------------------------- protocol registry
def _roboclaw(sim_rover, **kw):
    from .roboclaw import VirtualRoboClawBus

    return VirtualRoboClawBus(sim_rover, **kw)


def _rnp(sim_rover, **kw):
    from .rnp import VirtualRnpDevice

    return VirtualRnpDevice(sim_rover, **kw)


def _mavlink(sim_rover, **kw):
    from .mavlink import VirtualArduRover

    return VirtualArduRover(sim_rover, **kw)


#: protocol name -> factory(sim_rover, **kw) building the device model.
PROTOCOLS = {"roboclaw": _roboclaw, "rnp": _rnp, "mavlink": _mavlink}


def register_protocol(name: str, factory) -> None:
    """Add a device model (``factory(sim_rover, **kw) -> device``) under a protocol name."""
    if not callable(factory):
        raise TypeError(f"factory for protocol {name!r} must be callable")
    PROTOCOLS[str(name)] = factory


def create_device(protocol: str, sim_rover, **kw):
    """The virtual device of ``protocol`` driving ``sim_rover``."""
    try:
        factory = PROTOCOLS[protocol]
    except KeyError:
        raise ValueError(f"protocol = {protocol!r}: must be one of {', '.join(sorted(PROTOCOLS))}") from None
    return factory(sim_rover, **kw)


# ----------------------------------------------------------------------------- worlds and rovers
def flat_world(*, size_m: float = 40.0, cell_size_m: float = 0.1, seed: int = 0, physics_dt_s: float = 0.01,
               planet="mars", slip_flat: float | None = None):
    """A flat world (a bench, a parking lot) for device tests and ``rover sim-device``."""
    import dataclasses

    import numpy as np

    import nav
    from nav.terrain_map import TerrainMap

    from ..world import World

    n = int(round(size_m / cell_size_m))
    if n < 4:
        raise ValueError(f"size_m = {size_m!r} with cell_size_m = {cell_size_m!r} gives {n} cells: need >= 4")
    pl = planet if not isinstance(planet, str) else nav.load_planet(planet)
    soil = None if slip_flat is None else dataclasses.replace(pl.soil, slip_flat=float(slip_flat))
    return World(TerrainMap(np.zeros((n, n), np.float32), cell_size_m), planet=pl, soil=soil, seed=seed,
                 physics_dt_s=physics_dt_s)


def virtual_rover(rover="osr", *, world=None, name: str = "sim", **world_kw):
    """An open :class:`~sim.sim_rover.SimRover` in the middle of ``world`` (default :func:`flat_world`),
    without its own command timeout (the device model's timeout replaces it)."""
    from ..sim_rover import SimRover

    w = world if world is not None else flat_world(**world_kw)
    r = SimRover(w, rover, command_timeout_s=None, name=name)
    r.open()
    return r


class SimAttachment:
    """A virtual device reachable as ``sim://NAME``: ``world``, ``sim_rover``, ``device``, ``injector``,
    ``link``, ``url``. :meth:`close` unregisters it."""

    def __init__(self, world, sim_rover, device, injector, link, url, name):
        self.world, self.sim_rover, self.device = world, sim_rover, device
        self.injector, self.link, self.url, self.name = injector, link, url, name

    def inject(self, *faults) -> None:
        self.injector.add(*faults)

    def close(self) -> None:
        unregister(self.name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def attach_sim(name: str, protocol: str = "roboclaw", *, rover="osr", world=None, baud: int | None = None,
               faults=(), time: str = "step", aliases=(), replace: bool = True, clock=None,
               **device_kw) -> SimAttachment:
    """Build a SimRover, its virtual device, a link with a fault injector (seeded from the world) and
    register it as ``sim://name``. ``baud`` models wire time (use a physics step <= 1 ms then)."""
    sim_rover = virtual_rover(rover, world=world)
    w = sim_rover.world
    device = create_device(protocol, sim_rover, **device_kw)
    injector = FaultInjector(faults, rng=w.rng(f"faults.{name}"))
    link = VirtualLink(device, clock=clock if clock is not None else w.clock, injector=injector, baud=baud)
    url = register(name, link, time=time, aliases=aliases, replace=replace)
    return SimAttachment(w, sim_rover, device, injector, link, url, name)


# ----------------------------------------------------------------------------- stepped runs
def run_stepped(world, driver, seconds: float, *, control=None, control_period_s: float = 0.1,
                tick_s: float = 0.001, spin=True, watchdog=True, until=None) -> float:
    """Run a non-threaded driver against the world for ``seconds`` of simulated time, single-threaded.

    Each iteration: the control callback (``control(t_s)``, every ``control_period_s``), one I/O cycle
    (``driver.spin_once()``; its port reads advance the world while they wait), the host watchdog
    (``driver.poll_watchdog()``), then ``world.advance(tick_s)`` if the round took no simulated time
    (a driver that waited on the wire already moved the world). ``spin`` may be a callable to use
    instead (e.g. ``lambda: rover.spin_once(max_reads=1)``, so control runs between transactions as it
    would beside an I/O thread); ``spin=False`` / ``watchdog=False`` leave those out (a dead host: only
    the world and the device run). ``until(t_s) -> bool`` ends the
    run early. Returns the simulated time at the end.
    """
    clock = world.clock
    t_end = clock.now() + float(seconds)
    next_ctl = clock.now()
    while clock.now() < t_end:
        now = clock.now()
        steps0 = world.steps
        if control is not None and now >= next_ctl:
            control(now)
            while next_ctl <= now:
                next_ctl += control_period_s
        if callable(spin):
            spin()
        elif spin:
            driver.spin_once()
        if watchdog:
            driver.poll_watchdog()
        if until is not None and until(clock.now()):
            break
        if world.steps == steps0:            # nothing waited on the wire this round: let time pass
            world.advance(tick_s)
    return clock.now()
