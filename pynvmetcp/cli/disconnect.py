"""`pynvmetcp disconnect`: delete kernel controllers, as `nvme disconnect -n NQN | -d nvmeN`.

Userspace associations live only as long as the process that made them, so there is nothing of
theirs to disconnect here.
"""
from __future__ import annotations

import argparse
import os
import sys


def register(sub) -> None:
    p = sub.add_parser("disconnect", help="disconnect kernel controllers")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("-n", "--nqn", help="every controller of this subsystem")
    group.add_argument("-d", "--device", help="one controller (nvmeN or /dev/nvmeN)")
    p.add_argument("--sysfs", default="/sys", help=argparse.SUPPRESS)  # for tests


def run(args: argparse.Namespace) -> int:
    from .. import kernel
    from ..kernel.sysfs import Sysfs

    sysfs = Sysfs(args.sysfs)
    refused: list[str] = []
    if args.device:
        names = kernel.disconnect(os.path.basename(args.device), sysfs=sysfs)
    else:  # as nvme-cli: a path the kernel will not delete yet does not keep the others
        names = kernel.disconnect(subnqn=args.nqn, sysfs=sysfs,
                                  on_refused=lambda name, exc: refused.append(str(exc)))
    if not names and not refused:
        print(f"no controller matched {args.nqn}")
        return 1
    if names:
        print(f"disconnected {len(names)} controller(s): {' '.join(names)}")
    for line in refused:
        print(f"pynvmetcp: not disconnected: {line}", file=sys.stderr)
    return 1 if refused else 0
