"""Tests of perception.estimator (RoverEKF).

Oracles: scipy's Rotation and chi-square distribution; numerical Jacobians on the manifold; synthetic
rovers drawn from the filter's stated noise model (NEES/NIS within chi-square bounds over Monte Carlo
runs); simulator ground truth on recorded traverses (a 20° sandy climb, injected slip on level ground).
"""
from __future__ import annotations

import math
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation
from scipy.stats import chi2

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _ref_estimator as ref  # noqa: E402
from perception import estimator as est  # noqa: E402
from perception.estimator import EKFParams, RoverEKF, chi2_ppf  # noqa: E402

T_BODY_CAM = ref.pose(np.array([[0.0, -0.4226, 0.9063], [-1.0, 0.0, 0.0], [0.0, -0.9063, -0.4226]]),
                      [0.15, 0.06, 0.8])
T_BODY_CAM[:3, :3] = Rotation.from_matrix(T_BODY_CAM[:3, :3]).as_matrix()      # exactly orthonormal
MARS = EKFParams(gravity_mps2=3.721)
EMULATED_VO_COV = ref.vo_cov(5e-4, (1.5e-3, 1.5e-3, 3e-3))   # per 0.15 m frame: 0.5 mrad, 1.5/1.5/3 mm


def _rand_pose(rng, scale=3.0):
    return Rotation.random(random_state=rng).as_matrix(), rng.normal(0, scale, 3)


# ----------------------------------------------------------------------------- helpers vs scipy
vec3 = st.lists(st.floats(-3.0, 3.0, allow_nan=False), min_size=3, max_size=3).map(np.array)


@settings(max_examples=60)
@given(vec3, st.sampled_from([1.0, 1e-3, 1e-7, 0.0]))
def test_so3_exp_log_match_scipy(v, scale):
    phi = v * scale
    if np.linalg.norm(phi) > math.pi - 1e-3:
        phi = phi / np.linalg.norm(phi) * (math.pi - 1e-3)
    R = est._exp_so3(phi)
    assert np.allclose(R, ref.exp_so3(phi), atol=1e-12)
    assert np.allclose(est._log_so3(R), ref.log_so3(R), atol=1e-9)


def test_log_near_pi_and_jacobians():
    rng = np.random.default_rng(1)
    for _ in range(20):
        axis = rng.normal(size=3)
        axis /= np.linalg.norm(axis)
        phi = axis * (math.pi - 1e-7)
        assert np.allclose(est._exp_so3(est._log_so3(est._exp_so3(phi))), est._exp_so3(phi), atol=1e-9)
    for phi in (rng.normal(0, 1, 3), rng.normal(0, 1e-6, 3), np.zeros(3)):
        eps = 1e-6
        # Exp(phi + d) = Exp(phi) Exp(Jr d): numerical Jr from scipy
        Jn = np.stack([ref.log_so3(ref.exp_so3(phi).T @ ref.exp_so3(phi + eps * e)) / eps for e in np.eye(3)], 1)
        assert np.allclose(est._jr(phi), Jn, atol=1e-5)
        assert np.allclose(est._jr_inv(phi) @ est._jr(phi), np.eye(3), atol=1e-9)


@pytest.mark.parametrize("dof", [1, 2, 3, 6, 13, 120])
def test_chi2_ppf_matches_scipy(dof):
    for p in (0.001, 0.025, 0.5, 0.95, 0.975, 0.999, 0.9999):
        assert chi2_ppf(p, dof) == pytest.approx(chi2.ppf(p, dof), rel=1e-7)


# ----------------------------------------------------------------------------- Jacobians vs numerical
def _ekf_with_clones(rng, poses):
    ekf = RoverEKF(T_BODY_CAM, MARS)
    ekf._clones = [est._Clone(float(i), R.copy(), p.copy()) for i, (R, p) in enumerate(poses)]
    return ekf


def test_vo_residual_and_jacobians_match_reference():
    rng = np.random.default_rng(2)
    for _ in range(10):
        poses = [_rand_pose(rng), _rand_pose(rng)]
        ekf = _ekf_with_clones(rng, poses)
        Tm = ref.noisy_relative(ref.camera_relative(ref.pose(*poses[0]), ref.pose(*poses[1]), T_BODY_CAM),
                                np.eye(6) * 1e-2, rng)

        def resid(x):
            Tp = ref.camera_relative(ref.pose(*x[0]), ref.pose(*x[1]), T_BODY_CAM)
            return np.concatenate([ref.log_so3(Tm[:3, :3].T @ Tp[:3, :3]), Tm[:3, :3].T @ (Tp[:3, 3] - Tm[:3, 3])])

        r, Jr_, Jc_ = ekf._vo_residual(ekf._clones[0], ekf._clones[1], Tm[:3, :3], Tm[:3, 3])
        assert np.allclose(r, resid(poses), atol=1e-9)
        Jn = ref.numerical_jacobian(resid, poses)
        assert np.allclose(np.hstack([Jr_, Jc_]), Jn, atol=1e-5)


def test_process_jacobian_matches_numerical():
    rng = np.random.default_rng(3)
    for gyro_mode in (True, False):
        for _ in range(5):
            R0, p0 = _rand_pose(rng)
            bg, k = rng.normal(0, 0.01, 3), rng.uniform(-0.3, 1.2)
            wm = np.array([rng.uniform(-0.4, 0.4), rng.uniform(-0.05, 0.05), rng.uniform(-0.5, 0.5)])
            gyro = rng.normal(0, 0.5, 3) if gyro_mode else None
            dt = 0.1
            R1, p1, F, Q, ds = est._process(R0, p0, bg, k, wm, dt, gyro, MARS)
            eps = 1e-6
            Fn = np.zeros((13, 13))
            for j in range(13):
                cols = []
                for sgn in (1, -1):
                    d = np.zeros(13)
                    d[j] = sgn * eps
                    Ra, pa, *_ = est._process(R0 @ ref.exp_so3(d[0:3]), p0 + d[3:6], bg + d[6:9], k + d[12], wm, dt,
                                              gyro, MARS)
                    cols.append(np.concatenate([ref.log_so3(R1.T @ Ra), pa - p1, d[6:9], d[9:12], [d[12]]]))
                Fn[:, j] = (cols[0] - cols[1]) / (2 * eps)
            assert np.allclose(F, Fn, atol=1e-6), (gyro_mode, np.abs(F - Fn).max())
            assert ds == pytest.approx(math.hypot(wm[0], wm[1]) * dt)
            assert np.allclose(Q, Q.T) and np.linalg.eigvalsh(Q).min() >= -1e-18


def test_accel_and_heading_jacobians_match_numerical():
    rng = np.random.default_rng(4)
    for _ in range(5):
        R, p = _rand_pose(rng)
        ekf = RoverEKF(T_BODY_CAM, MARS, ref.pose(R, p))
        ekf._ba = rng.normal(0, 0.02, 3)
        # accelerometer: h = R^T g z + b_a  (at rest, no wheel motion)
        f = rng.normal(0, 1, 3)
        P0 = ekf._P.copy()
        captured = {}

        def fake_update(name, r, cols, Rm, _c=captured):
            _c[name] = (r, cols)
            return est.FilterUpdate(False, 0.0, len(r))
        ekf._update = fake_update
        ekf._update_accel(f, np.zeros(3))
        r, cols = captured["accel"]
        assert np.allclose(r, R.T @ [0, 0, 3.721] + ekf._ba - f)
        J = dict(cols)
        Jn = ref.numerical_jacobian(lambda x: x[0][0].T @ [0, 0, 3.721], [(R, p)])[:, :3]
        assert np.allclose(J[0], Jn, atol=1e-6) and np.allclose(J[9], np.eye(3))
        # heading: yaw of Rz Ry Rx (scipy's intrinsic ZYX)
        if abs(Rotation.from_matrix(R).as_euler("ZYX")[1]) > 1.3:
            continue
        ekf.update_heading(0.0, 0.3, 0.01)
        r, cols = captured["heading"]
        yaw = Rotation.from_matrix(R).as_euler("ZYX")[0]
        assert r[0] == pytest.approx(est._wrap(yaw - 0.3))
        Jn = ref.numerical_jacobian(lambda x: [Rotation.from_matrix(x[0][0]).as_euler("ZYX")[0]], [(R, p)])[:, :3]
        assert np.allclose(dict(cols)[0], Jn, atol=1e-6)
        assert np.array_equal(ekf._P, P0)


# ----------------------------------------------------------------------------- synthetic Monte Carlo
def _factory(cov0=None):
    c0 = np.diag([1e-8, 1e-8, 1e-12, 1e-12, 1e-12, 1e-12]) if cov0 is None else cov0
    return lambda T0: RoverEKF(T_BODY_CAM, MARS, T0, c0)


@pytest.fixture(scope="module")
def monte_carlo():
    runs = [ref.simulate(_factory(), MARS, np.random.default_rng(1000 + m), duration_s=40.0, T_body_cam=T_BODY_CAM,
                         dropouts=((20.0, 28.0),)) for m in range(16)]
    return runs


def test_nees_within_chi_square_bounds(monte_carlo):
    M = len(monte_carlo)
    n = len(monte_carlo[0].t)
    nees = np.zeros((M, n))
    nees_k = np.zeros((M, n))
    for m, L in enumerate(monte_carlo):
        for i in range(n):
            e = ref.pose_error(L.T_est[i], L.T_true[i])
            nees[m, i] = e @ np.linalg.solve(L.P_pose[i], e)
            nees_k[m, i] = (L.k_est[i] - L.k_true[i]) ** 2 / L.k_var[i]
    anees = nees[:, 10:].mean(0)
    lo, hi = chi2.ppf(0.005, 6 * M) / M, chi2.ppf(0.995, 6 * M) / M
    inside = np.mean((anees > lo) & (anees < hi))
    assert inside > 0.9, f"ANEES inside the 99 % band at only {inside:.0%} of the steps"
    assert 0.8 * 6 < anees.mean() < 1.25 * 6
    ak = nees_k[:, 10:].mean(0)
    assert 0.6 < ak.mean() < 1.4
    assert np.mean((ak > chi2.ppf(0.005, M) / M) & (ak < chi2.ppf(0.995, M) / M)) > 0.9


def test_nis_within_chi_square_bounds(monte_carlo):
    for key, dof in (("vo_nis", 6), ("accel_nis", 3)):
        nis = np.concatenate([getattr(L, key) for L in monte_carlo])
        N = len(nis)
        lo, hi = chi2.ppf(0.0005, dof * N) / N, chi2.ppf(0.9995, dof * N) / N
        assert lo < nis.mean() < hi, (key, nis.mean(), lo, hi)
        assert abs(np.mean(nis > chi2.ppf(0.95, dof)) - 0.05) < 0.03


def test_vo_dropout_grows_covariance_then_returns_without_jump(monte_carlo):
    for L in monte_carlo:
        tr = np.trace(L.P_pose[:, 3:, 3:], axis1=1, axis2=2)
        drop = (L.t >= 20.0) & (L.t < 28.0)
        idx = np.flatnonzero(drop)
        assert np.all(np.diff(tr[idx]) > 0), "position covariance must grow while VO is down"
        assert tr[idx[-1]] > 1.5 * tr[idx[0]]
        # the first VO update after the dropout moves the estimate by a small amount, within the
        # predicted uncertainty: a correction, not a reset to VO's own pose
        j = np.flatnonzero(L.vo_mask & (L.t >= 28.0))[0]
        assert L.jumps[j] < 3.0 * math.sqrt(tr[j - 1])
        assert tr[j] < tr[j - 1]
        e = ref.pose_error(L.T_est[j], L.T_true[j])[3:]
        assert np.linalg.norm(e) < 3.0 * math.sqrt(tr[j])
    # the corrections are of the size the filter predicted (not resets): mean squared jump ~ predicted
    jumps = np.array([L.jumps[np.flatnonzero(L.vo_mask & (L.t >= 28.0))[0]] for L in monte_carlo])
    preds = np.array([np.trace(L.P_pose[np.flatnonzero(L.vo_mask & (L.t >= 28.0))[0] - 1, 3:, 3:])
                      for L in monte_carlo])
    assert np.mean(jumps ** 2) < np.mean(preds)


@pytest.mark.parametrize("slip", [0.0, 0.3, 0.6, 1.0, 1.25])
def test_slip_estimate_converges_to_injected_slip(slip):
    L = ref.simulate(_factory(), MARS, np.random.default_rng(7), duration_s=30.0, slip=slip, T_body_cam=T_BODY_CAM)
    s_est = 1.0 - L.k_est[-1]
    sigma = math.sqrt(L.k_var[-1])
    assert sigma < 0.03
    assert abs(s_est - slip) < max(3 * sigma, 0.01), (s_est, slip, sigma)
    # without VO the slip stays at its prior and the wheels over-report distance
    L0 = ref.simulate(_factory(), MARS, np.random.default_rng(7), duration_s=30.0, slip=slip, T_body_cam=T_BODY_CAM,
                      dropouts=((0.0, 1e9),))
    assert abs(1.0 - L0.k_est[-1] - MARS.slip0) < 1e-9
    if slip >= 0.3:
        err_vo = np.linalg.norm(L.T_est[-1, :3, 3] - L.T_true[-1, :3, 3])
        err_wheels = np.linalg.norm(L0.T_est[-1, :3, 3] - L0.T_true[-1, :3, 3])
        assert err_wheels > 10 * err_vo


def test_keyframe_reference_across_dropout_is_kept_and_used():
    rng = np.random.default_rng(11)
    ekf = RoverEKF(T_BODY_CAM, replace(MARS, max_clones=3))
    C = EMULATED_VO_COV
    ekf.update_wheels(0.0, 0.2, 0.0)
    ekf.predict(0.0, np.zeros(3))
    kf = ref.VOResultStub(0.0, 0, -1.0, -1, np.eye(4), C, keyframe=True)      # reference unknown: ignored
    assert not ekf.update_vo(kf)
    assert ekf.clone_times_s == [0.0]
    for i in range(1, 8):                                                        # a dropout of 7 frames
        t = float(i)
        ekf.update_wheels(t, 0.2, 0.0)
        ekf.predict(t, np.zeros(3))
        assert not ekf.update_vo(ref.VOFailureStub(t, i))
    assert 0.0 in ekf.clone_times_s and len(ekf.clone_times_s) == 3             # the keyframe survived pruning
    ekf.update_wheels(8.0, 0.2, 0.0)
    ekf.predict(8.0, np.zeros(3))
    sig_before = math.sqrt(ekf.position_cov[0, 0])
    Tm = ref.noisy_relative(ref.camera_relative(np.eye(4), ref.pose(np.eye(3), [1.6, 0, 0]), T_BODY_CAM), C, rng)
    res = ekf.update_vo(ref.VOResultStub(8.0, 8, 0.0, 0, Tm, C))            # 8 s baseline to the keyframe
    assert res and res.dof == 6
    assert math.sqrt(ekf.position_cov[0, 0]) < 0.2 * sig_before
    assert abs(ekf.position_m[0] - 1.6) < 0.01
    missing = ekf.update_vo(ref.VOResultStub(9.0, 9, 3.0, 3, np.eye(4), C))
    assert not missing and "not kept" in missing.reason


def test_late_vo_result_matches_on_time_update():
    """A VO result applied 0.5 s after its frame (the frame pose kept by mark_frame) gives the same estimate
    as applying it on time: the correction reaches the current state through the clone's cross-covariance."""
    rng = np.random.default_rng(12)
    C = EMULATED_VO_COV
    gyros = rng.normal(0, 0.01, (40, 3))
    Tm = ref.noisy_relative(ref.camera_relative(np.eye(4), ref.pose(ref.exp_so3([0, 0, 0.05]), [0.3, 0.01, 0]),
                                                T_BODY_CAM), C, rng)
    out = []
    for late in (False, True):
        ekf = RoverEKF(T_BODY_CAM, MARS)
        ekf.update_wheels(0.0, 0.2)
        ekf.mark_frame(0.0)
        for i in range(1, 40):
            t = 0.1 * i
            ekf.update_wheels(t, 0.2)
            ekf.predict(t, gyros[i])
            if i == 15:
                if late:
                    ekf.mark_frame(t)
                else:
                    assert ekf.update_vo(ref.VOResultStub(t, 1, 0.0, 0, Tm, C))
            if late and i == 20:
                assert ekf.update_vo(ref.VOResultStub(1.5, 1, 0.0, 0, Tm, C))
        out.append(ekf)
    # equal up to the EKF's linearisation (the late filter drove 0.5 s on the pre-update slip): < 0.5 mm
    assert np.allclose(out[0].T_world_body[:3, :3], out[1].T_world_body[:3, :3], atol=1e-5)
    assert np.allclose(out[0].position_m, out[1].position_m, atol=5e-4)
    assert abs(out[0].slip.slip - out[1].slip.slip) < 1e-3
    P0, P1 = out[0].cov, out[1].cov
    scale = np.sqrt(np.outer(np.diag(P0), np.diag(P0)))
    assert np.all(np.abs(P0 - P1) <= 0.05 * scale + 1e-15)      # correlations agree to 0.05


def test_reference_is_used_before_old_poses_are_pruned():
    C = EMULATED_VO_COV
    ekf = RoverEKF(T_BODY_CAM, replace(MARS, max_clones=2))
    for i in range(3):
        ekf.update_wheels(float(i), 0.2)
        ekf.predict(float(i), np.zeros(3))
        ekf.mark_frame(float(i)) if i < 2 else None
    assert ekf.clone_times_s == [0.0, 1.0]
    Tm = ref.camera_relative(np.eye(4), ref.pose(np.eye(3), [0.4, 0, 0]), T_BODY_CAM)
    assert ekf.update_vo(ref.VOResultStub(2.0, 2, 0.0, 0, Tm, C))      # refers to the oldest kept pose
    assert ekf.clone_times_s == [1.0, 2.0] and ekf.state_size == 13 + 12


def test_relative_body_pose_maps_to_the_camera_through_the_adjoint():
    rng = np.random.default_rng(13)
    # oracle: sample body-frame perturbations, push them through T_cam = T_cb T_body T_bc, measure the spread
    Tb = ref.pose(ref.exp_so3([0.02, -0.01, 0.1]), [0.3, 0.02, 0.01])
    Cb = np.diag([2e-4, 3e-4, 1e-4, 1e-3, 2e-3, 5e-4]) ** 2
    Tcb = ref.inv(T_BODY_CAM)
    Tc = Tcb @ Tb @ T_BODY_CAM
    ds = rng.multivariate_normal(np.zeros(6), Cb, 4000)
    dc = np.array([ref.pose_error(Tc, Tcb @ ref.pose(Tb[:3, :3] @ ref.exp_so3(d[:3]), Tb[:3, 3] + Tb[:3, :3] @ d[3:])
                                  @ T_BODY_CAM) for d in ds])
    # pose_error's translation is in the outer frame: rotate it into the camera frame (right tangent)
    dc[:, 3:] = dc[:, 3:] @ Tc[:3, :3]
    Ad = est._adjoint(Tcb)
    pred = Ad @ Cb @ Ad.T
    emp = np.cov(dc.T)
    scale = np.sqrt(np.outer(np.diag(pred), np.diag(pred)))
    assert np.all(np.abs(emp - pred) < 0.1 * scale)
    # and the filter applies it like the equivalent camera measurement
    out = []
    for body in (True, False):
        ekf = RoverEKF(T_BODY_CAM, MARS)
        ekf.update_wheels(0.0, 0.3)
        ekf.mark_frame(0.0)
        ekf.update_wheels(1.0, 0.3)
        ekf.predict(1.0, [0.0, 0.0, 0.1])
        res = (ekf.update_relative_pose(1.0, 0.0, Tb, Cb) if body else
               ekf.update_vo(ref.VOResultStub(1.0, 1, 0.0, 0, Tc, pred)))
        assert res
        out.append(ekf)
    assert np.allclose(out[0].T_world_body, out[1].T_world_body, atol=1e-12)
    assert np.allclose(out[0].cov, out[1].cov, atol=1e-15)


def test_stale_wheel_telemetry_inflates_uncertainty(caplog):
    ekf = RoverEKF(T_BODY_CAM, MARS)
    ekf.update_wheels(0.0, 0.3)
    ekf.predict(0.5, np.zeros(3))                      # stale from 0.5 s on (wheel_timeout_s)
    var_fresh = np.trace(ekf.position_cov)
    for i in range(1, 26):
        ekf.predict(0.5 + 0.1 * i, np.zeros(3))        # 2.5 s stale
    added = np.trace(ekf.position_cov) - var_fresh
    held = 3 * (0.3 * 2.5) ** 2                        # (|v| T)^2 on each axis
    slip = MARS.slip_sigma0 ** 2 * (0.3 * 3.0) ** 2 - MARS.slip_sigma0 ** 2 * (0.3 * 0.5) ** 2
    assert held < added < held + slip + 0.01
    assert "no wheel sample" in caplog.text


def test_zero_rate_update_calibrates_gyro_bias_at_rest():
    rng = np.random.default_rng(5)
    bias = np.array([0.003, -0.002, 0.0025])
    ekf = RoverEKF(T_BODY_CAM, MARS)
    for i in range(1, 101):
        t = 0.1 * i
        ekf.update_wheels(t, 0.0, 0.0)
        ekf.predict(t, bias + rng.normal(0, MARS.gyro_noise_rad_per_sqrt_s / math.sqrt(0.1), 3),
                    [0.0, 0.0, 3.721])
    sig = np.sqrt(np.diag(ekf.cov)[6:9])
    assert np.all(sig < 1e-4)
    assert np.all(np.abs(ekf.gyro_bias_radps - bias) < 3 * sig + 1e-6)
    assert ekf.innovation_stats["zero_rate"].count == 100
    # yaw stays put while standing (the bias is not integrated into heading)
    assert abs(ekf.yaw_pitch_roll_rad[0]) < 2e-3


def test_heading_updates_bound_yaw():
    kw = dict(duration_s=30.0, T_body_cam=T_BODY_CAM, dropouts=((0.0, 1e9),), gyro_bias=[0.0, 0.0, 0.004])
    free = ref.simulate(_factory(), MARS, np.random.default_rng(9), **kw)
    sun = ref.simulate(_factory(), MARS, np.random.default_rng(9), heading_sigma_rad=math.radians(1.0), **kw)
    s_free, s_sun = math.sqrt(free.P_pose[-1, 2, 2]), math.sqrt(sun.P_pose[-1, 2, 2])
    assert s_sun < math.radians(0.5) and s_free > 2 * s_sun
    e_free = abs(ref.pose_error(free.T_est[-1], free.T_true[-1])[2])
    e_sun = abs(ref.pose_error(sun.T_est[-1], sun.T_true[-1])[2])
    assert e_sun < 3 * s_sun and e_sun < e_free


def test_vo_gate_rejects_outliers_when_enabled():
    C = EMULATED_VO_COV
    for gate, expect in ((0.999, False), (None, True)):
        ekf = RoverEKF(T_BODY_CAM, replace(MARS, vo_gate_prob=gate))
        ekf.update_wheels(0.0, 0.2)
        ekf.mark_frame(0.0)
        ekf.update_wheels(1.0, 0.2)
        ekf.predict(1.0, np.zeros(3))
        bad = ref.camera_relative(np.eye(4), ref.pose(np.eye(3), [1.2, 0.5, 0.0]), T_BODY_CAM)
        res = ekf.update_vo(ref.VOResultStub(1.0, 1, 0.0, 0, bad, C))
        assert bool(res) is expect
        st = ekf.innovation_stats["vo"]
        assert st.count == 1 and st.rejected == (0 if expect else 1) and st.last_nis > 100


# ----------------------------------------------------------------------------- input validation
def test_bad_inputs_raise_or_are_rejected():
    with pytest.raises(ValueError, match="T_body_cam"):
        RoverEKF(np.eye(3))
    with pytest.raises(ValueError, match="rigid"):
        RoverEKF(np.diag([2.0, 1, 1, 1]))
    with pytest.raises(ValueError, match="max_clones"):
        EKFParams(max_clones=1)
    with pytest.raises(ValueError, match="gyro_noise_rad_per_sqrt_s"):
        EKFParams(gyro_noise_rad_per_sqrt_s=-1.0)
    with pytest.raises(ValueError, match="vo_gate_prob"):
        EKFParams(vo_gate_prob=1.5)
    with pytest.raises(ValueError, match="cov0"):
        RoverEKF(T_BODY_CAM, cov0=np.eye(5))
    ekf = RoverEKF(T_BODY_CAM, MARS, t0_s=10.0)
    with pytest.raises(ValueError, match="before the filter's time"):
        ekf.predict(9.0, np.zeros(3))
    with pytest.raises(ValueError, match="gyro_radps"):
        ekf.predict(11.0, [0.0, math.nan, 0.0])
    with pytest.raises(ValueError, match="v_body_mps"):
        ekf.update_wheels(11.0, [1.0, 2.0, 3.0])
    ekf.update_wheels(11.0, 0.1)
    with pytest.raises(ValueError, match="time order"):
        ekf.update_wheels(10.5, 0.1)
    with pytest.raises(ValueError, match="sigma_rad"):
        ekf.update_heading(11.0, 0.0, 0.0)
    ekf.predict(11.0, np.zeros(3))
    ekf.mark_frame(11.0)
    ekf.predict(12.0, np.zeros(3))
    with pytest.raises(ValueError, match="mark frames as they are captured"):
        ekf.mark_frame(11.5)
    with pytest.raises(ValueError, match="T_ref_cur"):
        ekf.update_vo(ref.VOResultStub(12.0, 1, 11.0, 0, np.eye(3), np.eye(6)))
    notpd = ekf.update_vo(ref.VOResultStub(12.0, 1, 11.0, 0, np.eye(4), -np.eye(6)))
    assert not notpd and "positive definite" in notpd.reason
    nan = ekf.update_vo(ref.VOResultStub(12.0, 1, 11.0, 0, np.full((4, 4), np.nan), np.eye(6)))
    assert not nan and "non-finite" in nan.reason
    fail = ekf.update_vo(ref.VOFailureStub(12.0, 1, "7 inliers < min_inliers 12"))
    assert not fail and fail.reason == "7 inliers < min_inliers 12"
    assert ekf.innovation_stats["vo"].failures == 1
    with pytest.raises(TypeError, match="unknown parameter"):
        EKFParams.for_rover(_Profile(), bogus=1)


class _Profile:
    class sensors:
        gyro_noise_dps, gyro_bias_dps, gyro_bias_walk_dps, accel_bias_mps2 = 0.05, 0.1, 0.002, 0.02


def test_for_rover_reads_the_profile():
    from nav.config import load_planet, load_rover
    pr = EKFParams.for_rover(load_rover("osr"), load_planet("mars"))
    assert pr.gravity_mps2 == pytest.approx(3.721)
    assert pr.gyro_bias_sigma_radps == pytest.approx(math.radians(0.1))
    assert pr.gyro_noise_rad_per_sqrt_s == pytest.approx(math.radians(0.05) / math.sqrt(50.0))


# ----------------------------------------------------------------------------- recorded simulator traverses
@pytest.fixture(scope="module")
def sandy_climb():
    from nav.config import load_rover
    from sim.recording import course, record_traverse

    world = ref.ramp_world(20.0, seed=1)                  # the planet's soil: Martian sand, ~50 % slip at 20°
    rec = record_traverse(world, load_rover("osr"), course("straight", 20.0, start_xy=(2.0, 4.0)), render=False)
    assert rec.reached
    return rec


def test_sandy_climb_within_one_percent_while_wheels_are_far_off(sandy_climb):
    from nav.config import load_planet
    rec = sandy_climb
    prof = rec.profile
    pr = EKFParams.for_rover(prof, load_planet("mars"))
    vo = ref.replay(rec.telemetry, rec.truth, prof, mode="vo", params=pr, vo_cov_=EMULATED_VO_COV,
                    rng=np.random.default_rng(0))
    wheels = ref.replay(rec.telemetry, rec.truth, prof, mode="wheels", params=pr)
    imu = ref.replay(rec.telemetry, rec.truth, prof, mode="imu", params=pr)
    d = vo.dist
    assert vo.distance_m > 18.0
    climbing = vo.slip_true > 0.4
    assert climbing.mean() > 0.7, "most of the drive is on the slope at ~50 % slip"
    # the estimate stays within 1 % of the distance driven (from 5 m on) and ends within 1 %
    m = d > 5.0
    assert np.max(vo.err_3d[m] / d[m]) < 0.01
    assert vo.err_3d[-1] < 0.01 * vo.distance_m
    # ... and within its own 3-sigma
    assert vo.err_3d[-1] < 3 * math.sqrt(np.trace(vo.P_pos[-1]))
    # wheel odometry alone (with or without the IMU) thinks it went twice as far
    assert wheels.err_xy[-1] > 0.5 * vo.distance_m
    assert imu.err_3d[-1] > 0.5 * vo.distance_m
    # slip caught like MER's: the estimate matches the simulator's wheel slip
    assert abs(vo.slip_est[-1] - vo.slip_true[-1]) < max(3 * vo.slip_sigma[-1], 0.02)
    st = vo.ekf.innovation_stats
    assert st["vo"].rejected == 0 and st["vo"].count > 100
    assert st["accel"].rejected < 0.05 * st["accel"].count


@pytest.fixture(scope="module")
def flat_slip_drive():
    return ref.drive_flat(stand_s=5.0, drive_s=60.0, speed_mps=0.25, slip_window_s=(15.0, 35.0), slip=0.6)


def test_injected_slip_tracked_and_dropout_bridged_on_sim_rover(flat_slip_drive):
    from nav.config import load_planet
    tel, tru, bias, prof = flat_slip_drive
    pr = EKFParams.for_rover(prof, load_planet("mars"))
    # the standstill calibrates the gyro bias (zero-rate updates)
    stand = ref.replay(tel[:51], tru[:51], prof, mode="imu", params=pr)
    sig = np.sqrt(np.diag(stand.ekf.cov)[6:9])
    assert np.all(np.abs(stand.ekf.gyro_bias_radps - bias) < 3 * sig + 2e-5)
    r = ref.replay(tel, tru, prof, mode="vo", params=pr, vo_cov_=EMULATED_VO_COV, dropouts=((7.0, 10.0),),
                   rng=np.random.default_rng(1))
    slipping = np.flatnonzero(np.abs(r.slip_true - 0.6) < 1e-6)
    late = slipping[len(slipping) // 2:]                 # the second half of the injected-slip window
    assert np.all(np.abs(r.slip_est[late] - 0.6) < np.maximum(3 * r.slip_sigma[late], 0.03))
    # VO dropout: uncertainty grows, the estimate keeps going on wheels + gyro, no jump on return
    drop = np.flatnonzero((r.dist >= 7.0) & (r.dist < 10.0))
    tr = np.trace(r.P_pos, axis1=1, axis2=2)
    assert np.all(np.diff(tr[drop]) >= 0) and tr[drop[-1]] > 2 * tr[drop[0]]
    back = np.flatnonzero(r.vo_applied & (r.dist >= 10.0))[0]
    assert r.jump_m[back] < 3 * math.sqrt(tr[back - 1]) and r.jump_m[back] < 0.03
    assert r.err_3d[-1] < 0.01 * r.distance_m
    # at the slip step (3 % -> 60 %) the wheels over-report until the next frame (0.15 m of true travel,
    # 1.5 s at 60 % slip): the error stays below what one frame interval of that slip can cause
    onset = slipping[0]
    assert np.max(r.err_3d) < 0.25 * 1.5 * 0.6 + 0.03
    assert np.argmax(r.err_3d) - onset < 25
