"""Keep-alive, AER and reconnect bookkeeping, with time passed in."""
from __future__ import annotations

import math

import pytest

from pynvmetcp.protocol.aer import AerQueue, AsyncEvent
from pynvmetcp.protocol.keepalive import ControllerKeepAlive, HostKeepAlive
from pynvmetcp.protocol.reconnect import ReconnectPolicy


def test_host_keep_alive_at_half_kato_one_at_a_time():
    ka = HostKeepAlive(5000)
    assert not ka.due(100.0)  # not started
    ka.start(100.0)
    assert not ka.due(102.4) and ka.due(102.5)
    ka.sent(102.5)
    assert not ka.due(110.0)  # one outstanding
    ka.completed()
    assert ka.next_deadline() == 105.0 and ka.due(105.0)
    assert not HostKeepAlive(0).due(1e9) and HostKeepAlive(0).next_deadline() is None


def test_controller_kato_expires_without_traffic():
    ka = ControllerKeepAlive(2000, now=10.0)
    assert not ka.expired(12.0) and ka.expired(12.01)
    ka.touch(11.0)
    assert not ka.expired(13.0) and ka.deadline() == 13.0
    assert not ControllerKeepAlive(0, now=0).expired(1e9)


def test_discovery_log_change_dw0():
    ev = AsyncEvent(aet=2, aei=0xF0, lid=0x70)
    assert ev.dw0 == 0x0070F002 and AsyncEvent.from_dw0(0x0070F002) == ev


def test_aer_queue_order_pending_limit_and_masking():
    q = AerQueue(limit=2)
    assert q.arm(1) is None and q.arm(2) is None
    with pytest.raises(OverflowError):
        q.arm(3)
    change = AsyncEvent(2, 0xF0, 0x70)
    assert q.post(change) == (1, change)  # oldest armed first
    assert q.post(change) is None  # masked until the log page is read
    ns = AsyncEvent(2, 0x00, 0x04)
    assert q.post(ns) == (2, ns)
    q.log_read(0x70)
    assert q.post(change) is None and q.outstanding() == []  # pending: nothing armed
    assert q.arm(9) == (9, change)  # delivered as soon as the host arms again


def test_reconnect_policy_follows_fabrics_semantics():
    p = ReconnectPolicy(ctrl_loss_tmo=30, reconnect_delay=10)
    assert p.max_attempts == 3
    p.lost(100.0)
    assert p.next_attempt(100.0) == 0.0  # first attempt at once
    assert p.next_attempt(100.5) == pytest.approx(9.5)
    assert p.next_attempt(110.0) == pytest.approx(10.0)
    assert p.next_attempt(125.0) is None
    forever = ReconnectPolicy(-1, 1)
    assert forever.max_attempts == math.inf
    never = ReconnectPolicy(0, 1)
    never.lost(0)
    assert never.next_attempt(0) is None
    p.lost(0)
    assert p.next_attempt(0, dnr=True) is None
