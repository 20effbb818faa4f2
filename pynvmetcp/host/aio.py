"""The asyncio host: the same engine and procedures as the blocking host, on an event loop.

Each queue is an ``asyncio.BufferedProtocol`` whose receive buffer is the engine's, so C2HData
lands in the caller's buffer directly; commands wait on futures keyed by CID; a semaphore keeps at
most queue_size - 1 commands outstanding. Keep-alive and AER re-arming are tasks on the same loop.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import socket
from typing import Callable

from ..errors import CommandTimeout, ConnectionLost, NvmeTcpError, TermReqReceived
from ..protocol import Completion, HostQueue, PeerTerminated, ProtocolFailure
from ..protocol.aer import AsyncEvent
from ..spec.opcodes import DISCOVERY_NQN
from . import commands as C
from . import procedures as P
from .api import ControllerApi
from .identity import ConnectParams
from .sync import check

log = logging.getLogger(__name__)


class AsyncQueue(asyncio.BufferedProtocol):
    def __init__(self, engine: HostQueue, timeout: float) -> None:
        self.engine = engine
        self.timeout = timeout
        self.transport: asyncio.Transport | None = None
        self._waiters: dict[int, asyncio.Future] = {}
        self._ready: asyncio.Future | None = None
        self._slots = asyncio.Semaphore(engine.queue_size - 1)
        self.error: Exception | None = None
        self.on_unsolicited: Callable[[Completion], None] | None = None
        self.unsolicited_cids: set[int] = set()

    @classmethod
    async def open(cls, traddr: str, trsvcid: int, engine: HostQueue, timeout: float,
                   connect_timeout: float) -> "AsyncQueue":
        loop = asyncio.get_running_loop()
        q = cls(engine, timeout)
        q._ready = loop.create_future()
        await asyncio.wait_for(loop.create_connection(lambda: q, traddr, trsvcid),
                               connect_timeout)
        engine.initiate()
        q._flush()
        try:
            await asyncio.wait_for(asyncio.shield(q._ready), connect_timeout)
        except asyncio.TimeoutError:
            q.close()
            raise ConnectionLost(f"no ICResp from {traddr}:{trsvcid} in {connect_timeout} s")
        return q

    # ---- protocol callbacks ----
    def connection_made(self, transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.engine.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        events = self.engine.buffer_updated(nbytes)
        self._flush()
        for ev in events:
            if isinstance(ev, Completion):
                if ev.cid in self.unsolicited_cids and self.on_unsolicited:
                    self.unsolicited_cids.discard(ev.cid)
                    self.on_unsolicited(ev)
                    continue
                fut = self._waiters.pop(ev.cid, None)
                if fut is not None and not fut.done():
                    fut.set_result(ev)
            elif isinstance(ev, ProtocolFailure):
                self._fail(ev.error)
            elif isinstance(ev, PeerTerminated):
                self._fail(TermReqReceived(ev.fes, ev.fei, ev.header))
            elif self._ready is not None and not self._ready.done():
                self._ready.set_result(ev)

    def connection_lost(self, exc) -> None:
        self._fail(ConnectionLost(f"queue {self.engine.qid}: connection lost"
                                  + (f" ({exc})" if exc else "")))

    def _fail(self, error: Exception) -> None:
        if self.error is None:
            self.error = error
        self.engine.fail_all()
        for fut in list(self._waiters.values()) + [self._ready]:
            if fut is not None and not fut.done():
                fut.set_exception(self.error)
        self._waiters.clear()
        if self.transport is not None:
            self.transport.close()

    def _flush(self) -> None:
        bufs = self.engine.data_to_send()
        if bufs and self.transport is not None:
            self.transport.writelines(bufs)

    # ---- commands ----
    def submit(self, cmd: P.Command) -> tuple[int, asyncio.Future]:
        if self.error:
            raise self.error
        cid = self.engine.submit(cmd.sqe, write=cmd.write, read_into=cmd.read_into,
                                 read_len=cmd.read_len, context=cmd)
        fut = asyncio.get_running_loop().create_future()
        self._waiters[cid] = fut
        self._flush()
        return cid, fut

    async def execute(self, cmd: P.Command) -> Completion:
        async with self._slots:
            cid, fut = self.submit(cmd)
            try:
                done = await asyncio.wait_for(fut, cmd.timeout or self.timeout)
            except asyncio.TimeoutError:
                raise CommandTimeout(f"queue {self.engine.qid}: command {cid} timed out")
        return check(done)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class AsyncController(ControllerApi):
    """A connected NVMe/TCP controller, asyncio API (every method returns an awaitable)."""

    def __init__(self, params: ConnectParams) -> None:
        self.params = params
        self.admin: AsyncQueue | None = None
        self.io: list[AsyncQueue] = []
        self._rr = itertools.count()
        self.cntlid = 0
        self.cap = 0
        self.vs = 0
        self.id = None
        self.event_handlers: list[Callable[[AsyncEvent], None]] = []
        self._tasks: list[asyncio.Task] = []

    def _execute(self, cmd: P.Command):
        if cmd.queue == 0:
            return self.admin.execute(cmd)
        if cmd.queue == -1:
            if not self.io:
                raise NvmeTcpError("no I/O queues (connect with nr_io_queues ≥ 1)")
            return self.io[next(self._rr) % len(self.io)].execute(cmd)
        return self.io[cmd.queue - 1].execute(cmd)

    async def _run(self, proc, post=None):
        value = await P.run_async(proc, self._execute, asyncio.sleep)
        return post(value) if post else value

    async def _io(self, command, post):
        return post(await self._execute(command))

    async def connect(self) -> "AsyncController":
        p = self.params
        try:
            self.admin = await AsyncQueue.open(p.traddr, p.trsvcid, HostQueue(
                0, queue_size=32, hdgst=p.hdr_digest, ddgst=p.data_digest, hpda=p.hpda),
                p.timeout, p.connect_timeout)
            self.cntlid = await self._run(P.connect_queue(p.identity, p.subnqn, 0, 32,
                                                          int(p.kato * 1000)))
            self.cap, self.vs = await self._run(P.enable())
            self.id = await self.identify()
            nr = await self._run(P.set_queue_count(p.nr_io_queues)) if p.nr_io_queues else 0
            icd = max(self.id.ioccsz * 16 - 64, 0)
            qsize = min(p.queue_size, (self.cap & 0xFFFF) + 1)
            for qid in range(1, nr + 1):
                q = await AsyncQueue.open(p.traddr, p.trsvcid, HostQueue(
                    qid, queue_size=qsize, hdgst=p.hdr_digest, ddgst=p.data_digest,
                    hpda=p.hpda, icd_size=icd), p.timeout, p.connect_timeout)
                self.io.append(q)
                await self._run(P.connect_queue(p.identity, p.subnqn, qid, qsize, 0,
                                                self.cntlid))
        except BaseException:
            await self.close(shutdown=False)
            raise
        self.io_queue_ids = list(range(1, len(self.io) + 1))
        if p.kato:
            self._tasks.append(asyncio.create_task(self._keep_alive(p.kato / 2)))
        return self

    async def _keep_alive(self, interval: float) -> None:
        try:
            while True:
                await asyncio.sleep(interval)
                await self.keep_alive()
        except (NvmeTcpError, OSError) as exc:
            log.warning("keep-alive to %s failed: %s", self.params.subnqn, exc)

    def arm_async_events(self, count: int = 1) -> None:
        for _ in range(count):
            self._arm_one()

    def _arm_one(self) -> None:
        cid, fut = self.admin.submit(P.Command(C.async_event_request()))
        self.admin._waiters.pop(cid, None)
        self.admin.unsolicited_cids.add(cid)
        self.admin.on_unsolicited = self._on_aer

    def _on_aer(self, done: Completion) -> None:
        if done.status:
            log.warning("AER failed with status %#x", done.status)
            return
        event = AsyncEvent.from_dw0(done.dw0)
        for handler in list(self.event_handlers):
            try:
                handler(event)
            except Exception:
                log.exception("async event handler failed")
        if self.admin.error is None:
            self._arm_one()

    async def close(self, shutdown: bool = True) -> None:
        for task in self._tasks:
            task.cancel()
        if shutdown and self.admin and self.admin.error is None:
            try:
                await self._run(P.shutdown())
            except (NvmeTcpError, OSError) as exc:
                log.debug("shutdown failed: %s", exc)
        for q in self.io + ([self.admin] if self.admin else []):
            q.close()

    async def __aenter__(self) -> "AsyncController":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()


async def aconnect(traddr: str, trsvcid: int = 4420, subnqn: str = "",
                   **kwargs) -> AsyncController:
    return await AsyncController(ConnectParams(traddr=traddr, trsvcid=int(trsvcid),
                                               subnqn=subnqn, **kwargs)).connect()


async def adiscover(traddr: str, trsvcid: int = 8009, **kwargs):
    kwargs.setdefault("nr_io_queues", 0)
    kwargs.setdefault("kato", 0)
    ctrl = await aconnect(traddr, trsvcid, DISCOVERY_NQN, **kwargs)
    async with ctrl:
        return await ctrl.discovery_log()
