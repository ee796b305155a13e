"""Exception taxonomy for drivers/ (and every rover backend, real or simulated).

``DriverError`` derives from ``IOError`` like pyserial's ``SerialException``, so callers that
already guard port I/O catch it. Range errors on commands are also ``ValueError``.
Every message names the device (port, address or backend), the value and the rule.
"""
from __future__ import annotations

__all__ = [
    "DriverError", "DeviceClosed", "DeviceTimeout", "LinkLost", "ProtocolError", "DeviceFault",
    "NotArmed", "CommandOutOfRange", "EStopActive", "ModeRejected",
]


class DriverError(IOError):
    """Base class of every error raised by a rover backend."""


class DeviceClosed(DriverError):
    """An operation needs an open device and it is closed (or was never opened)."""


class DeviceTimeout(DriverError):
    """The device did not answer within its deadline."""


class LinkLost(DriverError):
    """The link to the device is gone (port vanished, too many failed polls); the rover is
    treated as stopped."""


class ProtocolError(DriverError):
    """Bytes arrived that do not follow the wire protocol (bad checksum, framing, content)."""


class DeviceFault(DriverError):
    """The device reports a fault (over-current, driver fault, over-temperature...)."""


class NotArmed(DriverError):
    """A motion command was given while the rover is disarmed."""


class EStopActive(NotArmed):
    """A motion command was given after an emergency stop; ``arm()`` again to clear it."""


class ModeRejected(DriverError):
    """The vehicle is in a mode that does not accept motion targets (e.g. ArduPilot not GUIDED)."""


class CommandOutOfRange(DriverError, ValueError):
    """A command breaks the rover's limits (speed, yaw rate, steering, turning radius)."""
