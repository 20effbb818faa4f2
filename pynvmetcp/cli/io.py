"""`pynvmetcp read` and `pynvmetcp write`: block I/O with nvme-cli's flags and a progress bar."""
from __future__ import annotations

import argparse
import os
import sys

from rich.console import Console
from rich.progress import BarColumn, Progress, TransferSpeedColumn

from ._host import NSID, U64, add_device_args, number, open_controller

CHUNK = 128 * 1024
PROGRESS_MIN = 4 << 20


def register(sub) -> None:
    for name, helptext in (("read", "read blocks"), ("write", "write blocks")):
        p = sub.add_parser(name, help=helptext)
        add_device_args(p)
        p.add_argument("-n", "--namespace-id", type=NSID, default=1)
        p.add_argument("-s", "--start-block", type=number(0, U64, "start block"), default=0)
        p.add_argument("-c", "--block-count", type=number(0, 0xFFFF, "block count"),
                       default=None, help="number of blocks, 0's based as in nvme-cli")
        p.add_argument("-z", "--data-size", type=number(1, U64, "data size"), default=None,
                       help="bytes to transfer")
        p.add_argument("-d", "--data", help="file to read from (write) or write to (read); "
                                            "default stdin/stdout")
        p.set_defaults(func=_read if name == "read" else _write)


def run(args: argparse.Namespace) -> int:
    return args.func(args)


def _size(args: argparse.Namespace, ns, default: int | None) -> int:
    """The transfer's size, refused before any I/O when it does not fit the namespace."""
    block_size = ns.block_size
    if args.data_size is not None:
        size = args.data_size
    elif args.block_count is not None:
        size = (args.block_count + 1) * block_size
    elif default is not None:
        size = default
    else:
        raise ValueError("give the transfer size with -z/--data-size or -c/--block-count")
    if size <= 0 or size % block_size:
        raise ValueError(f"transfer size {size} is not a positive multiple of the "
                         f"{block_size}-byte block size")
    end = args.start_block + size // block_size
    if end > ns.nblocks:
        raise ValueError(f"blocks {args.start_block}..{end - 1} do not fit namespace "
                         f"{args.namespace_id} ({ns.nblocks} blocks of {block_size} B)")
    return size


def _progress(total: int):
    """On stderr (stdout may be the data itself), and only when stderr is a terminal."""
    console = Console(stderr=True)
    return Progress("{task.description}", BarColumn(), "{task.percentage:>3.0f}%",
                    TransferSpeedColumn(), transient=True, console=console,
                    disable=total < PROGRESS_MIN or not console.is_terminal)


def _read(args: argparse.Namespace) -> int:
    with open_controller(args, nr_io_queues=1) as ctrl:
        ns = ctrl.namespace(args.namespace_id)
        size = _size(args, ns, None)
        out = open(args.data, "wb") if args.data else sys.stdout.buffer
        try:
            with _progress(size) as bar:
                task = bar.add_task("read", total=size)
                done = 0
                while done < size:
                    n = min(CHUNK, size - done)
                    out.write(ns.read(args.start_block + done // ns.block_size,
                                      n // ns.block_size))
                    done += n
                    bar.update(task, advance=n)
        finally:
            if args.data:
                out.close()
    print(f"read: {size} bytes from namespace {args.namespace_id}", file=sys.stderr)
    return 0


def _write(args: argparse.Namespace) -> int:
    src = open(args.data, "rb") if args.data else sys.stdin.buffer
    try:
        file_size = os.fstat(src.fileno()).st_size if args.data else None
        with open_controller(args, nr_io_queues=1) as ctrl:
            ns = ctrl.namespace(args.namespace_id)
            size = _size(args, ns, file_size)
            if file_size is not None and file_size < size:
                raise ValueError(f"{args.data} has {file_size} bytes, {size} asked for")
            with _progress(size) as bar:
                task = bar.add_task("write", total=size)
                done = 0
                while done < size:
                    chunk = src.read(min(CHUNK, size - done))
                    if not chunk:
                        raise ValueError(f"input ended after {done} of {size} bytes")
                    if len(chunk) % ns.block_size:
                        chunk += bytes(ns.block_size - len(chunk) % ns.block_size)
                    ns.write(args.start_block + done // ns.block_size, chunk)
                    done += len(chunk)
                    bar.update(task, advance=len(chunk))
    finally:
        if args.data:
            src.close()
    print(f"write: {size} bytes to namespace {args.namespace_id}", file=sys.stderr)
    return 0
