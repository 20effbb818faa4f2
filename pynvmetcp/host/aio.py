"""The asyncio host: the same engine and procedures as the blocking host, on an event loop.

Each queue is an ``asyncio.BufferedProtocol`` whose receive buffer is the engine's, so C2HData
lands in the caller's buffer directly; commands wait on futures keyed by CID; at most
queue_size - 1 are outstanding, later ones wait their turn in order. Keep-alive and AER re-arming
are tasks on the same loop.

Per command there is one future and one timer-free deadline; waiting for a free slot costs
nothing unless the queue is full (an ``asyncio.Semaphore`` costs two coroutines per command).
"""
from __future__ import annotations

import asyncio
import collections
import logging
import socket
from typing import Callable

from ..aio_send import BufferSender
from ..errors import CommandTimeout, ConnectionLost, NvmeTcpError, ProtocolError, TermReqReceived
from ..protocol import Completion, HostQueue, PeerTerminated, ProtocolFailure
from ..spec.opcodes import DISCOVERY_NQN
from . import commands as C
from . import procedures as P
from .association import Association, ic_failed
from .identity import ConnectParams
from .sync import check, host_queue

log = logging.getLogger(__name__)


class AsyncQueue(asyncio.BufferedProtocol):
    def __init__(self, engine: HostQueue, timeout: float) -> None:
        self.engine = engine
        self.loop = asyncio.get_running_loop()  # a queue lives and dies in the loop that opened it
        self.timeout = timeout
        self.transport: asyncio.Transport | None = None
        self._sender: BufferSender | None = None
        self._deadlines: dict[int, float] = {}
        self._watchdog: asyncio.TimerHandle | None = None
        self._waiters: dict[int, asyncio.Future] = {}
        self._ready: asyncio.Future | None = None
        self._slot_waiters: collections.deque[asyncio.Future] = collections.deque()
        self._reserved = 0  # slots promised to woken waiters that have not submitted yet
        self.error: Exception | None = None
        self.on_unsolicited: Callable[[Completion], None] | None = None
        self.unsolicited_cids: set[int] = set()
        self._flush_soon: asyncio.Handle | None = None

    @classmethod
    async def open(cls, traddr: str, trsvcid: int, engine: HostQueue, timeout: float,
                   connect_timeout: float) -> "AsyncQueue":
        q = cls(engine, timeout)
        loop = q.loop
        q._ready = loop.create_future()
        await asyncio.wait_for(loop.create_connection(lambda: q, traddr, trsvcid),
                               connect_timeout)
        engine.initiate()
        q._flush()
        try:
            await asyncio.wait_for(asyncio.shield(q._ready), connect_timeout)
        except asyncio.TimeoutError:
            q.close()
            raise ic_failed(traddr, trsvcid, f"no ICResp in {connect_timeout:g} s") from None
        except (ProtocolError, ConnectionLost) as exc:
            q.close()
            raise ic_failed(traddr, trsvcid, exc) from None
        return q

    # ---- protocol callbacks ----
    def connection_made(self, transport) -> None:
        self.transport = transport
        self._sender = BufferSender(transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.engine.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        events = self.engine.buffer_updated(nbytes)
        if self.engine.outbox:  # H2CData answering R2Ts, TermReqs
            self._flush()
        for ev in events:
            if isinstance(ev, Completion):
                if ev.cid in self.unsolicited_cids and self.on_unsolicited:
                    self.unsolicited_cids.discard(ev.cid)
                    self.on_unsolicited(ev)
                    continue
                fut = self._waiters.pop(ev.cid, None)
                self._deadlines.pop(ev.cid, None)
                if fut is not None and not fut.done():
                    fut.set_result(ev)
            elif isinstance(ev, ProtocolFailure):
                self._fail(ev.error)
            elif isinstance(ev, PeerTerminated):
                self._fail(TermReqReceived(ev.fes, ev.fei, ev.header))
            elif self._ready is not None and not self._ready.done():
                self._ready.set_result(ev)
        if self._slot_waiters:
            self._wake_slot_waiters()

    def _free(self) -> int:
        return self.engine.queue_size - 1 - self.engine.outstanding - self._reserved

    def _wake_slot_waiters(self) -> None:
        """Let as many waiting commands go as there are free slots, oldest first; each woken
        one's slot is reserved until it submits, so a newcomer cannot take it meanwhile."""
        free = self._free()
        while self._slot_waiters and free > 0:
            waiter = self._slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self._reserved += 1
                free -= 1

    def connection_lost(self, exc) -> None:
        self._fail(ConnectionLost(f"queue {self.engine.qid}: connection lost"
                                  + (f" ({exc})" if exc else "")))

    def _fail(self, error: Exception) -> None:
        if self.error is None:
            self.error = error
        self.engine.fail_all()
        for fut in list(self._waiters.values()) + list(self._slot_waiters) + [self._ready]:
            if fut is not None and not fut.done():
                fut.set_exception(self.error)
        self._waiters.clear()
        self._slot_waiters.clear()
        self._deadlines.clear()  # nothing left to time out: the watchdog stops
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self.transport is not None:
            self.transport.close()

    def _flush(self) -> None:
        bufs = self.engine.data_to_send()
        if bufs and self._sender is not None:
            self._sender.send(bufs)

    def _flush_held(self) -> None:
        self._flush_soon = None
        if self.engine.held and self.error is None:
            self._flush()

    # ---- commands ----
    def submit(self, cmd: P.Command) -> tuple[int, asyncio.Future]:
        if self.error:
            raise self.error
        cid = cmd.submit_to(self.engine, cmd)
        loop = self.loop
        fut = loop.create_future()
        self._waiters[cid] = fut
        # Coalesced as on the blocking host: what is held leaves once half as many are held as
        # are outstanding, or at the end of this turn of the loop at the latest.
        bufs = self.engine.data_due()
        if bufs is not None:
            if self._sender is not None:
                self._sender.send(bufs)
        elif self._flush_soon is None:
            self._flush_soon = loop.call_soon(self._flush_held)
        return cid, fut

    async def execute(self, cmd: P.Command) -> Completion:
        loop = self.loop
        timeout = cmd.timeout or self.timeout
        if self._slot_waiters or self._free() <= 0:
            await self._slot(timeout)
            self._reserved -= 1
            try:
                cid, fut = self.submit(cmd)
            except BaseException:
                self._wake_slot_waiters()  # the slot this command was given is free again
                raise
        else:
            cid, fut = self.submit(cmd)
        self._deadlines[cid] = loop.time() + timeout
        if self._watchdog is None:
            self._watchdog = loop.call_later(self._tick, self._expire)
        try:
            done = await fut
        except asyncio.CancelledError:
            self._deadlines.pop(cid, None)  # the completion, when it comes, is dropped
            raise
        return check(done)

    async def _slot(self, timeout: float) -> None:
        """Wait until this command may go (behind those already waiting), for at most the
        command's timeout: commands that timed out keep their slots until their completions
        come, and a controller that never sends them must not hold later commands forever."""
        loop = self.loop
        waiter = loop.create_future()
        self._slot_waiters.append(waiter)
        timer = loop.call_later(timeout, _expire_waiter, waiter, CommandTimeout(
            f"queue {self.engine.qid}: no free slot in {timeout:g} s (earlier commands are "
            f"still outstanding)"))
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._reserved -= 1  # our turn came as we were cancelled: pass it on
                self._wake_slot_waiters()
            raise
        finally:
            timer.cancel()

    @property
    def _tick(self) -> float:
        return min(1.0, self.timeout / 4)

    def _expire(self) -> None:
        """One timer per queue instead of one per command (``wait_for`` costs a timer handle and
        callbacks for every I/O): fail the commands past their deadline, re-arm while any wait."""
        self._watchdog = None
        now = self.loop.time()
        for cid, deadline in list(self._deadlines.items()):
            if deadline <= now:
                self._deadlines.pop(cid, None)
                fut = self._waiters.get(cid)
                if fut is not None and not fut.done():
                    self._waiters.pop(cid, None)
                    fut.set_exception(CommandTimeout(
                        f"queue {self.engine.qid}: command {cid} timed out"))
        if self._deadlines:
            self._watchdog = self.loop.call_later(self._tick, self._expire)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def _expire_waiter(waiter: asyncio.Future, error: Exception) -> None:
    if not waiter.done():
        waiter.set_exception(error)


class AsyncController(Association):
    """A connected NVMe/TCP controller, asyncio API (every method returns an awaitable)."""

    def __init__(self, params: ConnectParams) -> None:
        super().__init__(params)
        self._tasks: list[asyncio.Task] = []
        self._establishing = False
        self._closing = False
        self._recover_lock = asyncio.Lock()

    async def _execute(self, cmd):
        if isinstance(cmd, P.OpenQueue):
            return await self._open_queue(cmd)
        return await self._io(cmd, None)

    async def _open_queue(self, req: P.OpenQueue) -> None:
        p = self.params
        self._add_queue(req, await AsyncQueue.open(p.traddr, p.trsvcid, host_queue(p, req),
                                                   p.timeout, p.connect_timeout))

    async def _run(self, proc, post=None):
        value = await P.run_async(proc, self._execute, asyncio.sleep)
        return post(value) if post else value

    async def _io(self, command, post):
        """One command, requeued once after a reconnect as the kernel does (not Fabrics
        commands, not while the association is being built). The I/O path: one coroutine
        between the caller and the queue, each costs a frame resumed per completion."""
        generation = self._generation
        try:
            done = await self._queue_for(command.queue).execute(command)
        except ConnectionLost:
            if (command.sqe[0] == 0x7F or self._establishing
                    or not await self._recover(generation)):
                raise
            done = await self._queue_for(command.queue).execute(command)
        return post(done) if post else done

    async def connect(self) -> "AsyncController":
        try:
            await self._establish()
        except BaseException:
            await self.close(shutdown=False)
            raise
        if self.params.kato:
            self._tasks.append(asyncio.create_task(self._keep_alive(self.params.kato / 2)))
        return self

    async def _establish(self) -> None:
        self._establishing = True
        try:
            self._adopt(await self._run(self._establish_procedure()))
        finally:
            self._establishing = False
        if self._aer_wanted:
            self.arm_async_events(self._aer_wanted)

    async def _recover(self, generation: int) -> bool:
        """Re-establish a lost association (ctrl_loss_tmo / reconnect_delay semantics)."""
        async with self._recover_lock:
            if self._generation != generation and self.admin and self.admin.error is None:
                return True
            if self._closing:
                return False
            loop = asyncio.get_running_loop()
            self._policy.lost(loop.time())
            for q in self.io + ([self.admin] if self.admin else []):
                q.close()
            while (wait := self._policy.next_attempt(loop.time())) is not None:
                await asyncio.sleep(wait)
                try:
                    await self._establish()
                except (NvmeTcpError, OSError) as exc:
                    if self._give_up(exc):
                        return False
                else:
                    self._policy.recovered()
                    return True
            return False

    async def _keep_alive(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            generation = self._generation
            try:
                await self.admin.execute(P.Command(C.keep_alive()))
            except (NvmeTcpError, OSError) as exc:
                log.warning("keep-alive to %s failed: %s", self.params.subnqn, exc)
                if not await self._recover(generation):
                    return

    def arm_async_events(self, count: int = 1) -> None:
        self._aer_wanted = count
        for _ in range(count):
            self._arm_one()

    def _arm_one(self) -> None:
        cid, fut = self.admin.submit(P.Command(C.async_event_request()))
        self.admin._waiters.pop(cid, None)
        self.admin.unsolicited_cids.add(cid)
        self.admin.on_unsolicited = self._on_aer

    def _on_aer(self, done: Completion) -> None:
        if self._deliver_event(done) and self.admin.error is None:
            self._arm_one()

    async def close(self, shutdown: bool = True) -> None:
        self._closing = True
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
    kwargs.setdefault("ctrl_loss_tmo", 0)
    ctrl = await aconnect(traddr, trsvcid, DISCOVERY_NQN, **kwargs)
    async with ctrl:
        return await ctrl.discovery_log()
