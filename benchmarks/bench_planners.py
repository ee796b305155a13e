"""Grid planners: our A* vs pyastar2d (C++) vs scikit-image MCP_Geometric, and D* Lite replanning.

Same inputs for everyone, interleaved in one process (query by query, planner by
planner), median of repeats. Maps: a smooth random cost field in [1, 5] plus ~20 %
random lethal cells, fixed seeds; three corner-to-corner-ish queries per map.

    python benchmarks/bench_planners.py            # 256², 1024², 2048², 5 repeats
    python benchmarks/bench_planners.py --quick    # 256² and 512², 2 repeats (smoke run)

Conventions differ, so only some costs can be compared:

* ``skimage.graph.MCP_Geometric`` charges a move the mean of the two cells' costs
  times its length, like us, but lets diagonals cut the corners of lethal cells. On
  the same field without lethal cells the two costs must agree (checked to 1e-5
  relative); with obstacles its cost is lower or equal (reported).
* ``pyastar2d`` charges every move, diagonal or not, the cost of the cell entered,
  and also cuts corners: a different problem, so only its speed is compared.

Prints Markdown tables.
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nav import astar, plan_grid  # noqa: E402
from nav.dstar_lite import DStarLite  # noqa: E402
from nav.errors import NoPathFound  # noqa: E402


# --------------------------------------------------------------------------- maps
def smooth_field(n: int, seed: int) -> np.ndarray:
    """A smooth random field in [1, 5] (Gaussian-filtered noise, features ~n/16 cells)."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    f = gaussian_filter(rng.standard_normal((n, n)), n / 16)
    return (1.0 + 4.0 * (f - f.min()) / np.ptp(f)).astype(np.float32)


def make_map(n: int, seed: int, lethal_fraction: float = 0.2):
    """The benchmark map and its queries: (cost with obstacles, field without, [(start, goal), ...])."""
    field = smooth_field(n, seed)
    rng = np.random.default_rng(seed + 1000)
    cost = field.copy()
    cost[rng.random((n, n)) < lethal_fraction] = np.inf
    m = max(2, n // 50)
    queries = [((m, m), (n - 1 - m, n - 1 - 2 * m)),                 # SW -> NE
               ((n - 1 - m, m + 1), (m + 2, n - 1 - m)),             # NW -> SE
               ((m, n // 2 - m), (n - 1 - m, n // 2 + 3 * m))]       # S -> N
    for s, g in queries:
        cost[s] = cost[g] = field[s] = field[g] = 1.0
    return cost, field, queries


# ---------------------------------------------------------------------- planners
def run_ours(cost, s, g):
    r = astar.search(cost, s, g)
    return r.cost, r.expanded


def run_ours_api(cost, s, g):
    p = plan_grid(cost, s, g, "astar")
    return p.cost, p.expanded


def run_pyastar2d(cost, s, g):
    import pyastar2d

    path = pyastar2d.astar_path(cost, s, g, allow_diagonal=True)
    return (math.nan if path is None else float(len(path))), None


def run_mcp(cost, s, g):
    from skimage.graph import MCP_Geometric

    m = MCP_Geometric(cost, fully_connected=True)
    costs, _ = m.find_costs([s], [g])
    m.traceback(g)
    return float(costs[g]), None


PEERS = [("ours: `astar.search`", run_ours), ("ours: `plan_grid(..., 'astar')`", run_ours_api),
         ("pyastar2d", run_pyastar2d), ("skimage MCP_Geometric", run_mcp)]


def timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


# -------------------------------------------------------------------- sections
def bench_speed(sizes, repeats):
    print("## A* per query: us vs pyastar2d vs scikit-image (median of "
          f"{repeats} repeats, interleaved)\n")
    print("| map | query | ours `astar.search` | ours `plan_grid` | pyastar2d | skimage MCP | "
          "pyastar2d / ours | MCP / ours | expanded (ours) | cost (ours) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    summary = []
    cost_checks = []
    for n in sizes:
        cost, field, queries = make_map(n, seed=n)
        for fn in (run_ours, run_pyastar2d, run_mcp):   # warm-up (Numba, imports)
            fn(cost, *queries[0])
        per_size = {name: [] for name, _ in PEERS}
        for qi, (s, g) in enumerate(queries):
            times = {name: [] for name, _ in PEERS}
            results = {}
            for _ in range(repeats):
                for name, fn in PEERS:
                    dt, out = timed(fn, cost, s, g)
                    times[name].append(dt)
                    results[name] = out
            med = {k: statistics.median(v) for k, v in times.items()}
            for k, v in med.items():
                per_size[k].append(v)
            ours = med["ours: `astar.search`"]
            c_ours, exp_ours = results["ours: `astar.search`"]
            print(f"| {n}² | {qi + 1} | {ours * 1e3:.1f} ms | {med[PEERS[1][0]] * 1e3:.1f} ms | "
                  f"{med['pyastar2d'] * 1e3:.1f} ms | {med['skimage MCP_Geometric'] * 1e3:.1f} ms | "
                  f"{med['pyastar2d'] / ours:.2f}× | {med['skimage MCP_Geometric'] / ours:.2f}× | "
                  f"{exp_ours} | {c_ours:.3f} |")
            c_mcp = results["skimage MCP_Geometric"][0]
            c_field_ours = astar.search(field, s, g).cost
            c_field_mcp = run_mcp(field, s, g)[0]
            cost_checks.append((n, qi + 1, c_field_ours, c_field_mcp, c_ours, c_mcp))
        tot = {k: sum(v) for k, v in per_size.items()}
        summary.append((n, tot))
    print("\n### Totals per map (sum of the query medians)\n")
    print("| map | ours `astar.search` | ours `plan_grid` | pyastar2d | skimage MCP | pyastar2d / ours | "
          "MCP / ours |")
    print("|---|---|---|---|---|---|---|")
    for n, tot in summary:
        ours = tot["ours: `astar.search`"]
        print(f"| {n}² | {ours * 1e3:.0f} ms | {tot[PEERS[1][0]] * 1e3:.0f} ms | "
              f"{tot['pyastar2d'] * 1e3:.0f} ms | {tot['skimage MCP_Geometric'] * 1e3:.0f} ms | "
              f"{tot['pyastar2d'] / ours:.2f}× | "
              f"{tot['skimage MCP_Geometric'] / ours:.2f}× |")
    return cost_checks


def report_costs(cost_checks):
    print("\n## Costs: ours vs MCP_Geometric\n")
    print("Without lethal cells the conventions are identical, so the costs must agree; with them MCP "
          "may cut corners of lethal cells (we may not), so its cost can only be lower.\n")
    print("| map | query | field only: ours | field only: MCP | rel. diff | with obstacles: ours | "
          "with obstacles: MCP | MCP saving by cutting corners |")
    print("|---|---|---|---|---|---|---|---|")
    worst = 0.0
    for n, q, fo, fm, co, cm in cost_checks:
        rel = abs(fo - fm) / fo
        worst = max(worst, rel)
        print(f"| {n}² | {q} | {fo:.4f} | {fm:.4f} | {rel:.1e} | {co:.4f} | {cm:.4f} | "
              f"{(co - cm) / co:.2%} |")
        assert cm <= co * (1 + 1e-9), "MCP found a dearer path than ours: impossible if it may cut corners"
    assert worst <= 1e-5, f"costs disagree where the conventions match: {worst:.2e}"
    # MCP's corner cutting, shown on the smallest case
    tiny = np.array([[1.0, np.inf], [np.inf, 1.0]], dtype=np.float32)
    mcp_tiny = run_mcp(tiny, (0, 0), (1, 1))[0]
    try:
        ours_tiny = f"{astar.search(tiny, (0, 0), (1, 1)).cost:.4f}"
    except NoPathFound:
        ours_tiny = "NoPathFound"
    print(f"\nCorner cutting, 2×2 grid `[[1, inf], [inf, 1]]` from (0, 0) to (1, 1): MCP_Geometric cost "
          f"{mcp_tiny:.4f} (moves diagonally between the two lethal cells); ours: {ours_tiny}.")
    print(f"Largest relative difference where the conventions match: {worst:.1e}.")


def _octile_only_astar(cost, s, g):
    """Our A* with the octile heuristic alone (the corner-lattice bounds switched off)."""
    saved = astar.LATTICE_MIN_CELLS
    astar.LATTICE_MIN_CELLS = math.inf
    try:
        return astar.search(cost, s, g)
    finally:
        astar.LATTICE_MIN_CELLS = saved


def _local_change(kind, cost, first, n, rng):
    """Cells and new costs for a square of 1 % of the map just ahead of the rover."""
    side = int(round(math.sqrt(0.01 * n * n)))
    ahead = first.cells_rc[min(len(first) - 1, len(first) // 20 + side)]
    r0 = int(np.clip(ahead[0] - side // 2, 0, n - side))
    c0 = int(np.clip(ahead[1] - side // 2, 0, n - side))
    rr, cc = np.mgrid[r0:r0 + side, c0:c0 + side]
    rc = np.stack([rr.ravel(), cc.ravel()], axis=1)
    old = cost[rr, cc].ravel()
    if kind == "blocking":     # an obstacle field across the planned path
        new = np.where(rng.random(len(rc)) < 0.5, np.inf, 3.0 * old)
    else:                      # a fresh local map refines the costs
        new = np.maximum(old * rng.uniform(0.7, 1.5, len(rc)), 1.0)
        new[rng.random(len(rc)) < 0.1] = np.inf
    return rc, new


def _sensor_patch(cost, first, n, rng):
    """The rover's own update: the sensor footprint (1 % of the map, from the rover forwards
    along the path) is re-estimated, costs within ±10 % (lognormal, never below the map's
    flat-ground cost 1), and a few 2 × 2 rocks appear in it."""
    side = int(round(math.sqrt(0.01 * n * n)))
    rover_i = len(first) // 30
    ahead = first.cells_rc[min(len(first) - 1, rover_i + side // 2)]
    r0 = int(np.clip(ahead[0] - side // 2, 0, n - side))
    c0 = int(np.clip(ahead[1] - side // 2, 0, n - side))
    patch = cost[r0:r0 + side, c0:c0 + side].astype(np.float64)
    patch = np.maximum(patch * np.exp(rng.normal(0.0, 0.1, patch.shape)), 1.0)
    for _ in range(max(3, side * side // 400)):
        r, c = rng.integers(0, side - 1, 2)
        patch[r:r + 2, c:c + 2] = np.inf
    rr, cc = np.mgrid[r0:r0 + side, c0:c0 + side]
    return np.stack([rr.ravel(), cc.ravel()], axis=1), patch.ravel()


SCENARIOS = {  # name: (cells driven before the change, the change)
    "drive + sensor patch": (lambda first: len(first) // 30, lambda c, f, n, rng: _sensor_patch(c, f, n, rng)),
    "blocking": (lambda first: len(first) // 20, lambda c, f, n, rng: _local_change("blocking", c, f, n, rng)),
    "refine": (lambda first: len(first) // 20, lambda c, f, n, rng: _local_change("refine", c, f, n, rng)),
}


def bench_dstar(sizes, repeats):
    print("\n## D* Lite: first plan and replans vs a fresh A*\n")
    print("First plan: `DStarLite(...)` + `plan()` vs our `astar.search` on the same query (the A* of "
          "the table above), with D* Lite's corner-lattice heuristic on (`lattice_heuristic=True`, as "
          "`plan_grid(..., 'dstar_lite')` uses) and off (octile only, the `DStarLite` default).\n")
    print("| map | A* | D* Lite (lattice) | ratio | expanded | D* Lite (octile only) | ratio | expanded | A* expanded |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in sizes:
        cost, _, queries = make_map(n, seed=n)
        s, g = queries[0]
        rows = []
        for _ in range(repeats):
            t_a, ra = timed(astar.search, cost, s, g)
            t_l, pl = timed(lambda: DStarLite(cost, s, g, lattice_heuristic=True).plan())
            t_o, po = timed(lambda: DStarLite(cost, s, g).plan())
            assert abs(pl.cost - ra.cost) <= 1e-9 * ra.cost and abs(po.cost - ra.cost) <= 1e-9 * ra.cost
            rows.append((t_a, t_l, t_o, pl.expanded, po.expanded, ra.expanded))
        t_a, t_l, t_o, e_l, e_o, e_a = (statistics.median(r[i] for r in rows) for i in range(6))
        print(f"| {n}² | {t_a * 1e3:.0f} ms | {t_l * 1e3:.0f} ms | {t_l / t_a:.2f}× | {int(e_l)} | "
              f"{t_o * 1e3:.0f} ms | {t_o / t_a:.2f}× | {int(e_o)} | {int(e_a)} |")

    print("\n### Replan after a 1 % local map change near the rover\n")
    print("After the first plan the rover drives along it and a square of 1 % of the map near it "
          "changes. *drive + sensor patch* (how the rover uses it): the rover has driven 1/30 of the path; "
          "its sensor footprint, from the rover forwards along the path, is re-estimated: costs × "
          "lognormal(σ = 0.1), never below 1, and a few 2 × 2 rocks appear. *blocking* (adversarial): "
          "after 5 % of the path, a square just ahead becomes half lethal and the rest 3× dearer, across "
          "the path. *refine*: the same square, costs × U(0.7, 1.5) and 10 % lethal. D* Lite times "
          "`update_cells` + `replan`; the fresh A* runs from the rover on the changed grid (its cost is "
          "asserted equal). *rebuilt*: the update made a cell cheaper than its block minimum, so the "
          "lattice potentials and the queue keys were rebuilt (part of the replan time).\n")
    print("| map | change | heuristic | update + replan | fresh A* | **A* / replan** | expanded: replan / A* | rebuilt |")
    print("|---|---|---|---|---|---|---|---|")
    for n in sizes:
        cost, _, queries = make_map(n, seed=n)
        s, g = queries[0]
        firsts = {True: DStarLite(cost, s, g, lattice_heuristic=True).plan()}
        for kind, (driven, change) in SCENARIOS.items():
            rows = {False: [], True: []}
            for rep in range(repeats):
                first = firsts[True]
                rover = tuple(first.cells_rc[driven(first)])
                rc, new = change(cost, first, n, np.random.default_rng(rep))
                new[(rc == rover).all(axis=1) | (rc == g).all(axis=1)] = 1.0
                for lat in (False, True):
                    dsl = DStarLite(cost, s, g, lattice_heuristic=lat)
                    dsl.plan()
                    dsl.move_start(rover)   # a cell on both planners' (equal-cost) first paths
                    t0 = time.perf_counter()
                    dsl.update_cells(rc, new)
                    rebuilt = dsl._rekey
                    replanned = dsl.replan()
                    t_replan = time.perf_counter() - t0
                    t_fresh, fresh = timed(astar.search, np.array(dsl.cost), rover, g)
                    assert abs(replanned.cost - fresh.cost) <= 1e-9 * fresh.cost, (kind, n, lat)
                    rows[lat].append((t_replan, t_fresh, replanned.expanded, fresh.expanded, rebuilt))
            for lat in (False, True):
                r = rows[lat]
                t_r, t_f, e_r, e_f = (statistics.median(x[i] for x in r) for i in range(4))
                print(f"| {n}² | {kind} | {'lattice' if lat else 'octile (default)'} | {t_r * 1e3:.1f} ms | "
                      f"{t_f * 1e3:.1f} ms | **{t_f / t_r:.1f}×** | {int(e_r)} / {int(e_f)} | "
                      f"{'yes' if any(x[4] for x in r) else 'no'} |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small maps, 2 repeats (smoke run)")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--sizes", type=int, nargs="+", default=None)
    a = ap.parse_args(argv)
    sizes = a.sizes or ([256, 512] if a.quick else [256, 1024, 2048])
    repeats = a.repeats or (2 if a.quick else 5)
    print(f"# Grid planners ({', '.join(f'{n}²' for n in sizes)}; numpy {np.__version__})\n")
    checks = bench_speed(sizes, repeats)
    report_costs(checks)
    bench_dstar(sizes, max(1, min(repeats, 3)))


if __name__ == "__main__":
    main()
