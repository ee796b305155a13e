"""Trajectories: rigid-motion helpers, TUM files, Umeyama alignment, error metrics and a plot.

Poses are 4x4 float64 homogeneous transforms ``T_first_i`` (frame ``i`` in the first frame's axes) kept
as ``(N, 4, 4)`` arrays with their times ``t_s`` ``(N,)``. Tangent vectors are ``(rotation vector rad,
translation m)`` and ``exp``/``log`` are those of SE(3) (:func:`se3_exp`, :func:`se3_log`).

Metrics
-------
* **ATE** (absolute trajectory error, Sturm et al. 2012): RMSE of the position differences after the
  estimate is aligned to the ground truth by the least-squares rigid (SE(3)) or similarity (Sim(3))
  transform of Umeyama (1991), "Least-squares estimation of transformation parameters between two
  point patterns", IEEE PAMI 13(4).
* **Relative errors** as in the KITTI odometry devkit (Geiger et al. 2012): for start frames every
  ``step`` frames and each segment length ``L``, the first frame at least ``L`` metres further along
  the true path ends the segment; the error pose ``inv(inv(E_a) E_b) (inv(G_a) G_b)`` gives a
  translational error ``|t| / L`` (reported in %) and a rotational error ``angle / L`` (deg/m).
  KITTI uses ``L = 100, 200, …, 800`` m; on shorter paths :func:`segment_lengths` uses fractions of
  the length.
* **End-point error**: distance between the final estimated and true positions, both expressed in the
  first frame (no alignment: what a rover would see), also as a fraction of the distance travelled.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "invert", "se3_exp", "se3_log", "so3_exp", "so3_log", "rotation_angle", "quat_from_rot", "rot_from_quat",
    "read_tum", "write_tum", "umeyama", "apply_sim3", "ate", "ATEResult", "path_distances", "segment_lengths",
    "relative_errors", "RelativeErrors", "evaluate", "plot_trajectories",
]


# --------------------------------------------------------------------------- rigid-motion helpers

def invert(T) -> np.ndarray:
    """Inverse of a 4x4 rigid transform (or a stack ``(..., 4, 4)``)."""
    T = np.asarray(T, dtype=np.float64)
    R = T[..., :3, :3]
    t = T[..., :3, 3]
    out = np.zeros_like(T)
    Rt = np.swapaxes(R, -1, -2)
    out[..., :3, :3] = Rt
    out[..., :3, 3] = -np.einsum("...ij,...j->...i", Rt, t)
    out[..., 3, 3] = 1.0
    return out


def _skew(w) -> np.ndarray:
    return np.array([[0.0, -w[2], w[1]], [w[2], 0.0, -w[0]], [-w[1], w[0], 0.0]])


def _coeffs(th2: float):
    """``sin θ / θ``, ``(1 - cos θ) / θ²``, ``(θ - sin θ) / θ³`` without cancellation (series near 0)."""
    th = math.sqrt(th2)
    if th < 1e-4:
        a, b = 1.0 - th2 / 6.0, 0.5 - th2 / 24.0
    else:
        a, b = math.sin(th) / th, 2.0 * math.sin(0.5 * th) ** 2 / th2
    c = 1.0 / 6.0 - th2 / 120.0 + th2 * th2 / 5040.0 if th < 1e-2 else (th - math.sin(th)) / (th2 * th)
    return a, b, c


def so3_exp(w) -> np.ndarray:
    """Rotation matrix of a rotation vector (Rodrigues)."""
    w = np.asarray(w, dtype=np.float64).reshape(3)
    a, b, _ = _coeffs(float(w @ w))
    K = _skew(w)
    return np.eye(3) + a * K + b * (K @ K)


def so3_log(R) -> np.ndarray:
    """Rotation vector of a rotation matrix (angle in [0, π])."""
    R = np.asarray(R, dtype=np.float64)
    v = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]])     # 2 sin θ · axis
    c = 0.5 * (np.trace(R) - 1.0)
    s = 0.5 * float(np.linalg.norm(v))
    th = math.atan2(s, c)                 # well conditioned everywhere, unlike acos near 0 and π
    if th < 1e-6:
        return 0.5 * v * (1.0 + th * th / 6.0)
    if th > math.pi - 1e-3:
        # near π the antisymmetric part vanishes: the axis comes from the symmetric part,
        # (R + R^T) / 2 = cos θ I + (1 - cos θ) a a^T
        A = (0.5 * (R + R.T) - c * np.eye(3)) / (1.0 - c)
        k = int(np.argmax(np.diag(A)))
        a = A[:, k] / math.sqrt(max(A[k, k], 1e-300))
        a /= np.linalg.norm(a)
        if a @ v < 0:
            a = -a
        return th * a
    return th / (2.0 * s) * v


def rotation_angle(R) -> float:
    """Angle (rad, in [0, π]) of a rotation matrix."""
    R = np.asarray(R, dtype=np.float64)[:3, :3]
    v = (R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1])
    return math.atan2(0.5 * math.sqrt(v[0] ** 2 + v[1] ** 2 + v[2] ** 2), 0.5 * (float(np.trace(R)) - 1.0))


def se3_exp(xi) -> np.ndarray:
    """4x4 transform ``exp(xi)`` of a tangent vector ``xi = (rotation vector, translation)``."""
    xi = np.asarray(xi, dtype=np.float64).reshape(6)
    w, v = xi[:3], xi[3:]
    a, b, c = _coeffs(float(w @ w))
    K = _skew(w)
    K2 = K @ K
    T = np.eye(4)
    T[:3, :3] = np.eye(3) + a * K + b * K2
    T[:3, 3] = (np.eye(3) + b * K + c * K2) @ v
    return T


def se3_log(T) -> np.ndarray:
    """Tangent vector ``(rotation vector, translation)`` of a 4x4 rigid transform (inverse of :func:`se3_exp`)."""
    T = np.asarray(T, dtype=np.float64)
    w = so3_log(T[:3, :3])
    a, b, c = _coeffs(float(w @ w))
    K = _skew(w)
    V = np.eye(3) + b * K + c * (K @ K)
    return np.concatenate([w, np.linalg.solve(V, T[:3, 3])])


def quat_from_rot(R) -> np.ndarray:
    """Unit quaternion ``(qx, qy, qz, qw)`` of a rotation matrix, ``qw >= 0`` (Shepperd's method)."""
    R = np.asarray(R, dtype=np.float64)
    tr = R[0, 0] + R[1, 1] + R[2, 2]
    cands = (tr, R[0, 0], R[1, 1], R[2, 2])
    k = int(np.argmax(cands))
    if k == 0:
        s = 2.0 * math.sqrt(max(tr + 1.0, 0.0))
        q = np.array([(R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s, 0.25 * s])
    elif k == 1:
        s = 2.0 * math.sqrt(max(1.0 + R[0, 0] - R[1, 1] - R[2, 2], 0.0))
        q = np.array([0.25 * s, (R[0, 1] + R[1, 0]) / s, (R[0, 2] + R[2, 0]) / s, (R[2, 1] - R[1, 2]) / s])
    elif k == 2:
        s = 2.0 * math.sqrt(max(1.0 - R[0, 0] + R[1, 1] - R[2, 2], 0.0))
        q = np.array([(R[0, 1] + R[1, 0]) / s, 0.25 * s, (R[1, 2] + R[2, 1]) / s, (R[0, 2] - R[2, 0]) / s])
    else:
        s = 2.0 * math.sqrt(max(1.0 - R[0, 0] - R[1, 1] + R[2, 2], 0.0))
        q = np.array([(R[0, 2] + R[2, 0]) / s, (R[1, 2] + R[2, 1]) / s, 0.25 * s, (R[1, 0] - R[0, 1]) / s])
    q /= np.linalg.norm(q)
    return -q if q[3] < 0 else q


def rot_from_quat(q) -> np.ndarray:
    """Rotation matrix of a quaternion ``(qx, qy, qz, qw)`` (normalised first)."""
    x, y, z, w = np.asarray(q, dtype=np.float64).reshape(4) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


# --------------------------------------------------------------------------- TUM files

def write_tum(path, t_s, T) -> Path:
    """Write poses in the TUM RGB-D format: one line ``t tx ty tz qx qy qz qw`` per pose.

    ``t_s`` ``(N,)`` seconds; ``T`` ``(N, 4, 4)`` poses. Returns the path.
    """
    t_s = np.asarray(t_s, dtype=np.float64).reshape(-1)
    T = np.asarray(T, dtype=np.float64)
    if T.ndim != 3 or T.shape[1:] != (4, 4) or len(T) != len(t_s):
        raise ValueError(f"T must be (N, 4, 4) with N = len(t_s) = {len(t_s)}, got shape {T.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        f.write("# timestamp tx ty tz qx qy qz qw\n")
        for t, P in zip(t_s, T):
            q = quat_from_rot(P[:3, :3])
            f.write(f"{t:.9f} {P[0, 3]:.9f} {P[1, 3]:.9f} {P[2, 3]:.9f} "
                    f"{q[0]:.9f} {q[1]:.9f} {q[2]:.9f} {q[3]:.9f}\n")
    return path


def read_tum(path) -> tuple[np.ndarray, np.ndarray]:
    """Read a TUM trajectory file: ``(t_s (N,), T (N, 4, 4))``. Lines starting with ``#`` and blank lines
    are skipped; values may be separated by spaces, tabs or commas. Raises ``ValueError`` naming the file
    and line for a malformed line."""
    path = Path(path)
    ts, Ts = [], []
    with open(path) as f:
        for k, line in enumerate(f, start=1):
            s = line.strip()
            if not s or s.startswith("#"):
                continue
            parts = s.replace(",", " ").split()
            try:
                vals = [float(p) for p in parts]
            except ValueError:
                raise ValueError(f"{path}:{k}: not a number in {s[:60]!r}") from None
            if len(vals) != 8:
                raise ValueError(f"{path}:{k}: expected 8 values (t tx ty tz qx qy qz qw), got {len(vals)}")
            if not all(math.isfinite(v) for v in vals):
                raise ValueError(f"{path}:{k}: non-finite value")
            qn = math.sqrt(sum(v * v for v in vals[4:]))
            if not (abs(qn - 1.0) < 1e-3):
                raise ValueError(f"{path}:{k}: quaternion norm {qn:.6g} is not 1")
            P = np.eye(4)
            P[:3, :3] = rot_from_quat(vals[4:])
            P[:3, 3] = vals[1:4]
            ts.append(vals[0])
            Ts.append(P)
    return np.asarray(ts, dtype=np.float64), (np.stack(Ts) if Ts else np.zeros((0, 4, 4)))


# --------------------------------------------------------------------------- alignment

def umeyama(src, dst, *, with_scale: bool = False) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares ``(s, R, t)`` with ``dst ≈ s R src + t`` (Umeyama 1991).

    ``src``, ``dst``: ``(N, d)`` corresponding points (``N >= 2``; ``N >= d`` non-degenerate points for
    a unique rotation). ``with_scale=False`` fixes ``s = 1`` (SE(d)); otherwise a similarity (Sim(d)).
    """
    X = np.asarray(src, dtype=np.float64)
    Y = np.asarray(dst, dtype=np.float64)
    if X.ndim != 2 or X.shape != Y.shape:
        raise ValueError(f"src and dst must be (N, d) of the same shape, got {X.shape} and {Y.shape}")
    n, d = X.shape
    if n < 2:
        raise ValueError(f"umeyama needs at least 2 point pairs, got {n}")
    mx, my = X.mean(axis=0), Y.mean(axis=0)
    Xc, Yc = X - mx, Y - my
    var_x = float((Xc * Xc).sum()) / n
    C = Yc.T @ Xc / n
    U, D, Vt = np.linalg.svd(C)
    S = np.eye(d)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        S[-1, -1] = -1.0
    R = U @ S @ Vt
    if with_scale:
        if var_x <= 0:
            raise ValueError("src points are all equal: the scale is undefined")
        s = float(np.trace(np.diag(D) @ S)) / var_x
    else:
        s = 1.0
    t = my - s * R @ mx
    return s, R, t


def apply_sim3(s: float, R, t, T) -> np.ndarray:
    """Poses ``T`` ``(N, 4, 4)`` moved by the similarity ``(s, R, t)``: positions ``s R p + t``,
    orientations ``R R_i``."""
    T = np.asarray(T, dtype=np.float64)
    out = T.copy()
    out[:, :3, :3] = np.einsum("ij,njk->nik", R, T[:, :3, :3])
    out[:, :3, 3] = s * T[:, :3, 3] @ np.asarray(R).T + t
    return out


@dataclass(frozen=True)
class ATEResult:
    """Absolute trajectory error after alignment: ``rmse_m``, ``mean_m``, ``median_m``, ``max_m``, the
    alignment ``(scale, R, t)`` (estimate → truth) and the per-pose ``errors_m``."""
    rmse_m: float
    mean_m: float
    median_m: float
    max_m: float
    scale: float
    R: np.ndarray
    t: np.ndarray
    errors_m: np.ndarray


def ate(est_xyz, gt_xyz, *, with_scale: bool = False, align: bool = True) -> ATEResult:
    """ATE of estimated positions ``(N, 3)`` against true ones, after Umeyama alignment (SE(3), or Sim(3)
    with ``with_scale``; none with ``align=False``)."""
    E = np.asarray(est_xyz, dtype=np.float64)
    G = np.asarray(gt_xyz, dtype=np.float64)
    if E.shape != G.shape or E.ndim != 2 or E.shape[1] != 3 or len(E) == 0:
        raise ValueError(f"est_xyz and gt_xyz must be (N >= 1, 3) of the same shape, got {E.shape}, {G.shape}")
    if align and len(E) >= 2:
        s, R, t = umeyama(E, G, with_scale=with_scale)
    else:
        s, R, t = 1.0, np.eye(3), np.zeros(3)
    err = np.linalg.norm(s * E @ R.T + t - G, axis=1)
    return ATEResult(float(np.sqrt(np.mean(err ** 2))), float(err.mean()), float(np.median(err)), float(err.max()),
                     s, R, t, err)


# --------------------------------------------------------------------------- relative errors

def path_distances(T) -> np.ndarray:
    """Cumulative distance along the positions of ``T`` ``(N, 4, 4)`` (or ``(N, 3)`` positions)."""
    T = np.asarray(T, dtype=np.float64)
    p = T[:, :3, 3] if T.ndim == 3 else T
    if len(p) == 0:
        return np.zeros(0)
    return np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(p, axis=0), axis=1))])


KITTI_LENGTHS_M = (100.0, 200.0, 300.0, 400.0, 500.0, 600.0, 700.0, 800.0)


def segment_lengths(total_m: float) -> tuple[float, ...]:
    """Segment lengths for :func:`relative_errors`: KITTI's 100…800 m when the path is at least 1 km long;
    otherwise 10 %, 20 %, …, 80 % of the length (rounded to 2 significant figures)."""
    if not (total_m > 0):
        return ()
    if total_m >= 1000.0:
        return KITTI_LENGTHS_M
    out = [float(f"{f * total_m:.2g}") for f in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)]
    return tuple(dict.fromkeys(out))


@dataclass(frozen=True)
class RelativeErrors:
    """KITTI-style relative errors. ``lengths_m``; per length the mean ``t_err_pct`` and ``r_err_deg_per_m``
    and the number of segments ``counts``; ``t_err_pct_mean`` / ``r_err_deg_per_m_mean`` over all segments
    of all lengths (the KITTI leaderboard figures)."""
    lengths_m: tuple
    t_err_pct: tuple
    r_err_deg_per_m: tuple
    counts: tuple
    t_err_pct_mean: float
    r_err_deg_per_m_mean: float


def relative_errors(est_T, gt_T, lengths_m=None, *, step: int = 10) -> RelativeErrors:
    """KITTI odometry devkit relative errors of estimated poses ``est_T`` against ``gt_T`` (both
    ``(N, 4, 4)``, same frames). ``lengths_m`` defaults to :func:`segment_lengths` of the true path;
    segments start every ``step`` frames."""
    E = np.asarray(est_T, dtype=np.float64)
    G = np.asarray(gt_T, dtype=np.float64)
    if E.shape != G.shape or E.ndim != 3 or E.shape[1:] != (4, 4):
        raise ValueError(f"est_T and gt_T must be (N, 4, 4) of the same shape, got {E.shape}, {G.shape}")
    if step < 1:
        raise ValueError(f"step = {step}: must be >= 1")
    dist = path_distances(G)
    if lengths_m is None:
        lengths_m = segment_lengths(float(dist[-1]) if len(dist) else 0.0)
    lengths_m = tuple(float(v) for v in lengths_m)
    t_all, r_all, t_mean, r_mean, counts = [], [], [], [], []
    for L in lengths_m:
        if not (L > 0):
            raise ValueError(f"segment length {L}: must be > 0")
        te, re = [], []
        for a in range(0, len(G), step):
            b = int(np.searchsorted(dist, dist[a] + L, side="left"))
            if b >= len(G):
                break
            dG = invert(G[a]) @ G[b]
            dE = invert(E[a]) @ E[b]
            err = invert(dE) @ dG
            te.append(float(np.linalg.norm(err[:3, 3])) / L)
            re.append(rotation_angle(err[:3, :3]) / L)
        counts.append(len(te))
        t_mean.append(100.0 * float(np.mean(te)) if te else math.nan)
        r_mean.append(math.degrees(float(np.mean(re))) if re else math.nan)
        t_all += te
        r_all += re
    return RelativeErrors(lengths_m, tuple(t_mean), tuple(r_mean), tuple(counts),
                          100.0 * float(np.mean(t_all)) if t_all else math.nan,
                          math.degrees(float(np.mean(r_all))) if r_all else math.nan)


def evaluate(est_T, gt_T, *, lengths_m=None, step: int = 10) -> dict:
    """All metrics of an estimated trajectory against the truth, as a JSON-ready dict.

    Both ``(N, 4, 4)`` in the same frame (the first camera's): ``distance_m`` (true path length),
    ``ate_rmse_m`` (SE(3) alignment), ``ate_sim3_rmse_m`` and ``sim3_scale``, ``ate_unaligned_rmse_m``,
    ``endpoint_error_m`` and ``endpoint_error_pct`` (of the distance), ``relative`` (KITTI-style per
    segment length), ``kitti_t_err_pct`` and ``kitti_r_err_deg_per_m``.
    """
    E = np.asarray(est_T, dtype=np.float64)
    G = np.asarray(gt_T, dtype=np.float64)
    if E.shape != G.shape or E.ndim != 3 or E.shape[1:] != (4, 4) or len(E) < 2:
        raise ValueError(f"est_T and gt_T must be (N >= 2, 4, 4) of the same shape, got {E.shape}, {G.shape}")
    dist = float(path_distances(G)[-1])
    a = ate(E[:, :3, 3], G[:, :3, 3])
    a_sim = ate(E[:, :3, 3], G[:, :3, 3], with_scale=True)
    a_raw = ate(E[:, :3, 3], G[:, :3, 3], align=False)
    rel = relative_errors(E, G, lengths_m, step=step)
    end = float(np.linalg.norm(E[-1, :3, 3] - G[-1, :3, 3]))
    end_rot = math.degrees(rotation_angle(invert(E[-1]) @ G[-1]))

    def fin(v):
        return None if not math.isfinite(v) else float(v)

    return {
        "n_poses": int(len(E)), "distance_m": dist,
        "ate_rmse_m": a.rmse_m, "ate_max_m": a.max_m,
        "ate_sim3_rmse_m": a_sim.rmse_m, "sim3_scale": a_sim.scale,
        "ate_unaligned_rmse_m": a_raw.rmse_m,
        "endpoint_error_m": end, "endpoint_error_pct": 100.0 * end / dist if dist > 0 else None,
        "endpoint_rotation_error_deg": end_rot,
        "kitti_t_err_pct": fin(rel.t_err_pct_mean), "kitti_r_err_deg_per_m": fin(rel.r_err_deg_per_m_mean),
        "relative": [{"length_m": L, "t_err_pct": fin(t), "r_err_deg_per_m": fin(r), "segments": c}
                     for L, t, r, c in zip(rel.lengths_m, rel.t_err_pct, rel.r_err_deg_per_m, rel.counts)],
    }


# --------------------------------------------------------------------------- plot

def _plot_axes(P: np.ndarray) -> np.ndarray:
    """Two orthonormal axes (rows) of the plane the positions ``P`` (N, 3) spread in most."""
    c = P - P.mean(axis=0)
    w, V = np.linalg.eigh(c.T @ c)
    a1 = V[:, 2]
    a2 = V[:, 1]
    if w[2] <= 0:
        return np.array([[1.0, 0, 0], [0, 0, 1.0]])
    if w[1] < 1e-4 * w[2]:
        # (nearly) a straight line: the second axis is the first frame's x (right) made orthogonal
        a2 = np.array([1.0, 0.0, 0.0]) - a1 * a1[0]
        if np.linalg.norm(a2) < 1e-6:
            a2 = np.array([0.0, 1.0, 0.0]) - a1 * a1[1]
        a2 /= np.linalg.norm(a2)
    # orient: the path heads "up" the picture at first
    if a1 @ (P[-1] - P[0]) < 0:
        a1 = -a1
    return np.stack([a1, a2])


def plot_trajectories(path, est_xyz, gt_xyz=None, *, title: str = "", size_px: int = 800,
                      failures_xyz=None) -> Path:
    """Draw estimated (red) and true (thick grey) paths, projected on the plane of largest spread of the truth
    (or the estimate), into a PNG with OpenCV: grid with its spacing in the legend, start (circle) and end
    (square) marks, optional failure marks (blue crosses). Returns the path."""
    import cv2

    E = np.asarray(est_xyz, dtype=np.float64).reshape(-1, 3)
    G = None if gt_xyz is None else np.asarray(gt_xyz, dtype=np.float64).reshape(-1, 3)
    ref = G if G is not None and len(G) >= 2 else E
    if len(ref) == 0:
        raise ValueError("nothing to plot: no positions")
    A = _plot_axes(ref)
    pts = [E @ A.T] + ([G @ A.T] if G is not None else [])
    allp = np.concatenate(pts)
    lo, hi = allp.min(axis=0), allp.max(axis=0)
    span = max(float((hi - lo).max()), 1e-3)
    margin = 60
    H = W = int(size_px)
    scale = (W - 2 * margin) / span
    ctr = 0.5 * (lo + hi)

    def to_px(q):
        # axis 0 (along the path) up the picture, axis 1 to the right
        x = W / 2 + (q[:, 1] - ctr[1]) * scale
        y = H / 2 - (q[:, 0] - ctr[0]) * scale
        return np.round(np.stack([x, y], axis=1) * 16).astype(np.int32)   # 4 fractional bits

    img = np.full((H, W, 3), 255, np.uint8)
    grid = 10 ** math.floor(math.log10(span / 2))
    if span / grid > 10:
        grid *= 5 if span / grid > 25 else 2
    for k in range(-60, 61):
        for axis in (0, 1):
            v = ctr[axis] + k * grid - (ctr[axis] % grid)
            if axis == 0:
                y = int(round(H / 2 - (v - ctr[0]) * scale))
                if 0 <= y < H:
                    cv2.line(img, (0, y), (W - 1, y), (235, 235, 235), 1)
            else:
                x = int(round(W / 2 + (v - ctr[1]) * scale))
                if 0 <= x < W:
                    cv2.line(img, (x, 0), (x, H - 1), (235, 235, 235), 1)
    draw = [(pts[1], (150, 150, 150), "truth", 5)] if G is not None else []
    draw.append((pts[0], (30, 30, 220), "estimate", 2))
    for q, col, _, thick in draw:
        px = to_px(q)
        if len(px) >= 2:
            cv2.polylines(img, [px.reshape(-1, 1, 2)], False, col, thick, cv2.LINE_AA, shift=4)
        s = px[0] // 16
        cv2.circle(img, (int(s[0]), int(s[1])), 6, col, 2, cv2.LINE_AA)
        e = px[-1] // 16
        cv2.rectangle(img, (int(e[0]) - 5, int(e[1]) - 5), (int(e[0]) + 5, int(e[1]) + 5), col, 2)
    if failures_xyz is not None and len(failures_xyz):
        for p in to_px(np.asarray(failures_xyz, dtype=np.float64).reshape(-1, 3) @ A.T) // 16:
            cv2.drawMarker(img, (int(p[0]), int(p[1])), (200, 80, 0), cv2.MARKER_CROSS, 10, 2)
    font = cv2.FONT_HERSHEY_SIMPLEX
    if title:
        cv2.putText(img, title[:90], (12, 26), font, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    y = H - 14 - 22 * len(draw)
    for _, col, name, thick in draw:
        cv2.line(img, (14, y - 5), (44, y - 5), col, thick, cv2.LINE_AA)
        cv2.putText(img, name, (52, y), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        y += 22
    cv2.putText(img, f"grid {grid:g} m", (W - 120, H - 14), font, 0.5, (90, 90, 90), 1, cv2.LINE_AA)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), img):
        raise OSError(f"{path}: could not write the image")
    return path
