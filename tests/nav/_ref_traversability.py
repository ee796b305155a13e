"""Slow, obviously-correct reference for nav.traversability (test oracle).

One cell at a time: ``numpy.linalg.lstsq`` on the known cells of the clipped window,
brute ``max − min`` for the step, brute disk painting for inflation. Plain numpy,
float64 throughout; shares no code with nav/.
"""
from __future__ import annotations

import math

import numpy as np

SLOPE, STEP, ROUGHNESS, UNKNOWN, INFLATED = 1, 2, 4, 8, 16


def ref_layers(z, cell_size_m, k, ks, min_known_fraction=0.5):
    """Slope (deg), step (m), roughness (m) per cell: float64 arrays, NaN where undefined."""
    z = np.asarray(z, dtype=np.float64)
    rows, cols = z.shape
    h, hs = k // 2, ks // 2
    slope = np.full((rows, cols), np.nan)
    rough = np.full((rows, cols), np.nan)
    step = np.full((rows, cols), np.nan)
    for r in range(rows):
        for c in range(cols):
            r0, r1 = max(0, r - h), min(rows, r + h + 1)
            c0, c1 = max(0, c - h), min(cols, c + h + 1)
            win = z[r0:r1, c0:c1]
            ii, jj = np.nonzero(np.isfinite(win))
            n = ii.size
            if n >= 3 and n >= min_known_fraction * win.size - 1e-9:   # 'at least', up to rounding
                x = (jj + c0 + 0.5) * cell_size_m
                y = (ii + r0 + 0.5) * cell_size_m
                zz = win[ii, jj]
                a = np.column_stack([x, y, np.ones(n)])
                if np.linalg.matrix_rank(np.column_stack([jj, ii, np.ones(n)])) == 3:
                    coef, *_ = np.linalg.lstsq(a, zz, rcond=None)
                    resid = zz - a @ coef
                    slope[r, c] = math.degrees(math.atan(math.hypot(coef[0], coef[1])))
                    rough[r, c] = math.sqrt(np.mean(resid ** 2))
            sw = z[max(0, r - hs):r + hs + 1, max(0, c - hs):c + hs + 1]
            known = sw[np.isfinite(sw)]
            if known.size:
                step[r, c] = known.max() - known.min()
    return slope, step, rough


def ref_classify(z, slope, step, rough, limits):
    """Own lethal flags and cost before inflation (float64 cost, inf = lethal)."""
    unknown = ~np.isfinite(np.asarray(z, dtype=np.float64)) | np.isnan(slope)
    with np.errstate(invalid="ignore"):
        reason = ((slope > limits["max_slope_deg"]) * SLOPE
                  | (step > limits["max_step_m"]) * STEP
                  | (rough > limits["max_roughness_m"]) * ROUGHNESS).astype(np.uint8)
    if limits["unknown"] == "lethal":
        reason |= (unknown * UNKNOWN).astype(np.uint8)
    cost = (1.0 + limits["slope_weight"] * (slope / limits["max_slope_deg"]) ** 2
            + limits["step_weight"] * (step / limits["max_step_m"]) ** 2
            + limits["roughness_weight"] * (rough / limits["max_roughness_m"]) ** 2)
    cost = np.where(unknown, limits["unknown_cost"], cost)
    cost = np.where(reason != 0, np.inf, cost)
    return cost, reason


def ref_inflate(reason, radius_cells):
    """Cells (not lethal themselves) whose centre is within radius_cells of a lethal cell's centre."""
    rows, cols = reason.shape
    out = np.zeros((rows, cols), dtype=bool)
    rr = int(math.floor(radius_cells)) + 1
    r2 = radius_cells * radius_cells * (1 + 1e-9) + 1e-9
    for r, c in np.argwhere(reason != 0):
        for dr in range(-rr, rr + 1):
            for dc in range(-rr, rr + 1):
                if dr * dr + dc * dc <= r2 and 0 <= r + dr < rows and 0 <= c + dc < cols:
                    out[r + dr, c + dc] = True
    return out & (reason == 0)


def ref_costmap(z, cell_size_m, limits):
    """Everything: (slope, step, rough, cost, reason) as the reference computes them.

    ``limits`` holds the keys of ``CostMap.limits`` (``footprint_cells``,
    ``step_window_cells``, ``inflation_radius_cells``, ``min_known_fraction``, the
    maxima, weights and unknown policy).
    """
    slope, step, rough = ref_layers(z, cell_size_m, limits["footprint_cells"],
                                    limits["step_window_cells"], limits["min_known_fraction"])
    cost, reason = ref_classify(z, slope, step, rough, limits)
    infl = ref_inflate(reason, limits["inflation_radius_cells"])
    reason = np.where(infl, np.uint8(INFLATED), reason)
    cost = np.where(infl, np.inf, cost)
    return slope, step, rough, cost, reason


def ref_cell(z, cell_size_m, k, r, c, min_known_fraction=0.5):
    """Slope (deg) and roughness (m) of one cell's window, as :func:`ref_layers` computes them."""
    z = np.asarray(z, dtype=np.float64)
    rows, cols = z.shape
    h = k // 2
    r0, r1 = max(0, r - h), min(rows, r + h + 1)
    c0, c1 = max(0, c - h), min(cols, c + h + 1)
    win = z[r0:r1, c0:c1]
    ii, jj = np.nonzero(np.isfinite(win))
    if ii.size < 3 or ii.size < min_known_fraction * win.size - 1e-9:
        return math.nan, math.nan
    a = np.column_stack([(jj + c0 + 0.5) * cell_size_m, (ii + r0 + 0.5) * cell_size_m, np.ones(ii.size)])
    if np.linalg.matrix_rank(np.column_stack([jj, ii, np.ones(ii.size)])) < 3:
        return math.nan, math.nan
    coef, *_ = np.linalg.lstsq(a, win[ii, jj], rcond=None)
    resid = win[ii, jj] - a @ coef
    return math.degrees(math.atan(math.hypot(coef[0], coef[1]))), math.sqrt(np.mean(resid ** 2))


def ref_clearance(reason, cost, flags, inner_cells, outer_cells, weight):
    """Clearance cost by brute force: every traversable non-source cell against every source."""
    src = np.argwhere((reason & flags) != 0)
    out = np.array(cost, dtype=np.float32)
    if len(src) == 0:
        return out
    for r in range(cost.shape[0]):
        for c in range(cost.shape[1]):
            if not np.isfinite(cost[r, c]) or reason[r, c] & flags:
                continue
            d = float(np.sqrt(((src - (r, c)) ** 2).sum(axis=1)).min())
            if d < outer_cells:
                out[r, c] = np.float32(cost[r, c] + weight * min(1.0, (outer_cells - d) / (outer_cells - inner_cells)))
    return out
