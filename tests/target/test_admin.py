"""Admin commands: properties, Identify, features, log pages, AER, Keep Alive, their statuses."""
from __future__ import annotations

import struct

import pytest

from pynvmetcp.host import commands as C
from pynvmetcp.spec.fabrics import Cap, Csts
from pynvmetcp.spec.identify import (LPA_CMD_EFFECTS, IdentifyController, IdentifyNamespace,
                                     parse_ns_descriptors)
from pynvmetcp.spec.logpages import (CSE_CSUPP, CSE_LBCC, AnaLogPage, CommandEffectsLog,
                                     ErrorLogEntry, SmartLog)
from pynvmetcp.spec.opcodes import FeatureId, Property
from pynvmetcp.target import NamespaceConfig
from tests.target.rawhost import HOSTID, RawQueue, admin, dnr, io_queue, sc, sct
from tests.target.support import NQN, make_config, running

SC_INVALID_OPCODE, SC_INVALID_FIELD, SC_SEQ, SC_INVALID_NS, SC_SGL_LEN = 1, 2, 0x0C, 0x0B, 0x0F


def status_of(c) -> tuple[int, int, bool]:
    return sct(c), sc(c), dnr(c)


# ---- properties ----
def test_cap_vs_and_enable(target):
    q = RawQueue(target.port)
    q.connect(NQN)
    cap = Cap.parse(q.prop_get(Property.CAP).to_bytes(8, "little"))
    assert cap.mqes == 1023 and cap.cqr and cap.css & 1 and cap.to > 0 and cap.mpsmin == 0
    assert q.prop_get(Property.VS) == 0x00010300
    assert q.prop_get(Property.CSTS) == 0
    # admin commands other than fabrics need CSTS.RDY
    assert status_of(q.cmd(C.identify(1), read_len=4096)) == (0, SC_SEQ, True)
    q.ok(C.property_set(Property.CC, 1 | 6 << 16 | 4 << 20))
    assert Csts.parse(q.prop_get(Property.CSTS).to_bytes(4, "little")).rdy
    assert q.prop_get(Property.CC) == 1 | 6 << 16 | 4 << 20


def test_shutdown_reports_complete(target):
    q, _ = admin(target.port, NQN)
    cc = q.prop_get(Property.CC)
    q.ok(C.property_set(Property.CC, cc | 1 << 14))
    csts = Csts.parse(q.prop_get(Property.CSTS).to_bytes(4, "little"))
    assert csts.shst == 2 and not csts.rdy


def test_bad_cc_sets_cfs(target):
    q = RawQueue(target.port)
    q.connect(NQN)
    q.ok(C.property_set(Property.CC, 1 | 7 << 16 | 4 << 20))  # 128-byte SQEs
    csts = Csts.parse(q.prop_get(Property.CSTS).to_bytes(4, "little"))
    assert csts.cfs and not csts.rdy


def test_reset_deletes_io_queues(target):
    a, cntlid = admin(target.port, NQN)
    io = io_queue(target.port, NQN, cntlid)
    a.ok(C.property_set(Property.CC, 0))
    assert a.prop_get(Property.CSTS) & 1 == 0
    assert io.read_until_closed() == b""


@pytest.mark.parametrize("sqe", [
    C.property_set(Property.CAP, 0),  # read-only
    C.property_set(Property.CSTS, 0),
    C.property_set(Property.NSSR, 0x4E564D65),  # subsystem reset not supported
])
def test_property_set_refused(target, sqe):
    q, _ = admin(target.port, NQN)
    assert status_of(q.cmd(sqe)) == (0, SC_INVALID_FIELD, True)


def test_property_get_wrong_size_or_offset(target):
    q, _ = admin(target.port, NQN)
    sqe = bytearray(C.property_get(Property.CAP))
    sqe[40] = 0  # CAP read as 4 bytes
    assert status_of(q.cmd(bytes(sqe))) == (0, SC_INVALID_FIELD, True)
    sqe = bytearray(C.property_get(Property.VS))
    struct.pack_into("<I", sqe, 44, 0x44)
    assert status_of(q.cmd(bytes(sqe))) == (0, SC_INVALID_FIELD, True)


def test_property_commands_are_admin_only(target):
    _, cntlid = admin(target.port, NQN)
    io = io_queue(target.port, NQN, cntlid)
    assert status_of(io.cmd(C.property_get(Property.CAP))) == (0, SC_INVALID_OPCODE, True)


# ---- identify ----
def test_identify_controller_fields(target):
    q, cntlid = admin(target.port, NQN)
    idc = IdentifyController.parse(q.ok(C.identify(1), read_len=4096).data)
    assert idc.cntlid == cntlid and idc.subnqn == NQN and idc.ver == 0x00010300
    assert idc.cntrltype == 1 and idc.sqes == 0x66 and idc.cqes == 0x44
    assert idc.mdts == 8  # 1 MiB with 4 KiB pages
    assert idc.ioccsz == (64 + 131072) // 16 and idc.iorcsz == 1 and idc.icdoff == 0
    assert idc.msdbd == 1 and idc.sgls & 1 and idc.sgls & (1 << 18)
    assert idc.oncs & 0b1101 == 0b1101  # compare, DSM, write zeroes
    assert idc.vwc & 1 and idc.aerl == 3 and idc.kas == 10 and idc.maxcmd == 1024
    assert idc.cmic & 0b1011 == 0b1011 and idc.nn == 1024 and 1 <= idc.mnan <= idc.nn
    assert idc.anacap & 0x1F == 0x1F and idc.anagrpmax >= 1 and idc.nanagrpid >= 1
    assert idc.oaes & (1 << 8) and idc.oaes & (1 << 11) and idc.ctratt & 1
    assert idc.lpa & (1 << 2) and idc.sn.strip() and idc.mn == "pynvmetcp"


def test_identify_namespace_and_lists(target):
    q, _ = admin(target.port, NQN)
    idns = IdentifyNamespace.parse(q.ok(C.identify(0, 1), read_len=4096).data)
    assert idns.nsze == idns.ncap == 16 << 20 >> 9
    assert idns.lbaf[idns.flbas & 0xF].ds == 9 and idns.nmic & 1 and idns.anagrpid == 1
    assert idns.dlfeat & 0x7 == 1
    # an inactive NSID reads as zeros
    assert bytes(q.ok(C.identify(0, 5), read_len=4096).data) == bytes(4096)
    # active list: NSIDs above CDW1.NSID
    page = bytes(q.ok(C.identify(2, 0), read_len=4096).data)
    assert struct.unpack_from("<2I", page) == (1, 0)
    assert bytes(q.ok(C.identify(2, 1), read_len=4096).data) == bytes(4096)
    ids = parse_ns_descriptors(bytes(q.ok(C.identify(3, 1), read_len=4096).data))
    assert len(ids[3]) == 16 and len(ids[2]) == 16 and ids[4] == b"\0"
    assert ids[2] == idns.nguid


@pytest.mark.parametrize("cns,nsid,expected", [
    (0, 0, SC_INVALID_NS), (0, 0xFFFFFFFF, SC_INVALID_NS), (0, 2000, SC_INVALID_NS),
    (3, 7, SC_INVALID_NS), (2, 0xFFFFFFFE, SC_INVALID_NS), (0x10, 0, SC_INVALID_FIELD),
])
def test_identify_errors(target, cns, nsid, expected):
    q, _ = admin(target.port, NQN)
    assert status_of(q.cmd(C.identify(cns, nsid), read_len=4096)) == (0, expected, True)


def test_identify_with_a_short_buffer(target):
    q, _ = admin(target.port, NQN)
    assert status_of(q.cmd(C.identify(1), read_len=512)) == (0, SC_SGL_LEN, True)


def test_identify_csi_pages(target):
    q, _ = admin(target.port, NQN)
    assert bytes(q.ok(C.identify(6, 0, csi=0), read_len=4096).data) == bytes(4096)
    assert status_of(q.cmd(C.identify(6, 0, csi=2), read_len=4096))[1] == SC_INVALID_FIELD


# ---- features ----
def test_number_of_queues(target):
    q, _ = admin(target.port, NQN)
    c = q.ok(C.set_features(FeatureId.NUM_QUEUES, 3 | 1 << 16))
    assert (c.dw0 & 0xFFFF, c.dw0 >> 16) == (3, 1)
    assert q.ok(C.get_features(FeatureId.NUM_QUEUES)).dw0 == 1 | 1 << 16
    c = q.ok(C.set_features(FeatureId.NUM_QUEUES, 5000 | 5000 << 16))
    assert c.dw0 == 63 | 63 << 16  # at most 64 I/O queues
    assert status_of(q.cmd(C.set_features(FeatureId.NUM_QUEUES, 0xFFFF)))[1] == SC_INVALID_FIELD


def test_async_event_config_and_kato(target):
    q, _ = admin(target.port, NQN)
    q.ok(C.set_features(FeatureId.ASYNC_EVENT, 1 << 8 | 1 << 11))
    assert q.ok(C.get_features(FeatureId.ASYNC_EVENT)).dw0 == 1 << 8 | 1 << 11
    # discovery-log-change notices are not offered by an I/O controller
    assert status_of(q.cmd(C.set_features(FeatureId.ASYNC_EVENT, 1 << 31)))[1] == SC_INVALID_FIELD
    q.ok(C.set_features(FeatureId.KATO, 12000))
    assert q.ok(C.get_features(FeatureId.KATO)).dw0 == 12000


def test_volatile_write_cache_timestamp_host_behavior_and_host_id(target):
    q, _ = admin(target.port, NQN)
    assert q.ok(C.get_features(FeatureId.VOLATILE_WC)).dw0 == 1
    q.ok(C.set_features(FeatureId.VOLATILE_WC, 0))
    assert q.ok(C.get_features(FeatureId.VOLATILE_WC)).dw0 == 0
    q.ok(C.set_features(FeatureId.TIMESTAMP), write=(1_700_000_000_000).to_bytes(8, "little"))
    ts = bytes(q.ok(C.get_features(FeatureId.TIMESTAMP), read_len=8).data)
    assert 1_700_000_000_000 <= int.from_bytes(ts[:6], "little") < 1_700_000_010_000
    assert (ts[6] >> 1) & 7 == 1  # origin: set by the host
    behavior = bytes([1]) + bytes(511)
    q.ok(C.set_features(FeatureId.HOST_BEHAVIOR), write=behavior)
    assert bytes(q.ok(C.get_features(FeatureId.HOST_BEHAVIOR), read_len=512).data) == behavior
    hid = q.ok(C.get_features(FeatureId.HOST_ID, cdw11=1), read_len=16).data
    assert bytes(hid) == HOSTID.bytes
    no_exhid = q.cmd(C.get_features(FeatureId.HOST_ID), read_len=16)
    assert status_of(no_exhid)[1] == SC_INVALID_FIELD


def test_features_errors(target):
    q, _ = admin(target.port, NQN)
    assert status_of(q.cmd(C.get_features(FeatureId.ARBITRATION))) == (0, SC_INVALID_FIELD, True)
    power = q.cmd(C.set_features(FeatureId.POWER_MGMT, 0))
    assert status_of(power) == (0, SC_INVALID_FIELD, True)
    # Save is not supported: Feature Identifier Not Saveable
    assert status_of(q.cmd(C.set_features(FeatureId.KATO, 1000, save=True))) == (1, 0x0D, True)
    assert status_of(q.cmd(C.set_features(FeatureId.HOST_ID, 0), write=bytes(16)))[1] == SC_SEQ
    # SEL = 3: capabilities (changeable)
    assert q.ok(C.get_features(FeatureId.KATO, sel=3)).dw0 == 1 << 2


def test_number_of_queues_after_io_queues_exist(target):
    a, cntlid = admin(target.port, NQN)
    io = io_queue(target.port, NQN, cntlid)
    assert status_of(a.cmd(C.set_features(FeatureId.NUM_QUEUES, 1)))[1] == SC_SEQ
    io.close()


# ---- log pages ----
def test_smart_and_error_logs(target):
    a, cntlid = admin(target.port, NQN)
    io = io_queue(target.port, NQN, cntlid)
    io.ok(C.write(1, 0, 8), write=bytes(4096))
    io.ok(C.read(1, 0, 8), read_len=4096)
    bad = io.cmd(C.read(1, 1 << 30, 1), read_len=512)
    assert sc(bad) == 0x80
    smart = SmartLog.parse(a.ok(C.get_log_page(2, 512), read_len=512).data)
    assert smart.host_reads == 1 and smart.host_writes == 1
    assert smart.data_units_read == 1 and smart.data_units_written == 1
    assert smart.num_err_log_entries == 1 and smart.temperature > 0
    per_ns = SmartLog.parse(a.ok(C.get_log_page(2, 512, nsid=1), read_len=512).data)
    assert per_ns.host_reads == 1
    err = ErrorLogEntry.parse(a.ok(C.get_log_page(1, 64), read_len=64).data)
    assert err.error_count == 1 and err.sqid == 1 and err.cmdid == bad.cid
    assert (err.status_field >> 1) & 0xFF == 0x80 and err.nsid == 1


def test_log_page_offset_and_errors(target):
    a, _ = admin(target.port, NQN)
    full = bytes(a.ok(C.get_log_page(2, 512), read_len=512).data)
    part = bytes(a.ok(C.get_log_page(2, 64, offset=128), read_len=64).data)
    assert part == full[128:192]
    unsupported = a.cmd(C.get_log_page(0x03, 512), read_len=512)  # firmware slot log
    assert status_of(unsupported) == (0, SC_INVALID_FIELD, True)
    sqe = bytearray(C.get_log_page(2, 64))
    struct.pack_into("<Q", sqe, 48, 2)  # LPO not dword aligned
    assert status_of(a.cmd(bytes(sqe), read_len=64))[1] == SC_INVALID_FIELD
    assert status_of(a.cmd(C.get_log_page(2, 64, offset=4096), read_len=64))[1] == \
        SC_INVALID_FIELD
    assert status_of(a.cmd(C.get_log_page(2, 64), read_len=128))[1] == SC_SGL_LEN
    assert status_of(a.cmd(C.get_log_page(2, 512, nsid=9), read_len=512))[1] == SC_INVALID_NS


def test_commands_supported_and_effects_log(target):
    """Log 0x05, which the kernel host reads at connect; LPA bit 1 announces it."""
    a, _ = admin(target.port, NQN)
    ident = IdentifyController.parse(a.ok(C.identify(1), read_len=4096).data)
    assert ident.lpa & LPA_CMD_EFFECTS
    log = CommandEffectsLog.parse(a.ok(C.get_log_page(0x05, 4096), read_len=4096).data)
    supported = {op for op, v in enumerate(log.iocs) if v & CSE_CSUPP}
    assert supported == {0x00, 0x01, 0x02, 0x05, 0x08, 0x09}  # flush, write, read, compare,
    #                                                         write zeroes, DSM
    assert [op for op, v in enumerate(log.iocs) if v & CSE_LBCC] == [0x01, 0x08, 0x09]
    assert log.acs[0x06] == CSE_CSUPP and log.acs[0x02] == CSE_CSUPP and not log.acs[0x80]


def test_ana_log(target):
    a, _ = admin(target.port, NQN)
    page = AnaLogPage.parse(a.ok(C.get_log_page(0x0C, 4096), read_len=4096).data)
    assert page.header.ngrps == 1
    (g,) = page.groups
    assert (g.grpid, g.state, list(g.nsids)) == (1, 1, [1])
    rgo = AnaLogPage.parse(a.ok(C.get_log_page(0x0C, 4096, lsp=1), read_len=4096).data)
    assert rgo.groups[0].nnsids == 0 and rgo.groups[0].state == 1


def test_ana_log_per_port_states():
    cfg = make_config(namespaces=[NamespaceConfig("mem:1M"),
                                  NamespaceConfig("mem:1M", ana_group=2)])
    cfg.listen[0].ana = {2: "inaccessible"}
    with running(cfg) as t:
        a, _ = admin(t.port, NQN)
        page = AnaLogPage.parse(a.ok(C.get_log_page(0x0C, 4096), read_len=4096).data)
        states = {g.grpid: (g.state, list(g.nsids)) for g in page.groups}
        assert states == {1: (1, [1]), 2: (3, [2])}


# ---- AER, keep alive, abort, unknown ----
def test_aer_limit(target):
    a, _ = admin(target.port, NQN)
    for _ in range(4):
        a.submit(C.async_event_request())
    c = a.cmd(C.async_event_request())
    assert status_of(c) == (1, 0x05, True)


def test_keep_alive_and_abort(target):
    a, _ = admin(target.port, NQN)
    assert a.cmd(C.keep_alive()).status == 0
    abort = bytearray(C.keep_alive())
    abort[0] = 0x08
    assert a.ok(bytes(abort)).dw0 & 1  # not aborted


@pytest.mark.parametrize("opcode", [0x01, 0x0D, 0x80, 0x7E])
def test_unsupported_admin_opcode(target, opcode):
    a, _ = admin(target.port, NQN)
    sqe = bytearray(C.keep_alive())
    sqe[0] = opcode
    assert status_of(a.cmd(bytes(sqe))) == (0, SC_INVALID_OPCODE, True)


def test_fused_commands_are_refused(target):
    a, _ = admin(target.port, NQN)
    sqe = bytearray(C.keep_alive())
    sqe[1] = 0x01
    assert status_of(a.cmd(bytes(sqe))) == (0, SC_INVALID_FIELD, True)
