"""Frames and rotations used by the simulator (and its tests). Written once, used everywhere.

* **World**: ENU — x east, y north, z up (metres); the terrain grid convention is in
  :mod:`nav.terrain_map`.
* **Body** (REP-103): x forward, y left, z up; origin at the centre of the wheel footprint
  (a two-wheel differential rover: the drive-axle midpoint) at ground level, i.e. the
  contact plane under the rover. Attitude is ``R_world_body = Rz(yaw) @ Ry(pitch) @ Rx(roll)``
  with right-hand rotations: **yaw** counter-clockwise from east; **positive pitch puts the
  nose down** (climbing a slope gives negative pitch); **positive roll lifts the left side**.
* **Camera** (OpenCV): x right, y down, z forward (optical axis). The left camera is the
  stereo reference; see :class:`nav.config.Camera` for the mount.
* **Sun**: azimuth clockwise from north (+y) toward east (+x), elevation above the horizon.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["rot_x", "rot_y", "rot_z", "rot_world_body", "euler_from_rot", "transform", "T_world_body",
           "R_body_cam", "T_body_cam", "sun_direction", "climb_angle_rad", "invert"]


def rot_x(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def rot_y(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rot_z(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rot_world_body(yaw_rad: float, pitch_rad: float, roll_rad: float) -> np.ndarray:
    """``Rz(yaw) @ Ry(pitch) @ Rx(roll)``: body vectors to world vectors."""
    return rot_z(yaw_rad) @ rot_y(pitch_rad) @ rot_x(roll_rad)


def euler_from_rot(R) -> tuple[float, float, float]:
    """``(yaw, pitch, roll)`` of a rotation built as ``Rz @ Ry @ Rx`` (pitch in [-pi/2, pi/2])."""
    R = np.asarray(R, dtype=np.float64)
    pitch = math.asin(max(-1.0, min(1.0, -R[2, 0])))
    roll = math.atan2(R[2, 1], R[2, 2])
    yaw = math.atan2(R[1, 0], R[0, 0])
    return yaw, pitch, roll


def transform(R, t) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = np.asarray(t, dtype=np.float64).reshape(3)
    return T


def invert(T) -> np.ndarray:
    T = np.asarray(T, dtype=np.float64)
    R, t = T[:3, :3], T[:3, 3]
    return transform(R.T, -R.T @ t)


def T_world_body(x_m, y_m, z_m, yaw_rad, pitch_rad, roll_rad) -> np.ndarray:
    return transform(rot_world_body(yaw_rad, pitch_rad, roll_rad), (x_m, y_m, z_m))


def R_body_cam(tilt_deg: float) -> np.ndarray:
    """Camera axes (columns: x right, y down, z forward) in the body frame, the optical axis
    along body +x pitched down by ``tilt_deg``."""
    a = math.radians(tilt_deg)
    ca, sa = math.cos(a), math.sin(a)
    return np.array([[0.0, -sa, ca],
                     [-1.0, 0.0, 0.0],
                     [0.0, -ca, -sa]])


def T_body_cam(camera, which: str = "left") -> np.ndarray:
    """Pose of the ``"left"`` or ``"right"`` camera of a :class:`nav.config.Camera` in the body frame."""
    if which not in ("left", "right"):
        raise ValueError(f"which = {which!r}: must be 'left' or 'right'")
    y = 0.5 * camera.baseline_m * (1.0 if which == "left" else -1.0)
    return transform(R_body_cam(camera.tilt_deg), (camera.mount_x_m, y, camera.mast_height_m))


def sun_direction(azimuth_deg: float, elevation_deg: float) -> np.ndarray:
    """Unit vector toward the sun in the world frame."""
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    return np.array([math.sin(az) * math.cos(el), math.cos(az) * math.cos(el), math.sin(el)])


def climb_angle_rad(pitch_rad: float, forward: bool = True) -> float:
    """Uphill angle along the direction of travel (positive = climbing) for a body pitch."""
    return -pitch_rad if forward else pitch_rad
