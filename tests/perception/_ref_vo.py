"""Slow, obviously-correct references for the VO kernels (perception/_vo_kernels.py)."""
from __future__ import annotations

import math

import numpy as np


def select_features_ref(xy, score, shape, *, existing_xy=(), bucket_px, per_bucket, min_distance_px, border_px,
                        max_count):
    """Greedy bucketed selection written the plain way: visit candidates best score first (stable order),
    keep one when it is inside the border, its bucket has room and no kept/existing feature's occupancy
    cell is within one cell of its own."""
    h, w = shape
    order = sorted(range(len(xy)), key=lambda i: -score[i])      # sorted() is stable
    occupied = set()
    buckets = {}
    for x, y in existing_xy:
        xi, yi = min(max(int(math.floor(x)), 0), w - 1), min(max(int(math.floor(y)), 0), h - 1)
        occupied.add((yi // min_distance_px, xi // min_distance_px))
        b = (yi // bucket_px, xi // bucket_px)
        buckets[b] = buckets.get(b, 0) + 1
    kept = []
    for i in order:
        if len(kept) >= max_count:
            break
        x, y = float(np.float32(xy[i][0])), float(np.float32(xy[i][1]))
        if not (border_px <= x <= w - 1 - border_px and border_px <= y <= h - 1 - border_px):
            continue
        b = (int(y) // bucket_px, int(x) // bucket_px)
        if buckets.get(b, 0) >= per_bucket:
            continue
        cell = (int(y) // min_distance_px, int(x) // min_distance_px)
        if any((cell[0] + dr, cell[1] + dc) in occupied for dr in (-1, 0, 1) for dc in (-1, 0, 1)):
            continue
        occupied.add(cell)
        buckets[b] = buckets.get(b, 0) + 1
        kept.append(i)
    return kept


def sad_disparity_ref(left, right, u, v, d_lo, d_hi, half):
    """Integer disparity minimising the sum of absolute differences over the (2 half + 1)² window at the
    rounded (u, v), searched over [floor(d_lo), ceil(d_hi)] (clipped to the image)."""
    ui, vi = int(math.floor(u + 0.5)), int(math.floor(v + 0.5))
    L = left[vi - half:vi + half + 1, ui - half:ui + half + 1].astype(np.int64)
    best, best_d = None, None
    for d in range(max(0, int(math.floor(d_lo))), int(math.ceil(d_hi)) + 1):
        if ui - half - d < 1:
            break
        R = right[vi - half:vi + half + 1, ui - half - d:ui + half + 1 - d].astype(np.int64)
        c = int(np.abs(L - R).sum())
        if best is None or c < best:
            best, best_d = c, d
    return best_d


def project_stereo(K, b, X):
    """(n, 3) observations (u_left, v, u_right) of points X (n, 3) in the left camera frame."""
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    return np.stack([fx * X[:, 0] / X[:, 2] + cx, fy * X[:, 1] / X[:, 2] + cy,
                     fx * (X[:, 0] - b) / X[:, 2] + cx], axis=1)
