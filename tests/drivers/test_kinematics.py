"""WheelLayout: layouts from profiles, inverse/forward kinematics against closed forms, validation."""
import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nav
from drivers import CommandOutOfRange, WheelLayout


@pytest.fixture(scope="module")
def osr():
    return WheelLayout.from_profile(nav.load_rover("osr"))


@pytest.fixture(scope="module")
def skid():
    return WheelLayout.from_profile(nav.load_rover("skidsteer"))


def test_osr_layout_matches_profile(osr):
    g = nav.load_rover("osr").geometry
    assert osr.names == ("front_left", "middle_left", "rear_left", "front_right", "middle_right", "rear_right")
    np.testing.assert_allclose(osr.position_xy_m[:, 0], [0.24, 0, -0.24] * 2)
    np.testing.assert_allclose(osr.position_xy_m[:, 1], [g.track_m / 2] * 3 + [-g.track_m / 2] * 3)
    assert osr.steerable.tolist() == [True, False, True, True, False, True]
    assert osr.counts_per_rev == 5500 and osr.wheel_radius_m == 0.075


def test_differential_two_wheels_has_a_caster():
    p = nav.load_rover("skidsteer")
    p = dataclasses.replace(p, kind="differential", geometry=dataclasses.replace(p.geometry, num_wheels=2))
    lay = WheelLayout.from_profile(p)
    assert lay.n_wheels == 2 and lay.caster_xy_m.shape == (1, 2)
    np.testing.assert_allclose(lay.position_xy_m, [[0, 0.125], [0, -0.125]])
    # two wheels on an axle: forward kinematics is the textbook differential drive, exactly
    vx, vy, wz = lay.forward([4.0, 6.0])
    assert vx == pytest.approx(0.05 * 5.0) and vy == pytest.approx(0) and wz == pytest.approx(0.05 * 2.0 / 0.25)


def test_bad_wheel_counts_are_refused():
    p = nav.load_rover("osr")
    with pytest.raises(ValueError, match="6 wheels"):
        WheelLayout.from_profile(dataclasses.replace(p, geometry=dataclasses.replace(p.geometry, num_wheels=4)))
    s = nav.load_rover("skidsteer")
    with pytest.raises(ValueError, match="even number"):
        WheelLayout.from_profile(dataclasses.replace(s, geometry=dataclasses.replace(s.geometry, num_wheels=5)))


def test_osr_inverse_hand_computed(osr):
    # turning left at R = 1 m: wheel contact speeds are |v| * distance to the ICR (0, 1)
    v, R = 0.2, 1.0
    speed, steer = osr.inverse(v, v / R)
    x, y = osr.position_xy_m.T
    dist = np.hypot(x, R - y)
    np.testing.assert_allclose(speed * osr.wheel_radius_m, v / R * dist)
    # each steerable wheel points perpendicular to the line to the ICR
    np.testing.assert_allclose(steer[osr.steerable], np.arctan2(x, R - y)[osr.steerable])
    assert np.all(steer[~osr.steerable] == 0)


def test_skid_steer_turning_loss_closed_form(skid):
    t, b = 0.25, 0.20
    vl, vr = 3.0, 5.0
    vx, vy, wz = skid.forward([vl, vl, vr, vr])
    r = skid.wheel_radius_m
    assert wz == pytest.approx(t * (vr - vl) * r / (t * t + b * b))
    assert vx == pytest.approx(r * (vl + vr) / 2) and vy == pytest.approx(0, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(vx=st.floats(-0.35, 0.35), R=st.floats(0.45, 20.0), sign=st.sampled_from([-1, 1]))
def test_osr_inverse_then_forward_is_identity(osr, vx, R, sign):
    wz = sign * abs(vx) / R
    speed, steer = osr.inverse(vx, wz)
    fx, fy, fwz = osr.forward(speed, steer)
    assert fx == pytest.approx(vx, abs=1e-9) and fy == pytest.approx(0, abs=1e-9) and fwz == pytest.approx(wz, abs=1e-9)
    assert np.all(np.abs(steer) <= math.pi / 2 + 1e-12)


def test_point_turn(osr, skid):
    speed, steer = osr.inverse(0.0, 0.5)
    assert osr.forward(speed, steer) == pytest.approx((0.0, 0.0, 0.5), abs=1e-12)
    osr.check_twist(0.0, 0.5)
    skid.check_twist(0.0, 1.0)


@pytest.mark.parametrize("vx, wz, match", [
    (0.5, 0.0, "max_speed_mps"),
    (0.1, 2.0, "max_yaw_rate"),
    (0.2, 0.5, "turning radius"),
    (math.nan, 0.0, "finite"),
    ("fast", 0.0, "number"),
])
def test_check_twist_rejects(osr, vx, wz, match):
    with pytest.raises(CommandOutOfRange, match=match):
        osr.check_twist(vx, wz, device="osr@sim")


def test_check_wheels(osr):
    osr.check_wheels(np.ones(6), np.zeros(6))
    with pytest.raises(CommandOutOfRange, match="6 wheels"):
        osr.check_wheels(np.ones(4))
    with pytest.raises(CommandOutOfRange, match="middle_left cannot steer"):
        osr.check_wheels(np.ones(6), [0, 0.1, 0, 0, 0, 0])
    with pytest.raises(CommandOutOfRange, match=r"speed_radps\[2\]"):
        osr.check_wheels([0, 0, 1e3, 0, 0, 0])
    with pytest.raises(CommandOutOfRange, match="finite"):
        osr.check_wheels([0, 0, np.inf, 0, 0, 0])
    assert isinstance(CommandOutOfRange("x"), ValueError)
