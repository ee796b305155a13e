"""The ``fast`` perception fidelity: what stereo would see, and where VO would think the rover is, without images.

Large campaigns cannot afford rendering and stereo matching every frame. These stand-ins keep what matters to
the navigation executive and drop the cost:

* :class:`FastDepthSensor` — the scene points stereo would triangulate: the true terrain inside the left
  camera's field of view and range, from a low-resolution z-buffer of the same mesh the renderer draws (so
  occlusion — the ground behind a rock stays unseen — and the field of view are exact), with the stereo
  depth error model ``sigma_z = z^2 sigma_d / (f b)`` of the *full-resolution* camera (``f`` in pixels,
  baseline ``b``, disparity noise ``sigma_d``) applied along each ray. Points beyond ``max_range_m`` or
  whose depth error exceeds ``max_sigma_m`` are dropped, as a stereo pipeline's range limit would.
* :class:`PoseDrift` — a pose estimate that drifts the way visual odometry does: a constant scale error and
  a heading random walk per metre driven, plus a position random walk, all seeded. It is fed the true pose and
  returns the estimate; the error grows with distance, not time (a parked rover does not drift).

Both take their randomness from the world's named streams, so a scenario replays bit for bit.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from nav.config import Camera

from .camera import render_depth
from .frames import T_body_cam, invert
from .world import World

__all__ = ["FastDepthSensor", "DepthView", "PoseDrift"]


@dataclass(frozen=True)
class DepthView:
    """Points seen by the left camera, in its frame (OpenCV axes), with their 1-sigma depth error.

    ``points_cam`` (N, 3) float64, ``sigma_m`` (N,) float64 (along the ray, from the disparity model),
    ``T_world_cam`` the true camera pose the view was taken from, ``t_s`` the capture time.
    """
    t_s: float
    points_cam: np.ndarray
    sigma_m: np.ndarray
    T_world_cam: np.ndarray

    def points_world(self, T_world_cam=None) -> np.ndarray:
        """The points in the world frame through ``T_world_cam`` (default the true pose; pass the *estimated*
        camera pose to map the way the rover would)."""
        T = self.T_world_cam if T_world_cam is None else np.asarray(T_world_cam, dtype=np.float64)
        return self.points_cam @ T[:3, :3].T + T[:3, 3]


class FastDepthSensor:
    """Stereo-like depth without images (see the module docstring).

    Parameters
    ----------
    world : World
    camera : nav.config.Camera
        The rover's stereo camera (its mount, field of view, full-resolution focal length and baseline).
    width_px : int
        Width of the z-buffer (default 160; height keeps the aspect ratio). Points are one per pixel, so
        this sets the point density (~1/4 of the full-resolution camera's pixels per row at 160 px for 640 px).
    disparity_sigma_px : float
        Disparity noise of the stereo matcher, full-resolution pixels (SGBM with sub-pixel: ~0.25).
    max_range_m : float, optional
        Range limit (default: the camera's ``max_range_m``, at most 20 m).
    max_sigma_m : float
        Drop points whose depth sigma exceeds this (default 0.25 m).
    name : str
        Names the random stream.
    """

    def __init__(self, world: World, camera: Camera, *, width_px: int = 160, disparity_sigma_px: float = 0.25,
                 max_range_m: float | None = None, max_sigma_m: float = 0.25, name: str = "fast_depth"):
        if not isinstance(world, World):
            raise TypeError(f"world must be a sim.World, got {type(world).__name__}")
        if not isinstance(camera, Camera):
            raise TypeError(f"camera must be a nav.config.Camera, got {type(camera).__name__}")
        if not (isinstance(width_px, int) and 16 <= width_px <= camera.width_px):
            raise ValueError(f"width_px = {width_px!r}: must be an int in [16, {camera.width_px}]")
        for nm, v in (("disparity_sigma_px", disparity_sigma_px), ("max_sigma_m", max_sigma_m)):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{nm} = {v!r}: must be > 0")
        rng_max = min(camera.max_range_m, 20.0) if max_range_m is None else float(max_range_m)
        if not (math.isfinite(rng_max) and rng_max > 0):
            raise ValueError(f"max_range_m = {max_range_m!r}: must be > 0")
        h = max(12, int(round(width_px * camera.height_px / camera.width_px)))
        self.world = world
        self.camera = camera
        self.low = dataclasses.replace(camera, width_px=width_px, height_px=h, noise_std_dn=0.0)
        self.T_body_cam = T_body_cam(camera, "left")
        self.disparity_sigma_px = float(disparity_sigma_px)
        self.max_range_m = rng_max
        self.max_sigma_m = float(max_sigma_m)
        self._fb = camera.fx_px * camera.baseline_m          # full-resolution f * b (px * m)
        self._rng = world.rng(name)
        K = self.low.K
        u, v = np.meshgrid(np.arange(width_px, dtype=np.float64), np.arange(h, dtype=np.float64))
        self._rays = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], axis=-1)
        self._ray_len = np.linalg.norm(self._rays, axis=-1)      # range per unit depth, fixed per pixel

    def capture(self, T_world_body, t_s: float = 0.0) -> DepthView:
        """The points seen from body pose ``T_world_body`` (4x4, the true pose)."""
        T_wc = np.asarray(T_world_body, dtype=np.float64) @ self.T_body_cam
        depth = render_depth(self.world, self.low, T_wc)
        z = depth.astype(np.float64)
        rays = self._rays
        rng_m = z * self._ray_len
        sigma_z = z * z * self.disparity_sigma_px / self._fb
        sigma_ray = sigma_z * self._ray_len
        ok = np.isfinite(z) & (rng_m <= self.max_range_m) & (sigma_ray <= self.max_sigma_m)
        z, sz, r, sigma_ray = z[ok], sigma_z[ok], rays[ok], sigma_ray[ok]
        zn = z + sz * self._rng.standard_normal(z.shape)     # stereo error is along the ray: scale the ray
        pts = r * zn[:, None]
        return DepthView(t_s=float(t_s), points_cam=pts, sigma_m=sigma_ray, T_world_cam=T_wc)


class PoseDrift:
    """A pose estimate that drifts with distance like visual odometry (see the module docstring).

    Parameters
    ----------
    world : World
        Source of the random stream.
    scale_error : float, optional
        Constant relative error of travelled distance (default: drawn once, ``N(0, scale_sigma)``).
    scale_sigma : float
        Sigma of the drawn scale error (default 0.003 = 0.3 %).
    yaw_walk_deg_per_sqrt_m : float
        Heading random walk (default 0.05 deg per sqrt(metre)).
    pos_walk_m_per_sqrt_m : float
        Position random walk (default 0.002 m per sqrt(metre)).
    """

    def __init__(self, world: World, *, scale_error: float | None = None, scale_sigma: float = 0.003,
                 yaw_walk_deg_per_sqrt_m: float = 0.05, pos_walk_m_per_sqrt_m: float = 0.002,
                 name: str = "pose_drift"):
        for nm, v in (("scale_sigma", scale_sigma), ("yaw_walk_deg_per_sqrt_m", yaw_walk_deg_per_sqrt_m),
                      ("pos_walk_m_per_sqrt_m", pos_walk_m_per_sqrt_m)):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{nm} = {v!r}: must be >= 0")
        self._rng = world.rng(name)
        self.scale_error = float(self._rng.normal(0.0, scale_sigma)) if scale_error is None else float(scale_error)
        self._yaw_walk = math.radians(yaw_walk_deg_per_sqrt_m)
        self._pos_walk = float(pos_walk_m_per_sqrt_m)
        self._last_true: np.ndarray | None = None
        self._est: np.ndarray | None = None
        self._yaw_err = 0.0

    def reset(self, T_world_body_est) -> None:
        """Start (again) from an estimate (e.g. the true start pose); the next update integrates from there."""
        self._est = np.array(T_world_body_est, dtype=np.float64)
        self._last_true = None

    def update(self, T_world_body_true) -> np.ndarray:
        """Feed the true body pose; returns the drifting estimate (4x4)."""
        T = np.asarray(T_world_body_true, dtype=np.float64)
        if self._est is None:
            self._est = T.copy()
        if self._last_true is None:
            self._last_true = T.copy()
            return self._est.copy()
        d = invert(self._last_true) @ T                        # true motion in the previous body frame
        dist = float(np.linalg.norm(d[:3, 3]))
        if dist > 0:
            s = math.sqrt(dist)
            self._yaw_err = self._rng.normal(0.0, self._yaw_walk * s)
            d = d.copy()
            d[:3, 3] *= 1.0 + self.scale_error
            d[:3, 3] += self._rng.normal(0.0, self._pos_walk * s, 3) * np.array([1.0, 1.0, 0.3])
            c, sn = math.cos(self._yaw_err), math.sin(self._yaw_err)
            Rz = np.array([[c, -sn, 0.0], [sn, c, 0.0], [0.0, 0.0, 1.0]])
            d[:3, :3] = Rz @ d[:3, :3]
        self._est = self._est @ d
        self._last_true = T.copy()
        return self._est.copy()

    def error_m(self, T_world_body_true) -> float:
        """Horizontal distance between the estimate and the given true pose."""
        if self._est is None:
            return 0.0
        return float(np.hypot(*(self._est[:2, 3] - np.asarray(T_world_body_true)[:2, 3])))
