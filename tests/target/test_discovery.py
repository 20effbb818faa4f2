"""The discovery subsystem: log content per host, GENCTR, partial reads, the log-change AEN."""
from __future__ import annotations

import asyncio
import socket

import pytest

from pynvmetcp.host import commands as C
from pynvmetcp.spec.identify import IdentifyController
from pynvmetcp.spec.logpages import DiscoveryLogEntry, DiscoveryLogHeader
from pynvmetcp.spec.opcodes import DISCOVERY_NQN, FeatureId
from pynvmetcp.target import ListenConfig, ReferralConfig, SubsystemConfig
from pynvmetcp.wire import codec
from tests.target.rawhost import OTHER_HOSTID, OTHER_HOSTNQN, admin, dnr, sc, sct
from tests.target.support import NQN, NQN2, make_config, running

DISC_CHANGE_DW0 = 0x0070F002


def read_log(q, length: int | None = None, offset: int = 0, rae: bool = False):
    if length is None:
        hdr = DiscoveryLogHeader.parse(q.ok(C.get_log_page(0x70, 1024, nsid=0, rae=True),
                                            read_len=1024).data)
        length = 1024 * (1 + hdr.numrec)
    data = bytes(q.ok(C.get_log_page(0x70, length, nsid=0, offset=offset, rae=rae),
                      read_len=length).data)
    return data


def parse(data: bytes):
    hdr = DiscoveryLogHeader.parse(data[:1024])
    entries = [DiscoveryLogEntry.parse(data[1024 * (i + 1):1024 * (i + 2)])
               for i in range(hdr.numrec)]
    return hdr, entries


def nvm_entries(entries):
    return [(e.subnqn, e.traddr, int(e.trsvcid), e.portid) for e in entries if e.subtype == 2]


def test_discovery_log_lists_subsystem_ports_and_itself(target):
    q, _ = admin(target.discovery_port, DISCOVERY_NQN)
    hdr, entries = parse(read_log(q))
    io_port, disc_port = target.ports
    assert nvm_entries(entries) == [(NQN, "127.0.0.1", io_port.trsvcid, io_port.portid)]
    (e,) = [e for e in entries if e.subtype == 2]
    assert (e.trtype, e.adrfam, e.cntlid, e.asqsz, e.tsas[0]) == (3, 1, 0xFFFF, 32, 0)
    assert e.treq & 0b100  # SQ flow control disable supported
    (cur,) = [e for e in entries if e.subtype == 3]
    assert (cur.subnqn, int(cur.trsvcid), cur.portid) == (DISCOVERY_NQN, disc_port.trsvcid,
                                                          disc_port.portid)
    assert cur.eflags & 0b10  # explicit persistent connections supported
    assert hdr.numrec == len(entries) == 2 and hdr.recfmt == 0 and hdr.genctr > 0


def test_io_ports_answer_discovery_too(target):
    q, _ = admin(target.port, DISCOVERY_NQN)
    _, entries = parse(read_log(q))
    assert [n for n, *_ in nvm_entries(entries)] == [NQN]
    assert [e for e in entries if e.subtype == 3][0].portid == target.ports[0].portid


def test_discovery_identify(target):
    q, cntlid = admin(target.discovery_port, DISCOVERY_NQN)
    idc = IdentifyController.parse(q.ok(C.identify(1), read_len=4096).data)
    assert idc.cntrltype == 2 and idc.subnqn == DISCOVERY_NQN and idc.cntlid == cntlid
    assert idc.oaes & (1 << 31) and idc.nn == 0
    c = q.cmd(C.identify(0, 1), read_len=4096)
    assert (sct(c), sc(c), dnr(c)) == (0, 0x02, True)
    c = q.cmd(C.get_log_page(0x02, 512), read_len=512)
    assert (sct(c), sc(c), dnr(c)) == (0, 0x02, True)


def test_log_is_filtered_by_host():
    cfg = make_config(allow_hosts=[OTHER_HOSTNQN],
                      extra_subsystems=[SubsystemConfig(NQN2)])
    with running(cfg) as t:
        mine, _ = admin(t.discovery_port, DISCOVERY_NQN)
        other, _ = admin(t.discovery_port, DISCOVERY_NQN, hostnqn=OTHER_HOSTNQN,
                         hostid=OTHER_HOSTID)
        assert [n for n, *_ in nvm_entries(parse(read_log(mine))[1])] == [NQN2]
        assert [n for n, *_ in nvm_entries(parse(read_log(other))[1])] == [NQN, NQN2]


def test_partial_reads_by_offset(target):
    t = target
    t.add_subsystem(NQN2)
    q, _ = admin(t.discovery_port, DISCOVERY_NQN)
    whole = read_log(q)
    assert len(whole) == 4 * 1024
    assert read_log(q, 1024, offset=2048) == whole[2048:3072]
    assert read_log(q, 512, offset=1024 + 256) == whole[1280:1792]
    # beyond the end: zeros; past the log: invalid field
    assert read_log(q, 2048, offset=3072) == whole[3072:] + bytes(1024)
    c = q.cmd(C.get_log_page(0x70, 1024, nsid=0, offset=8192), read_len=1024)
    assert (sct(c), sc(c)) == (0, 0x02)


def test_genctr_changes_with_the_log(target):
    q, _ = admin(target.discovery_port, DISCOVERY_NQN)
    g0 = parse(read_log(q))[0].genctr
    assert parse(read_log(q))[0].genctr == g0  # reading changes nothing
    target.add_subsystem(NQN2)
    hdr, entries = parse(read_log(q))
    assert hdr.genctr > g0 and NQN2 in [n for n, *_ in nvm_entries(entries)]
    g1 = hdr.genctr
    target.add_referral("192.0.2.7", 8009, portid=9)
    hdr, entries = parse(read_log(q))
    assert hdr.genctr > g1
    (ref,) = [e for e in entries if e.subtype == 1]
    assert (ref.traddr, ref.trsvcid, ref.portid, ref.subnqn) == ("192.0.2.7", "8009", 9,
                                                                 DISCOVERY_NQN)


def test_referrals_from_config():
    cfg = make_config()
    cfg.referrals.append(ReferralConfig("198.51.100.1", 8009, 3))
    with running(cfg) as t:
        q, _ = admin(t.discovery_port, DISCOVERY_NQN)
        _, entries = parse(read_log(q))
        assert [(e.traddr, e.portid) for e in entries if e.subtype == 1] == [("198.51.100.1", 3)]


def test_wildcard_port_is_listed_at_the_address_asked_through():
    cfg = make_config(discovery_port=False)
    cfg.listen = [ListenConfig("0.0.0.0", 0)]
    with running(cfg) as t:
        q, _ = admin(t.port, DISCOVERY_NQN)
        assert nvm_entries(parse(read_log(q))[1])[0][1] == "127.0.0.1"


def arm(q) -> int:
    q.ok(C.set_features(FeatureId.ASYNC_EVENT, 1 << 31))
    return q.submit(C.async_event_request())


def test_log_change_event_for_a_persistent_discovery_controller(target):
    q, _ = admin(target.discovery_port, DISCOVERY_NQN, kato=30000)
    read_log(q)
    cid = arm(q)
    target.add_subsystem(NQN2)
    ev = q.wait(cid)
    assert ev.status == 0 and ev.dw0 == DISC_CHANGE_DW0
    assert NQN2 in [n for n, *_ in nvm_entries(parse(read_log(q))[1])]
    # read without RAE: the next change fires again
    cid = q.submit(C.async_event_request())
    target.allow_host(NQN2, OTHER_HOSTNQN)  # NQN2 allowed any host: this host's log is unchanged
    target.set_allow_any_host(NQN2, False)  # now it is: NQN2 vanishes from this host's log
    assert q.wait(cid).dw0 == DISC_CHANGE_DW0


def test_log_change_is_retained_while_rae_is_set(target):
    q, _ = admin(target.discovery_port, DISCOVERY_NQN)
    cid = arm(q)
    target.add_subsystem(NQN2)
    assert q.wait(cid).dw0 == DISC_CHANGE_DW0
    read_log(q, rae=True)  # Retain Asynchronous Event: the event stays masked
    cid = q.submit(C.async_event_request())
    target.remove_subsystem(NQN2)
    with pytest.raises(TimeoutError):
        q.wait(cid, timeout=0.3)
    read_log(q)  # now cleared: the change that happened meanwhile is reported
    target.add_subsystem(NQN2)
    assert q.wait(cid).dw0 == DISC_CHANGE_DW0


def test_no_event_without_async_event_configuration(target):
    q, _ = admin(target.discovery_port, DISCOVERY_NQN)
    cid = q.submit(C.async_event_request())
    target.add_subsystem(NQN2)
    with pytest.raises(TimeoutError):
        q.wait(cid, timeout=0.3)


def test_event_waits_for_an_aer(target):
    q, _ = admin(target.discovery_port, DISCOVERY_NQN)
    q.ok(C.set_features(FeatureId.ASYNC_EVENT, 1 << 31))
    target.add_subsystem(NQN2)
    assert q.ok(C.async_event_request()).dw0 == DISC_CHANGE_DW0


def test_a_connection_accepted_as_its_port_is_removed_is_closed_not_left_hanging(target):
    """The port goes between the loop's accept of a connection and the making of its
    transport (two loop turns later): asyncio would then drop the accepted socket without
    closing it, and the host would wait on an open connection that nobody reads. The race is
    made exactly: the connection is queued, the accept runs in the next turn, and the port is
    removed in the turn after, before the transport exists."""
    port = target.add_port("127.0.0.1", 0)
    client = socket.socket()
    client.settimeout(5)

    async def connect_then_remove() -> None:
        client.connect(("127.0.0.1", port.trsvcid))  # queued in the listener's backlog
        await asyncio.sleep(0)  # the loop accepts it after this turn's callbacks
        await asyncio.sleep(0)  # the accept's task is scheduled; its transport is not made
        await target.remove_port(port.portid)

    target.call(connect_then_remove)
    client.sendall(codec.ic_req())
    try:
        got = client.recv(1)
    except ConnectionResetError:
        got = b""
    except socket.timeout:
        pytest.fail("the connection was left open with nobody reading it")
    finally:
        client.close()
    assert got == b""


@pytest.mark.parametrize("turns", range(5))
def test_a_connection_made_around_a_port_removal_does_not_outlive_it(target, turns):
    """A connection is started ``turns`` loop turns after the removal begins, so that the
    loop's accept and the making of its transport fall on each side of the listener's close
    on some turn: on no turn may it stay open and be served (uvloop's loop, where listeners
    cannot be taken out of the loop first, made a transport of it after the removal)."""
    port = target.add_port("127.0.0.1", 0)
    client = socket.socket()
    client.setblocking(False)

    async def connect_during_removal() -> None:
        loop = asyncio.get_running_loop()

        def connect(n: int) -> None:
            if n:
                loop.call_soon(connect, n - 1)
            else:
                client.connect_ex(("127.0.0.1", port.trsvcid))

        loop.call_soon(connect, turns)
        await target.remove_port(port.portid)
        for _ in range(turns + 4):  # let whatever was accepted become a transport
            await asyncio.sleep(0)

    target.call(connect_during_removal)
    client.setblocking(True)
    client.settimeout(5)
    try:
        client.sendall(codec.ic_req())
        got = client.recv(128)
    except (ConnectionResetError, ConnectionRefusedError, BrokenPipeError):
        got = b""
    except socket.timeout:
        pytest.fail("the connection was left open with nobody reading it")
    finally:
        client.close()
    assert got == b""  # closed or refused, never an ICResp through a removed port


def test_ports_added_and_removed_at_runtime(target):
    q, _ = admin(target.discovery_port, DISCOVERY_NQN)
    port = target.add_port("127.0.0.1", 0)
    assert port.trsvcid > 0
    assert (NQN, "127.0.0.1", port.trsvcid, port.portid) in nvm_entries(parse(read_log(q))[1])
    a, _ = admin(port.trsvcid, NQN)
    idle = socket.create_connection(("127.0.0.1", port.trsvcid), timeout=10)
    idle.sendall(codec.ic_req())  # initialized, but no Connect: not a queue yet
    assert len(idle.recv(128, socket.MSG_WAITALL)) == 128  # ICResp: the target accepted it
    target.remove_port(port.portid)
    assert a.read_until_closed() == b""  # its associations end with it
    assert idle.recv(1) == b""  # and so does the connection that is not a queue yet
    idle.close()
    assert all(p != port.portid for *_, p in nvm_entries(parse(read_log(q))[1]))
    target.add_referral("192.0.2.9", 8009)
    target.remove_referral("192.0.2.9", 8009)
    assert [e for e in parse(read_log(q))[1] if e.subtype == 1] == []
