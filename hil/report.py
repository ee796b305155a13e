"""Pictures and summaries of terrain, hazards and plans (PNG via OpenCV, JSON)."""
from __future__ import annotations

import json
import math
from pathlib import Path as FsPath

import cv2
import numpy as np

from nav.costmap import (LETHAL_INFLATED, LETHAL_ROUGHNESS, LETHAL_SLOPE, LETHAL_STEP, LETHAL_UNKNOWN,
                         CostMap)

__all__ = ["hillshade", "render_plan_png", "write_json"]

# BGR colours
_REASON_COLOURS = (
    (LETHAL_UNKNOWN, (110, 110, 110)),
    (LETHAL_INFLATED, (120, 120, 235)),
    (LETHAL_ROUGHNESS, (200, 60, 200)),
    (LETHAL_SLOPE, (0, 140, 255)),
    (LETHAL_STEP, (30, 30, 210)),
)


def hillshade(z: np.ndarray, cell_size_m: float, azimuth_deg: float = 315.0, altitude_deg: float = 45.0) -> np.ndarray:
    """Lambertian hillshade in [0, 1] of a grid in the TerrainMap convention (row = +y).

    NaN cells come out NaN.
    """
    z = z.astype(np.float64)
    zf = np.where(np.isfinite(z), z, np.nanmean(z) if np.isfinite(z).any() else 0.0)
    dz_dy, dz_dx = np.gradient(zf, cell_size_m)
    az = math.radians(azimuth_deg)
    alt = math.radians(altitude_deg)
    # light direction (east, north, up) from azimuth measured clockwise from north
    lx, ly, lz = math.sin(az) * math.cos(alt), math.cos(az) * math.cos(alt), math.sin(alt)
    norm = np.sqrt(dz_dx ** 2 + dz_dy ** 2 + 1.0)
    shade = (-dz_dx * lx - dz_dy * ly + lz) / norm
    shade = np.clip(shade, 0.0, 1.0)
    shade[~np.isfinite(z)] = np.nan
    return shade


def _to_north_up(img: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(img[::-1])


def _colour_layer(values: np.ndarray, vmax: float, colormap=cv2.COLORMAP_VIRIDIS) -> np.ndarray:
    v = np.nan_to_num(np.clip(values / vmax, 0, 1), nan=0.0)
    img = cv2.applyColorMap((v * 255).astype(np.uint8), colormap)
    img[~np.isfinite(values)] = (60, 60, 60)
    return img


def _panel_scale(shape, target_px: int) -> float:
    return min(8.0, target_px / max(shape))


def _resize(img: np.ndarray, scale: float) -> np.ndarray:
    h, w = img.shape[:2]
    return cv2.resize(img, (max(1, int(round(w * scale))), max(1, int(round(h * scale)))),
                      interpolation=cv2.INTER_NEAREST if scale >= 1 else cv2.INTER_AREA)


def _dark_box(img: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> None:
    """Darken a rectangle in place so text on it stays readable."""
    y0, y1 = max(y0, 0), min(y1, img.shape[0])
    x0, x1 = max(x0, 0), min(x1, img.shape[1])
    img[y0:y1, x0:x1] = (img[y0:y1, x0:x1].astype(np.float32) * 0.35).astype(np.uint8)


def _legend_strip(width: int) -> np.ndarray:
    """A white strip naming the hazard colours and the path, to sit under the map."""
    strip = np.full((30, width, 3), 255, np.uint8)
    items = [("slope", dict(_REASON_COLOURS)[LETHAL_SLOPE]), ("step", dict(_REASON_COLOURS)[LETHAL_STEP]),
             ("roughness", dict(_REASON_COLOURS)[LETHAL_ROUGHNESS]),
             ("unknown", dict(_REASON_COLOURS)[LETHAL_UNKNOWN]),
             ("rover radius", dict(_REASON_COLOURS)[LETHAL_INFLATED])]
    x = 6
    cv2.putText(strip, "lethal:", (x, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (20, 20, 20), 1, cv2.LINE_AA)
    x += 58
    for name, colour in items:
        cv2.rectangle(strip, (x, 9), (x + 13, 22), colour, -1)
        cv2.putText(strip, name, (x + 18, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (20, 20, 20), 1, cv2.LINE_AA)
        x += 26 + 9 * len(name)
    cv2.line(strip, (x, 15), (x + 14, 15), (255, 255, 0), 3)
    cv2.putText(strip, "path", (x + 18, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (20, 20, 20), 1, cv2.LINE_AA)
    x += 62
    for name, colour in (("start", (60, 200, 60)), ("goal", (0, 215, 255))):
        cv2.circle(strip, (x + 6, 15), 6, colour, -1, cv2.LINE_AA)
        cv2.putText(strip, name, (x + 16, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (20, 20, 20), 1, cv2.LINE_AA)
        x += 64
    return strip


def _title(img: np.ndarray, text: str) -> np.ndarray:
    bar = np.full((28, img.shape[1], 3), 255, np.uint8)
    cv2.putText(bar, text, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (20, 20, 20), 1, cv2.LINE_AA)
    return np.vstack([bar, img])


def _to_px(points_rcf: np.ndarray, rows: int, scale: float) -> np.ndarray:
    """Grid coords (cell centres at integers, row = +y) to pixel coords in the north-up image."""
    x = (points_rcf[:, 1] + 0.5) * scale
    y = (rows - (points_rcf[:, 0] + 0.5)) * scale
    return np.stack([x, y], axis=1)


def render_plan_png(path, costmap: CostMap, plan=None, start_rcf=None, goal_rcf=None, title: str = "",
                    target_px: int = 900) -> FsPath:
    """Write a 2×2 picture: hillshade + hazards + path, and the slope, step and roughness layers.

    ``plan`` is a :class:`nav.Path` or ``None`` (a failed plan still gets its picture with start
    and goal marked). Returns the written path.
    """
    tm = costmap.terrain
    rows, cols = costmap.shape
    lim = costmap.limits
    shade = hillshade(tm.elevation_m, tm.cell_size_m)
    base = np.nan_to_num(shade, nan=0.25)
    img = np.repeat((base * 200 + 40)[..., None], 3, axis=2).astype(np.float32)
    for flag, colour in _REASON_COLOURS:
        m = (costmap.reason & flag) != 0
        if flag == LETHAL_INFLATED:
            m &= (costmap.reason & ~np.uint8(LETHAL_INFLATED)) == 0
        img[m] = 0.45 * img[m] + 0.55 * np.array(colour, np.float32)
    main = _to_north_up(np.clip(img, 0, 255).astype(np.uint8))
    s = _panel_scale((rows, cols), target_px)
    main = _resize(main, s)
    thick = max(2, int(round(s * 0.6)))
    if plan is not None and len(plan.points_rcf) > 1:
        px = np.round(_to_px(plan.points_rcf, rows, s)).astype(np.int32)
        cv2.polylines(main, [px.reshape(-1, 1, 2)], False, (255, 255, 0), thick, cv2.LINE_AA)
    for pt, colour in ((start_rcf, (60, 200, 60)), (goal_rcf, (0, 215, 255))):
        if pt is not None:
            p = _to_px(np.asarray(pt, np.float64).reshape(1, 2), rows, s)[0]
            cv2.circle(main, (int(p[0]), int(p[1])), max(5, 3 * thick), colour, -1, cv2.LINE_AA)
            cv2.circle(main, (int(p[0]), int(p[1])), max(5, 3 * thick), (0, 0, 0), 1, cv2.LINE_AA)
    # scale bar: a round number of metres about a fifth of the width
    width_m = cols * tm.cell_size_m
    bar_m = 10 ** math.floor(math.log10(max(width_m / 5, 1e-6)))
    for mult in (5, 2, 1):
        if mult * bar_m <= width_m / 4:
            bar_m *= mult
            break
    bar_px = int(round(bar_m / tm.cell_size_m * s))
    _dark_box(main, 4, main.shape[0] - 42, 24 + bar_px, main.shape[0] - 4)
    y0 = main.shape[0] - 14
    cv2.line(main, (12, y0), (12 + bar_px, y0), (255, 255, 255), 3)
    cv2.putText(main, f"{bar_m:g} m", (12, y0 - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
    main = np.vstack([main, _legend_strip(main.shape[1])])
    main = _title(main, title or "terrain, hazards and path (north up)")
    small = []
    for name, layer, vmax in (("slope (deg)", costmap.slope_deg, lim.get("max_slope_deg", 30.0)),
                              ("step (m)", costmap.step_m, lim.get("max_step_m", 0.2)),
                              ("roughness (m)", costmap.roughness_m, lim.get("max_roughness_m", 0.05))):
        panel = _resize(_to_north_up(_colour_layer(layer, vmax)), s / 2)
        small.append(_title(panel, f"{name}, full scale = limit {vmax:g}"))
    cost = np.where(np.isfinite(costmap.cost), costmap.cost, np.nan)
    finite = cost[np.isfinite(cost)]
    cmax = float(np.percentile(finite, 99)) if finite.size else 2.0
    cpanel = _colour_layer(cost, max(cmax, 1.0 + 1e-6), cv2.COLORMAP_INFERNO)
    cpanel[~np.isfinite(costmap.cost)] = (40, 40, 160)
    small.append(_title(_resize(_to_north_up(cpanel), s / 2), f"cost (lethal in red), 99th pct {cmax:.2f}"))
    top = np.hstack([small[0], small[1]])
    bot = np.hstack([small[2], small[3]])
    right = np.vstack([top, bot])
    h = max(main.shape[0], right.shape[0])
    pad = lambda a: np.vstack([a, np.full((h - a.shape[0], a.shape[1], 3), 255, np.uint8)])  # noqa: E731
    out = np.hstack([pad(main), np.full((h, 8, 3), 255, np.uint8), pad(right)])
    path = FsPath(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), out, [cv2.IMWRITE_PNG_COMPRESSION, 1,
                                            cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY]):
        raise OSError(f"could not write PNG {path}")
    return path


def _jsonable(o):
    if isinstance(o, (np.floating,)):
        return None if not np.isfinite(o) else float(o)
    if isinstance(o, float):
        return None if not math.isfinite(o) else o
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.ndarray):
        return [_jsonable(v) for v in o.tolist()]
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    return o


def write_json(path, data: dict) -> FsPath:
    """Write ``data`` as pretty JSON (NaN/inf become null)."""
    path = FsPath(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_jsonable(data), indent=2) + "\n", encoding="utf-8")
    return path
