"""D* Lite: incremental replanning on an 8-connected cost grid (Numba).

Koenig & Likhachev, "D* Lite", AAAI 2002 (the optimized version, Figure 4). The
search runs from the goal to the start and keeps its state between calls, so a
rover that learns about new hazards near itself, or drives on, repairs only the
part of the search those changes affect instead of planning from scratch::

    dsl = DStarLite(cost, start_rc, goal_rc)
    path = dsl.plan()
    dsl.update_cells(rc, new_costs)   # new obstacles / cleared cells
    dsl.move_start(path.cells_rc[10]) # the rover drove on
    path = dsl.replan()               # same cost as a fresh plan, far fewer expansions

Costs follow :mod:`nav.planning` (move length × mean of the two cells' costs,
``inf`` = lethal, no corner cutting). The heuristic is the octile distance times
the smallest cost seen so far; if an update brings a cheaper cell, the weight is
lowered and the queue re-keyed so it stays admissible.
"""
from __future__ import annotations

import logging
import math
import time

import numpy as np

from . import _dstar_lite_kernels as _k
from .astar import _check_size, _no_path_message, _octile, _run_chunks
from .errors import (GoalInHazard, NoPathFound, PlanningCancelled, PlanningTimedOut,
                     StartInHazard)
from .path import Path
from .planning import GridResult, _cancel_fn, _check_rc, _deadline, cells_along, validate_cost_grid

__all__ = ["DStarLite", "search"]

log = logging.getLogger(__name__)

_NO_LIMIT = np.iinfo(np.int64).max
#: Queued keys within this relative distance of the start's key are still processed
#: (floating-point ties; see ``_dstar_compute``). Far above float64 rounding of path
#: sums, far below any cost difference that matters.
_KEY_REL_TOL = 1e-9


class DStarLite:
    """An incremental planner that keeps its search between calls.

    Parameters
    ----------
    cost : (rows, cols) array
        Cost per cell, ``> 0``, ``np.inf`` = lethal; copied to float32 (the
        planner owns its copy; change it with :meth:`update_cells`).
    start_rc, goal_rc : (int, int)
        Start (the rover) and goal cells, inside the grid.
    cell_size_m : float
        Only scales :attr:`Path.length_m`.

    Notes
    -----
    Memory: about 45 bytes per cell (``g``, ``rhs``, the two heap keys, heap slots,
    heap positions, the padded cost copy and a mark byte), e.g. 190 MB for
    2048 × 2048.

    Cost: the first plan is a full search from the goal (about 2-3× the time of
    :func:`nav.astar.search`, whose heuristic is stronger). A replan costs in
    proportion to the vertices whose cost-to-goal changed *and* lie within the
    heuristic's focus on the rover; ``benchmarks/bench_planners.py`` measures it.
    """

    def __init__(self, cost, start_rc, goal_rc, *, cell_size_m: float = 1.0):
        a = validate_cost_grid(cost)
        cs = float(cell_size_m)
        if not (math.isfinite(cs) and cs > 0):
            raise ValueError(f"cell_size_m must be a finite number > 0, got {cell_size_m!r}")
        rows, cols = self._shape = a.shape
        self._width = cols + 2
        self._cell_size_m = cs
        s = _check_rc(start_rc, a.shape, "start")
        g = _check_rc(goal_rc, a.shape, "goal")
        # The planner's own copy, padded with one ring of lethal cells (no bounds checks).
        padded = np.full((rows + 2, cols + 2), np.inf, dtype=np.float32)
        padded[1:-1, 1:-1] = a
        self._grid = padded[1:-1, 1:-1]
        self._cost = padded.reshape(-1)
        n = self._cost.size
        _check_size(n)
        lowest = float(a.min())
        w = lowest if math.isfinite(lowest) else 1.0   # an all-lethal grid plans nothing anyway
        self._g = np.full(n, np.inf)
        self._rhs = np.full(n, np.inf)
        self._key1 = np.empty(n)
        self._key2 = np.empty(n)
        self._node = np.empty(n, dtype=np.int32)
        self._pos = np.full(n, -1, dtype=np.int32)
        self._mark = None   # work space of update_cells, allocated on first use
        start, goal = self._index(s), self._index(g)
        self._istate = np.array([1, start, goal, 0], dtype=np.int64)
        self._fstate = np.array([0.0, w])   # [km, h_weight]
        self._rhs[goal] = 0.0
        self._node[0] = goal
        self._pos[goal] = 0
        self._key1[0] = float(_octile(s[0] - g[0], s[1] - g[1])) * w
        self._key2[0] = 0.0

    def _index(self, rc) -> int:
        return (int(rc[0]) + 1) * self._width + int(rc[1]) + 1

    def _rc(self, index: int) -> tuple[int, int]:
        r, c = divmod(int(index), self._width)
        return r - 1, c - 1

    # ----------------------------------------------------------------- state
    @property
    def cost(self) -> np.ndarray:
        """The planner's current cost grid (a read-only view)."""
        v = self._grid.view()
        v.flags.writeable = False
        return v

    @property
    def shape(self) -> tuple[int, int]:
        return self._shape

    @property
    def start_rc(self) -> tuple[int, int]:
        return self._rc(self._istate[1])

    @property
    def goal_rc(self) -> tuple[int, int]:
        return self._rc(self._istate[2])

    @property
    def km(self) -> float:
        """Accumulated heuristic distance the start has moved (weighted), Koenig & Likhachev's k_m."""
        return float(self._fstate[0])

    @property
    def expanded_total(self) -> int:
        """Cells expanded since construction, over every plan/replan."""
        return int(self._istate[3])

    # --------------------------------------------------------------- changes
    def update_cells(self, rc, new_costs) -> int:
        """Change the cost of some cells; the next :meth:`replan` repairs the search.

        Parameters
        ----------
        rc : (N, 2) int array
            Cells ``(row, col)``, inside the grid. Repeated cells: the last value wins.
        new_costs : float or (N,) array
            New costs, ``> 0``; ``np.inf`` makes a cell lethal, a finite value frees it.

        Returns
        -------
        int
            How many cells actually changed cost.
        """
        cells = np.asarray(rc)
        if cells.ndim == 1 and cells.shape == (2,):
            cells = cells.reshape(1, 2)
        if cells.ndim != 2 or cells.shape[1] != 2:
            raise ValueError(f"rc must be an (N, 2) array of (row, col) cells, got shape {cells.shape}")
        if cells.size and not np.issubdtype(cells.dtype, np.integer):
            if not np.issubdtype(cells.dtype, np.floating) or not np.all(cells == np.round(cells)):
                raise ValueError(f"rc must hold integer cells, got dtype {cells.dtype}")
        cells = cells.astype(np.int64)
        rows, cols = self._shape
        out = (cells[:, 0] < 0) | (cells[:, 0] >= rows) | (cells[:, 1] < 0) | (cells[:, 1] >= cols)
        if out.any():
            r, c = cells[np.argmax(out)]
            raise ValueError(f"rc has a cell outside the {rows}x{cols} grid: (row {r}, col {c})")
        vals = np.asarray(new_costs)
        if not (np.issubdtype(vals.dtype, np.floating) or np.issubdtype(vals.dtype, np.integer)):
            raise ValueError(f"new_costs must hold real numbers, got dtype {vals.dtype}")
        try:
            vals = np.broadcast_to(vals, (len(cells),))
        except ValueError:
            raise ValueError(f"new_costs must be a number or an array of {len(cells)} costs (one per "
                             f"cell in rc), got shape {vals.shape}") from None
        vals32 = np.array(vals, dtype=np.float32)   # a writable copy (vals may be a broadcast view)
        bad = np.isnan(vals32) | (vals32 <= 0)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"new_costs must be > 0 (np.inf = lethal), got {float(vals[i])!r} for "
                             f"(row {cells[i, 0]}, col {cells[i, 1]})")
        idx = np.ascontiguousarray((cells[:, 0] + 1) * self._width + cells[:, 1] + 1)
        if idx.size == 0:
            return 0
        if self._mark is None:
            self._mark = np.zeros(self._cost.size, dtype=np.uint8)
        changed = _k._dstar_update_cells(self._cost, self._width, self._g, self._rhs, self._key1,
                                         self._key2, self._node, self._pos, self._istate, self._fstate,
                                         idx, vals32, self._mark, np.empty(idx.size, dtype=np.float32),
                                         np.empty(9 * idx.size, dtype=np.int64))
        lowest = float(vals32.min())
        if lowest < self._fstate[1]:   # the heuristic would overestimate: lower its weight
            self._reweight(lowest)
        return int(changed)

    def move_start(self, rc) -> None:
        """The rover is now at ``rc``: shift the heuristic's focus (``km``) for the next replan."""
        r, c = _check_rc(rc, self._shape, "start")
        sr, sc = self.start_rc
        self._fstate[0] += float(_octile(r - sr, c - sc)) * self._fstate[1]   # km += h(old, new)
        self._istate[1] = self._index((r, c))

    def _reweight(self, w: float) -> None:
        """Lower the heuristic weight to ``w`` and rebuild every queued key (km restarts at 0).

        Keys computed exactly for the current start are valid D* Lite keys, and a
        sorted array is a valid heap.
        """
        self._fstate[1] = w
        self._fstate[0] = 0.0
        size = int(self._istate[0])
        nodes = self._node[:size].astype(np.int64)
        k2 = np.minimum(self._g[nodes], self._rhs[nodes])
        sr, sc = self.start_rc
        k1 = k2 + _octile(nodes // self._width - 1 - sr, nodes % self._width - 1 - sc) * w
        order = np.lexsort((k2, k1))
        nodes = nodes[order]
        self._node[:size] = nodes
        self._key1[:size] = k1[order]
        self._key2[:size] = k2[order]
        self._pos[nodes] = np.arange(size, dtype=np.int32)
        log.debug("D* Lite: heuristic weight lowered to %g, %d keys rebuilt", w, size)

    # -------------------------------------------------------------- planning
    def _where(self) -> str:
        (sr, sc), (gr, gc) = self.start_rc, self.goal_rc
        return f"from (row {sr}, col {sc}) to (row {gr}, col {gc})"

    def _compute(self, max_expansions=None, deadline=None, cancel=None) -> GridResult:
        """Repair the search and extract the path (``deadline``/``cancel`` as in :func:`search`)."""
        (sr, sc), (gr, gc) = self.start_rc, self.goal_rc
        if not self._grid[sr, sc] < np.inf:
            raise StartInHazard(f"start (row {sr}, col {sc}) is in a lethal cell (cost inf)")
        if not self._grid[gr, gc] < np.inf:
            raise GoalInHazard(f"goal (row {gr}, col {gc}) is in a lethal cell (cost inf)")
        first = int(self._istate[3])
        counters = np.zeros(2, dtype=np.int64)  # [unused, expansions in this call] for _run_chunks

        def step(stop):
            st = _k._dstar_compute(self._cost, self._width, self._g, self._rhs, self._key1, self._key2,
                                   self._node, self._pos, self._istate, self._fstate,
                                   first + min(stop, _NO_LIMIT - first), _KEY_REL_TOL)
            counters[1] = self._istate[3] - first
            return st

        status, why = _run_chunks(step, counters, max_expansions, deadline, cancel)
        expanded = int(self._istate[3]) - first
        where = self._where()
        if status == _k.BUDGET:
            if why == "budget":
                raise PlanningTimedOut(f"dstar_lite: max_expansions={max_expansions} reached before the "
                                       f"search was repaired, planning {where}; the search keeps its "
                                       f"progress, call replan() to continue")
            if why == "cancel":
                raise PlanningCancelled(f"dstar_lite: cancelled after {expanded} cells expanded, "
                                        f"planning {where}")
            _, now, t_end = why
            raise PlanningTimedOut(f"dstar_lite: deadline passed (clock {now:.3f} s >= deadline "
                                   f"{t_end:.3f} s) after {expanded} cells expanded, planning {where}")
        start = int(self._istate[1])
        # The optimized version stops with an overconsistent start allowed: rhs(start)
        # is its cost to the goal, and the path follows the settled g of its neighbours.
        if not self._rhs[start] < np.inf:
            reach = int(np.count_nonzero(self._g < np.inf))
            raise NoPathFound(_no_path_message(self._grid, reach, expanded, where, "goal"))
        rows, cols = self._shape
        out = np.empty(4 * (rows + cols), dtype=np.int64)
        total = np.zeros(1)
        goal = int(self._istate[2])
        count = _k._dstar_extract_path(self._cost, self._width, self._g, start, goal, out, total)
        if count > out.size:
            out = np.empty(count, dtype=np.int64)
            count = _k._dstar_extract_path(self._cost, self._width, self._g, start, goal, out, total)
        if count < 0:  # pragma: no cover - would be a kernel bug
            raise RuntimeError(f"dstar_lite: could not follow g from start to goal, planning {where}")
        idx = out[:count]
        pts = np.empty((count, 2), dtype=np.float64)
        pts[:, 0] = idx // self._width - 1
        pts[:, 1] = idx % self._width - 1
        log.debug("dstar_lite %s: cost %.6g, %d cells expanded", where, total[0], expanded)
        return GridResult(points_rcf=pts, cost=float(total[0]), expanded=expanded,
                          info={"heuristic_weight": float(self._fstate[1]), "km": self.km,
                                "rhs_start": float(self._rhs[start])})

    def plan(self, *, max_expansions: int | None = None, deadline_s: float | None = None, cancel=None,
             clock=time.monotonic) -> Path:
        """Compute (or repair) the shortest path from the current start to the goal.

        The first call searches from scratch; later calls reuse everything that is
        still valid after :meth:`update_cells` and :meth:`move_start`.

        Parameters
        ----------
        max_expansions : int, optional
            Give up with :class:`~nav.errors.PlanningTimedOut` after this many
            expansions in this call. The progress is kept: calling again continues.
        deadline_s : float, optional
            Give up after this many seconds of ``clock`` (progress kept likewise).
        cancel : threading.Event or callable, optional
            Raise :class:`~nav.errors.PlanningCancelled` when set (progress kept).
        clock : callable
            Monotonic seconds, for ``deadline_s``.

        Returns
        -------
        Path
            ``planner="dstar_lite"``, ``expanded`` counts this call's expansions.

        Raises
        ------
        StartInHazard, GoalInHazard, NoPathFound, PlanningTimedOut, PlanningCancelled
        """
        if max_expansions is not None and (int(max_expansions) != max_expansions or max_expansions < 1):
            raise ValueError(f"max_expansions must be an integer >= 1, got {max_expansions!r}")
        res = self._compute(None if max_expansions is None else int(max_expansions),
                            _deadline(deadline_s, clock), _cancel_fn(cancel))
        return _to_path(res, self._shape, self._cell_size_m)

    def replan(self, **kwargs) -> Path:
        """Repair the search after :meth:`update_cells` / :meth:`move_start`; same as :meth:`plan`."""
        return self.plan(**kwargs)

    def __repr__(self) -> str:
        rows, cols = self._shape
        (sr, sc), (gr, gc) = self.start_rc, self.goal_rc
        return (f"DStarLite({rows}x{cols}, start=(row {sr}, col {sc}), goal=(row {gr}, col {gc}), "
                f"queued={int(self._istate[0])}, expanded_total={self.expanded_total})")


def _to_path(res: GridResult, shape, cell_size_m: float) -> Path:
    """Wrap a grid result as :func:`nav.plan_grid` does."""
    pts = res.points_rcf
    d = np.diff(pts, axis=0)
    length_cells = float(np.sqrt((d * d).sum(axis=1)).sum())
    return Path(points_rcf=pts, cells_rc=cells_along(pts, shape), cost=float(res.cost),
                length_m=length_cells * cell_size_m, expanded=int(res.expanded), planner="dstar_lite",
                xy_m=None, info=dict(res.info))


def search(cost, start_rc, goal_rc, *, max_expansions=None, deadline=None, cancel=None) -> GridResult:
    """Plan once with a fresh :class:`DStarLite` (the ``"dstar_lite"`` back-end of :func:`nav.plan_grid`).

    Parameters and result as :func:`nav.astar.search`.
    """
    return DStarLite(cost, start_rc, goal_rc)._compute(max_expansions, deadline, cancel)
