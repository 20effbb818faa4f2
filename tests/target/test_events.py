"""Asynchronous events of I/O controllers (namespace changes, ANA changes) and keep-alive expiry."""
from __future__ import annotations

import struct
import time

import pytest

from pynvmetcp.host import commands as C
from pynvmetcp.spec.identify import IdentifyNamespace
from pynvmetcp.spec.logpages import AnaLogPage
from pynvmetcp.spec.opcodes import FeatureId
from pynvmetcp.target import NamespaceConfig
from tests.target.rawhost import (OTHER_HOSTID, OTHER_HOSTNQN, HOSTNQN, RawQueue, admin, dnr,
                                  io_queue, sc, sct)
from tests.target.support import NQN, make_config, running

NS_CHANGED_DW0 = 0x00040002  # notice, NS attribute changed, log 04h
ANA_CHANGE_DW0 = 0x000C0302  # notice, ANA change, log 0Ch


def arm(q, mask: int = 1 << 8 | 1 << 11) -> int:
    q.ok(C.set_features(FeatureId.ASYNC_EVENT, mask))
    return q.submit(C.async_event_request())


def changed_list(q) -> list[int]:
    page = bytes(q.ok(C.get_log_page(0x04, 4096), read_len=4096).data)
    out = []
    for (nsid,) in struct.iter_unpack("<I", page):
        if not nsid:
            break
        out.append(nsid)
    return out


def nsze(q, nsid: int = 1) -> int:
    return IdentifyNamespace.parse(q.ok(C.identify(0, nsid), read_len=4096).data).nsze


def test_resize_sends_namespace_attribute_changed(target):
    q, _ = admin(target.port, NQN)
    cid = arm(q)
    target.resize_namespace(NQN, 1, 32 << 20)
    ev = q.wait(cid)
    assert ev.status == 0 and ev.dw0 == NS_CHANGED_DW0
    assert changed_list(q) == [1]
    assert changed_list(q) == []  # the log is cleared by reading it
    assert nsze(q) == 32 << 20 >> 9


def test_resize_keeps_the_data():
    with running() as t:
        _a, cntlid = admin(t.port, NQN)
        io = io_queue(t.port, NQN, cntlid)
        io.ok(C.write(1, 100, 1), write=b"\x5A" * 512)
        t.resize_namespace(NQN, 1, 64 << 20)
        assert bytes(io.ok(C.read(1, 100, 1), read_len=512).data) == b"\x5A" * 512
        io.ok(C.write(1, (64 << 20 >> 9) - 1, 1), write=bytes(512))  # the new last block


def test_namespace_added_and_removed(target):
    q, cntlid = admin(target.port, NQN)
    cid = arm(q)
    nsid = target.add_namespace(NQN, "mem:1M")
    assert nsid == 2
    assert q.wait(cid).dw0 == NS_CHANGED_DW0
    assert changed_list(q) == [2]
    page = bytes(q.ok(C.identify(2, 0), read_len=4096).data)
    assert struct.unpack_from("<3I", page) == (1, 2, 0)
    cid = q.submit(C.async_event_request())
    target.remove_namespace(NQN, 2)
    assert q.wait(cid).dw0 == NS_CHANGED_DW0
    io = io_queue(target.port, NQN, cntlid)
    assert sc(io.cmd(C.read(2, 0, 1), read_len=512)) == 0x0B


def test_event_masked_until_the_log_is_read(target):
    q, _ = admin(target.port, NQN)
    cid = arm(q)
    target.resize_namespace(NQN, 1, 20 << 20)
    assert q.wait(cid).dw0 == NS_CHANGED_DW0
    cid = q.submit(C.async_event_request())
    target.resize_namespace(NQN, 1, 24 << 20)
    with pytest.raises(TimeoutError):
        q.wait(cid, timeout=0.3)  # same event type, not yet acknowledged by a log read
    changed_list(q)
    target.resize_namespace(NQN, 1, 28 << 20)
    assert q.wait(cid).dw0 == NS_CHANGED_DW0


def test_namespace_visibility_per_host():
    cfg = make_config(namespaces=[NamespaceConfig("mem:1M"),
                                  NamespaceConfig("mem:1M", hosts=[OTHER_HOSTNQN])])
    with running(cfg) as t:
        mine, cntlid = admin(t.port, NQN)
        other, _ = admin(t.port, NQN, hostnqn=OTHER_HOSTNQN, hostid=OTHER_HOSTID)
        assert struct.unpack_from("<2I", bytes(mine.ok(C.identify(2, 0), read_len=4096).data)) \
            == (1, 0)
        assert struct.unpack_from("<3I", bytes(other.ok(C.identify(2, 0), read_len=4096).data)) \
            == (1, 2, 0)
        assert nsze(mine, 2) == 0  # hidden = inactive
        io = io_queue(t.port, NQN, cntlid)
        assert sc(io.cmd(C.read(2, 0, 1), read_len=512)) == 0x0B
        cid = arm(mine)
        t.set_namespace_hosts(NQN, 2, [OTHER_HOSTNQN, HOSTNQN])
        assert mine.wait(cid).dw0 == NS_CHANGED_DW0
        assert changed_list(mine) == [2]
        assert io.ok(C.read(2, 0, 1), read_len=512)


def test_ana_change_event_and_path_errors():
    cfg = make_config(namespaces=[NamespaceConfig("mem:1M"),
                                  NamespaceConfig("mem:1M", ana_group=2)])
    with running(cfg) as t:
        a, cntlid = admin(t.port, NQN)
        io = io_queue(t.port, NQN, cntlid)
        cid = arm(a)
        portid = t.ports[0].portid
        assert t.set_ana_state(NQN, portid, 2, "inaccessible")
        assert a.wait(cid).dw0 == ANA_CHANGE_DW0
        page = AnaLogPage.parse(a.ok(C.get_log_page(0x0C, 4096), read_len=4096).data)
        assert {g.grpid: g.state for g in page.groups} == {1: 1, 2: 3}
        assert page.header.chgcnt == 1 and [g.chgcnt for g in page.groups] == [0, 1]
        c = io.cmd(C.read(2, 0, 1), read_len=512)
        assert (sct(c), sc(c), dnr(c)) == (3, 0x02, False)  # path error: retry elsewhere
        assert io.ok(C.read(1, 0, 1), read_len=512)  # the other group is unaffected
        for state, code in [("persistent-loss", 0x01), ("change", 0x03)]:
            t.set_ana_state(NQN, portid, 2, state)
            c = io.cmd(C.write(2, 0, 1), write=bytes(512))
            assert (sct(c), sc(c), dnr(c)) == (3, code, False)
        t.set_ana_state(NQN, portid, 2, "non-optimized")
        assert io.ok(C.read(2, 0, 1), read_len=512)


def test_ana_state_is_per_port():
    cfg = make_config(namespaces=["mem:1M"])
    cfg.listen[1].discovery_only = False  # two I/O ports
    with running(cfg) as t:
        p1, p2 = t.ports
        t.set_ana_state(NQN, p2.portid, 1, "inaccessible")
        a1, c1 = admin(p1.trsvcid, NQN)
        a2, c2 = admin(p2.trsvcid, NQN, hostnqn=OTHER_HOSTNQN, hostid=OTHER_HOSTID)
        io1 = io_queue(p1.trsvcid, NQN, c1)
        io2 = io_queue(p2.trsvcid, NQN, c2, hostnqn=OTHER_HOSTNQN, hostid=OTHER_HOSTID)
        assert io1.ok(C.read(1, 0, 1), read_len=512)
        assert sc(io2.cmd(C.read(1, 0, 1), read_len=512)) == 0x02
        state = {q: AnaLogPage.parse(q.ok(C.get_log_page(0x0C, 4096), read_len=4096).data)
                 .groups[0].state for q in (a1, a2)}
        assert state == {a1: 1, a2: 3}


def test_keep_alive_timeout_drops_the_association(target):
    q, cntlid = admin(target.port, NQN, kato=300)
    io = io_queue(target.port, NQN, cntlid)
    for _ in range(6):  # commands keep it alive (traffic based keep-alive)
        time.sleep(0.1)
        q.ok(C.keep_alive())
    for _ in range(4):
        time.sleep(0.1)
        io.ok(C.read(1, 0, 1), read_len=512)  # I/O counts too
    start = time.monotonic()
    assert q.read_until_closed(timeout=3) == b""
    assert io.read_until_closed(timeout=3) == b""
    assert time.monotonic() - start < 1.5
    assert target.controllers() == []


def test_kato_zero_never_expires(target):
    q, _ = admin(target.port, NQN, kato=0)
    time.sleep(0.4)
    assert q.cmd(C.keep_alive()).status == 0


def test_set_features_kato_applies(target):
    q, _ = admin(target.port, NQN, kato=0)
    q.ok(C.set_features(FeatureId.KATO, 200))
    assert q.read_until_closed(timeout=3) == b""


def test_target_lists_live_controllers(target):
    q, cntlid = admin(target.port, NQN)
    io = io_queue(target.port, NQN, cntlid)
    (c,) = target.controllers()
    assert (c["subnqn"], c["cntlid"], c["hostnqn"], c["io_queues"]) == (NQN, cntlid, HOSTNQN,
                                                                        [1])
    q.close()
    io.close()
    deadline = time.monotonic() + 3
    while target.controllers() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert target.controllers() == []


def test_unconnected_queue_is_not_a_controller(target):
    RawQueue(target.port)
    assert target.controllers() == []
