"""The blocking host: one TCP socket per queue, driven from the caller's thread.

I/O commands are sent and their completions received by the thread that issued them (no thread hop
on the hot path; a per-queue lock makes the queues safe to share between threads). Only the admin
queue has a helper thread: it sends Keep Alive at KATO/2 and delivers asynchronous events as soon
as they arrive, which persistent discovery connections depend on.

Sends on an I/O queue are coalesced while the caller keeps it deep: a loopback ``sendmsg`` costs
about as much CPU as all the Python work of a command, so a pipelining caller's commands leave
together once half as many are waiting to go as are outstanding, and always before the thread
blocks for a completion. A lone command (queue depth 1) still goes at once. Holding back only
half keeps host and target working side by side; holding every command until the host blocks made
them take turns (benchmarks/RESULTS.md has both).
"""
from __future__ import annotations

import logging
import select
import socket
import struct
import threading
import time
from typing import Callable

from ..aio_send import advance
from ..errors import (CommandTimeout, ConnectionLost, NvmeStatusError, NvmeTcpError,
                      ProtocolError, TermReqReceived)
from ..protocol import Completion, HostQueue, IcComplete, PeerTerminated, ProtocolFailure
from ..protocol.keepalive import HostKeepAlive
from . import commands as C
from . import procedures as P
from .association import Association, ic_failed
from .identity import ConnectParams

log = logging.getLogger(__name__)
_DONTWAIT = socket.MSG_DONTWAIT


class SyncQueue:
    """One queue's socket and engine, with the commands' completions kept by CID."""

    def __init__(self, sock: socket.socket, engine: HostQueue, timeout: float) -> None:
        self.sock = sock
        self.engine = engine
        self.timeout = timeout
        self.lock = threading.RLock()
        self._done: dict[int, Completion] = {}
        self.on_unsolicited: Callable[[Completion], None] | None = None
        self.unsolicited_cids: set[int] = set()
        self.closed = False

    @classmethod
    def open(cls, traddr: str, trsvcid: int, engine: HostQueue, timeout: float,
             connect_timeout: float) -> "SyncQueue":
        sock = socket.create_connection((traddr, trsvcid), timeout=connect_timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(None)
        secs = min(timeout, connect_timeout)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO,
                        struct.pack("ll", int(secs), int((secs % 1) * 1e6)))
        q = cls(sock, engine, timeout)
        engine.scatter = True  # _receive takes engine.payload_buffers
        engine.initiate()
        with q.lock:
            q._flush()
            deadline = time.monotonic() + connect_timeout
            try:
                while engine.state.value == "await-ic":
                    q._pump(deadline)
            except (ProtocolError, CommandTimeout, ConnectionLost) as exc:
                q._close()
                raise ic_failed(traddr, trsvcid, exc) from None
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO,
                        struct.pack("ll", int(timeout), int((timeout % 1) * 1e6)))
        return q

    # ---- commands ----
    def execute(self, cmd: P.Command) -> Completion | None:
        """Send ``cmd`` and wait for its completion (NvmeStatusError if it failed). A
        ``ReadInto`` is ``read``: its data is in its buffer and None is returned."""
        if cmd.__class__ is P.ReadInto:
            return self._read(cmd)
        with self.lock:  # once: the lock is re-entrant, but each re-entry costs
            cid = self._submit(cmd, cmd)
            return self._wait(cid, time.monotonic() + (cmd.timeout or self.timeout))

    def _read(self, cmd: P.ReadInto) -> None:
        """``execute`` for a read given by its values.

        The capsule goes to the socket as the engine packs it (``HostQueue.send_read``), so
        the engine records the read while the controller is already at work. When the read is
        the only command outstanding, its answer is received the way the engine foresees it
        (``HostQueue.receive_buffers``): the payload straight into the caller's buffer and the
        headers around it checked by value, and the foreseen success returns from here with
        nothing else built. Anything else is filed and waited for as
        any command is."""
        with self.lock:
            if self.closed:
                self._check_open()
            engine = self.engine
            try:
                cid = engine.send_read(P.READ, cmd.nsid, cmd.slba, cmd.nlb, cmd.read_into, cmd,
                                       self.sock.sendall)
            except OSError as exc:
                self._lost(f"send failed: {exc}")
            deadline = time.monotonic() + self.timeout
            scatter = engine.receive_buffers()
            if scatter is not None:
                events = self._receive(deadline, scatter)
                if events is None:
                    return None
                self._file(events)
            self._wait(cid, deadline)
            return None

    def submit(self, cmd: P.Command, context: object = None) -> int:
        """Queue a command without waiting (pipelining); ``wait(cid)`` collects it.

        On an I/O queue the command may be held until more follow (see the module's
        docstring); it is sent at the latest when this queue next waits or polls, or on
        ``flush()``. Admin commands are sent at once."""
        with self.lock:
            return self._submit(cmd, context or cmd)

    def _submit(self, cmd: P.Command, context: object) -> int:
        if self.closed:
            self._check_open()
        cid = cmd.submit_to(self.engine, context)
        bufs = self.engine.data_due()
        if bufs is not None:
            self._send(bufs)
        return cid

    def flush(self) -> None:
        """Send every command submitted so far now."""
        with self.lock:
            self._check_open()
            self._flush()

    def wait(self, cid: int, timeout: float | None = None) -> Completion:
        deadline = time.monotonic() + (timeout or self.timeout)  # time waiting for the lock counts
        with self.lock:
            return self._wait(cid, deadline)

    def _wait(self, cid: int, deadline: float) -> Completion:
        while cid not in self._done:
            self._pump(deadline)
        done = self._done.pop(cid)
        return check(done) if done.status else done  # a call only when it raises

    def wait_any(self, timeout: float | None = None) -> Completion:
        """The next completion of any submitted command (status not checked)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        with self.lock:
            while not self._done:
                self._pump(deadline)
            cid = next(iter(self._done))
            return self._done.pop(cid)

    def poll(self) -> None:
        """Process whatever has arrived, without blocking."""
        with self.lock:
            if not self.closed:
                self._pump(None)

    # ---- transport ----
    def _check_open(self) -> None:
        if self.closed:
            raise ConnectionLost(f"queue {self.engine.qid} is closed")

    def _flush(self) -> None:
        self._send(self.engine.data_to_send())

    def _send(self, bufs: list) -> None:
        try:
            if len(bufs) == 1:  # a lone command: sendall loops in C over partial sends
                return self.sock.sendall(bufs[0])
            while bufs:
                sent = self.sock.sendmsg(bufs)
                if sent == sum(map(len, bufs)):  # the usual case (the engine's buffers are bytes)
                    return
                bufs = advance(bufs, sent)
        except OSError as exc:
            self._lost(f"send failed: {exc}")

    def _pump(self, deadline: float | None) -> None:
        """Receive once, blocking (deadline given) or only what is ready (None), and file what
        came."""
        if self.engine.held:
            self._flush()
        self._file(self._receive(deadline))

    def _receive(self, deadline: float | None, scatter: list | None = None) -> list | None:
        """One receive: into the engine's buffer, or into ``scatter`` (``receive_buffers``);
        the engine's events (None: ``buffers_updated``'s foreseen success).

        The socket stays in blocking mode with SO_RCVTIMEO set to the queue's timeout, so a
        receive is one system call (a Python socket timeout would add a poll() before every
        recv); the command deadline is checked between receives, so a command with a shorter
        timeout than the queue's is failed at the next receive after it passed."""
        engine = self.engine
        try:
            if deadline is None:
                n = self.sock.recv_into(engine.get_buffer(), 0, _DONTWAIT)
            elif deadline <= time.monotonic():
                raise CommandTimeout(f"queue {engine.qid}: no completion in time")
            elif scatter is None:
                payload = engine.payload_buffers  # a large read's rest, then what follows
                if payload is None:
                    n = self.sock.recv_into(engine.get_buffer())
                else:
                    n = self.sock.recvmsg_into(payload)[0]
            else:
                n = self.sock.recvmsg_into(scatter)[0]
        except InterruptedError:
            return []
        except BlockingIOError:
            if deadline is None:
                return []
            raise CommandTimeout(f"queue {engine.qid}: no completion in time") from None
        except OSError as exc:
            self._lost(f"receive failed: {exc}")
        if n == 0:
            self._lost("connection closed by the controller")
        return engine.buffer_updated(n) if scatter is None else engine.buffers_updated(n)

    def _file(self, events: list) -> None:
        """Act on what a receive produced: completions kept by CID (an AER's handed to
        ``on_unsolicited``), a protocol failure or the controller's TermReq raised."""
        engine = self.engine
        if engine.outbox:  # H2CData answering R2Ts, TermReqs
            self._flush()
        done = self._done
        unsolicited = self.unsolicited_cids  # an admin queue's AERs; else empty
        for ev in events:
            if ev.__class__ is Completion:
                if unsolicited and ev.cid in unsolicited and self.on_unsolicited:
                    unsolicited.discard(ev.cid)
                    self.on_unsolicited(ev)
                else:
                    done[ev.cid] = ev
            elif isinstance(ev, ProtocolFailure):
                self._close()
                raise ev.error
            elif isinstance(ev, PeerTerminated):
                self._close()
                raise TermReqReceived(ev.fes, ev.fei, ev.header)
            elif isinstance(ev, IcComplete):
                log.debug("queue %d live: %s", engine.qid, ev)

    def _lost(self, why: str):
        self._close()
        raise ConnectionLost(f"queue {self.engine.qid}: {why}")

    def _close(self) -> None:
        if not self.closed:
            self.closed = True
            self.engine.fail_all()
            try:
                self.sock.close()
            except OSError:
                pass

    def close(self) -> None:
        with self.lock:
            self._close()


def host_queue(p: ConnectParams, req: P.OpenQueue) -> HostQueue:
    """The engine for a queue that ``establish`` asks to open."""
    return HostQueue(req.qid, queue_size=req.queue_size, hdgst=p.hdr_digest,
                     ddgst=p.data_digest, hpda=p.hpda, icd_size=req.icd_size,
                     sqflow_disabled=p.disable_sqflow and req.qid > 0)


def check(done: Completion) -> Completion:
    """Raise NvmeStatusError for a failed completion."""
    if done.status:
        ctx = done.context
        sqe = getattr(ctx, "sqe", b"\0")
        raise NvmeStatusError(done.status, opcode=sqe[0], fabrics=sqe[0] == 0x7F,
                              cid=done.cid, dw0=done.dw0)
    return done


class Controller(Association):
    """A connected NVMe/TCP controller (admin queue + I/O queues), blocking API."""

    def __init__(self, params: ConnectParams) -> None:
        super().__init__(params)
        self.dead: Exception | None = None
        self._ka = HostKeepAlive(int(params.kato * 1000))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._establisher: int | None = None
        self._recover_lock = threading.Lock()
        self._recovering = False

    # ---- drivers for ControllerApi ----
    def _execute(self, cmd: P.Command | P.OpenQueue) -> Completion | None:
        if isinstance(cmd, P.OpenQueue):
            return self._open_queue(cmd)
        return self._io(cmd, None)

    def _run(self, proc, post=None):
        value = P.run_sync(proc, self._execute, time.sleep)
        return post(value) if post else value

    def _io(self, cmd: P.Command, post):
        """One command (``post`` turns its completion into the result; None: the completion),
        requeued once after a reconnect as the kernel does (not Fabrics commands, not the
        thread building the association). Every command takes this path, I/O directly."""
        if self._recovering and self._establisher != threading.get_ident():
            with self._recover_lock:  # wait for the new association instead of racing it
                pass
        generation = self._generation
        try:
            done = self._queue_for(cmd.queue).execute(cmd)
        except ConnectionLost:
            if (cmd.sqe[0] == 0x7F or self._establisher == threading.get_ident()
                    or not self._recover(generation)):
                raise
            done = self._queue_for(cmd.queue).execute(cmd)  # requeued, as the kernel does
        return post(done) if post else done

    # ---- bring-up and recovery ----
    def connect(self) -> "Controller":
        try:
            self._establish()
        except BaseException:
            self.close(shutdown=False)
            raise
        self._start_admin_thread()
        return self

    def _establish(self) -> None:
        """Admin queue, enable, identify, I/O queues: a whole new association.

        A loss while establishing fails the attempt (no nested recovery)."""
        self._establisher = threading.get_ident()
        try:
            self._adopt(self._run(self._establish_procedure()))
        finally:
            self._establisher = None
        if self._aer_wanted:
            self.arm_async_events(self._aer_wanted)

    def _open_queue(self, req: P.OpenQueue) -> None:
        p = self.params
        self._add_queue(req, SyncQueue.open(p.traddr, p.trsvcid, host_queue(p, req),
                                            p.timeout, p.connect_timeout))

    def _recover(self, generation: int) -> bool:
        """Re-establish the association after a loss; True when commands may be retried."""
        with self._recover_lock:
            if self._generation != generation and self.admin and not self.admin.closed:
                return True  # another thread already reconnected
            if self._stop.is_set():
                return False
            self._recovering = True
            try:
                return self._reconnect_loop()
            finally:
                self._recovering = False

    def _reconnect_loop(self) -> bool:
        self._policy.lost(time.monotonic())
        for q in self.io + [self.admin]:
            if q is not None:
                q.close()
        while (wait := self._policy.next_attempt(time.monotonic())) is not None:
            if self._stop.wait(wait):
                return False
            try:
                self._establish()
            except (NvmeTcpError, OSError) as exc:
                if self._give_up(exc):
                    return False
            else:
                log.info("reconnected to %s (cntlid %d)", self.params.subnqn, self.cntlid)
                self._policy.recovered()
                return True
        return False

    # ---- async events and keep-alive ----
    def arm_async_events(self, count: int = 1) -> None:
        """Keep ``count`` Asynchronous Event Requests outstanding (re-armed after each event,
        and again after a reconnect)."""
        self._aer_wanted = count
        for _ in range(count):
            self._arm_one()

    def _arm_one(self) -> None:
        cid = self.admin.submit(P.Command(C.async_event_request()))
        self.admin.unsolicited_cids.add(cid)
        self.admin.on_unsolicited = self._on_aer

    def _on_aer(self, done: Completion) -> None:
        if self._deliver_event(done) and not self.admin.closed:
            self._arm_one()

    def _start_admin_thread(self) -> None:
        self._ka.start(time.monotonic())
        self._thread = threading.Thread(target=self._admin_loop, name="nvme-admin",
                                        daemon=True)
        self._thread.start()

    def _admin_loop(self) -> None:
        """Keep-alive at KATO/2 and prompt AEN delivery; a lost association is re-established
        here too, so an idle controller recovers like the kernel's (not only on the next I/O)."""
        while not self._stop.is_set():
            admin, generation = self.admin, self._generation
            deadline = self._ka.next_deadline()
            wait = 0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic()))
            try:
                readable, _, _ = select.select([admin.sock], [], [], wait)
                if readable:
                    admin.poll()
                if self._ka.due(time.monotonic()):
                    self._ka.sent(time.monotonic())
                    admin.execute(P.Command(C.keep_alive()))
                    self._ka.completed()
            except (NvmeTcpError, ValueError, OSError) as exc:
                if self._stop.is_set():
                    return
                log.warning("admin queue of %s failed: %s", self.params.subnqn, exc)
                self._ka.completed()
                if not self._recover(generation):
                    self.dead = exc
                    return
                self._ka.start(time.monotonic())

    # ---- teardown ----
    def close(self, shutdown: bool = True) -> None:
        """Shut the controller down (CC.SHN) when it is healthy, then close every queue."""
        self._stop.set()
        if shutdown and self.admin and not self.admin.closed:
            try:
                self._run(P.shutdown())
            except (NvmeTcpError, OSError) as exc:
                log.debug("shutdown failed: %s", exc)
        for q in self.io:
            q.close()
        if self.admin:
            self.admin.close()
        if self._thread and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)

    def __enter__(self) -> "Controller":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def connect(traddr: str, trsvcid: int = 4420, subnqn: str = "", **kwargs) -> Controller:
    """Connect to an NVMe/TCP subsystem; use as a context manager to disconnect cleanly."""
    return Controller(ConnectParams(traddr=traddr, trsvcid=int(trsvcid), subnqn=subnqn,
                                    **kwargs)).connect()


def discover(traddr: str, trsvcid: int = 8009, **kwargs):
    """Read the discovery log of a discovery controller (then disconnect)."""
    from ..spec.opcodes import DISCOVERY_NQN

    kwargs.setdefault("nr_io_queues", 0)
    kwargs.setdefault("kato", 0)
    kwargs.setdefault("ctrl_loss_tmo", 0)
    with connect(traddr, trsvcid, DISCOVERY_NQN, **kwargs) as ctrl:
        return ctrl.discovery_log()
