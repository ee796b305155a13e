"""DEM loading and grid resampling: rovernav vs the usual tools, on the same inputs.

Resampling (float32 grid, fully known so every peer is comparable; rovernav is also
timed with 10 % NaN, which the peers do not handle):

* coarser, integer factor 2: ``nav._resample.resample_grid`` vs ``cv2.resize(INTER_AREA)``,
  ``skimage.measure.block_reduce(np.mean)``
* coarser, factor 2.5: vs ``cv2.resize(INTER_AREA)``, ``skimage.transform.resize``
  (anti-aliased, order 1)
* finer, factor 1/2.5: vs ``cv2.resize(INTER_LINEAR)``, ``scipy.ndimage.zoom(order=1)``

Loading (the same file each time): ``nav.load_dem`` vs the bare array read it wraps
(``np.loadtxt`` for .asc, ``tifffile.imread`` for GeoTIFF, ``np.fromfile`` for a PDS3
image), i.e. the cost of header parsing, validation, masking and flipping.

Timings are interleaved (one run of each tool per round), repeated, and the median
is reported.

    python benchmarks/bench_dem_io.py [--quick] [--repeats 7]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nav import load_dem  # noqa: E402
from nav._resample import resample_grid  # noqa: E402


def interleaved(cases: dict, repeats: int) -> dict:
    """Median seconds of each callable, run round-robin ``repeats`` times (after a warm-up)."""
    for f in cases.values():
        f()
    times = {k: [] for k in cases}
    for _ in range(repeats):
        for k, f in cases.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def table(title: str, med: dict, ours: str) -> None:
    print(f"\n### {title}\n")
    print("| tool | median | vs rovernav |")
    print("|---|---|---|")
    base = med[ours]
    for k, v in med.items():
        print(f"| {k} | {v * 1e3:.1f} ms | {v / base:.2f}× |")


def bench_resample(n: int, repeats: int) -> None:
    import cv2
    from scipy import ndimage
    from skimage.measure import block_reduce
    from skimage.transform import resize

    rng = np.random.default_rng(0)
    z = rng.normal(size=(n, n)).cumsum(0).cumsum(1).astype(np.float32)
    holes = z.copy()
    holes[rng.random(z.shape) < 0.1] = np.nan

    m = round(n / 2)
    table(f"coarser ×2: {n}×{n} float32 → {m}×{m}", interleaved({
        "rovernav resample_grid": lambda: resample_grid(z, 1.0, 2.0),
        "rovernav resample_grid (10 % NaN)": lambda: resample_grid(holes, 1.0, 2.0),
        "cv2.resize INTER_AREA": lambda: cv2.resize(z, (m, m), interpolation=cv2.INTER_AREA),
        "skimage block_reduce mean": lambda: block_reduce(z, (2, 2), np.mean),
    }, repeats), "rovernav resample_grid")

    m = round(n / 2.5)
    table(f"coarser ×2.5: {n}×{n} float32 → {m}×{m}", interleaved({
        "rovernav resample_grid": lambda: resample_grid(z, 1.0, 2.5),
        "rovernav resample_grid (10 % NaN)": lambda: resample_grid(holes, 1.0, 2.5),
        "cv2.resize INTER_AREA": lambda: cv2.resize(z, (m, m), interpolation=cv2.INTER_AREA),
        "skimage resize (anti-aliased, order 1)": lambda: resize(z, (m, m), order=1,
                                                                  anti_aliasing=True,
                                                                  preserve_range=True),
    }, repeats), "rovernav resample_grid")

    small = z[: n // 2, : n // 2].copy()
    m = round(n // 2 * 2.5)
    table(f"finer ×2.5: {n // 2}×{n // 2} float32 → {m}×{m}", interleaved({
        "rovernav resample_grid": lambda: resample_grid(small, 1.0, 0.4),
        "cv2.resize INTER_LINEAR": lambda: cv2.resize(small, (m, m), interpolation=cv2.INTER_LINEAR),
        "scipy.ndimage.zoom order=1": lambda: ndimage.zoom(small, 2.5, order=1),
    }, repeats), "rovernav resample_grid")


def bench_load(n: int, repeats: int) -> None:
    import tifffile

    rng = np.random.default_rng(1)
    z = (rng.normal(size=(n, n)).cumsum(0) * 0.1).astype(np.float32)
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        asc = d / "dem.asc"
        with open(asc, "w") as f:
            f.write(f"ncols {n}\nnrows {n}\nxllcorner 0\nyllcorner 0\ncellsize 1\nNODATA_value -9999\n")
            np.savetxt(f, z, fmt="%.3f")
        tif = d / "dem.tif"
        keys = (1, 1, 0, 2, 1024, 0, 1, 1, 3076, 0, 1, 9001)
        tifffile.imwrite(tif, z, extratags=[(33550, "d", 3, (1.0, 1.0, 0.0), True),
                                            (33922, "d", 6, (0, 0, 0, 0.0, float(n), 0), True),
                                            (34735, "H", len(keys), keys, True),
                                            (42113, "s", 0, "-9999", True)])
        img = d / "dem.img"
        label = (f"PDS_VERSION_ID = PDS3\r\nRECORD_TYPE = FIXED_LENGTH\r\nRECORD_BYTES = {4 * n}\r\n"
                 f"LABEL_RECORDS = 1\r\n^IMAGE = 2\r\nOBJECT = IMAGE\r\n  LINES = {n}\r\n"
                 f"  LINE_SAMPLES = {n}\r\n  SAMPLE_TYPE = PC_REAL\r\n  SAMPLE_BITS = 32\r\n"
                 f"  MISSING_CONSTANT = 16#FF7FFFFB#\r\nEND_OBJECT = IMAGE\r\n"
                 f"OBJECT = IMAGE_MAP_PROJECTION\r\n  MAP_SCALE = 1.0 <METERS/PIXEL>\r\n"
                 f"  LINE_PROJECTION_OFFSET = 0.5\r\n  SAMPLE_PROJECTION_OFFSET = 0.5\r\n"
                 f"END_OBJECT = IMAGE_MAP_PROJECTION\r\nEND\r\n").encode()
        assert len(label) <= 4 * n
        img.write_bytes(label.ljust(4 * n, b" ") + z.astype("<f4").tobytes())

        table(f"load .asc ({n}×{n}, {asc.stat().st_size / 1e6:.0f} MB text)", interleaved({
            "rovernav load_dem": lambda: load_dem(asc),
            "np.loadtxt (values only)": lambda: np.loadtxt(asc, skiprows=6, dtype=np.float64),
        }, max(1, repeats // 3)), "rovernav load_dem")
        table(f"load GeoTIFF ({n}×{n} float32)", interleaved({
            "rovernav load_dem": lambda: load_dem(tif),
            "tifffile.imread (pixels only)": lambda: tifffile.imread(tif),
        }, repeats), "rovernav load_dem")
        table(f"load PDS3 .IMG ({n}×{n} PC_REAL, attached label)", interleaved({
            "rovernav load_dem": lambda: load_dem(img),
            "np.fromfile (pixels only)": lambda: np.fromfile(img, dtype="<f4", offset=4 * n),
        }, repeats), "rovernav load_dem")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small grids, few repeats (smoke run)")
    ap.add_argument("--repeats", type=int, default=7)
    a = ap.parse_args()
    n_resample, n_load, repeats = (400, 300, 2) if a.quick else (3000, 2000, a.repeats)
    print(f"numpy {np.__version__}; grids {n_resample}² (resample) and {n_load}² (load); "
          f"median of {repeats} interleaved runs")
    bench_resample(n_resample, repeats)
    bench_load(n_load, repeats)


if __name__ == "__main__":
    main()
