"""Fabrics Connect rules over real sockets: dynamic CNTLID, I/O queue pairing, refusals with IPO."""
from __future__ import annotations

import uuid

import pytest

from pynvmetcp.host import commands as C
from pynvmetcp.spec.opcodes import FeatureId, Property
from tests.target.rawhost import (HOSTID, HOSTNQN, OTHER_HOSTID, OTHER_HOSTNQN, RawQueue, admin,
                                  dnr, io_queue, sc, sct)
from tests.target.support import NQN, NQN2, make_config, running

SC_CMD_SEQ = 0x0C
SC_SGL_LEN = 0x0F


def invalid_params(c, offset: int, in_data: bool) -> None:
    """Connect Invalid Parameters (SCT 1 / SC 0x82, DNR) with IATTR/IPO at the field."""
    assert (sct(c), sc(c), dnr(c)) == (1, 0x82, True), hex(c.status)
    assert c.dw0 & 0xFFFF == offset
    assert bool(c.dw0 & (1 << 16)) == in_data


def test_admin_connect_allocates_distinct_cntlids(target):
    a, c1 = admin(target.port, NQN)
    b, c2 = admin(target.port, NQN, hostnqn=OTHER_HOSTNQN, hostid=OTHER_HOSTID)
    assert c1 != c2 and 1 <= c1 <= 0xFFEF and 1 <= c2 <= 0xFFEF
    # Identify reports the CNTLID Connect returned (Linux refuses a mismatch)
    idc = a.ok(C.identify(1), read_len=4096).data
    assert int.from_bytes(idc[78:80], "little") == c1


def test_connect_response_carries_sqid_and_cntlid(target):
    q = RawQueue(target.port)
    c = q.connect(NQN)
    assert c.status == 0 and c.sqid == 0 and c.dw0 >> 16 == 0  # no authentication required
    q.enable()
    io = RawQueue(target.port, 1, queue_size=64)
    c2 = io.connect(NQN, cntlid=c.dw0 & 0xFFFF, sqsize=63)
    assert c2.status == 0 and c2.sqid == 1 and c2.dw0 & 0xFFFF == c.dw0 & 0xFFFF


def test_io_queue_needs_an_existing_cntlid(target):
    _, cntlid = admin(target.port, NQN)
    q = RawQueue(target.port, 1)
    invalid_params(q.connect(NQN, cntlid=cntlid + 100), 16, True)


def test_io_queue_needs_the_same_hostnqn_and_hostid(target):
    _, cntlid = admin(target.port, NQN)
    q = RawQueue(target.port, 1)
    invalid_params(q.connect(NQN, cntlid=cntlid, hostnqn=OTHER_HOSTNQN), 512, True)
    invalid_params(q.connect(NQN, cntlid=cntlid, hostid=OTHER_HOSTID), 0, True)
    assert q.connect(NQN, cntlid=cntlid).status == 0  # the same queue may then connect


def test_io_queue_of_another_subsystem_is_refused():
    cfg = make_config(extra_subsystems=[make_config().subsystems[0].__class__(NQN2)])
    with running(cfg) as t:
        _, cntlid = admin(t.port, NQN)
        q = RawQueue(t.port, 1)
        invalid_params(q.connect(NQN2, cntlid=cntlid), 16, True)


def test_admin_connect_must_ask_for_a_dynamic_controller(target):
    q = RawQueue(target.port)
    invalid_params(q.connect(NQN, cntlid=1), 16, True)


@pytest.mark.parametrize("field,offset,nqn", [
    ("subnqn", 256, "not-an-nqn"),
    ("subnqn", 256, "nqn.2024-13.io.bad-month:x"),
    ("subnqn", 256, "nqn.2014-08.org.nvmexpress:uuid:not-a-uuid"),
    ("subnqn", 256, "nqn.2024-01.io.pynvmetcp:" + "x" * 220),  # longer than 223 bytes
    ("hostnqn", 512, ""),
    ("hostnqn", 512, "host.without.prefix"),
])
def test_bad_nqn_format_points_at_the_field(target, field, offset, nqn):
    q = RawQueue(target.port)
    kw = {"hostnqn": nqn} if field == "hostnqn" else {}
    sub = nqn if field == "subnqn" else NQN
    if len(sub.encode()) > 255:
        pytest.skip("does not fit the field")
    invalid_params(q.connect(sub, **kw), offset, True)


def test_unknown_subsystem_is_invalid_parameters_at_subnqn(target):
    q = RawQueue(target.port)
    invalid_params(q.connect("nqn.2024-01.io.pynvmetcp:nobody"), 256, True)


def test_subsystem_is_not_served_on_a_discovery_only_port(target):
    q = RawQueue(target.discovery_port)
    invalid_params(q.connect(NQN), 256, True)


def test_host_not_allowed_is_connect_invalid_host():
    with running(make_config(allow_hosts=[OTHER_HOSTNQN])) as t:
        q = RawQueue(t.port)
        c = q.connect(NQN)
        assert (sct(c), sc(c), dnr(c)) == (1, 0x84, True)
        assert c.dw0 & 0xFFFF == 512 and c.dw0 & (1 << 16)
        ok = RawQueue(t.port).connect(NQN, hostnqn=OTHER_HOSTNQN, hostid=OTHER_HOSTID)
        assert ok.status == 0


def test_allow_host_at_runtime():
    with running(make_config(allow_hosts=[OTHER_HOSTNQN])) as t:
        assert RawQueue(t.port).connect(NQN).status != 0
        t.allow_host(NQN, HOSTNQN)
        assert RawQueue(t.port).connect(NQN).status == 0
        t.deny_host(NQN, HOSTNQN)
        assert sc(RawQueue(t.port).connect(NQN)) == 0x84


@pytest.mark.parametrize("sqsize", [0, 1024])
def test_bad_sqsize_points_into_the_sqe(target, sqsize):
    q = RawQueue(target.port)
    invalid_params(q.connect(NQN, sqsize=sqsize), 44, False)


def test_bad_recfmt_is_incompatible_format(target):
    q = RawQueue(target.port)
    sqe = bytearray(C.connect(0, 31))
    sqe[40] = 1
    c = q.cmd(bytes(sqe), write=C.connect_data(HOSTID, 0xFFFF, NQN, HOSTNQN))
    assert (sct(c), sc(c), dnr(c)) == (1, 0x80, True)


def test_connect_data_of_the_wrong_length(target):
    q = RawQueue(target.port)
    c = q.cmd(C.connect(0, 31), write=C.connect_data(HOSTID, 0xFFFF, NQN, HOSTNQN)[:512])
    assert (sct(c), sc(c), dnr(c)) == (0, SC_SGL_LEN, True)


def test_commands_before_connect_are_a_sequence_error(target):
    q = RawQueue(target.port)
    c = q.cmd(C.identify(1), read_len=4096)
    assert (sct(c), sc(c), dnr(c)) == (0, SC_CMD_SEQ, True)
    assert q.connect(NQN).status == 0  # the queue still works


def test_second_connect_on_a_queue_is_a_sequence_error(target):
    q, _ = admin(target.port, NQN)
    assert sc(q.connect(NQN)) == SC_CMD_SEQ


def test_io_queue_before_enable_is_a_sequence_error(target):
    _, cntlid = admin(target.port, NQN, enable=False)
    c = RawQueue(target.port, 1).connect(NQN, cntlid=cntlid)
    assert (sct(c), sc(c)) == (0, SC_CMD_SEQ)


def test_io_queue_id_beyond_granted_queues(target):
    a, cntlid = admin(target.port, NQN)
    c = a.ok(C.set_features(FeatureId.NUM_QUEUES, 1 | 1 << 16))  # two I/O queues
    assert c.dw0 == 1 | 1 << 16
    io = io_queue(target.port, NQN, cntlid, 2)
    invalid_params(RawQueue(target.port, 3).connect(NQN, cntlid=cntlid), 42, False)
    io.close()


def test_same_qid_twice_is_refused(target):
    _a, cntlid = admin(target.port, NQN)
    io = io_queue(target.port, NQN, cntlid, 1)
    c = RawQueue(target.port, 1).connect(NQN, cntlid=cntlid)
    assert (sct(c), sc(c)) == (0, SC_CMD_SEQ)
    io.close()


def test_discovery_controller_has_no_io_queues(target):
    _, cntlid = admin(target.port, "nqn.2014-08.org.nvmexpress.discovery")
    invalid_params(RawQueue(target.port, 1).connect("nqn.2014-08.org.nvmexpress.discovery",
                                                    cntlid=cntlid), 42, False)


def test_controller_busy_when_no_cntlid_is_left():
    with running(make_config(cntlid_min=7, cntlid_max=7)) as t:
        _, cntlid = admin(t.port, NQN)
        assert cntlid == 7
        c = RawQueue(t.port).connect(NQN, hostnqn=OTHER_HOSTNQN, hostid=OTHER_HOSTID)
        assert (sct(c), sc(c)) == (1, 0x81)


def test_losing_the_admin_queue_closes_the_io_queues(target):
    a, cntlid = admin(target.port, NQN)
    io = io_queue(target.port, NQN, cntlid, 1)
    a.close()
    assert io.read_until_closed() == b""
    # the controller is gone: its CNTLID no longer pairs
    invalid_params(RawQueue(target.port, 1).connect(NQN, cntlid=cntlid), 16, True)


def test_disconnect_command_closes_an_io_queue(target):
    a, cntlid = admin(target.port, NQN)
    io = io_queue(target.port, NQN, cntlid, 1)
    assert io.cmd(C.disconnect()).status == 0
    assert io.read_until_closed() == b""
    a.ok(C.keep_alive())  # the association lives on
    io_queue(target.port, NQN, cntlid, 1)  # and the queue may be connected again


def test_connect_with_sq_flow_control_disabled(target):
    a, cntlid = admin(target.port, NQN)
    q = RawQueue(target.port, 1)
    q.engine.sqflow_disabled = True
    c = q.connect(NQN, cntlid=cntlid, disable_sqflow=True)
    assert c.status == 0 and c.sqhd == 0
    r = q.ok(C.read(1, 0, 1), read_len=512)
    assert r.sqhd == 0  # SQHD reserved when flow control is off


def test_many_hosts_at_once(target):
    queues = []
    for i in range(20):
        hid = uuid.UUID(int=i + 1)
        q, cntlid = admin(target.port, NQN, hostnqn=f"nqn.2014-08.org.nvmexpress:uuid:{hid}",
                          hostid=hid)
        queues.append((q, cntlid))
    assert len({c for _, c in queues}) == 20
    for q, _ in queues:
        assert q.prop_get(Property.CSTS) & 1
