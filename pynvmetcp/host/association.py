"""State and bookkeeping of one association that the blocking and asyncio controllers share.

An association is an admin queue plus I/O queues under one controller ID. Both controllers build
it with the same ``establish`` procedure and differ only in how they wait; what they keep, how
they pick a queue and how they hand asynchronous events to the caller is here, once.
"""
from __future__ import annotations

import itertools
import logging
from typing import Callable, Iterable

from ..errors import ConnectionLost, NvmeStatusError, NvmeTcpError, ProtocolError
from ..protocol import Completion
from ..protocol.aer import AsyncEvent
from ..protocol.reconnect import ReconnectPolicy
from ..spec.fabrics import Cap
from ..spec.identify import NOTICE_AEC_BIT
from ..spec.opcodes import AsyncEventNotice, AsyncEventType
from ..spec.pdu import PduType
from . import commands as C
from . import procedures as P
from .api import ControllerApi, _none
from .procedures import Command
from .identity import ConnectParams

log = logging.getLogger(__name__)


def ic_failed(traddr: str, trsvcid: int, why: Exception | str) -> Exception:
    """The connection setup failed: say where, and when no ICResp came at all, that the port
    is probably not an NVMe/TCP one (an HTTP server answers "HTTP/1.1 …", PDU type 0x48).
    A protocol error keeps its type and FES/FEI (the TermReq was sent with them)."""
    where = f"{traddr}:{trsvcid}"
    text = f"{where}: connection setup (ICReq/ICResp) failed: {why}"
    if isinstance(why, ProtocolError):
        if why.header[:1] != bytes([PduType.ICResp]):
            text += "; is it an NVMe/TCP port?"
        error: NvmeTcpError = ProtocolError(text, why.fes, why.fei, why.header)
    else:
        error = ConnectionLost(text + "; is it an NVMe/TCP port?")
    error.where = where
    return error


class Association(ControllerApi):
    def __init__(self, params: ConnectParams) -> None:
        self.params = params
        self.admin = None
        self.io: list = []
        self.io_queue_ids: list[int] = []
        self._rr = itertools.count()
        self.cntlid = 0
        self.cap = 0
        self.vs = 0
        self.id = None
        self.event_handlers: list[Callable[[AsyncEvent], None]] = []
        self._aer_wanted = 0
        self._aec = 0  # the event configuration asked for, restored on every reconnect
        self._generation = 0
        self._policy = ReconnectPolicy(params.ctrl_loss_tmo, params.reconnect_delay)

    @property
    def max_transfer(self) -> int:
        """MDTS in bytes: 2^MDTS units of the minimum memory page size (CAP.MPSMIN)."""
        if self.id is None or not self.id.mdts:
            return 0
        return 1 << (12 + Cap.parse(self.cap.to_bytes(8, "little")).mpsmin + self.id.mdts)

    def _queue_for(self, qid: int):
        """0 = admin, -1 = the next I/O queue round-robin, else that I/O queue."""
        if qid == 0:
            return self.admin
        if qid == -1:
            if not self.io:
                raise NvmeTcpError("no I/O queues (connect with nr_io_queues ≥ 1)")
            return self.io[next(self._rr) % len(self.io)]
        return self.io[qid - 1]

    def _establish_procedure(self) -> P.Procedure:
        p = self.params
        self.io = []
        return P.establish(p.identity, p.subnqn, nr_io_queues=p.nr_io_queues,
                           queue_size=p.queue_size, kato_ms=int(p.kato * 1000),
                           disable_sqflow=p.disable_sqflow, aec=self._aec)

    def _adopt(self, assoc: P.Association) -> None:
        """Bring-up finished: remember what it learned; one more generation of queues."""
        self.cntlid, self.cap, self.vs, self.id = assoc.cntlid, assoc.cap, assoc.vs, assoc.id
        if assoc.aec != self._aec:
            log.warning("controller %d of %s refused the event configuration %#x: those "
                        "asynchronous events will not arrive", assoc.cntlid,
                        self.params.subnqn, self._aec)
        self.io_queue_ids = list(range(1, len(self.io) + 1))
        self._generation += 1

    def _add_queue(self, req: P.OpenQueue, queue) -> None:
        if req.qid == 0:
            self.admin = queue
        else:
            self.io.append(queue)

    # ---- asynchronous events ----
    def enable_async_events(self, mask: int):
        """Set Features Asynchronous Event Configuration to ``mask`` (bits: spec.identify's
        NOTICE_AEC_BIT); a reconnect restores it. Returns CQE DW0 (awaitable on asyncio)."""
        previous, self._aec = self._aec, mask

        def undo() -> None:
            self._aec = previous
        return self._run(self._configure_events(undo))

    def watch_events(self, notices: Iterable[AsyncEventNotice],
                     on_event: Callable[[AsyncEvent], None]):
        """Call ``on_event(AsyncEvent)`` for each of these notices the controller reports.

        One call does what a subscription needs: the notices are enabled on the controller
        (besides those already enabled), an Asynchronous Event Request is kept outstanding,
        and both are restored after a reconnect. ``on_event`` runs on the thread (blocking
        host) or in the task (asyncio) that received the event; it should return quickly.
        Raises NvmeStatusError when the controller refuses the notices (awaitable on
        asyncio)."""
        wanted = frozenset(AsyncEventNotice(n) for n in notices)
        if not wanted:
            raise ValueError("name at least one notice to watch")
        bits = 0
        for notice in wanted:
            if notice not in NOTICE_AEC_BIT:
                raise ValueError(f"{notice.name} is not a notice the host can enable")
            bits |= NOTICE_AEC_BIT[notice]
        added = bits & ~self._aec
        self._aec |= bits  # at once, so a concurrent call sends it too

        def undo() -> None:
            self._aec &= ~added

        def handler(event: AsyncEvent) -> None:
            if event.aet == AsyncEventType.NOTICE and event.aei in wanted:
                on_event(event)

        def subscribed() -> None:
            self.event_handlers.append(handler)
            if not self._aer_wanted:
                self.arm_async_events(1)
        return self._run(self._configure_events(undo, subscribed), _none)  # returns nothing

    def _configure_events(self, undo: Callable[[], None],
                          then: Callable[[], None] | None = None) -> P.Procedure:
        """Send the event configuration asked for (``_aec``) until the last one sent is the
        one asked for now: a concurrent caller may have changed it while ours was on the
        wire, and the controller keeps whichever came last. Refused: ``undo``, then raise."""
        sent = None
        try:
            while sent != self._aec:
                sent = self._aec
                done = yield Command(C.async_event_configuration(sent))
        except NvmeStatusError:
            undo()
            raise
        if then:
            then()
        return done.dw0

    def arm_async_events(self, count: int = 1) -> None:  # pragma: no cover - per host
        raise NotImplementedError

    def _deliver_event(self, done: Completion) -> bool:
        """Hand a completed AER to the handlers; False when the AER itself failed."""
        if done.status:
            log.warning("AER failed: %s", NvmeStatusError(done.status))
            return False
        event = AsyncEvent.from_dw0(done.dw0)
        for handler in list(self.event_handlers):
            try:
                handler(event)
            except Exception:  # a handler's bug must not stop event delivery
                log.exception("async event handler failed")
        return True

    def _give_up(self, exc: Exception) -> bool:
        """Classify a failed reconnect attempt: True = stop trying (the target said DNR)."""
        if isinstance(exc, NvmeStatusError) and exc.dnr:
            log.error("reconnect to %s refused: %s", self.params.subnqn, exc)
            return True
        log.info("reconnect to %s failed: %s", self.params.subnqn, exc)
        return False
