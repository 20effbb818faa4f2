"""The Fabrics Connect command: which controller a new queue belongs to, or why it cannot join.

An admin-queue Connect (QID 0) creates a controller with a dynamically allocated CNTLID (the host
sends CNTLID FFFFh); an I/O-queue Connect must name that CNTLID with the same host NQN, host ID and
subsystem NQN. A refusal carries the status a host can act on: Connect Invalid Parameters with
IATTR/IPO pointing at the offending field (pitfall 18), Connect Invalid Host for a host outside
the access list, Controller Busy when no CNTLID is left. Fields are checked in the order they
appear (SQE first, then the connect data), so the lowest offending field is the one reported.
"""
from __future__ import annotations

import logging
import struct
import uuid as _uuid
from typing import TYPE_CHECKING, Callable

from ..spec.fabrics import CONNECT_DATA_LEN, CONNECT_DATA_OFFSET
from ..spec.opcodes import DYNAMIC_CNTLID
from ..spec.sqe import CONNECT_CATTR_DISABLE_SQFLOW
from ..spec.status import (SC_CONNECT_CTRL_BUSY, SC_CONNECT_FORMAT, SC_CONNECT_INVALID_HOST,
                           SC_CONNECT_INVALID_PARAM, SC_SGL_INVALID_DATA)
from .controller import Controller, ControllerOptions, QueueLink
from .nqn import nqn_problem
from .status import connect_error, fail, ipo, sequence_error

if TYPE_CHECKING:
    from .registry import Registry

log = logging.getLogger(__name__)

_CONNECT = struct.Struct("<HHHBxI")  # RECFMT, QID, SQSIZE, CATTR, KATO at byte 40
SQE_OFFSET = {"recfmt": 40, "qid": 42, "sqsize": 44, "cattr": 46, "kato": 48}


def _invalid(field: str, in_data: bool = True):
    offset = CONNECT_DATA_OFFSET[field] if in_data else SQE_OFFSET[field]
    return connect_error(SC_CONNECT_INVALID_PARAM, dw0=ipo(offset, in_data))


def _nqn(raw: bytes, field: str) -> str:
    """A NUL-terminated NQN from its 256-byte field; malformed → Invalid Parameters at it."""
    end = raw.find(b"\0")
    if end < 0:
        raise _invalid(field)
    try:
        nqn = raw[:end].decode("utf-8")
    except UnicodeDecodeError:
        raise _invalid(field) from None
    why = nqn_problem(nqn)
    if why:
        log.info("Connect refused: %s %r: %s", field, nqn, why)
        raise _invalid(field)
    return nqn


class Accepted:
    """A successful Connect: the controller, the queue it now is, and its negotiated shape."""

    __slots__ = ("controller", "qid", "sqsize", "sqflow_disabled")

    def __init__(self, controller: Controller, qid: int, sqsize: int,
                 sqflow_disabled: bool) -> None:
        self.controller = controller
        self.qid = qid
        self.sqsize = sqsize
        self.sqflow_disabled = sqflow_disabled


def connect(registry: Registry, link: QueueLink, sqe: bytes, data, *,
            options: ControllerOptions, clock: Callable[[], float]) -> Accepted:
    """Accept a Connect or raise the NvmeStatusError to answer it with."""
    recfmt, qid, sqsize, cattr, kato = _CONNECT.unpack_from(sqe, 40)
    if recfmt != 0:
        raise connect_error(SC_CONNECT_FORMAT)
    if sqsize == 0 or sqsize >= options.max_queue_size:
        raise _invalid("sqsize", in_data=False)
    if data is None or len(data) != CONNECT_DATA_LEN:
        raise fail(SC_SGL_INVALID_DATA)
    raw = bytes(data)
    hostid = _uuid.UUID(bytes=raw[0:16])
    cntlid = int.from_bytes(raw[16:18], "little")
    subnqn = _nqn(raw[256:512], "subnqn")
    hostnqn = _nqn(raw[512:768], "hostnqn")
    sub = registry.find(subnqn)
    if sub is None or not (sub.is_discovery or sub.exported_on(link.port)):
        log.info("Connect refused: no subsystem %s on port %s", subnqn, link.port)
        raise _invalid("subnqn")
    if not sub.host_allowed(hostnqn):
        log.info("Connect refused: host %s may not use %s", hostnqn, subnqn)
        raise connect_error(SC_CONNECT_INVALID_HOST,
                            dw0=ipo(CONNECT_DATA_OFFSET["hostnqn"], True))
    sqflow_disabled = bool(cattr & CONNECT_CATTR_DISABLE_SQFLOW)
    if qid == 0:
        if cntlid != DYNAMIC_CNTLID:
            raise _invalid("cntlid")  # only the dynamic controller model is offered
        new = sub.alloc_cntlid()
        if new is None:
            raise connect_error(SC_CONNECT_CTRL_BUSY)
        ctrl = Controller(sub, new, hostnqn=hostnqn, hostid=hostid, admin=link, kato_ms=kato,
                          clock=clock, options=options)
        sub.controllers[new] = ctrl
        log.info("controller %d of %s for %s (%s) via %s, kato %d ms", new, subnqn, hostnqn,
                 hostid, link.port, kato)
        return Accepted(ctrl, 0, sqsize, sqflow_disabled)
    if sub.is_discovery:
        raise _invalid("qid", in_data=False)  # a discovery controller has no I/O queues
    ctrl = sub.controllers.get(cntlid)
    if ctrl is None or not ctrl.alive:
        raise _invalid("cntlid")
    if ctrl.hostnqn != hostnqn:
        raise _invalid("hostnqn")
    if ctrl.hostid != hostid:
        raise _invalid("hostid")
    if not ctrl.ready:
        raise sequence_error()  # I/O queues only join an enabled controller
    if qid > ctrl.nr_io_queues:
        raise _invalid("qid", in_data=False)
    if qid in ctrl.io:
        raise sequence_error()  # that queue exists already
    ctrl.attach_io(qid, link)
    log.debug("controller %d: I/O queue %d connected (sqsize %d)", cntlid, qid, sqsize)
    return Accepted(ctrl, qid, sqsize, sqflow_disabled)
