"""``rover traverse SCENARIO``: run an autonomous traverse and say where the report is.

Exit status: 0 the traverse passed its scenario's criteria, 1 it failed them (the reason is printed),
2 bad input (unknown scenario, malformed YAML, goal on a hazard, unknown backend), 130 interrupted
(Ctrl-C or SIGTERM: the rover is stopped and the log closed first).

A real rover: ``rover traverse quick --backend serial --port /dev/ttyUSB0 --protocol roboclaw --camera 0
--calibration stereo.yaml`` — perception is the stereo camera through VO, EKF and stereo mapping
(``rendered``; ``fast`` needs the simulator's truth), the camera is opened before anything is armed, and
the rover is armed only after the operator confirms on the terminal (or ``--yes``).
"""
from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path as FsPath


def register(sub) -> None:
    p = sub.add_parser("traverse", help="run an autonomous traverse scenario and write its report",
                       description="Drive a rover autonomously through a scenario (configs/scenarios/NAME.yaml or a "
                                   "YAML path): perception, mapping, traversability, global and local planning, "
                                   "path following; scored against the simulator's truth. Writes summary.json, "
                                   "traverse.png and traverse.mcap (Foxglove) to the output folder.")
    p.add_argument("scenario", help="packaged scenario name (quick, mars_50m...) or a YAML file")
    p.add_argument("--backend", default="sim", choices=("sim", "sim-serial", "serial"),
                   help="sim: in-process simulator (default); sim-serial: a virtual device over a pty; "
                        "serial: a real rover on --port")
    p.add_argument("--port", default=None, metavar="URL", help="serial port or URL (serial backends)")
    p.add_argument("--protocol", default=None, choices=("roboclaw", "rnp", "mavlink"),
                   help="wire protocol (serial backends)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output folder (default runs/traverse-<scenario>-<seed>-<time>)")
    p.add_argument("--seed", type=int, default=None, help="terrain and noise seed (default: the scenario's)")
    p.add_argument("--mode", default=None, choices=("stop_and_go", "drive_while_planning"),
                   help="override the scenario's driving mode")
    p.add_argument("--perception", default=None, choices=("fast", "rendered"),
                   help="override the scenario's perception fidelity")
    p.add_argument("--camera", default=None, metavar="SRC[,RIGHT]",
                   help="serial backend: the rover's stereo camera, one side-by-side source or LEFT,RIGHT: a "
                        "device index (0), /dev/videoN, a video file or a URL (see drivers/STEREO_CAMERA.md)")
    p.add_argument("--calibration", default=None, metavar="FILE",
                   help="serial backend: OpenCV stereo calibration of --camera (YAML/XML/JSON from "
                        "cv2.stereoCalibrate; without it the camera's images must already be rectified)")
    p.add_argument("--yes", action="store_true",
                   help="serial backend: arm the real rover without asking (default: ask on the terminal)")
    p.add_argument("--no-log", action="store_true", help="do not write the MCAP log")
    p.add_argument("--no-png", action="store_true", help="do not draw traverse.png")
    p.add_argument("--quiet", "-q", action="store_true", help="print only the final lines")
    p.set_defaults(func=cmd_traverse)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C."""


def _on_sigterm(signum, frame):
    raise _Terminated()


def cmd_traverse(args: argparse.Namespace) -> int:
    from hil.cli import CliError
    from hil.scenario import load_scenario
    from hil.traverse import run_traverse

    sc = load_scenario(args.scenario)          # ConfigError -> exit 2 (hil.cli)
    over = {}
    if args.seed is not None:
        if args.seed < 0:
            raise CliError(f"--seed {args.seed}: must be >= 0")
        over["terrain__seed"] = args.seed
    if args.mode is not None:
        over["mode"] = args.mode
    if args.perception is not None:
        over["perception"] = args.perception
    if args.backend == "serial":
        if not args.port:
            raise CliError("--backend serial needs --port (e.g. --port /dev/ttyUSB0)")
        if not args.camera:
            raise CliError("--backend serial needs --camera SRC[,RIGHT] (the rover's stereo camera: e.g. --camera 0 "
                           "--calibration stereo.yaml; see drivers/STEREO_CAMERA.md)")
        if args.perception == "fast":
            raise CliError("--perception fast samples the simulator's true terrain and pose, which a real rover "
                           "does not have: use --perception rendered (the default with --backend serial)")
        if sc.perception != "rendered":
            over["perception"] = "rendered"     # the only perception a real rover has: its cameras
    else:
        for flag, value in (("--camera", args.camera), ("--calibration", args.calibration)):
            if value is not None:
                raise CliError(f"{flag} is for --backend serial (a real rover); --backend {args.backend} renders "
                               f"the simulator's own cameras")
    if args.calibration is not None and not args.camera:
        raise CliError("--calibration needs --camera")
    if over:
        sc = sc.with_overrides(**over)
    out = FsPath(args.out) if args.out else FsPath("runs") / (
        f"traverse-{sc.name}-{sc.terrain.seed}-{time.strftime('%Y%m%d-%H%M%S')}")
    quiet = args.quiet

    def progress(text: str) -> None:
        if not quiet:
            print(text, flush=True)

    if not quiet:
        print(f"traverse {sc.name} (seed {sc.terrain.seed}, {sc.mode}, {sc.perception} perception, "
              f"backend {args.backend}) -> {out}", flush=True)
    def confirm(prompt: str) -> bool:
        if args.yes:
            return True
        if not sys.stdin.isatty():
            print(f"{prompt} -- refusing without a terminal; pass --yes", file=sys.stderr)
            return False
        return input(f"{prompt} [y/N] ").strip().lower() in ("y", "yes")

    perception_kw = {}
    if args.camera:
        perception_kw = {"camera": args.camera, "calibration": args.calibration}
    old = None
    try:
        old = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:      # not the main thread
        old = None
    try:
        summary = run_traverse(sc, backend=args.backend, out_dir=out, log=not args.no_log, png=not args.no_png,
                               port=args.port, protocol=args.protocol, progress=progress, confirm=confirm,
                               perception_kw=perception_kw)
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)
    d = summary.to_dict()
    ratio = f", path {d['path_ratio']:.2f}x the oracle" if d["path_ratio"] else ""
    print(f"{'PASSED' if summary.passed else 'FAILED'}: {summary.outcome} — {summary.reason}")
    print(f"  {summary.distance_m:.1f} m in {summary.time_s:.0f} s ({summary.speed_m_per_h:.0f} m/h, moving "
          f"{100 * summary.moving_fraction:.0f} %){ratio}, {summary.hazard_violations} hazard violations")
    for why in summary.failed_criteria:
        print(f"  failed: {why}")
    print(f"report: {out / 'summary.json'}")
    if (out / "traverse.png").exists():
        print(f"picture: {out / 'traverse.png'}")
    if (out / "traverse.mcap").exists():
        print(f"log: {out / 'traverse.mcap'} (open in Foxglove)")
    sys.stdout.flush()
    if summary.outcome == "error" and summary.reason == "interrupted":
        return 130
    return 0 if summary.passed else 1
