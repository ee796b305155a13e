"""Slow, obviously-correct references and closed forms for tests/sim/test_rover_model.py.

Nothing here imports the model or its kernels: heights come from ``TerrainMap.height_at``,
attitudes from rotation matrices built out of plane normals and :func:`sim.frames.euler_from_rot`,
the rigid support plane from brute force over every contact triple (and, independently, the
upper-hull height from a linear program), motion from closed-form circles and trapezoids.
"""
from __future__ import annotations

import itertools
import math

import numpy as np

from nav.terrain_map import TerrainMap
from sim.frames import euler_from_rot


# ----------------------------------------------------------------------------- terrains
def plane_terrain(gx: float, gy: float, *, size_m=(8.0, 8.0), cell_m=0.05, centre=None) -> TerrainMap:
    """``z = gx (x - cx) + gy (y - cy)`` sampled at cell centres (zero at the map centre)."""
    nx, ny = int(round(size_m[0] / cell_m)), int(round(size_m[1] / cell_m))
    cx, cy = centre if centre is not None else (0.5 * size_m[0], 0.5 * size_m[1])
    x = (np.arange(nx) + 0.5) * cell_m
    y = (np.arange(ny) + 0.5) * cell_m
    z = gx * (x[None, :] - cx) + gy * (y[:, None] - cy)
    return TerrainMap(z.astype(np.float32), cell_m)


def flat_terrain(size_m=(8.0, 8.0), cell_m=0.05, height=0.0) -> TerrainMap:
    nx, ny = int(round(size_m[0] / cell_m)), int(round(size_m[1] / cell_m))
    return TerrainMap(np.full((ny, nx), height, np.float32), cell_m)


def with_box(terrain: TerrainMap, x0, x1, y0, y1, height) -> TerrainMap:
    """Cells whose centres lie in ``[x0, x1] x [y0, y1]`` raised to ``height`` (a box rock or a wall)."""
    z = terrain.elevation_m.copy()
    rows, cols = z.shape
    cs = terrain.cell_size_m
    ox, oy = terrain.origin_xy_m
    xc = ox + (np.arange(cols) + 0.5) * cs
    yc = oy + (np.arange(rows) + 0.5) * cs
    m = ((xc[None, :] >= x0) & (xc[None, :] <= x1) & (yc[:, None] >= y0) & (yc[:, None] <= y1))
    z[m] = height
    return terrain.with_elevation(z)


def with_hemisphere(terrain: TerrainMap, x, y, radius) -> TerrainMap:
    z = terrain.elevation_m.copy()
    rows, cols = z.shape
    cs = terrain.cell_size_m
    xc = (np.arange(cols) + 0.5) * cs - x
    yc = (np.arange(rows) + 0.5) * cs - y
    d2 = xc[None, :] ** 2 + yc[:, None] ** 2
    bump = np.sqrt(np.maximum(radius * radius - d2, 0.0))
    return terrain.with_elevation(z + bump.astype(np.float32))


# ----------------------------------------------------------------------------- geometry
def wheel_world_xy(layout, x, y, yaw) -> np.ndarray:
    """Contact points (wheels then casters) of a layout at a horizontal pose (yaw rotation only)."""
    pts = np.concatenate([layout.position_xy_m, layout.caster_xy_m.reshape(-1, 2)])
    c, s = math.cos(yaw), math.sin(yaw)
    return np.stack([x + c * pts[:, 0] - s * pts[:, 1], y + s * pts[:, 0] + c * pts[:, 1]], axis=1)


def envelope_height(terrain: TerrainMap, p, heading, r, k):
    """Lowest point of a disc of radius ``r`` resting on the profile along ``heading``, sampled at
    ``2 k + 1`` points: ``max_d h(p + d u) - (r - sqrt(r² - d²))``."""
    u = np.array([math.cos(heading), math.sin(heading)])
    best = -math.inf
    for j in range(-k, k + 1):
        d = r * j / k
        h = float(terrain.height_at(np.asarray(p) + d * u))
        best = max(best, h - (r - math.sqrt(max(r * r - d * d, 0.0))))
    return best


def plane_envelope_offset(slope_along: float, r: float, k: int) -> float:
    """Envelope lift of a wheel on a plane rising ``slope_along`` (dz/ds) along its heading."""
    return max(r * j / k * slope_along - (r - math.sqrt(max(r * r - (r * j / k) ** 2, 0.0)))
               for j in range(-k, k + 1))


def attitude_on_plane(gx: float, gy: float, yaw: float) -> tuple[float, float, float]:
    """``(pitch, roll, tilt)`` of a body lying in the plane with gradient ``(gx, gy)``, its x axis
    the line of the plane straight above the heading ``yaw`` (built as a rotation matrix, then
    decomposed)."""
    n = np.array([-gx, -gy, 1.0])
    n /= np.linalg.norm(n)
    c, s = math.cos(yaw), math.sin(yaw)
    bx = np.array([c, s, gx * c + gy * s])
    bx /= np.linalg.norm(bx)
    by = np.cross(n, bx)
    R = np.column_stack([bx, by, n])
    yaw_r, pitch, roll = euler_from_rot(R)
    assert abs(math.remainder(yaw_r - yaw, 2 * math.pi)) < 1e-9
    return pitch, roll, math.acos(n[2])


def rocker_bogie_plane(z_contacts, x_front, x_mid, x_rear, half_track):
    """Body plane ``(z0, sx, sy)`` of a rocker-bogie from its six contact heights (left F, M, R,
    right F, M, R), written out from the linkage: bogie pivot at the middle/rear mean, rocker
    pivot at x = 0 on the front-contact-to-bogie line, pitch slope = mean rocker slope."""
    pivots, slopes = [], []
    for f, m, r in ((0, 1, 2), (3, 4, 5)):
        xb = 0.5 * (x_mid + x_rear)
        zb = 0.5 * (z_contacts[m] + z_contacts[r])
        slope = (zb - z_contacts[f]) / (xb - x_front)
        pivots.append(z_contacts[f] - x_front * slope)
        slopes.append(slope)
    sy = (pivots[0] - pivots[1]) / (2 * half_track)
    return 0.5 * (pivots[0] + pivots[1]), 0.5 * (slopes[0] + slopes[1]), sy


def rigid_support_plane(xy, z, q):
    """Brute force: among all contact triples whose triangle contains ``q`` and whose plane has
    every contact on or below it (a supporting tripod), the most level (first on ties, the same
    greedy rule as documented). Returns ``(z0, sx, sy)`` at body xy coordinates and the triple."""
    xy = np.asarray(xy, dtype=np.float64)
    z = np.asarray(z, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    best, best_lvl = None, math.inf
    zref = z[0]
    for t in itertools.combinations(range(len(xy)), 3):
        M = np.column_stack([np.ones(3), xy[list(t)]])
        if abs(np.linalg.det(M)) < 1e-9 * float(np.ptp(xy, axis=0).max()) ** 2:
            continue
        lam = np.linalg.solve(M.T, np.array([1.0, q[0], q[1]]))
        if lam.min() < -1e-9:
            continue
        p = np.linalg.solve(M, z[list(t)] - zref)
        if np.all(z - zref <= p[0] + p[1] * xy[:, 0] + p[2] * xy[:, 1] + 1e-9):
            lvl = p[1] ** 2 + p[2] ** 2
            if lvl < best_lvl * (1 - 1e-9) - 1e-15:
                best, best_lvl = (p[0] + zref, p[1], p[2], t), lvl
    return best


def upper_hull_height_lp(xy, z, q) -> float:
    """Height of the upper convex hull of the points above ``q``: max sum(l z) subject to
    sum(l) = 1, sum(l xy) = q, l >= 0 (scipy's linear programming)."""
    from scipy.optimize import linprog

    xy = np.asarray(xy, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    A = np.vstack([np.ones(len(xy)), xy[:, 0], xy[:, 1]])
    res = linprog(-np.asarray(z, dtype=np.float64), A_eq=A, b_eq=[1.0, q[0], q[1]], bounds=(0, None),
                  method="highs")
    assert res.success
    return -res.fun


# ----------------------------------------------------------------------------- soil and motion
def soil_slip(soil, climb_deg: float) -> float:
    """The slip formula of nav.config.Soil, written out."""
    if climb_deg >= soil.max_climb_deg:
        return 1.0
    if climb_deg >= 0:
        return min(1.0, soil.slip_flat + soil.slip_gain * (math.exp(climb_deg / soil.slip_scale_deg) - 1.0))
    return max(-soil.max_skid, soil.slip_flat - soil.downhill_slip_per_deg * abs(climb_deg))


def circle_pose(x0, y0, yaw0, v, w, t):
    """Pose after driving ``t`` seconds at constant forward speed ``v`` and yaw rate ``w``."""
    if abs(w) < 1e-12:
        return x0 + v * t * math.cos(yaw0), y0 + v * t * math.sin(yaw0), yaw0
    R = v / w
    yaw = yaw0 + w * t
    return x0 + R * (math.sin(yaw) - math.sin(yaw0)), y0 - R * (math.cos(yaw) - math.cos(yaw0)), yaw


def trapezoid_distance(v, a, t):
    """Distance from rest accelerating at ``a`` up to ``v`` (then cruising), after ``t`` seconds."""
    t_ramp = abs(v) / a
    if t <= t_ramp:
        return math.copysign(0.5 * a * t * t, v)
    return math.copysign(0.5 * a * t_ramp ** 2 + abs(v) * (t - t_ramp), v)


def skid_turn_rate(v_left, v_right, track, wheelbase):
    """Yaw rate of a symmetric 4-wheel skid-steer rover (least squares over the wheels at
    ``(±b/2, ±t/2)``): ``t (vR - vL) / (t² + b²)``, i.e. the differential-drive rate ``(vR - vL) / t``
    shrunk by ``t² / (t² + b²)`` (drivers/kinematics.py's docstring has a spurious factor 2)."""
    return track * (v_right - v_left) / (track ** 2 + wheelbase ** 2)


def angle_diff(a, b):
    return math.remainder(a - b, 2 * math.pi)
