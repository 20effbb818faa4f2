"""Every PDU of the real kernel captures: decoded, re-encoded byte-identical, digests verified,
and its fields equal to what tshark's NVMe/TCP dissector says (the oracle; `make test` installs
tshark, and this test fails rather than skips without it)."""
from __future__ import annotations

import json
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

from pynvmetcp.capture import decode
from pynvmetcp.spec.pdu import Pdu
from pynvmetcp.wire import codec

CAPTURES = Path(__file__).resolve().parents[1] / "captures"
FILES = ["kernel-plain.pcap", "kernel-digests.pcap", "holdout/kernel-holdout.pcap"]


def tshark_pdus(path: Path) -> dict[int, list[dict]]:
    """frame number → the nvme-tcp layers tshark decoded in it, in order."""
    exe = shutil.which("tshark")
    assert exe, "tshark is needed as the oracle (apt-get install tshark; make test installs it)"
    out = subprocess.run([exe, "-r", str(path), "-d", "tcp.port==8009,nvme-tcp",
                          "-o", "nvme-tcp.check_hdgst:TRUE", "-o", "nvme-tcp.check_ddgst:TRUE",
                          "-Y", "nvme-tcp", "-T", "json", "-J", "nvme-tcp frame"],
                         capture_output=True, text=True, check=True).stdout
    frames: dict[int, list[dict]] = {}
    for pkt in json.loads(out, object_pairs_hook=_keep_duplicates):
        layers = pkt["_source"]["layers"]
        number = int(layers["frame"]["frame.number"])
        tcp = layers["nvme-tcp"]
        frames[number] = [_flat(x) for x in (tcp if isinstance(tcp, list) else [tcp])]
    return frames


def _keep_duplicates(pairs):
    """tshark repeats the "nvme-tcp" key once per PDU of a frame: keep them all, in order."""
    out: dict = {}
    for key, value in pairs:
        if key in out:
            prev = out[key]
            out[key] = (prev if isinstance(prev, list) else [prev]) + [value]
        else:
            out[key] = value
    return out


def _flat(layer: dict) -> dict:
    """Field name → value, with tshark's subtrees (e.g. nvme-tcp.icreq) flattened."""
    out = {}
    for key, value in layer.items():
        if isinstance(value, dict):
            out.update(_flat(value))
        else:
            out[key] = value
    return out


def _be(value: int) -> str:
    """tshark shows a stored little-endian digest as a big-endian number."""
    return "0x" + value.to_bytes(4, "little").hex()


@pytest.fixture(scope="module", params=FILES)
def capture(request):
    path = CAPTURES / request.param
    return path, list(decode(str(path)))


def test_every_pdu_decodes(capture):
    path, recs = capture
    assert not [r for r in recs if r["type"] == "error"]
    theirs = tshark_pdus(path)
    assert len(recs) == sum(len(v) for v in theirs.values()) > 300
    kinds = {r["type"] for r in recs}
    assert {"ICReq", "ICResp", "CapsuleCmd", "CapsuleResp", "C2HData", "H2CData",
            "R2T"} <= kinds


def test_fields_agree_with_tshark(capture):
    path, recs = capture
    theirs = tshark_pdus(path)
    ours: dict[int, list[dict]] = defaultdict(list)
    for r in recs:
        ours[r["frame"]].append(r)
    assert sorted(ours) == sorted(theirs)
    compared = 0
    for frame, layers in theirs.items():
        for mine, t in zip(ours[frame], layers):
            assert int(t["nvme-tcp.type"]) == mine["pdu_type"], frame
            assert int(t["nvme-tcp.flags"], 16) == mine["flags"], frame
            assert int(t["nvme-tcp.hlen"]) == mine["hlen"], frame
            assert int(t["nvme-tcp.pdo"]) == mine["pdo"], frame
            assert int(t["nvme-tcp.plen"]) == mine["plen"], frame
            if mine["hdgst"] is not None:
                assert t["nvme-tcp.hdgst"] == _be(mine["hdgst"]), frame
                assert t["nvme-tcp.hdgst.status"] == "1" and mine["hdgst_ok"], frame
            if mine["ddgst"] is not None:
                assert t["nvme-tcp.ddgst"] == _be(mine["ddgst"]), frame
                assert t["nvme-tcp.ddgst.status"] == "1" and mine["ddgst_ok"], frame
            if mine["type"] in ("H2CData", "C2HData"):
                assert int(t["nvme-tcp.data.offset"], 0) == mine["datao"], frame
                assert int(t["nvme-tcp.data.length"], 0) == mine["datal"], frame
                assert int(t["nvme-tcp.ttag"], 0) == mine["ttag"], frame
            if mine["type"] == "R2T":
                assert int(t["nvme-tcp.r2t.offset"], 0) == mine["r2to"], frame
                assert int(t["nvme-tcp.r2t.length"], 0) == mine["r2tl"], frame
            if mine["type"] == "ICReq":
                assert int(t["nvme-tcp.icreq.hpda"], 0) == mine["hpda"]
                assert int(t["nvme-tcp.icreq.digest"], 0) == mine["dgst"]
            if mine["type"] == "ICResp":
                assert int(t["nvme-tcp.icresp.maxdata"], 0) == mine["maxh2cdata"]
                assert int(t["nvme-tcp.icresp.digest"], 0) == mine["dgst"]
            compared += 1
    assert compared == len(recs)


def test_every_pdu_reencodes_byte_identical(capture):
    _, recs = capture
    for r in recs:
        raw = r["_raw"]
        assert len(raw) == r["plen"]
        assert Pdu.build(Pdu.parse(raw)) == raw, r["frame"]
        hd = r["hdgst"] is not None
        dd = r["ddgst"] is not None
        data = raw[r["pdo"]:r["plen"] - (4 if dd else 0)] if r["pdo"] else None
        if r["type"] == "CapsuleCmd":
            again = codec.capsule_cmd(raw[8:72], data, hdgst=hd, ddgst=dd)
        elif r["type"] == "CapsuleResp":
            dw0, dw1 = int.from_bytes(raw[8:12], "little"), int.from_bytes(raw[12:16], "little")
            again = codec.capsule_resp(r["cid"], int.from_bytes(raw[22:24], "little"), dw0=dw0,
                                       dw1=dw1, sqhd=r["sqhd"], sqid=r["sqid"], hdgst=hd)
        elif r["type"] == "C2HData":
            again = codec.c2h_data(r["cccid"], r["datao"], data, last=bool(r["flags"] & 4),
                                   success=bool(r["flags"] & 8), hdgst=hd, ddgst=dd)
        elif r["type"] == "H2CData":
            again = codec.h2c_data(r["cccid"], r["ttag"], r["datao"], data,
                                   last=bool(r["flags"] & 4), hdgst=hd, ddgst=dd)
        elif r["type"] == "R2T":
            again = codec.r2t(r["cccid"], r["ttag"], r["r2to"], r["r2tl"], hdgst=hd)
        else:
            continue
        assert codec.encode(again) == raw, (r["frame"], r["type"])


def test_digest_capture_has_both_digests_everywhere():
    recs = list(decode(str(CAPTURES / "kernel-digests.pcap")))
    io = [r for r in recs if r["type"] in ("CapsuleCmd", "CapsuleResp", "R2T", "C2HData",
                                            "H2CData")]
    assert all(r["hdgst_ok"] for r in io)
    assert all(r["ddgst_ok"] for r in io if r["type"] in ("C2HData", "H2CData"))


def test_commands_and_names(capture):
    _, recs = capture
    names = {r["name"] for r in recs if r["type"] == "CapsuleCmd"}
    assert {"Fabrics Connect", "Fabrics Property Get", "Fabrics Property Set", "Identify",
            "Get Log Page", "Read", "Write", "Keep Alive"} & names >= {"Fabrics Connect",
                                                                      "Identify", "Read",
                                                                      "Write"}
    resp = [r for r in recs if r["type"] == "CapsuleResp"]
    assert all(r["status"] == 0 or r["status_name"] for r in resp)
