"""Monte Carlo campaigns: many seeded traverses over terrain families, aggregated the way JPL validates autonomy.

A campaign is one YAML file (``configs/campaigns/*.yaml`` or any path), validated once with the same rules and
error messages as scenarios and rover profiles (file, dotted key, value, rule, line)::

    name: mars_50m
    scenario: mars_50m               # packaged scenario name, or a YAML path (relative to this file)
    runs: 200                        # default number of traverses (``--runs`` overrides)
    seed: 2026                       # run i's draws depend on (seed, i) only
    vary:                            # drawn for every run (a family's own entries take precedence)
      terrain.relief_rms_m: {uniform: [0.1, 0.4]}
    families:                        # runs are dealt to families in turn (``weight`` = runs per turn)
      - name: rocky
        weight: 1
        vary:
          terrain.rock_cfa: {uniform: [0.10, 0.15]}
          planet: mars                          # a bare value = fixed
          mode: {choice: [stop_and_go, drive_while_planning]}
          terrain.crater_density_per_km2: {loguniform: [100, 20000]}
          terrain.seed: {randint: [0, 1000]}
    pass_criteria:
      success: reached_safely        # reached_safely (reached, no hazard violation) | reached | passed
      min_success_rate: 0.98
      rate_bound: point              # point estimate, or wilson_lower (the 95 % lower bound must clear it)
      max_hazard_violations: 0       # summed over all runs
      max_path_ratio_p50: 1.25

Vary keys are the scenario's scalar fields in dotted form (``terrain.rock_cfa``, ``limits.max_time_s``,
``mode``, ``planet``, ``start.yaw_deg`` …); every drawn value is checked against that field's rule when the
campaign is loaded (a uniform range's ends, each choice). Fields that would move the start or goals off the
terrain (positions, ``terrain.size_m``, ``terrain.dem``) cannot be varied. Unless ``terrain.seed`` is varied
explicitly, every run gets its own terrain seed.

Determinism: the family of run ``i`` is ``i``'s turn in the weighted round-robin, and each varied value is a
pure function of ``(campaign seed, i, key)`` (a BLAKE2b hash, independent of numpy's generators and of the other
keys), so a run can be re-created alone (``rover campaign NAME --only i``) and adding a key to a family leaves
the other draws unchanged. When a generated terrain leaves the start or a goal on a hazard (the runner raises
:class:`nav.ConfigError`), only the terrain seed is redrawn, again as a pure function of ``(seed, i, attempt)``,
up to :data:`MAX_REDRAWS` times; the record says how often (``redraws``) and the aggregate counts them.

Execution: a local spawn-safe process pool (default: one worker per core; ``workers=1`` runs in this
process), or a Dask distributed cluster (``cluster="tcp://HOST:PORT"``, the optional ``rovernav[cluster]``
extra; every worker needs rovernav installed and should be started with ``--nthreads 1``). Results stream
back as runs complete; a run that raises becomes an ``"error"`` record with the exception text; Ctrl-C
cancels the pending runs and still writes the partial aggregate. Output: ``results.jsonl`` (one line per run: index, family, overrides, summary),
``campaign.json`` (the aggregate: success rate with a Wilson 95 % interval, failure causes, metric
distributions, per-family breakdown, criteria checks), ``report.txt`` and PNG plots (success rate by family
with interval bars, histograms of m/h and path ratio).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import statistics
import time
import traceback
import typing
from dataclasses import dataclass, field
from pathlib import Path

from hil.scenario import Scenario, load_scenario, scenario_path
from nav.config import _compose, _check_scalar, from_mapping, load_planet, load_rover, rule
from nav.errors import ConfigError

__all__ = ["Campaign", "Family", "Draw", "CampaignCriteria", "RunSpec", "CampaignResult", "load_campaign",
           "MAX_REDRAWS", "campaign_path", "run_campaign", "run_one", "aggregate", "wilson_interval", "format_report",
           "write_plots", "scenario_to_yaml", "is_success", "OUTCOMES", "SUMMARY_KEYS", "DIST_KINDS"]

log = logging.getLogger("rovernav.campaign")

#: Outcomes of a traverse (hil.traverse contract); "error" also marks a run that raised.
OUTCOMES = ("reached", "unreachable", "stuck", "tilt", "timeout", "distance_limit", "fault", "hazard_stop",
            "error")
#: Keys of ``TraverseSummary.to_dict()`` (the hil.traverse contract); an error record carries them all.
SUMMARY_KEYS = ("scenario", "seed", "backend", "perception", "mode", "reached", "outcome", "reason", "distance_m",
                "time_s", "speed_m_per_h", "moving_fraction", "path_length_m", "oracle_length_m", "path_ratio",
                "hazard_violations", "min_clearance_m", "max_tilt_deg", "loc_error_final_m", "loc_error_max_m",
                "vo_convergence", "faults", "passed", "failed_criteria", "wall_time_s")
#: Distribution kinds of a ``vary`` entry.
DIST_KINDS = ("fixed", "uniform", "loguniform", "randint", "choice")
#: Scenario fields that cannot be varied, and why.
_NOT_VARIABLE = {
    "name": "it names the base scenario", "description": "it is text", "source": "it is set by the loader",
    "terrain.dem": "a DEM's extent fixes where the start and goals may lie",
    "terrain.size_m": "the start and goals must stay inside the terrain",
    "start.x_m": "varied positions could leave the terrain or land in a keep-out zone",
    "start.y_m": "varied positions could leave the terrain or land in a keep-out zone",
}
#: Metric distributions in the aggregate: key -> population ("reached" runs or all "completed" runs).
METRICS = {"speed_m_per_h": "reached", "path_ratio": "reached", "moving_fraction": "reached",
           "hazard_violations": "completed", "loc_error_final_m": "completed", "loc_error_max_m": "completed",
           "min_clearance_m": "completed", "max_tilt_deg": "completed", "distance_m": "completed",
           "time_s": "completed", "vo_convergence": "completed", "wall_time_s": "completed"}
_PERCENTILES = (5, 25, 50, 75, 95)
_Z95 = statistics.NormalDist().inv_cdf(0.975)


# =========================================================================== schema
@dataclass(frozen=True)
class Draw:
    """One varied scenario field: ``key`` (dotted), ``kind`` (one of :data:`DIST_KINDS`) and its ``values``
    (``fixed``: ``(v,)``; ``uniform``/``loguniform``/``randint``: ``(lo, hi)``, inclusive; ``choice``: the
    options)."""
    key: str
    kind: str
    values: tuple

    def sample(self, seed: int, index: int, attempt: int = 0):
        """The value for run ``index`` of a campaign seeded ``seed`` (a pure function of the three; ``attempt``
        > 0 gives the independent redraws used when a terrain leaves the start or goal on a hazard)."""
        if self.kind == "fixed":
            return self.values[0]
        text = f"rovernav-campaign:{seed}:{index}:{self.key}" + (f":redraw{attempt}" if attempt else "")
        h = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
        if self.kind == "choice":
            return self.values[h % len(self.values)]
        lo, hi = self.values
        if self.kind == "randint":
            return lo + h % (hi - lo + 1)
        u = (h >> 11) * 2.0 ** -53                   # uniform in [0, 1)
        if self.kind == "uniform":
            v = lo + u * (hi - lo)
        else:
            v = math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))
        return min(max(float(f"{v:.6g}"), lo), hi)  # 6 significant digits: what is printed is what ran


@dataclass(frozen=True, kw_only=True)
class Family:
    """A terrain family: a name, how many runs it gets per round-robin turn, and its draws."""
    name: str = rule(doc="shown in the per-family breakdown")
    weight: int = rule(1, ge=1, le=1000, doc="runs dealt to this family per turn")
    description: str = rule("")
    vary: tuple[Draw, ...] = field(default=(), metadata={"doc": "parsed separately (see the module docstring)"})


@dataclass(frozen=True, kw_only=True)
class CampaignCriteria:
    """When a campaign passes. Thresholds left ``null`` are not checked."""
    success: str = rule("reached_safely", choices=("reached_safely", "reached", "passed"),
                        doc="what counts as a successful run: reached with no hazard violation, reached, "
                            "or the scenario's own pass_criteria")
    min_success_rate: float = rule(0.98, ge=0, le=1)
    rate_bound: str = rule("point", choices=("point", "wilson_lower"),
                           doc="compare the point estimate, or the Wilson 95 % lower bound")
    max_hazard_violations: int | None = rule(0, ge=0, doc="summed over all runs")
    max_error_runs: int | None = rule(0, ge=0, doc="runs that raised")
    max_path_ratio_p50: float | None = rule(None, ge=1, doc="median driven / oracle path of reached runs")
    max_path_ratio_p95: float | None = rule(None, ge=1)
    min_moving_fraction_p50: float | None = rule(None, ge=0, le=1)
    min_speed_m_per_h_p50: float | None = rule(None, gt=0)
    max_loc_error_final_m_p95: float | None = rule(None, gt=0)


@dataclass(frozen=True, kw_only=True)
class Campaign:
    """A validated campaign (see the module docstring). ``base`` is the loaded base scenario."""
    name: str = rule()
    description: str = rule("")
    scenario: str = rule(doc="packaged scenario name or YAML path (relative to the campaign file)")
    runs: int = rule(100, ge=1, le=10_000_000)
    seed: int = rule(0, ge=0, le=2**63 - 1)
    families: tuple[Family, ...] = rule(())
    pass_criteria: CampaignCriteria = rule(CampaignCriteria())
    source: str = rule("")
    base: Scenario | None = field(default=None, compare=False, repr=False, metadata={"doc": "set by the loader"})
    vary: tuple[Draw, ...] = field(default=(), metadata={"doc": "campaign-wide draws"})

    @property
    def turn(self) -> tuple[Family, ...]:
        """One round-robin turn: each family repeated ``weight`` times, in file order."""
        return tuple(f for f in self.families for _ in range(f.weight))

    def family_of(self, index: int) -> Family:
        t = self.turn
        return t[index % len(t)]

    def draws_for(self, index: int) -> dict[str, Draw]:
        """The draws of run ``index``: campaign-wide, then its family's, and ``terrain.seed`` (every run its
        own terrain unless the seed is varied or fixed explicitly)."""
        draws = {d.key: d for d in self.vary}
        draws.update({d.key: d for d in self.family_of(index).vary})
        draws.setdefault("terrain.seed", Draw("terrain.seed", "randint", (0, 2**31 - 1)))
        return draws

    def run_spec(self, index: int, seed: int | None = None, attempt: int = 0) -> "RunSpec":
        """Run ``index``'s family, overrides and scenario (a pure function of ``(seed, index)``).

        ``attempt`` > 0 redraws only ``terrain.seed`` (independently per attempt; nothing changes when the seed
        is fixed): the campaign runner uses it when a terrain leaves the start or a goal on a hazard.
        """
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise ValueError(f"run index = {index!r}: must be an integer >= 0")
        seed = self.seed if seed is None else seed
        draws = self.draws_for(index)
        overrides = {k: draws[k].sample(seed, index, attempt if k == "terrain.seed" else 0) for k in sorted(draws)}
        sc = self.base.with_overrides(**{k.replace(".", "__"): v for k, v in overrides.items()})
        return RunSpec(index=index, family=self.family_of(index).name, overrides=overrides, scenario=sc, seed=seed,
                       attempt=attempt)


@dataclass(frozen=True)
class RunSpec:
    """One run of a campaign: its index, family, drawn overrides (dotted keys) and the scenario they make."""
    index: int
    family: str
    overrides: dict
    scenario: Scenario
    seed: int
    attempt: int = 0


def campaign_path(name_or_path) -> Path:
    """A packaged campaign name (``"quick"``) or a path to a YAML file."""
    from configs import config_path

    try:
        return config_path("campaigns", name_or_path)
    except FileNotFoundError as e:
        raise ConfigError(name_or_path, "", None, str(e)) from None


def _variable_field(key: str, base: Scenario):
    """(type, rule metadata) of the scalar scenario field ``key`` (dotted), or a reason it can't be varied."""
    if key in _NOT_VARIABLE:
        return None, f"cannot be varied: {_NOT_VARIABLE[key]}"
    cls, obj, md, typ = Scenario, base, {}, Scenario
    parts = key.split(".")
    for depth, part in enumerate(parts):
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if part not in fields:
            import difflib
            near = difflib.get_close_matches(part, list(fields), n=1)
            hint = f"; did you mean {'.'.join(parts[:depth] + [near[0]])!r}?" if near else ""
            return None, f"is not a scenario field{hint}"
        typ, md = typing.get_type_hints(cls)[part], fields[part].metadata
        obj = getattr(obj, part) if obj is not None else None
        inner = _strip_optional(typ)
        if dataclasses.is_dataclass(inner):
            if depth == len(parts) - 1:
                return None, f"is a section; vary one of its fields ({', '.join(f.name for f in dataclasses.fields(inner))})"
            if obj is None:
                return None, f"cannot be varied: the base scenario has no {'.'.join(parts[:depth + 1])}"
            cls = inner
        elif depth < len(parts) - 1:
            return None, f"is not a scenario field ({'.'.join(parts[:depth + 1])} has no sub-fields)"
    if typing.get_origin(typ) is tuple:
        return None, "cannot be varied: lists (waypoints, keep-out zones, faults) are not supported"
    if key.startswith(("goal.", "waypoints")) and not key.endswith("tolerance_m"):
        return None, "cannot be varied: varied positions could leave the terrain or land in a keep-out zone"
    return typ, md


def _strip_optional(typ):
    if typing.get_origin(typ) in (typing.Union, getattr(__import__("types"), "UnionType", typing.Union)):
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return typ


def _parse_draw(doc, prefix: str, key: str, spec, base: Scenario) -> Draw:
    where = f"{prefix}.{key}"
    line = doc.line(where)

    def err(value, why):
        return ConfigError(doc.file, where, value, why, line)

    typ, md = _variable_field(key, base)
    if typ is None:
        raise err(spec, md)
    inner = _strip_optional(typ)
    optional = inner is not typ

    def check(v):
        if v is None and optional:
            return None
        try:
            return _check_scalar(doc, where, v, inner, md)
        except ConfigError as e:
            raise err(spec, e.rule) from None

    if not isinstance(spec, dict):
        spec = {"fixed": spec}
    if len(spec) != 1 or next(iter(spec)) not in DIST_KINDS:
        raise err(spec, "must be a value or one of {fixed: V}, {uniform: [LO, HI]}, {loguniform: [LO, HI]}, "
                        "{randint: [LO, HI]}, {choice: [A, B, ...]}")
    kind, arg = next(iter(spec.items()))
    if kind == "fixed":
        return Draw(key, kind, (check(arg),))
    if kind == "choice":
        if not isinstance(arg, list) or not arg:
            raise err(spec, "choice needs a non-empty list of values")
        return Draw(key, kind, tuple(check(v) for v in arg))
    if not (isinstance(arg, list) and len(arg) == 2):
        raise err(spec, f"{kind} needs a list [LO, HI]")
    if kind == "randint" and inner is not int:
        raise err(spec, f"randint draws integers; {key} is {'a number: use uniform' if inner is float else 'not numeric'}")
    if kind in ("uniform", "loguniform") and inner is not float:
        raise err(spec, f"{kind} draws real numbers; {key} is {'an integer: use randint' if inner is int else 'not a number: use choice'}")
    lo, hi = (check(v) for v in arg)
    if lo is None or hi is None:
        raise err(spec, f"{kind} bounds must be numbers")
    if not lo <= hi:
        raise err(spec, f"needs LO <= HI, got [{lo:g}, {hi:g}]")
    if kind == "loguniform" and lo <= 0:
        raise err(spec, "loguniform needs LO > 0")
    return Draw(key, kind, (lo, hi))


def _parse_vary(doc, prefix: str, data, base: Scenario) -> tuple[Draw, ...]:
    if data is None:
        return ()
    if not isinstance(data, dict):
        raise ConfigError(doc.file, prefix, data, "must be a mapping of scenario field: distribution",
                          doc.line(prefix))
    draws = []
    for key, spec in data.items():
        draw = _parse_draw(doc, prefix, key, spec, base)
        line = doc.line(f"{prefix}.{key}")
        for v in draw.values if draw.kind in ("fixed", "choice") else ():
            try:                        # named configs must exist: say so now, not in run 137
                if key == "rover":
                    load_rover(v)
                elif key == "planet":
                    load_planet(v)
            except ConfigError as e:
                raise ConfigError(doc.file, f"{prefix}.{key}", v, f"cannot load it: {e}", line) from None
        draws.append(draw)
    return tuple(draws)


def load_campaign(name_or_path) -> Campaign:
    """Load and validate a campaign (see the module docstring); raises :class:`nav.ConfigError`."""
    path = campaign_path(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(path, "", None, f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    doc = _compose(text, str(path))
    if not isinstance(doc.data, dict):
        raise ConfigError(path, "", doc.data, "must be a mapping of campaign fields" if doc.data is not None
                          else "file is empty", doc.line(""))
    data = dict(doc.data)
    if "base" in data:
        raise ConfigError(path, "base", data["base"], "unknown key; did you mean 'scenario'?", doc.line("base"))
    top_vary = data.pop("vary", None)
    fam_vary = []
    if isinstance(data.get("families"), list):
        fams = []
        for f in data["families"]:
            if isinstance(f, dict):
                f = dict(f)
                fam_vary.append(f.pop("vary", None))
            else:
                fam_vary.append(None)
            fams.append(f)
        data["families"] = fams
    data.setdefault("source", str(path))
    camp = from_mapping(Campaign, doc, data)

    sc_name = camp.scenario
    if sc_name.endswith((".yaml", ".yml")) and not Path(sc_name).is_absolute():
        sc_name = str(path.parent / sc_name)
    try:
        scenario_path(sc_name)
    except ConfigError as e:
        raise ConfigError(path, "scenario", camp.scenario, e.rule, doc.line("scenario")) from None
    base = load_scenario(sc_name)       # its own errors name its own file and line

    vary = _parse_vary(doc, "vary", top_vary, base)
    families = []
    for i, (fam, fv) in enumerate(zip(camp.families, fam_vary)):
        families.append(dataclasses.replace(fam, vary=_parse_vary(doc, f"families[{i}].vary", fv, base)))
    names = [f.name for f in families]
    for i, n in enumerate(names):
        if n in names[:i]:
            raise ConfigError(path, f"families[{i}].name", n, "duplicate family name", doc.line(f"families[{i}].name"))
        if n == "all":
            raise ConfigError(path, f"families[{i}].name", n, "'all' is reserved for the whole campaign",
                              doc.line(f"families[{i}].name"))
    if not families:
        families = [Family(name=camp.name if camp.name != "all" else "default")]
    return dataclasses.replace(camp, families=tuple(families), vary=vary, base=base)


# =========================================================================== scenario dump
def _yaml_plain(o):
    if isinstance(o, dict):
        return {k: _yaml_plain(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_yaml_plain(v) for v in o]
    return o


def scenario_to_yaml(sc: Scenario) -> str:
    """The scenario as YAML that :func:`hil.scenario.load_scenario` reads back equal (a run's exact scenario,
    so ``rover traverse RUN_DIR/scenario.yaml`` replays it). Relative DEM paths become absolute."""
    import yaml

    d = dataclasses.asdict(sc)
    d.pop("source", None)
    if sc.terrain.dem:
        d["terrain"]["dem"] = str(Path(sc.dem_path).resolve())
    for k in ("waypoints", "keep_out", "faults"):
        if not d[k]:
            d.pop(k)
    if d.get("goal") is None:
        d.pop("goal", None)
    return yaml.safe_dump(_yaml_plain(d), sort_keys=False, default_flow_style=None)


# =========================================================================== statistics
def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (Wilson 1927), without continuity correction.

    Returns ``(lower, upper)`` in [0, 1]; ``(0, 1)`` when ``n == 0``. Unlike the normal (Wald) interval it is
    sensible at 0 and n successes, which is where validation campaigns live (e.g. 200/200 gives [0.981, 1]).
    """
    if isinstance(successes, bool) or isinstance(n, bool) or int(successes) != successes or int(n) != n:
        raise ValueError(f"successes = {successes!r}, n = {n!r}: must be integers")
    if not 0 <= successes <= n:
        raise ValueError(f"successes = {successes}: must satisfy 0 <= successes <= n = {n}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence = {confidence!r}: must lie in (0, 1)")
    if n == 0:
        return 0.0, 1.0
    z = _Z95 if confidence == 0.95 else statistics.NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / n
    z2n = z * z / n
    centre = (p + z2n / 2) / (1 + z2n)
    half = z / (1 + z2n) * math.sqrt(p * (1 - p) / n + z2n / (4 * n))
    lo, hi = max(0.0, centre - half), min(1.0, centre + half)
    if successes == 0:
        lo = 0.0
    if successes == n:
        hi = 1.0
    return lo, hi


def _percentile(sorted_vals, q: float) -> float:
    """Linear-interpolation percentile (numpy's default) of a sorted list."""
    pos = (len(sorted_vals) - 1) * q / 100.0
    i = int(math.floor(pos))
    j = min(i + 1, len(sorted_vals) - 1)
    return sorted_vals[i] + (sorted_vals[j] - sorted_vals[i]) * (pos - i)


def _distribution(values) -> dict:
    v = sorted(float(x) for x in values if _finite(x))
    if not v:
        return {"n": 0}
    d = {"n": len(v), "mean": sum(v) / len(v), "min": v[0], "max": v[-1]}
    d.update({f"p{q}": _percentile(v, q) for q in _PERCENTILES})
    return d


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def is_success(summary: dict, definition: str = "reached_safely") -> bool:
    """Whether a run's summary counts as a success under a :attr:`CampaignCriteria.success` definition."""
    if definition == "passed":
        return bool(summary.get("passed"))
    reached = bool(summary.get("reached")) and summary.get("outcome") == "reached"
    if definition == "reached":
        return reached
    return reached and not (summary.get("hazard_violations") or 0)


def _failure_cause(summary: dict, definition: str) -> str:
    out = summary.get("outcome") or "error"
    if out != "reached" or not summary.get("reached"):
        return out if out != "reached" else "error"
    if (summary.get("hazard_violations") or 0) and definition != "reached":
        return "hazard_violations"
    return "criteria: " + ", ".join(summary.get("failed_criteria") or ["?"])


# =========================================================================== aggregation
def aggregate(records, campaign: Campaign, *, runs_requested: int | None = None, seed: int | None = None,
              interrupted: bool = False, timing: dict | None = None) -> dict:
    """The campaign aggregate (what ``campaign.json`` holds) from run records.

    Parameters
    ----------
    records : iterable of dict
        ``{"index", "family", "overrides", "summary"}`` per completed run (any order).
    campaign : Campaign
        For its name, families and :class:`CampaignCriteria`.
    runs_requested : int, optional
        Runs the campaign meant to do (default: as many as recorded); fewer done = incomplete = not passed.
    """
    recs = sorted(records, key=lambda r: r["index"])
    crit = campaign.pass_criteria
    n = len(recs)
    runs_requested = n if runs_requested is None else runs_requested
    sums = [r["summary"] for r in recs]
    ok = [is_success(s, crit.success) for s in sums]
    k = sum(ok)
    lo, hi = wilson_interval(k, n)
    outcomes = {}
    for s in sums:
        outcomes[s.get("outcome") or "error"] = outcomes.get(s.get("outcome") or "error", 0) + 1
    failures = {}
    for r, good in zip(recs, ok):
        if good:
            continue
        cause = _failure_cause(r["summary"], crit.success)
        f = failures.setdefault(cause, {"count": 0, "runs": [], "examples": []})
        f["count"] += 1
        if len(f["runs"]) < 50:
            f["runs"].append(r["index"])
        if len(f["examples"]) < 3:
            reason = r["summary"].get("reason") or ""
            if cause == "hazard_violations":
                reason = f"{r['summary']['hazard_violations']} hazard violation(s); " + reason
            f["examples"].append({"run": r["index"], "family": r.get("family"), "reason": reason})
    failures = dict(sorted(failures.items(), key=lambda kv: (-kv[1]["count"], kv[0])))
    reached = [s for s in sums if s.get("outcome") == "reached" and s.get("reached")]
    completed = [s for s in sums if s.get("outcome") != "error"]
    metrics = {}
    for key, pop in METRICS.items():
        d = _distribution(s.get(key) for s in (reached if pop == "reached" else completed))
        d["over"] = pop
        metrics[key] = d
    hv_total = sum(int(s.get("hazard_violations") or 0) for s in sums)
    faults = {}
    for s in sums:
        for f in s.get("faults") or ():
            if isinstance(f, dict):
                e = faults.setdefault(str(f.get("kind")), {"injected": 0, "survived": 0})
                e["injected"] += 1
                e["survived"] += bool(f.get("survived"))
    fam_names = [f.name for f in campaign.families]
    fam_names += sorted({r.get("family") for r in recs} - set(fam_names) - {None})
    families = {}
    for name in fam_names:
        idx = [i for i, r in enumerate(recs) if r.get("family") == name]
        fs = [sums[i] for i in idx]
        fk = sum(ok[i] for i in idx)
        flo, fhi = wilson_interval(fk, len(idx))
        f_reached = [s for s in fs if s.get("outcome") == "reached" and s.get("reached")]
        f_out = {}
        for s in fs:
            f_out[s.get("outcome") or "error"] = f_out.get(s.get("outcome") or "error", 0) + 1
        families[name] = {
            "n": len(idx), "successes": fk, "rate": fk / len(idx) if idx else None, "ci95": [flo, fhi],
            "outcomes": f_out, "hazard_violations": sum(int(s.get("hazard_violations") or 0) for s in fs),
            **{f"{m}_p50": _distribution(s.get(m) for s in f_reached).get("p50")
               for m in ("speed_m_per_h", "path_ratio", "moving_fraction")},
        }
    agg = {
        "campaign": campaign.name, "description": campaign.description, "source": campaign.source,
        "scenario": campaign.scenario, "seed": campaign.seed if seed is None else seed,
        "runs_requested": runs_requested, "runs_done": n, "interrupted": bool(interrupted),
        "success": {"definition": crit.success, "successes": k, "n": n, "rate": k / n if n else None,
                    "ci95": [lo, hi], "method": "wilson"},
        "outcomes": outcomes, "failures": failures,
        "hazard_violations": {"total": hv_total, "runs": sum(1 for s in sums if s.get("hazard_violations"))},
        "errors": outcomes.get("error", 0), "faults": faults,
        "redraws": {"runs": sum(1 for r in recs if r.get("redraws")),
                    "total": sum(int(r.get("redraws") or 0) for r in recs),
                    "examples": [{"run": r["index"], "reason": (r.get("redraw_reasons") or [""])[0]}
                                 for r in recs if r.get("redraws")][:3]},
        "metrics": metrics, "families": families,
        "margins_relaxed": {"runs": sum(1 for r in recs if r.get("margins_relaxed")),
                            "successes": sum(ok[i] for i, r in enumerate(recs) if r.get("margins_relaxed"))},
    }
    checks = _checks(agg, crit)
    agg["criteria"] = dataclasses.asdict(crit)
    agg["checks"] = checks
    agg["failed_criteria"] = [c["name"] for c in checks if not c["ok"]]
    agg["passed"] = not agg["failed_criteria"]
    if timing is not None:
        agg["timing"] = timing
    return agg


def _checks(agg: dict, crit: CampaignCriteria) -> list[dict]:
    out = []

    def check(name, value, op, threshold):
        if threshold is None:
            return
        good = value is not None and (value >= threshold if op == ">=" else value <= threshold)
        out.append({"name": name, "value": value, "op": op, "threshold": threshold, "ok": bool(good)})

    out.append({"name": "complete", "value": agg["runs_done"], "op": "==", "threshold": agg["runs_requested"],
                "ok": agg["runs_done"] == agg["runs_requested"] and agg["runs_done"] > 0 and not agg["interrupted"]})
    s = agg["success"]
    rate = s["ci95"][0] if crit.rate_bound == "wilson_lower" and s["n"] else s["rate"]
    check("success_rate" if crit.rate_bound == "point" else "success_rate_wilson_lower", rate, ">=",
          crit.min_success_rate)
    check("hazard_violations", agg["hazard_violations"]["total"], "<=", crit.max_hazard_violations)
    check("error_runs", agg["errors"], "<=", crit.max_error_runs)
    m = agg["metrics"]
    check("path_ratio_p50", m["path_ratio"].get("p50"), "<=", crit.max_path_ratio_p50)
    check("path_ratio_p95", m["path_ratio"].get("p95"), "<=", crit.max_path_ratio_p95)
    check("moving_fraction_p50", m["moving_fraction"].get("p50"), ">=", crit.min_moving_fraction_p50)
    check("speed_m_per_h_p50", m["speed_m_per_h"].get("p50"), ">=", crit.min_speed_m_per_h_p50)
    check("loc_error_final_m_p95", m["loc_error_final_m"].get("p95"), "<=", crit.max_loc_error_final_m_p95)
    return out


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"


def _num(x, fmt=".2f") -> str:
    return "-" if x is None else format(x, fmt)


def format_report(agg: dict, paths: dict | None = None) -> str:
    """A plain-text report of an aggregate (what ``rover campaign`` prints and ``report.txt`` holds)."""
    s = agg["success"]
    lines = []
    head = f"campaign {agg['campaign']}: {agg['runs_done']}/{agg['runs_requested']} runs (seed {agg['seed']})"
    t = agg.get("timing")
    if t:
        head += (f" on {t['workers']} {t['backend']} worker{'s' if t['workers'] != 1 else ''} in "
                 f"{_duration(t['wall_s'])} ({t['traverses_per_min']:.1f} traverses/min)")
    if agg["interrupted"]:
        head += "  [INTERRUPTED]"
    lines.append(head)
    what = {"reached_safely": "reached with no hazard violation", "reached": "reached",
            "passed": "passed the scenario's criteria"}[s["definition"]]
    lines.append(f"success ({what}): {s['successes']}/{s['n']} = {_pct(s['rate'])}  "
                 f"(Wilson 95 %: {_pct(s['ci95'][0])} - {_pct(s['ci95'][1])})")
    if agg["failures"]:
        lines.append("failures:")
        for cause, f in agg["failures"].items():
            runs = ", ".join(map(str, f["runs"][:10])) + (" ..." if f["count"] > 10 else "")
            lines.append(f"  {cause:<18} {f['count']:>5}  runs {runs}")
            ex = f["examples"][0]
            if ex["reason"]:
                lines.append(f"  {'':<18}        e.g. run {ex['run']}: {ex['reason'][:160]}")
    m = agg["metrics"]
    lines.append("distributions (p5 / p50 / p95):")
    for key, label in (("speed_m_per_h", "speed m/h"), ("path_ratio", "path ratio"),
                       ("moving_fraction", "moving fraction"), ("loc_error_final_m", "final loc error m"),
                       ("max_tilt_deg", "max tilt deg"), ("wall_time_s", "wall time per run s")):
        d = m[key]
        if d["n"]:
            lines.append(f"  {label:<20} {_g(d['p5']):>9} {_g(d['p50']):>9} {_g(d['p95']):>9}   "
                         f"(n={d['n']}, {d['over']})")
    lines.append(f"  hazard violations    {agg['hazard_violations']['total']} in "
                 f"{agg['hazard_violations']['runs']} run(s)")
    mr = agg.get("margins_relaxed") or {}
    if mr.get("runs"):
        lines.append(f"margins relaxed (goal unreachable within the planning margins, every arc failing, or "
                     f"the straight route driven wander_relax_ratio times over) in {mr['runs']} run(s), "
                     f"{mr['successes']} of them successful")
    rd = agg.get("redraws") or {}
    if rd.get("runs"):
        lines.append(f"terrain redrawn for {rd['runs']} run(s) ({rd['total']} redraws; start or goal on a hazard), "
                     f"e.g. run {rd['examples'][0]['run']}: {rd['examples'][0]['reason'][:140]}")
    if agg.get("faults"):
        lines.append("faults survived: " + ", ".join(f"{k} {v['survived']}/{v['injected']}"
                                                     for k, v in sorted(agg["faults"].items())))
    if len(agg["families"]) > 1:
        w = max(9, max(len(n) for n in agg["families"]))
        lines.append(f"by family:\n  {'family':<{w}} {'n':>5} {'success':>8}  {'Wilson 95 %':<17} "
                     f"{'m/h p50':>8} {'ratio p50':>9} {'moving p50':>10}")
        for name, f in agg["families"].items():
            ci = f"{_pct(f['ci95'][0])} - {_pct(f['ci95'][1])}"
            lines.append(f"  {name:<{w}} {f['n']:>5} {_pct(f['rate']):>8}  {ci:<17} "
                         f"{_num(f['speed_m_per_h_p50'], '.1f'):>8} {_num(f['path_ratio_p50'], '.3f'):>9} "
                         f"{_num(f['moving_fraction_p50'], '.2f'):>10}")
    lines.append("criteria:")
    for c in agg["checks"]:
        v = c["value"]
        vs = f"{v:.4g}" if isinstance(v, float) else str(v)
        th = c["threshold"]
        ths = f"{th:.4g}" if isinstance(th, float) else str(th)
        lines.append(f"  {'ok  ' if c['ok'] else 'FAIL'} {c['name']}: {vs} {c['op']} {ths}")
    lines.append("PASSED" if agg["passed"] else "FAILED: " + ", ".join(agg["failed_criteria"]))
    if paths:
        lines.append("report: " + "  ".join(str(p) for p in paths.values()))
    return "\n".join(lines)


def _g(x: float) -> str:
    """Three significant digits without exponents for everyday magnitudes (1080, 0.938, 0.0263)."""
    return f"{x:.0f}" if 1000 <= abs(x) < 1e7 else f"{x:.3g}"


def _duration(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s // 60 % 60:02d}m{s % 60:02d}s" if s >= 3600 else (
        f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s")


# =========================================================================== plots (OpenCV)
_BLACK, _GREY, _LIGHT, _WHITE = (30, 30, 30), (120, 120, 120), (225, 225, 225), (255, 255, 255)
_GREEN, _ORANGE, _RED, _BLUE = (80, 160, 60), (40, 140, 240), (50, 50, 210), (190, 120, 40)


def _text(img, s, org, scale=0.45, colour=_BLACK, thick=1, anchor="left"):
    import cv2

    (w, h), _ = cv2.getTextSize(s, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    x, y = org
    if anchor == "centre":
        x -= w // 2
    elif anchor == "right":
        x -= w
    cv2.putText(img, s, (int(x), int(y)), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thick, cv2.LINE_AA)
    return w, h


def _vtext(img, s, centre_x, top_y, scale=0.42):
    """Text rotated 90° counter-clockwise whose right end sits at ``top_y`` (labels under bars)."""
    import cv2
    import numpy as np

    (w, h), base = cv2.getTextSize(s, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    tile = np.full((h + base + 2, w + 2, 3), 255, np.uint8)
    cv2.putText(tile, s, (1, h + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, _BLACK, 1, cv2.LINE_AA)
    tile = cv2.rotate(tile, cv2.ROTATE_90_COUNTERCLOCKWISE)
    th, tw = tile.shape[:2]
    x0 = int(centre_x - tw // 2)
    y1 = min(img.shape[0], top_y + th)
    x1 = min(img.shape[1], x0 + tw)
    if x0 >= 0:
        img[top_y:y1, x0:x1] = np.minimum(img[top_y:y1, x0:x1], tile[:y1 - top_y, :x1 - x0])


def _dashed_hline(img, x0, x1, y, colour, dash=8):
    import cv2

    for x in range(int(x0), int(x1), 2 * dash):
        cv2.line(img, (x, int(y)), (min(x + dash, int(x1)), int(y)), colour, 2, cv2.LINE_AA)


def _success_png(path: Path, agg: dict) -> Path:
    import cv2
    import numpy as np

    fams = dict(agg["families"])
    if len(fams) > 1:
        fams["all"] = {"n": agg["success"]["n"], "successes": agg["success"]["successes"],
                       "rate": agg["success"]["rate"], "ci95": agg["success"]["ci95"]}
    names = list(fams)
    label_h = 14 + max(cv2.getTextSize(n, cv2.FONT_HERSHEY_SIMPLEX, 0.42, 1)[0][0] for n in names)
    bar_w, gap = 46, 26
    left, right, top, plot_h = 70, 30, 56, 300
    W = max(420, left + right + len(names) * (bar_w + gap) + gap)
    x0 = left + (W - left - right - len(names) * (bar_w + gap) - gap) // 2      # centre the bars
    H = top + plot_h + 30 + label_h
    img = np.full((H, W, 3), 255, np.uint8)
    los = [f["ci95"][0] for f in fams.values() if f["n"]]
    ymin = 0.0 if not los or min(los) < 0.5 else math.floor(min(los) * 10) / 10 - 0.1
    ymin = max(0.0, ymin)
    y_of = lambda v: top + plot_h - (v - ymin) / (1 - ymin) * plot_h  # noqa: E731
    for i in range(6):
        v = ymin + (1 - ymin) * i / 5
        y = int(round(y_of(v)))
        cv2.line(img, (left, y), (W - right, y), _LIGHT, 1)
        _text(img, f"{100 * v:.0f} %", (left - 6, y + 4), 0.4, _GREY, anchor="right")
    thr = agg["criteria"]["min_success_rate"]
    if thr is not None and thr >= ymin:
        _dashed_hline(img, left, W - right, y_of(thr), _RED)
        _text(img, f"goal {100 * thr:g} %", (W - right, int(y_of(thr)) - 5), 0.4, _RED, anchor="right")
    for j, (name, f) in enumerate(fams.items()):
        cx = x0 + gap + j * (bar_w + gap) + bar_w // 2
        if f["n"] and f["rate"] is not None:
            colour = _BLUE if name == "all" else (_GREEN if thr is None or f["rate"] >= thr else _ORANGE)
            y = y_of(max(f["rate"], ymin))
            cv2.rectangle(img, (cx - bar_w // 2, int(y)), (cx + bar_w // 2, int(y_of(ymin))), colour, -1)
            ylo, yhi = y_of(max(f["ci95"][0], ymin)), y_of(f["ci95"][1])
            cv2.line(img, (cx, int(ylo)), (cx, int(yhi)), _BLACK, 2, cv2.LINE_AA)
            for yy in (ylo, yhi):
                cv2.line(img, (cx - 8, int(yy)), (cx + 8, int(yy)), _BLACK, 2, cv2.LINE_AA)
            _text(img, f"{f['successes']}/{f['n']}", (cx, int(yhi) - 6), 0.38, _BLACK, anchor="centre")
        _vtext(img, name, cx, top + plot_h + 8)
    cv2.line(img, (left, top + plot_h), (W - right, top + plot_h), _BLACK, 1)
    cv2.line(img, (left, top), (left, top + plot_h), _BLACK, 1)
    s = agg["success"]
    _text(img, f"{agg['campaign']}: success rate by family (Wilson 95 % bars)", (left, 22), 0.52, thick=1)
    _text(img, f"{s['definition']}: {s['successes']}/{s['n']}", (left, 42), 0.42, _GREY)
    return _imwrite(path, img)


def _histogram_png(path: Path, values, title: str, xlabel: str, marks=()) -> Path:
    """Histogram of ``values`` with vertical ``marks`` ``[(x, label, colour), ...]``."""
    import cv2
    import numpy as np

    v = np.asarray([x for x in values if _finite(x)], dtype=np.float64)
    left, right, top, plot_h, plot_w = 60, 30, 50, 260, 520
    W, H = left + plot_w + right, top + plot_h + 60
    img = np.full((H, W, 3), 255, np.uint8)
    _text(img, title, (left, 24), 0.52)
    if v.size == 0:
        _text(img, "no data", (left + plot_w // 2, top + plot_h // 2), 0.6, _GREY, anchor="centre")
        return _imwrite(path, img)
    xs = [float(m[0]) for m in marks if m[0] is not None and _finite(m[0])]
    vmin, vmax = float(min(v.min(), *xs)), float(max(v.max(), *xs))
    bins = int(min(30, max(6, math.ceil(2 * math.sqrt(v.size)))))
    width = _nice_step(max(vmax - vmin, 1e-3 * max(abs(vmax), 1.0)) / bins)
    lo = math.floor(vmin / width) * width
    hi = max(math.ceil(vmax / width) * width, lo + width)
    if v.max() >= hi:                        # the last bin is closed on the right
        hi += width
    edges = np.arange(lo, hi + 0.5 * width, width)
    counts, edges = np.histogram(v, bins=edges)
    cmax = max(1, int(counts.max()))
    cstep = max(1, int(_nice_step(cmax / 4)))
    ctop = math.ceil(cmax / cstep) * cstep
    x_of = lambda x: left + (x - lo) / (hi - lo) * plot_w  # noqa: E731
    y_of = lambda c: top + plot_h - c / ctop * plot_h  # noqa: E731
    for c in range(0, ctop + 1, cstep):
        y = int(round(y_of(c)))
        cv2.line(img, (left, y), (left + plot_w, y), _LIGHT, 1)
        _text(img, str(c), (left - 6, y + 4), 0.4, _GREY, anchor="right")
    for c, a, b in zip(counts, edges[:-1], edges[1:]):
        if c:
            cv2.rectangle(img, (int(x_of(a)) + 1, int(y_of(c))), (int(x_of(b)) - 1, int(y_of(0))), _BLUE, -1)
    for k, (x, label, colour) in enumerate(marks):
        if x is None or not _finite(x):
            continue
        X = int(round(x_of(x)))
        for y in range(top, top + plot_h, 12):
            cv2.line(img, (X, y), (X, min(y + 6, top + plot_h)), colour, 2)
        _text(img, f"{label} {x:.3g}", (X + 4, top + 12 + 16 * k), 0.4, colour)
    cv2.line(img, (left, top + plot_h), (left + plot_w, top + plot_h), _BLACK, 1)
    cv2.line(img, (left, top), (left, top + plot_h), _BLACK, 1)
    tstep = _nice_step((hi - lo) / 6)
    decimals = max(0, -math.floor(math.log10(tstep) + 1e-9))
    x = math.ceil(lo / tstep - 1e-9) * tstep
    while x <= hi + 1e-9 * tstep:
        X = int(round(x_of(x)))
        cv2.line(img, (X, top + plot_h), (X, top + plot_h + 4), _BLACK, 1)
        _text(img, f"{x:.{decimals}f}", (X, top + plot_h + 18), 0.4, _BLACK, anchor="centre")
        x += tstep
    _text(img, f"{xlabel}   (n = {v.size}, runs)", (left + plot_w // 2, H - 12), 0.45, _BLACK, anchor="centre")
    return _imwrite(path, img)


def _nice_step(raw: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^k that is >= ``raw`` (> 0): axis ticks and bin widths."""
    e = 10.0 ** math.floor(math.log10(raw))
    for m in (1.0, 2.0, 2.5, 5.0, 10.0):
        if m * e >= raw * (1 - 1e-9):
            return m * e
    return 10.0 * e  # pragma: no cover


def _imwrite(path: Path, img) -> Path:
    import cv2

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), img):
        raise OSError(f"could not write PNG {path}")
    return path


def write_plots(agg: dict, records, out_dir) -> dict[str, Path]:
    """Success rate by family (Wilson bars) and histograms of m/h and path ratio (reached runs), as PNG."""
    out_dir = Path(out_dir)
    reached = [r["summary"] for r in records if r["summary"].get("outcome") == "reached"
               and r["summary"].get("reached")]
    crit = agg["criteria"]
    m = agg["metrics"]
    paths = {"success_png": _success_png(out_dir / "success_by_family.png", agg)}
    paths["speed_png"] = _histogram_png(
        out_dir / "hist_speed_m_per_h.png", [s.get("speed_m_per_h") for s in reached],
        f"{agg['campaign']}: average speed of reached traverses", "speed, m/h",
        [(m["speed_m_per_h"].get("p50"), "median", _BLACK),
         (crit.get("min_speed_m_per_h_p50"), "goal", _RED)])
    paths["path_ratio_png"] = _histogram_png(
        out_dir / "hist_path_ratio.png", [s.get("path_ratio") for s in reached],
        f"{agg['campaign']}: driven path / oracle path on the true map", "path ratio",
        [(m["path_ratio"].get("p50"), "median", _BLACK),
         (crit.get("max_path_ratio_p50") or crit.get("max_path_ratio_p95"), "goal", _RED)])
    return paths


# =========================================================================== execution
def _plain(o):
    """JSON-safe copy: NaN/inf -> None, numpy scalars -> Python, tuples -> lists."""
    if isinstance(o, dict):
        return {str(k): _plain(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_plain(v) for v in o]
    if isinstance(o, bool) or o is None or isinstance(o, str):
        return o
    if isinstance(o, int):
        return int(o)
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if hasattr(o, "item") and callable(o.item):        # numpy scalar
        return _plain(o.item())
    if hasattr(o, "tolist"):
        return _plain(o.tolist())
    return str(o)


def _resolve_runner(runner):
    if runner is None:
        from hil.traverse import run_traverse     # lazily: the campaign module stays cheap to import
        return run_traverse
    if isinstance(runner, str):
        import importlib

        mod, _, attr = runner.partition(":")
        fn = importlib.import_module(mod)
        for a in attr.split("."):
            fn = getattr(fn, a)
        return fn
    return runner


def _error_summary(spec_scenario: Scenario, reason: str) -> dict:
    s = dict.fromkeys(SUMMARY_KEYS)
    s.update(scenario=spec_scenario.name, seed=spec_scenario.terrain.seed, backend="sim",
             perception=spec_scenario.perception, mode=spec_scenario.mode, reached=False, outcome="error",
             reason=reason, faults=[], passed=False, failed_criteria=["error"])
    return s


#: Terrain redraws allowed per run when a generated terrain leaves the start or a goal on a hazard.
MAX_REDRAWS = 4


class _Task(typing.NamedTuple):
    index: int
    family: str
    attempts: tuple          # ((overrides, scenario), ...): the draw, then its terrain redraws
    runner: object
    kwargs: dict


def _make_task(camp: Campaign, index: int, seed: int, runner, kwargs: dict) -> _Task:
    attempts = [camp.run_spec(index, seed)]
    if camp.draws_for(index)["terrain.seed"].kind != "fixed" and not camp.base.terrain.dem:
        attempts += [camp.run_spec(index, seed, a) for a in range(1, MAX_REDRAWS + 1)]
    return _Task(index, attempts[0].family, tuple((a.overrides, a.scenario) for a in attempts), runner, kwargs)


def _error_record(task: _Task, reason: str) -> dict:
    return {"index": task.index, "family": task.family, "overrides": task.attempts[0][0], "redraws": 0,
            "summary": _error_summary(task.attempts[0][1], reason)}


def _execute(task: _Task) -> dict:
    """Run one traverse (in a worker); never raises for a failing run: an exception becomes an error record.

    A :class:`nav.ConfigError` from the runner means this draw's terrain makes the scenario invalid (the start
    or a goal on a hazard of the true terrain): the terrain seed is redrawn (up to :data:`MAX_REDRAWS` times,
    deterministically), and the record says how often (``redraws``) and why (``redraw_reasons``).
    """
    from nav.errors import ConfigError as _ConfigError

    reasons = []
    for k, (overrides, scenario) in enumerate(task.attempts):
        rec = {"index": task.index, "family": task.family, "overrides": overrides, "redraws": k}
        try:
            summary = _resolve_runner(task.runner)(scenario, **task.kwargs)
            if (getattr(summary, "executive", None) or {}).get("margins_relaxed"):
                rec["margins_relaxed"] = True         # the executive had to make the margin band passable
            summary = summary.to_dict() if hasattr(summary, "to_dict") else dict(summary)
            rec["summary"] = _plain(summary)
        except _ConfigError as e:           # an invalid draw: try the next terrain
            reasons.append(str(e))
            if k + 1 < len(task.attempts):
                continue
            rec["summary"] = _error_summary(scenario, f"no valid scenario in {k + 1} terrain draw(s): {e}")
            rec["traceback"] = traceback.format_exc(limit=12)
        except Exception as e:  # noqa: BLE001 - a failing run must never end the campaign
            rec["summary"] = _error_summary(scenario, f"{type(e).__name__}: {e}")
            rec["traceback"] = traceback.format_exc(limit=12)
        if reasons:
            rec["redraw_reasons"] = reasons
        return rec
    raise AssertionError("a task has at least one attempt")  # pragma: no cover


def _verbose_level() -> int | None:
    """The root log level when the caller asked for progress logs (INFO or DEBUG), else None: a campaign's runs
    are quiet by default (each run's outcome and reason are in its record, not in warnings on the terminal)."""
    root = logging.getLogger()
    return root.getEffectiveLevel() if root.handlers and root.getEffectiveLevel() <= logging.INFO else None


def _init_worker(runner, threads: int | None, log_level: int | None = None) -> None:
    """Pool worker start-up: leave Ctrl-C to the parent, one thread per library, logs only when verbose, warm
    the runner's imports (the Numba kernels load from the on-disk cache once per worker, not once per run)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if log_level is None:
        logging.getLogger().addHandler(logging.NullHandler())
        logging.disable(logging.WARNING)
    else:
        logging.basicConfig(level=log_level, format="%(levelname)s [worker %(process)d] %(name)s: %(message)s")
    if threads:
        try:
            import cv2
            cv2.setNumThreads(threads)
        except Exception:  # noqa: BLE001 - best effort
            pass
    try:
        _resolve_runner(runner)
    except Exception as e:  # noqa: BLE001 - reported per run by _execute
        log.warning("worker %d cannot load the traverse runner: %s", os.getpid(), e)


def _default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


@dataclass
class CampaignResult:
    """What :func:`run_campaign` returns: the aggregate, the run records (by index) and the written files."""
    aggregate: dict
    records: list
    out_dir: Path | None
    paths: dict

    @property
    def passed(self) -> bool:
        return bool(self.aggregate["passed"])

    @property
    def interrupted(self) -> bool:
        return bool(self.aggregate["interrupted"])

    def to_dict(self) -> dict:
        return self.aggregate


def run_campaign(campaign, runs: int | None = None, *, seed: int | None = None, workers: int | None = None,
                 cluster: str | None = None, out_dir=None, runner=None, progress=None, run_outputs: bool = False,
                 plots: bool = True, clock=time.perf_counter) -> CampaignResult:
    """Run a campaign's traverses and aggregate them.

    Parameters
    ----------
    campaign : Campaign or str or Path
        A loaded campaign, a packaged name or a YAML path.
    runs : int, optional
        Number of traverses (default: the campaign's ``runs``); run indices are ``0 .. runs - 1``.
    seed : int, optional
        Campaign seed (default: the campaign's ``seed``).
    workers : int, optional
        Local process-pool size (default: the usable cores; ``1`` runs in this process). Ignored with
        ``cluster``.
    cluster : str, optional
        ``"tcp://HOST:PORT"`` of a Dask distributed scheduler (needs ``pip install 'rovernav[cluster]'``).
    out_dir : path, optional
        Where ``results.jsonl``, ``campaign.json``, ``report.txt`` and the PNGs go (nothing written if None).
    runner : callable or "module:function", optional
        ``runner(scenario, backend="sim", out_dir=..., log=False, png=...) -> TraverseSummary | dict``;
        default :func:`hil.traverse.run_traverse`. It must be importable by name in worker processes.
    progress : callable, optional
        ``progress(done, total, record)`` after each run completes (in this process, completion order).
    run_outputs : bool
        Give every run its own folder ``out_dir/runs/NNNNN`` (summary.json and PNG, no log).
    clock : callable
        Seconds for the campaign's timing figures (``time.perf_counter``).

    Returns
    -------
    CampaignResult
        ``.aggregate`` (see :func:`aggregate`; ``interrupted`` after Ctrl-C, with the runs done so far),
        ``.records`` sorted by index, ``.paths`` of the written files, ``.passed``.
    """
    camp = campaign if isinstance(campaign, Campaign) else load_campaign(campaign)
    runs = camp.runs if runs is None else runs
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
        raise ValueError(f"runs = {runs!r}: must be an integer >= 1")
    seed = camp.seed if seed is None else seed
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed = {seed!r}: must be an integer >= 0")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers = {workers!r}: must be an integer >= 1")
    if cluster is not None and (not isinstance(cluster, str) or "://" not in cluster):
        raise ValueError(f"cluster = {cluster!r}: must be a scheduler address like tcp://HOST:8786")
    out_dir = Path(out_dir) if out_dir is not None else None
    try:        # fail fast here rather than once per run in the workers
        _resolve_runner(runner)
    except (ImportError, AttributeError) as e:
        raise ImportError(f"cannot load the traverse runner {runner or 'hil.traverse:run_traverse'}: "
                          f"{type(e).__name__}: {e}") from None
    tasks = []
    for i in range(runs):
        kw = {"backend": "sim", "out_dir": None, "log": False, "png": False}
        if run_outputs and out_dir is not None:
            kw.update(out_dir=str(out_dir / "runs" / f"{i:05d}"), png=True)
        tasks.append(_make_task(camp, i, seed, runner, kw))

    stream = None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        stream = open(out_dir / "results.jsonl", "w", encoding="utf-8")
    records: list[dict] = []

    def done(rec):
        records.append(rec)
        if stream is not None:
            stream.write(json.dumps(_plain(rec)) + "\n")
            stream.flush()
        if progress is not None:
            progress(len(records), runs, rec)

    t0 = clock()
    interrupted = False
    try:
        if cluster is not None:
            backend = "dask"
            nworkers, interrupted = _run_dask(cluster, tasks, done)
        elif (workers or _default_workers()) <= 1 or runs == 1:
            backend, nworkers = "in-process", 1
            quiet = _verbose_level() is None
            previous = logging.root.manager.disable
            try:
                for t in tasks:
                    if quiet:
                        logging.disable(logging.WARNING)
                    try:
                        rec = _execute(t)
                    finally:
                        logging.disable(previous)
                    s = rec["summary"]
                    if s.get("outcome") == "error" and s.get("reason") == "interrupted":
                        raise KeyboardInterrupt   # run_traverse caught Ctrl-C, stopped the rover and returned
                    done(rec)
            except KeyboardInterrupt:
                interrupted = True
        else:
            backend, nworkers = "local", min(workers or _default_workers(), runs)
            interrupted = _run_pool(nworkers, tasks, runner, done)
    finally:
        if stream is not None:
            stream.close()
    wall = clock() - t0
    timing = {"backend": backend, "workers": nworkers, "wall_s": wall,
              "traverses_per_min": 60.0 * len(records) / wall if wall > 0 else None}
    records.sort(key=lambda r: r["index"])
    agg = aggregate(records, camp, runs_requested=runs, seed=seed, interrupted=interrupted, timing=timing)
    paths = {}
    if out_dir is not None:
        from hil.report import write_json

        with open(out_dir / "results.jsonl", "w", encoding="utf-8") as f:   # final: in index order
            for r in records:
                f.write(json.dumps(_plain(r)) + "\n")
        paths["results"] = out_dir / "results.jsonl"
        paths["campaign"] = write_json(out_dir / "campaign.json", _plain(agg))
        if plots:
            paths.update(write_plots(agg, records, out_dir))
        paths["report"] = out_dir / "report.txt"
        paths["report"].write_text(format_report(agg) + "\n", encoding="utf-8")
    return CampaignResult(aggregate=agg, records=records, out_dir=out_dir, paths=paths)


def _run_pool(workers: int, tasks, runner, done) -> bool:
    """Local spawn process pool; returns True if interrupted (Ctrl-C)."""
    import concurrent.futures as cf
    import multiprocessing as mp
    from concurrent.futures.process import BrokenProcessPool

    ex = cf.ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                                initializer=_init_worker, initargs=(runner, 1, _verbose_level()))
    futs = {ex.submit(_execute, t): t for t in tasks}
    try:
        for fut in cf.as_completed(futs):
            t = futs[fut]
            try:
                rec = fut.result()
            except BrokenProcessPool as e:      # a worker died (segfault, OOM kill): record, carry on
                rec = _error_record(t, f"worker process died: {e}")
            except Exception as e:  # noqa: BLE001 - e.g. unpicklable result
                rec = _error_record(t, f"{type(e).__name__}: {e}")
            done(rec)
    except KeyboardInterrupt:
        procs = list((getattr(ex, "_processes", None) or {}).values())    # (shutdown forgets them)
        ex.shutdown(wait=False, cancel_futures=True)
        for p in procs:                     # don't wait for the running traverses to finish
            p.terminate()
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():  # pragma: no cover - SIGTERM ignored
                p.kill()
        return True
    ex.shutdown(wait=True)
    return False


def _run_dask(address: str, tasks, done) -> tuple[int, bool]:
    """The same runs on a Dask distributed cluster; returns (workers, interrupted)."""
    try:
        from distributed import Client, as_completed
    except ImportError as e:
        raise ImportError(f"cluster={address!r} needs Dask distributed: pip install 'rovernav[cluster]' "
                          f"({e})") from None
    import uuid

    tag = uuid.uuid4().hex[:8]
    with Client(address, timeout="30s", set_as_default=False) as client:
        nworkers = len(client.scheduler_info(n_workers=-1)["workers"]) if _takes_n_workers(client) else \
            len(client.scheduler_info()["workers"])
        futs = {}
        for t in tasks:
            f = client.submit(_execute, t, key=f"rovernav-run-{t.index}-{tag}", pure=False)
            futs[f] = t
        try:
            for fut in as_completed(list(futs), loop=client.loop):
                t = futs[fut]
                try:
                    rec = fut.result()
                except Exception as e:  # noqa: BLE001 - KilledWorker, cancelled...
                    rec = _error_record(t, f"{type(e).__name__}: {e}")
                done(rec)
        except KeyboardInterrupt:
            client.cancel(list(futs))
            return nworkers, True
    return nworkers, False


def _takes_n_workers(client) -> bool:
    import inspect

    try:
        return "n_workers" in inspect.signature(client.scheduler_info).parameters
    except (TypeError, ValueError):  # pragma: no cover
        return False


def run_one(campaign, index: int, *, seed: int | None = None, out_dir, runner=None, log: bool = True,
            png: bool = True) -> dict:
    """Re-run run ``index`` of a campaign alone, in this process, with its exact scenario and full output.

    Writes ``out_dir/scenario.yaml`` (replayable with ``rover traverse``), ``out_dir/run.json`` (index, family,
    overrides) and whatever the runner writes (summary.json, PNG, MCAP log) to ``out_dir``; returns the record
    ``{"index", "family", "overrides", "summary"}`` (an exception becomes an error record, as in a campaign).
    """
    camp = campaign if isinstance(campaign, Campaign) else load_campaign(campaign)
    seed = camp.seed if seed is None else seed
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    task = _make_task(camp, index, seed, runner, {"backend": "sim", "out_dir": str(out_dir), "log": log, "png": png})
    rec = _execute(task)
    overrides, scenario = task.attempts[rec["redraws"]]
    (out_dir / "scenario.yaml").write_text(
        f"# {camp.name} run {index} (campaign seed {seed}, family {task.family}, terrain redraws "
        f"{rec['redraws']})\n" + scenario_to_yaml(scenario), encoding="utf-8")
    from hil.report import write_json

    write_json(out_dir / "run.json", {"campaign": camp.name, "source": camp.source, "seed": seed, "index": index,
                                      "family": task.family, "overrides": overrides, "redraws": rec["redraws"]})
    if "traceback" in rec:
        (out_dir / "traceback.txt").write_text(rec["traceback"], encoding="utf-8")
    return rec
