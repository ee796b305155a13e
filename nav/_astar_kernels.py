"""Numba kernels for A* and Dijkstra on 8-connected cost grids (wrapper: :mod:`nav.astar`).

Conventions
-----------
* The search runs on a **padded** flat grid: the caller surrounds the cost grid
  with one ring of lethal cells, so cell ``(r, c)`` of the original grid is index
  ``(r + 1) * width + (c + 1)`` with ``width = cols + 2`` and no neighbour test
  needs a bounds check. ``cost`` is float32, ``> 0``, ``inf`` = lethal.
* A move between neighbours ``u`` and ``v`` costs ``(len * 0.5) * (cost[u] + cost[v])``
  in float64 with ``len`` 1 or √2, the same arithmetic as
  :func:`nav.planning.grid_path_cost`; a diagonal move needs both cells it passes
  between to be finite (no corner cutting).
* The open list is a 4-ary min-heap of ``(key, node)`` pairs with lazy deletion:
  an improved cell is pushed again and stale entries are skipped when popped
  (``state`` marks cells unseen 0 / open 1 / closed 2).

Heuristic
---------
``h = max(octile distance × h_weight, lattice bounds)`` where ``h_weight`` is at most
the smallest cost. The optional lattice bounds come from :func:`_lattice_dijkstra`:
potentials ``V`` on the corners of ``B × B`` blocks (``B = 2**block_shift``),
interpolated bilinearly inside each block. Each potential is a shortest-path
distance on the 4-connected corner lattice whose edge weights are
``α·B·m`` (horizontal) and ``β·B·m`` (vertical), ``m`` the smallest cost of the
blocks on either side of the edge, with ``α, β ≤ 1`` and ``α + β ≤ √2``. Inside a
block the bilinear interpolant then changes by at most ``α·m`` per unit along x,
``β·m`` along y, hence by at most ``m`` per unit length along any axial or
diagonal move, while every such move costs at least ``m`` per unit length. So
``φ(x) - φ(goal)`` never drops by more than a move costs: it is consistent and
(being 0 at the goal) admissible, and so is the maximum of several such bounds.
Three ``(α, β)`` pairs are used: ``(1/√2, 1/√2)``, ``(1, √2-1)``, ``(√2-1, 1)``
(tight for diagonal, x-major and y-major travel).

Ties in ``f`` go to the larger ``g``: keys are ``g + (1 + tie_eps)·h``, i.e. A*
with the heuristic inflated by ``tie_eps`` (≈1e-12), whose cost is within a
factor ``1 + tie_eps`` of optimal — below float64 rounding of the path sum.
"""
import math

import numpy as np
from numba import njit

# Status codes returned by the search kernel.
FOUND = 0          # the goal was expanded
BUDGET = 1         # max_expansions reached; the state arrays hold a resumable search
EXHAUSTED = 2      # the open list ran empty without reaching the goal
HEAP_FULL = 3      # the heap arrays need to grow; resumable after growing them

# ``state`` values.
UNSEEN = 0
OPEN = 1
CLOSED = 2

_HALF_SQRT2 = math.sqrt(2.0) * 0.5  # len * 0.5 for a diagonal, as in grid_path_cost
_SQRT2_M1 = math.sqrt(2.0) - 1.0    # octile: max + (√2 - 1) * min

LATTICE_LAYERS = 3


@njit("float64(float64[::1], int64, int64, int64, int64, float64[::1], boolean)", cache=True)
def _lattice_bound(lattice, lat_w, block_shift, r, c, ref, absolute):
    """Largest of the three corner-lattice lower bounds at the unpadded cell ``(r, c)``.

    Each bound is the bilinear interpolation of one layer of block-corner potentials
    (``lattice``, flat ``(rows_b + 1, lat_w, 3)``) at the cell centre, minus ``ref[layer]``
    (the same interpolation at the search's reference cell); with ``absolute`` the
    magnitude is used (a symmetric bound, for D* Lite whose start moves). Shared by the
    A*, Field D* and D* Lite kernels.
    """
    mask = (1 << block_shift) - 1
    inv_b = 1.0 / (1 << block_shift)
    ty = ((r & mask) + 0.5) * inv_b
    tx = ((c & mask) + 0.5) * inv_b
    p00 = ((r >> block_shift) * lat_w + (c >> block_shift)) * 3
    p10 = p00 + lat_w * 3
    w00 = (1.0 - ty) * (1.0 - tx)
    w01 = (1.0 - ty) * tx
    w10 = ty * (1.0 - tx)
    w11 = ty * tx
    best = -np.inf
    for layer in range(3):
        d = (w00 * lattice[p00 + layer] + w01 * lattice[p00 + 3 + layer]
             + w10 * lattice[p10 + layer] + w11 * lattice[p10 + 3 + layer] - ref[layer])
        if absolute and d < 0.0:
            d = -d
        if d > best:
            best = d
    return best


@njit("int64(float32[::1], int64, int64, float64, float64, float64[::1], int64, float64[::1], "
      "float64[::1], int32[::1], uint8[::1], float64[::1], int32[::1], int64[::1], int64)", cache=True)
def _astar_search(cost, width, goal, h_weight, tie_eps, lattice, block_shift, lattice_goal,
                  g, parent, state, heap_key, heap_node, counters, max_expansions):
    """Run (or resume) A* until the goal is expanded, the heap empties or the budget ends.

    Parameters
    ----------
    cost : (n,) float32
        Padded flat cost grid (lethal border), ``inf`` = lethal.
    width : int
        Row length of the padded grid (``cols + 2``).
    goal : int
        Padded flat index of the goal.
    h_weight : float
        Octile-distance weight, ≤ the smallest cost (0 gives Dijkstra).
    tie_eps : float
        Heuristic inflation that breaks ties in ``f`` towards larger ``g``.
    lattice : (L * 3,) float64
        Corner-lattice potentials from :func:`_lattice_dijkstra` (row-major over
        ``(block rows + 1, block cols + 1, 3)``); empty disables them.
    block_shift : int
        Blocks are ``2**block_shift`` cells wide.
    lattice_goal : (3,) float64
        The interpolated potentials at the goal (subtracted so that h(goal) = 0).
    g, parent : (n,) float64, int32
        Cost from the start and predecessor; valid where ``state != UNSEEN``. Written.
    state : (n,) uint8
        ``UNSEEN`` / ``OPEN`` / ``CLOSED``. Written.
    heap_key, heap_node : (capacity,) float64, int32
        The open list. Written.
    counters : (2,) int64
        ``[heap size, cells expanded so far]``; read and written.
    max_expansions : int
        Stop with ``BUDGET`` once ``counters[1]`` reaches this.

    Returns
    -------
    int
        ``FOUND``, ``BUDGET``, ``EXHAUSTED`` or ``HEAP_FULL``.
    """
    inf = np.inf
    gr = goal // width
    gc = goal - gr * width
    size = counters[0]
    expanded = counters[1]
    capacity = heap_key.size
    hk = h_weight * (1.0 + tie_eps)
    use_lattice = lattice.size > 0
    lat_w = 0
    if use_lattice:
        cols = width - 2
        lat_w = ((cols + (1 << block_shift) - 1) >> block_shift) + 1
    lk = 1.0 + tie_eps
    status = BUDGET
    while True:
        if size == 0:
            status = EXHAUSTED
            break
        if expanded >= max_expansions:
            status = BUDGET
            break
        if size + 8 > capacity:
            status = HEAP_FULL
            break
        # pop the smallest key (4-ary heap: children of i are 4i+1 .. 4i+4)
        u = np.int64(heap_node[0])
        size -= 1
        if size > 0:
            k = heap_key[size]
            x = heap_node[size]
            i = 0
            while True:
                c = 4 * i + 1
                if c >= size:
                    break
                best = c
                bk = heap_key[c]
                end = min(c + 4, size)
                for j in range(c + 1, end):
                    kj = heap_key[j]
                    if kj < bk:
                        bk = kj
                        best = j
                if k <= bk:
                    break
                heap_key[i] = bk
                heap_node[i] = heap_node[best]
                i = best
            heap_key[i] = k
            heap_node[i] = x
        if state[u] == CLOSED:
            continue  # a stale entry of a cell already expanded
        state[u] = CLOSED
        expanded += 1
        if u == goal:
            status = FOUND
            break
        r = u // width
        c0 = u - r * width
        gu = g[u]
        cu = np.float64(cost[u])
        for dr in range(-1, 2):
            for dc in range(-1, 2):
                if dr == 0 and dc == 0:
                    continue
                v = u + dr * width + dc
                cv = cost[v]
                if cv == inf:
                    continue
                sv = state[v]
                if sv == CLOSED:
                    continue
                if dr != 0 and dc != 0:
                    if cost[u + dc] == inf or cost[u + dr * width] == inf:
                        continue  # would cut the corner of a lethal cell
                    half_len = _HALF_SQRT2
                else:
                    half_len = 0.5
                ng = gu + half_len * (cu + np.float64(cv))
                if sv == UNSEEN or ng < g[v]:
                    g[v] = ng
                    parent[v] = u
                    state[v] = OPEN
                    ar = abs(r + dr - gr)
                    ac = abs(c0 + dc - gc)
                    key = ng + (max(ar, ac) + _SQRT2_M1 * min(ar, ac)) * hk
                    if use_lattice:  # (r + dr - 1, c0 + dc - 1) is v unpadded
                        kl = ng + _lattice_bound(lattice, lat_w, block_shift, r + dr - 1, c0 + dc - 1,
                                                 lattice_goal, False) * lk
                        if kl > key:
                            key = kl
                    # push (sift up)
                    i = size
                    size += 1
                    while i > 0:
                        p = (i - 1) >> 2
                        pk = heap_key[p]
                        if pk <= key:
                            break
                        heap_key[i] = pk
                        heap_node[i] = heap_node[p]
                        i = p
                    heap_key[i] = key
                    heap_node[i] = v
    counters[0] = size
    counters[1] = expanded
    return status


@njit("int64(int32[::1], int64, int64, int64[::1])", cache=True)
def _trace_parents(parent, start, goal, out):
    """Write the cells from ``start`` to ``goal`` into ``out`` by following ``parent``.

    Returns the number of cells; if it exceeds ``out.size`` nothing useful is written
    and the caller retries with a larger ``out``. Returns -1 on a broken chain.
    """
    count = 0
    v = goal
    while True:
        if count < out.size:
            out[count] = v
        count += 1
        if v == start:
            break
        if count > parent.size:
            return -1
        v = np.int64(parent[v])
    if count <= out.size:
        for i in range(count // 2):
            t = out[i]
            out[i] = out[count - 1 - i]
            out[count - 1 - i] = t
    return count


@njit("int64(float64[::1], int64[::1], int64, float64, int64)", cache=True)
def _binary_heap_push(heap_key, heap_node, size, key, node):
    """Push ``(key, node)`` onto a binary min-heap of ``size`` entries; returns the new size."""
    i = size
    while i > 0:
        q = (i - 1) >> 1
        if heap_key[q] <= key:
            break
        heap_key[i] = heap_key[q]
        heap_node[i] = heap_node[q]
        i = q
    heap_key[i] = key
    heap_node[i] = node
    return size + 1


@njit("void(float64[::1], float64[::1], int64, float64, float64, int64[::1], float64[::1], "
      "float64[::1], uint8[::1], float64[::1], int64[::1])", cache=True)
def _lattice_dijkstra(edge_h, edge_v, lattice_w, w_h, w_v, src, src_dist, dist, done, heap_key, heap_node):
    """Shortest-path distances on the 4-connected corner lattice (one potential of the heuristic).

    Parameters
    ----------
    edge_h : (LH * (LW - 1),) float64
        Per horizontal edge ``(i, j)-(i, j+1)``: the smaller block minimum on its two sides.
    edge_v : ((LH - 1) * LW,) float64
        Per vertical edge ``(i, j)-(i+1, j)``: likewise.
    lattice_w : int
        ``LW``, corners per lattice row.
    w_h, w_v : float
        Edge weight = ``w_h * edge_h`` (horizontal) or ``w_v * edge_v`` (vertical), i.e.
        ``α·B`` and ``β·B``.
    src, src_dist : (k,) int64, float64
        Source corners and their starting distances.
    dist : (LH * LW,) float64
        Output distances (``inf`` where unreachable). Written.
    done, heap_key, heap_node : scratch
        ``(LH * LW,)`` uint8 and ``(4 * LH * LW + k,)`` heap arrays.
    """
    n = dist.size
    lw = lattice_w
    lh = n // lw
    for p in range(n):
        dist[p] = np.inf
        done[p] = 0
    size = 0
    for s in range(src.size):
        p = src[s]
        d0 = src_dist[s]
        if d0 < dist[p]:
            dist[p] = d0
            size = _binary_heap_push(heap_key, heap_node, size, d0, p)
    while size > 0:
        u = heap_node[0]
        du = heap_key[0]
        size -= 1
        if size > 0:
            k = heap_key[size]
            x = heap_node[size]
            i = 0
            while True:
                c = 2 * i + 1
                if c >= size:
                    break
                if c + 1 < size and heap_key[c + 1] < heap_key[c]:
                    c += 1
                if k <= heap_key[c]:
                    break
                heap_key[i] = heap_key[c]
                heap_node[i] = heap_node[c]
                i = c
            heap_key[i] = k
            heap_node[i] = x
        if done[u] != 0:
            continue
        done[u] = 1
        ui = u // lw
        uj = u - ui * lw
        for e in range(4):
            if e == 0:
                if uj + 1 >= lw:
                    continue
                v = u + 1
                w = w_h * edge_h[ui * (lw - 1) + uj]
            elif e == 1:
                if uj == 0:
                    continue
                v = u - 1
                w = w_h * edge_h[ui * (lw - 1) + uj - 1]
            elif e == 2:
                if ui + 1 >= lh:
                    continue
                v = u + lw
                w = w_v * edge_v[u]
            else:
                if ui == 0:
                    continue
                v = u - lw
                w = w_v * edge_v[v]
            dv = du + w
            if dv < dist[v]:
                dist[v] = dv
                size = _binary_heap_push(heap_key, heap_node, size, dv, v)
