"""Numba kernels for Field D* (see :mod:`nav.field_dstar` for the model).

Nodes sit at cell centres (integer row/col). Neighbour directions, counter-clockwise
with rows growing north: 0 E, 1 NE, 2 N, 3 NW, 4 W, 5 SW, 6 S, 7 SE (even =
orthogonal). The *octant edge* ``e`` of a node ``s`` joins direction ``e`` and
``e + 1``; of its two end nodes ``s1`` is the orthogonal one and ``s2`` the
diagonal one, and ``s3 = s + (s2 - s1)`` completes the *dual cell*
``(s, s1, s2, s3)`` (the unit square between four cell centres).

Plain functions over arrays; they import only numpy/numba/math and return int
status codes.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from ._astar_kernels import _lattice_bound

SQRT2 = math.sqrt(2.0)
_DR = np.array([0, 1, 1, 1, 0, -1, -1, -1], dtype=np.int64)
_DC = np.array([1, 1, 0, -1, -1, -1, 0, 1], dtype=np.int64)

# _search_values status codes
FOUND = 0        # the start was expanded: g[start] is final
CHUNK_DONE = 1   # max_pops expansions done, call again
EXHAUSTED = 2    # the open list ran empty: start unreachable

# _extract_polyline status codes (negative; >= 1 is the number of points written)
BUFFER_FULL = -1
STUCK = -2        # no candidate from the current point lowers the cost-to-go estimate


@njit("float64(float32[:, ::1], int64, int64)", cache=True)
def _dual_cost(cost, r0, c0):
    """Mean cost of the dual cell with lower-left node (r0, c0); inf if lethal or outside.

    The corners are summed in one fixed order so every caller gets the same bits.
    """
    if r0 < 0 or c0 < 0 or r0 + 1 >= cost.shape[0] or c0 + 1 >= cost.shape[1]:
        return np.inf
    a00 = np.float64(cost[r0, c0])
    a01 = np.float64(cost[r0, c0 + 1])
    a10 = np.float64(cost[r0 + 1, c0])
    a11 = np.float64(cost[r0 + 1, c0 + 1])
    return ((a00 + a01) + (a10 + a11)) * 0.25


@njit("float64(float64, float64, float64, float64, float64, float64, float64, int64)", cache=True)
def _edge_value(cu, c1, c2, c3, cd, g1, g2, interp):
    """Best cost-to-goal of node ``s`` through one octant edge (s1, s2).

    ``cu, c1, c2, c3`` are the costs of s, s1, s2, s3 (inf = lethal), ``cd`` the
    dual-cell cost, ``g1, g2`` the current values of s1 and s2. Candidates:
    (a) axial move to s1, (b) diagonal move to s2 (no corner cut), and with
    ``interp``: (c) straight to a point at y in [0, 1] on edge s1-s2 through the
    dual cell, min of ``cd*sqrt(1+y^2) + (1-y)*g1 + y*g2``, and (d) along s-s1
    for x then straight to s2, min of ``b*x + cd*sqrt((1-x)^2+1) + g2``.
    Both minimisations are closed form over the closed interval (infimum).
    """
    best = np.inf
    if c1 < np.inf and g1 < np.inf:
        v = 0.5 * (cu + c1) + g1
        if v < best:
            best = v
    if g2 < np.inf and c2 < np.inf and c1 < np.inf and c3 < np.inf:
        v = SQRT2 * 0.5 * (cu + c2) + g2
        if v < best:
            best = v
    if interp != 0 and cd < np.inf:
        if g1 < np.inf or g2 < np.inf:
            if g2 == np.inf:
                v = cd + g1                      # y = 0
            elif g1 == np.inf:
                v = cd * SQRT2 + g2              # y = 1
            else:
                d = g1 - g2
                if d <= 0.0:
                    v = cd + g1
                elif 2.0 * d * d >= cd * cd:
                    v = cd * SQRT2 + g2
                else:                            # y = d / sqrt(cd^2 - d^2)
                    v = g1 + math.sqrt(cd * cd - d * d)
            if v < best:
                best = v
        if g2 < np.inf:
            b = 0.5 * (cu + c1)
            if 2.0 * b * b < cd * cd:            # interior x = 1 - b / sqrt(cd^2 - b^2)
                v = b + math.sqrt(cd * cd - b * b) + g2
                if v < best:
                    best = v
    return best


@njit("int64(float32[:, ::1], float64[::1], int64[::1], float64[::1], int64[::1], int64[::1], "
      "int64, int64, float64, float64[::1], int64, float64[::1], int64, int64)", cache=True)
def _search_values(cost, g, heap_node, heap_key, pos, counters, start_r, start_c, h_scale, lattice,
                   block_shift, lattice_start, interp, max_pops):
    """Backward best-first search from the goal; resumable in chunks.

    State (all preallocated by the caller, flat index ``r * cols + c``):
    ``g`` cost-to-goal (inf = unknown), an indexed binary min-heap
    ``heap_node[:size]``/``heap_key[:size]`` ordered by ``g + h`` (ties: larger g
    first), ``pos`` (heap index, -1 never queued, -2 expanded) and ``counters``
    = [heap size, expansions, re-expansions]. ``h`` is the larger of
    ``h_scale * octile distance`` to the start (``h_scale`` = min cost keeps the
    discrete search consistent, min cost / sqrt(2) the interpolated one) and,
    unless ``lattice`` is empty, the three corner-lattice bounds: bilinear
    interpolation of ``lattice`` (row-major ``(LH, LW, 3)`` potentials on the
    corners of ``2**block_shift`` blocks, already scaled for the metric) minus
    ``lattice_start`` (their value at the start). See :mod:`nav.field_dstar`
    for why both are consistent. A node whose value drops after expansion is
    queued again. Expands at most ``max_pops`` nodes; returns FOUND,
    CHUNK_DONE or EXHAUSTED.
    """
    rows = cost.shape[0]
    cols = cost.shape[1]
    start = start_r * cols + start_c
    use_lattice = lattice.size > 0
    lat_w = ((cols + (1 << block_shift) - 1) >> block_shift) + 1
    size = counters[0]
    pops = 0
    while size > 0:
        if pops >= max_pops:
            counters[0] = size
            return CHUNK_DONE
        # pop the minimum
        n = heap_node[0]
        pos[n] = -2
        size -= 1
        if size > 0:
            ln = heap_node[size]
            lk = heap_key[size]
            lg = g[ln]
            i = 0
            while True:
                ch = 2 * i + 1
                if ch >= size:
                    break
                if ch + 1 < size:
                    k1 = heap_key[ch]
                    k2 = heap_key[ch + 1]
                    if k2 < k1 or (k2 == k1 and g[heap_node[ch + 1]] > g[heap_node[ch]]):
                        ch += 1
                kc = heap_key[ch]
                if kc < lk or (kc == lk and g[heap_node[ch]] > lg):
                    heap_node[i] = heap_node[ch]
                    heap_key[i] = kc
                    pos[heap_node[i]] = i
                    i = ch
                else:
                    break
            heap_node[i] = ln
            heap_key[i] = lk
            pos[ln] = i
        pops += 1
        counters[1] += 1
        if n == start:
            counters[0] = size
            return FOUND
        r = n // cols
        c = n - r * cols
        gn = g[n]
        for k in range(8):
            ur = r + _DR[k]
            uc = c + _DC[k]
            if ur < 0 or uc < 0 or ur >= rows or uc >= cols:
                continue
            u = ur * cols + uc
            gu = g[u]
            if gu <= gn:   # every candidate through n costs more than g[n]
                continue
            cu = np.float64(cost[ur, uc])
            if cu == np.inf:
                continue
            j = (k + 4) & 7   # direction from u to n
            best = gu
            for e0 in range(j + 7, j + 9):
                e = e0 & 7
                if e & 1:
                    o = (e + 1) & 7
                    q = e
                else:
                    o = e
                    q = (e + 1) & 7
                s1r = ur + _DR[o]
                s1c = uc + _DC[o]
                s2r = ur + _DR[q]
                s2c = uc + _DC[q]
                s3r = ur + (s2r - s1r)
                s3c = uc + (s2c - s1c)
                if s1r < 0 or s1c < 0 or s1r >= rows or s1c >= cols:
                    c1 = np.inf
                    g1 = np.inf
                else:
                    c1 = np.float64(cost[s1r, s1c])
                    g1 = g[s1r * cols + s1c]
                if s2r < 0 or s2c < 0 or s2r >= rows or s2c >= cols:
                    c2 = np.inf
                    g2 = np.inf
                else:
                    c2 = np.float64(cost[s2r, s2c])
                    g2 = g[s2r * cols + s2c]
                if s3r < 0 or s3c < 0 or s3r >= rows or s3c >= cols:
                    c3 = np.inf
                else:
                    c3 = np.float64(cost[s3r, s3c])
                cd = np.inf
                if interp != 0:
                    cd = _dual_cost(cost, min(ur, s2r), min(uc, s2c))
                v = _edge_value(cu, c1, c2, c3, cd, g1, g2, interp)
                if v < best:
                    best = v
            if best < gu:
                g[u] = best
                dr = abs(ur - start_r)
                dc = abs(uc - start_c)
                h = h_scale * (max(dr, dc) + (SQRT2 - 1.0) * min(dr, dc))
                if use_lattice:
                    hl = _lattice_bound(lattice, lat_w, block_shift, ur, uc, lattice_start, False)
                    if hl > h:
                        h = hl
                key = best + h
                i = pos[u]
                if i < 0:
                    if i == -2:
                        counters[2] += 1
                    i = size
                    size += 1
                # sift up from i (decrease-key or insert)
                while i > 0:
                    par = (i - 1) >> 1
                    kp = heap_key[par]
                    if key < kp or (key == kp and best > g[heap_node[par]]):
                        heap_node[i] = heap_node[par]
                        heap_key[i] = kp
                        pos[heap_node[i]] = i
                        i = par
                    else:
                        break
                heap_node[i] = u
                heap_key[i] = key
                pos[u] = i
    counters[0] = size
    return EXHAUSTED


@njit("int64(float32[:, ::1], float64[::1], int64, int64, int64, int64, int64, float64[:, ::1])",
      cache=True)
def _extract_polyline(cost, g, start_r, start_c, goal_r, goal_c, interp, out_rcf):
    """Greedy descent of ``g`` from the start to the goal, writing vertices to ``out_rcf``.

    From a node: the 8 A* moves, and with ``interp`` straight segments into the
    four dual cells to interior points of their far edges and the "along an
    edge for x, then to the diagonal node" move. From a point on a dual-cell
    edge: slide to either end node, or cross one of the two adjacent dual cells
    to a corner or to an interior point of another of its edges. Each
    candidate is valued at its *actual* segment cost plus the (interpolated)
    cost-to-go of the point reached; the cheapest among those that strictly
    lower the cost-to-go estimate is taken (so the descent cannot loop).
    Returns the number of points written, or BUFFER_FULL or STUCK.
    """
    rows = cost.shape[0]
    cols = cost.shape[1]
    cap = out_rcf.shape[0]
    kind = 0
    ir = start_r
    ic = start_c
    t = 0.0
    out_rcf[0, 0] = start_r
    out_rcf[0, 1] = start_c
    n = 1
    cur = g[start_r * cols + start_c]
    while True:
        if kind == 0 and ir == goal_r and ic == goal_c:
            return n
        if n + 2 > cap:
            return BUFFER_FULL
        if kind == 0:
            pr = np.float64(ir)
            pc = np.float64(ic)
        elif kind == 1:
            pr = np.float64(ir)
            pc = ic + t
        else:
            pr = ir + t
            pc = np.float64(ic)
        best = np.inf
        bk = 0
        br = 0
        bc = 0
        bt = 0.0
        bg = np.inf
        has_mid = False
        mid_r = 0.0
        mid_c = 0.0
        if kind == 0:
            cu = np.float64(cost[ir, ic])
            for k in range(8):
                nr = ir + _DR[k]
                nc = ic + _DC[k]
                if nr < 0 or nc < 0 or nr >= rows or nc >= cols:
                    continue
                cn = np.float64(cost[nr, nc])
                gn = g[nr * cols + nc]
                if cn == np.inf or gn == np.inf:
                    continue
                if k & 1:
                    if cost[ir, nc] == np.inf or cost[nr, ic] == np.inf:
                        continue
                    v = SQRT2 * 0.5 * (cu + cn) + gn
                else:
                    v = 0.5 * (cu + cn) + gn
                if v < best and gn < cur:
                    best = v
                    bk = 0
                    br = nr
                    bc = nc
                    bt = 0.0
                    bg = gn
                    has_mid = False
            if interp != 0:
                # along the edge s-s1 for x, then straight to s2 through the dual cell
                for e in range(8):
                    if e & 1:
                        o = (e + 1) & 7
                        q = e
                    else:
                        o = e
                        q = (e + 1) & 7
                    s1r = ir + _DR[o]
                    s1c = ic + _DC[o]
                    s2r = ir + _DR[q]
                    s2c = ic + _DC[q]
                    cd = _dual_cost(cost, min(ir, s2r), min(ic, s2c))
                    if cd == np.inf:
                        continue
                    g2 = g[s2r * cols + s2c]
                    if g2 == np.inf:
                        continue
                    b = 0.5 * (cu + np.float64(cost[s1r, s1c]))
                    if not (2.0 * b * b < cd * cd):
                        continue
                    uu = b / math.sqrt(cd * cd - b * b)
                    x = 1.0 - uu
                    if not (0.0 < x < 1.0):
                        continue
                    v = b * x + cd * math.sqrt(uu * uu + 1.0) + g2
                    if v < best and g2 < cur:
                        best = v
                        bk = 0
                        br = s2r
                        bc = s2c
                        bt = 0.0
                        bg = g2
                        has_mid = True
                        mid_r = ir + x * _DR[o]
                        mid_c = ic + x * _DC[o]
        else:
            # slide along the edge the point lies on
            ar = ir
            ac = ic
            if kind == 1:
                er = ir
                ec = ic + 1
            else:
                er = ir + 1
                ec = ic
            be = 0.5 * (np.float64(cost[ar, ac]) + np.float64(cost[er, ec]))
            ga = g[ar * cols + ac]
            gb = g[er * cols + ec]
            if ga < np.inf:
                v = be * t + ga
                if v < best and ga < cur:
                    best = v
                    bk = 0
                    br = ar
                    bc = ac
                    bt = 0.0
                    bg = ga
            if gb < np.inf:
                v = be * (1.0 - t) + gb
                if v < best and gb < cur:
                    best = v
                    bk = 0
                    br = er
                    bc = ec
                    bt = 0.0
                    bg = gb
        if interp != 0:
            # dual cells touching the point
            if kind == 0:
                r_lo = ir - 1
                r_hi = ir
                c_lo = ic - 1
                c_hi = ic
            elif kind == 1:
                r_lo = ir - 1
                r_hi = ir
                c_lo = ic
                c_hi = ic
            else:
                r_lo = ir
                r_hi = ir
                c_lo = ic - 1
                c_hi = ic
            for r0 in range(r_lo, r_hi + 1):
                for c0 in range(c_lo, c_hi + 1):
                    cd = _dual_cost(cost, r0, c0)
                    if cd == np.inf:
                        continue
                    for side in range(4):
                        # bottom, top (horizontal), left, right (vertical) edges
                        if side < 2:
                            horiz = True
                            er0 = r0 + side
                            ec0 = c0
                            a = abs(pr - er0)
                            tau0 = pc - ec0
                            ga = g[er0 * cols + ec0]
                            gb = g[er0 * cols + ec0 + 1]
                        else:
                            horiz = False
                            er0 = r0
                            ec0 = c0 + side - 2
                            a = abs(pc - ec0)
                            tau0 = pr - er0
                            ga = g[er0 * cols + ec0]
                            gb = g[(er0 + 1) * cols + ec0]
                        if a == 0.0 or ga == np.inf or gb == np.inf:
                            continue
                        dg = gb - ga
                        if not (abs(dg) < cd):
                            continue
                        tau = tau0 - dg * a / math.sqrt(cd * cd - dg * dg)
                        if not (0.0 < tau < 1.0):
                            continue
                        dt = tau - tau0
                        gq = (1.0 - tau) * ga + tau * gb
                        v = cd * math.sqrt(a * a + dt * dt) + gq
                        if v < best and gq < cur:
                            best = v
                            bk = 1 if horiz else 2
                            br = er0
                            bc = ec0
                            bt = tau
                            bg = gq
                            has_mid = False
                    if kind != 0:
                        # corners not on the point's own edge, straight through the cell
                        for cr in range(r0, r0 + 2):
                            for cc in range(c0, c0 + 2):
                                if kind == 1 and cr == ir:
                                    continue
                                if kind == 2 and cc == ic:
                                    continue
                                gq = g[cr * cols + cc]
                                if gq == np.inf:
                                    continue
                                ddr = cr - pr
                                ddc = cc - pc
                                v = cd * math.sqrt(ddr * ddr + ddc * ddc) + gq
                                if v < best and gq < cur:
                                    best = v
                                    bk = 0
                                    br = cr
                                    bc = cc
                                    bt = 0.0
                                    bg = gq
        if best == np.inf:
            return STUCK
        if has_mid:
            out_rcf[n, 0] = mid_r
            out_rcf[n, 1] = mid_c
            n += 1
        if bk == 0:
            out_rcf[n, 0] = br
            out_rcf[n, 1] = bc
        elif bk == 1:
            out_rcf[n, 0] = br
            out_rcf[n, 1] = bc + bt
        else:
            out_rcf[n, 0] = br + bt
            out_rcf[n, 1] = bc
        n += 1
        kind = bk
        ir = br
        ic = bc
        t = bt
        cur = bg


@njit("float64(float32[:, ::1], float64[:, ::1])", cache=True)
def _polyline_cost(cost, pts):
    """Cost of a polyline in grid coordinates (cell centres at integers).

    Each segment is cut where it crosses integer rows or columns. A piece lying
    on a grid line costs length × the mean of the two cells it joins; a piece
    from a node to a diagonal neighbour costs A*'s diagonal move (√2 × mean of
    its two end cells, inf if it cuts a lethal corner); any other piece lies
    inside one dual cell and costs length × that cell's mean corner cost. Points
    must lie in ``[0, rows-1] × [0, cols-1]``. Returns inf if a lethal cell is
    crossed.
    """
    rows = cost.shape[0]
    cols = cost.shape[1]
    total = 0.0
    for i in range(pts.shape[0] - 1):
        p0r = pts[i, 0]
        p0c = pts[i, 1]
        dr = pts[i + 1, 0] - p0r
        dc = pts[i + 1, 1] - p0c
        if dr == 0.0 and dc == 0.0:
            continue
        seg_len = math.sqrt(dr * dr + dc * dc)
        on_row = dr == 0.0 and p0r == math.floor(p0r)
        on_col = dc == 0.0 and p0c == math.floor(p0c)
        # a 45-degree segment on a line through nodes: its pieces between two nodes are
        # A*'s diagonal moves (every integer-row crossing is then a node)
        diag45 = False
        if abs(dr) == abs(dc):
            k45 = p0r - p0c if dr == dc else p0r + p0c
            diag45 = k45 == math.floor(k45)
        p0_node = p0r == math.floor(p0r) and p0c == math.floor(p0c)
        p1_node = pts[i + 1, 0] == math.floor(pts[i + 1, 0]) and pts[i + 1, 1] == math.floor(pts[i + 1, 1])
        # walk the pieces between crossings of integer rows (kr) and cols (kc), in t order
        sr = 1 if dr > 0.0 else -1
        sc = 1 if dc > 0.0 else -1
        kr = math.floor(p0r) + 1.0 if dr > 0.0 else math.ceil(p0r) - 1.0
        kc = math.floor(p0c) + 1.0 if dc > 0.0 else math.ceil(p0c) - 1.0
        ta = 0.0
        while ta < 1.0:
            tr = 1.0
            if dr != 0.0:
                x = (kr - p0r) / dr
                if x < 1.0:
                    tr = x
            tc = 1.0
            if dc != 0.0:
                x = (kc - p0c) / dc
                if x < 1.0:
                    tc = x
            tb = min(tr, tc)
            if tr == tb and dr != 0.0:
                kr += sr
            if tc == tb and dc != 0.0:
                kc += sc
            if (tb - ta) * seg_len < 1e-12:   # row and col crossings an ulp apart
                ta = tb
                continue
            piece = (tb - ta) * seg_len
            tm = 0.5 * (ta + tb)
            mr = p0r + tm * dr
            mc = p0c + tm * dc
            if on_row:
                r = int(p0r)
                c0 = min(int(math.floor(mc)), cols - 2)
                total += piece * 0.5 * (np.float64(cost[r, c0]) + np.float64(cost[r, c0 + 1]))
            elif on_col:
                cc = int(p0c)
                r0 = min(int(math.floor(mr)), rows - 2)
                total += piece * 0.5 * (np.float64(cost[r0, cc]) + np.float64(cost[r0 + 1, cc]))
            else:
                if diag45 and (ta > 0.0 or p0_node) and (tb < 1.0 or p1_node):
                    ra = int(math.floor(p0r + ta * dr + 0.5))
                    ca = int(math.floor(p0c + ta * dc + 0.5))
                    rb = int(math.floor(p0r + tb * dr + 0.5))
                    cb = int(math.floor(p0c + tb * dc + 0.5))
                    if cost[ra, cb] == np.inf or cost[rb, ca] == np.inf:
                        return np.inf
                    total += SQRT2 * 0.5 * (np.float64(cost[ra, ca]) + np.float64(cost[rb, cb]))
                else:
                    r0 = min(int(math.floor(mr)), rows - 2)
                    c0 = min(int(math.floor(mc)), cols - 2)
                    total += piece * _dual_cost(cost, r0, c0)
            if total == np.inf:
                return np.inf
            ta = tb
    return total
