"""Field D* (nav.field_dstar): slow references, golden maps and property tests."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import nav
import nav.field_dstar as fds
from nav.errors import (GoalInHazard, GoalOutsideMap, NoPathFound, PlanningCancelled, PlanningTimedOut,
                        StartInHazard, StartOutsideMap)
from nav.field_dstar import cost_to_goal, polyline_cost, search
from nav.planning import grid_path_cost

from _ref_field_dstar import (dijkstra_discrete, edge_then_diag_min, field_value_iteration, interp_min,
                              lethal_violations, numeric_min, polyline_cost_sampled, step_gain_bound)

INF = math.inf
SQRT2 = math.sqrt(2.0)


def parse(art: str) -> np.ndarray:
    """Map drawn in text, first line = top (highest row). '.' = 1, '#' = lethal, digits = cost."""
    lines = [ln.split() for ln in art.strip().splitlines()]
    vals = {".": 1.0, "#": INF}
    a = np.array([[vals.get(t, None) if t in vals else float(t) for t in ln] for ln in lines])
    return a[::-1].astype(np.float32)   # row 0 = south edge = last line


@st.composite
def problems(draw, max_side=7):
    """A small cost grid with ~25 % lethal cells and finite start/goal cells."""
    rows = draw(st.integers(1, max_side))
    cols = draw(st.integers(2 if rows == 1 else 1, max_side))
    if draw(st.booleans()):
        elems = st.sampled_from([1.0, 1.0, 1.5, 2.0, 3.0])     # many ties
    else:
        elems = st.floats(1.0, 5.0, width=32)
    a = draw(hnp.arrays(np.float32, (rows, cols), elements=elems))
    lethal = draw(hnp.arrays(np.bool_, (rows, cols), elements=st.sampled_from([False, False, False, True])))
    a[lethal] = np.inf
    cell = st.tuples(st.integers(0, rows - 1), st.integers(0, cols - 1))
    s, g = draw(cell), draw(cell)
    a[s] = draw(elems)
    a[g] = draw(elems)
    return a, s, g


def rel_close(x, y, rtol=1e-9):
    return abs(x - y) <= rtol * max(abs(x), abs(y), 1e-300)


# ---------------------------------------------------------------- the reference itself


@settings(max_examples=300, deadline=None)
@given(c=st.floats(0.5, 10), g1=st.floats(0, 30), g2=st.floats(0, 30), b=st.floats(0.5, 10))
def test_reference_closed_forms_match_numeric_minimisation(c, g1, g2, b):
    f_c = numeric_min(lambda y: c * math.sqrt(1 + y * y) + (1 - y) * g1 + y * g2)
    assert abs(interp_min(c, g1, g2) - f_c) <= 1e-9 * (1 + f_c)
    f_d = numeric_min(lambda x: b * x + c * math.sqrt((1 - x) ** 2 + 1) + g2)
    assert abs(edge_then_diag_min(b, c, g2) - f_d) <= 1e-9 * (1 + f_d)


# ---------------------------------------------------------------- values


@settings(max_examples=150, deadline=None)
@given(problems(max_side=8))
def test_cost_to_goal_matches_value_iteration_and_dijkstra(prob):
    a, _, goal = prob
    ours = cost_to_goal(a, goal)
    ref = field_value_iteration(a, goal)
    assert np.array_equal(np.isinf(ours), np.isinf(ref))
    fin = np.isfinite(ref)
    np.testing.assert_allclose(ours[fin], ref[fin], rtol=1e-9, atol=0)
    disc = cost_to_goal(a, goal, interp=False)
    dref = dijkstra_discrete(a, goal)
    assert np.array_equal(np.isinf(disc), np.isinf(dref))
    np.testing.assert_allclose(disc[fin], dref[fin], rtol=1e-9, atol=0)
    # never above A*'s value: (a) and (b) are A*'s moves
    assert (ours[fin] <= disc[fin] * (1 + 1e-12)).all()


# ---------------------------------------------------------------- paths


@settings(max_examples=300, deadline=None)
@given(problems(max_side=9))
def test_search_properties_against_references(prob):
    a, s, g = prob
    disc = dijkstra_discrete(a, g)
    if not math.isfinite(disc[s]):
        with pytest.raises(NoPathFound, match="every route crosses a lethal cell"):
            search(a, s, g)
        return
    res = search(a, s, g)
    pts = res.points_rcf
    assert pts.dtype == np.float64 and pts.ndim == 2 and pts.shape[1] == 2
    assert tuple(pts[0]) == s and tuple(pts[-1]) == g
    # g(start) is the value iteration's fixed point (A*-ordered search stopped at the start)
    vi = field_value_iteration(a, g)
    assert rel_close(res.info["g_start"], vi[s])
    # never costlier than the discrete optimum (A*'s convention)
    assert res.cost <= disc[s] * (1 + 1e-9)
    # the reported cost is the honest cost of the polyline ...
    assert rel_close(polyline_cost(a, pts), res.cost)
    # ... as measured by dense sampling of the segment rules
    sampled, bound = polyline_cost_sampled(a, pts, with_bound=True)
    assert abs(sampled - res.cost) <= bound + 1e-9 * res.cost
    # and the polyline never enters a lethal cell nor a dual cell with a lethal corner
    assert lethal_violations(a, pts) == []
    # info is coherent
    info = res.info
    if info["fallback"] == "none":
        assert info["chosen"] == "field_dstar" and res.cost <= info["g_start"] * (1 + 1e-9) + 1e-12
    else:
        assert info["fallback"] == "discrete"
        assert rel_close(info["discrete_cost"], disc[s])
        assert res.cost == min(info["polyline_cost"], info["discrete_cost"])
    assert res.expanded == info["expanded_field"] + info["expanded_discrete"]


@settings(max_examples=100, deadline=None)
@given(problems(), st.data())
def test_polyline_cost_of_grid_paths_equals_astar_convention(prob, data):
    """Any 8-connected cell path (here: an optimal one) costs what nav.planning says."""
    a, s, g = prob
    disc = dijkstra_discrete(a, g)
    if not math.isfinite(disc[s]):
        return
    path = [s]
    while path[-1] != g:   # descend the exact cost-to-goal
        r, c = path[-1]
        best = None
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                n = (r + dr, c + dc)
                if (dr or dc) and 0 <= n[0] < a.shape[0] and 0 <= n[1] < a.shape[1] and math.isfinite(a[n]):
                    if dr and dc and not (math.isfinite(a[r, c + dc]) and math.isfinite(a[r + dr, c])):
                        continue
                    step = (SQRT2 if dr and dc else 1.0) * 0.5 * (float(a[r, c]) + float(a[n]))
                    v = step + disc[n]
                    if best is None or v < best[0]:
                        best = (v, n)
        path.append(best[1])
    pts = np.array(path, dtype=np.float64)
    assert rel_close(polyline_cost(a, pts), grid_path_cost(a, path))
    assert rel_close(polyline_cost(a, pts), disc[s])


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_polyline_cost_matches_dense_sampling(data):
    rows = data.draw(st.integers(2, 6))
    cols = data.draw(st.integers(2, 6))
    a = data.draw(hnp.arrays(np.float32, (rows, cols), elements=st.floats(1.0, 5.0, width=32)))
    if data.draw(st.booleans()):
        a[data.draw(st.integers(0, rows - 1)), data.draw(st.integers(0, cols - 1))] = np.inf
    # vertices: random points, centres, and points on the lines between centres
    def coord(hi):
        # exactly on a grid line, or clearly off it: within a few ulps of a line the
        # sampling reference cannot tell on which side its samples fall
        x = st.floats(0, hi).map(lambda v: float(round(v)) if abs(v - round(v)) < 1e-6 else v)
        return st.one_of(x, x.map(lambda v: round(v * 64) / 64), st.integers(0, hi).map(float))
    coord_r, coord_c = coord(rows - 1), coord(cols - 1)
    pts = np.array(data.draw(st.lists(st.tuples(coord_r, coord_c), min_size=2, max_size=5)))
    ours = polyline_cost(a, pts)
    ref, bound = polyline_cost_sampled(a, pts, with_bound=True)
    if math.isinf(ref):
        assert math.isinf(ours)
    else:
        assert abs(ours - ref) <= bound + 1e-9 * ref


def test_polyline_cost_hand_computed():
    a = np.array([[1, 3], [5, 7]], dtype=np.float32)
    assert polyline_cost(a, [[0, 0], [0, 1]]) == 2.0                       # axial: 1 × mean(1, 3)
    assert polyline_cost(a, [[0, 0], [1, 1]]) == pytest.approx(SQRT2 * 4)  # A*'s diagonal
    assert polyline_cost(a, [[0, 0], [0.5, 1]]) == pytest.approx(math.hypot(0.5, 1) * 4)  # dual mean
    assert polyline_cost(a, [[0, 0.25], [0, 0.75]]) == pytest.approx(1.0)  # half an edge
    assert polyline_cost(a, [[0.5, 0.5]]) == 0.0
    a[1, 1] = np.inf
    assert polyline_cost(a, [[0, 0], [0.5, 1]]) == INF
    assert polyline_cost(a, [[0, 0], [0, 1]]) == 2.0                       # the edge avoids (1, 1)
    with pytest.raises(ValueError, match="outside the cell-centre hull"):
        polyline_cost(a, [[0, 0], [0, 1.5]])
    with pytest.raises(ValueError, match="shape"):
        polyline_cost(a, [0, 1, 2])


# ---------------------------------------------------------------- golden maps


def test_open_ground_at_30_degrees_is_nearly_straight():
    a = np.ones((32, 48), dtype=np.float32)
    s, g = (3, 3), (23, 38)            # 20 rows, 35 cols: 29.7 degrees
    euclid = math.hypot(20, 35)
    res = search(a, s, g)
    d = np.diff(res.points_rcf, axis=0)
    length = float(np.sqrt((d * d).sum(axis=1)).sum())
    assert length <= 1.01 * euclid
    assert res.cost <= 1.01 * euclid             # cost 1 per cell: cost = length
    octile = dijkstra_discrete(a, g)[s]
    assert octile == pytest.approx(35 + (SQRT2 - 1) * 20)
    assert octile >= 1.05 * euclid               # A*'s 8-connected path is ~7 % longer
    assert res.info["fallback"] == "none"
    # the path stays close to the straight line
    p = res.points_rcf - np.array(s)
    dist = np.abs(p[:, 0] * 35 - p[:, 1] * 20) / euclid
    assert dist.max() < 1.0


def test_wall_forces_a_detour():
    a = parse("""
        . . . . . . . . . . . . . . .
        . . . . . . . . . . . . . . .
        . . . . . . . # . . . . . . .
        . . . . . . . # . . . . . . .
        . . . . . . . # . . . . . . .
        . . . . . . . # . . . . . . .
        . . . . . . . # . . . . . . .
        . . . . . . . # . . . . . . .
        . . . . . . . # . . . . . . .
    """)
    s, g = (1, 2), (1, 12)
    res = search(a, s, g)
    assert res.points_rcf[:, 0].max() >= 7 - 0.5     # around the top of the wall (rows 0..6 blocked)
    assert res.cost > 10
    assert res.cost <= dijkstra_discrete(a, g)[s] * (1 + 1e-9)
    assert lethal_violations(a, res.points_rcf) == []


def test_unreachable_infimum_falls_back_to_the_discrete_optimum():
    # g(start) hugs row 0 inside the cheap dual cells (2.875), which no polyline attains:
    # straight along row 0 costs 3.25, the two diagonals 3.18 (A*'s optimum) -> discrete path.
    a = parse("""
        1 1 2   1 1 #
        1 2 1.5 # # #
    """)
    res = search(a, (0, 0), (0, 2))
    assert res.info["g_start"] == pytest.approx(1.25 + 1.625)
    assert res.info["fallback"] == "discrete" and res.info["chosen"] == "discrete"
    assert res.cost == pytest.approx(SQRT2 * (1 + 1.25))
    np.testing.assert_array_equal(res.points_rcf, [[0, 0], [1, 1], [0, 2]])
    # with no budget left for the discrete check the (valid) polyline is returned, flagged
    budget = res.info["expanded_field"] + 1
    res2 = search(a, (0, 0), (0, 2), max_expansions=budget)
    assert res2.info["fallback"] == "interrupted"
    assert res2.cost == pytest.approx(res.info["polyline_cost"])


def test_start_equals_goal():
    a = np.ones((3, 3), dtype=np.float32)
    res = search(a, (1, 1), (1, 1))
    assert res.cost == 0.0 and res.points_rcf.tolist() == [[1.0, 1.0]]


def test_single_row_grid():
    a = np.array([[1, 2, 3, 4]], dtype=np.float32)
    res = search(a, (0, 0), (0, 3))
    assert res.cost == pytest.approx(1.5 + 2.5 + 3.5)


def test_enclosed_goal_raises_no_path_found():
    a = parse("""
        . . . . .
        . # # # .
        . # . # .
        . # # # .
        . . . . .
    """)
    with pytest.raises(NoPathFound, match=r"start \(row 0, col 0\) to goal \(row 2, col 2\)"):
        search(a, (0, 0), (2, 2))


def test_diagonal_gap_is_not_a_corner_cut():
    # two lethal cells touching at a corner: A* may not squeeze between them, nor may Field D*
    a = parse("""
        . . .
        . # .
        # . .
    """)
    # row 0: '# . .' ; row 1: '. # .'
    res = search(a, (1, 0), (0, 1))
    assert lethal_violations(a, res.points_rcf) == []
    assert res.cost == pytest.approx(dijkstra_discrete(a, (0, 1))[1, 0])


# ---------------------------------------------------------------- the heuristic


class lattice_on:
    """Force the corner-lattice heuristic on (small blocks, no length bar) inside a ``with``."""

    def __init__(self, block_shift):
        self.block_shift = block_shift

    def __enter__(self):
        self.saved = (fds._BLOCK_SHIFT, fds._LATTICE_MIN_CELLS)
        fds._BLOCK_SHIFT, fds._LATTICE_MIN_CELLS = self.block_shift, 0

    def __exit__(self, *exc):
        fds._BLOCK_SHIFT, fds._LATTICE_MIN_CELLS = self.saved


@settings(max_examples=150, deadline=None)
@given(problems(max_side=9), st.sampled_from([0, 1, 2]), st.booleans())
def test_heuristic_is_consistent_and_admissible(prob, block_shift, interp):
    """h(start) = 0, h changes between neighbours by no more than the smallest gain a step
    can have (the proof in nav.field_dstar), and never exceeds the reference cost to the start."""
    a, s, _ = prob
    h = fds.heuristic_grid(a, s, interp=interp, block_shift=block_shift)
    assert abs(h[s]) <= 1e-12
    ref = field_value_iteration(a, s) if interp else dijkstra_discrete(a, s)
    reach = np.isfinite(ref)
    # h may be inf only where the start is truly unreachable (there it is a valid bound, and
    # consistency between two unreachable cells is vacuous: inf - inf is no gain).
    assert reach[~np.isfinite(h) & np.isfinite(a)].sum() == 0
    fin = np.isfinite(a) & reach
    rows, cols = a.shape
    for r in range(rows):
        for c in range(cols):
            if not fin[r, c]:
                continue
            for dr in (-1, 0, 1):
                for dc in (-1, 0, 1):
                    n = (r + dr, c + dc)
                    if (dr or dc) and 0 <= n[0] < rows and 0 <= n[1] < cols and fin[n]:
                        bound = step_gain_bound(a, (r, c), n, interp)
                        assert h[n] - h[r, c] <= bound * (1 + 1e-12) + 1e-12, ((r, c), n)
    assert (h[reach] <= ref[reach] * (1 + 1e-12) + 1e-12).all()


@settings(max_examples=150, deadline=None)
@given(problems(max_side=9), st.sampled_from([0, 1, 2]))
def test_lattice_heuristic_leaves_the_result_unchanged(prob, block_shift):
    a, s, g = prob
    if not math.isfinite(dijkstra_discrete(a, g)[s]):
        return
    old = search(a, s, g)                       # small grids: octile bound only
    with lattice_on(block_shift):
        new = search(a, s, g)
    assert rel_close(new.info["g_start"], old.info["g_start"])
    assert rel_close(new.info["g_start"], field_value_iteration(a, g)[s])
    assert new.cost <= dijkstra_discrete(a, g)[s] * (1 + 1e-9)
    assert lethal_violations(a, new.points_rcf) == []


def test_lattice_heuristic_on_a_benchmark_like_map():
    """Default 8 x 8 blocks on a 40 x 40 smooth map with obstacles: same g(start), fewer expansions."""
    rng = np.random.default_rng(3)
    f = np.kron(rng.standard_normal((5, 5)), np.ones((8, 8)))
    a = (1 + 4 * (f - f.min()) / (f.max() - f.min())).astype(np.float32)
    a[rng.random(a.shape) < 0.15] = np.inf
    s, g = (1, 2), (38, 37)
    a[s] = a[g] = 1
    res = search(a, s, g)                       # octile length 51 > 32: lattice on
    assert rel_close(res.info["g_start"], field_value_iteration(a, g)[s])
    saved = fds._LATTICE_MIN_CELLS
    try:
        fds._LATTICE_MIN_CELLS = 10**9
        off = search(a, s, g)
    finally:
        fds._LATTICE_MIN_CELLS = saved
    assert rel_close(res.info["g_start"], off.info["g_start"])
    assert res.info["expanded_field"] < off.info["expanded_field"]


# ---------------------------------------------------------------- budgets, deadline, cancel, errors


def test_budget_deadline_and_cancel():
    a = np.ones((128, 128), dtype=np.float32)     # > one chunk of 8192 expansions
    a[5:123, 64] = np.inf
    s, g = (64, 2), (64, 125)
    with pytest.raises(PlanningTimedOut, match="max_expansions=10"):
        search(a, s, g, max_expansions=10)
    t = [0.0]

    def clock():
        t[0] += 1.0
        return t[0]
    with pytest.raises(PlanningTimedOut, match="deadline"):
        search(a, s, g, deadline=(clock, 1.5))
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 1                    # cancelled after the first chunk
    with pytest.raises(PlanningCancelled, match="cancelled by the caller after 8192 expansions"):
        search(a, s, g, cancel=cancel)
    res = search(a, s, g, deadline=(lambda: 0.0, 1.0), cancel=lambda: False)
    assert res.cost > 0


def test_errors_name_the_problem():
    a = np.ones((4, 5), dtype=np.float32)
    a[0, 0] = np.inf
    with pytest.raises(StartInHazard, match=r"start \(row 0, col 0\)"):
        search(a, (0, 0), (3, 3))
    with pytest.raises(GoalInHazard, match=r"goal \(row 0, col 0\)"):
        search(a, (3, 3), (0, 0))
    with pytest.raises(StartOutsideMap, match="4x5"):
        search(a, (4, 0), (3, 3))
    with pytest.raises(GoalOutsideMap):
        search(a, (1, 1), (0, -1))
    with pytest.raises(ValueError, match="max_expansions must be an integer >= 1, got 0"):
        search(a, (1, 1), (3, 3), max_expansions=0)
    with pytest.raises(ValueError, match="NaN"):
        search(np.full((2, 2), np.nan), (0, 0), (1, 1))
    with pytest.raises(ValueError, match="deadline"):
        search(a, (1, 1), (3, 3), deadline=5.0)


def test_plan_grid_uses_field_dstar():
    a = np.ones((20, 30), dtype=np.float32)
    p = nav.plan_grid(a, (2, 2), (15, 27), planner="field_dstar", cell_size_m=0.5)
    assert p.planner == "field_dstar"
    assert p.cost == pytest.approx(polyline_cost(a, p.points_rcf))
    assert p.length_m == pytest.approx(0.5 * p.length_cells)
    assert p.cost < dijkstra_discrete(a, (15, 27))[2, 2]
    assert tuple(p.cells_rc[0]) == (2, 2) and tuple(p.cells_rc[-1]) == (15, 27)


@pytest.mark.slow
def test_fallback_is_rare_on_smooth_terrain():
    """On smooth cost fields (benchmark-like) the polyline is usually certified directly."""
    rng = np.random.default_rng(7)
    n_fallback = 0
    for trial in range(12):
        base = rng.standard_normal((8, 8))
        # bilinear upsampling of a coarse random field: smooth costs in [1, 5]
        f = np.kron(base, np.ones((12, 12)))
        k = np.ones(9) / 9
        f = np.apply_along_axis(lambda v: np.convolve(v, k, mode="same"), 0, f)
        f = np.apply_along_axis(lambda v: np.convolve(v, k, mode="same"), 1, f)
        a = (1 + 4 * (f - f.min()) / (f.max() - f.min())).astype(np.float32)
        if trial % 2:
            a[rng.random(a.shape) < 0.2] = np.inf
        s, g = (5, 5), (90, 80)
        a[s] = a[g] = 1
        try:
            res = search(a, s, g)
        except NoPathFound:
            continue
        assert res.cost <= cost_to_goal(a, g, interp=False)[s] * (1 + 1e-9)
        n_fallback += res.info["fallback"] != "none"
    assert n_fallback <= 6
