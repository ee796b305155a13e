"""Rendered perception for the navigation executive: a stereo camera through the real VO, EKF and stereo
mapper.

:class:`RenderedPerception` is the ``perception: rendered`` source of a traverse (the perception-source
duck type ``start`` / ``on_telemetry`` / ``pose`` / ``observe`` / ``stats`` that ``hil.traverse`` drives).
It works with any :class:`drivers.camera.StereoCamera` — ``SimRover.stereo_camera()`` on the simulator,
a real camera driver on hardware — and uses no simulator truth: the pose comes from wheels, gyro,
accelerometer and stereo VO fused by :class:`perception.pipeline.StereoNavPipeline`, the local height maps
from the same stereo pairs placed at that estimate.

Scheduling, on the executive's control ticks (:meth:`RenderedPerception.on_telemetry`):

* every tick feeds the wheels' body velocity and the IMU to the filter;
* a frame is captured and run through VO when, since the last attempt, the wheels *or* the estimate moved
  ``frame_every_m`` (0.15 m: the spacing VO tracks best at; the wheels' own count keeps frames coming when
  the rover is bogged down and the estimate barely moves), the heading turned ``frame_every_deg``, or
  ``frame_interval_s`` passed while moving (default: the camera's ``rate_hz``);
* :meth:`RenderedPerception.observe` ("take a picture now") returns the local height map of the frame
  captured on this tick if there is one, else captures one — VO runs on it too, so the map and the pose
  come from the same pair — and with it (``near=True``, the default) the near map of the same pair at the
  same pose: the ground within 2.5 m on the map's cells split 2 x 2, where the executive checks steps and
  roughness (:meth:`perception.stereo_map.StereoMapper.near_map`; the pair is matched and triangulated once
  for both).

Camera trouble is not an error of the traverse: a capture that raises ``OSError`` (every
``drivers.errors.DriverError``, timeouts), returns ``None``, or gives black frames, is counted; VO fails
on it, the filter carries the pose on wheels and gyro with growing covariance, and when frames return VO
re-initialises on the first good one and the filter continues from its estimate — no jump. On the
simulator :class:`FaultyCamera` injects these (scenario fault ``camera_blackout``);
:meth:`RenderedPerception.set_vo_dropout` emulates ``vo_dropout`` (frames arrive, VO is not run).

Cost per frame on one core (640x480): rendering ~40 ms on the simulator, VO ~10 ms, the EKF < 1 ms, a
local map ~30 ms, the near map ~20 ms more on a frame that is mapped (16-26 ms measured on rendered Mars
views, where 60-80 % of the ~200 000 points lie within 2.5 m; the disparity is shared with the local map).
Captures run inside ``on_telemetry`` (synchronously).
"""
from __future__ import annotations

import logging
import math
import time

import numpy as np

from drivers.camera import StereoCamera, StereoFrame
from drivers.errors import DeviceTimeout
from nav.config import Planet, RoverProfile, load_planet, load_rover
from perception.estimator import EKFParams
from perception.pipeline import PipelineFrame, StereoNavPipeline, T_body_left
from perception.stereo_map import StereoMapParams
from perception.vo import VOParams

__all__ = ["RenderedPerception", "FaultyCamera", "RecordingCamera", "PlaybackCamera", "BLACKOUT_MODES"]

log = logging.getLogger(__name__)

#: :meth:`FaultyCamera.set_blackout` modes: black images, ``capture()`` raising ``DeviceTimeout``, or
#: returning ``None``.
BLACKOUT_MODES = ("black", "raise", "none")


class FaultyCamera(StereoCamera):
    """A :class:`drivers.camera.StereoCamera` wrapper that can black out (fault injection for tests and
    scenarios): :meth:`set_blackout` with a mode of :data:`BLACKOUT_MODES`, ``None`` to restore."""

    def __init__(self, camera: StereoCamera):
        if not isinstance(camera, StereoCamera):
            raise TypeError(f"camera must be a drivers.camera.StereoCamera, got {type(camera).__name__}")
        super().__init__(name=f"{camera.name}+faults")
        self.inner = camera
        self.mode: str | None = None

    def set_blackout(self, mode: str | None) -> None:
        if mode is not None and mode not in BLACKOUT_MODES:
            raise ValueError(f"mode = {mode!r}: must be None or one of {', '.join(BLACKOUT_MODES)}")
        self.mode = mode

    def _open(self) -> None:
        self.inner.open()

    def _close(self) -> None:
        self.inner.close()

    def _capture(self) -> StereoFrame | None:
        if self.mode == "raise":
            raise DeviceTimeout(f"{self.name}: no frame (injected camera blackout)")
        if self.mode == "none":
            return None
        fr = self.inner.capture()
        if self.mode == "black":
            z = np.zeros_like(fr.left)
            return StereoFrame(fr.t_s, fr.seq, z, z.copy(), fr.K, fr.baseline_m, fr.T_body_left)
        return fr


class RecordingCamera(StereoCamera):
    """A :class:`drivers.camera.StereoCamera` wrapper that reports every capture to ``sink(frame, error)``:
    the frame (or ``None`` when the camera gave none) with ``error=None``, or ``(None, the OSError)`` before
    re-raising it. :class:`hil.replay.McapRecorder` records a traverse's stereo pairs through it (wrapping
    the :class:`FaultyCamera`, so black-outs are recorded as they were seen). Other attributes are the
    wrapped camera's."""

    def __init__(self, camera: StereoCamera, sink):
        if not isinstance(camera, StereoCamera):
            raise TypeError(f"camera must be a drivers.camera.StereoCamera, got {type(camera).__name__}")
        super().__init__(name=camera.name)
        self.inner = camera
        self.sink = sink

    def __getattr__(self, name):
        inner = self.__dict__.get("inner")
        if inner is None:
            raise AttributeError(name)
        return getattr(inner, name)

    def _open(self) -> None:
        self.inner.open()

    def _close(self) -> None:
        self.inner.close()

    def _capture(self) -> StereoFrame | None:
        try:
            fr = self.inner.capture()
        except OSError as e:
            self.sink(None, e)
            raise
        self.sink(fr, None)
        return fr


class PlaybackCamera(StereoCamera):
    """Recorded stereo pairs played back for a replay (:mod:`hil.replay`): ``source.next()`` gives the next
    capture recorded on the current tick — ``("ok", StereoFrame)``, ``("none", None)``, ``("error", text)``
    (raised as :class:`drivers.errors.DeviceTimeout`) — or ``None`` when the recorded traverse captured
    nothing more then (no frame)."""

    def __init__(self, source, name: str = "playback"):
        super().__init__(name=name)
        self.source = source

    def _capture(self) -> StereoFrame | None:
        got = self.source.next()
        if got is None or got[0] == "none":
            return None
        if got[0] == "error":
            raise DeviceTimeout(f"{self.name}: {got[1]} (recorded)")
        return got[1]


def _number(name, v, *, gt=None, ge=None) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(v):
        raise ValueError(f"{name} = {v!r}: must be a finite number")
    if gt is not None and not v > gt:
        raise ValueError(f"{name} = {v!r}: must be > {gt}")
    if ge is not None and not v >= ge:
        raise ValueError(f"{name} = {v!r}: must be >= {ge}")
    return float(v)


def _vec3(v):
    if v is None:
        return None
    a = np.asarray(v, dtype=np.float64).reshape(-1)
    return a if a.shape == (3,) and np.isfinite(a).all() else None


def _wrap(a: float) -> float:
    return (a + math.pi) % (2.0 * math.pi) - math.pi


class RenderedPerception:
    """Perception source from a stereo camera: VO + EKF pose and stereo local height maps.

    Parameters
    ----------
    camera : drivers.camera.StereoCamera
        Rectified stereo pairs on the same clock as the rover's telemetry.
    profile : nav.config.RoverProfile or str
        The rover (sensor noise for the filter, camera geometry when no frame gives its calibration).
    T_world_body0 : (4, 4) array, optional
        Initial pose (also accepted by :meth:`start`).
    planet : nav.config.Planet or str, optional
        Gravity for the accelerometer's roll/pitch updates; without it the accelerometer is not used.
    frame_every_m, frame_every_deg, frame_interval_s : capture spacing (see the module docstring);
        ``frame_interval_s`` defaults to ``1 / profile.camera.rate_hz``.
    ekf_params, vo_params, map_params : optional overrides (EKFParams default: ``EKFParams.for_rover``).
    cov0 : (6, 6) array, optional
        Initial pose covariance (default: the filter's — roll/pitch 3°, position and yaw exact).
    motion_prior : bool
        Seed VO with the filter's predicted motion (default).
    near : bool
        Also map the ground close in on a finer lattice (:meth:`perception.stereo_map.StereoMapper.near_map`,
        from the same disparity and points as the local map) for the executive's step and roughness checks:
        :meth:`observe` returns it as ``Observation.near``.
    """

    kind = "rendered"

    def __init__(self, camera: StereoCamera, profile, T_world_body0=None, *, planet=None,
                 frame_every_m: float = 0.15, frame_every_deg: float = 5.0, frame_interval_s: float | None = None,
                 ekf_params: EKFParams | None = None, vo_params: VOParams | None = None,
                 map_params: StereoMapParams | None = None, cov0=None, motion_prior: bool = True,
                 near: bool = True):
        if not isinstance(camera, StereoCamera):
            raise TypeError(f"camera must be a drivers.camera.StereoCamera, got {type(camera).__name__}")
        self.camera = camera
        self.profile = profile if isinstance(profile, RoverProfile) else load_rover(profile)
        if planet is not None and not isinstance(planet, Planet):
            planet = load_planet(planet)
        self.planet = planet
        self.frame_every_m = _number("frame_every_m", frame_every_m, gt=0)
        self.frame_every_rad = math.radians(_number("frame_every_deg", frame_every_deg, gt=0))
        self.frame_interval_s = (1.0 / self.profile.camera.rate_hz if frame_interval_s is None
                                 else _number("frame_interval_s", frame_interval_s, gt=0))
        if ekf_params is None:
            ekf_params = EKFParams.for_rover(self.profile, planet)
        self._ekf_params = ekf_params
        self._vo_params = vo_params
        self._map_params = map_params
        self._cov0 = cov0
        self._motion_prior = motion_prior
        self.near = bool(near)
        self._use_accel = planet is not None
        self._T0 = None if T_world_body0 is None else np.array(T_world_body0, dtype=np.float64)
        self.pipeline: StereoNavPipeline | None = None
        self._last: tuple[StereoFrame, PipelineFrame] | None = None
        self._t_last_frame = -math.inf
        self._vo_dropout = False
        self._attempt = None          # (t, wheel distance, position, yaw) at the last capture attempt
        # counters
        self._captures = 0
        self._camera_errors = 0
        self._camera_empty = 0
        self._stale = 0
        self._observations = 0
        self._empty_obs = 0
        self._capture_s = []
        self._last_camera_error = ""

    # ------------------------------------------------------------------ the perception-source interface
    def start(self, t_s: float, T_world_body0=None) -> None:
        """Start at time ``t_s`` at pose ``T_world_body0`` (or the constructor's; identity if neither):
        open the camera, take the first frame (VO's first reference) and read the calibration from it
        (``K``, ``baseline_m``, ``T_body_left``; the profile's nominal camera if no frame comes)."""
        t_s = _number("t_s", t_s)
        if T_world_body0 is not None:
            self._T0 = np.array(T_world_body0, dtype=np.float64)
        T0 = np.eye(4) if self._T0 is None else self._T0
        if not self._use_accel:
            log.warning("RenderedPerception: no planet given: the accelerometer is not used (roll and pitch from "
                        "the gyro only)")
        self.camera.open()
        fr = self._grab()
        if fr is not None:
            K, b, Tbc = fr.K, fr.baseline_m, fr.T_body_left
        else:
            cam = self.profile.camera
            K, b, Tbc = cam.K, cam.baseline_m, T_body_left(cam)
            log.warning("RenderedPerception: no first frame from %s: using the profile's nominal camera geometry",
                        self.camera.name)
        self.pipeline = StereoNavPipeline(K, b, Tbc, ekf_params=self._ekf_params, vo_params=self._vo_params,
                                          map_params=self._map_params, T_world_body0=T0, cov0=self._cov0, t0_s=t_s,
                                          motion_prior=self._motion_prior)
        self._mark_attempt(t_s)
        if fr is not None:
            self._process(fr, want_map=False, grid=None)

    def on_telemetry(self, tm, vx_mps: float, vy_mps: float, wz_radps: float) -> None:
        """One control tick: ``tm`` is the :class:`drivers.base.Telemetry` read, ``(vx, vy, wz)`` the wheels'
        body twist (``WheelLayout.forward``). Captures a frame when one is due (see the module docstring)."""
        pipe = self._pipe()
        imu = getattr(tm, "imu", None)
        gyro = _vec3(imu.gyro_radps) if imu is not None else None
        accel = _vec3(imu.accel_mps2) if (imu is not None and self._use_accel) else None
        t = float(tm.t_s)
        if math.isfinite(vx_mps) and math.isfinite(vy_mps) and math.isfinite(wz_radps):
            pipe.wheel_tick(t, vx_mps, vy_mps, wz_radps, gyro, accel)
        else:     # a wheel or steering angle the driver cannot read (NaN): no wheel update, the IMU alone
            pipe.ekf.predict(t, gyro, accel)
            vx_mps = vy_mps = wz_radps = 0.0
        if self._due(t, vx_mps, vy_mps, wz_radps):
            self._capture(t, want_map=False, grid=None)

    def pose(self):
        """``(T_world_body_est (4, 4), cov6 (6, 6) over [dtheta (body, rad), dp (world, m)])``; before
        :meth:`start`, the initial pose and ``None``."""
        if self.pipeline is None:
            return (np.eye(4) if self._T0 is None else self._T0.copy()), None
        return self.pipeline.T_world_body, self.pipeline.pose_cov

    def observe(self, t_s: float, grid):
        """Take a picture now: the local height map of a stereo pair (reusing the frame this tick captured),
        on the lattice of ``grid`` (the executive's GlobalMap), as an :class:`hil.traverse.Observation`
        ``(t_s of the frame, local, T_world_cam_est at the frame, n_points, near)`` — ``near`` the near map of
        the same pair at the same pose (``grid``'s cells split 2 x 2, the ground within 2.5 m of the left
        camera), or None when the source was made with ``near=False``. ``None`` when the camera gave
        nothing or the pair mapped no cell (e.g. a blacked-out camera)."""
        from .traverse import Observation

        self._pipe()
        t_s = _number("t_s", t_s)
        tol = self.pipeline.ekf.params.time_tol_s
        self._observations += 1
        local = near = None
        if self._last is not None and abs(self._last[0].t_s - t_s) <= tol:
            fr, res = self._last
            if res.local is not None and grid is None and (res.near is not None or not self.near):
                local, near = res.local, res.near
            elif self.near:
                local, near = self.pipeline.map_pair_near(fr.left, fr.right, res.T_world_cam, grid=grid,
                                                          attitude_sigma_rad=res.attitude_sigma_rad)
            else:
                local = self.pipeline.map_pair(fr.left, fr.right, res.T_world_cam, grid=grid,
                                               attitude_sigma_rad=res.attitude_sigma_rad)
        else:
            got = self._capture(t_s, want_map=True, grid=grid)
            if got is not None:
                fr, res = got
                local, near = res.local, res.near
        if local is None or not local:
            self._empty_obs += 1
            return None
        return Observation(float(fr.t_s), local, res.T_world_cam.copy(), int(local.n_points), near)

    def stats(self) -> dict:
        """Counters (JSON-serialisable): the pipeline's (:meth:`StereoNavPipeline.stats`, its ``frames`` as
        ``vo_frames``) plus ``perception``, ``captures``, ``camera_errors``, ``camera_empty``,
        ``stale_frames``, ``observations``, ``empty_observations``, ``capture_ms`` (mean, max),
        ``last_camera_error``."""
        out = {"perception": self.kind}
        if self.pipeline is not None:
            st = self.pipeline.stats()
            out["vo_frames"] = st.pop("frames")
            out.update(st)
        else:
            out.update(vo_frames=0, vo_ok=0, vo_convergence=None)
        cs = self._capture_s
        out.update(captures=self._captures, camera_errors=self._camera_errors, camera_empty=self._camera_empty,
                   stale_frames=self._stale, observations=self._observations, empty_observations=self._empty_obs,
                   capture_ms={"mean": 1e3 * sum(cs) / len(cs) if cs else None,
                               "max": 1e3 * max(cs) if cs else None},
                   last_camera_error=self._last_camera_error, vo_dropout=self._vo_dropout)
        return out

    # ------------------------------------------------------------------ replay
    def replay_config(self) -> dict:
        """Everything besides the camera and the profile that makes this source what it is (parameter
        objects, numbers, arrays), for :meth:`from_replay_config` (:mod:`hil.replay` records it)."""
        return {"frame_every_m": self.frame_every_m, "frame_every_rad": self.frame_every_rad,
                "frame_interval_s": self.frame_interval_s, "ekf_params": self._ekf_params,
                "vo_params": self._vo_params, "map_params": self._map_params,
                "cov0": None if self._cov0 is None else np.array(self._cov0, dtype=np.float64),
                "motion_prior": bool(self._motion_prior), "use_accel": bool(self._use_accel),
                "near": bool(self.near)}

    @classmethod
    def from_replay_config(cls, camera: StereoCamera, profile, config: dict) -> "RenderedPerception":
        """The source :meth:`replay_config` described, on another camera (a :class:`PlaybackCamera`). A
        configuration recorded before the ``near`` option existed made no near maps (``near=False``)."""
        per = cls(camera, profile, frame_every_m=config["frame_every_m"], frame_interval_s=config["frame_interval_s"],
                  ekf_params=config["ekf_params"], vo_params=config["vo_params"], map_params=config["map_params"],
                  cov0=config["cov0"], motion_prior=config["motion_prior"], near=bool(config.get("near", False)))
        per.frame_every_rad = _number("frame_every_rad", config["frame_every_rad"], gt=0)
        per._use_accel = bool(config["use_accel"])
        return per

    # ------------------------------------------------------------------ fault emulation
    def set_vo_dropout(self, active: bool) -> None:
        """While active, frames are still captured and mapped but VO is not run on them (a VO outage):
        the filter bridges on wheels and gyro; VO resumes on the next frame after it ends."""
        self._vo_dropout = bool(active)

    # ------------------------------------------------------------------ internals
    def _pipe(self) -> StereoNavPipeline:
        if self.pipeline is None:
            raise RuntimeError("RenderedPerception: call start(t_s, T_world_body0) first")
        return self.pipeline

    def _mark_attempt(self, t: float) -> None:
        ekf = self.pipeline.ekf
        self._attempt = (t, ekf.wheel_distance_m, ekf.position_m, ekf.yaw_pitch_roll_rad[0])

    def _due(self, t, vx, vy, wz) -> bool:
        ekf = self.pipeline.ekf
        t0, w0, p0, yaw0 = self._attempt
        moved = max(ekf.wheel_distance_m - w0, float(np.linalg.norm(ekf.position_m - p0)))
        turned = abs(_wrap(ekf.yaw_pitch_roll_rad[0] - yaw0))
        moving = abs(vx) + abs(vy) > 1e-3 or abs(wz) > 1e-3
        return (moved >= self.frame_every_m or turned >= self.frame_every_rad
                or (moving and t - t0 >= self.frame_interval_s - 1e-9))

    def _grab(self) -> StereoFrame | None:
        t0 = time.perf_counter()
        self._captures += 1
        try:
            fr = self.camera.capture()
        except OSError as e:           # DriverError (timeouts, closed, link) and OS-level I/O errors
            self._camera_errors += 1
            self._last_camera_error = f"{type(e).__name__}: {e}"
            log.debug("camera capture failed: %s", self._last_camera_error)
            return None
        finally:
            self._capture_s.append(time.perf_counter() - t0)
            if len(self._capture_s) > 10000:
                del self._capture_s[:5000]
        if fr is None:
            self._camera_empty += 1
            return None
        return fr

    def _capture(self, t: float, *, want_map: bool, grid):
        self._mark_attempt(t)
        fr = self._grab()
        if fr is None:
            return None
        return self._process(fr, want_map=want_map, grid=grid)

    def _process(self, fr: StereoFrame, *, want_map: bool, grid):
        if not fr.t_s > self._t_last_frame:
            self._stale += 1
            log.debug("frame %s at t=%.3f s is not newer than the last one (t=%.3f s): skipped", fr.seq, fr.t_s,
                      self._t_last_frame)
            return None
        self._t_last_frame = fr.t_s
        res = self.pipeline.frame(fr.t_s, fr.seq, fr.left, fr.right, grid=grid, want_map=want_map,
                                  run_vo=not self._vo_dropout, near=want_map and self.near)
        self._last = (fr, res)
        return fr, res
