"""The simulated world: terrain, rocks, planet, soils, sun, a deterministic clock and seeds.

A :class:`World` owns simulated time. Everything that moves in it (rovers) registers with
:meth:`World.attach` and is stepped by :meth:`World.advance` in fixed physics steps of
``physics_dt_s``; ``world.clock.sleep(dt)`` does the same, so code written against an
injected clock runs the simulation forward when it waits.

Random streams are derived from ``seed`` and a stream name (:meth:`World.rng`), so adding
a sensor never changes another sensor's noise, and the same seed gives the same run bit
for bit.
"""
from __future__ import annotations

import math
import zlib

import numpy as np

from nav.config import Planet, Soil, load_planet
from nav.terrain_map import TerrainMap

from .frames import sun_direction
from .terrain import Craters, GeneratedTerrain, Rocks, generate_terrain

__all__ = ["World", "SimClock", "SOIL_FIELDS"]

#: Order of soil parameters in :attr:`World.soil_params` rows (what kernels receive).
SOIL_FIELDS = ("slip_flat", "slip_gain", "slip_scale_deg", "max_climb_deg", "downhill_slip_per_deg",
               "max_skid", "lateral_slip_gain", "rolling_resistance", "albedo")


class SimClock:
    """Simulated time of a :class:`World`: ``now()`` is ``steps * physics_dt_s``;
    ``sleep(dt)`` and ``advance(dt)`` step the world."""

    def __init__(self, world: "World"):
        self._world = world

    def now(self) -> float:
        return self._world.time_s

    def sleep(self, seconds: float) -> None:
        self._world.advance(max(0.0, float(seconds)))

    advance = sleep

    def __repr__(self) -> str:
        return f"SimClock(t={self.now():.3f} s)"


class World:
    """A terrain to drive on, with everything physics, sensors and cameras need.

    Parameters
    ----------
    terrain : nav.TerrainMap or sim.terrain.GeneratedTerrain
        Heights in metres. NaN cells are outside the world (a wheel there is off the map).
        A ``GeneratedTerrain`` also supplies ``rocks`` and ``craters``.
    planet : Planet or str
        Gravity, default soil, sun and sky (packaged name or YAML path).
    soil : Soil, optional
        Overrides the planet's soil everywhere (when ``soil_index`` is not given).
    soils, soil_index : sequence of Soil, (rows, cols) integer array, optional
        Spatially varying soil: ``soil_index[r, c]`` picks ``soils[i]`` for each terrain cell.
    rocks, craters : ground-truth tables (default: from a ``GeneratedTerrain``, else empty).
    seed : int
        Root of every random stream in the simulation.
    physics_dt_s : float
        Fixed physics step (default 0.02 s = 50 Hz).
    """

    def __init__(self, terrain, *, planet="mars", soil: Soil | None = None, soils=None, soil_index=None,
                 rocks: Rocks | None = None, craters: Craters | None = None, seed: int = 0,
                 physics_dt_s: float = 0.02):
        if isinstance(terrain, GeneratedTerrain):
            rocks = terrain.rocks if rocks is None else rocks
            craters = terrain.craters if craters is None else craters
            terrain = terrain.terrain
        if not isinstance(terrain, TerrainMap):
            raise TypeError(f"terrain must be a TerrainMap or GeneratedTerrain, got {type(terrain).__name__}")
        self.terrain = terrain
        self.planet = planet if isinstance(planet, Planet) else load_planet(planet)
        self.rocks = rocks if rocks is not None else Rocks.empty()
        self.craters = craters if craters is not None else Craters.empty()
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed = {seed!r}: must be an integer >= 0")
        self.seed = int(seed)
        if not (isinstance(physics_dt_s, (int, float)) and 1e-4 <= physics_dt_s <= 0.5):
            raise ValueError(f"physics_dt_s = {physics_dt_s!r}: must be within [0.0001, 0.5] s")
        self.physics_dt_s = float(physics_dt_s)

        if soils is None:
            if soil_index is not None:
                raise ValueError("soil_index needs soils (the list it indexes)")
            soils = (soil if soil is not None else self.planet.soil,)
        else:
            if soil is not None:
                raise ValueError("give either soil or soils, not both")
            soils = tuple(soils)
            if not soils or not all(isinstance(s, Soil) for s in soils):
                raise ValueError("soils must be a non-empty sequence of nav.config.Soil")
        self.soils = soils
        if soil_index is None:
            idx = np.zeros(terrain.shape, dtype=np.uint8)
        else:
            idx = np.asarray(soil_index)
            if idx.shape != terrain.shape or not np.issubdtype(idx.dtype, np.integer):
                raise ValueError(f"soil_index must be an integer array of the terrain's shape {terrain.shape}, "
                                 f"got {idx.dtype} {idx.shape}")
            if idx.size and (idx.min() < 0 or idx.max() >= len(soils)):
                raise ValueError(f"soil_index values must lie in [0, {len(soils) - 1}] "
                                 f"(one per soil), got [{idx.min()}, {idx.max()}]")
            idx = np.ascontiguousarray(idx, dtype=np.uint8)
        idx.setflags(write=False)
        self.soil_index = idx
        self.soil_params = np.array([[float(getattr(s, f)) for f in SOIL_FIELDS] for s in soils], dtype=np.float64)
        self.soil_params.setflags(write=False)

        self.sun_dir_world = sun_direction(self.planet.sun_azimuth_deg, self.planet.sun_elevation_deg)
        self.clock = SimClock(self)
        self.cache: dict = {}       # derived per-world data (shadow map, albedo rasters...)
        self._steps = 0
        self._target_s = 0.0
        self._bodies: list = []

    # ------------------------------------------------------------------ construction
    @classmethod
    def generate(cls, planet="mars", *, size_m=40.0, cell_size_m: float = 0.05, seed: int = 0,
                 rock_cfa: float | None = None, clear_zones=(), origin_xy_m=(0.0, 0.0),
                 physics_dt_s: float = 0.02, soil: Soil | None = None, **terrain_overrides) -> "World":
        """A world on generated terrain of the planet's preset (same seed for terrain and noise)."""
        pl = planet if isinstance(planet, Planet) else load_planet(planet)
        gen = generate_terrain(pl.terrain_preset, size_m=size_m, cell_size_m=cell_size_m, seed=seed,
                               rock_cfa=rock_cfa, clear_zones=clear_zones, origin_xy_m=origin_xy_m,
                               **terrain_overrides)
        return cls(gen, planet=pl, seed=seed, physics_dt_s=physics_dt_s, soil=soil)

    # ------------------------------------------------------------------ properties
    @property
    def gravity_mps2(self) -> float:
        return self.planet.gravity_mps2

    @property
    def time_s(self) -> float:
        return self._steps * self.physics_dt_s

    @property
    def steps(self) -> int:
        return self._steps

    def rng(self, stream: str) -> np.random.Generator:
        """An independent, reproducible generator for a named stream (e.g. ``"rover0.imu"``)."""
        key = zlib.crc32(stream.encode("utf-8"))
        return np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(key,)))

    def soil_at(self, xy_m) -> Soil:
        rc = self.terrain.world_to_cell(xy_m)
        r, c = int(np.clip(rc[0], 0, self.terrain.shape[0] - 1)), int(np.clip(rc[1], 0, self.terrain.shape[1] - 1))
        return self.soils[int(self.soil_index[r, c])]

    # ------------------------------------------------------------------ time
    def attach(self, body) -> None:
        """Register something with ``advance(n_steps, dt_s)`` to be stepped with the world."""
        if body not in self._bodies:
            self._bodies.append(body)

    def detach(self, body) -> None:
        if body in self._bodies:
            self._bodies.remove(body)

    def advance(self, dt_s: float) -> int:
        """Run the world forward by ``dt_s`` seconds (to the nearest physics step, with the
        remainder carried); returns the number of physics steps taken."""
        if not (isinstance(dt_s, (int, float, np.floating)) and math.isfinite(dt_s) and dt_s >= 0):
            raise ValueError(f"dt_s = {dt_s!r}: must be a finite number >= 0")
        self._target_s += float(dt_s)
        n = int(math.floor(self._target_s / self.physics_dt_s + 1e-9)) - self._steps
        if n > 0:
            self.step(n)
        return max(n, 0)

    def step(self, n_steps: int = 1) -> None:
        """Take ``n_steps`` physics steps."""
        if n_steps <= 0:
            return
        for body in list(self._bodies):
            body.advance(n_steps, self.physics_dt_s)
        self._steps += n_steps
        self._target_s = max(self._target_s, self.time_s)

    def __repr__(self) -> str:
        r, c = self.terrain.shape
        return (f"World({self.planet.name}, {r}x{c} cells @ {self.terrain.cell_size_m:g} m, "
                f"{len(self.rocks)} rocks, seed={self.seed}, t={self.time_s:.2f} s)")
