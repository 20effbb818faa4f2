"""`pynvmetcp target` as a process: serves until SIGINT/SIGTERM, one readable line on bad input."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import pynvmetcp

ROOT = Path(__file__).resolve().parents[2]
NQN = "nqn.2024-01.io.pynvmetcp:cli"


def cli(*args: str, **kw) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "pynvmetcp.cli.target", *args], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **kw)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def started(proc: subprocess.Popen) -> str:
    line = proc.stdout.readline()
    assert "serving" in line, proc.stderr.read() if proc.poll() is not None else line
    return line


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serves_then_stops_cleanly_on_a_signal(sig):
    port, dport = free_port(), free_port()
    proc = cli("--listen", f"127.0.0.1:{port}", "--discovery-port", str(dport),
               "--subsystem", NQN, "--namespace", "mem:8M", "-q")
    try:
        line = started(proc)
        assert f"127.0.0.1:{port}" in line and f"discovery on 127.0.0.1:{dport}" in line
        log = pynvmetcp.discover("127.0.0.1", dport)
        assert [e.subnqn for e in log.entries if e.subtype == 2] == [NQN]
        with pynvmetcp.connect("127.0.0.1", port, NQN) as c:
            ns = c.namespace(1)
            ns.write(0, b"\x42" * 4096)
            assert bytes(ns.read(0, 8)) == b"\x42" * 4096
            assert ns.size == 8 << 20
        proc.send_signal(sig)
        assert proc.wait(timeout=10) == 0
        assert "Traceback" not in proc.stderr.read()
    finally:
        proc.kill()


def test_several_subsystems_and_an_allow_list():
    port = free_port()
    allowed = "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-0000-0000-0000000000aa"
    proc = cli("--listen", f"127.0.0.1:{port}", "--subsystem", NQN, "--namespace", "mem:1M",
               "--namespace", "mem:2M", "--subsystem", NQN + "2", "--namespace", "mem:1M",
               "--allow-host", allowed, "-b", "4096")
    try:
        started(proc)
        log = pynvmetcp.discover("127.0.0.1", port, hostnqn=allowed)
        assert sorted(e.subnqn for e in log.entries if e.subtype == 2) == [NQN, NQN + "2"]
        with pynvmetcp.connect("127.0.0.1", port, NQN) as c:
            assert c.namespaces() == [1, 2]
            assert c.namespace(2).block_size == 4096
        with pytest.raises(pynvmetcp.NvmeStatusError, match="Invalid Host"):
            pynvmetcp.connect("127.0.0.1", port, NQN + "2", ctrl_loss_tmo=0)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


def test_config_file(tmp_path):
    port = free_port()
    cfg = tmp_path / "t.toml"
    cfg.write_text(f'[[listen]]\naddress = "127.0.0.1:{port}"\n[[subsystem]]\nnqn = "{NQN}"\n'
                   f'[[subsystem.namespace]]\npath = "{tmp_path / "d.img"}"\nsize = "1M"\n')
    proc = cli("--config", str(cfg))
    try:
        started(proc)
        with pynvmetcp.connect("127.0.0.1", port, NQN) as c:
            c.namespace(1).write(0, b"\x11" * 512)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    assert (tmp_path / "d.img").read_bytes()[:512] == b"\x11" * 512


@pytest.mark.parametrize("args,code,message", [
    (["--namespace", "mem:1M"], 2, "must follow a --subsystem"),
    (["--subsystem", "bogus", "--namespace", "mem:1M"], 2, "bogus"),
    (["--subsystem", NQN, "--namespace", "mem:1X"], 2, "not a size"),
    (["--subsystem", NQN, "--namespace", "/nonexistent/x"], 2, "does not exist"),
    (["--listen", "127.0.0.1:70000", "--subsystem", NQN], 2, "out of range"),
    (["--config", "/nonexistent.toml"], 2, "cannot read"),
])
def test_bad_input_is_one_line(args, code, message):
    proc = cli(*args)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == code
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("usage")
             and not line.startswith(" ")]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in err


def test_address_in_use():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        proc = cli("--listen", f"127.0.0.1:{s.getsockname()[1]}", "--subsystem", NQN)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1 and "cannot listen" in err and "Traceback" not in err
