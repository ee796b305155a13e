"""Recorded traverses (sim.recording): the rover follows the course, frames carry consistent truth, and the
KITTI layout on disk says the same thing as the recording (oracle: the KITTI odometry devkit's conventions —
P1[0, 3] = -fx * baseline; poses are T_cam0_cami as 3x4 rows)."""
import math

import numpy as np
import pytest

from sim import World, generate_terrain
from sim.frames import T_world_body, invert
from sim.recording import clear_zones_along, course, record_traverse, write_kitti


@pytest.fixture(scope="module")
def rec():
    wp = course("s_curve", 6.0, start_xy=(4.0, 8.0), heading_rad=0.3)
    gen = generate_terrain("mars", size_m=16.0, cell_size_m=0.05, seed=5, clear_zones=clear_zones_along(wp, 1.0))
    return record_traverse(World(gen, planet="mars", seed=2), "osr", wp, frame_every_m=0.5), wp


def test_course_shapes():
    for kind in ("straight", "s_curve", "loop"):
        wp = course(kind, 12.0, start_xy=(1.0, 2.0), heading_rad=0.5)
        assert np.allclose(wp[0], (1.0, 2.0))
        chord = wp[-1] - wp[0] if kind != "loop" else np.diff(wp, axis=0)[0]
        half_step = 0.0 if kind != "loop" else 0.5 * 0.5 / (12.0 / (2 * math.pi))   # chord of the first step
        assert math.isclose(math.atan2(chord[1], chord[0]), 0.5 + half_step, abs_tol=0.02)   # the course's axis
    loop = course("loop", 12.0)
    assert np.hypot(*loop[-1]) < 1e-9                       # a full circle comes back
    with pytest.raises(ValueError, match="course kind"):
        course("zigzag", 5.0)
    with pytest.raises(ValueError, match="length_m"):
        course("straight", -1.0)


def test_clear_zones_cover_the_course():
    wp = course("straight", 5.0)
    zones = np.array(clear_zones_along(wp, 0.8))
    for p in np.linspace(wp[0], wp[-1], 50):
        assert np.min(np.hypot(zones[:, 0] - p[0], zones[:, 1] - p[1])) <= 0.8


def test_rover_follows_the_course(rec):
    r, wp = rec
    assert r.reached
    xy = np.array([[t.x_m, t.y_m] for t in r.truth])
    # every recorded position is close to the polyline (pure pursuit on truth)
    seg_d = []
    for p in xy:
        a, b = wp[:-1], wp[1:]
        ab = b - a
        u = np.clip(np.einsum("ij,ij->i", p - a, ab) / np.einsum("ij,ij->i", ab, ab), 0, 1)
        seg_d.append(np.min(np.hypot(*(a + u[:, None] * ab - p).T)))
    assert max(seg_d) < 0.3
    assert np.hypot(*(xy[-1] - wp[-1])) < 0.2
    assert len(r.telemetry) == len(r.truth)
    assert r.distance_m > 5.5


def test_frames_match_truth_and_spacing(rec):
    r, _ = rec
    assert len(r.frames) == len(r.frame_truth) >= 12
    for fr, tr in zip(r.frames, r.frame_truth):
        T = T_world_body(tr.x_m, tr.y_m, tr.z_m, tr.yaw_rad, tr.pitch_rad, tr.roll_rad) @ fr.T_body_left
        assert np.allclose(T, fr.T_world_left, atol=1e-9)
        assert fr.t_s == tr.t_s
        assert fr.left.shape == (480, 640) and fr.left.dtype == np.uint8
    d = np.diff([tr.distance_m for tr in r.frame_truth])
    assert np.all(d[:-1] >= 0.5) and np.all(d[:-1] < 0.5 + 0.35 * 0.1 + 1e-6)   # one control tick of slack
    assert [f.seq for f in r.frames] == list(range(len(r.frames)))


def test_write_kitti_layout(rec, tmp_path):
    import cv2

    r, _ = rec
    out = write_kitti(r, tmp_path / "seq")
    n = len(r.frames)
    assert len(list((out / "image_0").glob("*.png"))) == n == len(list((out / "image_1").glob("*.png")))
    img = cv2.imread(str(out / "image_1" / f"{n - 1:06d}.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(img, r.frames[-1].right)
    calib = {ln.split(":")[0]: np.array(ln.split(":")[1].split(), float).reshape(3, 4)
             for ln in (out / "calib.txt").read_text().splitlines()}
    K = r.frames[0].K
    assert np.allclose(calib["P0"][:, :3], K) and np.allclose(calib["P0"][:, 3], 0)
    assert math.isclose(-calib["P1"][0, 3] / calib["P1"][0, 0], r.frames[0].baseline_m, rel_tol=1e-9)
    poses = np.loadtxt(out / "poses.txt")
    assert poses.shape == (n, 12)
    assert np.allclose(poses[0], np.eye(4)[:3].ravel(), atol=1e-12)
    T0 = r.frames[0].T_world_left
    for i in (1, n // 2, n - 1):
        Ti = np.eye(4)
        Ti[:3] = poses[i].reshape(3, 4)
        assert np.allclose(T0 @ Ti, r.frames[i].T_world_left, atol=1e-9)
    # the camera-frame path length equals the left camera's travelled distance
    times = np.loadtxt(out / "times.txt")
    assert times[0] == 0 and np.all(np.diff(times) > 0)
    tel = np.genfromtxt(out / "telemetry.csv", delimiter=",", names=True)
    assert len(tel) == len(r.telemetry)
    assert np.array_equal(tel["enc_0"].astype(np.int64), [t.encoder_counts[0] for t in r.telemetry])
    truth = np.genfromtxt(out / "truth.csv", delimiter=",", names=True)
    assert np.allclose(truth["x_m"], [t.x_m for t in r.truth], atol=1e-6)
    assert np.allclose(invert(invert(T0)), T0)


def test_blocked_rover_ends_early():
    # a 1 m wall across the course: the recording stops when no progress is made, not at max_time_s
    from nav import TerrainMap

    h = np.zeros((60, 100))
    h[:, 50:] = 1.0
    tm = TerrainMap(h, cell_size_m=0.1)
    w = World(tm, planet="mars", seed=0)
    r = record_traverse(w, "osr", [(1.0, 3.0), (9.0, 3.0)], render=False, max_time_s=200.0)
    assert not r.reached and r.truth[-1].t_s < 60.0


def test_bad_waypoints():
    w = World(generate_terrain("mars", size_m=8.0, cell_size_m=0.1, seed=1), seed=0)
    with pytest.raises(ValueError, match="waypoints"):
        record_traverse(w, "osr", [(1.0, 1.0)])
    with pytest.raises(ValueError, match="speed_mps"):
        record_traverse(w, "osr", [(1.0, 1.0), (2.0, 1.0)], speed_mps=5.0)
