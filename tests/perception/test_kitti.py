"""Tests for perception.kitti: a hand-written sequence in the KITTI odometry layout (calibration values
taken from the format's definition P1 = K [I | (-b, 0, 0)]), KITTI's own poses/NN.txt location, a
simulator recording written by sim.recording.write_kitti read back, and clear errors for malformed files
naming the file and the line."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from perception.kitti import KittiSequence, read_calib, read_poses, read_times, stereo_from_calib

# KITTI odometry sequence 00's rectified grey cameras (calib.txt of the public dataset): fx = 718.856,
# cx = 607.1928, cy = 185.2157, P1[0, 3] = -386.1448 -> baseline 386.1448 / 718.856 = 0.5372 m
P0 = "7.188560000000e+02 0.000000000000e+00 6.071928000000e+02 0.000000000000e+00 0.000000000000e+00 " \
     "7.188560000000e+02 1.852157000000e+02 0.000000000000e+00 0.000000000000e+00 0.000000000000e+00 " \
     "1.000000000000e+00 0.000000000000e+00"
P1 = "7.188560000000e+02 0.000000000000e+00 6.071928000000e+02 -3.861448000000e+02 0.000000000000e+00 " \
     "7.188560000000e+02 1.852157000000e+02 0.000000000000e+00 0.000000000000e+00 0.000000000000e+00 " \
     "1.000000000000e+00 0.000000000000e+00"


def _write_sequence(root, n=4, *, poses=True, times=True, shape=(40, 60)):
    root.mkdir(parents=True, exist_ok=True)
    (root / "calib.txt").write_text(f"P0: {P0}\nP1: {P1}\nP2: {P0}\nTr: {P0}\n")
    rng = np.random.default_rng(0)
    for sub in ("image_0", "image_1"):
        (root / sub).mkdir(exist_ok=True)
        for i in range(n):
            cv2.imwrite(str(root / sub / f"{i:06d}.png"), rng.integers(0, 255, shape, dtype=np.uint8))
    if times:
        (root / "times.txt").write_text("".join(f"{0.1 * i:.6e}\n" for i in range(n)))
    if poses:
        lines = []
        for i in range(n):
            c, s = math.cos(0.1 * i), math.sin(0.1 * i)
            T = np.array([[c, 0, s, 0.5 * i], [0, 1, 0, 0.0], [-s, 0, c, 1.0 * i]])
            lines.append(" ".join(f"{v:.9e}" for v in T.ravel()))
        (root / "poses.txt").write_text("\n".join(lines) + "\n")
    return root


def test_reads_a_kitti_sequence(tmp_path):
    seq = KittiSequence(_write_sequence(tmp_path / "00"))
    assert len(seq) == 4 and seq.name == "00"
    np.testing.assert_allclose(seq.K, [[718.856, 0, 607.1928], [0, 718.856, 185.2157], [0, 0, 1]])
    assert seq.baseline_m == pytest.approx(386.1448 / 718.856, rel=1e-12)
    np.testing.assert_allclose(seq.times_s, [0.0, 0.1, 0.2, 0.3])
    assert seq.poses.shape == (4, 4, 4)
    np.testing.assert_allclose(seq.poses[2, :3, 3], [1.0, 0.0, 2.0])
    fr = seq[2]
    assert (fr.seq, fr.t_s) == (2, pytest.approx(0.2)) and fr.left.dtype == np.uint8 and fr.left.shape == (40, 60)
    np.testing.assert_array_equal(fr.left, cv2.imread(str(tmp_path / "00" / "image_0" / "000002.png"), 0))
    np.testing.assert_allclose(fr.T_first_left, seq.poses[2])
    assert [f.seq for f in seq] == [0, 1, 2, 3]
    assert seq[-1].seq == 3
    with pytest.raises(IndexError, match="4 frames"):
        seq[4]
    assert set(read_calib(tmp_path / "00" / "calib.txt")) == {"P0", "P1", "P2", "Tr"}


def test_optional_files_and_kitti_poses_folder(tmp_path):
    root = _write_sequence(tmp_path / "dataset" / "sequences" / "07", poses=False, times=False)
    seq = KittiSequence(root)
    assert seq.poses is None
    np.testing.assert_allclose(seq.times_s, np.arange(4) / 10.0)          # KITTI's 10 Hz by default
    assert KittiSequence(root, rate_hz=4.0).times_s[1] == pytest.approx(0.25)
    # KITTI's own layout: dataset/poses/07.txt beside dataset/sequences/
    other = _write_sequence(tmp_path / "tmp", poses=True)
    (tmp_path / "dataset" / "poses").mkdir()
    (tmp_path / "dataset" / "poses" / "07.txt").write_text((other / "poses.txt").read_text())
    seq = KittiSequence(root)
    assert seq.poses is not None and seq.poses_path.name == "07.txt"
    seq = KittiSequence(root, poses=other / "poses.txt")
    assert seq.poses_path == other / "poses.txt"
    # colour images are read as grey
    img = np.zeros((40, 60, 3), np.uint8)
    img[..., 2] = 200
    cv2.imwrite(str(root / "image_0" / "000001.png"), img)
    assert seq[1].left.ndim == 2 and seq[1].left.max() > 0


def test_reads_a_simulator_recording(tmp_path):
    import sim
    from sim.recording import clear_zones_along, course, record_traverse, write_kitti

    wp = course("straight", 0.6, start_xy=(2.0, 3.0))
    gen = sim.generate_terrain("moon", size_m=(6.0, 6.0), seed=2, clear_zones=clear_zones_along(wp, 1.0))
    rec = record_traverse(sim.World(gen, planet="moon", seed=2), "osr", wp, frame_every_m=0.2)
    seq = KittiSequence(write_kitti(rec, tmp_path / "sim"))
    assert len(seq) == len(rec.frames)
    np.testing.assert_allclose(seq.K, rec.frames[0].K, rtol=1e-11)
    assert seq.baseline_m == pytest.approx(rec.frames[0].baseline_m, rel=1e-11)
    np.testing.assert_allclose(seq.times_s, [f.t_s - rec.frames[0].t_s for f in rec.frames], atol=1e-6)
    T0inv = np.linalg.inv(rec.frames[0].T_world_left)
    for i, f in enumerate(rec.frames):
        np.testing.assert_allclose(seq.poses[i], T0inv @ f.T_world_left, atol=1e-9)
        np.testing.assert_array_equal(seq[i].left, f.left)
        np.testing.assert_array_equal(seq[i].right, f.right)


def _break(root, name, text):
    (root / name).write_text(text)
    return root


@pytest.mark.parametrize("name, text, match", [
    ("calib.txt", f"P0: {P0}\n", r"calib\.txt: no P1 line \(found P0\)"),
    ("calib.txt", f"P0: {P0}\nP1: 1 2 3\n", r"calib\.txt:2: expected 12 numbers, got 3"),
    ("calib.txt", f"P0: {P0}\nP1 {P1}\n", r"calib\.txt:2: expected 'KEY: 12 numbers'"),
    ("calib.txt", f"P0: {P0}\nP1: {P1.replace('-3.861448', '3.861448')}\n", r"baseline .* must be > 0"),
    ("calib.txt", f"P0: {P0}\nP1: {P1.replace('7.188560000000e+02', '7.0e+02', 1)}\n", "different intrinsics"),
    ("calib.txt", f"P0: {P0}\nP1: {P1.replace(' 1.852157000000e+02 0.0', ' 1.852157000000e+02 5.0')}\n",
     "more than a horizontal baseline"),
    ("times.txt", "0\n0.1\n0.1\n0.3\n", r"times\.txt:3: time 0\.1 does not increase"),
    ("times.txt", "0\n0.1\nabc\n0.3\n", r"times\.txt:3: not a number"),
    ("times.txt", "0\n0.1\n0.2\n", r"times\.txt: 3 times for 4 image pairs"),
    ("poses.txt", "1 0 0 0 0 1 0 0 0 0 1 0\n", r"poses\.txt: 1 poses for 4 image pairs"),
    ("poses.txt", "1 0 0 0 0 1 0 0 0 0 1\n", r"poses\.txt:1: expected 12 numbers, got 11"),
    ("poses.txt", "2 0 0 0 0 1 0 0 0 0 1 0\n", r"poses\.txt:1: the 3x3 part is not a rotation"),
])
def test_malformed_files_name_file_and_line(tmp_path, name, text, match):
    root = _break(_write_sequence(tmp_path / "s"), name, text)
    with pytest.raises(ValueError, match=match):
        KittiSequence(root)


def test_missing_and_inconsistent_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such sequence directory"):
        KittiSequence(tmp_path / "nope")
    root = _write_sequence(tmp_path / "s")
    (root / "image_1" / "000003.png").rename(root / "image_1" / "000009.png")
    with pytest.raises(ValueError, match="names differ"):
        KittiSequence(root)
    root = _write_sequence(tmp_path / "t")
    (root / "calib.txt").unlink()
    with pytest.raises(FileNotFoundError, match="calib.txt"):
        KittiSequence(root)
    root = _write_sequence(tmp_path / "u")
    with pytest.raises(FileNotFoundError, match="no such poses file"):
        KittiSequence(root, poses=root / "missing.txt")
    with pytest.raises(ValueError, match="rate_hz"):
        KittiSequence(_write_sequence(tmp_path / "v", times=False), rate_hz=0.0)
    root = _write_sequence(tmp_path / "w")
    cv2.imwrite(str(root / "image_1" / "000001.png"), np.zeros((40, 60), np.uint16))
    with pytest.raises(ValueError, match=r"000001\.png: uint16 pixels"):
        KittiSequence(root)[1]
    (root / "image_0" / "000002.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="could not read"):
        KittiSequence(root)[2]
    cv2.imwrite(str(root / "image_1" / "000003.png"), np.zeros((30, 60), np.uint8))
    with pytest.raises(ValueError, match="differs from the left"):
        KittiSequence(root)[3]


def test_low_level_readers(tmp_path):
    (tmp_path / "t.txt").write_text("# header\n0.5\n\n1.5\n")
    np.testing.assert_allclose(read_times(tmp_path / "t.txt"), [0.5, 1.5])
    (tmp_path / "p.txt").write_text("1 0 0 1 0 1 0 2 0 0 1 3\n")
    np.testing.assert_allclose(read_poses(tmp_path / "p.txt")[0, :3, 3], [1, 2, 3])
    K, b = stereo_from_calib({"P0": np.hstack([np.eye(3), np.zeros((3, 1))]),
                              "P1": np.hstack([np.eye(3), [[-0.2], [0], [0]]])})
    assert b == pytest.approx(0.2)
