"""Pure-software simulator: terrain, rover physics, sensors, cameras (virtual devices come later).

Public API (imported lazily, so ``import sim`` compiles nothing)::

    World, SimClock            the world: terrain, planet, soils, sun, deterministic clock, seeds
    SimRover, TruthState       the in-process rover backend (drivers.base.Rover) with test hooks
    RoverModel                 terrain-settled rover physics (used by SimRover)
    StereoRenderer, render_view   stereo navigation cameras with ground-truth depth
    generate_terrain           seeded synthetic Moon / Mars / Earth-yard terrain
"""
from __future__ import annotations

__all__ = ["World", "SimClock", "SimRover", "TruthState", "RoverModel", "StereoRenderer", "render_view",
           "generate_terrain"]

_WHERE = {"World": "world", "SimClock": "world", "SimRover": "sim_rover", "TruthState": "sim_rover",
          "RoverModel": "rover_model", "StereoRenderer": "camera", "render_view": "camera",
          "generate_terrain": "terrain"}


def __getattr__(name):
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module 'sim' has no attribute {name!r}")
