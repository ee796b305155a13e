"""RnpRover against the virtual RNP board over sim://, single-threaded on simulated time (deterministic).

Counts per second are checked against the formula ``rint(rad/s × counts_per_rev / 2π)``; what went on the
wire is read from the board's request log (frames as the firmware core parsed them, with their payloads
decoded here by hand with struct, in the layouts of drivers/PROTOCOL.md).
"""
import dataclasses
import math
import struct

import numpy as np
import pytest

import nav
import sim.devices as sd
from drivers import Fault, open_rover
from drivers.errors import DeviceFault, DeviceTimeout, EStopActive, LinkLost
from drivers.kinematics import WheelLayout
from drivers.rnp import RnpRover, check_channels
from sim.devices.faults import BitFlips, Silence, VirtualLink
from sim.devices.rnp import VirtualRnpDevice

PROFILE = nav.load_rover("skidsteer")
LAYOUT = WheelLayout.from_profile(PROFILE)
CPS = LAYOUT.counts_per_rev / (2 * math.pi)
HELLO, SET_WHEELS, SET_WATCHDOG, HEARTBEAT, ESTOP, ARM, DISARM = 1, 2, 3, 4, 5, 6, 7

_n = [0]


def rig(faults=(), device_kw=None, profile=PROFILE, **driver_kw):
    _n[0] += 1
    w = sd.flat_world(size_m=30.0, cell_size_m=0.1, physics_dt_s=0.001)
    att = sd.attach_sim(f"rnpdrv{_n[0]}", "rnp", rover=profile, world=w, baud=115200, faults=faults,
                        **(device_kw or {}))
    driver_kw.setdefault("threaded", False)
    r = RnpRover(att.url, profile, clock=w.clock, **driver_kw)
    return att, r


def run(att, r, seconds, control=None, period=0.1):
    return sd.run_stepped(att.world, r, seconds, control=control, control_period_s=period)


def frames(att, msg_type=None, since_s=-math.inf):
    return [(t, mt, seq, p) for t, mt, seq, p in list(att.device.requests)
            if (msg_type is None or mt == msg_type) and t >= since_s]


def speeds(payload):
    n = payload[0]
    return struct.unpack_from(f"<{n}i", payload, 1)


def nonzero_wheels(att, since_s=-math.inf):
    return [f for f in frames(att, SET_WHEELS, since_s) if any(speeds(f[3]))]


@pytest.fixture
def opened():
    att, r = rig()
    r.open()
    r.arm()
    yield att, r
    r.close()
    att.close()


# ----------------------------------------------------------------------------- connect
def test_open_runs_the_session_and_arm_arms():
    att, r = rig()
    r.open()
    log = frames(att)
    assert [f[1] for f in log] == [HELLO, SET_WATCHDOG, HEARTBEAT]
    assert struct.unpack("<H", log[1][3]) == (300,) and att.device.core.watchdog_ms == 300
    assert r.info.n_wheels == 4 and r.info.counts_per_rev == 1440 and r.link_up
    assert not att.device.core.armed and not att.device.core.flags & 0x0004      # HELLO cleared REBOOTED
    tel = r.read_telemetry()
    assert tel.faults == Fault.NONE and tel.extra["device"]["watchdog_ms"] == 300 and tel.imu is None
    r.arm()
    assert [f[1] for f in frames(att)][3:] == [ARM, HEARTBEAT] and att.device.core.armed
    seqs = [f[2] for f in frames(att)]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))                     # one new seq per frame
    r.close()
    assert frames(att)[-1][1] == DISARM and not att.device.core.armed
    att.close()


def test_open_with_nothing_answering_is_refused():
    att, r = rig(faults=[Silence()])
    t0 = att.world.clock.now()
    with pytest.raises(DeviceTimeout) as ei:
        r.open()
    msg = str(ei.value)
    assert msg.startswith(att.url) and "HELLO" in msg and "115200" in msg
    assert att.world.clock.now() - t0 >= 2.5                    # an AVR board is blind 1-2 s after the port opens
    assert r.closed
    att.close()


@pytest.mark.parametrize("device_kw,match", [
    (dict(counts_per_rev=1000), "1000 encoder counts per wheel revolution, the rover profile 1440"),
    (dict(channels=[("front_left", "rear_left"), ("front_right", "rear_right")]), "2 motor channels"),
])
def test_a_firmware_that_disagrees_with_the_profile_is_refused(device_kw, match):
    att, r = rig(device_kw=device_kw)
    with pytest.raises(DeviceFault, match=match):
        r.open()
    att.close()


# ----------------------------------------------------------------------------- commands
def test_wheel_speeds_go_out_as_counts_per_second(opened):
    att, r = opened
    speed = np.array([1.0, 2.5, -3.0, -0.4])
    r.set_wheels(speed)
    r.spin_once()
    (f,) = frames(att, SET_WHEELS)
    assert speeds(f[3]) == tuple(int(v) for v in np.rint(speed * CPS))
    np.testing.assert_array_equal(att.device.targets_cps(), np.rint(speed * CPS))
    assert r.stats.commands_delivered == 1 and len(r.stats.cmd_to_wire_s) == 1


def test_twist_drives_the_rover_and_telemetry_reports_it(opened):
    att, r = opened
    start = r.read_telemetry().encoder_counts.copy()
    angle0 = att.sim_rover.model.wheel_angle_rad.copy()
    run(att, r, 1.5, control=lambda t: r.set_twist(0.3, 0.0))
    tel = r.read_telemetry()
    turned = (att.sim_rover.model.wheel_angle_rad - angle0) * CPS
    assert np.all(np.abs(tel.encoder_counts - start - turned) < 0.03 * 6.0 * CPS)   # within a cycle of travel
    np.testing.assert_allclose(tel.wheel_speed_radps, 0.3 / LAYOUT.wheel_radius_m, rtol=2e-3)
    assert np.all(tel.motor_current_a >= 0) and tel.battery.voltage_v == pytest.approx(8.39, abs=0.05)
    assert tel.faults == Fault.NONE and tel.armed and tel.seq > 10
    assert np.all(tel.steer_rad == 0.0)
    assert att.sim_rover.truth().x_m > 15.0 + 0.3


def test_each_command_goes_on_the_wire_once_and_polls_feed_the_board(opened):
    att, r = opened
    r.set_wheels(np.full(4, 2.0))
    run(att, r, 0.15)                                            # under the host watchdog
    assert len(frames(att, SET_WHEELS)) == 1 and r.stats.commands_delivered == 1
    assert len(frames(att, HEARTBEAT)) > 20


def test_a_stale_command_is_never_sent(opened):
    att, r = opened
    r.set_wheels(np.full(4, 2.0))
    att.world.advance(0.25)                      # the I/O cycle comes too late: command older than 0.2 s
    r.spin_once()
    assert not nonzero_wheels(att) and not att.device.targets_cps().any()
    assert r.gate.dropped_stale == 1


def test_stop_and_estop_go_on_the_wire_synchronously(opened):
    att, r = opened
    run(att, r, 0.3, control=lambda t: r.set_twist(0.2, 0.0))
    assert att.device.targets_cps().all()
    r.stop()
    assert not att.device.targets_cps().any() and not any(speeds(frames(att, SET_WHEELS)[-1][3]))
    run(att, r, 0.3, control=lambda t: r.set_twist(0.2, 0.0))
    assert att.device.targets_cps().all()
    r.estop()
    assert frames(att)[-1][1] == ESTOP and att.device.core.estop_latched and not att.device.targets_cps().any()
    with pytest.raises(EStopActive):
        r.set_twist(0.2, 0.0)
    run(att, r, 0.1)
    assert Fault.ESTOP in r.read_telemetry().faults
    r.arm()
    assert not att.device.core.estop_latched
    run(att, r, 0.5)                             # armed again, but no fresh command yet: still stopped
    assert not att.device.targets_cps().any() and Fault.ESTOP not in r.read_telemetry().faults
    run(att, r, 0.3, control=lambda t: r.set_twist(0.2, 0.0))
    assert att.device.targets_cps().all()


def test_host_watchdog_on_simulated_time(opened):
    att, r = opened
    run(att, r, 1.0, control=lambda t: r.set_twist(0.2, 0.0))
    last = r.last_command_s
    run(att, r, 0.5)
    assert len(r.stats.watchdog_stop_s) == 1 and 0.2 <= r.stats.watchdog_stop_s[0] < 0.23
    zeros = [f for f in frames(att, SET_WHEELS, since_s=last) if not any(speeds(f[3]))]
    assert zeros and 0.2 <= zeros[0][0] - last < 0.23 and not att.device.targets_cps().any()
    assert Fault.WATCHDOG in r.read_telemetry().faults
    assert not [e for e in att.device.events if e[1] == "watchdog"]     # the host stopped it first
    r.set_twist(0.2, 0.0)
    assert Fault.WATCHDOG not in r.read_telemetry().faults


# ----------------------------------------------------------------------------- link loss, reboots, NACKs
def test_three_failed_polls_mean_link_lost_and_recovery_needs_a_fresh_command(opened):
    att, r = opened
    run(att, r, 0.3, control=lambda t: r.set_twist(0.2, 0.0))
    t0 = att.world.clock.now()
    att.inject(Silence(start_s=t0, end_s=t0 + 0.6))
    failed0 = r.stats.failed_polls
    while r.link_up:
        r.spin_once()
    assert r.stats.failed_polls - failed0 == 3 and r.stats.link_losses == 1
    assert "3 failed polls in a row" in r.link_reason
    tel = r.read_telemetry()
    assert Fault.LINK_LOST in tel.faults and np.isnan(tel.wheel_speed_radps).all()
    r.set_twist(0.2, 0.0)                        # accepted, dropped: the rover is treated as stopped
    assert r.stats.dropped_commands == 1
    with pytest.raises(LinkLost, match=att.url):
        r.arm()
    sd.run_stepped(att.world, r, 0.5, spin=False)            # the board's own watchdog stops the wheels
    assert not att.device.moving and [e for e in att.device.events if e[1] == "watchdog"]
    run(att, r, 1.0)
    assert r.link_up and r.stats.reconnects == 1
    t_up = [t for t, k, _ in r.events if k == "reconnected"][0]
    kinds = [f[1] for f in frames(att, since_s=t0 + 0.6)]
    assert kinds[:5] == [HELLO, SET_WATCHDOG, HEARTBEAT, ARM, HEARTBEAT] and att.device.core.armed
    assert not nonzero_wheels(att, since_s=t_up)                 # nothing stale resent
    run(att, r, 0.3, control=lambda t: r.set_twist(0.2, 0.0))
    assert att.device.targets_cps().all()


def test_port_vanishing_is_link_lost_and_it_returns_under_a_new_name():
    att, r = rig(candidates=lambda: sd.urls("rnpdrv*"))
    r.open()
    r.arm()
    run(att, r, 0.1)
    sd.unplug(att.name)
    run(att, r, 0.1)
    assert not r.link_up and "vanished" in r.link_reason and r.transport.lost
    new = sd.replug(att.name)
    run(att, r, 1.0)
    assert r.link_up and r.stats.reconnects == 1 and r.transport.current_url == new != att.url
    run(att, r, 0.3, control=lambda t: r.set_twist(0.2, 0.0))
    assert att.device.targets_cps().all()
    r.close()
    sd.unregister(new.split("://")[1])


def test_a_reboot_is_seen_and_the_session_reestablished(opened):
    att, r = opened
    att.device.boot_s = 0.0
    run(att, r, 0.5, control=lambda t: r.set_twist(0.2, 0.0))
    t0 = att.world.clock.now()
    att.device.reboot()
    assert att.device.core.watchdog_ms == 500 and not att.device.moving
    run(att, r, 0.2)
    assert r.stats.reboots == 1 and any(k == "reboot" for _, k, _ in r.events) and r.link_up
    assert [f[1] for f in frames(att, since_s=t0)][1:5] == [HELLO, SET_WATCHDOG, HEARTBEAT, ARM]
    assert att.device.core.watchdog_ms == 300 and att.device.core.armed
    assert not nonzero_wheels(att, since_s=t0)                  # no motion until a fresh command
    run(att, r, 0.3, control=lambda t: r.set_twist(0.2, 0.0))
    assert att.device.targets_cps().all()


def test_a_reboot_during_a_link_outage_is_seen_at_reconnect(opened):
    att, r = opened
    run(att, r, 0.3, control=lambda t: r.set_twist(0.2, 0.0))
    att.device.reboot()                                          # 0.25 s bootloader silence: link lost first
    run(att, r, 1.5)
    assert r.stats.link_losses == 1 and r.stats.reconnects == 1 and r.stats.reboots == 1
    assert att.device.core.watchdog_ms == 300 and att.device.core.armed and not att.device.moving


def test_disarmed_behind_the_hosts_back_the_session_is_reestablished(opened):
    att, r = opened
    run(att, r, 0.3, control=lambda t: r.set_twist(0.2, 0.0))
    att.device.core.rx(bytes.fromhex("04 01 01 02 04 01 a4 a2 00"), 0)     # another program's HELLO
    run(att, r, 0.3, control=lambda t: r.set_twist(0.2, 0.0))
    assert r.stats.resyncs == 1 and att.device.core.armed and att.device.targets_cps().all()


def test_hardware_estop_latch_needs_arm(opened):
    att, r = opened
    run(att, r, 0.3, control=lambda t: r.set_twist(0.2, 0.0))
    att.device.press_estop()
    run(att, r, 0.3, control=lambda t: r.set_twist(0.2, 0.0))
    tel = r.read_telemetry()
    assert Fault.ESTOP in tel.faults and not att.device.targets_cps().any() and r.stats.dropped_commands > 0
    with pytest.raises(DeviceFault, match="e-stop input is still active"):
        r.arm()
    att.device.press_estop(False)
    run(att, r, 0.3, control=lambda t: r.set_twist(0.2, 0.0))
    assert not att.device.targets_cps().any()                   # latched until arm()
    r.arm()
    run(att, r, 0.3, control=lambda t: r.set_twist(0.2, 0.0))
    assert att.device.targets_cps().all() and Fault.ESTOP not in r.read_telemetry().faults


def test_a_nack_of_disagreement_is_a_device_fault_not_retried(opened):
    att, r = opened
    att.device.core.max_speed_cps = 10                           # the firmware suddenly disagrees
    run(att, r, 0.5, control=lambda t: r.set_twist(0.2, 0.0))
    tel = r.read_telemetry()
    assert Fault.DEVICE_FAULT in tel.faults and "OUT_OF_RANGE" in tel.extra["config_fault"]
    assert len(frames(att, SET_WHEELS)) == 1 and r.stats.nacks == 1       # no blind retries
    with pytest.raises(DeviceFault, match="OUT_OF_RANGE"):
        r.arm()


def test_device_driver_fault_stops_until_cleared(opened):
    att, r = opened
    run(att, r, 0.3, control=lambda t: r.set_twist(0.2, 0.0))
    att.device.set_error_flags(0x0020)
    run(att, r, 0.3, control=lambda t: r.set_twist(0.2, 0.0))
    assert Fault.DEVICE_FAULT in r.read_telemetry().faults and not att.device.moving and r.stats.dropped_commands
    with pytest.raises(DeviceFault, match="DRIVER_FAULT"):
        r.arm()
    att.device.set_error_flags(0x0080)                          # only a warning now
    run(att, r, 0.3, control=lambda t: r.set_twist(0.2, 0.0))
    tel = r.read_telemetry()
    assert Fault.OVERTEMP in tel.faults and Fault.DEVICE_FAULT not in tel.faults and att.device.moving


def test_corruption_on_the_way_in_shows_in_the_boards_rx_errors(opened):
    att, r = opened
    t0 = att.world.clock.now()
    att.inject(BitFlips(rate=3e-3, direction="to_device", start_s=t0, end_s=t0 + 2.0))
    seen = []
    run(att, r, 2.0, control=lambda t: (r.set_twist(0.2, 0.0), seen.append(r.read_telemetry().faults)))
    assert r.stats.device_rx_errors > 0 and any(Fault.PROTOCOL in f for f in seen)
    assert r.link_up and att.device.targets_cps().all()


def test_encoder_wrap_is_not_a_fault_but_jumps_and_freezes_are(opened):
    att, r = opened
    att.device.set_encoder_count("front_left", 2**32 - 300)
    att.device.set_encoder_count("rear_right", 2**31 - 300)
    run(att, r, 0.05)
    faults0 = r.stats.encoder_faults
    c0 = r.read_telemetry().encoder_counts.copy()
    run(att, r, 1.0, control=lambda t: r.set_twist(0.3, 0.0))
    c1 = r.read_telemetry().encoder_counts
    assert c0[0] < 0 < c1[0] and c0[3] > 0 > c1[3]              # crossed 0 and the s32 sign flip
    d = (c1 - c0) % (1 << 32)
    assert np.all(d < 2000) and r.stats.encoder_faults == faults0
    att.device.reset_encoders()
    att.device.freeze_encoder("rear_left")
    run(att, r, 1.0, control=lambda t: r.set_twist(0.3, 0.0))
    kinds = [k for _, k, _ in r.events]
    assert "encoder_jump" in kinds and "encoder_frozen" in kinds
    assert Fault.ENCODER_FAULT in r.read_telemetry().faults


def test_firmware_speed_limit_scales_commands_keeping_the_curvature():
    att, r = rig(device_kw=dict(max_speed_cps=1000))
    r.open()
    r.arm()
    r.set_twist(0.4, 0.5)
    r.spin_once()
    (f,) = frames(att, SET_WHEELS)
    s = np.array(speeds(f[3]), dtype=float)
    want = LAYOUT.inverse(0.4, 0.5)[0] * CPS
    assert np.abs(s).max() == 1000 and np.allclose(s / s.max(), want / want.max(), atol=2e-3)
    r.close()
    att.close()


def test_two_channels_and_a_differential_rover():
    chans = [("front_left", "rear_left"), ("front_right", "rear_right")]
    att, r = rig(device_kw=dict(channels=chans), channels=chans)
    r.open()
    r.arm()
    run(att, r, 1.0, control=lambda t: r.set_twist(0.2, 0.4))
    tel = r.read_telemetry()
    assert tel.encoder_counts[0] == tel.encoder_counts[1] and tel.encoder_counts[2] == tel.encoder_counts[3]
    assert att.sim_rover.truth().yaw_rad > 0.1                 # skid-steer turning loss: ~0.6 of 0.4 rad/s
    r.close()
    att.close()
    diff = dataclasses.replace(PROFILE, kind="differential", geometry=dataclasses.replace(PROFILE.geometry,
                                                                                         num_wheels=2))
    att, r = rig(profile=diff)
    r.open()
    r.arm()
    run(att, r, 1.0, control=lambda t: r.set_twist(0.3, 0.0))
    assert att.sim_rover.truth().x_m > 15.0 + 0.2 and r.info.n_wheels == 2
    r.close()
    att.close()


def test_parameters_are_validated():
    for kw, match in ((dict(device_timeout_s=0.01), "device_timeout_s"),
                      (dict(command_timeout_s=10), "command_timeout_s"),
                      (dict(reply_timeout_s=2.0), "reply_timeout_s"), (dict(max_failed_polls=0), "max_failed_polls"),
                      (dict(channels=["front_left"]), "without a motor"), (dict(channels="abc"), "sequence")):
        with pytest.raises((ValueError, TypeError), match=match):
            RnpRover("loop://", PROFILE, **kw)
    with pytest.raises(TypeError, match="layout"):
        RnpRover("loop://", "skidsteer")
    assert check_channels([0, ("rear_left",), 2, 3], LAYOUT) == ((0,), (1,), (2,), (3,))
    assert isinstance(open_rover("rnp", "loop://", PROFILE), RnpRover)


# ----------------------------------------------------------------------------- the driver's parser, fuzzed
class NoisyBoard:
    """Wraps the board's replies in noise: garbage before / after / instead, bit flips, truncation, stale
    frames, duplicated replies. ``active`` switches it off."""

    def __init__(self, device, rng):
        self.device, self.rng, self.active = device, rng, True

    def receive(self, data, t_s):
        out = self.device.receive(data, t_s)
        if not self.active:
            return out
        rng = self.rng
        noisy = []
        for rep in out:
            k = rng.random()
            g = rng.integers(0, 256, int(rng.integers(1, 300)), dtype=np.uint8).tobytes()
            if k < 0.1:
                rep = g + rep
            elif k < 0.2:
                rep = rep + g
            elif k < 0.3:
                rep = g
            elif k < 0.45:
                b = bytearray(rep)
                b[int(rng.integers(0, len(b)))] ^= 1 << int(rng.integers(0, 8))
                rep = bytes(b)
            elif k < 0.55:
                rep = rep[:int(rng.integers(1, len(rep)))]
            elif k < 0.65:
                rep = self.last + rep if getattr(self, "last", None) else rep       # a stale reply first
            elif k < 0.7:
                rep = rep + rep                                                     # duplicated
            self.last = rep
            noisy.append(rep)
        return noisy


def test_fuzz_the_drivers_parser_no_crash_and_resync():
    w = sd.flat_world(size_m=30.0, cell_size_m=0.1, physics_dt_s=0.001)
    dev = VirtualRnpDevice(sd.virtual_rover("skidsteer", world=w), boot_s=0.0)
    noisy = NoisyBoard(dev, np.random.default_rng(4))
    noisy.active = False
    url = sd.register("rnp-noisy", VirtualLink(noisy, clock=w.clock, baud=115200), replace=True)
    r = RnpRover(url, PROFILE, clock=w.clock, threaded=False)
    r.open()
    r.arm()
    noisy.active = True
    sd.run_stepped(w, r, 6.0, control=lambda t: r.set_twist(0.2, 0.0) if r.link_up else None)
    st = r.stats
    assert st.transactions > 150 and st.crc_errors + st.framing_errors > 20 and st.stale_replies > 5
    noisy.active = False
    run_ok = r.stats.failed_polls
    sd.run_stepped(w, r, 1.0, control=lambda t: r.set_twist(0.2, 0.0) if r.link_up else None)
    assert r.link_up and r.stats.failed_polls == run_ok         # clean again at the first frame
    assert dev.targets_cps().all()
    r.close()
    sd.unregister("rnp-noisy")


# ----------------------------------------------------------------------------- threads
def test_threaded_driver_on_sim_in_follow_mode():
    import time

    from sim.devices.pty import RealtimeClock, WorldPacer

    w = sd.flat_world(size_m=20.0, cell_size_m=0.1, physics_dt_s=0.002)
    clock = RealtimeClock(w.time_s)
    att = sd.attach_sim("rnpdrv-follow", "rnp", rover="skidsteer", world=w, baud=115200, time="follow", clock=clock)
    pacer = WorldPacer(w, clock, lock=att.device.lock).start()
    r = RnpRover(att.url, PROFILE, clock=clock)
    try:
        r.open()
        r.arm()
        for _ in range(10):
            r.set_twist(0.2, 0.0)
            time.sleep(0.03)
        assert att.device.targets_cps().all() and r.read_telemetry().seq >= 3
        assert r._io_thread.is_alive() and r.watchdog.running
    finally:
        r.close()
        pacer.stop()
        att.close()
    assert w.time_s > 0.2 and not att.device.core.armed
