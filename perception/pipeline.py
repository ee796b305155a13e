"""Stereo navigation pipeline: wheels, IMU and rectified stereo pairs in; the rover's pose, its
uncertainty and local height maps out.

One object wires the three perception stages the way a rover's navigation loop uses them::

    pipe = StereoNavPipeline.from_camera(profile.camera, ekf_params=EKFParams.for_rover(profile, planet),
                                         T_world_body0=T0, t0_s=t0)
    # every control tick (10 Hz):
    vx, vy, wz = layout.forward(tm.wheel_speed_radps, tm.steer_rad)
    pipe.wheel_tick(tm.t_s, vx, vy, wz, tm.imu.gyro_radps, tm.imu.accel_mps2)
    # every ~0.15 m of travel (what VO needs), a map every ~0.5 m (what the planner needs):
    out = pipe.frame(frame.t_s, frame.seq, frame.left, frame.right, grid=gmap, want_map=want_map, near=True)
    gmap.merge(out.local, stamp=odometer_m)          # out.local is None when no map was asked for
    # out.near: the ground within 2.5 m on gmap's cells split 2 x 2, for NavExecutive.observe(..., near=...)

* :class:`perception.vo.StereoVO` runs on *every* frame (tracking needs the overlap of closely spaced
  frames), seeded with the motion the filter predicts since the previous frame VO processed (wheels with
  the estimated slip, and the gyro): the prediction centres the feature search and places VO's new
  reference frame after a failure.
* :class:`perception.estimator.RoverEKF` fuses it: the body pose at each frame is kept (a stochastic
  clone), VO's keyframe-relative motion updates the clone pair; failures are noted, wheels and gyro carry
  the pose with growing covariance while VO is down, and the first result after a dropout corrects the
  estimate by what it measures, never resets it.
* :class:`perception.stereo_map.StereoMapper` builds the local height map from the *same* pair, placed at
  the filter's estimate of the left camera after the VO update, with the filter's roll/pitch uncertainty;
  with ``near=True`` also the finer near map of the ground close in
  (:meth:`~perception.stereo_map.StereoMapper.near_map`) from the same disparity and points.

Frames arriving late (their time behind the filter's, e.g. a camera read after the telemetry tick it
belongs to) are accepted: the filter keeps their pose at its current time and VO's times are mapped to
it, counted in ``late_frames``. Time comes from the inputs only; the wall clock is read solely to
measure the cost of each stage for :meth:`StereoNavPipeline.stats`.

Frames and conventions are those of :mod:`perception.estimator` (world ENU, body REP-103) and
:mod:`perception.vo` (OpenCV camera axes; ``T_a_b`` is frame ``b``'s pose in ``a``).
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np

from .estimator import EKFParams, FilterUpdate, RoverEKF, SlipEstimate
from .stereo_map import LocalHeightMap, StereoMapParams, StereoMapper
from .vo import StereoVO, VOFailure, VOParams, VOResult

__all__ = ["StereoNavPipeline", "PipelineFrame", "T_body_left", "FAILURE_KINDS"]

log = logging.getLogger(__name__)

#: ``VOFailure.kind`` values, plus ``"skipped"`` (VO not run on the frame: ``run_vo=False``).
FAILURE_KINDS = ("features", "tracking", "inliers", "degenerate", "jump", "reinitialised", "skipped")


def T_body_left(camera) -> np.ndarray:
    """Nominal pose (4x4) of the left camera of a :class:`nav.config.Camera` in the body frame.

    The camera frame is OpenCV's (x right, y down, z forward); the left camera sits at body
    ``(mount_x_m, +baseline_m / 2, mast_height_m)`` looking along body +x pitched down by ``tilt_deg``
    (the convention documented on :class:`nav.config.Camera`). A calibrated mount
    (``StereoFrame.T_body_left``) is better when the camera reports one.
    """
    for name in ("tilt_deg", "baseline_m", "mount_x_m", "mast_height_m"):
        if not hasattr(camera, name):
            raise TypeError(f"camera must be a nav.config.Camera (no attribute {name!r}), got {type(camera).__name__}")
    a = math.radians(camera.tilt_deg)
    ca, sa = math.cos(a), math.sin(a)
    T = np.eye(4)
    T[:3, :3] = [[0.0, -sa, ca], [-1.0, 0.0, 0.0], [0.0, -ca, -sa]]
    T[:3, 3] = [camera.mount_x_m, 0.5 * camera.baseline_m, camera.mast_height_m]
    return T


def _invert(T) -> np.ndarray:
    R, t = T[:3, :3], T[:3, 3]
    out = np.eye(4)
    out[:3, :3] = R.T
    out[:3, 3] = -R.T @ t
    return out


def _orthonormalise(T) -> np.ndarray:
    """Nearest rigid transform (products of many rotations drift from orthonormal by ~1e-15 per step)."""
    U, _, Vt = np.linalg.svd(T[:3, :3])
    R = U @ Vt
    if np.linalg.det(R) < 0:
        U[:, -1] = -U[:, -1]
        R = U @ Vt
    out = T.copy()
    out[:3, :3] = R
    out[3] = (0.0, 0.0, 0.0, 1.0)
    return out


@dataclass(frozen=True)
class _Remapped:
    """A VO result with its times mapped to the filter's clone times (for late frames)."""
    t_s: float
    ref_t_s: float
    T_ref_cur: np.ndarray | None
    cov: np.ndarray | None
    keyframe: bool
    ok: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok


@dataclass(frozen=True, eq=False)
class PipelineFrame:
    """What :meth:`StereoNavPipeline.frame` made of one stereo pair.

    Attributes
    ----------
    t_s, seq : the frame's time and number.
    vo : VOResult or VOFailure (``VOFailure(kind="skipped")`` when VO was not run on it).
    update : FilterUpdate of the VO measurement (falsy with a reason when it was not applied).
    T_world_body : (4, 4) filter estimate of the body at the frame, after the VO update.
    T_world_cam : (4, 4) the left camera's estimated pose at the frame (``T_world_body @ T_body_cam``).
    pose_cov : (6, 6) covariance of ``[dtheta (body, rad), dp (world, m)]`` after the update.
    attitude_sigma_rad : 1-sigma roll/pitch uncertainty used for the map (largest of the two).
    correction_m : how far the VO update moved the position estimate (0 when not applied).
    local : LocalHeightMap of the pair, or None when no map was asked for.
    times_s : seconds spent per stage: ``"vo"``, ``"ekf"``, ``"map"`` (the near map's time included).
    late_s : how far the frame's time was behind the filter's (0 when on time).
    near : LocalHeightMap of the ground close in (:meth:`perception.stereo_map.StereoMapper.near_map`: points
        within 2.5 m, cells of ``grid`` split 2 x 2), or None when it was not asked for (``frame(near=True)``
        with a map).
    """
    t_s: float
    seq: int
    vo: VOResult | VOFailure
    update: FilterUpdate
    T_world_body: np.ndarray
    T_world_cam: np.ndarray
    pose_cov: np.ndarray
    attitude_sigma_rad: float
    correction_m: float
    local: LocalHeightMap | None = None
    times_s: dict = field(default_factory=dict)
    late_s: float = 0.0
    near: LocalHeightMap | None = None

    @property
    def vo_ok(self) -> bool:
        """VO converged on this frame (a motion was measured, not only a first or re-initialised frame)."""
        return bool(self.vo) and self.vo.ref_seq != self.vo.seq

    @property
    def position_sigma_m(self) -> float:
        """Root of the trace of the position covariance (m)."""
        return math.sqrt(max(float(np.trace(self.pose_cov[3:, 3:])), 0.0))


class _Timer:
    __slots__ = ("n", "total", "max")

    def __init__(self):
        self.n, self.total, self.max = 0, 0.0, 0.0

    def add(self, dt: float) -> None:
        self.n += 1
        self.total += dt
        self.max = max(self.max, dt)

    def ms(self) -> dict:
        return {"mean": 1e3 * self.total / self.n if self.n else None, "max": 1e3 * self.max if self.n else None,
                "count": self.n}


class StereoNavPipeline:
    """Stereo VO, the rover EKF and the stereo mapper on one rover (see the module docstring).

    Parameters
    ----------
    K : (3, 3) array
        Intrinsics of the rectified pair.
    baseline_m : float
        Stereo baseline (the right camera along the left's +x).
    T_body_cam : (4, 4) array
        Left camera pose in the body frame (``StereoFrame.T_body_left``, or :func:`T_body_left`).
    ekf_params, vo_params, map_params : EKFParams, VOParams, StereoMapParams, optional
    T_world_body0 : (4, 4) array, optional
        Initial body pose (default identity).
    cov0 : (6, 6) array, optional
        Initial pose covariance (see :class:`perception.estimator.RoverEKF`).
    t0_s : float
        Time of the initial pose.
    motion_prior : bool
        Seed VO with the filter's predicted motion (default). ``False``: VO's own constant-velocity model.
    twist0 : (vx_mps, vy_mps, wz_radps) or None
        The wheels' body twist at ``t0_s`` (default: at rest). It is the filter's first wheel sample: without
        one, the accelerometer's motion term would miss the acceleration of the first tick (on Mars a
        0.5 m/s² start is a 7° pitch error). ``None``: no sample until the first :meth:`wheel_tick`.
    """

    def __init__(self, K, baseline_m: float, T_body_cam, *, ekf_params: EKFParams | None = None,
                 vo_params: VOParams | None = None, map_params: StereoMapParams | None = None,
                 T_world_body0=None, cov0=None, t0_s: float = 0.0, motion_prior: bool = True,
                 twist0=(0.0, 0.0, 0.0)):
        if not isinstance(motion_prior, bool):
            raise ValueError(f"motion_prior = {motion_prior!r}: must be True or False")
        self.ekf = RoverEKF(T_body_cam, ekf_params, T_world_body0, cov0, t0_s)     # validates T_body_cam
        if twist0 is not None:
            try:
                vx0, vy0, wz0 = (float(v) for v in twist0)
            except (TypeError, ValueError):
                raise ValueError(f"twist0 = {twist0!r}: must be (vx_mps, vy_mps, wz_radps) or None") from None
            self.ekf.update_wheels(t0_s, (vx0, vy0), wz0)
        Tbc = np.array(T_body_cam, dtype=np.float64)
        self.T_body_cam = Tbc
        self.vo = StereoVO(K, baseline_m, params=vo_params)
        self.vo.reset(self.ekf.T_world_body @ Tbc)            # VO's running pose in world coordinates
        self.mapper = StereoMapper(K, baseline_m, map_params)
        self.motion_prior = motion_prior
        self._T_wc_vo_prev: np.ndarray | None = None          # filter's camera pose at the last VO frame
        self._t_vo_prev: float | None = None
        self._time_map: dict[float, float] = {}              # VO frame time -> filter clone time
        self._t_frame_last = -math.inf
        self._vo_T_last = self.ekf.T_world_body @ Tbc           # VO's last running pose
        # statistics
        self._frames = 0
        self._vo_ok = 0
        self._vo_first = 0
        self._vo_failed = {k: 0 for k in FAILURE_KINDS}
        self._applied = 0
        self._rejected = 0
        self._reject_reasons: dict[str, int] = {}
        self._late = 0
        self._maps = 0
        self._max_corr = 0.0
        self._last_corr = 0.0
        self._timers = {k: _Timer() for k in ("tick", "vo", "ekf", "map")}

    @classmethod
    def from_camera(cls, camera, *, T_body_cam=None, **kw) -> "StereoNavPipeline":
        """A pipeline for a :class:`nav.config.Camera` (its ``K``, ``baseline_m`` and, unless
        ``T_body_cam`` is given, its nominal mount :func:`T_body_left`); ``kw`` as the constructor."""
        Tbc = T_body_left(camera) if T_body_cam is None else T_body_cam
        return cls(camera.K, camera.baseline_m, Tbc, **kw)

    # ------------------------------------------------------------------ state
    @property
    def t_s(self) -> float:
        """The filter's time."""
        return self.ekf.t_s

    @property
    def T_world_body(self) -> np.ndarray:
        """Current estimated body pose (4x4)."""
        return self.ekf.T_world_body

    @property
    def T_world_cam(self) -> np.ndarray:
        """Current estimated left-camera pose (4x4)."""
        return self.ekf.T_world_body @ self.T_body_cam

    @property
    def pose_cov(self) -> np.ndarray:
        """6x6 covariance of ``[dtheta (body, rad), dp (world, m)]``."""
        return self.ekf.pose_cov

    @property
    def slip(self) -> SlipEstimate:
        return self.ekf.slip

    def attitude_sigma_rad(self) -> float:
        """1-sigma of the roll/pitch estimate (the larger), what far map points' heights suffer from."""
        P = self.ekf.pose_cov
        return math.sqrt(max(P[0, 0], P[1, 1], 0.0))

    # ------------------------------------------------------------------ inputs
    def wheel_tick(self, t_s: float, vx_mps: float, vy_mps: float, wz_radps: float, gyro_radps=None,
                   accel_mps2=None) -> FilterUpdate | None:
        """One control tick: the wheels' body velocity (``drivers.kinematics.WheelLayout.forward``) and,
        when the rover has an IMU, the gyro's mean rate over the tick (rad/s, body) and the specific
        force (m/s², body). Returns the accelerometer update (None without an accelerometer)."""
        t0 = time.perf_counter()
        self.ekf.update_wheels(t_s, (vx_mps, vy_mps), wz_radps)
        upd = self.ekf.predict(t_s, gyro_radps, accel_mps2)
        self._timers["tick"].add(time.perf_counter() - t0)
        return upd

    def frame(self, t_s: float, seq: int, left, right, *, grid=None, want_map: bool = True,
              run_vo: bool = True, near: bool = False) -> PipelineFrame:
        """Process one rectified stereo pair captured at ``t_s``.

        Parameters
        ----------
        t_s : float
            Capture time (the clock of :meth:`wheel_tick`), increasing from frame to frame. A frame behind
            the filter's time is kept at the filter's time (``late_frames``); one ahead of it propagates the
            filter to it on the last wheel and gyro inputs, so the next :meth:`wheel_tick` must not be
            earlier than the frame.
        seq : int
            Frame number.
        left, right : (h, w) uint8
            Rectified grey images.
        grid : GlobalMap or nav.TerrainMap, optional
            The lattice of the local map (the planner's map).
        want_map : bool
            Build the local height map of this pair (``PipelineFrame.local``).
        run_vo : bool
            ``False``: skip VO on this frame (a VO outage; the filter is told nothing, the frame is still
            mapped at the filter's estimate).
        near : bool
            With ``want_map``, also build the near map of the pair (``PipelineFrame.near``:
            :meth:`perception.stereo_map.StereoMapper.map_pair_near`, the disparity computed once); its time
            counts in the ``"map"`` stage. Without ``want_map`` no map is built and ``near`` is ignored.

        Returns
        -------
        PipelineFrame
        """
        t_s = float(t_s)
        if not math.isfinite(t_s):
            raise ValueError(f"t_s = {t_s!r}: must be finite")
        for name, img in (("left", left), ("right", right)):
            if not isinstance(img, np.ndarray) or img.ndim != 2 or img.dtype != np.uint8:
                desc = f"{img.dtype} {img.shape}" if isinstance(img, np.ndarray) else type(img).__name__
                raise ValueError(f"{name} must be a 2-D uint8 grey image, got {desc}")
        if left.shape != right.shape:
            raise ValueError(f"left {left.shape} and right {right.shape} images differ in shape")
        if not isinstance(near, (bool, np.bool_)):
            raise TypeError(f"near = {near!r}: must be True or False")
        if not t_s > self._t_frame_last:
            raise ValueError(f"t_s = {t_s!r}: frame times must increase (previous frame at {self._t_frame_last!r})")
        self._t_frame_last = t_s
        self._frames += 1
        ekf = self.ekf
        tol = ekf.params.time_tol_s
        # --- the filter's pose at the frame (a late frame gets the filter's current time)
        late = max(0.0, ekf.t_s - t_s)
        t_ekf = t_s if late <= tol else ekf.t_s
        if late > tol:
            self._late += 1
            log.debug("frame %d at t=%.3f s is %.3f s behind the filter: kept at t=%.3f s", seq, t_s, late, t_ekf)
        t0 = time.perf_counter()
        ekf.mark_frame(t_ekf)
        T_wc_pred = ekf.T_world_body @ self.T_body_cam
        t_ekf_s = time.perf_counter() - t0
        # --- visual odometry
        t1 = time.perf_counter()
        if run_vo:
            prior = None
            if self.motion_prior and self._T_wc_vo_prev is not None:
                prior = _orthonormalise(_invert(self._T_wc_vo_prev) @ T_wc_pred)
            res = self.vo.process(left, right, t_s, seq, motion_prior=prior)
        else:
            res = VOFailure(t_s, int(seq), "VO not run on this frame (run_vo=False)", self._vo_T_last.copy(),
                            kind="skipped")
        t_vo_s = time.perf_counter() - t1
        if run_vo:
            self._timers["vo"].add(t_vo_s)
            self._vo_T_last = res.T_first_cur
        # --- the filter's update
        t2 = time.perf_counter()
        before = ekf.position_m
        if run_vo:
            self._time_map[t_s] = t_ekf
            upd = ekf.update_vo(self._remap(res, t_ekf))
            self._t_vo_prev = t_s
            self._prune_time_map()
        else:
            upd = FilterUpdate(False, math.nan, 6, res.reason)
        corr = float(np.linalg.norm(ekf.position_m - before)) if upd else 0.0
        T_wb = ekf.T_world_body
        T_wc = T_wb @ self.T_body_cam
        if run_vo:
            self._T_wc_vo_prev = T_wc
        t_ekf_s += time.perf_counter() - t2
        self._timers["ekf"].add(t_ekf_s)
        self._count(res, upd, corr)
        att = self.attitude_sigma_rad()
        # --- the local height map of the same pair, at the updated estimate
        local = near_map = None
        times = {"vo": t_vo_s, "ekf": t_ekf_s}
        if want_map:
            t3 = time.perf_counter()
            if near:
                local, near_map = self.mapper.map_pair_near(left, right, T_wc, grid=grid, attitude_sigma_rad=att)
            else:
                local = self.mapper.map_pair(left, right, T_wc, grid=grid, attitude_sigma_rad=att)
            times["map"] = time.perf_counter() - t3
            self._timers["map"].add(times["map"])
            self._maps += 1
        return PipelineFrame(t_s, int(seq), res, upd, T_wb, T_wc, ekf.pose_cov, att, corr, local, times,
                             late if late > tol else 0.0, near_map)

    def map_pair(self, left, right, T_world_cam=None, *, grid=None,
                 attitude_sigma_rad: float | None = None) -> LocalHeightMap:
        """Local height map of a pair at ``T_world_cam`` (default: the current estimate) — e.g. of a frame
        :meth:`frame` processed without a map, at its ``PipelineFrame.T_world_cam``."""
        T = self.T_world_cam if T_world_cam is None else T_world_cam
        att = self.attitude_sigma_rad() if attitude_sigma_rad is None else attitude_sigma_rad
        t0 = time.perf_counter()
        local = self.mapper.map_pair(left, right, T, grid=grid, attitude_sigma_rad=att)
        self._timers["map"].add(time.perf_counter() - t0)
        self._maps += 1
        return local

    def map_pair_near(self, left, right, T_world_cam=None, *, grid=None,
                      attitude_sigma_rad: float | None = None) -> tuple[LocalHeightMap, LocalHeightMap]:
        """:meth:`map_pair` and the near map of the same pair at the same pose, ``(local, near)``
        (:meth:`perception.stereo_map.StereoMapper.map_pair_near`: points within 2.5 m, cells of ``grid`` split
        2 x 2; the disparity computed once). Both count as one map in ``stats()``, their time in ``"map"``."""
        T = self.T_world_cam if T_world_cam is None else T_world_cam
        att = self.attitude_sigma_rad() if attitude_sigma_rad is None else attitude_sigma_rad
        t0 = time.perf_counter()
        local, near = self.mapper.map_pair_near(left, right, T, grid=grid, attitude_sigma_rad=att)
        self._timers["map"].add(time.perf_counter() - t0)
        self._maps += 1
        return local, near

    # ------------------------------------------------------------------ internals
    def _remap(self, res, t_ekf: float):
        if bool(res):
            t_ref = self._time_map.get(res.ref_t_s, res.ref_t_s)
            if t_ekf == res.t_s and t_ref == res.ref_t_s:
                return res
            return _Remapped(t_ekf, t_ref, res.T_ref_cur, res.cov, bool(res.keyframe), True)
        if t_ekf == res.t_s:
            return res
        return _Remapped(t_ekf, t_ekf, None, None, bool(res.keyframe), False, res.reason)

    def _prune_time_map(self) -> None:
        if len(self._time_map) > 4 * self.ekf.params.max_clones + 8:
            kept = set(self.ekf.clone_times_s)
            self._time_map = {k: v for k, v in self._time_map.items() if v in kept or k == self._t_vo_prev}

    def _count(self, res, upd: FilterUpdate, corr: float) -> None:
        if bool(res):
            if res.ref_seq == res.seq:
                self._vo_first += 1
            else:
                self._vo_ok += 1
                if upd:
                    self._applied += 1
                else:
                    self._rejected += 1
                    key = upd.reason.split(" at t=")[0]
                    self._reject_reasons[key] = self._reject_reasons.get(key, 0) + 1
        else:
            kind = res.kind if res.kind in self._vo_failed else "features"
            self._vo_failed[kind] += 1
        self._last_corr = corr
        self._max_corr = max(self._max_corr, corr)

    # ------------------------------------------------------------------ statistics
    def stats(self) -> dict:
        """Counters and costs so far (plain values, JSON-serialisable).

        Keys: ``frames``; ``vo_ok`` (motions measured), ``vo_first`` (track starts), ``vo_failed`` (by
        kind, :data:`FAILURE_KINDS`), ``vo_convergence`` (``vo_ok`` over the frames that could measure a
        motion — all but the first; None before the second frame), ``vo_applied`` / ``vo_rejected`` (by the
        filter, with ``vo_reject_reasons``), ``late_frames``, ``maps``, ``slip`` and ``slip_sigma``,
        ``position_sigma_m``, ``max_correction_m`` / ``last_correction_m`` (position change made by a VO
        update), ``wheel_distance_m``, ``vo_innovation_mean_nis``, ``time_ms`` (per stage ``tick``, ``vo``,
        ``ekf``, ``map``: mean, max, count).
        """
        n_motion = self._frames - 1 - self._vo_failed["skipped"]
        s = self.ekf.slip
        nis = self.ekf.innovation_stats["vo"].mean_nis
        return {
            "frames": self._frames,
            "vo_ok": self._vo_ok,
            "vo_first": self._vo_first,
            "vo_failed": dict(self._vo_failed),
            "vo_convergence": (self._vo_ok / n_motion) if n_motion > 0 else None,
            "vo_applied": self._applied,
            "vo_rejected": self._rejected,
            "vo_reject_reasons": dict(self._reject_reasons),
            "late_frames": self._late,
            "maps": self._maps,
            "slip": float(s.slip),
            "slip_sigma": float(s.sigma),
            "position_sigma_m": math.sqrt(max(float(np.trace(self.ekf.position_cov)), 0.0)),
            "max_correction_m": self._max_corr,
            "last_correction_m": self._last_corr,
            "wheel_distance_m": self.ekf.wheel_distance_m,
            "vo_innovation_mean_nis": None if math.isnan(nis) else float(nis),
            "time_ms": {k: t.ms() for k, t in self._timers.items()},
        }

    def __repr__(self) -> str:
        st = self.stats()
        conv = st["vo_convergence"]
        return (f"StereoNavPipeline({self.ekf!r}, frames={st['frames']}, "
                f"VO converged {'-' if conv is None else f'{100 * conv:.1f} %'})")
