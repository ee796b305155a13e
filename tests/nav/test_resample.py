"""Grid resampling (nav._resample): golden cases, a slow reference, scipy and invariants."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nav import TerrainMap
from nav._resample import resample_grid, resample_grid_xy

from _ref_dem import ref_resample  # tests/nav is on sys.path (rootdir-less test dirs)

NAN = np.nan


def grids(max_side=7, nan_fraction=True):
    """Small float32 grids of moderate values, optionally with NaN holes."""
    shape = st.tuples(st.integers(1, max_side), st.integers(1, max_side))
    vals = st.floats(-100, 100, allow_nan=False, width=32)

    @st.composite
    def build(draw):
        z = draw(hnp.arrays(np.float32, draw(shape), elements=vals))
        if nan_fraction and draw(st.booleans()):
            mask = draw(hnp.arrays(np.bool_, z.shape))
            z = np.where(mask, np.float32(NAN), z)
        return z

    return build()


cell_sizes = st.sampled_from([0.1, 0.25, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0])


# ------------------------------------------------------------------------- golden
def test_golden_block_mean_factor_2():
    z = np.array([[1, 2, 3, 4],
                  [5, 6, 7, 8],
                  [9, 10, 11, 12],
                  [13, 14, 15, 16]], np.float32)
    out = resample_grid(z, 1.0, 2.0)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[3.5, 5.5], [11.5, 13.5]])


def test_golden_nan_aware_mean():
    z = np.array([[NAN, 2, NAN, NAN],
                  [4, NAN, NAN, NAN],
                  [1, 1, 1, 1],
                  [1, 1, 1, 5]], np.float32)
    out = resample_grid(z, 1.0, 2.0)
    np.testing.assert_array_equal(out[0], [3.0, NAN])  # (2 + 4) / 2; nothing known
    np.testing.assert_array_equal(out[1], [1.0, 2.0])


def test_golden_non_integer_coarsening():
    # 3 cells of 1 m -> round(3 / 2) = 2 cells of 2 m: [0, 2) and [2, 4) (only [2, 3) exists)
    z = np.array([[1.0, 3.0, 10.0]], np.float32)
    out = resample_grid(z, 1.0, 2.0)
    # rows: round(1 / 2) = 1 (halves round up); the row covers [0, 2) of which [0, 1) exists
    np.testing.assert_allclose(out, [[2.0, 10.0]])
    # 1.5 m cells over 3 m: [0, 1.5) = 1 + 0.5 * 3 ; [1.5, 3) = 0.5 * 3 + 10
    out = resample_grid(np.array([[1.0, 3.0, 10.0]], np.float32), 1.0, 1.5)
    np.testing.assert_allclose(out, [[(1 + 0.5 * 3) / 1.5, (0.5 * 3 + 10) / 1.5]], rtol=1e-6)


def test_golden_bilinear_refinement_extrapolates_at_edges():
    z = np.array([[0.0, 1.0],
                  [2.0, 3.0]], np.float32)  # z = (x - 0.5) + 2 (y - 0.5) at the centres
    out = resample_grid(z, 1.0, 0.5)
    c = np.array([0.25, 0.75, 1.25, 1.75])
    expected = (c[None, :] - 0.5) + 2 * (c[:, None] - 0.5)
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_golden_refinement_keeps_hole_shape():
    z = np.array([[0.0, 1.0, 2.0],
                  [3.0, 4.0, 5.0],
                  [NAN, 7.0, 8.0]], np.float32)  # north-west cell unknown
    out = resample_grid(z, 1.0, 0.5)
    expected_nan = np.zeros((6, 6), bool)
    expected_nan[4:, :2] = True  # exactly the unknown cell's square
    np.testing.assert_array_equal(np.isnan(out), expected_nan)
    # fine cells whose stencil touches the hole take the value of the cell they lie in
    assert out[3, 1] == 3.0 and out[4, 2] == 7.0 and out[3, 2] == 4.0
    # elsewhere: bilinear in x + 3 y (extrapolated at the rim)
    assert out[0, 5] == pytest.approx((2.75 - 0.5) + 3 * (0.25 - 0.5))
    assert out[2, 3] == pytest.approx((1.75 - 0.5) + 3 * (1.25 - 0.5))


def test_equal_cell_size_is_a_copy():
    z = np.arange(6, dtype=np.float32).reshape(2, 3)
    out = resample_grid(z, 0.5, 0.5)
    np.testing.assert_array_equal(out, z)
    assert out is not z


# ---------------------------------------------------------------- the slow reference
@settings(max_examples=150, deadline=None)
@given(z=grids(), d=cell_sizes, to=cell_sizes)
def test_matches_reference_square(z, d, to):
    assume(math.floor(z.shape[0] * d / to + 0.5) >= 1 and math.floor(z.shape[1] * d / to + 0.5) >= 1)
    got = resample_grid(z, d, to)
    want = ref_resample(z, d, d, to)
    assert got.shape == want.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-3)


@settings(max_examples=100, deadline=None)
@given(z=grids(), dx=cell_sizes, dy=cell_sizes, to=cell_sizes)
def test_matches_reference_anisotropic(z, dx, dy, to):
    assume(math.floor(z.shape[0] * dy / to + 0.5) >= 1 and math.floor(z.shape[1] * dx / to + 0.5) >= 1)
    got = resample_grid_xy(z, dx, dy, to)
    want = ref_resample(z, dx, dy, to)
    assert got.shape == want.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-3)


# ----------------------------------------------------------------------- scipy oracle
@settings(max_examples=60, deadline=None)
@given(z=grids(nan_fraction=False), to=st.sampled_from([0.2, 0.3, 0.5, 0.7, 0.9]))
def test_refinement_is_scipy_linear_interpolation(z, to):
    interp = pytest.importorskip("scipy.interpolate")
    assume(z.shape[0] >= 2 and z.shape[1] >= 2)
    got = resample_grid(z, 1.0, to)
    rc = (np.arange(z.shape[0]) + 0.5, np.arange(z.shape[1]) + 0.5)
    f = interp.RegularGridInterpolator(rc, z.astype(np.float64), method="linear",
                                       bounds_error=False, fill_value=None)  # extrapolates
    yy = (np.arange(got.shape[0]) + 0.5) * to
    xx = (np.arange(got.shape[1]) + 0.5) * to
    pts = np.stack(np.meshgrid(yy, xx, indexing="ij"), axis=-1)
    np.testing.assert_allclose(got, f(pts), rtol=1e-5, atol=1e-3)


# ------------------------------------------------------------------------ invariants
@settings(max_examples=80, deadline=None)
@given(k=st.integers(2, 4), nr=st.integers(1, 4), nc=st.integers(1, 4), data=st.data())
def test_integer_downsampling_preserves_mean(k, nr, nc, data):
    z = data.draw(hnp.arrays(np.float32, (nr * k, nc * k),
                             elements=st.floats(-1000, 1000, allow_nan=False, width=32)))
    out = resample_grid(z, 0.5, 0.5 * k)
    assert out.shape == (nr, nc)
    assert float(out.astype(np.float64).mean()) == pytest.approx(float(z.astype(np.float64).mean()),
                                                                  rel=1e-5, abs=1e-3)
    blocks = z.astype(np.float64).reshape(nr, k, nc, k).mean(axis=(1, 3))
    np.testing.assert_allclose(out, blocks, rtol=1e-5, atol=1e-3)


@settings(max_examples=80, deadline=None)
@given(z=grids(), d=cell_sizes, to=cell_sizes, h=st.floats(-500, 500, width=32))
def test_constant_grids_stay_constant(z, d, to, h):
    assume(math.floor(z.shape[0] * d / to + 0.5) >= 1 and math.floor(z.shape[1] * d / to + 0.5) >= 1)
    const = np.where(np.isnan(z), np.float32(NAN), np.float32(h))
    out = resample_grid(const, d, to)
    known = out[~np.isnan(out)]
    np.testing.assert_allclose(known, h, rtol=1e-6, atol=1e-4)
    if not np.isnan(const).any():
        assert not np.isnan(out).any()


@settings(max_examples=80, deadline=None)
@given(rows=st.integers(1, 8), cols=st.integers(1, 8), d=cell_sizes, to=cell_sizes,
       a=st.floats(-3, 3), b=st.floats(-3, 3), c=st.floats(-10, 10))
def test_planes_are_reproduced(rows, cols, d, to, a, b, c):
    assume(math.floor(rows * d / to + 0.5) >= 1 and math.floor(cols * d / to + 0.5) >= 1)
    xc = (np.arange(cols) + 0.5) * d
    yc = (np.arange(rows) + 0.5) * d
    z = (a * xc[None, :] + b * yc[:, None] + c).astype(np.float64)
    assume(rows >= 2 or b == 0)
    assume(cols >= 2 or a == 0)
    out = resample_grid(z.astype(np.float32), d, to)
    X = (np.arange(out.shape[1]) + 0.5) * to
    Y = (np.arange(out.shape[0]) + 0.5) * to
    plane = a * X[None, :] + b * Y[:, None] + c
    if to <= d:  # refinement reproduces the plane everywhere (linear extrapolation at the rim)
        np.testing.assert_allclose(out, plane, rtol=1e-5, atol=2e-4 * (1 + abs(a) + abs(b)) * 10)
    else:  # integer coarsening: new cells lying wholly inside the input average to the plane
        # (a non-integer factor covers input cells asymmetrically, so it need not)
        k = to / d
        if abs(k - round(k)) > 1e-9:
            return
        inside_r = (np.arange(out.shape[0]) + 1) * to <= rows * d + 1e-9
        inside_c = (np.arange(out.shape[1]) + 1) * to <= cols * d + 1e-9
        sel = np.ix_(inside_r, inside_c)
        np.testing.assert_allclose(out[sel], plane[sel], rtol=1e-5, atol=2e-3)


@settings(max_examples=60, deadline=None)
@given(z=grids(), d=cell_sizes, to=cell_sizes)
def test_nan_rules(z, d, to):
    assume(math.floor(z.shape[0] * d / to + 0.5) >= 1 and math.floor(z.shape[1] * d / to + 0.5) >= 1)
    out = resample_grid(z, d, to)
    rows, cols = out.shape
    for i in range(rows):
        for j in range(cols):
            if to > d:  # coarser: NaN iff nothing covered is known
                r0, r1 = int(math.floor(i * to / d + 1e-9)), int(math.ceil((i + 1) * to / d - 1e-9))
                c0, c1 = int(math.floor(j * to / d + 1e-9)), int(math.ceil((j + 1) * to / d - 1e-9))
                covered = z[r0:min(r1, z.shape[0]), c0:min(c1, z.shape[1])]
                assert math.isnan(out[i, j]) == bool(np.isnan(covered).all())
            else:  # finer (or equal): NaN iff the input cell holding the centre is NaN
                r = min(int(math.floor((i + 0.5) * to / d)), z.shape[0] - 1)
                c = min(int(math.floor((j + 0.5) * to / d)), z.shape[1] - 1)
                assert math.isnan(out[i, j]) == math.isnan(z[r, c])


# ------------------------------------------------------------ shape, origin, errors
@pytest.mark.parametrize("n, d, to, expected", [
    (10, 1.0, 3.0, 3),    # 3.33 -> 3
    (10, 1.0, 4.0, 3),    # 2.5 -> 3 (halves round up)
    (3, 0.1, 0.2, 2),     # 1.5 -> 2
    (7, 1.0, 0.3, 23),    # 23.33 -> 23
    (10, 0.3, 0.1, 30),   # 29.999999999999996 -> 30
])
def test_output_shape_is_rounded_extent(n, d, to, expected):
    out = resample_grid(np.zeros((n, n), np.float32), d, to)
    assert out.shape == (expected, expected)


def test_terrain_map_resampled_keeps_origin():
    tm = TerrainMap(np.arange(20, dtype=np.float32).reshape(4, 5), 0.5, origin_xy_m=(10.0, -3.0))
    coarse = tm.resampled(1.0)
    assert coarse.origin_xy_m == (10.0, -3.0)
    assert coarse.shape == (2, 3)
    assert coarse.cell_size_m == 1.0
    fine = tm.resampled(0.25)
    assert fine.shape == (8, 10)
    assert fine.origin_xy_m == (10.0, -3.0)


def test_integer_input_is_accepted():
    out = resample_grid(np.array([[1, 3], [5, 7]], np.int16), 1.0, 2.0)
    assert out.dtype == np.float32 and out[0, 0] == 4.0


@pytest.mark.parametrize("args, match", [
    ((np.zeros((2, 2, 2)), 1.0, 2.0), "z must be 2-D"),
    ((np.zeros((0, 3)), 1.0, 2.0), "must not be empty"),
    ((np.zeros((2, 2), complex), 1.0, 2.0), "real numeric dtype"),
    ((np.zeros((2, 2)), 0.0, 2.0), r"from_dx_m must be a finite number > 0, got 0\.0"),
    ((np.zeros((2, 2)), 1.0, float("nan")), "to_cell_m must be a finite number > 0"),
    ((np.zeros((2, 2)), 1.0, "x"), "to_cell_m must be a finite number > 0, got 'x'"),
    ((np.zeros((2, 2)), 1.0, 5.0), "leaves no cells"),
    ((np.zeros((2, 2)), 1.0, 1e-5), "more than"),
])
def test_errors_name_parameter_and_rule(args, match):
    with pytest.raises(ValueError, match=match):
        resample_grid(*args)
