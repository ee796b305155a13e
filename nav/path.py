"""The result of every planner."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Path"]


@dataclass(frozen=True, eq=False)
class Path:
    """A planned path.

    Attributes
    ----------
    points_rcf : (N, 2) float64
        Vertices in continuous grid coordinates (cell centres at integers). Grid
        planners return cell centres; any-angle planners (Field D*) return points
        on cell edges too.
    cells_rc : (M, 2) int64
        The cells the path visits in order (for grid planners the vertices
        themselves; for any-angle planners every cell the polyline passes through).
    xy_m : (N, 2) float64
        Vertices in world metres (from :func:`nav.plan_grid`: the grid's lower-left
        corner at the origin, scaled by its ``cell_size_m``).
    cost : float
        Cost under the convention of :mod:`nav.planning` (move length in cells
        times the mean of the two cells' costs, or its any-angle extension).
    length_m : float
        Euclidean length of the polyline in metres (cells × cell size).
    expanded : int
        Cells (nodes) expanded by the search.
    planner : str
        Name of the planner that produced it.
    """

    points_rcf: np.ndarray
    cells_rc: np.ndarray
    cost: float
    length_m: float
    expanded: int
    planner: str
    xy_m: np.ndarray | None = None
    info: dict = field(default_factory=dict, repr=False)

    @property
    def length_cells(self) -> float:
        d = np.diff(self.points_rcf, axis=0)
        return float(np.sqrt((d * d).sum(axis=1)).sum())

    def __len__(self) -> int:
        return len(self.points_rcf)

    def __repr__(self) -> str:
        return (f"Path({self.planner}: {len(self.points_rcf)} vertices, cost={self.cost:.3f}, "
                f"length={self.length_m:.2f} m, expanded={self.expanded})")
