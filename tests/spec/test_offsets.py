"""Field offsets against the reference (kernel/SPDK struct offsets): build a zeroed structure
with one field set to a known value and find exactly that value's bytes at the documented offset."""
from __future__ import annotations

import uuid

import pytest

from pynvmetcp.spec import cqe, fabrics, identify, logpages, pdu, sqe
from pynvmetcp.spec.opcodes import AdminOpcode, FabricsType, NvmOpcode
from tests.spec.strategies import normalize


def _set(container, path: str, value):
    *parents, last = path.split(".")
    for p in parents:
        container = container[int(p)] if p.isdigit() else container[p]
    if last.isdigit():
        container[int(last)] = value
    else:
        container[last] = value


def build_with(struct_, size: int, path: str | None, value=None) -> bytes:
    """``struct_`` built from all-zero bytes with only ``path`` set to ``value``."""
    zero = normalize(struct_.parse(bytes(size)))
    if path is not None:
        _set(zero, path, value)
    return struct_.build(zero)


def _expect(raw: bytes, offset: int, field: bytes, base: bytes | None = None) -> None:
    """``field`` at ``offset``; every other byte as in ``base`` (zeros, or the space padding of
    empty text fields)."""
    assert raw[offset:offset + len(field)] == field, (
        f"expected {field.hex()} at {offset}, found {raw[offset:offset + len(field)].hex()}")
    base = bytes(len(raw)) if base is None else base
    end = offset + len(field)
    assert raw[:offset] == base[:offset] and raw[end:] == base[end:], "some other byte changed"


# (structure, size, field path, offset, width in bytes); the value is a distinctive pattern
INT_FIELDS = [
    # Identify Controller
    *[(identify.IdentifyController, 4096, f, off, w) for f, off, w in [
        ("vid", 0, 2), ("ssvid", 2, 2), ("rab", 72, 1), ("cmic", 76, 1),
        ("mdts", 77, 1), ("cntlid", 78, 2), ("ver", 80, 4), ("rtd3r", 84, 4),
        ("oaes", 92, 4), ("ctratt", 96, 4), ("cntrltype", 111, 1), ("crdt1", 128, 2),
        ("oacs", 256, 2), ("aerl", 259, 1), ("lpa", 261, 1), ("elpe", 262, 1),
        ("tnvmcap", 280, 16), ("unvmcap", 296, 16), ("kas", 320, 2), ("anatt", 342, 1),
        ("anacap", 343, 1), ("anagrpmax", 344, 4), ("nanagrpid", 348, 4), ("sqes", 512, 1),
        ("cqes", 513, 1), ("maxcmd", 514, 2), ("nn", 516, 4), ("oncs", 520, 2),
        ("fuses", 522, 2), ("vwc", 525, 1), ("sgls", 536, 4), ("mnan", 540, 4),
        ("ioccsz", 1792, 4), ("iorcsz", 1796, 4), ("icdoff", 1800, 2), ("ctrattr", 1802, 1),
        ("msdbd", 1803, 1), ("ofcs", 1804, 2), ("dctype", 1806, 1),
        ("psd.0.max_power", 2048, 2), ("psd.0.entry_lat", 2052, 4),
        ("psd.1.max_power", 2080, 2), ("psd.31.active_work_scale", 2048 + 31 * 32 + 22, 1)]],
    # Identify Namespace
    *[(identify.IdentifyNamespace, 4096, f, off, w) for f, off, w in [
        ("nsze", 0, 8), ("ncap", 8, 8), ("nuse", 16, 8), ("nsfeat", 24, 1), ("nlbaf", 25, 1),
        ("flbas", 26, 1), ("nmic", 30, 1), ("dlfeat", 33, 1), ("nvmcap", 48, 16),
        ("anagrpid", 92, 4), ("nsattr", 99, 1), ("lbaf.0.ms", 128, 2), ("lbaf.0.ds", 130, 1),
        ("lbaf.1.ds", 134, 1), ("lbaf.63.rp", 128 + 63 * 4 + 3, 1)]],
    # Discovery log header and entry
    *[(logpages.DiscoveryLogHeader, 1024, f, off, w) for f, off, w in [
        ("genctr", 0, 8), ("numrec", 8, 8), ("recfmt", 16, 2), ("dlpf", 18, 1),
        ("tdlpl", 20, 4)]],
    *[(logpages.DiscoveryLogEntry, 1024, f, off, w) for f, off, w in [
        ("trtype", 0, 1), ("adrfam", 1, 1), ("subtype", 2, 1), ("treq", 3, 1), ("portid", 4, 2),
        ("cntlid", 6, 2), ("asqsz", 8, 2), ("eflags", 10, 2)]],
    # SQE common part, SGL1 and command views
    *[(sqe.Sqe, 64, f, off, w) for f, off, w in [
        ("opcode", 0, 1), ("flags", 1, 1), ("cid", 2, 2), ("nsid", 4, 4), ("cdw2", 8, 4),
        ("cdw3", 12, 4), ("mptr", 16, 8), ("dptr.address", 24, 8), ("dptr.length", 32, 4),
        ("dptr.sgl_id", 39, 1), ("cdw10", 40, 4), ("cdw15", 60, 4)]],
    *[(sqe.Connect, 64, f, off, w) for f, off, w in [
        ("cid", 2, 2), ("fctype", 4, 1), ("dptr.sgl_id", 39, 1), ("recfmt", 40, 2),
        ("qid", 42, 2), ("sqsize", 44, 2), ("cattr", 46, 1), ("kato", 48, 4)]],
    *[(sqe.PropertySet, 64, f, off, w) for f, off, w in [
        ("fctype", 4, 1), ("attrib", 40, 1), ("offset", 44, 4), ("value", 48, 8)]],
    *[(sqe.PropertyGet, 64, f, off, w) for f, off, w in [
        ("fctype", 4, 1), ("attrib", 40, 1), ("offset", 44, 4)]],
    (sqe.Disconnect, 64, "recfmt", 40, 2),
    *[(sqe.GetLogPage, 64, f, off, w) for f, off, w in [
        ("lid", 40, 1), ("lsp", 41, 1), ("numdl", 42, 2), ("numdu", 44, 2), ("lsi", 46, 2),
        ("lpo", 48, 8), ("uuid_index", 56, 1), ("csi", 59, 1)]],
    *[(sqe.Identify, 64, f, off, w) for f, off, w in [
        ("cns", 40, 1), ("cntid", 42, 2), ("cnssid", 44, 2), ("csi", 47, 1)]],
    *[(sqe.Abort, 64, f, off, w) for f, off, w in [("sqid", 40, 2), ("abort_cid", 42, 2)]],
    *[(sqe.ReadWrite, 64, f, off, w) for f, off, w in [
        ("nsid", 4, 4), ("slba", 40, 8), ("nlb", 48, 2), ("control", 50, 2), ("dsmgmt", 52, 4),
        ("reftag", 56, 4), ("apptag", 60, 2), ("appmask", 62, 2)]],
    *[(sqe.DatasetManagement, 64, f, off, w) for f, off, w in [("nr", 40, 4),
                                                               ("attributes", 44, 4)]],
    *[(sqe.DsmRange, 16, f, off, w) for f, off, w in [("cattr", 0, 4), ("nlb", 4, 4),
                                                      ("slba", 8, 8)]],
    # CQE
    *[(cqe.Cqe, 16, f, off, w) for f, off, w in [
        ("dw0", 0, 4), ("dw1", 4, 4), ("sqhd", 8, 2), ("sqid", 10, 2), ("cid", 12, 2)]],
    # Connect data
    (fabrics.ConnectData, 1024, "cntlid", 16, 2),
    # log pages
    *[(logpages.ErrorLogEntry, 64, f, off, w) for f, off, w in [
        ("error_count", 0, 8), ("sqid", 8, 2), ("cmdid", 10, 2), ("status_field", 12, 2),
        ("param_error_location", 14, 2), ("lba", 16, 8), ("nsid", 24, 4), ("vs", 28, 1),
        ("trtype", 29, 1), ("cs", 32, 8), ("trtype_spec_info", 40, 2)]],
    *[(logpages.SmartLog, 512, f, off, w) for f, off, w in [
        ("critical_warning", 0, 1), ("temperature", 1, 2), ("avail_spare", 3, 1),
        ("percent_used", 5, 1), ("data_units_read", 32, 16), ("data_units_written", 48, 16),
        ("power_on_hours", 128, 16), ("num_err_log_entries", 176, 16),
        ("warning_temp_time", 192, 4), ("critical_comp_time", 196, 4),
        ("temp_sensor.0", 200, 2), ("temp_sensor.7", 214, 2),
        ("thm_temp1_trans_count", 216, 4), ("thm_temp2_total_time", 228, 4)]],
    *[(logpages.AnaLogHeader, 16, f, off, w)
      for f, off, w in [("chgcnt", 0, 8), ("ngrps", 8, 2)]],
]


def _pattern(width: int) -> int:
    """A value whose bytes are distinct and non-zero: 0x01..0xNN little-endian."""
    return int.from_bytes(bytes(range(0xA1, 0xA1 + width)), "little")


@pytest.mark.parametrize("struct_,size,path,offset,width", INT_FIELDS,
                         ids=[f"{s.__class__.__name__}-{p}" for s, _, p, _, _ in INT_FIELDS])
def test_int_field_offset(struct_, size, path, offset, width):
    value = _pattern(width)
    raw = build_with(struct_, size, path, value)
    _expect(raw, offset, value.to_bytes(width, "little"), build_with(struct_, size, None))


TEXT_FIELDS = [
    (identify.IdentifyController, 4096, "sn", 4, 20, b" "),
    (identify.IdentifyController, 4096, "mn", 24, 40, b" "),
    (identify.IdentifyController, 4096, "fr", 64, 8, b" "),
    (identify.IdentifyController, 4096, "subnqn", 768, 256, b"\0"),
    (logpages.DiscoveryLogEntry, 1024, "trsvcid", 32, 32, b" "),
    (logpages.DiscoveryLogEntry, 1024, "subnqn", 256, 256, b"\0"),
    (logpages.DiscoveryLogEntry, 1024, "traddr", 512, 256, b" "),
    (fabrics.ConnectData, 1024, "subnqn", 256, 256, b"\0"),
    (fabrics.ConnectData, 1024, "hostnqn", 512, 256, b"\0"),
]


@pytest.mark.parametrize("struct_,size,path,offset,width,pad", TEXT_FIELDS,
                         ids=[p for _, _, p, _, _, _ in TEXT_FIELDS])
def test_text_field_offset(struct_, size, path, offset, width, pad):
    text = "nqn.2014-08.org.example:x"[:width]
    raw = build_with(struct_, size, path, text)
    _expect(raw, offset, text.encode().ljust(width, pad), build_with(struct_, size, None))


BYTES_FIELDS = [
    (identify.IdentifyController, 4096, "ieee", 73, 3),
    (identify.IdentifyController, 4096, "fguid", 112, 16),
    (identify.IdentifyController, 4096, "vs", 3072, 1024),
    (identify.IdentifyNamespace, 4096, "nguid", 104, 16),
    (identify.IdentifyNamespace, 4096, "eui64", 120, 8),
    (identify.IdentifyNamespace, 4096, "vs", 384, 3712),
    (logpages.DiscoveryLogEntry, 1024, "tsas", 768, 256),
    (pdu.CapsuleCmd, 64, "sqe", 0, 64),
    (pdu.CapsuleResp, 16, "cqe", 0, 16),
]


@pytest.mark.parametrize("struct_,size,path,offset,width", BYTES_FIELDS,
                         ids=[p for _, _, p, _, _ in BYTES_FIELDS])
def test_bytes_field_offset(struct_, size, path, offset, width):
    value = bytes((0xA1 + i) % 255 + 1 for i in range(width))
    _expect(build_with(struct_, size, path, value), offset, value, build_with(struct_, size, None))


def test_connect_data_hostid_is_uuid_bytes_in_network_order():
    hostid = uuid.UUID("0123456789abcdef0011223344556677")
    raw = build_with(fabrics.ConnectData, 1024, "hostid", hostid)
    _expect(raw, 0, bytes.fromhex("0123456789abcdef0011223344556677"))
    assert fabrics.ConnectData.parse(raw).hostid == hostid
    assert fabrics.CONNECT_DATA_OFFSET == {"hostid": 0, "cntlid": 16, "subnqn": 256,
                                           "hostnqn": 512}


# ---- PDU header fields, as offsets in the whole PDU ----

def _pdu(pdu_type, psh: dict, hlen: int) -> bytes:
    return pdu.Pdu.build({"pdu_type": pdu_type, "flags": 0, "hlen": hlen, "pdo": 0,
                          "plen": hlen, "psh": psh, "hdgst": None, "pad": b"", "data": b"",
                          "ddgst": None})


@pytest.mark.parametrize("pdu_type,field,offset,width", [
    (pdu.PduType.H2CTermReq, "fes", 8, 2),
    (pdu.PduType.H2CTermReq, "fei", 10, 4),  # pitfall 1: unaligned, at 10, not 12
    (pdu.PduType.C2HTermReq, "fei", 10, 4),
    (pdu.PduType.ICReq, "pfv", 8, 2), (pdu.PduType.ICReq, "hpda", 10, 1),
    (pdu.PduType.ICReq, "dgst", 11, 1), (pdu.PduType.ICReq, "maxr2t", 12, 4),
    (pdu.PduType.ICResp, "cpda", 10, 1), (pdu.PduType.ICResp, "maxh2cdata", 12, 4),
    (pdu.PduType.R2T, "cccid", 8, 2), (pdu.PduType.R2T, "ttag", 10, 2),
    (pdu.PduType.R2T, "r2to", 12, 4), (pdu.PduType.R2T, "r2tl", 16, 4),
    (pdu.PduType.C2HData, "datao", 12, 4), (pdu.PduType.C2HData, "datal", 16, 4),
    (pdu.PduType.H2CData, "ttag", 10, 2),
])
def test_pdu_psh_offsets(pdu_type, field, offset, width):
    hlen = pdu.HLEN[pdu_type]
    psh = normalize(pdu.PSH[pdu_type].parse(bytes(hlen - 8)))
    psh[field] = _pattern(width)
    raw = _pdu(pdu_type, psh, hlen)
    assert raw[:8] == bytes([pdu_type, 0, hlen, 0]) + hlen.to_bytes(4, "little")
    assert raw[offset:offset + width] == _pattern(width).to_bytes(width, "little")
    assert raw[8:offset] + raw[offset + width:] == bytes(hlen - 8 - width)


def test_common_header_offsets():
    raw = pdu.CommonHeader.build({"pdu_type": 0x07, "flags": 0x0D, "hlen": 24, "pdo": 0x80,
                                  "plen": 0x11223344})
    assert raw == bytes([7, 0x0D, 24, 0x80, 0x44, 0x33, 0x22, 0x11])


# ---- bit fields (LSB-first inside little-endian integers) ----

BIT_FIELDS = [
    # status field: DNR bit 15, M 14, CRD 13:12, SCT 11:9, SC 8:1, phase 0
    (cqe.StatusField, "dnr", 15, 1), (cqe.StatusField, "m", 14, 1),
    (cqe.StatusField, "crd", 12, 2), (cqe.StatusField, "sct", 9, 3),
    (cqe.StatusField, "sc", 1, 8), (cqe.StatusField, "p", 0, 1),
    (cqe.AerCompletion, "aet", 0, 3), (cqe.AerCompletion, "aei", 8, 8),
    (cqe.AerCompletion, "lid", 16, 8),
    (cqe.ConnectInvalidParams, "ipo", 0, 16), (cqe.ConnectInvalidParams, "iattr", 16, 1),
    (sqe._FeatureDw10, "fid", 0, 8), (sqe._FeatureDw10, "sel", 8, 3),
    (sqe._FeatureDw10, "sv", 31, 1),
    (fabrics.Cap, "mqes", 0, 16), (fabrics.Cap, "cqr", 16, 1), (fabrics.Cap, "ams", 17, 2),
    (fabrics.Cap, "to", 24, 8), (fabrics.Cap, "dstrd", 32, 4), (fabrics.Cap, "nssrs", 36, 1),
    (fabrics.Cap, "css", 37, 8), (fabrics.Cap, "bps", 45, 1), (fabrics.Cap, "cps", 46, 2),
    (fabrics.Cap, "mpsmin", 48, 4), (fabrics.Cap, "mpsmax", 52, 4),
    (fabrics.Cap, "pmrs", 56, 1), (fabrics.Cap, "cmbs", 57, 1), (fabrics.Cap, "nsss", 58, 1),
    (fabrics.Cap, "crms", 59, 2),
    (fabrics.Vs, "ter", 0, 8), (fabrics.Vs, "mnr", 8, 8), (fabrics.Vs, "mjr", 16, 16),
    (fabrics.Cc, "en", 0, 1), (fabrics.Cc, "css", 4, 3), (fabrics.Cc, "mps", 7, 4),
    (fabrics.Cc, "ams", 11, 3), (fabrics.Cc, "shn", 14, 2), (fabrics.Cc, "iosqes", 16, 4),
    (fabrics.Cc, "iocqes", 20, 4),
    (fabrics.Csts, "rdy", 0, 1), (fabrics.Csts, "cfs", 1, 1), (fabrics.Csts, "shst", 2, 2),
    (fabrics.Csts, "nssro", 4, 1), (fabrics.Csts, "pp", 5, 1),
]


@pytest.mark.parametrize("struct_,field,shift,width", BIT_FIELDS,
                         ids=[f"{f}@{s}" for _, f, s, _ in BIT_FIELDS])
def test_bit_field_position(struct_, field, shift, width):
    size = struct_.sizeof()
    ones = (1 << width) - 1
    raw = build_with(struct_, size, field, True if width == 1 else ones)
    assert int.from_bytes(raw, "little") == ones << shift
    # and reading the integer back gives the field alone
    parsed = struct_.parse((ones << shift).to_bytes(size, "little"))
    assert parsed[field] == (True if width == 1 else ones)
    assert all(not v for k, v in parsed.items() if k not in (field, "_io"))


def test_cqe_status_at_offset_14():
    raw = build_with(cqe.Cqe, 16, "status.dnr", True)
    _expect(raw, 14, (1 << 15).to_bytes(2, "little"))
    raw = build_with(cqe.Cqe, 16, "status.sc", 0x82)
    _expect(raw, 14, (0x82 << 1).to_bytes(2, "little"))


def test_features_dw10_in_sqe():
    zero = normalize(sqe.Features.parse(bytes(64)))
    zero["cdw10"].update(fid=0x0B, sel=0b101, sv=True)
    raw = sqe.Features.build(zero)
    assert int.from_bytes(raw[40:44], "little") == 0x0B | 0b101 << 8 | 1 << 31


def test_helpers_agree_with_construct():
    assert cqe.aer_dw0(2, 0xF0, 0x70) == 0x0070F002
    assert cqe.AerCompletion.build({"rsvd": 0, "lid": 0x70, "aei": 0xF0, "rsvd2": 0,
                                    "aet": 2}) == (0x0070F002).to_bytes(4, "little")
    status = cqe.make_status(sct=3, sc=0x02, dnr=True, more=True, crd=2)
    built = cqe.StatusField.build({"dnr": True, "m": True, "crd": 2, "sct": 3, "sc": 0x02,
                                   "p": False})
    assert int.from_bytes(built, "little") == status << 1
    assert sqe.numd(4) == (0, 0)
    assert sqe.numd(4096) == (1023, 0)
    assert sqe.numd(4 << 16) == (0xFFFF, 0)
    assert sqe.numd((4 << 16) + 4) == (0, 1)
    for bad in (0, -4, 6):
        with pytest.raises(ValueError):
            sqe.numd(bad)


# ---- the known-answer Property Get from the reference ----

PROPERTY_GET_CAP = bytes.fromhex(
    "7f00020004000000000000000000000000000000000000000000000000000000"
    "0000000000000000010000000000000000000000000000000000000000000000")


def test_property_get_known_sqe():
    raw = sqe.PropertyGet.build({"opcode": 0x7F, "flags": 0, "cid": 2, "fctype": 4,
                                 "dptr": {"address": 0, "length": 0, "sgl_id": 0}, "attrib": 1,
                                 "offset": 0})
    assert raw == PROPERTY_GET_CAP
    view = sqe.command_view(raw, admin=True)
    assert (view.fctype, view.attrib, view.offset, view.cid) == (4, 1, 0, 2)


@pytest.mark.parametrize("opcode,fctype,admin,view", [
    (0x7F, FabricsType.CONNECT, True, sqe.Connect),
    (0x7F, FabricsType.PROPERTY_SET, True, sqe.PropertySet),
    (0x7F, FabricsType.PROPERTY_GET, False, sqe.PropertyGet),
    (0x7F, FabricsType.DISCONNECT, False, sqe.Disconnect),
    (0x7F, 0x05, True, sqe.FabricsGeneric),
    (AdminOpcode.IDENTIFY, 0, True, sqe.Identify),
    (AdminOpcode.GET_LOG_PAGE, 0, True, sqe.GetLogPage),
    (AdminOpcode.SET_FEATURES, 0, True, sqe.Features),
    (AdminOpcode.GET_FEATURES, 0, True, sqe.Features),
    (AdminOpcode.ABORT, 0, True, sqe.Abort),
    (AdminOpcode.KEEP_ALIVE, 0, True, sqe.NoFields),
    (AdminOpcode.ASYNC_EVENT_REQUEST, 0, True, sqe.NoFields),
    (AdminOpcode.NS_MANAGEMENT, 0, True, sqe.Sqe),
    (NvmOpcode.READ, 0, False, sqe.ReadWrite),
    (NvmOpcode.WRITE, 0, False, sqe.ReadWrite),
    (NvmOpcode.WRITE_ZEROES, 0, False, sqe.ReadWrite),
    (NvmOpcode.FLUSH, 0, False, sqe.NoFields),
    (NvmOpcode.DATASET_MANAGEMENT, 0, False, sqe.DatasetManagement),
    (NvmOpcode.COPY, 0, False, sqe.Sqe),
    (0x02, 0, False, sqe.ReadWrite),  # opcode 2 is Read on an I/O queue ...
    (0x02, 0, True, sqe.GetLogPage),  # ... and Get Log Page on the admin queue
])
def test_command_view_dispatch(opcode, fctype, admin, view):
    raw = bytearray(range(64))
    raw[0] = opcode
    raw[4] = fctype if opcode == 0x7F else raw[4]
    got = normalize(sqe.command_view(bytes(raw), admin))
    assert got == normalize(view.parse(bytes(raw)))
    assert view.build(got) == raw


def test_command_name():
    assert sqe.command_name(0x7F, 1, True) == "Fabrics Connect"
    assert sqe.command_name(0x7F, 4, True) == "Fabrics Property Get"
    assert sqe.command_name(0x7F, 0x42, True) == "Fabrics 0x42"
    assert sqe.command_name(0x06, None, True) == "Identify"
    assert sqe.command_name(0x02, None, False) == "Read"
    assert sqe.command_name(0x02, None, True) == "Get Log Page"
    assert sqe.command_name(0x77, None, False) == "I/O 0x77"
