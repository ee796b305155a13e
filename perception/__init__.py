"""Perception: stereo visual odometry, stereo terrain mapping and state estimation.

* :mod:`perception.stereo_map` — disparity → points → local height maps → a fused global map.
* :mod:`perception.estimator` — error-state EKF fusing wheels, gyro, accelerometer, VO and heading, slip as a state.

perception imports only nav data types, numpy, numba and cv2 (never drivers, sim or hil).
"""
from .estimator import EKFParams, FilterUpdate, InnovationStats, RoverEKF, SlipEstimate
from .stereo_map import (FusionParams, GlobalMap, LocalHeightMap, MapUpdate, StereoMapParams, StereoMapper,
                         StereoPoints, rasterize)

__all__ = ["RoverEKF", "EKFParams", "FilterUpdate", "SlipEstimate", "InnovationStats", "StereoMapper",
           "StereoMapParams", "StereoPoints", "LocalHeightMap", "GlobalMap", "FusionParams", "MapUpdate", "rasterize"]
