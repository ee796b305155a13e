"""Rover state estimation: an error-state EKF fusing wheel odometry, gyro, accelerometer, visual odometry
and (optionally) an absolute heading, with the wheels' slip as a state.

Why this filter
---------------
On sand and slopes the wheels lie: they report how far they *turned*, not how far the rover *went*.
MER caught slip up to 125 % by comparing the wheels' motion with visual odometry's (Maimone, Cheng &
Matthies 2007, "Two years of visual odometry on the Mars Exploration Rovers", J. Field Robotics 24(3)).
This filter does the same continuously: the rover's true velocity along the ground is the wheels'
velocity times a *traction* factor ``k = 1 - slip`` kept in the state; VO's relative poses observe ``k``
(and the gyro's bias); between VO updates, or while VO is down, the wheels and gyro carry the pose with
the last ``k`` and a covariance that grows with the distance driven. Nothing is ever reset, so when VO
comes back the estimate moves only by what the new measurement says, never jumps to VO's own pose.

Frames and conventions
----------------------
* World: ENU (x east, y north, z up). Body: REP-103 (x forward, y left, z up), origin at the wheel
  footprint centre on the ground. ``T_world_body`` maps body points to world points. Cameras: OpenCV
  axes (x right, y down, z forward); ``T_body_cam`` is the left camera's pose in the body frame.
* Nominal state: attitude ``R_world_body``, position ``p_world`` (m), gyro bias ``b_g`` (rad/s, body),
  accelerometer bias ``b_a`` (m/s², body), traction ``k`` (= 1 - slip, dimensionless).
* Error state (13): ``[dtheta (3), dp (3), db_g (3), db_a (3), dk (1)]`` with the attitude error on the
  right, in the body frame (``R = R_hat Exp(dtheta)``) and the position error in the world frame
  (``p = p_hat + dp``) — the error-state ("multiplicative") EKF of Solà 2017, "Quaternion kinematics for
  the error-state Kalman filter", arXiv:1711.02508, §5–7.
* Stochastic clones (Roumeliotis & Burdick 2002, "Stochastic cloning: a generalized framework for
  processing relative state measurements", ICRA): the body pose at each camera frame time is copied
  into the state (6 error entries ``[dtheta, dp]`` each) with its full cross-covariance, so a VO
  relative pose between a reference frame and the current frame is a measurement of two *uncertain*
  poses — the reference is not treated as certain.

Process model (per :meth:`RoverEKF.predict` interval ``dt``)
----------------------------------------------------------
``omega = gyro - b_g`` (or the wheels' yaw rate when there is no gyro),
``R+ = R Exp(omega dt)``, ``p+ = p + R Exp(omega dt / 2) k (v_x, v_y, 0) dt`` with ``(v_x, v_y)`` the
wheel-odometry body velocity (piecewise-linear between :meth:`RoverEKF.update_wheels` samples).
Noise: gyro angle random walk (``dt``); body-frame velocity noise per metre of wheel travel (along,
across, vertical: terrain, lateral drift on side slopes); bias random walks (``dt``); a slip random walk
per metre of wheel travel (slip changes when the ground does, not while the rover stands still).

Measurements
------------
* **Accelerometer** (with every :meth:`RoverEKF.predict` that has one): specific force
  ``f = R^T (a_world + g z) + b_a``, the motion term ``a_body = dv/dt + omega x v`` taken from the
  wheels; observes roll and pitch (never yaw). Chi-square gated: bumps on rough ground are skipped.
* **Visual odometry** (:meth:`RoverEKF.update_vo`): ``T_ref_cur``, the current left-camera pose in the
  reference left-camera frame, with its 6x6 covariance on the right tangent ``[rotvec, translation]``
  (``T_true = T_meas Exp(d)``). Residual ``[Log(R_m^T R_pred), R_m^T (t_pred - t_m)]`` (first order in
  ``d``; identical to the SE(3) tangent to first order).
* **Heading** (:meth:`RoverEKF.update_heading`): yaw of ``R_world_body`` (``Rz(yaw) Ry(pitch) Rx(roll)``)
  from a sun sensor or compass.
* **Zero rate** (automatic in :meth:`RoverEKF.predict`): while the wheels stand still the gyro reads its
  own bias — every stop calibrates all three gyro biases (the turn-on bias of a cheap MEMS gyro,
  ~0.1 °/s, is 20° of heading over a 3-minute drive if nothing observes it).

What is observable
------------------
Roll, pitch and the gyro's x/y bias through gravity; the accelerometer bias only weakly (through changes
of attitude); the gyro's z bias through VO, heading or standstills; ``k`` only through VO (without VO it
keeps its last value and its variance grows with the distance driven); global position and yaw never
without absolute measurements — their covariance grows, as it should.

Limitations
-----------
* Slip is a random walk per metre: an abrupt change (a sand patch) is caught one VO frame later; if it
  happens during a VO dropout the covariance under-states the error until VO returns, and the first VO
  update then corrects the position by what the wheels over-reported.
* No first-estimates Jacobians (Huang, Mourikis & Roumeliotis 2008): like every standard EKF with
  unobservable yaw, it can gain a little spurious yaw information; in Monte Carlo runs the yaw NEES is
  ~1.3x its nominal value, the pose ANEES stays inside the chi-square bounds.
* The accelerometer's motion term comes from the wheels (``k`` times their acceleration and
  ``omega x v``); bumps the wheels do not see are left to the measurement noise and the gate.

Performance
-----------
Plain numpy on matrices of at most ``13 + 6 * max_clones`` rows: tens of microseconds per predict and a
few hundred per VO update (``benchmarks/bench_estimator.py``), negligible next to VO's tens of
milliseconds per frame. Numba would save little: the cost is Python call overhead on tiny matrices, not
arithmetic, so there is no kernel module.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, fields
from typing import NamedTuple

import numpy as np

__all__ = ["EKFParams", "RoverEKF", "FilterUpdate", "InnovationStats", "SlipEstimate", "chi2_ppf"]

log = logging.getLogger(__name__)

# error-state layout
_TH = slice(0, 3)
_P = slice(3, 6)
_BG = slice(6, 9)
_BA = slice(9, 12)
_K = 12
_N_CORE = 13
_E3 = np.array([0.0, 0.0, 1.0])
_I3 = np.eye(3)
_I3.setflags(write=False)
_EYE13 = np.eye(_N_CORE)
_EYE13.setflags(write=False)


# ----------------------------------------------------------------------------- SO(3) helpers
def _skew(v) -> np.ndarray:
    x, y, z = float(v[0]), float(v[1]), float(v[2])
    return np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])


def _cross(a, b) -> np.ndarray:
    return np.array([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])


def _exp_so3(phi) -> np.ndarray:
    """Rotation matrix of a rotation vector (Rodrigues; series near 0), written out in scalars."""
    x, y, z = float(phi[0]), float(phi[1]), float(phi[2])
    th2 = x * x + y * y + z * z
    if th2 < 1e-12:
        a, b = 1.0 - th2 / 6.0, 0.5 - th2 / 24.0
    else:
        th = math.sqrt(th2)
        a, b = math.sin(th) / th, (1.0 - math.cos(th)) / th2
    bxy, bxz, byz = b * x * y, b * x * z, b * y * z
    return np.array([[1.0 - b * (y * y + z * z), bxy - a * z, bxz + a * y],
                     [bxy + a * z, 1.0 - b * (x * x + z * z), byz - a * x],
                     [bxz - a * y, byz + a * x, 1.0 - b * (x * x + y * y)]])


def _log_so3(R) -> np.ndarray:
    """Rotation vector of a rotation matrix (angle in [0, pi])."""
    R = np.asarray(R, dtype=np.float64)
    c = max(-1.0, min(1.0, 0.5 * (R[0, 0] + R[1, 1] + R[2, 2] - 1.0)))
    w = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]])
    if c > 1.0 - 1e-10:                       # tiny angle: sin(th)/th ~ 1
        return 0.5 * w
    th = math.acos(c)
    if th > math.pi - 1e-5:                   # near pi: from the symmetric part
        B = 0.5 * (R + R.T) - c * np.eye(3)        # = (1 - cos th) a a^T
        i = int(np.argmax(np.diag(B)))
        axis = B[:, i] / np.linalg.norm(B[:, i])
        if axis @ w < 0:
            axis = -axis
        return th * axis
    return (0.5 * th / math.sin(th)) * w


def _jr(phi) -> np.ndarray:
    """Right Jacobian of SO(3): ``Exp(phi + d) ~ Exp(phi) Exp(Jr(phi) d)``."""
    th2 = float(phi @ phi)
    K = _skew(phi)
    if th2 < 1e-10:
        return _I3 - 0.5 * K + (K @ K) / 6.0
    th = math.sqrt(th2)
    return _I3 - ((1.0 - math.cos(th)) / th2) * K + ((th - math.sin(th)) / (th2 * th)) * (K @ K)


def _jr_inv(phi) -> np.ndarray:
    """Inverse of :func:`_jr`: ``Log(Exp(phi) Exp(d)) ~ phi + Jr^-1(phi) d``."""
    th2 = float(phi @ phi)
    K = _skew(phi)
    if th2 < 1e-10:
        return _I3 + 0.5 * K + (K @ K) / 12.0
    th = math.sqrt(th2)
    return _I3 + 0.5 * K + (1.0 / th2 - (1.0 + math.cos(th)) / (2.0 * th * math.sin(th))) * (K @ K)


def _yaw_of(R) -> float:
    return math.atan2(R[1, 0], R[0, 0])


def _wrap(a: float) -> float:
    return (a + math.pi) % (2.0 * math.pi) - math.pi


# ----------------------------------------------------------------------------- chi-square quantiles
def _chi2_cdf(x: float, dof: int) -> float:
    """Regularised lower incomplete gamma ``P(dof/2, x/2)`` by its power series (converges for all x)."""
    if x <= 0:
        return 0.0
    a, z = 0.5 * dof, 0.5 * x
    term = 1.0 / a
    total = term
    n = 1
    while n < 10000:
        term *= z / (a + n)
        total += term
        if term < total * 1e-16:
            break
        n += 1
    return math.exp(a * math.log(z) - z - math.lgamma(a)) * total


_PPF_CACHE: dict = {}


def chi2_ppf(prob: float, dof: int) -> float:
    """Quantile of the chi-square distribution with ``dof`` degrees of freedom (bisection on the CDF).

    Used for the innovation gates and the NIS bounds without a scipy dependency.
    """
    if not (0.0 < prob < 1.0):
        raise ValueError(f"prob = {prob!r}: must be in (0, 1)")
    if not (isinstance(dof, (int, np.integer)) and dof >= 1):
        raise ValueError(f"dof = {dof!r}: must be an integer >= 1")
    key = (float(prob), int(dof))
    if key not in _PPF_CACHE:
        lo, hi = 0.0, max(10.0, 4.0 * dof)
        while _chi2_cdf(hi, dof) < prob:
            hi *= 2.0
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            if _chi2_cdf(mid, dof) < prob:
                lo = mid
            else:
                hi = mid
            if hi - lo < 1e-12 * hi:
                break
        _PPF_CACHE[key] = 0.5 * (lo + hi)
    return _PPF_CACHE[key]


# ----------------------------------------------------------------------------- parameters and results
@dataclass(frozen=True, kw_only=True)
class EKFParams:
    """Noise model and tunables of :class:`RoverEKF` (SI units, 1-sigma values).

    Defaults suit the JPL Open Source Rover profile in the simulator on sand; build from a rover
    profile with :meth:`for_rover`. Densities are per square root of time (``_per_sqrt_s``) or of wheel
    travel (``_per_sqrt_m``): a random walk of ``q`` per sqrt(m) has standard deviation ``q sqrt(d)``
    after ``d`` metres.

    Attributes
    ----------
    gravity_mps2 : planet's surface gravity (the accelerometer's reference).
    gyro_noise_rad_per_sqrt_s : gyro angle random walk.
    gyro_bias_sigma_radps : prior (turn-on) gyro bias, per axis.
    gyro_bias_walk_radps_per_sqrt_s : gyro bias instability as a random walk.
    accel_noise_mps2 : per accelerometer reading, including unmodelled motion (bumps).
    accel_bias_sigma_mps2, accel_bias_walk_mps2_per_sqrt_s : accelerometer bias prior and walk.
    accel_gate_prob : chi-square gate on accelerometer updates (``None``: no gate).
    wheel_along_m_per_sqrt_m, wheel_across_m_per_sqrt_m, wheel_vertical_m_per_sqrt_m : body-frame
        translation noise per metre of wheel travel (beyond what the slip state explains).
    wheel_yaw_rad_per_sqrt_m, wheel_turn_rad_per_sqrt_rad : attitude noise when the wheels' yaw rate
        stands in for a missing gyro (per metre driven and per radian turned).
    slip0, slip_sigma0 : prior slip ratio (``1 - ground speed / wheel speed``) and its sigma.
    slip_walk_per_sqrt_m : how fast slip can change, per metre of wheel travel.
    wheel_timeout_s : beyond this long after the last wheel sample the wheels' velocity is still held, but
        the position sigma grows by the whole held displacement, ``|v| T`` after ``T`` stale seconds, on
        each axis (the filter does not pretend to know where a rover without wheel telemetry went).
    zero_rate_update, zero_rate_sigma_radps, stationary_tol_mps : while the wheels stand still (every wheel
        sample of the interval below ``stationary_tol_mps`` and its yaw rate below ``stationary_tol_mps``
        per metre), the gyro reads its own bias: a zero-rate update with ``zero_rate_sigma_radps`` for
        the chassis' residual motion calibrates all three gyro biases at every stop.
    max_clones : past poses kept for VO references (at least 2: the reference and the current frame).
    vo_gate_prob, heading_gate_prob : chi-square gates (``None``: accept every measurement; VO rejects its
        own outliers, so its gate is off by default).
    time_tol_s : how close a VO frame time must be to a kept pose's time to match it.
    """
    gravity_mps2: float = 9.80665
    gyro_noise_rad_per_sqrt_s: float = 1.2e-4
    gyro_bias_sigma_radps: float = 1.75e-3
    gyro_bias_walk_radps_per_sqrt_s: float = 3.5e-5
    accel_noise_mps2: float = 0.1
    accel_bias_sigma_mps2: float = 0.02
    accel_bias_walk_mps2_per_sqrt_s: float = 1e-4
    accel_gate_prob: float | None = 0.999
    wheel_along_m_per_sqrt_m: float = 0.01
    wheel_across_m_per_sqrt_m: float = 0.02
    wheel_vertical_m_per_sqrt_m: float = 0.02
    wheel_yaw_rad_per_sqrt_m: float = 0.03
    wheel_turn_rad_per_sqrt_rad: float = 0.05
    slip0: float = 0.0
    slip_sigma0: float = 0.3
    slip_walk_per_sqrt_m: float = 0.05
    wheel_timeout_s: float = 0.5
    zero_rate_update: bool = True
    zero_rate_sigma_radps: float = 2e-4
    stationary_tol_mps: float = 1e-3
    max_clones: int = 8
    vo_gate_prob: float | None = None
    heading_gate_prob: float | None = 0.999
    time_tol_s: float = 1e-3

    _RULES = {  # name: (lo, hi, lo_open)
        "gravity_mps2": (0.0, 50.0, True),
        "gyro_noise_rad_per_sqrt_s": (0.0, 1.0, True),
        "gyro_bias_sigma_radps": (0.0, 1.0, False),
        "gyro_bias_walk_radps_per_sqrt_s": (0.0, 1.0, False),
        "accel_noise_mps2": (0.0, 100.0, True),
        "accel_bias_sigma_mps2": (0.0, 10.0, False),
        "accel_bias_walk_mps2_per_sqrt_s": (0.0, 10.0, False),
        "wheel_along_m_per_sqrt_m": (0.0, 10.0, True),
        "wheel_across_m_per_sqrt_m": (0.0, 10.0, True),
        "wheel_vertical_m_per_sqrt_m": (0.0, 10.0, True),
        "wheel_yaw_rad_per_sqrt_m": (0.0, 10.0, True),
        "wheel_turn_rad_per_sqrt_rad": (0.0, 10.0, True),
        "slip0": (-5.0, 5.0, False),
        "slip_sigma0": (0.0, 10.0, True),
        "slip_walk_per_sqrt_m": (0.0, 10.0, False),
        "time_tol_s": (0.0, 1.0, True),
        "zero_rate_sigma_radps": (0.0, 1.0, True),
        "wheel_timeout_s": (0.0, 60.0, True),
        "stationary_tol_mps": (0.0, 1.0, False),
    }

    def __post_init__(self):
        for name, (lo, hi, lo_open) in self._RULES.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
                    or not math.isfinite(v):
                raise ValueError(f"EKFParams.{name} = {v!r}: must be a finite number")
            if (v <= lo if lo_open else v < lo) or v > hi:
                raise ValueError(f"EKFParams.{name} = {v!r}: must be within {'(' if lo_open else '['}{lo:g}, {hi:g}]")
        for name in ("accel_gate_prob", "vo_gate_prob", "heading_gate_prob"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (float, int)) and 0.0 < v < 1.0):
                raise ValueError(f"EKFParams.{name} = {v!r}: must be None or a probability in (0, 1)")
        if not isinstance(self.zero_rate_update, bool):
            raise ValueError(f"EKFParams.zero_rate_update = {self.zero_rate_update!r}: must be True or False")
        if isinstance(self.max_clones, bool) or not isinstance(self.max_clones, (int, np.integer)) \
                or not (2 <= self.max_clones <= 64):
            raise ValueError(f"EKFParams.max_clones = {self.max_clones!r}: must be an integer within [2, 64]")

    @classmethod
    def for_rover(cls, profile, planet=None, *, imu_rate_hz: float = 50.0, **overrides) -> "EKFParams":
        """Parameters from a :class:`nav.config.RoverProfile`'s ``sensors`` (and a
        :class:`nav.config.Planet`'s gravity).

        The profile gives white noise *per sample* of an IMU sampling at ``imu_rate_hz`` (the
        simulator's physics rate, 50 Hz); the angle random walk is ``sigma / sqrt(rate)``.
        ``overrides`` replace any field.
        """
        if not (isinstance(imu_rate_hz, (int, float)) and imu_rate_hz > 0):
            raise ValueError(f"imu_rate_hz = {imu_rate_hz!r}: must be > 0")
        s = profile.sensors
        kw = dict(
            gyro_noise_rad_per_sqrt_s=max(math.radians(s.gyro_noise_dps) / math.sqrt(imu_rate_hz), 1e-7),
            gyro_bias_sigma_radps=math.radians(s.gyro_bias_dps),
            gyro_bias_walk_radps_per_sqrt_s=math.radians(s.gyro_bias_walk_dps),
            accel_bias_sigma_mps2=s.accel_bias_mps2,
        )
        if planet is not None:
            kw["gravity_mps2"] = float(planet.gravity_mps2)
        names = {f.name for f in fields(cls)}
        bad = sorted(set(overrides) - names)
        if bad:
            raise TypeError(f"EKFParams.for_rover: unknown parameter(s) {bad}")
        kw.update(overrides)
        return cls(**kw)


class FilterUpdate(NamedTuple):
    """Outcome of one measurement update: truthy when the measurement was applied.

    ``nis`` is the normalised innovation squared ``r^T S^-1 r`` (NaN if never computed), ``dof`` its
    degrees of freedom; ``reason`` says why a measurement was not applied.
    """
    accepted: bool
    nis: float
    dof: int
    reason: str = ""

    def __bool__(self) -> bool:
        return bool(self.accepted)


class SlipEstimate(NamedTuple):
    """Estimated longitudinal slip ``1 - ground speed / wheel speed`` and its 1-sigma."""
    slip: float
    sigma: float


@dataclass
class InnovationStats:
    """Running innovation statistics of one sensor (consistency checks, health monitoring).

    ``mean_nis`` should be near ``dof`` and ``frac_above_95`` near 0.05 for a consistent filter.
    ``failures`` counts inputs that carried no measurement (VO failures).
    """
    dof: int
    count: int = 0
    rejected: int = 0
    failures: int = 0
    nis_sum: float = 0.0
    above_95: int = 0
    last_nis: float = math.nan
    last_reason: str = ""

    @property
    def mean_nis(self) -> float:
        return self.nis_sum / self.count if self.count else math.nan

    @property
    def frac_above_95(self) -> float:
        return self.above_95 / self.count if self.count else math.nan


@dataclass
class _Clone:
    t_s: float
    R: np.ndarray
    p: np.ndarray
    keyframe: bool = False


class _RelativePose(NamedTuple):
    """A VO-shaped measurement built by :meth:`RoverEKF.update_relative_pose`."""
    t_s: float
    ref_t_s: float
    T_ref_cur: np.ndarray
    cov: np.ndarray
    keyframe: bool = False


def _adjoint(T) -> np.ndarray:
    """Adjoint of ``T = (R, t)`` on ``[rotvec, translation]`` tangent vectors, ``T Exp(d) T^-1 = Exp(Ad(T) d)``:
    ``[[R, 0], [t^ R, R]]``."""
    R, t = T[:3, :3], T[:3, 3]
    A = np.zeros((6, 6))
    A[:3, :3] = R
    A[3:, 3:] = R
    A[3:, :3] = _skew(t) @ R
    return A


def _as_T(T, name) -> np.ndarray:
    a = np.asarray(T, dtype=np.float64)
    if a.shape != (4, 4) or not np.isfinite(a).all():
        raise ValueError(f"{name} must be a finite 4x4 transform, got shape {a.shape}")
    R = a[:3, :3]
    if not np.allclose(R.T @ R, np.eye(3), atol=1e-6) or np.linalg.det(R) < 0 \
            or not np.allclose(a[3], [0.0, 0.0, 0.0, 1.0]):
        raise ValueError(f"{name} must be a rigid transform (orthonormal rotation, det +1, last row 0 0 0 1)")
    return a.copy()


def _finite_vec(v, n, name) -> np.ndarray:
    try:
        a = np.asarray(v, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"{name} = {v!r}: must be {n} numbers") from None
    if a.shape != (n,) or not np.isfinite(a).all():
        raise ValueError(f"{name} = {v!r}: must be {n} finite numbers")
    return a


def _finite(v, name) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(v):
        raise ValueError(f"{name} = {v!r}: must be a finite number")
    return float(v)


def _process(R0, p0, bg, k, wm, dt, gyro, pr):
    """One propagation step: nominal ``(R1, p1)``, error-state transition ``F`` (13x13), process noise ``Q``
    and the wheel travel ``ds``. ``wm`` = mean wheel ``(vx, vy, wz)`` over the interval; ``gyro`` = mean
    gyro rate or ``None`` (then the wheels' yaw rate drives the attitude)."""
    u = np.array([wm[0], wm[1], 0.0])
    ds = math.hypot(wm[0], wm[1]) * dt
    w = (gyro - bg) if gyro is not None else np.array([0.0, 0.0, wm[2]])
    phi = w * dt
    Rinc = _exp_so3(phi)
    Mh = _exp_so3(0.5 * phi)
    dpb = Mh @ (k * u) * dt                  # body-frame displacement over the interval (midpoint attitude)
    RM = R0 @ Mh
    F = _EYE13.copy()
    F[_TH, _TH] = Rinc.T
    F[_P, _TH] = -R0 @ _skew(dpb)
    F[_P, _K] = RM @ u * dt
    Q = np.zeros((_N_CORE, _N_CORE))
    if gyro is not None:
        F[_TH, _BG] = -_jr(phi) * dt
        F[_P, _BG] = RM @ _skew(k * u * dt) @ _jr(0.5 * phi) * (0.5 * dt)
        qth = pr.gyro_noise_rad_per_sqrt_s ** 2 * dt
    else:
        q = pr.wheel_yaw_rad_per_sqrt_m ** 2 * ds + pr.wheel_turn_rad_per_sqrt_rad ** 2 * abs(phi[2])
        qth = max(q, 1e-12 * dt)
    qb = np.array([pr.wheel_along_m_per_sqrt_m, pr.wheel_across_m_per_sqrt_m,
                   pr.wheel_vertical_m_per_sqrt_m]) ** 2 * ds
    Q[_P, _P] = (RM * qb) @ RM.T
    qbg = pr.gyro_bias_walk_radps_per_sqrt_s ** 2 * dt
    qba = pr.accel_bias_walk_mps2_per_sqrt_s ** 2 * dt
    for i in range(3):
        Q[i, i] = qth
        Q[6 + i, 6 + i] = qbg
        Q[9 + i, 9 + i] = qba
    Q[_K, _K] = pr.slip_walk_per_sqrt_m ** 2 * ds
    return R0 @ Rinc, p0 + R0 @ dpb, F, Q, ds


# ----------------------------------------------------------------------------- the filter
class RoverEKF:
    """Error-state EKF over attitude, position, gyro and accelerometer biases and wheel traction, with
    stochastic clones of past poses for relative (VO) measurements. See the module docstring.

    Parameters
    ----------
    T_body_cam : (4, 4) array
        Left camera pose in the body frame (``StereoFrame.T_body_left``); VO poses are of this camera.
    params : EKFParams, optional
    T_world_body0 : (4, 4) array, optional
        Initial body pose (default identity).
    cov0 : (6, 6) array, optional
        Initial pose covariance over ``[dtheta (body, rad), dp (world, m)]``. Default: 3° on roll and
        pitch, zero on yaw and position (the start defines the map frame).
    t0_s : float
        Time of the initial pose.

    Typical loop (10 Hz telemetry)::

        vx, vy, wz = layout.forward(tm.wheel_speed_radps, tm.steer_rad)
        ekf.update_wheels(tm.t_s, (vx, vy), wz)            # wheel sample first ...
        ekf.predict(tm.t_s, tm.imu.gyro_radps, tm.imu.accel_mps2)   # ... then propagate to it
        if frame_captured:
            ekf.mark_frame(frame.t_s)                      # keep the pose at the frame time
        if vo_result_ready:
            ekf.update_vo(vo_result)                       # VOResult or VOFailure
    """

    def __init__(self, T_body_cam, params: EKFParams | None = None, T_world_body0=None, cov0=None,
                 t0_s: float = 0.0):
        self.params = EKFParams() if params is None else params
        if not isinstance(self.params, EKFParams):
            raise TypeError(f"params must be EKFParams, got {type(self.params).__name__}")
        Tbc = _as_T(T_body_cam, "T_body_cam")
        self._R_bc = Tbc[:3, :3].copy()
        self._t_bc = Tbc[:3, 3].copy()
        T0 = np.eye(4) if T_world_body0 is None else _as_T(T_world_body0, "T_world_body0")
        self._R = T0[:3, :3].copy()
        self._p = T0[:3, 3].copy()
        self._bg = np.zeros(3)
        self._ba = np.zeros(3)
        pr = self.params
        self._k = 1.0 - pr.slip0
        self._t = _finite(t0_s, "t0_s")
        P = np.zeros((_N_CORE, _N_CORE))
        if cov0 is None:
            P[0, 0] = P[1, 1] = math.radians(3.0) ** 2
        else:
            C = np.asarray(cov0, dtype=np.float64)
            if C.shape != (6, 6) or not np.isfinite(C).all() or not np.allclose(C, C.T, atol=1e-12):
                raise ValueError(f"cov0 must be a finite symmetric 6x6 matrix, got shape {C.shape}")
            if np.linalg.eigvalsh(C).min() < -1e-12:
                raise ValueError("cov0 must be positive semi-definite")
            P[:6, :6] = C
        P[_BG, _BG] = np.eye(3) * pr.gyro_bias_sigma_radps ** 2
        P[_BA, _BA] = np.eye(3) * pr.accel_bias_sigma_mps2 ** 2
        P[_K, _K] = pr.slip_sigma0 ** 2
        self._P = P
        self._clones: list[_Clone] = []
        # wheel samples (t, [vx, vy, wz]) — the last two, for piecewise-linear integration
        self._w_prev: tuple[float, np.ndarray] | None = None
        self._w_last: tuple[float, np.ndarray] | None = None
        self._gyro_last: np.ndarray | None = None
        self._stale_logged = False
        self._gate = {name: (None if prob is None else chi2_ppf(prob, dof)) for name, prob, dof in (
            ("accel", pr.accel_gate_prob, 3), ("vo", pr.vo_gate_prob, 6), ("heading", pr.heading_gate_prob, 1))}
        self._b95 = {1: chi2_ppf(0.95, 1), 3: chi2_ppf(0.95, 3), 6: chi2_ppf(0.95, 6)}
        self._gate["zero_rate"] = None
        self._stats = {"accel": InnovationStats(3), "vo": InnovationStats(6), "heading": InnovationStats(1),
                       "zero_rate": InnovationStats(3)}
        self._distance_m = 0.0

    # ------------------------------------------------------------------ state access
    @property
    def t_s(self) -> float:
        """Time the state refers to."""
        return self._t

    @property
    def T_world_body(self) -> np.ndarray:
        """Estimated body pose (4x4, a copy)."""
        T = np.eye(4)
        T[:3, :3] = self._R
        T[:3, 3] = self._p
        return T

    @property
    def position_m(self) -> np.ndarray:
        return self._p.copy()

    @property
    def R_world_body(self) -> np.ndarray:
        return self._R.copy()

    @property
    def yaw_pitch_roll_rad(self) -> tuple[float, float, float]:
        """Euler angles of ``R_world_body = Rz(yaw) Ry(pitch) Rx(roll)`` (positive pitch = nose down)."""
        R = self._R
        return (math.atan2(R[1, 0], R[0, 0]), math.asin(max(-1.0, min(1.0, -R[2, 0]))),
                math.atan2(R[2, 1], R[2, 2]))

    @property
    def cov(self) -> np.ndarray:
        """Covariance of the 13 core error states ``[dtheta (body), dp (world), db_g, db_a, dk]`` (a copy)."""
        return self._P[:_N_CORE, :_N_CORE].copy()

    @property
    def pose_cov(self) -> np.ndarray:
        """6x6 covariance of ``[dtheta (body, rad), dp (world, m)]`` (a copy)."""
        return self._P[:6, :6].copy()

    @property
    def position_cov(self) -> np.ndarray:
        """3x3 world-frame position covariance (m²)."""
        return self._P[_P, _P].copy()

    @property
    def gyro_bias_radps(self) -> np.ndarray:
        return self._bg.copy()

    @property
    def accel_bias_mps2(self) -> np.ndarray:
        return self._ba.copy()

    @property
    def slip(self) -> SlipEstimate:
        """Estimated slip ratio ``1 - ground speed / wheel speed`` (1 = wheels spinning in place, > 1 =
        sliding back while the wheels drive forward) and its 1-sigma."""
        return SlipEstimate(1.0 - self._k, math.sqrt(max(self._P[_K, _K], 0.0)))

    @property
    def innovation_stats(self) -> dict[str, InnovationStats]:
        """Per-sensor NIS statistics: keys ``"vo"``, ``"accel"``, ``"heading"``, ``"zero_rate"`` (live
        objects)."""
        return self._stats

    @property
    def wheel_distance_m(self) -> float:
        """Total wheel travel integrated so far (what the wheels claim, slip included)."""
        return self._distance_m

    @property
    def clone_times_s(self) -> list[float]:
        """Times of the past poses kept for VO references."""
        return [c.t_s for c in self._clones]

    @property
    def state_size(self) -> int:
        return self._P.shape[0]

    # ------------------------------------------------------------------ inputs
    def update_wheels(self, t_s: float, v_body_mps, wz_radps: float | None = None) -> None:
        """Record a wheel-odometry sample: body velocity ``vx`` or ``(vx, vy)`` (m/s) at ``t_s`` (from
        :meth:`drivers.kinematics.WheelLayout.forward` on wheel speeds and steering, or encoder deltas
        over the last interval) and the wheels' yaw rate (used only when :meth:`predict` gets no gyro).

        The wheel velocity is the input of the position propagation, linearly interpolated between
        samples and held after the last one: give the sample *before* calling :meth:`predict` for the
        same time.
        """
        t = _finite(t_s, "t_s")
        if np.ndim(v_body_mps) == 0:
            vx, vy = _finite(v_body_mps, "v_body_mps"), 0.0
        else:
            vx, vy = _finite_vec(v_body_mps, 2, "v_body_mps")
        wz = 0.0 if wz_radps is None else _finite(wz_radps, "wz_radps")
        if self._w_last is not None and t < self._w_last[0] - 1e-9:
            raise ValueError(f"t_s = {t:.6f}: wheel samples must come in time order (last {self._w_last[0]:.6f})")
        sample = (t, np.array([vx, vy, wz]))
        self._stale_logged = False
        if self._w_last is not None and t <= self._w_last[0] + 1e-9:
            self._w_last = sample          # same time: replace
        else:
            self._w_prev, self._w_last = self._w_last, sample

    def _wheel_at(self, t: float) -> np.ndarray:
        if self._w_last is None:
            return np.zeros(3)
        t1, v1 = self._w_last
        if self._w_prev is None or t >= t1:
            return v1
        t0, v0 = self._w_prev
        if t <= t0:
            return v0
        return v0 + (v1 - v0) * ((t - t0) / (t1 - t0))

    def _wheel_mean(self, a: float, b: float) -> np.ndarray:
        """Mean of the piecewise-linear (held outside) wheel signal over [a, b]."""
        if self._w_last is None:
            return np.zeros(3)
        if self._w_prev is None:
            return self._w_last[1]
        t0, v0 = self._w_prev
        t1, v1 = self._w_last

        def G(t):   # integral from t0 to t
            if t <= t0:
                return v0 * (t - t0)
            if t < t1:
                u = t - t0
                return v0 * u + (v1 - v0) * (u * u / (2.0 * (t1 - t0)))
            return 0.5 * (v0 + v1) * (t1 - t0) + v1 * (t - t1)
        return (G(b) - G(a)) / (b - a)

    def _wheel_accel(self) -> np.ndarray:
        if self._w_prev is None or self._w_last is None:
            return np.zeros(3)
        dt = self._w_last[0] - self._w_prev[0]
        if dt <= 1e-6:
            return np.zeros(3)
        return (self._w_last[1] - self._w_prev[1]) / dt

    # ------------------------------------------------------------------ propagation
    def predict(self, t_s: float, gyro_radps=None, accel_mps2=None) -> FilterUpdate | None:
        """Propagate to ``t_s`` with the gyro's mean body rate over the interval since the last call
        (``None``: the wheels' yaw rate, roll and pitch rates zero — wheel-only dead reckoning) and the
        wheel velocity; then, if ``accel_mps2`` (specific force, body, m/s²) is given, correct roll and
        pitch with it. Returns the accelerometer update (or ``None`` without one).
        """
        t = _finite(t_s, "t_s")
        if t < self._t - 1e-9:
            raise ValueError(f"t_s = {t:.6f} is before the filter's time {self._t:.6f}: inputs must come in "
                             f"time order")
        gyro = None if gyro_radps is None else _finite_vec(gyro_radps, 3, "gyro_radps")
        acc = None if accel_mps2 is None else _finite_vec(accel_mps2, 3, "accel_mps2")
        if gyro is not None:
            self._gyro_last = gyro
        dt = t - self._t
        t_prev = self._t
        if dt > 0:
            self._propagate(t, gyro)
            if gyro is not None and self.params.zero_rate_update and self._stationary_since(t_prev):
                r = self._bg - gyro
                var = self.params.gyro_noise_rad_per_sqrt_s ** 2 / dt + self.params.zero_rate_sigma_radps ** 2
                self._update("zero_rate", r, [(6, _I3)], _I3 * var)
        if acc is None:
            return None
        return self._update_accel(acc, gyro)

    def _stationary_since(self, t0: float) -> bool:
        """Every wheel sample bearing on [t0, now] says the wheels stand still."""
        if self._w_last is None:
            return False
        tol = self.params.stationary_tol_mps
        for smp in (self._w_prev, self._w_last):
            if smp is None:
                continue
            if smp is self._w_prev and self._w_last[0] <= t0:
                continue            # the older sample does not reach into the interval
            v = smp[1]
            if abs(v[0]) > tol or abs(v[1]) > tol or abs(v[2]) > tol:
                return False
        return True

    def _propagate(self, t: float, gyro) -> None:
        dt = t - self._t
        wm = self._wheel_mean(self._t, t)
        R1, p1, F, Q, ds = _process(self._R, self._p, self._bg, self._k, wm, dt, gyro, self.params)
        if self._w_last is not None:
            t_stale = self._w_last[0] + self.params.wheel_timeout_s
            if t > t_stale:
                if not self._stale_logged:
                    log.warning("no wheel sample since t=%.3f s: holding the last velocity with growing uncertainty",
                                self._w_last[0])
                    self._stale_logged = True
                # variance (|v| T)^2 after T seconds of staleness, whatever the step size
                v = self._w_last[1]
                T0, T1 = max(0.0, self._t - t_stale), t - t_stale
                var = (v[0] * v[0] + v[1] * v[1]) * (T1 * T1 - T0 * T0)
                Q[3, 3] += var
                Q[4, 4] += var
                Q[5, 5] += var
        self._R, self._p, self._t = R1, p1, t
        self._distance_m += ds
        # covariance: P <- F_aug P F_aug^T + Q with F_aug = blockdiag(F, I) (clones do not move)
        P = self._P
        P[:_N_CORE, :] = F @ P[:_N_CORE, :]
        P[:, :_N_CORE] = P[:, :_N_CORE] @ F.T
        P[:_N_CORE, :_N_CORE] += Q

    def _advance_to(self, t: float, what: str) -> None:
        if t < self._t - self.params.time_tol_s:
            raise ValueError(f"{what} at t_s = {t:.6f} is before the filter's time {self._t:.6f}: "
                             f"inputs must come in time order")
        if t > self._t:
            self._propagate(t, self._gyro_last)

    # ------------------------------------------------------------------ generic update
    def _update(self, name: str, r: np.ndarray, cols: list, Rm: np.ndarray) -> FilterUpdate:
        """Residual ``r = h(x) - z`` with Jacobian blocks ``cols = [(state slice start, J block), ...]``."""
        n = self._P.shape[0]
        m = len(r)
        H = np.zeros((m, n))
        for start, J in cols:
            H[:, start:start + J.shape[1]] += J
        P = self._P
        PHt = P @ H.T
        S = H @ PHt + Rm
        S = 0.5 * (S + S.T)
        try:
            L = np.linalg.cholesky(S)
        except np.linalg.LinAlgError:
            return self._record(name, FilterUpdate(False, math.nan, m, "innovation covariance not positive definite"))
        Linv = np.linalg.inv(L)               # m <= 6: explicit inverse of the triangular factor is cheapest
        y = Linv @ r
        nis = float(y @ y)
        st = self._stats[name]
        st.count += 1
        st.nis_sum += nis
        st.above_95 += nis > self._b95[m]
        st.last_nis = nis
        gate = self._gate[name]
        if gate is not None and nis > gate:
            return self._record(name, FilterUpdate(False, nis, m, f"NIS {nis:.1f} > gate {gate:.1f}"))
        K = PHt @ (Linv.T @ Linv)
        dx = -K @ r
        # Joseph form (I - K H) P (I - K H)^T + K Rm K^T, expanded so it costs n^2 m instead of n^3
        KAt = K @ PHt.T
        P = P - KAt - KAt.T + K @ S @ K.T
        self._P = 0.5 * (P + P.T)
        self._inject(dx)
        return FilterUpdate(True, nis, m)

    def _record(self, name, upd: FilterUpdate) -> FilterUpdate:
        st = self._stats[name]
        st.rejected += 1
        st.last_reason = upd.reason
        log.debug("%s update rejected at t=%.3f: %s", name, self._t, upd.reason)
        return upd

    def _inject(self, dx: np.ndarray) -> None:
        self._R = self._R @ _exp_so3(dx[_TH])
        self._p = self._p + dx[_P]
        self._bg = self._bg + dx[_BG]
        self._ba = self._ba + dx[_BA]
        self._k = self._k + dx[_K]
        for i, c in enumerate(self._clones):
            o = _N_CORE + 6 * i
            c.R = c.R @ _exp_so3(dx[o:o + 3])
            c.p = c.p + dx[o + 3:o + 6]

    # ------------------------------------------------------------------ accelerometer
    def _update_accel(self, f_meas: np.ndarray, gyro) -> FilterUpdate:
        pr = self.params
        w = (gyro - self._bg) if gyro is not None else np.array([0.0, 0.0, self._wheel_at(self._t)[2]])
        v = self._wheel_at(self._t)
        vb = np.array([self._k * v[0], self._k * v[1], 0.0])
        ab = self._wheel_accel()
        a_dyn = np.array([self._k * ab[0], self._k * ab[1], 0.0]) + _cross(w, vb)
        g_b = self._R.T @ (pr.gravity_mps2 * _E3)
        r = g_b + a_dyn + self._ba - f_meas
        Rm = _I3 * pr.accel_noise_mps2 ** 2
        return self._update("accel", r, [(0, _skew(g_b)), (9, _I3)], Rm)

    # ------------------------------------------------------------------ heading
    def update_heading(self, t_s: float, yaw_rad: float, sigma_rad: float) -> FilterUpdate:
        """Absolute heading (yaw of ``R_world_body``, counter-clockwise from east) from a sun sensor or
        compass with 1-sigma ``sigma_rad``. Propagates to ``t_s`` first if it is ahead of the filter."""
        t = _finite(t_s, "t_s")
        yaw = _finite(yaw_rad, "yaw_rad")
        sig = _finite(sigma_rad, "sigma_rad")
        if not sig > 0:
            raise ValueError(f"sigma_rad = {sigma_rad!r}: must be > 0")
        self._advance_to(t, "update_heading")
        R = self._R
        den = R[0, 0] ** 2 + R[1, 0] ** 2
        if den < 1e-6:
            return self._record("heading", FilterUpdate(False, math.nan, 1, "yaw undefined at ±90° pitch"))
        J = np.array([[0.0, (R[1, 0] * R[0, 2] - R[0, 0] * R[1, 2]) / den,
                       (R[0, 0] * R[1, 1] - R[1, 0] * R[0, 1]) / den]])
        r = np.array([_wrap(_yaw_of(R) - yaw)])
        return self._update("heading", r, [(0, J)], np.array([[sig * sig]]))

    # ------------------------------------------------------------------ clones
    def _find_clone(self, t: float) -> int:
        tol = self.params.time_tol_s
        best, best_d = -1, math.inf
        for i, c in enumerate(self._clones):
            d = abs(c.t_s - t)
            if d <= tol and d < best_d:
                best, best_d = i, d
        return best

    def mark_frame(self, t_s: float, *, keyframe: bool = False) -> int:
        """Keep the body pose at camera frame time ``t_s`` (a stochastic clone) so a later VO result can
        refer to it. Call it when a frame is captured (after :meth:`predict` to the frame time; a frame
        slightly ahead of the filter is propagated to with the last gyro and wheel inputs).
        :meth:`update_vo` calls it for its frame, so explicit calls are needed only when VO results
        arrive late or a VO reference may be a frame VO never reported on. ``keyframe`` protects the
        pose from pruning until a newer keyframe comes. Returns the clone's index.
        """
        self._add_clone(_finite(t_s, "t_s"), keyframe)
        self._prune()
        return self._find_clone(float(t_s))

    def _add_clone(self, t: float, keyframe: bool) -> int:
        i = self._find_clone(t)
        if i >= 0:
            self._clones[i].keyframe |= bool(keyframe)
            return i
        if t < self._t - self.params.time_tol_s:
            raise ValueError(f"frame at t_s = {t:.6f}: the filter has moved on to {self._t:.6f} and keeps no pose "
                             f"for that time; mark frames as they are captured (mark_frame), before predicting past "
                             f"them")
        self._advance_to(t, "mark_frame")
        n = self._P.shape[0]
        P = np.zeros((n + 6, n + 6))
        P[:n, :n] = self._P
        P[n:, :n] = self._P[:6, :n]
        P[:n, n:] = self._P[:n, :6]
        P[n:, n:] = self._P[:6, :6]
        self._P = P
        self._clones.append(_Clone(self._t, self._R.copy(), self._p.copy(), bool(keyframe)))
        return len(self._clones) - 1

    def _drop_clone(self, i: int) -> None:
        o = _N_CORE + 6 * i
        keep = np.r_[0:o, o + 6:self._P.shape[0]]
        self._P = self._P[np.ix_(keep, keep)]
        del self._clones[i]

    def _prune(self) -> None:
        """Drop the oldest clones beyond ``max_clones`` (keeping the newest keyframe and the newest frame)."""
        while len(self._clones) > self.params.max_clones:
            kf = [i for i, c in enumerate(self._clones) if c.keyframe]
            protect = {len(self._clones) - 1} | ({kf[-1]} if kf else set())
            victims = [i for i in range(len(self._clones)) if i not in protect]
            if not victims:
                break
            self._drop_clone(victims[0])

    def drop_clones_before(self, t_s: float) -> None:
        """Forget kept poses older than ``t_s`` (e.g. when VO says nothing will refer to them again)."""
        t = _finite(t_s, "t_s")
        for i in range(len(self._clones) - 1, -1, -1):
            if self._clones[i].t_s < t - self.params.time_tol_s:
                self._drop_clone(i)

    # ------------------------------------------------------------------ visual odometry
    def update_vo(self, result) -> FilterUpdate:
        """Apply a visual-odometry result (duck-typed ``perception.vo.VOResult``: ``t_s``, ``ref_t_s``,
        ``T_ref_cur``, ``cov``, ``keyframe``) or note a failure (a falsy ``VOFailure`` with ``t_s``).

        The pose at ``t_s`` is kept (:meth:`mark_frame`) either way, so the next result may use this
        frame as its reference; a result *or a failure* with ``keyframe=True`` (VO re-initialised at
        that frame and will measure the next motions from it) is kept as a keyframe, protected from
        pruning until a newer keyframe comes. A result whose reference pose is no longer kept is not
        applied (falsy return, reason given); so is one with a non-finite or non-positive-definite
        covariance.
        """
        t = _finite(getattr(result, "t_s", None), "result.t_s")
        ok = bool(result)
        # a failure with keyframe=True is VO's re-initialisation frame: the next result measures its
        # motion from it, so its pose must survive pruning like any other keyframe's
        is_kf = bool(getattr(result, "keyframe", False))
        ic = self._add_clone(t, is_kf)
        try:
            return self._apply_vo(result, ok, t, ic)
        finally:
            self._prune()          # after the update, so the reference it needed was still there

    def _apply_vo(self, result, ok: bool, t: float, ic: int) -> FilterUpdate:
        st = self._stats["vo"]
        if not ok:
            st.failures += 1
            st.last_reason = str(getattr(result, "reason", "VO failure"))
            return FilterUpdate(False, math.nan, 6, st.last_reason)
        t_ref = _finite(result.ref_t_s, "result.ref_t_s")
        T = np.asarray(result.T_ref_cur, dtype=np.float64)
        C = np.asarray(result.cov, dtype=np.float64)
        if T.shape != (4, 4):
            raise ValueError(f"result.T_ref_cur must be 4x4, got shape {T.shape}")
        if C.shape != (6, 6):
            raise ValueError(f"result.cov must be 6x6, got shape {C.shape}")
        if abs(t_ref - t) <= self.params.time_tol_s:
            return self._record("vo", FilterUpdate(False, math.nan, 6, "reference is the current frame"))
        if not (np.isfinite(T).all() and np.isfinite(C).all()):
            return self._record("vo", FilterUpdate(False, math.nan, 6, "non-finite pose or covariance"))
        C = 0.5 * (C + C.T)
        if np.linalg.eigvalsh(C).min() <= 0:
            return self._record("vo", FilterUpdate(False, math.nan, 6, "covariance not positive definite"))
        ir = self._find_clone(t_ref)
        if ir < 0:
            return self._record("vo", FilterUpdate(False, math.nan, 6,
                                                   f"reference pose at t={t_ref:.3f} s is not kept"))
        r, Jr_, Jc_ = self._vo_residual(self._clones[ir], self._clones[ic], T[:3, :3], T[:3, 3])
        oR, oC = _N_CORE + 6 * ir, _N_CORE + 6 * ic
        return self._update("vo", r, [(oR, Jr_), (oC, Jc_)], C)

    def update_relative_pose(self, t_s: float, ref_t_s: float, T_ref_cur_body, cov_body,
                             *, keyframe: bool = False) -> FilterUpdate:
        """A relative *body* pose from any odometry source (e.g. ``sim.fast_perception.PoseDrift``'s
        consecutive estimates, lidar odometry): ``T_ref_cur_body`` is the body pose at ``t_s`` in the body
        frame at ``ref_t_s``, with a 6x6 covariance on the right tangent ``[rotvec, translation]`` of that
        body frame. It is mapped to the left camera (``T_cam = T_body_cam^-1 T_body T_body_cam``, covariance
        through the adjoint) and applied exactly as :meth:`update_vo`; counted in the ``"vo"`` statistics.
        """
        T = np.asarray(T_ref_cur_body, dtype=np.float64)
        C = np.asarray(cov_body, dtype=np.float64)
        if T.shape != (4, 4):
            raise ValueError(f"T_ref_cur_body must be 4x4, got shape {T.shape}")
        if C.shape != (6, 6):
            raise ValueError(f"cov_body must be 6x6, got shape {C.shape}")
        Tbc = np.eye(4)
        Tbc[:3, :3], Tbc[:3, 3] = self._R_bc, self._t_bc
        Tcb = np.eye(4)
        Tcb[:3, :3], Tcb[:3, 3] = self._R_bc.T, -self._R_bc.T @ self._t_bc
        Ad = _adjoint(Tcb)
        res = _RelativePose(_finite(t_s, "t_s"), _finite(ref_t_s, "ref_t_s"), Tcb @ T @ Tbc, Ad @ C @ Ad.T,
                            bool(keyframe))
        return self.update_vo(res)

    def _vo_residual(self, cr: _Clone, cc: _Clone, R_m: np.ndarray, t_m: np.ndarray):
        """Residual and Jacobians (w.r.t. the reference and current clone error states)."""
        Rbc, tbc = self._R_bc, self._t_bc
        Rr, Rc = cr.R, cc.R
        d = cc.p + Rc @ tbc - cr.p - Rr @ tbc
        A = Rbc.T @ Rr.T                                   # world -> reference camera
        R_pred = A @ Rc @ Rbc
        t_pred = A @ d
        r_rot = _log_so3(R_m.T @ R_pred)
        Jinv = _jr_inv(r_rot)
        r = np.concatenate([r_rot, R_m.T @ (t_pred - t_m)])
        Jr_ = np.zeros((6, 6))
        Jc_ = np.zeros((6, 6))
        Jc_[:3, :3] = Jinv @ Rbc.T
        Jr_[:3, :3] = -Jinv @ R_pred.T @ Rbc.T
        B = R_m.T @ A
        Jc_[3:, 3:] = B
        Jr_[3:, 3:] = -B
        Jc_[3:, :3] = -B @ Rc @ _skew(tbc)
        Jr_[3:, :3] = R_m.T @ Rbc.T @ (_skew(Rr.T @ d) + _skew(tbc))
        return r, Jr_, Jc_

    def __repr__(self) -> str:
        x, y, z = self._p
        yaw, pitch, roll = self.yaw_pitch_roll_rad
        s = self.slip
        return (f"RoverEKF(t={self._t:.2f} s, xyz=({x:.2f}, {y:.2f}, {z:.2f}) m, yaw={math.degrees(yaw):.1f}°, "
                f"pitch={math.degrees(pitch):.1f}°, roll={math.degrees(roll):.1f}°, slip={s.slip:.2f}±{s.sigma:.2f}, "
                f"clones={len(self._clones)})")
