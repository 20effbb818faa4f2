"""Question: how close does sequential 128 KiB I/O through pynvmetcp come to a raw socket stream?

Candidate: the blocking pynvmetcp host reading (and writing) consecutive 128 KiB blocks from a
pynvmetcp target with a memory namespace over loopback, kept 8 commands deep (a sequential reader
with read-ahead, as ``fio --rw=read --iodepth=8`` or the kernel's block layer would). Baseline: a
plain Python socket stream of the same 128 KiB blocks (one request, then the blocks back to back
into one block-sized buffer) — the transport's ceiling here. Target and raw server run in their
own process on the other core; the namespace is written once before timing, so that neither side
pays first-touch page faults. Goal: ≥ 0.8× the raw stream.

For information, the same at queue depth 1 against a raw round trip of one block per request:
that is bound by the round trip, the QD1 latency question of iops.py with larger blocks.

Last lines: ``RATIO throughput_read_vs_raw=…``, ``RATIO throughput_write_vs_raw=…``, then the
``…_qd1_vs_round_trip`` ratios.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pynvmetcp  # noqa: E402
from benchmarks._harness import Report, compare, parse_args  # noqa: E402
from benchmarks._peers import (NQN, PATTERN, RawClient, fill_namespace,  # noqa: E402
                              keep_deep, pin_client, raw_server, target_process)
from pynvmetcp.host import commands as C  # noqa: E402
from pynvmetcp.host.procedures import Command  # noqa: E402

SIZE = 128 * 1024
DEPTH = 8
BLOCKS_PER_CALL = 32  # one timed call moves this many blocks, pipelined or streamed


class Sequential:
    """Consecutive 128 KiB commands on one I/O queue, ``DEPTH`` outstanding."""

    def __init__(self, ns) -> None:
        self.q = ns.ctrl.io[0]
        self.ns = ns
        self.blocks = SIZE // self.ns.block_size
        self.span = self.ns.nblocks // self.blocks
        self.bufs = [bytearray(SIZE) for _ in range(DEPTH)]
        self.pos = 0

    def _next_lba(self) -> int:
        self.pos = (self.pos + 1) % self.span
        return self.pos * self.blocks

    def _read(self, i: int) -> Command:
        return Command(C.read(self.ns.nsid, self._next_lba(), self.blocks),
                       read_into=self.bufs[i % DEPTH])

    def _write(self, i: int) -> Command:
        return Command(C.write(self.ns.nsid, self._next_lba(), self.blocks), write=PATTERN)

    def reads(self) -> None:
        keep_deep(self.q, self._read, BLOCKS_PER_CALL, DEPTH)

    def writes(self) -> None:
        keep_deep(self.q, self._write, BLOCKS_PER_CALL, DEPTH)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, argv)
    report = Report("throughput", "128 KiB sequential I/O: pynvmetcp host↔target vs raw socket",
                    args)
    pin_client()
    number = max(2, int((2 if args.quick else 40) * args.scale))
    with target_process() as (tport, _), raw_server() as rport:
        raw = RawClient(rport)
        with pynvmetcp.connect("127.0.0.1", tport, NQN, nr_io_queues=1, kato=0,
                               ctrl_loss_tmo=0) as ctrl:
            ns = ctrl.namespace(1)
            fill_namespace(ns)
            seq = Sequential(ns)
            common = dict(rounds=args.rounds, number=number, ops_per_call=BLOCKS_PER_CALL,
                          bytes_per_op=SIZE)
            row = report.add(compare(
                f"read 128 KiB, QD{DEPTH}", (f"pynvmetcp reads, {DEPTH} deep", seq.reads),
                ("raw socket stream", lambda: raw.stream_down(SIZE, BLOCKS_PER_CALL)), **common))
            report.ratio("throughput_read_vs_raw", row.ratio)
            row = report.add(compare(
                f"write 128 KiB, QD{DEPTH}", (f"pynvmetcp writes, {DEPTH} deep", seq.writes),
                ("raw socket stream", lambda: raw.stream_up(PATTERN, BLOCKS_PER_CALL)), **common))
            report.ratio("throughput_write_vs_raw", row.ratio)

            buf = seq.bufs[0]
            qd1 = dict(rounds=args.rounds, number=number * BLOCKS_PER_CALL // 4,
                       bytes_per_op=SIZE)
            row = report.add(compare(
                "read 128 KiB, QD1", ("pynvmetcp read", lambda: ns.read_into(0, buf)),
                ("raw round trip", lambda: raw.call(b"", SIZE)), **qd1))
            report.ratio("throughput_read_qd1_vs_round_trip", row.ratio)
            row = report.add(compare(
                "write 128 KiB, QD1", ("pynvmetcp write", lambda: ns.write(0, PATTERN)),
                ("raw round trip", lambda: raw.call(PATTERN, 16)), **qd1))
            report.ratio("throughput_write_qd1_vs_round_trip", row.ratio)
        raw.close()
    report.note("ratios are rates: > 1 means pynvmetcp is faster than the raw socket")
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
