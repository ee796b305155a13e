"""Stereo visual odometry on rectified image pairs: KLT tracking, stereo row matching, PnP RANSAC,
two-view stereo bundle adjustment, keyframes, failure as a value.

Pipeline of :meth:`StereoVO.process` (one rectified pair in, one :class:`VOResult` or :class:`VOFailure`
out):

1. **Predict** the motion since the previous frame: a ``motion_prior`` (wheels + gyro) when the caller
   gives one, else a constant-velocity model (translation only by default: on rough ground the camera's
   pitch and roll rock from frame to frame and do not persist), and project the keyframe's points into
   the new left image.
2. **Track** the features from the keyframe's left image into the new one with pyramidal Lucas-Kanade
   (OpenCV) started at the predicted positions; the pyramid absorbs the unpredicted rotation. Tracking
   from the keyframe rather than the previous frame does not drift while the rover creeps or stands.
   When PnP finds too few inliers among the tracks, tracking is retried frame to frame from the previous
   positions with a deeper pyramid (a jolt the prediction did not foresee).
3. **Match** each tracked feature across the new pair: integer search along the image row, then
   sub-pixel Gauss-Newton on the disparity (Numba, :mod:`perception._vo_kernels`).
4. **Pose** ``T_kf_cur`` by PnP RANSAC (OpenCV, P3P minimal sets) on the keyframe's triangulated points
   and the new left observations, then **refined** by a two-view stereo bundle adjustment: pose and
   points minimise the Huber reprojection error in all four images (keyframe left/right, current
   left/right), so the keyframe's triangulation noise is not mistaken for truth. Points whose residual
   exceeds ``outlier_px`` are dropped and the adjustment repeated.
5. **Uncertainty**: the covariance is the inverse of the Schur-reduced 6x6 Gauss-Newton normal matrix
   times the residual variance per degree of freedom (``sum r² / (3 n - 6)``, floored at
   ``sigma_floor_px²``), on the tangent ``delta`` of ``T_true = T_ref_cur @ exp(delta)``.
6. **Keyframes**: motion is measured from the keyframe, not the previous frame, so the error does not
   accumulate while the rover creeps or stands (MER resolved 2 mm motions). A new keyframe is taken when the
   motion since the last one is large, or the inliers thin out; then the surviving tracks are
   re-triangulated from the current pair and new FAST features are detected in the empty buckets of an
   image grid (fewer but well-spread features: what PnP needs, at a fraction of the tracking cost).
7. **Failure as a value**: too few features, too few tracks or inliers, degenerate geometry, or an
   implausible jump (faster than ``max_speed_mps`` / ``max_rate_dps``, or a change of speed from the
   motion model's beyond ``max_accel_mps2``) give a falsy :class:`VOFailure`
   with the reason; the running pose keeps its last good value, and the pipeline re-initialises at that
   frame (it becomes the new keyframe, placed by the predicted motion) so later results continue the
   track instead of restarting at the origin.

Frames: OpenCV camera axes (x right, y down, z forward) of the *left* camera; ``T_a_b`` is frame ``b``'s
pose in frame ``a``. The right camera sits ``baseline_m`` along the left camera's +x.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, fields
from typing import NamedTuple

import numpy as np

from . import _vo_kernels as _k
from .trajectory import invert, rotation_angle, se3_exp, se3_log

__all__ = ["VOParams", "VOResult", "VOFailure", "StereoVO", "match_stereo", "select_features", "refine_two_view",
           "TwoViewFit", "MATCH_OK", "MATCH_BORDER", "MATCH_FLAT", "MATCH_AMBIGUOUS", "MATCH_RANGE",
           "MATCH_DIVERGED"]

log = logging.getLogger(__name__)


def _rule(default, *, gt=None, ge=None, le=None, lt=None, odd=False):
    return field(default=default, metadata=dict(gt=gt, ge=ge, le=le, lt=lt, odd=odd))


@dataclass(frozen=True)
class VOParams:
    """Tunables of :class:`StereoVO` (validated on construction; unknown names raise ``TypeError``).

    Features and tracking
        ``max_features`` kept per keyframe; the image is cut in ``bucket_px`` squares holding at most
        ``per_bucket`` features each, at least ``min_distance_px`` apart and ``border_px`` inside the
        image; FAST threshold ``fast_threshold``. KLT window ``klt_window_px`` (odd) and ``klt_levels``
        pyramid levels from the predicted positions; when that gives fewer PnP inliers than
        ``retrack_inlier_fraction`` of the tracks and than ``retrack_min_inliers``, KLT again from the
        previous positions with ``klt_levels_recovery`` levels and a ``klt_window_recovery_px`` window.
        ``klt_max_error`` bounds OpenCV's per-feature error (mean absolute difference, grey levels).
        ``predict_rotation``: the constant-velocity prediction includes rotation (off by default: on rough
        ground the camera's pitch and roll oscillate from frame to frame). ``klt_from_keyframe``: track
        from the keyframe's image (no drift) rather than from the previous frame.
    Stereo
        Window ``2 stereo_half_window + 1`` square; depths from ``min_depth_m`` (largest disparity
        searched) to ``max_depth_m``; ``stereo_min_std_dn`` minimum texture; ``stereo_uniqueness`` (best
        cost must be below this fraction of the second best); ``stereo_iterations`` sub-pixel steps.
        Tracked features are searched between the predicted disparity divided and multiplied by
        ``disparity_ratio``, widened by ``disparity_margin_px``; new features over the whole depth range.
    Pose
        RANSAC threshold ``ransac_px``, ``ransac_iterations``, ``ransac_confidence``; refinement Huber
        threshold ``huber_px``, iteration budget ``refine_iterations``; after refinement points whose
        residual norm over their 6 components exceeds ``outlier_px`` are dropped.
    Acceptance
        ``min_features`` (a keyframe with fewer is refused), ``min_tracked``, ``min_inliers``;
        ``max_speed_mps`` and ``max_rate_dps`` reject implausible jumps, so does ``max_accel_mps2`` (a
        change of speed from the motion model's, once the track has one); ``max_std_m`` / ``max_std_deg``
        reject degenerate geometry (a 1-σ translation / rotation uncertainty above them).
    Keyframes
        A new keyframe when the motion since the current one exceeds ``keyframe_translation_m`` or
        ``keyframe_rotation_deg``, or inliers fall below ``keyframe_min_inliers`` or below
        ``keyframe_inlier_fraction`` of the keyframe's features — but never while the motion is below
        ``keyframe_min_translation_m`` and ``keyframe_min_rotation_deg`` unless tracking is about to be
        lost (fewer than ``2 * min_inliers`` inliers).
    Covariance
        ``sigma_floor_px``: lower bound of the residual standard deviation; ``cov_scale`` multiplies the
        covariance. The default 2 was calibrated on simulated 100 m Mars and Moon traverses, where the
        unscaled covariance gave a mean normalised error (NEES) of 12–17 instead of 6 (errors along the
        yaw / lateral-translation direction are 1.5–2.4x larger than the residuals suggest: the pixel
        errors of tracking are correlated, not independent); with it the mean NEES is 6–9.5.
    """
    max_features: int = _rule(500, ge=8, le=20000)
    bucket_px: int = _rule(64, ge=8, le=1024)
    per_bucket: int = _rule(6, ge=1, le=1000)
    min_distance_px: int = _rule(8, ge=1, le=200)
    border_px: int = _rule(10, ge=2, le=200)
    fast_threshold: int = _rule(20, ge=1, le=200)
    klt_window_px: int = _rule(11, ge=5, le=51, odd=True)
    klt_levels: int = _rule(4, ge=0, le=6)
    klt_levels_recovery: int = _rule(5, ge=0, le=8)
    klt_window_recovery_px: int = _rule(11, ge=5, le=51, odd=True)
    predict_rotation: bool = _rule(False)
    klt_from_keyframe: bool = _rule(True)
    klt_iterations: int = _rule(20, ge=1, le=200)
    klt_max_error: float = _rule(30.0, gt=0)
    stereo_half_window: int = _rule(3, ge=1, le=15)
    min_depth_m: float = _rule(0.4, gt=0)
    max_depth_m: float = _rule(80.0, gt=0)
    stereo_min_std_dn: float = _rule(2.0, ge=0)
    stereo_uniqueness: float = _rule(0.9, gt=0, le=1)
    stereo_iterations: int = _rule(10, ge=1, le=100)
    disparity_ratio: float = _rule(1.33, ge=1)
    disparity_margin_px: float = _rule(2.0, ge=0)
    retrack_inlier_fraction: float = _rule(0.6, ge=0, le=1)
    retrack_min_inliers: int = _rule(60, ge=6)
    ransac_px: float = _rule(1.5, gt=0)
    ransac_iterations: int = _rule(200, ge=1, le=100000)
    ransac_confidence: float = _rule(0.999, gt=0, lt=1)
    huber_px: float = _rule(1.0, gt=0)
    refine_iterations: int = _rule(15, ge=1, le=1000)
    outlier_px: float = _rule(2.5, gt=0)
    min_features: int = _rule(30, ge=6)
    min_tracked: int = _rule(20, ge=6)
    min_inliers: int = _rule(12, ge=6)
    max_speed_mps: float = _rule(5.0, gt=0)
    max_rate_dps: float = _rule(120.0, gt=0)
    max_accel_mps2: float = _rule(3.0, gt=0)
    max_std_m: float = _rule(0.25, gt=0)
    max_std_deg: float = _rule(5.0, gt=0)
    keyframe_translation_m: float = _rule(0.5, gt=0)
    keyframe_rotation_deg: float = _rule(10.0, gt=0)
    keyframe_min_translation_m: float = _rule(0.05, ge=0)
    keyframe_min_rotation_deg: float = _rule(1.0, ge=0)
    keyframe_min_inliers: int = _rule(80, ge=6)
    keyframe_inlier_fraction: float = _rule(0.5, ge=0, le=1)
    sigma_floor_px: float = _rule(0.05, ge=0)
    cov_scale: float = _rule(2.0, gt=0)

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            m = f.metadata
            if isinstance(f.default, bool):
                if not isinstance(v, (bool, np.bool_)):
                    raise ValueError(f"VOParams.{f.name} = {v!r}: must be True or False")
                continue
            is_int = isinstance(f.default, int)
            if is_int and (isinstance(v, bool) or not isinstance(v, (int, np.integer))):
                raise ValueError(f"VOParams.{f.name} = {v!r}: must be an integer")
            if not is_int and not (isinstance(v, (int, float, np.floating, np.integer)) and math.isfinite(v)):
                raise ValueError(f"VOParams.{f.name} = {v!r}: must be a finite number")
            for key, ok, text in (("gt", lambda a, b: a > b, ">"), ("ge", lambda a, b: a >= b, ">="),
                                  ("lt", lambda a, b: a < b, "<"), ("le", lambda a, b: a <= b, "<=")):
                if m.get(key) is not None and not ok(v, m[key]):
                    raise ValueError(f"VOParams.{f.name} = {v!r}: must be {text} {m[key]}")
            if m.get("odd") and v % 2 == 0:
                raise ValueError(f"VOParams.{f.name} = {v!r}: must be odd")
        if self.max_depth_m <= self.min_depth_m:
            raise ValueError(f"VOParams.max_depth_m = {self.max_depth_m!r}: must be > min_depth_m "
                             f"{self.min_depth_m!r}")


# ---------------------------------------------------------------------------- kernel wrappers

#: Stereo match status codes of :func:`match_stereo` (``status`` array values).
MATCH_OK, MATCH_BORDER, MATCH_FLAT, MATCH_AMBIGUOUS, MATCH_RANGE, MATCH_DIVERGED = (
    _k.M_OK, _k.M_BORDER, _k.M_FLAT, _k.M_AMBIGUOUS, _k.M_RANGE, _k.M_DIVERGED)


def _image(name, img) -> np.ndarray:
    if not isinstance(img, np.ndarray) or img.ndim != 2 or img.dtype != np.uint8:
        desc = f"{img.dtype} array of shape {img.shape}" if isinstance(img, np.ndarray) else type(img).__name__
        raise ValueError(f"{name} must be a 2-D uint8 grey image, got {desc}")
    return np.ascontiguousarray(img)


def match_stereo(left, right, uv, d_lo, d_hi, *, half_window: int = 3, min_std_dn: float = 2.0,
                 uniqueness: float = 0.9, iterations: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Disparities of left-image points on a rectified pair (row search + sub-pixel Gauss-Newton).

    Parameters
    ----------
    left, right : (h, w) uint8
    uv : (n, 2) float
        Left-image points ``(u, v)`` (pixel centres at integers).
    d_lo, d_hi : float or (n,) float
        Disparity search range per point (pixels, ``u_left - u_right``).
    half_window : int
        The matching window is ``2 half_window + 1`` pixels square.
    min_std_dn, uniqueness, iterations
        Minimum standard deviation of the left window (grey levels); best SAD must be below
        ``uniqueness`` times the best SAD more than one disparity away; sub-pixel iteration budget.

    Returns
    -------
    d : (n,) float64 disparities (NaN where not matched); status : (n,) int8 ``MATCH_*`` codes.
    """
    left = _image("left", left)
    right = _image("right", right)
    if left.shape != right.shape:
        raise ValueError(f"left {left.shape} and right {right.shape} images differ in shape")
    uv = np.ascontiguousarray(uv, dtype=np.float64)
    if uv.ndim != 2 or uv.shape[1] != 2:
        raise ValueError(f"uv must be (n, 2), got shape {uv.shape}")
    if not np.isfinite(uv).all():
        raise ValueError("uv must be finite")
    n = len(uv)
    d_lo = np.array(np.broadcast_to(np.asarray(d_lo, dtype=np.float64), (n,)))
    d_hi = np.array(np.broadcast_to(np.asarray(d_hi, dtype=np.float64), (n,)))
    if not (np.isfinite(d_lo).all() and np.isfinite(d_hi).all()):
        raise ValueError("d_lo and d_hi must be finite")
    if int(half_window) < 1:
        raise ValueError(f"half_window = {half_window!r}: must be >= 1")
    if not (0 < uniqueness <= 1):
        raise ValueError(f"uniqueness = {uniqueness!r}: must be in (0, 1]")
    if int(iterations) < 1:
        raise ValueError(f"iterations = {iterations!r}: must be >= 1")
    d = np.empty(n)
    status = np.empty(n, np.int8)
    win = 2 * int(half_window) + 1
    _k._match_stereo(left, right, uv, d_lo, d_hi, int(half_window), float(min_std_dn), float(uniqueness),
                     int(iterations), d, status, np.empty((2, win * win)))
    return d, status


def select_features(xy, score, shape, *, existing_xy=None, bucket_px: int = 64, per_bucket: int = 6,
                    min_distance_px: int = 8, border_px: int = 10, max_count: int | None = None) -> np.ndarray:
    """Indices of well-spread feature candidates, best ``score`` first (greedy bucketing).

    A candidate ``xy[i]`` is kept when it lies ``border_px`` inside an image of ``shape`` ``(h, w)``, its
    ``bucket_px`` square holds fewer than ``per_bucket`` features (``existing_xy`` count too) and no kept or
    existing feature shares the 3x3 neighbourhood of its ``min_distance_px`` occupancy cell; at most
    ``max_count`` are kept. Returns the kept indices (int64) in selection order.
    """
    xy = np.asarray(xy, dtype=np.float64)
    score = np.asarray(score, dtype=np.float64)
    if xy.ndim != 2 or xy.shape[1] != 2 or score.shape != (len(xy),):
        raise ValueError(f"xy must be (n, 2) and score (n,), got {xy.shape} and {score.shape}")
    if not np.isfinite(xy).all():
        raise ValueError("xy must be finite")
    h, w = (int(v) for v in shape)
    for name, v in (("bucket_px", bucket_px), ("per_bucket", per_bucket), ("min_distance_px", min_distance_px)):
        if int(v) < 1:
            raise ValueError(f"{name} = {v!r}: must be >= 1")
    if int(border_px) < 0 or h < 1 or w < 1:
        raise ValueError(f"border_px = {border_px!r} and shape = {shape!r}: must be >= 0 and positive")
    md = int(min_distance_px)
    taken = np.zeros(((h + md - 1) // md, (w + md - 1) // md), np.uint8)
    ncols = (w + bucket_px - 1) // bucket_px
    counts = np.zeros(ncols * ((h + bucket_px - 1) // bucket_px), np.int64)
    if existing_xy is not None and len(existing_xy):
        e = np.asarray(existing_xy, dtype=np.float64).reshape(-1, 2)
        ei = np.clip(np.floor(e).astype(np.int64), 0, [w - 1, h - 1])
        taken[ei[:, 1] // md, ei[:, 0] // md] = 1
        np.add.at(counts, ei[:, 1] // bucket_px * ncols + ei[:, 0] // bucket_px, 1)
    cap = len(xy) if max_count is None else max(0, min(int(max_count), len(xy)))
    order = np.argsort(-score, kind="stable").astype(np.int64)
    out = np.empty(cap, np.int64)
    m = _k._bucket_select(np.ascontiguousarray(xy[:, 0], dtype=np.float32),
                          np.ascontiguousarray(xy[:, 1], dtype=np.float32), order, w, h, int(border_px),
                          int(bucket_px), int(per_bucket), md, cap, taken, counts, np.empty((1, len(xy)), np.int64),
                          out)
    return out[:m].copy()


@dataclass(frozen=True, eq=False)
class TwoViewFit:
    """Result of :func:`refine_two_view`: refined ``T_ref_cur`` (4, 4) and points ``X_ref`` (n, 3);
    ``inliers`` (n,) bool; ``cov`` (6, 6) on the right-perturbation tangent (``None`` when singular);
    ``sigma_px`` the residual standard deviation per image coordinate (before the floor); ``rms_px``;
    ``info`` the unscaled reduced normal matrix; ``status``: ``"ok"``, ``"max_iter"``, ``"singular"`` or
    ``"too_few"``."""
    T_ref_cur: np.ndarray
    X_ref: np.ndarray
    inliers: np.ndarray
    cov: np.ndarray | None
    sigma_px: float
    rms_px: float
    info: np.ndarray
    status: str


_STATUS = {_k.OK: "ok", _k.MAX_ITER: "max_iter", _k.SINGULAR: "singular", _k.TOO_FEW: "too_few"}


def refine_two_view(K, baseline_m: float, T_ref_cur, X_ref, obs_ref, obs_cur, *, inliers=None,
                    huber_px: float = 1.0, iterations: int = 15, outlier_px: float | None = 2.5, rounds: int = 3,
                    sigma_floor_px: float = 0.0, cov_scale: float = 1.0) -> TwoViewFit:
    """Two-view stereo bundle adjustment of a pose and points (Levenberg-Marquardt, Schur complement).

    Minimises the Huber reprojection error of points ``X_ref`` (reference left-camera frame) observed as
    ``obs_ref`` / ``obs_cur`` ``(n, 3)`` = ``(u_left, v, u_right)`` in the reference and current rectified
    pairs, over ``T_ref_cur`` (update ``T @ exp(delta)``) and the points. After each of up to ``rounds``
    solves, points whose residual norm over their six components exceeds ``outlier_px`` are dropped
    (``None``: keep all). The covariance is ``cov_scale · max(σ², sigma_floor_px²) · S⁻¹``, ``S`` the
    reduced normal matrix and ``σ² = Σ r² / (3 n - 6)``.
    """
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise ValueError(f"K must be 3x3, got shape {K.shape}")
    T = np.array(T_ref_cur, dtype=np.float64)
    X = np.array(X_ref, dtype=np.float64)
    if T.shape != (4, 4) or not np.isfinite(T).all():
        raise ValueError(f"T_ref_cur must be a finite 4x4 transform, got shape {T.shape}")
    n = len(X)
    obs_ref = np.ascontiguousarray(obs_ref, dtype=np.float64)
    obs_cur = np.ascontiguousarray(obs_cur, dtype=np.float64)
    for name, a in (("X_ref", X), ("obs_ref", obs_ref), ("obs_cur", obs_cur)):
        if a.shape != (n, 3) or not np.isfinite(a).all():
            raise ValueError(f"{name} must be a finite ({n}, 3) array, got shape {a.shape}")
    if not (baseline_m > 0 and huber_px > 0 and cov_scale > 0 and int(iterations) >= 1 and int(rounds) >= 1):
        raise ValueError("baseline_m, huber_px, cov_scale must be > 0 and iterations, rounds >= 1")
    weight = np.ones(n) if inliers is None else np.asarray(inliers, dtype=bool).astype(np.float64)
    if weight.shape != (n,):
        raise ValueError(f"inliers must be ({n},), got shape {weight.shape}")
    S = np.zeros((6, 6))
    res2 = np.zeros(n)
    info = np.zeros(5)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    status = _k.TOO_FEW
    for _ in range(int(rounds)):
        status = _k._refine_two_view(T, X, obs_ref, obs_cur, weight, fx, fy, cx, cy, float(baseline_m),
                                     float(huber_px), int(iterations), 1e-10, S, res2, info)
        if status in (_k.SINGULAR, _k.TOO_FEW) or outlier_px is None:
            break
        out = (weight > 0) & ~(res2 <= outlier_px ** 2)
        if not out.any():
            break
        weight[out] = 0.0
    inl = weight > 0
    n_inl = int(inl.sum())
    dof = 3 * n_inl - 6
    sigma2 = info[1] / dof if dof > 0 else 0.0
    cov = None
    if status not in (_k.SINGULAR, _k.TOO_FEW) and dof > 0:
        try:
            cov = np.linalg.inv(S) * (cov_scale * max(sigma2, sigma_floor_px ** 2))
            cov = 0.5 * (cov + cov.T)
            if not np.isfinite(cov).all():
                cov = None
        except np.linalg.LinAlgError:
            cov = None
    rms = math.sqrt(info[1] / (6 * n_inl)) if n_inl else math.nan
    return TwoViewFit(T, X, inl, cov, math.sqrt(max(sigma2, 0.0)), rms, S.copy(), _STATUS[status])


@dataclass(frozen=True, eq=False)
class VOResult:
    """A converged VO update (truthy).

    Attributes
    ----------
    t_s, seq : the current frame's time and sequence number.
    ref_t_s, ref_seq : the frame the motion is measured from (the current keyframe: the previous frame or
        an older one). ``ref_seq == seq`` only for the first frame (no motion measured, ``cov`` zero).
        The reference may be a frame that returned a :class:`VOFailure` with ``keyframe=True`` (the
        re-initialisation frame).
    T_ref_cur : (4, 4) the current left camera's pose in the reference left camera frame.
    cov : (6, 6) covariance of ``T_ref_cur`` on the tangent ``(rotation vector rad, translation m)``,
        perturbation on the right: ``T_true = T_ref_cur @ exp(delta)``.
    T_first_cur : (4, 4) running pose in the first camera frame (or the pose given to ``reset``).
    n_features : features of the keyframe going into this frame; ``n_tracked``: tracked and matched in
        the current pair; ``n_inliers``: used by the final refinement.
    keyframe : this frame became the new reference.
    rms_px : RMS reprojection residual per image coordinate of the inliers.
    """
    t_s: float
    seq: int
    ref_t_s: float
    ref_seq: int
    T_ref_cur: np.ndarray
    cov: np.ndarray
    T_first_cur: np.ndarray
    n_features: int
    n_tracked: int
    n_inliers: int
    keyframe: bool
    rms_px: float = 0.0

    def __bool__(self) -> bool:
        return True


@dataclass(frozen=True, eq=False)
class VOFailure:
    """A VO update that did not converge (falsy). ``reason`` says why (e.g. ``"7 inliers < min_inliers
    12"``), ``kind`` is one of ``"features"``, ``"tracking"``, ``"inliers"``, ``"degenerate"``,
    ``"jump"``, ``"reinitialised"`` (the frame after a lost track: it became the reference, but no motion
    was measured). ``T_first_cur`` is the last good pose (not reset). ``keyframe`` is True when the
    pipeline re-initialised at this frame (later results measure motion from it)."""
    t_s: float
    seq: int
    reason: str
    T_first_cur: np.ndarray
    n_features: int = 0
    n_tracked: int = 0
    n_inliers: int = 0
    kind: str = ""
    keyframe: bool = False

    def __bool__(self) -> bool:
        return False


class _Keyframe:
    """Reference frame state: features (observations, triangulated points, tracked positions)."""
    __slots__ = ("t_s", "seq", "T_first", "obs", "X", "uv_prev", "n0", "img")

    def __init__(self, t_s, seq, T_first, obs, X, img):
        self.img = img          # the keyframe's left image: features are tracked from it (no drift)
        self.t_s = t_s
        self.seq = seq
        self.T_first = T_first
        self.obs = obs          # (n, 3) u_left, v, u_right in the keyframe
        self.X = X              # (n, 3) points in the keyframe frame
        self.uv_prev = np.ascontiguousarray(obs[:, :2], dtype=np.float32)   # positions in the previous frame
        self.n0 = len(obs)


class _Trial(NamedTuple):
    """One tracking attempt: keyframe feature indices found, their current observations, PnP pose."""
    idx: np.ndarray
    obs_cur: np.ndarray
    T_kf_cur: np.ndarray | None
    inliers: np.ndarray
    n_tracked: int
    n_inliers: int


class StereoVO:
    """Stereo visual odometry for a rectified camera pair (see the module docstring).

    Parameters
    ----------
    K : (3, 3) array
        Intrinsics shared by both rectified images (no skew).
    baseline_m : float
        Distance between the optical centres (the right camera along the left's +x).
    params : VOParams, optional
    """

    def __init__(self, K, baseline_m: float, *, params: VOParams | None = None):
        import cv2

        self._cv2 = cv2
        K = np.asarray(K, dtype=np.float64)
        if K.shape != (3, 3) or not np.isfinite(K).all():
            raise ValueError(f"K must be a finite 3x3 matrix, got shape {K.shape}")
        if not (K[0, 0] > 0 and K[1, 1] > 0) or abs(K[0, 1]) > 1e-9 * K[0, 0] or \
                not np.allclose(K[2], [0, 0, 1]) or K[1, 0] != 0:
            raise ValueError(f"K must be [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] with fx, fy > 0, got {K.tolist()}")
        if not (math.isfinite(baseline_m) and baseline_m > 0):
            raise ValueError(f"baseline_m = {baseline_m!r}: must be > 0")
        if params is not None and not isinstance(params, VOParams):
            raise TypeError(f"params must be a VOParams, got {type(params).__name__}")
        self.K = K
        self.baseline_m = float(baseline_m)
        self.params = params if params is not None else VOParams()
        self._fast = cv2.FastFeatureDetector_create(self.params.fast_threshold, True)
        self.reset()

    # ------------------------------------------------------------------ public API

    def reset(self, T_first_cur=None) -> None:
        """Forget all state; the next frame starts a new track at ``T_first_cur`` (default identity)."""
        T = np.eye(4) if T_first_cur is None else np.array(T_first_cur, dtype=np.float64)
        if T.shape != (4, 4) or not np.isfinite(T).all():
            raise ValueError(f"T_first_cur must be a finite 4x4 transform, got shape {T.shape}")
        self._kf: _Keyframe | None = None
        self._T_first_last = T            # last good running pose
        self._T_first_prev = T            # the previous frame's pose: estimated, or placed by the motion model
        self._prev_img = None
        self._prev_t: float | None = None
        self._T_kf_prev = np.eye(4)       # previous frame in the keyframe
        self._vel = np.zeros(6)           # twist per second (tangent of T_prev_cur / dt)
        self._vel_valid = False           # _vel was measured between two frames of the current track
        self._shape = None
        self._last_seq = -1
        self._started = False

    def process_frame(self, frame):
        """:meth:`process` on anything with ``left``, ``right``, ``t_s`` and ``seq`` attributes
        (e.g. :class:`drivers.camera.StereoFrame`)."""
        return self.process(frame.left, frame.right, frame.t_s, getattr(frame, "seq", None))

    def process(self, left, right, t_s: float, seq: int | None = None, *, motion_prior=None):
        """Estimate the motion of a new rectified pair.

        Parameters
        ----------
        left, right : (h, w) uint8
            Rectified grey images (same shape for the whole sequence).
        t_s : float
            Capture time, strictly increasing.
        seq : int, optional
            Frame number (default: previous + 1).
        motion_prior : (4, 4) array, optional
            Expected motion of the left camera since the previous frame (``T_prev_cur``), e.g. from wheel
            odometry and the gyro. It seeds feature tracking and places the new reference after a failure.
            Without it a constant-velocity model is used (translation only unless
            ``params.predict_rotation``: a rocking rover's pitch and roll do not persist between frames).

        Returns
        -------
        VOResult or VOFailure
        """
        left, right = self._check_images(left, right)
        t_s = float(t_s)
        if not math.isfinite(t_s):
            raise ValueError(f"t_s = {t_s!r}: must be finite")
        if self._prev_t is not None and not t_s > self._prev_t:
            raise ValueError(f"t_s = {t_s!r}: must increase (previous frame at {self._prev_t!r})")
        if motion_prior is not None:
            T_pred = np.array(motion_prior, dtype=np.float64)
            if T_pred.shape != (4, 4) or not np.isfinite(T_pred).all() or \
                    not np.allclose(T_pred[:3, :3] @ T_pred[:3, :3].T, np.eye(3), atol=1e-6):
                raise ValueError(f"motion_prior must be a finite 4x4 rigid transform, got {T_pred.tolist()}")
        elif self._prev_t is not None:
            step = self._vel * (t_s - self._prev_t)
            if not self.params.predict_rotation:
                step[:3] = 0.0
            T_pred = se3_exp(step)
        else:
            T_pred = np.eye(4)
        seq = self._last_seq + 1 if seq is None else int(seq)
        self._last_seq = seq
        try:
            if self._kf is None:
                res = self._initialise(left, right, t_s, seq, T_pred)
            else:
                res = self._track(left, right, t_s, seq, T_pred)
        finally:
            self._prev_img = left
            self._prev_t = t_s
        return res

    # ------------------------------------------------------------------ stages

    def _check_images(self, left, right):
        # the left image is kept (previous frame, keyframe): copy it, the caller may reuse its buffer
        left = np.array(_image("left", left), copy=True)
        right = _image("right", right)
        if left.shape != right.shape:
            raise ValueError(f"left {left.shape} and right {right.shape} images differ in shape")
        if self._shape is not None and left.shape != self._shape:
            raise ValueError(f"image shape {left.shape} differs from the sequence's {self._shape}")
        h, w = left.shape
        if h < 4 * self.params.border_px or w < 4 * self.params.border_px:
            raise ValueError(f"images of {w}x{h} px are too small for border_px {self.params.border_px}")
        self._shape = left.shape
        return left, right

    def _initialise(self, left, right, t_s, seq, T_pred, *, failure=None):
        """Make this frame the keyframe (first frame, or re-initialisation after a failure, placed by the
        predicted motion ``T_pred`` from the previous frame)."""
        T_first = self._T_first_prev @ T_pred if self._started else self._T_first_last.copy()
        self._T_first_prev = T_first
        obs, X = self._new_features(left, right, None)
        n = len(obs)
        if n < self.params.min_features:
            self._kf = None
            reason = f"{n} features < min_features {self.params.min_features}"
            if failure is not None:
                reason = f"{failure[0]}; re-initialisation failed: {reason}"
            return VOFailure(t_s, seq, reason, self._T_first_last.copy(), n_features=n,
                             kind=failure[1] if failure else "features", keyframe=False,
                             n_tracked=failure[2] if failure else 0, n_inliers=failure[3] if failure else 0)
        self._kf = _Keyframe(t_s, seq, T_first, obs, X, left)
        self._T_kf_prev = np.eye(4)
        if failure is None and self._started:
            failure = ("no reference frame (tracking was lost earlier): re-initialised at this frame, placed by "
                       "the predicted motion", "reinitialised", 0, 0, n)
        if failure is not None:
            # the frame is a new reference placed by the motion model; the running pose is unchanged
            return VOFailure(t_s, seq, failure[0], self._T_first_last.copy(), n_features=failure[4],
                             n_tracked=failure[2], n_inliers=failure[3], kind=failure[1], keyframe=True)
        self._started = True
        self._T_first_last = T_first
        return VOResult(t_s, seq, t_s, seq, np.eye(4), np.zeros((6, 6)), T_first.copy(), n, 0, 0, True)

    def _fail(self, left, right, t_s, seq, T_pred, kind, reason, n_feat, n_tracked, n_inliers):
        log.debug("VO frame %d: %s", seq, reason)
        self._vel_valid = False
        return self._initialise(left, right, t_s, seq, T_pred,
                                failure=(reason, kind, n_tracked, n_inliers, n_feat))

    def _track(self, left, right, t_s, seq, T_pred):
        p = self.params
        kf = self._kf
        n_feat = len(kf.obs)
        dt = t_s - self._prev_t
        T_kf_pred = self._T_kf_prev @ T_pred

        def fail(kind, reason, n_tracked, n_inliers):
            return self._fail(left, right, t_s, seq, T_pred, kind, reason, n_feat, n_tracked, n_inliers)

        # --- prediction of the feature positions
        T_pred_kf = invert(T_kf_pred)
        Y = kf.X @ T_pred_kf[:3, :3].T + T_pred_kf[:3, 3]
        fx, fy, cx, cy = self.K[0, 0], self.K[1, 1], self.K[0, 2], self.K[1, 2]
        h, w = left.shape
        with np.errstate(divide="ignore", invalid="ignore"):
            up = np.stack([fx * Y[:, 0] / Y[:, 2] + cx, fy * Y[:, 1] / Y[:, 2] + cy], axis=1)
        ok_pred = (Y[:, 2] > 0.05) & np.isfinite(up).all(axis=1) & (up[:, 0] > -w) & (up[:, 0] < 2 * w) \
            & (up[:, 1] > -h) & (up[:, 1] < 2 * h)
        guess = np.where(ok_pred[:, None], up, kf.uv_prev).astype(np.float32)
        fb = fx * self.baseline_m
        d_pred = np.where(ok_pred, fb / np.where(ok_pred, Y[:, 2], 1.0), kf.obs[:, 0] - kf.obs[:, 2])
        # --- features in the current pair and the pose by PnP RANSAC: KLT from the keyframe started at the
        # predicted positions; if that gives too few inliers, KLT frame to frame from the previous positions
        # with a deeper pyramid (a jolt the motion model did not foresee)
        best = None
        for deep in (False, True):
            trial = self._track_match_pnp(left, right, guess, d_pred, deep)
            if best is None or trial.n_inliers > best.n_inliers:
                best = trial
            if trial.n_inliers >= max(p.min_inliers, min(p.retrack_inlier_fraction * trial.n_tracked,
                                                         p.retrack_min_inliers)):
                break
        idx, obs_cur, T_kf_cur, inl, n_tracked = best.idx, best.obs_cur, best.T_kf_cur, best.inliers, best.n_tracked
        if n_tracked < p.min_tracked:
            return fail("tracking", f"{n_tracked} tracked features < min_tracked {p.min_tracked}", n_tracked, 0)
        if T_kf_cur is None or len(inl) < p.min_inliers:
            return fail("inliers", f"{len(inl)} RANSAC inliers < min_inliers {p.min_inliers}", n_tracked,
                        len(inl))
        # --- two-view stereo bundle adjustment
        inl_mask = np.zeros(n_tracked, bool)
        inl_mask[inl] = True
        obs_ref = kf.obs[idx]
        fit = refine_two_view(self.K, self.baseline_m, T_kf_cur, kf.X[idx], obs_ref, obs_cur, inliers=inl_mask,
                              huber_px=p.huber_px, iterations=p.refine_iterations, outlier_px=p.outlier_px,
                              sigma_floor_px=p.sigma_floor_px, cov_scale=p.cov_scale)
        T, X, cov = fit.T_ref_cur, fit.X_ref, fit.cov
        n_inl = int(fit.inliers.sum())
        if fit.status == "too_few" or n_inl < p.min_inliers:
            return fail("inliers", f"{n_inl} inliers < min_inliers {p.min_inliers}", n_tracked, n_inl)
        if fit.status == "singular" or cov is None:
            return fail("degenerate", "degenerate geometry: the pose is not determined by the inliers "
                        "(singular normal matrix)", n_tracked, n_inl)
        std_t = math.sqrt(max(np.linalg.eigvalsh(cov[3:, 3:]).max(), 0.0))
        std_r = math.degrees(math.sqrt(max(np.linalg.eigvalsh(cov[:3, :3]).max(), 0.0)))
        if std_t > p.max_std_m or std_r > p.max_std_deg:
            return fail("degenerate", f"degenerate geometry: 1-sigma uncertainty {std_t:.3g} m / {std_r:.3g} deg "
                        f"> max_std_m {p.max_std_m} / max_std_deg {p.max_std_deg}", n_tracked, n_inl)
        # --- plausibility against the motion since the previous frame
        T_prev_cur = invert(self._T_kf_prev) @ T
        step_m = float(np.linalg.norm(T_prev_cur[:3, 3]))
        step_deg = math.degrees(rotation_angle(T_prev_cur[:3, :3]))
        if step_m > p.max_speed_mps * dt or step_deg > p.max_rate_dps * dt:
            return fail("jump", f"implausible jump: {step_m:.3g} m, {step_deg:.3g} deg in {dt:.3g} s exceeds "
                        f"max_speed_mps {p.max_speed_mps} / max_rate_dps {p.max_rate_dps}", n_tracked, n_inl)
        vel = se3_log(T_prev_cur) / dt
        if self._vel_valid:
            dv = float(np.linalg.norm(vel[3:] - self._vel[3:]))
            if dv > p.max_accel_mps2 * dt:
                return fail("jump", f"implausible jump: the speed changed by {dv:.3g} m/s in {dt:.3g} s against the "
                            f"motion model (max_accel_mps2 {p.max_accel_mps2})", n_tracked, n_inl)
        # --- accept
        ref_t, ref_seq = kf.t_s, kf.seq
        T_first_cur = kf.T_first @ T
        self._vel = vel
        self._vel_valid = True
        self._T_first_last = T_first_cur
        self._T_first_prev = T_first_cur
        keep = fit.inliers
        trans_m = float(np.linalg.norm(T[:3, 3]))
        rot_deg = math.degrees(rotation_angle(T[:3, :3]))
        new_kf = (trans_m > p.keyframe_translation_m or rot_deg > p.keyframe_rotation_deg
                  or n_inl < p.keyframe_min_inliers or n_inl < p.keyframe_inlier_fraction * kf.n0)
        if trans_m < p.keyframe_min_translation_m and rot_deg < p.keyframe_min_rotation_deg \
                and n_inl >= 2 * p.min_inliers:
            new_kf = False
        if new_kf:
            self._new_keyframe(left, right, t_s, seq, T_first_cur, obs_cur[keep])
        else:
            kf.obs = obs_ref[keep]
            kf.X = X[keep]
            kf.uv_prev = np.ascontiguousarray(obs_cur[keep, :2], dtype=np.float32)
            self._T_kf_prev = T.copy()
        return VOResult(t_s, seq, ref_t, ref_seq, T.copy(), cov, T_first_cur.copy(), n_feat, n_tracked, n_inl,
                        bool(new_kf), fit.rms_px)

    def _track_match_pnp(self, left, right, guess, d_pred, deep):
        """Keyframe features found in the current pair and PnP RANSAC on them. ``deep``: the retry (frame
        to frame from the previous positions, no prediction, deeper pyramid)."""
        p = self.params
        kf = self._kf
        if deep:
            uv, good = self._klt(self._prev_img, kf.uv_prev, kf.uv_prev.copy(), left, p.klt_levels_recovery,
                                 p.klt_window_recovery_px)
            idx = np.arange(len(uv))
        else:
            # from the keyframe's image and positions: no drift accumulates while the rover creeps or stands
            # (frame-to-frame tracking would random-walk)
            if p.klt_from_keyframe:
                uv, good = self._klt(kf.img, np.ascontiguousarray(kf.obs[:, :2], dtype=np.float32), guess, left,
                                     p.klt_levels, p.klt_window_px)
            else:
                uv, good = self._klt(self._prev_img, kf.uv_prev, guess, left, p.klt_levels, p.klt_window_px)
            idx = np.arange(len(uv))
        uv = uv[good]
        idx = idx[good]
        if deep:
            d, mok = self._match(left, right, uv.astype(np.float64))
        else:
            # disparity search around the predicted depth: rotation (not predicted) changes a point's
            # depth by less than a factor 4/3 either way for rotations up to ~15 degrees
            d, mok = self._match(left, right, uv.astype(np.float64), d_pred[idx] / p.disparity_ratio,
                                 d_pred[idx] * p.disparity_ratio)
        idx = idx[mok]
        uv = uv[mok]
        d = d[mok]
        n = len(idx)
        obs_cur = np.empty((n, 3))
        obs_cur[:, :2] = uv
        obs_cur[:, 2] = uv[:, 0] - d
        if n < max(p.min_tracked, 4):
            return _Trial(idx, obs_cur, None, np.zeros(0, np.int64), n, 0)
        T, inl = self._pnp(kf.X[idx], obs_cur[:, :2])
        return _Trial(idx, obs_cur, T, inl, n, len(inl))

    def _new_keyframe(self, left, right, t_s, seq, T_first_cur, obs_keep):
        """The current frame becomes the keyframe: re-triangulate the kept tracks, add new features."""
        X_keep = self._triangulate(obs_keep)
        ok = np.isfinite(X_keep).all(axis=1)
        obs_keep, X_keep = obs_keep[ok], X_keep[ok]
        obs_new, X_new = self._new_features(left, right, obs_keep[:, :2])
        obs = np.concatenate([obs_keep, obs_new])
        X = np.concatenate([X_keep, X_new])
        self._kf = _Keyframe(t_s, seq, T_first_cur.copy(), obs, X, left)
        self._T_kf_prev = np.eye(4)

    # ------------------------------------------------------------------ building blocks

    def _klt(self, prev_img, uv_prev, guess, left, levels, window_px):
        p = self.params
        cv2 = self._cv2
        win = (window_px, window_px)
        crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, p.klt_iterations, 0.01)
        nxt, st, err = cv2.calcOpticalFlowPyrLK(prev_img, left, uv_prev, guess, winSize=win, maxLevel=levels,
                                                criteria=crit, flags=cv2.OPTFLOW_USE_INITIAL_FLOW)
        h, w = left.shape
        b = p.border_px
        good = (st.ravel() == 1) & (err.ravel() < p.klt_max_error) & np.isfinite(nxt).all(axis=1) \
            & (nxt[:, 0] >= b) & (nxt[:, 0] <= w - 1 - b) & (nxt[:, 1] >= b) & (nxt[:, 1] <= h - 1 - b)
        return nxt, good

    def _match(self, left, right, uv, d_lo=None, d_hi=None):
        """Disparities of left points ``uv`` (n, 2) float64: ``(d, ok)``. Searched between ``d_lo`` and
        ``d_hi`` (per point, widened by ``disparity_margin_px``) within the depth range."""
        p = self.params
        n = len(uv)
        fb = self.K[0, 0] * self.baseline_m
        lo = max(0.0, fb / p.max_depth_m - 1.0)
        hi = fb / p.min_depth_m
        if d_lo is None:
            d_lo = np.full(n, lo)
            d_hi = np.full(n, hi)
        else:
            d_lo = np.clip(d_lo - p.disparity_margin_px, lo, hi)
            d_hi = np.clip(d_hi + p.disparity_margin_px, lo, hi)
        d, st = match_stereo(left, right, uv, d_lo, d_hi, half_window=p.stereo_half_window,
                             min_std_dn=p.stereo_min_std_dn, uniqueness=p.stereo_uniqueness,
                             iterations=p.stereo_iterations)
        ok = (st == MATCH_OK) & (d >= fb / p.max_depth_m)
        return d, ok

    def _triangulate(self, obs):
        fx, fy, cx, cy = self.K[0, 0], self.K[1, 1], self.K[0, 2], self.K[1, 2]
        d = obs[:, 0] - obs[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(d > 0, fx * self.baseline_m / d, np.nan)
        X = np.empty((len(obs), 3))
        X[:, 0] = (obs[:, 0] - cx) * z / fx
        X[:, 1] = (obs[:, 1] - cy) * z / fy
        X[:, 2] = z
        return X

    def _new_features(self, left, right, existing_uv):
        """Detect FAST corners in the buckets not yet full, match them across the pair: ``(obs, X)``."""
        p = self.params
        h, w = left.shape
        n_exist = 0 if existing_uv is None else len(existing_uv)
        want = p.max_features - n_exist
        empty = (np.zeros((0, 3)), np.zeros((0, 3)))
        if want <= 0:
            return empty
        kps = self._fast.detect(left)
        if not kps:
            return empty
        pts = self._cv2.KeyPoint_convert(kps)
        resp = np.fromiter((k.response for k in kps), np.float32, len(kps))
        # ask for extra candidates: some fail the stereo match
        sel = select_features(pts, resp, (h, w), existing_xy=existing_uv, bucket_px=p.bucket_px,
                              per_bucket=p.per_bucket, min_distance_px=p.min_distance_px, border_px=p.border_px,
                              max_count=int(want * 1.5) + 8)
        uv = pts[sel].astype(np.float64)
        d, ok = self._match(left, right, uv)
        uv, d = uv[ok][:want], d[ok][:want]
        obs = np.empty((len(uv), 3))
        obs[:, :2] = uv
        obs[:, 2] = uv[:, 0] - d
        return obs, self._triangulate(obs)

    def _pnp(self, X, uv):
        """PnP RANSAC (P3P minimal sets): ``(T_kf_cur or None, inlier indices)``."""
        p = self.params
        cv2 = self._cv2
        try:
            ok, rvec, tvec, inl = cv2.solvePnPRansac(
                np.ascontiguousarray(X, dtype=np.float64), np.ascontiguousarray(uv, dtype=np.float64), self.K, None,
                iterationsCount=p.ransac_iterations, reprojectionError=p.ransac_px,
                confidence=p.ransac_confidence, flags=cv2.SOLVEPNP_P3P)
        except cv2.error as e:       # too few or degenerate points
            log.debug("solvePnPRansac: %s", e)
            return None, np.zeros(0, np.int64)
        if not ok or inl is None:
            return None, np.zeros(0, np.int64)
        R, _ = cv2.Rodrigues(rvec)
        T_cur_kf = np.eye(4)
        T_cur_kf[:3, :3] = R
        T_cur_kf[:3, 3] = tvec.ravel()
        return invert(T_cur_kf), inl.ravel().astype(np.int64)
