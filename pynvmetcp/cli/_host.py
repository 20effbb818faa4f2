"""Options shared by the host-side subcommands, with nvme-cli's letters where they exist.

A command reaches a controller either through the userspace host (``-a/--traddr`` …) or, for a
kernel device path (/dev/nvmeN, /dev/nvmeNnM), through the kernel's passthrough ioctls.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import signal
import socket
import sys
import threading
import uuid

from ..errors import NvmeTcpError
from ..host import connect

U32, U64 = 0xFFFFFFFF, 2**64 - 1


def number(lo: int, hi: int, what: str):
    """An argparse type: an integer (decimal or 0x…) within [lo, hi], refused in one line."""
    def parse(text: str) -> int:
        try:
            value = int(text, 0)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be an integer, not {text!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{what} must be in {lo}..{hi}, not {value}")
        return value
    parse.__name__ = what
    return parse


def seconds(lo: float, hi: float, what: str):
    """An argparse type: a finite number of seconds within [lo, hi]."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and lo <= value <= hi):
            raise argparse.ArgumentTypeError(f"{what} must be {lo:.0f}..{hi:.0f} seconds, "
                                             f"not {text!r}")
        return value
    parse.__name__ = what
    return parse


def host_id(text: str) -> str:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"host ID must be a UUID, not {text!r}") from None


PORT = number(1, 65535, "port")
NSID = number(1, U32 - 1, "namespace ID")


def add_connection_args(p: argparse.ArgumentParser, *, nqn_flag: str = "-n",
                        svc_flag: str | None = "-s", default_port: int = 4420,
                        nqn_required: bool = True) -> None:
    """Where the controller is and how to talk to it (nvme-cli's connect/discover flags)."""
    p.add_argument("-t", "--transport", default="tcp", choices=["tcp"],
                   help="transport type (only tcp)")
    p.add_argument("-a", "--traddr", help="target address")
    svc = [svc_flag, "--trsvcid"] if svc_flag else ["--trsvcid"]
    p.add_argument(*svc, dest="trsvcid", type=PORT, default=default_port,
                   help=f"target port (default {default_port})")
    nqn = [nqn_flag, "--nqn"] if nqn_flag else ["--nqn"]
    p.add_argument(*nqn, dest="nqn", required=False, help="subsystem NQN")
    p.add_argument("-q", "--hostnqn", help="host NQN (default: /etc/nvme/hostnqn)")
    p.add_argument("-I", "--hostid", type=host_id, help="host ID (default: /etc/nvme/hostid)")
    p.add_argument("-g", "--hdr-digest", action="store_true", help="enable header digest")
    p.add_argument("-G", "--data-digest", action="store_true", help="enable data digest")
    p.add_argument("-k", "--keep-alive-tmo", type=seconds(0, U32 // 1000, "keep-alive timeout"),
                   default=None, help="keep-alive timeout in seconds")
    p.set_defaults(_nqn_required=nqn_required, _nqn_flags="/".join(nqn))


def add_queue_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", "--nr-io-queues", type=number(1, 65535, "I/O queue count"), default=1,
                   help="number of I/O queues")
    p.add_argument("-Q", "--queue-size", type=number(2, 65536, "queue size"), default=128,
                   help="I/O queue size")


def add_output_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output-format", choices=["normal", "json"], default="normal")
    p.add_argument("--json", dest="output_format", action="store_const", const="json",
                   help="same as -o json")


def connect_kwargs(args: argparse.Namespace, **extra) -> dict:
    if not args.traddr:
        raise ValueError("a target address is needed (-a/--traddr)")
    if args._nqn_required and not args.nqn:
        raise ValueError(f"a subsystem NQN is needed ({args._nqn_flags})")
    kw = dict(hostnqn=args.hostnqn, hostid=args.hostid, hdr_digest=args.hdr_digest,
              data_digest=args.data_digest)
    if args.keep_alive_tmo is not None:
        kw["kato"] = args.keep_alive_tmo
    kw.update(extra)
    return kw


@contextlib.contextmanager
def reaching(args: argparse.Namespace):
    """Errors of reaching the target name it: a bare "Connection refused" does not say where."""
    try:
        yield
    except socket.gaierror as exc:
        raise OSError(f"cannot resolve {args.traddr!r}: {exc.strerror}") from None
    except OSError as exc:
        raise OSError(f"{args.traddr}:{args.trsvcid}: {exc.strerror or exc}") from None
    except NvmeTcpError as exc:
        if exc.where:  # the host already said where (connection setup)
            raise
        raise NvmeTcpError(f"{args.traddr}:{args.trsvcid}: {exc}") from None


def stop_on_signals(*wake: threading.Event) -> threading.Event:
    """An event that SIGINT or SIGTERM sets (setting each of ``wake`` too), in place of a
    KeyboardInterrupt, for a command that runs until interrupted: it then stops between its
    own steps. A KeyboardInterrupt raised inside an exchange with the controller (between a
    receive and the engine taking its bytes, say) can leave the queue waiting for an answer
    it already lost, and the shutdown on the way out waiting on it. A second signal, when the
    first has not ended the command (an exchange that hangs), is a KeyboardInterrupt after
    all: the user insists, and ``userspace_controller`` then skips the shutdown."""
    stop = threading.Event()

    def interrupted(signum, frame) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        for event in wake:
            event.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, interrupted)
    return stop


@contextlib.contextmanager
def userspace_controller(args: argparse.Namespace, nr_io_queues: int = 0,
                         subnqn: str | None = None, **extra):
    """Connect with the userspace host (to ``subnqn``, by default the command's ``--nqn``)
    for the duration of one command. An interrupted command closes the connection without
    the orderly shutdown: the interrupt may have cut an exchange short, and a shutdown on
    that queue could wait for an answer that is already lost."""
    with reaching(args):
        ctrl = connect(args.traddr, args.trsvcid, subnqn or args.nqn,
                       **connect_kwargs(args, nr_io_queues=nr_io_queues, **extra))
    interrupted = False
    try:
        yield ctrl
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        ctrl.close(shutdown=not interrupted)


def human_size(nbytes: float) -> str:
    """1536 → '1.50 KiB' (binary units, as lsblk and nvme-cli print)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if nbytes < 1024:
            break
        nbytes /= 1024
    else:
        unit = "PiB"
    return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.2f} {unit}"


def is_json(args: argparse.Namespace) -> bool:
    return getattr(args, "output_format", "normal") == "json"


def print_json(obj, compact: bool = False) -> None:
    """Indented JSON, or one line of it (``compact``) when several documents follow each other."""
    json.dump(obj, sys.stdout, indent=None if compact else 2, default=_json_default)
    sys.stdout.write("\n")
    sys.stdout.flush()


def _json_default(obj):
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj).hex()
    return str(obj)


def container_dict(c) -> dict:
    """A construct Container as plain JSON-ready data (nested; private and reserved fields
    dropped)."""
    if hasattr(c, "items"):
        return {k: container_dict(v) for k, v in c.items()
                if not k.startswith("_") and not k.startswith("rsvd")}
    if isinstance(c, list):
        return [container_dict(v) for v in c]
    return c


def add_device_args(p: argparse.ArgumentParser) -> None:
    """A kernel device path, or a userspace target (long options only: short ones are taken)."""
    p.add_argument("device", nargs="?", help="kernel device (/dev/nvmeN or /dev/nvmeNnM); "
                                             "omit and give --traddr for the userspace host")
    add_connection_args(p, nqn_flag=None, svc_flag=None, nqn_required=True)


@contextlib.contextmanager
def open_controller(args: argparse.Namespace, nr_io_queues: int = 0):
    """The controller a device-or-address command talks to, for the command's duration.

    A namespace device (/dev/nvmeXnY) selects its controller through sysfs (with native
    multipath X is the subsystem's number, not a controller's) and, unless -n says otherwise,
    its namespace."""
    if args.device:
        from ..kernel import KernelController

        dev = KernelController.from_device(args.device)
        nsid = getattr(dev, "nsid", None)
        if nsid and getattr(args, "namespace_id", None) in (None, 1):
            args.namespace_id = nsid
        with dev:
            yield dev
    else:
        with userspace_controller(args, nr_io_queues=nr_io_queues) as ctrl:
            yield ctrl
