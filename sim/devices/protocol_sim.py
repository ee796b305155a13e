"""pyserial URL handler module for ``sim://`` (pyserial imports ``<package>.protocol_<scheme>``).

The implementation lives in :mod:`sim.devices.urlhandler`; importing :mod:`sim.devices` puts
``"sim.devices"`` on ``serial.protocol_handler_packages`` so that ``serial.serial_for_url("sim://NAME")``
finds this module.
"""
from .urlhandler import SimSerial as Serial

__all__ = ["Serial"]
