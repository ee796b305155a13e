"""TerrainMap: the cell-centre convention, written once, checked against hand-computed cases."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from nav import TerrainMap


def make(rows=4, cols=5, cell=0.5, origin=(10.0, -2.0)):
    z = np.arange(rows * cols, dtype=np.float64).reshape(rows, cols)
    return TerrainMap(z, cell, origin)


def test_cell_centres_hand_computed():
    tm = make()
    # centre of (row 0, col 0) is half a cell from the lower-left corner
    np.testing.assert_allclose(tm.cell_to_world((0, 0)), (10.25, -1.75))
    np.testing.assert_allclose(tm.cell_to_world((3, 4)), (10.0 + 4.5 * 0.5, -2.0 + 3.5 * 0.5))
    assert tuple(tm.world_to_cell((10.25, -1.75))) == (0, 0)
    # points on the lower/left edge belong to the cell; the upper/right edge to the next one
    assert tuple(tm.world_to_cell((10.0, -2.0))) == (0, 0)
    assert tuple(tm.world_to_cell((10.5, -1.5))) == (1, 1)
    assert tm.extent_m == (10.0, 12.5, -2.0, 0.0)
    assert tm.contains((12.49, -0.01)) and not tm.contains((12.5, -1.0)) and not tm.contains((9.99, -1.0))


@given(st.integers(0, 3), st.integers(0, 4))
def test_world_cell_round_trip(r, c):
    tm = make()
    assert tuple(tm.world_to_cell(tm.cell_to_world((r, c)))) == (r, c)
    np.testing.assert_allclose(tm.world_to_grid(tm.cell_to_world((r, c))), (r, c), atol=1e-12)


def test_vectorised_shapes():
    tm = make()
    rc = np.array([[0, 0], [1, 2], [3, 4]])
    xy = tm.cell_to_world(rc)
    assert xy.shape == (3, 2)
    np.testing.assert_array_equal(tm.world_to_cell(xy), rc)
    assert tm.in_bounds(rc).all()


def test_height_at_bilinear():
    z = np.array([[0.0, 1.0], [2.0, 3.0]])
    tm = TerrainMap(z, 1.0)
    assert tm.height_at((0.5, 0.5)) == pytest.approx(0.0)       # centre of (0,0)
    assert tm.height_at((1.0, 1.0)) == pytest.approx(1.5)       # middle of the four centres
    assert tm.height_at((1.5, 0.5)) == pytest.approx(1.0)       # centre of (0,1)
    assert np.isnan(tm.height_at((5.0, 5.0)))


def test_storage_and_validation():
    tm = make()
    assert tm.elevation_m.dtype == np.float32 and tm.elevation_m.flags.c_contiguous
    with pytest.raises(ValueError, match="must be 2-D, got shape"):
        TerrainMap(np.zeros(5), 1.0)
    with pytest.raises(ValueError, match="cell_size_m must be a finite number > 0, got -1"):
        TerrainMap(np.zeros((2, 2)), -1)
    with pytest.raises(ValueError, match="infinite value at row 1, col 0"):
        TerrainMap(np.array([[0.0, 0.0], [np.inf, 0.0]]), 1.0)
    nan = TerrainMap(np.array([[np.nan, 1.0]]), 1.0)
    assert nan.known_fraction == 0.5
