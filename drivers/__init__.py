"""The rover interface, its kinematics and error taxonomy; serial drivers come later.

``Rover`` (in :mod:`drivers.base`) is the one interface every backend implements.
"""
from .base import BatterySample, Fault, ImuSample, Rover, Telemetry, encoder_delta, unwrap_counts
from .clock import Clock, ManualClock, MonotonicClock
from .errors import (CommandOutOfRange, DeviceClosed, DeviceFault, DeviceTimeout, DriverError, EStopActive,
                     LinkLost, ModeRejected, NotArmed, ProtocolError)
from .kinematics import WheelLayout

__all__ = ["Rover", "Telemetry", "ImuSample", "BatterySample", "Fault", "encoder_delta", "unwrap_counts",
           "Clock", "ManualClock", "MonotonicClock", "WheelLayout", "DriverError", "DeviceClosed", "DeviceTimeout",
           "LinkLost", "ProtocolError", "DeviceFault", "NotArmed", "EStopActive", "ModeRejected",
           "CommandOutOfRange"]
