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
from ..wire.framer import DIRECT_MIN, Framer
from .events import PeerTerminated, ProtocolFailure


class QueueState(enum.Enum):
    AWAIT_IC = "await-ic"  # ICReq not yet exchanged
    LIVE = "live"
    TERMINATED = "terminated"  # TermReq sent or received; only closing remains


# Read per PDU or per command by both engines, so as module globals (and the SGL ids as plain
# ints): looking up an enum member such as QueueState.LIVE costs ~0.1 µs.
_AWAIT_IC, _LIVE, _TERMINATED = QueueState.AWAIT_IC, QueueState.LIVE, QueueState.TERMINATED
_SGL_IN_CAPSULE, _SGL_TRANSPORT = int(SglId.DATA_BLOCK_OFFSET), int(SglId.TRANSPORT_DATA_BLOCK)


class _Fill:
    """A payload a lane receives in place: the command, its buffer, where the next bytes go
    and where the PDU's data ends, whether the PDU ends the command's data, and whether the
    next bytes go to the buffer first."""

    __slots__ = ("cmd", "into", "pos", "end", "last", "direct")
    cmd: object
    into: memoryview
    pos: int
    end: int
    last: bool
    direct: bool


_alloc = object.__new__


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
        # A data PDU whose header an engine's lane took and whose payload it receives in place
        # (``_fill_begin``). One attribute, not six: past 30 attributes an instance's dict is
        # no longer shared-key and every attribute read on the hot paths slows down
        # (+1.7k instructions per QD1 read on the host, benchmarks/instructions.py).
        self._fill: _Fill | None = None
        #: While a lane receives a large payload in place: the rest of its buffer and staging
        #: after it, for a transport that can receive into several buffers at once
        #: (``recvmsg_into``) to use instead of ``get_buffer()``, then ``buffer_updated`` as
        #: usual. One receive then ends a payload and brings the PDUs after it (the next
        #: command's header with its payload's start), where ``get_buffer()`` needs two.
        #: Offered only when the transport says it takes them (``scatter``).
        self.payload_buffers: list | None = None
        self.scatter = False

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

    # ---- payloads a lane receives in place ----
    def _fill_begin(self, cmd: object, into: memoryview, datao: int, end: int, last: bool,
                    at: int) -> int:
        """A lane took the header of a data PDU carrying ``into[datao:end]`` that the receive
        ended inside, its payload beginning at staging offset ``at``: what came is copied to
        ``into`` and staging emptied; the rest is received straight into ``into``
        (``get_buffer`` hands it out, and ``payload_buffers`` to a transport that takes them).
        Once whole, ``_filled`` says what it means; ``last``: the PDU ends the command's
        data. The lane's turn ends here, the receive having ended inside this PDU; returns the
        staging position it ends at (staging is empty, and may have been rewound)."""
        fr = self.framer
        have = datao + fr.wr - at
        into[datao:have] = fr.view[at:fr.wr]
        fr.rd = fr.wr
        fill = self._fill = _alloc(_Fill)
        fill.cmd = cmd
        fill.into = into
        fill.pos = have
        fill.end = end
        fill.last = last
        fill.direct = False
        self.get_buffer = self._fill_buffer
        if self.scatter:
            self._fill_plan(fill)
        return fr.rd

    def _fill_plan(self, fill: _Fill) -> None:
        """Where the next receive of the payload being filled goes (staging is empty): its own
        buffer, and staging's header window after it, while at least ``DIRECT_MIN`` of it is
        missing (``_fill_buffer`` decides); else staging alone (``get_buffer()``)."""
        rest = self._fill_buffer()
        self.payload_buffers = [rest, self.framer.get_buffer()] if fill.direct else None

    def _fill_buffer(self, sizehint: int = -1) -> memoryview:
        """``get_buffer`` while a lane receives a payload in place: the rest of its buffer, or
        staging once the rest is small (as the framer does with its payloads: see
        ``DIRECT_MIN``), so that the PDUs after it come in the same receive."""
        fill = self._fill
        pos = fill.pos
        end = fill.end
        if end - pos >= DIRECT_MIN:
            fill.direct = self.framer.in_place = True
            return fill.into[pos:end]
        fill.direct = False
        return self.framer.get_buffer()

    def _fill_updated(self, nbytes: int) -> list:
        """``buffer_updated`` for a receive into ``_fill_buffer``'s buffer or into
        ``payload_buffers``: the payload advanced, and, once whole, ``_filled``'s events, then
        the lane's for the bytes received into staging after it."""
        fill = self._fill
        pos = fill.pos
        end = fill.end
        fr = self.framer
        if fill.direct:
            if nbytes > end - pos:  # (payload_buffers) the rest went to staging after it
                fr.at_header(nbytes - (end - pos))
                pos = end
            else:
                pos += nbytes
        else:
            fr.at_header(nbytes)  # (staging was empty: the framer is idle, between PDUs)
            rd = fr.rd
            k = min(nbytes, end - pos)
            fill.into[pos:pos + k] = fr.view[rd:rd + k]
            fr.rd = rd + k
            pos += k
        fill.pos = pos
        if pos != end:
            if self.scatter:
                self._fill_plan(fill)
            return []
        self._fill_dropped()
        events = self._filled(fill.cmd, end, fill.last)
        if fr.rd != fr.wr:
            events = events + self.buffer_updated(0)
        return events

    def _fill_dropped(self) -> None:
        """No payload is being filled (any longer)."""
        self._fill = self.payload_buffers = None
        self.get_buffer = self.framer.get_buffer

    def _filled(self, cmd, end: int, last: bool) -> list:  # pragma: no cover - abstract
        """The events of a filled payload: ``cmd``'s data is whole up to ``end``."""
        raise NotImplementedError

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
