"""The rover interface: one contract for every backend, real or simulated.

A RoboClaw bus (JPL Open Source Rover), an Arduino build on our own protocol, an ArduPilot
rover over MAVLink and the in-process simulator (:class:`sim.SimRover`) all implement
:class:`Rover`. Code above this layer never asks which one it has.

Lifecycle::

    with SimRover(world, profile) as rover:      # open() on enter, stop + close on exit
        rover.arm()                               # energise; motion commands allowed
        rover.set_twist(0.2, 0.0)                 # body twist, validated against the profile
        tel = rover.read_telemetry()              # timestamped encoders, IMU, battery, faults
        rover.stop()                              # zero wheel speeds, stays armed
        rover.estop()                             # zero, discard queued commands, disarm, latch
        rover.arm()                               # the only way out of an e-stop

Public methods validate, keep the state machine, then call the ``_hooks`` below; the
state machine and validation live here once, so backends cannot disagree about them.

Subclasses **must** override:

* ``_open()`` — connect; raise a :class:`~drivers.errors.DriverError` naming the port.
* ``_close()`` — release everything; called once, also after a failed ``_open``.
* ``_send_wheels(speed_radps, steer_rad)`` — queue or send per-wheel targets (validated,
  float64 arrays, one per wheel in :attr:`layout` order).
* ``_read_telemetry()`` — return the latest :class:`Telemetry`.

and **may** override:

* ``_arm()`` / ``_disarm()`` — energise / de-energise the drive (default: nothing).
* ``_stop()`` — zero speed on the wire now (default: ``_send_wheels`` with zero speeds
  and the last steering angles).
* ``_estop()`` — hardware emergency stop (default: ``_stop()``); must also discard any
  queued command (``_discard_pending``).
* ``_discard_pending()`` — drop commands not yet on the wire (default: nothing).
* ``_send_twist(vx, wz)`` — for backends that take a body twist natively (ArduPilot);
  the default converts with :meth:`WheelLayout.inverse` and calls ``_send_wheels``.
"""
from __future__ import annotations

import enum
import logging
import math
from dataclasses import dataclass, field

import numpy as np

from .clock import Clock, MonotonicClock
from .errors import DeviceClosed, DriverError, EStopActive, NotArmed
from .kinematics import WheelLayout

__all__ = ["Rover", "Telemetry", "ImuSample", "BatterySample", "Fault", "encoder_delta", "unwrap_counts"]

log = logging.getLogger(__name__)


class Fault(enum.IntFlag):
    """Fault flags a backend can raise. Several may be set at once."""
    NONE = 0
    LINK_LOST = 1 << 0        # no answer from the device (port gone, failed polls)
    DEVICE_FAULT = 1 << 1     # device-reported driver fault, bad firmware state
    ESTOP = 1 << 2            # emergency stop latched (host or device)
    WATCHDOG = 1 << 3         # a watchdog stopped the motors (no fresh command)
    OVERCURRENT = 1 << 4      # motor current at or over its limit (stall)
    BATTERY_LOW = 1 << 5      # pack voltage under the low-voltage threshold
    OVERTEMP = 1 << 6
    ENCODER_FAULT = 1 << 7    # encoder frozen, reset or implausible
    MODE_REJECTED = 1 << 8    # vehicle not in a mode that accepts targets (ArduPilot)
    TILT = 1 << 9             # tilt past the profile's max_tilt_deg
    HIGH_CENTERED = 1 << 10   # belly on the ground: wheels spin without progress
    TIPPED_OVER = 1 << 11     # past the static stability limit
    OFF_MAP = 1 << 12         # simulator: a wheel left the known terrain
    PROTOCOL = 1 << 13        # corrupt frames seen on the link

    def describe(self) -> str:
        return ", ".join(f.name.lower() for f in Fault if f and f in self) or "none"


#: Faults after which a backend refuses motion until they clear (and the rover is re-armed).
STOPPING_FAULTS = Fault.LINK_LOST | Fault.DEVICE_FAULT | Fault.ESTOP | Fault.TIPPED_OVER


@dataclass(frozen=True)
class ImuSample:
    """One IMU reading in the body frame (x forward, y left, z up).

    ``accel_mps2`` is specific force: at rest on level ground it reads ``(0, 0, +g)``.
    """
    t_s: float
    gyro_radps: np.ndarray
    accel_mps2: np.ndarray


@dataclass(frozen=True)
class BatterySample:
    t_s: float
    voltage_v: float
    current_a: float = math.nan
    state_of_charge: float = math.nan   # 0..1, NaN when the device cannot tell


@dataclass(frozen=True)
class Telemetry:
    """The latest state a backend knows, stamped on the backend's clock.

    Per-wheel arrays follow :attr:`Rover.layout` order; NaN marks a value the hardware does
    not report. ``encoder_counts`` are the raw counter values as the device holds them
    (int32 that wraps on real controllers); use :func:`encoder_delta` for differences.
    """
    t_s: float
    seq: int
    encoder_counts: np.ndarray              # int64 holding the device's raw (wrapping) counts
    wheel_speed_radps: np.ndarray
    steer_rad: np.ndarray
    motor_current_a: np.ndarray
    imu: ImuSample | None = None
    battery: BatterySample | None = None
    heading_rad: float = math.nan           # absolute heading (sun sensor / compass), CCW from east
    faults: Fault = Fault.NONE
    armed: bool = False
    extra: dict = field(default_factory=dict, compare=False)


def encoder_delta(new, old, bits: int = 32) -> np.ndarray:
    """Counts travelled from ``old`` to ``new`` on ``bits``-bit wrapping counters
    (the shortest signed difference modulo ``2**bits``)."""
    m = 1 << bits
    d = (np.asarray(new, dtype=np.int64) - np.asarray(old, dtype=np.int64)) % m
    return np.where(d >= m // 2, d - m, d)


def unwrap_counts(raw, bits: int = 32) -> np.ndarray:
    """Unwrap a (time, wheel) sequence of raw wrapping counts into continuous int64 counts."""
    raw = np.asarray(raw, dtype=np.int64)
    if raw.shape[0] == 0:
        return raw.copy()
    steps = encoder_delta(raw[1:], raw[:-1], bits)
    return np.concatenate([raw[:1], raw[:1] + np.cumsum(steps, axis=0)])


class Rover:
    """Base class of every rover backend (see the module docstring for the contract).

    Parameters
    ----------
    layout : WheelLayout
        Wheels and limits; commands are validated against it.
    clock : Clock
        Time base for telemetry stamps and watchdogs (default: monotonic real time).
    name : str
        Names the device in every error (a port URL, ``"sim"``...).
    """

    def __init__(self, layout: WheelLayout, *, clock: Clock | None = None, name: str = "rover"):
        if not isinstance(layout, WheelLayout):
            raise TypeError(f"layout must be a WheelLayout, got {type(layout).__name__}")
        self.layout = layout
        self.clock = clock if clock is not None else MonotonicClock()
        self.name = str(name)
        self._is_open = False
        self._closed = False
        self._armed = False
        self._estopped = False
        self._steer = np.zeros(layout.n_wheels)
        self._last_command_s = math.nan

    # ------------------------------------------------------------------ lifecycle
    @property
    def is_open(self) -> bool:
        return self._is_open

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def armed(self) -> bool:
        return self._armed

    @property
    def estopped(self) -> bool:
        return self._estopped

    @property
    def last_command_s(self) -> float:
        """Clock time of the last accepted motion command (NaN if none)."""
        return self._last_command_s

    def open(self) -> "Rover":
        if self._closed:
            raise DeviceClosed(f"{self.name}: closed; create a new backend to reconnect")
        if not self._is_open:
            try:
                self._open()
            except BaseException:
                self._safe_close()
                raise
            self._is_open = True
        return self

    def arm(self) -> None:
        """Energise the drive. Clears a latched e-stop; motion needs a fresh command after."""
        self._require_open()
        self._arm()
        self._armed = True
        self._estopped = False
        log.info("%s: armed", self.name)

    def disarm(self) -> None:
        """Stop and de-energise. Safe to call in any state except closed."""
        self._require_open()
        try:
            self._stop()
        finally:
            self._armed = False
            self._disarm()

    def close(self) -> None:
        """Stop the wheels (best effort) and release the device. Idempotent."""
        if self._closed:
            return
        if self._is_open:
            try:
                self._stop()
            except DriverError as e:
                log.warning("%s: stop on close failed: %s", self.name, e)
        self._safe_close()

    def _safe_close(self):
        self._closed = True
        was_open, self._is_open, self._armed = self._is_open, False, False
        try:
            self._close()
        except DriverError as e:
            if was_open:
                log.warning("%s: close failed: %s", self.name, e)

    def __enter__(self) -> "Rover":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):  # pragma: no cover - best effort at interpreter teardown
        try:
            if self._is_open and not self._closed:
                self.close()
        except Exception:
            pass

    # ------------------------------------------------------------------ commands
    def set_twist(self, vx_mps: float, wz_radps: float) -> None:
        """Drive with body speed ``vx_mps`` (forward +) and yaw rate ``wz_radps`` (CCW +)."""
        vx, wz = self.layout.check_twist(vx_mps, wz_radps, device=self.name)
        self._require_motion()
        self._send_twist(vx, wz)
        self._last_command_s = self.clock.now()

    def set_wheels(self, speed_radps, steer_rad=None) -> None:
        """Drive each wheel at ``speed_radps`` (rad/s, + rolls forward); steerable wheels to
        ``steer_rad`` (rad, + turns the wheel's heading CCW; omitted = keep current)."""
        steer = self._steer if steer_rad is None else steer_rad
        s, d = self.layout.check_wheels(speed_radps, steer, device=self.name)
        self._require_motion()
        self._steer = d
        self._send_wheels(s, d)
        self._last_command_s = self.clock.now()

    def stop(self) -> None:
        """Zero wheel speed now (steering kept). Allowed whenever the device is open."""
        self._require_open()
        self._stop()

    def estop(self) -> None:
        """Emergency stop: zero speed, discard queued commands, disarm and latch until ``arm()``."""
        self._require_open()
        self._estopped = True
        self._armed = False
        try:
            self._discard_pending()
        finally:
            self._estop()
        log.warning("%s: emergency stop", self.name)

    # ------------------------------------------------------------------ telemetry
    def read_telemetry(self) -> Telemetry:
        self._require_open()
        tel = self._read_telemetry()
        if self._estopped and Fault.ESTOP not in tel.faults:
            tel = _replace(tel, faults=tel.faults | Fault.ESTOP)
        return tel

    # ------------------------------------------------------------------ checks
    def _require_open(self):
        if self._closed:
            raise DeviceClosed(f"{self.name}: device is closed")
        if not self._is_open:
            raise DeviceClosed(f"{self.name}: device is not open; call open() first")

    def _require_motion(self):
        self._require_open()
        if self._estopped:
            raise EStopActive(f"{self.name}: emergency stop is latched; call arm() to clear it")
        if not self._armed:
            raise NotArmed(f"{self.name}: not armed; call arm() before commanding motion")

    # ------------------------------------------------------------------ hooks
    def _open(self) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError

    def _send_wheels(self, speed_radps: np.ndarray, steer_rad: np.ndarray) -> None:
        raise NotImplementedError

    def _read_telemetry(self) -> Telemetry:
        raise NotImplementedError

    def _arm(self) -> None:
        pass

    def _disarm(self) -> None:
        pass

    def _stop(self) -> None:
        self._send_wheels(np.zeros(self.layout.n_wheels), self._steer.copy())

    def _estop(self) -> None:
        self._stop()

    def _discard_pending(self) -> None:
        pass

    def _send_twist(self, vx_mps: float, wz_radps: float) -> None:
        speed, steer = self.layout.inverse(vx_mps, wz_radps)
        if vx_mps == 0.0 and wz_radps == 0.0:
            steer = self._steer.copy()   # stopping does not re-centre the corners
        self._steer = steer
        self._send_wheels(speed, steer)

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("armed" if self._armed else ("open" if self._is_open else "new"))
        return f"{type(self).__name__}({self.name!r}, {state})"


def _replace(tel: Telemetry, **changes) -> Telemetry:
    import dataclasses

    return dataclasses.replace(tel, **changes)
