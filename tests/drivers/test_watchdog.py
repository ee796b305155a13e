"""drivers.watchdog: the command gate (fresh commands only, once) and the host watchdog."""
import math
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.clock import ManualClock, MonotonicClock
from drivers.watchdog import CommandGate, Watchdog


# ----------------------------------------------------------------------------- gate
def test_gate_hands_out_the_latest_fresh_command_until_delivered():
    c = ManualClock()
    g = CommandGate(max_age_s=0.2, clock=c)
    assert g.take() is None and not g.pending
    g.submit("a")
    gen_b = g.submit("b")
    gen, value, t = g.take()
    assert (gen, value, t) == (gen_b, "b", 0.0)
    assert g.take()[1] == "b"                 # not delivered yet: may be retried while fresh
    assert g.is_current(gen_b)
    g.delivered(gen_b)
    assert g.take() is None and not g.is_current(gen_b)


def test_gate_never_hands_out_a_stale_command():
    c = ManualClock()
    g = CommandGate(max_age_s=0.2, clock=c)
    gen = g.submit("go")
    c.advance(0.199)
    assert g.is_current(gen) and g.take() is not None
    c.advance(0.001)
    assert not g.is_current(gen)
    assert g.take() is None and g.dropped_stale == 1
    c.advance(10)
    assert g.take() is None                   # gone for good


def test_gate_block_voids_earlier_commands_only():
    c = ManualClock()
    g = CommandGate(max_age_s=1.0, clock=c)
    old = g.submit("before reconnect")
    g.block()
    assert g.take() is None and not g.is_current(old)
    new = g.submit("fresh")
    assert g.take()[:2] == (new, "fresh")


def test_gate_drop_stale():
    c = ManualClock()
    g = CommandGate(max_age_s=0.1, clock=c)
    g.submit(1)
    assert not g.drop_stale()
    c.advance(0.1)
    assert g.drop_stale() and not g.pending


def test_gate_validation():
    with pytest.raises(ValueError, match="max_age_s"):
        CommandGate(max_age_s=0)
    with pytest.raises(ValueError, match="max_age_s"):
        CommandGate(max_age_s=math.inf)


@settings(max_examples=200)
@given(st.lists(st.tuples(st.sampled_from(["submit", "take", "deliver", "block", "wait"]),
                          st.floats(0.0, 0.15)), max_size=60))
def test_gate_property_only_fresh_undelivered_unblocked(ops):
    """Oracle: a plain record of every submit; take() must return the newest submit, and only if it is
    younger than max_age, newer than the last block and not delivered."""
    c = ManualClock()
    g = CommandGate(max_age_s=0.1, clock=c)
    subs = []           # (gen, t)
    last_block = 0
    delivered = 0
    for op, x in ops:
        if op == "submit":
            subs.append((g.submit(len(subs)), c.now()))
        elif op == "wait":
            c.advance(x)
        elif op == "block":
            g.block()
            last_block = subs[-1][0] if subs else 0
        elif op == "deliver":
            got = g.take()
            if got is not None:
                g.delivered(got[0])
                delivered = max(delivered, got[0])
        got = g.take()
        if got is None:
            if subs:
                gen, t = subs[-1]
                assert gen <= last_block or gen <= delivered or c.now() - t >= 0.1
        else:
            gen, value, t = got
            assert (gen, t) == subs[-1]
            assert gen > last_block and gen > delivered and c.now() - t < 0.1


# ----------------------------------------------------------------------------- watchdog (simulated time)
def test_watchdog_trips_once_after_the_timeout():
    c = ManualClock()
    fired = []
    w = Watchdog(0.2, fired.append, clock=c, name="rover")
    assert not w.poll()                          # nothing commanded yet
    w.feed(moving=True)
    c.advance(0.19)
    assert not w.poll() and not fired
    c.advance(0.01)
    assert w.poll() and len(fired) == 1 and "0.200 s" in fired[0]
    assert w.tripped and not w.active and w.trips == 1
    assert list(w.lateness_s) == [pytest.approx(0.0, abs=1e-12)]
    c.advance(1.0)
    assert not w.poll() and len(fired) == 1      # once per trip
    w.feed(moving=True)
    assert not w.tripped


def test_watchdog_lateness_is_recorded():
    c = ManualClock()
    w = Watchdog(0.1, lambda r: None, clock=c)
    w.feed()
    c.advance(0.137)
    w.poll()
    assert w.lateness_s[-1] == pytest.approx(0.037)


def test_zero_command_and_idle_leave_nothing_to_guard():
    c = ManualClock()
    fired = []
    w = Watchdog(0.1, fired.append, clock=c)
    w.feed(moving=False)
    c.advance(1.0)
    assert not w.poll()
    w.feed(moving=True)
    w.idle()
    c.advance(1.0)
    assert not w.poll() and not fired
    assert w.deadline_s == math.inf


def test_stop_action_errors_are_contained():
    c = ManualClock()

    def boom(reason):
        raise RuntimeError("port gone")

    w = Watchdog(0.05, boom, clock=c)
    w.feed()
    c.advance(0.06)
    assert w.poll()                              # logged, not raised
    assert w.tripped


def test_watchdog_validation():
    with pytest.raises(ValueError, match="timeout_s"):
        Watchdog(0, lambda r: None)
    with pytest.raises(TypeError, match="on_expire"):
        Watchdog(0.1, None)
    with pytest.raises(ValueError, match="period_s"):
        Watchdog(0.1, lambda r: None, period_s=0.5)


# ----------------------------------------------------------------------------- watchdog thread (real time)
def test_watchdog_thread_fires_from_its_own_thread():
    done = threading.Event()
    who = []

    def on_expire(reason):
        who.append(threading.current_thread().name)
        done.set()

    w = Watchdog(0.05, on_expire, clock=MonotonicClock(), name="bench")
    w.start()
    assert w.running
    w.feed()
    assert done.wait(5.0)
    w.stop()
    assert not w.running
    assert who == ["bench-watchdog"] and who[0] != threading.current_thread().name
    assert w.trips == 1
