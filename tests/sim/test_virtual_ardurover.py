"""The virtual ArduPilot rover (sim.devices.mavlink): its behaviour as ArduPilot Rover documents it, fed with
requests built by hand from the MAVLink specification (tests/drivers/_ref_mavlink.py); the framing itself is
tested in tests/drivers/test_mavlink_codec.py."""
import math
import struct
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import serial

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "drivers"))

import sim.devices as sd  # noqa: E402
from _ref_mavlink import (command_long_payload, crc16_mcrf4xx_bitwise, parse_v2, target_payload, trim,  # noqa: E402
                          v2_frame)
from drivers import mavlink_codec as mc  # noqa: E402
from drivers.mavlink_codec import FrameParser, MavResult, RoverMode  # noqa: E402
from sim.devices.faults import BitFlips  # noqa: E402
from sim.devices.mavlink import VirtualArduRover, attach_ardurover, open_ardurover_pty  # noqa: E402

G_MARS = 3.71


class Bench:
    """A device and a hand-made ground station talking to it on simulated time."""

    def __init__(self, **kw):
        self.w = sd.flat_world(size_m=12.0, cell_size_m=0.1, physics_dt_s=0.01)
        self.rover = sd.virtual_rover("skidsteer", world=self.w)
        kw.setdefault("boot_s", 0.2)
        self.dev = VirtualArduRover(self.rover, **kw)
        self.seq = 0
        self.out = []                 # (t, Frame) from the device
        self.parser = FrameParser()

    @property
    def t(self):
        return self.w.time_s

    def raw(self, frame: bytes):
        for r in self.dev.receive(frame, self.t):
            self.out += [(self.t, f) for f in self.parser.feed(r)]

    def _v2(self, msgid, payload, crc_extra, sysid=255):
        self.seq = (self.seq + 1) & 0xFF
        return v2_frame(msgid, trim(payload), seq=self.seq, sysid=sysid, compid=190, crc_extra=crc_extra)

    def cmd(self, command, *params, target=1):
        """Send a COMMAND_LONG (built by hand); the result of the ACK it got now, else None."""
        n = len(self.acks(command))
        self.raw(self._v2(76, command_long_payload(target, 1, command, 0, *params), 152))
        a = self.acks(command)
        return a[-1] if len(a) > n else None

    def target(self, vx=0.0, yaw_rate=0.0, mask=0x05E7, frame=8, vy=0.0, target=1):
        self.raw(self._v2(84, target_payload(int(self.t * 1000), target, 1, frame, mask, vx, vy, yaw_rate), 143))

    def heartbeat(self, sysid=255):
        self.raw(self._v2(0, struct.pack("<IBBBBB", 0, 6, 8, 0, 4, 3), 50, sysid=sysid))

    def run(self, seconds, every=None, dt=0.01):
        end = self.t + seconds
        next_cb = self.t
        while self.t < end - 1e-9:
            if every is not None and self.t >= next_cb:
                every[1]()
                next_cb += every[0]
            self.w.advance(dt)
            for ts, fb in self.dev.emit(self.t):
                self.out += [(ts, f) for f in self.parser.feed(fb)]

    def frames(self, name, since=-math.inf):
        return [(t, f.fields()) for t, f in self.out if f.name == name and t >= since]

    def acks(self, command):
        return [f["result"] for _, f in self.frames("COMMAND_ACK") if f["command"] == command]

    def texts(self, since=-math.inf):
        """STATUSTEXTs, chunks (same ``id`` != 0) joined."""
        out, chunks = [], {}
        for _, f in self.frames("STATUSTEXT", since):
            if f["id"] == 0:
                out.append(f["text"])
            else:
                chunks.setdefault(f["id"], []).append(f)
                if len(f["text"]) < 50:
                    out.append("".join(c["text"] for c in sorted(chunks.pop(f["id"]), key=lambda c: c["chunk_seq"])))
        return out

    def last_hb(self):
        return self.frames("HEARTBEAT")[-1][1]

    def guided_armed(self):
        assert self.cmd(176, 1.0, 15.0) == MavResult.ACCEPTED
        assert self.cmd(400, 1.0) == MavResult.ACCEPTED


@pytest.fixture
def b():
    return Bench()


# ----------------------------------------------------------------------------- identity and streams
def test_heartbeat_by_hand_at_one_hertz(b):
    raw = []
    end = b.t + 3.05
    while b.t < end:
        b.w.advance(0.01)
        raw += [fb for _, fb in b.dev.emit(b.t)]
    hbs = [parse_v2(fb) for fb in raw if fb[7] == 0]
    assert len(hbs) == 4                                    # t = 0, 1, 2, 3
    h = hbs[0]
    assert (h["sysid"], h["compid"], h["len"]) == (1, 1, 9)
    custom, typ, ap, base, status, ver = struct.unpack("<IBBBBB", h["payload"])
    assert (custom, typ, ap, status, ver) == (0, 10, 3, 4, 3)             # MANUAL, rover, ArduPilot, ACTIVE
    assert base == mc.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED | mc.MAV_MODE_FLAG_MANUAL_INPUT_ENABLED
    fb = [fb for fb in raw if fb[7] == 0][0]
    assert h["crc"] == crc16_mcrf4xx_bitwise(fb[1:19] + bytes([50]))
    assert [parse_v2(fb)["seq"] for fb in raw] == [(i + 1) & 0xFF for i in range(len(raw))]


def test_streams_only_when_asked(b):
    b.run(1.0)
    assert not b.frames("ATTITUDE")
    assert b.cmd(511, 30.0, 100_000.0) == MavResult.ACCEPTED                 # ATTITUDE every 100 ms
    ack = b.frames("COMMAND_ACK")[-1][1]
    assert (ack["target_system"], ack["target_component"]) == (255, 190)
    t0 = b.t
    b.run(2.0)
    assert len(b.frames("ATTITUDE", t0)) == pytest.approx(20, abs=1)
    b.raw(mc.encode_frame("REQUEST_DATA_STREAM", dict(target_system=1, target_component=1, req_stream_id=6,
                                                      req_message_rate=4, start_stop=1), seq=1, sysid=255, compid=190))
    t1 = b.t
    b.run(2.0)
    assert len(b.frames("GLOBAL_POSITION_INT", t1)) == pytest.approx(8, abs=1)
    assert len(b.frames("LOCAL_POSITION_NED", t1)) == pytest.approx(8, abs=1)
    assert b.cmd(511, 30.0, -1.0) == MavResult.ACCEPTED                      # stop
    assert b.cmd(511, 9999.0, 1e5) == MavResult.DENIED                       # nothing streams as 9999
    t2 = b.t
    b.run(1.0)
    assert not b.frames("ATTITUDE", t2 + 0.01)
    assert b.dev.stream_rates_hz() == {"GLOBAL_POSITION_INT": 4.0, "LOCAL_POSITION_NED": 4.0}
    assert b.cmd(512, 0.0) == MavResult.ACCEPTED and b.frames("HEARTBEAT", b.t)    # REQUEST_MESSAGE
    assert b.cmd(4242) == MavResult.UNSUPPORTED


def test_modes_and_arming(b):
    assert b.cmd(176, 1.0, 10.0) == MavResult.FAILED                         # AUTO: no mission
    assert "Mode change to AUTO failed: no mission" in b.texts()
    assert b.cmd(176, 0.0, 15.0) == MavResult.DENIED                         # no CUSTOM_MODE_ENABLED flag
    b.dev.set_gps_fix(False)
    assert b.cmd(176, 1.0, 15.0) == MavResult.FAILED
    assert "Mode change to GUIDED failed: requires position" in b.texts()
    b.dev.set_gps_fix(True)
    assert b.cmd(176, 1.0, 15.0) == MavResult.ACCEPTED
    b.dev.set_prearm_failure("Hardware safety switch")
    assert b.cmd(400, 1.0) == MavResult.FAILED and "PreArm: Hardware safety switch" in b.texts()
    assert b.cmd(400, 1.0, 21196.0) == MavResult.ACCEPTED                    # forced
    b.run(1.01)
    hb = b.last_hb()
    assert hb["custom_mode"] == 15 and hb["base_mode"] & mc.MAV_MODE_FLAG_SAFETY_ARMED
    assert hb["base_mode"] & mc.MAV_MODE_FLAG_GUIDED_ENABLED and not hb["base_mode"] & 64
    assert b.cmd(246, 1.0) == MavResult.DENIED                               # no reboot while armed
    assert b.cmd(400, 0.0) == MavResult.ACCEPTED and not b.dev.armed
    assert b.cmd(400, 0.0) == MavResult.ACCEPTED                             # idempotent
    b.raw(mc.encode_frame("SET_MODE", dict(target_system=1, base_mode=1, custom_mode=4), seq=3, sysid=255, compid=190))
    assert b.acks(11) == [MavResult.ACCEPTED] and b.dev.mode == RoverMode.HOLD
    b.raw(mc.encode_frame("SET_MODE", dict(target_system=1, base_mode=1, custom_mode=11), seq=4, sysid=255,
                          compid=190))
    assert b.cmd(400, 1.0) == MavResult.FAILED                               # RTL is not armable
    assert b.cmd(176, 1.0, 15.0, target=9) is None and b.dev.mode == RoverMode.RTL   # for another system


# ----------------------------------------------------------------------------- GUIDED
def test_guided_velocity_targets_move_the_rover_and_expire(b):
    b.guided_armed()
    x0 = b.rover.truth().x_m
    b.run(2.0, every=(0.1, lambda: b.target(vx=0.3)))
    tr = b.rover.truth()
    assert b.dev.velocity_target()[:2] == ("rate", pytest.approx(0.3))
    assert tr.vx_mps == pytest.approx(0.3, abs=0.03) and 0.4 < tr.x_m - x0 < 0.6
    t_last = b.t - 0.1
    b.run(2.8)
    assert b.dev.velocity_target() is not None                               # GUID_TIMEOUT is 3 s
    b.run(0.5)
    assert b.dev.velocity_target() is None
    assert "target not received last 3.0 secs, stopping" in b.texts()
    (t_txt, _), = [(t, f) for t, f in b.frames("STATUSTEXT") if "not received" in f["text"]]
    assert t_txt == pytest.approx(t_last + 3.0, abs=0.02)
    b.run(1.0)
    assert abs(b.rover.truth().vx_mps) < 0.01


def test_yaw_rate_sign_reverse_and_heading_targets(b):
    b.guided_armed()
    yaw0 = b.rover.truth().yaw_rad
    b.run(1.0, every=(0.1, lambda: b.target(vx=0.0, yaw_rate=0.5)))        # NED +: clockwise from above
    assert b.rover.truth().yaw_rad < yaw0 - 0.15                             # skid-steer turning loss
    assert b.dev.velocity_target() == ("rate", 0.0, pytest.approx(-0.5))
    b.run(0.5, every=(0.1, lambda: b.target(vx=-0.2)))
    assert b.rover.truth().vx_mps < -0.1                                     # reverse
    # velocity only, body frame, pointing 90 deg right: the rover turns right toward it
    yaw1 = b.rover.truth().yaw_rad
    b.run(1.0, every=(0.1, lambda: b.target(vx=0.0, vy=0.2, mask=0x0DE7)))
    kind, speed, heading = b.dev.velocity_target()
    assert kind == "heading" and speed == pytest.approx(0.2) and b.rover.truth().yaw_rad < yaw1 - 0.15


def test_targets_that_ardupilot_ignores(b):
    b.target(vx=0.3)
    assert b.dev.velocity_target() is None                                   # MANUAL
    b.guided_armed()
    b.target(vx=0.3, frame=0)                                                # MAV_FRAME_GLOBAL
    b.target(vx=0.3, target=9)                                               # another vehicle
    assert b.dev.velocity_target() is None
    b.target(vx=0.3, mask=0x05E7 & ~0x1C0)                                   # accelerations not ignored
    assert b.dev.velocity_target() is None
    assert "Ignoring SET_POSITION_TARGET_LOCAL_NED; set ACC_IGNORE in mask" in b.texts()


def test_speed_clamp_and_acceleration_limit(b):
    b.guided_armed()
    b.target(vx=5.0, yaw_rate=-9.0)
    b.run(0.1)
    v, w = b.dev.commanded_twist()
    assert v == pytest.approx(1.0 * 0.1, abs=0.011)                          # skidsteer: 1 m/s2
    assert w == pytest.approx(math.radians(90.0))                            # clamped, CCW
    b.run(1.0, every=(0.1, lambda: b.target(vx=5.0)))
    assert b.dev.commanded_twist()[0] == pytest.approx(0.5)                  # max_speed_mps


# ----------------------------------------------------------------------------- failsafes and reboot
def test_gcs_failsafe():
    b = Bench(fs_gcs_enable=True, fs_gcs_timeout_s=1.0)
    b.guided_armed()
    b.run(1.0, every=(0.25, b.heartbeat))
    b.run(1.0, every=(0.25, lambda: b.heartbeat(sysid=42)))                 # not SYSID_MYGCS: does not count
    assert b.dev.mode == RoverMode.GUIDED
    b.run(1.6)                                                               # 1 s timeout + 1.5 s FS_TIMEOUT
    assert b.dev.mode == RoverMode.HOLD and "GCS Failsafe" in b.texts()
    b.run(1.0)
    assert b.last_hb()["system_status"] == mc.MavState.CRITICAL
    b.run(1.01, every=(0.25, b.heartbeat))
    assert "GCS Failsafe Cleared" in b.texts() and b.last_hb()["system_status"] == mc.MavState.STANDBY


def test_error_flags_and_battery_failsafe(b):
    b.guided_armed()
    b.dev.set_error_flags(1)
    b.run(1.6)
    assert b.dev.mode == RoverMode.HOLD and "Radio Failsafe" in b.texts()
    b.dev.set_error_flags(0)
    b.run(0.1)
    assert "Radio Failsafe Cleared" in b.texts()
    b2 = Bench(batt_low_v=20.0)
    assert b2.cmd(176, 1.0, 15.0) == MavResult.ACCEPTED
    assert b2.cmd(400, 1.0) == MavResult.FAILED                             # below the arming voltage
    b2.run(0.1)
    assert any(t.startswith("Battery 1 is low") for t in b2.texts()) and b2.dev.mode == RoverMode.HOLD


def test_reboot(b):
    b.guided_armed()
    assert b.cmd(511, 30.0, 50_000.0) == MavResult.ACCEPTED
    b.run(2.0)
    boot_before = b.frames("ATTITUDE")[-1][1]["time_boot_ms"]
    t0 = b.t
    b.dev.reboot()
    b.run(0.19)
    assert not [1 for t, _ in b.out if t > t0] and b.cmd(400, 1.0) is None     # silent and deaf while booting
    b.run(1.2)
    assert not b.dev.armed and b.dev.mode == RoverMode.MANUAL and b.dev.stream_rates_hz() == {}
    assert not b.frames("ATTITUDE", t0 + 0.1) and b.last_hb()["custom_mode"] == 0
    assert "ArduRover V4.5.7 (rovernav sim)" in b.texts(t0)
    assert b.cmd(512, 30.0) == MavResult.ACCEPTED
    assert b.frames("ATTITUDE")[-1][1]["time_boot_ms"] < boot_before
    assert b.cmd(246, 1.0) == MavResult.ACCEPTED and b.dev.reboots == 2       # PREFLIGHT_REBOOT_SHUTDOWN


# ----------------------------------------------------------------------------- sensors
def _haversine_m(lat1, lon1, lat2, lon2, r=6_378_137.0):
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(math.sqrt(a))


def test_position_attitude_and_imu_conventions():
    b = Bench(position_noise_m=0.0, gps_noise_m=0.0, yaw_noise_deg=0.0, home=(34.2, -118.17, 350.0))
    tr = b.rover.truth()
    b.rover.teleport(tr.x_m + 3.0, tr.y_m + 4.0, 0.5)                       # 3 m east, 4 m north, yaw 0.5 CCW from east
    b.w.advance(0.05)
    for mid in (30, 32, 33, 27, 1, 147, 24):
        assert b.cmd(512, float(mid)) == MavResult.ACCEPTED
    lpn = b.frames("LOCAL_POSITION_NED")[-1][1]
    assert (lpn["x"], lpn["y"]) == (pytest.approx(4.0, abs=0.01), pytest.approx(3.0, abs=0.01))
    gpi = b.frames("GLOBAL_POSITION_INT")[-1][1]
    lat, lon = gpi["lat"] * 1e-7, gpi["lon"] * 1e-7
    assert _haversine_m(34.2, -118.17, lat, lon) == pytest.approx(5.0, abs=0.02)
    bearing = math.degrees(math.atan2(math.radians(lon + 118.17) * math.cos(math.radians(34.2)),
                                      math.radians(lat - 34.2)))
    assert bearing == pytest.approx(math.degrees(math.atan2(3, 4)), abs=0.1)
    assert gpi["hdg"] / 100 == pytest.approx(math.degrees(math.pi / 2 - 0.5), abs=0.02)
    att = b.frames("ATTITUDE")[-1][1]
    assert att["yaw"] == pytest.approx(math.pi / 2 - 0.5, abs=1e-3)
    imu = b.frames("RAW_IMU")[-1][1]
    assert imu["zacc"] == pytest.approx(-G_MARS * 1000 / 9.80665, abs=40)   # FRD: up-pointing specific force is -z
    assert abs(imu["xacc"]) < 40 and abs(imu["zgyro"]) < 30
    sys_ = b.frames("SYS_STATUS")[-1][1]
    assert sys_["voltage_battery"] == pytest.approx(8400, abs=50) and 0 <= sys_["battery_remaining"] <= 100
    bs = b.frames("BATTERY_STATUS")[-1][1]
    assert bs["voltages"][0] == pytest.approx(sys_["voltage_battery"], abs=20) and bs["voltages"][1] == 0xFFFF
    assert b.frames("GPS_RAW_INT")[-1][1]["fix_type"] == 3


# ----------------------------------------------------------------------------- fault hooks
def test_reply_and_content_faults(b):
    with pytest.raises(ValueError, match="reply fault"):
        b.dev.set_reply_fault("ack_lost", 1.0)
    b.dev.set_reply_fault("ack_missing", 1.0)
    assert b.cmd(176, 1.0, 15.0) is None and b.dev.mode == RoverMode.GUIDED     # obeyed, not acknowledged
    b.dev.set_reply_fault("ack_missing", 0.0)
    b.dev.set_reply_fault("ack_wrong", 1.0)
    for _ in range(6):
        b.cmd(400, 1.0)
    wrong = [f for _, f in b.frames("COMMAND_ACK") if f["command"] != 400 or f["result"] != MavResult.ACCEPTED]
    assert len(wrong) == 6 and {f["command"] for f in wrong} <= {400, 401}
    b.dev.set_reply_fault("ack_wrong", 0.0)
    b.dev.set_reply_fault("bad_content", 1.0)
    for mid in (0, 30, 32, 33, 1, 27, 147):
        b.cmd(512, float(mid))
    assert b.frames("HEARTBEAT")[-1][1]["custom_mode"] == 77
    assert math.isnan(b.frames("ATTITUDE")[-1][1]["roll"])
    assert b.frames("GLOBAL_POSITION_INT")[-1][1]["lat"] == 950_000_000
    assert b.frames("SYS_STATUS")[-1][1]["voltage_battery"] == 60000
    assert abs(b.frames("RAW_IMU")[-1][1]["xacc"]) >= 16000


def test_parameters_are_validated(b):
    w = b.w
    for kw, match in ((dict(sysid=0), "sysid"), (dict(vehicle_type="plane"), "vehicle_type"),
                      (dict(initial_mode="FLY"), "initial_mode"), (dict(guid_timeout_s=0), "guid_timeout_s"),
                      (dict(home=(95, 0, 0)), "home"), (dict(wire_version=3), "wire_version"),
                      (dict(default_rates_hz={"HEARTBEAT": 1}), "default_rates_hz")):
        with pytest.raises(ValueError, match=match):
            VirtualArduRover(sd.virtual_rover("skidsteer", world=w, name=f"x{len(match)}"), **kw)
    with pytest.raises(TypeError, match="SimRover"):
        VirtualArduRover(object())


# ----------------------------------------------------------------------------- links: sim://, pty, MAVLink 1
def test_sim_url_streams_and_link_faults():
    w = sd.flat_world(size_m=12.0, cell_size_m=0.1, physics_dt_s=0.005)
    with attach_ardurover("ardu-url", world=w, baud=57600,
                          default_rates_hz={"ATTITUDE": 10.0}) as att:
        port = serial.serial_for_url(att.url, timeout=0.05)
        data = b""
        while w.time_s < 2.0:
            data += port.read(4096)
        frames = FrameParser().feed(data)
        names = [f.name for f in frames]
        assert names.count("HEARTBEAT") in (2, 3) and 18 <= names.count("ATTITUDE") <= 21
        att.inject(BitFlips(rate=0.02, direction="to_host", start_s=w.time_s))
        p = FrameParser()
        t0 = w.time_s
        while w.time_s < t0 + 2.0:
            p.feed(port.read(4096))
        assert att.injector.counts["flipped_bits"] > 0 and p.stats.bad_crc > 0 and p.stats.frames > 5
        port.close()
    assert isinstance(sd.create_device("mavlink", sd.virtual_rover("skidsteer", world=w, name="reg")),
                      VirtualArduRover)


def test_mavlink1_device():
    b = Bench(wire_version=1, default_rates_hz={"ATTITUDE": 5.0})
    raw = []
    while b.t < 1.0:
        b.w.advance(0.01)
        raw += [fb for _, fb in b.dev.emit(b.t)]
    assert raw and all(fb[0] == 0xFE for fb in raw)
    assert [f.version for f in FrameParser().feed(b"".join(raw))] == [1] * len(raw)


def test_served_on_a_pty_in_real_time():
    dev = open_ardurover_pty("skidsteer", world=sd.flat_world(size_m=12.0, cell_size_m=0.1), baud=115200)
    try:
        port = serial.Serial(dev.path, timeout=0.05)
        req = v2_frame(76, trim(command_long_payload(1, 1, 512, 0, 0.0)), seq=0, sysid=255, compid=190,
                       crc_extra=152)
        port.write(req)
        p = FrameParser()
        got = []
        end = time.monotonic() + 3.0
        while time.monotonic() < end and not any(f.name == "HEARTBEAT" for f in got):
            got += p.feed(port.read(256))
        port.close()
        names = [f.name for f in got]
        assert "COMMAND_ACK" in names and "HEARTBEAT" in names
    finally:
        dev.close()
    assert np.isfinite(dev.clock.now())
