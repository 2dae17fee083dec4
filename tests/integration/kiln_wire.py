"""msgpack and Kiln's frames, the little the raw-peer tests need: encode a
flat map, frame it (a 4-byte big-endian length, then the payload), and
decode what a daemon sends back.  Standard library only."""

import socket
import struct
import time

PROTOCOL_VERSION = 1  # kProtocolVersion, core/include/kiln/messages.hpp
RAW_TIMEOUT = 5.0  # bound for anything a daemon should answer at once


def mp_str(s):
    b = s.encode()
    if len(b) < 32:
        return bytes([0xa0 | len(b)]) + b
    if len(b) < 256:
        return b"\xd9" + bytes([len(b)]) + b
    return b"\xda" + struct.pack(">H", len(b)) + b


def mp_map(pairs):
    """Encode a dict of str → str|int (non-negative)."""
    assert len(pairs) < 16
    out = bytes([0x80 | len(pairs)])
    for k, v in pairs.items():
        out += mp_str(k)
        if isinstance(v, str):
            out += mp_str(v)
        elif isinstance(v, int) and 0 <= v < 128:
            out += bytes([v])
        elif isinstance(v, int) and 0 <= v < 2 ** 32:
            out += b"\xce" + struct.pack(">I", v)
        else:
            raise ValueError("unsupported value %r" % (v,))
    return out


def frame(payload):
    return struct.pack(">I", len(payload)) + payload


def mp_decode(data):
    """Decode one msgpack object (maps, arrays, strings, bin, ints, nil,
    bools, floats) from bytes; returns (object, rest)."""
    b = data[0]
    rest = data[1:]

    def take(n):
        nonlocal rest
        if len(rest) < n:
            raise ValueError("truncated msgpack")
        chunk, rest = rest[:n], rest[n:]
        return chunk

    def container(n, is_map):
        nonlocal rest
        if is_map:
            out = {}
            for _ in range(n):
                k, rest = mp_decode(rest)
                v, rest = mp_decode(rest)
                out[k] = v
            return out
        out = []
        for _ in range(n):
            v, rest = mp_decode(rest)
            out.append(v)
        return out

    if b <= 0x7f:
        return b, rest
    if b >= 0xe0:
        return b - 0x100, rest
    if 0x80 <= b <= 0x8f:
        return container(b & 0x0f, True), rest
    if 0x90 <= b <= 0x9f:
        return container(b & 0x0f, False), rest
    if 0xa0 <= b <= 0xbf:
        return take(b & 0x1f).decode("utf-8", "replace"), rest
    simple = {0xc0: None, 0xc2: False, 0xc3: True}
    if b in simple:
        return simple[b], rest
    if b in (0xd9, 0xda, 0xdb):
        n = struct.unpack(">" + {0xd9: "B", 0xda: "H", 0xdb: "I"}[b],
                          take({0xd9: 1, 0xda: 2, 0xdb: 4}[b]))[0]
        return take(n).decode("utf-8", "replace"), rest
    if b in (0xc4, 0xc5, 0xc6):
        n = struct.unpack(">" + {0xc4: "B", 0xc5: "H", 0xc6: "I"}[b],
                          take({0xc4: 1, 0xc5: 2, 0xc6: 4}[b]))[0]
        return take(n), rest
    ints = {0xcc: "B", 0xcd: "H", 0xce: "I", 0xcf: "Q",
            0xd0: "b", 0xd1: "h", 0xd2: "i", 0xd3: "q"}
    if b in ints:
        fmt = ">" + ints[b]
        return struct.unpack(fmt, take(struct.calcsize(fmt)))[0], rest
    if b == 0xca:
        return struct.unpack(">f", take(4))[0], rest
    if b == 0xcb:
        return struct.unpack(">d", take(8))[0], rest
    if b in (0xdc, 0xdd):
        n = struct.unpack(">H" if b == 0xdc else ">I", take(2 if b == 0xdc else 4))[0]
        return container(n, False), rest
    if b in (0xde, 0xdf):
        n = struct.unpack(">H" if b == 0xde else ">I", take(2 if b == 0xde else 4))[0]
        return container(n, True), rest
    raise ValueError("unsupported msgpack byte 0x%02x" % b)


def split_frames(data):
    """Decode the complete frames in data: a list of decoded maps."""
    out = []
    while len(data) >= 4:
        n = struct.unpack(">I", data[:4])[0]
        if len(data) < 4 + n:
            break
        obj, rest = mp_decode(data[4:4 + n])
        if rest:
            raise ValueError("%d bytes after the msgpack object" % len(rest))
        out.append(obj)
        data = data[4 + n:]
    return out


def hello_frame(role, name="test", id=1):
    return frame(mp_map({"type": "hello", "id": id, "version": PROTOCOL_VERSION,
                         "role": role, "name": name}))


class RawPeer:
    """A raw TCP peer of the dispatcher speaking frames by hand."""

    def __init__(self, port, rcvbuf=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            # Before connect, so the window is small from the start: what we
            # do not read then stays with the dispatcher, not in our kernel.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(RAW_TIMEOUT)
        self.sock.connect(("127.0.0.1", port))
        self.local_port = self.sock.getsockname()[1]
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def frames(self, n, timeout=RAW_TIMEOUT):
        """Read until n frames have arrived (returns them) or the peer
        closes (returns what came); bounded."""
        deadline = time.monotonic() + timeout
        while True:
            got = split_frames(self.buf)
            if len(got) >= n:
                return got
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("%d frame(s) expected within %.1fs, got %r"
                                     % (n, timeout, got))
            self.sock.settimeout(min(left, 0.5))
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                return got
            if not chunk:
                return got
            self.buf += chunk

    def wait_closed(self, timeout=RAW_TIMEOUT):
        """Read (and keep) everything until the dispatcher closes: returns
        "closed", "reset" or "open" (still open after `timeout`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(min(max(deadline - time.monotonic(), 0.01), 0.5))
            try:
                chunk = self.sock.recv(1 << 20)
            except socket.timeout:
                continue
            except ConnectionResetError:
                return "reset"
            if not chunk:
                return "closed"
            self.buf += chunk
        return "open"

    def close(self):
        self.sock.close()
