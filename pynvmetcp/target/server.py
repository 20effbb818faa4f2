"""The asyncio side of the target: listeners, one connection per NVMe queue, the keep-alive timer.

A ``Connection`` is a thin adapter between an asyncio transport and a sans-I/O ``ControllerQueue``
(the aioquic split): asyncio writes received bytes straight into the engine's buffer
(BufferedProtocol: ``get_buffer``/``buffer_updated``, so large H2CData payloads land in the
command's own buffer), the events go to the connect logic or the controller, and everything the
engine queued during one receive batch leaves in a single ``transport.writelines``. A connection
that breaks the protocol gets its C2HTermReq and is closed; nothing it does reaches another
connection, because every callback's failure is caught and confined to its own connection.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Callable

from ..aio_send import BufferSender
from ..errors import NvmeStatusError
from ..protocol import ControllerQueue, IcComplete, PeerTerminated, ProtocolFailure, QueueState
from ..protocol.controller import LINUX_MAXH2CDATA
from ..spec.opcodes import FabricsType
from ..spec.status import SC_CMD_SEQ_ERROR
from . import nvm
from .connect import connect
from .controller import Controller, ControllerOptions
from .port import Port
from .registry import Registry
from .status import status

log = logging.getLogger(__name__)

CLOSE_GRACE = 5.0  # seconds a closing connection may take to flush before it is aborted
# Loop turns from an accept to the protocol's connection_made: the accept task's first step in
# the next turn makes the transport, which calls connection_made in the turn after (FIFO order);
# two, and one more to spare.
_ACCEPT_TURNS = 3
_TERMINATED = QueueState.TERMINATED  # read twice per receive: a module global, not an enum lookup


class Connection(asyncio.BufferedProtocol):
    """One TCP connection = one NVMe queue (admin or I/O) of one controller."""

    def __init__(self, server: TargetServer, port: Port) -> None:
        self.server = server
        self.port = port
        opts = server.options
        self.engine = ControllerQueue(maxh2cdata=server.maxh2cdata, icd_size=opts.icd_size,
                                      max_transfer=opts.max_transfer)
        self.engine.on_command = self._command  # each command runs as soon as it is parsed
        self.controller: Controller | None = None
        self.qid = 0
        self.transport: asyncio.Transport | None = None
        self._sender: BufferSender | None = None
        self.peer = "?"
        self.local_addr = ""
        self.closing = False
        self._connect_timer: asyncio.TimerHandle | None = None
        self._batch = False
        self._scratch: bytearray | None = None

    def __repr__(self) -> str:
        what = f"ctrl {self.controller.cntlid} qid {self.qid}" if self.controller else "new"
        return f"<Connection {self.peer} → {self.port} {what}>"

    # ---- asyncio callbacks ----
    def connection_made(self, transport) -> None:
        self.transport = transport
        if self.port.portid in self.server.closed_ports:
            transport.close()  # accepted just before its port went (TargetServer.unlisten)
            self.closing = True
            return
        self._sender = BufferSender(transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        peer = transport.get_extra_info("peername") or ("?", 0)
        local = transport.get_extra_info("sockname") or ("", 0)
        self.peer = f"{peer[0]}:{peer[1]}"
        self.local_addr = local[0]
        self.server.connections.add(self)
        log.debug("connection from %s on port %s", self.peer, self.port)
        # a connection that never becomes a queue would hold its socket forever
        self._connect_timer = asyncio.get_running_loop().call_later(
            self.server.connect_timeout, self._connect_timed_out)

    def _connect_timed_out(self) -> None:
        if self.controller is None:
            log.info("%r: no Connect within %.0f s; closing", self, self.server.connect_timeout)
            self.close("no Connect in time")

    def get_buffer(self, sizehint: int) -> memoryview:
        if self.closing or self.engine.state is _TERMINATED:
            if self._scratch is None:
                self._scratch = bytearray(65536)
            return memoryview(self._scratch)  # bytes after a fatal error are read and dropped
        return self.engine.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        if self.closing or self.engine.state is _TERMINATED:
            return
        self._batch = True
        try:
            for event in self.engine.buffer_updated(nbytes):
                self._event(event)
        except Exception:
            log.exception("%r: internal error; closing this connection", self)
            self._batch = False
            self.close("internal error")
            return
        self._batch = False
        self._flush()

    def pause_writing(self) -> None:
        # The peer is not reading its completions: stop taking new commands until it does.
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.closing:
            self.transport.resume_reading()

    def connection_lost(self, exc) -> None:
        self.closing = True
        if self._connect_timer is not None:
            self._connect_timer.cancel()
        self.server.connections.discard(self)
        if self.controller is not None:
            self.controller.queue_lost(self)
        log.debug("connection from %s closed%s", self.peer, f": {exc}" if exc else "")

    # ---- events ----
    def _command(self, cid: int, sqe: bytes, data, c2h_length: int) -> None:
        if self.closing:  # e.g. after a Disconnect earlier in the same receive
            return
        if self.controller is not None:
            self.controller.execute(self, cid, sqe, data, c2h_length)
        else:
            self._before_connect(cid, sqe, data)

    def _event(self, event) -> None:
        if type(event) is ProtocolFailure:
            log.warning("%r: protocol error, sending C2HTermReq: %s (fes=%#x, fei=%#x)", self,
                        event.error, event.error.fes, event.error.fei)
            self.close(f"protocol error: {event.error}")
        elif type(event) is PeerTerminated:
            log.warning("%r: host sent H2CTermReq fes=%#x fei=%#x", self, event.fes, event.fei)
            self.close("host terminated the connection")
        elif type(event) is IcComplete:
            log.debug("%r: ICReq done (hdgst=%s ddgst=%s)", self, event.hdgst, event.ddgst)

    def _before_connect(self, cid: int, sqe: bytes, data) -> None:
        if sqe[0] != 0x7F or sqe[4] != FabricsType.CONNECT:
            self.engine.complete(cid, status(SC_CMD_SEQ_ERROR))
            return
        try:
            accepted = connect(self.server.registry, self, sqe, data,
                               options=self.server.options, clock=self.server.clock)
        except NvmeStatusError as exc:
            self.engine.complete(cid, exc.status, dw0=exc.dw0)
            return
        self.controller = accepted.controller
        self.qid = accepted.qid
        self.engine.configure(accepted.qid, accepted.sqsize, accepted.sqflow_disabled)
        self.engine.complete(cid, 0, dw0=accepted.controller.cntlid)
        if accepted.qid and self.server.options.read_lane and not self.controller.discovery:
            self.engine.open_read_lane(nvm.read_lane(self.controller, self))

    # ---- QueueLink, used by the controller ----
    def complete(self, cid: int, status: int = 0, *, dw0: int = 0, dw1: int = 0,
                 data=None) -> None:
        if self.closing:
            return
        self.engine.complete(cid, status, dw0=dw0, dw1=dw1, data=data)
        if not self._batch:
            self._flush()

    def defer(self, fn: Callable[[], object],
              done: Callable[[BaseException | None], None]) -> None:
        """Run ``fn`` on a worker thread; ``done(exc)`` then runs here, unless we closed."""
        future = asyncio.get_running_loop().run_in_executor(None, fn)

        def finished(f: asyncio.Future) -> None:
            if not self.closing:
                done(f.exception())

        future.add_done_callback(finished)

    def close(self, reason: str) -> None:
        """Send what is queued (a TermReq, a last completion), then close this connection."""
        if self.closing or self.transport is None:
            return
        self._flush()
        self.closing = True
        log.debug("%r: closing: %s", self, reason)
        transport = self.transport
        transport.close()
        try:  # a peer that never reads must not keep a closed connection alive forever
            asyncio.get_running_loop().call_later(
                CLOSE_GRACE, lambda: transport.is_closing() and transport.abort())
        except RuntimeError:  # not in the loop (shutting down): nothing left to wait for
            transport.abort()

    def _flush(self) -> None:
        if self.engine.outbox and self._sender is not None:  # a call only when there is output
            self._sender.send(self.engine.data_to_send())


class TargetServer:
    """Listens on the registry's ports and runs the keep-alive timer, in one event loop."""

    def __init__(self, registry: Registry, *, options: ControllerOptions | None = None,
                 maxh2cdata: int = LINUX_MAXH2CDATA, keepalive_tick: float = 0.25,
                 connect_timeout: float = 30.0) -> None:
        self.registry = registry
        self.connect_timeout = connect_timeout
        self.options = options or ControllerOptions()
        self.maxh2cdata = maxh2cdata
        self.keepalive_tick = keepalive_tick
        self.connections: set[Connection] = set()
        self.listeners: dict[int, asyncio.base_events.Server] = {}
        #: Ports removed (and not listened on again; all of them once the target stops): a
        #: connection accepted before that but made a transport after is closed at once.
        self.closed_ports: set[int] = set()
        self._ticker: asyncio.Task | None = None

    #: The controllers' clock: the event loop's own (asyncio's ``loop.time()`` is this), read
    #: once per command for keep-alive, so called directly rather than through the loop.
    clock = staticmethod(time.monotonic)

    async def start(self) -> None:
        try:
            for port in list(self.registry.ports.values()):
                await self.listen(port)
        except BaseException:
            await self.close()
            raise
        self._ticker = asyncio.get_running_loop().create_task(self._keepalive())

    async def listen(self, port: Port) -> None:
        """Start serving ``port`` (already in the registry); an ephemeral port learns its number."""
        loop = asyncio.get_running_loop()
        self.closed_ports.discard(port.portid)
        server = await loop.create_server(lambda: Connection(self, port),
                                          host=port.traddr or None, port=port.trsvcid,
                                          reuse_address=True)
        self.listeners[port.portid] = server
        if port.trsvcid == 0:
            port.trsvcid = server.sockets[0].getsockname()[1]
            self.registry.discovery.changed()
        log.info("listening on %s (port id %d%s)", port, port.portid,
                 ", discovery only" if port.discovery_only else "")

    async def unlisten(self, portid: int) -> None:
        """Stop accepting on a port and close every connection made through it.

        Accepting stops first, and connections the loop has already accepted are let become
        transports before the listener closes: asyncio (3.11) makes the transport of an
        accepted socket in a task two loop turns later, and if the listener has closed by then
        it drops the error *and the socket*, leaving the host's connection open with nobody
        reading it — a host hung until its timeout (seen with ports removed and re-added
        under load). The connections then go before the wait: from Python 3.12 on,
        ``wait_closed`` waits for the listener's connections to end, and a host's live queue
        would never end by itself. On uvloop's loop a listener cannot be taken out of the loop
        that way, and a connection accepted around the removal may be made a transport after it:
        ``Connection.connection_made`` closes any connection of a removed port."""
        server = self.listeners.pop(portid, None)
        if server is None:
            return
        self.closed_ports.add(portid)
        await _stop_accepting([server])
        server.close()
        for conn in list(self.connections):
            if conn.port.portid == portid:
                conn.close("port removed")
        await server.wait_closed()

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(self.keepalive_tick)
            now = self.clock()
            for ctrl in list(self.registry.controllers()):
                try:
                    ctrl.check_keepalive(now)
                except Exception:
                    log.exception("keep-alive check of %r failed", ctrl)

    async def close(self) -> None:
        """Stop listening, end every association, close every connection."""
        self.closed_ports.update(self.listeners)
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        await _stop_accepting(self.listeners.values())  # as unlisten, for the same race
        for server in self.listeners.values():
            server.close()
        self.registry.close()
        for conn in list(self.connections):
            conn.close("target shutting down")
        for server in self.listeners.values():
            await server.wait_closed()
        self.listeners.clear()
        # let the transports run their close callbacks before the loop goes away
        for _ in range(3):
            if not self.connections:
                break
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.abort()


async def _stop_accepting(servers) -> None:
    """Take the listeners' sockets out of the loop, then let what they already accepted
    become transports (see ``TargetServer.unlisten``) before anyone closes the listeners."""
    loop = asyncio.get_running_loop()
    for server in servers:
        for sock in server.sockets:
            loop.remove_reader(sock.fileno())
    for _ in range(_ACCEPT_TURNS):
        await asyncio.sleep(0)
