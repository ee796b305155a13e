"""Hardware stereo camera through OpenCV: USB stereo cameras (one side-by-side stream) or two cameras,
rectified with an OpenCV stereo calibration.

:class:`OpenCVStereoCamera` is the :class:`drivers.camera.StereoCamera` backend for real rovers. It reads

* **one** ``cv2.VideoCapture`` delivering side-by-side frames (left half | right half: ELP, ZED,
  Arducam and most "synchronised" USB stereo cameras — both sensors are exposed together), or
* **two** captures (left, right): two USB cameras, not hardware-synchronised (see ``grab_skew_s``),

where a source is a device index (``0``), a device path (``/dev/video2``), a video file, a URL
(``rtsp://``, ``http://``) or a GStreamer pipeline (a string with ``!``; needs an OpenCV built with
GStreamer, which the pip wheels are not).

Calibration
    An OpenCV stereo calibration file (:class:`StereoCalibration`, the output of ``cv2.stereoCalibrate``
    written with ``cv2.FileStorage``; format in ``drivers/STEREO_CAMERA.md``) is turned once into
    rectification maps (``cv2.stereoRectify`` with ``CALIB_ZERO_DISPARITY`` + ``cv2.initUndistortRectifyMap``;
    the fisheye model through ``cv2.fisheye``). Every pair is converted to 8-bit grey and remapped; the
    frame carries the rectified ``K`` (``P1[:3, :3]``) and ``baseline_m = -P2[0, 3] / P2[0, 0]`` (``|T|``).
    Without a calibration file the input is taken as already rectified and ``K`` / ``baseline_m`` come from
    the rover profile's ``camera`` section (logged once at open).

Timing
    One grabber thread per source owns its capture. With ``latest_only`` (the default for live sources) it
    grabs every frame the camera delivers, so the driver's queue stays empty, and decodes only the frames a
    :meth:`~OpenCVStereoCamera.capture` asked for: ``capture()`` returns **the first pair the camera delivers
    after the call** (two cameras: each one's first frame after the call; one thread each, so a camera
    running slightly faster than the other never builds up a stale queue). USB cameras queue several
    frames (V4L2 typically 4); a naive ``read()`` at 2 Hz from a 30 fps camera returns a frame ~130 ms
    old, taken where the rover was, not where it is — VO and the height map would be built at the wrong
    pose. ``t_s`` is the injected clock's time when the grab returned, minus ``latency_s``
    (exposure-to-delivery latency of the camera, if measured). ``seq`` counts grabbed frames of the left
    (or side-by-side) source, so gaps are frames skipped on purpose; frames the *camera* dropped are
    estimated from the grab intervals (:attr:`~OpenCVStereoCamera.stats`). Without ``latest_only`` (video
    files, triggered cameras) a frame is grabbed only when asked: every frame of a file in order.

Failures (never a hang: waits are bounded in real time, whatever the injected clock does)
    * no pair within ``timeout_s`` (camera stopped delivering, ``grab()`` stuck) → ``DeviceTimeout`` naming
      the source;
    * ``fail_limit`` failed reads in a row or the device node gone → the link is lost: ``capture()`` raises
      ``LinkLost`` naming the source at once while the grabber re-opens it with backoff (``reconnect``);
      the end of a video file also raises ``LinkLost`` ("end of stream");
    * a frame of the wrong size mid-stream → ``MalformedReply``;
    * a source that cannot be opened → ``PortNotFound`` (no such device or file) or ``DriverError``;
      a camera mode that does not match the calibration, a bad calibration file → ``ValueError`` at
      :meth:`~OpenCVStereoCamera.open` / construction, naming the file, the key and the sizes.
"""
from __future__ import annotations

import logging
import math
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from .camera import StereoCamera, StereoFrame
from .clock import Clock, MonotonicClock
from .errors import DeviceClosed, DeviceTimeout, DriverError, LinkLost, MalformedReply, PortNotFound

__all__ = ["OpenCVStereoCamera", "StereoCalibration", "Rectification", "CameraStats", "load_stereo_calibration",
           "nominal_T_body_left"]

log = logging.getLogger(__name__)

#: Keys read from a calibration file, with the aliases OpenCV's samples and common tools write.
CALIBRATION_KEYS = {
    "K1": ("K1", "M1", "cameraMatrix1"),
    "D1": ("D1", "distCoeffs1"),
    "K2": ("K2", "M2", "cameraMatrix2"),
    "D2": ("D2", "distCoeffs2"),
    "R": ("R",),
    "T": ("T",),
}
_UNITS_M = {"m": 1.0, "cm": 0.01, "mm": 0.001}
_PINHOLE_NDIST = (4, 5, 8, 12, 14)
_JOIN_S = 2.0
_REOPEN_BACKOFF_S = (0.5, 4.0)      # first delay, ceiling (doubling)
_FAIL_PAUSE_S = 0.01                # between failed reads (no busy loop)


# ============================================================================ geometry helpers
def nominal_T_body_left(camera) -> np.ndarray:
    """Pose (4x4) of the left camera of a rover profile's ``camera`` section in the body frame.

    The convention of :class:`nav.config.Camera` (the same transform as ``sim.frames.T_body_cam(camera,
    "left")``, repeated here because drivers import neither nav nor sim): the left optical centre at body
    ``(mount_x_m, +baseline_m / 2, mast_height_m)``, OpenCV camera axes (x right, y down, z forward), the
    optical axis along body +x pitched down by ``tilt_deg``.

    Parameters
    ----------
    camera : nav.config.Camera or nav.config.RoverProfile
        Anything with ``tilt_deg``, ``baseline_m``, ``mount_x_m``, ``mast_height_m`` (or a ``camera``
        attribute holding them).
    """
    cam = _camera_section(camera, "camera")
    a = math.radians(float(cam.tilt_deg))
    ca, sa = math.cos(a), math.sin(a)
    T = np.eye(4)
    T[:3, :3] = [[0.0, -sa, ca], [-1.0, 0.0, 0.0], [0.0, -ca, -sa]]
    T[:3, 3] = [float(cam.mount_x_m), 0.5 * float(cam.baseline_m), float(cam.mast_height_m)]
    return T


def _camera_section(profile, what: str):
    cam = getattr(profile, "camera", profile)
    missing = [n for n in ("tilt_deg", "baseline_m", "mount_x_m", "mast_height_m") if not hasattr(cam, n)]
    if missing:
        raise TypeError(f"{what} must be a rover profile or its camera section (nav.config.Camera); "
                        f"{type(profile).__name__} has no {', '.join(missing)}")
    return cam


def _check_T(T, what: str) -> np.ndarray:
    a = np.array(T, dtype=np.float64)
    if a.shape != (4, 4) or not np.isfinite(a).all():
        raise ValueError(f"{what} must be a finite 4x4 transform, got shape {a.shape}")
    R = a[:3, :3]
    if not (np.allclose(R.T @ R, np.eye(3), atol=1e-6) and np.linalg.det(R) > 0) or not np.allclose(a[3], [0, 0, 0, 1]):
        raise ValueError(f"{what} must be a rigid transform (orthonormal rotation, last row 0 0 0 1)")
    return a


# ============================================================================ calibration
@dataclass(frozen=True, eq=False)
class Rectification:
    """Rectification of one camera mode: the maps and the rectified geometry.

    Attributes
    ----------
    size : (w, h)
        Image size per eye (input and output).
    K : (3, 3) float64
        Intrinsics of both rectified images (``P1[:3, :3]``).
    baseline_m : float
        Right optical centre along the left camera's +x (``-P2[0, 3] / P2[0, 0]``, metres).
    R1, R2, P1, P2, Q : arrays or None
        ``cv2.stereoRectify`` outputs (``None`` for input that is already rectified).
    maps : ((map1, map2), (map1, map2)) or None
        Fixed-point ``cv2.remap`` maps of the left and right image (``None``: no remap).
    """
    size: tuple[int, int]
    K: np.ndarray
    baseline_m: float
    R1: np.ndarray | None = None
    R2: np.ndarray | None = None
    P1: np.ndarray | None = None
    P2: np.ndarray | None = None
    Q: np.ndarray | None = None
    maps: tuple | None = None

    @classmethod
    def identity(cls, K, baseline_m: float, size) -> "Rectification":
        """Input that is already rectified: no remap, ``K`` and ``baseline_m`` as given."""
        K = np.array(K, dtype=np.float64)
        if K.shape != (3, 3) or not np.isfinite(K).all() or not (K[0, 0] > 0 and K[1, 1] > 0):
            raise ValueError(f"K must be a 3x3 camera matrix with fx, fy > 0, got {K.tolist()}")
        if not (math.isfinite(baseline_m) and baseline_m > 0):
            raise ValueError(f"baseline_m = {baseline_m!r}: must be > 0")
        return cls(size=(int(size[0]), int(size[1])), K=K, baseline_m=float(baseline_m))

    def apply(self, left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rectify a grey pair (uint8, ``(h, w)`` each); returns new contiguous arrays."""
        if self.maps is None:
            return np.ascontiguousarray(left), np.ascontiguousarray(right)
        (l1, l2), (r1, r2) = self.maps
        return (cv2.remap(left, l1, l2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT),
                cv2.remap(right, r1, r2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT))


@dataclass(frozen=True, eq=False)
class StereoCalibration:
    """An OpenCV stereo calibration (``cv2.stereoCalibrate`` / ``cv2.fisheye.stereoCalibrate`` output).

    Attributes
    ----------
    K1, D1, K2, D2 : arrays
        Camera matrices and distortion coefficients of the left (1) and right (2) camera.
    R : (3, 3) float64
        Rotation from the left camera to the right one (``x2 = R @ x1 + T``).
    T_m : (3,) float64
        Translation of that transform in metres (the file's ``units`` applied); ``T_m[0] < 0`` for a right
        camera to the right of the left one.
    image_size : (w, h)
        Image size per eye the calibration was made at.
    model : ``"pinhole"`` or ``"fisheye"``
    path : str
        The file(s) it came from (for messages).
    rms_px : float or None
        Reprojection error stored in the file, if any.
    """
    K1: np.ndarray
    D1: np.ndarray
    K2: np.ndarray
    D2: np.ndarray
    R: np.ndarray
    T_m: np.ndarray
    image_size: tuple[int, int]
    model: str = "pinhole"
    path: str = "<memory>"
    rms_px: float | None = None

    @classmethod
    def load(cls, path) -> "StereoCalibration":
        """Read a calibration file (or a list of files whose keys are merged, e.g. OpenCV's sample pair
        ``intrinsics.yml`` + ``extrinsics.yml``); see :func:`load_stereo_calibration`."""
        return load_stereo_calibration(path)

    def rectify(self, alpha: float = 0.0) -> Rectification:
        """Rectification maps and rectified geometry (computed once per camera).

        Parameters
        ----------
        alpha : float in [0, 1]
            ``0``: the rectified images hold only valid pixels (no black borders, which would give VO and
            stereo false edges); ``1``: every source pixel kept. The fisheye model's ``balance``.
        """
        if not (isinstance(alpha, (int, float)) and 0.0 <= alpha <= 1.0):
            raise ValueError(f"alpha = {alpha!r}: must be in [0, 1]")
        w, h = self.image_size
        T = self.T_m.reshape(3, 1)
        if self.model == "fisheye":
            R1, R2, P1, P2, Q = cv2.fisheye.stereoRectify(
                self.K1, self.D1, self.K2, self.D2, (w, h), self.R, T, cv2.CALIB_ZERO_DISPARITY,
                newImageSize=(w, h), balance=float(alpha), fov_scale=1.0)
            init = cv2.fisheye.initUndistortRectifyMap
        else:
            R1, R2, P1, P2, Q, _, _ = cv2.stereoRectify(
                self.K1, self.D1, self.K2, self.D2, (w, h), self.R, T, flags=cv2.CALIB_ZERO_DISPARITY,
                alpha=float(alpha), newImageSize=(w, h))
            init = cv2.initUndistortRectifyMap
        if abs(P2[1, 3]) > 1e-9 * max(1.0, abs(P2[0, 3])) or abs(P2[0, 3]) == 0.0:
            raise ValueError(f"{self.path}: T = {self.T_m.tolist()} m makes a vertical stereo pair "
                             "(cameras one above the other); only side-by-side rigs are supported")
        baseline = -P2[0, 3] / P2[0, 0]
        if not baseline > 0:
            raise ValueError(f"{self.path}: T[0] = {self.T_m[0]:+.4f} m > 0 puts camera 2 to the LEFT of camera 1; "
                             "calibrate with the left camera as camera 1 (or swap the sources)")
        maps = tuple(init(K, D, Rr, P, (w, h), cv2.CV_16SC2)
                     for K, D, Rr, P in ((self.K1, self.D1, R1, P1), (self.K2, self.D2, R2, P2)))
        K = np.array(P1[:3, :3], dtype=np.float64)
        return Rectification(size=(w, h), K=K, baseline_m=float(baseline), R1=R1, R2=R2, P1=P1, P2=P2, Q=Q, maps=maps)


def load_stereo_calibration(path) -> StereoCalibration:
    """Read an OpenCV stereo calibration written with ``cv2.FileStorage`` (YAML, XML or JSON).

    Keys: ``K1`` ``D1`` ``K2`` ``D2`` ``R`` ``T`` (aliases ``M1``/``cameraMatrix1``, ``distCoeffs1``, ...),
    the image size per eye as ``image_size: [w, h]`` (or ``image_width`` + ``image_height``); optional
    ``units`` (``m`` default, ``cm``, ``mm``: the unit of ``T``, i.e. of the board's square size),
    ``model`` (``pinhole`` default, ``fisheye``), ``rms``. ``R`` may be a 3x3 matrix or a Rodrigues vector.

    Parameters
    ----------
    path : path or sequence of paths
        Several files are merged (the first holding a key wins).

    Raises
    ------
    FileNotFoundError
        A file does not exist.
    ValueError
        Unreadable file, a missing key, a matrix of the wrong shape or value; names the file and the key.
    """
    paths = [os.fspath(p) for p in path] if isinstance(path, (list, tuple)) else [os.fspath(path)]
    if not paths:
        raise ValueError("path: no calibration file given")
    where = " + ".join(paths)
    values: dict[str, tuple[str, object]] = {}       # key -> (file, ndarray | str | None)
    for p in paths:
        if not os.path.isfile(p):
            raise FileNotFoundError(f"calibration file {p}: no such file")
        try:
            fs = cv2.FileStorage(p, cv2.FILE_STORAGE_READ)
            ok = fs.isOpened()
        except Exception as e:     # cv2.error, or SystemError wrapping it on a parse error
            raise ValueError(f"calibration file {p}: not an OpenCV FileStorage file (YAML/XML/JSON): "
                             f"{_cv_message(e)}") from None
        if not ok:
            raise ValueError(f"calibration file {p}: OpenCV could not open it")
        try:                       # nodes are only valid while their FileStorage lives: convert now
            for k in fs.root().keys():
                nd = fs.getNode(k)
                if k not in values and not nd.empty():
                    values[k] = (p, nd.string() if nd.isString() else _node_array(nd))
        finally:
            fs.release()

    def node(names, *, required=True, what=""):
        for n in names:
            if n in values:
                return n, values[n][0], values[n][1]
        if required:
            alias = f" (also accepted: {', '.join(names[1:])})" if len(names) > 1 else ""
            raise ValueError(f"calibration file {where}: key {names[0]!r} is missing{alias}: {what}")
        return None, None, None

    def matrix(key, what, shapes):
        k, p, a = node(CALIBRATION_KEYS[key], what=what)
        if not isinstance(a, np.ndarray):
            raise ValueError(f"calibration file {p}: key {k!r} is not a matrix or a list of numbers")
        if not np.isfinite(a).all():
            raise ValueError(f"calibration file {p}: key {k!r} has non-finite values")
        for shp in shapes:
            if shp == "vec" and (a.ndim == 1 or 1 in a.shape[:2]):
                return k, p, a.reshape(-1)
            if a.shape == shp or (shp == (3, 1) and a.size == 3):
                return k, p, a.reshape(shp)
        raise ValueError(f"calibration file {p}: key {k!r} has shape {a.shape}, expected {what}")

    def text(key, allowed, default):
        k, p, v = node((key,), required=False)
        if v is None:
            return default
        t = v.strip().lower() if isinstance(v, str) else ""
        if t not in allowed:
            raise ValueError(f"calibration file {p}: {key} = {v if isinstance(v, str) else v.tolist()!r}: must be "
                             f"one of {', '.join(allowed)}")
        return t

    model = text("model", ("pinhole", "fisheye"), "pinhole")
    units = text("units", tuple(_UNITS_M), "m")

    Ks, Ds = {}, {}
    for i in ("1", "2"):
        k, p, K = matrix("K" + i, f"the 3x3 camera matrix of camera {i} from cv2.stereoCalibrate", [(3, 3)])
        if not (K[0, 0] > 0 and K[1, 1] > 0 and np.allclose(K[2], [0, 0, 1]) and K[1, 0] == 0):
            raise ValueError(f"calibration file {p}: key {k!r} = {K.tolist()} is not a camera matrix "
                             "(fx, fy > 0, last row 0 0 1)")
        Ks[i] = K
        k, p, D = matrix("D" + i, f"the distortion coefficients of camera {i}", ["vec"])
        ok = D.size == 4 if model == "fisheye" else D.size in _PINHOLE_NDIST
        if not ok:
            rule = "4 (fisheye k1..k4)" if model == "fisheye" else "4, 5, 8, 12 or 14"
            raise ValueError(f"calibration file {p}: key {k!r} has {D.size} coefficients, expected {rule}")
        Ds[i] = D.reshape(-1, 1) if model == "fisheye" else D.reshape(1, -1)
    k, p, R = matrix("R", "a 3x3 rotation (or a Rodrigues 3-vector) from camera 1 to camera 2", [(3, 3), (3, 1)])
    if R.shape == (3, 1):
        R = cv2.Rodrigues(R)[0]
    if not (np.allclose(R.T @ R, np.eye(3), atol=1e-4) and np.linalg.det(R) > 0):
        raise ValueError(f"calibration file {p}: key {k!r} is not a rotation matrix (R^T R != I or det <= 0)")
    k, p, T = matrix("T", "the 3-vector from camera 1 to camera 2 (x2 = R x1 + T)", [(3, 1)])
    T_m = T.reshape(3) * _UNITS_M[units]
    b = float(np.linalg.norm(T_m))
    if b > 2.0 or b == 0.0:
        hint = (" — it looks like T is in millimetres: add `units: mm` to the file" if b > 2.0 and units == "m"
                else "")
        raise ValueError(f"calibration file {p}: |T| = {b:g} m: a stereo baseline must be in (0, 2] m{hint}")

    size = _image_size(node, where)
    _, _, rms = node(("rms", "RMS", "reprojection_error"), required=False)
    rms = float(rms.reshape(-1)[0]) if isinstance(rms, np.ndarray) and rms.size == 1 else None
    return StereoCalibration(K1=Ks["1"], D1=Ds["1"], K2=Ks["2"], D2=Ds["2"], R=R, T_m=T_m, image_size=size,
                             model=model, path=where, rms_px=rms)


def _image_size(node, where) -> tuple[int, int]:
    k, p, a = node(("image_size", "imageSize"), required=False)
    if k is not None:
        if not isinstance(a, np.ndarray) or a.size != 2:
            raise ValueError(f"calibration file {p}: key {k!r} must be [width, height]")
        w, h = (float(v) for v in a.reshape(-1))
    else:
        _, _, aw = node(("image_width",), required=False)
        _, _, ah = node(("image_height",), required=False)
        if not (isinstance(aw, np.ndarray) and aw.size == 1 and isinstance(ah, np.ndarray) and ah.size == 1):
            raise ValueError(f"calibration file {where}: key 'image_size' is missing (also accepted: imageSize, "
                             "image_width + image_height): the size per eye, [width, height] in pixels, the "
                             "calibration images had")
        w, h = float(aw[0]), float(ah[0])
    if not (w == int(w) and h == int(h) and 16 <= w <= 8192 and 16 <= h <= 8192):
        raise ValueError(f"calibration file {where}: image size {w:g} x {h:g}: must be whole pixels in [16, 8192]")
    return int(w), int(h)


def _node_array(nd) -> np.ndarray | None:
    if nd.isSeq():
        vals = []
        for i in range(nd.size()):
            it = nd.at(i)
            if not (it.isReal() or it.isInt()):
                return None
            vals.append(it.real())
        return np.array(vals, dtype=np.float64)
    if nd.isMap():
        m = nd.mat()
        return None if m is None else np.array(m, dtype=np.float64)
    if nd.isReal() or nd.isInt():
        return np.array([nd.real()], dtype=np.float64)
    return None


def _cv_message(e: BaseException) -> str:
    while e.__cause__ is not None and isinstance(e, SystemError):
        e = e.__cause__
    msg = str(e).strip().splitlines()
    return msg[-1] if msg else type(e).__name__


# ============================================================================ sources
@dataclass(frozen=True)
class _Source:
    kind: str                 # "device" | "file" | "url" | "gstreamer"
    arg: object               # what cv2.VideoCapture gets
    api: int
    name: str
    dev_path: str | None = None


_DEV_RE = re.compile(r"^/dev/video(\d+)$")


def _parse_source(source, api_preference, what: str) -> _Source:
    if isinstance(source, bool):
        raise TypeError(f"{what} = {source!r}: must be a device index, a /dev/videoN path, a file, URL or pipeline")
    linux = sys.platform.startswith("linux")
    if isinstance(source, (int, np.integer)) or (isinstance(source, str) and source.strip().isdigit()):
        idx = int(source)
        if idx < 0:
            raise ValueError(f"{what} = {source!r}: a device index must be >= 0")
        dev = f"/dev/video{idx}" if linux else None
        api = api_preference if api_preference is not None else (cv2.CAP_V4L2 if linux else cv2.CAP_ANY)
        return _Source("device", idx, api, dev or f"camera {idx}", dev)
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    if not isinstance(source, str) or not source.strip():
        raise TypeError(f"{what} = {source!r}: must be a device index, a /dev/videoN path, a file, URL or pipeline")
    s = source.strip()
    if s.startswith("/dev/"):
        api = api_preference if api_preference is not None else (cv2.CAP_V4L2 if linux else cv2.CAP_ANY)
        return _Source("device", s, api, s, s)
    if "!" in s:
        api = api_preference if api_preference is not None else cv2.CAP_GSTREAMER
        return _Source("gstreamer", s, api, f"gstreamer:{s[:40]}")
    if "://" in s:
        return _Source("url", s, api_preference if api_preference is not None else cv2.CAP_ANY, s)
    return _Source("file", s, api_preference if api_preference is not None else cv2.CAP_ANY, s)


@dataclass
class CameraStats:
    """Counters of an :class:`OpenCVStereoCamera` (since it was constructed).

    Of the left (or side-by-side) source: ``grabbed`` frames grabbed, ``skipped`` grabbed but not asked for
    (newest-only), ``fps`` measured grab rate (exponential average). Over all sources: ``lost`` frames the
    camera dropped (estimated from grab intervals longer than 1.5 nominal frame periods), ``read_failures``
    failed grabs/decodes, ``link_losses`` / ``reconnects``, ``last_error``. Of the pairs: ``delivered`` by
    ``capture()``, ``bad_frames`` of the wrong size or format, ``timeouts`` captures that timed out,
    ``max_skew_s`` the largest grab-time difference between two sources.
    """
    grabbed: int = 0
    delivered: int = 0
    skipped: int = 0
    lost: int = 0
    read_failures: int = 0
    bad_frames: int = 0
    timeouts: int = 0
    link_losses: int = 0
    reconnects: int = 0
    fps: float = 0.0
    max_skew_s: float = 0.0
    last_error: str = ""

    def summary(self) -> dict:
        return dict(self.__dict__)


# ============================================================================ the camera
class OpenCVStereoCamera(StereoCamera):
    """A stereo camera read with OpenCV (see the module docstring for behaviour and failures).

    Parameters
    ----------
    source : int or str
        Side-by-side stream (left | right), or the left camera when ``right_source`` is given: a device
        index, ``/dev/videoN``, a video file, a URL or a GStreamer pipeline.
    right_source : int or str, optional
        The right camera (two-source mode).
    calibration : path, sequence of paths or StereoCalibration, optional
        OpenCV stereo calibration; without it the input must already be rectified and ``K`` /
        ``baseline_m`` come from ``profile.camera``.
    profile : nav.config.RoverProfile or nav.config.Camera, optional
        Camera mount (``T_body_left``, unless given) and, without a calibration, the rectified geometry.
    T_body_left : (4, 4) array, optional
        Calibrated mount of the left camera on the body (overrides the profile's nominal mount).
    fps : float, optional
        Frame rate to request (device sources); the camera's default otherwise.
    fourcc : str or None
        Pixel format to request from device sources (default ``"MJPG"``: a USB 2 camera delivers
        2560x720 at 30 fps only compressed); ``None`` leaves the camera's.
    swap : bool
        Side-by-side stream with the right image in the left half.
    alpha : float in [0, 1]
        Rectification crop (see :meth:`StereoCalibration.rectify`).
    clock : drivers.clock.Clock
        Time base of ``StereoFrame.t_s`` (default monotonic; use the rover driver's clock so frames and
        telemetry share it).
    timeout_s : float
        ``capture()`` raises ``DeviceTimeout`` when no pair arrives within this (real) time.
    open_timeout_s : float
        Bound on opening the sources and receiving the first pair.
    latest_only : bool, optional
        Grab continuously and deliver the newest pair (default for devices, URLs and pipelines) or grab on
        request, every frame in order (default for video files).
    latency_s : float
        Subtracted from the grab time to give ``t_s`` (exposure-to-delivery latency, if measured).
    fail_limit : int
        Consecutive failed reads that mean the device is gone.
    reconnect : bool
        Re-open a lost live source in the background (backoff 0.5 s doubling to 4 s).
    api_preference : int, optional
        ``cv2.CAP_*`` backend (default: V4L2 for Linux devices, GStreamer for pipelines, any otherwise).
    capture_factory : callable, optional
        ``factory(arg, api_preference) -> VideoCapture-like`` (default ``cv2.VideoCapture``; tests inject
        fakes). Called and used only from the grabber threads.
    name : str, optional
    """

    def __init__(self, source, right_source=None, *, calibration=None, profile=None, T_body_left=None,
                 fps: float | None = None, fourcc: str | None = "MJPG", swap: bool = False, alpha: float = 0.0,
                 clock: Clock | None = None, timeout_s: float = 2.0, open_timeout_s: float = 10.0,
                 latest_only: bool | None = None, latency_s: float = 0.0, fail_limit: int = 3,
                 reconnect: bool = True, api_preference: int | None = None,
                 capture_factory: Callable | None = None, name: str | None = None):
        self.sources = [_parse_source(source, api_preference, "source")]
        if right_source is not None:
            self.sources.append(_parse_source(right_source, api_preference, "right_source"))
            if swap:
                raise ValueError("swap=True applies to a side-by-side stream, not to two sources "
                                 "(give them in left, right order)")
        super().__init__(name=name or (self.sources[0].name if len(self.sources) == 1
                                       else f"{self.sources[0].name}+{self.sources[1].name}"))
        self.side_by_side = len(self.sources) == 1
        self.swap = bool(swap)
        for nm, v, lo in (("timeout_s", timeout_s, 0.0), ("open_timeout_s", open_timeout_s, 0.0)):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > lo):
                raise ValueError(f"{nm} = {v!r}: must be > {lo:g}")
        if not (isinstance(latency_s, (int, float)) and 0.0 <= latency_s < 5.0):
            raise ValueError(f"latency_s = {latency_s!r}: must be in [0, 5)")
        if fps is not None and not (isinstance(fps, (int, float)) and 0 < fps <= 1000):
            raise ValueError(f"fps = {fps!r}: must be in (0, 1000]")
        if fourcc is not None and not (isinstance(fourcc, str) and len(fourcc) == 4):
            raise ValueError(f"fourcc = {fourcc!r}: must be None or a 4-character code such as 'MJPG'")
        if not (isinstance(fail_limit, int) and fail_limit >= 1):
            raise ValueError(f"fail_limit = {fail_limit!r}: must be an int >= 1")
        self.timeout_s = float(timeout_s)
        self.open_timeout_s = float(open_timeout_s)
        self.latency_s = float(latency_s)
        self.fps = None if fps is None else float(fps)
        self.fourcc = fourcc
        self.fail_limit = fail_limit
        self.reconnect = bool(reconnect)
        self.clock = clock if clock is not None else MonotonicClock()
        if latest_only is None:
            latest_only = not all(s.kind == "file" for s in self.sources)
        self.latest_only = bool(latest_only)
        self._factory = capture_factory if capture_factory is not None else cv2.VideoCapture
        self._default_factory = capture_factory is None

        # geometry
        cam = _camera_section(profile, "profile") if profile is not None else None
        if T_body_left is not None:
            self.T_body_left = _check_T(T_body_left, "T_body_left")
        elif cam is not None:
            self.T_body_left = nominal_T_body_left(cam)
        else:
            raise ValueError(f"{self.name}: give profile= (the rover profile, for the camera mount) or T_body_left=")
        if calibration is not None:
            self.calibration = (calibration if isinstance(calibration, StereoCalibration)
                                else load_stereo_calibration(calibration))
            self.rectification = self.calibration.rectify(alpha)
            r = self.rectification
            self._geometry_note = (f"calibration {self.calibration.path} ({self.calibration.model}), rectified "
                                   f"fx={r.K[0, 0]:.1f} px, baseline {r.baseline_m:.4f} m")
            if cam is not None and abs(self.rectification.baseline_m - cam.baseline_m) > 0.2 * cam.baseline_m:
                log.warning("%s: calibrated baseline %.4f m differs from the profile's camera.baseline_m %.4f m "
                            "by more than 20 %%: is this the rover's camera, and T in the file's units?",
                            self.name, self.rectification.baseline_m, cam.baseline_m)
        else:
            if cam is None or not all(hasattr(cam, n) for n in ("K", "width_px", "height_px")):
                raise ValueError(f"{self.name}: without a calibration file the rectified geometry comes from the "
                                 "rover profile's camera section: give profile= or calibration=")
            self.calibration = None
            self.rectification = Rectification.identity(cam.K, float(cam.baseline_m),
                                                        (int(cam.width_px), int(cam.height_px)))
            self._geometry_note = (f"no calibration file: input taken as already rectified, K and baseline "
                                   f"({float(cam.baseline_m):.4f} m) from the rover profile's camera section")
        self.image_size = self.rectification.size      # per eye (w, h)

        self.stats = CameraStats()
        self._cv = threading.Condition()     # guards the request counter, grabber results and states, stats
        self._req = 0                        # capture requests issued
        self._grabbers: list[_Grabber] = []
        self._closing = False
        self._warned_skew = False

    # ------------------------------------------------------------------ lifecycle
    def _open(self) -> None:
        with self._cv:
            self._closing = False
            self._grabbers = [_Grabber(self, src, i) for i, src in enumerate(self.sources)]
        for g in self._grabbers:
            g.thread.start()
        deadline = time.monotonic() + self.open_timeout_s
        for g in self._grabbers:
            if not g.ready.wait(max(0.0, deadline - time.monotonic())):
                self._shutdown()
                raise DeviceTimeout(f"{g.src.name}: opening it took longer than open_timeout_s = "
                                    f"{self.open_timeout_s:g} s")
        for g in self._grabbers:
            if g.error is not None:
                err = g.error
                self._shutdown()
                raise err
        log.info("%s: %s", self.name, self._geometry_note)
        if self.latest_only:     # frames must flow before a traverse relies on them
            try:
                self._wait_frame(self.open_timeout_s, first=True)
            except BaseException:
                self._shutdown()
                raise

    def _close(self) -> None:
        self._shutdown()

    def _shutdown(self) -> None:
        with self._cv:
            self._closing = True
            grabbers = list(self._grabbers)
            for g in grabbers:
                g.stop.set()
            self._cv.notify_all()
        deadline = time.monotonic() + _JOIN_S
        for g in grabbers:
            if g.thread is not threading.current_thread() and g.thread.ident is not None:
                g.thread.join(max(0.0, deadline - time.monotonic()))
                if g.thread.is_alive():
                    log.warning("%s: the grabber thread is stuck in a read; it releases the camera when the read "
                                "returns", g.src.name)

    @property
    def link_up(self) -> bool:
        """False while a source is lost (being re-opened) or ended, and when not open."""
        with self._cv:
            return bool(self._grabbers) and not self._closing and all(g.state == "running" for g in self._grabbers)

    @property
    def readback(self) -> list[dict]:
        """What each source reported after configuration: ``source``, ``width``, ``height``, ``fps``, ``fourcc``."""
        return [dict(g.readback) for g in self._grabbers]

    # ------------------------------------------------------------------ capture
    def _capture(self) -> StereoFrame:
        return self._wait_frame(self.timeout_s)

    def _wait_frame(self, timeout_s: float, first: bool = False) -> StereoFrame:
        deadline = time.monotonic() + timeout_s
        with self._cv:
            self._raise_if_down()
            self._req += 1
            req = self._req
            self._cv.notify_all()
            while True:
                self._raise_if_down()
                waiting = [g for g in self._grabbers if g.served < req]
                if not waiting:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    self.stats.timeouts += 1
                    g = waiting[0]
                    age = time.monotonic() - g.last_mono
                    last = "no pair grabbed yet" if not math.isfinite(age) else f"last pair grabbed {age:.2f} s ago"
                    what = "first frame pair" if first else "frame pair"
                    raise DeviceTimeout(f"{g.src.name}: no {what} within {timeout_s:g} s ({last}; {g.fails} failed "
                                        "reads in a row): is the camera delivering?")
                self._cv.wait(left)
            got = [g.result for g in self._grabbers]
        frame = self._assemble(got)
        if not first:
            with self._cv:
                self.stats.delivered += 1
        return frame

    def _raise_if_down(self) -> None:
        if self._closing:
            raise DeviceClosed(f"{self.name}: camera is closed")
        for g in self._grabbers:
            if g.state in ("lost", "ended"):
                raise LinkLost(f"{g.src.name}: {g.reason}")

    def _assemble(self, got) -> StereoFrame:
        """Check, split and rectify what the grabbers delivered for one request."""
        for r in got:
            if isinstance(r, tuple):        # (exception class, message) from a grabber
                with self._cv:
                    self.stats.bad_frames += 1
                raise r[0](r[1])
        w, h = self.image_size
        imgs = [r.img for r in got]
        if self.side_by_side:
            g = imgs[0]
            if g.shape != (h, 2 * w):
                with self._cv:
                    self.stats.bad_frames += 1
                raise MalformedReply(f"{self.name}: side-by-side frame is {g.shape[1]}x{g.shape[0]}, expected "
                                     f"{2 * w}x{h} (two {w}x{h} images)")
            left, right = g[:, :w], g[:, w:]
            if self.swap:
                left, right = right, left
        else:
            for g, src in zip(imgs, self.sources):
                if g.shape != (h, w):
                    with self._cv:
                        self.stats.bad_frames += 1
                    raise MalformedReply(f"{src.name}: frame is {g.shape[1]}x{g.shape[0]}, expected {w}x{h}")
            left, right = imgs
        left, right = self.rectification.apply(left, right)
        ref = got[0]
        extra = {"source": self.name, "skipped": ref.skipped}
        if not self.side_by_side:
            skew = got[1].mono - ref.mono
            extra["grab_skew_s"] = skew
            with self._cv:
                self.stats.max_skew_s = max(self.stats.max_skew_s, abs(skew))
            fps = ref.nominal_fps
            if not self._warned_skew and fps > 0 and abs(skew) > 0.5 / fps:
                self._warned_skew = True
                log.warning("%s: the two cameras' frames were grabbed %.0f ms apart (> half a frame period): "
                            "unsynchronised cameras give biased stereo while moving", self.name, 1e3 * abs(skew))
        r = self.rectification
        return StereoFrame(t_s=ref.t_s, seq=ref.seq, left=left, right=right, K=r.K.copy(), baseline_m=r.baseline_m,
                           T_body_left=self.T_body_left.copy(), extra=extra)

    # ------------------------------------------------------------------ opening (grabber threads)
    def _open_source(self, src: _Source):
        """Open and configure one source; ``(capture, readback)``. Raises on failure."""
        cap = self._open_one(src)
        try:
            return cap, self._configure(cap, src)
        except BaseException:
            _release([cap])
            raise

    def _open_one(self, src: _Source):
        if src.kind == "file" and not os.path.isfile(src.arg):
            raise PortNotFound(f"{src.name}: no such video file")
        if src.kind == "device" and isinstance(src.arg, str) and not os.path.exists(src.arg):
            raise PortNotFound(f"{src.name}: no such video device (unplugged? `ls /dev/video*` lists the cameras)")
        if src.kind == "gstreamer" and self._default_factory and not _has_backend(cv2.CAP_GSTREAMER):
            raise DriverError(f"{src.name}: this OpenCV build has no GStreamer backend (the pip wheels have none); "
                              "use a device index or path, or an OpenCV built with GStreamer")
        try:
            cap = self._factory(src.arg, src.api)
        except cv2.error as e:
            raise DriverError(f"{src.name}: could not open: {_cv_message(e)}") from None
        if cap is None or not cap.isOpened():
            _release([cap])
            hint = {"device": "not present, held by another program, or not a capture device",
                    "file": "not a video OpenCV can decode",
                    "url": "unreachable or an unsupported stream",
                    "gstreamer": "the pipeline failed to start (it must end in appsink)"}[src.kind]
            raise DriverError(f"{src.name}: OpenCV could not open it ({hint})")
        return cap

    def _configure(self, cap, src: _Source) -> dict:
        w, h = self.image_size
        want_w = 2 * w if self.side_by_side else w
        if src.kind == "device":
            if self.fourcc is not None:
                cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*self.fourcc))
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, want_w)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, h)
            if self.fps is not None:
                cap.set(cv2.CAP_PROP_FPS, self.fps)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)      # best effort; the grabber thread is the real guarantee
        rb = {"source": src.name, "width": int(round(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)),
              "height": int(round(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)),
              "fps": float(cap.get(cv2.CAP_PROP_FPS) or 0.0), "fourcc": _fourcc_str(cap.get(cv2.CAP_PROP_FOURCC))}
        if src.kind == "device":
            if rb["width"] and (rb["width"], rb["height"]) != (want_w, h):
                log.warning("%s: requested %dx%d, the camera set %dx%d", src.name, want_w, h, rb["width"], rb["height"])
            if self.fps is not None and rb["fps"] > 0 and abs(rb["fps"] - self.fps) > 0.5:
                log.warning("%s: requested %g fps, the camera reports %g fps", src.name, self.fps, rb["fps"])
            if self.fourcc is not None and rb["fourcc"] and rb["fourcc"] != self.fourcc:
                log.warning("%s: requested pixel format %s, the camera uses %s", src.name, self.fourcc, rb["fourcc"])
        if rb["width"] and rb["height"] and (rb["width"], rb["height"]) != (want_w, h):
            basis = (f"the calibration {self.calibration.path} is for {w}x{h} per eye" if self.calibration is not None
                     else f"the rover profile's camera is {w}x{h}")
            layout = f" side-by-side ({want_w}x{h})" if self.side_by_side else ""
            raise ValueError(f"{src.name}: the source delivers {rb['width']}x{rb['height']} but {basis}{layout}: "
                             "choose a mode the camera supports (`v4l2-ctl --list-formats-ext`) and calibrate at it")
        log.info("%s: %dx%d at %g fps, format %s (%s)", src.name, rb["width"], rb["height"], rb["fps"],
                 rb["fourcc"] or "?", "newest frame only" if self.latest_only else "every frame, on request")
        return rb


@dataclass(frozen=True)
class _Image:
    """A grabber's answer to a capture request."""
    img: np.ndarray           # grey, full frame of the source
    t_s: float                # camera clock at grab, minus latency
    mono: float               # monotonic time at grab (skew between sources)
    seq: int                  # grab counter of the source
    skipped: int              # grabbed and discarded since the previous answer
    nominal_fps: float


class _Grabber:
    """One source and the thread that owns its capture: grabs, answers capture requests, re-opens."""

    def __init__(self, cam: OpenCVStereoCamera, src: _Source, index: int):
        self.cam, self.src, self.index = cam, src, index
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.state = "opening"           # opening | running | lost | ended
        self.reason = self.lost_reason = ""
        self.served = cam._req           # requests before this open are not ours
        self.result = None               # _Image or (exception class, message)
        self.seq = 0
        self.last_mono = -math.inf
        self.fails = 0
        self.skipped = 0
        self.readback: dict = {}
        self.nominal_fps = 0.0
        self.dev_existed = src.dev_path is not None and os.path.exists(src.dev_path)
        self.thread = threading.Thread(target=self.run, name=f"stereo-grab {src.name}", daemon=True)

    # ------------------------------------------------------------------ thread body
    def run(self) -> None:
        cam, cv, stop = self.cam, self.cam._cv, self.stop
        cap = None
        try:
            try:
                cap, self.readback = cam._open_source(self.src)
            except BaseException as e:       # reported by open()
                self.error = e
                return
            finally:
                self.ready.set()
            self.nominal_fps = self.readback.get("fps", 0.0)
            with cv:
                if self.state == "opening":
                    self.state = "running"
            backoff = _REOPEN_BACKOFF_S[0]
            while not stop.is_set():
                if self.state in ("lost", "ended"):
                    _release([cap])
                    cap = None
                    if self.state == "ended" or not cam.reconnect:
                        stop.wait(0.1)
                        continue
                    if stop.wait(backoff):
                        break
                    try:
                        cap, self.readback = cam._open_source(self.src)
                    except Exception as e:
                        backoff = min(2.0 * backoff, _REOPEN_BACKOFF_S[1])
                        log.debug("%s: re-open failed: %s", self.src.name, e)
                        with cv:
                            self.reason = f"{self.lost_reason} (last re-open attempt: {e})"
                        continue
                    backoff = _REOPEN_BACKOFF_S[0]
                    with cv:
                        self.fails = 0
                        self.state = "running"
                        cam.stats.reconnects += 1
                        cv.notify_all()
                    log.warning("%s: camera re-opened; frames resume", self.src.name)
                    continue
                if not cam.latest_only:          # grab only when asked
                    with cv:
                        while cam._req <= self.served and not stop.is_set():
                            cv.wait(0.1)
                    if stop.is_set():
                        break
                ok, why, t_s, mono = self._grab(cap)
                if not ok:
                    self._failed(why)
                    continue
                with cv:
                    self.fails = 0
                    req = cam._req
                    if req <= self.served:       # nobody asked: keep the queue empty, decode nothing
                        if self.index == 0:
                            cam.stats.skipped += 1
                        self.skipped += 1
                        continue
                try:
                    res = self._retrieve(cap, t_s, mono)
                except _ReadFailure as e:
                    self._failed(str(e))
                    continue
                with cv:
                    if stop.is_set():
                        break
                    self.result = res
                    self.served = req
                    cv.notify_all()
        except Exception as e:     # a bug or an unexpected backend error: never leave callers waiting
            log.exception("%s: grabber thread failed", self.src.name)
            self._set_down("lost", f"grabber thread failed: {type(e).__name__}: {e}")
        finally:
            _release([cap])

    def _failed(self, why: str) -> None:
        cam = self.cam
        with cam._cv:
            self.fails += 1
            cam.stats.read_failures += 1
            cam.stats.last_error = f"{self.src.name}: {why}"
            fails = self.fails
        gone = self._vanished()
        if self.src.kind == "file":
            self._set_down("ended", f"end of stream after {self.seq} frames ({why})")
        elif fails >= cam.fail_limit or gone:
            with cam._cv:
                cam.stats.link_losses += 1
            self._set_down("lost", (f"device {gone} vanished (unplugged or reset)" if gone else
                                    f"{fails} failed reads in a row ({why})")
                           + ("; re-opening it" if cam.reconnect else ""))
        else:
            self.stop.wait(_FAIL_PAUSE_S)

    def _set_down(self, state: str, reason: str) -> None:
        with self.cam._cv:
            if self.stop.is_set():
                return
            self.state = state
            self.reason = self.lost_reason = reason
            self.cam._cv.notify_all()
        (log.info if state == "ended" else log.error)("%s: %s", self.src.name, reason)

    def _vanished(self) -> str | None:
        p = self.src.dev_path
        return p if (p is not None and self.dev_existed and not os.path.exists(p)) else None

    def _grab(self, cap):
        """``(ok, why, t_s, mono)``; decoding waits for :meth:`_retrieve`."""
        try:
            ok = bool(cap.grab())
        except cv2.error as e:
            return False, f"grab() raised: {_cv_message(e)}", 0.0, 0.0
        if not ok:
            return False, "grab() returned False", 0.0, 0.0
        mono = time.monotonic()
        t_s = float(self.cam.clock.now()) - self.cam.latency_s
        st = self.cam.stats
        with self.cam._cv:
            self.seq += 1
            dt = mono - self.last_mono
            self.last_mono = mono
            if self.index == 0:
                st.grabbed += 1
                if math.isfinite(dt) and dt > 0:
                    inst = 1.0 / dt
                    st.fps = inst if st.fps == 0.0 else 0.9 * st.fps + 0.1 * inst
            if (self.cam.latest_only and self.nominal_fps > 0 and math.isfinite(dt)
                    and dt > 1.5 / self.nominal_fps):
                st.lost += max(1, int(round(dt * self.nominal_fps)) - 1)
        return True, "", t_s, mono

    def _retrieve(self, cap, t_s: float, mono: float):
        try:
            ok, img = cap.retrieve()
        except cv2.error as e:
            raise _ReadFailure(f"retrieve() raised: {_cv_message(e)}") from None
        if not ok or img is None:
            raise _ReadFailure("retrieve() returned no image")
        g = _to_grey(img)
        if g is None:
            return (MalformedReply, f"{self.src.name}: frame of dtype {img.dtype} and shape {img.shape}: expected "
                                    "8-bit grey, BGR or BGRA (or 16-bit grey)")
        res = _Image(img=g, t_s=t_s, mono=mono, seq=self.seq, skipped=self.skipped, nominal_fps=self.nominal_fps)
        self.skipped = 0
        return res


class _ReadFailure(Exception):
    """A grabbed frame could not be decoded (counted as a failed read)."""


def _to_grey(img) -> np.ndarray | None:
    if not isinstance(img, np.ndarray):
        return None
    if img.dtype == np.uint8:
        if img.ndim == 2:
            return img
        if img.ndim == 3 and img.shape[2] == 1:
            return img[:, :, 0]
        if img.ndim == 3 and img.shape[2] == 3:
            return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        if img.ndim == 3 and img.shape[2] == 4:
            return cv2.cvtColor(img, cv2.COLOR_BGRA2GRAY)
    if img.dtype == np.uint16 and img.ndim == 2:
        return (img >> 8).astype(np.uint8)
    return None


def _fourcc_str(v) -> str:
    try:
        n = int(v)
    except (TypeError, ValueError):
        return ""
    s = "".join(chr((n >> (8 * i)) & 0xFF) for i in range(4))
    return s if n > 0 and s.isprintable() else ""


def _has_backend(api: int) -> bool:
    try:
        return bool(cv2.videoio_registry.hasBackend(api))
    except Exception:
        return True


def _release(caps: Sequence) -> None:
    """Release captures (``None`` entries ignored), swallowing backend errors."""
    for cap in caps:
        try:
            if cap is not None:
                cap.release()
        except Exception:
            pass
