"""Stereo sequences on disk in the KITTI odometry layout.

A sequence directory holds::

    image_0/000000.png …    left rectified grey images (8-bit; colour images are converted to grey)
    image_1/000000.png …    right rectified images, the same file names
    calib.txt               lines "P0: 12 numbers" and "P1: 12 numbers" (3x4 row-major projection matrices
                            of the rectified left and right cameras; other lines such as "Tr:" are ignored)
    times.txt               optional: one time in seconds per frame
    poses.txt               optional ground truth: per frame 12 numbers, the row-major top 3x4 of the left
                            camera's pose in the first left camera's frame (OpenCV axes)

In the original KITTI download the poses of sequence ``NN`` live in ``poses/NN.txt`` beside
``sequences/``; :class:`KittiSequence` looks there too. From the projection matrices:
``K = P0[:, :3]`` and ``baseline_m = (P0[0, 3] - P1[0, 3]) / fx`` (``P1 = K [I | (-b, 0, 0)]``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["KittiFrame", "KittiSequence", "read_calib", "read_poses", "read_times", "stereo_from_calib"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".tif", ".tiff")


@dataclass(frozen=True, eq=False)
class KittiFrame:
    """One stereo pair read from disk (the attributes :meth:`perception.vo.StereoVO.process_frame` uses).
    ``T_first_left`` is the ground-truth pose when the sequence has one, else None."""
    t_s: float
    seq: int
    left: np.ndarray
    right: np.ndarray
    T_first_left: np.ndarray | None = None


def _numbers(path: Path, k: int, text: str, n: int) -> np.ndarray:
    try:
        vals = [float(v) for v in text.split()]
    except ValueError:
        raise ValueError(f"{path}:{k}: not a number in {text.strip()[:60]!r}") from None
    if len(vals) != n:
        raise ValueError(f"{path}:{k}: expected {n} numbers, got {len(vals)}")
    if not all(math.isfinite(v) for v in vals):
        raise ValueError(f"{path}:{k}: non-finite value")
    return np.array(vals)


def read_calib(path) -> dict[str, np.ndarray]:
    """All ``KEY: 12 numbers`` matrices of a KITTI ``calib.txt`` as ``{key: (3, 4)}``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no calibration file (KITTI calib.txt with P0 and P1)")
    out = {}
    with open(path) as f:
        for k, line in enumerate(f, start=1):
            s = line.strip()
            if not s or s.startswith("#"):
                continue
            key, sep, rest = s.partition(":")
            if not sep or not key.strip() or " " in key.strip():
                raise ValueError(f"{path}:{k}: expected 'KEY: 12 numbers', got {s[:60]!r}")
            out[key.strip()] = _numbers(path, k, rest, 12).reshape(3, 4)
    return out


def stereo_from_calib(calib: dict, path="calib.txt") -> tuple[np.ndarray, float]:
    """``(K, baseline_m)`` of the rectified pair ``P0``/``P1`` of :func:`read_calib`'s result."""
    for key in ("P0", "P1"):
        if key not in calib:
            raise ValueError(f"{path}: no {key} line (found {', '.join(sorted(calib)) or 'none'})")
    P0, P1 = calib["P0"], calib["P1"]
    K = P0[:, :3].copy()
    fx = K[0, 0]
    if not (fx > 0 and K[1, 1] > 0) or not np.allclose(K[2], [0, 0, 1]) or K[1, 0] != 0 or K[0, 1] != 0:
        raise ValueError(f"{path}: P0's left 3x3 is not a pinhole matrix [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]: "
                         f"{K.tolist()}")
    if not np.allclose(P1[:, :3], K, rtol=1e-6, atol=1e-9):
        raise ValueError(f"{path}: P0 and P1 have different intrinsics; the pair must be rectified "
                         f"(P0 = K [I | 0], P1 = K [I | (-b, 0, 0)])")
    if not (abs(P0[1, 3] - P1[1, 3]) <= 1e-6 * fx and abs(P0[2, 3] - P1[2, 3]) <= 1e-9 * fx):
        raise ValueError(f"{path}: P1 differs from P0 by more than a horizontal baseline "
                         f"(P1[1, 3] = {P1[1, 3]}, P1[2, 3] = {P1[2, 3]})")
    b = (P0[0, 3] - P1[0, 3]) / fx
    if not b > 0:
        raise ValueError(f"{path}: baseline (P0[0, 3] - P1[0, 3]) / fx = {b:.6g} m: must be > 0 "
                         f"(the right camera along the left's +x)")
    return K, float(b)


def read_times(path) -> np.ndarray:
    """Frame times (s) of a ``times.txt`` (one number per line; blank lines and ``#`` comments skipped);
    they must increase strictly."""
    path = Path(path)
    vals = []
    with open(path) as f:
        for k, line in enumerate(f, start=1):
            s = line.strip()
            if not s or s.startswith("#"):
                continue
            v = float(_numbers(path, k, s, 1)[0])
            if vals and not v > vals[-1]:
                raise ValueError(f"{path}:{k}: time {v!r} does not increase (previous {vals[-1]!r})")
            vals.append(v)
    return np.asarray(vals, dtype=np.float64)


def read_poses(path) -> np.ndarray:
    """Poses ``(N, 4, 4)`` of a KITTI ``poses.txt`` (12 numbers per line: the top 3x4, row-major)."""
    path = Path(path)
    out = []
    with open(path) as f:
        for k, line in enumerate(f, start=1):
            s = line.strip()
            if not s or s.startswith("#"):
                continue
            T = np.eye(4)
            T[:3, :] = _numbers(path, k, s, 12).reshape(3, 4)
            R = T[:3, :3]
            if not np.allclose(R @ R.T, np.eye(3), atol=1e-4) or np.linalg.det(R) < 0:
                raise ValueError(f"{path}:{k}: the 3x3 part is not a rotation (R R^T != I or det < 0)")
            out.append(T)
    return np.stack(out) if out else np.zeros((0, 4, 4))


def _images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such image folder")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


class KittiSequence:
    """A stereo sequence in the KITTI odometry layout (see the module docstring).

    Parameters
    ----------
    path : str or Path
        The sequence directory.
    poses : str or Path, optional
        Ground-truth file; default ``path/poses.txt``, else ``path/../../poses/<name>.txt`` (KITTI's own
        layout), else none.
    rate_hz : float, optional
        Frame rate used when there is no ``times.txt`` (default 10 Hz, KITTI's).

    Attributes: ``K`` (3, 3), ``baseline_m``, ``times_s`` (N,), ``poses`` (N, 4, 4) or None, ``name``,
    ``left_paths``, ``right_paths``. ``len(seq)``, ``seq[i]`` -> :class:`KittiFrame`, iteration.
    """

    def __init__(self, path, *, poses=None, rate_hz: float | None = None):
        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(f"{self.path}: no such sequence directory")
        self.name = self.path.name
        self.calib = read_calib(self.path / "calib.txt")
        self.K, self.baseline_m = stereo_from_calib(self.calib, self.path / "calib.txt")
        self.left_paths = _images(self.path / "image_0")
        self.right_paths = _images(self.path / "image_1")
        if not self.left_paths:
            raise ValueError(f"{self.path / 'image_0'}: no images ({', '.join(IMAGE_SUFFIXES)})")
        ln = [p.name for p in self.left_paths]
        rn = [p.name for p in self.right_paths]
        if ln != rn:
            missing = sorted(set(ln) ^ set(rn))
            raise ValueError(f"{self.path}: image_0 has {len(ln)} images and image_1 {len(rn)}; names differ "
                             f"(e.g. {missing[:3]})")
        n = len(ln)
        tp = self.path / "times.txt"
        if tp.is_file():
            self.times_s = read_times(tp)
            if len(self.times_s) != n:
                raise ValueError(f"{tp}: {len(self.times_s)} times for {n} image pairs")
        else:
            rate = 10.0 if rate_hz is None else float(rate_hz)
            if not (math.isfinite(rate) and rate > 0):
                raise ValueError(f"rate_hz = {rate_hz!r}: must be > 0")
            self.times_s = np.arange(n) / rate
        pp = None
        if poses is not None:
            pp = Path(poses)
            if not pp.is_file():
                raise FileNotFoundError(f"{pp}: no such poses file")
        elif (self.path / "poses.txt").is_file():
            pp = self.path / "poses.txt"
        elif (self.path.parent.parent / "poses" / f"{self.name}.txt").is_file():
            pp = self.path.parent.parent / "poses" / f"{self.name}.txt"
        self.poses_path = pp
        self.poses = None
        if pp is not None:
            self.poses = read_poses(pp)
            if len(self.poses) != n:
                raise ValueError(f"{pp}: {len(self.poses)} poses for {n} image pairs")

    def __len__(self) -> int:
        return len(self.left_paths)

    def read_image(self, path: Path) -> np.ndarray:
        """An image as 2-D uint8 grey (colour converted); raises ``ValueError`` naming the file."""
        import cv2

        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise ValueError(f"{path}: could not read the image")
        if img.dtype != np.uint8:
            raise ValueError(f"{path}: {img.dtype} pixels; 8-bit images are expected")
        if img.ndim == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGRA2GRAY if img.shape[2] == 4 else cv2.COLOR_BGR2GRAY)
        return img

    def __getitem__(self, i: int) -> KittiFrame:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"frame {i} out of range: the sequence has {n} frames")
        i %= n
        left = self.read_image(self.left_paths[i])
        right = self.read_image(self.right_paths[i])
        if left.shape != right.shape:
            raise ValueError(f"{self.right_paths[i]}: shape {right.shape} differs from the left image's {left.shape}")
        return KittiFrame(float(self.times_s[i]), i, left, right,
                          None if self.poses is None else self.poses[i])

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]
