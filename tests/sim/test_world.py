"""sim.World: construction, soils, random streams, fixed-step time."""
import dataclasses

import numpy as np
import pytest

import nav
from nav.terrain_map import TerrainMap
from sim.frames import sun_direction
from sim.world import SOIL_FIELDS, World


def tm(n=20, cell=0.1):
    return TerrainMap(np.zeros((n, n), np.float32), cell)


def test_generate_carries_rocks_and_planet():
    w = World.generate("moon", size_m=8.0, seed=2)
    assert w.planet.name == "Moon" and w.gravity_mps2 == 1.62
    assert len(w.rocks) == w.terrain.meta["n_rocks"]
    assert w.soils == (w.planet.soil,)
    np.testing.assert_allclose(np.linalg.norm(w.sun_dir_world), 1.0)
    np.testing.assert_allclose(w.sun_dir_world, sun_direction(100.0, 8.0))
    assert w.sun_dir_world[2] == pytest.approx(np.sin(np.radians(8.0)))


def test_soil_table_and_index():
    sand = dataclasses.replace(nav.load_planet("mars").soil, name="sand", slip_gain=0.2)
    rock = dataclasses.replace(sand, name="bedrock", slip_gain=0.01)
    idx = np.zeros((20, 20), np.int32)
    idx[:, 10:] = 1
    w = World(tm(), soils=[sand, rock], soil_index=idx)
    assert w.soil_params.shape == (2, len(SOIL_FIELDS))
    assert w.soil_params[1, SOIL_FIELDS.index("slip_gain")] == 0.01
    assert w.soil_at((0.5, 0.5)).name == "sand" and w.soil_at((1.5, 0.5)).name == "bedrock"
    with pytest.raises(ValueError, match=r"soil_index values must lie in \[0, 1\]"):
        World(tm(), soils=[sand, rock], soil_index=idx + 1)
    with pytest.raises(ValueError, match="shape"):
        World(tm(), soils=[sand, rock], soil_index=idx[:5])
    with pytest.raises(ValueError, match="needs soils"):
        World(tm(), soil_index=idx)


def test_bad_arguments():
    with pytest.raises(TypeError, match="TerrainMap"):
        World(np.zeros((5, 5)))
    with pytest.raises(ValueError, match="seed"):
        World(tm(), seed=-1)
    with pytest.raises(ValueError, match="physics_dt_s"):
        World(tm(), physics_dt_s=0)
    with pytest.raises(nav.ConfigError, match="no planet config named 'pluto'"):
        World(tm(), planet="pluto")
    with pytest.raises(ValueError, match="dt_s"):
        World(tm()).advance(-1.0)


def test_random_streams_are_named_and_reproducible():
    a, b = World(tm(), seed=5), World(tm(), seed=5)
    assert a.rng("x").random() == b.rng("x").random()
    assert a.rng("x").random() != a.rng("y").random()
    assert a.rng("x").random() != World(tm(), seed=6).rng("x").random()


def test_advance_uses_fixed_steps_and_carries_the_remainder():
    w = World(tm(), physics_dt_s=0.02)
    calls = []

    class Body:
        def advance(self, n, dt):
            calls.append((n, dt, w.time_s))

    w.attach(Body())
    assert w.advance(0.05) == 2 and w.time_s == pytest.approx(0.04)
    assert w.advance(0.05) == 3 and w.time_s == pytest.approx(0.10)     # 0.01 carried over
    for _ in range(1000):
        w.advance(0.001)
    assert w.steps == 55 and w.clock.now() == pytest.approx(1.10)
    assert sum(n for n, _, _ in calls) == w.steps
    assert calls[0] == (2, 0.02, 0.0) and calls[1][2] == pytest.approx(0.04)
