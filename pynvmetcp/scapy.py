"""A scapy layer for NVMe/TCP: see PDUs in `rdpcap(...)[n].show()`, craft them for fuzzing.

    from scapy.all import rdpcap
    import pynvmetcp.scapy                      # binds TCP ports 4420 and 8009
    pkt = NVMeTCP() / NVMeTCPCapsuleCmd(sqe=...)  # hlen/plen/pdo filled in when built

Dissection is per TCP segment: the PDUs that lie wholly inside one segment are chained (several per
segment are common; each PDU is NVMeTCP / type header / NVMeTCPTail, and the next PDU follows); a PDU spanning segments is left as raw payload — `pynvmetcp.capture` is the
reassembling decoder. Header and data digests and PDO padding follow the header's flags and PDO.
"""
from __future__ import annotations

from scapy.fields import (ByteEnumField, ByteField, FlagsField, LEIntField, LEShortEnumField,
                          LEShortField, StrFixedLenField, StrLenField, XLEIntField)
from scapy.layers.inet import TCP
from scapy.packet import Packet, Raw, bind_layers

from .spec.opcodes import NVME_DISC_PORT, NVME_PORT
from .spec.pdu import HLEN, PduType
from .spec.status import FES_NAMES
from .wire.crc import crc32c

_TYPES = {int(t): t.name for t in PduType}
_HAS_DATA = (PduType.CapsuleCmd, PduType.H2CData, PduType.C2HData)


class NVMeTCP(Packet):
    """The common header; the PDU-specific header follows as the payload layer."""

    name = "NVMe/TCP"
    fields_desc = [
        ByteEnumField("pdu_type", 4, _TYPES),
        FlagsField("flags", 0, 8, ["HDGSTF", "DDGSTF", "LAST_PDU", "SUCCESS"]),
        ByteField("hlen", None),
        ByteField("pdo", None),
        LEIntField("plen", None),
    ]

    def guess_payload_class(self, payload):
        return _PSH.get(self.pdu_type, Raw)

    def post_build(self, pkt: bytes, pay: bytes) -> bytes:
        if self.plen is not None and self.hlen is not None and self.pdo is not None:
            return pkt + pay  # dissected (or fully specified): keep the bytes as they are
        t = pkt[0]
        flags = pkt[1]
        hlen = pkt[2] if self.hlen is not None else HLEN.get(t, 8)
        psh_len = hlen - 8
        data = pay[psh_len:]
        hd = 4 if flags & 1 else 0
        pdo = self.pdo
        if pdo is None:
            pdo = hlen + hd if data and t in _HAS_DATA else 0
        header_len = hlen + hd
        pad = bytes(max(0, pdo - header_len)) if data else b""
        dd = b""
        if flags & 2 and data:
            dd = crc32c(data).to_bytes(4, "little")
        body = pay[:psh_len] + (b"" if not hd else b"\0\0\0\0") + pad + data + dd
        plen = self.plen if self.plen is not None else 8 + len(body)
        out = bytes([t, flags, hlen, pdo]) + plen.to_bytes(4, "little") + body
        if hd:  # the digest covers the final header bytes
            digest = crc32c(out[:hlen])
            out = out[:hlen] + digest.to_bytes(4, "little") + out[hlen + 4:]
        return out


class _PduBody(Packet):
    """Type-specific header; the rest of this PDU (digests, padding, data) is NVMeTCPTail."""

    def guess_payload_class(self, payload):
        return NVMeTCPTail


class NVMeTCPTail(Packet):
    """What follows a PDU header within the same PDU: header digest, padding, data, data digest.
    The next PDU of the segment, if any, is this layer's payload."""

    name = "NVMe/TCP digests, padding and data"
    fields_desc = [StrLenField("tail", b"", length_from=lambda p: _tail_len(p))]

    def guess_payload_class(self, payload):
        return NVMeTCP if payload else Raw


def _tail_len(tail: Packet) -> int:
    psh = tail.underlayer
    ch = psh.underlayer if psh is not None else None
    if ch is None or ch.plen is None or ch.hlen is None:
        return 0
    return max(0, ch.plen - ch.hlen)


class NVMeTCPICReq(_PduBody):
    name = "NVMe/TCP ICReq"
    fields_desc = [LEShortField("pfv", 0), ByteField("hpda", 0), ByteField("dgst", 0),
                   LEIntField("maxr2t", 0), StrFixedLenField("rsvd", b"\0" * 112, 112)]


class NVMeTCPICResp(_PduBody):
    name = "NVMe/TCP ICResp"
    fields_desc = [LEShortField("pfv", 0), ByteField("cpda", 0), ByteField("dgst", 0),
                   LEIntField("maxh2cdata", 0x400000), StrFixedLenField("rsvd", b"\0" * 112, 112)]


class NVMeTCPTermReq(_PduBody):
    name = "NVMe/TCP TermReq"
    fields_desc = [LEShortEnumField("fes", 1, {int(k): v for k, v in FES_NAMES.items()}),
                   XLEIntField("fei", 0), StrFixedLenField("rsvd", b"\0" * 10, 10)]


class NVMeTCPCapsuleCmd(_PduBody):
    name = "NVMe/TCP CapsuleCmd"
    fields_desc = [StrFixedLenField("sqe", b"\0" * 64, 64)]


class NVMeTCPCapsuleResp(_PduBody):
    name = "NVMe/TCP CapsuleResp"
    fields_desc = [XLEIntField("dw0", 0), XLEIntField("dw1", 0), LEShortField("sqhd", 0),
                   LEShortField("sqid", 0), LEShortField("cid", 0), LEShortField("status", 0)]


class NVMeTCPData(_PduBody):
    """H2CData / C2HData (C2HData's ttag is reserved)."""

    name = "NVMe/TCP Data"
    fields_desc = [LEShortField("cccid", 0), LEShortField("ttag", 0), LEIntField("datao", 0),
                   LEIntField("datal", 0), StrFixedLenField("rsvd", b"\0" * 4, 4)]


class NVMeTCPR2T(_PduBody):
    name = "NVMe/TCP R2T"
    fields_desc = [LEShortField("cccid", 0), LEShortField("ttag", 0), LEIntField("r2to", 0),
                   LEIntField("r2tl", 0), StrFixedLenField("rsvd", b"\0" * 4, 4)]


_PSH = {
    PduType.ICReq: NVMeTCPICReq, PduType.ICResp: NVMeTCPICResp,
    PduType.H2CTermReq: NVMeTCPTermReq, PduType.C2HTermReq: NVMeTCPTermReq,
    PduType.CapsuleCmd: NVMeTCPCapsuleCmd, PduType.CapsuleResp: NVMeTCPCapsuleResp,
    PduType.H2CData: NVMeTCPData, PduType.C2HData: NVMeTCPData, PduType.R2T: NVMeTCPR2T,
}

for _port in (NVME_PORT, NVME_DISC_PORT):
    bind_layers(TCP, NVMeTCP, dport=_port)
    bind_layers(TCP, NVMeTCP, sport=_port)
