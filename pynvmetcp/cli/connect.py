"""`pynvmetcp connect`: attach a controller through the kernel, or check one in userspace.

With ``--kernel`` (the default where /dev/nvme-fabrics is usable) the kernel host keeps the
association and a block device appears, as with ``nvme connect``. With ``--userspace`` the
association lives as long as this command: it connects, reports the controller and its
namespaces, and with ``--hold`` stays connected (keep-alive running) until interrupted.
"""
from __future__ import annotations

import argparse

from ._host import (add_connection_args, add_output_args, add_queue_args, connect_kwargs,
                    human_size, is_json, print_json, seconds, stop_on_signals,
                    userspace_controller)


def register(sub) -> None:
    p = sub.add_parser("connect", help="connect to an NVMe/TCP subsystem")
    add_connection_args(p)
    add_queue_args(p)
    p.add_argument("-l", "--ctrl-loss-tmo", type=seconds(-1, 2**31, "ctrl-loss-tmo"),
                   default=None, help="give up reconnecting after this long (-1: never)")
    p.add_argument("-c", "--reconnect-delay", type=seconds(1, 2**31, "reconnect delay"),
                   default=None, help="seconds between reconnect attempts")
    p.add_argument("-D", "--duplicate-connect", action="store_true",
                   help="kernel: allow a second controller to the same subsystem and address "
                        "(every userspace association is a new one anyway)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--kernel", dest="mode", action="store_const", const="kernel",
                      help="connect the kernel host (a block device appears)")
    mode.add_argument("--userspace", dest="mode", action="store_const", const="userspace",
                      help="connect with the userspace host")
    p.add_argument("--hold", action="store_true",
                   help="userspace: stay connected until interrupted")
    add_output_args(p)


def _kernel_usable() -> tuple[bool, str]:
    try:
        from .. import kernel
    except ImportError as exc:  # the fallback is optional
        return False, str(exc)
    return kernel.available(passthrough=False)  # connect needs only /dev/nvme-fabrics


def run(args: argparse.Namespace) -> int:
    mode = args.mode
    if mode is None:
        mode = "kernel" if _kernel_usable()[0] else "userspace"
    if mode == "kernel":
        return _kernel(args)
    return _userspace(args)


def _kernel(args: argparse.Namespace) -> int:
    ok, why = _kernel_usable()
    if not ok:
        raise OSError(why)
    from .. import kernel

    kw = connect_kwargs(args, nr_io_queues=args.nr_io_queues, queue_size=args.queue_size)
    for opt in ("ctrl_loss_tmo", "reconnect_delay"):
        if getattr(args, opt) is not None:
            kw[opt] = getattr(args, opt)
    if args.duplicate_connect:
        kw["duplicate_connect"] = True
    result = kernel.connect(args.traddr, args.trsvcid, args.nqn, **kw)
    if is_json(args):
        print_json({"device": result.device, "instance": result.instance,
                    "cntlid": result.cntlid, "already_connected": result.already_connected})
    elif result.already_connected:
        print(f"already connected: {result.device}")
    else:
        print(f"connected: {result.device} (cntlid {result.cntlid})")
    return 0


def _userspace(args: argparse.Namespace) -> int:
    extra = {k: getattr(args, k) for k in ("ctrl_loss_tmo", "reconnect_delay")
             if getattr(args, k) is not None}
    with userspace_controller(args, nr_io_queues=args.nr_io_queues, queue_size=args.queue_size,
                              **extra) as ctrl:
        nss = []
        for nsid in ctrl.namespaces():
            ns = ctrl.namespace(nsid)
            nss.append({"nsid": nsid, "blocks": ns.nblocks, "block_size": ns.block_size,
                        "size": ns.size})
        info = {"subnqn": args.nqn, "traddr": args.traddr, "trsvcid": args.trsvcid,
                "cntlid": ctrl.cntlid, "model": ctrl.id.mn, "serial": ctrl.id.sn,
                "io_queues": len(ctrl.io), "namespaces": nss}
        if is_json(args):
            print_json(info)
        else:
            print(f"connected (userspace): {args.nqn} at {args.traddr}:{args.trsvcid}, "
                  f"cntlid {ctrl.cntlid}, {len(ctrl.io)} I/O queue(s)")
            for ns in nss:
                print(f"  namespace {ns['nsid']}: {ns['blocks']} blocks of "
                      f"{ns['block_size']} B ({human_size(ns['size'])})")
            if not args.hold:
                print("(the userspace association ends with this command: --hold keeps it, "
                      "--kernel makes a block device)")
        if args.hold:
            stop = stop_on_signals()
            print("holding the association; interrupt to disconnect", flush=True)
            stop.wait()
    return 0
