"""The rover interface, its kinematics, error taxonomy and wire-protocol codecs (serial drivers come later).

``Rover`` (in :mod:`drivers.base`) is the one interface every backend implements.
"""
from .base import BatterySample, Fault, ImuSample, Rover, Telemetry, encoder_delta, unwrap_counts
from .clock import Clock, ManualClock, MonotonicClock
from .errors import (AckError, ChecksumError, CommandOutOfRange, DeviceClosed, DeviceFault, DeviceTimeout,
                     DriverError, EStopActive, FramingError, LinkLost, MalformedReply, ModeRejected, NotArmed,
                     ProtocolError)
from .kinematics import WheelLayout

__all__ = ["Rover", "Telemetry", "ImuSample", "BatterySample", "Fault", "encoder_delta", "unwrap_counts",
           "Clock", "ManualClock", "MonotonicClock", "WheelLayout", "DriverError", "DeviceClosed", "DeviceTimeout",
           "LinkLost", "ProtocolError", "ChecksumError", "FramingError", "AckError", "MalformedReply", "DeviceFault", "NotArmed", "EStopActive", "ModeRejected",
           "CommandOutOfRange"]
