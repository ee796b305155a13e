"""Tests of hil.traverse (run_traverse), hil.perception_fast, hil.traverse_report and ``rover traverse``.

Scenarios run as tests on the in-process simulator with fast perception. Oracles: the simulator's truth
(hazard violations are counted against nav.traversability of the TRUE terrain, the oracle path is Field D*
on it), the summary contract (SUMMARY_KEYS, the outcome set), readers independent of the writers
(json, cv2.imread, hil.mcaplog.read_log), and determinism (same seed -> same summary).
Longer scenarios (mars_50m, 50 m with an orbital prior) are marked ``slow``.
"""
from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

import nav
from hil.scenario import FaultSpec, load_scenario
from hil.traverse import OUTCOMES, SUMMARY_KEYS, TimingModel, build_traverse, run_traverse

_SKIP_TIMES = ("wall_time_s",)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("quick")
    return run_traverse(load_scenario("quick"), out_dir=out), out


def _same(a: dict, b: dict) -> bool:
    return {k: v for k, v in a.items() if k not in _SKIP_TIMES} == {k: v for k, v in b.items() if k not in _SKIP_TIMES}


# ----------------------------------------------------------------------------- quick.yaml
def test_quick_reaches_the_goal_safely(quick_run):
    s, _ = quick_run
    assert s.outcome == "reached" and s.reached and s.passed, (s.reason, s.failed_criteria)
    assert s.hazard_violations == 0
    assert s.path_ratio is not None and s.path_ratio <= 1.5
    assert s.oracle_length_m > 9.0                # 10 m apart (the rover stops within 0.5 m)
    assert 9.0 < s.distance_m < 15.0 and s.path_length_m == s.distance_m
    assert s.speed_m_per_h == pytest.approx(s.distance_m / s.time_s * 3600.0)
    assert 0.5 < s.moving_fraction <= 1.0
    assert s.loc_error_final_m is not None and s.loc_error_final_m < 0.5
    assert s.min_clearance_m > 0 and 0 <= s.max_tilt_deg < 25
    assert s.vo_convergence is None and s.faults == []


def test_summary_json_matches_the_contract(quick_run):
    s, out = quick_run
    d = json.loads((out / "summary.json").read_text())
    assert tuple(d) == SUMMARY_KEYS
    assert d == json.loads(json.dumps(s.to_dict()))
    assert d["outcome"] in OUTCOMES and isinstance(d["reached"], bool) and isinstance(d["passed"], bool)
    assert d["scenario"] == "quick" and d["seed"] == 3 and d["backend"] == "sim"
    assert d["perception"] == "fast" and d["mode"] == "drive_while_planning"
    for k in ("distance_m", "time_s", "speed_m_per_h", "moving_fraction", "path_length_m", "oracle_length_m",
              "path_ratio", "min_clearance_m", "max_tilt_deg", "loc_error_final_m", "loc_error_max_m",
              "wall_time_s"):
        assert isinstance(d[k], float) and math.isfinite(d[k]), k
    assert isinstance(d["hazard_violations"], int) and isinstance(d["failed_criteria"], list)


def test_png_decodes(quick_run):
    _, out = quick_run
    img = cv2.imread(str(out / "traverse.png"))
    assert img is not None and img.ndim == 3 and min(img.shape[:2]) > 500


def test_mcap_log_is_readable_with_the_expected_topics(quick_run):
    from hil.mcaplog import McapReader

    s, out = quick_run
    with McapReader(out / "traverse.mcap") as r:
        assert r.complete
        topics = r.topics()
        meta = r.traverse_metadata
        msgs = list(r.messages(["/traverse/summary", "/events", "/path/driven", "/map/known"]))
    for t in ("/telemetry", "/cmd", "/pose/true", "/pose/estimated", "/tf", "/path/planned", "/path/oracle",
              "/path/driven", "/path/estimated", "/scene/arcs", "/map/known", "/events", "/traverse/summary"):
        assert t in topics, (t, sorted(topics))
    assert meta["scenario"] == "quick"
    summ = [m.msg for m in msgs if m.topic == "/traverse/summary"]
    summ = [getattr(m, "data", m) for m in summ]
    assert len(summ) == 1 and summ[0]["outcome"] == "reached"
    kinds = {m.msg.kind for m in msgs if m.topic == "/events"}
    assert "reached" in kinds and "goal_reached" in kinds
    driven = [m.msg for m in msgs if m.topic == "/path/driven"][0]
    assert len(driven.xy) > 100


def test_same_seed_same_summary(quick_run):
    s, _ = quick_run
    again = run_traverse(load_scenario("quick"), out_dir=None)
    assert _same(s.to_dict(), again.to_dict())


# ----------------------------------------------------------------------------- modes, faults, goals
def test_stop_and_go_is_slower_than_drive_while_planning(quick_run):
    fast, _ = quick_run
    sg = run_traverse(load_scenario("stop_and_go"), out_dir=None)
    assert sg.mode == "stop_and_go" and sg.outcome == "reached" and sg.hazard_violations == 0, sg.reason
    assert sg.speed_m_per_h < 0.8 * fast.speed_m_per_h
    assert sg.moving_fraction < fast.moving_fraction


def test_estop_pauses_and_resumes():
    sc = load_scenario("quick").with_overrides(faults=(FaultSpec(at_s=10.0, kind="estop", duration_s=2.0),))
    s = run_traverse(sc, out_dir=None)
    assert s.outcome == "reached" and s.passed, s.reason
    assert s.faults == [{"kind": "estop", "at_s": 10.0, "survived": True}]
    assert s.executive["pauses"] == 1


def test_estop_without_resume_ends_the_traverse():
    sc = load_scenario("quick").with_overrides(faults=(FaultSpec(at_s=5.0, kind="estop", duration_s=2.0),),
                                               resume_after_fault=False)
    s = run_traverse(sc, out_dir=None)
    assert s.outcome == "fault" and "estop" in s.reason and not s.passed
    assert 5.0 <= s.time_s < 6.0
    assert s.faults[0]["survived"] is False


def test_scheduled_faults_scenario(tmp_path):
    s = run_traverse(load_scenario("quick_faults"), out_dir=tmp_path, png=False)
    assert s.outcome == "reached" and s.passed, (s.reason, s.failed_criteria)
    assert [f["kind"] for f in s.faults] == ["estop", "link_loss", "slip"]
    assert all(f["survived"] for f in s.faults)
    from hil.mcaplog import read_log

    kinds = [m.msg.kind for m in read_log(tmp_path / "traverse.mcap", "/events")]
    assert kinds.count("fault_start") == 3 and "pause" in kinds and "resume" in kinds


def test_waypoints_in_order_and_keep_out():
    sc = load_scenario("waypoints")
    s = run_traverse(sc, out_dir=None)
    assert s.outcome == "reached" and s.passed, (s.reason, s.failed_criteria)
    assert "2 waypoints" in s.reason


def test_unreachable_goal_stops_with_the_reason(tmp_path):
    s = run_traverse(load_scenario("unreachable"), out_dir=tmp_path)
    assert s.outcome == "unreachable" and not s.reached
    assert "keep-out zone" in s.reason and "around the goal" in s.reason
    assert s.passed                                # the scenario expects the goal not to be reached
    assert s.time_s < 10.0 and s.distance_m < 1.0    # it said so at once, it did not wander
    assert cv2.imread(str(tmp_path / "unreachable.png")) is not None
    proof = np.load(tmp_path / "unreachable_costmap.npz")
    assert (~np.isfinite(proof["cost"])).any()


def test_goal_on_a_true_hazard_is_a_config_error():
    from hil.scenario import StartPose
    from sim.terrain import generate_terrain

    sc = load_scenario("quick")
    t = sc.terrain
    # without start/goal pads the terrain does not depend on where they are
    cm = nav.traversability(generate_terrain(t.preset, size_m=t.size_m, cell_size_m=t.cell_size_m, seed=t.seed,
                                             rock_cfa=t.rock_cfa).terrain, nav.load_rover(sc.rover))
    free = np.argwhere(np.isfinite(cm.cost))
    sx, sy = cm.terrain.cell_to_world(free[len(free) // 2])
    sc = sc.with_overrides(terrain__clear_radius_m=0.0, start=StartPose(x_m=float(sx), y_m=float(sy)))
    own = (cm.reason & 7) != 0                     # lethal in its own right (slope, step, roughness)
    rr, cc = np.nonzero(own)
    i = int(np.argmin(np.hypot(rr - 200, cc - 300)))
    x, y = cm.terrain.cell_to_world((rr[i], cc[i]))
    bad = sc.with_overrides(goal=sc.goal.__class__(x_m=float(x), y_m=float(y), tolerance_m=0.5))
    with pytest.raises(nav.ConfigError, match=r"goal .*hazard of the true terrain.*(step|slope|roughness)"):
        build_traverse(bad)


def test_a_start_closer_to_a_hazard_than_the_cameras_see_is_a_config_error():
    """The rover drives over the ground within the cameras' blind distance before it can see it, so the
    true terrain must be clear that far around the start (checked with a brute-force distance to the
    lethal cells)."""
    from hil.scenario import StartPose
    from hil.traverse import start_clear_m
    from nav.executive import blind_distance_m
    from sim.terrain import generate_terrain

    sc = load_scenario("quick")
    t = sc.terrain
    prof = nav.load_rover(sc.rover)
    assert start_clear_m(prof) == pytest.approx(blind_distance_m(prof)) and 0.5 < start_clear_m(prof) < 1.2
    cm = nav.traversability(generate_terrain(t.preset, size_m=t.size_m, cell_size_m=t.cell_size_m, seed=t.seed,
                                             rock_cfa=t.rock_cfa).terrain, nav.load_rover(sc.rover))
    lethal = np.argwhere(~np.isfinite(cm.cost)) * cm.cell_size_m
    free = np.argwhere(np.isfinite(cm.cost))
    rng = np.random.default_rng(3)
    found = {}
    for i in rng.permutation(len(free))[:4000]:
        r, c = free[i]
        if not (40 <= r < cm.shape[0] - 40 and 40 <= c < cm.shape[1] - 40):
            continue
        d = float(np.hypot(*(lethal - (r * cm.cell_size_m, c * cm.cell_size_m)).T).min())
        if 0.3 < d < start_clear_m(prof) - 0.1:
            found.setdefault("near", (r, c))
        elif d > start_clear_m(prof) + 0.1:
            found.setdefault("far", (r, c))
        if len(found) == 2:
            break
    assert len(found) == 2
    for kind, rc in found.items():
        x, y = cm.terrain.cell_to_world(rc)
        s2 = sc.with_overrides(terrain__clear_radius_m=0.0, start=StartPose(x_m=float(x), y_m=float(y)),
                               goal=sc.goal.__class__(x_m=float(x) + 0.1, y_m=float(y), tolerance_m=0.5))
        if kind == "near":
            with pytest.raises(nav.ConfigError, match=r"start .*lies within 0\.\d\d m of a hazard.*cameras can see"):
                build_traverse(s2)
        else:
            build_traverse(s2)


def test_interrupt_stops_and_writes_the_summary(tmp_path):
    calls = []

    def progress(text):
        calls.append(text)
        if len(calls) == 2:
            raise KeyboardInterrupt

    s = run_traverse(load_scenario("quick"), out_dir=tmp_path, png=False, progress=progress)
    assert s.outcome == "error" and s.reason == "interrupted" and not s.passed
    assert json.loads((tmp_path / "summary.json").read_text())["reason"] == "interrupted"
    from hil.mcaplog import McapReader

    with McapReader(tmp_path / "traverse.mcap") as r:
        assert r.complete


def test_time_and_distance_limits():
    s = run_traverse(load_scenario("quick").with_overrides(limits__max_time_s=5.0), out_dir=None)
    assert s.outcome == "timeout" and "max_time_s 5" in s.reason and not s.passed
    assert 5.0 < s.time_s <= 5.2
    s = run_traverse(load_scenario("quick").with_overrides(limits__max_distance_factor=1.01,
                                                           goal=load_scenario("quick").goal.__class__(
                                                               x_m=15.0, y_m=10.0, tolerance_m=0.05)), out_dir=None)
    assert s.outcome == "distance_limit" and "max_distance_factor 1.01" in s.reason, s.reason
    sc = load_scenario("quick")
    straight = math.hypot(sc.goal.x_m - sc.start.x_m, sc.goal.y_m - sc.start.y_m)
    assert 1.01 * straight < s.distance_m < 1.01 * straight + 0.1


def test_timing_model_validation():
    with pytest.raises(ValueError, match="plan_s"):
        TimingModel(plan_s=-1.0)
    with pytest.raises(ValueError, match="control_hz"):
        TimingModel(control_hz=0.5)


def test_unknown_backend_is_a_cli_error():
    from hil.cli import CliError

    with pytest.raises(CliError, match="backend"):
        run_traverse(load_scenario("quick"), backend="warp", out_dir=None)


# ----------------------------------------------------------------------------- the CLI
@pytest.fixture
def cli_main(monkeypatch):
    import hil.cli as cli

    if "hil.cmd_traverse" not in cli._COMMAND_MODULES:
        monkeypatch.setattr(cli, "_COMMAND_MODULES", cli._COMMAND_MODULES + ("hil.cmd_traverse",))
    return cli.main


def test_cli_traverse_quick(cli_main, tmp_path, capsys):
    rc = cli_main(["traverse", "quick", "--out", str(tmp_path / "q"), "--no-log", "--no-png", "-q"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "PASSED: reached" in out and f"report: {tmp_path / 'q' / 'summary.json'}" in out
    assert json.loads((tmp_path / "q" / "summary.json").read_text())["passed"] is True


def test_cli_bad_input_exits_2(cli_main, tmp_path, capsys):
    assert cli_main(["traverse", "no_such_scenario", "--out", str(tmp_path / "x")]) == 2
    assert cli_main(["traverse", "quick", "--backend", "serial", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "no_such_scenario" in err and "--port" in err


def test_cli_failed_traverse_exits_1(cli_main, tmp_path, capsys):
    rc = cli_main(["traverse", "unreachable", "--out", str(tmp_path / "u"), "--no-log", "--no-png", "-q"])
    assert rc == 0           # its criteria expect the goal not to be reached
    sc = load_scenario("unreachable")
    p = tmp_path / "u.yaml"
    text = open(sc.source, encoding="utf-8").read().replace("reach_goal: false", "reach_goal: true")
    p.write_text(text)
    rc = cli_main(["traverse", str(p), "--out", str(tmp_path / "u2"), "--no-log", "--no-png", "-q"])
    out = capsys.readouterr().out
    assert rc == 1 and "FAILED: unreachable" in out


# ----------------------------------------------------------------------------- long scenarios
@pytest.mark.slow
def test_mars_50m_drive_while_planning():
    s = run_traverse(load_scenario("mars_50m"), out_dir=None, log=False, png=False)
    assert s.mode == "drive_while_planning"
    assert s.outcome == "reached" and s.hazard_violations == 0, (s.reason, s.failed_criteria)
    assert s.path_ratio <= 1.25 and s.moving_fraction >= 0.8 and s.passed


@pytest.mark.slow
def test_mars_50m_stop_and_go():
    s = run_traverse(load_scenario("mars_50m").with_overrides(mode="stop_and_go"), out_dir=None, log=False,
                     png=False)
    assert s.outcome == "reached", s.reason
    # routes keep off the rim of the hazards (ExecParams.clearance_cost), a few percent longer than the
    # oracle's, which grazes them: seed 1 drives 1.27x (the goal is on the campaign's median, 1.23);
    # a wander would be far longer
    assert s.path_ratio <= 1.35 and s.moving_fraction < 0.85
    # seed 1 in stop-and-go passes 0.25 m from a step of 0.15 m (the limit itself) once or not at all as
    # the map's details change (with the near map's step check it does, once); the campaign measures
    # safety, this guards against a rover that stops caring
    assert s.hazard_violations <= 1, s.failed_criteria
