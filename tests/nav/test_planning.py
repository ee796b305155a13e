"""The shared planning API (nav/planning.py) over the grid planners: validation, errors,
budgets, deadlines, cancellation, and world-coordinate planning on a hand-built CostMap."""
from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from nav import CostMap, TerrainMap, astar, plan, plan_grid
from nav.costmap import LETHAL_INFLATED, LETHAL_SLOPE, LETHAL_STEP
from nav.errors import (GoalInHazard, GoalOutsideMap, NoPathFound, PlanningCancelled, PlanningError,
                        PlanningTimedOut, StartInHazard, StartOutsideMap)
from nav.planning import PLANNERS

from _ref_planning import parse_map, ref_dijkstra

GRID_PLANNERS = ["astar", "dijkstra", "dstar_lite"]
SQRT2 = math.sqrt(2.0)


@pytest.fixture(params=GRID_PLANNERS)
def planner(request):
    return request.param


# ------------------------------------------------------------------ validation
def test_start_and_goal_outside_the_grid(planner):
    cost = np.ones((4, 6))
    with pytest.raises(StartOutsideMap, match=r"start \(row 4, col 0\) is outside the 4x6 grid"):
        plan_grid(cost, (4, 0), (0, 0), planner)
    with pytest.raises(GoalOutsideMap, match=r"goal \(row 0, col -1\) is outside the 4x6 grid"):
        plan_grid(cost, (0, 0), (0, -1), planner)
    assert issubclass(StartOutsideMap, PlanningError)


def test_start_and_goal_in_lethal_cells(planner):
    cost = np.ones((3, 3))
    cost[1, 1] = np.inf
    with pytest.raises(StartInHazard, match=r"start \(row 1, col 1\) is in a lethal cell"):
        plan_grid(cost, (1, 1), (0, 0), planner)
    with pytest.raises(GoalInHazard, match=r"goal \(row 1, col 1\) is in a lethal cell"):
        plan_grid(cost, (0, 0), (1, 1), planner)


@pytest.mark.parametrize("bad, message", [
    (np.ones(5), r"cost must be 2-D, got shape \(5,\)"),
    (np.ones((2, 3, 4)), r"cost must be 2-D, got shape \(2, 3, 4\)"),
    (np.ones((0, 4)), r"cost must not be empty, got shape \(0, 4\)"),
    (np.ones((3, 3), dtype=complex), r"cost must hold real numbers, got dtype complex128"),
    (np.full((3, 3), "a"), r"cost must hold real numbers, got dtype <U1"),
    (np.array([[1.0, np.nan], [1.0, 1.0]]), r"cost has NaN at \(row 0, col 1\); use np.inf for lethal"),
    (np.array([[1.0, 1.0], [-2.0, 1.0]]), r"cost must be > 0 everywhere .* got -2.0 at \(row 1, col 0\)"),
    (np.array([[1.0, 0.0], [1.0, 1.0]]), r"cost must be > 0 everywhere .* got 0.0 at \(row 0, col 1\)"),
])
def test_bad_cost_grids(bad, message, planner):
    with pytest.raises(ValueError, match=message):
        plan_grid(bad, (0, 0), (0, 0), planner)


def test_integer_grids_are_accepted(planner):
    p = plan_grid(np.array([[1, 5, 1]]), (0, 0), (0, 2), planner)
    assert p.cost == 6.0


def test_bad_endpoints_and_options(planner):
    cost = np.ones((3, 3))
    with pytest.raises(ValueError, match=r"start_rc must be a \(row, col\) pair of integers, got 'ab'"):
        plan_grid(cost, "ab", (0, 0), planner)
    for bad in (0, -3, 2.5):
        with pytest.raises(ValueError, match=r"max_expansions must be an integer >= 1"):
            plan_grid(cost, (0, 0), (2, 2), planner, max_expansions=bad)
    with pytest.raises(ValueError, match=r"deadline_s must be > 0 seconds, got 0"):
        plan_grid(cost, (0, 0), (2, 2), planner, deadline_s=0)
    with pytest.raises(ValueError, match=r"cancel must be a threading.Event or a callable"):
        plan_grid(cost, (0, 0), (2, 2), planner, cancel=5)


def test_unknown_planner():
    with pytest.raises(ValueError, match=r"planner must be one of \['astar', 'dijkstra', 'field_dstar', "
                                         r"'dstar_lite'\], got 'bfs'"):
        plan_grid(np.ones((2, 2)), (0, 0), (1, 1), "bfs")
    assert set(GRID_PLANNERS) <= set(PLANNERS)


# ------------------------------------------------------- budgets and deadlines
def test_expansion_budget(planner):
    with pytest.raises(PlanningTimedOut, match=r"max_expansions=5 reached"):
        plan_grid(np.ones((30, 30)), (0, 0), (29, 29), planner, max_expansions=5)
    # a budget the search fits in changes nothing
    p = plan_grid(np.ones((30, 30)), (0, 0), (29, 29), planner, max_expansions=10**6)
    assert p.cost == pytest.approx(29 * SQRT2)


def _rough(n):
    """Random costs: every planner expands far more than a hundred cells corner to corner."""
    return np.random.default_rng(0).uniform(1.0, 5.0, (n, n))


def test_deadline_with_injected_clock(planner, monkeypatch):
    monkeypatch.setattr(astar, "CHECK_EVERY", 25)
    now = [100.0]

    def clock():   # every look at the clock costs a second
        now[0] += 1.0
        return now[0]

    # deadline = 101 + 2.5; the chunks end at clock 102, 103, 104 -> gives up after 3 chunks
    with pytest.raises(PlanningTimedOut, match=r"deadline passed \(clock 104.000 s >= deadline 103.500 s\) "
                                                r"after 75 cells expanded"):
        plan_grid(_rough(60), (0, 0), (59, 59), planner, deadline_s=2.5, clock=clock)


def test_generous_deadline_changes_nothing(planner):
    p = plan_grid(np.ones((20, 20)), (0, 0), (19, 5), planner, deadline_s=3600.0)
    assert p.cost == pytest.approx(5 * SQRT2 + 14)


def test_cancel_with_event_and_callable(planner, monkeypatch):
    monkeypatch.setattr(astar, "CHECK_EVERY", 25)
    ev = threading.Event()
    ev.set()
    with pytest.raises(PlanningCancelled, match=r"cancelled after 25 cells expanded"):
        plan_grid(_rough(40), (0, 0), (39, 39), planner, cancel=ev)
    calls = []
    with pytest.raises(PlanningCancelled, match=r"cancelled after 50 cells expanded"):
        plan_grid(_rough(40), (0, 0), (39, 39), planner, cancel=lambda: calls.append(1) or len(calls) == 2)
    assert plan_grid(np.ones((40, 40)), (0, 0), (39, 39), planner, cancel=threading.Event()).cost \
        == pytest.approx(39 * SQRT2)


# ------------------------------------------------------------- world frame
def _costmap():
    """A 5 x 8 map of 0.5 m cells with its lower-left corner at (x=10 m, y=-2 m).

    Drawn with the first line as the northern row; '#' cells are lethal for a slope,
    the 'i' cell is inflated around them.
    """
    drawing = """
        ...#....
        ...#....
        ..i#.2..
        ........
        ........
    """
    lines = [ln.strip() for ln in drawing.strip().splitlines()][::-1]
    rows, cols = len(lines), len(lines[0])
    cost = np.ones((rows, cols), dtype=np.float32)
    slope = np.full((rows, cols), 5.0, dtype=np.float32)
    reason = np.zeros((rows, cols), dtype=np.uint8)
    for r, ln in enumerate(lines):
        for c, ch in enumerate(ln):
            if ch == "#":
                cost[r, c], slope[r, c], reason[r, c] = np.inf, 34.1, LETHAL_SLOPE
            elif ch == "i":
                cost[r, c], reason[r, c] = np.inf, LETHAL_INFLATED
            elif ch == "2":
                cost[r, c] = 2.0
    tm = TerrainMap(np.zeros((rows, cols)), 0.5, (10.0, -2.0), source="hand-drawn")
    zeros = np.zeros((rows, cols), dtype=np.float32)
    return CostMap(terrain=tm, cost=cost, slope_deg=slope, step_m=zeros, roughness_m=zeros, reason=reason,
                   limits={"max_slope_deg": 25.0, "max_step_m": 0.15, "max_roughness_m": 0.05,
                           "inflation_radius_m": 0.5})


def test_plan_in_world_coordinates(planner):
    cm = _costmap()
    # start in cell (row 0, col 0), goal in cell (row 4, col 7)
    p = plan(cm, (10.1, -1.9), (13.9, 0.4), planner)
    assert tuple(p.cells_rc[0]) == (0, 0) and tuple(p.cells_rc[-1]) == (4, 7)
    np.testing.assert_allclose(p.xy_m[0], (10.25, -1.75))
    np.testing.assert_allclose(p.xy_m[-1], (13.75, 0.25))
    np.testing.assert_allclose(p.xy_m, cm.terrain.cell_to_world(p.points_rcf))
    assert p.cost == pytest.approx(ref_dijkstra(cm.cost, (0, 0), (4, 7)), rel=1e-9)
    assert p.length_m == pytest.approx(0.5 * p.length_cells)
    assert p.planner == planner


def test_world_errors_explain_themselves(planner):
    cm = _costmap()
    with pytest.raises(GoalInHazard, match=r"goal \(x=11.80 m, y=0.30 m\) is in a lethal cell: "
                                           r"slope 34.1° > max_slope_deg 25"):
        plan(cm, (10.1, -1.9), (11.8, 0.3), planner)
    with pytest.raises(StartInHazard, match=r"start \(x=11.30 m, y=-0.70 m\) is in a lethal cell: within "
                                            r"the rover radius 0.5 m of cell \(row 2, col 3\) where slope "
                                            r"34.1° > max_slope_deg 25"):
        plan(cm, (11.3, -0.7), (10.1, -1.9), planner)
    with pytest.raises(GoalOutsideMap, match=r"goal \(x=14.00 m, y=0.00 m\) is outside the map "
                                             r"\(x 10.00..14.00 m, y -2.00..0.50 m\)"):
        plan(cm, (10.1, -1.9), (14.0, 0.0), planner)
    with pytest.raises(ValueError, match="cell_size_m is taken from the costmap"):
        plan(cm, (10.1, -1.9), (10.6, -1.9), planner, cell_size_m=2.0)
    with pytest.raises(ValueError, match="costmap must be a nav.CostMap, got ndarray"):
        plan(cm.cost, (10.1, -1.9), (10.6, -1.9), planner)


def test_world_no_path_goes_through_to_the_grid_error(planner):
    cm = _costmap()
    walled = cm.cost.copy()
    walled[:, 3] = np.inf
    reason = np.where(np.isfinite(walled), 0, LETHAL_STEP).astype(np.uint8)
    cm2 = CostMap(terrain=cm.terrain, cost=walled, slope_deg=cm.slope_deg, step_m=cm.step_m,
                  roughness_m=cm.roughness_m, reason=reason, limits=cm.limits)
    with pytest.raises(NoPathFound, match=r"no path from \(row 0, col 0\) to \(row 4, col 7\)"):
        plan(cm2, (10.1, -1.9), (13.9, 0.4), planner)


def test_grid_paths_are_cell_centres(planner):
    cost, s, g = parse_map("""
        ..3.G
        .#...
        S..2.
    """)
    p = plan_grid(cost, s, g, planner, cell_size_m=0.25)
    assert p.points_rcf.dtype == np.float64 and p.points_rcf.shape[1] == 2
    np.testing.assert_array_equal(p.points_rcf, p.cells_rc.astype(float))
    assert p.length_m == pytest.approx(0.25 * p.length_cells)
    np.testing.assert_allclose(p.xy_m[:, 0], (p.points_rcf[:, 1] + 0.5) * 0.25)   # x from columns
    np.testing.assert_allclose(p.xy_m[:, 1], (p.points_rcf[:, 0] + 0.5) * 0.25)   # y from rows
    assert p.cost == pytest.approx(ref_dijkstra(cost, s, g), rel=1e-12)
