"""MavlinkRover (pymavlink) against the virtual ArduPilot rover (our own codec) over sim://, single-threaded on
simulated time. What went on the wire is read from the device's log of the frames it parsed.

Time steps are binary fractions (physics 2**-8 s, port reads 2**-7 s) so stepped read deadlines fall exactly on
physics ticks (see the note on sim:// step mode in the report of this test's author)."""
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pymavlink")

import nav  # noqa: E402
import sim.devices as sd  # noqa: E402
from drivers import Fault  # noqa: E402
from drivers import mavlink_codec as mc  # noqa: E402
from drivers.errors import (CommandOutOfRange, DeviceFault, DeviceTimeout, EStopActive, LinkLost,  # noqa: E402
                            ModeRejected, NotArmed)
from drivers.kinematics import WheelLayout  # noqa: E402
from drivers.mavlink import MavlinkRover, _MavParser, load_dialect  # noqa: E402
from drivers.transport import Transport  # noqa: E402
from sim.devices.faults import AckFault, BadContent, Silence  # noqa: E402
from sim.devices.mavlink import StreamingLink, attach_ardurover  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DT = 2.0 ** -8
RT = 2.0 ** -7
PROFILE = nav.load_rover("skidsteer")
LAYOUT = WheelLayout.from_profile(PROFILE)
_n = [0]


def rig(faults=(), device_kw=None, **driver_kw):
    _n[0] += 1
    name = f"mavdrv{_n[0]}"
    w = sd.flat_world(size_m=30.0, cell_size_m=0.1, physics_dt_s=DT)
    att = attach_ardurover(name, world=w, baud=115200, faults=faults, aliases=(f"{name}-by-id",),
                           **(device_kw or {}))
    tr = Transport(f"sim://{name}-by-id", read_timeout_s=RT, clock=w.clock, candidates=lambda: sd.urls(f"{name}*"))
    driver_kw.setdefault("threaded", False)
    r = MavlinkRover(tr.url, PROFILE, clock=w.clock, transport=tr, io_timeout_s=RT, **driver_kw)
    return att, r


def run(att, r, seconds, control=None, period=0.1):
    return sd.run_stepped(att.world, r, seconds, control=control, control_period_s=period, tick_s=DT)


def drive(r, vx=0.3, wz=0.0):
    def control(t):
        try:
            r.set_twist(vx, wz)
        except (ModeRejected, NotArmed, EStopActive):
            pass
    return control


def sent(att, name, since=-math.inf):
    return [(t, f) for t, s, c, n, f in list(att.device.requests) if n == name and t >= since and s == 255]


def commands(att, command, since=-math.inf):
    return [f for t, f in sent(att, "COMMAND_LONG", since) if f["command"] == command]


@pytest.fixture
def armed():
    att, r = rig()
    r.open()
    r.arm()
    yield att, r
    r.close()
    att.close()


# ----------------------------------------------------------------------------- the optional dependency
def test_missing_pymavlink_is_a_clear_error(monkeypatch):
    for m in ("pymavlink", "pymavlink.dialects", "pymavlink.dialects.v20", "pymavlink.dialects.v20.ardupilotmega"):
        monkeypatch.setitem(sys.modules, m, None)
    with pytest.raises(ModuleNotFoundError, match=r'pip install "rovernav\[mavlink\]"'):
        MavlinkRover("loop://", PROFILE)
    import drivers
    with pytest.raises(ModuleNotFoundError, match="rovernav"):
        drivers.open_rover("mavlink", "loop://", PROFILE)


def test_importing_the_driver_does_not_import_pymavlink():
    code = "import sys, drivers.mavlink, drivers.mavlink_codec; assert 'pymavlink' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(ROOT), timeout=60)


# ----------------------------------------------------------------------------- connect
def test_open_finds_the_rover_and_requests_streams():
    att, r = rig()
    r.open()
    assert r.vehicle_id == (1, 1) and r.mode == "MANUAL" and not r.vehicle_armed and r.link_up
    run(att, r, 2.0)
    hb = sent(att, "HEARTBEAT")
    assert hb and hb[0][1]["type"] == mc.MAV_TYPE_GCS and hb[0][1]["autopilot"] == mc.MAV_AUTOPILOT_INVALID
    asked = {f["param1"]: f["param2"] for f in commands(att, 511)}
    assert asked == {mc.MESSAGES[k].msgid: pytest.approx(1e6 / hz) for k, hz in r.rates_hz.items()}
    tel = r.read_telemetry()
    for k, hz in r.rates_hz.items():
        assert tel.extra["rates_hz"][k] == pytest.approx(hz, rel=0.25), k
    assert len(hb) in (2, 3)                                        # ours at 1 Hz
    assert tel.faults == Fault.NONE and not tel.armed and tel.extra["mode"] == "MANUAL"
    r.close()
    att.close()


def test_open_with_nothing_answering_is_refused():
    att, r = rig(faults=[Silence()])
    with pytest.raises(DeviceTimeout) as ei:
        r.open()
    msg = str(ei.value)
    assert msg.startswith(att.url) and "no HEARTBEAT" in msg and "nothing at all" in msg and "SERIALn_PROTOCOL" in msg
    assert r.closed
    att.close()


class _Copter:
    """Not a rover: an ArduCopter heartbeat every second."""

    def __init__(self):
        self.t_next = 0.0

    def receive(self, data, t_s):
        return []

    def next_emit_s(self):
        return self.t_next

    def emit(self, t):
        out = []
        while self.t_next <= t:
            out.append((self.t_next, mc.encode_frame("HEARTBEAT", dict(type=2, autopilot=3, system_status=4,
                                                                       mavlink_version=3), seq=0, sysid=1, compid=1)))
            self.t_next += 1.0
        return out


def test_only_an_ardupilot_rover_is_driven():
    w = sd.flat_world(size_m=4.0, cell_size_m=0.1, physics_dt_s=DT)
    sd.register("copter", StreamingLink(_Copter(), clock=w.clock, grid_s=DT), replace=True)
    r = MavlinkRover("sim://copter", PROFILE, clock=w.clock, threaded=False, connect_timeout_s=1.5,
                     transport=Transport("sim://copter", read_timeout_s=RT, clock=w.clock), io_timeout_s=RT)
    with pytest.raises(DeviceTimeout, match=r"heard only other vehicles \(type 2 autopilot 3 at 1/1\)"):
        r.open()
    sd.unregister("copter")
    att, r = rig(device_kw=dict(sysid=7), target_system=3, connect_timeout_s=1.0)
    with pytest.raises(DeviceTimeout, match="sysid 3"):
        r.open()
    att.close()
    att, r = rig(device_kw=dict(sysid=7, vehicle_type="boat"), target_system=7)
    r.open()
    assert r.vehicle_id == (7, 1)
    r.close()
    att.close()


# ----------------------------------------------------------------------------- arming and driving
def test_arm_sets_guided_then_arms_and_holds_still(armed):
    att, r = armed
    (mode,) = commands(att, 176)
    (arm,) = commands(att, 400)
    assert (mode["param1"], mode["param2"]) == (1.0, 15.0) and (arm["param1"], arm["param2"]) == (1.0, 0.0)
    assert att.device.mode == mc.RoverMode.GUIDED and att.device.armed and r.mode == "GUIDED"
    zero = sent(att, "SET_POSITION_TARGET_LOCAL_NED")
    assert zero and zero[0][1]["vx"] == 0.0 and zero[0][1]["yaw_rate"] == 0.0
    assert r.read_telemetry().armed


def test_twist_goes_out_as_a_body_velocity_target(armed):
    att, r = armed
    t0 = att.world.time_s
    r.set_twist(0.4, 0.5)
    att.world.advance(0.02)                                                 # the frame's wire time
    r.spin_once()
    t, f = sent(att, "SET_POSITION_TARGET_LOCAL_NED", t0)[-1]             # (after arm()'s zero target)
    assert f["coordinate_frame"] == mc.MAV_FRAME_BODY_NED and f["type_mask"] == 0x05E7 == 1511
    assert (f["vx"], f["vy"], f["yaw_rate"]) == (pytest.approx(0.4), 0.0, pytest.approx(-0.5))   # NED: CW +
    assert (f["target_system"], f["target_component"]) == (1, 1)
    yaw0 = att.sim_rover.truth().yaw_rad
    run(att, r, 1.5, control=drive(r, 0.3, 0.4))
    tr = att.sim_rover.truth()
    assert tr.vx_mps > 0.2 and tr.yaw_rad > yaw0 + 0.2                      # forward and CCW
    run(att, r, 1.0, control=drive(r, -0.2, 0.0))
    assert att.sim_rover.truth().vx_mps < -0.1
    assert r.stats.targets_sent >= 25 and max(r.stats.cmd_to_wire_s) < 1e-9   # synchronous write


def test_set_wheels_maps_a_rigid_twist_and_refuses_the_rest(armed):
    att, r = armed
    speed, steer = LAYOUT.inverse(0.3, 0.2)
    t0 = att.world.time_s
    r.set_wheels(speed, steer)
    run(att, r, 0.03)                           # the wire is FIFO: the target waits for the frames ahead of it
    _, f = sent(att, "SET_POSITION_TARGET_LOCAL_NED", t0)[-1]
    assert f["vx"] == pytest.approx(0.3, abs=1e-6) and f["yaw_rate"] == pytest.approx(-0.2, abs=1e-6)
    bad = speed.copy()
    bad[0] += 4.0
    with pytest.raises(CommandOutOfRange, match="one body twist.*front_left.*set_twist"):
        r.set_wheels(bad)


def test_telemetry_from_the_vehicle():
    att, r = rig(device_kw=dict(position_noise_m=0.0, yaw_noise_deg=0.0))
    r.open()
    r.arm()
    tr0 = att.sim_rover.truth()
    run(att, r, 2.5, control=drive(r, 0.3, 0.3))
    tel = r.read_telemetry()
    tr = att.sim_rover.truth()
    e, n, u = tel.extra["position_enu_m"]
    assert math.hypot(e - (tr.x_m - tr0.x_m), n - (tr.y_m - tr0.y_m)) < 0.05        # <= one stream period late
    assert abs(math.remainder(tel.heading_rad - tr.yaw_rad, 2 * math.pi)) < 0.05
    fwd, left = tel.extra["velocity_body_mps"]
    assert fwd == pytest.approx(tr.vx_mps, abs=0.05) and abs(left) < 0.05
    roll, pitch, yaw = tel.extra["attitude_rpy_rad"]
    assert abs(roll) < 0.01 and abs(pitch) < 0.01 and yaw == tel.heading_rad
    assert tel.imu.accel_mps2[2] == pytest.approx(3.71, abs=0.3)                    # specific force up, body FLU
    assert tel.imu.gyro_radps[2] == pytest.approx(tr.wz_radps, abs=0.1)
    assert tel.battery.voltage_v == pytest.approx(att.sim_rover.read_telemetry().battery.voltage_v, abs=0.05)
    assert 34.0 < tel.extra["lat_deg"] < 34.4 and tel.extra["groundspeed_mps"] > 0.2
    assert np.isnan(tel.wheel_speed_radps).all() and np.isnan(tel.steer_rad).all()
    assert np.isnan(tel.motor_current_a).all() and (tel.encoder_counts == 0).all()
    assert tel.encoder_counts.dtype == np.int64 and tel.extra["has_wheel_data"] is False
    assert tel.faults == Fault.NONE and tel.armed and tel.seq > 50
    assert "ArduRover V4.5.7 (rovernav sim)" in [s for _, _, s in tel.extra["statustext"]]
    r.close()
    att.close()


# ----------------------------------------------------------------------------- refusing to drive
def test_pilot_switching_out_of_guided_is_refused_with_the_reason(armed):
    att, r = armed
    run(att, r, 0.5, control=drive(r))
    att.device.pilot_set_mode("HOLD")
    run(att, r, 1.1)                                                        # the next HEARTBEAT tells
    t_switch = att.world.time_s
    with pytest.raises(ModeRejected) as ei:
        r.set_twist(0.3, 0.0)
    msg = str(ei.value)
    assert "HOLD" in msg and "not GUIDED" in msg and "changed by the vehicle" not in msg and "set by the vehicle" in msg
    assert "arm()" in msg
    assert Fault.MODE_REJECTED in r.read_telemetry().faults and r.stats.rejected_commands == 1
    run(att, r, 1.0)
    assert not sent(att, "SET_POSITION_TARGET_LOCAL_NED", t_switch)        # nothing sent while not GUIDED
    assert any(k == "mode" and "GUIDED -> HOLD" in d for _, k, d in r.events)
    r.arm()                                                                 # the explicit way back
    run(att, r, 0.5, control=drive(r))
    assert att.device.mode == mc.RoverMode.GUIDED and att.sim_rover.truth().vx_mps > 0.1
    assert Fault.MODE_REJECTED not in r.read_telemetry().faults


def test_refusals_carry_the_vehicles_words():
    att, r = rig()
    r.open()
    att.device.set_gps_fix(False)
    with pytest.raises(ModeRejected, match="requires position"):
        r.arm()
    att.device.set_gps_fix(True)
    att.device.set_prearm_failure("Hardware safety switch")
    with pytest.raises(DeviceFault, match="refused to arm: FAILED.*PreArm: Hardware safety switch"):
        r.arm()
    att.device.set_prearm_failure(None)
    r.arm()
    with pytest.raises(ValueError, match="mode = 'FLY'"):
        r.set_mode("FLY")
    r.set_mode("HOLD")
    with pytest.raises(ModeRejected, match="HOLD set by this driver"):
        r.set_twist(0.1, 0.0)
    r.close()
    att.close()


def test_a_vehicle_that_disarmed_itself_gives_not_armed(armed):
    att, r = armed
    att.device._set_armed(False, True, att.world.time_s)                    # e.g. the pilot's arming switch
    run(att, r, 1.1)
    with pytest.raises(NotArmed, match="disarmed by the vehicle"):
        r.set_twist(0.2, 0.0)
    assert not r.read_telemetry().armed


# ----------------------------------------------------------------------------- stopping
def test_host_watchdog_on_simulated_time(armed):
    att, r = armed
    run(att, r, 1.0, control=drive(r))
    last = r.last_command_s
    run(att, r, 1.5)
    (stop,) = r.stats.watchdog_stop_s
    assert 0.2 <= stop < 0.2 + 2 * RT
    zeros = [t for t, f in sent(att, "SET_POSITION_TARGET_LOCAL_NED", last + 1e-9) if f["vx"] == 0 and f["yaw_rate"] == 0]
    assert zeros and 0.2 <= zeros[0] - last < 0.2 + 2 * RT
    assert 8 <= len(zeros) <= 12                                            # repeated for 1 s at 10 Hz, then quiet
    assert att.device.velocity_target()[1] == 0.0
    assert Fault.WATCHDOG in r.read_telemetry().faults
    r.set_twist(0.2, 0.0)
    assert Fault.WATCHDOG not in r.read_telemetry().faults


def test_stop_and_estop(armed):
    att, r = armed
    run(att, r, 0.5, control=drive(r))
    r.stop()
    r.spin_once()                                                           # (wire time)
    assert att.device.velocity_target()[1] == 0.0
    run(att, r, 0.3, control=drive(r))
    assert att.device.velocity_target()[1] == pytest.approx(0.3)
    t0 = att.world.time_s
    r.estop()
    run(att, r, 0.03)                                                       # (wire time of both frames)
    assert att.device.velocity_target() is None and not att.device.armed     # zero target, then forced disarm
    (f,) = commands(att, 400, t0)
    assert (f["param1"], f["param2"]) == (0.0, 21196.0)
    with pytest.raises(EStopActive):
        r.set_twist(0.2, 0.0)
    run(att, r, 0.5)
    assert Fault.ESTOP in r.read_telemetry().faults and len(commands(att, 400, t0)) == 1   # no resend once disarmed
    r.arm()
    t1 = att.world.time_s
    run(att, r, 0.5)
    assert att.device.velocity_target() in (None, ("rate", 0.0, 0.0))       # armed again, no motion yet
    assert all(f["vx"] == 0 for _, f in sent(att, "SET_POSITION_TARGET_LOCAL_NED", t1))
    run(att, r, 0.5, control=drive(r))
    assert att.sim_rover.truth().vx_mps > 0.1


def test_estop_during_a_link_loss_disarms_when_the_link_returns(armed):
    att, r = armed
    run(att, r, 0.3, control=drive(r))
    t0 = att.world.time_s
    att.inject(Silence(start_s=t0, end_s=t0 + 2.0))
    run(att, r, 1.5)
    assert not r.link_up and att.device.armed
    r.estop()
    run(att, r, 1.5)
    assert r.link_up and not att.device.armed and not r.vehicle_armed
    assert all(f["param2"] == 21196.0 for f in commands(att, 400, t0))


def test_disarm_and_close_disarm_the_vehicle(armed):
    att, r = armed
    r.disarm()
    assert not att.device.armed and not r.armed
    r.arm()
    r.close()
    assert not att.device.armed


# ----------------------------------------------------------------------------- the link
def test_silence_is_link_lost_then_recovers_with_a_zero_target(armed):
    att, r = armed
    run(att, r, 0.5, control=drive(r))
    t0 = att.world.time_s
    att.inject(Silence(start_s=t0, end_s=t0 + 2.0))
    lost = []
    run(att, r, 1.5, control=drive(r), period=0.05)
    for t, k, d in r.events:
        if k == "link_lost":
            lost.append((t, d))
    assert len(lost) == 1 and lost[0][0] - t0 <= 1.2 + 0.1 and "no MAVLink frame" in lost[0][1]
    tel = r.read_telemetry()
    assert Fault.LINK_LOST in tel.faults and r.stats.dropped_commands > 0
    with pytest.raises(LinkLost, match="no link"):
        r.arm()
    t_back = t0 + 2.0
    run(att, r, 1.2)
    assert r.link_up and r.stats.reconnects == 1
    after = sent(att, "SET_POSITION_TARGET_LOCAL_NED", t_back)
    assert after and all(f["vx"] == 0 for _, f in after)                  # zero on reconnect, nothing stale
    assert commands(att, 511, t_back)                                        # streams asked again
    run(att, r, 0.5, control=drive(r))
    assert att.device.velocity_target()[1] == pytest.approx(0.3)


def test_heartbeats_alone_allow_three_misses():
    att, r = rig(rates_hz={})
    r.open()
    run(att, r, 1.0)
    t0 = att.world.time_s
    att.inject(Silence(start_s=t0))
    run(att, r, 3.0)
    assert r.link_up                                                         # < 3 missed
    run(att, r, 1.5)
    assert not r.link_up and "no HEARTBEAT" in r.link_reason and "3 missed" in r.link_reason
    r.close()
    att.close()


def test_port_vanishing_and_returning_under_another_name(armed):
    att, r = armed
    run(att, r, 0.2)
    sd.unplug(att.name)
    run(att, r, 0.1)
    assert not r.link_up and r.transport.lost and Fault.LINK_LOST in r.read_telemetry().faults
    sd.replug(att.name)
    run(att, r, 1.5)
    assert r.link_up and r.stats.reconnects == 1 and r.transport.current_url != att.url
    run(att, r, 0.5, control=drive(r))
    assert att.sim_rover.truth().vx_mps > 0.1


def test_a_write_timeout_on_a_present_port_is_not_a_lost_link(armed, monkeypatch):
    att, r = armed
    real = r.transport.write
    calls = []

    def slow_write(data):                         # what pyserial says when the process was starved for 0.1 s
        calls.append(data)
        real(data)
        if len(calls) == 1:
            raise LinkLost(f"{att.url}: write of {len(data)} bytes timed out after 0.1 s (device not draining)")

    monkeypatch.setattr(r.transport, "write", slow_write)
    r.set_twist(0.2, 0.0)
    assert r.link_up and r.stats.write_timeouts == 1 and r.stats.dropped_commands == 0
    run(att, r, 0.3, control=drive(r, 0.2))
    assert att.sim_rover.truth().vx_mps > 0.1


def test_vehicle_reboot_is_detected():
    att, r = rig(device_kw=dict(boot_s=0.5))
    r.open()
    r.arm()
    run(att, r, 2.0, control=drive(r))
    att.device.reboot()
    run(att, r, 4.0)
    assert r.stats.reboots == 1 and any(k == "reboot" for _, k, _ in r.events)
    assert r.mode == "MANUAL" and not r.vehicle_armed
    assert r.read_telemetry().extra["rates_hz"].get("ATTITUDE", 0) > 10     # streams asked again
    with pytest.raises(ModeRejected, match="MANUAL"):
        r.set_twist(0.2, 0.0)
    r.arm()
    run(att, r, 0.5, control=drive(r))
    assert att.sim_rover.truth().vx_mps > 0.1
    r.close()
    att.close()


def test_failsafe_is_reported(armed):
    att, r = armed
    att.device.set_error_flags(2)
    run(att, r, 3.0, control=drive(r))
    tel = r.read_telemetry()
    assert Fault.DEVICE_FAULT in tel.faults and Fault.MODE_REJECTED in tel.faults
    assert tel.extra["failsafe"] == "GCS Failsafe" and "GCS Failsafe" in tel.extra["mode_reason"]
    att.device.set_error_flags(0)
    run(att, r, 1.2)
    assert Fault.DEVICE_FAULT not in r.read_telemetry().faults
    assert any(k == "failsafe_cleared" for _, k, _ in r.events)


def test_implausible_content_is_discarded():
    att, r = rig(faults=[BadContent(prob=0.2)])
    r.open()
    r.arm()
    seen = []
    run(att, r, 3.0, control=lambda t: (drive(r)(t), seen.append(r.read_telemetry())))
    assert r.stats.bad_content > 10 and any(Fault.PROTOCOL in t.faults for t in seen)
    assert all(t.battery is None or t.battery.voltage_v < 9.0 for t in seen)
    assert all(abs(t.extra.get("lat_deg", 0.0)) < 90 for t in seen)
    assert all(math.isfinite(t.heading_rad) or t.seq < 3 for t in seen[5:])
    assert r.mode == "GUIDED" and att.sim_rover.truth().vx_mps > 0.1
    r.close()
    att.close()


def test_a_real_position_jump_is_accepted_after_five(armed):
    att, r = armed
    run(att, r, 0.5)
    tr = att.sim_rover.truth()
    att.sim_rover.teleport(tr.x_m + 8.0, tr.y_m, tr.yaw_rad)               # e.g. an EKF reset
    run(att, r, 1.5)
    e, n, _ = r.read_telemetry().extra["position_enu_m"]
    assert e == pytest.approx(8.0, abs=0.3) and r.stats.bad_content >= 8      # 4 + 4 discarded (local, global)
    assert [k for _, k, _ in r.events].count("position_jump") == 2


def test_lost_acks_are_retried():
    att, r = rig(faults=[AckFault(mode="missing", prob=0.5)])
    r.open()
    r.arm()
    assert att.device.armed and r.stats.ack_timeouts >= 1
    r.close()
    att.close()
    att, r = rig(faults=[AckFault(mode="missing", prob=1.0)], command_retries=1, ack_timeout_s=0.2)
    r.open()
    with pytest.raises(DeviceTimeout, match=r"no COMMAND_ACK to DO_SET_MODE \(176\) GUIDED after 2 tries"):
        r.arm()
    r.close()
    att.close()


def test_mavlink1_vehicle():
    att, r = rig(device_kw=dict(wire_version=1))
    r.open()
    r.arm()
    run(att, r, 1.0, control=drive(r))
    assert att.sim_rover.truth().vx_mps > 0.1 and r.read_telemetry().extra["rates_hz"]["ATTITUDE"] > 15
    r.close()
    att.close()


# ----------------------------------------------------------------------------- the parser, validation
def test_parser_resyncs_inside_rejected_frames():
    d = load_dialect()
    mav = d.MAVLink(None, srcSystem=1, srcComponent=1)
    frames = []
    for i in range(6):
        frames.append(mav.attitude_encode(i, 0.1 * i, 0, 0, 0, 0, 0).pack(mav))
        mav.seq += 1
    p = _MavParser(d)
    stream = frames[0] + frames[1][:15] + frames[2] + frames[3] + b"\xfd\x40garbage" + frames[4] + frames[5]
    got = [m.time_boot_ms for m in p.feed(stream)]
    assert got == [0, 2, 3] and p.bad_frames >= 1                           # pymavlink alone loses frame 2 too
    got = [m.time_boot_ms for m in p.feed(frames[0] * 5)]                   # more bytes disprove the bogus header
    assert got == [4, 5, 0, 0, 0, 0, 0]
    rng = np.random.default_rng(5)
    for _ in range(200):                                                    # random bytes: never an exception
        p.feed(rng.integers(0, 256, int(rng.integers(1, 300)), dtype=np.uint8).tobytes())
    assert [m.time_boot_ms for m in p.feed(b"".join(frames) * 3)][-6:] == list(range(6))


def test_parameters_are_validated():
    for kw, match in ((dict(command_timeout_s=10), "command_timeout_s"), (dict(max_missed_heartbeats=0), "max_missed"),
                      (dict(rates_hz={"NOPE": 1}), "rates_hz"), (dict(rates_hz={"ATTITUDE": 0}), "rates_hz"),
                      (dict(target_system=0), "target_system"), (dict(source_system=0), "source_system"),
                      (dict(io_timeout_s=1.0), "io_timeout_s")):
        with pytest.raises(ValueError, match=match):
            MavlinkRover("loop://", PROFILE, **kw)
    with pytest.raises(TypeError, match="layout"):
        MavlinkRover("loop://", "skidsteer")
    import drivers
    assert isinstance(drivers.open_rover("mavlink", "loop://", PROFILE), MavlinkRover)
