"""drivers.transport: URL ports, exclusive open, bounded reads, vanished ports, reopen with backoff, BusLock."""
import os
import socket
import threading

import pytest
import serial

import sim.devices as sd
from drivers.clock import ManualClock
from drivers.errors import DeviceClosed, DriverError, LinkLost
from drivers.transport import BusLock, PortInUse, PortNotFound, Transport, url_path, url_scheme
from sim.devices.faults import VirtualLink
from sim.devices.pty import PtyServer, RealtimeClock


class Echo:
    """A device that answers every chunk with the same bytes."""

    def receive(self, data, t_s):
        return [bytes(data)]


class Mute:
    def receive(self, data, t_s):
        return []


@pytest.fixture
def echo_pty(tmp_path):
    link = VirtualLink(Echo(), clock=RealtimeClock())
    srv = PtyServer(link, symlink=str(tmp_path / "usb-echo-if00"))
    srv.start()
    yield srv
    srv.stop()


def sim_port(name, device, clock, **kw):
    link = VirtualLink(device, clock=clock)
    return sd.register(name, link, replace=True, **kw), link


# ----------------------------------------------------------------------------- URLs
def test_url_helpers():
    assert url_scheme("/dev/ttyUSB0") == "device" and url_path("/dev/ttyUSB0") == "/dev/ttyUSB0"
    assert url_scheme("SOCKET://h:1") == "socket" and url_path("socket://h:1") is None
    assert url_scheme("sim://osr") == "sim" and url_path("sim://osr") is None
    assert url_path("spy:///dev/pts/3?file=x.txt") == "/dev/pts/3"


def test_loop_round_trip_and_short_read():
    t = Transport("loop://").open()
    t.write(b"\x80\x15")
    assert t.read(2, 0.05) == b"\x80\x15"
    assert t.read(4, 0.02) == b""                      # nothing there: returns after the deadline
    assert t.stats.bytes_out == 2 and t.stats.bytes_in == 2 and t.current_url == "loop://"
    t.close()
    with pytest.raises(DeviceClosed, match="loop://"):
        t.write(b"x")
    with pytest.raises(DeviceClosed, match="loop://"):
        t.open()


def test_socket_url_reaches_a_tcp_bridge():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]

    def serve():
        c, _ = srv.accept()
        c.sendall(c.recv(16)[::-1])
        c.close()

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    t = Transport(f"socket://127.0.0.1:{port}", exclusive=True).open()
    t.write(b"abc")
    assert t.read(3, 1.0) == b"cba"
    t.close()
    th.join(2)
    srv.close()


def test_parameters_are_validated_with_the_port_named():
    with pytest.raises(ValueError, match="loop://: read_timeout_s = 1.0"):
        Transport("loop://", read_timeout_s=1.0)
    with pytest.raises(ValueError, match="baudrate"):
        Transport("loop://", baudrate=0)
    with pytest.raises(ValueError, match="backoff_factor"):
        Transport("loop://", backoff_factor=0.5)
    with pytest.raises(TypeError):
        Transport("")


def test_missing_device_and_unknown_scheme_name_the_port(tmp_path):
    p = str(tmp_path / "ttyUSB9")
    with pytest.raises(PortNotFound, match="ttyUSB9"):
        Transport(p).open()
    with pytest.raises(PortNotFound, match="nosuch://x.*scheme 'nosuch'"):
        Transport("nosuch://x").open()
    with pytest.raises(PortNotFound, match="sim://nobody-here"):
        Transport("sim://nobody-here").open()


# ----------------------------------------------------------------------------- bounded reads on sim time
def test_read_deadline_is_on_the_injected_clock():
    clock = ManualClock()
    url, _ = sim_port("mute-dev", Mute(), clock)
    t = Transport(url, clock=clock, read_timeout_s=0.01).open()
    t.write(b"\x80\x10")
    assert t.read(7, 0.05) == b""
    # the sim port's reads advanced the clock by exactly the port timeouts they waited
    assert clock.now() == pytest.approx(0.05, abs=1e-9)
    t.close()
    sd.unregister("mute-dev")


def test_read_never_hangs_on_a_clock_that_does_not_move():
    class Frozen:
        def now(self):
            return 0.0

        def sleep(self, s):
            pass

    t = Transport("loop://", clock=Frozen(), read_timeout_s=0.005).open()
    assert t.read(5, 0.02) == b""        # bounded by the number of port reads the timeout allows
    t.close()


# ----------------------------------------------------------------------------- exclusive open
def test_exclusive_open_on_a_pty_names_the_port(echo_pty):
    a = Transport(echo_pty.slave_path).open()
    with pytest.raises(PortInUse) as ei:
        Transport(echo_pty.slave_path).open()
    msg = str(ei.value)
    assert msg.startswith(echo_pty.slave_path) and "in use by another program" in msg and "fuser" in msg
    a.write(b"hi")
    assert a.read(2, 1.0) == b"hi"
    a.close()
    b = Transport(echo_pty.slave_path).open()         # free again once closed
    b.close()


def test_exclusive_open_on_sim():
    url, _ = sim_port("excl-dev", Echo(), ManualClock())
    a = Transport(url).open()
    with pytest.raises(PortInUse, match="sim://excl-dev"):
        Transport(url).open()
    thief = serial.serial_for_url(url, timeout=0)     # a non-exclusive second open succeeds silently
    thief.close()
    a.close()
    Transport(url).open().close()
    sd.unregister("excl-dev")


def test_spy_url_wraps_a_device_path(echo_pty, tmp_path):
    log = tmp_path / "spy.txt"
    t = Transport(f"spy://{echo_pty.slave_path}?file={log}").open()
    t.write(b"\x80\x15")
    assert t.read(2, 1.0) == b"\x80\x15"
    t.close()
    assert "80 15" in log.read_text().lower()


# ----------------------------------------------------------------------------- vanish and reopen
def test_unplugged_pty_is_detected_and_reopened_under_a_new_name(echo_pty, tmp_path):
    link_path = echo_pty.symlink
    t = Transport(link_path, backoff_initial_s=0.01, candidates=str(tmp_path / "usb-*-if00")).open()
    first = os.path.realpath(link_path)
    t.write(b"a")
    assert t.read(1, 1.0) == b"a"
    echo_pty.unplug()
    assert not t.path_present()
    with pytest.raises(LinkLost) as ei:
        t.write(b"b")
        t.read(1, 0.5)
    assert ei.value.args[0].startswith(link_path) and "vanished" in ei.value.args[0]
    assert t.lost and not t.is_open and t.stats.losses == 1
    assert not t.try_reopen()                          # nothing to reopen until the replug
    echo_pty.replug()
    assert os.path.realpath(link_path) != first        # re-enumerated under a new /dev/pts number
    deadline = RealtimeClock()
    while not t.try_reopen():
        assert deadline.now() < 5.0, f"no reopen: {t.last_error}"
        deadline.sleep(0.01)
    t.write(b"c")
    assert t.read(1, 1.0) == b"c"
    assert t.stats.opens == 2
    t.close()


def test_reopen_backoff_is_exponential_and_capped_on_the_clock():
    clock = ManualClock()
    url, link = sim_port("backoff-dev", Echo(), clock)
    t = Transport(url, clock=clock, backoff_initial_s=0.1, backoff_factor=2.0, backoff_max_s=0.5).open()
    sd.unplug("backoff-dev")
    with pytest.raises(LinkLost, match="sim://backoff-dev: port vanished during write"):
        t.write(b"x")
    attempts = []
    while clock.now() < 3.0:
        before = t.stats.reopen_attempts
        t.try_reopen()
        if t.stats.reopen_attempts > before:
            attempts.append(round(clock.now(), 3))
        clock.advance(0.01)
    gaps = [round(b - a, 3) for a, b in zip(attempts, attempts[1:])]
    assert attempts[0] == pytest.approx(0.1, abs=0.011)
    assert gaps[:3] == pytest.approx([0.1, 0.2, 0.4], abs=0.011)
    assert max(gaps) == pytest.approx(0.5, abs=0.011)   # capped
    sd.replug("backoff-dev", same_name=True)
    clock.advance(0.6)
    assert t.try_reopen() and t.current_url == url
    t.close()
    sd.unregister("backoff-dev")


def test_reopen_tries_candidates_from_a_callable():
    clock = ManualClock()
    url, _ = sim_port("cand-dev", Echo(), clock)
    t = Transport(url, clock=clock, backoff_initial_s=0.01, candidates=lambda: sd.urls("cand-dev*")).open()
    sd.unplug("cand-dev")
    with pytest.raises(LinkLost):
        t.read(1, 0.01)
    new = sd.replug("cand-dev")
    assert new != url
    clock.advance(0.02)
    assert t.try_reopen() and t.current_url == new
    t.write(b"z")
    assert t.read(1, 0.05) == b"z"
    t.close()
    sd.unregister(new[len("sim://"):])


def test_mark_lost_closes_and_schedules_a_reopen():
    clock = ManualClock()
    t = Transport("loop://", clock=clock, backoff_initial_s=0.2).open()
    t.mark_lost("test")
    assert t.lost and not t.is_open
    with pytest.raises(LinkLost, match="loop://: port is not open"):
        t.write(b"x")
    assert not t.try_reopen()
    clock.advance(0.2)
    assert t.try_reopen() and not t.lost
    t.close()


# ----------------------------------------------------------------------------- bus lock
def test_bus_lock_serves_priority_first():
    lock = BusLock()
    order = []
    assert lock.acquire()
    started = threading.Barrier(3)

    def normal():
        started.wait()
        with lock.hold():
            order.append("normal")

    def urgent():
        started.wait()
        with lock.hold(priority=True):
            order.append("priority")

    ths = [threading.Thread(target=normal), threading.Thread(target=urgent)]
    for th in ths:
        th.start()
    started.wait()
    # wait until both are queued (the priority waiter registers itself before waiting)
    for _ in range(2000):
        if lock._priority_waiting == 1:
            break
        threading.Event().wait(0.001)
    threading.Event().wait(0.02)
    lock.release()
    for th in ths:
        th.join(2)
    assert order == ["priority", "normal"]


def test_bus_lock_timeout():
    lock = BusLock()
    with lock.hold() as ok:
        assert ok
        with lock.hold(priority=True, timeout=0.01) as ok2:
            assert not ok2
    assert not lock.held


def test_errors_are_driver_errors():
    assert issubclass(PortInUse, DriverError) and issubclass(PortNotFound, DriverError)
    assert issubclass(LinkLost, IOError)
