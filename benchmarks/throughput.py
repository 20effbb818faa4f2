"""Question: how close does sequential 128 KiB I/O through pynvmetcp come to a raw socket?

Candidate: the blocking pynvmetcp host reading (and writing) 128 KiB at a time from a pynvmetcp
target with a memory namespace, over loopback. Baseline: a plain Python socket client/server moving
the same 128 KiB per request (16-byte request header, no NVMe) — the transport's ceiling here.
Target and raw server run in their own process on the other core. Goal: ≥ 0.8× the raw stream.

Last lines: ``RATIO throughput_read_vs_raw=…``, ``RATIO throughput_write_vs_raw=…``.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pynvmetcp  # noqa: E402
from benchmarks._harness import Report, compare, parse_args  # noqa: E402
from benchmarks._peers import NQN, RawClient, pin_client, raw_server, target_process  # noqa: E402

SIZE = 128 * 1024


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, argv)
    report = Report("throughput", "128 KiB sequential I/O: pynvmetcp host↔target vs raw socket",
                    args)
    pin_client()
    number = max(2, int((10 if args.quick else 400) * args.scale))
    with target_process() as (tport, _), raw_server() as rport:
        raw = RawClient(rport)
        with pynvmetcp.connect("127.0.0.1", tport, NQN, nr_io_queues=1, kato=0,
                               ctrl_loss_tmo=0) as ctrl:
            ns = ctrl.namespace(1)
            blocks = SIZE // ns.block_size
            span = ns.nblocks // blocks
            buf = bytearray(SIZE)
            data = bytes(range(256)) * (SIZE // 256)
            pos = [0]

            def nvme_read():
                pos[0] = (pos[0] + 1) % span
                ns.read_into(pos[0] * blocks, buf)

            def nvme_write():
                pos[0] = (pos[0] + 1) % span
                ns.write(pos[0] * blocks, data)

            row = report.add(compare("read 128 KiB", ("pynvmetcp read", nvme_read),
                                     ("raw socket", lambda: raw.call(b"", SIZE)),
                                     rounds=args.rounds, number=number, bytes_per_op=SIZE))
            report.ratio("throughput_read_vs_raw", row.ratio)
            row = report.add(compare("write 128 KiB", ("pynvmetcp write", nvme_write),
                                     ("raw socket", lambda: raw.call(data, 16)),
                                     rounds=args.rounds, number=number, bytes_per_op=SIZE))
            report.ratio("throughput_write_vs_raw", row.ratio)
        raw.close()
    report.note("ratios are rates: > 1 means pynvmetcp is faster than the raw stream")
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
