"""rover replay: re-running a recorded traverse reproduces it exactly; changes are found where they are.

Oracles: the invariant that an unmodified replay differs by exactly zero (fast perception on quick, rendered
perception — VO, EKF and stereo mapping re-run on the recorded stereo pairs — on a short run); logs tampered
with at a known tick (a command, a stereo image) must be reported as divergent at that tick; a parameter
that changes the global planner's costs must diverge at the first plan and not before; bad files exit 2 and
name the file.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from hil.replay import ReplayInputError, parse_overrides, replay
from hil.scenario import FaultSpec, load_scenario
from hil.traverse import run_traverse


# ------------------------------------------------------------------ fixtures: two recorded traverses
@pytest.fixture(scope="module")
def fast_log(tmp_path_factory):
    out = tmp_path_factory.mktemp("replay_fast")
    s = run_traverse(load_scenario("quick"), out_dir=out, png=False)
    assert s.outcome == "reached", s.reason
    return out / "traverse.mcap"


@pytest.fixture(scope="module")
def rendered_log(tmp_path_factory):
    # 3 m with rendered stereo, through a camera black-out (black frames are recorded as they were seen)
    out = tmp_path_factory.mktemp("replay_rendered")
    sc = load_scenario("quick").with_overrides(perception="rendered", goal__x_m=8.0,
                                               faults=(FaultSpec(at_s=3.0, kind="camera_blackout", duration_s=1.0),))
    s = run_traverse(sc, out_dir=out, png=False)
    assert s.outcome == "reached", s.reason
    return out / "traverse.mcap"


def _rewrite(src, dst, edit):
    """Copy an MCAP log, passing every JSON message through ``edit(topic, dict) -> dict``."""
    from mcap.reader import make_reader
    from mcap.writer import Writer

    with open(src, "rb") as fi, open(dst, "wb") as fo:
        r = make_reader(fi)
        w = Writer(fo)
        w.start(profile="", library="test")
        for m in r.iter_metadata():
            w.add_metadata(m.name, dict(m.metadata))
        sids, cids = {}, {}
        for schema, ch, msg in r.iter_messages(log_time_order=False):
            if ch.id not in cids:
                if schema.id not in sids:
                    sids[schema.id] = w.register_schema(schema.name, schema.encoding, schema.data)
                cids[ch.id] = w.register_channel(ch.topic, ch.message_encoding, sids[schema.id])
            data = json.dumps(edit(ch.topic, json.loads(msg.data))).encode()
            w.add_message(cids[ch.id], log_time=msg.log_time, data=data, publish_time=msg.publish_time,
                          sequence=msg.sequence)
        w.finish()
    return dst


# ------------------------------------------------------------------ the invariant
def test_unmodified_fast_replay_is_identical(fast_log, tmp_path):
    rep = replay(fast_log, out_dir=tmp_path)
    assert not rep.diverged, rep.text()
    assert rep.first_divergence is None
    assert rep.ticks_replayed == rep.ticks_recorded > 100
    assert rep.pose["max_m"] == 0.0 and rep.commands["max_dv_mps"] == 0.0 and rep.commands["max_dw_radps"] == 0.0
    assert rep.plans["recorded"] == rep.plans["replayed"] > 3
    assert rep.plans["max_global_hausdorff_m"] == 0.0 and rep.plans["max_arc_distance_m"] == 0.0
    assert rep.outcome["recorded"] == rep.outcome["replayed"] == "reached" and rep.outcome["same"]
    assert rep.truth is not None and rep.truth["recorded_final_m"] == rep.truth["replayed_final_m"]
    d = json.loads((tmp_path / "replay.json").read_text())
    assert d["diverged"] is False and d["scenario"] == "quick" and d["perception"] == "fast"
    import cv2

    img = cv2.imread(str(tmp_path / "replay.png"))
    assert img is not None and img.shape[0] > 100 and img.shape[1] > 100


def test_unmodified_rendered_replay_reruns_vo_and_is_identical(rendered_log):
    rep = replay(rendered_log)
    assert not rep.diverged, rep.text()
    assert rep.pose["compared_ticks"] == rep.ticks_recorded and rep.pose["max_m"] == 0.0
    assert rep.plans["recorded"] == rep.plans["replayed"] > 1
    ps = rep.perception_stats
    assert ps["perception"] == "rendered" and ps["vo_frames"] > 10 and ps["vo_ok"] > 5   # VO really ran
    assert ps["captures"] > ps["vo_ok"]             # the black frames were served too
    # the rendered perception made near maps (its default): the replay re-made them from the recorded pairs
    from hil.mcaplog import McapReader
    from hil.replay import _dec

    with McapReader(rendered_log) as r:
        setup = next(iter(r.messages("/replay/setup", raw=True))).msg
    assert _dec(setup["perception_config"])["near"] is True


def test_rendered_log_holds_the_replay_channels_and_viewable_images(rendered_log):
    from hil.mcaplog import McapReader

    with McapReader(rendered_log) as r:
        topics = r.topics()
        for t in ("/replay/setup", "/replay/tick", "/replay/frame", "/replay/plan", "/replay/command", "/replay/end",
                  "/camera/left/compressed"):
            assert t in topics, t
        assert topics["/camera/left/compressed"] == "foxglove.CompressedImage"
        ticks = sum(1 for _ in r.messages("/replay/tick", raw=True))
        shown = [m.t_s for m in r.messages("/camera/left/compressed")]
    assert len(shown) >= 3 and np.all(np.diff(shown) >= 1.0 - 1e-9)    # a reduced rate: one a second
    assert ticks > 10 * len(shown) / 2                                    # the inputs at the full rate


def test_a_tampered_stereo_image_changes_the_replayed_estimate_from_its_tick(rendered_log, tmp_path):
    import base64

    import cv2

    frames = []

    def find(topic, d):
        if topic == "/replay/frame":
            frames.append((d["i"], d.get("status") == "ok"))
        return d

    _rewrite(rendered_log, tmp_path / "scan.mcap", find)
    # a frame VO tracks against the one before: well after the black-out (3-4 s; the black frames are
    # recorded as seen, and the first real frame after them starts VO afresh)
    target = next(i for i, ok in frames[2 * len(frames) // 3:] if ok)

    def shift(topic, d):
        if topic == "/replay/frame" and d["i"] == target and d.get("status") == "ok":
            img = cv2.imdecode(np.frombuffer(base64.b64decode(d["left"]["png"]), np.uint8), cv2.IMREAD_UNCHANGED)
            img = np.roll(img, 6, axis=1)               # the scene moved 6 px sideways in the left image
            d["left"]["png"] = base64.b64encode(cv2.imencode(".png", img)[1].tobytes()).decode()
        return d

    rep = replay(_rewrite(rendered_log, tmp_path / "shifted.mcap", shift))
    assert rep.diverged
    assert rep.first_divergence["tick"] == target, rep.text()
    # the estimate moves on that tick, or on the next when the frame was also the picture mapped on that
    # tick (mapped from the pose before the frame's own update)
    assert target <= rep.pose["first_tick"] <= target + 1, rep.text()


# ------------------------------------------------------------------ divergences where they are
def test_a_planning_parameter_diverges_at_the_first_plan_not_before(fast_log):
    rep = replay(fast_log, overrides={"hazard_margin": 0.3})       # narrower safety margin: other costs
    assert rep.diverged
    first_plan = min(p["t"] for p in __import__("hil.replay", fromlist=["_read_log"])._read_log(fast_log).plans)
    assert rep.first_divergence["t_s"] >= first_plan - 1e-9
    assert rep.plans["first_t_s"] == pytest.approx(first_plan)
    assert rep.plans["max_global_hausdorff_m"] > 0.05
    assert rep.overrides == {"hazard_margin": "0.3"}
    assert rep.pose["max_m"] == 0.0          # open loop: the recorded motion (and fast poses) cannot change


def test_a_changed_near_map_is_reported_at_its_picture_and_older_logs_are_not_compared(fast_log, tmp_path):
    """Each picture's near map (the finer map the step check uses) is fingerprinted like the local map: a
    recorded near-map digest that no longer matches is the first divergence, at that picture's tick; a log
    written before near maps were fingerprinted (no ``near_digest``) replays identical."""
    obs = []

    def scan(topic, d):
        if topic == "/replay/observation" and not d.get("none"):
            obs.append((d["i"], d.get("near_digest")))
        return d

    _rewrite(fast_log, tmp_path / "scan.mcap", scan)
    assert len(obs) > 3 and all(isinstance(nd, str) and len(nd) == 40 for _, nd in obs)   # fast makes near maps
    target = obs[len(obs) // 2][0]

    def tamper(topic, d):
        if topic == "/replay/observation" and d["i"] == target:
            d["near_digest"] = "0" * 40
        return d

    rep = replay(_rewrite(fast_log, tmp_path / "near.mcap", tamper))
    assert rep.diverged and rep.first_divergence["tick"] == target, rep.text()
    assert "the near map" in rep.first_divergence["what"], rep.first_divergence

    def strip(topic, d):
        if topic == "/replay/observation":
            d.pop("near_digest", None)
        return d

    rep = replay(_rewrite(fast_log, tmp_path / "old.mcap", strip))
    assert not rep.diverged, rep.text()


def test_a_tampered_command_is_reported_at_its_tick(fast_log, tmp_path):
    target = {}

    def bump(topic, d):
        if topic == "/replay/command" and d["i"] == 150:
            target["t"] = d["t"]
            d["vx"] = d["vx"] + 0.1
        return d

    rep = replay(_rewrite(fast_log, tmp_path / "tampered.mcap", bump))
    assert rep.diverged
    assert rep.commands["first_tick"] == 150 and rep.commands["first_t_s"] == target["t"]
    assert rep.first_divergence == {"t_s": target["t"], "tick": 150, "what": rep.commands["first_what"]}
    assert rep.commands["max_dv_mps"] == pytest.approx(0.1) and rep.commands["max_dw_radps"] == 0.0
    assert rep.plans["first_t_s"] is None and rep.pose["max_m"] == 0.0


# ------------------------------------------------------------------ bad input
def test_bad_files_are_input_errors_naming_the_file(fast_log, tmp_path):
    garbage = tmp_path / "garbage.mcap"
    garbage.write_bytes(b"this is not a log" * 10)
    with pytest.raises(ReplayInputError, match="garbage.mcap is not an MCAP file"):
        replay(garbage)
    with pytest.raises(ReplayInputError, match="missing.mcap: no such file"):
        replay(tmp_path / "missing.mcap")
    with pytest.raises(ReplayInputError, match="is not a file"):
        replay(tmp_path)
    cut = tmp_path / "cut.mcap"
    data = fast_log.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ReplayInputError, match="cut.mcap is truncated"):
        replay(cut)
    rep = replay(cut, allow_truncated=True)            # a killed traverse: what it holds is replayed
    assert 0 < rep.ticks_replayed < replay(fast_log).ticks_replayed
    assert any("truncated" in n for n in rep.notes)


def test_a_log_without_replay_channels_is_an_input_error(tmp_path):
    from hil.mcaplog import McapLogger

    p = tmp_path / "old.mcap"
    with McapLogger(p, metadata={"scenario": "quick"}) as lg:
        lg.event(0.0, "start")
        lg.command(0.1, 0.2, 0.0)
    with pytest.raises(ReplayInputError, match=r"old\.mcap has no replay channels \(/replay/setup, /replay/tick"):
        replay(p)


def test_parse_overrides():
    from nav.executive import ExecParams

    p = parse_overrides(["window_m=6", "arc.length_bonus_per_m=0.2", "speed_mps=none", "mode=stop_and_go",
                         "max_local_failures=3"])
    assert p.window_m == 6.0 and p.arc.length_bonus_per_m == 0.2 and p.speed_mps is None
    assert p.mode == "stop_and_go" and p.max_local_failures == 3 and isinstance(p.max_local_failures, int)
    assert parse_overrides([], ExecParams(window_m=5.0)).window_m == 5.0
    for bad, what in (("bogus=1", "'bogus' is not a field of ExecParams"), ("window_m", "must be NAME=VALUE"),
                      ("window_m=abc", "'abc' is not a valid float"),
                      ("arc.nope=1", "'nope' is not a field of ArcParams"),
                      ("mode=fly", "--set mode=fly: ExecParams.mode"), ("arc=1", "set its fields")):
        with pytest.raises(ValueError, match=what):
            parse_overrides([bad])


# ------------------------------------------------------------------ the command line
def test_cli_replay_exit_codes(fast_log, tmp_path, capsys):
    from hil.cli import main

    assert main(["replay", str(fast_log.parent), "--out", str(tmp_path / "a"), "--no-png"]) == 0
    out = capsys.readouterr().out
    assert "no difference" in out and (tmp_path / "a" / "replay.json").exists()
    assert main(["replay", str(fast_log), "--out", str(tmp_path / "b"), "--set", "hazard_margin=0.3"]) == 1
    out = capsys.readouterr().out
    assert "DIVERGED first at t=" in out and (tmp_path / "b" / "replay.png").exists()
    garbage = tmp_path / "garbage.mcap"
    garbage.write_bytes(b"\x00" * 64)
    assert main(["replay", str(garbage), "--out", str(tmp_path / "c")]) == 2
    assert f"{garbage} is not an MCAP file" in capsys.readouterr().err
    assert main(["replay", str(fast_log), "--out", str(tmp_path / "d"), "--set", "warp_factor=9"]) == 2
    assert "warp_factor" in capsys.readouterr().err
    assert main(["replay", str(fast_log), "--out", str(tmp_path / "e"), "--set", "window_m=-1"]) == 2
    assert "window_m" in capsys.readouterr().err


def test_parameters_logged_before_a_field_existed_replay_with_the_old_behaviour():
    """A log written before ``ExecParams.margin_fallback_cost`` existed ran without the fallback: decoding its
    parameters must give ``None``, not today's default; a log that has the field keeps its value."""
    from hil.replay import _dec, _enc
    from nav.executive import ExecParams

    rec = _enc(ExecParams(margin_fallback_cost=12.0))
    assert _dec(json.loads(json.dumps(rec))).margin_fallback_cost == 12.0
    del rec["f"]["margin_fallback_cost"]
    old = _dec(json.loads(json.dumps(rec)))
    assert old.margin_fallback_cost is None and ExecParams().margin_fallback_cost == 30.0
    assert old.window_m == ExecParams().window_m
