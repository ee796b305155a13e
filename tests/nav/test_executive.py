"""Tests of nav.executive (NavExecutive: the perceive-plan-drive cycle, goals and safety rules).

A kinematic rover (unicycle integration of the commanded twist at 10 Hz) drives synthetic height maps
drawn in this file; its "cameras" return the true heights inside a 70° cone from 0.4 m to 6 m (no
occlusion). Oracles: nav.traversability of the TRUE map (a trajectory must never enter its lethal cells),
geometry (keep-out discs, goal tolerances, waypoint order), field_dstar.cost_to_goal (the seeded
cost-to-go), and the stated rules (stuck, tilt, pause).
"""
from __future__ import annotations

import math
import re
from collections import namedtuple

import numpy as np
import pytest

import nav
from nav.executive import ExecCommand, ExecParams, NavExecutive, OverwriteMap, _seeded_cost_to_go
from nav.field_dstar import cost_to_goal

PROFILE = nav.load_rover("osr")
CS = 0.1
Local = namedtuple("Local", "height_m cell_size_m origin_xy_m")


def _cone(z, x, y, yaw, fov_deg=70.0, rmin=0.4, rmax=6.0):
    """The true heights the cameras see from (x, y, yaw), on the map's lattice."""
    rows, cols = z.shape
    k = int(rmax / CS) + 1
    r, c = int(y / CS), int(x / CS)
    r0, r1, c0, c1 = max(r - k, 0), min(r + k + 1, rows), max(c - k, 0), min(c + k + 1, cols)
    yy = (np.arange(r0, r1) + 0.5) * CS
    xx = (np.arange(c0, c1) + 0.5) * CS
    dx, dy = xx[None, :] - x, yy[:, None] - y
    d = np.hypot(dx, dy)
    b = np.abs((np.arctan2(dy, dx) - yaw + np.pi) % (2 * np.pi) - np.pi)
    m = (d >= rmin) & (d <= rmax) & (b <= math.radians(fov_deg / 2))
    return Local(np.where(m, z[r0:r1, c0:c1], np.nan).astype(np.float32), CS, (c0 * CS, r0 * CS))


def _drive(z, start, goals, *, keep_out=(), params=None, max_t=300.0, move=True, tilt=None, hook=None):
    """Run the executive on the kinematic rover; returns (executive, trajectory (N, 2), commands)."""
    grid = nav.TerrainMap(np.full(z.shape, np.nan, np.float32), CS)
    ex = NavExecutive(PROFILE, grid, goals, keep_out=keep_out, params=params or ExecParams())
    x, y, yaw = start
    t, dt = 0.0, 0.1
    traj, cmds = [(x, y)], []
    while t < max_t:
        if hook is not None:
            hook(ex, t)
        cmd = ex.step(t, (x, y, yaw), 0.0 if tilt is None else tilt(t))
        cmds.append(cmd)
        if cmd.finished:
            break
        if cmd.want_image:
            ex.observe(_cone(z, x, y, yaw), t_s=t)
        if cmd.want_plan:
            ex.plan_and_install((x, y, yaw), t)
        if move:
            x += cmd.vx_mps * math.cos(yaw) * dt
            y += cmd.vx_mps * math.sin(yaw) * dt
            yaw += cmd.wz_radps * dt
        traj.append((x, y))
        t += dt
    return ex, np.array(traj), cmds


def _lethal_entries(z, traj):
    cm = nav.traversability(nav.TerrainMap(z, CS), PROFILE)
    rc = np.floor(np.asarray(traj)[:, ::-1] / CS).astype(int)
    return int((~np.isfinite(cm.cost[rc[:, 0], rc[:, 1]])).sum())


def _flat(w_m=16.0, h_m=10.0):
    return np.zeros((int(h_m / CS), int(w_m / CS)), np.float32)


# ----------------------------------------------------------------------------- driving
def test_detours_around_a_wall_and_never_enters_a_lethal_cell():
    z = _flat()
    z[30:70, 78:81] = 0.5                       # a 0.5 m wall across the straight line, x = 7.8..8.1 m
    ex, traj, _ = _drive(z, (2.0, 5.0, 0.0), [(14.0, 5.0, 0.3)])
    assert ex.outcome == "reached", ex.reason
    assert _lethal_entries(z, traj) == 0
    assert np.hypot(traj[-1, 0] - 14.0, traj[-1, 1] - 5.0) <= 0.3 + 1e-9
    length = float(np.hypot(*np.diff(traj, axis=0).T).sum())
    assert 12.0 < length < 12.0 * 1.5           # a detour, not a wander
    assert ex.summary()["plans"] >= 5 and ex.max_cross_track_m < 0.25


def test_enclosed_goal_is_unreachable_with_the_blocking_cells_named():
    z = _flat()
    yy, xx = np.mgrid[0:z.shape[0], 0:z.shape[1]]
    d = np.hypot((xx + 0.5) * CS - 12.0, (yy + 0.5) * CS - 5.0)
    z[(d >= 1.5) & (d <= 1.8)] = 0.6            # a closed ring wall around the goal
    ex, traj, cmds = _drive(z, (2.0, 5.0, 0.0), [(12.0, 5.0, 0.3)])
    assert ex.outcome == "unreachable" and ex.state == "failed"
    assert "unreachable" in ex.reason and "around the goal" in ex.reason, ex.reason
    assert any(w in ex.reason for w in ("step", "slope", "roughness")), ex.reason
    # the cell it names lies on the ring (grown by the rover radius)
    import re
    bx, by = (float(v) for v in re.search(r"\(x=([\d.]+) m, y=([\d.]+) m\), is", ex.reason).groups())
    assert 0.8 <= math.hypot(bx - 12.0, by - 5.0) <= 2.4    # ring 1.5..1.8 m, hazard windows + rover radius
    proof = ex.proof
    assert isinstance(proof, nav.CostMap) and not np.isfinite(proof.cost[50, 120 - 16])  # the ring's west side
    assert _lethal_entries(z, traj) == 0
    assert cmds[-1].twist == (0.0, 0.0) and cmds[-1].finished
    # it first drove closer to look again (the ring could have been a far-away misreading), then stopped
    assert any(e[1] == "approach" for e in ex.events)
    assert math.hypot(traj[-1, 0] - 12.0, traj[-1, 1] - 5.0) <= ex.params.approach_m + 0.5
    # it did not wander: at most it drove round the ring to look at its far side (10 m to the ring, ~13 m round it)
    assert float(np.hypot(*np.diff(traj, axis=0).T).sum()) < 20.0


def test_enclosed_goal_seen_from_close_is_unreachable_at_once():
    z = _flat()
    yy, xx = np.mgrid[0:z.shape[0], 0:z.shape[1]]
    d = np.hypot((xx + 0.5) * CS - 7.0, (yy + 0.5) * CS - 5.0)
    z[(d >= 1.5) & (d <= 1.8)] = 0.6
    ex, traj, cmds = _drive(z, (4.0, 5.0, 0.0), [(7.0, 5.0, 0.3)])   # 3 m away: within approach_m
    assert ex.outcome == "unreachable" and not any(e[1] == "approach" for e in ex.events)
    assert float(np.hypot(*np.diff(traj, axis=0).T).sum()) < 0.5


def test_keep_out_disc_is_respected():
    z = _flat()
    ko = (8.0, 5.0, 1.0)
    ex, traj, _ = _drive(z, (2.0, 5.0, 0.0), [(14.0, 5.0, 0.3)], keep_out=[ko])
    assert ex.outcome == "reached", ex.reason
    d = np.hypot(traj[:, 0] - ko[0], traj[:, 1] - ko[1])
    assert d.min() >= ko[2] + PROFILE.inflation_radius_m - 0.05   # the body stays out (centre + radius)


def test_waypoints_visited_in_order():
    z = _flat()
    goals = [(5.0, 8.0, 0.4), (9.0, 2.0, 0.4), (14.0, 6.0, 0.3)]
    ex, traj, cmds = _drive(z, (2.0, 5.0, 0.0), goals)
    assert ex.outcome == "reached", ex.reason
    reached = [e[2]["index"] for e in ex.events if e[1] == "goal_reached"]
    assert reached == [0, 1, 2]
    # first entry into each tolerance disc happens in order
    first = [int(np.argmax(np.hypot(traj[:, 0] - gx, traj[:, 1] - gy) <= tol)) for gx, gy, tol in goals]
    assert all(f > 0 for f in first) and first == sorted(first)
    assert [c.goal_index for c in cmds][-1] == 3


def test_stops_as_soon_as_inside_the_tolerance():
    z = _flat()
    ex, traj, cmds = _drive(z, (2.0, 5.0, 0.0), [(8.0, 5.0, 0.5)])
    assert ex.outcome == "reached"
    d = np.hypot(traj[:, 0] - 8.0, traj[:, 1] - 5.0)
    first_in = int(np.argmax(d <= 0.5))
    assert first_in == len(cmds) - 1            # the tick the rover is inside, the executive finishes
    assert cmds[-1].twist == (0.0, 0.0) and 0.3 < d[-1] <= 0.5


def test_stuck_rover_is_detected():
    z = _flat()
    params = ExecParams(stuck_time_s=5.0)
    ex, traj, cmds = _drive(z, (2.0, 5.0, 0.0), [(12.0, 5.0, 0.3)], params=params, move=False, max_t=60)
    assert ex.outcome == "stuck", ex.reason
    assert "no progress" in ex.reason
    moving = sum(1 for c in cmds if c.vx_mps or c.wz_radps)
    assert 5.0 / 0.1 - 2 <= moving <= 5.0 / 0.1 + 2   # declared after ~stuck_time_s of commanded motion


def test_tilt_beyond_the_limit_stops():
    z = _flat()
    ex, traj, cmds = _drive(z, (2.0, 5.0, 0.0), [(12.0, 5.0, 0.3)],
                            tilt=lambda t: math.radians(30.0) if t > 3.0 else 0.0)
    assert ex.outcome == "tilt" and "max_tilt_deg 25" in ex.reason
    assert cmds[-1].twist == (0.0, 0.0)


def test_pause_and_resume():
    z = _flat()
    seen = []

    def hook(ex, t):
        if abs(t - 3.0) < 1e-6:
            ex.pause("e-stop")
        if abs(t - 5.0) < 1e-6:
            ex.resume()
        seen.append(t)

    ex, traj, cmds = _drive(z, (2.0, 5.0, 0.0), [(8.0, 5.0, 0.3)], hook=hook)
    assert ex.outcome == "reached"
    paused = [c for c in cmds if c.state == "paused"]
    assert len(paused) == 20 and all(c.twist == (0.0, 0.0) and not c.want_plan for c in paused)
    assert paused[0].reason == "e-stop"
    after = cmds[len([c for c in cmds[:50]])]     # the tick at t = 5 s asks for a new image
    assert after.want_image


def test_stop_and_go_stops_between_steps():
    z = _flat()
    ex, traj, cmds = _drive(z, (2.0, 5.0, 0.0), [(10.0, 5.0, 0.3)], params=ExecParams(mode="stop_and_go"))
    assert ex.outcome == "reached"
    moving = np.array([c.vx_mps > 0 or c.wz_radps != 0 for c in cmds])
    starts = int(np.count_nonzero(moving[1:] & ~moving[:-1]))
    assert starts >= 8 / 0.5 - 3                 # one stop per ~0.5 m step
    ex2, _, cmds2 = _drive(z, (2.0, 5.0, 0.0), [(10.0, 5.0, 0.3)])
    moving2 = np.array([c.vx_mps > 0 or c.wz_radps != 0 for c in cmds2])
    assert int(np.count_nonzero(moving2[1:] & ~moving2[:-1])) < starts / 3


# ----------------------------------------------------------------------------- pieces
def test_seeded_cost_to_go_matches_field_dstar_for_one_seed():
    rng = np.random.default_rng(2)
    cost = (1.0 + 3.0 * rng.random((40, 50))).astype(np.float32)
    cost[rng.random(cost.shape) < 0.1] = np.inf
    cost[20, 25] = 1.0
    ref = cost_to_goal(cost, (20, 25), interp=True)
    ours = _seeded_cost_to_go(cost, np.array([[20, 25]]), np.array([0.0]))
    np.testing.assert_array_equal(np.isfinite(ours), np.isfinite(ref))
    np.testing.assert_allclose(ours[np.isfinite(ref)], ref[np.isfinite(ref)], rtol=1e-12)
    # two seeds with offsets: never above the best single-seed field, exact at the seeds
    cost[5, 5] = 1.0
    ref2 = cost_to_goal(cost, (5, 5), interp=True)
    two = _seeded_cost_to_go(cost, np.array([[20, 25], [5, 5]]), np.array([3.0, 10.0]))
    best = np.minimum(ref + 3.0, ref2 + 10.0)
    fin = np.isfinite(best)
    assert np.all(two[fin] <= best[fin] + 1e-9)
    assert two[20, 25] == 3.0 and two[5, 5] == 10.0


def test_overwrite_map_merges_on_the_lattice():
    m = OverwriteMap(nav.TerrainMap(np.full((10, 10), np.nan, np.float32), 0.1))
    h = np.full((2, 3), np.nan, np.float32)
    h[1, 2] = 0.5
    u = m.merge(Local(h, 0.1, (0.3, 0.4)))
    assert list(zip(u.rows, u.cols)) == [(5, 5)] and m.height_m[5, 5] == np.float32(0.5)
    with pytest.raises(ValueError, match="lattice"):
        m.merge(Local(h, 0.1, (0.33, 0.4)))


def test_bad_inputs_raise_clear_errors():
    grid = nav.TerrainMap(np.zeros((50, 50), np.float32), CS)
    with pytest.raises(ValueError, match=r"goals\[0\].*outside the map"):
        NavExecutive(PROFILE, grid, [(9.0, 1.0, 0.3)])
    with pytest.raises(ValueError, match="tolerance_m > 0"):
        NavExecutive(PROFILE, grid, [(1.0, 1.0, 0.0)])
    with pytest.raises(ValueError, match="goals must not be empty"):
        NavExecutive(PROFILE, grid, [])
    with pytest.raises(ValueError, match=r"keep_out\[0\]"):
        NavExecutive(PROFILE, grid, [(1.0, 1.0, 0.3)], keep_out=[(1.0, 2.0)])
    with pytest.raises(ValueError, match="ExecParams.mode"):
        ExecParams(mode="fast")
    with pytest.raises(ValueError, match="window_m"):
        ExecParams(window_m=2.0)
    with pytest.raises(TypeError, match="grid must be"):
        NavExecutive(PROFILE, np.zeros((5, 5)), [(1.0, 1.0, 0.3)])
    ex = NavExecutive(PROFILE, grid, [(4.0, 4.0, 0.3)])
    with pytest.raises(ValueError, match="pose must be"):
        ex.step(0.0, (1.0, 2.0))
    cmd = ex.step(0.0, (1.0, 1.0, 0.0))
    assert isinstance(cmd, ExecCommand) and cmd.want_image and not cmd.want_plan and cmd.twist == (0.0, 0.0)


def test_plan_in_flight_during_a_pause_is_dropped():
    z = _flat()
    grid = nav.TerrainMap(np.full(z.shape, np.nan, np.float32), CS)
    ex = NavExecutive(PROFILE, grid, [(8.0, 5.0, 0.3)])
    pose = (2.0, 5.0, 0.0)
    assert ex.step(0.0, pose).want_image
    ex.observe(_cone(z, *pose), t_s=0.0)
    assert ex.step(0.1, pose).want_plan
    stale = ex.plan(pose, 0.1)                 # in flight (a worker thread on hardware)
    ex.pause("link lost")
    cmd = ex.step(0.2, pose)
    assert cmd.state == "paused" and cmd.twist == (0.0, 0.0) and not cmd.want_image
    ex.resume()
    ex.install(stale, 0.3)                     # arrives after the resume: dropped
    cmd = ex.step(0.4, pose)
    assert cmd.want_image and cmd.twist == (0.0, 0.0) and ex.state == "waiting"
    ex.observe(_cone(z, *pose), t_s=0.4)
    assert ex.step(0.5, pose).want_plan
    ex.plan_and_install(pose, 0.5)
    assert ex.step(0.6, pose).vx_mps > 0 or ex.state == "driving"


# ----------------------------------------------------------------------------- the margin band
def test_a_sill_within_the_limits_but_over_the_margins_is_crossed_only_with_the_band():
    """A 0.14 m step across the whole map: over the planning margin (0.85 x 0.15 m) but within the OSR's
    0.15 m limit. With the margin band it is a costly passage (reached, no lethal cell of the truth
    entered); with the band made lethal (the strict setting) the goal is unreachable and the reason names
    the margin limit."""
    z = _flat()
    z[:, 80:] += 0.14
    assert np.isfinite(nav.traversability(nav.TerrainMap(z, CS), PROFILE).cost).all()   # drivable in truth
    ex, traj, _ = _drive(z, (2.0, 5.0, 0.0), [(14.0, 5.0, 0.3)], params=ExecParams(margin_band_cost=30.0))
    assert ex.outcome == "reached", ex.reason
    assert _lethal_entries(z, traj) == 0
    assert ExecParams().margin_band_cost is None                       # the band is lethal by default
    ex, traj, _ = _drive(z, (2.0, 5.0, 0.0), [(14.0, 5.0, 0.3)], params=ExecParams(margin_fallback_cost=None))
    assert ex.outcome == "unreachable" and "max_step_m 0.1275" in ex.reason, ex.reason


def test_the_band_is_avoided_when_a_clear_route_exists_and_beyond_the_limit_stays_lethal():
    """A 0.14 m sill with a 2 m gap 2 m off the straight line: the rover drives through the gap (never
    over band cells); a 0.2 m sill (over the profile's limit) with the same gap is never crossed."""
    for h in (0.14, 0.2):
        z = _flat()
        z[:70, 80:83] += h                   # a ridge from y = 0 to 7 m; the gap is y = 7..10 m
        ex, traj, _ = _drive(z, (2.0, 5.0, 0.0), [(14.0, 5.0, 0.3)], params=ExecParams(margin_band_cost=30.0))
        assert ex.outcome == "reached", ex.reason
        assert _lethal_entries(z, traj) == 0
        cm = nav.traversability(nav.TerrainMap(z, CS), PROFILE, max_step_m=0.1275, max_slope_deg=18.4,
                                max_roughness_m=0.046, inflation_radius_m=PROFILE.inflation_radius_m)
        rc = np.floor(traj[:, ::-1] / CS).astype(int)
        assert np.isfinite(cm.cost[rc[:, 0], rc[:, 1]]).all()      # no band cell entered either
        assert traj[:, 1].max() > 6.9                               # it went round through the gap


def test_the_fallback_relaxes_the_margins_only_when_the_goal_is_otherwise_unreachable():
    """margin_fallback_cost: a sill across the whole map (over the margin, within the limit) is crossed after
    relaxing only as far as it needs (``margin_relax_keep`` (0.5, 0): a 0.135 m sill with half the step
    margin kept, 0.13875 m; a 0.14 m one at the profile's limit), without entering a lethal cell of the
    truth; a sill with a gap is driven round through the gap without relaxing; a 0.2 m sill (over the
    profile's own limit) stays unreachable after relaxing, and the reason names the profile's limit, not
    the margin's."""
    fb = ExecParams(margin_fallback_cost=30.0)
    for sill, whys in ((0.135, ["max_step_m 0.1275"]), (0.14, ["max_step_m 0.1275", "max_step_m 0.13875"])):
        z = _flat()
        z[:, 80:] += sill
        ex, traj, _ = _drive(z, (2.0, 5.0, 0.0), [(14.0, 5.0, 0.3)], params=fb)
        assert ex.outcome == "reached", ex.reason
        assert _lethal_entries(z, traj) == 0
        relaxed = [e for e in ex.events if e[1] == "margins_relaxed"]
        assert [e[2]["keep"] for e in relaxed] == [0.5, 0.0][:len(whys)]
        assert len(relaxed) == len(whys) and all(w in e[2]["why"] for w, e in zip(whys, relaxed)), relaxed
        assert ex.summary()["margins_relaxed"] is True and ex.summary()["margin_relaxations"] == len(whys)
    # relaxing straight to the profile's limits, as before margin_relax_keep
    ex, traj, _ = _drive(z, (2.0, 5.0, 0.0), [(14.0, 5.0, 0.3)],
                         params=ExecParams(margin_fallback_cost=30.0, margin_relax_keep=(0.0,)))
    assert ex.outcome == "reached" and ex.summary()["margin_relaxations"] == 1, ex.reason

    z = _flat()
    z[:70, 80:83] += 0.14                    # the same sill with a 3 m gap: no need to relax
    ex, traj, _ = _drive(z, (2.0, 5.0, 0.0), [(14.0, 5.0, 0.3)], params=fb)
    assert ex.outcome == "reached", ex.reason
    assert ex.summary()["margins_relaxed"] is False
    assert traj[:, 1].max() > 6.9

    z = _flat()
    z[:, 80:] += 0.2
    ex, traj, _ = _drive(z, (2.0, 5.0, 0.0), [(14.0, 5.0, 0.3)], params=fb)
    assert ex.outcome == "unreachable" and ex.summary()["margins_relaxed"] is True
    assert re.search(r"> max_(step_m 0\.15|roughness_m 0\.05|slope_deg 20)\b", ex.reason), ex.reason
    assert "0.1275" not in ex.reason
    assert _lethal_entries(z, traj) == 0


def test_a_rover_that_has_driven_half_again_the_route_relaxes_the_margins_once():
    """wander_relax_ratio: a 0.135 m sill across the map (over the step margin, within half of it) with a gap
    at the bottom edge. Planned from the start, the route goes round through the gap; once the odometer
    shows over 1.5 times the straight route (12 m) without arriving, the first step of margin_relax_keep is
    taken though a route exists, and the route crosses the sill. Only that step: a 0.145 m sill (over the
    half-kept margin, within the profile's limit) is still driven round. Off (None), it never relaxes."""
    def plan_after(z, params, wander_m):
        ex = NavExecutive(PROFILE, nav.TerrainMap(z, CS), [(14.0, 5.0, 0.3)], params=params)
        first = ex.plan((2.0, 5.0, 0.0), 0.0)
        t = 0.0
        ex.step(t, (2.0, 5.0, 0.0))
        for i in range(int(round(wander_m / 0.5))):        # driven to and fro by hand: 0.5 m each tick
            t += 0.1
            ex.step(t, (2.0 + 0.5 * ((i + 1) % 2), 5.0, 0.0))
        assert ex.odometer_m == pytest.approx(wander_m)
        return ex, first, ex.plan((2.0, 5.0, 0.0), t + 0.1)

    def through_gap(res):
        return res.global_xy_m[:, 1].min() < 1.5

    for sill, crosses in ((0.135, True), (0.145, False)):
        z = _flat()
        z[15:, 80:83] += sill                 # the gap: y < 1.5 m
        ex, first, later = plan_after(z, ExecParams(), 17.0)            # under 1.5x the route: no change
        assert through_gap(first) and through_gap(later) and ex.summary()["margin_relaxations"] == 0
        ex, first, later = plan_after(z, ExecParams(), 19.0)
        relaxed = [e for e in ex.events if e[1] == "margins_relaxed"]
        assert [e[2]["keep"] for e in relaxed] == [0.5], relaxed
        why = relaxed[0][2]["why"]
        assert "driven 19.0 m without arriving" in why and "12.0 m straight route" in why, why
        assert through_gap(later) is not crosses, later.global_xy_m
        ex, first, later = plan_after(z, ExecParams(wander_relax_ratio=None), 19.0)
        assert through_gap(later) and ex.summary()["margin_relaxations"] == 0
    for bad in (0.5, math.inf, "twice", True):
        with pytest.raises(ValueError, match="wander_relax_ratio"):
            ExecParams(wander_relax_ratio=bad)


def test_when_every_arc_fails_the_margins_relax_before_the_goal_is_given_up(monkeypatch):
    """max_local_failures consecutive failures of every arc relax the margins by the next step of
    margin_relax_keep (the count starting again) rather than end the traverse; the goal is given up only
    when no step is left. A local planner that fails until the margins are relaxed: the rover arrives
    after one relaxation whose reason names the failures; one that always fails: unreachable after
    3 x max_local_failures failures and both steps."""
    orig = NavExecutive._local_plan

    def failing_until(level):
        def _local_plan(self, *a):
            return orig(self, *a) if self._relax_level >= level else None
        return _local_plan

    params = ExecParams(max_local_failures=3)
    monkeypatch.setattr(NavExecutive, "_local_plan", failing_until(1))
    ex, traj, _ = _drive(_flat(), (2.0, 5.0, 0.0), [(8.0, 5.0, 0.3)], params=params)
    assert ex.outcome == "reached", ex.reason
    relaxed = [e for e in ex.events if e[1] == "margins_relaxed"]
    assert [e[2]["keep"] for e in relaxed] == [0.5], relaxed
    assert "every candidate arc failed 3 times in a row" in relaxed[0][2]["why"]
    assert ex.summary()["local_failures"] == 3

    monkeypatch.setattr(NavExecutive, "_local_plan", failing_until(99))
    ex, traj, _ = _drive(_flat(), (2.0, 5.0, 0.0), [(8.0, 5.0, 0.3)], params=params)
    assert ex.outcome == "unreachable" and "every candidate arc failed 3 times" in ex.reason, ex.reason
    assert [e[2]["keep"] for e in ex.events if e[1] == "margins_relaxed"] == [0.5, 0.0]
    assert ex.summary()["local_failures"] == 9
    ex, traj, _ = _drive(_flat(), (2.0, 5.0, 0.0), [(8.0, 5.0, 0.3)],
                         params=ExecParams(max_local_failures=3, margin_fallback_cost=None))
    assert ex.outcome == "unreachable" and ex.summary()["local_failures"] == 3, ex.reason


def test_margin_band_cost_is_validated():
    for bad in (-1.0, math.inf, "high", True):
        for name in ("margin_band_cost", "margin_fallback_cost"):
            with pytest.raises(ValueError, match=name):
                ExecParams(**{name: bad})
    for bad in ((), (0.5, 0.5), (0.0, 0.5), (1.0,), (-0.1,), ("half",), (True,), 0.5, None):
        with pytest.raises(ValueError, match="margin_relax_keep"):
            ExecParams(margin_relax_keep=bad)
    assert ExecParams(margin_relax_keep=[0.75, 0.25, 0]).margin_relax_keep == (0.75, 0.25, 0.0)


# ----------------------------------------------------------------------------- the arc guard
def _driving(z, pose=(2.0, 5.0, 0.0), goal=(12.0, 5.0, 0.3)):
    """An executive that has seen the flat ground ahead and is driving its first arc east."""
    grid = nav.TerrainMap(np.full(z.shape, np.nan, np.float32), CS)
    ex = NavExecutive(PROFILE, grid, [goal])
    assert ex.step(0.0, pose).want_image
    ex.observe(_cone(z, *pose), t_s=0.0)
    assert ex.step(0.1, pose).want_plan
    ex.plan_and_install(pose, 0.1)
    assert ex.state == "driving" and ex._path is not None
    return ex


def _rock_ahead(z, x_m, y_m=5.0, h=0.4):
    """The map after a picture shows a 0.2 m wide rock of height ``h`` centred at (x_m, y_m)."""
    z2 = z.copy()
    r, c = int(y_m / CS), int(x_m / CS)
    z2[r - 1:r + 1, c - 1:c + 1] = h
    return Local(z2[30:70, 0:140].copy(), CS, (0.0, 3.0))


def _on_lethal(ex, x, y):
    return not np.isfinite(ex.costmap().cost[int(y / CS), int(x / CS)])


def test_an_arc_the_map_closes_far_ahead_is_cut_short_and_a_new_plan_asked_for():
    """A rock appears on the map 1.5 m ahead on the arc being driven (a picture taken while driving):
    the executive keeps driving (no stop) but asks for a plan at once, and without one it halts before
    the rock's inflated margin: the rover's centre never enters a cell its own map calls lethal."""
    z = _flat()
    ex = _driving(z)
    assert ex._path[-1, 0] > 3.7                              # the arc runs over where the rock will be
    x, y, yaw, t = 2.0, 5.0, 0.0, 0.2
    ex.observe(_rock_ahead(z, 3.6), t_s=t)                 # no plan follows: the planner is "busy"
    ex._need_plan = False                                    # (the picture's own plan request, dropped)
    cmd = ex.step(t, (x, y, yaw))
    assert cmd.vx_mps > 0 and cmd.want_plan                  # still driving, and a plan is wanted
    assert [e[1] for e in ex.events].count("path_closed") == 1
    assert "step" in ex.events[-1][2]["why"] or "rover radius" in ex.events[-1][2]["why"]
    for _ in range(200):                                     # drive it out without ever planning
        t += 0.1
        cmd = ex.step(t, (x, y, yaw))
        x += cmd.vx_mps * 0.1
        assert not _on_lethal(ex, x, y), (x, y)
        if cmd.vx_mps == 0.0:
            break
    assert cmd.vx_mps == 0.0 and 2.4 < x < 3.6 - PROFILE.inflation_radius_m


def test_an_arc_closed_within_the_stopping_distance_stops_the_rover_now():
    z = _flat()
    ex = _driving(z)
    x = 2.0
    for k in range(5):                                       # up to speed
        cmd = ex.step(0.2 + 0.1 * k, (x, 5.0, 0.0))
        x += cmd.vx_mps * 0.1
    assert cmd.vx_mps > 0
    # a hazard whose inflated margin begins a cell ahead of the rover
    ex.observe(_rock_ahead(z, x + PROFILE.inflation_radius_m + ex.params.inflation_margin_m + 0.2), t_s=0.8)
    cmd = ex.step(0.8, (x, 5.0, 0.0))
    assert cmd.twist == (0.0, 0.0) and ex._path is None
    assert ex.events[-1][1] == "path_blocked" and ex.events[-1][2]["ahead_m"] < 0.3
    assert cmd.want_plan or ex._plan_pending or ex._need_image


# ----------------------------------------------------------------------------- ground no camera saw
def _seen_except(x, y, radius_m, *, prior=True, w_m=16.0, h_m=10.0):
    """An executive whose map knows flat ground everywhere from a prior, and whose cameras saw all of it
    except a disc of ``radius_m`` around (x, y) (as after a turn in place: the near field is blind)."""
    z = _flat(w_m, h_m)
    grid = nav.TerrainMap(z.copy() if prior else np.full(z.shape, np.nan, np.float32), CS)
    ex = NavExecutive(PROFILE, grid, [(w_m - 1.0, y, 0.3)])
    rows, cols = z.shape
    yy = (np.arange(rows) + 0.5) * CS - y
    xx = (np.arange(cols) + 0.5) * CS - x
    hole = xx[None, :] ** 2 + yy[:, None] ** 2 <= radius_m ** 2
    ex.observe(Local(np.where(hole, np.nan, z).astype(np.float32), CS, (0.0, 0.0)), t_s=0.0)
    return ex, hole


def test_unseen_ground_away_from_the_start_is_not_driven_on_even_with_a_prior():
    # the rover started at (2, 5); now at (8, 5) with 0.8 m around it never seen by a camera, though the
    # orbital prior calls it flat: no arc may put the rover on that ground (only the cells under its body are
    # known). Before the rule, the unseen ground within the blind distance was filled in and driven on.
    ex, hole = _seen_except(8.0, 5.0, 0.8)
    ex.step(0.0, (2.0, 5.0, 0.0))
    res = ex.plan((8.0, 5.0, 0.0), 1.0)
    lp = res.local
    if lp:                               # only what the body check verified may be driven
        xy = lp.xy_upto(lp.verified_length_m)
        d = np.hypot(xy[:, 0] - 8.0, xy[:, 1] - 5.0)
        assert d.max() <= 0.2, f"drove {d.max():.2f} m into ground no camera saw"
    else:
        assert "unknown" in str(lp)
    # the same ground around the start pose is the start zone (clear by the start rule): the rover drives off
    ex2, _ = _seen_except(2.0, 5.0, 0.7)
    res2 = ex2.plan((2.0, 5.0, 0.0), 0.0)
    assert res2.local and res2.local.verified_length_m >= 0.5


def test_an_unseen_patch_beside_the_rover_steers_the_arc_to_seen_ground():
    # away from the start, a patch ahead-left (within the blind distance) was never seen, the rest was: the arc
    # taken keeps the rover off the patch, and the body check is not spent on arcs whose wheels would cross it
    ex, hole = _seen_except(8.45, 5.3, 0.35)
    ex.step(0.0, (2.0, 5.0, 0.0))
    res = ex.plan((8.0, 5.0, 0.0), 1.0)
    lp = res.local
    assert lp, str(lp)
    xy = lp.xy_upto(lp.verified_length_m)
    rc = np.floor(xy[:, ::-1] / CS).astype(int)
    body = np.hypot(xy[:, 0] - 8.0, xy[:, 1] - 5.0) <= 0.5
    assert not hole[rc[~body, 0], rc[~body, 1]].any()
    assert lp.verified_length_m >= 0.5
    # and no wheel over it: the centre line keeps the rover radius from every unseen cell
    hr, hc = np.nonzero(hole)
    hxy = np.stack([(hc + 0.5) * CS, (hr + 0.5) * CS], axis=1)
    d = np.hypot(xy[~body, None, 0] - hxy[None, :, 0], xy[~body, None, 1] - hxy[None, :, 1]).min()
    assert d >= PROFILE.inflation_radius_m, f"the arc passes {d:.2f} m from ground no camera saw"


# ----------------------------------------------------------------------------- the near map
def _rock_maps(h=0.14):
    """Flat ground 4 x 4 m with a rock one 5 cm cell across and ``h`` tall at fine cell (40, 40): the fine
    (5 cm) heights and the planning cells' (10 cm) block means."""
    fine = np.zeros((80, 80), np.float32)
    fine[40, 40] = h
    return fine, fine.reshape(40, 2, 40, 2).mean(axis=(1, 3))


def test_a_rock_the_planning_cells_average_away_is_lethal_from_the_near_map():
    """A 0.14 m rock one 5 cm cell across: its 10 cm cell averages it to 0.035 m, no hazard; the near map
    keeps the 0.14 m step (over 0.9 x 0.15 m), so exactly the map cells within the rover radius
    (traversability's disc rule, brute force) of the four cells its step window reaches are lethal, and
    the explanation names the step."""
    fine, coarse = _rock_maps()
    grid = nav.TerrainMap(np.full((50, 50), np.nan, np.float32), CS)
    ex = NavExecutive(PROFILE, grid, [(4.5, 4.5, 0.3)])
    ex.observe(Local(coarse, CS, (0.0, 0.0)), t_s=0.0)
    assert np.isfinite(ex.costmap().cost[20, 20])                       # averaged away on the planning map
    ex = NavExecutive(PROFILE, grid, [(4.5, 4.5, 0.3)], params=ExecParams(near_step_margin=0.1))
    ex.observe(Local(coarse, CS, (0.0, 0.0)), t_s=0.0, near=Local(fine, 0.05, (0.0, 0.0)))
    cm = ex.costmap()
    src = [(r, c) for r in (19, 20) for c in (19, 20)]                 # fine rows/cols 39..41 pooled
    r2 = int(math.floor((PROFILE.inflation_radius_m + ExecParams().inflation_margin_m) ** 2 / CS ** 2 + 1e-6))
    rr, cc = np.mgrid[0:40, 0:40]
    want = np.zeros((40, 40), bool)
    for r, c in src:
        want |= (rr - r) ** 2 + (cc - c) ** 2 <= r2
    np.testing.assert_array_equal(~np.isfinite(cm.cost[:40, :40]), want)
    assert "step 0.14 m" in ex.explain((20, 20)), ex.explain((20, 20))
    # a 0.125 m rock under the default near limit (0.12 m) but not the planning map's (0.1275 m): "step 0.125 m
    # > max_step_m 0.1275" would be false, so the sentence names the near limit, at the rock and beside it
    ex2 = NavExecutive(PROFILE, grid, [(4.5, 4.5, 0.3)])                 # default: near limit 0.12 m
    fine3, coarse3 = _rock_maps(0.125)
    ex2.observe(Local(coarse3, CS, (0.0, 0.0)), t_s=0.0, near=Local(fine3, 0.05, (0.0, 0.0)))
    for rc in ((20, 20), (20, 22)):                                      # the hazard and an inflated cell
        why = ex2.explain(rc)
        assert "0.12" in why and "0.1275" not in why and "5 cm map" in why, why
    # the near limit relaxes with the margins: half of them kept (margin_relax_keep's first step) it is
    # 0.135 m, so the 0.14 m rock stays lethal and a 0.13 m one is in the band (a cost); at the profile's own
    # 0.15 m (the second step) the 0.14 m rock is in the band too
    for h, lethal1 in ((0.13, False), (0.14, True)):
        ex3 = NavExecutive(PROFILE, grid, [(4.5, 4.5, 0.3)])
        fine4, coarse4 = _rock_maps(h)
        ex3._relax_margins("test")
        ex3.observe(Local(coarse4, CS, (0.0, 0.0)), t_s=0.0, near=Local(fine4, 0.05, (0.0, 0.0)))
        cost = ex3.costmap().cost
        assert np.isfinite(cost[20, 20]) != lethal1
        if lethal1:
            why = ex3.explain((20, 20))
            assert "0.135" in why and "5 cm map" in why, why
        else:
            assert cost[20, 20] >= ExecParams().margin_fallback_cost
    ex3._relax_margins("again")                        # the 0.14 m rock; re-assesses the whole map
    assert np.isfinite(ex3.costmap().cost[:40, :40]).all()
    # a 0.12 m rock is within the near limit: nothing lethal; a later view of the cell replaces the earlier
    fine2, _ = _rock_maps(0.12)
    ex.observe(Local(coarse, CS, (0.0, 0.0)), t_s=1.0, near=Local(fine2, 0.05, (0.0, 0.0)))
    assert np.isfinite(ex.costmap().cost[:40, :40]).all()


def test_the_near_map_must_sit_on_the_maps_lattice():
    fine, coarse = _rock_maps()
    grid = nav.TerrainMap(np.full((50, 50), np.nan, np.float32), CS)
    ex = NavExecutive(PROFILE, grid, [(4.5, 4.5, 0.3)])
    with pytest.raises(ValueError, match="must divide"):
        ex.observe(Local(coarse, CS, (0.0, 0.0)), t_s=0.0, near=Local(fine, 0.03, (0.0, 0.0)))
    with pytest.raises(ValueError, match="not on the map's lattice"):
        ex.observe(Local(coarse, CS, (0.0, 0.0)), t_s=0.0, near=Local(fine, 0.05, (0.02, 0.0)))
    with pytest.raises(ValueError, match="near_step_margin"):
        ExecParams(near_step_margin=0.6)


def test_roughness_the_planning_cells_average_away_is_lethal_from_the_near_map():
    """Bumps of +-0.048 m alternating on 5 cm cells over a 1 m patch: each 10 cm cell averages them to flat
    (no roughness on the planning map), the near map's footprint plane fit keeps 0.048 m of RMS residual,
    over the near limit 0.92 x 0.05 m (``near_roughness_margin=0.08``) and under the profile's 0.05 m.
    Exactly the map cells within the rover radius (brute force) of a map cell whose 5 cm cells are over the
    limit are lethal; the explanation names the near limit and the map; without near roughness (None, the
    default) or once the margins relax to the profile's limits, nothing is lethal."""
    a = 0.048
    fine = np.zeros((80, 80), np.float32)
    rr, cc = np.mgrid[30:50, 30:50]
    fine[30:50, 30:50] = np.where((rr + cc) % 2 == 0, a, -a)
    coarse = fine.reshape(40, 2, 40, 2).mean(axis=(1, 3))
    assert np.abs(coarse).max() < 1e-6
    grid = nav.TerrainMap(np.full((50, 50), np.nan, np.float32), CS)

    def lethal(params, relax=False):
        ex = NavExecutive(PROFILE, grid, [(4.5, 4.5, 0.3)], params=params)
        if relax:
            ex._relax_margins("test")
        ex.observe(Local(coarse, CS, (0.0, 0.0)), t_s=0.0, near=Local(fine, 0.05, (0.0, 0.0)))
        return ex, ~np.isfinite(ex.costmap().cost[:40, :40])

    on = ExecParams(near_roughness_margin=0.08)
    ex, got = lethal(on)
    rough = nav.traversability(nav.TerrainMap(fine, 0.05), PROFILE).roughness_m
    assert 0.047 < np.nanmax(rough) < 0.05                       # the fine map's own reading of the patch
    src = np.nanmax(rough.reshape(40, 2, 40, 2), axis=(1, 3)) > 0.05 * (1 - on.near_roughness_margin)
    r2 = int(math.floor((PROFILE.inflation_radius_m + ExecParams().inflation_margin_m) ** 2 / CS ** 2 + 1e-6))
    want = np.zeros((40, 40), bool)
    gr, gc = np.mgrid[0:40, 0:40]
    for r, c in zip(*np.nonzero(src)):
        want |= (gr - r) ** 2 + (gc - c) ** 2 <= r2
    assert src.sum() >= 16
    np.testing.assert_array_equal(got, want)
    why = ex.explain((20, 20))
    assert "roughness" in why and "0.046" in why and "5 cm map" in why, why
    assert not lethal(ExecParams())[1].any()
    assert not lethal(ExecParams(near_roughness_margin=0.08, margin_relax_keep=(0.0,)), relax=True)[1].any()
    with pytest.raises(ValueError, match="near_roughness_margin"):
        ExecParams(near_roughness_margin=0.5)
