"""``rover sim-device``: serve a virtual device on a pseudo-terminal, in real time, until Ctrl-C."""
from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("sim-device", help="serve a simulated rover's device on a pseudo-terminal",
                       description="Serve a virtual device (a simulated rover behind the real wire protocol) "
                                   "on a pseudo-terminal in real time. Prints the path to open, then serves "
                                   "until Ctrl-C. Any program can open it like a real serial port.")
    p.add_argument("--protocol", default="roboclaw", choices=("roboclaw", "rnp", "mavlink"),
                   help="wire protocol (default roboclaw: the JPL OSR's RoboClaw bus)")
    p.add_argument("--rover", default=None, help="rover profile (default: osr for roboclaw, skidsteer otherwise)")
    p.add_argument("--seed", type=int, default=0, help="seed of the simulated world")
    p.add_argument("--baud", type=int, default=115200,
                   help="modelled wire speed (bytes take their wire time); 0 = instant")
    p.add_argument("--link", default=None, metavar="PATH",
                   help="also make a symlink PATH to the pty (e.g. /tmp/roboclaw)")
    p.set_defaults(func=cmd_sim_device)


def cmd_sim_device(args: argparse.Namespace) -> int:
    from hil.cli import CliError
    from sim.devices.pty import serve_pty

    if args.baud < 0:
        raise CliError(f"--baud {args.baud}: must be >= 0 (0 = no wire time)")
    rover = args.rover or ("osr" if args.protocol == "roboclaw" else "skidsteer")
    try:
        serve_pty(args.protocol, rover, seed=args.seed, baud=args.baud or None, symlink=args.link,
                  on_ready=_announce)
    except (OSError, ModuleNotFoundError) as e:
        raise CliError(f"cannot serve a virtual {args.protocol} device: {e}") from None
    return 0


def _announce(path: str, description: str) -> None:
    """The pty path on its own line (scripts read the first line), then what is behind it."""
    print(path, flush=True)
    print(f"# {description}", flush=True)
