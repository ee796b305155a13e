"""RoboClawRover against the virtual bus over sim://, single-threaded on simulated time (deterministic).

Counts per second are checked against the formula ``rint(rad/s × counts_per_rev / 2π)``; what went on the
wire is read from the device's request log (requests as the device parsed them).
"""
import math

import numpy as np
import pytest

import nav
import sim.devices as sd
from drivers import Fault
from drivers.errors import DeviceFault, DeviceTimeout, EStopActive, LinkLost
from drivers.kinematics import WheelLayout
from drivers.roboclaw import (OSR_MAPPING, MotorChannel, RoboClawRover, check_mapping, mapping_from_dict,
                              status_faults)
from drivers.roboclaw_codec import Cmd, LegacyStatusFlags, StatusFlags
from sim.devices.faults import ErrorFlags, Silence
from sim.devices.roboclaw import SimSteering

PROFILE = nav.load_rover("osr")
LAYOUT = WheelLayout.from_profile(PROFILE)
PPS = LAYOUT.counts_per_rev / (2 * math.pi)
ACCEL_PPS2 = math.ceil(PROFILE.drive.max_accel_mps2 / LAYOUT.wheel_radius_m * PPS)

_n = 0


def rig(faults=(), device_kw=None, **driver_kw):
    global _n
    _n += 1
    w = sd.flat_world(size_m=30.0, cell_size_m=0.1, physics_dt_s=0.001)
    att = sd.attach_sim(f"drv{_n}", world=w, baud=115200, faults=faults, **(device_kw or {}))
    driver_kw.setdefault("threaded", False)
    r = RoboClawRover(att.url, PROFILE, clock=w.clock, **driver_kw)
    return att, r


def run(att, r, seconds, control=None, period=0.1):
    return sd.run_stepped(att.world, r, seconds, control=control, control_period_s=period)


def writes(att, cmd, since_s=-math.inf, nonzero=None):
    out = []
    for t, a, c, args in list(att.device.requests):
        if c == int(cmd) and t >= since_s:
            speeds = args[1:] if c == Cmd.SPEED_ACCEL_M1M2 else args
            if nonzero is None or any(speeds) == nonzero:
                out.append((t, a, args))
    return out


@pytest.fixture
def opened():
    att, r = rig()
    r.open()
    r.arm()
    yield att, r
    r.close()
    att.close()


# ----------------------------------------------------------------------------- connect
def test_open_probes_sets_the_serial_timeout_and_zeroes():
    att, r = rig()
    r.open()
    log = list(att.device.requests)
    first = {}
    for t, a, c, args in log:
        first.setdefault(a, c)
    assert first == {0x80: Cmd.READ_VERSION, 0x81: Cmd.READ_VERSION, 0x82: Cmd.READ_VERSION}
    assert att.device.serial_timeouts() == {0x80: 5, 0x81: 5, 0x82: 5}
    assert {a for t, a, args in writes(att, Cmd.SPEED_M1M2) if args == (0, 0)} == {0x80, 0x81, 0x82}
    assert set(r.firmware.values()) == {att.device.firmware}
    assert r.link_up and r.read_telemetry().faults == Fault.NONE
    r.close()
    att.close()


def test_open_with_nothing_answering_is_refused():
    att, r = rig(faults=[Silence()])
    with pytest.raises(DeviceTimeout) as ei:
        r.open()
    msg = str(ei.value)
    assert msg.startswith(att.url) and "0x80" in msg and "READ_VERSION (21)" in msg
    assert r.closed and not att.device.targets_pps().any()
    att.close()


def test_legacy_firmware_status_width_is_detected():
    att, r = rig(device_kw=dict(status_bytes=2, firmware="USB Roboclaw 2x7a v4.1.11"))
    r.open()
    assert r.read_telemetry().extra["controllers"][0x81]["status_bytes"] == 2
    att.device.set_error_flags(int(LegacyStatusFlags.TEMPERATURE_WARNING), 0x81)
    run(att, r, 0.5)
    assert Fault.OVERTEMP in r.read_telemetry().faults
    r.close()
    att.close()


# ----------------------------------------------------------------------------- commands
def test_wheel_speeds_go_out_as_counts_per_second_with_acceleration(opened):
    att, r = opened
    speed = np.array([1.0, 2.0, 3.0, -1.0, -2.0, -3.5])
    r.set_wheels(speed)
    r.spin_once()
    np.testing.assert_array_equal(att.device.targets_pps(), np.rint(speed * PPS))
    sent = writes(att, Cmd.SPEED_ACCEL_M1M2, nonzero=True)
    assert len(sent) == 3 and all(args[0] == ACCEL_PPS2 for _, _, args in sent)


def test_plain_speed_commands_when_acceleration_is_off():
    att, r = rig(accel_mps2=0.0)
    r.open()
    r.arm()
    r.set_wheels(np.full(6, 2.0))
    r.spin_once()
    assert len(writes(att, Cmd.SPEED_M1M2, nonzero=True)) == 3 and not writes(att, Cmd.SPEED_ACCEL_M1M2)
    r.close()
    att.close()


def test_mirrored_motors_round_trip():
    mapping = [MotorChannel(ch.wheel, ch.addr, ch.motor, -1 if "right" in ch.wheel else 1) for ch in OSR_MAPPING]
    att, r = rig(mapping=mapping, device_kw=dict(mapping=mapping))
    r.open()
    r.arm()
    run(att, r, 1.0, control=lambda t: r.set_twist(0.2, 0.0))
    tel = r.read_telemetry()
    assert np.all(tel.wheel_speed_radps > 2.0) and np.all(tel.encoder_counts > 1000)
    motor_cmds = {(a, m): args[1 + m] for _, a, args in writes(att, Cmd.SPEED_ACCEL_M1M2, nonzero=True)
                  for m in (0, 1)}
    for ch in mapping:
        assert np.sign(motor_cmds[(ch.addr, ch.motor - 1)]) == ch.sign
    assert att.sim_rover.truth().x_m > 15.0 + 0.1                 # it went forward
    r.close()
    att.close()


def test_telemetry_reports_the_bus(opened):
    att, r = opened
    start = r.read_telemetry().encoder_counts
    angle0 = att.sim_rover.model.wheel_angle_rad.copy()
    run(att, r, 1.5, control=lambda t: r.set_twist(0.25, 0.0))
    tel = r.read_telemetry()
    turned = (att.sim_rover.model.wheel_angle_rad - angle0) * PPS
    counted = tel.encoder_counts - start
    assert np.all(np.abs(counted - turned) < 0.03 * PPS * 3.4)      # within one cycle of travel
    np.testing.assert_allclose(tel.wheel_speed_radps, 0.25 / LAYOUT.wheel_radius_m, rtol=2e-3)
    assert np.all(tel.motor_current_a >= 0) and tel.battery.voltage_v == pytest.approx(16.8, abs=0.1)
    c = tel.extra["controllers"][0x80]
    assert c["temperature_c"] >= 25.0 and c["serial_timeout_100ms"] == 5 and c["status_bytes"] == 4
    assert np.isnan(tel.steer_rad[LAYOUT.steerable]).all() and (tel.steer_rad[~LAYOUT.steerable] == 0).all()
    assert tel.faults == Fault.NONE and tel.armed and tel.seq > 10


def test_steering_is_stored_without_backend_and_forwarded_with_one():
    att, r = rig()
    r.open()
    r.arm()
    r.set_twist(0.2, 0.3)
    assert np.abs(r.commanded_steer_rad[LAYOUT.steerable]).min() > 0.05
    assert np.isnan(r.read_telemetry().steer_rad[LAYOUT.steerable]).all()
    r.close()
    att.close()
    att, r = rig()
    r2 = RoboClawRover(att.url, PROFILE, clock=att.world.clock, threaded=False, steering=SimSteering(att.device))
    r.close()
    r2.open()
    r2.arm()
    run(att, r2, 1.0, control=lambda t: r2.set_twist(0.2, 0.3))
    tel = r2.read_telemetry()
    np.testing.assert_allclose(tel.steer_rad, r2.commanded_steer_rad, atol=1e-6)
    assert att.sim_rover.truth().yaw_rad > 0.1
    r2.close()
    att.close()


def test_each_command_goes_on_the_wire_once(opened):
    att, r = opened
    r.set_wheels(np.full(6, 2.0))
    run(att, r, 1.0)
    assert len(writes(att, Cmd.SPEED_ACCEL_M1M2, nonzero=True)) == 3          # once per controller, never again
    assert r.stats.commands_delivered == 1


def test_a_stale_command_is_never_sent(opened):
    att, r = opened
    r.set_wheels(np.full(6, 2.0))
    att.world.advance(0.25)                      # the I/O cycle comes too late: command older than 0.2 s
    r.spin_once()
    assert not writes(att, Cmd.SPEED_ACCEL_M1M2, nonzero=True) and not att.device.targets_pps().any()
    assert r.gate.dropped_stale == 1


def test_stop_and_estop_put_zero_on_the_wire_synchronously(opened):
    att, r = opened
    run(att, r, 0.5, control=lambda t: r.set_twist(0.2, 0.0))
    assert att.device.targets_pps().all()
    r.stop()
    assert not att.device.targets_pps().any()
    run(att, r, 0.3, control=lambda t: r.set_twist(0.2, 0.0))
    assert att.device.targets_pps().all()
    r.estop()
    assert not att.device.targets_pps().any()
    with pytest.raises(EStopActive):
        r.set_twist(0.2, 0.0)
    assert Fault.ESTOP in r.read_telemetry().faults
    r.arm()
    run(att, r, 0.5)                             # armed again, but no fresh command yet: still stopped
    assert not att.device.targets_pps().any()
    run(att, r, 0.3, control=lambda t: r.set_twist(0.2, 0.0))
    assert att.device.targets_pps().all()


def test_host_watchdog_on_simulated_time(opened):
    att, r = opened
    run(att, r, 1.0, control=lambda t: r.set_twist(0.2, 0.0))
    last = r.last_command_s
    run(att, r, 0.5)
    assert len(r.stats.watchdog_stop_s) == 1
    assert 0.2 <= r.stats.watchdog_stop_s[0] < 0.23
    (t_zero,) = [t for t, a, args in writes(att, Cmd.SPEED_ACCEL_M1M2, since_s=last, nonzero=False)][:1]
    assert 0.2 <= t_zero - last < 0.23 and not att.device.targets_pps().any()
    assert Fault.WATCHDOG in r.read_telemetry().faults
    r.set_twist(0.2, 0.0)
    assert Fault.WATCHDOG not in r.read_telemetry().faults


# ----------------------------------------------------------------------------- link loss
def test_three_failed_polls_mean_link_lost(opened):
    att, r = opened
    run(att, r, 0.2)
    att.inject(Silence(start_s=att.world.clock.now()))
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


def test_port_vanishing_is_link_lost_and_recovers(opened):
    att, r = opened
    run(att, r, 0.1)
    sd.unplug(att.name)
    run(att, r, 0.1)
    assert not r.link_up and "vanished" in r.link_reason and r.transport.lost
    t_replug = att.world.clock.now()
    sd.replug(att.name, same_name=True)
    run(att, r, 1.0)
    assert r.link_up and r.stats.reconnects == 1
    assert att.device.serial_timeouts() == {0x80: 5, 0x81: 5, 0x82: 5}
    # the controllers kept their setting, but the driver cannot know that: command 14 is sent again
    assert all(att.device.count_requests(Cmd.SET_SERIAL_TIMEOUT, a, since_s=t_replug) == 1 for a in (0x80, 0x81, 0x82))


def test_reboot_is_detected_from_the_timeout_readback():
    att, r = rig(device_kw=dict(boot_s=0.0))
    r.open()
    r.arm()
    att.device.reboot(0x81)
    assert att.device.serial_timeouts()[0x81] == 0
    run(att, r, 0.6)
    assert r.stats.reboots == 1 and any(k == "reboot" for _, k, _ in r.events)
    assert att.device.serial_timeouts() == {0x80: 5, 0x81: 5, 0x82: 5}
    assert r.link_up
    r.close()
    att.close()


def test_device_fault_stops_and_drops_commands_until_cleared(opened):
    att, r = opened
    t0 = att.world.clock.now()
    att.inject(ErrorFlags(bits=int(StatusFlags.M1_DRIVER_FAULT), addr=0x82, start_s=t0 + 0.5, end_s=t0 + 1.0))
    run(att, r, 0.9, control=lambda t: r.set_twist(0.2, 0.0))
    tel = r.read_telemetry()
    assert Fault.DEVICE_FAULT in tel.faults and not att.device.targets_pps().any()
    assert r.stats.dropped_commands > 0
    with pytest.raises(DeviceFault, match="0x82: M1_DRIVER_FAULT"):
        r.arm()
    run(att, r, 1.0, control=lambda t: r.set_twist(0.2, 0.0))
    assert Fault.DEVICE_FAULT not in r.read_telemetry().faults and att.device.targets_pps().all()


# ----------------------------------------------------------------------------- mapping, validation
def test_mapping_validation_names_the_problem():
    with pytest.raises(ValueError, match="wheels without a motor: rear_right"):
        check_mapping(OSR_MAPPING[:3] + OSR_MAPPING[4:], LAYOUT, "bus")
    with pytest.raises(ValueError, match="0x80 M1 drives both"):
        check_mapping(OSR_MAPPING[:3] + (MotorChannel("rear_right", 0x80, 1),) + OSR_MAPPING[4:], LAYOUT)
    with pytest.raises(ValueError, match="must be 0x80..0x87"):
        check_mapping([MotorChannel("front_left", 0x70, 1)], LAYOUT)
    with pytest.raises(ValueError, match="must be 1 or 2"):
        check_mapping([MotorChannel("front_left", 0x80, 3)], LAYOUT)
    with pytest.raises(ValueError, match="'tail'"):
        check_mapping([MotorChannel("tail", 0x80, 1)], LAYOUT)


def test_mapping_from_dict():
    d = {ch.wheel: {"address": ch.addr, "channel": f"M{ch.motor}"} for ch in OSR_MAPPING}
    d["front_right"]["sign"] = -1
    m = check_mapping(mapping_from_dict(d), LAYOUT)
    assert {(c.wheel, c.addr, c.motor, c.sign) for c in m} == \
        {(c.wheel, c.addr, c.motor, -1 if c.wheel == "front_right" else 1) for c in OSR_MAPPING}
    with pytest.raises(ValueError, match="unknown keys"):
        mapping_from_dict({"front_left": {"address": 128, "motor": 1, "speed": 3}})


def test_parameters_are_validated():
    for kw, match in ((dict(serial_timeout_s=0.0), "serial_timeout_s"),
                      (dict(command_timeout_s=10), "command_timeout_s"),
                      (dict(reply_timeout_s=2.0), "reply_timeout_s"), (dict(max_failed_polls=0), "max_failed_polls"),
                      (dict(status_bytes=3), "status_bytes"), (dict(steering=object()), "set_steer")):
        with pytest.raises((ValueError, TypeError), match=match):
            RoboClawRover("loop://", PROFILE, **kw)
    with pytest.raises(TypeError, match="layout"):
        RoboClawRover("loop://", "osr")


def test_status_word_maps_to_faults():
    assert status_faults(0, 4) == Fault.NONE
    assert status_faults(int(StatusFlags.ESTOP | StatusFlags.M2_DRIVER_FAULT), 4) == Fault.ESTOP | Fault.DEVICE_FAULT
    assert status_faults(int(StatusFlags.MAIN_VOLTAGE_LOW_WARNING | StatusFlags.TEMPERATURE_WARNING
                             | StatusFlags.M1_OVERCURRENT_WARNING), 4) == \
        Fault.BATTERY_LOW | Fault.OVERTEMP | Fault.OVERCURRENT
    assert status_faults(int(LegacyStatusFlags.ESTOP | LegacyStatusFlags.MAIN_BATTERY_LOW_WARNING), 2) == \
        Fault.ESTOP | Fault.BATTERY_LOW
    assert status_faults(0x0004, 4) == Fault.OVERTEMP and status_faults(0x0004, 2) == Fault.ESTOP   # layouts differ


def test_threaded_driver_on_sim_in_follow_mode():
    """sim:// with someone else moving time: a pacer thread keeps the world up with real time and the
    threaded driver (I/O + watchdog threads) reads in real time."""
    import time

    from sim.devices.pty import RealtimeClock, WorldPacer

    w = sd.flat_world(size_m=20.0, cell_size_m=0.1, physics_dt_s=0.01)
    clock = RealtimeClock(w.time_s)
    att = sd.attach_sim("drv-follow", world=w, baud=115200, time="follow", clock=clock)
    pacer = WorldPacer(w, clock, lock=att.device.lock).start()
    r = RoboClawRover(att.url, PROFILE, clock=clock)
    try:
        r.open()
        r.arm()
        for _ in range(10):
            r.set_twist(0.2, 0.0)
            time.sleep(0.03)
        assert att.device.targets_pps().all() and r.read_telemetry().seq >= 3
        assert r._io_thread.is_alive() and r.watchdog.running
    finally:
        r.close()
        pacer.stop()
        att.close()
    assert w.time_s > 0.2 and not att.device.targets_pps().any()
