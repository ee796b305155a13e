"""The ``rover`` command line.

Subcommands::

    rover plan   --rover osr --terrain (DEM file | preset) [--seed N] --start X,Y --goal X,Y
                 [--planner astar|field_dstar|dstar_lite|dijkstra] [--out DIR]

    rover sim-device --protocol roboclaw [--rover osr] [--seed N] [--baud B] [--link PATH]
                 serve a virtual device on a pseudo-terminal until Ctrl-C
    rover drive  --port URL --protocol roboclaw|rnp|mavlink [--rover R] [--yes] [--script F] [--duration S]
                 keyboard teleop with live telemetry, for the bench
    rover vo     SEQUENCE [--out DIR] [--max-frames N] [--poses FILE]
                 stereo visual odometry over a KITTI-layout sequence: TUM trajectory, ATE/RPE, plot
    rover traverse SCENARIO [--backend sim|sim-serial|serial] [--port URL] [--protocol P] [--out DIR]
                 [--camera SRC[,RIGHT]] [--calibration FILE]
                 an autonomous traverse: summary.json, traverse.png, traverse.mcap
    rover campaign CAMPAIGN --runs N [--workers K] [--cluster tcp://HOST:PORT] [--out DIR]
                 Monte Carlo traverses: success rate with its interval, failure causes, distributions
    rover replay LOG [--out DIR] [--set NAME=VALUE ...]
                 re-run a traverse log's perception, estimation and planning; where they now differ

Exit status: 0 success, 1 the plan failed (no path, hazard, timeout — explained in a
sentence), 2 bad input (unknown rover, malformed YAML or DEM, bad arguments).
"""
from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from pathlib import Path as FsPath

import numpy as np

log = logging.getLogger("rovernav.cli")

DEM_SUFFIXES = {".npy", ".npz", ".asc", ".tif", ".tiff", ".img", ".lbl"}


class CliError(Exception):
    """Bad input: printed as one sentence, exit status 2."""


def _parse_xy(text: str, what: str) -> tuple[float, float]:
    try:
        parts = [float(v) for v in text.replace(" ", "").split(",")]
    except ValueError:
        parts = []
    if len(parts) != 2 or not all(math.isfinite(v) for v in parts):
        raise CliError(f"--{what} must be X,Y in metres (e.g. --{what}=3.5,-2), got {text!r}")
    return parts[0], parts[1]


def _load_terrain(args):
    """A TerrainMap from a DEM file or a generated preset, plus a description."""
    import nav

    t = args.terrain
    p = FsPath(t)
    if p.suffix.lower() in DEM_SUFFIXES or p.exists():
        if not p.exists():
            raise CliError(f"--terrain {t}: no such file")
        kw = {}
        if p.suffix.lower() == ".npy":   # a bare array: --cell is its cell size, not a resampling
            if args.cell is None:
                raise CliError(f"--terrain {t}: a .npy array holds no cell size; give it with --cell METRES")
            kw["cell_size_m"] = args.cell
        elif args.cell is not None:
            kw["resolution_m"] = args.cell
        return nav.load_dem(p, **kw), None
    from sim.terrain import PRESETS, generate_terrain

    preset = t
    if preset not in PRESETS:
        try:
            preset = nav.load_planet(t).terrain_preset
        except nav.ConfigError:
            names = sorted(set(PRESETS) | {"earth", "moon", "mars"})
            raise CliError(f"--terrain {t!r} is neither a DEM file ({', '.join(sorted(DEM_SUFFIXES))}) "
                           f"nor a terrain preset ({', '.join(names)})") from None
    size = args.size
    if not (size > 0):
        raise CliError(f"--size must be > 0 metres, got {size}")
    cell = args.cell if args.cell is not None else 0.05
    if not (cell > 0) or size / cell > 8192:
        raise CliError(f"--cell {cell} m gives {size / cell:.0f} cells across {size} m; use 0 < cells <= 8192")
    starts = [xy for xy in (args._start_xy, args._goal_xy) if xy is not None]
    if not starts:
        starts = [_default_xy(size, size, 0.1), _default_xy(size, size, 0.9)]
    pad = 1.2
    gen = generate_terrain(preset, size_m=size, cell_size_m=cell, seed=args.seed,
                           clear_zones=[(x, y, pad) for x, y in starts])
    return gen.terrain, gen


def _default_xy(w, h, frac):
    return (frac * w, frac * h)


def _nearest_traversable(costmap, rc):
    ok = np.argwhere(np.isfinite(costmap.cost))
    if len(ok) == 0:
        return None
    d = ((ok - np.asarray(rc)) ** 2).sum(axis=1)
    return tuple(int(v) for v in ok[int(np.argmin(d))])


def cmd_plan(args) -> int:
    import nav
    from hil.report import render_plan_png, write_json

    out = FsPath(args.out)
    args._start_xy = _parse_xy(args.start, "start") if args.start else None
    args._goal_xy = _parse_xy(args.goal, "goal") if args.goal else None
    rover = nav.load_rover(args.rover)
    t0 = time.perf_counter()
    terrain, gen = _load_terrain(args)
    t_terrain = time.perf_counter() - t0
    t0 = time.perf_counter()
    costmap = nav.traversability(terrain, rover)
    t_trav = time.perf_counter() - t0
    x0, x1, y0, y1 = terrain.extent_m
    w, h = x1 - x0, y1 - y0
    auto = []
    start_xy, goal_xy = args._start_xy, args._goal_xy
    for which, xy, frac in (("start", start_xy, 0.1), ("goal", goal_xy, 0.9)):
        if xy is None:
            want = (x0 + frac * w, y0 + frac * h)
            rc = _nearest_traversable(costmap, terrain.world_to_cell(want))
            if rc is None:
                raise CliError("the whole map is lethal for this rover: nowhere to start")
            xy = tuple(float(v) for v in terrain.cell_to_world(rc))
            auto.append(which)
        if which == "start":
            start_xy = xy
        else:
            goal_xy = xy
    summary = {
        "ok": False,
        "rover": rover.name, "rover_profile": rover.source,
        "terrain": {"source": terrain.source, "shape": list(terrain.shape), "cell_size_m": terrain.cell_size_m,
                    "extent_m": list(terrain.extent_m), "known_fraction": terrain.known_fraction,
                    "rocks": len(gen.rocks) if gen is not None else None,
                    "craters": len(gen.craters) if gen is not None else None},
        "hazards": {"limits": costmap.limits, "lethal_fraction": float(costmap.lethal.mean())},
        "planner": args.planner, "start_xy_m": list(start_xy), "goal_xy_m": list(goal_xy),
        "auto_placed": auto,
        "straight_line_m": math.dist(start_xy, goal_xy),
        "timing_s": {"terrain": t_terrain, "traversability": t_trav},
    }
    plan = None
    status = 0
    t0 = time.perf_counter()
    try:
        plan = nav.plan(costmap, start_xy, goal_xy, planner=args.planner,
                        max_expansions=args.max_expansions, deadline_s=args.deadline)
    except nav.PlanningError as e:
        msg = str(e)
        if isinstance(e, (nav.StartInHazard, nav.GoalInHazard)):
            xy = start_xy if isinstance(e, nav.StartInHazard) else goal_xy
            rc = _nearest_traversable(costmap, terrain.world_to_cell(xy))
            if rc is not None:
                nx, ny = terrain.cell_to_world(rc)
                msg += f"; the nearest traversable cell is at x={nx:.2f} m, y={ny:.2f} m"
        summary["reason"] = f"{type(e).__name__}: {msg}"
        status = 1
    summary["timing_s"]["plan"] = time.perf_counter() - t0
    if plan is not None:
        slope_on = costmap.slope_deg[plan.cells_rc[:, 0], plan.cells_rc[:, 1]]
        summary.update(ok=True, cost=plan.cost, length_m=plan.length_m, expanded=plan.expanded,
                       path_efficiency=summary["straight_line_m"] / plan.length_m if plan.length_m > 0 else 1.0,
                       max_slope_on_path_deg=float(np.nanmax(slope_on)) if slope_on.size else 0.0,
                       waypoints_xy_m=np.round(plan.xy_m, 3), planner_info=plan.info)
    start_rcf = terrain.world_to_grid(start_xy)
    goal_rcf = terrain.world_to_grid(goal_xy)
    title = f"{rover.name} on {terrain.source or 'terrain'} - {args.planner}"
    if plan is not None:
        title += f": {plan.length_m:.1f} m, cost {plan.cost:.1f}"
    else:
        title += ": NO PATH"
    png = render_plan_png(out / "plan.png", costmap, plan, start_rcf, goal_rcf, title=title)
    js = write_json(out / "plan.json", summary)
    if plan is not None:
        print(f"planned {plan.length_m:.1f} m ({summary['straight_line_m']:.1f} m straight) from "
              f"({start_xy[0]:.2f}, {start_xy[1]:.2f}) to ({goal_xy[0]:.2f}, {goal_xy[1]:.2f}) with {args.planner}: "
              f"cost {plan.cost:.1f}, {plan.expanded} cells expanded, "
              f"traversability {t_trav:.2f} s, plan {summary['timing_s']['plan']:.2f} s")
    else:
        print(f"no plan: {summary['reason']}", file=sys.stderr)
    print(f"picture: {png}\nsummary: {js}")
    return status


def build_parser() -> argparse.ArgumentParser:
    from nav.planning import PLANNERS

    ap = argparse.ArgumentParser(prog="rover", description="rovernav: terrain-aware rover autonomy")
    ap.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("plan", help="plan a safe path across a terrain map",
                       description="Plan a safe path across a DEM or generated terrain and write "
                                   "plan.png and plan.json to --out.")
    p.add_argument("--rover", default="osr", help="rover profile name (osr, skidsteer, sawppy) or YAML path")
    p.add_argument("--terrain", default="mars",
                   help="DEM file (.npy .npz .asc .tif .IMG .LBL) or preset (mars, moon, earth_yard / earth)")
    p.add_argument("--seed", type=int, default=1, help="seed for generated terrain")
    p.add_argument("--size", type=float, default=60.0, help="side of generated terrain, metres")
    p.add_argument("--cell", type=float, default=None,
                   help="cell size in metres (generated terrain: default 0.05; .npy: its cell size; "
                        "other DEMs: resample to it)")
    p.add_argument("--start", help="X,Y in metres (default: a traversable cell near the south-west corner)")
    p.add_argument("--goal", help="X,Y in metres (default: a traversable cell near the north-east corner)")
    p.add_argument("--planner", choices=PLANNERS, default="astar")
    p.add_argument("--max-expansions", type=int, default=None)
    p.add_argument("--deadline", type=float, default=None, help="planning deadline, seconds")
    p.add_argument("--out", default="runs/plan", help="output folder (default runs/plan)")
    p.set_defaults(func=cmd_plan)
    import importlib

    for mod in _COMMAND_MODULES:     # each owns its subcommand(s): register(sub) adds them
        importlib.import_module(mod).register(sub)
    return ap


#: Modules adding subcommands; each defines ``register(subparsers)`` and keeps its heavy imports inside
#: its command function, so ``rover --help`` stays fast. Errors: raise ``CliError`` (exit 2, one sentence)
#: or return an exit status.
_COMMAND_MODULES = ("hil.cmd_sim_device", "hil.cmd_drive", "hil.cmd_vo", "hil.cmd_traverse", "hil.cmd_campaign",
                    "hil.cmd_replay")


def main(argv=None) -> int:
    import nav

    ap = build_parser()
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (CliError, nav.ConfigError, nav.DEMError, FileNotFoundError) as e:
        print(f"rover {args.cmd}: {e}", file=sys.stderr)
        return 2
    except ValueError as e:  # validation errors from the library: one sentence, no traceback
        print(f"rover {args.cmd}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
