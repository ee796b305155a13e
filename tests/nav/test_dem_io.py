"""nav.load_dem: every format from fixture files written in tmp_path from known arrays.

Expected geometry is worked out by hand in each test (cell-centre convention of
TerrainMap: the centre of cell (r, c) is at origin + (c + 0.5, r + 0.5) * cell, row 0 south).
"""
from __future__ import annotations

import logging
import math
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import nav
from nav import DEMError, TerrainMap, load_dem
from nav.dem_io import BasedInt, OdlBlock, OdlError, Quantity, parse_odl

from _ref_dem import geokey_directory, odl_text, write_asc, write_geotiff  # tests/nav on sys.path

NAN = np.nan
Z34 = np.array([[1.0, 2.0, 3.0, 4.0],
                [5.0, 6.0, 7.0, 8.0],
                [9.0, 10.0, 11.0, 12.0]])  # as stored in files: first row = north


def assert_dem_error(exc_info, path, *words):
    msg = str(exc_info.value)
    assert str(path) in msg or path.name in msg, msg
    for w in words:
        assert w.lower() in msg.lower(), f"{w!r} not in {msg!r}"


# ============================================================================ general
def test_lazy_export_and_signature():
    assert nav.load_dem is load_dem
    with pytest.raises(TypeError):
        load_dem("x.asc", cellsize=1.0)  # unknown keyword rejected by the signature
    with pytest.raises(TypeError):
        load_dem("x.asc", 1.0)  # options are keyword-only


def test_missing_file(tmp_path):
    p = tmp_path / "nope.asc"
    with pytest.raises(DEMError) as e:
        load_dem(p)
    assert_dem_error(e, p, "not found")
    assert e.value.path == str(p)


def test_directory_and_unknown_extension(tmp_path):
    with pytest.raises(DEMError) as e:
        load_dem(tmp_path)
    assert_dem_error(e, tmp_path, "directory")
    p = tmp_path / "dem.xyz"
    p.write_text("1 2 3")
    with pytest.raises(DEMError) as e:
        load_dem(p)
    assert_dem_error(e, p, "unknown DEM file extension", ".asc", ".tif")


@pytest.mark.parametrize("kw, match", [
    ({"cell_size_m": 0}, "cell_size_m must be a finite number > 0, got 0"),
    ({"resolution_m": float("inf")}, "resolution_m must be a finite number > 0"),
    ({"body_radius_m": -1.0}, "body_radius_m must be a finite number > 0"),
    ({"crs_units": "feet"}, "crs_units must be one of"),
])
def test_bad_options(tmp_path, kw, match):
    with pytest.raises(ValueError, match=match):
        load_dem(tmp_path / "a.npy", **kw)


# ============================================================================= NumPy
def test_npy_needs_cell_size(tmp_path):
    p = tmp_path / "z.npy"
    z = np.arange(12, dtype=np.float64).reshape(3, 4)
    np.save(p, z)
    with pytest.raises(DEMError) as e:
        load_dem(p)
    assert_dem_error(e, p, "cell_size_m")
    tm = load_dem(p, cell_size_m=0.25)
    assert isinstance(tm, TerrainMap)
    assert tm.elevation_m.dtype == np.float32
    np.testing.assert_array_equal(tm.elevation_m, z)  # npy is already row 0 = south
    assert tm.cell_size_m == 0.25 and tm.origin_xy_m == (0.0, 0.0)
    assert tm.meta["format"] == "npy"


@pytest.mark.parametrize("arr, word", [
    (np.zeros((2, 3, 4)), "2-D"),
    (np.zeros((2, 3), complex), "complex"),
    (np.array([["a", "b"]]), "real numbers"),
])
def test_npy_bad_arrays(tmp_path, arr, word):
    p = tmp_path / "bad.npy"
    np.save(p, arr)
    with pytest.raises(DEMError) as e:
        load_dem(p, cell_size_m=1.0)
    assert_dem_error(e, p, word)


def test_npy_pickled_objects_refused(tmp_path):
    p = tmp_path / "obj.npy"
    np.save(p, np.array([[{"a": 1}]], dtype=object), allow_pickle=True)
    with pytest.raises(DEMError) as e:
        load_dem(p, cell_size_m=1.0)
    assert_dem_error(e, p, "numeric")


def test_npy_corrupt(tmp_path):
    p = tmp_path / "c.npy"
    p.write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(DEMError) as e:
        load_dem(p, cell_size_m=1.0)
    assert_dem_error(e, p)


def test_npz_with_keys(tmp_path):
    p = tmp_path / "m.npz"
    z = np.array([[1, 2], [3, np.nan]], np.float32)
    np.savez(p, elevation_m=z, cell_size_m=0.5, origin_xy_m=np.array([10.0, -4.0]))
    tm = load_dem(p)
    np.testing.assert_array_equal(tm.elevation_m, z)
    assert tm.cell_size_m == 0.5 and tm.origin_xy_m == (10.0, -4.0)
    assert tm.meta["n_missing"] == 1
    load_dem(p, cell_size_m=0.5)  # agreeing is fine
    with pytest.raises(DEMError) as e:
        load_dem(p, cell_size_m=2.0)
    assert_dem_error(e, p, "contradicts")


def test_npz_single_array(tmp_path):
    p = tmp_path / "one.npz"
    np.savez(p, heights=np.ones((2, 3)))
    with pytest.raises(DEMError) as e:
        load_dem(p)
    assert_dem_error(e, p, "cell_size_m", "heights")
    assert load_dem(p, cell_size_m=2.0).shape == (2, 3)


@pytest.mark.parametrize("arrays, words", [
    ({"a": np.ones((2, 2)), "b": np.ones((2, 2))}, ["elevation_m", "single array"]),
    ({"elevation_m": np.ones((2, 2)), "cell_size_m": np.nan}, ["cell_size_m", "finite"]),
    ({"elevation_m": np.ones((2, 2)), "cell_size_m": -1.0}, ["cell_size_m", "> 0"]),
    ({"elevation_m": np.ones((2, 2))}, ["no cell_size_m"]),
    ({"elevation_m": np.ones((2, 2)), "cell_size_m": 1.0, "origin_xy_m": np.ones(3)},
     ["origin_xy_m"]),
])
def test_npz_errors(tmp_path, arrays, words):
    p = tmp_path / "bad.npz"
    np.savez(p, **arrays)
    with pytest.raises(DEMError) as e:
        load_dem(p)
    assert_dem_error(e, p, *words)


def test_npz_that_is_not_a_zip(tmp_path):
    p = tmp_path / "junk.npz"
    p.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(DEMError) as e:
        load_dem(p)
    assert_dem_error(e, p)


def test_infinite_heights_become_missing(tmp_path):
    p = tmp_path / "inf.npy"
    np.save(p, np.array([[1.0, np.inf], [-np.inf, 2.0]]))
    tm = load_dem(p, cell_size_m=1.0)
    np.testing.assert_array_equal(np.isnan(tm.elevation_m), [[False, True], [True, False]])
    assert tm.meta["n_infinite_as_missing"] == 2


def test_resolution_m_resamples(tmp_path):
    p = tmp_path / "r.npy"
    np.save(p, np.arange(16, dtype=np.float64).reshape(4, 4))
    tm = load_dem(p, cell_size_m=1.0, resolution_m=2.0)
    assert tm.cell_size_m == 2.0 and tm.shape == (2, 2)
    np.testing.assert_array_equal(tm.elevation_m, [[2.5, 4.5], [10.5, 12.5]])
    assert "resampled" in tm.meta


# =================================================================== ESRI ASCII grid
ASC_TEXT = """NCOLS 4
NROWS 3
XLLCORNER 100.0
YLLCORNER 200.0
CELLSIZE 0.5
NODATA_VALUE -9999
1 2 3 4
5 -9999 7 8
9 10 11 12
"""


def test_asc_golden(tmp_path):
    p = tmp_path / "g.asc"
    p.write_text(ASC_TEXT)
    tm = load_dem(p)
    expected = [[9, 10, 11, 12], [5, NAN, 7, 8], [1, 2, 3, 4]]  # flipped: row 0 = south
    np.testing.assert_array_equal(tm.elevation_m, np.array(expected, np.float32))
    assert tm.cell_size_m == 0.5 and tm.origin_xy_m == (100.0, 200.0)
    # the north-west value 1 sits in the top row: centre (100.25, 201.25)
    r, c = tm.world_to_cell((100.25, 201.25))
    assert (r, c) == (2, 0) and tm.elevation_m[r, c] == 1.0
    assert tm.meta["units_assumed"]


def test_asc_centre_keys_wrapped_lines_and_crlf(tmp_path):
    p = tmp_path / "c.asc"
    p.write_bytes(b"ncols 3\r\nnrows 2\r\nxllcenter 10.5\r\nyllcenter 20.5\r\ncellsize 1\r\n"
                  b"1 2\r\n3 4 5\r\n6\r\n")
    tm = load_dem(p)
    np.testing.assert_array_equal(tm.elevation_m, [[4, 5, 6], [1, 2, 3]])
    assert tm.origin_xy_m == (10.0, 20.0)  # centre of the lower-left cell minus half a cell


def test_asc_dx_dy_resampled_to_square(tmp_path):
    p = tmp_path / "dxdy.asc"
    p.write_text("ncols 2\nnrows 2\nxllcorner 0\nyllcorner 0\ndx 1.0\ndy 2.0\n1 2\n3 4\n")
    tm = load_dem(p)
    # 2 m tall cells -> four 1 m rows; file rows (north first) [1 2], [3 4]
    assert tm.cell_size_m == 1.0 and tm.shape == (4, 2)
    # y centres 0.5, 1.5, 2.5, 3.5 on a line through (1.0, 3) and (3.0, 1): z = 3 - (y - 1)
    np.testing.assert_allclose(tm.elevation_m[:, 0], [3.5, 2.5, 1.5, 0.5])
    assert "resampled" in tm.meta


@pytest.mark.parametrize("text, words", [
    ("nrows 2\nxllcorner 0\nyllcorner 0\ncellsize 1\n1 2\n3 4\n", ["ncols"]),
    ("1 2\n3 4\n", ["ncols", "no header"]),
    ("ncols two\nnrows 2\nxllcorner 0\nyllcorner 0\ncellsize 1\n1 2\n3 4\n", ["ncols", "two"]),
    ("ncols 2.5\nnrows 2\nxllcorner 0\nyllcorner 0\ncellsize 1\n1 2\n3 4\n", ["positive integer"]),
    ("ncols 2\nnrows 2\nxllcorner 0\nyllcorner 0\n1 2\n3 4\n", ["cellsize"]),
    ("ncols 2\nnrows 2\nyllcorner 0\ncellsize 1\n1 2\n3 4\n", ["xllcorner"]),
    ("ncols 2\nnrows 2\nxllcorner 0\nxllcenter 0\nyllcorner 0\ncellsize 1\n1 2\n3 4\n", ["both"]),
    ("ncols 2\nnrows 2\nxllcorner 0\nyllcorner 0\ncellsize nan\n1 2\n3 4\n", ["cellsize", "finite"]),
    ("ncols 2\nnrows 2\nxllcorner 0\nyllcorner 0\ncellsize 0\n1 2\n3 4\n", ["cellsize", "> 0"]),
    ("ncols 2\nnrows 2\nxllcorner 0\nyllcorner 0\ncellsize 1\n1 2\n3\n", ["truncated", "4", "3"]),
    ("ncols 2\nnrows 2\nxllcorner 0\nyllcorner 0\ncellsize 1\n1 2\n3 4 5\n", ["more than"]),
    ("ncols 2\nnrows 2\nxllcorner 0\nyllcorner 0\ncellsize 1\n1 2\n3 x4\n", ["non-number", "x4"]),
    ("ncols 2\nnrows 2 3\nxllcorner 0\nyllcorner 0\ncellsize 1\n1 2\n3 4\n", ["header line 2"]),
    ("ncols 2\nNCOLS 2\nnrows 2\nxllcorner 0\nyllcorner 0\ncellsize 1\n1 2\n3 4\n", ["twice"]),
])
def test_asc_errors(tmp_path, text, words):
    p = tmp_path / "bad.asc"
    p.write_text(text)
    with pytest.raises(DEMError) as e:
        load_dem(p)
    assert_dem_error(e, p, *words)


def test_asc_projected_prj_in_us_feet(tmp_path):
    p = tmp_path / "ft.asc"
    write_asc(p, [[1.0, 2.0]], cellsize=10.0, xll=1000.0, yll=2000.0, prj=(
        'PROJCS["NAD83 / California zone 3 (ftUS)",GEOGCS["NAD83",DATUM["North_American_Datum_1983",'
        'SPHEROID["GRS 1980",6378137,298.257222101]],PRIMEM["Greenwich",0],'
        'UNIT["degree",0.0174532925199433]],PROJECTION["Lambert_Conformal_Conic_2SP"],'
        'PARAMETER["standard_parallel_1",38.43333333333333],UNIT["US survey foot",0.3048006096012192],'
        'AUTHORITY["EPSG","2227"]]'))
    tm = load_dem(p)
    ft = 0.3048006096012192
    assert tm.cell_size_m == pytest.approx(10 * ft)
    assert tm.origin_xy_m == pytest.approx((1000 * ft, 2000 * ft))
    assert tm.meta["units"] == "m" and "projected" in tm.crs


def test_asc_geographic_prj_needs_a_radius(tmp_path):
    p = tmp_path / "geo.asc"
    write_asc(p, Z34[:2], cellsize=0.001, xll=10.0, yll=59.999, prj=(
        'GEOGCS["GCS_Mars_2000_Sphere",DATUM["D_Mars_2000_Sphere",SPHEROID["Mars_2000_Sphere_IAU_IAG",'
        '3396190.0,0.0]],PRIMEM["Reference_Meridian",0.0],UNIT["Degree",0.0174532925199433]]'))
    tm = load_dem(p)  # the .prj names a sphere, so the radius is known
    assert tm.meta["radius_m"] == 3396190.0
    (tmp_path / "geo.prj").write_text(
        'GEOGCS["unknown",PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433]]')
    with pytest.raises(DEMError) as e:
        load_dem(p)
    assert_dem_error(e, p, "degrees", "body_radius_m")


def test_asc_geographic_conversion_hand_computed(tmp_path):
    # 4 × 2 cells of 0.001°, latitudes 59.999..60.001 (centre 60°), longitudes 10..10.004,
    # on a 3 389 500 m sphere:
    #   dy = R · dlat = 3389500 · 0.001 · π/180 = 59.15790 m
    #   dx = R · cos 60° · dlon = 29.57895 m  -> resampled to square 29.57895 m cells:
    #   four rows (each 59.158 m row splits in two, bilinear in y, extrapolated at the rim).
    p = tmp_path / "deg.asc"
    write_asc(p, [[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]], cellsize=0.001, xll=10.0, yll=59.999)
    with pytest.raises(DEMError) as e:
        load_dem(p, crs_units="deg")
    assert_dem_error(e, p, "degrees", "body_radius_m")
    tm = load_dem(p, crs_units="deg", body_radius_m=3389500.0)
    assert tm.cell_size_m == pytest.approx(29.57895, abs=1e-4)
    assert tm.shape == (4, 4)
    # south row (5 6 7 8) at y-centre 0.5 of 2, north row (1 2 3 4) at 1.5; new centres at
    # 0.25, 0.75, 1.25, 1.75 -> z = south + (u) · (north - south), u = -0.25, 0.25, 0.75, 1.25
    expected = np.array([[6, 7, 8, 9], [4, 5, 6, 7], [2, 3, 4, 5], [0, 1, 2, 3]], np.float32)
    np.testing.assert_allclose(tm.elevation_m, expected, atol=1e-4)
    # frame centred on the map: origin = (-2 dx, -1 dy)
    assert tm.origin_xy_m == pytest.approx((-2 * 29.57895, -59.15790), abs=1e-3)
    assert "local equirectangular" in tm.meta["conversion"] and tm.meta["lat0_deg"] == pytest.approx(60.0)


@pytest.mark.parametrize("prj, factor, units", [
    ('PROJCRS["WGS 84 / UTM zone 11N",BASEGEOGCRS["WGS 84",DATUM["World Geodetic System 1984",'
     'ELLIPSOID["WGS 84",6378137,298.257223563,LENGTHUNIT["metre",1]]],PRIMEM["Greenwich",0,'
     'ANGLEUNIT["degree",0.0174532925199433]]],CONVERSION["UTM zone 11N",METHOD["Transverse Mercator"],'
     'PARAMETER["False easting",500000,LENGTHUNIT["metre",1]]],CS[Cartesian,2],'
     'AXIS["easting",east,ORDER[1],LENGTHUNIT["foot",0.3048]],ID["EPSG",32611]]', 0.3048, "m"),
    ("Projection    UTM\nZone          13\nDatum         NAD83\nUnits         FEET\n", 0.3048, "m"),
    ("Projection    GEOGRAPHIC\nDatum         WGS84\nUnits         DD\n", 1.0, "deg"),
])
def test_asc_wkt2_and_arcinfo_prj(tmp_path, prj, factor, units):
    p = tmp_path / "k.asc"
    write_asc(p, [[1.0, 2.0]], cellsize=0.001, xll=10.0, yll=20.0, prj=prj)
    tm = load_dem(p, body_radius_m=6371000.0)
    assert tm.meta["units"] == units
    if units == "m":
        assert tm.cell_size_m == pytest.approx(0.001 * factor)
        assert tm.origin_xy_m == pytest.approx((10.0 * factor, 20.0 * factor))


def test_asc_crs_units_conflicting_with_prj(tmp_path):
    p = tmp_path / "x.asc"
    write_asc(p, [[1.0]], cellsize=1.0, prj='PROJCS["UTM",GEOGCS["WGS 84"],UNIT["metre",1]]')
    with pytest.raises(DEMError) as e:
        load_dem(p, crs_units="deg")
    assert_dem_error(e, p, "contradicts")


def test_asc_unreadable_prj(tmp_path):
    p = tmp_path / "y.asc"
    write_asc(p, [[1.0]], cellsize=1.0, prj='PROJCS["broken",UNIT["metre",1]')
    with pytest.raises(DEMError) as e:
        load_dem(p)
    assert_dem_error(e, tmp_path / "y.prj", "CRS")


def test_asc_looks_like_degrees_warns(tmp_path, caplog):
    p = tmp_path / "w.asc"
    write_asc(p, [[1.0, 2.0]], cellsize=0.0002777, xll=-105.0, yll=40.0)
    with caplog.at_level(logging.WARNING, logger="nav.dem_io"):
        tm = load_dem(p)
    assert "degrees" in caplog.text and "warning" in tm.meta


@settings(max_examples=60, deadline=None)
@given(z=hnp.arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(1, 6)),
                    elements=st.one_of(st.floats(-1e4, 1e4), st.just(NAN))),
       cell=st.floats(0.01, 100.0), xll=st.floats(-1e6, 1e6), yll=st.floats(-1e6, 1e6),
       centre=st.booleans(), key_case=st.sampled_from(["lower", "upper", "mixed"]),
       per_line=st.sampled_from([None, 1, 5]))
def test_asc_round_trip_property(tmp_path_factory, z, cell, xll, yll, centre, key_case, per_line):
    p = tmp_path_factory.mktemp("asc") / "h.asc"
    nodata = -99999.0
    write_asc(p, z, cellsize=cell, xll=xll, yll=yll, centre=centre, nodata=nodata,
              key_case=key_case, per_line=per_line)
    tm = load_dem(p)
    expected = z[::-1].astype(np.float32)
    np.testing.assert_array_equal(tm.elevation_m, expected)
    assert tm.cell_size_m == cell
    ox = xll - cell / 2 if centre else xll
    oy = yll - cell / 2 if centre else yll
    assert tm.origin_xy_m == pytest.approx((ox, oy), rel=1e-12, abs=1e-9)


# =========================================================================== GeoTIFF
UTM_KEYS = {1024: 1, 1025: 1, 3072: 32611, 3076: 9001, 1026: "WGS 84 / UTM zone 11N"}


def test_geotiff_projected_pixel_is_area(tmp_path):
    p = tmp_path / "utm.tif"
    write_geotiff(p, Z34.astype(np.float32), scale=(2.0, 2.0, 0.0),
                  tiepoint=(0, 0, 0, 500000.0, 4000006.0, 0), geokeys=UTM_KEYS)
    tm = load_dem(p)
    np.testing.assert_array_equal(tm.elevation_m, Z34[::-1].astype(np.float32))
    assert tm.cell_size_m == 2.0
    assert tm.origin_xy_m == (500000.0, 4000000.0)  # 4000006 - 3 rows × 2 m
    assert tm.height_at((500001.0, 4000005.0)) == pytest.approx(1.0)  # north-west cell centre
    assert "32611" in tm.crs and tm.meta["raster_type"] == "PixelIsArea"


def test_geotiff_tiepoint_not_at_the_corner(tmp_path):
    p = tmp_path / "tie.tif"
    # raster point (1, 2) (x = 1 pixel right, y = 2 pixels down of the corner) is at (102, 94)
    write_geotiff(p, Z34.astype(np.float32), scale=(2.0, 2.0, 0.0),
                  tiepoint=(1, 2, 0, 102.0, 94.0, 0), geokeys=UTM_KEYS)
    tm = load_dem(p)
    # corner (0, 0) is at (100, 98); three rows down -> lower-left (100, 92)
    assert tm.origin_xy_m == (100.0, 92.0)


def test_geotiff_pixel_is_point_shifts_half_a_pixel(tmp_path):
    p = tmp_path / "pt.tif"
    write_geotiff(p, Z34.astype(np.float32), scale=(2.0, 2.0, 0.0),
                  tiepoint=(0, 0, 0, 500000.0, 4000006.0, 0), geokeys={**UTM_KEYS, 1025: 2})
    tm = load_dem(p)
    # the tiepoint is the centre of the north-west pixel: corner (499999, 4000007) -> lower-left y = 4000001
    assert tm.origin_xy_m == (499999.0, 4000001.0)
    assert tm.cell_to_world((2, 0)) == pytest.approx((500000.0, 4000006.0))


def test_geotiff_feet(tmp_path):
    p = tmp_path / "ft.tif"
    write_geotiff(p, Z34.astype(np.float32), scale=(10.0, 10.0, 0.0), tiepoint=(0, 0, 0, 0.0, 30.0, 0),
                  geokeys={1024: 1, 3072: 2227, 3076: 9003, 4099: 9002})
    tm = load_dem(p)
    us_ft = 1200 / 3937
    assert tm.cell_size_m == pytest.approx(10 * us_ft)
    assert tm.origin_xy_m == pytest.approx((0.0, 0.0))
    np.testing.assert_allclose(tm.elevation_m, Z34[::-1] * 0.3048, rtol=1e-6)  # vertical units: ft


def test_geotiff_model_transformation(tmp_path):
    p = tmp_path / "mt.tif"
    m = [2.0, 0, 0, 300.0,
         0, -2.0, 0, 506.0,
         0, 0, 0, 0,
         0, 0, 0, 1]
    write_geotiff(p, Z34.astype(np.float32), transform=m, geokeys=UTM_KEYS)
    tm = load_dem(p)
    assert tm.cell_size_m == 2.0 and tm.origin_xy_m == (300.0, 500.0)
    np.testing.assert_array_equal(tm.elevation_m, Z34[::-1])


def test_geotiff_south_up_is_not_flipped(tmp_path):
    p = tmp_path / "su.tif"
    m = [2.0, 0, 0, 300.0, 0, 2.0, 0, 500.0, 0, 0, 0, 0, 0, 0, 0, 1]  # rows go north
    write_geotiff(p, Z34.astype(np.float32), transform=m, geokeys=UTM_KEYS)
    tm = load_dem(p)
    np.testing.assert_array_equal(tm.elevation_m, Z34)
    assert tm.origin_xy_m == (300.0, 500.0)


def test_geotiff_rotation_refused(tmp_path):
    p = tmp_path / "rot.tif"
    m = [2.0, 0.5, 0, 300.0, 0.5, -2.0, 0, 506.0, 0, 0, 0, 0, 0, 0, 0, 1]
    write_geotiff(p, Z34.astype(np.float32), transform=m, geokeys=UTM_KEYS)
    with pytest.raises(DEMError) as e:
        load_dem(p)
    assert_dem_error(e, p, "rotation")


def test_geotiff_wgs84_geographic_hand_computed(tmp_path):
    # EPSG:4326, 0.0001° pixels, latitudes 45.0000..45.0003, centre 45.00015°.
    p = tmp_path / "wgs84.tif"
    write_geotiff(p, Z34.astype(np.float32), scale=(0.0001, 0.0001, 0.0),
                  tiepoint=(0, 0, 0, 7.0, 45.0003, 0), geokeys={1024: 2, 1025: 1, 2048: 4326})
    tm = load_dem(p)
    a, inv_f = 6378137.0, 298.257223563
    f = 1 / inv_f
    e2 = f * (2 - f)
    phi = math.radians(45.00015)
    n = a / math.sqrt(1 - e2 * math.sin(phi) ** 2)            # prime vertical radius
    m = a * (1 - e2) / (1 - e2 * math.sin(phi) ** 2) ** 1.5    # meridional radius
    dx = n * math.cos(phi) * math.radians(0.0001)              # ≈ 7.8850 m
    dy = m * math.radians(0.0001)                              # ≈ 11.1132 m
    assert dx == pytest.approx(7.885, abs=1e-3) and dy == pytest.approx(11.113, abs=1e-3)
    assert tm.cell_size_m == pytest.approx(dx)
    assert tm.shape == (round(3 * dy / dx), round(4 * dx / dx))  # (4, 4)
    assert tm.origin_xy_m == pytest.approx((-2 * dx, -1.5 * dy))
    assert "4326" in tm.meta["conversion"] or "ellipsoid" in tm.meta["conversion"]


def test_geotiff_user_defined_sphere_and_missing_radius(tmp_path):
    p = tmp_path / "mars.tif"
    keys = {1024: 2, 2048: 32767, 2049: "GCS_Mars_2000", 2057: 3396190.0, 2059: 0.0}
    write_geotiff(p, Z34.astype(np.float32), scale=(0.001, 0.001, 0), tiepoint=(0, 0, 0, 0.0, 0.0015, 0),
                  geokeys=keys)
    tm = load_dem(p)
    deg_m = 3396190.0 * math.pi / 180 * 0.001  # 59.274 m at the equator (lat0 = 0)
    assert tm.cell_size_m == pytest.approx(deg_m * math.cos(math.radians(0.0)), rel=1e-6)
    assert tm.meta["radius_m"] == 3396190.0
    q = tmp_path / "unknown_body.tif"
    write_geotiff(q, Z34.astype(np.float32), scale=(0.001, 0.001, 0), tiepoint=(0, 0, 0, 0.0, 0.0015, 0),
                  geokeys={1024: 2, 2048: 32767})
    with pytest.raises(DEMError) as e:
        load_dem(q)
    assert_dem_error(e, q, "degrees", "body_radius_m")
    tm = load_dem(q, body_radius_m=1737400.0)
    assert tm.cell_size_m == pytest.approx(1737400.0 * math.pi / 180 * 0.001)


@pytest.mark.parametrize("dtype, nodata, raw", [
    (np.float32, "-9999", -9999.0),
    (np.float32, "-3.4028234663852886e+38", -3.4028234663852886e38),
    (np.int16, "-32768", -32768),
    (np.float32, "nan", np.nan),
])
def test_geotiff_gdal_nodata(tmp_path, dtype, nodata, raw):
    p = tmp_path / "nd.tif"
    z = Z34.astype(dtype)
    z[0, 1] = raw
    write_geotiff(p, z, scale=(1.0, 1.0, 0), tiepoint=(0, 0, 0, 0.0, 3.0, 0), geokeys=UTM_KEYS,
                  nodata=nodata)
    tm = load_dem(p)
    assert np.isnan(tm.elevation_m[2, 1]) and tm.meta["n_missing"] == 1


def test_geotiff_gdal_metadata_scale_offset(tmp_path):
    import tifffile
    p = tmp_path / "so.tif"
    meta = ('<GDALMetadata>\n  <Item name="OFFSET" sample="0" role="offset">-100</Item>\n'
            '  <Item name="SCALE" sample="0" role="scale">0.5</Item>\n</GDALMetadata>')
    d, _, _ = geokey_directory({1024: 1, 1025: 1, 3076: 9001})  # numbers only: no params tags
    tifffile.imwrite(p, (2 * Z34).astype(np.int16), extratags=[
        (33550, "d", 3, (1.0, 1.0, 0.0), True), (33922, "d", 6, (0, 0, 0, 0.0, 3.0, 0), True),
        (34735, "H", len(d), tuple(d), True), (42112, "s", 0, meta, True)])
    tm = load_dem(p)
    np.testing.assert_allclose(tm.elevation_m, Z34[::-1] - 100.0)  # 0.5 · DN - 100


def test_geotiff_deflate(tmp_path):
    p = tmp_path / "z.tif"
    write_geotiff(p, Z34.astype(np.float32), scale=(1.0, 1.0, 0), tiepoint=(0, 0, 0, 0.0, 3.0, 0),
                  geokeys=UTM_KEYS, compression="zlib")
    np.testing.assert_array_equal(load_dem(p).elevation_m, Z34[::-1])


def test_geotiff_lzw_without_imagecodecs(tmp_path):
    import importlib.util
    if importlib.util.find_spec("imagecodecs") is not None:
        pytest.skip("imagecodecs is installed, so LZW decodes")
    import tifffile
    p = tmp_path / "lzw.tif"
    write_geotiff(p, Z34.astype(np.float32), scale=(1.0, 1.0, 0), tiepoint=(0, 0, 0, 0.0, 3.0, 0),
                  geokeys=UTM_KEYS)
    with tifffile.TiffFile(p) as t:
        off = t.pages[0].tags["Compression"].valueoffset
    b = bytearray(p.read_bytes())
    b[off:off + 2] = struct.pack("<H", 5)  # Compression = LZW (TIFF 6.0)
    p.write_bytes(bytes(b))
    with pytest.raises(DEMError) as e:
        load_dem(p)
    assert_dem_error(e, p, "LZW", "imagecodecs", "pip install")


def test_geotiff_multiband_refused(tmp_path):
    p = tmp_path / "rgb.tif"
    write_geotiff(p, np.zeros((3, 4, 3), np.uint8), scale=(1.0, 1.0, 0), tiepoint=(0, 0, 0, 0, 3, 0),
                  geokeys=UTM_KEYS, photometric="rgb")
    with pytest.raises(DEMError) as e:
        load_dem(p)
    assert_dem_error(e, p, "3 bands")


def test_geotiff_complex_refused(tmp_path):
    p = tmp_path / "cx.tif"
    write_geotiff(p, np.zeros((3, 4), np.complex64), scale=(1.0, 1.0, 0), tiepoint=(0, 0, 0, 0, 3, 0),
                  geokeys=UTM_KEYS)
    with pytest.raises(DEMError) as e:
        load_dem(p)
    assert_dem_error(e, p, "real numbers")


def test_geotiff_without_georeferencing(tmp_path):
    import tifffile
    p = tmp_path / "plain.tif"
    tifffile.imwrite(p, Z34.astype(np.float32))
    with pytest.raises(DEMError) as e:
        load_dem(p)
    assert_dem_error(e, p, "no georeferencing", "cell_size_m")
    tm = load_dem(p, cell_size_m=0.1)
    np.testing.assert_array_equal(tm.elevation_m, Z34[::-1])


def test_geotiff_cell_size_conflict(tmp_path):
    p = tmp_path / "cs.tif"
    write_geotiff(p, Z34.astype(np.float32), scale=(2.0, 2.0, 0), tiepoint=(0, 0, 0, 0, 6, 0),
                  geokeys=UTM_KEYS)
    with pytest.raises(DEMError) as e:
        load_dem(p, cell_size_m=1.0)
    assert_dem_error(e, p, "contradicts")


def test_geotiff_zero_pixel_scale(tmp_path):
    p = tmp_path / "zs.tif"
    write_geotiff(p, Z34.astype(np.float32), scale=(0.0, 2.0, 0), tiepoint=(0, 0, 0, 0, 6, 0),
                  geokeys=UTM_KEYS)
    with pytest.raises(DEMError) as e:
        load_dem(p)
    assert_dem_error(e, p, "pixel width", "finite")


def test_geotiff_garbage_and_truncated(tmp_path):
    p = tmp_path / "junk.tif"
    p.write_bytes(b"this is not a tiff at all" * 10)
    with pytest.raises(DEMError) as e:
        load_dem(p)
    assert_dem_error(e, p, "TIFF")
    q = tmp_path / "cut.tif"
    write_geotiff(q, np.arange(20000, dtype=np.float32).reshape(100, 200), scale=(1.0, 1.0, 0),
                  tiepoint=(0, 0, 0, 0, 100, 0), geokeys=UTM_KEYS)
    q.write_bytes(q.read_bytes()[:40000])
    with pytest.raises(DEMError) as e:
        load_dem(q)
    assert_dem_error(e, q)


# ========================================================================== PDS3 / ODL
def pds_attached(path, label_lines, data: bytes, record_bytes: int, label_records: int):
    """Write a label padded to ``label_records`` records, then ``data``."""
    text = "\r\n".join(label_lines) + "\r\nEND\r\n"
    size = record_bytes * label_records
    assert len(text) <= size, "label too long for LABEL_RECORDS"
    path.write_bytes(text.encode("ascii").ljust(size, b" ") + data)


HIRISE_LABEL = """PDS_VERSION_ID                 = PDS3
/* HiRISE-style DTM: attached label, PC_REAL, ISIS NULL as MISSING_CONSTANT */
RECORD_TYPE                    = FIXED_LENGTH
RECORD_BYTES                   = 16
FILE_RECORDS                   = 131
LABEL_RECORDS                  = 128
^IMAGE                         = 129
OBJECT = IMAGE
  LINES                        = 3
  LINE_SAMPLES                 = 4
  BANDS                        = 1
  OFFSET                       = 0.0
  SCALING_FACTOR               = 1.0
  SAMPLE_BITS                  = 32
  SAMPLE_BIT_MASK              = 2#11111111111111111111111111111111#
  SAMPLE_TYPE                  = PC_REAL
  MISSING_CONSTANT             = 16#FF7FFFFB#
  VALID_MINIMUM                = -4000.0
  VALID_MAXIMUM                = -2000.0
  UNIT                         = METER
END_OBJECT = IMAGE
OBJECT = IMAGE_MAP_PROJECTION
  ^DATA_SET_MAP_PROJECTION     = "DSMAP.CAT"
  MAP_PROJECTION_TYPE          = "EQUIRECTANGULAR"
  A_AXIS_RADIUS                = 3396.19 <KM>
  B_AXIS_RADIUS                = 3396.19 <KM>
  C_AXIS_RADIUS                = 3396.19 <KM>
  CENTER_LATITUDE              = 0.0 <DEG>
  CENTER_LONGITUDE             = 180.0 <DEG>
  MAP_SCALE                    = 1.0 <METERS/PIXEL>
  MAP_RESOLUTION               = 59273.9 <PIX/DEG>
  MAXIMUM_LATITUDE             = -4.4700 <DEG>
  MINIMUM_LATITUDE             = -4.5000 <DEG>
  LINE_PROJECTION_OFFSET       = -265203.5 <PIXEL>
  SAMPLE_PROJECTION_OFFSET     = -1000.5 <PIXEL>
END_OBJECT = IMAGE_MAP_PROJECTION"""


def test_pds_hirise_like_attached(tmp_path):
    z = (-3000.0 - Z34).astype("<f4")
    raw = z.copy()
    raw.view("<u4")[0, 0] = 0xFF7FFFFB          # MISSING_CONSTANT bits
    raw[1, 2] = -4500.0                          # below VALID_MINIMUM
    raw.view("<u4")[2, 3] = 0xFF7FFFFE           # an ISIS special (HIS)
    p = tmp_path / "DTEEC_TEST.IMG"
    pds_attached(p, HIRISE_LABEL.splitlines(), raw.tobytes(), 16, 128)
    tm = load_dem(p)
    expected = z.astype(np.float64)
    expected[0, 0] = expected[1, 2] = expected[2, 3] = NAN
    np.testing.assert_array_equal(tm.elevation_m, expected[::-1].astype(np.float32))
    assert tm.cell_size_m == 1.0
    # x centre of sample 0 = (0 - (-1000.5)) · 1 = 1000.5 -> corner 1000;
    # y centre of line 2 (southmost) = (-265203.5 - 2) · 1 = -265205.5 -> corner -265206
    assert tm.origin_xy_m == (1000.0, -265206.0)
    assert tm.meta["missing_rules"]["MISSING_CONSTANT"] == "16#FF7FFFFB#"
    assert "EQUIRECTANGULAR" in tm.crs
    assert abs(tm.meta["x_scale_error"]) < 0.01  # 4.485° from the standard parallel: left alone


LOLA_LBL = """PDS_VERSION_ID            = "PDS3"

/*** GENERAL DATA DESCRIPTION PARAMETERS ***/
PRODUCT_VERSION_ID        = "V2.0"
DATA_SET_ID               = "LRO-L-LOLA-4-GDR-V1.0"
PRODUCT_ID                = "LDEM_TEST"
MISSION_PHASE_NAME        = {"COMMISSIONING","NOMINAL MISSION","SCIENCE
                            MISSION"}
TARGET_NAME               = MOON

/*** FILE FORMAT ***/
RECORD_TYPE               = FIXED_LENGTH
FILE_RECORDS              = 3
RECORD_BYTES              = 8
^IMAGE                    = "ldem_test.img"

OBJECT                    = IMAGE
  NAME                    = "LDEM_TEST.IMG"
  DESCRIPTION             = "Each sample represents height relative to a
    reference radius (OFFSET) and is generated using preliminary LOLA data."
  LINES                   = 3
  LINE_SAMPLES            = 4
  MAXIMUM                 = 24
  MINIMUM                 = 2
  SAMPLE_TYPE             = LSB_INTEGER
  SAMPLE_BITS             = 16
  UNIT                    = METER
  SCALING_FACTOR          = 0.5
  OFFSET                  = 1737400.
END_OBJECT                = IMAGE

OBJECT                    = IMAGE_MAP_PROJECTION
 ^DATA_SET_MAP_PROJECTION     = "DSMAP.CAT"
 MAP_PROJECTION_TYPE          = "POLAR STEREOGRAPHIC"
 A_AXIS_RADIUS                = 1737.4 <km>
 B_AXIS_RADIUS                = 1737.4 <km>
 C_AXIS_RADIUS                = 1737.4 <km>
 FIRST_STANDARD_PARALLEL      = 'N/A'
 SECOND_STANDARD_PARALLEL     = 'N/A'
 POSITIVE_LONGITUDE_DIRECTION = "EAST"
 CENTER_LATITUDE              = -90. <deg>
 CENTER_LONGITUDE             = 0. <deg>
 REFERENCE_LATITUDE           = 'N/A'
 REFERENCE_LONGITUDE          = 'N/A'
 LINE_FIRST_PIXEL             = 1
 LINE_LAST_PIXEL              = 3
 SAMPLE_FIRST_PIXEL           = 1
 SAMPLE_LAST_PIXEL            = 4
 MAP_PROJECTION_ROTATION      = 0.0
 MAP_SCALE                    = 0.020 <km/pix>
 LINE_PROJECTION_OFFSET       = 1.5 <pix>
 SAMPLE_PROJECTION_OFFSET     = 1.5 <pix>
 COORDINATE_SYSTEM_TYPE       = "BODY-FIXED ROTATING"
 COORDINATE_SYSTEM_NAME       = "MEAN EARTH/POLAR AXIS OF DE421"
END_OBJECT                    = IMAGE_MAP_PROJECTION

END
"""


@pytest.mark.parametrize("open_as", ["label", "image"])
def test_pds_lola_like_detached(tmp_path, open_as):
    dn = (2 * Z34).astype("<i2")
    (tmp_path / "LDEM_TEST.IMG").write_bytes(dn.tobytes())   # case differs from ^IMAGE
    (tmp_path / "LDEM_TEST.LBL").write_text(LOLA_LBL)
    tm = load_dem(tmp_path / ("LDEM_TEST.LBL" if open_as == "label" else "LDEM_TEST.IMG"))
    # height = DN · 0.5 (the 1737.4 km OFFSET is the reference radius and is not added)
    np.testing.assert_array_equal(tm.elevation_m, Z34[::-1])
    assert "reference radius" in tm.meta["height_datum"]
    assert tm.cell_size_m == 20.0  # 0.020 km/pix
    # sample 0 centre x = (0 - 1.5) · 20 = -30 -> corner -40; line 2 centre y = (1.5 - 2) · 20 = -10 -> -20
    assert tm.origin_xy_m == (-40.0, -20.0)
    assert tm.cell_to_world((2, 0)) == pytest.approx((-30.0, 30.0))  # line 0, sample 0
    assert "POLAR STEREOGRAPHIC" in tm.crs and "MOON" in tm.crs


def test_pds_msb_integer_prefix_bytes_byte_pointer_and_scaling(tmp_path):
    lines = ["PDS_VERSION_ID = PDS3", "RECORD_TYPE = UNDEFINED", "^IMAGE = 1025 <BYTES>",
             "OBJECT = IMAGE", "  LINES = 3", "  LINE_SAMPLES = 4", "  SAMPLE_TYPE = MSB_INTEGER",
             "  SAMPLE_BITS = 16", "  LINE_PREFIX_BYTES = 6", "  LINE_SUFFIX_BYTES = 2",
             "  SCALING_FACTOR = 0.25", "  OFFSET = 100.0", "  MISSING_CONSTANT = -32768",
             "  NULL = 16#7FFF#", "END_OBJECT = IMAGE",
             "OBJECT = IMAGE_MAP_PROJECTION", "  MAP_PROJECTION_TYPE = \"TRANSVERSE MERCATOR\"",
             "  MAP_SCALE = 0.5 <METERS/PIXEL>", "  LINE_PROJECTION_OFFSET = 10.5",
             "  SAMPLE_PROJECTION_OFFSET = -20.5", "END_OBJECT = IMAGE_MAP_PROJECTION"]
    dn = (4 * Z34).astype(">i2")
    dn[1, 1] = -32768
    dn[2, 0] = 0x7FFF
    body = b"".join(b"PREFIX" + row.tobytes() + b"SF" for row in dn)
    p = tmp_path / "msb.img"
    pds_attached(p, lines, body, 1, 1024)
    tm = load_dem(p)
    expected = Z34 + 100.0
    expected[1, 1] = expected[2, 0] = NAN
    np.testing.assert_array_equal(tm.elevation_m, expected[::-1].astype(np.float32))
    assert tm.cell_size_m == 0.5
    # x corner = (20.5 - 0.5) · 0.5 = 10 ; y corner = (10.5 - 3 + 0.5) · 0.5 = 4
    assert tm.origin_xy_m == (10.0, 4.0)


@pytest.mark.parametrize("stype, bits, np_dtype, missing", [
    ("LSB_UNSIGNED_INTEGER", 16, "<u2", "0"),
    ("MSB_UNSIGNED_INTEGER", 8, "u1", "255"),
    ("UNSIGNED_INTEGER", 32, ">u4", "16#FFFFFFFF#"),
    ("PC_INTEGER", 32, "<i4", "-2147483648"),
    ("SUN_INTEGER", 8, "i1", "-128"),
    ("IEEE_REAL", 64, ">f8", "-1.0E32"),
    ("REAL", 32, ">f4", "16#FF7FFFFB#"),
    ("MAC_REAL", 32, ">f4", "-3.4028226550889045E+38"),
    ("PC_REAL", 64, "<f8", "-1.0E32"),
])
def test_pds_sample_types(tmp_path, stype, bits, np_dtype, missing):
    lines = ["PDS_VERSION_ID = PDS3", "RECORD_TYPE = FIXED_LENGTH", f"RECORD_BYTES = {bits // 2}",
             "LABEL_RECORDS = 512", "^IMAGE = 513", "OBJECT = IMAGE", "  LINES = 3", "  LINE_SAMPLES = 4",
             f"  SAMPLE_TYPE = {stype}", f"  SAMPLE_BITS = {bits}", f"  MISSING_CONSTANT = {missing}",
             "END_OBJECT = IMAGE"]
    raw = Z34.astype(np_dtype)
    if missing.startswith("16#"):
        bitsval = int(missing[3:-1], 16)
        if raw.dtype.kind == "f":
            raw.view(f"{np_dtype[0]}u{bits // 8}")[0, 3] = bitsval
        else:
            raw[0, 3] = bitsval
    else:
        raw[0, 3] = np.asarray(float(missing)).astype(np_dtype)
    p = tmp_path / "t.img"
    pds_attached(p, lines, raw.tobytes(), bits // 2, 512)
    tm = load_dem(p, cell_size_m=1.0)  # no IMAGE_MAP_PROJECTION: cell size from the caller
    expected = Z34.copy()
    expected[0, 3] = NAN
    np.testing.assert_array_equal(tm.elevation_m, expected[::-1].astype(np.float32))


def test_pds_kilometre_heights_and_cylindrical_x_correction(tmp_path):
    # SIMPLE CYLINDRICAL tile centred at 60° N: 0.1 km/pix is 100 m in y but 50 m in x on the ground
    lbl = """PDS_VERSION_ID = PDS3
^IMAGE = ("TILE.IMG", 1)
RECORD_BYTES = 16
OBJECT = IMAGE
  LINES = 1
  LINE_SAMPLES = 4
  SAMPLE_TYPE = PC_REAL
  SAMPLE_BITS = 32
  UNIT = KILOMETER
END_OBJECT = IMAGE
OBJECT = IMAGE_MAP_PROJECTION
  MAP_PROJECTION_TYPE = "SIMPLE CYLINDRICAL"
  A_AXIS_RADIUS = 1737.4 <KM>
  CENTER_LATITUDE = 0.0 <DEG>
  MAP_SCALE = 0.1 <KM/PIXEL>
  MINIMUM_LATITUDE = 59.9 <DEG>
  MAXIMUM_LATITUDE = 60.1 <DEG>
  LINE_PROJECTION_OFFSET = 0.5
  SAMPLE_PROJECTION_OFFSET = 1.5
END_OBJECT = IMAGE_MAP_PROJECTION
END"""
    (tmp_path / "tile.lbl").write_text(lbl)
    (tmp_path / "TILE.IMG").write_bytes(np.array([[1.0, 2.0, 3.0, 4.0]], "<f4").tobytes())
    tm = load_dem(tmp_path / "tile.lbl")
    assert tm.cell_size_m == pytest.approx(50.0)
    assert tm.shape == (2, 4)  # the 100 m row split into two 50 m rows
    np.testing.assert_allclose(tm.elevation_m, [[1000, 2000, 3000, 4000]] * 2)  # km -> m
    # x corner (-1.5 - 0.5) · 100 m = -200 m, × cos 60° = -100 m; y corner (0.5 - 1 + 0.5) · 100 = 0
    assert tm.origin_xy_m == pytest.approx((-100.0, 0.0))
    assert "cos(60" in tm.meta["conversion"]


def test_pds_map_resolution_only_needs_a_radius(tmp_path):
    # 4 × 2 pixels at 1000 pix/deg; top edge (LPO + 0.5)/1000 = 60.001°, bottom 59.999°
    def label(radius_line):
        return f"""PDS_VERSION_ID = PDS3
RECORD_BYTES = 16
^IMAGE = "DEG.IMG"
OBJECT = IMAGE
  LINES = 2
  LINE_SAMPLES = 4
  SAMPLE_TYPE = PC_REAL
  SAMPLE_BITS = 32
END_OBJECT = IMAGE
OBJECT = IMAGE_MAP_PROJECTION
  MAP_PROJECTION_TYPE = "SIMPLE CYLINDRICAL"
  {radius_line}
  CENTER_LONGITUDE = 10.0 <DEG>
  MAP_RESOLUTION = 1000 <PIX/DEG>
  LINE_PROJECTION_OFFSET = 60000.5 <PIXEL>
  SAMPLE_PROJECTION_OFFSET = -0.5 <PIXEL>
END_OBJECT = IMAGE_MAP_PROJECTION
END
"""
    (tmp_path / "DEG.IMG").write_bytes(np.array([[1, 2, 3, 4], [5, 6, 7, 8]], "<f4").tobytes())
    lp = tmp_path / "DEG.LBL"
    lp.write_text(label("/* no radius */"))
    with pytest.raises(DEMError) as e:
        load_dem(lp)
    assert_dem_error(e, lp, "degrees", "body_radius_m")
    tm = load_dem(lp, body_radius_m=3389500.0)
    # the same hand computation as the .asc case: dx = 29.57895 m, four square rows
    assert tm.cell_size_m == pytest.approx(29.57895, abs=1e-4)
    np.testing.assert_allclose(tm.elevation_m, [[6, 7, 8, 9], [4, 5, 6, 7], [2, 3, 4, 5], [0, 1, 2, 3]],
                               atol=1e-4)
    assert tm.meta["lon0_deg"] == pytest.approx(10.002) and tm.meta["lat0_deg"] == pytest.approx(60.0)
    lp.write_text(label("A_AXIS_RADIUS = 3389.5 <KM>"))
    assert load_dem(lp).cell_size_m == pytest.approx(29.57895, abs=1e-4)


def test_pds_errors(tmp_path):
    good = ["PDS_VERSION_ID = PDS3", "RECORD_BYTES = 8", "LABEL_RECORDS = 128", "^IMAGE = 129",
            "OBJECT = IMAGE", "  LINES = 3", "  LINE_SAMPLES = 4", "  SAMPLE_TYPE = LSB_INTEGER",
            "  SAMPLE_BITS = 16", "END_OBJECT = IMAGE"]
    data = Z34.astype("<i2").tobytes()

    def check(lines, body, *words, target=None, **kw):
        p = tmp_path / "e.img"
        pds_attached(p, lines, body, 8, 128)
        with pytest.raises(DEMError) as e:
            load_dem(p, **kw)
        assert_dem_error(e, target or p, *words)

    check(good, data[:-3], "truncated", "24 bytes", "21")
    check([x.replace("LINES = 3", "LINES = 3\n  BANDS = 2") for x in good], data * 2, "BANDS = 2")
    check([x.replace("LSB_INTEGER", "VAX_REAL").replace("BITS = 16", "BITS = 32") for x in good],
          data * 2, "VAX_REAL", "not supported")
    check(good, data, "cell_size_m")  # no IMAGE_MAP_PROJECTION and no cell size
    check(good[:-1], data, "END_OBJECT", "IMAGE")  # unterminated OBJECT
    check([x.replace("LINES = 3", "LINES = three") for x in good], data, "LINES", "integer")
    check([x for x in good if "SAMPLE_TYPE" not in x], data, "SAMPLE_TYPE")
    check(good[:4] + ["OBJECT = TABLE", "END_OBJECT = TABLE"], data, "no OBJECT = IMAGE")
    check([x.replace('^IMAGE = 129', '^IMAGE = ("MISSING.IMG", 1)') for x in good], data,
          "MISSING.IMG", "no such file")
    q = tmp_path / "nolabel.img"
    q.write_bytes(b"\x00" * 64)
    with pytest.raises(DEMError) as e:
        load_dem(q)
    assert_dem_error(e, q, "no PDS3 label")


def test_pds_map_scale_units(tmp_path):
    base = ["PDS_VERSION_ID = PDS3", "RECORD_BYTES = 8", "LABEL_RECORDS = 128", "^IMAGE = 129",
            "OBJECT = IMAGE", "  LINES = 3", "  LINE_SAMPLES = 4", "  SAMPLE_TYPE = LSB_INTEGER",
            "  SAMPLE_BITS = 16", "END_OBJECT = IMAGE", "OBJECT = IMAGE_MAP_PROJECTION",
            "  MAP_PROJECTION_TYPE = \"POLAR STEREOGRAPHIC\"", "SCALE", "END_OBJECT = IMAGE_MAP_PROJECTION"]
    p = tmp_path / "u.img"
    for scale, cell in (("MAP_SCALE = 5 <METERS/PIXEL>", 5.0), ("MAP_SCALE = 0.005 <KM/PIXEL>", 5.0),
                        ("MAP_SCALE = 0.24 <km/pix>", 240.0), ("MAP_SCALE = 0.5", 500.0)):
        pds_attached(p, [scale if x == "SCALE" else x for x in base], Z34.astype("<i2").tobytes(), 8, 128)
        assert load_dem(p).cell_size_m == pytest.approx(cell)
    pds_attached(p, ["MAP_SCALE = 5 <FURLONGS/PIXEL>" if x == "SCALE" else x for x in base],
                 Z34.astype("<i2").tobytes(), 8, 128)
    with pytest.raises(DEMError) as e:
        load_dem(p)
    assert_dem_error(e, p, "FURLONGS")


# ------------------------------------------------------------------------- ODL parser
def test_odl_golden():
    label = parse_odl("""PDS_VERSION_ID = PDS3
RECORD_BYTES = 16 /* a comment */
^IMAGE = ("A.IMG", 2049 <BYTES>)
MISSION = {"A", "B
   C"}
/* a comment
   over two lines */
OBJECT = IMAGE
  missing_constant = 16#FF7FFFFB#
  SAMPLE_BIT_MASK = 2#1111#
  MAP_SCALE = 1.0 <METERS/PIXEL>
  START_TIME = 2009-07-13T17:33:17
  NA = 'N/A'
  X = ((1, 2.5e3),
       (-3, .5))
  GROUP = G
    Y = SYMBOL_1
  END_GROUP = G
END_OBJECT = IMAGE
END
\x00\x01 binary "junk after END""")
    assert label["PDS_VERSION_ID"] == "PDS3" and label["RECORD_BYTES"] == 16
    assert label["^IMAGE"] == ("A.IMG", Quantity(2049, "BYTES"))
    assert label["MISSION"] == frozenset({"A", "B C"})
    img = label.find("IMAGE")
    assert img.kind == "OBJECT"
    mc = img["MISSING_CONSTANT"]  # keys are upper-cased
    assert isinstance(mc, BasedInt) and mc == 0xFF7FFFFB and mc.radix == 16
    assert img["SAMPLE_BIT_MASK"] == 15
    assert img["MAP_SCALE"] == Quantity(1.0, "METERS/PIXEL")
    assert img["START_TIME"] == "2009-07-13T17:33:17"
    assert img["NA"] == "N/A"
    assert img["X"] == ((1, 2500.0), (-3, 0.5))
    assert label.find("G").kind == "GROUP" and label.find("G")["Y"] == "SYMBOL_1"
    assert "MISSING_CONSTANT" in img and "NOPE" not in img


@pytest.mark.parametrize("text, words", [
    ('A = "unterminated\nB = 1\nEND', ["unterminated quoted string", "line 1"]),
    ("OBJECT = IMAGE\n A = 1\nEND_OBJECT = TABLE\nEND", ["closes", "IMAGE", "line 3"]),
    ("OBJECT = IMAGE\n A = 1\nEND", ["END at line 3", "IMAGE"]),
    ("OBJECT = IMAGE\n A = 1\n", ["no END_OBJECT"]),
    ("A = (1, 2\nB = 3\nEND", ["A"]),
    ("A 1\nEND", ["expected '='", "line 1"]),
    ("A =\n", ["missing"]),
    ("END_GROUP = X\nEND", ["END_GROUP", "none"]),
    ("A = 99#1#\nEND", ["radix"]),
])
def test_odl_errors(text, words):
    with pytest.raises(OdlError) as e:
        parse_odl(text)
    for w in words:
        assert w in str(e.value), str(e.value)


_KEYWORDS = st.from_regex(r"\^?[A-Z][A-Z0-9_]{0,12}", fullmatch=True).filter(
    lambda k: k not in ("END", "OBJECT", "GROUP", "END_OBJECT", "END_GROUP"))
_SYMBOL = st.from_regex(r"[A-Z][A-Z0-9_]{0,10}", fullmatch=True)
_WORDS = st.lists(st.from_regex(r"[A-Za-z0-9.:\-]{1,8}", fullmatch=True),
                  min_size=1, max_size=4).map(" ".join)
_SCALAR = st.one_of(
    st.integers(-10**12, 10**12),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.builds(BasedInt, st.integers(0, 2**32 - 1), st.sampled_from([2, 8, 16])),
    _SYMBOL, _WORDS)
_UNITS = st.sampled_from(["KM", "METERS/PIXEL", "PIX/DEG", "BYTES", "km/pix", "DEG"])
_NUMBER = st.one_of(st.integers(-10**6, 10**6), st.floats(-1e9, 1e9, allow_nan=False))
_VALUE = st.one_of(
    _SCALAR,
    st.builds(Quantity, _NUMBER, _UNITS),
    st.lists(_SCALAR, min_size=1, max_size=4).map(tuple),
    st.lists(st.lists(_NUMBER, min_size=1, max_size=3).map(tuple), min_size=1, max_size=3).map(tuple),
    st.frozensets(_SYMBOL, min_size=1, max_size=3))


def _blocks(depth):
    items = st.lists(st.tuples(_KEYWORDS, _VALUE), max_size=5)
    if depth == 0:
        return items
    child = st.builds(lambda kind, name, its: (name, OdlBlock(kind, name, its)),
                      st.sampled_from(["OBJECT", "GROUP"]), _SYMBOL, _blocks(depth - 1))
    return st.lists(st.one_of(st.tuples(_KEYWORDS, _VALUE), child), max_size=5)


@settings(max_examples=150, deadline=None)
@given(items=_blocks(2), seed=st.integers(0, 2**32 - 1))
def test_odl_round_trip_property(items, seed):
    import random
    root = OdlBlock("ROOT", "", items)
    text = odl_text(root, rng=random.Random(seed))
    assert parse_odl(text) == root
