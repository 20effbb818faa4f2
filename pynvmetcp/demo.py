"""`make demo`: a userspace target, discovered, connected, written, read back and verified.

Everything runs on loopback in this process: the target in a background thread, the blocking
host in the foreground, then the asyncio host with pipelined I/O. Each step says what it did.
"""
from __future__ import annotations

import asyncio
import hashlib
import os
import sys
import time

import pynvmetcp
from pynvmetcp.target import (ListenConfig, NamespaceConfig, SubsystemConfig, Target,
                              TargetConfig)

NQN = "nqn.2024-01.io.pynvmetcp:demo"


def step(text: str) -> None:
    print(f"• {text}", flush=True)


def main() -> int:
    config = TargetConfig(listen=[ListenConfig("127.0.0.1", 0)],
                          subsystems=[SubsystemConfig(NQN, namespaces=[
                              NamespaceConfig("mem:64M")])])
    with Target.serve(config) as target:
        port = target.port
        step(f"target listening on 127.0.0.1:{port} serving {NQN} (64 MiB in memory)")
        log = pynvmetcp.discover("127.0.0.1", port)
        for e in log.entries:
            step(f"discovered subtype {e.subtype}: {e.subnqn} at {e.traddr}:{e.trsvcid}")
        with pynvmetcp.connect("127.0.0.1", port, NQN, nr_io_queues=2, hdr_digest=True,
                               data_digest=True) as ctrl:
            ns = ctrl.namespace(1)
            step(f"connected: cntlid {ctrl.cntlid}, model {ctrl.id.mn!r}, "
                 f"{len(ctrl.io)} I/O queues, digests on; namespace 1 = {ns.nblocks} × "
                 f"{ns.block_size} B")
            data = os.urandom(4 << 20)
            t0 = time.perf_counter()
            chunk = 128 * 1024
            for off in range(0, len(data), chunk):
                ns.write(off // ns.block_size, data[off:off + chunk])
            t1 = time.perf_counter()
            back = b"".join(bytes(ns.read(off // ns.block_size, chunk // ns.block_size))
                            for off in range(0, len(data), chunk))
            t2 = time.perf_counter()
            same = hashlib.sha256(back).digest() == hashlib.sha256(data).digest()
            step(f"wrote 4 MiB in {t1 - t0:.2f} s, read it back in {t2 - t1:.2f} s: "
                 f"{'identical' if same else 'MISMATCH'}")
            if not same:
                return 1
            ns.write_zeroes(0, 8)
            ns.flush()
            step(f"write zeroes + flush: first block now all zero = "
                 f"{bytes(ns.read(0, 1)) == bytes(ns.block_size)}")
        asyncio.run(_pipelined(port))
    step("done: target stopped")
    return 0


async def _pipelined(port: int) -> None:
    async with await pynvmetcp.aconnect("127.0.0.1", port, NQN, nr_io_queues=2,
                                        queue_size=64) as ctrl:
        ns = await ctrl.namespace(1)
        blocks = 4096 // ns.block_size
        datas = [os.urandom(4096) for _ in range(256)]
        t0 = time.perf_counter()
        await asyncio.gather(*(ns.write(i * blocks, d) for i, d in enumerate(datas)))
        reads = await asyncio.gather(*(ns.read(i * blocks, blocks) for i in range(256)))
        dt = time.perf_counter() - t0
        ok = all(bytes(r) == d for r, d in zip(reads, datas))
        step(f"asyncio: 256 writes + 256 reads of 4 KiB pipelined in {dt:.2f} s, "
             f"all verified = {ok}")


if __name__ == "__main__":
    sys.exit(main())
