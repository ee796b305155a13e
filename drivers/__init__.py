"""The rover interface, its kinematics, error taxonomy, wire-protocol codecs, transports and serial drivers.

``Rover`` (in :mod:`drivers.base`) is the one interface every backend implements.
"""
from .base import BatterySample, Fault, ImuSample, Rover, Telemetry, encoder_delta, unwrap_counts
from .clock import Clock, ManualClock, MonotonicClock
from .errors import (AckError, ChecksumError, CommandOutOfRange, DeviceClosed, DeviceFault, DeviceTimeout,
                     DriverError, EStopActive, FramingError, LinkLost, MalformedReply, ModeRejected, NotArmed,
                     PortInUse, PortNotFound, ProtocolError)
from .kinematics import WheelLayout

__all__ = ["Rover", "Telemetry", "ImuSample", "BatterySample", "Fault", "encoder_delta", "unwrap_counts",
           "Clock", "ManualClock", "MonotonicClock", "WheelLayout", "DriverError", "DeviceClosed", "DeviceTimeout",
           "LinkLost", "ProtocolError", "ChecksumError", "FramingError", "AckError", "MalformedReply", "DeviceFault", "NotArmed", "EStopActive", "ModeRejected",
           "CommandOutOfRange", "PortInUse", "PortNotFound", "open_rover", "PROTOCOLS"]


#: Serial protocols and the modules implementing their drivers (imported on demand: pyserial,
#: pymavlink). Each module defines ``open_rover(port, profile, **kw) -> Rover`` (not yet opened).
PROTOCOLS = {"roboclaw": "drivers.roboclaw", "rnp": "drivers.rnp", "mavlink": "drivers.mavlink"}


def open_rover(protocol: str, port: str, profile, **kw) -> Rover:
    """The driver for ``protocol`` on ``port`` (a URL), for rover ``profile`` (not yet opened)."""
    import importlib

    try:
        mod = PROTOCOLS[protocol]
    except KeyError:
        raise ValueError(f"protocol = {protocol!r}: must be one of {', '.join(PROTOCOLS)}") from None
    return importlib.import_module(mod).open_rover(port, profile, **kw)
