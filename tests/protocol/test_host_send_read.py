"""``HostQueue.send_read``: a read submitted and handed to the transport's send in one call.

On an idle queue the capsule goes to ``send`` before the engine records the command (its
bookkeeping then overlaps the controller's work); everywhere else it must be exactly
``submit_read`` followed by ``data_due()``. Either way the bytes on the wire and the completion
are those of ``submit_read``.
"""
from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from .conftest import Pair, wire


def _pattern(n: int, seed: int) -> bytes:
    return bytes((seed * 5 + i) & 0xFF for i in range(n))


class Wire:
    """A transport's send: what was given, and what the engine had recorded at that moment."""

    def __init__(self, q) -> None:
        self.q = q
        self.sent: list[bytes] = []
        self.outstanding_then: list[int] = []

    def __call__(self, buf) -> None:
        self.outstanding_then.append(self.q.outstanding)
        self.sent.append(bytes(buf))


@settings(max_examples=100, deadline=None)
@given(hdgst=st.booleans(), slba=st.integers(0, (1 << 64) - 1), nlb=st.integers(1, 16),
       nsid=st.integers(0, 0xFFFFFFFF))
def test_an_idle_queue_sends_the_capsule_first_and_records_the_read_after(hdgst, slba, nlb,
                                                                         nsid):
    fast, usual = Pair(hdgst=hdgst), Pair(hdgst=hdgst)
    a, b = bytearray(512 * nlb), bytearray(512 * nlb)
    send = Wire(fast.host)
    cid = fast.host.send_read(0x02, nsid, slba, nlb, a, "ctx", send)
    assert usual.host.submit_read(0x02, nsid, slba, nlb, b, "ctx") == cid
    usual_sent = wire(usual.host)
    assert send.sent == [usual_sent]  # one buffer: the capsule, digest included
    assert send.outstanding_then == [0]  # handed over before it was recorded
    assert (fast.host.outstanding, fast.host.held, fast.host.outbox) == (1, 0, [])
    for p, sent in ((fast, send.sent[0]), (usual, usual_sent)):
        p.ctrl.receive(sent)
        p.ctrl.complete(cid, data=_pattern(len(a), nlb))
    (one,), (two,) = fast.to_host(), usual.to_host()
    assert one == two and one.context == "ctx" and one.data.obj is a
    assert bytes(a) == _pattern(len(a), nlb) and fast.host.outstanding == 0


@pytest.mark.parametrize("before", [1, 2, 3, 6])
def test_a_busy_queue_submits_and_sends_what_data_due_gives(before):
    """With commands outstanding the read is recorded first and sent by the coalescing rule:
    the same sends, in the same order, as ``submit_read`` then ``data_due()``."""
    fast, usual = Pair(), Pair()
    for p in (fast, usual):
        for i in range(before):
            p.host.submit_read(0x02, 1, i, 1, bytearray(512))
        wire(p.host)  # those went earlier
    send = Wire(fast.host)
    cid = fast.host.send_read(0x02, 1, 99, 1, bytearray(512), None, send)
    assert usual.host.submit_read(0x02, 1, 99, 1, bytearray(512)) == cid
    due = usual.host.data_due()
    assert send.sent == [bytes(b) for b in due or ()]
    assert send.outstanding_then == [before + 1] * len(send.sent)
    assert (fast.host.held, fast.host.outbox) == (usual.host.held, usual.host.outbox)
    assert bool(send.sent) == (before < 3)  # held once half as many wait as are outstanding


def test_something_waiting_in_the_outbox_goes_first():
    """Bytes already waiting to go (here an earlier command's capsule) are sent before the new
    read's, not overtaken by it."""
    p = Pair()
    first = p.host.submit_read(0x02, 1, 0, 1, bytearray(512))
    held = bytes(p.host.outbox[0])
    send = Wire(p.host)
    second = p.host.send_read(0x02, 1, 1, 1, bytearray(512), None, send)
    assert send.sent[0] == held and len(send.sent) == 2 and first != second


def test_a_send_that_fails_leaves_the_read_unrecorded():
    p = Pair()

    def broken(buf):
        raise ConnectionResetError("peer gone")

    with pytest.raises(ConnectionResetError):
        p.host.send_read(0x02, 1, 0, 1, bytearray(512), None, broken)
    assert (p.host.outstanding, p.host.held, p.host.outbox) == (0, 0, [])


def test_send_read_refuses_what_submit_read_refuses_before_anything_is_sent():
    p = Pair()
    send = Wire(p.host)
    with pytest.raises(ValueError, match="writable"):
        p.host.send_read(0x02, 1, 0, 1, b"\0" * 512, None, send)
    with pytest.raises(struct.error):  # NLB beyond 16 bits
        p.host.send_read(0x02, 1, 0, (1 << 16) + 1, bytearray(512), None, send)
    assert send.sent == [] and p.host.outstanding == 0
