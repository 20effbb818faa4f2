"""Question: how many machine instructions does the host engine spend per 4 KiB read at queue
depth 32, against the least a Python program does with the same bytes?

Why it matters: on the machines here wall-clock results of one tree swing by ±20 % from run to
run (benchmarks/RESULTS.md), so a change worth 5 % cannot be told from noise by timing.
``valgrind --tool=callgrind`` counts the instructions a process executes: the same count for the
same program and inputs, whatever else the machine does. Each side runs in its own interpreter
twice, with and without the measured rounds, and the difference divided by the reads is its cost
per read (start-up and imports cancel out).

* candidate: the sans-I/O host engine (``protocol.HostQueue``) submits 32 reads, encodes their
  CapsuleCmds, then decodes the controller's 32 C2HData + CapsuleResp from a receive buffer
  filled as ``recv_into`` would, each payload landing in the caller's buffer, and completes them;
* baseline: the bare minimum on the same bytes — ``struct`` packs each command's header and
  unpacks each received header, the payload is copied into the same buffer; no validation,
  no state, no objects.

Last lines: ``RATIO instructions_engine_vs_struct=…`` (baseline / engine instructions; 1 would
be as cheap as the bare loop) and ``RATIO instructions_per_read_k=…`` (thousands per read).
Measured so far: 64.7k per read (98.1k before the third session of 2026-11-30), 5.5× the bare
loop's 11.8k.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._harness import Report, parse_args  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEPTH = 32

# The program each side runs under callgrind: argv = side, rounds to run, rounds to prepare (the
# same in both runs of a side, so preparing them cancels out too).
PROGRAM = r'''
import sys
sys.path.insert(0, ROOT)
from benchmarks.codec import CH, HDR_CMD, RESP_PSH, XFER_PSH
from pynvmetcp.host import commands as C
from pynvmetcp.protocol import ControllerQueue, HostQueue
from pynvmetcp.wire import codec

side, rounds, prepared = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
D = DEPTH
bufs = [bytearray(4096) for _ in range(D)]
sqes = [C.read(1, i * 8, 8) for i in range(D)]
payload = bytes(4096)


def wire(q):
    return codec.encode(q.data_to_send())


host = HostQueue(1, queue_size=129, icd_size=8192)
ctrl = ControllerQueue(icd_size=8192)
host.initiate()
ctrl.receive(wire(host))
host.receive(wire(ctrl))
ctrl.configure(1, 128)
start = host._next_cid
streams = []
for r in range(prepared):
    parts = []
    for i in range(D):
        cid = (start + r * D + i) & 0xFFFF
        parts += codec.c2h_data(cid, 0, payload, last=True)
        parts += codec.capsule_resp(cid, 0, sqid=1)
    streams.append(codec.encode(parts))


def engine(stream):
    for i in range(D):
        host.submit(sqes[i], read_into=bufs[i])
    host.data_to_send()
    mv = memoryview(stream)
    off = done = 0
    while off < len(mv):
        buf = host.get_buffer()
        k = min(len(buf), len(mv) - off)
        buf[:k] = mv[off:off + k]
        off += k
        done += len(host.buffer_updated(k))
    assert done == D


def bare(stream):
    for i in range(D):
        HDR_CMD.pack(4, 0, 72, 0, 72, sqes[i])
    mv = memoryview(stream)
    off, i = 0, 0
    while off < len(mv):
        t, flags, hlen, pdo, plen = CH.unpack_from(mv, off)
        if t == 7:
            XFER_PSH.unpack_from(mv, off + 8)
            bufs[i][:] = mv[off + pdo:off + plen]
            i += 1
        else:
            RESP_PSH.unpack_from(mv, off + 8)
        off += plen


run = engine if side == "engine" else bare
for s in streams[:rounds]:
    run(s)
'''


def instructions(program: Path, side: str, rounds: int, prepared: int) -> int:
    """Instructions callgrind counted for one run of ``program``."""
    proc = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                           sys.executable, str(program), side, str(rounds), str(prepared)],
                          capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHONHASHSEED": "0"})  # same dict layouts
    found = re.search(r"Collected : (\d+)", proc.stderr)
    if proc.returncode != 0 or not found:
        raise RuntimeError(f"callgrind run failed: {proc.stderr.strip()[-500:]}")
    return int(found[1])


def per_read(program: Path, side: str, rounds: int) -> float:
    return (instructions(program, side, rounds, rounds)
            - instructions(program, side, 0, rounds)) / (rounds * DEPTH)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, argv)
    if shutil.which("valgrind") is None:
        print("valgrind unavailable: install it (Debian: valgrind) to count instructions")
        return 2
    report = Report("instructions", "instructions per 4 KiB read at QD32: host engine vs the "
                    "bare struct loop (callgrind)", args,
                    method="instructions counted by valgrind --tool=callgrind, a run with the "
                           "rounds minus one without")
    rounds = max(2, int((10 if args.quick else 200) * args.scale))
    with tempfile.TemporaryDirectory() as tmp:
        program = Path(tmp) / "program.py"
        program.write_text(f"ROOT = {str(ROOT)!r}\nDEPTH = {DEPTH}\n" + PROGRAM)
        engine = per_read(program, "engine", rounds)
        bare = per_read(program, "bare", rounds)
    report.note(f"host engine: {engine / 1e3:.1f}k instructions per read; bare struct loop: "
                f"{bare / 1e3:.1f}k ({rounds} rounds of {DEPTH})")
    report.ratio("instructions_engine_vs_struct", bare / engine)
    report.ratio("instructions_per_read_k", engine / 1e3)
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
