"""Tests for perception.trajectory: SE(3)/SO(3) helpers and quaternions against scipy; TUM files round trip
and malformed lines; Umeyama alignment against hand-computed cases, scipy's Kabsch and random Sim(3)
(hypothesis); ATE, KITTI-style relative errors and end-point error against hand-computed trajectories;
the cv2 plot."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from perception.trajectory import (ate, evaluate, invert, path_distances, plot_trajectories, quat_from_rot,
                                   read_tum, relative_errors, rot_from_quat, rotation_angle, se3_exp, se3_log,
                                   segment_lengths, so3_exp, so3_log, umeyama, write_tum)

seeds = st.integers(0, 2 ** 31)


def _random_rot(rng):
    return Rotation.random(random_state=rng).as_matrix()


@settings(max_examples=80)
@given(seeds)
def test_so3_and_quaternions_match_scipy(seed):
    rng = np.random.default_rng(seed)
    R = _random_rot(rng)
    w = so3_log(R)
    np.testing.assert_allclose(w, Rotation.from_matrix(R).as_rotvec(), atol=1e-8)
    np.testing.assert_allclose(so3_exp(w), R, atol=1e-10)
    q = quat_from_rot(R)
    qs = Rotation.from_matrix(R).as_quat()           # scipy: (x, y, z, w)
    qs = -qs if qs[3] < 0 else qs
    np.testing.assert_allclose(q, qs, atol=1e-10)
    np.testing.assert_allclose(rot_from_quat(q), R, atol=1e-10)
    assert rotation_angle(R) == pytest.approx(np.linalg.norm(w), abs=1e-9)


def test_so3_log_near_pi_and_zero():
    for axis in np.eye(3).tolist() + [[1 / math.sqrt(3)] * 3]:
        for th in (math.pi, math.pi - 1e-6, 1e-9, 0.0):
            w = np.array(axis) * th
            R = Rotation.from_rotvec(w).as_matrix()
            np.testing.assert_allclose(so3_exp(so3_log(R)), R, atol=1e-9)
    assert np.allclose(so3_log(np.eye(3)), 0.0)


@settings(max_examples=80)
@given(seeds)
def test_se3_exp_log_invert(seed):
    rng = np.random.default_rng(seed)
    xi = np.r_[Rotation.random(random_state=rng).as_rotvec() * 0.99, rng.normal(0, 3, 3)]
    T = se3_exp(xi)
    np.testing.assert_allclose(se3_log(T), xi, atol=1e-8)
    np.testing.assert_allclose(invert(T) @ T, np.eye(4), atol=1e-12)
    stack = np.stack([T, se3_exp(-xi)])
    np.testing.assert_allclose(invert(stack)[1], invert(stack[1]), atol=1e-12)


def test_tum_round_trip_and_format(tmp_path):
    rng = np.random.default_rng(1)
    T = np.stack([se3_exp(np.r_[rng.normal(0, 1, 3), rng.normal(0, 5, 3)]) for _ in range(20)])
    t = np.cumsum(rng.uniform(0.05, 0.2, 20))
    p = write_tum(tmp_path / "sub" / "traj.tum", t, T)
    lines = [ln for ln in p.read_text().splitlines() if not ln.startswith("#")]
    assert len(lines) == 20 and all(len(ln.split()) == 8 for ln in lines)
    t2, T2 = read_tum(p)
    np.testing.assert_allclose(t2, t, atol=1e-9)
    np.testing.assert_allclose(T2, T, atol=1e-8)
    # a hand-written TUM line: 90 degrees about z (qz = qw = sqrt(1/2)), comma separated
    (tmp_path / "hand.txt").write_text("# comment\n\n1.5, 1, 2, 3, 0, 0, 0.7071067811865476, 0.7071067811865476\n")
    t3, T3 = read_tum(tmp_path / "hand.txt")
    np.testing.assert_allclose(T3[0], [[0, -1, 0, 1], [1, 0, 0, 2], [0, 0, 1, 3], [0, 0, 0, 1]], atol=1e-12)


@pytest.mark.parametrize("text, match", [
    ("1 2 3 4 5 6 7\n", r"bad\.txt:1: expected 8 values"),
    ("0 0 0 0 0 0 0 1\n1 0 0 0 0 0 x 1\n", r"bad\.txt:2: not a number"),
    ("0 0 0 0 0 0 0 2\n", r"bad\.txt:1: quaternion norm 2"),
    ("0 0 0 nan 0 0 0 1\n", r"bad\.txt:1: non-finite"),
])
def test_read_tum_rejects_malformed_lines(tmp_path, text, match):
    (tmp_path / "bad.txt").write_text(text)
    with pytest.raises(ValueError, match=match):
        read_tum(tmp_path / "bad.txt")


def test_umeyama_hand_computed_case():
    # a unit square's corners rotated 90 deg about z, scaled by 2, moved by (1, 2, 3)
    src = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0.5, 0.5, 1.0]], float)
    Rz = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]], float)
    dst = 2 * src @ Rz.T + [1, 2, 3]
    s, R, t = umeyama(src, dst, with_scale=True)
    assert s == pytest.approx(2.0, abs=1e-12)
    np.testing.assert_allclose(R, Rz, atol=1e-12)
    np.testing.assert_allclose(t, [1, 2, 3], atol=1e-12)
    # without scale: the best rigid fit of a doubled square keeps the rotation, t maps the centroids
    s1, R1, t1 = umeyama(src, dst)
    assert s1 == 1.0
    np.testing.assert_allclose(R1, Rz, atol=1e-12)
    np.testing.assert_allclose(t1, dst.mean(0) - src.mean(0) @ Rz.T, atol=1e-12)


@settings(max_examples=60)
@given(seeds)
def test_umeyama_recovers_a_random_sim3_and_matches_scipy_kabsch(seed):
    rng = np.random.default_rng(seed)
    src = rng.normal(0, 3, (int(rng.integers(4, 50)), 3))
    R = _random_rot(rng)
    s = float(rng.uniform(0.2, 5.0))
    t = rng.normal(0, 10, 3)
    dst = s * src @ R.T + t
    s2, R2, t2 = umeyama(src, dst, with_scale=True)
    assert s2 == pytest.approx(s, rel=1e-9)
    np.testing.assert_allclose(R2, R, atol=1e-9)
    np.testing.assert_allclose(t2, t, atol=1e-8)
    # rigid alignment of noisy points: scipy's Kabsch on the centred sets is the oracle
    noisy = src @ R.T + t + rng.normal(0, 0.1, src.shape)
    _, R3, _ = umeyama(src, noisy)
    Rk, _ = Rotation.align_vectors(noisy - noisy.mean(0), src - src.mean(0))
    np.testing.assert_allclose(R3, Rk.as_matrix(), atol=1e-8)


def test_umeyama_reflection_is_avoided_and_bad_input():
    src = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]], float)
    dst = src * [1, 1, -1]                    # a mirror image: the best *rotation* is not a reflection
    _, R, _ = umeyama(src, dst)
    assert np.linalg.det(R) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same shape"):
        umeyama(src, dst[:3])
    with pytest.raises(ValueError, match="at least 2"):
        umeyama(src[:1], dst[:1])


def test_ate_hand_computed():
    # estimate = truth scaled about the centroid by (r + delta) / r: a rigid alignment leaves delta everywhere
    r, delta = math.sqrt(2), 0.1
    gt = np.array([[1, 1, 0], [-1, 1, 0], [-1, -1, 0], [1, -1, 0]], float)
    est = gt * (r + delta) / r + [5, 0, 0]
    a = ate(est, gt)
    assert a.rmse_m == pytest.approx(delta, abs=1e-12) and a.max_m == pytest.approx(delta, abs=1e-12)
    b = ate(est, gt, with_scale=True)
    assert b.rmse_m == pytest.approx(0.0, abs=1e-12) and b.scale == pytest.approx(r / (r + delta))
    c = ate(est, gt, align=False)
    assert c.rmse_m == pytest.approx(np.sqrt(np.mean(np.sum((est - gt) ** 2, axis=1))))


def _straight(n, step=1.0, yaw_per_frame=0.0, scale=1.0):
    """Poses moving ``step`` along the camera's z each frame, turning ``yaw_per_frame`` about y."""
    T = [np.eye(4)]
    d = se3_exp([0, yaw_per_frame, 0, 0, 0, step * scale])
    for _ in range(n - 1):
        T.append(T[-1] @ d)
    return np.stack(T)


def test_relative_errors_hand_computed():
    gt = _straight(101)                                   # 100 m straight
    est = _straight(101, scale=1.01)                      # 1 % too long
    rel = relative_errors(est, gt, [10, 20, 40], step=5)
    assert rel.t_err_pct == pytest.approx((1.0, 1.0, 1.0), abs=1e-9)
    assert rel.r_err_deg_per_m == pytest.approx((0.0, 0.0, 0.0), abs=1e-9)
    assert rel.counts == (19, 17, 13)                     # starts 0, 5, … with the end frame inside
    assert rel.t_err_pct_mean == pytest.approx(1.0)
    # a constant heading error of 0.01 deg per metre
    yaw = math.radians(0.01)
    est2 = _straight(101, yaw_per_frame=yaw)
    rel2 = relative_errors(est2, gt, [10, 50])
    assert rel2.r_err_deg_per_m == pytest.approx((0.01, 0.01), rel=1e-6)
    # the translation error of an arc of L segments of 1 m turning yaw each: chord vs straight line
    L = 10
    pts = _straight(L + 1, yaw_per_frame=yaw)[-1][:3, 3]
    expect = np.linalg.norm(np.array([0, 0, L]) - pts) / L * 100
    # the error pose is inv(dE) dG, whose translation is R_E^T (t_G - t_E): same norm
    assert rel2.t_err_pct[0] == pytest.approx(expect, rel=1e-6)


def test_segment_lengths_and_distances():
    assert segment_lengths(100.0) == (10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0)
    assert segment_lengths(3700.0)[0] == 100.0 and segment_lengths(3700.0)[-1] == 800.0
    assert segment_lengths(4.2) == (0.42, 0.84, 1.3, 1.7, 2.1, 2.5, 2.9, 3.4)
    assert segment_lengths(0.0) == ()
    assert path_distances(_straight(4, step=2.0)).tolist() == [0.0, 2.0, 4.0, 6.0]


def test_evaluate_reports_everything():
    gt = _straight(101)
    est = _straight(101, scale=1.01)
    m = evaluate(est, gt)
    assert m["distance_m"] == pytest.approx(100.0)
    assert m["endpoint_error_m"] == pytest.approx(1.0) and m["endpoint_error_pct"] == pytest.approx(1.0)
    assert m["sim3_scale"] == pytest.approx(1 / 1.01) and m["ate_sim3_rmse_m"] == pytest.approx(0, abs=1e-9)
    assert m["kitti_t_err_pct"] == pytest.approx(1.0) and len(m["relative"]) == 8
    assert m["ate_rmse_m"] > 0 and m["endpoint_rotation_error_deg"] == pytest.approx(0, abs=1e-9)
    with pytest.raises(ValueError, match="same shape"):
        evaluate(est[:5], gt)


def test_plot_trajectories(tmp_path):
    gt = _straight(50, yaw_per_frame=0.03)
    est = _straight(50, yaw_per_frame=0.031)
    p = plot_trajectories(tmp_path / "t.png", est[:, :3, 3], gt[:, :3, 3], title="a test",
                          failures_xyz=est[[10, 20], :3, 3])
    img = cv2.imread(str(p))
    assert img.shape == (800, 800, 3)
    red = (img[:, :, 2] > 180) & (img[:, :, 1] < 80) & (img[:, :, 0] < 80)
    grey = (np.abs(img.astype(int) - 150).max(axis=2) < 10)
    assert red.sum() > 500 and grey.sum() > 500
    # a straight line (degenerate plane) and an estimate only
    p2 = plot_trajectories(tmp_path / "s.png", _straight(10)[:, :3, 3])
    assert cv2.imread(str(p2)) is not None
    with pytest.raises(ValueError, match="no positions"):
        plot_trajectories(tmp_path / "e.png", np.zeros((0, 3)))
