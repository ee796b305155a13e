"""Slow, obviously-correct references for the grid planners (oracles for the tests).

Cost convention (nav/planning.py): 8-connected; a move between neighbouring cells
costs its length (1 or sqrt 2) times the mean of the two cells' costs; inf is
lethal; a diagonal move may not pass between (cut the corner of) a lethal cell.

* :func:`ref_dijkstra` -- textbook Dijkstra with :mod:`heapq` over (row, col) tuples.
* :func:`csgraph_costs` -- the same graph handed to ``scipy.sparse.csgraph.dijkstra``.
* :func:`parse_map` -- small maps drawn as strings in test source.
"""
from __future__ import annotations

import heapq
import math

import numpy as np

SQRT2 = math.sqrt(2.0)


def neighbours(cost, r, c):
    """Yield ``(nr, nc, move_cost)`` for every legal move out of ``(r, c)``."""
    rows, cols = cost.shape
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            if dr == 0 and dc == 0:
                continue
            nr, nc = r + dr, c + dc
            if not (0 <= nr < rows and 0 <= nc < cols):
                continue
            if math.isinf(cost[r, c]) or math.isinf(cost[nr, nc]):
                continue
            if dr != 0 and dc != 0:
                # the two cells the diagonal passes between
                if math.isinf(cost[r, nc]) or math.isinf(cost[nr, c]):
                    continue
                length = SQRT2
            else:
                length = 1.0
            yield nr, nc, length * (float(cost[r, c]) + float(cost[nr, nc])) / 2.0


def ref_dijkstra(cost, start_rc, goal_rc=None):
    """Cost from ``start_rc`` to ``goal_rc`` (inf if unreachable), or the whole distance grid if no goal."""
    cost = np.asarray(cost, dtype=np.float64)
    start = tuple(int(v) for v in start_rc)
    dist = {start: 0.0}
    done = set()
    heap = [(0.0, start)]
    while heap:
        d, u = heapq.heappop(heap)
        if u in done:
            continue
        done.add(u)
        if goal_rc is not None and u == tuple(goal_rc):
            return d
        for nr, nc, w in neighbours(cost, *u):
            nd = d + w
            if nd < dist.get((nr, nc), math.inf):
                dist[(nr, nc)] = nd
                heapq.heappush(heap, (nd, (nr, nc)))
    if goal_rc is not None:
        return math.inf
    out = np.full(cost.shape, np.inf)
    for (r, c), d in dist.items():
        out[r, c] = d
    return out


def csgraph_costs(cost, start_rc):
    """Distance grid from ``start_rc`` by ``scipy.sparse.csgraph.dijkstra`` on the same graph."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import dijkstra

    a = np.asarray(cost, dtype=np.float64)
    rows, cols = a.shape
    idx = np.arange(a.size).reshape(a.shape)
    fin = np.isfinite(a)
    src, dst, wts = [], [], []
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            if dr == 0 and dc == 0:
                continue
            r0, r1 = max(0, -dr), rows - max(0, dr)   # rows of u such that u + dr is inside
            c0, c1 = max(0, -dc), cols - max(0, dc)
            u = (slice(r0, r1), slice(c0, c1))
            v = (slice(r0 + dr, r1 + dr), slice(c0 + dc, c1 + dc))
            ok = fin[u] & fin[v]
            length = 1.0
            if dr and dc:
                ok &= fin[r0:r1, c0 + dc:c1 + dc] & fin[r0 + dr:r1 + dr, c0:c1]
                length = SQRT2
            src.append(idx[u][ok])
            dst.append(idx[v][ok])
            wts.append(length * (a[u][ok] + a[v][ok]) / 2.0)
    m = coo_matrix((np.concatenate(wts), (np.concatenate(src), np.concatenate(dst))),
                   shape=(a.size, a.size)).tocsr()
    d = dijkstra(m, directed=True, indices=int(start_rc[0]) * cols + int(start_rc[1]))
    return d.reshape(a.shape)


def octile(a_rc, b_rc):
    dr, dc = abs(a_rc[0] - b_rc[0]), abs(a_rc[1] - b_rc[1])
    return max(dr, dc) - min(dr, dc) + SQRT2 * min(dr, dc)


def parse_map(text):
    """A cost grid from a drawing: one text line per row, the first line is the top
    (northernmost, highest) row, as on a map (row 0 = south edge, nav/terrain_map.py).

    ``.`` cost 1, ``#`` lethal, ``1``-``9`` that cost, ``S``/``G`` start/goal (cost 1).
    Returns ``(cost float32, start_rc, goal_rc)``.
    """
    lines = [ln.strip() for ln in text.strip().splitlines()][::-1]
    cost = np.ones((len(lines), len(lines[0])), dtype=np.float32)
    start = goal = None
    for r, ln in enumerate(lines):
        assert len(ln) == cost.shape[1], f"ragged map at line {r}"
        for c, ch in enumerate(ln):
            if ch == "#":
                cost[r, c] = np.inf
            elif ch.isdigit():
                cost[r, c] = float(ch)
            elif ch == "S":
                start = (r, c)
            elif ch == "G":
                goal = (r, c)
            else:
                assert ch == ".", f"unknown map character {ch!r}"
    return cost, start, goal


def check_grid_path(cost, cells_rc, start_rc, goal_rc):
    """Assert a cell path is legal (neighbours, no lethal cell, no corner cut) and joins start to goal."""
    cells = np.asarray(cells_rc)
    assert tuple(cells[0]) == tuple(start_rc), f"path starts at {tuple(cells[0])}, not {start_rc}"
    assert tuple(cells[-1]) == tuple(goal_rc), f"path ends at {tuple(cells[-1])}, not {goal_rc}"
    for (r0, c0), (r1, c1) in zip(cells[:-1], cells[1:]):
        assert max(abs(r1 - r0), abs(c1 - c0)) == 1, f"({r0},{c0})->({r1},{c1}) is not a move"
        assert np.isfinite(cost[r1, c1]), f"({r1},{c1}) is lethal"
        if r1 != r0 and c1 != c0:
            assert np.isfinite(cost[r0, c1]) and np.isfinite(cost[r1, c0]), \
                f"({r0},{c0})->({r1},{c1}) cuts a lethal corner"
