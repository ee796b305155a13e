"""Numba kernels of the stereo navigation-camera renderer (wrapper: :mod:`sim.camera`).

Surface
    The terrain is the triangle mesh through the cell-centre vertices of the height grid:
    each quad of vertices ``(r, c), (r, c+1), (r+1, c+1), (r+1, c)`` is split along the
    diagonal ``(r, c)–(r+1, c+1)`` into ``(r,c),(r,c+1),(r+1,c+1)`` and
    ``(r,c),(r+1,c+1),(r+1,c)``. A triangle with a NaN vertex is not there.

Rasterisation (:func:`_rasterize_terrain`)
    The grid is walked in square blocks of ``block`` quads, near to far (fewer z-buffer
    writes). A block is skipped when its bounding box lies farther than ``max_range_m`` from
    the camera or wholly outside one plane of the view frustum (near plane or one of the
    four image-edge planes). Far blocks use a coarser level of detail (every 2nd or 4th
    vertex, while the spacing projects to a few pixels at most), with two-sided skirts
    closing the cracks where levels meet; nearer than ``2 fx cell / lod_px`` the mesh is
    exact. The vertices of a block are transformed once; each triangle is back-face culled
    (the mesh is a height field seen from above, so a back face is always hidden by a front
    face) and clipped against the near plane when it crosses it. A quad whose bounding box
    holds no pixel centre is skipped from its vertices' floors; a small quad is filled in one
    branch-free pass over its few pixel centres, a big triangle row by row over the exact
    span of centres inside its edges. Coverage is inclusive with a tiny tolerance, so shared
    edges leave no gaps. Inverse depth ``1/z`` is affine in the image for a planar triangle,
    so the z-buffer holds the exact, perspective-correct inverse depth of each pixel
    centre's ray hit.

Shading (:func:`_shade_pixels`), deferred
    Each covered pixel's world point is recovered from its depth; its base radiance
    (albedo × irradiance with cast shadows, baked per vertex) is interpolated bilinearly
    from the per-world shade map; fine detail comes from a periodic texture tile looked up
    in world coordinates with trilinear mip-mapping (the level follows the pixel's footprint
    on the surface, from the world points of its neighbours), so the same ground gives the
    same texture in both cameras and every frame. Pixel noise comes from a counter-based
    hash of the pixel index, so it needs no state and no random-number calls.

Shadows (:func:`_sweep_shadow`)
    Lines parallel to the sun's azimuth are swept across the grid away from the sun, each
    carrying the height of the highest sun ray cast by the surface under it so far; a vertex
    is lit when it stands above the ray interpolated between its two neighbouring lines.

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
_S = "float32[::1]"
_S2 = "float32[:, ::1]"
_S3 = "float32[:, :, ::1]"
_I = "int64[::1]"
_B2 = "uint8[:, ::1]"
_D = "float64"

_LOW = -1e30  # "no occluder yet" height of the shadow sweep (finite: it is interpolated)


# ------------------------------------------------------------------------------ shadows
@njit(f"int64({_S2}, {_D}, {_D}, {_D}, {_D}, {_D}, {_S2}, {_S2})", **_OPTS)
def _sweep_shadow(z, cell, dc_sign, dr_per_col, tan_el, soft_m, ray_h, lit):
    """Cast shadows of a height grid for a sun whose azimuth is nearer the grid's columns.

    ``dc_sign`` (+1 or -1) is the column step toward the sun and ``dr_per_col`` (|.| <= 1)
    the row offset per such step; the wrapper transposes the grid for the other case.
    Sun lines (parallel to the sun's azimuth, one per row, 1 cell apart) are swept column by
    column away from the sun, each carrying the height of the highest sun ray that the
    surface under it casts so far (the surface is sampled where the line crosses each
    column, where the mesh is linear between the two vertices). A vertex's ray height
    ``ray_h[r, c]`` is interpolated between the two lines beside it (so the lateral error
    is under one cell and does not grow along the sweep); ``-1e30`` means no occluder.
    ``lit[r, c] = clip((z - ray_h) / soft_m + 0.5, 0, 1)`` (NaN vertices: 0).
    """
    rows, cols = z.shape
    if ray_h.shape[0] != rows or ray_h.shape[1] != cols or lit.shape[0] != rows or lit.shape[1] != cols:
        return BAD_SHAPE
    if not (abs(dr_per_col) <= 1.0 and (dc_sign == 1.0 or dc_sign == -1.0) and soft_m > 0.0 and tan_el >= 0.0):
        return BAD_ARGUMENT
    drop = cell * math.sqrt(1.0 + dr_per_col * dr_per_col) * tan_el
    inv_soft = 1.0 / soft_m
    step = 1 if dc_sign > 0 else -1
    c_first = cols - 1 if step > 0 else 0
    # line j passes row j0 + j + shift at the k-th column from the sun side, shift = -k * dr
    # (a step toward the sun is dr rows, so a step away from it is -dr)
    span = int(math.ceil(abs(dr_per_col) * (cols - 1))) + 1
    j0 = -span if dr_per_col < 0.0 else 0
    n_lines = rows + span + 1
    env = np.full(n_lines, _LOW)
    ray = np.empty(n_lines)
    for k in range(cols):
        c = c_first - step * k
        shift = -k * dr_per_col
        for j in range(n_lines):
            ray[j] = env[j] - drop if env[j] > 0.5 * _LOW else _LOW
        # vertices of this column: between the lines just below and above them
        for r in range(rows):
            y = r - shift - j0
            jl = int(math.floor(y))
            f = y - jl
            h = _LOW
            if 0 <= jl and jl + 1 < n_lines:
                a = ray[jl]
                b = ray[jl + 1]
                if a > 0.5 * _LOW and b > 0.5 * _LOW:
                    h = a + f * (b - a)
                elif a > 0.5 * _LOW and f < 0.5:
                    h = a
                elif b > 0.5 * _LOW and f >= 0.5:
                    h = b
            ray_h[r, c] = h
            zz = z[r, c]
            if zz == zz:
                lit[r, c] = min(max((zz - h) * inv_soft + 0.5, 0.0), 1.0)
            else:
                lit[r, c] = 0.0
        # the surface under each line at this column becomes an occluder for the next ones
        for j in range(n_lines):
            y = j0 + j + shift
            e = ray[j]
            if 0.0 <= y <= rows - 1.0:
                r0 = min(int(y), rows - 2) if rows > 1 else 0
                f = y - r0
                za = z[r0, c]
                hz = za
                if f > 0.0:
                    hz = za + f * (z[r0 + 1, c] - za)
                if hz > e:                      # NaN (no surface) never occludes
                    e = hz
            env[j] = e
    return OK


# ------------------------------------------------------------------------------ per-world rasters
@njit(f"int64({_D}, {_D}, {_D}, {_F}, {_F}, {_F}, {_F}, {_D}, {_S2}, {_S2})", **_OPTS)
def _stamp_rock_mask(ox, oy, cell, x_m, y_m, diameter_m, tone, edge_m, rock, rock_tone):
    """Rasterise rocks onto the vertex grid: ``rock`` = max over rocks of a disc of radius
    ``D/2`` with a linear edge ``edge_m`` wide (1 inside), ``rock_tone`` = the tone of the
    rock that gave that maximum (an albedo factor per rock)."""
    rows, cols = rock.shape
    if rock_tone.shape[0] != rows or rock_tone.shape[1] != cols:
        return BAD_SHAPE
    if not edge_m > 0.0:
        return BAD_ARGUMENT
    for i in range(x_m.shape[0]):
        rad = 0.5 * diameter_m[i]
        if not rad > 0.0:
            continue
        reach = rad + 0.5 * edge_m
        gc = (x_m[i] - ox) / cell - 0.5
        gr = (y_m[i] - oy) / cell - 0.5
        c_lo = max(int(math.ceil(gc - reach / cell)), 0)
        c_hi = min(int(math.floor(gc + reach / cell)), cols - 1)
        r_lo = max(int(math.ceil(gr - reach / cell)), 0)
        r_hi = min(int(math.floor(gr + reach / cell)), rows - 1)
        for r in range(r_lo, r_hi + 1):
            dy = (r - gr) * cell
            for c in range(c_lo, c_hi + 1):
                dx = (c - gc) * cell
                d = math.sqrt(dx * dx + dy * dy)
                m = (rad + 0.5 * edge_m - d) / edge_m
                if m > 1.0:
                    m = 1.0
                if m > rock[r, c]:
                    rock[r, c] = m
                    rock_tone[r, c] = tone[i]
    return OK


@njit(f"int64({_S2}, {_F}, {_F}, {_F}, {_F}, {_D})", **_OPTS)
def _stamp_discs(tile, x, y, radius, value, edge):
    """Add soft discs (pebbles) to a periodic tile, wrapping at its edges: value ``value[i]``
    inside radius ``radius[i]`` texels, falling linearly to 0 over ``edge`` texels."""
    n = tile.shape[0]
    if tile.shape[1] != n or not edge > 0.0:
        return BAD_SHAPE
    for i in range(x.shape[0]):
        reach = radius[i] + 0.5 * edge
        i_lo = int(math.ceil(y[i] - reach))
        i_hi = int(math.floor(y[i] + reach))
        j_lo = int(math.ceil(x[i] - reach))
        j_hi = int(math.floor(x[i] + reach))
        for ii in range(i_lo, i_hi + 1):
            dy = ii - y[i]
            for jj in range(j_lo, j_hi + 1):
                dx = jj - x[i]
                m = (radius[i] + 0.5 * edge - math.sqrt(dx * dx + dy * dy)) / edge
                if m > 0.0:
                    if m > 1.0:
                        m = 1.0
                    tile[ii % n, jj % n] += value[i] * m
    return OK


@njit(f"int64({_S2}, int64, {_S2}, {_S2})", **_OPTS)
def _bound_blocks(z, block, zmin, zmax):
    """Min and max height of the vertices of each block of ``block`` x ``block`` quads
    (vertex rows ``br*block .. br*block + block``, shared with the next block); NaN when the
    block has no known vertex."""
    rows, cols = z.shape
    nbr = zmin.shape[0]
    nbc = zmin.shape[1]
    if block < 1 or zmax.shape[0] != nbr or zmax.shape[1] != nbc:
        return BAD_SHAPE
    for br in range(nbr):
        r0 = br * block
        r1 = min(r0 + block, rows - 1)
        for bc in range(nbc):
            c0 = bc * block
            c1 = min(c0 + block, cols - 1)
            lo = np.inf
            hi = -np.inf
            for r in range(r0, r1 + 1):
                for c in range(c0, c1 + 1):
                    v = z[r, c]
                    if v < lo:
                        lo = v
                    if v > hi:
                        hi = v
            if lo > hi:
                zmin[br, bc] = np.nan
                zmax[br, bc] = np.nan
            else:
                zmin[br, bc] = lo
                zmax[br, bc] = hi
    return OK


# ------------------------------------------------------------------------------ rasteriser
@njit(f"int64({_S2}, {_D}, {_D}, {_D}, {_D}, {_D}, {_D}, {_D}, {_D}, {_D}, {_D}, boolean)",
      **_OPTS)
def _fill_triangle(buf, u0, v0, q0, u1, v1, q1, u2, v2, q2, eps, two_sided):
    """Scan-convert one projected triangle into the inverse-depth buffer (keep the larger
    ``q = 1/z``). Front faces have negative signed area in image coordinates (y down); back
    faces are culled unless ``two_sided``. Returns the number of pixel centres tested."""
    area = (u1 - u0) * (v2 - v0) - (u2 - u0) * (v1 - v0)
    if not area < 0.0:
        if not (two_sided and area > 0.0):
            return 0
        u1, v1, q1, u2, v2, q2 = u2, v2, q2, u1, v1, q1
        area = -area
    h = buf.shape[0]
    w = buf.shape[1]
    umin = min(u0, min(u1, u2))
    umax = max(u0, max(u1, u2))
    vmin = min(v0, min(v1, v2))
    vmax = max(v0, max(v1, v2))
    # clamp before converting to int: clipped triangles can project far off screen
    x0 = max(int(math.ceil(max(umin, -1.0))), 0)
    x1 = min(int(math.floor(min(umax, w + 0.0))), w - 1)
    if x0 > x1:
        return 0
    y0 = max(int(math.ceil(max(vmin, -1.0))), 0)
    y1 = min(int(math.floor(min(vmax, h + 0.0))), h - 1)
    if y0 > y1:
        return 0
    inv = 1.0 / area
    # barycentrics relative to vertex 0: w1 = a1 du + b1 dv, w2 = a2 du + b2 dv, w0 = 1 - w1 - w2
    a1 = (v2 - v0) * inv
    b1 = -(u2 - u0) * inv
    a2 = -(v1 - v0) * inv
    b2 = (u1 - u0) * inv
    qa = a1 * (q1 - q0) + a2 * (q2 - q0)
    qb = b1 * (q1 - q0) + b2 * (q2 - q0)
    n = 0
    if x1 - x0 < 4:
        # narrow: test each pixel centre of the bounding box (one flat loop, branch-free body)
        one = 1.0 + eps
        nx = x1 - x0 + 1
        n = nx * (y1 - y0 + 1)
        for k in range(n):
            y = y0 + k // nx
            x = x0 + k - (k // nx) * nx
            du = x - u0
            dv = y - v0
            w1 = a1 * du + b1 * dv
            w2 = a2 * du + b2 * dv
            inside = (w1 >= -eps) & (w2 >= -eps) & (w1 + w2 <= one)
            q = q0 + qa * du + qb * dv
            buf[y, x] = max(buf[y, x], np.float32(q if inside else 0.0))
        return n
    # wide: the span of pixel centres inside all three edges, row by row
    a0 = -(a1 + a2)
    b0 = -(b1 + b2)
    ia1 = 1.0 / a1 if a1 != 0.0 else 0.0
    ia2 = 1.0 / a2 if a2 != 0.0 else 0.0
    ia0 = 1.0 / a0 if a0 != 0.0 else 0.0
    for y in range(y0, y1 + 1):
        dv = y - v0
        lo = x0 - u0
        hi = x1 - u0
        # edge k inside: ak * du + (bk * dv + ck) >= -eps
        c1 = b1 * dv + eps
        if a1 > 0.0:
            lo = max(lo, -c1 * ia1)
        elif a1 < 0.0:
            hi = min(hi, -c1 * ia1)
        elif c1 < 0.0:
            continue
        c2 = b2 * dv + eps
        if a2 > 0.0:
            lo = max(lo, -c2 * ia2)
        elif a2 < 0.0:
            hi = min(hi, -c2 * ia2)
        elif c2 < 0.0:
            continue
        c0 = 1.0 + b0 * dv + eps
        if a0 > 0.0:
            lo = max(lo, -c0 * ia0)
        elif a0 < 0.0:
            hi = min(hi, -c0 * ia0)
        elif c0 < 0.0:
            continue
        if lo > hi:
            continue
        xs = max(int(math.ceil(lo + u0)), x0)
        xe = min(int(math.floor(hi + u0)), x1)
        qrow = q0 + qb * dv - qa * u0
        for x in range(xs, xe + 1):
            buf[y, x] = max(buf[y, x], np.float32(qrow + qa * x))   # branch-free: vectorises
        n += xe - xs + 1
    return n


@njit(f"int64({_S2}, {_D}, {_D}, {_D}, {_D}, {_D}, {_D}, {_D}, {_D}, {_D}, {_D}, {_D}, {_D}, {_D})", **_OPTS)
def _fill_quad(buf, ua, va, qa, ub, vb, qb, uc, vc, qc, ud, vd, qd, eps):
    """Both triangles of a projected vertex quad, ``(a, b, c)`` and ``(a, c, d)``. A quad whose
    bounding box holds at most 4 x 4 pixel centres (the usual case beyond a few metres) is
    done in one pass over those centres with shared set-up; bigger ones triangle by triangle
    (row spans)."""
    area1 = (ub - ua) * (vc - va) - (uc - ua) * (vb - va)
    area2 = (uc - ua) * (vd - va) - (ud - ua) * (vc - va)
    front1 = area1 < 0.0
    front2 = area2 < 0.0
    if not (front1 or front2):
        return 0
    h = buf.shape[0]
    w = buf.shape[1]
    umin = min(min(ua, ub), min(uc, ud))
    umax = max(max(ua, ub), max(uc, ud))
    vmin = min(min(va, vb), min(vc, vd))
    vmax = max(max(va, vb), max(vc, vd))
    x0 = max(int(math.ceil(max(umin, -1.0))), 0)
    x1 = min(int(math.floor(min(umax, w + 0.0))), w - 1)
    y0 = max(int(math.ceil(max(vmin, -1.0))), 0)
    y1 = min(int(math.floor(min(vmax, h + 0.0))), h - 1)
    if x0 > x1 or y0 > y1:
        return 0
    if x1 - x0 > 3 or y1 - y0 > 3:
        n = 0
        if front1:
            n += _fill_triangle(buf, ua, va, qa, ub, vb, qb, uc, vc, qc, eps, False)
        if front2:
            n += _fill_triangle(buf, ua, va, qa, uc, vc, qc, ud, vd, qd, eps, False)
        return n
    # barycentrics relative to a: triangle 1 (a, b, c), triangle 2 (a, c, d)
    i1 = 1.0 / area1 if front1 else 0.0
    i2 = 1.0 / area2 if front2 else 0.0
    p1 = (vc - va) * i1
    r1 = -(uc - ua) * i1
    p2 = -(vb - va) * i1
    r2 = (ub - ua) * i1
    s1 = (vd - va) * i2
    t1 = -(ud - ua) * i2
    s2 = -(vc - va) * i2
    t2 = (uc - ua) * i2
    one = 1.0 + eps
    nx = x1 - x0 + 1
    n = nx * (y1 - y0 + 1)
    for k in range(n):                     # one flat loop, branch-free body: few mispredictions
        y = y0 + k // nx
        x = x0 + k - (k // nx) * nx
        du = x - ua
        dv = y - va
        w1 = p1 * du + r1 * dv
        w2 = p2 * du + r2 * dv
        in1 = front1 & (w1 >= -eps) & (w2 >= -eps) & (w1 + w2 <= one)
        q1 = qa + w1 * (qb - qa) + w2 * (qc - qa)
        z1 = s1 * du + t1 * dv
        z2 = s2 * du + t2 * dv
        in2 = front2 & (z1 >= -eps) & (z2 >= -eps) & (z1 + z2 <= one)
        q2 = qa + z1 * (qc - qa) + z2 * (qd - qa)
        q = q1 if in1 else (q2 if in2 else 0.0)
        buf[y, x] = max(buf[y, x], np.float32(q))
    return (x1 - x0 + 1) * (y1 - y0 + 1)


@njit(f"int64({_S2}, {_D}, {_D}, {_D}, {_D}, {_D}, {_D}, {_D}, {_D}, {_D}, {_D}, {_D}, {_D}, {_D}, "
      f"{_D}, {_D}, boolean)", **_OPTS)
def _clip_fill_triangle(buf, x0, y0, z0, x1, y1, z1, x2, y2, z2, near, fx, fy, cx, cy, eps, two_sided):
    """Clip a camera-frame triangle against the plane ``z = near`` (Sutherland–Hodgman) and
    fill what is in front (a triangle or a quad, as a fan)."""
    px = np.empty(4)
    py = np.empty(4)
    pz = np.empty(4)
    m = 0
    xs = (x0, x1, x2)
    ys = (y0, y1, y2)
    zs = (z0, z1, z2)
    for i in range(3):
        j = (i + 1) % 3
        ai = zs[i] >= near
        aj = zs[j] >= near
        if ai:
            px[m] = xs[i]
            py[m] = ys[i]
            pz[m] = zs[i]
            m += 1
        if ai != aj:
            t = (near - zs[i]) / (zs[j] - zs[i])
            px[m] = xs[i] + t * (xs[j] - xs[i])
            py[m] = ys[i] + t * (ys[j] - ys[i])
            pz[m] = near
            m += 1
    n = 0
    if m < 3:
        return 0
    pu = np.empty(4)
    pv = np.empty(4)
    pq = np.empty(4)
    for i in range(m):
        q = 1.0 / pz[i]
        pu[i] = fx * px[i] * q + cx
        pv[i] = fy * py[i] * q + cy
        pq[i] = q
    for k in range(1, m - 1):
        n += _fill_triangle(buf, pu[0], pv[0], pq[0], pu[k], pv[k], pq[k], pu[k + 1], pv[k + 1], pq[k + 1],
                            eps, two_sided)
    return n


@njit(f"int64({_S2}, {_D}, {_D}, {_D}, {_D}, {_D}, {_D}, {_D}, {_D}, {_D}, {_D}, {_D}, {_D}, {_D}, {_D}, "
      f"{_D}, {_D}, {_D}, {_D}, {_D}, {_D}, {_D}, boolean)", **_OPTS)
def _fill_lowered_triangle(buf, xa, ya, za, xb, yb, zb, xc, yc, zc, near, fx, fy, cx, cy, eps, tx, ty, tz, da, db,
                           dc_, two_sided):
    """Fill a camera-frame triangle whose vertices are ``p_k - d_k t`` (``t`` = the world up
    axis in the camera frame; ``d_k`` = how far each vertex is lowered), projecting it
    directly when it is wholly in front of the near plane and clipping it otherwise."""
    xa -= da * tx
    ya -= da * ty
    za -= da * tz
    xb -= db * tx
    yb -= db * ty
    zb -= db * tz
    xc -= dc_ * tx
    yc -= dc_ * ty
    zc -= dc_ * tz
    if za >= near and zb >= near and zc >= near:
        qa = 1.0 / za
        qb = 1.0 / zb
        qc = 1.0 / zc
        return _fill_triangle(buf, fx * xa * qa + cx, fy * ya * qa + cy, qa, fx * xb * qb + cx, fy * yb * qb + cy,
                              qb, fx * xc * qc + cx, fy * yc * qc + cy, qc, eps, two_sided)
    if za < near and zb < near and zc < near:
        return 0
    return _clip_fill_triangle(buf, xa, ya, za, xb, yb, zb, xc, yc, zc, near, fx, fy, cx, cy, eps, two_sided)



@njit(f"int64({_I}, int64, int64, int64)", inline="always", **_OPTS)
def _lattice_indices(out, lo, hi, step):
    """Write ``lo, lo + step, ...`` clamped to end exactly at ``hi`` into ``out``; return how many."""
    n = 0
    v = lo
    while True:
        out[n] = min(v, hi)
        n += 1
        if v >= hi:
            return n
        v += step

@njit(f"int64({_S2}, {_D}, {_D}, {_D}, int64, {_S2}, {_S2}, {_F2}, {_F}, {_D}, {_D}, {_D}, {_D}, {_D}, {_D}, "
      f"{_D}, {_D}, int64, {_S2}, {_I})", **_OPTS)
def _rasterize_terrain(z, ox, oy, cell, block, bzmin, bzmax, R_cw, C_w, fx, fy, cx, cy, near_m, max_range_m,
                       eps, lod_px, max_level, invz, stats):
    """Draw the terrain mesh into ``invz`` (inverse camera-frame depth, 0 = nothing; the
    buffer is not cleared here).

    ``R_cw`` rotates world vectors into the camera frame (OpenCV axes) and ``C_w`` is the
    optical centre in the world. ``bzmin/bzmax`` are :func:`_bound_blocks` of ``z``.

    Level of detail: a block whose nearest point is ``d`` metres away is drawn from every
    ``2**L``-th vertex, ``L = floor(log2(lod_px * d / (fx * cell)))`` clipped to
    ``[0, max_level]`` (the coarse vertex spacing projects to at most ``lod_px`` pixels;
    ``lod_px = 0`` draws everything at full resolution). Where neighbouring blocks differ in
    level, both hang a two-sided skirt from their shared edge down to their lowest vertex,
    which fills the cracks between the two meshes (and is hidden everywhere else).
    ``stats`` receives (blocks drawn, triangles set up, pixel centres tested, blocks per
    level 0..3).
    """
    rows, cols = z.shape
    h, w = invz.shape
    nbr, nbc = bzmin.shape
    if (nbr != (max(rows - 1, 1) + block - 1) // block or nbc != (max(cols - 1, 1) + block - 1) // block
            or bzmax.shape[0] != nbr or bzmax.shape[1] != nbc or stats.shape[0] < 7
            or R_cw.shape[0] != 3 or R_cw.shape[1] != 3 or C_w.shape[0] != 3):
        return BAD_SHAPE
    if not (block >= 1 and near_m > 0.0 and fx > 0.0 and fy > 0.0 and max_range_m > 0.0 and lod_px >= 0.0
            and 0 <= max_level <= 3 and (block >> max_level) << max_level == block):
        return BAD_ARGUMENT
    for k in range(7):
        stats[k] = 0
    cxw = C_w[0]
    cyw = C_w[1]
    czw = C_w[2]
    r00 = R_cw[0, 0]
    r01 = R_cw[0, 1]
    r02 = R_cw[0, 2]
    r10 = R_cw[1, 0]
    r11 = R_cw[1, 1]
    r12 = R_cw[1, 2]
    r20 = R_cw[2, 0]
    r21 = R_cw[2, 1]
    r22 = R_cw[2, 2]
    # frustum side planes through the optical centre, camera frame: a x + b y + c z >= 0
    pl_a = np.array([fx, -fx, 0.0, 0.0])
    pl_b = np.array([0.0, 0.0, fy, -fy])
    pl_c = np.array([cx + 0.5, w - 0.5 - cx, cy + 0.5, h - 0.5 - cy])
    lod_k = lod_px / (fx * cell) if lod_px > 0.0 else 0.0
    # blocks that survive culling, ordered near to far, with their level of detail
    level = np.full((nbr, nbc), -1, dtype=np.int64)
    order_d = np.empty(nbr * nbc)
    order_i = np.empty(nbr * nbc, dtype=np.int64)
    nsel = 0
    corner = np.empty((8, 3))
    for br in range(nbr):
        for bc in range(nbc):
            lo = bzmin[br, bc]
            hi = bzmax[br, bc]
            if not lo <= hi:
                continue
            r0 = br * block
            c0 = bc * block
            r1 = min(r0 + block, rows - 1)
            c1 = min(c0 + block, cols - 1)
            xa = ox + (c0 + 0.5) * cell
            xb = ox + (c1 + 0.5) * cell
            ya = oy + (r0 + 0.5) * cell
            yb = oy + (r1 + 0.5) * cell
            ddx = max(xa - cxw, 0.0, cxw - xb)
            ddy = max(ya - cyw, 0.0, cyw - yb)
            ddz = max(lo - czw, 0.0, czw - hi)
            dist2 = ddx * ddx + ddy * ddy + ddz * ddz
            if dist2 > max_range_m * max_range_m:
                continue
            k = 0
            for xx in (xa, xb):
                for yy in (ya, yb):
                    for zz in (lo, hi):
                        ex = xx - cxw
                        ey = yy - cyw
                        ez = zz - czw
                        corner[k, 0] = r00 * ex + r01 * ey + r02 * ez
                        corner[k, 1] = r10 * ex + r11 * ey + r12 * ez
                        corner[k, 2] = r20 * ex + r21 * ey + r22 * ez
                        k += 1
            out = True
            for k in range(8):
                if corner[k, 2] >= near_m:
                    out = False
                    break
            if out:
                continue
            for p in range(4):
                out = True
                for k in range(8):
                    if pl_a[p] * corner[k, 0] + pl_b[p] * corner[k, 1] + pl_c[p] * corner[k, 2] >= 0.0:
                        out = False
                        break
                if out:
                    break
            if out:
                continue
            lev = 0
            t = lod_k * math.sqrt(dist2)
            while lev < max_level and t >= 2.0:
                t *= 0.5
                lev += 1
            level[br, bc] = lev
            order_d[nsel] = math.sqrt(dist2)
            order_i[nsel] = br * nbc + bc
            nsel += 1
    # near to far (saves z-buffer writes): a counting sort on distance in block-sized bins
    bin_m = block * cell
    n_bins = int(max_range_m / bin_m) + 2
    count = np.zeros(n_bins + 1, dtype=np.int64)
    for s in range(nsel):
        count[min(int(order_d[s] / bin_m), n_bins - 1) + 1] += 1
    for k in range(n_bins):
        count[k + 1] += count[k]
    perm = np.empty(nsel, dtype=np.int64)
    for s in range(nsel):
        kb = min(int(order_d[s] / bin_m), n_bins - 1)
        perm[count[kb]] = s
        count[kb] += 1

    nv = block + 1
    vx = np.empty(nv * nv)
    vy = np.empty(nv * nv)
    vz = np.empty(nv * nv)
    vu = np.empty(nv * nv)
    vv = np.empty(nv * nv)
    vq = np.empty(nv * nv)
    vfu = np.empty(nv * nv)                  # floor(u), floor(v): quick rejection of quads between pixel centres
    vfv = np.empty(nv * nv)
    vs = np.empty(nv * nv, dtype=np.uint8)   # 0 = no vertex (NaN), 1 = behind the near plane, 2 = in front
    vh = np.empty(nv * nv)                   # world height of each vertex (skirts hang from it)
    rr_ = np.empty(nv, dtype=np.int64)       # grid rows / cols of the block's vertices at its level
    cc_ = np.empty(nv, dtype=np.int64)
    upx = r02                                # world up (0, 0, 1) in the camera frame
    upy = r12
    upz = r22
    n_tri = 0
    n_pix = 0
    for s in range(nsel):
        bi = order_i[perm[s]]
        br = bi // nbc
        bc = bi - br * nbc
        lev = level[br, bc]
        stats[3 + lev] += 1
        step = 1 << lev
        r0 = br * block
        c0 = bc * block
        r1 = min(r0 + block, rows - 1)
        c1 = min(c0 + block, cols - 1)
        nr = _lattice_indices(rr_, r0, r1, step)
        nc = _lattice_indices(cc_, c0, c1, step)
        for i in range(nr):
            r = rr_[i]
            ey = oy + (r + 0.5) * cell - cyw
            for j in range(nc):
                c = cc_[j]
                k = i * nv + j
                zz = z[r, c]
                if not zz == zz:
                    vs[k] = 0
                    continue
                ex = ox + (c + 0.5) * cell - cxw
                ez = zz - czw
                xc = r00 * ex + r01 * ey + r02 * ez
                yc = r10 * ex + r11 * ey + r12 * ez
                zc = r20 * ex + r21 * ey + r22 * ez
                vx[k] = xc
                vy[k] = yc
                vz[k] = zc
                vh[k] = zz
                if zc >= near_m:
                    q = 1.0 / zc
                    uu = fx * xc * q + cx
                    vvv = fy * yc * q + cy
                    vu[k] = uu
                    vv[k] = vvv
                    vfu[k] = math.floor(uu)
                    vfv[k] = math.floor(vvv)
                    vq[k] = q
                    vs[k] = 2
                else:
                    vs[k] = 1
        for i in range(nr - 1):
            for j in range(nc - 1):
                ia = i * nv + j
                ib = ia + 1
                ic = ia + nv + 1
                id_ = ia + nv
                sa = vs[ia]
                sc = vs[ic]
                if sa == 0 or sc == 0:
                    continue
                if sa == 2 and sc == 2 and vs[ib] == 2 and vs[id_] == 2:
                    # no pixel centre between the quad's extreme rows or columns: nothing to draw
                    if (max(max(vfv[ia], vfv[ib]), max(vfv[ic], vfv[id_]))
                            < min(min(vv[ia], vv[ib]), min(vv[ic], vv[id_]))):
                        continue
                    if (max(max(vfu[ia], vfu[ib]), max(vfu[ic], vfu[id_]))
                            < min(min(vu[ia], vu[ib]), min(vu[ic], vu[id_]))):
                        continue
                    n_tri += 2
                    n_pix += _fill_quad(invz, vu[ia], vv[ia], vq[ia], vu[ib], vv[ib], vq[ib], vu[ic], vv[ic], vq[ic],
                                        vu[id_], vv[id_], vq[id_], eps)
                    continue
                for t in range(2):
                    i1 = ib if t == 0 else ic
                    i2 = ic if t == 0 else id_
                    s1 = vs[i1]
                    s2 = vs[i2]
                    if s1 == 0 or s2 == 0:
                        continue
                    n_tri += 1
                    if sa == 2 and s1 == 2 and s2 == 2:
                        n_pix += _fill_triangle(invz, vu[ia], vv[ia], vq[ia], vu[i1], vv[i1], vq[i1],
                                                vu[i2], vv[i2], vq[i2], eps, False)
                    elif sa == 2 or s1 == 2 or s2 == 2:
                        n_pix += _clip_fill_triangle(invz, vx[ia], vy[ia], vz[ia], vx[i1], vy[i1], vz[i1],
                                                     vx[i2], vy[i2], vz[i2], near_m, fx, fy, cx, cy, eps, False)
        # skirts along edges shared with a block of another level
        zlow = bzmin[br, bc] - 1e-3
        for side in range(4):
            nb_r = br + (-1 if side == 0 else (1 if side == 1 else 0))
            nb_c = bc + (-1 if side == 2 else (1 if side == 3 else 0))
            if nb_r < 0 or nb_r >= nbr or nb_c < 0 or nb_c >= nbc:
                continue
            nlev = level[nb_r, nb_c]
            if nlev < 0 or nlev == lev:
                continue
            m = nc if side < 2 else nr
            for e in range(m - 1):
                if side == 0:
                    ka = e
                    kb = e + 1
                elif side == 1:
                    ka = (nr - 1) * nv + e
                    kb = ka + 1
                elif side == 2:
                    ka = e * nv
                    kb = ka + nv
                else:
                    ka = e * nv + nc - 1
                    kb = ka + nv
                if vs[ka] == 0 or vs[kb] == 0:
                    continue
                da = vh[ka] - zlow
                db = vh[kb] - zlow
                n_tri += 2
                # the skirt quad (a, b, b lowered, a lowered) as two two-sided triangles
                n_pix += _fill_lowered_triangle(invz, vx[ka], vy[ka], vz[ka], vx[kb], vy[kb], vz[kb],
                                                vx[kb], vy[kb], vz[kb], near_m, fx, fy, cx, cy, eps,
                                                upx, upy, upz, 0.0, 0.0, db, True)
                n_pix += _fill_lowered_triangle(invz, vx[ka], vy[ka], vz[ka], vx[kb], vy[kb], vz[kb],
                                                vx[ka], vy[ka], vz[ka], near_m, fx, fy, cx, cy, eps,
                                                upx, upy, upz, 0.0, db, da, True)
    stats[0] = nsel
    stats[1] = n_tri
    stats[2] = n_pix
    return OK


# ------------------------------------------------------------------------------ shading
_M32 = np.uint64(0xFFFFFFFF)
_FMIX1 = np.uint64(0x85EBCA6B)
_FMIX2 = np.uint64(0xC2B2AE35)


@njit("uint64(uint64)", inline="always", **_OPTS)
def _hash_u32(h):
    """MurmurHash3's 32-bit finaliser (avalanche) on the low 32 bits of ``h``. Products stay
    below 2**64, so the uncompiled kernel needs no wrapping arithmetic either."""
    h &= _M32
    h ^= h >> np.uint64(16)
    h = (h * _FMIX1) & _M32
    h ^= h >> np.uint64(13)
    h = (h * _FMIX2) & _M32
    return h ^ (h >> np.uint64(16))


@njit(f"float64({_S}, uint64, uint64, {_D}, {_D})", inline="always", **_OPTS)
def _sample_level(mips, off, n, s, t):
    """Bilinear lookup in the periodic ``n`` x ``n`` level stored at ``mips[off:]``, at that
    level's texel coordinates (texel centres at +0.5). Unsigned indices: no wraparound code."""
    m = n - np.uint64(1)
    mi = np.int64(m)
    ss = s - 0.5
    tt = t - 0.5
    fs = math.floor(ss)
    ft = math.floor(tt)
    a = ss - fs
    b = tt - ft
    j0 = np.uint64(np.int64(fs) & mi)        # the masks keep them in [0, n): valid unsigned indices
    i0 = np.uint64(np.int64(ft) & mi)
    j1 = (j0 + np.uint64(1)) & m
    r0 = off + i0 * n
    r1 = off + ((i0 + np.uint64(1)) & m) * n
    v00 = mips[r0 + j0]
    v01 = mips[r0 + j1]
    v10 = mips[r1 + j0]
    v11 = mips[r1 + j1]
    top_row = v00 + a * (v01 - v00)
    bot_row = v10 + a * (v11 - v10)
    return top_row + b * (bot_row - top_row)


@njit(f"float64({_S}, uint64[::1], uint64[::1], {_F}, {_D}, {_D}, {_D})", inline="always", **_OPTS)
def _sample_tile(mips, lev_off, lev_n, lev_scale, s, t, lod):
    """Trilinear lookup of a periodic mip-mapped tile at level-0 texel coordinates ``(s, t)``
    and level of detail ``lod`` (clamped to the pyramid, which has at least two levels)."""
    top = lev_off.shape[0] - 1
    lod = min(max(lod, 0.0), top - 1e-9)
    l0 = int(lod)
    fl = lod - l0
    l1 = l0 + 1
    sc0 = lev_scale[l0]
    sc1 = lev_scale[l1]
    a = _sample_level(mips, lev_off[l0], lev_n[l0], s * sc0, t * sc0)
    b = _sample_level(mips, lev_off[l1], lev_n[l1], s * sc1, t * sc1)
    return a + fl * (b - a)


@njit(f"void({_S2}, int64, {_D}, {_D}, {_D}, {_D}, {_D}, {_D}, {_D}, {_D}, {_D}, {_D}, {_D}, {_D}, {_D}, "
      f"{_D}, {_D}, {_D}, {_D}, {_F2}, {_F2}, {_F2}, {_F2}, int64)", **_OPTS)
def _unproject_row(invz, v, cx, cy, fx, fy, r2max, d0x, d0y, d0z, dux, duy, duz, dvx, dvy, dvz, cxw, cyw, czw,
               PX, PY, PZ, ZZ, slot):
    """World points of the pixel centres of image row ``v`` into row ``slot`` of PX, PY, PZ
    and their depths into ZZ (``inf`` where nothing is seen within range)."""
    w = invz.shape[1]
    yn = (v - cy) / fy
    yn2 = yn * yn + 1.0
    ex = d0x + v * dvx
    ey = d0y + v * dvy
    ez = d0z + v * dvz
    for u in range(w):
        q = invz[v, u]
        zz = np.inf
        if q > 0.0:
            zz = 1.0 / q
            xn = (u - cx) / fx
            if zz * zz * (xn * xn + yn2) > r2max:
                zz = np.inf
        ZZ[slot, u] = zz
        if zz < np.inf:
            PX[slot, u] = cxw + zz * (ex + u * dux)
            PY[slot, u] = cyw + zz * (ey + u * duy)
            PZ[slot, u] = czw + zz * (ez + u * duz)
        else:
            PX[slot, u] = 0.0
            PY[slot, u] = 0.0
            PZ[slot, u] = 0.0


@njit(f"int64({_S2}, {_F2}, {_F}, {_D}, {_D}, {_D}, {_D}, {_D}, {_D}, {_D}, {_D}, {_S3}, {_S}, {_I}, int64, "
      f"{_D}, {_D}, {_D}, {_D}, {_D}, {_D}, {_D}, int64, {_S}, {_B2}, {_S2}, boolean)", **_OPTS)
def _shade_pixels(invz, R_wc, C_w, fx, fy, cx, cy, max_range_m, ox, oy, cell, shade, mips, mip_off, n0,
                  texel_m, lod_bias, contrast_soil, contrast_rock, gain_dn, sky_dn, noise_dn, noise_seed, gauss,
                  img, depth, want_depth):
    """Turn an inverse-depth buffer into an 8-bit image (and camera-frame depth).

    Per covered pixel within ``max_range_m`` (distance along the ray): world point
    ``P = C + z R_wc [(u-cx)/fx, (v-cy)/fy, 1]``; base radiance ``shade[..., 0]`` and
    rock cover ``k = shade[..., 1]`` bilinear at ``P``; detail ``d = tile(P / texel_m)`` at
    mip level ``log2(footprint / texel_m) + lod_bias``, the footprint being the geometric
    mean of the distances to the world points of the nearer horizontal and the nearer
    vertical neighbour; on rock the detail becomes ``min(3|d|, 1) - 0.6`` (dark veins along
    the texture's zero crossings). ``DN = gain_dn * base * (1 + contrast * d)`` with the
    contrast blended by ``k``. Other pixels are sky (``sky_dn``, depth ``inf``). Noise
    ``noise_dn * g`` is added to every pixel, ``g`` standard normal from the piecewise-linear
    inverse CDF ``gauss`` (``len - 1`` equal-probability bins, a power of two up to 2**16)
    indexed by 32 bits hashed from ``noise_seed`` and the pixel index (two rounds of
    MurmurHash3's finaliser: the top bits pick the bin, the rest the place in it). DN is
    rounded and clipped to
    [0, 255]; ``depth`` is written only when ``want_depth``. Rows are processed in short
    passes (world points, footprint, texture, noise, output) so that each loop pipelines.
    """
    h, w = invz.shape
    rows = shade.shape[0]
    cols = shade.shape[1]
    n_lev = mip_off.shape[0]
    n_bins = gauss.shape[0] - 1
    if (img.shape[0] != h or img.shape[1] != w or shade.shape[2] < 2 or R_wc.shape[0] != 3
            or R_wc.shape[1] != 3 or C_w.shape[0] != 3 or n_lev < 2 or n_bins < 1):
        return BAD_SHAPE
    if want_depth and (depth.shape[0] != h or depth.shape[1] != w):
        return BAD_SHAPE
    if not (fx > 0.0 and fy > 0.0 and texel_m > 0.0 and cell > 0.0 and n0 >= 2 and (n0 & (n0 - 1)) == 0
            and (n_bins & (n_bins - 1)) == 0):
        return BAD_ARGUMENT
    if n0 >> (n_lev - 1) < 1 or mip_off[n_lev - 1] + (n0 >> (n_lev - 1)) ** 2 > mips.shape[0]:
        return BAD_SHAPE
    lev_off = np.empty(n_lev, dtype=np.uint64)
    lev_n = np.empty(n_lev, dtype=np.uint64)
    lev_scale = np.empty(n_lev)
    for k in range(n_lev):
        lev_off[k] = mip_off[k]
        lev_n[k] = n0 >> k
        lev_scale[k] = 1.0 / (1 << k)
    # world ray direction of pixel (u, v) (camera z = 1): d0 + u du + v dv
    dux = R_wc[0, 0] / fx
    duy = R_wc[1, 0] / fx
    duz = R_wc[2, 0] / fx
    dvx = R_wc[0, 1] / fy
    dvy = R_wc[1, 1] / fy
    dvz = R_wc[2, 1] / fy
    d0x = R_wc[0, 2] - cx * dux - cy * dvx
    d0y = R_wc[1, 2] - cx * duy - cy * dvy
    d0z = R_wc[2, 2] - cx * duz - cy * dvz
    cxw = C_w[0]
    cyw = C_w[1]
    czw = C_w[2]
    inv_tex = 1.0 / texel_m
    inv_cell = 1.0 / cell
    lod_off = lod_bias - math.log2(texel_m)
    r2max = max_range_m * max_range_m
    inv_fxfy = 1.0 / (fx * fy)
    use_noise = noise_dn != 0.0
    seed_lo = np.uint64(noise_seed & 0xFFFFFFFF)
    seed_hi = np.uint64((noise_seed >> 32) & 0xFFFFFFFF)
    bin_bits = int(round(math.log2(n_bins)))
    if not (1 <= bin_bits <= 16):
        return BAD_SHAPE
    bin_shift = np.uint64(32 - bin_bits)
    frac_mask = (np.uint64(1) << bin_shift) - np.uint64(1)
    frac_scale = 1.0 / (2.0 ** (32 - bin_bits))
    cmax = max(cols - 2, 0)
    rmax = max(rows - 2, 0)
    PX = np.empty((3, w))
    PY = np.empty((3, w))
    PZ = np.empty((3, w))
    ZZ = np.empty((3, w))
    lod = np.empty(w)
    det = np.empty(w)
    nz = np.zeros(w)
    _unproject_row(invz, 0, cx, cy, fx, fy, r2max, d0x, d0y, d0z, dux, duy, duz, dvx, dvy, dvz, cxw, cyw, czw,
               PX, PY, PZ, ZZ, 0)
    for v in range(h):
        cur = v % 3
        nxt = (v + 1) % 3
        prv = (v + 2) % 3
        if v + 1 < h:
            _unproject_row(invz, v + 1, cx, cy, fx, fy, r2max, d0x, d0y, d0z, dux, duy, duz, dvx, dvy, dvz,
                       cxw, cyw, czw, PX, PY, PZ, ZZ, nxt)
        # footprint -> mip level
        yn2 = ((v - cy) / fy) ** 2 + 1.0
        for u in range(w):
            zz = ZZ[cur, u]
            if not zz < np.inf:
                lod[u] = 0.0
                continue
            px = PX[cur, u]
            py = PY[cur, u]
            pz = PZ[cur, u]
            fu2 = np.inf
            fv2 = np.inf
            if u + 1 < w and ZZ[cur, u + 1] < np.inf:
                fu2 = (PX[cur, u + 1] - px) ** 2 + (PY[cur, u + 1] - py) ** 2 + (PZ[cur, u + 1] - pz) ** 2
            if u > 0 and ZZ[cur, u - 1] < np.inf:
                fu2 = min(fu2, (PX[cur, u - 1] - px) ** 2 + (PY[cur, u - 1] - py) ** 2
                          + (PZ[cur, u - 1] - pz) ** 2)
            if v + 1 < h and ZZ[nxt, u] < np.inf:
                fv2 = (PX[nxt, u] - px) ** 2 + (PY[nxt, u] - py) ** 2 + (PZ[nxt, u] - pz) ** 2
            if v > 0 and ZZ[prv, u] < np.inf:
                fv2 = min(fv2, (PX[prv, u] - px) ** 2 + (PY[prv, u] - py) ** 2 + (PZ[prv, u] - pz) ** 2)
            if not fu2 < np.inf or not fv2 < np.inf:
                xn = (u - cx) / fx
                lat2 = zz * zz * (xn * xn + yn2) * inv_fxfy
                if not fu2 < np.inf:
                    fu2 = lat2
                if not fv2 < np.inf:
                    fv2 = lat2
            lod[u] = 0.25 * math.log2(max(fu2 * fv2, 1e-30)) + lod_off
        # detail texture
        for u in range(w):
            if ZZ[cur, u] < np.inf:
                det[u] = _sample_tile(mips, lev_off, lev_n, lev_scale, PX[cur, u] * inv_tex, PY[cur, u] * inv_tex,
                                      lod[u])
        # sensor noise
        if use_noise:
            for u in range(w):
                bits = _hash_u32(_hash_u32(np.uint64(v * w + u) ^ seed_lo) ^ seed_hi)    # 32 random bits
                kb = bits >> bin_shift
                f = np.float64(bits & frac_mask) * frac_scale
                g0 = gauss[kb]
                nz[u] = noise_dn * (g0 + f * (gauss[kb + np.uint64(1)] - g0))
        # shade map, rocks, output
        for u in range(w):
            zz = ZZ[cur, u]
            val = sky_dn
            if zz < np.inf:
                gc = min(max((PX[cur, u] - ox) * inv_cell - 0.5, 0.0), cols - 1.0)
                gr = min(max((PY[cur, u] - oy) * inv_cell - 0.5, 0.0), rows - 1.0)
                c0 = min(np.uint64(gc), np.uint64(cmax))
                r0 = min(np.uint64(gr), np.uint64(rmax))
                c1 = min(c0 + np.uint64(1), np.uint64(cols - 1))
                r1 = min(r0 + np.uint64(1), np.uint64(rows - 1))
                a = gc - np.float64(c0)
                b = gr - np.float64(r0)
                s00 = shade[r0, c0, 0]
                s01 = shade[r0, c1, 0]
                s10 = shade[r1, c0, 0]
                s11 = shade[r1, c1, 0]
                t0 = s00 + a * (s01 - s00)
                t1 = s10 + a * (s11 - s10)
                base = t0 + b * (t1 - t0)
                k00 = shade[r0, c0, 1]
                k01 = shade[r0, c1, 1]
                k10 = shade[r1, c0, 1]
                k11 = shade[r1, c1, 1]
                t0 = k00 + a * (k01 - k00)
                t1 = k10 + a * (k11 - k10)
                rock = t0 + b * (t1 - t0)
                d = det[u]
                d_rock = min(3.0 * abs(d), 1.0) - 0.6
                d = d + rock * (d_rock - d)
                con = contrast_soil + rock * (contrast_rock - contrast_soil)
                val = gain_dn * base * (1.0 + con * d)
                if want_depth:
                    depth[v, u] = zz
            elif want_depth:
                depth[v, u] = np.inf
            val = math.floor(val + nz[u] + 0.5)
            img[v, u] = np.uint8(min(max(val, 0.0), 255.0))
    return OK
