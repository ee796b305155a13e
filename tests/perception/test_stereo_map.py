"""perception.stereo_map against slow references (tests/perception/_ref_stereo_map.py), the
simulator's geometry (sim.camera.depth_to_points) and true DEM, invariants (hypothesis), and the
wrappers' rules.

Oracles, from the inside out:

* points: a per-pixel numpy back-projection and ``sim.camera.depth_to_points``;
* height variance: finite differences of the world point (the kernel uses the closed form);
* rasteriser: a Python-list reference of the documented top-layer rule, and the renderer's
  *true* depth pushed through the pipeline against the true DEM (isolates the rasteriser);
* fusion: a per-cell Python reference of the documented update;
* the whole pipeline (OpenCV block matching on rendered pairs): height error over the mapped
  cells and every placed rock taller than the step limit present, against the true DEM.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import math
import pathlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nav
from nav.config import load_rover
from nav.terrain_map import TerrainMap
from perception.stereo_map import (FusionParams, GlobalMap, LocalHeightMap, MapUpdate, StereoMapParams,
                                   StereoMapper, StereoPoints, point_height_var_m2, rasterize)
from sim.camera import StereoRenderer, depth_to_points, project_points
from sim.frames import T_body_cam, T_world_body
from sim.terrain import Rocks, add_rocks, generate_terrain
from sim.world import World

_spec = importlib.util.spec_from_file_location("_ref_stereo_map",
                                               pathlib.Path(__file__).with_name("_ref_stereo_map.py"))
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)

ROVER = load_rover("osr")
CAM = ROVER.camera            # 640 x 480, 70 deg, 0.12 m baseline, mast 0.8 m, tilt 25 deg
MAX_STEP_M = ROVER.hazards.max_step_m
CELL_M = 0.1
USEFUL_RANGE_M = 6.0      # rocks at the step limit are mapped to within 3 cm this far (see the benchmark)
PARAMS = StereoMapParams()
OVERLAP_PX = PARAMS.num_disparities + PARAMS.effective_block_size // 2   # columns the right image also sees


# =============================================================================== scenes
@pytest.fixture(scope="module")
def mars():
    """Generated Mars terrain (its own rock field) and three rendered poses."""
    w = World.generate("mars", size_m=(18.0, 14.0), cell_size_m=0.05, seed=11)
    rend = StereoRenderer(w, CAM)
    frames = []
    for i, (x, y, yaw) in enumerate([(4.0, 7.0, 0.1), (6.0, 5.0, 0.6), (12.0, 9.0, -2.8)]):
        Tb = T_world_body(x, y, float(w.terrain.height_at((x, y))), yaw, 0.0, 0.0)
        frames.append(rend.render(Tb, rng=np.random.default_rng(i)))
    return w, frames


@pytest.fixture(scope="module")
def rock_scene():
    """Rock-free Mars relief with placed rocks of known height 3-11 m ahead, and the stereo
    pairs of a rover driving toward them (x = 1.5, 2.5, 3.5 m). Heights straddle the step
    limit (0.15 m)."""
    gen = generate_terrain("mars", size_m=(16.0, 16.0), cell_size_m=0.05, seed=4, rock_cfa=0.0)
    base = gen.terrain
    hs = np.array([0.10, 0.13, 0.16, 0.18, 0.20, 0.25, 0.30, 0.35, 0.16, 0.20, 0.25, 0.30, 0.40, 0.17, 0.22])
    xs = np.array([3.5, 4.0, 4.5, 5.0, 5.5, 6.0, 6.5, 7.0, 7.5, 8.0, 8.5, 9.0, 9.5, 10.0, 10.5])
    ys = 8.0 + np.array([-1.5, 1.2, -0.6, 1.8, 0.3, -1.9, 1.0, -0.8, 2.2, -0.2, 1.5, -2.4, 0.6, -1.2, 2.0])
    rocks = Rocks(x_m=xs, y_m=ys, diameter_m=2.0 * hs, height_m=hs)
    terrain = add_rocks(base, rocks)
    w = World(terrain, planet="mars", rocks=rocks)
    rend = StereoRenderer(w, CAM)
    frames = [rend.render(T_world_body(x, 8.0, float(terrain.height_at((x, 8.0))), 0.0, 0.0, 0.0),
                          rng=np.random.default_rng(i)) for i, x in enumerate([1.5, 2.5, 3.5])]
    return base, terrain, rocks, frames


def _truth_grid(terrain: TerrainMap) -> TerrainMap:
    return terrain.resampled(CELL_M)          # area average: what a cell's height means


def _errors_by_range(gmap: GlobalMap, truth: TerrainMap, cam_xy, max_range_m):
    known = gmap.known & np.isfinite(truth.elevation_m)
    rr, cc = np.nonzero(known)
    xy = truth.cell_to_world(np.stack([rr, cc], axis=1))
    near = np.hypot(xy[:, 0] - cam_xy[0], xy[:, 1] - cam_xy[1]) <= max_range_m
    return (gmap.height_m[rr, cc] - truth.elevation_m[rr, cc])[near]


# =============================================================================== points
def test_points_match_reference_and_depth_to_points(mars):
    """Back-projection equals a per-pixel reference and the simulator's own depth_to_points."""
    _, frames = mars
    fr = frames[0]
    m = StereoMapper.from_camera(CAM)
    pts = m.points_from_depth(fr.depth_m)
    K = CAM.K
    disp = np.where(np.isfinite(fr.depth_m), K[0, 0] * CAM.baseline_m / fr.depth_m, np.nan).astype(np.float32)
    xyz, var = ref.ref_points(disp, K[0, 0], K[1, 1], K[0, 2], K[1, 2], CAM.baseline_m, PARAMS.sigma_disparity_px,
                              PARAMS.min_range_m, PARAMS.max_range_m, stride=3)
    sub = StereoMapper(K, CAM.baseline_m, PARAMS.replace(stride=3)).points(disp)
    np.testing.assert_allclose(sub.xyz_cam_m, xyz, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(sub.var_depth_m2, var, rtol=1e-12)
    # the simulator's back-projection of the same depth, at the same pixels, in the world
    world = depth_to_points(CAM, fr.depth_m, fr.T_world_left)
    rng = np.linalg.norm(depth_to_points(CAM, fr.depth_m), axis=-1)
    keep = np.isfinite(rng) & (rng >= PARAMS.min_range_m) & (rng <= PARAMS.max_range_m)
    np.testing.assert_allclose(pts.to_world(fr.T_world_left), world[keep], atol=2e-5)
    # the disparity error model: sigma_z = z^2 sigma_d / (f b)
    z = pts.xyz_cam_m[:, 2]
    np.testing.assert_allclose(np.sqrt(pts.var_depth_m2), z * z * PARAMS.sigma_disparity_px / (K[0, 0] * CAM.baseline_m),
                               rtol=1e-12)
    np.testing.assert_allclose(m.error_sigma_depth_m(z), np.sqrt(pts.var_depth_m2), rtol=1e-12)


@settings(max_examples=30)
@given(seed=st.integers(0, 2**31), yaw=st.floats(-3.2, 3.2), pitch=st.floats(-0.4, 0.4), roll=st.floats(-0.4, 0.4),
       att=st.floats(0.0, 0.05), slope=st.floats(0.0, 0.5), sigma_px=st.floats(0.0, 2.0))
def test_height_variance_matches_finite_differences(seed, yaw, pitch, roll, att, slope, sigma_px):
    """Closed-form height variance (kernel and numpy) = finite-difference propagation of the
    depth, pixel and attitude errors."""
    rng = np.random.default_rng(seed)
    T = T_world_body(1.0, -2.0, 0.3, yaw, pitch, roll) @ T_world_body(0.1, 0.06, 0.8, 0.0, 0.4, 0.0)
    p = np.column_stack([rng.uniform(-3, 3, 12), rng.uniform(-1, 2, 12), rng.uniform(0.5, 9, 12)])
    var_z = (p[:, 2] ** 2 * 0.25 / (457.0 * 0.12)) ** 2
    pts = StereoPoints(xyz_cam_m=p, var_depth_m2=var_z)
    want = np.array([ref.ref_height_var(p[i], var_z[i], T, 457.0, sigma_px, att, slope) for i in range(len(p))])
    got_np = point_height_var_m2(pts, T, fx_px=457.0, sigma_pixel_px=sigma_px, slope_prior=slope,
                                 attitude_sigma_rad=att)
    m = StereoMapper(np.array([[457.0, 0, 319.5], [0, 457.0, 239.5], [0, 0, 1]]), 0.12,
                     StereoMapParams(sigma_pixel_px=sigma_px, slope_prior=slope, max_sigma_m=1e3))
    xyz_w, got_k = m.world_points(pts, T, attitude_sigma_rad=att)
    np.testing.assert_allclose(got_np, want, rtol=1e-4, atol=1e-12)
    np.testing.assert_allclose(got_k, got_np, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(xyz_w, pts.to_world(T), atol=1e-12)


# =============================================================================== rasteriser
_RASTER = dict(gate_sigma=2.0, layer_m=0.02, top_fraction=0.1, min_points=2, min_sigma_m=0.005)


def _ref_raster(xyz, var, ox, oy, cell, shape, gate_sigma, layer_m, top_fraction, min_points, min_sigma_m,
                top_quantile=0.5):
    return ref.ref_rasterize(xyz, var, ox, oy, cell, shape, gate_sigma, layer_m, top_fraction, min_points,
                             min_sigma_m ** 2, top_quantile)


def _random_points(rng, n, shape, cell, nan_frac=0.05):
    rows, cols = shape
    xyz = np.column_stack([rng.uniform(-0.3, cols * cell + 0.3, n), rng.uniform(-0.3, rows * cell + 0.3, n),
                           rng.normal(0.0, 0.2, n)])
    # a few dense cells with a rock face (0 .. 0.3 m) and outliers, the situations the rule is for
    xyz[: n // 3, :2] = np.floor(xyz[: n // 3, :2] / cell / 2) * cell * 2 + cell * 0.5
    xyz[: n // 6, 2] = rng.uniform(0, 0.3, n // 6)
    var = rng.uniform(1e-6, 4e-3, n)
    var[rng.random(n) < nan_frac] = np.nan
    xyz[rng.random(n) < nan_frac / 2, rng.integers(0, 3)] = np.nan
    return xyz, var


@settings(max_examples=60)
@given(seed=st.integers(0, 2**31), n=st.integers(0, 400), rows=st.integers(1, 7), cols=st.integers(1, 7),
       gate=st.floats(0.0, 3.0), layer=st.floats(0.0, 0.1), top=st.floats(0.0, 1.0), min_points=st.integers(1, 4),
       quantile=st.one_of(st.just(0.5), st.just(0.0), st.just(1.0), st.floats(0.0, 1.0)))
def test_rasterize_matches_reference(seed, n, rows, cols, gate, layer, top, min_points, quantile):
    rng = np.random.default_rng(seed)
    cell = 0.1
    xyz, var = _random_points(rng, n, (rows, cols), cell)
    kw = dict(gate_sigma=gate, layer_m=layer, top_fraction=top, min_points=min_points, min_sigma_m=0.005,
              top_quantile=quantile)
    lm = rasterize(xyz, var, cell_size_m=cell, origin_xy_m=(0.0, 0.0), shape=(rows, cols), **kw)
    h, v, cnt = _ref_raster(xyz, var, 0.0, 0.0, cell, (rows, cols), **kw)
    np.testing.assert_array_equal(lm.count, cnt)
    np.testing.assert_array_equal(np.isnan(lm.height_m), np.isnan(h))
    np.testing.assert_allclose(lm.height_m, h, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(lm.var_m2, v, rtol=1e-5)
    assert lm.n_points == int(cnt.sum())


@settings(max_examples=40)
@given(seed=st.integers(0, 2**31), n=st.integers(1, 500))
def test_rasterize_is_permutation_invariant(seed, n):
    rng = np.random.default_rng(seed)
    xyz, var = _random_points(rng, n, (6, 5), 0.1)
    a = rasterize(xyz, var, cell_size_m=0.1, **_RASTER)
    perm = rng.permutation(n)
    b = rasterize(xyz[perm], var[perm], cell_size_m=0.1, **_RASTER)
    assert a.origin_xy_m == b.origin_xy_m and a.shape == b.shape
    np.testing.assert_array_equal(a.height_m, b.height_m)      # medians: exactly
    np.testing.assert_array_equal(a.count, b.count)
    np.testing.assert_allclose(a.var_m2, b.var_m2, rtol=1e-6)  # sums: up to rounding


@settings(max_examples=40)
@given(a=st.floats(-1.5, 1.5), b=st.floats(-1.5, 1.5), c=st.floats(-4000.0, 100.0), sub=st.integers(1, 5),
       sigma=st.floats(0.001, 0.05))
def test_a_plane_maps_to_a_plane(a, b, c, sub, sigma):
    """Points on a plane, ``sub x sub`` per cell in the same pattern: the map is a plane (the
    top-layer rule shifts every cell alike), and on gentle slopes the plane itself."""
    cell = 0.1
    rows, cols = 6, 8
    f = (np.arange(sub) + 0.5) / sub
    xs = (np.arange(cols)[:, None] + f[None, :]).ravel() * cell
    ys = (np.arange(rows)[:, None] + f[None, :]).ravel() * cell
    X, Y = np.meshgrid(xs, ys)
    z = a * X + b * Y + c
    xyz = np.column_stack([X.ravel(), Y.ravel(), z.ravel()])
    lm = rasterize(xyz, np.full(len(xyz), sigma ** 2), cell_size_m=cell, shape=(rows, cols), **_RASTER)
    assert lm.known.all() == (sub * sub >= _RASTER["min_points"])
    if not lm.known.any():
        return
    rr, cc = np.mgrid[0:rows, 0:cols]
    centre = a * (cc + 0.5) * cell + b * (rr + 0.5) * cell + c
    off = lm.height_m.astype(np.float64) - centre
    tol = 1e-6 * max(1.0, abs(c)) * 8
    assert np.ptp(off) <= tol + 1e-6, "not a plane"
    spread = (abs(a) + abs(b)) * cell * (1 - 1 / sub)        # heights inside a cell around its centre
    if spread <= _RASTER["layer_m"]:
        assert abs(off.mean()) <= tol + 1e-6
    assert -tol - 1e-6 <= off.mean() <= spread / 2 + tol + 1e-6   # never below the centre, at most the top


def test_top_layer_takes_the_rock_not_the_mean_and_ignores_outliers():
    rng = np.random.default_rng(3)
    # one cell: ground at 0 and a rock face rising to 0.3 m, 1 mm noise
    ground = np.column_stack([rng.uniform(0, 0.1, 200), rng.uniform(0, 0.1, 200), rng.normal(0, 0.001, 200)])
    face = np.column_stack([rng.uniform(0, 0.1, 200), rng.uniform(0, 0.1, 200), rng.uniform(0.0, 0.3, 200)])
    pts = np.vstack([ground, face])
    lm = rasterize(pts, np.full(len(pts), 1e-6), cell_size_m=0.1, shape=(1, 1), **_RASTER)
    assert lm.height_m[0, 0] > 0.25 > pts[:, 2].mean()
    # flat ground with 2 % wild outliers 1 m up: the cell stays on the ground
    flat = np.column_stack([rng.uniform(0, 0.1, 500), rng.uniform(0, 0.1, 500), rng.normal(0, 0.002, 500)])
    flat[:10, 2] += 1.0
    lm = rasterize(flat, np.full(500, 4e-6), cell_size_m=0.1, shape=(1, 1), **_RASTER)
    assert abs(lm.height_m[0, 0]) < 0.005
    # one point is not enough (min_points = 2): unknown
    lm = rasterize(flat[:1], np.full(1, 4e-6), cell_size_m=0.1, shape=(1, 1), **_RASTER)
    assert np.isnan(lm.height_m[0, 0]) and lm.var_m2[0, 0] == np.inf and lm.count[0, 0] == 1
    # a higher quantile of the layer reads the rock's top, not its middle; 1 is the highest point
    lm9 = rasterize(pts, np.full(len(pts), 1e-6), cell_size_m=0.1, shape=(1, 1), **_RASTER, top_quantile=0.9)
    lm1 = rasterize(pts, np.full(len(pts), 1e-6), cell_size_m=0.1, shape=(1, 1), **_RASTER, top_quantile=1.0)
    assert 0.28 < lm9.height_m[0, 0] <= lm1.height_m[0, 0] == np.float32(pts[:, 2].max())
    # ... and on flat ground it stays on the ground, outliers and all
    lm9 = rasterize(flat, np.full(500, 4e-6), cell_size_m=0.1, shape=(1, 1), **_RASTER, top_quantile=0.9)
    assert abs(lm9.height_m[0, 0]) < 0.005
    with pytest.raises(ValueError, match="top_quantile"):
        rasterize(flat, np.full(500, 4e-6), cell_size_m=0.1, shape=(1, 1), top_quantile=1.5)
    with pytest.raises(ValueError, match="top_quantile"):
        StereoMapParams(top_quantile=-0.1)


@settings(max_examples=30)
@given(seed=st.integers(0, 2**31), yaw=st.floats(-3.2, 3.2), pitch=st.floats(-0.3, 0.3), roll=st.floats(-0.3, 0.3),
       relief=st.floats(0.0, 3.0))
def test_cell_variance_adds_the_points_horizontal_misplacement(seed, yaw, pitch, roll, relief):
    """A local map cell's variance = the rasteriser's (relief_slope 0) + relief_slope² times the mean,
    over the cell's usable points, of sigma_z² |ray_h|², the horizontal misplacement by the depth error
    (computed here point by point, binned by hand)."""
    rng = np.random.default_rng(seed)
    T = T_world_body(0.37, -0.21, 0.1, yaw, pitch, roll) @ T_world_body(0.15, 0.06, 0.8, 0.0, 0.44, 0.0)
    n = 600
    p = np.column_stack([rng.uniform(-2, 2, n), rng.uniform(-0.5, 1.0, n), rng.uniform(0.5, 6.0, n)])
    p[: n // 2] = p[rng.integers(0, n // 2, n // 2)] + rng.normal(0, 0.01, (n // 2, 3))   # dense cells
    var_z = (p[:, 2] ** 2 * 0.25 / (457.0 * 0.12)) ** 2
    var_z[rng.random(n) < 0.03] = np.nan                                                    # unusable points
    pts = StereoPoints(xyz_cam_m=p, var_depth_m2=var_z)
    K = np.array([[457.0, 0, 319.5], [0, 457.0, 239.5], [0, 0, 1]])
    base = StereoMapper(K, 0.12, StereoMapParams(relief_slope=0.0)).local_map(pts, T)
    got = StereoMapper(K, 0.12, StereoMapParams(relief_slope=relief)).local_map(pts, T)
    np.testing.assert_array_equal(got.height_m, base.height_m)
    np.testing.assert_array_equal(got.count, base.count)
    xyz_w, var_h = StereoMapper(K, 0.12).world_points(pts, T)
    rows, cols = base.shape
    total = np.zeros((rows, cols))
    num = np.zeros((rows, cols), int)
    for i in range(n):
        if not np.isfinite(var_h[i]):
            continue
        c = math.floor((xyz_w[i, 0] - base.origin_xy_m[0]) * (1.0 / base.cell_size_m))
        r = math.floor((xyz_w[i, 1] - base.origin_xy_m[1]) * (1.0 / base.cell_size_m))
        ray_w = T[:3, :3] @ (p[i] / p[i, 2])
        total[r, c] += var_z[i] * (ray_w[0] ** 2 + ray_w[1] ** 2)
        num[r, c] += 1
    np.testing.assert_array_equal(num, base.count)         # binned as the rasteriser bins
    known = base.known
    want = base.var_m2[known].astype(np.float64) + relief ** 2 * total[known] / num[known]
    np.testing.assert_allclose(got.var_m2[known], want, rtol=2e-6, atol=1e-12)
    assert np.all(got.var_m2[~known] == np.inf)


def test_near_views_outweigh_far_edge_spills():
    """A rock's top spilled 12 cm high into a ground cell seen from 6 m, then the cell seen from 1.5 m
    on the ground: the map follows the near view (its misplacement error is ~100 times smaller), where
    point variances alone keep over a tenth of the spill."""
    rng = np.random.default_rng(5)
    cell_xy = (6.05, 0.05)
    n = 40
    ground = np.column_stack([cell_xy[0] + rng.uniform(-0.04, 0.04, n), cell_xy[1] + rng.uniform(-0.04, 0.04, n),
                              rng.normal(0.0, 0.002, n)])
    spill = ground.copy()
    spill[:, 2] += 0.12

    def view(cam_x, world_pts, relief):
        T = T_world_body(cam_x, 0.0, 0.0, 0.0, 0.0, 0.0) @ T_body_cam(CAM, "left")
        Ti = np.linalg.inv(T)
        pc = world_pts @ Ti[:3, :3].T + Ti[:3, 3]
        pts = StereoPoints(pc, (pc[:, 2] ** 2 * 0.25 / (CAM.fx_px * CAM.baseline_m)) ** 2)
        return StereoMapper.from_camera(CAM, StereoMapParams(relief_slope=relief)).local_map(pts, T, grid=g)

    fused = {}
    for relief in (0.0, 1.0):
        g = GlobalMap((10, 100), CELL_M, origin_xy_m=(0.0, -0.5),
                      params=FusionParams(drift_var_m2=0.0, gate_sigma=1e3))      # no gate: weights alone
        far = view(0.0, spill, relief)
        near = view(4.5, ground, relief)
        g.merge(far, stamp=0.0)
        g.merge(near, stamp=0.0)
        r, c = 5, 60
        fused[relief] = float(g.height_m[r, c])
    assert fused[1.0] < 0.01, fused
    assert fused[0.0] > 0.012, fused


def test_grid_follows_the_lattice_and_the_points():
    pts = np.array([[0.93, -0.41, 1.0], [0.95, -0.42, 1.0], [1.31, 0.07, 2.0], [1.32, 0.08, 2.0]])
    lm = rasterize(pts, np.full(4, 1e-4), cell_size_m=0.1, origin_xy_m=(0.05, 0.0), **_RASTER)
    np.testing.assert_allclose(lm.origin_xy_m, (0.85, -0.5), atol=1e-12)   # on the lattice through (0.05, 0)
    assert lm.shape == (6, 5)
    tm = lm.terrain_map()
    assert tm.elevation_m[0, 0] == pytest.approx(1.0) and tm.elevation_m[-1, -1] == pytest.approx(2.0)
    assert np.isnan(tm.elevation_m[2, 2])
    empty = rasterize(np.zeros((0, 3)), np.zeros(0), cell_size_m=0.1)
    assert empty.shape == (0, 0) and not empty
    with pytest.raises(ValueError, match="empty"):
        empty.terrain_map()


# =============================================================================== fusion
def _random_local(rng, shape, origin, cell, known_frac=0.6, z0=0.0):
    h = (z0 + rng.normal(0, 0.05, shape)).astype(np.float32)
    v = rng.uniform(1e-5, 4e-3, shape).astype(np.float32)
    unk = rng.random(shape) > known_frac
    h[unk] = np.nan
    v[unk] = np.inf
    # a few big jumps (inconsistent measurements)
    jump = rng.random(shape) < 0.1
    h[jump] += rng.choice([-0.4, 0.4], int(jump.sum()))
    return LocalHeightMap(height_m=h, var_m2=v, count=np.ones(shape, np.int32), cell_size_m=cell, origin_xy_m=origin)


@settings(max_examples=40)
@given(seed=st.integers(0, 2**31), q=st.sampled_from([0.0, 1e-3, 0.05]), max_age=st.sampled_from([math.inf, 1.5]),
       tol=st.sampled_from([0.0, 0.01, 0.05]))
def test_fusion_matches_reference(seed, q, max_age, tol):
    rng = np.random.default_rng(seed)
    cell = 0.1
    fp = FusionParams(drift_var_m2=q, max_age=max_age, change_tol_m=tol)
    g = GlobalMap((9, 11), cell, (2.0, -1.0), params=fp)
    state = [np.full((9, 11), np.nan), np.full((9, 11), np.inf), np.zeros((9, 11)), np.full((9, 11), np.nan)]
    stamp = 0.0
    for _ in range(5):
        r0, c0 = int(rng.integers(-3, 7)), int(rng.integers(-3, 9))
        shape = (int(rng.integers(1, 6)), int(rng.integers(1, 6)))
        local = _random_local(rng, shape, (2.0 + c0 * cell, -1.0 + r0 * cell), cell)
        stamp += float(rng.uniform(0, 1.0))
        up = g.merge(local, stamp=stamp)
        *state, changed = ref.ref_fuse(*state, local.height_m, local.var_m2, r0, c0, stamp, q, fp.gate_sigma,
                                       max_age, fp.min_sigma_m ** 2, tol)
        np.testing.assert_array_equal(np.isnan(g.height_m), np.isnan(state[0]))
        np.testing.assert_allclose(g.height_m, state[0], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(g.var_m2, state[1], rtol=1e-5)
        np.testing.assert_array_equal(g.stamp, state[2])
        assert set(zip(up.rows.tolist(), up.cols.tolist())) == changed
        assert len(set(zip(up.rows.tolist(), up.cols.tolist()))) == len(up)


@settings(max_examples=30)
@given(seed=st.integers(0, 2**31))
def test_unknown_stays_unknown(seed):
    """Unknown local cells, and every global cell no known local cell lands on, are untouched."""
    rng = np.random.default_rng(seed)
    g = GlobalMap((12, 12), 0.1)
    before_h = g.height_m.copy()
    local = _random_local(rng, (5, 6), (0.3, 0.4), 0.1, known_frac=0.4)
    g.merge(local)
    touched = np.zeros((12, 12), bool)
    touched[4:9, 3:9] = local.known
    assert np.isnan(g.height_m[~touched]).all() and np.isnan(before_h).all()
    np.testing.assert_array_equal(g.height_m[touched], local.height_m[local.known])
    # a second merge with nothing known changes nothing
    h1, v1 = g.height_m.copy(), g.var_m2.copy()
    blank = LocalHeightMap(np.full((5, 6), np.nan, np.float32), np.full((5, 6), np.inf, np.float32),
                           np.zeros((5, 6), np.int32), 0.1, (0.3, 0.4))
    up = g.merge(blank)
    assert not up and len(up) == 0 and up.window(3) is None
    np.testing.assert_array_equal(g.height_m, h1)
    np.testing.assert_array_equal(g.var_m2, v1)


def _one(z, var, cell=0.1, origin=(0.0, 0.0)):
    z = np.atleast_2d(np.asarray(z, np.float32))
    return LocalHeightMap(z, np.full(z.shape, var, np.float32), np.ones(z.shape, np.int32), cell, origin)


def test_consistent_measurements_fuse_to_the_weighted_mean():
    g = GlobalMap((1, 1), 0.1, params=FusionParams(drift_var_m2=0.0, min_sigma_m=0.0))
    g.merge(_one(1.00, 0.02 ** 2), stamp=0)
    up = g.merge(_one(1.03, 0.01 ** 2), stamp=0)
    w1, w2 = 1 / 0.02 ** 2, 1 / 0.01 ** 2
    assert g.height_m[0, 0] == pytest.approx((1.00 * w1 + 1.03 * w2) / (w1 + w2), abs=1e-6)
    assert g.var_m2[0, 0] == pytest.approx(1 / (w1 + w2), rel=1e-5)
    assert up.n_fused == 1 and up.n_inconsistent == 0 and len(up) == 1


def test_later_inconsistent_view_takes_over_instead_of_smearing():
    """A drifted pose puts a rock two cells aside: the later view wins, the old one is not
    averaged in (no half-height ghost across both places)."""
    cell = 0.1
    row = np.zeros((1, 10), np.float32)
    first = row.copy()
    first[0, 3:5] = 0.3
    second = row.copy()
    second[0, 5:7] = 0.3
    g = GlobalMap((1, 10), cell)
    g.merge(_one(first, 0.01 ** 2), stamp=0.0)
    up = g.merge(_one(second, 0.01 ** 2), stamp=1.0)
    np.testing.assert_allclose(g.height_m[0], second[0], atol=0.01)
    assert up.n_inconsistent == 4 and set(up.cols.tolist()) == {3, 4, 5, 6}
    # a big drift allowance (stamps far apart) lets even consistent cells follow the new view
    g = GlobalMap((1, 1), cell, params=FusionParams(drift_var_m2=1e-3))
    g.merge(_one(0.0, 0.01 ** 2), stamp=0.0)
    g.merge(_one(0.025, 0.01 ** 2), stamp=100.0)
    assert g.height_m[0, 0] == pytest.approx(0.025, abs=0.001)
    assert g.sigma_m()[0, 0] < 0.011


def test_drift_inflation_max_age_and_sigma():
    g = GlobalMap((1, 2), 0.1, params=FusionParams(drift_var_m2=1e-3, max_age=5.0, min_sigma_m=0.01))
    g.merge(_one([[0.0, 0.0]], 0.0), stamp=0.0)
    assert g.var_m2[0, 0] == pytest.approx(1e-4)                 # the floor
    assert g.sigma_m(stamp=3.0)[0, 0] == pytest.approx(math.sqrt(1e-4 + 3e-3))
    up = g.merge(_one([[0.02, np.nan]], 1e-4), stamp=6.0)           # older than max_age: replaced
    assert up.n_replaced == 1 and g.height_m[0, 0] == pytest.approx(0.02)
    assert g.stamp[0, 1] == 0.0 and g.stamp[0, 0] == 6.0
    tm = g.terrain_map(max_sigma_m=0.05, stamp=6.0)               # cell 1: sigma 0.078 m by now
    assert np.isfinite(tm.elevation_m[0, 0]) and np.isnan(tm.elevation_m[0, 1])
    assert np.isfinite(g.terrain_map().elevation_m).all()


def test_small_changes_are_reported_once_they_add_up():
    g = GlobalMap((1, 1), 0.1, params=FusionParams(drift_var_m2=0.0, min_sigma_m=0.0, change_tol_m=0.01))
    assert len(g.merge(_one(0.0, 1e-4))) == 1                    # became known
    reported = []
    for k in range(1, 12):
        reported.append(len(g.merge(_one(0.004 * k + 0.004, 1e-6))))   # creeps up ~4 mm per merge
    assert 0 < sum(reported) < len(reported)
    assert abs(float(g.height_m[0, 0]) - float(g._reported[0, 0])) <= 0.01


def test_update_feeds_dstar_lite():
    """MapUpdate.rc and window() are what the executive hands D* Lite after re-costing."""
    terrain = TerrainMap(np.zeros((30, 30), np.float32), 0.1)
    g = GlobalMap.like(terrain, prior_sigma_m=0.05)
    cm0 = nav.traversability(g.terrain_map(), ROVER)
    planner = nav.DStarLite(cm0.cost, (2, 2), (27, 27))
    p0 = planner.plan()
    rock = np.zeros((30, 30), np.float32)
    rock[10:20, 10:20] = 0.5
    up = g.merge(LocalHeightMap(rock, np.full(rock.shape, 1e-4, np.float32), np.ones(rock.shape, np.int32), 0.1,
                                (0.0, 0.0)))
    assert set(map(tuple, up.rc.tolist())) == {(r, c) for r in range(10, 20) for c in range(10, 20)}
    lim = cm0.limits
    margin = lim["footprint_cells"] // 2 + lim["step_window_cells"] // 2 + math.ceil(lim["inflation_radius_cells"])
    r0, r1, c0, c1 = up.window(margin)
    cm1 = nav.traversability(g.terrain_map(), ROVER)
    moved = np.argwhere(cm1.cost != cm0.cost)
    assert moved.size and (moved[:, 0] >= r0).all() and (moved[:, 0] < r1).all()
    assert (moved[:, 1] >= c0).all() and (moved[:, 1] < c1).all()
    planner.update_cells(moved, cm1.cost[moved[:, 0], moved[:, 1]])
    p1 = planner.replan()
    assert p1.cost > p0.cost


# =============================================================================== rendered frames
def test_true_depth_rasterised_matches_the_dem(mars):
    """The renderer's true depth through points → local map → global map: the rasteriser alone
    against the true DEM (cell averages), within the mapping range."""
    w, frames = mars
    truth = _truth_grid(w.terrain)
    m = StereoMapper.from_camera(CAM)
    errs = []
    for fr in frames:
        g = GlobalMap.like(truth)
        lm = m.local_map(m.points_from_depth(fr.depth_m), fr.T_world_left, grid=g)
        g.merge(lm)
        errs.append(_errors_by_range(g, truth, fr.T_world_left[:2, 3], 8.0))
    e = np.abs(np.concatenate(errs))
    assert e.size > 5000
    assert np.median(e) < 0.005 and np.percentile(e, 95) < 0.03


def test_block_matching_disparity_matches_truth(mars):
    _, frames = mars
    m = StereoMapper.from_camera(CAM)
    fr = frames[1]
    d = m.disparity(fr.left, fr.right)
    assert d.dtype == np.float32 and d.shape == fr.left.shape
    truth = CAM.fx_px * CAM.baseline_m / fr.depth_m
    ok = np.isfinite(d) & np.isfinite(truth)
    overlap = np.zeros_like(ok)
    overlap[:, OVERLAP_PX:] = True
    assert ok[overlap].mean() > 0.6
    err = np.abs(d - truth)[ok]
    assert np.median(err) < 0.15 and np.mean(err < 1.0) > 0.95
    assert np.isnan(d[:, :PARAMS.num_disparities - 1]).all()      # no match possible there


def test_block_matching_pipeline_maps_the_terrain(mars):
    """Rendered pairs → BM → map: median height error over the mapped cells within 8 m."""
    w, frames = mars
    truth = _truth_grid(w.terrain)
    m = StereoMapper.from_camera(CAM)
    errs = []
    for fr in frames:
        g = GlobalMap.like(truth)
        g.merge(m.map_pair(fr.left, fr.right, fr.T_world_left, grid=g))
        errs.append(_errors_by_range(g, truth, fr.T_world_left[:2, 3], 8.0))
    e = np.concatenate(errs)
    assert e.size > 5000
    assert np.median(np.abs(e)) < 0.025
    assert np.mean(np.abs(e) < 0.10) > 0.9


def test_sgbm_matcher_runs(mars):
    _, frames = mars
    fr = frames[0]
    m = StereoMapper.from_camera(CAM, StereoMapParams(matcher="sgbm"))
    d = m.disparity(fr.left, fr.right)
    truth = CAM.fx_px * CAM.baseline_m / fr.depth_m
    ok = np.isfinite(d) & np.isfinite(truth)
    assert np.median(np.abs(d - truth)[ok]) < 0.3


def test_every_rock_above_the_step_limit_is_in_the_map(rock_scene):
    """Every placed rock taller than max_step_m whose top the cameras saw (stereo overlap,
    un-occluded in the true depth) within the useful range (6 m for this 12 cm baseline, 640 px
    camera) stands out of the map by the step limit and by what the true DEM shows on 10 cm
    cells (a dome's peak averages down), each less 3 cm; seen only from 6-8 m, by at least
    half of that."""
    base, terrain, rocks, frames = rock_scene
    truth = _truth_grid(terrain)
    m = StereoMapper.from_camera(CAM)
    g = GlobalMap.like(truth)
    for k, fr in enumerate(frames):
        up = g.merge(m.map_pair(fr.left, fr.right, fr.T_world_left, grid=g), stamp=float(k))
        assert up and up.n_new > 0
    tops = [float(terrain.height_at((r.x_m, r.y_m))) for r in rocks]
    idx, closest = ref.visible_rocks(frames, CAM, rocks, tops, 8.0, OVERLAP_PX, project_points)
    tall = [(i, c) for i, c in zip(idx.tolist(), closest.tolist()) if rocks.height_m[i] > MAX_STEP_M]
    assert len(tall) >= 10 and sum(c <= USEFUL_RANGE_M for _, c in tall) >= 8
    for i, closest_m in tall:
        r = rocks[i]
        ground = float(base.height_at((r.x_m, r.y_m)))
        rise = ref.rock_rise_m(g.height_m, g.origin_xy_m, CELL_M, r, ground, CELL_M)
        grid_rise = ref.rock_rise_m(truth.elevation_m, truth.origin_xy_m, CELL_M, r, ground, CELL_M)
        what = f"rock {i} (h={r.height_m:.2f} m, DEM {grid_rise:.3f} m, seen from {closest_m:.1f} m): map {rise:.3f} m"
        if closest_m <= USEFUL_RANGE_M:
            assert rise >= min(MAX_STEP_M, grid_rise) - 0.03, what
        else:
            assert rise >= 0.5 * grid_rise, what
    # and the map's heights stay close to the DEM over the mapped cells
    e = _errors_by_range(g, truth, frames[-1].T_world_left[:2, 3], 8.0)
    assert np.median(np.abs(e)) < 0.02


def test_occlusion_shadow_behind_a_rock_stays_unknown():
    """Cells hidden behind a tall rock and behind relief crests within 5 m (all of their area
    occluded in the true depth) are left unknown, not interpolated: >= 95 % of them from the
    true depth (the rest are cells the 4 x 4 occlusion samples call hidden though a corner
    shows), >= 80 % from block matching (its depth error spills points a cell or two past an
    occluding edge, at about the edge's height)."""
    gen = generate_terrain("mars", size_m=(9.0, 8.0), cell_size_m=0.05, seed=4, rock_cfa=0.0)
    rocks = Rocks(x_m=[4.0], y_m=[4.3], diameter_m=[0.8], height_m=[0.4])
    terrain = add_rocks(gen.terrain, rocks)
    w = World(terrain, planet="mars", rocks=rocks)
    fr = StereoRenderer(w, CAM).render(T_world_body(1.0, 4.0, float(terrain.height_at((1.0, 4.0))), 0.0, 0, 0),
                                       rng=np.random.default_rng(0))
    truth = _truth_grid(terrain)
    rows, cols = truth.shape
    f = (np.arange(4) + 0.5) / 4
    cam = fr.T_world_left[:3, 3]
    shadow = np.zeros((rows, cols), bool)
    for r in range(rows):
        for c in range(cols):
            cx, cy = (c + 0.5) * CELL_M, (r + 0.5) * CELL_M
            if not (4.0 < cx and math.hypot(cx - cam[0], cy - cam[1]) <= 5.0):
                continue
            xs, ys = np.meshgrid((c + f) * CELL_M, (r + f) * CELL_M)
            P = np.column_stack([xs.ravel(), ys.ravel(), terrain.height_at(np.column_stack([xs.ravel(), ys.ravel()]))])
            uv, z = project_points(CAM, fr.T_world_left, P)
            if not (np.isfinite(uv).all() and (uv[:, 0] >= OVERLAP_PX).all() and (uv[:, 0] <= 638).all()
                    and (uv[:, 1] >= 0).all() and (uv[:, 1] <= 478).all()):
                continue
            shadow[r, c] = (fr.depth_m[np.round(uv[:, 1]).astype(int), np.round(uv[:, 0]).astype(int)] < z - 0.05).all()
    assert shadow.sum() >= 40
    m = StereoMapper.from_camera(CAM)
    for name, pts, need in (("true depth", m.points_from_depth(fr.depth_m), 0.95),
                            ("block matching", m.points(m.disparity(fr.left, fr.right)), 0.8)):
        g = GlobalMap.like(truth)
        g.merge(m.local_map(pts, fr.T_world_left, grid=g))
        unknown = float(np.mean(~g.known[shadow]))
        print(f"{name}: {unknown:.1%} of {shadow.sum()} shadow cells unknown")
        assert unknown >= need, f"{name}: only {unknown:.0%} of the shadow unknown"
    # the unknown cells reach the planner as unknown: lethal under the default policy
    cm = nav.traversability(g.terrain_map(), ROVER)
    assert (cm.reason[shadow & ~g.known] & nav.costmap.LETHAL_UNKNOWN).all()
    cm = nav.traversability(g.terrain_map(), ROVER, unknown="penalty")
    assert np.isfinite(cm.cost[shadow & ~g.known]).any()


# =============================================================================== wrapper rules
def test_bad_inputs_raise_clear_errors(mars):
    _, frames = mars
    fr = frames[0]
    m = StereoMapper.from_camera(CAM)
    with pytest.raises(ValueError, match="num_disparities = 70: must be a multiple of 16"):
        StereoMapParams(num_disparities=70)
    with pytest.raises(ValueError, match="matcher"):
        StereoMapParams(matcher="census")
    with pytest.raises(ValueError, match="block_size = 8: must be odd"):
        StereoMapParams(block_size=8)
    with pytest.raises(ValueError, match="max_range_m"):
        StereoMapParams(min_range_m=5.0, max_range_m=2.0)
    with pytest.raises(TypeError):
        StereoMapParams(cell_size=0.1)
    with pytest.raises(ValueError, match="gate_sigma"):
        FusionParams(gate_sigma=0)
    with pytest.raises(ValueError, match="left must be a 2-D uint8"):
        m.disparity(fr.left.astype(np.float32), fr.right)
    with pytest.raises(ValueError, match="same shape"):
        m.disparity(fr.left, fr.right[:-2])
    with pytest.raises(ValueError, match="K must be"):
        StereoMapper(np.eye(3) * 2, 0.12)
    with pytest.raises(ValueError, match="int16 output is in 1/16 pixel"):
        m.points(np.zeros((4, 4), np.int16))
    with pytest.raises(ValueError, match="baseline_m"):
        StereoMapper(CAM.K, -0.1)
    pts = m.points_from_depth(fr.depth_m)
    with pytest.raises(ValueError, match="T_world_cam rotation"):
        m.local_map(pts, np.diag([1.0, 1.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match="T_world_cam must be a 4x4"):
        m.local_map(pts, np.eye(3))
    with pytest.raises(TypeError, match="points must be StereoPoints"):
        m.local_map(np.zeros((3, 3)), np.eye(4))
    with pytest.raises(TypeError, match="grid must be"):
        m.local_map(pts, fr.T_world_left, grid=0.1)
    g = GlobalMap((50, 50), 0.1)
    off = m.local_map(pts, fr.T_world_left, grid=TerrainMap(np.zeros((2, 2)), 0.1, (0.05, 0.0)))
    with pytest.raises(ValueError, match="not on the global map's lattice"):
        g.merge(off)
    with pytest.raises(ValueError, match="cells are 0.2 m"):
        g.merge(m.local_map(pts, fr.T_world_left, grid=TerrainMap(np.zeros((2, 2)), 0.2)))
    with pytest.raises(ValueError, match="stamp"):
        g.merge(m.local_map(pts, fr.T_world_left, grid=g), stamp=math.nan)
    with pytest.raises(ValueError, match="var_height_m2 must have shape"):
        rasterize(np.zeros((3, 3)), np.zeros(2), cell_size_m=0.1)
    with pytest.raises(ValueError, match="cell_size_m"):
        rasterize(np.zeros((3, 3)), np.zeros(3), cell_size_m=0.0)
    with pytest.raises(ValueError, match="shape"):
        GlobalMap((0, 3), 0.1)
    with pytest.raises(ValueError, match="margin_cells"):
        MapUpdate(np.zeros(0, np.int64), np.zeros(0, np.int64)).window(-1)
    assert dataclasses.replace(PARAMS, stride=2).stride == 2


def test_no_points_give_an_empty_local_map_and_merge_nothing():
    m = StereoMapper.from_camera(CAM)
    d = np.full((480, 640), np.nan, np.float32)
    pts = m.points(d)
    assert len(pts) == 0 and not pts
    g = GlobalMap((10, 10), 0.1)
    lm = m.local_map(pts, np.eye(4), grid=g)
    assert lm.shape == (0, 0) and not lm
    up = g.merge(lm)
    assert not up and up.shape == (10, 10) and g.merges == 1


@settings(max_examples=25)
@given(seed=st.integers(0, 2**31), rng_max=st.floats(0.8, 4.0), sub=st.integers(1, 3))
def test_near_map_is_the_close_points_on_a_subdivided_lattice(seed, rng_max, sub):
    """near_map = local_map of only the points within max_range_m of the left optical centre (selected
    here by hand), on the grid's lattice with cells split sub x sub; every point it rasterised is one of
    those."""
    rng = np.random.default_rng(seed)
    T = T_world_body(3.37, -1.21, 0.1, rng.uniform(-3, 3), 0.05, -0.03) @ T_world_body(0.15, 0.0, 0.8, 0.0, 0.44, 0.0)
    n = 800
    p = np.column_stack([rng.uniform(-2, 2, n), rng.uniform(-0.5, 1.0, n), rng.uniform(0.5, 6.0, n)])
    var_z = (p[:, 2] ** 2 * 0.25 / (457.0 * 0.12)) ** 2
    pts = StereoPoints(xyz_cam_m=p, var_depth_m2=var_z)
    K = np.array([[457.0, 0, 319.5], [0, 457.0, 239.5], [0, 0, 1]])
    mapper = StereoMapper(K, 0.12)
    grid = TerrainMap(np.full((4, 4), np.nan, np.float32), 0.1, (0.3, -0.2))
    near = mapper.near_map(pts, T, grid=grid, subdivide=sub, max_range_m=rng_max)
    keep = np.linalg.norm(p, axis=1) <= rng_max
    ref = mapper.local_map(StereoPoints(p[keep], var_z[keep]), T,
                           grid=TerrainMap(np.full((1, 1), np.nan, np.float32), 0.1 / sub, (0.3, -0.2)))
    assert near.cell_size_m == pytest.approx(0.1 / sub)
    if near.shape != (0, 0):
        off = (np.asarray(near.origin_xy_m) - (0.3, -0.2)) / (0.1 / sub)
        np.testing.assert_allclose(off, np.round(off), atol=1e-6)
    assert near.origin_xy_m == ref.origin_xy_m and near.shape == ref.shape
    np.testing.assert_array_equal(near.height_m, ref.height_m)
    np.testing.assert_array_equal(near.count, ref.count)
    assert near.n_points <= int(keep.sum())


def test_near_map_bad_arguments():
    K = np.array([[457.0, 0, 319.5], [0, 457.0, 239.5], [0, 0, 1]])
    mapper = StereoMapper(K, 0.12)
    pts = StereoPoints(xyz_cam_m=np.array([[0.0, 0.5, 1.0]]), var_depth_m2=np.array([1e-4]))
    with pytest.raises(ValueError, match="subdivide"):
        mapper.near_map(pts, np.eye(4), subdivide=0)
    with pytest.raises(ValueError, match="max_range_m"):
        mapper.near_map(pts, np.eye(4), max_range_m=0.0)
    with pytest.raises(TypeError, match="StereoPoints"):
        mapper.near_map(np.zeros((1, 3)), np.eye(4))


def _same_map(a: LocalHeightMap, b: LocalHeightMap):
    assert a.shape == b.shape and a.origin_xy_m == b.origin_xy_m and a.cell_size_m == b.cell_size_m
    np.testing.assert_array_equal(a.height_m, b.height_m)
    np.testing.assert_array_equal(a.var_m2, b.var_m2)
    np.testing.assert_array_equal(a.count, b.count)
    assert a.n_points == b.n_points


def test_map_pair_near_is_map_pair_and_near_map_of_one_disparity(mars):
    """(local, near) of map_pair_near are exactly map_pair's local map and near_map of the pair's points, with
    the same grid, pose and attitude sigma; the pair is matched once."""
    w, frames = mars
    m = StereoMapper.from_camera(CAM)
    g = GlobalMap.like(_truth_grid(w.terrain))
    calls = []
    disparity = m.disparity

    def counted(left, right):
        calls.append(1)
        return disparity(left, right)

    for fr, kw in ((frames[0], {}), (frames[1], dict(subdivide=3, near_range_m=1.8, attitude_sigma_rad=0.02))):
        att = kw.get("attitude_sigma_rad", 0.0)
        m.disparity = counted
        local, near = m.map_pair_near(fr.left, fr.right, fr.T_world_left, grid=g, **kw)
        assert len(calls) == 1
        del m.disparity
        calls.clear()
        _same_map(local, m.map_pair(fr.left, fr.right, fr.T_world_left, grid=g, attitude_sigma_rad=att))
        ref = m.near_map(m.points(m.disparity(fr.left, fr.right)), fr.T_world_left, grid=g,
                         subdivide=kw.get("subdivide", 2), max_range_m=kw.get("near_range_m", 2.5),
                         attitude_sigma_rad=att)
        _same_map(near, ref)
        assert near.cell_size_m == pytest.approx(CELL_M / kw.get("subdivide", 2)) and near.n_known > 100
        assert near.n_points < local.n_points


def test_map_pair_near_bad_arguments_raise_before_matching(mars):
    _, frames = mars
    fr = frames[0]
    m = StereoMapper.from_camera(CAM)
    m.disparity = lambda left, right: pytest.fail("matched a pair despite a bad argument")
    T = fr.T_world_left
    for kw, err, msg in ((dict(subdivide=0), ValueError, "map_pair_near.subdivide = 0: must be >= 1"),
                         (dict(subdivide=1.5), ValueError, "subdivide = 1.5: must be an integer"),
                         (dict(near_range_m=0.0), ValueError, "near_range_m = 0.0: must be > 0"),
                         (dict(near_range_m="far"), ValueError, "near_range_m = 'far'"),
                         (dict(attitude_sigma_rad=-0.1), ValueError, "attitude_sigma_rad = -0.1: must be >= 0"),
                         (dict(grid=0.1), TypeError, "grid must be"),
                         (dict(T_world_cam=np.eye(3)), ValueError, "T_world_cam must be a 4x4")):
        kw = {"T_world_cam": T, **kw}
        with pytest.raises(err, match=msg):
            m.map_pair_near(fr.left, fr.right, **kw)
    del m.disparity
    with pytest.raises(ValueError, match="left must be a 2-D uint8"):
        m.map_pair_near(fr.left.astype(np.float32), fr.right, T)
