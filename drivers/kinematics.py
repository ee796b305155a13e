"""Wheel layouts and the rover's kinematics: body twist <-> wheel speeds and steering angles.

Body frame (REP-103): x forward, y left, z up; the origin is the centre of the wheel
footprint (the drive axle for a two-wheel differential rover) at ground level. Wheels are
ordered left side front to rear, then right side front to rear.

* :meth:`WheelLayout.inverse` — what each wheel must do for a body twist ``(vx, wz)``:
  every wheel's contact point moves with ``(vx - wz*y, wz*x)``; a steerable wheel is turned
  to that direction (within +-90 deg, reversing its speed if needed), a fixed wheel turns
  at the forward component (so skid-steer wheels scrub sideways while turning).
* :meth:`WheelLayout.forward` — the body twist ``(vx, vy, wz)`` that best explains the
  wheels' rolling velocities in the least-squares sense (each wheel contributes its rolling
  velocity along its heading and zero sideways velocity). For a symmetric skid-steer rover
  this gives ``wz = t (v_R - v_L) / (t^2 + b^2)`` (track ``t``, wheelbase ``b``) instead of the
  differential drive's ``(v_R - v_L) / t``: the familiar turning loss of skid steering, an
  instantaneous-centre expansion factor ``(t^2 + b^2) / t^2`` that grows with the wheelbase (cf. Mandow et al. 2007,
  "Experimental kinematics for wheeled skid-steer mobile robots", IROS).

The layout reads a rover profile by duck typing (``profile.kind``, ``profile.geometry``,
``profile.drive``) so drivers/ does not import nav/.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .errors import CommandOutOfRange

__all__ = ["WheelLayout"]

_EPS = 1e-9


@dataclass(frozen=True, eq=False)
class WheelLayout:
    """Where the wheels are and what the drive can do.

    Parameters
    ----------
    kind : str
        ``"rocker_bogie"``, ``"skid_steer"`` or ``"differential"``.
    position_xy_m : (n, 2) float array
        Wheel contact centres in the body frame, left side front to rear, then right side.
    steerable : (n,) bool array
        Which wheels can be steered.
    wheel_radius_m, counts_per_rev : wheel radius and encoder counts per wheel revolution.
    max_speed_mps, max_yaw_rate_radps, max_accel_mps2 : drive limits of the body.
    min_turning_radius_m : float
        Tightest arc for ``vx != 0`` (0 = any); a point turn (``vx == 0``) is allowed when
        this is 0 or the rover has steerable wheels.
    max_steer_rad : float
        Steering limit of steerable wheels (symmetric).
    caster_xy_m : (k, 2) float array
        Passive contact points (a differential rover's caster), for the simulator's settling.
    """
    kind: str
    position_xy_m: np.ndarray
    steerable: np.ndarray
    wheel_radius_m: float
    counts_per_rev: int
    max_speed_mps: float
    max_yaw_rate_radps: float
    max_accel_mps2: float
    min_turning_radius_m: float = 0.0
    max_steer_rad: float = 0.5 * math.pi
    caster_xy_m: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    names: tuple = ()

    def __post_init__(self):
        pos = np.array(self.position_xy_m, dtype=np.float64, copy=True)
        if pos.ndim != 2 or pos.shape[1] != 2 or len(pos) < 2:
            raise ValueError(f"position_xy_m must have shape (n >= 2, 2), got {pos.shape}")
        st = np.array(self.steerable, dtype=bool, copy=True).reshape(-1)
        if st.shape != (len(pos),):
            raise ValueError(f"steerable must have {len(pos)} entries, got {st.shape}")
        cas = np.array(self.caster_xy_m, dtype=np.float64, copy=True).reshape(-1, 2)
        for a in (pos, st, cas):
            a.setflags(write=False)
        object.__setattr__(self, "position_xy_m", pos)
        object.__setattr__(self, "steerable", st)
        object.__setattr__(self, "caster_xy_m", cas)
        for name in ("wheel_radius_m", "max_speed_mps", "max_yaw_rate_radps", "max_accel_mps2"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} = {v!r}: must be a finite number > 0")
        if not (isinstance(self.counts_per_rev, (int, np.integer)) and self.counts_per_rev >= 1):
            raise ValueError(f"counts_per_rev = {self.counts_per_rev!r}: must be an integer >= 1")
        object.__setattr__(self, "_xy", tuple((float(x), float(y), bool(st)) for (x, y), st in zip(pos, st)))
        if not self.names:
            object.__setattr__(self, "names", tuple(f"wheel{i}" for i in range(len(pos))))
        elif len(self.names) != len(pos):
            raise ValueError(f"names has {len(self.names)} entries for {len(pos)} wheels")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_profile(cls, profile) -> "WheelLayout":
        """The layout of a :class:`nav.config.RoverProfile` (read by attribute names)."""
        g, d, kind = profile.geometry, profile.drive, profile.kind
        n = int(g.num_wheels)
        hb, ht = 0.5 * g.wheelbase_m, 0.5 * g.track_m
        casters = np.zeros((0, 2))
        if kind == "rocker_bogie":
            if n != 6:
                raise ValueError(f"{profile.name}: a rocker_bogie rover has 6 wheels, got num_wheels = {n}")
            xs = np.array([hb, 0.0, -hb])
            labels = ("front", "middle", "rear")
            steer_side = np.array([True, False, True]) & bool(d.steerable_corners)
        elif kind in ("skid_steer", "differential"):
            if n % 2 or n < 2 or (kind == "skid_steer" and n < 4):
                raise ValueError(f"{profile.name}: a {kind} rover needs an even number of wheels "
                                 f"({'>= 4' if kind == 'skid_steer' else '>= 2'}), got num_wheels = {n}")
            per = n // 2
            if per == 1:
                xs = np.array([0.0])
                labels = ("",)
                casters = np.array([[-g.wheelbase_m, 0.0]])
            else:
                xs = np.linspace(hb, -hb, per)
                labels = tuple(f"{i}" for i in range(per)) if per > 3 else ("front", "middle", "rear")[:1] + \
                    (("middle",) if per == 3 else ()) + ("rear",)
            steer_side = np.zeros(per, dtype=bool)
        else:
            raise ValueError(f"{profile.name}: unknown rover kind {kind!r}")
        pos = np.concatenate([np.stack([xs, np.full_like(xs, ht)], 1), np.stack([xs, np.full_like(xs, -ht)], 1)])
        names = tuple(f"{lab}_{side}".lstrip("_") for side in ("left", "right") for lab in labels)
        return cls(kind=kind, position_xy_m=pos, steerable=np.concatenate([steer_side, steer_side]),
                   wheel_radius_m=float(g.wheel_radius_m), counts_per_rev=int(d.encoder_counts_per_rev),
                   max_speed_mps=float(d.max_speed_mps), max_yaw_rate_radps=math.radians(d.max_yaw_rate_dps),
                   max_accel_mps2=float(d.max_accel_mps2), min_turning_radius_m=float(d.min_turning_radius_m),
                   caster_xy_m=casters, names=names)

    # ------------------------------------------------------------------ properties
    @property
    def n_wheels(self) -> int:
        return len(self.position_xy_m)

    @property
    def can_point_turn(self) -> bool:
        return self.min_turning_radius_m == 0 or bool(self.steerable.any())

    @property
    def max_wheel_speed_radps(self) -> float:
        """Fastest wheel speed a valid twist can ask for (outer wheel of the tightest fast turn)."""
        reach = float(np.max(np.hypot(self.position_xy_m[:, 0], self.position_xy_m[:, 1])))
        return (self.max_speed_mps + self.max_yaw_rate_radps * reach) / self.wheel_radius_m

    @property
    def radians_per_count(self) -> float:
        return 2.0 * math.pi / self.counts_per_rev

    # ------------------------------------------------------------------ kinematics
    def inverse(self, vx_mps: float, wz_radps: float) -> tuple[np.ndarray, np.ndarray]:
        """Wheel speeds (rad/s, signed) and steering angles (rad) for body twist ``(vx, wz)``.

        Fixed wheels get steering 0. A steerable wheel whose contact point does not move keeps
        steering 0.
        """
        # plain Python over a handful of wheels: several times faster than numpy on 6-element arrays,
        # and this runs on every control tick
        r = self.wheel_radius_m
        speed = [0.0] * len(self._xy)
        steer = [0.0] * len(self._xy)
        for i, (x, y, st) in enumerate(self._xy):
            ux = vx_mps - wz_radps * y
            if not st:
                speed[i] = ux / r
                continue
            uy = wz_radps * x
            mag = math.hypot(ux, uy)
            if mag <= _EPS:
                continue
            ang = math.atan2(uy, ux)
            if abs(ang) > 0.5 * math.pi + _EPS:      # drive the wheel backwards instead of turning past 90 deg
                ang -= math.copysign(math.pi, ang)
                mag = -mag
            steer[i] = ang
            speed[i] = mag / r
        return np.array(speed), np.array(steer)

    def forward(self, speed_radps, steer_rad=None) -> tuple[float, float, float]:
        """Least-squares body twist ``(vx, vy, wz)`` from wheel speeds and steering angles."""
        s = np.asarray(speed_radps, dtype=np.float64) * self.wheel_radius_m
        d = np.zeros(self.n_wheels) if steer_rad is None else np.asarray(steer_rad, dtype=np.float64)
        b = np.concatenate([s * np.cos(d), s * np.sin(d)])
        sol = self._forward_pinv() @ b
        return float(sol[0]), float(sol[1]), float(sol[2])

    def _forward_pinv(self) -> np.ndarray:
        """Pseudo-inverse of the (constant) wheel-velocity matrix of :meth:`forward`: each wheel contact
        moves at ``(vx - wz y, vy + wz x)``; computed once per layout (forward runs every control tick)."""
        P = self.__dict__.get("_pinv")
        if P is None:
            x, y = self.position_xy_m[:, 0], self.position_xy_m[:, 1]
            n = self.n_wheels
            A = np.zeros((2 * n, 3))
            A[:n, 0] = 1.0
            A[:n, 2] = -y
            A[n:, 1] = 1.0
            A[n:, 2] = x
            P = np.linalg.pinv(A)
            object.__setattr__(self, "_pinv", P)    # a cache on a frozen dataclass
        return P

    # ------------------------------------------------------------------ validation
    def check_twist(self, vx_mps, wz_radps, *, device: str = "rover") -> tuple[float, float]:
        """Validate a body twist against the limits; returns it as floats or raises
        :class:`~drivers.errors.CommandOutOfRange`."""
        vx, wz = _finite(vx_mps, "vx_mps", device), _finite(wz_radps, "wz_radps", device)
        if abs(vx) > self.max_speed_mps * (1 + 1e-9):
            raise CommandOutOfRange(f"{device}: vx_mps = {vx:g}: |vx| must be <= max_speed_mps "
                                    f"{self.max_speed_mps:g}")
        if abs(wz) > self.max_yaw_rate_radps * (1 + 1e-9):
            raise CommandOutOfRange(f"{device}: wz_radps = {wz:g} ({math.degrees(wz):.1f} deg/s): |wz| must be "
                                    f"<= max_yaw_rate {math.degrees(self.max_yaw_rate_radps):g} deg/s")
        if wz != 0.0 and self.min_turning_radius_m > 0:
            if vx == 0.0:
                if not self.can_point_turn:
                    raise CommandOutOfRange(f"{device}: a point turn (vx = 0, wz = {wz:g}) needs "
                                            f"min_turning_radius_m = 0 or steerable wheels")
            elif abs(vx / wz) < self.min_turning_radius_m * (1 - 1e-9):
                raise CommandOutOfRange(f"{device}: turning radius |vx/wz| = {abs(vx / wz):.3f} m is below "
                                        f"min_turning_radius_m {self.min_turning_radius_m:g}")
        if self.steerable.any() and self.max_steer_rad < 0.5 * math.pi:   # inverse() never exceeds 90 deg
            _, steer = self.inverse(vx, wz)
            bad = np.abs(steer) > self.max_steer_rad + 1e-9
            if bad.any():
                i = int(np.argmax(bad))
                raise CommandOutOfRange(f"{device}: twist (vx={vx:g}, wz={wz:g}) needs steering "
                                        f"{math.degrees(steer[i]):.1f} deg on {self.names[i]}, beyond "
                                        f"max_steer {math.degrees(self.max_steer_rad):g} deg")
        return vx, wz

    def check_wheels(self, speed_radps, steer_rad=None, *, device: str = "rover") -> tuple[np.ndarray, np.ndarray]:
        """Validate per-wheel speeds (rad/s) and steering (rad); returns float64 copies."""
        n = self.n_wheels
        s = _vector(speed_radps, n, "speed_radps", device)
        d = np.zeros(n) if steer_rad is None else _vector(steer_rad, n, "steer_rad", device)
        lim = self.max_wheel_speed_radps
        if (np.abs(s) > lim * (1 + 1e-9)).any():
            i = int(np.argmax(np.abs(s)))
            raise CommandOutOfRange(f"{device}: speed_radps[{i}] ({self.names[i]}) = {s[i]:g}: must be within "
                                    f"+-{lim:.4g} rad/s")
        fixed_turned = (~self.steerable) & (d != 0)
        if fixed_turned.any():
            i = int(np.argmax(fixed_turned))
            raise CommandOutOfRange(f"{device}: steer_rad[{i}] = {d[i]:g} but {self.names[i]} cannot steer")
        if (np.abs(d) > self.max_steer_rad + 1e-9).any():
            i = int(np.argmax(np.abs(d)))
            raise CommandOutOfRange(f"{device}: steer_rad[{i}] ({self.names[i]}) = {d[i]:g}: must be within "
                                    f"+-{self.max_steer_rad:.4g} rad")
        return s, d


def _finite(v, name, device) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise CommandOutOfRange(f"{device}: {name} = {v!r}: must be a number")
    v = float(v)
    if not math.isfinite(v):
        raise CommandOutOfRange(f"{device}: {name} = {v!r}: must be finite")
    return v


def _vector(v, n, name, device) -> np.ndarray:
    try:
        a = np.array(v, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise CommandOutOfRange(f"{device}: {name} = {v!r}: must be {n} numbers") from None
    if a.shape != (n,):
        raise CommandOutOfRange(f"{device}: {name} has {a.size} values: the rover has {n} wheels")
    if not np.isfinite(a).all():
        raise CommandOutOfRange(f"{device}: {name} = {a.tolist()}: must be finite")
    return a
