"""Soak: N hosts × M I/O queues doing random reads and writes against one target for a bounded
time, every read checked against a model of what each host wrote (each host owns its own LBA
range, so the model is exact), memory and file descriptors sampled before and after.

    python -m tests.reliability.soak --minutes 10 --hosts 8 --queues 4     (make soak)
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import os
import random
import resource
import struct
import sys
import time
from dataclasses import dataclass, field

import pynvmetcp
from pynvmetcp.target import (ListenConfig, NamespaceConfig, SubsystemConfig, Target,
                              TargetConfig)

NQN = "nqn.2024-01.io.pynvmetcp:soak"
BLOCK = 4096
BLOCKS_PER_HOST = 256


@dataclass
class Result:
    ios: int = 0
    verified: int = 0
    errors: list = field(default_factory=list)
    rss_before_kib: int = 0
    rss_after_kib: int = 0
    fds_before: int = 0
    fds_after: int = 0


def _payload(host: int, lba: int, gen: int) -> bytes:
    head = struct.pack("<III", host, lba, gen)
    body = head + hashlib.sha256(head).digest() * ((BLOCK - 12) // 32) + bytes((BLOCK - 12) % 32)
    return body[:BLOCK]


def _rss_kib() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _settled_fds(limit: int, timeout: float = 10.0) -> int:
    """The target closes its side of a finished association asynchronously: wait (bounded)
    until the descriptor count is back at ``limit`` or stops falling."""
    deadline = time.monotonic() + timeout
    n = _fds()
    while n > limit and time.monotonic() < deadline:
        time.sleep(0.05)
        n = _fds()
    return n


async def _host(port: int, index: int, queues: int, deadline: float, res: Result,
                seed: int) -> None:
    rng = random.Random(seed + index)
    model: dict[int, int] = {}
    async with await pynvmetcp.aconnect("127.0.0.1", port, NQN, nr_io_queues=queues,
                                        queue_size=32, kato=2,
                                        hostnqn=f"nqn.2024-01.io.pynvmetcp:soak-{index}") as c:
        ns = await c.namespace(1)
        per = BLOCK // ns.block_size
        base = index * BLOCKS_PER_HOST
        locked: set[int] = set()

        async def worker():
            gen = 0
            while time.monotonic() < deadline:
                lba = rng.randrange(BLOCKS_PER_HOST)
                if lba in locked:
                    await asyncio.sleep(0)
                    continue
                locked.add(lba)
                try:
                    if rng.random() < 0.5 or lba not in model:
                        gen += 1
                        await ns.write((base + lba) * per, _payload(index, lba, gen))
                        model[lba] = gen
                    else:
                        data = bytes(await ns.read((base + lba) * per, per))
                        if data != _payload(index, lba, model[lba]):
                            res.errors.append(f"host {index} lba {lba}: wrong data")
                        res.verified += 1
                    res.ios += 1
                finally:
                    locked.discard(lba)

        await asyncio.gather(*(worker() for _ in range(queues * 4)))


def run(seconds: float, hosts: int, queues: int, seed: int = 1) -> Result:
    res = Result()
    size = hosts * BLOCKS_PER_HOST * BLOCK
    cfg = TargetConfig(listen=[ListenConfig("127.0.0.1", 0)],
                       subsystems=[SubsystemConfig(NQN, namespaces=[
                           NamespaceConfig(f"mem:{size}")])])
    with Target.serve(cfg) as target:
        gc.collect()
        res.rss_before_kib, res.fds_before = _rss_kib(), _fds()
        for rnd in range(2):  # two rounds: the second must not grow what the first left
            deadline = time.monotonic() + seconds / 2

            async def all_hosts():
                outcome = await asyncio.gather(
                    *(_host(target.port, i, queues, deadline, res, seed + rnd)
                      for i in range(hosts)), return_exceptions=True)
                res.errors.extend(repr(e) for e in outcome if isinstance(e, BaseException))

            asyncio.run(all_hosts())
            if rnd == 0:
                gc.collect()
                res.fds_before = _settled_fds(res.fds_before)
                res.rss_before_kib = _rss_kib()
        gc.collect()
        res.rss_after_kib, res.fds_after = _rss_kib(), _settled_fds(res.fds_before)
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--hosts", type=int, default=8)
    ap.add_argument("--queues", type=int, default=4)
    args = ap.parse_args(argv)
    res = run(args.minutes * 60, args.hosts, args.queues)
    print(f"{res.ios} I/Os, {res.verified} reads verified, {len(res.errors)} errors; "
          f"RSS {res.rss_before_kib} → {res.rss_after_kib} KiB, fds {res.fds_before} → "
          f"{res.fds_after}")
    for e in res.errors[:20]:
        print("error:", e)
    ok = not res.errors and res.fds_after <= res.fds_before and \
        res.rss_after_kib - res.rss_before_kib < 32 * 1024
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
