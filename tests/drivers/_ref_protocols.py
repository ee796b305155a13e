"""Slow, obviously-correct references for the protocol tests (never imports the codecs under test).

* :func:`crc16_bitwise` — the CRC loop exactly as printed in the RoboClaw manual.
* :func:`rc_write`, :func:`rc_reply`, :func:`be` — RoboClaw packets assembled by hand.
* :func:`ref_cobs_encode` / :func:`ref_cobs_decode` — COBS written block by block from the
  Cheshire & Baker description, and :data:`COBS_VECTORS`, the standard published examples.
* :func:`rnp_body`, :func:`rnp_wire` — RNP frames assembled field by field from drivers/PROTOCOL.md.
* :class:`RefFirmware` — the RNP device behaviour of PROTOCOL.md §2.4 in plain Python, the oracle
  for the C firmware core.
"""
from __future__ import annotations

import struct


# ----------------------------------------------------------------------------- CRC
def crc16_bitwise(data: bytes, crc: int = 0) -> int:
    """CRC-16 as in the RoboClaw manual: for each byte, crc ^= byte << 8, then 8 shift/xor steps."""
    for byte in data:
        crc = crc ^ (byte << 8)
        for _ in range(8):
            if crc & 0x8000:
                crc = ((crc << 1) ^ 0x1021) & 0xFFFF
            else:
                crc = (crc << 1) & 0xFFFF
    return crc


# ----------------------------------------------------------------------------- RoboClaw by hand
def be(value: int, nbytes: int, signed: bool = False) -> bytes:
    return int(value).to_bytes(nbytes, "big", signed=signed)


def rc_write(addr: int, cmd: int, data: bytes = b"") -> bytes:
    """A write packet: addr, cmd, data, CRC16 (high byte first) over all of them."""
    pkt = bytes([addr, cmd]) + data
    c = crc16_bitwise(pkt)
    return pkt + bytes([c >> 8, c & 0xFF])


def rc_reply(addr: int, cmd: int, data: bytes) -> bytes:
    """A read reply: data then CRC16 over the sent addr, cmd and the data."""
    c = crc16_bitwise(bytes([addr, cmd]) + data)
    return data + bytes([c >> 8, c & 0xFF])


# ----------------------------------------------------------------------------- COBS
#: (decoded, encoded without delimiter) — the standard examples (Wikipedia "Consistent Overhead
#: Byte Stuffing", after Cheshire & Baker).
COBS_VECTORS = [
    (bytes([0x00]), bytes([0x01, 0x01])),
    (bytes([0x00, 0x00]), bytes([0x01, 0x01, 0x01])),
    (bytes([0x00, 0x11, 0x00]), bytes([0x01, 0x02, 0x11, 0x01])),
    (bytes([0x11, 0x22, 0x00, 0x33]), bytes([0x03, 0x11, 0x22, 0x02, 0x33])),
    (bytes([0x11, 0x22, 0x33, 0x44]), bytes([0x05, 0x11, 0x22, 0x33, 0x44])),
    (bytes([0x11, 0x00, 0x00, 0x00]), bytes([0x02, 0x11, 0x01, 0x01, 0x01])),
    (bytes(range(0x01, 0xFF)), bytes([0xFF]) + bytes(range(0x01, 0xFF))),                      # 254 non-zero
    (bytes(range(0x00, 0xFF)), bytes([0x01, 0xFF]) + bytes(range(0x01, 0xFF))),                # 00 01 .. FE
    (bytes(range(0x01, 0x100)), bytes([0xFF]) + bytes(range(0x01, 0xFF)) + bytes([0x02, 0xFF])),  # 01 .. FF
    (bytes(range(0x02, 0x100)) + b"\x00", bytes([0xFF]) + bytes(range(0x02, 0x100)) + bytes([0x01, 0x01])),
    (bytes(range(0x03, 0x100)) + b"\x00\x01", bytes([0xFE]) + bytes(range(0x03, 0x100)) + bytes([0x02, 0x01])),
]


def ref_cobs_encode(data: bytes) -> bytes:
    """Byte-at-a-time COBS: collect non-zero bytes in a block; a zero or 254 collected bytes
    closes it. A final block is written unless the data ended right after a full block."""
    out = bytearray()
    block = bytearray()
    just_closed_full = False
    for b in data:
        just_closed_full = False
        if b == 0:
            out.append(len(block) + 1)
            out += block
            block = bytearray()
        else:
            block.append(b)
            if len(block) == 254:
                out.append(0xFF)
                out += block
                block = bytearray()
                just_closed_full = True
    if not just_closed_full:
        out.append(len(block) + 1)
        out += block
    return bytes(out)


def ref_cobs_decode(enc: bytes) -> bytes | None:
    """Block-by-block COBS decode; ``None`` if the input is not a valid encoding."""
    if len(enc) == 0 or 0 in enc:
        return None
    out = bytearray()
    i = 0
    while i < len(enc):
        code = enc[i]
        data = enc[i + 1:i + code]
        if len(data) != code - 1:
            return None
        out += data
        i += code
        if code < 0xFF and i < len(enc):
            out.append(0)
    return bytes(out)


# ----------------------------------------------------------------------------- RNP by hand
def rnp_body(msg_type: int, seq: int, payload: bytes, version: int = 1) -> bytes:
    head = bytes([version, msg_type, seq & 0xFF, seq >> 8]) + payload
    c = crc16_bitwise(head)
    return head + bytes([c & 0xFF, c >> 8])


def rnp_wire(msg_type: int, seq: int, payload: bytes, version: int = 1) -> bytes:
    return ref_cobs_encode(rnp_body(msg_type, seq, payload, version)) + b"\x00"


class RefFirmware:
    """PROTOCOL.md §2.4, line by line. Same entry points as the C core."""

    MAX_ENCODED = 129
    HW_MASK = 0x00F8

    def __init__(self, n_wheels, counts_per_rev, max_speed_cps, capabilities=0, fw=(0, 0, 0), now_ms=0):
        self.n = n_wheels
        self.cpr = counts_per_rev
        self.vmax = max_speed_cps
        self.caps = capabilities
        self.fw = fw
        self.rx = bytearray()
        self.discarding = False
        self.rx_errors = 0
        self.tx_seq = 0
        self.armed = False
        self.estop_latched = False
        self.fresh = False
        self.flags = 0x0004                  # REBOOTED
        self.hw = 0
        self.watchdog_ms = 500
        self.last_feed = now_ms
        self.targets = [0] * n_wheels
        self.raw = [0] * n_wheels
        self.offset = [0] * n_wheels
        self.speeds = [0] * n_wheels
        self.currents = [0] * n_wheels
        self.battery = 0

    # -- application side
    def set_sensors(self, counts, speeds, currents, battery_mv, hw_faults):
        self.raw = [c & 0xFFFFFFFF for c in counts]
        self.speeds = list(speeds)
        self.currents = list(currents)
        self.battery = battery_mv
        self.hw = hw_faults & self.HW_MASK

    def faults(self):
        return self.flags | self.hw

    def state(self):
        return (1 if self.armed else 0) | (2 if self.armed and self.fresh else 0)

    def output(self):
        moving = self.armed and self.fresh
        return moving, (list(self.targets) if moving else [0] * self.n)

    def _stop(self):
        self.targets = [0] * self.n
        self.fresh = False

    def hw_estop(self):
        self._stop()
        self.armed = False
        self.estop_latched = True
        self.flags |= 0x0002

    def tick(self, now):
        if self.armed and not self.flags & 0x0001 and ((now - self.last_feed) & 0xFFFFFFFF) >= self.watchdog_ms:
            self._stop()
            self.flags |= 0x0001

    # -- wire side
    def rx_bytes(self, data: bytes, now: int) -> bytes:
        out = bytearray()
        for b in data:
            if b == 0:
                if self.discarding:
                    self.discarding = False
                elif self.rx:
                    out += self._frame(bytes(self.rx), now)
                self.rx = bytearray()
            elif not self.discarding:
                if len(self.rx) < self.MAX_ENCODED:
                    self.rx.append(b)
                else:
                    self.discarding = True
                    self.rx = bytearray()
                    self.rx_errors = (self.rx_errors + 1) & 0xFFFF
        return bytes(out)

    def _send(self, t, payload):
        w = rnp_wire(t, self.tx_seq, payload)
        self.tx_seq = (self.tx_seq + 1) & 0xFFFF
        return w

    def _ack(self, seq, t):
        return self._send(0x83, struct.pack("<HB", seq, t))

    def _nack(self, seq, t, code, detail):
        return self._send(0x84, struct.pack("<HBBB", seq, t, code, detail & 0xFF))

    def _telemetry(self, seq, now):
        n = self.n
        counts = [(r - o) & 0xFFFFFFFF for r, o in zip(self.raw, self.offset)]
        p = struct.pack("<HIHBB", seq, now & 0xFFFFFFFF, self.faults(), self.state(), n)
        p += struct.pack(f"<{n}I", *counts) + struct.pack(f"<{n}i", *self.speeds)
        p += struct.pack(f"<{n}h", *self.currents) + struct.pack("<HH", self.battery, self.rx_errors)
        return self._send(0x82, p)

    def _frame(self, enc: bytes, now: int) -> bytes:
        body = ref_cobs_decode(enc)
        if body is None or not 6 <= len(body) <= 128 or crc16_bitwise(body[:-2]) != body[-2] | body[-1] << 8:
            self.rx_errors = (self.rx_errors + 1) & 0xFFFF
            return b""
        self.tick(now)
        version, t, seq = body[0], body[1], body[2] | body[3] << 8
        p = body[4:-2]
        if version != 1:
            return self._nack(seq, t, 1, 1)
        if t == 0x01:                                   # HELLO
            if len(p) != 1:
                return self._nack(seq, t, 3, 1)
            if p[0] != 1:
                return self._nack(seq, t, 1, 1)
            self._stop()
            self.armed = False
            self.flags &= ~0x0004
            info = struct.pack("<HBBBBBHIIH", seq, 1, *self.fw, self.n, self.caps, self.cpr, self.vmax,
                               self.watchdog_ms)
            return self._send(0x81, info)
        if t == 0x02:                                   # SET_WHEELS
            if len(p) < 1 or len(p) != 1 + 4 * p[0]:
                return self._nack(seq, t, 3, 1 + 4 * self.n)
            if p[0] != self.n:
                return self._nack(seq, t, 5, self.n)
            v = struct.unpack_from(f"<{self.n}i", p, 1)
            for i, s in enumerate(v):
                if abs(s) > self.vmax:
                    return self._nack(seq, t, 4, i)
            if self.estop_latched:
                return self._nack(seq, t, 7, 0)
            if not self.armed:
                return self._nack(seq, t, 6, 0)
            self.targets = list(v)
            self.fresh = True
            self.flags &= ~0x0001
            self.last_feed = now
            return self._telemetry(seq, now)
        if t == 0x03:                                   # SET_WATCHDOG
            if len(p) != 2:
                return self._nack(seq, t, 3, 2)
            ms = p[0] | p[1] << 8
            if not 50 <= ms <= 10000:
                return self._nack(seq, t, 4, 0)
            self.watchdog_ms = ms
            return self._ack(seq, t)
        if t == 0x04:                                   # HEARTBEAT
            if len(p) != 0:
                return self._nack(seq, t, 3, 0)
            self.last_feed = now
            return self._telemetry(seq, now)
        if t in (0x05, 0x06, 0x07, 0x08):
            if len(p) != 0:
                return self._nack(seq, t, 3, 0)
            if t == 0x05:                               # ESTOP
                self.hw_estop()
            elif t == 0x06:                             # ARM
                if self.flags & 0x0004:
                    return self._nack(seq, t, 8, 0)
                self._stop()
                self.estop_latched = False
                self.flags &= ~(0x0002 | 0x0001)
                self.armed = True
                self.last_feed = now
            elif t == 0x07:                             # DISARM
                self._stop()
                self.armed = False
            else:                                       # RESET_ENCODERS
                self.offset = list(self.raw)
            return self._ack(seq, t)
        return self._nack(seq, t, 2, 0)
