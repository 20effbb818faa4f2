"""Hypothesis state machines over a host queue and a controller queue joined by a byte pipe.

The first drives valid traffic (reads and writes of any size, in-capsule and R2T, completions in
any order, the pipe cutting bytes anywhere): every command completes exactly once with the right
data and both engines stay live. The second injects corrupt bytes: each engine ends live or
terminated with a failure event, and never raises.
"""
from __future__ import annotations

import random

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant, precondition,
                                 rule)

from pynvmetcp.host import commands as C
from pynvmetcp.protocol import (CommandReceived, Completion, ControllerQueue, HostQueue,
                                PeerTerminated, ProtocolFailure, QueueState)

SETTINGS = settings(max_examples=40, stateful_step_count=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
BLOCK = 512


class Pipe:
    """Bytes in flight one way; delivered in random cuts."""

    def __init__(self, sender, receiver, rng: random.Random) -> None:
        self.sender, self.receiver, self.rng = sender, receiver, rng
        self.buf = b""

    def pump(self, limit: int | None = None) -> list:
        self.buf += b"".join(bytes(b) for b in self.sender.data_to_send())
        n = len(self.buf) if limit is None else min(limit, len(self.buf))
        events = []
        sent = 0
        while sent < n:
            k = min(self.rng.randint(1, 9000), n - sent)
            events += self.receiver.receive(self.buf[sent:sent + k])
            sent += k
        self.buf = self.buf[n:]
        return events


class Traffic(RuleBasedStateMachine):
    @initialize(hdgst=st.booleans(), ddgst=st.booleans(), hpda=st.integers(0, 31),
                cpda=st.integers(0, 31), seed=st.integers(0, 2**32))
    def setup(self, hdgst, ddgst, hpda, cpda, seed):
        self.rng = random.Random(seed)
        self.host = HostQueue(1, queue_size=32, hdgst=hdgst, ddgst=ddgst, hpda=hpda,
                              icd_size=8192)
        self.ctrl = ControllerQueue(cpda=cpda, maxh2cdata=4096 * self.rng.randint(1, 8),
                                    icd_size=8192, c2h_chunk=4096 * self.rng.randint(1, 8))
        self.up = Pipe(self.host, self.ctrl, self.rng)
        self.down = Pipe(self.ctrl, self.host, self.rng)
        self.host.initiate()
        self.up.pump()
        self.down.pump()
        self.ctrl.configure(1, 31)
        self.disk = bytearray(BLOCK * 512)
        self.expect: dict[int, tuple[str, bytes | None]] = {}
        self.ready: list[CommandReceived] = []
        self.done = 0

    def _deliver(self, events):
        for ev in events:
            assert isinstance(ev, (CommandReceived, Completion)), ev
            if isinstance(ev, CommandReceived):
                self.ready.append(ev)
            else:
                kind, want = self.expect.pop(ev.cid)
                assert ev.status == 0
                if kind == "read":
                    assert bytes(ev.data) == want
                self.done += 1

    @precondition(lambda self: self.host.can_submit)
    @rule(blocks=st.integers(1, 40), slba=st.integers(0, 400), write=st.booleans())
    def submit(self, blocks, slba, write):
        # overlapping reads and writes in flight have no defined order: a write goes alone
        busy = any(k == "write" for k, _ in self.expect.values())
        if write and not self.expect:
            data = self.rng.randbytes(blocks * BLOCK)
            cid = self.host.submit(C.write(1, slba, blocks), write=data)
            self.expect[cid] = ("write", None)
            self.disk[slba * BLOCK:(slba + blocks) * BLOCK] = data
        elif not busy:
            cid = self.host.submit(C.read(1, slba, blocks), read_len=blocks * BLOCK)
            self.expect[cid] = ("read", bytes(self.disk[slba * BLOCK:(slba + blocks) * BLOCK]))

    @rule(limit=st.integers(1, 70000))
    def pump_up(self, limit):
        self._deliver(self.up.pump(limit))

    @rule(limit=st.integers(1, 70000))
    def pump_down(self, limit):
        self._deliver(self.down.pump(limit))

    @precondition(lambda self: self.ready)
    @rule(pick=st.integers(0, 100))
    def complete_one(self, pick):
        ev = self.ready.pop(pick % len(self.ready))
        slba = int.from_bytes(ev.sqe[40:48], "little")
        if ev.c2h_length:
            self.ctrl.complete(ev.cid, data=self.disk[slba * BLOCK:slba * BLOCK + ev.c2h_length])
        else:
            self.ctrl.complete(ev.cid)

    @invariant()
    def both_live(self):
        if hasattr(self, "host"):
            assert self.host.state is QueueState.LIVE and self.ctrl.state is QueueState.LIVE

    def teardown(self):
        if not hasattr(self, "host"):
            return
        for _ in range(200):  # drain: everything submitted completes exactly once
            self._deliver(self.up.pump())
            while self.ready:
                self.complete_one(0)
            self._deliver(self.down.pump())
            if not self.expect:
                break
        assert not self.expect and self.host.outstanding == 0


class Corruption(Traffic):
    """Valid traffic plus corrupt bytes; both ends must stay in a defined state."""

    @rule(junk=st.binary(min_size=1, max_size=200), to_ctrl=st.booleans())
    def inject(self, junk, to_ctrl):
        target = self.ctrl if to_ctrl else self.host
        for ev in target.receive(junk):
            assert isinstance(ev, (CommandReceived, Completion, ProtocolFailure,
                                   PeerTerminated)), ev
        self.corrupted = True

    def _deliver(self, events):
        for ev in events:
            if isinstance(ev, (ProtocolFailure, PeerTerminated)):
                continue
            if isinstance(ev, CommandReceived):
                self.ready.append(ev)
            else:
                self.expect.pop(ev.cid, None)

    @precondition(lambda self: self.ready and self.ctrl.state is QueueState.LIVE)
    @rule(pick=st.integers(0, 100))
    def complete_one(self, pick):
        ev = self.ready.pop(pick % len(self.ready))
        try:
            self.ctrl.complete(ev.cid, data=bytes(ev.c2h_length) if ev.c2h_length else None)
        except RuntimeError:
            pass  # the command died with its connection's state

    @precondition(lambda self: self.host.state is QueueState.LIVE and self.host.can_submit)
    @rule(blocks=st.integers(1, 40), slba=st.integers(0, 400), write=st.booleans())
    def submit(self, blocks, slba, write):
        super().submit(blocks, slba, write)

    @invariant()
    def both_live(self):
        if hasattr(self, "host"):
            for q in (self.host, self.ctrl):
                assert q.state in (QueueState.LIVE, QueueState.TERMINATED)
                if q.state is QueueState.TERMINATED:
                    assert q.receive(b"\x04" * 100) == []  # nothing more is accepted

    def teardown(self):
        pass


TestTraffic = Traffic.TestCase
TestTraffic.settings = SETTINGS
TestCorruption = Corruption.TestCase
TestCorruption.settings = SETTINGS
