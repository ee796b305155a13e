"""The virtual RoboClaw bus, the fault injector, the simulated wire, sim:// and the pty server.

Byte vectors are built here from the protocol specification — the CRC loop as printed in the RoboClaw
manual and packets assembled field by field — plus the two vectors the manual itself gives; never with
drivers.roboclaw_codec (which the device model uses to answer).
"""
import io
import math
import os
import struct
import termios
import threading

import numpy as np
import pytest
import serial

import sim.devices as sd
from drivers.clock import ManualClock
from drivers.roboclaw import MotorChannel
from drivers.roboclaw_codec import LegacyStatusFlags, StatusFlags
from sim.devices.faults import (BitFlips, Disconnect, DropFrames, FaultInjector, Latency, SecondOpener, Silence,
                                Stall, TruncateFrames, UsbLatencyTimer, VirtualLink)
from sim.devices.pty import PtyServer, RealtimeClock, open_pty_device, serve_pty
from sim.devices.roboclaw import DEFAULT_FIRMWARE, SimSteering, VirtualRoboClawBus

CPR = 5500                       # configs/rovers/osr.yaml encoder_counts_per_rev


# ----------------------------------------------------------------------------- the specification, by hand
def crc16(data: bytes) -> int:
    """The manual's CRC loop, verbatim in spirit: crc ^= byte << 8, then 8 shift / xor 0x1021 steps."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def wr(addr, cmd, data=b""):
    pkt = bytes([addr, cmd]) + data
    c = crc16(pkt)
    return pkt + bytes([c >> 8, c & 0xFF])


def rd(addr, cmd):
    return bytes([addr, cmd])


def reply(addr, cmd, data):
    c = crc16(bytes([addr, cmd]) + data)
    return data + bytes([c >> 8, c & 0xFF])


def u32(v):
    return struct.pack(">I", v)


def s32(v):
    return struct.pack(">i", v)


def test_oracle_reproduces_the_manual():
    assert crc16(b"123456789") == 0x31C3
    assert wr(0x80, 32, b"\x40\x00") == bytes.fromhex("80 20 40 00 56 32")
    assert reply(0x80, 16, u32(1000) + b"\x00") == bytes.fromhex("00 00 03 e8 00 71 36")


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture
def bench():
    w = sd.flat_world(size_m=20.0, cell_size_m=0.1, physics_dt_s=0.01)
    r = sd.virtual_rover("osr", world=w)
    bus = VirtualRoboClawBus(r)
    return w, r, bus


def send(bus, w, data, dt=0.0):
    return bus.receive(data, w.time_s + dt)


def wheel(bus, name):
    return bus.layout.names.index(name)


# ----------------------------------------------------------------------------- device behaviour
def test_read_encoder_is_the_manual_vector(bench):
    w, r, bus = bench
    bus.set_encoder_count("front_left", 1000)            # 0x80 M1 in the OSR mapping
    assert send(bus, w, bytes.fromhex("80 10")) == [bytes.fromhex("00 00 03 e8 00 71 36")]


def test_duty_write_is_acked_and_turns_only_its_wheel(bench):
    w, r, bus = bench
    assert send(bus, w, bytes.fromhex("80 20 40 00 56 32")) == [b"\xff"]
    i = wheel(bus, "front_left")
    assert bus.targets_pps()[i] == pytest.approx(16384 / 32767 * bus.max_pps)
    w.advance(1.0)
    speed = r.model.wheel_speed_radps
    assert speed[i] > 1.0 and np.all(speed[np.arange(6) != i] == 0.0)


def test_bad_crc_gets_no_answer_and_no_action(bench):
    w, r, bus = bench
    assert send(bus, w, bytes.fromhex("80 20 40 00 56 33")) == []
    assert not bus.targets_pps().any() and bus.parser.stats.crc_errors == 1
    # the next good packet is understood (resynchronisation)
    assert send(bus, w, rd(0x80, 21)) == [reply(0x80, 21, DEFAULT_FIRMWARE.encode() + b"\n\x00")]


def test_version_and_multidrop(bench):
    w, r, bus = bench
    assert send(bus, w, rd(0x83, 21)) == []               # nobody at 0x83: silence
    assert send(bus, w, rd(0x81, 21)) == [reply(0x81, 21, DEFAULT_FIRMWARE.encode() + b"\n\x00")]
    # two requests in one chunk, two controllers: each answers its own, in order
    out = send(bus, w, rd(0x80, 15) + rd(0x82, 15))
    assert out == [reply(0x80, 15, b"\x00"), reply(0x82, 15, b"\x00")]


def test_speed_commands_set_targets_per_motor(bench):
    w, r, bus = bench
    assert send(bus, w, wr(0x81, 37, s32(1000) + s32(-500))) == [b"\xff"]
    t = bus.targets_pps()
    assert t[wheel(bus, "rear_left")] == 1000 and t[wheel(bus, "rear_right")] == -500
    assert send(bus, w, wr(0x82, 35, s32(700))) == [b"\xff"]
    assert send(bus, w, wr(0x82, 36, s32(-300))) == [b"\xff"]
    t = bus.targets_pps()
    assert t[wheel(bus, "middle_right")] == 700 and t[wheel(bus, "front_right")] == -300
    assert send(bus, w, wr(0x80, 38, u32(500) + s32(2000))) == [b"\xff"]
    assert send(bus, w, wr(0x80, 39, u32(500) + s32(-2000))) == [b"\xff"]


def test_speed_with_acceleration_ramps(bench):
    w, r, bus = bench
    assert send(bus, w, wr(0x80, 40, u32(1000) + s32(2000) + s32(2000))) == [b"\xff"]
    w.advance(0.5)
    out = bus.outputs_radps()[wheel(bus, "front_left")] * CPR / (2 * math.pi)
    assert out == pytest.approx(500.0, abs=1e-6)         # 1000 pulses/s² for 0.5 s
    w.advance(2.0)
    out = bus.outputs_radps()[wheel(bus, "front_left")] * CPR / (2 * math.pi)
    assert out == pytest.approx(2000.0)


def test_encoder_and_speed_replies_follow_the_true_wheel(bench):
    w, r, bus = bench
    send(bus, w, wr(0x80, 37, s32(-2000) + s32(0)))       # front_left backwards
    w.advance(2.0)
    i = wheel(bus, "front_left")
    expected = int(math.floor(r.model.wheel_angle_rad[i] * CPR / (2 * math.pi))) % (1 << 32)
    (rep,) = send(bus, w, rd(0x80, 16))
    assert rep == reply(0x80, 16, u32(expected) + bytes([0x02 | 0x01]))   # backward, and it underflowed below 0
    (rep,) = send(bus, w, rd(0x80, 16))
    assert rep[4] == 0x02                                 # wrap bits clear after reading
    (rep,) = send(bus, w, rd(0x80, 18))
    pps = int(round(r.model.wheel_speed_radps[i] * CPR / (2 * math.pi)))
    assert pps == -2000 and rep == reply(0x80, 18, s32(pps) + b"\x01")
    (rep,) = send(bus, w, rd(0x80, 78))
    m2 = int(math.floor(r.model.wheel_angle_rad[wheel(bus, "middle_left")] * CPR / (2 * math.pi))) % (1 << 32)
    assert rep == reply(0x80, 78, u32(expected) + u32(m2))


def test_encoder_wrap_sets_overflow_once(bench):
    w, r, bus = bench
    bus.set_encoder_count("rear_left", (1 << 32) - 10)
    send(bus, w, wr(0x81, 37, s32(1000) + s32(0)))
    w.advance(0.5)
    (rep,) = send(bus, w, rd(0x81, 16))
    count = int.from_bytes(rep[:4], "big")
    assert 0 < count < 1000 and rep[4] & 0x04 and not rep[4] & 0x02
    (rep,) = send(bus, w, rd(0x81, 16))
    assert not rep[4] & 0x04


def test_serial_timeout_stops_the_silent_controller_only(bench):
    w, r, bus = bench
    assert send(bus, w, wr(0x80, 14, b"\x05")) == [b"\xff"]
    assert send(bus, w, rd(0x80, 15)) == [reply(0x80, 15, b"\x05")]
    send(bus, w, wr(0x80, 37, s32(1000) + s32(1000)))
    send(bus, w, wr(0x81, 37, s32(1000) + s32(1000)))
    w.advance(0.4)
    send(bus, w, rd(0x80, 21))                            # any valid packet feeds the timeout
    w.advance(0.4)
    assert bus.targets_pps()[wheel(bus, "front_left")] == 1000
    w.advance(0.2)                                        # 0.6 s of silence > 0.5 s
    t = bus.targets_pps()
    assert t[wheel(bus, "front_left")] == 0 and t[wheel(bus, "middle_left")] == 0
    assert t[wheel(bus, "rear_left")] == 1000             # 0x81 has no timeout set
    assert bus.controllers[0x80].timeout_stops == 1
    w.advance(2.0)
    assert r.model.wheel_speed_radps[wheel(bus, "front_left")] == 0.0


def test_reboot_is_silent_then_forgets_the_timeout_and_zeroes_counts(bench):
    w, r, bus = bench
    send(bus, w, wr(0x80, 14, b"\x05"))
    bus.set_encoder_count("front_left", 12345)
    bus.reboot(0x80)
    assert send(bus, w, rd(0x80, 21)) == []               # booting
    assert send(bus, w, rd(0x81, 21)) != []               # the others are fine
    w.advance(bus.boot_s + 0.01)
    assert send(bus, w, rd(0x80, 15)) == [reply(0x80, 15, b"\x00")]
    assert send(bus, w, rd(0x80, 78)) == [reply(0x80, 78, u32(0) + u32(0))]


def test_write_settings_keeps_the_timeout_across_a_reboot(bench):
    w, r, bus = bench
    send(bus, w, wr(0x82, 14, b"\x07"))
    assert send(bus, w, wr(0x82, 94, u32(0x12345678))) == []          # wrong key: ignored
    assert send(bus, w, wr(0x82, 94, bytes.fromhex("e2 2e ab 7a"))) == [b"\xff"]
    bus.reboot(0x82)
    w.advance(bus.boot_s + 0.01)
    assert send(bus, w, rd(0x82, 15)) == [reply(0x82, 15, b"\x07")]


def test_inter_byte_gap_discards_a_partial_packet(bench):
    w, r, bus = bench
    pkt = wr(0x80, 37, s32(100) + s32(100))
    assert bus.receive(pkt[:4], 1.000) == []
    assert bus.receive(pkt[4:], 1.020) == []              # 20 ms gap > 10 ms: discarded
    assert bus.receive(pkt[:4], 2.000) == []
    assert bus.receive(pkt[4:], 2.005) == [b"\xff"]


def test_status_words_both_widths(bench):
    w, r, bus = bench
    assert send(bus, w, rd(0x80, 90)) == [reply(0x80, 90, u32(0))]
    bus.set_error_flags(int(StatusFlags.M1_DRIVER_FAULT), 0x80)
    assert send(bus, w, rd(0x80, 90)) == [reply(0x80, 90, u32(0x40))]
    bus.set_error_flags(0, 0x80)
    w2 = sd.flat_world(size_m=10.0, physics_dt_s=0.01)
    legacy = VirtualRoboClawBus(sd.virtual_rover("osr", world=w2), status_bytes=2)
    legacy.set_error_flags(int(LegacyStatusFlags.TEMPERATURE_WARNING), 0x81)
    assert legacy.receive(rd(0x81, 90), 0.0) == [reply(0x81, 90, b"\x10\x00")]


def test_driver_fault_flag_stops_that_controller(bench):
    w, r, bus = bench
    send(bus, w, wr(0x80, 37, s32(1000) + s32(1000)))
    send(bus, w, wr(0x81, 37, s32(1000) + s32(1000)))
    bus.set_error_flags(int(StatusFlags.M2_DRIVER_FAULT), 0x80)
    t = bus.targets_pps()
    assert t[wheel(bus, "front_left")] == 0 and t[wheel(bus, "rear_left")] == 1000


def test_battery_current_temperature_replies(bench):
    w, r, bus = bench
    tel = r.read_telemetry()
    dv = int(round(tel.battery.voltage_v * 10))
    w.advance(0.0)
    assert send(bus, w, rd(0x80, 24)) == [reply(0x80, 24, struct.pack(">H", dv))]
    assert send(bus, w, rd(0x80, 49)) == [reply(0x80, 49, struct.pack(">hh", 0, 0))]
    assert send(bus, w, rd(0x80, 82)) == [reply(0x80, 82, struct.pack(">H", 250))]
    send(bus, w, wr(0x80, 37, s32(3000) + s32(-3000)))
    w.advance(1.0)
    (rep,) = send(bus, w, rd(0x80, 49))
    i1, i2 = struct.unpack(">hh", rep[:4])
    cur = r.read_telemetry().motor_current_a
    assert i1 > 0 > i2 and abs(i1) == pytest.approx(cur[0] * 100, abs=1)


def test_ack_faults_still_execute_the_write(bench):
    w, r, bus = bench
    bus.set_reply_fault("ack_missing", 1.0)
    assert send(bus, w, wr(0x80, 37, s32(100) + s32(100))) == []
    assert bus.targets_pps()[0] == 100
    bus.set_reply_fault("ack_missing", 0.0)
    bus.set_reply_fault("ack_wrong", 1.0)
    (rep,) = send(bus, w, wr(0x80, 37, s32(200) + s32(200)))
    assert len(rep) == 1 and rep != b"\xff"
    with pytest.raises(ValueError, match="reply fault"):
        bus.set_reply_fault("nope", 1.0)


def test_bad_content_keeps_a_valid_crc(bench):
    w, r, bus = bench
    bus.set_reply_fault("bad_content", 1.0)
    (rep,) = send(bus, w, rd(0x80, 18))
    assert rep == reply(0x80, 18, rep[:5])               # CRC valid...
    assert abs(struct.unpack(">i", rep[:4])[0]) == 1 << 30   # ...value absurd
    assert send(bus, w, rd(0x80, 21)) == [reply(0x80, 21, DEFAULT_FIRMWARE.encode() + b"\n\x00")]  # not a measurement


def test_mapping_with_a_mirrored_motor():
    w = sd.flat_world(size_m=10.0, physics_dt_s=0.01)
    m = [MotorChannel(n, 0x80 + i // 2, 1 + i % 2, -1 if "right" in n else 1)
         for i, n in enumerate(("front_left", "middle_left", "rear_left", "front_right", "middle_right", "rear_right"))]
    r = sd.virtual_rover("osr", world=w)
    bus = VirtualRoboClawBus(r, mapping=m)
    bus.receive(wr(0x81, 37, s32(0) + s32(-1000)), 0.0)  # 0x81 M2 = front_right, mirrored
    assert bus.targets_pps()[wheel(bus, "front_right")] == 1000
    w.advance(1.0)
    assert r.model.wheel_speed_radps[wheel(bus, "front_right")] > 0


def test_steering_backend_turns_the_corners(bench):
    w, r, bus = bench
    st = SimSteering(bus)
    target = np.array([0.3, 0.0, -0.3, 0.3, 0.0, -0.3])
    st.set_steer(target)
    w.advance(3.0)
    np.testing.assert_allclose(st.read_steer(), target, atol=1e-6)


def test_validation(bench):
    w, r, bus = bench
    with pytest.raises(TypeError, match="SimRover"):
        VirtualRoboClawBus(object())
    with pytest.raises(ValueError, match="status_bytes"):
        VirtualRoboClawBus(r, status_bytes=3)
    with pytest.raises(ValueError, match="addr"):
        bus.reboot(0x87)
    with pytest.raises(ValueError, match="wheel"):
        bus.freeze_encoder("tail")


def test_encoder_freeze_resumes_from_the_frozen_value(bench):
    w, r, bus = bench
    send(bus, w, wr(0x80, 37, s32(2000) + s32(0)))
    w.advance(1.0)
    bus.freeze_encoder("front_left")
    (a,) = send(bus, w, rd(0x80, 16))
    w.advance(0.5)
    (b,) = send(bus, w, rd(0x80, 16))
    assert a[:4] == b[:4]
    assert send(bus, w, rd(0x80, 18)) == [reply(0x80, 18, s32(0) + b"\x00")]
    bus.freeze_encoder("front_left", False)
    w.advance(0.1)
    (c,) = send(bus, w, rd(0x80, 16))
    assert 0 < int.from_bytes(c[:4], "big") - int.from_bytes(a[:4], "big") <= 2000 * 0.1 + 2


# ----------------------------------------------------------------------------- fault injector
def test_injector_is_deterministic_per_seed():
    def run(seed):
        inj = FaultInjector([BitFlips(rate=1e-2), DropFrames(prob=0.1), TruncateFrames(prob=0.1)],
                            rng=np.random.default_rng(seed))
        return [inj.process(bytes(range(20)), 0.001 * k, "to_host") for k in range(300)]

    assert run(1) == run(1) and run(1) != run(2)


def test_bit_flip_rate():
    inj = FaultInjector([BitFlips(rate=1e-3)], rng=np.random.default_rng(0))
    data = bytes(200000)
    ((t, out),) = inj.process(data, 0.0, "to_device")
    flipped = sum(bin(b).count("1") for b in out)
    assert flipped == inj.counts["flipped_bits"]
    assert 200 - 5 * math.sqrt(200) < flipped < 200 + 5 * math.sqrt(200)


def test_stream_faults_shapes():
    rng = np.random.default_rng(0)
    inj = FaultInjector([Silence(start_s=1.0, end_s=2.0), Stall(start_s=3.0, end_s=3.4),
                         UsbLatencyTimer(start_s=5.0, end_s=6.0), Latency(delay_s=0.3, start_s=7.0, end_s=8.0),
                         TruncateFrames(prob=1.0, start_s=9.0, end_s=10.0),
                         SecondOpener(steal_prob=1.0, start_s=11.0, end_s=12.0),
                         DropFrames(prob=1.0, start_s=13.0, end_s=14.0, direction="to_device")], rng=rng)
    d = b"\x01\x02\x03\x04"
    assert inj.process(d, 0.5, "to_host") == [(0.5, d)]
    assert inj.process(d, 1.5, "to_device") == []
    assert inj.process(d, 3.1, "to_host") == [(3.4, d)]
    assert inj.process(d, 5.001, "to_host") == [(pytest.approx(5.008), d)]      # next 16 ms tick
    assert inj.process(d, 7.0, "to_host") == [(pytest.approx(7.3), d)]
    assert inj.process(d, 7.0, "to_device") == [(7.0, d)]                        # latency is host-bound
    ((t, cut),) = inj.process(d, 9.5, "to_host")
    assert 1 <= len(cut) < len(d) and d.startswith(cut)
    assert inj.process(d, 11.5, "to_host") == [] and inj.process(d, 11.5, "to_device") == [(11.5, d)]
    assert inj.process(d, 13.5, "to_device") == [] and inj.process(d, 13.5, "to_host") == [(13.5, d)]


def test_fault_validation():
    with pytest.raises(ValueError, match="rate"):
        BitFlips(rate=2.0)
    with pytest.raises(ValueError, match="direction"):
        Silence(direction="sideways")
    with pytest.raises(ValueError, match="start_s"):
        Silence(start_s=2.0, end_s=1.0)
    with pytest.raises(ValueError, match="end_s must be finite"):
        Stall(start_s=1.0)
    with pytest.raises(TypeError):
        FaultInjector([object()])


# ----------------------------------------------------------------------------- the wire
class Echo:
    def receive(self, data, t_s):
        return [bytes(data) * 3]          # 2 bytes in, 6 out


def test_link_models_wire_time_and_bus_turnaround():
    c = ManualClock()
    link = VirtualLink(Echo(), clock=c, baud=115200)
    link.host_write(b"ab", 0.0)
    assert link.host_read(100, 0.0) == b""
    t_ready = (2 + 6) * 10 / 115200                      # 8N1: 10 bits a byte, request then reply
    assert link.next_event_s() == pytest.approx(2 * 10 / 115200)
    assert link.host_read(100, t_ready - 1e-9) == b""
    assert link.host_read(100, t_ready) == b"ababab"
    # back-to-back requests: replies queue on the half-duplex bus
    link.host_write(b"ab", 1.0)
    link.host_write(b"cd", 1.0)
    assert link.host_read(100, 1.0 + 8 * 10 / 115200) == b"ababab"
    assert link.host_read(100, 1.0 + 14 * 10 / 115200) == b"cdcdcd"


def test_link_flush_keeps_bytes_still_on_the_wire():
    c = ManualClock()
    link = VirtualLink(Echo(), clock=c, baud=9600)
    link.host_write(b"ab", 0.0)
    link.flush_host_input(0.0001)
    assert link.host_in_waiting(1.0) == 6


# ----------------------------------------------------------------------------- sim://
def test_sim_url_reaches_the_bus_and_reads_advance_the_world():
    w = sd.flat_world(size_m=10.0, physics_dt_s=0.001)
    att = sd.attach_sim("vr-step", world=w, baud=115200)
    port = serial.serial_for_url(att.url, timeout=0.03)
    t0 = w.clock.now()
    port.write(rd(0x80, 21))
    rep = port.read(100)                                 # waits (advancing the world) for the full timeout
    assert rep == reply(0x80, 21, DEFAULT_FIRMWARE.encode() + b"\n\x00")
    assert w.clock.now() - t0 == pytest.approx(0.03, abs=0.0015)
    port.write(rd(0x80, 16))
    t1 = w.clock.now()
    assert len(port.read(7)) == 7                        # returns as soon as the 9 wire bytes are through
    assert w.clock.now() - t1 == pytest.approx(9 * 10 / 115200, abs=0.0011)
    port.close()
    att.close()


def test_sim_disconnect_fault_returns_under_a_new_name_with_its_alias():
    w = sd.flat_world(size_m=10.0, physics_dt_s=0.01)
    att = sd.attach_sim("vr-plug", world=w, aliases=("by-id-roboclaw",))
    att.inject(Disconnect(start_s=1.0, end_s=1.5))
    port = serial.serial_for_url("sim://by-id-roboclaw", timeout=0.01, exclusive=True)
    with pytest.raises(serial.SerialException, match="Could not exclusively lock port"):
        serial.serial_for_url("sim://vr-plug", exclusive=True)
    w.advance(1.0)
    with pytest.raises(serial.SerialException, match="returned no data"):
        port.read(1)
    with pytest.raises(serial.SerialException, match=r"Errno 5"):
        port.write(b"x")
    assert sd.urls("vr-plug*") == []
    with pytest.raises(serial.SerialException, match="no virtual device"):
        serial.serial_for_url("sim://by-id-roboclaw")
    w.advance(0.5)
    assert sd.urls("vr-plug*") == ["sim://vr-plug~1"]
    port2 = serial.serial_for_url("sim://by-id-roboclaw", timeout=0.01, exclusive=True)
    port2.write(rd(0x80, 15))
    assert port2.read(3) == reply(0x80, 15, b"\x00")
    port.close()
    port2.close()
    sd.unregister("vr-plug~1")


def test_dead_host_device_backstop_on_sim_time():
    """Nothing but the world runs: the controllers' own timeout stops the rover."""
    w = sd.flat_world(size_m=20.0, physics_dt_s=0.01)
    att = sd.attach_sim("vr-dead", world=w)
    port = serial.serial_for_url(att.url, timeout=0.01)
    for a in (0x80, 0x81, 0x82):
        port.write(wr(a, 14, b"\x05"))
        port.write(wr(a, 37, s32(2000) + s32(2000)))
    t_last = w.clock.now()
    port.read(100)
    stopped = []
    sd.run_stepped(w, None, 1.0, spin=False, watchdog=False,
                   until=lambda t: not att.device.targets_pps().any() and not stopped.append(t))
    assert stopped and stopped[0] - t_last <= 0.5 + 0.011
    port.close()
    att.close()


# ----------------------------------------------------------------------------- pty
def test_pty_is_raw_and_carries_bytes_unchanged(tmp_path):
    dev = open_pty_device("roboclaw", "osr", baud=None, symlink=str(tmp_path / "usb-Roboclaw-if00"),
                          world=sd.flat_world(size_m=10.0))
    try:
        fd = os.open(dev.server.slave_path, os.O_RDWR | os.O_NOCTTY)
        try:
            attrs = termios.tcgetattr(fd)
        finally:
            os.close(fd)
        assert not attrs[3] & (termios.ICANON | termios.ECHO | termios.ISIG)
        p = serial.serial_for_url(dev.path, timeout=0.5, exclusive=True)
        p.write(rd(0x80, 21))                            # the reply carries LF and NUL
        assert p.read(len(DEFAULT_FIRMWARE) + 4) == reply(0x80, 21, DEFAULT_FIRMWARE.encode() + b"\n\x00")
        p.write(wr(0x80, 14, b"\x0d"))                   # CR in the data (cooked mode would map it)
        assert p.read(1) == b"\xff"
        p.write(rd(0x80, 15))
        assert p.read(3) == reply(0x80, 15, b"\x0d")
        first = dev.server.slave_path
        dev.server.unplug()
        assert not os.path.lexists(dev.path)             # the by-id style link is gone
        with pytest.raises(serial.SerialException):
            p.read(1)
            p.write(b"x")
        p.close()
        dev.server.replug()
        assert dev.server.slave_path != first and os.path.realpath(dev.path) == dev.server.slave_path
        p = serial.serial_for_url(dev.path, timeout=0.5)
        p.write(rd(0x82, 21))
        assert p.read(len(DEFAULT_FIRMWARE) + 4)[-4:-2] == b"\n\x00"
        p.close()
    finally:
        dev.close()


def test_serve_pty_prints_the_path_and_serves_until_stopped():
    out = io.StringIO()
    stop = threading.Event()
    def announce(path, what):
        out.write(f"{path}\n# {what}\n")

    th = threading.Thread(target=serve_pty, kwargs=dict(protocol="roboclaw", rover="osr", on_ready=announce,
                                                        stop_event=stop),
                          daemon=True)
    th.start()
    for _ in range(500):
        if out.getvalue():
            break
        threading.Event().wait(0.01)
    path = out.getvalue().splitlines()[0]
    assert path.startswith("/dev/pts/")
    p = serial.serial_for_url(path, timeout=0.5)
    p.write(rd(0x81, 15))
    assert p.read(3) == reply(0x81, 15, b"\x00")
    p.close()
    stop.set()
    th.join(5)
    assert not th.is_alive() and not os.path.exists(path)
    with pytest.raises(ValueError, match="protocol"):
        sd.create_device("smoke-signals", None)


def test_pty_server_stop_is_idempotent_and_cleans_up(tmp_path):
    link = VirtualLink(Echo(), clock=RealtimeClock())
    srv = PtyServer(link, symlink=str(tmp_path / "dev"))
    path = srv.start()
    assert os.path.islink(path)
    srv.stop()
    assert not os.path.lexists(path)
