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
import subprocess
import sys
import time
from pathlib import Path

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


def _wait_port(port: int, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"peer exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on port {port} after {timeout} s")


@contextlib.contextmanager
def _process(cmd: list[str], port: int):
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=lambda: os.sched_setaffinity(0, {server_core()}))
    try:
        _wait_port(port, proc)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextlib.contextmanager
def target_process(size: str = "mem:256M"):
    port = free_port()
    with _process([sys.executable, "-m", "pynvmetcp", "target", "-q", "--listen",
                   f"127.0.0.1:{port}", "--subsystem", NQN, "--namespace", size], port) as proc:
        yield port, proc.pid


@contextlib.contextmanager
def raw_server():
    port = free_port()
    with _process([sys.executable, "-c", RAW_SERVER, str(port)], port):
        yield port


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
        got = 0
        while got < size:
            n = self.sock.recv_into(self.mv[got:size])
            if not n:
                raise ConnectionError("raw server closed")
            got += n

    def close(self) -> None:
        self.sock.close()


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

