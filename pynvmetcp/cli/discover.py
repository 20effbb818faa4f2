"""`pynvmetcp discover`: read a discovery controller's log, printed like nvme-cli."""
from __future__ import annotations

import argparse

from ..host import discover
from ..spec.logpages import TREQ_DISABLE_SQFLOW
from ._host import (add_connection_args, add_output_args, connect_kwargs, is_json, print_json,
                    reaching)

TRTYPE = {1: "rdma", 2: "fc", 3: "tcp", 254: "loop"}
ADRFAM = {1: "ipv4", 2: "ipv6", 3: "infiniband", 4: "fibre-channel", 254: "loop"}
SUBTYPE = {1: "discovery subsystem referral", 2: "nvme subsystem",
           3: "current discovery subsystem"}
TREQ = {0: "not specified", 1: "required", 2: "not required", 3: "reserved"}
SECTYPE = {0: "none", 1: "tls12", 2: "tls13"}
EFLAGS = ((1 << 0, "duplicate discovery information"), (1 << 1, "explicit discovery connections"),
          (1 << 2, "no cdc connectivity"))


def eflags_text(value: int) -> str:
    names = [name for bit, name in EFLAGS if value & bit]
    rest = value & ~sum(bit for bit, _ in EFLAGS)
    return ", ".join(names + ([hex(rest)] if rest else [])) or "none"


def register(sub) -> None:
    p = sub.add_parser("discover", help="read the discovery log of a discovery controller")
    add_connection_args(p, default_port=8009, nqn_required=False)
    add_output_args(p)


def entry_dict(e) -> dict:
    return {"trtype": TRTYPE.get(e.trtype, str(e.trtype)),
            "adrfam": ADRFAM.get(e.adrfam, str(e.adrfam)),
            "subtype": SUBTYPE.get(e.subtype, str(e.subtype)),
            "treq": TREQ[e.treq & 3] + (", sq flow control disable supported"
                                        if e.treq & TREQ_DISABLE_SQFLOW else ""),
            "portid": e.portid, "trsvcid": e.trsvcid, "subnqn": e.subnqn, "traddr": e.traddr,
            "eflags": eflags_text(e.eflags), "sectype": SECTYPE.get(e.tsas[0], str(e.tsas[0])),
            "cntlid": e.cntlid, "asqsz": e.asqsz}


def run(args: argparse.Namespace) -> int:
    kw = connect_kwargs(args)
    with reaching(args):
        log = discover(args.traddr, args.trsvcid, **kw)
    records = [entry_dict(e) for e in log.entries]
    if is_json(args):
        print_json({"genctr": log.genctr, "records": records})
        return 0
    print(f"\nDiscovery Log Number of Records {len(records)}, Generation counter {log.genctr}")
    for i, rec in enumerate(records):
        print(f"=====Discovery Log Entry {i}======")
        for key in ("trtype", "adrfam", "subtype", "treq", "portid", "trsvcid", "subnqn",
                    "traddr", "eflags", "sectype"):
            print(f"{key + ':':9}{rec[key]}")
    return 0
