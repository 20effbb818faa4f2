"""`pynvmetcp discover`: read a discovery controller's log, printed like nvme-cli.

With ``-p/--persistent`` the connection stays (keep-alive on) as a persistent discovery
controller, and the log is printed again after every discovery-log-change event until Ctrl-C:
a way to watch what a discovery service announces while targets come and go. With ``--json``
each log is then one line (JSON Lines), so a consumer can read them as they come.
"""
from __future__ import annotations

import argparse
import threading

from ..errors import ConnectionLost
from ..host import discover
from ..spec.logpages import EFLAGS_DUPRETINFO, EFLAGS_EPCSD, EFLAGS_NCC, TREQ_DISABLE_SQFLOW
from ..spec.opcodes import DISCOVERY_NQN, AsyncEventNotice
from ._host import (add_connection_args, add_output_args, connect_kwargs, is_json, print_json,
                    reaching, stop_on_signals, userspace_controller)


TRTYPE = {1: "rdma", 2: "fc", 3: "tcp", 254: "loop"}
ADRFAM = {1: "ipv4", 2: "ipv6", 3: "infiniband", 4: "fibre-channel", 254: "loop"}
SUBTYPE = {1: "discovery subsystem referral", 2: "nvme subsystem",
           3: "current discovery subsystem"}
TREQ = {0: "not specified", 1: "required", 2: "not required", 3: "reserved"}
SECTYPE = {0: "none", 1: "tls12", 2: "tls13"}
EFLAGS = ((EFLAGS_DUPRETINFO, "duplicate discovery information"),
          (EFLAGS_EPCSD, "explicit discovery connections"), (EFLAGS_NCC, "no cdc connectivity"))


def eflags_text(value: int) -> str:
    names = [name for bit, name in EFLAGS if value & bit]
    rest = value & ~sum(bit for bit, _ in EFLAGS)
    return ", ".join(names + ([hex(rest)] if rest else [])) or "none"


def register(sub) -> None:
    p = sub.add_parser("discover", help="read the discovery log of a discovery controller")
    add_connection_args(p, default_port=8009, nqn_required=False)
    p.add_argument("-p", "--persistent", action="store_true",
                   help="stay connected and print the log again on every change (until Ctrl-C)")
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
    if args.persistent:
        return _persistent(args)
    with reaching(args):
        log = discover(args.traddr, args.trsvcid, **connect_kwargs(args))
    _print_log(log, args)
    return 0


def _persistent(args: argparse.Namespace) -> int:
    changed = threading.Event()
    # ctrl_loss_tmo 0: a lost connection ends the command (with one line) rather than being
    # retried silently while the printed log goes stale.
    with userspace_controller(args, subnqn=DISCOVERY_NQN, ctrl_loss_tmo=0) as ctrl:
        with reaching(args):
            ctrl.watch_events([AsyncEventNotice.DISCOVERY_LOG_CHANGE], lambda _: changed.set())
        stop = stop_on_signals(changed)  # Ctrl-C ends it between two logs, never inside a read
        while not stop.is_set():
            changed.clear()
            with reaching(args):
                _print_log(ctrl.discovery_log(), args, stream=True)
            while not (changed.wait(0.5) or stop.is_set()):
                if ctrl.dead is not None:
                    raise ConnectionLost(f"{args.traddr}:{args.trsvcid}: discovery "
                                         f"connection lost: {ctrl.dead}")
    return 0


def _print_log(log, args: argparse.Namespace, stream: bool = False) -> None:
    """One log, as nvme-cli prints it; ``stream``: more follow (JSON: one line each; flushed)."""
    records = [entry_dict(e) for e in log.entries]
    if is_json(args):
        print_json({"genctr": log.genctr, "records": records}, compact=stream)
        return
    print(f"\nDiscovery Log Number of Records {len(records)}, Generation counter {log.genctr}")
    for i, rec in enumerate(records):
        print(f"=====Discovery Log Entry {i}======")
        for key in ("trtype", "adrfam", "subtype", "treq", "portid", "trsvcid", "subnqn",
                    "traddr", "eflags", "sectype"):
            print(f"{key + ':':9}{rec[key]}")
    if stream:
        print(flush=True)
