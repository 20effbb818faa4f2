"""Decode NVMe/TCP from pcap/pcapng files: TCP reassembly per direction, then the framer.

Each TCP direction of each connection to an NVMe/TCP port is reassembled (segments in any order,
retransmissions and overlaps trimmed) and fed to a ``wire.Framer`` as an observer: digests are set
from the connection's ICResp, header digests are checked and reported rather than enforced, and a
protocol error ends decoding of that direction only. Every PDU becomes one flat record whose keys
are the spec's field names (the `pynvmetcp decode --json` format); ``_raw`` holds the PDU's
bytes for callers that re-encode or dissect it further (the CLI does not print it).
"""
from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field
from typing import Iterator

from scapy.utils import RawPcapReader

from .errors import ProtocolError
from .spec.opcodes import NVME_DISC_PORT, NVME_PORT
from .spec.pdu import PduFlags, PduType
from .spec.sqe import command_name
from .spec.status import status_name
from .wire.crc import crc32c
from .wire.framer import Framer

DEFAULT_PORTS = (NVME_PORT, NVME_DISC_PORT)
MAX_DATA = 1 << 24
MAX_FRAME = 1 << 18  # loopback with segmentation offload carries frames above 64 KiB
_CDW = struct.Struct("<6I")


class CaptureError(ValueError):
    """The file cannot be read as a capture."""


@dataclass
class _Direction:
    framer: Framer
    next_seq: int | None = None
    pending: dict[int, tuple[bytes, int]] = field(default_factory=dict)
    failed: bool = False


@dataclass
class _Connection:
    host_dir: _Direction  # controller → host
    ctrl_dir: _Direction  # host → controller
    admin: bool | None = None
    commands: dict[int, tuple[int, int | None]] = field(default_factory=dict)


def _observer(receiver: str) -> Framer:
    f = Framer(receiver, max_data=MAX_DATA)
    f.verify_hdgst = False
    return f


def decode(path: str, ports=DEFAULT_PORTS) -> Iterator[dict]:
    """Yield one record per PDU (and one "error" record per direction that breaks the protocol)."""
    ports = set(ports)
    conns: dict[tuple, _Connection] = {}
    try:
        reader = RawPcapReader(path)
    except (OSError, EOFError) as exc:
        raise CaptureError(f"{path}: {exc}") from None
    except Exception as exc:  # scapy raises Scapy_Exception for unknown formats
        raise CaptureError(f"{path}: not a pcap or pcapng file ({exc})") from None
    with reader:
        frame = 0
        while True:
            try:
                raw, meta = reader._read_packet(size=MAX_FRAME)
            except EOFError:
                return
            except Exception as exc:
                raise CaptureError(f"{path}: unreadable after frame {frame} ({exc})") from None
            frame += 1
            seg = tcp_segment(raw, getattr(meta, "linktype", getattr(reader, "linktype", 1)))
            if seg is None:
                continue
            src_ip, dst_ip, sport, dport, seq, flags, payload = seg
            if dport in ports:
                key, to_ctrl = (src_ip, sport, dst_ip, dport), True
            elif sport in ports:
                key, to_ctrl = (dst_ip, dport, src_ip, sport), False
            else:
                continue
            conn = conns.get(key)
            if conn is None or (flags & _SYN and to_ctrl and not flags & _ACK):
                conn = conns[key] = _Connection(_Direction(_observer("host")),
                                                _Direction(_observer("controller")))
            d = conn.ctrl_dir if to_ctrl else conn.host_dir
            src = f"{key[0]}:{key[1]}" if to_ctrl else f"{key[2]}:{key[3]}"
            dst = f"{key[2]}:{key[3]}" if to_ctrl else f"{key[0]}:{key[1]}"
            if flags & _SYN:  # data starts after it
                d.next_seq = (seq + 1) & 0xFFFFFFFF
            if not payload or d.failed:
                continue
            yield from _segment(conn, d, seq, payload, frame, src, dst)


_SYN, _ACK = 0x02, 0x10
#: Link-layer header length by pcap link type (Ethernet VLAN tags handled below).
_L2 = {1: 14, 113: 16, 276: 20, 101: 0, 12: 0, 14: 0, 0: 4, 108: 4}


def tcp_segment(frame: bytes, linktype: int):
    """(src, dst, sport, dport, seq, flags, payload) of a TCP/IP frame, else None.

    Parsed by offsets rather than by scapy's dissectors, so the payload is exactly the captured
    bytes whatever layers are bound to these ports (pynvmetcp.scapy binds its own)."""
    off = _L2.get(linktype)
    if off is None:
        return None
    if linktype == 1:
        ethertype = int.from_bytes(frame[12:14], "big")
        while ethertype in (0x8100, 0x88A8) and len(frame) >= off + 4:
            ethertype = int.from_bytes(frame[off + 2:off + 4], "big")
            off += 4
    if len(frame) < off + 20:
        return None
    version = frame[off] >> 4
    if version == 4:
        ihl = (frame[off] & 0x0F) * 4
        if frame[off + 9] != 6:
            return None
        total = int.from_bytes(frame[off + 2:off + 4], "big")
        src, dst = socket.inet_ntop(socket.AF_INET, frame[off + 12:off + 16]), \
            socket.inet_ntop(socket.AF_INET, frame[off + 16:off + 20])
        tcp, end = off + ihl, off + (total or len(frame) - off)
    elif version == 6:
        if frame[off + 6] != 6 or len(frame) < off + 40:  # no extension headers expected
            return None
        src = socket.inet_ntop(socket.AF_INET6, frame[off + 8:off + 24])
        dst = socket.inet_ntop(socket.AF_INET6, frame[off + 24:off + 40])
        tcp, end = off + 40, off + 40 + int.from_bytes(frame[off + 4:off + 6], "big")
    else:
        return None
    if len(frame) < tcp + 20:
        return None
    sport, dport, seq = _TCP.unpack_from(frame, tcp)
    data = tcp + (frame[tcp + 12] >> 4) * 4
    return src, dst, sport, dport, seq, frame[tcp + 13], bytes(frame[data:min(end, len(frame))])


_TCP = struct.Struct("!HHI")


def _segment(conn: _Connection, d: _Direction, seq: int, payload: bytes, frame: int,
             src: str, dst: str) -> Iterator[dict]:
    if d.next_seq is None:  # capture started mid-stream
        d.next_seq = seq
        _learn_digests(conn, payload)
    d.pending[seq] = (payload, frame)
    while not d.failed:
        for s, (data, fr) in list(d.pending.items()):
            offset = (d.next_seq - s) & 0xFFFFFFFF
            if offset < len(data):  # starts at or before next_seq and reaches past it
                del d.pending[s]
                chunk = data[offset:]
                d.next_seq = (d.next_seq + len(chunk)) & 0xFFFFFFFF
                yield from _feed(conn, d, chunk, fr, src, dst)
                break
            if offset < 0x80000000:  # entirely old: a retransmission
                del d.pending[s]
                break
        else:
            return


def _learn_digests(conn: _Connection, payload: bytes) -> None:
    """Mid-stream: the first PDU's flags say whether digests are on (no ICResp to read)."""
    if len(payload) >= 2 and payload[0] not in (PduType.ICReq, PduType.ICResp):
        for f in (conn.host_dir.framer, conn.ctrl_dir.framer):
            f.hdgst = bool(payload[1] & PduFlags.HDGSTF)
            f.ddgst = bool(payload[1] & PduFlags.DDGSTF)


def _feed(conn: _Connection, d: _Direction, chunk: bytes, frame: int, src: str,
          dst: str) -> Iterator[dict]:
    try:
        pdus = d.framer.feed(chunk)
    except ProtocolError as exc:
        d.failed = True
        yield {"frame": frame, "src": src, "dst": dst, "type": "error", "error": str(exc),
               "fes": exc.fes, "fei": exc.fei}
        return
    for pdu in pdus:
        rec = record(conn, pdu, frame, src, dst)
        rec["_raw"] = _wire_bytes(pdu)
        yield rec


def _wire_bytes(pdu) -> bytes:
    """The PDU as it was on the wire (padding, which no capture here has seen non-zero,
    is rebuilt as zeros)."""
    out = bytearray(pdu.raw_header)
    if pdu.hdgst is not None:
        out += pdu.hdgst.to_bytes(4, "little")
    if pdu.pdo and pdu.pdu_type not in (PduType.H2CTermReq, PduType.C2HTermReq):
        out += bytes(pdu.pdo - len(out))
    out += bytes(pdu.data)
    if pdu.ddgst is not None:
        out += pdu.ddgst.to_bytes(4, "little")
    return bytes(out)


def record(conn: _Connection, pdu, frame: int, src: str, dst: str) -> dict:
    t = pdu.pdu_type
    rec = {"frame": frame, "src": src, "dst": dst, "type": PduType(t).name, "pdu_type": int(t),
           "flags": pdu.flags, "hlen": pdu.hlen, "pdo": pdu.pdo, "plen": pdu.plen,
           "hdgst": pdu.hdgst, "ddgst": pdu.ddgst,
           "hdgst_ok": None if pdu.hdgst is None else crc32c(pdu.raw_header) == pdu.hdgst,
           "ddgst_ok": pdu.ddgst_ok}
    if t == PduType.ICReq:
        rec.update(pfv=pdu.pfv, hpda=pdu.hpda, dgst=pdu.dgst, maxr2t=pdu.maxr2t)
    elif t == PduType.ICResp:
        rec.update(pfv=pdu.pfv, cpda=pdu.cpda, dgst=pdu.dgst, maxh2cdata=pdu.maxh2cdata)
        for f in (conn.host_dir.framer, conn.ctrl_dir.framer):  # digests from here on
            f.hdgst = bool(pdu.dgst & 1)
            f.ddgst = bool(pdu.dgst & 2)
            f.pda = 0
        conn.ctrl_dir.framer.pda = pdu.cpda
    elif t in (PduType.H2CTermReq, PduType.C2HTermReq):
        rec.update(fes=pdu.fes, fei=pdu.fei)
    elif t == PduType.CapsuleCmd:
        sqe = pdu.sqe
        opcode, fctype = sqe[0], (sqe[4] if sqe[0] == 0x7F else None)
        if fctype == 1:  # Connect: the queue this connection carries
            conn.admin = int.from_bytes(sqe[42:44], "little") == 0
        cid = pdu.cid
        conn.commands[cid] = (opcode, fctype)
        # a Fabrics SQE has FCTYPE where other commands have the NSID
        rec.update(cid=cid, opcode=opcode,
                   nsid=None if fctype is not None else int.from_bytes(sqe[4:8], "little"))
        if fctype is not None:
            rec["fctype"] = fctype
        rec.update(zip(("cdw10", "cdw11", "cdw12", "cdw13", "cdw14", "cdw15"),
                       _CDW.unpack_from(sqe, 40)))
        rec["data_len"] = len(pdu.data)
        rec["name"] = command_name(opcode, fctype, conn.admin is not False)
    elif t == PduType.CapsuleResp:
        status = (pdu.status >> 1) & 0x7FFF
        opcode, _ = conn.commands.pop(pdu.cid, (None, None))
        rec.update(cid=pdu.cid, sqid=pdu.sqid, sqhd=pdu.sqhd, status=status, sc=status & 0xFF,
                   sct=(status >> 8) & 7, dnr=bool(status & 0x4000),
                   status_name=status_name((status >> 8) & 7, status & 0xFF,
                                           fabrics=opcode == 0x7F))
    elif t in (PduType.H2CData, PduType.C2HData):
        rec.update(cccid=pdu.cccid, ttag=pdu.ttag, datao=pdu.datao, datal=pdu.datal)
    elif t == PduType.R2T:
        rec.update(cccid=pdu.cccid, ttag=pdu.ttag, r2to=pdu.r2to, r2tl=pdu.r2tl)
    return rec
