"""Stereo camera interface: what perception consumes, from hardware or the simulator.

A backend returns rectified 8-bit grey pairs with the calibration needed to triangulate
(``K`` shared by both images, ``baseline_m``: the right camera sits ``baseline_m`` along the
left camera's +x). Simulated frames also carry ground truth (``depth_m``, ``T_world_left``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["StereoFrame", "StereoCamera"]


@dataclass(frozen=True, eq=False)
class StereoFrame:
    """One rectified stereo pair.

    Attributes
    ----------
    t_s : float
        Capture time on the backend's clock.
    seq : int
        Frame counter from the backend (gaps mean dropped frames).
    left, right : (h, w) uint8
        Grey images; pixel centres at integer coordinates.
    K : (3, 3) float64
        Pinhole intrinsics of both (rectified) images.
    baseline_m : float
        Distance between the optical centres along the left camera's x axis.
    depth_m : (h, w) float32 or None
        Ground truth (simulator only): distance along the left optical axis, ``inf`` for sky.
    T_world_left : (4, 4) float64 or None
        Ground-truth pose of the left camera (simulator only; OpenCV camera axes).
    T_body_left : (4, 4) float64
        Mount of the left camera on the body (calibration; known on hardware too).
    """
    t_s: float
    seq: int
    left: np.ndarray
    right: np.ndarray
    K: np.ndarray
    baseline_m: float
    T_body_left: np.ndarray
    depth_m: np.ndarray | None = None
    T_world_left: np.ndarray | None = None
    extra: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return self.left.shape


class StereoCamera:
    """Base class of stereo camera backends: ``open``, ``capture() -> StereoFrame``, idempotent
    ``close``, context manager. Subclasses override ``_capture`` (and ``_open``/``_close``)."""

    def __init__(self, name: str = "stereo"):
        self.name = name
        self._open_ = False
        self._closed = False

    def open(self) -> "StereoCamera":
        from .errors import DeviceClosed

        if self._closed:
            raise DeviceClosed(f"{self.name}: camera is closed")
        if not self._open_:
            self._open()
            self._open_ = True
        return self

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._open_ = False
            self._close()

    def capture(self) -> StereoFrame:
        from .errors import DeviceClosed

        if not self._open_:
            raise DeviceClosed(f"{self.name}: camera is not open")
        return self._capture()

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()

    def _open(self) -> None:
        pass

    def _close(self) -> None:
        pass

    def _capture(self) -> StereoFrame:
        raise NotImplementedError
