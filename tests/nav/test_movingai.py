"""Published oracle: the Moving AI *arena* benchmark (Sturtevant 2012).

Every scenario's optimal octile length (no corner cutting) must equal our cost on a 1/inf grid for
the exact planners, and bound Field D* from above. See tests/data/movingai/README.md.
"""
from pathlib import Path

import numpy as np
import pytest

import nav

DATA = Path(__file__).resolve().parents[1] / "data" / "movingai"


def load_map(path):
    lines = path.read_text().splitlines()
    assert lines[0] == "type octile"
    h = int(lines[1].split()[1])
    w = int(lines[2].split()[1])
    assert lines[3] == "map"
    grid = lines[4:4 + h]
    assert len(grid) == h and all(len(r) == w for r in grid)
    passable = np.array([[ch in ".GS" for ch in row] for row in grid])
    return np.where(passable, 1.0, np.inf).astype(np.float32)


def load_scenarios(path):
    out = []
    for line in path.read_text().splitlines()[1:]:
        f = line.split("\t")
        if len(f) != 9:
            continue
        sx, sy, gx, gy = (int(v) for v in f[4:8])
        out.append(((sy, sx), (gy, gx), float(f[8])))
    return out


COST = load_map(DATA / "arena.map")
SCEN = load_scenarios(DATA / "arena.map.scen")


def test_scenarios_loaded():
    assert COST.shape == (49, 49) and len(SCEN) == 130


@pytest.mark.parametrize("planner", ["astar", "dijkstra", "dstar_lite"])
def test_exact_planners_match_published_optimum(planner):
    for start, goal, optimum in SCEN:
        p = nav.plan_grid(COST, start, goal, planner=planner)
        assert p.cost == pytest.approx(optimum, abs=1e-6), (start, goal)
        assert tuple(p.cells_rc[0]) == start and tuple(p.cells_rc[-1]) == goal


def test_field_dstar_never_exceeds_published_optimum():
    shorter = 0
    for start, goal, optimum in SCEN:
        p = nav.plan_grid(COST, start, goal, planner="field_dstar")
        assert p.cost <= optimum + 1e-6, (start, goal)
        shorter += p.cost < optimum - 1e-6
    assert shorter > len(SCEN) // 2   # any-angle paths beat the octile optimum on most queries
