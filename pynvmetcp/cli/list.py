"""`pynvmetcp list`: the kernel's NVMe controllers and namespaces, like `nvme list`.

One row per namespace seen through each controller, so a multipath namespace shows once per path
(with that path's address and state) but always under its head block device — the device to open.
Controllers without namespaces (discovery controllers) get a row of their own. Read from sysfs only:
needs neither root nor the compiled module.
"""
from __future__ import annotations

import argparse

from ._host import add_output_args, human_size, is_json, print_json


def register(sub) -> None:
    p = sub.add_parser("list", help="list kernel NVMe controllers and namespaces")
    p.add_argument("--sysfs", default="/sys", help=argparse.SUPPRESS)  # for tests
    add_output_args(p)


def _address(ctrl) -> str:
    if ctrl.traddr is None:
        return "-"
    return f"{ctrl.traddr}:{ctrl.trsvcid}" if ctrl.trsvcid else ctrl.traddr


def as_json(ctrls) -> dict:
    return {"controllers": [{
        "name": c.name, "device": c.device, "transport": c.transport, "traddr": c.traddr,
        "trsvcid": c.trsvcid, "address": c.address, "state": c.state,
        "subsysnqn": c.subsysnqn, "hostnqn": c.hostnqn, "hostid": c.hostid, "cntlid": c.cntlid,
        "subsystem": c.subsystem, "discovery": c.is_discovery, "kato": c.kato,
        "namespaces": [{
            "name": ns.name, "device": ns.device, "nsid": ns.nsid, "sectors": ns.size,
            "size_bytes": ns.size_bytes, "uuid": ns.uuid, "nguid": ns.nguid, "eui": ns.eui,
            "wwid": ns.wwid,
            "paths": [{"name": p.name, "controller": p.controller, "ana_state": p.ana_state}
                      for p in ns.paths],
        } for ns in c.namespaces],
    } for c in ctrls]}


def rows(ctrls) -> list[list[str]]:
    out = []
    for c in ctrls:
        common = [c.subsysnqn or "-", _address(c), c.state or "-"]
        if not c.namespaces:
            out.append([c.device, c.name, *common, "-", "-", "-"])
        for ns in c.namespaces:
            out.append([ns.device, c.name, *common, str(ns.nsid), human_size(ns.size_bytes),
                        ns.uuid or ns.nguid or ns.eui or "-"])
    return out


HEADER = ["Node", "Ctrl", "Subsystem NQN", "Address", "State", "NSID", "Size", "UUID"]


def table(data: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [HEADER, *data]) for i in range(len(HEADER))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(HEADER, widths)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in data]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from ..kernel.sysfs import Sysfs

    ctrls = Sysfs(getattr(args, "sysfs", "/sys")).controllers()
    if is_json(args):
        print_json(as_json(ctrls))
    elif not ctrls:
        print("no NVMe controllers")
    else:
        print(table(rows(ctrls)))
    return 0
