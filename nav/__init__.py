"""Terrain maps, traversability, planners and geometry for rovers.

Public API::

    TerrainMap, load_dem                  terrain grids and DEM files
    traversability, CostMap               GESTALT-style hazard analysis
    plan, plan_grid, Path, DStarLite      planners (astar, dijkstra, field_dstar, dstar_lite)
    ArcPlanner, CostToGo, PurePursuit     local arcs + body check, path following
    RoverProfile, Planet, load_rover, load_planet
"""
from __future__ import annotations

from .config import Planet, RoverProfile, load_planet, load_rover
from .costmap import CostMap
from .follow import FollowCommand, PurePursuit
from .local_planner import ArcParams, ArcPlanner, CostToGo, LocalPlan, LocalPlanFailure
from .errors import (ConfigError, DEMError, GoalInHazard, GoalOutsideMap, NavError, NoPathFound,
                     PlanningCancelled, PlanningError, PlanningTimedOut, StartInHazard, StartOutsideMap)
from .path import Path
from .planning import PLANNERS, plan, plan_grid
from .terrain_map import TerrainMap
# eager but cheap (the Numba kernels load on first call): importing the submodule from
# __getattr__ would bind nav.traversability to the module instead of the function
from .traversability import traversability

__all__ = [
    "TerrainMap", "load_dem", "traversability", "CostMap", "plan", "plan_grid", "PLANNERS", "Path",
    "DStarLite", "ArcPlanner", "ArcParams", "CostToGo", "LocalPlan", "LocalPlanFailure", "PurePursuit",
    "FollowCommand", "RoverProfile", "Planet", "load_rover", "load_planet",
    "NavError", "DEMError", "ConfigError", "PlanningError", "StartOutsideMap", "GoalOutsideMap",
    "StartInHazard", "GoalInHazard", "NoPathFound", "PlanningTimedOut", "PlanningCancelled",
]


def __getattr__(name):  # lazy: keep `import nav` cheap (no Numba compile, no file I/O)
    if name == "load_dem":
        from .dem_io import load_dem
        return load_dem
    if name == "DStarLite":
        from .dstar_lite import DStarLite
        return DStarLite
    raise AttributeError(f"module 'nav' has no attribute {name!r}")
