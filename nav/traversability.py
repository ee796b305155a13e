"""GESTALT-style traversability: slope, step and roughness hazards → a cost map.

After the MER / MSL GESTALT terrain assessment (Goldberg, Maimone & Matthies,
"Stereo vision and rover navigation software for planetary exploration", IEEE
Aerospace 2002; Biesiadecki & Maimone 2006), on a gridded height map.

Semantics
---------
``k = 2 h + 1`` is the odd number of cells nearest to ``footprint_m / cell_size_m``
(ties round up), at least 3. ``ks = 2 hs + 1`` likewise from the step window
(``step_window_m``; 0 in the rover profile means the wheel diameter), at least 3.

Plane fit (slope, roughness)
    For every cell, a least-squares plane ``z = a·x + b·y + c`` (x, y in metres)
    is fitted to the **known** cells of the ``k × k`` window centred on it. Windows
    are clipped at the map edge: only cells inside the map take part.
    ``slope_deg = atan(sqrt(a² + b²))`` in degrees; ``roughness_m`` is the RMS
    residual from that plane, ``sqrt(Σ residual² / n)`` over the ``n`` known
    cells. A window whose known cells are fewer than ``min_known_fraction`` of
    the (clipped) window, fewer than 3, or all on one line gives NaN slope and
    roughness, and the cell counts as unknown.

Step height
    ``step_m`` is the largest elevation difference, ``max − min`` of the known
    cells, in the ``ks × ks`` window centred on the cell: the height one wheel has
    to climb. The window is wheel-sized on purpose: ``max − min`` over the whole
    footprint would count the rise of any moderate slope across the rover as a
    step (a 0.6 m footprint on a 15° slope already spans 0.16 m) and double-count
    the slope hazard. A step is still charged to the whole rover body, because a
    lethal step is inflated by the rover radius below, which makes every pose
    whose footprint would put a wheel on it lethal.

Lethal cells and cost
    A cell is lethal (``cost = inf``) when ``slope_deg > max_slope_deg``
    (``LETHAL_SLOPE``), ``step_m > max_step_m`` (``LETHAL_STEP``) or
    ``roughness_m > max_roughness_m`` (``LETHAL_ROUGHNESS``); the flags are
    OR-ed in ``CostMap.reason``. A cell is *unknown* when its own elevation is NaN
    or its plane fit is NaN; its hazard layers are still computed from the known
    cells around it (and can still make it lethal). Under the ``"lethal"`` unknown
    policy an unknown cell is lethal with ``LETHAL_UNKNOWN``; under ``"penalty"``
    it costs ``unknown_cost``. Every other cell costs::

        1 + slope_weight·(slope/max_slope)² + step_weight·(step/max_step)²
          + roughness_weight·(roughness/max_roughness)²

    which is 1 on flat smooth ground and grows toward the limits.

Inflation
    Every cell whose centre lies within ``inflation_radius_m`` (0 in the rover
    profile means half the rover width) of the centre of a lethal cell becomes
    lethal too, with ``reason = LETHAL_INFLATED`` (cells lethal in their own
    right keep their own flags). A radius under one cell inflates nothing.

Numerics and cost
-----------------
On one core (see :mod:`nav._traversability_kernels`), the cost per cell does not
depend on the footprint; only a few vectorized doubling passes grow, as the
logarithm of the step window and of the inflation radius:

* plane-fit moments come from running sums in float64 — vertical sliding sums,
  recomputed from scratch every ``max(2k, 32)`` rows, then prefix sums along
  stripes of 1024 columns — of heights taken relative to a reference height of
  the map (the median of a subsample), with row/column positions as small exact
  integers, so Mars elevations (−4000 m) do not cancel. Windows that are inside
  the map and fully known use the closed-form fit of an orthogonal design;
* step uses van Herk / Gil-Werman running max/min down the columns and
  ``floor(log2 ks)`` vectorized doubling passes along the rows (the step window is
  wheel-sized; the cost does not depend on the footprint);
* inflation is an exact Euclidean disk dilation: O(1) per cell down the columns
  and ``floor(log2(R + 1))`` vectorized doubling passes along the rows (``R`` the
  radius in cells, clipped to the map width).

Layers agree with a per-cell ``numpy.linalg.lstsq`` reference to 1e-4° in slope
and 1e-5 m in roughness and step (tests), also at −4000 m. The float32 input is
itself the larger limit: at 4000 m it resolves heights to 0.24 mm.

A window is "at least ``min_known_fraction`` known" up to floating-point rounding
(``n >= fraction · area − 1e-9``), so ``0.2 · 30`` known cells count as 6.
"""
from __future__ import annotations

import dataclasses
import difflib
import logging
import math
import time

import numpy as np

from .config import Hazards, RoverProfile
from .costmap import (LETHAL_INFLATED, LETHAL_ROUGHNESS, LETHAL_SLOPE, LETHAL_STEP, LETHAL_UNKNOWN,
                      CostMap)
from .terrain_map import TerrainMap

__all__ = ["traversability", "clearance_cost", "distance_cells", "OVERRIDABLE", "window_cells"]

logger = logging.getLogger(__name__)

#: Hazard fields that :func:`traversability` accepts as keyword overrides.
OVERRIDABLE = ("max_slope_deg", "max_step_m", "max_roughness_m", "footprint_m", "step_window_m",
               "inflation_radius_m", "unknown", "unknown_cost", "slope_weight", "step_weight",
               "roughness_weight")

_STRIPE_COLS = 1024         # output columns per stripe: working set in L2, few per-row calls
_INFLATE_BLOCK_ROWS = 64    # rows per block of the inflation's downward distance scan
_RESTART_ROWS = 0           # restart period of the vertical running sums; 0 = max(2k, 32) rows


def _kernels():
    """The Numba kernels, imported on first use so that ``import nav`` stays cheap."""
    from . import _traversability_kernels
    return _traversability_kernels


def window_cells(length_m: float, cell_size_m: float) -> int:
    """Odd number of cells nearest to ``length_m / cell_size_m`` (ties up), at least 3."""
    half = max(1, int(math.floor(length_m / cell_size_m / 2.0 + 1e-9)))
    return 2 * half + 1


def _check_override(name: str, value):
    """Validate one override against the rule of its ``Hazards`` field."""
    f = {f.name: f for f in dataclasses.fields(Hazards)}[name]
    md = f.metadata
    if isinstance(f.default, str) or md.get("choices"):
        if not isinstance(value, str) or value not in md["choices"]:
            raise ValueError(f"{name} must be one of {', '.join(map(repr, md['choices']))}, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    for key, ok, text in (("gt", lambda v, b: v > b, ">"), ("ge", lambda v, b: v >= b, ">="),
                          ("lt", lambda v, b: v < b, "<"), ("le", lambda v, b: v <= b, "<=")):
        bound = md.get(key)
        if bound is not None and not ok(value, bound):
            raise ValueError(f"{name} must be {text} {bound:g}, got {value:g}")
    return value


def _reference_height(z: np.ndarray) -> float:
    """A typical height of the map (median of a subsample of known cells), 0 if none."""
    sr = max(1, z.shape[0] // 64)
    sc = max(1, z.shape[1] // 64)
    sample = z[::sr, ::sc]
    known = sample[np.isfinite(sample)]
    if known.size == 0:
        known = z[np.isfinite(z)]
    return float(np.median(known)) if known.size else 0.0


def _radius2_cells(radius_m: float, cell_size_m: float) -> int:
    """Largest squared distance between cell centres (in cells², an integer) within ``radius_m``.

    A relative slack of 1e-9 keeps radii that are whole multiples of the cell size
    (0.25 m on 0.05 m cells) from losing their rim to rounding.
    """
    rc = radius_m / cell_size_m
    return int(math.floor(rc * rc * (1.0 + 1e-9) + 1e-9))


def traversability(terrain: TerrainMap, rover: RoverProfile, *, min_known_fraction: float = 0.5,
                   **overrides) -> CostMap:
    """Hazard layers and traversal cost of a terrain map for one rover.

    See the module docstring for the exact semantics of each layer.

    Parameters
    ----------
    terrain : TerrainMap
        Elevation grid (float32 metres, NaN = unknown).
    rover : RoverProfile
        Supplies the hazard limits (``rover.hazards``), the wheel diameter (default
        step window) and the width (default inflation radius).
    min_known_fraction : float, optional
        Fraction of a plane-fit window (clipped at the map edge) that must be known,
        in (0, 1]; default 0.5.
    **overrides
        Replace hazard fields for this call, by name: ``max_slope_deg``,
        ``max_step_m``, ``max_roughness_m``, ``footprint_m``, ``step_window_m``,
        ``inflation_radius_m``, ``unknown`` (``"lethal"``/``"penalty"``),
        ``unknown_cost``, ``slope_weight``, ``step_weight``, ``roughness_weight``.
        Values obey the same rules (and the same 0 = default meaning for
        ``step_window_m`` and ``inflation_radius_m``) as in the rover YAML.

    Returns
    -------
    CostMap
        ``cost`` (float32, >= 1, inf = lethal), ``slope_deg``, ``step_m``,
        ``roughness_m`` (float32, NaN where not computable), ``reason`` (uint8
        ``LETHAL_*`` flags) and ``limits`` (the values used, plus the window sizes
        in cells), all on the terrain's grid.

    Raises
    ------
    TypeError
        ``terrain`` is not a TerrainMap, ``rover`` not a RoverProfile, or an
        unknown keyword is given.
    ValueError
        An override or ``min_known_fraction`` breaks its rule.
    """
    if not isinstance(terrain, TerrainMap):
        raise TypeError(f"terrain must be a nav.TerrainMap, got {type(terrain).__name__}; "
                        f"wrap a grid with TerrainMap(elevation_m, cell_size_m)")
    if not isinstance(rover, RoverProfile):
        raise TypeError(f"rover must be a nav.RoverProfile (see nav.load_rover), got {type(rover).__name__}")
    for name in overrides:
        if name not in OVERRIDABLE:
            near = difflib.get_close_matches(name, OVERRIDABLE, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise TypeError(f"traversability() got an unexpected keyword argument {name!r}{hint} "
                            f"(hazard overrides: {', '.join(OVERRIDABLE)})")
    checked = {name: _check_override(name, value) for name, value in overrides.items()}
    if (isinstance(min_known_fraction, bool) or not isinstance(min_known_fraction, (int, float, np.number))
            or not 0.0 < float(min_known_fraction) <= 1.0):
        raise ValueError(f"min_known_fraction must be a number in (0, 1], got {min_known_fraction!r}")
    min_known_fraction = float(min_known_fraction)

    rover = dataclasses.replace(rover, hazards=dataclasses.replace(rover.hazards, **checked))
    hz = rover.hazards
    cs = terrain.cell_size_m
    footprint_cells = window_cells(hz.footprint_m, cs)
    step_window_m = rover.step_window_m
    step_window_cells = window_cells(step_window_m, cs)
    inflation_radius_m = rover.inflation_radius_m
    limits = {
        "max_slope_deg": hz.max_slope_deg, "max_step_m": hz.max_step_m,
        "max_roughness_m": hz.max_roughness_m, "footprint_m": hz.footprint_m,
        "footprint_cells": footprint_cells, "step_window_m": step_window_m,
        "step_window_cells": step_window_cells, "inflation_radius_m": inflation_radius_m,
        "inflation_radius_cells": inflation_radius_m / cs, "unknown": hz.unknown,
        "unknown_cost": hz.unknown_cost, "min_known_fraction": min_known_fraction,
        "slope_weight": hz.slope_weight, "step_weight": hz.step_weight,
        "roughness_weight": hz.roughness_weight,
    }

    kern = _kernels()
    t0 = time.perf_counter()
    z = terrain.elevation_m                     # C-contiguous float32 (TerrainMap guarantees it)
    rows, cols = z.shape
    slope = np.empty((rows, cols), np.float32)
    step = np.empty((rows, cols), np.float32)
    rough = np.empty((rows, cols), np.float32)
    cost = np.empty((rows, cols), np.float32)
    reason = np.empty((rows, cols), np.uint8)
    h = footprint_cells // 2
    status = kern._compute_layers(
        z, _reference_height(z), cs, h, step_window_cells // 2, min_known_fraction,
        hz.max_slope_deg, hz.max_step_m, hz.max_roughness_m, hz.slope_weight, hz.step_weight,
        hz.roughness_weight, hz.unknown == "lethal", hz.unknown_cost,
        LETHAL_SLOPE, LETHAL_STEP, LETHAL_ROUGHNESS, LETHAL_UNKNOWN,
        _STRIPE_COLS, _RESTART_ROWS or max(2 * footprint_cells, 32),
        slope, step, rough, cost, reason)
    if status != kern.OK:  # pragma: no cover - the wrapper guarantees the kernel's preconditions
        raise RuntimeError(f"_compute_layers failed with status {status}")
    # a disk wider than the map covers all of it: clip the radius (keeps integers small)
    radius2 = _radius2_cells(min(inflation_radius_m, (rows + cols) * cs), cs)
    if radius2 >= 1 and reason.any():
        # blocks of >= floor(R) + 1 rows keep the look-ahead O(cells); never more rows than the map
        block_rows = min(rows, max(_INFLATE_BLOCK_ROWS, math.isqrt(radius2) + 1))
        status = kern._inflate_lethal(reason, cost, radius2, LETHAL_INFLATED, block_rows)
        if status != kern.OK:  # pragma: no cover
            raise RuntimeError(f"_inflate_lethal failed with status {status}")
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug("traversability %dx%d (k=%d, ks=%d, inflation %.2f cells): %.1f%% lethal in %.3f s",
                     rows, cols, footprint_cells, step_window_cells, inflation_radius_m / cs,
                     100.0 * float(np.mean(~np.isfinite(cost))), time.perf_counter() - t0)
    return CostMap(terrain=terrain, cost=cost, slope_deg=slope, step_m=step, roughness_m=rough,
                   reason=reason, limits=limits)


def clearance_cost(cost_map: CostMap, inner_m: float, width_m: float, weight: float, *,
                   flags: int = LETHAL_SLOPE | LETHAL_STEP | LETHAL_ROUGHNESS) -> np.ndarray:
    """A cost layer that keeps routes off the rim of the hazards where there is room (a copy of
    ``cost_map.cost``; the cost map is not changed).

    A shortest path around lethal cells grazes the rim of their inflation: with binary inflation
    every route through a gap touches its sides, so any error in where a hazard was mapped (a cell,
    a few centimetres of pose) puts the rover inside the true margin. Here every traversable cell whose
    centre lies within ``inner_m + width_m`` of the centre of a cell with one of ``flags`` (by default
    the cells hazardous in their own right, not inflated or unknown ones) costs ``weight`` more at
    ``inner_m`` (the inflation radius), falling linearly to nothing at ``inner_m + width_m``, after
    the falling cost fields of GESTALT. Routes then keep to the middle of a gap that is wide enough
    and still pass one that is not, at a price.

    Parameters
    ----------
    cost_map : CostMap
    inner_m, width_m : float
        Where the extra cost is ``weight`` (and nearer), and how far beyond it it falls to zero (> 0).
    weight : float
        Extra cost at ``inner_m`` (the cost of flat open ground is 1).
    flags : int
        Reason flags of the cells distance is measured from.
    """
    if not isinstance(cost_map, CostMap):
        raise TypeError(f"cost_map must be a nav.CostMap, got {type(cost_map).__name__}")
    for name, v, lo in (("inner_m", inner_m, 0.0), ("weight", weight, 0.0)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not math.isfinite(v) or v < lo:
            raise ValueError(f"clearance_cost: {name} must be a finite number >= {lo:g}, got {v!r}")
    if isinstance(width_m, bool) or not isinstance(width_m, (int, float, np.number)) or not math.isfinite(width_m) \
            or width_m <= 0:
        raise ValueError(f"clearance_cost: width_m must be a finite number > 0, got {width_m!r}")
    if not (isinstance(flags, (int, np.integer)) and 0 < int(flags) < 256):
        raise ValueError(f"clearance_cost: flags must be reason bits in 1..255, got {flags!r}")
    cost = np.array(cost_map.cost, dtype=np.float32, order="C")
    if weight == 0 or cost.size == 0:
        return cost
    cs = cost_map.terrain.cell_size_m
    inner, outer = float(inner_m) / cs, (float(inner_m) + float(width_m)) / cs
    src = (np.asarray(cost_map.reason) & np.uint8(flags)) != 0
    d = distance_cells(src, outer)
    sel = (d < outer) & np.isfinite(cost) & ~src
    cost[sel] = cost[sel] + float(weight) * np.minimum((outer - d[sel]) / (outer - inner), 1.0)
    return cost


def distance_cells(mask, cap_cells: float) -> np.ndarray:
    """Euclidean distance, in cells (centre to centre), from every cell to the nearest set cell of the
    boolean grid ``mask`` (0 on set cells), or ``cap_cells`` where none is nearer: float64, ``mask``'s shape.

    Costs O(cells on the rim of the set regions x cap_cells²) (Numba), so a short reach over a large map is
    cheap. Dilating ``mask`` by a disc of radius ``R`` cells is ``distance_cells(mask, R + 1) <= R``.
    """
    m = np.ascontiguousarray(mask, dtype=bool)
    if m.ndim != 2:
        raise ValueError(f"distance_cells: mask must be 2-D, got shape {m.shape}")
    if isinstance(cap_cells, bool) or not isinstance(cap_cells, (int, float, np.number)) \
            or not math.isfinite(cap_cells) or cap_cells < 0:
        raise ValueError(f"distance_cells: cap_cells must be a finite number >= 0, got {cap_cells!r}")
    dist = np.empty(m.shape, np.float64)
    if m.size:
        kern = _kernels()
        status = kern._distance_cells(m, float(cap_cells), dist)
        if status != kern.OK:  # pragma: no cover - the wrapper guarantees the kernel's preconditions
            raise RuntimeError(f"_distance_cells failed with status {status}")
    return dist
