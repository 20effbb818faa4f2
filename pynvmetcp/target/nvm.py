"""The NVM command set on I/O queues: Read, Write, Compare, Write Zeroes, Dataset Management, Flush.

This is the hot path, so the SQE is read with precompiled ``struct`` calls rather than construct,
and the data goes straight between the backend and the queue: a Read hands the backend's buffer
(a ``memoryview`` slice for memory namespaces) to ``complete``; a Write gives the received buffer
to the backend. The checks follow the order a host would want them reported: namespace, path
(ANA), then LBA range, then the transfer length against the SGL.
"""
from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Callable

from ..spec.fabrics import CSTS_RDY
from ..spec.opcodes import AnaState, NvmOpcode
from ..spec.sqe import DSM_ATTR_DEALLOCATE, RW_CONTROL_FUA
from ..spec.status import (SC_ANA_INACCESSIBLE, SC_ANA_PERSISTENT_LOSS, SC_ANA_TRANSITION,
                           SC_COMPARE_FAILED, SC_INTERNAL, SC_LBA_RANGE, SC_SGL_INVALID_DATA,
                           SCT_MEDIA, SCT_PATH)
from .status import fail, invalid_ns, invalid_opcode, status

if TYPE_CHECKING:
    from .controller import Controller, QueueLink
    from .namespace import Namespace

SC_NS_WRITE_PROTECTED = 0x20
NSID_ALL = 0xFFFFFFFF
_NSID = struct.Struct("<I")
_RW = struct.Struct("<QHH")  # SLBA, NLB (0's based), control, at byte 40
_DSM = struct.Struct("<BxxxI")  # NR (0's based), attributes, at byte 40
_RANGE = struct.Struct("<IIQ")  # context attributes, NLB (1's based!), SLBA
_PATH_STATUS = {
    AnaState.INACCESSIBLE: SC_ANA_INACCESSIBLE,
    AnaState.PERSISTENT_LOSS: SC_ANA_PERSISTENT_LOSS,
    AnaState.CHANGE: SC_ANA_TRANSITION,
}


def execute(ctrl: Controller, q: QueueLink, cid: int, sqe: bytes, data, c2h_length: int) -> None:
    handler = IO_COMMANDS.get(sqe[0])
    if handler is None:
        raise invalid_opcode()
    handler(ctrl, q, cid, sqe, data, c2h_length)


def _namespace(ctrl: Controller, q: QueueLink, nsid: int) -> Namespace:
    ns = ctrl.subsystem.namespaces.get(nsid)
    if ns is None or (ns.hosts is not None and ctrl.hostnqn not in ns.hosts):
        raise invalid_ns()
    state = ctrl.subsystem.ana_state(q.port.portid, ns.ana_group)
    if state in _PATH_STATUS:  # a path error: another path may work, so no DNR
        raise fail(_PATH_STATUS[state], SCT_PATH, dnr=False)
    return ns


def _range(ns: Namespace, sqe: bytes) -> tuple[int, int, int]:
    """(byte offset, byte length, control) of an LBA-range command, bounds-checked."""
    slba, nlb, control = _RW.unpack_from(sqe, 40)
    nlb += 1
    if slba + nlb > ns.nblocks:
        raise fail(SC_LBA_RANGE)
    shift = ns.lba_shift
    return slba << shift, nlb << shift, control


def read_lane(ctrl: Controller, q: QueueLink) -> Callable[[int, int, int, int], object]:
    """``_read``'s checks and work for the queue engine's read lane, on the values it unpacked
    from the SQE: the data of a Read that succeeds (exactly ``length`` bytes), else None and the
    lane leaves the command to ``execute`` (which reports the failure, records it in the error
    log, and so on) — a backend that fails or answers short included. The same
    facts are read at every call (controller state, namespace table, access list, ANA state),
    so a change made between two commands applies to the next one as it does on the full path."""
    subsystem = ctrl.subsystem
    namespaces = subsystem.namespaces
    ana = subsystem.ana_states
    hostnqn = ctrl.hostnqn
    portid = q.port.portid
    clock = ctrl.clock

    def read(nsid: int, slba: int, nlb: int, length: int):
        if not ctrl.csts & CSTS_RDY:
            return None
        ns = namespaces.get(nsid)
        if (ns is None or (ns.hosts is not None and hostnqn not in ns.hosts)
                or ana.get((portid, ns.ana_group)) in _PATH_STATUS):
            return None
        shift = ns.lba_shift
        nlb += 1
        backend = ns.backend
        if slba + nlb > backend.size >> shift or nlb << shift != length:
            return None
        ctrl.keepalive.last = clock()
        try:
            data = backend.read(slba << shift, length)
        except Exception:  # the full path reads again, and reports the failure
            return None
        if len(data) != length:  # short, or not in bytes: the full path's checks decide
            return None
        ns.read_cmds += 1
        ns.bytes_read += length
        return data

    return read


def _writable(ns: Namespace) -> None:
    if ns.readonly:
        raise fail(SC_NS_WRITE_PROTECTED)


def _read(ctrl, q, cid, sqe, data, c2h_length) -> None:
    ns = _namespace(ctrl, q, _NSID.unpack_from(sqe, 4)[0])
    offset, length, _ = _range(ns, sqe)
    if c2h_length != length:
        raise fail(SC_SGL_INVALID_DATA)
    buf = ns.backend.read(offset, length)
    if len(buf) != length:  # a backend's fault; sent as it is, the host would find a short read
        raise fail(SC_INTERNAL, dnr=False)
    ns.read_cmds += 1
    ns.bytes_read += length
    q.complete(cid, 0, data=buf)


def _write(ctrl, q, cid, sqe, data, c2h_length) -> None:
    ns = _namespace(ctrl, q, _NSID.unpack_from(sqe, 4)[0])
    offset, length, control = _range(ns, sqe)
    if data is None or len(data) != length:
        raise fail(SC_SGL_INVALID_DATA)
    _writable(ns)
    ns.backend.write(offset, data, bool(control & RW_CONTROL_FUA) or not ctrl.wce)
    ns.write_cmds += 1
    ns.bytes_written += length
    q.complete(cid, 0)


def _compare(ctrl, q, cid, sqe, data, c2h_length) -> None:
    ns = _namespace(ctrl, q, _NSID.unpack_from(sqe, 4)[0])
    offset, length, _ = _range(ns, sqe)
    if data is None or len(data) != length:
        raise fail(SC_SGL_INVALID_DATA)
    ns.read_cmds += 1
    ns.bytes_read += length
    if memoryview(ns.backend.read(offset, length)) != memoryview(data).cast("B"):
        raise fail(SC_COMPARE_FAILED, SCT_MEDIA)
    q.complete(cid, 0)


def _write_zeroes(ctrl, q, cid, sqe, data, c2h_length) -> None:
    ns = _namespace(ctrl, q, _NSID.unpack_from(sqe, 4)[0])
    offset, length, _ = _range(ns, sqe)  # DEAC or not, the blocks read back as zeros
    _writable(ns)
    ns.backend.write_zeroes(offset, length)
    ns.write_cmds += 1
    q.complete(cid, 0)


def _dataset_management(ctrl, q, cid, sqe, data, c2h_length) -> None:
    ns = _namespace(ctrl, q, _NSID.unpack_from(sqe, 4)[0])
    nr, attributes = _DSM.unpack_from(sqe, 40)
    nr += 1
    if data is None or len(data) < nr * _RANGE.size:
        raise fail(SC_SGL_INVALID_DATA)
    if not attributes & DSM_ATTR_DEALLOCATE:
        q.complete(cid, 0)  # only access hints: nothing to do
        return
    _writable(ns)
    ranges = []
    for i in range(nr):
        _cattr, nlb, slba = _RANGE.unpack_from(data, i * _RANGE.size)
        if slba + nlb > ns.nblocks:
            raise fail(SC_LBA_RANGE)  # checked for every range before any is changed
        if nlb:
            ranges.append((slba << ns.lba_shift, nlb << ns.lba_shift))
    for offset, length in ranges:
        ns.backend.write_zeroes(offset, length)
    q.complete(cid, 0)


def _flush(ctrl, q, cid, sqe, data, c2h_length) -> None:
    nsid = _NSID.unpack_from(sqe, 4)[0]
    if nsid == NSID_ALL:
        backends = [ctrl.subsystem.namespaces[n].backend for n in ctrl.visible_nsids()]
    else:
        backends = [_namespace(ctrl, q, nsid).backend]
    slow = [b for b in backends if b.blocking_flush]
    if not slow:
        q.complete(cid, 0)
        return

    def flush_all() -> None:
        for b in slow:
            b.flush()

    def done(exc: BaseException | None) -> None:
        q.complete(cid, 0 if exc is None else status(SC_INTERNAL, dnr=False))

    q.defer(flush_all, done)  # fsync may take long: other queues keep going meanwhile


IO_COMMANDS: dict[int, Callable] = {
    NvmOpcode.READ: _read,
    NvmOpcode.WRITE: _write,
    NvmOpcode.COMPARE: _compare,
    NvmOpcode.WRITE_ZEROES: _write_zeroes,
    NvmOpcode.DATASET_MANAGEMENT: _dataset_management,
    NvmOpcode.FLUSH: _flush,
}
#: The I/O commands that may change logical block content.
CHANGES_DATA = {NvmOpcode.WRITE, NvmOpcode.WRITE_ZEROES, NvmOpcode.DATASET_MANAGEMENT}
