"""RNP driver: command-to-wire latency, poll round trip, host-watchdog stop latency, control-loop rate and jitter.

The real :class:`drivers.rnp.RnpRover` (threaded, monotonic clock) drives the virtual RNP board
(:class:`sim.devices.rnp.VirtualRnpDevice`, the reference firmware's protocol core) of the 4-wheel skid-steer
profile, served on a real pseudo-terminal (:mod:`sim.devices.pty`). A pty moves bytes in microseconds whatever
the baud rate, so the virtual link models the wire: 8N1 at 115200 baud (87 µs per byte), request then reply.
Rows marked "no wire model" show the software + pty overhead alone; rows with the 16 ms USB latency timer add an
FTDI-style bridge that releases received bytes on a 16 ms grid (CH340 / CP210x / the Uno's 16U2 have their own
buffering; an FTDI's timer can be lowered to 1 ms).

* command to wire — ``set_wheels()`` called → (driver) the SET_WHEELS frame's ``write()`` returned; (board) the
  frame's last byte reached the virtual board (wire time included).
* poll round trip — HEARTBEAT written → TELEMETRY parsed (8 + 62 bytes on the wire for 4 wheels);
  SET_WHEELS round trip likewise (25 + 62 bytes).
* control loop — I/O cycles per second (one transaction each: SET_WHEELS when a fresh command is pending, else
  HEARTBEAT; every one returns the full TELEMETRY) with the cycle period at 0 (as fast as the link allows) and at
  the default 20 ms, commands at 50 Hz; jitter = standard deviation and p99 - p50 of cycle periods.
* host watchdog — last command → zero speed written, when the control code goes quiet (timeout 0.2 s); the
  requirement is 300 ms at p99.
* peers — the same 6-wheel rover (JPL OSR profile) on RNP (one board, 6 channels) and on the RoboClaw bus (three
  controllers): full telemetry updates per second, same wire speed, same run.

    python benchmarks/bench_drivers_rnp.py [--quick]
"""
from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nav  # noqa: E402
import sim.devices as sd  # noqa: E402
from drivers.rnp import RnpRover  # noqa: E402
from drivers.roboclaw import RoboClawRover  # noqa: E402
from sim.devices.faults import UsbLatencyTimer  # noqa: E402
from sim.devices.pty import open_pty_device  # noqa: E402

SET_WHEELS = 0x02


def pct(xs, q):
    return float(np.percentile(np.asarray(xs, dtype=float), q)) if len(xs) else float("nan")


def ms(x):
    return f"{1e3 * x:.2f}"


def rig(baud=115200, usb_timer=False, rover="skidsteer", driver=RnpRover, protocol="rnp", **driver_kw):
    dev = open_pty_device(protocol, rover, world=sd.flat_world(size_m=40.0, cell_size_m=0.1), baud=baud)
    if usb_timer:
        dev.inject(UsbLatencyTimer(timer_s=0.016))
    r = driver(dev.path, nav.load_rover(rover), **driver_kw)
    r.open()
    r.arm()
    return dev, r


def command_latency(n, baud, usb_timer=False):
    dev, r = rig(baud, usb_timer)
    cps = r.layout.counts_per_rev / (2 * np.pi)
    speeds = np.linspace(1.0, 3.0, n)
    stamps = []
    try:
        time.sleep(0.1)
        for i, v in enumerate(speeds):
            t = time.monotonic()
            r.set_wheels(np.full(4, v))
            stamps.append((t, int(round(v * cps))))
            time.sleep(0.02 + 0.005 * (i % 3))           # 20-30 ms, never in phase with the I/O cycle
        time.sleep(0.1)
        driver = list(r.stats.cmd_to_wire_s)
        reqs = [(t, p) for t, mt, s, p in list(dev.device.requests) if mt == SET_WHEELS and len(p) == 17]
        board = []
        for t0, c in stamps:
            hit = [t for t, p in reqs if int.from_bytes(p[1:5], "little", signed=True) == c]
            if hit:
                board.append(dev.clock.to_monotonic(hit[0]) - t0)
        poll, cmd = list(r.stats.poll_rtt_s), list(r.stats.cmd_rtt_s)
    finally:
        r.close()
        dev.close()
    return driver, board, poll, cmd


def loop_rate(seconds, baud, period, usb_timer=False, rover="skidsteer", driver=RnpRover, protocol="rnp"):
    dev, r = rig(baud, usb_timer, rover=rover, driver=driver, protocol=protocol, cycle_period_s=period)
    try:
        c0 = r.stats.cycles
        s0 = r.read_telemetry().seq
        t0 = time.monotonic()
        end = t0 + seconds
        k = 0
        while time.monotonic() < end:
            r.set_twist(0.15 + 0.01 * (k % 5), 0.0)         # 50 Hz fresh commands
            k += 1
            time.sleep(0.02)
        dt = time.monotonic() - t0
        cycles = r.stats.cycles - c0
        updates = r.read_telemetry().seq - s0
        per = list(r.stats.cycle_s)
        per = per[5:] if len(per) > 20 else per[1:]
        delivered = r.stats.commands_delivered
        failures = r.stats.failed_polls
    finally:
        r.close()
        dev.close()
    return cycles / dt, updates / dt, per, delivered / dt, failures


def watchdog(n):
    dev, r = rig(115200)
    try:
        for i in range(n):
            k = len(r.stats.watchdog_stop_s)
            r.set_twist(0.15, 0.0)
            end = time.monotonic() + 1.0
            while len(r.stats.watchdog_stop_s) == k and time.monotonic() < end:
                time.sleep(0.002)
            time.sleep(0.01 * (i % 4))
        stop = list(r.stats.watchdog_stop_s)
        late = list(r.stats.watchdog_late_s)
    finally:
        r.close()
        dev.close()
    return stop, late


def stepped_speed(sim_seconds):
    w = sd.flat_world(size_m=40.0, cell_size_m=0.1, physics_dt_s=0.001)
    att = sd.attach_sim("bench-rnp-step", "rnp", rover="skidsteer", world=w, baud=115200)
    r = RnpRover(att.url, nav.load_rover("skidsteer"), clock=w.clock, threaded=False)
    r.open()
    r.arm()
    t0 = time.perf_counter()
    sd.run_stepped(w, r, sim_seconds, control=lambda t: r.set_twist(0.2, 0.0))
    real = time.perf_counter() - t0
    cycles = r.stats.cycles
    r.close()
    att.close()
    return sim_seconds / real, cycles / sim_seconds


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short runs (about 20 s in total)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    q = args.quick
    n_cmd = 40 if q else 200
    secs = 1.5 if q else 5.0
    n_wd = 10 if q else 60

    print("Setup: RnpRover (threaded) on a real pty served by the virtual RNP board (skid-steer, 4 channels); "
          "wire time modelled by the virtual link at 115200 baud 8N1 unless noted.\n")

    print("### Command to wire and round trips\n")
    print("| link | samples | driver p50 ms | driver p99 ms | board p50 ms | board p99 ms | HEARTBEAT RTT p50 ms "
          "| p99 ms | SET_WHEELS RTT p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for label, baud, usb in (("115200 baud wire model", 115200, False), ("no wire model (pty only)", None, False),
                             ("115200 + 16 ms USB latency timer", 115200, True)):
        drv, board, poll, cmd = command_latency(n_cmd, baud, usb)
        print(f"| {label} | {len(drv)} | {ms(pct(drv, 50))} | {ms(pct(drv, 99))} | {ms(pct(board, 50))} | "
              f"{ms(pct(board, 99))} | {ms(pct(poll, 50))} | {ms(pct(poll, 99))} | {ms(pct(cmd, 50))} | "
              f"{ms(pct(cmd, 99))} |")
    print(f"\nWire time alone at 115200 baud: HEARTBEAT + TELEMETRY (8 + 62 bytes) {ms(70 * 10 / 115200)} ms; "
          f"SET_WHEELS + TELEMETRY (25 + 62 bytes) {ms(87 * 10 / 115200)} ms.\n")

    print("### Control-loop rate (commands at 50 Hz)\n")
    print("| link | cycle period | cycles/s | telemetry updates/s | commands delivered/s | period mean ms "
          "| jitter sd ms | p99 - p50 ms | failed transactions |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, baud, usb in (("115200 baud wire model", 115200, False), ("no wire model (pty only)", None, False),
                             ("115200 + 16 ms USB latency timer", 115200, True)):
        for period in (0.0, 0.02):
            rate, upd, per, cmd_rate, fails = loop_rate(secs, baud, period, usb)
            sd_ms = statistics.pstdev(per) * 1e3 if len(per) > 1 else float("nan")
            print(f"| {label} | {'free-running' if period == 0 else f'{period * 1e3:.0f} ms'} | {rate:.1f} | "
                  f"{upd:.1f} | {cmd_rate:.1f} | {ms(statistics.fmean(per)) if per else 'nan'} | {sd_ms:.2f} | "
                  f"{ms(pct(per, 99) - pct(per, 50))} | {fails} |")
    print(f"\nWire-bound ceiling at 115200 baud: 70-87 bytes per cycle = {ms(70e-4 / 1.152)}-{ms(87e-4 / 1.152)} ms "
          f"-> {115200 / 10 / 87:.0f}-{115200 / 10 / 70:.0f} cycles/s.\n")

    print("### Peers: the same 6-wheel rover (JPL OSR profile) on RNP and on the RoboClaw bus\n")
    print("Free-running I/O, 115200 baud wire model, commands at 50 Hz. A RoboClaw cycle is a command pass + 9 "
          "reads (3 controllers); an RNP cycle is one transaction returning all 6 wheels.\n")
    print("| protocol | telemetry updates/s | commands delivered/s | cycle p50 ms | cycle p99 ms | failed |")
    print("|---|---|---|---|---|---|")
    peers = {}
    for label, drv, proto in (("RNP (1 board, 6 channels)", RnpRover, "rnp"),
                              ("RoboClaw (3 controllers)", RoboClawRover, "roboclaw")):
        rate, upd, per, cmd_rate, fails = loop_rate(secs, 115200, 0.0, rover="osr", driver=drv, protocol=proto)
        peers[proto] = upd
        print(f"| {label} | {upd:.1f} | {cmd_rate:.1f} | {ms(pct(per, 50))} | {ms(pct(per, 99))} | {fails} |")
    print(f"\nRNP / RoboClaw telemetry update rate: {peers['rnp'] / peers['roboclaw']:.2f}x.\n")

    print("### Host watchdog (timeout 0.2 s, requirement: zero on the wire within 300 ms at p99)\n")
    stop, late = watchdog(n_wd)
    print("| samples | last command -> zero p50 ms | p99 ms | max ms | lateness after the deadline p99 ms |")
    print("|---|---|---|---|---|")
    print(f"| {len(stop)} | {ms(pct(stop, 50))} | {ms(pct(stop, 99))} | {ms(max(stop))} | {ms(pct(late, 99))} |\n")

    print("### sim:// step mode (simulated time, wire modelled, 1 ms physics)\n")
    speed, cyc = stepped_speed(3.0 if q else 10.0)
    print(f"Simulated seconds per real second: {speed:.1f}; I/O cycles per simulated second: {cyc:.1f}.")


if __name__ == "__main__":
    main()
