"""Question: does one pynvmetcp target keep its aggregate throughput as hosts are added?

1, 2, 4, 8, 16, 32, 64 concurrent asyncio hosts (each its own association with one I/O queue,
queue depth 4) read 4 KiB at random from one target process for a fixed time. Reported: aggregate
IOPS per host count, and the target's resident memory per connection (from /proc). The curve
should stay flat, not fall. Last lines: ``RATIO scale_iops_64_vs_1=…`` (aggregate IOPS with 64
hosts / with 1 host) and ``RATIO scale_kib_per_connection=…``.
"""
from __future__ import annotations

import asyncio
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pynvmetcp  # noqa: E402
from benchmarks._harness import Report, parse_args, progress  # noqa: E402
from benchmarks._peers import NQN, pin_client, target_process  # noqa: E402

HOSTS = (1, 2, 4, 8, 16, 32, 64)


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def run(port: int, hosts: int, seconds: float, rss) -> tuple[float, int]:
    rng = random.Random(hosts)
    ctrls = [await pynvmetcp.aconnect("127.0.0.1", port, NQN, nr_io_queues=1, kato=0,
                                      ctrl_loss_tmo=0) for _ in range(hosts)]
    try:
        mem = rss()
        nss = [await c.namespace(1) for c in ctrls]
        count = 0
        stop = time.perf_counter() + seconds

        async def worker(ns):
            nonlocal count
            buf = bytearray(4096)
            blocks = 4096 // ns.block_size
            span = ns.nblocks // blocks
            while time.perf_counter() < stop:
                await ns.read_into(rng.randrange(span) * blocks, buf)
                count += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(ns) for ns in nss for _ in range(4)))
        return count / (time.perf_counter() - t0), mem
    finally:
        for c in ctrls:
            await c.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, argv)
    report = Report("scale", "aggregate 4 KiB IOPS and memory as hosts are added", args)
    pin_client()
    seconds = (0.3 if args.quick else 3.0) * args.scale
    results = {}
    with target_process() as (port, pid):
        base = _rss_kib(pid)
        with progress("host counts", len(HOSTS)) as advance:
            for hosts in HOSTS:
                iops, mem = asyncio.run(run(port, hosts, seconds, lambda: _rss_kib(pid)))
                results[hosts] = (iops, mem)
                advance()
        for hosts, (iops, mem) in results.items():
            report.note(f"{hosts:3} hosts: {iops / 1e3:7.1f}k IOPS aggregate, target RSS "
                        f"{mem / 1024:.1f} MiB")
    per_conn = (results[64][1] - base) / (64 * 2)  # admin + I/O connection per host
    report.ratio("scale_iops_64_vs_1", results[64][0] / results[1][0])
    report.ratio("scale_kib_per_connection", per_conn)
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
