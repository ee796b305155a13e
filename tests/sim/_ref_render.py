"""Slow, obviously-correct references for tests/sim/test_camera.py.

Pure numpy; nothing here imports sim/. The surface is the one sim.camera documents: the
triangle mesh through the cell-centre vertices of the height grid, each vertex quad
``(r, c), (r, c+1), (r+1, c+1), (r+1, c)`` split along the ``(r, c)–(r+1, c+1)`` diagonal;
no surface where a triangle has a NaN vertex or outside the outermost cell centres.
"""
from __future__ import annotations

import math

import numpy as np


# ------------------------------------------------------------------------------ the surface
def surface_height(z, origin_xy_m, cell_size_m, x, y):
    """Height of the triangulated surface at world points (any shape); NaN where there is none."""
    z = np.asarray(z, dtype=np.float64)
    rows, cols = z.shape
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    gc = (x - origin_xy_m[0]) / cell_size_m - 0.5      # vertex (cell-centre) coordinates
    gr = (y - origin_xy_m[1]) / cell_size_m - 0.5
    inside = (gc >= 0) & (gc <= cols - 1) & (gr >= 0) & (gr <= rows - 1)
    c0 = np.clip(np.floor(gc), 0, cols - 2).astype(np.int64)
    r0 = np.clip(np.floor(gr), 0, rows - 2).astype(np.int64)
    fc = np.where(inside, gc - c0, 0.0)
    fr = np.where(inside, gr - r0, 0.0)
    z00 = z[r0, c0]
    z01 = z[r0, c0 + 1]
    z10 = z[r0 + 1, c0]
    z11 = z[r0 + 1, c0 + 1]
    lower = z00 + fc * (z01 - z00) + fr * (z11 - z01)   # plane through (0,0), (1,0), (1,1): where fc >= fr
    upper = z00 + fr * (z10 - z00) + fc * (z11 - z10)   # plane through (0,0), (0,1), (1,1): where fr > fc
    with np.errstate(invalid="ignore"):
        h = np.where(fc >= fr, lower, upper)
    return np.where(inside, h, np.nan)


# ------------------------------------------------------------------------------ ray casting
def pixel_rays(K, R_world_cam, uv):
    """World directions (camera z = 1 scaling) of the rays through pixel centres ``uv`` (n, 2)."""
    uv = np.asarray(uv, dtype=np.float64)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    d_cam = np.stack([(uv[:, 0] - cx) / fx, (uv[:, 1] - cy) / fy, np.ones(len(uv))], axis=1)
    return d_cam @ np.asarray(R_world_cam).T


def ray_cast_depth(z, origin_xy_m, cell_size_m, T_world_cam, K, uv, max_range_m, *, step0_m=0.003,
                   step_per_m=0.001, chunk=256, bisections=50):
    """Camera-frame depth of the first surface hit along each pixel ray; ``inf`` for none.

    The ray is sampled from the optical centre outward with a step growing with distance
    (``step0_m + step_per_m * t``) up to ``max_range_m`` (distance along the ray); a hit is
    the first pair of consecutive samples that goes from above a defined surface to below it,
    refined by bisection. A ray entering the grid from a side below the surface (where no
    triangle faces it) is not a hit.
    """
    T = np.asarray(T_world_cam, dtype=np.float64)
    C = T[:3, 3]
    d = pixel_rays(K, T[:3, :3], uv)
    norm = np.linalg.norm(d, axis=1)
    dh = d / norm[:, None]                                 # unit directions
    n = len(dh)
    ts = [0.0]                                             # sample distances along the ray
    while ts[-1] < max_range_m:
        ts.append(min(ts[-1] + step0_m + step_per_m * ts[-1], max_range_m))
    ts = np.array(ts)

    def above(p):                                          # > 0 above, < 0 below, NaN: no surface
        return p[..., 2] - surface_height(z, origin_xy_m, cell_size_m, p[..., 0], p[..., 1])

    hit_t = np.full(n, np.inf)
    todo = np.arange(n)
    prev = above(np.broadcast_to(C, (n, 3)))
    for k0 in range(1, len(ts), chunk):
        if not len(todo):
            break
        tk = ts[k0:k0 + chunk]
        f = above(C + tk[None, :, None] * dh[todo][:, None, :])
        fp = np.concatenate([prev[:, None], f[:, :-1]], axis=1)
        with np.errstate(invalid="ignore"):
            cross = (fp >= 0) & (f < 0)                    # NaN compares False: both must be defined
        hit = cross.any(axis=1)
        if hit.any():
            rays = todo[hit]
            kk = k0 + np.argmax(cross[hit], axis=1)
            lo, hi = ts[kk - 1], ts[kk]
            for _ in range(bisections):
                mid = 0.5 * (lo + hi)
                with np.errstate(invalid="ignore"):
                    up = above(C + mid[:, None] * dh[rays]) >= 0
                lo = np.where(up, mid, lo)
                hi = np.where(up, hi, mid)
            hit_t[rays] = 0.5 * (lo + hi)
        todo = todo[~hit]
        prev = f[~hit, -1]
    return np.where(np.isfinite(hit_t), hit_t / norm, np.inf)


# ------------------------------------------------------------------------------ shadows
def in_shadow(z, origin_xy_m, cell_size_m, sun_dir, rc, *, step_cells=0.25):
    """Whether each vertex ``rc`` (n, 2) is in a cast shadow: marching toward the sun over the
    surface, some point of the surface rises above the sun ray (by more than 1e-6 m)."""
    z = np.asarray(z, dtype=np.float64)
    s = np.asarray(sun_dir, dtype=np.float64)
    horiz = math.hypot(s[0], s[1])
    tan_el = s[2] / horiz
    ux, uy = s[0] / horiz, s[1] / horiz
    top = np.nanmax(z)
    out = np.zeros(len(rc), dtype=bool)
    for k, (r, c) in enumerate(np.asarray(rc)):
        x0 = origin_xy_m[0] + (c + 0.5) * cell_size_m
        y0 = origin_xy_m[1] + (r + 0.5) * cell_size_m
        h0 = z[r, c]
        reach = (top - h0) / tan_el + cell_size_m
        t = np.arange(step_cells, reach / cell_size_m + step_cells, step_cells) * cell_size_m
        hs = surface_height(z, origin_xy_m, cell_size_m, x0 + t * ux, y0 + t * uy)
        with np.errstate(invalid="ignore"):
            out[k] = bool(np.any(hs > h0 + t * tan_el + 1e-6))
    return out
