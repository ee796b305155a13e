"""Elevation grids with a world frame.

Grid convention (written once, used everywhere)
-----------------------------------------------
* ``elevation_m[r, c]``: row ``r`` grows with world **y** (north), column ``c``
  grows with world **x** (east). Row 0 is the *southern* edge, so a north-up
  raster read from a file is flipped on load.
* ``origin_xy_m`` is the world position of the **lower-left corner** of cell
  ``(0, 0)``. The **centre** of cell ``(r, c)`` is at
  ``x = ox + (c + 0.5) * cell_size_m``, ``y = oy + (r + 0.5) * cell_size_m``.
* A world point belongs to the cell whose square contains it:
  ``c = floor((x - ox) / cell_size_m)``, ``r = floor((y - oy) / cell_size_m)``.
* Continuous grid coordinates (``*_rcf``, used by any-angle paths) put cell
  centres at integer values: ``rf = (y - oy) / cell_size_m - 0.5``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["TerrainMap"]


@dataclass(frozen=True, eq=False)
class TerrainMap:
    """An elevation grid in metres (float32, NaN = unknown) placed in the world.

    Parameters
    ----------
    elevation_m : (rows, cols) array
        Heights in metres; coerced to C-contiguous float32. NaN marks unknown cells.
    cell_size_m : float
        Side of a square cell in metres, > 0.
    origin_xy_m : (float, float)
        World position of the lower-left corner of cell (0, 0).
    source : str
        Where the map came from (file name, generator preset), for reports.
    crs : str
        Free-text description of the horizontal frame (e.g. ``"local"``,
        ``"Equirectangular Mars"``); metres are always the unit.
    """

    elevation_m: np.ndarray
    cell_size_m: float
    origin_xy_m: tuple[float, float] = (0.0, 0.0)
    source: str = ""
    crs: str = "local"
    meta: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        z = np.asarray(self.elevation_m)
        if z.ndim != 2:
            raise ValueError(f"elevation_m must be 2-D, got shape {z.shape}")
        if z.shape[0] < 1 or z.shape[1] < 1:
            raise ValueError(f"elevation_m must not be empty, got shape {z.shape}")
        if not np.issubdtype(z.dtype, np.number):
            raise ValueError(f"elevation_m must be numeric, got dtype {z.dtype}")
        z = np.ascontiguousarray(z, dtype=np.float32)
        if np.isinf(z).any():
            r, c = np.argwhere(np.isinf(z))[0]
            raise ValueError(f"elevation_m has an infinite value at row {r}, col {c}; use NaN for unknown")
        cs = float(self.cell_size_m)
        if not np.isfinite(cs) or cs <= 0:
            raise ValueError(f"cell_size_m must be a finite number > 0, got {self.cell_size_m!r}")
        ox, oy = (float(v) for v in self.origin_xy_m)
        if not (np.isfinite(ox) and np.isfinite(oy)):
            raise ValueError(f"origin_xy_m must be finite, got {self.origin_xy_m!r}")
        object.__setattr__(self, "elevation_m", z)
        object.__setattr__(self, "cell_size_m", cs)
        object.__setattr__(self, "origin_xy_m", (ox, oy))

    # ---------------------------------------------------------------- geometry
    @property
    def shape(self) -> tuple[int, int]:
        return self.elevation_m.shape

    @property
    def extent_m(self) -> tuple[float, float, float, float]:
        """``(x_min, x_max, y_min, y_max)`` of the map's outer edges, in metres."""
        ox, oy = self.origin_xy_m
        rows, cols = self.shape
        return (ox, ox + cols * self.cell_size_m, oy, oy + rows * self.cell_size_m)

    def world_to_cell(self, xy_m) -> np.ndarray:
        """Cell ``(row, col)`` containing each world point.

        ``xy_m`` is ``(2,)`` or ``(N, 2)``; returns int64 of the same leading shape.
        Points outside the map map to out-of-range indices (see :meth:`contains`).
        """
        xy = np.asarray(xy_m, dtype=np.float64)
        ox, oy = self.origin_xy_m
        c = np.floor((xy[..., 0] - ox) / self.cell_size_m)
        r = np.floor((xy[..., 1] - oy) / self.cell_size_m)
        return np.stack([r, c], axis=-1).astype(np.int64)

    def cell_to_world(self, rc) -> np.ndarray:
        """World ``(x, y)`` of the centre of each cell (or continuous grid point).

        ``rc`` is ``(2,)`` or ``(N, 2)``, integer cells or float grid coordinates
        (cell centres at integers); returns float64 ``(..., 2)``.
        """
        rc = np.asarray(rc, dtype=np.float64)
        ox, oy = self.origin_xy_m
        x = ox + (rc[..., 1] + 0.5) * self.cell_size_m
        y = oy + (rc[..., 0] + 0.5) * self.cell_size_m
        return np.stack([x, y], axis=-1)

    def world_to_grid(self, xy_m) -> np.ndarray:
        """Continuous grid coordinates ``(rf, cf)`` (cell centres at integers)."""
        xy = np.asarray(xy_m, dtype=np.float64)
        ox, oy = self.origin_xy_m
        cf = (xy[..., 0] - ox) / self.cell_size_m - 0.5
        rf = (xy[..., 1] - oy) / self.cell_size_m - 0.5
        return np.stack([rf, cf], axis=-1)

    def in_bounds(self, rc) -> np.ndarray | bool:
        rc = np.asarray(rc)
        rows, cols = self.shape
        ok = (rc[..., 0] >= 0) & (rc[..., 0] < rows) & (rc[..., 1] >= 0) & (rc[..., 1] < cols)
        return bool(ok) if ok.ndim == 0 else ok

    def contains(self, xy_m) -> np.ndarray | bool:
        """Whether each world point lies inside the map."""
        return self.in_bounds(self.world_to_cell(xy_m))

    def height_at(self, xy_m) -> np.ndarray:
        """Bilinear height at world points (NaN outside the map or next to unknown cells)."""
        xy = np.atleast_2d(np.asarray(xy_m, dtype=np.float64))
        g = self.world_to_grid(xy)
        rows, cols = self.shape
        rf = np.clip(g[:, 0], 0, rows - 1)
        cf = np.clip(g[:, 1], 0, cols - 1)
        r0 = np.minimum(np.floor(rf).astype(np.int64), max(rows - 2, 0))
        c0 = np.minimum(np.floor(cf).astype(np.int64), max(cols - 2, 0))
        r1 = np.minimum(r0 + 1, rows - 1)
        c1 = np.minimum(c0 + 1, cols - 1)
        tr = rf - r0
        tc = cf - c0
        z = self.elevation_m.astype(np.float64)
        h = (z[r0, c0] * (1 - tr) * (1 - tc) + z[r0, c1] * (1 - tr) * tc
             + z[r1, c0] * tr * (1 - tc) + z[r1, c1] * tr * tc)
        h[~self.contains(xy)] = np.nan
        return h if np.ndim(xy_m) > 1 else h[0]

    # ------------------------------------------------------------- utilities
    @property
    def known_fraction(self) -> float:
        return float(np.isfinite(self.elevation_m).mean())

    def with_elevation(self, elevation_m: np.ndarray, **changes) -> "TerrainMap":
        """A copy with a new elevation grid of the same shape (or other fields changed)."""
        kw = dict(elevation_m=elevation_m, cell_size_m=self.cell_size_m,
                  origin_xy_m=self.origin_xy_m, source=self.source, crs=self.crs,
                  meta=dict(self.meta))
        kw.update(changes)
        return TerrainMap(**kw)

    def resampled(self, cell_size_m: float) -> "TerrainMap":
        """The same terrain at another resolution, keeping the outer edges' origin.

        Coarser grids average the fine cells each new cell covers (area-weighted,
        NaN-aware: a new cell is unknown only if none of what it covers is known);
        finer grids interpolate bilinearly between cell centres.
        """
        from ._resample import resample_grid

        cell_size_m = float(cell_size_m)
        if not np.isfinite(cell_size_m) or cell_size_m <= 0:
            raise ValueError(f"cell_size_m must be a finite number > 0, got {cell_size_m!r}")
        z = resample_grid(self.elevation_m, self.cell_size_m, cell_size_m)
        return self.with_elevation(z, cell_size_m=cell_size_m)

    def __repr__(self) -> str:
        rows, cols = self.shape
        return (f"TerrainMap({rows}x{cols} cells of {self.cell_size_m:g} m, origin={self.origin_xy_m}, "
                f"known={self.known_fraction:.1%}, source={self.source!r})")
