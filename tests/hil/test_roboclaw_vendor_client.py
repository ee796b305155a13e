"""The vendor's own published client library against ``rover sim-device --protocol roboclaw``.

BasicMicro's Python package ``basicmicro`` (MIT, on PyPI; pyserial-based, opens the port with
``serial.Serial`` like any user program) talks to the virtual RoboClaw bus that ``rover sim-device`` serves
on a pseudo-terminal, in real time, in another process — exactly as it would talk to a controller on
``/dev/ttyACM0``. Nothing of ours is on the client side, so this checks the wire format (framing, CRC-16,
acks, value layouts and signs) against an implementation we did not write, plus the command itself:
it prints the pty path on its first line and exits cleanly on Ctrl-C (SIGINT).

Skipped, with the reason, when the package is not installed (it is a test-only dependency).
"""
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

try:
    from basicmicro import Basicmicro
except ImportError:                                    # pragma: no cover - depends on the environment
    pytest.skip("the vendor client is not installed: pip install basicmicro (BasicMicro's own Python library, "
                "MIT) to check the virtual RoboClaw against it", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[2]
ADDRESSES = (0x80, 0x81, 0x82)                         # the OSR bus that `rover sim-device` serves by default
START_TIMEOUT_S = 120.0                                # a cold Numba cache on a loaded machine


def s32(v: int) -> int:
    """The client returns 4-byte values unsigned; the controller sends two's complement."""
    return v - (1 << 32) if v & 0x80000000 else v


@pytest.fixture(scope="module")
def sim_device(tmp_path_factory):
    """``rover sim-device --protocol roboclaw --link PATH`` in its own process; yields the announced path."""
    link = tmp_path_factory.mktemp("vendor") / "usb-BasicMicro_RoboClaw-if00"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    p = subprocess.Popen([sys.executable, "-m", "hil.cli", "sim-device", "--protocol", "roboclaw", "--link", str(link)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=str(ROOT), env=env)
    try:
        ready, _, _ = select.select([p.stdout], [], [], START_TIMEOUT_S)
        first = p.stdout.readline().decode() if ready else ""
        assert first.strip(), f"rover sim-device announced nothing: {p.poll()} {p.stderr.read1().decode()}"
        path = first.strip()
        assert path == str(link) and os.path.realpath(path).startswith("/dev/pts/")
        assert p.stdout.readline().decode().startswith("# VirtualRoboClawBus")
        yield path
    finally:
        p.send_signal(signal.SIGINT)                   # Ctrl-C
        try:
            rc = p.wait(15)
        except subprocess.TimeoutExpired:              # pragma: no cover - a hang is the failure reported
            p.kill()
            p.wait(5)
            rc = None
    assert rc == 0, p.stderr.read().decode()
    assert not os.path.lexists(link)                   # the pty and its link are gone


@pytest.fixture
def client(sim_device):
    c = Basicmicro(sim_device, 115200)
    assert c.Open(), f"the vendor client cannot open {sim_device}"
    yield c
    for a in ADDRESSES:                                # leave the bus stopped for the next test
        c.SpeedM1M2(a, 0, 0)
    c.close()


def test_the_vendor_client_reads_every_controller(client):
    for a in ADDRESSES:
        ok, version = client.ReadVersion(a)
        assert ok and version.startswith("USB Roboclaw") and version.endswith("\n"), (a, version)
        ok, volts_10 = client.ReadMainBatteryVoltage(a)
        assert ok and 100 < volts_10 < 300                       # 0.1 V units: an OSR's 4S pack
        ok, temp_10 = client.ReadTemp(a)
        assert ok and 0 < temp_10 < 1000                         # 0.1 degC units
        ok, m1_10ma, m2_10ma = client.ReadCurrents(a)
        assert ok and abs(m1_10ma) < 100 and abs(m2_10ma) < 100  # standing still
        ok, status = client.ReadError(a)
        assert ok and status == 0
        assert client.ReadEncM1(a)[0] and client.GetEncoders(a)[0]


def test_the_vendor_client_drives_reads_encoders_and_the_serial_timeout_stops_it(client):
    for a in ADDRESSES:
        assert client.SetTimeout(a, 0.5)                         # command 14, acked with 0xFF
        assert client.GetTimeout(a) == (True, 0.5)
        assert client.ResetEncoders(a) and client.GetEncoders(a) == (True, 0, 0)

    def drive_until(pred, m1, m2, within_s=5.0):
        end = time.monotonic() + within_s
        while time.monotonic() < end:
            for a in ADDRESSES:
                assert client.SpeedM1M2(a, m1, m2)
            if pred():
                return True
            time.sleep(0.05)
        return False

    def speeds():
        return [(s32(client.ReadSpeedM1(a)[1]), s32(client.ReadSpeedM2(a)[1])) for a in ADDRESSES]

    # forward: every motor reaches the commanded counts/s, the encoders count up, direction bits clear
    assert drive_until(lambda: all(abs(v - 1000) < 100 for pair in speeds() for v in pair), 1000, 1000), speeds()
    for a in ADDRESSES:
        ok, e1, e2 = client.GetEncoders(a)
        assert ok and s32(e1) > 50 and s32(e2) > 50
        ok, count, status = client.ReadEncM1(a)
        assert ok and status & 0x02 == 0                         # bit 1: direction, 0 = forward
        ok, speed, direction = client.ReadSpeedM1(a)
        assert ok and direction == 0
    # backwards: negative speeds come back as two's complement with the direction byte set
    assert drive_until(lambda: all(abs(v + 600) < 100 for pair in speeds() for v in pair), -600, -600), speeds()
    ok, speed, direction = client.ReadSpeedM2(0x81)
    assert ok and s32(speed) < 0 and direction == 1
    ok, count, status = client.ReadEncM2(0x81)
    assert ok and status & 0x02

    # the client goes quiet: each controller's own serial timeout (0.5 s) stops its motors
    time.sleep(1.2)
    end = time.monotonic() + 5.0
    while any(v for pair in speeds() for v in pair) and time.monotonic() < end:
        time.sleep(0.6)                                          # (a read is a valid packet: let it lapse again)
    assert speeds() == [(0, 0)] * len(ADDRESSES)
