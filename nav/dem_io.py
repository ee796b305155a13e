"""Loading digital elevation models (DEM files) into :class:`~nav.terrain_map.TerrainMap`.

Formats
-------
``.npy`` / ``.npz``
    A 2-D array already in the TerrainMap convention (row 0 = south). ``.npz`` holds
    ``elevation_m``, ``cell_size_m`` and optionally ``origin_xy_m``, or a single array
    (then ``cell_size_m=`` must be passed, as for ``.npy``).
``.asc``
    ESRI ASCII grid. Header keys are case-insensitive: ``ncols``, ``nrows``,
    ``xllcorner|xllcenter``, ``yllcorner|yllcenter``, ``cellsize`` (or ``dx`` and
    ``dy``), optional ``NODATA_value``. Rows are north-first in the file. A sibling
    ``.prj`` (WKT) gives the CRS; without one, metres are assumed unless
    ``crs_units="deg"``.
``.tif`` / ``.tiff``
    Single-band GeoTIFF read with ``tifffile``: ModelPixelScale + ModelTiepoint (or a
    rotation-free ModelTransformation), GeoKeys for model type, linear/angular units,
    ellipsoid, raster type (PixelIsPoint shifts half a pixel) and vertical units;
    ``GDAL_NODATA`` and GDAL_METADATA scale/offset.
``.img`` / ``.lbl``
    PDS3 image with an attached label, or a detached ``.LBL`` (pass either file).
    HiRISE DTMs (PC_REAL, ``MISSING_CONSTANT = 16#FF7FFFFB#``, metres per pixel) and
    LOLA LDEMs (LSB_INTEGER, ``SCALING_FACTOR``, ``OFFSET``, km per pixel) are the
    shapes this was written for. Missing: the MISSING_CONSTANT / MISSING /
    INVALID_CONSTANT / NULL / CORE_NULL raw values (based integers are bit patterns
    for real sample types), raw values outside VALID_MINIMUM..VALID_MAXIMUM, NaN, and
    the ISIS special pixels of 32-bit reals. Heights are ``(raw * SCALING_FACTOR +
    OFFSET)`` in UNIT (metres or km), except that an OFFSET of 100 km or more is the
    body's reference radius (LOLA: 1737400 m): it is not added, so heights stay
    relative to that sphere (recorded in ``meta["height_datum"]``).

Georeferencing
--------------
Projected grids keep their projected coordinates (the origin is the lower-left
corner of the lower-left cell). PDS3 map offsets follow GDAL's reading of the
standard: the centre of 0-based sample ``s`` is at ``x = (s - SAMPLE_PROJECTION_OFFSET)
* MAP_SCALE`` and of 0-based line ``l`` at ``y = (LINE_PROJECTION_OFFSET - l) *
MAP_SCALE``. MAP_SCALE without a unit is km/pixel (the PDS3 data dictionary's unit);
a simple-cylindrical map with only MAP_RESOLUTION <PIX/DEG> is read as a degree grid.

Geographic grids (degrees) are never read as metres. With a known body radius or
ellipsoid they are converted to a local equirectangular frame about the map's
centre (origin of the frame at the centre, so the map spans ``-W/2 .. W/2``):
``dx = R cos(lat0) dlon``, ``dy = R dlat`` on a sphere (or the ellipsoid's prime-
vertical and meridional radii of curvature at ``lat0``), then resampled to square
cells at the smaller spacing (or ``resolution_m``). An equirectangular PDS3 map far
from its standard parallel (x scale off by more than 1 %) gets the same correction.
``TerrainMap.meta`` records what was done.

Every failure raises :class:`~nav.errors.DEMError` naming the file and the problem.
"""
from __future__ import annotations

import logging
import math
import os
import re
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ._resample import resample_grid_xy
from .errors import DEMError
from .terrain_map import TerrainMap

__all__ = ["load_dem", "parse_odl", "OdlBlock", "OdlError", "Quantity", "BasedInt"]

logger = logging.getLogger(__name__)

_FORMATS = {
    ".npy": "NumPy array", ".npz": "NumPy archive", ".asc": "ESRI ASCII grid",
    ".tif": "GeoTIFF", ".tiff": "GeoTIFF", ".img": "PDS3 image", ".lbl": "PDS3 label",
}
_CRS_UNITS = ("m", "deg")
# A geographic grid must fit on the globe; beyond this it is not degrees.
_MAX_LAT_DEG = 90.0 + 1e-9
# Equirectangular maps whose x scale at their centre is off by more than this are corrected.
_MAX_X_SCALE_ERROR = 0.01
# Equirectangular maps spanning more latitude than this get a warning (x scale varies).
_MAX_LAT_SPAN_DEG = 10.0
# A PDS3 height OFFSET at least this large (m) is the body's reference radius, not a height.
_MIN_RADIUS_OFFSET_M = 1.0e5
# Label text read from the top of a file with an attached PDS3 label, at most.
_MAX_LABEL_BYTES = 64 * 2**20

_READ_ERRORS = (OSError, ValueError, TypeError, KeyError, IndexError, EOFError, struct.error,
                zipfile.BadZipFile, UnicodeError, OverflowError, MemoryError)


# =========================================================================== public API
def load_dem(path, *, cell_size_m: float | None = None, resolution_m: float | None = None,
             body_radius_m: float | None = None, crs_units: str | None = None) -> TerrainMap:
    """Load a DEM file into a :class:`~nav.terrain_map.TerrainMap`.

    Parameters
    ----------
    path : str or os.PathLike
        ``.npy``, ``.npz``, ``.asc``, ``.tif``/``.tiff`` or PDS3 ``.img``/``.lbl``
        (extension case-insensitive). See the module docstring.
    cell_size_m : float, optional
        Cell size for files that carry none (``.npy``, a single-array ``.npz``, a TIFF
        or PDS3 image without georeferencing). Must agree with the file's own cell
        size if it has one.
    resolution_m : float, optional
        Resample the result to square cells of this size (area-weighted averaging
        when coarser, bilinear when finer; see :meth:`TerrainMap.resampled`).
    body_radius_m : float, optional
        Radius of the body (m) used to convert geographic (degree) grids to metres;
        overrides any radius or ellipsoid the file names.
    crs_units : {"m", "deg"}, optional
        Horizontal units of a file that does not say (an ``.asc`` without ``.prj``, a
        TIFF without GeoKeys). Default: metres. Contradicting the file is an error.

    Returns
    -------
    TerrainMap
        ``elevation_m`` float32 metres, NaN where the file has no data, row 0 south;
        ``meta`` records the format, units, nodata handling and any conversion.

    Raises
    ------
    DEMError
        The file is missing, of unknown type, corrupt, truncated, multi-band, in an
        unsupported sample type or compression, or in degrees with no known radius.
    ValueError
        An argument is invalid (names the argument, its value and the rule).
    """
    cell_size_m = _check_option("cell_size_m", cell_size_m)
    resolution_m = _check_option("resolution_m", resolution_m)
    body_radius_m = _check_option("body_radius_m", body_radius_m)
    if crs_units is not None and crs_units not in _CRS_UNITS:
        raise ValueError(f"crs_units must be one of {_CRS_UNITS} or None, got {crs_units!r}")
    p = Path(os.fspath(path))
    if not p.exists():
        raise DEMError(p, "file not found")
    if p.is_dir():
        raise DEMError(p, "is a directory, not a DEM file")
    ext = p.suffix.lower()
    if ext not in _FORMATS:
        known = ", ".join(sorted(_FORMATS))
        raise DEMError(p, f"unknown DEM file extension {p.suffix!r}; supported: {known}")
    reader = {".npy": _read_npy, ".npz": _read_npz, ".asc": _read_asc, ".tif": _read_geotiff,
              ".tiff": _read_geotiff, ".img": _read_pds, ".lbl": _read_pds}[ext]
    try:
        grid = reader(p, cell_size_m)
    except DEMError:
        raise
    except _READ_ERRORS as exc:
        raise DEMError(p, f"could not read it as a {_FORMATS[ext]}: {type(exc).__name__}: {exc}") from exc
    return _finish(p, grid, resolution_m=resolution_m, body_radius_m=body_radius_m,
                   crs_units=crs_units)


def _check_option(name: str, value):
    if value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return v


# ======================================================================= common model
@dataclass
class _Grid:
    """What a reader found, before unit conversion. Rows are south-first."""
    z: np.ndarray                    # real dtype (often a flipped view), NaN = missing
    dx: float                        # cell width along columns, in ``units``
    dy: float                        # cell height along rows, in ``units``
    x0: float                        # lower-left corner, in ``units``
    y0: float
    units: str | None                # "m", "deg", or None when the file does not say
    crs: str = "local"
    ellipsoid: tuple[float, float] | None = None   # (semi-major m, inverse flattening; 0 = sphere)
    meta: dict = field(default_factory=dict)


def _finish(p: Path, g: _Grid, *, resolution_m, body_radius_m, crs_units) -> TerrainMap:
    meta = dict(g.meta)
    meta["source_file"] = str(p)
    z = g.z
    bad = np.isinf(z)
    if bad.any():
        logger.warning("%s: %d infinite heights treated as missing", p, int(bad.sum()))
        meta["n_infinite_as_missing"] = int(bad.sum())
        z = np.where(bad, np.nan, z)
    units = g.units
    if units is None:
        units = crs_units or "m"
        meta["units_assumed"] = (f"the file does not state its horizontal units; "
                                 f"{'crs_units=' + repr(crs_units) if crs_units else 'metres assumed'}")
        if units == "m" and _looks_geographic(g):
            msg = (f"no CRS information and the coordinates look like degrees "
                   f"(cell {g.dx:g}, corner {g.x0:g}, {g.y0:g}); read as metres — pass "
                   f"crs_units='deg' and body_radius_m=... if they are degrees")
            logger.warning("%s: %s", p, msg)
            meta["warning"] = msg
    elif crs_units is not None and crs_units != units:
        raise DEMError(p, f"crs_units={crs_units!r} contradicts the file, whose CRS is in "
                          f"{'degrees' if units == 'deg' else 'metres'} ({g.crs})")
    for name, v in (("dx", g.dx), ("dy", g.dy), ("x0", g.x0), ("y0", g.y0)):
        if not math.isfinite(v) or (name in ("dx", "dy") and v <= 0):
            raise DEMError(p, f"cell size / origin {name} = {v!r} is not a finite "
                              f"{'number > 0' if name in ('dx', 'dy') else 'number'}")
    crs = g.crs
    if units == "deg":
        dx_m, dy_m, x0_m, y0_m, crs = _degrees_to_metres(p, g, body_radius_m, meta)
    else:
        dx_m, dy_m, x0_m, y0_m = g.dx, g.dy, g.x0, g.y0
    meta["units"] = units
    meta["file_cell_size_m"] = (dx_m, dy_m)
    if not math.isclose(dx_m, dy_m, rel_tol=1e-6):  # float32-rounded pixel sizes count as square
        target = resolution_m or min(dx_m, dy_m)
        try:
            z = resample_grid_xy(z, dx_m, dy_m, target)
        except ValueError as exc:
            raise DEMError(p, f"cannot resample the {dx_m:g} m × {dy_m:g} m cells to "
                              f"{target:g} m: {exc}") from exc
        meta["resampled"] = (f"{dx_m:.6g} m × {dy_m:.6g} m cells resampled to square "
                             f"{target:.6g} m cells")
        cell = target
        resolution_m = None
    else:
        cell = dx_m
    try:
        tm = TerrainMap(elevation_m=z, cell_size_m=cell, origin_xy_m=(x0_m, y0_m),
                        source=str(p), crs=crs, meta=meta)
        if resolution_m is not None and resolution_m != cell:
            tm = tm.resampled(resolution_m)
            tm.meta["resampled"] = f"{cell:.6g} m cells resampled to {resolution_m:.6g} m"
    except ValueError as exc:
        raise DEMError(p, str(exc)) from exc
    tm.meta["n_missing"] = int(np.isnan(tm.elevation_m).sum())
    logger.info("loaded %s: %s", p, tm)
    return tm


def _looks_geographic(g: _Grid) -> bool:
    rows, cols = g.z.shape
    x1 = g.x0 + cols * g.dx
    y1 = g.y0 + rows * g.dy
    return (max(g.dx, g.dy) < 0.01 and -180 <= g.x0 and x1 <= 360
            and -90 <= g.y0 and y1 <= 90)


def _degrees_to_metres(p: Path, g: _Grid, body_radius_m, meta: dict):
    rows, cols = g.z.shape
    lat_min = g.y0
    lat_max = g.y0 + rows * g.dy
    if lat_min < -_MAX_LAT_DEG or lat_max > _MAX_LAT_DEG:
        raise DEMError(p, f"the grid is said to be in degrees but spans latitudes "
                          f"{lat_min:g}..{lat_max:g}, outside ±90; is it really geographic?")
    if body_radius_m is not None:
        a, inv_f, how = body_radius_m, 0.0, "body_radius_m argument"
    elif g.ellipsoid is not None:
        (a, inv_f), how = g.ellipsoid, "the file's ellipsoid"
    else:
        raise DEMError(p, "the grid is in geographic degrees (" + g.crs + ") and the body's radius "
                          "is unknown, so cell sizes cannot be converted to metres: pass "
                          "body_radius_m=... (e.g. 6371000 Earth, 3389500 Mars, 1737400 Moon), "
                          "or reproject the DEM to a metric projection first")
    lat0 = 0.5 * (lat_min + lat_max)
    lon0 = g.x0 + 0.5 * cols * g.dx
    phi = math.radians(lat0)
    if inv_f and inv_f > 0:
        f = 1.0 / inv_f
        e2 = f * (2.0 - f)
        w = 1.0 - e2 * math.sin(phi) ** 2
        n_radius = a / math.sqrt(w)
        m_radius = a * (1.0 - e2) / w**1.5
        model = f"ellipsoid a = {a:.3f} m, 1/f = {inv_f:.9g}"
    else:
        n_radius = m_radius = a
        model = f"sphere R = {a:.3f} m"
    m_per_deg_x = n_radius * math.cos(phi) * math.pi / 180.0
    m_per_deg_y = m_radius * math.pi / 180.0
    if m_per_deg_x < 1e-6 * m_per_deg_y:
        raise DEMError(p, f"the map is centred at latitude {lat0:g}°, too close to a pole for a "
                          f"local equirectangular frame; reproject it (polar stereographic)")
    dx_m = g.dx * m_per_deg_x
    dy_m = g.dy * m_per_deg_y
    x0_m = (g.x0 - lon0) * m_per_deg_x
    y0_m = (g.y0 - lat0) * m_per_deg_y
    meta["conversion"] = (f"geographic degrees -> local equirectangular metres about "
                          f"lat0 = {lat0:.8g}°, lon0 = {lon0:.8g}° ({model}, from {how}): "
                          f"dx = {g.dx:.9g}° × {m_per_deg_x:.6f} m/° = {dx_m:.6f} m, "
                          f"dy = {g.dy:.9g}° × {m_per_deg_y:.6f} m/° = {dy_m:.6f} m")
    meta["lat0_deg"] = lat0
    meta["lon0_deg"] = lon0
    meta["radius_m"] = a
    crs = f"local equirectangular about lat {lat0:.6f}°, lon {lon0:.6f}° (from {g.crs})"
    return dx_m, dy_m, x0_m, y0_m, crs


def _check_cell_size(p: Path, name: str, value) -> float:
    try:
        v = float(np.asarray(value, dtype=np.float64).reshape(()))
    except (TypeError, ValueError):
        raise DEMError(p, f"{name} = {value!r} is not a number") from None
    if not math.isfinite(v) or v <= 0:
        raise DEMError(p, f"{name} = {v!r} must be a finite number > 0")
    return v


def _agree(p: Path, file_cell: float, cell_size_m: float | None, where: str) -> None:
    if cell_size_m is not None and not math.isclose(file_cell, cell_size_m, rel_tol=1e-6):
        raise DEMError(p, f"cell_size_m={cell_size_m:g} contradicts the file's own cell size "
                          f"{file_cell:g} m ({where}); leave cell_size_m out, or use "
                          f"resolution_m= to resample")


def _check_array(p: Path, arr: np.ndarray, what: str) -> np.ndarray:
    if arr.dtype.kind not in "iuf":
        raise DEMError(p, f"{what} has dtype {arr.dtype}; heights must be real numbers")
    if arr.ndim != 2:
        raise DEMError(p, f"{what} must be 2-D (rows, cols), got shape {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise DEMError(p, f"{what} is empty (shape {arr.shape})")
    return arr


def _heights_float32(raw: np.ndarray, scale: float, offset: float, factor: float,
                     missing: np.ndarray | None, block_cells: int = 1 << 22) -> np.ndarray:
    """``(raw * scale + offset) * factor`` as float32 with NaN where ``missing``.

    float64 arithmetic a block of rows at a time, so a large integer DEM never needs a
    full float64 copy.
    """
    out = np.empty(raw.shape, dtype=np.float32)
    rows_per_block = max(1, block_cells // max(1, raw.shape[1]))
    plain = scale == 1.0 and offset == 0.0 and factor == 1.0
    for r0 in range(0, raw.shape[0], rows_per_block):
        blk = raw[r0:r0 + rows_per_block]
        if plain:
            out[r0:r0 + rows_per_block] = blk
        else:
            out[r0:r0 + rows_per_block] = (blk.astype(np.float64) * scale + offset) * factor
    if missing is not None:
        out[missing] = np.nan
    return out


def _find_key(block: "OdlBlock", key: str):
    """A key's value in ``block`` or, failing that, in its nested blocks (depth-first)."""
    v = block.get(key)
    if v is not None:
        return v
    for b in block.blocks():
        v = _find_key(b, key)
        if v is not None:
            return v
    return None


# ============================================================================ NumPy
def _read_npy(p: Path, cell_size_m) -> _Grid:
    try:
        arr = np.load(p, allow_pickle=False)
    except ValueError as exc:
        raise DEMError(p, f"not a plain numeric .npy array ({exc})") from exc
    if not isinstance(arr, np.ndarray):
        raise DEMError(p, "is not a .npy file (it looks like an .npz archive)")
    _check_array(p, arr, "the array")
    if cell_size_m is None:
        raise DEMError(p, "a .npy file holds no cell size: pass cell_size_m=... (metres)")
    return _Grid(arr, cell_size_m, cell_size_m, 0.0, 0.0, "m",
                 meta={"format": "npy"})


def _read_npz(p: Path, cell_size_m) -> _Grid:
    try:
        f = np.load(p, allow_pickle=False)
    except ValueError as exc:
        raise DEMError(p, f"not a readable .npz archive ({exc})") from exc
    if not isinstance(f, np.lib.npyio.NpzFile):
        raise DEMError(p, "is not an .npz archive (it looks like a .npy array)")
    with f:
        keys = list(f.files)
        try:
            if "elevation_m" in keys:
                z = _check_array(p, f["elevation_m"], "elevation_m")
                if "cell_size_m" in keys:
                    cell = _check_cell_size(p, "cell_size_m", f["cell_size_m"])
                    _agree(p, cell, cell_size_m, "npz key cell_size_m")
                elif cell_size_m is not None:
                    cell = cell_size_m
                else:
                    raise DEMError(p, "has elevation_m but no cell_size_m key: add it, or pass "
                                      "cell_size_m=... (metres)")
                ox = oy = 0.0
                if "origin_xy_m" in keys:
                    o = np.asarray(f["origin_xy_m"])
                    if o.shape != (2,) or o.dtype.kind not in "iuf" or not np.isfinite(o).all():
                        raise DEMError(p, f"origin_xy_m must be two finite numbers, got {o!r}")
                    ox, oy = float(o[0]), float(o[1])
                extra = sorted(set(keys) - {"elevation_m", "cell_size_m", "origin_xy_m"})
                if extra:
                    logger.info("%s: ignoring npz arrays %s", p, extra)
            elif len(keys) == 1:
                z = _check_array(p, f[keys[0]], f"array {keys[0]!r}")
                if cell_size_m is None:
                    raise DEMError(p, f"the single array {keys[0]!r} comes with no cell size: "
                                      f"pass cell_size_m=... (metres)")
                cell, ox, oy = cell_size_m, 0.0, 0.0
            else:
                raise DEMError(p, f"holds arrays {keys}; expected 'elevation_m' (with 'cell_size_m' "
                                  f"and optionally 'origin_xy_m') or a single array")
        except ValueError as exc:
            if isinstance(exc, DEMError):
                raise
            raise DEMError(p, f"cannot read its arrays ({exc})") from exc
    return _Grid(z, cell, cell, ox, oy, "m", meta={"format": "npz"})


# ================================================================== ESRI ASCII grid
_ASC_KEYS = {"ncols", "nrows", "xllcorner", "xllcenter", "yllcorner", "yllcenter", "cellsize",
             "dx", "dy", "nodata_value"}
_NUMERIC_START = re.compile(r"^[+\-]?(\d|\.\d|nan|inf)", re.IGNORECASE)


def _read_asc(p: Path, cell_size_m) -> _Grid:
    text = p.read_bytes().decode("latin-1")
    header: dict[str, str] = {}
    pos = 0
    line_no = 0
    while pos < len(text):
        nl = text.find("\n", pos)
        end = len(text) if nl < 0 else nl + 1
        line = text[pos:end].strip()
        if line and _NUMERIC_START.match(line):
            break
        line_no += 1
        pos = end
        if not line:
            continue
        parts = line.split()
        key = parts[0].lower()
        if len(parts) != 2:
            raise DEMError(p, f"header line {line_no} {line!r} is not 'key value'")
        if key not in _ASC_KEYS:
            logger.info("%s: ignoring unknown header key %r", p, parts[0])
            continue
        if key in header:
            raise DEMError(p, f"header key {parts[0]!r} appears twice")
        header[key] = parts[1]

    def num(key, *, integer=False):
        raw = header[key]
        try:
            v = float(raw)
        except ValueError:
            raise DEMError(p, f"header {key} = {raw!r} is not a number") from None
        if integer:
            if not math.isfinite(v) or v != int(v) or v < 1:
                raise DEMError(p, f"header {key} = {raw!r} must be a positive integer")
            return int(v)
        return v

    for need in ("ncols", "nrows"):
        if need not in header:
            raise DEMError(p, f"ESRI ASCII header lacks {need!r}" + ("" if header else
                              " (no header at all: is this an ESRI ASCII grid?)"))
    ncols, nrows = num("ncols", integer=True), num("nrows", integer=True)
    if "cellsize" in header:
        if "dx" in header or "dy" in header:
            raise DEMError(p, "header has both cellsize and dx/dy")
        dx = dy = num("cellsize")
    elif "dx" in header and "dy" in header:
        dx, dy = num("dx"), num("dy")
    else:
        raise DEMError(p, "ESRI ASCII header lacks 'cellsize' (or 'dx' and 'dy')")
    for name, v in (("cellsize" if "cellsize" in header else "dx", dx), ("dy", dy)):
        if not math.isfinite(v) or v <= 0:
            raise DEMError(p, f"header {name} = {v!r} must be a finite number > 0")
    corner = {}
    for axis, d in (("x", dx), ("y", dy)):
        has_corner, has_centre = f"{axis}llcorner" in header, f"{axis}llcenter" in header
        if has_corner and has_centre:
            raise DEMError(p, f"header has both {axis}llcorner and {axis}llcenter")
        if has_corner:
            corner[axis] = num(f"{axis}llcorner")
        elif has_centre:
            corner[axis] = num(f"{axis}llcenter") - 0.5 * d
        else:
            raise DEMError(p, f"ESRI ASCII header lacks '{axis}llcorner' or '{axis}llcenter'")
    nodata = num("nodata_value") if "nodata_value" in header else None
    try:
        values = np.fromstring(text[pos:], sep=" ")
    except ValueError:
        bad = _first_bad_token(text[pos:])
        raise DEMError(p, f"grid data contains a non-number {bad!r}") from None
    expected = nrows * ncols
    if values.size < expected:
        raise DEMError(p, f"truncated: the header says nrows × ncols = {nrows} × {ncols} = "
                          f"{expected} values but the file has only {values.size}")
    if values.size > expected:
        raise DEMError(p, f"has {values.size} values, more than the nrows × ncols = {expected} "
                          f"the header says; the header is wrong or the file is corrupt")
    z = values.reshape(nrows, ncols)
    meta = {"format": "esri-ascii", "nodata_value": nodata}
    if nodata is not None:
        z[z == nodata] = np.nan
    z = z[::-1]   # the file is north-first; row 0 = south
    units, ellipsoid, crs = None, None, "unknown (no .prj)"
    prj = _sibling(p, ".prj")
    if prj is not None:
        try:
            info = _crs_from_prj(prj.read_bytes().decode("latin-1"))
        except ValueError as exc:
            raise DEMError(prj, f"cannot understand the CRS in this .prj: {exc}") from exc
        units, ellipsoid, crs = info["units"], info["ellipsoid"], info["name"]
        f_unit = info["factor"]
        dx, dy = dx * f_unit, dy * f_unit
        corner = {k: v * f_unit for k, v in corner.items()}
        meta["prj"] = str(prj)
        if info["factor"] != 1.0:
            meta["unit_factor"] = info["factor"]
    if cell_size_m is not None:
        if units == "deg":
            raise DEMError(p, "cell_size_m cannot be applied: the grid is in degrees")
        _agree(p, dx, cell_size_m, "header cellsize")
    return _Grid(z, dx, dy, corner["x"], corner["y"], units, crs, ellipsoid, meta)


def _first_bad_token(text: str) -> str:
    for tok in text.split():
        try:
            float(tok)
        except ValueError:
            return tok[:40]
    return "?"


def _sibling(p: Path, suffix: str) -> Path | None:
    """A file beside ``p`` with the same stem and ``suffix``, matched case-insensitively."""
    want = (p.stem + suffix).lower()
    exact = p.with_suffix(suffix)
    if exact.is_file():
        return exact
    try:
        for entry in p.parent.iterdir():
            if entry.name.lower() == want and entry.is_file():
                return entry
    except OSError:
        return None
    return None


# ---------------------------------------------------------------------------- WKT
_WKT_TOKEN = re.compile(r'\s*(?:(?P<s>"(?:[^"]|"")*")|(?P<o>[\[(])|(?P<c>[\])])|(?P<k>,)'
                        r'|(?P<w>[^\s\[\]()",]+))')
_PROJECTED = {"PROJCS", "PROJCRS", "PROJECTEDCRS"}
_GEOGRAPHIC = {"GEOGCS", "GEOGCRS", "GEODCRS", "GEOGRAPHICCRS", "GEODETICCRS", "BASEGEOGCRS",
               "BASEGEODCRS"}
_LOCAL = {"LOCAL_CS", "ENGCRS", "ENGINEERINGCRS"}
_COMPOUND = {"COMPD_CS", "COMPOUNDCRS"}


def _parse_wkt(text: str):
    """WKT (1 or 2) into nested ``(KEYWORD, [args])``; args are str, float or nodes."""
    toks = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _WKT_TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ValueError(f"unexpected character {text[pos]!r} at offset {pos}")
        pos = m.end()
        kind = m.lastgroup
        if kind is None:
            continue
        toks.append((kind, m.group(kind)))
    i = 0

    def node():
        nonlocal i
        if i >= len(toks) or toks[i][0] != "w":
            raise ValueError("expected a WKT keyword")
        kw = toks[i][1].upper()
        i += 1
        if i >= len(toks) or toks[i][0] != "o":
            return kw  # bare enumeration word (NORTH, EAST, ...)
        i += 1
        args = []
        while True:
            if i >= len(toks):
                raise ValueError(f"unterminated {kw}[...]")
            kind, val = toks[i]
            if kind == "c":
                i += 1
                return (kw, args)
            if kind == "k":
                i += 1
                continue
            if kind == "s":
                args.append(val[1:-1].replace('""', '"'))
                i += 1
            elif kind == "w":
                try:
                    args.append(float(val))
                    i += 1
                except ValueError:
                    args.append(node())
            else:
                raise ValueError(f"unexpected {val!r}")

    root = node()
    if not isinstance(root, tuple):
        raise ValueError("not a WKT CRS")
    return root


def _wkt_children(n, names):
    return [a for a in n[1] if isinstance(a, tuple) and a[0] in names]


def _wkt_find(n, names, skip=frozenset()):
    """Depth-first search for the first node named in ``names``, not entering ``skip``."""
    for a in n[1]:
        if isinstance(a, tuple):
            if a[0] in names:
                return a
            if a[0] not in skip:
                hit = _wkt_find(a, names, skip)
                if hit is not None:
                    return hit
    return None


def _wkt_unit(u, default: float) -> float:
    if u is None:
        return default
    nums = [a for a in u[1] if isinstance(a, float)]
    if not nums or not math.isfinite(nums[0]) or nums[0] <= 0:
        raise ValueError(f"bad {u[0]} {u[1]!r}")
    return nums[0]


def _crs_from_prj(text: str) -> dict:
    """``{"units": "m"|"deg", "factor": to metres or degrees, "ellipsoid", "name"}``."""
    if "[" not in text:
        return _crs_from_esri_prj(text)
    root = _parse_wkt(text)
    kw = root[0]
    if kw in _COMPOUND:
        subs = [a for a in root[1] if isinstance(a, tuple)]
        if not subs:
            raise ValueError("COMPD_CS without a horizontal CRS")
        root, kw = subs[0], subs[0][0]
    name = root[1][0] if root[1] and isinstance(root[1][0], str) else kw
    if kw in _PROJECTED:
        u = (_wkt_children(root, {"UNIT", "LENGTHUNIT"}) or [None])[0]
        for axis in _wkt_children(root, {"AXIS"}) if u is None else ():
            u = (_wkt_children(axis, {"LENGTHUNIT", "UNIT"}) or [None])[0]
            if u is not None:
                break
        if u is None:
            u = _wkt_find(root, {"LENGTHUNIT", "UNIT"}, skip=_GEOGRAPHIC | {"CONVERSION"})
        return {"units": "m", "factor": _wkt_unit(u, 1.0), "ellipsoid": None,
                "name": f"{name} (projected)"}
    if kw in _GEOGRAPHIC:
        cs = _wkt_children(root, {"CS"})
        if cs and any(isinstance(a, str) and a.upper() == "CARTESIAN" for a in cs[0][1]):
            raise ValueError(f"{name} is a geocentric (Cartesian) CRS, not a map projection")
        u = (_wkt_children(root, {"UNIT", "ANGLEUNIT"}) or [None])[0]
        if u is None:
            u = _wkt_find(root, {"ANGLEUNIT"})
        rad_per_unit = _wkt_unit(u, math.pi / 180.0)
        sph = _wkt_find(root, {"SPHEROID", "ELLIPSOID"})
        ell = None
        if sph is not None:
            nums = [a for a in sph[1] if isinstance(a, float)]
            if len(nums) >= 2 and nums[0] > 0:
                lu = _wkt_children(sph, {"LENGTHUNIT"})
                ell = (nums[0] * _wkt_unit(lu[0] if lu else None, 1.0), nums[1])
        deg_per_unit = rad_per_unit * 180.0 / math.pi
        if abs(deg_per_unit - 1.0) < 1e-12:  # UNIT["degree",0.0174532925199433]
            deg_per_unit = 1.0
        return {"units": "deg", "factor": deg_per_unit, "ellipsoid": ell,
                "name": f"{name} (geographic)"}
    if kw in _LOCAL:
        u = _wkt_find(root, {"UNIT", "LENGTHUNIT"})
        return {"units": "m", "factor": _wkt_unit(u, 1.0), "ellipsoid": None,
                "name": f"{name} (local)"}
    raise ValueError(f"unsupported WKT CRS type {kw}")


def _crs_from_esri_prj(text: str) -> dict:
    """The pre-WKT ArcInfo .prj (``Projection UTM`` / ``Units METERS`` lines)."""
    kv = {}
    for line in text.splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2:
            kv[parts[0].lower()] = parts[1].strip().upper()
    proj = kv.get("projection")
    unit = kv.get("units")
    if proj is None and unit is None:
        raise ValueError("neither WKT nor an ArcInfo projection file")
    if proj == "GEOGRAPHIC" or unit in ("DD", "DS", "DEGREES"):
        if unit not in (None, "DD", "DEGREES"):
            raise ValueError(f"geographic units {unit} are not supported (only DD)")
        return {"units": "deg", "factor": 1.0, "ellipsoid": None, "name": "GEOGRAPHIC (ArcInfo .prj)"}
    factors = {None: 1.0, "METERS": 1.0, "METRES": 1.0, "FEET": 0.3048,
               "FEET_US": 1200.0 / 3937.0, "KILOMETERS": 1000.0}
    if unit not in factors:
        raise ValueError(f"unsupported units {unit}")
    return {"units": "m", "factor": factors[unit], "ellipsoid": None,
            "name": f"{proj or 'unknown'} (ArcInfo .prj)"}


# ========================================================================== GeoTIFF
_TAG_PIXEL_SCALE = 33550
_TAG_TIEPOINT = 33922
_TAG_TRANSFORM = 34264
_TAG_GEOKEYS = 34735
_TAG_GEO_DOUBLES = 34736
_TAG_GEO_ASCII = 34737
_TAG_GDAL_METADATA = 42112
_TAG_GDAL_NODATA = 42113

_KEY_MODEL_TYPE = 1024
_KEY_RASTER_TYPE = 1025
_KEY_CITATION = 1026
_KEY_GEOG_TYPE = 2048
_KEY_GEOG_CITATION = 2049
_KEY_GEOG_LINEAR_UNITS = 2052
_KEY_GEOG_LINEAR_UNIT_SIZE = 2053
_KEY_GEOG_ANGULAR_UNITS = 2054
_KEY_GEOG_ANGULAR_UNIT_SIZE = 2055
_KEY_GEOG_ELLIPSOID = 2056
_KEY_GEOG_SEMI_MAJOR = 2057
_KEY_GEOG_SEMI_MINOR = 2058
_KEY_GEOG_INV_FLATTENING = 2059
_KEY_PROJECTED_TYPE = 3072
_KEY_PCS_CITATION = 3073
_KEY_PROJ_LINEAR_UNITS = 3076
_KEY_PROJ_LINEAR_UNIT_SIZE = 3077
_KEY_VERTICAL_UNITS = 4099

_USER_DEFINED = 32767
# EPSG linear units: metres per unit.
_LINEAR_UNITS = {9001: 1.0, 9002: 0.3048, 9003: 1200.0 / 3937.0, 9036: 1000.0, 9005: 0.3047972654,
                 9014: 1.8288, 9030: 1852.0, 9093: 1609.344}
# EPSG angular units: degrees per unit.
_ANGULAR_UNITS = {9102: 1.0, 9101: 180.0 / math.pi, 9105: 0.9, 9106: 0.9, 9103: 1.0 / 60.0,
                  9104: 1.0 / 3600.0, 9122: 1.0}
# EPSG ellipsoids: (semi-major m, inverse flattening).
_ELLIPSOIDS = {7030: (6378137.0, 298.257223563), 7019: (6378137.0, 298.257222101),
               7008: (6378206.4, 294.9786982), 7043: (6378135.0, 298.26), 7022: (6378388.0, 297.0),
               7035: (6371000.0, 0.0), 7048: (6371007.0, 0.0), 7004: (6377397.155, 299.1528128)}
# EPSG geographic CRS (Earth) -> ellipsoid code.
_GEOG_CRS = {4326: 7030, 4979: 7030, 4030: 7030, 4269: 7019, 4258: 7019, 4283: 7019, 4019: 7019,
             4617: 7019, 4674: 7019, 6318: 7019, 7844: 7019, 4267: 7008, 4322: 7043, 4230: 7022,
             4035: 7035, 4047: 7048, 4314: 7004}


def _read_geotiff(p: Path, cell_size_m) -> _Grid:
    try:
        import tifffile
    except ImportError as exc:  # pragma: no cover - tifffile is a dependency
        raise DEMError(p, "reading GeoTIFF needs the 'tifffile' package: pip install tifffile") from exc
    try:
        tif = tifffile.TiffFile(p)
    except (tifffile.TiffFileError, ValueError, OSError, struct.error) as exc:
        raise DEMError(p, f"not a readable TIFF file ({exc})") from exc
    with tif:
        if not tif.pages:
            raise DEMError(p, "the TIFF has no images")
        page = tif.pages.first if hasattr(tif.pages, "first") else tif.pages[0]
        spp = int(getattr(page, "samplesperpixel", 1))
        if spp != 1:
            raise DEMError(p, f"has {spp} bands (samples per pixel); a DEM must have exactly one: "
                              f"extract the elevation band first (gdal_translate -b 1)")
        if len(page.shape) != 2:
            raise DEMError(p, f"image has shape {page.shape}; a DEM must be one 2-D band")
        if len(tif.pages) > 1:
            second = tif.pages[1]
            if second is not None and getattr(second, "shape", None) == page.shape and \
                    not (int(getattr(second, "subfiletype", 0)) & 1):
                raise DEMError(p, f"holds {len(tif.pages)} full-size images (bands as pages); a "
                                  f"DEM must have one band: extract the elevation band first")
        dtype = np.dtype(page.dtype) if page.dtype is not None else None
        if dtype is None or dtype.kind not in "iuf":
            raise DEMError(p, f"holds {dtype if dtype is not None else 'non-numeric'} samples "
                              f"({page.bitspersample} bits, sample format "
                              f"{getattr(page, 'sampleformat', '?')}); heights must be real numbers")
        tags = {t.code: t.value for t in page.tags.values()}
        try:
            data = page.asarray()
        except (ValueError, KeyError, RuntimeError, NotImplementedError) as exc:
            if "imagecodecs" in str(exc):
                comp = getattr(page.compression, "name", str(page.compression))
                pred = getattr(page.predictor, "name", str(page.predictor))
                raise DEMError(p, f"is compressed with {comp} (predictor {pred}), which tifffile "
                                  f"can only decode with the optional 'imagecodecs' package: "
                                  f"pip install 'rovernav[dem]' (imagecodecs) — or re-save it with "
                                  f"gdal_translate -co COMPRESS=DEFLATE -co PREDICTOR=1 "
                                  f"(or uncompressed)") from exc
            raise DEMError(p, f"the image data is truncated or cannot be decoded ({exc})") from exc
        except (tifffile.TiffFileError, OSError, EOFError, struct.error) as exc:
            raise DEMError(p, f"the image data is truncated or corrupt ({exc})") from exc
    data = np.asarray(data)
    if data.ndim != 2:
        data = np.squeeze(data)
        if data.ndim != 2:
            raise DEMError(p, f"image data has shape {data.shape}; a DEM must be one 2-D band")
    meta: dict[str, Any] = {"format": "geotiff"}
    keys = _geokeys(p, tags)
    nodata = _gdal_nodata(p, tags)
    missing = None
    if nodata is not None:
        meta["nodata_value"] = nodata
        missing = _nodata_mask(data, nodata)
    scale, offset = _gdal_scale_offset(tags)
    if scale != 1.0 or offset != 0.0:
        meta["gdal_scale_offset"] = (scale, offset)
    vert = keys.get(_KEY_VERTICAL_UNITS)
    factor_z = 1.0
    if vert is not None and vert != 9001:
        if vert not in _LINEAR_UNITS:
            raise DEMError(p, f"VerticalUnitsGeoKey = {vert} is not a supported length unit")
        factor_z = _LINEAR_UNITS[vert]
        meta["vertical_unit_factor"] = factor_z
    z = _heights_float32(data, scale, offset, factor_z, missing)
    del data
    rows, cols = z.shape

    has_geo = _TAG_TRANSFORM in tags or (_TAG_PIXEL_SCALE in tags and _TAG_TIEPOINT in tags)
    if not has_geo:
        if _TAG_TIEPOINT in tags:
            raise DEMError(p, "has tie points but no ModelPixelScaleTag: rubber-sheet (GCP) "
                              "georeferencing is not supported; warp it first (gdalwarp)")
        if cell_size_m is None:
            raise DEMError(p, "has no georeferencing (no ModelPixelScaleTag/ModelTiepointTag or "
                              "ModelTransformationTag): pass cell_size_m=... (metres)")
        meta["georeferencing"] = "none; cell_size_m argument, north-up rows assumed"
        return _Grid(z[::-1], cell_size_m, cell_size_m, 0.0, 0.0, "m", meta=meta)

    # raster (0, 0) corner -> model coordinates; sx along columns, sy_down along rows (downwards)
    if _TAG_TRANSFORM in tags:
        m = [float(v) for v in tags[_TAG_TRANSFORM]]
        if len(m) != 16:
            raise DEMError(p, f"ModelTransformationTag has {len(m)} values, not 16")
        if m[1] != 0.0 or m[4] != 0.0:
            raise DEMError(p, "ModelTransformationTag has rotation/shear terms; only north-up grids "
                              "are supported: warp it first (gdalwarp)")
        sx, sy_down, ulx, uly = m[0], -m[5], m[3], m[7]
    else:
        sc = [float(v) for v in tags[_TAG_PIXEL_SCALE]]
        tp = [float(v) for v in tags[_TAG_TIEPOINT]]
        if len(sc) < 2 or len(tp) < 6:
            raise DEMError(p, f"ModelPixelScaleTag {sc} or ModelTiepointTag {tp} is too short")
        sx, sy_down = sc[0], sc[1]
        i0, j0, x_t, y_t = tp[0], tp[1], tp[3], tp[4]
        ulx, uly = x_t - i0 * sx, y_t + j0 * sy_down
    for name, v in (("pixel width", sx), ("pixel height", sy_down)):
        if not math.isfinite(v) or v == 0.0:
            raise DEMError(p, f"{name} {v!r} is not a finite non-zero number")
    if not (math.isfinite(ulx) and math.isfinite(uly)):
        raise DEMError(p, f"image position ({ulx!r}, {uly!r}) is not finite")
    raster_type = keys.get(_KEY_RASTER_TYPE, 1)
    if raster_type == 2:  # PixelIsPoint: raster (0, 0) is the centre of the first pixel
        ulx -= 0.5 * sx
        uly += 0.5 * sy_down
        meta["raster_type"] = "PixelIsPoint (shifted half a pixel to corners)"
    else:
        meta["raster_type"] = "PixelIsArea"
    if sx < 0:
        z = z[:, ::-1]
        ulx, sx = ulx + cols * sx, -sx
    if sy_down > 0:  # north-up: row 0 is the north edge
        z = z[::-1]
        y0 = uly - rows * sy_down
    else:
        y0 = uly
    dx, dy, x0 = sx, abs(sy_down), ulx

    model = keys.get(_KEY_MODEL_TYPE)
    units, ellipsoid, crs = None, None, _citation(keys) or "GeoTIFF"
    if model == 1:
        code = keys.get(_KEY_PROJ_LINEAR_UNITS)
        if code == _USER_DEFINED or (code is None and _KEY_PROJ_LINEAR_UNIT_SIZE in keys):
            factor = float(keys.get(_KEY_PROJ_LINEAR_UNIT_SIZE, 0.0))
            if not (math.isfinite(factor) and factor > 0):
                raise DEMError(p, "user-defined linear unit without a valid ProjLinearUnitSizeGeoKey")
        elif code is None:
            factor = 1.0
            meta["linear_units"] = "not stated; metres assumed"
        elif code in _LINEAR_UNITS:
            factor = _LINEAR_UNITS[code]
        else:
            raise DEMError(p, f"ProjLinearUnitsGeoKey = {code} is not a supported length unit "
                              f"(supported EPSG codes {sorted(_LINEAR_UNITS)})")
        if factor != 1.0:
            dx, dy, x0, y0 = dx * factor, dy * factor, x0 * factor, y0 * factor
            meta["linear_unit_factor"] = factor
            if vert is None:
                meta["vertical_units"] = "not stated; heights assumed metres"
        pcs = keys.get(_KEY_PROJECTED_TYPE)
        units = "m"
        crs = f"EPSG:{pcs} {crs}".strip() if pcs and pcs != _USER_DEFINED else crs
    elif model == 2:
        code = keys.get(_KEY_GEOG_ANGULAR_UNITS, 9102)
        if code == _USER_DEFINED:
            size = float(keys.get(_KEY_GEOG_ANGULAR_UNIT_SIZE, 0.0))  # radians per unit
            if not (math.isfinite(size) and size > 0):
                raise DEMError(p, "user-defined angular unit without GeogAngularUnitSizeGeoKey")
            factor = size * 180.0 / math.pi
        elif code in _ANGULAR_UNITS:
            factor = _ANGULAR_UNITS[code]
        else:
            raise DEMError(p, f"GeogAngularUnitsGeoKey = {code} is not a supported angle unit")
        if factor != 1.0:
            dx, dy, x0, y0 = dx * factor, dy * factor, x0 * factor, y0 * factor
        units = "deg"
        ellipsoid = _geotiff_ellipsoid(p, keys)
        gcs = keys.get(_KEY_GEOG_TYPE)
        crs = f"EPSG:{gcs} {crs}".strip() if gcs and gcs != _USER_DEFINED else crs
    elif model == 3:
        raise DEMError(p, "is in a geocentric (Cartesian) model space, not a map; reproject it")
    elif model is not None:
        raise DEMError(p, f"GTModelTypeGeoKey = {model} is not 1 (projected) or 2 (geographic)")
    else:
        meta["crs"] = "no GeoKeyDirectory: horizontal units not stated"
    if cell_size_m is not None and units != "deg":
        _agree(p, dx, cell_size_m, "ModelPixelScaleTag")
    return _Grid(z, dx, dy, x0, y0, units, crs, ellipsoid, meta)


def _geokeys(p: Path, tags: dict) -> dict:
    raw = tags.get(_TAG_GEOKEYS)
    if raw is None:
        return {}
    d = [int(v) for v in np.asarray(raw).ravel()]
    doubles = tags.get(_TAG_GEO_DOUBLES)
    doubles = [] if doubles is None else [float(v) for v in np.asarray(doubles).ravel()]
    ascii_ = tags.get(_TAG_GEO_ASCII) or ""
    if isinstance(ascii_, bytes):
        ascii_ = ascii_.decode("latin-1")
    if len(d) < 4 or len(d) < 4 + 4 * d[3]:
        n_keys = d[3] if len(d) > 3 else "?"
        raise DEMError(p, f"GeoKeyDirectoryTag is corrupt ({len(d)} values for {n_keys} keys)")
    out = {}
    for k in range(d[3]):
        key, loc, count, val = d[4 + 4 * k: 8 + 4 * k]
        if loc == 0:
            out[key] = val
        elif loc == _TAG_GEO_DOUBLES:
            if val + count > len(doubles):
                raise DEMError(p, f"GeoKey {key} points past GeoDoubleParamsTag")
            vals = doubles[val: val + count]
            out[key] = vals[0] if count == 1 else vals
        elif loc == _TAG_GEO_ASCII:
            out[key] = ascii_[val: val + count].rstrip("|\x00").strip()
        else:
            logger.debug("%s: GeoKey %d stored in tag %d ignored", p, key, loc)
    return out


def _citation(keys: dict) -> str:
    for k in (_KEY_PCS_CITATION, _KEY_GEOG_CITATION, _KEY_CITATION):
        v = keys.get(k)
        if isinstance(v, str) and v:
            return v
    return ""


def _geotiff_ellipsoid(p: Path, keys: dict):
    a = keys.get(_KEY_GEOG_SEMI_MAJOR)
    if a is not None:
        unit = keys.get(_KEY_GEOG_LINEAR_UNITS, 9001)
        if unit == _USER_DEFINED:
            size = float(keys.get(_KEY_GEOG_LINEAR_UNIT_SIZE, 0.0))
        else:
            size = _LINEAR_UNITS.get(unit, 0.0)
        a = float(a) * size
        if not (math.isfinite(a) and a > 0):
            raise DEMError(p, f"GeogSemiMajorAxisGeoKey gives an unusable radius ({a!r})")
        if _KEY_GEOG_INV_FLATTENING in keys:
            inv_f = float(keys[_KEY_GEOG_INV_FLATTENING])
        elif _KEY_GEOG_SEMI_MINOR in keys:
            b = float(keys[_KEY_GEOG_SEMI_MINOR]) * size
            inv_f = 0.0 if b == a else a / (a - b)
        else:
            inv_f = 0.0
        return (a, inv_f if math.isfinite(inv_f) else 0.0)
    ell = keys.get(_KEY_GEOG_ELLIPSOID)
    if ell in _ELLIPSOIDS:
        return _ELLIPSOIDS[ell]
    gcs = keys.get(_KEY_GEOG_TYPE)
    if gcs in _GEOG_CRS:
        return _ELLIPSOIDS[_GEOG_CRS[gcs]]
    return None


def _gdal_nodata(p: Path, tags: dict):
    raw = tags.get(_TAG_GDAL_NODATA)
    if raw is None:
        return None
    if isinstance(raw, bytes):
        raw = raw.decode("latin-1")
    s = str(raw).strip().strip("\x00").strip()
    if not s:
        return None
    try:
        return float(s)
    except ValueError:
        raise DEMError(p, f"GDAL_NODATA tag {s!r} is not a number") from None


def _nodata_mask(data: np.ndarray, nodata: float) -> np.ndarray:
    if math.isnan(nodata):
        return np.isnan(data) if data.dtype.kind == "f" else np.zeros(data.shape, bool)
    if data.dtype.kind == "f":
        return data == np.asarray(nodata).astype(data.dtype)
    info = np.iinfo(data.dtype)
    if nodata != int(nodata) or not info.min <= nodata <= info.max:
        return np.zeros(data.shape, bool)
    return data == int(nodata)


def _gdal_scale_offset(tags: dict) -> tuple[float, float]:
    xml = tags.get(_TAG_GDAL_METADATA)
    if not xml:
        return 1.0, 0.0
    if isinstance(xml, bytes):
        xml = xml.decode("latin-1")
    out = {"scale": 1.0, "offset": 0.0}
    for m in re.finditer(r'<Item\b([^>]*)>([^<]*)</Item>', str(xml)):
        role = re.search(r'role="(scale|offset)"', m.group(1), re.IGNORECASE)
        if role:
            try:
                out[role.group(1).lower()] = float(m.group(2))
            except ValueError:
                pass
    return out["scale"], out["offset"]


# ====================================================================== ODL (PDS3)
class OdlError(ValueError):
    """A PDS3/ODL label that does not parse; the message gives the line."""


class Quantity(NamedTuple):
    """A label value with units, e.g. ``1.0 <METERS/PIXEL>``."""
    value: Any
    unit: str


class BasedInt(int):
    """An ODL based integer such as ``16#FF7FFFFB#`` (``radix`` keeps the base)."""
    radix: int

    def __new__(cls, value: int, radix: int):
        obj = super().__new__(cls, value)
        obj.radix = radix
        return obj

    def __repr__(self):
        return f"BasedInt({int(self)}, radix={self.radix})"


@dataclass
class OdlBlock:
    """The label root, or an ``OBJECT``/``GROUP`` with its ordered ``(KEY, value)`` items.

    A nested block appears as an item whose key is its (upper-case) name and whose
    value is the :class:`OdlBlock`. Keys are upper-cased.
    """
    kind: str                      # "ROOT", "OBJECT" or "GROUP"
    name: str
    items: list = field(default_factory=list)

    def get(self, key: str, default=None):
        key = key.upper()
        for k, v in self.items:
            if k == key and not isinstance(v, OdlBlock):
                return v
        return default

    def __getitem__(self, key: str):
        v = self.get(key, _MISSING)
        if v is _MISSING:
            raise KeyError(key)
        return v

    def __contains__(self, key: str) -> bool:
        return self.get(key, _MISSING) is not _MISSING

    def blocks(self):
        return [v for _, v in self.items if isinstance(v, OdlBlock)]

    def find(self, name: str, kind: str | None = None):
        """The first nested block called ``name`` (depth-first), or None."""
        name = name.upper()
        for b in self.blocks():
            if b.name.upper() == name and (kind is None or b.kind == kind):
                return b
            hit = b.find(name, kind)
            if hit is not None:
                return hit
        return None


_MISSING = object()

_ODL_TOKEN = re.compile(
    r"""(?P<ws>\s+|/\*.*?\*/)
      | "(?P<q>[^"]*)"
      | '(?P<l>[^']*)'
      | <(?P<u>[^<>]*)>
      | (?P<p>[=(){},])
      | (?P<w>(?:[^\s=(){},"'<>/]|/(?!\*))+)""",
    re.VERBOSE | re.DOTALL)
_INT = re.compile(r"[+-]?\d+$")
_BASED = re.compile(r"([+-]?)(\d+)#([0-9A-Za-z]+)#$")
_REAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def _odl_tokens(text: str):
    pos = 0
    n = len(text)
    while pos < n:
        m = _ODL_TOKEN.match(text, pos)
        if m is None:
            ch = text[pos]
            what = {'"': "unterminated quoted string", "'": "unterminated literal",
                    "<": "unterminated <unit>", "/": "unterminated /* comment"}.get(ch, f"unexpected {ch!r}")
            raise OdlError(f"{what} at line {text.count(chr(10), 0, pos) + 1}")
        kind = m.lastgroup
        if kind != "ws":
            yield kind, m.group(kind), m.start()
        pos = m.end()


def _odl_scalar(word: str):
    if _INT.match(word):
        return int(word)
    m = _BASED.match(word)
    if m:
        radix = int(m.group(2))
        if not 2 <= radix <= 36:
            raise ValueError(f"radix {radix} out of range")
        v = int(m.group(3), radix)
        return BasedInt(-v if m.group(1) == "-" else v, radix)
    if _REAL.match(word):
        return float(word)
    return word


def parse_odl(text: str) -> OdlBlock:
    """Parse a PDS3 / ODL label into an :class:`OdlBlock` tree.

    Handles ``OBJECT``/``END_OBJECT`` and ``GROUP``/``END_GROUP`` nesting, quoted
    strings (line breaks inside collapse to one space), 'literals', multi-line
    sequences ``( )`` and sets ``{ }`` (returned as tuples and frozensets), units
    ``<KM/PIXEL>`` (values become :class:`Quantity`), based integers ``16#FF#``
    (:class:`BasedInt`) and ``/* */`` comments. Parsing stops at ``END``.

    Raises
    ------
    OdlError
        With the line number, for anything malformed.
    """
    toks = _odl_tokens(text)
    buf: list = []

    def peek():
        if not buf:
            try:
                buf.append(next(toks))
            except StopIteration:
                buf.append(None)
        return buf[0]

    def take():
        t = peek()
        buf.pop(0)
        return t

    def line(pos):
        return text.count("\n", 0, pos) + 1

    def expect_value(key, key_pos):
        t = take()
        if t is None:
            raise OdlError(f"value of {key} missing at end of label (line {line(key_pos)})")
        kind, val, pos = t
        if kind == "p" and val in "({":
            close = ")" if val == "(" else "}"
            elems = []
            while True:
                nt = peek()
                if nt is None:
                    raise OdlError(f"unclosed {val} in the value of {key} (line {line(pos)})")
                if nt[0] == "p" and nt[1] == close:
                    take()
                    break
                elems.append(expect_value(key, pos))
                nt = peek()
                if nt is not None and nt[0] == "p" and nt[1] == ",":
                    take()
                elif not (nt is not None and nt[0] == "p" and nt[1] == close):
                    raise OdlError(f"expected ',' or '{close}' in the value of {key} "
                                   f"(line {line(pos)})")
            value = tuple(elems) if val == "(" else frozenset(elems)
        elif kind == "q":
            value = re.sub(r"[ \t]*\r?\n[ \t]*", " ", val)
        elif kind == "l":
            value = val
        elif kind == "w":
            try:
                value = _odl_scalar(val)
            except ValueError as exc:
                raise OdlError(f"bad number {val!r} for {key} (line {line(pos)}): {exc}") from None
        else:
            raise OdlError(f"unexpected {val!r} in the value of {key} (line {line(pos)})")
        nt = peek()
        if nt is not None and nt[0] == "u":
            take()
            value = Quantity(value, nt[1].strip())
        return value

    def block(kind, name, start_pos):
        items = []
        while True:
            t = take()
            if t is None:
                if kind == "ROOT":
                    return items
                raise OdlError(f"{kind} = {name} (line {line(start_pos)}) has no END_{kind}")
            tkind, val, pos = t
            if tkind != "w":
                raise OdlError(f"expected a keyword at line {line(pos)}, found {val!r}")
            key = val.upper()
            try:
                nt = peek()
            except OdlError:
                if key != "END":
                    raise
                nt = None  # unreadable bytes after END (data behind an attached label)
            has_eq = nt is not None and nt[0] == "p" and nt[1] == "="
            if key == "END" and not has_eq:
                if kind != "ROOT":
                    raise OdlError(f"END at line {line(pos)} inside {kind} = {name} "
                                   f"(line {line(start_pos)}): missing END_{kind}")
                return items
            if key in ("END_OBJECT", "END_GROUP"):
                closing = key[4:]
                if closing != kind:
                    raise OdlError(f"{key} at line {line(pos)} but the open block is "
                                   f"{kind if kind != 'ROOT' else 'none'}")
                if has_eq:
                    take()
                    nm = take()
                    if nm is None or nm[0] not in "wq":
                        raise OdlError(f"{key} = without a name at line {line(pos)}")
                    if nm[1].upper() != name.upper():
                        raise OdlError(f"{key} = {nm[1]} at line {line(pos)} closes "
                                       f"{kind} = {name} (line {line(start_pos)})")
                return items
            if not has_eq:
                raise OdlError(f"expected '=' after {val} at line {line(pos)}")
            take()
            if key in ("OBJECT", "GROUP"):
                nm = take()
                if nm is None or nm[0] not in "wq":
                    raise OdlError(f"{key} = without a name at line {line(pos)}")
                child = OdlBlock(key, nm[1], block(key, nm[1], pos))
                items.append((nm[1].upper(), child))
            else:
                items.append((key, expect_value(key, pos)))

    return OdlBlock("ROOT", "", block("ROOT", "", 0))


# ========================================================================= PDS3 image
_PDS_TYPES = {
    "PC_REAL": "<f", "IEEE_REAL": ">f", "REAL": ">f", "MAC_REAL": ">f", "SUN_REAL": ">f",
    "MSB_REAL": ">f", "FLOAT": ">f", "LSB_REAL": "<f",
    "LSB_INTEGER": "<i", "PC_INTEGER": "<i", "VAX_INTEGER": "<i", "LSB_SIGNED_INTEGER": "<i",
    "MSB_INTEGER": ">i", "SUN_INTEGER": ">i", "MAC_INTEGER": ">i", "INTEGER": ">i",
    "MSB_SIGNED_INTEGER": ">i", "SIGNED_INTEGER": ">i",
    "LSB_UNSIGNED_INTEGER": "<u", "PC_UNSIGNED_INTEGER": "<u", "VAX_UNSIGNED_INTEGER": "<u",
    "MSB_UNSIGNED_INTEGER": ">u", "UNSIGNED_INTEGER": ">u", "SUN_UNSIGNED_INTEGER": ">u",
    "MAC_UNSIGNED_INTEGER": ">u",
}
_PDS_MISSING_KEYS = ("MISSING_CONSTANT", "MISSING", "INVALID_CONSTANT", "NULL", "CORE_NULL")
_PDS_LABEL_START = (b"PDS_VERSION_ID", b"ODL_VERSION_ID", b"CCSD", b"NJPL")
_CYLINDRICAL = {"EQUIRECTANGULAR", "SIMPLE_CYLINDRICAL", "SIMPLE CYLINDRICAL", "EQUIDISTANT",
                "EQUIDISTANT_CYLINDRICAL", "PLATE_CARREE"}
# ISIS special pixels (NULL, LRS, LIS, HIS, HRS) as 32-bit float bit patterns.
_ISIS_SPECIAL_32 = (0xFF7FFFFB, 0xFF7FFFFF)


def _has_attached_label(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(256).lstrip()
    return head.upper().startswith(_PDS_LABEL_START)


def _read_attached_label(path: Path) -> str:
    size = path.stat().st_size
    with open(path, "rb") as f:
        chunk = min(size, 1 << 20)
        while True:
            f.seek(0)
            raw = f.read(chunk)
            m = re.search(rb"(?m)^[ \t]*END[ \t]*\r?$", raw)
            if m:
                return raw[: m.end()].decode("latin-1")
            if chunk >= min(size, _MAX_LABEL_BYTES):
                raise DEMError(path, f"the attached PDS3 label has no END line in its first "
                                     f"{chunk} bytes")
            chunk = min(size, _MAX_LABEL_BYTES, chunk * 8)


def _num(v):
    """A label number (unwrapping a Quantity); None if it is not a number."""
    if isinstance(v, Quantity):
        v = v.value
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return v


def _label_int(lp: Path, block: OdlBlock, key: str, default=_MISSING, minimum=0) -> int:
    v = block.get(key, _MISSING)
    if v is _MISSING:
        if default is _MISSING:
            raise DEMError(lp, f"label lacks {key} in {block.kind} = {block.name}")
        return default
    n = _num(v)
    if n is None or n != int(n) or n < minimum:
        raise DEMError(lp, f"label {key} = {v!r} must be an integer >= {minimum}")
    return int(n)


def _label_float(lp: Path, block: OdlBlock, key: str, default=_MISSING) -> float:
    v = block.get(key, _MISSING)
    if v is _MISSING or (isinstance(v, str) and v.upper() in ("N/A", "UNK", "NULL")):
        if default is _MISSING:
            raise DEMError(lp, f"label lacks {key}")
        return default
    n = _num(v)
    if n is None or not math.isfinite(float(n)):
        raise DEMError(lp, f"label {key} = {v!r} is not a finite number")
    return float(n)


def _find_data_file(lp: Path, name: str) -> Path:
    cand = lp.parent / name
    if cand.is_file():
        return cand
    want = Path(name).name.lower()
    try:
        for entry in lp.parent.iterdir():
            if entry.name.lower() == want and entry.is_file():
                return entry
    except OSError:
        pass
    raise DEMError(lp, f"^IMAGE names data file {name!r}, but there is no such file beside the label")


def _read_pds(p: Path, cell_size_m) -> _Grid:
    ext = p.suffix.lower()
    if ext == ".lbl":
        label_path, data_path, attached = p, None, False
        text = p.read_bytes().decode("latin-1")
    elif _has_attached_label(p):
        label_path, data_path, attached = p, p, True
        text = _read_attached_label(p)
    else:
        lbl = _sibling(p, ".lbl")
        if lbl is None:
            raise DEMError(p, "no PDS3 label: the file does not start with PDS_VERSION_ID and no "
                              "detached .LBL with the same name is beside it (ERDAS .img files "
                              "are not supported: convert them to GeoTIFF)")
        label_path, data_path, attached = lbl, p, False
        text = lbl.read_bytes().decode("latin-1")
    try:
        label = parse_odl(text)
    except OdlError as exc:
        raise DEMError(label_path, f"PDS3 label does not parse: {exc}") from exc
    lp = label_path

    # ---- where the image bytes are
    record_bytes = _find_key(label, "RECORD_BYTES")
    pointer = _find_key(label, "^IMAGE")
    file_name, offset = None, None

    def rec_offset(n):
        if _num(record_bytes) is None or _num(record_bytes) <= 0:
            raise DEMError(lp, f"^IMAGE is a record number ({n}) but RECORD_BYTES is missing or invalid")
        return (int(n) - 1) * int(_num(record_bytes))

    def loc_offset(v):
        if isinstance(v, Quantity) and str(v.unit).strip().upper() == "BYTES":
            return int(v.value) - 1
        n = _num(v)
        if n is None or n != int(n) or n < 1:
            raise DEMError(lp, f"^IMAGE location {v!r} is not a positive integer")
        return rec_offset(n)

    if pointer is None:
        if attached:
            lr = _find_key(label, "LABEL_RECORDS")
            if _num(lr) is None:
                raise DEMError(lp, "label has no ^IMAGE pointer and no LABEL_RECORDS")
            offset = rec_offset(int(_num(lr)) + 1)
        else:
            offset = 0
    elif isinstance(pointer, str) or (isinstance(pointer, tuple) and len(pointer) == 1
                                      and isinstance(pointer[0], str)):
        file_name, offset = (pointer if isinstance(pointer, str) else pointer[0]), 0
    elif isinstance(pointer, tuple) and len(pointer) == 2 and isinstance(pointer[0], str):
        file_name, offset = pointer[0], loc_offset(pointer[1])
    elif isinstance(pointer, (int, Quantity)):
        offset = loc_offset(pointer)
    else:
        raise DEMError(lp, f"cannot understand ^IMAGE = {pointer!r}")
    if offset < 0:
        raise DEMError(lp, f"^IMAGE offset {offset} is negative")
    if data_path is None:  # a detached label was given: find the data file it describes
        if file_name is not None:
            data_path = _find_data_file(lp, file_name)
        else:
            data_path = _sibling(lp, ".img")
            if data_path is None:
                raise DEMError(lp, "this detached label's ^IMAGE names no data file and no .IMG "
                                   "with the same name is beside it")
    elif file_name is not None and Path(file_name).name.lower() != data_path.name.lower():
        if attached:  # an attached label pointing at another file
            data_path = _find_data_file(lp, file_name)
        else:
            logger.info("%s: ^IMAGE names %s; reading %s as asked", lp, file_name, data_path)

    # ---- the IMAGE object
    img = label.find("IMAGE", "OBJECT")
    if img is None:
        raise DEMError(lp, "PDS3 label has no OBJECT = IMAGE")
    lines = _label_int(lp, img, "LINES", minimum=1)
    samples = _label_int(lp, img, "LINE_SAMPLES", minimum=1)
    bands = _label_int(lp, img, "BANDS", default=1, minimum=1)
    if bands != 1:
        raise DEMError(lp, f"image has BANDS = {bands}; a DEM must have exactly one band")
    stype_raw = img.get("SAMPLE_TYPE")
    if stype_raw is None:
        raise DEMError(lp, "label lacks SAMPLE_TYPE")
    stype = re.sub(r"\s+", "_", str(stype_raw).strip().upper())
    bits = _label_int(lp, img, "SAMPLE_BITS", minimum=1)
    kind = _PDS_TYPES.get(stype)
    ok_bits = (32, 64) if kind and kind[1] == "f" else (8, 16, 32, 64)
    if kind is None or bits not in ok_bits:
        raise DEMError(lp, f"SAMPLE_TYPE = {stype} with SAMPLE_BITS = {bits} is not supported "
                           f"(supported: PC_REAL/IEEE_REAL 32 or 64 bits; LSB/MSB (UNSIGNED_)INTEGER "
                           f"8, 16, 32 or 64 bits)")
    dtype = np.dtype(f"{kind}{bits // 8}")
    prefix = _label_int(lp, img, "LINE_PREFIX_BYTES", default=0)
    suffix = _label_int(lp, img, "LINE_SUFFIX_BYTES", default=0)
    line_bytes = prefix + samples * dtype.itemsize + suffix
    need = lines * line_bytes
    have = data_path.stat().st_size - offset
    if have < need:
        raise DEMError(data_path, f"truncated: the PDS3 label ({lp.name}) says the image is "
                                  f"{lines} lines × {line_bytes} bytes = {need} bytes from byte "
                                  f"{offset}, but only {max(have, 0)} bytes follow")
    with open(data_path, "rb") as f:
        buf = np.fromfile(f, dtype=np.uint8, count=need, offset=offset)
    if buf.size != need:
        raise DEMError(data_path, f"truncated: read {buf.size} of {need} image bytes")
    raw = buf.reshape(lines, line_bytes)[:, prefix: prefix + samples * dtype.itemsize]
    raw = np.ascontiguousarray(raw).view(dtype).reshape(lines, samples)

    meta: dict[str, Any] = {"format": "pds3", "label": str(lp), "data_file": str(data_path),
                            "sample_type": stype, "sample_bits": bits}
    missing = _pds_missing_mask(lp, img, raw, kind, bits, meta)
    sf = _label_float(lp, img, "SCALING_FACTOR", 1.0)
    off = _label_float(lp, img, "OFFSET", 0.0)
    unit_raw = img.get("UNIT")
    unit = str(unit_raw.value if isinstance(unit_raw, Quantity) else unit_raw or "").strip().upper()
    height_factor = {"": 1.0, "N/A": 1.0, "M": 1.0, "METER": 1.0, "METERS": 1.0, "METRE": 1.0,
                     "METRES": 1.0, "KM": 1000.0, "KILOMETER": 1000.0, "KILOMETERS": 1000.0,
                     "KILOMETRE": 1000.0, "KILOMETRES": 1000.0}.get(unit)
    if height_factor is None:
        logger.warning("%s: height UNIT = %s not understood; metres assumed", lp, unit)
        meta["height_unit"] = f"UNIT = {unit} not understood; metres assumed"
        height_factor = 1.0
    elif not unit or unit == "N/A":
        meta["height_unit"] = "no UNIT; metres assumed"
    offset_m = off * height_factor
    if abs(offset_m) >= _MIN_RADIUS_OFFSET_M:
        meta["height_datum"] = (f"label OFFSET = {off:g} ({offset_m:g} m) is the reference radius; "
                                f"heights are kept relative to that sphere (OFFSET not added)")
        off = 0.0
    z = _heights_float32(raw, sf, off, height_factor, missing)
    del raw, buf, missing
    meta["scaling"] = {"SCALING_FACTOR": sf, "OFFSET": off, "UNIT": unit or None}

    # ---- geometry (file line 0 is the north edge)
    z = z[::-1]
    proj = label.find("IMAGE_MAP_PROJECTION")
    target = label.get("TARGET_NAME") or (proj.get("TARGET_NAME") if proj else None) or ""
    if proj is None:
        if cell_size_m is None:
            raise DEMError(lp, "PDS3 label has no IMAGE_MAP_PROJECTION: pass cell_size_m=... (metres)")
        meta["georeferencing"] = "none; cell_size_m argument"
        return _Grid(z, cell_size_m, cell_size_m, 0.0, 0.0, "m", f"PDS3 image ({target})".strip(),
                     meta=meta)
    ptype = str(proj.get("MAP_PROJECTION_TYPE", "UNKNOWN")).strip().upper()
    meta["map_projection_type"] = ptype
    radius_m = None
    a_axis = proj.get("A_AXIS_RADIUS")
    if a_axis is not None:
        r = _num(a_axis)
        if r is None or not r > 0:
            raise DEMError(lp, f"A_AXIS_RADIUS = {a_axis!r} is not a positive number")
        runit = str(a_axis.unit).strip().upper() if isinstance(a_axis, Quantity) else "KM"
        radius_m = float(r) * (1.0 if runit in ("M", "METER", "METERS", "METRES") else 1000.0)
    lpo = _label_float(lp, proj, "LINE_PROJECTION_OFFSET", 0.0)
    spo = _label_float(lp, proj, "SAMPLE_PROJECTION_OFFSET", 0.0)
    if "LINE_PROJECTION_OFFSET" not in proj or "SAMPLE_PROJECTION_OFFSET" not in proj:
        meta["warning"] = "projection offsets missing; origin placed at 0"
    crs = f"PDS3 {ptype} ({target})" if target else f"PDS3 {ptype}"
    scale = proj.get("MAP_SCALE")
    if _num(scale) is not None:
        scale_m = _map_scale_m(lp, scale, meta)
        dx = dy = scale_m
        x0 = (-spo - 0.5) * scale_m
        y0 = (lpo - lines + 0.5) * scale_m
        if ptype.replace(" ", "_") in {t.replace(" ", "_") for t in _CYLINDRICAL}:
            dx, x0 = _cylindrical_correction(lp, proj, dx, x0, meta)
        if cell_size_m is not None:
            _agree(lp, dy, cell_size_m, "MAP_SCALE")
        return _Grid(z, dx, dy, x0, y0, "m", crs, None, meta)
    res = proj.get("MAP_RESOLUTION")
    if _num(res) is not None:
        res_v = float(_num(res))
        if not (math.isfinite(res_v) and res_v > 0):
            raise DEMError(lp, f"MAP_RESOLUTION = {res!r} must be a finite number > 0")
        runit = str(res.unit).replace(" ", "").upper() if isinstance(res, Quantity) else "PIX/DEG"
        if runit not in ("PIX/DEG", "PIXEL/DEGREE", "PIXELS/DEGREE", "PIXEL/DEG", "PIX/DEGREE"):
            raise DEMError(lp, f"MAP_RESOLUTION unit <{runit}> is not understood (expected <PIX/DEG>)")
        if ptype.replace(" ", "_") not in {t.replace(" ", "_") for t in _CYLINDRICAL}:
            raise DEMError(lp, f"{ptype} map with MAP_RESOLUTION but no MAP_SCALE: only simple "
                               f"cylindrical / equirectangular grids can be read from pixels per degree")
        lon_c = _label_float(lp, proj, "CENTER_LONGITUDE", 0.0)
        deg = 1.0 / res_v
        meta["map_resolution_pix_per_deg"] = res_v
        ell = (radius_m, 0.0) if radius_m else None
        return _Grid(z, deg, deg, lon_c + (-spo - 0.5) * deg, (lpo - lines + 0.5) * deg, "deg",
                     crs, ell, meta)
    if cell_size_m is None:
        raise DEMError(lp, "IMAGE_MAP_PROJECTION has neither MAP_SCALE nor MAP_RESOLUTION: pass "
                           "cell_size_m=... (metres)")
    return _Grid(z, cell_size_m, cell_size_m, 0.0, 0.0, "m", crs, meta=meta)


def _map_scale_m(lp: Path, scale, meta: dict) -> float:
    v = float(_num(scale))
    if not (math.isfinite(v) and v > 0):
        raise DEMError(lp, f"MAP_SCALE = {scale!r} must be a finite number > 0")
    if isinstance(scale, Quantity):
        u = str(scale.unit).replace(" ", "").upper()
        num_unit = u.split("/")[0]
        if num_unit in ("M", "METER", "METERS", "METRE", "METRES"):
            return v
        if num_unit in ("KM", "KILOMETER", "KILOMETERS", "KILOMETRE", "KILOMETRES"):
            return v * 1000.0
        raise DEMError(lp, f"MAP_SCALE unit <{scale.unit}> is not understood "
                           f"(expected <METERS/PIXEL> or <KM/PIXEL>)")
    meta["map_scale_unit"] = "none given; KM/PIXEL assumed (the PDS3 data dictionary unit)"
    logger.warning("%s: MAP_SCALE has no unit; KM/PIXEL assumed", lp)
    return v * 1000.0


def _cylindrical_correction(lp: Path, proj: OdlBlock, dx: float, x0: float, meta: dict):
    """Fix the x scale of an equirectangular map centred away from its standard parallel."""
    lat1 = _label_float(lp, proj, "CENTER_LATITUDE", 0.0)
    if "MINIMUM_LATITUDE" not in proj or "MAXIMUM_LATITUDE" not in proj:
        meta["x_scale"] = "map latitude range unknown; x scale not checked"
        return dx, x0
    lat_lo = _label_float(lp, proj, "MINIMUM_LATITUDE")
    lat_hi = _label_float(lp, proj, "MAXIMUM_LATITUDE")
    lat_c = 0.5 * (lat_lo + lat_hi)
    if abs(lat_hi - lat_lo) > _MAX_LAT_SPAN_DEG:
        msg = (f"the map spans {abs(lat_hi - lat_lo):g}° of latitude; an equirectangular grid is "
               f"not metric over such a span (x scale varies with latitude): crop it first")
        logger.warning("%s: %s", lp, msg)
        meta["warning"] = msg
    c1 = math.cos(math.radians(lat1))
    if abs(c1) < 1e-9:
        raise DEMError(lp, f"equirectangular CENTER_LATITUDE = {lat1:g} is at a pole")
    factor = math.cos(math.radians(lat_c)) / c1
    if abs(factor - 1.0) > _MAX_X_SCALE_ERROR:
        meta["conversion"] = (f"equirectangular map centred at latitude {lat_c:.6g}° with standard "
                              f"parallel {lat1:.6g}°: x scaled by cos({lat_c:.6g}°)/cos({lat1:.6g}°) "
                              f"= {factor:.6f} to ground metres")
        return dx * factor, x0 * factor
    meta["x_scale_error"] = factor - 1.0
    return dx, x0


def _pds_missing_mask(lp: Path, img: OdlBlock, raw: np.ndarray, kind: str, bits: int,
                      meta: dict) -> np.ndarray:
    """Missing cells from the MISSING/NULL constants, VALID range and ISIS specials (raw values)."""
    mask = np.zeros(raw.shape, dtype=bool)
    is_float = kind[1] == "f"
    ubits = np.dtype(f"{kind[0]}u{bits // 8}")
    used = {}
    for key in _PDS_MISSING_KEYS:
        v = img.get(key)
        if v is None:
            continue
        if isinstance(v, Quantity):
            v = v.value
        if isinstance(v, str) or isinstance(v, (tuple, frozenset)):
            continue
        used[key] = v
        if is_float:
            if isinstance(v, BasedInt):
                pattern = int(v) & ((1 << bits) - 1)
                mask |= raw.view(ubits) == pattern
            else:
                mask |= raw == np.asarray(v).astype(raw.dtype)
        else:
            iv = int(v)
            if isinstance(v, BasedInt) and kind[1] == "i" and iv >= 1 << (bits - 1):
                iv -= 1 << bits
            info = np.iinfo(raw.dtype)
            if float(v) == iv and info.min <= iv <= info.max:
                mask |= raw == iv
    for key, op in (("VALID_MINIMUM", np.less), ("VALID_MAXIMUM", np.greater)):
        v = img.get(key)
        if isinstance(v, Quantity):
            v = v.value
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if is_float and isinstance(v, BasedInt):
            v = np.array([int(v)], dtype=ubits).view(raw.dtype)[0]
        used[key] = v
        with np.errstate(invalid="ignore"):
            mask |= op(raw, v)
    if is_float:
        mask |= np.isnan(raw)
        if bits == 32:
            u = raw.view(ubits)
            mask |= (u >= _ISIS_SPECIAL_32[0]) & (u <= _ISIS_SPECIAL_32[1])
    meta["missing_rules"] = {k: (f"16#{int(v):X}#" if isinstance(v, BasedInt) else v)
                             for k, v in used.items()}
    return mask
