"""Field D* vs A*: path cost, path length and time on the same maps.

Maps (seeded): ``obstacles`` = smooth cost field in [1, 5] plus ~20 % random lethal
cells; ``open`` = the smooth cost field alone. Start and goal near opposite
corners. Both planners run through their registered ``search`` back-ends on the
same validated grid, interleaved, repeated; the median time is reported. The
discrete optimum is A*'s cost (A* is exact under the cost convention of
:mod:`nav.planning`); on small maps a slow pure-Python Dijkstra confirms it
when A* is unavailable.

    python benchmarks/bench_field_dstar.py [--quick] [--sizes 256 1024] [--seeds 3] [--repeats 3]
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nav import field_dstar  # noqa: E402
from nav.planning import validate_cost_grid  # noqa: E402


def make_map(kind: str, n: int, seed: int):
    rng = np.random.default_rng(seed)
    f = gaussian_filter(rng.standard_normal((n, n)), sigma=n / 32, mode="wrap")
    cost = 1.0 + 4.0 * (f - f.min()) / (f.max() - f.min())
    if kind == "obstacles":
        cost[rng.random((n, n)) < 0.2] = np.inf
    start, goal = (n // 12, n // 10), (n - 1 - n // 9, n - 1 - n // 14)
    for r, c in (start, goal):   # no obstacles in a 5x5 patch around start and goal
        patch = cost[r - 2:r + 3, c - 2:c + 3]
        patch[~np.isfinite(patch)] = 1.0
    return validate_cost_grid(cost), start, goal


def length(points):
    d = np.diff(np.asarray(points, dtype=np.float64), axis=0)
    return float(np.sqrt((d * d).sum(axis=1)).sum())


def discrete_reference():
    """The discrete-optimum planner: A* if nav/astar.py exists, else the slow reference Dijkstra."""
    try:
        from nav import astar
        return "A*", lambda a, s, g: astar.search(a, s, g, max_expansions=None, deadline=None, cancel=None)
    except ImportError:
        sys.path.insert(0, str(ROOT / "tests" / "nav"))
        from _ref_field_dstar import dijkstra_discrete

        def ref(a, s, g):
            d = dijkstra_discrete(a, g)
            path = [s]
            while path[-1] != g:       # descend the exact cost-to-goal
                r, c = path[-1]
                nbrs = [(r + i, c + j) for i in (-1, 0, 1) for j in (-1, 0, 1)
                        if (i or j) and 0 <= r + i < a.shape[0] and 0 <= c + j < a.shape[1]]
                path.append(min(nbrs, key=lambda q: d[q] + math.hypot(q[0] - r, q[1] - c)
                                * 0.5 * (a[r, c] + a[q])))
            return field_dstar.GridResult(np.array(path, dtype=np.float64), float(d[s]),
                                          int(np.isfinite(d).sum()), {})
        return "reference Dijkstra (slow, untimed)", ref


def timed(fn, *args):
    t0 = time.perf_counter()
    r = fn(*args)
    return time.perf_counter() - t0, r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="one 256x256 map per kind, one repeat")
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    sizes, seeds, repeats = ([256], 1, 1) if args.quick else (args.sizes, args.seeds, args.repeats)
    ref_name, ref = discrete_reference()
    if ref_name != "A*":
        print("nav/astar.py not found: discrete optimum from the slow reference, maps <= 256² only\n")
        sizes = [n for n in sizes if n <= 256] or [256]
    fd = lambda a, s, g: field_dstar.search(a, s, g, max_expansions=None, deadline=None, cancel=None)  # noqa: E731

    # warm up the Numba caches outside the timings
    a, s, g = make_map("obstacles", 32, 0)
    fd(a, s, g)
    ref(a, s, g)

    rows = []
    for kind in ("obstacles", "open"):
        for n in sizes:
            for seed in range(seeds):
                a, s, g = make_map(kind, n, seed)
                t_fd, t_ref = [], []
                for _ in range(repeats):             # interleaved
                    dt, r_fd = timed(fd, a, s, g)
                    t_fd.append(dt)
                    dt, r_ref = timed(ref, a, s, g)
                    t_ref.append(dt)
                rows.append(dict(kind=kind, n=n, seed=seed, fd=r_fd, ref=r_ref,
                                 t_fd=statistics.median(t_fd),
                                 t_ref=statistics.median(t_ref) if t_ref else math.nan))

    print(f"Field D* vs {ref_name} (discrete optimum), median of {repeats} interleaved runs, "
          f"times of the `search` back-ends on the same validated grid\n")
    print("| map | size | seed | cost A* | cost FD | FD/A* cost | length A* | length FD | FD/A* length "
          "| expanded A* | expanded FD | time A* | time FD | FD/A* time | FD fallback |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        fd_r, ref_r, info = r["fd"], r["ref"], r["fd"].info
        len_ref = length(ref_r.points_rcf)
        fb = info["fallback"] if info["fallback"] == "none" else f"{info['fallback']} → {info['chosen']}"
        print(f"| {r['kind']} | {r['n']}² | {r['seed']} | {ref_r.cost:.1f} | {fd_r.cost:.1f} "
              f"| {fd_r.cost / ref_r.cost:.4f} | {len_ref:.1f} | {length(fd_r.points_rcf):.1f} "
              f"| {length(fd_r.points_rcf) / len_ref:.4f} | {ref_r.expanded} | {fd_r.expanded} "
              f"| {r['t_ref'] * 1e3:.0f} ms | {r['t_fd'] * 1e3:.0f} ms | {r['t_fd'] / r['t_ref']:.2f} | {fb} |"
              if ref_name == "A*" else f"| n/a | {r['t_fd'] * 1e3:.0f} ms | n/a | {fb} |")

    print("\nSummary (geometric means over seeds)\n")
    print("| map | size | FD/A* cost | FD/A* length | FD/A* time | fallbacks |")
    print("|---|---|---|---|---|---|")
    for kind in ("obstacles", "open"):
        for n in sizes:
            sel = [r for r in rows if r["kind"] == kind and r["n"] == n]

            def gm(vals):
                return math.exp(sum(math.log(v) for v in vals) / len(vals))
            c = gm([r["fd"].cost / r["ref"].cost for r in sel])
            ln = gm([length(r["fd"].points_rcf) / length(r["ref"].points_rcf) for r in sel])
            t = gm([r["t_fd"] / r["t_ref"] for r in sel]) if ref_name == "A*" else math.nan
            fb = sum(r["fd"].info["fallback"] != "none" for r in sel)
            print(f"| {kind} | {n}² | {c:.4f} | {ln:.4f} | {t:.2f} | {fb}/{len(sel)} |")


if __name__ == "__main__":
    main()
