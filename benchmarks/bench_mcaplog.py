"""Traverse log: hil.mcaplog (MCAP, JSON messages, zstd chunks) vs a plain JSON-lines file.

Workloads, each written to a file on disk and read back:

* telemetry — ``drivers.base.Telemetry`` of a six-wheel rover at 50 Hz;
* images — 640x480 grey camera frames at 1 Hz (a smooth synthetic texture with sensor noise),
  PNG and JPEG (q 90);
* grids — a 120x120 local map with three layers (elevation float32, cost float32, reason uint8)
  and a 500x500 float32 known map;
* traverse mix — 50 Hz telemetry, 10 Hz commands, transforms and poses, 1 Hz images, a local
  grid every 2 s, events — per simulated second.

The peer is what a small team would write first: one ``json.dumps`` line per message
(``{"topic", "t", "msg"}``; arrays as lists, images and grids base64 in the line), in an
uncompressed file, flushed when it closes. Both sides encode the same content, and the image
codec (OpenCV) is the same on both sides. MB/s counts bytes written to disk; µs/message is wall
time per message written (write) or decoded back to numpy (read). One warm-up round, then best of
N rounds, interleaved.
The crash-safety rows show the price of writing a chunk out every message instead of every
second of log time.

    python benchmarks/bench_mcaplog.py [--quick] [--repeats 3]
"""
from __future__ import annotations

import argparse
import base64
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from drivers.base import BatterySample, Fault, ImuSample, Telemetry  # noqa: E402
from hil.mcaplog import McapLogger, read_log  # noqa: E402
from sim.frames import T_world_body  # noqa: E402


# ---------------------------------------------------------------------------------------- inputs
def telemetry_stream(n, hz=50.0, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    enc = np.zeros(6, dtype=np.int64)
    for i in range(n):
        t = i / hz
        enc = enc + rng.integers(40, 60, 6)
        imu = ImuSample(t, rng.normal(0, 0.01, 3), np.array([0.1, 0.0, 3.71]))
        out.append(Telemetry(t, i, enc.copy(), rng.normal(3.0, 0.1, 6), rng.normal(0, 0.05, 6),
                             rng.normal(1.2, 0.2, 6), imu=imu,
                             battery=BatterySample(t, 12.4, 2.1, math.nan), heading_rad=math.nan,
                             faults=Fault.NONE, armed=True))
    return out


def camera_frame(seed):
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.normal(128, 60, (480, 640)).astype(np.float32), (0, 0), 6)
    yy = np.linspace(0, 60, 480)[:, None]
    img = np.clip(base + yy + rng.normal(0, 2.0, (480, 640)), 0, 255).astype(np.uint8)
    return img


def grids(seed=0):
    rng = np.random.default_rng(seed)
    z = cv2.GaussianBlur(rng.normal(0, 0.3, (120, 120)).astype(np.float32), (0, 0), 3)
    z[:20] = np.nan
    cost = np.where(np.isfinite(z), 1.0 + np.abs(z) * 4, np.inf).astype(np.float32)
    reason = (rng.random((120, 120)) < 0.05).astype(np.uint8) * 2
    known = cv2.GaussianBlur(rng.normal(0, 0.5, (500, 500)).astype(np.float32), (0, 0), 5)
    return {"elevation_m": z, "cost": cost, "reason": reason}, known


# ---------------------------------------------------------------------------------------- the peer
class JsonLines:
    """One JSON object per line; what a first logger looks like."""

    def __init__(self, path):
        self.f = open(path, "w")

    def write(self, topic, t, msg):
        self.f.write(json.dumps({"topic": topic, "t": t, "msg": msg}) + "\n")

    def telemetry(self, t, tel):
        self.write("/telemetry", t, {
            "t_s": tel.t_s, "seq": tel.seq, "encoder_counts": tel.encoder_counts.tolist(),
            "wheel_speed_radps": tel.wheel_speed_radps.tolist(), "steer_rad": tel.steer_rad.tolist(),
            "motor_current_a": tel.motor_current_a.tolist(),
            "imu": {"t_s": tel.imu.t_s, "gyro_radps": tel.imu.gyro_radps.tolist(),
                    "accel_mps2": tel.imu.accel_mps2.tolist()},
            "battery": {"t_s": tel.battery.t_s, "voltage_v": tel.battery.voltage_v, "current_a": tel.battery.current_a,
                        "state_of_charge": tel.battery.state_of_charge},
            "heading_rad": tel.heading_rad, "faults": int(tel.faults), "armed": tel.armed})

    def image(self, topic, t, img, fmt):
        ok, buf = cv2.imencode(".png" if fmt == "png" else ".jpg", img,
                               [] if fmt == "png" else [cv2.IMWRITE_JPEG_QUALITY, 90])
        self.write(topic, t, {"format": fmt, "data": base64.b64encode(buf.tobytes()).decode()})

    def grid(self, topic, t, layers, origin, cell):
        self.write(topic, t, {"origin": list(origin), "cell": cell, "layers": {
            k: {"dtype": str(v.dtype), "shape": list(v.shape), "data": base64.b64encode(v.tobytes()).decode()}
            for k, v in layers.items()}})

    def close(self):
        self.f.close()


def read_jsonl(path):
    n = 0
    with open(path) as f:
        for line in f:
            m = json.loads(line)
            msg = m["msg"]
            if m["topic"] == "/telemetry":
                imu = msg["imu"]
                Telemetry(msg["t_s"], msg["seq"], np.array(msg["encoder_counts"], np.int64),
                          np.array(msg["wheel_speed_radps"]), np.array(msg["steer_rad"]),
                          np.array(msg["motor_current_a"]),
                          imu=ImuSample(imu["t_s"], np.array(imu["gyro_radps"]), np.array(imu["accel_mps2"])),
                          battery=BatterySample(**msg["battery"]), heading_rad=msg["heading_rad"],
                          faults=Fault(msg["faults"]), armed=msg["armed"])
            elif "format" in msg:
                cv2.imdecode(np.frombuffer(base64.b64decode(msg["data"]), np.uint8), cv2.IMREAD_UNCHANGED)
            elif "layers" in msg:
                for v in msg["layers"].values():
                    np.frombuffer(base64.b64decode(v["data"]), dtype=v["dtype"]).reshape(v["shape"])
            n += 1
    return n


def read_mcap(path):
    return sum(1 for _ in read_log(path))


# ---------------------------------------------------------------------------------------- workloads
def workloads(q):
    n_tel = 5000 if q else 30000
    n_img = 8 if q else 60
    n_grid = 20 if q else 100
    tels = telemetry_stream(n_tel)
    frames = [camera_frame(i) for i in range(4)]
    local, known = grids()

    def tel_mcap(L, **_):
        for tel in tels:
            L.telemetry(tel.t_s, tel)
        return len(tels)

    def tel_jsonl(J):
        for tel in tels:
            J.telemetry(tel.t_s, tel)
        return len(tels)

    def img(fmt):
        def m(L):
            for i in range(n_img):
                L.image("/camera/left/compressed", float(i), frames[i % 4], fmt)
            return n_img

        def j(J):
            for i in range(n_img):
                J.image("/camera/left/compressed", float(i), frames[i % 4], fmt)
            return n_img
        return m, j

    def grid_m(L):
        for i in range(n_grid):
            L.grid("/map/local", 2.0 * i, (local, (0.0, 0.0), 0.1))
        for i in range(max(1, n_grid // 10)):
            L.grid("/map/known", 20.0 * i, (known, (0.0, 0.0), 0.1), ["elevation_m"])
        return n_grid + max(1, n_grid // 10)

    def grid_j(J):
        for i in range(n_grid):
            J.grid("/map/local", 2.0 * i, local, (0.0, 0.0), 0.1)
        for i in range(max(1, n_grid // 10)):
            J.grid("/map/known", 20.0 * i, {"elevation_m": known}, (0.0, 0.0), 0.1)
        return n_grid + max(1, n_grid // 10)

    secs = 20 if q else 120

    def mix_m(L):
        n = 0
        for s in range(secs):
            for k in range(50):
                t = s + k / 50
                L.telemetry(t, tels[(s * 50 + k) % len(tels)])
                n += 1
                if k % 5 == 0:
                    T = T_world_body(0.1 * t, 0.0, 0.0, 0.01 * t, 0.0, 0.0)
                    L.command(t, 0.1, 0.0)
                    L.transform(t, "world", "body", T)
                    L.pose("/pose/estimated", t, T)
                    n += 3
            L.image("/camera/left/compressed", float(s), frames[s % 4], "jpeg")
            L.event(float(s), "cycle", {"s": s})
            n += 2
            if s % 2 == 0:
                L.grid("/map/local", float(s), (local, (0.0, 0.0), 0.1))
                n += 1
        return n

    def mix_j(J):
        n = 0
        for s in range(secs):
            for k in range(50):
                t = s + k / 50
                J.telemetry(t, tels[(s * 50 + k) % len(tels)])
                n += 1
                if k % 5 == 0:
                    T = T_world_body(0.1 * t, 0.0, 0.0, 0.01 * t, 0.0, 0.0)
                    J.write("/cmd", t, {"vx_mps": 0.1, "wz_radps": 0.0})
                    J.write("/tf", t, {"parent": "world", "child": "body", "T": T.tolist()})
                    J.write("/pose/estimated", t, {"frame_id": "world", "T": T.tolist()})
                    n += 3
            J.image("/camera/left/compressed", float(s), frames[s % 4], "jpeg")
            J.write("/events", float(s), {"kind": "cycle", "detail": {"s": s}})
            n += 2
            if s % 2 == 0:
                J.grid("/map/local", float(s), local, (0.0, 0.0), 0.1)
                n += 1
        return n

    im_png, ij_png = img("png")
    im_jpg, ij_jpg = img("jpeg")
    return [
        (f"telemetry 50 Hz ({n_tel} msgs)", tel_mcap, tel_jsonl),
        (f"images 640x480 PNG ({n_img})", im_png, ij_png),
        (f"images 640x480 JPEG ({n_img})", im_jpg, ij_jpg),
        (f"grids 120² x3 layers + 500² ({n_grid + max(1, n_grid // 10)})", grid_m, grid_j),
        (f"traverse mix, {secs} s of log", mix_m, mix_j),
    ], tels


def run_once(d, name, fn_m, fn_j, **mcap_kw):
    pm, pj = d / f"{name}.mcap", d / f"{name}.jsonl"
    for p in (pm, pj):
        if p.exists():
            p.unlink()
    t0 = time.perf_counter()
    with McapLogger(pm, metadata={"bench": name}, **mcap_kw) as L:
        n = fn_m(L)
    tm = time.perf_counter() - t0
    J = JsonLines(pj)
    t0 = time.perf_counter()
    nj = fn_j(J)
    J.close()
    tj = time.perf_counter() - t0
    t0 = time.perf_counter()
    assert read_mcap(pm) == n
    rm = time.perf_counter() - t0
    t0 = time.perf_counter()
    assert read_jsonl(pj) == nj
    rj = time.perf_counter() - t0
    return dict(n=n, tm=tm, tj=tj, rm=rm, rj=rj, sm=pm.stat().st_size, sj=pj.stat().st_size)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small workloads (a few seconds)")
    ap.add_argument("--repeats", type=int, default=None, help="rounds per workload (best of; default 3, quick 1)")
    args = ap.parse_args(argv)
    reps = args.repeats or (1 if args.quick else 3)
    cases, tels = workloads(args.quick)
    print("Both writers on the same messages, same process, rounds interleaved, best of "
          f"{reps}; files on local disk. Shared 2-core machine: timings are noisy.\n")
    print("| workload | messages | MCAP µs/msg write | JSONL µs/msg write | write ratio (JSONL/MCAP) | "
          "MCAP MB/s | MCAP size MB | JSONL size MB | size ratio (JSONL/MCAP) | MCAP µs/msg read | "
          "JSONL µs/msg read |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for name, fm, fj in cases:
            best = None
            run_once(d, "w", fm, fj)   # warm-up: imports, codec set-up, page cache
            for _ in range(reps):
                r = run_once(d, "w", fm, fj)
                if best is None:
                    best = r
                else:
                    best = {k: (min(best[k], r[k]) if k in ("tm", "tj", "rm", "rj") else r[k]) for k in r}
            n = best["n"]
            print(f"| {name} | {n} | {1e6 * best['tm'] / n:.1f} | {1e6 * best['tj'] / n:.1f} | "
                  f"{best['tj'] / best['tm']:.2f} | {best['sm'] / best['tm'] / 1e6:.1f} | {best['sm'] / 1e6:.2f} | "
                  f"{best['sj'] / 1e6:.2f} | {best['sj'] / best['sm']:.1f} | {1e6 * best['rm'] / n:.1f} | "
                  f"{1e6 * best['rj'] / n:.1f} |")

        print("\n### Crash safety: how often a chunk is written out (telemetry 50 Hz)\n")
        print("| flush_interval_s | µs/msg write | size MB | log lost on a kill, at most |")
        print("|---|---|---|---|")
        n_tel = len(tels)

        def tel_m(L):
            for tel in tels:
                L.telemetry(tel.t_s, tel)
            return n_tel

        for fi, lost in ((5.0, "5 s of log"), (1.0, "1 s of log (default)"), (0.1, "0.1 s of log"),
                         (0.0, "the message being written")):
            best_t, size = math.inf, 0
            for _ in range(reps):
                p = d / "f.mcap"
                if p.exists():
                    p.unlink()
                t0 = time.perf_counter()
                with McapLogger(p, metadata={}, flush_interval_s=fi) as L:
                    tel_m(L)
                best_t = min(best_t, time.perf_counter() - t0)
                size = p.stat().st_size
            print(f"| {fi:g} | {1e6 * best_t / n_tel:.1f} | {size / 1e6:.2f} | {lost} |")
    print("\nRatios > 1 favour the MCAP log. The JSONL peer has no schemas (Foxglove cannot draw it), no "
          "index, no compression and no NaN policy (it writes the non-standard token NaN).")


if __name__ == "__main__":
    main()
