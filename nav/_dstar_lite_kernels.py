"""Numba kernels for D* Lite on 8-connected cost grids (wrapper: :mod:`nav.dstar_lite`).

D* Lite, optimized version: S. Koenig and M. Likhachev, "D* Lite", AAAI 2002,
Figure 4. The search runs from the goal towards the start, so ``g`` and ``rhs``
are costs *to the goal*; moving the start only shifts the heuristic's focus
(``km`` grows by the heuristic distance the start moved) and changing cell costs
only touches the vertices whose edges changed.

State (all flat over a grid **padded** with one ring of lethal cells, cell
``(r, c)`` at ``(r + 1) * width + c + 1``, so no neighbour test needs a bounds
check):

* ``cost`` float32 (owned, written by :func:`_dstar_update_cells`), ``inf`` = lethal;
* ``g``, ``rhs`` float64;
* an indexed 4-ary min-heap: ``key1``, ``key2`` (the key ``(k1, k2)``, ordered
  lexicographically), ``node`` (int32 cell) and ``pos`` (int32 per cell: its heap
  slot, ``-1`` = not queued); every function that moves an entry keeps ``pos`` up
  to date, so keys can rise or fall and entries can be removed in O(log n);
* ``istate`` int64 ``[heap size, start, goal, expansions so far]``;
* ``fstate`` float64 ``[km, h_weight]``; the heuristic is the octile distance to
  the start times ``h_weight`` (≤ the smallest cost, so admissible, consistent and
  a metric, as D* Lite's ``km`` needs).

Edge costs follow :mod:`nav.planning`: ``(len * 0.5) * (cost[u] + cost[v])``,
no corner cutting; they are symmetric, so predecessors are successors. Border
cells are lethal, so they never enter the queue and are never expanded.
"""
import math

import numpy as np
from numba import njit

DONE = 0     # the start is consistent and no queued key is below its key
BUDGET = 1   # max_expansions reached; the state is valid and the search resumable

_HALF_SQRT2 = math.sqrt(2.0) * 0.5
_SQRT2_M1 = math.sqrt(2.0) - 1.0

_STATE = ("float32[::1], int64, float64[::1], float64[::1], float64[::1], float64[::1], "
          "int32[::1], int32[::1], int64[::1], float64[::1]")
_HEAP_ARGS = "float64[::1], float64[::1], int32[::1], int32[::1]"


@njit(f"void({_HEAP_ARGS}, int64)", cache=True)
def _heap_sift_up(key1, key2, node, pos, i):
    """Move the entry at slot ``i`` towards the root until its parent is not larger."""
    k1 = key1[i]
    k2 = key2[i]
    v = node[i]
    while i > 0:
        p = (i - 1) >> 2
        p1 = key1[p]
        if p1 < k1 or (p1 == k1 and key2[p] <= k2):
            break
        key1[i] = p1
        key2[i] = key2[p]
        w = node[p]
        node[i] = w
        pos[w] = i
        i = p
    key1[i] = k1
    key2[i] = k2
    node[i] = v
    pos[v] = i


@njit(f"void({_HEAP_ARGS}, int64, int64)", cache=True)
def _heap_sift_down(key1, key2, node, pos, i, size):
    """Move the entry at slot ``i`` towards the leaves until no child is smaller."""
    k1 = key1[i]
    k2 = key2[i]
    v = node[i]
    while True:
        c = 4 * i + 1
        if c >= size:
            break
        best = c
        b1 = key1[c]
        b2 = key2[c]
        for j in range(c + 1, min(c + 4, size)):
            j1 = key1[j]
            if j1 < b1 or (j1 == b1 and key2[j] < b2):
                best = j
                b1 = j1
                b2 = key2[j]
        if k1 < b1 or (k1 == b1 and k2 <= b2):
            break
        key1[i] = b1
        key2[i] = b2
        w = node[best]
        node[i] = w
        pos[w] = i
        i = best
    key1[i] = k1
    key2[i] = k2
    node[i] = v
    pos[v] = i


@njit(f"int64({_HEAP_ARGS}, int64, int64)", cache=True)
def _heap_remove(key1, key2, node, pos, i, size):
    """Remove the entry at slot ``i`` (its ``pos`` becomes -1); return the new size."""
    pos[node[i]] = -1
    size -= 1
    if i < size:
        key1[i] = key1[size]
        key2[i] = key2[size]
        v = node[size]
        node[i] = v
        pos[v] = i
        p = (i - 1) >> 2
        if i > 0 and (key1[i] < key1[p] or (key1[i] == key1[p] and key2[i] < key2[p])):
            _heap_sift_up(key1, key2, node, pos, i)
        else:
            _heap_sift_down(key1, key2, node, pos, i, size)
    return size


@njit("float64(float32[::1], int64, int64, int64, int64)", cache=True)
def _edge_cost(cost, width, u, dr, dc):
    """Cost of the move from cell ``u`` by ``(dr, dc)``; ``inf`` if not allowed."""
    cu = cost[u]
    cv = cost[u + dr * width + dc]
    if cu == np.inf or cv == np.inf:
        return np.inf
    if dr != 0 and dc != 0:
        if cost[u + dc] == np.inf or cost[u + dr * width] == np.inf:
            return np.inf
        return _HALF_SQRT2 * (np.float64(cu) + np.float64(cv))
    return 0.5 * (np.float64(cu) + np.float64(cv))


@njit("float64(float32[::1], int64, float64[::1], int64)", cache=True)
def _min_succ(cost, width, g, u):
    """``min over neighbours v of c(u, v) + g[v]`` (the right-hand side of ``u``)."""
    best = np.inf
    if cost[u] == np.inf:
        return best
    for dr in range(-1, 2):
        for dc in range(-1, 2):
            if dr == 0 and dc == 0:
                continue
            val = _edge_cost(cost, width, u, dr, dc) + g[u + dr * width + dc]
            if val < best:
                best = val
    return best


@njit("int64(float64[::1], float64[::1], float64[::1], float64[::1], int32[::1], int32[::1], "
      "int64, int64, int64, int64, int64, float64, float64)", cache=True)
def _update_vertex(g, rhs, key1, key2, node, pos, size, u, width, sr, sc, km, w):
    """Queue ``u`` with a fresh key if inconsistent, unqueue it if consistent; return heap size."""
    gu = g[u]
    ru = rhs[u]
    p = np.int64(pos[u])
    if gu != ru:
        k2 = min(gu, ru)
        ur = np.int64((u + 0.5) * (1.0 / width))   # u // width, without an integer division
        ar = abs(ur - sr)
        ac = abs(u - ur * width - sc)
        k1 = k2 + (max(ar, ac) + _SQRT2_M1 * min(ar, ac)) * w + km
        if p < 0:
            p = size
            node[p] = u
            size += 1
            key1[p] = k1
            key2[p] = k2
            _heap_sift_up(key1, key2, node, pos, p)
        else:
            o1 = key1[p]
            o2 = key2[p]
            key1[p] = k1
            key2[p] = k2
            if k1 < o1 or (k1 == o1 and k2 < o2):
                _heap_sift_up(key1, key2, node, pos, p)
            else:
                _heap_sift_down(key1, key2, node, pos, p, size)
    elif p >= 0:
        size = _heap_remove(key1, key2, node, pos, p, size)
    return size


@njit(f"int64({_STATE}, int64, float64)", cache=True)
def _dstar_compute(cost, width, g, rhs, key1, key2, node, pos, istate, fstate, max_expansions,
                   key_rel_tol):
    """ComputeShortestPath (optimized D* Lite), resumable.

    Runs until the start is not underconsistent and no queued ``k1`` is within
    ``key_rel_tol`` (relative) of the start's, or until ``istate[3]``
    (expansions, counted cumulatively) reaches ``max_expansions``. Writes ``g``,
    ``rhs``, the heap and ``istate``.

    The tolerance replaces the paper's exact test ``TopKey < key(start)``: with the
    octile heuristic many vertices on optimal paths have ``k1`` *exactly* equal to
    the start's in real arithmetic (and a smaller ``k2``, so the paper processes
    them), but rounding can put their float ``k1`` an ulp above it, which would stop
    the search with the start's ``rhs`` stale. Processing a few extra vertices in
    key order never harms correctness.

    Returns
    -------
    int
        ``DONE`` or ``BUDGET``. ``rhs[start] == inf`` after ``DONE`` means no path.
    """
    size = istate[0]
    start = istate[1]
    goal = istate[2]
    expanded = istate[3]
    km = fstate[0]
    w = fstate[1]
    sr = start // width
    sc = start - sr * width
    inf = np.inf
    status = DONE
    while size > 0:
        gs = g[start]
        rs = rhs[start]
        ks1 = min(gs, rs) + km
        t1 = key1[0]
        t2 = key2[0]
        if not (t1 <= ks1 + key_rel_tol * ks1 or rs > gs):
            break
        if expanded >= max_expansions:
            status = BUDGET
            break
        u = np.int64(node[0])
        gu = g[u]
        ru = rhs[u]
        ur = np.int64((u + 0.5) * (1.0 / width))   # u // width (exact for u < 2**50)
        ar = abs(ur - sr)
        ac = abs(u - ur * width - sc)
        kn2 = min(gu, ru)
        kn1 = kn2 + (max(ar, ac) + _SQRT2_M1 * min(ar, ac)) * w + km
        if t1 < kn1 or (t1 == kn1 and t2 < kn2):
            # The key was computed for an earlier start: requeue with the current one.
            key1[0] = kn1
            key2[0] = kn2
            _heap_sift_down(key1, key2, node, pos, 0, size)
            continue
        expanded += 1
        if gu > ru:
            # Overconsistent: settle g and offer it to the predecessors.
            g[u] = ru
            size = _heap_remove(key1, key2, node, pos, 0, size)
            for dr in range(-1, 2):
                for dc in range(-1, 2):
                    if dr == 0 and dc == 0:
                        continue
                    v = u + dr * width + dc
                    if v == goal:
                        continue
                    cand = _edge_cost(cost, width, u, dr, dc) + ru
                    if cand < rhs[v]:
                        rhs[v] = cand
                        size = _update_vertex(g, rhs, key1, key2, node, pos, size, v, width, sr, sc, km, w)
        else:
            # Underconsistent: raise g to inf; predecessors that relied on u look again.
            g_old = gu
            g[u] = inf
            for dr in range(-1, 2):
                for dc in range(-1, 2):
                    if dr == 0 and dc == 0:
                        continue
                    v = u + dr * width + dc
                    if v == goal:
                        continue
                    c = _edge_cost(cost, width, u, dr, dc)
                    if c == inf:
                        continue
                    if rhs[v] == c + g_old:
                        rhs[v] = _min_succ(cost, width, g, v)
                        size = _update_vertex(g, rhs, key1, key2, node, pos, size, v, width, sr, sc, km, w)
            size = _update_vertex(g, rhs, key1, key2, node, pos, size, u, width, sr, sc, km, w)
    istate[0] = size
    istate[3] = expanded
    return status


@njit(f"int64({_STATE}, int64[::1], float32[::1], uint8[::1], float32[::1], int64[::1])", cache=True)
def _dstar_update_cells(cost, width, g, rhs, key1, key2, node, pos, istate, fstate, idx, new_cost,
                        mark, orig, affected):
    """Set ``cost[idx] = new_cost`` (in order: the last value for a cell wins) and repair
    ``rhs`` and the queue around every cell whose cost changed.

    A cell's cost enters every edge to its 8 neighbours and, as a corner, the
    diagonals between its orthogonal neighbours, so ``rhs`` is recomputed, once, for
    each changed cell and its in-grid neighbours (all those edges' endpoints).
    ``mark`` (uint8 per cell, all 0), ``orig`` (float32, ``idx.size``) and
    ``affected`` (int64, ``9 * idx.size``) are work space; ``mark`` is left all 0.
    Returns the number of distinct cells whose cost changed.
    """
    size = istate[0]
    start = istate[1]
    goal = istate[2]
    km = fstate[0]
    w = fstate[1]
    sr = start // width
    sc = start - sr * width
    rows = cost.size // width - 2
    k = idx.size
    for i in range(k):          # read every original before writing any (duplicates)
        orig[i] = cost[idx[i]]
    for i in range(k):
        cost[idx[i]] = new_cost[i]
    changed = 0
    n_aff = 0
    for i in range(k):
        u = idx[i]
        if mark[u] & 1:
            continue
        mark[u] |= 1
        if cost[u] == orig[i]:
            continue
        changed += 1
        r = u // width
        for dr in range(-1, 2):
            if r + dr < 1 or r + dr > rows:
                continue
            for dc in range(-1, 2):
                v = u + dr * width + dc
                c = v - (r + dr) * width
                if c < 1 or c > width - 2 or mark[v] & 2:
                    continue
                mark[v] |= 2
                affected[n_aff] = v
                n_aff += 1
    for i in range(k):
        mark[idx[i]] = 0
    for i in range(n_aff):
        v = affected[i]
        mark[v] = 0
        if v == goal:
            continue
        rhs[v] = _min_succ(cost, width, g, v)
        size = _update_vertex(g, rhs, key1, key2, node, pos, size, v, width, sr, sc, km, w)
    istate[0] = size
    return changed


@njit("int64(float32[::1], int64, float64[::1], int64, int64, int64[::1], float64[::1])", cache=True)
def _dstar_extract_path(cost, width, g, start, goal, out, total_out):
    """Follow ``argmin_v c(u, v) + g[v]`` from ``start`` to ``goal``.

    Writes the cells into ``out`` (if it is large enough) and the path cost, summed
    in path order, into ``total_out[0]``. Returns the number of cells, or -1 if the
    walk gets stuck or loops (``g`` not settled).
    """
    n = cost.size
    count = 0
    u = start
    total = 0.0
    while True:
        if count < out.size:
            out[count] = u
        count += 1
        if u == goal:
            break
        if count > n:
            return -1
        best = np.inf
        best_v = -1
        best_c = 0.0
        for dr in range(-1, 2):
            for dc in range(-1, 2):
                if dr == 0 and dc == 0:
                    continue
                e = _edge_cost(cost, width, u, dr, dc)
                v = u + dr * width + dc
                val = e + g[v]
                if val < best:
                    best = val
                    best_v = v
                    best_c = e
        if best_v < 0:
            return -1
        total += best_c
        u = best_v
    total_out[0] = total
    return count
