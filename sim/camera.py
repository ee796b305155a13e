"""Simulated stereo navigation cameras: rectified 8-bit grey pairs and ground-truth depth.

What is drawn
-------------
* **Surface** — the triangle mesh through the cell-centre vertices of ``world.terrain``
  (:data:`SURFACE`): each quad of vertices ``(r, c), (r, c+1), (r+1, c+1), (r+1, c)`` is split
  along the diagonal ``(r, c)–(r+1, c+1)``. A triangle with a NaN vertex is not there, and
  nothing is drawn beyond the outermost cell centres. Rocks are part of the height grid
  (``sim.terrain`` stamps them); the rock table only gives them their own albedo and
  texture. Within :func:`exact_range_m` of the camera (15 m for the default camera on a
  5 cm grid) every triangle is drawn; farther, blocks of the grid are drawn from every 2nd
  or 4th vertex while that spacing projects to at most 3 pixels (cracks between levels are
  closed by skirts), so far depth follows a slightly coarser surface (see
  :mod:`sim._render_kernels` and ``benchmarks/bench_render.py`` for the error by range).
* **Depth** — camera-frame ``z`` of the first surface hit along each pixel centre's ray
  (metres, float32); ``inf`` where the ray meets nothing within ``camera.max_range_m``
  (a distance along the ray, measured from the optical centre).
* **Radiance** — Lambert with the sun ``world.sun_dir_world``: per vertex,
  ``albedo × (lit × max(0, n·s) + ambient)`` with ``lit`` from a cast-shadow sweep
  (:func:`shadow_map`) and ``ambient = world.planet.ambient``, relative to flat sunlit ground
  of the planet's soil (``sin(elevation) + ambient``). Albedo: ``world.soil_params``
  (``"albedo"``) through ``world.soil_index``, slow variations (~1–80 m, ±~17 %), rocks
  (the rock table rasterised onto the grid) 1.45× brighter with a tone per rock and a veined
  texture. Interpolated bilinearly between vertices and modulated by fine detail — a fractal
  texture with pebbles, wavelengths 1 cm to 2.5 m, in world coordinates, so the same ground
  looks the same from both cameras and every pose — mip-mapped by the pixel's footprint.
* **Sky** — ``world.planet.sky_brightness`` (relative to flat sunlit ground), no texture.
* **Sensor** — ``DN = exposure × LIT_GROUND_DN × radiance + noise_std_dn × N(0, 1)``,
  rounded and clipped to ``uint8``. Noise is drawn only when an ``rng`` is given (one
  integer seed per image from it; the per-pixel normals come from a counter-based hash).

Per-world data (shadow map, shade map, texture, block bounds) is computed once and kept in
``world.cache`` under keys starting with ``"sim.camera"``, so all renderers of a world share
it; a new sun direction replaces the previous entry.
"""
from __future__ import annotations

import math
import time

import numpy as np

from drivers.camera import StereoFrame
from nav.config import Camera

from .frames import T_body_cam
from .world import SOIL_FIELDS, World

__all__ = ["render_view", "render_depth", "StereoRenderer", "project_points", "depth_to_points", "shadow_map",
           "exact_range_m", "SURFACE", "LIT_GROUND_DN"]

#: How the height grid becomes a surface (the test oracle uses the same definition).
SURFACE = "triangles: each vertex quad split along the (r, c)-(r+1, c+1) diagonal"

#: DN of flat, sunlit ground of the planet's default soil at ``exposure = 1`` (before texture).
LIT_GROUND_DN = 100.0

# Scene appearance (passed to the kernels as arguments).
_TEXEL_M = 0.005           # detail texture: 5 mm texels ...
_TILE_TEXELS = 2048        # ... in a periodic 10.24 m tile
_TILE_STD = 0.35           # std of the fractal part of the tile, before clipping to [-1, 1]
_TILE_LONGEST_M = 2.5      # longest wavelength in the tile's fractal part
_PEBBLES_PER_M2 = 300.0    # pebbles in the detail tile ...
_PEBBLE_D_M = (0.006, 0.04)  # ... log-uniform diameters (covering ~10 % of the ground)
_CONTRAST_SOIL = 0.6       # radiance modulation by the detail texture on soil ...
_CONTRAST_ROCK = 0.35      # ... and on rocks
_ROCK_ALBEDO = 1.45        # rock albedo / soil albedo (times a tone per rock, 0.75-1.25)
_ALBEDO_VARIATION = 0.35   # amplitude of the slow albedo variation
_ALBEDO_MAGNIFY = 32.0     # slow variation = the tile magnified this much (~1-80 m)
_LOD_BIAS = 0.0            # mip level = log2(footprint / texel) + bias
_BLOCK = 16                # quads per side of a rasterisation block
_LOD_PX = 3.0              # far blocks: coarser vertex spacing while it projects to <= this many pixels
_MAX_LEVEL = 2             # ... down to every 4th vertex
_NEAR_M = 0.01             # near clipping plane
_EDGE_EPS = 1e-7           # edge tolerance (barycentric units): shared edges leave no gaps


_GAUSS = []


def _gauss_table(n_bins: int = 4096) -> np.ndarray:
    """Piecewise-linear inverse CDF of the standard normal on ``n_bins`` equal-probability
    bins (end points at probabilities 0.25/n and 1 - 0.25/n), scaled to unit variance."""
    if not _GAUSS:
        from statistics import NormalDist

        nd = NormalDist()
        p = np.arange(n_bins + 1) / n_bins
        p[0], p[-1] = 0.25 / n_bins, 1.0 - 0.25 / n_bins
        t = np.array([nd.inv_cdf(float(x)) for x in p])
        a, b = t[:-1], t[1:]
        var = float(np.mean((a * a + a * b + b * b) / 3.0))   # each bin uniform on [a, b], probability 1/n
        _GAUSS.append((t / math.sqrt(var)).astype(np.float32))
    return _GAUSS[0]


def _kernels():
    from . import _render_kernels

    return _render_kernels


# ============================================================================ validation
def _check_world(world) -> None:
    if not isinstance(world, World):
        raise TypeError(f"world must be a sim.world.World, got {type(world).__name__}")


def _check_camera(camera) -> None:
    if not isinstance(camera, Camera):
        raise TypeError(f"camera must be a nav.config.Camera, got {type(camera).__name__}")


def _check_pose(T, name: str) -> np.ndarray:
    """A 4x4 float64 rigid transform, or a ValueError naming ``name``."""
    try:
        a = np.array(T, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a 4x4 array of numbers, got {type(T).__name__}") from None
    if a.shape != (4, 4):
        raise ValueError(f"{name} must be a 4x4 homogeneous transform, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} must be finite, got {a.tolist()}")
    if not np.allclose(a[3], (0.0, 0.0, 0.0, 1.0), atol=1e-9):
        raise ValueError(f"{name} bottom row must be [0, 0, 0, 1], got {a[3].tolist()}")
    R = a[:3, :3]
    err = float(np.abs(R.T @ R - np.eye(3)).max())
    if err > 1e-6 or np.linalg.det(R) <= 0:
        raise ValueError(f"{name} rotation block must be a proper rotation (R^T R = I within 1e-6, det +1), "
                         f"got max |R^T R - I| = {err:.2e}, det = {np.linalg.det(R):.6f}")
    return a


def _check_rng(rng) -> None:
    if rng is not None and not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator or None, got {type(rng).__name__}")


def _status(name: str, status: int) -> None:
    if status != 0:  # pragma: no cover - inputs are validated before the kernels run
        raise RuntimeError(f"{name} failed with status {status}")


# ============================================================================ per-world data
def _cached(world: World, key, build):
    val = world.cache.get(key)
    if val is None:
        val = build()
        world.cache[key] = val
    return val


def _sun_key(world: World) -> tuple:
    return tuple(round(float(v), 12) for v in world.sun_dir_world)


def shadow_map(world: World) -> np.ndarray:
    """Fraction of direct sunlight reaching each terrain vertex (cast shadows only).

    A sweep toward the sun (``world.sun_dir_world``) over the grid carries the highest sun
    ray grazing the terrain; a vertex is lit (1) above it, shadowed (0) below, with a
    penumbra one cell wide. NaN vertices give 0. Cached in ``world.cache``.

    Returns
    -------
    (rows, cols) float32, read-only.
    """
    _check_world(world)
    key = ("sim.camera", "shadow", _sun_key(world))
    return _cached(world, key, lambda: _build_shadow(world))


def _build_shadow(world: World) -> np.ndarray:
    kern = _kernels()
    z = world.terrain.elevation_m
    cell = world.terrain.cell_size_m
    sx, sy, sz = (float(v) for v in world.sun_dir_world)
    horiz = math.hypot(sx, sy)
    if sz <= 0.0:
        lit = np.zeros(z.shape, np.float32)
    elif horiz < 1e-12:
        lit = np.isfinite(z).astype(np.float32)
    else:
        tan_el = sz / horiz
        transpose = abs(sy) > abs(sx)
        if transpose:          # sweep along rows instead: swap the roles of x and y
            zz = np.ascontiguousarray(z.T)
            a, b = sy, sx
        else:
            zz = z
            a, b = sx, sy
        ray_h = np.empty(zz.shape, np.float32)
        lit = np.empty(zz.shape, np.float32)
        _status("_sweep_shadow", kern._sweep_shadow(zz, cell, 1.0 if a > 0 else -1.0, b / abs(a), tan_el,
                                                    max(cell * tan_el, 1e-6), ray_h, lit))
        if transpose:
            lit = np.ascontiguousarray(lit.T)
    lit.setflags(write=False)
    return lit


def _build_texture(world: World):
    """Periodic detail tile (fractal + pebbles) in [-1, 1] and its box-filtered mip pyramid,
    flattened: ``(mips float32, offsets int64, n0)``."""
    kern = _kernels()
    n = _TILE_TEXELS
    rng = world.rng("sim.camera.texture")
    spec = np.fft.rfft2(rng.standard_normal((n, n)))
    ky = np.fft.fftfreq(n, d=_TEXEL_M)
    kx = np.fft.rfftfreq(n, d=_TEXEL_M)
    k = np.hypot(ky[:, None], kx[None, :])
    amp = np.maximum(k, 1.0 / _TILE_LONGEST_M) ** -0.7
    amp[0, 0] = 0.0
    tile = np.fft.irfft2(spec * amp, s=(n, n))
    tile *= _TILE_STD / tile.std()
    tile = tile.astype(np.float32)
    area_m2 = (n * _TEXEL_M) ** 2
    m = int(rng.poisson(_PEBBLES_PER_M2 * area_m2))
    px = rng.uniform(0, n, m)
    py = rng.uniform(0, n, m)
    radius = 0.5 / _TEXEL_M * np.exp(rng.uniform(math.log(_PEBBLE_D_M[0]), math.log(_PEBBLE_D_M[1]), m))
    value = rng.choice([-1.0, 1.0], m) * rng.uniform(0.3, 0.8, m)
    _status("_stamp_discs", kern._stamp_discs(tile, px, py, radius, value, 1.0))
    np.clip(tile, -1.0, 1.0, out=tile)
    levels = [tile]
    while levels[-1].shape[0] > 1:
        a = levels[-1]
        levels.append((0.25 * (a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2])).astype(np.float32))
    offsets = np.cumsum([0] + [lv.size for lv in levels[:-1]]).astype(np.int64)
    mips = np.concatenate([lv.ravel() for lv in levels]).astype(np.float32)
    return mips, offsets, n


def _texture(world: World):
    return _cached(world, ("sim.camera", "texture"), lambda: _build_texture(world))


def _tile_bilinear(mips, offsets, n0, s, t, level):
    """Numpy bilinear lookup of mip ``level`` at level-0 texel coordinates (for per-vertex use)."""
    n = n0 >> level
    sc = 1.0 / (1 << level)
    ss = s * sc - 0.5
    tt = t * sc - 0.5
    fs = np.floor(ss)
    ft = np.floor(tt)
    a = ss - fs
    b = tt - ft
    j0 = fs.astype(np.int64) & (n - 1)
    i0 = ft.astype(np.int64) & (n - 1)
    j1 = (j0 + 1) & (n - 1)
    i1 = (i0 + 1) & (n - 1)
    lv = mips[offsets[level]:offsets[level] + n * n].reshape(n, n)
    top = lv[i0, j0] + a * (lv[i0, j1] - lv[i0, j0])
    bot = lv[i1, j0] + a * (lv[i1, j1] - lv[i1, j0])
    return top + b * (bot - top)


def _build_shade(world: World) -> np.ndarray:
    """Per-vertex base radiance (relative to flat sunlit ground) and rock cover, (rows, cols, 2)."""
    kern = _kernels()
    tm = world.terrain
    z = tm.elevation_m.astype(np.float64)
    rows, cols = z.shape
    cell = tm.cell_size_m
    ox, oy = tm.origin_xy_m
    sun = np.asarray(world.sun_dir_world, dtype=np.float64)
    ambient = float(world.planet.ambient)
    # vertex normals from central differences (one-sided at the edges; flat where unknown)
    gy = np.zeros_like(z)
    gx = np.zeros_like(z)
    if rows > 1:
        gy = np.gradient(z, cell, axis=0)
    if cols > 1:
        gx = np.gradient(z, cell, axis=1)
    gx = np.nan_to_num(gx, nan=0.0)
    gy = np.nan_to_num(gy, nan=0.0)
    lam = (-gx * sun[0] - gy * sun[1] + sun[2]) / np.sqrt(gx * gx + gy * gy + 1.0)
    irr = shadow_map(world) * np.maximum(lam, 0.0) + ambient
    flat = max(sun[2], 0.0) + ambient
    # albedo: soils, slow variation, rocks
    alb_col = SOIL_FIELDS.index("albedo")
    albedo = world.soil_params[:, alb_col][world.soil_index]
    mips, offsets, n0 = _texture(world)
    xs = (ox + (np.arange(cols) + 0.5) * cell)[None, :] / _TEXEL_M / _ALBEDO_MAGNIFY
    ys = (oy + (np.arange(rows) + 0.5) * cell)[:, None] / _TEXEL_M / _ALBEDO_MAGNIFY
    # a mip level whose texels span >= 4 vertices: smooth between vertices (wavelengths ~1-80 m)
    lev = min(max(2, math.ceil(math.log2(4.0 * cell / (_TEXEL_M * _ALBEDO_MAGNIFY)))), len(offsets) - 1)
    var = _tile_bilinear(mips, offsets, n0, 0.6 * xs + 0.8 * ys, -0.8 * xs + 0.6 * ys, lev)
    sd = float(var.std())
    if sd > 0:
        var = var / sd
    albedo = albedo * np.clip(1.0 + _ALBEDO_VARIATION * 0.5 * var, 0.3, 1.7)
    rock = np.zeros((rows, cols), np.float32)
    tone = np.ones((rows, cols), np.float32)
    rocks = world.rocks
    if len(rocks):
        rng = world.rng("sim.camera.rocks")
        tones = rng.uniform(0.75, 1.25, len(rocks))
        _status("_stamp_rock_mask", kern._stamp_rock_mask(ox, oy, cell, np.array(rocks.x_m), np.array(rocks.y_m),
                                                          np.array(rocks.diameter_m), tones, cell, rock, tone))
    albedo = albedo * (1.0 + rock * (_ROCK_ALBEDO * tone - 1.0))
    ref = max(float(world.planet.soil.albedo), 1e-3)
    out = np.empty((rows, cols, 2), np.float32)
    out[..., 0] = albedo / ref * irr / flat
    out[..., 1] = rock
    return out


class _Geometry:
    """The terrain mesh and its block bounds alone (what depth needs; no shading or texture)."""
    __slots__ = ("z", "ox", "oy", "cell", "block", "bzmin", "bzmax")

    def __init__(self, world: World):
        kern = _kernels()
        tm = world.terrain
        self.z = tm.elevation_m if tm.elevation_m.flags.writeable else tm.elevation_m.copy()  # kernel signature
        self.ox, self.oy = tm.origin_xy_m
        self.cell = tm.cell_size_m
        self.block = _BLOCK
        rows, cols = self.z.shape
        nbr = (max(rows - 1, 1) + _BLOCK - 1) // _BLOCK
        nbc = (max(cols - 1, 1) + _BLOCK - 1) // _BLOCK
        self.bzmin = np.empty((nbr, nbc), np.float32)
        self.bzmax = np.empty((nbr, nbc), np.float32)
        _status("_bound_blocks", kern._bound_blocks(self.z, _BLOCK, self.bzmin, self.bzmax))


class _Scene(_Geometry):
    """Everything the kernels need about one world (built once, shared through world.cache)."""
    __slots__ = ("shade", "mips", "mip_off", "n0", "sky", "build_s")

    def __init__(self, world: World):
        t0 = time.perf_counter()
        super().__init__(world)
        self.shade = _build_shade(world)
        self.mips, self.mip_off, self.n0 = _texture(world)
        self.sky = float(world.planet.sky_brightness)
        self.build_s = time.perf_counter() - t0


def _geometry(world: World):
    """A cached scene when one exists (it holds the same mesh), else the mesh alone (cached; it does not
    depend on the sun)."""
    for k, v in world.cache.items():
        if isinstance(k, tuple) and k[:2] == ("sim.camera", "scene"):
            return v
    key = ("sim.camera", "geometry")
    g = world.cache.get(key)
    if g is None:
        g = world.cache[key] = _Geometry(world)
    return g


def _scene(world: World) -> _Scene:
    key = ("sim.camera", "scene", _sun_key(world), float(world.planet.ambient), float(world.planet.sky_brightness))
    scene = world.cache.get(key)
    if scene is None:
        for k in [k for k in world.cache if isinstance(k, tuple) and k[:1] == ("sim.camera",)
                  and k[1] in ("scene", "shadow") and k[2] != key[2]]:
            del world.cache[k]                     # the sun moved: keep one entry per world
        scene = world.cache[key] = _Scene(world)
    return scene


# ============================================================================ rendering
def exact_range_m(camera: Camera, cell_size_m: float) -> float:
    """Distance from the camera within which the terrain is drawn at full resolution.

    Farther blocks of the grid are drawn from every 2nd (then 4th) vertex while that spacing
    still projects to at most ``_LOD_PX`` pixels across, with skirts closing the cracks;
    their depth follows the coarser mesh (see the benchmark's accuracy table).
    """
    _check_camera(camera)
    return 2.0 * camera.fx_px * float(cell_size_m) / _LOD_PX


def _rasterize(scene, camera: Camera, T: np.ndarray) -> np.ndarray:
    """Inverse depth (float32, 0 = nothing) of the terrain seen from camera pose ``T``."""
    kern = _kernels()
    h, w = camera.height_px, camera.width_px
    f, cx, cy = camera.fx_px, camera.cx_px, camera.cy_px
    R_cw = np.ascontiguousarray(T[:3, :3].T)
    C = np.ascontiguousarray(T[:3, 3])
    invz = np.zeros((h, w), np.float32)
    stats = np.zeros(7, np.int64)
    _status("_rasterize_terrain", kern._rasterize_terrain(
        scene.z, scene.ox, scene.oy, scene.cell, scene.block, scene.bzmin, scene.bzmax, R_cw, C, f, f, cx, cy,
        _NEAR_M, float(camera.max_range_m), _EDGE_EPS, _LOD_PX, _MAX_LEVEL, invz, stats))
    return invz


def _render(scene: _Scene, camera: Camera, T: np.ndarray, rng, with_depth: bool):
    kern = _kernels()
    h, w = camera.height_px, camera.width_px
    f, cx, cy = camera.fx_px, camera.cx_px, camera.cy_px
    R_wc = np.ascontiguousarray(T[:3, :3])
    C = np.ascontiguousarray(T[:3, 3])
    invz = _rasterize(scene, camera, T)
    sigma = float(camera.noise_std_dn)
    seed = 0
    if rng is not None and sigma > 0.0:
        seed = int(rng.integers(0, 2 ** 63 - 1))
    else:
        sigma = 0.0
    img = np.empty((h, w), np.uint8)
    depth = np.empty((h, w) if with_depth else (0, 0), np.float32)
    gain = float(camera.exposure) * LIT_GROUND_DN
    _status("_shade_pixels", kern._shade_pixels(
        invz, R_wc, C, f, f, cx, cy, float(camera.max_range_m), scene.ox, scene.oy, scene.cell, scene.shade,
        scene.mips, scene.mip_off, scene.n0, _TEXEL_M, _LOD_BIAS, _CONTRAST_SOIL, _CONTRAST_ROCK,
        gain, gain * scene.sky, sigma, seed, _gauss_table(), img, depth, bool(with_depth)))
    return img, (depth if with_depth else None)


def render_view(world: World, camera: Camera, T_world_cam, *, rng: np.random.Generator | None = None,
                with_depth: bool = True):
    """Render one camera view of a world's terrain.

    Parameters
    ----------
    world : sim.world.World
    camera : nav.config.Camera
        Image size, focal length (``fx_px``; square pixels, principal point ``cx_px, cy_px``),
        ``max_range_m``, ``exposure``, ``noise_std_dn``.
    T_world_cam : (4, 4) array
        Pose of the camera (OpenCV axes: x right, y down, z forward) in the world.
    rng : numpy.random.Generator, optional
        Source of the pixel noise (``camera.noise_std_dn``); ``None`` renders without noise.
    with_depth : bool
        Also return the depth map.

    Returns
    -------
    image : (h, w) uint8
    depth : (h, w) float32 or None
        Camera-frame ``z`` (metres) of the surface seen at each pixel centre; ``inf`` for sky.
    """
    _check_world(world)
    _check_camera(camera)
    T = _check_pose(T_world_cam, "T_world_cam")
    _check_rng(rng)
    return _render(_scene(world), camera, T, rng, bool(with_depth))


def render_depth(world: World, camera: Camera, T_world_cam) -> np.ndarray:
    """The depth map of :func:`render_view` alone (no shading, no texture: what a depth-only sensor
    model needs, a few times cheaper).

    Returns
    -------
    (h, w) float32
        Camera-frame ``z`` (metres) at each pixel centre; ``inf`` for sky and beyond ``max_range_m``
        (distance along the ray) — the same values :func:`render_view` returns.
    """
    _check_world(world)
    _check_camera(camera)
    T = _check_pose(T_world_cam, "T_world_cam")
    q = _rasterize(_geometry(world), camera, T).astype(np.float64)
    zz = np.full(q.shape, np.inf)
    seen = q > 0.0
    zz[seen] = 1.0 / q[seen]
    xn = (np.arange(q.shape[1], dtype=np.float64) - camera.cx_px) / camera.fx_px
    yn = (np.arange(q.shape[0], dtype=np.float64) - camera.cy_px) / camera.fx_px
    r2max = float(camera.max_range_m) * float(camera.max_range_m)
    with np.errstate(invalid="ignore"):
        far = zz * zz * (xn[None, :] * xn[None, :] + (yn * yn + 1.0)[:, None]) > r2max
    zz[far] = np.inf
    return zz.astype(np.float32)


class StereoRenderer:
    """Renders the stereo pair of ``camera`` (mounted per :func:`sim.frames.T_body_cam`) on a
    rover in ``world``. Per-world data is built on construction (or taken from ``world.cache``).

    Examples
    --------
    >>> cam = StereoRenderer(world, rover.camera)                         # doctest: +SKIP
    >>> frame = cam.render(T_world_body, t_s=world.time_s, seq=3, rng=world.rng("rover0.camera"))  # +SKIP
    """

    def __init__(self, world: World, camera: Camera):
        _check_world(world)
        _check_camera(camera)
        self.world = world
        self.camera = camera
        self.T_body_left = T_body_cam(camera, "left")
        self.T_body_right = T_body_cam(camera, "right")
        self.T_body_left.setflags(write=False)
        self.T_body_right.setflags(write=False)
        self.K = camera.K
        self.K.setflags(write=False)
        _scene(world)

    @property
    def precompute_s(self) -> float:
        """Seconds spent building this world's per-world data (0 if it came from the cache)."""
        return _scene(self.world).build_s

    def poses(self, T_world_body):
        """``(T_world_left, T_world_right)`` for a body pose."""
        T = _check_pose(T_world_body, "T_world_body")
        return T @ self.T_body_left, T @ self.T_body_right

    def render(self, T_world_body, *, t_s: float = 0.0, seq: int = 0,
               rng: np.random.Generator | None = None) -> StereoFrame:
        """Render the pair at body pose ``T_world_body`` (4x4).

        Returns a :class:`drivers.camera.StereoFrame` with ``left``, ``right``, ``K``,
        ``baseline_m``, ``T_body_left``, ground-truth ``depth_m`` of the left image and
        ``T_world_left``. Noise (``camera.noise_std_dn``) is drawn from ``rng`` (left image
        first), none when ``rng`` is None.
        """
        T_left, T_right = self.poses(T_world_body)
        _check_rng(rng)
        if not (isinstance(t_s, (int, float, np.floating, np.integer)) and math.isfinite(t_s)):
            raise ValueError(f"t_s = {t_s!r}: must be a finite number (seconds)")
        if isinstance(seq, bool) or not isinstance(seq, (int, np.integer)):
            raise ValueError(f"seq = {seq!r}: must be an integer")
        scene = _scene(self.world)
        left, depth = _render(scene, self.camera, T_left, rng, True)
        right, _ = _render(scene, self.camera, T_right, rng, False)
        return StereoFrame(t_s=float(t_s), seq=int(seq), left=left, right=right, K=self.K.copy(),
                           baseline_m=float(self.camera.baseline_m), T_body_left=self.T_body_left.copy(),
                           depth_m=depth, T_world_left=T_left)


# ============================================================================ geometry helpers
def project_points(camera: Camera, T_world_cam, xyz_world):
    """Pinhole projection of world points into ``camera`` at pose ``T_world_cam``.

    Parameters
    ----------
    xyz_world : (3,) or (n, 3) array of metres

    Returns
    -------
    uv : (n, 2) float64
        Pixel coordinates (pixel centres at integers); NaN for points with ``z <= 0``.
    z : (n,) float64
        Camera-frame depth.
    """
    _check_camera(camera)
    T = _check_pose(T_world_cam, "T_world_cam")
    p = np.asarray(xyz_world, dtype=np.float64)
    if p.ndim == 1:
        p = p[None, :]
    if p.ndim != 2 or p.shape[1] != 3:
        raise ValueError(f"xyz_world must have shape (3,) or (n, 3), got {np.shape(xyz_world)}")
    pc = (p - T[:3, 3]) @ T[:3, :3]
    z = pc[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = camera.fx_px * pc[:, 0] / z + camera.cx_px
        v = camera.fx_px * pc[:, 1] / z + camera.cy_px
    bad = ~(z > 0)
    u[bad] = np.nan
    v[bad] = np.nan
    return np.stack([u, v], axis=1), z


def depth_to_points(camera: Camera, depth_m, T_world_cam=None) -> np.ndarray:
    """Back-project a depth map: ``(h, w, 3)`` float64 points in the camera frame, or in the
    world when ``T_world_cam`` is given; NaN where the depth is not finite (sky)."""
    _check_camera(camera)
    d = np.asarray(depth_m, dtype=np.float64)
    if d.shape != (camera.height_px, camera.width_px):
        raise ValueError(f"depth_m must have shape {(camera.height_px, camera.width_px)} (the camera's image), "
                         f"got {d.shape}")
    f, cx, cy = camera.fx_px, camera.cx_px, camera.cy_px
    v, u = np.mgrid[0:d.shape[0], 0:d.shape[1]]
    d = np.where(np.isfinite(d), d, np.nan)
    pts = np.stack([(u - cx) / f * d, (v - cy) / f * d, d], axis=-1)
    if T_world_cam is not None:
        T = _check_pose(T_world_cam, "T_world_cam")
        pts = pts @ T[:3, :3].T + T[:3, 3]
    return pts
