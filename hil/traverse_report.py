"""The traverse picture: true terrain and hazards, what the rover saw, the paths, start and goals.

Built on :mod:`hil.report`'s hillshade and colours; north up, one panel, a legend and a title line with
the outcome. Drawn from the simulator's truth, so it shows what the rover did not know.
"""
from __future__ import annotations

import math
from pathlib import Path as FsPath

import cv2
import numpy as np

from hil.report import _REASON_COLOURS, _dark_box, _resize, _title, _to_north_up, hillshade
from nav.costmap import LETHAL_INFLATED

__all__ = ["render_traverse_png", "traverse_image"]

# BGR
_SEEN = (235, 170, 90)            # known-map coverage tint
_ORACLE = (140, 140, 140)
_PLANNED = (255, 255, 0)
_DRIVEN = (255, 255, 255)
_ESTIMATED = (255, 0, 255)
_START = (60, 200, 60)
_GOAL = (0, 215, 255)
_KEEP_OUT = (40, 40, 200)


def traverse_image(true_costmap, observed=None, *, planned_xy=None, driven_xy=None, estimated_xy=None,
                   oracle_xy=None, start_xy=None, goals=(), keep_out=(), title: str = "",
                   target_px: int = 1000) -> np.ndarray:
    """The traverse picture as a BGR uint8 image (see :func:`render_traverse_png`)."""
    tm = true_costmap.terrain
    rows, cols = true_costmap.shape
    cs = tm.cell_size_m
    ox, oy = tm.origin_xy_m
    shade = np.nan_to_num(hillshade(tm.elevation_m, cs), nan=0.25)
    img = np.repeat((shade * 190 + 40)[..., None], 3, axis=2).astype(np.float32)
    if observed is not None and observed.shape == (rows, cols):
        m = observed.astype(bool)
        img[m] = 0.7 * img[m] + 0.3 * np.array(_SEEN, np.float32)
    for flag, colour in _REASON_COLOURS:
        m = (true_costmap.reason & flag) != 0
        if flag == LETHAL_INFLATED:
            m &= (true_costmap.reason & ~np.uint8(LETHAL_INFLATED)) == 0
            a = 0.3
        else:
            a = 0.6
        img[m] = (1 - a) * img[m] + a * np.array(colour, np.float32)
    main = _to_north_up(np.clip(img, 0, 255).astype(np.uint8))
    s = min(8.0, target_px / max(rows, cols))
    main = _resize(main, s)
    H = main.shape[0]
    thick = max(1, int(round(min(3.0, s * 0.4 + 0.6))))

    def px(xy):
        xy = np.asarray(xy, np.float64).reshape(-1, 2)
        x = (xy[:, 0] - ox) / cs * s
        y = H - (xy[:, 1] - oy) / cs * s
        return np.round(np.stack([x, y], axis=1)).astype(np.int32)

    for (kx, ky, kr) in keep_out:
        c = px((kx, ky))[0]
        cv2.circle(main, (int(c[0]), int(c[1])), max(2, int(round(kr / cs * s))), _KEEP_OUT, thick, cv2.LINE_AA)
    for pts, colour, w in ((oracle_xy, _ORACLE, thick), (planned_xy, _PLANNED, thick),
                           (estimated_xy, _ESTIMATED, thick), (driven_xy, _DRIVEN, thick + 1)):
        if pts is not None and len(pts) > 1:
            cv2.polylines(main, [px(pts).reshape(-1, 1, 2)], False, colour, w, cv2.LINE_AA)
    rad = max(5, 3 * thick)
    if start_xy is not None:
        c = px(start_xy)[0]
        cv2.circle(main, (int(c[0]), int(c[1])), rad, _START, -1, cv2.LINE_AA)
        cv2.circle(main, (int(c[0]), int(c[1])), rad, (0, 0, 0), 1, cv2.LINE_AA)
    for i, g in enumerate(goals):
        c = px(g[:2])[0]
        tol_px = max(rad, int(round(g[2] / cs * s)))
        cv2.circle(main, (int(c[0]), int(c[1])), tol_px, _GOAL, thick, cv2.LINE_AA)
        cv2.circle(main, (int(c[0]), int(c[1])), max(3, rad // 2), _GOAL, -1, cv2.LINE_AA)
        if len(goals) > 1:
            cv2.putText(main, str(i + 1), (int(c[0]) + rad, int(c[1]) - rad), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                        (0, 0, 0), 2, cv2.LINE_AA)
            cv2.putText(main, str(i + 1), (int(c[0]) + rad, int(c[1]) - rad), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                        _GOAL, 1, cv2.LINE_AA)
    # scale bar
    width_m = cols * cs
    bar_m = 10 ** math.floor(math.log10(max(width_m / 5, 1e-6)))
    for mult in (5, 2, 1):
        if mult * bar_m <= width_m / 4:
            bar_m *= mult
            break
    bar_px = int(round(bar_m / cs * s))
    _dark_box(main, 4, H - 42, 24 + bar_px, H - 4)
    cv2.line(main, (12, H - 14), (12 + bar_px, H - 14), (255, 255, 255), 3)
    cv2.putText(main, f"{bar_m:g} m", (12, H - 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
    main = np.vstack([main, _legend(main.shape[1])])
    return _title(main, title or "traverse (north up)")


def _legend(width: int) -> np.ndarray:
    items = [("step", dict(_REASON_COLOURS)[2]), ("slope", dict(_REASON_COLOURS)[1]),
             ("rough", dict(_REASON_COLOURS)[4]), ("rover radius", dict(_REASON_COLOURS)[LETHAL_INFLATED]),
             ("seen", _SEEN)]
    lines = [("oracle", _ORACLE), ("planned", _PLANNED), ("driven", _DRIVEN), ("estimated", _ESTIMATED)]
    strip = np.full((30, max(width, 10), 3), 255, np.uint8)
    x = 6
    for name, colour in items:
        cv2.rectangle(strip, (x, 9), (x + 13, 22), colour, -1)
        cv2.rectangle(strip, (x, 9), (x + 13, 22), (90, 90, 90), 1)
        cv2.putText(strip, name, (x + 17, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (20, 20, 20), 1, cv2.LINE_AA)
        x += 24 + 8 * len(name)
    for name, colour in lines:
        cv2.line(strip, (x, 15), (x + 14, 15), (60, 60, 60), 5)
        cv2.line(strip, (x, 15), (x + 14, 15), colour, 3)
        cv2.putText(strip, name, (x + 17, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (20, 20, 20), 1, cv2.LINE_AA)
        x += 24 + 8 * len(name)
    for name, colour in (("start", _START), ("goal", _GOAL)):
        cv2.circle(strip, (x + 6, 15), 6, colour, -1, cv2.LINE_AA)
        cv2.putText(strip, name, (x + 15, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (20, 20, 20), 1, cv2.LINE_AA)
        x += 22 + 8 * len(name)
    return strip[:, :width] if strip.shape[1] > width else strip


def render_traverse_png(path, setup, executive, driven_xy, estimated_xy, summary, target_px: int = 1000) -> FsPath:
    """Write ``traverse.png`` for a finished traverse (``hil.traverse.TraverseSetup``, the executive, the true
    and estimated tracks ``(N, 2)``, the summary); returns the path."""
    sc = setup.scenario
    ratio = f", path {summary.path_ratio:.2f}x oracle" if summary.path_ratio else ""
    title = (f"{sc.name} seed {summary.seed} ({summary.mode}, {summary.perception}): {summary.outcome}, "
             f"{summary.distance_m:.1f} m in {summary.time_s:.0f} s, {summary.speed_m_per_h:.0f} m/h{ratio}, "
             f"{summary.hazard_violations} hazard violations")
    img = traverse_image(setup.true_costmap, executive.observed, planned_xy=executive.global_xy_m,
                         driven_xy=driven_xy, estimated_xy=estimated_xy, oracle_xy=setup.oracle_xy_m,
                         start_xy=(sc.start.x_m, sc.start.y_m), goals=setup.goals, keep_out=setup.keep_out,
                         title=title, target_px=target_px)
    path = FsPath(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), img, [cv2.IMWRITE_PNG_COMPRESSION, 3]):
        raise OSError(f"could not write PNG {path}")
    return path
