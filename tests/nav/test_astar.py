"""A* and Dijkstra (nav/astar.py) against a heapq reference Dijkstra and scipy's csgraph.

Golden maps are drawn below (first line = top row); everything else is checked
against the two oracles in ``_ref_planning.py``.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nav import astar, plan_grid
from nav.errors import NoPathFound, PlanningCancelled
from nav.planning import cells_along, grid_path_cost

from _ref_planning import check_grid_path, csgraph_costs, neighbours, octile, parse_map, ref_dijkstra

SQRT2 = math.sqrt(2.0)
GRID_PLANNERS = ["astar", "dijkstra"]

# name: (drawing, cost by hand or None for "no path")
GOLDEN = {
    "open": ("""
        ...G
        ....
        S...
    """, 2 * SQRT2 + 1),
    "mean of the two cells": ("""
        S5G
    """, (1 + 5) / 2 + (5 + 1) / 2),
    "diagonal charged sqrt2 x mean": ("""
        3G
        S3
    """, SQRT2),
    "detour around an expensive cell": ("""
        ...
        S9G
    """, 2 * SQRT2),
    "no corner cutting": ("""
        .G
        S#
    """, 2.0),
    "both corners lethal": ("""
        #G
        S#
    """, None),
    "gap in a wall, entered and left axially": ("""
        ....#...G
        .........
        ....#....
        S...#....
    """, 3 * SQRT2 + 5),
    "corridor where every diagonal cuts a corner": ("""
        S#...
        .#.#.
        ...#G
    """, 10.0),
    "goal walled off": ("""
        .....#..
        .....#.G
        S....#..
    """, None),
}


@pytest.mark.parametrize("planner", GRID_PLANNERS)
@pytest.mark.parametrize("name", list(GOLDEN))
def test_golden_maps(name, planner):
    drawing, expected = GOLDEN[name]
    cost, s, g = parse_map(drawing)
    if expected is None:
        with pytest.raises(NoPathFound):
            plan_grid(cost, s, g, planner)
        return
    p = plan_grid(cost, s, g, planner)
    assert p.cost == pytest.approx(expected, rel=1e-12)
    assert p.planner == planner
    check_grid_path(cost, p.cells_rc, s, g)
    assert grid_path_cost(cost, p.cells_rc) == pytest.approx(expected, rel=1e-12)


def test_no_path_message_says_which_region_is_walled_off():
    cost, s, g = parse_map(GOLDEN["goal walled off"][0])
    with pytest.raises(NoPathFound) as e:
        plan_grid(cost, s, g)
    msg = str(e.value)
    assert f"(row {s[0]}, col {s[1]})" in msg and f"(row {g[0]}, col {g[1]})" in msg
    assert "goal's region is walled off" in msg and "15 cells expanded" in msg
    # and the other way round: a boxed-in start
    with pytest.raises(NoPathFound, match="start's region is walled off"):
        plan_grid(cost, g, s)


@pytest.mark.parametrize("planner", GRID_PLANNERS)
def test_start_equals_goal(planner):
    p = plan_grid(np.ones((1, 1)), (0, 0), (0, 0), planner)
    assert p.cost == 0.0 and p.points_rcf.tolist() == [[0.0, 0.0]] and p.length_m == 0.0


# ------------------------------------------------------------------ properties
@st.composite
def problems(draw, max_side=10):
    """A small grid with random lethal cells and costs, and finite start/goal cells."""
    rows = draw(st.integers(1, max_side))
    cols = draw(st.integers(1, max_side))
    kind = draw(st.sampled_from(["uniform", "integers", "floats"]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if kind == "uniform":
        cost = np.ones((rows, cols))
    elif kind == "integers":
        cost = rng.integers(1, 6, (rows, cols)).astype(float)
    else:
        cost = rng.uniform(0.05, 10.0, (rows, cols))
    cost[rng.random((rows, cols)) < draw(st.floats(0.0, 0.45))] = np.inf
    fin = np.argwhere(np.isfinite(cost))
    if len(fin) == 0:
        cost[0, 0] = 1.0
        fin = np.argwhere(np.isfinite(cost))
    s = tuple(int(v) for v in fin[draw(st.integers(0, len(fin) - 1))])
    g = tuple(int(v) for v in fin[draw(st.integers(0, len(fin) - 1))])
    return cost.astype(np.float32), s, g


def _check_against_oracles(cost, s, g, planner):
    ref = ref_dijkstra(cost, s, g)
    cs = csgraph_costs(cost, s)[g]
    assert (math.isinf(ref) and math.isinf(cs)) or ref == pytest.approx(cs, rel=1e-12)  # oracles agree
    if math.isinf(ref):
        with pytest.raises(NoPathFound):
            plan_grid(cost, s, g, planner)
        return None
    p = plan_grid(cost, s, g, planner)
    assert p.cost == pytest.approx(ref, rel=1e-9, abs=1e-12)
    check_grid_path(cost, p.cells_rc, s, g)
    assert grid_path_cost(cost, p.cells_rc) == pytest.approx(p.cost, rel=1e-12, abs=1e-12)
    np.testing.assert_array_equal(p.cells_rc, cells_along(p.points_rcf, cost.shape))
    return p


@pytest.mark.parametrize("planner", GRID_PLANNERS)
@settings(max_examples=120, deadline=None)
@given(prob=problems())
def test_cost_equals_reference_dijkstra_and_csgraph(prob, planner):
    _check_against_oracles(*prob, planner)


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 40), cols=st.integers(1, 40), data=st.data())
def test_moving_ai_open_ground_cost_is_octile_distance(rows, cols, data):
    cost = np.ones((rows, cols), dtype=np.float32)
    s = (data.draw(st.integers(0, rows - 1)), data.draw(st.integers(0, cols - 1)))
    g = (data.draw(st.integers(0, rows - 1)), data.draw(st.integers(0, cols - 1)))
    p = plan_grid(cost, s, g, "astar")
    assert p.cost == pytest.approx(octile(s, g), rel=1e-12, abs=1e-12)
    assert p.length_m == pytest.approx(octile(s, g), rel=1e-12, abs=1e-12)


def smooth_field(rng, rows, cols, lethal):
    """A smooth random cost field >= 0.2 with random lethal cells (exercises the lattice heuristic)."""
    from scipy.ndimage import gaussian_filter

    f = gaussian_filter(rng.standard_normal((rows, cols)), rng.uniform(1.0, 8.0))
    f = (f - f.min()) / (np.ptp(f) + 1e-12)
    cost = (rng.uniform(0.2, 2.0) + rng.uniform(0.5, 10.0) * f).astype(np.float32)
    cost[rng.random((rows, cols)) < lethal] = np.inf
    return cost


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), rows=st.integers(33, 110), cols=st.integers(33, 110),
       lethal=st.floats(0.0, 0.3))
def test_larger_cost_fields_equal_csgraph(seed, rows, cols, lethal):
    rng = np.random.default_rng(seed)
    cost = smooth_field(rng, rows, cols, lethal)
    fin = np.argwhere(np.isfinite(cost))
    s, g = tuple(fin[0]), tuple(fin[-1])   # roughly corner to corner: the lattice heuristic is used
    ref = csgraph_costs(cost, s)[g]
    if math.isinf(ref):
        with pytest.raises(NoPathFound):
            astar.search(cost, s, g)
        return
    r = astar.search(cost, s, g)
    assert r.cost == pytest.approx(ref, rel=1e-9)
    assert r.info["lattice_heuristic"]
    check_grid_path(cost, np.rint(r.points_rcf).astype(int), s, g)


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), rows=st.integers(2, 70), cols=st.integers(2, 70),
       lethal=st.floats(0.0, 0.3))
def test_heuristic_is_admissible_and_consistent(seed, rows, cols, lethal):
    rng = np.random.default_rng(seed)
    cost = smooth_field(rng, rows, cols, lethal)
    fin = np.argwhere(np.isfinite(cost))
    if len(fin) == 0:
        return
    g = tuple(fin[rng.integers(len(fin))])
    h = astar.heuristic_grid(cost, g)
    assert abs(h[g]) <= 1e-12
    to_goal = csgraph_costs(cost, g)   # the graph is symmetric: distances from g = distances to g
    reach = np.isfinite(to_goal)
    assert np.all(h[reach] <= to_goal[reach] * (1 + 1e-12) + 1e-12)
    for r, c in fin:
        for nr, nc, w in neighbours(cost, r, c):
            assert h[r, c] <= w + h[nr, nc] + 1e-9 * (1 + h[r, c])


# ------------------------------------------------------------ search mechanics
def test_ties_go_to_the_deeper_node_on_open_ground():
    cost = np.ones((200, 200), dtype=np.float32)
    p = plan_grid(cost, (0, 0), (199, 120), "astar")
    assert p.cost == pytest.approx(octile((0, 0), (199, 120)), rel=1e-12)
    # without tie-breaking every cell of the 120 x 80 parallelogram of optimal paths has the same f
    assert p.expanded <= 2 * len(p)


def test_heap_grows_when_full(monkeypatch):
    monkeypatch.setattr(astar, "INITIAL_HEAP", 8)
    rng = np.random.default_rng(3)
    cost = smooth_field(rng, 60, 70, 0.2)
    fin = np.argwhere(np.isfinite(cost))
    s, g = tuple(fin[0]), tuple(fin[-1])
    ref = csgraph_costs(cost, s)[g]
    assert astar.search(cost, s, g).cost == pytest.approx(ref, rel=1e-9)
    assert astar.search_dijkstra(cost, s, g).cost == pytest.approx(ref, rel=1e-9)


@pytest.mark.parametrize("planner", GRID_PLANNERS)
def test_chunked_search_resumes_where_it_stopped(monkeypatch, planner):
    rng = np.random.default_rng(5)
    cost = smooth_field(rng, 50, 60, 0.15)
    fin = np.argwhere(np.isfinite(cost))
    s, g = tuple(fin[0]), tuple(fin[-1])
    whole = plan_grid(cost, s, g, planner)
    monkeypatch.setattr(astar, "CHECK_EVERY", 7)
    calls = []
    chunked = plan_grid(cost, s, g, planner, cancel=lambda: calls.append(1) and False,
                        deadline_s=1e9)
    assert len(calls) > 5
    assert chunked.cost == whole.cost and chunked.expanded == whole.expanded
    np.testing.assert_array_equal(chunked.points_rcf, whole.points_rcf)


def test_cancel_between_chunks(monkeypatch):
    monkeypatch.setattr(astar, "CHECK_EVERY", 10)
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) >= 3

    with pytest.raises(PlanningCancelled, match=r"after 30 cells expanded"):
        plan_grid(np.ones((40, 40)), (0, 0), (39, 39), "dijkstra", cancel=cancel)


def test_search_rejects_unvalidated_grids():
    with pytest.raises(ValueError, match="validated C-contiguous 2-D float32"):
        astar.search(np.ones((4, 4)), (0, 0), (3, 3))
    with pytest.raises(ValueError, match="validated C-contiguous 2-D float32"):
        astar.search(np.ones((4, 4), dtype=np.float32)[:, ::2], (0, 0), (3, 1))
