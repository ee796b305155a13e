"""Tests for sim.terrain: determinism, Golombek rock statistics, crater shapes, fractal relief,
clear zones, validation. Oracles live in tests/sim/_ref_terrain.py (whole-grid numpy stamping,
scipy quadrature of the Golombek–Rapp model, independent spectrum and deviogram estimators)."""
from __future__ import annotations

import importlib.util
import math
import pathlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nav
from nav.terrain_map import TerrainMap
from sim.terrain import (MIN_CRATER_CELLS, MIN_ROCK_CELLS, PRESETS, Crater, Craters, GeneratedTerrain, Rock,
                         Rocks, TerrainParams, add_craters, add_rocks, fractal_relief, generate_terrain,
                         golombek_q)

_spec = importlib.util.spec_from_file_location("_ref_terrain", pathlib.Path(__file__).with_name("_ref_terrain.py"))
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)

FLAT = dict(relief_rms_m=0.0, crater_density_per_km2=0.0, rock_cfa=0.0)


def _same(a: GeneratedTerrain, b: GeneratedTerrain) -> bool:
    return (np.array_equal(a.terrain.elevation_m, b.terrain.elevation_m) and a.rocks == b.rocks
            and a.craters == b.craters and a.terrain.source == b.terrain.source)


# =============================================================================== determinism
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_same_arguments_give_identical_terrain(preset):
    kw = dict(size_m=(12.0, 9.0), cell_size_m=0.05, seed=7, origin_xy_m=(-3.0, 2.5))
    a = generate_terrain(preset, **kw)
    b = generate_terrain(preset, **kw)
    assert _same(a, b)
    assert a.terrain.source == f"generated:{preset} seed=7"


def test_different_seeds_differ():
    a = generate_terrain("mars", size_m=10.0, seed=1)
    b = generate_terrain("mars", size_m=10.0, seed=2)
    assert not np.array_equal(a.terrain.elevation_m, b.terrain.elevation_m)
    assert len(a.rocks) != len(b.rocks) or not np.array_equal(a.rocks.x_m, b.rocks.x_m)


def test_layers_use_independent_streams():
    """Changing the rock abundance moves no crater and no relief; changing craters moves no rock."""
    base = generate_terrain("moon", size_m=15.0, seed=4)
    no_rocks = generate_terrain("moon", size_m=15.0, seed=4, rock_cfa=0.0)
    no_craters = generate_terrain("moon", size_m=15.0, seed=4, crater_density_per_km2=0.0)
    relief = generate_terrain("moon", size_m=15.0, seed=4, crater_density_per_km2=0.0, rock_cfa=0.0)
    assert base.craters == no_rocks.craters
    assert base.rocks == no_craters.rocks
    assert len(no_rocks.rocks) == 0 and len(no_craters.craters) == 0
    # the relief is the same underneath
    expect = ref.stamp_craters(relief.terrain.elevation_m, (0, 0), 0.05, no_rocks.craters,
                               no_rocks.params.crater_ejecta_extent)
    np.testing.assert_allclose(no_rocks.terrain.elevation_m, expect, atol=2e-5)


# =============================================================================== output type
def test_generated_mars_is_a_valid_terrain_map():
    g = generate_terrain("mars", size_m=50.0, cell_size_m=0.05, seed=3, origin_xy_m=(100.0, -20.0))
    t = g.terrain
    assert isinstance(t, TerrainMap)
    assert t.elevation_m.dtype == np.float32 and t.elevation_m.flags.c_contiguous
    assert t.shape == (1000, 1000)
    assert not np.isnan(t.elevation_m).any() and t.known_fraction == 1.0
    assert t.extent_m == pytest.approx((100.0, 150.0, -20.0, 30.0))
    assert t.source == "generated:mars seed=3"
    assert t.meta["seed"] == 3 and t.meta["n_rocks"] == len(g.rocks)
    assert g.params == PRESETS["mars"] == TerrainParams()
    assert len(g.rocks) > 100 and len(g.craters) >= 1
    # rocks stand inside the map
    x0, x1, y0, y1 = t.extent_m
    assert np.all((g.rocks.x_m >= x0) & (g.rocks.x_m <= x1) & (g.rocks.y_m >= y0) & (g.rocks.y_m <= y1))
    # the planner-facing layer accepts it
    np.testing.assert_allclose(t.height_at((125.0, 5.0)), t.height_at([(125.0, 5.0)])[0])


def test_rectangular_size_and_rounding():
    g = generate_terrain("earth_yard", size_m=(3.0, 2.02), cell_size_m=0.1, seed=0)
    assert g.terrain.shape == (20, 30)


def test_presets_cover_planet_configs():
    for name in ("moon", "mars", "earth"):
        assert nav.load_planet(name).terrain_preset in PRESETS
    assert set(PRESETS) == {"moon", "mars", "earth_yard"}
    assert PRESETS["earth_yard"].crater_density_per_km2 == 0
    assert PRESETS["mars"].rock_cfa == pytest.approx(0.07)
    assert PRESETS["earth_yard"].rock_cfa == pytest.approx(0.05)
    assert PRESETS["moon"].rock_cfa < PRESETS["earth_yard"].rock_cfa
    assert PRESETS["moon"].crater_density_per_km2 > PRESETS["mars"].crater_density_per_km2


def test_overrides_and_source_labels():
    g = generate_terrain("mars", size_m=4.0, seed=1, rock_cfa=0.1, relief_rms_m=0.05)
    assert g.params.rock_cfa == 0.1 and g.params.relief_rms_m == 0.05
    assert g.params.hurst == PRESETS["mars"].hurst
    assert g.terrain.source == "generated:mars* seed=1"
    p = PRESETS["moon"].replace(rock_cfa=0.02)
    g = generate_terrain(params=p, size_m=4.0, seed=2)
    assert g.params == p and g.terrain.source == "generated:custom seed=2"


# =============================================================================== rocks
K = 0.07
BIG_ROCK_FIELD = dict(size_m=200.0, cell_size_m=0.1, seed=11, rock_cfa=K, rock_min_diameter_m=0.2,
                      rock_max_diameter_m=2.0, relief_rms_m=0.0, crater_density_per_km2=0.0)


@pytest.fixture(scope="module")
def rock_field():
    return generate_terrain("mars", **BIG_ROCK_FIELD)


def test_rock_cfa_matches_golombek_rapp(rock_field):
    g = rock_field
    d_lo, d_hi = g.rock_diameter_range_m
    assert (d_lo, d_hi) == (0.2, 2.0)
    area = 200.0 * 200.0
    cfa = g.rocks.area_m2 / area
    expect = ref.golombek_cfa(K, d_lo, d_hi)
    sigma = math.sqrt(ref.golombek_cfa_variance_per_m2(K, d_lo, d_hi) / area)
    assert abs(cfa - expect) < 4.0 * sigma, (cfa, expect, sigma)
    assert sigma < 0.03 * expect  # the test is sharp


def test_rock_size_frequency_follows_the_model(rock_field):
    d = rock_field.rocks.diameter_m
    area = 200.0 * 200.0
    assert d.min() >= 0.2 and d.max() <= 2.0
    for lo, hi in ((0.2, 0.25), (0.25, 0.35), (0.35, 0.5), (0.5, 0.8), (0.8, 2.0)):
        n = int(np.count_nonzero((d >= lo) & (d < hi)))
        lam = area * ref.golombek_number_density(K, lo, hi)
        assert abs(n - lam) < 4.0 * math.sqrt(lam) + 1, (lo, hi, n, lam)
    # ratio of counts in two bins
    n1 = np.count_nonzero((d >= 0.2) & (d < 0.3))
    n2 = np.count_nonzero((d >= 0.4) & (d < 0.6))
    r_expect = ref.golombek_number_density(K, 0.2, 0.3) / ref.golombek_number_density(K, 0.4, 0.6)
    r = n1 / n2
    rel = math.sqrt(1.0 / n1 + 1.0 / n2)
    assert abs(math.log(r / r_expect)) < 4.0 * rel


def test_rock_positions_are_uniform(rock_field):
    x = rock_field.rocks.x_m
    counts, _ = np.histogram(x, bins=10, range=(0.0, 200.0))
    expect = len(x) / 10
    chi2 = float(np.sum((counts - expect) ** 2 / expect))
    assert chi2 < 35.0  # chi-square with 9 dof: p < 1e-4 above 33.7


def test_rock_heights_about_half_the_diameter(rock_field):
    ratio = rock_field.rocks.height_m / rock_field.rocks.diameter_m
    assert np.median(ratio) == pytest.approx(0.5, rel=0.02)
    s = PRESETS["mars"].rock_height_scatter
    assert ratio.min() >= 0.5 * math.exp(-2 * s) - 1e-12 and ratio.max() <= 0.5 * math.exp(2 * s) + 1e-12
    assert np.std(np.log(ratio)) == pytest.approx(s, rel=0.1)


def test_rock_tops_are_in_the_dem():
    kw = dict(size_m=(20.0, 16.0), cell_size_m=0.05, seed=5, origin_xy_m=(1.0, -2.0))
    g = generate_terrain("mars", **kw)
    ground = generate_terrain("mars", **kw, rock_cfa=0.0).terrain.elevation_m
    z = g.terrain.elevation_m
    assert len(g.rocks) > 100
    fp = g.rocks
    isolated = 0
    for i, rk in enumerate(fp):
        r, c = ref.cell_of(rk.x_m, rk.y_m, z.shape, (1.0, -2.0), 0.05)
        above = float(z[r, c]) - float(ground[r, c])
        assert above >= rk.height_m - 1e-4, (i, rk, above)
        others = np.hypot(fp.x_m - rk.x_m, fp.y_m - rk.y_m) < 0.5 * (fp.diameter_m + rk.diameter_m) + 0.1
        if others.sum() == 1:
            isolated += 1
            assert above == pytest.approx(rk.height_m, abs=1e-4)
    assert isolated > 50
    # and the whole grid is exactly ground + rocks (reference stamping)
    np.testing.assert_allclose(z, ref.stamp_rocks(ground, (1.0, -2.0), 0.05, g.rocks), atol=1e-5)


def test_unresolvable_rocks_and_craters_are_not_generated():
    g = generate_terrain("moon", size_m=30.0, cell_size_m=0.2, seed=3)
    assert g.rock_diameter_range_m[0] == pytest.approx(MIN_ROCK_CELLS * 0.2)
    assert g.crater_diameter_range_m[0] == pytest.approx(MIN_CRATER_CELLS * 0.2)
    assert np.all(g.rocks.diameter_m >= MIN_ROCK_CELLS * 0.2)
    assert np.all(g.craters.diameter_m >= MIN_CRATER_CELLS * 0.2)


def test_add_rocks_golden():
    """A 0.3 m rock of height 0.15 m centred on a cell of a flat 0.1 m grid at height 1."""
    t = TerrainMap(np.ones((9, 9)), 0.1)
    rocks = Rocks(x_m=[0.45], y_m=[0.45], diameter_m=[0.3], height_m=[0.15])
    z = add_rocks(t, rocks).elevation_m
    assert z[4, 4] == pytest.approx(1.15)
    side = 1.0 + 0.15 * math.sqrt(1 - (0.1 / 0.15) ** 2)
    for r, c in ((3, 4), (5, 4), (4, 3), (4, 5)):
        assert z[r, c] == pytest.approx(side, abs=1e-6)
    diag = 1.0 + 0.15 * math.sqrt(1 - 2 * (0.1 / 0.15) ** 2)
    assert z[3, 3] == pytest.approx(diag, abs=1e-6)
    z[3:6, 3:6] = 1.0
    assert np.all(z == 1.0)
    # overlapping rocks take the maximum, never stack
    two = Rocks(x_m=[0.45, 0.45], y_m=[0.45, 0.45], diameter_m=[0.3, 0.5], height_m=[0.15, 0.1])
    assert add_rocks(t, two).elevation_m[4, 4] == pytest.approx(1.15)


def test_add_rocks_tiny_rock_off_centre_keeps_its_top():
    t = TerrainMap(np.zeros((4, 4)), 1.0, (10.0, 20.0))
    z = add_rocks(t, Rocks(x_m=[11.9], y_m=[22.2], diameter_m=[0.2], height_m=[0.1])).elevation_m
    assert z[2, 1] == pytest.approx(0.1) and np.count_nonzero(z) == 1


def test_add_rocks_rejects_rocks_off_the_map():
    t = TerrainMap(np.zeros((4, 4)), 1.0)
    with pytest.raises(ValueError, match=r"rocks\[1\] centre \(x=5.000 m, y=1.000 m\) is outside"):
        add_rocks(t, Rocks(x_m=[1.0, 5.0], y_m=[1.0, 1.0], diameter_m=[0.5, 0.5], height_m=[0.2, 0.2]))
    with pytest.raises(ValueError, match=r"rocks.diameter_m\[0\] = -0.5: must be finite and > 0"):
        add_rocks(t, Rocks(x_m=[1.0], y_m=[1.0], diameter_m=[-0.5], height_m=[0.2]))
    # a rock on the outer edge belongs to the last cell
    z = add_rocks(t, Rocks(x_m=[4.0], y_m=[4.0], diameter_m=[0.5], height_m=[0.2])).elevation_m
    assert z[3, 3] == pytest.approx(0.2)


def test_unknown_cells_stay_unknown():
    z = np.zeros((20, 20))
    z[10, 10] = np.nan
    t = TerrainMap(z, 0.1)
    out = add_rocks(t, Rocks(x_m=[1.05], y_m=[1.05], diameter_m=[0.6], height_m=[0.3])).elevation_m
    assert np.isnan(out[10, 10]) and np.isnan(out).sum() == 1
    out = add_craters(t, Craters(x_m=[1.0], y_m=[1.0], diameter_m=[1.0], depth_m=[0.2], rim_height_m=[0.04]))
    assert np.isnan(out.elevation_m[10, 10]) and np.isnan(out.elevation_m).sum() == 1


# =============================================================================== craters
def test_isolated_crater_golden():
    """A fresh 10 m crater (d/D 0.2, rim 0.04 D, ejecta to 2.5 R) centred on a cell of flat ground."""
    cs = 0.05
    t = TerrainMap(np.zeros((401, 401)), cs, (-10.025, -10.025))   # cell (200, 200) centred on (0, 0)
    cr = Craters(x_m=[0.0], y_m=[0.0], diameter_m=[10.0], depth_m=[2.0], rim_height_m=[0.4])
    z = add_craters(t, cr, ejecta_extent=2.5).elevation_m.astype(np.float64)
    assert z[200, 200] == pytest.approx(0.4 - 2.0, abs=1e-6)              # floor 1.6 m below the plain
    assert z.max() == pytest.approx(0.4, abs=1e-6)                        # rim crest 0.04 D
    assert z[200, 300] == pytest.approx(0.4, abs=1e-6)                    # r = R exactly
    assert z[200, 250] == pytest.approx(-1.6 + 2.0 * 0.25, abs=1e-6)      # r = R/2: parabolic bowl
    t3 = 2.5 ** -3
    assert z[200, 400] == pytest.approx(0.4 * (1 / 8 - t3) / (1 - t3), abs=1e-6)  # r = 2R: (r/R)^-3 ejecta
    assert z[200, 150 - 150] == pytest.approx(0.4 * (1 / 8 - t3) / (1 - t3), abs=1e-6)
    rr = np.hypot(*np.meshgrid(np.arange(401) - 200.0, np.arange(401) - 200.0)) * cs
    assert np.all(z[rr >= 12.5] == 0.0)                                   # nothing beyond 2.5 R
    np.testing.assert_array_equal(z, z.T)                                 # radially symmetric
    np.testing.assert_array_equal(z, z[::-1, ::-1])


def test_generated_craters_have_the_requested_shape():
    """Isolated craters on flat ground: floor depth and rim height match the parameters."""
    params = TerrainParams(relief_rms_m=0.0, rock_cfa=0.0, crater_density_per_km2=1500.0,
                           crater_min_diameter_m=2.0, crater_max_diameter_m=8.0, crater_sfd_exponent=2.0,
                           crater_degraded_fraction=0.5)
    g = generate_terrain(params=params, size_m=120.0, cell_size_m=0.05, seed=2)
    z = g.terrain.elevation_m
    cr = g.craters
    fresh = np.isclose(cr.depth_m, 0.2 * cr.diameter_m)
    degraded = np.isclose(cr.depth_m, 0.07 * cr.diameter_m)
    assert np.all(fresh | degraded) and fresh.any() and degraded.any()
    np.testing.assert_allclose(cr.rim_height_m[fresh], 0.04 * cr.diameter_m[fresh])
    np.testing.assert_allclose(cr.rim_height_m[degraded], 0.04 * 0.07 / 0.2 * cr.diameter_m[degraded])
    checked = 0
    for i, c in enumerate(cr):
        reach = 2.5 * 0.5 * c.diameter_m
        d = np.hypot(cr.x_m - c.x_m, cr.y_m - c.y_m)
        near = d < reach + 2.5 * 0.5 * cr.diameter_m
        if near.sum() > 1 or not (reach < c.x_m < 120 - reach and reach < c.y_m < 120 - reach):
            continue
        r, col = ref.cell_of(c.x_m, c.y_m, z.shape, (0, 0), 0.05)
        win = z[r - 2:r + 3, col - 2:col + 3].astype(np.float64)
        radius = 0.5 * c.diameter_m
        floor = c.rim_height_m - c.depth_m
        # the lowest nearby cell is within a cell's parabola rise of the floor
        assert floor <= win.min() <= floor + c.depth_m * (0.05 / radius) ** 2 + 1e-5
        ring = _ring_max(z, c, 0.05)
        slope_at_rim = 2 * c.depth_m / radius
        assert c.rim_height_m - slope_at_rim * 0.05 <= ring <= c.rim_height_m + 1e-5
        checked += 1
    assert checked >= 5


def _ring_max(z, c, cs):
    """Highest cell within two cells of the rim circle (crater fully inside the map)."""
    half = int(math.ceil(0.5 * c.diameter_m / cs)) + 3
    r0, c0 = int(c.y_m / cs), int(c.x_m / cs)
    yy, xx = np.mgrid[r0 - half:r0 + half + 1, c0 - half:c0 + half + 1]
    r = np.hypot((xx + 0.5) * cs - c.x_m, (yy + 0.5) * cs - c.y_m)
    band = np.abs(r - 0.5 * c.diameter_m) < 2 * cs
    return float(z[yy[band], xx[band]].max())


def test_crater_dem_matches_reference_stamping():
    kw = dict(size_m=(18.0, 14.0), cell_size_m=0.05, seed=9, rock_cfa=0.0, origin_xy_m=(-5.0, 3.0))
    g = generate_terrain("moon", **kw)
    relief = generate_terrain("moon", **kw, crater_density_per_km2=0.0)
    assert len(g.craters) > 20
    expect = ref.stamp_craters(relief.terrain.elevation_m, (-5.0, 3.0), 0.05, g.craters, 2.5)
    np.testing.assert_allclose(g.terrain.elevation_m, expect, atol=3e-5)
    # every listed crater touches the map, and craters just outside are listed too
    x0, x1, y0, y1 = g.terrain.extent_m
    reach = 1.25 * g.craters.diameter_m
    dx = np.maximum(np.maximum(x0 - g.craters.x_m, g.craters.x_m - x1), 0)
    dy = np.maximum(np.maximum(y0 - g.craters.y_m, g.craters.y_m - y1), 0)
    assert np.all(np.hypot(dx, dy) < reach)


@pytest.mark.parametrize("b", [2.0, 2.8])
def test_crater_size_frequency_and_density(b):
    dens = 4000.0
    params = TerrainParams(relief_rms_m=0.0, rock_cfa=0.0, crater_density_per_km2=dens,
                           crater_min_diameter_m=4.0, crater_max_diameter_m=64.0, crater_sfd_exponent=b,
                           crater_degraded_fraction=0.3)
    side = 1000.0
    g = generate_terrain(params=params, size_m=side, cell_size_m=1.0, seed=21)
    cr = g.craters
    inside = (cr.x_m >= 0) & (cr.x_m < side) & (cr.y_m >= 0) & (cr.y_m < side)
    d = cr.diameter_m[inside]
    area_km2 = (side / 1000.0) ** 2

    def expected(lo, hi):  # cumulative N(>=D) = dens (D / Dmin)^-b per km²
        return dens * area_km2 * ((lo / 4.0) ** -b - (hi / 4.0) ** -b)

    n = len(d)
    lam = expected(4.0, 64.0)
    assert abs(n - lam) < 4 * math.sqrt(lam)
    for lo, hi in ((4, 6), (6, 10), (10, 20), (20, 64)):
        k = int(np.count_nonzero((d >= lo) & (d < hi)))
        lam = expected(lo, hi)
        assert abs(k - lam) < 4 * math.sqrt(lam) + 1, (lo, hi, k, lam)
    # maximum-likelihood exponent of the truncated power law
    bs = np.linspace(1.0, 4.0, 3001)
    ll = [n * math.log(bb) - (bb + 1) * np.log(d / 4.0).sum() - n * math.log(1 - 16.0 ** -bb) for bb in bs]
    b_hat = bs[int(np.argmax(ll))]
    assert abs(b_hat - b) < 4 * b / math.sqrt(n)
    frac = np.isclose(cr.depth_m, 0.07 * cr.diameter_m).mean()
    assert abs(frac - 0.3) < 4 * math.sqrt(0.3 * 0.7 / len(cr))


# =============================================================================== relief
@pytest.mark.parametrize("hurst", [0.5, 0.8])
def test_relief_spectrum_rms_and_hurst(hurst):
    cs, n, rms, lam = 0.1, 1024, 0.5, 5.0
    z = generate_terrain(size_m=n * cs, cell_size_m=cs, seed=5, crater_density_per_km2=0.0, rock_cfa=0.0,
                         relief_rms_m=rms, hurst=hurst, rolloff_wavelength_m=lam).terrain.elevation_m
    z = z.astype(np.float64)
    assert abs(z.mean()) < 1e-4
    # the model RMS is that of an infinite plane; this map spans 20 roll-off wavelengths
    assert np.sqrt(np.mean(z ** 2)) == pytest.approx(rms, rel=0.05)
    k, p = ref.radial_psd(z, cs)
    band = (k > 10.0 / lam) & (k < 0.4 / cs)
    slope = np.polyfit(np.log(k[band]), np.log(p[band]), 1)[0]
    assert slope == pytest.approx(-(2 * hurst + 2), abs=0.12)
    assert TerrainParams(hurst=hurst).spectral_slope == -(2 * hurst + 2)


@pytest.mark.parametrize("hurst, rolloff_m", [(0.4, 5.0), (0.7, 20.0), (0.9, 1e4)])
def test_relief_deviogram_matches_the_model_spectrum(hurst, rolloff_m):
    """The mean squared height difference at every lag is fixed by the amplitude spectrum alone
    (Parseval): compare with the model's prediction computed from S(k) in the test."""
    cs, shape, rms = 0.1, (384, 512), 0.4
    z = generate_terrain(size_m=(shape[1] * cs, shape[0] * cs), cell_size_m=cs, seed=8,
                         crater_density_per_km2=0.0, rock_cfa=0.0, relief_rms_m=rms, hurst=hurst,
                         rolloff_wavelength_m=rolloff_m).terrain.elevation_m.astype(np.float64)
    for lag in (1, 3, 10, 50, 200):
        got = ref.periodic_mean_square_difference(z, lag)
        want = ref.model_periodic_deviogram(shape, cs, rms, hurst, rolloff_m, lag)
        assert got == pytest.approx(want, rel=1e-3), lag


@pytest.mark.parametrize("hurst", [0.5, 0.7])
def test_relief_deviogram_gives_hurst(hurst):
    """Independent estimator: RMS height difference grows as lag^H below the roll-off."""
    cs, n = 0.1, 1024
    z = generate_terrain(size_m=n * cs, cell_size_m=cs, seed=8, crater_density_per_km2=0.0, rock_cfa=0.0,
                         relief_rms_m=1.0, hurst=hurst, rolloff_wavelength_m=1e4).terrain.elevation_m
    lags = np.array([2, 4, 8, 16, 32])
    v = [ref.rms_height_difference(z.astype(np.float64), L) for L in lags]
    h_est = np.polyfit(np.log(lags), np.log(v), 1)[0]
    assert h_est == pytest.approx(hurst, abs=0.05)


def test_relief_slopes_do_not_depend_on_map_size():
    def rms_slope(size):
        z = generate_terrain("mars", size_m=size, cell_size_m=0.05, seed=1, crater_density_per_km2=0.0,
                             rock_cfa=0.0).terrain.elevation_m.astype(np.float64)
        return ref.rms_height_difference(z, 20) / 1.0
    small, large = rms_slope(12.0), rms_slope(60.0)
    assert small == pytest.approx(large, rel=0.12)
    assert math.degrees(math.atan(large)) == pytest.approx(5.5, abs=1.5)   # ~Pathfinder at 1 m


def test_fractal_relief_zero_rms_is_flat():
    z = fractal_relief((8, 8), 0.1, rms_m=0.0, hurst=0.7, rolloff_wavelength_m=5.0,
                       rng=np.random.default_rng(0))
    assert np.all(z == 0.0)


# =============================================================================== clear zones
def test_clear_zones_are_free_of_rocks_and_craters():
    zones = [(5.0, 5.0, 2.0), (20.0, 12.0, 3.5), (0.0, 25.0, 1.0)]
    kw = dict(size_m=25.0, seed=12, clear_zones=zones)
    for preset in ("moon", "mars"):
        g = generate_terrain(preset, **kw, rock_cfa=0.15)
        relief = generate_terrain(preset, **kw, rock_cfa=0.0, crater_density_per_km2=0.0)
        assert len(g.rocks) > 100 and len(g.craters) > 0
        xx, yy = ref.cell_centres(g.terrain.shape, (0, 0), 0.05)
        reach = 0.5 * g.params.crater_ejecta_extent * g.craters.diameter_m
        for zx, zy, zr in zones:
            assert np.all(np.hypot(g.rocks.x_m - zx, g.rocks.y_m - zy) >= zr + 0.5 * g.rocks.diameter_m)
            assert np.all(np.hypot(g.craters.x_m - zx, g.craters.y_m - zy) >= zr + reach)
            inside = np.hypot(xx - zx, yy - zy) < zr
            assert inside.sum() > 100
            np.testing.assert_array_equal(g.terrain.elevation_m[inside], relief.terrain.elevation_m[inside])
        assert g.terrain.meta["clear_zones"] == tuple(zones)


def test_clear_zones_leave_the_density_elsewhere_unchanged():
    kw = dict(size_m=30.0, seed=3)
    a = generate_terrain("mars", **kw)
    b = generate_terrain("mars", **kw, clear_zones=[(15.0, 15.0, 4.0)])
    keep = np.hypot(a.rocks.x_m - 15.0, a.rocks.y_m - 15.0) >= 4.0 + 0.5 * a.rocks.diameter_m
    assert b.rocks == a.rocks[keep]


# =============================================================================== validation
@pytest.mark.parametrize("kwargs, exc, pattern", [
    (dict(rock_cfa=1.5), ValueError, r"TerrainParams.rock_cfa = 1.5: must be < 1"),
    (dict(rock_cfa=-0.1), ValueError, r"rock_cfa = -0.1: must be >= 0"),
    (dict(hurst=0.0), ValueError, r"TerrainParams.hurst = 0.0: must be > 0"),
    (dict(hurst=float("nan")), ValueError, r"hurst = nan: must be finite"),
    (dict(relief_rms_m="0.3"), ValueError, r"relief_rms_m = '0.3': must be a real number"),
    (dict(relief_rms_m=True), ValueError, r"relief_rms_m = True: must be a real number"),
    (dict(crater_min_diameter_m=30.0), ValueError,
     r"crater_min_diameter_m = 30.0: must be <= crater_max_diameter_m = 20.0"),
    (dict(rock_max_diameter_m=0.05), ValueError, r"rock_min_diameter_m = 0.1: must be <= rock_max_diameter_m"),
    (dict(crater_depth_ratio_degraded=0.3), ValueError, r"crater_depth_ratio_degraded = 0.3: must be <="),
    (dict(crater_rim_ratio=0.2), ValueError, r"crater_rim_ratio = 0.2: must be < crater_depth_ratio_fresh"),
    (dict(crater_ejecta_extent=0.5), ValueError, r"crater_ejecta_extent = 0.5: must be >= 1"),
    (dict(crater_degraded_fraction=1.2), ValueError, r"crater_degraded_fraction = 1.2: must be <= 1"),
    (dict(rocks=0.1), TypeError, r"unexpected keyword argument\(s\) 'rocks'"),
    (dict(preset="venus"), ValueError, r"preset = 'venus': must be one of 'moon', 'mars', 'earth_yard'"),
    (dict(size_m=-1.0), ValueError, r"size_m = -1.0: width and height must be finite and > 0"),
    (dict(size_m=(1.0, 2.0, 3.0)), ValueError, r"size_m = \(1.0, 2.0, 3.0\): must be a number or"),
    (dict(cell_size_m=0.0), ValueError, r"cell_size_m = 0.0: must be a finite number > 0"),
    (dict(seed=-1), ValueError, r"seed = -1: must be an integer >= 0"),
    (dict(seed=1.5), ValueError, r"seed = 1.5: must be an integer >= 0"),
    (dict(size_m=1e6), ValueError, r"gives 20000000 x 20000000 cells: must be <="),
    (dict(clear_zones=[(1.0, 2.0)]), ValueError, r"clear_zones\[0\] = \(1.0, 2.0\): must be \(x_m, y_m, radius_m\)"),
    (dict(clear_zones=[(1.0, 2.0, -1.0)]), ValueError, r"clear_zones\[0\] = \(1.0, 2.0, -1.0\): .*radius_m"),
    (dict(params={"rock_cfa": 0.1}), TypeError, r"params must be a TerrainParams, got dict"),
    (dict(origin_xy_m=(0.0, float("inf"))), ValueError, r"origin_xy_m = \(0.0, inf\): must be finite"),
])
def test_invalid_arguments_raise_clear_errors(kwargs, exc, pattern):
    kw = dict(size_m=2.0)
    kw.update(kwargs)
    with pytest.raises(exc, match=pattern):
        generate_terrain(**kw)


def test_params_replace_validates():
    with pytest.raises(TypeError, match="unexpected keyword"):
        PRESETS["mars"].replace(nope=1)
    with pytest.raises(ValueError, match="rock_height_ratio = 2.0: must be <= 1"):
        PRESETS["mars"].replace(rock_height_ratio=2.0)
    assert golombek_q(0.07) == pytest.approx(1.79 + 0.152 / 0.07) == PRESETS["mars"].rock_q
    assert golombek_q(0.0) == math.inf


# =============================================================================== record tables
def test_rock_and_crater_tables():
    rocks = Rocks(x_m=[1.0, 2.0, 3.0], y_m=[4.0, 5.0, 6.0], diameter_m=[0.2, 0.4, 0.6], height_m=[0.1, 0.2, 0.3])
    assert len(rocks) == 3
    assert rocks[1] == Rock(2.0, 5.0, 0.4, 0.2) and rocks[1].diameter_m == 0.4
    assert rocks[-1] == Rock(3.0, 6.0, 0.6, 0.3)
    assert list(rocks)[0] == Rock(1.0, 4.0, 0.2, 0.1)
    sub = rocks[rocks.diameter_m > 0.3]
    assert isinstance(sub, Rocks) and len(sub) == 2 and sub == rocks[1:]
    assert rocks.area_m2 == pytest.approx(math.pi / 4 * (0.04 + 0.16 + 0.36))
    with pytest.raises(ValueError):
        rocks.x_m[0] = 9.0
    with pytest.raises(ValueError, match="columns must be the same length"):
        Rocks(x_m=[1.0], y_m=[1.0, 2.0], diameter_m=[1.0], height_m=[1.0])
    assert len(Craters.empty()) == 0 and list(Craters.empty()) == []
    c = Craters(x_m=[0.0], y_m=[1.0], diameter_m=[2.0], depth_m=[0.4], rim_height_m=[0.08])
    assert c[0] == Crater(0.0, 1.0, 2.0, 0.4, 0.08)


# =============================================================================== properties
@settings(max_examples=25, deadline=None)
@given(preset=st.sampled_from(sorted(PRESETS)), seed=st.integers(0, 2 ** 32),
       w=st.floats(0.3, 6.0), h=st.floats(0.3, 6.0), cs=st.sampled_from([0.05, 0.1, 0.25]),
       ox=st.floats(-100, 100), oy=st.floats(-100, 100),
       zone=st.tuples(st.floats(0, 1), st.floats(0, 1), st.floats(0, 2.0)))
def test_any_small_terrain_is_valid(preset, seed, w, h, cs, ox, oy, zone):
    zones = [(ox + zone[0] * w, oy + zone[1] * h, zone[2])]
    g = generate_terrain(preset, size_m=(w, h), cell_size_m=cs, seed=seed, origin_xy_m=(ox, oy),
                         clear_zones=zones, rock_cfa=0.3)
    z = g.terrain.elevation_m
    assert z.dtype == np.float32 and np.isfinite(z).all()
    assert z.shape == (max(1, round(h / cs)), max(1, round(w / cs)))
    x0, x1, y0, y1 = g.terrain.extent_m
    r = g.rocks
    assert np.all((r.x_m >= x0) & (r.x_m <= x1) & (r.y_m >= y0) & (r.y_m <= y1))
    assert np.all(r.diameter_m >= g.rock_diameter_range_m[0]) and np.all(r.diameter_m <= g.rock_diameter_range_m[1])
    zx, zy, zr = zones[0]
    assert np.all(np.hypot(r.x_m - zx, r.y_m - zy) >= zr + 0.5 * r.diameter_m)
    assert _same(g, generate_terrain(preset, size_m=(w, h), cell_size_m=cs, seed=seed, origin_xy_m=(ox, oy),
                                     clear_zones=zones, rock_cfa=0.3))
