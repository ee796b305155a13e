"""Tests for ``rover vo``: a short rendered traverse written in the KITTI layout, run through the CLI
entry point; outputs (TUM trajectory, metrics against the simulator's truth, plot, summary), options and
bad input (exit status 2, one sentence)."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

import hil.cli as cli
from perception.trajectory import read_tum


@pytest.fixture(autouse=True)
def _vo_registered(monkeypatch):
    # until hil.cmd_vo is listed in hil.cli._COMMAND_MODULES
    if "hil.cmd_vo" not in cli._COMMAND_MODULES:
        monkeypatch.setattr(cli, "_COMMAND_MODULES", cli._COMMAND_MODULES + ("hil.cmd_vo",))


@pytest.fixture(scope="module")
def sequence(tmp_path_factory):
    import sim
    from sim.recording import clear_zones_along, course, record_traverse, write_kitti

    wp = course("s_curve", 2.5, start_xy=(2.0, 4.0))
    gen = sim.generate_terrain("mars", size_m=(9.0, 8.0), seed=4, clear_zones=clear_zones_along(wp, 1.0))
    rec = record_traverse(sim.World(gen, planet="mars", seed=4), "osr", wp, frame_every_m=0.15)
    return write_kitti(rec, tmp_path_factory.mktemp("seq") / "mars_short")


def test_rover_vo_writes_trajectory_metrics_and_plot(sequence, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["vo", str(sequence), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "100.0 % converged" in text and "end-point error" in text
    t, T = read_tum(out / "trajectory.tum")
    n = len(list((sequence / "image_0").iterdir()))
    assert len(t) == n and np.allclose(T[0], np.eye(4))
    tg, G = read_tum(out / "groundtruth.tum")
    np.testing.assert_allclose(tg, t)
    m = json.loads((out / "metrics.json").read_text())
    assert m["convergence_rate"] == 1.0 and m["n_poses"] == n
    assert m["distance_m"] > 2.0 and m["endpoint_error_pct"] < 2.0 and m["ate_rmse_m"] < 0.05
    # the metrics are those of the written trajectories
    assert m["endpoint_error_m"] == pytest.approx(np.linalg.norm(T[-1, :3, 3] - G[-1, :3, 3]), abs=1e-6)
    s = json.loads((out / "vo.json").read_text())
    assert s["frames"] == n and s["failures"] == [] and s["keyframes"] >= 2 and s["time_ms"]["median"] > 0
    img = cv2.imread(str(out / "trajectory.png"))
    assert img is not None and img.shape == (800, 800, 3)


def test_rover_vo_options_and_no_ground_truth(sequence, tmp_path, capsys):
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("image_0", "image_1"):
        (bare / name).symlink_to(sequence / name)
    (bare / "calib.txt").write_text((sequence / "calib.txt").read_text())
    out = tmp_path / "o2"
    assert cli.main(["vo", str(bare), "--out", str(out), "--max-frames", "6", "--max-speed", "2",
                     "--max-features", "200", "--rate", "2"]) == 0
    assert not (out / "metrics.json").exists() and (out / "trajectory.png").exists()
    t, _ = read_tum(out / "trajectory.tum")
    np.testing.assert_allclose(t, np.arange(6) / 2.0)
    s = json.loads((out / "vo.json").read_text())
    assert s["frames"] == 6 and s["params"]["max_features"] == 200 and s["params"]["max_speed_mps"] == 2.0
    assert "end-point" not in capsys.readouterr().out


@pytest.mark.parametrize("args, match", [
    (["vo", "/no/such/sequence"], "no such sequence directory"),
    (["vo", "{seq}", "--max-frames", "1"], "--max-frames 1: must be >= 2"),
    (["vo", "{seq}", "--max-speed", "-1"], "VOParams.max_speed_mps = -1.0: must be > 0"),
])
def test_rover_vo_bad_input_exits_2(sequence, tmp_path, capsys, args, match):
    args = [a.replace("{seq}", str(sequence)) for a in args] + ["--out", str(tmp_path / "x")]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("rover vo: ") and match in err and "Traceback" not in err


def test_rover_vo_malformed_calibration_exits_2(sequence, tmp_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("image_0", "image_1"):
        (broken / name).symlink_to(sequence / name)
    (broken / "calib.txt").write_text("P0: 1 2 3\n")
    assert cli.main(["vo", str(broken), "--out", str(tmp_path / "y")]) == 2
    assert "calib.txt:1: expected 12 numbers" in capsys.readouterr().err
