"""Exception taxonomy for nav/.

Kernels return integer status codes; the Python wrappers turn them into these.
Every message names the parameter, the value and the rule it broke.
"""
from __future__ import annotations

__all__ = [
    "NavError",
    "DEMError",
    "PlanningError",
    "StartOutsideMap",
    "GoalOutsideMap",
    "StartInHazard",
    "GoalInHazard",
    "NoPathFound",
    "PlanningTimedOut",
    "PlanningCancelled",
    "ConfigError",
]


class NavError(Exception):
    """Base class of every error raised by nav/."""


class DEMError(NavError, ValueError):
    """A DEM file is missing, corrupt, truncated, unsupported or in unusable units.

    The message always names the file.
    """

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ConfigError(NavError, ValueError):
    """A YAML config is malformed or breaks a rule.

    Attributes name the file, dotted key, offending value, rule and line (1-based,
    ``None`` when unknown), and the message reads
    ``configs/rovers/osr.yaml: drive.max_speed_mps = -1: must be > 0 (line 12)``.
    """

    def __init__(self, file, key: str, value, rule: str, line: int | None = None):
        self.file = str(file)
        self.key = key
        self.value = value
        self.rule = rule
        self.line = line
        where = f" (line {line})" if line is not None else ""
        lhs = f"{key} = {value!r}" if key else "document"
        super().__init__(f"{self.file}: {lhs}: {rule}{where}")


class PlanningError(NavError):
    """Base class of planning failures."""


class StartOutsideMap(PlanningError):
    """The start lies outside the map."""


class GoalOutsideMap(PlanningError):
    """The goal lies outside the map."""


class StartInHazard(PlanningError):
    """The start lies in a lethal cell; the message says which layer made it lethal."""


class GoalInHazard(PlanningError):
    """The goal lies in a lethal cell; the message says which layer made it lethal."""


class NoPathFound(PlanningError):
    """Every route from start to goal crosses a lethal cell."""


class PlanningTimedOut(PlanningError):
    """The expansion budget or the deadline ran out before the goal was reached."""


class PlanningCancelled(PlanningError):
    """The caller cancelled the search."""
