"""Multi-step host procedures written once, as generators, for the blocking and asyncio hosts.

A procedure yields ``Command`` (execute on a queue, send back the Completion), ``OpenQueue``
(connect a queue's socket) or ``Sleep`` requests and returns its result; ``run_sync`` and
``run_async`` drive it. Controller bring-up, shutdown, the discovery log's genctr-checked paging
and transfers split by MDTS live here so the two hosts cannot drift apart. A failed command is
thrown into the procedure as NvmeStatusError, so a procedure may recover.
"""
from __future__ import annotations

import uuid as _uuid
from dataclasses import dataclass
from typing import Any, Callable, Generator, NamedTuple

from ..errors import NvmeStatusError, NvmeTcpError
from ..spec.fabrics import ADMIN_ICD_SIZE, Cap, CC_SHN_NORMAL, Csts, CSTS_SHST_COMPLETE
from ..spec.identify import IdentifyController, IdentifyNamespace, parse_ns_descriptors
from ..spec.logpages import DISC_ENTRY_LEN, DISC_HDR_LEN, DiscoveryLogEntry, DiscoveryLogHeader
from ..spec.opcodes import Cns, DYNAMIC_CNTLID, FeatureId, LogPageId, NvmOpcode, Property
from ..protocol.host import HostQueue
from . import commands as C

READ = int(NvmOpcode.READ)


class Command(NamedTuple):
    """One command for a queue (``queue`` -1: the next I/O queue, round-robin). A named tuple,
    not a frozen dataclass, because one is built per I/O and that costs a third as much."""

    sqe: bytes
    queue: int = 0
    write: Any = None
    read_len: int = 0
    read_into: Any = None
    timeout: float | None = None

    def submit_to(self, engine: HostQueue, context: object) -> int:
        """Hand the command to a queue's engine; returns its CID (what the queue drivers call,
        so a command type decides how it is submitted)."""
        return engine.submit(self.sqe, self.write, self.read_into, self.read_len, context)


class ReadInto:
    """A Read of ``nlb`` blocks (1-based) at ``slba`` into the caller's ``read_into`` buffer,
    kept as its values: the engine packs the capsule from them (``HostQueue.submit_read``), with
    no SQE built in between — the QD1 read path. Everywhere else it passes for a ``Command``:
    ``queue`` (the next I/O queue), ``timeout`` (the queue's), ``write``/``read_len``/
    ``read_into``, and ``sqe`` when one is asked for (error reports, drivers that submit SQEs
    such as the kernel's passthrough). Made by the function ``read_into``, not a constructor:
    as a named tuple it cost ~1k instructions more per read."""

    __slots__ = ("nsid", "slba", "nlb", "read_into")
    queue = -1
    timeout = None
    write = None
    read_len = 0

    @property
    def sqe(self) -> bytes:
        return C.read(self.nsid, self.slba, self.nlb)

    def submit_to(self, engine: HostQueue, context: object) -> int:
        return engine.submit_read(READ, self.nsid, self.slba, self.nlb, self.read_into, context)


_alloc = object.__new__


def read_into(nsid: int, slba: int, nlb: int, into: Any) -> ReadInto:
    """The ReadInto for a read of ``nlb`` blocks at ``slba`` into the buffer ``into``."""
    r = _alloc(ReadInto)
    r.nsid = nsid
    r.slba = slba
    r.nlb = nlb
    r.read_into = into
    return r


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


@dataclass(frozen=True, slots=True)
class OpenQueue:
    """Open the TCP connection of queue ``qid`` and exchange ICReq/ICResp (the driver's job)."""

    qid: int
    queue_size: int
    icd_size: int


Procedure = Generator["Command | Sleep", Any, Any]


def run_sync(proc: Procedure, execute: Callable[[Command], Any],
             sleep: Callable[[float], None]) -> Any:
    send: Any = None
    throw: BaseException | None = None
    while True:
        try:
            req = proc.throw(throw) if throw else proc.send(send)
        except StopIteration as stop:
            return stop.value
        send, throw = None, None
        try:
            if isinstance(req, Sleep):
                sleep(req.seconds)
            else:
                send = execute(req)
        except NvmeTcpError as exc:
            throw = exc


async def run_async(proc: Procedure, execute, sleep) -> Any:
    send: Any = None
    throw: BaseException | None = None
    while True:
        try:
            req = proc.throw(throw) if throw else proc.send(send)
        except StopIteration as stop:
            return stop.value
        send, throw = None, None
        try:
            if isinstance(req, Sleep):
                await sleep(req.seconds)
            else:
                send = await execute(req)
        except NvmeTcpError as exc:
            throw = exc


@dataclass(frozen=True, slots=True)
class Identity:
    """Who connects: the host NQN and host ID pair (the kernel pairs them 1:1, pitfall 19)."""

    hostnqn: str
    hostid: _uuid.UUID


def connect_queue(identity: Identity, subnqn: str, qid: int, queue_size: int, kato_ms: int,
                  cntlid: int = DYNAMIC_CNTLID, disable_sqflow: bool = False) -> Procedure:
    """Fabrics Connect on queue ``qid``; returns the controller ID the target allocated."""
    done = yield Command(C.connect(qid, queue_size - 1, kato_ms if qid == 0 else 0,
                                   disable_sqflow=disable_sqflow),
                         queue=qid,
                         write=C.connect_data(identity.hostid, cntlid, subnqn, identity.hostnqn))
    return done.dw0 & 0xFFFF


def in_order(commands: list[Command], result: Any = None) -> Procedure:
    """Execute ``commands`` one after another (the first failure ends it); return ``result``."""
    for command in commands:
        yield command
    return result


def get_property(prop: Property) -> Procedure:
    done = yield Command(C.property_get(prop))
    return done.dw0 | done.dw1 << 32


def enable(timeout_floor: float = 0.5) -> Procedure:
    """Property Get CAP/VS, set CC.EN and wait for CSTS.RDY within CAP.TO (as the kernel does)."""
    cap_raw = yield from get_property(Property.CAP)
    vs = yield from get_property(Property.VS)
    cap = Cap.parse(cap_raw.to_bytes(8, "little"))
    cc = 1 | 6 << 16 | 4 << 20  # EN, IOSQES 2^6 = 64 bytes, IOCQES 2^4 = 16 bytes
    yield Command(C.property_set(Property.CC, cc))
    yield from _wait_csts(lambda csts: csts.rdy, max(cap.to * 0.5, timeout_floor), "CSTS.RDY")
    return cap_raw, vs


def shutdown(timeout: float = 5.0) -> Procedure:
    """Normal shutdown: CC.SHN = 01b, then wait for CSTS.SHST = shutdown complete."""
    cc = yield from get_property(Property.CC)
    cc = (cc & ~(3 << 14)) | CC_SHN_NORMAL << 14
    yield Command(C.property_set(Property.CC, cc))
    yield from _wait_csts(lambda csts: csts.shst == CSTS_SHST_COMPLETE, timeout, "shutdown")


def _wait_csts(ready: Callable, timeout: float, what: str) -> Procedure:
    waited = 0.0
    delay = 0.001
    while True:
        raw = yield from get_property(Property.CSTS)
        csts = Csts.parse(raw.to_bytes(4, "little"))
        if csts.cfs:
            raise NvmeTcpError("controller fatal status (CSTS.CFS) while waiting for " + what)
        if ready(csts):
            return
        if waited >= timeout:
            raise NvmeTcpError(f"controller did not reach {what} within {timeout:.1f} s")
        yield Sleep(delay)
        waited += delay
        delay = min(delay * 2, 0.1)


def identify_controller() -> Procedure:
    done = yield Command(C.identify(Cns.CONTROLLER), read_len=4096)
    return IdentifyController.parse(done.data)


def identify_namespace(nsid: int) -> Procedure:
    done = yield Command(C.identify(Cns.NAMESPACE, nsid), read_len=4096)
    return IdentifyNamespace.parse(done.data)


def active_namespaces() -> Procedure:
    done = yield Command(C.identify(Cns.ACTIVE_NS_LIST), read_len=4096)
    raw = memoryview(done.data).cast("I")
    out = []
    for nsid in raw:
        if nsid == 0:
            break
        out.append(nsid)
    return out


def namespace_ids(nsid: int) -> Procedure:
    done = yield Command(C.identify(Cns.NS_ID_DESCRIPTORS, nsid), read_len=4096)
    return parse_ns_descriptors(bytes(done.data))


def set_queue_count(nr: int) -> Procedure:
    """Set Features Number of Queues; returns how many I/O queues the controller granted."""
    done = yield Command(C.set_features(FeatureId.NUM_QUEUES, (nr - 1) | (nr - 1) << 16))
    return min((done.dw0 & 0xFFFF) + 1, (done.dw0 >> 16) + 1, nr)


def get_log_page(lid: int, length: int, *, nsid: int = 0xFFFFFFFF, offset: int = 0,
                 lsp: int = 0, rae: bool = False, chunk: int = 1 << 16) -> Procedure:
    """Read ``length`` bytes of a log page, in pieces of at most ``chunk`` (dword aligned)."""
    out = bytearray()
    while len(out) < length:
        n = min(chunk, length - len(out))
        done = yield Command(C.get_log_page(lid, n, nsid=nsid, offset=offset + len(out),
                                            lsp=lsp, rae=rae), read_len=n)
        out += done.data
    return bytes(out)


@dataclass(frozen=True, slots=True)
class DiscoveryLog:
    genctr: int
    entries: list


def read_discovery_log(*, rae: bool = False, max_retries: int = 10, chunk: int = 1 << 16,
                       ) -> Procedure:
    """Header, entries at offset 1024, then the header again: retry while GENCTR moves. Every
    read but the final header keeps the event retained (RAE); the final one uses ``rae``."""
    for _ in range(max_retries):
        hdr_raw = yield from get_log_page(LogPageId.DISCOVERY, DISC_HDR_LEN, nsid=0, rae=True)
        hdr = DiscoveryLogHeader.parse(hdr_raw)
        body = b""
        if hdr.numrec:
            body = yield from get_log_page(LogPageId.DISCOVERY, hdr.numrec * DISC_ENTRY_LEN,
                                           nsid=0, offset=DISC_HDR_LEN, rae=True, chunk=chunk)
        again = DiscoveryLogHeader.parse((yield from get_log_page(
            LogPageId.DISCOVERY, DISC_HDR_LEN, nsid=0, rae=rae)))
        if again.genctr == hdr.genctr and again.numrec == hdr.numrec:
            entries = [DiscoveryLogEntry.parse(body[i:i + DISC_ENTRY_LEN])
                       for i in range(0, len(body), DISC_ENTRY_LEN)]
            return DiscoveryLog(hdr.genctr, entries)
    raise NvmeTcpError(f"discovery log kept changing (GENCTR) over {max_retries} reads")


@dataclass(frozen=True, slots=True)
class Association:
    """What bring-up learned: the controller ID, CAP, VS, Identify Controller, I/O queue count,
    and the event configuration that was restored (0: none asked for, or refused)."""

    cntlid: int
    cap: int
    vs: int
    id: Any
    io_queues: int
    aec: int = 0


ADMIN_QUEUE_SIZE = 32


def establish(identity: Identity, subnqn: str, *, nr_io_queues: int, queue_size: int,
              kato_ms: int, disable_sqflow: bool = False, aec: int = 0) -> Procedure:
    """A whole association as the kernel builds it: admin queue Connect (dynamic controller),
    enable, Identify, Asynchronous Event Configuration, Number of Queues, then one Connect per
    I/O queue with the allocated CNTLID.

    ``aec`` is the event configuration the host asked of the previous association: a new
    controller starts with its own default (pynvmetcp's and many others': nothing enabled), so
    without it the events a caller subscribed to would stop after a reconnect. A controller
    refusing it does not fail the association (``Association.aec`` is then 0)."""
    yield OpenQueue(0, ADMIN_QUEUE_SIZE, ADMIN_ICD_SIZE)
    cntlid = yield from connect_queue(identity, subnqn, 0, ADMIN_QUEUE_SIZE, kato_ms)
    cap, vs = yield from enable()
    idc = yield from identify_controller()
    if aec:
        try:
            yield Command(C.async_event_configuration(aec))
        except NvmeStatusError:
            aec = 0
    nr = (yield from set_queue_count(nr_io_queues)) if nr_io_queues else 0
    icd = max(idc.ioccsz * 16 - 64, 0)  # IOCCSZ counts the 64-byte SQE
    qsize = min(queue_size, (cap & 0xFFFF) + 1)  # CAP.MQES is 0's based
    for qid in range(1, nr + 1):
        yield OpenQueue(qid, qsize, icd)
        yield from connect_queue(identity, subnqn, qid, qsize, 0, cntlid, disable_sqflow)
    return Association(cntlid, cap, vs, idc, nr, aec)
