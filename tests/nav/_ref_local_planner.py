"""Slow, obviously-correct references for the local planner tests (pure Python, plus the simulator).

- ``unicycle_end``: a candidate's end pose by integrating the unicycle in tiny steps.
- ``field_at``: bilinear interpolation of a cost-to-go grid over its finite corners.
- ``ref_scores``: the cheap pass, one sample and one lateral point at a time.
- ``SimJudge``: the body check with the simulator (:class:`sim.rover_model.RoverModel`) settling
  the rover at every pose, the thresholds applied in Python.
"""
from __future__ import annotations

import math

import numpy as np

INF = math.inf


def unicycle_end(turn_rad, segments, steps_per_m=20000):
    """End pose ``(x, y, yaw)`` after turning in place by ``turn_rad`` then driving ``segments``
    ``[(curvature, length), ...]``, by midpoint integration of ``x' = cos yaw, y' = sin yaw,
    yaw' = curvature``."""
    x, y, th = 0.0, 0.0, float(turn_rad)
    for k, L in segments:
        n = max(1, int(L * steps_per_m))
        h = L / n
        for _ in range(n):
            tm = th + 0.5 * h * k
            x += h * math.cos(tm)
            y += h * math.sin(tm)
            th += h * k
    return x, y, th


def field_at(values, cell, origin, x, y):
    """Bilinear interpolation between cell centres (clamped at the border) over the finite corners,
    renormalising their weights; inf off the grid or when no finite corner has weight."""
    rows, cols = values.shape
    gx = (x - origin[0]) / cell
    gy = (y - origin[1]) / cell
    if not (0 <= gx < cols and 0 <= gy < rows):
        return INF
    cf = min(max(gx - 0.5, 0.0), cols - 1.0)
    rf = min(max(gy - 0.5, 0.0), rows - 1.0)
    c0 = min(int(math.floor(cf)), max(cols - 2, 0))
    r0 = min(int(math.floor(rf)), max(rows - 2, 0))
    c1, r1 = min(c0 + 1, cols - 1), min(r0 + 1, rows - 1)
    tc, tr = cf - c0, rf - r0
    acc = wsum = 0.0
    for rr, cc, w in ((r0, c0, (1 - tr) * (1 - tc)), (r0, c1, (1 - tr) * tc), (r1, c0, tr * (1 - tc)),
                      (r1, c1, tr * tc)):
        v = float(values[rr, cc])
        if w > 0 and v < INF:
            acc += w * v
            wsum += w
    return acc / wsum if wsum > 0 else INF


def _cell(terrain, x, y):
    ox, oy = terrain.origin_xy_m
    cs = terrain.cell_size_m
    gx, gy = (x - ox) / cs, (y - oy) / cs
    rows, cols = terrain.shape
    if not (0 <= gx < cols and 0 <= gy < rows):
        return None
    return int(gy), int(gx)


def ref_scores(planner, pose, terrain, cost, ctg, unknown_cells, edge_m, prev_curvature=None, reason=None):
    """The cheap pass of :class:`nav.local_planner.ArcPlanner`, written out.

    ``ctg(x, y) -> float``; ``edge_m`` the margin along the map's edge; ``reason`` the cost map's
    lethal flags (none: a bare cost grid).
    Returns ``(status, score, cost_integral, block_s)`` lists with the status names of
    ``nav.local_planner.STATUS_NAMES``.
    """
    from nav.costmap import LETHAL_INFLATED

    reason = np.zeros(cost.shape, np.uint8) if reason is None else reason
    r0, c0 = _cell(terrain, pose[0], pose[1])
    x_lo, x_hi, y_lo, y_hi = terrain.extent_m
    e = edge_m

    def near_edge(x, y):
        return not (x_lo + e <= x <= x_hi - e and y_lo + e <= y <= y_hi - e)
    escape = near_edge(pose[0], pose[1]) or (not np.isfinite(cost[r0, c0]) and reason[r0, c0] == LETHAL_INFLATED)
    cap = unknown_cells + 2

    def clearance(rc):          # cells to the nearest cell lethal in its own right, by brute force
        best = float(cap)
        for r in range(cost.shape[0]):
            for c in range(cost.shape[1]):
                if not np.isfinite(cost[r, c]) and reason[r, c] != LETHAL_INFLATED:
                    best = min(best, math.hypot(r - rc[0], c - rc[1]))
        return best
    clear0 = clearance((r0, c0)) if escape else None
    p = planner.params
    C = planner.candidates
    x0, y0, yaw0 = pose
    ht = 0.5 * planner.profile.geometry.track_m
    z = terrain.elevation_m
    rows, cols = terrain.shape
    out_status, out_score, out_cost, out_block = [], [], [], []
    for i in range(len(C)):
        status, block, acc, escaping = "free", INF, 0.0, escape
        for j in range(int(C.n_samples[i])):
            bx, by, bth = (float(v) for v in C.xyt[i, j])
            wx = x0 + math.cos(yaw0) * bx - math.sin(yaw0) * by
            wy = y0 + math.sin(yaw0) * bx + math.cos(yaw0) * by
            th = yaw0 + bth
            s = float(C.s_m[i, j])
            rc = _cell(terrain, wx, wy)
            if rc is None:
                status, block = "off_map", s
                break
            lethal = not np.isfinite(cost[rc])
            if not lethal and not near_edge(wx, wy):
                escaping = False
            elif escaping and (not lethal or (reason[rc] == LETHAL_INFLATED and clearance(rc) >= clear0)):
                pass                               # leaving the margin the rover started in, not nearer a hazard
            elif not lethal:
                status, block = "off_map", s
                break
            else:
                r, c = rc
                win = z[max(r - unknown_cells, 0):min(r + unknown_cells + 1, rows),
                        max(c - unknown_cells, 0):min(c + unknown_cells + 1, cols)]
                status, block = ("blocked_unknown" if np.isnan(win).any() else "blocked"), s
                break
            w = float(C.weight_m[i, j])
            if w == 0.0:
                continue
            vals = []
            for lat in (0.0, ht, -ht):
                q = _cell(terrain, wx - math.sin(th) * lat, wy + math.cos(th) * lat)
                v = float(cost[q]) if q is not None else INF
                vals.append(v if np.isfinite(v) else p.side_hazard_cost)
            acc += w * sum(vals) / 3.0
        # end pose and the cost-to-go terms
        j = int(C.n_samples[i]) - 1
        bx, by, bth = (float(v) for v in C.xyt[i, j])
        ex = x0 + math.cos(yaw0) * bx - math.sin(yaw0) * by
        ey = y0 + math.sin(yaw0) * bx + math.cos(yaw0) * by
        eth = yaw0 + bth
        c_end = ctg(ex, ey)
        h = p.heading_probe_m

        def grad(fp, fm):
            if np.isfinite(fp) and np.isfinite(fm):
                return (fp - fm) / (2 * h)
            if np.isfinite(fp) and np.isfinite(c_end):
                return (fp - c_end) / h
            if np.isfinite(fm) and np.isfinite(c_end):
                return (c_end - fm) / h
            return 0.0
        gx = grad(ctg(ex + h, ey), ctg(ex - h, ey))
        gy = grad(ctg(ex, ey + h), ctg(ex, ey - h))
        norm = math.hypot(gx, gy)
        cos_phi = -(gx * math.cos(eth) + gy * math.sin(eth)) / norm if norm > 0 else 1.0
        heading = p.heading_weight * 0.5 * (1 - cos_phi)
        k1, k2 = (float(v) for v in C.curvatures_per_m[i])
        l1, l2 = (float(v) for v in C.segment_lengths_m[i])
        k2e = k1 if math.isnan(k2) else k2
        penalty = (p.curvature_weight * (abs(k1) * l1 + abs(k2e) * l2) + p.turn_weight * abs(float(C.turn_rad[i]))
                   + p.curvature_change_weight * abs(k2e - k1) - p.length_bonus_per_m * (l1 + l2))
        if prev_curvature is not None:
            penalty += p.curvature_change_weight * abs(k1 - prev_curvature)
        if status == "free" and not np.isfinite(c_end):
            status = "no_route"
        out_status.append(status)
        out_block.append(block)
        out_cost.append(acc if status in ("free", "no_route") else INF)
        out_score.append(p.cost_weight * acc + p.cost_to_go_weight * c_end + penalty + heading
                         if status == "free" else INF)
    return out_status, out_score, out_cost, out_block


class SimJudge:
    """The body check with the simulator settling the rover (the simulator is the judge).

    Steerable wheels are first slewed (at rest) to the steering the candidate's curvature needs,
    as :meth:`drivers.kinematics.WheelLayout.inverse` computes it; then the model is teleported to
    each pose and its clearance, attitude and contact heights are read.
    """

    def __init__(self, world, profile, params):
        from sim.rover_model import RoverModel

        self.profile = profile
        self.params = params
        x0, x1, y0, y1 = world.terrain.extent_m
        self.model = RoverModel(world, profile, x_m=0.5 * (x0 + x1), y_m=0.5 * (y0 + y1))
        self.terrain = world.terrain
        g = profile.geometry
        self.max_tilt = math.radians(profile.hazards.max_tilt_deg if params.max_tilt_deg is None
                                     else params.max_tilt_deg)
        h_cg = g.cg_height_m if g.cg_height_m > 0 else g.belly_clearance_m + g.wheel_radius_m
        self.tip_roll = math.atan(0.5 * g.track_m / h_cg)
        self.tip_pitch = math.atan(0.5 * g.wheelbase_m / h_cg)
        self.climb = params.climb_fraction * (2 if profile.kind == "rocker_bogie" else 1) * g.wheel_radius_m

    def _steer_for(self, kappa, turning):
        lay = self.model.layout
        _, steer = lay.inverse(0.0, 1.0) if turning else lay.inverse(1.0, kappa)
        m = self.model
        for _ in range(200):
            if np.allclose(m.steer_rad, steer, atol=0, rtol=0):
                break
            m.step(1, 0.02, np.zeros(lay.n_wheels), steer)
        return steer

    def _step_rise(self, x, y, yaw, steer, turning):
        """Largest rise within a wheel radius ahead of any wheel's axle along its heading (both ways
        when turning in place): the terrain at ``n_envelope`` points up to a radius from the axle."""
        lay = self.model.layout
        r = lay.wheel_radius_m
        k_env = self.model.n_envelope
        d = r * np.arange(1, k_env + 1) / k_env
        worst = -INF
        for i, (bx, by) in enumerate(lay.position_xy_m):
            px = x + math.cos(yaw) * bx - math.sin(yaw) * by
            py = y + math.sin(yaw) * bx + math.cos(yaw) * by
            a = yaw + steer[i]        # inverse() folds no wheel on the planner's arcs: all roll forwards
            pts = np.concatenate([[[px, py]], np.stack([px + d * math.cos(a), py + d * math.sin(a)], 1),
                                  np.stack([px - d * math.cos(a), py - d * math.sin(a)], 1)])
            h = self.terrain.height_at(pts)
            fwd, bwd = h[1:k_env + 1].max(), h[k_env + 1:].max()
            rise = max(fwd, bwd) if turning else fwd
            worst = max(worst, rise - h[0])
        return worst

    def check(self, planner, pose, i):
        """``(reason, fail_s, verified_s, min_clearance, max_tilt)`` of candidate ``i`` (sampled every
        ``check_step_m`` like the planner)."""
        C = planner.candidates
        p = planner.params
        stride = max(1, int(round(p.check_step_m / p.sample_step_m)))
        x0, y0, yaw0 = pose
        n = int(C.n_samples[i])
        idx = list(range(0, n, stride))
        if idx[-1] != n - 1:
            idx.append(n - 1)
        min_clear, max_tilt, verified = INF, 0.0, 0.0
        steer_key = None
        steer = None
        for j in idx:
            bx, by, bth = (float(v) for v in C.xyt[i, j])
            x = x0 + math.cos(yaw0) * bx - math.sin(yaw0) * by
            y = y0 + math.sin(yaw0) * bx + math.cos(yaw0) * by
            yaw = yaw0 + bth
            s = float(C.s_m[i, j])
            turning = bool(C.turning[i, j])
            key = (turning, float(C.curvature_per_m[i, j]))
            if key != steer_key:
                steer = self._steer_for(key[1], turning)
                steer_key = key
            try:
                self.model.teleport(x, y, yaw)
            except ValueError:
                return "unknown", s, verified, min_clear, max_tilt
            m = self.model
            tilt = m.tilt_rad
            max_tilt = max(max_tilt, tilt)
            min_clear = min(min_clear, m.clearance_m)
            if tilt > self.max_tilt or abs(m.roll_rad) > self.tip_roll or abs(m.pitch_rad) > self.tip_pitch:
                return "tilt", s, verified, min_clear, max_tilt
            if m.clearance_m < p.clearance_margin_m:
                return "clearance", s, verified, min_clear, max_tilt
            if self._step_rise(x, y, yaw, steer, turning) > self.climb:
                return "step", s, verified, min_clear, max_tilt
            verified = s
        return "ok", INF, verified, min_clear, max_tilt
