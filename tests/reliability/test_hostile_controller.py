"""Hostile controllers against the host: a raw-socket fake controller misbehaves at each step of
bring-up; the host raises a clear error (after an H2CTermReq where the spec asks for one), and a
host talking to a real target at the same time completes verified I/O throughout."""
from __future__ import annotations

import os
import socket
import threading

import pytest

import pynvmetcp
from pynvmetcp.errors import (CommandTimeout, ConnectionLost, ProtocolError,
                              TermReqReceived)
from pynvmetcp.spec.pdu import Fes, PduType
from pynvmetcp.target import (ListenConfig, NamespaceConfig, SubsystemConfig, Target,
                              TargetConfig)
from pynvmetcp.wire import codec
from pynvmetcp.wire.framer import Framer

NQN = "nqn.2024-01.io.pynvmetcp:hostile"


class FakeController:
    """Accepts one connection and answers with ``script(sock, first_capsule_cid)``."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.srv = socket.create_server(("127.0.0.1", 0))
        self.port = self.srv.getsockname()[1]
        self.received = b""
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _recv_until(self, sock, n: int) -> bytes:
        while len(self.received) < n:
            chunk = sock.recv(65536)
            if not chunk:
                break
            self.received += chunk
        return self.received

    def _serve(self) -> None:
        sock, _ = self.srv.accept()
        sock.settimeout(5)
        try:
            self._recv_until(sock, 128)  # ICReq
            b = self.behaviour
            if b == "silence":
                self._recv_until(sock, 10**9)
                return
            sock.sendall(codec.ic_resp(dgst=3 if b == "digests" else 0))
            if b == "digests":
                self._recv_until(sock, 128 + 24)
                return
            data = self._recv_until(sock, 128 + 72 + 1024)  # the Connect capsule + data
            cid = int.from_bytes(data[128 + 10:128 + 12], "little")
            if b == "unknown_cid":
                sock.sendall(codec.encode(codec.capsule_resp(cid + 1)))
            elif b == "c2h_beyond":
                sock.sendall(codec.encode(codec.c2h_data(cid, 0, bytes(4096), last=True)))
            elif b == "termreq":
                sock.sendall(codec.term_req(PduType.C2HTermReq, Fes.PDU_SEQUENCE_ERROR))
            elif b == "garbage":
                sock.sendall(b"\xff" * 64)
            self._recv_until(sock, 128 + 72 + 1024 + 24)  # an H2CTermReq, if one comes
        except OSError:
            pass
        finally:
            sock.close()
            self.srv.close()

    def host_termreq(self):
        rest = self.received[128:]
        while rest and rest[0] == PduType.CapsuleCmd:
            rest = rest[int.from_bytes(rest[4:8], "little"):]
        if not rest or rest[0] != PduType.H2CTermReq:
            return None
        (pdu,) = Framer("controller").feed(rest[:int.from_bytes(rest[4:8], "little")])
        return pdu


@pytest.fixture(scope="module")
def good_target():
    cfg = TargetConfig(listen=[ListenConfig("127.0.0.1", 0)],
                       subsystems=[SubsystemConfig(NQN, namespaces=[NamespaceConfig("mem:8M")])])
    with Target.serve(cfg) as t:
        yield t


@pytest.fixture
def bystander(good_target):
    """A well-behaved host doing verified I/O while the hostile case runs."""
    stop = threading.Event()
    failures: list = []
    count = [0]

    def run():
        try:
            with pynvmetcp.connect("127.0.0.1", good_target.port, NQN) as ctrl:
                ns = ctrl.namespace(1)
                while not stop.is_set():
                    data = os.urandom(4096)
                    ns.write(0, data)
                    if bytes(ns.read(0, 8)) != data:
                        failures.append("wrong data")
                    count[0] += 1
        except Exception as exc:
            failures.append(exc)

    t = threading.Thread(target=run)
    t.start()
    started = threading.Event()
    for _ in range(200):  # bounded wait until it is doing I/O
        if count[0] or failures:
            break
        started.wait(0.05)
    before = count[0]
    yield
    after = count[0]
    for _ in range(200):  # and it keeps doing I/O after the hostile case
        if count[0] > after + 10 or failures:
            break
        started.wait(0.05)
    stop.set()
    t.join(10)
    assert not failures and before > 0 and count[0] > after


@pytest.mark.parametrize("behaviour,error,fes", [
    ("digests", ProtocolError, Fes.UNSUPPORTED_PARAMETER),
    ("unknown_cid", ProtocolError, Fes.INVALID_HEADER_FIELD),
    ("c2h_beyond", ProtocolError, Fes.INVALID_HEADER_FIELD),
    ("garbage", ProtocolError, Fes.INVALID_HEADER_FIELD),
    ("termreq", TermReqReceived, None),
])
def test_host_answers_hostile_controllers(bystander, behaviour, error, fes):
    fake = FakeController(behaviour)
    with pytest.raises(error) as err:
        pynvmetcp.connect("127.0.0.1", fake.port, NQN, nr_io_queues=0, ctrl_loss_tmo=0,
                          timeout=5, connect_timeout=5)
    fake.thread.join(10)
    term = fake.host_termreq()
    if fes is None:  # a TermReq is never answered with a TermReq
        assert err.value.fes == Fes.PDU_SEQUENCE_ERROR and term is None
    else:
        assert err.value.fes == fes
        assert term is not None and term.fes == fes and term.fei == err.value.fei


def test_silent_controller_times_out(bystander):
    fake = FakeController("silence")
    with pytest.raises((ConnectionLost, CommandTimeout, OSError)):
        pynvmetcp.connect("127.0.0.1", fake.port, NQN, ctrl_loss_tmo=0, connect_timeout=1)
