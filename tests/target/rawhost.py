"""A minimal blocking NVMe/TCP host for target tests: one socket and one sans-I/O HostQueue.

It deliberately does nothing on its own (no Connect, no enable) so tests can send any command in
any order, or raw bytes, and look at exactly what the target answered.
"""
from __future__ import annotations

import socket
import time
import uuid

from pynvmetcp.host import commands as C
from pynvmetcp.protocol import Completion, HostQueue, IcComplete
from pynvmetcp.spec.opcodes import DYNAMIC_CNTLID, Property
from pynvmetcp.wire import codec
from pynvmetcp.wire.framer import Framer

HOSTID = uuid.UUID("9e1bca8c-5f5e-4b3b-8d3e-2b6a1d0c7f11")
HOSTNQN = f"nqn.2014-08.org.nvmexpress:uuid:{HOSTID}"
OTHER_HOSTID = uuid.UUID("0c5a3d7e-1b2c-4d5e-8f90-a1b2c3d4e5f6")
OTHER_HOSTNQN = f"nqn.2014-08.org.nvmexpress:uuid:{OTHER_HOSTID}"


def sct(c: Completion) -> int:
    return (c.status >> 8) & 7


def sc(c: Completion) -> int:
    return c.status & 0xFF


def dnr(c: Completion) -> bool:
    return bool(c.status & 0x4000)


class RawQueue:
    def __init__(self, port: int, qid: int = 0, *, hdgst: bool = False, ddgst: bool = False,
                 queue_size: int = 32, icd_size: int | None = None, ic: bool = True,
                 host: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection((host, port), timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.engine = HostQueue(qid, queue_size=queue_size, hdgst=hdgst, ddgst=ddgst,
                                icd_size=icd_size)
        self.done: dict[int, Completion] = {}
        self.events: list = []
        if ic:
            self.engine.initiate()
            self._send()
            deadline = time.monotonic() + 5
            while not any(isinstance(e, IcComplete) for e in self.events):
                self._pump(deadline)

    # ---- plumbing ----
    def _send(self) -> None:
        for buf in self.engine.data_to_send():
            self.sock.sendall(buf)

    def _pump(self, deadline: float) -> None:
        self.sock.settimeout(max(0.01, deadline - time.monotonic()))
        data = self.sock.recv(1 << 20)
        if not data:
            raise ConnectionError("target closed the connection")
        for ev in self.engine.receive(data):
            if isinstance(ev, Completion):
                self.done[ev.cid] = ev
            else:
                self.events.append(ev)
        self._send()

    # ---- commands ----
    def submit(self, sqe: bytes, **kw) -> int:
        cid = self.engine.submit(sqe, **kw)
        self._send()
        return cid

    def wait(self, cid: int, timeout: float = 5.0) -> Completion:
        deadline = time.monotonic() + timeout
        while cid not in self.done:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no completion for cid {cid}")
            self._pump(deadline)
        return self.done.pop(cid)

    def cmd(self, sqe: bytes, timeout: float = 5.0, **kw) -> Completion:
        return self.wait(self.submit(sqe, **kw), timeout)

    def ok(self, sqe: bytes, **kw) -> Completion:
        c = self.cmd(sqe, **kw)
        assert c.status == 0, f"status {c.status:#x}"
        return c

    def connect(self, subnqn: str, *, hostnqn: str = HOSTNQN, hostid: uuid.UUID = HOSTID,
                cntlid: int = DYNAMIC_CNTLID, sqsize: int = 31, kato: int = 0,
                disable_sqflow: bool = False, qid: int | None = None) -> Completion:
        qid = self.engine.qid if qid is None else qid
        return self.cmd(C.connect(qid, sqsize, kato, disable_sqflow=disable_sqflow),
                        write=C.connect_data(hostid, cntlid, subnqn, hostnqn))

    def prop_get(self, prop: Property) -> int:
        c = self.ok(C.property_get(prop))
        return c.dw0 | c.dw1 << 32

    def enable(self) -> None:
        self.ok(C.property_set(Property.CC, 1 | 6 << 16 | 4 << 20))
        assert self.prop_get(Property.CSTS) & 1

    # ---- raw bytes ----
    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_until_closed(self, timeout: float = 5.0) -> bytes:
        """Everything the target sends until it closes the connection."""
        out = bytearray()
        deadline = time.monotonic() + timeout
        while True:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                raise TimeoutError("target did not close the connection") from None
            except ConnectionResetError:
                return bytes(out)
            if not data:
                return bytes(out)
            out += data

    def close(self) -> None:
        self.sock.close()


def decode_pdus(data: bytes, *, hdgst: bool = False, ddgst: bool = False) -> list:
    framer = Framer("host")
    framer.hdgst, framer.ddgst = hdgst, ddgst
    return framer.feed(data)


def admin(port: int, subnqn: str, *, enable: bool = True, **kw) -> tuple[RawQueue, int]:
    """An admin queue connected (and enabled) to ``subnqn``; returns (queue, cntlid)."""
    q = RawQueue(port, 0, **{k: kw.pop(k) for k in ("hdgst", "ddgst") if k in kw})
    c = q.connect(subnqn, **kw)
    assert c.status == 0, f"admin connect failed: {c.status:#x}"
    if enable:
        q.enable()
    return q, c.dw0 & 0xFFFF


def io_queue(port: int, subnqn: str, cntlid: int, qid: int = 1, **kw) -> RawQueue:
    queue_size = kw.pop("queue_size", 32)
    q = RawQueue(port, qid, queue_size=queue_size, icd_size=kw.pop("icd_size", 131072))
    c = q.connect(subnqn, cntlid=cntlid, sqsize=queue_size - 1, **kw)
    assert c.status == 0, f"I/O connect failed: {c.status:#x}"
    return q


__all__ = ["RawQueue", "admin", "io_queue", "decode_pdus", "sc", "sct", "dnr", "HOSTID",
           "HOSTNQN", "OTHER_HOSTID", "OTHER_HOSTNQN", "codec"]
