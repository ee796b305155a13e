"""Numba kernels of stereo terrain mapping (wrapper: :mod:`perception.stereo_map`).

Points (:func:`_disparity_points`)
    Each valid pixel ``(u, v)`` of a disparity map becomes a camera-frame point
    ``z = fx b / d``, ``x = (u - cx) z / fx``, ``y = (v - cy) z / fy`` with depth variance
    ``(z² σ_d / (fx b))²``; pixels whose range (distance from the optical centre) lies outside
    ``[min_range_m, max_range_m]`` or whose disparity is NaN / not positive are skipped.

World heights (:func:`_world_points`)
    Points go to the world by ``p_w = R p_c + t``. Their height variance adds four terms
    (``up`` = the world's z axis in the camera frame, the third row of ``R``; ``ray = p_c / z``):

    * depth error along the viewing ray: ``var_z (up · ray)²``;
    * pixel error across it: ``(σ_px z / fx)² (up_x² + up_y²)``;
    * attitude error: ``σ_att² d_h²`` with ``d_h`` the horizontal distance from the camera;
    * the horizontal misplacement by the depth error, turned into height on a slope of
      ``slope_prior``: ``slope_prior² var_z |ray_h|²`` (``ray_h`` the ray's horizontal part).

    Points whose height standard deviation exceeds ``max_sigma_m`` get a NaN variance (they
    are not rasterised).

Rasterisation (:func:`_rasterize_heights`)
    A counting sort puts the points of each cell (the cell convention of
    :mod:`nav.terrain_map`) side by side, so the result does not depend on their order. Per
    cell of ``k`` points the *top-layer floor* ``L`` is the ``q``-th largest lower bound
    ``h - k_σ σ``, ``q = max(min_points, ceil(top_fraction k))``: at least ``q`` points say the
    surface reaches that high, so a few wild points (mismatches) cannot set it. The top layer
    is the points that can reach the floor, ``h + k_σ σ + layer_m >= L``, and the cell height
    is their ``top_quantile`` (0.5: the median; linear between order statistics). On open ground every point is in the layer (the median of all of them);
    on a rock face the cell takes the height of the rock's upper part instead of averaging
    face and foot (which would hide a step). The cell variance is the mean of the layer's
    point variances: the points of one cell come from a few neighbouring pixels whose
    block-matching errors are correlated, so averaging them does not shrink the error; it is
    floored at ``min_var_m2``. Cells with fewer than ``min_points`` points are unknown (NaN
    height, infinite variance). Nothing is interpolated: a cell no point falls in stays
    unknown (occlusion shadows behind rocks, gaps between far image rows). Medians and floors
    come from quickselect (:func:`_select`), O(k) per cell.

Fusion (:func:`_fuse_heights`)
    Per cell of a local map placed at an integer cell offset in the global grid, a scalar
    Kalman update of the global height with the local one, after inflating the global
    variance by ``q`` per unit of ``stamp`` since the cell's last update (pose drift makes
    old observations less certain relative to the current pose). A measurement farther than
    ``gate`` standard deviations from the estimate is inconsistent (drift, a newly seen or
    moved obstacle, an earlier spill): the estimate's variance is first widened by the squared
    innovation, so the new measurement takes over (gain >= gate² / (gate² + 1)) instead of
    being averaged into a smear. A cell older than ``max_age`` is replaced outright. Variances
    never fall below ``min_var_m2``. Cells whose height moved more than ``change_tol_m`` since
    they were last reported (or that became known) are listed.

Kernels fill preallocated outputs and return an int status (``OK`` = 0); they import only
numpy, numba and math, and take every tunable as an argument.
"""
import math

import numpy as np
from numba import njit

OK = 0
BAD_SHAPE = 1
BAD_ARGUMENT = 2

_OPTS = dict(cache=True, nogil=True, error_model="numpy")
_F = "float64[::1]"
_F2 = "float64[:, ::1]"
_S2 = "float32[:, ::1]"
_I = "int64[::1]"
_I2 = "int32[:, ::1]"
_D = "float64"


# ------------------------------------------------------------------------------ points
@njit(f"int64({_S2}, {_D}, {_D}, {_D}, {_D}, {_D}, {_D}, {_D}, {_D}, int64, {_F2}, {_F}, {_I})", **_OPTS)
def _disparity_points(disp, fx, fy, cx, cy, baseline_m, sigma_d_px, min_range_m, max_range_m, stride,
                      xyz, var_depth, n_out):
    """Back-project the valid pixels of ``disp`` (every ``stride``-th row and column).

    Writes the first ``n`` rows of ``xyz`` (camera frame, metres) and ``var_depth`` (m²) and
    ``n_out[0] = n``. ``xyz`` must hold at least ``ceil(h / stride) * ceil(w / stride)`` rows.
    """
    h, w = disp.shape
    if stride < 1:
        return BAD_ARGUMENT
    cap = ((h + stride - 1) // stride) * ((w + stride - 1) // stride)
    if xyz.shape[0] < cap or xyz.shape[1] != 3 or var_depth.shape[0] < cap or n_out.shape[0] < 1:
        return BAD_SHAPE
    if not (fx > 0.0 and fy > 0.0 and baseline_m > 0.0 and sigma_d_px >= 0.0 and max_range_m > 0.0):
        return BAD_ARGUMENT
    fb = fx * baseline_m
    k = sigma_d_px / fb
    lo2 = min_range_m * min_range_m
    hi2 = max_range_m * max_range_m
    inv_fx = 1.0 / fx
    inv_fy = 1.0 / fy
    # a disparity below fb / max_range_m lies beyond max_range_m along the axis, so beyond it in range
    d_min = fb / max_range_m
    n = 0
    for v in range(0, h, stride):
        yv = (v - cy) * inv_fy
        for u in range(0, w, stride):
            d = np.float64(disp[v, u])
            if not d >= d_min:           # NaN, non-positive, too far
                continue
            z = fb / d
            x = (u - cx) * inv_fx * z
            y = yv * z
            r2 = x * x + y * y + z * z
            if r2 < lo2 or r2 > hi2:
                continue
            xyz[n, 0] = x
            xyz[n, 1] = y
            xyz[n, 2] = z
            s = k * z * z
            var_depth[n] = s * s
            n += 1
    n_out[0] = n
    return OK


@njit(f"int64({_F2}, {_F}, {_F2}, {_F}, {_D}, {_D}, {_D}, {_D}, {_F2}, {_F}, {_F})", **_OPTS)
def _world_points(xyz_cam, var_depth, R_wc, t_wc, pixel_var_per_z2, attitude_var_rad2, slope_prior2,
                  max_var_m2, xyz_world, var_height, bounds):
    """World points and their height variances (see the module docstring).

    ``pixel_var_per_z2 = (σ_px / fx)²``. Points whose variance exceeds ``max_var_m2`` get NaN.
    ``bounds = (x_min, x_max, y_min, y_max)`` of the points that kept a variance (``+inf,
    -inf, ...`` when none did).
    """
    n = xyz_cam.shape[0]
    if (xyz_cam.shape[1] != 3 or var_depth.shape[0] != n or xyz_world.shape[0] != n or xyz_world.shape[1] != 3
            or var_height.shape[0] != n or R_wc.shape[0] != 3 or R_wc.shape[1] != 3 or t_wc.shape[0] != 3
            or bounds.shape[0] != 4):
        return BAD_SHAPE
    ux = R_wc[2, 0]
    uy = R_wc[2, 1]
    uz = R_wc[2, 2]
    lateral = ux * ux + uy * uy
    bx0 = math.inf
    bx1 = -math.inf
    by0 = math.inf
    by1 = -math.inf
    for i in range(n):
        x = xyz_cam[i, 0]
        y = xyz_cam[i, 1]
        z = xyz_cam[i, 2]
        wx = R_wc[0, 0] * x + R_wc[0, 1] * y + R_wc[0, 2] * z + t_wc[0]
        wy = R_wc[1, 0] * x + R_wc[1, 1] * y + R_wc[1, 2] * z + t_wc[1]
        wz = R_wc[2, 0] * x + R_wc[2, 1] * y + R_wc[2, 2] * z + t_wc[2]
        xyz_world[i, 0] = wx
        xyz_world[i, 1] = wy
        xyz_world[i, 2] = wz
        vz = var_depth[i]
        iz = 1.0 / z
        # the viewing ray scaled to unit depth, in the world: vertical and horizontal parts
        rx = x * iz
        ry = y * iz
        ray_up = ux * rx + uy * ry + uz
        rwx = R_wc[0, 0] * rx + R_wc[0, 1] * ry + R_wc[0, 2]
        rwy = R_wc[1, 0] * rx + R_wc[1, 1] * ry + R_wc[1, 2]
        dx = wx - t_wc[0]
        dy = wy - t_wc[1]
        var = (vz * ray_up * ray_up + pixel_var_per_z2 * z * z * lateral
               + attitude_var_rad2 * (dx * dx + dy * dy) + slope_prior2 * vz * (rwx * rwx + rwy * rwy))
        if not var <= max_var_m2:
            var_height[i] = np.nan
            continue
        var_height[i] = var
        bx0 = min(bx0, wx)
        bx1 = max(bx1, wx)
        by0 = min(by0, wy)
        by1 = max(by1, wy)
    bounds[0] = bx0
    bounds[1] = bx1
    bounds[2] = by0
    bounds[3] = by1
    return OK


# ------------------------------------------------------------------------------ rasterisation
@njit(f"{_D}({_F}, int64, int64, int64)", **_OPTS)
def _select(a, lo, hi, k):
    """The ``k``-th smallest value of ``a[lo:hi]`` (0-based), by quickselect; reorders that slice."""
    k += lo
    hi -= 1
    while hi > lo:
        # median of three as the pivot, Hoare partition
        mid = (lo + hi) >> 1
        x, y, z = a[lo], a[mid], a[hi]
        if x > y:
            x, y = y, x
        if y > z:
            y = z
            if x > y:
                y = x
        pivot = y
        i = lo
        j = hi
        while i <= j:
            while a[i] < pivot:
                i += 1
            while a[j] > pivot:
                j -= 1
            if i <= j:
                t = a[i]
                a[i] = a[j]
                a[j] = t
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            return a[k]
    return a[k]


@njit(f"int64({_F2}, {_F}, {_D}, {_D}, {_D}, {_D}, {_D}, {_D}, int64, {_D}, {_D}, {_S2}, {_S2}, {_I2})", **_OPTS)
def _rasterize_heights(xyz, var_height, ox, oy, cell, gate_k, layer_m, top_fraction, min_points, min_var_m2,
                       top_quantile, height, var, count):
    """Height map of world points: the robust top layer of each cell.

    ``xyz`` (n, 3) world metres, ``var_height`` (n,) m² (a point with a NaN or infinite
    coordinate or variance is skipped). The grid's cell ``(0, 0)`` has its lower-left corner
    at ``(ox, oy)``; ``height``/``var``/``count`` give its shape. Writes ``height`` (NaN =
    unknown), ``var`` (inf = unknown) and ``count`` (usable points that fell in each cell).

    Per cell of ``k >= min_points`` points: the floor ``L`` is the ``q``-th largest lower
    bound ``h - gate_k σ`` with ``q = max(min_points, ceil(top_fraction k))`` (at most ``k``);
    the top layer is the points with ``h + gate_k σ + layer_m >= L``; the height is their
    ``top_quantile`` (linear between the order statistics around ``top_quantile · (used − 1)``;
    0.5 is the median) and the variance the mean of their variances (at least ``min_var_m2``).
    """
    rows, cols = height.shape
    n = xyz.shape[0]
    if (xyz.shape[1] != 3 or var_height.shape[0] != n or var.shape[0] != rows or var.shape[1] != cols
            or count.shape[0] != rows or count.shape[1] != cols):
        return BAD_SHAPE
    if not (cell > 0.0 and gate_k >= 0.0 and layer_m >= 0.0 and 0.0 <= top_fraction <= 1.0
            and min_points >= 1 and min_var_m2 >= 0.0 and 0.0 <= top_quantile <= 1.0):
        return BAD_ARGUMENT
    m = rows * cols
    start = np.zeros(m + 1, np.int64)
    idx = np.empty(n, np.int64)
    inv_cell = 1.0 / cell
    # counting sort of the points by cell
    for i in range(n):
        idx[i] = -1
        x = xyz[i, 0]
        y = xyz[i, 1]
        vh = var_height[i]
        if not (vh >= 0.0 and vh < math.inf and abs(x) < math.inf and abs(y) < math.inf
                and abs(xyz[i, 2]) < math.inf):
            continue
        fc = math.floor((x - ox) * inv_cell)
        fr = math.floor((y - oy) * inv_cell)
        if not (fc >= 0.0 and fc < cols and fr >= 0.0 and fr < rows):
            continue
        j = np.int64(fr) * cols + np.int64(fc)
        idx[i] = j
        start[j + 1] += 1
    for j in range(m):
        start[j + 1] += start[j]
    total = start[m]
    fill = start[:m].copy()
    hs = np.empty(total)      # height, lower bound, upper bound (+ layer), variance, by cell
    lo = np.empty(total)
    up = np.empty(total)
    vs = np.empty(total)
    for i in range(n):
        j = idx[i]
        if j >= 0:
            t = fill[j]
            fill[j] = t + 1
            h = xyz[i, 2]
            vh = var_height[i]
            s = gate_k * math.sqrt(vh)
            hs[t] = h
            lo[t] = h - s
            up[t] = h + s + layer_m
            vs[t] = vh
    kept = np.empty(total)
    for r in range(rows):
        for c in range(cols):
            j = r * cols + c
            a = start[j]
            b = start[j + 1]
            k = b - a
            count[r, c] = np.int32(min(k, 2147483647))
            if k < min_points or k == 0:
                height[r, c] = np.nan
                var[r, c] = np.inf
                continue
            q = max(min_points, int(math.ceil(top_fraction * k)))
            if q > k:
                q = k
            floor_ = _select(lo, a, b, k - q)       # reorders lo only (it is not used again)
            used = 0
            sv = 0.0
            for t in range(a, b):
                if up[t] >= floor_:
                    kept[a + used] = hs[t]
                    sv += vs[t]
                    used += 1
            # the top_quantile of the layer, interpolated between order statistics (0.5: the median)
            pos = top_quantile * (used - 1)
            k0 = min(int(math.floor(pos)), used - 1)
            f = pos - k0
            hq = _select(kept, a, a + used, k0)
            if f > 0.0:
                # the next order statistic: the smallest value the select left above kept[a + k0]
                above = kept[a + k0 + 1]
                for t in range(a + k0 + 2, a + used):
                    if kept[t] < above:
                        above = kept[t]
                hq = (1.0 - f) * hq + f * above
            height[r, c] = np.float32(hq)
            var[r, c] = np.float32(max(sv / used, min_var_m2))
    return OK


# ------------------------------------------------------------------------------ fusion
@njit(f"int64({_S2}, {_S2}, int64, int64, {_S2}, {_S2}, {_F2}, {_S2}, {_D}, {_D}, {_D}, {_D}, {_D}, {_D}, "
      f"{_I}, {_I}, {_I})", **_OPTS)
def _fuse_heights(lh, lv, r0, c0, gh, gv, gstamp, greported, stamp, q, gate, max_age, min_var_m2, change_tol_m,
                  changed_r, changed_c, stats):
    """Fuse a local height map whose cell ``(0, 0)`` is global cell ``(r0, c0)`` (see the module
    docstring). ``gh`` (NaN = unknown), ``gv``, ``gstamp`` and ``greported`` (the height last
    reported as changed) are updated in place.

    A cell is reported when its new height differs from ``greported`` by more than
    ``change_tol_m`` (or it became known), so small updates that add up are reported once
    their sum exceeds the tolerance. Writes the changed cells to ``changed_r``/``changed_c``
    (capacity ``lh.size``) and ``stats = (n_changed, n_new, n_fused, n_inconsistent,
    n_replaced)``.
    """
    lr, lc = lh.shape
    gr, gc = gh.shape
    if (lv.shape[0] != lr or lv.shape[1] != lc or gv.shape[0] != gr or gv.shape[1] != gc
            or gstamp.shape[0] != gr or gstamp.shape[1] != gc or greported.shape[0] != gr
            or greported.shape[1] != gc or changed_r.shape[0] < lr * lc
            or changed_c.shape[0] < lr * lc or stats.shape[0] < 5):
        return BAD_SHAPE
    if not (q >= 0.0 and gate > 0.0 and max_age >= 0.0 and min_var_m2 >= 0.0 and change_tol_m >= 0.0):
        return BAD_ARGUMENT
    gate2 = gate * gate
    n_changed = 0
    n_new = 0
    n_fused = 0
    n_inconsistent = 0
    n_replaced = 0
    for i in range(max(0, -r0), min(lr, gr - r0)):
        for j in range(max(0, -c0), min(lc, gc - c0)):
            z = np.float64(lh[i, j])
            R = max(np.float64(lv[i, j]), min_var_m2)
            if not (z == z and R < math.inf):
                continue
            r = r0 + i
            c = c0 + j
            h = np.float64(gh[r, c])
            age = stamp - gstamp[r, c]
            if h != h or age > max_age:
                if h != h:
                    n_new += 1
                else:
                    n_replaced += 1
                hn = z
                Pn = R
            else:
                if age < 0.0:
                    age = 0.0
                P = np.float64(gv[r, c]) + q * age
                dz = z - h
                if dz * dz > gate2 * (P + R):
                    # inconsistent: the estimate was overconfident (drift, a moved or newly seen
                    # obstacle); widen it by the innovation so the measurement takes over
                    P += dz * dz
                    n_inconsistent += 1
                else:
                    n_fused += 1
                K = P / (P + R)
                hn = h + K * dz
                Pn = max((1.0 - K) * P, min_var_m2)
            hn32 = np.float32(hn)
            if not abs(np.float64(hn32) - np.float64(greported[r, c])) <= change_tol_m:
                greported[r, c] = hn32
                changed_r[n_changed] = r
                changed_c[n_changed] = c
                n_changed += 1
            gh[r, c] = hn32
            gv[r, c] = np.float32(Pn)
            gstamp[r, c] = stamp
    stats[0] = n_changed
    stats[1] = n_new
    stats[2] = n_fused
    stats[3] = n_inconsistent
    stats[4] = n_replaced
    return OK

