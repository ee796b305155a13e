"""Tests for perception.vo: the Numba kernels against slow references (tests/perception/_ref_vo.py), scipy
and closed forms (property tests with hypothesis); the covariance against Monte Carlo truth (chi-square);
the pipeline on short rendered Mars and Moon traverses with the simulator's ground truth as oracle;
failure as a value and recovery; keyframes while standing still; input validation."""
from __future__ import annotations

import importlib.util
import math
import pathlib

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from perception import _vo_kernels as kern
from perception.trajectory import invert, rotation_angle, se3_exp, se3_log
from perception.vo import (MATCH_AMBIGUOUS, MATCH_BORDER, MATCH_FLAT, MATCH_OK, MATCH_RANGE, StereoVO, VOFailure,
                           VOParams, VOResult, match_stereo, refine_two_view, select_features)

_spec = importlib.util.spec_from_file_location("_ref_vo", pathlib.Path(__file__).with_name("_ref_vo.py"))
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)

FX = 457.0
K = np.array([[FX, 0.0, 319.5], [0.0, FX, 239.5], [0.0, 0.0, 1.0]])
B = 0.12


# ----------------------------------------------------------------------------------------- small kernels

@settings(max_examples=60)
@given(st.lists(st.floats(-3.0, 3.0), min_size=3, max_size=3), st.lists(st.floats(-5, 5), min_size=3, max_size=3))
def test_se3_exp_kernel_matches_scipy_and_log_inverts_it(w, v):
    xi = np.array(w + v)
    out = np.empty((4, 4))
    kern._se3_exp(xi, out)
    np.testing.assert_allclose(out[:3, :3], Rotation.from_rotvec(w).as_matrix(), atol=1e-12)
    np.testing.assert_allclose(out, se3_exp(xi), atol=1e-12)
    if np.linalg.norm(w) < math.pi - 1e-3:           # log returns the angle in [0, pi]
        np.testing.assert_allclose(se3_log(out), xi, atol=1e-7)
    else:
        np.testing.assert_allclose(se3_exp(se3_log(out)), out, atol=1e-9)


@settings(max_examples=40)
@given(st.integers(0, 2 ** 31))
def test_solve6_and_inv3_match_numpy(seed):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(6, 6))
    A = A @ A.T + 0.1 * np.eye(6)
    b = rng.normal(size=6)
    x = np.empty(6)
    assert kern._solve6(A.copy(), b, x)
    np.testing.assert_allclose(x, np.linalg.solve(A, b), rtol=1e-8, atol=1e-10)
    assert not kern._solve6(-A.copy(), b, x)          # not positive definite
    M = rng.normal(size=(3, 3)) + 2 * np.eye(3)
    out = np.empty((3, 3))
    assert kern._inv3(M, out)
    np.testing.assert_allclose(out, np.linalg.inv(M), rtol=1e-8, atol=1e-10)
    assert not kern._inv3(np.zeros((3, 3)), out)


@settings(max_examples=60)
@given(st.integers(0, 2 ** 31), st.integers(8, 80), st.integers(1, 5), st.integers(1, 12), st.integers(0, 20),
       st.integers(1, 300))
def test_select_features_matches_reference(seed, bucket, per_bucket, min_dist, border, cap):
    rng = np.random.default_rng(seed)
    h, w = 120, 160
    n = int(rng.integers(0, 400))
    xy = rng.uniform(-5, [w + 5, h + 5], size=(n, 2))
    score = rng.permutation(n).astype(np.float64)            # distinct scores
    existing = rng.uniform(0, [w, h], size=(int(rng.integers(0, 20)), 2))
    got = select_features(xy, score, (h, w), existing_xy=existing, bucket_px=bucket, per_bucket=per_bucket,
                          min_distance_px=min_dist, border_px=border, max_count=cap)
    want = ref.select_features_ref(xy, score, (h, w), existing_xy=existing, bucket_px=bucket,
                                   per_bucket=per_bucket, min_distance_px=min_dist, border_px=border, max_count=cap)
    assert got.tolist() == want


def test_select_features_spreads_features():
    rng = np.random.default_rng(0)
    # a dense cluster with the best scores in one corner, weaker candidates everywhere
    xy = np.concatenate([rng.uniform(10, 60, (500, 2)), rng.uniform(10, [630, 470], (2000, 2))])
    score = np.concatenate([np.full(500, 100.0), rng.uniform(0, 50, 2000)])
    sel = select_features(xy, score, (480, 640), bucket_px=64, per_bucket=4, min_distance_px=8, border_px=10)
    counts = np.zeros((8, 10), int)
    np.add.at(counts, (xy[sel, 1].astype(int) // 64, xy[sel, 0].astype(int) // 64), 1)
    assert counts.max() <= 4 and (counts > 0).mean() > 0.95
    d = np.linalg.norm(xy[sel][:, None] - xy[sel][None], axis=2) + np.eye(len(sel)) * 1e9
    assert d.min() >= 8 - 1e-9        # occupancy cells 8 px with a one-cell guard: kept points are >= 8 px apart


# ----------------------------------------------------------------------------------------- stereo matching

def _texture(h=160, w=320, seed=0, sigma=1.6):
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.uniform(0, 255, (h, w)).astype(np.float32), (0, 0), sigma)
    img = (img - img.mean()) / img.std() * 40 + 128
    return img


def _shifted_pair(d, seed=0):
    """A rectified pair of a fronto-parallel textured plane at disparity ``d``: right(x) = left(x + d)."""
    base = _texture(seed=seed)
    M = np.float32([[1, 0, -d], [0, 1, 0]])       # dst(x) = src(x + d)
    right = cv2.warpAffine(base, M, (base.shape[1], base.shape[0]), flags=cv2.INTER_CUBIC,
                           borderMode=cv2.BORDER_REFLECT)
    q = lambda a: np.clip(np.round(a), 0, 255).astype(np.uint8)    # noqa: E731
    return q(base), q(right)


@settings(max_examples=25)
@given(st.floats(2.0, 60.0), st.integers(0, 1000))
def test_match_stereo_recovers_subpixel_disparity(d, seed):
    left, right = _shifted_pair(d, seed)
    vv, uu = np.mgrid[20:140:12, 90:300:12]
    uv = np.stack([uu.ravel() + 0.37, vv.ravel() - 0.21], axis=1)      # sub-pixel left positions
    est, status = match_stereo(left, right, uv, 0.0, 80.0)
    ok = status == MATCH_OK
    assert ok.mean() > 0.9
    err = np.abs(est[ok] - d)
    # bilinear resampling smooths by an amount that depends on the sub-pixel phase: a few hundredths of
    # a pixel of phase-dependent error on this fairly sharp texture (the rendered images are smoother)
    assert np.median(err) < 0.05 and np.percentile(err, 95) < 0.12


@settings(max_examples=20)
@given(st.integers(1, 60), st.integers(0, 1000))
def test_match_stereo_integer_search_matches_reference(d, seed):
    left, right = _shifted_pair(float(d), seed)
    rng = np.random.default_rng(seed)
    uv = np.stack([rng.uniform(90, 300, 40), rng.uniform(20, 140, 40)], axis=1)
    est, status = match_stereo(left, right, uv, 0.0, 80.0, uniqueness=1.0)
    for (u, v), e, s in zip(uv, est, status):
        want = ref.sad_disparity_ref(left, right, u, v, 0.0, 80.0, 3)
        if s == MATCH_OK:
            # the sub-pixel step starts at the integer optimum (shifted by the sub-pixel position) and
            # never moves more than 1.5 px from it
            assert abs(e - (want + (u - math.floor(u + 0.5)))) <= 1.5
            assert abs(e - d) < 0.15


def test_match_stereo_status_codes():
    left, right = _shifted_pair(10.0)
    flat = np.full_like(left, 90)
    _, s = match_stereo(flat, flat, [[150.0, 80.0]], 0, 40)
    assert s[0] == MATCH_FLAT
    _, s = match_stereo(left, right, [[2.0, 80.0], [150.0, 1.0], [300.0, 158.0]], 0, 40)
    assert (s == MATCH_BORDER).all()
    _, s = match_stereo(left, right, [[150.0, 80.0]], 11.2, 30.0)           # the truth (10) lies just below
    assert s[0] == MATCH_RANGE
    stripes = np.tile(((np.arange(320) // 4) % 2 * 120 + 60).astype(np.uint8), (160, 1))
    _, s = match_stereo(stripes, np.roll(stripes, -3, axis=1), [[150.0, 80.0]], 0, 40)
    assert s[0] == MATCH_AMBIGUOUS
    with pytest.raises(ValueError, match="uint8"):
        match_stereo(left.astype(np.float32), right, [[150.0, 80.0]], 0, 40)
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        match_stereo(left, right, [150.0, 80.0], 0, 40)


# ----------------------------------------------------------------------------------------- two-view refinement

def _scene(rng, n=120, T=None):
    """Points in front of both cameras and exact stereo observations in each view."""
    if T is None:
        T = se3_exp(np.r_[rng.normal(0, 0.05, 3), rng.normal(0, 0.2, 3)])
    X = []
    Tinv = invert(T)
    while len(X) < n:
        z = rng.uniform(1.0, 25.0)
        p = np.array([rng.uniform(-0.6, 0.6) * z, rng.uniform(-0.4, 0.5) * z, z])
        q = Tinv[:3, :3] @ p + Tinv[:3, 3]
        if q[2] > 0.8 and abs(q[0] / q[2]) < 0.65 and abs(q[1] / q[2]) < 0.5:
            X.append(p)
    X = np.array(X)
    Xc = X @ Tinv[:3, :3].T + Tinv[:3, 3]
    return T, X, ref.project_stereo(K, B, X), ref.project_stereo(K, B, Xc)


@settings(max_examples=40)
@given(st.integers(0, 2 ** 31))
def test_refine_two_view_recovers_a_known_pose_from_exact_correspondences(seed):
    rng = np.random.default_rng(seed)
    T, X, obs_ref, obs_cur = _scene(rng)
    T0 = T @ se3_exp(np.r_[rng.normal(0, 0.01, 3), rng.normal(0, 0.03, 3)])
    X0 = X * (1 + rng.normal(0, 0.01, X.shape))
    fit = refine_two_view(K, B, T0, X0, obs_ref, obs_cur, outlier_px=None, iterations=50)
    assert fit.status in ("ok", "max_iter")
    assert fit.inliers.all()
    err = se3_log(invert(fit.T_ref_cur) @ T)
    assert np.abs(err).max() < 1e-7
    np.testing.assert_allclose(fit.X_ref, X, rtol=1e-6, atol=1e-7)
    assert fit.rms_px < 1e-5


def test_refine_two_view_covariance_is_calibrated_monte_carlo():
    """Normalised errors of noisy fits follow chi-square with 6 degrees of freedom (mean 6)."""
    rng = np.random.default_rng(7)
    T, X, obs_ref, obs_cur = _scene(rng, n=100)
    sigma = 0.3
    nees, sig = [], []
    for _ in range(300):
        fit = refine_two_view(K, B, T, X, obs_ref + rng.normal(0, sigma, obs_ref.shape),
                              obs_cur + rng.normal(0, sigma, obs_cur.shape), huber_px=100.0, outlier_px=None)
        e = se3_log(invert(fit.T_ref_cur) @ T)
        nees.append(e @ np.linalg.solve(fit.cov, e))
        sig.append(fit.sigma_px)
    # the mean of 300 chi2_6 draws has a standard deviation of 0.2
    assert 5.2 < np.mean(nees) < 6.8
    assert abs(np.median(sig) - sigma) < 0.02


def test_refine_two_view_drops_outliers():
    rng = np.random.default_rng(3)
    T, X, obs_ref, obs_cur = _scene(rng, n=150)
    bad = rng.random(150) < 0.15
    noisy = obs_cur + rng.normal(0, 0.2, obs_cur.shape)
    noisy[bad] += rng.choice([-1, 1], (bad.sum(), 3)) * rng.uniform(5, 30, (bad.sum(), 3))
    fit = refine_two_view(K, B, T @ se3_exp([0.003, -0.002, 0.001, 0.01, 0.0, -0.02]), X, obs_ref, noisy)
    assert not fit.inliers[bad].any()
    assert fit.inliers[~bad].mean() > 0.95
    err = se3_log(invert(fit.T_ref_cur) @ T)
    assert np.linalg.norm(err[:3]) < 1e-3 and np.linalg.norm(err[3:]) < 5e-3


def test_refine_two_view_degenerate_inputs():
    rng = np.random.default_rng(1)
    T, X, obs_ref, obs_cur = _scene(rng, n=2)
    assert refine_two_view(K, B, T, X, obs_ref, obs_cur).status == "too_few"
    with pytest.raises(ValueError, match="obs_cur"):
        refine_two_view(K, B, T, X, obs_ref, obs_cur[:1])


# ----------------------------------------------------------------------------------------- the pipeline

def _record(planet, length_m=4.0, seed=5):
    import sim
    from sim.recording import clear_zones_along, course, record_traverse

    wp = course("s_curve", length_m, start_xy=(3.0, 5.0))
    gen = sim.generate_terrain(planet, size_m=(length_m + 12.0, 10.0), seed=seed,
                               clear_zones=clear_zones_along(wp, 1.0))
    rec = record_traverse(sim.World(gen, planet=planet, seed=seed), "osr", wp, frame_every_m=0.15)
    assert rec.reached and len(rec.frames) > 20
    return rec.frames


@pytest.fixture(scope="module")
def traverses():
    return {p: _record(p) for p in ("mars", "moon")}


def _truth_rel(frames, a, b):
    return invert(frames[a].T_world_left) @ frames[b].T_world_left


@pytest.mark.parametrize("planet", ["mars", "moon"])
def test_vo_follows_rendered_traverse(traverses, planet):
    frames = traverses[planet]
    f0 = frames[0]
    vo = StereoVO(f0.K, f0.baseline_m)
    results = [vo.process_frame(f) for f in frames]
    assert all(results), [r.reason for r in results if not r]
    assert results[0].ref_seq == 0 and results[0].keyframe and np.array_equal(results[0].T_first_cur, np.eye(4))
    assert any(r.keyframe for r in results[1:]) and not all(r.keyframe for r in results[1:])
    nees = []
    for r in results[1:]:
        assert r.ref_seq < r.seq and r.ref_t_s == frames[r.ref_seq].t_s and r.t_s == frames[r.seq].t_s
        assert r.n_features >= r.n_tracked >= r.n_inliers >= 12
        true_rel = _truth_rel(frames, r.ref_seq, r.seq)
        e = se3_log(invert(r.T_ref_cur) @ true_rel)
        assert np.linalg.norm(e[3:]) < 0.01 and math.degrees(np.linalg.norm(e[:3])) < 0.2
        assert np.all(np.linalg.eigvalsh(r.cov) > 0)
        nees.append(e @ np.linalg.solve(r.cov, e))
        # the running pose is the chain of keyframe-relative motions
        np.testing.assert_allclose(r.T_first_cur, results[r.ref_seq].T_first_cur @ r.T_ref_cur, atol=1e-9)
    # calibration on rendered images: chi-square 6 has mean 6 (a loose band: ~30 correlated samples)
    assert 1.5 < np.mean(nees) < 20
    truth_end = _truth_rel(frames, 0, len(frames) - 1)
    dist = sum(np.linalg.norm(_truth_rel(frames, i, i + 1)[:3, 3]) for i in range(len(frames) - 1))
    end_err = np.linalg.norm(results[-1].T_first_cur[:3, 3] - truth_end[:3, 3])
    assert end_err < 0.01 * dist          # measured ~0.1-0.3 % on 100 m traverses
    assert math.degrees(rotation_angle(invert(results[-1].T_first_cur) @ truth_end)) < 0.5


def test_vo_is_deterministic_and_process_frame_is_process(traverses):
    frames = traverses["mars"][:8]
    a = StereoVO(frames[0].K, frames[0].baseline_m)
    b = StereoVO(frames[0].K, frames[0].baseline_m)
    for f in frames:
        ra = a.process_frame(f)
        rb = b.process(f.left.copy(), f.right.copy(), f.t_s, f.seq)
        np.testing.assert_array_equal(ra.T_first_cur, rb.T_first_cur)
        assert (ra.n_inliers, ra.keyframe) == (rb.n_inliers, rb.keyframe)


def test_standing_still_keeps_the_keyframe(traverses):
    f = traverses["moon"][3]
    vo = StereoVO(f.K, f.baseline_m)
    rs = [vo.process(f.left, f.right, 10.0 + 0.5 * i) for i in range(6)]
    assert all(rs) and rs[0].keyframe and not any(r.keyframe for r in rs[1:])
    assert [r.seq for r in rs] == list(range(6)) and all(r.ref_seq == 0 for r in rs)
    for r in rs[1:]:
        assert np.abs(se3_log(r.T_ref_cur)).max() < 1e-4
        assert np.all(np.linalg.eigvalsh(r.cov) > 0)


def test_creeping_two_millimetre_steps_are_resolved():
    """MER resolved 2 mm motions: the same pose rendered 2 mm further each frame (independent noise)."""
    import sim
    from nav.config import load_rover
    from sim.camera import StereoRenderer
    from sim.frames import T_world_body

    w = sim.World.generate("mars", size_m=12.0, seed=2)
    ren = StereoRenderer(w, load_rover("osr").camera)
    rng = np.random.default_rng(0)
    z = float(w.terrain.height_at((4.0, 6.0)))
    frames = [ren.render(T_world_body(4.0 + 0.002 * i, 6.0, z, 0.0, 0.0, 0.0), t_s=float(i), seq=i, rng=rng)
              for i in range(6)]
    vo = StereoVO(frames[0].K, frames[0].baseline_m)
    for f in frames:
        r = vo.process_frame(f)
        assert r and r.ref_seq == 0                 # no new keyframe while creeping
        true = _truth_rel(frames, 0, f.seq)
        assert np.abs(r.T_first_cur[:3, 3] - true[:3, 3]).max() < 0.5e-3
        assert math.degrees(rotation_angle(invert(r.T_first_cur) @ true)) < 0.01


def test_failure_is_a_value_and_the_track_recovers(traverses):
    frames = traverses["mars"]
    f0 = frames[0]
    vo = StereoVO(f0.K, f0.baseline_m)
    good = [vo.process_frame(f) for f in frames[:10]]
    assert all(good)
    black = np.zeros_like(f0.left)
    r = vo.process(black, black, frames[10].t_s, 10)
    assert isinstance(r, VOFailure) and not r
    assert r.kind == "tracking" and "min_tracked" in r.reason and "re-initialisation failed" in r.reason
    np.testing.assert_array_equal(r.T_first_cur, good[-1].T_first_cur)        # last good pose, not reset
    r11 = vo.process_frame(frames[11])
    assert not r11 and r11.kind == "reinitialised" and r11.keyframe
    np.testing.assert_array_equal(r11.T_first_cur, good[-1].T_first_cur)
    later = [vo.process_frame(f) for f in frames[12:18]]
    assert all(later) and later[0].ref_seq == 11
    for r in later:
        truth = _truth_rel(frames, 0, r.seq)
        # the gap (two frames, ~0.3 m, the rocking rotation unknown) is bridged by the motion model:
        # centimetres to a decimetre or two, not a reset to the origin
        assert np.linalg.norm(r.T_first_cur[:3, 3] - truth[:3, 3]) < 0.25
        assert np.linalg.norm(r.T_first_cur[:3, 3]) > 1.0


def test_implausible_jump_and_degenerate_geometry_are_failures(traverses):
    frames = traverses["moon"]
    f0 = frames[0]
    vo = StereoVO(f0.K, f0.baseline_m, params=VOParams(max_speed_mps=0.01))
    vo.process_frame(frames[0])
    r = vo.process_frame(frames[1])
    assert not r and r.kind == "jump" and "max_speed_mps 0.01" in r.reason and r.keyframe
    vo = StereoVO(f0.K, f0.baseline_m, params=VOParams(max_accel_mps2=1e-3))
    assert vo.process_frame(frames[0]) and vo.process_frame(frames[1])      # no motion model yet to compare
    r = vo.process_frame(frames[2])
    assert not r and r.kind == "jump" and "max_accel_mps2" in r.reason
    vo = StereoVO(f0.K, f0.baseline_m, params=VOParams(max_std_m=1e-7))
    vo.process_frame(frames[0])
    r = vo.process_frame(frames[1])
    assert not r and r.kind == "degenerate" and "max_std_m" in r.reason


def test_reset_and_motion_prior(traverses):
    frames = traverses["mars"][:6]
    f0 = frames[0]
    T0 = se3_exp([0.1, -0.2, 0.3, 1.0, 2.0, 3.0])
    vo = StereoVO(f0.K, f0.baseline_m)
    vo.process_frame(frames[0])
    vo.process_frame(frames[1])
    vo.reset(T0)
    r = vo.process_frame(frames[2])
    assert r and r.ref_seq == 2 and np.array_equal(r.T_first_cur, T0)
    for i in (3, 4, 5):
        prior = _truth_rel(frames, i - 1, i)
        r = vo.process(frames[i].left, frames[i].right, frames[i].t_s, i, motion_prior=prior)
        assert r
        np.testing.assert_allclose(invert(T0) @ r.T_first_cur, _truth_rel(frames, 2, i), atol=0.01)
    with pytest.raises(ValueError, match="motion_prior"):
        vo.process(frames[5].left, frames[5].right, 99.0, motion_prior=np.ones((4, 4)))


def test_input_validation():
    vo = StereoVO(K, B)
    img = np.zeros((480, 640), np.uint8)
    with pytest.raises(ValueError, match="uint8"):
        vo.process(img.astype(np.float32), img, 0.0)
    with pytest.raises(ValueError, match="2-D"):
        vo.process(np.zeros((480, 640, 3), np.uint8), img, 0.0)
    with pytest.raises(ValueError, match="differ in shape"):
        vo.process(img, img[:, :600], 0.0)
    with pytest.raises(ValueError, match="t_s"):
        vo.process(img, img, float("nan"))
    r = vo.process(img, img, 1.0)
    assert not r and r.kind == "features" and "min_features" in r.reason
    with pytest.raises(ValueError, match="must increase"):
        vo.process(img, img, 1.0)
    with pytest.raises(ValueError, match="differs from the sequence"):
        vo.process(img[:400], img[:400], 2.0)
    with pytest.raises(ValueError, match="K must be"):
        StereoVO(np.eye(3) * [1, 1, 2], B)
    with pytest.raises(ValueError, match="baseline_m"):
        StereoVO(K, 0.0)
    with pytest.raises(ValueError, match=r"VOParams.min_inliers = 2: must be >= 6"):
        VOParams(min_inliers=2)
    with pytest.raises(ValueError, match="must be odd"):
        VOParams(klt_window_px=10)
    with pytest.raises(ValueError, match="must be an integer"):
        VOParams(max_features=10.5)
    with pytest.raises(ValueError, match="True or False"):
        VOParams(predict_rotation=1)
    with pytest.raises(ValueError, match="max_depth_m"):
        VOParams(min_depth_m=10.0, max_depth_m=5.0)
    with pytest.raises(TypeError):
        VOParams(no_such_parameter=1)
    with pytest.raises(TypeError, match="VOParams"):
        StereoVO(K, B, params={"max_features": 10})


def test_result_types_truthiness():
    T = np.eye(4)
    r = VOResult(1.0, 1, 0.0, 0, T, np.eye(6), T, 10, 9, 8, False)
    f = VOFailure(1.0, 1, "7 inliers < min_inliers 12", T)
    assert r and not f and f.reason.startswith("7 inliers")
