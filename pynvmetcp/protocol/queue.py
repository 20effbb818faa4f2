"""What the host and controller queue engines share: framing, output, failure handling.

Theory of operation: one NVMe/TCP connection carries one NVMe queue. Both engines are state
machines fed with received bytes; they return events and accumulate PDUs to send. The same rules
apply to both parties: a peer's protocol violation (RemoteProtocolError in h11's terms) becomes a
``ProtocolFailure`` event plus a TermReq in the output, after which the engine accepts nothing
more; the caller's misuse (a command on a dead queue, a too-large transfer) raises
``RuntimeError``/``ValueError`` at the call and never reaches the wire.
"""
from __future__ import annotations

import enum

from ..errors import ProtocolError
from ..spec.opcodes import SglId
from ..wire import codec
from ..wire.framer import Framer
from .events import PeerTerminated, ProtocolFailure


class QueueState(enum.Enum):
    AWAIT_IC = "await-ic"  # ICReq not yet exchanged
    LIVE = "live"
    TERMINATED = "terminated"  # TermReq sent or received; only closing remains


# Read per PDU or per command by both engines, so as module globals (and the SGL ids as plain
# ints): looking up an enum member such as QueueState.LIVE costs ~0.1 µs.
_AWAIT_IC, _LIVE, _TERMINATED = QueueState.AWAIT_IC, QueueState.LIVE, QueueState.TERMINATED
_SGL_IN_CAPSULE, _SGL_TRANSPORT = int(SglId.DATA_BLOCK_OFFSET), int(SglId.TRANSPORT_DATA_BLOCK)


class _QueueEngine:
    _receiver = ""  # 'host' or 'controller'
    _term_type = 0  # the TermReq type this side sends

    def __init__(self, max_data: int) -> None:
        self.framer = Framer(self._receiver, max_data=max_data)
        #: Where the next received bytes go (``buffer_updated`` accounts for them): the framer's
        #: own method, so a transport's call per receive reaches it without one in between.
        self.get_buffer = self.framer.get_buffer
        self.state = QueueState.AWAIT_IC
        #: PDUs (as buffer lists) waiting to be sent; ``data_to_send`` hands them over. Public so
        #: that a transport can tell whether anything waits without a call per receive.
        self.outbox: list = []
        self.hdgst = False
        self.ddgst = False

    # ---- transport side ----
    def buffer_updated(self, nbytes: int) -> list:
        """Bytes were written into ``get_buffer()``; returns the events they caused."""
        if self.state is _TERMINATED:
            return []
        failure = None
        try:
            pdus = self.framer.buffer_updated(nbytes)
        except ProtocolError as exc:  # the PDUs before the bad one are handled first
            pdus, failure = exc.before, exc
        events: list = []
        for pdu in pdus:
            if self.state is _TERMINATED:
                break
            try:
                event = self._handle(pdu)
            except ProtocolError as exc:
                event = self._fatal(exc)
            if event is not None:
                events.append(event)
        if failure is not None and self.state is not _TERMINATED:
            events.append(self._fatal(failure))
        return events

    def receive(self, data) -> list:
        """Feed received bytes (any segmentation); returns events."""
        events: list = []
        src = memoryview(data).cast("B")
        while len(src) and self.state is not _TERMINATED:
            buf = self.get_buffer()
            k = min(len(buf), len(src))
            buf[:k] = src[:k]
            events.extend(self.buffer_updated(k))
            src = src[k:]
        return events

    def data_to_send(self) -> list:
        """Buffers to send, in order (suited to ``socket.sendmsg``); the queue forgets them."""
        out, self.outbox = self.outbox, []
        return out

    def _fatal(self, exc: ProtocolError) -> ProtocolFailure:
        """Queue a TermReq reporting ``exc`` and stop (TermReqs themselves are never answered)."""
        self.outbox.append(codec.term_req(self._term_type, exc.fes, exc.fei, exc.header))
        self.state = QueueState.TERMINATED
        self._on_terminated(str(exc))
        return ProtocolFailure(exc)

    def _peer_terminated(self, pdu) -> PeerTerminated:
        self.state = QueueState.TERMINATED
        self._on_terminated(f"peer sent TermReq fes={pdu.fes:#x}")
        return PeerTerminated(pdu.fes, pdu.fei, bytes(pdu.data))

    def _handle(self, pdu):  # pragma: no cover - abstract
        """The event ``pdu`` causes, or None."""
        raise NotImplementedError

    def _on_terminated(self, reason: str) -> None:
        """Hook: the engine just stopped (fail outstanding work)."""
