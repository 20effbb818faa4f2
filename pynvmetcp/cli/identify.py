"""`pynvmetcp id-ctrl` and `pynvmetcp id-ns`: Identify pages, field by field like nvme-cli."""
from __future__ import annotations

import argparse
import uuid

from ..spec.identify import NIDT_EUI64, NIDT_NGUID, NIDT_UUID
from ._host import (NSID, add_device_args, add_output_args, container_dict, is_json,
                    open_controller, print_json)

# Fields nvme-cli prints in decimal; everything else numeric is shown in hex.
DECIMAL = {"mdts", "nn", "maxcmd", "kas", "ioccsz", "iorcsz", "icdoff", "msdbd", "aerl", "elpe",
           "npss", "rab", "anagrpmax", "nanagrpid", "mnan", "awun", "awupf", "acwu", "nsze",
           "ncap", "nuse", "nlbaf", "tnvmcap", "unvmcap", "nvmcap", "anagrpid", "wctemp",
           "cctemp", "anatt"}
SKIP = {"psd", "vs", "lbaf"}


def register(sub) -> None:
    p = sub.add_parser("id-ctrl", help="Identify Controller")
    add_device_args(p)
    add_output_args(p)
    p.set_defaults(func=run_id_ctrl)
    p = sub.add_parser("id-ns", help="Identify Namespace")
    add_device_args(p)
    p.add_argument("-n", "--namespace-id", type=NSID, default=1)
    add_output_args(p)
    p.set_defaults(func=run_id_ns)


def _print_fields(title: str, page) -> None:
    print(title)
    for key, value in page.items():
        if key.startswith("_") or key.startswith("rsvd") or key in SKIP:
            continue
        if isinstance(value, int) and not isinstance(value, bool) and key not in DECIMAL:
            value = hex(value)
        elif isinstance(value, (bytes, bytearray)):
            value = value.hex()
        print(f"{key:<10}: {value}")


def run_id_ctrl(args: argparse.Namespace) -> int:
    with open_controller(args) as ctrl:
        page = ctrl.identify()
    if is_json(args):
        print_json({k: v for k, v in container_dict(page).items() if not k.startswith("rsvd")})
    else:
        _print_fields("NVME Identify Controller:", page)
    return 0


def run_id_ns(args: argparse.Namespace) -> int:
    with open_controller(args) as ctrl:
        page = ctrl.identify_namespace(args.namespace_id)
        ids = ctrl.namespace_ids(args.namespace_id)
    extra = {}
    if NIDT_UUID in ids:
        extra["uuid"] = str(uuid.UUID(bytes=ids[NIDT_UUID]))
    if NIDT_NGUID in ids:
        extra["nguid"] = ids[NIDT_NGUID].hex()
    if NIDT_EUI64 in ids:
        extra["eui64"] = ids[NIDT_EUI64].hex()
    if is_json(args):
        data = {k: v for k, v in container_dict(page).items()
                if not k.startswith("rsvd") and k != "vs"}
        data["lbaf"] = data["lbaf"][:page.nlbaf + 1]
        print_json({**data, **extra})
        return 0
    _print_fields(f"NVME Identify Namespace {args.namespace_id}:", page)
    for i, lbaf in enumerate(page.lbaf[:page.nlbaf + 1]):
        used = " (in use)" if i == page.flbas & 0xF else ""
        print(f"lbaf {i:2} : ms:{lbaf.ms:<3} lbads:{lbaf.ds:<3} rp:{lbaf.rp:#x}{used}")
    for key, value in extra.items():
        if key not in page:  # NGUID and EUI-64 are fields of the page itself as well
            print(f"{key:<10}: {value}")
    return 0


def run(args: argparse.Namespace) -> int:
    return args.func(args)
