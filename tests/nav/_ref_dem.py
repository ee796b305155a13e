"""Slow, obviously-correct references and fixture writers for the DEM / resampling tests.

Nothing here imports nav/: the writers follow the file-format documents (ESRI ASCII
grid, GeoTIFF 1.0 GeoKey directory, PDS3/ODL), and the resampler restates the rules
of :mod:`nav._resample` cell by cell in world coordinates.
"""
from __future__ import annotations

import math

import numpy as np


# ---------------------------------------------------------------------- resampling
def _axis(n_in: int, d: float, to: float, i: int):
    """(value weights, fallback weights) for output index ``i``: lists of (input index, w)."""
    if d == to:
        return [(i, 1.0)], [(i, 1.0)]
    if to > d:  # coarser: overlap length of [i*to, (i+1)*to) with each input cell
        a, b = i * to, (i + 1) * to
        ws = []
        for k in range(n_in):
            overlap = min(b, (k + 1) * d) - max(a, k * d)
            if overlap > 1e-9 * d:
                ws.append((k, overlap))
        return ws, ws
    # finer: linear between the two input centres around the output centre (extrapolate at ends)
    xc = (i + 0.5) * to
    anchor = min(int(math.floor(_snap(xc / d))), n_in - 1)
    if n_in == 1:
        return [(0, 1.0)], [(0, 1.0)]
    centres = [(k + 0.5) * d for k in range(n_in)]
    if xc <= centres[0]:
        k0 = 0
    elif xc >= centres[-1]:
        k0 = n_in - 2
    else:
        k0 = max(k for k in range(n_in - 1) if centres[k] <= xc)
    t = _snap((xc - centres[k0]) / d)
    # the stencil is the cells with non-zero weight
    return [(k, w) for k, w in ((k0, 1.0 - t), (k0 + 1, t)) if w != 0.0], [(anchor, 1.0)]


def _snap(x: float) -> float:
    """Rounding error around an integer (cell edge or centre) removed."""
    return float(round(x)) if abs(x - round(x)) < 1e-9 * max(1.0, abs(x)) else x


def ref_resample(z, dx: float, dy: float, to: float) -> np.ndarray:
    """Reference resampler: one output cell at a time, float64, plain loops."""
    z = np.asarray(z, dtype=np.float64)
    rows, cols = z.shape
    nr = int(math.floor(rows * dy / to + 0.5))
    nc = int(math.floor(cols * dx / to + 0.5))
    out = np.full((nr, nc), np.nan)
    for i in range(nr):
        vr, fr = _axis(rows, dy, to, i)
        for j in range(nc):
            vc, fc = _axis(cols, dx, to, j)
            cells = [(r, c, wr * wc) for r, wr in vr for c, wc in vc]
            if all(not math.isnan(z[r, c]) for r, c, _ in cells):
                out[i, j] = sum(w * z[r, c] for r, c, w in cells) / sum(w for _, _, w in cells)
                continue
            known = [(r, c, wr * wc) for r, wr in fr for c, wc in fc if not math.isnan(z[r, c])]
            if known:
                out[i, j] = sum(w * z[r, c] for r, c, w in known) / sum(w for _, _, w in known)
    return out


# ------------------------------------------------------------------ ESRI ASCII grid
def write_asc(path, z_north_first, *, cellsize=None, dx=None, dy=None, xll=0.0, yll=0.0,
              centre=False, nodata=None, key_case="lower", per_line=None, prj=None):
    """Write an ESRI ASCII grid (rows north-first) and optionally a .prj beside it."""
    z = np.asarray(z_north_first, dtype=np.float64)
    nrows, ncols = z.shape

    def k(name):
        return {"lower": name.lower(), "upper": name.upper(), "mixed": name}[key_case]

    lines = [f"{k('ncols')} {ncols}", f"{k('nrows')} {nrows}"]
    corner = "center" if centre else "corner"
    lines.append(f"{k('xll' + corner)} {xll!r}")
    lines.append(f"{k('yll' + corner)} {yll!r}")
    if cellsize is not None:
        lines.append(f"{k('cellsize')} {cellsize!r}")
    else:
        lines += [f"{k('dx')} {dx!r}", f"{k('dy')} {dy!r}"]
    if nodata is not None:
        lines.append(f"{k('NODATA_value')} {nodata!r}")
    vals = [repr(float(v)) if not math.isnan(v) else repr(float(nodata)) for v in z.ravel()]
    step = per_line or ncols
    for s in range(0, len(vals), step):
        lines.append(" ".join(vals[s:s + step]))
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    if prj is not None:
        with open(str(path)[:-4] + ".prj", "w") as f:
            f.write(prj)


# --------------------------------------------------------------------------- GeoTIFF
GEO_DOUBLES = 34736
GEO_ASCII = 34737


def geokey_directory(keys: dict):
    """GeoKeyDirectoryTag + params per GeoTIFF 1.0 §2.4: ``{key: int | float | [floats] | str}``."""
    entries, doubles, ascii_ = [], [], ""
    for key in sorted(keys):
        v = keys[key]
        if isinstance(v, str):
            s = v + "|"
            entries += [key, GEO_ASCII, len(s), len(ascii_)]
            ascii_ += s
        elif isinstance(v, float) or isinstance(v, (list, tuple)):
            vs = list(v) if isinstance(v, (list, tuple)) else [v]
            entries += [key, GEO_DOUBLES, len(vs), len(doubles)]
            doubles += [float(x) for x in vs]
        else:
            entries += [key, 0, 1, int(v)]
    return [1, 1, 0, len(keys)] + entries, doubles, ascii_


def write_geotiff(path, data_north_up, *, scale=None, tiepoint=None, transform=None,
                  geokeys=None, nodata=None, compression=None, photometric=None, planarconfig=None):
    """Write a GeoTIFF with tifffile's ``extratags`` (tags as the GeoTIFF spec lays them out)."""
    import tifffile

    extra = []
    if scale is not None:
        extra.append((33550, "d", 3, tuple(scale), True))
    if tiepoint is not None:
        extra.append((33922, "d", len(tiepoint), tuple(tiepoint), True))
    if transform is not None:
        extra.append((34264, "d", 16, tuple(transform), True))
    if geokeys:
        d, doubles, ascii_ = geokey_directory(geokeys)
        extra.append((34735, "H", len(d), tuple(d), True))
        if doubles:
            extra.append((GEO_DOUBLES, "d", len(doubles), tuple(doubles), True))
        if ascii_:
            extra.append((GEO_ASCII, "s", 0, ascii_, True))
    if nodata is not None:
        extra.append((42113, "s", 0, nodata, True))
    kw = {}
    if compression:
        kw["compression"] = compression
    if photometric:
        kw["photometric"] = photometric
    if planarconfig:
        kw["planarconfig"] = planarconfig
    tifffile.imwrite(path, data_north_up, extratags=extra, **kw)


# ----------------------------------------------------------------------- ODL / PDS3
def odl_value(v, rng=None) -> str:
    """Format a value the way PDS3 labels write it (the ODL spec's forms)."""
    from nav.dem_io import BasedInt, Quantity  # value types only: no parsing involved

    if isinstance(v, Quantity):
        return f"{odl_value(v.value, rng)} <{v.unit}>"
    if isinstance(v, BasedInt):
        digits = np.base_repr(abs(int(v)), v.radix)
        return f"{'-' if int(v) < 0 else ''}{v.radix}#{digits}#"
    if isinstance(v, bool):
        raise TypeError("no booleans in ODL")
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, tuple):
        sep = ",\n      " if rng is not None and rng.random() < 0.3 else ", "
        return "(" + sep.join(odl_value(x, rng) for x in v) + ")"
    if isinstance(v, frozenset):
        return "{" + ", ".join(odl_value(x, rng) for x in sorted(v, key=repr)) + "}"
    if isinstance(v, str):
        if v and (v[0].isalpha() and all(ch.isalnum() or ch == "_" for ch in v)):
            return v  # a bare symbol
        if rng is not None and " " in v and rng.random() < 0.5:
            i = v.index(" ")
            return '"' + v[:i] + "\n        " + v[i + 1:] + '"'  # wrapped over two lines
        return f'"{v}"'
    raise TypeError(type(v))


def odl_text(block, rng=None, indent: int = 0) -> str:
    """Serialise an ``OdlBlock`` tree back to label text (with optional random layout)."""
    from nav.dem_io import OdlBlock

    pad = " " * indent
    out = []
    for key, v in block.items:
        if isinstance(v, OdlBlock):
            out.append(f"{pad}{v.kind} = {v.name}")
            if rng is not None and rng.random() < 0.3:
                out.append(f"{pad}  /* a comment about {v.name} */")
            out.append(odl_text(v, rng, indent + 2).rstrip("\n"))
            out.append(f"{pad}END_{v.kind} = {v.name}")
        else:
            out.append(f"{pad}{key:<24} = {odl_value(v, rng)}")
    body = "\n".join(x for x in out if x)
    if indent == 0:
        return body + "\nEND\n"
    return body + "\n"
