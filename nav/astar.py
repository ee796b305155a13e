"""A* and Dijkstra on 8-connected cost grids (Numba).

A* over flat cell indices of a grid padded with one ring of lethal cells (no
bounds checks), with a float64 cost-to-come, a 4-ary heap with lazy deletion and
preallocated arrays. The heuristic is the larger of

* the octile distance times the grid's smallest cost, and
* three lower bounds interpolated from potentials on the corners of 8 × 8-cell
  blocks (shortest paths over a lattice weighted by the blocks' smallest costs;
  see :mod:`nav._astar_kernels` for why they never overestimate). On cost fields
  that vary they are far tighter than the first (≈60 % fewer expansions on the
  benchmark maps); they are skipped for short queries and uniform grids.

Both are consistent, so every cell is expanded once and the first time the goal
is expanded its cost is optimal (to a relative 1e-12, see ``TIE_EPS``). Ties in
``f = g + h`` go to the larger ``g``, which on open ground dives towards the goal
instead of widening the frontier. Dijkstra is the same kernel with no heuristic.

Use it through :func:`nav.plan_grid` / :func:`nav.plan` (``planner="astar"`` or
``"dijkstra"``); :func:`search` and :func:`search_dijkstra` are the registered
back-ends. The search runs in chunks of expansions so that a deadline and a
cancel flag are checked between chunks without restarting it.
"""
from __future__ import annotations

import logging
import math

import numpy as np

from . import _astar_kernels as _k
from .errors import NoPathFound, PlanningCancelled, PlanningTimedOut
from .planning import GridResult

__all__ = ["search", "search_dijkstra", "heuristic_grid", "CHECK_EVERY"]

log = logging.getLogger(__name__)

#: Expansions between two looks at the deadline / cancel flag (a few milliseconds).
CHECK_EVERY = 16384
#: Heuristic inflation that breaks ties in f towards the larger g (see _astar_kernels).
TIE_EPS = 2.0 ** -40
#: Block side (as a power of two) of the corner-lattice heuristic, and the shortest
#: query (octile distance in cells) for which it is computed; on large grids the bar
#: rises to sqrt(cells) / 8, where its O(cells) set-up stays below the search it saves.
LATTICE_BLOCK_SHIFT = 3
LATTICE_MIN_CELLS = 32
# (α, β) of the three lattice potentials: α, β <= 1 and α + β <= √2 (see _astar_kernels).
_LATTICE_SLOPES = ((math.sqrt(0.5), math.sqrt(0.5)), (1.0, math.sqrt(2.0) - 1.0), (math.sqrt(2.0) - 1.0, 1.0))
#: Initial open-list capacity (entries); it doubles when full.
INITIAL_HEAP = 1 << 16

_NO_LIMIT = np.iinfo(np.int64).max


def _check_grid(cost) -> np.ndarray:
    if not (isinstance(cost, np.ndarray) and cost.dtype == np.float32 and cost.ndim == 2
            and cost.flags.c_contiguous):
        got = (f"{type(cost).__name__} {getattr(cost, 'dtype', '')} shape {getattr(cost, 'shape', '')}")
        raise ValueError(f"cost must be a validated C-contiguous 2-D float32 grid "
                         f"(see nav.planning.validate_cost_grid), got {got}")
    return cost


def _check_size(n_padded: int) -> None:
    """Cell indices are stored as int32."""
    if n_padded >= 2**31:
        raise ValueError(f"cost grid too large: {n_padded} cells with the border ring, the planners "
                         f"index cells with int32 (< 2**31)")


def _run_chunks(step, counters, max_expansions, deadline, cancel):
    """Call ``step(limit)`` until it stops with FOUND/EXHAUSTED, or raise on budget/deadline/cancel.

    ``step`` resumes the search from its state arrays; ``counters[1]`` counts expansions.
    Returns the final kernel status and the reason for a budget stop (or None).
    """
    limit = _NO_LIMIT if max_expansions is None else int(max_expansions)
    chunked = deadline is not None or cancel is not None
    while True:
        stop = min(limit, int(counters[1]) + CHECK_EVERY) if chunked else limit
        status = step(stop)
        if status != _k.BUDGET:
            return status, None
        if counters[1] >= limit:
            return status, "budget"
        if cancel is not None and cancel():
            return status, "cancel"
        if deadline is not None:
            clock, t_end = deadline
            now = clock()
            if now >= t_end:
                return status, ("deadline", now, t_end)


def _block_minima(a: np.ndarray, block: int) -> np.ndarray:
    """Smallest cost in each ``block × block`` block (partial blocks at the edges), float64."""
    rows, cols = a.shape
    m = np.minimum.reduceat(a, np.arange(0, rows, block), axis=0)
    m = np.minimum.reduceat(m, np.arange(0, cols, block), axis=1)
    return np.ascontiguousarray(m, dtype=np.float64)


def _octile(dr, dc):
    dr, dc = np.abs(dr), np.abs(dc)
    return np.maximum(dr, dc) + _k._SQRT2_M1 * np.minimum(dr, dc)


def _lattice_for(a: np.ndarray, h_weight: float, start, goal):
    """The corner-lattice potentials for a query, or empty arrays when they would not pay.

    They pay on grids whose costs vary (then block minima rise above the global
    minimum that the octile term uses) for queries long enough that the search
    dwarfs the O(cells) set-up.
    """
    empty = np.zeros(0), np.zeros(_k.LATTICE_LAYERS)
    bar = max(LATTICE_MIN_CELLS, math.sqrt(a.size) / 8)
    if h_weight <= 0 or _octile(start[0] - goal[0], start[1] - goal[1]) < bar:
        return empty
    bm = _block_minima(a, 1 << LATTICE_BLOCK_SHIFT)
    fin = bm[bm < np.inf]
    if fin.size == 0 or not fin.max() > h_weight:
        return empty
    return _lattice(bm, goal)


def _lattice(bm: np.ndarray, goal):
    """Corner-lattice potentials ``(L * 3,)`` and their interpolated values at the goal ``(3,)``."""
    block = 1 << LATTICE_BLOCK_SHIFT
    gr, gc = goal
    lh, lw = bm.shape[0] + 1, bm.shape[1] + 1
    # Per lattice edge, the smaller minimum of the (up to two) blocks beside it.
    side = np.full((bm.shape[0] + 2, bm.shape[1] + 2), np.inf)
    side[1:-1, 1:-1] = bm
    edge_h = np.ascontiguousarray(np.minimum(side[:-1, 1:-1], side[1:, 1:-1]).reshape(-1))  # (lh, lw-1)
    edge_v = np.ascontiguousarray(np.minimum(side[1:-1, :-1], side[1:-1, 1:]).reshape(-1))  # (lh-1, lw)
    bi, bj = gr // block, gc // block
    # Sources: the goal block's corners, at their (α, β)-weighted distance from the goal.
    src = np.array([(bi + di) * lw + bj + dj for di in (0, 1) for dj in (0, 1)], dtype=np.int64)
    dy = np.abs(np.array([bi, bi, bi + 1, bi + 1]) * block - (gr + 0.5))
    dx = np.abs(np.array([bj, bj + 1, bj, bj + 1]) * block - (gc + 0.5))
    n_lat = lh * lw
    dist = np.empty(n_lat)
    done = np.empty(n_lat, dtype=np.uint8)
    hkey = np.empty(4 * n_lat + 4)
    hnode = np.empty(4 * n_lat + 4, dtype=np.int64)
    lat = np.empty((lh, lw, _k.LATTICE_LAYERS))
    for layer, (alpha, beta) in enumerate(_LATTICE_SLOPES):
        src_dist = bm[bi, bj] * (alpha * dx + beta * dy)
        _k._lattice_dijkstra(edge_h, edge_v, lw, alpha * block, beta * block, src, src_dist, dist, done,
                             hkey, hnode)
        lat[:, :, layer] = dist.reshape(lh, lw)
    at_goal = _interpolate(lat, np.array([gr]), np.array([gc]))[0]
    return lat.reshape(-1), np.ascontiguousarray(at_goal)


def _interpolate(lat, rows, cols):
    """Bilinear lattice potentials at cell centres ``(rows[k], cols[k])``, as the kernel computes them."""
    block = 1 << LATTICE_BLOCK_SHIFT
    ty = ((rows & (block - 1)) + 0.5) / block
    tx = ((cols & (block - 1)) + 0.5) / block
    i, j = rows >> LATTICE_BLOCK_SHIFT, cols >> LATTICE_BLOCK_SHIFT
    ty, tx = ty[:, None], tx[:, None]
    return ((1 - ty) * (1 - tx) * lat[i, j] + (1 - ty) * tx * lat[i, j + 1]
            + ty * (1 - tx) * lat[i + 1, j] + ty * tx * lat[i + 1, j + 1])


def heuristic_grid(cost, goal_rc) -> np.ndarray:
    """The A* heuristic towards ``goal_rc`` at every cell, with the lattice bounds always on.

    A diagnostic (used by the tests to check admissibility and consistency): the
    kernel computes the same values on the fly, for the cells it reaches.

    Returns
    -------
    (rows, cols) float64
        ``max(octile distance × min cost, lattice bounds)``; lethal cells included.
    """
    from .planning import validate_cost_grid

    a = validate_cost_grid(cost)
    gr, gc = int(goal_rc[0]), int(goal_rc[1])
    h_weight = float(a[np.isfinite(a)].min())
    rr, cc = np.indices(a.shape)
    h = _octile(rr - gr, cc - gc) * h_weight
    bm = _block_minima(a, 1 << LATTICE_BLOCK_SHIFT)
    lat, at_goal = _lattice(bm, (gr, gc))
    lat = lat.reshape(bm.shape[0] + 1, bm.shape[1] + 1, _k.LATTICE_LAYERS)
    vals = _interpolate(lat, rr.reshape(-1), cc.reshape(-1)) - at_goal
    return np.maximum(h, vals.max(axis=1).reshape(a.shape))


def _search(cost, start_rc, goal_rc, use_heuristic, name, max_expansions, deadline, cancel) -> GridResult:
    a = _check_grid(cost)
    rows, cols = a.shape
    width = cols + 2
    start_rc = (int(start_rc[0]), int(start_rc[1]))
    goal_rc = (int(goal_rc[0]), int(goal_rc[1]))
    where = f"from (row {start_rc[0]}, col {start_rc[1]}) to (row {goal_rc[0]}, col {goal_rc[1]})"
    # One ring of lethal cells around the grid: no bounds checks in the kernel.
    padded = np.full((rows + 2, width), np.inf, dtype=np.float32)
    padded[1:-1, 1:-1] = a
    flat = padded.reshape(-1)
    n = flat.size
    _check_size(n)
    start = (start_rc[0] + 1) * width + start_rc[1] + 1
    goal = (goal_rc[0] + 1) * width + goal_rc[1] + 1

    # The smallest cost bounds every move from below (lethal cells are inf and the
    # start is traversable, so the minimum is finite).
    h_weight = float(a.min()) if use_heuristic else 0.0
    lattice, lattice_goal = _lattice_for(a, h_weight, start_rc, goal_rc)

    g = np.empty(n, dtype=np.float64)
    parent = np.empty(n, dtype=np.int32)
    state = np.zeros(n, dtype=np.uint8)
    heap = [np.empty(INITIAL_HEAP, dtype=np.float64), np.empty(INITIAL_HEAP, dtype=np.int32)]
    g[start] = 0.0
    parent[start] = start
    state[start] = _k.OPEN
    heap[0][0] = 0.0
    heap[1][0] = start
    counters = np.array([1, 0], dtype=np.int64)

    def step(stop):
        while True:
            st = _k._astar_search(flat, width, goal, h_weight, TIE_EPS, lattice, LATTICE_BLOCK_SHIFT,
                                  lattice_goal, g, parent, state, heap[0], heap[1], counters, stop)
            if st != _k.HEAP_FULL:
                return st
            size = int(counters[0])
            for k, arr in enumerate(heap):  # lazy deletion can hold more entries than cells
                bigger = np.empty(2 * arr.size, dtype=arr.dtype)
                bigger[:size] = arr[:size]
                heap[k] = bigger

    status, why = _run_chunks(step, counters, max_expansions, deadline, cancel)
    expanded = int(counters[1])
    if status == _k.EXHAUSTED:
        raise NoPathFound(_no_path_message(a, expanded, expanded, where, "start"))
    if status == _k.BUDGET:
        if why == "budget":
            raise PlanningTimedOut(f"{name}: max_expansions={max_expansions} reached before the goal "
                                   f"was expanded, planning {where}; raise max_expansions or plan a "
                                   f"nearer goal")
        if why == "cancel":
            raise PlanningCancelled(f"{name}: cancelled after {expanded} cells expanded, planning {where}")
        _, now, t_end = why
        raise PlanningTimedOut(f"{name}: deadline passed (clock {now:.3f} s >= deadline {t_end:.3f} s) "
                               f"after {expanded} cells expanded, planning {where}")

    out = np.empty(4 * (rows + cols), dtype=np.int64)
    count = _k._trace_parents(parent, start, goal, out)
    if count > out.size:
        out = np.empty(count, dtype=np.int64)
        count = _k._trace_parents(parent, start, goal, out)
    if count < 0:  # pragma: no cover - would be a kernel bug
        raise RuntimeError(f"{name}: broken parent chain planning {where}")
    idx = out[:count]
    pts = np.empty((count, 2), dtype=np.float64)
    pts[:, 0] = idx // width - 1
    pts[:, 1] = idx % width - 1
    log.debug("%s %s: cost %.6g, %d cells expanded", name, where, g[goal], expanded)
    return GridResult(points_rcf=pts, cost=float(g[goal]), expanded=expanded,
                      info={"heuristic_weight": h_weight, "lattice_heuristic": bool(lattice.size)})


def _no_path_message(cost, reachable: int, expanded: int, where: str, searched_from: str) -> str:
    """Explain an exhausted search: which end is walled off, judged by the region sizes.

    ``reachable`` cells were reachable from ``searched_from`` ("start" or "goal"); if
    they are at most half of the traversable cells, that end sits in the smaller
    region, otherwise the other end does.
    """
    free = int(np.count_nonzero(cost < np.inf))
    other = "goal" if searched_from == "start" else "start"
    if reachable * 2 <= free:
        enclosed = (f"the {searched_from}'s region is walled off by lethal cells "
                    f"(only {reachable} of {free} traversable cells are reachable from the "
                    f"{searched_from})")
    else:
        enclosed = (f"the {other}'s region is walled off by lethal cells "
                    f"(all {reachable} cells reachable from the {searched_from}, of {free} traversable, "
                    f"were searched without reaching the {other})")
    return f"no path {where}: {enclosed}; {expanded} cells expanded"


def search(cost, start_rc, goal_rc, *, max_expansions=None, deadline=None, cancel=None) -> GridResult:
    """A* on a validated cost grid (the ``"astar"`` back-end of :func:`nav.plan_grid`).

    Parameters
    ----------
    cost : (rows, cols) float32, C-contiguous
        Cost per cell, ``> 0``, ``inf`` = lethal (already checked by
        :func:`nav.planning.validate_cost_grid`).
    start_rc, goal_rc : (int, int)
        In-bounds, traversable cells.
    max_expansions : int, optional
        Raise :class:`~nav.errors.PlanningTimedOut` after this many expansions.
    deadline : (clock, t_end), optional
        Raise :class:`~nav.errors.PlanningTimedOut` once ``clock() >= t_end``
        (checked every :data:`CHECK_EVERY` expansions).
    cancel : callable, optional
        Raise :class:`~nav.errors.PlanningCancelled` once ``cancel()`` is true
        (checked every :data:`CHECK_EVERY` expansions).

    Returns
    -------
    GridResult
        ``points_rcf`` (N, 2) float64 cell centres from start to goal, the path
        ``cost`` (float64 sum in path order, equal to
        :func:`nav.planning.grid_path_cost`), ``expanded`` cells, and ``info``
        with the ``heuristic_weight`` used.

    Raises
    ------
    NoPathFound, PlanningTimedOut, PlanningCancelled
    """
    return _search(cost, start_rc, goal_rc, True, "astar", max_expansions, deadline, cancel)


def search_dijkstra(cost, start_rc, goal_rc, *, max_expansions=None, deadline=None,
                    cancel=None) -> GridResult:
    """Dijkstra (A* with a zero heuristic); same parameters and result as :func:`search`."""
    return _search(cost, start_rc, goal_rc, False, "dijkstra", max_expansions, deadline, cancel)
