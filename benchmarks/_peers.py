"""The far ends the I/O benchmarks talk to, each in its own process pinned to its own core.

``target_process`` runs ``pynvmetcp target`` with a memory namespace; ``raw_server`` runs a plain
Python socket server that answers a request of ``up`` bytes with ``down`` bytes — a round trip of
one block, or, with many blocks each way, a stream: the ceilings a Python transport can reach on
this machine, against which the NVMe/TCP path is measured.
"""
from __future__ import annotations

import contextlib
import os
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
NQN = "nqn.2024-01.io.pynvmetcp:bench"
RAW_SERVER = r"""
import socket, sys
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", int(sys.argv[1]))); srv.listen(64)
import threading
def serve(c):
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = bytearray(1 << 20); mv = memoryview(buf)
    while True:
        hdr = c.recv(16, socket.MSG_WAITALL)
        if len(hdr) < 16: return
        up, down = int.from_bytes(hdr[:8], "little"), int.from_bytes(hdr[8:], "little")
        got = 0
        while got < up:
            n = c.recv_into(mv[:min(up - got, len(buf))])
            if not n: return
            got += n
        while down:
            k = min(down, len(buf)); c.sendall(mv[:k]); down -= k
while True:
    c, _ = srv.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
"""

# The leanest NVMe/TCP controller Python can be: ICReq answered, then every CapsuleCmd taken as a
# Read (SLBA/NLB from the SQE) and answered with C2HData + CapsuleResp from a filled buffer of the
# size of the target's memory namespace; no validation, no state, one thread per connection.
BARE_TARGET = r"""
import socket, struct, sys, threading
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", int(sys.argv[1]))); srv.listen(64)
size = int(sys.argv[2])
media = memoryview(bytearray(bytes(range(256)) * 512) * (size // 131072))
XFER, RESP, RW = struct.Struct("<BBBBIHHII4x"), struct.Struct("<BBBBIIIHHHH"), struct.Struct("<QH")
IC_RESP = struct.pack("<BBBBIHBBI112x", 1, 0, 128, 0, 128, 0, 0, 0, 131072)
def serve(c):
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if len(c.recv(128, socket.MSG_WAITALL)) < 128: return
    c.sendall(IC_RESP)
    buf = bytearray(72 * 256); mv = memoryview(buf); have = 0
    while True:
        n = c.recv_into(mv[have:])
        if not n: return True
        have += n; out = []; pos = 0
        while have - pos >= 72:
            cid = buf[pos + 10] | buf[pos + 11] << 8
            slba, nlb = RW.unpack_from(buf, pos + 48)
            length = (nlb + 1) * 512; off = slba * 512 % (size - length + 1)
            out += [XFER.pack(7, 4, 24, 24, 24 + length, cid, 0, 0, length),
                    media[off:off + length], RESP.pack(5, 0, 24, 0, 24, 0, 0, 0, 0, cid, 0)]
            pos += 72
        buf[:have - pos] = buf[pos:have]; have -= pos
        c.sendmsg(out)
if sys.argv[3:] == ["once"]:  # one host (port probes pass), served in this thread, then exit
    while not serve(srv.accept()[0]): pass
    sys.exit()
while True:
    c, _ = srv.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: The cores this benchmark may use, read once before ``pin_client`` narrows the process to
#: one: a peer started after that must still get the other core, not inherit the client's.
CORES = sorted(os.sched_getaffinity(0))


def server_core() -> int:
    return CORES[-1]


def pin_client() -> None:
    """Client on the first core, servers on the last (when there are two)."""
    if len(CORES) > 1:
        os.sched_setaffinity(0, {CORES[0]})


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"peer exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on port {port} after {timeout} s")


def start_peer(command: Callable[[int], list[str]], *, timeout: float = 20.0,
               **popen) -> tuple[int, subprocess.Popen]:
    """``command(port)`` started and listening on a port that was free when chosen: (port,
    process). The port can be taken by someone else before the peer binds it; a peer that
    then exits is started again on another port (three tries). One still not listening after
    ``timeout`` is killed and the error raised."""
    for attempt in range(3):
        port = free_port()
        proc = subprocess.Popen(command(port), cwd=ROOT, **popen)
        try:
            wait_port(port, proc, timeout)
            return port, proc
        except RuntimeError:
            if proc.poll() is None or attempt == 2:
                proc.kill()
                proc.wait()
                raise
            if proc.stderr is not None:
                proc.stderr.close()
    raise AssertionError("unreachable")


@contextlib.contextmanager
def _process(command: Callable[[int], list[str]]):
    """A peer on the server core for the ``with`` block: (port, process)."""
    port, proc = start_peer(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=lambda: os.sched_setaffinity(0, {server_core()}))
    try:
        yield port, proc
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()


def target_command(port: int, size: str = "mem:256M") -> list[str]:
    """``pynvmetcp target`` serving one memory namespace of ``size`` on ``port``."""
    return [sys.executable, "-m", "pynvmetcp", "target", "-q", "--listen", f"127.0.0.1:{port}",
            "--subsystem", NQN, "--namespace", size]


@contextlib.contextmanager
def target_process(size: str = "mem:256M"):
    with _process(lambda port: target_command(port, size)) as (port, proc):
        yield port, proc.pid


@contextlib.contextmanager
def bare_target(size: int = 256 << 20):
    with _process(lambda port: [sys.executable, "-c", BARE_TARGET, str(port), str(size)]) \
            as (port, _):
        yield port


@contextlib.contextmanager
def raw_server():
    with _process(lambda port: [sys.executable, "-c", RAW_SERVER, str(port)]) as (port, _):
        yield port


def recv_exact(sock: socket.socket, view: memoryview) -> None:
    """Fill ``view`` from ``sock`` (the peer closing first is an error, not a spin)."""
    got, size = 0, len(view)
    while got < size:
        n = sock.recv_into(view[got:])
        if not n:
            raise ConnectionError("the peer closed the connection")
        got += n


class RawClient:
    """Request/response over a plain socket: ``up`` bytes out, ``down`` bytes back."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray(1 << 20)
        self.mv = memoryview(self.buf)

    def call(self, up: bytes, down: int) -> None:
        """One round trip: ``up`` sent, ``down`` bytes received."""
        self.sock.sendall(len(up).to_bytes(8, "little") + down.to_bytes(8, "little") + up)
        self._receive(down)

    def stream_down(self, block: int, count: int) -> None:
        """A stream from the server: ``count`` blocks received into one block-sized buffer."""
        self.sock.sendall((0).to_bytes(8, "little") + (block * count).to_bytes(8, "little"))
        for _ in range(count):
            self._receive(block)

    def stream_up(self, data: bytes, count: int) -> None:
        """A stream to the server: ``data`` sent ``count`` times, then a 16-byte answer."""
        self.sock.sendall((len(data) * count).to_bytes(8, "little") + (16).to_bytes(8, "little"))
        for _ in range(count):
            self.sock.sendall(data)
        self._receive(16)

    def _receive(self, size: int) -> None:
        recv_exact(self.sock, self.mv[:size])

    def close(self) -> None:
        self.sock.close()


class BareHost:
    """The leanest NVMe/TCP host Python can be: a Read capsule packed in one struct call, its
    C2HData header, payload and CapsuleResp received with exact-size receives; no validation.
    Runs on a socket whose ICReq is done: its own (``connect``), or an I/O queue's of a
    pynvmetcp host brought up by the real Connect (nothing outstanding there meanwhile)."""

    CAPSULE = struct.Struct("<BBBBIBBHI16xQI3xBQH14x")  # CapsuleCmd + Read SQE, SGL transport
    HEADER = 24  # C2HData and CapsuleResp headers alike

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.hdr = memoryview(bytearray(self.HEADER))

    @classmethod
    def connect(cls, port: int) -> "BareHost":
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(struct.pack("<BBBBIHBBI112x", 0, 0, 128, 0, 128, 0, 0, 0, 0))
        if len(sock.recv(128, socket.MSG_WAITALL)) != 128:
            raise ConnectionError("no ICResp")
        return cls(sock)

    def _send(self, cid: int, slba: int, length: int) -> None:
        self.sock.sendall(self.CAPSULE.pack(4, 0, 72, 0, 72, 2, 0x40, cid, 1, 0, length, 0x5A,
                                            slba, length // 512 - 1))

    def _answer(self, bufs: list) -> None:
        recv_exact(self.sock, self.hdr)  # C2HData: the CID (bytes 8-9) picks the buffer
        cid = self.hdr[8] | self.hdr[9] << 8
        view = bufs[cid % len(bufs)]
        recv_exact(self.sock, view)
        recv_exact(self.sock, self.hdr)  # CapsuleResp

    def read(self, slba: int, buf: memoryview) -> None:
        """One read of ``len(buf)`` bytes at block ``slba`` (512-byte blocks), waited for."""
        self._send(0x400, slba, len(buf))
        self._answer([buf])

    def reads(self, slbas: list[int], bufs: list[memoryview]) -> None:
        """Reads kept ``len(bufs)`` deep, each into the buffer of its CID."""
        depth = len(bufs)
        for i in range(len(slbas) + depth):
            if i >= depth:
                self._answer(bufs)
            if i < len(slbas):
                self._send(0x400 + i % depth, slbas[i], len(bufs[0]))


#: 128 KiB of data for the benchmarks' writes.
PATTERN = bytes(range(256)) * 512


def fill_namespace(ns) -> None:
    """Write every block of namespace ``ns`` once (128 KiB, 8 deep) before anything is timed.

    A memory namespace is an anonymous mapping whose pages appear on first touch: an untouched
    page costs the target a page fault per 4 KiB (tens of µs per 128 KiB), which the raw
    server, sending from a buffer it already touched, never pays. Filling it first measures the
    transport, not the first touch."""
    from pynvmetcp.host import commands as C
    from pynvmetcp.host.procedures import Command

    blocks = len(PATTERN) // ns.block_size
    keep_deep(ns.ctrl.io[0], lambda i: Command(C.write(ns.nsid, i * blocks, blocks),
                                               write=PATTERN), ns.nblocks // blocks, 8)


def keep_deep(q, make, count: int, depth: int) -> None:
    """Commands ``make(0)`` … ``make(count - 1)`` on I/O queue ``q``, ``depth`` outstanding
    (a new one as each completes); a failed command raises."""
    for i in range(count + depth):
        if i >= depth and q.wait_any().status:
            raise RuntimeError("a benchmark command failed")
        if i < count:
            q.submit(make(i))

