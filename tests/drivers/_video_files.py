"""Video files for camera tests: grey frames written with a lossless codec when this OpenCV build has one
(checked by reading the first frame back), else MJPG. Shared by tests/drivers/test_stereo_cv.py and
tests/hil/test_traverse_hardware.py."""
from __future__ import annotations

import cv2
import numpy as np
import pytest


def _codec():
    """A lossless codec this OpenCV can write and read back exactly (else MJPG, with looser bounds)."""
    for fcc in ("FFV1", "HFYU", "png "):
        yield fcc, True
    yield "MJPG", False


def write_video(path, frames, fps=10.0):
    """Write grey frames; returns True when the codec is lossless (verified on the first frame)."""
    h, w = frames[0].shape
    for fcc, lossless in _codec():
        vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fcc), fps, (w, h), True)
        if not vw.isOpened():
            continue
        for f in frames:
            vw.write(cv2.cvtColor(f, cv2.COLOR_GRAY2BGR))
        vw.release()
        cap = cv2.VideoCapture(str(path))
        ok, back = cap.read()
        cap.release()
        if ok and back.shape[:2] == (h, w):
            exact = np.array_equal(cv2.cvtColor(back, cv2.COLOR_BGR2GRAY), frames[0])
            if lossless and not exact:
                continue
            return exact
    pytest.fail("this OpenCV build cannot write any video codec")
