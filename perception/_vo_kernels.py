"""Numba kernels of the stereo visual odometry (wrapper: :mod:`perception.vo`).

Plain functions over arrays (STYLE.md): no classes, no logging, tunables as arguments, int status
codes. Conventions shared with the wrapper:

* Images are rectified 8-bit grey, C-contiguous ``(h, w)``; pixel centres at integer coordinates.
  A stereo observation of a point is ``(u_left, v, u_right)`` (rows are equal on a rectified pair).
* Camera frames are OpenCV's (x right, y down, z forward); the right camera sits ``baseline`` along
  the left camera's +x, so ``u_right = fx (X - b) / Z + cx``.
* Poses are 4x4 float64 ``T_ref_cur`` (the current left camera in the reference left camera frame);
  a pose update is applied on the right, ``T <- T @ exp(delta)``, ``delta = (rotation vector,
  translation)`` — the tangent convention of the covariance the wrapper reports.
"""
import math

import numpy as np
from numba import njit

_OPTS = dict(cache=True, nogil=True, error_model="numpy")

# Status codes.
OK = 0
MAX_ITER = 1          # refinement: the iteration budget ran out before convergence (result usable)
SINGULAR = 2          # refinement: the reduced normal matrix is singular (degenerate geometry)
TOO_FEW = 3           # refinement: fewer than 3 points with positive weight

# Per-point stereo matching status.
M_OK = 0
M_BORDER = 1          # the window leaves the image
M_FLAT = 2            # too little texture in the left window
M_AMBIGUOUS = 3       # the second-best disparity is nearly as good (repetitive texture)
M_RANGE = 4           # the best disparity is at the end of the search range (the true one may be outside)
M_DIVERGED = 5        # the sub-pixel refinement left the search range or did not converge



@njit("int64(float32[::1], float32[::1], int64[::1], int64, int64, int64, int64, int64, int64, int64,"
      " uint8[:, ::1], int64[::1], int64[:, ::1], int64[::1])", **_OPTS)
def _bucket_select(x, y, order, width, height, border_px, cell_px, per_cell, min_dist_px, max_total,
                   taken, cell_count, cell_of, out_idx):
    """Greedy bucketed selection of feature candidates.

    Candidates are visited in ``order`` (best score first); one is kept when it lies ``border_px``
    inside the image, its bucket (``cell_px`` squares) holds fewer than ``per_cell`` features and no
    kept feature lies in the 3x3 neighbourhood of its ``min_dist_px`` occupancy cell. ``taken``
    ``(ceil(h / min_dist), ceil(w / min_dist))`` and ``cell_count`` (flat buckets, row-major, ``ncols =
    ceil(w / cell_px)``) arrive pre-filled with the features already tracked and are updated.
    ``cell_of`` is scratch ``(1, n)``. Writes the kept indices to ``out_idx``; returns their number.
    """
    n = x.shape[0]
    ncols = (width + cell_px - 1) // cell_px
    th, tw = taken.shape
    kept = 0
    for k in range(n):
        if kept >= max_total:
            break
        i = order[k]
        xi = x[i]
        yi = y[i]
        if not (xi >= border_px and yi >= border_px and xi <= width - 1 - border_px
                and yi <= height - 1 - border_px):
            continue
        c = int(yi) // cell_px * ncols + int(xi) // cell_px
        cell_of[0, k] = c
        if cell_count[c] >= per_cell:
            continue
        tr = int(yi) // min_dist_px
        tc = int(xi) // min_dist_px
        busy = False
        for dr in range(-1, 2):
            rr = tr + dr
            if rr < 0 or rr >= th:
                continue
            for dc in range(-1, 2):
                cc = tc + dc
                if cc >= 0 and cc < tw and taken[rr, cc] != 0:
                    busy = True
        if busy:
            continue
        taken[tr, tc] = 1
        cell_count[c] += 1
        out_idx[kept] = i
        kept += 1
    return kept


@njit("float64(uint8[:, ::1], float64, float64)", **_OPTS)
def _bilinear(img, x, y):
    """Bilinear sample at ``(x, y)``; the caller keeps ``0 <= x < w - 1`` and ``0 <= y < h - 1``."""
    x0 = int(x)
    y0 = int(y)
    fx = x - x0
    fy = y - y0
    a = img[y0, x0] * (1.0 - fx) + img[y0, x0 + 1] * fx
    b = img[y0 + 1, x0] * (1.0 - fx) + img[y0 + 1, x0 + 1] * fx
    return a * (1.0 - fy) + b * fy


@njit("int64(uint8[:, ::1], uint8[:, ::1], float64[:, ::1], float64[::1], float64[::1], int64, float64,"
      " float64, int64, float64[::1], int8[::1], float64[:, ::1])", **_OPTS)
def _match_stereo(left, right, uv, d_lo, d_hi, half_win, min_std_dn, uniqueness, max_iter, out_d, out_status,
                  scratch):
    """Disparities of left-image points on a rectified pair: integer row search, sub-pixel refinement.

    For point ``i`` at ``uv[i] = (u, v)`` the integer search minimises the sum of absolute differences
    between the ``(2 half_win + 1)²`` window around ``(round(u), round(v))`` in ``left`` and the one at
    ``(round(u) - d, round(v))`` in ``right`` over ``d`` in ``[floor(d_lo[i]), ceil(d_hi[i])]``. The
    match is kept when the left window's standard deviation is at least ``min_std_dn``, the best cost
    is below ``uniqueness`` times the best cost more than one disparity away, and the best lies inside
    the range. Then Gauss-Newton on ``(d, offset)`` minimises ``sum (R(u - d + x, v + y) - L(u + x, v + y)
    - offset)²`` with bilinear sampling at the exact sub-pixel ``(u, v)`` (no pixel locking), up to
    ``max_iter`` steps. ``out_d`` receives the disparity (``u_left - u_right``), ``out_status`` an
    ``M_*`` code. ``scratch`` is ``(2, (2 half_win + 1)²)``. Returns the number of ``M_OK`` points.
    """
    h, w = left.shape
    n = uv.shape[0]
    n_ok = 0
    win = 2 * half_win + 1
    npx = win * win
    for i in range(n):
        out_d[i] = math.nan
        u = uv[i, 0]
        v = uv[i, 1]
        ui = int(math.floor(u + 0.5))
        vi = int(math.floor(v + 0.5))
        if vi - half_win < 1 or vi + half_win > h - 2 or ui - half_win < 1 or ui + half_win > w - 2:
            out_status[i] = M_BORDER
            continue
        dmin = int(math.floor(d_lo[i]))
        dmax = int(math.ceil(d_hi[i]))
        if dmin < 0:
            dmin = 0
        if ui - half_win - dmax < 1:
            dmax = ui - half_win - 1
        if dmax < dmin:
            out_status[i] = M_BORDER
            continue
        # left window statistics
        s = 0.0
        s2 = 0.0
        for yy in range(-half_win, half_win + 1):
            for xx in range(-half_win, half_win + 1):
                g = float(left[vi + yy, ui + xx])
                s += g
                s2 += g * g
        mean = s / npx
        var = s2 / npx - mean * mean
        if var < min_std_dn * min_std_dn:
            out_status[i] = M_FLAT
            continue
        best = 1e300
        best_d = -1
        for d in range(dmin, dmax + 1):
            c = 0.0
            for yy in range(-half_win, half_win + 1):
                lrow = vi + yy
                for xx in range(-half_win, half_win + 1):
                    c += abs(float(left[lrow, ui + xx]) - float(right[lrow, ui + xx - d]))
                if c >= best:
                    break
            if c < best:
                best = c
                best_d = d
        second = 1e300
        for d in range(dmin, dmax + 1):
            if d >= best_d - 1 and d <= best_d + 1:
                continue
            c = 0.0
            for yy in range(-half_win, half_win + 1):
                lrow = vi + yy
                for xx in range(-half_win, half_win + 1):
                    c += abs(float(left[lrow, ui + xx]) - float(right[lrow, ui + xx - d]))
                if c >= second:
                    break
            if c < second:
                second = c
        if dmax > dmin and (best_d == dmax or (best_d == dmin and dmin > 0)):
            # the cost still falls at an end of the searched range: the true disparity may lie beyond
            out_status[i] = M_RANGE
            continue
        if second < 1e300 and best >= uniqueness * second:
            out_status[i] = M_AMBIGUOUS
            continue
        # sub-pixel Gauss-Newton on (d, offset) with the exact left window at (u, v)
        if u - half_win < 0.0 or u + half_win >= w - 1 or v - half_win < 0.0 or v + half_win >= h - 1:
            out_status[i] = M_BORDER
            continue
        k = 0
        for yy in range(-half_win, half_win + 1):
            for xx in range(-half_win, half_win + 1):
                scratch[0, k] = _bilinear(left, u + xx, v + yy)
                k += 1
        d = float(best_d) + (u - ui)
        off = 0.0
        status = M_DIVERGED
        for it in range(max_iter):
            a11 = 0.0
            a12 = 0.0
            a22 = 0.0
            b1 = 0.0
            b2 = 0.0
            xr0 = u - d
            if xr0 - half_win < 1.0 or xr0 + half_win >= w - 2:
                break
            k = 0
            for yy in range(-half_win, half_win + 1):
                for xx in range(-half_win, half_win + 1):
                    xr = xr0 + xx
                    yr = v + yy
                    r = _bilinear(right, xr, yr) - scratch[0, k] - off
                    gx = 0.5 * (_bilinear(right, xr + 1.0, yr) - _bilinear(right, xr - 1.0, yr))
                    jd = -gx        # d r / d d
                    # d r / d off = -1
                    a11 += jd * jd
                    a12 -= jd
                    a22 += 1.0
                    b1 += jd * r
                    b2 -= r
                    k += 1
            det = a11 * a22 - a12 * a12
            if det <= 1e-9 * (a11 * a22 + 1e-300):
                break
            sd = -(a22 * b1 - a12 * b2) / det
            so = -(a11 * b2 - a12 * b1) / det
            d += sd
            off += so
            if abs(d - (best_d + (u - ui))) > 1.5:
                break
            if abs(sd) < 1e-3:
                status = M_OK
                break
        if status == M_OK and d > 0.0:
            out_d[i] = d
            out_status[i] = M_OK
            n_ok += 1
        else:
            out_status[i] = M_DIVERGED
    return n_ok


@njit("void(float64[::1], float64[:, ::1])", **_OPTS)
def _se3_exp(xi, out):
    """``out = exp(xi)`` (4x4) for ``xi = (rotation vector, translation)``; ``V`` maps the translation."""
    wx = xi[0]
    wy = xi[1]
    wz = xi[2]
    th2 = wx * wx + wy * wy + wz * wz
    th = math.sqrt(th2)
    # sin θ / θ, (1 - cos θ) / θ², (θ - sin θ) / θ³ without cancellation: series for small θ
    if th < 1e-4:
        a = 1.0 - th2 / 6.0
        b = 0.5 - th2 / 24.0
    else:
        a = math.sin(th) / th
        h = math.sin(0.5 * th)
        b = 2.0 * h * h / th2
    if th < 1e-2:
        c = 1.0 / 6.0 - th2 / 120.0 + th2 * th2 / 5040.0
    else:
        c = (th - math.sin(th)) / (th2 * th)
    # K = [w]x, K² = w w^T - th² I
    kk = np.empty((3, 3))
    kk[0, 0] = 0.0
    kk[0, 1] = -wz
    kk[0, 2] = wy
    kk[1, 0] = wz
    kk[1, 1] = 0.0
    kk[1, 2] = -wx
    kk[2, 0] = -wy
    kk[2, 1] = wx
    kk[2, 2] = 0.0
    k2 = kk @ kk
    for r in range(3):
        for q in range(3):
            e = 1.0 if r == q else 0.0
            out[r, q] = e + a * kk[r, q] + b * k2[r, q]
    for r in range(3):
        s = 0.0
        for q in range(3):
            e = 1.0 if r == q else 0.0
            s += (e + b * kk[r, q] + c * k2[r, q]) * xi[3 + q]
        out[r, 3] = s
    out[3, 0] = 0.0
    out[3, 1] = 0.0
    out[3, 2] = 0.0
    out[3, 3] = 1.0


@njit("float64(float64, float64)", **_OPTS)
def _huber(s, k):
    """Huber cost of a residual vector with squared norm ``s`` (threshold ``k`` pixels); ``s`` when inside."""
    if k <= 0.0 or s <= k * k:
        return s
    return 2.0 * k * math.sqrt(s) - k * k


@njit("float64(float64, float64)", **_OPTS)
def _huber_weight(s, k):
    if k <= 0.0 or s <= k * k:
        return 1.0
    return k / math.sqrt(s)


@njit("boolean(float64[:, ::1], float64[:, ::1])", **_OPTS)
def _inv3(A, out):
    """3x3 inverse by cofactors; a singular block gives zeros (the point then moves no camera)."""
    c00 = A[1, 1] * A[2, 2] - A[1, 2] * A[2, 1]
    c01 = A[1, 2] * A[2, 0] - A[1, 0] * A[2, 2]
    c02 = A[1, 0] * A[2, 1] - A[1, 1] * A[2, 0]
    det = A[0, 0] * c00 + A[0, 1] * c01 + A[0, 2] * c02
    scale = abs(A[0, 0]) + abs(A[1, 1]) + abs(A[2, 2])
    if not (abs(det) > 1e-12 * scale * scale * scale) or scale == 0.0:
        out[:, :] = 0.0
        return False
    inv = 1.0 / det
    out[0, 0] = c00 * inv
    out[1, 0] = c01 * inv
    out[2, 0] = c02 * inv
    out[0, 1] = (A[0, 2] * A[2, 1] - A[0, 1] * A[2, 2]) * inv
    out[1, 1] = (A[0, 0] * A[2, 2] - A[0, 2] * A[2, 0]) * inv
    out[2, 1] = (A[0, 1] * A[2, 0] - A[0, 0] * A[2, 1]) * inv
    out[0, 2] = (A[0, 1] * A[1, 2] - A[0, 2] * A[1, 1]) * inv
    out[1, 2] = (A[0, 2] * A[1, 0] - A[0, 0] * A[1, 2]) * inv
    out[2, 2] = (A[0, 0] * A[1, 1] - A[0, 1] * A[1, 0]) * inv
    return True


@njit("boolean(float64[:, ::1], float64[::1], float64[::1])", **_OPTS)
def _solve6(A, bvec, out):
    """Solve the symmetric positive definite 6x6 system ``A out = bvec`` by Cholesky; False when not
    positive definite (``A`` is overwritten)."""
    n = 6
    for j in range(n):
        s = A[j, j]
        for k in range(j):
            s -= A[j, k] * A[j, k]
        if not (s > 1e-300):
            return False
        d = math.sqrt(s)
        A[j, j] = d
        for i in range(j + 1, n):
            s = A[i, j]
            for k in range(j):
                s -= A[i, k] * A[j, k]
            A[i, j] = s / d
    for i in range(n):
        s = bvec[i]
        for k in range(i):
            s -= A[i, k] * out[k]
        out[i] = s / A[i, i]
    for i in range(n - 1, -1, -1):
        s = out[i]
        for k in range(i + 1, n):
            s -= A[k, i] * out[k]
        out[i] = s / A[i, i]
    return True


@njit("float64(float64[:, ::1], float64[:, ::1], float64[:, ::1], float64[:, ::1], float64[::1], float64,"
      " float64, float64, float64, float64, float64, float64[::1], float64[:, ::1])", **_OPTS)
def _two_view_cost(T, X, obs_ref, obs_cur, weight, fx, fy, cx, cy, b, huber_px, res2, scratch_T):
    """Robust cost of the two-view stereo problem; ``res2[i]`` = the point's squared residual norm
    (both views, 6 components, pixels²); points with ``weight[i] == 0`` are skipped (res2 = nan).
    ``scratch_T`` (4, 4) receives ``T^-1``."""
    R00 = T[0, 0]
    R01 = T[0, 1]
    R02 = T[0, 2]
    R10 = T[1, 0]
    R11 = T[1, 1]
    R12 = T[1, 2]
    R20 = T[2, 0]
    R21 = T[2, 1]
    R22 = T[2, 2]
    tx = T[0, 3]
    ty = T[1, 3]
    tz = T[2, 3]
    for r in range(3):
        for q in range(3):
            scratch_T[r, q] = T[q, r]
    total = 0.0
    for i in range(X.shape[0]):
        if weight[i] <= 0.0:
            res2[i] = math.nan
            continue
        x = X[i, 0]
        y = X[i, 1]
        z = X[i, 2]
        s = 0.0
        c = 0.0
        if z <= 1e-9:
            res2[i] = math.inf
            total += 1e12
            continue
        e0 = fx * x / z + cx - obs_ref[i, 0]
        e1 = fy * y / z + cy - obs_ref[i, 1]
        e2 = fx * (x - b) / z + cx - obs_ref[i, 2]
        s = e0 * e0 + e1 * e1 + e2 * e2
        c += _huber(s, huber_px)
        dx = x - tx
        dy = y - ty
        dz = z - tz
        yx = R00 * dx + R10 * dy + R20 * dz
        yy = R01 * dx + R11 * dy + R21 * dz
        yz = R02 * dx + R12 * dy + R22 * dz
        if yz <= 1e-9:
            res2[i] = math.inf
            total += 1e12
            continue
        e0 = fx * yx / yz + cx - obs_cur[i, 0]
        e1 = fy * yy / yz + cy - obs_cur[i, 1]
        e2 = fx * (yx - b) / yz + cx - obs_cur[i, 2]
        s2 = e0 * e0 + e1 * e1 + e2 * e2
        c += _huber(s2, huber_px)
        res2[i] = s + s2
        total += weight[i] * c
    return total


@njit("void(float64[:, ::1], float64[:, ::1], float64[:, ::1], float64[:, ::1], float64[::1], float64,"
      " float64, float64, float64, float64, float64, float64[:, :, ::1], float64[:, :, ::1], float64[:, ::1],"
      " float64[:, ::1], float64[::1])", **_OPTS)
def _normal_equations(T, X, obs_ref, obs_cur, weight, fx, fy, cx, cy, b, huber_px, Hinv, Hpc, gp, S, g):
    """Schur-reduced Gauss-Newton system of :func:`_refine_two_view` at ``(T, X)``: fills the per-point
    ``Hinv`` (inverse 3x3 point blocks), ``Hpc`` (point-camera blocks), ``gp`` (point gradients) and
    the reduced camera matrix ``S`` and gradient ``g`` (of ``0.5 * cost``)."""
    R00 = T[0, 0]
    R01 = T[0, 1]
    R02 = T[0, 2]
    R10 = T[1, 0]
    R11 = T[1, 1]
    R12 = T[1, 2]
    R20 = T[2, 0]
    R21 = T[2, 1]
    R22 = T[2, 2]
    tx = T[0, 3]
    ty = T[1, 3]
    tz = T[2, 3]
    S[:, :] = 0.0
    g[:] = 0.0
    Jp = np.empty((3, 3))
    Jc = np.empty((3, 6))
    P = np.empty((3, 3))
    Hpp = np.empty((3, 3))
    Hi = np.empty((3, 3))
    e = np.empty(3)
    for i in range(X.shape[0]):
        if weight[i] <= 0.0:
            continue
        x = X[i, 0]
        y = X[i, 1]
        z = X[i, 2]
        if z <= 1e-9:
            continue
        Hpp[:, :] = 0.0
        for r in range(3):
            gp[i, r] = 0.0
            for q in range(6):
                Hpc[i, r, q] = 0.0
        # reference view: residuals depend on the point only
        iz = 1.0 / z
        e[0] = fx * x * iz + cx - obs_ref[i, 0]
        e[1] = fy * y * iz + cy - obs_ref[i, 1]
        e[2] = fx * (x - b) * iz + cx - obs_ref[i, 2]
        wr = weight[i] * _huber_weight(e[0] * e[0] + e[1] * e[1] + e[2] * e[2], huber_px)
        Jp[0, 0] = fx * iz
        Jp[0, 1] = 0.0
        Jp[0, 2] = -fx * x * iz * iz
        Jp[1, 0] = 0.0
        Jp[1, 1] = fy * iz
        Jp[1, 2] = -fy * y * iz * iz
        Jp[2, 0] = fx * iz
        Jp[2, 1] = 0.0
        Jp[2, 2] = -fx * (x - b) * iz * iz
        for r in range(3):
            for q in range(3):
                s = 0.0
                for k in range(3):
                    s += Jp[k, r] * Jp[k, q]
                Hpp[r, q] += wr * s
            s = 0.0
            for k in range(3):
                s += Jp[k, r] * e[k]
            gp[i, r] += wr * s
        # current view: Y = R^T (X - t)
        dx = x - tx
        dy = y - ty
        dz = z - tz
        yx = R00 * dx + R10 * dy + R20 * dz
        yy = R01 * dx + R11 * dy + R21 * dz
        yz = R02 * dx + R12 * dy + R22 * dz
        if yz <= 1e-9:
            # behind the current camera: the point constrains nothing here
            _inv3(Hpp, Hi)
            for r in range(3):
                for q in range(3):
                    Hinv[i, r, q] = Hi[r, q]
            continue
        iz = 1.0 / yz
        e[0] = fx * yx * iz + cx - obs_cur[i, 0]
        e[1] = fy * yy * iz + cy - obs_cur[i, 1]
        e[2] = fx * (yx - b) * iz + cx - obs_cur[i, 2]
        wc = weight[i] * _huber_weight(e[0] * e[0] + e[1] * e[1] + e[2] * e[2], huber_px)
        # P = d pi / d Y
        P[0, 0] = fx * iz
        P[0, 1] = 0.0
        P[0, 2] = -fx * yx * iz * iz
        P[1, 0] = 0.0
        P[1, 1] = fy * iz
        P[1, 2] = -fy * yy * iz * iz
        P[2, 0] = fx * iz
        P[2, 1] = 0.0
        P[2, 2] = -fx * (yx - b) * iz * iz
        # d Y / d X = R^T ; d Y / d omega = [Y]x ; d Y / d v = -I
        for k in range(3):
            p0 = P[k, 0]
            p1 = P[k, 1]
            p2 = P[k, 2]
            Jp[k, 0] = p0 * R00 + p1 * R01 + p2 * R02
            Jp[k, 1] = p0 * R10 + p1 * R11 + p2 * R12
            Jp[k, 2] = p0 * R20 + p1 * R21 + p2 * R22
            # row k of P @ [Y]x, [Y]x = [[0, -yz, yy], [yz, 0, -yx], [-yy, yx, 0]]
            Jc[k, 0] = p1 * yz - p2 * yy
            Jc[k, 1] = -p0 * yz + p2 * yx
            Jc[k, 2] = p0 * yy - p1 * yx
            Jc[k, 3] = -p0
            Jc[k, 4] = -p1
            Jc[k, 5] = -p2
        for r in range(3):
            for q in range(3):
                s = 0.0
                for k in range(3):
                    s += Jp[k, r] * Jp[k, q]
                Hpp[r, q] += wc * s
            s = 0.0
            for k in range(3):
                s += Jp[k, r] * e[k]
            gp[i, r] += wc * s
            for q in range(6):
                s = 0.0
                for k in range(3):
                    s += Jp[k, r] * Jc[k, q]
                Hpc[i, r, q] = wc * s
        for r in range(6):
            s = 0.0
            for k in range(3):
                s += Jc[k, r] * e[k]
            g[r] += wc * s
            for q in range(r, 6):
                s = 0.0
                for k in range(3):
                    s += Jc[k, r] * Jc[k, q]
                S[r, q] += wc * s
        _inv3(Hpp, Hi)
        for r in range(3):
            for q in range(3):
                Hinv[i, r, q] = Hi[r, q]
        # Schur: S -= Hpc^T Hpp^-1 Hpc ; g -= Hpc^T Hpp^-1 gp
        for r in range(6):
            m0 = Hi[0, 0] * Hpc[i, 0, r] + Hi[0, 1] * Hpc[i, 1, r] + Hi[0, 2] * Hpc[i, 2, r]
            m1 = Hi[1, 0] * Hpc[i, 0, r] + Hi[1, 1] * Hpc[i, 1, r] + Hi[1, 2] * Hpc[i, 2, r]
            m2 = Hi[2, 0] * Hpc[i, 0, r] + Hi[2, 1] * Hpc[i, 1, r] + Hi[2, 2] * Hpc[i, 2, r]
            g[r] -= m0 * gp[i, 0] + m1 * gp[i, 1] + m2 * gp[i, 2]
            for q in range(r, 6):
                S[r, q] -= m0 * Hpc[i, 0, q] + m1 * Hpc[i, 1, q] + m2 * Hpc[i, 2, q]
    for r in range(6):
        for q in range(r):
            S[r, q] = S[q, r]


@njit("int64(float64[:, ::1], float64[:, ::1], float64[:, ::1], float64[:, ::1], float64[::1], float64,"
      " float64, float64, float64, float64, float64, int64, float64, float64[:, ::1], float64[::1],"
      " float64[::1])", **_OPTS)
def _refine_two_view(T, X, obs_ref, obs_cur, weight, fx, fy, cx, cy, b, huber_px, max_iter, tol, S_out, res2,
                     info):
    """Two-view stereo bundle adjustment: the pose ``T = T_ref_cur`` and the points ``X`` (reference
    frame) minimising the robust (Huber, ``huber_px``) reprojection error of ``obs_ref`` and
    ``obs_cur`` (``(n, 3)``: ``u_left, v, u_right`` in each view), each point weighted by ``weight``
    (0 = excluded). Levenberg-Marquardt on the Schur-reduced 6x6 camera system; ``T`` and ``X`` are
    updated in place.

    Outputs: ``S_out`` (6, 6) the reduced normal matrix (information, unscaled by the noise variance,
    tangent ``delta`` of ``T @ exp(delta)``) at the solution; ``res2[i]`` the squared residual norm of
    point ``i`` over its 6 components; ``info = (robust cost, sum of squared residuals of weighted
    points, number of points used, iterations, final damping)``. Returns ``OK``, ``MAX_ITER``,
    ``SINGULAR`` or ``TOO_FEW``.
    """
    n = X.shape[0]
    n_used = 0
    for i in range(n):
        if weight[i] > 0.0:
            n_used += 1
    info[2] = n_used
    if n_used < 3:
        return TOO_FEW
    Hinv = np.zeros((n, 3, 3))
    Hpc = np.zeros((n, 3, 6))
    gp = np.zeros((n, 3))
    S = np.zeros((6, 6))
    g = np.zeros(6)
    Tn = np.empty((4, 4))
    E = np.empty((4, 4))
    Xn = np.empty_like(X)
    scratch = np.empty((4, 4))
    delta = np.empty(6)
    dp = np.empty(3)
    lam = 1e-4
    cost = _two_view_cost(T, X, obs_ref, obs_cur, weight, fx, fy, cx, cy, b, huber_px, res2, scratch)
    status = MAX_ITER
    it = 0
    build = True
    while it < max_iter:
        it += 1
        if build:
            _normal_equations(T, X, obs_ref, obs_cur, weight, fx, fy, cx, cy, b, huber_px, Hinv, Hpc, gp, S, g)
            build = False
        # damped reduced system
        A = S.copy()
        for r in range(6):
            A[r, r] += lam * (S[r, r] + 1e-9)
        ok = _solve6(A, g, delta)
        if not ok:
            lam *= 10.0
            if lam > 1e8:
                status = SINGULAR
                break
            continue
        for r in range(6):
            delta[r] = -delta[r]
        # back-substitution for the points: dp = -Hpp^-1 (gp + Hpc delta)
        for i in range(n):
            if weight[i] <= 0.0:
                Xn[i, 0] = X[i, 0]
                Xn[i, 1] = X[i, 1]
                Xn[i, 2] = X[i, 2]
                continue
            for r in range(3):
                s = gp[i, r]
                for q in range(6):
                    s += Hpc[i, r, q] * delta[q]
                dp[r] = s
            for r in range(3):
                Xn[i, r] = X[i, r] - (Hinv[i, r, 0] * dp[0] + Hinv[i, r, 1] * dp[1] + Hinv[i, r, 2] * dp[2])
        _se3_exp(delta, E)
        Tn[:, :] = T @ E
        new_cost = _two_view_cost(Tn, Xn, obs_ref, obs_cur, weight, fx, fy, cx, cy, b, huber_px, res2, scratch)
        if new_cost <= cost:
            T[:, :] = Tn
            X[:, :] = Xn
            rel = (cost - new_cost) / (cost + 1e-300)
            cost = new_cost
            lam = max(lam * 0.1, 1e-9)
            build = True
            step = 0.0
            for r in range(6):
                step += delta[r] * delta[r]
            if rel < tol or step < 1e-20:
                status = OK
                break
        else:
            lam *= 10.0
            if lam > 1e8:
                status = OK      # no further decrease possible: at a minimum to machine precision
                break
    # information at the solution (undamped)
    _normal_equations(T, X, obs_ref, obs_cur, weight, fx, fy, cx, cy, b, huber_px, Hinv, Hpc, gp, S, g)
    S_out[:, :] = S
    cost = _two_view_cost(T, X, obs_ref, obs_cur, weight, fx, fy, cx, cy, b, huber_px, res2, scratch)
    ssr = 0.0
    for i in range(n):
        if weight[i] > 0.0:
            ssr += weight[i] * res2[i]
    info[0] = cost
    info[1] = ssr
    info[3] = it
    info[4] = lam
    return status

