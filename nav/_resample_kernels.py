"""Numba kernel for separable grid resampling (wrapper: :mod:`nav._resample`).

The wrapper describes each axis by two sparse weight tables, one row per output
index: ``span[i] = (first input index, count)`` and ``w[i, :count]``.

* the *value* table: area overlaps (coarsening axis) or the two linear-interpolation
  weights, possibly extrapolating at the edges (refining axis);
* the *fallback* table: the same overlaps (coarsening) or weight 1 on the input cell
  that contains the output centre (refining).

An output cell is the value-weighted mean over its support when every cell in the
support is known; otherwise it is the fallback-weighted mean over the known cells
of the fallback support, or NaN when none of them is known. Sums are float64.
"""
import math

import numpy as np
from numba import njit

OK = 0

_TABLE = "int64[:, ::1], float64[:, ::1]"


@njit(f"int64(float32[:, ::1], {_TABLE}, {_TABLE}, {_TABLE}, {_TABLE}, float32[:, ::1])",
      cache=True)
def _resample_separable(z, row_span, row_w, row_fspan, row_fw,
                        col_span, col_w, col_fspan, col_fw, out):
    """Fill ``out[i, j]`` from ``z`` with the row tables (i) and column tables (j)."""
    n_rows = out.shape[0]
    n_cols = out.shape[1]
    for i in range(n_rows):
        r0 = row_span[i, 0]
        nr = row_span[i, 1]
        fr0 = row_fspan[i, 0]
        fnr = row_fspan[i, 1]
        for j in range(n_cols):
            c0 = col_span[j, 0]
            nc = col_span[j, 1]
            acc = 0.0
            den = 0.0
            complete = True
            for a in range(nr):
                wr = row_w[i, a]
                for b in range(nc):
                    v = z[r0 + a, c0 + b]
                    if math.isnan(v):
                        complete = False
                        break
                    w = wr * col_w[j, b]
                    acc += w * v
                    den += w
                if not complete:
                    break
            if complete and den != 0.0:
                out[i, j] = acc / den
                continue
            fc0 = col_fspan[j, 0]
            fnc = col_fspan[j, 1]
            acc = 0.0
            den = 0.0
            for a in range(fnr):
                wr = row_fw[i, a]
                for b in range(fnc):
                    v = z[fr0 + a, fc0 + b]
                    if not math.isnan(v):
                        w = wr * col_fw[j, b]
                        acc += w * v
                        den += w
            if den > 0.0:
                out[i, j] = acc / den
            else:
                out[i, j] = np.float32(np.nan)
    return OK
