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
* ``gr`` float64, ``g`` and ``rhs`` interleaved (``gr[2u]``, ``gr[2u + 1]``): an
  expansion reads both for each neighbour, so they share a cache line;
* an indexed 4-ary min-heap: ``hkey`` (the keys ``(k1, k2)`` interleaved, slot
  ``i`` at ``2i, 2i + 1``, ordered lexicographically), ``node`` (int32 cell) and
  ``pos`` (int32 per cell: its heap slot, ``-1`` = not queued); every function
  that moves an entry keeps ``pos`` up to date, so keys can rise or fall and
  entries can be removed in O(log n);
* ``istate`` int64 ``[heap size, start, goal, expansions so far]``;
* ``fstate`` float64 ``[km, h_weight, φ0(start), φ1(start), φ2(start)]``.

Heuristic
---------
``h(u) = max(h_weight × octile(u, start), max_l |φ_l(u) - φ_l(start)|)``. The
``φ_l`` are the corner-lattice potentials of :mod:`nav._astar_kernels` (bilinear
inside 8 × 8-cell blocks), built once from some source cell (``lattice`` empty
switches them off). Those potentials change along any move by at most what the
move costs, in either direction, as long as no cell costs less than its block's
minimum used to build them; so ``|φ(u) - φ(s)|`` is a lower bound on the cost
between ``u`` and *any* cell ``s`` (as in ALT's landmark bounds), consistent, and
satisfies the triangle inequality. So does the octile term, and so does the
maximum of such terms: exactly what D* Lite's ``km`` needs when the start moves.
The wrapper rebuilds the potentials (and the queue keys) when a cost update
breaks the block minima.

Edge costs follow :mod:`nav.planning`: ``(len * 0.5) * (cost[u] + cost[v])``,
no corner cutting; they are symmetric, so predecessors are successors. Border
cells are lethal, so they never enter the queue and are never expanded.
"""
import math

import numpy as np
from numba import njit

from ._astar_kernels import _lattice_bound

DONE = 0     # the start is consistent and no queued key is below its key
BUDGET = 1   # max_expansions reached; the state is valid and the search resumable

_HALF_SQRT2 = math.sqrt(2.0) * 0.5
_SQRT2_M1 = math.sqrt(2.0) - 1.0

# cost, width, gr, hkey, node, pos, istate, fstate, lattice, block_shift
_STATE = ("float32[::1], int64, float64[::1], float64[::1], int32[::1], int32[::1], int64[::1], "
          "float64[::1], float64[::1], int64")
_HEAP = "float64[::1], int32[::1], int32[::1]"


@njit(f"void({_HEAP}, int64, float64, float64, int64)", cache=True)
def _heap_put_up(hkey, node, pos, i, k1, k2, v):
    """Write entry ``(k1, k2, v)`` at slot ``i`` (a hole), moving it towards the root."""
    while i > 0:
        p = (i - 1) >> 2
        p1 = hkey[2 * p]
        if p1 < k1 or (p1 == k1 and hkey[2 * p + 1] <= k2):
            break
        hkey[2 * i] = p1
        hkey[2 * i + 1] = hkey[2 * p + 1]
        w = node[p]
        node[i] = w
        pos[w] = i
        i = p
    hkey[2 * i] = k1
    hkey[2 * i + 1] = k2
    node[i] = v
    pos[v] = i


@njit(f"void({_HEAP}, int64, float64, float64, int64, int64)", cache=True)
def _heap_put_down(hkey, node, pos, i, k1, k2, v, size):
    """Write entry ``(k1, k2, v)`` at slot ``i`` (a hole), moving it towards the leaves."""
    while True:
        c = 4 * i + 1
        if c >= size:
            break
        best = c
        b1 = hkey[2 * c]
        b2 = hkey[2 * c + 1]
        for j in range(c + 1, min(c + 4, size)):
            j1 = hkey[2 * j]
            if j1 < b1 or (j1 == b1 and hkey[2 * j + 1] < b2):
                best = j
                b1 = j1
                b2 = hkey[2 * j + 1]
        if k1 < b1 or (k1 == b1 and k2 <= b2):
            break
        hkey[2 * i] = b1
        hkey[2 * i + 1] = b2
        w = node[best]
        node[i] = w
        pos[w] = i
        i = best
    hkey[2 * i] = k1
    hkey[2 * i + 1] = k2
    node[i] = v
    pos[v] = i


@njit(f"int64({_HEAP}, int64, float64, float64, int64)", cache=True)
def _heap_set(hkey, node, pos, u, k1, k2, size):
    """Queue cell ``u`` with key ``(k1, k2)`` (insert, or move it if queued); return the heap size."""
    p = np.int64(pos[u])
    if p < 0:
        _heap_put_up(hkey, node, pos, size, k1, k2, u)
        return size + 1
    o1 = hkey[2 * p]
    if k1 < o1 or (k1 == o1 and k2 < hkey[2 * p + 1]):
        _heap_put_up(hkey, node, pos, p, k1, k2, u)
    else:
        _heap_put_down(hkey, node, pos, p, k1, k2, u, size)
    return size


@njit(f"int64({_HEAP}, int64, int64)", cache=True)
def _heap_remove(hkey, node, pos, i, size):
    """Remove the entry at slot ``i`` (its ``pos`` becomes -1); return the new size."""
    pos[node[i]] = -1
    size -= 1
    if i < size:
        k1 = hkey[2 * size]
        k2 = hkey[2 * size + 1]
        v = np.int64(node[size])
        p = (i - 1) >> 2
        if i > 0 and (k1 < hkey[2 * p] or (k1 == hkey[2 * p] and k2 < hkey[2 * p + 1])):
            _heap_put_up(hkey, node, pos, i, k1, k2, v)
        else:
            _heap_put_down(hkey, node, pos, i, k1, k2, v, size)
    return size


@njit("float64(int64, int64, int64, int64, float64[::1], float64[::1], int64, int64)", cache=True)
def _heuristic(ur, uc, sr, sc, fstate, lattice, lat_w, block_shift):
    """``h`` of the padded cell ``(ur, uc)`` towards the start ``(sr, sc)`` (see the module notes)."""
    ar = abs(ur - sr)
    ac = abs(uc - sc)
    h = (max(ar, ac) + _SQRT2_M1 * min(ar, ac)) * fstate[1]
    if lattice.size > 0:  # (ur - 1, uc - 1) is the cell unpadded
        d = _lattice_bound(lattice, lat_w, block_shift, ur - 1, uc - 1, fstate[2:5], True)
        if d > h:
            h = d
    return h


@njit("float64(float32[::1], int64, float64[::1], int64)", cache=True)
def _min_succ(cost, width, gr, u):
    """``min over neighbours v of c(u, v) + g[v]`` (the right-hand side of ``u``)."""
    best = np.inf
    cu = cost[u]
    if cu == np.inf:
        return best
    cu64 = np.float64(cu)
    for dr in range(-1, 2):
        for dc in range(-1, 2):
            if dr == 0 and dc == 0:
                continue
            v = u + dr * width + dc
            cv = cost[v]
            if cv == np.inf:
                continue
            if dr != 0 and dc != 0:
                if cost[u + dc] == np.inf or cost[u + dr * width] == np.inf:
                    continue
                val = _HALF_SQRT2 * (cu64 + np.float64(cv)) + gr[2 * v]
            else:
                val = 0.5 * (cu64 + np.float64(cv)) + gr[2 * v]
            if val < best:
                best = val
    return best


@njit(f"int64({_STATE}, int64, int64)", cache=True)
def _update_vertex(cost, width, gr, hkey, node, pos, istate, fstate, lattice, block_shift, size, u):
    """Queue ``u`` with a fresh key if inconsistent, unqueue it if consistent; return heap size."""
    gu = gr[2 * u]
    ru = gr[2 * u + 1]
    if gu != ru:
        start = istate[1]
        sr = start // width
        ur = u // width
        lat_w = ((width - 2 + (1 << block_shift) - 1) >> block_shift) + 1
        k2 = min(gu, ru)
        k1 = k2 + _heuristic(ur, u - ur * width, sr, start - sr * width, fstate, lattice, lat_w,
                             block_shift) + fstate[0]
        return _heap_set(hkey, node, pos, u, k1, k2, size)
    p = np.int64(pos[u])
    if p >= 0:
        size = _heap_remove(hkey, node, pos, p, size)
    return size


@njit(f"int64({_STATE}, int64, float64)", cache=True)
def _dstar_compute(cost, width, gr, hkey, node, pos, istate, fstate, lattice, block_shift,
                   max_expansions, key_rel_tol):
    """ComputeShortestPath (optimized D* Lite), resumable.

    Runs until the start is not underconsistent and no queued ``k1`` is within
    ``key_rel_tol`` (relative) of the start's, or until ``istate[3]``
    (expansions, counted cumulatively) reaches ``max_expansions``. Writes ``gr``,
    the heap and ``istate``.

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
    expanded = istate[3]
    km = fstate[0]
    sr = start // width
    sc = start - sr * width
    lat_w = ((width - 2 + (1 << block_shift) - 1) >> block_shift) + 1
    inf = np.inf
    status = DONE
    while size > 0:
        gs = gr[2 * start]
        rs = gr[2 * start + 1]
        ks1 = min(gs, rs) + km
        t1 = hkey[0]
        t2 = hkey[1]
        if not (t1 <= ks1 + key_rel_tol * ks1 or rs > gs):
            break
        if expanded >= max_expansions:
            status = BUDGET
            break
        u = np.int64(node[0])
        gu = gr[2 * u]
        ru = gr[2 * u + 1]
        ur = u // width
        uc = u - ur * width
        kn2 = min(gu, ru)
        kn1 = kn2 + _heuristic(ur, uc, sr, sc, fstate, lattice, lat_w, block_shift) + km
        if t1 < kn1 or (t1 == kn1 and t2 < kn2):
            # The key was computed for an earlier start: requeue with the current one.
            _heap_put_down(hkey, node, pos, 0, kn1, kn2, u, size)
            continue
        expanded += 1
        cu = np.float64(cost[u])
        if gu > ru:
            # Overconsistent: settle g and offer it to the predecessors (an O(1) rhs update each).
            gr[2 * u] = ru
            size = _heap_remove(hkey, node, pos, 0, size)
            for dr in range(-1, 2):
                for dc in range(-1, 2):
                    if dr == 0 and dc == 0:
                        continue
                    v = u + dr * width + dc
                    cv = cost[v]
                    if cv == inf:
                        continue
                    if dr != 0 and dc != 0:
                        if cost[u + dc] == inf or cost[u + dr * width] == inf:
                            continue
                        cand = _HALF_SQRT2 * (cu + np.float64(cv)) + ru
                    else:
                        cand = 0.5 * (cu + np.float64(cv)) + ru
                    # (the goal's rhs is 0, below any candidate: it is never touched)
                    if cand < gr[2 * v + 1]:
                        gr[2 * v + 1] = cand
                        gv = gr[2 * v]
                        if gv != cand:
                            k2 = min(gv, cand)
                            k1 = k2 + _heuristic(ur + dr, uc + dc, sr, sc, fstate, lattice, lat_w,
                                                 block_shift) + km
                            size = _heap_set(hkey, node, pos, v, k1, k2, size)
                        else:
                            p = np.int64(pos[v])
                            if p >= 0:
                                size = _heap_remove(hkey, node, pos, p, size)
        else:
            # Underconsistent: raise g to inf; predecessors that relied on u look again.
            g_old = gu
            gr[2 * u] = inf
            # (a lethal u has no edges: _dstar_update_cells already repaired its neighbours)
            for dr in range(-1, 2 if cu < inf else -1):
                for dc in range(-1, 2):
                    if dr == 0 and dc == 0:
                        continue
                    v = u + dr * width + dc
                    cv = cost[v]
                    if cv == inf:
                        continue
                    if dr != 0 and dc != 0:
                        if cost[u + dc] == inf or cost[u + dr * width] == inf:
                            continue
                        c = _HALF_SQRT2 * (cu + np.float64(cv))
                    else:
                        c = 0.5 * (cu + np.float64(cv))
                    if gr[2 * v + 1] == c + g_old:   # never the goal (rhs 0 < c + g_old)
                        gr[2 * v + 1] = _min_succ(cost, width, gr, v)
                        size = _update_vertex(cost, width, gr, hkey, node, pos, istate, fstate, lattice,
                                              block_shift, size, v)
            size = _update_vertex(cost, width, gr, hkey, node, pos, istate, fstate, lattice,
                                  block_shift, size, u)
    istate[0] = size
    istate[3] = expanded
    return status


@njit(f"int64({_STATE}, int64[::1], float32[::1], uint8[::1], float32[::1], int64[::1])", cache=True)
def _dstar_update_cells(cost, width, gr, hkey, node, pos, istate, fstate, lattice, block_shift, idx,
                        new_cost, mark, orig, affected):
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
    goal = istate[2]
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
        r_new = _min_succ(cost, width, gr, v)
        if r_new == gr[2 * v + 1]:
            continue      # unchanged rhs: still consistent or still queued with a valid key
        gr[2 * v + 1] = r_new
        size = _update_vertex(cost, width, gr, hkey, node, pos, istate, fstate, lattice, block_shift,
                              size, v)
    istate[0] = size
    return changed


@njit(f"void({_STATE})", cache=True)
def _dstar_rekey(cost, width, gr, hkey, node, pos, istate, fstate, lattice, block_shift):
    """Recompute every queued key for the current start, ``km`` and heuristic, and re-heapify.

    Used after the heuristic changed (its weight fell, or the lattice potentials were
    rebuilt); the caller resets ``km`` to 0 first.
    """
    size = istate[0]
    start = istate[1]
    sr = start // width
    sc = start - sr * width
    lat_w = ((width - 2 + (1 << block_shift) - 1) >> block_shift) + 1
    for i in range(size):
        u = np.int64(node[i])
        ur = u // width
        k2 = min(gr[2 * u], gr[2 * u + 1])
        hkey[2 * i] = k2 + _heuristic(ur, u - ur * width, sr, sc, fstate, lattice, lat_w, block_shift) \
            + fstate[0]
        hkey[2 * i + 1] = k2
    if size > 1:
        for i in range((size - 2) // 4, -1, -1):   # Floyd's heapify (4-ary)
            _heap_put_down(hkey, node, pos, i, hkey[2 * i], hkey[2 * i + 1], np.int64(node[i]), size)


@njit("int64(float32[::1], int64, float64[::1], int64, int64, int64[::1], float64[::1])", cache=True)
def _dstar_extract_path(cost, width, gr, start, goal, out, total_out):
    """Follow ``argmin_v c(u, v) + g[v]`` from ``start`` to ``goal``.

    Writes the cells into ``out`` (if it is large enough) and the path cost, summed
    in path order, into ``total_out[0]``. Returns the number of cells, or -1 if the
    walk gets stuck or loops (``g`` not settled).
    """
    n = cost.size
    count = 0
    u = start
    total = 0.0
    inf = np.inf
    while True:
        if count < out.size:
            out[count] = u
        count += 1
        if u == goal:
            break
        if count > n:
            return -1
        best = inf
        best_v = -1
        best_c = 0.0
        cu = np.float64(cost[u])
        for dr in range(-1, 2):
            for dc in range(-1, 2):
                if dr == 0 and dc == 0:
                    continue
                v = u + dr * width + dc
                cv = cost[v]
                if cv == inf:
                    continue
                if dr != 0 and dc != 0:
                    if cost[u + dc] == inf or cost[u + dr * width] == inf:
                        continue
                    e = _HALF_SQRT2 * (cu + np.float64(cv))
                else:
                    e = 0.5 * (cu + np.float64(cv))
                val = e + gr[2 * v]
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
