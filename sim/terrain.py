"""Seeded, deterministic synthetic planetary terrain: fractal relief, craters and rock fields.

:func:`generate_terrain` builds a :class:`nav.TerrainMap` from three independent layers,
each drawn from its own random stream (children of ``np.random.SeedSequence(seed)``), so
changing the rock abundance never moves a crater and changing craters never changes the
relief:

1. **Relief** — spectral synthesis of a self-affine (fractal) surface: random phases under a
   power-law amplitude spectrum ``|Z(k)| ∝ (k² + k0²)^(-(H+1)/2)`` (2-D power spectral density
   ``∝ k^-(2H+2)`` above the roll-off wavenumber ``k0 = 1 / rolloff_wavelength_m``, flat below
   it), scaled so that the model surface (an infinite plane) has the requested RMS height —
   slopes at a given baseline therefore do not depend on the map's size. Hurst exponents of 0.5–0.8 are measured on Mars at
   metre scales (Shepard et al. 2001, "The roughness of natural terrain: a planetary and
   remote sensing perspective", JGR 106(E12)).
2. **Craters** — a power-law size-frequency distribution (cumulative ``N(≥D) ∝ D^-b``; ``b ≈ 2``
   for small craters in equilibrium, Minton et al. 2019, "The equilibrium size-frequency
   distribution of small craters...", Icarus; production ``b ≈ 2.8`` for 1–100 m lunar
   craters, Moore, Boyce & Hahn 1980), placed uniformly at random. Each is a parabolic bowl
   of rim-to-floor depth ``≈ 0.2 D`` when fresh (Pike 1974, "Depth/diameter relations of
   fresh lunar craters: revision from spacecraft data", GRL 1), shallower when degraded, a
   raised rim ``≈ 0.04 D`` (Pike 1977, "Size-dependence in the shape of fresh impact craters
   on the Moon") and an ejecta blanket thinning as ``(r/R)^-3``
   (McGetchin, Settle & Head 1973, "Radial thickness variation in impact crater ejecta",
   EPSL 20) out to a few radii. Overlapping craters add.
3. **Rocks** — the Golombek–Rapp model: the cumulative fractional area covered by rocks of
   diameter ``≥ D`` (metres) is ``F_k(D) = k exp(-q(k) D)`` with ``q(k) = 1.79 + 0.152 / k``
   (Golombek & Rapp 1997, "Size-frequency distributions of rocks on Mars and Earth analog
   sites", JGR 102(E2); Golombek et al. 2003, "Rock size-frequency distributions on Mars and
   implications for Mars Exploration Rover landing safety and operations", JGR 108(E12)).
   Rock heights are about half the diameter (Golombek & Rapp 1997). Each rock is a
   half-ellipsoid sitting on the local ground; the grid is the maximum of ground and rocks.

Everything is deterministic bit for bit for the same arguments (same numpy build).
"""
from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass, field
from typing import ClassVar, NamedTuple

import numpy as np

from nav.terrain_map import TerrainMap

__all__ = [
    "TerrainParams", "PRESETS", "generate_terrain", "GeneratedTerrain",
    "Rock", "Rocks", "Crater", "Craters", "add_craters", "add_rocks", "fractal_relief",
    "golombek_q", "MIN_ROCK_CELLS", "MIN_CRATER_CELLS",
]

log = logging.getLogger(__name__)

#: Rocks narrower than this many cells are not resolvable in the grid and are not generated.
MIN_ROCK_CELLS = 2.0
#: Craters narrower than this many cells (rim to rim) are not resolvable and are not generated.
MIN_CRATER_CELLS = 4.0
#: Refuse grids larger than this (about 400 MB of float32).
MAX_CELLS = 100_000_000

# Rock diameter bins are geometric, each at most this ratio wide (the Poisson count of each bin
# is drawn from the exact expected number; diameters inside a bin are drawn exactly).
_ROCK_BIN_RATIO = 1.05
_GAUSS_X, _GAUSS_W = np.polynomial.legendre.leggauss(8)


# ============================================================================ parameters
def _num(doc, *, gt=None, ge=None, lt=None, le=None):
    return {"doc": doc, "gt": gt, "ge": ge, "lt": lt, "le": le}


@dataclass(frozen=True, kw_only=True)
class TerrainParams:
    """Everything that shapes a generated terrain. Defaults are the ``"mars"`` preset.

    Relief
    ------
    relief_rms_m : float
        RMS height of the fractal relief, metres (>= 0; 0 = flat): that of the model surface
        (an infinite plane); a map only a few roll-off wavelengths wide shows a little less.
        See :func:`fractal_relief`.
    hurst : float
        Hurst exponent ``H`` in (0, 1]; the 2-D power spectral density falls as
        ``k^-(2H+2)`` (see :attr:`spectral_slope`) and RMS height differences grow as
        ``baseline^H`` for baselines shorter than the roll-off wavelength.
    rolloff_wavelength_m : float
        Wavelength above which the spectrum flattens (> 0): relief has no big hills
        much wider than this.

    Craters
    -------
    crater_density_per_km2 : float
        Cumulative number of craters with ``D >= crater_min_diameter_m`` per km² (>= 0).
    crater_min_diameter_m, crater_max_diameter_m : float
        Rim-to-rim diameter range, metres. Craters narrower than ``MIN_CRATER_CELLS`` cells
        are not generated (the density of the rest follows the same power law).
    crater_sfd_exponent : float
        ``b`` in the cumulative size-frequency distribution ``N(>=D) ∝ D^-b`` (> 0).
    crater_depth_ratio_fresh, crater_depth_ratio_degraded : float
        Rim-crest-to-floor depth / diameter of fresh and of degraded craters.
    crater_degraded_fraction : float
        Probability that a crater is degraded, in [0, 1].
    crater_rim_ratio : float
        Rim crest height above the surroundings / diameter for a fresh crater; a degraded
        crater's rim is scaled by ``crater_depth_ratio_degraded / crater_depth_ratio_fresh``.
    crater_ejecta_extent : float
        Outer edge of the ejecta blanket in crater radii (>= 1; 1 = no ejecta).

    Rocks
    -----
    rock_cfa : float
        Golombek–Rapp ``k``: total fractional area covered by rocks of all sizes, in [0, 1).
    rock_min_diameter_m, rock_max_diameter_m : float
        Diameter range of generated rocks, metres; rocks narrower than ``MIN_ROCK_CELLS``
        cells are not generated.
    rock_height_ratio : float
        Median rock height / diameter (Golombek & Rapp 1997: about 0.5), in (0, 1].
    rock_height_scatter : float
        Log-normal scatter of the height ratio (standard deviation of ``ln h``, clipped at
        2 sigma), in [0, 1].
    """

    # relief
    relief_rms_m: float = field(default=0.3, metadata=_num("RMS height of the relief", ge=0, le=1000))
    hurst: float = field(default=0.7, metadata=_num("Hurst exponent", gt=0, le=1))
    rolloff_wavelength_m: float = field(default=50.0, metadata=_num("roll-off wavelength", gt=0))
    # craters
    crater_density_per_km2: float = field(default=2500.0, metadata=_num("crater density", ge=0, le=1e9))
    crater_min_diameter_m: float = field(default=1.0, metadata=_num("minimum crater diameter", gt=0))
    crater_max_diameter_m: float = field(default=20.0, metadata=_num("maximum crater diameter", gt=0))
    crater_sfd_exponent: float = field(default=2.0, metadata=_num("cumulative SFD exponent", gt=0, le=10))
    crater_depth_ratio_fresh: float = field(default=0.2, metadata=_num("fresh depth/diameter", gt=0, le=0.5))
    crater_depth_ratio_degraded: float = field(default=0.07, metadata=_num("degraded depth/diameter",
                                                                          gt=0, le=0.5))
    crater_degraded_fraction: float = field(default=0.8, metadata=_num("degraded fraction", ge=0, le=1))
    crater_rim_ratio: float = field(default=0.04, metadata=_num("rim height/diameter", ge=0, le=0.5))
    crater_ejecta_extent: float = field(default=2.5, metadata=_num("ejecta extent in radii", ge=1, le=10))
    # rocks
    rock_cfa: float = field(default=0.07, metadata=_num("Golombek-Rapp total rock area fraction k",
                                                        ge=0, lt=1))
    rock_min_diameter_m: float = field(default=0.1, metadata=_num("minimum rock diameter", gt=0))
    rock_max_diameter_m: float = field(default=2.0, metadata=_num("maximum rock diameter", gt=0))
    rock_height_ratio: float = field(default=0.5, metadata=_num("rock height/diameter", gt=0, le=1))
    rock_height_scatter: float = field(default=0.2, metadata=_num("rock height log-scatter", ge=0, le=1))

    def __post_init__(self):
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
                raise ValueError(f"TerrainParams.{f.name} = {v!r}: must be a real number "
                                 f"({f.metadata['doc']})")
            v = float(v)
            if not math.isfinite(v):
                raise ValueError(f"TerrainParams.{f.name} = {v!r}: must be finite ({f.metadata['doc']})")
            md = f.metadata
            for key, ok, words in (("gt", lambda a, b: a > b, "> "), ("ge", lambda a, b: a >= b, ">= "),
                                   ("lt", lambda a, b: a < b, "< "), ("le", lambda a, b: a <= b, "<= ")):
                bound = md.get(key)
                if bound is not None and not ok(v, bound):
                    raise ValueError(f"TerrainParams.{f.name} = {v!r}: must be {words}{bound:g} "
                                     f"({md['doc']})")
            object.__setattr__(self, f.name, v)
        self._check_order("crater_min_diameter_m", "crater_max_diameter_m")
        self._check_order("rock_min_diameter_m", "rock_max_diameter_m")
        self._check_order("crater_depth_ratio_degraded", "crater_depth_ratio_fresh")
        if not self.crater_rim_ratio < self.crater_depth_ratio_fresh:
            raise ValueError(f"TerrainParams.crater_rim_ratio = {self.crater_rim_ratio!r}: must be < "
                             f"crater_depth_ratio_fresh = {self.crater_depth_ratio_fresh!r} "
                             "(a crater floor lies below the surrounding plain)")

    def _check_order(self, lo: str, hi: str):
        a, b = getattr(self, lo), getattr(self, hi)
        if not a <= b:
            raise ValueError(f"TerrainParams.{lo} = {a!r}: must be <= {hi} = {b!r}")

    @property
    def spectral_slope(self) -> float:
        """Log-log slope of the relief's radially averaged 2-D power spectrum: ``-(2H + 2)``."""
        return -(2.0 * self.hurst + 2.0)

    @property
    def rock_q(self) -> float:
        """Golombek–Rapp ``q(k) = 1.79 + 0.152 / k`` per metre (``inf`` when ``k = 0``)."""
        return golombek_q(self.rock_cfa)

    def replace(self, **changes) -> "TerrainParams":
        """A validated copy with some fields changed; unknown names raise ``TypeError``."""
        _check_field_names(changes, "TerrainParams.replace()")
        return dataclasses.replace(self, **changes)


def _check_field_names(names, where: str):
    known = [f.name for f in dataclasses.fields(TerrainParams)]
    bad = [n for n in names if n not in known]
    if bad:
        raise TypeError(f"{where} got unexpected keyword argument(s) {', '.join(map(repr, bad))}; "
                        f"TerrainParams fields are: {', '.join(known)}")


def golombek_q(k: float) -> float:
    """Golombek–Rapp decay constant ``q(k) = 1.79 + 0.152 / k`` (1/m) for rock abundance ``k``."""
    k = float(k)
    return math.inf if k <= 0 else 1.79 + 0.152 / k


#: Named parameter sets; keys match ``terrain_preset`` in ``configs/planets/*.yaml``.
PRESETS: dict[str, TerrainParams] = {
    # Lunar mare: small craters in equilibrium (cumulative ~0.03 D^-2 per m², a few percent of
    # geometric saturation), mostly degraded; regolith with few rocks; gentle relief.
    "moon": TerrainParams(
        relief_rms_m=0.13, hurst=0.8, rolloff_wavelength_m=30.0,
        crater_density_per_km2=120_000.0, crater_min_diameter_m=0.5, crater_max_diameter_m=30.0,
        crater_sfd_exponent=2.0, crater_depth_ratio_fresh=0.2, crater_depth_ratio_degraded=0.08,
        crater_degraded_fraction=0.7, crater_rim_ratio=0.04, crater_ejecta_extent=2.5,
        rock_cfa=0.01, rock_min_diameter_m=0.1, rock_max_diameter_m=1.0,
        rock_height_ratio=0.5, rock_height_scatter=0.2),
    # Mars plains (Gusev / Viking-like): moderate relief (Hurst 0.7, RMS slope ~5.5 deg at a 1 m
    # baseline, as at the Pathfinder and Viking sites, Shepard et al. 2001), fewer craters, mostly
    # degraded hollows; Golombek rock field with k = 7 %. These are also the TerrainParams defaults.
    "mars": TerrainParams(
        relief_rms_m=0.3, hurst=0.7, rolloff_wavelength_m=50.0,
        crater_density_per_km2=2500.0, crater_min_diameter_m=1.0, crater_max_diameter_m=20.0,
        crater_sfd_exponent=2.0, crater_depth_ratio_fresh=0.2, crater_depth_ratio_degraded=0.07,
        crater_degraded_fraction=0.8, crater_rim_ratio=0.04, crater_ejecta_extent=2.5,
        rock_cfa=0.07, rock_min_diameter_m=0.1, rock_max_diameter_m=2.0,
        rock_height_ratio=0.5, rock_height_scatter=0.2),
    # Outdoor Mars-yard-style test yard: gentle relief, scattered rocks (~5 %), no craters.
    "earth_yard": TerrainParams(
        relief_rms_m=0.06, hurst=0.7, rolloff_wavelength_m=10.0,
        crater_density_per_km2=0.0,
        rock_cfa=0.05, rock_min_diameter_m=0.1, rock_max_diameter_m=1.0,
        rock_height_ratio=0.5, rock_height_scatter=0.2),
}


# ============================================================================ results
class Rock(NamedTuple):
    """One rock: centre position (world metres), diameter and height above the local ground."""
    x_m: float
    y_m: float
    diameter_m: float
    height_m: float


class Crater(NamedTuple):
    """One crater: centre (world metres), rim-to-rim diameter, rim-to-floor depth, rim height."""
    x_m: float
    y_m: float
    diameter_m: float
    depth_m: float
    rim_height_m: float


class _Table:
    """Columns of equal-length read-only float64 arrays, indexable as records."""
    _record: ClassVar[type]

    def __post_init__(self):
        names = self._record._fields
        cols = [np.array(getattr(self, n), dtype=np.float64, copy=True).reshape(-1) for n in names]
        n = len(cols[0])
        for name, col in zip(names, cols):
            if len(col) != n:
                raise ValueError(f"{type(self).__name__}.{name} has {len(col)} values, "
                                 f"{names[0]} has {n}: columns must be the same length")
            col.setflags(write=False)
            object.__setattr__(self, name, col)

    def __len__(self) -> int:
        return len(getattr(self, self._record._fields[0]))

    def __getitem__(self, i):
        """A record for an integer index; a new table for a slice, index array or mask."""
        if isinstance(i, (int, np.integer)):
            return self._record(*(float(getattr(self, n)[i]) for n in self._record._fields))
        return type(self)(**{n: getattr(self, n)[i] for n in self._record._fields})

    def __iter__(self):
        cols = [getattr(self, n) for n in self._record._fields]
        for vals in zip(*cols):
            yield self._record(*(float(v) for v in vals))

    def __eq__(self, other):
        if type(other) is not type(self):
            return NotImplemented
        return all(np.array_equal(getattr(self, n), getattr(other, n)) for n in self._record._fields)

    __hash__ = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} records)"

    @classmethod
    def empty(cls):
        return cls(**{n: np.empty(0) for n in cls._record._fields})


@dataclass(frozen=True, eq=False, repr=False)
class Rocks(_Table):
    """Rocks as columns of float64 arrays (metres): ``x_m, y_m, diameter_m, height_m``.

    ``len(rocks)``, ``rocks[i]`` (a :class:`Rock`), iteration over records, and
    ``rocks[mask]`` (a new :class:`Rocks`) are supported. ``height_m`` is the height of the
    rock's top above the ground at its centre.
    """
    _record: ClassVar[type] = Rock
    x_m: np.ndarray
    y_m: np.ndarray
    diameter_m: np.ndarray
    height_m: np.ndarray

    @property
    def area_m2(self) -> float:
        """Total plan-view area of the rocks, ``sum(pi D^2 / 4)``."""
        return float(np.sum(np.pi / 4.0 * self.diameter_m ** 2))


@dataclass(frozen=True, eq=False, repr=False)
class Craters(_Table):
    """Craters as columns of float64 arrays (metres): ``x_m, y_m, diameter_m, depth_m, rim_height_m``.

    ``depth_m`` is measured from the rim crest to the floor (as in Pike 1974), so the floor
    lies ``depth_m - rim_height_m`` below the surroundings. Indexing and iteration work as
    for :class:`Rocks`.
    """
    _record: ClassVar[type] = Crater
    x_m: np.ndarray
    y_m: np.ndarray
    diameter_m: np.ndarray
    depth_m: np.ndarray
    rim_height_m: np.ndarray


@dataclass(frozen=True, eq=False)
class GeneratedTerrain:
    """A generated terrain and its ground truth.

    Attributes
    ----------
    terrain : nav.TerrainMap
        The elevation grid (float32, no NaN); ``source`` reads ``"generated:<preset> seed=<n>"``
        (``<preset>*`` when parameters were overridden, ``custom`` when ``params`` was given);
        ``meta`` holds the parameters, seed, clear zones and the effective diameter ranges.
    rocks : Rocks
        Every rock stamped into the grid (centres inside the map).
    craters : Craters
        Every crater that touches the map (centres may lie outside it, within the ejecta reach).
    params : TerrainParams
        The parameters actually used (after ``rock_cfa`` and keyword overrides).
    rock_diameter_range_m, crater_diameter_range_m : (float, float)
        The diameter ranges actually sampled: the parameter ranges with the lower end raised to
        ``MIN_ROCK_CELLS`` / ``MIN_CRATER_CELLS`` cells (``lo > hi`` means none were sampled).
    """
    terrain: TerrainMap
    rocks: Rocks
    craters: Craters
    params: TerrainParams
    rock_diameter_range_m: tuple[float, float]
    crater_diameter_range_m: tuple[float, float]


# ============================================================================ relief
def fractal_relief(shape, cell_size_m: float, *, rms_m: float, hurst: float, rolloff_wavelength_m: float,
                   rng: np.random.Generator) -> np.ndarray:
    """A zero-mean self-affine surface by spectral synthesis (random phases, power-law amplitudes).

    The model surface has the isotropic 2-D power spectral density
    ``S(k) = C (k² + k0²)^-(H+1)`` (``k`` in cycles per metre, ``k0 = 1 / rolloff_wavelength_m``),
    i.e. ``∝ k^-(2H+2)`` well above ``k0`` and flat below it, with ``C = rms² H k0^(2H) / pi`` so
    that the variance ``∫ S d²k`` of the infinite surface is ``rms_m²``. The map holds the
    Fourier modes of a periodic ``width × height`` patch with exactly these amplitudes and
    uniformly random phases (taken from the FFT of white noise, so they are Hermitian-consistent),
    hence its slopes at a given baseline do not depend on the map's size; its realised RMS
    is slightly below ``rms_m`` (wavelengths longer than the map and shorter than two cells
    are missing) and approaches it once the map spans many roll-off wavelengths.

    Parameters
    ----------
    shape : (rows, cols)
    cell_size_m : float
    rms_m : float
        RMS height of the model surface, metres (0 gives zeros).
    hurst : float
        Hurst exponent ``H`` in (0, 1].
    rolloff_wavelength_m : float
    rng : numpy.random.Generator
        Source of the random phases.

    Returns
    -------
    (rows, cols) float64 array, zero-mean and periodic across the map edges.
    """
    rows, cols = (int(v) for v in shape)
    if rms_m == 0.0 or rows * cols < 2:
        return np.zeros((rows, cols))
    noise = rng.standard_normal((rows, cols))
    spec = np.fft.rfft2(noise)
    mag = np.abs(spec)
    mag[mag == 0.0] = 1.0
    spec /= mag
    kx = np.fft.rfftfreq(cols, d=cell_size_m)
    ky = np.fft.fftfreq(rows, d=cell_size_m)
    k0 = 1.0 / rolloff_wavelength_m
    c = rms_m * rms_m * hurst * k0 ** (2.0 * hurst) / np.pi
    # irfft2 divides by rows*cols; each mode's coefficient is sqrt(S(k) dk²), dk² = 1 / (w h).
    scale = rows * cols * math.sqrt(c / (rows * cols * cell_size_m * cell_size_m))
    amp = scale * (ky[:, None] ** 2 + (kx[None, :] ** 2 + k0 * k0)) ** (-(hurst + 1.0) / 2.0)
    amp[0, 0] = 0.0
    spec *= amp
    return np.fft.irfft2(spec, s=(rows, cols))


# ============================================================================ stamping
def _rect_distance(x, y, x0, x1, y0, y1):
    """Distance from points to an axis-aligned rectangle (0 inside)."""
    dx = np.maximum(np.maximum(x0 - x, x - x1), 0.0)
    dy = np.maximum(np.maximum(y0 - y, y - y1), 0.0)
    return np.hypot(dx, dy)


def _check_terrain(terrain):
    if not isinstance(terrain, TerrainMap):
        raise TypeError(f"terrain must be a nav.TerrainMap, got {type(terrain).__name__}")


def add_craters(terrain: TerrainMap, craters: Craters, *, ejecta_extent: float = 2.5) -> TerrainMap:
    """A copy of ``terrain`` with craters added to its heights (overlapping craters add).

    Parameters
    ----------
    terrain : nav.TerrainMap
    craters : Craters
        Centres (may lie outside the map), rim-to-rim diameters (> 0), rim-to-floor depths
        (>= 0) and rim heights above the surroundings (>= 0), metres.
    ejecta_extent : float
        Outer edge of the ejecta blanket in crater radii (>= 1).

    Returns
    -------
    nav.TerrainMap
        With radius ``R = D/2`` and ``s = r/R``, each crater adds ``rim - depth + depth s²``
        inside the rim (a parabolic bowl, Pike 1974 proportions) and
        ``rim (s⁻³ - E⁻³) / (1 - E⁻³)`` on ``1 < s < E`` (ejecta thinning as ``(r/R)^-3``,
        McGetchin et al. 1973), sampled at cell centres. Unknown (NaN) cells stay unknown.
    """
    from ._terrain_kernels import _stamp_craters

    _check_terrain(terrain)
    if not isinstance(craters, Craters):
        raise TypeError(f"craters must be sim.terrain.Craters, got {type(craters).__name__}")
    e = float(ejecta_extent)
    if not (math.isfinite(e) and e >= 1.0):
        raise ValueError(f"ejecta_extent = {ejecta_extent!r}: must be a finite number >= 1 (crater radii)")
    _check_columns(craters, "craters", positive=("diameter_m",), nonneg=("depth_m", "rim_height_m"))
    z = np.array(terrain.elevation_m, dtype=np.float32, order="C", copy=True)
    if len(craters):
        ox, oy = terrain.origin_xy_m
        cols = [np.array(c) for c in (craters.x_m, craters.y_m, craters.diameter_m, craters.depth_m,
                                      craters.rim_height_m)]  # writable copies: the kernel's signature
        status = _stamp_craters(z, ox, oy, terrain.cell_size_m, *cols, e)
        if status != 0:  # pragma: no cover - inputs were validated above
            raise RuntimeError(f"_stamp_craters failed with status {status}")
    return terrain.with_elevation(z)


def add_rocks(terrain: TerrainMap, rocks: Rocks) -> TerrainMap:
    """A copy of ``terrain`` with rocks standing on it.

    Each rock is a half-ellipsoid of semi-axes ``D/2, D/2, height_m`` whose base sits at the
    height of the cell containing its centre: the grid becomes
    ``max(ground, ground[centre cell] + h sqrt(1 - (2 rho / D)²))`` over every rock, sampled
    at cell centres — rocks never stack on each other. The centre cell always receives the
    full top, so even a rock narrower than a cell is present at its position. Unknown (NaN)
    cells stay unknown.

    Parameters
    ----------
    terrain : nav.TerrainMap
    rocks : Rocks
        Centres inside the map (its outer edges included), diameters > 0, heights >= 0.

    Returns
    -------
    nav.TerrainMap
    """
    from ._terrain_kernels import _stamp_rocks

    _check_terrain(terrain)
    if not isinstance(rocks, Rocks):
        raise TypeError(f"rocks must be sim.terrain.Rocks, got {type(rocks).__name__}")
    _check_columns(rocks, "rocks", positive=("diameter_m",), nonneg=("height_m",))
    x0, x1, y0, y1 = terrain.extent_m
    outside = ~((rocks.x_m >= x0) & (rocks.x_m <= x1) & (rocks.y_m >= y0) & (rocks.y_m <= y1))
    if outside.any():
        i = int(np.argmax(outside))
        raise ValueError(f"rocks[{i}] centre (x={rocks.x_m[i]:.3f} m, y={rocks.y_m[i]:.3f} m) is outside "
                         f"the map extent x in [{x0:g}, {x1:g}], y in [{y0:g}, {y1:g}]: rocks must stand "
                         "on the map")
    z = np.array(terrain.elevation_m, dtype=np.float32, order="C", copy=True)
    if len(rocks):
        ground = z.copy()
        ox, oy = terrain.origin_xy_m
        cols = [np.array(c) for c in (rocks.x_m, rocks.y_m, rocks.diameter_m, rocks.height_m)]
        status = _stamp_rocks(z, ground, ox, oy, terrain.cell_size_m, *cols)
        if status != 0:  # pragma: no cover - inputs were validated above
            raise RuntimeError(f"_stamp_rocks failed with status {status}")
    return terrain.with_elevation(z)


def _check_columns(table, what, *, positive=(), nonneg=()):
    for name in table._record._fields:
        col = getattr(table, name)
        bad = ~np.isfinite(col)
        if name in positive:
            bad |= ~(col > 0)
            rule = "must be finite and > 0"
        elif name in nonneg:
            bad |= ~(col >= 0)
            rule = "must be finite and >= 0"
        else:
            rule = "must be finite"
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"{what}.{name}[{i}] = {float(col[i])!r}: {rule}")


# ============================================================================ sampling
def _rock_number_density(k: float, q: float, edges: np.ndarray) -> np.ndarray:
    """Expected rocks per m² in each diameter bin: ``∫ -F'(D) / (pi D²/4) dD`` (Gauss–Legendre)."""
    a, b = edges[:-1], edges[1:]
    half = 0.5 * (b - a)
    mid = 0.5 * (b + a)
    d = mid[:, None] + half[:, None] * _GAUSS_X[None, :]
    f = (4.0 * k * q / np.pi) * np.exp(-q * d) / (d * d)
    return half * (f @ _GAUSS_W)


def _sample_rocks(rng, p: TerrainParams, dlo, dhi, extent, zones) -> Rocks:
    """A Poisson rock field with the Golombek–Rapp size distribution over the map."""
    k = p.rock_cfa
    if k <= 0.0 or dlo > dhi:
        return Rocks.empty()
    q = golombek_q(k)
    x0, x1, y0, y1 = extent
    area = (x1 - x0) * (y1 - y0)
    nbins = max(1, int(math.ceil(math.log(dhi / dlo) / math.log(_ROCK_BIN_RATIO)))) if dhi > dlo else 1
    edges = np.geomspace(dlo, dhi, nbins + 1) if dhi > dlo else np.array([dlo, dlo * (1 + 1e-12)])
    counts = rng.poisson(area * _rock_number_density(k, q, edges))
    b = np.repeat(np.arange(len(counts)), counts)
    lo, hi = edges[b], edges[b + 1]
    n = len(b)
    # Inside a bin, the density ∝ exp(-qD) / D²: propose from 1/D² (exact inverse CDF) and
    # accept with probability exp(-q (D - lo)) — acceptance is >= exp(-q * bin width).
    diam = np.empty(n)
    todo = np.arange(n)
    while len(todo):
        u = rng.random(len(todo))
        la, lb = lo[todo], hi[todo]
        prop = 1.0 / (1.0 / la - u * (1.0 / la - 1.0 / lb))
        ok = rng.random(len(todo)) < np.exp(-q * (prop - la))
        diam[todo[ok]] = prop[ok]
        todo = todo[~ok]
    x = x0 + rng.random(n) * (x1 - x0)
    y = y0 + rng.random(n) * (y1 - y0)
    z = np.clip(rng.standard_normal(n), -2.0, 2.0)
    height = p.rock_height_ratio * diam * np.exp(p.rock_height_scatter * z)
    keep = np.ones(n, dtype=bool)
    for zx, zy, zr in zones:
        keep &= np.hypot(x - zx, y - zy) >= zr + 0.5 * diam
    return Rocks(x_m=x[keep], y_m=y[keep], diameter_m=diam[keep], height_m=height[keep])


def _sample_craters(rng, p: TerrainParams, dlo, dhi, extent, zones) -> Craters:
    """Craters with a power-law SFD, uniform over the map grown by the largest ejecta reach."""
    if p.crater_density_per_km2 <= 0.0 or dlo > dhi:
        return Craters.empty()
    bexp = p.crater_sfd_exponent
    dref = p.crater_min_diameter_m
    e = p.crater_ejecta_extent
    x0, x1, y0, y1 = extent
    margin = 0.5 * e * dhi
    gx0, gx1, gy0, gy1 = x0 - margin, x1 + margin, y0 - margin, y1 + margin
    area = (gx1 - gx0) * (gy1 - gy0)
    tlo, thi = (dlo / dref) ** -bexp, (dhi / dref) ** -bexp
    lam = p.crater_density_per_km2 * 1e-6 * area * (tlo - thi)
    n = int(rng.poisson(lam))
    u = rng.random(n)
    diam = dref * (tlo - u * (tlo - thi)) ** (-1.0 / bexp)   # inverse CDF of the truncated power law
    x = gx0 + rng.random(n) * (gx1 - gx0)
    y = gy0 + rng.random(n) * (gy1 - gy0)
    degraded = rng.random(n) < p.crater_degraded_fraction
    ratio = np.where(degraded, p.crater_depth_ratio_degraded, p.crater_depth_ratio_fresh)
    depth = ratio * diam
    rim = p.crater_rim_ratio * diam * (ratio / p.crater_depth_ratio_fresh)
    reach = 0.5 * e * diam
    keep = _rect_distance(x, y, x0, x1, y0, y1) < reach
    for zx, zy, zr in zones:
        keep &= np.hypot(x - zx, y - zy) >= zr + reach
    return Craters(x_m=x[keep], y_m=y[keep], diameter_m=diam[keep], depth_m=depth[keep],
                   rim_height_m=rim[keep])


# ============================================================================ public entry point
def _parse_size(size_m):
    if isinstance(size_m, (int, float, np.integer, np.floating)) and not isinstance(size_m, bool):
        w = h = float(size_m)
    else:
        try:
            w, h = (float(v) for v in size_m)
        except (TypeError, ValueError):
            raise ValueError(f"size_m = {size_m!r}: must be a number or a (width, height) pair in metres") \
                from None
    if not (math.isfinite(w) and math.isfinite(h) and w > 0 and h > 0):
        raise ValueError(f"size_m = {size_m!r}: width and height must be finite and > 0 metres")
    return w, h


def _parse_zones(clear_zones):
    zones = []
    for i, zone in enumerate(clear_zones):
        try:
            zx, zy, zr = (float(v) for v in zone)
        except (TypeError, ValueError):
            raise ValueError(f"clear_zones[{i}] = {zone!r}: must be (x_m, y_m, radius_m)") from None
        if not (math.isfinite(zx) and math.isfinite(zy) and math.isfinite(zr) and zr >= 0):
            raise ValueError(f"clear_zones[{i}] = {zone!r}: x, y must be finite and radius_m finite >= 0")
        zones.append((zx, zy, zr))
    return tuple(zones)


def generate_terrain(preset: str = "mars", *, size_m=50.0, cell_size_m: float = 0.05, seed: int = 0,
                     rock_cfa: float | None = None, params: TerrainParams | None = None,
                     origin_xy_m=(0.0, 0.0), clear_zones=(), **overrides) -> GeneratedTerrain:
    """Generate a seeded synthetic terrain with its ground-truth rocks and craters.

    Parameters
    ----------
    preset : str
        A key of :data:`PRESETS` (``"moon"``, ``"mars"``, ``"earth_yard"``); ignored when
        ``params`` is given.
    size_m : float or (float, float)
        Map width (x) and height (y) in metres; rounded to whole cells (at least one).
    cell_size_m : float
        Cell side in metres (> 0).
    seed : int
        Non-negative seed; the same arguments give bit-identical results. Relief, craters and
        rocks use independent child streams of ``np.random.SeedSequence(seed)``.
    rock_cfa : float, optional
        Overrides ``params.rock_cfa`` (Golombek–Rapp ``k``).
    params : TerrainParams, optional
        Replaces the preset entirely.
    origin_xy_m : (float, float)
        World position of the map's lower-left corner.
    clear_zones : sequence of (x_m, y_m, radius_m)
        Discs (e.g. a start pad) kept free of rocks and craters: no rock's footprint and no
        crater's ejecta reach (``crater_ejecta_extent`` radii) overlaps them, so inside them the
        terrain is the relief alone. Rocks and craters are simply not placed there (the
        density elsewhere is unchanged).
    **overrides
        Any :class:`TerrainParams` field, e.g. ``relief_rms_m=0.1``; unknown names raise
        ``TypeError``.

    Returns
    -------
    GeneratedTerrain
        ``terrain`` (float32 heights in metres, no NaN), ``rocks``, ``craters``, ``params``.

    Notes
    -----
    Rocks are sampled per geometric diameter bin (each at most 5 % wide): the expected number
    per m² is ``∫ -dF_k/dD / (pi D²/4) dD`` with ``F_k(D) = k exp(-q(k) D)``,
    ``q(k) = 1.79 + 0.152/k`` (Golombek & Rapp 1997; Golombek et al. 2003); counts are
    Poisson, diameters inside a bin follow the exact density, positions are uniform over the
    map, heights are ``rock_height_ratio · D`` with log-normal scatter. Rocks narrower than
    ``MIN_ROCK_CELLS`` cells are not resolvable in the grid and are not generated, so the
    rock list is exactly what is in the grid: its fractional area over
    ``[D_lo, D_hi] = rock_diameter_range_m`` is ``k (exp(-q D_lo) - exp(-q D_hi))`` on
    average. Likewise craters narrower than ``MIN_CRATER_CELLS`` cells are not generated.
    """
    t_start = time.perf_counter()
    if not isinstance(preset, str) or preset not in PRESETS:
        raise ValueError(f"preset = {preset!r}: must be one of {', '.join(map(repr, PRESETS))}")
    if params is not None and not isinstance(params, TerrainParams):
        raise TypeError(f"params must be a TerrainParams, got {type(params).__name__}")
    _check_field_names(overrides, "generate_terrain()")
    base = params if params is not None else PRESETS[preset]
    changes = dict(overrides)
    if rock_cfa is not None:
        changes["rock_cfa"] = rock_cfa
    p = dataclasses.replace(base, **changes) if changes else base
    label = "custom" if params is not None else (preset + "*" if changes else preset)

    cs = cell_size_m
    if isinstance(cs, bool) or not isinstance(cs, (int, float, np.integer, np.floating)) \
            or not math.isfinite(cs) or cs <= 0:
        raise ValueError(f"cell_size_m = {cell_size_m!r}: must be a finite number > 0 metres")
    cs = float(cs)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed = {seed!r}: must be an integer >= 0")
    seed = int(seed)
    w, h = _parse_size(size_m)
    cols, rows = max(1, int(round(w / cs))), max(1, int(round(h / cs)))
    if rows * cols > MAX_CELLS:
        raise ValueError(f"size_m = {size_m!r} at cell_size_m = {cs:g} gives {rows} x {cols} cells: "
                         f"must be <= {MAX_CELLS} cells")
    try:
        ox, oy = (float(v) for v in origin_xy_m)
    except (TypeError, ValueError):
        raise ValueError(f"origin_xy_m = {origin_xy_m!r}: must be an (x, y) pair in metres") from None
    if not (math.isfinite(ox) and math.isfinite(oy)):
        raise ValueError(f"origin_xy_m = {origin_xy_m!r}: must be finite")
    zones = _parse_zones(clear_zones)

    rng_relief, rng_craters, rng_rocks = (np.random.default_rng(s)
                                          for s in np.random.SeedSequence(seed).spawn(3))
    extent = (ox, ox + cols * cs, oy, oy + rows * cs)
    crater_range = (max(p.crater_min_diameter_m, MIN_CRATER_CELLS * cs), p.crater_max_diameter_m)
    rock_range = (max(p.rock_min_diameter_m, MIN_ROCK_CELLS * cs), p.rock_max_diameter_m)

    z = fractal_relief((rows, cols), cs, rms_m=p.relief_rms_m, hurst=p.hurst,
                       rolloff_wavelength_m=p.rolloff_wavelength_m, rng=rng_relief)
    t_relief = time.perf_counter()
    source = f"generated:{label} seed={seed}"
    terrain = TerrainMap(z.astype(np.float32), cs, (ox, oy), source=source)
    craters = _sample_craters(rng_craters, p, *crater_range, extent, zones)
    terrain = add_craters(terrain, craters, ejecta_extent=p.crater_ejecta_extent)
    t_craters = time.perf_counter()
    rocks = _sample_rocks(rng_rocks, p, *rock_range, extent, zones)
    terrain = add_rocks(terrain, rocks)
    t_end = time.perf_counter()
    terrain.meta.update(generator="sim.terrain", preset=preset if params is None else None, seed=seed,
                        params=dataclasses.asdict(p), clear_zones=zones, n_rocks=len(rocks),
                        n_craters=len(craters), rock_diameter_range_m=rock_range,
                        crater_diameter_range_m=crater_range)
    log.debug("generate_terrain %s %dx%d: relief %.3f s, %d craters %.3f s, %d rocks %.3f s",
              source, rows, cols, t_relief - t_start, len(craters), t_craters - t_relief, len(rocks),
              t_end - t_craters)
    return GeneratedTerrain(terrain=terrain, rocks=rocks, craters=craters, params=p,
                            rock_diameter_range_m=rock_range, crater_diameter_range_m=crater_range)
