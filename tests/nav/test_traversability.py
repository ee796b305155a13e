"""nav.traversability against a slow per-cell reference, golden maps drawn here, and the wrapper's rules."""
from __future__ import annotations

import importlib
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import nav
from nav import TerrainMap, load_rover, traversability
from nav.costmap import LETHAL_INFLATED, LETHAL_ROUGHNESS, LETHAL_SLOPE, LETHAL_STEP, LETHAL_UNKNOWN

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _ref_traversability import ref_cell, ref_clearance, ref_costmap, ref_inflate  # noqa: E402

trav_mod = importlib.import_module("nav.traversability")   # the module (nav.traversability is the function)
ROVER = load_rover("osr")
ROOT = Path(__file__).resolve().parents[2]


def plane(rows, cols, cell_m, slope_deg, azimuth_deg=0.0, offset_m=0.0):
    """Heights of a plane rising at ``slope_deg`` toward ``azimuth_deg`` (0 = +x, 90 = +y)."""
    g = math.tan(math.radians(slope_deg))
    ax, ay = g * math.cos(math.radians(azimuth_deg)), g * math.sin(math.radians(azimuth_deg))
    yy, xx = np.mgrid[0:rows, 0:cols] * cell_m
    return (offset_m + ax * xx + ay * yy).astype(np.float32)


class knobs:
    """Temporarily set the wrapper's internal stripe / restart / block sizes (exercise every path)."""

    def __init__(self, **values):
        self.values = values

    def __enter__(self):
        self.saved = {k: getattr(trav_mod, k) for k in self.values}
        for k, v in self.values.items():
            setattr(trav_mod, k, v)

    def __exit__(self, *exc):
        for k, v in self.saved.items():
            setattr(trav_mod, k, v)


# ------------------------------------------------------------------ reference oracle
def near_threshold(slope, step, rough, limits, tol=1e-4):
    """Cells whose reference layers sit so close to a limit that float32 rounding may flip them."""
    with np.errstate(invalid="ignore"):
        return ((np.abs(slope - limits["max_slope_deg"]) < tol * limits["max_slope_deg"])
                | (np.abs(step - limits["max_step_m"]) < tol * limits["max_step_m"])
                | (np.abs(rough - limits["max_roughness_m"]) < tol * limits["max_roughness_m"]))


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), rows=st.integers(1, 22), cols=st.integers(1, 22),
       cell_m=st.sampled_from([0.03, 0.05, 0.1]), nan_frac=st.sampled_from([0.0, 0.0, 0.05, 0.3, 0.7]),
       offset_m=st.sampled_from([0.0, -4000.0, 2500.0]), relief=st.sampled_from([0.002, 0.03, 0.2]),
       footprint_m=st.sampled_from([0.1, 0.3, 0.6, 1.0]),
       step_window_m=st.sampled_from([0.0, 0.1, 0.2, 0.45]),
       inflation_radius_m=st.sampled_from([0.0, 0.01, 0.12, 0.3]),
       unknown=st.sampled_from(["lethal", "penalty"]), min_known=st.sampled_from([0.5, 0.2, 1.0]),
       stripe=st.sampled_from([1, 2, 5, 1024]), restart=st.sampled_from([1, 3, 0]),
       block=st.sampled_from([1, 2, 64]))
def test_matches_reference(seed, rows, cols, cell_m, nan_frac, offset_m, relief, footprint_m,
                           step_window_m, inflation_radius_m, unknown, min_known, stripe, restart, block):
    rng = np.random.default_rng(seed)
    z = (offset_m + relief * rng.normal(size=(rows, cols))
         + rng.normal() * 0.3 * cell_m * np.arange(cols)[None, :]
         + rng.normal() * 0.3 * cell_m * np.arange(rows)[:, None]).astype(np.float32)
    z[rng.random(z.shape) < nan_frac] = np.nan
    with knobs(_STRIPE_COLS=stripe, _RESTART_ROWS=restart, _INFLATE_BLOCK_ROWS=block):
        cm = traversability(TerrainMap(z, cell_m), ROVER, footprint_m=footprint_m,
                            step_window_m=step_window_m, inflation_radius_m=inflation_radius_m,
                            unknown=unknown, min_known_fraction=min_known)
    slope, step, rough, cost, reason = ref_costmap(z, cell_m, cm.limits)
    for name, ours, ref, tol in (("slope_deg", cm.slope_deg, slope, 1e-4), ("step_m", cm.step_m, step, 1e-5),
                                 ("roughness_m", cm.roughness_m, rough, 1e-5)):
        assert ours.dtype == np.float32 and ours.shape == z.shape
        np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref), err_msg=f"{name} NaN mask")
        np.testing.assert_allclose(ours[~np.isnan(ref)], ref[~np.isnan(ref)], rtol=1e-5, atol=tol, err_msg=name)
    if near_threshold(slope, step, rough, cm.limits).any():
        return                                  # a rounding-level tie: flags are not determined
    np.testing.assert_array_equal(cm.reason, reason)
    np.testing.assert_array_equal(np.isinf(cm.cost), np.isinf(cost))
    fin = np.isfinite(cost)
    np.testing.assert_allclose(cm.cost[fin], cost[fin], rtol=1e-5)
    assert (cm.cost[fin] >= 1.0).all()
    assert ((cm.reason != 0) == np.isinf(cm.cost)).all()


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), rows=st.integers(1, 40), cols=st.integers(1, 90),
       density=st.sampled_from([0.002, 0.02, 0.2]), radius=st.floats(0.0, 12.0),
       block=st.integers(1, 20))
def test_inflation_matches_brute_force_disks(seed, rows, cols, density, radius, block):
    kern = trav_mod._kernels()
    rng = np.random.default_rng(seed)
    reason = np.where(rng.random((rows, cols)) < density, np.uint8(LETHAL_STEP), np.uint8(0))
    cost = np.ones((rows, cols), np.float32)
    cost[reason != 0] = np.inf
    expected = ref_inflate(reason, radius)
    radius2 = trav_mod._radius2_cells(radius, 1.0)
    assert kern._inflate_lethal(reason, cost, radius2, LETHAL_INFLATED, block) == kern.OK
    np.testing.assert_array_equal(reason == LETHAL_INFLATED, expected)
    np.testing.assert_array_equal(np.isinf(cost), expected | (reason == LETHAL_STEP))


def test_inflation_radius_far_beyond_the_map_covers_every_cell():
    """A radius of 10^6 cells (radius² 10^12): reach is clipped to the map width, exactly."""
    kern = trav_mod._kernels()
    reason = np.zeros((7, 9), np.uint8)
    reason[6, 0] = LETHAL_STEP
    cost = np.ones((7, 9), np.float32)
    cost[6, 0] = np.inf
    assert kern._inflate_lethal(reason, cost, 10 ** 12, LETHAL_INFLATED, 3) == kern.OK
    expected = np.full((7, 9), LETHAL_INFLATED, np.uint8)
    expected[6, 0] = LETHAL_STEP
    np.testing.assert_array_equal(reason, expected)
    assert np.isinf(cost).all()


@pytest.mark.parametrize("step_window_m, stripe", [(0.41, 5), (0.41, 1024), (0.95, 7), (0.07, 3)])
def test_wide_step_windows_match_brute_force(step_window_m, stripe):
    """Step windows wider than a stripe (and one of 3 cells): every horizontal doubling pass is clipped."""
    from _ref_traversability import ref_layers
    rng = np.random.default_rng(11)
    z = (0.2 * rng.normal(size=(23, 37)) - 4000.0).astype(np.float32)
    z[rng.random(z.shape) < 0.1] = np.nan
    z[:, 20] = np.nan                           # an unknown column: windows with no known cell
    with knobs(_STRIPE_COLS=stripe):
        cm = traversability(TerrainMap(z, 0.02), ROVER, step_window_m=step_window_m, footprint_m=0.1)
    _, step, _ = ref_layers(z, 0.02, cm.limits["footprint_cells"], cm.limits["step_window_cells"])
    np.testing.assert_array_equal(np.isnan(cm.step_m), np.isnan(step))
    np.testing.assert_allclose(cm.step_m[~np.isnan(step)], step[~np.isnan(step)], atol=1e-5)


# ------------------------------------------------------------------------ golden maps
def test_plane_at_10_degrees_has_slope_10_and_no_roughness():
    cell = 0.05
    z = plane(40, 50, cell, 10.0, azimuth_deg=30.0)
    cm = traversability(TerrainMap(z, cell), ROVER)
    np.testing.assert_allclose(cm.slope_deg, 10.0, atol=1e-4)        # edges too: clipped windows
    assert np.nanmax(cm.roughness_m) < 1e-5
    g = math.tan(math.radians(10.0))
    ks = cm.limits["step_window_cells"]
    rise = (ks - 1) * cell * g * (math.cos(math.radians(30.0)) + math.sin(math.radians(30.0)))
    h = ks // 2
    np.testing.assert_allclose(cm.step_m[h:-h, h:-h], rise, atol=1e-5)
    assert (cm.reason == 0).all()
    # cost = 1 + 3 (10/20)² + 3 (step/0.15)², roughness 0
    np.testing.assert_allclose(cm.cost[h:-h, h:-h], 1 + 3 * 0.25 + 3 * (rise / 0.15) ** 2, rtol=1e-5)


def test_large_offset_gives_the_same_layers():
    """Mars heights (−4000 m) must not cost precision: the same terrain, shifted, same layers.

    Heights are multiples of 2^-12 m so that ±4000 m is exact in float32; any
    difference left is our arithmetic (cancellation), not the input's rounding.
    """
    cell = 0.05
    z = plane(40, 50, cell, 10.0, azimuth_deg=30.0)
    z += (0.01 * np.random.default_rng(3).normal(size=z.shape)).astype(np.float32)
    z = (np.round(z * 4096.0) / 4096.0).astype(np.float32)
    a = traversability(TerrainMap(z, cell), ROVER)
    for offset in (4000.0, -4000.0):
        zo = z + np.float32(offset)
        np.testing.assert_array_equal(zo - np.float32(offset), z)          # exact shift
        other = traversability(TerrainMap(zo, cell), ROVER)
        np.testing.assert_allclose(other.slope_deg, a.slope_deg, atol=1e-4)
        np.testing.assert_allclose(other.roughness_m, a.roughness_m, atol=1e-5)
        np.testing.assert_allclose(other.step_m, a.step_m, atol=1e-6)
        np.testing.assert_array_equal(other.reason, a.reason)
        np.testing.assert_allclose(other.cost, a.cost, rtol=1e-5)


def test_steep_high_relief_map_across_stripes_matches_reference_cells():
    """300 m of relief and −4000 m: no cancellation, also across stripe boundaries."""
    cell, rows, cols = 0.5, 60, 1300
    rng = np.random.default_rng(5)
    z = plane(rows, cols, cell, 25.0, azimuth_deg=10.0, offset_m=-4000.0)
    z += (0.02 * rng.normal(size=z.shape)).astype(np.float32)
    cm = traversability(TerrainMap(z, cell), ROVER, footprint_m=3.0, max_slope_deg=60.0)
    k = cm.limits["footprint_cells"]
    for r, c in [(0, 0), (30, 3), (30, 1023), (30, 1024), (31, 1025), (59, 1299), (17, 640)]:
        slope, rough = ref_cell(z, cell, k, r, c)
        assert cm.slope_deg[r, c] == pytest.approx(slope, abs=1e-3)
        assert cm.roughness_m[r, c] == pytest.approx(rough, abs=1e-4)


ROCK_PICTURE = """
    . . . . . . . . . . .
    . . . . . . . . . . .
    . . . . I I I . . . .
    . . . I I I I I . . .
    . . I I S S S I I . .
    . . I I S S S I I . .
    . . I I S S S I I . .
    . . . I I I I I . . .
    . . . . I I I . . . .
    . . . . . . . . . . .
    . . . . . . . . . . .
"""


def test_single_rock_is_a_step_inflated_by_a_disk():
    z = np.zeros((11, 11), np.float32)
    z[5, 5] = 0.5                               # a 0.5 m rock on flat ground; max_step_m 0.15
    cm = traversability(TerrainMap(z, 0.1), ROVER, footprint_m=0.3, step_window_m=0.3,
                        inflation_radius_m=0.2, max_slope_deg=89.0, max_roughness_m=2.0)
    assert cm.limits["step_window_cells"] == 3 and cm.limits["inflation_radius_cells"] == pytest.approx(2.0)
    code = {".": 0, "S": LETHAL_STEP, "I": LETHAL_INFLATED}
    expected = np.array([[code[ch] for ch in line.split()] for line in ROCK_PICTURE.strip().splitlines()],
                        dtype=np.uint8)
    np.testing.assert_array_equal(cm.reason, expected)
    np.testing.assert_array_equal(np.isinf(cm.cost), expected != 0)
    assert cm.step_m[5, 5] == pytest.approx(0.5)


def test_single_rock_inflation_radius_is_euclidean():
    z = np.zeros((31, 33), np.float32)
    z[15, 16] = 0.4
    cm = traversability(TerrainMap(z, 0.1), ROVER, footprint_m=0.3, step_window_m=0.3,
                        inflation_radius_m=0.55, max_slope_deg=89.0, max_roughness_m=2.0)
    rr, cc = np.mgrid[0:31, 0:33]
    # distance from each cell centre to the nearest cell of the 3x3 step square, in cells
    dr = np.maximum(np.abs(rr - 15) - 1, 0)
    dc = np.maximum(np.abs(cc - 16) - 1, 0)
    square = (np.abs(rr - 15) <= 1) & (np.abs(cc - 16) <= 1)
    inflated = (dr ** 2 + dc ** 2 <= 5.5 ** 2) & ~square
    np.testing.assert_array_equal(cm.reason == LETHAL_STEP, square)
    np.testing.assert_array_equal(cm.reason == LETHAL_INFLATED, inflated)


def test_cost_grows_with_the_layers_and_uses_the_weights():
    cell, theta = 0.05, 8.0
    z = plane(30, 30, cell, theta)              # along +x only
    cm = traversability(TerrainMap(z, cell), ROVER, slope_weight=2.0, step_weight=1.0, roughness_weight=0.5)
    ks = cm.limits["step_window_cells"]
    step = (ks - 1) * cell * math.tan(math.radians(theta))
    np.testing.assert_allclose(cm.cost[10:20, 10:20], 1 + 2 * (theta / 20) ** 2 + 1 * (step / 0.15) ** 2,
                               rtol=1e-5)
    flat = traversability(TerrainMap(np.zeros((30, 30), np.float32), cell), ROVER)
    assert (flat.cost == 1.0).all()


# -------------------------------------------------------------------- unknown cells
def holey_map():
    z = np.zeros((20, 20), np.float32)
    z[8:12, 8:12] = np.nan
    return TerrainMap(z, 0.05)


def test_unknown_lethal_policy_marks_and_inflates_holes():
    cm = traversability(holey_map(), ROVER, unknown="lethal", inflation_radius_m=0.1)
    hole = np.zeros((20, 20), bool)
    hole[8:12, 8:12] = True
    assert (cm.reason[hole] & LETHAL_UNKNOWN).all() and np.isinf(cm.cost[hole]).all()
    rr, cc = np.mgrid[0:20, 0:20]
    near = (np.maximum(np.abs(rr - 9.5) - 1.5, 0) ** 2 + np.maximum(np.abs(cc - 9.5) - 1.5, 0) ** 2 <= 4.0)
    np.testing.assert_array_equal(cm.reason == LETHAL_INFLATED, near & ~hole)    # a 2-cell Euclidean rim
    assert (cm.reason[:5] == 0).all()
    assert "unknown" in cm.explain((9, 9))


def test_unknown_penalty_policy_charges_unknown_cost():
    cm = traversability(holey_map(), ROVER, unknown="penalty", unknown_cost=7.0)
    hole = np.zeros((20, 20), bool)
    hole[8:12, 8:12] = True
    assert (cm.cost[hole] == 7.0).all() and (cm.reason == 0).all()
    assert (cm.cost[~hole] == 1.0).all()
    assert cm.explain((9, 9)).startswith("traversable (cost 7.00")


def test_known_cell_with_a_mostly_unknown_window_is_unknown():
    z = np.full((9, 9), np.nan, np.float32)
    z[4, 2:7] = 0.0                             # a single known row: collinear, < 50 % known
    cm = traversability(TerrainMap(z, 0.1), ROVER, footprint_m=0.3)
    assert np.isnan(cm.slope_deg[4, 4]) and np.isnan(cm.roughness_m[4, 4])
    assert cm.step_m[4, 4] == 0.0               # the step still sees the known cells
    assert cm.reason[4, 4] & LETHAL_UNKNOWN
    relaxed = traversability(TerrainMap(z, 0.1), ROVER, footprint_m=0.3, min_known_fraction=0.2)
    assert np.isnan(relaxed.slope_deg[4, 4])    # still one line: no plane


# ------------------------------------------------------------------------- explain
def test_explain_names_the_layer_that_made_a_cell_lethal():
    cell = 0.05
    z = np.zeros((40, 80), np.float32)
    z[:, 40:] = plane(40, 40, cell, 35.0)       # a steep ramp on the right
    z[10, 10] = 0.4                             # a rock
    rng = np.random.default_rng(0)
    z[25:35, 5:20] += (0.2 * rng.random((10, 15))).astype(np.float32)   # rubble
    cm = traversability(TerrainMap(z, cell), ROVER, inflation_radius_m=0.1)
    assert "slope" in cm.explain((20, 70)) and "max_slope_deg 20" in cm.explain((20, 70))
    assert cm.explain((10, 10)).startswith("step 0.40 m > max_step_m 0.15")
    rough_cells = np.argwhere(cm.reason & LETHAL_ROUGHNESS)
    assert len(rough_cells) and "roughness" in cm.explain(rough_cells[0])
    infl = np.argwhere(cm.reason == LETHAL_INFLATED)
    assert len(infl) and "within the rover radius 0.1 m of cell" in cm.explain(infl[0])
    assert cm.explain((2, 30)).startswith("traversable (cost 1.00")
    assert cm.reason[20, 70] & LETHAL_SLOPE


# ------------------------------------------------------------------------- wrapper
def test_limits_record_what_was_used():
    cm = traversability(TerrainMap(np.zeros((5, 5), np.float32), 0.03), ROVER)
    lim = cm.limits
    assert lim["footprint_m"] == 0.6 and lim["footprint_cells"] == 21
    assert lim["step_window_m"] == pytest.approx(0.15) and lim["step_window_cells"] == 5   # wheel diameter
    assert lim["inflation_radius_m"] == pytest.approx(0.25)                                # half the width
    assert lim["unknown"] == "lethal" and lim["max_slope_deg"] == 20.0
    over = traversability(TerrainMap(np.zeros((5, 5), np.float32), 0.03), ROVER, max_slope_deg=12.5,
                          unknown="penalty", inflation_radius_m=0.4).limits
    assert over["max_slope_deg"] == 12.5 and over["unknown"] == "penalty" and over["inflation_radius_m"] == 0.4


def test_overrides_change_the_result():
    z = plane(20, 20, 0.05, 10.0)
    assert (traversability(TerrainMap(z, 0.05), ROVER).reason == 0).all()
    strict = traversability(TerrainMap(z, 0.05), ROVER, max_slope_deg=5.0)
    assert (strict.reason & LETHAL_SLOPE).all() and np.isinf(strict.cost).all()


@pytest.mark.parametrize("length, cell, cells", [(0.6, 0.05, 13), (0.63, 0.03, 21), (0.55, 0.05, 11),
                                                 (0.01, 1.0, 3), (0.3, 0.1, 3), (1.83, 0.03, 61)])
def test_window_cells(length, cell, cells):
    assert trav_mod.window_cells(length, cell) == cells


def test_rejects_wrong_types_and_unknown_keywords():
    tm = TerrainMap(np.zeros((4, 4), np.float32), 0.1)
    with pytest.raises(TypeError, match="terrain must be a nav.TerrainMap, got ndarray"):
        traversability(np.zeros((4, 4)), ROVER)
    with pytest.raises(TypeError, match="rover must be a nav.RoverProfile"):
        traversability(tm, "osr")
    with pytest.raises(TypeError, match="unexpected keyword argument 'max_slope'; did you mean 'max_slope_deg'"):
        traversability(tm, ROVER, max_slope=10)


@pytest.mark.parametrize("kw, message", [
    (dict(max_slope_deg=-1), "max_slope_deg must be > 0, got -1"),
    (dict(max_slope_deg=95), "max_slope_deg must be < 90, got 95"),
    (dict(max_step_m="0.1"), "max_step_m must be a number, got '0.1'"),
    (dict(max_roughness_m=True), "max_roughness_m must be a number, got True"),
    (dict(footprint_m=float("nan")), "footprint_m must be finite"),
    (dict(unknown="maybe"), "unknown must be one of 'lethal', 'penalty', got 'maybe'"),
    (dict(unknown_cost=0.5), "unknown_cost must be >= 1, got 0.5"),
    (dict(min_known_fraction=0.0), r"min_known_fraction must be a number in \(0, 1\], got 0.0"),
    (dict(min_known_fraction=1.5), r"min_known_fraction must be a number in \(0, 1\], got 1.5"),
])
def test_rejects_bad_values_naming_parameter_value_and_rule(kw, message):
    with pytest.raises(ValueError, match=message):
        traversability(TerrainMap(np.zeros((4, 4), np.float32), 0.1), ROVER, **kw)


def test_package_attribute_is_the_function():
    assert nav.traversability is traversability and callable(nav.traversability)


# ------------------------------------------------- uncompiled kernels (bounds checks)
def test_kernels_run_uncompiled_on_a_small_map():
    """NUMBA_DISABLE_JIT=1: the kernels run as plain Python, where a bad index raises."""
    script = textwrap.dedent("""
        import importlib, sys
        import numpy as np
        sys.path.insert(0, "tests/nav")
        from _ref_traversability import ref_costmap
        import nav
        trav = importlib.import_module("nav.traversability")
        trav._STRIPE_COLS, trav._RESTART_ROWS, trav._INFLATE_BLOCK_ROWS = 4, 3, 2
        rng = np.random.default_rng(1)
        z = (0.05 * rng.normal(size=(9, 11)) + 0.02 * np.arange(11)).astype(np.float32)
        z[2, 3] = z[6, 6] = np.nan
        z[4, 8] += 0.5
        cm = nav.traversability(nav.TerrainMap(z, 0.05), nav.load_rover("osr"), footprint_m=0.15)
        slope, step, rough, cost, reason = ref_costmap(z, 0.05, cm.limits)
        np.testing.assert_allclose(cm.slope_deg, slope, atol=1e-4)
        np.testing.assert_allclose(cm.step_m, step, atol=1e-5)
        np.testing.assert_allclose(cm.roughness_m, rough, atol=1e-5)
        np.testing.assert_array_equal(cm.reason, reason)
        print("ok", int((reason != 0).sum()))
    """)
    env = dict(os.environ, NUMBA_DISABLE_JIT="1", PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("ok")


# ------------------------------------------------------------------ clearance cost
_OWN = LETHAL_SLOPE | LETHAL_STEP | LETHAL_ROUGHNESS


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31), rows=st.integers(1, 24), cols=st.integers(1, 24), density=st.floats(0.0, 0.4),
       inner=st.floats(0.0, 0.5), width=st.floats(0.01, 0.6), weight=st.floats(0.0, 10.0))
def test_clearance_cost_matches_brute_force(seed, rows, cols, density, inner, width, weight):
    rng = np.random.default_rng(seed)
    flags = np.array([LETHAL_SLOPE, LETHAL_STEP, LETHAL_ROUGHNESS, LETHAL_INFLATED, LETHAL_UNKNOWN], np.uint8)
    reason = np.where(rng.random((rows, cols)) < density, rng.choice(flags, (rows, cols)), 0).astype(np.uint8)
    if rows > 4 and cols > 4:
        reason[1:4, 1:4] = LETHAL_STEP                      # a hazard with an interior
    cost = rng.uniform(1.0, 3.0, (rows, cols)).astype(np.float32)
    cost[reason != 0] = np.inf
    cost[rng.random((rows, cols)) < 0.05] = np.inf          # keep-out and such: stays inf
    z = np.zeros((rows, cols), np.float32)
    cm = nav.CostMap(terrain=TerrainMap(z, 0.1), cost=cost, slope_deg=z, step_m=z, roughness_m=z, reason=reason,
                     limits={})
    got = trav_mod.clearance_cost(cm, inner, width, weight)
    want = ref_clearance(reason, cost, _OWN, inner / 0.1, (inner + width) / 0.1, weight)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert got is not cm.cost and np.array_equal(cm.cost, cost, equal_nan=True)   # the cost map is untouched


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31), rows=st.integers(0, 20), cols=st.integers(0, 20), density=st.floats(0.0, 0.6),
       cap=st.floats(0.0, 9.0))
def test_distance_cells_matches_brute_force(seed, rows, cols, density, cap):
    rng = np.random.default_rng(seed)
    mask = rng.random((rows, cols)) < density
    if rows > 5 and cols > 5:
        mask[1:5, 1:5] = True                               # a region with an interior
    got = trav_mod.distance_cells(mask, cap)
    want = np.full((rows, cols), cap)
    src = np.argwhere(mask)
    for r in range(rows):
        for c in range(cols):
            if len(src):
                d = float(np.sqrt(((src - (r, c)) ** 2).sum(axis=1)).min())
                want[r, c] = d if d < cap else cap
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
    assert got.shape == mask.shape and got.dtype == np.float64
    # the disc dilation it gives (the executive's unseen-ground margin) on tiny windows too
    np.testing.assert_array_equal(trav_mod.distance_cells(mask, 3) <= 2.5, want_dilate(mask, 2.5))


def want_dilate(mask, radius):
    rows, cols = mask.shape
    out = np.zeros_like(mask)
    for r, c in np.argwhere(mask):
        yy, xx = np.mgrid[0:rows, 0:cols]
        out |= (yy - r) ** 2 + (xx - c) ** 2 <= radius * radius
    return out


def test_distance_cells_rejects_bad_arguments():
    with pytest.raises(ValueError, match="2-D"):
        trav_mod.distance_cells(np.zeros(3, bool), 1.0)
    for cap in (-1.0, float("inf"), True, "2"):
        with pytest.raises(ValueError, match="cap_cells"):
            trav_mod.distance_cells(np.zeros((2, 2), bool), cap)


def test_clearance_cost_keeps_routes_off_the_rim_of_a_real_hazard():
    """A 0.3 m rock on flat ground: lethal and inflated cells stay lethal, the extra cost is highest just
    outside the inflation and gone 0.4 m beyond it, and nothing gets cheaper."""
    z = np.zeros((60, 60), np.float32)
    z[28:32, 28:32] = 0.3
    cm = traversability(TerrainMap(z, 0.05), ROVER)
    got = trav_mod.clearance_cost(cm, ROVER.inflation_radius_m, 0.4, 3.0)
    lethal = ~np.isfinite(cm.cost)
    assert np.array_equal(~np.isfinite(got), lethal)
    assert np.all(got[~lethal] >= cm.cost[~lethal])
    yy, xx = np.mgrid[0:60, 0:60]
    src = np.argwhere((cm.reason & _OWN) != 0)
    d = np.min(np.hypot(yy[..., None] - src[:, 0], xx[..., None] - src[:, 1]), axis=-1) * 0.05
    extra = np.zeros_like(got)
    extra[~lethal] = got[~lethal] - cm.cost[~lethal]
    rim = ~lethal & (d < ROVER.inflation_radius_m + 0.06)
    far = d >= ROVER.inflation_radius_m + 0.4
    assert rim.any() and far.any()
    assert extra[rim].min() > 2.5 and np.all(extra[far] == 0)


def test_clearance_cost_rejects_bad_arguments():
    z = np.zeros((3, 3), np.float32)
    cm = traversability(TerrainMap(z, 0.1), ROVER)
    for kw, text in ((dict(inner_m=-0.1), "inner_m"), (dict(width_m=0.0), "width_m"), (dict(weight=float("nan")), "weight"),
                     (dict(flags=0), "flags")):
        args = dict(inner_m=0.3, width_m=0.3, weight=1.0) | kw
        with pytest.raises(ValueError, match=text):
            trav_mod.clearance_cost(cm, args.pop("inner_m"), args.pop("width_m"), args.pop("weight"), **args)
    with pytest.raises(TypeError, match="CostMap"):
        trav_mod.clearance_cost(z, 0.3, 0.3, 1.0)
