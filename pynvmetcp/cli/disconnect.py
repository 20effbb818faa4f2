"""`pynvmetcp disconnect`: delete kernel controllers, as `nvme disconnect -n NQN | -d nvmeN`.

Userspace associations live only as long as the process that made them, so there is nothing of
theirs to disconnect here.
"""
from __future__ import annotations

import argparse
import os


def register(sub) -> None:
    p = sub.add_parser("disconnect", help="disconnect kernel controllers")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("-n", "--nqn", help="every controller of this subsystem")
    group.add_argument("-d", "--device", help="one controller (nvmeN or /dev/nvmeN)")


def run(args: argparse.Namespace) -> int:
    from .. import kernel

    if args.device:
        names = kernel.disconnect(os.path.basename(args.device))
    else:
        names = kernel.disconnect(subnqn=args.nqn)
    if not names:
        print(f"no controller matched {args.nqn}")
        return 1
    print(f"disconnected {len(names)} controller(s): {' '.join(names)}")
    return 0
