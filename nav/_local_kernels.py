"""Numba kernels of the local arc planner (wrapper: :mod:`nav.local_planner`, which documents the model).

Plain functions over arrays (STYLE.md): no classes, no logging, no tunables read from globals.
The module-level integers are status codes and slots of the per-candidate result rows, shared
with the wrapper; every tunable arrives as an argument.

Arrays (C-contiguous):

``cost``      float32 (rows, cols) traversal cost, ``inf`` = lethal (grid convention of
              :mod:`nav.terrain_map`: cell ``(r, c)`` spans ``[ox + c·cell, ox + (c+1)·cell)``).
``z``         float32 (rows, cols) heights, NaN = unknown; same grid as ``cost``.
``cand_xyt``  float64 (n, m, 3) body-frame samples ``(x, y, yaw)`` of every candidate (padded).
``cand_s``    float64 (n, m) path length at each sample; ``cand_w`` (n, m) its weight in the cost
              integral (trapezoid rule; 0 for the samples of a turn in place).
``cand_k``    float64 (n, m) curvature at each sample (sets the steering of steerable wheels);
              ``cand_turn`` uint8 (n, m) 1 for samples of a turn in place.
``cand_n``    int64 (n,) samples used per candidate.
``geo``       float64 (nc, 3) body-frame contact ``x, y`` (wheels left front to rear, right front
              to rear, then casters) and 1.0 for a steerable wheel.
``tri``, ``tri_inv``  int64 (t, 3), float64 (t, 9): a rigid chassis' support triples around the
              centre of mass and the inverse of ``[[1, x, y]]`` of each (rigid rovers only).
``belly``     float64 (mb, 2) body-frame belly sample points.
"""
import math

import numpy as np
from numba import njit, types

OK = 0
BAD_INPUT = 1

# candidate status after the cheap pass
FREE = 0
BLOCKED_HAZARD = 1      # the centre line crosses a lethal cell
BLOCKED_UNKNOWN = 2     # ... a lethal cell that is (or is next to) unknown terrain
OFF_MAP = 3             # ... leaves the cost grid
NO_ROUTE = 4            # free, but the cost-to-go at its end is infinite

# result of the body check
CHECK_OK = 0
CHECK_CLEARANCE = 1
CHECK_TILT = 2
CHECK_STEP = 3
CHECK_SUSPENSION = 4
CHECK_UNKNOWN = 5

KIND_ROCKER_BOGIE = 0
KIND_RIGID = 1

# columns of the body-check result rows (float64 (k, N_CHK))
(C_STATUS, C_FAIL_S, C_FAIL_VALUE, C_VERIFIED_S, C_MIN_CLEAR, C_MAX_TILT, C_MAX_STEP, C_MAX_ROCKER,
 C_MAX_BOGIE, C_FAIL_X, C_FAIL_Y, C_N_POSES) = range(12)
N_CHK = 12

# body-check scalar parameters (float64 (N_PRM,))
(P_RADIUS, P_BELLY, P_MAX_TILT, P_TIP_ROLL, P_TIP_PITCH, P_MARGIN, P_CLIMB, P_MAX_ROCKER, P_MAX_BOGIE,
 P_UNKNOWN_BELLY) = range(10)
N_PRM = 10

_NAN = math.nan
_INF = math.inf

_F64 = types.float64
_I64 = types.int64
_Z = types.Array(types.float32, 2, "C", readonly=True)
_G = types.Array(types.float64, 2, "C", readonly=True)
_F = types.float64[::1]
_F2 = types.float64[:, ::1]
_F3 = types.Array(types.float64, 3, "C", readonly=True)
_RF2 = types.Array(types.float64, 2, "C", readonly=True)
_RF = types.Array(types.float64, 1, "C", readonly=True)
_RI = types.Array(types.int64, 1, "C", readonly=True)
_RI2 = types.Array(types.int64, 2, "C", readonly=True)
_RU2 = types.Array(types.uint8, 2, "C", readonly=True)
_I = types.int64[::1]
_OPTS = dict(cache=True, nogil=True, error_model="numpy")


# ----------------------------------------------------------------------------- sampling
@njit(_F64(_Z, _F64, _F64, _F64, _F64, _F64), **_OPTS)
def _height_at(z, ox, oy, cell, x, y):
    """Bilinear height between cell centres, clamped at the border; NaN outside the map or next to
    an unknown cell (the rule of ``TerrainMap.height_at``, which the simulator settles on too)."""
    rows = z.shape[0]
    cols = z.shape[1]
    gx = (x - ox) / cell
    gy = (y - oy) / cell
    if not (gx >= 0.0 and gx < cols and gy >= 0.0 and gy < rows):
        return _NAN
    cf = min(max(gx - 0.5, 0.0), cols - 1.0)
    rf = min(max(gy - 0.5, 0.0), rows - 1.0)
    c0 = min(int(cf), max(cols - 2, 0))
    r0 = min(int(rf), max(rows - 2, 0))
    c1 = min(c0 + 1, cols - 1)
    r1 = min(r0 + 1, rows - 1)
    tc = cf - c0
    tr = rf - r0
    return (np.float64(z[r0, c0]) * (1.0 - tr) * (1.0 - tc) + np.float64(z[r0, c1]) * (1.0 - tr) * tc
            + np.float64(z[r1, c0]) * tr * (1.0 - tc) + np.float64(z[r1, c1]) * tr * tc)


@njit(types.void(_G, _F64, _F64, _F64, _RF2, _F), **_OPTS)
def _sample_field(g, ox, oy, cell, xy, out):
    """Bilinear interpolation of a float64 field (cost-to-go) at world points, over the finite
    corners only (weights renormalised; ``inf`` when all four are infinite or the point is off the grid)."""
    rows = g.shape[0]
    cols = g.shape[1]
    for i in range(xy.shape[0]):
        gx = (xy[i, 0] - ox) / cell
        gy = (xy[i, 1] - oy) / cell
        if not (gx >= 0.0 and gx < cols and gy >= 0.0 and gy < rows):
            out[i] = _INF
            continue
        cf = min(max(gx - 0.5, 0.0), cols - 1.0)
        rf = min(max(gy - 0.5, 0.0), rows - 1.0)
        c0 = min(int(cf), max(cols - 2, 0))
        r0 = min(int(rf), max(rows - 2, 0))
        c1 = min(c0 + 1, cols - 1)
        r1 = min(r0 + 1, rows - 1)
        tc = cf - c0
        tr = rf - r0
        acc = 0.0
        wsum = 0.0
        for k in range(4):
            rr = r0 if k < 2 else r1
            cc = c0 if (k & 1) == 0 else c1
            w = (1.0 - tr if k < 2 else tr) * (1.0 - tc if (k & 1) == 0 else tc)
            v = g[rr, cc]
            if w > 0.0 and v < _INF:
                acc += w * v
                wsum += w
        out[i] = acc / wsum if wsum > 0.0 else _INF


@njit(types.boolean(_Z, _I64, _I64, _I64), **_OPTS)
def _unknown_near(z, r, c, radius_cells):
    """Whether an unknown (NaN) height lies within ``radius_cells`` (Chebyshev) of cell ``(r, c)``."""
    rows = z.shape[0]
    cols = z.shape[1]
    for rr in range(max(r - radius_cells, 0), min(r + radius_cells + 1, rows)):
        for cc in range(max(c - radius_cells, 0), min(c + radius_cells + 1, cols)):
            if z[rr, cc] != z[rr, cc]:
                return True
    return False


# ----------------------------------------------------------------------------- cheap pass
@njit(_I64(_Z, _Z, _RU2, _F64, _F64, _F64, _F64, _F64, _F64, _F3, _F3, _RF2, _RF2, _RI, _RF, _F64, _I64, _F64,
           types.boolean, _I64, _RF2, _F64, _RF, _RF, _RF, _F64, _F64, _I, _F, _F, _F), **_OPTS)
def _score_candidates(cost, z, reason, ox, oy, cell, px, py, pyaw, cand_xyt, cand_cs, cand_s, cand_w, cand_n, lateral,
                      side_cost, unknown_radius_cells, edge_cells, escape, margin_flag, clear, clear0, ctg_end, extra,
                      heading_term, w_cost, w_ctg, out_status, out_block_s, out_cost, out_score):
    """Cost integral along each candidate's swept footprint and its score, for all candidates.

    ``cand_cs`` (n, m, 2) holds ``cos, sin`` of each sample's body-frame yaw (no trigonometry per
    sample). At every sample the footprint cost is the mean, over the body-frame lateral offsets
    ``lateral`` (the centre and the wheel tracks), of the cell cost under that point; a lateral
    point on a lethal cell or off the grid counts ``side_cost``. A lethal (or off-grid) cell under
    the *centre* blocks the candidate (the cost grid is the configuration space: lethal cells are
    inflated by the rover's half width), and so does a centre within ``edge_cells`` of the grid's edge
    (``OFF_MAP``: what lies beyond is unknown, as if inflated). With ``escape`` (the rover starts in a
    margin) a candidate may cross the edge margin and cells whose ``reason`` is exactly
    ``margin_flag`` (lethal only by inflation) until its centre first reaches a free cell, but only
    margin cells at least ``clear0`` from every cell lethal in its own right (``clear``: that distance
    per cell, on ``cost``'s grid; read only with ``escape``): an escape never closes in on a hazard.
    ``out_cost = Σ w_i · footprint cost_i`` (cost·m) and, for free candidates,
    ``out_score = w_cost · out_cost + w_ctg · ctg_end + extra + heading_term`` (``inf`` otherwise,
    status ``NO_ROUTE`` when only the cost-to-go is infinite). ``out_block_s`` is the path length
    at the blocking sample (``inf`` when free).
    """
    n = cand_xyt.shape[0]
    rows = cost.shape[0]
    cols = cost.shape[1]
    nl = lateral.shape[0]
    c0 = math.cos(pyaw)
    s0 = math.sin(pyaw)
    inv_nl = 1.0 / nl
    for i in range(n):
        status = FREE
        block_s = _INF
        acc = 0.0
        escaping = escape
        for j in range(cand_n[i]):
            bx = cand_xyt[i, j, 0]
            by = cand_xyt[i, j, 1]
            wx = px + c0 * bx - s0 * by
            wy = py + s0 * bx + c0 * by
            gx = (wx - ox) / cell
            gy = (wy - oy) / cell
            if not (gx >= 0.0 and gx < cols and gy >= 0.0 and gy < rows):
                status = OFF_MAP
                block_s = cand_s[i, j]
                break
            r = int(gy)
            c = int(gx)
            near_edge = not (gx >= edge_cells and gx <= cols - edge_cells and gy >= edge_cells
                             and gy <= rows - edge_cells)
            lethal = not (cost[r, c] < _INF)
            if lethal or near_edge:
                if not (escaping and (not lethal or (reason[r, c] == margin_flag and clear[r, c] >= clear0))):
                    if lethal:
                        status = BLOCKED_UNKNOWN if _unknown_near(z, r, c, unknown_radius_cells) else BLOCKED_HAZARD
                    else:
                        status = OFF_MAP
                    block_s = cand_s[i, j]
                    break
            else:
                escaping = False
            w = cand_w[i, j]
            if w == 0.0:
                continue
            ct = c0 * cand_cs[i, j, 0] - s0 * cand_cs[i, j, 1]       # cos, sin of the world yaw
            st = s0 * cand_cs[i, j, 0] + c0 * cand_cs[i, j, 1]
            fp = 0.0
            for k in range(nl):
                lx = wx - st * lateral[k]
                ly = wy + ct * lateral[k]
                qx = (lx - ox) / cell
                qy = (ly - oy) / cell
                if qx >= 0.0 and qx < cols and qy >= 0.0 and qy < rows:
                    v = np.float64(cost[int(qy), int(qx)])
                    fp += v if v < _INF else side_cost
                else:
                    fp += side_cost
            acc += w * fp * inv_nl
        out_status[i] = status
        out_block_s[i] = block_s
        out_cost[i] = acc if status == FREE else _INF
        if status == FREE and not (ctg_end[i] < _INF):
            out_status[i] = NO_ROUTE
        if out_status[i] == FREE:
            out_score[i] = w_cost * acc + w_ctg * ctg_end[i] + extra[i] + heading_term[i]
        else:
            out_score[i] = _INF
    return OK


# ----------------------------------------------------------------------------- body check
@njit(types.UniTuple(_F64, 3)(_F, _RI2, _RF2, _I64, _F64), inline="always", **_OPTS)
def _facet_plane(zc, tri, tri_inv, t, zref):
    """Plane ``z - zref = p0 + p1 x + p2 y`` through the three contacts of support facet ``t``."""
    za = zc[tri[t, 0]] - zref
    zb = zc[tri[t, 1]] - zref
    zcc = zc[tri[t, 2]] - zref
    return (tri_inv[t, 0] * za + tri_inv[t, 1] * zb + tri_inv[t, 2] * zcc,
            tri_inv[t, 3] * za + tri_inv[t, 4] * zb + tri_inv[t, 5] * zcc,
            tri_inv[t, 6] * za + tri_inv[t, 7] * zb + tri_inv[t, 8] * zcc)


@njit(_I64(_Z, _F64, _F64, _F64, _RF2, _I64, _RI2, _RF2, _RF2, _I64, _RF, _F64, _F64, _F64, _F64,
           _I64, _F, _F, _F), **_OPTS)
def _settle_body(z, ox, oy, cell, geo, kind, tri, tri_inv, belly, n_env, prm, x, y, yaw, kappa, turning,
                 zc, step, out):
    """Settle the rover at ``(x, y, yaw)`` on the height map, the simulator's model.

    Each contact sits on the envelope of the ground along its heading (body yaw plus the steering
    a steerable wheel takes on an arc of curvature ``kappa``, or for a turn in place), sampled at
    ``2 n_env + 1`` points over one wheel radius. A rocker-bogie averages its two rockers' slopes
    into the body pitch and takes the roll from the two rocker pivots; a rigid chassis rests on the
    support facet above its centre of mass (the most level one on ties). ``step[i]`` is the rise
    under wheel ``i``'s rim ahead of its axle along its direction of travel (both ways when turning).

    ``out``: ``z0, sx, sy, clearance, clx, cly, rocker, bogie`` (body plane ``z0 + sx x' + sy y'`` in
    yaw-aligned coordinates; belly clearance along the body normal; the largest rocker and bogie
    angles from the body plane, rocker-bogie only). Returns 0, 1 when a contact or a wheel
    envelope sample is over unknown terrain or off the map, 2 when too much of the belly is.
    """
    r = prm[P_RADIUS]
    nc = geo.shape[0]
    c = math.cos(yaw)
    s = math.sin(yaw)
    for i in range(nc):
        bx = geo[i, 0]
        by = geo[i, 1]
        cx = x + c * bx - s * by
        cy = y + s * bx + c * by
        h0 = _height_at(z, ox, oy, cell, cx, cy)
        if h0 != h0:
            return 1
        a = yaw
        both = turning != 0
        flipped = False
        if geo[i, 2] != 0.0:
            if turning != 0:
                ux = -by
                uy = bx
            else:
                ux = 1.0 - kappa * by
                uy = kappa * bx
            if ux * ux + uy * uy > 1e-18:
                ang = math.atan2(uy, ux)
                if ang > 0.5 * math.pi + 1e-9:       # the wheel drives backwards instead
                    ang -= math.pi
                    flipped = True
                elif ang < -0.5 * math.pi - 1e-9:
                    ang += math.pi
                    flipped = True
                a = yaw + ang
        ux = math.cos(a)
        uy = math.sin(a)
        env = h0
        fwd = -_INF
        bwd = -_INF
        for k in range(1, n_env + 1):
            d = r * (k / n_env)
            drop = r - math.sqrt(max(r * r - d * d, 0.0))
            hf = _height_at(z, ox, oy, cell, cx + d * ux, cy + d * uy)
            hb = _height_at(z, ox, oy, cell, cx - d * ux, cy - d * uy)
            if hf != hf or hb != hb:
                return 1
            env = max(env, max(hf, hb) - drop)
            fwd = max(fwd, hf)
            bwd = max(bwd, hb)
        zc[i] = env
        if both:
            step[i] = max(fwd, bwd) - h0
        elif flipped:
            step[i] = bwd - h0
        else:
            step[i] = fwd - h0

    rocker = 0.0
    bogie = 0.0
    if kind == KIND_ROCKER_BOGIE:
        slope_sum = 0.0
        zp_l = 0.0
        zp_r = 0.0
        sl_l = 0.0
        sl_r = 0.0
        for side in range(2):
            f = 3 * side
            xb = 0.5 * (geo[f + 1, 0] + geo[f + 2, 0])
            zb = 0.5 * (zc[f + 1] + zc[f + 2])
            sl = (zb - zc[f]) / (xb - geo[f, 0])
            zp = zc[f] + (0.0 - geo[f, 0]) * sl
            slope_sum += sl
            if side == 0:
                zp_l = zp
                sl_l = sl
            else:
                zp_r = zp
                sl_r = sl
        sx = 0.5 * slope_sum
        sy = (zp_l - zp_r) / (geo[0, 1] - geo[3, 1])
        z0 = zp_r + (0.0 - geo[3, 1]) * sy
        body_pitch = math.atan(sx)
        rocker = max(abs(math.atan(sl_l) - body_pitch), abs(math.atan(sl_r) - body_pitch))
        for side in range(2):
            f = 3 * side
            bsl = (zc[f + 2] - zc[f + 1]) / (geo[f + 2, 0] - geo[f + 1, 0])
            rsl = sl_l if side == 0 else sl_r
            bogie = max(bogie, abs(math.atan(bsl) - math.atan(rsl)))
    else:
        best = -1
        best_lvl = _INF
        b0 = 0.0
        b1 = 0.0
        b2 = 0.0
        zref = zc[0]
        for t in range(tri.shape[0]):
            p0, p1, p2 = _facet_plane(zc, tri, tri_inv, t, zref)
            ok = True
            for j in range(nc):
                if zc[j] - zref > p0 + p1 * geo[j, 0] + p2 * geo[j, 1] + 1e-9:
                    ok = False
                    break
            if ok:
                lvl = p1 * p1 + p2 * p2
                if lvl < best_lvl * (1.0 - 1e-9) - 1e-15:
                    best = t
                    best_lvl = lvl
                    b0 = p0
                    b1 = p1
                    b2 = p2
        if best < 0:       # rounding left no supporting facet: the highest one above the CG
            best_h = -_INF
            for t in range(tri.shape[0]):
                p0, p1, p2 = _facet_plane(zc, tri, tri_inv, t, zref)
                if p0 > best_h:
                    best_h = p0
                    b0 = p0
                    b1 = p1
                    b2 = p2
        sx = b1
        sy = b2
        z0 = b0 + zref

    nz = 1.0 / math.sqrt(1.0 + sx * sx + sy * sy)
    clear = _INF
    clx = x
    cly = y
    n_unknown = 0
    for j in range(belly.shape[0]):
        bx = belly[j, 0]
        by = belly[j, 1]
        qx = x + c * bx - s * by
        qy = y + s * bx + c * by
        h = _height_at(z, ox, oy, cell, qx, qy)
        if h == h:
            cl = (z0 + sx * bx + sy * by - h) * nz
            if cl < clear:
                clear = cl
                clx = qx
                cly = qy
        else:
            n_unknown += 1
    if n_unknown > prm[P_UNKNOWN_BELLY] * belly.shape[0]:
        return 2
    if clear == _INF:
        clear = 0.0
    out[0] = z0
    out[1] = sx
    out[2] = sy
    out[3] = clear + prm[P_BELLY]
    out[4] = clx
    out[5] = cly
    out[6] = rocker
    out[7] = bogie
    return 0


@njit(_I64(_Z, _F64, _F64, _F64, _F64, _F64, _F64, _F3, _RF2, _RF2, _RU2, _RI, _RI, _I64, _RF2, _I64,
           _RI2, _RF2, _RF2, _I64, _RF, _F2), **_OPTS)
def _check_candidates(z, ox, oy, cell, px, py, pyaw, cand_xyt, cand_s, cand_k, cand_turn, cand_n, sel,
                      stride, geo, kind, tri, tri_inv, belly, n_env, prm, out):
    """The expensive body check of candidates ``sel``: settle the rover at every ``stride``-th sample
    (and the last) and stop at the first pose that breaks a limit.

    A pose fails on (in this order) unknown terrain under a contact or too much of the belly
    (``CHECK_UNKNOWN``), tilt above ``P_MAX_TILT`` or roll / pitch beyond the static tip limits
    (``CHECK_TILT``), belly clearance below ``P_MARGIN`` (``CHECK_CLEARANCE``), a wheel driving into a
    rise above ``P_CLIMB`` (``CHECK_STEP``), and rocker or bogie articulation beyond its limit
    (``CHECK_SUSPENSION``, skipped when the limit is not finite). ``out[q]`` gets the row of
    ``C_*`` values for candidate ``sel[q]``: status, path length and value (tilt / clearance / step /
    angle, radians for angles) at the failing pose and its world ``x, y``, the length verified
    before it, and the extremes over the poses checked.
    """
    nc = geo.shape[0]
    zc = np.empty(nc)
    step = np.empty(nc)
    res = np.empty(8)
    c0 = math.cos(pyaw)
    s0 = math.sin(pyaw)
    max_tilt = prm[P_MAX_TILT]
    tip_roll = prm[P_TIP_ROLL]
    tip_pitch = prm[P_TIP_PITCH]
    margin = prm[P_MARGIN]
    climb = prm[P_CLIMB]
    max_rocker = prm[P_MAX_ROCKER]
    max_bogie = prm[P_MAX_BOGIE]
    if stride < 1:
        return BAD_INPUT
    for q in range(sel.shape[0]):
        i = sel[q]
        status = CHECK_OK
        fail_s = _INF
        fail_v = _NAN
        fx = _NAN
        fy = _NAN
        verified = 0.0
        min_clear = _INF
        max_t = 0.0
        max_st = -_INF
        max_r = 0.0
        max_b = 0.0
        n_poses = 0
        nj = cand_n[i]
        j = 0
        while j < nj:
            bx = cand_xyt[i, j, 0]
            by = cand_xyt[i, j, 1]
            wx = px + c0 * bx - s0 * by
            wy = py + s0 * bx + c0 * by
            yaw = pyaw + cand_xyt[i, j, 2]
            turning = np.int64(cand_turn[i, j])
            rc = _settle_body(z, ox, oy, cell, geo, kind, tri, tri_inv, belly, n_env, prm, wx, wy, yaw,
                              cand_k[i, j], turning, zc, step, res)
            n_poses += 1
            s_here = cand_s[i, j]
            if rc != 0:
                status = CHECK_UNKNOWN
                fail_s = s_here
                fx = wx
                fy = wy
                break
            sx = res[1]
            sy = res[2]
            tilt = math.atan(math.sqrt(sx * sx + sy * sy))
            pitch = -math.atan(sx)
            roll = math.atan(sy * math.cos(pitch))
            clear = res[3]
            st_max = -_INF
            for w in range(nc):
                st_max = max(st_max, step[w])
            max_t = max(max_t, tilt)
            min_clear = min(min_clear, clear)
            max_st = max(max_st, st_max)
            max_r = max(max_r, res[6])
            max_b = max(max_b, res[7])
            if tilt > max_tilt or abs(roll) > tip_roll or abs(pitch) > tip_pitch:
                status = CHECK_TILT
                fail_v = tilt
            elif clear < margin:
                status = CHECK_CLEARANCE
                fail_v = clear
                wx = res[4]
                wy = res[5]
            elif st_max > climb:
                status = CHECK_STEP
                fail_v = st_max
            elif res[6] > max_rocker:
                status = CHECK_SUSPENSION
                fail_v = res[6]
            elif res[7] > max_bogie:
                status = CHECK_SUSPENSION
                fail_v = res[7]
            if status != CHECK_OK:
                fail_s = s_here
                fx = wx
                fy = wy
                break
            verified = s_here
            if j == nj - 1:
                break
            j = min(j + stride, nj - 1)
        out[q, C_STATUS] = status
        out[q, C_FAIL_S] = fail_s
        out[q, C_FAIL_VALUE] = fail_v
        out[q, C_VERIFIED_S] = verified
        out[q, C_MIN_CLEAR] = min_clear
        out[q, C_MAX_TILT] = max_t
        out[q, C_MAX_STEP] = max_st
        out[q, C_MAX_ROCKER] = max_r
        out[q, C_MAX_BOGIE] = max_b
        out[q, C_FAIL_X] = fx
        out[q, C_FAIL_Y] = fy
        out[q, C_N_POSES] = n_poses
    return OK


@njit(_I64(_Z, _F64, _F64, _F64, _RF2, _I64, _RI2, _RF2, _RF2, _I64, _RF, _RF2, _F2), **_OPTS)
def _settle_poses(z, ox, oy, cell, geo, kind, tri, tri_inv, belly, n_env, prm, poses, out):
    """Settle the rover at each world pose ``(x, y, yaw, kappa)`` of ``poses`` (straight-ahead
    steering when ``kappa`` is 0): ``out[i] = z0, sx, sy, clearance, tilt, roll, pitch, max step,
    rocker, bogie, status`` (status 0 settled, 1 unknown contact, 2 unknown belly; NaN values
    when not settled)."""
    nc = geo.shape[0]
    zc = np.empty(nc)
    step = np.empty(nc)
    res = np.empty(8)
    for i in range(poses.shape[0]):
        rc = _settle_body(z, ox, oy, cell, geo, kind, tri, tri_inv, belly, n_env, prm, poses[i, 0],
                          poses[i, 1], poses[i, 2], poses[i, 3], 0, zc, step, res)
        if rc != 0:
            for k in range(10):
                out[i, k] = _NAN
            out[i, 10] = rc
            continue
        sx = res[1]
        sy = res[2]
        pitch = -math.atan(sx)
        st_max = -_INF
        for w in range(nc):
            st_max = max(st_max, step[w])
        out[i, 0] = res[0]
        out[i, 1] = sx
        out[i, 2] = sy
        out[i, 3] = res[3]
        out[i, 4] = math.atan(math.sqrt(sx * sx + sy * sy))
        out[i, 5] = math.atan(sy * math.cos(pitch))
        out[i, 6] = pitch
        out[i, 7] = st_max
        out[i, 8] = res[6]
        out[i, 9] = res[7]
        out[i, 10] = 0.0
    return OK
