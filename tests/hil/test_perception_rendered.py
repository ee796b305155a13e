"""Tests of hil.perception_rendered (RenderedPerception: the rendered perception source of a traverse).

A SimRover on generated Mars terrain is driven by an open-loop twist sequence (straight, an arc, a point
turn) at 10 Hz through the perception-source interface an executive uses (start / on_telemetry / pose /
observe / stats), its stereo camera rendering the pairs. Oracles: the simulator's ground truth (pose at
every tick, the true DEM under the observed local maps); camera faults injected with FaultyCamera.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from drivers.camera import StereoCamera
from drivers.kinematics import WheelLayout
from hil.perception_rendered import BLACKOUT_MODES, FaultyCamera, RecordingCamera, RenderedPerception
from hil.traverse import Observation
from nav.config import load_rover
from perception.stereo_map import GlobalMap, LocalHeightMap
from sim import SimRover, World
from sim.frames import T_body_cam, T_world_body
from sim.recording import clear_zones_along

PROFILE = load_rover("osr")
START = (3.0, 8.0)


def _world():
    path = np.array([[START[0], START[1]], [8.0, 8.0], [10.5, 9.5]])
    return World.generate("mars", size_m=(16.0, 16.0), seed=4, clear_zones=clear_zones_along(path, 1.5))


def _truth_T(tr):
    return T_world_body(tr.x_m, tr.y_m, tr.z_m, tr.yaw_rad, tr.pitch_rad, tr.roll_rad)


def _twist(t):
    """Open-loop drive: 12 s straight at 0.25 m/s, 8 s arc (radius 2.5 m), 3 s point turn, 5 s straight."""
    if t < 12.0:
        return 0.25, 0.0
    if t < 20.0:
        return 0.25, 0.1
    if t < 23.0:
        return 0.0, 0.3
    return 0.25, 0.0


def _drive(*, faults=None, duration_s=28.0, observe_every_s=2.0, wrap=True):
    """Drive the open-loop sequence with a RenderedPerception fed as an executive would; ``faults(t, cam,
    perception)`` is called before every tick. Returns rows per tick, observations, the perception, the world."""
    world = _world()
    rover = SimRover(world, PROFILE, x_m=START[0], y_m=START[1], yaw_rad=0.0)
    layout = WheelLayout.from_profile(PROFILE)
    cam = FaultyCamera(rover.stereo_camera()) if wrap else rover.stereo_camera()
    gmap = GlobalMap.like(world.terrain.resampled(0.1))
    rows, obs = [], []
    with rover:
        rover.arm()
        tm = rover.read_telemetry()
        per = RenderedPerception(cam, PROFILE, planet="mars")
        per.start(tm.t_s, _truth_T(rover.truth()))
        next_obs = 0.0
        for i in range(int(round(duration_s * 10))):
            t = 0.1 * i
            if faults is not None:
                faults(t, cam, per)
            rover.set_twist(*_twist(t))
            world.clock.sleep(0.1)
            tm = rover.read_telemetry()
            per.on_telemetry(tm, *layout.forward(tm.wheel_speed_radps, tm.steer_rad))
            if t >= next_obs:
                next_obs += observe_every_s
                ob = per.observe(tm.t_s, gmap)
                obs.append((t, ob))
                if ob is not None:
                    gmap.merge(ob.local)
            T, C = per.pose()
            tr = rover.truth()
            rows.append((t, T, C, _truth_T(tr), tr.distance_m, tm.t_s))
        rover.stop()
    return rows, obs, per, world, gmap


def _err(rows):
    err = np.array([np.linalg.norm(T[:3, 3] - Tt[:3, 3]) for _, T, _, Tt, *_ in rows])
    sig = np.array([math.sqrt(np.trace(C[3:, 3:])) for _, _, C, *_ in rows])
    yaw = np.array([abs(math.remainder(math.atan2(T[1, 0], T[0, 0]) - math.atan2(Tt[1, 0], Tt[0, 0]), 2 * math.pi))
                    for _, T, _, Tt, *_ in rows])
    dist = np.array([r[4] for r in rows])
    return err, sig, yaw, dist


@pytest.fixture(scope="module")
def nominal():
    return _drive()


def test_poses_follow_the_truth_on_an_open_loop_drive(nominal):
    rows, obs, per, world, gmap = nominal
    err, sig, yaw, dist = _err(rows)
    D = dist[-1]
    assert D > 5.0
    # within 5 cm + 1 % of the distance all along, within 1 % + 1 cm at the end, heading within 1 degree
    assert np.all(err < 0.05 + 0.01 * dist), (err.max(), dist[np.argmax(err)])
    assert err[-1] < 0.01 * D + 0.01, (err[-1], D)
    assert np.degrees(yaw.max()) < 1.0
    assert err[-1] < 3.0 * sig[-1] + 0.01
    st = per.stats()
    for key in ("vo_frames", "vo_ok", "vo_convergence"):
        assert key in st
    assert st["perception"] == "rendered"
    # frames every ~0.15 m of travel, and during the point turn (rotation spacing) as well
    assert st["vo_frames"] >= D / 0.16
    assert st["vo_convergence"] >= 0.9 and st["vo_rejected"] == 0
    assert st["camera_errors"] == 0 and st["camera_empty"] == 0 and st["stale_frames"] == 0
    turn = [r for r in rows if 20.0 <= r[0] < 23.0]
    assert np.degrees(abs(math.remainder(math.atan2(turn[-1][3][1, 0], turn[-1][3][0, 0])
                                         - math.atan2(turn[0][3][1, 0], turn[0][3][0, 0]), 2 * math.pi))) > 30
    T, C = per.pose()
    assert T.shape == (4, 4) and C.shape == (6, 6)


def test_observations_are_local_maps_of_the_true_terrain(nominal):
    rows, obs, per, world, gmap = nominal
    truth_at = {round(r[5], 6): r[3] for r in rows}
    got = [ob for _, ob in obs if ob is not None]
    assert len(got) == len(obs) >= 12
    st = per.stats()
    assert st["observations"] == len(obs) and st["empty_observations"] == 0
    for ob in got:
        assert isinstance(ob, Observation) and isinstance(ob.local, LocalHeightMap)
        assert ob.n_points == ob.local.n_points > 1000 and ob.local.cell_size_m == gmap.cell_size_m
        # the camera pose of the observation is the estimate at its frame: close to the truth then
        Tt = truth_at[round(ob.t_s, 6)] @ T_body_cam(PROFILE.camera)
        assert np.linalg.norm(ob.T_world_cam_est[:3, 3] - Tt[:3, 3]) < 0.06
    # the fused map against the true DEM on the mapped cells within 6 m of the path
    truth = world.terrain.resampled(0.1)
    rr, cc = np.nonzero(gmap.known & np.isfinite(truth.elevation_m))
    xy = truth.cell_to_world(np.stack([rr, cc], axis=1))
    path = np.array([r[3][:2, 3] for r in rows[::10]])
    near = np.min(np.hypot(xy[:, None, 0] - path[None, :, 0], xy[:, None, 1] - path[None, :, 1]), axis=1) < 6.0
    e = np.abs(gmap.height_m[rr, cc] - truth.elevation_m[rr, cc])[near]
    assert e.size > 3000
    assert np.median(e) < 0.04 and np.mean(e < 0.15) > 0.9, (np.median(e), e.size)


def test_observations_carry_the_near_map_of_the_ground_close_in(nominal):
    """Every observation has a near map (the default) on the executive map's lattice with its cells split 2 x 2,
    whose known cells all lie within 2.5 m (plus half a cell's diagonal) of the camera the points were placed
    from, reaching out most of that range, and whose heights are the true terrain's."""
    rows, obs, per, world, gmap = nominal
    cs = gmap.cell_size_m / 2
    errs = []
    for _, ob in obs:
        near = ob.near
        assert isinstance(near, LocalHeightMap) and near.cell_size_m == pytest.approx(cs)
        off = (np.asarray(near.origin_xy_m) - gmap.origin_xy_m) / cs
        np.testing.assert_allclose(off, np.round(off), atol=1e-6)
        assert near.n_known > 200 and 0 < near.n_points < ob.n_points
        rr, cc = np.nonzero(near.known)
        xy = near.terrain_map().cell_to_world(np.stack([rr, cc], axis=1))
        d = np.hypot(*(xy - ob.T_world_cam_est[:2, 3]).T)
        assert d.max() <= 2.5 + cs * math.sqrt(0.5) + 1e-9 and d.max() > 2.0, d.max()
        errs.append(near.height_m[rr, cc] - world.terrain.height_at(xy))
    e = np.abs(np.concatenate(errs))
    e = e[np.isfinite(e)]
    assert e.size > 5000 and np.median(e) < 0.03 and np.mean(e < 0.10) > 0.95, (np.median(e), np.mean(e < 0.10))


def test_near_map_is_of_the_observed_pair_at_its_pose_and_can_be_switched_off():
    """The near map equals the mapper's of the pair observe used (recorded off the camera) at the returned pose,
    both when observe reuses the frame of its tick and when it captures one; ``near=False`` gives None, and so
    does a replay configuration recorded before the option existed."""
    world = _world()
    rover = SimRover(world, PROFILE, x_m=START[0], y_m=START[1])
    gmap = GlobalMap.like(world.terrain.resampled(0.1))
    seen = []
    with rover:
        rover.arm()
        tm = rover.read_telemetry()
        per = RenderedPerception(RecordingCamera(rover.stereo_camera(), lambda fr, err: seen.append(fr)), PROFILE,
                                 planet="mars")
        per.start(tm.t_s, _truth_T(rover.truth()))
        # (the attitude sigma of the map is the filter's at the frame: nothing moves it before observe returns)
        got = [(per.observe(tm.t_s, gmap), per.pipeline.attitude_sigma_rad())]     # reuses the start frame
        world.clock.sleep(0.1)
        tm = rover.read_telemetry()
        per.on_telemetry(tm, 0.0, 0.0, 0.0)                     # standing: no frame due
        n = len(seen)
        got.append((per.observe(tm.t_s, gmap), per.pipeline.attitude_sigma_rad()))  # captures one
        assert len(seen) == n + 1
        m = per.pipeline.mapper
        for (ob, att), fr in zip(got, (seen[0], seen[-1])):
            assert ob is not None and ob.t_s == fr.t_s and ob.near
            pts = m.points(m.disparity(fr.left, fr.right))
            ref = m.near_map(pts, ob.T_world_cam_est, grid=gmap, attitude_sigma_rad=att)
            assert ob.near.origin_xy_m == ref.origin_xy_m and ob.near.cell_size_m == ref.cell_size_m
            np.testing.assert_array_equal(ob.near.height_m, ref.height_m)
            np.testing.assert_array_equal(ob.near.count, ref.count)
            np.testing.assert_array_equal(ob.local.height_m, m.local_map(pts, ob.T_world_cam_est, grid=gmap,
                                                                         attitude_sigma_rad=att).height_m)
        assert per.replay_config()["near"] is True
        off = RenderedPerception(rover.stereo_camera(), PROFILE, planet="mars", near=False)
        off.start(tm.t_s, _truth_T(rover.truth()))
        ob = off.observe(tm.t_s, gmap)
        assert ob is not None and ob.local and ob.near is None
        world.clock.sleep(0.1)
        ob = off.observe(rover.read_telemetry().t_s, gmap)
        assert ob is not None and ob.local and ob.near is None
    cfg = off.replay_config()
    assert cfg["near"] is False
    assert RenderedPerception.from_replay_config(rover.stereo_camera(), PROFILE, {**cfg, "near": True}).near
    del cfg["near"]                     # a log from before the option: its rendered perception made no near maps
    assert RenderedPerception.from_replay_config(rover.stereo_camera(), PROFILE, cfg).near is False


def test_camera_blackout_and_vo_dropout_are_bridged_without_a_jump():
    """The camera raises for 3 s, returns nothing for 1 s, gives black frames for 2 s, and VO is switched
    off for 2 s: the filter carries the pose on wheels and gyro with growing covariance, no jump when the
    frames come back, and the observations during the blackout are None (nothing seen)."""
    windows = {"raise": (5.0, 8.0), "none": (8.0, 9.0), "black": (14.0, 16.0)}
    dropout = (24.0, 26.0)

    def faults(t, cam, per):
        mode = next((m for m, (a, b) in windows.items() if a <= t < b), None)
        cam.set_blackout(mode)
        per.set_vo_dropout(dropout[0] <= t < dropout[1])

    rows, obs, per, world, gmap = _drive(faults=faults)
    err, sig, yaw, dist = _err(rows)
    ts = np.array([r[0] for r in rows])
    st = per.stats()
    assert st["camera_errors"] >= 4 and st["camera_empty"] >= 1
    assert "DeviceTimeout" in st["last_camera_error"]
    # black frames make VO re-initialise; after frames that never came, or were skipped, VO may pick up its
    # old keyframe again (seeded by the filter's motion)
    assert st["vo_failed"]["skipped"] >= 3 and st["vo_failed"]["reinitialised"] >= 1
    assert st["vo_rejected"] == 0, st["vo_reject_reasons"]
    for a, b in list(windows.values()) + [dropout]:
        inside = np.flatnonzero((ts >= a + 0.1) & (ts < b))
        # bridged: uncertainty grows through the outage, the error stays within it
        assert np.all(np.diff(sig[inside]) > 0) and sig[inside[-1]] > sig[inside[0] - 1]
        assert np.all(err[inside] < 3.0 * sig[inside] + 0.01)
        # no jump when frames return: the estimate moves by less than 3 sigma and toward the truth
        after = np.flatnonzero((ts >= b) & (ts < b + 2.0))
        steps = np.array([np.linalg.norm(rows[k][1][:3, 3] - rows[k - 1][1][:3, 3]) for k in after])
        truth_steps = np.array([np.linalg.norm(rows[k][3][:3, 3] - rows[k - 1][3][:3, 3]) for k in after])
        assert np.all(steps - truth_steps < 3.0 * sig[after - 1] + 0.005), (a, b, (steps - truth_steps).max())
        # ... and settles where VO puts it: back near the error before the outage when VO picked up its old
        # keyframe and measured the whole gap, else keeping what drifted during it (relative VO cannot see it)
        before = inside[0] - 2
        assert err[after[-1]] < max(err[before], err[inside[-1]]) + 0.02, (a, b, err[before], err[after[-1]])
    # after the camera gave no frames at all (5-9 s), VO tracked again from its keyframe before the outage
    # (the filter kept that pose) and measured the whole gap: the error drifted during it went away
    k_before, k_after = np.flatnonzero(ts >= 4.9)[0], np.flatnonzero(ts >= 9.5)[0]
    assert err[k_after] < err[k_before] + 0.01 < np.max(err[k_before:k_after]), (err[k_before], err[k_after])
    # observations during a blackout see nothing; the others map the terrain
    for t, ob in obs:
        if any(a <= t < b for m, (a, b) in windows.items()):
            assert ob is None
        elif t > 0:
            assert ob is not None and ob.local.n_known > 100
    assert st["empty_observations"] == sum(1 for _, ob in obs if ob is None) >= 2
    assert err[-1] < 0.03 * dist[-1] + 0.05


def test_plain_camera_lifecycle_and_bad_inputs():
    world = _world()
    rover = SimRover(world, PROFILE, x_m=START[0], y_m=START[1])
    cam = rover.stereo_camera()
    per = RenderedPerception(cam, "osr")                    # profile by name, no planet: no accelerometer
    T0, C0 = per.pose()
    assert np.array_equal(T0, np.eye(4)) and C0 is None
    with pytest.raises(RuntimeError, match="start"):
        per.observe(0.0, None)
    with pytest.raises(RuntimeError, match="start"):
        per.on_telemetry(None, 0.0, 0.0, 0.0)
    per.start(0.0, _truth_T(rover.truth()))
    st = per.stats()
    assert st["vo_frames"] == 1 and st["vo_convergence"] is None and st["captures"] == 1
    ob = per.observe(0.0, None)                             # reuses the start frame, default lattice
    assert ob is not None and ob.t_s == 0.0 and per.stats()["captures"] == 1
    with pytest.raises(TypeError, match="StereoCamera"):
        RenderedPerception(object(), PROFILE)
    with pytest.raises(TypeError, match="StereoCamera"):
        FaultyCamera(object())
    with pytest.raises(ValueError, match="frame_every_m"):
        RenderedPerception(cam, PROFILE, frame_every_m=0.0)
    with pytest.raises(ValueError, match="mode"):
        FaultyCamera(cam).set_blackout("smoke")
    assert set(BLACKOUT_MODES) == {"black", "raise", "none"}
    assert isinstance(FaultyCamera(cam), StereoCamera)


def test_no_first_frame_falls_back_to_the_profile_camera():
    world = _world()
    rover = SimRover(world, PROFILE, x_m=START[0], y_m=START[1])
    cam = FaultyCamera(rover.stereo_camera())
    cam.set_blackout("raise")
    per = RenderedPerception(cam, PROFILE, planet="mars")
    per.start(0.0, _truth_T(rover.truth()))
    st = per.stats()
    assert st["vo_frames"] == 0 and st["camera_errors"] == 1
    np.testing.assert_allclose(per.pipeline.T_body_cam, rover.stereo_camera().capture().T_body_left, atol=1e-12)
