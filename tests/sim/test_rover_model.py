"""Tests for sim.rover_model: settling on planes and steps, motion against closed forms, slip and drift
against the Soil formula, hazards (high-centring, walls, tipping, map edge), the rigid tripod against
brute force and a linear program, IMU truth, forces, determinism, hooks and validation.
Oracles live in tests/sim/_ref_physics.py."""
from __future__ import annotations

import dataclasses
import importlib.util
import math
import pathlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nav
from drivers.base import Fault
from drivers.kinematics import WheelLayout
from nav.config import Soil
from sim.frames import rot_world_body
from sim.rover_model import RoverModel, SimEvent, support_triangles
from sim.world import World

_spec = importlib.util.spec_from_file_location("_ref_physics", pathlib.Path(__file__).with_name("_ref_physics.py"))
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)

DT = 0.02
OSR = nav.load_rover("osr")
SKID = nav.load_rover("skidsteer")
DIFF = dataclasses.replace(SKID, name="differential test rover", kind="differential",
                           geometry=dataclasses.replace(SKID.geometry, num_wheels=2))
SKID6 = dataclasses.replace(SKID, name="6-wheel skid steer",
                            geometry=dataclasses.replace(SKID.geometry, num_wheels=6, wheelbase_m=0.3,
                                                         length_m=0.45))
PROFILES = {"osr": OSR, "skidsteer": SKID, "differential": DIFF}
NO_SLIP = dataclasses.replace(Soil(), slip_flat=0.0)


def world_of(terrain, soil: Soil | None = NO_SLIP) -> World:
    return World(terrain, planet="mars", soil=soil)


def drive(model: RoverModel, seconds: float, wheel, steer=None, *, per_call=5, **kw):
    n = int(round(seconds / DT))
    steer = np.zeros(model.layout.n_wheels) if steer is None else steer
    wheel = np.asarray(wheel, dtype=np.float64)
    while n > 0:
        k = min(per_call, n)
        model.step(k, DT, wheel, steer, **kw)
        n -= k


def twist_cmd(model, vx, wz):
    return model.layout.inverse(vx, wz)


def pose(m):
    return np.array([m.x_m, m.y_m, m.z_m, m.yaw_rad, m.pitch_rad, m.roll_rad])


# =============================================================================== flat ground, closed forms
@pytest.mark.parametrize("name", sorted(PROFILES))
@pytest.mark.parametrize("v", [0.2537, -0.15])
def test_straight_line_from_rest_covers_the_trapezoid_distance(name, v):
    prof = PROFILES[name]
    m = RoverModel(world_of(ref.flat_terrain()), prof, x_m=3.0, y_m=4.0, yaw_rad=0.3)
    r = prof.geometry.wheel_radius_m
    drive(m, 3.0, np.full(m.layout.n_wheels, v / r))
    d = ref.trapezoid_distance(v, prof.drive.max_accel_mps2, 3.0)
    assert m.x_m == pytest.approx(3.0 + d * math.cos(0.3), abs=1e-12)
    assert m.y_m == pytest.approx(4.0 + d * math.sin(0.3), abs=1e-12)
    assert m.yaw_rad == pytest.approx(0.3, abs=1e-14)
    assert m.z_m == 0.0 and m.pitch_rad == 0.0 and m.roll_rad == 0.0
    np.testing.assert_allclose(m.wheel_angle_rad * r, d, atol=1e-12)       # encoders: no slip
    np.testing.assert_allclose(m.wheel_speed_radps, v / r, rtol=1e-15)
    assert m.vx_mps == pytest.approx(v, abs=1e-15) and m.wz_radps == pytest.approx(0.0, abs=1e-15)
    assert m.faults == Fault.NONE and m.events == []


def test_motor_speed_slews_at_the_acceleration_limit():
    m = RoverModel(world_of(ref.flat_terrain()), OSR, x_m=3.0, y_m=3.0)
    alpha = OSR.drive.max_accel_mps2 / OSR.geometry.wheel_radius_m
    m.step(3, DT, np.full(6, 4.0), np.zeros(6))
    np.testing.assert_allclose(m.wheel_speed_radps, 3 * DT * alpha, rtol=1e-14)
    m.step(1, DT, np.full(6, -4.0), np.zeros(6))
    np.testing.assert_allclose(m.wheel_speed_radps, 2 * DT * alpha, rtol=1e-12)


def test_steering_slews_at_the_servo_rate():
    m = RoverModel(world_of(ref.flat_terrain()), OSR, x_m=3.0, y_m=3.0)
    steer = np.array([0.5, 0.0, -0.5, 0.5, 0.0, -0.5])
    m.step(2, DT, np.zeros(6), steer)
    step = math.radians(OSR.drive.steer_rate_dps) * DT * 2
    np.testing.assert_allclose(m.steer_rad, np.sign(steer) * step, rtol=1e-14)
    m.step(50, DT, np.zeros(6), steer)
    np.testing.assert_array_equal(m.steer_rad, steer)


ARCS = [("osr", 0.2, 0.3), ("osr", -0.15, 0.25), ("osr", 0.0, 0.4), ("skidsteer", 0.3, 0.0),
        ("differential", 0.2, 0.5), ("differential", 0.0, -0.8), ("differential", -0.1, 0.3)]


@pytest.mark.parametrize("name, v, w", ARCS)
def test_arcs_on_flat_ground_follow_the_closed_form_circle(name, v, w):
    prof = PROFILES[name]
    m = RoverModel(world_of(ref.flat_terrain((10.0, 10.0))), prof, x_m=5.0, y_m=5.0, yaw_rad=-2.0)
    speed, steer = twist_cmd(m, v, w)
    drive(m, 2.0, speed, steer)                                     # motors and steering settle
    x0, y0, yaw0 = m.x_m, m.y_m, m.yaw_rad
    drive(m, 10.0, speed, steer, per_call=7)
    x, y, yaw = ref.circle_pose(x0, y0, yaw0, v, w, 10.0)
    assert m.x_m == pytest.approx(x, abs=1e-9) and m.y_m == pytest.approx(y, abs=1e-9)
    assert abs(ref.angle_diff(m.yaw_rad, yaw)) < 1e-9
    assert (m.vx_mps, m.vy_mps, m.wz_radps) == pytest.approx((v, 0.0, w), abs=1e-12)
    np.testing.assert_allclose(m.gyro_true_radps, [0.0, 0.0, w], atol=1e-9)
    g = m.world.gravity_mps2
    np.testing.assert_allclose(m.accel_true_mps2, [0.0, v * w, g], atol=1e-6)   # centripetal + gravity


def test_skid_steer_turning_loss_matches_least_squares_and_closed_form():
    m = RoverModel(world_of(ref.flat_terrain((10.0, 10.0))), SKID, x_m=5.0, y_m=5.0)
    r = SKID.geometry.wheel_radius_m
    v_l, v_r = 0.1, 0.3
    speed = np.array([v_l, v_l, v_r, v_r]) / r
    drive(m, 1.0, speed)
    vx, vy, wz = m.layout.forward(speed)
    w_closed = ref.skid_turn_rate(v_l, v_r, SKID.geometry.track_m, SKID.geometry.wheelbase_m)
    assert wz == pytest.approx(w_closed, rel=1e-12)
    assert (m.vx_mps, m.vy_mps, m.wz_radps) == pytest.approx((vx, vy, wz), abs=1e-12)
    x0, y0, yaw0 = m.x_m, m.y_m, m.yaw_rad
    drive(m, 6.0, speed)
    x, y, yaw = ref.circle_pose(x0, y0, yaw0, vx, w_closed, 6.0)
    assert (m.x_m, m.y_m) == pytest.approx((x, y), abs=1e-9)
    assert abs(ref.angle_diff(m.yaw_rad, yaw)) < 1e-9
    assert np.all(m.slip[2:] > 0) and np.all(m.slip[:2] < 0)        # scrub shows as slip


def test_six_wheel_skid_steer_twist_is_the_layout_least_squares():
    m = RoverModel(world_of(ref.flat_terrain((10.0, 10.0))), SKID6, x_m=5.0, y_m=5.0)
    speed = np.array([1.0, 2.0, 3.0, 4.0, 6.0, 5.0])
    drive(m, 1.0, speed)
    assert (m.vx_mps, m.vy_mps, m.wz_radps) == pytest.approx(m.layout.forward(speed), abs=1e-12)


# =============================================================================== planes
PLANES = [(0.0, 0.0, 0.0), (0.2, 0.0, 0.0), (0.0, 0.3, 0.0), (0.25, -0.15, 0.7), (-0.4, 0.2, 2.5),
          (0.1, 0.5, -1.2), (0.55, 0.0, math.pi / 2)]


def _check_on_plane(prof, gx, gy, yaw):
    t = ref.plane_terrain(gx, gy, size_m=(2.0, 2.0), cell_m=0.05)
    m = RoverModel(world_of(t), prof, x_m=1.0, y_m=1.0, yaw_rad=yaw)
    pitch, roll, tilt = ref.attitude_on_plane(gx, gy, yaw)
    assert m.pitch_rad == pytest.approx(pitch, abs=5e-6)
    assert m.roll_rad == pytest.approx(roll, abs=5e-6)
    assert m.tilt_rad == pytest.approx(tilt, abs=5e-6)
    along = gx * math.cos(yaw) + gy * math.sin(yaw)
    r = prof.geometry.wheel_radius_m
    lift = ref.plane_envelope_offset(along, r, m.n_envelope)
    assert 0.0 <= lift <= r * (math.sqrt(1 + along ** 2) - 1) + 1e-12
    assert m.z_m == pytest.approx(lift, abs=2e-6)                   # on the plane (+ the wheel envelope lift)
    assert m.wheel_contact.all()
    # the body frame's z axis is the plane normal
    n = np.array([-gx, -gy, 1.0]) / math.sqrt(1 + gx * gx + gy * gy)
    np.testing.assert_allclose(m.T_world_body()[:3, 2], n, atol=1e-5)
    # at rest the accelerometer reads gravity in the body frame
    m.step(3, DT, np.zeros(m.layout.n_wheels), np.zeros(m.layout.n_wheels))
    R = rot_world_body(m.yaw_rad, m.pitch_rad, m.roll_rad)
    np.testing.assert_allclose(m.accel_true_mps2, R.T @ [0, 0, m.world.gravity_mps2], atol=1e-9)
    np.testing.assert_allclose(m.gyro_true_radps, 0.0, atol=1e-12)


@pytest.mark.parametrize("name", sorted(PROFILES))
@pytest.mark.parametrize("gx, gy, yaw", PLANES)
def test_settles_on_uniform_planes_with_the_planes_angles(name, gx, gy, yaw):
    _check_on_plane(PROFILES[name], gx, gy, yaw)


@pytest.mark.parametrize("name", sorted(PROFILES))
@settings(max_examples=25)
@given(gx=st.floats(-0.6, 0.6), gy=st.floats(-0.6, 0.6), yaw=st.floats(-math.pi, math.pi))
def test_plane_attitude_property(name, gx, gy, yaw):
    _check_on_plane(PROFILES[name], gx, gy, yaw)


def test_rocker_bogie_settling_matches_the_linkage_reference():
    """Rough ground: the pose is the linkage's (reference written from the description) on the
    envelope contact heights (reference sampled with TerrainMap.height_at)."""
    w = World.generate("mars", size_m=8.0, cell_size_m=0.05, seed=11, soil=NO_SLIP)
    for x, y, yaw in ((3.0, 4.0, 0.3), (5.0, 2.5, -2.0), (4.2, 4.4, 1.4)):
        m = RoverModel(w, OSR, x_m=x, y_m=y, yaw_rad=yaw)
        pts = ref.wheel_world_xy(m.layout, x, y, yaw)
        r = OSR.geometry.wheel_radius_m
        zc = [ref.envelope_height(w.terrain, p, yaw, r, m.n_envelope) for p in pts]
        np.testing.assert_allclose(m.contact_z_m, zc, atol=1e-9)
        hb, ht = 0.5 * OSR.geometry.wheelbase_m, 0.5 * OSR.geometry.track_m
        z0, sx, sy = ref.rocker_bogie_plane(zc, hb, 0.0, -hb, ht)
        gx, gy = sx * math.cos(yaw) - sy * math.sin(yaw), sx * math.sin(yaw) + sy * math.cos(yaw)
        pitch, roll, tilt = ref.attitude_on_plane(gx, gy, yaw)
        assert (m.z_m, m.pitch_rad, m.roll_rad, m.tilt_rad) == pytest.approx((z0, pitch, roll, tilt), abs=1e-9)


# =============================================================================== rigid tripod
def _pad_world(layout, heights, x=1.0, y=1.0, yaw=0.0, cell=0.01):
    """Flat ground with a flat square pad of the given height under each contact."""
    t = ref.flat_terrain((2.0, 2.0), cell)
    half = layout.wheel_radius_m + 0.03
    for (px, py), h in zip(ref.wheel_world_xy(layout, x, y, yaw), heights):
        t = ref.with_box(t, px - half, px + half, py - half, py + half, h)
    return world_of(t)


def _check_tripod(prof, heights):
    layout = WheelLayout.from_profile(prof)
    heights = np.asarray(heights, dtype=np.float32).astype(np.float64)
    m = RoverModel(_pad_world(layout, heights), prof, x_m=1.0, y_m=1.0)
    np.testing.assert_allclose(m.contact_z_m, heights, atol=1e-12)
    xy = np.concatenate([layout.position_xy_m, layout.caster_xy_m])
    q = m.cg_xy_m
    assert q[0] < xy[:, 0].mean() and q[1] == pytest.approx(xy[:, 1].mean())
    z0, sx, sy, tri = ref.rigid_support_plane(xy, heights, q)
    # independent oracle: the model's plane above the centre of mass is the upper hull's height there
    sx_m, sy_m = -math.tan(m.pitch_rad), math.tan(m.roll_rad) / math.cos(m.pitch_rad)
    lp = ref.upper_hull_height_lp(xy, heights, q)              # (HiGHS solves to ~1e-7)
    assert m.z_m + sx_m * q[0] + sy_m * q[1] == pytest.approx(lp, abs=3e-7)
    pitch, roll, tilt = ref.attitude_on_plane(sx, sy, 0.0)
    assert m.z_m == pytest.approx(z0, abs=1e-9)
    # (facets within the 1e-9 m "all contacts below" tolerance of each other may differ by ~1e-8 rad)
    assert (m.pitch_rad, m.roll_rad, m.tilt_rad) == pytest.approx((pitch, roll, tilt), abs=1e-7)
    below = heights[:layout.n_wheels] < z0 + sx * xy[:layout.n_wheels, 0] + sy * xy[:layout.n_wheels, 1] - 1e-3
    np.testing.assert_array_equal(m.wheel_contact, ~below)
    assert set(i for i in tri if i < layout.n_wheels) <= set(np.flatnonzero(m.wheel_contact))
    return m


def test_four_wheels_with_a_front_wheel_over_a_hole_rest_level_on_the_other_three():
    m = _check_tripod(SKID, [-0.05, 0.0, 0.0, 0.0])             # front left over a hole
    np.testing.assert_array_equal(m.wheel_contact, [False, True, True, True])
    assert (m.z_m, m.pitch_rad, m.roll_rad) == (0.0, 0.0, 0.0)


def test_four_wheels_with_a_rear_wheel_over_a_hole_tip_into_it():
    # the CG sits slightly behind the centre: on the rear-left side of the FL-RR diagonal
    m = _check_tripod(SKID, [0.0, -0.03, 0.0, 0.0])             # rear left over a hole
    np.testing.assert_array_equal(m.wheel_contact, [True, True, False, True])   # front right lifts
    assert m.roll_rad < 0 and m.pitch_rad < 0                   # rear-left corner down: nose up, left down


@pytest.mark.parametrize("prof", [SKID, SKID6, DIFF], ids=["skid4", "skid6", "differential"])
@settings(max_examples=30)
@given(data=st.data())
def test_rigid_chassis_rests_on_the_hull_tripod_above_the_cg(prof, data):
    n = prof.geometry.num_wheels + (1 if prof.kind == "differential" else 0)
    heights = data.draw(st.lists(st.floats(-0.04, 0.04), min_size=n, max_size=n))
    _check_tripod(prof, heights)


def test_support_triangles_contain_the_centre_of_mass():
    xy = WheelLayout.from_profile(SKID).position_xy_m
    tri, _ = support_triangles(xy, xy.mean(axis=0))
    assert len(tri) == 4            # the centre lies on both diagonals: every triple holds it
    m = RoverModel(world_of(ref.flat_terrain()), SKID, x_m=3.0, y_m=3.0)
    tri, inv = support_triangles(xy, m.cg_xy_m)
    np.testing.assert_array_equal(tri, [[0, 1, 3], [1, 2, 3]])  # rear-heavy: one tripod per diagonal
    for t, M in zip(tri, inv.reshape(-1, 3, 3)):
        A = np.column_stack([np.ones(3), xy[t]])
        np.testing.assert_allclose(M @ A, np.eye(3), atol=1e-12)


# =============================================================================== slip and drift
SLOPE_DEG = 10.0


@pytest.mark.parametrize("yaw, sign, climb", [(0.0, 1, SLOPE_DEG), (math.pi, 1, -SLOPE_DEG),
                                              (math.pi, -1, SLOPE_DEG), (0.0, -1, -SLOPE_DEG)],
                         ids=["up", "down", "reverse-up", "reverse-down"])
def test_slip_on_a_slope_follows_the_soil_formula(yaw, sign, climb):
    soil = Soil()                                        # Mars regolith defaults
    g = math.tan(math.radians(SLOPE_DEG))
    m = RoverModel(world_of(ref.plane_terrain(g, 0.0, size_m=(8.0, 3.0)), soil), OSR, x_m=4.0, y_m=1.5,
                   yaw_rad=yaw)
    r = OSR.geometry.wheel_radius_m
    w = sign * 0.2 / r
    drive(m, 1.0, np.full(6, w))
    x0, a0 = m.x_m, m.wheel_angle_rad
    drive(m, 4.0, np.full(6, w))
    along = (m.x_m - x0) / math.cos(math.radians(SLOPE_DEG))       # distance along the slope
    s = ref.soil_slip(soil, climb)
    assert abs(along) / (abs(w) * r * 4.0) == pytest.approx(1.0 - s, abs=1e-6)
    np.testing.assert_allclose(m.slip, s, atol=1e-6)
    # encoders over-report a climb (and under-report a skid downhill)
    np.testing.assert_allclose((m.wheel_angle_rad - a0) * r / abs(along) * np.sign(w), 1.0 / (1.0 - s), rtol=1e-6)
    assert not m.wheel_stalled.any()


def test_cannot_climb_past_the_soils_max_climb_angle():
    soil = Soil()
    g = math.tan(math.radians(soil.max_climb_deg + 1.0))
    m = RoverModel(world_of(ref.plane_terrain(g, 0.0, size_m=(6.0, 3.0)), soil), OSR, x_m=3.0, y_m=1.5)
    x0 = m.x_m
    drive(m, 3.0, np.full(6, 3.0))
    assert m.x_m == x0
    np.testing.assert_allclose(m.slip, 1.0)
    assert m.wheel_stalled.all()
    assert np.all(m.wheel_angle_rad > 5.0)                     # the wheels dig in, the encoders count
    drive(m, 3.0, np.full(6, -3.0))                             # but it can back down
    assert m.x_m < x0 - 0.3 and not m.wheel_stalled.any()


def test_side_slope_drift_matches_its_model():
    soil = Soil()
    roll = math.radians(15.0)
    m = RoverModel(world_of(ref.plane_terrain(0.0, math.tan(roll), size_m=(8.0, 4.0)), soil), OSR, x_m=2.0,
                   y_m=2.0)
    assert m.roll_rad == pytest.approx(roll, abs=1e-6)
    r = OSR.geometry.wheel_radius_m
    w = 0.25 / r
    drive(m, 1.0, np.full(6, w))
    x0, y0 = m.x_m, m.y_m
    drive(m, 6.0, np.full(6, w))
    v = w * r * (1.0 - soil.slip_flat)                            # along the contour: climb angle 0
    assert m.x_m - x0 == pytest.approx(v * 6.0, abs=1e-6)
    assert m.y_m - y0 == pytest.approx(-soil.lateral_slip_gain * v * math.sin(roll) * 6.0, abs=1e-6)
    assert m.vy_mps == pytest.approx(-soil.lateral_slip_gain * v * math.tan(roll), abs=1e-6)
    assert m.yaw_rad == pytest.approx(0.0, abs=1e-12)
    # and no drift at rest
    drive(m, 2.0, np.zeros(6))
    y1 = m.y_m
    drive(m, 2.0, np.zeros(6))
    assert m.y_m == y1


# =============================================================================== hazards
def _rock_world(height=None, radius=None, size=(6.0, 4.0), cell=0.02, x=2.6, y=2.0, half=0.08):
    t = ref.flat_terrain(size, cell)
    if height is not None:
        t = ref.with_box(t, x - half, x + half, y - half, y + half, height)
    if radius is not None:
        t = ref.with_hemisphere(t, x, y, radius)
    return world_of(t)


@pytest.mark.parametrize("prof, tall, low", [(OSR, 0.2, 0.1), (SKID, 0.08, 0.03)], ids=["osr", "skidsteer"])
def test_a_tall_rock_between_the_wheels_high_centres_the_rover_and_a_low_one_does_not(prof, tall, low):
    r = prof.geometry.wheel_radius_m
    n = prof.geometry.num_wheels
    m = RoverModel(_rock_world(height=tall, half=0.05), prof, x_m=1.5, y_m=2.0)
    drive(m, 12.0, np.full(n, 0.2 / r))
    assert Fault.HIGH_CENTERED in m.faults
    assert m.clearance_m < 0
    assert [e.kind for e in m.events] == ["high_centered"]
    ev = m.events[0]
    assert isinstance(ev, SimEvent) and 0 < ev.t_s < 12.0 and "belly clearance" in ev.detail
    x_stuck, a0 = m.x_m, m.wheel_angle_rad
    assert x_stuck < 2.6
    drive(m, 1.0, np.full(n, 0.2 / r))
    assert m.x_m == x_stuck                                        # no progress ...
    assert np.all(m.wheel_angle_rad > a0 + 1.0)                    # ... while the wheels spin
    assert m.wheel_stalled.all() and np.allclose(m.slip, 1.0)
    # a push frees it
    m.step(50, DT, np.zeros(n), np.zeros(n), push_world_mps=(-0.3, 0.0), t0_s=20.0)
    assert Fault.HIGH_CENTERED not in m.faults and m.events[-1].kind == "high_centered cleared"
    assert m.events[-1].t_s <= 21.0

    low_m = RoverModel(_rock_world(radius=low), prof, x_m=1.5, y_m=2.0)
    drive(low_m, 12.0, np.full(n, 0.2 / r))
    assert low_m.x_m > 3.5 and low_m.events == [] and low_m.faults == Fault.NONE


@pytest.mark.parametrize("prof, wall, low_wall", [(OSR, 0.2, 0.1), (SKID, 0.07, 0.03)], ids=["osr", "skidsteer"])
def test_a_wall_taller_than_the_climb_limit_stops_the_rover(prof, wall, low_wall):
    r = prof.geometry.wheel_radius_m
    n = prof.geometry.num_wheels
    front = 0.5 * prof.geometry.wheelbase_m
    for h, passes in ((wall, False), (low_wall, True)):
        t = ref.with_box(ref.flat_terrain((6.0, 3.0), 0.01), 3.0, 3.3, 0.0, 3.0, h)
        m = RoverModel(world_of(t), prof, x_m=1.5, y_m=1.5)
        assert m.climb_limit_m == pytest.approx(2 * r if prof.kind == "rocker_bogie" else r)
        assert (h > m.climb_limit_m) != passes
        drive(m, 12.0, np.full(n, 0.2 / r))
        if passes:
            assert m.x_m > 3.3 and not m.blocked and m.events == []
            continue
        assert m.blocked and m.wheel_stalled.all()
        assert 3.0 - r - 0.02 < m.x_m + front < 3.0 - r + 0.006     # the front wheel touches the face
        assert [e.kind for e in m.events] == ["blocked"] and "climb limit" in m.events[0].detail
        x_stop = m.x_m
        drive(m, 1.0, np.full(n, 0.2 / r))
        assert m.x_m == x_stop
        drive(m, 2.0, np.full(n, -0.2 / r))                     # backing away is allowed
        assert m.x_m < x_stop - 0.1 and not m.blocked
        assert m.events[-1].kind == "blocked cleared"


def test_tipping_on_a_steepening_side_slope_is_reported_and_latched():
    cell = 0.02
    nx, ny = 300, 100
    x = (np.arange(nx) + 0.5) * cell
    y = (np.arange(ny) + 0.5) * cell - 1.0
    theta = np.radians(np.interp(x, [1.0, 5.0], [20.0, 60.0]))
    t = nav.TerrainMap((y[:, None] * np.tan(theta)[None, :]).astype(np.float32), cell)
    soil = dataclasses.replace(Soil(), lateral_slip_gain=0.0)
    m = RoverModel(world_of(t, soil), OSR, x_m=1.0, y_m=1.0)
    assert m.roll_rad == pytest.approx(math.radians(21.0), abs=0.03)     # 20 deg under the rear wheels
    drive(m, 20.0, np.full(6, 0.2 / OSR.geometry.wheel_radius_m))
    kinds = [e.kind for e in m.events]
    assert kinds == ["tilt", "tipped_over"]
    assert Fault.TIPPED_OVER in m.faults and Fault.TILT in m.faults
    tip_roll = math.atan(0.5 * OSR.geometry.track_m / OSR.geometry.cg_height_m)
    assert m.roll_rad > tip_roll and m.roll_rad < tip_roll + 0.01
    frozen = pose(m)
    drive(m, 2.0, np.full(6, -0.2 / OSR.geometry.wheel_radius_m), push_world_mps=(0.1, 0.1))
    np.testing.assert_array_equal(pose(m), frozen)              # latched: nothing moves it
    assert Fault.TIPPED_OVER in m.faults
    m.teleport(1.0, 1.0)
    assert m.faults == Fault.NONE
    assert [e.kind for e in m.events[2:]] == ["tilt cleared", "tipped_over cleared"]


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_the_rover_cannot_drive_off_the_map(name):
    prof = PROFILES[name]
    r = prof.geometry.wheel_radius_m
    m = RoverModel(world_of(ref.flat_terrain((4.0, 4.0))), prof, x_m=2.5, y_m=2.0)
    n = m.layout.n_wheels
    drive(m, 10.0, np.full(n, 0.25 / r))
    assert Fault.OFF_MAP in m.faults and m.wheel_stalled.all()
    assert [e.kind for e in m.events] == ["off_map"] and "known terrain" in m.events[0].detail
    front = m.x_m + m.layout.position_xy_m[:, 0].max()
    assert 4.0 - r - 0.02 < front < 4.0 - r
    x_stop = m.x_m
    drive(m, 1.0, np.full(n, -0.25 / r))
    assert m.x_m < x_stop and Fault.OFF_MAP not in m.faults
    assert m.events[-1].kind == "off_map cleared"


def test_unknown_terrain_is_off_the_map_too():
    t = ref.flat_terrain((6.0, 3.0))
    z = t.elevation_m.copy()
    z[:, 70:80] = np.nan                                            # x in [3.5, 4.0]
    m = RoverModel(world_of(t.with_elevation(z)), SKID, x_m=2.0, y_m=1.5)
    drive(m, 10.0, np.full(4, 5.0))
    assert Fault.OFF_MAP in m.faults
    assert m.x_m + 0.1 + SKID.geometry.wheel_radius_m < 3.5


def test_construction_and_teleport_off_the_map_raise():
    w = world_of(ref.flat_terrain((4.0, 4.0)))
    with pytest.raises(ValueError, match="off-map or unknown"):
        RoverModel(w, OSR, x_m=0.1, y_m=2.0)
    m = RoverModel(w, OSR, x_m=2.0, y_m=2.0)
    before = pose(m)
    with pytest.raises(ValueError, match="teleport"):
        m.teleport(3.9, 2.0)
    np.testing.assert_array_equal(pose(m), before)


# =============================================================================== forces, IMU, events
def test_traction_forces_follow_the_rolling_resistance_and_climb_formula():
    soil = Soil()
    g_m = World(ref.flat_terrain(), planet="mars").gravity_mps2
    mass, r = OSR.geometry.mass_kg, OSR.geometry.wheel_radius_m
    m = RoverModel(world_of(ref.flat_terrain(), soil), OSR, x_m=3.0, y_m=3.0)
    alpha = OSR.drive.max_accel_mps2 / r
    m.step(5, DT, np.full(6, 2.0), np.zeros(6))                         # accelerating all the call
    np.testing.assert_allclose(m.wheel_force_n, mass * (g_m * soil.rolling_resistance + r * alpha) / 6, rtol=1e-12)
    drive(m, 2.0, np.full(6, 2.0))
    np.testing.assert_allclose(m.wheel_force_n, mass * g_m * soil.rolling_resistance / 6, rtol=1e-12)
    th = math.radians(8.0)
    m = RoverModel(world_of(ref.plane_terrain(math.tan(th), 0.0), soil), OSR, x_m=3.0, y_m=4.0)
    drive(m, 2.0, np.full(6, 2.0))
    expect = mass * g_m * (soil.rolling_resistance * math.cos(th) + math.sin(th)) / 6
    np.testing.assert_allclose(m.wheel_force_n, expect, rtol=1e-5)


def test_imu_truth_while_climbing_steadily():
    th = math.radians(12.0)
    m = RoverModel(world_of(ref.plane_terrain(math.tan(th), 0.0, size_m=(8.0, 3.0))), OSR, x_m=3.0, y_m=1.5)
    drive(m, 2.0, np.full(6, 2.0))
    R = rot_world_body(m.yaw_rad, m.pitch_rad, m.roll_rad)
    np.testing.assert_allclose(m.accel_true_mps2, R.T @ [0, 0, m.world.gravity_mps2], atol=1e-4)
    np.testing.assert_allclose(m.gyro_true_radps, 0.0, atol=1e-9)
    assert m.pitch_rad == pytest.approx(-th, abs=1e-6)


def test_event_timestamps_are_the_end_of_the_substep():
    t = ref.with_box(ref.flat_terrain((6.0, 3.0), 0.01), 3.0, 3.3, 0.0, 3.0, 0.3)
    a = RoverModel(world_of(t), SKID, x_m=2.0, y_m=1.5)
    b = RoverModel(world_of(t), SKID, x_m=2.0, y_m=1.5)
    cmd = np.full(4, 5.0)
    a.step(400, DT, cmd, np.zeros(4), t0_s=100.0)
    for k in range(400):
        b.step(1, DT, cmd, np.zeros(4), t0_s=100.0 + k * DT)
    assert len(a.events) == 1 and a.events[0].kind == "blocked"
    assert a.events[0].t_s == pytest.approx(b.events[0].t_s, abs=1e-9)
    k = round((a.events[0].t_s - 100.0) / DT)
    assert a.events[0].t_s == pytest.approx(100.0 + k * DT, abs=1e-9) and k >= 1


# =============================================================================== determinism and hooks
def _run_mars(per_call):
    w = World.generate("mars", size_m=12.0, cell_size_m=0.05, seed=3)
    m = RoverModel(w, OSR, x_m=6.0, y_m=6.0, yaw_rad=0.4)
    for i, (v, wz) in enumerate([(0.2, 0.0), (0.2, 0.3), (0.1, -0.2), (0.0, 0.4), (-0.1, 0.0)]):
        speed, steer = m.layout.inverse(v, wz)
        drive(m, 3.0, speed, steer, per_call=per_call)
    return m


def test_same_inputs_give_identical_state_bit_for_bit():
    a, b, c = _run_mars(5), _run_mars(5), _run_mars(1)
    for attr in ("wheel_angle_rad", "slip", "wheel_force_n", "gyro_true_radps", "accel_true_mps2", "steer_rad"):
        np.testing.assert_array_equal(getattr(a, attr), getattr(b, attr), err_msg=attr)
    np.testing.assert_array_equal(pose(a), pose(b))
    assert a.events == b.events
    # the pose does not depend on how the substeps are batched into calls
    np.testing.assert_array_equal(pose(a), pose(c))
    np.testing.assert_array_equal(a.wheel_angle_rad, c.wheel_angle_rad)
    assert abs(a.x_m - 6.0) > 0.5


def test_slip_override_and_push_hooks():
    m = RoverModel(world_of(ref.flat_terrain()), SKID, x_m=3.0, y_m=3.0)
    r = SKID.geometry.wheel_radius_m
    drive(m, 1.0, np.full(4, 4.0))
    x0, a0 = m.x_m, m.wheel_angle_rad
    drive(m, 2.0, np.full(4, 4.0), slip_override=0.25)
    assert m.x_m - x0 == pytest.approx(0.75 * 4.0 * r * 2.0, abs=1e-12)
    np.testing.assert_allclose(m.slip, 0.25, atol=1e-12)
    np.testing.assert_allclose(m.wheel_angle_rad - a0, 8.0, rtol=1e-12)
    drive(m, 2.0, np.zeros(4))
    x1, y1 = m.x_m, m.y_m
    m.step(50, DT, np.zeros(4), np.zeros(4), push_world_mps=(0.1, -0.05))
    assert (m.x_m - x1, m.y_m - y1) == pytest.approx((0.1, -0.05), abs=1e-12)
    assert (m.vx_mps, m.vy_mps) == pytest.approx((0.1, -0.05), abs=1e-12)
    assert m.yaw_rad == pytest.approx(0.0, abs=1e-15)
    m.step(500, DT, np.zeros(4), np.zeros(4), push_world_mps=(1.0, 0.0))      # a shove cannot leave the map
    assert Fault.OFF_MAP in m.faults and m.x_m + 0.1 + r < 8.0


def test_teleport_resettles_at_rest_and_keeps_the_encoders():
    t = ref.plane_terrain(0.1, 0.05)
    m = RoverModel(world_of(t), OSR, x_m=3.0, y_m=3.0)
    drive(m, 2.0, np.full(6, 3.0))
    angles = m.wheel_angle_rad
    m.teleport(5.0, 4.0, 1.0)
    assert (m.x_m, m.y_m, m.yaw_rad) == (5.0, 4.0, 1.0)
    np.testing.assert_array_equal(m.wheel_speed_radps, 0.0)
    np.testing.assert_array_equal(m.wheel_angle_rad, angles)
    assert (m.vx_mps, m.vy_mps, m.wz_radps) == (0.0, 0.0, 0.0)
    pitch, roll, _ = ref.attitude_on_plane(0.1, 0.05, 1.0)
    assert (m.pitch_rad, m.roll_rad) == pytest.approx((pitch, roll), abs=5e-6)


# =============================================================================== validation
@pytest.mark.parametrize("kwargs, match", [
    (dict(n_steps=0), "n_steps"), (dict(n_steps=-3), "n_steps"), (dict(n_steps=2.5), "n_steps"),
    (dict(n_steps=True), "n_steps"), (dict(dt_s=0.0), "dt_s"), (dict(dt_s=-0.02), "dt_s"),
    (dict(dt_s=math.nan), "dt_s"), (dict(dt_s=math.inf), "dt_s"), (dict(dt_s="0.02"), "dt_s"),
    (dict(wheel=np.ones(5)), "one per wheel"), (dict(wheel=[1, 2, 3, 4, 5, math.nan]), r"wheel_cmd_radps\[5\]"),
    (dict(steer=np.ones(7)), "steer_cmd_rad"), (dict(steer=[0, 0, math.inf, 0, 0, 0]), r"steer_cmd_rad\[2\]"),
    (dict(steer=[0, 0.1, 0, 0, 0, 0]), "cannot steer"), (dict(wheel="fast"), "wheel_cmd_radps"),
    (dict(slip_override=1.5), "slip_override"), (dict(push_world_mps=(1.0,)), "push_world_mps"),
    (dict(push_world_mps=(math.nan, 0.0)), "push_world_mps"), (dict(t0_s=math.inf), "t0_s"),
])
def test_bad_step_inputs_raise_clear_value_errors(kwargs, match):
    m = RoverModel(world_of(ref.flat_terrain()), OSR, x_m=3.0, y_m=3.0)
    m.step(5, DT, np.full(6, 2.0), np.zeros(6))
    before = (pose(m), m.wheel_angle_rad, m.wheel_speed_radps)
    args = dict(n_steps=5, dt_s=DT, wheel=np.full(6, 1.0), steer=np.zeros(6))
    args.update(kwargs)
    extra = {k: args.pop(k) for k in ("slip_override", "push_world_mps", "t0_s") if k in args}
    with pytest.raises(ValueError, match=match):
        m.step(args["n_steps"], args["dt_s"], args["wheel"], args["steer"], **extra)
    after = (pose(m), m.wheel_angle_rad, m.wheel_speed_radps)
    for x, y in zip(before, after):
        np.testing.assert_array_equal(x, y)


def test_constructor_rejects_mismatched_inputs():
    w = world_of(ref.flat_terrain())
    with pytest.raises(TypeError, match="world"):
        RoverModel("mars", OSR, x_m=3.0, y_m=3.0)
    with pytest.raises(TypeError, match="profile"):
        RoverModel(w, "osr", x_m=3.0, y_m=3.0)
    with pytest.raises(ValueError, match="layout.kind"):
        RoverModel(w, OSR, x_m=3.0, y_m=3.0, layout=WheelLayout.from_profile(SKID))
    with pytest.raises(ValueError, match="x_m"):
        RoverModel(w, OSR, x_m=math.nan, y_m=3.0)
