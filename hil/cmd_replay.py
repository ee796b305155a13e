"""``rover replay LOG``: re-run a recorded traverse's perception, estimation and planning and show where they
now differ (:mod:`hil.replay`) — post-mortems of hardware runs, and what new parameters would have done.

Exit status: 0 nothing differs beyond the tolerances, 1 differences found (the first one is printed),
2 bad input (not a file, not an MCAP log, truncated, no replay channels, an unknown ``--set`` name or a
bad value).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path as FsPath


def register(sub) -> None:
    p = sub.add_parser("replay", help="re-run a traverse log's perception and planning; show where they differ",
                       description="Re-run perception (rendered: VO, EKF and stereo mapping on the recorded stereo "
                                   "pairs; fast: the recorded poses and local maps), estimation and planning on the "
                                   "inputs recorded in a traverse.mcap, open loop, and compare the pose estimate, "
                                   "plans, commands, events and outcome with the recorded ones. Writes replay.json "
                                   "and replay.png to the output folder.")
    p.add_argument("log", help="a traverse.mcap written by rover traverse (or its run folder)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output folder for replay.json and replay.png (default: replay/ beside the log)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="NAME=VALUE",
                   help="change an executive parameter (nav.executive.ExecParams field, arc.NAME for the arc "
                        "planner's), e.g. --set window_m=3.5 --set arc.length_bonus_per_m=0.2; repeatable")
    p.add_argument("--allow-truncated", action="store_true",
                   help="replay a log whose writer was killed, up to its last complete chunk")
    p.add_argument("--no-png", action="store_true", help="do not draw replay.png")
    p.set_defaults(func=cmd_replay)


def cmd_replay(args: argparse.Namespace) -> int:
    from hil.cli import CliError
    from hil.replay import ReplayInputError, replay

    path = FsPath(args.log)
    if path.is_dir() and (path / "traverse.mcap").is_file():
        path = path / "traverse.mcap"
    out = FsPath(args.out) if args.out else path.parent / "replay"
    try:
        rep = replay(path, overrides=args.sets or None, out_dir=out, png=not args.no_png,
                     allow_truncated=args.allow_truncated)
    except ReplayInputError as e:
        raise CliError(str(e)) from None
    except ValueError as e:         # an override naming no parameter, or a value the parameters reject
        if not str(e).startswith("--set"):
            raise
        raise CliError(str(e)) from None
    print(rep.text())
    print(f"report: {out / 'replay.json'}")
    if (out / "replay.png").exists():
        print(f"picture: {out / 'replay.png'}")
    sys.stdout.flush()
    return 1 if rep.diverged else 0
