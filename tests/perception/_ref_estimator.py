"""References and harnesses for the state-estimator tests (and benchmarks/bench_estimator.py).

* SO(3) through :class:`scipy.spatial.transform.Rotation` (an oracle independent of the estimator's own
  Rodrigues code) and numerical Jacobians by central differences on the manifold.
* Duck-typed stand-ins for ``perception.vo.VOResult`` / ``VOFailure``.
* :func:`simulate` — a synthetic rover drawn from the filter's *stated* noise model (gyro with bias, wheels
  with slip, accelerometer with bias, VO relative poses with their stated covariance), written
  independently of the filter, for NEES/NIS consistency checks over Monte Carlo runs.
* :func:`ramp_world` and :func:`replay` — recorded simulator traverses run through the filter with
  VO-like relative poses made from frame truth plus noise of a stated covariance (until the real VO is
  used).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation


# ----------------------------------------------------------------------------- SO(3) oracles
def exp_so3(phi) -> np.ndarray:
    return Rotation.from_rotvec(np.asarray(phi, dtype=np.float64)).as_matrix()


def log_so3(R) -> np.ndarray:
    return Rotation.from_matrix(np.asarray(R, dtype=np.float64)).as_rotvec()


def pose(R, p) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = p
    return T


def inv(T) -> np.ndarray:
    R, t = T[:3, :3], T[:3, 3]
    return pose(R.T, -R.T @ t)


def pose_error(T_est, T_true) -> np.ndarray:
    """``[dtheta (body, right), dp (world)]`` with ``R_true = R_est Exp(dtheta)``, ``p_true = p_est + dp``."""
    return np.concatenate([log_so3(T_est[:3, :3].T @ T_true[:3, :3]), T_true[:3, 3] - T_est[:3, 3]])


def numerical_jacobian(f, x0: list, eps: float = 1e-6) -> np.ndarray:
    """Jacobian of ``f(list of (R, p) poses) -> vector`` w.r.t. ``[dtheta_i (right), dp_i (world)]`` of each pose."""
    f0 = np.asarray(f(x0))
    cols = []
    for i in range(len(x0)):
        for j in range(6):
            d = np.zeros(6)
            d[j] = eps
            xs = []
            for sgn in (1.0, -1.0):
                x = [(R.copy(), p.copy()) for R, p in x0]
                R, p = x[i]
                x[i] = (R @ exp_so3(sgn * d[:3]), p + sgn * d[3:])
                xs.append(np.asarray(f(x)))
            cols.append((xs[0] - xs[1]) / (2 * eps))
    J = np.stack(cols, axis=1)
    assert J.shape[0] == f0.shape[0]
    return J


# ----------------------------------------------------------------------------- VO stand-ins
@dataclass
class VOResultStub:
    """Duck-typed ``perception.vo.VOResult``."""
    t_s: float
    seq: int
    ref_t_s: float
    ref_seq: int
    T_ref_cur: np.ndarray
    cov: np.ndarray
    T_first_cur: np.ndarray | None = None
    n_inliers: int = 100
    keyframe: bool = False

    def __bool__(self):
        return True


@dataclass
class VOFailureStub:
    """Duck-typed ``perception.vo.VOFailure``."""
    t_s: float
    seq: int
    reason: str = "too few inliers"

    def __bool__(self):
        return False


def camera_relative(T_wb_ref, T_wb_cur, T_body_cam) -> np.ndarray:
    """True ``T_ref_cur`` of the camera between two body poses."""
    return inv(T_wb_ref @ T_body_cam) @ (T_wb_cur @ T_body_cam)


def noisy_relative(T_true, cov, rng) -> np.ndarray:
    """A measurement ``T_m`` with ``T_true = T_m Exp(d)`` (rotation and translation on the right),
    ``d ~ N(0, cov)``."""
    d = rng.multivariate_normal(np.zeros(6), cov)
    Rm = T_true[:3, :3] @ exp_so3(-d[:3])
    tm = T_true[:3, 3] - Rm @ d[3:]
    return pose(Rm, tm)


def vo_cov(sigma_rot_rad=1e-3, sigma_t_m=(2e-3, 2e-3, 4e-3)) -> np.ndarray:
    return np.diag([sigma_rot_rad ** 2] * 3 + [s * s for s in sigma_t_m])


# ----------------------------------------------------------------------------- synthetic rover
@dataclass
class SimLog:
    """Truth and estimates of one synthetic run."""
    t: np.ndarray
    T_true: np.ndarray        # (n, 4, 4)
    T_est: np.ndarray
    P_pose: np.ndarray        # (n, 6, 6)
    k_true: np.ndarray
    k_est: np.ndarray
    k_var: np.ndarray
    vo_nis: list
    accel_nis: list
    vo_mask: np.ndarray       # True at steps with a VO update applied
    jumps: np.ndarray         # position change at each VO update (m)


def simulate(ekf_factory, params, rng, *, duration_s=60.0, dt=0.1, speed_mps=0.25, slip=None, slip_walk=True,
             vo_every=10, vo_cov_=None, dropouts=(), T_body_cam=None, use_accel=True, hilly=True,
             gyro_bias=None, accel_bias=None, heading_sigma_rad=None) -> SimLog:
    """Drive a synthetic rover whose noises follow ``params`` exactly and run ``ekf_factory(T0)`` on it.

    ``slip``: constant true slip (``None``: drawn from the prior, then a random walk per metre if
    ``slip_walk``). ``heading_sigma_rad``: feed a heading (true yaw + noise) once a second.
    ``dropouts``: ``(t0, t1)`` intervals where VO reports failures. Each VO result
    compares a frame with the previous frame (failed or not), as a frame-to-frame VO that re-anchors
    on its latest frame would.
    """
    g = params.gravity_mps2
    C = vo_cov() if vo_cov_ is None else vo_cov_
    n = int(round(duration_s / dt))
    R, p = np.eye(3), np.zeros(3)
    bg = rng.normal(0, params.gyro_bias_sigma_radps, 3) if gyro_bias is None else np.asarray(gyro_bias, float)
    ba = rng.normal(0, params.accel_bias_sigma_mps2, 3) if accel_bias is None else np.asarray(accel_bias, float)
    k = (1.0 - params.slip0 + rng.normal(0, params.slip_sigma0)) if slip is None else 1.0 - slip
    qb = np.array([params.wheel_along_m_per_sqrt_m, params.wheel_across_m_per_sqrt_m,
                   params.wheel_vertical_m_per_sqrt_m]) ** 2
    ekf = ekf_factory(pose(R, p))
    ekf.update_wheels(0.0, (0.0, 0.0), 0.0)
    ekf.mark_frame(0.0)
    frames = {0.0: pose(R, p)}
    last_frame_t = 0.0
    u_prev = np.zeros(2)
    phase = rng.uniform(0, 2 * math.pi, 3)
    rows = {key: [] for key in ("t", "T_true", "T_est", "P", "k_true", "k_est", "k_var", "vo", "jump")}
    vo_nis, acc_nis = [], []
    for i in range(1, n + 1):
        t = i * dt
        ramp = min(1.0, t / 3.0)
        u = np.array([speed_mps * ramp * (1.0 + 0.3 * math.sin(0.1 * t + phase[0])), 0.0])
        w_true = np.array([0.02 * math.sin(0.3 * t + phase[1]) if hilly else 0.0,
                           0.05 * math.sin(0.15 * t + phase[2]) if hilly else 0.0,
                           0.15 * math.sin(0.07 * t + phase[0])])
        ubar = 0.5 * (u + u_prev)
        ds = float(np.hypot(*ubar)) * dt
        # truth: the filter's discrete model, written independently
        phi = w_true * dt
        Mh = exp_so3(0.5 * phi)
        n_p = rng.normal(0, 1, 3) * np.sqrt(qb * ds)
        p = p + R @ Mh @ (k * np.array([ubar[0], ubar[1], 0.0]) * dt + n_p)
        R = R @ exp_so3(phi)
        gyro = w_true + bg + rng.normal(0, params.gyro_noise_rad_per_sqrt_s / math.sqrt(dt), 3)
        bg = bg + rng.normal(0, params.gyro_bias_walk_radps_per_sqrt_s * math.sqrt(dt), 3)
        if slip is None and slip_walk:
            k = k + rng.normal(0, params.slip_walk_per_sqrt_m * math.sqrt(ds))
        vb = k * np.array([u[0], u[1], 0.0])
        a_dyn = k * np.array([*((u - u_prev) / dt), 0.0]) + np.cross(w_true, vb)
        f = R.T @ np.array([0, 0, g]) + a_dyn + ba + rng.normal(0, params.accel_noise_mps2, 3)
        ba = ba + rng.normal(0, params.accel_bias_walk_mps2_per_sqrt_s * math.sqrt(dt), 3)
        u_prev = u
        # the filter, fed as an executive would
        ekf.update_wheels(t, u, 0.0)
        upd = ekf.predict(t, gyro, f if use_accel else None)
        if upd is not None and upd.accepted:
            acc_nis.append(upd.nis)
        if heading_sigma_rad is not None and i % 10 == 0:
            yaw = math.atan2(R[1, 0], R[0, 0]) + rng.normal(0, heading_sigma_rad)
            ekf.update_heading(t, yaw, heading_sigma_rad)
        applied, jump = False, 0.0
        if i % vo_every == 0:
            if any(a <= t < b for a, b in dropouts):
                ekf.update_vo(VOFailureStub(t, i))
            else:
                Tm = noisy_relative(camera_relative(frames[last_frame_t], pose(R, p), T_body_cam), C, rng)
                before = ekf.position_m
                res = ekf.update_vo(VOResultStub(t, i, last_frame_t, i - vo_every, Tm, C))
                applied = bool(res)
                if applied:
                    vo_nis.append(res.nis)
                    jump = float(np.linalg.norm(ekf.position_m - before))
            frames[t] = pose(R, p)
            last_frame_t = t
        rows["t"].append(t)
        rows["T_true"].append(pose(R, p))
        rows["T_est"].append(ekf.T_world_body)
        rows["P"].append(ekf.pose_cov)
        rows["k_true"].append(k)
        rows["k_est"].append(1.0 - ekf.slip.slip)
        rows["k_var"].append(ekf.slip.sigma ** 2)
        rows["vo"].append(applied)
        rows["jump"].append(jump)
    return SimLog(np.array(rows["t"]), np.array(rows["T_true"]), np.array(rows["T_est"]), np.array(rows["P"]),
                  np.array(rows["k_true"]), np.array(rows["k_est"]), np.array(rows["k_var"]), vo_nis, acc_nis,
                  np.array(rows["vo"]), np.array(rows["jump"]))


# ----------------------------------------------------------------------------- recorded simulator traverses
def ramp_world(slope_deg=20.0, *, flat_m=4.0, length_m=30.0, width_m=8.0, cell_m=0.05, planet="mars", soil=None,
               seed=0):
    """A world with ``flat_m`` of level ground then a plane rising at ``slope_deg`` toward +x (east)."""
    from nav import TerrainMap
    from sim import World

    nx, ny = int(round(length_m / cell_m)), int(round(width_m / cell_m))
    x = (np.arange(nx) + 0.5) * cell_m
    z = np.tile(np.clip(x - flat_m, 0.0, None) * math.tan(math.radians(slope_deg)), (ny, 1))
    return World(TerrainMap(z, cell_m, (0.0, 0.0), source=f"ramp {slope_deg:g} deg"), planet=planet, soil=soil,
                 seed=seed)


def truth_T(tr) -> np.ndarray:
    from sim.frames import T_world_body
    return T_world_body(tr.x_m, tr.y_m, tr.z_m, tr.yaw_rad, tr.pitch_rad, tr.roll_rad)


def frame_indices(truths, every_m=0.15) -> list:
    """Telemetry indices at which a camera frame is taken: the first, then every ``every_m`` of travel."""
    idx = [0]
    last = truths[0].distance_m
    for j, tr in enumerate(truths):
        if tr.distance_m - last >= every_m:
            idx.append(j)
            last = tr.distance_m
    if idx[-1] != len(truths) - 1:
        idx.append(len(truths) - 1)
    return idx


@dataclass
class ReplayResult:
    t: np.ndarray
    p_est: np.ndarray          # (n, 3)
    p_true: np.ndarray
    P_pos: np.ndarray          # (n, 3, 3)
    slip_est: np.ndarray
    slip_sigma: np.ndarray
    slip_true: np.ndarray      # mean wheel slip (truth)
    distance_m: float          # horizontal, from the simulator
    path_3d_m: float
    ekf: object
    vo_applied: np.ndarray     # (n,) bool: a VO result was applied at this step
    jump_m: np.ndarray         # (n,) position change made by that VO update
    dist: np.ndarray           # (n,) horizontal distance driven so far (truth)

    @property
    def err_3d(self):
        return np.linalg.norm(self.p_est - self.p_true, axis=1)

    @property
    def err_xy(self):
        return np.linalg.norm(self.p_est[:, :2] - self.p_true[:, :2], axis=1)


def replay(telemetry, truths, profile, *, mode="vo", params=None, frame_every_m=0.15, vo_cov_=None, rng=None,
           vo_results=None, dropouts=(), heading=False):
    """Run the filter over recorded telemetry, as an executive would.

    ``mode``: ``"wheels"`` (wheel odometry only: the wheels' yaw rate, no IMU), ``"imu"`` (wheels + gyro +
    accelerometer), ``"vo"`` (plus VO). VO is emulated from the truth at frame indices (every
    ``frame_every_m``) with noise of covariance ``vo_cov_`` unless ``vo_results`` (telemetry index ->
    VO result, e.g. from the real VO on rendered frames) is given. ``dropouts``: ``(d0, d1)`` distance
    intervals (m) where VO fails.
    """
    from drivers.kinematics import WheelLayout
    from perception.estimator import EKFParams, RoverEKF
    from sim.frames import T_body_cam

    rng = np.random.default_rng(0) if rng is None else rng
    layout = WheelLayout.from_profile(profile)
    Tbc = T_body_cam(profile.camera)
    pr = params if params is not None else EKFParams()
    C = vo_cov() if vo_cov_ is None else vo_cov_
    T0 = truth_T(truths[0])
    ekf = RoverEKF(Tbc, pr, T0, np.diag([1e-6, 1e-6, 1e-8, 1e-8, 1e-8, 1e-8]), t0_s=telemetry[0].t_s)
    fidx = set(frame_indices(truths, frame_every_m)) if mode == "vo" else set()
    last_j = None
    rows = {key: [] for key in ("t", "pe", "pt", "P", "s", "ss", "st", "va", "jump", "d")}
    path = 0.0
    for j, (tm, tr) in enumerate(zip(telemetry, truths)):
        vx, vy, wz = layout.forward(tm.wheel_speed_radps, tm.steer_rad)
        ekf.update_wheels(tm.t_s, (vx, vy), wz)
        if mode == "wheels":
            ekf.predict(tm.t_s)
        else:
            ekf.predict(tm.t_s, tm.imu.gyro_radps, tm.imu.accel_mps2)
        if heading and math.isfinite(tm.heading_rad):
            ekf.update_heading(tm.t_s, tm.heading_rad, math.radians(profile.sensors.sun_sensor_noise_deg))
        applied, jump = False, 0.0
        if j in fidx:
            before = ekf.position_m
            if last_j is None:
                ekf.mark_frame(tm.t_s)
            else:
                if vo_results is not None:
                    res = vo_results.get(j) or VOFailureStub(tm.t_s, j, "no VO result")
                elif any(a <= tr.distance_m < b for a, b in dropouts):
                    res = VOFailureStub(tm.t_s, j)
                else:
                    Tm = noisy_relative(camera_relative(truth_T(truths[last_j]), truth_T(tr), Tbc), C, rng)
                    res = VOResultStub(tm.t_s, j, telemetry[last_j].t_s, last_j, Tm, C)
                applied = bool(ekf.update_vo(res))
                jump = float(np.linalg.norm(ekf.position_m - before))
            last_j = j
        if j:
            a, b = truths[j - 1], tr
            path += math.sqrt((b.x_m - a.x_m) ** 2 + (b.y_m - a.y_m) ** 2 + (b.z_m - a.z_m) ** 2)
        rows["t"].append(tm.t_s)
        rows["pe"].append(ekf.position_m)
        rows["pt"].append([tr.x_m, tr.y_m, tr.z_m])
        rows["P"].append(ekf.position_cov)
        s = ekf.slip
        rows["s"].append(s.slip)
        rows["ss"].append(s.sigma)
        rows["st"].append(float(np.mean(tr.slip)))
        rows["va"].append(applied)
        rows["jump"].append(jump)
        rows["d"].append(tr.distance_m)
    return ReplayResult(np.array(rows["t"]), np.array(rows["pe"]), np.array(rows["pt"]), np.array(rows["P"]),
                        np.array(rows["s"]), np.array(rows["ss"]), np.array(rows["st"]), truths[-1].distance_m,
                        path, ekf, np.array(rows["va"]), np.array(rows["jump"]), np.array(rows["d"]))


def drive_flat(*, planet="mars", stand_s=5.0, drive_s=60.0, speed_mps=0.25, slip_window_s=(20.0, 40.0),
               slip=0.6, control_hz=10.0, seed=0):
    """A straight drive on level ground with a :class:`sim.SimRover`: ``stand_s`` at rest, then
    ``drive_s`` at ``speed_mps`` with ``SimRover.inject_slip(slip)`` during ``slip_window_s`` (seconds
    after the start of the drive). Returns ``(telemetry, truths, gyro_bias_at_end_of_stand, profile)``
    (the bias is simulator ground truth, read from a private attribute: tests only)."""
    from nav import TerrainMap
    from nav.config import load_rover
    from sim import SimRover, World

    cell = 0.05
    length = speed_mps * drive_s + 10.0
    z = np.zeros((int(8.0 / cell), int(length / cell)))
    world = World(TerrainMap(z, cell, (0.0, 0.0), source="flat"), planet=planet, seed=seed)
    prof = load_rover("osr")
    rover = SimRover(world, prof, x_m=2.0, y_m=4.0, yaw_rad=0.0)
    tel, tru = [], []
    dt = 1.0 / control_hz
    with rover:
        rover.arm()
        tel.append(rover.read_telemetry())
        tru.append(rover.truth())
        n_stand, n_drive = int(round(stand_s * control_hz)), int(round(drive_s * control_hz))
        bias = rover._gyro_bias.copy()
        for i in range(n_stand + n_drive):
            if i == n_stand + int(round(slip_window_s[0] * control_hz)):
                rover.inject_slip(slip, duration_s=slip_window_s[1] - slip_window_s[0])
            if i >= n_stand:
                rover.set_twist(speed_mps, 0.0)
            else:
                rover.stop()
            world.clock.sleep(dt)
            tel.append(rover.read_telemetry())
            tru.append(rover.truth())
            if i == n_stand - 1:
                bias = rover._gyro_bias.copy()
    return tel, tru, bias, prof
