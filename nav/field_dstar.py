"""Field D*: interpolation-based any-angle grid planning.

Ferguson, D. and Stentz, A. (2006), "Using interpolation to improve path planning:
The Field D* algorithm", Journal of Field Robotics 23(2), 79-101 — the global
planner flown on the Mars Exploration Rovers.

Model (shares A*'s cost grid and convention, see :mod:`nav.planning`)
----------------------------------------------------------------------
Nodes sit at cell centres. The four centres ``(r, c), (r, c+1), (r+1, c),
(r+1, c+1)`` bound a *dual cell*; crossing it costs length × the mean of its four
corner costs (inf if any corner is lethal). Running along the line between two
neighbouring centres costs length × the mean of those two cells, and a step
between diagonal centres costs A*'s diagonal move — so every A* path has the
same cost here. The search runs backward from the goal and computes the
cost-to-goal ``g`` of each node as the minimum, over its 8 octant edges
(``s1`` orthogonal, ``s2`` diagonal neighbour), of

(a) A*'s axial move to ``s1``; (b) A*'s diagonal move to ``s2`` (no corner cut);
(c) a straight segment to the point at ``y`` along ``s1 → s2`` whose
cost-to-goal is interpolated, ``c √(1+y²) + (1−y) g(s1) + y g(s2)``; and
(d) along ``s → s1`` for ``x`` then straight to ``s2``,
``b x + c √((1−x)²+1) + g(s2)``;

(c) and (d) are minimised in closed form over ``[0, 1]`` (the paper's
ComputeCost). Because (a) and (b) are A*'s moves, ``g`` never exceeds A*'s.
The search is best-first on ``g + h`` (ties to the larger ``g``), ``h`` a
lower bound on the cost from the start, and stops when the start is expanded.

Why ``g(start)`` is then exact. Let ``g*`` be the fixed point (what value
iteration computes). (i) ``g >= g*`` always: every update applies the monotone
operator to values ``>= g*``. (ii) Each candidate is monotone in the values it
reads and, for every node ``n`` it reads with positive weight, exceeds ``g(n)``
by a *gain*: (a) ``≥ c``, (b) ``≥ √2 c``, (d) ``≥ c_d`` over ``s2``, and (c)
at its optimum ``g1 + √(c_d² − δ²)`` with ``δ = g1 − g2 ∈ [0, c_d/√2)``, i.e.
``≥ c_d/√2`` over ``s1`` and ``δ + √(c_d² − δ²) ≥ c_d`` over ``s2`` (``c`` the
mean of the two cells of the move, ``c_d`` the dual cell's mean). So every
gain is at least ``m/√2`` to an axial neighbour and ``m`` to a diagonal one,
``m`` the smallest cost among the cells the candidate reads. (iii) Call ``h``
*consistent* if ``h(n) − h(x) ≤`` that bound for all neighbours ``x, n``, and
``h(start) = 0``. Suppose the start is popped with ``g(start) > g*(start)``.
Unroll the optimal candidates from the start (the nodes they read with
positive weight, recursively); among those not yet expanded with their final
value pick ``s`` with the smallest ``g*`` (strictly smaller values are read,
by (ii), so all of ``s``'s inputs were expanded final; the last of those
expansions evaluated ``s``'s optimal candidate with final inputs — the kernel
re-evaluates both octant edges through the expanded node, and re-queues
expanded nodes whose value drops — so ``g(s) = g*(s)`` and ``s`` is queued).
Summing (iii) along the unrolled chain from the start to ``s`` gives
``h(s) ≤ g*(start) − g*(s)``, so ``s``'s key ``g*(s) + h(s) ≤ g*(start) <
g(start)``, contradicting the pop order. Note that only the *local* bound
matters: the chain can take many axial steps at ``m/√2`` each, so ``min cost ×
Euclidean distance`` (a valid bound on any-angle path length) is not safe —
in our tests it ended the search with ``g(start)`` up to 0.6 % above the fixed
point in about 2 % of small random grids.

``h`` is the larger of two consistent bounds (a maximum of consistent bounds is
consistent): ``min cost / √2 × octile distance`` to the start (octile/√2 is the
largest norm giving axial steps ``1/√2`` and diagonal ones ``1``), and — for
queries long enough to pay for the O(cells) set-up, on non-uniform grids —
A*'s corner-lattice bounds (:mod:`nav._astar_kernels`) with two changes:
the slopes ``(α, β)`` are scaled by ``1/√2`` (``α, β ≤ 1/√2``, ``α + β ≤ 1``),
and each block's minimum is taken over the block grown by one cell on every
side. Bilinear interpolation then changes by at most ``m_B/√2`` per unit along
an axis and ``m_B`` per diagonal step inside block ``B``, and the segment between
two neighbouring centres lies in their two cells (half in each), whose blocks'
grown minima are at most every cost a candidate of either node reads; so the
change between neighbours is within the gains of (ii). It cuts expansions by
about a third on the benchmark maps. The exact discrete search uses the same
bounds unscaled (min cost × octile, A*'s slopes): its gains are A*'s move costs.
``heuristic_grid`` exposes ``h`` for the tests, which check the local bound,
``h ≤`` the reference cost to the start and an unchanged ``g(start)``. A node whose value drops after expansion
is expanded again (``info["reexpanded"]`` counts them; with consistent ``h``
only after float ties).

The path is extracted by greedy descent from the start: from a node or a point
on a dual-cell edge it takes the segment (node move, slide along an edge, or
straight crossing of an adjacent dual cell to a corner or an edge point) that
minimises actual segment cost plus interpolated cost-to-go, among those that
strictly lower the interpolated cost-to-go (so it cannot loop). Its reported
cost is :func:`polyline_cost` of the vertices, so it is honest.

Interpolation can mislead the descent, and the closed-interval minimum in
(c)/(d) is an infimum that no polyline attains: with these cost rules,
"hugging" the line between two centres from inside a dual cell whose mean is
below the line's mean, or passing a hair beside a diagonal step, is cheaper
than the line or the step itself. So the polyline may cost more than
``g(start)``. When it does (relative tolerance 1e-9) an exact 8-connected
search (A*'s convention) runs too and the cheaper path is returned: the result
never costs more than A*'s optimum. On smooth cost fields this is rare; on
small grids of independent random costs about half of the plans need it and
about one in sixteen returns the discrete path.
"""
from __future__ import annotations

import logging
import math

import numpy as np

from . import _field_dstar_kernels as _k
from ._astar_kernels import _lattice_dijkstra
from .errors import (GoalInHazard, NoPathFound, PlanningCancelled, PlanningError,
                     PlanningTimedOut, StartInHazard)
from .planning import GridResult, _check_rc, validate_cost_grid

__all__ = ["search", "polyline_cost", "cost_to_goal", "heuristic_grid"]

log = logging.getLogger(__name__)

_CHUNK = 8192           # expansions between deadline/cancel checks
_REL_TOL = 1e-9         # polyline vs g(start) before the exact discrete search is run
# Corner-lattice heuristic: block side 2**_BLOCK_SHIFT cells; computed for queries whose
# octile length is at least max(_LATTICE_MIN_CELLS, sqrt(cells) / 8) (as in nav.astar).
_BLOCK_SHIFT = 3
_LATTICE_MIN_CELLS = 32
# (α, β) of the three lattice potentials for the discrete metric: α, β <= 1, α + β <= √2;
# the interpolated search scales them by 1/√2 (see the module docstring).
_SLOPES = ((math.sqrt(0.5), math.sqrt(0.5)), (1.0, math.sqrt(2.0) - 1.0), (math.sqrt(2.0) - 1.0, 1.0))
_NO_LATTICE = (np.zeros(0), np.zeros(3))


class _Budget:
    """Expansion budget, deadline and cancel shared by the searches of one call."""

    def __init__(self, max_expansions, deadline, cancel):
        if max_expansions is not None:
            try:
                ok = int(max_expansions) == max_expansions and max_expansions >= 1
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise ValueError(f"max_expansions must be an integer >= 1, got {max_expansions!r}")
        if deadline is not None:
            try:
                clock, t_end = deadline
                t_end = float(t_end)
            except (TypeError, ValueError):
                raise ValueError("deadline must be None or a (clock_fn, t_deadline) pair, "
                                 f"got {deadline!r}") from None
            if not callable(clock):
                raise ValueError(f"deadline clock must be callable, got {clock!r}")
        if cancel is not None and not callable(cancel):
            raise ValueError(f"cancel must be None or a callable returning bool, got {cancel!r}")
        self.max_expansions = None if max_expansions is None else int(max_expansions)
        self.deadline = deadline
        self.cancel = cancel
        self.used = 0

    def check(self, what):
        """Raise if cancelled or past the deadline; return how many expansions may run next."""
        if self.cancel is not None and self.cancel():
            raise PlanningCancelled(f"{what} cancelled by the caller after {self.used} expansions")
        if self.deadline is not None:
            clock, t_end = self.deadline
            now = clock()
            if now >= t_end:
                raise PlanningTimedOut(f"{what} passed its deadline ({now - t_end:.3f} s late) after "
                                       f"{self.used} expansions")
        if self.max_expansions is None:
            return _CHUNK
        left = self.max_expansions - self.used
        if left <= 0:
            raise PlanningTimedOut(f"{what} used its budget max_expansions={self.max_expansions} "
                                   "without reaching the start")
        return min(_CHUNK, left)


def _halo_block_minima(a, block_shift):
    """Smallest cost over each block grown by one cell on every side (float64, inf = all lethal).

    Every cell that a candidate of a node in the block reads (the node's 3 × 3
    neighbourhood) lies in the grown block, so this minimum bounds all the local
    costs the consistency argument needs.
    """
    rows, cols = a.shape
    block = 1 << block_shift
    rs = np.arange(0, rows, block)
    m = np.minimum.reduceat(a, rs, axis=0)          # (row blocks, cols), then the rows beside them
    k = rs >= 1
    m[k] = np.minimum(m[k], a[rs[k] - 1])
    k = rs + block < rows
    m[k] = np.minimum(m[k], a[rs[k] + block])
    cs = np.arange(0, cols, block)
    bm = np.minimum.reduceat(m, cs, axis=1)
    k = cs >= 1
    bm[:, k] = np.minimum(bm[:, k], m[:, cs[k] - 1])
    k = cs + block < cols
    bm[:, k] = np.minimum(bm[:, k], m[:, cs[k] + block])
    return np.ascontiguousarray(bm, dtype=np.float64)


def _lattice(a, start, interp, block_shift, bm=None):
    """Corner-lattice potentials ``(LH * LW * 3,)`` from ``start`` and their value at the start ``(3,)``.

    Shortest paths over the 4-connected lattice of block corners with edge
    weights ``α B m`` / ``β B m`` (``m`` the smaller halo minimum of the blocks
    beside the edge), from the start block's corners; multiplied by ``1/√2`` for
    the interpolated metric.
    """
    if bm is None:
        bm = _halo_block_minima(a, block_shift)
    block = 1 << block_shift
    sr, sc = start
    lh, lw = bm.shape[0] + 1, bm.shape[1] + 1
    side = np.full((bm.shape[0] + 2, bm.shape[1] + 2), np.inf)
    side[1:-1, 1:-1] = bm
    edge_h = np.ascontiguousarray(np.minimum(side[:-1, 1:-1], side[1:, 1:-1]).reshape(-1))
    edge_v = np.ascontiguousarray(np.minimum(side[1:-1, :-1], side[1:-1, 1:]).reshape(-1))
    bi, bj = sr >> block_shift, sc >> block_shift
    src = np.array([(bi + di) * lw + bj + dj for di in (0, 1) for dj in (0, 1)], dtype=np.int64)
    dy = np.abs(np.array([bi, bi, bi + 1, bi + 1]) * block - (sr + 0.5))
    dx = np.abs(np.array([bj, bj + 1, bj, bj + 1]) * block - (sc + 0.5))
    n_lat = lh * lw
    dist = np.empty(n_lat)
    done = np.empty(n_lat, dtype=np.uint8)
    hkey = np.empty(4 * n_lat + 4)
    hnode = np.empty(4 * n_lat + 4, dtype=np.int64)
    lat = np.empty((lh, lw, 3))
    scale = math.sqrt(0.5) if interp else 1.0
    for layer, (alpha, beta) in enumerate(_SLOPES):
        alpha, beta = alpha * scale, beta * scale
        src_dist = bm[bi, bj] * (alpha * dx + beta * dy)
        _lattice_dijkstra(edge_h, edge_v, lw, alpha * block, beta * block, src, src_dist, dist, done,
                          hkey, hnode)
        lat[:, :, layer] = dist.reshape(lh, lw)
    at_start = _interpolate(lat, np.array([sr]), np.array([sc]), block_shift)[0]
    return np.ascontiguousarray(lat.reshape(-1)), np.ascontiguousarray(at_start)


def _interpolate(lat, rows, cols, block_shift):
    """Bilinear lattice potentials at cell centres ``(rows[k], cols[k])``, as the kernel computes them."""
    block = 1 << block_shift
    ty = (((rows & (block - 1)) + 0.5) / block)[:, None]
    tx = (((cols & (block - 1)) + 0.5) / block)[:, None]
    i, j = rows >> block_shift, cols >> block_shift
    return ((1 - ty) * (1 - tx) * lat[i, j] + (1 - ty) * tx * lat[i, j + 1]
            + ty * (1 - tx) * lat[i + 1, j] + ty * tx * lat[i + 1, j + 1])


def _lattice_for(a, start, goal, interp, cmin):
    """The lattice potentials for a query, or empty arrays when they would not pay (as in nav.astar)."""
    dr, dc = abs(goal[0] - start[0]), abs(goal[1] - start[1])
    bar = max(_LATTICE_MIN_CELLS, math.sqrt(a.size) / 8)
    if max(dr, dc) + (math.sqrt(2.0) - 1.0) * min(dr, dc) < bar:
        return _NO_LATTICE
    bm = _halo_block_minima(a, _BLOCK_SHIFT)
    fin = bm[bm < np.inf]
    if fin.size == 0 or not fin.max() > cmin:   # uniform costs: no better than the octile term
        return _NO_LATTICE
    return _lattice(a, start, interp, _BLOCK_SHIFT, bm)


def heuristic_grid(cost, start_rc, *, interp: bool = True, block_shift: int = _BLOCK_SHIFT) -> np.ndarray:
    """The search heuristic towards ``start_rc`` at every node, lattice bounds always on (diagnostic).

    ``max(octile × min cost (/√2 if interp), lattice bounds)``; the kernel computes
    the same values on the fly. Used by the tests to check admissibility and consistency.
    """
    a = validate_cost_grid(cost)
    start = _check_rc(start_rc, a.shape, "start")
    cmin = float(a.min())
    h_scale = cmin / math.sqrt(2.0) if interp else cmin
    rr, cc = np.indices(a.shape)
    dr, dc = np.abs(rr - start[0]), np.abs(cc - start[1])
    h = h_scale * (np.maximum(dr, dc) + (math.sqrt(2.0) - 1.0) * np.minimum(dr, dc))
    lat, at_start = _lattice(a, start, interp, block_shift)
    lh, lw = ((a.shape[0] + (1 << block_shift) - 1) >> block_shift) + 1, \
        ((a.shape[1] + (1 << block_shift) - 1) >> block_shift) + 1
    vals = _interpolate(lat.reshape(lh, lw, 3), rr.reshape(-1), cc.reshape(-1), block_shift) - at_start
    return np.maximum(h, vals.max(axis=1).reshape(a.shape))


def _run_search(a, start, goal, interp, budget, what):
    """Run the kernel to completion in chunks; return (g, expansions, re-expansions)."""
    rows, cols = a.shape
    n = rows * cols
    g = np.full(n, np.inf, dtype=np.float64)
    heap_node = np.empty(n, dtype=np.int64)
    heap_key = np.empty(n, dtype=np.float64)
    pos = np.full(n, -1, dtype=np.int64)
    counters = np.zeros(3, dtype=np.int64)
    cmin = float(a.min())   # lethal cells are inf; the goal is finite
    h_scale = cmin / math.sqrt(2.0) if interp else cmin
    gi = goal[0] * cols + goal[1]
    g[gi] = 0.0
    dr, dc = abs(goal[0] - start[0]), abs(goal[1] - start[1])
    heap_node[0] = gi
    heap_key[0] = h_scale * (max(dr, dc) + (math.sqrt(2) - 1) * min(dr, dc))
    pos[gi] = 0
    counters[0] = 1
    lattice, lattice_start = _lattice_for(a, start, goal, interp, cmin)
    while True:
        chunk = budget.check(what)
        before = int(counters[1])
        status = _k._search_values(a, g, heap_node, heap_key, pos, counters, start[0], start[1],
                                   h_scale, lattice, _BLOCK_SHIFT, lattice_start,
                                   1 if interp else 0, chunk)
        budget.used += int(counters[1]) - before
        if status == _k.FOUND:
            return g, int(counters[1]), int(counters[2])
        if status == _k.EXHAUSTED:
            raise NoPathFound(f"no path from start (row {start[0]}, col {start[1]}) to goal "
                              f"(row {goal[0]}, col {goal[1]}): every route crosses a lethal cell "
                              f"({int(counters[1])} cells reachable from the goal)")


def _extract(a, g, start, goal, interp):
    """Extract the polyline; returns (points or None, status)."""
    rows, cols = a.shape
    cap = 4 * (rows + cols) + 16
    limit = 4 * rows * cols + 16
    while True:
        out = np.empty((cap, 2), dtype=np.float64)
        n = _k._extract_polyline(a, g, start[0], start[1], goal[0], goal[1], 1 if interp else 0, out)
        if n > 0:
            return out[:n].copy(), "ok"
        if n != _k.BUFFER_FULL or cap >= limit:
            return None, {_k.BUFFER_FULL: "too_long", _k.STUCK: "stuck"}[int(n)]
        cap = min(2 * cap, limit)


def polyline_cost(cost, points_rcf) -> float:
    """Cost of a polyline through the grid under Field D*'s segment rules.

    Parameters
    ----------
    cost : (rows, cols) array
        Cost grid as for :func:`nav.plan_grid` (> 0, ``np.inf`` = lethal).
    points_rcf : (N, 2) array
        Vertices in continuous grid coordinates (cell centres at integers), all
        within ``[0, rows-1] × [0, cols-1]``.

    Returns
    -------
    float
        Sum over segments, each cut where it crosses integer rows/columns: a
        piece on the line between two neighbouring centres costs length × the
        mean of those two cells (A*'s axial move), a piece between diagonal
        centres costs A*'s diagonal move (√2 × mean of its end cells), any
        other piece costs length × the mean of the four corners of the dual
        cell it crosses. ``np.inf`` if the polyline touches a lethal cell (a
        vertex touches the 1, 2 or 4 cells whose centres bound it) or a
        diagonal step cuts a lethal corner. An A* path has its A* cost.
    """
    a = validate_cost_grid(cost)
    p = np.asarray(points_rcf, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 2 or p.shape[0] < 1:
        raise ValueError(f"points_rcf must have shape (N, 2) with N >= 1, got {p.shape}")
    if not np.isfinite(p).all():
        raise ValueError("points_rcf must be finite")
    hi = np.array([a.shape[0] - 1, a.shape[1] - 1], dtype=np.float64)
    bad = (p < 0).any(axis=1) | (p > hi).any(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"points_rcf[{i}] = {tuple(p[i])} is outside the cell-centre hull "
                         f"[0, {a.shape[0] - 1}] x [0, {a.shape[1] - 1}]")
    # a vertex touches the cells whose centres bound it (1, 2 or 4 of them)
    r0, c0 = np.floor(p[:, 0]).astype(np.int64), np.floor(p[:, 1]).astype(np.int64)
    r1, c1 = np.ceil(p[:, 0]).astype(np.int64), np.ceil(p[:, 1]).astype(np.int64)
    if not (np.isfinite(a[r0, c0]) & np.isfinite(a[r0, c1]) & np.isfinite(a[r1, c0])
            & np.isfinite(a[r1, c1])).all():
        return math.inf
    return float(_k._polyline_cost(a, np.ascontiguousarray(p)))


def cost_to_goal(cost, goal_rc, *, interp: bool = True) -> np.ndarray:
    """Field D* cost-to-goal of every node (full backward search, no heuristic).

    Parameters
    ----------
    cost : (rows, cols) array
        Cost grid as for :func:`nav.plan_grid`.
    goal_rc : (int, int)
        Goal cell (must be finite).
    interp : bool
        ``False`` gives the exact 8-connected cost-to-goal of A*'s convention.

    Returns
    -------
    (rows, cols) float64
        ``np.inf`` where the goal cannot be reached.
    """
    a = validate_cost_grid(cost)
    goal = _check_rc(goal_rc, a.shape, "goal")
    if not np.isfinite(a[goal]):
        raise GoalInHazard(f"goal (row {goal[0]}, col {goal[1]}) is in a lethal cell (cost inf)")
    rows, cols = a.shape
    n = rows * cols
    g = np.full(n, np.inf, dtype=np.float64)
    heap_node = np.empty(n, dtype=np.int64)
    heap_key = np.zeros(n, dtype=np.float64)
    pos = np.full(n, -1, dtype=np.int64)
    counters = np.array([1, 0, 0], dtype=np.int64)
    gi = goal[0] * cols + goal[1]
    g[gi] = 0.0
    heap_node[0] = gi
    pos[gi] = 0
    # start outside the grid: the search never stops early; h_scale = 0 -> Dijkstra
    _k._search_values(a, g, heap_node, heap_key, pos, counters, -1, -1, 0.0, _NO_LATTICE[0],
                      _BLOCK_SHIFT, _NO_LATTICE[1], 1 if interp else 0, np.iinfo(np.int64).max)
    return g.reshape(rows, cols)


def search(cost, start_rc, goal_rc, *, max_expansions=None, deadline=None, cancel=None) -> GridResult:
    """Plan with Field D* on a cost grid (the ``"field_dstar"`` planner of :func:`nav.plan_grid`).

    Parameters
    ----------
    cost : (rows, cols) array
        Cost per cell, > 0, ``np.inf`` = lethal (validated, converted to C-contiguous float32).
    start_rc, goal_rc : (int, int)
        Start and goal cells; both must be finite.
    max_expansions : int, optional
        Expansion budget shared by the Field D* search and the exact discrete
        search it may need.
    deadline : (clock_fn, t_deadline), optional
        Give up once ``clock_fn() >= t_deadline`` (checked every 8192 expansions).
    cancel : callable, optional
        Checked every 8192 expansions; a true result raises :class:`~nav.errors.PlanningCancelled`.

    Returns
    -------
    GridResult
        ``points_rcf`` (N, 2) float64 polyline from the start centre to the goal
        centre (vertices at centres or on the lines between them), ``cost`` =
        :func:`polyline_cost` of it, ``expanded`` = all expansions, and
        ``info``: ``g_start`` (interpolated cost-to-goal of the start, a lower
        bound on A*'s optimum), ``polyline_cost``, ``extraction`` ("ok" or why
        it failed), ``fallback`` ("none", or "discrete" when the exact discrete
        search ran, or "interrupted"),
        ``discrete_cost`` (its optimum or None), ``chosen``
        ("field_dstar" or "discrete"), ``expanded_field``,
        ``expanded_discrete``, ``reexpanded``.

    Raises
    ------
    StartOutsideMap, GoalOutsideMap, StartInHazard, GoalInHazard, NoPathFound,
    PlanningTimedOut, PlanningCancelled, ValueError

    Notes
    -----
    If the budget or deadline runs out during the exact discrete search (only
    run when the polyline costs more than ``g_start``), the Field D* polyline is
    returned with ``info["fallback"] = "interrupted"`` instead of raising: it
    is a valid path, merely not certified to be no costlier than A*'s.
    """
    a = validate_cost_grid(cost)
    start = _check_rc(start_rc, a.shape, "start")
    goal = _check_rc(goal_rc, a.shape, "goal")
    if not np.isfinite(a[start]):
        raise StartInHazard(f"start (row {start[0]}, col {start[1]}) is in a lethal cell (cost inf)")
    if not np.isfinite(a[goal]):
        raise GoalInHazard(f"goal (row {goal[0]}, col {goal[1]}) is in a lethal cell (cost inf)")
    budget = _Budget(max_expansions, deadline, cancel)
    info = dict(g_start=0.0, polyline_cost=0.0, extraction="ok", fallback="none", discrete_cost=None,
                chosen="field_dstar", expanded_field=0, expanded_discrete=0, reexpanded=0)
    if start == goal:
        budget.check("Field D*")
        return GridResult(np.array([start], dtype=np.float64), 0.0, 0, info)

    g, n_exp, n_re = _run_search(a, start, goal, True, budget, "Field D*")
    cols = a.shape[1]
    g_start = float(g[start[0] * cols + start[1]])
    info.update(g_start=g_start, expanded_field=n_exp, reexpanded=n_re)
    pts, status = _extract(a, g, start, goal, True)
    info["extraction"] = status
    if pts is None:
        log.debug("Field D*: polyline extraction failed (%s); using the discrete path", status)
    pcost = float(_k._polyline_cost(a, pts)) if pts is not None else math.inf
    info["polyline_cost"] = pcost
    if pcost <= g_start * (1.0 + _REL_TOL):
        return GridResult(pts, pcost, n_exp, info)

    # The polyline is not certified against A*: run the exact discrete search.
    info["fallback"] = "discrete"
    try:
        gd, n_exp_d, _ = _run_search(a, start, goal, False, budget, "Field D* (exact discrete check)")
    except PlanningTimedOut:
        if pts is None:
            raise
        log.warning("Field D*: discrete check interrupted by the budget/deadline; returning the "
                    "uncertified polyline (cost %.6g > g_start %.6g)", pcost, g_start)
        info["fallback"] = "interrupted"
        return GridResult(pts, pcost, budget.used, info)
    dpts, dstatus = _extract(a, gd, start, goal, False)
    if dpts is None:  # cannot happen with exact values; keep the polyline if there is one
        log.error("Field D*: discrete path extraction failed (%s)", dstatus)
        if pts is None:
            raise PlanningError(f"Field D*: path extraction failed ({status}, {dstatus}) between start "
                              f"(row {start[0]}, col {start[1]}) and goal (row {goal[0]}, col {goal[1]})")
        return GridResult(pts, pcost, budget.used, info)
    dcost = float(_k._polyline_cost(a, dpts))
    info.update(discrete_cost=dcost, expanded_discrete=n_exp_d)
    if dcost < pcost:
        info["chosen"] = "discrete"
        log.debug("Field D*: polyline %.6g > discrete optimum %.6g; returning the discrete path",
                  pcost, dcost)
        return GridResult(dpts, dcost, budget.used, info)
    return GridResult(pts, pcost, budget.used, info)
