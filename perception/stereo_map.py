"""Stereo terrain mapping: disparity → points → local height map → global map for planning.

The pipeline, one stereo pair at a time::

    mapper = StereoMapper.from_camera(profile.camera)             # or StereoMapper(K, baseline_m)
    gmap = GlobalMap.like(planning_terrain)                       # the planner's grid, all unknown
    disp = mapper.disparity(frame.left, frame.right)              # float32 px, NaN = no match
    pts = mapper.points(disp)                                     # camera frame + depth variance
    local = mapper.local_map(pts, T_world_cam, grid=gmap)         # world-aligned cells, on gmap's lattice
    update = gmap.merge(local, stamp=odometer_m)                  # per-cell Kalman fusion
    planner.update_cells(...)                                     # costs of update.window(...)
    cost = nav.traversability(gmap.terrain_map(), rover)

``T_world_cam`` is the *estimated* pose of the left camera (OpenCV axes: x right, y down,
z forward), ``T_world_body @ T_body_left``. :meth:`StereoMapper.map_pair` does the first three
steps in one call; :meth:`StereoMapper.map_pair_near` also returns the finer near map of the
ground close in (:meth:`StereoMapper.near_map`) from the same points, matching the pair once.

Error model
-----------
Block matching finds disparity ``d`` with an error of ``sigma_disparity_px``; depth
``z = fx b / d`` then errs by ``σ_z = z² σ_d / (fx b)`` along the viewing ray. A point's
*height* variance is that error projected on the vertical, plus the pixel error across the
ray, the attitude uncertainty of the pose times the horizontal distance, and the
horizontal misplacement turned into height on a ``slope_prior`` slope (details in
:mod:`perception._stereo_map_kernels`). Grazing views of far ground therefore give small
height errors but large horizontal ones; ``max_range_m`` and ``max_sigma_m`` cut what is
too uncertain to help.

That per-point variance sets the top-layer test; a local map *cell* is less certain than
its points say. Where the relief inside a cell is steep (a rock's edge or face), a point
misplaced horizontally by ``σ_h`` lands ``relief_slope · σ_h`` off in height, and a cell a
rock's top spilled into reads a step that is not there. So each cell's variance also gets
``relief_slope²`` times the mean horizontal misplacement variance of its points,
``σ_z² |ray_h|²`` (``ray = p_c / z``, ``ray_h`` its horizontal part in the world): about
``(r² σ_d / (fx b))²`` at range ``r``, 2 mm at 1 m and 16 cm at 6 m for the OSR camera
(``relief_slope`` = 1). Fusion then weights a cell seen from 2 m about 80 times more
than one seen from 6 m, so the map of the ground near the rover — the ground it is about to
drive on — is what its near views say, not an average with the edge spills of far views.

Local height map (the cell convention of :mod:`nav.terrain_map`)
    Points are binned into world-aligned cells on the global map's lattice (no resampling
    when merging). Per cell, the *top layer* — points that can reach the floor set by the
    highest ``top_fraction`` of the lower bounds ``h - k σ`` — gives the height as its
    median: open ground gets the median of all its points, a cell on a rock face the height
    of the rock's upper part rather than the average of face and foot, and a few mismatched
    points cannot lift a cell. Cells with fewer than ``min_points`` points stay unknown;
    nothing is interpolated, so occlusion shadows behind rocks remain unknown (block
    matching's depth error still spills points a cell or two past an occluding edge, at about
    the edge's height, at longer ranges).

Global map
    :class:`GlobalMap` holds height, variance and the stamp of the last update per cell.
    A merge is a scalar Kalman update per cell after inflating the stored variance by
    ``drift_var_m2`` per unit of stamp since that cell's last update (pose drift makes old
    observations less certain relative to the current pose, so later observations dominate
    instead of smearing). A measurement outside the ``gate_sigma`` gate first widens the
    cell's variance by the squared difference, so it takes over; cells older than ``max_age``
    are replaced outright. :meth:`GlobalMap.merge` returns the cells whose height moved by
    more than ``change_tol_m`` since they were last reported, for D* Lite.

Accuracy and speed are measured in ``benchmarks/bench_stereo_map.py``.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np

from nav.terrain_map import TerrainMap

__all__ = ["StereoMapParams", "FusionParams", "StereoMapper", "StereoPoints", "LocalHeightMap",
           "GlobalMap", "MapUpdate", "rasterize", "point_height_var_m2"]

logger = logging.getLogger(__name__)


def _kernels():
    """The Numba kernels, imported on first use so that ``import perception`` stays cheap."""
    from . import _stereo_map_kernels
    return _stereo_map_kernels


def _status(name: str, status: int) -> None:
    if status != 0:  # pragma: no cover - the wrappers validate what the kernels check
        raise RuntimeError(f"{name} failed with status {status}")


# ============================================================================ parameters
def _number(owner: str, name: str, value, *, gt=None, ge=None, le=None, integer=False):
    """``value`` as a float (or int), or a ValueError naming the parameter, value and rule."""
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{owner}.{name} = {value!r}: must be {kind}")
    if integer and not float(value).is_integer():
        raise ValueError(f"{owner}.{name} = {value!r}: must be {kind}")
    v = int(value) if integer else float(value)
    if not integer and math.isnan(v):
        raise ValueError(f"{owner}.{name} = {value!r}: must be {kind}, not NaN")
    for bound, ok, text in ((gt, lambda a, b: a > b, ">"), (ge, lambda a, b: a >= b, ">="),
                            (le, lambda a, b: a <= b, "<=")):
        if bound is not None and not ok(v, bound):
            raise ValueError(f"{owner}.{name} = {value!r}: must be {text} {bound:g}")
    return v


@dataclass(frozen=True)
class StereoMapParams:
    """Tunables of :class:`StereoMapper` (validated on construction; unknown names raise).

    Matching (OpenCV)
        ``matcher`` ``"bm"`` (``cv2.StereoBM``) or ``"sgbm"`` (``cv2.StereoSGBM``, 3-way
        mode); ``num_disparities`` (a multiple of 16: the nearest depth matched is
        ``fx b / num_disparities``); ``block_size`` (odd; ``None`` = 7 for BM, 5 for SGBM);
        ``uniqueness_ratio`` (%); ``speckle_window_px``/``speckle_range_px`` (speckle filter,
        0 = off); ``lr_max_diff_px`` (left-right consistency, -1 = off); ``texture_threshold``
        (BM only).
    Error model
        ``sigma_disparity_px`` (disparity error, px), ``sigma_pixel_px`` (image position error
        across the ray, px), ``slope_prior`` (typical terrain gradient that turns horizontal
        misplacement into height error), ``max_sigma_m`` (points with a larger height σ are
        dropped), ``relief_slope`` (gradient of the relief inside a cell — rock edges — that
        turns the points' horizontal misplacement into error of the *cell's* height: added to
        the cell variance that fusion weighs, not to the top-layer test; 0 = off).
    Points
        ``min_range_m``, ``max_range_m`` (distance from the left optical centre) and
        ``stride`` (use every ``stride``-th row and column).
    Rasterisation
        ``cell_size_m`` (when no grid is given), ``gate_sigma`` (``k`` of the top-layer test),
        ``layer_m`` (extra depth of the top layer), ``top_fraction`` (share of a cell's points
        that must reach the top-layer floor), ``top_quantile`` (which quantile of the top layer is the
        cell's height: 0.5 the median, 1 its highest point), ``min_points`` (points a cell needs to be
        known), ``min_sigma_m`` (floor of a cell's height σ).

    Defaults were tuned on rendered Mars and Moon traverses (``benchmarks/bench_stereo_map.py``):
    BM beat SGBM there (SGBM left metre-high outliers that the top layer keeps), block 7 beat
    9 and 11 on height error and small-rock height, ``num_disparities = 80`` matches depths
    down to ``fx b / 80`` (0.69 m for the OSR camera: the nearest ground in view is ~0.9 m).
    """
    matcher: str = "bm"
    num_disparities: int = 80
    block_size: int | None = None
    uniqueness_ratio: int = 10
    speckle_window_px: int = 100
    speckle_range_px: int = 2
    lr_max_diff_px: int = 1
    texture_threshold: int = 10
    sigma_disparity_px: float = 0.25
    sigma_pixel_px: float = 0.5
    slope_prior: float = 0.1
    max_sigma_m: float = 0.25
    relief_slope: float = 1.0
    min_range_m: float = 0.3
    max_range_m: float = 10.0
    stride: int = 1
    cell_size_m: float = 0.1
    gate_sigma: float = 2.0
    layer_m: float = 0.02
    top_fraction: float = 0.1
    top_quantile: float = 0.5
    min_points: int = 2
    min_sigma_m: float = 0.005

    def __post_init__(self):
        o = "StereoMapParams"
        if self.matcher not in ("bm", "sgbm"):
            raise ValueError(f"{o}.matcher = {self.matcher!r}: must be 'bm' or 'sgbm'")
        nd = _number(o, "num_disparities", self.num_disparities, ge=16, integer=True)
        if nd % 16:
            raise ValueError(f"{o}.num_disparities = {nd}: must be a multiple of 16 (OpenCV's rule)")
        if self.block_size is not None:
            lo = 5 if self.matcher == "bm" else 1
            bs = _number(o, "block_size", self.block_size, ge=lo, le=255, integer=True)
            if bs % 2 == 0:
                raise ValueError(f"{o}.block_size = {bs}: must be odd")
        _number(o, "uniqueness_ratio", self.uniqueness_ratio, ge=0, le=100, integer=True)
        _number(o, "speckle_window_px", self.speckle_window_px, ge=0, integer=True)
        _number(o, "speckle_range_px", self.speckle_range_px, ge=0, integer=True)
        _number(o, "lr_max_diff_px", self.lr_max_diff_px, ge=-1, integer=True)
        _number(o, "texture_threshold", self.texture_threshold, ge=0, integer=True)
        _number(o, "sigma_disparity_px", self.sigma_disparity_px, gt=0, le=100)
        _number(o, "sigma_pixel_px", self.sigma_pixel_px, ge=0, le=100)
        _number(o, "slope_prior", self.slope_prior, ge=0, le=100)
        _number(o, "max_sigma_m", self.max_sigma_m, gt=0)
        _number(o, "relief_slope", self.relief_slope, ge=0, le=100)
        lo_r = _number(o, "min_range_m", self.min_range_m, ge=0)
        hi_r = _number(o, "max_range_m", self.max_range_m, gt=0)
        if not hi_r > lo_r:
            raise ValueError(f"{o}.max_range_m = {self.max_range_m!r}: must be > min_range_m = {self.min_range_m!r}")
        if not math.isfinite(hi_r):
            raise ValueError(f"{o}.max_range_m = {self.max_range_m!r}: must be finite")
        _number(o, "stride", self.stride, ge=1, integer=True)
        cs = _number(o, "cell_size_m", self.cell_size_m, gt=0)
        if not math.isfinite(cs):
            raise ValueError(f"{o}.cell_size_m = {self.cell_size_m!r}: must be finite")
        _number(o, "gate_sigma", self.gate_sigma, ge=0, le=100)
        _number(o, "layer_m", self.layer_m, ge=0, le=100)
        _number(o, "top_fraction", self.top_fraction, ge=0, le=1)
        _number(o, "top_quantile", self.top_quantile, ge=0, le=1)
        _number(o, "min_points", self.min_points, ge=1, integer=True)
        _number(o, "min_sigma_m", self.min_sigma_m, ge=0, le=100)

    @property
    def effective_block_size(self) -> int:
        if self.block_size is not None:
            return int(self.block_size)
        return 7 if self.matcher == "bm" else 5

    def replace(self, **changes) -> "StereoMapParams":
        """A validated copy with some fields changed; unknown names raise ``TypeError``."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class FusionParams:
    """Tunables of :class:`GlobalMap` (validated on construction; unknown names raise).

    Attributes
    ----------
    gate_sigma : float
        Mahalanobis gate (standard deviations) between a cell's estimate and a measurement;
        inside it the two are fused.
    drift_var_m2 : float
        Variance added to a cell's height per unit of ``stamp`` since its last update (m² per
        unit; with stamps in metres travelled, the default 1e-3 grows σ to 3 cm after 1 m and
        10 cm after 10 m, the height error a few percent of drift gives on rough ground).
    max_age : float
        A cell not updated for longer than this (stamp units) is replaced by the next
        measurement instead of fused; ``inf`` (default) = never.
    min_sigma_m : float
        Floor of a cell's height standard deviation: sub-cell relief and systematic errors
        (pose, calibration) do not average away over repeated views, and an overconfident
        cell would reject every later measurement as inconsistent.
    change_tol_m : float
        A cell is reported changed when its height moved more than this since it was last
        reported (or it became known).
    """
    gate_sigma: float = 3.0
    drift_var_m2: float = 1e-3
    max_age: float = math.inf
    min_sigma_m: float = 0.01
    change_tol_m: float = 0.01

    def __post_init__(self):
        o = "FusionParams"
        _number(o, "gate_sigma", self.gate_sigma, gt=0)
        _number(o, "drift_var_m2", self.drift_var_m2, ge=0)
        _number(o, "max_age", self.max_age, ge=0)
        _number(o, "min_sigma_m", self.min_sigma_m, ge=0)
        _number(o, "change_tol_m", self.change_tol_m, ge=0)

    def replace(self, **changes) -> "FusionParams":
        return dataclasses.replace(self, **changes)


# ============================================================================ validation helpers
def _check_pose(T, name: str) -> np.ndarray:
    """A 4x4 float64 rigid transform, or an error naming ``name``."""
    try:
        a = np.array(T, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a 4x4 array of numbers, got {type(T).__name__}") from None
    if a.shape != (4, 4):
        raise ValueError(f"{name} must be a 4x4 homogeneous transform, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} must be finite")
    if not np.allclose(a[3], (0.0, 0.0, 0.0, 1.0), atol=1e-9):
        raise ValueError(f"{name} bottom row must be [0, 0, 0, 1], got {a[3].tolist()}")
    R = a[:3, :3]
    err = float(np.abs(R.T @ R - np.eye(3)).max())
    if err > 1e-6 or np.linalg.det(R) <= 0:
        raise ValueError(f"{name} rotation block must be a proper rotation (R^T R = I within 1e-6, det +1), "
                         f"got max |R^T R - I| = {err:.2e}, det = {np.linalg.det(R):.6f}")
    return a


def _check_grid(cell_size_m, origin_xy_m) -> tuple[float, tuple[float, float]]:
    cs = float(cell_size_m)
    if not (math.isfinite(cs) and cs > 0):
        raise ValueError(f"cell_size_m = {cell_size_m!r}: must be a finite number > 0")
    try:
        ox, oy = (float(v) for v in origin_xy_m)
    except (TypeError, ValueError):
        raise ValueError(f"origin_xy_m = {origin_xy_m!r}: must be two numbers (x, y) in metres") from None
    if not (math.isfinite(ox) and math.isfinite(oy)):
        raise ValueError(f"origin_xy_m = {origin_xy_m!r}: must be finite")
    return cs, (ox, oy)


def _grid_of(grid, default_cell_m: float) -> tuple[float, tuple[float, float]]:
    """Cell size and lattice origin of ``grid`` (a GlobalMap, TerrainMap, or None)."""
    if grid is None:
        return _check_grid(default_cell_m, (0.0, 0.0))
    if isinstance(grid, (GlobalMap, TerrainMap, LocalHeightMap)):
        return _check_grid(grid.cell_size_m, grid.origin_xy_m)
    raise TypeError(f"grid must be a GlobalMap, a nav.TerrainMap or None, got {type(grid).__name__}")


# ============================================================================ value types
@dataclass(frozen=True, eq=False)
class StereoPoints:
    """Triangulated stereo points in the left camera frame.

    Attributes
    ----------
    xyz_cam_m : (n, 3) float64
        OpenCV camera axes (x right, y down, z forward), metres.
    var_depth_m2 : (n,) float64
        Variance of each point's depth ``z`` from the disparity error model,
        ``(z² σ_d / (fx b))²``; the error lies along the viewing ray.
    """
    xyz_cam_m: np.ndarray
    var_depth_m2: np.ndarray

    def __len__(self) -> int:
        return int(self.xyz_cam_m.shape[0])

    def __bool__(self) -> bool:
        return len(self) > 0

    def to_world(self, T_world_cam) -> np.ndarray:
        """``(n, 3)`` world points for a camera pose."""
        T = _check_pose(T_world_cam, "T_world_cam")
        return self.xyz_cam_m @ T[:3, :3].T + T[:3, 3]


@dataclass(frozen=True, eq=False)
class LocalHeightMap:
    """Heights of what one stereo pair saw, in world-aligned cells (convention of
    :mod:`nav.terrain_map`).

    Attributes
    ----------
    height_m : (rows, cols) float32
        Top-layer height of each cell (world z, metres); NaN = unknown.
    var_m2 : (rows, cols) float32
        Variance of ``height_m``; ``inf`` = unknown.
    count : (rows, cols) int32
        Points that fell in each cell.
    cell_size_m : float
    origin_xy_m : (float, float)
        World position of the lower-left corner of cell (0, 0); on the lattice of the grid
        the map was built for.
    n_points : int
        Points rasterised (those inside the map with a usable variance).
    """
    height_m: np.ndarray
    var_m2: np.ndarray
    count: np.ndarray
    cell_size_m: float
    origin_xy_m: tuple[float, float]
    n_points: int = 0
    meta: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def shape(self) -> tuple[int, int]:
        return self.height_m.shape

    @property
    def known(self) -> np.ndarray:
        return np.isfinite(self.height_m)

    @property
    def n_known(self) -> int:
        return int(np.count_nonzero(self.known))

    def __bool__(self) -> bool:
        return self.n_known > 0

    @property
    def sigma_m(self) -> np.ndarray:
        return np.sqrt(self.var_m2)

    def terrain_map(self, source: str = "stereo local map") -> TerrainMap:
        """The heights as a :class:`nav.TerrainMap` (NaN = unknown); needs a non-empty map."""
        if 0 in self.shape:
            raise ValueError("the local map is empty (no points fell in it)")
        return TerrainMap(self.height_m.copy(), self.cell_size_m, self.origin_xy_m, source=source)

    def __repr__(self) -> str:
        r, c = self.shape
        return (f"LocalHeightMap({r}x{c} cells of {self.cell_size_m:g} m at {self.origin_xy_m}, "
                f"{self.n_known} known, {self.n_points} points)")


@dataclass(frozen=True, eq=False)
class MapUpdate:
    """Cells of a :class:`GlobalMap` whose height changed in one merge.

    Attributes
    ----------
    rows, cols : (n,) int64
        The changed cells (each once), in the global grid.
    n_new, n_fused, n_inconsistent, n_replaced : int
        Measured cells that became known / were fused with a consistent measurement / with an
        inconsistent one (outside the gate: the variance was widened first) / were replaced
        because they were older than ``max_age``.
    shape : (int, int)
        The global grid's shape.
    """
    rows: np.ndarray
    cols: np.ndarray
    n_new: int = 0
    n_fused: int = 0
    n_inconsistent: int = 0
    n_replaced: int = 0
    shape: tuple[int, int] = (0, 0)

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    def __bool__(self) -> bool:
        return len(self) > 0

    @property
    def rc(self) -> np.ndarray:
        """``(n, 2)`` int64 ``(row, col)`` cells, the layout :meth:`nav.DStarLite.update_cells` takes."""
        return np.stack([self.rows, self.cols], axis=1)

    def window(self, margin_cells: int = 0):
        """Half-open ``(r0, r1, c0, c1)`` box around the changed cells grown by ``margin_cells``
        and clipped to the grid, or ``None`` when nothing changed.

        Traversal costs depend on heights within the footprint, step window and inflation
        radius, so recompute costs over ``window(h + hs + inflation_cells)`` (the sizes from
        ``CostMap.limits``) and hand D* Lite the cells whose cost moved.
        """
        if margin_cells < 0:
            raise ValueError(f"margin_cells = {margin_cells!r}: must be >= 0")
        if not len(self):
            return None
        m = int(margin_cells)
        rows, cols = self.shape
        return (max(int(self.rows.min()) - m, 0), min(int(self.rows.max()) + m + 1, rows),
                max(int(self.cols.min()) - m, 0), min(int(self.cols.max()) + m + 1, cols))

    def __repr__(self) -> str:
        return (f"MapUpdate({len(self)} changed: {self.n_new} new, {self.n_fused} fused, "
                f"{self.n_inconsistent} inconsistent, {self.n_replaced} replaced)")


# ============================================================================ functions
def point_height_var_m2(points: StereoPoints, T_world_cam, *, fx_px: float, sigma_pixel_px: float = 0.5,
                        slope_prior: float = 0.1, attitude_sigma_rad: float = 0.0) -> np.ndarray:
    """Height variance of each point in the world (the model the rasteriser uses; numpy).

    See :mod:`perception._stereo_map_kernels` for the four terms. Returns ``(n,)`` float64 m².
    """
    T = _check_pose(T_world_cam, "T_world_cam")
    R, t = T[:3, :3], T[:3, 3]
    p = points.xyz_cam_m
    vz = points.var_depth_m2
    ray = p / p[:, 2:3]
    up = R[2]
    ray_up = ray @ up
    ray_w = ray @ R.T
    pw = p @ R.T + t
    d2 = (pw[:, 0] - t[0]) ** 2 + (pw[:, 1] - t[1]) ** 2
    return (vz * ray_up ** 2 + (sigma_pixel_px / fx_px) ** 2 * p[:, 2] ** 2 * (up[0] ** 2 + up[1] ** 2)
            + attitude_sigma_rad ** 2 * d2 + slope_prior ** 2 * vz * (ray_w[:, 0] ** 2 + ray_w[:, 1] ** 2))


def rasterize(xyz_world_m, var_height_m2, *, cell_size_m: float, origin_xy_m=(0.0, 0.0), shape=None,
              gate_sigma: float = 2.0, layer_m: float = 0.02, top_fraction: float = 0.1, min_points: int = 2,
              min_sigma_m: float = 0.005, top_quantile: float = 0.5) -> LocalHeightMap:
    """Top-layer height map of world points (the local-map rasteriser).

    Parameters
    ----------
    xyz_world_m : (n, 3) array
        World points (x east, y north, z up), metres.
    var_height_m2 : (n,) array
        Height variance of each point; NaN or inf excludes a point.
    cell_size_m : float
    origin_xy_m : (float, float)
        Lower-left corner of cell (0, 0).
    shape : (rows, cols), optional
        Grid size; by default the smallest grid from ``origin_xy_m``'s lattice that holds
        every usable point (its origin then moves to that grid's corner).
    gate_sigma, layer_m, top_fraction, min_points, min_sigma_m, top_quantile
        As in :class:`StereoMapParams`.

    Returns
    -------
    LocalHeightMap
    """
    p = np.ascontiguousarray(xyz_world_m, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 3:
        raise ValueError(f"xyz_world_m must have shape (n, 3), got {np.shape(xyz_world_m)}")
    v = np.ascontiguousarray(var_height_m2, dtype=np.float64)
    if v.shape != (p.shape[0],):
        raise ValueError(f"var_height_m2 must have shape ({p.shape[0]},) (one per point), got {v.shape}")
    if (v < 0).any():
        raise ValueError(f"var_height_m2 must be >= 0 (NaN/inf excludes a point), got min {float(np.nanmin(v))!r}")
    cs, (ox, oy) = _check_grid(cell_size_m, origin_xy_m)
    o = "rasterize"
    gate_sigma = _number(o, "gate_sigma", gate_sigma, ge=0)
    layer_m = _number(o, "layer_m", layer_m, ge=0)
    top_fraction = _number(o, "top_fraction", top_fraction, ge=0, le=1)
    min_points = _number(o, "min_points", min_points, ge=1, integer=True)
    min_sigma_m = _number(o, "min_sigma_m", min_sigma_m, ge=0)
    top_quantile = _number(o, "top_quantile", top_quantile, ge=0, le=1)
    bounds = None
    if shape is None:
        use = np.isfinite(v) & np.isfinite(p).all(axis=1)
        if use.any():
            q = p[use]
            bounds = (float(q[:, 0].min()), float(q[:, 0].max()), float(q[:, 1].min()), float(q[:, 1].max()))
        else:
            bounds = (math.inf, -math.inf, math.inf, -math.inf)
    else:
        try:
            rows, cols = (int(s) for s in shape)
        except (TypeError, ValueError):
            raise ValueError(f"shape = {shape!r}: must be (rows, cols)") from None
        if rows < 0 or cols < 0:
            raise ValueError(f"shape = {shape!r}: must be non-negative")
        shape = (rows, cols)
    return _rasterize(p, v, cs, ox, oy, bounds, shape, gate_sigma, layer_m, top_fraction, min_points, min_sigma_m,
                      top_quantile)


def _rasterize(p, v, cs, ox, oy, bounds, shape, gate_sigma, layer_m, top_fraction, min_points, min_sigma_m,
               top_quantile):
    """:func:`rasterize` on validated inputs; ``bounds`` (x0, x1, y0, y1) of the usable points
    sizes the grid when ``shape`` is None."""
    if shape is None:
        x0, x1, y0, y1 = bounds
        if not (x0 <= x1 and y0 <= y1):
            rows = cols = 0
        else:
            c0 = math.floor((x0 - ox) / cs)
            r0 = math.floor((y0 - oy) / cs)
            cols = math.floor((x1 - ox) / cs) + 1 - c0
            rows = math.floor((y1 - oy) / cs) + 1 - r0
            ox, oy = ox + c0 * cs, oy + r0 * cs
    else:
        rows, cols = shape
    height = np.empty((rows, cols), np.float32)
    var = np.empty((rows, cols), np.float32)
    count = np.zeros((rows, cols), np.int32)
    if rows and cols:
        _status("_rasterize_heights", _kernels()._rasterize_heights(
            p, v, ox, oy, cs, gate_sigma, layer_m, top_fraction, min_points, min_sigma_m * min_sigma_m,
            top_quantile, height, var, count))
    return LocalHeightMap(height_m=height, var_m2=var, count=count, cell_size_m=cs, origin_xy_m=(ox, oy),
                          n_points=int(count.sum()))


def _horizontal_var_m2(points: StereoPoints, T_world_cam) -> np.ndarray:
    """Variance of each point's horizontal position from its depth error: ``σ_z² |ray_h|²`` with
    ``ray = p_c / z`` rotated to the world and ``ray_h`` its horizontal (x, y) part."""
    p = np.asarray(points.xyz_cam_m, dtype=np.float64)
    R = np.asarray(T_world_cam, dtype=np.float64)[:3, :3]
    with np.errstate(divide="ignore", invalid="ignore"):
        ray_w = (p / p[:, 2:3]) @ R.T
    return np.asarray(points.var_depth_m2, dtype=np.float64) * (ray_w[:, 0] ** 2 + ray_w[:, 1] ** 2)


def _cell_mean(value, xyz_w, var_h, lm: LocalHeightMap) -> np.ndarray:
    """Mean of ``value`` over the usable points (finite position and height variance) of each cell
    of ``lm`` (binned as the rasteriser bins them); 0 where a cell has none or ``lm`` says unknown."""
    rows, cols = lm.shape
    cs = lm.cell_size_m
    ox, oy = lm.origin_xy_m
    inv = 1.0 / cs
    with np.errstate(invalid="ignore"):
        c = np.floor((xyz_w[:, 0] - ox) * inv)
        r = np.floor((xyz_w[:, 1] - oy) * inv)
    use = (np.isfinite(var_h) & np.isfinite(xyz_w).all(axis=1) & np.isfinite(value)
           & (r >= 0) & (r < rows) & (c >= 0) & (c < cols))
    idx = r[use].astype(np.int64) * cols + c[use].astype(np.int64)
    n = np.bincount(idx, minlength=rows * cols)
    s = np.bincount(idx, weights=value[use], minlength=rows * cols)
    out = np.where(n > 0, s / np.maximum(n, 1), 0.0).reshape(rows, cols)
    out[~lm.known] = 0.0
    return out.astype(np.float32)


# ============================================================================ the mapper
class StereoMapper:
    """Disparity, points and local height maps from rectified stereo pairs.

    Parameters
    ----------
    K : (3, 3) array
        Intrinsics of the rectified pair (``fx, fy, cx, cy``; pixel centres at integers).
    baseline_m : float
        Distance between the optical centres (the right camera sits along the left's +x).
    params : StereoMapParams, optional

    Notes
    -----
    Holds an OpenCV matcher: use one mapper per thread.
    """

    def __init__(self, K, baseline_m: float, params: StereoMapParams | None = None):
        K = np.array(K, dtype=np.float64)
        if K.shape != (3, 3) or not np.isfinite(K).all():
            raise ValueError(f"K must be a finite 3x3 intrinsic matrix, got shape {K.shape}")
        if not (K[0, 0] > 0 and K[1, 1] > 0 and K[2, 2] == 1 and K[0, 1] == 0 and K[1, 0] == 0 and K[2, 0] == 0
                and K[2, 1] == 0):
            raise ValueError(f"K must be [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] with fx, fy > 0, got {K.tolist()}")
        b = float(baseline_m)
        if not (math.isfinite(b) and b > 0):
            raise ValueError(f"baseline_m = {baseline_m!r}: must be a finite number > 0")
        if params is None:
            params = StereoMapParams()
        if not isinstance(params, StereoMapParams):
            raise TypeError(f"params must be a StereoMapParams, got {type(params).__name__}")
        self.K = K
        self.K.setflags(write=False)
        self.baseline_m = b
        self.params = params
        self._matcher = self._make_matcher()

    @classmethod
    def from_camera(cls, camera, params: StereoMapParams | None = None) -> "StereoMapper":
        """A mapper for a :class:`nav.config.Camera` (its ``K`` and ``baseline_m``)."""
        return cls(camera.K, camera.baseline_m, params)

    @property
    def fx_px(self) -> float:
        return float(self.K[0, 0])

    def _make_matcher(self):
        import cv2

        p = self.params
        bs = p.effective_block_size
        if p.matcher == "bm":
            m = cv2.StereoBM_create(numDisparities=p.num_disparities, blockSize=bs)
            m.setUniquenessRatio(p.uniqueness_ratio)
            m.setTextureThreshold(p.texture_threshold)
            m.setSpeckleWindowSize(p.speckle_window_px)
            m.setSpeckleRange(p.speckle_range_px)
            m.setDisp12MaxDiff(p.lr_max_diff_px)
            m.setMinDisparity(0)
            return m
        return cv2.StereoSGBM_create(minDisparity=0, numDisparities=p.num_disparities, blockSize=bs,
                                     P1=8 * bs * bs, P2=32 * bs * bs, disp12MaxDiff=p.lr_max_diff_px,
                                     uniquenessRatio=p.uniqueness_ratio, speckleWindowSize=p.speckle_window_px,
                                     speckleRange=p.speckle_range_px, mode=cv2.STEREO_SGBM_MODE_SGBM_3WAY)

    def error_sigma_depth_m(self, depth_m) -> np.ndarray:
        """Depth standard deviation ``z² σ_d / (fx b)`` at depth(s) ``depth_m``."""
        z = np.asarray(depth_m, dtype=np.float64)
        return z * z * self.params.sigma_disparity_px / (self.fx_px * self.baseline_m)

    # ------------------------------------------------------------------ stages
    def disparity(self, left, right) -> np.ndarray:
        """Disparity of the left image (pixels, float32); NaN where no match was accepted.

        Parameters
        ----------
        left, right : (h, w) uint8
            Rectified grey images of the same shape.
        """
        for name, img in (("left", left), ("right", right)):
            if not isinstance(img, np.ndarray) or img.ndim != 2 or img.dtype != np.uint8:
                raise ValueError(f"{name} must be a 2-D uint8 image, got "
                                 f"{getattr(img, 'dtype', type(img).__name__)} {np.shape(img)}")
        if left.shape != right.shape:
            raise ValueError(f"left and right must have the same shape, got {left.shape} and {right.shape}")
        if min(left.shape) < self.params.effective_block_size or left.shape[1] <= self.params.num_disparities:
            raise ValueError(f"images of shape {left.shape} are too small for block_size "
                             f"{self.params.effective_block_size} and num_disparities {self.params.num_disparities}")
        raw = self._matcher.compute(np.ascontiguousarray(left), np.ascontiguousarray(right))
        d = raw.astype(np.float32)
        d *= np.float32(1.0 / 16.0)
        d[raw < 0] = np.nan                   # OpenCV marks rejected pixels (minDisparity - 1) * 16
        return d

    def points(self, disparity) -> StereoPoints:
        """Camera-frame points of a disparity map, with their depth variance.

        Pixels with NaN or non-positive disparity, or whose range falls outside
        ``[min_range_m, max_range_m]``, give no point; ``stride`` subsamples rows and columns.
        """
        d = np.asarray(disparity)
        if d.ndim != 2 or not np.issubdtype(d.dtype, np.floating):
            raise ValueError(f"disparity must be a 2-D float array of pixels, got {d.dtype} {d.shape} (OpenCV's "
                             f"int16 output is in 1/16 pixel: use StereoMapper.disparity)")
        d = np.ascontiguousarray(d, dtype=np.float32)
        p = self.params
        s = int(p.stride)
        cap = -(-d.shape[0] // s) * -(-d.shape[1] // s)
        xyz = np.empty((cap, 3), np.float64)
        var = np.empty(cap, np.float64)
        n = np.zeros(1, np.int64)
        K = self.K
        _status("_disparity_points", _kernels()._disparity_points(
            d, float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]), self.baseline_m,
            p.sigma_disparity_px, p.min_range_m, p.max_range_m, s, xyz, var, n))
        k = int(n[0])
        return StereoPoints(xyz_cam_m=xyz[:k], var_depth_m2=var[:k])

    def points_from_depth(self, depth_m) -> StereoPoints:
        """Points of a depth map (e.g. the simulator's ground truth) through the same model:
        depth becomes disparity ``fx b / z`` (``inf`` → 0, no point), then :meth:`points`."""
        z = np.asarray(depth_m, dtype=np.float64)
        if z.ndim != 2:
            raise ValueError(f"depth_m must be a 2-D array of metres, got shape {z.shape}")
        with np.errstate(divide="ignore", invalid="ignore"):
            d = np.where(z > 0, self.fx_px * self.baseline_m / z, np.nan)
        return self.points(d.astype(np.float32))

    def world_points(self, points: StereoPoints, T_world_cam, *, attitude_sigma_rad: float = 0.0):
        """``(xyz_world (n, 3), var_height (n,))`` of camera-frame points at pose ``T_world_cam``;
        points whose height σ exceeds ``max_sigma_m`` get a NaN variance."""
        xyz_w, var_h, _ = self._world_points(points, T_world_cam, attitude_sigma_rad)
        return xyz_w, var_h

    def _world_points(self, points, T_world_cam, attitude_sigma_rad):
        if not isinstance(points, StereoPoints):
            raise TypeError(f"points must be StereoPoints (from StereoMapper.points), got {type(points).__name__}")
        T = _check_pose(T_world_cam, "T_world_cam")
        att = _number("local_map", "attitude_sigma_rad", attitude_sigma_rad, ge=0)
        p = self.params
        n = len(points)
        xyz_w = np.empty((n, 3), np.float64)
        var_h = np.empty(n, np.float64)
        bounds = np.empty(4, np.float64)
        _status("_world_points", _kernels()._world_points(
            np.ascontiguousarray(points.xyz_cam_m), np.ascontiguousarray(points.var_depth_m2),
            np.ascontiguousarray(T[:3, :3]), np.ascontiguousarray(T[:3, 3]),
            (p.sigma_pixel_px / self.fx_px) ** 2, att * att, p.slope_prior ** 2, p.max_sigma_m ** 2,
            xyz_w, var_h, bounds))
        return xyz_w, var_h, tuple(float(b) for b in bounds)

    def local_map(self, points: StereoPoints, T_world_cam, *, grid=None,
                  attitude_sigma_rad: float = 0.0) -> LocalHeightMap:
        """Local height map of ``points`` seen from pose ``T_world_cam``.

        Parameters
        ----------
        points : StereoPoints
        T_world_cam : (4, 4) array
            Estimated pose of the left camera in the world.
        grid : GlobalMap or nav.TerrainMap, optional
            Whose cell size and lattice the local map uses (so merging needs no resampling);
            default ``params.cell_size_m`` on a lattice through the world origin.
        attitude_sigma_rad : float
            Standard deviation of the pose's roll/pitch estimate; far points get the height
            error it causes.

        Returns
        -------
        LocalHeightMap
            The smallest grid on the lattice holding every usable point (empty, 0 x 0, when
            there is none).
        """
        t0 = time.perf_counter()
        cs, origin = _grid_of(grid, self.params.cell_size_m)
        xyz_w, var_h, bounds = self._world_points(points, T_world_cam, attitude_sigma_rad)
        p = self.params
        lm = _rasterize(xyz_w, var_h, cs, origin[0], origin[1], bounds, None, p.gate_sigma, p.layer_m,
                        p.top_fraction, p.min_points, p.min_sigma_m, p.top_quantile)
        if p.relief_slope > 0 and lm.n_known:
            lm.var_m2[...] += np.float32(p.relief_slope ** 2) * _cell_mean(
                _horizontal_var_m2(points, T_world_cam), xyz_w, var_h, lm)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("local map %dx%d from %d points: %d cells known in %.1f ms", *lm.shape, len(points),
                         lm.n_known, 1e3 * (time.perf_counter() - t0))
        return lm

    def near_map(self, points: StereoPoints, T_world_cam, *, grid=None, subdivide: int = 2,
                 max_range_m: float = 2.5, attitude_sigma_rad: float = 0.0) -> LocalHeightMap:
        """A finer local map of the ground close to the camera: the points within ``max_range_m`` of the
        left optical centre, on ``grid``'s lattice with every cell split ``subdivide`` x ``subdivide``.

        Close in, stereo resolves more than the planning map's cells hold: a 10 cm cell averages a
        small rock's face with its foot, so its step reads a quarter low, while 5 cm cells seen from
        1-2.5 m (3-20 points each from the fast perception's 240 px sensor, more from a full camera;
        height σ under a centimetre) keep most of it. The navigation executive
        checks steps and roughness on this map (``NavExecutive.observe(..., near=...)``).
        """
        if not isinstance(points, StereoPoints):
            raise TypeError(f"points must be StereoPoints, got {type(points).__name__}")
        sub = _number("near_map", "subdivide", subdivide, ge=1, integer=True)
        rng_max = _number("near_map", "max_range_m", max_range_m, gt=0)
        cs, origin = _grid_of(grid, self.params.cell_size_m)
        p = np.asarray(points.xyz_cam_m, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            keep = np.sqrt(p[:, 0] * p[:, 0] + p[:, 1] * p[:, 1] + p[:, 2] * p[:, 2]) <= rng_max   # = norm, faster
        near = StereoPoints(np.ascontiguousarray(p[keep]),
                            np.ascontiguousarray(np.asarray(points.var_depth_m2, dtype=np.float64)[keep]))
        lattice = TerrainMap(np.full((1, 1), np.nan, np.float32), cs / sub, origin)
        return self.local_map(near, T_world_cam, grid=lattice, attitude_sigma_rad=attitude_sigma_rad)

    def map_pair(self, left, right, T_world_cam, *, grid=None, attitude_sigma_rad: float = 0.0) -> LocalHeightMap:
        """:meth:`disparity`, :meth:`points` and :meth:`local_map` in one call."""
        pts = self.points(self.disparity(left, right))
        return self.local_map(pts, T_world_cam, grid=grid, attitude_sigma_rad=attitude_sigma_rad)

    def map_pair_near(self, left, right, T_world_cam, *, grid=None, attitude_sigma_rad: float = 0.0,
                      subdivide: int = 2, near_range_m: float = 2.5) -> tuple[LocalHeightMap, LocalHeightMap]:
        """The local map and the near map of one pair, matching and triangulating it once.

        ``(local, near)`` are exactly ``map_pair(left, right, T_world_cam, grid=grid,
        attitude_sigma_rad=...)`` and ``near_map(points(disparity(left, right)), T_world_cam, grid=grid,
        subdivide=subdivide, max_range_m=near_range_m, attitude_sigma_rad=...)``; the disparity (the
        dominant cost) is computed once.

        Parameters
        ----------
        left, right : (h, w) uint8
            Rectified grey images.
        T_world_cam : (4, 4) array
            Estimated pose of the left camera in the world.
        grid : GlobalMap or nav.TerrainMap, optional
            The lattice of both maps (the near map's cells split ``subdivide`` x ``subdivide``).
        attitude_sigma_rad : float
            As in :meth:`local_map`.
        subdivide : int
            Near-map cells per map cell along each axis (2: 5 cm cells on a 10 cm map).
        near_range_m : float
            Distance from the left optical centre within which points go into the near map (metres).

        Returns
        -------
        (LocalHeightMap, LocalHeightMap)
            ``(local, near)``.
        """
        # the cheap checks first: a bad argument should not cost a block matching
        _check_pose(T_world_cam, "T_world_cam")
        _grid_of(grid, self.params.cell_size_m)
        _number("map_pair_near", "attitude_sigma_rad", attitude_sigma_rad, ge=0)
        _number("map_pair_near", "subdivide", subdivide, ge=1, integer=True)
        _number("map_pair_near", "near_range_m", near_range_m, gt=0)
        pts = self.points(self.disparity(left, right))
        local = self.local_map(pts, T_world_cam, grid=grid, attitude_sigma_rad=attitude_sigma_rad)
        near = self.near_map(pts, T_world_cam, grid=grid, subdivide=subdivide, max_range_m=near_range_m,
                             attitude_sigma_rad=attitude_sigma_rad)
        return local, near


# ============================================================================ the global map
class GlobalMap:
    """A fused height map of everything seen, on a fixed world grid (e.g. the planner's).

    Parameters
    ----------
    shape : (rows, cols)
    cell_size_m : float
    origin_xy_m : (float, float)
        Lower-left corner of cell (0, 0) (the :mod:`nav.terrain_map` convention).
    params : FusionParams, optional

    Notes
    -----
    Stores float32 height (NaN = unknown), float32 variance (at each cell's last update),
    float64 stamp and float32 last-reported height per cell: 20 bytes per cell.
    """

    def __init__(self, shape, cell_size_m: float, origin_xy_m=(0.0, 0.0), params: FusionParams | None = None):
        try:
            rows, cols = (int(s) for s in shape)
        except (TypeError, ValueError):
            raise ValueError(f"shape = {shape!r}: must be (rows, cols)") from None
        if rows < 1 or cols < 1:
            raise ValueError(f"shape = {shape!r}: must be at least 1 x 1")
        self.cell_size_m, self.origin_xy_m = _check_grid(cell_size_m, origin_xy_m)
        if params is None:
            params = FusionParams()
        if not isinstance(params, FusionParams):
            raise TypeError(f"params must be a FusionParams, got {type(params).__name__}")
        self.params = params
        self._h = np.full((rows, cols), np.nan, np.float32)
        self._v = np.full((rows, cols), np.inf, np.float32)
        self._t = np.zeros((rows, cols), np.float64)
        self._reported = np.full((rows, cols), np.nan, np.float32)
        self._merges = 0
        self._last_stamp = 0.0

    @classmethod
    def like(cls, terrain: TerrainMap, *, prior_sigma_m: float | None = None,
             params: FusionParams | None = None) -> "GlobalMap":
        """A map on ``terrain``'s grid: all unknown, or — with ``prior_sigma_m`` — starting from
        its heights (e.g. an orbital DEM) with that standard deviation."""
        if not isinstance(terrain, TerrainMap):
            raise TypeError(f"terrain must be a nav.TerrainMap, got {type(terrain).__name__}")
        g = cls(terrain.shape, terrain.cell_size_m, terrain.origin_xy_m, params)
        if prior_sigma_m is not None:
            s = _number("GlobalMap.like", "prior_sigma_m", prior_sigma_m, gt=0)
            known = np.isfinite(terrain.elevation_m)
            g._h[known] = terrain.elevation_m[known]
            g._v[known] = s * s
            g._reported[known] = terrain.elevation_m[known]
        return g

    # ------------------------------------------------------------------ state
    @property
    def shape(self) -> tuple[int, int]:
        return self._h.shape

    def _ro(self, a) -> np.ndarray:
        v = a.view()
        v.flags.writeable = False
        return v

    @property
    def height_m(self) -> np.ndarray:
        """Fused heights (float32, NaN = unknown), a read-only view that follows later merges."""
        return self._ro(self._h)

    @property
    def var_m2(self) -> np.ndarray:
        """Variance of each height at its last update (float32, inf = unknown), read-only view."""
        return self._ro(self._v)

    @property
    def stamp(self) -> np.ndarray:
        """Stamp of each cell's last update (float64), read-only view."""
        return self._ro(self._t)

    @property
    def known(self) -> np.ndarray:
        return np.isfinite(self._h)

    @property
    def merges(self) -> int:
        return self._merges

    def sigma_m(self, stamp: float | None = None) -> np.ndarray:
        """Height standard deviation of each cell, inflated for drift up to ``stamp`` (default:
        the last merge's stamp); inf where unknown."""
        now = self._last_stamp if stamp is None else float(stamp)
        age = np.maximum(now - self._t, 0.0)
        return np.sqrt(self._v.astype(np.float64) + self.params.drift_var_m2 * age)

    def terrain_map(self, *, max_sigma_m: float | None = None, stamp: float | None = None,
                    source: str = "stereo map") -> TerrainMap:
        """A :class:`nav.TerrainMap` of the fused heights (a copy; NaN = unknown) for
        :func:`nav.traversability`. With ``max_sigma_m``, cells less certain than that (after
        drift inflation to ``stamp``) are unknown too."""
        z = self._h.copy()
        if max_sigma_m is not None:
            lim = _number("terrain_map", "max_sigma_m", max_sigma_m, gt=0)
            z[self.sigma_m(stamp) > lim] = np.nan
        return TerrainMap(z, self.cell_size_m, self.origin_xy_m, source=source)

    # ------------------------------------------------------------------ merge
    def merge(self, local: LocalHeightMap, *, stamp: float | None = None) -> MapUpdate:
        """Fuse a local height map (see the module docstring); returns the changed cells.

        Parameters
        ----------
        local : LocalHeightMap
            Built on this map's lattice (``StereoMapper.local_map(..., grid=this_map)``).
            Cells outside the map are ignored.
        stamp : float, optional
            When the observation was made, in the unit ``FusionParams.drift_var_m2`` and
            ``max_age`` use (metres travelled recommended; the odometer of the pose
            estimate). Default: the number of merges so far plus one.
        """
        if not isinstance(local, LocalHeightMap):
            raise TypeError(f"local must be a LocalHeightMap, got {type(local).__name__}")
        self._merges += 1
        now = float(self._merges) if stamp is None else _number("merge", "stamp", stamp)
        if not math.isfinite(now):
            raise ValueError(f"merge.stamp = {stamp!r}: must be finite")
        self._last_stamp = now
        empty = MapUpdate(rows=np.zeros(0, np.int64), cols=np.zeros(0, np.int64), shape=self.shape)
        if 0 in local.shape:
            return empty
        if abs(local.cell_size_m - self.cell_size_m) > 1e-9 * self.cell_size_m:
            raise ValueError(f"local map cells are {local.cell_size_m:g} m, the global map's {self.cell_size_m:g} m; "
                             f"build it with grid=this map")
        fc = (local.origin_xy_m[0] - self.origin_xy_m[0]) / self.cell_size_m
        fr = (local.origin_xy_m[1] - self.origin_xy_m[1]) / self.cell_size_m
        c0, r0 = round(fc), round(fr)
        if abs(fc - c0) > 1e-6 or abs(fr - r0) > 1e-6:
            raise ValueError(f"local map origin {local.origin_xy_m} is not on the global map's lattice "
                             f"(origin {self.origin_xy_m}, cells {self.cell_size_m:g} m); build it with grid=this map")
        n = local.height_m.size
        ch_r = np.empty(n, np.int64)
        ch_c = np.empty(n, np.int64)
        stats = np.zeros(5, np.int64)
        fp = self.params
        _status("_fuse_heights", _kernels()._fuse_heights(
            np.ascontiguousarray(local.height_m, dtype=np.float32), np.ascontiguousarray(local.var_m2, dtype=np.float32),
            int(r0), int(c0), self._h, self._v, self._t, self._reported, now, fp.drift_var_m2, fp.gate_sigma,
            fp.max_age, fp.min_sigma_m ** 2, fp.change_tol_m, ch_r, ch_c, stats))
        k = int(stats[0])
        return MapUpdate(rows=ch_r[:k].copy(), cols=ch_c[:k].copy(), n_new=int(stats[1]), n_fused=int(stats[2]),
                         n_inconsistent=int(stats[3]), n_replaced=int(stats[4]), shape=self.shape)

    def __repr__(self) -> str:
        r, c = self.shape
        return (f"GlobalMap({r}x{c} cells of {self.cell_size_m:g} m at {self.origin_xy_m}, "
                f"{float(self.known.mean()):.1%} known, {self._merges} merges)")
