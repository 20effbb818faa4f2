"""A lone read's scatter receive must never change what the host queue does.

``HostQueue.receive_buffers`` lets the blocking host receive the answer to a lone read into
[staging, the read's buffer, staging], and ``buffers_updated`` completes the foreseen success
there (returning None) or puts the bytes back in stream order for the usual path. Here one engine
takes a first receive that way and another the usual way (``get_buffer``/``buffer_updated``),
both fed the same controller bytes — good answers and answers broken in each field the lane
reads (test_host_lane's steps) — and the rest in the same random pieces: the outcome, the bytes
to send (TermReqs), the state and the data in the caller's buffer must be the same.
"""
from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pynvmetcp.host import commands as C
from pynvmetcp.protocol import HostQueue
from pynvmetcp.protocol.events import Completion
from pynvmetcp.protocol.queue import _QueueEngine
from pynvmetcp.wire import codec

from .conftest import Pair
from .test_host_lane import (DATA_VARIANTS, READS, RESP_VARIANTS, STEPS, _answer, _c2h, _feed,
                             _live, _pattern, _seen, _submit)


# The read sizes a scatter receive is offered for: staging (64 KiB) must be able to hold any
# other answer (receive_buffers).
FITS = [k for k, n in enumerate(READS) if n + 48 <= 1 << 16]


def _scatter(plan: list, data: bytes) -> int:
    """``data`` written into the plan's buffers in order, as ``recvmsg_into`` fills them."""
    pos = 0
    for buf in plan:
        k = min(len(buf), len(data) - pos)
        buf[:k] = data[pos:pos + k]
        pos += k
    return pos


def _outcome(events: list, cid: int, buf) -> list:
    """Events by value, with the lone read's plain success written as ``buffers_updated``'s
    None stands for it: done, status 0, DW0/DW1 0, on this queue (SQID 1), its data in the
    caller's buffer."""
    out = []
    for ev in events:
        if (isinstance(ev, Completion) and ev.cid == cid and not ev.status and not ev.dw0
                and not ev.dw1 and ev.sqid == 1):
            out.append(("done", cid, bytes(buf)))
        else:
            out += _seen([ev])
    return out


def _compare(size: int, steps: list, first: int, cuts: list[int], sqflow_disabled: bool):
    """One engine receives ``first`` bytes of the answer by scatter, the other the usual way;
    then both the rest in ``cuts``: they must agree in everything."""
    scat, usual = _live(HostQueue, sqflow_disabled), _live(HostQueue, sqflow_disabled)
    (cid, into), = _submit(scat, [size])
    (_, usual_into), = _submit(usual, [size])
    stream = _answer(steps, [(cid, into)])
    plan = scat.receive_buffers()
    assert plan is not None and plan[1].obj is into
    n = _scatter(plan, stream[:first])
    got = scat.buffers_updated(n)
    seen = [("done", cid, bytes(into))] if got is None else _outcome(got, cid, into)
    seen += _outcome(_feed(scat, stream[n:], cuts), cid, into)
    assert seen == _outcome(_feed(usual, stream, [n, *cuts]), cid, usual_into), steps
    assert [bytes(b) for b in scat.data_to_send()] == [bytes(b) for b in usual.data_to_send()]
    assert (scat.state, scat.sqhd, sorted(scat._cmds)) == (usual.state, usual.sqhd,
                                                            sorted(usual._cmds))


def test_every_answer_begun_as_foreseen_or_broken_in_one_field():
    """Each C2HData variant (good, or broken in one field the checks read; or none) followed
    by each CapsuleResp variant (likewise), for every read size, both SQ flow control
    settings, and a first receive that takes all of it, all but a byte, or stops in or just
    after the header."""
    for size, data, resp, sqflow_disabled in itertools.product(
            FITS, range(-1, DATA_VARIANTS), range(-1, RESP_VARIANTS), (False, True)):
        steps = ([("data", 0, data)] if data >= 0 else []) + (
            [("resp", 0, resp)] if resp >= 0 else [])
        if not steps:
            continue
        whole = len(_answer(steps, [(0, bytearray(READS[size]))]))
        for first in {whole, whole - 1, 24, 25, 30}:
            _compare(size, steps, max(first, 1), [], sqflow_disabled)


@settings(max_examples=300, deadline=None)
@given(size=st.sampled_from(FITS), steps=STEPS, first=st.integers(1, 70000),
       cuts=st.lists(st.integers(1, 9000), max_size=12), sqflow_disabled=st.booleans())
def test_a_scatter_receive_and_the_usual_one_agree(size, steps, first, cuts, sqflow_disabled):
    """Any answer (test_host_lane's steps for one command), any first receive, any pieces."""
    _compare(size, steps, first, cuts, sqflow_disabled)


@pytest.mark.parametrize("sqflow_disabled", [False, True])
@pytest.mark.parametrize("success_flag", [False, True])
def test_the_foreseen_answer_completes_without_the_usual_path(monkeypatch, sqflow_disabled,
                                                               success_flag):
    """The common answers really complete in ``buffers_updated`` (else the comparison above
    proves nothing): C2HData with SUCCESS, or C2HData then a successful CapsuleResp."""
    q = _live(HostQueue, sqflow_disabled)
    (cid, buf), = _submit(q, [1])
    plan = q.receive_buffers()
    for path in (HostQueue, _QueueEngine):
        monkeypatch.setattr(path, "buffer_updated",
                            lambda *a: (_ for _ in ()).throw(AssertionError("usual path taken")))
    data = _pattern(4096, 3)
    stream = (_c2h(cid, 0, data, 0x0C) if success_flag else
              _c2h(cid, 0, data) + codec.encode(codec.capsule_resp(cid, sqhd=5, sqid=1)))
    assert q.buffers_updated(_scatter(plan, stream)) is None
    assert bytes(buf) == data and not q._cmds
    assert q.sqhd == (0 if sqflow_disabled else 1 if success_flag else 5)
    assert q.receive_buffers() is None  # nothing outstanding: no plan


def test_no_plan_unless_a_lone_read_can_land_in_place():
    two = _live(HostQueue, False)
    _submit(two, [1, 1])
    assert two.receive_buffers() is None  # two outstanding
    flush = _live(HostQueue, False)
    _submit(flush, [-1])
    assert flush.receive_buffers() is None  # no data to receive
    write = _live(HostQueue, False)
    write.submit(C.write(1, 0, 8), write=bytes(4096))
    assert write.receive_buffers() is None
    digests = Pair(hdgst=True).host
    digests.submit(C.read(1, 0, 8), read_len=4096)
    assert digests.receive_buffers() is None  # headers carry a digest: the lane's layouts differ
    huge = _live(HostQueue, False)
    huge.submit(C.read(1, 0, 128), read_len=65536)
    assert huge.receive_buffers() is None  # staging could not take it back
    buffered = _live(HostQueue, False)
    (cid, _), = _submit(buffered, [1])
    view = buffered.get_buffer()
    half = _c2h(cid, 0, _pattern(4096, 1))[:100]
    view[:100] = half
    assert buffered.buffer_updated(100) == []
    assert buffered.receive_buffers() is None  # part of an answer already in staging
