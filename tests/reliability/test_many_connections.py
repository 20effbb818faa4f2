"""Thousands of connections and slow senders against a target process: memory stays bounded,
idle and slow connections are closed after connect_timeout, and a well-behaved host keeps doing
verified I/O meanwhile."""
from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
from pathlib import Path

import pynvmetcp
from tests.polling import poll

ROOT = Path(__file__).resolve().parents[2]
NQN = "nqn.2024-01.io.pynvmetcp:crowd"
CONNECTIONS = 2000


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_thousands_of_idle_and_slow_connections(tmp_path):
    _raise_nofile()
    port = _free_port()
    cfg = tmp_path / "t.toml"
    cfg.write_text(f"""
[target]
connect_timeout = 2.0
[[listen]]
address = "127.0.0.1:{port}"
[[subsystem]]
nqn = "{NQN}"
[[subsystem.namespace]]
path = "mem:8M"
""")
    proc = subprocess.Popen([sys.executable, "-m", "pynvmetcp", "target", "-q", "--config",
                             str(cfg)], cwd=ROOT, preexec_fn=_raise_nofile,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    crowd: list[socket.socket] = []
    try:
        assert poll(lambda: _connectable(port), 20, 0.05)
        with pynvmetcp.connect("127.0.0.1", port, NQN, kato=5) as ctrl:
            ns = ctrl.namespace(1)
            base = _rss_kib(proc.pid)
            for i in range(CONNECTIONS):
                s = socket.create_connection(("127.0.0.1", port))
                if i % 10 == 0:
                    s.sendall(b"\x00")  # a slowloris: one byte of an ICReq, then nothing
                crowd.append(s)
            data = os.urandom(8192)
            ns.write(0, data)  # the bystander is served while 2000 sockets hang around
            assert bytes(ns.read(0, 16)) == data
            peak = _rss_kib(proc.pid)
            # ~2000 connections must not cost more than ~100 KiB each
            assert peak - base < CONNECTIONS * 100
            # after connect_timeout every connection that never sent Connect is closed
            closed = poll(lambda: all(_closed(s) for s in crowd), 30, 0.05)
            assert closed
            ns.write(0, data[::-1])
            assert bytes(ns.read(0, 16)) == data[::-1]
            assert proc.poll() is None
    finally:
        for s in crowd:
            s.close()
        proc.terminate()
        proc.wait(10)


def _connectable(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
        return True
    except OSError:
        return False


def _closed(s: socket.socket) -> bool:
    s.setblocking(False)
    try:
        return s.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
