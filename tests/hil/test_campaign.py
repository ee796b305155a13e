"""Campaigns: schema errors name file/key/line, per-run draws are reproducible, the Wilson interval matches
scipy, aggregation is right on hand-made results, and the local pool, the in-process loop and a Dask cluster
give identical results with a fast deterministic fake traverse."""
import hashlib
import json
import math
import sys
import textwrap

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hil.campaign import (OUTCOMES, SUMMARY_KEYS, Draw, aggregate, format_report, load_campaign, run_campaign,
                          run_one, scenario_to_yaml, wilson_interval)
from hil.scenario import load_scenario
from nav.errors import ConfigError


# ----------------------------------------------------------------------------- a fake traverse
class FakeSummary:
    """Stands in for hil.traverse.TraverseSummary (only ``to_dict`` is used)."""

    def __init__(self, d):
        self.d = d

    def to_dict(self):
        return dict(self.d)


def fake_runner(scenario, *, backend="sim", out_dir=None, log=True, png=True, **kw):
    """A deterministic function of the scenario shaped like TraverseSummary.to_dict() (instant)."""
    if scenario.limits.max_time_s == 13:
        raise RuntimeError("boom: the fake traverse failed")
    t = scenario.terrain
    if scenario.limits.max_time_s == 17 and t.seed % 2 == 0:   # as run_traverse does for a goal on a hazard
        raise ConfigError(scenario.source, "goal", {"x_m": 1.0}, f"lies on a hazard of the true terrain ({t.seed})")
    seed = t.seed
    cfa = 0.07 if t.rock_cfa is None else t.rock_cfa
    h = seed % 100
    outcome, hv, reason = "reached", 0, ""
    if h < 100 * cfa:
        outcome, reason = "stuck", f"no progress for 20 s at seed {seed}"
    elif h == 99:
        hv = 1
    elif h == 98:
        outcome, reason = "unreachable", "the goal is walled off by rocks"
    reached = outcome == "reached"
    ratio = 1.0 + (seed % 37) / 100.0
    d = {
        "scenario": scenario.name, "seed": seed, "backend": backend, "perception": scenario.perception,
        "mode": scenario.mode, "reached": reached, "outcome": outcome, "reason": reason,
        "distance_m": 10.0 * ratio, "time_s": 100.0 + seed % 7, "speed_m_per_h": 80.0 + seed % 41,
        "moving_fraction": 0.7 + (seed % 29) / 100.0, "path_length_m": 10.0 * ratio, "oracle_length_m": 10.0,
        "path_ratio": ratio, "hazard_violations": hv, "min_clearance_m": 0.1, "max_tilt_deg": 5.0 + seed % 11,
        "loc_error_final_m": 0.01 * (seed % 13), "loc_error_max_m": 0.02 * (seed % 13), "vo_convergence": None,
        "faults": [], "passed": reached and hv == 0, "failed_criteria": [] if reached and hv == 0 else ["reach_goal"],
        "wall_time_s": 0.5,
    }
    if out_dir is not None:
        from pathlib import Path
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "summary.json").write_text(json.dumps(d))
    return FakeSummary(d) if seed % 2 else d


RUNNER = "test_campaign:fake_runner"

GOOD = """\
name: t
description: a test campaign
scenario: quick
runs: 12
seed: 5
vary:
  terrain.relief_rms_m: {uniform: [0.1, 0.3]}
families:
  - name: low
    weight: 2
    vary:
      terrain.rock_cfa: {uniform: [0.0, 0.05]}
  - name: high
    vary:
      terrain.rock_cfa: {uniform: [0.10, 0.2]}
      mode: {choice: [stop_and_go, drive_while_planning]}
      terrain.crater_density_per_km2: {loguniform: [100, 10000]}
      planet: mars
pass_criteria:
  min_success_rate: 0.5
  max_hazard_violations: 5
"""


def write(tmp_path, text, name="c.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def strip_timing(agg):
    return {k: v for k, v in agg.items() if k != "timing"}


# ----------------------------------------------------------------------------- schema
def test_shipped_campaigns_load():
    import configs

    assert {"quick", "mars_50m", "families"} <= set(configs.available("campaigns"))
    for name in configs.available("campaigns"):
        c = load_campaign(name)
        assert c.families and c.base is not None and c.source.endswith(f"{name}.yaml")
        for i in range(2 * len(c.turn)):
            c.run_spec(i)                      # every family materialises
    m = load_campaign("mars_50m")
    assert m.base.name == "mars_50m" and m.pass_criteria.min_success_rate == 0.98
    cfa = [d.values for f in m.families for d in f.vary if d.key == "terrain.rock_cfa"]
    relief = [d.values for f in m.families for d in f.vary if d.key == "terrain.relief_rms_m"]
    assert max(hi for _, hi in cfa) == 0.15 and min(lo for lo, _ in cfa) == 0.0
    assert max(hi for _, hi in relief) == 0.31
    assert m.pass_criteria.max_hazard_violations == 0 and m.pass_criteria.max_path_ratio_p50 == 1.25


def test_the_goal_campaigns_steepest_relief_puts_the_99th_percentile_slope_at_the_profiles_limit():
    """mars_50m reads "slopes up to the profile's limit" as: at the top of its relief range, the 99th
    percentile of the footprint slope of the true terrain (no rocks) is the OSR's max_slope_deg."""
    from hil.scenario import load_scenario
    from hil.traverse import build_traverse

    m = load_campaign("mars_50m")
    top = max(hi for f in m.families for d in f.vary if d.key == "terrain.relief_rms_m" for _, hi in [d.values])
    sc = load_scenario("mars_50m").with_overrides(terrain__relief_rms_m=top, terrain__rock_cfa=0.0, terrain__seed=1)
    st = build_traverse(sc)
    p99 = float(np.nanpercentile(st.true_costmap.slope_deg, 99))
    assert abs(p99 - st.profile.hazards.max_slope_deg) < 1.0, p99


def test_good_campaign(tmp_path):
    c = load_campaign(write(tmp_path, GOOD))
    assert [f.name for f in c.turn] == ["low", "low", "high"]
    assert c.runs == 12 and c.seed == 5 and c.base.name == "quick"
    assert c.families[1].vary[1] == Draw("mode", "choice", ("stop_and_go", "drive_while_planning"))
    assert c.families[1].vary[3] == Draw("planet", "fixed", ("mars",))
    assert isinstance(c.vary[0].values[0], float)


@pytest.mark.parametrize("patch, key, rule, line", [
    (("runs: 12", "run: 12"), "run", "did you mean 'runs'", 4),
    (("{uniform: [0.0, 0.05]}", "{uniform: [0.0, 0.6]}"), "families[0].vary.terrain.rock_cfa", "must be < 0.5", 12),
    (("{uniform: [0.0, 0.05]}", "{uniform: [0.05, 0.0]}"), "families[0].vary.terrain.rock_cfa", "LO <= HI", 12),
    (("{uniform: [0.0, 0.05]}", "{normal: [0.0, 0.05]}"), "families[0].vary.terrain.rock_cfa", "must be a value or", 12),
    (("{uniform: [0.0, 0.05]}", "{randint: [0, 1]}"), "families[0].vary.terrain.rock_cfa", "use uniform", 12),
    (("terrain.rock_cfa: {uniform: [0.0, 0.05]}", "terrain.seed: {uniform: [0, 9]}"),
     "families[0].vary.terrain.seed", "use randint", 12),
    (("terrain.rock_cfa: {uniform: [0.0, 0.05]}", "terrain.rock_cfaa: 0.1"),
     "families[0].vary.terrain.rock_cfaa", "did you mean 'terrain.rock_cfa'", 12),
    (("terrain.rock_cfa: {uniform: [0.0, 0.05]}", "terrain.size_m: 30"),
     "families[0].vary.terrain.size_m", "cannot be varied", 12),
    (("terrain.rock_cfa: {uniform: [0.0, 0.05]}", "goal.x_m: 3"), "families[0].vary.goal.x_m", "cannot be varied", 12),
    (("terrain.rock_cfa: {uniform: [0.0, 0.05]}", "faults: []"), "families[0].vary.faults", "lists", 12),
    (("terrain.rock_cfa: {uniform: [0.0, 0.05]}", "terrain: 3"), "families[0].vary.terrain", "is a section", 12),
    (("drive_while_planning]}", "fly]}"), "families[1].vary.mode", "must be one of", 16),
    (("planet: mars", "planet: vulcan"), "families[1].vary.planet", "cannot load it", 18),
    (("{loguniform: [100, 10000]}", "{loguniform: [0, 10000]}"),
     "families[1].vary.terrain.crater_density_per_km2", "LO > 0", 17),
    (("scenario: quick", "scenario: nowhere"), "scenario", "no scenario config named 'nowhere'", 3),
    (("name: high", "name: low"), "families[1].name", "duplicate family name", 13),
    (("weight: 2", "weight: 0"), "families[0].weight", "must be >= 1", 10),
    (("min_success_rate: 0.5", "min_success_rate: 1.5"), "pass_criteria.min_success_rate", "must be <= 1", 20),
    (("min_success_rate: 0.5", "success: arrived"), "pass_criteria.success", "must be one of", 20),
    (("vary:\n  terrain.relief_rms_m: {uniform: [0.1, 0.3]}", "vary: [1]"), "vary", "must be a mapping", 6),
    (("seed: 5", "seed: [5"), "", "YAML syntax error", None),
])
def test_errors_name_file_key_and_line(tmp_path, patch, key, rule, line):
    text = GOOD.replace(*patch)
    assert text != GOOD
    with pytest.raises(ConfigError) as ei:
        load_campaign(write(tmp_path, text))
    e = ei.value
    assert e.key == key and rule in str(e) and str(tmp_path / "c.yaml") in str(e), str(e)
    if line is not None:
        assert e.line == line, str(e)


def test_scenario_path_relative_to_campaign_and_its_own_errors(tmp_path):
    (tmp_path / "sub").mkdir()
    sc = load_scenario("quick")
    (tmp_path / "sub" / "my.yaml").write_text(scenario_to_yaml(sc).replace("name: quick", "name: mine"))
    c = load_campaign(write(tmp_path, GOOD.replace("scenario: quick", "scenario: sub/my.yaml")))
    assert c.base.name == "mine"
    (tmp_path / "sub" / "my.yaml").write_text("name: bad\nstart: {x_m: 1, y_m: 1}\nmode: fast_please\n")
    with pytest.raises(ConfigError) as ei:      # the scenario's own error names the scenario file
        load_campaign(write(tmp_path, GOOD.replace("scenario: quick", "scenario: sub/my.yaml")))
    assert ei.value.file.endswith("my.yaml") and ei.value.key == "mode" and ei.value.line == 3


# ----------------------------------------------------------------------------- draws
def _ref_u(seed, i, key):
    """Reference: the documented derivation (BLAKE2b-64 of 'rovernav-campaign:seed:i:key', top 53 bits)."""
    h = int.from_bytes(hashlib.blake2b(f"rovernav-campaign:{seed}:{i}:{key}".encode(), digest_size=8).digest(),
                       "little")
    return h, (h >> 11) / 2.0 ** 53


def test_run_spec_is_a_pure_function_of_seed_and_index(tmp_path):
    c1 = load_campaign(write(tmp_path, GOOD))
    c2 = load_campaign(write(tmp_path, GOOD, "d.yaml"))
    specs = [c1.run_spec(i) for i in range(12)]
    assert [c2.run_spec(i) for i in reversed(range(12))][::-1] == specs     # order and instance don't matter
    assert [s.family for s in specs] == ["low", "low", "high"] * 4
    assert len({s.overrides["terrain.seed"] for s in specs}) == 12            # every run its own terrain
    for s in specs:
        lo, hi = (0.0, 0.05) if s.family == "low" else (0.10, 0.2)
        assert lo <= s.overrides["terrain.rock_cfa"] <= hi
        assert s.scenario.terrain.rock_cfa == s.overrides["terrain.rock_cfa"]
        assert s.scenario.terrain.relief_rms_m == s.overrides["terrain.relief_rms_m"]
        assert s.scenario.terrain.seed == s.overrides["terrain.seed"]
        assert s.scenario.goal == c1.base.goal and s.scenario.start == c1.base.start
        if s.family == "high":
            assert s.scenario.mode == s.overrides["mode"] and s.scenario.planet == "mars"
    # the documented derivation, recomputed independently
    s7 = specs[7]
    h, u = _ref_u(5, 7, "terrain.rock_cfa")
    assert s7.overrides["terrain.rock_cfa"] == pytest.approx(0.0 + 0.05 * u, rel=1e-5)
    h, u = _ref_u(5, 7, "terrain.seed")
    assert s7.overrides["terrain.seed"] == h % 2**31
    # another seed changes the draws; the campaign seed can be overridden per call
    assert c1.run_spec(7, seed=6).overrides != s7.overrides
    assert c1.run_spec(7, seed=5) == s7


def test_adding_a_key_leaves_other_draws_unchanged(tmp_path):
    a = load_campaign(write(tmp_path, GOOD))
    b = load_campaign(write(tmp_path, GOOD.replace("      terrain.rock_cfa: {uniform: [0.0, 0.05]}",
                                                   "      terrain.rock_cfa: {uniform: [0.0, 0.05]}\n"
                                                   "      limits.max_time_s: {uniform: [100, 200]}"), "d.yaml"))
    for i in (0, 1, 3):
        oa, ob = a.run_spec(i).overrides, b.run_spec(i).overrides
        assert set(ob) - set(oa) == {"limits.max_time_s"}
        assert all(ob[k] == v for k, v in oa.items())


@given(seed=st.integers(0, 2**63 - 1), i=st.integers(0, 10**7),
       lo=st.floats(-1e6, 1e6), width=st.floats(0, 1e6), ilo=st.integers(-10**9, 10**9), iw=st.integers(0, 10**6))
def test_draws_stay_in_range(seed, i, lo, width, ilo, iw):
    hi = lo + width
    v = Draw("k", "uniform", (lo, hi)).sample(seed, i)
    assert lo <= v <= hi
    if lo > 0:
        v = Draw("k", "loguniform", (lo, hi)).sample(seed, i)
        assert lo <= v <= hi
    n = Draw("k", "randint", (ilo, ilo + iw)).sample(seed, i)
    assert ilo <= n <= ilo + iw and isinstance(n, int)
    assert Draw("k", "choice", ("a", "b", "c")).sample(seed, i) in ("a", "b", "c")
    assert Draw("k", "fixed", (3.5,)).sample(seed, i) == 3.5


def test_draw_distribution_is_uniform():
    """Chi-square of 4000 uniform draws in 10 bins vs scipy's critical value (alpha = 1e-4: not flaky)."""
    from scipy import stats

    d = Draw("terrain.rock_cfa", "uniform", (0.0, 1.0))
    v = np.array([d.sample(1, i) for i in range(4000)])
    counts, _ = np.histogram(v, bins=10, range=(0, 1))
    chi2 = ((counts - 400.0) ** 2 / 400.0).sum()
    assert chi2 < stats.chi2.ppf(1 - 1e-4, 9)
    r = np.array([Draw("s", "randint", (0, 4)).sample(2, i) for i in range(4000)])
    assert stats.chisquare(np.bincount(r, minlength=5)).pvalue > 1e-4


def test_scenario_yaml_round_trip(tmp_path):
    c = load_campaign("families")
    for i in range(len(c.turn)):
        sc = c.run_spec(i).scenario
        p = tmp_path / f"s{i}.yaml"
        p.write_text(scenario_to_yaml(sc))
        back = load_scenario(p)
        assert back == sc.__class__(**{**sc.__dict__, "source": str(p)})


# ----------------------------------------------------------------------------- Wilson interval
def test_wilson_hand_computed():
    # 8 of 10: p = 0.8, z = 1.959964, z^2/n = 0.384146; centre = (0.8 + 0.192073) / 1.384146 = 0.716740;
    # half = 1.959964 / 1.384146 * sqrt(0.016 + 0.0096037) = 0.226578  ->  [0.490162, 0.943318]
    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(0.490162, abs=2e-6) and hi == pytest.approx(0.943318, abs=2e-6)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    lo, hi = wilson_interval(200, 200)          # all succeed: upper bound exactly 1, lower = n / (n + z^2)
    assert hi == 1.0 and lo == pytest.approx(200 / (200 + 1.959963984540054 ** 2), rel=1e-12)
    assert wilson_interval(0, 5)[0] == 0.0
    with pytest.raises(ValueError, match="successes = 6"):
        wilson_interval(6, 5)
    with pytest.raises(ValueError, match="confidence"):
        wilson_interval(1, 5, confidence=1.0)


@pytest.mark.parametrize("k, n", [(0, 1), (1, 1), (0, 10), (3, 10), (10, 10), (49, 50), (196, 200), (200, 200),
                                  (1, 1000), (987, 1000)])
def test_wilson_matches_scipy(k, n):
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(ci.low, abs=1e-12) and hi == pytest.approx(ci.high, abs=1e-12)
    ci = binomtest(k, n).proportion_ci(confidence_level=0.9, method="wilson")
    assert wilson_interval(k, n, 0.9) == pytest.approx((ci.low, ci.high), abs=1e-12)


@given(n=st.integers(1, 5000), data=st.data())
def test_wilson_contains_estimate(n, data):
    k = data.draw(st.integers(0, n))
    lo, hi = wilson_interval(k, n)
    assert 0 <= lo <= k / n <= hi <= 1
    if 0 < k:
        lo2, _ = wilson_interval(k - 1, n)
        assert lo2 <= lo                       # monotone in successes


# ----------------------------------------------------------------------------- aggregation
def _summary(outcome="reached", hv=0, ratio=1.1, speed=100.0, moving=0.9, reason="", passed=None, **kw):
    s = dict.fromkeys(SUMMARY_KEYS)
    reached = outcome == "reached"
    s.update(outcome=outcome, reached=reached, hazard_violations=hv, path_ratio=ratio, speed_m_per_h=speed,
             moving_fraction=moving, reason=reason, loc_error_final_m=0.1, wall_time_s=1.0, faults=[],
             passed=(reached and hv == 0) if passed is None else passed, failed_criteria=[])
    s.update(kw)
    return s


def test_aggregate_hand_made(tmp_path):
    c = load_campaign(write(tmp_path, GOOD))
    recs = [
        {"index": 0, "family": "low", "overrides": {}, "summary": _summary(ratio=1.0, speed=90.0)},
        {"index": 1, "family": "low", "overrides": {}, "summary": _summary(ratio=1.2, speed=110.0),
         "margins_relaxed": True},
        {"index": 2, "family": "high", "overrides": {}, "summary": _summary("stuck", reason="wheels dug in")},
        {"index": 3, "family": "low", "overrides": {}, "summary": _summary(hv=2, ratio=1.4, speed=120.0),
         "margins_relaxed": True},
        {"index": 4, "family": "low", "overrides": {}, "summary": _summary(
            ratio=1.3, speed=100.0, faults=[{"kind": "slip", "at_s": 3.0, "survived": True},
                                            {"kind": "link_loss", "at_s": 9.0, "survived": False}])},
        {"index": 5, "family": "high", "overrides": {}, "summary": _summary("error", reason="RuntimeError: x",
                                                                            ratio=None, speed=None, moving=None)},
    ]
    a = aggregate(list(reversed(recs)), c, runs_requested=6)
    s = a["success"]
    assert (s["successes"], s["n"], s["rate"]) == (3, 6, 0.5)
    assert s["ci95"] == list(wilson_interval(3, 6))
    assert a["outcomes"] == {"reached": 4, "stuck": 1, "error": 1}
    assert list(a["failures"]) == ["error", "hazard_violations", "stuck"]      # by count, then name
    assert a["failures"]["stuck"] == {"count": 1, "runs": [2],
                                      "examples": [{"run": 2, "family": "high", "reason": "wheels dug in"}]}
    assert a["hazard_violations"] == {"total": 2, "runs": 1} and a["errors"] == 1
    assert a["faults"] == {"slip": {"injected": 1, "survived": 1}, "link_loss": {"injected": 1, "survived": 0}}
    pr = a["metrics"]["path_ratio"]                 # over the 4 reached runs (numpy as the percentile oracle)
    ref = [1.0, 1.2, 1.4, 1.3]
    assert pr["n"] == 4 and pr["over"] == "reached"
    for q in (5, 25, 50, 75, 95):
        assert pr[f"p{q}"] == pytest.approx(np.percentile(ref, q), abs=1e-12)
    assert pr["mean"] == pytest.approx(np.mean(ref)) and (pr["min"], pr["max"]) == (1.0, 1.4)
    assert a["metrics"]["loc_error_final_m"]["n"] == 5                         # all but the error run
    low = a["families"]["low"]
    assert (low["n"], low["successes"], low["rate"]) == (4, 3, 0.75)
    assert low["ci95"] == list(wilson_interval(3, 4))
    assert low["path_ratio_p50"] == pytest.approx(np.percentile(ref, 50))
    assert a["families"]["high"]["outcomes"] == {"stuck": 1, "error": 1}
    checks = {ch["name"]: ch["ok"] for ch in a["checks"]}
    assert checks == {"complete": True, "success_rate": True, "hazard_violations": True, "error_runs": False}
    assert a["passed"] is False and a["failed_criteria"] == ["error_runs"]
    # other success definitions
    c2 = load_campaign(write(tmp_path, GOOD.replace("  min_success_rate: 0.5",
                                                    "  success: reached\n  rate_bound: wilson_lower\n"
                                                    "  min_success_rate: 0.5\n  max_error_runs: 1\n"
                                                    "  max_path_ratio_p50: 1.2"), "d.yaml"))
    a2 = aggregate(recs, c2)
    assert a2["success"]["successes"] == 4
    ch = {c["name"]: c for c in a2["checks"]}
    assert ch["success_rate_wilson_lower"]["value"] == pytest.approx(wilson_interval(4, 6)[0])
    assert not ch["success_rate_wilson_lower"]["ok"] and not ch["path_ratio_p50"]["ok"]
    # interrupted / incomplete campaigns do not pass
    recs_ok = [r for r in recs if r["index"] in (0, 1)]
    assert aggregate(recs_ok, c, runs_requested=2)["passed"]
    assert not aggregate(recs_ok, c, runs_requested=5)["passed"]
    assert not aggregate(recs_ok, c, runs_requested=2, interrupted=True)["passed"]
    assert not aggregate([], c, runs_requested=2)["passed"]
    text = format_report(a)
    assert "3/6 = 50.0 %" in text and "FAILED: error_runs" in text and "stuck" in text
    assert "link_loss 0/1, slip 1/1" in text
    assert a["margins_relaxed"] == {"runs": 2, "successes": 1}
    assert ("margins relaxed (goal unreachable within the planning margins, every arc failing, or the straight "
            "route driven wander_relax_ratio times over) in 2 run(s), 1 of them successful") in text


# ----------------------------------------------------------------------------- execution
class _Relaxing:
    """A TraverseSummary stand-in whose executive relaxed its margins on odd terrain seeds."""

    def __init__(self, d, relaxed):
        self._d, self.executive = d, {"margins_relaxed": relaxed}

    def to_dict(self):
        return self._d.to_dict()


def _relaxing_runner(scenario, **kw):
    return _Relaxing(fake_runner(scenario, **kw), bool(scenario.terrain.seed % 2))


def test_runs_that_relaxed_their_margins_are_recorded_and_counted(tmp_path):
    res = run_campaign(write(tmp_path, GOOD), runs=8, workers=1, runner=_relaxing_runner)
    seeds = [r["overrides"]["terrain.seed"] for r in res.records]
    assert [bool(r.get("margins_relaxed")) for r in res.records] == [bool(s % 2) for s in seeds]
    assert res.aggregate["margins_relaxed"]["runs"] == sum(s % 2 for s in seeds)


def test_in_process_run_writes_everything(tmp_path):
    seen = []
    res = run_campaign(write(tmp_path, GOOD), runs=9, workers=1, runner=fake_runner, out_dir=tmp_path / "out",
                       progress=lambda d, t, r: seen.append((d, t, r["index"])))
    assert [s[:2] for s in seen] == [(i + 1, 9) for i in range(9)]
    assert [r["index"] for r in res.records] == list(range(9))
    lines = (tmp_path / "out" / "results.jsonl").read_text().splitlines()
    assert [json.loads(x) for x in lines] == res.records
    for r in res.records:
        assert set(SUMMARY_KEYS) <= set(r["summary"]) and r["summary"]["outcome"] in OUTCOMES
        assert r["summary"]["seed"] == r["overrides"]["terrain.seed"]
    agg = json.loads((tmp_path / "out" / "campaign.json").read_text())
    assert agg["runs_done"] == 9 and agg["timing"]["backend"] == "in-process"
    assert agg["success"]["successes"] == sum(r["summary"]["outcome"] == "reached"
                                              and not r["summary"]["hazard_violations"] for r in res.records)
    for name in ("success_by_family", "hist_speed_m_per_h", "hist_path_ratio"):
        img = cv2.imread(str(tmp_path / "out" / f"{name}.png"))
        assert img is not None and img.shape[0] > 200 and img.shape[1] >= 400 and img.std() > 10
    assert "Wilson 95 %" in (tmp_path / "out" / "report.txt").read_text()
    assert res.paths["campaign"] == tmp_path / "out" / "campaign.json"


def test_pool_equals_serial_and_errors_are_records(tmp_path):
    text = GOOD + textwrap.dedent("""\
        # (appended) a family whose every run raises in the fake traverse
        """)
    text = text.replace("pass_criteria:", "  - name: broken\n    vary:\n      limits.max_time_s: 13\npass_criteria:")
    c = load_campaign(write(tmp_path, text))
    serial = run_campaign(c, runs=10, workers=1, runner=fake_runner)
    pool = run_campaign(c, runs=10, workers=2, runner=RUNNER, out_dir=tmp_path / "pool")
    assert pool.aggregate["timing"]["backend"] == "local" and pool.aggregate["timing"]["workers"] == 2
    assert [{k: v for k, v in r.items() if k != "traceback"} for r in pool.records] == \
           [{k: v for k, v in r.items() if k != "traceback"} for r in serial.records]
    assert strip_timing(pool.aggregate) == strip_timing(serial.aggregate)
    broken = [r for r in pool.records if r["family"] == "broken"]
    assert len(broken) == 2 and all(r["summary"]["outcome"] == "error" for r in broken)
    assert "RuntimeError: boom" in broken[0]["summary"]["reason"] and "fake_runner" in broken[0]["traceback"]
    assert set(SUMMARY_KEYS) <= set(broken[0]["summary"])
    assert pool.aggregate["errors"] == 2 and "error_runs" in pool.aggregate["failed_criteria"]
    assert pool.aggregate["failures"]["error"]["runs"] == [r["index"] for r in broken]
    assert len((tmp_path / "pool" / "results.jsonl").read_text().splitlines()) == 10


def test_ctrl_c_keeps_the_partial_aggregate(tmp_path):
    def interrupt_after_3(done, total, rec):
        if done == 3:
            raise KeyboardInterrupt

    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        res = run_campaign(write(tmp_path, GOOD), runs=40, workers=workers, runner=RUNNER, out_dir=out,
                           progress=interrupt_after_3, plots=False)
        assert res.interrupted and not res.passed and len(res.records) == 3
        agg = json.loads((out / "campaign.json").read_text())
        assert agg["interrupted"] and agg["runs_done"] == 3 and agg["runs_requested"] == 40
        assert "complete" in agg["failed_criteria"]
        assert len((out / "results.jsonl").read_text().splitlines()) == 3


def test_invalid_draws_are_redrawn(tmp_path):
    text = GOOD.replace("pass_criteria:", "  - name: redraw\n    vary:\n      limits.max_time_s: 17\n"
                                          "  - name: stuck_seed\n    vary:\n      limits.max_time_s: 17\n"
                                          "      terrain.seed: 4\npass_criteria:")
    c = load_campaign(write(tmp_path, text))
    res = run_campaign(c, runs=40, workers=2, runner=RUNNER)
    assert res.records == run_campaign(c, runs=40, workers=1, runner=fake_runner).records
    redrawn = [r for r in res.records if r["family"] == "redraw"]
    assert len(redrawn) == 8 and any(r["redraws"] for r in redrawn)
    for r in redrawn:
        k = r["redraws"]
        assert r["overrides"] == c.run_spec(r["index"], attempt=k).overrides     # the attempt that ran
        assert r["overrides"]["terrain.relief_rms_m"] == c.run_spec(r["index"]).overrides["terrain.relief_rms_m"]
        assert len(r.get("redraw_reasons", [])) == k and all("on a hazard" in x for x in r.get("redraw_reasons", []))
        if r["summary"]["outcome"] != "error":
            assert r["summary"]["seed"] % 2 == 1
        else:
            assert k == 4 and "no valid scenario in 5 terrain draw(s)" in r["summary"]["reason"]
    for r in (r for r in res.records if r["family"] == "stuck_seed"):       # a fixed seed can't be redrawn
        assert r["redraws"] == 0 and "no valid scenario in 1 terrain draw(s)" in r["summary"]["reason"]
    others = [r for r in res.records if r["family"] in ("low", "high")]
    assert all(r["redraws"] == 0 and "redraw_reasons" not in r for r in others)
    rd = res.aggregate["redraws"]
    assert rd["runs"] == sum(1 for r in redrawn if r["redraws"]) and rd["total"] == sum(r["redraws"] for r in redrawn)
    assert "terrain redrawn for" in format_report(res.aggregate)
    i = next(r["index"] for r in redrawn if r["redraws"])
    one = run_one(c, i, out_dir=tmp_path / "one", runner=fake_runner)
    assert one == res.records[i]
    assert load_scenario(tmp_path / "one" / "scenario.yaml").terrain.seed == one["overrides"]["terrain.seed"]


def test_run_outputs_and_run_one(tmp_path):
    c = load_campaign(write(tmp_path, GOOD))
    res = run_campaign(c, runs=3, workers=1, runner=fake_runner, out_dir=tmp_path / "o", run_outputs=True)
    for i in range(3):
        assert json.loads((tmp_path / "o" / "runs" / f"{i:05d}" / "summary.json").read_text()) == \
            res.records[i]["summary"]
    rec = run_one(c, 2, out_dir=tmp_path / "one", runner=fake_runner)
    assert rec == res.records[2]                                   # alone = as in the campaign
    sc = load_scenario(tmp_path / "one" / "scenario.yaml")
    assert sc.terrain == c.run_spec(2).scenario.terrain and sc.mode == c.run_spec(2).scenario.mode
    run = json.loads((tmp_path / "one" / "run.json").read_text())
    assert run["index"] == 2 and run["overrides"] == res.records[2]["overrides"]
    assert (tmp_path / "one" / "summary.json").exists()


def test_bad_arguments(tmp_path):
    c = load_campaign(write(tmp_path, GOOD))
    with pytest.raises(ValueError, match="runs = 0"):
        run_campaign(c, runs=0, runner=fake_runner)
    with pytest.raises(ValueError, match="workers = 0"):
        run_campaign(c, runs=2, workers=0, runner=fake_runner)
    with pytest.raises(ValueError, match="cluster"):
        run_campaign(c, runs=2, cluster="localhost", runner=fake_runner)
    with pytest.raises(ImportError, match="no_such_module"):
        run_campaign(c, runs=2, runner="no_such_module:f")
    with pytest.raises(ValueError, match="run index"):
        c.run_spec(-1)


def test_missing_dask_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(ImportError, match=r"rovernav\[cluster\]"):
        run_campaign(write(tmp_path, GOOD), runs=2, cluster="tcp://127.0.0.1:1", runner=fake_runner)


def test_dask_local_cluster_equals_local_pool(tmp_path):
    distributed = pytest.importorskip("distributed", reason="Dask is the optional rovernav[cluster] extra")
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])    # workers needn't import this test file
    c = load_campaign(write(tmp_path, GOOD))
    local = run_campaign(c, runs=8, workers=2, runner=RUNNER)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=40) as cluster:
        res = run_campaign(c, runs=8, cluster=cluster.scheduler_address, runner=fake_runner,
                           out_dir=tmp_path / "dask")
    assert res.aggregate["timing"]["backend"] == "dask" and res.aggregate["timing"]["workers"] == 2
    assert res.records == local.records
    assert strip_timing(res.aggregate) == strip_timing(local.aggregate)
    assert json.loads((tmp_path / "dask" / "campaign.json").read_text())["runs_done"] == 8


# ----------------------------------------------------------------------------- CLI
@pytest.fixture
def cli(monkeypatch, capsys):
    import hil.cli

    if "hil.cmd_campaign" not in hil.cli._COMMAND_MODULES:     # until the lead registers it
        monkeypatch.setattr(hil.cli, "_COMMAND_MODULES", hil.cli._COMMAND_MODULES + ("hil.cmd_campaign",))

    def run(*argv):
        code = hil.cli.main(["campaign", *map(str, argv)])
        out, err = capsys.readouterr()
        return code, out, err
    return run


def test_cli_campaign(tmp_path, cli):
    p = write(tmp_path, GOOD)
    code, out, err = cli(p, "--runs", 6, "--workers", 1, "--runner", RUNNER, "--out", tmp_path / "o")
    agg = json.loads((tmp_path / "o" / "campaign.json").read_text())
    assert code == (0 if agg["passed"] else 1)
    assert "campaign t: 6/6 runs (seed 5)" in out and "Wilson 95 %" in out and str(tmp_path / "o") in out
    assert "6/6 runs" in err                                      # plain progress lines (not a TTY)
    # a strict criterion fails the campaign: exit 1, and the failure's re-run command is printed
    strict = write(tmp_path, GOOD.replace("planet: mars", "limits.max_time_s: 13"), "s.yaml")   # "high" raises
    code, out, err = cli(strict, "--runs", 6, "--workers", 1, "--runner", RUNNER, "--out", tmp_path / "s")
    assert code == 1 and "FAILED: error_runs" in out and f"{strict} --only 2 --out" in out
    assert "run 2 (high): error - RuntimeError: boom" in err
    # --only re-runs one run with its exact scenario; --dry-run lists draws
    code, out, err = cli(p, "--only", 4, "--runner", RUNNER, "--out", tmp_path / "o")
    assert code in (0, 1) and (tmp_path / "o" / "run_00004" / "scenario.yaml").exists()
    assert "family low" in out and "terrain.rock_cfa" in out
    code, out, err = cli(p, "--dry-run", "--runs", 3)
    assert code == 0 and len(out.splitlines()) == 3 and "high" in out.splitlines()[2]


@pytest.mark.parametrize("argv, msg", [
    (["nowhere_campaign"], "no campaign config named"),
    (["{p}", "--runs", "0"], "--runs 0"),
    (["{p}", "--workers", "0"], "--workers 0"),
    (["{p}", "--cluster", "localhost:8786"], "tcp://"),
    (["{p}", "--runner", "nocolon"], "MODULE:FUNCTION"),
    (["{p}", "--runner", "no_such_mod:f", "--runs", "2", "--out", "{tmp}/x"], "cannot load the traverse runner"),
])
def test_cli_bad_input_exits_2(tmp_path, cli, argv, msg):
    p = write(tmp_path, GOOD)
    code, out, err = cli(*[a.format(p=p, tmp=tmp_path) for a in argv])
    assert code == 2 and msg in err


def test_progress_bar_modes():
    import io

    from hil.cmd_campaign import Progress

    t = [0.0]
    ok = {"index": 0, "family": "f", "summary": _summary()}
    bad = {"index": 1, "family": "f", "summary": _summary("stuck", reason="dug in")}
    s = io.StringIO()
    bar = Progress(40, s, tty=False, clock=lambda: t[0])
    for i in range(40):
        t[0] += 2.0
        bar(i + 1, 40, bad if i == 5 else ok)
    lines = s.getvalue().splitlines()
    assert "run 1 (f): stuck - dug in" in lines
    assert sum("runs" in ln for ln in lines) == 21 and lines[-1].startswith("40/40 runs  ok 39  failed 1")
    s = io.StringIO()
    bar = Progress(4, s, tty=True, clock=lambda: t[0])
    t[0] += 2.0
    bar(1, 4, ok)
    assert "\r" in s.getvalue() and "ETA 6s" in s.getvalue() and "\n" not in s.getvalue()
    bar.close()
    assert s.getvalue().endswith("\n")


# ----------------------------------------------------------------------------- the real traverse
def test_real_traverse_campaign(tmp_path):
    pytest.importorskip("hil.traverse", reason="hil.traverse (issue 6, helper A) is not importable yet")
    res = run_campaign("quick", runs=2, workers=1, out_dir=tmp_path / "real")
    assert res.aggregate["runs_done"] == 2
    for r in res.records:
        s = r["summary"]
        assert set(SUMMARY_KEYS) <= set(s), set(SUMMARY_KEYS) - set(s)
        assert s["outcome"] in OUTCOMES and s["outcome"] != "error", s.get("reason")
        assert s["seed"] == r["overrides"]["terrain.seed"] and math.isfinite(s["distance_m"])
