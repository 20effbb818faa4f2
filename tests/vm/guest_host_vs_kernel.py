"""Runs inside the kernel VM: our userspace host against the kernel's nvmet-tcp target.

Prints one JSON object per check; the pytest module on the host side asserts on them. The target's
namespace is a loop device, so after our writes the kernel's own view (reading the loop device)
is the oracle for what reached the disk.
"""
import asyncio
import hashlib
import json
import os
import sys

import pynvmetcp

NQN, LOOP = sys.argv[1], sys.argv[2]


def emit(check, **fields):
    print(json.dumps({"check": check, **fields}), flush=True)


def kernel_view(offset, length):
    with open(LOOP, "rb", buffering=0) as f:
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        f.seek(offset)
        return f.read(length)


log = pynvmetcp.discover("127.0.0.1", 4420)
emit("discover", genctr=log.genctr,
     entries=[[e.subtype, e.subnqn, e.traddr, e.trsvcid] for e in log.entries])

for digest in (False, True):
    with pynvmetcp.connect("127.0.0.1", 4420, NQN, nr_io_queues=2, hdr_digest=digest,
                           data_digest=digest, kato=5) as ctrl:
        idc = ctrl.identify()
        ns = ctrl.namespace(1)
        emit("identify", digest=digest, mn=idc.mn, subnqn=idc.subnqn, cntlid=ctrl.cntlid,
             io_queues=len(ctrl.io), nsids=ctrl.namespaces(), block_size=ns.block_size,
             nblocks=ns.nblocks, ioccsz=idc.ioccsz)
        ok = []
        for i, size in enumerate((4096, 16384, 65536, 131072, 1 << 20)):
            slba = 4096 * i  # 2 MiB apart: no overlap
            data = os.urandom(size)
            ns.write(slba, data)
            back = bytes(ns.read(slba, size // ns.block_size))
            disk = kernel_view(slba * ns.block_size, size)
            ok.append([size, back == data, disk == data])
        emit("write_read", digest=digest, results=ok)
        ns.flush()
        ns.write_zeroes(0, 8)
        emit("write_zeroes", digest=digest, zero=kernel_view(0, 4096) == bytes(4096))
        ns.deallocate([(4096, 8)])
        smart = ctrl.get_log_page(2, 512)
        emit("smart", digest=digest, length=len(smart))
        try:
            ns.read(ns.nblocks + 10, 1)
            emit("out_of_range", digest=digest, raised=None)
        except pynvmetcp.NvmeStatusError as exc:
            emit("out_of_range", digest=digest, raised=exc.name, dnr=exc.dnr)


async def pipelined():
    async with await pynvmetcp.aconnect("127.0.0.1", 4420, NQN, nr_io_queues=2,
                                        queue_size=64) as ctrl:
        ns = await ctrl.namespace(1)
        blocks = 16384 // ns.block_size
        datas = [os.urandom(16384) for _ in range(48)]
        await asyncio.gather(*(ns.write(i * blocks, d) for i, d in enumerate(datas)))
        reads = await asyncio.gather(*(ns.read(i * blocks, blocks) for i in range(48)))
        same = sum(bytes(r) == d for r, d in zip(reads, datas))
        disk = kernel_view(0, 48 * 16384)
        emit("asyncio_pipelined", same=same, total=48,
             disk_sha=hashlib.sha256(disk).hexdigest(),
             want_sha=hashlib.sha256(b"".join(datas)).hexdigest())


asyncio.run(pipelined())
emit("done")
