"""One controller: an admin queue and the I/O queues that share its CNTLID (an association).

The controller is transport-free: a queue is anything with ``complete()``/``close()`` (the server's
connection), and time comes from the clock it is given. It owns the state a host changes with
admin commands (CC/CSTS, features, keep-alive, armed AERs, changed-namespace list, error log) and
dispatches every command: admin ones here, NVM I/O ones in ``nvm``. A handler answers by calling
``queue.complete``; a refusal is an ``NvmeStatusError`` raised to ``execute``, which completes the
command with that status (and records it in the error log).
"""
from __future__ import annotations

import logging
import struct
import uuid as _uuid
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Protocol

from ..errors import NvmeStatusError
from ..protocol.aer import AerQueue, AsyncEvent
from ..protocol.controller import DEFAULT_IO_ICD_SIZE
from ..protocol.keepalive import ControllerKeepAlive
from ..spec.fabrics import (CC_EN, CC_SHN_ABRUPT, CC_SHN_NORMAL, CSTS_CFS, CSTS_RDY,
                            CSTS_SHST_COMPLETE)
from ..spec.identify import NOTICE_AEC_BIT
from ..spec.opcodes import (AdminOpcode, AsyncEventNotice, AsyncEventType, Cns, FabricsType,
                            FeatureId, LogPageId, Property)
from ..spec.status import (SC_AER_LIMIT, SC_FEATURE_NOT_SAVEABLE, SC_INTERNAL,
                           SC_SGL_INVALID_DATA, SCT_COMMAND_SPECIFIC)
from . import nvm, pages
from .status import fail, invalid_field, invalid_ns, invalid_opcode, sequence_error, status

if TYPE_CHECKING:
    from .discovery import DiscoverySubsystem
    from .namespace import Namespace
    from .port import Port
    from .subsystem import Subsystem

log = logging.getLogger(__name__)

SC_INVALID_QUEUE_TYPE = 0x85  # Fabrics command-specific: Disconnect on the admin queue
CAP_CQR = 1 << 16
CAP_CSS_NVM = 1 << 37
CAP_TO = 15  # 500 ms units: 7.5 s for CSTS.RDY (it is immediate here)
NSID_ALL = 0xFFFFFFFF
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_LOG = struct.Struct("<BBHHHQ")  # lid, lsp|rae, numdl, numdu, lsi, lpo at byte 40
_PROP = struct.Struct("<B3xI")  # attrib, offset at byte 40


@dataclass(frozen=True)
class ControllerOptions:
    """Target-wide limits every controller advertises (and every queue engine enforces)."""

    max_queue_size: int = 1024  # CAP.MQES + 1 and MAXCMD
    max_transfer: int = 1 << 20  # MDTS; must match the queue engine's max_transfer
    icd_size: int = DEFAULT_IO_ICD_SIZE  # in-capsule data bytes on I/O queues (IOCCSZ)
    aer_limit: int = pages.AERL + 1
    #: Plain Reads on I/O queues take the queue engine's read lane (``ControllerQueue.
    #: buffer_updated``); False sends every command the full way (the lane's tests compare).
    read_lane: bool = True

    def __post_init__(self) -> None:
        if not 2 <= self.max_queue_size <= 65536:
            raise ValueError("max_queue_size must be 2..65536")
        mt = self.max_transfer
        if mt < 4096 or mt & (mt - 1):
            raise ValueError("max_transfer must be a power of two ≥ 4096")
        if self.icd_size < 0 or self.icd_size % 16:
            raise ValueError("icd_size must be a non-negative multiple of 16")

    @property
    def cap(self) -> int:
        return (self.max_queue_size - 1) | CAP_CQR | CAP_TO << 24 | CAP_CSS_NVM


class QueueLink(Protocol):
    """What a controller needs from one of its queues (the server's connection)."""

    qid: int
    port: Port
    local_addr: str

    def complete(self, cid: int, status: int = 0, *, dw0: int = 0, dw1: int = 0,
                 data=None) -> None: ...

    def close(self, reason: str) -> None: ...

    def defer(self, fn: Callable[[], object], done: Callable[[BaseException | None], None]
              ) -> None: ...


_AEN_NS = AsyncEvent(AsyncEventType.NOTICE, AsyncEventNotice.NS_ATTR_CHANGED,
                     LogPageId.CHANGED_NS_LIST)
_AEN_ANA = AsyncEvent(AsyncEventType.NOTICE, AsyncEventNotice.ANA_CHANGE, LogPageId.ANA)
_AEN_DISC = AsyncEvent(AsyncEventType.NOTICE, AsyncEventNotice.DISCOVERY_LOG_CHANGE,
                       LogPageId.DISCOVERY)
_CHANGED_NS_MAX = 1024


class Controller:
    def __init__(self, subsystem: Subsystem | DiscoverySubsystem, cntlid: int, *,
                 hostnqn: str, hostid: _uuid.UUID, admin: QueueLink, kato_ms: int,
                 clock: Callable[[], float], options: ControllerOptions) -> None:
        self.subsystem = subsystem
        self.cntlid = cntlid
        self.hostnqn = hostnqn
        self.hostid = hostid
        self.admin = admin
        self.port = admin.port
        self.local_addr = admin.local_addr
        self.clock = clock
        self.options = options
        self.discovery = subsystem.is_discovery
        self.created = clock()
        self.io: dict[int, QueueLink] = {}
        self.cc = 0
        self.csts = 0
        self.keepalive = ControllerKeepAlive(kato_ms, self.created)
        self.aer = AerQueue(options.aer_limit)
        self.aec = 0
        self.nr_io_queues = subsystem.max_io_queues
        self.queues_set = False
        self.wce = True
        self.host_behavior = bytes(512)
        self.timestamp: tuple[int, float] | None = None  # (host ms, our clock when set)
        self.changed_nsids: list[int] | None = []
        self.errors: deque = deque(maxlen=pages.ELPE + 1)
        self.error_count = 0
        self.events_sent = 0  # AERs completed with an event (observability, tests)
        self.alive = True
        self.disc_snapshot = self._disc_entries() if self.discovery else None
        self._idctrl: bytes | None = None

    def __repr__(self) -> str:
        return f"<Controller {self.cntlid} {self.subsystem.nqn} host={self.hostnqn}>"

    @property
    def ready(self) -> bool:
        return bool(self.csts & CSTS_RDY)

    # ---- lifetime ----
    def attach_io(self, qid: int, queue: QueueLink) -> None:
        self.io[qid] = queue

    def queue_lost(self, queue: QueueLink) -> None:
        """A queue's connection ended; losing the admin queue ends the association."""
        if queue is self.admin:
            self.drop("admin queue closed")
        elif self.io.get(queue.qid) is queue:
            del self.io[queue.qid]

    def drop(self, reason: str) -> None:
        """End the association: forget the controller and close all its queues."""
        if not self.alive:
            return
        self.alive = False
        if self.subsystem.controllers.get(self.cntlid) is self:
            del self.subsystem.controllers[self.cntlid]
        log.info("controller %d of %s for %s ended: %s", self.cntlid, self.subsystem.nqn,
                 self.hostnqn, reason)
        for q in list(self.io.values()):
            q.close(reason)
        self.io.clear()
        self.admin.close(reason)

    def check_keepalive(self, now: float) -> bool:
        """True (and the association dropped) when KATO passed with no command."""
        if self.alive and self.keepalive.expired(now):
            log.warning("controller %d of %s for %s: keep alive timeout (%.1f s)", self.cntlid,
                        self.subsystem.nqn, self.hostnqn, self.keepalive.kato)
            self.drop("keep alive timeout")
            return True
        return False

    # ---- dispatch ----
    def execute(self, q: QueueLink, cid: int, sqe: bytes, data, c2h_length: int) -> None:
        """Run one command received on queue ``q`` (already connected to this controller)."""
        self.keepalive.touch(self.clock())
        try:
            if sqe[0] == 0x7F:
                self._fabrics(q, cid, sqe)
            elif sqe[1] & 0x03:
                raise invalid_field()  # fused operations are not supported (FUSES = 0)
            elif q.qid:
                if not self.csts & CSTS_RDY:
                    raise sequence_error()
                nvm.execute(self, q, cid, sqe, data, c2h_length)
            else:
                handler = _ADMIN.get(sqe[0])
                if handler is None:
                    raise invalid_opcode()
                if not self.csts & CSTS_RDY:
                    raise sequence_error()
                handler(self, q, cid, sqe, data, c2h_length)
        except NvmeStatusError as exc:
            self.record_error(q.qid, cid, exc.status, sqe)
            q.complete(cid, exc.status, dw0=exc.dw0)
        except Exception:
            log.exception("controller %d: command %#04x on queue %d failed", self.cntlid,
                          sqe[0], q.qid)
            self.record_error(q.qid, cid, status(SC_INTERNAL, dnr=False), sqe)
            q.complete(cid, status(SC_INTERNAL, dnr=False))

    def record_error(self, qid: int, cid: int, st: int, sqe: bytes) -> None:
        self.error_count += 1
        nsid = _U32.unpack_from(sqe, 4)[0] if sqe[0] != 0x7F else 0
        self.errors.append({"error_count": self.error_count, "sqid": qid, "cmdid": cid,
                            "status_field": (st << 1) & 0xFFFF, "param_error_location": 0xFFFF,
                            "lba": 0, "nsid": nsid, "vs": 0, "trtype": 3, "cs": 0,
                            "trtype_spec_info": 0})

    # ---- fabrics commands on a connected queue ----
    def _fabrics(self, q: QueueLink, cid: int, sqe: bytes) -> None:
        fctype = sqe[4]
        if fctype == FabricsType.CONNECT:
            raise sequence_error()  # this queue is already connected
        if fctype == FabricsType.DISCONNECT:
            if q.qid == 0:
                raise fail(SC_INVALID_QUEUE_TYPE, SCT_COMMAND_SPECIFIC, fabrics=True)
            q.complete(cid, 0)
            self.queue_lost(q)  # the QID is free again at once, not only when the socket ends
            q.close("host sent Disconnect")
            return
        if q.qid or fctype not in (FabricsType.PROPERTY_GET, FabricsType.PROPERTY_SET):
            raise invalid_opcode()
        attrib, offset = _PROP.unpack_from(sqe, 40)
        size = attrib & 7
        if fctype == FabricsType.PROPERTY_GET:
            value = self._property(offset, size)
            q.complete(cid, 0, dw0=value & 0xFFFFFFFF, dw1=value >> 32)
            return
        if offset != Property.CC or size != 0:
            raise invalid_field()  # CAP, VS, CSTS are read-only; NSSR is not supported
        self.set_cc(_U64.unpack_from(sqe, 48)[0] & 0xFFFFFFFF)
        q.complete(cid, 0)

    def _property(self, offset: int, size: int) -> int:
        if offset == Property.CAP and size == 1:
            return self.options.cap
        if size == 0:
            if offset == Property.VS:
                return self.subsystem.version
            if offset == Property.CC:
                return self.cc
            if offset == Property.CSTS:
                return self.csts
        raise invalid_field()

    def set_cc(self, new: int) -> None:
        """CC.EN 0→1 starts the controller (CSTS.RDY, or CSTS.CFS for a bad CC); 1→0 resets it
        (I/O queues are deleted); CC.SHN reports shutdown complete at once."""
        old, self.cc = self.cc, new
        if new & CC_EN and not old & CC_EN:
            self.csts = CSTS_RDY if self._cc_valid(new) else CSTS_CFS
            if self.csts & CSTS_CFS:
                log.warning("controller %d: unsupported CC %#x", self.cntlid, new)
        elif old & CC_EN and not new & CC_EN:
            self._reset("controller reset (CC.EN=0)")
        shn_new, shn_old = (new >> 14) & 3, (old >> 14) & 3
        if shn_new in (CC_SHN_NORMAL, CC_SHN_ABRUPT) and not shn_old:
            self.csts = CSTS_SHST_COMPLETE << 2
            log.info("controller %d of %s for %s: shutdown", self.cntlid, self.subsystem.nqn,
                     self.hostnqn)
        elif not shn_new and shn_old:
            self.csts &= ~(3 << 2)

    def _cc_valid(self, cc: int) -> bool:
        css, mps, ams = (cc >> 4) & 7, (cc >> 7) & 0xF, (cc >> 11) & 7
        iosqes, iocqes = (cc >> 16) & 0xF, (cc >> 20) & 0xF
        if css != 0 or mps != 0 or ams != 0:
            return False  # NVM command set, 4 KiB pages, round robin: all that CAP offers
        return self.discovery or (iosqes == 6 and iocqes == 4)

    def _reset(self, reason: str) -> None:
        self.csts = 0
        for q in list(self.io.values()):
            q.close(reason)
        self.io.clear()
        self.queues_set = False

    # ---- events ----
    def post_event(self, event: AsyncEvent) -> None:
        """Send (or queue) a notice, if the host enabled it (its NOTICE_AEC_BIT in AEC)."""
        if not self.alive or not self.aec & NOTICE_AEC_BIT[event.aei]:
            return
        ready = self.aer.post(event)
        if ready is not None:
            cid, ev = ready
            self.events_sent += 1
            log.info("controller %d of %s: async event %#x sent", self.cntlid,
                     self.subsystem.nqn, ev.dw0)
            self.admin.complete(cid, 0, dw0=ev.dw0)

    def namespace_changed(self, nsid: int) -> None:
        if self.discovery:
            return
        if self.changed_nsids is not None and nsid not in self.changed_nsids:
            if len(self.changed_nsids) >= _CHANGED_NS_MAX:
                self.changed_nsids = None  # overflow: the log says "more than 1024"
            else:
                self.changed_nsids.append(nsid)
        self.post_event(_AEN_NS)

    def ana_changed(self) -> None:
        self.post_event(_AEN_ANA)

    def _disc_entries(self) -> list:
        return self.subsystem.entries(self.hostnqn, self.port.portid, self.local_addr)

    def discovery_log_maybe_changed(self) -> None:
        entries = self._disc_entries()
        if entries != self.disc_snapshot:
            self.disc_snapshot = entries
            self.post_event(_AEN_DISC)

    # ---- namespace lookup ----
    def namespace(self, nsid: int) -> Namespace | None:
        """The namespace ``nsid`` if active and visible to this host."""
        ns = self.subsystem.namespaces.get(nsid)
        if ns is None or (ns.hosts is not None and self.hostnqn not in ns.hosts):
            return None
        return ns

    def visible_nsids(self) -> list[int]:
        return [ns.nsid for ns in self.subsystem.visible_namespaces(self.hostnqn)]


# ---- admin command handlers: (ctrl, queue, cid, sqe, data, c2h_length) ----
def _need_c2h(c2h_length: int, expected: int) -> None:
    if c2h_length != expected:
        raise fail(SC_SGL_INVALID_DATA)


def _identify(ctrl: Controller, q, cid, sqe, data, c2h_length) -> None:
    cns, csi, nsid = sqe[40], sqe[47], _U32.unpack_from(sqe, 4)[0]
    if ctrl.discovery and cns != Cns.CONTROLLER:
        raise invalid_field()
    if cns == Cns.CONTROLLER:
        if ctrl._idctrl is None:
            ctrl._idctrl = pages.identify_controller(ctrl)
        page = ctrl._idctrl
    elif cns == Cns.NAMESPACE:
        if not 1 <= nsid <= ctrl.subsystem.max_nsid:
            raise invalid_ns()
        page = pages.identify_namespace(ctrl, ctrl.namespace(nsid))
    elif cns == Cns.ACTIVE_NS_LIST:
        if nsid >= 0xFFFFFFFE:
            raise invalid_ns()
        page = pages.active_ns_list(ctrl.visible_nsids(), nsid)
    elif cns == Cns.NS_ID_DESCRIPTORS:
        ns = ctrl.namespace(nsid)
        if ns is None:
            raise invalid_ns()
        page = pages.ns_descriptors(ns)
    elif cns in (Cns.CSI_NAMESPACE, Cns.CSI_CONTROLLER) and csi == 0:
        # NVM command set specific pages: no limits beyond the common ones (all zero).
        if cns == Cns.CSI_NAMESPACE and ctrl.namespace(nsid) is None:
            raise invalid_ns()
        page = pages.ZERO_PAGE
    else:
        raise invalid_field()
    _need_c2h(c2h_length, len(page))
    q.complete(cid, 0, data=page)


def _get_log_page(ctrl: Controller, q, cid, sqe, data, c2h_length) -> None:
    lid, lsp_rae, numdl, numdu, _lsi, lpo = _LOG.unpack_from(sqe, 40)
    nsid = _U32.unpack_from(sqe, 4)[0]
    rae, lsp = bool(lsp_rae & 0x80), lsp_rae & 0x7F
    length = ((numdu << 16 | numdl) + 1) * 4
    _need_c2h(c2h_length, length)
    if lpo & 3:
        raise invalid_field()
    if ctrl.discovery:
        if lid != LogPageId.DISCOVERY:
            raise invalid_field()
        page = ctrl.subsystem.log_page(ctrl._disc_entries())
    elif lid == LogPageId.ERROR:
        page = pages.error_log(ctrl)
    elif lid == LogPageId.SMART:
        if nsid in (0, NSID_ALL):
            nss = list(ctrl.subsystem.visible_namespaces(ctrl.hostnqn))
        else:
            ns = ctrl.namespace(nsid)
            if ns is None:
                raise invalid_ns()
            nss = [ns]
        page = pages.smart_log(ctrl, nss, ctrl.clock())
    elif lid == LogPageId.CHANGED_NS_LIST:
        page = pages.changed_ns_log(ctrl.changed_nsids)
        ctrl.changed_nsids = []
    elif lid == LogPageId.ANA:
        page = pages.ana_log(ctrl, lsp)
    elif lid == LogPageId.CMD_EFFECTS:
        page = _EFFECTS_LOG
    else:
        raise invalid_field()
    if lpo > len(page):
        raise invalid_field()
    out = page[lpo:lpo + length]
    if len(out) < length:
        out = bytes(out).ljust(length, b"\0")
    if not rae:
        ctrl.aer.log_read(lid)
    q.complete(cid, 0, data=out)


_AEC_ALWAYS = 0xFF  # SMART critical warning bits: accepted, never raised here
_CHANGEABLE = 1 << 2  # Get Features SEL=3: changeable, not saveable, not namespace specific
_IO_FEATURES = {FeatureId.NUM_QUEUES, FeatureId.ASYNC_EVENT, FeatureId.KATO,
                FeatureId.VOLATILE_WC, FeatureId.TIMESTAMP, FeatureId.HOST_BEHAVIOR}
_DISC_FEATURES = {FeatureId.ASYNC_EVENT, FeatureId.KATO}


def _supported_aens(ctrl: Controller) -> int:
    return pages.SUPPORTED_AENS_DISCOVERY if ctrl.discovery else pages.SUPPORTED_AENS_IO


def _set_features(ctrl: Controller, q, cid, sqe, data, c2h_length) -> None:
    fid, save = sqe[40], bool(sqe[43] & 0x80)
    cdw11 = _U32.unpack_from(sqe, 44)[0]
    if fid == FeatureId.HOST_ID:
        raise sequence_error()  # on fabrics the host ID comes with Connect
    if fid not in (_DISC_FEATURES if ctrl.discovery else _IO_FEATURES):
        raise invalid_field()
    if save:
        raise fail(SC_FEATURE_NOT_SAVEABLE, SCT_COMMAND_SPECIFIC)
    dw0 = 0
    if fid == FeatureId.NUM_QUEUES:
        nsqr, ncqr = cdw11 & 0xFFFF, cdw11 >> 16
        if nsqr == 0xFFFF or ncqr == 0xFFFF:
            raise invalid_field()
        if ctrl.io:
            raise sequence_error()  # I/O queues exist already
        limit = ctrl.subsystem.max_io_queues
        nsq, ncq = min(nsqr + 1, limit), min(ncqr + 1, limit)
        ctrl.nr_io_queues = min(nsq, ncq)
        ctrl.queues_set = True
        dw0 = (nsq - 1) | (ncq - 1) << 16
    elif fid == FeatureId.ASYNC_EVENT:
        if cdw11 & ~(_supported_aens(ctrl) | _AEC_ALWAYS):
            raise invalid_field()
        ctrl.aec = cdw11
    elif fid == FeatureId.KATO:
        ctrl.keepalive = ControllerKeepAlive(cdw11, ctrl.clock())
    elif fid == FeatureId.VOLATILE_WC:
        ctrl.wce = bool(cdw11 & 1)
    elif fid == FeatureId.TIMESTAMP:
        if data is None or len(data) != 8:
            raise fail(SC_SGL_INVALID_DATA)
        ctrl.timestamp = (int.from_bytes(bytes(data[:6]), "little"), ctrl.clock())
    elif fid == FeatureId.HOST_BEHAVIOR:
        if data is None or len(data) != 512:
            raise fail(SC_SGL_INVALID_DATA)
        ctrl.host_behavior = bytes(data)
    q.complete(cid, 0, dw0=dw0)


def _get_features(ctrl: Controller, q, cid, sqe, data, c2h_length) -> None:
    fid, sel = sqe[40], sqe[41] & 7
    cdw11 = _U32.unpack_from(sqe, 44)[0]
    supported = _DISC_FEATURES if ctrl.discovery else _IO_FEATURES | {FeatureId.HOST_ID}
    if fid not in supported or sel > 3:
        raise invalid_field()
    if sel == 3:
        q.complete(cid, 0, dw0=_CHANGEABLE if fid != FeatureId.HOST_ID else 0)
        return
    default = sel in (1, 2)  # nothing is saveable, so "saved" is the default
    payload = None
    dw0 = 0
    if fid == FeatureId.NUM_QUEUES:
        n = ctrl.subsystem.max_io_queues if default else ctrl.nr_io_queues
        dw0 = (n - 1) | (n - 1) << 16
    elif fid == FeatureId.ASYNC_EVENT:
        dw0 = 0 if default else ctrl.aec
    elif fid == FeatureId.KATO:
        dw0 = 0 if default else int(ctrl.keepalive.kato * 1000)
    elif fid == FeatureId.VOLATILE_WC:
        dw0 = 1 if default else int(ctrl.wce)
    elif fid == FeatureId.TIMESTAMP:
        now = ctrl.clock()
        if ctrl.timestamp is None or default:
            ms, origin = int((now - ctrl.created) * 1000), 0  # since reset
        else:
            base, at = ctrl.timestamp
            ms, origin = base + int((now - at) * 1000), 1  # set by the host
        payload = (ms & 0xFFFFFFFFFFFF).to_bytes(6, "little") + bytes([origin << 1, 0])
    elif fid == FeatureId.HOST_BEHAVIOR:
        payload = bytes(512) if default else ctrl.host_behavior
    elif fid == FeatureId.HOST_ID:
        if not cdw11 & 1:
            raise invalid_field()  # only the 128-bit (extended) host identifier exists here
        payload = ctrl.hostid.bytes
    if payload is not None:
        _need_c2h(c2h_length, len(payload))
    q.complete(cid, 0, dw0=dw0, data=payload)


def _async_event_request(ctrl: Controller, q, cid, sqe, data, c2h_length) -> None:
    try:
        ready = ctrl.aer.arm(cid)
    except OverflowError:
        raise fail(SC_AER_LIMIT, SCT_COMMAND_SPECIFIC) from None
    if ready is not None:
        ctrl.events_sent += 1
        q.complete(cid, 0, dw0=ready[1].dw0)
    # otherwise it stays outstanding until an event happens


def _keep_alive(ctrl: Controller, q, cid, sqe, data, c2h_length) -> None:
    q.complete(cid, 0)  # execute() already restarted the timer


def _abort(ctrl: Controller, q, cid, sqe, data, c2h_length) -> None:
    if ctrl.discovery:
        raise invalid_opcode()
    q.complete(cid, 0, dw0=1)  # bit 0 set: the command was not aborted


_ADMIN: dict[int, Callable] = {
    AdminOpcode.IDENTIFY: _identify,
    AdminOpcode.GET_LOG_PAGE: _get_log_page,
    AdminOpcode.SET_FEATURES: _set_features,
    AdminOpcode.GET_FEATURES: _get_features,
    AdminOpcode.ASYNC_EVENT_REQUEST: _async_event_request,
    AdminOpcode.KEEP_ALIVE: _keep_alive,
    AdminOpcode.ABORT: _abort,
}
# Built from the dispatch tables themselves, so the log cannot claim what is not executed.
_EFFECTS_LOG = pages.command_effects_log(_ADMIN, nvm.IO_COMMANDS, nvm.CHANGES_DATA)
