"""`rover plan` end to end: outputs, and failures explained in a sentence with the right exit status."""
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from hil.cli import main

ROOT = Path(__file__).resolve().parents[2]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_plan_generated_mars(tmp_path, capsys):
    code, out, err = run(capsys, "plan", "--rover", "osr", "--terrain", "mars", "--seed", "2", "--size", "16",
                         "--cell", "0.08", "--out", str(tmp_path))
    assert code == 0, err
    summary = json.loads((tmp_path / "plan.json").read_text())
    assert summary["ok"] is True
    assert summary["length_m"] >= summary["straight_line_m"] - 1e-6
    assert summary["terrain"]["rocks"] > 0
    img = cv2.imread(str(tmp_path / "plan.png"))
    assert img is not None and img.shape[0] > 200 and img.shape[1] > 300
    assert "planned" in out and "plan.png" in out


def _wall_dem(tmp_path):
    z = np.zeros((60, 60), np.float32)
    z[:, 30:32] = 1.0           # a 1 m wall from south to north ...
    z[50:, 30:32] = 0.0         # ... with a gap in the north
    f = tmp_path / "wall.npz"
    np.savez(f, elevation_m=z, cell_size_m=np.float64(0.1), origin_xy_m=np.array([0.0, 0.0]))
    return f


@pytest.mark.parametrize("planner", ["astar", "field_dstar", "dstar_lite"])
def test_plan_dem_detours_through_the_gap(tmp_path, capsys, planner):
    f = _wall_dem(tmp_path)
    code, out, err = run(capsys, "plan", "--rover", "skidsteer", "--terrain", str(f), "--start", "1,1",
                         "--goal", "5,1", "--planner", planner, "--out", str(tmp_path / "o"))
    assert code == 0, err
    s = json.loads((tmp_path / "o" / "plan.json").read_text())
    wp = np.array(s["waypoints_xy_m"])
    assert wp[:, 1].max() > 5.0          # went north through the gap
    assert s["length_m"] > 2 * 4.0


def test_goal_in_hazard_is_explained(tmp_path, capsys):
    f = _wall_dem(tmp_path)
    code, out, err = run(capsys, "plan", "--rover", "skidsteer", "--terrain", str(f), "--start", "1,1",
                         "--goal", "3.05,2", "--out", str(tmp_path / "o"))
    assert code == 1
    assert "GoalInHazard" in err and "x=3.05 m, y=2.00 m" in err
    assert "step" in err and "nearest traversable cell" in err
    s = json.loads((tmp_path / "o" / "plan.json").read_text())
    assert s["ok"] is False and "lethal" in s["reason"]
    assert (tmp_path / "o" / "plan.png").exists()   # the picture still shows why


def test_no_path_is_explained(tmp_path, capsys):
    z = np.zeros((40, 40), np.float32)
    z[:, 20:22] = 1.0
    f = tmp_path / "closed.npz"
    np.savez(f, elevation_m=z, cell_size_m=np.float64(0.1))
    code, out, err = run(capsys, "plan", "--rover", "skidsteer", "--terrain", str(f), "--start", "0.5,2",
                         "--goal", "3.5,2", "--out", str(tmp_path / "o"))
    assert code == 1 and "NoPathFound" in err


def test_bad_inputs_exit_2_with_one_sentence(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "configs/rovers/osr.yaml").read_text().replace("max_speed_mps: 0.35", "max_speed_mps: -1"))
    code, out, err = run(capsys, "plan", "--rover", str(bad), "--out", str(tmp_path / "o"))
    assert code == 2 and "drive.max_speed_mps = -1: must be > 0 (line" in err and str(bad) in err
    code, out, err = run(capsys, "plan", "--terrain", "venus", "--out", str(tmp_path / "o"))
    assert code == 2 and "neither a DEM file" in err
    code, out, err = run(capsys, "plan", "--terrain", str(tmp_path / "missing.tif"), "--out", str(tmp_path / "o"))
    assert code == 2 and "no such file" in err
    code, out, err = run(capsys, "plan", "--start", "1;2", "--out", str(tmp_path / "o"))
    assert code == 2 and "--start must be X,Y" in err
    junk = tmp_path / "junk.asc"
    junk.write_text("this is not a grid\n")
    code, out, err = run(capsys, "plan", "--terrain", str(junk), "--out", str(tmp_path / "o"))
    assert code == 2 and str(junk) in err
    assert "Traceback" not in err


def test_bare_npy_takes_its_cell_size_from_cell(tmp_path, capsys):
    f = tmp_path / "flat.npy"
    np.save(f, np.zeros((40, 60), np.float32))
    code, out, err = run(capsys, "plan", "--terrain", str(f), "--out", str(tmp_path / "o"))
    assert code == 2 and "give it with --cell" in err
    code, out, err = run(capsys, "plan", "--terrain", str(f), "--cell", "0.1", "--start", "0.5,0.5",
                         "--goal", "5.5,3.5", "--out", str(tmp_path / "o"))
    assert code == 0, err
    s = json.loads((tmp_path / "o" / "plan.json").read_text())
    assert s["terrain"]["cell_size_m"] == pytest.approx(0.1)
    assert s["terrain"]["extent_m"] == pytest.approx([0, 6.0, 0, 4.0])


def test_console_entry_point_runs_as_module():
    r = subprocess.run([sys.executable, "-m", "hil.cli", "plan", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and "--planner" in r.stdout
