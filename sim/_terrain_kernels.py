"""Numba kernels that stamp craters and rocks into an elevation grid.

Plain functions over arrays (see STYLE.md): no classes, no logging, no globals read as
tunables. The public wrappers in :mod:`sim.terrain` validate, coerce and allocate; these
kernels fill the grid in place and return an int status code (0 = success).

Grid convention (nav/terrain_map.py): ``z[r, c]`` has its centre at
``x = ox + (c + 0.5) * cell``, ``y = oy + (r + 0.5) * cell``.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

STATUS_OK = 0
STATUS_BAD_SIZE = 1


@njit("int64(float32[:, ::1], float64, float64, float64, float64[::1], float64[::1], float64[::1], "
      "float64[::1], float64[::1], float64)", cache=True)
def _stamp_craters(z, ox, oy, cell, x_m, y_m, diameter_m, depth_m, rim_m, ejecta_extent):
    """Add each crater's radial profile to ``z`` in place (overlapping craters add).

    With ``s = r / R`` (``R`` = half the rim-to-rim diameter), the height added is a
    parabolic bowl ``rim - depth + depth * s**2`` for ``s <= 1`` (floor ``depth`` below the
    rim crest, crest ``rim`` above the surroundings) and an ejecta blanket
    ``rim * (s**-3 - E**-3) / (1 - E**-3)`` for ``1 < s < E`` (``E = ejecta_extent``),
    which is continuous at the rim and zero from ``E`` on.
    """
    rows = z.shape[0]
    cols = z.shape[1]
    tail = 0.0
    if ejecta_extent > 1.0:
        tail = ejecta_extent ** -3.0
    for i in range(x_m.shape[0]):
        radius = 0.5 * diameter_m[i]
        if not radius > 0.0:
            return STATUS_BAD_SIZE
        depth = depth_m[i]
        rim = rim_m[i]
        reach = radius * max(ejecta_extent, 1.0)
        xc = (x_m[i] - ox) / cell - 0.5          # crater centre in continuous grid coordinates
        yc = (y_m[i] - oy) / cell - 0.5
        reach_cells = reach / cell
        c_lo = max(int(math.ceil(xc - reach_cells)), 0)
        c_hi = min(int(math.floor(xc + reach_cells)), cols - 1)
        r_lo = max(int(math.ceil(yc - reach_cells)), 0)
        r_hi = min(int(math.floor(yc + reach_cells)), rows - 1)
        inv_r2 = 1.0 / (radius * radius)
        for r in range(r_lo, r_hi + 1):
            dy = (r - yc) * cell
            for c in range(c_lo, c_hi + 1):
                dx = (c - xc) * cell
                s2 = (dx * dx + dy * dy) * inv_r2
                if s2 <= 1.0:
                    h = rim - depth + depth * s2
                elif tail > 0.0 and s2 < ejecta_extent * ejecta_extent:
                    s = math.sqrt(s2)
                    h = rim * (1.0 / (s2 * s) - tail) / (1.0 - tail)
                else:
                    continue
                z[r, c] = np.float32(z[r, c] + h)
    return STATUS_OK


@njit("int64(float32[:, ::1], float32[:, ::1], float64, float64, float64, float64[::1], float64[::1], "
      "float64[::1], float64[::1])", cache=True)
def _stamp_rocks(z, ground, ox, oy, cell, x_m, y_m, diameter_m, height_m):
    """Raise ``z`` in place to each rock's half-ellipsoid sitting on ``ground``.

    A rock of diameter ``D`` and height ``h`` whose centre lies in cell ``(r0, c0)`` is the
    surface ``ground[r0, c0] + h * sqrt(1 - (rho / (D/2))**2)`` for horizontal distance
    ``rho < D/2`` from its centre, sampled at cell centres; ``z`` becomes the maximum of
    itself and every rock (rocks never stack). Cell ``(r0, c0)`` always receives the full
    top ``ground[r0, c0] + h``, so a rock is present in the grid even when its centre is
    not on a cell centre. Centres on the outer edge are clamped to the last cell.
    ``ground`` must be the grid before any rock (not ``z`` itself).
    """
    rows = z.shape[0]
    cols = z.shape[1]
    for i in range(x_m.shape[0]):
        a = 0.5 * diameter_m[i]
        if not a > 0.0:
            return STATUS_BAD_SIZE
        h = height_m[i]
        gx = (x_m[i] - ox) / cell
        gy = (y_m[i] - oy) / cell
        c0 = min(max(int(math.floor(gx)), 0), cols - 1)
        r0 = min(max(int(math.floor(gy)), 0), rows - 1)
        base = np.float64(ground[r0, c0])
        xc = gx - 0.5
        yc = gy - 0.5
        a_cells = a / cell
        c_lo = max(int(math.ceil(xc - a_cells)), 0)
        c_hi = min(int(math.floor(xc + a_cells)), cols - 1)
        r_lo = max(int(math.ceil(yc - a_cells)), 0)
        r_hi = min(int(math.floor(yc + a_cells)), rows - 1)
        inv_a2 = 1.0 / (a * a)
        for r in range(r_lo, r_hi + 1):
            dy = (r - yc) * cell
            for c in range(c_lo, c_hi + 1):
                dx = (c - xc) * cell
                u = 1.0 - (dx * dx + dy * dy) * inv_a2
                if u > 0.0:
                    top = np.float32(base + h * math.sqrt(u))
                    if top > z[r, c]:
                        z[r, c] = top
        top = np.float32(base + h)
        if top > z[r0, c0]:
            z[r0, c0] = top
    return STATUS_OK
