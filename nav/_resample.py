"""Resampling elevation grids to another cell size (used by ``TerrainMap.resampled`` and DEM loading).

Rules (per axis, so non-square input cells work too)
---------------------------------------------------
* The lower-left corner stays put; the output has ``round(extent / new cell)`` cells
  along each axis (halves round up), so the far edge may move by up to half a new cell.
* **Coarser** axis: a new cell averages the input cells it covers, weighted by the
  overlap length (area-weighted in 2-D). Unknown (NaN) input cells are left out of
  the average; a new cell is NaN only if nothing it covers is known. Parts of a new
  cell that stick out past the input's far edge cover nothing.
* **Finer** axis: linear interpolation between input cell centres (bilinear in 2-D),
  extrapolated linearly in the outer half cell so planes are reproduced everywhere.
  Where an interpolation stencil touches an unknown cell, the new cell takes the
  value of the input cell containing its centre (NaN if that one is unknown), so
  holes keep their shape instead of growing by a cell.
* Equal cell sizes copy the axis.

With one axis coarser and the other finer, the two rules combine separably.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["resample_grid", "resample_grid_xy"]

# Grids larger than this after resampling are refused (4 bytes a cell: 8 GiB).
_MAX_OUTPUT_CELLS = 2**31
# Interval ends this close (in input cells) to an integer are snapped onto it, so an
# exact integer factor does not pick up a rounding-error sliver of the next cell.
_SNAP = 1e-9


def _check_size(name: str, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return v


def output_cells(n_in: int, from_cell_m: float, to_cell_m: float) -> int:
    """Number of output cells along an axis: ``round(n_in * from / to)``, halves up."""
    return int(math.floor(n_in * from_cell_m / to_cell_m + 0.5))


def _snap(x: np.ndarray) -> np.ndarray:
    """Values within rounding error of an integer, set to that integer."""
    r = np.rint(x)
    return np.where(np.abs(x - r) < _SNAP * np.maximum(1.0, np.abs(x)), r, x)


def _axis_tables(n_in: int, from_cell_m: float, to_cell_m: float, n_out: int):
    """Value and fallback weight tables for one axis (see :mod:`nav._resample_kernels`)."""
    i = np.arange(n_out, dtype=np.float64)
    ratio = to_cell_m / from_cell_m  # output cell size in input cells
    if n_out == n_in and ratio == 1.0:
        span = np.stack([np.arange(n_in, dtype=np.int64), np.ones(n_in, np.int64)], axis=1)
        w = np.ones((n_in, 1))
        return span, w, span, w
    if ratio > 1.0:  # coarser: overlap lengths of [i, i + 1) * ratio with input cells
        lo = i * ratio
        hi = (i + 1.0) * ratio
        lo = _snap(lo)
        hi = _snap(hi)
        start = np.clip(np.floor(lo).astype(np.int64), 0, n_in - 1)
        stop = np.minimum(np.ceil(hi).astype(np.int64), n_in)
        count = np.maximum(stop - start, 1)
        k = start[:, None] + np.arange(int(count.max()))[None, :]
        w = np.minimum(k + 1.0, hi[:, None]) - np.maximum(k.astype(np.float64), lo[:, None])
        w = np.where(np.arange(w.shape[1])[None, :] < count[:, None], np.clip(w, 0.0, None), 0.0)
        span = np.stack([start, count], axis=1)
        return span, np.ascontiguousarray(w), span, np.ascontiguousarray(w)
    # finer: output centre in input cell units; u in input grid coordinates (centres at integers)
    centre = _snap((i + 0.5) * ratio)
    anchor = np.clip(np.floor(centre).astype(np.int64), 0, n_in - 1)
    fspan = np.stack([anchor, np.ones(n_out, np.int64)], axis=1)
    fw = np.ones((n_out, 1))
    if n_in == 1:
        return fspan, fw, fspan, fw
    u = _snap(centre - 0.5)
    r0 = np.clip(np.floor(u).astype(np.int64), 0, n_in - 2)
    t = u - r0
    w = np.stack([1.0 - t, t], axis=1)
    # an output centre on an input centre uses that cell alone, so a zero-weight
    # neighbour (perhaps unknown) does not count as part of the stencil
    on_centre = (t == 0.0) | (t == 1.0)
    start = np.where(t == 1.0, r0 + 1, r0)
    w[on_centre] = (1.0, 0.0)
    span = np.stack([start, np.where(on_centre, 1, 2)], axis=1)
    return span, np.ascontiguousarray(w), fspan, fw


def resample_grid_xy(z, from_dx_m: float, from_dy_m: float, to_cell_m: float) -> np.ndarray:
    """Resample a grid of ``from_dx_m`` × ``from_dy_m`` cells to square ``to_cell_m`` cells.

    Parameters
    ----------
    z : (rows, cols) array
        Heights (any real dtype; NaN = unknown). Columns run along x, rows along y,
        starting at the lower-left corner, which the output keeps.
    from_dx_m, from_dy_m : float
        Input cell width (along columns) and height (along rows), > 0.
    to_cell_m : float
        Output cell side, > 0.

    Returns
    -------
    (round(rows * dy / to), round(cols * dx / to)) float32 array
        See the module docstring for the coarser / finer / NaN rules.
    """
    from ._resample_kernels import OK, _resample_separable

    arr = np.asarray(z)
    if arr.ndim != 2:
        raise ValueError(f"z must be 2-D, got shape {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"z must not be empty, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"z must have a real numeric dtype, got {arr.dtype}")
    dx = _check_size("from_dx_m", from_dx_m)
    dy = _check_size("from_dy_m", from_dy_m)
    to = _check_size("to_cell_m", to_cell_m)
    rows, cols = arr.shape
    n_r = output_cells(rows, dy, to)
    n_c = output_cells(cols, dx, to)
    if n_r < 1 or n_c < 1:
        raise ValueError(f"to_cell_m = {to:g} leaves no cells: the grid is only "
                         f"{cols * dx:g} m × {rows * dy:g} m (a cell needs at least half of to_cell_m)")
    if n_r * n_c > _MAX_OUTPUT_CELLS:
        raise ValueError(f"to_cell_m = {to:g} would make a {n_r} × {n_c} grid, more than "
                         f"{_MAX_OUTPUT_CELLS} cells")
    src = np.ascontiguousarray(arr, dtype=np.float32)
    if n_r == rows and n_c == cols and dx == to and dy == to:
        return src.copy()
    rt = _axis_tables(rows, dy, to, n_r)
    ct = _axis_tables(cols, dx, to, n_c)
    out = np.empty((n_r, n_c), dtype=np.float32)
    status = _resample_separable(src, *rt, *ct, out)
    if status != OK:  # pragma: no cover - the kernel has no failure path today
        raise RuntimeError(f"resampling kernel failed with status {status}")
    return out


def resample_grid(z, from_cell_m: float, to_cell_m: float) -> np.ndarray:
    """Resample a square-celled grid from ``from_cell_m`` to ``to_cell_m`` cells.

    Parameters
    ----------
    z : (rows, cols) array
        Heights (NaN = unknown), row 0 at the lower (south) edge.
    from_cell_m, to_cell_m : float
        Input and output cell sides, > 0.

    Returns
    -------
    (round(rows * from / to), round(cols * from / to)) float32 array
        Coarser grids are area-weighted NaN-aware means; finer grids are bilinear
        between cell centres. The lower-left corner is kept. See :mod:`nav._resample`.
    """
    return resample_grid_xy(z, from_cell_m, from_cell_m, to_cell_m)
