"""One planning API for every planner.

Cost convention
---------------
The grid is 8-connected. A move between neighbouring cells ``a`` and ``b`` costs
its length in cells (1 or √2) times the mean of the two cells' costs,
``len * (cost[a] + cost[b]) / 2``. ``np.inf`` marks a lethal cell; a diagonal move
may not cut the corner of a lethal cell (both orthogonal cells it passes between
must be finite). On a grid of 1.0 and inf the path cost is therefore the octile
shortest-path length, as in the Moving AI grid benchmarks.

Planners are registered in :data:`PLANNERS`; each implements
``search(cost, start_rc, goal_rc, *, max_expansions, deadline, cancel) -> GridResult``
on a validated C-contiguous float32 grid. This module validates, converts between
world and grid coordinates, explains failures and wraps the result in a
:class:`~nav.path.Path`.
"""
from __future__ import annotations

import math
import time
from typing import Callable, NamedTuple

import numpy as np

from .costmap import CostMap
from .errors import (GoalInHazard, GoalOutsideMap, StartInHazard,
                     StartOutsideMap)
from .path import Path

__all__ = ["plan", "plan_grid", "PLANNERS", "GridResult", "validate_cost_grid",
           "grid_path_cost", "cells_along", "wrap_result"]


class GridResult(NamedTuple):
    """What a planner's ``search`` returns (grid coordinates only)."""
    points_rcf: np.ndarray  # (N, 2) float64, cell centres at integers
    cost: float
    expanded: int
    info: dict


def _load_planner(name: str):
    if name in ("astar", "dijkstra"):
        from . import astar
        return astar.search_dijkstra if name == "dijkstra" else astar.search
    if name == "field_dstar":
        from . import field_dstar
        return field_dstar.search
    if name == "dstar_lite":
        from . import dstar_lite
        return dstar_lite.search
    raise ValueError(f"planner must be one of {sorted(PLANNERS)}, got {name!r}")


PLANNERS = ("astar", "dijkstra", "field_dstar", "dstar_lite")


def validate_cost_grid(cost, name: str = "cost") -> np.ndarray:
    """Check a cost grid and return it as C-contiguous float32.

    Rules: 2-D, at least 1×1, real numbers, no NaN, every finite value > 0
    (``np.inf`` = lethal).
    """
    a = np.asarray(cost)
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {a.shape}")
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise ValueError(f"{name} must hold real numbers, got dtype {a.dtype}")
    a = np.ascontiguousarray(a, dtype=np.float32)
    nan = np.isnan(a)
    if nan.any():
        r, c = np.argwhere(nan)[0]
        raise ValueError(f"{name} has NaN at (row {r}, col {c}); use np.inf for lethal cells")
    bad = a <= 0
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise ValueError(f"{name} must be > 0 everywhere (np.inf = lethal), got {float(a[r, c])!r} at (row {r}, col {c})")
    return a


def _check_rc(rc, shape, which: str):
    try:
        r, c = (int(v) for v in rc)
    except (TypeError, ValueError):
        raise ValueError(f"{which}_rc must be a (row, col) pair of integers, got {rc!r}") from None
    if not (0 <= r < shape[0] and 0 <= c < shape[1]):
        exc = StartOutsideMap if which == "start" else GoalOutsideMap
        raise exc(f"{which} (row {r}, col {c}) is outside the {shape[0]}x{shape[1]} grid")
    return r, c


def _deadline(deadline_s, clock):
    if deadline_s is None:
        return None
    d = float(deadline_s)
    if not (d > 0):
        raise ValueError(f"deadline_s must be > 0 seconds, got {deadline_s!r}")
    return (clock, clock() + d)


def _cancel_fn(cancel) -> Callable[[], bool] | None:
    if cancel is None:
        return None
    if hasattr(cancel, "is_set"):
        return cancel.is_set
    if callable(cancel):
        return cancel
    raise ValueError(f"cancel must be a threading.Event or a callable returning bool, got {cancel!r}")


def plan_grid(cost, start_rc, goal_rc, planner: str = "astar", *, max_expansions: int | None = None,
              deadline_s: float | None = None, cancel=None, clock: Callable[[], float] = time.monotonic,
              cell_size_m: float = 1.0) -> Path:
    """Plan on a bare cost grid.

    Parameters
    ----------
    cost : (rows, cols) array
        Cost per cell, > 0; ``np.inf`` = lethal. Converted to float32.
    start_rc, goal_rc : (int, int)
        Start and goal cells.
    planner : {"astar", "dijkstra", "field_dstar", "dstar_lite"}
    max_expansions : int, optional
        Give up with :class:`~nav.errors.PlanningTimedOut` after this many expansions.
    deadline_s : float, optional
        Give up after this many seconds of ``clock``.
    cancel : threading.Event or callable, optional
        Checked between batches of expansions; raises :class:`~nav.errors.PlanningCancelled`.
    cell_size_m : float
        Scales :attr:`Path.length_m` and :attr:`Path.xy_m` (grid corner at the world origin).

    Raises
    ------
    StartOutsideMap, GoalOutsideMap, StartInHazard, GoalInHazard, NoPathFound,
    PlanningTimedOut, PlanningCancelled, ValueError
    """
    if planner not in PLANNERS:
        raise ValueError(f"planner must be one of {list(PLANNERS)}, got {planner!r}")
    a = validate_cost_grid(cost)
    s = _check_rc(start_rc, a.shape, "start")
    g = _check_rc(goal_rc, a.shape, "goal")
    if not np.isfinite(a[s]):
        raise StartInHazard(f"start (row {s[0]}, col {s[1]}) is in a lethal cell (cost inf)")
    if not np.isfinite(a[g]):
        raise GoalInHazard(f"goal (row {g[0]}, col {g[1]}) is in a lethal cell (cost inf)")
    if max_expansions is not None and (int(max_expansions) != max_expansions or max_expansions < 1):
        raise ValueError(f"max_expansions must be an integer >= 1, got {max_expansions!r}")
    search = _load_planner(planner)
    res = search(a, s, g, max_expansions=None if max_expansions is None else int(max_expansions),
                 deadline=_deadline(deadline_s, clock), cancel=_cancel_fn(cancel))
    return wrap_result(res, a.shape, cell_size_m, planner)


def wrap_result(res: GridResult, shape, cell_size_m: float, planner: str) -> Path:
    """A planner's :class:`GridResult` as a :class:`~nav.path.Path` on a bare grid.

    World points follow the :class:`~nav.terrain_map.TerrainMap` convention with the
    grid's lower-left corner at the origin: ``x = (col + 0.5)·cell``, ``y = (row + 0.5)·cell``.
    """
    pts = np.asarray(res.points_rcf, dtype=np.float64).reshape(-1, 2)
    d = np.diff(pts, axis=0)
    length_cells = float(np.sqrt((d * d).sum(axis=1)).sum())
    cs = float(cell_size_m)
    xy = np.stack([(pts[:, 1] + 0.5) * cs, (pts[:, 0] + 0.5) * cs], axis=1)
    return Path(points_rcf=pts, cells_rc=cells_along(pts, shape), cost=float(res.cost),
                length_m=length_cells * cs, expanded=int(res.expanded), planner=planner,
                xy_m=xy, info=dict(res.info))


def plan(costmap: CostMap, start_xy_m, goal_xy_m, planner: str = "astar", **kwargs) -> Path:
    """Plan on a :class:`~nav.costmap.CostMap` between world points (metres).

    Start and goal snap to the cells that contain them; the returned path's first
    and last vertices are those cells' centres. Keyword arguments are those of
    :func:`plan_grid` (except ``cell_size_m``). Failures explain themselves in
    world coordinates, e.g. ``goal (x=12.40 m, y=3.10 m) is in a lethal cell:
    slope 34.1° > max_slope_deg 25``.
    """
    if not isinstance(costmap, CostMap):
        raise ValueError(f"costmap must be a nav.CostMap, got {type(costmap).__name__}")
    if "cell_size_m" in kwargs:
        raise ValueError("cell_size_m is taken from the costmap; do not pass it")
    tm = costmap.terrain
    rcs = []
    for which, xy in (("start", start_xy_m), ("goal", goal_xy_m)):
        try:
            x, y = (float(v) for v in xy)
        except (TypeError, ValueError):
            raise ValueError(f"{which}_xy_m must be an (x, y) pair in metres, got {xy!r}") from None
        if not (math.isfinite(x) and math.isfinite(y)):
            raise ValueError(f"{which}_xy_m must be finite, got {xy!r}")
        rc = tm.world_to_cell((x, y))
        x0, x1, y0, y1 = tm.extent_m
        if not tm.in_bounds(rc):
            exc = StartOutsideMap if which == "start" else GoalOutsideMap
            raise exc(f"{which} (x={x:.2f} m, y={y:.2f} m) is outside the map "
                      f"(x {x0:.2f}..{x1:.2f} m, y {y0:.2f}..{y1:.2f} m)")
        r, c = int(rc[0]), int(rc[1])
        if not np.isfinite(costmap.cost[r, c]):
            exc = StartInHazard if which == "start" else GoalInHazard
            raise exc(f"{which} (x={x:.2f} m, y={y:.2f} m) is in a lethal cell: {costmap.explain((r, c))}")
        rcs.append((r, c))
    p = plan_grid(costmap.cost, rcs[0], rcs[1], planner, cell_size_m=tm.cell_size_m, **kwargs)
    return Path(points_rcf=p.points_rcf, cells_rc=p.cells_rc, cost=p.cost, length_m=p.length_m,
                expanded=p.expanded, planner=p.planner, xy_m=tm.cell_to_world(p.points_rcf), info=p.info)


def grid_path_cost(cost, cells_rc) -> float:
    """Cost of an 8-connected cell path under the convention above (reference, pure Python).

    Raises ValueError if two consecutive cells are not neighbours, a cell is lethal,
    or a diagonal move cuts a lethal corner.
    """
    a = np.asarray(cost, dtype=np.float64)
    cells = np.asarray(cells_rc, dtype=np.int64).reshape(-1, 2)
    total = 0.0
    for (r0, c0), (r1, c1) in zip(cells[:-1], cells[1:]):
        dr, dc = r1 - r0, c1 - c0
        if max(abs(dr), abs(dc)) != 1:
            raise ValueError(f"cells ({r0},{c0}) and ({r1},{c1}) are not 8-neighbours")
        if dr and dc and not (np.isfinite(a[r0, c1]) and np.isfinite(a[r1, c0])):
            raise ValueError(f"diagonal move ({r0},{c0})->({r1},{c1}) cuts a lethal corner")
        step = math.sqrt(2.0) if (dr and dc) else 1.0
        total += step * 0.5 * (a[r0, c0] + a[r1, c1])
    if not math.isfinite(total):
        raise ValueError("path crosses a lethal cell")
    return total


def cells_along(points_rcf, shape) -> np.ndarray:
    """Every cell a polyline in grid coordinates passes through, in order, without repeats.

    For a grid path whose vertices are cell centres this is the vertex list itself.
    """
    pts = np.asarray(points_rcf, dtype=np.float64).reshape(-1, 2)
    if len(pts) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    if np.all(pts == np.rint(pts)) and (len(pts) == 1 or np.abs(np.diff(pts, axis=0)).max() <= 1):
        # A grid path (integer vertices, unit steps): the loop below would return the
        # vertices without repeats; do that without sampling each segment.
        a = pts.astype(np.int64)
        a = a[np.r_[True, np.any(a[1:] != a[:-1], axis=1)]]
        a[:, 0] = np.clip(a[:, 0], 0, shape[0] - 1)
        a[:, 1] = np.clip(a[:, 1], 0, shape[1] - 1)
        return a
    out = [tuple(np.rint(pts[0]).astype(np.int64))]
    for p0, p1 in zip(pts[:-1], pts[1:]):
        n = int(math.ceil(np.abs(p1 - p0).max() * 4)) + 1
        for t in np.linspace(0.0, 1.0, n + 1)[1:]:
            rc = tuple(np.rint(p0 + (p1 - p0) * t).astype(np.int64))
            if rc != out[-1]:
                out.append(rc)
    a = np.array(out, dtype=np.int64)
    a[:, 0] = np.clip(a[:, 0], 0, shape[0] - 1)
    a[:, 1] = np.clip(a[:, 1], 0, shape[1] - 1)
    return a
