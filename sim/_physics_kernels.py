"""Numba kernels of the rover physics (wrapper: :mod:`sim.rover_model`, which documents the model).

Plain functions over arrays (STYLE.md): no classes, no logging, no tunables read from globals.
The module-level integers below are *layouts* (which slot of a state or parameter vector holds
what), shared with the wrapper; every tunable arrives in ``prm`` / ``iprm``.

Arrays the kernels work on (all C-contiguous, written in place where said):

``z``        float32 (rows, cols) terrain heights (NaN = outside the world), grid convention of
             :mod:`nav.terrain_map` (bilinear between cell centres, clamped at the border).
``soil_idx`` uint8 (rows, cols): row of ``soil`` for each cell; ``soil`` float64 (k, 9) in
             ``sim.world.SOIL_FIELDS`` order.
``prm``      float64 scalars (``P_*``); ``iprm`` int64 scalars (``I_*``).
``geo``      float64 (nc, 3): body-frame ``x, y`` of the wheels (layout order) then the casters,
             and 1.0 for a steerable wheel.
``tri``      int64 (m, 3) contact triples whose horizontal triangle contains the centre of mass's
             projection (lexicographic order); ``tri_inv`` float64 (m, 9): row-major inverse of
             ``[[1, x, y]]`` of each triple, mapping the three heights to ``(z0, sx, sy)``.
``belly``    float64 (mb, 2): body-frame ``x, y`` of the belly sample points.
``st``       float64 body state (``S_*``), ``ist`` int64 (``J_*``), ``ws`` float64 (``W_*``, nc)
             per-contact state; ``cand`` the same shape as ``ws`` (scratch for a candidate pose),
             ``res`` float64 (``R_*``) scratch; ``ev`` float64 (cap, ``EV_*``) event records.

Kernels return an int status (``OK`` = 0); the wrapper raises.
"""
import math

import numpy as np
from numba import njit, types

OK = 0
BAD_WHEEL_CMD = 1     # a wheel command is not finite (ist[J_BAD] = index)
BAD_STEER_CMD = 2     # a steering command is not finite
FIXED_STEER = 3       # a non-zero steering command for a wheel that cannot steer
OFF_MAP = 4           # placing: a contact point is off the map or over unknown terrain (ist[J_BAD] = index)

KIND_ROCKER_BOGIE = 0
KIND_RIGID = 1

# prm: float parameters
(P_OX, P_OY, P_CELL, P_RADIUS, P_ALPHA, P_STEER_RATE, P_MASS, P_GRAVITY, P_BELLY, P_TIP_ROLL, P_TIP_PITCH,
 P_MAX_TILT, P_CLIMB, P_CONTACT_TOL, P_STALL_TRACTION) = range(15)
N_PRM = 15
# iprm: integer parameters (fault bits are passed in, so the kernels know no enum)
I_KIND, I_NW, I_NC, I_NENV, I_BIT_TILT, I_BIT_HC, I_BIT_TIP, I_BIT_OFF, I_BIT_BLOCK = range(9)
N_IPRM = 9
# ist: integer state
J_FLAGS, J_NEV, J_BAD = range(3)
N_IST = 3
# st: body state
(S_X, S_Y, S_Z, S_YAW, S_PITCH, S_ROLL, S_SX, S_SY, S_TILT, S_CLEAR, S_VX, S_VY, S_WZ) = range(13)
S_GYRO = 13      # 3: mean body angular rate over the last call
S_ACC = 16       # 3: mean specific force over the last call
S_PPREV = 19     # 3: world position after the previous substep
S_VPREV = 22     # 3: world velocity of the previous substep
S_RPREV = 25     # 9: R_world_body after the previous substep, row-major
S_CLX = 34       # 2: where the belly clearance is smallest (world x, y)
N_ST = 36
# ws / cand rows: per contact (wheels then casters)
(W_SPEED, W_STEER, W_ANGLE, W_SLIP, W_FORCE, W_STALL, W_CONTACT, W_ZC, W_STEPF, W_STEPB, W_SOIL, W_PX,
 W_PY) = range(13)
N_W = 13
# res: settle results
R_Z, R_SX, R_SY, R_CLEAR, R_CLX, R_CLY = range(6)
N_RES = 6
# ev columns
(EV_STEP, EV_OLD, EV_NEW, EV_TILT, EV_CLEAR, EV_ROLL, EV_PITCH, EV_X, EV_Y, EV_WHEEL, EV_STEPH, EV_CLX,
 EV_CLY) = range(13)
N_EV = 13

_NAN = math.nan
_INF = math.inf
_RAD2DEG = 180.0 / math.pi
_TWO_PI = 2.0 * math.pi

_OPTS = dict(cache=True, nogil=True, error_model="numpy")
_F64 = types.float64
_I64 = types.int64
_F = types.float64[::1]
_F2 = types.float64[:, ::1]
_I = types.int64[::1]
_I2 = types.int64[:, ::1]
_Z = types.Array(types.float32, 2, "C", readonly=True)      # the world's arrays are read-only
_U2 = types.Array(types.uint8, 2, "C", readonly=True)
_SOIL = types.Array(types.float64, 2, "C", readonly=True)
_SETTLE_ARGS = (_Z, _U2, _F, _I, _F2, _I2, _F2, _F2)


# ----------------------------------------------------------------------------- terrain
@njit(types.UniTuple(_F64, 3)(_F2, _I2, _F2, _I64, _F64), inline="always", **_OPTS)
def _facet_plane(cand, tri, tri_inv, t, zref):
    """Plane ``z - zref = p0 + p1 x + p2 y`` through the three contacts of support facet ``t``."""
    za = cand[W_ZC, tri[t, 0]] - zref
    zb = cand[W_ZC, tri[t, 1]] - zref
    zc = cand[W_ZC, tri[t, 2]] - zref
    return (tri_inv[t, 0] * za + tri_inv[t, 1] * zb + tri_inv[t, 2] * zc,
            tri_inv[t, 3] * za + tri_inv[t, 4] * zb + tri_inv[t, 5] * zc,
            tri_inv[t, 6] * za + tri_inv[t, 7] * zb + tri_inv[t, 8] * zc)


@njit(_F64(_Z, _F64, _F64, _F64, _F64, _F64), **_OPTS)
def _height_at(z, ox, oy, cell, x, y):
    """Bilinear height between cell centres, clamped at the border; NaN outside the map or
    next to an unknown cell (the same rule as ``TerrainMap.height_at``)."""
    rows = z.shape[0]
    cols = z.shape[1]
    gx = (x - ox) / cell
    gy = (y - oy) / cell
    if not (gx >= 0.0 and gx < cols and gy >= 0.0 and gy < rows):
        return _NAN
    cf = min(max(gx - 0.5, 0.0), cols - 1.0)
    rf = min(max(gy - 0.5, 0.0), rows - 1.0)
    c0 = min(int(cf), max(cols - 2, 0))
    r0 = min(int(rf), max(rows - 2, 0))
    c1 = min(c0 + 1, cols - 1)
    r1 = min(r0 + 1, rows - 1)
    tc = cf - c0
    tr = rf - r0
    z00 = np.float64(z[r0, c0])
    z01 = np.float64(z[r0, c1])
    z10 = np.float64(z[r1, c0])
    z11 = np.float64(z[r1, c1])
    return (z00 * (1.0 - tr) * (1.0 - tc) + z01 * (1.0 - tr) * tc
            + z10 * tr * (1.0 - tc) + z11 * tr * tc)


@njit(_F64(_SOIL, _I64, _F64), **_OPTS)
def _soil_slip(soil, row, climb_deg):
    """Longitudinal slip of a soil at a climb angle (the formula of ``nav.config.Soil``)."""
    slip_flat = soil[row, 0]
    if climb_deg >= soil[row, 3]:
        return 1.0
    if climb_deg >= 0.0:
        return min(1.0, slip_flat + soil[row, 1] * (math.exp(climb_deg / soil[row, 2]) - 1.0))
    return max(-soil[row, 5], slip_flat - soil[row, 4] * (-climb_deg))


# ----------------------------------------------------------------------------- settling
@njit(_I64(*_SETTLE_ARGS, _F2, _F64, _F64, _F64, _F2, _F), **_OPTS)
def _settle_pose(z, soil_idx, prm, iprm, geo, tri, tri_inv, belly, ws, x, y, yaw, cand, res):
    """Settle the rover at horizontal pose ``(x, y, yaw)`` with the steering angles of ``ws``.

    Writes per-contact rows ``W_CONTACT, W_ZC, W_STEPF, W_STEPB, W_SOIL, W_PX, W_PY`` of
    ``cand`` and ``res``. Returns 0, or ``1 + i`` when contact ``i`` (or a sample of its wheel
    envelope) lies off the map or over unknown terrain.
    """
    ox = prm[P_OX]
    oy = prm[P_OY]
    cell = prm[P_CELL]
    r = prm[P_RADIUS]
    nc = iprm[I_NC]
    k_env = iprm[I_NENV]
    rows = z.shape[0]
    cols = z.shape[1]
    c = math.cos(yaw)
    s = math.sin(yaw)
    for i in range(nc):
        bx = geo[i, 0]
        by = geo[i, 1]
        px = x + c * bx - s * by
        py = y + s * bx + c * by
        h0 = _height_at(z, ox, oy, cell, px, py)
        if h0 != h0:
            return 1 + i
        cand[W_PX, i] = px
        cand[W_PY, i] = py
        cand[W_SOIL, i] = soil_idx[min(int((py - oy) / cell), rows - 1), min(int((px - ox) / cell), cols - 1)]
        a = yaw + ws[W_STEER, i]          # casters: along the heading, with the wheels' radius
        ux = math.cos(a)
        uy = math.sin(a)
        env = h0
        fwd = -_INF
        bwd = -_INF
        for k in range(1, k_env + 1):
            d = r * (k / k_env)
            drop = r - math.sqrt(max(r * r - d * d, 0.0))
            hf = _height_at(z, ox, oy, cell, px + d * ux, py + d * uy)
            hb = _height_at(z, ox, oy, cell, px - d * ux, py - d * uy)
            if hf != hf or hb != hb:
                return 1 + i
            env = max(env, max(hf, hb) - drop)
            fwd = max(fwd, hf)
            bwd = max(bwd, hb)
        cand[W_ZC, i] = env
        cand[W_STEPF, i] = fwd - h0
        cand[W_STEPB, i] = bwd - h0

    if iprm[I_KIND] == KIND_ROCKER_BOGIE:
        # per side: bogie pivot = mean of middle and rear contacts; rocker pivot (body x = 0) on the
        # line from the front contact to the bogie pivot; pitch from the mean rocker slope
        slope_sum = 0.0
        zp_l = 0.0
        zp_r = 0.0
        for side in range(2):
            f = 3 * side
            xb = 0.5 * (geo[f + 1, 0] + geo[f + 2, 0])
            zb = 0.5 * (cand[W_ZC, f + 1] + cand[W_ZC, f + 2])
            sl = (zb - cand[W_ZC, f]) / (xb - geo[f, 0])
            zp = cand[W_ZC, f] + (0.0 - geo[f, 0]) * sl
            slope_sum += sl
            if side == 0:
                zp_l = zp
            else:
                zp_r = zp
        sx = 0.5 * slope_sum
        y_l = geo[0, 1]
        y_r = geo[3, 1]
        sy = (zp_l - zp_r) / (y_l - y_r)
        z0 = zp_r + (0.0 - y_r) * sy
        for i in range(nc):
            cand[W_CONTACT, i] = 1.0
    else:
        # rigid chassis: the facet of the upper convex hull of the contacts above the centre of
        # mass's projection (every triple in `tri` contains it); ties -> the most level facet
        zref = cand[W_ZC, 0]
        best = -1
        best_lvl = _INF
        b0 = 0.0
        b1 = 0.0
        b2 = 0.0
        for t in range(tri.shape[0]):
            p0, p1, p2 = _facet_plane(cand, tri, tri_inv, t, zref)
            ok = True
            for j in range(nc):
                if cand[W_ZC, j] - zref > p0 + p1 * geo[j, 0] + p2 * geo[j, 1] + 1e-9:
                    ok = False
                    break
            if ok:
                lvl = p1 * p1 + p2 * p2
                if lvl < best_lvl * (1.0 - 1e-9) - 1e-15:
                    best = t
                    best_lvl = lvl
                    b0 = p0
                    b1 = p1
                    b2 = p2
        if best < 0:      # rounding left no supporting facet: take the highest one above the CG
            best_h = -_INF
            for t in range(tri.shape[0]):
                p0, p1, p2 = _facet_plane(cand, tri, tri_inv, t, zref)
                if p0 > best_h:
                    best_h = p0
                    b0 = p0
                    b1 = p1
                    b2 = p2
        sx = b1
        sy = b2
        z0 = b0 + zref
        tol = prm[P_CONTACT_TOL]
        for j in range(nc):
            plane = z0 + sx * geo[j, 0] + sy * geo[j, 1]
            cand[W_CONTACT, j] = 1.0 if cand[W_ZC, j] >= plane - tol else 0.0

    # belly clearance, measured along the body normal
    nz = 1.0 / math.sqrt(1.0 + sx * sx + sy * sy)
    clear = _INF
    clx = x
    cly = y
    for j in range(belly.shape[0]):
        bx = belly[j, 0]
        by = belly[j, 1]
        px = x + c * bx - s * by
        py = y + s * bx + c * by
        h = _height_at(z, ox, oy, cell, px, py)
        if h == h:
            cl = (z0 + sx * bx + sy * by - h) * nz
            if cl < clear:
                clear = cl
                clx = px
                cly = py
    if clear == _INF:
        clear = 0.0
    res[R_Z] = z0
    res[R_SX] = sx
    res[R_SY] = sy
    res[R_CLEAR] = clear + prm[P_BELLY]
    res[R_CLX] = clx
    res[R_CLY] = cly
    return 0


@njit(types.void(_F, _F2, _F2, _F, _I64, _F64, _F64, _F64), **_OPTS)
def _commit_pose(st, ws, cand, res, nc, x, y, yaw):
    """Make a settled candidate pose the state (attitude from the contact-plane slopes)."""
    for i in range(nc):
        ws[W_CONTACT, i] = cand[W_CONTACT, i]
        ws[W_ZC, i] = cand[W_ZC, i]
        ws[W_STEPF, i] = cand[W_STEPF, i]
        ws[W_STEPB, i] = cand[W_STEPB, i]
        ws[W_SOIL, i] = cand[W_SOIL, i]
        ws[W_PX, i] = cand[W_PX, i]
        ws[W_PY, i] = cand[W_PY, i]
    sx = res[R_SX]
    sy = res[R_SY]
    pitch = -math.atan(sx)
    st[S_X] = x
    st[S_Y] = y
    st[S_Z] = res[R_Z]
    st[S_YAW] = yaw
    st[S_PITCH] = pitch
    st[S_ROLL] = math.atan(sy * math.cos(pitch))
    st[S_SX] = sx
    st[S_SY] = sy
    st[S_TILT] = math.atan(math.sqrt(sx * sx + sy * sy))
    st[S_CLEAR] = res[R_CLEAR]
    st[S_CLX] = res[R_CLX]
    st[S_CLX + 1] = res[R_CLY]


@njit(types.void(_F, _F2), **_OPTS)
def _rotation(st, out):
    """``R_world_body = Rz(yaw) Ry(pitch) Rx(roll)`` of the state into ``out`` (3, 3)."""
    cy = math.cos(st[S_YAW])
    sy = math.sin(st[S_YAW])
    cp = math.cos(st[S_PITCH])
    sp = math.sin(st[S_PITCH])
    cr = math.cos(st[S_ROLL])
    sr = math.sin(st[S_ROLL])
    out[0, 0] = cy * cp
    out[0, 1] = cy * sp * sr - sy * cr
    out[0, 2] = cy * sp * cr + sy * sr
    out[1, 0] = sy * cp
    out[1, 1] = sy * sp * sr + cy * cr
    out[1, 2] = sy * sp * cr - cy * sr
    out[2, 0] = -sp
    out[2, 1] = cp * sr
    out[2, 2] = cp * cr


@njit(_I64(_F, _F, _I, _I64, _I64, _I64), **_OPTS)
def _hazard_flags(st, prm, iprm, flags, off_map, blocked):
    """Fault bits after a substep: TILT and HIGH_CENTERED from the pose, TIPPED_OVER latched,
    OFF_MAP / BLOCKED from the substep's outcome."""
    out = flags
    if st[S_TILT] > prm[P_MAX_TILT]:
        out |= iprm[I_BIT_TILT]
    else:
        out &= ~iprm[I_BIT_TILT]
    if st[S_CLEAR] < 0.0:
        out |= iprm[I_BIT_HC]
    else:
        out &= ~iprm[I_BIT_HC]
    if abs(st[S_ROLL]) > prm[P_TIP_ROLL] or abs(st[S_PITCH]) > prm[P_TIP_PITCH]:
        out |= iprm[I_BIT_TIP]
    if off_map:
        out |= iprm[I_BIT_OFF]
    else:
        out &= ~iprm[I_BIT_OFF]
    if blocked:
        out |= iprm[I_BIT_BLOCK]
    else:
        out &= ~iprm[I_BIT_BLOCK]
    return out


@njit(types.void(_F2, _I, _F, _I64, _I64, _I64, _I64, _F64), **_OPTS)
def _record_event(ev, ist, st, step, old, new, wheel, step_h):
    """Append a flag change to the event buffer (counted even when the buffer is full)."""
    k = ist[J_NEV]
    ist[J_NEV] = k + 1
    if k >= ev.shape[0]:
        return
    ev[k, EV_STEP] = step
    ev[k, EV_OLD] = old
    ev[k, EV_NEW] = new
    ev[k, EV_TILT] = st[S_TILT]
    ev[k, EV_CLEAR] = st[S_CLEAR]
    ev[k, EV_ROLL] = st[S_ROLL]
    ev[k, EV_PITCH] = st[S_PITCH]
    ev[k, EV_X] = st[S_X]
    ev[k, EV_Y] = st[S_Y]
    ev[k, EV_WHEEL] = wheel
    ev[k, EV_STEPH] = step_h
    ev[k, EV_CLX] = st[S_CLX]
    ev[k, EV_CLY] = st[S_CLX + 1]


# ----------------------------------------------------------------------------- placing
@njit(_I64(*_SETTLE_ARGS, _F, _I, _F2, _F2, _F, _F2, _F64, _F64, _F64), **_OPTS)
def _place_rover(z, soil_idx, prm, iprm, geo, tri, tri_inv, belly, st, ist, ws, cand, res, ev, x, y, yaw):
    """Settle the rover at a pose at rest (constructor, teleport): velocities and wheel speeds
    zeroed, the TIPPED_OVER latch cleared and re-evaluated, flag changes recorded as step -1."""
    status = _settle_pose(z, soil_idx, prm, iprm, geo, tri, tri_inv, belly, ws, x, y, yaw, cand, res)
    ist[J_NEV] = 0
    if status != 0:
        ist[J_BAD] = status - 1
        return OFF_MAP
    yaw = math.atan2(math.sin(yaw), math.cos(yaw))
    nc = iprm[I_NC]
    _commit_pose(st, ws, cand, res, nc, x, y, yaw)
    for i in range(nc):
        ws[W_SPEED, i] = 0.0
        ws[W_SLIP, i] = 0.0
        ws[W_FORCE, i] = 0.0
        ws[W_STALL, i] = 0.0
    st[S_VX] = 0.0
    st[S_VY] = 0.0
    st[S_WZ] = 0.0
    R = np.empty((3, 3))
    _rotation(st, R)
    for a in range(3):
        st[S_GYRO + a] = 0.0
        st[S_ACC + a] = R[2, a] * prm[P_GRAVITY]
        st[S_VPREV + a] = 0.0
        for b in range(3):
            st[S_RPREV + 3 * a + b] = R[a, b]
    st[S_PPREV] = st[S_X]
    st[S_PPREV + 1] = st[S_Y]
    st[S_PPREV + 2] = st[S_Z]
    old = ist[J_FLAGS]
    new = _hazard_flags(st, prm, iprm, old & ~iprm[I_BIT_TIP], 0, 0)
    if new != old:
        _record_event(ev, ist, st, -1, old, new, -1, 0.0)
    ist[J_FLAGS] = new
    return OK


# ----------------------------------------------------------------------------- stepping
@njit(_I64(_Z, _U2, _SOIL, _F, _I, _F2, _I2, _F2, _F2, _F, _I, _F2, _F2, _F, _F2, _F, _F, _I64, _F64, _F64,
           _F64, _F64), **_OPTS)
def _step_rover(z, soil_idx, soil, prm, iprm, geo, tri, tri_inv, belly, st, ist, ws, cand, res, ev,
                wheel_cmd, steer_cmd, n_steps, dt, slip_override, push_x, push_y):
    """Run ``n_steps`` substeps of ``dt`` with constant wheel and steering commands, in place.

    Per substep: motors slew (exact mean speed over the substep), wheels roll with the soil's
    slip at their climb angle, the least-squares body twist of the touching wheels plus the
    side-slope drift moves the horizontal pose along an exact SE(2) arc (plus ``push``), the
    rover is re-settled there, and the move is refused (wheels stall) if a contact leaves the
    map or a wheel runs into a step taller than ``P_CLIMB``. Then hazard flags, events, the
    traction forces, and the IMU truth (means over the call) are updated.
    """
    nw = iprm[I_NW]
    nc = iprm[I_NC]
    for i in range(nw):
        if not math.isfinite(wheel_cmd[i]):
            ist[J_BAD] = i
            return BAD_WHEEL_CMD
        if not math.isfinite(steer_cmd[i]):
            ist[J_BAD] = i
            return BAD_STEER_CMD
        if geo[i, 2] == 0.0 and steer_cmd[i] != 0.0:
            ist[J_BAD] = i
            return FIXED_STEER
    r = prm[P_RADIUS]
    alpha = prm[P_ALPHA]
    steer_rate = prm[P_STEER_RATE]
    mass = prm[P_MASS]
    g = prm[P_GRAVITY]
    climb_limit = prm[P_CLIMB]
    bit_tip = iprm[I_BIT_TIP]
    bit_hc = iprm[I_BIT_HC]
    use_override = math.isfinite(slip_override)
    pushed = push_x != 0.0 or push_y != 0.0

    w_mean = np.empty(nw)
    w_acc = np.empty(nw)
    cd = np.empty(nw)
    sd = np.empty(nw)
    v_roll = np.empty(nw)
    stall = np.zeros(nw)
    R = np.empty((3, 3))
    gyro = np.zeros(3)
    acc = np.zeros(3)
    for i in range(nc):
        ws[W_FORCE, i] = 0.0
    ist[J_NEV] = 0

    for k in range(n_steps):
        flags = ist[J_FLAGS]
        tipped = (flags & bit_tip) != 0
        stuck = (flags & bit_hc) != 0
        # ---- 1. motors and steering servos
        steer_moved = False
        for i in range(nw):
            w0 = ws[W_SPEED, i]
            cmd = wheel_cmd[i]
            dw = alpha * dt
            if cmd > w0 + dw:
                w1 = w0 + dw
                wm = w0 + 0.5 * dw
            elif cmd < w0 - dw:
                w1 = w0 - dw
                wm = w0 - 0.5 * dw
            else:                       # reaches the command within the substep
                tau = abs(cmd - w0) / alpha
                w1 = cmd
                wm = cmd + 0.5 * (w0 - cmd) * (tau / dt)
            ws[W_SPEED, i] = w1
            ws[W_ANGLE, i] += wm * dt
            w_mean[i] = wm
            w_acc[i] = (w1 - w0) / dt
            if geo[i, 2] != 0.0:
                d0 = ws[W_STEER, i]
                dmax = steer_rate * dt
                d1 = min(max(steer_cmd[i], d0 - dmax), d0 + dmax)
                if d1 != d0:
                    steer_moved = True
                ws[W_STEER, i] = d1
            cd[i] = math.cos(ws[W_STEER, i])
            sd[i] = math.sin(ws[W_STEER, i])

        sx = st[S_SX]
        sy = st[S_SY]
        # ---- 2. rolling velocities with soil slip; least-squares body twist of the touching wheels
        n_touch = 0.0
        sum_x = 0.0
        sum_y = 0.0
        sum_r = 0.0
        bx_ = 0.0
        by_ = 0.0
        bw_ = 0.0
        speed_sum = 0.0
        gain_sum = 0.0
        for i in range(nw):
            wm = w_mean[i]
            if ws[W_CONTACT, i] == 0.0 or wm == 0.0:
                v_roll[i] = 0.0
            else:
                if use_override:
                    s_i = slip_override
                else:
                    sgn = 1.0 if wm > 0.0 else -1.0
                    climb = _RAD2DEG * math.atan(sgn * (sx * cd[i] + sy * sd[i]))
                    s_i = _soil_slip(soil, int(ws[W_SOIL, i]), climb)
                v_roll[i] = wm * r * (1.0 - s_i)
            if ws[W_CONTACT, i] != 0.0:
                xi = geo[i, 0]
                yi = geo[i, 1]
                vxi = v_roll[i] * cd[i]
                vyi = v_roll[i] * sd[i]
                n_touch += 1.0
                sum_x += xi
                sum_y += yi
                sum_r += xi * xi + yi * yi
                bx_ += vxi
                by_ += vyi
                bw_ += xi * vyi - yi * vxi
                speed_sum += abs(v_roll[i])
                gain_sum += soil[int(ws[W_SOIL, i]), 6]
        vx = 0.0
        vy = 0.0
        wz = 0.0
        drift = 0.0
        if n_touch >= 2.0 and not tipped and not stuck:
            den = n_touch * sum_r - sum_x * sum_x - sum_y * sum_y
            if den > 1e-12 * n_touch * sum_r:
                wz = (n_touch * bw_ + sum_y * bx_ - sum_x * by_) / den
            vx = (bx_ + sum_y * wz) / n_touch
            vy = (by_ - sum_x * wz) / n_touch
            if speed_sum > 0.0:     # downhill drift across a side slope, only while moving
                drift = -(gain_sum / n_touch) * (speed_sum / n_touch) * math.sin(st[S_ROLL])

        # ---- 3. exact SE(2) arc of the horizontal twist (speeds along the slope projected)
        yaw = st[S_YAW]
        cpitch = math.cos(st[S_PITCH])
        spitch = math.sin(st[S_PITCH])
        croll = math.cos(st[S_ROLL])
        sroll = math.sin(st[S_ROLL])
        u = vx * cpitch + vy * spitch * sroll
        v = vy * croll + drift
        th = wz * dt
        if abs(th) > 1e-9:
            sn = math.sin(th)
            hs = math.sin(0.5 * th)
            cs1 = 2.0 * hs * hs
            dxl = (u * sn - v * cs1) / wz
            dyl = (u * cs1 + v * sn) / wz
        else:
            a_ = dt * (1.0 - th * th / 6.0)
            b_ = 0.5 * dt * th
            dxl = u * a_ - v * b_
            dyl = u * b_ + v * a_
        cyaw = math.cos(yaw)
        syaw = math.sin(yaw)
        dx = cyaw * dxl - syaw * dyl
        dy = syaw * dxl + cyaw * dyl
        if pushed:
            dx += push_x * dt
            dy += push_y * dt
        if tipped:
            dx = 0.0
            dy = 0.0
            th = 0.0

        # ---- 4. settle at the candidate pose; refuse moves off the map or into a tall step
        off_map = 0
        blocked = 0
        bad_wheel = -1
        step_h = 0.0
        moved = dx != 0.0 or dy != 0.0 or th != 0.0
        if (moved or steer_moved) and not tipped:
            xn = st[S_X] + dx
            yn = st[S_Y] + dy
            yawn = yaw + th
            if yawn > math.pi:
                yawn -= _TWO_PI
            elif yawn <= -math.pi:
                yawn += _TWO_PI
            status = _settle_pose(z, soil_idx, prm, iprm, geo, tri, tri_inv, belly, ws, xn, yn, yawn, cand, res)
            if status != 0:
                off_map = 1
                bad_wheel = status - 1
            elif moved:
                for i in range(nw):
                    a = yawn + ws[W_STEER, i]
                    d = (cand[W_PX, i] - ws[W_PX, i]) * math.cos(a) + (cand[W_PY, i] - ws[W_PY, i]) * math.sin(a)
                    h = cand[W_STEPF, i] if d > 0.0 else cand[W_STEPB, i]
                    if abs(d) > 1e-12 and h > climb_limit:
                        blocked = 1
                        if h > step_h:
                            step_h = h
                            bad_wheel = i
            if off_map or blocked:
                moved = False
            else:
                _commit_pose(st, ws, cand, res, nc, xn, yn, yawn)
        if not moved:
            vx = 0.0
            vy = 0.0
            wz = 0.0
        else:
            if croll != 0.0:
                vy += drift / croll
            if pushed and not tipped:
                vx += cyaw * push_x + syaw * push_y
                vy += -syaw * push_x + cyaw * push_y
        st[S_VX] = vx
        st[S_VY] = vy
        st[S_WZ] = wz

        # ---- 5. per-wheel slip (1 - v_ground / v_wheel), stall flags and traction forces
        refused = off_map != 0 or blocked != 0
        n_load = 0.0
        for i in range(nw):
            if ws[W_CONTACT, i] != 0.0:
                n_load += 1.0
        n_load = max(n_load, 1.0)
        cos_tilt = math.cos(st[S_TILT])
        sx = st[S_SX]
        sy = st[S_SY]
        for i in range(nw):
            wm = w_mean[i]
            v_wheel = wm * r
            if abs(v_wheel) > 1e-12:
                v_ground = (vx - wz * geo[i, 1]) * cd[i] + (vy + wz * geo[i, 0]) * sd[i]
                ws[W_SLIP, i] = 1.0 - v_ground / v_wheel
            else:
                ws[W_SLIP, i] = 0.0
            sgn = 0.0 if wm == 0.0 else (1.0 if wm > 0.0 else -1.0)
            touching = ws[W_CONTACT, i] != 0.0 and not tipped
            stall[i] = 1.0 if (touching and sgn != 0.0 and (refused or stuck or ws[W_SLIP, i] >= 1.0 - 1e-9)) \
                else 0.0
            if touching:
                rr = soil[int(ws[W_SOIL, i]), 7]
                if stuck:
                    f = g * rr * cos_tilt * sgn
                elif refused and sgn != 0.0:
                    f = g * prm[P_STALL_TRACTION] * cos_tilt * sgn
                else:
                    tn = sx * cd[i] + sy * sd[i]
                    f = g * (rr * cos_tilt * sgn + tn / math.sqrt(1.0 + tn * tn)) + r * w_acc[i]
                ws[W_FORCE, i] += mass * f / n_load

        # ---- 6. hazards and events
        new = _hazard_flags(st, prm, iprm, flags, off_map, blocked)
        if new != flags:
            _record_event(ev, ist, st, k, flags, new, bad_wheel, step_h)
        ist[J_FLAGS] = new

        # ---- 7. IMU truth: body rate from the rotation change, specific force R^T (a + g z)
        _rotation(st, R)
        m00 = 0.0
        m11 = 0.0
        m22 = 0.0
        e0 = 0.0
        e1 = 0.0
        e2 = 0.0
        # dR = R_prev^T R: trace and the antisymmetric part
        for a in range(3):
            m00 += st[S_RPREV + 3 * a] * R[a, 0]
            m11 += st[S_RPREV + 3 * a + 1] * R[a, 1]
            m22 += st[S_RPREV + 3 * a + 2] * R[a, 2]
            e0 += st[S_RPREV + 3 * a + 2] * R[a, 1] - st[S_RPREV + 3 * a + 1] * R[a, 2]
            e1 += st[S_RPREV + 3 * a] * R[a, 2] - st[S_RPREV + 3 * a + 2] * R[a, 0]
            e2 += st[S_RPREV + 3 * a + 1] * R[a, 0] - st[S_RPREV + 3 * a] * R[a, 1]
        # e = (dR21 - dR12, dR02 - dR20, dR10 - dR01) = 2 sin(angle) * axis
        sin2 = math.sqrt(e0 * e0 + e1 * e1 + e2 * e2)
        ang = math.atan2(0.5 * sin2, 0.5 * (m00 + m11 + m22 - 1.0))
        fac = 0.5 if sin2 < 1e-12 else ang / sin2
        gyro[0] += fac * e0 / dt
        gyro[1] += fac * e1 / dt
        gyro[2] += fac * e2 / dt
        pn0 = st[S_X]
        pn1 = st[S_Y]
        pn2 = st[S_Z]
        vn0 = (pn0 - st[S_PPREV]) / dt
        vn1 = (pn1 - st[S_PPREV + 1]) / dt
        vn2 = (pn2 - st[S_PPREV + 2]) / dt
        a0 = (vn0 - st[S_VPREV]) / dt
        a1 = (vn1 - st[S_VPREV + 1]) / dt
        a2 = (vn2 - st[S_VPREV + 2]) / dt + g
        # the second difference is centred on the previous substep: rotate with its attitude
        for b in range(3):
            acc[b] += st[S_RPREV + b] * a0 + st[S_RPREV + 3 + b] * a1 + st[S_RPREV + 6 + b] * a2
        st[S_PPREV] = pn0
        st[S_PPREV + 1] = pn1
        st[S_PPREV + 2] = pn2
        st[S_VPREV] = vn0
        st[S_VPREV + 1] = vn1
        st[S_VPREV + 2] = vn2
        for a in range(3):
            for b in range(3):
                st[S_RPREV + 3 * a + b] = R[a, b]

    inv_n = 1.0 / n_steps
    for a in range(3):
        st[S_GYRO + a] = gyro[a] * inv_n
        st[S_ACC + a] = acc[a] * inv_n
    for i in range(nc):
        ws[W_FORCE, i] *= inv_n
    for i in range(nw):
        ws[W_STALL, i] = stall[i]
    return OK
