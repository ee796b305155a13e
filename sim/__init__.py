"""Pure-software simulator: terrain, rover physics, sensors, cameras, virtual devices."""
