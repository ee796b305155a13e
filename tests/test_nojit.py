"""Every kernel family run uncompiled (NUMBA_DISABLE_JIT=1) on small inputs equals the compiled run.

Uncompiled kernels are plain Python over numpy arrays, so an out-of-bounds index raises instead of
reading garbage; agreement with the compiled run also catches type-dependent behaviour. The script
runs in a subprocess because the JIT switch is read at import.
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r'''
import json, sys
import numpy as np
import nav
from sim.terrain import generate_terrain

out = {}
gen = generate_terrain("mars", size_m=4.0, cell_size_m=0.1, seed=5)
out["terrain"] = gen.terrain.elevation_m
out["rocks"] = np.array([len(gen.rocks), len(gen.craters)], dtype=np.float64)
cm = nav.traversability(gen.terrain, nav.load_rover("skidsteer"))
for k in ("cost", "slope_deg", "step_m", "roughness_m"):
    out[k] = getattr(cm, k)
out["reason"] = cm.reason.astype(np.float64)
rng = np.random.default_rng(0)
cost = rng.uniform(1, 4, (24, 24)).astype(np.float32)
cost[rng.random((24, 24)) < 0.2] = np.inf
cost[0, 0] = cost[23, 23] = 1.0
for planner in ("astar", "dijkstra", "field_dstar", "dstar_lite"):
    try:
        p = nav.plan_grid(cost, (0, 0), (23, 23), planner=planner)
        out["plan_" + planner] = np.r_[p.cost, p.points_rcf.ravel()]
    except nav.NoPathFound:
        out["plan_" + planner] = np.array([-1.0])
d = nav.DStarLite(cost, (0, 0), (23, 23))
d.plan()
d.update_cells(np.array([[5, 5], [6, 6], [7, 7]]), np.array([np.inf, 2.0, 3.0]))
d.move_start((1, 1))
out["dstar_replan"] = np.array([d.replan().cost])
tm = nav.TerrainMap(rng.normal(0, 1, (17, 13)), 0.3)
out["resample_coarse"] = tm.resampled(0.7).elevation_m
out["resample_fine"] = tm.resampled(0.2).elevation_m
from sim.world import World
from sim.rover_model import RoverModel
w = World.generate("mars", size_m=4.0, cell_size_m=0.1, seed=5)
for name in ("osr", "skidsteer"):
    m = RoverModel(w, nav.load_rover(name), x_m=1.5, y_m=2.0, yaw_rad=0.3)
    speed, steer = m.layout.inverse(0.2, 0.2)
    m.step(40, 0.02, speed, steer)
    m.step(10, 0.02, speed, steer, slip_override=0.3, push_world_mps=(0.05, 0.0))
    out["physics_" + name] = np.r_[m.x_m, m.y_m, m.z_m, m.yaw_rad, m.pitch_rad, m.roll_rad, m.clearance_m,
                                   m.wheel_angle_rad, m.slip, m.wheel_force_n, m.gyro_true_radps,
                                   m.accel_true_mps2, float(m.faults), len(m.events)]
from nav.config import Camera
from sim.camera import StereoRenderer, shadow_map
from sim.frames import T_world_body
cam = Camera(width_px=64, height_px=48, max_range_m=6.0)
w = World.generate("moon", size_m=4.0, cell_size_m=0.1, seed=5)
f = StereoRenderer(w, cam).render(T_world_body(1.0, 2.0, float(w.terrain.height_at((2.0, 2.0))), 0.3, 0.05, 0.02),
                                  rng=np.random.default_rng(1))
out["camera_left"], out["camera_right"] = f.left.astype(np.float64), f.right.astype(np.float64)
out["camera_depth"] = np.where(np.isfinite(f.depth_m), f.depth_m, -1.0)
out["camera_lit"] = shadow_map(w)
from perception.stereo_map import GlobalMap, StereoMapper, rasterize
sm = StereoMapper.from_camera(cam)
g = GlobalMap(w.terrain.shape, 0.1)
pts = sm.points_from_depth(f.depth_m)
up1 = g.merge(sm.local_map(pts, f.T_world_left, grid=g), stamp=0.0)
up2 = g.merge(sm.local_map(pts, f.T_world_left @ T_world_body(0.05, 0.0, 0.02, 0.01, 0.0, 0.0), grid=g), stamp=1.0)
out["stereo_map_height"], out["stereo_map_var"] = g.height_m, g.var_m2
out["stereo_map_changed"] = np.r_[up1.rows, up1.cols, up2.rows, up2.cols].astype(np.float64)
lm = rasterize(rng.normal(0, 0.3, (300, 3)), rng.uniform(1e-5, 1e-2, 300), cell_size_m=0.1)
out["stereo_map_raster"], out["stereo_map_raster_var"] = lm.height_m, lm.var_m2
from nav.local_planner import ArcParams, ArcPlanner, CostToGo
lp_gen = generate_terrain("mars", size_m=4.0, cell_size_m=0.1, seed=5, clear_zones=[(1.0, 2.0, 0.5), (3.4, 2.0, 0.3)],
                          relief_rms_m=0.03)
lp_tm = lp_gen.terrain.with_elevation(np.where(np.arange(40)[None, :] > 36, np.nan, lp_gen.terrain.elevation_m))
for name in ("osr", "skidsteer"):
    prof = nav.load_rover(name)
    cm = nav.traversability(lp_tm, prof, unknown="penalty")
    ctg = CostToGo.from_costmap(cm, (3.4, 2.0))
    pl = ArcPlanner(prof, ArcParams(lengths_m=(0.5, 1.5), n_curvatures=5, n_curvatures_second=3,
                                    point_turns_deg=(90.0,), n_curvatures_after_turn=3))
    sc = pl.score((1.0, 2.0, 0.3), lp_tm, cm, ctg)
    out["lp_score_" + name] = np.r_[sc.status, np.where(np.isfinite(sc.score), sc.score, -1.0),
                                   np.where(np.isfinite(sc.block_s_m), sc.block_s_m, -1.0)]
    chk = pl.check((1.0, 2.0, 0.3), lp_tm, np.arange(len(pl.candidates)))
    out["lp_check_" + name] = np.where(np.isfinite(chk), chk, -1.0)
    bp = pl.settle(lp_tm, [(1.0, 2.0, 0.3, 0.0), (2.0, 1.5, -1.0, 0.5), (3.9, 2.0, 0.0, 0.0)])
    out["lp_settle_" + name] = np.nan_to_num(np.stack(bp[:8]), nan=-9.0)
    out["lp_ctg_" + name] = np.nan_to_num(ctg.at(np.array([[0.05, 0.05], [2.2, 1.7], [5.0, 1.0]])), posinf=-1.0)
from perception.trajectory import se3_exp
from perception.vo import match_stereo, refine_two_view, select_features
vo_rng = np.random.default_rng(3)
vo_l = (vo_rng.random((40, 64)) * 255).astype(np.uint8)
vo_r = np.ascontiguousarray(np.roll(vo_l, -4, axis=1))
vo_uv = np.array([[20.0, 10.0], [30.5, 20.0], [40.0, 30.0], [12.0, 25.0]])
vo_d, vo_st = match_stereo(vo_l, vo_r, vo_uv, 0.0, 12.0)
out["vo_match"] = np.r_[np.nan_to_num(vo_d, nan=-1.0), vo_st.astype(np.float64)]
vo_xy = vo_rng.uniform(0, 64, (60, 2))
out["vo_select"] = select_features(vo_xy, vo_rng.random(60), (64, 64), bucket_px=16, per_bucket=2).astype(np.float64)
vo_K = np.array([[100.0, 0, 32], [0, 100.0, 24], [0, 0, 1]])
vo_X = np.c_[vo_rng.uniform(-2, 2, (30, 2)), vo_rng.uniform(3, 8, 30)]
vo_T = se3_exp(np.array([0.01, -0.02, 0.005, 0.05, 0.0, 0.2]))
def vo_obs(X):
    u = vo_K[0, 0] * X[:, 0] / X[:, 2] + vo_K[0, 2]
    v = vo_K[1, 1] * X[:, 1] / X[:, 2] + vo_K[1, 2]
    return np.c_[u, v, u - vo_K[0, 0] * 0.1 / X[:, 2]]
vo_Xc = (vo_X - vo_T[:3, 3]) @ vo_T[:3, :3]
vo_fit = refine_two_view(vo_K, 0.1, se3_exp(np.zeros(6)), vo_X + vo_rng.normal(0, 0.01, vo_X.shape), vo_obs(vo_X),
                         vo_obs(vo_Xc) + vo_rng.normal(0, 0.2, (30, 3)), iterations=5, rounds=1)
out["vo_refine"] = np.r_[vo_fit.T_ref_cur.ravel(), vo_fit.X_ref.ravel(), vo_fit.rms_px]
np.savez(sys.argv[1], **out)
'''


def _run(tmp_path, name, disable_jit):
    script = tmp_path / "kernels.py"
    script.write_text(SCRIPT)
    out = tmp_path / f"{name}.npz"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env["NUMBA_DISABLE_JIT"] = "1" if disable_jit else "0"
    r = subprocess.run([sys.executable, str(script), str(out)], env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"NUMBA_DISABLE_JIT={int(disable_jit)} run failed:\n{r.stderr[-4000:]}"
    return dict(np.load(out))


def test_uncompiled_kernels_equal_compiled(tmp_path):
    jit = _run(tmp_path, "jit", False)
    nojit = _run(tmp_path, "nojit", True)
    assert jit.keys() == nojit.keys()
    for k in jit:
        np.testing.assert_allclose(nojit[k], jit[k], rtol=1e-5, atol=1e-6, equal_nan=True, err_msg=k)
