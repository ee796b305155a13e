"""Rover physics for the simulator: terrain settling, motors, slip, motion and hazard events.

:class:`RoverModel` is the ground truth under :class:`sim.SimRover`. It is quasi-static and
kinematic: no forces integrate into velocities; each physics substep the wheels turn as the
motors allow, roll over the soil with slip, the body moves with the twist the wheels agree
on, and the chassis is set down on the terrain again. Everything runs in one Numba kernel
call per :meth:`RoverModel.step` (:mod:`sim._physics_kernels`). Frames are those of
:mod:`sim.frames` (world ENU, body REP-103, ``R_world_body = Rz(yaw) Ry(pitch) Rx(roll)``).

Model, per substep of ``dt``
----------------------------
1. **Motors.** Each wheel's speed slews toward its command at ``drive.max_accel_mps2 /
   wheel_radius_m`` (rad/s²); the rotation over the substep is the exact integral of that
   ramp, so a start from rest covers the closed-form trapezoid distance. Steerable wheels
   slew toward their steering command at ``drive.steer_rate_dps``.
2. **Settling.** Contact points are the body-frame wheel (and caster) positions rotated by
   the yaw only and placed at the body origin — horizontal, without the foreshortening of a
   pitched chassis (a 20° pitch stretches the footprint by 6 %). The terrain height is the
   bilinear height of :meth:`nav.TerrainMap.height_at`. A wheel of radius ``r`` sits on the
   *envelope* of the ground along its heading::

       z_contact = max over |d| <= r of  h(p + d u) - (r - sqrt(r² - d²))

   sampled at ``2 K + 1`` points (``K = clip(ceil(2 r / cell), 3, 16)``), i.e. the height of
   the lowest point of a disc resting on the profile: a wheel rides up onto a low step as it
   approaches it instead of jumping. Casters get the same envelope (the wheels' radius, along
   the heading). On a plane of slope ``θ`` along the heading this lifts every contact alike
   by at most ``r (sec θ - 1)`` (the wheel touches uphill of its axle), so attitudes on
   planes are exact and the body origin sits that little above the ground.

   * ``rocker_bogie`` (6 wheels, the differential suspension of Bickler's patent US 4,840,394,
     flown on Sojourner, MER, MSL and Mars 2020): per side the bogie pivot is at the mean
     height of the middle and rear contacts (at their mid-x), the rocker pivot at body
     ``x = 0`` on the line from the front contact to the bogie pivot; the slopes of the two
     rockers average into the body's slope along x (the differential), the left/right pivot
     heights over the track give the slope across, and the origin is between the pivots.
     All six wheels touch.
   * ``skid_steer`` / ``differential`` (rigid, no suspension): the chassis rests on the facet
     of the *upper convex hull* of the contact points (wheels and casters) above the
     projection of the centre of mass — the support tripod that holds it. The profile gives
     no horizontal CG position; the model takes the centroid of the contacts' body xy moved
     back by 1 % of their x span (:attr:`RoverModel.cg_xy_m`). A perfectly centred CG would
     sit on both diagonals of a four-wheel rectangle, where the chassis balances on a
     diagonal and the two tripods tie; slightly rear-heavy, the tripod is unique, the
     attitude is continuous while the terrain changes smoothly, and it jumps only when the
     CG crosses a tripod's edge (the rover rocks over onto another tripod). E.g. over a hole
     under a front wheel the rover rests level on the other three; over a hole under a rear
     wheel it tips into it. Exact ties (coplanar contacts) go to the most level facet, then
     the first in index order. Contacts more than 1 mm below the plane do not touch and give
     no traction.

   The body plane is ``z = z0 + sx x' + sy y'`` in yaw-aligned horizontal coordinates; then
   ``pitch = -atan(sx)`` and ``roll = atan(sy cos(pitch))`` exactly (body x and y lie in the
   plane), ``tilt = atan(hypot(sx, sy))``.
3. **Hazards.** Belly clearance is the minimum, over a grid of points (spacing at most one
   cell, up to 24 × 24) on the rectangle between the outermost axles and the inner wheel
   faces, of the distance along the body normal from the terrain up to the belly plane
   (body plane + ``geometry.belly_clearance_m``). Clearance < 0 raises ``HIGH_CENTERED``:
   the wheels lose traction (no translation, slip 1, stalled) while it lasts — a push or a
   teleport ends it. Static stability (the static stability factor ``T / 2H`` of rollover
   ratings): ``|roll| > atan((track/2) / h_cg)`` or ``|pitch| > atan((wheelbase/2) / h_cg)``
   with ``h_cg = geometry.cg_height_m`` (0: ``belly_clearance_m + wheel_radius_m``) latches
   ``TIPPED_OVER`` (no motion at all until :meth:`RoverModel.teleport`). ``tilt >
   hazards.max_tilt_deg`` raises ``TILT`` (a warning, motion unaffected). A move that would
   put a contact, or a sample of a wheel's envelope, over an off-map or NaN cell is refused
   and raises ``OFF_MAP``: the rover cannot leave the world (the flag clears on the next
   accepted substep, e.g. when the command stops or reverses). A move that carries a wheel
   toward a rise of more than the *climb limit* within one wheel radius ahead of its axle
   (terrain height relative to the ground under the axle) is refused: the wheels spin and
   stall. The climb limit is one wheel diameter for ``rocker_bogie`` (the suspension pushes a
   wheel up a face) and one wheel radius for rigid rovers (a driven wheel cannot roll up a
   face above its axle). Both refusals stop the whole rover for that substep.
4. **Motion.** Wheel ``i`` rolls at ``w_i r (1 - s_i)`` along its heading, ``w_i`` the mean
   motor speed over the substep, ``s_i`` the soil's slip (:class:`nav.config.Soil`, the soil
   of the cell under the wheel) at the climb angle along its direction of travel on the body
   plane (positive uphill; reversing uphill climbs too), or ``slip_override``. The body twist
   ``(vx, vy, wz)`` is the least-squares fit of the touching wheels' rolling velocities (zero
   sideways), exactly :meth:`drivers.kinematics.WheelLayout.forward` — for four skid-steered
   wheels at ``(±b/2, ±t/2)`` the turning loss ``wz = t (vR - vL) / (t² + b²)``, the
   differential rate ``(vR - vL) / t`` shrunk by ``t² / (t² + b²)`` (cf. the
   instantaneous-centre expansion of Mandow et al. 2007). On a side slope the rover also
   drifts downhill across its heading at ``lateral_slip_gain · |v| · sin(roll)`` (horizontal;
   ``|v|`` the mean rolling speed of the touching wheels, so a point turn drifts too). Speeds along the body plane are projected to the horizontal
   (``u = vx cos(pitch) + vy sin(pitch) sin(roll)``, ``v = vy cos(roll)``), the yaw rate is
   ``wz``, and the horizontal pose moves along the exact SE(2) arc of that constant twist
   (the exponential map of se(2), e.g. Lynch & Park, *Modern Robotics*, 2017, §3.3), plus
   ``push_world_mps · dt``. On level ground with ``slip_flat = 0`` the pose follows the
   kinematic circle to float rounding.
5. **Forces** (for motor currents), per touching wheel, in its rotation sense::

       F_i = m (g (c_rr cos(tilt) sign(w_i) + sin(θ_i)) + r dw_i/dt) / n_touch

   ``θ_i`` the slope along the wheel's heading (uphill positive), ``c_rr`` the soil's
   ``rolling_resistance``; the mean over the call. High-centred wheels only churn
   (``m g c_rr cos(tilt) / n``); wheels held by a refused move push at ``0.6 m g cos(tilt) / n``
   (a sand traction coefficient) and are flagged stalled.
6. **IMU truth**, means over the call's substeps: the body rate from the rotation change
   ``log(R_prev^T R) / dt``, and the specific force ``R^T (a_world + g ẑ)`` with ``a_world``
   the second difference of the body origin's world position, rotated with the attitude of
   the substep it is centred on (the previous one), so a steady turn reads the exact
   centripetal ``v wz``. On rough ground the settled height makes it noisy, as a real
   accelerometer is; level and steady it reads ``(0, 0, g)``.

``slip`` reports the true longitudinal slip ``1 - v_ground / v_wheel`` of each wheel (0 for a
wheel at rest), from the body's actual motion — it includes the scrub of skid steering and is
1 for wheels that spin without progress.

Events
------
:attr:`RoverModel.events` gets a :class:`SimEvent` when a flag rises — ``"tilt"``,
``"high_centered"``, ``"tipped_over"``, ``"off_map"``, and ``"blocked"`` (a move refused at a
step; a flag of its own, :attr:`RoverModel.blocked`, not a ``Fault``) — and ``"<kind> cleared"``
when it clears, stamped at the end of the substep (``t0_s + (k + 1) dt``; construction and
:meth:`RoverModel.teleport` stamp ``world.time_s``). More than 64 changes in one call are
counted in a single ``"events_dropped"`` event.
"""
from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import numpy as np

from drivers.base import Fault
from drivers.kinematics import WheelLayout
from nav.config import RoverProfile

from .frames import T_world_body as _T_world_body
from .world import World

__all__ = ["RoverModel", "SimEvent"]

#: Hazard flags the model raises (drivers.base.Fault bits).
MODEL_FAULTS = Fault.TILT | Fault.HIGH_CENTERED | Fault.TIPPED_OVER | Fault.OFF_MAP
_BLOCKED_BIT = 1 << 40                       # internal flag: a move refused at a tall step (not a Fault)
_EVENT_CAPACITY = 64
_CONTACT_TOL_M = 1e-3                        # a rigid rover's wheel within this of the support plane touches
_STALL_TRACTION = 0.6                        # traction coefficient of a wheel held against a step
_CG_BACK_FRACTION = 0.01                     # rigid rovers: CG behind the contacts' centroid, fraction of x span
_FLAG_KINDS = ((int(Fault.TILT), "tilt"), (int(Fault.HIGH_CENTERED), "high_centered"),
               (int(Fault.TIPPED_OVER), "tipped_over"), (int(Fault.OFF_MAP), "off_map"), (_BLOCKED_BIT, "blocked"))


class SimEvent(NamedTuple):
    """Something the simulator reports: ``kind`` is a flag name (``"high_centered"``, ``"off_map"``...)
    when it rises, the name + ``" cleared"`` when it clears, or a backend's own kind (``"watchdog"``)."""
    t_s: float
    kind: str
    detail: str


def _kernels():
    """The Numba kernels, imported on first use so that importing the module compiles nothing."""
    from . import _physics_kernels
    return _physics_kernels


class RoverModel:
    """A rover settled on a :class:`~sim.world.World`'s terrain (see the module docstring for the model).

    Parameters
    ----------
    world : World
    profile : RoverProfile
        ``kind`` ``rocker_bogie``, ``skid_steer`` or ``differential``.
    x_m, y_m, yaw_rad : float
        Start pose of the body origin (horizontal); the rover is settled there at rest.
    layout : WheelLayout, optional
        Default ``WheelLayout.from_profile(profile)``.

    Raises
    ------
    ValueError
        A contact of the rover at the start pose is off the map or over unknown terrain, or
        the layout does not fit the profile.
    """

    def __init__(self, world: World, profile: RoverProfile, *, x_m: float, y_m: float, yaw_rad: float = 0.0,
                 layout: WheelLayout | None = None):
        if not isinstance(world, World):
            raise TypeError(f"world must be a sim.World, got {type(world).__name__}")
        if not isinstance(profile, RoverProfile):
            raise TypeError(f"profile must be a nav.config.RoverProfile, got {type(profile).__name__}")
        layout = WheelLayout.from_profile(profile) if layout is None else layout
        if not isinstance(layout, WheelLayout):
            raise TypeError(f"layout must be a drivers.kinematics.WheelLayout, got {type(layout).__name__}")
        if layout.kind != profile.kind:
            raise ValueError(f"layout.kind = {layout.kind!r} but profile.kind = {profile.kind!r}: must match")
        K = _kernels()
        self._K = K
        self.world = world
        self.profile = profile
        self.layout = layout
        g = profile.geometry
        terrain = world.terrain
        nw = layout.n_wheels
        casters = np.asarray(layout.caster_xy_m, dtype=np.float64).reshape(-1, 2)
        nc = nw + len(casters)
        self._nw = nw
        self._nshape = (nw,)
        self._names = tuple(layout.names) + tuple(f"caster{i}" for i in range(len(casters)))
        r = float(layout.wheel_radius_m)

        geo = np.zeros((nc, 3))
        xy_all = np.concatenate([np.asarray(layout.position_xy_m, dtype=np.float64), casters])
        #: horizontal centre of mass in the body frame (see the module docstring)
        self.cg_xy_m = xy_all.mean(axis=0) - np.array([_CG_BACK_FRACTION * float(np.ptp(xy_all[:, 0])), 0.0])
        geo[:nw, :2] = layout.position_xy_m
        geo[nw:, :2] = casters
        geo[:nw, 2] = layout.steerable.astype(np.float64)
        if profile.kind == "rocker_bogie":
            kind = K.KIND_ROCKER_BOGIE
            if nw != 6 or len(casters):
                raise ValueError(f"a rocker_bogie layout needs 6 wheels and no casters, got {nw} wheels, "
                                 f"{len(casters)} casters")
            for side, name in ((0, "left"), (3, "right")):
                xs = geo[side:side + 3, 0]
                if not (xs[0] > 0.0 >= xs[2] and xs[0] > xs[1] > xs[2]):
                    raise ValueError(f"rocker_bogie layout: {name} wheels must run front to rear with the front "
                                     f"one ahead of body x = 0 and the rear one behind it, got x = {xs.tolist()}")
            if not geo[0, 1] > geo[3, 1]:
                raise ValueError("rocker_bogie layout: left wheels (first three) must have larger y than right ones")
            tri = np.zeros((0, 3), dtype=np.int64)
            tri_inv = np.zeros((0, 9))
        else:
            kind = K.KIND_RIGID
            tri, tri_inv = support_triangles(geo[:, :2], self.cg_xy_m)
            if not len(tri):
                raise ValueError(f"{profile.name}: no three contacts surround the centre of mass; cannot settle")

        cell = terrain.cell_size_m
        x_lo, x_hi = geo[:, 0].min(), geo[:, 0].max()
        y_lo, y_hi = geo[:nw, 1].min() + 0.5 * g.wheel_width_m, geo[:nw, 1].max() - 0.5 * g.wheel_width_m
        if y_hi <= y_lo:
            y_lo, y_hi = geo[:nw, 1].min(), geo[:nw, 1].max()
        nbx = int(np.clip(math.ceil((x_hi - x_lo) / cell) + 1, 2, 24))
        nby = int(np.clip(math.ceil((y_hi - y_lo) / cell) + 1, 2, 24))
        bx, by = np.meshgrid(np.linspace(x_lo, x_hi, nbx), np.linspace(y_lo, y_hi, nby), indexing="ij")
        self._belly = np.ascontiguousarray(np.stack([bx.ravel(), by.ravel()], axis=1))

        h_cg = g.cg_height_m if g.cg_height_m > 0 else g.belly_clearance_m + g.wheel_radius_m
        self.tip_roll_rad = math.atan(0.5 * g.track_m / h_cg)
        self.tip_pitch_rad = math.atan(0.5 * g.wheelbase_m / h_cg)
        self.climb_limit_m = 2.0 * r if profile.kind == "rocker_bogie" else r
        self.n_envelope = int(np.clip(math.ceil(2.0 * r / cell), 3, 16))
        prm = np.zeros(K.N_PRM)
        prm[K.P_OX], prm[K.P_OY] = terrain.origin_xy_m
        prm[K.P_CELL] = cell
        prm[K.P_RADIUS] = r
        prm[K.P_ALPHA] = float(layout.max_accel_mps2) / r
        prm[K.P_STEER_RATE] = math.radians(profile.drive.steer_rate_dps)
        prm[K.P_MASS] = g.mass_kg
        prm[K.P_GRAVITY] = world.gravity_mps2
        prm[K.P_BELLY] = g.belly_clearance_m
        prm[K.P_TIP_ROLL] = self.tip_roll_rad
        prm[K.P_TIP_PITCH] = self.tip_pitch_rad
        prm[K.P_MAX_TILT] = math.radians(profile.hazards.max_tilt_deg)
        prm[K.P_CLIMB] = self.climb_limit_m
        prm[K.P_CONTACT_TOL] = _CONTACT_TOL_M
        prm[K.P_STALL_TRACTION] = _STALL_TRACTION
        iprm = np.zeros(K.N_IPRM, dtype=np.int64)
        iprm[K.I_KIND] = kind
        iprm[K.I_NW] = nw
        iprm[K.I_NC] = nc
        iprm[K.I_NENV] = self.n_envelope
        iprm[K.I_BIT_TILT] = int(Fault.TILT)
        iprm[K.I_BIT_HC] = int(Fault.HIGH_CENTERED)
        iprm[K.I_BIT_TIP] = int(Fault.TIPPED_OVER)
        iprm[K.I_BIT_OFF] = int(Fault.OFF_MAP)
        iprm[K.I_BIT_BLOCK] = _BLOCKED_BIT

        self._z = terrain.elevation_m
        self._soil_idx = np.ascontiguousarray(world.soil_index, dtype=np.uint8)
        self._soil = np.ascontiguousarray(world.soil_params, dtype=np.float64)
        self._prm, self._iprm, self._geo = prm, iprm, geo
        self._tri, self._tri_inv = np.ascontiguousarray(tri, dtype=np.int64), np.ascontiguousarray(tri_inv)
        self._st = np.zeros(K.N_ST)
        self._ist = np.zeros(K.N_IST, dtype=np.int64)
        self._ws = np.zeros((K.N_W, nc))
        self._cand = np.zeros((K.N_W, nc))
        self._res = np.zeros(K.N_RES)
        self._ev = np.zeros((_EVENT_CAPACITY, K.N_EV))
        self._fault_mask = int(MODEL_FAULTS)
        self.events: list[SimEvent] = []
        self._place(x_m, y_m, yaw_rad, "x_m, y_m")

    # ------------------------------------------------------------------ pose
    @property
    def x_m(self) -> float:
        return float(self._st[0])

    @property
    def y_m(self) -> float:
        return float(self._st[1])

    @property
    def z_m(self) -> float:
        return float(self._st[2])

    @property
    def yaw_rad(self) -> float:
        return float(self._st[3])

    @property
    def pitch_rad(self) -> float:
        return float(self._st[4])

    @property
    def roll_rad(self) -> float:
        return float(self._st[5])

    def T_world_body(self) -> np.ndarray:
        """(4, 4) pose of the body in the world."""
        s = self._st
        return _T_world_body(s[0], s[1], s[2], s[3], s[4], s[5])

    @property
    def tilt_rad(self) -> float:
        """Angle between the body z axis and the world z axis."""
        return float(self._st[self._K.S_TILT])

    @property
    def clearance_m(self) -> float:
        """Smallest belly clearance (negative: the belly is on the ground)."""
        return float(self._st[self._K.S_CLEAR])

    # ------------------------------------------------------------------ velocities and wheels
    @property
    def vx_mps(self) -> float:
        return float(self._st[self._K.S_VX])

    @property
    def vy_mps(self) -> float:
        return float(self._st[self._K.S_VY])

    @property
    def wz_radps(self) -> float:
        return float(self._st[self._K.S_WZ])

    @property
    def wheel_speed_radps(self) -> np.ndarray:
        """Actual motor speeds (after the acceleration limit), rad/s."""
        return self._ws[self._K.W_SPEED, :self._nw].copy()

    @property
    def steer_rad(self) -> np.ndarray:
        """Actual steering angles (after the slew-rate limit), rad."""
        return self._ws[self._K.W_STEER, :self._nw].copy()

    @property
    def wheel_angle_rad(self) -> np.ndarray:
        """Cumulative wheel rotation since the start (what encoders measure), rad."""
        return self._ws[self._K.W_ANGLE, :self._nw].copy()

    @property
    def slip(self) -> np.ndarray:
        """Longitudinal slip ``1 - v_ground / v_wheel`` of each wheel in the last substep (0 at rest)."""
        return self._ws[self._K.W_SLIP, :self._nw].copy()

    @property
    def wheel_force_n(self) -> np.ndarray:
        """Mean traction force of each wheel over the last step() call, N, in its rotation sense."""
        return self._ws[self._K.W_FORCE, :self._nw].copy()

    @property
    def wheel_stalled(self) -> np.ndarray:
        """Wheels turning against a refused move, high-centred, or at slip 1 (last substep)."""
        return self._ws[self._K.W_STALL, :self._nw] != 0.0

    @property
    def wheel_contact(self) -> np.ndarray:
        """Wheels touching the ground (a rigid rover's wheel can hang over a hole)."""
        return self._ws[self._K.W_CONTACT, :self._nw] != 0.0

    @property
    def contact_z_m(self) -> np.ndarray:
        """Envelope contact height of each wheel then caster (world z of the wheel's lowest point)."""
        return self._ws[self._K.W_ZC].copy()

    @property
    def gyro_true_radps(self) -> np.ndarray:
        """Body-frame angular rate, mean over the last step() call."""
        return self._st[self._K.S_GYRO:self._K.S_GYRO + 3].copy()

    @property
    def accel_true_mps2(self) -> np.ndarray:
        """Body-frame specific force (level at rest: ``(0, 0, +g)``), mean over the last step() call."""
        return self._st[self._K.S_ACC:self._K.S_ACC + 3].copy()

    @property
    def faults(self) -> Fault:
        """TILT, HIGH_CENTERED, TIPPED_OVER, OFF_MAP bits currently true."""
        return Fault(int(self._ist[0]) & self._fault_mask)

    @property
    def blocked(self) -> bool:
        """The last substep's move was refused at a step taller than :attr:`climb_limit_m`."""
        return bool(int(self._ist[0]) & _BLOCKED_BIT)

    # ------------------------------------------------------------------ stepping
    def step(self, n_steps: int, dt_s: float, wheel_cmd_radps, steer_cmd_rad, *, slip_override: float = math.nan,
             push_world_mps=(0.0, 0.0), t0_s: float = 0.0) -> None:
        """Run ``n_steps`` physics substeps of ``dt_s`` with constant commands (one kernel call).

        Parameters
        ----------
        n_steps : int >= 1
        dt_s : float > 0
        wheel_cmd_radps, steer_cmd_rad : (n,) float
            Motor speed and steering targets per wheel (layout order); wheels that cannot steer
            must get 0.
        slip_override : float
            If finite (within [-1, 1]), the longitudinal slip of every wheel instead of the soil's.
        push_world_mps : (2,) float
            Extra world-frame horizontal velocity during these substeps (a shove).
        t0_s : float
            World time at the start, for event timestamps (an event in substep ``k`` is stamped
            ``t0_s + (k + 1) * dt_s``).
        """
        if type(n_steps) is not int:
            if isinstance(n_steps, (bool, np.bool_)) or not isinstance(n_steps, (int, np.integer)):
                raise ValueError(f"n_steps = {n_steps!r}: must be an integer >= 1")
            n_steps = int(n_steps)
        if n_steps < 1:
            raise ValueError(f"n_steps = {n_steps!r}: must be an integer >= 1")
        dt = _number(dt_s, "dt_s")
        if not (0.0 < dt < math.inf):
            raise ValueError(f"dt_s = {dt_s!r}: must be a finite number > 0")
        w = wheel_cmd_radps
        if not (type(w) is np.ndarray and w.dtype == np.float64 and w.shape == self._nshape
                and w.flags.c_contiguous):
            w = self._vector(w, "wheel_cmd_radps")
        d = steer_cmd_rad
        if not (type(d) is np.ndarray and d.dtype == np.float64 and d.shape == self._nshape
                and d.flags.c_contiguous):
            d = self._vector(d, "steer_cmd_rad")
        slip = _number(slip_override, "slip_override")
        if slip == slip and not (-1.0 <= slip <= 1.0):
            raise ValueError(f"slip_override = {slip_override!r}: must be NaN (soil model) or within [-1, 1]")
        try:
            px, py = push_world_mps
            px, py = float(px), float(py)
        except (TypeError, ValueError):
            raise ValueError(f"push_world_mps = {push_world_mps!r}: must be two numbers (m/s, world x and y)") \
                from None
        if not (math.isfinite(px) and math.isfinite(py)):
            raise ValueError(f"push_world_mps = {push_world_mps!r}: must be finite")
        t0 = _number(t0_s, "t0_s")
        if not math.isfinite(t0):
            raise ValueError(f"t0_s = {t0_s!r}: must be finite")
        status = self._K._step_rover(self._z, self._soil_idx, self._soil, self._prm, self._iprm, self._geo,
                                     self._tri, self._tri_inv, self._belly, self._st, self._ist, self._ws,
                                     self._cand, self._res, self._ev, w, d, n_steps, dt, slip, px, py)
        if status:
            self._raise_command(status, w, d)
        if self._ist[1]:
            self._drain_events(t0, dt)

    def teleport(self, x_m: float, y_m: float, yaw_rad: float = 0.0) -> None:
        """Set the rover down at a pose, at rest (wheel speeds and velocities zeroed, steering and
        wheel angles kept); clears a TIPPED_OVER latch. Flag changes are stamped ``world.time_s``."""
        self._place(x_m, y_m, yaw_rad, "teleport")

    # ------------------------------------------------------------------ internals
    def _place(self, x_m, y_m, yaw_rad, what: str) -> None:
        x, y, yaw = _number(x_m, "x_m"), _number(y_m, "y_m"), _number(yaw_rad, "yaw_rad")
        for name, v in (("x_m", x), ("y_m", y), ("yaw_rad", yaw)):
            if not math.isfinite(v):
                raise ValueError(f"{name} = {v!r}: must be finite")
        K = self._K
        status = K._place_rover(self._z, self._soil_idx, self._prm, self._iprm, self._geo, self._tri,
                                self._tri_inv, self._belly, self._st, self._ist, self._ws, self._cand, self._res,
                                self._ev, x, y, yaw)
        if status == K.OFF_MAP:
            i = int(self._ist[K.J_BAD])
            c, s = math.cos(yaw), math.sin(yaw)
            bx, by = self._geo[i, :2]
            raise ValueError(f"{what}: pose (x={x:.3f} m, y={y:.3f} m, yaw={math.degrees(yaw):.1f} deg) puts "
                             f"{self._names[i]} at ({x + c * bx - s * by:.3f}, {y + s * bx + c * by:.3f}) within "
                             f"a wheel radius of an off-map or unknown cell: must be on the known terrain "
                             f"{_extent(self.world.terrain)}")
        if self._ist[K.J_NEV]:
            self._drain_events(self.world.time_s, 0.0)

    def _vector(self, v, name) -> np.ndarray:
        try:
            a = np.ascontiguousarray(v, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise ValueError(f"{name} = {v!r}: must be {self._nw} numbers (one per wheel)") from None
        if a.shape != self._nshape:
            raise ValueError(f"{name} has {a.size} values: must have one per wheel ({self._nw})")
        return a

    def _raise_command(self, status, w, d):
        K = self._K
        i = int(self._ist[K.J_BAD])
        name = self._names[i]
        if status == K.BAD_WHEEL_CMD:
            raise ValueError(f"wheel_cmd_radps[{i}] ({name}) = {w[i]!r}: must be finite")
        if status == K.BAD_STEER_CMD:
            raise ValueError(f"steer_cmd_rad[{i}] ({name}) = {d[i]!r}: must be finite")
        if status == K.FIXED_STEER:
            raise ValueError(f"steer_cmd_rad[{i}] = {d[i]!r} but {name} cannot steer: must be 0")
        raise RuntimeError(f"physics kernel returned status {status}")  # pragma: no cover

    def _drain_events(self, t0: float, dt: float) -> None:
        K = self._K
        n = int(self._ist[K.J_NEV])
        deg = math.degrees
        for row in self._ev[:min(n, len(self._ev))]:
            k = int(row[K.EV_STEP])
            t = t0 + (k + 1) * dt if k >= 0 else t0
            old, new = int(row[K.EV_OLD]), int(row[K.EV_NEW])
            at = f"at ({row[K.EV_X]:.3f}, {row[K.EV_Y]:.3f})"
            for bit, kind in _FLAG_KINDS:
                if (new & bit) and not (old & bit):
                    if kind == "tilt":
                        detail = (f"tilt {deg(row[K.EV_TILT]):.1f} deg > max_tilt_deg "
                                  f"{self.profile.hazards.max_tilt_deg:g} {at}")
                    elif kind == "high_centered":
                        detail = (f"belly clearance {row[K.EV_CLEAR]:.3f} m < 0 at ({row[K.EV_CLX]:.3f}, "
                                  f"{row[K.EV_CLY]:.3f}): the wheels spin without progress")
                    elif kind == "tipped_over":
                        detail = (f"roll {deg(row[K.EV_ROLL]):.1f} deg, pitch {deg(row[K.EV_PITCH]):.1f} deg past "
                                  f"the static stability limits {deg(self.tip_roll_rad):.1f} / "
                                  f"{deg(self.tip_pitch_rad):.1f} deg {at}: latched")
                    elif kind == "off_map":
                        w = int(row[K.EV_WHEEL])
                        who = self._names[w] if 0 <= w < len(self._names) else "a wheel"
                        detail = f"{who} would leave the known terrain {at}: move refused"
                    else:
                        w = int(row[K.EV_WHEEL])
                        who = self._names[w] if 0 <= w < len(self._names) else "a wheel"
                        detail = (f"{who} runs into a {row[K.EV_STEPH]:.3f} m step > climb limit "
                                  f"{self.climb_limit_m:.3f} m {at}: the wheels stall")
                    self.events.append(SimEvent(t, kind, detail))
                elif (old & bit) and not (new & bit):
                    self.events.append(SimEvent(t, f"{kind} cleared", f"{kind.replace('_', ' ')} cleared {at}"))
        if n > len(self._ev):
            self.events.append(SimEvent(t0, "events_dropped",
                                        f"{n - len(self._ev)} more flag changes in one step() call were not "
                                        f"recorded (buffer of {len(self._ev)})"))

    def __repr__(self) -> str:
        return (f"RoverModel({self.profile.name!r}, x={self.x_m:.3f}, y={self.y_m:.3f}, z={self.z_m:.3f}, "
                f"yaw={math.degrees(self.yaw_rad):.1f} deg, faults={self.faults.describe()})")


def support_triangles(xy, q) -> tuple[np.ndarray, np.ndarray]:
    """Contact triples whose horizontal triangle contains the point ``q`` (edges included), in
    lexicographic order, and for each the row-major inverse of ``[[1, x, y]]`` (heights ->
    ``(z0, sx, sy)`` of the plane through them)."""
    xy = np.asarray(xy, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    scale = float(np.ptp(xy, axis=0).max()) or 1.0
    tris, invs = [], []
    for t in itertools.combinations(range(len(xy)), 3):
        p = xy[list(t)]
        M = np.column_stack([np.ones(3), p])
        det = np.linalg.det(M)
        if abs(det) < 1e-9 * scale * scale:
            continue
        lam = np.linalg.solve(M.T, np.array([1.0, q[0], q[1]]))     # barycentric coordinates of q
        if lam.min() < -1e-9:
            continue
        tris.append(t)
        invs.append(np.linalg.inv(M).ravel())
    return (np.array(tris, dtype=np.int64).reshape(-1, 3), np.array(invs, dtype=np.float64).reshape(-1, 9))


def _number(v, name) -> float:
    if isinstance(v, float):
        return v
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} = {v!r}: must be a number")
    return float(v)


def _extent(terrain) -> str:
    x0, x1, y0, y1 = terrain.extent_m
    return f"x in [{x0:g}, {x1:g}] m, y in [{y0:g}, {y1:g}] m"

