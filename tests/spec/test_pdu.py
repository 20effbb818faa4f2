"""The whole-PDU construct ``spec.pdu.Pdu`` against an independent layout: CH, PSH, HDGST iff
HDGSTF on a digestible type, padding to PDO, data, DDGST iff DDGSTF on a data-carrying type
with a PDO."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pynvmetcp.spec import pdu
from pynvmetcp.spec.pdu import PduFlags, PduType
from tests.spec.strategies import normalize

SETTINGS = settings(max_examples=150, deadline=None)
KNOWN = sorted(pdu.HLEN)


@st.composite
def raw_pdus(draw, types=st.sampled_from(KNOWN) | st.sampled_from([8, 10, 0x42, 0xFF])):
    """(raw bytes, expected parts) of a structurally consistent PDU with arbitrary field values."""
    t = draw(types, label="type")
    flags = draw(st.integers(0, 255), label="flags")
    hlen = pdu.HLEN.get(t) or draw(st.integers(8, 255), label="hlen")
    psh = draw(st.binary(min_size=hlen - 8, max_size=hlen - 8), label="psh")
    hdgst = draw(st.integers(0, 0xFFFFFFFF)) if (t in pdu.DIGESTIBLE and flags & 1) else None
    start = hlen + (4 if hdgst is not None else 0)
    if t in pdu.TERMREQ_TYPES:
        pdo = draw(st.integers(0, 255), label="pdo (reserved)")
        pad = b""
        data = draw(st.binary(max_size=pdu.MAX_TERMREQ_DATA), label="data")
    elif t in pdu.CARRIES_DATA and draw(st.booleans(), label="with pdo"):
        pdo = draw(st.integers(max(start, 1), 255), label="pdo")
        pad = draw(st.binary(min_size=pdo - start, max_size=pdo - start), label="pad")
        data = draw(st.binary(max_size=64), label="data")
    else:
        pdo = 0 if t in pdu.CARRIES_DATA else draw(st.integers(0, 255), label="pdo")
        pad = b""
        data = draw(st.binary(max_size=16), label="data")
    ddgst = (draw(st.integers(0, 0xFFFFFFFF)) if t in pdu.CARRIES_DATA and flags & 2 and pdo
             else None)
    body = psh + (hdgst.to_bytes(4, "little") if hdgst is not None else b"") + pad + data + (
        ddgst.to_bytes(4, "little") if ddgst is not None else b"")
    plen = 8 + len(body)
    raw = bytes([t, flags, hlen, pdo]) + plen.to_bytes(4, "little") + body
    return raw, {"pdu_type": t, "flags": flags, "hlen": hlen, "pdo": pdo, "plen": plen,
                 "psh": psh, "hdgst": hdgst, "pad": pad, "data": data, "ddgst": ddgst}


@SETTINGS
@given(raw_pdus())
def test_pdu_parse_build_is_byte_exact(case):
    raw, parts = case
    parsed = pdu.Pdu.parse(raw)
    for key in ("pdu_type", "flags", "hlen", "pdo", "plen", "hdgst", "pad", "data", "ddgst"):
        assert parsed[key] == parts[key], key
    psh_struct = pdu.PSH.get(parsed.pdu_type)
    if psh_struct is None:
        assert parsed.psh == parts["psh"]
    else:
        assert psh_struct.build(parsed.psh) == parts["psh"]
    assert pdu.Pdu.build(parsed) == raw
    assert pdu.Pdu.build(normalize(parsed)) == raw


@SETTINGS
@given(raw_pdus(types=st.sampled_from(KNOWN)))
def test_pdu_build_parse_build(case):
    raw, parts = case
    value = dict(parts, psh=normalize(pdu.PSH[parts["pdu_type"]].parse(parts["psh"])))
    built = pdu.Pdu.build(value)
    assert built == raw
    assert normalize(pdu.Pdu.parse(built)) == value


def test_layout_helpers():
    # CapsuleCmd with header digest, in-capsule data aligned to 128 (CPDA 31) and data digest
    flags = PduFlags.HDGSTF | PduFlags.DDGSTF
    assert pdu.data_offset(PduType.CapsuleCmd, flags, 72, 128) == 128
    assert pdu.data_length(PduType.CapsuleCmd, flags, 72, 128, 128 + 512 + 4) == 512
    # without data: no data digest even with DDGSTF, data starts after the header digest
    assert not pdu.has_ddgst(PduType.CapsuleCmd, flags, 0)
    assert pdu.data_length(PduType.CapsuleCmd, PduFlags.HDGSTF, 72, 0, 76) == 0
    # TermReq: PDO reserved, never digests, data right after the 24-byte header (pitfall 3)
    assert pdu.data_offset(PduType.C2HTermReq, 0xFF, 24, 99) == 24
    assert not pdu.has_hdgst(PduType.H2CTermReq, PduFlags.HDGSTF)
    assert pdu.data_length(PduType.H2CTermReq, 3, 24, 7, 24 + 72) == 72
    # ICReq never carries a digest
    assert not pdu.has_hdgst(PduType.ICReq, PduFlags.HDGSTF)


def test_type_tables():
    assert [int(t) for t in PduType] == [0, 1, 2, 3, 4, 5, 6, 7, 9]
    for t in PduType:
        # bit 0 is the direction: odd types go controller → host
        assert (t & 1) == (t.name.startswith(("C2H", "ICResp", "CapsuleResp", "R2T")))
    assert pdu.HLEN == {0: 128, 1: 128, 2: 24, 3: 24, 4: 72, 5: 24, 6: 24, 7: 24, 9: 24}
    assert pdu.VALID_FLAGS[PduType.C2HData] == 0x0F
    assert pdu.VALID_FLAGS[PduType.H2CData] == 0x07
    assert pdu.VALID_FLAGS[PduType.CapsuleCmd] == 0x03
    assert pdu.VALID_FLAGS[PduType.CapsuleResp] == pdu.VALID_FLAGS[PduType.R2T] == 0x01
    assert all(pdu.VALID_FLAGS[t] == 0 for t in (0, 1, 2, 3))
    for t in PduType:
        assert pdu.PSH[t].sizeof() == pdu.HLEN[t] - 8


def test_pdu_flag_names():
    assert PduFlags.names(0x0D) == ["HDGSTF", "LAST_PDU", "SUCCESS"]
    assert PduFlags.names(0x30 | 0x02) == ["DDGSTF", "0x30"]
    assert PduFlags.names(0) == []


@pytest.mark.parametrize("fes,value", [("INVALID_HEADER_FIELD", 1), ("PDU_SEQUENCE_ERROR", 2),
                                       ("HEADER_DIGEST_ERROR", 3),
                                       ("DATA_TRANSFER_OUT_OF_RANGE", 4),
                                       ("DATA_TRANSFER_LIMIT_EXCEEDED", 5),
                                       ("UNSUPPORTED_PARAMETER", 6)])
def test_fes_values(fes, value):
    assert pdu.Fes[fes] == value
