"""The fast struct codec is byte-identical with the construct definitions (spec.pdu.Pdu), and the
framer decodes the same fields Pdu.parse reads; known-answer digest vectors from the reference."""
from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pynvmetcp.spec import pdu
from pynvmetcp.spec.pdu import PduFlags, PduType
from pynvmetcp.wire import codec
from pynvmetcp.wire.crc import crc32c
from tests.wire.strategies import RECEIVES, Link, cases, data_bytes, links

SETTINGS = settings(max_examples=120, deadline=None)


def construct_pdu(t: int, psh: dict, data: bytes = b"", *, extra_flags: int = 0,
                  hdgst: bool = False, ddgst: bool = False, pda: int = 0) -> bytes:
    """The reference encoding, laid out from the specification's rules and built by construct."""
    hlen = pdu.HLEN[t]
    term = t in pdu.TERMREQ_TYPES
    hd = 4 if hdgst and t in pdu.DIGESTIBLE else 0
    with_data = bool(data) and t in pdu.CARRIES_DATA
    align = (pda + 1) * 4
    pdo = -(-(hlen + hd) // align) * align if with_data else 0
    dd = 4 if ddgst and with_data else 0
    flags = extra_flags | (PduFlags.HDGSTF if hd else 0) | (PduFlags.DDGSTF if dd else 0)
    if term:
        plen = hlen + len(data)
    elif with_data:
        plen = pdo + len(data) + dd
    else:
        plen = hlen + hd
    header = pdu.CommonHeader.build(dict(pdu_type=t, flags=flags, hlen=hlen, pdo=pdo,
                                         plen=plen)) + pdu.PSH[t].build(psh)
    return pdu.Pdu.build({
        "pdu_type": t, "flags": flags, "hlen": hlen, "pdo": pdo, "plen": plen, "psh": psh,
        "hdgst": crc32c(header) if hd else None,
        "pad": bytes(pdo - hlen - hd) if with_data else b"",
        "data": data if (with_data or term) else b"",
        "ddgst": crc32c(data) if dd else None})


SQE = st.binary(min_size=64, max_size=64)
U16, U32 = st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF)
PDA = st.integers(0, 31)


@SETTINGS
@given(sqe=SQE, data=data_bytes(0), hdgst=st.booleans(), ddgst=st.booleans(), pda=PDA)
def test_capsule_cmd(sqe, data, hdgst, ddgst, pda):
    parts = codec.capsule_cmd(sqe, data or None, hdgst=hdgst, ddgst=ddgst, pda=pda)
    assert codec.encode(parts) == construct_pdu(PduType.CapsuleCmd, {"sqe": sqe}, data,
                                                hdgst=hdgst, ddgst=ddgst, pda=pda)
    if data:  # the payload is passed through for sendmsg, never copied into the PDU
        assert any(p is data for p in parts)


@SETTINGS
@given(cid=U16, status=U16, dw0=U32, dw1=U32, sqhd=U16, sqid=U16, hdgst=st.booleans())
def test_capsule_resp(cid, status, dw0, dw1, sqhd, sqid, hdgst):
    cqe = (dw0.to_bytes(4, "little") + dw1.to_bytes(4, "little") + sqhd.to_bytes(2, "little")
           + sqid.to_bytes(2, "little") + cid.to_bytes(2, "little")
           + status.to_bytes(2, "little"))
    got = codec.encode(codec.capsule_resp(cid, status, dw0=dw0, dw1=dw1, sqhd=sqhd, sqid=sqid,
                                          hdgst=hdgst))
    assert got == construct_pdu(PduType.CapsuleResp, {"cqe": cqe}, hdgst=hdgst)


@SETTINGS
@given(cccid=U16, ttag=U16, datao=U32, data=data_bytes(1), last=st.booleans(),
       hdgst=st.booleans(), ddgst=st.booleans(), pda=PDA)
def test_h2c_data(cccid, ttag, datao, data, last, hdgst, ddgst, pda):
    parts = codec.h2c_data(cccid, ttag, datao, data, last=last, hdgst=hdgst, ddgst=ddgst, pda=pda)
    psh = dict(cccid=cccid, ttag=ttag, datao=datao, datal=len(data))
    assert codec.encode(parts) == construct_pdu(
        PduType.H2CData, psh, data, extra_flags=PduFlags.LAST_PDU if last else 0, hdgst=hdgst,
        ddgst=ddgst, pda=pda)
    assert any(p is data for p in parts)


@SETTINGS
@given(cccid=U16, datao=U32, data=data_bytes(1), last=st.booleans(), success=st.booleans(),
       hdgst=st.booleans(), ddgst=st.booleans(), pda=PDA)
def test_c2h_data(cccid, datao, data, last, success, hdgst, ddgst, pda):
    success = success and last
    parts = codec.c2h_data(cccid, datao, data, last=last, success=success, hdgst=hdgst,
                           ddgst=ddgst, pda=pda)
    extra = (PduFlags.LAST_PDU if last else 0) | (PduFlags.SUCCESS if success else 0)
    psh = dict(cccid=cccid, ttag=0, datao=datao, datal=len(data))
    assert codec.encode(parts) == construct_pdu(PduType.C2HData, psh, data, extra_flags=extra,
                                                hdgst=hdgst, ddgst=ddgst, pda=pda)


@SETTINGS
@given(cccid=U16, ttag=U16, r2to=U32, r2tl=U32, hdgst=st.booleans())
def test_r2t(cccid, ttag, r2to, r2tl, hdgst):
    got = codec.encode(codec.r2t(cccid, ttag, r2to, r2tl, hdgst=hdgst))
    assert got == construct_pdu(PduType.R2T, dict(cccid=cccid, ttag=ttag, r2to=r2to, r2tl=r2tl),
                                hdgst=hdgst)


@SETTINGS
@given(pfv=U16, pda=st.integers(0, 255), dgst=st.integers(0, 255), n=U32)
def test_ic_req_and_resp(pfv, pda, dgst, n):
    assert codec.ic_req(hpda=pda, dgst=dgst, maxr2t=n, pfv=pfv) == construct_pdu(
        PduType.ICReq, dict(pfv=pfv, hpda=pda, dgst=dgst, maxr2t=n))
    assert codec.ic_resp(cpda=pda, dgst=dgst, maxh2cdata=n, pfv=pfv) == construct_pdu(
        PduType.ICResp, dict(pfv=pfv, cpda=pda, dgst=dgst, maxh2cdata=n))


@SETTINGS
@given(t=st.sampled_from([PduType.H2CTermReq, PduType.C2HTermReq]), fes=U16, fei=U32,
       header=st.binary(max_size=200))
def test_term_req(t, fes, fei, header):
    got = codec.term_req(t, fes, fei, header)
    assert got == construct_pdu(t, dict(fes=fes, fei=fei), header[:128])
    assert got[10:14] == fei.to_bytes(4, "little")  # pitfall 1
    assert len(got) <= 152


def test_codec_defaults():
    icresp = pdu.Pdu.parse(codec.ic_resp())
    assert icresp.psh.maxh2cdata == 0x400000 and icresp.psh.cpda == 0 and icresp.psh.pfv == 0
    assert codec.capsule_cmd(bytes(64), b"", ddgst=True) == codec.capsule_cmd(bytes(64))
    # a PDU without data never carries DDGSTF
    assert codec.encode(codec.capsule_cmd(bytes(64), ddgst=True))[1] == 0


def test_codec_refuses_to_encode_invalid_pdus():
    """Caller mistakes are ValueErrors here, not PDUs that every receiver answers with a TermReq."""
    for sqe in (bytes(63), bytes(65), b""):
        with pytest.raises(ValueError):
            codec.capsule_cmd(sqe)
    with pytest.raises(ValueError):
        codec.h2c_data(1, 1, 0, b"", last=True)
    with pytest.raises(ValueError):
        codec.c2h_data(1, 0, memoryview(b""), last=True)
    with pytest.raises(ValueError):
        codec.c2h_data(1, 0, b"x", last=False, success=True)


# ---- framer ≡ Pdu.parse on the same bytes ----

def _parse_fields(raw: bytes) -> dict:
    c = pdu.Pdu.parse(raw)
    out = {k: c[k] for k in ("pdu_type", "flags", "hlen", "pdo", "plen", "hdgst", "ddgst")}
    psh = {k: v for k, v in c.psh.items() if not k.startswith("_") and k != "rsvd"}
    if c.pdu_type == PduType.CapsuleResp:
        cqe = c.psh.cqe
        psh = dict(dw0=int.from_bytes(cqe[0:4], "little"), dw1=int.from_bytes(cqe[4:8], "little"),
                   sqhd=int.from_bytes(cqe[8:10], "little"),
                   sqid=int.from_bytes(cqe[10:12], "little"),
                   cid=int.from_bytes(cqe[12:14], "little"),
                   status=int.from_bytes(cqe[14:16], "little"))
    out.update(psh, data=bytes(c.data), raw_header=raw[:c.hlen])
    return out


def _framer_fields(p, keys) -> dict:
    out = {k: getattr(p, k) for k in keys if k not in ("data", "pdu_type")}
    out.update(pdu_type=p.pdu_type, data=bytes(p.data))
    return out


@settings(max_examples=250, deadline=None)
@given(st.data())
def test_framer_agrees_with_construct(data):
    receiver = data.draw(st.sampled_from(sorted(RECEIVES)), label="receiver")
    link = data.draw(links, label="link")
    case = data.draw(cases(receiver), label="case")
    raw = case.encode(link)
    want = _parse_fields(raw)
    framer = link.framer(receiver)
    (got,) = framer.feed(raw)
    assert _framer_fields(got, want) == want
    if got.ddgst is not None:
        assert got.ddgst_ok is True


# ---- known answers (reference: tshark-checked vectors) ----

PROPERTY_GET_CAP = bytes.fromhex(
    "040148004c0000007f0002000400000000000000000000000000000000000000"
    "0000000000000000000000000000000001000000000000000000000000000000"
    "00000000000000002da415ad")
PROPERTY_GET_RESP = bytes.fromhex("050118001c0000007f002000200000000100000002000000b336b1d7")


@pytest.mark.parametrize("data,crc", [
    (b"123456789", 0xE3069283),
    (b"", 0x00000000),
    (bytes(32), 0x8A9136AA),  # RFC 3720 B.4: 32 bytes of zeros
    (b"\xff" * 32, 0x62A8AB43),  # RFC 3720 B.4: 32 bytes of ones
    (bytes(range(32)), 0x46DD794E),  # RFC 3720 B.4: incrementing
])
def test_crc32c_known_answers(data, crc):
    assert crc32c(data) == crc


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=300), cut=st.integers(0, 300))
def test_crc32c_continues_a_running_value(data, cut):
    cut = min(cut, len(data))
    assert crc32c(data[cut:], crc32c(data[:cut])) == crc32c(data)
    assert crc32c(memoryview(bytearray(data))) == crc32c(data)


def test_property_get_cap_vector():
    assert len(PROPERTY_GET_CAP) == 76
    sqe = PROPERTY_GET_CAP[8:72]
    assert codec.encode(codec.capsule_cmd(sqe, hdgst=True)) == PROPERTY_GET_CAP
    assert crc32c(PROPERTY_GET_CAP[:72]) == int.from_bytes(PROPERTY_GET_CAP[72:], "little")
    assert crc32c(PROPERTY_GET_CAP[:72]) == 0xAD15A42D  # stored LE: 2d a4 15 ad
    f = Link(hdgst=True).framer("controller")
    (p,) = f.feed(PROPERTY_GET_CAP)
    assert p.sqe == sqe and p.hdgst == 0xAD15A42D and p.cid == 2 and p.opcode == 0x7F


def test_property_get_resp_vector():
    cap = 0x000000200020007F
    got = codec.encode(codec.capsule_resp(2, 0, dw0=cap & 0xFFFFFFFF, dw1=cap >> 32, sqhd=1,
                                          hdgst=True))
    assert got == PROPERTY_GET_RESP
    (p,) = Link(hdgst=True).framer("host").feed(PROPERTY_GET_RESP)
    assert (p.dw0 | p.dw1 << 32, p.sqhd, p.cid, p.status) == (cap, 1, 2, 0)
    assert p.hdgst == 0xD7B136B3


def test_icreq_vector():
    assert codec.ic_req(dgst=3)[:16] == bytes.fromhex("00008000800000000000000300000000")
    assert codec.ic_req(dgst=3)[16:] == bytes(112)


@settings(max_examples=200, deadline=None)
@given(cid=st.integers(0, 0xFFFF), nsid=st.integers(0, 0xFFFFFFFF),
       slba=st.integers(0, (1 << 64) - 1), nlb=st.integers(0, 0xFFFF),
       length=st.integers(1, 1 << 20), sqhd=st.integers(0, 0xFFFF), sqid=st.integers(0, 0xFFFF),
       success=st.booleans())
def test_plain_layouts_are_the_codecs_headers(cid, nsid, slba, nlb, length, sqhd, sqid, success):
    """The lanes' by-value layouts (PLAIN_*) write exactly the headers the codec encodes and
    read them back field for field."""
    sqe = bytearray(64)
    sqe[0], sqe[1] = 0x02, 0x40
    sqe[2:4] = cid.to_bytes(2, "little")
    sqe[4:8] = nsid.to_bytes(4, "little")
    sqe[32:36] = length.to_bytes(4, "little")
    sqe[39] = 0x5A
    sqe[40:48] = slba.to_bytes(8, "little")
    sqe[48:50] = nlb.to_bytes(2, "little")
    fields = (codec.PLAIN_CAPSULE_HEAD, 0x4002, cid, nsid, length, 0x5A, slba, nlb)
    assert codec.PLAIN_READ.pack(*fields) == codec.encode(codec.capsule_cmd(bytes(sqe)))
    assert codec.PLAIN_READ.unpack(codec.PLAIN_READ.pack(*fields)) == fields
    resp = (codec.PLAIN_RESP_HEAD, 0, 0, sqhd, sqid, cid, 0)
    assert codec.PLAIN_RESP.pack(*resp) == codec.encode(codec.capsule_resp(cid, 0, sqhd=sqhd,
                                                                           sqid=sqid))
    head = codec.C2H_HEAD_LAST_SUCCESS if success else codec.C2H_HEAD_LAST
    assert (codec.PLAIN_C2H.pack(head, 24 + length, cid, length)
            == codec.encode(codec.c2h_data(cid, 0, bytes(length), last=True,
                                           success=success))[:24])


def test_blocking_users_import_neither_asyncio_nor_package_metadata():
    """What a blocking host, the CLI and the driver's processes import: the digest function
    comes from the crc32c extension itself (the package's ``__init__`` reads its version through
    importlib.metadata), and the asyncio host loads on first use. Each of those was 40–100 ms of
    a process start here and ~100× that in the test VM's guest."""
    probe = ("import sys, pynvmetcp, pynvmetcp.host.sync, pynvmetcp.cli._host\n"
             "from pynvmetcp.wire.crc import crc32c\n"
             "print(sorted(m for m in ('asyncio', 'importlib.metadata', 'crc32c') "
             "if m in sys.modules), crc32c(b'123456789') == 0xE3069283)\n"
             "pynvmetcp.aconnect\n"
             "print('asyncio' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout.split("\n")
    assert out[:2] == ["[] True", "True"]
