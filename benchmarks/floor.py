"""Question: how much of the gap to a raw socket is NVMe/TCP itself, and how much is pynvmetcp's
host and target — and so, how close to the I/O goals can a Python implementation come here?

The floor is the leanest NVMe/TCP exchange Python can make (``_peers.BareHost`` and
``BARE_TARGET``): a Read capsule packed in one struct call, answered with C2HData and CapsuleResp
from a filled buffer, no validation, no state machine, no event loop. Each pynvmetcp side is then
put in place of its bare counterpart, so each ratio isolates one side:

- ``*_floor_vs_raw``: bare host ↔ bare target against the raw socket baselines of iops.py and
  throughput.py (QD1: one 4 KiB round trip; 128 KiB: the raw stream). This is the ceiling of
  any Python NVMe/TCP pair on this machine; the I/O goals (QD1 ≥ 0.77, 128 KiB ≥ 0.8) are only
  reachable where it lies above them with room for a real host and target.
- ``*_host_vs_floor``: the pynvmetcp blocking host's queue (HostQueue engine + SyncQueue; the
  bare target does not implement the admin bring-up, so the queue is opened by itself) ↔ bare
  target, against bare ↔ bare.
- ``*_target_vs_floor``: bare host ↔ the pynvmetcp target (on the I/O queue of a host brought up
  by the real Connect, nothing else outstanding on it), against bare ↔ bare.

Last lines: ``RATIO qd1_floor_vs_raw=…``, ``qd1_host_vs_floor``, ``qd1_target_vs_floor``, the same
three for ``read128_``.
"""
from __future__ import annotations

import itertools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pynvmetcp  # noqa: E402
from benchmarks._harness import Report, compare, parse_args  # noqa: E402
from benchmarks._peers import (NQN, BareHost, RawClient, bare_target, fill_namespace,  # noqa: E402
                              keep_deep, pin_client, raw_server, target_process)
from pynvmetcp.host import commands as C  # noqa: E402
from pynvmetcp.host.procedures import Command, read_into  # noqa: E402
from pynvmetcp.host.sync import SyncQueue  # noqa: E402
from pynvmetcp.protocol import HostQueue  # noqa: E402

SMALL, LARGE = 4096, 128 * 1024
DEPTH = 8  # the 128 KiB reads, as in throughput.py
PER_CALL = 32  # 128 KiB reads per timed call
SPAN = (256 << 20) // LARGE  # 128 KiB blocks in the namespace (mem:256M, 512-byte blocks)


def _slbas(start: int) -> list[int]:
    return [(start + i) % SPAN * (LARGE // 512) for i in range(PER_CALL)]


class Queue:
    """The pynvmetcp host's I/O queue (engine and blocking queue) opened on its own."""

    def __init__(self, port: int) -> None:
        self.q = SyncQueue.open("127.0.0.1", port, HostQueue(1, queue_size=128), 10.0, 10.0)
        self.small = memoryview(bytearray(SMALL))
        self.large = [memoryview(bytearray(LARGE)) for _ in range(DEPTH)]

    def read(self) -> None:
        self.q.execute(read_into(1, 0, SMALL // 512, self.small))  # as ns.read_into does

    def reads(self, slbas: list[int]) -> None:
        keep_deep(self.q, lambda i: Command(C.read(1, slbas[i], LARGE // 512),
                                            read_into=self.large[i % DEPTH]), len(slbas), DEPTH)


class Bare:
    """BareHost with the buffers of the two workloads."""

    def __init__(self, host: BareHost) -> None:
        self.host = host
        self.small = memoryview(bytearray(SMALL))
        self.large = [memoryview(bytearray(LARGE)) for _ in range(DEPTH)]

    def read(self) -> None:
        self.host.read(0, self.small)

    def reads(self, slbas: list[int]) -> None:
        self.host.reads(slbas, self.large)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, argv)
    report = Report("floor", "the leanest Python NVMe/TCP pair vs raw; each pynvmetcp side in "
                    "place of its bare counterpart", args)
    pin_client()
    number = max(20, int((50 if args.quick else 2000) * args.scale))
    calls = max(2, int((2 if args.quick else 40) * args.scale))
    with target_process() as (tport, _), bare_target() as bport, raw_server() as rport:
        raw = RawClient(rport)
        floor = Bare(BareHost.connect(bport))
        ours = Queue(bport)
        with pynvmetcp.connect("127.0.0.1", tport, NQN, nr_io_queues=1, kato=0,
                               ctrl_loss_tmo=0) as ctrl:
            fill_namespace(ctrl.namespace(1))
            into_target = Bare(BareHost(ctrl.io[0].sock))
            qd1 = dict(rounds=args.rounds, number=number, bytes_per_op=SMALL)
            large = dict(rounds=args.rounds, number=calls, ops_per_call=PER_CALL,
                         bytes_per_op=LARGE)
            turn = itertools.count()  # each call reads the next 4 MiB of the namespace

            def seq(side):
                return lambda: side.reads(_slbas(next(turn)))

            for key, candidate, baseline, how in (
                    ("qd1_floor_vs_raw", ("bare host ↔ bare target", floor.read),
                     ("raw socket round trip", lambda: raw.call(b"", SMALL)), qd1),
                    ("qd1_host_vs_floor", ("pynvmetcp host ↔ bare target", ours.read),
                     ("bare ↔ bare", floor.read), qd1),
                    ("qd1_target_vs_floor", ("bare host ↔ pynvmetcp target", into_target.read),
                     ("bare ↔ bare", floor.read), qd1),
                    ("read128_floor_vs_raw", ("bare host ↔ bare target", seq(floor)),
                     ("raw socket stream", lambda: raw.stream_down(LARGE, PER_CALL)), large),
                    ("read128_host_vs_floor", ("pynvmetcp host ↔ bare target", seq(ours)),
                     ("bare ↔ bare", seq(floor)), large),
                    ("read128_target_vs_floor",
                     ("bare host ↔ pynvmetcp target", seq(into_target)),
                     ("bare ↔ bare", seq(floor)), large)):
                what = ("QD1 4 KiB read" if how is qd1 else f"128 KiB reads, {DEPTH} deep")
                row = report.add(compare(f"{what}: {key}", candidate, baseline, **how))
                report.ratio(key, row.ratio)
                report.note(f"{key}: {candidate[0]} takes "
                            f"{(row.candidate_median - row.baseline_median) / 1e3:+.1f} µs per "
                            f"read more than {baseline[0]}")
        raw.close()
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
