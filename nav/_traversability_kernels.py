"""Numba kernels for GESTALT-style traversability (wrapper: :mod:`nav.traversability`).

Everything costs O(1) per cell, independent of the window sizes and of the
inflation radius.

Stripes
    The map is processed in vertical stripes of ``stripe_cols`` output columns
    plus a halo of ``max(half_fit, half_step)`` columns on each side, each stripe
    top to bottom, one output row at a time. The working set stays in L2, and the
    running sums below never run longer than a stripe (rounding error).

Plane-fit moments (float64)
    Per stripe column, sums over the vertical window (rows ``r-h .. r+h``) of
    ``d, d², d·i`` (``d`` = height minus ``zref_m``, 0 when unknown; ``i`` = row
    index relative to the last restart) slide down one row per output row (add the
    entering row, subtract the leaving one) and are recomputed from scratch every
    ``restart_rows`` rows to bound cancellation. Unknown cells are tracked as
    *gaps*: sums of ``1, i, i²`` over the NaN cells, updated only for rows that
    hold NaNs. Along the row, prefix sums of these (times the column index ``j``
    where needed) give every window's ten moments by one subtraction each; the
    moments of the known cells are the closed-form moments of the (edge-clipped)
    window minus the gap moments. Rows whose windows hold no NaN skip the gap
    work, and windows inside the map with no gap use the closed-form fit of an
    orthogonal design (:func:`_fit_full_windows`). Positions are small integers
    (exact in float64).

Step
    Max and min over the wheel-sized window: vertically by van Herk / Gil-Werman
    with blocks of ``ks`` rows (running extrema of the block being filled, stored
    suffix extrema of the previous block), horizontally by ``floor(log2 ks)``
    doubling passes along the stripe (each one vectorized loop; a van Herk scan
    along the row is a serial dependency chain and cost more for every window a
    wheel can have — 3 passes for ``ks`` up to 15, 6 up to 127).

Inflation
    Exact Euclidean disk dilation: vertical distance to the nearest lethal cell
    per column (a scan down, and a scan up per block of rows with a look-ahead of
    the radius; O(1) per cell), then per row sliding extrema of the horizontal
    reach of each column over ``R + 1`` columns by ``floor(log2(R + 1))``
    vectorized doubling passes (R clipped to the map width; 3 passes for a
    radius of 8 cells; see :func:`_inflate_lethal`).

Loops that run per cell are small helper functions over whole arrays, addressed
by a row index and an *unsigned* column offset: LLVM vectorizes them (a signed
offset would bring NumPy's negative-index test into the address), each loop
writes at most two arrays (more would exceed LLVM's budget of runtime alias
checks), and the main loop creates no array views (each slice costs Numba
~15 ms of compile time). ``error_model="numpy"`` keeps division free of Python's zero
checks (every division by zero is masked afterwards). Kernels fill preallocated
outputs and return a status code (``OK`` = 0).
"""
import math

import numpy as np
from numba import njit

OK = 0
BAD_WINDOW = 1      # half_fit < 1, half_step < 1, negative radius or block size < 1
BAD_STRIPE = 2      # stripe_cols < 1 or restart_rows < 1
BAD_SHAPE = 3       # an output's shape differs from z

_F32_INF = np.float32(np.inf)
_QUARTER_PI = 0.25 * math.pi
_HALF_PI = 0.5 * math.pi
_DEG_PER_RAD = 180.0 / math.pi
_TAN_PI_8 = math.sqrt(2.0) - 1.0
_TAN_3PI_8 = math.sqrt(2.0) + 1.0

_OPTS = dict(cache=True, error_model="numpy")
_F = "float64[::1]"
_F2 = "float64[:, ::1]"
_S = "float32[::1]"
_S2 = "float32[:, ::1]"
_U = "uint64"


# ------------------------------------------------------------------ plane-fit moments
@njit(f"int64({_S2}, int64, boolean, float64, int64, boolean, float64, boolean, {_U}, int64, float64, "
      f"{_F}, {_F}, {_F}, {_F}, {_F}, {_F}, {_U})", **_OPTS)
def _slide_moments(z, i_in, in_ok, li_in, i_out, out_ok, li_out, gaps_out, c0, n, zref_m, acc_z,
                   acc_zz, acc_iz, gap_n, gap_i, gap_ii, p0):
    """Add row ``i_in`` to the vertical-window sums and remove row ``i_out`` (each if ``*_ok``).

    Columns ``c0 .. c0+n-1`` of ``z`` map to ``p0 ..`` of the sums; ``li_*`` are
    the rows' indices ``i``. Height sums ``d, d², i·d`` (NaN adds 0); gap sums
    ``1, i, i²`` of the NaN cells of the entering row when it has any, and of the
    leaving row when ``gaps_out``. Returns the entering row's NaN count. Each loop
    writes at most three arrays (LLVM's alias-check budget).
    """
    ri = i_in if in_ok else 0
    ro = i_out if out_ok else 0
    nan = 0
    for k in range(n):
        u = np.uint64(k)
        a = z[ri, c0 + u]
        b = z[ro, c0 + u]
        nan += (a != a) & in_ok
        da = np.float64(a) - zref_m if (a == a) & in_ok else 0.0
        db = np.float64(b) - zref_m if (b == b) & out_ok else 0.0
        acc_z[p0 + u] += da - db
        acc_zz[p0 + u] += da * da - db * db
    for k in range(n):
        u = np.uint64(k)
        a = z[ri, c0 + u]
        b = z[ro, c0 + u]
        da = np.float64(a) - zref_m if (a == a) & in_ok else 0.0
        db = np.float64(b) - zref_m if (b == b) & out_ok else 0.0
        acc_iz[p0 + u] += da * li_in - db * li_out
    for side in range(2):
        if (side == 0 and nan > 0) or (side == 1 and gaps_out and out_ok):
            row = ri if side == 0 else ro
            sign = 1.0 if side == 0 else -1.0
            li = li_in if side == 0 else li_out
            wi = sign * li
            wii = sign * li * li
            for k in range(n):
                u = np.uint64(k)
                v = z[row, c0 + u]
                m = 1.0 if v != v else 0.0
                gap_n[p0 + u] += sign * m
                gap_i[p0 + u] += wi * m
                gap_ii[p0 + u] += wii * m
    return nan


@njit(f"void({_F}, {_F}, {_F}, {_F}, {_F}, {_F}, boolean, {_F2})", **_OPTS)
def _prefix_sums(acc_z, acc_zz, acc_iz, gap_n, gap_i, gap_ii, gaps, pre):
    """Prefix sums along the stripe: ``pre[:, k + 1]`` sums stripe columns ``<= k``.

    Rows 0..3: ``d, j·d, i·d, d²``; with ``gaps``, rows 4..9: the gap moments
    ``n, j·n, j²·n, i, j·i, i²`` (``j`` = stripe column). Serial: four (ten)
    independent dependency chains.
    """
    a = 0.0
    b = 0.0
    c = 0.0
    d = 0.0
    fk = 0.0
    for q in range(10):
        pre[q, 0] = 0.0
    for k in range(acc_z.size):
        u = np.uint64(k)                        # unsigned: no negative-index test per access
        x = acc_z[u]
        a += x
        b += fk * x
        c += acc_iz[u]
        d += acc_zz[u]
        fk += 1.0
        pre[0, u + 1] = a
        pre[1, u + 1] = b
        pre[2, u + 1] = c
        pre[3, u + 1] = d
    if not gaps:
        return
    a = 0.0
    b = 0.0
    c = 0.0
    d = 0.0
    e = 0.0
    f = 0.0
    fk = 0.0
    for k in range(gap_n.size):
        n = gap_n[k]
        i = gap_i[k]
        a += n
        b += fk * n
        c += fk * fk * n
        d += i
        e += fk * i
        f += gap_ii[k]
        fk += 1.0
        pre[4, k + 1] = a
        pre[5, k + 1] = b
        pre[6, k + 1] = c
        pre[7, k + 1] = d
        pre[8, k + 1] = e
        pre[9, k + 1] = f


@njit("float32(float32)", inline="always", **_OPTS)
def _atan_deg(g):
    """``atan(g)`` in degrees for ``g >= 0`` in float32 (within 2 ulp), vectorizable.

    One division reduces the argument to ``|y| <= tan(pi/8)`` (``atan g = pi/4 +
    atan((g-1)/(g+1))`` or ``pi/2 + atan(-1/g)``); the Taylor series to ``y^15``
    then truncates below 2e-8 rad.
    """
    small = g <= np.float32(_TAN_PI_8)
    mid = g <= np.float32(_TAN_3PI_8)
    num = g if small else (g - np.float32(1.0) if mid else np.float32(-1.0))
    den = np.float32(1.0) if small else (g + np.float32(1.0) if mid else g)
    base = np.float32(0.0) if small else (np.float32(_QUARTER_PI) if mid else np.float32(_HALF_PI))
    y = num / den
    y2 = y * y
    s = np.float32(-1.0 / 15.0)
    s = s * y2 + np.float32(1.0 / 13.0)
    s = s * y2 - np.float32(1.0 / 11.0)
    s = s * y2 + np.float32(1.0 / 9.0)
    s = s * y2 - np.float32(1.0 / 7.0)
    s = s * y2 + np.float32(1.0 / 5.0)
    s = s * y2 - np.float32(1.0 / 3.0)
    s = s * y2 + np.float32(1.0)
    return (base + y * s) * np.float32(_DEG_PER_RAD)


@njit(f"void(boolean, {_F2}, {_U}, {_U}, int64, int64, int64, int64, float64, float64, float64, "
      f"float64, float64, float64, float64, float64, {_S2}, {_S2}, int64, {_U}, int64)", **_OPTS)
def _fit_row(full, pre, off_lo, off_hi, j0, h, c_first, c_last, rows_in, sum_i, sum_ii, li_c, inv_q,
             inv_n, inv_cell_m, min_known_fraction, slope_deg, roughness_m, r, c_out, n):
    """Least-squares planes of ``n`` consecutive windows of one row → slope and roughness.

    ``pre`` rows are prefix sums along the stripe: ``d, j·d, i·d, d²`` then the
    gap moments ``n, j·n, j²·n, i, j·i, i²``; ``pre[:, off_lo + k]`` and
    ``pre[:, off_hi + k]`` bound output ``k``'s window, centred on stripe column
    ``j0 + k`` and written at ``[r, c_out + k]``.

    ``full`` windows (inside the map, every cell known) have orthogonal
    regressors — with offsets ``u, v`` from the centre, ``Σu = Σv = Σuv = 0``
    and ``Σu² = Σv² = q`` — so ``a = Σu·d / q``, ``b = Σv·d / q`` and
    ``SSR = Σd² − (Σd)²/n − ((Σu·d)² + (Σv·d)²)/q`` (``li_c`` = centre row index,
    ``inv_q``, ``inv_n``). Other windows are clipped to columns
    ``[c_first, c_last]`` and to ``rows_in`` map rows with index sums ``sum_i``,
    ``sum_ii``; the moments of their known cells are the closed-form moments of
    the clipped window minus the gap moments, and the 2×2 normal equations are
    solved in centred form (NaN when fewer than ``min_known_fraction`` of the
    window or fewer than 3 cells are known, or they lie on one line).
    """
    if full:
        for k in range(n):
            u = np.uint64(k)
            lo = off_lo + u
            hi = off_hi + u
            sz = pre[0, hi] - pre[0, lo]
            suz = (pre[1, hi] - pre[1, lo]) - np.float64(j0 + k) * sz
            svz = (pre[2, hi] - pre[2, lo]) - li_c * sz
            szz = pre[3, hi] - pre[3, lo]
            ssr = szz - sz * sz * inv_n - (suz * suz + svz * svz) * inv_q
            g2 = np.float32((suz * suz + svz * svz) * (inv_q * inv_q * inv_cell_m * inv_cell_m))
            slope_deg[r, c_out + u] = _atan_deg(np.sqrt(g2))
            roughness_m[r, c_out + u] = np.sqrt(np.float32(max(ssr, 0.0) * inv_n))
        return
    for k in range(n):
        u = np.uint64(k)
        lo = off_lo + u
        hi = off_hi + u
        j = j0 + k
        ca = max(j - h, c_first)
        cb = min(j + h, c_last)
        ncol = np.float64(cb - ca + 1)
        sum_j = 0.5 * np.float64(ca + cb) * ncol
        sum_jj = (np.float64(cb * (cb + 1) * (2 * cb + 1) - (ca - 1) * ca * (2 * ca - 1))) * (1.0 / 6.0)
        sz = pre[0, hi] - pre[0, lo]
        sjz = pre[1, hi] - pre[1, lo]
        siz = pre[2, hi] - pre[2, lo]
        szz = pre[3, hi] - pre[3, lo]
        nk = rows_in * ncol - (pre[4, hi] - pre[4, lo])
        sj = rows_in * sum_j - (pre[5, hi] - pre[5, lo])
        sjj = rows_in * sum_jj - (pre[6, hi] - pre[6, lo])
        si = ncol * sum_i - (pre[7, hi] - pre[7, lo])
        sij = sum_i * sum_j - (pre[8, hi] - pre[8, lo])
        sii = ncol * sum_ii - (pre[9, hi] - pre[9, lo])
        # nk times the centred (co)variances
        cuu = nk * sjj - sj * sj
        cvv = nk * sii - si * si
        cuv = nk * sij - si * sj
        cuz = nk * sjz - sj * sz
        cvz = nk * siz - si * sz
        czz = nk * szz - sz * sz
        det = cuu * cvv - cuv * cuv
        fit = (nk >= 3.0) & (nk >= min_known_fraction * (rows_in * ncol) - 1e-9) & (det > 1e-9 * cuu * cvv)
        inv_det = 1.0 / det
        ga = (cvv * cuz - cuv * cvz) * inv_det         # dz per column
        gb = (cuu * cvz - cuv * cuz) * inv_det         # dz per row
        ssr = czz - ga * cuz - gb * cvz                # nk * sum of squared residuals
        g2 = np.float32((ga * ga + gb * gb) * (inv_cell_m * inv_cell_m))
        sl = _atan_deg(np.sqrt(g2))
        ro = np.sqrt(np.float32(max(ssr, 0.0))) / np.float32(nk)
        slope_deg[r, c_out + u] = sl if fit else np.float32(np.nan)
        roughness_m[r, c_out + u] = ro if fit else np.float32(np.nan)


# ----------------------------------------------------------------------------- step
@njit(f"void({_S2}, int64, boolean, {_U}, int64, {_S}, {_S}, {_U}, boolean, {_S2}, {_S2}, int64, "
      f"boolean)", **_OPTS)
def _extrema_rows(z, i, ok, c0, n, run_hi, run_lo, p0, reset, suf_hi, suf_lo, q, store):
    """Fold row ``i`` (nothing if not ``ok``) into the running extrema; optionally store them.

    ``run = row`` when ``reset`` else ``max/min(run, row)`` (NaN → −inf / +inf);
    with ``store``, ``suf_*[q]`` receives the result. Max and min run as two
    loops so that each writes two arrays at most.
    """
    ri = i if ok else 0
    for k in range(n):
        u = np.uint64(k)
        v = z[ri, c0 + u]
        v = v if (v == v) & ok else -_F32_INF
        a = run_hi[p0 + u]
        a = v if reset | (v > a) else a
        run_hi[p0 + u] = a
        if store:
            suf_hi[q, p0 + u] = a
    for k in range(n):
        u = np.uint64(k)
        v = z[ri, c0 + u]
        v = v if (v == v) & ok else _F32_INF
        a = run_lo[p0 + u]
        a = v if reset | (v < a) else a
        run_lo[p0 + u] = a
        if store:
            suf_lo[q, p0 + u] = a


@njit(f"void({_S}, {_S}, {_S2}, {_S2}, int64, int64, {_S}, {_S}, {_S}, {_S}, {_U}, {_S2}, int64, {_U}, "
      f"int64)", **_OPTS)
def _step_row(blk_hi, blk_lo, suf_hi, suf_lo, q, ks, a_hi, a_lo, b_hi, b_lo, a0, step_m, r, c_out, n):
    """Step heights of one output row: horizontal extrema over the vertical extrema.

    1. The vertical-window extrema ``a = max/min(blk, suf[q])``.
    2. Doubling passes: after the pass with span ``s``, entry ``k`` holds the
       extrema of stripe columns ``k .. k+2s-1`` (clipped to the stripe), ping-pong
       between ``a_*`` and ``b_*``; ``floor(log2 ks)`` passes. Each pass is one
       independent vectorized loop (no serial dependency chain, unlike a van Herk
       scan along the row), so the handful of passes a wheel-sized window needs
       costs less than one scalar scan.
    3. Output ``k``'s window starts at stripe column ``a0 + k``: two overlapping
       spans of length ``s`` cover its ``ks`` columns; ``step_m[r, c_out + k]`` is
       ``max − min`` (NaN when the window holds no known cell).
    """
    width = blk_hi.size
    for k in range(width):
        x = blk_hi[k]
        y = suf_hi[q, k]
        a_hi[k] = x if x > y else y
    for k in range(width):
        x = blk_lo[k]
        y = suf_lo[q, k]
        a_lo[k] = x if x < y else y
    span = 1
    src_hi, src_lo, dst_hi, dst_lo = a_hi, a_lo, b_hi, b_lo
    while 2 * span <= ks:
        m = width - span
        sp = np.uint64(span)
        for k in range(m):
            u = np.uint64(k)
            x = src_hi[u]
            y = src_hi[u + sp]
            dst_hi[u] = x if x > y else y
            x = src_lo[u]
            y = src_lo[u + sp]
            dst_lo[u] = x if x < y else y
        for k in range(max(m, 0), width):
            dst_hi[k] = src_hi[k]
            dst_lo[k] = src_lo[k]
        src_hi, src_lo, dst_hi, dst_lo = dst_hi, dst_lo, src_hi, src_lo
        span *= 2
    a1 = a0 + np.uint64(ks - span)               # the second span ends at the window's last column
    for k in range(n):
        u = np.uint64(k)
        x = src_hi[a0 + u]
        y = src_hi[a1 + u]
        hi = x if x > y else y
        x = src_lo[a0 + u]
        y = src_lo[a1 + u]
        lo = x if x < y else y
        step_m[r, c_out + u] = hi - lo if hi > -_F32_INF else np.float32(np.nan)


# --------------------------------------------------------------------- cost / flags
@njit(f"void({_S2}, {_S2}, {_S2}, {_S2}, int64, {_U}, int64, float64, float64, float64, float64, "
      f"float64, float64, boolean, float64, uint8, uint8, uint8, uint8, {_S2}, uint8[:, ::1])", **_OPTS)
def _classify_cells(slope_deg, step_m, roughness_m, z, r, c0, n, max_slope_deg, max_step_m,
                    max_roughness_m, slope_weight, step_weight, roughness_weight, unknown_lethal,
                    unknown_cost, flag_slope, flag_step, flag_roughness, flag_unknown, cost, reason):
    """Cost and own lethal flags of cells ``[r, c0 .. c0+n-1]`` from their layers.

    One loop writing two arrays (cost and flags): the layers are read once.
    """
    fs = slope_weight / (max_slope_deg * max_slope_deg)
    ft = step_weight / (max_step_m * max_step_m)
    fr = roughness_weight / (max_roughness_m * max_roughness_m)
    for k in range(n):
        u = np.uint64(k)
        sl = np.float64(slope_deg[r, c0 + u])
        st = np.float64(step_m[r, c0 + u])
        ro = np.float64(roughness_m[r, c0 + u])
        zc = z[r, c0 + u]
        unknown = (zc != zc) | (sl != sl)
        f = flag_slope if sl > max_slope_deg else np.uint8(0)
        f |= flag_step if st > max_step_m else np.uint8(0)
        f |= flag_roughness if ro > max_roughness_m else np.uint8(0)
        f |= flag_unknown if unknown & unknown_lethal else np.uint8(0)
        c = 1.0 + fs * sl * sl + ft * st * st + fr * ro * ro
        c = unknown_cost if unknown else c
        cost[r, c0 + u] = np.inf if f != 0 else c
        reason[r, c0 + u] = f


# ---------------------------------------------------------------------- main kernel
_LAYERS_SIG = (
    "int64(float32[:, ::1], float64, float64, int64, int64, float64, "
    "float64, float64, float64, float64, float64, float64, boolean, float64, "
    "uint8, uint8, uint8, uint8, int64, int64, "
    "float32[:, ::1], float32[:, ::1], float32[:, ::1], float32[:, ::1], uint8[:, ::1])"
)


@njit(_LAYERS_SIG, **_OPTS)
def _compute_layers(z, zref_m, cell_size_m, half_fit, half_step, min_known_fraction,
                    max_slope_deg, max_step_m, max_roughness_m, slope_weight, step_weight,
                    roughness_weight, unknown_lethal, unknown_cost,
                    flag_slope, flag_step, flag_roughness, flag_unknown, stripe_cols, restart_rows,
                    slope_deg, step_m, roughness_m, cost, reason):
    """Hazard layers, per-cell cost and own lethal flags of one elevation grid.

    Parameters
    ----------
    z : (rows, cols) float32
        Elevation in metres, NaN = unknown.
    zref_m : float
        Reference height subtracted before squaring (conditioning only).
    half_fit, half_step : int
        Half-widths (cells) of the plane-fit window ``k = 2h + 1`` and of the step
        window ``ks = 2hs + 1``; both >= 1.
    min_known_fraction : float
        A plane fit needs at least this fraction of the edge-clipped window known,
        and at least 3 known cells not all on one line.
    unknown_lethal : bool
        Unknown cells are lethal (``flag_unknown``) instead of costing ``unknown_cost``.
    stripe_cols, restart_rows : int
        Stripe width and restart period of the vertical running sums.
    slope_deg, step_m, roughness_m, cost : (rows, cols) float32, written
    reason : (rows, cols) uint8, written (own flags; inflation is separate)
    """
    rows, cols = z.shape
    if half_fit < 1 or half_step < 1:
        return BAD_WINDOW
    if stripe_cols < 1 or restart_rows < 1:
        return BAD_STRIPE
    if (slope_deg.shape != z.shape or step_m.shape != z.shape or roughness_m.shape != z.shape
            or cost.shape != z.shape or reason.shape != z.shape):
        return BAD_SHAPE

    h = half_fit
    hs = half_step
    k = 2 * h + 1
    ks = 2 * hs + 1
    halo = max(h, hs)
    width = stripe_cols + 2 * halo
    inv_cell_m = 1.0 / cell_size_m
    inv_q = 1.0 / (k * h * (h + 1) * (2 * h + 1) / 3.0)   # 1 / Σu² over a full window
    inv_n = 1.0 / (k * k)

    acc_z = np.empty(width)                     # per stripe column, over the vertical window:
    acc_zz = np.empty(width)                    # sums of d, d², i·d
    acc_iz = np.empty(width)
    gap_n = np.empty(width)                     # gap (NaN) sums of 1, i, i²
    gap_i = np.empty(width)
    gap_ii = np.empty(width)
    pre = np.empty((10, width + 1))             # prefix sums along the stripe
    nan_count = np.empty(rows, np.int64)        # NaN cells of each row within the stripe
    blk_hi = np.empty(width, np.float32)        # running extrema of the row block being filled
    blk_lo = np.empty(width, np.float32)
    run_hi = np.empty(width, np.float32)        # running suffix extrema while storing suf_*
    run_lo = np.empty(width, np.float32)
    suf_hi = np.empty((ks + 1, width), np.float32)  # suffix extrema of the last complete row
    suf_lo = np.empty((ks + 1, width), np.float32)  # block; row ks stays -inf/+inf (neutral)
    col_hi = np.empty(width, np.float32)        # extrema over each column's vertical window
    col_lo = np.empty(width, np.float32)
    hor_hi = np.empty(width, np.float32)        # ping-pong buffer of the horizontal passes
    hor_lo = np.empty(width, np.float32)

    for s0 in range(0, cols, stripe_cols):
        s1 = min(s0 + stripe_cols, cols)
        nout = s1 - s0
        c_lo = s0 - halo                        # map column of stripe column 0
        p_lo = max(0, -c_lo)                    # stripe columns inside the map: [p_lo, p_hi)
        p_hi = min(width, cols - c_lo)
        nin = p_hi - p_lo
        zc0 = np.uint64(c_lo + p_lo)            # map column of stripe column p_lo
        pp0 = np.uint64(p_lo)
        j0 = s0 - c_lo                          # stripe column of the first output
        f0 = min(max(s0, h), s1)                # outputs whose window spans whole map columns
        f1 = max(min(s1, cols - h), f0)
        acc_z[:] = 0.0
        acc_zz[:] = 0.0
        acc_iz[:] = 0.0
        gap_n[:] = 0.0
        gap_i[:] = 0.0
        gap_ii[:] = 0.0
        pre[:, :] = 0.0
        gap_prefix_clear = True
        gaps_in_window = 0
        blk_hi[:] = -_F32_INF
        blk_lo[:] = _F32_INF
        suf_hi[:, :] = -_F32_INF
        suf_lo[:, :] = _F32_INF
        t_next = 0                              # next padded row (t = i + hs) to enter the step blocks
        r0 = 0
        for r in range(rows):
            # ------------------------------------------------ vertical moment sums
            first = max(0, r - h)
            last = min(rows - 1, r + h)
            if r % restart_rows == 0:           # recompute from scratch: add rows first..last
                r0 = r
                acc_z[:] = 0.0
                acc_zz[:] = 0.0
                acc_iz[:] = 0.0
                gap_n[:] = 0.0
                gap_i[:] = 0.0
                gap_ii[:] = 0.0
                gaps_in_window = 0
                add_lo = first
                n_steps = last - first + 1
                i_out = -1
            else:                               # slide: add row r+h (if any), drop row r-h-1
                add_lo = r + h
                n_steps = 1
                i_out = r - h - 1
            out_ok = i_out >= 0
            for step in range(n_steps):
                i_in = add_lo + step
                in_ok = i_in < rows
                gaps_out = out_ok and nan_count[i_out] > 0
                cnt = _slide_moments(z, i_in, in_ok, np.float64(i_in - r0), i_out, out_ok,
                                     np.float64(i_out - r0), gaps_out, zc0, nin, zref_m, acc_z, acc_zz,
                                     acc_iz, gap_n, gap_i, gap_ii, pp0)
                if in_ok:
                    nan_count[i_in] = cnt
                    gaps_in_window += cnt
                if gaps_out:
                    gaps_in_window -= nan_count[i_out]
            # ------------------------------------------------------ prefix sums
            _prefix_sums(acc_z, acc_zz, acc_iz, gap_n, gap_i, gap_ii, gaps_in_window > 0, pre)
            if gaps_in_window > 0:
                gap_prefix_clear = False
            elif not gap_prefix_clear:
                pre[4:, :] = 0.0
                gap_prefix_clear = True
            # ------------------------------------------------------- plane fits
            lf = np.float64(first - r0)
            ll = np.float64(last - r0)
            rows_in = ll - lf + 1.0
            sum_i = 0.5 * (lf + ll) * rows_in
            sum_ii = (ll * (ll + 1.0) * (2.0 * ll + 1.0) - (lf - 1.0) * lf * (2.0 * lf - 1.0)) / 6.0
            # full windows (inside the map, no gap) take the fast fit; the rest the general one
            full_rows = r - h >= 0 and r + h < rows
            j = s0
            while j < s1:
                if full_rows and f0 <= j < f1:
                    e = f1
                    clean = True
                    if gaps_in_window > 0:      # runs of outputs whose own window has no gap
                        clean = pre[4, j - c_lo + h + 1] == pre[4, j - c_lo - h]
                        e = j + 1
                        while e < f1 and (pre[4, e - c_lo + h + 1] == pre[4, e - c_lo - h]) == clean:
                            e += 1
                else:
                    clean = False
                    e = f0 if full_rows and j < f0 else s1
                off = j - s0
                _fit_row(clean, pre, np.uint64(j0 - h + off), np.uint64(j0 + h + 1 + off), j0 + off, h, p_lo,
                         p_hi - 1, rows_in, sum_i, sum_ii, np.float64(r - r0), inv_q, inv_n, inv_cell_m,
                         min_known_fraction, slope_deg, roughness_m, r, np.uint64(j), e - j)
                j = e
            # ----------------------------------------- step: vertical van Herk blocks
            t = r + ks - 1                      # the last padded row of output r's window
            while t_next <= t:                  # rows enter the block being filled
                i = t_next - hs
                _extrema_rows(z, i, 0 <= i < rows, zc0, nin, blk_hi, blk_lo, pp0, t_next % ks == 0,
                              suf_hi, suf_lo, 0, False)
                t_next += 1
            # the window = suffix of the previous block (from row r) + the block being filled
            q = r % ks
            _step_row(blk_hi, blk_lo, suf_hi, suf_lo, q if q != 0 else ks, ks, col_hi, col_lo, hor_hi,
                      hor_lo, np.uint64(j0 - hs), step_m, r, np.uint64(s0), nout)
            if t % ks == ks - 1:                # block of rows t-ks+1 .. t complete: its suffixes
                for qq in range(ks - 1, -1, -1):
                    i2 = t - ks + 1 + qq - hs
                    _extrema_rows(z, i2, 0 <= i2 < rows, zc0, nin, run_hi, run_lo, pp0, qq == ks - 1,
                                  suf_hi, suf_lo, qq, True)
            # ------------------------------------------------------- classification
            _classify_cells(slope_deg, step_m, roughness_m, z, r, np.uint64(s0), nout, max_slope_deg,
                            max_step_m, max_roughness_m, slope_weight, step_weight, roughness_weight,
                            unknown_lethal, unknown_cost, flag_slope, flag_step, flag_roughness,
                            flag_unknown, cost, reason)
    return OK


# ------------------------------------------------------------------------ inflation
@njit("int64(uint8[:, ::1], float32[:, ::1], int64, uint8, int64)", **_OPTS)
def _inflate_lethal(reason, cost, radius2, flag_inflated, block_rows):
    """Mark every cell within a Euclidean disk of a lethal cell as inflated, in place.

    A cell is a *source* when it has a flag other than ``flag_inflated``. Cell
    ``(r, c)`` is inflated when some source ``(r', c')`` has
    ``(r - r')² + (c - c')² <= radius2`` (an integer: squared distances between
    cell centres are integers): there ``reason`` becomes ``flag_inflated``
    (sources keep their own flags) and ``cost`` becomes inf.

    Exact and O(cells) for any radius ``R``:

    1. ``dv``, the rows from each cell to the nearest source in its column: a
       running count down the map, and one up it per block of ``block_rows`` rows
       that starts ``floor(R)`` rows below the block (so the scratch stays small
       and, with ``block_rows > R``, the look-ahead at most doubles the work).
    2. Per row, each column's nearest source covers ``[q - w, q + w]`` with
       ``w = isqrt(radius2 − dv²)`` (a float square root corrected one step either
       way: exact far beyond any map size, and vectorizable where a table is not);
       it is the best source of its column because ``w`` falls with ``dv``.
    3. ``covered[j]`` iff some extent contains ``j``. Only columns within
       ``P = min(floor(R), cols)`` of ``j`` can reach it, so it is the max of the
       right ends over columns ``j-P .. j`` (>= j) or the min of the left ends
       over ``j .. j+P`` (<= j): sliding extrema over ``P + 1`` columns by
       ``floor(log2(P + 1))`` doubling passes over arrays padded by ``P``
       neutral entries each side. Each pass is one vectorized loop, where a
       running max along the row is a serial dependency chain that cost more
       than all the passes of any rover-sized radius (4 passes up to 30 cells).
    4. Covered cells that are not lethal become ``flag_inflated`` with inf cost
       (fused with step 3's last look-up).

    Per cell: O(1) for steps 1, 2 and 4 and ``2·floor(log2(P + 1))`` vectorized
    min/max operations for step 3 (at most 2·log2 of the map width).
    """
    rows, cols = reason.shape
    if cost.shape != reason.shape:
        return BAD_SHAPE
    if radius2 < 0 or block_rows < 1:
        return BAD_WINDOW
    rc = np.int64(math.sqrt(np.float64(radius2)))
    rc = rc + 1 if (rc + 1) * (rc + 1) <= radius2 else rc
    rc = rc - 1 if rc * rc > radius2 else rc
    cap = np.int32(min(rc + 1, 2 ** 30))
    own = 255 ^ np.int64(flag_inflated)         # flags that make a cell a source
    dist = np.empty((block_rows, cols), np.int32)
    below = np.empty(cols, np.int32)
    up = np.empty(cols, np.int32)
    up[:] = cap
    pad = min(rc, cols)                         # P: the farthest column that can reach a cell
    npad = cols + 2 * pad
    pad2 = pad * pad                            # float32 sqrt + one-step fix: exact below 2^24 columns
    right_a = np.empty(npad, np.int32)          # right / left ends, column k at index k + P,
    left_a = np.empty(npad, np.int32)           # then their sliding extrema (ping-pong);
    right_b = np.empty(npad, np.int32)          # |values| <= 2 cols + 1
    left_b = np.empty(npad, np.int32)
    up_pad = np.uint64(pad)
    for b0 in range(0, rows, block_rows):
        b1 = min(b0 + block_rows, rows)
        below[:] = cap
        for r in range(min(rows, b1 + rc) - 1, b0 - 1, -1):      # 1. up the map, from below the block
            d = r - b0
            store = r < b1
            for k in range(cols):
                x = below[k] + 1
                x = x if x < cap else cap
                x = 0 if (reason[r, k] & own) != 0 else x
                below[k] = x
                if store:
                    dist[d, k] = x
        for r in range(b0, b1):
            d = r - b0
            near = 0
            for k in range(cols):               # 1. down the map; dv = min of both ways
                x = up[k] + 1
                x = x if x < cap else cap
                x = 0 if (reason[r, k] & own) != 0 else x
                up[k] = x
                y = dist[d, k]
                y = x if x < y else y
                dist[d, k] = y
                near += y < cap
            if near == 0:
                continue
            right_a[:pad] = -1                  # pads: reach nothing
            left_a[:pad] = cols
            right_a[pad + cols:] = -1
            left_a[pad + cols:] = cols
            for k in range(cols):               # 2. each column's extent [left, right]
                dv = np.int64(dist[d, k])
                inside = dv <= rc
                m = radius2 - dv * dv
                m = m if inside else 0
                m = m if m < pad2 else pad2     # w = min(isqrt(m), P): nothing farther matters
                w = np.int64(np.sqrt(np.float32(m)))
                w = w + 1 if (w + 1) * (w + 1) <= m else w
                w = w - 1 if w * w > m else w
                u = np.uint64(k) + up_pad
                right_a[u] = np.int32(k + w if inside else -1)
                left_a[u] = np.int32(k - w if inside else cols)
            # 3. sliding extrema over pad + 1 entries: after the pass with span s,
            # entry p holds the extrema of entries p .. p + 2s - 1 (clipped)
            span = 1
            src_r, src_l, dst_r, dst_l = right_a, left_a, right_b, left_b
            while 2 * span <= pad + 1:
                sp = np.uint64(span)
                for k in range(npad - span):
                    u = np.uint64(k)
                    x = src_r[u]
                    y = src_r[u + sp]
                    dst_r[u] = x if x > y else y
                    x = src_l[u]
                    y = src_l[u + sp]
                    dst_l[u] = x if x < y else y
                for k in range(npad - span, npad):
                    dst_r[k] = src_r[k]
                    dst_l[k] = src_l[k]
                src_r, src_l, dst_r, dst_l = dst_r, dst_l, src_r, src_l
                span *= 2
            # column j: right ends of columns j-P .. j are entries j .. j+P, left
            # ends of columns j .. j+P are entries j+P .. j+2P; two spans cover each
            o2 = np.uint64(pad + 1 - span)
            for k in range(cols):               # 4. mark
                u = np.uint64(k)
                x = src_r[u]
                y = src_r[u + o2]
                e_r = x if x > y else y
                x = src_l[u + up_pad]
                y = src_l[u + up_pad + o2]
                e_l = x if x < y else y
                kk = np.int32(k)
                hit = ((e_r >= kk) | (e_l <= kk)) & (reason[r, u] == 0)
                reason[r, u] = flag_inflated if hit else reason[r, u]
                cost[r, u] = np.float32(np.inf) if hit else cost[r, u]
    return OK


# ------------------------------------------------------------------ distance to a set of cells
@njit("int64(boolean[:, ::1], float64, float64[:, ::1])", **_OPTS)
def _distance_cells(mask, cap, dist):
    """``dist`` = the Euclidean distance (cells, centre to centre) from each cell to the nearest set cell of
    ``mask``, or ``cap`` where none is nearer than ``cap``.

    Only set cells with a 4-neighbour that is not set are stamped (squared distances, exact integers, out to
    ``cap``): the nearest set cell of any cell always has one (its neighbour one step toward the cell is
    nearer still, so it is not set), so the interior of a region adds nothing. O(boundary cells x cap²).
    """
    rows, cols = mask.shape
    if dist.shape[0] != rows or dist.shape[1] != cols:
        return BAD_SHAPE
    if not cap >= 0.0:
        return BAD_WINDOW
    cap2 = cap * cap
    for r in range(rows):
        for c in range(cols):
            dist[r, c] = 0.0 if mask[r, c] else cap2
    R = int(math.floor(cap))
    for r in range(rows):
        for c in range(cols):
            if not mask[r, c]:
                continue
            if ((r == 0 or mask[r - 1, c]) and (r == rows - 1 or mask[r + 1, c])
                    and (c == 0 or mask[r, c - 1]) and (c == cols - 1 or mask[r, c + 1])):
                continue
            for dr in range(max(-R, -r), min(R, rows - 1 - r) + 1):
                rem = cap2 - dr * dr
                if rem < 0.0:
                    continue
                w = int(math.floor(math.sqrt(rem)))
                rr = r + dr
                for cc in range(max(c - w, 0), min(c + w, cols - 1) + 1):
                    dd = np.float64(dr * dr + (cc - c) * (cc - c))
                    if dd < dist[rr, cc]:
                        dist[rr, cc] = dd
    for r in range(rows):
        for c in range(cols):
            if not mask[r, c]:
                dist[r, c] = math.sqrt(dist[r, c]) if dist[r, c] < cap2 else cap
    return OK
