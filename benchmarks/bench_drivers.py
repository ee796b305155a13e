"""Serial drivers: command-to-wire latency, poll round trip, control-loop rate of a six-motor RoboClaw bus.

The real :class:`drivers.roboclaw.RoboClawRover` (threaded, monotonic clock) drives the virtual RoboClaw bus
of the JPL Open Source Rover (three controllers 0x80-0x82, six drive motors) served on a real pseudo-terminal
(:mod:`sim.devices.pty`). A pty moves bytes in microseconds whatever baud rate is set, so the virtual link
models the wire: 8N1 at 115200 baud (87 µs per byte), half duplex, request then reply. Rows marked
"no wire model" show the software + pty overhead alone; rows with the 16 ms USB latency timer add an
FTDI-style bridge that releases received bytes on a 16 ms grid.

* command to wire — ``set_wheels()`` called → (driver) the first packet's ``write()`` returned;
  (device) the packet's last byte reached the virtual controller (wire time included).
* poll round trip — read request written → reply parsed (encoder, speed and slow reads).
* control loop — full I/O cycles per second (3 speed commands when a new one is pending, 9 polls:
  encoders 78 + speeds 18/19 per controller, plus one slow read) with the cycle period at 0 (as fast as
  the bus allows) and at the default 20 ms; jitter = standard deviation and p99 - p50 of cycle periods.
* watchdog — last command → zero speed written, when the control code goes quiet (timeout 0.2 s);
  the requirement is 300 ms at p99.

    python benchmarks/bench_drivers.py [--quick]
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
from drivers.roboclaw import RoboClawRover  # noqa: E402
from drivers.roboclaw_codec import Cmd  # noqa: E402
from sim.devices.faults import UsbLatencyTimer  # noqa: E402
from sim.devices.pty import open_pty_device  # noqa: E402

PROFILE = nav.load_rover("osr")
SPEED_CMDS = (int(Cmd.SPEED_ACCEL_M1M2), int(Cmd.SPEED_M1M2))


def pct(xs, q):
    return float(np.percentile(np.asarray(xs, dtype=float), q)) if len(xs) else float("nan")


def ms(x):
    return f"{1e3 * x:.2f}"


def rig(baud=115200, usb_timer=False, **driver_kw):
    dev = open_pty_device("roboclaw", "osr", world=sd.flat_world(size_m=40.0, cell_size_m=0.1), baud=baud)
    if usb_timer:
        dev.inject(UsbLatencyTimer(timer_s=0.016))
    r = RoboClawRover(dev.path, PROFILE, **driver_kw)
    r.open()
    r.arm()
    return dev, r


def command_latency(n, baud, usb_timer=False):
    dev, r = rig(baud, usb_timer)
    speeds = np.linspace(1.0, 3.0, n)
    stamps = []
    try:
        time.sleep(0.1)
        for i, v in enumerate(speeds):
            t = time.monotonic()
            r.set_wheels(np.full(6, v))
            stamps.append((t, int(round(v * PROFILE.drive.encoder_counts_per_rev / (2 * np.pi)))))
            time.sleep(0.02 + 0.005 * (i % 3))           # 20-30 ms, never in phase with the I/O cycle
        time.sleep(0.1)
        driver = list(r.stats.cmd_to_wire_s)
        reqs = [(t, args) for t, a, c, args in list(dev.device.requests) if a == 0x80 and c in SPEED_CMDS]
        device = []
        for t0, pps in stamps:
            hit = [t for t, args in reqs if args[-1] == pps]
            if hit:
                device.append(dev.clock.to_monotonic(hit[0]) - t0)
        rtt = list(r.stats.poll_rtt_s)
    finally:
        r.close()
        dev.close()
    return driver, device, rtt


def loop_rate(seconds, baud, period, usb_timer=False):
    dev, r = rig(baud, usb_timer, cycle_period_s=period)
    try:
        end = time.monotonic() + seconds
        c0 = r.stats.cycles
        t0 = time.monotonic()
        k = 0
        while time.monotonic() < end:
            r.set_twist(0.15 + 0.01 * (k % 5), 0.0)         # 50 Hz fresh commands
            k += 1
            time.sleep(0.02)
        cycles = r.stats.cycles - c0
        dt = time.monotonic() - t0
        per = list(r.stats.cycle_s)
        per = per[5:] if len(per) > 20 else per[1:]
        delivered = r.stats.commands_delivered
        failures = r.stats.failed_polls
    finally:
        r.close()
        dev.close()
    return cycles / dt, per, delivered / dt, failures


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
    att = sd.attach_sim("bench-step", world=w, baud=115200)
    r = RoboClawRover(att.url, PROFILE, clock=w.clock, threaded=False)
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
    ap.add_argument("--quick", action="store_true", help="short runs (about 10 s in total)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    q = args.quick
    n_cmd = 40 if q else 200
    secs = 1.5 if q else 5.0
    n_wd = 10 if q else 60

    print("Setup: RoboClawRover (threaded) on a real pty served by the virtual OSR RoboClaw bus "
          "(3 controllers, 6 motors); wire time modelled by the virtual link at 115200 baud 8N1 unless noted.\n")

    print("### Command to wire and poll round trip\n")
    print("Samples: commands issued at 20-30 ms intervals; on the slow link some are overtaken by a newer one "
          "before they reach 0x80 and never go on the wire (fewer samples).\n")
    print("| link | samples | driver p50 ms | driver p99 ms | device p50 ms | device p99 ms | poll RTT p50 ms "
          "| poll RTT p99 ms |")
    print("|---|---|---|---|---|---|---|---|")
    for label, baud, usb in (("115200 baud wire model", 115200, False), ("no wire model (pty only)", None, False),
                             ("115200 + 16 ms USB latency timer", 115200, True)):
        drv, dv, rtt = command_latency(n_cmd, baud, usb)
        print(f"| {label} | {len(drv)} | {ms(pct(drv, 50))} | {ms(pct(drv, 99))} | {ms(pct(dv, 50))} | "
              f"{ms(pct(dv, 99))} | {ms(pct(rtt, 50))} | {ms(pct(rtt, 99))} |")
    wire_cmd = 14 * 10 / 115200
    wire_enc = 12 * 10 / 115200
    print(f"\nWire time alone: speed command with acceleration (40, 14 bytes) {ms(wire_cmd)} ms; "
          f"read both encoders (78, 2 + 10 bytes) {ms(wire_enc)} ms.\n")

    print("### Control-loop rate, six-motor bus\n")
    print("| link | cycle period | cycles/s | commands delivered/s | period mean ms | jitter sd ms "
          "| p99 - p50 ms | failed transactions |")
    print("|---|---|---|---|---|---|---|---|")
    for label, baud, usb in (("115200 baud wire model", 115200, False), ("no wire model (pty only)", None, False),
                             ("115200 + 16 ms USB latency timer", 115200, True)):
        for period in (0.0, 0.02):
            rate, per, cmd_rate, fails = loop_rate(secs, baud, period, usb)
            sd_ms = statistics.pstdev(per) * 1e3 if len(per) > 1 else float("nan")
            print(f"| {label} | {'free-running' if period == 0 else f'{period * 1e3:.0f} ms'} | {rate:.1f} | "
                  f"{cmd_rate:.1f} | {ms(statistics.fmean(per)) if per else 'nan'} | {sd_ms:.2f} | "
                  f"{ms(pct(per, 99) - pct(per, 50))} | {fails} |")
    bytes_cycle = 3 * 14 + 3 + 3 * (12 + 9 + 9) + 6
    print(f"\nWire-bound ceiling at 115200 baud: ~{bytes_cycle} bytes per cycle with a command "
          f"= {ms(bytes_cycle * 10 / 115200)} ms -> {115200 / 10 / bytes_cycle:.0f} cycles/s.\n")

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
