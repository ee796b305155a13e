"""``rover drive``: keyboard teleop in the terminal with live telemetry, for the bench.

The logic lives in :mod:`hil.teleop`; this module parses the arguments, opens the driver
(:func:`drivers.open_rover`), sets up the terminal and the log capture, and turns failures into one
sentence (:class:`hil.cli.CliError`, exit status 2).
"""
from __future__ import annotations

import argparse
import collections
import logging
import math
import os
import sys

PROTOCOL_CHOICES = ("roboclaw", "rnp", "mavlink")


def register(sub) -> None:
    from hil.teleop import HELP

    p = sub.add_parser("drive", help="keyboard teleop with live telemetry (bench)",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Drive a rover from the keyboard with a live telemetry panel (bench use).\n"
                                   "Opens PORT with the PROTOCOL driver, asks before arming (unless --yes), and\n"
                                   "always ends with stop, disarm and close: on q, Ctrl-C, SIGTERM, a closed\n"
                                   "terminal or an error.\n\n"
                                   "Without hardware: `rover sim-device --link /tmp/rc` in one terminal, then\n"
                                   "`rover drive --port /tmp/rc --protocol roboclaw` in another.\n\n"
                                   "Exit status: 0 done, 1 --yes given but arming failed, 2 bad input (port\n"
                                   "missing or in use, unknown protocol, no terminal and no --script),\n"
                                   "128+N ended by signal N.",
                       epilog=HELP)
    p.add_argument("--port", required=True, metavar="URL",
                   help="serial port or URL: /dev/ttyUSB0, /dev/serial/by-id/..., socket://host:port, a "
                        "`rover sim-device` pty, or sim://NAME (a virtual device registered in this process)")
    p.add_argument("--protocol", required=True, metavar="PROTOCOL",
                   help=f"wire protocol: {', '.join(PROTOCOL_CHOICES)}")
    p.add_argument("--rover", default=None, metavar="PROFILE",
                   help="rover profile name or YAML path (default: osr for roboclaw, skidsteer otherwise)")
    p.add_argument("--yes", action="store_true", help="arm without asking (the arm prompt is skipped)")
    p.add_argument("--script", default=None, metavar="FILE",
                   help="timed key script (see below); required when stdin is not a terminal")
    p.add_argument("--duration", type=float, default=None, metavar="S", help="end the session after S seconds")
    p.add_argument("--deadman", type=float, default=1.0, metavar="S",
                   help="stop when no key arrives for S seconds while driving (default 1.0; 0 = off)")
    p.add_argument("--speed-step", type=float, default=None, metavar="MPS",
                   help="speed step per key (default max_speed_mps / 10)")
    p.add_argument("--yaw-step", type=float, default=None, metavar="DPS",
                   help="yaw-rate step per key, deg/s (default max_yaw_rate_dps / 10)")
    p.add_argument("--baud", type=int, default=None, help="serial speed passed to the driver (default: its own)")
    p.set_defaults(func=cmd_drive)


def _isatty(stream) -> bool:
    try:
        return os.isatty(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return False


class _PanelLog(logging.Handler):
    """Log records into a deque the panel shows (a log line on the terminal would tear the panel)."""

    def __init__(self, sink: collections.deque):
        super().__init__(logging.WARNING)
        self.sink = sink

    def emit(self, record):
        try:
            self.sink.append(f"{record.levelname.lower()} {record.name}: {record.getMessage()}"[:300])
        except Exception:                                # pragma: no cover - logging must never raise
            pass


def cmd_drive(args: argparse.Namespace) -> int:
    import nav
    from hil.cli import CliError
    from hil import teleop

    if args.protocol not in PROTOCOL_CHOICES:
        raise CliError(f"--protocol {args.protocol!r}: must be one of {', '.join(PROTOCOL_CHOICES)}")
    if args.duration is not None and not (math.isfinite(args.duration) and args.duration > 0):
        raise CliError(f"--duration {args.duration}: must be a finite number of seconds > 0")
    if not (math.isfinite(args.deadman) and args.deadman >= 0):
        raise CliError(f"--deadman {args.deadman}: must be a finite number of seconds >= 0 (0 = off)")
    stdin_tty = _isatty(sys.stdin)
    events = None
    if args.script is not None:
        try:
            with open(args.script, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise CliError(f"--script {args.script}: cannot read it ({e.strerror or e})") from None
        try:
            events = teleop.parse_key_script(text, source=args.script)
        except ValueError as e:
            raise CliError(str(e)) from None
    elif not stdin_tty:
        raise CliError("stdin is not a terminal: teleop needs a keyboard; give a timed key script with "
                       "--script FILE (lines like '0.5 w') to drive without one")

    profile_name = args.rover or ("osr" if args.protocol == "roboclaw" else "skidsteer")
    profile = nav.load_rover(profile_name)
    port = args.port
    if port.lower().startswith("sim://"):
        import importlib

        importlib.import_module("sim.devices")      # registers the sim:// scheme with pyserial
    from drivers import DriverError, open_rover

    kw = {} if args.baud is None else {"baudrate": args.baud}
    try:
        rover = open_rover(args.protocol, port, profile, **kw)
    except ImportError as e:
        extra = " (install the extra: pip install 'rovernav[mavlink]')" if args.protocol == "mavlink" else ""
        raise CliError(f"the {args.protocol} driver is not available: {e}{extra}") from None
    except (DriverError, ValueError, TypeError) as e:
        raise CliError(f"cannot set up the {args.protocol} driver on {port}: {e}") from None
    try:
        rover.open()
    except DriverError as e:
        raise CliError(f"cannot open {args.protocol} rover on {port}: {_one_line(e)}") from None

    title = f"{args.protocol} on {port} - {profile.name} ({profile_name})"
    out = sys.stdout
    ansi = _isatty(out) and os.environ.get("TERM", "") != "dumb"
    print(f"rover drive: {title}; connected. Keys: w/s speed, a/d turn, space stop, e/Esc E-STOP, "
          f"r arm, q quit (rover drive --help for the deadman rule)", flush=True)
    if not args.yes:
        print(f"rover drive: about to ARM {title}: the wheels turn when you press keys. "
              f"Press y to arm, any other key to stay disarmed (telemetry only).", flush=True)

    captured: collections.deque = collections.deque(maxlen=20)
    handler = _PanelLog(captured)
    root = logging.getLogger()
    saved_handlers = list(root.handlers)
    if ansi:                                        # the panel shows warnings; stderr would tear it
        for h in saved_handlers:
            root.removeHandler(h)
    root.addHandler(handler)

    status = 0
    session = None
    try:
        if stdin_tty:
            with teleop.RawTerminal(sys.stdin.fileno(), out=out):
                tty_keys = teleop.TtyKeys(sys.stdin.fileno())
                keys = tty_keys if events is None else teleop.MergedKeys(teleop.ScriptKeys(events), tty_keys)
                session = _session(teleop, rover, keys, out, ansi, args, title, captured)
                reason = session.run()
        else:
            with teleop.TerminateOnSignals():
                session = _session(teleop, rover, teleop.ScriptKeys(events), out, ansi, args, title, captured)
                reason = session.run()
    except teleop.Terminated as e:
        reason, status = str(e), 128 + e.signum
    except KeyboardInterrupt:
        reason, status = "interrupted (SIGINT)", 130
    finally:
        root.removeHandler(handler)
        if ansi:
            for h in saved_handlers:
                root.addHandler(h)
        if not rover.closed:                         # the session closes it; this covers a failed start
            rover.close()
    sent = session.commands_sent if session is not None else 0
    problems = session.shutdown_problems if session is not None else []
    if problems:
        print(f"rover drive: {reason}; {port} closed, but {'; '.join(problems)} ({sent} commands sent)", flush=True)
    else:
        print(f"rover drive: {reason}; rover stopped, disarmed and {port} closed ({sent} commands sent)",
              flush=True)
    if status == 0 and args.yes and session is not None and session.arm_failed_at_start:
        print(f"rover drive: could not arm: {session.arm_failed_at_start}", file=sys.stderr, flush=True)
        status = 1
    return status


def _session(teleop, rover, keys, out, ansi, args, title, captured):
    try:
        return teleop.Teleop(rover, keys, out, arm=args.yes, title=title, deadman_s=args.deadman,
                             speed_step_mps=args.speed_step,
                             yaw_step_radps=None if args.yaw_step is None else math.radians(args.yaw_step),
                             duration_s=args.duration, end_when_keys_exhausted=args.duration is None,
                             ansi=ansi, log_messages=captured)
    except ValueError as e:
        from hil.cli import CliError

        raise CliError(str(e)) from None


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())
