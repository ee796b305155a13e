"""`rover drive`: keyboard teleop (hil/teleop.py, hil/cmd_drive.py).

* Key decoding against the escape sequences of the terminal specification (ECMA-48 CSI ``ESC [ … final``,
  xterm's SS3 ``ESC O A`` application-mode arrows and ``ESC [ 1 ; 5 A`` modifier form), split anywhere.
* Setpoint clamping: every clamped twist passes the driver's own ``WheelLayout.check_twist`` (the
  driver would raise otherwise), for every packaged profile and a steering-limited layout.
* Sessions on the virtual RoboClaw bus over ``sim://`` in step mode (the driver single-threaded on
  simulated time, deterministic): the simulated rover's ground truth (``SimRover.truth()``) shows it
  moved the way the keys asked; deadman, e-stop and re-arm, quit, a pulled port (LINK_LOST) and recovery.
* The CLI in-process over ``sim://`` in follow mode (threaded driver, real time) and its one-sentence
  errors (exit 2).
* The real thing: ``rover drive`` in a child process whose terminal is a pty, driving the virtual bus
  served on another pty; keys typed into the terminal, a pulled and replugged port, Esc, SIGTERM; the
  terminal's settings are restored.
"""
import contextlib
import io
import math
import os
import signal
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import serial
from hypothesis import given, settings
from hypothesis import strategies as st

import nav
import sim.devices as sd
from drivers import Fault, Telemetry, WheelLayout
from drivers.base import BatterySample, ImuSample
from drivers.errors import CommandOutOfRange, LinkLost
from drivers.roboclaw import RoboClawRover
from hil import teleop
from hil.teleop import (KeyDecoder, RawTerminal, ScriptKeys, Teleop, Terminated, clamp_twist, parse_key_script,
                        render_panel)

ROOT = Path(__file__).resolve().parents[2]
OSR = nav.load_rover("osr")
OSR_LAYOUT = WheelLayout.from_profile(OSR)
_n = [0]


# ----------------------------------------------------------------------------- key decoding
# Encodings from the terminal specification (ECMA-48 / xterm control sequences), written out here.
ENCODINGS = {
    "up": [b"\x1b[A", b"\x1bOA", b"\x1b[1;5A", b"\x1b[1;2A"],
    "down": [b"\x1b[B", b"\x1bOB"],
    "right": [b"\x1b[C", b"\x1bOC", b"\x1b[1;3C"],
    "left": [b"\x1b[D", b"\x1bOD"],
    "unknown": [b"\x1b[3~", b"\x1b[15~", b"\x1b[200~"],   # delete, F5, bracketed-paste start
    "f1": [b"\x1bOP"],
    "w": [b"w"], "W": [b"W"], "space": [b" "], "enter": [b"\r", b"\n"], "ctrl-c": [b"\x03"],
    "ctrl-d": [b"\x04"], "backspace": [b"\x7f"], "q": [b"q"], "e": [b"e"], "tab": [b"\t"],
}
KEY_BYTES = [(k, b) for k, bs in ENCODINGS.items() for b in bs]


def test_plain_keys_and_arrows():
    d = KeyDecoder()
    for key, data in KEY_BYTES:
        assert d.feed(data, 0.0) == [key], data
        assert not d.pending
    assert d.feed(b"wasd \x1b[A\x1bOD", 0.0) == ["w", "a", "s", "d", "space", "up", "left"]


@settings(max_examples=80)
@given(st.lists(st.sampled_from(KEY_BYTES), min_size=1, max_size=12), st.data())
def test_sequences_split_anywhere_decode_the_same(keys, data):
    """However the bytes are cut into reads (all within the Esc timeout), the keys are the same."""
    stream = b"".join(b for _, b in keys)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    d = KeyDecoder(esc_timeout_s=0.05)
    out, prev = [], 0
    for i, c in enumerate(cuts + [len(stream)]):
        out += d.feed(stream[prev:c], 0.001 * i)
        prev = c
    assert out == [k for k, _ in keys]
    assert not d.pending


def test_lone_esc_waits_for_the_timeout_then_is_esc():
    d = KeyDecoder(esc_timeout_s=0.05)
    assert d.feed(b"\x1b", 10.0) == [] and d.pending
    assert d.flush(10.03) == []                    # could still be an arrow key
    assert d.deadline_s == pytest.approx(10.05)
    assert d.flush(10.06) == ["esc"] and not d.pending


def test_partial_sequence_completed_in_time_is_an_arrow():
    d = KeyDecoder(esc_timeout_s=0.05)
    assert d.feed(b"\x1b", 0.0) == []
    assert d.feed(b"[", 0.01) == []
    assert d.flush(0.02) == []
    assert d.feed(b"1;5", 0.03) == []
    assert d.feed(b"A", 0.04) == ["up"]


def test_partial_sequence_that_times_out_is_esc_then_its_bytes():
    d = KeyDecoder(esc_timeout_s=0.05)
    assert d.feed(b"\x1b[", 0.0) == []
    assert d.flush(0.1) == ["esc", "["]            # e-stop side: never an arrow guessed from half a sequence


def test_esc_followed_by_a_key_is_esc_at_once_and_a_new_esc_gets_its_own_timeout():
    d = KeyDecoder(esc_timeout_s=0.05)
    assert d.feed(b"\x1bw", 0.0) == ["esc", "w"]   # Alt+w / Esc then w: no waiting
    assert d.feed(b"\x1b\x1b", 1.0) == ["esc"] and d.pending
    assert d.feed(b"x\x1b", 1.04) == ["esc", "x"] and d.pending   # the second pending ESC arrived at 1.04
    assert d.flush(1.06) == []
    assert d.flush(1.1) == ["esc"]


def test_garbage_control_sequence_does_not_wedge_the_decoder():
    d = KeyDecoder()
    out = d.feed(b"\x1b[" + b"1;" * 40, 0.0)
    assert out[:3] == ["esc", "[", "1"] and not d.pending      # too long for a sequence: Esc, then bytes
    assert d.feed(b"w", 0.0) == ["w"]
    assert d.feed(b"\x1b[\x01w", 2.0) == ["esc", "[", "ctrl-a", "w"]   # a control byte inside: not a sequence


# ----------------------------------------------------------------------------- scripts
def test_key_script_parses_relative_delays_and_names():
    ev = parse_key_script("# bench check\n0.5 w\n0.25 w up  # faster\n\n1 space\n0 ctrl-c\n")
    assert ev == [(0.5, "w"), (0.75, "w"), (0.75, "up"), (1.75, "space"), (1.75, "ctrl-c")]


@pytest.mark.parametrize("text, msg", [("w 0.5", "line 1.*delay"), ("0.5\n", "no key"), ("-1 w", ">= 0"),
                                       ("0.1 w\n0.2 banana", "line 2.*'banana'"), ("nan w", "finite")])
def test_key_script_errors_name_the_line(text, msg):
    with pytest.raises(ValueError, match=msg):
        parse_key_script(text, source="k.txt")


# ----------------------------------------------------------------------------- clamping
def _limited_steer_layout():
    import dataclasses
    return dataclasses.replace(OSR_LAYOUT, max_steer_rad=math.radians(30))


LAYOUTS = [OSR_LAYOUT, WheelLayout.from_profile(nav.load_rover("skidsteer")),
           WheelLayout.from_profile(nav.load_rover("sawppy")), _limited_steer_layout()]


@settings(max_examples=200)
@given(st.sampled_from(range(len(LAYOUTS))), st.floats(-3, 3), st.floats(-6, 6))
def test_clamped_twist_always_passes_the_drivers_check(i, vx, wz):
    lay = LAYOUTS[i]
    cvx, cwz, why = clamp_twist(lay, vx, wz)
    lay.check_twist(cvx, cwz)                          # the driver's own rule: must not raise
    assert abs(cvx) <= abs(vx) + 1e-12 and abs(cwz) <= abs(wz) + 1e-12
    assert cvx * vx >= 0 and cwz * wz >= 0             # never reverses what was asked
    try:
        lay.check_twist(vx, wz)
    except CommandOutOfRange:
        assert why                                     # a limit was applied, and said so
    else:
        assert (cvx, cwz, why) == (vx, wz, "")         # a valid twist is sent unchanged


def test_turning_radius_keeps_the_speed_and_cuts_the_yaw_rate():
    vx, wz, why = clamp_twist(OSR_LAYOUT, 0.1, 0.5)
    assert vx == 0.1 and wz == pytest.approx(0.1 / 0.45) and "turning radius" in why
    assert clamp_twist(OSR_LAYOUT, 0.0, 0.5)[:2] == (0.0, 0.5)      # the OSR can point-turn (steered corners)
    assert clamp_twist(OSR_LAYOUT, 9.0, 0.0)[:2] == (0.35, 0.0)
    no_point = WheelLayout(kind="skid_steer", position_xy_m=[[0.2, 0.2], [-0.2, 0.2], [0.2, -0.2], [-0.2, -0.2]],
                           steerable=[False] * 4, wheel_radius_m=0.05, counts_per_rev=100, max_speed_mps=1.0,
                           max_yaw_rate_radps=1.0, max_accel_mps2=1.0, min_turning_radius_m=0.5)
    assert clamp_twist(no_point, 0.0, 0.5) == (0.0, 0.0, "no point turns")


# ----------------------------------------------------------------------------- sessions on sim:// step mode
class StepRig:
    """The RoboClaw driver single-threaded against the virtual bus on simulated time."""

    def __init__(self):
        _n[0] += 1
        self.name = f"teleop{_n[0]}"
        self.world = sd.flat_world(size_m=30.0, cell_size_m=0.1, physics_dt_s=0.01)
        self.att = sd.attach_sim(self.name, world=self.world, aliases=(f"{self.name}-by-id",))
        self.clock = self.world.clock
        self.rover = RoboClawRover(f"sim://{self.name}-by-id", OSR, clock=self.clock, threaded=False)
        self.rover.open()
        self.truth = self.att.sim_rover.truth
        self.samples = []                              # (t, truth, device targets)
        self.sent = []
        real = self.rover.set_twist

        def recording_set_twist(vx, wz):
            self.sent.append((self.clock.now(), vx, wz))
            real(vx, wz)
        self.rover.set_twist = recording_set_twist

    def run(self, script, hooks=(), **kw):
        """Run a session with a key script; ``hooks`` are (t_s, fn) called once at simulated time t_s."""
        hooks = sorted(hooks, key=lambda h: h[0])
        t0 = self.clock.now()

        def tick():
            now = self.clock.now()
            while hooks and now - t0 >= hooks[0][0]:
                hooks.pop(0)[1]()
            self.rover.spin_once()
            self.rover.poll_watchdog()
            self.samples.append((now - t0, self.truth(), self.att.device.targets_pps().copy()))

        kw.setdefault("arm", True)
        self.out = io.StringIO()
        self.tp = Teleop(self.rover, ScriptKeys(parse_key_script(script), self.clock), self.out, on_tick=tick,
                         tick_s=0.02, **kw)
        return self.tp.run()

    def at(self, t):
        """Truth at (just after) session time t."""
        return next(s[1] for s in self.samples if s[0] >= t)

    def moving_between(self, t0, t1):
        return all(s[2].all() for s in self.samples if t0 <= s[0] <= t1)

    def first_stop_after(self, t):
        return next((s[0] for s in self.samples if s[0] >= t and not s[2].any()), None)

    def close(self):
        self.rover.close()
        self.att.close()


@pytest.fixture
def rig():
    r = StepRig()
    yield r
    r.close()


def _along(a, b):
    """Distance from truth a to truth b along a's heading, and the yaw change."""
    d = np.array([b.x_m - a.x_m, b.y_m - a.y_m])
    return float(d @ [math.cos(a.yaw_rad), math.sin(a.yaw_rad)]), b.yaw_rad - a.yaw_rad


HOLD = "".join("0.4 h\n" for _ in range(8))      # 3.2 s of "keep the setpoint" presses


def test_forward_then_quit_moves_the_rover_forward_and_disarms_and_closes(rig):
    reason = rig.run("0.1 w\n0.15 w\n0.15 up\n" + HOLD + "0.1 q\n")
    assert reason == "quit"
    vx = 3 * OSR_LAYOUT.max_speed_mps / 10
    assert rig.tp.setpoint == (0.0, 0.0)
    dist, dyaw = _along(rig.at(1.0), rig.at(3.5))
    assert 0.8 * vx * 2.5 < dist < 1.05 * vx * 2.5          # the commanded speed, less a little slip
    assert abs(dyaw) < 0.02
    assert all(abs(v - vx) < 1e-9 and w == 0 for t, v, w in rig.sent if t > 1.0)
    assert rig.rover.closed and not rig.rover.armed
    assert not rig.att.device.targets_pps().any()
    assert "armed" in rig.out.getvalue()


def test_steps_reverse_and_turn_both_ways(rig):
    script = ("0.1 s\n0.15 s\n" + "".join("0.4 h\n" for _ in range(4)) + "0.1 space\n"
              "0.5 w\n0.15 w\n0.15 w\n0.15 a\n0.15 a\n" + "".join("0.4 h\n" for _ in range(5))
              + "0.1 d\n0.15 d\n0.15 d\n0.15 d\n" + "".join("0.4 h\n" for _ in range(5)) + "0.1 q\n")
    rig.run(script)
    back, _ = _along(rig.at(0.6), rig.at(1.8))
    assert back < -0.05                                       # s: backwards
    _, yaw_left = _along(rig.at(3.3), rig.at(4.9))
    _, yaw_right = _along(rig.at(5.8), rig.at(7.3))
    assert yaw_left > 0.05 and yaw_right < -0.05               # a: CCW (left), d: CW (right)
    for _, vx, wz in rig.sent:                                 # every command was within the profile's limits
        OSR_LAYOUT.check_twist(vx, wz)


def test_held_keys_stay_within_the_limits_and_say_what_limited_them(rig):
    rig.run("".join("0.11 w\n" for _ in range(15)) + "".join("0.11 a\n" for _ in range(15)) + "0.1 q\n")
    vmax = OSR_LAYOUT.max_speed_mps
    assert max(v for _, v, _ in rig.sent) == pytest.approx(vmax)
    last_t, vx, wz = rig.sent[-1]
    assert vx == pytest.approx(vmax) and wz == pytest.approx(vmax / OSR_LAYOUT.min_turning_radius_m)
    for _, v, w in rig.sent:
        OSR_LAYOUT.check_twist(v, w)
    assert "command failed" not in rig.out.getvalue()


def test_auto_repeat_faster_than_the_step_interval_ramps_at_the_step_rate(rig):
    # 30 Hz auto-repeat for 0.5 s: at most one step per 0.1 s
    rig.run("".join("0.033 w\n" for _ in range(15)) + "0.01 q\n", deadman_s=1.0)
    steps = round(max(v for _, v, _ in rig.sent) / (OSR_LAYOUT.max_speed_mps / 10))
    span = 14 * 0.033                                   # first to last key
    assert steps <= 1 + span / 0.1                      # never faster than one step per 0.1 s
    assert steps >= 1 + int(span / (0.1 + 0.033 + 0.01))   # and a step as soon as the interval allows


def test_deadman_stops_the_rover_when_keys_stop(rig):
    rig.run("0.1 w\n0.15 w\n0.15 w\n" + "0.5 h\n" * 2 + "3.0 h\n0.1 q\n")
    last_key = 1.4
    assert rig.moving_between(0.6, last_key + 0.9)             # held: never a gap
    t_stop = rig.first_stop_after(last_key)
    assert last_key + 1.0 <= t_stop <= last_key + 1.15        # the setpoint drops after 1 s without a key
    assert abs(rig.at(t_stop + 1.0).vx_mps) < 0.005            # and the rover is at rest
    assert "deadman" in rig.out.getvalue()


def test_deadman_off_latches_the_setpoint(rig):
    rig.run("0.1 w\n0.15 w\n3.0 h\n", deadman_s=0)
    assert rig.moving_between(0.4, 3.2)
    assert not rig.att.device.targets_pps().any()              # the end of the script still stops


def test_estop_stops_and_motion_needs_a_confirmed_rearm(rig):
    script = ("0.1 w\n0.15 w\n0.15 w\n0.4 h\n0.4 h\n"          # driving at t = 1.2
              "0.1 e\n"                                        # e-stop at 1.3
              "0.2 w\n0.3 w\n"                                 # ignored: latched
              "0.3 r\n0.2 n\n"                                 # re-arm asked, declined
              "0.2 w\n"                                        # still latched
              "0.2 r\n0.2 y\n"                                 # re-armed at 2.9
              "0.2 w\n0.15 w\n0.4 h\n0.4 h\n0.1 q\n")
    rig.run(script)
    t_stop = rig.first_stop_after(1.3)
    assert t_stop is not None and t_stop <= 1.35              # zero on the wire at once
    assert not any(s[2].any() for s in rig.samples if t_stop <= s[0] < 3.05)   # nothing moved until re-armed
    assert rig.moving_between(3.3, 3.9)                        # driving again after r + y and fresh keys
    assert abs(rig.at(2.8).vx_mps) < 0.005
    out = rig.out.getvalue()
    assert "E-STOP latched" in out and "arm cancelled" in out and out.count("armed: ") >= 2


def test_arm_prompt_without_yes_needs_y(rig):
    rig.run("0.1 w\n0.2 r\n0.1 y\n0.1 w\n0.15 w\n0.4 h\n0.1 q\n", arm=False)
    out = rig.out.getvalue()
    assert "ARM?" in out and "not armed" in out
    assert not any(s[2].any() for s in rig.samples if s[0] < 0.4)   # the first w did nothing
    assert rig.moving_between(0.6, 0.9)


def test_pulled_port_shows_link_lost_stops_and_recovers(rig):
    name = rig.name
    hooks = [(1.5, lambda: sd.unplug(name)), (4.0, lambda: sd.replug(name))]
    script = ("0.1 w\n0.15 w\n0.15 w\n" + "0.4 h\n" * 3                # driving; port pulled at 1.5
              + "0.4 h\n0.4 w\n0.4 h\n0.4 h\n0.4 h\n0.4 h\n"           # keys while the link is down
              + "0.5 h\n0.3 w\n0.15 w\n0.4 h\n0.4 h\n0.1 q\n")        # back (t = 4.0): fresh keys drive
    rig.run(script, hooks=hooks)
    out = rig.out.getvalue()
    assert "LINK LOST" in out and "link restored" in out
    assert "motion keys ignored" in out
    # the device got no more commands: its own serial timeout (0.5 s) stopped the motors
    t_stop = rig.first_stop_after(1.5)
    assert t_stop is not None and t_stop <= 1.5 + 0.5 + 0.1
    assert abs(rig.at(2.6).vx_mps) < 0.005
    assert not any(s[2].any() for s in rig.samples if t_stop <= s[0] <= 4.3)   # nothing resumed by itself
    assert rig.moving_between(5.0, 5.6)
    assert rig.rover.stats.reconnects >= 1


def test_any_rover_backend_works_and_driver_errors_never_crash_the_session():
    """The same session on the in-process SimRover (no wire at all), and on a rover whose commands fail."""
    from sim import SimRover

    w = sd.flat_world(size_m=20.0, cell_size_m=0.1, physics_dt_s=0.01)
    r = SimRover(w, "skidsteer").open()
    a = r.truth()
    out = io.StringIO()
    Teleop(r, ScriptKeys(parse_key_script("0.1 w\n0.15 w\n0.4 h\n0.4 h\n0.1 q\n"), w.clock), out, arm=True,
           tick_s=0.01).run()
    dist, _ = _along(a, r.truth())
    assert dist > 0.05 and r.closed

    class Flaky(SimRover):
        def _send_twist(self, vx, wz):
            raise LinkLost(f"{self.name}: link went away")

    w2 = sd.flat_world(size_m=20.0, cell_size_m=0.1, physics_dt_s=0.01)
    f = Flaky(w2, "skidsteer").open()
    out = io.StringIO()
    reason = Teleop(f, ScriptKeys(parse_key_script("0.1 w\n0.2 w\n0.2 q\n"), w2.clock), out, arm=True,
                    tick_s=0.01).run()
    assert reason == "quit" and "command failed, stopped: " in out.getvalue() and f.closed


def test_exception_inside_the_session_still_stops_disarms_and_closes(rig):
    def boom():
        raise Terminated(signal.SIGTERM)
    with pytest.raises(Terminated):
        rig.run("0.1 w\n0.15 w\n0.4 h\n0.4 h\n0.4 h\n", hooks=[(0.8, boom)])
    assert rig.rover.closed and not rig.rover.armed and not rig.att.device.targets_pps().any()


# ----------------------------------------------------------------------------- the panel
def test_panel_shows_faults_prominently_and_unknowns_as_question_marks():
    n = OSR_LAYOUT.n_wheels
    tel = Telemetry(t_s=1.0, seq=7, encoder_counts=np.arange(n, dtype=np.int64) * 1000,
                    wheel_speed_radps=np.full(n, np.nan), steer_rad=np.zeros(n), motor_current_a=np.ones(n),
                    imu=ImuSample(1.0, np.zeros(3), np.array([0, 0, 3.71])),
                    battery=BatterySample(1.0, 15.2, 1.5, 0.8), faults=Fault.LINK_LOST | Fault.PROTOCOL,
                    extra={"link": {"polls": 10, "failed_polls": 3}, "link_reason": "3 failed polls"})
    shown = teleop._Shown(title="t", t_s=1.0, state="ARMED", vx_mps=0.1, wz_radps=0.0, limited="", sent_age_s=0.05,
                          deadman_s=1.0, key_age_s=0.2, prompt="", messages=["x"], tel=tel, tel_age_s=0.3,
                          tel_error="", layout=OSR_LAYOUT)
    lines = render_panel(shown)
    text = "\n".join(t for _, t in lines)
    assert ("alert", "!!! LINK_LOST, PROTOCOL !!!") in lines
    for word in ("FL", "ML", "RR", "5000", "15.20 V", "SoC 80 %", "+3.71", "failed 3", "3 failed polls",
                 "seq 7", "age 0.30 s"):
        assert word in text, word
    assert "?" in next(t for _, t in lines if t.startswith("speed"))
    buf = io.StringIO()
    pw = teleop.PanelWriter(buf, ansi=True)
    pw.draw(lines, shown)
    pw.draw(lines, shown)
    second = buf.getvalue().split("\x1b[J", 1)[1]
    assert second.startswith(f"\r\x1b[{len(lines)}A")               # redrawn in place, not scrolled


# ----------------------------------------------------------------------------- the terminal
@pytest.fixture
def fake_tty():
    m, s = os.openpty()
    yield m, s
    os.close(m)
    os.close(s)


def test_raw_terminal_restores_on_exit_exception_and_sigterm(fake_tty):
    m, s = fake_tty
    before = termios.tcgetattr(s)
    handler = signal.getsignal(signal.SIGTERM)
    os.write(m, b"typed before\n")                             # type-ahead must not become keys
    import select
    assert select.select([s], [], [], 10.0)[0]                 # (the line discipline has queued it)
    with RawTerminal(s):
        raw = termios.tcgetattr(s)
        assert not raw[3] & (termios.ICANON | termios.ECHO | termios.ISIG) and not raw[0] & termios.IXON
        keys = teleop.TtyKeys(s).poll(0.05)
        assert keys == []
        os.write(m, b"w\x1b[A")
        got = []
        for _ in range(50):
            got += teleop.TtyKeys(s).poll(0.05)
            if len(got) >= 2:
                break
        assert got == ["w", "up"]
    assert termios.tcgetattr(s) == before
    with pytest.raises(RuntimeError):
        with RawTerminal(s):
            raise RuntimeError("boom")
    assert termios.tcgetattr(s) == before
    with pytest.raises(Terminated) as ei:
        with RawTerminal(s):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1.0)                                    # the handler raises well before this ends
    assert ei.value.signum == signal.SIGTERM
    assert termios.tcgetattr(s) == before
    assert signal.getsignal(signal.SIGTERM) is handler


def test_a_second_sigterm_cannot_cut_the_shutdown_short():
    done = []
    with pytest.raises(Terminated):
        with teleop.TerminateOnSignals():
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(1.0)
            finally:
                os.kill(os.getpid(), signal.SIGTERM)        # arrives while "stopping the rover"
                time.sleep(0.05)
                done.append(True)
    assert done == [True]


def test_closed_terminal_is_a_hangup(fake_tty):
    m, s = os.openpty()
    try:
        keys = teleop.TtyKeys(s)
        os.close(m)
        assert keys.poll(0.5) == ["hangup"]
    finally:
        os.close(s)


# ----------------------------------------------------------------------------- the CLI, in-process
@pytest.fixture
def cli_main(monkeypatch):
    import hil.cli as cli
    if "hil.cmd_drive" not in cli._COMMAND_MODULES:
        monkeypatch.setattr(cli, "_COMMAND_MODULES", cli._COMMAND_MODULES + ("hil.cmd_drive",))
    return cli.main


def test_cli_drives_over_sim_in_follow_mode(cli_main, tmp_path, capsys):
    from sim.devices.pty import RealtimeClock, WorldPacer

    w = sd.flat_world(size_m=20.0, cell_size_m=0.1, physics_dt_s=0.01)
    clock = RealtimeClock(w.time_s)
    att = sd.attach_sim("teleop-cli", world=w, baud=115200, time="follow", clock=clock)
    pacer = WorldPacer(w, clock, lock=att.device.lock).start()
    keys = tmp_path / "keys.txt"
    keys.write_text("0.1 w\n0.15 w\n0.15 w\n0.4 h\n0.4 h\n0.4 h\n0.3 q\n")
    try:
        a = att.sim_rover.truth()
        code = cli_main(["drive", "--port", "sim://teleop-cli", "--protocol", "roboclaw", "--yes",
                         "--script", str(keys)])
        b = att.sim_rover.truth()
        out, err = capsys.readouterr()
        assert code == 0, err
        dist, _ = _along(a, b)
        assert dist > 0.08
        assert "rover stopped, disarmed and sim://teleop-cli closed" in out
        assert not att.device.targets_pps().any()
        serial.serial_for_url("sim://teleop-cli", exclusive=True).close()    # the port was released
    finally:
        pacer.stop()
        att.close()


def test_cli_errors_are_one_sentence_with_status_2(cli_main, tmp_path, capsys):
    keys = tmp_path / "k.txt"
    keys.write_text("0.1 q\n")
    att = sd.attach_sim("teleop-busy")
    holder = serial.serial_for_url("sim://teleop-busy", exclusive=True)
    try:
        cases = [
            (["--port", "sim://teleop-busy", "--protocol", "roboclaw", "--script", str(keys)], "in use"),
            (["--port", str(tmp_path / "ttyUSB9"), "--protocol", "roboclaw", "--script", str(keys)], "no such"),
            (["--port", "sim://nobody", "--protocol", "roboclaw", "--script", str(keys)], "sim://nobody"),
            (["--port", "/dev/null", "--protocol", "canbus", "--script", str(keys)], "must be one of"),
            (["--port", "/dev/null", "--protocol", "roboclaw"], "not a terminal"),
            (["--port", "/dev/null", "--protocol", "roboclaw", "--script", str(tmp_path / "nope")], "cannot read"),
            (["--port", "/dev/null", "--protocol", "roboclaw", "--script", str(keys), "--deadman", "-1"], ">= 0"),
        ]
        bad = tmp_path / "bad.txt"
        bad.write_text("0.1 w\nfast w\n")
        cases.append((["--port", "/dev/null", "--protocol", "roboclaw", "--script", str(bad)], "line 2"))
        for argv, msg in cases:
            code = cli_main(["drive", *argv])
            out, err = capsys.readouterr()
            assert code == 2, (argv, out, err)
            assert msg in err and err.count("\n") == 1 and "Traceback" not in err, (argv, err)
    finally:
        holder.close()
        att.close()


def test_cli_exit_status_1_when_arming_with_yes_fails(cli_main, tmp_path, capsys, monkeypatch):
    from drivers.errors import DeviceFault

    def refuse(self):
        raise DeviceFault(f"{self.name}: cannot arm: controllers report device_fault (0x80: M1_DRIVER_FAULT)")
    monkeypatch.setattr(RoboClawRover, "_arm", refuse)
    keys = tmp_path / "k.txt"
    keys.write_text("0.2 w\n0.2 q\n")
    from sim.devices.pty import RealtimeClock, WorldPacer

    w = sd.flat_world(size_m=20.0, cell_size_m=0.1, physics_dt_s=0.01)
    clock = RealtimeClock(w.time_s)
    att = sd.attach_sim("teleop-fault", world=w, time="follow", clock=clock)
    pacer = WorldPacer(w, clock, lock=att.device.lock).start()
    try:
        code = cli_main(["drive", "--port", "sim://teleop-fault", "--protocol", "roboclaw", "--yes",
                         "--script", str(keys)])
        out, err = capsys.readouterr()
    finally:
        pacer.stop()
        att.close()
    assert code == 1 and "could not arm" in err and "device_fault" in out.lower()
    assert not att.device.targets_pps().any()


ROVER_PORT = os.environ.get("ROVER_PORT")


@pytest.mark.hil
def test_scripted_bench_check_on_a_real_rover(cli_main, tmp_path, capsys):
    """A gentle scripted drive on a physical rover (on a stand): ROVER_PORT, ROVER_PROTOCOL (default
    roboclaw), ROVER_PROFILE (default osr)."""
    if not ROVER_PORT:
        pytest.skip("needs a real rover: set ROVER_PORT (and ROVER_PROTOCOL, ROVER_PROFILE); put it on a stand")
    keys = tmp_path / "bench.txt"
    keys.write_text("0.2 w\n0.2 w\n0.4 h\n0.4 h\n0.4 space\n0.3 a\n0.4 h\n0.3 e\n0.3 q\n")
    code = cli_main(["drive", "--port", ROVER_PORT, "--protocol", os.environ.get("ROVER_PROTOCOL", "roboclaw"),
                     "--rover", os.environ.get("ROVER_PROFILE", "osr"), "--yes", "--script", str(keys)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "E-STOP latched" in out and "rover stopped, disarmed" in out and "command failed" not in out


# ----------------------------------------------------------------------------- the real thing: two ptys
class _Reader(threading.Thread):
    def __init__(self, fd):
        super().__init__(daemon=True)
        self.fd, self.buf, self.lock = fd, bytearray(), threading.Lock()

    def run(self):
        while True:
            try:
                data = os.read(self.fd, 65536)
            except OSError:
                return
            if not data:
                return
            with self.lock:
                self.buf += data

    def text(self, since=0):
        with self.lock:
            return self.buf[since:].decode("utf-8", "replace")

    def __len__(self):
        with self.lock:
            return len(self.buf)


def _wait(pred, timeout=20.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return bool(pred())


def test_rover_drive_in_a_terminal_against_the_virtual_bus_on_a_pty(tmp_path):
    from sim.devices.pty import open_pty_device

    dev = open_pty_device("roboclaw", "osr", world=sd.flat_world(size_m=30.0, cell_size_m=0.1), baud=115200,
                          symlink=str(tmp_path / "roboclaw"))
    m, s = os.openpty()
    before = termios.tcgetattr(s)
    code = ("import sys, hil.cli as c\n"
            "if 'hil.cmd_drive' not in c._COMMAND_MODULES: c._COMMAND_MODULES += ('hil.cmd_drive',)\n"
            "sys.exit(c.main(sys.argv[1:]))\n")
    env = dict(os.environ, TERM="xterm", COLUMNS="120", LINES="40", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", code, "drive", "--port", dev.path, "--protocol", "roboclaw"],
                            stdin=s, stdout=s, stderr=s, env=env, cwd=str(ROOT), start_new_session=True)
    reader = _Reader(m)
    reader.start()
    stop_keys = threading.Event()

    def keep_pressing(key=b"h", period=0.3):
        while not stop_keys.wait(period):
            with contextlib.suppress(OSError):
                os.write(m, key)

    presser = None
    try:
        assert _wait(lambda: "about to ARM" in reader.text() and "ARM?" in reader.text()), reader.text()
        assert "roboclaw on " + dev.path in reader.text()
        os.write(m, b"y")
        assert _wait(lambda: "ARMED" in reader.text())
        a = dev.sim_rover.truth()
        for key in (b"w", b"\x1b[A", b"w"):                 # typed keys and an arrow's escape sequence
            os.write(m, key)
            time.sleep(0.15)
        presser = threading.Thread(target=keep_pressing, daemon=True)
        presser.start()                                    # a held key: the deadman stays happy
        assert _wait(lambda: dev.device.targets_pps().all(), 5.0)
        time.sleep(1.0)
        dist, _ = _along(a, dev.sim_rover.truth())
        assert dist > 0.05

        mark = len(reader)
        dev.server.unplug()                                 # pull the USB cable
        assert _wait(lambda: "LINK_LOST" in reader.text(mark), 10.0), reader.text(mark)[-2000:]
        assert _wait(lambda: not dev.device.targets_pps().any(), 5.0)   # the controllers' serial timeout
        time.sleep(0.3)
        dev.server.replug()                                 # back, under a new /dev/pts number
        assert _wait(lambda: "link restored" in reader.text(mark), 15.0), reader.text(mark)[-2000:]
        assert not dev.device.targets_pps().any()           # nothing resumed by itself
        os.write(m, b"w")
        assert _wait(lambda: dev.device.targets_pps().all(), 5.0)       # fresh keys drive again

        mark = len(reader)
        os.write(m, b"\x1b")                                # a lone Esc: e-stop
        assert _wait(lambda: "E-STOP" in reader.text(mark), 5.0)
        assert _wait(lambda: not dev.device.targets_pps().any(), 2.0)
        stop_keys.set()

        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(20) == 128 + signal.SIGTERM
        assert _wait(lambda: "closed" in reader.text(mark), 5.0)
        assert termios.tcgetattr(s) == before               # the terminal is as the shell left it
        assert "\x1b[?25h" in reader.text(mark)             # cursor shown again
        assert not dev.device.targets_pps().any()
        with serial.Serial(dev.path, exclusive=True):       # the port was released
            pass
    finally:
        stop_keys.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        os.close(s)
        os.close(m)
        dev.close()

