"""Question: how many 4 KiB random reads per second, and at what latency, does pynvmetcp serve?

Part 1 — latency at queue depth 1: the blocking host reading 4 KiB from a pynvmetcp target vs a
raw socket request/response moving the same 4 KiB (the round-trip floor of Python on loopback).
Goal: p50 ≤ 1.3× the raw round trip. The blocks read are random, drawn before timing. p50 and
p99 come from per-operation samples. The namespace is written once first, so the target pays no
first-touch page faults (see _peers.fill_namespace).
The same once more on a connection that disabled SQ flow control (Connect CATTR bit 2, what
nvme-cli's connect-all asks for when the discovery log entry's TREQ allows it, as this target's
does): the controller may then end a read with C2HData's SUCCESS flag instead of a CapsuleResp,
one PDU per read instead of two (information; the goal is judged on the default connection).
Part 2 — IOPS at queue depth 1, 8, 32, 128, blocking host (pipelined with submit/wait_any on one
queue) and asyncio host (gather), against the same target. Goals: ≥ 100k IOPS per host core at
QD32; asyncio ≥ 0.9× blocking. "Per host core" is commands per second of the host process's CPU
time (user + system): the host runs on one core, and when it is not the bottleneck (it waits for
the target, which has one core of its own) its wall-clock IOPS would understate it. Both are
reported. The asyncio host runs on uvloop's loop, the one pynvmetcp installs and its target
runs on (``target.new_event_loop``), and again on the standard loop for comparison.

Last lines: ``RATIO qd1_latency_p50_vs_raw=…`` (raw time / pynvmetcp time, > 1 is better),
``RATIO qd1_sqflow_disabled_vs_raw=…``,
``RATIO iops_qd32_per_core=…`` (thousands), ``RATIO asyncio_vs_blocking_qd32=…`` (uvloop) and
``RATIO asyncio_std_vs_blocking_qd32=…`` (the standard loop).
"""
from __future__ import annotations

import asyncio
import itertools
import random
import statistics
import sys
import time
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pynvmetcp  # noqa: E402
from benchmarks._harness import Report, compare, parse_args  # noqa: E402
from benchmarks._peers import (NQN, RawClient, fill_namespace, keep_deep, pin_client,  # noqa: E402
                              raw_server, target_process)
from pynvmetcp.host import commands as C  # noqa: E402
from pynvmetcp.host.procedures import Command  # noqa: E402

DEPTHS = (1, 8, 32, 128)


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def blocking_iops(ctrl, ns, depth: int, total: int, rng: random.Random) -> tuple[float, float]:
    """(commands per second, commands per second of host CPU time)."""
    q = ctrl.io[0]
    blocks = 4096 // ns.block_size
    span = ns.nblocks // blocks
    bufs = [bytearray(4096) for _ in range(depth)]

    def read(i: int) -> Command:
        return Command(C.read(ns.nsid, rng.randrange(span) * blocks, blocks),
                       read_into=bufs[i % depth])

    t0, c0 = time.perf_counter(), time.process_time()
    keep_deep(q, read, total, depth)
    return total / (time.perf_counter() - t0), total / (time.process_time() - c0)


async def asyncio_iops(port: int, depth: int, total: int, rng: random.Random) -> float:
    async with await pynvmetcp.aconnect("127.0.0.1", port, NQN, nr_io_queues=1, kato=0,
                                        queue_size=max(depth + 1, 32), ctrl_loss_tmo=0) as c:
        ns = await c.namespace(1)
        blocks = 4096 // ns.block_size
        span = ns.nblocks // blocks
        per_worker = total // depth

        async def worker():
            buf = bytearray(4096)
            for _ in range(per_worker):
                await ns.read_into(rng.randrange(span) * blocks, buf)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(depth)))
        return per_worker * depth / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, argv)
    report = Report("iops", "4 KiB random reads: QD1 latency vs raw socket; IOPS by depth", args)
    pin_client()
    rng = random.Random(0)
    number = max(20, int((50 if args.quick else 2000) * args.scale))
    total = max(200, int((400 if args.quick else 20000) * args.scale))
    with target_process() as (tport, _), raw_server() as rport:
        raw = RawClient(rport)
        with pynvmetcp.connect("127.0.0.1", tport, NQN, nr_io_queues=1, kato=0,
                               queue_size=129, ctrl_loss_tmo=0) as ctrl:
            ns = ctrl.namespace(1)
            fill_namespace(ns)
            blocks = 4096 // ns.block_size
            span = ns.nblocks // blocks
            buf = bytearray(4096)
            # random blocks drawn before the clock runs: the read is timed, not the generator
            slbas = itertools.cycle([rng.randrange(span) * blocks for _ in range(4096)])
            read_into, next_slba = ns.read_into, slbas.__next__
            row = report.add(compare(
                "QD1 4 KiB read", ("pynvmetcp read", lambda: read_into(next_slba(), buf)),
                ("raw socket round trip", lambda: raw.call(b"", 4096)),
                rounds=args.rounds, number=number, bytes_per_op=4096))
            report.ratio("qd1_latency_p50_vs_raw", row.ratio)
            with pynvmetcp.connect("127.0.0.1", tport, NQN, nr_io_queues=1, kato=0,
                                   ctrl_loss_tmo=0, disable_sqflow=True) as lean:
                lean_read = lean.namespace(1).read_into
                row = report.add(compare(
                    "QD1 4 KiB read, SQ flow control disabled",
                    ("pynvmetcp read", lambda: lean_read(next_slba(), buf)),
                    ("raw socket round trip", lambda: raw.call(b"", 4096)),
                    rounds=args.rounds, number=number, bytes_per_op=4096))
                report.ratio("qd1_sqflow_disabled_vs_raw", row.ratio)
            lat = []
            for _ in range(number * 2):
                slba = next_slba()
                t0 = time.perf_counter()
                read_into(slba, buf)
                lat.append(time.perf_counter() - t0)
            report.note(f"QD1 latency: p50 {_pct(lat, 50) * 1e6:.1f} µs, "
                        f"p99 {_pct(lat, 99) * 1e6:.1f} µs")
            blocking, per_core = {}, {}
            for depth in DEPTHS:
                runs = [blocking_iops(ctrl, ns, depth, total, rng) for _ in range(3)]
                blocking[depth] = statistics.median(r[0] for r in runs)
                per_core[depth] = statistics.median(r[1] for r in runs)
        aio, std = ({depth: statistics.median(
            _run(asyncio_iops(tport, depth, total, rng), loop) for _ in range(3))
            for depth in DEPTHS} for loop in ("uvloop", "asyncio"))
        raw.close()
    for depth in DEPTHS:
        report.note(f"QD{depth}: blocking {blocking[depth] / 1e3:.1f}k IOPS "
                    f"({per_core[depth] / 1e3:.1f}k per second of host CPU), "
                    f"asyncio {aio[depth] / 1e3:.1f}k IOPS on uvloop "
                    f"(asyncio/blocking {aio[depth] / blocking[depth]:.2f}), "
                    f"{std[depth] / 1e3:.1f}k on the standard loop "
                    f"({std[depth] / blocking[depth]:.2f})")
    report.ratio("iops_qd32_per_core", per_core[32] / 1e3)
    report.ratio("asyncio_vs_blocking_qd32", aio[32] / blocking[32])
    report.ratio("asyncio_std_vs_blocking_qd32", std[32] / blocking[32])
    return report.finish()


def _run(coro, loop: str):
    """``coro`` to its end in a new loop of the kind named."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop if loop == "uvloop" else None) as r:
        return r.run(coro)


if __name__ == "__main__":
    sys.exit(main())
