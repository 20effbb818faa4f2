"""Reassembly edge cases on synthetic captures (built with scapy from our codec's PDUs), the
`pynvmetcp decode` command, and the scapy layer."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import rdpcap, wrpcap

import pynvmetcp.scapy as layer
from pynvmetcp.capture import decode
from pynvmetcp.wire import codec

ROOT = Path(__file__).resolve().parents[2]
HOST, CTRL = ("10.9.9.1", 40000), ("10.9.9.2", 4420)
SQE = bytes([0x7F, 0x40, 0x05, 0x00, 0x04]) + bytes(35) + b"\x01" + bytes(23)


def _frames(segments: list[tuple[str, bytes]], *, shuffle: bool = False,
            retransmit: bool = False) -> list:
    """SYN, SYN-ACK, then one frame per (direction, bytes) segment with running sequence
    numbers; ``shuffle`` swaps the host's first two data segments, ``retransmit`` resends the
    host's first data segment at the end."""
    seqs = {"h2c": 1000, "c2h": 5000}
    ends = {"h2c": (HOST, CTRL), "c2h": (CTRL, HOST)}

    def tcp(d, flags, seq, data=b""):
        (sip, sp), (dip, dp) = ends[d]
        pkt = Ether() / IP(src=sip, dst=dip) / TCP(sport=sp, dport=dp, flags=flags, seq=seq)
        return pkt / Raw(data) if data else pkt

    frames = [tcp("h2c", "S", 999), tcp("c2h", "SA", 4999)]
    host = []
    for d, data in segments:
        frames.append(tcp(d, "PA", seqs[d], data))
        if d == "h2c":
            host.append(len(frames) - 1)
        seqs[d] += len(data)
    if shuffle:
        i, j = host[0], host[1]
        frames[i], frames[j] = frames[j], frames[i]
    if retransmit:
        frames.append(frames[host[0]])
    return frames


def _cut(data: bytes, cuts: list[int]) -> list[bytes]:
    edges = [0] + cuts + [len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:]) if b > a]


ICREQ = codec.ic_req(dgst=3)
ICRESP = codec.ic_resp(dgst=3)
CMD = codec.encode(codec.capsule_cmd(SQE, hdgst=True, ddgst=True))
REPLY = (codec.encode(codec.capsule_resp(5, 0, dw0=1, hdgst=True))
         + codec.encode(codec.c2h_data(6, 0, bytes(range(256)) * 16, last=True, hdgst=True,
                                       ddgst=True)))
ORDER = ["ICReq", "ICResp", "CapsuleCmd", "CapsuleResp", "C2HData"]


def test_split_and_several_per_segment(tmp_path):
    path = tmp_path / "split.pcap"
    segs = ([("h2c", p) for p in _cut(ICREQ, [5, 100])] + [("c2h", ICRESP)]
            + [("h2c", p) for p in _cut(CMD, [1, 40])] + [("c2h", REPLY)])
    wrpcap(str(path), _frames(segs))
    recs = list(decode(str(path)))
    assert [r["type"] for r in recs] == ORDER
    # frames 1-2 are the handshake; the ICReq ends in frame 5, the command in frame 9, and
    # the response and the data share frame 10
    assert [r["frame"] for r in recs] == [5, 6, 9, 10, 10]
    assert recs[2]["hdgst_ok"] is True and recs[4]["ddgst_ok"] is True
    assert recs[4]["datal"] == 4096 and recs[3]["cid"] == 5


def test_out_of_order_and_retransmission(tmp_path):
    path = tmp_path / "ooo.pcap"
    segs = ([("h2c", p) for p in _cut(ICREQ, [64])] + [("c2h", ICRESP), ("h2c", CMD),
                                                      ("c2h", REPLY)])
    wrpcap(str(path), _frames(segs, shuffle=True, retransmit=True))
    recs = list(decode(str(path)))
    assert [r["type"] for r in recs] == ORDER


def test_bad_header_digest_is_reported_not_fatal(tmp_path):
    bad = bytearray(CMD)
    bad[72] ^= 0xFF  # the header digest
    path = tmp_path / "bad.pcap"
    wrpcap(str(path), _frames([("h2c", ICREQ), ("c2h", ICRESP), ("h2c", bytes(bad)),
                               ("c2h", REPLY)]))
    recs = list(decode(str(path)))
    assert recs[2]["type"] == "CapsuleCmd" and recs[2]["hdgst_ok"] is False
    assert recs[-1]["type"] == "C2HData" and recs[-1]["ddgst_ok"] is True


def test_protocol_error_stops_one_direction_only(tmp_path):
    path = tmp_path / "err.pcap"
    wrong_way = b"\x05" + bytes(23)  # a CapsuleResp sent by the host
    wrpcap(str(path), _frames([("h2c", ICREQ), ("c2h", ICRESP), ("h2c", wrong_way),
                               ("h2c", CMD), ("c2h", REPLY)]))
    recs = list(decode(str(path)))
    assert [r["type"] for r in recs] == ["ICReq", "ICResp", "error", "CapsuleResp", "C2HData"]
    assert recs[2]["fes"] == 1 and recs[2]["fei"] == 0


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "pynvmetcp", "decode", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_cli_json_keys(tmp_path):
    path = tmp_path / "cli.pcap"
    wrpcap(str(path), _frames([("h2c", ICREQ), ("c2h", ICRESP), ("h2c", CMD), ("c2h", REPLY)]))
    proc = _cli(str(path), "--json")
    assert proc.returncode == 0, proc.stderr
    recs = [json.loads(line) for line in proc.stdout.splitlines()]
    common = {"frame", "src", "dst", "type", "pdu_type", "flags", "hlen", "pdo", "plen",
              "hdgst", "ddgst", "hdgst_ok", "ddgst_ok"}
    assert all(common <= set(r) for r in recs)
    by_type = {r["type"]: r for r in recs}
    assert {"pfv", "hpda", "dgst", "maxr2t"} <= set(by_type["ICReq"])
    assert {"cid", "opcode", "fctype", "cdw10", "cdw15", "data_len"} <= set(by_type["CapsuleCmd"])
    assert {"cid", "sqid", "sqhd", "status", "sc", "sct", "dnr"} <= set(by_type["CapsuleResp"])
    assert {"cccid", "ttag", "datao", "datal"} <= set(by_type["C2HData"])
    assert by_type["ICReq"]["src"] == "10.9.9.1:40000"


def test_cli_transcript_and_bad_files(tmp_path):
    proc = _cli(str(ROOT / "tests/captures/kernel-plain.pcap"))
    assert proc.returncode == 0 and "Fabrics Connect" in proc.stdout and "Read" in proc.stdout
    missing = _cli(str(tmp_path / "nope.pcap"))
    notpcap = tmp_path / "x.pcap"
    notpcap.write_text("hello")
    bad = _cli(str(notpcap))
    for proc in (missing, bad):
        assert proc.returncode == 2
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
        assert proc.stderr.startswith("pynvmetcp: error:")


def test_scapy_layer_builds_what_the_codec_builds():
    pkt = layer.NVMeTCP(flags="HDGSTF") / layer.NVMeTCPCapsuleCmd(sqe=SQE)
    assert bytes(pkt) == codec.encode(codec.capsule_cmd(SQE, hdgst=True))
    data = bytes(range(256)) * 3
    pkt = (layer.NVMeTCP(pdu_type=7, flags="DDGSTF+LAST_PDU")
           / layer.NVMeTCPData(cccid=3, datal=len(data)) / Raw(data))
    assert bytes(pkt) == codec.encode(codec.c2h_data(3, 0, data, last=True, ddgst=True))


def test_scapy_layer_dissects_captures_with_several_pdus_per_segment(tmp_path):
    path = tmp_path / "s.pcap"
    wrpcap(str(path), _frames([("c2h", ICRESP), ("h2c", ICREQ + CMD), ("c2h", REPLY)]))
    pkts = rdpcap(str(path))
    first = pkts[3][layer.NVMeTCP]
    assert first.pdu_type == 0 and first[layer.NVMeTCPICReq].dgst == 3
    assert first[layer.NVMeTCPTail].payload[layer.NVMeTCPCapsuleCmd].sqe == SQE  # chained
    resp = pkts[-1][layer.NVMeTCPCapsuleResp]
    assert resp.cid == 5 and resp.dw0 == 1
    assert pkts[-1][layer.NVMeTCPData].datal == 4096
    real = rdpcap(str(ROOT / "tests/captures/kernel-plain.pcap"), count=12)
    assert real[3][layer.NVMeTCP].pdu_type == 0  # the first ICReq of the kernel capture


def test_cli_output_to_a_closed_pipe_ends_quietly_with_141():
    """`pynvmetcp decode big.pcap | head`: the reader is gone before the first line (its end
    of the pipe is closed before decode starts), as every other command does: 141, no text."""
    r, w = os.pipe()
    os.close(r)
    try:
        proc = subprocess.run([sys.executable, "-m", "pynvmetcp", "decode",
                               str(ROOT / "tests/captures/kernel-plain.pcap")], cwd=ROOT,
                              stdout=w, stderr=subprocess.PIPE, timeout=60)
    finally:
        os.close(w)
    assert proc.returncode == 141 and proc.stderr == b""
