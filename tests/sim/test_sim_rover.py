"""SimRover: the in-process backend behind the Rover interface — device behaviour, sensors, hooks."""
import dataclasses
import math

import numpy as np
import pytest

import nav
from drivers import EStopActive, Fault, NotArmed, Rover, encoder_delta
from nav.terrain_map import TerrainMap
from sim.sim_rover import SimRover
from sim.world import World

G_MARS = 3.721


def flat_world(seed=0, size=20.0, cell=0.05, slip_flat=0.0, **kw):
    n = int(round(size / cell))
    pl = nav.load_planet("mars")
    soil = dataclasses.replace(pl.soil, slip_flat=slip_flat)
    return World(TerrainMap(np.zeros((n, n), np.float32), cell), planet=pl, soil=soil, seed=seed, **kw)


def slope_world(slope_deg, seed=0, size=20.0, cell=0.05):
    n = int(round(size / cell))
    x = (np.arange(n) + 0.5) * cell
    z = np.tile(x * math.tan(math.radians(slope_deg)), (n, 1)).astype(np.float32)   # rises toward +x (east)
    return World(TerrainMap(z, cell), planet="mars", seed=seed)


def quiet(profile="osr", **sensor_changes):
    p = nav.load_rover(profile)
    s = dataclasses.replace(p.sensors, gyro_noise_dps=0.0, gyro_bias_dps=0.0, gyro_bias_walk_dps=0.0,
                            accel_noise_mps2=0.0, accel_bias_mps2=0.0)
    return dataclasses.replace(p, sensors=dataclasses.replace(s, **sensor_changes))


def test_is_a_rover_and_drives_straight_on_flat_ground():
    w = flat_world()
    with SimRover(w, quiet(), x_m=5.0, y_m=10.0, command_timeout_s=None) as r:
        assert isinstance(r, Rover)
        with pytest.raises(NotArmed):
            r.set_twist(0.2, 0.0)
        r.arm()
        r.set_twist(0.2, 0.0)
        w.advance(10.0)
        t = r.truth()
        # ramp at max_accel 0.5 m/s² to 0.2 m/s takes 0.4 s and loses 0.04 m against constant speed
        assert t.x_m - 5.0 == pytest.approx(0.2 * 10.0 - 0.5 * 0.2 * 0.4, abs=2e-3)
        assert t.y_m == pytest.approx(10.0, abs=1e-9) and t.yaw_rad == pytest.approx(0.0, abs=1e-12)
        tel = r.read_telemetry()
        assert tel.t_s == pytest.approx(10.0) and tel.armed and tel.faults == Fault.NONE
    assert r.closed


def test_clock_sleep_runs_the_world():
    w = flat_world()
    r = SimRover(w, quiet(), command_timeout_s=None).open()
    r.arm()
    x0 = r.truth().x_m
    r.set_twist(0.2, 0.0)
    r.clock.sleep(2.0)
    assert w.time_s == pytest.approx(2.0) and r.truth().x_m > x0 + 0.3


def test_command_timeout_stops_the_wheels_and_flags_watchdog():
    w = flat_world()
    r = SimRover(w, quiet(), command_timeout_s=0.5).open()
    r.arm()
    x0 = r.truth().x_m
    r.set_twist(0.2, 0.0)
    w.advance(5.0)
    # 0.5 s of drive (0.4 s ramp up), then a 0.4 s ramp down: 0.5*0.2*0.4 + 0.1*0.2 + 0.5*0.2*0.4 = 0.1 m
    assert r.truth().x_m - x0 == pytest.approx(0.1, abs=5e-3)
    assert r.truth().vx_mps == 0.0
    tel = r.read_telemetry()
    assert Fault.WATCHDOG in tel.faults
    assert any(e.kind == "watchdog" and e.t_s == pytest.approx(0.5) for e in r.events)
    r.set_twist(0.2, 0.0)                     # a fresh command clears it
    w.advance(0.1)
    assert Fault.WATCHDOG not in r.read_telemetry().faults


def test_estop_stops_discards_and_requires_rearm_and_fresh_command():
    w = flat_world()
    r = SimRover(w, quiet(), command_timeout_s=None).open()
    r.arm()
    r.set_twist(0.3, 0.0)
    w.advance(2.0)
    r.estop()
    w.advance(2.0)
    assert r.truth().vx_mps == 0.0
    with pytest.raises(EStopActive):
        r.set_twist(0.3, 0.0)
    x = r.truth().x_m
    r.arm()
    w.advance(2.0)                            # armed again, but the old command is gone
    assert r.truth().x_m == x
    r.set_twist(0.1, 0.0)
    w.advance(1.0)
    assert r.truth().x_m > x


def test_encoders_count_wheel_rotation_and_wrap():
    w = flat_world()
    prof = quiet()
    r = SimRover(w, prof, command_timeout_s=None).open()
    r.set_encoder_offset(2**31 - 1000)          # about to wrap
    first = r.read_telemetry().encoder_counts
    r.arm()
    r.set_twist(0.2, 0.0)
    w.advance(5.0)
    tel = r.read_telemetry()
    assert tel.encoder_counts.dtype == np.int64
    assert np.all(tel.encoder_counts >= -2**31) and np.all(tel.encoder_counts < 2**31)
    counts = encoder_delta(tel.encoder_counts, first)
    turned = r.model.wheel_angle_rad / (2 * math.pi) * prof.drive.encoder_counts_per_rev
    np.testing.assert_array_equal(counts, np.floor(turned).astype(np.int64))
    dist = counts / prof.drive.encoder_counts_per_rev * 2 * math.pi * prof.geometry.wheel_radius_m
    # no slip on this soil: wheel odometry equals the distance driven (to one count)
    assert dist.mean() == pytest.approx(r.truth().distance_m, abs=2 * math.pi * 0.075 / 5500 * 2)


def test_frozen_encoder_and_reset():
    w = flat_world()
    r = SimRover(w, quiet(), command_timeout_s=None).open()
    r.arm()
    r.set_twist(0.2, 0.0)
    w.advance(1.0)
    r.freeze_encoder("middle_left")
    a = r.read_telemetry()
    w.advance(1.0)
    b = r.read_telemetry()
    assert b.encoder_counts[1] == a.encoder_counts[1] and b.wheel_speed_radps[1] == 0.0
    assert b.encoder_counts[0] > a.encoder_counts[0]
    r.freeze_encoder("middle_left", False)
    w.advance(1.0)
    c = r.read_telemetry()
    assert 0 < c.encoder_counts[1] - b.encoder_counts[1] < c.encoder_counts[4]
    r.reset_encoders()
    assert np.all(r.read_telemetry().encoder_counts == 0)
    with pytest.raises(ValueError, match="wheel"):
        r.freeze_encoder("seventh")


def test_encoders_over_report_on_a_climb():
    w = slope_world(15.0)
    prof = nav.load_rover("osr")
    r = SimRover(w, prof, x_m=6.0, y_m=10.0, command_timeout_s=None).open()
    first = r.read_telemetry().encoder_counts
    r.arm()
    r.set_twist(0.2, 0.0)
    w.advance(20.0)
    counts = encoder_delta(r.read_telemetry().encoder_counts, first)
    wheel_m = counts.mean() / prof.drive.encoder_counts_per_rev * 2 * math.pi * prof.geometry.wheel_radius_m
    true_m = r.truth().distance_m / math.cos(math.radians(15.0))    # along the slope
    s = w.planet.soil
    slip = s.slip_flat + s.slip_gain * (math.exp(15.0 / s.slip_scale_deg) - 1)
    assert true_m / wheel_m == pytest.approx(1 - slip, rel=0.02)
    assert wheel_m > 1.2 * true_m


def test_imu_at_rest_and_turning():
    w = flat_world()
    r = SimRover(w, quiet(), command_timeout_s=None).open()
    w.advance(1.0)
    imu = r.read_telemetry().imu
    np.testing.assert_allclose(imu.accel_mps2, [0, 0, G_MARS], atol=1e-9)
    np.testing.assert_allclose(imu.gyro_radps, 0, atol=1e-12)
    r.arm()
    r.set_twist(0.0, 0.4)
    w.advance(2.0)
    r.read_telemetry()
    w.advance(1.0)
    assert r.read_telemetry().imu.gyro_radps[2] == pytest.approx(0.4, rel=1e-3)


def test_imu_noise_and_bias_statistics():
    w = flat_world(seed=3)
    prof = quiet(gyro_noise_dps=0.5, accel_noise_mps2=0.1)
    r = SimRover(w, prof, command_timeout_s=None).open()
    g = []
    for _ in range(400):
        w.advance(0.02)                        # one physics step per reading: per-sample noise
        g.append(r.read_telemetry().imu.gyro_radps)
    g = np.array(g)
    assert np.std(g, axis=0) == pytest.approx([math.radians(0.5)] * 3, rel=0.15)
    r2 = SimRover(flat_world(seed=4), quiet(gyro_bias_dps=1.0), command_timeout_s=None).open()
    biases = r2.read_telemetry().imu.gyro_radps
    assert np.all(np.abs(biases) > 0) and np.all(np.abs(biases) < math.radians(5.0))


def test_battery_drains_with_idle_power_and_load():
    w = flat_world()
    prof = quiet()
    r = SimRover(w, prof, command_timeout_s=None).open()
    tel0 = r.read_telemetry().battery
    assert tel0.state_of_charge == 1.0
    w.advance(100.0)
    b = r.read_telemetry().battery
    used = prof.power.idle_power_w * 100.0
    assert b.state_of_charge == pytest.approx(1 - used / (prof.power.battery_wh * 3600), rel=1e-6)
    idle_soc = b.state_of_charge
    r.arm()
    r.set_twist(0.3, 0.0)
    w.advance(100.0)
    moving = r.read_telemetry().battery
    assert idle_soc - moving.state_of_charge > 1 - idle_soc      # driving costs more than idling
    assert moving.current_a > prof.power.idle_power_w / prof.power.voltage_full_v


def test_flat_battery_flags_and_stops():
    w = flat_world()
    r = SimRover(w, quiet(), command_timeout_s=None).open()
    r.drain_battery(0.05)
    assert Fault.BATTERY_LOW in r.read_telemetry().faults
    r.drain_battery(0.0)
    r.arm()
    r.set_twist(0.2, 0.0)
    x = r.truth().x_m
    w.advance(2.0)
    assert r.truth().x_m == x
    with pytest.raises(ValueError, match="state_of_charge"):
        r.drain_battery(1.5)


def test_hooks_slip_push_and_injected_fault():
    w = flat_world()
    r = SimRover(w, quiet(), command_timeout_s=None).open()
    r.arm()
    r.set_twist(0.2, 0.0)
    w.advance(1.0)
    r.inject_slip(1.0, duration_s=2.0)
    x = r.truth().x_m
    ang = r.model.wheel_angle_rad.copy()
    w.advance(2.0)
    assert r.truth().x_m == pytest.approx(x, abs=1e-9) and np.all(r.model.wheel_angle_rad > ang + 4)
    w.advance(1.0)
    assert r.truth().x_m > x + 0.15                 # slip injection expired
    y = r.truth().y_m
    r.push(0.0, 0.5, duration_s=1.0)
    w.advance(1.0)
    assert r.truth().y_m == pytest.approx(y + 0.5, abs=0.02)
    r.inject_fault(Fault.DEVICE_FAULT)
    w.advance(1.0)
    assert r.truth().vx_mps == 0.0 and Fault.DEVICE_FAULT in r.read_telemetry().faults
    r.clear_fault()
    r.set_twist(0.2, 0.0)
    w.advance(1.0)
    assert r.truth().vx_mps > 0.1


def test_sun_sensor_heading():
    w = flat_world()
    r = SimRover(w, quiet(sun_sensor=True, sun_sensor_noise_deg=2.0), yaw_rad=1.0, command_timeout_s=None).open()
    h = np.array([r.read_telemetry().heading_rad for _ in range(300)])
    assert h.mean() == pytest.approx(1.0, abs=0.01) and h.std() == pytest.approx(math.radians(2.0), rel=0.15)
    r2 = SimRover(w, quiet(), name="other").open()
    assert math.isnan(r2.read_telemetry().heading_rad)


def script(seed, world_seed=1):
    w = World.generate("mars", size_m=12.0, cell_size_m=0.05, seed=world_seed, clear_zones=[(6, 6, 1.0)])
    w = World(w.terrain, planet="mars", rocks=w.rocks, seed=seed)
    r = SimRover(w, "osr", x_m=6.0, y_m=6.0, command_timeout_s=None).open()
    r.arm()
    out = []
    for k in range(40):
        r.set_twist(0.2, 0.2 * math.sin(0.3 * k))
        w.advance(0.1)
        tel = r.read_telemetry()
        t = r.truth()
        out.append(np.r_[t.x_m, t.y_m, t.z_m, t.yaw_rad, t.pitch_rad, t.roll_rad, tel.encoder_counts,
                         tel.imu.gyro_radps, tel.imu.accel_mps2, tel.battery.voltage_v])
    return np.array(out)


def test_same_seed_same_run_bit_for_bit():
    a, b = script(7), script(7)
    assert np.array_equal(a, b)
    c = script(8)
    np.testing.assert_array_equal(a[:, :6], c[:, :6])        # the world is the same: same trajectory
    assert not np.array_equal(a[:, -7:], c[:, -7:])           # but different sensor noise


def test_two_rovers_in_one_world_are_independent():
    w = flat_world()
    a = SimRover(w, quiet(), x_m=4.0, y_m=4.0, name="a", command_timeout_s=None).open()
    b = SimRover(w, quiet(), x_m=4.0, y_m=14.0, name="b", command_timeout_s=None).open()
    a.arm()
    a.set_twist(0.2, 0.0)
    w.advance(3.0)
    assert a.truth().x_m > 4.4 and b.truth().x_m == 4.0
    b.close()
    w.advance(1.0)
    assert a.truth().x_m > 4.6


def test_bad_arguments():
    w = flat_world()
    with pytest.raises(TypeError, match="sim.World"):
        SimRover("world")
    with pytest.raises(ValueError, match="command_timeout_s"):
        SimRover(w, "osr", command_timeout_s=-1)
    with pytest.raises(nav.ConfigError, match="no rover config named"):
        SimRover(w, "nosuch")


def test_stereo_camera_renders_from_the_true_pose_deterministically():
    from sim.frames import T_body_cam

    def run(seed):
        w = World.generate("mars", size_m=16.0, seed=2, clear_zones=[(8, 8, 1.0)])
        w = World(w.terrain, planet="mars", rocks=w.rocks, seed=seed)
        r = SimRover(w, "osr", x_m=8.0, y_m=8.0, yaw_rad=0.4, command_timeout_s=None).open()
        r.arm()
        r.set_twist(0.2, 0.1)
        w.advance(1.0)
        cam = r.stereo_camera()
        a = cam.capture()
        w.advance(0.5)
        b = cam.capture()
        return r, a, b

    r, a, b = run(3)
    assert (a.seq, b.seq) == (1, 2) and a.t_s == pytest.approx(1.0) and b.t_s == pytest.approx(1.5)
    np.testing.assert_allclose(b.T_world_left, r.model.T_world_body() @ T_body_cam(r.profile.camera, "left"))
    assert a.left.shape == (480, 640) and a.left.dtype == np.uint8 and np.isfinite(a.depth_m).mean() > 0.5
    assert a.baseline_m == r.profile.camera.baseline_m and np.array_equal(a.K, r.profile.camera.K)
    _, a2, b2 = run(3)
    assert np.array_equal(a.left, a2.left) and np.array_equal(b.right, b2.right)
    _, a3, _ = run(4)                       # other seed: same scene, other pixel noise
    assert np.array_equal(a.depth_m, a3.depth_m) and not np.array_equal(a.left, a3.left)
