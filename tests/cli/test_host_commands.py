"""The host-side `pynvmetcp` commands run as a user runs them (a subprocess per command) against
a userspace target on loopback: output shapes, data through stdout, and bad input answered in
one line with a non-zero exit."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pynvmetcp.target import ListenConfig, NamespaceConfig, SubsystemConfig, Target, TargetConfig

ROOT = Path(__file__).resolve().parents[2]
NQN = "nqn.2024-01.io.pynvmetcp:cli"
BLOCKS = (16 << 20) // 512


@pytest.fixture(scope="module")
def target():
    cfg = TargetConfig(listen=[ListenConfig("127.0.0.1", 0)],
                       subsystems=[SubsystemConfig(NQN, namespaces=[NamespaceConfig("mem:16M")])])
    with Target.serve(cfg) as t:
        yield t


def cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pynvmetcp", *map(str, args)], input=stdin,
                          capture_output=True, timeout=60, cwd=ROOT)


def at(target) -> list[str]:
    return ["-a", "127.0.0.1", "--trsvcid", str(target.port), "--nqn", NQN]


def test_version_is_the_installed_distributions():
    from importlib.metadata import version

    run = cli("--version")
    assert (run.returncode, run.stdout, run.stderr) == (
        0, f"pynvmetcp {version('pynvmetcp')}\n".encode(), b"")


def test_discover_table_and_json(target):
    run = cli("discover", "-a", "127.0.0.1", "-s", target.port)
    assert run.returncode == 0 and b"subnqn:  " + NQN.encode() in run.stdout
    assert b"eflags:  duplicate discovery information, explicit discovery connections" \
        in run.stdout
    records = json.loads(cli("discover", "-a", "127.0.0.1", "-s", target.port, "--json")
                         .stdout)["records"]
    assert {r["subnqn"] for r in records} == {NQN, "nqn.2014-08.org.nvmexpress.discovery"}



def test_discover_persistent_prints_every_change_until_interrupted():
    """-p stays connected: the log is printed at once and again after each discovery-log
    change (one JSON line each); Ctrl-C ends it with status 0 and nothing on stderr, and a
    controller that goes away ends it with one line and status 1."""
    cfg = TargetConfig(listen=[ListenConfig("127.0.0.1", 0)], subsystems=[SubsystemConfig(NQN)])
    with Target.serve(cfg) as t:
        proc = subprocess.Popen([sys.executable, "-m", "pynvmetcp", "discover", "-p", "--json",
                                 "-a", "127.0.0.1", "-s", str(t.port)], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            first = json.loads(proc.stdout.readline())
            assert NQN in {r["subnqn"] for r in first["records"]}
            t.add_subsystem("nqn.2024-01.io.pynvmetcp:cli-added")
            second = json.loads(proc.stdout.readline())  # printed because of the event
            assert second["genctr"] > first["genctr"]
            assert "nqn.2024-01.io.pynvmetcp:cli-added" in {r["subnqn"]
                                                            for r in second["records"]}
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=30) == 0, proc.stderr.read()
            assert proc.stderr.read() == b""
        finally:
            proc.kill()
            proc.wait()
        proc = subprocess.Popen([sys.executable, "-m", "pynvmetcp", "discover", "-p",
                                 "-a", "127.0.0.1", "-s", str(t.port)], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert b"Discovery Log Number of Records" in proc.stdout.readline() + \
            proc.stdout.readline()
    try:  # the target is gone
        assert proc.wait(timeout=30) == 1
        err = proc.stderr.read().decode()
        assert err.count("\n") == 1 and "discovery connection lost" in err, err
    finally:
        proc.kill()
        proc.wait()

def test_an_interrupt_sets_the_commands_stop_event_instead_of_raising():
    """``discover -p`` and ``connect --hold`` stop on SIGINT/SIGTERM between their own steps:
    the signal sets events, and no KeyboardInterrupt lands inside an exchange with the
    controller (one did, between a receive and the engine, and the shutdown after it waited
    30 s for an answer already lost). A second signal still interrupts, for an exchange that
    hangs."""
    from pynvmetcp.cli._host import stop_on_signals

    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for sig in before:
            changed = threading.Event()
            stop = stop_on_signals(changed)
            os.kill(os.getpid(), sig)  # handled before the next bytecode: no exception here
            assert stop.wait(10) and changed.is_set()
            with pytest.raises(KeyboardInterrupt):  # a second one: the user insists
                os.kill(os.getpid(), sig)
                threading.Event().wait(10)  # (the handler runs in this wait at the latest)
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


@pytest.mark.parametrize("raised,shutdown", [(KeyboardInterrupt, False), (RuntimeError, True),
                                             (None, True)])
def test_an_interrupted_command_drops_the_association_without_the_shutdown(
        target, monkeypatch, raised, shutdown):
    """A command's connection ends with the orderly shutdown (CC.SHN) when it finishes or
    fails, but not when it is interrupted: the interrupt may have cut an exchange short and
    the shutdown would wait for its answer. The real target; the close is observed."""
    from pynvmetcp.cli import build_parser
    from pynvmetcp.cli._host import userspace_controller
    from pynvmetcp.host.sync import Controller

    closes = []
    real = Controller.close
    monkeypatch.setattr(Controller, "close", lambda self, shutdown=True: (
        closes.append(shutdown), real(self, shutdown))[1])
    args = build_parser()[0].parse_args(["id-ctrl", "-a", "127.0.0.1", "--trsvcid",
                                         str(target.port), "--nqn", NQN])
    try:
        with userspace_controller(args) as ctrl:
            assert ctrl.namespace(1).nblocks == BLOCKS
            if raised is not None:
                raise raised()
    except BaseException as exc:
        assert type(exc) is raised
    assert closes == [shutdown]


def test_connect_userspace_passes_queue_options(target):
    run = cli("connect", "--userspace", "-a", "127.0.0.1", "-s", target.port, "-n", NQN,
              "-i", 2, "-Q", 16, "-l", 5, "-c", 1, "--json")
    assert run.returncode == 0, run.stderr
    info = json.loads(run.stdout)
    assert info["io_queues"] == 2 and info["namespaces"][0]["blocks"] == BLOCKS
    human = cli("connect", "--userspace", "-a", "127.0.0.1", "-s", target.port, "-n", NQN)
    assert b"(16.00 MiB)" in human.stdout and b"--hold keeps it" in human.stdout


def test_write_then_read_through_stdin_and_stdout_is_byte_exact(target, tmp_path):
    data = os.urandom(6 << 20)  # above the size where the progress bar appears
    w = cli("write", *at(target), "-s", 8, "-z", len(data), stdin=data)
    assert w.returncode == 0 and w.stdout == b"", w.stderr
    r = cli("read", *at(target), "-s", 8, "-z", len(data))
    assert r.returncode == 0 and r.stdout == data  # not a byte more (no progress on stdout)


def test_identify_and_the_effects_log(target):
    ctrl = json.loads(cli("id-ctrl", *at(target), "--json").stdout)
    assert ctrl["subnqn"] == NQN and ctrl["mdts"] > 0
    ns = cli("id-ns", *at(target), "-n", "0x1").stdout.decode()
    assert ns.count("\nnguid") + ns.startswith("nguid") == 1
    effects = json.loads(cli("get-log", *at(target), "-i", 5, "--json").stdout)
    assert effects["io"]["WRITE"] == "LBCC" and effects["io"]["READ"] == "-"
    assert "IDENTIFY" in effects["admin"]
    smart = cli("get-log", *at(target), "-i", 2).stdout.decode()
    assert "temperature                 : 20 °C (293 K)" in smart
    assert not any(k.startswith("rsvd") for k in json.loads(
        cli("get-log", *at(target), "-i", 2, "--json").stdout))


def _non_nvme_port():
    """A TCP server that answers like an HTTP server (as a proxy or web server would)."""
    srv = socket.create_server(("127.0.0.1", 0))

    def serve():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            c.recv(1024)
            c.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n" + bytes(120))
            c.close()
    threading.Thread(target=serve, daemon=True).start()
    return srv


@pytest.mark.parametrize("argv,expect", [
    (["read", "@", "-s", "-1", "-z", 512], "start block must be in 0.."),
    (["read", "@", "-s", "99999999999999999999", "-z", 512], "start block must be in 0.."),
    (["read", "@", "-s", BLOCKS, "-z", 512], f"do not fit namespace 1 ({BLOCKS} blocks"),
    (["read", "@", "-z", 100], "not a positive multiple of the 512-byte block size"),
    (["id-ns", "@", "-n", "-1"], "namespace ID must be in 1.."),
    (["get-log", "@", "-i", 300], "log page ID must be in 0..255"),
    (["get-log", "@", "-i", 2, "-l", 6], "log length 6 is not a multiple of 4"),
    (["connect", "-a", "127.0.0.1", "-n", NQN, "-k", "-1"], "keep-alive timeout must be"),
    (["connect", "-a", "127.0.0.1", "-n", NQN, "-k", "nan"], "keep-alive timeout must be"),
    (["connect", "-a", "127.0.0.1", "-n", NQN, "-Q", 1], "queue size must be in 2..65536"),
    (["discover", "-a", "127.0.0.1", "-I", "notauuid"], "host ID must be a UUID"),
    (["discover", "-a", "127.0.0.1", "-s", 70000], "port must be in 1..65535"),
    (["discover", "-a", "127.0.0.1", "-s", "CLOSED"], "127.0.0.1:CLOSED: Connection refused"),
    (["discover", "-a", "no-such-host.invalid"], "cannot resolve 'no-such-host.invalid'"),
    (["discover", "-a", "127.0.0.1", "-s", "HTTP"],
     ("error: 127.0.0.1:HTTP: connection setup", "is it an NVMe/TCP port?")),
    (["id-ctrl", "-a", "127.0.0.1"], "a subsystem NQN is needed (--nqn)"),
])
def test_bad_input_is_one_line_and_a_nonzero_exit(target, argv, expect, tmp_path):
    closed = socket.create_server(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    http = _non_nvme_port()
    subst = {"CLOSED": closed_port, "HTTP": http.getsockname()[1]}
    args = []
    for a in argv:
        args.extend(at(target) if a == "@" else [subst.get(a, a)])
    expect = [e.replace("CLOSED", str(closed_port)).replace("HTTP", str(subst["HTTP"]))
              for e in (expect if isinstance(expect, tuple) else (expect,))]
    try:
        run = cli(*args)
    finally:
        http.close()
    err = run.stderr.decode()
    assert run.returncode != 0 and err.count("\n") == 1 and "Traceback" not in err, err
    assert all(e in err for e in expect), err


def test_write_refuses_a_short_input_file_before_any_io(target, tmp_path):
    small = tmp_path / "small.bin"
    small.write_bytes(b"\x5a" * 100)
    cli("write", *at(target), "-s", 0, "-z", 4096, stdin=bytes(4096))
    run = cli("write", *at(target), "-s", 0, "-z", 4096, "-d", small)
    assert run.returncode == 2 and b"has 100 bytes, 4096 asked for" in run.stderr
    assert cli("read", *at(target), "-s", 0, "-z", 512).stdout == bytes(512)  # untouched


def test_a_reader_that_stops_early_ends_the_command_quietly(target):
    proc = subprocess.Popen([sys.executable, "-m", "pynvmetcp", "read", *at(target),
                             "-z", str(8 << 20)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=ROOT)
    proc.stdout.read(1)
    proc.stdout.close()  # as `| head -c1` does
    assert proc.wait(60) == 141 and proc.stderr.read() == b""
