"""Tests for sim.camera: geometry against closed forms and a slow reference ray caster
(tests/sim/_ref_render.py), stereo consistency with OpenCV's SGBM as an independent
disparity estimator, shadows against brute-force horizon marching, photometry, noise
statistics, trackable texture (OpenCV corners and KLT against ground-truth motion),
determinism and input validation."""
from __future__ import annotations

import dataclasses
import importlib.util
import math
import pathlib

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.camera import StereoFrame
from nav.config import Camera, Soil, load_planet
from nav.terrain_map import TerrainMap
from sim.camera import (LIT_GROUND_DN, SURFACE, StereoRenderer, depth_to_points, exact_range_m, project_points,
                        render_depth, render_view, shadow_map)
from sim.frames import T_body_cam, T_world_body, transform
from sim.terrain import Rocks
from sim.world import World

_spec = importlib.util.spec_from_file_location("_ref_render", pathlib.Path(__file__).with_name("_ref_render.py"))
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)

CAM = Camera()            # 640 x 480, 70 deg, 0.12 m baseline, mast 0.8 m, tilt 25 deg, 40 m range


@pytest.fixture(scope="module")
def mars():
    return World.generate("mars", size_m=30.0, cell_size_m=0.05, seed=11)


@pytest.fixture(scope="module")
def moon():
    return World.generate("moon", size_m=20.0, cell_size_m=0.05, seed=11)


def _body(world, x, y, yaw, pitch=0.0, roll=0.0, dz=0.0):
    z = float(world.terrain.height_at((x, y))) + dz
    return T_world_body(x, y, z, yaw, pitch, roll)


def _left(world, *args, camera=CAM, **kw):
    return _body(world, *args, **kw) @ T_body_cam(camera, "left")


def _flat_world(height=0.25, n=400, cell=0.05, planet="mars", **kw):
    return World(TerrainMap(np.full((n, n), height, np.float32), cell), planet=planet, **kw)


def _grid_uv(step=8, w=640, h=480):
    vv, uu = np.mgrid[step // 2:h:step, step // 2:w:step]
    return np.stack([uu.ravel(), vv.ravel()], axis=1)


# =============================================================================== geometry
def test_surface_is_documented():
    assert "(r, c)-(r+1, c+1)" in SURFACE


def test_vertex_projects_where_pinhole_says_and_depth_is_its_z(mars):
    """Place the camera so that a terrain vertex lies on the ray of a chosen pixel centre at a
    chosen depth: the pinhole model and the renderer must both put it there."""
    tm = mars.terrain
    R = (T_world_body(0, 0, 0, 0.7, 0.05, -0.03) @ T_body_cam(CAM, "left"))[:3, :3]
    K = CAM.K
    rng = np.random.default_rng(3)
    checked = 0
    for _ in range(8):
        r, c = (int(v) for v in rng.integers(150, 450, 2))
        u0, v0 = int(rng.integers(50, 590)), int(rng.integers(240, 440))
        zc = float(rng.uniform(1.5, 6.0))
        P = np.array([*tm.cell_to_world((r, c)), tm.elevation_m[r, c]])
        d_cam = np.array([(u0 - K[0, 2]) / K[0, 0], (v0 - K[1, 2]) / K[1, 1], 1.0])
        T = transform(R, P - zc * (R @ d_cam))
        # the independent pinhole model
        pc = R.T @ (P - T[:3, 3])
        assert pc[2] == pytest.approx(zc)
        assert (K @ pc / pc[2])[:2] == pytest.approx([u0, v0], abs=1e-9)
        uv, z = project_points(CAM, T, P)
        assert uv[0] == pytest.approx([u0, v0], abs=1e-9) and z[0] == pytest.approx(zc)
        # nothing in front of it (reference ray caster), then the rendered depth is its z
        hit = ref.ray_cast_depth(tm.elevation_m, tm.origin_xy_m, tm.cell_size_m, T, K, [[u0, v0]],
                                 CAM.max_range_m)[0]
        if not hit == pytest.approx(zc, rel=1e-6):
            continue                                   # occluded from this camera: the oracle says so
        _, depth = render_view(mars, CAM, T)
        assert depth[v0, u0] == pytest.approx(zc, rel=2e-6)
        checked += 1
    assert checked >= 5


def test_flat_plane_depth_closed_form():
    """On a plane z = h the depth of pixel (u, v) is (h - C_z) / (R d)_z for the ray d,
    where the hit lies between the outermost cell centres and within range; sky elsewhere."""
    world = _flat_world(height=0.25, n=400)              # 20 m x 20 m
    T = _left(world, 10.0, 10.0, 0.4, pitch=0.05, roll=-0.04)
    _, depth = render_view(world, CAM, T)
    uv = _grid_uv(1)
    d = ref.pixel_rays(CAM.K, T[:3, :3], uv)
    C = T[:3, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (0.25 - C[2]) / d[:, 2]
    P = C + t[:, None] * d
    lo, hi = 0.025, 20.0 - 0.025
    seen = (t > 0) & (P[:, 0] >= lo) & (P[:, 0] <= hi) & (P[:, 1] >= lo) & (P[:, 1] <= hi) \
        & (t * np.linalg.norm(d, axis=1) <= CAM.max_range_m)
    expect = np.where(seen, t, np.inf).reshape(480, 640)
    both = np.isfinite(expect) & np.isfinite(depth)
    assert np.mean(np.isfinite(expect) != np.isfinite(depth)) < 1e-3      # only along the map's edge
    assert np.isfinite(depth).mean() > 0.5
    np.testing.assert_allclose(depth[both], expect[both], rtol=2e-6)


def _box_world():
    z = np.zeros((200, 200), np.float32)                 # 10 m x 10 m, a 1 m x 1 m box 0.4 m tall
    z[90:110, 120:140] = 0.4
    return World(TerrainMap(z, 0.05), planet="mars")


REF_POSES = {
    "level": ("mars", (15.0, 15.0, 0.3, 0.0, 0.0)),
    "tilted": ("mars", (15.0, 15.0, 2.0, math.radians(-8.0), math.radians(10.0))),
    "nose_down_steep": ("mars", (12.0, 18.0, -1.2, math.radians(15.0), math.radians(-5.0))),
    "map_edge_outward": ("mars", (1.0, 27.0, math.radians(135.0), 0.0, 0.0)),
    "box": ("box", (3.5, 5.0, 0.0, 0.0, 0.0)),
}


@pytest.mark.parametrize("name", sorted(REF_POSES))
def test_depth_matches_reference_ray_caster(name, mars):
    which, (x, y, yaw, pitch, roll) = REF_POSES[name]
    world = mars if which == "mars" else _box_world()
    tm = world.terrain
    T = _left(world, x, y, yaw, pitch, roll)
    _, depth = render_view(world, CAM, T)
    uv = _grid_uv(8)
    expect = ref.ray_cast_depth(tm.elevation_m, tm.origin_xy_m, tm.cell_size_m, T, CAM.K, uv, CAM.max_range_m)
    got = depth[uv[:, 1], uv[:, 0]].astype(np.float64)
    sky_mismatch = np.mean(np.isfinite(expect) != np.isfinite(got))
    both = np.isfinite(expect) & np.isfinite(got)
    rel = np.abs(got[both] - expect[both]) / expect[both]
    dist = expect[both] * np.linalg.norm(ref.pixel_rays(CAM.K, np.eye(3), uv[both]), axis=1)
    near = dist < exact_range_m(CAM, tm.cell_size_m)
    q = np.percentile(rel[near], [50, 99, 100])
    print(f"\n{name}: {both.sum()} hits, sky mismatch {sky_mismatch:.2%}; near field ({near.sum()}) rel. error "
          f"p50 {q[0]:.1e} p99 {q[1]:.1e} max {q[2]:.1e}", end="")
    if (~near).any():
        qf = np.percentile(rel[~near], [50, 90, 100])
        print(f"; far field ({(~near).sum()}) p50 {qf[0]:.1e} p90 {qf[1]:.1e} max {qf[2]:.1e}", end="")
        assert qf[0] < 1e-2
    assert both.sum() > 1000
    assert sky_mismatch < 0.005
    assert q[0] < 1e-6                                   # float32 rounding
    assert np.mean(rel[near] > 1e-5) < 0.005             # a few pixel centres on silhouettes may differ


@settings(max_examples=12)
@given(x=st.floats(6.0, 24.0), y=st.floats(6.0, 24.0), yaw=st.floats(-math.pi, math.pi),
       pitch=st.floats(-0.3, 0.3), roll=st.floats(-0.3, 0.3), dz=st.floats(0.0, 1.0))
def test_back_projected_depth_lies_on_the_surface(mars, x, y, yaw, pitch, roll, dz):
    """Every pixel with a depth (within the full-resolution range) back-projects onto the mesh."""
    T = _left(mars, x, y, yaw, pitch, roll, dz=dz)
    _, depth = render_view(mars, CAM, T)
    P = depth_to_points(CAM, depth, T)
    ok = np.isfinite(depth) & (np.linalg.norm(P - T[:3, 3], axis=-1) < exact_range_m(CAM, 0.05))
    tm = mars.terrain
    h = ref.surface_height(tm.elevation_m, tm.origin_xy_m, tm.cell_size_m, P[ok][:, 0], P[ok][:, 1])
    assert np.isfinite(h).all()
    assert np.abs(P[ok][:, 2] - h).max() < 2e-4


def test_level_of_detail_leaves_no_cracks():
    """Far blocks are drawn coarser; skirts close the cracks where levels meet: no isolated sky
    pixel inside the terrain (in these poses, without skirts, a few appear)."""
    world = World.generate("moon", size_m=50.0, cell_size_m=0.05, seed=7)
    rng = np.random.default_rng(0)
    holes = 0
    for _ in range(6):
        x, y = rng.uniform(12.0, 38.0, 2)
        _, d = render_view(world, CAM, _left(world, x, y, rng.uniform(-math.pi, math.pi)))
        near = np.isfinite(d) & (d < 25.0)
        holes += int((np.isinf(d[1:-1, 1:-1]) & near[:-2, 1:-1] & near[2:, 1:-1] & near[1:-1, :-2]
                      & near[1:-1, 2:]).sum())
    assert holes == 0


def test_nan_cells_are_holes():
    """Triangles with a NaN vertex are not drawn: nothing is seen on them, and rays pass through."""
    z = np.zeros((200, 200), np.float32)
    z[100:140, 80:120] = np.nan
    world = World(TerrainMap(z, 0.05), planet="mars")
    T = _left(world, 5.0, 3.0, math.pi / 2)             # looking north, over the hole
    _, depth = render_view(world, CAM, T)
    P = depth_to_points(CAM, depth, T)
    ok = np.isfinite(depth)
    h = ref.surface_height(z, (0.0, 0.0), 0.05, P[ok][:, 0], P[ok][:, 1])
    assert np.isfinite(h).all() and np.abs(P[ok][:, 2] - h).max() < 1e-4
    hole = (P[..., 0] > 4.0) & (P[..., 0] < 6.0) & (P[..., 1] > 5.0) & (P[..., 1] < 7.0)
    assert not hole[ok].any()
    # the hole is in view: the rays through it see the ground beyond it (or sky), not the hole
    uv, _ = project_points(CAM, T, [[5.0, 6.0, 0.0]])
    u, v = np.round(uv[0]).astype(int)
    assert 0 <= u < 640 and 0 <= v < 480 and (not np.isfinite(depth[v, u]) or P[v, u, 1] > 6.9)


def test_project_points_and_depth_to_points_round_trip(mars):
    T = _left(mars, 15.0, 15.0, 0.3)
    _, depth = render_view(mars, CAM, T)
    P = depth_to_points(CAM, depth, T)
    ok = np.isfinite(depth)
    uv, z = project_points(CAM, T, P[ok])
    vv, uu = np.nonzero(ok)
    np.testing.assert_allclose(uv, np.stack([uu, vv], 1), atol=1e-6)
    np.testing.assert_allclose(z, depth[ok], rtol=1e-9)
    behind, _ = project_points(CAM, T, T[:3, 3] - T[:3, 2])        # a point behind the camera
    assert np.isnan(behind).all()
    assert np.isnan(depth_to_points(CAM, depth)[~ok]).all()


# =============================================================================== stereo
def test_stereo_disparity_matches_depth(mars):
    """OpenCV SGBM on the rendered pair (an independent estimator) finds fx * B / Z."""
    rend = StereoRenderer(mars, CAM)
    frame = rend.render(_body(mars, 15.0, 15.0, 0.3), rng=np.random.default_rng(0))
    sgbm = cv2.StereoSGBM_create(minDisparity=0, numDisparities=96, blockSize=5, P1=8 * 25, P2=32 * 25,
                                 uniquenessRatio=10, speckleWindowSize=100, speckleRange=2,
                                 mode=cv2.STEREO_SGBM_MODE_HH)
    disp = sgbm.compute(frame.left, frame.right).astype(np.float64) / 16.0
    truth = CAM.fx_px * CAM.baseline_m / frame.depth_m
    ok = (disp > 0) & np.isfinite(frame.depth_m) & (truth < 90)
    ok[:, :100] = False                                  # no match possible left of the right image
    err = np.abs(disp - truth)[ok]
    print(f"\nSGBM: {ok.mean():.1%} of pixels, |error| median {np.median(err):.3f} px, "
          f"p90 {np.percentile(err, 90):.3f} px")
    assert ok.mean() > 0.5
    assert np.median(err) < 0.25
    assert np.mean(err < 1.0) > 0.97


def test_right_camera_sits_baseline_along_left_x(mars):
    rend = StereoRenderer(mars, CAM)
    Tl, Tr = rend.poses(_body(mars, 15.0, 15.0, 0.3, 0.1, -0.2))
    rel = np.linalg.inv(Tl) @ Tr
    np.testing.assert_allclose(rel[:3, :3], np.eye(3), atol=1e-12)
    np.testing.assert_allclose(rel[:3, 3], [CAM.baseline_m, 0, 0], atol=1e-12)


def test_stereo_frame_contents(mars):
    rend = StereoRenderer(mars, CAM)
    Tb = _body(mars, 12.0, 14.0, -0.5, 0.05, 0.02)
    f = rend.render(Tb, t_s=3.5, seq=7)
    assert isinstance(f, StereoFrame)
    assert f.left.shape == f.right.shape == f.depth_m.shape == (480, 640)
    assert f.left.dtype == f.right.dtype == np.uint8 and f.depth_m.dtype == np.float32
    np.testing.assert_allclose(f.K, CAM.K)
    assert f.baseline_m == CAM.baseline_m and f.t_s == 3.5 and f.seq == 7
    np.testing.assert_allclose(f.T_body_left, T_body_cam(CAM, "left"))
    np.testing.assert_allclose(f.T_world_left, Tb @ T_body_cam(CAM, "left"))
    img, depth = render_view(mars, CAM, f.T_world_left)
    assert np.array_equal(img, f.left) and np.array_equal(depth, f.depth_m)
    img_r, none = render_view(mars, CAM, Tb @ T_body_cam(CAM, "right"), with_depth=False)
    assert none is None and np.array_equal(img_r, f.right)


# =============================================================================== determinism, caching
def test_same_world_seed_pose_give_identical_bytes():
    frames = []
    for _ in range(2):
        world = World.generate("mars", size_m=12.0, cell_size_m=0.05, seed=4)
        rend = StereoRenderer(world, CAM)
        Tb = _body(world, 6.0, 6.0, 0.2)
        frames.append(rend.render(Tb, rng=world.rng("rover0.camera")))
        frames.append(rend.render(Tb, rng=world.rng("rover0.camera")))
    for f in frames[1:]:
        for k in ("left", "right", "depth_m"):
            assert getattr(f, k).tobytes() == getattr(frames[0], k).tobytes()
    # different noise draws differ, the scene does not
    world = World.generate("mars", size_m=12.0, cell_size_m=0.05, seed=4)
    g = StereoRenderer(world, CAM).render(_body(world, 6.0, 6.0, 0.2), rng=np.random.default_rng(99))
    assert not np.array_equal(g.left, frames[0].left)
    assert np.array_equal(g.depth_m, frames[0].depth_m)


def test_per_world_data_is_cached_and_shared(mars):
    StereoRenderer(mars, CAM)
    keys = [k for k in mars.cache if k[0] == "sim.camera"]
    assert any(k[1] == "shadow" for k in keys) and any(k[1] == "scene" for k in keys)
    n = len(mars.cache)
    second = StereoRenderer(mars, dataclasses.replace(CAM, baseline_m=0.2))
    assert len(mars.cache) == n and second.precompute_s == StereoRenderer(mars, CAM).precompute_s
    assert shadow_map(mars) is shadow_map(mars)


# =============================================================================== photometry
def test_sky_above_the_horizon(mars):
    """Looking up, the upper image is sky: depth inf and exactly the planet's sky brightness."""
    T = _left(mars, 15.0, 15.0, 1.0, pitch=math.radians(-50.0))     # nose up: optical axis 25 deg up
    img, depth = render_view(mars, CAM, T)
    sky_dn = round(mars.planet.sky_brightness * CAM.exposure * LIT_GROUND_DN)
    assert np.isinf(depth[:200]).all()
    assert (img[:200] == sky_dn).all()
    moon_sky = render_view(World.generate("moon", size_m=10.0, seed=1), CAM, T)[0]
    assert (moon_sky[:200] == 0).all()                 # airless: black sky


def test_exposure_scales_radiance():
    world = _flat_world()
    T = _left(world, 10.0, 10.0, 0.0)
    a = render_view(world, CAM, T)[0].astype(float)
    b = render_view(world, dataclasses.replace(CAM, exposure=0.5), T)[0].astype(float)
    ok = (a > 10) & (a < 250)
    assert np.median(b[ok] / a[ok]) == pytest.approx(0.5, abs=0.02)
    # flat, sunlit, default soil: LIT_GROUND_DN on average over the map (texture and slow albedo
    # variations modulate around it)
    means = [render_view(world, CAM, _left(world, x, y, yaw))[0][240:].mean()
             for x in (4.0, 10.0, 16.0) for y in (4.0, 10.0, 16.0) for yaw in (0.0, 2.0, 4.0)]
    assert np.mean(means) == pytest.approx(LIT_GROUND_DN, rel=0.1)


def test_low_sun_casts_more_shadow(moon):
    gen_world = World.generate("moon", size_m=20.0, cell_size_m=0.05, seed=11)
    high_planet = dataclasses.replace(load_planet("moon"), sun_elevation_deg=60.0)
    high = World(gen_world.terrain, planet=high_planet, rocks=gen_world.rocks)
    low_frac = 1.0 - shadow_map(moon).mean()
    high_frac = 1.0 - shadow_map(high).mean()
    assert low_frac > 0.1 and low_frac > 5 * high_frac
    T = _left(moon, 10.0, 10.0, 0.0)
    dark = [np.mean(render_view(w, CAM, T)[0] < 0.3 * LIT_GROUND_DN) for w in (moon, high)]
    print(f"\nshadowed vertices: low sun {low_frac:.1%}, high sun {high_frac:.1%}; dark pixels {dark}")
    assert dark[0] > 2 * dark[1]


@pytest.mark.parametrize("azimuth", [100.0, 10.0, 200.0, 290.0])
def test_shadow_map_matches_brute_force_horizon(azimuth):
    """Shadows from the sweep agree with marching toward the sun over the mesh at each vertex."""
    planet = dataclasses.replace(load_planet("moon"), sun_azimuth_deg=azimuth, sun_elevation_deg=12.0)
    gen = World.generate("moon", size_m=12.0, cell_size_m=0.05, seed=2)
    world = World(gen.terrain, planet=planet, rocks=gen.rocks)
    lit = shadow_map(world)
    rng = np.random.default_rng(int(azimuth))
    rc = rng.integers(0, 240, (400, 2))
    tm = world.terrain
    shadow = ref.in_shadow(tm.elevation_m, tm.origin_xy_m, tm.cell_size_m, world.sun_dir_world, rc)
    agree = np.mean((lit[rc[:, 0], rc[:, 1]] < 0.5) == shadow)
    print(f"\nazimuth {azimuth}: {shadow.mean():.1%} shadowed, agreement {agree:.1%}")
    assert shadow.mean() > 0.05
    assert agree > 0.95


def test_rocks_and_soils_set_albedo():
    """A rock from the rock table is brighter than the soil around it; a darker soil is darker."""
    soils = (Soil(albedo=0.25), Soil(albedo=0.125))
    idx = np.zeros((400, 400), np.uint8)
    idx[:, 200:] = 1                                     # east half: half the albedo
    rocks = Rocks(x_m=[8.0], y_m=[12.0], diameter_m=[1.0], height_m=[0.0])   # paint only, no relief
    world = World(TerrainMap(np.zeros((400, 400), np.float32), 0.05), planet="mars", soils=soils,
                  soil_index=idx, rocks=rocks)
    T = _left(world, 10.0, 8.0, math.pi / 2)              # looking north across the soil boundary
    img, depth = render_view(world, CAM, T)
    P = depth_to_points(CAM, depth, T)
    ok = np.isfinite(depth) & (depth < 8)
    rock = ok & (np.hypot(P[..., 0] - 8.0, P[..., 1] - 12.0) < 0.4)
    west = ok & (P[..., 0] < 9.5) & ~(np.hypot(P[..., 0] - 8.0, P[..., 1] - 12.0) < 0.6)
    east = ok & (P[..., 0] > 10.5)
    assert rock.sum() > 500 and west.sum() > 5000 and east.sum() > 5000
    m_rock, m_west, m_east = (float(img[m].mean()) for m in (rock, west, east))
    print(f"\nmean DN: rock {m_rock:.1f}, west soil {m_west:.1f}, east soil {m_east:.1f}")
    assert m_rock > 1.2 * m_west
    assert m_east / m_west == pytest.approx(0.5, abs=0.1)


def test_noise_statistics():
    """Pixel noise is zero-mean Gaussian with camera.noise_std_dn."""
    cam = dataclasses.replace(CAM, noise_std_dn=4.0)
    world = _flat_world()
    T = _left(world, 10.0, 10.0, 0.0)
    clean = render_view(world, cam, T)[0].astype(float)
    noisy = render_view(world, cam, T, rng=np.random.default_rng(5))[0].astype(float)
    ok = (clean > 20) & (clean < 235)
    d = (noisy - clean)[ok]
    sd = math.sqrt(max(d.var() - 1.0 / 6.0, 0.0))       # minus the rounding of both images
    print(f"\nnoise: mean {d.mean():+.3f}, std {sd:.3f} (want 4), within 1 sigma {np.mean(np.abs(d) <= 4):.3f}")
    assert abs(d.mean()) < 0.05
    assert sd == pytest.approx(4.0, rel=0.03)
    assert np.mean(np.abs(d) <= 4.5) == pytest.approx(0.7286, abs=0.02)    # P(|N| < 4.5/4) with rounding ±0.5
    # left and right noise are independent draws
    f = StereoRenderer(world, cam).render(_body(world, 10.0, 10.0, 0.0), rng=np.random.default_rng(5))
    assert not np.array_equal(f.left.astype(int) - clean, np.zeros_like(clean))


# =============================================================================== trackable texture
def test_texture_gives_well_spread_corners_and_tracks(mars):
    rend = StereoRenderer(mars, CAM)
    Tb = _body(mars, 15.0, 15.0, 0.3)
    f0 = rend.render(Tb, rng=np.random.default_rng(1))
    pts = cv2.goodFeaturesToTrack(f0.left, maxCorners=2000, qualityLevel=0.01, minDistance=7)
    assert pts is not None
    pts = pts.reshape(-1, 2)
    ground = np.isfinite(f0.depth_m)
    rows = np.nonzero(ground.any(axis=1))[0]
    grid = np.zeros((4, 4), int)
    v_lo, v_hi = rows.min(), rows.max() + 1
    for u, v in pts:
        if v >= v_lo:
            grid[min(int(4 * (v - v_lo) / (v_hi - v_lo)), 3), min(int(u / 160), 3)] += 1
    print(f"\n{len(pts)} corners; per cell of a 4x4 grid over the ground:\n{grid}")
    assert len(pts) > 500
    assert (grid >= 10).sum() >= 14
    # KLT between two poses 5 cm and 1 deg apart agrees with the ground-truth motion
    Tb1 = Tb @ T_world_body(0.05, 0.0, 0.0, math.radians(1.0), 0.0, 0.0)
    f1 = rend.render(Tb1, rng=np.random.default_rng(2))
    p0 = pts[np.isfinite(f0.depth_m[pts[:, 1].astype(int), pts[:, 0].astype(int)])].astype(np.float32)
    p1, st_, _ = cv2.calcOpticalFlowPyrLK(f0.left, f1.left, p0.reshape(-1, 1, 2), None, winSize=(21, 21),
                                          maxLevel=3)
    good = st_.ravel() == 1
    P = depth_to_points(CAM, f0.depth_m, f0.T_world_left)
    # depth at the nearest pixel; the feature sits within half a pixel of it
    ij = np.round(p0[good]).astype(int)
    world_pts = P[ij[:, 1], ij[:, 0]]
    expect, _ = project_points(CAM, f1.T_world_left, world_pts)
    expect += (p0[good] - ij)                             # sub-pixel offset, to first order
    err = np.linalg.norm(p1.reshape(-1, 2)[good] - expect, axis=1)
    print(f"KLT: {good.sum()} tracked of {len(p0)}, |error| median {np.median(err):.3f} px")
    assert good.mean() > 0.9
    assert np.median(err) < 0.3


# =============================================================================== bad inputs, odd poses
@pytest.mark.parametrize("T, match", [
    (np.eye(3), "4x4"),
    (np.eye(4)[:3], "4x4"),
    (np.diag([2.0, 2.0, 2.0, 1.0]), "rotation"),
    (np.diag([1.0, 1.0, -1.0, 1.0]), "rotation"),
    (np.full((4, 4), np.nan), "finite"),
    (np.vstack([np.eye(4)[:3], [0, 0, 1, 1]]), "bottom row"),
])
def test_bad_poses_raise_clear_errors(mars, T, match):
    with pytest.raises(ValueError, match=match):
        render_view(mars, CAM, T)
    with pytest.raises(ValueError, match="T_world_body.*" + match):
        StereoRenderer(mars, CAM).render(T)


def test_bad_arguments_raise_clear_errors(mars):
    T = _left(mars, 15.0, 15.0, 0.0)
    with pytest.raises(TypeError, match="world"):
        render_view(mars.terrain, CAM, T)
    with pytest.raises(TypeError, match="camera"):
        render_view(mars, "osr", T)
    with pytest.raises(TypeError, match="rng"):
        render_view(mars, CAM, T, rng=42)
    with pytest.raises(TypeError, match="4x4"):
        render_view(mars, CAM, "pose")
    rend = StereoRenderer(mars, CAM)
    with pytest.raises(ValueError, match="t_s"):
        rend.render(np.eye(4), t_s=float("nan"))
    with pytest.raises(ValueError, match="seq"):
        rend.render(np.eye(4), seq=1.5)
    with pytest.raises(ValueError, match="xyz_world"):
        project_points(CAM, T, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="depth_m"):
        depth_to_points(CAM, np.zeros((10, 10)))


def test_cameras_outside_the_map_and_underground(mars):
    # far outside, looking away: all sky
    img, depth = render_view(mars, CAM, T_world_body(-100.0, 15.0, 0.0, math.pi, 0.0, 0.0) @ T_body_cam(CAM))
    assert np.isinf(depth).all() and (img == img[0, 0]).all()
    # outside, looking at the map: partly terrain
    _, depth = render_view(mars, CAM, T_world_body(-3.0, 15.0, 0.5, 0.0, 0.0, 0.0) @ T_body_cam(CAM))
    assert 0.05 < np.isfinite(depth).mean() < 0.95
    # under the surface (a bad pose, not an error): some output, no crash
    img, depth = render_view(mars, CAM, _left(mars, 15.0, 15.0, 0.0, dz=-3.0))
    assert img.shape == (480, 640) and depth.dtype == np.float32
    # tiny world (one vertex row: no triangles) and a camera inside a cliff's near plane
    one_row = World(TerrainMap(np.zeros((1, 50), np.float32), 0.05), planet="mars")
    assert np.isinf(render_view(one_row, CAM, T_world_body(1.0, 0.0, 1.0, 0, 0, 0) @ T_body_cam(CAM))[1]).all()
    wall = np.zeros((100, 100), np.float32)
    wall[:, 52:] = 5.0
    w = World(TerrainMap(wall, 0.05), planet="mars")
    _, depth = render_view(w, CAM, T_world_body(2.44, 2.5, 0.0, 0.0, 0.0, 0.0) @ T_body_cam(CAM))
    assert np.isfinite(depth).mean() > 0.5 and 0.01 <= depth.min() < 0.1    # clipped at the near plane



@pytest.mark.parametrize("name", sorted(REF_POSES))
def test_render_depth_equals_render_views_depth(name, mars):
    """The depth-only path (no shading) gives render_view's depth bit for bit, from a fresh world (mesh
    alone) and from one whose full scene is cached, also with a short range and a small image."""
    which, (x, y, yaw, pitch, roll) = REF_POSES[name]
    world = mars if which == "mars" else _box_world()
    T = _left(world, x, y, yaw, pitch, roll)
    for cam in (CAM, dataclasses.replace(CAM, width_px=160, height_px=120, max_range_m=6.0)):
        fresh = World(world.terrain, planet=world.planet, seed=3)
        d_fresh = render_depth(fresh, cam, T)
        _, expect = render_view(world, cam, T)
        np.testing.assert_array_equal(d_fresh, expect)
        np.testing.assert_array_equal(render_depth(world, cam, T), expect)
        assert d_fresh.dtype == np.float32 and np.isfinite(expect).any()
