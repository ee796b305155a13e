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
``inf`` = lethal, no corner cutting). The heuristic is the larger of the octile
distance times the smallest cost seen so far and, on grids whose costs vary, the
corner-lattice bounds of :mod:`nav.astar` used ALT-style (``|φ(u) - φ(start)|``
for potentials ``φ`` built once from the first start; see
:mod:`nav._dstar_lite_kernels`). Both stay valid as the start moves. If an update
brings a cell cheaper than the smallest cost (or than its 8 × 8 block's minimum),
the weight is lowered (or the potentials rebuilt) and the queue re-keyed before the
next replan, so the heuristic stays admissible.
"""
from __future__ import annotations

import logging
import math
import time

import numpy as np

from . import _dstar_lite_kernels as _k
from . import astar as _astar
from .astar import (_block_minima, _check_size, _interpolate, _lattice, _no_path_message, _octile,
                    _run_chunks)
from .errors import (GoalInHazard, NoPathFound, PlanningCancelled, PlanningTimedOut,
                     StartInHazard)
from .path import Path
from .planning import GridResult, _cancel_fn, _check_rc, _deadline, validate_cost_grid, wrap_result

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
    lattice_heuristic : bool
        Add the corner-lattice bounds to the octile heuristic when they pay (long
        queries on grids whose costs vary, the rule of :mod:`nav.astar`). They cut
        the first plan's expansions 2-3× (about half its time), but replans after
        updates that lower costs get dearer: the rebuilt, weaker bounds reach
        vertices the focused first plan never settled. Off by default, because a
        rover replans far more often than it plans; :func:`search` (one plan)
        turns them on.

    Notes
    -----
    Memory: about 45 bytes per cell (``g``, ``rhs``, the two heap keys, heap slots,
    heap positions, the padded cost copy and a mark byte), e.g. 190 MB for
    2048 × 2048.

    Cost: the first plan is a full search from the goal (see
    ``benchmarks/bench_planners.py`` for its ratio to :func:`nav.astar.search`). A
    replan costs in proportion to the vertices whose cost-to-goal changed *and* lie
    within the heuristic's focus on the rover. An update that makes a cell cheaper
    than its block's minimum costs a rebuild of the lattice potentials (O(cells / 64)
    Dijkstra) and of the queue keys at the next replan.
    """

    def __init__(self, cost, start_rc, goal_rc, *, cell_size_m: float = 1.0,
                 lattice_heuristic: bool = False):
        a = validate_cost_grid(cost)
        cs = float(cell_size_m)
        if not (math.isfinite(cs) and cs > 0):
            raise ValueError(f"cell_size_m must be a finite number > 0, got {cell_size_m!r}")
        if not isinstance(lattice_heuristic, (bool, np.bool_)):
            raise ValueError(f"lattice_heuristic must be True or False, got {lattice_heuristic!r}")
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
        self._gr = np.full(2 * n, np.inf)     # g and rhs interleaved
        self._g = self._gr[0::2]
        self._rhs = self._gr[1::2]
        self._hkey = np.empty(2 * n)          # heap keys (k1, k2) interleaved
        self._node = np.empty(n, dtype=np.int32)
        self._pos = np.full(n, -1, dtype=np.int32)
        self._mark = None   # work space of update_cells, allocated on first use
        start, goal = self._index(s), self._index(g)
        self._istate = np.array([1, start, goal, 0], dtype=np.int64)
        self._fstate = np.array([0.0, w, 0.0, 0.0, 0.0])   # [km, h_weight, φ(start) × 3]
        self._lattice = np.zeros(0)
        self._shift = int(_astar.LATTICE_BLOCK_SHIFT)   # blocks of 2**shift cells (as nav.astar)
        self._block_min = None     # the block minima the lattice potentials were built from
        self._rekey = False        # the heuristic changed: rebuild / re-key before the next search
        bar = max(_astar.LATTICE_MIN_CELLS, math.sqrt(a.size) / 8)   # as nav.astar decides
        if lattice_heuristic and _octile(s[0] - g[0], s[1] - g[1]) >= bar:
            bm = _block_minima(a, 1 << self._shift)
            fin = bm[bm < np.inf]
            if fin.size and fin.max() > w:   # costs vary: the lattice bounds pay
                self._block_min = bm
                self._build_lattice(s)
        self._rhs[goal] = 0.0
        self._node[0] = goal
        self._pos[goal] = 0
        self._hkey[0] = self._h_rc(g)
        self._hkey[1] = 0.0

    def _build_lattice(self, source_rc) -> None:
        """(Re)build the lattice potentials from ``_block_min`` with ``source_rc`` as their source."""
        lat, at_source = _lattice(self._block_min, source_rc)
        self._lattice = lat
        self._fstate[2:5] = at_source

    def _phi(self, rc) -> np.ndarray:
        """The three lattice potentials at cell ``rc`` (as the kernel interpolates them)."""
        bm = self._block_min
        lat = self._lattice.reshape(bm.shape[0] + 1, bm.shape[1] + 1, 3)
        return _interpolate(lat, np.array([int(rc[0])]), np.array([int(rc[1])]))[0]

    def _h_rc(self, rc) -> float:
        """The heuristic between cell ``rc`` and the current start (float; see the kernels)."""
        sr, sc = self.start_rc
        h = float(_octile(int(rc[0]) - sr, int(rc[1]) - sc)) * float(self._fstate[1])
        if self._lattice.size:
            h = max(h, float(np.abs(self._phi(rc) - self._fstate[2:5]).max()))
        return h

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
        changed = _k._dstar_update_cells(self._cost, self._width, self._gr, self._hkey, self._node,
                                         self._pos, self._istate, self._fstate, self._lattice,
                                         self._shift, idx, vals32, self._mark,
                                         np.empty(idx.size, dtype=np.float32),
                                         np.empty(9 * idx.size, dtype=np.int64))
        # Keep the heuristic admissible: a cell cheaper than the octile weight or than
        # the block minimum the potentials were built from invalidates them.
        lowest = float(vals32.min())
        if lowest < self._fstate[1]:
            self._fstate[1] = lowest
            self._rekey = True
        if self._block_min is not None:
            br = cells[:, 0] >> self._shift
            bc = cells[:, 1] >> self._shift
            below = vals32 < self._block_min[br, bc]
            if below.any():
                np.minimum.at(self._block_min, (br[below], bc[below]), vals32[below].astype(np.float64))
                self._rekey = True
        return int(changed)

    def move_start(self, rc) -> None:
        """The rover is now at ``rc``: shift the heuristic's focus (``km``) for the next replan."""
        r, c = _check_rc(rc, self._shape, "start")
        if not self._rekey:   # (a pending re-key restarts km anyway)
            self._fstate[0] += self._h_rc((r, c))   # km += h(old start, new start)
            if self._lattice.size:
                self._fstate[2:5] = self._phi((r, c))
        self._istate[1] = self._index((r, c))

    def _refresh_heuristic(self) -> None:
        """After an update made the heuristic inadmissible: rebuild the lattice potentials
        (from the current start) and every queued key; ``km`` restarts at 0.

        Keys computed exactly for the current start and heuristic are valid D* Lite keys.
        """
        if self._block_min is not None:
            self._build_lattice(self.start_rc)
        self._fstate[0] = 0.0
        _k._dstar_rekey(self._cost, self._width, self._gr, self._hkey, self._node, self._pos,
                        self._istate, self._fstate, self._lattice, self._shift)
        self._rekey = False
        log.debug("D* Lite: heuristic rebuilt (weight %g), %d keys recomputed", self._fstate[1],
                  int(self._istate[0]))

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
        if self._rekey:
            self._refresh_heuristic()
        first = int(self._istate[3])
        counters = np.zeros(2, dtype=np.int64)  # [unused, expansions in this call] for _run_chunks

        def step(stop):
            st = _k._dstar_compute(self._cost, self._width, self._gr, self._hkey, self._node, self._pos,
                                   self._istate, self._fstate, self._lattice, self._shift,
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
        count = _k._dstar_extract_path(self._cost, self._width, self._gr, start, goal, out, total)
        if count > out.size:
            out = np.empty(count, dtype=np.int64)
            count = _k._dstar_extract_path(self._cost, self._width, self._gr, start, goal, out, total)
        if count < 0:  # pragma: no cover - would be a kernel bug
            raise RuntimeError(f"dstar_lite: could not follow g from start to goal, planning {where}")
        idx = out[:count]
        pts = np.empty((count, 2), dtype=np.float64)
        pts[:, 0] = idx // self._width - 1
        pts[:, 1] = idx % self._width - 1
        log.debug("dstar_lite %s: cost %.6g, %d cells expanded", where, total[0], expanded)
        return GridResult(points_rcf=pts, cost=float(total[0]), expanded=expanded,
                          info={"heuristic_weight": float(self._fstate[1]), "km": self.km,
                                "lattice_heuristic": bool(self._lattice.size),
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
    return wrap_result(res, shape, cell_size_m, "dstar_lite")


def search(cost, start_rc, goal_rc, *, max_expansions=None, deadline=None, cancel=None) -> GridResult:
    """Plan once with a fresh :class:`DStarLite` (the ``"dstar_lite"`` back-end of :func:`nav.plan_grid`).

    Parameters and result as :func:`nav.astar.search`.
    """
    return DStarLite(cost, start_rc, goal_rc, lattice_heuristic=True)._compute(max_expansions, deadline,
                                                                              cancel)
