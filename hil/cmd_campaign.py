"""``rover campaign``: many seeded traverses over terrain families, on a local process pool or a Dask cluster.

::

    rover campaign configs/campaigns/NAME.yaml | NAME [--runs N] [--workers K] [--cluster tcp://HOST:PORT]
                   [--out DIR] [--seed S] [--keep-runs] [--only I] [--dry-run]

Exit status: 0 the campaign met its pass criteria, 1 it did not (or ``--only``'s run failed), 2 bad input,
130 interrupted (Ctrl-C; the partial aggregate is still written).
"""
from __future__ import annotations

import argparse
import math
import signal
import sys
import time


def register(sub) -> None:
    p = sub.add_parser("campaign", help="Monte Carlo traverses over terrain families, aggregated and plotted",
                       description="Run many seeded traverses of a campaign (configs/campaigns/*.yaml) on a local "
                                   "process pool or a Dask cluster; write results.jsonl, campaign.json, report.txt "
                                   "and plots to --out; print the success rate with its Wilson 95 % interval, "
                                   "the failure causes and the distributions. Exit 0 when the campaign passes its "
                                   "criteria, 1 when not.")
    p.add_argument("campaign", help="packaged campaign name (quick, mars_50m, families) or a YAML path")
    p.add_argument("--runs", type=int, default=None, help="number of traverses (default: the campaign's runs)")
    p.add_argument("--workers", type=int, default=None,
                   help="local worker processes (default: one per core; 1 = run in this process)")
    p.add_argument("--cluster", default=None, metavar="tcp://HOST:PORT",
                   help="run on a Dask distributed scheduler instead (pip install 'rovernav[cluster]')")
    p.add_argument("--out", default=None, help="output folder (default runs/campaign_NAME)")
    p.add_argument("--seed", type=int, default=None, help="campaign seed (default: the campaign's seed)")
    p.add_argument("--keep-runs", action="store_true",
                   help="give every run its own folder OUT/runs/NNNNN (summary.json and PNG)")
    p.add_argument("--only", type=int, default=None, metavar="I",
                   help="re-run run I alone with its exact scenario and full output (log, PNG) in OUT/run_I")
    p.add_argument("--dry-run", action="store_true", help="print each run's family and overrides, run nothing")
    p.add_argument("--runner", default=None, metavar="MODULE:FUNCTION",
                   help="advanced: run traverses with this function instead of hil.traverse.run_traverse "
                        "(same signature; importable by the workers)")
    p.set_defaults(func=cmd_campaign)


class Progress:
    """A text progress bar on stderr: in place on a terminal, a plain line per ~5 % otherwise."""

    def __init__(self, total: int, stream=None, *, success=None, clock=time.monotonic, tty: bool | None = None,
                 width: int = 28):
        from hil.campaign import is_success

        self.total, self.stream, self.clock = total, stream or sys.stderr, clock
        self.success = success or is_success
        self.tty = self.stream.isatty() if tty is None else tty
        self.width = width
        self.t0 = clock()
        self.ok = self.failed = self.errors = 0
        self._drawn = False

    def __call__(self, done: int, total: int, rec: dict) -> None:
        s = rec["summary"]
        good = self.success(s)
        self.ok += bool(good)
        self.errors += s.get("outcome") == "error"
        self.failed += (not good) and s.get("outcome") != "error"
        if not good:
            self._line(f"run {rec['index']} ({rec.get('family')}): {s.get('outcome')}"
                       + (f" - {s.get('reason')}" if s.get("reason") else "")
                       + (f", {s.get('hazard_violations')} hazard violation(s)" if s.get("hazard_violations") else ""))
        if self.tty:
            self._draw(done, total)
        elif done == 1 or done % max(1, math.ceil(total / 20)) == 0 or done == total:
            print(self._status(done, total), file=self.stream, flush=True)

    def _status(self, done: int, total: int) -> str:
        el = self.clock() - self.t0
        eta = el / done * (total - done) if done else float("nan")
        rate = f"{60.0 * done / el:.1f}" if el > 0 else "-"
        return (f"{done}/{total} runs  ok {self.ok}  failed {self.failed}  errors {self.errors}  "
                f"{rate}/min  elapsed {_hms(el)}  ETA {_hms(eta) if done < total else '0s'}")

    def _draw(self, done, total):
        n = int(self.width * done / max(total, 1))
        bar = "#" * n + "." * (self.width - n)
        self.stream.write(f"\r\x1b[2K[{bar}] {self._status(done, total)}")
        self.stream.flush()
        self._drawn = True

    def _line(self, text: str) -> None:
        if self.tty and self._drawn:
            self.stream.write("\r\x1b[2K")
        print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()


def _hms(s: float) -> str:
    if not math.isfinite(s):
        return "?"
    s = int(round(s))
    return f"{s // 3600}h{s // 60 % 60:02d}m" if s >= 3600 else (f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s")


def _on_sigterm(signum, frame):
    raise KeyboardInterrupt


def cmd_campaign(args: argparse.Namespace) -> int:
    from hil.campaign import format_report, is_success, load_campaign, run_campaign, run_one
    from hil.cli import CliError

    camp = load_campaign(args.campaign)
    for name in ("runs", "workers"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise CliError(f"--{name} {v}: must be >= 1")
    if args.seed is not None and args.seed < 0:
        raise CliError(f"--seed {args.seed}: must be >= 0")
    if args.only is not None and args.only < 0:
        raise CliError(f"--only {args.only}: must be a run index >= 0")
    if args.cluster is not None and "://" not in args.cluster:
        raise CliError(f"--cluster {args.cluster!r}: must be a scheduler address like tcp://HOST:8786")
    if args.runner is not None and ":" not in args.runner:
        raise CliError(f"--runner {args.runner!r}: must be MODULE:FUNCTION")
    from pathlib import Path

    out = Path(args.out) if args.out else Path("runs") / f"campaign_{camp.name}"
    seed = camp.seed if args.seed is None else args.seed
    runs = args.runs or camp.runs

    if args.dry_run:
        idx = [args.only] if args.only is not None else range(runs)
        for i in idx:
            spec = camp.run_spec(i, seed)
            kv = "  ".join(f"{k}={v}" for k, v in spec.overrides.items())
            print(f"{i:5d}  {spec.family:<20} {kv}")
        return 0

    if args.only is not None:
        spec = camp.run_spec(args.only, seed)
        run_dir = out / f"run_{args.only:05d}"
        print(f"campaign {camp.name} run {args.only} (seed {seed}), family {spec.family}:")
        for k, v in spec.overrides.items():
            print(f"  {k} = {v}")
        rec = run_one(camp, args.only, seed=seed, out_dir=run_dir, runner=args.runner)
        s = rec["summary"]
        if rec.get("redraws"):
            print(f"terrain redrawn {rec['redraws']} time(s) (the start or a goal was on a hazard): "
                  f"terrain.seed = {rec['overrides']['terrain.seed']}")
        print(f"outcome: {s.get('outcome')}" + (f" - {s.get('reason')}" if s.get("reason") else ""))
        for k in ("distance_m", "time_s", "speed_m_per_h", "path_ratio", "hazard_violations", "moving_fraction",
                  "loc_error_final_m"):
            if s.get(k) is not None:
                print(f"  {k}: {s[k]:.4g}" if isinstance(s[k], float) else f"  {k}: {s[k]}")
        if "traceback" in rec:
            print(rec["traceback"], file=sys.stderr)
        print(f"scenario: {run_dir / 'scenario.yaml'}\noutput: {run_dir}")
        return 0 if is_success(s, camp.pass_criteria.success) else 1

    bar = Progress(runs, success=lambda s: is_success(s, camp.pass_criteria.success))
    where = f"Dask cluster {args.cluster}" if args.cluster else (
        f"{args.workers} local worker(s)" if args.workers else "the local pool")
    print(f"campaign {camp.name}: {runs} runs of {camp.scenario} (seed {seed}) on {where}; output {out}",
          file=sys.stderr)
    try:     # SIGTERM like Ctrl-C: stop the workers and write the partial aggregate (never orphan a pool)
        old_term = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:      # not the main thread
        old_term = None
    try:
        res = run_campaign(camp, runs, seed=seed, workers=args.workers, cluster=args.cluster, out_dir=out,
                           runner=args.runner, progress=bar, run_outputs=args.keep_runs)
    except ImportError as e:
        raise CliError(str(e)) from None
    except OSError as e:
        if args.cluster:
            raise CliError(f"cannot reach the Dask scheduler {args.cluster}: {e}") from None
        raise
    finally:
        bar.close()
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    print(format_report(res.aggregate, res.paths))
    fails = res.aggregate["failures"]
    if fails:
        first = min(i for f in fails.values() for i in f["runs"])
        seed_opt = f" --seed {seed}" if args.seed is not None else ""
        print(f"re-run a failure alone: rover campaign {args.campaign}{seed_opt} --only {first}"
              + (f" --out {args.out}" if args.out else ""))
    if res.interrupted:
        return 130
    return 0 if res.passed else 1
