"""Perception: stereo visual odometry, stereo terrain mapping and state estimation.

* :mod:`perception.vo` — stereo visual odometry: KLT tracking, stereo row matching, PnP RANSAC, two-view
  stereo bundle adjustment with a covariance, keyframes, failure as a value.
* :mod:`perception.kitti` — stereo sequences in the KITTI odometry layout; :mod:`perception.trajectory` —
  TUM files, Umeyama alignment, ATE / KITTI-style relative errors, a trajectory plot.
* :mod:`perception.stereo_map` — disparity → points → local height maps → a fused global map.
* :mod:`perception.estimator` — error-state EKF fusing wheels, gyro, accelerometer, VO and heading, slip as a state.
* :mod:`perception.pipeline` — StereoNavPipeline: VO + EKF + stereo mapping as the navigation loop uses them.

perception imports only nav data types, numpy, numba and cv2 (never drivers, sim or hil).
"""
from .estimator import EKFParams, FilterUpdate, InnovationStats, RoverEKF, SlipEstimate
from .kitti import KittiSequence
from .pipeline import PipelineFrame, StereoNavPipeline
from .stereo_map import (FusionParams, GlobalMap, LocalHeightMap, MapUpdate, StereoMapParams, StereoMapper,
                         StereoPoints, rasterize)
from .vo import StereoVO, VOFailure, VOParams, VOResult

__all__ = ["RoverEKF", "EKFParams", "FilterUpdate", "SlipEstimate", "InnovationStats", "StereoMapper",
           "StereoMapParams", "StereoPoints", "LocalHeightMap", "GlobalMap", "FusionParams", "MapUpdate", "rasterize",
           "StereoVO", "VOParams", "VOResult", "VOFailure", "KittiSequence", "StereoNavPipeline", "PipelineFrame"]
