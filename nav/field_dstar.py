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
The search is best-first on ``g + h`` with ``h = min cost / √2 × octile
distance`` to the start. That is consistent for this interpolation, so
``g(start)`` is exact when the start is expanded: a node's value depends only
on its neighbours, gaining at least ``c/√2`` over an axial neighbour and ``c``
over a diagonal one (interpolating toward ``s1`` gains ``√(c² − d²) ≥ c/√2``),
and min cost / √2 × octile is the largest norm that never outruns those gains.
``min cost × Euclidean`` is not consistent here: in our tests it ended the
search with ``g(start)`` up to 0.6 % above the fixed point in about 2 % of
small random grids (though it halves expansions on uniform-cost maps). A node
whose value drops after expansion is expanded again (with this heuristic only
after exact ties in ``g + h``; ``info["reexpanded"]`` counts them).

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
from .errors import (GoalInHazard, NoPathFound, PlanningCancelled, PlanningError,
                     PlanningTimedOut, StartInHazard)
from .planning import GridResult, _check_rc, validate_cost_grid

__all__ = ["search", "polyline_cost", "cost_to_goal"]

log = logging.getLogger(__name__)

_CHUNK = 8192           # expansions between deadline/cancel checks
_REL_TOL = 1e-9         # polyline vs g(start) before the exact discrete search is run


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
    while True:
        chunk = budget.check(what)
        before = int(counters[1])
        status = _k._search_values(a, g, heap_node, heap_key, pos, counters, start[0], start[1],
                                   h_scale, 1 if interp else 0, chunk)
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
    _k._search_values(a, g, heap_node, heap_key, pos, counters, -1, -1, 0.0, 1 if interp else 0,
                      np.iinfo(np.int64).max)
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
