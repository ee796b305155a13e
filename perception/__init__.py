"""Perception: stereo visual odometry, stereo terrain mapping and state estimation.

* :mod:`perception.vo` — stereo visual odometry: KLT tracking, stereo row matching, PnP RANSAC, two-view
  stereo bundle adjustment with a covariance, keyframes, failure as a value.
* :mod:`perception.kitti` — stereo sequences in the KITTI odometry layout; :mod:`perception.trajectory` —
  TUM files, Umeyama alignment, ATE / KITTI-style relative errors, a trajectory plot.
* :mod:`perception.stereo_map` — disparity → points → local height maps → a fused global map.
* :mod:`perception.estimator` — error-state EKF fusing wheels, gyro, accelerometer, VO and heading, slip as a state.
* :mod:`perception.pipeline` — StereoNavPipeline: VO + EKF + stereo mapping as the navigation loop uses them.

perception imports only nav data types, numpy, numba and cv2 (never drivers, sim or hil). The names below
are imported lazily, on first use, so that ``import perception.stereo_map`` (fast perception, the planners'
tools) does not compile the visual odometry's kernels: an empty Numba cache costs seconds per kernel module.
"""
from __future__ import annotations

__all__ = ["RoverEKF", "EKFParams", "FilterUpdate", "SlipEstimate", "InnovationStats", "StereoMapper",
           "StereoMapParams", "StereoPoints", "LocalHeightMap", "GlobalMap", "FusionParams", "MapUpdate", "rasterize",
           "StereoVO", "VOParams", "VOResult", "VOFailure", "KittiSequence", "StereoNavPipeline", "PipelineFrame"]

_WHERE = {"RoverEKF": "estimator", "EKFParams": "estimator", "FilterUpdate": "estimator",
          "SlipEstimate": "estimator", "InnovationStats": "estimator", "KittiSequence": "kitti",
          "StereoNavPipeline": "pipeline", "PipelineFrame": "pipeline",
          "StereoMapper": "stereo_map", "StereoMapParams": "stereo_map", "StereoPoints": "stereo_map",
          "LocalHeightMap": "stereo_map", "GlobalMap": "stereo_map", "FusionParams": "stereo_map",
          "MapUpdate": "stereo_map", "rasterize": "stereo_map",
          "StereoVO": "vo", "VOParams": "vo", "VOResult": "vo", "VOFailure": "vo"}


def __getattr__(name):
    if name in _WHERE:
        import importlib
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module 'perception' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
