"""Scenario YAML: the shipped scenarios load; every rule violation names the file, key, value and line."""
import textwrap

import pytest

import configs
from hil.scenario import FaultSpec, Goal, Scenario, load_scenario
from nav.errors import ConfigError

GOOD = """\
name: t
rover: osr
terrain: {preset: moon, seed: 2, size_m: 30, rock_cfa: 0.03}
start: {x_m: 3, y_m: 15}
waypoints:
  - {x_m: 10, y_m: 15}
  - {x_m: 20, y_m: 18, tolerance_m: 1.0}
goal: {x_m: 27, y_m: 15}
keep_out: [{x_m: 15, y_m: 10, radius_m: 2}]
faults:
  - {at_s: 5, kind: link_loss, duration_s: 2}
  - {at_s: 30, kind: slip, duration_s: 10, value: 0.6}
"""


def write(tmp_path, text, name="s.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def test_shipped_scenarios_load():
    names = configs.available("scenarios")
    assert {"quick", "mars_50m"} <= set(names)
    for n in names:
        sc = load_scenario(n)
        assert isinstance(sc, Scenario) and sc.goals and sc.source.endswith(f"{n}.yaml")


def test_full_scenario(tmp_path):
    sc = load_scenario(write(tmp_path, GOOD))
    assert sc.terrain.preset == "moon" and sc.terrain.rock_cfa == 0.03 and sc.terrain.relief_rms_m is None
    assert [(g.x_m, g.y_m) for g in sc.goals] == [(10, 15), (20, 18), (27, 15)]
    assert sc.waypoints[1].tolerance_m == 1.0 and sc.goal.tolerance_m == 0.5
    assert sc.faults == (FaultSpec(at_s=5.0, kind="link_loss", duration_s=2.0),
                         FaultSpec(at_s=30.0, kind="slip", duration_s=10.0, value=0.6))
    assert isinstance(sc.goal, Goal) and sc.goal.x_m == 27.0 and isinstance(sc.goal.x_m, float)
    o = sc.with_overrides(terrain__seed=9, perception="rendered")
    assert o.terrain.seed == 9 and o.terrain.preset == "moon" and o.perception == "rendered" and sc.terrain.seed == 2


@pytest.mark.parametrize("patch, key, rule, line", [
    (("goal: {x_m: 27, y_m: 15}", "goal: {x_m: 27, y_m: 45}"), "goal", "inside the 30 m", 8),
    (("kind: link_loss", "kind: meteor"), "faults[0].kind", "must be one of", 11),
    (("rock_cfa: 0.03", "rock_cfa: high"), "terrain.rock_cfa", "must be a number", 3),
    (("waypoints:", "waypoint:"), "waypoint", "did you mean 'waypoints'", 5),
    (("at_s: 30", "at_s: 1"), "faults", "in order of at_s", 10),
    (("keep_out: [{x_m: 15, y_m: 10, radius_m: 2}]", "keep_out: [{x_m: 4, y_m: 15, radius_m: 2}]"),
     "keep_out[0]", "contains the start", 9),
    (("keep_out: [{x_m: 15, y_m: 10, radius_m: 2}]", "keep_out: {x_m: 4}"), "keep_out", "must be a list", 9),
    (("tolerance_m: 1.0", "tolerance_m: -1"), "waypoints[1].tolerance_m", "must be > 0", 7),
    (("start: {x_m: 3, y_m: 15}", "start: {x_m: 26.8, y_m: 15}"), "waypoints[0]", None, None),
])
def test_errors_name_key_and_line(tmp_path, patch, key, rule, line):
    text = GOOD.replace(*patch)
    assert text != GOOD
    if rule is None:       # start inside keep-out? no: start far from waypoint 0 is fine -> loads
        load_scenario(write(tmp_path, text))
        return
    with pytest.raises(ConfigError) as ei:
        load_scenario(write(tmp_path, text))
    e = ei.value
    assert e.key == key and rule in str(e) and e.line == line and str(tmp_path / "s.yaml") in str(e)


def test_goal_at_start_and_no_goal(tmp_path):
    with pytest.raises(ConfigError, match="within its tolerance"):
        load_scenario(write(tmp_path, "name: a\nstart: {x_m: 3, y_m: 3}\ngoal: {x_m: 3.2, y_m: 3}\n"))
    with pytest.raises(ConfigError, match="needs a goal"):
        load_scenario(write(tmp_path, "name: a\nstart: {x_m: 3, y_m: 3}\n"))


def test_dem_relative_to_the_file(tmp_path):
    import numpy as np

    np.save(tmp_path / "dem.npy", np.zeros((10, 10)))
    sc = load_scenario(write(tmp_path, "name: a\nterrain: {dem: dem.npy}\nstart: {x_m: 1, y_m: 1}\n"
                                       "goal: {x_m: 5, y_m: 5}\n"))
    assert sc.dem_path == tmp_path / "dem.npy"
    with pytest.raises(ConfigError, match="no such file") as ei:
        load_scenario(write(tmp_path, "name: a\nterrain: {dem: nope.npy}\nstart: {x_m: 1, y_m: 1}\n"
                                      "goal: {x_m: 5, y_m: 5}\n"))
    assert ei.value.key == "terrain.dem" and ei.value.line == 2


def test_unknown_scenario_name():
    with pytest.raises(ConfigError):
        load_scenario("no_such_scenario")
