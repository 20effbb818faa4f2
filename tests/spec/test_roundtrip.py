"""Every construct structure in pynvmetcp.spec: build → parse → build over each field's full range,
and, where the layout is byte-exact, parse(random bytes) → build gives the same bytes back."""
from __future__ import annotations

import construct as C
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pynvmetcp.spec import cqe, fabrics, identify, logpages, pdu, sqe
from tests.spec.strategies import has_text, normalize, roundtrip, values

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.large_base_example, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])

#: Every fixed-size structure and its size on the wire.
FIXED = {
    "pdu.CommonHeader": (pdu.CommonHeader, 8),
    "pdu.ICReq": (pdu.ICReq, 120),
    "pdu.ICResp": (pdu.ICResp, 120),
    "pdu.TermReq": (pdu.TermReq, 16),
    "pdu.CapsuleCmd": (pdu.CapsuleCmd, 64),
    "pdu.CapsuleResp": (pdu.CapsuleResp, 16),
    "pdu.H2CData": (pdu.H2CData, 16),
    "pdu.C2HData": (pdu.C2HData, 16),
    "pdu.R2T": (pdu.R2T, 16),
    "sqe.Sgl": (sqe.Sgl, 16),
    "sqe.Sqe": (sqe.Sqe, 64),
    "sqe.Identify": (sqe.Identify, 64),
    "sqe.GetLogPage": (sqe.GetLogPage, 64),
    "sqe._FeatureDw10": (sqe._FeatureDw10, 4),
    "sqe.Features": (sqe.Features, 64),
    "sqe.Abort": (sqe.Abort, 64),
    "sqe.NoFields": (sqe.NoFields, 64),
    "sqe.ReadWrite": (sqe.ReadWrite, 64),
    "sqe.DatasetManagement": (sqe.DatasetManagement, 64),
    "sqe.DsmRange": (sqe.DsmRange, 16),
    "sqe.Connect": (sqe.Connect, 64),
    "sqe.PropertySet": (sqe.PropertySet, 64),
    "sqe.PropertyGet": (sqe.PropertyGet, 64),
    "sqe.Disconnect": (sqe.Disconnect, 64),
    "sqe.FabricsGeneric": (sqe.FabricsGeneric, 64),
    "cqe.StatusField": (cqe.StatusField, 2),
    "cqe.Cqe": (cqe.Cqe, 16),
    "cqe.AerCompletion": (cqe.AerCompletion, 4),
    "cqe.ConnectInvalidParams": (cqe.ConnectInvalidParams, 4),
    "fabrics.ConnectData": (fabrics.ConnectData, 1024),
    "fabrics.Cap": (fabrics.Cap, 8),
    "fabrics.Vs": (fabrics.Vs, 4),
    "fabrics.Cc": (fabrics.Cc, 4),
    "fabrics.Csts": (fabrics.Csts, 4),
    "identify.PowerState": (identify.PowerState, 32),
    "identify.IdentifyController": (identify.IdentifyController, 4096),
    "identify.LbaFormat": (identify.LbaFormat, 4),
    "identify.IdentifyNamespace": (identify.IdentifyNamespace, 4096),
    "identify.ActiveNsList": (identify.ActiveNsList, 4096),
    "logpages.DiscoveryLogHeader": (logpages.DiscoveryLogHeader, 1024),
    "logpages.DiscoveryLogEntry": (logpages.DiscoveryLogEntry, 1024),
    "logpages.ExtendedEntryHeader": (logpages.ExtendedEntryHeader, 8),
    "logpages.ErrorLogEntry": (logpages.ErrorLogEntry, 64),
    "logpages.SmartLog": (logpages.SmartLog, 512),
    "logpages.AnaLogHeader": (logpages.AnaLogHeader, 16),
    "logpages.CommandEffectsLog": (logpages.CommandEffectsLog, 4096),
}

#: Structures whose size depends on their content: each has its own test below.
VARIABLE = {"pdu.Pdu", "identify.NsIdDescriptor", "logpages.ExtendedAttribute",
            "logpages.ExtendedDiscoveryLogEntry", "logpages.DiscoveryLogPage",
            "logpages.AnaGroupDescriptor", "logpages.AnaLogPage"}


def _spec_structures():
    """Every structure a spec module defines (not the construct primitives it imports)."""
    primitives = {id(v) for v in vars(C).values()}
    for mod in (pdu, sqe, cqe, fabrics, identify, logpages):
        for name, obj in vars(mod).items():
            if isinstance(obj, C.Construct) and id(obj) not in primitives:
                yield f"{mod.__name__.rsplit('.', 1)[1]}.{name}"


def test_every_structure_is_covered():
    """A structure added to spec/ without a round-trip test fails here."""
    missing = set(_spec_structures()) - set(FIXED) - VARIABLE
    assert not missing, f"add these to FIXED or VARIABLE: {sorted(missing)}"


@pytest.mark.parametrize("name", sorted(FIXED))
def test_sizeof(name):
    struct_, size = FIXED[name]
    assert struct_.sizeof() == size


@pytest.mark.parametrize("name", sorted(FIXED))
@SETTINGS
@given(data=st.data())
def test_build_parse_build(name, data):
    struct_, size = FIXED[name]
    value = data.draw(values(struct_), label=name)
    raw, parsed, again = roundtrip(struct_, value)
    assert len(raw) == size
    assert parsed == normalize(value)
    assert again == raw


@pytest.mark.parametrize("name", sorted(n for n, (s, _) in FIXED.items() if not has_text(s)))
@SETTINGS
@given(data=st.data())
def test_raw_bytes_are_byte_exact(name, data):
    """Reserved fields keep their bytes, bit fields cover every bit: any bytes re-encode as read."""
    struct_, size = FIXED[name]
    raw = data.draw(st.binary(min_size=size, max_size=size), label="raw")
    assert struct_.build(struct_.parse(raw)) == raw


def _text_ranges(struct_):
    """(offset, size) of each top-level text field."""
    out, off = [], 0
    for sc in struct_.subcons:
        n = sc.sizeof()
        if has_text(sc):
            out.append((off, n))
        off += n
    return out


@pytest.mark.parametrize("name", sorted(n for n, (s, _) in FIXED.items() if has_text(s)))
@SETTINGS
@given(data=st.data())
def test_text_structures_keep_non_text_bytes(name, data):
    """Structures with text fields: random bytes everywhere except the text, which is generated;
    every byte outside the text fields re-encodes as read."""
    struct_, size = FIXED[name]
    raw = data.draw(st.binary(min_size=size, max_size=size), label="raw")
    value = normalize(struct_.parse(raw))
    texts = data.draw(values(struct_), label="texts")
    for key, field in value.items():
        if isinstance(field, str):
            value[key] = texts[key]
    raw2, parsed, again = roundtrip(struct_, value)
    assert parsed == value and again == raw2
    text = _text_ranges(struct_)
    assert text
    for i, (a, b) in enumerate(zip(raw, raw2)):
        if a != b:
            assert any(off <= i < off + n for off, n in text), f"byte {i} changed"


def test_text_fields_are_padded_and_stripped():
    entry = logpages.DiscoveryLogEntry.parse(bytes(1024))
    entry.trsvcid, entry.traddr, entry.subnqn = "4420", "192.168.1.1", "nqn.2014-08.x"
    raw = logpages.DiscoveryLogEntry.build(entry)
    assert raw[32:64] == b"4420".ljust(32, b" ")
    assert raw[512:768] == b"192.168.1.1".ljust(256, b" ")
    assert raw[256:512] == b"nqn.2014-08.x".ljust(256, b"\0")
    # NUL-padded TRSVCID/TRADDR as some targets write them read the same
    raw = bytearray(raw)
    raw[32:64] = b"4420".ljust(32, b"\0")
    assert logpages.DiscoveryLogEntry.parse(bytes(raw)).trsvcid == "4420"
    with pytest.raises(ValueError):
        fabrics.ConnectData.build(dict(fabrics.ConnectData.parse(bytes(1024)), subnqn="x" * 257))


# ---- variable-size structures ----

@SETTINGS
@given(nidt=st.integers(0, 255), nid=st.binary(max_size=255),
       rsvd=st.binary(min_size=2, max_size=2))
def test_ns_id_descriptor(nidt, nid, rsvd):
    value = {"nidt": nidt, "nidl": len(nid), "rsvd": rsvd, "nid": nid}
    raw, parsed, again = roundtrip(identify.NsIdDescriptor, value)
    assert raw == bytes([nidt, len(nid)]) + rsvd + nid
    assert parsed == value and again == raw


_NS_IDS = st.dictionaries(st.integers(1, 255), st.binary(max_size=255), max_size=8).filter(
    lambda d: sum(4 + len(v) for v in d.values()) <= identify.IDENTIFY_LEN)


@SETTINGS
@given(ids=_NS_IDS)
def test_ns_descriptor_page_roundtrip(ids):
    page = identify.build_ns_descriptors(ids)
    assert len(page) == identify.IDENTIFY_LEN
    assert identify.parse_ns_descriptors(page) == ids
    assert identify.build_ns_descriptors(identify.parse_ns_descriptors(page)) == page


def test_ns_descriptor_page_known_layout():
    uuid_ = bytes(range(16))
    page = identify.build_ns_descriptors({identify.NIDT_UUID: uuid_,
                                          identify.NIDT_EUI64: b"\x11" * 8})
    assert page[:12] == bytes([1, 8, 0, 0]) + b"\x11" * 8
    assert page[12:32] == bytes([3, 16, 0, 0]) + uuid_
    assert page[32:] == bytes(4096 - 32)


def test_ns_descriptor_page_overrun_is_rejected():
    with pytest.raises(ValueError):
        identify.parse_ns_descriptors(bytes([3, 16, 0, 0]) + bytes(8))
    too_many = {t: bytes(255) for t in range(1, 18)}  # 17 × 259 bytes > 4096
    with pytest.raises(ValueError):
        identify.build_ns_descriptors(too_many)
    with pytest.raises(ValueError):  # type 0 ends the list: it cannot be a descriptor
        identify.build_ns_descriptors({0: b"x"})
    with pytest.raises(ValueError):
        identify.build_ns_descriptors({identify.NIDT_UUID: bytes(256)})


_EXAT = st.builds(lambda t, v: {"exattype": t, "exatlen": len(v), "exatval": v},
                  st.integers(0, 0xFFFF), st.binary(max_size=64))


@SETTINGS
@given(exat=_EXAT)
def test_extended_attribute(exat):
    raw, parsed, again = roundtrip(logpages.ExtendedAttribute, exat)
    head = exat["exattype"].to_bytes(2, "little") + exat["exatlen"].to_bytes(2, "little")
    assert raw[:4] == head
    assert parsed == exat and again == raw


@SETTINGS
@given(entry=values(logpages.DiscoveryLogEntry), tel=st.integers(0, 0xFFFFFFFF),
       rsvd=st.binary(min_size=2, max_size=2), exat=st.lists(_EXAT, max_size=3))
def test_extended_discovery_log_entry(entry, tel, rsvd, exat):
    value = {"entry": entry, "ext": {"tel": tel, "numexat": len(exat), "rsvd": rsvd},
             "exat": exat}
    raw, parsed, again = roundtrip(logpages.ExtendedDiscoveryLogEntry, value)
    assert len(raw) == 1024 + 8 + sum(4 + len(a["exatval"]) for a in exat)
    assert raw[1028:1030] == len(exat).to_bytes(2, "little")
    assert parsed == value and again == raw


@settings(SETTINGS, max_examples=15)
@given(header=values(logpages.DiscoveryLogHeader),
       entries=st.lists(values(logpages.DiscoveryLogEntry), max_size=3))
def test_discovery_log_page(header, entries):
    header["numrec"] = len(entries)
    value = {"header": header, "entries": entries}
    raw, parsed, again = roundtrip(logpages.DiscoveryLogPage, value)
    assert len(raw) == 1024 * (1 + len(entries))
    for i, e in enumerate(entries):
        assert raw[1024 * (i + 1):1024 * (i + 2)] == logpages.DiscoveryLogEntry.build(e)
    assert parsed == value and again == raw


_ANA_GROUP = st.builds(
    lambda g, c, s, r, ns: {"grpid": g, "nnsids": len(ns), "chgcnt": c, "state": s, "rsvd17": r,
                            "nsids": ns},
    st.integers(0, 0xFFFFFFFF), st.integers(0, 2**64 - 1), st.integers(0, 255),
    st.binary(min_size=15, max_size=15), st.lists(st.integers(0, 0xFFFFFFFF), max_size=8))


@SETTINGS
@given(group=_ANA_GROUP)
def test_ana_group_descriptor(group):
    raw, parsed, again = roundtrip(logpages.AnaGroupDescriptor, group)
    assert len(raw) == 32 + 4 * len(group["nsids"])
    assert parsed == group and again == raw


@SETTINGS
@given(header=values(logpages.AnaLogHeader), groups=st.lists(_ANA_GROUP, max_size=4))
def test_ana_log_page(header, groups):
    header["ngrps"] = len(groups)
    value = {"header": header, "groups": groups}
    raw, parsed, again = roundtrip(logpages.AnaLogPage, value)
    assert parsed == value and again == raw
    # and byte-exact from raw parts: random reserved bytes, counts consistent
    assert logpages.AnaLogPage.build(logpages.AnaLogPage.parse(raw)) == raw


@SETTINGS
@given(data=st.data())
def test_ana_log_page_raw_bytes(data):
    """Random bytes with consistent counts: parse → build is byte-exact."""
    groups = data.draw(st.lists(st.integers(0, 4), max_size=4), label="nsids per group")
    raw = bytearray(data.draw(st.binary(min_size=16, max_size=16)))
    raw[8:10] = len(groups).to_bytes(2, "little")
    for n in groups:
        g = bytearray(data.draw(st.binary(min_size=32 + 4 * n, max_size=32 + 4 * n)))
        g[4:8] = n.to_bytes(4, "little")
        raw += g
    assert logpages.AnaLogPage.build(logpages.AnaLogPage.parse(bytes(raw))) == raw
