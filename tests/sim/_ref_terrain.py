"""Slow, obviously-correct reference implementations for tests/sim/test_terrain.py.

Pure numpy (whole-grid evaluation, one feature at a time) and scipy quadrature; nothing here
imports sim/.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import integrate


# ------------------------------------------------------------------------------ grid geometry
def cell_centres(shape, origin_xy_m, cell_size_m):
    """World x, y of every cell centre, each (rows, cols) float64 (row 0 = south edge)."""
    rows, cols = shape
    ox, oy = origin_xy_m
    x = ox + (np.arange(cols) + 0.5) * cell_size_m
    y = oy + (np.arange(rows) + 0.5) * cell_size_m
    return np.meshgrid(x, y)  # xx[r, c] = x of column c, yy[r, c] = y of row r


def cell_of(x, y, shape, origin_xy_m, cell_size_m):
    """(row, col) of the cell containing a point; a point on the far edge belongs to the last cell."""
    rows, cols = shape
    ox, oy = origin_xy_m
    c = min(max(math.floor((x - ox) / cell_size_m), 0), cols - 1)
    r = min(max(math.floor((y - oy) / cell_size_m), 0), rows - 1)
    return r, c


# ------------------------------------------------------------------------------ craters
def crater_profile(s, depth, rim, extent):
    """Height added by a crater at normalised radius s = r / R (documented model)."""
    s = np.asarray(s, dtype=np.float64)
    out = np.zeros_like(s)
    inside = s <= 1.0
    out[inside] = rim - depth + depth * s[inside] ** 2
    if extent > 1.0:
        ring = (s > 1.0) & (s < extent)
        t = extent ** -3.0
        out[ring] = rim * (s[ring] ** -3.0 - t) / (1.0 - t)
    return out


def stamp_craters(z, origin_xy_m, cell_size_m, craters, extent):
    """z + the sum of every crater's profile, evaluated on the whole grid (float64)."""
    xx, yy = cell_centres(z.shape, origin_xy_m, cell_size_m)
    out = np.asarray(z, dtype=np.float64).copy()
    for cr in craters:
        s = np.hypot(xx - cr.x_m, yy - cr.y_m) / (0.5 * cr.diameter_m)
        out += crater_profile(s, cr.depth_m, cr.rim_height_m, extent)
    return out


# ------------------------------------------------------------------------------ rocks
def stamp_rocks(ground, origin_xy_m, cell_size_m, rocks):
    """max(ground, every rock's half-ellipsoid on the ground of its centre cell), whole grid."""
    xx, yy = cell_centres(ground.shape, origin_xy_m, cell_size_m)
    g = np.asarray(ground, dtype=np.float64)
    out = g.copy()
    for rk in rocks:
        r0, c0 = cell_of(rk.x_m, rk.y_m, g.shape, origin_xy_m, cell_size_m)
        base = g[r0, c0]
        u = 1.0 - (np.hypot(xx - rk.x_m, yy - rk.y_m) / (0.5 * rk.diameter_m)) ** 2
        dome = np.where(u > 0, base + rk.height_m * np.sqrt(np.clip(u, 0, None)), -np.inf)
        out = np.maximum(out, dome)
        out[r0, c0] = max(out[r0, c0], base + rk.height_m)
    return out


def golombek_q(k):
    return 1.79 + 0.152 / k


def golombek_cfa(k, d_lo, d_hi):
    """Fractional area covered by rocks with d_lo <= D <= d_hi: k (exp(-q d_lo) - exp(-q d_hi))."""
    q = golombek_q(k)
    return k * (math.exp(-q * d_lo) - math.exp(-q * d_hi))


def golombek_number_density(k, d_lo, d_hi):
    """Rocks per m² with d_lo <= D <= d_hi: integral of -F'(D) / (pi D² / 4)."""
    q = golombek_q(k)
    f = lambda d: k * q * math.exp(-q * d) / (math.pi * d * d / 4.0)  # noqa: E731
    return integrate.quad(f, d_lo, d_hi, limit=200)[0]


def golombek_cfa_variance_per_m2(k, d_lo, d_hi):
    """Var(covered area) / area for a Poisson field: integral of n(D) (pi D²/4)²."""
    q = golombek_q(k)
    f = lambda d: k * q * math.exp(-q * d) * (math.pi * d * d / 4.0)  # noqa: E731
    return integrate.quad(f, d_lo, d_hi, limit=200)[0]


# ------------------------------------------------------------------------------ relief statistics
def radial_psd(z, cell_size_m, nbins=40):
    """Radially averaged 2-D power spectrum: (k cycles/m, mean |FFT|²) over log-spaced bins."""
    rows, cols = z.shape
    p = np.abs(np.fft.fft2(z - z.mean())) ** 2
    ky = np.fft.fftfreq(rows, d=cell_size_m)
    kx = np.fft.fftfreq(cols, d=cell_size_m)
    k = np.hypot(ky[:, None], kx[None, :])
    kmin = 1.0 / (max(rows, cols) * cell_size_m)
    kmax = 0.5 / cell_size_m
    edges = np.geomspace(kmin, kmax, nbins + 1)
    idx = np.digitize(k.ravel(), edges) - 1
    ok = (idx >= 0) & (idx < nbins)
    sums = np.bincount(idx[ok], weights=p.ravel()[ok], minlength=nbins)
    ks = np.bincount(idx[ok], weights=k.ravel()[ok], minlength=nbins)
    counts = np.bincount(idx[ok], minlength=nbins)
    good = counts > 0
    return ks[good] / counts[good], sums[good] / counts[good]


def model_periodic_deviogram(shape, cell_size_m, rms_m, hurst, rolloff_wavelength_m, lag_cells):
    """Mean squared height difference at a lag (averaged over the x and y axes, periodic wrap)
    of a periodic field whose Fourier modes have the model power S(k) / (w h),
    S(k) = C (k² + k0²)^-(H+1), C = rms² H k0^(2H) / pi. By Parseval this does not depend on the
    phases: mean_x |z(x + lag) - z(x)|² = sum_k |c_k|² |exp(2 pi i k lag) - 1|²."""
    rows, cols = shape
    ky = np.fft.fftfreq(rows, d=cell_size_m)[:, None]
    kx = np.fft.fftfreq(cols, d=cell_size_m)[None, :]
    k0 = 1.0 / rolloff_wavelength_m
    c = rms_m ** 2 * hurst * k0 ** (2 * hurst) / math.pi
    power = c * (kx ** 2 + ky ** 2 + k0 ** 2) ** -(hurst + 1.0) / (rows * cols * cell_size_m ** 2)
    power[0, 0] = 0.0
    # Modes at the Nyquist frequency of an even axis are real: cos(pi n) carries their power.
    lag_m = lag_cells * cell_size_m
    gx = np.sum(power * 2.0 * (1.0 - np.cos(2 * math.pi * kx * lag_m)))
    gy = np.sum(power * 2.0 * (1.0 - np.cos(2 * math.pi * ky * lag_m)))
    return 0.5 * (gx + gy)


def periodic_mean_square_difference(z, lag_cells):
    """mean over the grid of (z shifted by lag - z)², wrapping around, averaged over both axes."""
    L = int(lag_cells)
    dx = np.roll(z, -L, axis=1) - z
    dy = np.roll(z, -L, axis=0) - z
    return 0.5 * (np.mean(dx * dx) + np.mean(dy * dy))


def rms_height_difference(z, lag_cells):
    """sqrt(mean squared height difference) at a lag along both axes (the deviogram)."""
    L = int(lag_cells)
    dx = z[:, L:] - z[:, :-L]
    dy = z[L:, :] - z[:-L, :]
    return math.sqrt(0.5 * (np.mean(dx * dx) + np.mean(dy * dy)))
