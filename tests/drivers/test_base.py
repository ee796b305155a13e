"""The Rover base class: lifecycle state machine, validation before hooks, e-stop latch, encoder maths."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nav
from drivers import (DeviceClosed, EStopActive, Fault, ManualClock, NotArmed, Rover, Telemetry, WheelLayout,
                     encoder_delta, unwrap_counts)
from drivers.errors import CommandOutOfRange, DriverError


class FakeRover(Rover):
    """Records every hook call."""

    def __init__(self, fail_open=False):
        super().__init__(WheelLayout.from_profile(nav.load_rover("osr")), clock=ManualClock(), name="fake")
        self.calls = []
        self.fail_open = fail_open
        self.sent = []

    def _open(self):
        self.calls.append("open")
        if self.fail_open:
            raise DriverError("fake: port /dev/nothing not found")

    def _close(self):
        self.calls.append("close")

    def _send_wheels(self, speed, steer):
        self.calls.append("send")
        self.sent.append((speed.copy(), steer.copy()))

    def _discard_pending(self):
        self.calls.append("discard")

    def _read_telemetry(self):
        n = self.layout.n_wheels
        return Telemetry(t_s=self.clock.now(), seq=1, encoder_counts=np.zeros(n, np.int64),
                         wheel_speed_radps=np.zeros(n), steer_rad=np.zeros(n), motor_current_a=np.zeros(n))


def test_lifecycle_and_idempotent_close():
    r = FakeRover()
    with pytest.raises(DeviceClosed, match="not open"):
        r.set_twist(0.1, 0)
    with r:
        assert r.is_open and not r.armed
        with pytest.raises(NotArmed, match="fake: not armed"):
            r.set_twist(0.1, 0)
        r.arm()
        r.set_twist(0.1, 0)
        assert r.sent[-1][0] == pytest.approx(np.full(6, 0.1 / 0.075))
    assert r.closed and r.calls[-2:] == ["send", "close"]      # close stops the wheels first
    r.close()
    assert r.calls.count("close") == 1
    with pytest.raises(DeviceClosed, match="closed"):
        r.open()


def test_failed_open_releases_and_raises():
    r = FakeRover(fail_open=True)
    with pytest.raises(DriverError, match="/dev/nothing"):
        r.open()
    assert r.calls == ["open", "close"] and r.closed


def test_validation_happens_before_any_hook():
    r = FakeRover().open()
    r.arm()
    n = len(r.calls)
    with pytest.raises(CommandOutOfRange):
        r.set_twist(5.0, 0.0)
    with pytest.raises(CommandOutOfRange):
        r.set_wheels(np.full(6, np.nan))
    assert len(r.calls) == n


def test_estop_latches_discards_and_needs_arm():
    r = FakeRover().open()
    r.arm()
    r.set_twist(0.2, 0.0)
    r.estop()
    assert r.calls[-2:] == ["discard", "send"] and not np.any(r.sent[-1][0])
    assert not r.armed and r.estopped
    with pytest.raises(EStopActive, match="arm"):
        r.set_twist(0.1, 0.0)
    assert Fault.ESTOP in r.read_telemetry().faults
    r.stop()                                     # stopping is always allowed
    r.arm()
    r.set_twist(0.1, 0.0)
    assert Fault.ESTOP not in r.read_telemetry().faults


def test_stop_keeps_steering():
    r = FakeRover().open()
    r.arm()
    r.set_twist(0.2, 0.3)
    steer = r.sent[-1][1]
    assert np.any(steer)
    r.stop()
    assert not np.any(r.sent[-1][0]) and np.array_equal(r.sent[-1][1], steer)
    r.set_twist(0.0, 0.0)
    assert np.array_equal(r.sent[-1][1], steer)


def test_last_command_time_uses_injected_clock():
    r = FakeRover().open()
    r.arm()
    r.clock.advance(3.5)
    r.set_twist(0.1, 0.0)
    assert r.last_command_s == 3.5


@given(st.integers(-2**31, 2**31 - 1), st.integers(-2**20, 2**20))
def test_encoder_delta_across_wrap(start, step):
    wrap = lambda v: ((v + 2**31) % 2**32) - 2**31   # noqa: E731
    assert encoder_delta(wrap(start + step), start) == step


def test_unwrap_counts():
    true = np.array([2**31 - 5, 2**31 + 10, 2**31 + 2000, 2**32 + 7]).reshape(-1, 1)
    raw = ((true + 2**31) % 2**32) - 2**31
    np.testing.assert_array_equal(unwrap_counts(raw) - unwrap_counts(raw)[0], true - true[0])


def test_fault_describe():
    assert (Fault.LINK_LOST | Fault.TILT).describe() == "link_lost, tilt"
    assert Fault.NONE.describe() == "none"
