"""MAVLink driver: command-to-wire latency, host-watchdog stop latency and telemetry rates over a pty.

The real :class:`drivers.mavlink.MavlinkRover` (threaded, monotonic clock, pymavlink framing) drives the virtual
ArduPilot rover (:mod:`sim.devices.mavlink`, our own MAVLink codec) served on a real pseudo-terminal. A pty
moves bytes in microseconds whatever baud rate is set, so the virtual link models the wire: 8N1 at the baud
rate shown (a SET_POSITION_TARGET_LOCAL_NED frame is 48-53 bytes: 4.2-4.6 ms at 115200, 8.3-9.2 ms at 57600, a
common telemetry-radio rate). "no wire model" rows show software + pty overhead alone.

* command to wire — ``set_twist()`` called → (client) the frame's ``write()`` returned; (autopilot) the frame's
  last byte reached the virtual autopilot (wire time included). Peer: pymavlink's own
  ``mavutil.mavlink_connection`` on the same pty sending the same velocity targets with
  ``mav.set_position_target_local_ned_send`` (no mode / link / watchdog logic).
* watchdog — last command → zero target written by the watchdog thread, when the control code goes quiet
  (timeout 0.2 s); the requirement is 300 ms at p99. Also measured where the autopilot received it.
* telemetry — message rates the driver actually receives, against what it requested, while it drives at 10 Hz.

    python benchmarks/bench_drivers_mavlink.py [--quick]
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nav  # noqa: E402
import sim.devices as sd  # noqa: E402
from drivers.mavlink import DEFAULT_RATES_HZ, MavlinkRover  # noqa: E402
from sim.devices.mavlink import attach_ardurover, open_ardurover_pty  # noqa: E402

PROFILE = nav.load_rover("skidsteer")


def pct(xs, q):
    return float(np.percentile(np.asarray(xs, dtype=float), q)) if len(xs) else float("nan")


def ms(x):
    return f"{1e3 * x:.2f}"


def device(baud):
    return open_ardurover_pty("skidsteer", world=sd.flat_world(size_m=40.0, cell_size_m=0.1), baud=baud)


def arrival(dev, vxs):
    """Monotonic time each target with speed in ``vxs`` reached the autopilot."""
    out = {}
    for t, s, c, n, f in list(dev.device.requests):
        if n == "SET_POSITION_TARGET_LOCAL_NED":
            key = round(f["vx"], 5)
            if key in vxs and key not in out:
                out[key] = dev.clock.to_monotonic(t)
    return out


def command_latency_driver(n, baud):
    dev = device(baud)
    r = MavlinkRover(dev.path, PROFILE)
    try:
        r.open()
        r.arm()
        stamps = {}
        for i in range(n):
            vx = round(0.10 + 0.0001 * i, 5)
            stamps[vx] = time.monotonic()
            r.set_twist(vx, 0.0)
            time.sleep(0.02 + 0.005 * (i % 3))
        time.sleep(0.1)
        client = list(r.stats.cmd_to_wire_s)[-n:]
        got = arrival(dev, set(stamps))
        wire = [got[v] - t0 for v, t0 in stamps.items() if v in got]
    finally:
        r.close()
        dev.close()
    return client, wire


def command_latency_mavutil(n, baud):
    from pymavlink import mavutil

    dev = device(baud)
    m = mavutil.mavlink_connection(dev.path, baud=115200, source_system=255, source_component=190)
    try:
        m.wait_heartbeat(timeout=3)
        m.mav.command_long_send(1, 1, 176, 0, 1, 15, 0, 0, 0, 0, 0)
        m.mav.command_long_send(1, 1, 400, 0, 1, 0, 0, 0, 0, 0, 0)
        time.sleep(0.2)
        stamps, client = {}, []
        for i in range(n):
            vx = round(0.10 + 0.0001 * i, 5)
            t0 = time.monotonic()
            stamps[vx] = t0
            m.mav.set_position_target_local_ned_send(0, 1, 1, 8, 0x05E7, 0, 0, 0, vx, 0, 0, 0, 0, 0, 0, 0)
            client.append(time.monotonic() - t0)
            m.recv_match(blocking=False)                           # keep its input drained, as a GCS loop does
            time.sleep(0.02 + 0.005 * (i % 3))
        time.sleep(0.1)
        got = arrival(dev, set(stamps))
        wire = [got[v] - t0 for v, t0 in stamps.items() if v in got]
    finally:
        m.close()
        dev.close()
    return client, wire


def watchdog(n, baud):
    dev = device(baud)
    r = MavlinkRover(dev.path, PROFILE)
    wire = []
    try:
        r.open()
        r.arm()
        for i in range(n):
            k = len(r.stats.watchdog_stop_s)
            vx = round(0.12 + 0.0001 * i, 5)
            r.set_twist(vx, 0.0)
            t_cmd = time.monotonic()
            end = t_cmd + 1.0
            while len(r.stats.watchdog_stop_s) == k and time.monotonic() < end:
                time.sleep(0.002)
            time.sleep(0.02 + 0.01 * (i % 4))
            moving = zero = None
            for t, s, c, nm, f in list(dev.device.requests):
                if nm != "SET_POSITION_TARGET_LOCAL_NED":
                    continue
                if round(f["vx"], 5) == vx:
                    moving = t
                elif moving is not None and f["vx"] == 0 and zero is None:
                    zero = t
            if moving is not None and zero is not None:
                wire.append(zero - moving)
        stop, late = list(r.stats.watchdog_stop_s), list(r.stats.watchdog_late_s)
    finally:
        r.close()
        dev.close()
    return stop, late, wire


def telemetry(seconds, baud):
    dev = device(baud)
    r = MavlinkRover(dev.path, PROFILE)
    try:
        r.open()
        r.arm()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            r.set_twist(0.2, 0.1)
            time.sleep(0.1)
        rates = r.read_telemetry().extra["rates_hz"]
        bad = r.stats.bad_crc + r.stats.lost_frames
    finally:
        r.close()
        dev.close()
    return rates, bad


def stepped_speed(sim_seconds):
    dt = 2.0 ** -8
    w = sd.flat_world(size_m=40.0, cell_size_m=0.1, physics_dt_s=dt)
    att = attach_ardurover("bench-mav-step", world=w, baud=115200)
    from drivers.transport import Transport

    tr = Transport(att.url, read_timeout_s=2.0 ** -7, clock=w.clock)
    r = MavlinkRover(att.url, PROFILE, clock=w.clock, threaded=False, transport=tr, io_timeout_s=2.0 ** -7)
    r.open()
    r.arm()
    t0 = time.perf_counter()
    sd.run_stepped(w, r, sim_seconds, control=lambda t: r.set_twist(0.2, 0.0), tick_s=dt)
    real = time.perf_counter() - t0
    frames = r.stats.frames_in
    r.close()
    att.close()
    return sim_seconds / real, frames / sim_seconds


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short runs (about 15 s in total)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    q = args.quick
    n_cmd = 40 if q else 200
    n_wd = 10 if q else 60
    secs = 2.0 if q else 6.0

    print("Setup: MavlinkRover (threaded, pymavlink framing) on a real pty served by the virtual ArduPilot rover "
          "(our MAVLink codec); wire time modelled by the virtual link at the baud rate shown.\n")
    print("### Command to wire (SET_POSITION_TARGET_LOCAL_NED)\n")
    print("Peer: pymavlink `mavutil.mavlink_connection` on the same pty sending the same targets. Ratio = peer / "
          "MavlinkRover at the autopilot, p50 (> 1: MavlinkRover is faster).\n")
    print("| link | client | samples | call -> write returned p50 ms | p99 ms | call -> at the autopilot p50 ms "
          "| p99 ms | ratio p50 |")
    print("|---|---|---|---|---|---|---|---|")
    for label, baud in (("115200 baud wire model", 115200), ("57600 baud wire model", 57600),
                        ("no wire model (pty only)", None)):
        c1, w1 = command_latency_driver(n_cmd, baud)
        c2, w2 = command_latency_mavutil(n_cmd, baud)
        print(f"| {label} | MavlinkRover | {len(w1)} | {ms(pct(c1, 50))} | {ms(pct(c1, 99))} | {ms(pct(w1, 50))} | "
              f"{ms(pct(w1, 99))} | 1.00 |")
        print(f"| {label} | pymavlink mavutil | {len(w2)} | {ms(pct(c2, 50))} | {ms(pct(c2, 99))} | "
              f"{ms(pct(w2, 50))} | {ms(pct(w2, 99))} | {pct(w2, 50) / pct(w1, 50):.2f} |")
    print(f"\nWire time alone: a 53-byte target {ms(530 / 115200)} ms at 115200 baud, {ms(530 / 57600)} ms at 57600 "
          f"(the autopilot's telemetry shares the downlink, not the uplink).\n")

    print("### Host watchdog (timeout 0.2 s, requirement: zero on the wire within 300 ms at p99)\n")
    print("| link | samples | last command -> zero written p50 ms | p99 ms | max ms | lateness after the deadline "
          "p99 ms | at the autopilot: last target -> zero p99 ms |")
    print("|---|---|---|---|---|---|---|")
    for label, baud in (("115200 baud wire model", 115200), ("57600 baud wire model", 57600)):
        stop, late, wire = watchdog(n_wd, baud)
        print(f"| {label} | {len(stop)} | {ms(pct(stop, 50))} | {ms(pct(stop, 99))} | {ms(max(stop))} | "
              f"{ms(pct(late, 99))} | {ms(pct(wire, 99))} |")

    print("\n### Telemetry achieved while driving at 10 Hz\n")
    names = list(DEFAULT_RATES_HZ)
    rows = {}
    for label, baud in (("115200", 115200), ("57600", 57600)):
        rows[label] = telemetry(secs, baud)
    print("| message | requested Hz | " + " | ".join(f"achieved Hz @ {k} baud" for k in rows) + " |")
    print("|---|---|" + "---|" * len(rows))
    for nm in names:
        print(f"| {nm} | {DEFAULT_RATES_HZ[nm]:g} | " +
              " | ".join(f"{rows[k][0].get(nm, float('nan')):.1f}" for k in rows) + " |")
    print("\nFrames lost or corrupted: " + ", ".join(f"{rows[k][1]} at {k} baud" for k in rows) + ".\n")

    print("### sim:// step mode (simulated time, 115200 baud wire model, 3.9 ms physics)\n")
    speed, fps = stepped_speed(3.0 if q else 10.0)
    print(f"Simulated seconds per real second: {speed:.1f}; MAVLink frames received per simulated second: {fps:.0f}.")


if __name__ == "__main__":
    main()
