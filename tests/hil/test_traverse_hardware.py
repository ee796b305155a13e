"""``rover traverse`` on a real rover: the stereo camera wiring (``--camera`` / ``--calibration``), its
errors, and the hardware path end to end.

* Wiring and errors: cameras are video files of simulator renders (side by side, or one file per eye) with a
  calibration file of the rendered rig (written with ``cv2.FileStorage`` as ``cv2.stereoCalibrate`` users do);
  ``cv2.stereoRectify`` is the oracle of the rectified geometry the perception receives. Bad input through
  ``hil.cli.main`` must exit 2 with one sentence, never a traceback.
* Hardware path: :class:`hil.backend_serial.HardwareBackend` (the real driver, real time, the operator's
  confirmation) against a virtual RNP board served on a pty in real time; its SimRover stands in for the
  rover and that SimRover's stereo camera for the rover's camera (frames stamped on the driver's clock, the
  simulator's truth stripped). Nothing of the simulator is shared with the loop: the summary's truth metrics
  are unknown, and the test reads the device's rover to see what really happened.
* ``hil``: the same on a physical rover (``ROVER_PORT``, ``ROVER_PROTOCOL``, ``ROVER_PROFILE``,
  ``ROVER_CAMERA``, ``ROVER_CALIBRATION``; driving also needs ``ROVER_ALLOW_MOTION=1``); skipped otherwise.
"""
import contextlib
import dataclasses
import importlib.util
import io
import math
import os
import pathlib
import re
import time

import cv2
import numpy as np
import pytest

import nav
from drivers.camera import StereoCamera
from drivers.clock import MonotonicClock
from drivers.errors import DeviceClosed
from drivers.stereo_cv import OpenCVStereoCamera
from hil.backend_serial import make_serial
from hil.cli import CliError, main
from hil.scenario import load_scenario
from hil.traverse import OUTCOMES, _make_backend, _make_perception, build_traverse, run_traverse

_spec = importlib.util.spec_from_file_location(
    "_video_files", pathlib.Path(__file__).parents[1] / "drivers" / "_video_files.py")
_video = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_video)

ROVER = "skidsteer"                 # RNP board: wheel odometry needs no steering feedback
PROFILE = nav.load_rover(ROVER)
START = (3.5, 5.0)
GOAL = (5.5, 5.0)                   # 2 m ahead
N_FRAMES = 6
STEP_M = 0.1                        # the rendered rover moves this much between video frames

SCENARIO_YAML = """\
name: hw_short
description: a 2 m drive for the hardware path
rover: {rover}
planet: mars
terrain: {{preset: mars, seed: 4, size_m: 10, cell_size_m: 0.05, rock_cfa: 0.02, relief_rms_m: 0.02}}
start: {{x_m: {sx}, y_m: {sy}, yaw_deg: 0}}
goal: {{x_m: {gx}, y_m: {gy}, tolerance_m: 0.4}}
prior: {{kind: none}}
perception: {perception}
mode: drive_while_planning
limits: {{max_time_s: {max_time_s}}}
pass_criteria: {{reach_goal: true, max_hazard_violations: 0}}
"""


def write_scenario(path, *, rover=ROVER, perception="rendered", max_time_s=30, start=START, goal=GOAL):
    path.write_text(SCENARIO_YAML.format(rover=rover, perception=perception, max_time_s=max_time_s,
                                         sx=start[0], sy=start[1], gx=goal[0], gy=goal[1]))
    return path


# ============================================================================ cameras from the simulator
def write_video(path, frames, fps=10.0):
    """Grey frames to a video OpenCV reads back (tests/drivers/_video_files.py); returns the path."""
    _video.write_video(path, frames, fps)
    return path


def write_calibration(path, **vals):
    fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_WRITE)
    for k, v in vals.items():
        fs.write(k, v)
    fs.release()
    return path


def rig_calibration():
    """The rendered rig as cv2.stereoCalibrate would report it: the profile's K for both eyes, no
    distortion, parallel axes, the right camera ``baseline_m`` to the right (T in millimetres)."""
    cam = PROFILE.camera
    K = np.array(cam.K, dtype=np.float64)
    return dict(K1=K, D1=np.zeros((1, 5)), K2=K.copy(), D2=np.zeros((1, 5)), R=np.eye(3),
                T=np.array([[-1000.0 * cam.baseline_m], [0.0], [0.0]]),
                image_size=np.array([cam.width_px, cam.height_px], dtype=np.int32), units="mm")


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Side-by-side and per-eye videos of the scenario's terrain seen by a rover driving east, and the
    rig's calibration file."""
    import sim

    d = tmp_path_factory.mktemp("hw_camera")
    sc = load_scenario(write_scenario(d / "short.yaml"))
    world = build_traverse(sc).world
    rover = sim.SimRover(world, PROFILE, x_m=START[0], y_m=START[1])
    cam = rover.stereo_camera()
    pairs = []
    for k in range(N_FRAMES):
        rover.teleport(START[0] + STEP_M * k, START[1], 0.0)
        fr = cam.capture()
        pairs.append((fr.left, fr.right))
    return dict(
        dir=d, scenario=d / "short.yaml",
        sbs=write_video(d / "sbs.avi", [np.hstack(p) for p in pairs]),
        left=write_video(d / "left.avi", [p[0] for p in pairs]),
        right=write_video(d / "right.avi", [p[1] for p in pairs]),
        calib=write_calibration(d / "stereo.yaml", **rig_calibration()))


@pytest.fixture
def hw(videos):
    """A scenario setup and an unopened hardware backend (nothing is on its port: only the camera is used)."""
    setup = build_traverse(load_scenario(videos["scenario"]))
    bk = make_serial(setup.profile, "/dev/ttyNOPE-rovernav", "rnp")
    yield setup, bk
    bk.close()


def cli(capsys, *argv):
    code = main(["traverse", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


# ============================================================================ wiring
def test_spec_builds_a_calibrated_camera_on_the_drivers_clock(hw, videos):
    """``--camera FILE --calibration FILE`` -> an open OpenCVStereoCamera on the driver's clock whose frames
    carry cv2.stereoRectify's geometry, feeding VO and the stereo mapper; closing the backend closes it."""
    setup, bk = hw
    per = _make_perception("rendered", setup, bk, camera=str(videos["sbs"]), calibration=str(videos["calib"]))
    cam = per.camera
    assert isinstance(cam, OpenCVStereoCamera) and cam.side_by_side
    assert cam.clock is bk.rover.clock
    c = rig_calibration()
    _, _, P1, P2, *_ = cv2.stereoRectify(c["K1"], c["D1"], c["K2"], c["D2"], tuple(int(v) for v in c["image_size"]),
                                         c["R"], c["T"] / 1000.0, flags=cv2.CALIB_ZERO_DISPARITY, alpha=0.0)
    np.testing.assert_allclose(cam.rectification.K, P1[:3, :3], rtol=1e-9)
    assert cam.rectification.baseline_m == pytest.approx(-P2[0, 3] / P2[0, 0], rel=1e-9)
    assert cam.rectification.baseline_m == pytest.approx(PROFILE.camera.baseline_m, rel=1e-6)
    # the camera is open before anything is armed; perception runs on its frames
    t0 = bk.now()
    per.start(t0, setup.start_T)
    obs = per.observe(bk.now(), setup.gmap)
    assert obs is not None and obs.n_points > 1000
    st = per.stats()
    assert st["vo_frames"] >= 1 and st["camera_errors"] == 0
    bk.close()
    with pytest.raises(DeviceClosed):
        cam.capture()


@pytest.mark.parametrize("spec", ["{left},{right}", ("{left}", "{right}")], ids=["string", "tuple"])
def test_two_sources(hw, videos, spec):
    setup, bk = hw
    fill = lambda s: s.format(left=videos["left"], right=videos["right"])   # noqa: E731
    spec = fill(spec) if isinstance(spec, str) else tuple(fill(s) for s in spec)
    per = _make_perception("rendered", setup, bk, camera=spec, calibration=videos["calib"])
    assert len(per.camera.sources) == 2 and not per.camera.side_by_side
    fr = per.camera.capture()
    assert fr.left.shape == fr.right.shape == (PROFILE.camera.height_px, PROFILE.camera.width_px)


def test_a_camera_object_is_used_as_it_is_and_closed_with_the_traverse(hw):
    import sim

    setup, bk = hw
    cam = sim.SimRover(setup.world, PROFILE, x_m=START[0], y_m=START[1]).stereo_camera()
    per = _make_perception("rendered", setup, bk, camera=cam)
    assert per.camera is cam
    bk.close()
    with pytest.raises(DeviceClosed):
        cam.capture()


def test_hardware_perception_errors(hw, videos):
    setup, bk = hw
    with pytest.raises(CliError, match=r"'fast' samples the simulator's true terrain .* use --perception rendered"):
        _make_perception("fast", setup, bk, camera=str(videos["sbs"]))
    with pytest.raises(CliError, match=r"--backend serial needs --camera SRC\[,RIGHT\]"):
        _make_perception("rendered", setup, bk)
    with pytest.raises(CliError, match="a StereoCamera object is already calibrated"):
        _make_perception("rendered", setup, bk, camera=StereoCamera(), calibration=videos["calib"])
    with pytest.raises(CliError, match=r"--camera 3\.5: must be a source spec"):
        _make_perception("rendered", setup, bk, camera=3.5)
    with pytest.raises(CliError, match="one side-by-side source or two sources"):
        _make_perception("rendered", setup, bk, camera="a.avi,b.avi,c.avi")


@pytest.mark.parametrize("backend", ["sim"])
def test_a_camera_with_the_simulator_is_refused(hw, videos, backend):
    setup, _ = hw
    bk = _make_backend(setup, backend)
    for kw in ({"camera": str(videos["sbs"])}, {"calibration": str(videos["calib"])}):
        with pytest.raises(CliError, match="is for --backend serial .*the simulator renders its own cameras"):
            _make_perception("rendered", setup, bk, **kw)


# ============================================================================ the command line
@pytest.mark.parametrize("backend", ["sim", "sim-serial"])
@pytest.mark.parametrize("flag", ["--camera", "--calibration"])
def test_cli_camera_flags_need_the_serial_backend(capsys, videos, backend, flag):
    code, _, err = cli(capsys, videos["scenario"], "--backend", backend, flag, videos["calib"])
    assert code == 2
    assert f"{flag} is for --backend serial" in err and "Traceback" not in err


def test_cli_serial_needs_a_camera_and_rendered_perception(capsys, videos):
    base = (videos["scenario"], "--backend", "serial", "--port", "/dev/ttyNOPE-rovernav", "--protocol", "rnp")
    code, _, err = cli(capsys, *base)
    assert code == 2 and "--backend serial needs --camera" in err
    code, _, err = cli(capsys, *base, "--camera", videos["sbs"], "--perception", "fast")
    assert code == 2 and "use --perception rendered" in err
    code, _, err = cli(capsys, videos["scenario"], "--backend", "serial", "--camera", videos["sbs"])
    assert code == 2 and "--backend serial needs --port" in err


def _bad_calibrations(d):
    c = rig_calibration()
    garbage = d / "garbage.yaml"
    garbage.write_text("K1: [1, 2\n  : : :\n")
    no_k1 = write_calibration(d / "no_k1.yaml", **{k: v for k, v in c.items() if k != "K1"})
    small = write_calibration(d / "small.yaml", **dict(c, image_size=np.array([320, 240], dtype=np.int32)))
    return [(d / "missing.yaml", r"calibration file .*missing\.yaml: no such file"),
            (garbage, r"calibration file .*garbage\.yaml"),
            (no_k1, r"key 'K1' is missing"),
            (small, r"320x240|320 x 240|size")]


def test_cli_bad_camera_or_calibration_is_one_sentence(capsys, videos, tmp_path):
    """Exit 2 with the file and the rule named; no traceback; nothing is opened on the port."""
    base = (videos["scenario"], "--backend", "serial", "--port", "/dev/ttyNOPE-rovernav", "--protocol", "rnp",
            "--out", tmp_path / "out")
    cases = [(("--camera", tmp_path / "nope.avi"), r"nope\.avi: no such video file"),
             (("--camera", "/dev/video97"), r"/dev/video97"),
             (("--camera", "a.avi,b.avi,c.avi"), "one side-by-side source or two sources"),
             (("--calibration", videos["calib"]), "needs --camera")]
    cases += [(("--camera", videos["sbs"], "--calibration", p), m) for p, m in _bad_calibrations(tmp_path)]
    for args, match in cases:
        code, _, err = cli(capsys, *base, *args)
        assert code == 2, (args, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert re.search(match, err), (match, err)


# ============================================================================ the hardware path over a pty
class DriverClockCamera(StereoCamera):
    """The SimRover's stereo camera seen as a real one: frames stamped on the driver's clock when the capture
    starts (as OpenCVStereoCamera does), the simulator's truth (depth, pose) stripped."""

    def __init__(self, inner, clock):
        super().__init__(name=f"{inner.name}@driver-clock")
        self.inner, self.clock = inner, clock

    def _open(self):
        self.inner.open()

    def _close(self):
        self.inner.close()

    def _capture(self):
        t_s = self.clock.now()
        fr = self.inner.capture()
        return dataclasses.replace(fr, t_s=t_s, depth_m=None, T_world_left=None)


@pytest.fixture
def device(videos):
    """A virtual RNP board with the scenario's rover on its terrain, served on a pty in real time."""
    from sim.devices.pty import open_pty_device

    sc = load_scenario(videos["scenario"])
    dev = open_pty_device("rnp", ROVER, world=build_traverse(sc).world)
    with getattr(dev.device, "lock", None) or contextlib.nullcontext():     # the pty thread steps the world
        dev.sim_rover.teleport(START[0], START[1], 0.0)
    yield dev
    dev.close()


@pytest.mark.parametrize("confirm", [None, lambda prompt: False], ids=["no-confirm", "declined"])
def test_refuses_to_arm_without_confirmation(device, videos, confirm):
    cam = DriverClockCamera(device.sim_rover.stereo_camera(), MonotonicClock())
    s = run_traverse(load_scenario(videos["scenario"]), backend="serial", port=device.path, protocol="rnp",
                     log=False, png=False, confirm=confirm, perception_kw={"camera": cam})
    assert s.outcome == "error" and "did not confirm" in s.reason
    assert not device.device.core.armed and device.sim_rover.truth().distance_m == 0.0
    assert cam._closed          # closed with the backend, armed or not


def test_cli_refuses_to_arm_without_a_terminal(capsys, monkeypatch, device, videos, tmp_path):
    """The command asks on the terminal; without one (and without --yes) it refuses: exit 1, never armed."""
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    code, out, err = cli(capsys, videos["scenario"], "--backend", "serial", "--port", device.path, "--protocol", "rnp",
                         "--camera", videos["sbs"], "--calibration", videos["calib"], "--out", tmp_path, "-q",
                         "--no-log", "--no-png")
    assert code == 1, err
    assert "refusing without a terminal; pass --yes" in err
    assert "did not confirm" in out
    assert not device.device.core.armed and device.sim_rover.truth().distance_m == 0.0


def test_drives_a_short_scenario_on_the_hardware_path(device, videos, tmp_path):
    """Real driver, real time, confirmation, camera without truth: the rover drives toward the goal, VO runs,
    the traverse ends with an outcome of the contract and the board stopped and disarmed."""
    sc = load_scenario(videos["scenario"])
    cam = DriverClockCamera(device.sim_rover.stereo_camera(), MonotonicClock())
    prompts = []
    s = run_traverse(sc, backend="serial", port=device.path, protocol="rnp", out_dir=tmp_path, log=False,
                     png=False, confirm=lambda p: prompts.append(p) or True, perception_kw={"camera": cam})
    # stopped and disarmed the moment the traverse returns (the board's own watchdog would take longer)
    outputs = device.device.outputs_radps()
    assert not outputs.any() and not device.device.core.armed, outputs
    d = s.to_dict()
    assert len(prompts) == 1 and "arm" in prompts[0] and "hw_short" in prompts[0]
    assert d["backend"] == "serial" and d["perception"] == "rendered"
    assert d["outcome"] in OUTCOMES and d["outcome"] != "error", d["reason"]
    ps = s.perception_stats
    assert ps["vo_frames"] > 0 and ps["vo_ok"] > 0, ps
    assert cam._closed
    # what really happened, from the stand-in rover (never seen by the loop)
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        tr = device.sim_rover.truth()
        if math.hypot(tr.vx_mps, tr.vy_mps) < 1e-3 and abs(tr.wz_radps) < 1e-3:
            break
        time.sleep(0.05)
    assert math.hypot(tr.vx_mps, tr.vy_mps) < 1e-3, "the rover kept moving after the traverse"
    assert tr.x_m - START[0] > 0.5, f"drove from x={START[0]} to x={tr.x_m:.2f} m (goal x={GOAL[0]})"
    if d["reached"]:
        assert math.hypot(tr.x_m - GOAL[0], tr.y_m - GOAL[1]) < 0.4 + 0.5     # tolerance + localisation error
    # no truth on the hardware path: truth metrics are unknown, not invented
    assert d["max_tilt_deg"] is None and d["loc_error_final_m"] is None
    assert d["hazard_violations"] is None and d["path_ratio"] is None and d["oracle_length_m"] is None
    assert d["distance_m"] > 0.3                     # from the estimated pose


# ============================================================================ a real rover (lab)
def _real(motion: bool):
    need = ["ROVER_PORT", "ROVER_CAMERA"]
    missing = [k for k in need if not os.environ.get(k)]
    if missing:
        pytest.skip(f"needs a real rover: set {', '.join(missing)} (and ROVER_PROTOCOL, ROVER_PROFILE, "
                    "ROVER_CALIBRATION)")
    if motion and os.environ.get("ROVER_ALLOW_MOTION") != "1":
        pytest.skip("drives a real rover: set ROVER_ALLOW_MOTION=1 with 2 m of clear, flat ground ahead of it "
                    "and a hand on the e-stop")
    profile = os.environ.get("ROVER_PROFILE", "osr")
    return dict(port=os.environ["ROVER_PORT"], protocol=os.environ.get("ROVER_PROTOCOL") or None,
                camera=os.environ["ROVER_CAMERA"],
                calibration=os.environ.get("ROVER_CALIBRATION") or os.environ.get("ROVER_CAMERA_CALIB") or None,
                profile=profile)


def _real_scenario(tmp_path, profile):
    """Flat ground; the goal 1.5 m straight ahead (the rover's map starts empty: no prior)."""
    path = write_scenario(tmp_path / "real_short.yaml", rover=profile, max_time_s=60, start=(5.0, 5.0),
                          goal=(6.5, 5.0))
    path.write_text(path.read_text().replace("preset: mars, seed: 4, size_m: 10, cell_size_m: 0.05, "
                                             "rock_cfa: 0.02, relief_rms_m: 0.02",
                                             "preset: earth_yard, seed: 1, size_m: 10, cell_size_m: 0.05, "
                                             "rock_cfa: 0.0, relief_rms_m: 0.0"))
    return path


@pytest.mark.hil
def test_real_rover_refuses_to_arm_without_confirmation(capsys, monkeypatch, tmp_path):
    env = _real(motion=False)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    args = [_real_scenario(tmp_path, env["profile"]), "--backend", "serial", "--port", env["port"],
            "--camera", env["camera"], "--out", tmp_path / "out", "-q"]
    if env["protocol"]:
        args += ["--protocol", env["protocol"]]
    if env["calibration"]:
        args += ["--calibration", env["calibration"]]
    code, out, err = cli(capsys, *args)
    assert code == 1, err
    assert "refusing without a terminal" in err and "did not confirm" in out


@pytest.mark.hil
def test_real_rover_drives_a_short_scenario(tmp_path):
    env = _real(motion=True)
    sc = load_scenario(_real_scenario(tmp_path, env["profile"]))
    s = run_traverse(sc, backend="serial", port=env["port"], protocol=env["protocol"], out_dir=tmp_path / "out",
                     confirm=lambda prompt: True,
                     perception_kw={"camera": env["camera"], "calibration": env["calibration"]})
    d = s.to_dict()
    assert d["outcome"] in OUTCOMES and d["outcome"] != "error", d["reason"]
    assert s.perception_stats["vo_frames"] > 0, s.perception_stats
    assert (tmp_path / "out" / "summary.json").exists()
