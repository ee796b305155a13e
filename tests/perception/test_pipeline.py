"""Tests of perception.pipeline (StereoNavPipeline: VO + EKF + stereo mapping on rendered stereo pairs), and of
the estimator's handling of VO re-initialisation frames (``VOFailure(keyframe=True)``).

Oracles: the simulator's ground truth (poses at every telemetry tick, the true DEM) on a short rendered Mars
traverse recorded with ``sim.recording.record_traverse``; ``sim.frames.T_body_cam`` for the camera mount
(an independent implementation of the same convention); duck-typed VO stand-ins for the estimator rules.
"""
from __future__ import annotations

import math
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _ref_estimator as ref  # noqa: E402
from drivers.kinematics import WheelLayout  # noqa: E402
from nav.config import load_planet, load_rover  # noqa: E402
from perception.estimator import EKFParams, RoverEKF  # noqa: E402
from perception.pipeline import FAILURE_KINDS, PipelineFrame, StereoNavPipeline, T_body_left  # noqa: E402
from perception.stereo_map import GlobalMap, LocalHeightMap  # noqa: E402

PROFILE = load_rover("osr")
MARS_EKF = EKFParams.for_rover(PROFILE, load_planet("mars"))
COV0 = np.diag([1e-6, 1e-6, 1e-8, 1e-8, 1e-8, 1e-8])     # the start pose is known (it defines the map frame)


# ----------------------------------------------------------------------------- the rendered traverse
@pytest.fixture(scope="module")
def traverse():
    """An 8 m s-curve on generated Mars terrain: ~55 stereo pairs every 0.15 m, telemetry and truth at 10 Hz."""
    import sim
    from sim.recording import clear_zones_along, course, record_traverse

    wp = course("s_curve", 8.0, start_xy=(3.0, 6.0))
    gen = sim.generate_terrain("mars", size_m=(16.0, 12.0), seed=5, clear_zones=clear_zones_along(wp, 1.0))
    rec = record_traverse(sim.World(gen, planet="mars", seed=5), PROFILE, wp, frame_every_m=0.15)
    assert rec.reached and len(rec.frames) > 40
    return rec


def _run(rec, *, black=(), late_s=0.0, map_every=3, ekf_params=MARS_EKF, grid=None, **kw):
    """Replay a recording through the pipeline as an executive would: wheels + IMU every tick, every frame
    through VO, a map every ``map_every`` frames merged into ``grid``. Frames whose index is in ``black``
    are replaced by black images. Returns per-tick rows and per-frame outputs."""
    layout = WheelLayout.from_profile(PROFILE)
    f0 = rec.frames[0]
    T0 = ref.truth_T(rec.truth[0])
    pipe = StereoNavPipeline(f0.K, f0.baseline_m, f0.T_body_left, ekf_params=ekf_params, T_world_body0=T0,
                             cov0=COV0, t0_s=rec.telemetry[0].t_s, **kw)
    frames_at = {}
    for i, fr in enumerate(rec.frames):
        j = min(range(len(rec.telemetry)), key=lambda k: abs(rec.telemetry[k].t_s - fr.t_s))
        assert abs(rec.telemetry[j].t_s - fr.t_s) < 1e-9
        frames_at[j] = i
    ticks, outs = [], []
    for j, (tm, tr) in enumerate(zip(rec.telemetry, rec.truth)):
        vx, vy, wz = layout.forward(tm.wheel_speed_radps, tm.steer_rad)
        pipe.wheel_tick(tm.t_s, vx, vy, wz, tm.imu.gyro_radps, tm.imu.accel_mps2)
        if j in frames_at:
            i = frames_at[j]
            fr = rec.frames[i]
            left, right = fr.left, fr.right
            if i in black:
                left, right = np.zeros_like(left), np.zeros_like(right)
            want = i % map_every == 0
            out = pipe.frame(fr.t_s - late_s, fr.seq, left, right, grid=grid, want_map=want)
            if want and grid is not None and out.local:
                grid.merge(out.local, stamp=tr.distance_m)
            outs.append((i, j, out))
        ticks.append((tm.t_s, pipe.T_world_body, pipe.pose_cov, ref.truth_T(tr), tr.distance_m))
    return pipe, ticks, outs


def _errors(ticks):
    err = np.array([np.linalg.norm(T[:3, 3] - Tt[:3, 3]) for _, T, _, Tt, _ in ticks])
    sig = np.array([math.sqrt(np.trace(P[3:, 3:])) for _, _, P, _, _ in ticks])
    dist = np.array([d for *_, d in ticks])
    return err, sig, dist


def _map_errors(gmap: GlobalMap, terrain, ticks, max_range_m=6.0):
    """Height errors of the fused map against the true DEM (area-averaged on the map's cells), on cells
    within ``max_range_m`` of the path."""
    truth = terrain.resampled(gmap.cell_size_m)
    assert truth.shape == gmap.shape and truth.origin_xy_m == gmap.origin_xy_m
    known = gmap.known & np.isfinite(truth.elevation_m)
    rr, cc = np.nonzero(known)
    xy = truth.cell_to_world(np.stack([rr, cc], axis=1))
    path = np.array([Tt[:2, 3] for _, _, _, Tt, _ in ticks[::10]])
    d = np.min(np.hypot(xy[:, None, 0] - path[None, :, 0], xy[:, None, 1] - path[None, :, 1]), axis=1)
    near = d <= max_range_m
    return (gmap.height_m[rr, cc] - truth.elevation_m[rr, cc])[near]


def _common(m1: LocalHeightMap, m2: LocalHeightMap):
    """Heights of two local maps on the same lattice, on the cells both know."""
    cs = m1.cell_size_m
    o1 = np.round(np.array(m1.origin_xy_m) / cs).astype(int)
    o2 = np.round(np.array(m2.origin_xy_m) / cs).astype(int)
    lo = np.minimum(o1, o2)
    hi = np.maximum(o1 + m1.shape[::-1], o2 + m2.shape[::-1])
    out = []
    for m, o in ((m1, o1), (m2, o2)):
        g = np.full((hi[1] - lo[1], hi[0] - lo[0]), np.nan)
        r0, c0 = o[1] - lo[1], o[0] - lo[0]
        g[r0:r0 + m.shape[0], c0:c0 + m.shape[1]] = m.height_m
        out.append(g)
    both = np.isfinite(out[0]) & np.isfinite(out[1])
    return out[0][both], out[1][both]


# ----------------------------------------------------------------------------- the pipeline on rendered pairs
def test_pipeline_follows_a_rendered_traverse_and_maps_it(traverse):
    rec = traverse
    gmap = GlobalMap.like(rec.world.terrain.resampled(0.1))
    pipe, ticks, outs = _run(rec, grid=gmap)
    err, sig, dist = _errors(ticks)
    D = dist[-1]
    assert D > 7.5
    # localisation against the simulator's truth: within 1 % of the distance at the end, and never more
    # than 5 cm + 1 % of the distance along the way (between frames the wheels and gyro carry the pose; at
    # 4.6 m the wheels slip ~50 % for a second and over-report ~7 cm until the next frame corrects them)
    assert err[-1] < 0.01 * D, (err[-1], D)
    assert np.all(err < 0.05 + 0.01 * dist), (err.max(), dist[np.argmax(err)])
    assert err[-1] < 3.0 * sig[-1] + 0.005           # the covariance covers the error
    # every frame through VO; a map from every third
    st = pipe.stats()
    n = len(rec.frames)
    assert st["frames"] == n and st["vo_first"] == 1 and st["maps"] == len(range(0, n, 3))
    assert st["vo_convergence"] >= 0.95 and st["vo_ok"] + sum(st["vo_failed"].values()) == n - 1
    assert set(st["vo_failed"]) == set(FAILURE_KINDS)
    assert st["vo_applied"] == st["vo_ok"] and st["vo_rejected"] == 0 and st["late_frames"] == 0
    assert 0.5 < st["vo_innovation_mean_nis"] < 30
    assert abs(st["slip"]) < 0.3 and 0 < st["slip_sigma"] < 0.1
    assert 0 < st["max_correction_m"] < 0.1
    assert st["wheel_distance_m"] > 0.9 * D
    for stage in ("tick", "vo", "ekf", "map"):
        assert st["time_ms"][stage]["count"] > 0 and st["time_ms"][stage]["mean"] > 0
    # per-frame outputs: the camera pose is the body pose through the mount; the map only when asked
    for i, _, out in outs:
        assert isinstance(out, PipelineFrame) and out.t_s == rec.frames[i].t_s
        np.testing.assert_allclose(out.T_world_cam, out.T_world_body @ rec.frames[0].T_body_left, atol=1e-12)
        assert (out.local is not None) == (i % 3 == 0)
        assert out.attitude_sigma_rad > 0 and out.position_sigma_m > 0
        if i > 0:
            assert out.vo_ok == bool(out.update)
    # the fused map against the true DEM: centimetres on the mapped cells near the path
    e = _map_errors(gmap, rec.world.terrain, ticks)
    assert e.size > 2000
    assert np.median(np.abs(e)) < 0.04 and np.mean(np.abs(e) < 0.15) > 0.9, (np.median(np.abs(e)), e.size)
    # the last pair mapped at the estimated and at the *true* camera pose: the same cells, heights apart by
    # no more than the pose error explains (centimetres)
    i, _, out = outs[-1]
    fr = rec.frames[i]
    est = pipe.map_pair(fr.left, fr.right, out.T_world_cam, grid=gmap, attitude_sigma_rad=out.attitude_sigma_rad)
    tru = pipe.map_pair(fr.left, fr.right, fr.T_world_left, grid=gmap)
    assert isinstance(est, LocalHeightMap) and est.n_known > 500
    a, b = _common(est, tru)
    assert a.size > 0.8 * est.n_known and np.median(np.abs(a - b)) < 0.03


def test_blackout_is_bridged_by_wheels_and_gyro_without_a_jump(traverse):
    """Black frames 8..17 (~1.5 m): VO fails, the filter carries on with growing covariance, VO
    re-initialises on the first good frame and the estimate continues from where the filter was. Few kept
    poses (max_clones 3) so the re-initialisation frame must be kept as a keyframe to be usable."""
    rec = traverse
    black = set(range(8, 18))
    pipe, ticks, outs = _run(rec, black=black, ekf_params=replace(MARS_EKF, max_clones=3))
    err, sig, dist = _errors(ticks)
    by_frame = {i: (j, out) for i, j, out in outs}
    # during the blackout: failures, and the position uncertainty grows at every tick
    for i in black:
        assert not by_frame[i][1].vo and by_frame[i][1].vo.kind in ("tracking", "features")
        assert not by_frame[i][1].update
    j0, j1 = by_frame[8][0], by_frame[18][0]
    assert np.all(np.diff(sig[j0:j1]) > 0) and sig[j1 - 1] > 1.5 * sig[j0 - 1]
    # the first good frame re-initialises VO (a keyframe), the next one measures from it and is applied
    re = by_frame[18][1].vo
    assert not re and re.kind == "reinitialised" and re.keyframe
    nxt = by_frame[19][1]
    assert nxt.vo and nxt.vo.ref_seq == rec.frames[18].seq and nxt.update
    # while VO is down the error is what the wheels and gyro drift (here mostly the rover sliding sideways on
    # a side slope, ~10 % of its speed, which the wheels cannot see) and the covariance says so
    for j in range(j0, j1):
        assert err[j] < 3.0 * sig[j] + 0.01, (j, err[j], sig[j])
    # no jump when VO returns: each correction is within the predicted uncertainty and moves the estimate
    # toward the truth (a correction of the last interval, not a reset to VO's own pose)
    for i in range(19, 24):
        j, out = by_frame[i]
        assert out.update, out.update.reason
        assert out.correction_m < 3.0 * sig[j - 1], (i, out.correction_m, sig[j - 1])
        assert err[j] < err[j - 1] + 0.005, (i, err[j - 1], err[j])
    # what drifted during the gap stays (relative VO cannot see it) but grows no further than nominal drift
    jr = by_frame[19][0]
    assert err[-1] < err[jr] + 0.01 * (dist[-1] - dist[jr]) + 0.01, (err[jr], err[-1])
    assert sig[-1] < sig[j1 - 1]
    st = pipe.stats()
    assert st["vo_rejected"] == 0, st["vo_reject_reasons"]
    assert st["vo_failed"]["reinitialised"] == 1
    assert sum(st["vo_failed"][k] for k in ("tracking", "features")) == len(black)
    assert st["vo_convergence"] == pytest.approx((len(rec.frames) - 1 - len(black) - 1) / (len(rec.frames) - 1))


def test_late_frames_are_kept_at_the_filter_time(traverse):
    """Frames stamped 50 ms before the telemetry tick they are processed after (a camera read lagging the
    wheels): the filter keeps their pose at its current time and VO's times are mapped onto it."""
    rec = traverse
    sub = replace(rec, frames=rec.frames[:25], telemetry=rec.telemetry[:rec.telemetry.index(
        next(tm for tm in rec.telemetry if tm.t_s >= rec.frames[24].t_s)) + 1])
    pipe, ticks, outs = _run(sub, late_s=0.05)
    st = pipe.stats()
    assert st["late_frames"] == len(sub.frames)
    assert st["vo_rejected"] == 0 and st["vo_applied"] == st["vo_ok"] >= 22
    assert all(out.late_s == pytest.approx(0.05) for _, _, out in outs)
    err, _, dist = _errors(ticks)
    assert err[-1] < 0.01 * dist[-1] + 0.01


def test_vo_can_be_skipped_and_the_motion_prior_switched_off(traverse):
    rec = traverse
    sub = replace(rec, frames=rec.frames[:12], telemetry=rec.telemetry[:rec.telemetry.index(
        next(tm for tm in rec.telemetry if tm.t_s >= rec.frames[11].t_s)) + 1])
    pipe, _, outs = _run(sub, motion_prior=False)
    assert pipe.stats()["vo_ok"] == 11
    # run_vo=False: the frame is mapped at the estimate, VO and the filter are told nothing
    layout = WheelLayout.from_profile(PROFILE)
    f0 = sub.frames[0]
    p = StereoNavPipeline(f0.K, f0.baseline_m, f0.T_body_left, ekf_params=MARS_EKF,
                          T_world_body0=ref.truth_T(sub.truth[0]), cov0=COV0, t0_s=sub.telemetry[0].t_s)
    fr = sub.frames[0]
    p.frame(fr.t_s, fr.seq, fr.left, fr.right, want_map=False)
    tm = sub.telemetry[5]
    p.wheel_tick(tm.t_s, *layout.forward(tm.wheel_speed_radps, tm.steer_rad), tm.imu.gyro_radps)
    out = p.frame(tm.t_s, 99, sub.frames[3].left, sub.frames[3].right, run_vo=False)
    assert not out.vo and out.vo.kind == "skipped" and not out.update and out.local
    st = p.stats()
    assert st["vo_failed"]["skipped"] == 1 and st["vo_convergence"] is None and st["maps"] == 1


def test_frame_and_constructor_inputs_are_validated(traverse):
    f0 = traverse.frames[0]
    p = StereoNavPipeline(f0.K, f0.baseline_m, f0.T_body_left, ekf_params=MARS_EKF)
    p.frame(1.0, 0, f0.left, f0.right, want_map=False)
    with pytest.raises(ValueError, match="must increase"):
        p.frame(1.0, 1, f0.left, f0.right)
    with pytest.raises(ValueError, match="must be finite"):
        p.frame(math.nan, 1, f0.left, f0.right)
    with pytest.raises(ValueError, match="uint8"):
        p.frame(2.0, 1, f0.left.astype(np.float32), f0.right)
    with pytest.raises(ValueError, match="twist0"):
        StereoNavPipeline(f0.K, f0.baseline_m, f0.T_body_left, twist0=(1.0, 2.0))
    with pytest.raises(ValueError, match="motion_prior"):
        StereoNavPipeline(f0.K, f0.baseline_m, f0.T_body_left, motion_prior="yes")
    with pytest.raises(ValueError, match="T_body_cam"):
        StereoNavPipeline(f0.K, f0.baseline_m, np.ones((4, 4)))
    with pytest.raises(ValueError, match="baseline_m"):
        StereoNavPipeline(f0.K, -0.1, f0.T_body_left)
    with pytest.raises(TypeError, match="nav.config.Camera"):
        T_body_left(object())


def _same_map(a: LocalHeightMap, b: LocalHeightMap):
    assert a.shape == b.shape and a.origin_xy_m == b.origin_xy_m and a.cell_size_m == b.cell_size_m
    for x, y in ((a.height_m, b.height_m), (a.var_m2, b.var_m2), (a.count, b.count)):
        np.testing.assert_array_equal(x, y)


def test_near_map_only_when_asked_and_of_the_same_pair_at_the_frames_pose(traverse):
    """``frame(near=True)`` (with a map) fills ``PipelineFrame.near`` with the mapper's near map of the same pair
    at the frame's estimated pose and attitude sigma, next to the unchanged local map; otherwise it is None.
    ``map_pair_near`` gives both maps of a pair; each call is one map in the stats and the ``map`` timer."""
    rec = traverse
    f0 = rec.frames[0]
    grid = GlobalMap.like(rec.world.terrain.resampled(0.1))
    p = StereoNavPipeline(f0.K, f0.baseline_m, f0.T_body_left, ekf_params=MARS_EKF,
                          T_world_body0=ref.truth_T(rec.truth[0]), cov0=COV0, t0_s=rec.telemetry[0].t_s)
    out = p.frame(f0.t_s, f0.seq, f0.left, f0.right, grid=grid)
    assert out.local and out.near is None                                   # not asked for
    f1, f2 = rec.frames[1], rec.frames[2]
    out = p.frame(f1.t_s, f1.seq, f1.left, f1.right, grid=grid, want_map=False, near=True)
    assert out.local is None and out.near is None                           # no map, no near map
    out = p.frame(f2.t_s, f2.seq, f2.left, f2.right, grid=grid, near=True)
    assert "map" in out.times_s and out.near and out.near.cell_size_m == pytest.approx(0.05)
    m, T, att = p.mapper, out.T_world_cam, out.attitude_sigma_rad
    _same_map(out.local, m.map_pair(f2.left, f2.right, T, grid=grid, attitude_sigma_rad=att))
    _same_map(out.near, m.near_map(m.points(m.disparity(f2.left, f2.right)), T, grid=grid, attitude_sigma_rad=att))
    st = p.stats()
    assert st["maps"] == 2 and st["time_ms"]["map"]["count"] == 2
    local, near = p.map_pair_near(f2.left, f2.right, T, grid=grid, attitude_sigma_rad=att)
    _same_map(local, out.local)
    _same_map(near, out.near)
    st = p.stats()
    assert st["maps"] == 3 and st["time_ms"]["map"]["count"] == 3
    # defaults: the current estimate and its attitude sigma, as map_pair
    local, near = p.map_pair_near(f2.left, f2.right, grid=grid)
    _same_map(local, p.map_pair(f2.left, f2.right, grid=grid))
    # PipelineFrame still builds positionally; near defaults to None
    pf = PipelineFrame(out.t_s, out.seq, out.vo, out.update, out.T_world_body, out.T_world_cam, out.pose_cov,
                       out.attitude_sigma_rad, out.correction_m, out.local, out.times_s, out.late_s)
    assert pf.near is None and pf.local is out.local
    f3 = rec.frames[3]
    with pytest.raises(TypeError, match="near = 'yes': must be True or False"):
        p.frame(f3.t_s, f3.seq, f3.left, f3.right, near="yes")
    assert p.stats()["frames"] == 3                                         # rejected before it counted


def test_nominal_mount_matches_the_simulator_and_from_camera():
    from sim.frames import T_body_cam

    for tilt, mx, h in ((25.0, 0.1, 0.8), (0.0, -0.2, 1.5), (60.0, 0.3, 0.4)):
        cam = replace(PROFILE.camera, tilt_deg=tilt, mount_x_m=mx, mast_height_m=h)
        np.testing.assert_allclose(T_body_left(cam), T_body_cam(cam, "left"), atol=1e-15)
    p = StereoNavPipeline.from_camera(PROFILE.camera)
    np.testing.assert_allclose(p.T_body_cam, T_body_cam(PROFILE.camera), atol=1e-15)
    np.testing.assert_allclose(p.T_world_cam, T_body_cam(PROFILE.camera), atol=1e-15)


# ----------------------------------------------------------------------------- estimator: re-initialisation frames
def test_reinitialisation_failure_is_kept_as_a_keyframe_clone():
    """perception.vo returns ``VOFailure(kind="reinitialised", keyframe=True)`` on the frame where it
    re-initialised after losing track; the next results measure their motion from that frame. The filter
    must keep its pose through pruning (as for a keyframe result), or every later result is rejected."""
    C = ref.vo_cov(5e-4, (1.5e-3, 1.5e-3, 3e-3))
    Tbc = T_body_left(PROFILE.camera)
    rng = np.random.default_rng(3)
    ekf = RoverEKF(Tbc, replace(MARS_EKF, max_clones=3))
    ekf.update_wheels(0.0, 0.2)
    ekf.mark_frame(0.0)
    for t in (1.0, 2.0):                                     # tracking lost: plain failures
        ekf.update_wheels(t, 0.2)
        ekf.predict(t, np.zeros(3))
        assert not ekf.update_vo(ref.VOFailureStub(t, int(t)))
    ekf.update_wheels(3.0, 0.2)
    ekf.predict(3.0, np.zeros(3))
    reinit = ref.VOFailureStub(3.0, 3, "re-initialised at this frame")
    reinit.keyframe = True
    assert not ekf.update_vo(reinit)
    for k in range(1, 7):                                    # six results, all measured from frame 3
        t = 3.0 + k
        ekf.update_wheels(t, 0.2)
        ekf.predict(t, np.zeros(3))
        Tm = ref.noisy_relative(ref.camera_relative(np.eye(4), ref.pose(np.eye(3), [0.2 * k, 0, 0]), Tbc), C, rng)
        upd = ekf.update_vo(ref.VOResultStub(t, 3 + k, 3.0, 3, Tm, C))
        assert upd, (k, upd.reason)
        assert 3.0 in ekf.clone_times_s and len(ekf.clone_times_s) <= 3
    # a plain failure (keyframe False) is not protected: it is pruned like any frame
    ekf2 = RoverEKF(Tbc, replace(MARS_EKF, max_clones=2))
    for t in (0.0, 1.0, 2.0):
        ekf2.update_wheels(t, 0.2)
        ekf2.predict(t, np.zeros(3))
        ekf2.update_vo(ref.VOFailureStub(t, int(t)))
    assert ekf2.clone_times_s == [1.0, 2.0]
