"""Slow, obviously-correct references for Field D* tests (pure Python / numpy).

- ``dijkstra_discrete``: exact 8-connected cost-to-goal under A*'s convention.
- ``field_value_iteration``: Bellman-Ford style fixed point of the Field D*
  interpolation (sweeps until nothing changes).
- ``interp_min`` / ``edge_then_diag_min``: the two closed-form minimisations,
  written via their minimiser, and ``numeric_min`` to check them.
- ``polyline_cost_sampled``: a polyline's cost by dense midpoint sampling.
- ``lethal_violations``: dense-sampling check that a polyline stays off lethal cells.
"""
from __future__ import annotations

import heapq
import math

import numpy as np

SQRT2 = math.sqrt(2.0)
INF = math.inf


def _cost(a, r, c):
    if 0 <= r < a.shape[0] and 0 <= c < a.shape[1]:
        return float(a[r, c])
    return INF


def dual_mean(a, r0, c0):
    """Mean of the 4 corners of the dual cell with lower-left node (r0, c0); inf if lethal/outside."""
    if not (0 <= r0 < a.shape[0] - 1 and 0 <= c0 < a.shape[1] - 1):
        return INF
    return ((float(a[r0, c0]) + float(a[r0, c0 + 1])) + (float(a[r0 + 1, c0]) + float(a[r0 + 1, c0 + 1]))) * 0.25


def dijkstra_discrete(cost, goal_rc):
    """Cost-to-goal of every cell on the 8-connected grid (A*'s convention)."""
    a = np.asarray(cost, dtype=np.float64)
    R, C = a.shape
    g = np.full((R, C), INF)
    g[goal_rc] = 0.0
    pq = [(0.0, tuple(goal_rc))]
    done = set()
    while pq:
        d, (r, c) = heapq.heappop(pq)
        if (r, c) in done:
            continue
        done.add((r, c))
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                if dr == 0 and dc == 0:
                    continue
                nr, nc = r + dr, c + dc
                if not (0 <= nr < R and 0 <= nc < C) or not math.isfinite(a[nr, nc]):
                    continue
                if dr and dc:
                    if not (math.isfinite(a[r, nc]) and math.isfinite(a[nr, c])):
                        continue
                    step = SQRT2 * 0.5 * (a[nr, nc] + a[r, c])
                else:
                    step = 0.5 * (a[nr, nc] + a[r, c])
                if d + step < g[nr, nc]:
                    g[nr, nc] = d + step
                    heapq.heappush(pq, (d + step, (nr, nc)))
    return g


def interp_min(c, g1, g2):
    """min over y in [0,1] of c*sqrt(1+y^2) + (1-y)*g1 + y*g2 (g1 or g2 may be inf)."""
    if g1 == INF and g2 == INF:
        return INF
    if g2 == INF:
        return c + g1
    if g1 == INF:
        return c * SQRT2 + g2
    d = g1 - g2
    if d <= 0:
        y = 0.0
    elif d >= c / SQRT2:
        y = 1.0
    else:
        y = d / math.sqrt(c * c - d * d)
    return c * math.sqrt(1 + y * y) + (1 - y) * g1 + y * g2


def edge_then_diag_min(b, c, g2):
    """min over x in [0,1] of b*x + c*sqrt((1-x)^2 + 1) + g2."""
    if g2 == INF:
        return INF
    if b >= c / SQRT2:
        x = 0.0
    else:
        x = 1.0 - b / math.sqrt(c * c - b * b)
    return b * x + c * math.sqrt((1 - x) ** 2 + 1) + g2


def numeric_min(f, n=2001, iters=200):
    """Minimum of a convex function on [0, 1]: grid search, then golden section."""
    ys = np.linspace(0.0, 1.0, n)
    vals = [f(y) for y in ys]
    i = int(np.argmin(vals))
    lo, hi = ys[max(i - 1, 0)], ys[min(i + 1, n - 1)]
    phi = (math.sqrt(5) - 1) / 2
    for _ in range(iters):
        m1 = hi - phi * (hi - lo)
        m2 = lo + phi * (hi - lo)
        if f(m1) <= f(m2):
            hi = m2
        else:
            lo = m1
    return min(min(vals), f(0.5 * (lo + hi)))


def node_value(a, g, r, c):
    """Bellman update of node (r, c): min over its 8 octants of the 4 candidates."""
    cu = float(a[r, c])
    best = INF
    for o in ((0, 1), (1, 0), (0, -1), (-1, 0)):
        for p in ((o[1], o[0]), (-o[1], -o[0])):         # the two perpendicular directions
            s1 = (r + o[0], c + o[1])
            s2 = (r + o[0] + p[0], c + o[1] + p[1])
            s3 = (r + p[0], c + p[1])
            c1, c2, c3 = _cost(a, *s1), _cost(a, *s2), _cost(a, *s3)
            g1 = g[s1] if math.isfinite(c1) else INF
            g2 = g[s2] if math.isfinite(c2) else INF
            if math.isfinite(c1):                          # (a) axial move
                best = min(best, 0.5 * (cu + c1) + g1)
            if math.isfinite(c1) and math.isfinite(c2) and math.isfinite(c3):   # (b) diagonal
                best = min(best, SQRT2 * 0.5 * (cu + c2) + g2)
            cd = dual_mean(a, min(r, s2[0]), min(c, s2[1]))
            if math.isfinite(cd):
                best = min(best, interp_min(cd, g1, g2))                       # (c)
                best = min(best, edge_then_diag_min(0.5 * (cu + c1), cd, g2))   # (d)
    return best


def field_value_iteration(cost, goal_rc, max_sweeps=10_000):
    """Fixed point of the Field D* Bellman equation by Gauss-Seidel sweeps from g = inf."""
    a = np.asarray(cost, dtype=np.float64)
    R, C = a.shape
    g = np.full((R, C), INF)
    g[tuple(goal_rc)] = 0.0
    for _ in range(max_sweeps):
        changed = False
        for r in range(R):
            for c in range(C):
                if (r, c) == tuple(goal_rc) or not math.isfinite(a[r, c]):
                    continue
                v = node_value(a, g, r, c)
                if v < g[r, c]:
                    g[r, c] = v
                    changed = True
        if not changed:
            return g
    raise RuntimeError("value iteration did not converge")


def _is_node(p):
    return float(p[0]).is_integer() and float(p[1]).is_integer()


def _density(a, r, c):
    """Cost per unit length at points (arrays r, c) given by their position.

    On the line between two neighbouring centres: the mean of those two cells;
    strictly inside a dual cell: the mean of its four corners; at a node: its cost.
    """
    R, C = a.shape
    ri = r == np.floor(r)
    ci = c == np.floor(c)
    r0 = np.clip(np.floor(r).astype(np.int64), 0, R - 1)
    c0 = np.clip(np.floor(c).astype(np.int64), 0, C - 1)
    r1 = np.minimum(r0 + 1, R - 1)
    c1 = np.minimum(c0 + 1, C - 1)
    node = a[r0, c0]
    on_row = 0.5 * (a[r0, c0] + a[r0, c1])
    on_col = 0.5 * (a[r0, c0] + a[r1, c0])
    inside = ((a[r0, c0] + a[r0, c1]) + (a[r1, c0] + a[r1, c1])) * 0.25
    return np.where(ri & ci, node, np.where(ri, on_row, np.where(ci, on_col, inside)))


def _split_diagonals(pts):
    """Segments of the polyline, with 45-degree segments through nodes cut at those nodes."""
    out = []
    for p, q in zip(pts[:-1], pts[1:]):
        d = q - p
        through_nodes = abs(d[0]) == abs(d[1]) != 0 and (
            float(p[0] - p[1]).is_integer() if d[0] == d[1] else float(p[0] + p[1]).is_integer())
        if not through_nodes:
            out.append((p, q))
            continue
        step = np.sign(d)
        lo, hi = sorted((p[0], q[0]))
        rows = [float(k) for k in range(math.ceil(lo), math.floor(hi) + 1) if lo < k < hi]
        rows.sort(reverse=bool(d[0] < 0))
        cur = p
        for r in rows:
            node = np.array([r, p[1] + (r - p[0]) * step[1] * step[0]])
            out.append((cur, node))
            cur = node
        out.append((cur, q))
    return out


def polyline_cost_sampled(cost, points_rcf, samples_per_unit=20000, with_bound=False):
    """Cost of a polyline by midpoint sampling of each segment's cost density.

    A segment between diagonally neighbouring nodes costs A*'s diagonal move.
    With ``with_bound`` also returns a bound on the sampling error: the density
    is piecewise constant, so each change (at most one per grid line crossed)
    misattributes at most one sample.
    """
    a = np.asarray(cost, dtype=np.float64)
    pts = np.asarray(points_rcf, dtype=np.float64)
    if not np.isfinite(_density(a, pts[:, 0], pts[:, 1])).all():   # a vertex touches a lethal cell
        return (INF, 0.0) if with_bound else INF
    total = 0.0
    bound = 0.0
    for p, q in _split_diagonals(pts):
        d = q - p
        L = math.hypot(*d)
        if L == 0:
            continue
        if _is_node(p) and _is_node(q) and abs(d[0]) == 1 and abs(d[1]) == 1:
            r0, c0, r1, c1 = int(p[0]), int(p[1]), int(q[0]), int(q[1])
            if not (math.isfinite(a[r0, c1]) and math.isfinite(a[r1, c0])):
                return (INF, 0.0) if with_bound else INF
            total += SQRT2 * 0.5 * (a[r0, c0] + a[r1, c1])
            continue
        n = 2 * max(1, int(math.ceil(L * samples_per_unit / 2)))
        ts = (np.arange(n) + 0.5) / n
        r = p[0] + ts * d[0] if d[0] != 0 else np.full(n, p[0])
        c = p[1] + ts * d[1] if d[1] != 0 else np.full(n, p[1])
        dens = _density(a, r, c)
        total += float(dens.sum()) * L / n
        crossings = abs(d[0]) + abs(d[1]) + 4
        bound += crossings * float(dens.max()) * L / n
    return (total, bound) if with_bound else total


def lethal_violations(cost, points_rcf, samples_per_unit=200):
    """Sampled points of the polyline that touch a lethal cell.

    A point lies in the cell it rounds to; a point strictly inside a dual cell
    also needs all four corners of that dual cell finite (its cost is their mean).
    """
    a = np.asarray(cost, dtype=np.float64)
    pts = np.asarray(points_rcf, dtype=np.float64)
    bad = []
    segs = list(zip(pts[:-1], pts[1:])) or [(pts[0], pts[0])]
    for p, q in segs:
        d = q - p
        n = max(2, int(math.ceil(math.hypot(*d) * samples_per_unit)))
        for t in np.linspace(0.0, 1.0, n + 1):
            r = p[0] + t * d[0] if d[0] != 0 else p[0]
            c = p[1] + t * d[1] if d[1] != 0 else p[1]
            if not math.isfinite(a[int(round(r)), int(round(c))]):
                bad.append((r, c))
            elif not (float(r).is_integer() or float(c).is_integer()):
                r0, c0 = int(math.floor(r)), int(math.floor(c))
                if not all(math.isfinite(a[r0 + i, c0 + j]) for i in (0, 1) for j in (0, 1)):
                    bad.append((r, c))
    return bad


def step_gain_bound(cost, x, n, interp=True):
    """Lower bound on ``g(x) - g(n)`` for any candidate of node ``x`` that reads neighbour ``n``.

    The smallest finite cost among the cells of the 2 x 2 windows containing both
    nodes (every cell such a candidate reads), times 1/√2 for an axial neighbour
    and 1 for a diagonal one under interpolation; A*'s move costs without it.
    """
    a = np.asarray(cost, dtype=np.float64)
    R, C = a.shape
    (xr, xc), (nr, nc) = x, n
    diag = xr != nr and xc != nc
    if not interp:
        return (SQRT2 if diag else 1.0) * 0.5 * (a[x] + a[n])
    rs = range(min(xr, nr) - (0 if xr != nr else 1), max(xr, nr) + (0 if xr != nr else 1) + 1)
    cs = range(min(xc, nc) - (0 if xc != nc else 1), max(xc, nc) + (0 if xc != nc else 1) + 1)
    m = min(a[r, c] for r in rs for c in cs if 0 <= r < R and 0 <= c < C and math.isfinite(a[r, c]))
    return m if diag else m / SQRT2
