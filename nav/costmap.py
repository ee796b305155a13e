"""The result of traversability analysis: a cost grid with its explanation layers."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .terrain_map import TerrainMap

__all__ = ["CostMap", "LETHAL_SLOPE", "LETHAL_STEP", "LETHAL_ROUGHNESS", "LETHAL_UNKNOWN",
           "LETHAL_INFLATED", "describe_reasons"]

# Bit flags in CostMap.reason (uint8): why a cell is lethal.
LETHAL_SLOPE = 1
LETHAL_STEP = 2
LETHAL_ROUGHNESS = 4
LETHAL_UNKNOWN = 8
LETHAL_INFLATED = 16   # within the rover's radius of a lethal cell


@dataclass(frozen=True, eq=False)
class CostMap:
    """Traversal cost per cell plus the hazard layers it came from.

    Attributes
    ----------
    terrain : TerrainMap
        The map the layers were computed on (same shape, frame and cell size).
    cost : (rows, cols) float32
        Cost of driving through a cell, >= 1 on traversable cells, ``np.inf`` on
        lethal ones.
    slope_deg, step_m, roughness_m : (rows, cols) float32
        GESTALT hazard layers (NaN where unknown).
    reason : (rows, cols) uint8
        Bitwise OR of ``LETHAL_*`` flags; 0 for traversable cells.
    limits : dict
        The limits used (``max_slope_deg``, ``max_step_m``, ``max_roughness_m``,
        ``inflation_radius_m``, ...), for explanations.
    """

    terrain: TerrainMap
    cost: np.ndarray
    slope_deg: np.ndarray
    step_m: np.ndarray
    roughness_m: np.ndarray
    reason: np.ndarray
    limits: dict

    @property
    def shape(self) -> tuple[int, int]:
        return self.cost.shape

    @property
    def cell_size_m(self) -> float:
        return self.terrain.cell_size_m

    @property
    def lethal(self) -> np.ndarray:
        return ~np.isfinite(self.cost)

    def explain(self, rc) -> str:
        """One sentence on why cell ``rc`` is (or is not) lethal."""
        r, c = int(rc[0]), int(rc[1])
        flags = int(self.reason[r, c])
        if flags == 0:
            return f"traversable (cost {float(self.cost[r, c]):.2f})"
        return describe_reasons(flags, float(self.slope_deg[r, c]), float(self.step_m[r, c]),
                                float(self.roughness_m[r, c]), self.limits, self._nearest_source(r, c))

    def _nearest_source(self, r: int, c: int):
        """For an inflated cell, the nearest cell that is lethal in its own right."""
        own = (self.reason & ~np.uint8(LETHAL_INFLATED)) != 0
        rad = int(np.ceil(self.limits.get("inflation_radius_m", 0.0) / self.cell_size_m)) + 1
        r0, r1 = max(r - rad, 0), min(r + rad + 1, self.shape[0])
        c0, c1 = max(c - rad, 0), min(c + rad + 1, self.shape[1])
        sub = np.argwhere(own[r0:r1, c0:c1])
        if len(sub) == 0:
            return None
        sub = sub + (r0, c0)
        d = ((sub - (r, c)) ** 2).sum(axis=1)
        rr, cc = sub[int(np.argmin(d))]
        return (int(rr), int(cc), int(self.reason[rr, cc]), float(self.slope_deg[rr, cc]),
                float(self.step_m[rr, cc]), float(self.roughness_m[rr, cc]))


def describe_reasons(flags, slope_deg, step_m, roughness_m, limits, source=None) -> str:
    """Human sentence for a lethal-reason bitmask."""
    parts = []
    if flags & LETHAL_SLOPE:
        parts.append(f"slope {slope_deg:.1f}° > max_slope_deg {limits['max_slope_deg']:g}")
    if flags & LETHAL_STEP:
        parts.append(f"step {step_m:.2f} m > max_step_m {limits['max_step_m']:g}")
    if flags & LETHAL_ROUGHNESS:
        parts.append(f"roughness {roughness_m:.3f} m > max_roughness_m {limits['max_roughness_m']:g}")
    if flags & LETHAL_UNKNOWN:
        parts.append("terrain unknown (unknown policy is lethal)")
    if flags & LETHAL_INFLATED and not parts:
        rad = limits.get("inflation_radius_m", 0.0)
        if source is not None:
            sr, sc, sflags, s_sl, s_st, s_ro = source
            why = describe_reasons(sflags & ~LETHAL_INFLATED, s_sl, s_st, s_ro, limits)
            parts.append(f"within the rover radius {rad:g} m of cell (row {sr}, col {sc}) where {why}")
        else:
            parts.append(f"within the rover radius {rad:g} m of a lethal cell")
    return "; ".join(parts)
