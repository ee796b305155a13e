"""Exception taxonomy for drivers/ (and every rover backend, real or simulated).

``DriverError`` derives from ``IOError`` like pyserial's ``SerialException``, so callers that
already guard port I/O catch it. Range errors on commands are also ``ValueError``.
Every message names the device (port, address or backend), the value and the rule.
"""
from __future__ import annotations

__all__ = [
    "DriverError", "DeviceClosed", "DeviceTimeout", "LinkLost", "PortInUse", "PortNotFound", "ProtocolError",
    "ChecksumError", "FramingError", "AckError", "MalformedReply", "DeviceFault",
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


class PortInUse(DriverError):
    """The port is held by another program (exclusive lock), so this one must not drive the rover."""


class PortNotFound(DriverError):
    """No device at the port's path (unplugged, renamed, or never there) or no handler for its URL."""


class ProtocolError(DriverError):
    """Bytes arrived that do not follow the wire protocol (bad checksum, framing, content)."""


class ChecksumError(ProtocolError):
    """A received checksum does not match the one computed over the received bytes.

    Attributes
    ----------
    expected : int
        CRC computed over the received data.
    got : int
        CRC that arrived on the wire.
    """

    def __init__(self, message: str, *, expected: int, got: int):
        super().__init__(message)
        self.expected = int(expected)
        self.got = int(got)


class FramingError(ProtocolError):
    """Bytes between two delimiters are not a well-formed frame (bad COBS, too short/long)."""


class AckError(ProtocolError):
    """A write was not acknowledged with exactly one ``0xFF`` byte (RoboClaw)."""


class MalformedReply(ProtocolError):
    """A reply has the wrong length or shape (too long, no NUL in the version string...)."""


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
