"""Valid PDUs for each receiver as Hypothesis strategies, and what a framer should decode from them.

A ``Case`` is one PDU: its type, the encoder keyword arguments (``fields``), its data and the bytes
the fast codec encodes for a given negotiation (``Link``: digests and PDA).
"""
from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st

from pynvmetcp.spec.pdu import PduFlags, PduType
from pynvmetcp.wire import codec
from pynvmetcp.wire.framer import Framer

U8, U16, U32 = st.integers(0, 0xFF), st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF)

#: PDU types each receiver accepts.
RECEIVES = {
    "controller": (PduType.ICReq, PduType.H2CTermReq, PduType.CapsuleCmd, PduType.H2CData),
    "host": (PduType.ICResp, PduType.C2HTermReq, PduType.CapsuleResp, PduType.C2HData,
             PduType.R2T),
}


@dataclass(frozen=True)
class Link:
    """What was negotiated for the direction a framer decodes."""

    hdgst: bool = False
    ddgst: bool = False
    pda: int = 0

    def framer(self, receiver: str, **kw) -> Framer:
        f = Framer(receiver, **kw)
        f.hdgst, f.ddgst, f.pda = self.hdgst, self.ddgst, self.pda
        return f


@dataclass(frozen=True)
class Case:
    pdu_type: int
    fields: dict
    data: bytes = b""

    def encode(self, link: Link) -> bytes:
        return encode(self.pdu_type, self.fields, self.data, link)


def encode(t: int, fields: dict, data: bytes, link: Link) -> bytes:
    """The codec's encoding of one PDU under ``link``."""
    dg = dict(hdgst=link.hdgst)
    if t == PduType.ICReq:
        return codec.ic_req(**fields)
    if t == PduType.ICResp:
        return codec.ic_resp(**fields)
    if t in (PduType.H2CTermReq, PduType.C2HTermReq):
        return codec.term_req(t, fields["fes"], fields["fei"], data)
    if t == PduType.CapsuleCmd:
        parts = codec.capsule_cmd(fields["sqe"], data or None, ddgst=link.ddgst, pda=link.pda,
                                  **dg)
    elif t == PduType.CapsuleResp:
        parts = codec.capsule_resp(**fields, **dg)
    elif t == PduType.H2CData:
        parts = codec.h2c_data(**fields, data=data, ddgst=link.ddgst, pda=link.pda, **dg)
    elif t == PduType.C2HData:
        parts = codec.c2h_data(**fields, data=data, ddgst=link.ddgst, pda=link.pda, **dg)
    elif t == PduType.R2T:
        parts = codec.r2t(**fields, **dg)
    else:
        raise ValueError(t)
    return codec.encode(parts)


def data_bytes(min_size: int = 0, big: bool = True) -> st.SearchStrategy[bytes]:
    """Mostly small payloads; sometimes one big enough (> 8 KiB) to be received in place."""
    small = st.binary(min_size=min_size, max_size=48)
    if not big:
        return small
    large = st.tuples(st.integers(8192, 20000), st.randoms(use_true_random=False)).map(
        lambda a: a[1].randbytes(a[0]))
    return st.one_of(small, small, small, large)


def fields_for(t: int, big: bool = True) -> st.SearchStrategy[Case]:
    """A strategy for a valid ``Case`` of type ``t``."""
    if t == PduType.ICReq:
        return st.builds(lambda pfv, hpda, dgst, maxr2t: Case(t, dict(
            pfv=pfv, hpda=hpda, dgst=dgst, maxr2t=maxr2t)), U16, st.integers(0, 31),
            st.integers(0, 3), U32)
    if t == PduType.ICResp:
        return st.builds(lambda pfv, cpda, dgst, m: Case(t, dict(
            pfv=pfv, cpda=cpda, dgst=dgst, maxh2cdata=m)), U16, st.integers(0, 31),
            st.integers(0, 3), U32)
    if t in (PduType.H2CTermReq, PduType.C2HTermReq):
        return st.builds(lambda fes, fei, hdr: Case(t, dict(fes=fes, fei=fei), hdr),
                         U16, U32, st.binary(max_size=128))
    if t == PduType.CapsuleCmd:
        return st.builds(lambda sqe, data: Case(t, dict(sqe=sqe), data),
                         st.binary(min_size=64, max_size=64), data_bytes(0, big))
    if t == PduType.CapsuleResp:
        return st.builds(lambda cid, status, dw0, dw1, sqhd, sqid: Case(t, dict(
            cid=cid, status=status, dw0=dw0, dw1=dw1, sqhd=sqhd, sqid=sqid)),
            U16, U16, U32, U32, U16, U16)
    if t == PduType.H2CData:
        return st.builds(lambda cccid, ttag, datao, last, data: Case(t, dict(
            cccid=cccid, ttag=ttag, datao=datao, last=last), data),
            U16, U16, U32, st.booleans(), data_bytes(1, big))
    if t == PduType.C2HData:
        return st.builds(lambda cccid, datao, last, success, data: Case(t, dict(
            cccid=cccid, datao=datao, last=last, success=last and success), data),
            U16, U32, st.booleans(), st.booleans(), data_bytes(1, big))
    if t == PduType.R2T:
        return st.builds(lambda cccid, ttag, r2to, r2tl: Case(t, dict(
            cccid=cccid, ttag=ttag, r2to=r2to, r2tl=r2tl)), U16, U16, U32, U32)
    raise ValueError(t)


def cases(receiver: str, big: bool = True) -> st.SearchStrategy[Case]:
    return st.one_of(*(fields_for(t, big) for t in RECEIVES[receiver]))


links = st.builds(Link, st.booleans(), st.booleans(), st.integers(0, 31))


def expected(case: Case, link: Link) -> dict:
    """The fields a framer must decode from ``case`` sent under ``link``."""
    t, f, data = case.pdu_type, case.fields, case.data
    out: dict = {"pdu_type": t}
    if t in (PduType.ICReq, PduType.ICResp):
        out.update(f)
    elif t in (PduType.H2CTermReq, PduType.C2HTermReq):
        out.update(f, data=data)
    elif t == PduType.CapsuleCmd:
        out.update(sqe=f["sqe"], data=data)
    elif t == PduType.CapsuleResp:
        out.update(f)
    elif t in (PduType.H2CData, PduType.C2HData):
        out.update(cccid=f["cccid"], ttag=f.get("ttag", 0), datao=f["datao"], datal=len(data),
                   data=data, last=f["last"], success=f.get("success", False))
    elif t == PduType.R2T:
        out.update(f)
    return out


def decoded(p) -> dict:
    """The same view of a PDU the framer produced."""
    t = p.pdu_type
    out: dict = {"pdu_type": t}
    if t == PduType.ICReq:
        out.update(pfv=p.pfv, hpda=p.hpda, dgst=p.dgst, maxr2t=p.maxr2t)
    elif t == PduType.ICResp:
        out.update(pfv=p.pfv, cpda=p.cpda, dgst=p.dgst, maxh2cdata=p.maxh2cdata)
    elif t in (PduType.H2CTermReq, PduType.C2HTermReq):
        out.update(fes=p.fes, fei=p.fei, data=bytes(p.data))
    elif t == PduType.CapsuleCmd:
        out.update(sqe=p.sqe, data=bytes(p.data))
    elif t == PduType.CapsuleResp:
        out.update(cid=p.cid, status=p.status, dw0=p.dw0, dw1=p.dw1, sqhd=p.sqhd, sqid=p.sqid)
    elif t in (PduType.H2CData, PduType.C2HData):
        out.update(cccid=p.cccid, ttag=p.ttag, datao=p.datao, datal=p.datal, data=bytes(p.data),
                   last=bool(p.flags & PduFlags.LAST_PDU),
                   success=bool(p.flags & PduFlags.SUCCESS))
    elif t == PduType.R2T:
        out.update(cccid=p.cccid, ttag=p.ttag, r2to=p.r2to, r2tl=p.r2tl)
    return out
