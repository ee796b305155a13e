"""D* Lite (nav/dstar_lite.py): after any sequence of cost changes and start moves, the
repaired plan costs what a fresh reference Dijkstra on the current grid says."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nav
from nav import astar, plan_grid
from nav.dstar_lite import DStarLite
from nav.errors import (GoalInHazard, NoPathFound, PlanningCancelled, PlanningTimedOut, StartInHazard,
                        StartOutsideMap)
from nav.planning import cells_along, grid_path_cost

from _ref_planning import check_grid_path, csgraph_costs, octile, parse_map, ref_dijkstra

SQRT2 = math.sqrt(2.0)


def assert_plan_matches_reference(dsl: DStarLite):
    """Replan and compare with a fresh reference Dijkstra on the planner's current grid."""
    cost, s, g = np.array(dsl.cost), dsl.start_rc, dsl.goal_rc
    if not np.isfinite(cost[s]):
        with pytest.raises(StartInHazard):
            dsl.replan()
        return None
    if not np.isfinite(cost[g]):
        with pytest.raises(GoalInHazard):
            dsl.replan()
        return None
    ref = ref_dijkstra(cost, s, g)
    if math.isinf(ref):
        with pytest.raises(NoPathFound):
            dsl.replan()
        return None
    p = dsl.replan()
    assert p.cost == pytest.approx(ref, rel=1e-9, abs=1e-12)
    check_grid_path(cost, p.cells_rc, s, g)
    assert grid_path_cost(cost, p.cells_rc) == pytest.approx(p.cost, rel=1e-12, abs=1e-12)
    return p


@pytest.mark.parametrize("drawing, expected", [
    ("""
     ...G
     ....
     S...""", 2 * SQRT2 + 1),
    ("""
     .G
     S#""", 2.0),
    ("""
     ....#...G
     .........
     ....#....
     S...#....""", 3 * SQRT2 + 5),
    ("""
     S#...
     .#.#.
     ...#G""", 10.0),
])
def test_golden_maps(drawing, expected):
    cost, s, g = parse_map(drawing)
    p = DStarLite(cost, s, g).plan()
    assert p.cost == pytest.approx(expected, rel=1e-12)
    assert p.planner == "dstar_lite"
    check_grid_path(cost, p.cells_rc, s, g)


def test_golden_wall_appears_then_opens():
    cost, s, g = parse_map("""
        .........
        S...#...G
        .........
    """)
    around = 2 + SQRT2 + 2 + SQRT2 + 2   # no corner cutting: pass the post axially
    dsl = DStarLite(cost, s, g)
    assert dsl.plan().cost == pytest.approx(around, rel=1e-12)
    # the rover sees the wall close across the whole column: no way through
    dsl.update_cells([(0, 4), (2, 4)], np.inf)
    with pytest.raises(NoPathFound, match="walled off"):
        dsl.replan()
    # the top cell clears again
    assert dsl.update_cells([(2, 4)], 1.0) == 1
    assert dsl.replan().cost == pytest.approx(around, rel=1e-12)
    # and the post itself goes: straight through
    dsl.update_cells([(1, 4)], 1.0)
    assert dsl.replan().cost == pytest.approx(8.0, rel=1e-12)


@st.composite
def scenarios(draw, max_side=9):
    rows = draw(st.integers(1, max_side))
    cols = draw(st.integers(2 if rows == 1 else 1, max_side))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if draw(st.booleans()):
        cost = rng.integers(1, 4, (rows, cols)).astype(float)     # many ties
    else:
        cost = rng.uniform(0.5, 5.0, (rows, cols))
    cost[rng.random((rows, cols)) < draw(st.floats(0.0, 0.35))] = np.inf
    fin = np.argwhere(np.isfinite(cost))
    if len(fin) == 0:
        cost[0, 0] = 1.0
        fin = np.argwhere(np.isfinite(cost))
    s = tuple(int(v) for v in fin[rng.integers(len(fin))])
    g = tuple(int(v) for v in fin[rng.integers(len(fin))])
    batches = []
    for _ in range(draw(st.integers(1, 6))):
        k = int(rng.integers(1, 7))
        rc = np.stack([rng.integers(0, rows, k), rng.integers(0, cols, k)], axis=1)
        # lethal, freed, dearer, and cheaper than anything so far (re-keys the queue)
        vals = rng.choice([np.inf, 1.0, 2.5, 7.0, 0.3], k)
        move = draw(st.sampled_from([None, "random", "along"]))
        batches.append((rc, vals, move))
    return cost.astype(np.float32), s, g, batches


@settings(max_examples=150, deadline=None)
@given(sc=scenarios(), lattice=st.booleans())
def test_replans_equal_fresh_reference_after_updates_and_moves(sc, lattice):
    with pytest.MonkeyPatch.context() as mp:
        # lattice=True: the corner-lattice bounds even on these small grids (normally skipped),
        # over 2 × 2-cell blocks so that the block minima differ
        mp.setattr(astar, "LATTICE_MIN_CELLS", 0 if lattice else math.inf)
        mp.setattr(astar, "LATTICE_BLOCK_SHIFT", 1)
        _replans_equal_fresh_reference(sc, lattice)


def _replans_equal_fresh_reference(sc, lattice):
    cost, s, g, batches = sc
    dsl = DStarLite(cost, s, g, lattice_heuristic=lattice)
    path = assert_plan_matches_reference(dsl)
    rng = np.random.default_rng(len(batches))
    for rc, vals, move in batches:
        dsl.update_cells(rc, vals)
        if move == "along" and path is not None and len(path) > 1:
            dsl.move_start(path.cells_rc[min(2, len(path) - 1)])
        elif move == "random":
            fin = np.argwhere(np.isfinite(dsl.cost))
            if len(fin):
                dsl.move_start(fin[rng.integers(len(fin))])
        path = assert_plan_matches_reference(dsl)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), lattice=st.booleans())
def test_larger_grids_with_blocks_of_changes(seed, lattice):
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    rows, cols = rng.integers(20, 60, 2)
    f = gaussian_filter(rng.standard_normal((rows, cols)), 3.0)
    cost = (1.0 + 4.0 * (f - f.min()) / (np.ptp(f) + 1e-12)).astype(np.float32)
    cost[rng.random((rows, cols)) < 0.15] = np.inf
    fin = np.argwhere(np.isfinite(cost))
    s, g = tuple(fin[0]), tuple(fin[-1])
    dsl = DStarLite(cost, s, g, lattice_heuristic=lattice)
    for _ in range(4):
        r0, c0 = rng.integers(0, rows - 5), rng.integers(0, cols - 5)
        rr, cc = np.mgrid[r0:r0 + 5, c0:c0 + 5]
        rc = np.stack([rr.ravel(), cc.ravel()], 1)
        # lethal, dearer, and cheaper than the block minima (rebuilds the lattice bounds)
        dsl.update_cells(rc, rng.choice([np.inf, 1.5, 6.0, 1.01], len(rc)))
        current = np.array(dsl.cost)
        ref = csgraph_costs(current, dsl.start_rc)[dsl.goal_rc]
        if not (np.isfinite(current[dsl.start_rc]) and np.isfinite(current[dsl.goal_rc])):
            return
        if math.isinf(ref):
            with pytest.raises(NoPathFound):
                dsl.replan()
            continue
        path = dsl.replan()
        assert path.cost == pytest.approx(ref, rel=1e-9)
        if len(path) > 3:
            dsl.move_start(path.cells_rc[3])   # the rover drives on


def _rover_scene(n=128, seed=7):
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    f = gaussian_filter(rng.standard_normal((n, n)), n / 16)
    cost = (1.0 + 4.0 * (f - f.min()) / np.ptp(f)).astype(np.float32)
    cost[rng.random((n, n)) < 0.2] = np.inf
    s, g = (2, 2), (n - 3, n - 4)
    cost[s] = cost[g] = 1.0
    return cost, s, g, rng


def test_replan_after_local_change_near_rover_is_far_cheaper_than_fresh_search():
    cost, s, g, rng = _rover_scene()
    dsl = DStarLite(cost, s, g)
    first = dsl.plan()
    rover = tuple(first.cells_rc[10])
    dsl.move_start(rover)
    # 1 % of the map, just ahead of the rover: half becomes lethal, the rest dearer
    r0, c0 = np.clip(first.cells_rc[22] - 6, 0, 128 - 13)
    rr, cc = np.mgrid[r0:r0 + 13, c0:c0 + 13]
    rc = np.stack([rr.ravel(), cc.ravel()], 1)
    new = np.where(rng.random(len(rc)) < 0.5, np.inf, 3.0 * np.array(dsl.cost)[rr, cc].ravel())
    keep = (rc == rover).all(axis=1)
    new[keep] = dsl.cost[rover]
    dsl.update_cells(rc, new)
    replanned = dsl.replan()
    changed = np.array(dsl.cost)
    fresh = astar.search(changed, rover, g)
    assert replanned.cost == pytest.approx(fresh.cost, rel=1e-9)
    assert replanned.cost == pytest.approx(csgraph_costs(changed, rover)[g], rel=1e-9)
    assert replanned.expanded * 5 < fresh.expanded
    assert replanned.expanded * 20 < first.expanded


def test_budget_and_cancel_keep_progress(monkeypatch):
    monkeypatch.setattr(astar, "CHECK_EVERY", 100)
    cost, s, g, _ = _rover_scene(64)
    ref = csgraph_costs(cost, s)[g]
    dsl = DStarLite(cost, s, g)
    with pytest.raises(PlanningTimedOut, match="max_expansions=50"):
        dsl.plan(max_expansions=50)
    assert dsl.expanded_total == 50
    with pytest.raises(PlanningCancelled):
        dsl.plan(cancel=lambda: True)
    done = dsl.expanded_total
    p = dsl.plan()
    assert p.cost == pytest.approx(ref, rel=1e-9)
    assert dsl.expanded_total == done + p.expanded
    fresh = DStarLite(cost, s, g).plan()
    assert fresh.cost == pytest.approx(p.cost, rel=1e-12)


def test_deadline_with_injected_clock(monkeypatch):
    monkeypatch.setattr(astar, "CHECK_EVERY", 20)
    ticks = iter(range(100))
    cost, s, g, _ = _rover_scene(64)
    dsl = DStarLite(cost, s, g)
    with pytest.raises(PlanningTimedOut, match=r"deadline passed \(clock 3\.000 s >= deadline 2\.500 s\) "
                                                r"after 60 cells expanded"):
        dsl.plan(deadline_s=2.5, clock=lambda: float(next(ticks)))


def test_move_start_accumulates_km_and_validates():
    cost = np.full((6, 7), 2.0, dtype=np.float32)
    dsl = DStarLite(cost, (0, 0), (5, 6))
    assert dsl.plan().cost == pytest.approx(2.0 * octile((0, 0), (5, 6)))
    dsl.move_start((1, 3))
    assert dsl.km == pytest.approx(2.0 * octile((0, 0), (1, 3)))
    dsl.move_start((2, 3))
    assert dsl.km == pytest.approx(2.0 * (octile((0, 0), (1, 3)) + 1.0))
    assert dsl.replan().cost == pytest.approx(2.0 * octile((2, 3), (5, 6)))
    with pytest.raises(StartOutsideMap, match=r"start \(row 6, col 0\) is outside the 6x7 grid"):
        dsl.move_start((6, 0))
    dsl.update_cells([(2, 3)], np.inf)
    with pytest.raises(StartInHazard, match=r"start \(row 2, col 3\) is in a lethal cell"):
        dsl.replan()


def test_cheaper_cells_lower_the_heuristic_weight():
    cost = np.full((5, 12), 4.0, dtype=np.float32)
    dsl = DStarLite(cost, (0, 0), (4, 11))
    dsl.plan()
    dsl.move_start((0, 2))
    dsl.update_cells([(r, 6) for r in range(5)], 0.25)   # a cheap stripe: weight 4 would overestimate
    p = dsl.replan()
    assert p.info["heuristic_weight"] == 0.25
    assert p.cost == pytest.approx(ref_dijkstra(np.array(dsl.cost), (0, 2), (4, 11)), rel=1e-12)


def test_lattice_bounds_rebuilt_when_a_cell_gets_cheaper_than_its_block():
    cost, s, g, rng = _rover_scene(96)
    dsl = DStarLite(cost, s, g, lattice_heuristic=True)
    first = dsl.plan()
    assert first.info["lattice_heuristic"]
    assert first.expanded < DStarLite(cost, s, g).plan().expanded   # tighter bounds, fewer cells
    dsl.move_start(first.cells_rc[8])
    rc = first.cells_rc[20:60]
    dsl.update_cells(rc, 1.0)   # the whole stretch of path at the map's flattest cost
    p = dsl.replan()
    current = np.array(dsl.cost)
    assert p.cost == pytest.approx(csgraph_costs(current, dsl.start_rc)[g], rel=1e-9)
    assert p.info["km"] == 0.0   # the keys were rebuilt for the new bounds


def test_update_cells_validates_and_counts_changes():
    dsl = DStarLite(np.ones((4, 5)), (0, 0), (3, 4))
    assert dsl.update_cells([(1, 1), (1, 1), (2, 2)], [5.0, 5.0, 1.0]) == 1   # (2, 2) was already 1
    assert dsl.update_cells((1, 2), 3.0) == 1
    assert dsl.update_cells([(1, 2), (1, 2)], [7.0, 3.0]) == 0      # the last value wins
    assert dsl.cost[1, 2] == 3.0
    with pytest.raises(ValueError, match=r"rc must be an \(N, 2\) array"):
        dsl.update_cells(np.zeros((3, 3), dtype=int), 1.0)
    with pytest.raises(ValueError, match=r"outside the 4x5 grid: \(row 4, col 0\)"):
        dsl.update_cells([(4, 0)], 1.0)
    with pytest.raises(ValueError, match="rc must hold integer cells"):
        dsl.update_cells([(0.5, 1.0)], 1.0)
    with pytest.raises(ValueError, match=r"new_costs must be > 0 .* got nan for \(row 0, col 1\)"):
        dsl.update_cells([(0, 0), (0, 1)], [1.0, np.nan])
    with pytest.raises(ValueError, match=r"new_costs must be > 0 .* got -1\.0"):
        dsl.update_cells([(0, 1)], -1.0)
    with pytest.raises(ValueError, match="one per cell in rc"):
        dsl.update_cells([(0, 1), (0, 2)], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError):
        dsl.cost[0, 0] = 3.0   # read-only view
    with pytest.raises(ValueError, match="lattice_heuristic must be True or False, got 'yes'"):
        DStarLite(np.ones((4, 5)), (0, 0), (3, 4), lattice_heuristic="yes")


def test_paths_and_plan_grid_agree():
    cost, s, g, _ = _rover_scene(48)
    p = plan_grid(cost, s, g, "dstar_lite")
    q = DStarLite(cost, s, g).plan()
    assert p.cost == q.cost and p.planner == "dstar_lite"
    np.testing.assert_array_equal(q.cells_rc, cells_along(q.points_rcf, cost.shape))
    assert nav.DStarLite is DStarLite
