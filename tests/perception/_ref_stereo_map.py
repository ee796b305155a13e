"""Slow, obviously-correct references for perception.stereo_map (test oracles).

* :func:`ref_points` — back-projection of a disparity map with numpy, pixel by pixel rules
  written out (no shared code with the kernels).
* :func:`ref_height_var` — a point's height variance by *finite differences* of the world
  point with respect to its depth, its pixel position and the camera's attitude (the
  kernels use the closed form).
* :func:`ref_rasterize` — cells as Python lists: sort, pick the floor, take the median.
* :func:`ref_fuse` — the documented per-cell fusion rule, one cell at a time in Python floats.
* :func:`rock_rise_m`, :func:`visible_rocks` — the mapping-accuracy oracles shared with
  ``benchmarks/bench_stereo_map.py``: how high the map stands over a rock, and which rocks a
  set of frames saw (their top un-occluded in the true depth, in the stereo overlap, in range).
"""
from __future__ import annotations

import math

import numpy as np


# ------------------------------------------------------------------------------ points
def ref_points(disp, fx, fy, cx, cy, baseline_m, sigma_d_px, min_range_m, max_range_m, stride=1):
    """``(xyz (n, 3), var_depth (n,))`` in row-major pixel order."""
    out, var = [], []
    h, w = disp.shape
    for v in range(0, h, stride):
        for u in range(0, w, stride):
            d = float(disp[v, u])
            if not (d > 0) or not math.isfinite(d):
                continue
            z = fx * baseline_m / d
            x = (u - cx) / fx * z
            y = (v - cy) / fy * z
            rng = math.sqrt(x * x + y * y + z * z)
            if rng < min_range_m or rng > max_range_m:
                continue
            out.append((x, y, z))
            var.append((z * z * sigma_d_px / (fx * baseline_m)) ** 2)
    return np.array(out, dtype=np.float64).reshape(-1, 3), np.array(var)


def ref_height_var(p_cam, var_depth, T_world_cam, fx, sigma_px, attitude_sigma_rad, slope_prior, eps=1e-6):
    """Height variance of one camera-frame point by finite differences (see the module docstring)."""
    p_cam = np.asarray(p_cam, dtype=np.float64)
    R, t = T_world_cam[:3, :3], T_world_cam[:3, 3]

    def world(pc):
        return R @ pc + t

    base = world(p_cam)
    x, y, z = p_cam
    u_over_f, v_over_f = x / z, y / z
    # depth error: the point slides along its viewing ray (pixel fixed)
    moved = world(np.array([u_over_f * (z + eps), v_over_f * (z + eps), z + eps]))
    dp_dz = (moved - base) / eps
    # pixel errors across the ray (depth fixed): one pixel moves the point z / fx
    dp_du = (world(p_cam + np.array([eps, 0.0, 0.0])) - base) / eps * (z / fx)
    dp_dv = (world(p_cam + np.array([0.0, eps, 0.0])) - base) / eps * (z / fx)
    # attitude errors: small rotations about the world x and y axes through the camera centre
    var_att = 0.0
    for axis in (np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])):
        K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
        rot = np.eye(3) + eps * K
        dz_att = ((rot @ (base - t) + t)[2] - base[2]) / eps
        var_att += (attitude_sigma_rad * dz_att) ** 2
    return (var_depth * dp_dz[2] ** 2 + sigma_px ** 2 * (dp_du[2] ** 2 + dp_dv[2] ** 2) + var_att
            + slope_prior ** 2 * var_depth * (dp_dz[0] ** 2 + dp_dz[1] ** 2))


# ------------------------------------------------------------------------------ rasterisation
def ref_rasterize(xyz, var, ox, oy, cell, shape, gate_k, layer_m, top_fraction, min_points, min_var_m2,
                  top_quantile=0.5):
    """``(height, var, count)`` (float64, float64, int) of the documented top-layer rule; the height is
    numpy's (linear) ``quantile`` of the layer."""
    rows, cols = shape
    cells: dict = {}
    for (x, y, z), v in zip(np.asarray(xyz, dtype=np.float64), np.asarray(var, dtype=np.float64)):
        if not (math.isfinite(x) and math.isfinite(y) and math.isfinite(z) and math.isfinite(v) and v >= 0):
            continue
        c = math.floor((x - ox) / cell)
        r = math.floor((y - oy) / cell)
        if 0 <= r < rows and 0 <= c < cols:
            cells.setdefault((r, c), []).append((z, v))
    height = np.full(shape, np.nan)
    out_var = np.full(shape, np.inf)
    count = np.zeros(shape, np.int64)
    for (r, c), pts in cells.items():
        k = len(pts)
        count[r, c] = k
        if k < min_points:
            continue
        q = min(k, max(min_points, math.ceil(top_fraction * k)))
        lows = sorted(z - gate_k * math.sqrt(v) for z, v in pts)
        floor_ = lows[k - q]                                   # the q-th largest
        top = [(z, v) for z, v in pts if z + gate_k * math.sqrt(v) + layer_m >= floor_]
        height[r, c] = float(np.quantile([z for z, _ in top], top_quantile))
        out_var[r, c] = max(sum(v for _, v in top) / len(top), min_var_m2)
    return height, out_var, count


# ------------------------------------------------------------------------------ fusion
def ref_fuse(gh, gv, gt, grep, lh, lv, r0, c0, stamp, q, gate, max_age, min_var, tol):
    """Apply one merge to copies of the global arrays; returns ``(gh, gv, gt, grep, changed set)``."""
    gh, gv, gt, grep = (np.array(a, dtype=np.float64) for a in (gh, gv, gt, grep))
    changed = set()
    for i in range(lh.shape[0]):
        for j in range(lh.shape[1]):
            r, c = r0 + i, c0 + j
            if not (0 <= r < gh.shape[0] and 0 <= c < gh.shape[1]):
                continue
            z = float(lh[i, j])
            R = max(float(lv[i, j]), min_var)
            if math.isnan(z) or not math.isfinite(R):
                continue
            age = stamp - gt[r, c]
            if math.isnan(gh[r, c]) or age > max_age:
                new_h, new_p = z, R
            else:
                P = gv[r, c] + q * max(age, 0.0)
                dz = z - gh[r, c]
                if dz * dz > gate * gate * (P + R):
                    P += dz * dz
                K = P / (P + R)
                new_h, new_p = gh[r, c] + K * dz, max((1 - K) * P, min_var)
            new_h = float(np.float32(new_h))
            if not abs(new_h - grep[r, c]) <= tol:
                grep[r, c] = new_h
                changed.add((r, c))
            gh[r, c], gv[r, c], gt[r, c] = new_h, float(np.float32(new_p)), stamp
    return gh, gv, gt, grep, changed


# ------------------------------------------------------------------------------ accuracy oracles
def rock_rise_m(height_m, origin_xy_m, cell_m, rock, ground_m, margin_m):
    """Highest map height over the rock's disc (grown by ``margin_m``) above ``ground_m``;
    NaN when no cell there is known."""
    rows, cols = height_m.shape
    ox, oy = origin_xy_m
    best = -math.inf
    rad = rock.diameter_m / 2 + margin_m
    for r in range(max(0, math.floor((rock.y_m - rad - oy) / cell_m)), min(rows, math.floor((rock.y_m + rad - oy) / cell_m) + 1)):
        for c in range(max(0, math.floor((rock.x_m - rad - ox) / cell_m)), min(cols, math.floor((rock.x_m + rad - ox) / cell_m) + 1)):
            x, y = ox + (c + 0.5) * cell_m, oy + (r + 0.5) * cell_m
            if math.hypot(x - rock.x_m, y - rock.y_m) <= rad and math.isfinite(height_m[r, c]):
                best = max(best, float(height_m[r, c]))
    return best - ground_m if best > -math.inf else math.nan


def visible_rocks(frames, camera, rocks, top_z_m, max_range_m, overlap_px, project):
    """Indices of rocks whose top point some frame saw in both images: inside the stereo overlap
    (``u >= overlap_px``), within ``max_range_m`` of the left camera and not occluded in the
    frame's true depth (±3 % + 2 cm in a 3x3 pixel neighbourhood). ``project`` is
    ``sim.camera.project_points``. Returns ``(indices, closest range per index)``."""
    seen = {}
    top = np.stack([np.asarray(rocks.x_m), np.asarray(rocks.y_m), np.asarray(top_z_m)], axis=1)
    for fr in frames:
        T = fr.T_world_left
        uv, z = project(camera, T, top)
        rng = np.linalg.norm(top - T[:3, 3], axis=1)
        for i in range(len(top)):
            u, v = uv[i]
            if not (np.isfinite(u) and overlap_px <= u <= camera.width_px - 3 and 2 <= v <= camera.height_px - 3
                    and rng[i] <= max_range_m):
                continue
            ui, vi = int(round(u)), int(round(v))
            patch = fr.depth_m[vi - 1:vi + 2, ui - 1:ui + 2]
            if np.any(np.abs(patch - z[i]) < 0.03 * z[i] + 0.02):
                seen[i] = min(seen.get(i, math.inf), float(rng[i]))
    idx = np.array(sorted(seen), dtype=np.int64)
    return idx, np.array([seen[i] for i in idx])
