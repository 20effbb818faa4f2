"""`pynvmetcp decode FILE`: a transcript of the NVMe/TCP PDUs in a pcap/pcapng capture."""
from __future__ import annotations

import argparse
import json
import sys

from ..capture import DEFAULT_PORTS, CaptureError, decode
from ._host import PORT

_PROPS = {0x00: "CAP", 0x08: "VS", 0x14: "CC", 0x1C: "CSTS", 0x20: "NSSR"}


def register(sub) -> None:
    p = sub.add_parser("decode", help="decode NVMe/TCP PDUs from a pcap/pcapng file")
    p.add_argument("file")
    p.add_argument("-p", "--port", type=PORT, action="append", dest="ports",
                   help=f"NVMe/TCP port (repeatable; default {' and '.join(map(str, DEFAULT_PORTS))})")
    p.add_argument("--json", action="store_true", help="one JSON object per PDU")


def run(args: argparse.Namespace) -> int:
    ports = args.ports or DEFAULT_PORTS
    out = sys.stdout
    found = 0
    try:
        for found, rec in enumerate(decode(args.file, ports), 1):
            if args.json:
                out.write(json.dumps({k: v for k, v in rec.items() if not k.startswith("_")})
                          + "\n")
            else:
                out.write(line(rec) + "\n")
    except CaptureError as exc:
        raise ValueError(str(exc)) from None
    if not found:
        print(f"{args.file}: no NVMe/TCP PDUs on TCP port {' or '.join(map(str, ports))} "
              f"(another port? -p PORT)", file=sys.stderr)
    return 0


def _details(rec: dict) -> str:
    t = rec["type"]
    if t == "CapsuleCmd":
        text = f"{rec['name']} cid={rec['cid']}"
        if rec["nsid"]:
            text += f" nsid={rec['nsid']}"
        name = rec["name"]
        if name == "Fabrics Connect":
            text += (f" qid={rec['cdw10'] >> 16} sqsize={rec['cdw11'] & 0xFFFF} "
                     f"kato={rec['cdw12']}ms")
        elif name.startswith("Fabrics Property"):
            text += f" {_PROPS.get(rec['cdw11'], hex(rec['cdw11']))}"
        elif name in ("Read", "Write", "Compare", "Write Zeroes"):
            text += (f" slba={rec['cdw10'] | rec['cdw11'] << 32} "
                     f"nlb={(rec['cdw12'] & 0xFFFF) + 1}")
        elif name == "Identify":
            text += f" cns={rec['cdw10'] & 0xFF}"
        elif name == "Get Log Page":
            numd = ((rec["cdw10"] >> 16) | (rec["cdw11"] & 0xFFFF) << 16) + 1
            text += (f" lid={rec['cdw10'] & 0xFF:#04x} len={numd * 4} "
                     f"lpo={rec['cdw12'] | rec['cdw13'] << 32}")
        elif name in ("Set Features", "Get Features"):
            text += f" fid={rec['cdw10'] & 0xFF:#04x} cdw11={rec['cdw11']:#x}"
        if rec["data_len"]:
            text += f" +{rec['data_len']} B in capsule"
        return text
    if t == "CapsuleResp":
        return f"cid={rec['cid']} {rec['status_name']}" + (" DNR" if rec["dnr"] else "")
    if t in ("H2CData", "C2HData"):
        return f"cccid={rec['cccid']} ttag={rec['ttag']} datao={rec['datao']} datal={rec['datal']}"
    if t == "R2T":
        return f"cccid={rec['cccid']} ttag={rec['ttag']} r2to={rec['r2to']} r2tl={rec['r2tl']}"
    if t == "ICReq":
        return f"pfv={rec['pfv']} hpda={rec['hpda']} dgst={rec['dgst']} maxr2t={rec['maxr2t']}"
    if t == "ICResp":
        return (f"pfv={rec['pfv']} cpda={rec['cpda']} dgst={rec['dgst']} "
                f"maxh2cdata={rec['maxh2cdata']}")
    if t.endswith("TermReq"):
        return f"fes={rec['fes']:#x} fei={rec['fei']:#x}"
    return ""


def line(rec: dict) -> str:
    flow = f"{rec['src']} → {rec['dst']}"
    if rec["type"] == "error":
        return f"{rec['frame']:>6}  {flow}  PROTOCOL ERROR: {rec['error']}"
    bad = ""
    if rec.get("hdgst_ok") is False:
        bad += " [bad header digest]"
    if rec.get("ddgst_ok") is False:
        bad += " [bad data digest]"
    return f"{rec['frame']:>6}  {flow}  {rec['type']:<11} {_details(rec)}{bad}"
