"""The sim-serial backend: the same traverse loop and the real driver over a pty to a virtual device that
shares the simulator's clock."""
import json

import pytest

import nav
from hil.backend_serial import default_protocol, make_serial, make_sim_serial
from hil.scenario import load_scenario
from hil.traverse import build_traverse, run_traverse


def test_default_protocol_follows_the_profile_controller():
    assert default_protocol(nav.load_rover("osr")) == "roboclaw"
    assert default_protocol(nav.load_rover("skidsteer")) == "rnp"


def test_bad_protocol_and_missing_port_are_named():
    sc = load_scenario("quick")
    setup = build_traverse(sc)
    with pytest.raises(ValueError, match="protocol = 'canbus'"):
        make_sim_serial(setup.world, setup.profile, (5.0, 10.0, 0.0), "canbus")
    with pytest.raises(ValueError, match="needs --port"):
        make_serial(setup.profile, "", "roboclaw")


def test_quick_over_a_pty_with_the_roboclaw_driver(tmp_path):
    """quick.yaml through RoboClawRover -> pty -> VirtualRoboClawBus -> SimRover: the goal is reached with no
    hazard violation, and the bytes really crossed the wire (the device answered polls)."""
    s = run_traverse(load_scenario("quick"), backend="sim-serial", out_dir=tmp_path, log=False, png=False)
    d = s.to_dict()
    assert d["backend"] == "sim-serial"
    assert d["reached"], d["reason"]
    assert d["hazard_violations"] == 0
    assert d["passed"], d["failed_criteria"]
    assert json.loads((tmp_path / "summary.json").read_text())["outcome"] == "reached"
